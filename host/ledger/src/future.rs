//! Ops dated ahead of the local clock, held until it catches up.
//!
//! An op carries its author's claimed time. A replica that applied an op
//! dated hours ahead would let its author backdate nothing but predate
//! everything: a hold whose window "already passed" by the author's
//! clock, say. So the node delays such ops instead of applying or
//! refusing them; validity itself still never reads a clock, which keeps
//! every replica's state a function of the ops alone. The clock is passed
//! in, so this type is as deterministic as the rest of the crate.
//!
//! The queue is bounded in bytes. When it is full the op dated furthest
//! ahead is dropped: anti-entropy offers it again later, so dropping one
//! only delays it further.

use std::collections::BTreeMap;

use crate::op::{Op, OpId};

/// What [`FutureOps::offer`] did with an op.
#[derive(Debug)]
pub enum Offer {
    /// The op is not ahead of the clock (beyond the allowed skew): apply
    /// it now.
    Ready(Box<Op>),
    /// The op waits here until [`FutureOps::due`] returns it.
    Parked,
    /// The op was already waiting.
    AlreadyParked,
    /// The queue is full of ops due sooner; this one was not kept.
    Dropped,
}

/// Ops waiting for the local clock, earliest first.
#[derive(Debug)]
pub struct FutureOps {
    skew_ms: u64,
    max_bytes: usize,
    bytes: usize,
    queue: BTreeMap<(u64, OpId), (Op, usize)>,
}

impl FutureOps {
    /// A queue that lets ops through up to `skew_ms` ahead of the clock
    /// and holds at most `max_bytes` of encoded ops.
    pub fn new(skew_ms: u64, max_bytes: usize) -> Self {
        Self {
            skew_ms,
            max_bytes,
            bytes: 0,
            queue: BTreeMap::new(),
        }
    }

    /// Whether an op dated `time_ms` may be applied at local time `now_ms`.
    pub fn is_due(&self, time_ms: u64, now_ms: u64) -> bool {
        time_ms <= now_ms.saturating_add(self.skew_ms)
    }

    /// Takes an op heard at local time `now_ms`.
    pub fn offer(&mut self, op: Op, now_ms: u64) -> Offer {
        if self.is_due(op.time_ms, now_ms) {
            return Offer::Ready(Box::new(op));
        }
        let key = (op.time_ms, op.id());
        if self.queue.contains_key(&key) {
            return Offer::AlreadyParked;
        }
        let len = op.to_bytes().len();
        self.bytes += len;
        self.queue.insert(key, (op, len));
        let mut kept = true;
        while self.bytes > self.max_bytes {
            let Some((last, (_, len))) = self.queue.pop_last() else {
                break;
            };
            self.bytes -= len;
            kept &= last != key;
        }
        if kept { Offer::Parked } else { Offer::Dropped }
    }

    /// Removes and returns the ops due at `now_ms`, earliest first.
    pub fn due(&mut self, now_ms: u64) -> Vec<Op> {
        let mut out = Vec::new();
        let horizon = now_ms.saturating_add(self.skew_ms);
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > horizon {
                break;
            }
            let (op, len) = entry.remove();
            self.bytes -= len;
            out.push(op);
        }
        out
    }

    /// The local time at which the earliest waiting op becomes due.
    pub fn next_due(&self) -> Option<u64> {
        self.queue
            .keys()
            .next()
            .map(|(t, _)| t.saturating_sub(self.skew_ms))
    }

    /// How many ops wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Encoded bytes of the waiting ops.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
