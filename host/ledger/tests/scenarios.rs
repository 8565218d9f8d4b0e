//! Escrow and chain scenarios on one replica, each op signed for real.

use p2pc_crypto::SecretKey;
use p2pc_ledger::{
    ArbiterPolicy, Body, CreditManager, Decision, FUEL_PER_PRICE_UNIT, FutureOps, GENESIS_PREV,
    Genesis, Insert, Offer, Op, OpId, Outcome, Reject, TaskHold, cosign, cost,
};

/// An account writing its own chain.
struct Wallet {
    key: SecretKey,
    net: [u8; 32],
    seq: u64,
    head: OpId,
}

impl Wallet {
    fn new() -> Self {
        Self {
            key: SecretKey::generate(),
            net: [0; 32],
            seq: 0,
            head: GENESIS_PREV,
        }
    }

    fn op(&mut self, time_ms: u64, deps: Vec<OpId>, body: Body) -> Op {
        self.seq += 1;
        let op = Op::sign(
            &self.key, self.net, self.seq, self.head, time_ms, deps, body,
        );
        self.head = op.id();
        op
    }

    /// Forgets a draft that was checked but not inserted.
    fn undo(&mut self, ledger: &CreditManager) {
        (self.seq, self.head) = ledger.head(&self.key.public());
    }

    /// Deps claiming everything sent to this wallet so far.
    fn claims(&self, ledger: &CreditManager) -> Vec<OpId> {
        ledger
            .incoming(&self.key.public())
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    fn decide(
        &mut self,
        ledger: &CreditManager,
        cosigner: &SecretKey,
        escrow: OpId,
        step: u8,
        outcome: Outcome,
        time_ms: u64,
    ) -> Op {
        let deps = self.claims(ledger);
        self.op(
            time_ms,
            deps,
            Body::Decide(Decision {
                escrow,
                step,
                outcome,
                cosigner: cosigner.public(),
                cosignature: cosign(cosigner, &escrow, step, outcome, time_ms),
            }),
        )
    }
}

struct World {
    ledger: CreditManager,
    issuer: Wallet,
    owner: Wallet,
    worker: Wallet,
    arbiter: Wallet,
}

fn applied(r: Insert) {
    assert!(matches!(r, Insert::Applied(_)), "{r:?}");
}

/// An owner with 1000 credits and an escrow of 10 fuel at 10 credits,
/// with a challenge window of 1000 ms.
fn world() -> (World, OpId) {
    world_with(0)
}

/// [`world`] where the hold asks the worker for `collateral`.
fn world_with(collateral: u64) -> (World, OpId) {
    let mut issuer = Wallet::new();
    let mut owner = Wallet::new();
    let mut worker = Wallet::new();
    let mut arbiter = Wallet::new();
    let genesis = Genesis {
        network: "scenarios".into(),
        issuers: [issuer.key.public()].into(),
        // Workers asked for collateral start with some credits.
        allocations: if collateral > 0 {
            [(worker.key.public(), 50)].into()
        } else {
            Default::default()
        },
        min_window_ms: 1000,
        arbiters: ArbiterPolicy::Listed([arbiter.key.public()].into()),
    };
    for w in [&mut issuer, &mut owner, &mut worker, &mut arbiter] {
        w.net = genesis.id();
    }
    let mut ledger = CreditManager::new(genesis);
    let mint = issuer.op(
        0,
        vec![],
        Body::Mint {
            to: owner.key.public(),
            amount: 1000,
        },
    );
    applied(ledger.insert(mint));
    let deps = owner.claims(&ledger);
    let hold = owner.op(
        10,
        deps,
        Body::Hold {
            worker: worker.key.public(),
            arbiter: arbiter.key.public(),
            price: 10,
            fuel_limit: 10,
            window_ms: 1000,
            collateral,
        },
    );
    let escrow = hold.id();
    applied(ledger.insert(hold));
    assert_eq!(ledger.balance(&owner.key.public()), 900);
    (
        World {
            ledger,
            issuer,
            owner,
            worker,
            arbiter,
        },
        escrow,
    )
}

#[test]
fn happy_path_hold_settle_confirm_then_spend_the_payout() {
    let (mut w, escrow) = world();
    let settle = w.owner.decide(
        &w.ledger,
        &w.worker.key,
        escrow,
        1,
        Outcome::Pay { fuel_used: 7 },
        20,
    );
    applied(w.ledger.insert(settle));
    // Pending: nothing paid yet.
    assert!(w.ledger.incoming(&w.worker.key.public()).is_empty());
    // The window closes; worker and arbiter make it final.
    let fin = w
        .worker
        .decide(&w.ledger, &w.arbiter.key, escrow, 2, Outcome::Confirm, 1020);
    applied(w.ledger.insert(fin));
    assert_eq!(w.ledger.incoming(&w.worker.key.public())[0].1, 70);
    assert_eq!(w.ledger.incoming(&w.owner.key.public())[0].1, 30);
    // The worker spends what it earned.
    let deps = w.worker.claims(&w.ledger);
    let pay = w.worker.op(
        1030,
        deps,
        Body::Transfer {
            to: w.arbiter.key.public(),
            amount: 70,
        },
    );
    applied(w.ledger.insert(pay));
    assert_eq!(w.ledger.balance(&w.worker.key.public()), 0);
    w.ledger.verify().expect("invariants");
}

#[test]
fn worker_and_arbiter_cannot_confirm_inside_the_window() {
    let (mut w, escrow) = world();
    let settle = w.owner.decide(
        &w.ledger,
        &w.worker.key,
        escrow,
        1,
        Outcome::Pay { fuel_used: 7 },
        20,
    );
    applied(w.ledger.insert(settle));
    let early = w
        .worker
        .decide(&w.ledger, &w.arbiter.key, escrow, 2, Outcome::Confirm, 500);
    assert!(matches!(
        w.ledger.insert(early),
        Insert::Rejected(Reject::Escrow(_))
    ));
}

#[test]
fn timeout_refund_by_owner_and_arbiter() {
    let (mut w, escrow) = world();
    let refund = w
        .owner
        .decide(&w.ledger, &w.arbiter.key, escrow, 1, Outcome::Refund, 5000);
    applied(w.ledger.insert(refund));
    let fin = w
        .owner
        .decide(&w.ledger, &w.arbiter.key, escrow, 2, Outcome::Confirm, 5001);
    applied(w.ledger.insert(fin));
    assert!(w.ledger.incoming(&w.worker.key.public()).is_empty());
    assert_eq!(w.ledger.incoming(&w.owner.key.public())[0].1, 100);
    w.ledger.verify().expect("invariants");
}

#[test]
fn a_dispute_inside_the_window_reverses_the_payout_and_after_it_is_refused() {
    // After the window: refused.
    let (mut w, escrow) = world();
    let settle = w.owner.decide(
        &w.ledger,
        &w.worker.key,
        escrow,
        1,
        Outcome::Pay { fuel_used: 10 },
        20,
    );
    applied(w.ledger.insert(settle));
    let late = w
        .arbiter
        .decide(&w.ledger, &w.owner.key, escrow, 2, Outcome::Refund, 1020);
    assert_eq!(
        w.ledger.insert(late),
        Insert::Rejected(Reject::Escrow("the challenge window has closed"))
    );

    // Inside the window: the payout becomes a refund.
    let (mut w, escrow) = world();
    let settle = w.owner.decide(
        &w.ledger,
        &w.worker.key,
        escrow,
        1,
        Outcome::Pay { fuel_used: 10 },
        20,
    );
    applied(w.ledger.insert(settle));
    let dispute = w
        .arbiter
        .decide(&w.ledger, &w.owner.key, escrow, 2, Outcome::Refund, 900);
    applied(w.ledger.insert(dispute));
    assert!(w.ledger.incoming(&w.worker.key.public()).is_empty());
    assert_eq!(w.ledger.incoming(&w.owner.key.public())[0].1, 100);
    assert_eq!(
        w.ledger
            .escrow(&escrow)
            .and_then(|e| e.finalised)
            .map(|(_, o)| o),
        Some(Outcome::Refund)
    );
    w.ledger.verify().expect("invariants");
}

#[test]
fn replays_bad_signatures_bad_sequence_and_missing_dependencies() {
    let (mut w, _escrow) = world();
    let t = w.owner.op(
        30,
        vec![],
        Body::Transfer {
            to: w.worker.key.public(),
            amount: 5,
        },
    );
    applied(w.ledger.insert(t.clone()));
    assert_eq!(
        w.ledger.insert(t.clone()),
        Insert::Duplicate,
        "a replay is ignored"
    );
    assert_eq!(w.ledger.balance(&w.owner.key.public()), 895);

    let mut forged = t.clone();
    forged.seq += 1;
    forged.prev = t.id();
    assert_eq!(
        w.ledger.insert(forged),
        Insert::Rejected(Reject::BadSignature)
    );

    // Sequence 5 with a predecessor nobody has seen: held back.
    let gap = Op::sign(
        &w.owner.key,
        w.owner.net,
        5,
        [7; 32],
        40,
        vec![],
        Body::Transfer {
            to: w.worker.key.public(),
            amount: 1,
        },
    );
    assert_eq!(w.ledger.insert(gap), Insert::Waiting);

    // A transfer claiming a credit that does not exist yet waits for it,
    // and applies when it arrives.
    let incoming = w.issuer.op(
        50,
        vec![],
        Body::Mint {
            to: w.worker.key.public(),
            amount: 3,
        },
    );
    let spend = w.worker.op(
        60,
        vec![incoming.id()],
        Body::Transfer {
            to: w.arbiter.key.public(),
            amount: 3,
        },
    );
    assert_eq!(w.ledger.insert(spend), Insert::Waiting);
    assert_eq!(w.ledger.insert(incoming), Insert::Applied(2));

    // Spending more than the causal past holds: refused.
    let greedy = w.worker.op(
        70,
        vec![],
        Body::Transfer {
            to: w.arbiter.key.public(),
            amount: 1_000_000,
        },
    );
    assert!(matches!(
        w.ledger.insert(greedy),
        Insert::Rejected(Reject::Insufficient { .. })
    ));

    // Minting without being an issuer.
    let mint = w.arbiter.op(
        80,
        vec![],
        Body::Mint {
            to: w.arbiter.key.public(),
            amount: 1,
        },
    );
    assert_eq!(w.ledger.insert(mint), Insert::Rejected(Reject::NotIssuer));
    w.ledger.verify().expect("invariants");
}

#[test]
fn an_account_that_equivocates_is_frozen_and_a_lying_arbiter_is_caught() {
    let (mut w, escrow) = world();
    // Two different ops at the owner's sequence 3.
    let mut twin = Wallet {
        key: SecretKey::from_seed(&[1; 32]),
        net: w.owner.net,
        seq: w.owner.seq,
        head: w.owner.head,
    };
    std::mem::swap(&mut twin.key, &mut w.owner.key);
    let a = twin.op(
        30,
        vec![],
        Body::Transfer {
            to: w.worker.key.public(),
            amount: 5,
        },
    );
    twin.seq -= 1;
    twin.head = a.prev;
    let b = twin.op(
        30,
        vec![],
        Body::Transfer {
            to: w.arbiter.key.public(),
            amount: 5,
        },
    );
    std::mem::swap(&mut twin.key, &mut w.owner.key);
    applied(w.ledger.insert(a));
    assert_eq!(w.ledger.insert(b), Insert::Equivocation);
    assert!(w.ledger.is_frozen(&w.owner.key.public()));
    // Frozen from sequence 3: the hold at 2 stands, both transfers are out.
    assert_eq!(w.ledger.balance(&w.owner.key.public()), 900);

    // The escrow is still resolvable by the other two parties once the
    // window has passed.
    let settle = w.worker.decide(
        &w.ledger,
        &w.arbiter.key,
        escrow,
        1,
        Outcome::Pay { fuel_used: 4 },
        100,
    );
    applied(w.ledger.insert(settle));
    let fin = w
        .worker
        .decide(&w.ledger, &w.arbiter.key, escrow, 2, Outcome::Confirm, 2000);
    applied(w.ledger.insert(fin));
    assert_eq!(w.ledger.incoming(&w.worker.key.public())[0].1, 40);
    w.ledger.verify().expect("invariants");

    // A second settlement signed by the arbiter again: the arbiter signed
    // two decisions for one step, a proof against it.
    let (mut w2, escrow2) = world();
    let s1 = w2.worker.decide(
        &w2.ledger,
        &w2.arbiter.key,
        escrow2,
        1,
        Outcome::Pay { fuel_used: 10 },
        50,
    );
    let s2 = w2
        .owner
        .decide(&w2.ledger, &w2.arbiter.key, escrow2, 1, Outcome::Refund, 50);
    applied(w2.ledger.insert(s1.clone()));
    assert_eq!(w2.ledger.insert(s2.clone()), Insert::Equivocation);
    assert!(w2.ledger.is_frozen(&w2.arbiter.key.public()));
    assert_eq!(w2.ledger.proofs().len(), 1);
    w2.ledger.verify().expect("invariants");
}

#[test]
fn collateral_returns_to_a_paid_worker_and_goes_to_the_owner_on_a_refund() {
    for refund in [false, true] {
        let (mut w, escrow) = world_with(20);
        // The worker spends its genesis allocation on the bond.
        let deps = w.worker.claims(&w.ledger);
        assert_eq!(deps, vec![w.ledger.network()]);
        assert_eq!(
            w.ledger.minted(),
            1050,
            "genesis allocations count as minted"
        );
        let bond = w.worker.op(15, deps, Body::Bond { escrow });
        let bond_id = bond.id();
        applied(w.ledger.insert(bond.clone()));
        assert_eq!(w.ledger.balance(&w.worker.key.public()), 30);
        let twice = w.worker.op(16, vec![], Body::Bond { escrow });
        // Checked, not inserted: a refused op still takes its chain slot.
        assert_eq!(
            w.ledger.check(&twice),
            Insert::Rejected(Reject::Escrow("already bonded"))
        );
        w.worker.undo(&w.ledger);
        w.ledger.verify().expect("invariants while bonded");

        let (outcome, cosigner) = if refund {
            (Outcome::Refund, &w.arbiter.key)
        } else {
            (Outcome::Pay { fuel_used: 10 }, &w.worker.key)
        };
        let settle = w.owner.decide(&w.ledger, cosigner, escrow, 1, outcome, 20);
        applied(w.ledger.insert(settle));
        // A claim on the bond waits until the escrow is final.
        let receiver = if refund { &mut w.owner } else { &mut w.worker };
        let early_claim = receiver.op(
            30,
            vec![bond_id],
            Body::Transfer {
                to: w.issuer.key.public(),
                amount: 20,
            },
        );
        assert_eq!(w.ledger.insert(early_claim.clone()), Insert::Waiting);
        let fin = w
            .arbiter
            .decide(&w.ledger, &w.owner.key, escrow, 2, Outcome::Confirm, 40);
        // The final decision applies and unblocks the claim.
        assert_eq!(w.ledger.insert(fin), Insert::Applied(2));
        assert!(w.ledger.is_applied(&early_claim.id()));
        if refund {
            assert!(w.ledger.incoming(&w.worker.key.public()).is_empty());
        } else {
            assert_eq!(w.ledger.incoming(&w.worker.key.public())[0].1, 100);
        }
        w.ledger.verify().expect("invariants");

        // Any replica given the same ops, in reverse, agrees.
        let mut other = CreditManager::new(w.ledger.genesis().clone());
        for op in w.ledger.ops().into_iter().rev() {
            other.insert(op.clone());
        }
        assert_eq!(other.digest(), w.ledger.digest());
    }
}

#[test]
fn the_genesis_decides_network_windows_and_arbiters() {
    let (mut w, _) = world();
    // An op signed for another network is refused, even if well signed.
    let saved = w.owner.net;
    w.owner.net = [9; 32];
    let foreign = w.owner.op(
        30,
        vec![],
        Body::Transfer {
            to: w.worker.key.public(),
            amount: 1,
        },
    );
    assert_eq!(
        w.ledger.insert(foreign),
        Insert::Rejected(Reject::WrongNetwork)
    );
    w.owner.net = saved;
    w.owner.undo(&w.ledger);

    let hold = |w: &mut World, arbiter: p2pc_crypto::PublicKey, window_ms| {
        w.owner.op(
            40,
            vec![],
            Body::Hold {
                worker: w.worker.key.public(),
                arbiter,
                price: 1,
                fuel_limit: 1,
                window_ms,
                collateral: 0,
            },
        )
    };
    let arbiter = w.arbiter.key.public();
    let short = hold(&mut w, arbiter, 999);
    assert_eq!(
        w.ledger.check(&short),
        Insert::Rejected(Reject::Escrow(
            "challenge window shorter than the network's minimum"
        ))
    );
    w.owner.undo(&w.ledger);
    let stranger = Wallet::new();
    let unlisted = hold(&mut w, stranger.key.public(), 1000);
    assert_eq!(
        w.ledger.check(&unlisted),
        Insert::Rejected(Reject::Escrow("arbiter not allowed by the genesis"))
    );
    w.owner.undo(&w.ledger);
    let fine = hold(&mut w, arbiter, 1000);
    applied(w.ledger.insert(fine));

    w.ledger.verify().expect("invariants");
}

#[test]
fn ops_round_trip_through_bytes_and_garbage_is_refused() {
    let (mut w, escrow) = world_with(5);
    let settle = w.owner.decide(
        &w.ledger,
        &w.worker.key,
        escrow,
        1,
        Outcome::Pay { fuel_used: 3 },
        20,
    );
    let bond = w.worker.op(21, vec![], Body::Bond { escrow });
    let all: Vec<Op> = w
        .ledger
        .ops()
        .into_iter()
        .cloned()
        .chain([settle, bond])
        .collect();
    for op in &all {
        let bytes = op.to_bytes();
        assert_eq!(&Op::from_bytes(&bytes).expect("decodes"), op);
        for cut in [0, 1, 18, bytes.len() / 2, bytes.len() - 1] {
            assert!(Op::from_bytes(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Op::from_bytes(&long).is_err(), "trailing byte");
    }
    // A flipped byte either fails to decode or fails its signature.
    let mut bytes = all[0].to_bytes();
    bytes[60] ^= 1;
    if let Ok(op) = Op::from_bytes(&bytes) {
        assert_eq!(w.ledger.insert(op), Insert::Rejected(Reject::BadSignature));
    }
}

#[test]
fn ops_from_the_future_wait_for_the_clock() {
    let mut a = Wallet::new();
    let op_at = |w: &mut Wallet, t: u64| {
        w.op(
            t,
            vec![],
            Body::Mint {
                to: w.key.public(),
                amount: 1,
            },
        )
    };
    let early = op_at(&mut a, 10_000);
    let late = op_at(&mut a, 50_000);
    let now_ok = op_at(&mut a, 1_500);
    let size = early.to_bytes().len();
    // One second of allowed skew; room for two ops.
    let mut q = FutureOps::new(1_000, 2 * size + size / 2);

    assert!(matches!(q.offer(now_ok.clone(), 500), Offer::Ready(op) if *op == now_ok));
    assert!(matches!(q.offer(late.clone(), 500), Offer::Parked));
    assert!(matches!(q.offer(early.clone(), 500), Offer::Parked));
    assert!(matches!(q.offer(early.clone(), 600), Offer::AlreadyParked));
    assert_eq!((q.len(), q.bytes()), (2, 2 * size));
    assert_eq!(q.next_due(), Some(9_000));

    // Nothing is due before its time less the skew; then earliest first.
    assert!(q.due(8_999).is_empty());
    assert_eq!(q.due(9_000), vec![early.clone()]);
    assert_eq!(q.next_due(), Some(49_000));

    // Full: an op due sooner pushes out the one dated furthest ahead, and
    // an op dated further ahead than everything kept is not kept.
    let mut b = Wallet::new();
    let soon = op_at(&mut b, 20_000);
    let far = op_at(&mut b, 90_000);
    assert!(matches!(q.offer(soon.clone(), 9_000), Offer::Parked));
    assert!(matches!(q.offer(far, 9_000), Offer::Dropped));
    assert!(matches!(q.offer(early.clone(), 8_000), Offer::Parked));
    assert_eq!(q.len(), 2);
    assert_eq!(q.due(u64::MAX), vec![early, soon]);
    assert!(q.is_empty());
    assert_eq!((q.bytes(), q.next_due()), (0, None));
}

#[test]
fn op_bytes_are_laid_out_as_the_protocol_spec_says() {
    // docs/protocols/ledger.md, "Op": a transfer with two deps.
    let mut a = Wallet::new();
    a.net = [7; 32];
    let to = SecretKey::generate().public();
    let op = a.op(
        0x0102,
        vec![[1; 32], [2; 32]],
        Body::Transfer { to, amount: 9 },
    );
    let b = op.to_bytes();
    assert_eq!(
        b.len(),
        18 + 32 + 32 + 8 + 32 + 8 + 8 + 2 * 32 + 1 + 32 + 8 + 64
    );
    assert_eq!(&b[..18], b"p2pc ledger op v1\0");
    assert_eq!(&b[18..50], &[7; 32]);
    assert_eq!(&b[50..82], &a.key.public().to_bytes());
    assert_eq!(&b[82..90], &1u64.to_be_bytes());
    assert_eq!(&b[90..122], &GENESIS_PREV);
    assert_eq!(&b[122..130], &0x0102u64.to_be_bytes());
    assert_eq!(&b[130..138], &2u64.to_be_bytes());
    assert_eq!((&b[138..170], &b[170..202]), (&[1; 32][..], &[2; 32][..]));
    assert_eq!(b[202], 2, "transfer");
    assert_eq!(&b[203..235], &to.to_bytes());
    assert_eq!(&b[235..243], &9u64.to_be_bytes());
    assert_eq!(&b[243..], &op.signature.0);
    assert_eq!(op.id(), *blake3::hash(&b).as_bytes());
}

/// [`world`]'s parties with a task hold of `fuel_limit` at `price`
/// credits per million fuel, deadline 5000 ms.
fn task_world(price: u64, fuel_limit: u64) -> (World, OpId) {
    let (mut w, _) = world();
    let deps = w.owner.claims(&w.ledger);
    let hold = w.owner.op(
        30,
        deps,
        Body::TaskHold(TaskHold {
            worker: w.worker.key.public(),
            arbiter: w.arbiter.key.public(),
            price,
            fuel_limit,
            window_ms: 1000,
            collateral: 0,
            task: [9; 32],
            deadline_ms: 5000,
        }),
    );
    let escrow = hold.id();
    applied(w.ledger.insert(hold));
    (w, escrow)
}

#[test]
fn task_holds_price_per_million_fuel_rounded_up() {
    // 10^10 fuel at 3 credits per million: 30,000 credits, not 3 × 10^10.
    assert_eq!(cost(3, 10_000_000_000, FUEL_PER_PRICE_UNIT), Some(30_000));
    assert_eq!(cost(1, 1, FUEL_PER_PRICE_UNIT), Some(1), "rounded up");
    assert_eq!(cost(u64::MAX, u64::MAX, 1), None, "overflow is refused");
    let (mut w, escrow) = task_world(7, 50_000_000);
    let e = w.ledger.escrow(&escrow).expect("escrow").clone();
    assert_eq!(e.amount, 350);
    assert_eq!(e.task, Some([9; 32]));
    assert_eq!(e.deadline_ms, Some(5000));
    // Paid for what it used: 1,234,567 fuel at 7 per million is 8.64…: 9.
    let settle = w.owner.decide(
        &w.ledger,
        &w.worker.key,
        escrow,
        1,
        Outcome::Pay {
            fuel_used: 1_234_567,
        },
        100,
    );
    applied(w.ledger.insert(settle));
    let fin = w
        .owner
        .decide(&w.ledger, &w.worker.key, escrow, 2, Outcome::Confirm, 101);
    applied(w.ledger.insert(fin));
    assert_eq!(w.ledger.incoming(&w.worker.key.public())[0].1, 9);
    assert_eq!(w.ledger.incoming(&w.owner.key.public())[0].1, 341);
    w.ledger.verify().expect("invariants");
}

#[test]
fn a_task_hold_is_refunded_without_the_worker_only_at_its_deadline() {
    let (mut w, escrow) = task_world(1, 1_000_000);
    let early = w
        .owner
        .decide(&w.ledger, &w.arbiter.key, escrow, 1, Outcome::Refund, 4999);
    assert_eq!(
        w.ledger.insert(early),
        Insert::Rejected(Reject::Escrow(
            "a refund without the worker waits for the hold's deadline"
        ))
    );
    // Signing another step-1 decision now would be an equivocation (the
    // refused one is kept), so a wallet checks a draft before it signs on.
    // Done right: checked before it is inserted.
    let (mut w, escrow) = task_world(1, 1_000_000);
    let early = w
        .owner
        .decide(&w.ledger, &w.arbiter.key, escrow, 1, Outcome::Refund, 4999);
    assert!(matches!(w.ledger.check(&early), Insert::Rejected(_)));
    w.owner.undo(&w.ledger);
    let refund = w
        .owner
        .decide(&w.ledger, &w.arbiter.key, escrow, 1, Outcome::Refund, 5000);
    applied(w.ledger.insert(refund));
    let fin = w
        .owner
        .decide(&w.ledger, &w.arbiter.key, escrow, 2, Outcome::Confirm, 5000);
    applied(w.ledger.insert(fin));
    assert_eq!(w.ledger.incoming(&w.owner.key.public())[0].1, 1);
    w.ledger.verify().expect("invariants");

    // Owner and worker may agree a refund at any time.
    let (mut w, escrow) = task_world(1, 1_000_000);
    let refund = w
        .owner
        .decide(&w.ledger, &w.worker.key, escrow, 1, Outcome::Refund, 40);
    applied(w.ledger.insert(refund));
}

#[test]
fn old_format_ops_still_decode_and_verify() {
    // A v1 hold (kind 3, a price per unit of fuel) as written before task
    // holds existed: the same bytes decode to the same op and apply.
    let (w, escrow) = world();
    let hold = w.ledger.op(&escrow).expect("hold").clone();
    let bytes = hold.to_bytes();
    assert_eq!(bytes[202 - 64 + 32 * hold.deps.len()], 3, "kind 3");
    assert_eq!(Op::from_bytes(&bytes).expect("decodes"), hold);
    let e = w.ledger.escrow(&escrow).expect("escrow");
    assert_eq!(
        (e.unit, e.amount, e.task, e.deadline_ms),
        (1, 100, None, None)
    );
    w.ledger.verify().expect("invariants");
}

#[test]
fn task_hold_bytes_are_laid_out_as_the_protocol_spec_says() {
    let (w, escrow) = task_world(7, 50_000_000);
    let hold = w.ledger.op(&escrow).expect("hold").clone();
    let b = hold.to_bytes();
    let body = 138 + 32 * hold.deps.len();
    assert_eq!(b[body], 6, "task hold");
    let f = &b[body + 1..];
    assert_eq!(&f[..32], &w.worker.key.public().to_bytes());
    assert_eq!(&f[32..64], &w.arbiter.key.public().to_bytes());
    assert_eq!(&f[64..72], &7u64.to_be_bytes());
    assert_eq!(&f[72..80], &50_000_000u64.to_be_bytes());
    assert_eq!(&f[80..88], &1000u64.to_be_bytes());
    assert_eq!(&f[88..96], &0u64.to_be_bytes());
    assert_eq!(&f[96..128], &[9; 32]);
    assert_eq!(&f[128..136], &5000u64.to_be_bytes());
    assert_eq!(&f[136..], &hold.signature.0);
    assert_eq!(Op::from_bytes(&b).expect("decodes"), hold);
    for cut in [body + 1, body + 100, b.len() - 65] {
        assert!(Op::from_bytes(&b[..cut]).is_err(), "truncated at {cut}");
    }
}
