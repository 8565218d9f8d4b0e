//! Task start overhead of every executor, for a trivial job, in one run:
//! in-process wasm (the baseline), the pooled isolated wasm worker, a plain
//! process, a bubblewrap process and a container.
//!
//! The wasm job is the kernels guest called with empty input; the native
//! job is `/bin/true`; the container job is `true` in a busybox root file
//! system. Executors whose tool is missing are reported as skipped.
//!
//! Run: `cargo bench -p p2pc-benches --bench executors`

use std::time::Duration;

use p2pc_benches::{percentile, sample};
use p2pc_exec::{
    ContainerConfig, ContainerExecutor, PoolConfig, PoolProgram, ProcessConfig, ProcessExecutor,
    WasmPool, find_tool,
};
use p2pc_sandbox::{Artifact, Config, SandboxExecutor, Task, WasmExecutor};

/// p50 and p99 of one executor's samples.
type Percentiles = (Duration, Duration);

fn main() {
    let rt = p2pc_benches::runtime();
    let bytes = p2pc_tests::guest_bytes("kernels-guest");
    let mut rows: Vec<(&str, usize, Option<Percentiles>)> = Vec::new();
    let measure = |n: usize, f: &mut dyn FnMut()| {
        for _ in 0..(n / 10).max(1) {
            f();
        }
        let mut s = sample(n, f);
        (percentile(&mut s, 50.0), percentile(&mut s, 99.0))
    };

    let exec = WasmExecutor::new(Config::default()).expect("executor");
    let program = rt.block_on(exec.load(&bytes)).expect("load");
    let n = 5_000;
    rows.push((
        "in-process wasm (baseline)",
        n,
        Some(measure(n, &mut || {
            let o = rt.block_on(exec.run(&program, Task::run(Vec::new())));
            assert!(o.result.is_ok());
        })),
    ));

    let mut config = PoolConfig::new(env!("CARGO_BIN_EXE_p2pc-bench-wasm-worker"), Vec::new());
    config.workers = 1;
    config.allow_unisolated = true;
    let pool = WasmPool::new(config);
    let isolation = pool.isolation();
    let program = PoolProgram::new(bytes.clone());
    rows.push((
        if isolation == "bubblewrap" {
            "pooled isolated wasm worker (bubblewrap)"
        } else {
            "pooled isolated wasm worker (rlimits only)"
        },
        n,
        Some(measure(n, &mut || {
            let o = rt.block_on(pool.run(&program, Task::run(Vec::new())));
            assert!(
                o.result.is_ok(),
                "{:?} {}",
                o.result,
                String::from_utf8_lossy(&o.stderr)
            );
        })),
    ));

    let truth = Artifact {
        bytes: std::fs::read("/bin/true").expect("/bin/true").into(),
        name: "true".into(),
        args: Vec::new(),
    };
    let process = |use_bwrap| {
        ProcessExecutor::new(ProcessConfig {
            use_bwrap,
            allow_unisolated: true,
            ..ProcessConfig::default()
        })
    };
    let plain = process(false);
    let n = 300;
    rows.push((
        "process",
        n,
        Some(measure(n, &mut || {
            let o = rt.block_on(plain.execute(&truth, Task::run(Vec::new())));
            assert!(
                o.result.is_ok(),
                "{:?} {}",
                o.result,
                String::from_utf8_lossy(&o.stderr)
            );
        })),
    ));
    let bwrap = process(true);
    rows.push((
        "bubblewrap process",
        n,
        (bwrap.isolation() == "bubblewrap").then(|| {
            measure(n, &mut || {
                let o = rt.block_on(bwrap.execute(&truth, Task::run(Vec::new())));
                assert!(
                    o.result.is_ok(),
                    "{:?} {}",
                    o.result,
                    String::from_utf8_lossy(&o.stderr)
                );
            })
        }),
    ));

    let container = ContainerExecutor::new(ContainerConfig::default());
    let n = 20;
    let image = rootfs();
    rows.push((
        "container",
        n,
        match (container.unavailable(), image) {
            (None, Some(rootfs)) => {
                let artifact = Artifact {
                    bytes: rootfs.into(),
                    name: "busybox".into(),
                    args: vec!["true".into()],
                };
                Some(measure(n, &mut || {
                    let o = rt.block_on(container.execute(&artifact, Task::run(Vec::new())));
                    assert!(
                        o.result.is_ok(),
                        "{:?} {}",
                        o.result,
                        String::from_utf8_lossy(&o.stderr)
                    );
                }))
            }
            _ => None,
        },
    ));

    let base = rows[0].2.map_or(1.0, |(p50, _)| p50.as_secs_f64());
    println!("\ntask start overhead, trivial job:");
    println!("| executor | runs | p50 | p99 | p50 / in-process wasm |");
    println!("|---|---|---|---|---|");
    for (name, n, m) in rows {
        match m {
            Some((p50, p99)) => println!(
                "| {name} | {n} | {p50:.1?} | {p99:.1?} | {:.1}x |",
                p50.as_secs_f64() / base
            ),
            None => println!("| {name} | - | skipped: tool not installed | | |"),
        }
    }
}

/// A busybox root file system as a tarball, if busybox is installed.
fn rootfs() -> Option<Vec<u8>> {
    Some(p2pc_tests::busybox_rootfs(
        &find_tool("busybox")?,
        &["true"],
    ))
}
