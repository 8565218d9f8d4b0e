use std::path::PathBuf;
use std::time::Duration;

use p2pc_types::ByteSize;

/// How a [`WasmExecutor`](crate::WasmExecutor) sets up its engine. One
/// executor (and so one engine) serves a whole node.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where compiled components are cached across runs. `None` keeps the
    /// cache in memory only, so every new executor compiles again.
    pub cache_dir: Option<PathBuf>,
    /// Tasks that may run at once. The pooling allocator reserves slots for
    /// this many instances up front; further tasks wait for a free slot.
    pub max_concurrent: u32,
    /// The most linear memory any one task may be given. Tasks asking for
    /// more are refused before they start.
    pub max_memory: ByteSize,
    /// Whether to meter fuel. Always on in a node, because fuel is what a
    /// task is billed for; off only to measure what metering costs.
    pub fuel_metering: bool,
    /// How often the deadline clock ticks, when fuel metering is off (with
    /// it on, deadlines need no clock: see `fuel_yield_interval`). A task
    /// overruns its timeout by at most about one tick.
    pub epoch_tick: Duration,
    /// With fuel metering on: a running task hands control back to the host
    /// after every this much fuel, and the host ends it there once its
    /// deadline has passed. This replaces epoch interruption, whose checks
    /// cost every loop and call, with the fuel checks metering makes anyway.
    /// A deadline is then late by at most the time this much fuel takes
    /// (about a millisecond at 10^6) plus the host calls made meanwhile.
    /// It never changes the fuel a task uses.
    pub fuel_yield_interval: u64,
    /// Canonicalise NaNs, which makes floating-point results the same bits
    /// on every CPU. Always on in a node (replicas compare outputs); off
    /// only to measure what it costs.
    pub nan_canonicalization: bool,
    /// How deadlines are kept. [`Deadlines::Auto`] in a node; the others
    /// exist to measure what each way costs.
    pub deadlines: Deadlines,
    /// Deepest wasm stack a task may use before it ends with "stack
    /// overflow".
    pub max_wasm_stack: usize,
    /// Compiled programs kept in memory for instant reuse.
    pub program_cache_entries: usize,
}

/// How a task's deadline is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deadlines {
    /// At fuel yields when fuel is metered, by epoch interruption when not.
    #[default]
    Auto,
    /// By epoch interruption always, fuel or not: checks in every loop
    /// and call (how p2pc kept them before fuel yields; kept for the
    /// comparison in `benches/compute.rs`).
    Epoch,
    /// Not at all: a task runs until it ends or runs out of fuel. Only to
    /// measure the sandbox with nothing checked.
    Off,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_concurrent: 64,
            max_memory: ByteSize::gib(4),
            fuel_metering: true,
            epoch_tick: Duration::from_millis(10),
            fuel_yield_interval: 1_000_000,
            deadlines: Deadlines::Auto,
            nan_canonicalization: true,
            max_wasm_stack: 512 * 1024,
            program_cache_entries: 256,
        }
    }
}
