//! A hostile peer against a real worker: garbage, truncated, oversized and
//! well-formed-but-wrong messages on every protocol, replays, gossip
//! floods and abandoned streams, while an honest submitter keeps sending
//! work. The honest work all completes, the attacker is blocked, and the
//! node's memory stays bounded. The network is a paid one, and every
//! replica's ledger verifies and converges after the attack.

use p2pc_crypto::{RequestedLimits, SecretKey};
use p2pc_node::messages::{ADVERT_TOPIC, TaskRequest, TaskSpec, now_unix_ms, seal_task};
use p2pc_node::{
    BLOCK_SCORE, JobState, LEDGER_TOPIC, LedgerAnswer, LedgerRequest, Submission, Validation,
};
use p2pc_testkit::{Assault, HostilePeer, WAIT, bundle, eventually};
use prost::Message;

use crate::support::block_on;

/// The process's resident memory, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[test]
fn a_hostile_peer_on_every_protocol_is_blocked_while_honest_work_goes_on() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let liar = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cluster = crate::market::paid_cluster(dir.path(), &liar, |_| {}).await;
        let worker = cluster.node(1).peer_id();
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );

        // An honest request, sent once by the submitter, for the attacker
        // to replay.
        let bundle_cid = cluster.node(0).put_blob(&file).await.expect("bundle");
        let input = b"replayed".to_vec();
        let spec = TaskSpec {
            task_id: vec![3; 16],
            bundle: bundle_cid.as_bytes().to_vec(),
            input: p2pc_node::messages::blob_id(&input).as_bytes().to_vec(),
            deadline_unix_ms: now_unix_ms() + 30_000,
            inline_input: input.into(),
            ..TaskSpec::default()
        };
        let honest_key = SecretKey::generate();
        let replay = TaskRequest {
            task: seal_task(&honest_key, 1, &spec).encode_to_vec(),
            ..TaskRequest::default()
        }
        .encode_to_vec();
        cluster
            .node(0)
            .client()
            .request_task(worker, replay.clone(), WAIT)
            .await
            .expect("the honest request is answered");

        let mut attacker = HostilePeer::start(cluster.node(1).addrs()[0].clone())
            .await
            .expect("attacker");
        let before = rss();

        let honest = async {
            for i in 0..8 {
                let name = format!("n{i}");
                let job = cluster
                    .node(0)
                    .submit(Submission {
                        to: Some(worker),
                        validation: Some(Validation::None),
                        ..Submission::new(file.clone(), name.clone().into_bytes(), WAIT)
                    })
                    .await
                    .expect("submit");
                let state = cluster.node(0).wait(&job, WAIT).await.expect("wait").status;
                assert!(
                    matches!(&state, JobState::Done { outcome, .. } if outcome == "ok"),
                    "honest job {i} under attack: {state:?}"
                );
                let output = cluster.node(0).output(&job).await.expect("output");
                assert_eq!(&output[..], format!("Hello, {name}!").as_bytes());
            }
        };
        let attack = async {
            let mut seen = Assault::default();
            for _ in 0..30 {
                if cluster.node(1).peer_score(&attacker.peer_id()) <= BLOCK_SCORE {
                    break;
                }
                let got = attacker.attack(worker, Some(&replay)).await;
                seen.sent += got.sent;
                seen.unanswered += got.unanswered;
                for (code, n) in got.refused {
                    *seen.refused.entry(code).or_default() += n;
                }
                attacker.abandon(worker, 64).await;
                attacker.flood(ADVERT_TOPIC, 100).await;
                attacker.flood(LEDGER_TOPIC, 100).await;
            }
            seen
        };
        let ((), seen) = tokio::join!(honest, attack);

        // Every wrong message was told apart, and the attacker is blocked.
        for code in [
            "malformed",
            "bad_signature",
            "expired",
            "bad_lease",
            "replayed",
        ] {
            assert!(
                seen.refused.contains_key(code),
                "no {code} refusal: {seen:?}"
            );
        }
        assert!(
            cluster.node(1).peer_score(&attacker.peer_id()) <= BLOCK_SCORE,
            "not blocked after {seen:?}"
        );
        let evil = attacker.peer_id().to_string();
        eventually("the attacker cut off", WAIT, || async {
            let peers = cluster.node(1).client().peers().await.ok()?;
            peers.iter().all(|p| p.peer_id != evil).then_some(())
        })
        .await
        .expect("cut off");
        let after = attacker.attack(worker, None).await;
        assert_eq!(
            after.unanswered,
            after.sent - 2,
            "a blocked peer gets no answer (gossip aside): {after:?}"
        );

        // The honest submitter kept its standing: it never forwarded
        // what the attacker sent.
        assert_eq!(
            cluster.node(1).peer_score(&cluster.node(0).peer_id()),
            0,
            "the honest peer was scored down"
        );
        // The worker still serves, and kept its memory.
        let job = cluster
            .node(0)
            .submit(Submission {
                to: Some(worker),
                validation: Some(Validation::None),
                ..Submission::new(file.clone(), b"after".to_vec(), WAIT)
            })
            .await
            .expect("submit");
        let state = cluster.node(0).wait(&job, WAIT).await.expect("wait").status;
        assert!(matches!(state, JobState::Done { .. }), "{state:?}");
        // Every replica's ledger verifies and they all hold the same ops.
        eventually("the ledgers converge", WAIT, || async {
            let mut counts = Vec::new();
            for i in 0..5 {
                match cluster.node(i).ledger(LedgerRequest::Verify).await.ok()? {
                    LedgerAnswer::Verify(v) if v.ok && v.open_escrows == 0 => counts.push(v.ops),
                    _ => return None,
                }
            }
            counts.windows(2).all(|w| w[0] == w[1]).then_some(())
        })
        .await
        .expect("converged");
        let grew = rss().saturating_sub(before);
        assert!(grew < 256 << 20, "memory grew by {} MiB", grew >> 20);
        attacker.stop().await;
        cluster.shutdown().await;
    });
}
