//! Memory: what an idle node holds, and what each running task adds.
//!
//! 1. `idle`: resident memory of a node process (`p2pc-bench-node`: a
//!    `ComputeNode` and its gateway, as `p2pctl node start` runs them)
//!    a few seconds after it is ready, then with 10 and with 100 other
//!    node processes connected to it. From `/proc/PID/status`: `VmRSS`,
//!    and `RssAnon` (memory of its own; `RssFile` is the binary's pages,
//!    shared with every other process running it).
//! 2. `tasks`: resident memory each concurrent trivial wasm task adds, in
//!    process (the node's default: `WasmExecutor`) and isolated (each task
//!    in a pooled worker process). 64 tasks that wait in a host call until
//!    their deadline, measured while all of them run, against the same
//!    process before they start (after one task ran, so the engine and
//!    the compiled component are already there).
//!
//! Run: `cargo bench -p p2pc-benches --bench memory [idle|tasks]`
//! (`P2PC_BENCH_PEERS=10,100`, `P2PC_BENCH_TASKS=64`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use p2pc_exec::{PoolConfig, PoolProgram, WasmPool};
use p2pc_sandbox::{Config, Limits, Task, WasmExecutor};

/// `VmRSS` and `RssAnon` of process `pid`, in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// `VmRSS` of process `pid` and every process under it (a bubblewrap
/// sandbox runs the worker as its child), in KiB.
fn tree_rss(pid: u32) -> u64 {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // The parent is the second field after the command's closing
            // parenthesis (the command may hold spaces).
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut todo = vec![pid];
    let mut total = 0;
    while let Some(p) = todo.pop() {
        total += rss(p).0;
        todo.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
    }
    total
}

struct NodeProcess {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    addr: String,
}

impl NodeProcess {
    fn start(dir: &std::path::Path, bootstrap: Option<&str>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2pc-bench-node"));
        cmd.arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(b) = bootstrap {
            cmd.arg(b);
        }
        let mut child = cmd.spawn().expect("node process");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().expect("a line").expect("text");
        let addr = ready.strip_prefix("ready ").expect("ready").to_owned();
        Self {
            child,
            stdin,
            lines,
            addr,
        }
    }

    fn peers(&mut self) -> usize {
        writeln!(self.stdin, "peers").expect("ask");
        let line = self.lines.next().expect("a line").expect("text");
        line.strip_prefix("peers ")
            .and_then(|n| n.parse().ok())
            .expect("a count")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn idle() {
    let counts: Vec<usize> = std::env::var("P2PC_BENCH_PEERS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100]);
    let dir = tempfile::tempdir().expect("dir");
    let mut node = NodeProcess::start(&dir.path().join("measured"), None);
    let pid = node.child.id();
    // Settled: the first DHT and gossip rounds and the history's first
    // sample are done after a few seconds.
    std::thread::sleep(Duration::from_secs(5));
    let (vm, anon) = rss(pid);
    println!(
        "idle node, no peers: VmRSS {:.1} MiB (RssAnon {:.1} MiB, the rest the binary's shared pages)",
        mib(vm),
        mib(anon)
    );
    let mut peers: Vec<NodeProcess> = Vec::new();
    for &want in &counts {
        while peers.len() < want {
            let i = peers.len();
            peers.push(NodeProcess::start(
                &dir.path().join(format!("peer{i}")),
                Some(&node.addr),
            ));
        }
        let start = Instant::now();
        while node.peers() < want {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{want} peers did not connect"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(5));
        let (vm, anon) = rss(pid);
        let per_peer: u64 = peers.iter().map(|p| rss(p.child.id()).0).sum::<u64>() / want as u64;
        println!(
            "idle node, {want} peers connected: VmRSS {:.1} MiB (RssAnon {:.1} MiB); each peer process {:.1} MiB",
            mib(vm),
            mib(anon),
            mib(per_peer)
        );
    }
}

fn sleep_task() -> Task {
    Task {
        limits: Limits {
            timeout: Duration::from_secs(4),
            memory: p2pc_sandbox::ByteSize::mib(64),
            ..Limits::DEFAULT
        },
        ..Task::run(b"sleep".to_vec())
    }
}

fn tasks() {
    let n: usize = std::env::var("P2PC_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let bytes = p2pc_tests::guest_bytes("hostile");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let me = std::process::id();

    // In process.
    let exec = WasmExecutor::new(Config {
        max_concurrent: n as u32,
        ..Config::default()
    })
    .expect("executor");
    let program = rt.block_on(exec.load(&bytes)).expect("load");
    let warm = rt.block_on(exec.run(&program, sleep_task()));
    assert!(
        warm.usage.wall_time >= Duration::from_secs(4),
        "the task sleeps until its deadline: {warm:?}"
    );
    let before = rss(me);
    let running: Vec<_> = (0..n)
        .map(|_| {
            let (exec, program) = (exec.clone(), program.clone());
            rt.spawn(async move { exec.run(&program, sleep_task()).await })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let during = rss(me);
    for t in running {
        let o = rt.block_on(t).expect("task");
        assert!(o.result.is_err(), "a sleeping task ends at its deadline");
    }
    println!(
        "in process: {n} tasks running add {:.1} MiB VmRSS ({:.2} MiB a task; RssAnon {:.2} MiB a task)",
        mib(during.0.saturating_sub(before.0)),
        mib(during.0.saturating_sub(before.0)) / n as f64,
        mib(during.1.saturating_sub(before.1)) / n as f64
    );

    // Isolated: one worker process a task.
    let mut config = PoolConfig::new(env!("CARGO_BIN_EXE_p2pc-bench-wasm-worker"), Vec::new());
    config.workers = n;
    config.allow_unisolated = true;
    config.max_memory = p2pc_sandbox::ByteSize::mib(64);
    let _runtime = rt.enter();
    let pool = WasmPool::new(config);
    let program = PoolProgram::new(bytes.clone());
    pool.warm().expect("workers start");
    // Every worker compiles the component once, on its first task: run
    // one quick task on each first, with time to compile, so the figure
    // is of running tasks, not of compiling them.
    let quick = Task {
        limits: Limits {
            timeout: Duration::from_secs(120),
            memory: p2pc_sandbox::ByteSize::mib(64),
            ..Limits::DEFAULT
        },
        ..Task::run(b"echo".to_vec())
    };
    let warming: Vec<_> = (0..n)
        .map(|_| {
            let (pool, program, quick) = (pool.clone(), program.clone(), quick.clone());
            rt.spawn(async move { pool.run(&program, quick).await })
        })
        .collect();
    for t in warming {
        let o = rt.block_on(t).expect("task");
        assert!(o.result.is_ok(), "a quick task runs: {:?}", o.result);
    }
    let workers = pool.idle_workers();
    let idle: u64 = workers.iter().map(|&p| tree_rss(p)).sum();
    let running: Vec<_> = (0..n)
        .map(|_| {
            let (pool, program) = (pool.clone(), program.clone());
            rt.spawn(async move { pool.run(&program, sleep_task()).await })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let busy = pool.busy().borrow().clone();
    let during: u64 = busy.iter().map(|&p| tree_rss(p)).sum();
    let mut endings = std::collections::BTreeMap::<String, usize>::new();
    for t in running {
        let o = rt.block_on(t).expect("task");
        let ending = match &o.result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.code().to_owned(),
        };
        *endings.entry(ending).or_default() += 1;
    }
    println!("isolated tasks ended: {endings:?}");
    println!(
        "isolated ({}): {n} worker processes (with their sandbox's own processes) idle {:.1} MiB each; running a task {:.1} MiB each ({} busy when measured)",
        pool.isolation(),
        mib(idle) / workers.len().max(1) as f64,
        mib(during) / busy.len().max(1) as f64,
        busy.len()
    );
}

fn main() {
    let on = p2pc_benches::chosen;
    if on("tasks") {
        tasks();
    }
    if on("idle") {
        idle();
    }
}
