use std::time::Duration;

use p2pc_exec::{PoolConfig, PoolProgram, WasmPool};
use p2pc_sandbox::{Config, TaskError, WasmExecutor};

use crate::support::*;

fn pool(workers: usize) -> WasmPool {
    let mut c = PoolConfig::new(env!("CARGO_BIN_EXE_p2pc-wasm-worker"), Vec::new());
    c.workers = workers;
    c.max_memory = p2pc_sandbox::ByteSize::gib(1);
    // Where bubblewrap is missing the pool still runs (and the process
    // tests say bubblewrap is missing).
    c.allow_unisolated = true;
    WasmPool::new(c)
}

#[tokio::test]
async fn the_pool_gives_the_same_output_and_fuel_as_in_process() {
    let hello = p2pc_tests::guest_bytes("hello");
    let local = WasmExecutor::new(Config {
        max_concurrent: 2,
        cache_dir: None,
        ..Config::default()
    })
    .expect("engine");
    let program = local.load(&hello).await.expect("load");
    let expected = local
        .run(&program, task(b"pool", Duration::from_secs(30)))
        .await;
    assert!(expected.result.is_ok(), "{}", out(&expected));

    let pool = pool(2);
    let program = PoolProgram::new(hello);
    for _ in 0..3 {
        let o = pool
            .run(&program, task(b"pool", Duration::from_secs(30)))
            .await;
        assert_eq!(o.result, expected.result, "{}", out(&o));
        assert_eq!(o.usage.fuel_used, expected.usage.fuel_used);
        assert_eq!(o.logs, expected.logs);
    }
}

#[tokio::test]
async fn a_killed_worker_is_a_typed_error_and_is_replaced() {
    let pool = pool(1);
    let hostile = PoolProgram::new(p2pc_tests::guest_bytes("hostile"));
    let mut busy = pool.busy();
    let mut t = task(b"loop", Duration::from_secs(60));
    t.limits.fuel = u64::MAX / 2;
    let running = tokio::spawn({
        let pool = pool.clone();
        async move { pool.run(&hostile, t).await }
    });
    let victim = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(pid) = busy.borrow_and_update().first().copied() {
                return pid;
            }
            busy.changed().await.expect("pool alive");
        }
    })
    .await
    .expect("the task reached a worker");
    // SAFETY: plain system call on a child of this process.
    unsafe { libc::kill(i32::try_from(victim).expect("pid"), libc::SIGKILL) };
    let o = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the pool noticed the dead worker before the task's deadline")
        .expect("join");
    assert!(
        matches!(o.result, Err(TaskError::WorkerLost { .. })),
        "{}",
        out(&o)
    );

    // The pool replaced the worker: the next task runs, in another process.
    let hello = PoolProgram::new(p2pc_tests::guest_bytes("hello"));
    let next = tokio::spawn({
        let pool = pool.clone();
        async move {
            pool.run(&hello, task(b"again", Duration::from_secs(30)))
                .await
        }
    });
    let o = tokio::time::timeout(Duration::from_secs(60), next)
        .await
        .expect("bounded")
        .expect("join");
    assert!(o.result.is_ok(), "{}", out(&o));
    let workers = pool.idle_workers();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert!(!workers.contains(&victim), "{workers:?}");
}

#[tokio::test]
async fn invalid_components_are_rejected_by_the_worker() {
    let pool = pool(1);
    let o = pool
        .run(
            &PoolProgram::new(b"not wasm".to_vec()),
            task(b"", Duration::from_secs(30)),
        )
        .await;
    assert!(
        matches!(o.result, Err(TaskError::InvalidComponent { .. })),
        "{}",
        out(&o)
    );
    // And the worker survives a rejection.
    let o = pool
        .run(
            &PoolProgram::new(p2pc_tests::guest_bytes("hello")),
            task(b"x", Duration::from_secs(30)),
        )
        .await;
    assert!(o.result.is_ok(), "{}", out(&o));
}
