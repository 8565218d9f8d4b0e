//! Bodies of the ledger's fuzz targets in `fuzz/` (op and sync decoding,
//! and a structure-aware run of [`CreditManager`] over generated
//! histories), kept here so the normal test suite runs them over generated
//! inputs too and they cannot rot. Each must never panic, whatever the
//! input; a panic is a bug (the assertions are the ledger's invariants).

use p2pc_crypto::SecretKey;

use crate::sync::{self, SyncRequest};
use crate::{
    Body, CreditManager, Decision, GENESIS_PREV, Genesis, Insert, Op, OpId, Outcome, TaskHold,
    cosign,
};

/// Decodes `data` as one op; if that works, the encoding round-trips, the
/// id is stable, and checking its signature and admitting it to a replica
/// return (a wrong network or a bad signature is a refusal, not a panic).
pub fn op(data: &[u8]) {
    let Ok(op) = Op::from_bytes(data) else {
        return;
    };
    let bytes = op.to_bytes();
    let again = Op::from_bytes(&bytes).expect("a decoded op re-encodes to a decodable one");
    assert_eq!(again, op, "op encoding round trip");
    assert_eq!(again.id(), op.id(), "an op's id is its encoding's");
    let _ = op.signature_ok();
    let mut replica = CreditManager::new(Genesis::default());
    let checked = replica.check(&op);
    let inserted = replica.insert(op);
    assert_eq!(
        std::mem::discriminant(&checked),
        std::mem::discriminant(&inserted),
        "check predicts insert: {checked:?} then {inserted:?}"
    );
    assert!(replica.verify().is_ok(), "{:?}", replica.verify());
}

/// Decodes `data` as a sync request and as a frame of ops, as a replica
/// does with what a peer sends; a request decoded is answered from a small
/// replica, within the budget.
pub fn sync(data: &[u8]) {
    if let Ok(ops) = sync::decode_ops(data) {
        let ops: Vec<Op> = ops.into_iter().filter_map(Result::ok).collect();
        let again = sync::decode_ops(&sync::encode_ops(&ops)).expect("re-encoded ops decode");
        let again: Vec<Op> = again.into_iter().filter_map(Result::ok).collect();
        assert_eq!(again, ops, "ops frame round trip");
    }
    if let Ok(request) = SyncRequest::decode(data) {
        let again = SyncRequest::decode(&request.encode()).expect("a re-encoded request decodes");
        assert_eq!(again.encode(), request.encode(), "sync request round trip");
        // One replica for every run: building it signs ops, which would
        // cost more than the decoding fuzzed here.
        static REPLICA: std::sync::OnceLock<CreditManager> = std::sync::OnceLock::new();
        let replica = REPLICA.get_or_init(|| {
            let (genesis, ops) = history(&[(0, 0, 1, 7), (1, 1, 2, 3), (2, 1, 0, 8)], false);
            let mut replica = CreditManager::new(genesis);
            for op in ops {
                replica.insert(op);
            }
            replica
        });
        let (answer, _more) = sync::answer(replica, &request, 1 << 16);
        assert!(
            answer.len() <= replica.len(),
            "an answer sends only ops held"
        );
    }
}

/// A genesis file: parsed; if that works, written back and parsed again to
/// the same network.
pub fn genesis(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(g) = Genesis::from_toml(text, "fuzz.toml") else {
        return;
    };
    let again = Genesis::from_toml(&g.to_toml(), "again.toml").expect("a written genesis parses");
    assert_eq!(again.id(), g.id(), "genesis round trip");
}

/// A structure-aware run: `data` chooses a history (four bytes an action)
/// and two deliveries of it. Both replicas keep every invariant after every
/// op, `check` predicts `insert`, a repeat is a duplicate, and they end in
/// the same state.
pub fn credit(data: &[u8]) {
    let (Some(&flags), rest) = (data.first(), data.get(1..).unwrap_or_default()) else {
        return;
    };
    let actions: Vec<(u8, u8, u8, u16)> = rest
        .chunks_exact(4)
        .take(48)
        .map(|c| (c[0], c[1], c[2], u16::from_le_bytes([c[3], c[0] ^ c[1]])))
        .collect();
    let (genesis, ops) = history(&actions, flags & 1 == 1);
    if ops.is_empty() {
        return;
    }
    // The first replica takes them in order; the second in an order the
    // input picks (with repeats), then all of them backwards.
    let mut first = CreditManager::new(genesis.clone());
    for op in &ops {
        let checked = first.check(op);
        let inserted = first.insert(op.clone());
        if !matches!(checked, Insert::Waiting) {
            assert_eq!(
                std::mem::discriminant(&checked),
                std::mem::discriminant(&inserted),
                "check predicts insert: {checked:?} then {inserted:?}"
            );
        }
        assert!(
            matches!(first.insert(op.clone()), Insert::Duplicate),
            "a repeat is a duplicate"
        );
        assert!(first.supply().balanced(), "{:?}", first.supply());
    }
    assert!(first.verify().is_ok(), "{:?}", first.verify());
    let mut second = CreditManager::new(genesis);
    for &b in rest.iter().rev().take(64) {
        second.insert(ops[usize::from(b) % ops.len()].clone());
        assert!(second.supply().balanced(), "{:?}", second.supply());
    }
    for op in ops.iter().rev() {
        second.insert(op.clone());
    }
    assert!(second.verify().is_ok(), "{:?}", second.verify());
    let digest = first.digest();
    assert_eq!(second.digest(), digest, "replicas disagree");
    first.recompute();
    assert_eq!(first.digest(), digest, "recomputing changes nothing");
}

/// An account making ops.
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

/// Builds a history from `actions` (kind, a, b, amount) against a
/// reference replica, so most ops are valid and some are not: mints,
/// transfers, holds and task holds, bonds and both decision steps among
/// five accounts; with `equivocate`, one chain's last op gets a twin.
/// Returns the genesis and every op made.
pub fn history(actions: &[(u8, u8, u8, u16)], equivocate: bool) -> (Genesis, Vec<Op>) {
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

#[cfg(test)]
mod tests {
    use p2pc_crypto::fuzzing::inputs;

    use super::*;

    #[test]
    fn smoke_op_decoding() {
        let (_, ops) = history(&[(0, 0, 1, 9), (2, 1, 0, 4), (5, 1, 2, 5)], false);
        for op in &ops {
            for input in inputs("op", &op.to_bytes(), 700) {
                super::op(&input);
            }
        }
    }

    #[test]
    fn smoke_sync_decoding() {
        let (genesis, ops) = history(&[(0, 0, 1, 9), (1, 1, 2, 4)], false);
        let mut replica = CreditManager::new(genesis);
        for op in &ops {
            replica.insert(op.clone());
        }
        for input in inputs("sync", &sync::encode_ops(&ops), 1500) {
            sync(&input);
        }
        for input in inputs("sync", &SyncRequest::of(&replica).encode(), 1500) {
            sync(&input);
        }
    }

    #[test]
    fn smoke_genesis_files() {
        let (g, _) = history(&[], false);
        for input in inputs("genesis", g.to_toml().as_bytes(), 1500) {
            genesis(&input);
        }
    }

    #[test]
    fn smoke_credit_manager_runs() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..150 {
            let len = 1 + (x % 120) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            p2pc_crypto::fuzzing::seed("credit", &data);
            credit(&data);
        }
    }
}
