//! The p2pc market: what a network of strangers needs beyond the task
//! plane. A price that moves with supply and demand
//! ([`DynamicPricingEngine`]), a memory of who behaved
//! ([`ReputationManager`]), a rule for choosing workers ([`select`]) and
//! a way to catch a worker that returns a wrong answer ([`validation`]:
//! k-of-n agreement and BOINC's adaptive replication).
//!
//! Pure, like the ledger's `CreditManager`: no I/O, no clock, no async, no
//! randomness of its own. Times and random numbers are arguments, so
//! every rule is deterministic given its inputs and can be checked by
//! property tests and run a million times in a simulation. The node
//! (`p2pc-node`) drives it: it verifies the signed offers and evidence
//! it feeds in, keeps the records on disk and carries out the decisions.
//!
//! `docs/design/market.md` has the rules and the attacks they answer.

#![deny(missing_docs)]

pub mod offer;
pub mod pricing;
pub mod reputation;
pub mod select;
pub mod validation;

pub use offer::{Insert, Offer, OfferBook};
pub use pricing::{DynamicPricingEngine, PricingConfig, PricingError, Sample};
pub use reputation::{Evidence, Record, ReputationConfig, ReputationManager};
pub use select::{Candidate, Want};
pub use validation::{Validation, Verdict};

/// SplitMix64: a small seeded generator for repeatable choices (a test's
/// seeded node, the simulations). Not for anything a peer must not
/// predict: the node draws those from the OS.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
