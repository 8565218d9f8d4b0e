use std::path::Path;
use std::time::{Duration, Instant};

use p2pc_sandbox::{ByteSize, Limits, Outcome, Task};
pub use p2pc_tests::skip;

/// A task over `input` with a short deadline and small caps.
pub fn task(input: &[u8], timeout: Duration) -> Task {
    let mut t = Task::run(input.to_vec());
    t.limits = Limits {
        timeout,
        memory: ByteSize::mib(256),
        output: ByteSize::mib(1),
        ..Limits::default()
    };
    t
}

pub fn out(o: &Outcome) -> String {
    match &o.result {
        Ok(b) => String::from_utf8_lossy(b).into_owned(),
        Err(e) => format!(
            "error: {e} (stderr: {})",
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

/// Waits (bounded) until `cond` holds, polling: for facts only the kernel
/// knows, such as processes having been reaped.
pub fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "{what}: still false after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live (not zombie) processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Live processes whose real uid is in `uids`.
pub fn processes_of(uids: std::ops::Range<u32>) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if uid.is_some_and(|u| uids.contains(&u)) && !zombie {
            found.push(pid);
        }
    }
    found
}

pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    p2pc_exec::find_tool(name)
}

pub fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}
