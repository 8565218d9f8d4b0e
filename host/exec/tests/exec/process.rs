use std::path::Path;
use std::time::Duration;

use p2pc_exec::{ProcessConfig, ProcessExecutor};
use p2pc_sandbox::{Artifact, ByteSize, SandboxExecutor, TaskError};

use crate::support::*;

/// A program from this machine, by path, as a process bundle would carry it.
fn program(path: &str, args: &[&str]) -> Artifact {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Artifact {
        bytes: bytes.into(),
        name: Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

fn sh(script: &str) -> Artifact {
    program("/bin/sh", &["-c", script])
}

/// An executor with bubblewrap, its own uid range and work dir, or `None`
/// (having said why) where bubblewrap is missing.
fn isolated(uid_base: u32, work: &Path) -> Option<ProcessExecutor> {
    if tool("bwrap").is_none() {
        skip("bubblewrap (bwrap) is not installed");
        return None;
    }
    Some(ProcessExecutor::new(ProcessConfig {
        uid_base,
        slots: 2,
        work_root: work.to_path_buf(),
        ..ProcessConfig::default()
    }))
}

fn unisolated(uid_base: u32, work: &Path) -> ProcessExecutor {
    ProcessExecutor::new(ProcessConfig {
        uid_base,
        slots: 2,
        work_root: work.to_path_buf(),
        use_bwrap: false,
        allow_unisolated: true,
        ..ProcessConfig::default()
    })
}

#[tokio::test]
async fn input_in_output_out_and_nothing_left_behind() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(exec) = isolated(2_000_100_000, work.path()) else {
        return;
    };
    let o = exec
        .execute(
            &program("/bin/cat", &[]),
            task(b"hello", Duration::from_secs(10)),
        )
        .await;
    assert_eq!(o.result.as_deref(), Ok(&b"hello"[..]), "{}", out(&o));
    assert!(
        is_empty_dir(work.path()),
        "the task directory was not removed"
    );
}

#[tokio::test]
async fn the_environment_is_empty_and_the_directory_fresh() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(exec) = isolated(2_000_110_000, work.path()) else {
        return;
    };
    let o = exec
        .execute(
            &sh("env | sort; pwd; ls -A"),
            task(b"", Duration::from_secs(10)),
        )
        .await;
    let text = out(&o);
    assert!(o.result.is_ok(), "{text}");
    let vars: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('=') && !l.starts_with("PWD=") && !l.starts_with("SHLVL="))
        .collect();
    assert_eq!(
        vars,
        [
            "HOME=/work",
            "LANG=C.UTF-8",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "TMPDIR=/tmp"
        ],
        "{text}"
    );
    assert!(text.lines().any(|l| l == "/work"), "{text}");
    assert_eq!(
        text.lines().last(),
        Some("/work"),
        "the directory is not empty: {text}"
    );
}

#[tokio::test]
async fn a_fork_bomb_is_contained() {
    let work = tempfile::tempdir().expect("tempdir");
    let base = 2_000_120_000;
    let Some(exec) = isolated(base, work.path()) else {
        return;
    };
    let o = exec
        .execute(
            // The top shell forks the bomb once, before it grows, then
            // becomes a sleeper that outlives the deadline (`exec` needs
            // no new process), so the bomb keeps growing until then. A
            // top shell that forked after the bomb began could be refused
            // and exit early, ending the task (under bubblewrap, the
            // sandbox ends as soon as the top process does).
            &sh("(f(){ f | f & }; f) & exec sleep 30"),
            task(b"", Duration::from_secs(3)),
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
    eventually(
        "the bomb's processes are gone",
        Duration::from_secs(10),
        || processes_of(base..base + 8).is_empty(),
    );
    // The executor still works afterwards.
    let o = exec
        .execute(&sh("echo fine"), task(b"", Duration::from_secs(10)))
        .await;
    assert_eq!(out(&o), "fine\n");
}

#[tokio::test]
async fn a_memory_hog_is_stopped() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(exec) = isolated(2_000_130_000, work.path()) else {
        return;
    };
    let mut t = task(b"", Duration::from_secs(10));
    t.limits.memory = ByteSize::mib(64);
    let o = exec
        .execute(&sh("dd if=/dev/zero of=/dev/null bs=300M count=1"), t)
        .await;
    assert!(
        matches!(o.result, Err(TaskError::GuestError { .. })),
        "{}",
        out(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("memory"),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

async fn sleeper_is_killed_with_children(exec: ProcessExecutor, marker: &str) {
    let script = format!("sleep {marker} & sleep {marker} & echo started; wait");
    let o = exec
        .execute(&sh(&script), task(b"", Duration::from_millis(1500)))
        .await;
    assert!(
        matches!(o.result, Err(TaskError::Deadline { timeout_ms: 1500 })),
        "{}",
        out(&o)
    );
    eventually("the sleepers are gone", Duration::from_secs(10), || {
        processes_with(&format!("sleep {marker}")).is_empty()
    });
}

#[tokio::test]
async fn a_sleeper_is_killed_with_its_children_at_the_deadline() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(exec) = isolated(2_000_140_000, work.path()) else {
        return;
    };
    sleeper_is_killed_with_children(exec, "4141").await;
    assert!(is_empty_dir(work.path()));
}

#[tokio::test]
async fn unisolated_sleepers_are_killed_too() {
    let work = tempfile::tempdir().expect("tempdir");
    sleeper_is_killed_with_children(unisolated(2_000_150_000, work.path()), "4242").await;
}

#[tokio::test]
async fn loopback_is_unreachable_under_bubblewrap() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(exec) = isolated(2_000_160_000, work.path()) else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let o = exec
        .execute(
            &program("/bin/bash", &["-c", &script]),
            task(b"", Duration::from_secs(10)),
        )
        .await;
    assert!(o.result.is_err(), "connected: {}", out(&o));
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the listener saw a connection"
    );
    // The same program reaches the listener without isolation: the test
    // can tell a blocked connection from a broken one.
    let o = unisolated(2_000_165_000, work.path())
        .execute(
            &program("/bin/bash", &["-c", &script]),
            task(b"", Duration::from_secs(10)),
        )
        .await;
    assert_eq!(out(&o), "connected\n");
}

#[tokio::test]
async fn secrets_and_homes_are_out_of_reach() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(exec) = isolated(2_000_170_000, work.path()) else {
        return;
    };
    for script in [
        "cat /etc/shadow",
        "ls /root",
        "ls /home/*/",
        "touch /usr/p2pc-was-here",
    ] {
        let o = exec
            .execute(&sh(script), task(b"", Duration::from_secs(10)))
            .await;
        assert!(o.result.is_err(), "{script}: {}", out(&o));
        assert!(!out(&o).contains("root:"), "{script}: {}", out(&o));
    }
    assert!(!Path::new("/usr/p2pc-was-here").exists());
}

#[tokio::test]
async fn output_over_the_cap_is_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(exec) = isolated(2_000_180_000, work.path()) else {
        return;
    };
    let mut t = task(b"", Duration::from_secs(10));
    t.limits.output = ByteSize::kib(16);
    let o = exec.execute(&sh("yes"), t).await;
    assert!(
        matches!(o.result, Err(TaskError::OutputTooLarge { .. })),
        "{}",
        out(&o)
    );
}

#[tokio::test]
async fn exit_status_and_stderr_are_reported() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(exec) = isolated(2_000_190_000, work.path()) else {
        return;
    };
    let o = exec
        .execute(
            &sh("echo oops >&2; exit 3"),
            task(b"", Duration::from_secs(10)),
        )
        .await;
    assert_eq!(
        o.result,
        Err(TaskError::GuestError {
            message: "exit status 3".into()
        })
    );
    assert_eq!(o.stderr, b"oops\n");
}

#[tokio::test]
async fn without_bubblewrap_it_refuses_unless_allowed() {
    let work = tempfile::tempdir().expect("tempdir");
    let exec = ProcessExecutor::new(ProcessConfig {
        use_bwrap: false,
        work_root: work.path().to_path_buf(),
        ..ProcessConfig::default()
    });
    assert_eq!(exec.isolation(), "refused");
    let o = exec
        .execute(&sh("echo hi"), task(b"", Duration::from_secs(10)))
        .await;
    match o.result {
        Err(TaskError::ExecutorUnavailable { executor, reason }) => {
            assert_eq!(executor, "process");
            assert!(reason.contains("allow_unisolated"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
