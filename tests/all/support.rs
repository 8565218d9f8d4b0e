//! Shared set-up: one executor per test binary (so each component compiles
//! once), and a bound on every test's running time.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use p2pc_sandbox::{Config, Outcome, Task, TaskError, WasmExecutor};

/// No test may run longer than this; a hang becomes a failure.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A compiled-component cache shared by the tests that do not test caching.
fn shared_cache() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

/// A fresh executor over the shared cache.
pub fn executor() -> WasmExecutor {
    WasmExecutor::new(Config {
        cache_dir: Some(shared_cache().path().to_owned()),
        ..Config::default()
    })
    .expect("executor")
}

/// Runs `fut` on a multi-threaded runtime, failing if it takes too long.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            tokio::time::timeout(TEST_TIMEOUT, fut)
                .await
                .expect("test timed out")
        })
}

/// Runs guest `name` (wasm32-wasip2 build) with `input` and default limits.
pub async fn run(exec: &WasmExecutor, name: &str, input: &[u8]) -> Outcome {
    run_task(exec, name, Task::run(input.to_vec())).await
}

pub async fn run_task(exec: &WasmExecutor, name: &str, task: Task) -> Outcome {
    exec.run_component(&p2pc_tests::guest_bytes(name), task)
        .await
}

/// The output of a successful outcome, or a panic naming what went wrong.
pub fn ok(outcome: &Outcome) -> &[u8] {
    match &outcome.result {
        Ok(out) => out,
        Err(e) => panic!(
            "expected success, got {e} (stderr: {})",
            String::from_utf8_lossy(&outcome.stderr)
        ),
    }
}

/// The error of a failed outcome.
pub fn err(outcome: &Outcome) -> &TaskError {
    match &outcome.result {
        Ok(out) => panic!("expected failure, got {} bytes of output", out.len()),
        Err(e) => e,
    }
}

/// A two-thread runtime for tests that run whole nodes.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every escrow on `node`'s ledger replica.
pub async fn holds(node: &p2pc_node::ComputeNode) -> Vec<p2pc_node::api::HeldEscrow> {
    match node
        .ledger(p2pc_node::LedgerRequest::Holds { account: None })
        .await
        .expect("holds")
    {
        p2pc_node::LedgerAnswer::Holds(h) => h.holds,
        other => panic!("holds answered {other:?}"),
    }
}

/// `of`'s balance on `node`'s ledger replica.
pub async fn balance(
    node: &p2pc_node::ComputeNode,
    of: p2pc_crypto::PublicKey,
) -> p2pc_node::api::Balance {
    match node
        .ledger(p2pc_node::LedgerRequest::Balance { account: Some(of) })
        .await
        .expect("balance")
    {
        p2pc_node::LedgerAnswer::Balance(b) => b,
        other => panic!("a balance answered {other:?}"),
    }
}

/// Asserts `node`'s ledger replica verifies.
pub async fn verify_ok(node: &p2pc_node::ComputeNode) {
    match node
        .ledger(p2pc_node::LedgerRequest::Verify)
        .await
        .expect("verify")
    {
        p2pc_node::LedgerAnswer::Verify(v) => assert!(v.ok, "{v:?}"),
        other => panic!("verify answered {other:?}"),
    }
}
