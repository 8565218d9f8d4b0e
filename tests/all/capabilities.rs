//! Nothing of the host is reachable unless granted: files, network, unknown
//! host interfaces.

use p2pc_sandbox::{Grants, Mode, Task, TaskError};

use crate::support::{block_on, err, executor, ok, run_task};

/// A file the test writes on the host; the job must not be able to read it.
fn secret_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("secret.txt");
    std::fs::write(&path, "TOP SECRET").expect("write secret");
    (dir, path.display().to_string())
}

#[test]
fn a_host_file_outside_any_grant_cannot_be_read() {
    let exec = executor();
    let (_dir, path) = secret_file();
    block_on(async {
        for (guest, input) in [
            ("hostile", format!("read-file {path}")),
            ("hostile-cmd", format!("read {path}")),
        ] {
            for scratch in [false, true] {
                let task = Task {
                    grants: Grants {
                        scratch,
                        ..Grants::default()
                    },
                    ..Task::run(input.clone().into_bytes())
                };
                let o = run_task(&exec, guest, task).await;
                assert!(
                    matches!(err(&o), TaskError::GuestError { .. }),
                    "{guest} (scratch {scratch}): {:?}",
                    o.result
                );
                let everything =
                    [o.stderr.as_slice(), format!("{:?}", o.result).as_bytes()].concat();
                assert!(!String::from_utf8_lossy(&everything).contains("TOP SECRET"));
            }
        }
    });
}

#[test]
fn a_granted_scratch_directory_works_and_cannot_be_escaped() {
    let exec = executor();
    block_on(async {
        let task = Task {
            grants: Grants {
                scratch: true,
                ..Grants::default()
            },
            ..Task::run(b"scratch".to_vec())
        };
        let o = run_task(&exec, "hostile", task).await;
        assert_eq!(
            String::from_utf8_lossy(ok(&o)),
            "write: true\nread back: true\nescape: false\n"
        );

        // Without the grant there is no /scratch at all.
        let o = run_task(&exec, "hostile", Task::run(b"scratch".to_vec())).await;
        assert_eq!(
            String::from_utf8_lossy(ok(&o)),
            "write: false\nread back: false\nescape: false\n"
        );
    });
}

#[test]
fn network_is_a_denied_capability_unless_granted() {
    let exec = executor();
    block_on(async {
        let o = run_task(&exec, "net-client", Task::run(b"127.0.0.1:9".to_vec())).await;
        match err(&o) {
            TaskError::CapabilityDenied { capability } => {
                assert!(
                    capability.contains("network") && capability.contains("wasi:sockets"),
                    "{capability}"
                )
            }
            e => panic!("unexpected {e:?}"),
        }
        assert_eq!(o.usage.fuel_used, 0, "refused before running");

        // A deterministic task cannot be granted the network at all.
        let task = Task {
            grants: Grants {
                network: true,
                ..Grants::default()
            },
            ..Task::run(b"127.0.0.1:9".to_vec())
        };
        let o = run_task(&exec, "net-client", task).await;
        assert!(
            matches!(err(&o), TaskError::CapabilityDenied { capability } if capability.contains("deterministic"))
        );

        // Granted (nondeterministic), the job reaches the socket layer: a
        // loopback listener accepts its connection.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr").to_string();
        let task = Task {
            mode: Mode::Nondeterministic,
            grants: Grants {
                network: true,
                ..Grants::default()
            },
            ..Task::run(addr.into_bytes())
        };
        let o = run_task(&exec, "net-client", task).await;
        assert_eq!(ok(&o), b"connected\n");
    });
}

#[test]
fn an_import_no_runner_provides_is_a_denied_capability() {
    let exec = executor();
    block_on(async {
        let o = run_task(&exec, "strange-import", Task::run(b"passwords".to_vec())).await;
        match err(&o) {
            TaskError::CapabilityDenied { capability } => {
                assert!(capability.contains("fixture:other/vault"), "{capability}")
            }
            e => panic!("unexpected {e:?}"),
        }
    });
}
