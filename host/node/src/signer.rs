//! The node's keys: its signing key and the sequence numbers of the
//! envelopes it signs, and its X25519 seal key, which sealed tasks' keys
//! are wrapped for.

use std::sync::atomic::{AtomicU64, Ordering};

use p2pc_crypto::{Envelope, PublicKey, SealKey, SecretKey};

/// Signs the node's envelopes. Shared by every service that signs.
pub(crate) struct Signer {
    key: SecretKey,
    public: PublicKey,
    sequence: AtomicU64,
    seal: SealKey,
}

impl Signer {
    pub(crate) fn new(key: SecretKey, seal: SealKey) -> Self {
        Self {
            public: key.public(),
            key,
            sequence: AtomicU64::new(0),
            seal,
        }
    }

    /// The key sealed tasks' inputs (as a worker) and outputs (as a
    /// submitter) are wrapped for.
    pub(crate) fn seal_key(&self) -> &SealKey {
        &self.seal
    }

    pub(crate) fn key(&self) -> &SecretKey {
        &self.key
    }

    pub(crate) fn public(&self) -> PublicKey {
        self.public
    }

    /// A sequence number above every one this node used before, even
    /// across restarts: microseconds since the epoch, bumped past the last.
    pub(crate) fn next_sequence(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut last = self.sequence.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self
                .sequence
                .compare_exchange(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Signs `payload` as an envelope of `kind`.
    pub(crate) fn seal(&self, kind: &str, payload: Vec<u8>) -> Envelope {
        Envelope::seal(&self.key, kind, self.next_sequence(), payload)
    }
}
