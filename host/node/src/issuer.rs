//! The issuer service: the one part of a node that signs mints. It runs
//! when `[issuer] key` names a key the genesis file lists as an issuer.
//!
//! - A provider's webhook (`p2pc_payments::Provider`) is verified before
//!   anything in it is read; then, under the ledger's lock, its event id
//!   is looked up in the ledger's `records`, and what it causes (a mint, a
//!   transfer, a debt) is written with the event's record in one batch,
//!   synced before the webhook is answered. So a retried, reordered or
//!   concurrent delivery does nothing twice, and a crash between the mint
//!   and its record cannot happen: both are on disk, or neither is and
//!   the provider, never having had its 2xx, sends the event again.
//! - Bought credits clear: they are minted to the issuer's own account
//!   and transferred to the buyer when `[issuer] clearing` has passed. A
//!   refund or chargeback inside it leaves them with the issuer. After it,
//!   a reversal is recorded as the account's debt, netted from its
//!   payouts (only an owner can debit its account, so the issuer cannot
//!   take credits back). With `clearing = "0s"` the mint goes straight to
//!   the buyer.
//! - Payouts: an operator's node sends its signed transfer to the
//!   issuer's account over the task protocol (`PayoutAsk`); once the
//!   transfer applies here, the payout is recorded as `requested` and
//!   handed to the provider; the issuer's operator marks it `sent` or
//!   `failed`, and a failed payout's credits are transferred back.
//!
//! Records live under `issuer/` in the ledger's own database (the node's
//! other, the store's, could not be written in one batch with the ops).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pc_crypto::{PublicKey, SecretKey};
use p2pc_ledger::{Body, Ledger, Op, Record};
use p2pc_net::PeerId;
use p2pc_payments::{Event, EventKind, PayoutRequest, PayoutState, Provider, WebhookError};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::{IssuerStatus, PaymentView, PayoutUpdate, PayoutView, WebhookReceipt};
use crate::messages::{PayoutAnswer, PayoutAsk, TaskReply};
use crate::metrics::{Outcome, State, Telemetry};
use crate::replica::{OpState, Replica};
use crate::{Error, NodeConfig, Result};

const EVT: &str = "issuer/evt/";
const PAY: &str = "issuer/pay/";
const DEBT: &str = "issuer/debt/";
const OUT: &str = "issuer/out/";
/// Longest provider id (event or payment) kept; Stripe's are about 30.
const MAX_ID: usize = 255;
/// Longest payout destination.
const MAX_DESTINATION: usize = 256;

/// A payout destination as given, trimmed, if it is one: 1 to
/// [`MAX_DESTINATION`] bytes with no control characters. Checked by the
/// operator's node before it signs anything, and again by the issuer.
pub(crate) fn destination(given: &str) -> std::result::Result<String, String> {
    let d = given.trim();
    if d.is_empty() || d.len() > MAX_DESTINATION || d.chars().any(char::is_control) {
        return Err(format!(
            "the destination must be 1 to {MAX_DESTINATION} printable bytes (an IBAN, a provider account id)"
        ));
    }
    Ok(d.to_owned())
}
/// How long a payout request waits for its transfer to apply here.
const APPLY_WAIT: Duration = Duration::from_secs(20);
/// Bodies up to this size are verified on the async thread that got them.
const VERIFY_INLINE: usize = 16 << 10;
/// The clearing loop looks again at least this often.
const CLEAR_TICK: Duration = Duration::from_secs(3600);

/// One event acted on, kept so a repeat is answered the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct EventRecord {
    payment: String,
    action: String,
    op: Option<String>,
    credits: u64,
}

/// Where a payment's credits stand.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "lowercase")]
enum PayState {
    /// A refund or dispute arrived before the payment's own event.
    Unseen,
    /// Minted to the issuer; the buyer's at `until_ms`.
    Clearing { until_ms: u64 },
    /// The buyer has them.
    Credited,
    /// Refunded or disputed before the buyer had them.
    Reversed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Payment {
    account: Option<PublicKey>,
    amount: u64,
    currency: String,
    /// Credits the whole payment buys.
    credits: u64,
    /// Minor units refunded so far (the provider reports the total).
    refunded: u64,
    disputed: bool,
    state: PayState,
    /// Credits minted for it.
    minted: u64,
    /// Credits the buyer received from it.
    given: u64,
    /// Credits the buyer owes for it (a reversal after it was credited).
    owed: u64,
    mint: Option<String>,
    credit: Option<String>,
}

impl Payment {
    fn unseen() -> Self {
        Self {
            account: None,
            amount: 0,
            currency: String::new(),
            credits: 0,
            refunded: 0,
            disputed: false,
            state: PayState::Unseen,
            minted: 0,
            given: 0,
            owed: 0,
            mint: None,
            credit: None,
        }
    }

    /// Credits the payment still buys after refunds and disputes.
    fn kept(&self) -> u64 {
        if self.disputed {
            return 0;
        }
        let refunded = self.refunded.min(self.amount);
        let back = if self.amount == 0 {
            0
        } else {
            // Floor: a partial refund takes back at most its share.
            u64::try_from(u128::from(self.credits) * u128::from(refunded) / u128::from(self.amount))
                .unwrap_or(u64::MAX)
        };
        self.credits.saturating_sub(back)
    }

    fn view(&self, id: &str) -> PaymentView {
        let (state, clears) = match self.state {
            PayState::Unseen => ("unseen", None),
            PayState::Clearing { until_ms } => ("clearing", Some(until_ms)),
            PayState::Credited => ("credited", None),
            PayState::Reversed => ("reversed", None),
        };
        PaymentView {
            payment: id.to_owned(),
            account: self.account.map(|a| a.to_string()),
            amount: self.amount,
            currency: self.currency.clone(),
            credits: self.credits,
            refunded: self.refunded,
            disputed: self.disputed,
            state: state.into(),
            clears_unix_ms: clears,
            mint: self.mint.clone(),
            credit: self.credit.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Payout {
    account: PublicKey,
    credits: u64,
    netted: u64,
    destination: String,
    state: String,
    detail: String,
    returned: Option<String>,
}

impl Payout {
    fn view(&self, id: &str) -> PayoutView {
        PayoutView {
            id: id.to_owned(),
            account: self.account.to_string(),
            credits: self.credits,
            netted: self.netted,
            destination: self.destination.clone(),
            state: self.state.clone(),
            detail: self.detail.clone(),
            returned: self.returned.clone(),
        }
    }

    fn answer(&self, id: &[u8]) -> PayoutAnswer {
        PayoutAnswer {
            id: id.to_vec(),
            state: self.state.clone(),
            detail: self.detail.clone(),
            credits: self.credits,
            netted: self.netted,
        }
    }
}

fn key(prefix: &str, id: &str) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn get<T: for<'de> Deserialize<'de>>(l: &Ledger, key: &[u8]) -> Result<Option<T>> {
    match l.record(key).map_err(|e| Error::Ledger(e.to_string()))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| {
            Error::Ledger(format!(
                "issuer record {} is damaged: {e}",
                String::from_utf8_lossy(key)
            ))
        }),
    }
}

fn all<T: for<'de> Deserialize<'de>>(l: &Ledger, prefix: &str) -> Result<Vec<(String, T)>> {
    let rows = l
        .records(prefix.as_bytes())
        .map_err(|e| Error::Ledger(e.to_string()))?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        let value = serde_json::from_slice(&v)
            .map_err(|e| Error::Ledger(format!("issuer record {prefix}{id} is damaged: {e}")))?;
        out.push((id, value));
    }
    Ok(out)
}

/// Payments in clearing: each once, by when it clears.
#[derive(Default)]
struct Due {
    by_time: BTreeSet<(u64, String)>,
    by_id: std::collections::HashMap<String, u64>,
}

impl Due {
    /// Queues `id` at `until`, in place of where it was.
    fn insert(&mut self, until: u64, id: String) {
        self.remove(&id);
        self.by_id.insert(id.clone(), until);
        self.by_time.insert((until, id));
    }

    fn remove(&mut self, id: &str) {
        if let Some(until) = self.by_id.remove(id) {
            self.by_time.remove(&(until, id.to_owned()));
        }
    }

    /// The payment that clears first.
    fn first(&self) -> Option<(u64, String)> {
        self.by_time.first().cloned()
    }
}

/// The issuer service's handle. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Issuer {
    inner: Arc<Inner>,
}

struct Inner {
    replica: Replica,
    key: Arc<SecretKey>,
    account: PublicKey,
    provider: Box<dyn Provider>,
    clearing_ms: u64,
    telemetry: Telemetry,
    /// Payments in clearing, by when they clear.
    due: Mutex<Due>,
    /// Woken when a payment starts clearing sooner than any before it.
    wake: tokio::sync::Notify,
}

impl Issuer {
    /// Starts the issuer service if `[issuer] key` is set: checks the key
    /// is a genesis issuer, reads the webhook secrets, and starts the
    /// clearing loop.
    pub(crate) async fn start(
        config: &NodeConfig,
        replica: Option<Replica>,
        telemetry: Telemetry,
    ) -> Result<Option<(Self, JoinHandle<()>)>> {
        let Some(name) = &config.issuer.key else {
            return Ok(None);
        };
        let Some(replica) = replica else {
            return Err(Error::Config(
                "[issuer] needs a ledger: set [ledger] genesis".into(),
            ));
        };
        let key = config.issuer_key.clone().ok_or_else(|| {
            Error::Config(format!(
                "[issuer] key = {name:?}, but the key was not unlocked (start the node with p2pctl node start)"
            ))
        })?;
        let account = key.0.public();
        if !replica.issuers().contains(&account) {
            return Err(Error::Config(format!(
                "[issuer] key {name:?} ({account}) is not an issuer in the genesis file; only a listed key can mint"
            )));
        }
        let provider: Box<dyn Provider> = match config.issuer.provider.as_str() {
            "stripe" => {
                let path = config.issuer.webhook_secrets.clone().ok_or_else(|| {
                    Error::Config(
                        "[issuer] webhook_secrets must name the file holding the provider's signing secrets".into(),
                    )
                })?;
                let shown = path.display().to_string();
                let text = crate::blocking(move || {
                    std::fs::read_to_string(&path).map_err(|e| {
                        Error::Config(format!("cannot read [issuer] webhook_secrets {shown}: {e}"))
                    })
                })
                .await?;
                let secrets: Vec<Vec<u8>> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| l.as_bytes().to_vec())
                    .collect();
                if secrets.is_empty() {
                    return Err(Error::Config(
                        "[issuer] webhook_secrets holds no secret".into(),
                    ));
                }
                Box::new(
                    p2pc_payments::stripe::Stripe::new(secrets, config.issuer.rates.clone())
                        .with_tolerance(config.issuer.tolerance.as_secs()),
                )
            }
            other => {
                return Err(Error::Config(format!(
                    "[issuer] provider {other:?} is not known; the one provider is \"stripe\""
                )));
            }
        };
        let inner = Arc::new(Inner {
            replica,
            key: key.0,
            account,
            provider,
            clearing_ms: u64::try_from(config.issuer.clearing.as_millis()).unwrap_or(u64::MAX),
            telemetry,
            due: Mutex::new(Due::default()),
            wake: tokio::sync::Notify::new(),
        });
        // Payments still clearing from before a restart.
        let clearing = inner
            .replica
            .read(|l| all::<Payment>(l, PAY))
            .await??
            .into_iter()
            .filter_map(|(id, p)| match p.state {
                PayState::Clearing { until_ms } => Some((until_ms, id)),
                _ => None,
            });
        {
            let mut due = inner.due();
            for (until, id) in clearing {
                due.insert(until, id);
            }
        }
        info!(%account, provider = inner.provider.name(), "issuer service started");
        let task = tokio::spawn(clear_loop(inner.clone()));
        Ok(Some((Self { inner }, task)))
    }

    /// Verifies and acts on one webhook from `provider`. `signature` is
    /// the provider's signature header; `body` the raw bytes.
    pub(crate) async fn webhook(
        &self,
        provider: &str,
        signature: Option<&str>,
        body: &[u8],
        now_unix: u64,
    ) -> Result<WebhookReceipt> {
        let inner = &self.inner;
        let count = |result: &str| {
            inner
                .telemetry
                .metrics
                .webhooks
                .get_or_create(&Outcome {
                    outcome: result.to_owned(),
                })
                .inc();
        };
        if provider != inner.provider.name() {
            return Err(Error::NotFound(format!(
                "this issuer takes webhooks from {:?}, not {provider:?}",
                inner.provider.name()
            )));
        }
        // A large body's MAC (at most 256 KiB) is computed off the async
        // threads; a small one costs less than the hop.
        let verified = if body.len() > VERIFY_INLINE {
            let (this, signature, body) =
                (inner.clone(), signature.map(str::to_owned), body.to_vec());
            tokio::task::spawn_blocking(move || {
                this.provider.verify(signature.as_deref(), &body, now_unix)
            })
            .await
            .map_err(|e| Error::Io(format!("a webhook's verification failed: {e}")))?
        } else {
            inner.provider.verify(signature, body, now_unix)
        };
        let event = match verified {
            Ok(e) => e,
            Err(e) => {
                count(if signature_fault(&e) {
                    "rejected_signature"
                } else {
                    "rejected_event"
                });
                return Err(Error::Webhook(e));
            }
        };
        if event.id.is_empty() || event.id.len() > MAX_ID || event.payment.len() > MAX_ID {
            count("rejected_event");
            return Err(Error::Webhook(WebhookError::Malformed(format!(
                "event and payment ids must be 1 to {MAX_ID} bytes"
            ))));
        }
        let this = inner.clone();
        let ((receipt, clears), op) = inner
            .replica
            .write_recorded(move |l, now| this.decide(l, now, event))
            .await?;
        count(if receipt.duplicate {
            "duplicate"
        } else {
            &receipt.action
        });
        if let Some(Op {
            body: Body::Mint { amount, .. },
            ..
        }) = &op
        {
            inner.telemetry.metrics.minted.inc_by(*amount);
        }
        if let Some(until) = clears {
            let mut due = inner.due();
            let sooner = due.first().is_none_or(|(t, _)| until < t);
            due.insert(until, receipt.payment.clone());
            drop(due);
            if sooner {
                inner.wake.notify_one();
            }
        }
        Ok(receipt)
    }

    /// The service's summary.
    pub(crate) async fn status(&self) -> Result<IssuerStatus> {
        let account = self.inner.account;
        let provider = self.inner.provider.name().to_owned();
        let clearing_ms = self.inner.clearing_ms;
        self.inner
            .replica
            .read(move |l| -> Result<IssuerStatus> {
                let payments = all::<Payment>(l, PAY)?;
                let payouts = all::<Payout>(l, OUT)?;
                let debts = all::<u64>(l, DEBT)?;
                Ok(IssuerStatus {
                    account: account.to_string(),
                    provider,
                    minted: total(payments.iter().map(|(_, p)| p.minted)),
                    clearing: total(
                        payments
                            .iter()
                            .filter(|(_, p)| matches!(p.state, PayState::Clearing { .. }))
                            .map(|(_, p)| p.minted),
                    ),
                    balance: total(
                        std::iter::once(l.state().balance(&account))
                            .chain(l.state().incoming(&account).iter().map(|(_, a)| *a)),
                    ),
                    debt: total(debts.iter().map(|(_, d)| *d)),
                    payments: payments.len(),
                    payouts: payouts.len(),
                    payouts_waiting: payouts
                        .iter()
                        .filter(|(_, p)| p.state == "requested")
                        .count(),
                    clearing_ms,
                })
            })
            .await?
    }

    /// Every payment recorded.
    pub(crate) async fn payments(&self) -> Result<Vec<PaymentView>> {
        self.inner
            .replica
            .read(|l| all::<Payment>(l, PAY).map(|v| v.iter().map(|(id, p)| p.view(id)).collect()))
            .await?
    }

    /// Every payout recorded.
    pub(crate) async fn payouts(&self) -> Result<Vec<PayoutView>> {
        self.inner
            .replica
            .read(|l| all::<Payout>(l, OUT).map(|v| v.iter().map(|(id, p)| p.view(id)).collect()))
            .await?
    }

    /// The issuer's operator says what became of payout `id`.
    pub(crate) async fn update(&self, id: &str, update: PayoutUpdate) -> Result<PayoutView> {
        if id.len() != 64 || hex::decode(id).is_err() {
            return Err(Error::Control(format!(
                "{id:?} is not a payout id (64 hex digits)"
            )));
        }
        let inner = self.inner.clone();
        let id = id.to_owned();
        let state = match &update {
            PayoutUpdate::Sent { .. } => "sent",
            PayoutUpdate::Failed { .. } => "failed",
        };
        let (view, _) = self
            .inner
            .replica
            .write_recorded(move |l, now| inner.settle_payout(l, now, &id, update))
            .await?;
        self.count_payout(state);
        Ok(view)
    }

    /// A peer's [`PayoutAsk`]: a new request, or a question about one.
    pub(crate) async fn on_payout(&self, peer: PeerId, ask: PayoutAsk) -> TaskReply {
        match self.payout(peer, ask).await {
            Ok(answer) => TaskReply {
                payout: Some(answer),
                ..TaskReply::default()
            },
            Err((code, message)) => TaskReply::refusal(code, message),
        }
    }

    async fn payout(
        &self,
        peer: PeerId,
        ask: PayoutAsk,
    ) -> std::result::Result<PayoutAnswer, (&'static str, String)> {
        let internal = |e: Error| ("unavailable", e.to_string());
        let account = PublicKey::from_peer_id(&peer).ok_or((
            "malformed",
            "the asker's peer id is not an Ed25519 key".to_owned(),
        ))?;
        if ask.transfer.is_empty() {
            let id = hex::encode(&ask.id);
            let found: Option<Payout> = self
                .inner
                .replica
                .read(move |l| get(l, &key(OUT, &id)))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            return match found {
                Some(p) if p.account == account => Ok(p.answer(&ask.id)),
                _ => Err(("not_found", "no payout of yours has that id".into())),
            };
        }
        let op = Op::from_bytes(&ask.transfer)
            .map_err(|e| ("malformed", format!("the transfer does not decode: {e}")))?;
        let amount = match op.body {
            Body::Transfer { to, amount } if to == self.inner.account && amount > 0 => amount,
            _ => {
                return Err((
                    "bad_payout",
                    format!(
                        "a payout is a transfer of credits to the issuer's account {}",
                        self.inner.account
                    ),
                ));
            }
        };
        if op.author != account {
            return Err((
                "bad_payout",
                "the transfer is not signed by the asking node's account".into(),
            ));
        }
        let destination = destination(&ask.destination).map_err(|why| ("bad_payout", why))?;
        let id = op.id();
        let id_hex = hex::encode(id);
        // A retry of a request already recorded gets the record.
        let known = {
            let k = key(OUT, &id_hex);
            self.inner
                .replica
                .read(move |l| get::<Payout>(l, &k))
                .await
                .map_err(internal)?
                .map_err(internal)?
        };
        if let Some(p) = known {
            return Ok(p.answer(&id));
        }
        self.inner.replica.take(peer, op).await.map_err(internal)?;
        match self.inner.replica.wait_for(id, peer, APPLY_WAIT).await {
            OpState::Applied => {}
            OpState::Refused(why) => {
                return Err(("not_applied", format!("the transfer was refused: {why}")));
            }
            OpState::Pending => {
                return Err((
                    "not_applied",
                    format!(
                        "the transfer did not apply here within {} s; ask again once it has spread",
                        APPLY_WAIT.as_secs()
                    ),
                ));
            }
        }
        let (payout, _) = self
            .inner
            .replica
            .write_recorded(move |l, _| {
                let k = key(OUT, &id_hex);
                if let Some(p) = get::<Payout>(l, &k)? {
                    return Ok((None, Vec::new(), (p, false)));
                }
                let dk = key(DEBT, &account.to_string());
                let debt: u64 = get(l, &dk)?.unwrap_or(0);
                let netted = debt.min(amount);
                let p = Payout {
                    account,
                    credits: amount,
                    netted,
                    destination,
                    state: "requested".into(),
                    detail: String::new(),
                    returned: None,
                };
                let mut records = vec![(k, encode(&p))];
                if netted > 0 {
                    records.push((dk, encode(&(debt - netted))));
                }
                Ok((None, records, (p, true)))
            })
            .await
            .map_err(internal)?;
        let (payout, new) = payout;
        if !new {
            return Ok(payout.answer(&id));
        }
        self.count_payout("requested");
        info!(payout = %hex::encode(id), credits = amount, netted = payout.netted, "payout requested");
        // The provider's side: one that only records leaves it requested.
        let request = PayoutRequest {
            id: hex::encode(id),
            account,
            credits: amount - payout.netted,
            destination: payout.destination.clone(),
        };
        let update = match self.inner.provider.payout(&request) {
            PayoutState::Requested => None,
            PayoutState::Sent(reference) => Some(PayoutUpdate::Sent { reference }),
            PayoutState::Failed(reason) => Some(PayoutUpdate::Failed { reason }),
        };
        if let Some(update) = update {
            return match self.update(&hex::encode(id), update).await {
                Ok(v) => Ok(PayoutAnswer {
                    id: id.to_vec(),
                    state: v.state,
                    detail: v.detail,
                    credits: v.credits,
                    netted: v.netted,
                }),
                Err(e) => Err(internal(e)),
            };
        }
        Ok(payout.answer(&id))
    }

    fn count_payout(&self, state: &str) {
        self.inner
            .telemetry
            .metrics
            .payouts
            .get_or_create(&State {
                state: state.to_owned(),
            })
            .inc();
    }
}

/// A sum that stops at `u64::MAX` rather than wrapping.
fn total(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0, u64::saturating_add)
}

/// Whether a refusal is about the signature (a stranger or a replay)
/// rather than a signed event the issuer cannot act on.
fn signature_fault(e: &WebhookError) -> bool {
    matches!(
        e,
        WebhookError::MissingSignature(_)
            | WebhookError::MalformedSignature(_)
            | WebhookError::Stale { .. }
            | WebhookError::BadSignature
    )
}

type Decided<T> = Result<(Option<Op>, Vec<Record>, T)>;

impl Inner {
    fn due(&self) -> std::sync::MutexGuard<'_, Due> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What one verified event does, decided on the ledger's state under
    /// its lock (see [`Replica::write_recorded`]).
    /// With the receipt: when the payment clears, if it started clearing.
    fn decide(&self, l: &Ledger, now: u64, event: Event) -> Decided<(WebhookReceipt, Option<u64>)> {
        let ek = key(EVT, &event.id);
        if let Some(r) = get::<EventRecord>(l, &ek)? {
            // A payment still clearing is queued again: the first answer
            // (which queues it) may never have reached its handler.
            let clears = match get::<Payment>(l, &key(PAY, &r.payment))? {
                Some(Payment {
                    state: PayState::Clearing { until_ms },
                    ..
                }) => Some(until_ms),
                _ => None,
            };
            let receipt = WebhookReceipt {
                event: event.id,
                payment: r.payment,
                action: r.action,
                duplicate: true,
                op: r.op,
                credits: r.credits,
            };
            return Ok((None, Vec::new(), (receipt, clears)));
        }
        let pk = key(PAY, &event.payment);
        let before = get::<Payment>(l, &pk)?;
        let mut pay = before.clone().unwrap_or_else(Payment::unseen);
        let mut op = None;
        let mut credits = 0;
        let mut records: Vec<Record> = Vec::new();
        let action = match event.kind {
            EventKind::PaymentSucceeded {
                account,
                amount,
                currency,
                credits: bought,
            } => {
                if matches!(pay.state, PayState::Unseen) {
                    pay.account = Some(account);
                    pay.amount = amount;
                    pay.currency = currency;
                    pay.credits = bought;
                    let kept = pay.kept();
                    if kept == 0 {
                        pay.state = PayState::Reversed;
                        "reversed"
                    } else if self.clearing_ms == 0 {
                        let mint = l.state().draft(
                            &self.key,
                            now,
                            Body::Mint {
                                to: account,
                                amount: kept,
                            },
                        );
                        pay.mint = Some(hex::encode(mint.id()));
                        pay.minted = kept;
                        pay.given = kept;
                        pay.state = PayState::Credited;
                        credits = kept;
                        op = Some(mint);
                        "minted"
                    } else {
                        let mint = l.state().draft(
                            &self.key,
                            now,
                            Body::Mint {
                                to: self.account,
                                amount: kept,
                            },
                        );
                        pay.mint = Some(hex::encode(mint.id()));
                        pay.minted = kept;
                        pay.state = PayState::Clearing {
                            until_ms: now.saturating_add(self.clearing_ms),
                        };
                        credits = kept;
                        op = Some(mint);
                        "clearing"
                    }
                } else {
                    // The payment is known: a second success event for it
                    // (another event id) mints nothing.
                    "none"
                }
            }
            EventKind::Refunded { amount } => {
                pay.refunded = pay.refunded.max(amount);
                self.reverse(l, &mut pay, &mut records, &mut credits)?
            }
            EventKind::Disputed => {
                pay.disputed = true;
                self.reverse(l, &mut pay, &mut records, &mut credits)?
            }
            EventKind::Ignored(_) => "ignored",
        };
        let record = EventRecord {
            payment: event.payment.clone(),
            action: action.to_owned(),
            op: op.as_ref().map(|o: &Op| hex::encode(o.id())),
            credits,
        };
        records.push((ek, encode(&record)));
        if action != "ignored" {
            records.push((pk, encode(&pay)));
        }
        let clears = match pay.state {
            PayState::Clearing { until_ms } if action == "clearing" => Some(until_ms),
            _ => None,
        };
        let receipt = WebhookReceipt {
            event: event.id,
            payment: event.payment,
            action: action.to_owned(),
            duplicate: false,
            op: record.op,
            credits,
        };
        Ok((op, records, (receipt, clears)))
    }

    /// A refund or dispute changed `pay`: before the buyer has the credits
    /// they stay with the issuer; after, what the buyer holds beyond what
    /// it kept paying for becomes its debt.
    fn reverse(
        &self,
        l: &Ledger,
        pay: &mut Payment,
        records: &mut Vec<Record>,
        credits: &mut u64,
    ) -> Result<&'static str> {
        Ok(match pay.state {
            PayState::Unseen | PayState::Reversed => "reversed",
            PayState::Clearing { .. } => {
                if pay.kept() == 0 {
                    pay.state = PayState::Reversed;
                }
                "reversed"
            }
            PayState::Credited => {
                let owed = pay.given.saturating_sub(pay.kept());
                let more = owed.saturating_sub(pay.owed);
                pay.owed = pay.owed.max(owed);
                if more == 0 {
                    "none"
                } else {
                    let account = pay.account.ok_or_else(|| {
                        Error::Ledger("a credited payment's record names no account".into())
                    })?;
                    let dk = key(DEBT, &account.to_string());
                    let debt: u64 = get(l, &dk)?.unwrap_or(0);
                    records.push((dk, encode(&debt.saturating_add(more))));
                    *credits = more;
                    "debt"
                }
            }
        })
    }

    /// Transfers a cleared payment's credits to its buyer. Returns when
    /// the payment clears if that is still ahead.
    fn clear(&self, l: &Ledger, now: u64, id: &str) -> Decided<Option<u64>> {
        let pk = key(PAY, id);
        let Some(mut pay) = get::<Payment>(l, &pk)? else {
            return Ok((None, Vec::new(), None));
        };
        let PayState::Clearing { until_ms } = pay.state else {
            return Ok((None, Vec::new(), None));
        };
        if until_ms > now {
            return Ok((None, Vec::new(), Some(until_ms)));
        }
        let amount = pay.kept().min(pay.minted);
        let account = pay.account.ok_or_else(|| {
            Error::Ledger(format!(
                "payment {id}'s record is clearing but names no account"
            ))
        })?;
        let op = (amount > 0).then(|| {
            l.state().draft(
                &self.key,
                now,
                Body::Transfer {
                    to: account,
                    amount,
                },
            )
        });
        pay.credit = op.as_ref().map(|o| hex::encode(o.id()));
        pay.given = amount;
        pay.state = PayState::Credited;
        Ok((op, vec![(pk, encode(&pay))], None))
    }

    /// Marks payout `id` sent or failed; a failed one's credits go back.
    fn settle_payout(
        &self,
        l: &Ledger,
        now: u64,
        id: &str,
        update: PayoutUpdate,
    ) -> Decided<PayoutView> {
        let k = key(OUT, id);
        let Some(mut p) = get::<Payout>(l, &k)? else {
            return Err(Error::NotFound(format!("no payout {id}")));
        };
        if p.state != "requested" {
            return Err(Error::Control(format!(
                "payout {id} is already {}; only a requested payout can change",
                p.state
            )));
        }
        let mut records = Vec::new();
        let mut op = None;
        match update {
            PayoutUpdate::Sent { reference } => {
                p.state = "sent".into();
                p.detail = reference;
            }
            PayoutUpdate::Failed { reason } => {
                let back = l.state().draft(
                    &self.key,
                    now,
                    Body::Transfer {
                        to: p.account,
                        amount: p.credits,
                    },
                );
                p.state = "failed".into();
                p.detail = reason;
                p.returned = Some(hex::encode(back.id()));
                if p.netted > 0 {
                    let dk = key(DEBT, &p.account.to_string());
                    let debt: u64 = get(l, &dk)?.unwrap_or(0);
                    records.push((dk, encode(&debt.saturating_add(p.netted))));
                }
                op = Some(back);
            }
        }
        records.push((k, encode(&p)));
        Ok((op, records, p.view(id)))
    }
}

/// Transfers each payment's credits to its buyer when its clearing ends.
/// A payment whose transfer fails is tried again a minute later, behind
/// the others. Every [`CLEAR_TICK`] the records are read again, so a
/// payment that started clearing while its webhook's answer was lost
/// (the in-memory queue is filled after the write) still clears.
async fn clear_loop(inner: Arc<Inner>) {
    let mut rescan = tokio::time::Instant::now() + CLEAR_TICK;
    loop {
        let now = now_ms();
        if tokio::time::Instant::now() >= rescan {
            rescan = tokio::time::Instant::now() + CLEAR_TICK;
            match inner.replica.read(|l| all::<Payment>(l, PAY)).await {
                Ok(Ok(payments)) => {
                    let clearing = payments.into_iter().filter_map(|(id, p)| match p.state {
                        PayState::Clearing { until_ms } => Some((until_ms, id)),
                        _ => None,
                    });
                    let mut due = inner.due();
                    for (until, id) in clearing {
                        due.insert(until, id);
                    }
                }
                Ok(Err(e)) | Err(e) => warn!(error = %e, "cannot read the payments in clearing"),
            }
        }
        let next = inner.due().first();
        match next {
            Some((until, id)) if until <= now => {
                let this = inner.clone();
                let pid = id.clone();
                let result = inner
                    .replica
                    .write_recorded(move |l, now| this.clear(l, now, &pid))
                    .await;
                let mut due = inner.due();
                due.remove(&id);
                match result {
                    Ok((Some(later), _)) => due.insert(later, id),
                    Ok((None, _)) => {}
                    Err(e) => {
                        warn!(payment = %id, error = %e, "a cleared payment's transfer failed; trying it again in a minute");
                        due.insert(now.saturating_add(60_000), id);
                    }
                }
            }
            next => {
                let wait = next
                    .map(|(until, _)| Duration::from_millis(until.saturating_sub(now)))
                    .unwrap_or(CLEAR_TICK)
                    .min(rescan.saturating_duration_since(tokio::time::Instant::now()));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = inner.wake.notified() => {}
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    crate::messages::now_unix_ms()
}
