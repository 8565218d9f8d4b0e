use std::time::Duration;

use p2pc_types::{Limits, TaskError, Usage};
use serde::{Deserialize, Serialize};

/// One call into a job, with everything it may consume and be given.
#[derive(Clone, Debug)]
pub struct Task {
    /// Which export to call, with its input.
    pub call: Call,
    /// Hard limits; reaching one ends the task with the matching error.
    pub limits: Limits,
    /// Deterministic (the default) or not.
    pub mode: Mode,
    /// Capabilities beyond pure computation.
    pub grants: Grants,
    /// Command-line arguments after `argv[0]` (`wasi:cli/environment`'s
    /// `get-arguments` for components; appended to the artifact's own for
    /// native programs). Part of what the task is: they go into its seed and
    /// its identity, so replicas compare like with like. Bounded by
    /// [`p2pc_types::check_args`].
    pub args: Vec<String>,
}

impl Task {
    /// A deterministic `run` (or command) task over `input` with default
    /// limits, no grants, and a seed derived from the input.
    pub fn run(input: Vec<u8>) -> Self {
        let seed = *blake3::hash(&input).as_bytes();
        Self {
            call: Call::Run(input),
            limits: Limits::default(),
            mode: Mode::Deterministic { seed },
            grants: Grants::default(),
            args: Vec::new(),
        }
    }
}

/// Which export a task calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `run(input)` of the job world, or a command with `input` on stdin.
    Run(Vec<u8>),
    /// `map(shard)` of the map-reduce world.
    Map(Vec<u8>),
    /// `reduce(outputs)` of the map-reduce world.
    Reduce(Vec<Vec<u8>>),
}

impl Call {
    /// The export's name: `run`, `map` or `reduce`.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Run(_) => "run",
            Call::Map(_) => "map",
            Call::Reduce(_) => "reduce",
        }
    }
}

/// Whether a task may observe anything beyond its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Same component + same input + same seed ⇒ same output bytes and same
    /// fuel. The clock is virtual (fixed wall time, a monotonic clock that
    /// steps per read), randomness comes from the seed, there is no
    /// environment. NaN canonicalisation and deterministic relaxed SIMD are
    /// engine-wide and so apply to every task.
    Deterministic {
        /// Seeds `wasi:random`; [`Mode::derived`] makes it from what the
        /// task is.
        seed: [u8; 32],
    },
    /// Real clocks and OS randomness, for local runs that want them.
    Nondeterministic,
}

impl Mode {
    /// The deterministic mode of a task, seeded from what the task is: the
    /// component's BLAKE3, the input and the arguments. Never from a task id
    /// or a node, so every replica of the task, local or remote, sees the
    /// same randomness.
    pub fn derived(component_blake3: &[u8; 32], input: &[u8], args: &[String]) -> Self {
        Self::derived_from_hash(component_blake3, blake3::hash(input).as_bytes(), args)
    }

    /// [`Mode::derived`] from the input's BLAKE3 rather than the input:
    /// for a task that must be seeded before its input has been read (a
    /// sealed input is seeded from the sealed blob's hash, which every
    /// replica of the task shares and can check).
    pub fn derived_from_hash(
        component_blake3: &[u8; 32],
        input_blake3: &[u8; 32],
        args: &[String],
    ) -> Self {
        let mut h = blake3::Hasher::new_derive_key("p2pc task seed v2");
        h.update(component_blake3);
        h.update(input_blake3);
        h.update(&(args.len() as u64).to_le_bytes());
        for a in args {
            h.update(&(a.len() as u64).to_le_bytes());
            h.update(a.as_bytes());
        }
        Mode::Deterministic {
            seed: *h.finalize().as_bytes(),
        }
    }
}

impl Mode {
    /// The deterministic mode of one call of a component, seeded from what
    /// that call is: [`Mode::derived`] over a run's or a map's own input,
    /// or over a reduce's parts (their number, then each one's length and
    /// BLAKE3). Every map of a job gets its shard's randomness and the
    /// reduce its own, the same in `p2pctl run --shards` and on workers.
    pub fn for_call(component_blake3: &[u8; 32], call: &Call, args: &[String]) -> Self {
        match call {
            Call::Run(input) | Call::Map(input) => Self::derived(component_blake3, input, args),
            Call::Reduce(parts) => {
                let mut canonical = Vec::with_capacity(8 + parts.len() * 40);
                canonical.extend_from_slice(&(parts.len() as u64).to_le_bytes());
                for part in parts {
                    canonical.extend_from_slice(&(part.len() as u64).to_le_bytes());
                    canonical.extend_from_slice(blake3::hash(part).as_bytes());
                }
                Self::derived(component_blake3, &canonical, args)
            }
        }
    }
}

/// Capabilities a task is given. Everything is denied by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// A fresh, empty directory the job sees as `/scratch`, removed when the
    /// task ends. Nothing else of the host file system is visible.
    pub scratch: bool,
    /// Outgoing TCP/UDP and name lookup. Only for nondeterministic tasks.
    pub network: bool,
}

/// What a task produced and consumed.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The output bytes, or why there are none.
    pub result: Result<Vec<u8>, TaskError>,
    /// Fuel, peak memory and wall time, whatever the ending.
    pub usage: Usage,
    /// What the job wrote to stderr (and, for typed jobs, stdout), up to
    /// its limit.
    pub stderr: Vec<u8>,
    /// Lines the job logged through `host.log`, up to its limit.
    pub logs: Vec<LogLine>,
    /// Lines logged past the limit and dropped.
    pub logs_dropped: u64,
    /// The last progress the job reported, as (done, total).
    pub progress: Option<(u64, u64)>,
}

impl Outcome {
    /// An outcome for a task that ended before it ran: `error`, nothing
    /// consumed but the wall time.
    pub fn rejected(error: TaskError, wall_time: Duration) -> Self {
        Self {
            result: Err(error),
            usage: Usage {
                wall_time,
                ..Usage::default()
            },
            stderr: Vec::new(),
            logs: Vec::new(),
            logs_dropped: 0,
            progress: None,
        }
    }
}

/// Severity of a job's log line.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected the job coped with.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The level's name as logs and receipts spell it: `info`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// The level named `name`, as [`as_str`](Self::as_str) spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return None,
        })
    }
}

/// One line from a job's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// The text, cut to 4 KiB.
    pub message: String,
}
