//! Property: replicas that receive the same ops, in any order, with
//! duplicates, converge to the same state, and that state keeps the
//! invariants (supply conserved, nothing negative, no escrow paid twice,
//! recomputing gives the same state). Equivocations are detected by every
//! replica that holds both ops.

use p2pc_ledger::CreditManager;
use p2pc_ledger::fuzzing::history;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_delivery(
        actions in prop::collection::vec((0u8..5, 0u8..5, 0u8..5, any::<u16>()), 1..40),
        // Two to six replicas, each with its own delivery.
        orders in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..80), 2..=6),
        equivocate in any::<bool>(),
    ) {
        let (genesis, ops) = history(&actions, equivocate);
        if ops.is_empty() {
            return Ok(());
        }
        let mut digests = Vec::new();
        for order in &orders {
            let mut replica = CreditManager::new(genesis.clone());
            // A random prefix of picks (reordered, duplicated), then
            // everything in reverse, so every replica ends with every op.
            for pick in order {
                replica.insert(ops[pick.index(ops.len())].clone());
            }
            // Halfway (some ops still delayed), the invariants already hold.
            prop_assert!(replica.verify().is_ok(), "partial: {:?}", replica.verify());
            for op in ops.iter().rev() {
                replica.insert(op.clone());
            }
            prop_assert!(replica.verify().is_ok(), "{:?}", replica.verify());
            if equivocate && ops.len() >= 2 {
                let last = &ops[ops.len() - 1];
                if ops[..ops.len() - 1].iter().any(|o| o.author == last.author && o.seq == last.seq) {
                    prop_assert!(replica.is_frozen(&last.author));
                }
            }
            digests.push(replica.digest());
        }
        prop_assert!(digests.windows(2).all(|p| p[0] == p[1]), "replicas disagree");
    }
}
