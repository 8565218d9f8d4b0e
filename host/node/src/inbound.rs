//! The inbound router: hands each request or gossip message the overlay
//! delivers to the service it is for. It never awaits disk or the
//! overlay itself: requests are answered in tasks of their own, and
//! gossip goes to services that take it without waiting (the replica's
//! bounded queue, the jobs service's advert table). So however busy a
//! service is, chunk and task traffic keeps moving, and the overlay's
//! event loop is never stuck behind a full inbound channel.

use p2pc_net::{ChunkResponse, ChunkStatus, Client, Inbound};
use p2pc_store::Store;
use prost::Message;
use tokio::sync::mpsc;
use tracing::debug;

use crate::events::EventKind;
use crate::issuer::Issuer;
use crate::messages::{ADVERT_TOPIC, TaskReply, TaskRequest};
use crate::metrics::Telemetry;
use crate::network::Network;
use crate::pay::Payments;
use crate::replica::{LEDGER_TOPIC, Replica};
use crate::scores::PeerScores;
use crate::worker::Worker;

/// The handles the router hands messages to.
pub(crate) struct Router {
    client: Client,
    store: Store,
    worker: Worker,
    network: Network,
    replica: Option<Replica>,
    payments: Option<Payments>,
    issuer: Option<Issuer>,
    telemetry: Telemetry,
    scores: PeerScores,
}

impl Router {
    pub(crate) fn new(s: &crate::node::Services, payments: Option<Payments>) -> Self {
        Self {
            client: s.client.clone(),
            store: s.store.clone(),
            worker: s.worker.clone(),
            network: s.network.clone(),
            replica: s.replica.clone(),
            payments,
            issuer: s.issuer.clone(),
            telemetry: s.telemetry.clone(),
            scores: s.scores.clone(),
        }
    }

    /// Routes messages until the overlay stops.
    pub(crate) async fn run(self, mut inbound: mpsc::Receiver<Inbound>) {
        while let Some(message) = inbound.recv().await {
            self.route(message);
        }
    }

    fn route(&self, message: Inbound) {
        match message {
            Inbound::Chunk {
                request, channel, ..
            } => {
                let store = self.store.clone();
                let client = self.client.clone();
                let metrics = self.telemetry.metrics.clone();
                tokio::spawn(async move {
                    let response =
                        tokio::task::spawn_blocking(move || crate::fetch::serve(&store, &request))
                            .await
                            .unwrap_or_else(|_| {
                                ChunkResponse::with_status(ChunkStatus::Unavailable)
                            });
                    let sent: usize = response.chunks.iter().map(|c| c.len()).sum();
                    metrics.blob_bytes("out", sent as u64);
                    let _ = client.respond_chunk(channel, response).await;
                });
            }
            Inbound::Task {
                peer,
                request,
                channel,
            } => {
                let worker = self.worker.clone();
                let network = self.network.clone();
                let client = self.client.clone();
                let payments = self.payments.clone();
                let issuer = self.issuer.clone();
                let scores = self.scores.clone();
                tokio::spawn(async move {
                    let unpaid = || {
                        TaskReply::refusal("no_ledger", "this node has no ledger: nothing to pay")
                    };
                    let reply = match TaskRequest::decode(request.as_slice()) {
                        Err(e) => {
                            TaskReply::refusal("malformed", format!("malformed task request: {e}"))
                        }
                        // A worker reporting progress on a task this node sent.
                        Ok(r) if !r.progress.is_empty() => network.on_progress(peer, &r.progress),
                        // An owner's co-signatures on a settlement.
                        Ok(TaskRequest {
                            settle: Some(s), ..
                        }) => match &payments {
                            Some(p) => p.on_settle(peer, s).await,
                            None => unpaid(),
                        },
                        // A party asking this node, as an arbiter, to co-sign.
                        Ok(TaskRequest {
                            arbitrate: Some(a), ..
                        }) => match &payments {
                            Some(p) => p.on_arbitrate(peer, a).await,
                            None => unpaid(),
                        },
                        // An operator asking this node, as the issuer, to
                        // pay out.
                        Ok(TaskRequest {
                            payout: Some(p), ..
                        }) => match &issuer {
                            Some(i) => i.on_payout(peer, p).await,
                            None => TaskReply::refusal(
                                "not_issuer",
                                "this node runs no issuer service ([issuer] key is not set)",
                            ),
                        },
                        Ok(r) => worker.handle_task(peer, r).await,
                    };
                    // Bytes no honest node sends (not a request, not an
                    // envelope, a signature that fails) score the sender
                    // down, as bad gossip does, until it is blocked.
                    if matches!(reply.refused_code.as_str(), "malformed" | "bad_signature") {
                        scores.penalise(peer, &reply.refused);
                    }
                    let _ = client.respond_task(channel, reply.encode_to_vec()).await;
                });
            }
            Inbound::Ledger {
                peer,
                request,
                channel,
            } => {
                let replica = self.replica.clone();
                let client = self.client.clone();
                tokio::spawn(async move {
                    // A node without a ledger answers empty: "nothing here".
                    let reply = match &replica {
                        Some(r) => r.answer_sync(peer, &request).await,
                        None => Vec::new(),
                    };
                    let _ = client.respond_ledger(channel, reply).await;
                });
            }
            Inbound::Gossip {
                source,
                via,
                topic,
                data,
                id,
            } => {
                if topic == ADVERT_TOPIC {
                    let verdict = self.network.on_advert(source, via, &data);
                    self.client.judge(id, verdict);
                } else if topic == LEDGER_TOPIC
                    && let Some(replica) = &self.replica
                {
                    replica.on_gossip(via, data, id);
                } else {
                    // A topic this node reads nothing on: not passed on.
                    self.client.judge(id, p2pc_net::Verdict::Ignore);
                }
            }
            Inbound::Connected(peer) => {
                debug!(%peer, "peer connected");
                self.telemetry.events.publish(EventKind::PeerConnected {
                    peer: peer.to_string(),
                });
                if let Some(replica) = &self.replica {
                    replica.on_connected(peer);
                }
            }
            Inbound::Disconnected(peer) => {
                self.telemetry.events.publish(EventKind::PeerDisconnected {
                    peer: peer.to_string(),
                });
                self.network.on_disconnected(&peer);
            }
        }
    }
}
