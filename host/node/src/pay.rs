//! Payments: how a task on a network with a ledger is paid, for each of
//! the three parties, as a service behind the [`Payments`] handle.
//!
//! - The owner (submitter) signs a task hold bound to the task's digest
//!   before it sends the task, answers a verified receipt with its
//!   co-signatures on the settlement ([`Settle`]), and, when no receipt
//!   came, asks the arbiter at the deadline to co-sign a refund.
//! - The worker runs a task only once its own replica applied a valid hold
//!   for it (bonding collateral first if the hold asks for some), and
//!   writes both settlement decisions itself: with the owner's
//!   co-signatures, or, if they do not come, the arbiter's. Only the worker
//!   writes a settlement and only the owner a refund, so two parties never
//!   race to write one escrow step (the loser's op would be refused and
//!   stall its chain).
//! - The arbiter co-signs only what its own replica and clock show: a
//!   refund once the deadline passed with no settlement, a settlement a
//!   worker proves with its receipt before the deadline, a confirmation
//!   once the window passed. Before the deadline it signs no refund and
//!   after it no settlement, so it never signs two outcomes for one step.
//!
//! Follow-ups (a refund at the deadline, a confirmation after the window)
//! wait in one bounded queue served by one task. `docs/design/task-plane.md`
//! has the rules and the threats they answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pc_crypto::{Envelope, PublicKey, Signature};
use p2pc_ledger::{Body, Decision, Escrow, Op, OpId, Outcome, TaskHold, cosign, decision_bytes};
use p2pc_net::{Client, PeerId};
use prost::Message;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::market::Market;
use crate::messages::{
    Arbitrate, ArbitrateKind, RECEIPT_KIND, Receipt, Settle, TASK_KIND, TaskReply, TaskRequest,
    TaskSpec, now_unix_ms,
};
use crate::replica::{OpState, Replica};
use crate::signer::Signer;
use crate::{Error, NodeConfig, Result};

/// How long a worker waits for a task's hold to apply in its replica.
pub const HOLD_WAIT: Duration = Duration::from_secs(10);
/// How long a worker waits for the owner's settlement before it asks the
/// arbiter.
const SETTLE_GRACE: Duration = Duration::from_secs(10);
/// How long a payment message may take.
const PAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Follow-ups queued at most; past it new ones are dropped (the worker's
/// and owner's recovery on start finds open escrows again).
const QUEUE_MAX: usize = 100_000;
/// Tries of a follow-up whose other party is unreachable or not ready.
const TRIES: u32 = 12;

/// A refusal of a paid task: a code and a message.
pub(crate) struct Unpaid(pub(crate) &'static str, pub(crate) String);

/// A follow-up, due at a time.
#[derive(Clone, Copy, Debug)]
enum Action {
    /// Worker: the owner has not sent its settlement; ask the arbiter.
    AwaitSettle { escrow: OpId },
    /// Worker: the window passed; write the confirmation.
    Confirm { escrow: OpId },
    /// Owner: no receipt came; refund through the arbiter.
    Refund { escrow: OpId },
}

/// What the worker proposed in a receipt, until step 1 is written.
struct Proposal {
    fuel_used: u64,
    time_ms: u64,
    receipt: Vec<u8>,
}

/// A handle on the payments service. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Payments {
    inner: Arc<Inner>,
}

struct Inner {
    replica: Replica,
    client: Client,
    signer: Arc<Signer>,
    market: Market,
    collateral: u64,
    accepted: Vec<PublicKey>,
    arbiter: bool,
    /// Due time and insertion number → the follow-up and the tries it had.
    queue: Mutex<BTreeMap<(u64, u64), (Action, u32)>>,
    queued: AtomicU64,
    wake: tokio::sync::Notify,
    /// Worker: receipts sent whose settlement is not written yet.
    proposals: Mutex<HashMap<OpId, Proposal>>,
    /// Worker: the owner's co-signature on step 2, by escrow.
    confirms: Mutex<HashMap<OpId, Signature>>,
    /// Arbiter: what it co-signed at step 1, by escrow (true: a payment).
    arbitrated: Mutex<HashMap<OpId, bool>>,
    /// Owner: escrows it co-signed a settlement for (never refunded by it,
    /// or it would have signed two outcomes), and those it will refund.
    owner_settled: Mutex<std::collections::HashSet<OpId>>,
    refunding: Mutex<std::collections::HashSet<OpId>>,
    /// Owner: escrows refunded because replication proved them wrong (a
    /// refund, but not a timeout).
    cheats: Mutex<std::collections::HashSet<OpId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn escrow_id(bytes: &[u8]) -> Option<OpId> {
    bytes.try_into().ok()
}

fn signature(bytes: &[u8]) -> Option<Signature> {
    Some(Signature(bytes.try_into().ok()?))
}

impl Payments {
    /// Starts the service for a node with a ledger.
    pub(crate) fn start(
        config: &NodeConfig,
        replica: Replica,
        client: Client,
        signer: Arc<Signer>,
        market: Market,
    ) -> Result<(Self, JoinHandle<()>)> {
        let mut accepted = config.market.arbiter_keys()?;
        if accepted.is_empty() {
            accepted = replica.listed_arbiters();
        }
        if config.market.base_price > 0 && accepted.is_empty() {
            warn!(
                "this worker accepts no arbiter, so it cannot be paid and refuses peers' tasks: \
                 list arbiter keys in [market] arbiters, or set [market] price = 0 to run them unpaid"
            );
        }
        let inner = Arc::new(Inner {
            replica,
            client,
            signer,
            market,
            collateral: config.market.collateral,
            accepted,
            arbiter: config.arbiter.enabled,
            queue: Mutex::new(BTreeMap::new()),
            queued: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            proposals: Mutex::new(HashMap::new()),
            confirms: Mutex::new(HashMap::new()),
            arbitrated: Mutex::new(HashMap::new()),
            owner_settled: Mutex::new(std::collections::HashSet::new()),
            refunding: Mutex::new(std::collections::HashSet::new()),
            cheats: Mutex::new(std::collections::HashSet::new()),
        });
        let this = Self { inner };
        let task = tokio::spawn(this.clone().follow_ups());
        Ok((this, task))
    }

    /// The ledger network tasks are paid on.
    pub(crate) fn network_id(&self) -> [u8; 32] {
        self.inner.replica.network_id()
    }

    /// This worker's price per million fuel (0: unpaid), the collateral it
    /// bonds at most, and the arbiters it accepts.
    pub(crate) fn terms(&self) -> (u64, u64, &[PublicKey]) {
        (
            self.inner.market.price(),
            self.inner.collateral,
            &self.inner.accepted,
        )
    }

    /// Whether this node arbitrates.
    pub(crate) fn is_arbiter(&self) -> bool {
        self.inner.arbiter
    }

    /// The replica.
    pub(crate) fn replica(&self) -> &Replica {
        &self.inner.replica
    }

    /// Worker: the refusal of a task sent without a hold to a worker that
    /// charges, if it is one. Cheap: checked before anything is fetched.
    pub(crate) fn needs_hold(&self, hold: &[u8]) -> Option<Unpaid> {
        let price = self.inner.market.price();
        (hold.is_empty() && price > 0).then(|| {
            Unpaid(
                "unpaid",
                format!(
                    "this worker charges {price} credits per million fuel: send a hold with the task"
                ),
            )
        })
    }

    /// Worker: checks the hold sent with a task whose envelope hashes to
    /// `digest`, waits for it to apply here, and bonds collateral if it
    /// asks for some. `None`: this worker runs tasks unpaid.
    pub(crate) async fn admit(
        &self,
        peer: PeerId,
        submitter: PublicKey,
        hold: &[u8],
        digest: [u8; 32],
        fuel: u64,
        deadline_ms: u64,
    ) -> Result<Option<(OpId, Escrow)>, Unpaid> {
        let me = self.inner.signer.public();
        if let Some(refusal) = self.needs_hold(hold) {
            return Err(refusal);
        }
        if hold.is_empty() {
            return Ok(None);
        }
        let op = Op::from_bytes(hold).map_err(|e| Unpaid("unpaid", e.to_string()))?;
        let Body::TaskHold(terms) = &op.body else {
            return Err(Unpaid("unpaid", "the hold is not a task hold".into()));
        };
        let refuse = |why: String| Err(Unpaid("unpaid", why));
        if op.author != submitter {
            return refuse("the hold is not the task's submitter's".into());
        }
        if terms.worker != me {
            return refuse("the hold names another worker".into());
        }
        if terms.task != digest {
            return refuse("the hold is for another task".into());
        }
        if !self.inner.accepted.contains(&terms.arbiter) {
            return refuse(format!(
                "the hold names arbiter {}, which this worker does not accept",
                terms.arbiter
            ));
        }
        if !self.inner.market.accepts(terms.price) {
            return refuse(format!(
                "the hold pays {} credits per million fuel; this worker charges {}",
                terms.price,
                self.inner.market.price()
            ));
        }
        if terms.fuel_limit < fuel {
            return refuse(format!(
                "the hold covers {} fuel; the task may use {fuel}",
                terms.fuel_limit
            ));
        }
        if terms.deadline_ms < deadline_ms {
            return refuse("the hold's deadline is before the task's".into());
        }
        if terms.collateral > self.inner.collateral {
            return refuse(format!(
                "the hold asks for {} credits of collateral; this worker bonds at most {}",
                terms.collateral, self.inner.collateral
            ));
        }
        let id = op.id();
        let replica = &self.inner.replica;
        if let Err(e) = replica.take(peer, op.clone()).await {
            return refuse(format!("the hold could not be stored: {e}"));
        }
        match replica.wait_for(id, peer, HOLD_WAIT).await {
            OpState::Applied => {}
            OpState::Refused(why) => return refuse(format!("the hold was refused: {why}")),
            OpState::Pending => {
                return refuse(format!(
                    "the hold did not apply here within {HOLD_WAIT:?}: this replica lacks \
                     the credits it spends"
                ));
            }
        }
        let escrow = match replica.escrow(id).await {
            Ok(Some(e)) => e,
            _ => return refuse("the hold opened no escrow".into()),
        };
        if escrow.settled.is_some() || escrow.bond.is_some() {
            return refuse("the hold was used before".into());
        }
        if terms.collateral > 0
            && let Err(e) = replica.sign(now_unix_ms(), Body::Bond { escrow: id }).await
        {
            return Err(Unpaid(
                "no_collateral",
                format!("cannot bond the collateral the hold asks for: {e}"),
            ));
        }
        Ok(Some((id, escrow)))
    }

    /// Worker: a receipt for the task of hold `escrow` went out, proposing
    /// a settlement for `fuel_used` at `time_ms`. If the owner's
    /// co-signatures do not come, the arbiter is asked before the deadline.
    pub(crate) fn proposed(
        &self,
        escrow: OpId,
        deadline_ms: u64,
        receipt: &Receipt,
        wire: Vec<u8>,
    ) {
        let mut proposals = lock(&self.inner.proposals);
        if proposals.len() >= QUEUE_MAX {
            warn!("too many unsettled receipts; this one waits for the owner alone");
            return;
        }
        proposals.insert(
            escrow,
            Proposal {
                fuel_used: receipt.fuel_used,
                time_ms: receipt.settle_unix_ms,
                receipt: wire,
            },
        );
        drop(proposals);
        let now = now_unix_ms();
        let grace = u64::try_from(SETTLE_GRACE.as_millis()).unwrap_or(u64::MAX);
        // The arbiter co-signs a settlement only before the deadline.
        let at = now
            .saturating_add(grace)
            .min(deadline_ms.saturating_sub(2_000))
            .max(now);
        self.schedule(at, Action::AwaitSettle { escrow });
    }

    /// Owner: signs a task hold on these terms.
    pub(crate) async fn hold(&self, terms: TaskHold) -> Result<Op> {
        self.inner
            .replica
            .sign(now_unix_ms(), Body::TaskHold(terms))
            .await
    }

    /// Owner: answers a verified receipt with co-signatures on its
    /// settlement. Failure is logged: the worker then asks the arbiter.
    pub(crate) async fn settle(
        &self,
        worker: PeerId,
        escrow: OpId,
        window_ms: u64,
        receipt: &Receipt,
    ) {
        // Never both: one this owner settles it never refunds (a refund
        // scheduled when the worker was given up on is skipped: its answer
        // came in time, before the deadline the refund waits for).
        lock(&self.inner.owner_settled).insert(escrow);
        let key = self.inner.signer.key();
        let pay = Outcome::Pay {
            fuel_used: receipt.fuel_used,
        };
        let t = receipt.settle_unix_ms;
        let Some(confirm_at) = t.checked_add(window_ms) else {
            warn!("a receipt's settlement time overflows; not settled");
            return;
        };
        let settle = Settle {
            escrow: escrow.to_vec(),
            fuel_used: receipt.fuel_used,
            time_ms: t,
            pay: cosign(key, &escrow, 1, pay, t).0.to_vec(),
            confirm: cosign(key, &escrow, 2, Outcome::Confirm, confirm_at)
                .0
                .to_vec(),
        };
        let request = TaskRequest {
            settle: Some(settle),
            ..TaskRequest::default()
        };
        match self
            .inner
            .client
            .request_task(worker, request.encode_to_vec(), PAY_TIMEOUT)
            .await
            .map(|a| TaskReply::decode(a.as_slice()))
        {
            Ok(Ok(reply)) if reply.refused.is_empty() => {}
            Ok(Ok(reply)) => warn!(%worker, why = %reply.refused, "worker refused the settlement"),
            Ok(Err(e)) => warn!(%worker, error = %e, "malformed settlement reply"),
            Err(e) => {
                debug!(%worker, error = %e, "settlement not delivered; the worker will ask the arbiter")
            }
        }
    }

    /// Owner: no receipt came for hold `escrow`; refund it once its
    /// deadline passed.
    pub(crate) fn refund_at_deadline(&self, escrow: OpId, deadline_ms: u64) {
        if lock(&self.inner.owner_settled).contains(&escrow)
            || !lock(&self.inner.refunding).insert(escrow)
        {
            return;
        }
        // A little past the deadline, so the arbiter's clock has passed it.
        self.schedule(deadline_ms.saturating_add(500), Action::Refund { escrow });
    }

    /// Worker: the owner's co-signatures on a settlement.
    pub(crate) async fn on_settle(&self, peer: PeerId, settle: Settle) -> TaskReply {
        let refuse = TaskReply::refusal;
        let Some(escrow) = escrow_id(&settle.escrow) else {
            return refuse("malformed", "an escrow id is 32 bytes");
        };
        let (Some(pay), Some(confirm)) = (signature(&settle.pay), signature(&settle.confirm))
        else {
            return refuse("malformed", "a co-signature is 64 bytes");
        };
        let Ok(Some(e)) = self.inner.replica.escrow(escrow).await else {
            return refuse("unknown_escrow", "no such escrow here");
        };
        if e.owner.peer_id() != peer {
            return refuse("not_owner", "only the escrow's owner settles it");
        }
        let outcome = Outcome::Pay {
            fuel_used: settle.fuel_used,
        };
        let Some(confirm_at) = settle.time_ms.checked_add(e.window_ms) else {
            return refuse("malformed", "the settlement's time overflows");
        };
        // Step 1's co-signature is checked when the decision is (`sign`);
        // step 2's now, since it is written only after the window.
        if e.owner
            .verify(
                &decision_bytes(&escrow, 2, Outcome::Confirm, confirm_at),
                &confirm,
            )
            .is_err()
        {
            return refuse("bad_signature", "the owner's co-signature does not verify");
        }
        // Taken out of the table by whoever writes step 1: only once.
        let proposal = {
            let mut proposals = lock(&self.inner.proposals);
            match proposals.get(&escrow) {
                Some(p) if p.fuel_used == settle.fuel_used && p.time_ms == settle.time_ms => {
                    proposals.remove(&escrow)
                }
                Some(_) => {
                    return refuse(
                        "mismatch",
                        "the settlement is not what the receipt proposed",
                    );
                }
                None => None,
            }
        };
        let Some(proposal) = proposal else {
            return refuse("settled", "this escrow's settlement is already written");
        };
        let decide = Body::Decide(Decision {
            escrow,
            step: 1,
            outcome,
            cosigner: e.owner,
            cosignature: pay,
        });
        if let Err(err) = self.inner.replica.sign(settle.time_ms, decide).await {
            // Still the worker's to settle, with the arbiter if need be.
            lock(&self.inner.proposals).insert(escrow, proposal);
            warn!(error = %err, "settlement not written");
            return TaskReply::refusal("refused", format!("settlement not written: {err}"));
        }
        lock(&self.inner.confirms).insert(escrow, confirm);
        self.schedule(confirm_at, Action::Confirm { escrow });
        TaskReply::default()
    }

    /// Arbiter: a party asks for a co-signature.
    pub(crate) async fn on_arbitrate(&self, peer: PeerId, request: Arbitrate) -> TaskReply {
        match self.arbitrate(peer, request).await {
            Ok((time_ms, sigs)) => TaskReply {
                cosignatures: sigs.into_iter().map(|s| s.0.to_vec()).collect(),
                decision_unix_ms: time_ms,
                ..TaskReply::default()
            },
            Err(Unpaid(code, why)) => TaskReply::refusal(code, why),
        }
    }

    async fn arbitrate(
        &self,
        peer: PeerId,
        request: Arbitrate,
    ) -> Result<(u64, Vec<Signature>), Unpaid> {
        let no = |code: &'static str, why: &str| Err(Unpaid(code, why.to_owned()));
        if !self.inner.arbiter {
            return no("not_arbiter", "this node does not arbitrate");
        }
        let Some(id) = escrow_id(&request.escrow) else {
            return no("malformed", "an escrow id is 32 bytes");
        };
        let replica = &self.inner.replica;
        if replica.wait_for(id, peer, HOLD_WAIT).await != OpState::Applied {
            return no("unknown_escrow", "no such escrow applied here");
        }
        let Ok(Some(e)) = replica.escrow(id).await else {
            return no("unknown_escrow", "no such escrow here");
        };
        let key = self.inner.signer.key();
        if e.arbiter != key.public() {
            return no("not_arbiter", "the escrow names another arbiter");
        }
        let Some(deadline) = e.deadline_ms else {
            return no("not_task_hold", "only task holds are arbitrated");
        };
        let now = now_unix_ms();
        let asker = PublicKey::from_peer_id(&peer);
        match ArbitrateKind::try_from(request.kind) {
            Ok(ArbitrateKind::Refund) => {
                if asker != Some(e.owner) {
                    return no("not_owner", "only the owner asks for a refund");
                }
                if e.settled.is_some() {
                    return no("settled", "the escrow is settled");
                }
                if now < deadline {
                    return no("too_early", "the hold's deadline has not passed");
                }
                {
                    let mut signed = lock(&self.inner.arbitrated);
                    if signed.get(&id) == Some(&true) {
                        return no("settled", "this arbiter co-signed its settlement");
                    }
                    signed.insert(id, false);
                }
                let t = now;
                info!(escrow = %hex::encode(id), "refund co-signed: the deadline passed unsettled");
                Ok((
                    t,
                    vec![
                        cosign(key, &id, 1, Outcome::Refund, t),
                        cosign(key, &id, 2, Outcome::Confirm, t),
                    ],
                ))
            }
            Ok(ArbitrateKind::Settle) => {
                if asker != Some(e.worker) {
                    return no("not_worker", "only the worker proves its receipt");
                }
                if e.settled.is_some() {
                    return no("settled", "the escrow is settled");
                }
                if now >= deadline {
                    return no("too_late", "the hold's deadline has passed");
                }
                let receipt = match open_receipt(&request.receipt, &e.worker) {
                    Ok(r) => r,
                    Err(why) => return no("bad_receipt", why),
                };
                if e.task.map(|t| t.to_vec()) != Some(receipt.task_digest.clone())
                    || receipt.escrow != id
                {
                    return no("bad_receipt", "the receipt is for another task");
                }
                if receipt.fuel_used > e.fuel_limit {
                    return no("bad_receipt", "the receipt claims more fuel than held");
                }
                if receipt.settle_unix_ms >= deadline {
                    return no("too_late", "the receipt is dated after the deadline");
                }
                {
                    let mut signed = lock(&self.inner.arbitrated);
                    if signed.get(&id) == Some(&false) {
                        return no("refunded", "this arbiter co-signed its refund");
                    }
                    signed.insert(id, true);
                }
                let t = receipt.settle_unix_ms;
                let pay = Outcome::Pay {
                    fuel_used: receipt.fuel_used,
                };
                Ok((t, vec![cosign(key, &id, 1, pay, t)]))
            }
            Ok(ArbitrateKind::Confirm) => {
                if asker != Some(e.worker) {
                    return no("not_worker", "only the worker asks for a confirmation");
                }
                let Some((_, Outcome::Pay { .. }, at)) = e.settled else {
                    return no("unsettled", "the escrow has no payment to confirm");
                };
                if e.finalised.is_some() {
                    return no("final", "the escrow is final");
                }
                let end = at.saturating_add(e.window_ms);
                if now < end {
                    return no("too_early", "the challenge window is still open");
                }
                Ok((end, vec![cosign(key, &id, 2, Outcome::Confirm, end)]))
            }
            Ok(ArbitrateKind::Cheat) => {
                if asker != Some(e.owner) {
                    return no("not_owner", "only the owner reports a wrong answer");
                }
                if e.settled.is_some() {
                    return no("settled", "the escrow is settled");
                }
                if let Err(why) = self.check_cheat(id, &e, &request).await {
                    return no("bad_evidence", why);
                }
                {
                    let mut signed = lock(&self.inner.arbitrated);
                    if signed.get(&id) == Some(&true) {
                        return no("settled", "this arbiter co-signed its settlement");
                    }
                    signed.insert(id, false);
                }
                info!(escrow = %hex::encode(id), "wrong answer proved: the hold will only be refunded");
                Ok((now, Vec::new()))
            }
            Err(_) => no("malformed", "unknown arbitration request"),
        }
    }

    /// Arbiter: checks the owner's proof that the worker of escrow `id`
    /// answered its task wrong. Every envelope must be the owner's task or
    /// a worker's receipt for it; the tasks must be one task (equal but for
    /// their ids and workers); at least two other distinct workers, each
    /// paid through a hold of the owner's in this replica, must have
    /// answered it alike, and differently from this worker.
    async fn check_cheat(
        &self,
        id: OpId,
        e: &Escrow,
        request: &Arbitrate,
    ) -> Result<(), &'static str> {
        let open_task = |wire: &[u8]| -> Result<TaskSpec, &'static str> {
            let envelope = Envelope::decode_bounded(wire).map_err(|_| "malformed task")?;
            let opened = envelope.open(TASK_KIND).map_err(|_| "bad task signature")?;
            if opened.author != e.owner {
                return Err("a task is not the owner's");
            }
            let mut spec = TaskSpec::decode(opened.payload).map_err(|_| "malformed task")?;
            // A sealed task's input key is wrapped for each worker apart.
            spec.task_id.clear();
            spec.input_key = None;
            Ok(spec)
        };
        let answer = |r: &Receipt| r.answer();
        let digest = *blake3::hash(&request.task).as_bytes();
        if e.task != Some(digest) {
            return Err("the task is not the hold's");
        }
        let mut spec = open_task(&request.task)?;
        let minority = open_receipt(&request.receipt, &e.worker)?;
        if minority.escrow != id || minority.task_digest != digest {
            return Err("the receipt is not for the hold's task");
        }
        spec.worker.clear();
        if request.agreeing_tasks.len() != request.agreeing_receipts.len()
            || request.agreeing_tasks.len() < 2
            || request.agreeing_tasks.len() > 16
        {
            return Err("the proof needs two to sixteen agreeing receipts, each with its task");
        }
        let mut workers = std::collections::HashSet::from([e.worker]);
        let mut agreed = None;
        for (task, receipt) in request
            .agreeing_tasks
            .iter()
            .zip(&request.agreeing_receipts)
        {
            let mut other = open_task(task)?;
            let worker =
                PublicKey::from_bytes(&other.worker).map_err(|_| "a task names no worker")?;
            other.worker.clear();
            if other != spec {
                return Err("the tasks are not one task");
            }
            let r = open_receipt(receipt, &worker)?;
            if r.task_digest != blake3::hash(task).as_bytes() {
                return Err("a receipt is not for its task");
            }
            if !workers.insert(worker) {
                return Err("two answers from one worker");
            }
            let Some(held) = escrow_id(&r.escrow) else {
                return Err("an agreeing receipt names no hold");
            };
            match self.inner.replica.escrow(held).await {
                Ok(Some(h))
                    if h.owner == e.owner
                        && h.worker == worker
                        && h.task.as_ref().map(|t| t.as_slice())
                            == Some(r.task_digest.as_slice()) => {}
                _ => return Err("an agreeing receipt's hold is not in this replica"),
            }
            let a = answer(&r);
            if agreed.get_or_insert_with(|| a.clone()) != &a {
                return Err("the agreeing receipts do not agree");
            }
        }
        if agreed == Some(answer(&minority)) {
            return Err("the worker's answer is the agreeing one");
        }
        Ok(())
    }

    /// Owner: replication proved the worker of `escrow` wrong. Shows the
    /// arbiter the evidence, so it co-signs no settlement, and refunds the
    /// hold at its deadline (the worker's collateral comes to this node).
    pub(crate) async fn report_cheat(
        &self,
        escrow: OpId,
        deadline_ms: u64,
        task: Vec<u8>,
        receipt: Vec<u8>,
        agreeing: Vec<(Vec<u8>, Vec<u8>)>,
    ) {
        lock(&self.inner.cheats).insert(escrow);
        let e = match self.inner.replica.escrow(escrow).await {
            Ok(Some(e)) => e,
            _ => {
                warn!(escrow = %hex::encode(escrow), "the cheat's hold is not in this replica");
                return;
            }
        };
        let (agreeing_tasks, agreeing_receipts) = agreeing.into_iter().unzip();
        let request = Arbitrate {
            escrow: escrow.to_vec(),
            kind: ArbitrateKind::Cheat as i32,
            receipt,
            task,
            agreeing_receipts,
            agreeing_tasks,
        };
        if let Err(err) = self.ask(&e, request).await {
            warn!(escrow = %hex::encode(escrow), error = %err, "the arbiter did not take the proof of a wrong answer");
        }
        self.refund_at_deadline(escrow, deadline_ms);
    }

    fn schedule(&self, at: u64, action: Action) {
        self.schedule_try(at, action, 0);
    }

    fn schedule_try(&self, at: u64, action: Action, tries: u32) {
        let mut queue = lock(&self.inner.queue);
        if queue.len() >= QUEUE_MAX {
            warn!(?action, "payment follow-up queue full; dropped");
            return;
        }
        let n = self.inner.queued.fetch_add(1, Ordering::Relaxed);
        queue.insert((at, n), (action, tries));
        drop(queue);
        self.inner.wake.notify_one();
    }

    /// Runs follow-ups as they fall due, each in a task of its own.
    async fn follow_ups(self) {
        loop {
            let next = lock(&self.inner.queue).keys().next().map(|(at, _)| *at);
            if let Some(at) = next {
                let wait = Duration::from_millis(at.saturating_sub(now_unix_ms()).min(3_600_000));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = self.inner.wake.notified() => continue,
                }
            } else {
                self.inner.wake.notified().await;
                continue;
            }
            let now = now_unix_ms();
            let due: Vec<(Action, u32)> = {
                let mut queue = lock(&self.inner.queue);
                let later = queue.split_off(&(now.saturating_add(1), 0));
                std::mem::replace(&mut *queue, later)
                    .into_values()
                    .collect()
            };
            for (action, tries) in due {
                let this = self.clone();
                tokio::spawn(async move { this.run(action, tries).await });
            }
        }
    }

    async fn run(&self, action: Action, tries: u32) {
        let result = match action {
            Action::AwaitSettle { escrow } => self.settle_via_arbiter(escrow).await,
            Action::Confirm { escrow } => self.confirm(escrow).await,
            Action::Refund { escrow } => self.refund(escrow).await,
        };
        let Err(e) = result else { return };
        if tries + 1 >= TRIES {
            warn!(?action, error = %e, "payment follow-up given up");
            return;
        }
        debug!(?action, error = %e, "payment follow-up failed; will retry");
        // 1 s, 2 s, 4 s, … up to 5 minutes.
        let wait = (1_000u64 << tries.min(9)).min(300_000);
        self.schedule_try(now_unix_ms().saturating_add(wait), action, tries + 1);
    }

    /// Asks the escrow's arbiter for co-signatures.
    async fn ask(&self, e: &Escrow, request: Arbitrate) -> Result<(u64, Vec<Signature>)> {
        let arbiter = e.arbiter.peer_id();
        let request = TaskRequest {
            arbitrate: Some(request),
            ..TaskRequest::default()
        }
        .encode_to_vec();
        let client = &self.inner.client;
        let mut answer = client
            .request_task(arbiter, request.clone(), PAY_TIMEOUT)
            .await;
        if answer.is_err() && client.find_peer(arbiter).await.unwrap_or(false) {
            answer = client.request_task(arbiter, request, PAY_TIMEOUT).await;
        }
        let reply = TaskReply::decode(answer?.as_slice())
            .map_err(|e| Error::Ledger(format!("malformed arbiter reply: {e}")))?;
        if !reply.refused.is_empty() {
            return Err(Error::Ledger(format!(
                "arbiter refused ({}): {}",
                reply.refused_code, reply.refused
            )));
        }
        let sigs = reply
            .cosignatures
            .iter()
            .map(|s| signature(s))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Ledger("malformed arbiter co-signature".into()))?;
        Ok((reply.decision_unix_ms, sigs))
    }

    /// Worker: the owner did not settle in time; the arbiter co-signs the
    /// receipt's settlement instead.
    async fn settle_via_arbiter(&self, escrow: OpId) -> Result<()> {
        let Some(e) = self.inner.replica.escrow(escrow).await? else {
            return Ok(());
        };
        if e.settled.is_some() {
            lock(&self.inner.proposals).remove(&escrow);
            return Ok(());
        }
        let receipt = match lock(&self.inner.proposals).get(&escrow) {
            Some(p) => p.receipt.clone(),
            // The owner's settlement came meanwhile.
            None => return Ok(()),
        };
        let (t, sigs) = self
            .ask(
                &e,
                Arbitrate {
                    escrow: escrow.to_vec(),
                    kind: ArbitrateKind::Settle as i32,
                    receipt,
                    ..Arbitrate::default()
                },
            )
            .await?;
        let Some(proposal) = lock(&self.inner.proposals).remove(&escrow) else {
            return Ok(());
        };
        let (Some(sig), true) = (sigs.first().copied(), t == proposal.time_ms) else {
            return Err(Error::Ledger(
                "the arbiter signed another settlement".into(),
            ));
        };
        let body = Body::Decide(Decision {
            escrow,
            step: 1,
            outcome: Outcome::Pay {
                fuel_used: proposal.fuel_used,
            },
            cosigner: e.arbiter,
            cosignature: sig,
        });
        self.inner.replica.sign(t, body).await?;
        info!(escrow = %hex::encode(escrow), "settled with the arbiter: the owner did not");
        self.schedule(t.saturating_add(e.window_ms), Action::Confirm { escrow });
        Ok(())
    }

    /// Worker: the window passed; writes step 2 with the owner's
    /// co-signature, or the arbiter's.
    async fn confirm(&self, escrow: OpId) -> Result<()> {
        let Some(e) = self.inner.replica.escrow(escrow).await? else {
            return Ok(());
        };
        let at = match e.settled {
            Some((_, Outcome::Pay { .. }, at)) => at,
            // Refunded after all: nothing to confirm for the worker.
            Some(_) => return Ok(()),
            // Step 1 written but not applied here yet.
            None => return Err(Error::Ledger("settlement not applied yet".into())),
        };
        if e.finalised.is_some() {
            lock(&self.inner.confirms).remove(&escrow);
            return Ok(());
        }
        let end = at.saturating_add(e.window_ms);
        let owner = lock(&self.inner.confirms).get(&escrow).copied();
        let (cosigner, sig) = match owner {
            Some(sig) => (e.owner, sig),
            None => {
                let (t, sigs) = self
                    .ask(
                        &e,
                        Arbitrate {
                            escrow: escrow.to_vec(),
                            kind: ArbitrateKind::Confirm as i32,
                            receipt: Vec::new(),
                            ..Arbitrate::default()
                        },
                    )
                    .await?;
                match (sigs.first(), t == end) {
                    (Some(s), true) => (e.arbiter, *s),
                    _ => return Err(Error::Ledger("the arbiter signed another time".into())),
                }
            }
        };
        let body = Body::Decide(Decision {
            escrow,
            step: 2,
            outcome: Outcome::Confirm,
            cosigner,
            cosignature: sig,
        });
        self.inner.replica.sign(end, body).await?;
        lock(&self.inner.confirms).remove(&escrow);
        debug!(escrow = %hex::encode(escrow), "payment final");
        Ok(())
    }

    /// Owner: refunds an escrow whose task never answered, with the
    /// arbiter, once the deadline passed.
    async fn refund(&self, escrow: OpId) -> Result<()> {
        // Settled by this owner after all (a late answer came in time).
        if lock(&self.inner.owner_settled).contains(&escrow) {
            lock(&self.inner.refunding).remove(&escrow);
            return Ok(());
        }
        let Some(e) = self.inner.replica.escrow(escrow).await? else {
            return Ok(());
        };
        if e.settled.is_some() {
            lock(&self.inner.refunding).remove(&escrow);
            return Ok(());
        }
        let (t, sigs) = self
            .ask(
                &e,
                Arbitrate {
                    escrow: escrow.to_vec(),
                    kind: ArbitrateKind::Refund as i32,
                    receipt: Vec::new(),
                    ..Arbitrate::default()
                },
            )
            .await?;
        let [refund, confirm] = sigs[..] else {
            return Err(Error::Ledger(
                "the arbiter sent the wrong co-signatures".into(),
            ));
        };
        if lock(&self.inner.owner_settled).contains(&escrow) {
            return Ok(());
        }
        for (step, outcome, sig) in [(1, Outcome::Refund, refund), (2, Outcome::Confirm, confirm)] {
            let body = Body::Decide(Decision {
                escrow,
                step,
                outcome,
                cosigner: e.arbiter,
                cosignature: sig,
            });
            self.inner.replica.sign(t, body).await?;
        }
        info!(escrow = %hex::encode(escrow), amount = e.amount, "refunded at the deadline");
        if !lock(&self.inner.cheats).remove(&escrow) {
            // Signed evidence: a refund the arbiter co-signed once the
            // deadline passed with no receipt settled.
            self.inner
                .market
                .evidence(e.worker.peer_id(), escrow, p2pc_market::Evidence::Timeout);
        }
        Ok(())
    }

    /// On start: picks up what a restart dropped. The worker confirms its
    /// settled escrows once their windows pass.
    pub(crate) async fn recover(&self) -> Result<()> {
        let me = self.inner.signer.public();
        for (id, e) in self.inner.replica.escrows_of(me).await? {
            if e.finalised.is_none()
                && e.worker == me
                && let Some((_, Outcome::Pay { .. }, at)) = e.settled
            {
                self.schedule(
                    at.saturating_add(e.window_ms),
                    Action::Confirm { escrow: id },
                );
            }
        }
        Ok(())
    }
}

/// Opens a receipt envelope signed by `worker`.
fn open_receipt(wire: &[u8], worker: &PublicKey) -> Result<Receipt, &'static str> {
    let envelope = Envelope::decode_bounded(wire).map_err(|_| "malformed receipt")?;
    let opened = envelope
        .open(RECEIPT_KIND)
        .map_err(|_| "bad receipt signature")?;
    if opened.author != *worker {
        return Err("the receipt is not the worker's");
    }
    Receipt::decode(opened.payload).map_err(|_| "malformed receipt")
}
