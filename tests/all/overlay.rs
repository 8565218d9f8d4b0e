//! The overlay end to end: in-process clusters of real nodes on loopback.

use std::time::Duration;

use p2pc_crypto::{RequestedLimits, SecretKey};
use p2pc_node::messages::{TaskReply, TaskRequest, TaskSpec, now_unix_ms, seal_task};
use p2pc_node::{JobState, Submission};
use p2pc_testkit::{Cluster, CorruptProvider, Misbehaviour, WAIT, bundle, eventually};
use prost::Message;
use sha2::Digest;

use crate::support::runtime;

fn sha256_hex(data: &[u8]) -> String {
    format!("{}\n", hex::encode(sha2::Sha256::digest(data)))
}

#[test]
fn five_nodes_discover_each_other_share_blobs_and_run_remote_tasks() {
    runtime().block_on(async {
        let cluster = Cluster::start(5).await.expect("cluster");
        // Node 4 was told only of node 0; the DHT bootstrap finds the rest.
        eventually(
            "node 4 to find peers beyond its bootstrap node",
            WAIT,
            || async {
                let peers = cluster.node(4).client().peers().await.ok()?;
                (peers.len() >= 2).then_some(())
            },
        )
        .await
        .expect("discovery");

        // A blob put on node 1 is found and fetched by node 3, which was
        // never told where it is.
        let data: Vec<u8> = (0..3 * p2pc_store::CHUNK_SIZE + 1234)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let cid = cluster.node(1).put_blob(&data).await.expect("put");
        let stats = tokio::time::timeout(WAIT, cluster.node(3).fetch(cid, &[]))
            .await
            .expect("fetch in time")
            .expect("fetch");
        assert_eq!(stats.bytes, data.len() as u64);
        assert_eq!(
            cluster.node(3).store().get_bytes(&cid).expect("stored"),
            data
        );

        // A task submitted on node 2, with no worker named, runs elsewhere
        // and its verified output comes back.
        let publisher = SecretKey::generate();
        let component = p2pc_tests::guest_bytes("sha256");
        let file = bundle(&publisher, "sha256", component, RequestedLimits::default());
        let input = b"the quick brown fox".to_vec();
        let job = cluster
            .node(2)
            .submit(Submission::new(file, input.clone(), WAIT))
            .await
            .expect("submit");
        let state = cluster.node(2).wait(&job, WAIT).await.expect("wait").status;
        let JobState::Done {
            worker,
            outcome,
            output: Some(output),
            fuel_used,
            ..
        } = state
        else {
            panic!("job did not finish well: {state:?}");
        };
        assert_eq!(outcome, "ok");
        assert!(fuel_used > 0);
        assert_ne!(
            worker,
            cluster.node(2).peer_id().to_string(),
            "ran on another node"
        );
        let bytes = cluster.node(2).output(&job).await.expect("output");
        assert_eq!(p2pc_node::messages::blob_id(&bytes).to_string(), output);
        assert_eq!(String::from_utf8(bytes).expect("utf8"), sha256_hex(&input));
        cluster.shutdown().await;
    });
}

#[test]
fn large_outputs_and_inputs_travel_as_blobs() {
    runtime().block_on(async {
        let cluster = Cluster::start(2).await.expect("cluster");
        let publisher = SecretKey::generate();
        // hello greets its input: a 3 MiB name gives a 3 MiB greeting,
        // both over the inline limit.
        let component = p2pc_tests::guest_bytes("hello");
        let file = bundle(&publisher, "hello", component, RequestedLimits::default());
        let input: Vec<u8> = vec![b'a'; 3 << 20];
        let job = cluster
            .node(0)
            .submit(Submission {
                to: Some(cluster.node(1).peer_id()),
                ..Submission::new(file, input.clone(), WAIT)
            })
            .await
            .expect("submit");
        let state = cluster.node(0).wait(&job, WAIT).await.expect("wait").status;
        assert!(
            matches!(state, JobState::Done { ref outcome, .. } if outcome == "ok"),
            "{state:?}"
        );
        let output = cluster.node(0).output(&job).await.expect("output");
        assert!(
            output.len() > p2pc_node::messages::INLINE_BYTES,
            "fetched as a blob"
        );
        assert_eq!(output, hello(&input));
        cluster.shutdown().await;
    });
}

#[test]
fn a_peer_serving_corrupt_chunks_is_dropped_and_the_download_completes() {
    runtime().block_on(async {
        let cluster = Cluster::start(2).await.expect("cluster");
        let data: Vec<u8> = (0..8 * p2pc_store::CHUNK_SIZE)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let bootstrap = cluster.node(0).addrs()[0].clone();
        let (evil, cid) = CorruptProvider::start(&data, bootstrap)
            .await
            .expect("adversary");
        let honest = cluster.node(0).put_blob(&data).await.expect("put");
        assert_eq!(cid, honest);
        // The corrupt peer is asked first.
        let stats = tokio::time::timeout(
            WAIT,
            cluster
                .node(1)
                .fetch(cid, &[evil.peer_id(), cluster.node(0).peer_id()]),
        )
        .await
        .expect("in time")
        .expect("fetch");
        assert_eq!(stats.bad_peers, vec![evil.peer_id().to_string()]);
        assert_eq!(
            cluster.node(1).store().get_bytes(&cid).expect("stored"),
            data
        );
        evil.stop().await;
        cluster.shutdown().await;
    });
}

#[test]
fn untrusted_replayed_and_tampered_tasks_are_refused_with_clear_errors() {
    runtime().block_on(async {
        let trusted = SecretKey::generate();
        let trusted_hex = trusted.public().to_string();
        let cluster = Cluster::start_with(2, |i, c| {
            if i == 1 {
                c.trust.submitters = vec![trusted_hex.clone()];
            }
        })
        .await
        .expect("cluster");
        let worker = cluster.node(1).peer_id();
        let publisher = SecretKey::generate();
        let file = bundle(
            &publisher,
            "sha256",
            p2pc_tests::guest_bytes("sha256"),
            RequestedLimits::default(),
        );

        // Node 0's own key is not on node 1's list.
        let job = cluster
            .node(0)
            .submit(Submission {
                to: Some(worker),
                ..Submission::new(file.clone(), b"x".to_vec(), WAIT)
            })
            .await
            .expect("submit");
        let state = cluster.node(0).wait(&job, WAIT).await.expect("wait").status;
        let JobState::Failed { error } = state else {
            panic!("{state:?}")
        };
        assert!(error.contains("untrusted_submitter"), "{error}");
        assert!(
            error.contains("not in this worker's [trust] submitters"),
            "{error}"
        );

        // A task signed by the trusted key runs once; the same envelope
        // sent again is refused as a replay.
        let bundle_cid = cluster.node(0).put_blob(&file).await.expect("put bundle");
        let input = b"abc".to_vec();
        let spec = TaskSpec {
            task_id: vec![7; 16],
            bundle: bundle_cid.as_bytes().to_vec(),
            input: p2pc_node::messages::blob_id(&input).as_bytes().to_vec(),
            deadline_unix_ms: now_unix_ms() + 30_000,
            inline_input: input.into(),
            ..TaskSpec::default()
        };
        let wire = seal_task(&trusted, 1, &spec).encode_to_vec();
        let send = |task: Vec<u8>| {
            let client = cluster.node(0).client().clone();
            async move {
                let req = TaskRequest {
                    task,
                    ..TaskRequest::default()
                }
                .encode_to_vec();
                let answer = client
                    .request_task(worker, req, WAIT)
                    .await
                    .expect("answer");
                TaskReply::decode(answer.as_slice()).expect("reply")
            }
        };
        let first = send(wire.clone()).await;
        assert!(first.refused.is_empty(), "{}", first.refused);
        assert!(!first.receipt.is_empty());
        let worker_key = cluster.node(1).public_key();
        let receipt = p2pc_node::messages::check_receipt(&first.receipt, &wire, &worker_key)
            .expect("valid receipt");
        assert_eq!(receipt.outcome, "ok");
        // That receipt does not answer any other task: a replayed receipt
        // is rejected.
        let other = seal_task(
            &trusted,
            2,
            &TaskSpec {
                task_id: vec![8; 16],
                ..spec.clone()
            },
        )
        .encode_to_vec();
        assert!(p2pc_node::messages::check_receipt(&first.receipt, &other, &worker_key).is_err());

        let again = send(wire.clone()).await;
        assert_eq!(again.refused_code, "replayed", "{}", again.refused);

        // One flipped bit in the signed task: refused, not run.
        let mut tampered = seal_task(
            &trusted,
            3,
            &TaskSpec {
                task_id: vec![9; 16],
                ..spec.clone()
            },
        );
        tampered.payload[3] ^= 1;
        let reply = send(tampered.encode_to_vec()).await;
        assert_eq!(reply.refused_code, "bad_signature", "{}", reply.refused);

        // Garbage and over-wide chunk requests get answers, and the node
        // goes on serving.
        let reply = send(b"\xff\xff\xff garbage".to_vec()).await;
        assert_eq!(reply.refused_code, "malformed");
        let wide = p2pc_net::ChunkRequest {
            blob: bundle_cid.as_bytes().to_vec(),
            chunks: vec![vec![0; 32]; p2pc_net::MAX_CHUNKS_PER_REQUEST + 1],
        };
        let answer = cluster
            .node(0)
            .client()
            .request_chunk(worker, wide)
            .await
            .expect("answer");
        assert_eq!(answer.status, p2pc_net::ChunkStatus::BadRequest as i32);
        let too_big = vec![0u8; p2pc_net::MAX_TASK_MESSAGE_BYTES + 1];
        assert!(
            cluster
                .node(0)
                .client()
                .request_task(worker, too_big, WAIT)
                .await
                .is_err()
        );
        assert!(
            cluster.node(1).status().await.is_ok(),
            "the worker still serves"
        );
        cluster.shutdown().await;
    });
}

#[test]
fn a_worker_that_dies_mid_task_gives_a_clear_error_before_the_deadline() {
    runtime().block_on(async {
        let mut cluster = Cluster::start(2).await.expect("cluster");
        let publisher = SecretKey::generate();
        let file = bundle(
            &publisher,
            "sleep",
            p2pc_tests::guest_bytes("hostile"),
            RequestedLimits::default(),
        );
        let worker = cluster.node(1).peer_id();
        let job = cluster
            .node(0)
            .submit(Submission {
                to: Some(worker),
                ..Submission::new(file, b"sleep".to_vec(), Duration::from_secs(120))
            })
            .await
            .expect("submit");
        // Wait until the worker is running it (a slot is taken).
        eventually("the worker to start the task", WAIT, || async {
            let s = cluster.node(1).status().await.ok()?;
            (s.free_slots < s.slots).then_some(())
        })
        .await
        .expect("running");
        let node = cluster.nodes.remove(1);
        node.shutdown().await;
        let started = std::time::Instant::now();
        let state = cluster.node(0).wait(&job, WAIT).await.expect("wait").status;
        let JobState::Failed { error } = state else {
            panic!("{state:?}")
        };
        assert!(error.contains("went away"), "{error}");
        assert!(started.elapsed() < WAIT);
        cluster.shutdown().await;
    });
}

/// What the hello example answers.
fn hello(input: &[u8]) -> Vec<u8> {
    format!("Hello, {}!", String::from_utf8_lossy(input).trim()).into_bytes()
}

#[test]
fn a_provider_that_vanishes_mid_download_gives_a_clear_error_and_the_next_fetch_resumes() {
    runtime().block_on(async {
        let cluster = Cluster::start(2).await.expect("cluster");
        let chunks = 200;
        let data = p2pc_tests::pseudo_random(chunks * p2pc_store::CHUNK_SIZE, 3);
        let bootstrap = cluster.node(0).addrs()[0].clone();
        let (gone, cid) =
            CorruptProvider::start_with(&data, bootstrap, Misbehaviour::VanishAfter(100))
                .await
                .expect("provider");
        let err = tokio::time::timeout(WAIT, cluster.node(1).fetch(cid, &[gone.peer_id()]))
            .await
            .expect("an error, not a hang")
            .expect_err("the provider vanished");
        let text = err.to_string();
        assert!(text.contains("could not be fetched"), "{text}");
        gone.stop().await;

        // The chunks that arrived were kept: an honest provider is asked
        // only for the rest.
        cluster.node(0).put_blob(&data).await.expect("put");
        let stats = tokio::time::timeout(
            WAIT,
            cluster.node(1).fetch(cid, &[cluster.node(0).peer_id()]),
        )
        .await
        .expect("in time")
        .expect("fetch");
        assert!(
            stats.chunks_fetched < chunks && stats.chunks_fetched > 0,
            "resumed: fetched {} of {chunks}",
            stats.chunks_fetched
        );
        assert_eq!(
            cluster.node(1).store().get_bytes(&cid).expect("stored"),
            data
        );
        cluster.shutdown().await;
    });
}

#[test]
fn an_oversized_message_is_refused_and_the_node_keeps_serving() {
    runtime().block_on(async {
        let cluster = Cluster::start(2).await.expect("cluster");
        let target = cluster.node(1).peer_id();
        // A peer that ignores the size limit when it sends.
        let key = SecretKey::generate();
        let config = p2pc_net::Config {
            unbounded_sends: true,
            ..p2pc_net::Config::default()
        };
        let (rogue, _inbound, event_loop) = p2pc_net::new(&key, config).expect("overlay");
        let net = tokio::spawn(event_loop.run());
        rogue
            .dial(cluster.node(1).addrs()[0].clone())
            .await
            .expect("dial");
        let huge = vec![0u8; 64 << 20];
        let err = rogue
            .request_task(target, huge, WAIT)
            .await
            .expect_err("refused");
        assert!(matches!(err, p2pc_net::Error::Request { .. }), "{err}");
        // The node still runs tasks and answers its owner.
        let describe = TaskRequest {
            describe: true,
            ..TaskRequest::default()
        }
        .encode_to_vec();
        let answer = rogue
            .request_task(target, describe, WAIT)
            .await
            .expect("still answers");
        assert!(
            !TaskReply::decode(answer.as_slice())
                .expect("reply")
                .advert
                .is_empty()
        );
        assert!(cluster.node(1).status().await.is_ok());
        let _ = rogue.shutdown().await;
        net.abort();
        cluster.shutdown().await;
    });
}
