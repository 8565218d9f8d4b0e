//! The operator's side of a payout: this node's credits turned back into
//! money by the network's issuer.
//!
//! A request signs a transfer of the credits to the issuer's account and
//! records it (`payout/<id>`, state `unsent`) in the same synced batch of
//! the ledger, then sends the transfer and the destination to the issuer
//! node as a [`PayoutAsk`] over the task protocol. The issuer's answer
//! (`requested`, `sent`, `failed`) is recorded. A request the issuer did
//! not acknowledge (it was unreachable, the node stopped) is sent again
//! whenever the payouts are listed: the same transfer, so the issuer
//! records it once.

use std::time::Duration;

use p2pc_crypto::PublicKey;
use p2pc_ledger::{Body, Op};
use p2pc_net::{Client, PeerId};
use prost::Message;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::api::{PayoutRequestBody, PayoutView};
use crate::messages::{PayoutAsk, TaskReply, TaskRequest};
use crate::replica::Replica;
use crate::signer::Signer;
use crate::{Error, NodeConfig, Result};

const OWN: &str = "payout/";
/// How long the issuer has to answer a new request (it waits for the
/// transfer to apply first, up to 20 s).
const ASK_TIMEOUT: Duration = Duration::from_secs(40);
/// How long a listing waits for the issuer's answer about one request; a
/// listing asks no more once the issuer did not answer.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Serialize, Deserialize)]
struct OwnPayout {
    issuer_peer: String,
    /// The signed transfer, ledger bytes, hex.
    transfer: String,
    credits: u64,
    netted: u64,
    destination: String,
    state: String,
    detail: String,
}

impl OwnPayout {
    fn view(&self, id: &str, me: &PublicKey) -> PayoutView {
        PayoutView {
            id: id.to_owned(),
            account: me.to_string(),
            credits: self.credits,
            netted: self.netted,
            destination: self.destination.clone(),
            state: self.state.clone(),
            detail: self.detail.clone(),
            returned: None,
        }
    }
}

/// This node's payout requests. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Payouts {
    replica: Replica,
    client: Client,
    signer: std::sync::Arc<Signer>,
    issuer_peer: Option<String>,
    issuer_account: Option<String>,
}

impl Payouts {
    pub(crate) fn new(
        config: &NodeConfig,
        replica: Replica,
        client: Client,
        signer: std::sync::Arc<Signer>,
    ) -> Self {
        Self {
            replica,
            client,
            signer,
            issuer_peer: config.payouts.issuer_peer.clone(),
            issuer_account: config.payouts.issuer_account.clone(),
        }
    }

    fn issuer(&self) -> Result<(PeerId, PublicKey)> {
        let peer = self.issuer_peer.as_deref().ok_or_else(|| {
            Error::Config(
                "no issuer to ask: set [payouts] issuer_peer to the peer id of the node running the issuer service".into(),
            )
        })?;
        let peer: PeerId = peer.parse().map_err(|_| {
            Error::Config(format!("[payouts] issuer_peer {peer:?} is not a peer id"))
        })?;
        let issuers = self.replica.issuers();
        let account = match self.issuer_account.as_deref() {
            Some(a) => {
                let account: PublicKey = a.parse().map_err(|_| {
                    Error::Config(format!(
                        "[payouts] issuer_account {a:?} is not a public key (64 hex digits)"
                    ))
                })?;
                // Credits sent anywhere else could never be paid out.
                if !issuers.contains(&account) {
                    return Err(Error::Config(format!(
                        "[payouts] issuer_account {a} is not an issuer in the genesis file"
                    )));
                }
                account
            }
            None => match issuers.as_slice() {
                [one] => *one,
                [] => {
                    return Err(Error::Config(
                        "the genesis file lists no issuer: nothing can pay out".into(),
                    ));
                }
                _ => {
                    return Err(Error::Config(
                        "the genesis file lists several issuers: set [payouts] issuer_account"
                            .into(),
                    ));
                }
            },
        };
        Ok((peer, account))
    }

    /// Asks for `body.amount` credits to be paid out to `body.destination`.
    pub(crate) async fn request(&self, body: PayoutRequestBody) -> Result<PayoutView> {
        if body.amount == 0 {
            return Err(Error::Control("a payout's amount must be above 0".into()));
        }
        let destination = crate::issuer::destination(&body.destination).map_err(Error::Control)?;
        let (peer, account) = self.issuer()?;
        let signer = self.signer.clone();
        let amount = body.amount;
        let issuer_peer = peer.to_string();
        let ((id, record), _) = self
            .replica
            .write_recorded(move |l, now| {
                let op = l.state().draft(
                    signer.key(),
                    now,
                    Body::Transfer {
                        to: account,
                        amount,
                    },
                );
                let id = hex::encode(op.id());
                let record = OwnPayout {
                    issuer_peer,
                    transfer: hex::encode(op.to_bytes()),
                    credits: amount,
                    netted: 0,
                    destination,
                    state: "unsent".into(),
                    detail: String::new(),
                };
                let k = format!("{OWN}{id}").into_bytes();
                let v = serde_json::to_vec(&record).expect("records serialize");
                Ok((Some(op), vec![(k, v)], (id, record)))
            })
            .await?;
        Ok(self.send(&id, record, ASK_TIMEOUT).await.0)
    }

    /// This node's payout requests, each refreshed from the issuer when it
    /// is not final (unsent ones sent again).
    pub(crate) async fn list(&self) -> Result<Vec<PayoutView>> {
        let rows = self
            .replica
            .read(|l| l.records(OWN.as_bytes()))
            .await?
            .map_err(|e| Error::Ledger(e.to_string()))?;
        let mut out = Vec::with_capacity(rows.len());
        let mut reachable = true;
        for (k, v) in rows {
            let id = String::from_utf8_lossy(&k[OWN.len()..]).into_owned();
            let record: OwnPayout = serde_json::from_slice(&v)
                .map_err(|e| Error::Ledger(format!("payout record {id} is damaged: {e}")))?;
            let view = if reachable && matches!(record.state.as_str(), "unsent" | "requested") {
                // An unsent request may wait for its transfer to apply at
                // the issuer; a question about a requested one does not.
                let timeout = if record.state == "unsent" {
                    ASK_TIMEOUT
                } else {
                    REFRESH_TIMEOUT
                };
                let (view, answered) = self.send(&id, record, timeout).await;
                reachable = answered;
                view
            } else {
                record.view(&id, &self.signer.public())
            };
            out.push(view);
        }
        Ok(out)
    }

    /// Sends (or asks about) one request and records the answer. A
    /// failure to reach the issuer leaves the record as it was, with why.
    /// Also says whether the issuer answered at all.
    async fn send(&self, id: &str, mut record: OwnPayout, timeout: Duration) -> (PayoutView, bool) {
        let me = self.signer.public();
        let ask = if record.state == "unsent" {
            PayoutAsk {
                transfer: hex::decode(&record.transfer).unwrap_or_default(),
                destination: record.destination.clone(),
                id: Vec::new(),
            }
        } else {
            PayoutAsk {
                id: hex::decode(id).unwrap_or_default(),
                ..PayoutAsk::default()
            }
        };
        let reply = match record.issuer_peer.parse::<PeerId>() {
            Ok(peer) => self.ask(peer, ask, timeout).await,
            Err(_) => Err((
                false,
                "the recorded issuer peer id does not parse".to_owned(),
            )),
        };
        let answered = !matches!(reply, Err((false, _)));
        match reply {
            Ok(answer) => {
                record.state = answer.state;
                record.detail = answer.detail;
                record.netted = answer.netted;
                let k = format!("{OWN}{id}").into_bytes();
                let v = serde_json::to_vec(&record).expect("records serialize");
                if let Err(e) = self
                    .replica
                    .write_recorded(move |_, _| Ok((None::<Op>, vec![(k, v)], ())))
                    .await
                {
                    debug!(payout = id, error = %e, "payout state not recorded");
                }
            }
            Err((_, why)) => {
                debug!(payout = id, %why, "the issuer did not answer");
                record.detail = why;
            }
        }
        (record.view(id, &me), answered)
    }

    /// The issuer's answer, or why not and whether it answered at all.
    async fn ask(
        &self,
        peer: PeerId,
        ask: PayoutAsk,
        timeout: Duration,
    ) -> std::result::Result<crate::messages::PayoutAnswer, (bool, String)> {
        let request = TaskRequest {
            payout: Some(ask),
            ..TaskRequest::default()
        };
        let bytes = self
            .client
            .request_task(peer, request.encode_to_vec(), timeout)
            .await
            .map_err(|e| (false, format!("the issuer {peer} is unreachable: {e}")))?;
        let reply = TaskReply::decode(bytes.as_slice())
            .map_err(|e| (true, format!("the issuer's answer does not decode: {e}")))?;
        match reply.payout {
            Some(a) => Ok(a),
            None if !reply.refused.is_empty() => Err((
                true,
                format!(
                    "the issuer refused ({}): {}",
                    reply.refused_code, reply.refused
                ),
            )),
            None => Err((true, "the issuer gave no answer".into())),
        }
    }
}
