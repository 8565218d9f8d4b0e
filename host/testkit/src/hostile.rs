//! [`HostilePeer`]: a real overlay peer, built from the same crate as a
//! node's, that attacks another on every protocol p2pc speaks: task
//! requests, chunk requests, ledger sync and both gossip topics. It sends
//! garbage, truncated and oversized messages, well-formed messages that
//! are wrong (forged signatures, expired tasks, decisions on escrows that
//! do not exist), replays what it captured, floods gossip, and opens many
//! requests it never waits for.

use std::collections::BTreeMap;
use std::time::Duration;

use p2pc_crypto::{Envelope, SecretKey};
use p2pc_net::{ChunkRequest, Client, Multiaddr, PeerId};
use p2pc_node::messages::{
    ADVERT_TOPIC, Arbitrate, Progress, Settle, TASK_KIND, TaskReply, TaskRequest, TaskSpec,
    now_unix_ms,
};
use prost::Message;

/// How long the attacker waits for one answer.
const ANSWER: Duration = Duration::from_secs(5);

/// What one round of attacks got back.
#[derive(Debug, Default)]
pub struct Assault {
    /// Requests sent (gossip included).
    pub sent: usize,
    /// Task-protocol refusals by code (`malformed`, `bad_signature`, …).
    pub refused: BTreeMap<String, usize>,
    /// Requests that got no answer: refused by the transport, timed out,
    /// or cut off because the target blocked this peer.
    pub unanswered: usize,
}

/// An attacker on loopback.
pub struct HostilePeer {
    client: Client,
    key: SecretKey,
    net: tokio::task::JoinHandle<()>,
    drain: tokio::task::JoinHandle<()>,
    /// A splitmix64 state: the garbage is the same every run.
    seed: u64,
}

impl HostilePeer {
    /// Starts one and connects it to `target` (an address with its
    /// `/p2p/` peer id, or a bare address).
    pub async fn start(target: Multiaddr) -> anyhow::Result<Self> {
        let key = SecretKey::generate();
        let (client, mut inbound, event_loop) = p2pc_net::new(&key, p2pc_net::Config::default())?;
        let net = tokio::spawn(event_loop.run());
        client.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
        client.dial(target).await?;
        for topic in [ADVERT_TOPIC, p2pc_node::LEDGER_TOPIC] {
            client.subscribe(topic).await?;
        }
        // It answers nothing sent to it: requests to it are left to time
        // out, which is one more thing a node must survive.
        let drain = tokio::spawn(async move { while inbound.recv().await.is_some() {} });
        Ok(Self {
            client,
            key,
            net,
            drain,
            seed: 0x5eed,
        })
    }

    /// Its peer id.
    pub fn peer_id(&self) -> PeerId {
        self.client.peer_id()
    }

    /// Peers it is connected to now.
    pub fn peer_count(&self) -> usize {
        self.client.peer_count()
    }

    fn garbage(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = self.seed;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    async fn task(&self, target: PeerId, bytes: Vec<u8>, got: &mut Assault) {
        got.sent += 1;
        match self.client.request_task(target, bytes, ANSWER).await {
            Ok(reply) => match TaskReply::decode(reply.as_slice()) {
                Ok(r) if !r.refused_code.is_empty() => {
                    *got.refused.entry(r.refused_code).or_default() += 1;
                }
                _ => {}
            },
            Err(_) => got.unanswered += 1,
        }
    }

    /// One round of every attack against `target`. `replay` is a task
    /// request captured from an honest submitter, sent again as it was.
    pub async fn attack(&mut self, target: PeerId, replay: Option<&[u8]>) -> Assault {
        let mut got = Assault::default();
        // Task protocol: garbage, truncated, oversized.
        let junk = self.garbage(512);
        self.task(target, junk, &mut got).await;
        let spec = TaskSpec {
            task_id: self.garbage(16),
            deadline_unix_ms: now_unix_ms().saturating_add(60_000),
            lease_ms: 10_000,
            bundle: vec![0; 32],
            input: vec![0; 32],
            ..TaskSpec::default()
        };
        let sealed = Envelope::seal(&self.key, TASK_KIND, 1, spec.encode_to_vec());
        let whole = TaskRequest {
            task: sealed.encode_to_vec(),
            ..TaskRequest::default()
        }
        .encode_to_vec();
        self.task(target, whole[..whole.len() / 2].to_vec(), &mut got)
            .await;
        self.task(
            target,
            vec![0x0a; p2pc_net::MAX_TASK_MESSAGE_BYTES + 1],
            &mut got,
        )
        .await;
        // Well-formed but wrong: a forged signature, an expired task, a
        // lease of a year, progress and decisions about nothing.
        let mut forged = sealed.clone();
        if let Some(b) = forged.payload.first_mut() {
            *b ^= 1;
        }
        let key = &self.key;
        let signed = |sequence, spec: TaskSpec| TaskRequest {
            task: Envelope::seal(key, TASK_KIND, sequence, spec.encode_to_vec()).encode_to_vec(),
            ..TaskRequest::default()
        };
        let wrong = [
            TaskRequest {
                task: forged.encode_to_vec(),
                ..TaskRequest::default()
            },
            signed(
                2,
                TaskSpec {
                    deadline_unix_ms: 1,
                    ..spec.clone()
                },
            ),
            signed(
                3,
                TaskSpec {
                    lease_ms: 365 * 86_400_000,
                    ..spec.clone()
                },
            ),
            TaskRequest {
                progress: Envelope::seal(
                    &self.key,
                    "p2pc/progress/1",
                    4,
                    Progress::default().encode_to_vec(),
                )
                .encode_to_vec(),
                ..TaskRequest::default()
            },
            TaskRequest {
                settle: Some(Settle {
                    escrow: vec![7; 32],
                    ..Settle::default()
                }),
                ..TaskRequest::default()
            },
            TaskRequest {
                arbitrate: Some(Arbitrate::default()),
                ..TaskRequest::default()
            },
        ];
        for r in wrong {
            self.task(target, r.encode_to_vec(), &mut got).await;
        }
        if let Some(replay) = replay {
            self.task(target, replay.to_vec(), &mut got).await;
        }
        // Chunk protocol: blobs it does not hold, too many chunks at once.
        for chunks in [0, p2pc_net::MAX_CHUNKS_PER_REQUEST + 1] {
            got.sent += 1;
            let request = ChunkRequest {
                blob: self.garbage(32),
                chunks: vec![vec![0; 32]; chunks],
            };
            if self.client.request_chunk(target, request).await.is_err() {
                got.unanswered += 1;
            }
        }
        // Ledger sync: garbage, and a request that claims every account.
        for request in [self.garbage(300), vec![0xff; 4096]] {
            got.sent += 1;
            if self
                .client
                .request_ledger(target, request, ANSWER)
                .await
                .is_err()
            {
                got.unanswered += 1;
            }
        }
        // Gossip: garbage offers and ledger ops.
        for topic in [ADVERT_TOPIC, p2pc_node::LEDGER_TOPIC] {
            let junk = self.garbage(200);
            got.sent += 1;
            let _ = self.client.publish(topic, junk).await;
        }
        got
    }

    /// Opens `n` task requests at once and walks away from every one of
    /// them: the target is left with streams nobody reads.
    pub async fn abandon(&mut self, target: PeerId, n: usize) {
        let mut pending = Vec::with_capacity(n);
        for _ in 0..n {
            let c = self.client.clone();
            let junk = self.garbage(64);
            pending.push(tokio::spawn(async move {
                let _ = c.request_task(target, junk, ANSWER).await;
            }));
        }
        tokio::task::yield_now().await;
        for p in pending {
            p.abort();
        }
    }

    /// Publishes `n` garbage messages on `topic` as fast as it can.
    pub async fn flood(&mut self, topic: &str, n: usize) {
        for _ in 0..n {
            let junk = self.garbage(256);
            let _ = self.client.publish(topic, junk).await;
        }
    }

    /// Stops it.
    pub async fn stop(self) {
        let _ = self.client.shutdown().await;
        self.drain.abort();
        self.net.abort();
    }
}
