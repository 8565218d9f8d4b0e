//! Paid tasks on a network with a ledger: real nodes on loopback, a real
//! replicated ledger, a third node as arbiter. A job is paid exactly its
//! cost, a worker that vanishes is refunded at the deadline with its
//! collateral going to the owner, tasks without a valid hold are refused
//! with nothing moved, and a job that cannot be paid fails before
//! anything is sent.

use std::time::Duration;

use p2pc_crypto::{PublicKey, RequestedLimits, SecretKey};
use p2pc_ledger::{Body, CreditManager, FUEL_PER_PRICE_UNIT, Genesis, TaskHold, cost};
use p2pc_node::api::Decision;
use p2pc_node::messages::{TaskReply, TaskRequest, TaskSpec, blob_id, now_unix_ms, seal_task};
use p2pc_node::{ComputeNode, JobState, Submission};
use p2pc_testkit::{Cluster, WAIT, bundle, eventually};
use prost::Message;

use crate::support::{balance, block_on, holds, verify_ok};

const OWNER: usize = 0;
const WORKER: usize = 1;
const ARBITER: usize = 2;
const POOR: usize = 3;
/// The worker's price, credits per million fuel, and collateral.
const PRICE: u64 = 2;
const COLLATERAL: u64 = 10;

fn key(i: usize) -> SecretKey {
    SecretKey::from_seed(&[150 + i as u8; 32])
}

/// An account that is no node: it crafts tasks and holds by hand.
fn mallory() -> SecretKey {
    SecretKey::from_seed(&[199; 32])
}

fn genesis() -> Genesis {
    Genesis {
        network: "paid-test".into(),
        allocations: [
            (key(OWNER).public(), 1_000_000),
            (key(WORKER).public(), 1_000),
            (key(POOR).public(), 100),
            (mallory().public(), 1_000_000),
        ]
        .into(),
        min_window_ms: 300,
        ..Genesis::default()
    }
}

/// Owner, worker, arbiter and a poor submitter whose own worker accepts
/// only an arbiter that is not running.
async fn cluster(dir: &std::path::Path) -> Cluster {
    let path = dir.join("genesis.toml");
    std::fs::write(&path, genesis().to_toml()).expect("write genesis");
    let cluster = Cluster::start_keyed((0..4).map(key).collect(), |i, c| {
        c.ledger.genesis = Some(path.clone());
        c.ledger.sync_interval = Duration::from_millis(500);
        c.market.base_price = 0;
        match i {
            WORKER => {
                c.market.base_price = PRICE;
                c.market.collateral = COLLATERAL;
                c.market.arbiters = vec![key(ARBITER).public().to_string()];
            }
            ARBITER => c.arbiter.enabled = true,
            POOR => {
                c.market.base_price = PRICE;
                c.market.arbiters = vec![SecretKey::generate().public().to_string()];
            }
            _ => {}
        }
    })
    .await
    .expect("cluster");
    for i in [OWNER, POOR] {
        eventually("every advert heard", WAIT, || async {
            let s = cluster.node(i).status().await.ok()?;
            (s.workers_known >= 3).then_some(())
        })
        .await
        .expect("adverts");
    }
    cluster
}

fn submission(file: &[u8], input: &[u8], to: &ComputeNode, timeout: Duration) -> Submission {
    let mut s = Submission::new(file.to_vec(), input.to_vec(), timeout);
    s.to = Some(to.peer_id());
    s
}

#[test]
fn a_paid_job_costs_the_submitter_exactly_what_the_worker_earns() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = cluster(dir.path()).await;
        let (owner, worker) = (cluster.node(OWNER), cluster.node(WORKER));
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        let job = owner
            .submit(submission(&file, b"paid", worker, WAIT))
            .await
            .expect("submit");
        let info = owner.wait(&job, WAIT).await.expect("wait");
        let JobState::Done {
            outcome, fuel_used, ..
        } = &info.status
        else {
            panic!("{info:?}");
        };
        assert_eq!(outcome, "ok");
        assert_eq!(owner.output(&job).await.expect("output"), b"Hello, paid!");
        let task = &info.tasks[0];
        let expected = cost(PRICE, *fuel_used, FUEL_PER_PRICE_UNIT).expect("cost");
        assert!(expected > 0);
        assert_eq!(task.cost, Some(expected), "{task:?}");
        assert_eq!(task.price, Some(PRICE));
        let escrow = task
            .escrow
            .clone()
            .expect("the task was paid through a hold");

        // Final on every replica once the window closed; the worker wrote
        // both decisions with the owner's co-signatures.
        for node in &cluster.nodes[..3] {
            eventually("the payment is final everywhere", WAIT, || async {
                holds(node)
                    .await
                    .into_iter()
                    .find(|h| h.escrow == escrow && h.finalised == Some(Decision::Pay(*fuel_used)))
            })
            .await
            .expect("final");
        }
        for node in &cluster.nodes[..3] {
            let o = balance(node, key(OWNER).public()).await;
            let w = balance(node, key(WORKER).public()).await;
            assert_eq!(o.available, 1_000_000 - expected, "{o:?}");
            assert_eq!((o.held, o.pending), (0, 0), "{o:?}");
            assert_eq!(w.available, 1_000 + expected, "{w:?}");
            assert_eq!(w.bonded, 0, "the collateral came back: {w:?}");
            verify_ok(node).await;
        }
        cluster.shutdown().await;
    });
}

#[test]
fn a_worker_that_takes_a_task_and_vanishes_is_refunded_at_the_deadline() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cluster = cluster(dir.path()).await;
        let spin = bundle(
            &SecretKey::generate(),
            "hostile",
            p2pc_tests::guest_bytes("hostile"),
            RequestedLimits {
                fuel: 100_000_000_000,
                timeout_ms: 60_000,
                ..RequestedLimits::default()
            },
        );
        let job = cluster
            .node(OWNER)
            .submit(submission(
                &spin,
                b"loop",
                cluster.node(WORKER),
                Duration::from_secs(6),
            ))
            .await
            .expect("submit");
        // The worker bonded its collateral and runs the task.
        let held = eventually("the worker bonds", WAIT, || async {
            holds(cluster.node(OWNER))
                .await
                .into_iter()
                .find(|h| h.bonded)
        })
        .await
        .expect("bonded");
        assert_eq!(held.amount, PRICE * 100_000, "10^11 fuel at 2 per million");
        assert_eq!(held.collateral, COLLATERAL);
        let gone = cluster.nodes.remove(WORKER);
        gone.shutdown().await;

        let owner = cluster.node(OWNER);
        let info = owner.wait(&job, WAIT).await.expect("wait");
        assert!(matches!(&info.status, JobState::Failed { .. }), "{info:?}");
        // At the deadline the owner and the arbiter refund it; the
        // collateral goes to the owner.
        // With the worker gone, the arbiter is node 1 now.
        for node in [owner, cluster.node(1)] {
            eventually("refunded everywhere", WAIT, || async {
                holds(node)
                    .await
                    .into_iter()
                    .find(|h| h.escrow == held.escrow && h.finalised == Some(Decision::Refund))
            })
            .await
            .expect("refunded");
            let o = balance(node, key(OWNER).public()).await;
            assert_eq!(o.available, 1_000_000 + COLLATERAL, "{o:?}");
            let w = balance(node, key(WORKER).public()).await;
            assert_eq!(w.available, 1_000 - COLLATERAL, "{w:?}");
            verify_ok(node).await;
        }
        cluster.shutdown().await;
    });
}

/// A task from mallory, sent by hand through the owner node's overlay
/// client, with `hold` (if any) as the hold op.
async fn send_task(
    cluster: &Cluster,
    spec: &TaskSpec,
    hold: impl FnOnce([u8; 32]) -> Option<Vec<u8>>,
) -> TaskReply {
    let wire = seal_task(&mallory(), 1, spec).encode_to_vec();
    let digest = *blake3::hash(&wire).as_bytes();
    let request = TaskRequest {
        task: wire,
        hold: hold(digest).unwrap_or_default(),
        ..TaskRequest::default()
    };
    let answer = cluster
        .node(OWNER)
        .client()
        .request_task(
            cluster.node(WORKER).peer_id(),
            request.encode_to_vec(),
            WAIT,
        )
        .await
        .expect("an answer");
    TaskReply::decode(answer.as_slice()).expect("a reply")
}

#[test]
fn tasks_without_a_valid_hold_are_refused_and_nothing_moves() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = cluster(dir.path()).await;
        let owner = cluster.node(OWNER);
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        let bundle_id = owner.put_blob(&file).await.expect("put");
        let worker_key = key(WORKER).public();
        let mut ledger = CreditManager::new(genesis());
        let spec = |n: u8| TaskSpec {
            task_id: vec![n; 16],
            bundle: bundle_id.as_bytes().to_vec(),
            input: blob_id(b"x").as_bytes().to_vec(),
            inline_input: b"x".to_vec().into(),
            fuel: 1_000_000,
            deadline_unix_ms: now_unix_ms() + 20_000,
            worker: worker_key.to_bytes().to_vec(),
            ..TaskSpec::default()
        };
        let hold_for = |ledger: &CreditManager, task: [u8; 32], arbiter: PublicKey| {
            let op = ledger.draft(
                &mallory(),
                now_unix_ms(),
                Body::TaskHold(TaskHold {
                    worker: worker_key,
                    arbiter,
                    price: PRICE,
                    fuel_limit: 1_000_000,
                    window_ms: 300,
                    collateral: 0,
                    task,
                    deadline_ms: now_unix_ms() + 20_000,
                }),
            );
            assert!(matches!(ledger.check(&op), p2pc_ledger::Insert::Applied(_)));
            op
        };

        // No hold.
        let reply = send_task(&cluster, &spec(1), |_| None).await;
        assert_eq!(reply.refused_code, "unpaid", "{reply:?}");
        // A hold for another task.
        let other = hold_for(&ledger, [7; 32], key(ARBITER).public());
        ledger.insert(other.clone());
        let reply = send_task(&cluster, &spec(2), |_| Some(other.to_bytes())).await;
        assert_eq!(reply.refused_code, "unpaid", "{reply:?}");
        assert!(reply.refused.contains("another task"), "{reply:?}");
        // A hold naming an arbiter the worker does not accept (mallory's
        // own second key, say).
        let reply = send_task(&cluster, &spec(3), |digest| {
            let own = hold_for(&ledger, digest, SecretKey::generate().public());
            Some(own.to_bytes())
        })
        .await;
        assert_eq!(reply.refused_code, "unpaid", "{reply:?}");
        assert!(reply.refused.contains("does not accept"), "{reply:?}");

        // Nothing was paid or bonded.
        let w = balance(cluster.node(WORKER), worker_key).await;
        assert_eq!((w.available, w.bonded, w.pending), (1_000, 0, 0), "{w:?}");
        for h in holds(cluster.node(WORKER)).await {
            assert_eq!(h.settled, None, "{h:?}");
        }
        cluster.shutdown().await;
    });
}

#[test]
fn a_job_that_cannot_be_paid_fails_before_anything_is_sent() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = cluster(dir.path()).await;
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        // 100 credits cannot lock 10^10 fuel at 2 per million.
        let poor = cluster.node(POOR);
        let err = poor
            .submit(submission(&file, b"x", cluster.node(WORKER), WAIT))
            .await
            .expect_err("not enough credits");
        let text = err.to_string();
        assert!(text.contains("not enough credits"), "{text}");
        assert!(text.contains("needs 20000"), "{text}");
        assert!(text.contains("has 100 available"), "{text}");
        assert!(poor.jobs(10).await.expect("jobs").is_empty());
        assert_eq!(balance(poor, key(POOR).public()).await.available, 100);

        // The poor node's worker accepts only an arbiter that is offline.
        let owner = cluster.node(OWNER);
        let err = owner
            .submit(submission(&file, b"x", poor, WAIT))
            .await
            .expect_err("no arbiter");
        assert!(err.to_string().contains("no arbiter is reachable"), "{err}");
        // A price cap under the worker's price.
        let mut capped = submission(&file, b"x", cluster.node(WORKER), WAIT);
        capped.max_price = Some(PRICE - 1);
        let err = owner.submit(capped).await.expect_err("too dear");
        assert!(err.to_string().contains("above --max-price"), "{err}");
        // A budget cuts the fuel limit to what it buys.
        let mut budgeted = submission(&file, b"x", cluster.node(WORKER), WAIT);
        budgeted.budget = Some(50);
        let job = owner.submit(budgeted).await.expect("submit");
        let info = owner.wait(&job, WAIT).await.expect("wait");
        assert_eq!(info.tasks[0].locked, Some(50), "{info:?}");
        cluster.shutdown().await;
    });
}
