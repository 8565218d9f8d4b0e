//! The pieces of deterministic mode that WASI would otherwise take from the
//! host: clocks and randomness.
//!
//! With these, a task's output and fuel depend only on the component, the
//! input and the seed, so any replica can re-run a task and compare results
//! by hash.

use std::convert::Infallible;
use std::time::Duration;

use rand::TryRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The wall clock a deterministic task sees: always 2000-01-01T00:00:00Z.
/// A fixed instant (rather than 1970) keeps naive date code away from the
/// edge of its range.
pub(crate) struct FixedWallClock;

const Y2K_UNIX_SECONDS: u64 = 946_684_800;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        Duration::from_secs(Y2K_UNIX_SECONDS)
    }
}

/// A monotonic clock that advances by one microsecond each time it is read.
/// Elapsed-time measurements in the guest stay positive and ordered, and
/// depend only on how many times the guest looked at the clock.
pub(crate) struct SteppingClock {
    now: std::sync::atomic::AtomicU64,
}

impl SteppingClock {
    const STEP_NS: u64 = 1_000;

    pub(crate) fn new() -> Self {
        Self {
            now: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        Self::STEP_NS
    }

    fn now(&self) -> u64 {
        self.now
            .fetch_add(Self::STEP_NS, std::sync::atomic::Ordering::Relaxed)
            + Self::STEP_NS
    }
}

/// A random stream derived from a 32-byte seed with BLAKE3 in extendable
/// output mode. Each purpose (secure, insecure) gets its own domain so the
/// two streams never repeat each other.
pub(crate) struct SeededRng {
    xof: blake3::OutputReader,
}

impl SeededRng {
    pub(crate) fn new(seed: &[u8; 32], purpose: &str) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("p2pc sandbox seeded random v1");
        hasher.update(seed);
        hasher.update(purpose.as_bytes());
        Self {
            xof: hasher.finalize_xof(),
        }
    }

    /// A 128-bit value for `wasi:random/insecure-seed`.
    pub(crate) fn seed_u128(seed: &[u8; 32]) -> u128 {
        let mut rng = Self::new(seed, "insecure-seed");
        let mut bytes = [0; 16];
        rng.xof.fill(&mut bytes);
        u128::from_le_bytes(bytes)
    }
}

impl TryRng for SeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.xof.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.xof.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.xof.fill(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_seed_same_stream_other_purpose_other_stream() {
        let seed = [7; 32];
        let mut x = SeededRng::new(&seed, "secure");
        let mut y = SeededRng::new(&seed, "secure");
        let mut z = SeededRng::new(&seed, "insecure");
        let (vx, vy, vz) = (x.next_u64(), y.next_u64(), z.next_u64());
        assert_eq!(vx, vy);
        assert_ne!(vx, vz);
    }

    #[test]
    fn stepping_clock_is_strictly_increasing() {
        let c = SteppingClock::new();
        let (a, b) = (c.now(), c.now());
        assert!(b > a);
    }
}
