use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ByteSize;

/// What one task may consume. Every field is a hard limit: reaching it ends
/// the task with the matching [`TaskError`](crate::TaskError).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Units of fuel (roughly one per wasm instruction). Fuel is the unit of
    /// work and of billing, and it is deterministic.
    pub fuel: u64,
    /// Linear memory the guest may hold, summed over its memories.
    pub memory: ByteSize,
    /// Wall-clock time from the start of the call.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Bytes of output (stdout for commands; emitted plus returned bytes for
    /// typed jobs).
    pub output: ByteSize,
    /// Bytes of stderr kept; the rest is dropped, not an error.
    pub stderr: ByteSize,
    /// Log lines kept from the `host.log` import; the rest are counted and
    /// dropped.
    pub log_lines: u32,
}

impl Limits {
    /// Defaults for a task that names no limits: generous enough for the
    /// examples, small enough that a hostile job is stopped in seconds.
    pub const DEFAULT: Limits = Limits {
        fuel: 10_000_000_000,
        memory: ByteSize::mib(256),
        timeout: Duration::from_secs(30),
        output: ByteSize::mib(64),
        stderr: ByteSize::kib(64),
        log_lines: 1000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
