//! The node as services: job records that survive a restart of the
//! submitter, a ledger flood that cannot stall tasks and chunks, one seed
//! derivation on every machine, peers' tasks in the isolated pool, and
//! logs and progress that come back to the submitter. Real nodes on
//! loopback throughout.

use p2pc_crypto::{RequestedLimits, SecretKey};
use p2pc_ledger::sync::encode_ops;
use p2pc_ledger::{Body, CreditManager, Genesis};
use p2pc_node::{ComputeNode, JobProgress, JobState, LEDGER_TOPIC, Submission};
use p2pc_sandbox::{Artifact, Call, Grants, Limits, Mode, SandboxExecutor, Task};
use p2pc_testkit::{Cluster, WAIT, bundle, eventually, test_config};

use crate::support::block_on;

fn submission(file: &[u8], input: &[u8], to: &ComputeNode) -> Submission {
    Submission {
        to: Some(to.peer_id()),
        ..Submission::new(file.to_vec(), input.to_vec(), WAIT)
    }
}

/// A signed bundle of guest `name` with default limits.
fn signed(publisher: &SecretKey, name: &str) -> Vec<u8> {
    bundle(
        publisher,
        name,
        p2pc_tests::guest_bytes(name),
        RequestedLimits::default(),
    )
}

/// Starts a node with the key made from `seed`, within [`WAIT`].
async fn start(config: p2pc_node::NodeConfig, seed: &[u8; 32]) -> ComputeNode {
    tokio::time::timeout(WAIT, ComputeNode::start(config, SecretKey::from_seed(seed)))
        .await
        .expect("start in time")
        .expect("start")
}

/// Checks that `job` on `node` is recorded as lost because the node
/// stopped while `worker` ran it.
async fn assert_lost(node: &ComputeNode, job: &str, worker: &p2pc_net::PeerId) {
    let info = node.job(job).await.expect("the job is found");
    let JobState::Lost { reason } = &info.status else {
        panic!("a job running when its node stopped must be marked lost: {info:?}");
    };
    assert!(reason.contains("stopped while the job ran on"), "{reason}");
    assert!(reason.contains(&worker.to_string()), "{reason}");
    assert!(info.finished_unix_ms.is_some());
}

/// Waits for `job` on `node` and checks that it ended well.
async fn ok(node: &ComputeNode, job: &str) -> p2pc_node::JobInfo {
    let info = node.wait(job, WAIT).await.expect("wait");
    assert!(
        matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
        "{info:?}"
    );
    info
}

#[test]
fn a_restarted_submitter_finds_its_jobs_finished_or_lost_with_a_reason() {
    block_on(async {
        const SUBMITTER: [u8; 32] = [13; 32];
        let keys = vec![SecretKey::from_seed(&SUBMITTER), SecretKey::generate()];
        let mut cluster = Cluster::start_keyed(keys, |_, _| {})
            .await
            .expect("cluster");
        let worker = cluster.node(1).peer_id();
        let worker_addrs = cluster.node(1).addrs();
        let publisher = SecretKey::generate();
        let hello = signed(&publisher, "hello");
        // A job that runs until its 20 s deadline: still running when the
        // submitter stops.
        let spin = bundle(
            &publisher,
            "hostile",
            p2pc_tests::guest_bytes("hostile"),
            RequestedLimits {
                fuel: 100_000_000_000,
                timeout_ms: 20_000,
                ..RequestedLimits::default()
            },
        );
        let node = cluster.node(0);
        let done = node
            .submit(submission(&hello, b"restart", cluster.node(1)))
            .await
            .expect("submit");
        let finished = ok(node, &done).await;
        let running = node
            .submit(submission(&spin, b"loop", cluster.node(1)))
            .await
            .expect("submit");
        eventually("the worker to run the spinning job", WAIT, || async {
            let s = cluster.node(1).status().await.ok()?;
            (s.free_slots < s.slots).then_some(())
        })
        .await
        .expect("running");

        let data_dir = cluster.node(0).data_dir();
        cluster.nodes.remove(0).shutdown().await;
        let restart = || {
            let mut config = test_config(&data_dir);
            config.node.bootstrap = worker_addrs.clone();
            start(config, &SUBMITTER)
        };
        let node = restart().await;
        assert_lost(&node, &running, &worker).await;
        // What it learned of the worker is on disk too.
        let known = node
            .reputation(&worker)
            .expect("the worker's record survives");
        assert_eq!((known.success, known.cheat), (1, 0), "{known:?}");
        let again = node.job(&done).await.expect("the finished job is found");
        assert_eq!(again.status, finished.status);
        assert_eq!(
            node.output(&done).await.expect("output"),
            b"Hello, restart!"
        );
        assert_eq!(node.jobs(10).await.expect("list").len(), 2);
        assert_eq!(node.status().await.expect("status").jobs, 2);
        node.shutdown().await;

        // And again: the output and the records are on disk, not in memory.
        let node = restart().await;
        assert_eq!(
            node.output(&done).await.expect("output"),
            b"Hello, restart!"
        );
        assert!(matches!(
            node.job(&running).await.expect("lost job").status,
            JobState::Lost { .. }
        ));
        let missing = node.job("00000000000000000000000000000000").await;
        assert!(
            matches!(missing, Err(p2pc_node::Error::NoSuchJob(_))),
            "{missing:?}"
        );
        node.shutdown().await;
        cluster.shutdown().await;
    });
}

#[test]
fn a_submitter_that_crashed_finds_its_running_job_lost_when_it_starts_again() {
    const SUBMITTER: [u8; 32] = [14; 32];
    let cluster_rt = crate::support::runtime();
    let cluster = cluster_rt.block_on(Cluster::start(1)).expect("a worker");
    let worker = cluster.node(0).peer_id();
    let worker_addrs = cluster.node(0).addrs();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || {
        let mut c = test_config(dir.path());
        c.node.bootstrap = worker_addrs.clone();
        c
    };
    let publisher = SecretKey::generate();
    let spin = bundle(
        &publisher,
        "hostile",
        p2pc_tests::guest_bytes("hostile"),
        RequestedLimits {
            fuel: 100_000_000_000,
            timeout_ms: 20_000,
            ..RequestedLimits::default()
        },
    );
    // The submitter runs on a runtime of its own, dropped mid-job without
    // a shutdown: its tasks stop where they are, as in a crash.
    let job = {
        let runtime = crate::support::runtime();
        runtime.block_on(async {
            let node = start(config(), &SUBMITTER).await;
            let job = node
                .submit(submission(&spin, b"loop", cluster.node(0)))
                .await
                .expect("submit");
            eventually("the job to be sent", WAIT, || async {
                let info = node.job(&job).await.ok()?;
                matches!(info.status, JobState::Running { .. }).then_some(())
            })
            .await
            .expect("sent");
            node.flush_records().await.expect("records on disk");
            job
        })
    };
    cluster_rt.block_on(async {
        let node = start(config(), &SUBMITTER).await;
        assert_lost(&node, &job, &worker).await;
        node.shutdown().await;
        cluster.shutdown().await;
    });
}

#[test]
fn a_node_flooded_with_ledger_gossip_still_serves_tasks_and_chunks() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let rich = SecretKey::from_seed(&[42; 32]);
        let genesis = Genesis {
            network: "flood-test".into(),
            allocations: [(rich.public(), 1_000_000)].into(),
            ..Genesis::default()
        };
        let path = dir.path().join("genesis.toml");
        std::fs::write(&path, genesis.to_toml()).expect("genesis");
        // The flood is what is tested, not payment: tasks run unpaid.
        let cluster = Cluster::start_with(2, |_, c| {
            c.ledger.genesis = Some(path.clone());
            c.market.base_price = 0;
        })
        .await
        .expect("cluster");
        let victim = cluster.node(1);

        // A flooder: a bare overlay peer gossiping batches of valid,
        // signed transfers as fast as it can. Each batch costs the victim
        // signature checks and a synced write.
        let flooder_key = SecretKey::generate();
        let (flooder, mut flood_inbound, event_loop) = p2pc_net::new(
            &flooder_key,
            p2pc_net::Config {
                mdns: false,
                ..Default::default()
            },
        )
        .expect("flooder");
        let net = tokio::spawn(event_loop.run());
        let drain = tokio::spawn(async move { while flood_inbound.recv().await.is_some() {} });
        flooder
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        flooder.dial(victim.addrs()[0].clone()).await.expect("dial");
        flooder.subscribe(LEDGER_TOPIC).await.expect("subscribe");
        let mut state = CreditManager::new(genesis.clone());
        let mut batches = Vec::new();
        let mut t = p2pc_node::messages::now_unix_ms();
        for _ in 0..40 {
            let mut ops = Vec::new();
            for _ in 0..64 {
                t += 1;
                let op = state.draft(
                    &rich,
                    t,
                    Body::Transfer {
                        to: SecretKey::generate().public(),
                        amount: 1,
                    },
                );
                assert!(matches!(
                    state.insert(op.clone()),
                    p2pc_ledger::Insert::Applied(_)
                ));
                ops.push(op);
            }
            batches.push(encode_ops(&ops));
        }
        // Round and round until the honest work is done: new ops first,
        // then the same again (each a new gossip message, checked again).
        let publisher = flooder.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let flood = tokio::spawn(async move {
            let mut sent = 0usize;
            for batch in batches.iter().cycle() {
                if stopped.try_recv().is_ok() {
                    break;
                }
                // Before the victim subscribes back, publishing fails;
                // keep going. Only what went out counts.
                if publisher.publish(LEDGER_TOPIC, batch.clone()).await.is_ok() {
                    sent += 1;
                }
                tokio::task::yield_now().await;
            }
            sent
        });

        // Meanwhile an honest peer's tasks and chunk fetches are served.
        let publisher_key = SecretKey::generate();
        let hello = signed(&publisher_key, "hello");
        let data = p2pc_tests::pseudo_random(3 * p2pc_store::CHUNK_SIZE, 7);
        let cid = victim.put_blob(&data).await.expect("put");
        for i in 0..20 {
            let job = cluster
                .node(0)
                .submit(submission(&hello, format!("{i}").as_bytes(), victim))
                .await
                .expect("submit");
            let info = cluster.node(0).wait(&job, WAIT).await.expect("wait");
            assert!(
                matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
                "task {i} under the flood: {info:?}"
            );
        }
        tokio::time::timeout(WAIT, cluster.node(0).fetch(cid, &[victim.peer_id()]))
            .await
            .expect("the fetch finished under the flood")
            .expect("fetch");
        assert_eq!(
            cluster.node(0).store().get_bytes(&cid).expect("stored"),
            data
        );
        let _ = stop.send(());
        let sent = flood.await.expect("flood");
        assert!(
            sent > 40,
            "the flood lasted the whole test: {sent} messages"
        );
        // The replica took what it could and is consistent.
        let verified = match victim
            .ledger(p2pc_node::LedgerRequest::Verify)
            .await
            .expect("verify")
        {
            p2pc_node::LedgerAnswer::Verify(v) => v,
            other => panic!("{other:?}"),
        };
        assert!(verified.ok, "{verified:?}");
        eprintln!(
            "flood: {sent} messages gossiped; the victim stored {} ops",
            verified.ops
        );
        assert!(
            verified.ops >= 64,
            "the flood never reached the node: {verified:?}"
        );
        let _ = flooder.shutdown().await;
        net.abort();
        drain.abort();
        cluster.shutdown().await;
    });
}

#[test]
fn a_job_with_random_numbers_gives_the_same_bytes_and_fuel_locally_and_on_two_workers() {
    block_on(async {
        let cluster = Cluster::start(3).await.expect("cluster");
        let publisher = SecretKey::generate();
        let component = p2pc_tests::guest_bytes("hostile");
        let file = bundle(
            &publisher,
            "hostile",
            component.clone(),
            RequestedLimits::default(),
        );
        let input = b"entropy".to_vec();
        // What `p2pctl run` does: the seed derived from the component, the
        // input and argv.
        let local = crate::support::executor()
            .execute(
                &Artifact::new(component.clone()),
                Task {
                    call: Call::Run(input.clone()),
                    limits: Limits::default(),
                    mode: Mode::derived(blake3::hash(&component).as_bytes(), &input, &[]),
                    grants: Grants::default(),
                    args: Vec::new(),
                },
            )
            .await;
        let local_output = local.result.expect("local run");
        let mut seen = Vec::new();
        for worker in [1, 2] {
            let job = cluster
                .node(0)
                .submit(submission(&file, &input, cluster.node(worker)))
                .await
                .expect("submit");
            let info = cluster.node(0).wait(&job, WAIT).await.expect("wait");
            let JobState::Done {
                outcome, fuel_used, ..
            } = &info.status
            else {
                panic!("{info:?}");
            };
            assert_eq!(outcome, "ok");
            let output = cluster.node(0).output(&job).await.expect("output");
            seen.push((output, *fuel_used));
        }
        assert_eq!(seen[0], seen[1], "two workers disagree");
        assert_eq!(
            seen[0],
            (local_output, local.usage.fuel_used),
            "a worker disagrees with the local run"
        );
        cluster.shutdown().await;
    });
}

#[test]
fn a_peers_wasm_task_runs_in_an_isolated_worker_process() {
    block_on(async {
        if p2pc_exec::find_tool("bwrap").is_none() {
            return p2pc_tests::skip("bubblewrap is not installed");
        }
        let worker_program = env!("CARGO_BIN_EXE_p2pc-test-wasm-worker");
        let cluster = Cluster::start_with(2, |i, c| {
            if i == 1 {
                c.executors.wasm.isolated = true;
                c.wasm_worker = Some((worker_program.into(), Vec::new()));
            }
        })
        .await
        .expect("cluster");
        let publisher = SecretKey::generate();
        let hello = signed(&publisher, "hello");
        let job = cluster
            .node(0)
            .submit(submission(&hello, b"pool", cluster.node(1)))
            .await
            .expect("submit");
        ok(cluster.node(0), &job).await;
        assert_eq!(
            cluster.node(0).output(&job).await.expect("output"),
            b"Hello, pool!"
        );
        // The worker process that ran it is back in the pool, and it is not
        // this process; the node's own engine never loaded the component.
        let pids = cluster.node(1).isolated_workers().expect("a pool");
        assert!(!pids.is_empty(), "no isolated worker ran the task");
        assert!(
            !pids.contains(&std::process::id()),
            "the task ran in the node's process: {pids:?}"
        );
        assert_eq!(cluster.node(1).in_process_loads(), 0);
        // The job's log line came back through the receipt all the same.
        let logs = cluster.node(0).logs(&job).await.expect("logs");
        assert_eq!(
            logs.logs
                .iter()
                .map(|l| l.message.as_str())
                .collect::<Vec<_>>(),
            ["greeting pool"]
        );

        // Map and reduce calls run on workers too, in the pool.
        let wordcount = p2pc_tests::guest_bytes("wordcount");
        let spec_file = p2pc_testkit::bundle_with_world(
            &publisher,
            "wordcount",
            wordcount,
            RequestedLimits::default(),
            "p2pc:job/map-reduce",
        );
        let mapped = cluster
            .node(0)
            .submit(Submission {
                call: p2pc_node::messages::CallKind::Map,
                ..submission(&spec_file, b"the cat the hat", cluster.node(1))
            })
            .await
            .expect("submit map");
        ok(cluster.node(0), &mapped).await;
        let map_output = cluster.node(0).output(&mapped).await.expect("output");
        assert_eq!(map_output, b"cat\t1\nhat\t1\nthe\t2\n");
        let reduce_input = prost::Message::encode_to_vec(&p2pc_node::messages::ReduceInput {
            parts: vec![map_output.clone(), map_output],
        });
        let reduced = cluster
            .node(0)
            .submit(Submission {
                call: p2pc_node::messages::CallKind::Reduce,
                ..submission(&spec_file, &reduce_input, cluster.node(1))
            })
            .await
            .expect("submit reduce");
        ok(cluster.node(0), &reduced).await;
        let counted = cluster.node(0).output(&reduced).await.expect("output");
        assert!(
            String::from_utf8_lossy(&counted).starts_with("4\tthe\n"),
            "{}",
            String::from_utf8_lossy(&counted)
        );
        assert_eq!(cluster.node(1).in_process_loads(), 0);
        cluster.shutdown().await;
    });
}

#[test]
fn a_tasks_logs_and_progress_reach_the_submitter() {
    block_on(async {
        let cluster = Cluster::start(2).await.expect("cluster");
        let publisher = SecretKey::generate();
        // sha256 reports progress every 4 MiB hashed.
        let sha = signed(&publisher, "sha256");
        let input = p2pc_tests::pseudo_random(12 << 20, 3);
        let job = cluster
            .node(0)
            .submit(submission(&sha, &input, cluster.node(1)))
            .await
            .expect("submit");
        let info = ok(cluster.node(0), &job).await;
        let blocks = (12 << 20) / 64;
        assert_eq!(
            info.progress,
            Some(JobProgress {
                done: 3 * 65536,
                total: blocks
            }),
            "the last progress report"
        );

        let hello = signed(&publisher, "hello");
        let job = cluster
            .node(0)
            .submit(submission(&hello, b"logs", cluster.node(1)))
            .await
            .expect("submit");
        cluster.node(0).wait(&job, WAIT).await.expect("wait");
        let logs = cluster.node(0).logs(&job).await.expect("logs");
        assert_eq!(logs.logs.len(), 1, "{logs:?}");
        assert_eq!(logs.logs[0].message, "greeting logs");
        assert_eq!(logs.logs[0].level, p2pc_sandbox::LogLevel::Info);
        assert_eq!(logs.receipts.len(), 1);

        // A job's stderr tail comes back too: a panic's message.
        let hostile = signed(&publisher, "hostile");
        let job = cluster
            .node(0)
            .submit(submission(&hostile, b"panic", cluster.node(1)))
            .await
            .expect("submit");
        let info = cluster.node(0).wait(&job, WAIT).await.expect("wait");
        assert!(
            matches!(&info.status, JobState::Done { outcome, .. } if outcome != "ok"),
            "{info:?}"
        );
        let logs = cluster.node(0).logs(&job).await.expect("logs");
        assert!(
            logs.stderr.contains("hostile job panicked on purpose"),
            "{logs:?}"
        );
        cluster.shutdown().await;
    });
}
