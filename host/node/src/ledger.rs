//! The node's ledger replica and its replication over the overlay.
//!
//! - New ops go out on the gossip topic [`LEDGER_TOPIC`]; ops heard there
//!   are inserted, and both ops of a newly found equivocation are gossiped
//!   again so every replica learns of it.
//! - Anti-entropy (`/p2pc/ledger/1`) runs when a peer connects and every
//!   `[ledger] sync_interval` with one connected peer: this node sends its
//!   per-account chain heads and inserts what comes back, round after
//!   round, until the peer has nothing more. Ops learned this way are
//!   gossiped on, so after a partition heals the few nodes that pull across
//!   it spread the other side's ops to their own.
//! - Ops dated more than `[ledger] max_clock_skew` ahead of this node's
//!   clock wait in a bounded queue ([`FutureOps`]) and are inserted when
//!   the clock reaches them; an author cannot act "later" than now.
//! - A peer that sends malformed messages, forged ops or another network's
//!   ops is scored down; at [`BLOCK_SCORE`] it is disconnected and blocked.
//!   Ops refused on their merits (too few credits, say) are not the
//!   sender's fault: they are signed facts every replica keeps alike.
//!
//! Queries ([`query`]) serve both the control channel and `p2pctl ledger`
//! on a stopped node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pc_crypto::{PublicKey, SecretKey};
use p2pc_ledger::sync::{SyncRequest, answer, decode_ops, encode_ops};
use p2pc_ledger::{Body, FutureOps, Genesis, Insert, Ledger, Offer, Op, Outcome, Proof, Reject};
use p2pc_net::PeerId;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::node::Shared;
use crate::{Error, NodeConfig, Result};

/// The gossip topic new ops travel on.
pub const LEDGER_TOPIC: &str = "p2pc/ledger/1";
/// Bytes of ops one anti-entropy answer carries at most.
const SYNC_BUDGET: usize = 1 << 20;
/// Rounds of one anti-entropy exchange at most (a budget each).
const SYNC_ROUNDS: usize = 4096;
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
/// Ops per gossip message, to stay under the gossip size limit.
const GOSSIP_BATCH: usize = 128;
/// Score lost per bad message.
const PENALTY: i32 = 20;
/// A peer at or below this score is blocked.
pub const BLOCK_SCORE: i32 = -100;
/// Encoded bytes of future-dated ops held at most.
const FUTURE_BYTES: usize = 16 << 20;

/// Opens the ledger `config` names, if it names a genesis file.
pub fn open_ledger(config: &NodeConfig) -> Result<Option<Ledger>> {
    let Some(path) = &config.ledger.genesis else {
        return Ok(None);
    };
    let genesis = Genesis::load(path).map_err(|e| Error::Config(e.to_string()))?;
    let dir = config.node.data_dir.join("ledger");
    Ledger::open(&dir, genesis)
        .map(Some)
        .map_err(|e| Error::Ledger(e.to_string()))
}

/// The replica a running node holds, and what it knows of its peers.
pub(crate) struct LedgerService {
    ledger: Mutex<Ledger>,
    scores: Mutex<HashMap<PeerId, i32>>,
    syncing: Mutex<HashSet<PeerId>>,
    future: Mutex<FutureOps>,
    /// Woken when an op is parked in `future`.
    parked: tokio::sync::Notify,
}

/// What [`Shared::take_ops`] did with a peer's ops.
#[derive(Default)]
struct Taken {
    /// Ops this replica did not hold before.
    new: Vec<Op>,
    /// Ops newly set aside until the clock reaches their time.
    parked: usize,
}

impl LedgerService {
    pub(crate) fn new(ledger: Ledger, max_clock_skew: Duration) -> Arc<Self> {
        let skew = u64::try_from(max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        Arc::new(Self {
            ledger: Mutex::new(ledger),
            scores: Mutex::new(HashMap::new()),
            syncing: Mutex::new(HashSet::new()),
            future: Mutex::new(FutureOps::new(skew, FUTURE_BYTES)),
            parked: tokio::sync::Notify::new(),
        })
    }

    fn future(&self) -> std::sync::MutexGuard<'_, FutureOps> {
        self.future.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the ledger off the async threads (inserts fsync).
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Ledger) -> T + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&mut this.lock()))
            .await
            .map_err(|e| Error::Ledger(format!("ledger task failed: {e}")))
    }

    /// A peer's score (0 for one never seen misbehaving).
    pub(crate) fn score(&self, peer: &PeerId) -> i32 {
        *self
            .scores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .unwrap_or(&0)
    }
}

/// Whether an insert result is the sender's fault.
fn forged(r: &Insert) -> bool {
    matches!(
        r,
        Insert::Rejected(Reject::BadSignature | Reject::WrongNetwork)
    )
}

impl Shared {
    fn ledger(&self) -> Result<&Arc<LedgerService>> {
        self.ledger.as_ref().ok_or_else(|| {
            Error::Ledger(
                "this node has no ledger: set [ledger] genesis in node.toml to the network's genesis file"
                    .into(),
            )
        })
    }

    /// Lowers `peer`'s score for a bad message; blocks it at the floor.
    async fn penalise(&self, peer: PeerId, why: &str) {
        let Ok(service) = self.ledger() else { return };
        let score = {
            let mut scores = service.scores.lock().unwrap_or_else(|e| e.into_inner());
            let s = scores.entry(peer).or_insert(0);
            *s -= PENALTY;
            *s
        };
        debug!(%peer, score, why, "ledger peer scored down");
        if score <= BLOCK_SCORE {
            warn!(%peer, why, "blocking peer for repeated bad ledger messages");
            let _ = self.client.block(peer).await;
        }
    }

    /// Gossips ops, in batches under the gossip size limit.
    async fn gossip_ops(&self, ops: &[Op]) {
        for batch in ops.chunks(GOSSIP_BATCH) {
            // Fails while no peer subscribes; anti-entropy covers that.
            if let Err(e) = self.client.publish(LEDGER_TOPIC, encode_ops(batch)).await {
                debug!(error = %e, "ledger gossip not sent");
            }
        }
    }

    /// Inserts ops from a peer (or, with `from` empty, ops whose time has
    /// come); scores the peer down for forgeries; parks ops dated ahead of
    /// the clock; gossips the ops of any equivocation they reveal.
    async fn take_ops(&self, from: Option<PeerId>, ops: Vec<Op>) -> Result<Taken> {
        let service = self.ledger()?.clone();
        let (results, proofs, ops, parked, bad) = service
            .clone()
            .with(move |l| {
                let now = now_ms();
                let mut bad = 0;
                let mut parked = 0;
                let mut ready = Vec::with_capacity(ops.len());
                {
                    let mut future = service.future();
                    for op in ops {
                        // Ops due now go straight to the insert, which
                        // checks them. Forgeries are refused before
                        // anything is parked, so the queue only ever holds
                        // ops that will be inserted.
                        if !future.is_due(op.time_ms, now) {
                            if l.state().op(&op.id()).is_some() {
                                continue;
                            }
                            if l.state().admit(&op).is_err() {
                                bad += 1;
                                continue;
                            }
                        }
                        match future.offer(op, now) {
                            Offer::Ready(op) => ready.push(*op),
                            Offer::Parked => parked += 1,
                            Offer::AlreadyParked | Offer::Dropped => {}
                        }
                    }
                }
                if parked > 0 {
                    service.parked.notify_one();
                }
                let before = l.state().proofs().len();
                let results = l.insert_many(ready.clone());
                let proofs: Vec<Op> = l.state().proofs()[before..]
                    .iter()
                    .flat_map(|p| {
                        let (a, b) = match p {
                            Proof::Chain { ops, .. } | Proof::Decision { ops, .. } => *ops,
                        };
                        [a, b]
                    })
                    .filter_map(|id| l.state().op(&id).cloned())
                    .collect();
                (results, proofs, ready, parked, bad)
            })
            .await?;
        let results = results.map_err(|e| Error::Ledger(e.to_string()))?;
        let bad = bad + results.iter().filter(|r| forged(r)).count();
        if bad > 0
            && let Some(from) = from
        {
            self.penalise(from, "forged or foreign ledger op").await;
        }
        if parked > 0 {
            info!(
                ops = parked,
                "ledger ops dated ahead of this clock wait until it catches up"
            );
        }
        if !proofs.is_empty() {
            warn!(
                proofs = proofs.len() / 2,
                "equivocation found; gossiping the proof"
            );
            self.gossip_ops(&proofs).await;
        }
        let new = results
            .iter()
            .zip(ops)
            .filter(|(r, _)| !matches!(r, Insert::Duplicate) && !forged(r))
            .map(|(_, op)| op)
            .collect();
        Ok(Taken { new, parked })
    }

    /// A gossip message on [`LEDGER_TOPIC`].
    pub(crate) async fn on_ledger_gossip(&self, via: PeerId, data: &[u8]) {
        if self.ledger.is_none() {
            return;
        }
        let Ok(decoded) = decode_ops(data) else {
            self.penalise(via, "malformed ledger gossip").await;
            return;
        };
        let mut ops = Vec::with_capacity(decoded.len());
        for op in decoded {
            match op {
                Ok(op) => ops.push(op),
                Err(_) => {
                    self.penalise(via, "malformed ledger op").await;
                    return;
                }
            }
        }
        if let Err(e) = self.take_ops(Some(via), ops).await {
            warn!(error = %e, "ledger gossip not stored");
        }
    }

    /// Answers a peer's anti-entropy request.
    pub(crate) async fn answer_sync(&self, peer: PeerId, request: &[u8]) -> Vec<u8> {
        let Ok(service) = self.ledger() else {
            return Vec::new();
        };
        let request = match SyncRequest::decode(request) {
            Ok(r) => r,
            Err(e) => {
                self.penalise(peer, &e.to_string()).await;
                return Vec::new();
            }
        };
        let service = service.clone();
        let reply = tokio::task::spawn_blocking(move || {
            let ledger = service.lock();
            let (ops, more) = answer(ledger.state(), &request, SYNC_BUDGET);
            let mut out = vec![u8::from(more)];
            out.extend(encode_ops(&ops));
            out
        })
        .await;
        reply.unwrap_or_default()
    }

    /// Pulls from `peer` everything it holds that this node lacks.
    pub(crate) async fn sync_with(&self, peer: PeerId) -> Result<usize> {
        let service = self.ledger()?.clone();
        if !service
            .syncing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer)
        {
            return Ok(0);
        }
        let result = self.pull(&service, peer).await;
        service
            .syncing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&peer);
        result
    }

    async fn pull(&self, service: &Arc<LedgerService>, peer: PeerId) -> Result<usize> {
        let mut total = 0;
        for _ in 0..SYNC_ROUNDS {
            let request = service
                .with(|l| SyncRequest::of(l.state()).encode())
                .await?;
            let reply = self
                .client
                .request_ledger(peer, request, SYNC_TIMEOUT)
                .await?;
            // An empty reply: the peer has no ledger, or another network's.
            let Some((&more, frame)) = reply.split_first() else {
                return Ok(total);
            };
            let Ok(decoded) = decode_ops(frame) else {
                self.penalise(peer, "malformed ledger sync reply").await;
                return Ok(total);
            };
            let Ok(ops) = decoded.into_iter().collect::<Result<Vec<Op>, _>>() else {
                self.penalise(peer, "malformed op in ledger sync reply")
                    .await;
                return Ok(total);
            };
            let taken = self.take_ops(Some(peer), ops).await?;
            total += taken.new.len();
            // What one side of a healed partition learns this way, the
            // rest of its side learns by gossip, not each by its own pull.
            self.gossip_ops(&taken.new).await;
            // Stop when the peer is done, or sends only what we hold or
            // have parked (a peer repeating itself must not keep us busy).
            if more == 0 || (taken.new.is_empty() && taken.parked == 0) {
                break;
            }
        }
        if total > 0 {
            info!(%peer, ops = total, "ledger caught up");
        }
        Ok(total)
    }

    /// A `ledger` control request.
    pub(crate) async fn ledger_command(self: &Arc<Self>, request: Value) -> Result<Value> {
        let service = self.ledger()?.clone();
        let me = self.clone();
        let verify = request["cmd"] == "ledger_verify";
        let (mut answer, op) = service
            .with(move |l| query(l, Some(&me.key), &request, now_ms()))
            .await??;
        if verify {
            // Only a running node holds ops back for the clock.
            answer["future_ops"] = json!(service.future().len());
        }
        if let Some(op) = op {
            self.gossip_ops(&[op]).await;
        }
        Ok(answer)
    }
}

impl crate::ComputeNode {
    /// Answers a ledger request as the control channel does
    /// (`{"cmd": "ledger_balance"}` and the others).
    pub async fn ledger(&self, request: Value) -> Result<Value> {
        self.shared.ledger_command(request).await
    }

    /// A digest of the ledger's derived state: equal on replicas that
    /// hold the same ops.
    pub fn ledger_digest(&self) -> Option<[u8; 32]> {
        let service = self.shared.ledger.as_ref()?;
        Some(service.lock().state().digest())
    }

    /// Pulls from `peer` every op it holds that this node lacks; returns
    /// how many were new.
    pub async fn ledger_sync(&self, peer: PeerId) -> Result<usize> {
        self.shared.sync_with(peer).await
    }

    /// How many ops wait for this node's clock to reach their time.
    pub fn ledger_future_ops(&self) -> usize {
        self.shared.ledger.as_ref().map_or(0, |l| l.future().len())
    }

    /// `peer`'s standing with this node's ledger: 0 until it sends bad
    /// messages; blocked at [`BLOCK_SCORE`].
    pub fn ledger_score(&self, peer: &PeerId) -> i32 {
        self.shared.ledger.as_ref().map_or(0, |l| l.score(peer))
    }
}

/// Anti-entropy with one connected peer now and then, and with every peer
/// as it connects (see `dispatch`).
pub(crate) async fn sync_loop(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut turn = 0usize;
    loop {
        tick.tick().await;
        let Ok(peers) = shared.client.peers().await else {
            return;
        };
        if peers.is_empty() {
            continue;
        }
        turn = turn.wrapping_add(1);
        let Ok(peer) = peers[turn % peers.len()].peer_id.parse() else {
            continue;
        };
        if let Err(e) = shared.sync_with(peer).await {
            debug!(%peer, error = %e, "ledger sync failed");
        }
    }
}

/// Inserts parked ops as the clock reaches them.
pub(crate) async fn release_loop(shared: Arc<Shared>) {
    let Ok(service) = shared.ledger().cloned() else {
        return;
    };
    loop {
        let next = service.future().next_due();
        match next {
            None => service.parked.notified().await,
            Some(at) => {
                // Capped so an op dated centuries ahead cannot overflow
                // the timer; the loop just looks again.
                let wait = Duration::from_millis(at.saturating_sub(now_ms()).min(3_600_000));
                // A newly parked op may be due sooner than `at`.
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = service.parked.notified() => continue,
                }
            }
        }
        let due = service.future().due(now_ms());
        if due.is_empty() {
            continue;
        }
        match shared.take_ops(None, due).await {
            Ok(taken) => {
                debug!(ops = taken.new.len(), "ledger ops whose time came inserted");
                // Peers that parked them too release them on their own
                // clocks; anti-entropy covers the rest.
            }
            Err(e) => warn!(error = %e, "ledger ops whose time came not stored"),
        }
    }
}

fn now_ms() -> u64 {
    crate::messages::now_unix_ms()
}

fn account(request: &Value, me: Option<&SecretKey>) -> Result<PublicKey> {
    match request.get("account").and_then(Value::as_str) {
        Some(text) => text
            .parse()
            .map_err(|_| Error::Control(format!("{text:?} is not a 64-hex-digit public key"))),
        None => me.map(SecretKey::public).ok_or_else(|| {
            Error::Control("name an account; this ledger has no key of its own here".into())
        }),
    }
}

fn outcome_json(o: Outcome) -> Value {
    match o {
        Outcome::Pay { fuel_used } => json!({"pay": fuel_used}),
        Outcome::Refund => json!("refund"),
        Outcome::Confirm => json!("confirm"),
    }
}

/// One op as `ledger history` shows it.
pub fn op_json(ledger: &Ledger, op: &Op) -> Value {
    let id = op.id();
    let state = ledger.state();
    let status = if state.is_applied(&id) {
        "applied".to_owned()
    } else if let Some(r) = state.rejection(&id) {
        format!("refused: {r}")
    } else {
        "waiting".to_owned()
    };
    let mut v = json!({
        "id": hex::encode(id),
        "author": op.author.to_string(),
        "seq": op.seq,
        "time_ms": op.time_ms,
        "claims": op.deps.len(),
        "status": status,
    });
    let body = match &op.body {
        Body::Mint { to, amount } => {
            json!({"kind": "mint", "to": to.to_string(), "amount": amount})
        }
        Body::Transfer { to, amount } => {
            json!({"kind": "transfer", "to": to.to_string(), "amount": amount})
        }
        Body::Hold {
            worker,
            arbiter,
            price,
            fuel_limit,
            window_ms,
            collateral,
        } => json!({"kind": "hold", "worker": worker.to_string(), "arbiter": arbiter.to_string(),
            "price": price, "fuel_limit": fuel_limit, "window_ms": window_ms, "collateral": collateral}),
        Body::Bond { escrow } => json!({"kind": "bond", "escrow": hex::encode(escrow)}),
        Body::Decide(d) => {
            json!({"kind": "decide", "escrow": hex::encode(d.escrow), "step": d.step,
            "outcome": outcome_json(d.outcome), "cosigner": d.cosigner.to_string()})
        }
    };
    if let (Value::Object(m), Value::Object(b)) = (&mut v, body) {
        m.extend(b);
    }
    v
}

/// Answers one ledger request (`{"cmd": "ledger_balance", ...}` and the
/// others `p2pctl ledger` sends). `key` signs transfers; the op a transfer
/// made is returned for gossip.
pub fn query(
    ledger: &mut Ledger,
    key: Option<&SecretKey>,
    request: &Value,
    now_ms: u64,
) -> Result<(Value, Option<Op>)> {
    let cmd = request.get("cmd").and_then(Value::as_str).unwrap_or("");
    let state = ledger.state();
    let answer = match cmd {
        "ledger_balance" => {
            let who = account(request, key)?;
            let incoming: u64 = state.incoming(&who).iter().map(|(_, a)| a).sum();
            let held: u64 = state
                .escrows()
                .filter(|(_, e)| e.owner == who && e.finalised.is_none())
                .map(|(_, e)| e.amount)
                .sum();
            let bonded: u64 = state
                .escrows()
                .filter(|(_, e)| e.worker == who && e.bond.is_some() && e.finalised.is_none())
                .map(|(_, e)| e.collateral)
                .sum();
            json!({
                "account": who.to_string(),
                "balance": state.balance(&who),
                "incoming": incoming,
                "held": held,
                "bonded": bonded,
                "frozen": state.is_frozen(&who),
                "seq": state.head(&who).0,
            })
        }
        "ledger_history" => {
            let who = account(request, key)?;
            let limit = request.get("limit").and_then(Value::as_u64).unwrap_or(50) as usize;
            let all = state.history(&who);
            let skip = all.len().saturating_sub(limit);
            let ops: Vec<Value> = all[skip..].iter().map(|op| op_json(ledger, op)).collect();
            json!({"account": who.to_string(), "total": all.len(), "ops": ops})
        }
        "ledger_holds" => {
            let who = request
                .get("account")
                .map(|_| account(request, key))
                .transpose()?;
            let holds: Vec<Value> = state
                .escrows()
                .filter(|(_, e)| {
                    who.is_none_or(|w| e.owner == w || e.worker == w || e.arbiter == w)
                })
                .map(|(id, e)| {
                    json!({
                        "escrow": hex::encode(id),
                        "owner": e.owner.to_string(),
                        "worker": e.worker.to_string(),
                        "arbiter": e.arbiter.to_string(),
                        "amount": e.amount,
                        "price": e.price,
                        "fuel_limit": e.fuel_limit,
                        "window_ms": e.window_ms,
                        "collateral": e.collateral,
                        "bonded": e.bond.is_some(),
                        "settled": e.settled.map(|(_, o, t)| json!({"outcome": outcome_json(o), "time_ms": t})),
                        "final": e.finalised.map(|(_, o)| outcome_json(o)),
                    })
                })
                .collect();
            json!({"holds": holds})
        }
        "ledger_verify" => {
            let r = ledger.verify().map_err(|e| Error::Ledger(e.to_string()))?;
            json!({
                "ok": r.problems.is_empty(),
                "network": hex::encode(ledger.state().network()),
                "ops": r.ops,
                "applied": r.applied,
                "accounts": r.accounts,
                "escrows": r.escrows.0,
                "open_escrows": r.escrows.1,
                "minted": r.minted.to_string(),
                "proofs": r.proofs,
                "problems": r.problems,
            })
        }
        "ledger_transfer" => {
            let key = key.ok_or_else(|| Error::Control("no key to sign with".into()))?;
            let to = request
                .get("to")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Control("missing field \"to\"".into()))?;
            let to: PublicKey = to
                .parse()
                .map_err(|_| Error::Control(format!("{to:?} is not a 64-hex-digit public key")))?;
            let amount = request
                .get("amount")
                .and_then(Value::as_u64)
                .filter(|a| *a > 0)
                .ok_or_else(|| Error::Control("amount must be a whole number above 0".into()))?;
            let op = state.draft(key, now_ms, Body::Transfer { to, amount });
            // Checked before it is stored: a refused op would still take
            // its place in the chain.
            match state.check(&op) {
                Insert::Applied(_) => {}
                Insert::Waiting => {
                    return Err(Error::Ledger(
                        "this account's chain is waiting for an earlier op; try again once it applies".into(),
                    ));
                }
                Insert::Rejected(Reject::Insufficient { has, needs }) => {
                    return Err(Error::Ledger(format!(
                        "insufficient credits: {has} spendable, {needs} needed"
                    )));
                }
                other => return Err(Error::Ledger(format!("transfer refused: {other:?}"))),
            }
            let id = op.id();
            let r = ledger
                .insert(op.clone())
                .map_err(|e| Error::Ledger(e.to_string()))?;
            let balance = ledger.state().balance(&key.public());
            return Ok((
                json!({"id": hex::encode(id), "applied": matches!(r, Insert::Applied(_)), "balance": balance}),
                Some(op),
            ));
        }
        other => return Err(Error::Control(format!("unknown ledger command {other:?}"))),
    };
    Ok((answer, None))
}
