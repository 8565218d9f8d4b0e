use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ByteSize;

/// What a task consumed, whatever way it ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Fuel consumed. Deterministic: the same component and input always
    /// consume the same fuel, so any replica can recompute a bill.
    pub fuel_used: u64,
    /// Largest total linear memory the guest held at any moment, in bytes.
    pub peak_memory: u64,
    /// Wall-clock time of the call. Informational only; never billed.
    #[serde(rename = "wall_time_us", with = "duration_us")]
    pub wall_time: Duration,
}

/// The WIT world a component was built for, detected from its exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `p2pc:job/job`: exports `run`.
    Job,
    /// `p2pc:job/map-reduce`: exports `map` and `reduce`.
    MapReduce,
    /// A plain WASI P2 command: exports `wasi:cli/run`, stdin in, stdout out.
    Command,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::Job => "p2pc:job/job",
            World::MapReduce => "p2pc:job/map-reduce",
            World::Command => "wasi:cli/command",
        })
    }
}

/// Every way a task can fail. A caller matches on the variant; the message
/// is for people and names the limit or the problem.
///
/// Each variant has a stable [`code`](TaskError::code) used in JSON output,
/// logs and (later) signed receipts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskError {
    /// The job ran and reported an error of its own (a `job-error` from a
    /// typed job, or a non-zero exit status from a command).
    #[error("the job reported an error: {message}")]
    GuestError {
        /// The job's message, or `exit status N` for a command.
        message: String,
    },
    /// The job used all the fuel it was given.
    #[error("out of fuel: the job used its whole limit of {limit} fuel")]
    OutOfFuel {
        /// The fuel limit that was reached.
        limit: u64,
    },
    /// The job tried to grow its memory past the limit.
    #[error("memory limit: the job tried to use more than {limit}")]
    MemoryLimit {
        /// The memory limit that was reached.
        limit: ByteSize,
    },
    /// The job was still running at its wall-clock deadline.
    #[error("deadline: the job was still running after {}", humanize(*.timeout_ms))]
    Deadline {
        /// The timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// The job recursed too deep: past wasm's call-stack limit, or past
    /// the end of its own stack, the one a Rust or C job's compiler keeps
    /// in its linear memory. The runner tells the second from a stray
    /// memory access by the run of nested calls in the trap's backtrace.
    #[error("{}", stack_overflow_message(*.in_memory, .function.as_deref()))]
    StackOverflow {
        /// The job's own stack in its linear memory ran out (not wasm's
        /// call stack).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        in_memory: bool,
        /// The function that was recursing, when the component names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        function: Option<String>,
    },
    /// The job trapped: `unreachable`, an out-of-bounds access, a Rust panic,
    /// a division by zero, and so on.
    #[error("the job trapped: {message}")]
    Trap {
        /// What wasmtime said about the trap.
        message: String,
    },
    /// The bytes are not a valid WebAssembly component (garbage, a core
    /// module, or a component wasmtime rejects).
    #[error("invalid component: {reason}")]
    InvalidComponent {
        /// Why it was rejected.
        reason: String,
    },
    /// The component is valid but is built for a world p2pc does not run, or
    /// is not the world the task asked for.
    #[error("wrong world: {reason}")]
    WrongWorld {
        /// What the component exports, and what was expected.
        reason: String,
    },
    /// The job produced more output than its limit.
    #[error("output too large: the job wrote more than {limit}")]
    OutputTooLarge {
        /// The output limit that was passed.
        limit: ByteSize,
    },
    /// The job needs, or tried to use, a capability the operator did not
    /// grant (network, an unknown host interface, ...).
    #[error("capability denied: {capability}")]
    CapabilityDenied {
        /// The capability and what the job did to ask for it.
        capability: String,
    },
    /// The task needs an executor this runner does not offer: it is not
    /// enabled by the operator, or the tool it needs (bubblewrap, podman,
    /// docker) is missing or not working.
    #[error("executor {executor:?} is not available here: {reason}")]
    ExecutorUnavailable {
        /// `wasm`, `process` or `container`.
        executor: String,
        /// What is missing and how an operator would enable it.
        reason: String,
    },
    /// The process running the task (an isolated wasm worker, a container
    /// engine) died or broke its protocol before the task ended.
    #[error("the executor was lost mid-task: {reason}")]
    WorkerLost {
        /// What was observed.
        reason: String,
    },
}

impl TaskError {
    /// A short stable name for the variant, as used in JSON (`out_of_fuel`).
    pub fn code(&self) -> &'static str {
        match self {
            TaskError::GuestError { .. } => "guest_error",
            TaskError::OutOfFuel { .. } => "out_of_fuel",
            TaskError::MemoryLimit { .. } => "memory_limit",
            TaskError::Deadline { .. } => "deadline",
            TaskError::StackOverflow { .. } => "stack_overflow",
            TaskError::Trap { .. } => "trap",
            TaskError::InvalidComponent { .. } => "invalid_component",
            TaskError::WrongWorld { .. } => "wrong_world",
            TaskError::OutputTooLarge { .. } => "output_too_large",
            TaskError::CapabilityDenied { .. } => "capability_denied",
            TaskError::ExecutorUnavailable { .. } => "executor_unavailable",
            TaskError::WorkerLost { .. } => "worker_lost",
        }
    }

    /// The job was still running after `timeout`.
    pub fn deadline(timeout: std::time::Duration) -> Self {
        TaskError::Deadline {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Whether the task never started running guest code (so nothing was
    /// consumed and nothing should be billed).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            TaskError::InvalidComponent { .. }
                | TaskError::WrongWorld { .. }
                | TaskError::CapabilityDenied { .. }
                | TaskError::ExecutorUnavailable { .. }
        )
    }
}

fn stack_overflow_message(in_memory: bool, function: Option<&str>) -> String {
    if !in_memory {
        return "stack overflow: the job exceeded the wasm stack limit".to_owned();
    }
    let calls = function.map_or_else(
        || "nested calls".to_owned(),
        |f| format!("nested calls of `{f}`"),
    );
    format!(
        "stack overflow: the job ran past the end of its own stack in {calls}; \
         this is the stack its compiler keeps in the job's linear memory, not the runner's: \
         recurse less, or link the job with a larger stack \
         (Rust: `-C link-arg=-zstack-size=N`, default 1 MiB)"
    )
}

fn humanize(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

mod duration_us {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_carries_the_code() {
        let err = TaskError::OutOfFuel { limit: 5 };
        let json = serde_json::to_value(&err).expect("serializable");
        assert_eq!(json["code"], err.code());
        let back: TaskError = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, err);
    }

    #[test]
    fn messages_name_the_limit() {
        let msg = TaskError::MemoryLimit {
            limit: ByteSize::mib(64),
        }
        .to_string();
        assert!(msg.contains("64MiB"), "{msg}");
        let msg = TaskError::Deadline { timeout_ms: 2000 }.to_string();
        assert!(msg.contains("2s"), "{msg}");
    }

    #[test]
    fn both_stack_overflows_share_a_code_and_say_whose_stack() {
        let wasm: TaskError =
            serde_json::from_str(r#"{"code":"stack_overflow"}"#).expect("the old form");
        assert_eq!(
            wasm,
            TaskError::StackOverflow {
                in_memory: false,
                function: None
            }
        );
        assert!(wasm.to_string().contains("wasm stack limit"), "{wasm}");
        let own = TaskError::StackOverflow {
            in_memory: true,
            function: Some("deep".into()),
        };
        assert_eq!(own.code(), "stack_overflow");
        let msg = own.to_string();
        assert!(
            msg.contains("its own stack") && msg.contains("`deep`"),
            "{msg}"
        );
        let json = serde_json::to_value(&own).expect("serializable");
        assert_eq!(json["code"], "stack_overflow");
        assert_eq!(
            serde_json::from_value::<TaskError>(json).expect("back"),
            own
        );
    }
}
