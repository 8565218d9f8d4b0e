//! The node's ledger replica and its replication over the overlay: a
//! service with its own state behind the [`Replica`] handle. The inbound
//! router hands it gossip through a bounded queue and never waits for it.
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
//!   ops is scored down; at [`BLOCK_SCORE`](crate::BLOCK_SCORE) it is disconnected and blocked.
//!   Ops refused on their merits (too few credits, say) are not the
//!   sender's fault: they are signed facts every replica keeps alike.
//!
//! Queries ([`query`]) serve both the control channel and `p2pctl ledger`
//! on a stopped node. Typed: [`LedgerRequest`] in, [`LedgerAnswer`] out.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pc_crypto::{PublicKey, SecretKey};
use p2pc_ledger::sync::{SyncRequest, answer, decode_ops, encode_ops};
use p2pc_ledger::{
    ArbiterPolicy, Body, CreditManager, Escrow, FutureOps, Genesis, Insert, Ledger, Offer, Op,
    OpId, Outcome, Persister, Proof, Record, Reject,
};
use p2pc_net::{Client, GossipId, PeerId, Verdict};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::api::{
    Balance, Decision, HeldEscrow, History, Holds, LedgerAnswer, LedgerRequest, OpBody, OpView,
    Settled, Transferred, Verified,
};
use crate::events::EventKind;
use crate::market::Market;
use crate::metrics::Telemetry;
use crate::scores::PeerScores;
use crate::signer::Signer;
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
/// Ops waiting to be gossiped, at most.
const OUTBOX: usize = 4096;
/// Bytes of ops per gossip message at most, under the overlay's 64 KiB
/// limit with room for the frame and gossipsub's own fields.
const GOSSIP_BYTES: usize = 48 << 10;
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

/// Gossip messages waiting for the replica, at most. Past it new ones are
/// dropped: anti-entropy brings whatever they carried, and a flood of ops
/// cannot grow memory or hold up the inbound router.
const GOSSIP_QUEUE: usize = 256;

/// Writes [`Replica::write_recorded`] runs on one writer thread at most at
/// once, under one hold of the lock and one sync.
const WRITE_BATCH: usize = 256;
/// Writes waiting for the writer thread, at most.
const WRITE_QUEUE: usize = 1024;

/// One write for the writer thread: run under the ledger's lock, it
/// returns what to do once the batch it was in is durable (or not).
type WriteJob = Box<dyn FnOnce(&mut Ledger, u64) -> Box<dyn FnOnce(Result<()>) + Send> + Send>;

/// What the writer thread is sent: a write, or `None` to stop.
type Write = Option<WriteJob>;

/// A handle on the node's ledger replica. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Replica {
    inner: Arc<Inner>,
    gossip: mpsc::Sender<(PeerId, Vec<u8>, GossipId)>,
    writes: mpsc::Sender<Write>,
    /// The writer thread, until [`stop`](Replica::stop) waits for it.
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

struct Inner {
    ledger: Mutex<Ledger>,
    client: Client,
    signer: Arc<Signer>,
    scores: PeerScores,
    market: Market,
    syncing: Mutex<HashSet<PeerId>>,
    future: Mutex<FutureOps>,
    /// Woken when an op is parked in `future`.
    parked: tokio::sync::Notify,
    /// Gossip messages dropped because the queue was full.
    dropped: AtomicU64,
    /// Bumped after every insert, for those waiting on an op to apply.
    changed: tokio::sync::watch::Sender<u64>,
    /// Syncs the ledger's writes without its lock held.
    persister: Persister,
    /// Own ops written (buffered), and how many of them a sync covered:
    /// one sync makes every op written before it durable, so signers that
    /// wait together share it (group commit).
    written: AtomicU64,
    synced: Mutex<u64>,
    /// Ops waiting to be gossiped ([`OUTBOX`] at most).
    outbox: mpsc::Sender<Op>,
    telemetry: Telemetry,
    /// How the last anti-entropy pulls went, for the health checker.
    sync_state: Mutex<SyncState>,
}

#[derive(Default)]
struct SyncState {
    last_ok: Option<std::time::Instant>,
    behind: bool,
    pulled: usize,
}

/// How this replica's anti-entropy has gone lately.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SyncView {
    /// Since the last pull that completed.
    pub(crate) last_ok_ago: Option<Duration>,
    /// The last pull stopped with more to come.
    pub(crate) behind: bool,
    /// New ops the last completed pull brought.
    pub(crate) pulled: usize,
}

/// Where an op stands in this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OpState {
    /// Applied.
    Applied,
    /// Refused, and why.
    Refused(String),
    /// Held but waiting for what it relies on, or not held.
    Pending,
}

/// What [`Inner::take_ops`] did with a peer's ops.
#[derive(Default)]
struct Taken {
    /// Ops this replica did not hold before.
    new: Vec<Op>,
    /// Ops newly set aside until the clock reaches their time.
    parked: usize,
    /// Some were forged or foreign (their sender was scored down).
    forged: bool,
}

impl Replica {
    /// Starts the replica's tasks: the gossip queue, anti-entropy every
    /// `[ledger] sync_interval`, and the release of future-dated ops.
    pub(crate) fn start(
        ledger: Ledger,
        config: &NodeConfig,
        client: Client,
        signer: Arc<Signer>,
        scores: PeerScores,
        market: Market,
        telemetry: Telemetry,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let skew = u64::try_from(config.ledger.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        let persister = ledger.persister();
        let (outbox, outgoing) = mpsc::channel(OUTBOX);
        let inner = Arc::new(Inner {
            outbox,
            persister,
            written: AtomicU64::new(0),
            synced: Mutex::new(0),
            ledger: Mutex::new(ledger),
            client,
            signer,
            scores,
            market,
            syncing: Mutex::new(HashSet::new()),
            future: Mutex::new(FutureOps::new(skew, FUTURE_BYTES)),
            parked: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
            changed: tokio::sync::watch::Sender::new(0),
            telemetry,
            sync_state: Mutex::new(SyncState::default()),
        });
        let (gossip, queue) = mpsc::channel(GOSSIP_QUEUE);
        let (writes, jobs) = mpsc::channel(WRITE_QUEUE);
        let writer = inner.clone();
        // A thread of its own: it blocks on the lock and on fsync. It ends
        // at `stop`, once every write sent before it is done.
        let writer = tokio::task::spawn_blocking(move || write_loop(&writer, jobs));
        let tasks = vec![
            tokio::spawn(gossip_loop(inner.clone(), queue)),
            tokio::spawn(sync_loop(inner.clone(), config.ledger.sync_interval)),
            tokio::spawn(release_loop(inner.clone())),
            tokio::spawn(outbox_loop(inner.clone(), outgoing)),
        ];
        (
            Self {
                inner,
                gossip,
                writes,
                writer: Arc::new(Mutex::new(Some(writer))),
            },
            tasks,
        )
    }

    /// Queues a gossip message on [`LEDGER_TOPIC`] for the replica, in
    /// order (ops of one chain must not race themselves). Never waits: a
    /// full queue drops the message.
    pub(crate) fn on_gossip(&self, via: PeerId, data: Vec<u8>, id: GossipId) {
        if let Err(e) = self.gossip.try_send((via, data, id)) {
            let (_, _, id) = e.into_inner();
            self.inner.client.judge(id, Verdict::Ignore);
            let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                debug!(
                    dropped = n,
                    "ledger gossip queue full; anti-entropy will bring what was dropped"
                );
            }
        }
    }

    /// A peer connected: pull what it has, in the background.
    pub(crate) fn on_connected(&self, peer: PeerId) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.sync_with(peer).await {
                debug!(%peer, error = %e, "ledger sync failed");
            }
        });
    }

    /// Answers a peer's anti-entropy request.
    pub(crate) async fn answer_sync(&self, peer: PeerId, request: &[u8]) -> Vec<u8> {
        let request = match SyncRequest::decode(request) {
            Ok(r) => r,
            Err(e) => {
                self.inner.penalise(peer, &e.to_string());
                return Vec::new();
            }
        };
        let inner = self.inner.clone();
        let reply = tokio::task::spawn_blocking(move || {
            // Own ops still waiting for their group's sync must not leave
            // this node before it: sync them first (free when none wait).
            if inner
                .sync_own(inner.written.load(Ordering::SeqCst))
                .is_err()
            {
                return Vec::new();
            }
            let ledger = inner.lock();
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
        self.inner.sync_with(peer).await
    }

    /// A ledger request from the control channel.
    pub(crate) async fn command(&self, request: LedgerRequest) -> Result<LedgerAnswer> {
        let inner = self.inner.clone();
        let verify = matches!(request, LedgerRequest::Verify);
        let (mut answer, op) = self
            .inner
            .with(move |l| query(l, Some(inner.signer.key()), &request, now_ms()))
            .await??;
        if verify && let LedgerAnswer::Verify(v) = &mut answer {
            // Only a running node holds ops back for the clock.
            v.future_ops = Some(self.inner.future().len());
        }
        if let Some(op) = op {
            self.inner.gossip_ops(&[op]);
        }
        Ok(answer)
    }

    /// The network id (genesis id) this replica is of.
    pub(crate) fn network_id(&self) -> [u8; 32] {
        self.inner.lock().state().network()
    }

    /// The genesis's shortest challenge window, in milliseconds.
    pub(crate) fn min_window_ms(&self) -> u64 {
        self.inner.lock().state().genesis().min_window_ms
    }

    /// The keys the genesis lets mint.
    pub(crate) fn issuers(&self) -> Vec<PublicKey> {
        self.inner
            .lock()
            .state()
            .genesis()
            .issuers
            .iter()
            .copied()
            .collect()
    }

    /// The arbiters the genesis lists, if it lists any.
    pub(crate) fn listed_arbiters(&self) -> Vec<PublicKey> {
        match &self.inner.lock().state().genesis().arbiters {
            ArbiterPolicy::Any => Vec::new(),
            ArbiterPolicy::Listed(keys) => keys.iter().copied().collect(),
        }
    }

    /// What `account` can spend now: its balance plus credits sent to it
    /// and not yet claimed (the next op it signs claims them).
    pub(crate) async fn available(&self, account: PublicKey) -> Result<u64> {
        self.inner
            .with(move |l| available(l.state(), &account))
            .await
    }

    /// The escrow opened by hold `id`, if applied here.
    pub(crate) async fn escrow(&self, id: OpId) -> Result<Option<Escrow>> {
        self.inner
            .with(move |l| l.state().escrow(&id).cloned())
            .await
    }

    /// Every escrow `account` is party to.
    pub(crate) async fn escrows_of(&self, account: PublicKey) -> Result<Vec<(OpId, Escrow)>> {
        self.inner
            .with(move |l| {
                l.state()
                    .escrows()
                    .filter(|(_, e)| [e.owner, e.worker, e.arbiter].contains(&account))
                    .map(|(id, e)| (*id, e.clone()))
                    .collect()
            })
            .await
    }

    /// Where op `id` stands here.
    pub(crate) async fn op_state(&self, id: OpId) -> Result<OpState> {
        self.inner.with(move |l| op_state(l.state(), &id)).await
    }

    /// Signs this node's next op with `body`, dated `time_ms`, stores it
    /// and gossips it. Checked first, so a refused op never takes a place
    /// in the chain.
    pub(crate) async fn sign(&self, time_ms: u64, body: Body) -> Result<Op> {
        let inner = self.inner.clone();
        let op = tokio::task::spawn_blocking(move || -> Result<Op> {
            let (op, mine) = {
                let mut l = inner.lock();
                let key = inner.signer.key();
                let op = l.state().draft(key, time_ms, body);
                checked(l.state(), &op)?;
                let r = l
                    .insert_checked(op.clone())
                    .map_err(|e| Error::Ledger(e.to_string()))?;
                inner.stored(&op, &r);
                // Counted under the lock, so the count follows the journal.
                (op, inner.written.fetch_add(1, Ordering::SeqCst) + 1)
            };
            // Durable before it leaves this node: a node that forgot an op
            // it signed could sign another at its place, an equivocation.
            inner.sync_own(mine)?;
            Ok(op)
        })
        .await
        .map_err(|e| Error::Ledger(format!("ledger task failed: {e}")))??;
        self.inner.changed.send_modify(|n| *n += 1);
        self.inner.gossip_ops(std::slice::from_ref(&op));
        Ok(op)
    }

    /// Runs `decide` on the ledger under its lock and writes what it
    /// returns: at most one op (drafted on that same state, so nothing can
    /// come between the decision and the write) and records, in one batch,
    /// durable before this returns. So a service that records "done X"
    /// with the op X caused, and checks that record in `decide`, does X
    /// exactly once, crash or not.
    ///
    /// One writer thread runs these: it takes every write waiting (up to
    /// [`WRITE_BATCH`]), runs them one after another under one hold of the
    /// lock, then makes them all durable with one sync before any is
    /// answered (group commit), so a burst costs one lock and one fsync,
    /// not one each.
    pub(crate) async fn write_recorded<T: Send + 'static>(
        &self,
        decide: impl FnOnce(&Ledger, u64) -> Result<(Option<Op>, Vec<Record>, T)> + Send + 'static,
    ) -> Result<(T, Option<Op>)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = self.inner.clone();
        let job: WriteJob = Box::new(move |l: &mut Ledger, now: u64| {
            let written = (|| -> Result<(T, Option<Op>)> {
                let (op, records, value) = decide(l, now)?;
                if let Some(op) = &op {
                    checked(l.state(), op)?;
                }
                if op.is_none() && records.is_empty() {
                    return Ok((value, None));
                }
                let results = l
                    .insert_recorded_buffered(op.iter().cloned().collect(), &records)
                    .map_err(|e| Error::Ledger(e.to_string()))?;
                if let (Some(op), Some(r)) = (&op, results.first()) {
                    inner.stored(op, r);
                }
                inner.written.fetch_add(1, Ordering::SeqCst);
                Ok((value, op))
            })();
            Box::new(move |synced: Result<()>| {
                let _ = tx.send(synced.and(written));
            })
        });
        self.writes
            .send(Some(job))
            .await
            .map_err(|_| Error::Ledger("the ledger's writer has stopped".into()))?;
        let (value, op) = rx
            .await
            .map_err(|_| Error::Ledger("the ledger's writer has stopped".into()))??;
        if let Some(op) = &op {
            self.inner.changed.send_modify(|n| *n += 1);
            self.inner.gossip_ops(std::slice::from_ref(op));
        }
        Ok((value, op))
    }

    /// Stops the writer thread once the writes sent before are done, and
    /// waits for it, so the ledger's database can close.
    pub(crate) async fn stop(&self) {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            let _ = self.writes.send(None).await;
            let _ = writer.await;
        }
    }

    /// Reads the ledger (its records, its state) off the async threads.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> T + Send + 'static,
    ) -> Result<T> {
        self.inner.with(move |l| f(l)).await
    }

    /// Takes an op a peer sent directly (a hold inside a task request):
    /// stores it like gossip and passes it on if it was new.
    pub(crate) async fn take(&self, from: PeerId, op: Op) -> Result<()> {
        let taken = self.inner.take_ops(Some(from), vec![op]).await?;
        self.inner.gossip_ops(&taken.new);
        Ok(())
    }

    /// Waits up to `timeout` for op `id` to apply or be refused, pulling
    /// from `peer` (who sent it, and holds what it relies on) meanwhile.
    pub(crate) async fn wait_for(&self, id: OpId, peer: PeerId, timeout: Duration) -> OpState {
        let mut changed = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pulled = false;
        loop {
            match self.op_state(id).await {
                Ok(OpState::Pending) => {}
                Ok(state) => return state,
                Err(e) => return OpState::Refused(e.to_string()),
            }
            if !pulled {
                pulled = true;
                let this = self.clone();
                tokio::spawn(async move {
                    let _ = this.sync_with(peer).await;
                });
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return OpState::Pending;
            }
        }
    }

    /// A digest of the replica's derived state.
    pub(crate) fn digest(&self) -> [u8; 32] {
        self.inner.lock().state().digest()
    }

    /// How anti-entropy has gone lately.
    pub(crate) fn sync_view(&self) -> SyncView {
        let s = self
            .inner
            .sync_state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        SyncView {
            last_ok_ago: s.last_ok.map(|t| t.elapsed()),
            behind: s.behind,
            pulled: s.pulled,
        }
    }

    /// Accounts proved to have equivocated, and whether each is this
    /// node's own.
    pub(crate) async fn liars(&self) -> Result<Vec<(String, bool)>> {
        let me = self.inner.signer.public();
        self.inner
            .with(move |l| {
                let mut v: Vec<(String, bool)> = l
                    .state()
                    .proofs()
                    .iter()
                    .map(|p| {
                        let who = match p {
                            Proof::Chain { account, .. } => account,
                            Proof::Decision { signer, .. } => signer,
                        };
                        (who.to_string(), *who == me)
                    })
                    .collect();
                v.sort();
                v.dedup();
                v
            })
            .await
    }

    /// The derived rows on disk against the live state.
    pub(crate) async fn audit(&self) -> Result<p2pc_ledger::Audit> {
        self.inner
            .with(|l| l.audit())
            .await?
            .map_err(|e| Error::Ledger(e.to_string()))
    }

    /// Credits locked in open holds, and this node's spendable balance.
    pub(crate) async fn locked_and_balance(&self) -> Result<(u128, u64)> {
        let me = self.inner.signer.public();
        self.inner
            .with(move |l| (l.state().supply().held, l.state().balance(&me)))
            .await
    }

    /// Ops waiting for the clock.
    pub(crate) fn future_ops(&self) -> usize {
        self.inner.future().len()
    }
}

/// The writer thread: batches of [`Replica::write_recorded`] jobs, each
/// batch run under one hold of the lock and made durable by one sync
/// before its jobs are answered.
fn write_loop(inner: &Arc<Inner>, mut jobs: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut stop = false;
    while !stop {
        match jobs.blocking_recv() {
            Some(Some(job)) => batch.push(job),
            Some(None) | None => break,
        }
        while batch.len() < WRITE_BATCH {
            match jobs.try_recv() {
                Ok(Some(job)) => batch.push(job),
                Ok(None) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let done: Vec<_> = {
            let mut l = inner.lock();
            let now = now_ms();
            batch.drain(..).map(|job| job(&mut l, now)).collect()
        };
        let synced = inner.sync_own(inner.written.load(Ordering::SeqCst));
        for finish in done {
            finish(match &synced {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::Ledger(e.to_string())),
            });
        }
    }
}

/// Whether an insert result is the sender's fault.
fn forged(r: &Insert) -> bool {
    matches!(
        r,
        Insert::Rejected(Reject::BadSignature | Reject::WrongNetwork)
    )
}

impl Inner {
    fn future(&self) -> std::sync::MutexGuard<'_, FutureOps> {
        self.future.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes own op number `mine` durable: the first waiter syncs for
    /// every op written so far, those behind it find theirs covered.
    fn sync_own(&self, mine: u64) -> Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= mine {
            return Ok(());
        }
        let upto = self.written.load(Ordering::SeqCst);
        self.persister
            .sync()
            .map_err(|e| Error::Ledger(e.to_string()))?;
        *synced = upto;
        Ok(())
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

    /// Reports an op the insert kept: an event and the counters.
    fn stored(&self, op: &Op, r: &Insert) {
        let result = match r {
            Insert::Applied(n) => {
                self.telemetry.metrics.ledger_applied.inc_by(*n as u64);
                "applied"
            }
            Insert::Waiting => "waiting",
            Insert::Equivocation => "equivocation",
            Insert::Rejected(r) if !forged(&Insert::Rejected(r.clone())) => "refused",
            Insert::Duplicate | Insert::Rejected(_) => return,
        };
        self.telemetry
            .metrics
            .ledger_ops
            .get_or_create(&crate::metrics::Result_ { result })
            .inc();
        self.telemetry.events.publish(EventKind::LedgerOp {
            op: hex::encode(op.id()),
            author: op.author.to_string(),
            kind: body_kind(&op.body).to_owned(),
            result: result.to_owned(),
        });
    }

    fn penalise(&self, peer: PeerId, why: &str) {
        self.scores.penalise(peer, why);
    }

    /// Queues ops for gossip without waiting: one task publishes them in
    /// order, as many per message as are waiting (up to [`GOSSIP_BATCH`]),
    /// so a busy node sends fewer, fuller messages. A full queue drops
    /// ops; anti-entropy sends them instead.
    fn gossip_ops(&self, ops: &[Op]) {
        for op in ops {
            if self.outbox.try_send(op.clone()).is_err() {
                debug!("ledger gossip queue full; anti-entropy will send the rest");
                return;
            }
        }
    }

    /// Inserts ops from a peer (or, with `from` empty, ops whose time has
    /// come); scores the peer down for forgeries; parks ops dated ahead of
    /// the clock; gossips the ops of any equivocation they reveal.
    async fn take_ops(self: &Arc<Self>, from: Option<PeerId>, ops: Vec<Op>) -> Result<Taken> {
        let this = self.clone();
        let (results, proofs, ops, parked, bad) = self
            .with(move |l| {
                let now = now_ms();
                let mut bad = 0;
                let mut parked = 0;
                let mut ready = Vec::with_capacity(ops.len());
                {
                    let mut future = this.future();
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
                    this.parked.notify_one();
                }
                let before = l.state().proofs().len();
                // Peers' ops are written without a sync: one lost in a crash
                // comes back by anti-entropy. This node's own are synced
                // before they leave it (`sign`).
                let results = l.insert_buffered(ready.clone());
                if let Ok(results) = &results {
                    for (op, r) in ready.iter().zip(results) {
                        this.stored(op, r);
                    }
                }
                // Who equivocated, by the proof's id: reputation evidence.
                let liars: Vec<(PublicKey, [u8; 32])> = l.state().proofs()[before..]
                    .iter()
                    .map(|p| match p {
                        Proof::Chain {
                            account: who, ops, ..
                        }
                        | Proof::Decision { signer: who, ops } => {
                            let mut h = blake3::Hasher::new();
                            h.update(&ops.0);
                            h.update(&ops.1);
                            (*who, *h.finalize().as_bytes())
                        }
                    })
                    .collect();
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
                (results, (proofs, liars), ready, parked, bad)
            })
            .await?;
        let (proofs, liars) = proofs;
        for (who, id) in liars {
            self.market
                .evidence(who.peer_id(), id, p2pc_market::Evidence::Equivocation);
        }
        let results = results.map_err(|e| Error::Ledger(e.to_string()))?;
        self.changed.send_modify(|n| *n += 1);
        let bad = bad + results.iter().filter(|r| forged(r)).count();
        if bad > 0
            && let Some(from) = from
        {
            self.penalise(from, "forged or foreign ledger op");
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
            self.gossip_ops(&proofs);
        }
        let new = results
            .iter()
            .zip(ops)
            .filter(|(r, _)| !matches!(r, Insert::Duplicate) && !forged(r))
            .map(|(_, op)| op)
            .collect();
        Ok(Taken {
            new,
            parked,
            forged: bad > 0,
        })
    }

    /// One gossip message on [`LEDGER_TOPIC`], from the queue.
    /// Returns whether the overlay should pass the message on.
    async fn on_gossip(self: &Arc<Self>, via: PeerId, data: &[u8]) -> Verdict {
        let Ok(decoded) = decode_ops(data) else {
            self.penalise(via, "malformed ledger gossip");
            return Verdict::Reject;
        };
        let mut ops = Vec::with_capacity(decoded.len());
        for op in decoded {
            match op {
                Ok(op) => ops.push(op),
                Err(_) => {
                    self.penalise(via, "malformed ledger op");
                    return Verdict::Reject;
                }
            }
        }
        match self.take_ops(Some(via), ops).await {
            Ok(t) if t.forged => Verdict::Reject,
            Ok(_) => Verdict::Accept,
            Err(e) => {
                warn!(error = %e, "ledger gossip not stored");
                Verdict::Ignore
            }
        }
    }

    async fn sync_with(self: &Arc<Self>, peer: PeerId) -> Result<usize> {
        if !self
            .syncing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer)
        {
            return Ok(0);
        }
        let result = self.pull(peer).await;
        self.syncing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&peer);
        result
    }

    async fn pull(self: &Arc<Self>, peer: PeerId) -> Result<usize> {
        let mut total = 0;
        let mut behind = false;
        for _ in 0..SYNC_ROUNDS {
            let request = self.with(|l| SyncRequest::of(l.state()).encode()).await?;
            let reply = self
                .client
                .request_ledger(peer, request, SYNC_TIMEOUT)
                .await?;
            // An empty reply: the peer has no ledger, or another network's.
            let Some((&more, frame)) = reply.split_first() else {
                return Ok(total);
            };
            let Ok(decoded) = decode_ops(frame) else {
                self.penalise(peer, "malformed ledger sync reply");
                return Ok(total);
            };
            let Ok(ops) = decoded.into_iter().collect::<Result<Vec<Op>, _>>() else {
                self.penalise(peer, "malformed op in ledger sync reply");
                return Ok(total);
            };
            let taken = self.take_ops(Some(peer), ops).await?;
            total += taken.new.len();
            // What one side of a healed partition learns this way, the
            // rest of its side learns by gossip, not each by its own pull.
            self.gossip_ops(&taken.new);
            // Stop when the peer is done, or sends only what we hold or
            // have parked (a peer repeating itself must not keep us busy).
            behind = more != 0;
            if more == 0 || (taken.new.is_empty() && taken.parked == 0) {
                break;
            }
        }
        {
            let mut s = self.sync_state.lock().unwrap_or_else(|e| e.into_inner());
            s.last_ok = Some(std::time::Instant::now());
            s.behind = behind && total > 0;
            s.pulled = total;
        }
        if total > 0 {
            info!(%peer, ops = total, "ledger caught up");
        }
        Ok(total)
    }
}

/// Publishes queued ops, in order, as many per message as are waiting and
/// fit in [`GOSSIP_BYTES`].
async fn outbox_loop(inner: Arc<Inner>, mut queue: mpsc::Receiver<Op>) {
    let mut carried: Option<Op> = None;
    loop {
        let first = match carried.take() {
            Some(op) => op,
            None => match queue.recv().await {
                Some(op) => op,
                None => return,
            },
        };
        let mut bytes = first.to_bytes().len();
        let mut batch = vec![first];
        while batch.len() < GOSSIP_BATCH {
            let Ok(op) = queue.try_recv() else { break };
            let len = op.to_bytes().len();
            if bytes + len > GOSSIP_BYTES {
                carried = Some(op);
                break;
            }
            bytes += len;
            batch.push(op);
        }
        // Fails while no peer subscribes; anti-entropy covers that.
        if let Err(e) = inner.client.publish(LEDGER_TOPIC, encode_ops(&batch)).await {
            debug!(error = %e, "ledger gossip not sent");
        }
    }
}

/// Takes gossip from the queue, one message at a time.
async fn gossip_loop(inner: Arc<Inner>, mut queue: mpsc::Receiver<(PeerId, Vec<u8>, GossipId)>) {
    while let Some((via, data, id)) = queue.recv().await {
        let verdict = inner.on_gossip(via, &data).await;
        inner.client.judge(id, verdict);
    }
}

/// Anti-entropy with one connected peer now and then, and with every peer
/// as it connects ([`Replica::on_connected`]).
async fn sync_loop(inner: Arc<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut turn = 0usize;
    loop {
        tick.tick().await;
        let Ok(peers) = inner.client.peers().await else {
            return;
        };
        if peers.is_empty() {
            continue;
        }
        turn = turn.wrapping_add(1);
        let Ok(peer) = peers[turn % peers.len()].peer_id.parse() else {
            continue;
        };
        if let Err(e) = inner.sync_with(peer).await {
            debug!(%peer, error = %e, "ledger sync failed");
        }
    }
}

/// Inserts parked ops as the clock reaches them.
async fn release_loop(inner: Arc<Inner>) {
    loop {
        let next = inner.future().next_due();
        match next {
            None => inner.parked.notified().await,
            Some(at) => {
                // Capped so an op dated centuries ahead cannot overflow
                // the timer; the loop just looks again.
                let wait = Duration::from_millis(at.saturating_sub(now_ms()).min(3_600_000));
                // A newly parked op may be due sooner than `at`.
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = inner.parked.notified() => continue,
                }
            }
        }
        let due = inner.future().due(now_ms());
        if due.is_empty() {
            continue;
        }
        match inner.take_ops(None, due).await {
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

/// Checks a draft (signed here a moment ago, so its author's signature is
/// not verified again) before it is stored: a refused op would still take
/// its place in the chain (and stall every op after it).
fn checked(state: &CreditManager, op: &Op) -> Result<()> {
    match state.check_draft(op) {
        Insert::Applied(_) => Ok(()),
        Insert::Waiting => Err(Error::Ledger(
            "this account's chain is waiting for an earlier op; try again once it applies".into(),
        )),
        Insert::Rejected(Reject::Insufficient { has, needs }) => Err(Error::InsufficientCredits(
            format!("not enough credits: {needs} needed, {has} available"),
        )),
        Insert::Rejected(r) => Err(Error::Ledger(format!("refused: {r}"))),
        other => Err(Error::Ledger(format!("refused: {other:?}"))),
    }
}

/// What `account` can spend now: its balance and its unclaimed credits.
fn available(state: &CreditManager, account: &PublicKey) -> u64 {
    state
        .incoming(account)
        .iter()
        .fold(state.balance(account), |sum, (_, a)| sum.saturating_add(*a))
}

fn op_state(state: &CreditManager, id: &OpId) -> OpState {
    if state.is_applied(id) {
        OpState::Applied
    } else if let Some(r) = state.rejection(id) {
        OpState::Refused(r.to_string())
    } else {
        OpState::Pending
    }
}

fn account(given: Option<PublicKey>, me: Option<&SecretKey>) -> Result<PublicKey> {
    given.or_else(|| me.map(SecretKey::public)).ok_or_else(|| {
        Error::Control("name an account; this ledger has no key of its own here".into())
    })
}

fn decision(o: Outcome) -> Decision {
    match o {
        Outcome::Pay { fuel_used } => Decision::Pay(fuel_used),
        Outcome::Refund => Decision::Refund,
        Outcome::Confirm => Decision::Confirm,
    }
}

/// An op body's kind, as events and `ledger history` name it.
pub(crate) fn body_kind(body: &Body) -> &'static str {
    match body {
        Body::Mint { .. } => "mint",
        Body::Transfer { .. } => "transfer",
        Body::Hold { .. } => "hold",
        Body::TaskHold(_) => "task_hold",
        Body::Bond { .. } => "bond",
        Body::Decide(_) => "decide",
    }
}

/// One op as `ledger history` shows it.
pub fn op_view(ledger: &Ledger, op: &Op) -> OpView {
    let id = op.id();
    let state = ledger.state();
    let status = if state.is_applied(&id) {
        "applied".to_owned()
    } else if let Some(r) = state.rejection(&id) {
        format!("refused: {r}")
    } else {
        "waiting".to_owned()
    };
    let body = match &op.body {
        Body::Mint { to, amount } => OpBody::Mint {
            to: *to,
            amount: *amount,
        },
        Body::Transfer { to, amount } => OpBody::Transfer {
            to: *to,
            amount: *amount,
        },
        Body::Hold {
            worker,
            arbiter,
            price,
            fuel_limit,
            window_ms,
            collateral,
        } => OpBody::Hold {
            worker: *worker,
            arbiter: *arbiter,
            price: *price,
            fuel_limit: *fuel_limit,
            window_ms: *window_ms,
            collateral: *collateral,
        },
        Body::TaskHold(h) => OpBody::TaskHold {
            worker: h.worker,
            arbiter: h.arbiter,
            price: h.price,
            fuel_limit: h.fuel_limit,
            window_ms: h.window_ms,
            collateral: h.collateral,
            task: hex::encode(h.task),
            deadline_ms: h.deadline_ms,
        },
        Body::Bond { escrow } => OpBody::Bond {
            escrow: hex::encode(escrow),
        },
        Body::Decide(d) => OpBody::Decide {
            escrow: hex::encode(d.escrow),
            step: u64::from(d.step),
            outcome: decision(d.outcome),
            cosigner: d.cosigner,
        },
    };
    OpView {
        id: hex::encode(id),
        author: op.author,
        seq: op.seq,
        time_ms: op.time_ms,
        claims: op.deps.len() as u64,
        status,
        body,
    }
}

/// Answers one ledger request, for the control channel and for
/// `p2pctl ledger` on a stopped node. `key` signs transfers; the op a
/// transfer made is returned for gossip.
pub fn query(
    ledger: &mut Ledger,
    key: Option<&SecretKey>,
    request: &LedgerRequest,
    now_ms: u64,
) -> Result<(LedgerAnswer, Option<Op>)> {
    let state = ledger.state();
    let answer = match request {
        LedgerRequest::Balance { account: given } => {
            let who = account(*given, key)?;
            let incoming = state
                .incoming(&who)
                .iter()
                .fold(0u64, |sum, (_, a)| sum.saturating_add(*a));
            let held = state
                .escrows()
                .filter(|(_, e)| e.owner == who && e.finalised.is_none())
                .fold(0u64, |sum, (_, e)| sum.saturating_add(e.amount));
            let bonded = state
                .escrows()
                .filter(|(_, e)| e.worker == who && e.bond.is_some() && e.finalised.is_none())
                .fold(0u64, |sum, (_, e)| sum.saturating_add(e.collateral));
            let pending = state
                .escrows()
                .filter(|(_, e)| e.worker == who && e.finalised.is_none())
                .filter_map(|(_, e)| match e.settled {
                    Some((_, o @ Outcome::Pay { .. }, _)) => Some(e.split(o).0),
                    _ => None,
                })
                .fold(0u64, u64::saturating_add);
            LedgerAnswer::Balance(Balance {
                account: who,
                available: state.balance(&who).saturating_add(incoming),
                balance: state.balance(&who),
                incoming,
                held,
                bonded,
                pending,
                frozen: state.is_frozen(&who),
                seq: state.head(&who).0,
            })
        }
        LedgerRequest::History {
            account: given,
            limit,
        } => {
            let who = account(*given, key)?;
            let all = state.history(&who);
            let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
            let skip = all.len().saturating_sub(limit);
            let ops = all[skip..].iter().map(|op| op_view(ledger, op)).collect();
            LedgerAnswer::History(History {
                account: who,
                total: all.len() as u64,
                ops,
            })
        }
        LedgerRequest::Holds { account: who } => {
            let holds = state
                .escrows()
                .filter(|(_, e)| {
                    who.is_none_or(|w| e.owner == w || e.worker == w || e.arbiter == w)
                })
                .map(|(id, e)| HeldEscrow {
                    escrow: hex::encode(id),
                    owner: e.owner,
                    worker: e.worker,
                    arbiter: e.arbiter,
                    amount: e.amount,
                    price: e.price,
                    price_unit: e.unit,
                    fuel_limit: e.fuel_limit,
                    task: e.task.map(hex::encode),
                    deadline_ms: e.deadline_ms,
                    window_ms: e.window_ms,
                    collateral: e.collateral,
                    bonded: e.bond.is_some(),
                    settled: e.settled.map(|(_, o, t)| Settled {
                        outcome: decision(o),
                        time_ms: t,
                    }),
                    finalised: e.finalised.map(|(_, o)| decision(o)),
                })
                .collect();
            LedgerAnswer::Holds(Holds { holds })
        }
        LedgerRequest::Verify => {
            let r = ledger.verify().map_err(|e| Error::Ledger(e.to_string()))?;
            LedgerAnswer::Verify(Verified {
                ok: r.problems.is_empty(),
                network: hex::encode(ledger.state().network()),
                ops: r.ops as u64,
                applied: r.applied as u64,
                accounts: r.accounts as u64,
                escrows: r.escrows.0 as u64,
                open_escrows: r.escrows.1 as u64,
                minted: r.minted.to_string(),
                proofs: r.proofs as u64,
                problems: r.problems,
                future_ops: None,
            })
        }
        LedgerRequest::Transfer { to, amount } => {
            let key = key.ok_or_else(|| Error::Control("no key to sign with".into()))?;
            if *amount == 0 {
                return Err(Error::Control(
                    "amount must be a whole number above 0".into(),
                ));
            }
            let op = state.draft(
                key,
                now_ms,
                Body::Transfer {
                    to: *to,
                    amount: *amount,
                },
            );
            checked(state, &op)?;
            let id = op.id();
            let r = ledger
                .insert(op.clone())
                .map_err(|e| Error::Ledger(e.to_string()))?;
            let balance = ledger.state().balance(&key.public());
            return Ok((
                LedgerAnswer::Transferred(Transferred {
                    id: hex::encode(id),
                    applied: matches!(r, Insert::Applied(_)),
                    balance,
                }),
                Some(op),
            ));
        }
    };
    Ok((answer, None))
}
