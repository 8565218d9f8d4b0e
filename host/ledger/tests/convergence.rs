//! Property: replicas that receive the same ops, in any order, with
//! duplicates, converge to the same state, and that state keeps the
//! invariants (supply conserved, nothing negative, no escrow paid twice,
//! recomputing gives the same state). Equivocations are detected by every
//! replica that holds both ops.

use p2pc_crypto::SecretKey;
use p2pc_ledger::{
    Body, CreditManager, Decision, GENESIS_PREV, Genesis, Op, OpId, Outcome, TaskHold, cosign,
};
use proptest::prelude::*;

struct Wallet {
    key: SecretKey,
    seq: u64,
    head: OpId,
}

fn wallet(seed: u8) -> Wallet {
    Wallet {
        key: SecretKey::from_seed(&[seed; 32]),
        seq: 0,
        head: GENESIS_PREV,
    }
}

/// Builds a history from `actions` against a reference replica, so most ops
/// are valid and some are not; returns every op made.
fn history(actions: &[(u8, u8, u8, u16)], equivocate: bool) -> (Genesis, Vec<Op>) {
    let mut w: Vec<Wallet> = (1..=5).map(wallet).collect();
    let genesis = Genesis {
        network: "proptest".into(),
        issuers: [w[0].key.public()].into(),
        allocations: [(w[1].key.public(), 1000)].into(),
        min_window_ms: 300,
        ..Genesis::default()
    };
    let net = genesis.id();
    let mut reference = CreditManager::new(genesis.clone());
    let mut ops = Vec::new();
    let mut holds: Vec<(OpId, [usize; 3], u8)> = Vec::new();
    let mut t = 0u64;
    for &(kind, a, b, amount) in actions {
        t += 100;
        let (a, b) = (a as usize % 5, b as usize % 5);
        let amount = u64::from(amount % 500) + 1;
        let deps: Vec<OpId> = reference
            .incoming(&w[a].key.public())
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let body = match kind % 5 {
            0 => Body::Mint {
                to: w[b].key.public(),
                amount,
            },
            1 => Body::Transfer {
                to: w[b].key.public(),
                amount,
            },
            2 => {
                let (worker, arbiter) = ((a + 1) % 5, (a + 2) % 5);
                if amount % 2 == 0 {
                    Body::Hold {
                        worker: w[worker].key.public(),
                        arbiter: w[arbiter].key.public(),
                        price: 1,
                        fuel_limit: amount,
                        window_ms: 300,
                        collateral: amount % 3,
                    }
                } else {
                    // A task hold: a price per million fuel, rounded up,
                    // and a deadline some refunds must wait for.
                    Body::TaskHold(TaskHold {
                        worker: w[worker].key.public(),
                        arbiter: w[arbiter].key.public(),
                        price: 1 + b as u64 * 10_000,
                        fuel_limit: amount * 1000,
                        window_ms: 300,
                        collateral: amount % 3,
                        task: *blake3::hash(&t.to_be_bytes()).as_bytes(),
                        deadline_ms: t + (b as u64 % 4) * 100,
                    })
                }
            }
            4 => {
                // The worker of some hold bonds its collateral (or tries to).
                let Some((escrow, parties, _)) = holds.get(b % holds.len().max(1)).copied() else {
                    continue;
                };
                let worker = parties[1];
                let deps: Vec<OpId> = reference
                    .incoming(&w[worker].key.public())
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                let ww = &mut w[worker];
                ww.seq += 1;
                let op = Op::sign(
                    &ww.key,
                    net,
                    ww.seq,
                    ww.head,
                    t,
                    deps,
                    Body::Bond { escrow },
                );
                ww.head = op.id();
                reference.insert(op.clone());
                ops.push(op);
                continue;
            }
            _ => {
                let Some((escrow, parties, step)) = holds.pop() else {
                    continue;
                };
                let pair = [parties[(b) % 3], parties[(b + 1) % 3]];
                let (outcome, time) = if step == 1 {
                    (
                        if amount % 2 == 0 {
                            Outcome::Pay {
                                fuel_used: amount * 3,
                            }
                        } else {
                            Outcome::Refund
                        },
                        t,
                    )
                } else {
                    (Outcome::Confirm, t + 1000)
                };
                let cosig = cosign(&w[pair[1]].key, &escrow, step, outcome, time);
                let cosigner = w[pair[1]].key.public();
                let author = pair[0];
                let deps: Vec<OpId> = reference
                    .incoming(&w[author].key.public())
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                let wa = &mut w[author];
                wa.seq += 1;
                let op = Op::sign(
                    &wa.key,
                    net,
                    wa.seq,
                    wa.head,
                    time,
                    deps,
                    Body::Decide(Decision {
                        escrow,
                        step,
                        outcome,
                        cosigner,
                        cosignature: cosig,
                    }),
                );
                w[author].head = op.id();
                reference.insert(op.clone());
                if step == 1 {
                    holds.insert(0, (escrow, parties, 2));
                }
                ops.push(op);
                continue;
            }
        };
        let wa = &mut w[a];
        wa.seq += 1;
        let op = Op::sign(&wa.key, net, wa.seq, wa.head, t, deps, body.clone());
        wa.head = op.id();
        reference.insert(op.clone());
        if let Body::Hold { .. } | Body::TaskHold(_) = body
            && reference.is_applied(&op.id())
        {
            holds.push((op.id(), [a, (a + 1) % 5, (a + 2) % 5], 1));
        }
        ops.push(op);
    }
    if equivocate && let Some(last) = ops.iter().rev().find(|o| o.seq > 1).cloned() {
        // A second op at the same position in the same chain.
        let key = &w[(1..=5)
            .position(|s| SecretKey::from_seed(&[s as u8; 32]).public() == last.author)
            .unwrap_or(0)]
        .key;
        let twin = Op::sign(
            key,
            net,
            last.seq,
            last.prev,
            last.time_ms + 1,
            vec![],
            Body::Transfer {
                to: w[4].key.public(),
                amount: 1,
            },
        );
        ops.push(twin);
    }
    (genesis, ops)
}

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
