//! The isolated wasm worker: the program a [`WasmPool`](crate::WasmPool)
//! runs as each of its child processes. It reads task frames on stdin, runs
//! them in an in-process [`WasmExecutor`], and writes outcome frames on
//! stdout, until stdin closes.

use std::collections::HashMap;
use std::sync::Arc;

use p2pc_sandbox::{ByteSize, Config, Outcome, Program, TaskError, WasmExecutor};

use crate::wire::{self, Request, Response};

/// Largest request a worker reads: a bundle's component plus its input.
const MAX_REQUEST: usize = 1 << 30;
/// Compiled components a worker keeps.
const PROGRAMS: usize = 32;

/// Entry point of a worker process: serves the pool on stdin and stdout.
/// Arguments: `--max-memory BYTES` (default 4 GiB).
pub fn main() -> std::process::ExitCode {
    let mut max_memory = ByteSize::gib(4);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--max-memory" {
            match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => max_memory = ByteSize(v),
                None => {
                    eprintln!("p2pc wasm worker: --max-memory needs a number of bytes");
                    return std::process::ExitCode::from(2);
                }
            }
        }
    }
    serve_blocking(max_memory)
}

/// Serves the pool on stdin and stdout with tasks of at most `max_memory`,
/// until stdin closes. For a binary that parses its own arguments.
pub fn serve_blocking(max_memory: ByteSize) -> std::process::ExitCode {
    // One task at a time, driven on this thread: no cross-thread wake-ups.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("p2pc wasm worker: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match serve(&runtime, max_memory) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("p2pc wasm worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads and writes the pipes on this thread with blocking calls: a task
/// start then costs two pipe wake-ups, not hops through a blocking pool.
fn serve(
    runtime: &tokio::runtime::Runtime,
    max_memory: ByteSize,
) -> Result<(), Box<dyn std::error::Error>> {
    let _enter = runtime.enter();
    let executor = WasmExecutor::new(Config {
        // A compromised worker must not be able to poison a cache that
        // other workers trust, so it compiles in memory only.
        cache_dir: None,
        max_concurrent: 1,
        max_memory,
        ..Config::default()
    })?;
    let mut programs: HashMap<[u8; 32], Arc<Program>> = HashMap::new();
    let mut stdout = std::io::stdout().lock();
    wire::set_nonblocking(0)?;
    loop {
        let mut frame = wire::Partial::default();
        match frame.fill(0, MAX_REQUEST, wire::SPIN, true) {
            Ok(_) => {}
            // The pool closed the pipe between tasks: a clean end.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && frame.is_empty() => {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let req: Request = frame.decode()?;
        let response = runtime.block_on(handle(&executor, &mut programs, req));
        wire::write_frame_blocking(&mut stdout, &response)?;
    }
}

async fn handle(
    executor: &WasmExecutor,
    programs: &mut HashMap<[u8; 32], Arc<Program>>,
    mut req: Request,
) -> Response {
    let failed = |e: TaskError| Response::from_outcome(Outcome::rejected(e, Default::default()));
    let Ok(hash) = <[u8; 32]>::try_from(req.component_blake3.as_slice()) else {
        return failed(TaskError::WorkerLost {
            reason: "the request names no component".into(),
        });
    };
    let program = match programs.get(&hash) {
        Some(p) => p.clone(),
        None if req.component.is_empty() => {
            return Response {
                missing_component: true,
                ..Response::default()
            };
        }
        None => {
            if *blake3::hash(&req.component).as_bytes() != hash {
                return failed(TaskError::InvalidComponent {
                    reason: "the component does not match its BLAKE3".into(),
                });
            }
            let p = match executor.load(&std::mem::take(&mut req.component)).await {
                Ok(p) => p,
                Err(e) => return failed(e),
            };
            if programs.len() >= PROGRAMS {
                programs.clear();
            }
            programs.insert(hash, p.clone());
            p
        }
    };
    match req.task() {
        Ok(task) => Response::from_outcome(executor.run(&program, task).await),
        Err(e) => failed(TaskError::WorkerLost {
            reason: format!("malformed request: {e}"),
        }),
    }
}
