//! The ledger on disk: what is acknowledged is there after reopening, the
//! rebuild equals the live state, and damage is reported, not absorbed.

use p2pc_crypto::SecretKey;
use p2pc_ledger::{Body, Genesis, Insert, Ledger, LedgerError, Outcome, cosign};

fn genesis(owner: &SecretKey) -> Genesis {
    Genesis {
        network: "store-test".into(),
        allocations: [(owner.public(), 1_000)].into(),
        ..Genesis::default()
    }
}

#[test]
fn acknowledged_ops_survive_reopening_and_the_rebuild_matches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (owner, worker, arbiter) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    let g = genesis(&owner);
    let digest = {
        let mut ledger = Ledger::open(dir.path(), g.clone()).expect("open");
        for amount in 1..=20 {
            let op = ledger.state().draft(
                &owner,
                amount,
                Body::Transfer {
                    to: worker.public(),
                    amount,
                },
            );
            assert!(matches!(
                ledger.insert(op).expect("insert"),
                Insert::Applied(1)
            ));
        }
        let hold = ledger.state().draft(
            &owner,
            100,
            Body::Hold {
                worker: worker.public(),
                arbiter: arbiter.public(),
                price: 2,
                fuel_limit: 50,
                window_ms: 0,
                collateral: 0,
            },
        );
        let escrow = hold.id();
        let pay = Outcome::Pay { fuel_used: 10 };
        let settle = |l: &Ledger, t| {
            l.state().draft(
                &owner,
                t,
                Body::Decide(p2pc_ledger::Decision {
                    escrow,
                    step: 1,
                    outcome: pay,
                    cosigner: worker.public(),
                    cosignature: cosign(&worker, &escrow, 1, pay, t),
                }),
            )
        };
        ledger.insert(hold).expect("insert");
        let s = settle(&ledger, 110);
        ledger.insert(s).expect("insert");
        assert_eq!(ledger.state().balance(&owner.public()), 1_000 - 210 - 100);
        let report = ledger.verify().expect("verify");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!((report.ops, report.escrows), (22, (1, 1)));
        ledger.state().digest()
    };
    let ledger = Ledger::open(dir.path(), g).expect("reopen");
    assert_eq!(ledger.state().digest(), digest);
    assert_eq!(ledger.state().len(), 22);
    assert!(ledger.verify().expect("verify").problems.is_empty());
}

#[test]
fn another_networks_genesis_or_damaged_rows_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let owner = SecretKey::generate();
    let g = genesis(&owner);
    {
        let mut ledger = Ledger::open(dir.path(), g.clone()).expect("open");
        let op = ledger.state().draft(
            &owner,
            1,
            Body::Transfer {
                to: SecretKey::generate().public(),
                amount: 5,
            },
        );
        ledger.insert(op).expect("insert");
    }
    let mut other = g.clone();
    other.network = "elsewhere".into();
    let Err(err) = Ledger::open(dir.path(), other) else {
        panic!("opened another network's ledger");
    };
    assert!(matches!(err, LedgerError::OtherNetwork { .. }), "{err}");
    assert!(err.to_string().contains("belongs to network"), "{err}");

    // Damage a derived row behind the ledger's back.
    {
        let db = fjall::Database::builder(dir.path()).open().expect("fjall");
        let accounts = db
            .keyspace("accounts", fjall::KeyspaceCreateOptions::default)
            .expect("fjall");
        accounts
            .insert(owner.public().to_bytes(), [0u8; 48])
            .expect("fjall");
        db.persist(fjall::PersistMode::SyncAll).expect("fjall");
    }
    let ledger = Ledger::open(dir.path(), g.clone()).expect("open");
    let problems = ledger.verify().expect("verify").problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("differs from the ops"), "{problems:?}");
    drop(ledger);

    // Damage an op: opening fails with a clear error, nothing is dropped.
    {
        let db = fjall::Database::builder(dir.path()).open().expect("fjall");
        let ops = db
            .keyspace("ops", fjall::KeyspaceCreateOptions::default)
            .expect("fjall");
        let (k, mut v) = ops
            .iter()
            .next()
            .expect("fjall")
            .into_inner()
            .expect("fjall");
        let mut bytes = v.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        v = bytes.into();
        ops.insert(k, v).expect("fjall");
        db.persist(fjall::PersistMode::SyncAll).expect("fjall");
    }
    let Err(err) = Ledger::open(dir.path(), g) else {
        panic!("opened a damaged ledger");
    };
    assert!(err.to_string().contains("is damaged"), "{err}");
}

#[test]
fn records_are_written_with_the_ops_they_go_with_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (issuer, buyer) = (SecretKey::generate(), SecretKey::generate());
    let g = Genesis {
        network: "records-test".into(),
        issuers: [issuer.public()].into(),
        ..Genesis::default()
    };
    {
        let mut ledger = Ledger::open(dir.path(), g.clone()).expect("open");
        let mint = ledger.state().draft(
            &issuer,
            1,
            Body::Mint {
                to: buyer.public(),
                amount: 500,
            },
        );
        let id = mint.id();
        let inserted = ledger
            .insert_recorded(vec![mint], &[(b"event/evt_1".to_vec(), id.to_vec())])
            .expect("insert");
        assert!(matches!(inserted[0], Insert::Applied(_)), "{inserted:?}");
        // A record alone, with no op, is written too.
        ledger
            .insert_recorded(
                Vec::new(),
                &[(b"event/evt_2".to_vec(), b"ignored".to_vec())],
            )
            .expect("record");
        assert_eq!(
            ledger.record(b"event/evt_1").expect("read"),
            Some(id.to_vec())
        );
        assert_eq!(ledger.record(b"event/evt_3").expect("read"), None);
    }
    let ledger = Ledger::open(dir.path(), g).expect("reopen");
    // The mint is there (the buyer claims it with its next op).
    assert_eq!(ledger.state().len(), 1);
    let all = ledger.records(b"event/").expect("records");
    assert_eq!(all.len(), 2);
    assert_eq!(all[1], (b"event/evt_2".to_vec(), b"ignored".to_vec()));
    assert!(ledger.verify().expect("verify").problems.is_empty());
}
