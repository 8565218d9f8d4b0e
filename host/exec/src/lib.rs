//! Executors beyond the in-process wasm engine, behind the same
//! [`SandboxExecutor`](p2pc_sandbox::SandboxExecutor) trait:
//!
//! - [`ProcessExecutor`]: a native program under rlimits, in its own session
//!   and (as root) its own uid, with an empty environment and a fresh
//!   working directory, inside bubblewrap namespaces where bubblewrap is
//!   installed; it refuses to run without bubblewrap unless the operator
//!   allows unisolated processes.
//! - [`ContainerExecutor`]: a command in a podman or docker container with
//!   no network, a read-only root, no capabilities, capped pids, memory and
//!   CPU, an unprivileged user and a capped tmpfs.
//! - [`WasmPool`]: the wasm engine itself in a pool of confined, long-lived
//!   worker processes, so a JIT bug that lets a job out of wasm gains
//!   nothing. [`worker::main`] is what each worker runs.
//!
//! Which of them a runner offers is the operator's choice
//! ([`ExecutorsConfig`], the `[executors]` table of `node.toml`). This crate
//! does not verify bundles or choose executors for them; it runs what it is
//! handed and reports an [`Outcome`](p2pc_sandbox::Outcome).

mod config;
mod confine;
mod container;
pub mod fuzzing;
mod io;
mod pool;
mod process;
mod wire;
pub mod worker;

pub use config::{ConfigError, ContainerSection, ExecutorsConfig, ProcessSection, WasmSection};
pub use confine::{Rlimits, find_tool, is_root};
pub use container::{ContainerConfig, ContainerExecutor};
pub use pool::{PoolConfig, PoolProgram, WasmPool};
pub use process::{DEFAULT_UID_BASE, ProcessConfig, ProcessExecutor};
