//! The p2pc sandbox: runs jobs, bounded in fuel, memory, time and output,
//! and reports how each ended.
//!
//! [`SandboxExecutor`] is the interface a node uses to run a task whatever
//! the executor; [`WasmExecutor`] is the default
//! implementation in this crate: wasmtime with Cranelift, the pooling allocator, fuel
//! metering (which also keeps deadlines, at fuel yields) and a per-task memory limiter, WASI P2 with no
//! ambient authority, and an on-disk cache of compiled components.
//!
//! This crate does not fetch, verify or schedule anything: it is handed
//! component bytes and a [`Task`] and returns an [`Outcome`].
//!
//! ```no_run
//! use p2pc_sandbox::{Config, Task, TaskError, WasmExecutor};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let executor = WasmExecutor::new(Config::default())?;
//! let program = executor.load(&std::fs::read("hello.wasm")?).await?;
//! let outcome = executor.run(&program, Task::run(b"world".to_vec())).await;
//! match outcome.result {
//!     Ok(output) => println!("{}", String::from_utf8_lossy(&output)),
//!     Err(TaskError::OutOfFuel { limit }) => eprintln!("needs more than {limit} fuel"),
//!     Err(other) => eprintln!("{other}"),
//! }
//! println!("fuel used: {}", outcome.usage.fuel_used);
//! # Ok(())
//! # }
//! ```
//!
//! Modules:
//! - `executor`: [`WasmExecutor`] and [`Program`] (a compiled, linked component).
//! - `task`: [`Task`], [`Call`], [`Mode`], [`Grants`], [`Outcome`].
//! - `config`: [`Config`] of the engine.
//! - `cache`: compiled-component cache and its [`CacheStats`].
//! - `state`: what a task's store holds; the `p2pc:job/host` implementation.
//! - `bindings`: host bindings generated from `wit/job.wit`.
//! - `determinism`: virtual clocks and seeded randomness.
//! - `limiter`, `pipe`: memory accounting and capped output streams.

#![deny(missing_docs)]

mod bindings;
mod cache;
mod config;
mod determinism;
mod executor;
mod limiter;
pub mod mapreduce;
mod pipe;
mod state;
mod stdin;
mod task;

use std::future::Future;
use std::path::PathBuf;

pub use cache::CacheStats;
pub use config::{Config, Deadlines};
#[doc(hidden)]
pub use executor::cache_files;
pub use executor::{Program, ProgressSink, WasmExecutor};
pub use p2pc_types::{ByteSize, Limits, TaskError, Usage, World};
pub use stdin::{FeedClosed, InputFeed, READ_MAX, StreamedInput, streamed};
pub use task::{Call, Grants, LogLevel, LogLine, Mode, Outcome, Task};

pub use bytes::Bytes;

/// Runs tasks of one kind of artifact. Every implementation bounds what a
/// task may consume by its [`Limits`] and reports every ending as an
/// [`Outcome`], never a panic.
///
/// The wasm executor is the default; the process and container executors
/// of `p2pc-exec`, and its pool of isolated wasm workers, implement the same
/// trait as operator-enabled alternatives.
pub trait SandboxExecutor: Send + Sync {
    /// Short name for logs and configuration: `"wasm"`, `"process"`, ...
    fn kind(&self) -> &'static str;

    /// Runs `task` on `artifact`.
    fn execute(&self, artifact: &Artifact, task: Task) -> impl Future<Output = Outcome> + Send;
}

/// What an executor runs: a component, a native program or a root file
/// system tarball, with the command line that goes with it.
#[derive(Clone, Debug, Default)]
pub struct Artifact {
    /// The bytes: content-addressed by their BLAKE3 like every artifact.
    pub bytes: bytes::Bytes,
    /// A file name for the program (its `argv[0]` for native programs).
    /// Empty means `program`.
    pub name: String,
    /// The artifact's own arguments after the program name (a bundle's
    /// `args`); a task's [`Task::args`] follow them. Native programs and
    /// containers receive them as their command line, components in
    /// `wasi:cli/environment`.
    pub args: Vec<String>,
}

impl Artifact {
    /// An artifact with no name and no arguments of its own.
    pub fn new(bytes: impl Into<bytes::Bytes>) -> Self {
        Self {
            bytes: bytes.into(),
            ..Self::default()
        }
    }

    /// BLAKE3 of the bytes.
    pub fn blake3(&self) -> [u8; 32] {
        *blake3::hash(&self.bytes).as_bytes()
    }
}

/// Why an executor could not be set up. (How a task ended is a
/// [`TaskError`], inside its [`Outcome`].)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// wasmtime refused the engine or linker configuration.
    #[error("could not set up the wasm engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The compiled-component cache directory could not be created.
    #[error("could not create the component cache directory {}: {source}", path.display())]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The deadline clock thread could not be started.
    #[error("could not start the deadline clock thread: {0}")]
    Thread(std::io::Error),
    /// The configured memory ceiling is beyond what 32-bit wasm can address.
    #[error("max memory {0} is more than the 4GiB a 32-bit wasm memory can address")]
    MemoryCeiling(ByteSize),
}

/// Result type of this crate's setup functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;
