//! Sealed tasks on real nodes: a third node that fetches a sealed job's
//! blobs gets ciphertext it cannot open; a sealed input altered, cut,
//! reordered or moved into another task is refused with a clear error
//! (sent by a hand-made submitter over a real overlay connection, so the
//! worker's own checks are what is tested); a sealed `2-of-3` job agrees.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use p2pc_crypto::seal::{HEADER_LEN, SEGMENT, TAG, open_bytes, seal_bytes};
use p2pc_crypto::{
    ContentKey, Envelope, RequestedLimits, SealError, SealKey, SealPublic, SecretKey, wrap,
};
use p2pc_node::messages::{
    ADVERT_KIND, Advert, RECEIPT_KIND, Receipt, SealedKey, TASK_KIND, TaskReply, TaskRequest,
    TaskSpec, blob_id, now_unix_ms, seal_binding,
};
use p2pc_node::{JobState, Submission, Validation};
use p2pc_testkit::{Cluster, WAIT, bundle};
use prost::Message;

use crate::support::block_on;

fn key(i: usize) -> SecretKey {
    SecretKey::from_seed(&[90 + i as u8; 32])
}

fn seal_key_of(cluster: &Cluster, i: usize) -> SealKey {
    let path = cluster.node(i).data_dir().join("keys").join("node.seal");
    SealKey::load_or_create(&path, &key(i)).expect("the node's seal key")
}

fn rot13(data: &[u8]) -> Vec<u8> {
    data.iter()
        .map(|&b| match b {
            b'a'..=b'z' => (b - b'a' + 13) % 26 + b'a',
            b'A'..=b'Z' => (b - b'A' + 13) % 26 + b'A',
            _ => b,
        })
        .collect()
}

#[test]
fn a_third_node_fetching_a_sealed_jobs_blobs_gets_ciphertext_it_cannot_open() {
    block_on(async {
        let cluster = Cluster::start_keyed((0..3).map(key).collect(), |_, _| {})
            .await
            .expect("cluster");
        let (owner, worker, third) = (cluster.node(0), cluster.node(1), cluster.node(2));
        // Larger than a task carries inline, so input and output are
        // blobs that providers serve; the command reads it as a stream.
        let text: Vec<u8> = b"Attack at dawn; the secret is in the shed.\n"
            .iter()
            .copied()
            .cycle()
            .take(3 << 20)
            .collect();
        let file = bundle(
            &SecretKey::generate(),
            "rot13",
            p2pc_tests::guest_bytes("rot13"),
            RequestedLimits::default(),
        );
        let mut s = Submission::new(file, text.clone(), WAIT);
        s.to = Some(worker.peer_id());
        s.seal = Some(true);
        let job = owner.submit(s).await.expect("submit");
        let info = owner.wait(&job, WAIT).await.expect("wait");
        let JobState::Done {
            outcome,
            output: Some(output),
            output_len,
            ..
        } = &info.status
        else {
            panic!("{info:?}");
        };
        assert_eq!(outcome, "ok", "{info:?}");
        assert!(info.sealed);
        assert_eq!(*output_len, text.len() as u64);
        // The owner reads its output...
        assert_eq!(owner.output(&job).await.expect("output"), rot13(&text));

        // ...a third node that asks for both blobs by id gets them...
        let input: p2pc_store::Cid = info.input.parse().expect("input id");
        let output: p2pc_store::Cid = output.parse().expect("output id");
        for (cid, from) in [(input, owner.peer_id()), (output, worker.peer_id())] {
            third.fetch(cid, &[from]).await.expect("fetch");
            let bytes = third.store().get_bytes(&cid).expect("stored");
            // ...as ciphertext: a sealed blob, with no window of the
            // plaintext in it, that no key of its own opens.
            assert_eq!(&bytes[..8], b"p2pcseal");
            for plain in [&text, &rot13(&text)] {
                assert!(
                    !bytes.windows(24).any(|w| w == &plain[..24]),
                    "plaintext in a sealed blob"
                );
            }
            assert_eq!(
                open_bytes(&ContentKey::generate(), &bytes),
                Err(SealError::WrongKey)
            );
        }
        // The output's key travels in the receipt, wrapped for the owner
        // under the task's reply key: nothing the third node holds or can
        // derive opens it.
        let logs = owner.logs(&job).await.expect("logs");
        let wire = hex::decode(&logs.receipts[0]).expect("hex");
        let opened = Envelope::decode_bounded(&wire).expect("envelope");
        let receipt =
            Receipt::decode(opened.open(RECEIPT_KIND).expect("receipt").payload).expect("receipt");
        let wrapped = receipt.output_key.expect("a sealed receipt").to_wrapped();
        let mine = seal_key_of(&cluster, 2);
        for reader in [key(0).public(), key(2).public()] {
            let binding = seal_binding(
                "output",
                job.as_bytes(),
                &receipt.task_id,
                &reader,
                &key(1).public(),
            );
            assert!(mine.unwrap(&wrapped, output.as_bytes(), &binding).is_err());
            for context in [b"".as_slice(), &binding] {
                assert_eq!(
                    mine.reply_key(context)
                        .unwrap(&wrapped, output.as_bytes(), &binding)
                        .err(),
                    Some(SealError::Unwrap)
                );
            }
        }
        cluster.shutdown().await;
    });
}

/// A submitter made by hand: its own overlay peer, signing keys and seal
/// key, sending tasks it builds itself.
struct Submitter {
    client: p2pc_net::Client,
    key: SecretKey,
    seal: SealKey,
    net: tokio::task::JoinHandle<()>,
}

impl Submitter {
    async fn start(target: &p2pc_node::ComputeNode) -> Self {
        let key = SecretKey::generate();
        let (client, mut inbound, event_loop) =
            p2pc_net::new(&key, p2pc_net::Config::default()).expect("overlay");
        let net = tokio::spawn(event_loop.run());
        client
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        client.dial(target.addrs()[0].clone()).await.expect("dial");
        // The worker's progress reports and keep-alives are answered empty.
        let answering = client.clone();
        tokio::spawn(async move {
            while let Some(message) = inbound.recv().await {
                if let p2pc_net::Inbound::Task { channel, .. } = message {
                    let _ = answering
                        .respond_task(channel, TaskReply::default().encode_to_vec())
                        .await;
                }
            }
        });
        Self {
            client,
            key,
            seal: SealKey::generate(),
            net,
        }
    }

    async fn request(&self, worker: &p2pc_node::ComputeNode, request: TaskRequest) -> TaskReply {
        let reply = self
            .client
            .request_task(worker.peer_id(), request.encode_to_vec(), WAIT)
            .await
            .expect("an answer");
        TaskReply::decode(reply.as_slice()).expect("a reply")
    }
}

#[test]
fn sealed_inputs_altered_cut_reordered_or_moved_to_another_task_are_refused() {
    block_on(async {
        let cluster = Cluster::start_keyed((0..3).map(key).collect(), |_, _| {})
            .await
            .expect("cluster");
        let (worker, other) = (cluster.node(1), cluster.node(2));
        let me = Submitter::start(worker).await;
        // The worker's seal key, from its signed offer.
        let described = me
            .request(
                worker,
                TaskRequest {
                    describe: true,
                    ..TaskRequest::default()
                },
            )
            .await;
        let advert = Envelope::decode_bounded(&described.advert).expect("advert");
        let advert =
            Advert::decode(advert.open(ADVERT_KIND).expect("signed").payload).expect("advert");
        let worker_seal = SealPublic::from_bytes(&advert.seal_key).expect("a seal key");
        assert_ne!(
            advert.seal_key,
            worker.public_key().to_bytes(),
            "its own key, not the signing key"
        );

        // The bundle is on the worker already; only the task is sent.
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        let bundle_cid = worker.store().put_bytes(&file).expect("bundle").id;
        other.store().put_bytes(&file).expect("bundle");
        let plain: Vec<u8> = (0..3 * SEGMENT + 500)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let content = ContentKey::generate();
        let sealed = seal_bytes(&content, &plain);
        let job = b"hand-made job".to_vec();
        let mut sequence = 0;
        let mut task = |input: &[u8], task_id: [u8; 16], wrapped: SealedKey| {
            sequence += 1;
            let spec = TaskSpec {
                task_id: task_id.to_vec(),
                bundle: bundle_cid.as_bytes().to_vec(),
                input: blob_id(input).as_bytes().to_vec(),
                inline_input: input.to_vec().into(),
                deadline_unix_ms: now_unix_ms() + 30_000,
                worker: worker.public_key().to_bytes().to_vec(),
                job: job.clone(),
                input_key: Some(wrapped),
                ..TaskSpec::default()
            };
            TaskRequest {
                task: Envelope::seal(&me.key, TASK_KIND, sequence, spec.encode_to_vec())
                    .encode_to_vec(),
                ..TaskRequest::default()
            }
        };
        let reply_key = me.seal.reply_key(b"hand-made");
        let wrap_for = |input: &[u8], task_id: &[u8; 16]| {
            let binding = seal_binding(
                "input",
                &job,
                task_id,
                &me.key.public(),
                &worker.public_key(),
            );
            SealedKey::from_wrapped(wrap(
                &worker_seal,
                &content,
                Some(&reply_key),
                blob_id(input).as_bytes(),
                &binding,
            ))
        };

        // A well-made sealed task runs, and its output opens for this
        // submitter only.
        let good = wrap_for(&sealed, &[1; 16]);
        let reply = me
            .request(worker, task(&sealed, [1; 16], good.clone()))
            .await;
        assert!(
            reply.refused.is_empty(),
            "{}: {}",
            reply.refused_code,
            reply.refused
        );
        let opened = Envelope::decode_bounded(&reply.receipt).expect("receipt");
        let receipt =
            Receipt::decode(opened.open(RECEIPT_KIND).expect("signed").payload).expect("receipt");
        assert_eq!(receipt.outcome, "ok", "{}", receipt.message);
        let out_key = reply_key
            .unwrap(
                &receipt
                    .output_key
                    .clone()
                    .expect("wrapped for me")
                    .to_wrapped(),
                blob_id(&reply.inline_output).as_bytes(),
                &seal_binding(
                    "output",
                    &job,
                    &[1; 16],
                    &me.key.public(),
                    &worker.public_key(),
                ),
            )
            .expect("the output's key opens for the submitter");
        let output = open_bytes(&out_key, &reply.inline_output).expect("output");
        assert!(
            output.starts_with(b"Hello, abcdef"),
            "{}",
            String::from_utf8_lossy(&output[..40])
        );
        assert_eq!(receipt.output_digest, content.digest(&output));

        let refused = |reply: TaskReply, needle: &str| {
            assert_eq!(reply.refused_code, "bad_seal", "{}", reply.refused);
            assert!(reply.refused.contains(needle), "{}", reply.refused);
        };
        // The same ciphertext and key, moved into another task.
        refused(
            me.request(worker, task(&sealed, [2; 16], good.clone()))
                .await,
            "for another reader or another task",
        );
        // A byte flipped in the second segment.
        let mut flipped = sealed.clone();
        flipped[HEADER_LEN + SEGMENT + TAG + 9] ^= 0x20;
        let w = wrap_for(&flipped, &[3; 16]);
        refused(
            me.request(worker, task(&flipped, [3; 16], w)).await,
            "segment 1 fails authentication",
        );
        // The second segment dropped.
        let seg = |i: usize| HEADER_LEN + i * (SEGMENT + TAG);
        let mut dropped = sealed[..seg(1)].to_vec();
        dropped.extend_from_slice(&sealed[seg(2)..]);
        let w = wrap_for(&dropped, &[4; 16]);
        refused(
            me.request(worker, task(&dropped, [4; 16], w)).await,
            "segment 1 fails authentication",
        );
        // The first two segments swapped.
        let mut swapped = sealed[..seg(0)].to_vec();
        swapped.extend_from_slice(&sealed[seg(1)..seg(2)]);
        swapped.extend_from_slice(&sealed[seg(0)..seg(1)]);
        swapped.extend_from_slice(&sealed[seg(2)..]);
        let w = wrap_for(&swapped, &[5; 16]);
        refused(
            me.request(worker, task(&swapped, [5; 16], w)).await,
            "segment 0 fails authentication",
        );
        // A key wrapped for one worker, in a task for another: the task
        // names the other worker and is bound to it, and its wrap is not.
        let w = wrap_for(&sealed, &[7; 16]);
        let mut spec_for_other = task(&sealed, [7; 16], w);
        {
            let opened = Envelope::decode_bounded(&spec_for_other.task).expect("task");
            let mut spec =
                TaskSpec::decode(opened.open(TASK_KIND).expect("signed").payload).expect("spec");
            spec.worker = other.public_key().to_bytes().to_vec();
            spec_for_other.task =
                Envelope::seal(&me.key, TASK_KIND, 100, spec.encode_to_vec()).encode_to_vec();
        }
        let reply = me.request(other, spec_for_other).await;
        assert_eq!(reply.refused_code, "bad_seal", "{}", reply.refused);
        assert!(
            reply.refused.contains("another reader"),
            "{}",
            reply.refused
        );
        // Cut after a whole segment: its last segment is missing.
        let cut = sealed[..seg(2)].to_vec();
        let w = wrap_for(&cut, &[6; 16]);
        refused(
            me.request(worker, task(&cut, [6; 16], w)).await,
            "truncated",
        );

        me.net.abort();
        cluster.shutdown().await;
    });
}

#[test]
fn a_sealed_two_of_three_job_agrees_on_its_result() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let honest = Arc::new(AtomicBool::new(false));
        let cluster = crate::market::paid_cluster(dir.path(), &honest, |_| {}).await;
        let owner = cluster.node(crate::market::OWNER);
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits {
                fuel: 1_000_000_000,
                ..RequestedLimits::default()
            },
        );
        // Paid jobs are sealed by default.
        let mut s = Submission::new(file, b"sealed replicas".to_vec(), Duration::from_secs(8));
        s.validation = Some(Validation::Quorum { k: 2, n: 3 });
        let job = owner.submit(s).await.expect("submit");
        let info = owner.wait(&job, WAIT).await.expect("wait");
        assert!(
            matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
            "{info:?}"
        );
        assert!(info.sealed);
        assert_eq!(info.validation, "2-of-3");
        assert_eq!(
            owner.output(&job).await.expect("output"),
            b"Hello, sealed replicas!".as_slice()
        );
        // The decision needed two agreeing digests of two ciphertexts
        // under different keys; no replica was judged wrong.
        let info = owner.job(&job).await.expect("job");
        assert_eq!(info.tasks.len(), 3, "{:?}", info.tasks);
        assert!(
            info.tasks.iter().filter(|t| t.state == "done").count() >= 2,
            "{:?}",
            info.tasks
        );
        assert!(
            !info.tasks.iter().any(|t| t.state == "rejected"),
            "{:?}",
            info.tasks
        );
        cluster.shutdown().await;
    });
}
