//! The market on real nodes: replication catches a worker that returns
//! wrong answers (a fault hook on an otherwise real node), adaptive
//! validation replicates a newcomer's tasks until it has a record, and
//! prices move with load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use p2pc_crypto::{RequestedLimits, SecretKey};
use p2pc_ledger::Genesis;
use p2pc_node::api::Decision;
use p2pc_node::{ComputeNode, JobInfo, JobState, Submission, Validation};
use p2pc_testkit::{Cluster, WAIT, bundle, eventually};

use crate::support::{balance, block_on, holds, verify_ok};

pub(crate) const OWNER: usize = 0;
const ARBITER: usize = 4;
const PRICE: u64 = 2;
const COLLATERAL: u64 = 10;
const START: u64 = 1_000;

fn key(i: usize) -> SecretKey {
    SecretKey::from_seed(&[170 + i as u8; 32])
}

/// Owner 0, workers 1 to 3, arbiter 4, on a paid network. `liar` is
/// worker 3's fault hook; `tweak` changes the workers' configs more.
pub(crate) async fn paid_cluster(
    dir: &std::path::Path,
    liar: &Arc<AtomicBool>,
    mut tweak: impl FnMut(&mut p2pc_node::NodeConfig),
) -> Cluster {
    let path = dir.join("genesis.toml");
    let genesis = Genesis {
        network: "market-test".into(),
        allocations: (0..5)
            .map(|i| (key(i).public(), if i == OWNER { 10_000_000 } else { START }))
            .collect(),
        min_window_ms: 300,
        ..Genesis::default()
    };
    std::fs::write(&path, genesis.to_toml()).expect("write genesis");
    let cluster = Cluster::start_keyed((0..5).map(key).collect(), |i, c| {
        c.ledger.genesis = Some(path.clone());
        c.ledger.sync_interval = Duration::from_millis(500);
        c.market.base_price = 0;
        c.faults.seed = Some(7);
        match i {
            1..=3 => {
                c.market.base_price = PRICE;
                c.market.collateral = COLLATERAL;
                c.market.arbiters = vec![key(ARBITER).public().to_string()];
                if i == 3 {
                    c.faults.wrong_output = liar.clone();
                }
                tweak(c);
            }
            ARBITER => {
                // It charges, but accepts no arbiter that runs: never a
                // worker here, so replicas go to workers 1 to 3.
                c.arbiter.enabled = true;
                c.market.base_price = PRICE;
                c.market.arbiters = vec![SecretKey::generate().public().to_string()];
            }
            _ => {}
        }
    })
    .await
    .expect("cluster");
    eventually("every offer heard", WAIT, || async {
        let s = cluster.node(OWNER).status().await.ok()?;
        (s.workers_known >= 4).then_some(())
    })
    .await
    .expect("offers");
    cluster
}

fn hello() -> Vec<u8> {
    bundle(
        &SecretKey::generate(),
        "hello",
        p2pc_tests::guest_bytes("hello"),
        RequestedLimits {
            fuel: 1_000_000_000,
            ..RequestedLimits::default()
        },
    )
}

async fn run(owner: &ComputeNode, s: Submission) -> JobInfo {
    let job = owner.submit(s).await.expect("submit");
    owner.wait(&job, WAIT).await.expect("wait")
}

fn worker_of(t: &p2pc_node::TaskInfo) -> String {
    t.worker.clone().unwrap_or_default()
}

#[test]
fn two_of_three_catches_a_lying_worker_every_time_and_it_stops_being_chosen() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let liar = Arc::new(AtomicBool::new(true));
        let cluster = paid_cluster(dir.path(), &liar, |_| {}).await;
        let owner = cluster.node(OWNER);
        let cheat = cluster.node(3).peer_id().to_string();
        let file = hello();
        let mut rejected = Vec::new();
        for n in 0..2 {
            let input = format!("replica {n}");
            let mut s = Submission::new(
                file.clone(),
                input.clone().into_bytes(),
                Duration::from_secs(8),
            );
            s.validation = Some(Validation::Quorum { k: 2, n: 3 });
            let info = run(owner, s).await;
            assert!(
                matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
                "{info:?}"
            );
            assert_eq!(info.validation, "2-of-3");
            let job = &info.id;
            assert_eq!(
                owner.output(job).await.expect("output"),
                format!("Hello, {input}!").as_bytes(),
                "the honest answer wins"
            );
            assert_eq!(info.tasks.len(), 3, "{:?}", info.tasks);
            // The task is decided once two answers agree; a replica that
            // answers after that is judged when it does.
            let info = eventually("the lying replica is rejected", WAIT, || async {
                let info = owner.job(job).await.ok()?;
                info.tasks
                    .iter()
                    .any(|t| t.state == "rejected")
                    .then_some(info)
            })
            .await
            .expect("rejected");
            let lied: Vec<_> = info
                .tasks
                .iter()
                .filter(|t| t.state == "rejected")
                .collect();
            assert_eq!(lied.len(), 1, "caught every time: {:?}", info.tasks);
            assert_eq!(worker_of(lied[0]), cheat);
            assert_eq!(lied[0].cost, None, "not paid");
            rejected.push(lied[0].escrow.clone().expect("paid through a hold"));
        }
        // Refunded at the deadline by owner and arbiter: the liar earns
        // nothing and its collateral goes to the owner.
        for escrow in &rejected {
            eventually("the liar's hold is refunded", WAIT, || async {
                holds(owner)
                    .await
                    .into_iter()
                    .find(|h| &h.escrow == escrow && h.finalised == Some(Decision::Refund))
            })
            .await
            .expect("refunded");
        }
        let liar_balance = balance(owner, key(3).public()).await;
        assert_eq!(
            liar_balance.available,
            START - 2 * COLLATERAL,
            "{liar_balance:?}"
        );
        for honest in 1..=2 {
            eventually("the honest workers are paid", WAIT, || async {
                let b = balance(owner, key(honest).public()).await;
                (b.available > START && b.bonded == 0).then_some(())
            })
            .await
            .expect("paid");
        }
        let r = owner
            .reputation(&cluster.node(3).peer_id())
            .expect("a record");
        assert_eq!((r.cheat, r.valid_run), (2, 0), "{r:?}");
        assert!(r.score < 0.1, "{r:?}");
        let honest = owner
            .reputation(&cluster.node(1).peer_id())
            .expect("a record");
        assert_eq!((honest.cheat, honest.replicated), (0, 2), "{honest:?}");

        // Unchecked jobs now go to the honest workers only.
        for n in 0..4 {
            let mut s = Submission::new(file.clone(), format!("after {n}").into_bytes(), WAIT);
            s.validation = Some(Validation::None);
            let info = run(owner, s).await;
            assert!(matches!(&info.status, JobState::Done { .. }), "{info:?}");
            assert_ne!(
                worker_of(&info.tasks[0]),
                cheat,
                "the liar was chosen again"
            );
        }
        for node in &cluster.nodes {
            verify_ok(node).await;
        }
        cluster.shutdown().await;
    });
}

#[test]
fn adaptive_replicates_a_newcomer_until_it_has_a_record_and_a_cheat_resets_it() {
    block_on(async {
        let liar = Arc::new(AtomicBool::new(false));
        let cluster = Cluster::start_with(4, |i, c| {
            c.faults.seed = Some(11);
            if i == 3 {
                c.faults.wrong_output = liar.clone();
            }
        })
        .await
        .expect("cluster");
        let owner = cluster.node(OWNER);
        eventually("every offer heard", WAIT, || async {
            let s = owner.status().await.ok()?;
            (s.workers_known >= 3).then_some(())
        })
        .await
        .expect("offers");
        let workers: Vec<_> = (1..=3).map(|i| cluster.node(i).peer_id()).collect();
        let run_of = |p: &p2pc_net::PeerId| owner.reputation(p).map_or(0, |r| r.valid_run);
        let file = hello();
        let (mut checked, mut spot) = (0, 0);
        for n in 0..32 {
            let before: Vec<u32> = workers.iter().map(run_of).collect();
            let mut s = Submission::new(file.clone(), format!("job {n}").into_bytes(), WAIT);
            s.validation = Some(Validation::Adaptive);
            let info = run(owner, s).await;
            assert!(
                matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
                "{info:?}"
            );
            let first = workers
                .iter()
                .position(|p| p.to_string() == worker_of(&info.tasks[0]))
                .expect("a worker of the cluster");
            let replicated = info.tasks.len() > 1;
            if before[first] < 10 {
                assert!(
                    replicated,
                    "job {n}: a worker with a run of {} was not checked",
                    before[first]
                );
                checked += 1;
            } else if !replicated {
                spot += 1;
            }
        }
        assert!(checked >= 10, "newcomers' tasks were replicated: {checked}");
        assert!(
            spot >= 1,
            "a trusted worker's tasks are only sometimes replicated"
        );
        let trusted = workers.iter().filter(|p| run_of(p) >= 10).count();
        assert!(trusted >= 2, "records reached the threshold: {trusted}");

        // Worker 3 starts lying; the next check catches it and its run
        // starts again from nothing.
        liar.store(true, Ordering::SeqCst);
        let mut s = Submission::new(file.clone(), b"caught".to_vec(), WAIT);
        s.validation = Some(Validation::Quorum { k: 2, n: 3 });
        let info = run(owner, s).await;
        assert_eq!(
            owner.output(&info.id).await.expect("output"),
            b"Hello, caught!"
        );
        // The two honest replicas may decide the task before the liar
        // answers; its answer is then judged late, so wait for the verdict.
        let r = eventually("the liar convicted", WAIT, || async {
            owner.reputation(&workers[2]).filter(|r| r.cheat == 1)
        })
        .await
        .expect("the late answer judged");
        assert_eq!((r.valid_run, r.cheat), (0, 1), "{r:?}");
        assert_eq!(
            owner.reputation(&workers[2]).map(|r| r.trusted),
            Some(false)
        );
        cluster.shutdown().await;
    });
}

#[test]
fn prices_rise_on_a_saturated_cluster_and_fall_back_when_it_is_idle() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let liar = Arc::new(AtomicBool::new(false));
        let cluster = paid_cluster(dir.path(), &liar, |c| {
            c.node.slots = 1;
            c.market.price_window = Duration::from_millis(200);
            c.market.max_price = Some(4 * PRICE);
        })
        .await;
        let owner = cluster.node(OWNER);
        for w in 1..=3 {
            assert_eq!(cluster.node(w).price().price, PRICE, "idle: the base price");
        }
        // Three slow tasks per one-slot worker: one runs, two wait.
        let spin = bundle(
            &SecretKey::generate(),
            "hostile",
            p2pc_tests::guest_bytes("hostile"),
            RequestedLimits {
                fuel: 5_000_000_000,
                timeout_ms: 1_500,
                ..RequestedLimits::default()
            },
        );
        let mut jobs = Vec::new();
        for n in 0..9 {
            let mut s = Submission::new(spin.clone(), b"loop".to_vec(), Duration::from_secs(20));
            s.to = Some(cluster.node(1 + n % 3).peer_id());
            s.validation = Some(Validation::None);
            jobs.push(owner.submit(s).await.expect("submit"));
        }
        for w in 1..=3 {
            eventually("the price rises with the load", WAIT, || async {
                (cluster.node(w).price().price > PRICE).then_some(())
            })
            .await
            .expect("a higher price");
        }
        eventually("the owner hears the higher prices", WAIT, || async {
            owner.offers().iter().any(|o| o.price > PRICE).then_some(())
        })
        .await
        .expect("higher offers");
        for job in &jobs {
            owner
                .wait(job, Duration::from_secs(40))
                .await
                .expect("wait");
        }
        for w in 1..=3 {
            eventually("idle again: back to the base price", WAIT, || async {
                let p = cluster.node(w).price();
                (p.price == PRICE && p.busy == 0).then_some(())
            })
            .await
            .expect("the base price");
            assert!(cluster.node(w).price().price <= 4 * PRICE);
        }
        cluster.shutdown().await;
    });
}
