use std::process::Command;
use std::time::Duration;

use p2pc_exec::{ContainerConfig, ContainerExecutor};
use p2pc_sandbox::{Artifact, ByteSize, SandboxExecutor, TaskError};

use crate::support::*;

/// A busybox root file system as a tarball, or `None` (having said why).
fn busybox_rootfs() -> Option<Vec<u8>> {
    let Some(busybox) = tool("busybox") else {
        skip("busybox (Debian's busybox-static) is not installed");
        return None;
    };
    Some(p2pc_tests::busybox_rootfs(
        &busybox,
        &[
            "sh", "cat", "dd", "echo", "nc", "sleep", "yes", "id", "ls", "wait", "touch",
        ],
    ))
}

/// An executor whose engine answers, or `None` having said why not.
fn executor() -> Option<(ContainerExecutor, Vec<u8>)> {
    let exec = ContainerExecutor::new(ContainerConfig::default());
    if let Some(e) = exec.unavailable() {
        skip(&e.to_string());
        return None;
    }
    Some((exec, busybox_rootfs()?))
}

fn image(rootfs: &[u8], cmd: &[&str]) -> Artifact {
    Artifact {
        bytes: rootfs.to_vec().into(),
        name: "busybox".into(),
        args: cmd.iter().map(|s| s.to_string()).collect(),
    }
}

/// Containers this process started that still exist.
fn leftovers(exec: &ContainerExecutor) -> Vec<String> {
    let engine = exec.engine().expect("engine");
    let out = Command::new(engine)
        .args(["ps", "--all", "--format", "{{.Names}}"])
        .output()
        .expect("ps");
    let prefix = format!("p2pc-{}-", std::process::id());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn container_behaviour() {
    // One test, run in order: the engine serialises its own state anyway,
    // and each step checks that the previous left nothing behind.
    let Some((exec, rootfs)) = executor() else {
        return;
    };
    let secs = |s| task(b"", Duration::from_secs(s));

    // Input in, output out, as the unprivileged user.
    let o = exec
        .execute(
            &image(&rootfs, &["sh", "-c", "cat; id -u"]),
            task(b"hi ", Duration::from_secs(60)),
        )
        .await;
    assert_eq!(out(&o), "hi 65534\n");
    assert_eq!(leftovers(&exec), Vec::<String>::new());

    // A fork bomb is contained by the pids limit and the deadline.
    let o = exec
        .execute(
            // The top shell forks the bomb once, before it grows, then
            // becomes a sleeper that outlives the deadline (`exec` needs
            // no new process), so no fork it needs is ever refused and
            // the task always runs to its deadline, however loaded the
            // machine.
            &image(
                &rootfs,
                &["sh", "-c", "(f(){ f | f & }; f) & exec sleep 60"],
            ),
            secs(8),
        )
        .await;
    assert!(
        matches!(o.result, Err(TaskError::Deadline { .. })),
        "{}",
        out(&o)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("fork"),
        "the bomb was never refused a process: {stderr}"
    );
    assert_eq!(leftovers(&exec), Vec::<String>::new());

    // A memory hog is stopped by the memory limit.
    let mut t = secs(30);
    t.limits.memory = ByteSize::mib(64);
    let o = exec
        .execute(
            &image(
                &rootfs,
                &["dd", "if=/dev/zero", "of=/dev/null", "bs=300M", "count=1"],
            ),
            t,
        )
        .await;
    assert!(
        matches!(
            o.result,
            Err(TaskError::MemoryLimit { .. } | TaskError::GuestError { .. })
        ),
        "{}",
        out(&o)
    );

    // A sleeper is killed and removed at the deadline.
    let o = exec
        .execute(&image(&rootfs, &["sleep", "1000"]), secs(3))
        .await;
    assert!(
        matches!(o.result, Err(TaskError::Deadline { .. })),
        "{}",
        out(&o)
    );
    assert_eq!(leftovers(&exec), Vec::<String>::new());

    // No network: a loopback listener on the host is never reached.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port().to_string();
    let o = exec
        .execute(
            &image(
                &rootfs,
                &[
                    "sh",
                    "-c",
                    &format!("echo x | nc 127.0.0.1 {port} && echo connected"),
                ],
            ),
            secs(30),
        )
        .await;
    assert!(!out(&o).contains("connected"), "{}", out(&o));
    assert!(matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));

    // The root is read-only, the host's files are not there.
    for script in ["touch /p2pc-was-here", "cat /etc/shadow"] {
        let o = exec
            .execute(&image(&rootfs, &["sh", "-c", script]), secs(30))
            .await;
        assert!(o.result.is_err(), "{script}: {}", out(&o));
    }

    // Output over the cap is refused.
    let mut t = secs(30);
    t.limits.output = ByteSize::kib(16);
    let o = exec.execute(&image(&rootfs, &["yes"]), t).await;
    assert!(
        matches!(o.result, Err(TaskError::OutputTooLarge { .. })),
        "{}",
        out(&o)
    );

    // A tarball that is not one is a clear error.
    let o = exec
        .execute(&image(b"not a tarball", &["true"]), secs(30))
        .await;
    assert!(
        matches!(o.result, Err(TaskError::InvalidComponent { .. })),
        "{}",
        out(&o)
    );
    assert_eq!(leftovers(&exec), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_engine_is_named() {
    let exec = ContainerExecutor::new(ContainerConfig {
        engine: Some("/nonexistent/podman".into()),
        ..ContainerConfig::default()
    });
    let e = exec.unavailable().expect("unavailable");
    assert!(e.to_string().contains("/nonexistent/podman"), "{e}");
}
