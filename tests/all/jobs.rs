//! Jobs of many tasks: a map-reduce job sharded over several workers gives
//! what a local run gives, a worker lost mid-task is replaced (and not
//! paid; its hold is refunded), and a drained worker takes no new task
//! while the one it runs finishes. Real nodes on loopback, a real ledger.

use std::collections::HashSet;
use std::time::Duration;

use p2pc_crypto::{RequestedLimits, SecretKey};
use p2pc_ledger::{FUEL_PER_PRICE_UNIT, Genesis, cost};
use p2pc_node::api::Decision;
use p2pc_node::{ComputeNode, JobState, Submission};
use p2pc_testkit::{Cluster, WAIT, bundle, bundle_with_world, eventually};

use crate::support::{block_on, holds, verify_ok};

/// Words over many lines, so the input splits into many shards.
fn text() -> Vec<u8> {
    let words = [
        "the", "cat", "sat", "on", "a", "hat", "and", "the", "dog", "ran",
    ];
    let mut out = String::new();
    for i in 0..64 {
        for j in 0..(i % 7 + 1) {
            out.push_str(words[(i * 3 + j) % words.len()]);
            out.push(' ');
        }
        out.push('\n');
    }
    out.into_bytes()
}

async fn adverts(node: &ComputeNode, n: usize) {
    eventually("adverts heard", WAIT, || async {
        let s = node.status().await.ok()?;
        (s.workers_known >= n).then_some(())
    })
    .await
    .expect("adverts");
}

#[test]
fn a_map_reduce_job_over_8_shards_on_4_workers_gives_the_local_output_and_fuel() {
    block_on(async {
        let cluster = Cluster::start(5).await.expect("cluster");
        let component = p2pc_tests::guest_bytes("wordcount");
        let file = bundle_with_world(
            &SecretKey::generate(),
            "wordcount",
            component.clone(),
            RequestedLimits::default(),
            "p2pc:job/map-reduce",
        );
        let input = text();
        // What `p2pctl run --shards 8` does, with the same library.
        let local =
            p2pc_tests::map_reduce_locally(&crate::support::executor(), &component, &input, 8)
                .await;
        let local_fuel: u64 = local.all().map(|o| o.usage.fuel_used).sum();
        let local_output = local
            .reduce
            .as_ref()
            .and_then(|o| o.result.clone().ok())
            .expect("local run");

        adverts(cluster.node(0), 4).await;
        let mut s = Submission::new(file, input.clone(), WAIT);
        s.shards = Some(8);
        let job = cluster.node(0).submit(s).await.expect("submit");
        let info = cluster.node(0).wait(&job, WAIT).await.expect("wait");
        let JobState::Done {
            outcome, fuel_used, ..
        } = &info.status
        else {
            panic!("{info:?}");
        };
        assert_eq!(outcome, "ok", "{info:?}");
        assert_eq!(
            cluster.node(0).output(&job).await.expect("output"),
            local_output,
            "byte for byte what the local run gives"
        );
        assert_eq!(*fuel_used, local_fuel, "and the same fuel in all");
        let shards = p2pc_types::split_at_lines(&input, 8).len();
        let maps: Vec<_> = info
            .tasks
            .iter()
            .filter(|t| t.step.starts_with("map"))
            .collect();
        assert_eq!(maps.len(), shards, "{:?}", info.tasks);
        assert_eq!(info.tasks.iter().filter(|t| t.step == "reduce").count(), 1);
        let workers: HashSet<_> = maps.iter().filter_map(|t| t.worker.clone()).collect();
        assert_eq!(
            workers.len(),
            4,
            "the maps spread over every worker: {workers:?}"
        );
        cluster.shutdown().await;
    });
}

fn key(i: usize) -> SecretKey {
    SecretKey::from_seed(&[170 + i as u8; 32])
}

#[test]
fn a_worker_lost_mid_task_is_replaced_not_paid_and_its_hold_refunded() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let genesis = Genesis {
            network: "failover".into(),
            allocations: [(key(0).public(), 1_000_000)].into(),
            min_window_ms: 300,
            ..Genesis::default()
        };
        let path = dir.path().join("genesis.toml");
        std::fs::write(&path, genesis.to_toml()).expect("genesis");
        // 0 submits; 1 and 2 work; 3 arbitrates.
        let mut cluster = Cluster::start_keyed((0..4).map(key).collect(), |i, c| {
            c.ledger.genesis = Some(path.clone());
            c.ledger.sync_interval = Duration::from_millis(500);
            // The arbiter charges too, so it is never chosen: it cannot
            // arbitrate its own task.
            c.market.base_price = if i == 0 { 0 } else { 2 };
            c.market.arbiters = vec![key(3).public().to_string()];
            c.arbiter.enabled = i == 3;
        })
        .await
        .expect("cluster");
        adverts(cluster.node(0), 3).await;
        // About a second of work: long enough to lose a worker in.
        let file = bundle(
            &SecretKey::generate(),
            "mandelbrot",
            p2pc_tests::guest_bytes("mandelbrot"),
            RequestedLimits::default(),
        );
        let input = b"800 800 400".to_vec();
        let mut s = Submission::new(file.clone(), input.clone(), Duration::from_secs(20));
        s.lease = Some(Duration::from_secs(2));
        // One worker at a time: this is failover, not replication.
        s.validation = Some(p2pc_node::Validation::None);
        let job = cluster.node(0).submit(s).await.expect("submit");
        let first = eventually("a worker runs it", WAIT, || async {
            [1, 2].into_iter().find(|&i| cluster.node(i).running() > 0)
        })
        .await
        .expect("running");
        let lost = cluster.nodes.remove(first);
        let lost_peer = lost.peer_id().to_string();
        lost.shutdown().await;
        let info = cluster.node(0).wait(&job, WAIT).await.expect("wait");
        assert!(
            matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
            "{info:?}"
        );
        assert_eq!(info.tasks.len(), 2, "{:?}", info.tasks);
        let (gone, took_over) = (&info.tasks[0], &info.tasks[1]);
        assert_eq!(gone.worker.as_deref(), Some(lost_peer.as_str()));
        assert_eq!(gone.state, "lost", "{gone:?}");
        assert_ne!(took_over.worker, gone.worker);
        assert_eq!(took_over.state, "done", "{took_over:?}");
        // A paid job is sealed: the replacement got a wrap of its own.
        assert!(info.sealed);

        // The same answer a second, undisturbed run gives.
        let mut s = Submission::new(file, input, WAIT);
        s.validation = Some(p2pc_node::Validation::None);
        let again = cluster.node(0).submit(s).await.expect("submit");
        cluster.node(0).wait(&again, WAIT).await.expect("wait");
        assert_eq!(
            cluster.node(0).output(&job).await.expect("output"),
            cluster.node(0).output(&again).await.expect("output")
        );

        // The lost worker is refunded at its deadline; the one that took
        // over is paid; credits are conserved on every replica left.
        let (lost_escrow, paid_escrow) = (
            gone.escrow.clone().expect("paid"),
            took_over.escrow.clone().expect("paid"),
        );
        let paid_cost = took_over.cost.expect("a cost");
        assert_eq!(
            Some(paid_cost),
            cost(2, took_over.fuel_used.expect("fuel"), FUEL_PER_PRICE_UNIT)
        );
        let owner = cluster.node(0);
        eventually("refunded and paid", WAIT, || async {
            let h = holds(owner).await;
            let refunded = h
                .iter()
                .any(|e| e.escrow == lost_escrow && e.finalised == Some(Decision::Refund));
            let paid = h
                .iter()
                .any(|e| e.escrow == paid_escrow && matches!(e.finalised, Some(Decision::Pay(_))));
            (refunded && paid).then_some(())
        })
        .await
        .expect("settled");
        for node in [cluster.node(0), cluster.node(2)] {
            verify_ok(node).await;
        }
        cluster.shutdown().await;
    });
}

#[test]
fn a_drained_worker_takes_no_new_task_and_finishes_the_one_it_runs() {
    block_on(async {
        let cluster = Cluster::start(3).await.expect("cluster");
        adverts(cluster.node(0), 2).await;
        let publisher = SecretKey::generate();
        let slow = bundle(
            &publisher,
            "mandelbrot",
            p2pc_tests::guest_bytes("mandelbrot"),
            RequestedLimits::default(),
        );
        let hello = bundle(
            &publisher,
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        let (drained, other) = (cluster.node(1), cluster.node(2));
        let mut s = Submission::new(slow, b"800 800 400".to_vec(), WAIT);
        s.to = Some(drained.peer_id());
        let running = cluster.node(0).submit(s).await.expect("submit");
        eventually("it runs", WAIT, || async {
            (drained.running() > 0).then_some(())
        })
        .await
        .expect("running");
        assert_eq!(drained.drain(), 1, "one task running when drained");

        // Named with --to, a new task is refused.
        let mut s = Submission::new(hello.clone(), b"x".to_vec(), WAIT);
        s.to = Some(drained.peer_id());
        let refused = cluster.node(0).submit(s).await.expect("submit");
        let info = cluster.node(0).wait(&refused, WAIT).await.expect("wait");
        let JobState::Failed { error } = &info.status else {
            panic!("{info:?}");
        };
        assert!(error.contains("draining"), "{error}");
        // Left to the node, it goes to the other worker.
        let placed = cluster
            .node(0)
            .submit(Submission::new(hello, b"x".to_vec(), WAIT))
            .await
            .expect("submit");
        let info = cluster.node(0).wait(&placed, WAIT).await.expect("wait");
        assert!(matches!(&info.status, JobState::Done { .. }), "{info:?}");
        let last = info.tasks.last().expect("a task");
        assert_eq!(last.worker, Some(other.peer_id().to_string()), "{info:?}");

        // The task it ran when drained finishes; then nothing runs there.
        let info = cluster.node(0).wait(&running, WAIT).await.expect("wait");
        assert!(
            matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
            "{info:?}"
        );
        eventually("idle", WAIT, || async {
            (drained.running() == 0).then_some(())
        })
        .await
        .expect("idle");
        assert!(drained.status().await.expect("status").draining);
        cluster.shutdown().await;
    });
}

#[test]
fn a_cancelled_job_stops_and_says_so() {
    block_on(async {
        let cluster = Cluster::start(2).await.expect("cluster");
        let spin = bundle(
            &SecretKey::generate(),
            "hostile",
            p2pc_tests::guest_bytes("hostile"),
            RequestedLimits {
                fuel: 100_000_000_000,
                timeout_ms: 20_000,
                ..RequestedLimits::default()
            },
        );
        let mut s = Submission::new(spin, b"loop".to_vec(), WAIT);
        s.to = Some(cluster.node(1).peer_id());
        let job = cluster.node(0).submit(s).await.expect("submit");
        eventually("it runs", WAIT, || async {
            (cluster.node(1).running() > 0).then_some(())
        })
        .await
        .expect("running");
        cluster.node(0).cancel(&job).expect("cancel");
        let info = cluster.node(0).wait(&job, WAIT).await.expect("wait");
        assert!(
            matches!(info.status, JobState::Cancelled { finished: 0 }),
            "{info:?}"
        );
        // Only a running job can be cancelled.
        let err = cluster.node(0).cancel(&job).expect_err("ended");
        assert!(err.to_string().contains("not running"), "{err}");
        cluster.shutdown().await;
    });
}
