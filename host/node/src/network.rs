//! `ComputeNetwork`, the submitter side of `/p2pc/task/1`: jobs this node
//! sends to workers, their records on disk, the progress workers report,
//! and the checks on what comes back.
//!
//! Every job has a record in the store's `jobs` keyspace (`job/<id>`: a
//! [`JobInfo`]; `detail/<id>`: its logs and receipts), so jobs survive a
//! restart: one that was still running when the node stopped is marked
//! [`JobState::Lost`] with the reason when the node starts again, never
//! forgotten. Outputs are blobs in the store. Finished jobs are kept for
//! `[jobs] keep`, then pruned with their outputs.
//!
//! Records reach the disk through one writer task that groups whatever is
//! waiting into one commit (one sync for many small jobs). A job's end is
//! reported to waiters as soon as its receipt is verified; its record and
//! output are on disk within one group commit of that, and until then its
//! output is served from memory. Memory is bounded: at most
//! [`MAX_LIVE_JOBS`] running, [`RECENT_JOBS`] finished ones cached; the rest
//! are read from disk when asked for.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use p2pc_crypto::{
    BundleFile, ContentKey, Envelope, PreparedWrap, PublicKey, RequestedLimits, SealPublic,
    TrustPolicy, wrap,
};
use p2pc_ledger::{FUEL_PER_PRICE_UNIT, OpId, TaskHold, cost};
use p2pc_net::{Client, PeerId, RequestFailure};
use p2pc_sandbox::{Limits, LogLevel, LogLine};
use p2pc_store::{Cid, JobWrite, Store};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::attempts::{Effect, Event, Task};
use crate::events::EventKind;
use crate::market::Market;
use crate::messages::{
    ADVERT_KIND, Advert, CallKind, INLINE_BYTES, PROGRESS_KIND, Progress, RECEIPT_KIND, Receipt,
    ReduceInput, SealedKey, TASK_KIND, TaskReply, TaskRequest, TaskSpec, blob_id, check_receipt,
    now_unix_ms, seal_binding,
};
use crate::metrics::Telemetry;
use crate::pay::Payments;
use crate::scores::PeerScores;
use crate::signer::Signer;
use crate::worker::announce;
use crate::{Error, Result};
use p2pc_market::validation::{Verdict, decide};
use p2pc_market::{Candidate, Evidence, Offer, OfferBook, Validation, Want, select};

/// A task silent this long (no progress, no keep-alive) is lost.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// Attempts per task unless a job says otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Shards a job may ask for at most.
pub const MAX_SHARDS: u32 = 1024;
/// Inputs up to this size are stored and sealed on the async thread
/// (no disk, a few microseconds of cipher).
const SMALL_INPUT: usize = 64 << 10;
/// Sealed outputs' keys kept in memory at most (past it they are found in
/// the receipts again).
const RECENT_OUTPUT_KEYS: usize = 4096;
/// Workers with prepared wraps at most; prepared per worker in batches of
/// [`PREPARED_BATCH`] once fewer than [`PREPARED_LOW`] are left.
const PREPARED_READERS: usize = 256;
const PREPARED_BATCH: usize = 16;
const PREPARED_LOW: usize = 4;
/// Jobs running at once on this node, at most; a submission past it is
/// refused with a clear error.
pub const MAX_LIVE_JOBS: usize = 10_000;
/// Finished jobs whose records are cached in memory.
pub const RECENT_JOBS: usize = 1024;
/// Record writes waiting for the writer, at most (submitters wait for
/// room, so memory stays bounded under any load).
const WRITE_QUEUE: usize = 1024;
/// Writes grouped into one commit, at most.
const WRITE_BATCH: usize = 256;
/// How long the writer gathers writes before it commits them: a record
/// reaches the disk at most this much (plus the commit) after its change.
const GROUP_WINDOW: Duration = Duration::from_millis(5);
/// Adverts older than this are ignored.
const ADVERT_TTL_MS: u64 = 120_000;
/// The furthest ahead an offer may say it expires.
const MAX_OFFER_TTL_MS: u64 = 600_000;
/// How far ahead of this node's clock an offer may say it was made: more
/// is a clock far off, or an offer dated ahead so no fresh one replaces it.
const MAX_OFFER_SKEW_MS: u64 = 60_000;
/// Workers' adverts held at most.
const MAX_ADVERTS: usize = 4096;
/// Times a group commit is tried before its records are given up.
const WRITE_TRIES: u32 = 3;
/// How often finished jobs past `[jobs] keep` are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Where a job stands.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "state")]
#[non_exhaustive]
pub enum JobState {
    /// Looking for a worker and sending the task.
    Submitted,
    /// Sent to a worker; waiting for its receipt.
    Running {
        /// The worker's peer id.
        worker: String,
    },
    /// A verified receipt came back.
    Done {
        /// The worker's peer id.
        worker: String,
        /// `ok` or the task error's code.
        outcome: String,
        /// The error's message, when not ok.
        message: String,
        /// The output blob, present in the local store, when ok.
        output: Option<String>,
        /// Output length.
        output_len: u64,
        /// Fuel the worker reports.
        fuel_used: u64,
        /// Peak memory the worker reports.
        peak_memory: u64,
    },
    /// The job could not be completed.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Cancelled by its owner: nothing more was placed, and the holds of
    /// tasks not answered are refunded at their deadlines.
    Cancelled {
        /// Tasks that had finished when it was cancelled.
        finished: u64,
    },
    /// The node stopped while the job ran, so its answer never came.
    Lost {
        /// Why, for people.
        reason: String,
    },
}

impl JobState {
    /// The state's name, as its `state` field spells it.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Submitted => "submitted",
            JobState::Running { .. } => "running",
            JobState::Done { .. } => "done",
            JobState::Failed { .. } => "failed",
            JobState::Cancelled { .. } => "cancelled",
            JobState::Lost { .. } => "lost",
        }
    }

    /// Every state's name.
    pub const NAMES: [&'static str; 6] = [
        "submitted",
        "running",
        "done",
        "failed",
        "cancelled",
        "lost",
    ];

    /// Whether the job has finished, one way or the other.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Done { .. }
                | JobState::Failed { .. }
                | JobState::Lost { .. }
                | JobState::Cancelled { .. }
        )
    }
}

/// How far a job has got, as it reported through `host.progress`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JobProgress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// What the node keeps about one job.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JobInfo {
    /// The job's id (32 hex digits).
    pub id: String,
    /// The bundle's name.
    pub name: String,
    /// The bundle file, as a blob.
    pub bundle: String,
    /// The input, as a blob id.
    pub input: String,
    /// Its length.
    pub input_len: u64,
    /// Arguments after the bundle's own.
    pub args: Vec<String>,
    /// When it was submitted, Unix milliseconds.
    pub submitted_unix_ms: u64,
    /// When it ended, if it has.
    pub finished_unix_ms: Option<u64>,
    /// Where it stands.
    pub status: JobState,
    /// The last progress its worker reported (kept once it ends).
    #[serde(default)]
    pub progress: Option<JobProgress>,
    /// Its tasks, one per attempt.
    pub tasks: Vec<TaskInfo>,
    /// How its answers were checked: `none`, `K-of-N` or `adaptive`.
    #[serde(default)]
    pub validation: String,
    /// Tasks that ran on one worker although the validation wanted more:
    /// too few workers were reachable.
    #[serde(default)]
    pub unreplicated: u64,
    /// Its input and output were sealed: only its workers and this node
    /// read them. `input` then names the sealed input blob.
    #[serde(default)]
    pub sealed: bool,
}

/// One task of a job: one attempt on one worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TaskInfo {
    /// The task's id (32 hex digits).
    pub task_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The worker it went to, once chosen.
    pub worker: Option<String>,
    /// On a paid network, the hold paying for it (its op id, hex).
    #[serde(default)]
    pub escrow: Option<String>,
    /// Credits locked by the hold.
    #[serde(default)]
    pub locked: Option<u64>,
    /// The worker's price, credits per million fuel.
    #[serde(default)]
    pub price: Option<u64>,
    /// What the task cost: the fuel it used at the price, rounded up
    /// (paid once the challenge window closes).
    #[serde(default)]
    pub cost: Option<u64>,
    /// Which step of the job: `run`, `map 3` (shard 3), `reduce`.
    #[serde(default)]
    pub step: String,
    /// `running`, `done`, `lost` (given up: silent past its lease, refused,
    /// or its connection closed) or `failed` (never sent).
    #[serde(default)]
    pub state: String,
    /// The receipt's outcome (`ok` or an error code), once it came.
    #[serde(default)]
    pub outcome: Option<String>,
    /// The error's message, or why the attempt was lost.
    #[serde(default)]
    pub message: Option<String>,
    /// Fuel the worker reports.
    #[serde(default)]
    pub fuel_used: Option<u64>,
}

impl TaskInfo {
    fn new(task_id: String, attempt: u32, step: &str) -> Self {
        Self {
            task_id,
            attempt,
            worker: None,
            escrow: None,
            locked: None,
            price: None,
            cost: None,
            step: step.to_owned(),
            state: "running".into(),
            outcome: None,
            message: None,
            fuel_used: None,
        }
    }
}

/// A job's logs, as its worker's receipt carried them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JobLogs {
    /// The job.
    pub job: String,
    /// Lines the job logged through `host.log`.
    pub logs: Vec<LogLine>,
    /// Lines dropped: past the sandbox's line limit or the receipt's
    /// byte budget.
    pub logs_dropped: u64,
    /// The end of what the job wrote to stderr (lossy UTF-8).
    pub stderr: String,
    /// Each signed receipt, hex: evidence of what the worker attested.
    pub receipts: Vec<String>,
}

/// What to submit.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The signed bundle file's bytes.
    pub bundle: Vec<u8>,
    /// The input.
    pub input: Vec<u8>,
    /// The worker to send it to; otherwise one is chosen.
    pub to: Option<PeerId>,
    /// How long the job may take, from submission to receipt.
    pub timeout: Duration,
    /// Arguments for the program, after the bundle's own.
    pub args: Vec<String>,
    /// Which export to call: `run` unless the job is one map or reduce
    /// call of a map-reduce component (a reduce's input is an encoded
    /// [`ReduceInput`](crate::messages::ReduceInput)).
    pub call: CallKind,
    /// On a paid network, the most the job may lock (and so pay): the
    /// task's fuel limit is cut to what this buys at the worker's price.
    pub budget: Option<u64>,
    /// The highest price accepted, credits per million fuel.
    pub max_price: Option<u64>,
    /// The challenge window the hold carries; the genesis's minimum if
    /// `None`.
    pub window: Option<Duration>,
    /// For a map-reduce component: split the input into at most this many
    /// shards, each a map task on its own worker, then one reduce task.
    /// `None`: one shard.
    pub shards: Option<u32>,
    /// A task silent this long is given up and placed elsewhere
    /// ([`DEFAULT_LEASE`] if `None`).
    pub lease: Option<Duration>,
    /// Attempts per task at most ([`DEFAULT_ATTEMPTS`] if `None`).
    pub max_attempts: Option<u32>,
    /// How answers are checked; `None`: `[market] validation` for a paid
    /// job, none for an unpaid one.
    pub validation: Option<Validation>,
    /// Only workers with at least this reputation score (0 to 1).
    pub min_reputation: Option<f64>,
    /// Seal the input and output so only the chosen workers and this node
    /// read them; `None`: `[jobs] seal_paid` or `seal_unpaid`.
    pub seal: Option<bool>,
    /// The input is this blob of the node's store (and `input` is empty):
    /// a large input is then read from the store as it is sent, never
    /// whole in memory (a sharded job still reads it to split it).
    pub input_blob: Option<Cid>,
}

impl Submission {
    /// A submission of `bundle` with `input`: run once, on a worker
    /// chosen for it, within `timeout`.
    pub fn new(bundle: Vec<u8>, input: Vec<u8>, timeout: Duration) -> Self {
        Self {
            bundle,
            input,
            to: None,
            timeout,
            args: Vec::new(),
            call: CallKind::Run,
            budget: None,
            max_price: None,
            window: None,
            shards: None,
            lease: None,
            max_attempts: None,
            validation: None,
            min_reputation: None,
            seal: None,
            input_blob: None,
        }
    }
}

fn job_key(id: &str) -> Vec<u8> {
    format!("job/{id}").into_bytes()
}

fn detail_key(id: &str) -> Vec<u8> {
    format!("detail/{id}").into_bytes()
}

/// One message to the writer task.
enum Write {
    Job(Box<JobWriteItem>),
    /// Prune records past `[jobs] keep`.
    Prune,
    Flush(oneshot::Sender<()>),
}

/// A job's record, and the logs and output that go with it.
struct JobWriteItem {
    info: JobInfo,
    logs: Option<JobLogs>,
    output: Option<(Cid, Bytes)>,
}

/// A running job: its state for watchers, and what a progress report
/// must match.
struct Live {
    info: JobCell,
    /// Set by [`Network::cancel`].
    cancel: watch::Sender<bool>,
}

/// A running job's record as watchers see it. Every change goes through
/// here, and what changed (the job's state, a task's, the progress) is
/// published as events in the order it happened.
struct JobCell {
    tx: watch::Sender<JobInfo>,
    telemetry: Telemetry,
}

/// The parts of a record events report on.
struct Seen {
    state: &'static str,
    progress: Option<JobProgress>,
    tasks: Vec<TaskSeen>,
}

#[derive(PartialEq)]
struct TaskSeen {
    state: String,
    worker: Option<String>,
    outcome: Option<String>,
    cost: Option<u64>,
}

impl Seen {
    fn of(info: &JobInfo) -> Self {
        Self {
            state: info.status.name(),
            progress: info.progress,
            tasks: info
                .tasks
                .iter()
                .map(|t| TaskSeen {
                    state: t.state.clone(),
                    worker: t.worker.clone(),
                    outcome: t.outcome.clone(),
                    cost: t.cost,
                })
                .collect(),
        }
    }

    /// What changed from `self` to `now`, in the order a reader expects:
    /// a job that ends does so after its tasks.
    fn changes(&self, now: &JobInfo) -> Vec<EventKind> {
        let mut tasks = Vec::new();
        for (i, t) in now.tasks.iter().enumerate() {
            let seen = TaskSeen {
                state: t.state.clone(),
                worker: t.worker.clone(),
                outcome: t.outcome.clone(),
                cost: t.cost,
            };
            if self.tasks.get(i) != Some(&seen) {
                tasks.push(EventKind::TaskState {
                    job: now.id.clone(),
                    task_id: t.task_id.clone(),
                    attempt: t.attempt,
                    step: t.step.clone(),
                    state: t.state.clone(),
                    worker: t.worker.clone(),
                    outcome: t.outcome.clone(),
                    message: t.message.clone(),
                    fuel_used: t.fuel_used,
                    cost: t.cost,
                });
            }
        }
        let mut out = Vec::new();
        let job = (self.state != now.status.name()).then(|| job_event(now));
        let ends = now.status.is_final();
        if !ends {
            out.extend(job.clone());
        }
        out.extend(tasks);
        if let Some(p) = now.progress
            && self.progress != now.progress
        {
            out.push(EventKind::Progress {
                job: now.id.clone(),
                done: p.done,
                total: p.total,
            });
        }
        if ends {
            out.extend(job);
        }
        out
    }
}

fn job_event(info: &JobInfo) -> EventKind {
    let detail = match &info.status {
        JobState::Submitted | JobState::Running { .. } => None,
        JobState::Done {
            outcome, message, ..
        } => Some(if outcome == "ok" {
            "ok".to_owned()
        } else {
            format!("{outcome}: {message}")
        }),
        JobState::Failed { error } => Some(error.clone()),
        JobState::Lost { reason } => Some(reason.clone()),
        JobState::Cancelled { finished } => Some(format!("{finished} tasks had finished")),
    };
    EventKind::JobState {
        job: info.id.clone(),
        name: info.name.clone(),
        state: info.status.name().to_owned(),
        detail,
    }
}

impl JobCell {
    /// A new job's cell; its `submitted` event is published.
    fn new(info: JobInfo, telemetry: Telemetry) -> Self {
        telemetry.events.publish(job_event(&info));
        Self {
            tx: watch::Sender::new(info),
            telemetry,
        }
    }

    fn borrow(&self) -> watch::Ref<'_, JobInfo> {
        self.tx.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<JobInfo> {
        self.tx.subscribe()
    }

    fn send_modify(&self, f: impl FnOnce(&mut JobInfo)) {
        let mut events = Vec::new();
        self.tx.send_modify(|info| {
            let before = Seen::of(info);
            f(info);
            events = before.changes(info);
        });
        for e in events {
            self.telemetry.events.publish(e);
        }
    }

    fn send_replace(&self, info: JobInfo) {
        let events = Seen::of(&self.tx.borrow()).changes(&info);
        if info.status.is_final() {
            self.telemetry
                .metrics
                .jobs_finished
                .get_or_create(&crate::metrics::State {
                    state: info.status.name().to_owned(),
                })
                .inc();
        }
        self.tx.send_replace(info);
        for e in events {
            self.telemetry.events.publish(e);
        }
    }
}

/// A task sent and not yet answered: whom it went to, and when it was
/// last heard from (its lease).
struct Watch {
    job: String,
    worker: PublicKey,
    digest: [u8; 32],
    heard: tokio::time::Instant,
    /// A job of one task shows its task's progress.
    single: bool,
}

/// A handle on the jobs service. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Network {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    store: Store,
    signer: Arc<Signer>,
    keep: Duration,
    /// Whether jobs are sealed when their submission does not say.
    seal_paid: bool,
    seal_unpaid: bool,
    payments: Option<Payments>,
    market: Market,
    scores: PeerScores,
    adverts: Mutex<OfferBook<PeerId, (PublicKey, Advert)>>,
    live: Mutex<HashMap<String, Live>>,
    /// Tasks in flight, by task id.
    watches: Mutex<HashMap<Vec<u8>, Watch>>,
    recent: Mutex<(VecDeque<String>, HashMap<String, JobInfo>)>,
    /// Outputs reported but not yet committed by the writer.
    pending: Mutex<HashMap<Cid, Bytes>>,
    /// The keys of sealed outputs opened lately, by output: `output`
    /// needs not find and verify their receipts again.
    output_keys: Mutex<HashMap<Cid, ContentKey>>,
    /// HPKE encapsulations made ahead for the workers sealed tasks go to,
    /// so a task's wrap costs no public-key operation on its path.
    prepared: Arc<Mutex<HashMap<SealPublic, Prepared>>>,
    /// Logs likewise, by job.
    pending_logs: Mutex<HashMap<String, JobLogs>>,
    /// Records queued but not yet committed, by job: what a reader gets
    /// rather than an older record on disk.
    pending_infos: Mutex<HashMap<String, JobInfo>>,
    /// Set when a commit failed for good: `flush` reports it.
    write_failed: std::sync::atomic::AtomicBool,
    /// Set when the node stops: jobs still running end as lost.
    stopping: std::sync::atomic::AtomicBool,
    writes: mpsc::Sender<Write>,
    /// Jobs with a record, running or finished.
    kept: AtomicUsize,
    telemetry: Telemetry,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Network {
    /// Opens the job records: jobs left running by the last run of the
    /// node are marked lost, finished ones past `keep` are pruned. Starts
    /// the writer and the pruning task.
    #[expect(
        clippy::too_many_arguments,
        reason = "the handles of the services it uses, passed once at start"
    )]
    pub(crate) async fn start(
        client: Client,
        store: Store,
        signer: Arc<Signer>,
        jobs: &crate::config::JobsSection,
        payments: Option<Payments>,
        market: Market,
        scores: PeerScores,
        telemetry: Telemetry,
    ) -> Result<(Self, Vec<JoinHandle<()>>)> {
        let keep = jobs.keep;
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let inner = Arc::new(Inner {
            client,
            store: store.clone(),
            signer,
            keep,
            seal_paid: jobs.seal_paid,
            seal_unpaid: jobs.seal_unpaid,
            payments,
            market,
            scores,
            adverts: Mutex::new(OfferBook::new(MAX_ADVERTS)),
            live: Mutex::new(HashMap::new()),
            watches: Mutex::new(HashMap::new()),
            recent: Mutex::new((VecDeque::new(), HashMap::new())),
            pending: Mutex::new(HashMap::new()),
            output_keys: Mutex::new(HashMap::new()),
            prepared: Arc::new(Mutex::new(HashMap::new())),
            pending_logs: Mutex::new(HashMap::new()),
            pending_infos: Mutex::new(HashMap::new()),
            write_failed: std::sync::atomic::AtomicBool::new(false),
            stopping: std::sync::atomic::AtomicBool::new(false),
            writes,
            kept: AtomicUsize::new(0),
            telemetry,
        });
        let kept = crate::blocking(move || recover(&store, keep)).await?;
        inner.kept.store(kept, Ordering::Relaxed);
        let tasks = vec![
            tokio::spawn(write_loop(inner.clone(), queue)),
            tokio::spawn(prune_loop(inner.clone())),
        ];
        Ok((Self { inner }, tasks))
    }

    /// Jobs with a record.
    pub(crate) fn len(&self) -> usize {
        self.inner.kept.load(Ordering::Relaxed)
    }

    /// Workers whose adverts are held and fresh.
    pub(crate) fn workers(&self) -> Vec<PeerId> {
        lock(&self.inner.adverts)
            .fresh(now_unix_ms())
            .map(|(p, _, _)| *p)
            .collect()
    }

    /// The fresh offers held, with each worker's reputation score.
    pub(crate) fn offers(&self) -> Vec<(PeerId, Advert, Option<f64>)> {
        let held: Vec<(PeerId, Advert)> = lock(&self.inner.adverts)
            .fresh(now_unix_ms())
            .map(|(p, _, (_, a))| (*p, a.clone()))
            .collect();
        let scores = self.inner.market.scores(held.iter().map(|(p, _)| p));
        held.into_iter()
            .zip(scores)
            .map(|((p, a), score)| (p, a, score))
            .collect()
    }

    /// A gossiped offer. One that does not verify, or is not its
    /// source's, scores down the peer that forwarded it, as a bad ledger
    /// op does; one merely old is dropped.
    pub(crate) fn on_advert(
        &self,
        source: Option<PeerId>,
        via: PeerId,
        data: &[u8],
    ) -> p2pc_net::Verdict {
        let scores = &self.inner.scores;
        let Some(source) = source else {
            scores.penalise(via, "unsigned offer");
            return p2pc_net::Verdict::Reject;
        };
        let Ok(envelope) = Envelope::decode_bounded(data) else {
            scores.penalise(via, "malformed offer");
            return p2pc_net::Verdict::Reject;
        };
        let Ok(opened) = envelope.open(ADVERT_KIND) else {
            scores.penalise(via, "offer with a bad signature");
            return p2pc_net::Verdict::Reject;
        };
        // The offer must be signed by the key the gossip source's peer id
        // was derived from.
        if opened.author.peer_id() != source {
            scores.penalise(via, "offer signed by another key");
            return p2pc_net::Verdict::Reject;
        }
        let Ok(advert) = Advert::decode(opened.payload) else {
            scores.penalise(via, "malformed offer");
            return p2pc_net::Verdict::Reject;
        };
        let now = now_unix_ms();
        let Some(offer) = offer_of(&advert) else {
            scores.penalise(via, "offer with an impossible expiry");
            return p2pc_net::Verdict::Reject;
        };
        if offer.issued_ms > now.saturating_add(MAX_OFFER_SKEW_MS) {
            scores.penalise(via, "offer dated in the future");
            return p2pc_net::Verdict::Reject;
        }
        lock(&self.inner.adverts).insert(source, offer, (opened.author, advert), now);
        p2pc_net::Verdict::Accept
    }

    /// Live jobs by state: (submitted, running).
    pub(crate) fn live_states(&self) -> (usize, usize) {
        let live = lock(&self.inner.live);
        let running = live
            .values()
            .filter(|l| matches!(l.info.borrow().status, JobState::Running { .. }))
            .count();
        (live.len() - running, running)
    }

    /// A peer's last connection closed.
    pub(crate) fn on_disconnected(&self, peer: &PeerId) {
        lock(&self.inner.adverts).remove(peer);
    }

    /// A worker's progress report on a task of a running job. Only the
    /// worker the task went to may report on it.
    pub(crate) fn on_progress(&self, peer: PeerId, wire: &[u8]) -> TaskReply {
        let refuse = TaskReply::refusal;
        let Ok(envelope) = Envelope::decode_bounded(wire) else {
            return refuse("malformed", "malformed progress envelope");
        };
        let Ok(opened) = envelope.open(PROGRESS_KIND) else {
            return refuse("bad_signature", "progress report with a bad signature");
        };
        let Ok(report) = Progress::decode(opened.payload) else {
            return refuse("malformed", "malformed progress report");
        };
        let mut watches = lock(&self.inner.watches);
        let Some(w) = watches.get_mut(&report.task_id) else {
            return refuse("unknown_task", "no running task of that id here");
        };
        if w.worker != opened.author || w.worker.peer_id() != peer || report.task_digest != w.digest
        {
            return refuse("wrong_worker", "the task went to another worker");
        }
        w.heard = tokio::time::Instant::now();
        // 0 of 0 is a keep-alive.
        if w.single && report.total > 0 {
            let job = w.job.clone();
            drop(watches);
            if let Some(entry) = lock(&self.inner.live).get(&job) {
                let progress = JobProgress {
                    done: report.done,
                    total: report.total,
                };
                entry
                    .info
                    .send_modify(|info| info.progress = Some(progress));
            }
        }
        TaskReply::default()
    }

    /// A job's record.
    pub(crate) async fn job(&self, id: &str) -> Result<JobInfo> {
        if let Some(info) = self.inner.in_memory(id) {
            return Ok(info);
        }
        let store = self.inner.store.clone();
        let key = job_key(id);
        let record = crate::blocking(move || store.job_record(&key)).await?;
        match record {
            Some(bytes) => decode_info(&bytes),
            None => Err(Error::NoSuchJob(id.to_owned())),
        }
    }

    /// Jobs kept, newest first, at most `limit`.
    pub(crate) async fn jobs(&self, limit: usize) -> Result<Vec<JobInfo>> {
        let store = self.inner.store.clone();
        let mut all: HashMap<String, JobInfo> = crate::blocking(move || -> Result<_> {
            let mut out = HashMap::new();
            for (_, value) in store.job_records(b"job/")? {
                let info = decode_info(&value)?;
                out.insert(info.id.clone(), info);
            }
            Ok(out)
        })
        .await?;
        // Memory is fresher than the disk.
        for (id, info) in &lock(&self.inner.recent).1 {
            all.insert(id.clone(), info.clone());
        }
        for (id, info) in lock(&self.inner.pending_infos).iter() {
            all.insert(id.clone(), info.clone());
        }
        for (id, live) in lock(&self.inner.live).iter() {
            all.insert(id.clone(), live.info.borrow().clone());
        }
        let mut all: Vec<JobInfo> = all.into_values().collect();
        all.sort_by(|a, b| {
            b.submitted_unix_ms
                .cmp(&a.submitted_unix_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        all.truncate(limit);
        Ok(all)
    }

    /// Waits up to `timeout` for a job to finish; returns where it stands.
    pub(crate) async fn wait(&self, id: &str, timeout: Duration) -> Result<JobInfo> {
        let rx = lock(&self.inner.live).get(id).map(|l| l.info.subscribe());
        let Some(mut rx) = rx else {
            return self.job(id).await;
        };
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|i| i.status.is_final())
                .await
                .map(|i| i.clone())
        })
        .await;
        match waited {
            Ok(Ok(info)) => Ok(info),
            // The job ended and left the live table between the two looks.
            Ok(Err(_)) => self.job(id).await,
            Err(_) => Ok(rx.borrow().clone()),
        }
    }

    /// A job's logs.
    pub(crate) async fn logs(&self, id: &str) -> Result<JobLogs> {
        let info = self.job(id).await?;
        if let Some(logs) = lock(&self.inner.pending_logs).get(id) {
            return Ok(logs.clone());
        }
        let store = self.inner.store.clone();
        let key = detail_key(id);
        let record = crate::blocking(move || store.job_record(&key)).await?;
        match record {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Io(format!("job {id}'s logs are corrupt: {e}"))),
            // Still running, or it ended before a receipt came.
            None => Ok(JobLogs {
                job: info.id,
                ..JobLogs::default()
            }),
        }
    }

    /// A finished job's output bytes.
    pub(crate) async fn output(&self, id: &str) -> Result<Bytes> {
        let info = self.job(id).await?;
        let JobState::Done {
            output: Some(cid), ..
        } = &info.status
        else {
            return Err(Error::Submit(format!(
                "job {id} has no output ({})",
                describe(&info.status)
            )));
        };
        let cid: Cid = cid
            .parse()
            .map_err(|_| Error::Submit(format!("job {id}'s record names a bad output id")))?;
        let pending = lock(&self.inner.pending).get(&cid).cloned();
        let bytes = match pending {
            Some(bytes) => bytes,
            None => {
                let store = self.inner.store.clone();
                crate::blocking(move || store.get_bytes(&cid)).await?.into()
            }
        };
        if !info.sealed {
            return Ok(bytes);
        }
        // Sealed: the key is in the receipt that names this output,
        // wrapped for this node.
        let cached = lock(&self.inner.output_keys).get(&cid).cloned();
        let key = match cached {
            Some(key) => key,
            None => self.output_key_of(id, cid).await?,
        };
        let id = id.to_owned();
        let plain = crate::blocking(move || {
            p2pc_crypto::seal::open_bytes(&key, &bytes)
                .map_err(|e| Error::Submit(format!("job {id}'s sealed output: {e}")))
        });
        Ok(plain.await?.into())
    }

    /// The key of job `id`'s sealed output `cid`, from the receipt that
    /// names it.
    async fn output_key_of(&self, id: &str, cid: Cid) -> Result<ContentKey> {
        let logs = self.logs(id).await?;
        logs
            .receipts
            .iter()
            .filter_map(|wire| {
                let wire = hex::decode(wire).ok()?;
                let opened = Envelope::decode_bounded(&wire).ok()?;
                let opened = opened.open(RECEIPT_KIND).ok()?;
                let receipt = Receipt::decode(opened.payload).ok()?;
                (receipt.output == cid.as_bytes()).then(|| (receipt, opened.author.peer_id()))
            })
            .find_map(|(receipt, worker)| self.inner.output_key(id, &receipt, &worker).ok())
            .ok_or_else(|| {
                Error::Submit(format!(
                    "job {id}'s output is sealed and no receipt kept for it has a key this node opens"
                ))
            })
    }

    /// The node is stopping: every job still running ends as lost (its
    /// answer cannot come back to a node that is gone), and every record
    /// is written before this returns.
    pub(crate) async fn stop(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        let running: Vec<(String, JobState)> = lock(&self.inner.live)
            .iter()
            .map(|(id, l)| (id.clone(), l.info.borrow().status.clone()))
            .collect();
        for (id, status) in running {
            let reason = lost_reason(&status);
            self.inner
                .finish(&id, JobState::Lost { reason }, None, None)
                .await;
        }
        if let Err(e) = self.flush().await {
            warn!(error = %e, "job records not all written at shutdown");
        }
    }

    /// Waits until every record written so far is on disk, or says why
    /// some could not be written.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.inner.writes.send(Write::Flush(tx)).await.is_err() || rx.await.is_err() {
            return Err(Error::Io("the job record writer has stopped".into()));
        }
        if self.inner.write_failed.load(Ordering::Relaxed) {
            return Err(Error::Io(
                "some job records could not be written (see the node's log)".into(),
            ));
        }
        Ok(())
    }

    /// Cancels a running job: nothing more is placed, tasks running are
    /// given up on, and their holds are refunded at their deadlines.
    pub(crate) fn cancel(&self, id: &str) -> Result<()> {
        let running = lock(&self.inner.live)
            .get(id)
            .map(|live| live.cancel.send_replace(true))
            .is_some();
        if running {
            return Ok(());
        }
        match self.inner.in_memory(id) {
            Some(_) => Err(Error::Submit(format!(
                "job {id} is not running: it has ended"
            ))),
            None => Err(Error::NoSuchJob(id.to_owned())),
        }
    }

    /// Submits a job; returns its id at once.
    pub(crate) async fn submit(&self, submission: Submission) -> Result<String> {
        // Check the bundle here first, so a bad one fails at once with the
        // bundle's own error rather than as a worker's refusal.
        let verified = BundleFile::from_bytes(&submission.bundle)
            .and_then(|f| f.verify(&TrustPolicy::Any, p2pc_crypto::now_unix()))
            .map_err(|e| Error::Submit(format!("the bundle is not valid: {e}")))?;
        p2pc_types::argv(&verified.manifest.args, &submission.args)
            .map_err(|e| Error::Submit(format!("the job's arguments: {e}")))?;
        let timeout_ms = u64::try_from(submission.timeout.as_millis()).unwrap_or(u64::MAX);
        let now = now_unix_ms();
        let deadline = now
            .checked_add(timeout_ms)
            .ok_or_else(|| Error::Submit(format!("a timeout of {timeout_ms} ms is too long")))?;
        if lock(&self.inner.live).len() >= MAX_LIVE_JOBS {
            return Err(Error::Submit(format!(
                "this node already runs {MAX_LIVE_JOBS} jobs; wait for some to finish"
            )));
        }
        // The bundle is stored once, however many jobs use it. The input is
        // stored once the job is known to be sealed or not (a sealed job's
        // plaintext is never stored).
        let bundle = blob_id(&submission.bundle);
        let sharded =
            verified.manifest.world == "p2pc:job/map-reduce" && submission.call == CallKind::Run;
        if submission.input_blob.is_some() && !submission.input.is_empty() {
            return Err(Error::Submit(
                "a submission names its input as bytes or as a blob, not both".into(),
            ));
        }
        let store = self.inner.store.clone();
        let bundle_bytes = submission.bundle;
        let (input_blob, input_bytes) = (submission.input_blob, submission.input);
        let (stored, source, input_bytes, input_len) = crate::blocking(move || -> Result<_> {
            let stored = !store.has(&bundle)?;
            if stored {
                store.put_bytes(&bundle_bytes)?;
            }
            Ok(match input_blob {
                None => {
                    let len = input_bytes.len() as u64;
                    (stored, None, input_bytes, len)
                }
                Some(cid) => {
                    let len = match store.info(&cid) {
                        Ok(info) => info.len,
                        Err(p2pc_store::Error::NotFound(_)) => {
                            return Err(Error::NotFound(format!(
                                "no blob {cid} on this node: upload the input first"
                            )));
                        }
                        Err(e) => return Err(e.into()),
                    };
                    // Shards are cut from the whole input.
                    let bytes = if sharded {
                        store.get_bytes(&cid)?
                    } else {
                        Vec::new()
                    };
                    (stored, Some(cid), bytes, len)
                }
            })
        })
        .await?;
        if stored {
            announce(&self.inner.client, bundle);
        }
        let source = match source {
            Some(cid) if !sharded => Source::Stored(cid),
            _ => Source::Bytes(input_bytes),
        };
        let job_id = random_id()?;
        let requested = verified.manifest.limits.unwrap_or_default();
        let shards = match (submission.shards, sharded) {
            (Some(n), false) if n > 1 => {
                return Err(Error::Submit(format!(
                    "--shards needs a map-reduce component; {} is {}",
                    verified.manifest.name, verified.manifest.world
                )));
            }
            (Some(0), _) => return Err(Error::Submit("--shards must be at least 1".into())),
            (Some(n), _) if n > MAX_SHARDS => {
                return Err(Error::Submit(format!(
                    "--shards {n} is more than {MAX_SHARDS}"
                )));
            }
            (n, true) => Some(n.unwrap_or(1) as usize),
            (_, false) => None,
        };
        let tasks_in_job = match (&source, shards) {
            (Source::Bytes(bytes), Some(n)) => p2pc_types::split_at_lines(bytes, n).len() + 1,
            _ => 1,
        };
        let terms = Terms {
            to: submission.to,
            // A job's budget is shared by its tasks alike.
            budget: submission
                .budget
                .map(|b| b / u64::try_from(tasks_in_job).unwrap_or(u64::MAX).max(1)),
            max_price: submission.max_price,
            window: submission.window,
            min_reputation: submission.min_reputation,
        };
        let cancel_tx = watch::Sender::new(false);
        let plan = Arc::new(JobPlan {
            cancelled: cancel_tx.subscribe(),
            job: job_id.clone(),
            bundle,
            requested,
            args: submission.args.clone(),
            deadline,
            terms,
            lease: submission.lease.unwrap_or(DEFAULT_LEASE),
            max_attempts: submission.max_attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1) as usize,
            single: shards.is_none(),
            busy: Mutex::new(HashMap::new()),
            validation: std::sync::OnceLock::new(),
            sealed: std::sync::OnceLock::new(),
        });
        // A job that cannot be placed or paid fails here, before anything
        // is sent or locked, and leaves no record.
        let first_call = if shards.is_some() {
            CallKind::Map
        } else {
            submission.call
        };
        // Placement looks at the task's limits, not its input.
        let probe = plan.spec(first_call, Cid([0; 32]), None, vec![0; 16]);
        let chosen = self
            .inner
            .place(&probe, &plan.terms, &HashSet::new(), &plan.busy)
            .await?;
        if let (Some(paid), Some(pay)) = (&chosen.paid, &self.inner.payments) {
            let need = paid.locked.saturating_mul(tasks_in_job as u64);
            let available = pay.replica().available(self.inner.signer.public()).await?;
            if tasks_in_job > 1 && available < need {
                return Err(Error::InsufficientCredits(format!(
                    "not enough credits: the job's {tasks_in_job} tasks lock {need} in all \
                     ({} each) and this account has {available} available; nothing was sent",
                    paid.locked
                )));
            }
        }
        // Paid jobs are checked by default (`[market] validation`); a
        // `k-of-n` job needs its n workers now, or fails before anything
        // is sent.
        let validation = submission.validation.unwrap_or(if chosen.paid.is_some() {
            self.inner.market.default_validation()
        } else {
            Validation::None
        });
        let _ = plan.validation.set(validation);
        let sealed = submission.seal.unwrap_or(if chosen.paid.is_some() {
            self.inner.seal_paid
        } else {
            self.inner.seal_unpaid
        });
        let _ = plan.sealed.set(sealed);
        if sealed && chosen.seal.is_none() {
            unreserve(&plan.busy, &chosen.worker);
            return Err(Error::Submit(format!(
                "worker {} takes no sealed task (its offer names no seal key); submit with \
                 seal off, or to another worker",
                chosen.worker
            )));
        }
        if let Validation::Quorum { n, .. } = validation {
            let heard = self.workers().len();
            if submission.to.is_some() && n > 1 {
                unreserve(&plan.busy, &chosen.worker);
                return Err(Error::Submit(format!(
                    "--validate {validation} runs each task on {n} workers; --to names one"
                )));
            }
            if heard < usize::from(n) {
                unreserve(&plan.busy, &chosen.worker);
                return Err(Error::Submit(format!(
                    "--validate {validation} needs {n} distinct workers; this node hears offers \
                     from {heard}"
                )));
            }
        }
        if shards.is_some() {
            // Only a probe: each shard is placed on its own.
            unreserve(&plan.busy, &chosen.worker);
        }
        // The record names the input as given until it is stored (sealed,
        // if the job is), which the job's own task does: a large input
        // takes a while, and the submission answers at once.
        let input = match &source {
            Source::Bytes(bytes) => blob_id(bytes),
            Source::Stored(cid) => *cid,
        };
        let info = JobInfo {
            id: job_id.clone(),
            name: verified.manifest.name.clone(),
            bundle: bundle.to_string(),
            input: input.to_string(),
            input_len,
            args: submission.args.clone(),
            submitted_unix_ms: now,
            finished_unix_ms: None,
            status: JobState::Submitted,
            progress: None,
            tasks: Vec::new(),
            validation: validation.to_string(),
            unreplicated: 0,
            sealed,
        };
        let state = JobCell::new(info.clone(), self.inner.telemetry.clone());
        {
            // Checked again where it counts: other submissions ran since.
            let mut live = lock(&self.inner.live);
            if live.len() >= MAX_LIVE_JOBS {
                return Err(Error::Submit(format!(
                    "this node already runs {MAX_LIVE_JOBS} jobs; wait for some to finish"
                )));
            }
            live.insert(
                job_id.clone(),
                Live {
                    info: state,
                    cancel: cancel_tx,
                },
            );
        }
        self.inner.kept.fetch_add(1, Ordering::Relaxed);
        self.inner.write(info, None, None).await;
        let inner = self.inner.clone();
        let job = job_id.clone();
        let call = submission.call;
        tokio::spawn(async move {
            let ran = match (shards, source) {
                (Some(n), Source::Bytes(bytes)) => inner.run_sharded(&plan, &bytes, n).await,
                (_, source) => match inner.prepare_input(source, sealed).await {
                    Ok(input) => {
                        if let Some(live) = lock(&inner.live).get(&job) {
                            live.info.send_modify(|i| i.input = input.blob.to_string());
                        }
                        let task = inner
                            .run_checked(&plan, "run", call, input, Some(chosen))
                            .await;
                        task.ended
                    }
                    Err(e) => {
                        unreserve(&plan.busy, &chosen.worker);
                        Err(e)
                    }
                },
            };
            if inner.stopping.load(Ordering::Relaxed) {
                // `stop` has ended the job as lost.
                return;
            }
            let (end, logs, output) = match ran {
                _ if *plan.cancelled.borrow() => {
                    let finished = lock(&inner.live).get(&job).map_or(0, |l| {
                        l.info
                            .borrow()
                            .tasks
                            .iter()
                            .filter(|t| t.state == "done")
                            .count()
                    });
                    (
                        JobState::Cancelled {
                            finished: finished as u64,
                        },
                        None,
                        None,
                    )
                }
                Ok(done) => done,
                Err(e) => (
                    JobState::Failed {
                        error: e.to_string(),
                    },
                    None,
                    None,
                ),
            };
            info!(%job, state = ?end, "job finished");
            inner.finish(&job, end, logs, output).await;
        });
        Ok(job_id)
    }
}

/// A job that ended: its state, its logs, and an output that came inline.
type Ended = (JobState, Option<JobLogs>, Option<(Cid, Bytes)>);

/// How a job is to be placed and paid.
struct Terms {
    to: Option<PeerId>,
    budget: Option<u64>,
    max_price: Option<u64>,
    window: Option<Duration>,
    min_reputation: Option<f64>,
}

/// Where a task goes.
struct Placement {
    worker: PeerId,
    key: PublicKey,
    paid: Option<Paid>,
    /// The key its sealed tasks' inputs are wrapped for, from its advert.
    seal: Option<SealPublic>,
}

/// Wraps prepared for one worker's seal key.
#[derive(Default)]
struct Prepared {
    wraps: Vec<PreparedWrap>,
    refilling: bool,
}

/// A task's input as the submitter sends it.
#[derive(Clone)]
struct TaskInput {
    /// The blob workers are sent: the sealed blob, for a sealed task.
    blob: Cid,
    /// Its bytes, when small enough to travel in the task.
    inline: Option<Vec<u8>>,
    /// Its content key, for a sealed task.
    key: Option<ContentKey>,
}

/// Where a task's input comes from.
enum Source {
    Bytes(Vec<u8>),
    /// A blob of the store.
    Stored(Cid),
}

/// What one task of a job came to.
struct TaskOutcome {
    ended: Result<Ended>,
    /// Its output's bytes, when it succeeded and they were asked for (a
    /// map's, for the reduce).
    output: Option<Vec<u8>>,
    /// A replica's answer, its payment left to the caller (which compares
    /// it with the other replicas' first).
    answer: Option<ReplicaAnswer>,
}

/// What a replica answered, with what proves it and what pays for it.
struct ReplicaAnswer {
    worker: PeerId,
    receipt: Receipt,
    /// The signed receipt and task envelopes.
    receipt_wire: Vec<u8>,
    task_wire: Vec<u8>,
    escrow: Option<(Payments, OpId, u64)>,
    deadline: u64,
}

impl ReplicaAnswer {
    /// What is compared: outcome, output and fuel.
    fn key(&self) -> (String, Vec<u8>, u64, u64) {
        self.receipt.answer()
    }
}

/// The replicas of one task: the workers they run on, which none of
/// their later attempts may use.
struct Replicas {
    workers: Mutex<HashSet<PeerId>>,
}

/// A verified answer: the job state it makes, the receipt and its bytes.
type Answer = (Ended, Receipt, Vec<u8>);

impl TaskOutcome {
    fn failed(e: impl Into<Error>) -> Self {
        Self {
            ended: Err(e.into()),
            output: None,
            answer: None,
        }
    }

    /// `end`, with its output's bytes read (and opened with `key`, if
    /// sealed) if `want_bytes`.
    async fn from_ended(
        inner: &Inner,
        end: Ended,
        want_bytes: bool,
        key: Option<ContentKey>,
    ) -> Self {
        let mut output = None;
        if want_bytes
            && let JobState::Done {
                outcome,
                output: Some(cid),
                ..
            } = &end.0
            && outcome == "ok"
        {
            output = match &end.2 {
                Some((_, bytes)) => Some(bytes.to_vec()),
                None => match cid.parse::<Cid>() {
                    Ok(cid) => {
                        let store = inner.store.clone();
                        match crate::blocking(move || store.get_bytes(&cid)).await {
                            Ok(b) => Some(b),
                            Err(e) => return Self::failed(e),
                        }
                    }
                    Err(_) => None,
                },
            };
            if let (Some(key), Some(sealed)) = (&key, &output) {
                match p2pc_crypto::seal::open_bytes(key, sealed) {
                    Ok(plain) => output = Some(plain),
                    Err(e) => {
                        return Self::failed(Error::Submit(format!("the sealed output: {e}")));
                    }
                }
            }
        }
        Self {
            ended: Ok(end),
            output,
            answer: None,
        }
    }
}

/// An attempt sent.
struct Sent {
    worker: PeerId,
    task_id: Vec<u8>,
    /// The signed task envelope.
    task_wire: Vec<u8>,
    deadline: u64,
    /// Its hold: the payments service, the escrow, the window.
    escrow: Option<(Payments, OpId, u64)>,
    price: Option<u64>,
    /// Lost to this node (silent, refused, closed); an answer may still come.
    given_up: bool,
}

/// What the tasks of one job share.
struct JobPlan {
    job: String,
    bundle: Cid,
    requested: RequestedLimits,
    args: Vec<String>,
    deadline: u64,
    terms: Terms,
    lease: Duration,
    max_attempts: usize,
    /// One task (not a map-reduce job): its progress is the job's.
    single: bool,
    /// Workers running this job's tasks, and how many each.
    busy: Mutex<HashMap<PeerId, usize>>,
    /// True once the owner cancels the job.
    cancelled: watch::Receiver<bool>,
    /// How its answers are checked (set once the first placement shows
    /// whether the job is paid).
    validation: std::sync::OnceLock<Validation>,
    /// Whether its inputs and outputs are sealed (set with `validation`).
    sealed: std::sync::OnceLock<bool>,
}

impl JobPlan {
    /// A task of this job calling `call` on `input`.
    fn spec(
        &self,
        call: CallKind,
        input: Cid,
        inline: Option<Vec<u8>>,
        task_id: Vec<u8>,
    ) -> TaskSpec {
        TaskSpec {
            task_id,
            bundle: self.bundle.as_bytes().to_vec(),
            input: input.as_bytes().to_vec(),
            fuel: self.requested.fuel,
            memory: self.requested.memory_bytes,
            timeout_ms: self.requested.timeout_ms,
            output: self.requested.output_bytes,
            deadline_unix_ms: self.deadline,
            worker: Vec::new(),
            inline_input: inline.map(Bytes::from).unwrap_or_default(),
            args: self.args.clone(),
            call: call as i32,
            lease_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
            job: self.job.as_bytes().to_vec(),
            input_key: None,
        }
    }
}

/// The advert in a signed envelope, if `peer`'s key signed it.
fn open_advert(wire: &[u8], peer: PeerId) -> Option<Advert> {
    let opened = Envelope::decode_bounded(wire).ok()?;
    let opened = opened.open(ADVERT_KIND).ok()?;
    (opened.author.peer_id() == peer).then(|| Advert::decode(opened.payload).ok())?
}

/// The market's view of an advert; `None` if its expiry is impossible
/// (before it was made, or further ahead than any offer may hold).
pub(crate) fn offer_of(a: &Advert) -> Option<Offer> {
    let expires = if a.expires_unix_ms == 0 {
        a.issued_unix_ms.saturating_add(ADVERT_TTL_MS)
    } else {
        a.expires_unix_ms
    };
    if expires < a.issued_unix_ms || expires - a.issued_unix_ms > MAX_OFFER_TTL_MS {
        return None;
    }
    Some(Offer {
        price: a.price,
        free_slots: a.free_slots,
        slots: a.slots,
        max_fuel: a.max_fuel,
        max_memory: a.max_memory,
        load_permille: a.load_permille,
        collateral: a.collateral,
        issued_ms: a.issued_unix_ms,
        expires_ms: expires,
        draining: a.draining,
    })
}

/// Frees one of a worker's places among a job's busy workers.
fn unreserve(busy: &Mutex<HashMap<PeerId, usize>>, worker: &PeerId) {
    if let Some(n) = lock(busy).get_mut(worker) {
        *n = n.saturating_sub(1);
    }
}

/// 16 random bytes, hex: a job's id.
fn random_id() -> Result<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| Error::Io(format!("no randomness: {e}")))?;
    Ok(hex::encode(id))
}

/// 16 random bytes: a task's id.
fn random_task_id() -> Vec<u8> {
    let mut id = [0u8; 16];
    // Without randomness a clock-derived id still differs per task.
    if getrandom::fill(&mut id).is_err() {
        id[..16].copy_from_slice(&u128::from(now_unix_ms()).to_be_bytes());
    }
    id.to_vec()
}

/// What a paid task's hold carries.
struct Paid {
    arbiter: PublicKey,
    price: u64,
    fuel: u64,
    locked: u64,
    collateral: u64,
    window_ms: u64,
}

impl Inner {
    /// Queues a record write; waits only for room in the queue.
    /// The caller has put what readers need meanwhile where they look
    /// (the live table, or the pending maps: see `finish`).
    async fn write(&self, info: JobInfo, logs: Option<JobLogs>, output: Option<(Cid, Bytes)>) {
        if self
            .writes
            .send(Write::Job(Box::new(JobWriteItem { info, logs, output })))
            .await
            .is_err()
        {
            warn!("the job record writer has stopped; a record was not written");
        }
    }

    /// Records a job's end, tells its watchers, and moves it from the live
    /// table to the cache of recent jobs.
    async fn finish(
        &self,
        job: &str,
        end: JobState,
        logs: Option<JobLogs>,
        output: Option<(Cid, Bytes)>,
    ) {
        // Only one caller takes the job out of the live table (the job's
        // own task, or `stop`); the other finds it gone. It is put where
        // readers look next (pending, recent) while the live table is
        // still locked, so no reader misses it in between.
        let (live, info) = {
            let mut table = lock(&self.live);
            let Some(live) = table.remove(job) else {
                return;
            };
            let mut info = live.info.borrow().clone();
            info.status = end;
            info.finished_unix_ms = Some(now_unix_ms());
            lock(&self.pending_infos).insert(job.to_owned(), info.clone());
            if let Some((cid, bytes)) = &output {
                lock(&self.pending).insert(*cid, bytes.clone());
            }
            if let Some(logs) = &logs {
                lock(&self.pending_logs).insert(job.to_owned(), logs.clone());
            }
            let mut recent = lock(&self.recent);
            recent.0.push_back(job.to_owned());
            recent.1.insert(job.to_owned(), info.clone());
            while recent.0.len() > RECENT_JOBS {
                if let Some(old) = recent.0.pop_front() {
                    recent.1.remove(&old);
                }
            }
            (live, info)
        };
        live.info.send_replace(info.clone());
        self.write(info, logs, output).await;
    }

    /// A job's record from memory: running, queued for the disk, or
    /// recently finished.
    fn in_memory(&self, id: &str) -> Option<JobInfo> {
        if let Some(live) = lock(&self.live).get(id) {
            return Some(live.info.borrow().clone());
        }
        if let Some(info) = lock(&self.pending_infos).get(id) {
            return Some(info.clone());
        }
        lock(&self.recent).1.get(id).cloned()
    }

    /// Stores a task's input as workers will be sent it: sealed under a
    /// fresh key if `sealed` (a stored input streamed through the sealer,
    /// never whole in memory), and announced unless it travels inline.
    async fn prepare_input(&self, source: Source, sealed: bool) -> Result<TaskInput> {
        let key = sealed.then(ContentKey::generate);
        // A small input touches no disk and takes microseconds to seal:
        // done here, not on a blocking thread.
        let source = match source {
            Source::Bytes(b) if b.len() <= SMALL_INPUT => {
                let inline = match &key {
                    Some(k) => p2pc_crypto::seal::seal_bytes(k, &b),
                    None => b,
                };
                return Ok(TaskInput {
                    blob: blob_id(&inline),
                    inline: Some(inline),
                    key,
                });
            }
            other => other,
        };
        let store = self.store.clone();
        let k = key.clone();
        let (blob, inline) = crate::blocking(move || -> Result<(Cid, Option<Vec<u8>>)> {
            let small = |len: u64| len <= INLINE_BYTES as u64;
            Ok(match (source, k) {
                (Source::Bytes(b), None) => {
                    let blob = blob_id(&b);
                    if small(b.len() as u64) {
                        (blob, Some(b))
                    } else {
                        if !store.has(&blob)? {
                            store.put_bytes(&b)?;
                        }
                        (blob, None)
                    }
                }
                (Source::Bytes(b), Some(k)) => {
                    let sealed = p2pc_crypto::seal::seal_bytes(&k, &b);
                    let blob = blob_id(&sealed);
                    if small(sealed.len() as u64) {
                        (blob, Some(sealed))
                    } else {
                        store.put_bytes(&sealed)?;
                        (blob, None)
                    }
                }
                (Source::Stored(cid), None) => {
                    if small(store.info(&cid)?.len) {
                        (cid, Some(store.get_bytes(&cid)?))
                    } else {
                        (cid, None)
                    }
                }
                (Source::Stored(cid), Some(k)) => {
                    let plain = store.get(&cid)?;
                    let info = store.put(p2pc_crypto::SealingReader::new(plain, &k))?;
                    if small(info.len) {
                        (info.id, Some(store.get_bytes(&info.id)?))
                    } else {
                        (info.id, None)
                    }
                }
            })
        })
        .await?;
        if inline.is_none() {
            announce(&self.client, blob);
        }
        Ok(TaskInput { blob, inline, key })
    }

    /// A wrap prepared for `reader`, if one is ready; starts preparing more
    /// off the async threads when few are left.
    fn take_prepared(&self, reader: SealPublic) -> Option<PreparedWrap> {
        let mut pools = lock(&self.prepared);
        if pools.len() >= PREPARED_READERS && !pools.contains_key(&reader) {
            pools.clear();
        }
        let pool = pools.entry(reader).or_default();
        let taken = pool.wraps.pop();
        if !pool.refilling && pool.wraps.len() < PREPARED_LOW {
            pool.refilling = true;
            let pools = self.prepared.clone();
            tokio::task::spawn_blocking(move || {
                let fresh: Vec<PreparedWrap> = (0..PREPARED_BATCH)
                    .map(|_| PreparedWrap::new(&reader))
                    .collect();
                let mut pools = lock(&pools);
                let pool = pools.entry(reader).or_default();
                pool.wraps.extend(fresh);
                pool.refilling = false;
            });
        }
        taken
    }

    /// The content key of the sealed output `receipt` names: wrapped for
    /// this node by `worker`, for this job's task.
    fn output_key(&self, job: &str, receipt: &Receipt, worker: &PeerId) -> Result<ContentKey> {
        let worker = PublicKey::from_peer_id(worker)
            .ok_or_else(|| Error::Submit(format!("{worker} is not an Ed25519 peer id")))?;
        let wrapped = receipt.output_key.as_ref().ok_or_else(|| {
            Error::Submit("the receipt of a sealed task names no output key".into())
        })?;
        let blob: [u8; 32] = receipt
            .output
            .as_slice()
            .try_into()
            .map_err(|_| Error::Submit("the receipt names no output blob".into()))?;
        let (me, task) = (self.signer.public(), &receipt.task_id);
        let reply = self.signer.seal_key().reply_key(&seal_binding(
            "input",
            job.as_bytes(),
            task,
            &me,
            &worker,
        ));
        let binding = seal_binding("output", job.as_bytes(), task, &me, &worker);
        reply
            .unwrap(&wrapped.to_wrapped(), &blob, &binding)
            .map_err(|e| Error::Submit(format!("the sealed output's key: {e}")))
    }

    /// Checks a sealed task's output opens with the key the worker wrapped
    /// for this node and is the output its receipt's digest names (the
    /// digest replicas are compared on).
    async fn check_sealed_output(
        &self,
        job: &str,
        receipt: &Receipt,
        worker: PeerId,
        input_key: &ContentKey,
        cid: Cid,
        inline: &Option<(Cid, Bytes)>,
    ) -> Result<()> {
        let rejected =
            |why: String| Error::Submit(format!("receipt from {worker} rejected: {why}"));
        let key = self
            .output_key(job, receipt, &worker)
            .map_err(|e| rejected(e.to_string()))?;
        let mut hasher = input_key.digester();
        let (len, hasher) = match inline {
            Some((_, bytes)) => {
                let plain = p2pc_crypto::seal::open_bytes(&key, bytes)
                    .map_err(|e| rejected(format!("its sealed output: {e}")))?;
                hasher.update(&plain);
                (plain.len() as u64, hasher)
            }
            None => {
                let (store, key) = (self.store.clone(), key.clone());
                crate::blocking(move || -> Result<(u64, blake3::Hasher)> {
                    let sealed = store.get(&cid)?;
                    let mut plain = p2pc_crypto::OpeningReader::new(sealed, &key);
                    let len = std::io::copy(&mut plain, &mut hasher).map_err(|e| {
                        Error::Submit(match p2pc_crypto::seal::seal_error(&e) {
                            Some(seal) => format!("its sealed output: {seal}"),
                            None => format!("cannot read its output: {e}"),
                        })
                    })?;
                    Ok((len, hasher))
                })
                .await
                .map_err(|e| rejected(e.to_string()))?
            }
        };
        if len != receipt.output_len
            || hasher.finalize().as_bytes()[..] != receipt.output_digest[..]
        {
            return Err(rejected(
                "its sealed output is not the output its receipt's digest names".into(),
            ));
        }
        let mut keys = lock(&self.output_keys);
        if keys.len() >= RECENT_OUTPUT_KEYS {
            keys.clear();
        }
        keys.insert(cid, key);
        Ok(())
    }

    /// Chooses the worker for a task and, on a paid network, what it will
    /// cost: fails at once if nothing suits or the credits are short.
    async fn place(
        &self,
        spec: &TaskSpec,
        terms: &Terms,
        avoid: &HashSet<PeerId>,
        busy: &Mutex<HashMap<PeerId, usize>>,
    ) -> Result<Placement> {
        let (worker, advert) = match terms.to {
            Some(p) if avoid.contains(&p) => {
                return Err(Error::Submit(format!(
                    "worker {p} was given up on, and the job names it with --to: not placed elsewhere"
                )));
            }
            Some(p) => {
                *lock(busy).entry(p).or_insert(0) += 1;
                (p, self.advert_of(p).await)
            }
            None => {
                let fuel = if spec.fuel == 0 {
                    Limits::DEFAULT.fuel
                } else {
                    spec.fuel
                };
                self.choose_worker(terms, fuel, avoid, busy).await?
            }
        };
        let placed = async {
            let key = PublicKey::from_peer_id(&worker)
                .ok_or_else(|| Error::Submit(format!("{worker} is not an Ed25519 peer id")))?;
            let paid = match (&self.payments, &advert) {
                (Some(pay), Some(a)) if a.price > 0 && a.network == pay.network_id() => {
                    Some(self.price_task(pay, key, a, spec, terms).await?)
                }
                _ => None,
            };
            let seal = advert
                .as_ref()
                .and_then(|a| SealPublic::from_bytes(&a.seal_key).ok());
            Ok(Placement {
                worker,
                key,
                paid,
                seal,
            })
        }
        .await;
        if placed.is_err() {
            unreserve(busy, &worker);
        }
        placed
    }

    /// The terms of a paid task on `worker`, checked against the job's
    /// bounds and the account's credits.
    async fn price_task(
        &self,
        pay: &Payments,
        worker: PublicKey,
        advert: &Advert,
        spec: &TaskSpec,
        terms: &Terms,
    ) -> Result<Paid> {
        let price = advert.price;
        if let Some(max) = terms.max_price
            && price > max
        {
            return Err(Error::Submit(format!(
                "worker {} asks {price} credits per million fuel, above --max-price {max}",
                worker.peer_id()
            )));
        }
        let arbiter = self.arbiter_for(worker, advert).ok_or_else(|| {
            Error::Submit(format!(
                "no arbiter is reachable that worker {} accepts: a paid job needs a third node \
                 with [arbiter] enabled = true, listed in the worker's [market] arbiters (or the \
                 genesis's); it accepts {}",
                worker.peer_id(),
                advert.arbiters.len()
            ))
        })?;
        let default_fuel = Limits::DEFAULT.fuel.min(advert.max_fuel.max(1));
        let mut fuel = if spec.fuel == 0 {
            default_fuel
        } else {
            spec.fuel
        };
        if let Some(budget) = terms.budget {
            // The most fuel the budget buys at this price, rounded down.
            let most = u128::from(budget) * u128::from(FUEL_PER_PRICE_UNIT) / u128::from(price);
            let most = u64::try_from(most).unwrap_or(u64::MAX);
            if most == 0 {
                return Err(Error::Submit(format!(
                    "a budget of {budget} credits buys no fuel at {price} credits per million fuel"
                )));
            }
            fuel = fuel.min(most);
        }
        let locked = cost(price, fuel, FUEL_PER_PRICE_UNIT)
            .ok_or_else(|| Error::Submit("the task's price overflows".into()))?;
        let me = self.signer.public();
        let available = pay.replica().available(me).await?;
        if available < locked {
            return Err(Error::InsufficientCredits(format!(
                "not enough credits: the task's hold needs {locked} ({fuel} fuel at {price} \
                 credits per million fuel) and this account has {available} available; nothing \
                 was sent"
            )));
        }
        let min_window = pay.replica().min_window_ms();
        let window_ms = match terms.window {
            Some(w) => u64::try_from(w.as_millis()).unwrap_or(u64::MAX),
            None => min_window,
        };
        if window_ms < min_window {
            return Err(Error::Submit(format!(
                "a challenge window of {window_ms} ms is shorter than the network's minimum, {min_window} ms"
            )));
        }
        Ok(Paid {
            arbiter,
            price,
            fuel,
            locked,
            collateral: advert.collateral,
            window_ms,
        })
    }

    /// An arbiter `worker` accepts whose fresh advert says it arbitrates,
    /// other than this node and the worker.
    fn arbiter_for(&self, worker: PublicKey, advert: &Advert) -> Option<PublicKey> {
        arbiter_in(
            &lock(&self.adverts),
            self.signer.public(),
            worker,
            advert,
            now_unix_ms(),
        )
    }

    /// The advert of `peer`: the one heard, or the one it describes.
    async fn advert_of(&self, peer: PeerId) -> Option<Advert> {
        if let Some((_, (_, a))) = lock(&self.adverts).get(&peer, now_unix_ms()) {
            return Some(a.clone());
        }
        self.describe(peer).await
    }

    /// Asks `peer` for its signed advert.
    async fn describe(&self, peer: PeerId) -> Option<Advert> {
        let request = TaskRequest {
            describe: true,
            ..TaskRequest::default()
        }
        .encode_to_vec();
        let answer = self
            .client
            .request_task(peer, request, Duration::from_secs(3))
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                warn!(%peer, error = %e, "describe failed");
                return None;
            }
        };
        let reply = TaskReply::decode(answer.as_slice()).ok()?;
        open_advert(&reply.advert, peer)
    }

    /// Runs one task of a job to its end: places it, watches its lease,
    /// and on a loss places it again elsewhere (up to the job's attempts),
    /// settling or refunding each attempt's hold (`attempts::Task` decides).
    /// `first` is a placement already made for the first attempt.
    async fn run_task(
        self: &Arc<Self>,
        plan: &Arc<JobPlan>,
        step: &str,
        call: CallKind,
        input: TaskInput,
        mut first: Option<Placement>,
        replica: Option<&Replicas>,
    ) -> TaskOutcome {
        if *plan.cancelled.borrow() {
            return TaskOutcome::failed(Error::Submit("the job was cancelled".into()));
        }
        let mut cancelled = plan.cancelled.clone();
        let mut machine = Task::new(plan.max_attempts);
        let (tx, mut rx) = mpsc::channel::<(usize, Result<Answer>)>(plan.max_attempts);
        let mut running: HashMap<usize, Sent> = HashMap::new();
        let mut avoid: HashSet<PeerId> = HashSet::new();
        let mut ended: HashMap<usize, Answer> = HashMap::new();
        let mut last_error = Error::Submit("the task was never placed".into());
        let mut effects = std::collections::VecDeque::from([Effect::Place]);
        let mut done: Option<usize> = None;
        loop {
            while let Some(effect) = effects.pop_front() {
                match effect {
                    Effect::Place => {
                        let spec =
                            plan.spec(call, input.blob, input.inline.clone(), random_task_id());
                        let n = machine.attempts().len();
                        // A replica's later attempts avoid its siblings' workers.
                        let mut avoiding = avoid.clone();
                        if let Some(r) = replica {
                            avoiding.extend(lock(&r.workers).iter().copied());
                        }
                        match self
                            .send_attempt(
                                plan,
                                step,
                                spec,
                                input.key.as_ref(),
                                first.take(),
                                &avoiding,
                                n,
                                tx.clone(),
                            )
                            .await
                        {
                            Ok(sent) => {
                                if let Some(r) = replica {
                                    lock(&r.workers).insert(sent.worker);
                                }
                                machine.start(sent.escrow.is_some());
                                running.insert(n, sent);
                            }
                            Err(e) => {
                                // Nothing was sent: count it as a lost try,
                                // and report the first attempt's own error
                                // if there was one.
                                warn!(job = %plan.job, step, error = %e, "task not placed");
                                let n = machine.start(false);
                                self.record(&plan.job, |t| {
                                    t.push(TaskInfo {
                                        state: "failed".into(),
                                        message: Some(e.to_string()),
                                        ..TaskInfo::new(String::new(), n as u32 + 1, step)
                                    })
                                });
                                if n == 0 {
                                    last_error = e;
                                }
                                effects.extend(machine.on(Event::Lost { attempt: n }));
                            }
                        }
                    }
                    // A replica's hold waits for the comparison (`run_checked`).
                    Effect::Settle(_) if replica.is_some() => {}
                    Effect::Settle(n) => {
                        if let (Some(sent), Some((_, receipt, _))) =
                            (running.get(&n), ended.get(&n))
                            && let Some((pay, escrow, window)) = &sent.escrow
                        {
                            let (pay, escrow, window) = (pay.clone(), *escrow, *window);
                            let (worker, receipt) = (sent.worker, receipt.clone());
                            tokio::spawn(async move {
                                pay.settle(worker, escrow, window, &receipt).await;
                            });
                        }
                    }
                    // Scheduled for its deadline when the attempt was lost
                    // (`refund_later`); skipped if it is settled first.
                    Effect::Refund(_) => {}
                    Effect::Done(n) => done = Some(n),
                    Effect::Compare { first, late } => {
                        let out = |n: usize| {
                            ended.get(&n).map(|(_, r, _)| {
                                let (outcome, output, ..) = r.answer();
                                (outcome, output)
                            })
                        };
                        if out(first) != out(late) {
                            warn!(job = %plan.job, step, first, late,
                                "two workers gave different answers to one task");
                            self.record(&plan.job, |t| {
                                if let Some(ti) = t
                                    .iter_mut()
                                    .rev()
                                    .find(|ti| ti.step == step && ti.attempt == late as u32 + 1)
                                {
                                    ti.message = Some(format!(
                                        "its answer differs from attempt {}'s",
                                        first + 1
                                    ));
                                }
                            });
                        }
                    }
                    // Seen below, through `machine.failed()`.
                    Effect::Fail => {}
                }
            }
            if let Some(n) = done {
                // Answers still to come (from attempts given up on) are
                // settled or refunded in the background.
                let running_done = running.remove(&n);
                let rest: Vec<(usize, Sent)> = running.drain().collect();
                if !rest.is_empty() {
                    let this = self.clone();
                    let job = plan.job.clone();
                    tokio::spawn(async move {
                        this.finish_stragglers(&job, rest, rx).await;
                    });
                }
                let (end, receipt, receipt_wire) = ended.remove(&n).expect("a done attempt ended");
                let sent = running_done.expect("a done attempt was sent");
                if replica.is_none() {
                    self.market.evidence(
                        sent.worker,
                        *blake3::hash(&receipt_wire).as_bytes(),
                        Evidence::Success { replicated: false },
                    );
                }
                // A map's sealed output is opened for the reduce.
                let key = match (&input.key, plan.single) {
                    (Some(_), false) => match self.output_key(&plan.job, &receipt, &sent.worker) {
                        Ok(k) => Some(k),
                        Err(e) => return TaskOutcome::failed(e),
                    },
                    _ => None,
                };
                let mut out = TaskOutcome::from_ended(self, end, !plan.single, key).await;
                if replica.is_some() {
                    out.answer = Some(ReplicaAnswer {
                        worker: sent.worker,
                        receipt,
                        receipt_wire,
                        task_wire: sent.task_wire,
                        escrow: sent.escrow,
                        deadline: sent.deadline,
                    });
                }
                return out;
            }
            if machine.failed() && running.values().all(|s| s.given_up) {
                self.refund_all(running.into_values());
                return TaskOutcome::failed(last_error);
            }
            // The next event: an answer, or a lease running out.
            let expiry = running
                .iter()
                .filter(|(_, s)| !s.given_up)
                .filter_map(|(n, s)| {
                    lock(&self.watches)
                        .get(&s.task_id)
                        .map(|w| (w.heard + plan.lease, *n))
                })
                .min();
            // A second past the job's deadline, so an attempt's own timeout
            // (the same deadline) reports first, with its worker named.
            let deadline = tokio::time::Instant::now()
                + Duration::from_millis(plan.deadline.saturating_sub(now_unix_ms()))
                + Duration::from_secs(1);
            let wake = expiry.map_or(deadline, |(at, _)| at.min(deadline));
            tokio::select! {
                _ = cancelled.changed() => {
                    if *cancelled.borrow() {
                        // Nothing more is placed; what runs is given up on
                        // and refunded at its deadline.
                        for sent in running.values() {
                            self.release(plan, &sent.worker);
                        }
                        self.refund_all(running.into_values());
                        return TaskOutcome::failed(Error::Submit("the job was cancelled".into()));
                    }
                }
                answer = rx.recv() => {
                    let Some((n, answer)) = answer else { continue };
                    let Some(sent) = running.get_mut(&n) else { continue };
                    lock(&self.watches).remove(&sent.task_id);
                    match answer {
                        Ok((end, receipt, wire)) => {
                            let in_time = now_unix_ms() <= sent.deadline;
                            self.record_end(&plan.job, step, n, Ok(&receipt), sent.price);
                            ended.insert(n, (end, receipt, wire));
                            effects.extend(machine.on(Event::Receipt { attempt: n, in_time }));
                        }
                        Err(e) => {
                            self.record_end(&plan.job, step, n, Err(&e), sent.price);
                            if !sent.given_up {
                                sent.given_up = true;
                                avoid.insert(sent.worker);
                                self.release(plan, &sent.worker);
                            }
                            self.refund_later(sent);
                            last_error = e;
                            effects.extend(machine.on(Event::Lost { attempt: n }));
                        }
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        // The job's timeout: nothing more can be placed.
                        self.refund_all(running.into_values());
                        return TaskOutcome::failed(Error::Submit(format!(
                            "the job's timeout passed before its {step} task finished ({last_error})"
                        )));
                    }
                    if let Some((_, n)) = expiry
                        && let Some(sent) = running.get_mut(&n)
                        && lock(&self.watches)
                            .get(&sent.task_id)
                            .is_some_and(|w| w.heard + plan.lease <= now)
                    {
                        // Silent for a lease: lost. Its answer may still
                        // come (and be paid) before its deadline.
                        warn!(job = %plan.job, step, worker = %sent.worker,
                            "task silent for its lease; placing it elsewhere");
                        sent.given_up = true;
                        avoid.insert(sent.worker);
                        self.release(plan, &sent.worker);
                        self.record(&plan.job, |t| {
                            if let Some(ti) = t
                                .iter_mut()
                                .rev()
                                .find(|ti| ti.step == step && ti.attempt == n as u32 + 1)
                            {
                                ti.state = "lost".into();
                                ti.message = Some(format!(
                                    "silent for its lease ({:?})",
                                    plan.lease
                                ));
                            }
                        });
                        last_error = Error::Submit(format!(
                            "worker {} went silent for its lease",
                            sent.worker
                        ));
                        effects.extend(machine.on(Event::Lost { attempt: n }));
                    }
                }
            }
        }
    }

    /// Runs one task of a job under the job's validation: on one worker,
    /// or on several distinct workers whose answers are compared
    /// (`p2pc_market::validation`). Agreeing replicas are paid and gain a
    /// valid result; a minority is proved wrong: not paid (its hold is
    /// refunded at the deadline, with the arbiter shown the evidence, and
    /// its collateral goes to this node) and scored `cheat_detected`.
    async fn run_checked(
        self: &Arc<Self>,
        plan: &Arc<JobPlan>,
        step: &str,
        call: CallKind,
        input: TaskInput,
        first: Option<Placement>,
    ) -> TaskOutcome {
        let validation = plan.validation.get().copied().unwrap_or_default();
        if validation == Validation::None || plan.terms.to.is_some() {
            return self.run_task(plan, step, call, input, first, None).await;
        }
        let probe = plan.spec(call, input.blob, None, vec![0; 16]);
        let first = match first {
            Some(p) => p,
            None => match self
                .place(&probe, &plan.terms, &HashSet::new(), &plan.busy)
                .await
            {
                Ok(p) => p,
                Err(e) => return TaskOutcome::failed(e),
            },
        };
        let replicate = match validation {
            Validation::Adaptive => self.market.replicate(&first.worker),
            _ => true,
        };
        let (k, n) = validation.plan(replicate);
        let cap = validation.cap();
        let replicas = Arc::new(Replicas {
            workers: Mutex::new(HashSet::from([first.worker])),
        });
        let mut placements = vec![first];
        placements.extend(
            self.place_replicas(plan, step, &probe, &replicas, n - 1)
                .await,
        );
        if placements.len() < n {
            if let Validation::Quorum { .. } = validation {
                for p in &placements {
                    unreserve(&plan.busy, &p.worker);
                }
                return TaskOutcome::failed(Error::Submit(format!(
                    "--validate {validation} needs {n} distinct workers for {step}; only {} could \
                     be placed",
                    placements.len()
                )));
            }
            // Adaptive on too small a network: one worker, and the record
            // says so.
            for p in placements.drain(1..) {
                unreserve(&plan.busy, &p.worker);
            }
            warn!(job = %plan.job, step, "too few workers to replicate; running unreplicated");
            self.count_unreplicated(plan);
            return self
                .run_task(plan, step, call, input, placements.pop(), None)
                .await;
        }
        if n == 1 {
            return self
                .run_task(plan, step, call, input, placements.pop(), None)
                .await;
        }
        // Each replica runs in a task of its own and reports on `rx`; the
        // task is decided as soon as `k` answers agree, and replicas still
        // running are judged when they answer (`judge_late`).
        let (tx, mut rx) = mpsc::channel::<(usize, TaskOutcome)>(cap);
        let spawn = |i: usize, p: Placement| {
            let (this, plan, replicas, tx) =
                (self.clone(), plan.clone(), replicas.clone(), tx.clone());
            let (label, input) = (format!("{step}, replica {}", i + 1), input.clone());
            tokio::spawn(async move {
                let out = this
                    .run_task(&plan, &label, call, input, Some(p), Some(&*replicas))
                    .await;
                let _ = tx.send((i, out)).await;
            });
        };
        let mut placed = placements.len();
        for (i, p) in placements.into_iter().enumerate() {
            spawn(i, p);
        }
        let mut ended: Vec<(usize, TaskOutcome)> = Vec::new();
        loop {
            let Some(next) = rx.recv().await else {
                return TaskOutcome::failed(Error::Submit(format!("{step}: the replicas stopped")));
            };
            ended.push(next);
            let keys: Vec<_> = ended
                .iter()
                .map(|(_, o)| o.answer.as_ref().map(ReplicaAnswer::key))
                .collect();
            let running = placed - ended.len();
            let verdict = decide(&keys, k, cap.saturating_sub(running));
            match verdict {
                Verdict::Agreed { winners, minority } => {
                    let winner = keys[winners[0]].clone();
                    let agreeing: Vec<(Vec<u8>, Vec<u8>)> = winners
                        .iter()
                        .filter_map(|w| ended[*w].1.answer.as_ref())
                        .map(|a| (a.task_wire.clone(), a.receipt_wire.clone()))
                        .collect();
                    for &w in &winners {
                        if let Some(a) = &ended[w].1.answer {
                            self.reward(a, true);
                        }
                    }
                    for &m in &minority {
                        if let Some(a) = &ended[m].1.answer {
                            self.convict(&plan.job, a, &agreeing).await;
                        }
                    }
                    if running > 0 {
                        let (this, job) = (self.clone(), plan.job.clone());
                        tokio::spawn(async move {
                            this.judge_late(&job, rx, running, winner, agreeing).await;
                        });
                    }
                    let won = winners[0];
                    return ended.swap_remove(won).1;
                }
                // Replicas still running may yet make a quorum.
                _ if running > 0 => {}
                Verdict::More(more) => {
                    let extra = self
                        .place_replicas(plan, step, &probe, &replicas, more)
                        .await;
                    if extra.is_empty() {
                        return self
                            .unchecked_or_failed(plan, step, validation, ended, k)
                            .await;
                    }
                    info!(job = %plan.job, step, more = extra.len(), "replicas disagree; asking more workers");
                    for p in extra {
                        spawn(placed, p);
                        placed += 1;
                    }
                }
                Verdict::NoQuorum => {
                    return self
                        .unchecked_or_failed(plan, step, validation, ended, k)
                        .await;
                }
            }
        }
    }

    /// Places up to `more` replicas on workers none of the task's replicas
    /// use yet.
    async fn place_replicas(
        &self,
        plan: &JobPlan,
        step: &str,
        probe: &TaskSpec,
        replicas: &Replicas,
        more: usize,
    ) -> Vec<Placement> {
        let mut placed = Vec::new();
        for _ in 0..more {
            let taken = lock(&replicas.workers).clone();
            match self.place(probe, &plan.terms, &taken, &plan.busy).await {
                Ok(p) => {
                    lock(&replicas.workers).insert(p.worker);
                    placed.push(p);
                }
                Err(e) => {
                    debug!(job = %plan.job, step, error = %e, "no further replica placed");
                    break;
                }
            }
        }
        placed
    }

    /// Counts a task that ran on one worker though its validation wanted
    /// more.
    fn count_unreplicated(&self, plan: &JobPlan) {
        if let Some(live) = lock(&self.live).get(&plan.job) {
            live.info.send_modify(|i| i.unreplicated += 1);
        }
    }

    /// A replica whose answer agrees: it is paid, and gains a valid result
    /// if it was compared (`checked`).
    fn reward(&self, a: &ReplicaAnswer, checked: bool) {
        self.market.evidence(
            a.worker,
            *blake3::hash(&a.receipt_wire).as_bytes(),
            Evidence::Success {
                replicated: checked,
            },
        );
        if let Some((pay, escrow, window)) = &a.escrow {
            let (pay, escrow, window) = (pay.clone(), *escrow, *window);
            let (worker, receipt) = (a.worker, a.receipt.clone());
            tokio::spawn(async move {
                pay.settle(worker, escrow, window, &receipt).await;
            });
        }
    }

    /// A replica proved wrong by `agreeing` (task and receipt envelopes):
    /// scored `cheat_detected`, its record says so, and its hold goes to
    /// the arbiter with the proof, to be refunded at the deadline.
    async fn convict(&self, job: &str, a: &ReplicaAnswer, agreeing: &[(Vec<u8>, Vec<u8>)]) {
        warn!(%job, worker = %a.worker, "a replica's answer differs from the quorum's: cheat detected");
        self.market.evidence(
            a.worker,
            *blake3::hash(&a.receipt_wire).as_bytes(),
            Evidence::Cheat,
        );
        let task_id = hex::encode(&a.receipt.task_id);
        let n = agreeing.len();
        self.amend(job, |t| {
            if let Some(ti) = t.iter_mut().rev().find(|ti| ti.task_id == task_id) {
                ti.state = "rejected".into();
                ti.message = Some(format!(
                    "its answer differs from the {n} agreeing replicas': cheat_detected, not paid"
                ));
                ti.cost = None;
            }
        })
        .await;
        if let Some((pay, escrow, _)) = &a.escrow {
            let (pay, escrow, deadline) = (pay.clone(), *escrow, a.deadline);
            let (task, receipt) = (a.task_wire.clone(), a.receipt_wire.clone());
            let agreeing = agreeing.to_vec();
            tokio::spawn(async move {
                pay.report_cheat(escrow, deadline, task, receipt, agreeing)
                    .await;
            });
        }
    }

    /// Replicas that answer after their task was decided: paid if they
    /// agree with the winners, convicted if they do not.
    async fn judge_late(
        self: Arc<Self>,
        job: &str,
        mut rx: mpsc::Receiver<(usize, TaskOutcome)>,
        mut running: usize,
        winner: Option<(String, Vec<u8>, u64, u64)>,
        agreeing: Vec<(Vec<u8>, Vec<u8>)>,
    ) {
        while running > 0 {
            let Some((_, out)) = rx.recv().await else {
                return;
            };
            running -= 1;
            let Some(a) = &out.answer else { continue };
            if Some(a.key()) == winner {
                self.reward(a, true);
            } else {
                self.convict(job, a, &agreeing).await;
            }
        }
    }

    /// No quorum and no more workers to ask. Under adaptive validation,
    /// answers that agree stand unreplicated (a replica was lost and none
    /// could replace it: the network is too small now); otherwise the task
    /// fails, and each replica that answered is paid (nothing proves which
    /// is wrong).
    async fn unchecked_or_failed(
        &self,
        plan: &JobPlan,
        step: &str,
        validation: Validation,
        mut ended: Vec<(usize, TaskOutcome)>,
        k: usize,
    ) -> TaskOutcome {
        let keys: Vec<_> = ended
            .iter()
            .map(|(_, o)| o.answer.as_ref().map(ReplicaAnswer::key))
            .collect();
        let answered: Vec<usize> = (0..keys.len()).filter(|i| keys[*i].is_some()).collect();
        if validation == Validation::Adaptive
            && let Some(&first) = answered.first()
            && answered.iter().all(|i| keys[*i] == keys[first])
        {
            warn!(job = %plan.job, step, "a replica was lost and none could replace it; the answer stands unreplicated");
            self.count_unreplicated(plan);
            for &i in &answered {
                if let Some(a) = &ended[i].1.answer {
                    self.reward(a, false);
                }
            }
            return ended.swap_remove(first).1;
        }
        for (_, o) in &ended {
            if let Some(a) = &o.answer {
                self.reward(a, false);
            }
        }
        let why = ended
            .into_iter()
            .find_map(|(_, o)| o.ended.err())
            .map(|e| format!("; {e}"))
            .unwrap_or_default();
        warn!(job = %plan.job, step, answered = answered.len(), "no quorum");
        TaskOutcome::failed(Error::Submit(format!(
            "{step}: no {k} replicas agree ({} answered, all different, and no more \
             workers could be asked){why}",
            answered.len()
        )))
    }

    /// Changes a job's task list, running or finished (a finished job's
    /// record is written again).
    async fn amend(&self, job: &str, f: impl FnOnce(&mut Vec<TaskInfo>)) {
        if let Some(live) = lock(&self.live).get(job) {
            live.info.send_modify(|info| f(&mut info.tasks));
            return;
        }
        let info = match self.in_memory(job) {
            Some(info) => Some(info),
            None => {
                let store = self.store.clone();
                let key = job_key(job);
                crate::blocking(move || store.job_record(&key))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| decode_info(&b).ok())
            }
        };
        let Some(mut info) = info else { return };
        f(&mut info.tasks);
        lock(&self.pending_infos).insert(job.to_owned(), info.clone());
        if let Some(cached) = lock(&self.recent).1.get_mut(job) {
            *cached = info.clone();
        }
        self.write(info, None, None).await;
    }

    /// Answers of attempts given up on, after the task was done: an answer
    /// in time is paid (its hold's refund is then skipped), any other ends
    /// in a refund at the deadline, already scheduled.
    async fn finish_stragglers(
        self: &Arc<Self>,
        job: &str,
        mut rest: Vec<(usize, Sent)>,
        mut rx: mpsc::Receiver<(usize, Result<Answer>)>,
    ) {
        for (_, sent) in &rest {
            self.refund_later(sent);
        }
        while !rest.is_empty() {
            let Some((n, answer)) = rx.recv().await else {
                break;
            };
            let Some(i) = rest.iter().position(|(m, _)| *m == n) else {
                continue;
            };
            let (_, sent) = rest.swap_remove(i);
            lock(&self.watches).remove(&sent.task_id);
            if let (Ok((_, receipt, _)), Some((pay, escrow, window))) = (answer, &sent.escrow)
                && now_unix_ms() <= sent.deadline
            {
                debug!(%job, worker = %sent.worker, "a worker given up on answered in time: paid");
                pay.settle(sent.worker, *escrow, *window, &receipt).await;
            }
        }
    }

    /// Schedules the refund of a lost attempt's hold at its deadline
    /// (skipped if its answer comes in time and is settled first).
    fn refund_later(&self, sent: &Sent) {
        if let Some((pay, escrow, _)) = &sent.escrow {
            pay.refund_at_deadline(*escrow, sent.deadline);
        }
    }

    fn refund_all(&self, sent: impl Iterator<Item = Sent>) {
        for s in sent {
            lock(&self.watches).remove(&s.task_id);
            self.refund_later(&s);
        }
    }

    /// Frees a worker's place among a job's busy workers.
    fn release(&self, plan: &JobPlan, worker: &PeerId) {
        unreserve(&plan.busy, worker);
    }

    /// Places, pays for and sends one attempt of a task; its answer comes
    /// back on `tx` as attempt `n`.
    #[allow(
        clippy::too_many_arguments,
        reason = "one attempt's inputs, each named"
    )]
    async fn send_attempt(
        self: &Arc<Self>,
        plan: &Arc<JobPlan>,
        step: &str,
        mut spec: TaskSpec,
        input_key: Option<&ContentKey>,
        placement: Option<Placement>,
        avoid: &HashSet<PeerId>,
        n: usize,
        tx: mpsc::Sender<(usize, Result<Answer>)>,
    ) -> Result<Sent> {
        let placement = match placement {
            Some(p) => p,
            None => self.place(&spec, &plan.terms, avoid, &plan.busy).await?,
        };
        let Placement {
            worker,
            key,
            paid,
            seal,
        } = placement;
        spec.worker = key.to_bytes().to_vec();
        if let Some(content) = input_key {
            // The input's key, wrapped for this worker and this task only;
            // a replacement worker gets a wrap of its own.
            let Some(seal) = seal else {
                self.release(plan, &worker);
                return Err(Error::Submit(format!(
                    "worker {worker} takes no sealed task (its offer names no seal key)"
                )));
            };
            let blob: [u8; 32] = spec
                .input
                .as_slice()
                .try_into()
                .map_err(|_| Error::Submit("the task's input is not a blob name".into()))?;
            let binding = seal_binding(
                "input",
                &spec.job,
                &spec.task_id,
                &self.signer.public(),
                &key,
            );
            // The output's key comes back under a reply key derived from
            // this binding, which this node can derive again at any time.
            let reply = self.signer.seal_key().reply_key(&binding);
            let wrapped = match self.take_prepared(seal) {
                Some(prepared) => prepared.wrap(content, Some(&reply), &blob, &binding),
                None => wrap(&seal, content, Some(&reply), &blob, &binding),
            };
            spec.input_key = Some(SealedKey::from_wrapped(wrapped));
        }
        if let Some(p) = &paid {
            spec.fuel = p.fuel;
        }
        let task_wire = self
            .signer
            .seal(TASK_KIND, spec.encode_to_vec())
            .encode_to_vec();
        let digest = *blake3::hash(&task_wire).as_bytes();
        let mut info = TaskInfo::new(hex::encode(&spec.task_id), n as u32 + 1, step);
        info.worker = Some(worker.to_string());
        // The hold goes first: without it the worker refuses the task.
        let (escrow, hold) = match (&paid, &self.payments) {
            (Some(p), Some(pay)) => {
                let op = pay
                    .hold(TaskHold {
                        worker: key,
                        arbiter: p.arbiter,
                        price: p.price,
                        fuel_limit: p.fuel,
                        window_ms: p.window_ms,
                        collateral: p.collateral,
                        task: digest,
                        deadline_ms: spec.deadline_unix_ms,
                    })
                    .await;
                let op = match op {
                    Ok(op) => op,
                    Err(e) => {
                        self.release(plan, &worker);
                        return Err(Error::Submit(format!("the task's hold was refused: {e}")));
                    }
                };
                info.escrow = Some(hex::encode(op.id()));
                info.locked = Some(p.locked);
                info.price = Some(p.price);
                (Some((pay.clone(), op.id(), p.window_ms)), op.to_bytes())
            }
            _ => (None, Vec::new()),
        };
        lock(&self.watches).insert(
            spec.task_id.clone(),
            Watch {
                job: plan.job.clone(),
                worker: key,
                digest,
                heard: tokio::time::Instant::now(),
                single: plan.single,
            },
        );
        self.record(&plan.job, |t| t.push(info));
        let info = lock(&self.live).get(&plan.job).map(|live| {
            live.info.send_modify(|i| {
                i.status = JobState::Running {
                    worker: worker.to_string(),
                }
            });
            live.info.borrow().clone()
        });
        if let Some(info) = info {
            // Best effort: a record not yet written only means a restart
            // reports the job as lost before it was sent, not after.
            let write = Write::Job(Box::new(JobWriteItem {
                info,
                logs: None,
                output: None,
            }));
            if let Err(mpsc::error::TrySendError::Full(_)) = self.writes.try_send(write) {
                debug!(job = %plan.job, "record writer busy; the running state is not written");
            }
        }
        let request = TaskRequest {
            task: task_wire.clone(),
            hold,
            ..TaskRequest::default()
        }
        .encode_to_vec();
        let this = self.clone();
        let (job, task_spec, task_wire2) = (plan.job.clone(), spec.clone(), task_wire.clone());
        let input_key = input_key.cloned();
        let timeout = Duration::from_millis(spec.deadline_unix_ms.saturating_sub(now_unix_ms()));
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let answer = this
                .exchange(
                    &job,
                    &task_spec,
                    worker,
                    key,
                    &task_wire2,
                    request,
                    input_key,
                    started,
                    timeout,
                )
                .await;
            let _ = tx.send((n, answer)).await;
        });
        Ok(Sent {
            worker,
            task_id: spec.task_id,
            task_wire,
            deadline: spec.deadline_unix_ms,
            escrow,
            price: paid.as_ref().map(|p| p.price),
            given_up: false,
        })
    }

    /// Records how attempt `n` of `step` ended.
    fn record_end(
        &self,
        job: &str,
        step: &str,
        n: usize,
        end: Result<&Receipt, &Error>,
        price: Option<u64>,
    ) {
        self.record(job, |t| {
            let Some(ti) = t
                .iter_mut()
                .rev()
                .find(|ti| ti.step == step && ti.attempt == n as u32 + 1)
            else {
                return;
            };
            match end {
                Ok(r) => {
                    if ti.state == "running" {
                        ti.state = "done".into();
                    }
                    ti.outcome = Some(r.outcome.clone());
                    if !r.message.is_empty() {
                        ti.message = Some(r.message.clone());
                    }
                    ti.fuel_used = Some(r.fuel_used);
                    ti.cost = price.and_then(|p| cost(p, r.fuel_used, FUEL_PER_PRICE_UNIT));
                }
                Err(e) => {
                    ti.state = "lost".into();
                    ti.message.get_or_insert_with(|| e.to_string());
                }
            }
        });
    }

    /// Changes a running job's task list.
    fn record(&self, job: &str, f: impl FnOnce(&mut Vec<TaskInfo>)) {
        if let Some(live) = lock(&self.live).get(job) {
            live.info.send_modify(|info| f(&mut info.tasks));
        }
    }

    /// A map-reduce job: one map task per shard, each on its own worker
    /// where there are enough, then one reduce task over their outputs in
    /// shard order (`p2pc_sandbox::mapreduce`, as `p2pctl run` does it).
    async fn run_sharded(
        self: &Arc<Self>,
        plan: &Arc<JobPlan>,
        input: &[u8],
        shards: usize,
    ) -> Result<Ended> {
        use p2pc_sandbox::mapreduce::{self, Step};
        let total = p2pc_types::split_at_lines(input, shards).len() as u64 + 1;
        let finished = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (this, plan2, counter) = (self.clone(), plan.clone(), finished.clone());
        let call = move |step: Step, call: p2pc_sandbox::Call| {
            let (this, plan, counter) = (this.clone(), plan2.clone(), counter.clone());
            async move {
                let (label, kind, input) = match call {
                    p2pc_sandbox::Call::Map(shard) => (
                        step.to_string().replace("map of shard ", "map "),
                        CallKind::Map,
                        shard,
                    ),
                    p2pc_sandbox::Call::Reduce(parts) => (
                        "reduce".to_owned(),
                        CallKind::Reduce,
                        ReduceInput { parts }.encode_to_vec(),
                    ),
                    p2pc_sandbox::Call::Run(input) => ("run".to_owned(), CallKind::Run, input),
                };
                let sealed = plan.sealed.get().copied().unwrap_or(false);
                let out = match this.prepare_input(Source::Bytes(input), sealed).await {
                    Ok(input) => this.run_checked(&plan, &label, kind, input, None).await,
                    Err(e) => TaskOutcome::failed(e),
                };
                let done = counter.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(live) = lock(&this.live).get(&plan.job) {
                    live.info.send_modify(|i| {
                        i.progress = Some(JobProgress { done, total });
                    });
                }
                out
            }
        };
        let output = |t: &TaskOutcome| t.output.clone();
        let steps = mapreduce::run(input, shards, call, output).await;
        let failed = mapreduce::failure(&steps, output);
        // Fuel adds up; peak memory is the most any one task held.
        let (mut fuel, mut peak) = (0u64, 0u64);
        let mut logs = JobLogs {
            job: plan.job.clone(),
            ..JobLogs::default()
        };
        let mut worker = String::new();
        for t in steps.all() {
            if let Ok((
                JobState::Done {
                    fuel_used,
                    peak_memory,
                    worker: w,
                    ..
                },
                l,
                _,
            )) = &t.ended
            {
                fuel = fuel.saturating_add(*fuel_used);
                peak = peak.max(*peak_memory);
                worker.clone_from(w);
                if let Some(l) = l {
                    logs.logs.extend(l.logs.iter().cloned());
                    logs.logs_dropped = logs.logs_dropped.saturating_add(l.logs_dropped);
                    logs.stderr.push_str(&l.stderr);
                    logs.receipts.extend(l.receipts.iter().cloned());
                }
            }
        }
        let step_of = |s: Step| match s {
            Step::Map(i) => steps.maps.get(i),
            Step::Reduce => steps.reduce.as_ref(),
        };
        if let Some(step) = failed {
            return match step_of(step).map(|t| &t.ended) {
                Some(Ok((
                    JobState::Done {
                        outcome, message, ..
                    },
                    _,
                    _,
                ))) => Ok((
                    JobState::Done {
                        worker,
                        outcome: outcome.clone(),
                        message: format!("{step}: {message}"),
                        output: None,
                        output_len: 0,
                        fuel_used: fuel,
                        peak_memory: peak,
                    },
                    Some(logs),
                    None,
                )),
                Some(Err(e)) => Err(Error::Submit(format!("{step}: {e}"))),
                _ => Err(Error::Submit(format!("{step} did not run"))),
            };
        }
        let reduce = steps.reduce.as_ref().expect("no failure: the reduce ran");
        let Ok((
            JobState::Done {
                output, output_len, ..
            },
            _,
            inline,
        )) = &reduce.ended
        else {
            return Err(Error::Submit("the reduce ended without an answer".into()));
        };
        Ok((
            JobState::Done {
                worker,
                outcome: "ok".into(),
                message: String::new(),
                output: output.clone(),
                output_len: *output_len,
                fuel_used: fuel,
                peak_memory: peak,
            },
            Some(logs),
            inline.clone(),
        ))
    }

    /// Sends the task and checks what comes back.
    #[allow(
        clippy::too_many_arguments,
        reason = "the terms of one hold or exchange, each named"
    )]
    async fn exchange(
        &self,
        job: &str,
        spec: &TaskSpec,
        worker: PeerId,
        worker_key: PublicKey,
        task_wire: &[u8],
        request: Vec<u8>,
        input_key: Option<ContentKey>,
        started: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Answer> {
        let left = timeout.saturating_sub(started.elapsed());
        let mut answer = self
            .client
            .request_task(worker, request.clone(), left)
            .await;
        if let Err(p2pc_net::Error::Request {
            kind: RequestFailure::Unreachable,
            ..
        }) = &answer
        {
            // No address known for the worker yet: look it up and retry.
            if self.client.find_peer(worker).await.unwrap_or(false) {
                let left = timeout.saturating_sub(started.elapsed());
                answer = self.client.request_task(worker, request, left).await;
            }
        }
        let answer = answer.map_err(|e| match e {
            p2pc_net::Error::Request {
                kind: RequestFailure::ConnectionClosed,
                ..
            } => Error::Submit(format!(
                "worker {worker} went away before answering (its connection closed)"
            )),
            p2pc_net::Error::Timeout(t) => {
                Error::Submit(format!("worker {worker} did not answer within {t:?}"))
            }
            other => Error::Submit(format!("worker {worker}: {other}")),
        })?;
        let reply = TaskReply::decode(answer.as_slice())
            .map_err(|e| Error::Submit(format!("worker {worker} sent a malformed reply: {e}")))?;
        if !reply.refused.is_empty() {
            return Err(Error::Submit(format!(
                "worker {worker} refused the task ({}): {}",
                reply.refused_code, reply.refused
            )));
        }
        let receipt = check_receipt(&reply.receipt, task_wire, &worker_key)
            .map_err(|e| Error::Submit(format!("receipt from {worker} rejected: {e}")))?;
        if receipt.task_id != spec.task_id {
            return Err(Error::Submit(format!(
                "receipt from {worker} rejected: wrong task id"
            )));
        }
        let logs = JobLogs {
            job: job.to_owned(),
            logs: receipt
                .logs
                .iter()
                .map(|l| LogLine {
                    level: parse_level(&l.level),
                    message: l.message.clone(),
                })
                .collect(),
            logs_dropped: receipt.logs_dropped,
            stderr: String::from_utf8_lossy(&receipt.stderr).into_owned(),
            receipts: vec![hex::encode(&reply.receipt)],
        };
        let mut output = None;
        let mut inline = None;
        if receipt.outcome == "ok" {
            let cid = Cid::from_slice(&receipt.output)
                .ok_or_else(|| Error::Submit("receipt names no output".into()))?;
            if !reply.inline_output.is_empty() || receipt.output_len == 0 {
                if blob_id(&reply.inline_output) != cid {
                    return Err(Error::Submit(format!(
                        "receipt from {worker} rejected: the output sent does not match the output it names"
                    )));
                }
                inline = Some((cid, reply.inline_output.clone()));
            } else {
                let left = timeout.saturating_sub(started.elapsed());
                tokio::time::timeout(
                    left,
                    crate::fetch::fetch_counted(
                        &self.client,
                        &self.store,
                        cid,
                        &[worker],
                        &self.telemetry.metrics,
                    ),
                )
                .await
                .map_err(|_| {
                    Error::Submit("fetching the output took past the job's timeout".into())
                })??;
            }
            if let Some(input_key) = input_key {
                self.check_sealed_output(job, &receipt, worker, &input_key, cid, &inline)
                    .await?;
            }
            output = Some(cid.to_string());
        }
        let state = JobState::Done {
            worker: worker.to_string(),
            outcome: receipt.outcome.clone(),
            message: receipt.message.clone(),
            output,
            output_len: receipt.output_len,
            fuel_used: receipt.fuel_used,
            peak_memory: receipt.peak_memory,
        };
        Ok(((state, Some(logs), inline), receipt, reply.receipt))
    }

    /// A worker for a task: of the fresh offers that suit the job (on a
    /// paid network: at most its price cap, with an arbiter it accepts
    /// reachable), the best by the market's selection rule
    /// (`p2pc_market::select`: expected cost, reputation, latency, load);
    /// failing offers, the first connected peer that describes itself.
    async fn choose_worker(
        &self,
        terms: &Terms,
        fuel: u64,
        avoid: &HashSet<PeerId>,
        reserved: &Mutex<HashMap<PeerId, usize>>,
    ) -> Result<(PeerId, Option<Advert>)> {
        let me = self.client.peer_id();
        let now = now_unix_ms();
        let network = self.payments.as_ref().map(Payments::network_id);
        let mine = self.signer.public();
        let rtts: HashMap<PeerId, f64> = match self.client.peers().await {
            Ok(peers) => peers
                .into_iter()
                .filter_map(|i| Some((i.peer_id.parse().ok()?, i.rtt_us? as f64 / 1000.0)))
                .collect(),
            Err(_) => HashMap::new(),
        };
        let explore = self.market.explore();
        let (mut expensive, mut no_arbiter, mut cheapest) = (0usize, 0usize, None::<u64>);
        let mut untrusted = 0usize;
        // Held while choosing, and the choice counted before it is let go,
        // so tasks placed at once spread instead of all picking one worker.
        let chosen = {
            let mut busy = lock(reserved);
            let adverts = lock(&self.adverts);
            let mut eligible: Vec<(PeerId, &Offer)> = Vec::new();
            for (p, offer, (k, a)) in adverts.fresh(now) {
                if *p == me || avoid.contains(p) || a.draining {
                    continue;
                }
                if a.price > 0 && network.is_some_and(|n| a.network == n) {
                    cheapest = Some(cheapest.map_or(a.price, |c| c.min(a.price)));
                    if terms.max_price.is_some_and(|m| a.price > m) {
                        expensive += 1;
                        continue;
                    }
                    if arbiter_in(&adverts, mine, *k, a, now).is_none() {
                        no_arbiter += 1;
                        continue;
                    }
                }
                eligible.push((*p, offer));
            }
            let scores = self.market.scores(eligible.iter().map(|(p, _)| p));
            let candidates: Vec<Candidate<'_, PeerId>> = eligible
                .iter()
                .zip(scores)
                .map(|((p, offer), reputation)| Candidate {
                    peer: *p,
                    offer,
                    reputation,
                    rtt_ms: rtts.get(p).copied(),
                    reserved: busy.get(p).copied().unwrap_or(0) as u32,
                })
                .collect();
            if let Some(floor) = terms.min_reputation {
                untrusted = candidates
                    .iter()
                    .filter(|c| c.reputation.unwrap_or(select::PRIOR) < floor)
                    .count();
            }
            let want = Want {
                fuel,
                max_price: terms.max_price,
                min_reputation: terms.min_reputation,
                now_ms: now,
                explore,
            };
            let best = select::top(candidates, &want, 1)
                .into_iter()
                .next()
                .map(|(c, _)| c.peer);
            let best = best.and_then(|p| adverts.get(&p, now).map(|(_, (_, a))| (p, a.clone())));
            if let Some((p, _)) = &best {
                *busy.entry(*p).or_insert(0) += 1;
            }
            best
        };
        if let Some((p, a)) = chosen {
            return Ok((p, Some(a)));
        }
        if untrusted > 0 {
            return Err(Error::Submit(format!(
                "no worker has a reputation of at least {}: {untrusted} heard score below it",
                terms.min_reputation.unwrap_or(0.0)
            )));
        }
        if no_arbiter > 0 {
            return Err(Error::Submit(format!(
                "no arbiter is reachable that the {no_arbiter} paid workers heard accept: a paid \
                 job needs a third node with [arbiter] enabled = true, listed in the workers' \
                 [market] arbiters (or the genesis's)"
            )));
        }
        if expensive > 0 {
            return Err(Error::Submit(format!(
                "no worker asks at most --max-price {} credits per million fuel: {expensive} \
                 heard ask more, the cheapest {}",
                terms.max_price.unwrap_or(0),
                cheapest.unwrap_or(0)
            )));
        }
        let describe = TaskRequest {
            describe: true,
            ..TaskRequest::default()
        }
        .encode_to_vec();
        let peers = self.client.peers().await?;
        let mut asks = futures::stream::FuturesUnordered::new();
        for info in peers {
            let Ok(peer) = info.peer_id.parse::<PeerId>() else {
                continue;
            };
            if avoid.contains(&peer) {
                continue;
            }
            let client = self.client.clone();
            let req = describe.clone();
            asks.push(async move {
                (
                    peer,
                    client.request_task(peer, req, Duration::from_secs(3)).await,
                )
            });
        }
        use futures::StreamExt;
        while let Some((peer, answer)) = asks.next().await {
            match answer.map(|a| TaskReply::decode(a.as_slice())) {
                Ok(Ok(reply)) if !reply.advert.is_empty() => {
                    let advert = open_advert(&reply.advert, peer);
                    *lock(reserved).entry(peer).or_insert(0) += 1;
                    return Ok((peer, advert));
                }
                Ok(_) => {}
                Err(e) => warn!(%peer, error = %e, "describe failed"),
            }
        }
        Err(Error::Submit(
            "no worker found: no adverts heard and no connected peer answered; \
             connect to a worker or name one with --to"
                .into(),
        ))
    }
}

/// An arbiter `worker`'s advert accepts, other than `me` and the worker,
/// whose own offer (fresh at `now`) says it arbitrates.
fn arbiter_in(
    adverts: &OfferBook<PeerId, (PublicKey, Advert)>,
    me: PublicKey,
    worker: PublicKey,
    advert: &Advert,
    now: u64,
) -> Option<PublicKey> {
    advert
        .arbiters
        .iter()
        .filter_map(|k| PublicKey::from_bytes(k).ok())
        .filter(|k| *k != me && *k != worker)
        .find(|k| {
            adverts
                .get(&k.peer_id(), now)
                .is_some_and(|(_, (_, a))| a.arbiter)
        })
}

fn parse_level(level: &str) -> LogLevel {
    LogLevel::from_name(level).unwrap_or(LogLevel::Info)
}

fn decode_info(bytes: &[u8]) -> Result<JobInfo> {
    serde_json::from_slice(bytes).map_err(|e| Error::Io(format!("a job record is corrupt: {e}")))
}

/// A state in a few words, for errors.
fn describe(state: &JobState) -> String {
    match state {
        JobState::Submitted => "it has not been sent yet".into(),
        JobState::Running { worker, .. } => format!("it is still running on {worker}"),
        JobState::Done {
            outcome, message, ..
        } => format!("it ended with {outcome}: {message}"),
        JobState::Failed { error } => format!("it failed: {error}"),
        JobState::Lost { reason } => format!("it was lost: {reason}"),
        JobState::Cancelled { .. } => "it was cancelled".into(),
    }
}

/// Why a job in `status` was lost when its node stopped.
fn lost_reason(status: &JobState) -> String {
    match status {
        JobState::Running { worker } => format!(
            "this node stopped while the job ran on {worker}; the worker's answer could not be \
             received (submit it again)"
        ),
        _ => "this node stopped before the job was sent to a worker (submit it again)".to_owned(),
    }
}

/// Marks jobs left running by the last run as lost, prunes finished jobs
/// past `keep`, and returns how many records remain.
fn recover(store: &Store, keep: Duration) -> Result<usize> {
    let now = now_unix_ms();
    let mut writes = Vec::new();
    let mut lost = 0;
    let scanned = scan(store, keep, now, &HashSet::new())?;
    let kept = scanned.alive.len();
    for mut info in scanned.alive {
        if info.status.is_final() {
            continue;
        }
        info.status = JobState::Lost {
            reason: lost_reason(&info.status),
        };
        info.finished_unix_ms = Some(now);
        lost += 1;
        writes.push(JobWrite::Put {
            key: job_key(&info.id),
            value: serde_json::to_vec(&info).expect("job records serialise"),
        });
    }
    writes.extend(scanned.removals);
    if !writes.is_empty() {
        store.commit_jobs(&[], &writes)?;
    }
    remove_outputs(store, &scanned.outputs);
    if lost > 0 {
        warn!(
            jobs = lost,
            "jobs left running when this node last stopped are marked lost"
        );
    }
    Ok(kept)
}

/// What a scan of the job records found.
struct Scanned {
    /// Records to keep.
    alive: Vec<JobInfo>,
    /// Writes that remove the records past `[jobs] keep`.
    removals: Vec<JobWrite>,
    /// Their outputs, named by no record kept: removed once the removals
    /// are committed (so no record ever names a removed blob).
    outputs: Vec<Cid>,
}

fn output_of(info: &JobInfo) -> Option<Cid> {
    match &info.status {
        JobState::Done {
            output: Some(o), ..
        } => o.parse().ok(),
        _ => None,
    }
}

/// Reads every job record and sorts out those past `keep`. `named` holds
/// outputs that records not yet on disk name; they are never removed.
fn scan(store: &Store, keep: Duration, now: u64, named: &HashSet<Cid>) -> Result<Scanned> {
    let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    let mut expired = Vec::new();
    let mut alive = Vec::new();
    for (key, value) in store.job_records(b"job/")? {
        let info = match decode_info(&value) {
            Ok(i) => i,
            Err(e) => {
                warn!(key = %String::from_utf8_lossy(&key), error = %e, "skipping a corrupt job record");
                continue;
            }
        };
        match info.finished_unix_ms {
            Some(at) if at.saturating_add(keep_ms) < now => expired.push(info),
            _ => alive.push(info),
        }
    }
    let mut still_named: HashSet<Cid> = alive.iter().filter_map(output_of).collect();
    still_named.extend(named);
    let mut removals = Vec::new();
    let mut outputs = Vec::new();
    for info in &expired {
        if let Some(cid) = output_of(info)
            && !still_named.contains(&cid)
        {
            outputs.push(cid);
        }
        removals.push(JobWrite::Remove {
            key: job_key(&info.id),
        });
        removals.push(JobWrite::Remove {
            key: detail_key(&info.id),
        });
    }
    if !expired.is_empty() {
        info!(
            jobs = expired.len(),
            "pruning finished jobs past [jobs] keep"
        );
    }
    Ok(Scanned {
        alive,
        removals,
        outputs,
    })
}

/// Removes pruned jobs' output blobs (`p2pctl blob gc` frees their chunks).
fn remove_outputs(store: &Store, outputs: &[Cid]) {
    for cid in outputs {
        if let Err(e) = store.remove(cid) {
            debug!(%cid, error = %e, "could not remove a pruned job's output");
        }
    }
}

/// Commits record writes in groups: whatever waits, up to [`WRITE_BATCH`],
/// goes in one commit. Pruning runs here too, between commits, so it never
/// races a record on its way to the disk.
async fn write_loop(inner: Arc<Inner>, mut queue: mpsc::Receiver<Write>) {
    while let Some(first) = queue.recv().await {
        // Gather what arrives within the window (a flush cuts it short):
        // a short job's three records then make one write, and many jobs
        // share one sync.
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + GROUP_WINDOW;
        while batch.len() < WRITE_BATCH && !matches!(batch.last(), Some(Write::Flush(_))) {
            match queue.try_recv() {
                Ok(w) => batch.push(w),
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(until, queue.recv()).await {
                        Ok(Some(w)) => batch.push(w),
                        Ok(None) | Err(_) => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        // The latest record of each job is the one written; its logs and
        // output come with its last state.
        let mut items: Vec<JobWriteItem> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        let mut flushed = Vec::new();
        let mut prune = false;
        for w in batch {
            match w {
                Write::Job(item) => match at.get(&item.info.id) {
                    Some(&i) => {
                        let earlier = std::mem::replace(&mut items[i], *item);
                        let later = &mut items[i];
                        if later.logs.is_none() {
                            later.logs = earlier.logs;
                        }
                        if later.output.is_none() {
                            later.output = earlier.output;
                        }
                    }
                    None => {
                        at.insert(item.info.id.clone(), items.len());
                        items.push(*item);
                    }
                },
                Write::Prune => prune = true,
                Write::Flush(tx) => flushed.push(tx),
            }
        }
        let mut writes = Vec::new();
        let mut outputs = Vec::new();
        let mut infos = Vec::new();
        let mut logged = Vec::new();
        for JobWriteItem { info, logs, output } in items {
            writes.push(JobWrite::Put {
                key: job_key(&info.id),
                value: serde_json::to_vec(&info).expect("job records serialise"),
            });
            if let Some(logs) = logs {
                writes.push(JobWrite::Put {
                    key: detail_key(&info.id),
                    value: serde_json::to_vec(&logs).expect("job logs serialise"),
                });
                logged.push(info.id.clone());
            }
            outputs.extend(output);
            infos.push(info);
        }
        let cids: Vec<Cid> = outputs.iter().map(|(c, _)| *c).collect();
        let committed = commit_with_retries(&inner.store, outputs, writes).await;
        if let Err(e) = &committed {
            error!(
                error = %e,
                jobs = infos.len(),
                "job records not written; they are kept in memory until the node stops"
            );
            inner.write_failed.store(true, Ordering::Relaxed);
        } else {
            // Forget what is now on disk, unless a newer version of the
            // record was queued meanwhile.
            let mut pending = lock(&inner.pending);
            for cid in &cids {
                pending.remove(cid);
            }
            drop(pending);
            let mut pending = lock(&inner.pending_logs);
            for job in &logged {
                pending.remove(job);
            }
            drop(pending);
            let mut pending = lock(&inner.pending_infos);
            for info in &infos {
                if pending.get(&info.id) == Some(info) {
                    pending.remove(&info.id);
                }
            }
        }
        if prune {
            prune_now(&inner).await;
        }
        for tx in flushed {
            let _ = tx.send(());
        }
    }
}

/// One group commit, tried [`WRITE_TRIES`] times with a growing pause.
async fn commit_with_retries(
    store: &Store,
    outputs: Vec<(Cid, Bytes)>,
    writes: Vec<JobWrite>,
) -> Result<()> {
    let outputs = Arc::new(outputs);
    let writes = Arc::new(writes);
    let mut pause = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        tries += 1;
        let (store, outputs, writes) = (store.clone(), outputs.clone(), writes.clone());
        let done = crate::blocking(move || {
            let refs: Vec<&[u8]> = outputs.iter().map(|(_, b)| b.as_ref()).collect();
            store.commit_jobs(&refs, &writes).map(|_| ())
        })
        .await;
        match done {
            Ok(()) => return Ok(()),
            Err(e) if tries >= WRITE_TRIES => return Err(e),
            Err(e) => {
                warn!(error = %e, "job records not written; trying again");
                tokio::time::sleep(pause).await;
                pause *= 4;
            }
        }
    }
}

/// Prunes records past `[jobs] keep`, sparing outputs that records still
/// in memory name.
async fn prune_now(inner: &Arc<Inner>) {
    let mut named: HashSet<Cid> = lock(&inner.pending).keys().copied().collect();
    named.extend(lock(&inner.pending_infos).values().filter_map(output_of));
    named.extend(lock(&inner.recent).1.values().filter_map(output_of));
    let store = inner.store.clone();
    let keep = inner.keep;
    let pruned = crate::blocking(move || -> Result<usize> {
        let scanned = scan(&store, keep, now_unix_ms(), &named)?;
        if !scanned.removals.is_empty() {
            store.commit_jobs(&[], &scanned.removals)?;
        }
        remove_outputs(&store, &scanned.outputs);
        Ok(scanned.alive.len())
    })
    .await;
    match pruned {
        Ok(alive) => inner.kept.store(alive, Ordering::Relaxed),
        Err(e) => warn!(error = %e, "pruning job records failed"),
    }
}

/// Asks the writer to prune every [`PRUNE_EVERY`].
async fn prune_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        if inner.writes.send(Write::Prune).await.is_err() {
            return;
        }
    }
}
