//! The process and container executors and the isolated wasm pool, run for
//! real: bubblewrap, podman and worker processes on this machine.
//!
//! A test whose tool is missing says so on stderr and passes, unless
//! `P2PC_REQUIRE_ISOLATION=1` (set by `.ci/run`), which makes it fail.

mod container;
mod pool;
mod process;
mod support;
