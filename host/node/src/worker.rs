//! The worker service: the worker side of `/p2pc/task/1`. It checks a
//! signed task, fetches what it lacks, runs it (in process, or in the
//! isolated pool of confined worker processes), sends the submitter the
//! job's progress while it runs, and signs a receipt that carries the
//! job's logs and stderr tail.
//!
//! Its state (executors, slots, tasks seen, verified bundles) is its own,
//! behind the [`Worker`] handle; it asks the overlay and the store, nothing
//! else.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pc_crypto::{BundleFile, ContentKey, Envelope, PublicKey, TrustPolicy, VerifiedBundle};
use p2pc_exec::{ContainerExecutor, PoolConfig, ProcessExecutor, WasmPool};
use p2pc_net::{Client, PeerId};
use p2pc_sandbox::{
    Artifact, Call, Grants, InputFeed, Limits, Mode, Outcome, SandboxExecutor, StreamedInput, Task,
    WasmExecutor,
};
use p2pc_store::{Cid, Store};
use p2pc_types::ByteSize;
use prost::Message;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::config::Faults;
use crate::events::EventKind;
use crate::market::Market;
use crate::messages::{
    ADVERT_KIND, ADVERT_TOPIC, Advert, CallKind, INLINE_BYTES, MAX_DEADLINE_MS, PROGRESS_KIND,
    Progress, RECEIPT_KIND, RECEIPT_LOG_BYTES, RECEIPT_STDERR_BYTES, Receipt, ReceiptLog,
    ReduceInput, SealedKey, TASK_KIND, TaskReply, TaskRequest, TaskSpec, blob_id, now_unix_ms,
    seal_binding,
};
use crate::metrics::Telemetry;
use crate::pay::{Payments, Unpaid};
use crate::signer::Signer;
use crate::{Error, LimitsSection, NodeConfig, Result};

/// Progress reports sent to a submitter at most this often per task.
/// How often the offer is gossiped (and at once when the price moves).
const ADVERT_EVERY: Duration = Duration::from_secs(5);
/// How long an offer holds: a few rounds of gossip, so a worker that
/// stops is forgotten soon.
pub(crate) const OFFER_TTL_MS: u64 = 30_000;
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How long a progress report may take to be delivered.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(5);
/// Tasks remembered against replay, beyond which expired ones are dropped.
const SEEN_TASKS: usize = 4096;
/// Pieces of a streamed input read ahead of the task (each at most
/// `p2pc_sandbox::READ_MAX`).
const STREAM_PIECES: usize = 8;
/// Outputs up to this size are sealed on the async thread (microseconds).
const SMALL_OUTPUT: usize = 64 << 10;

/// A refusal: a code a program can branch on and a message for people.
struct Refusal(&'static str, String);

impl From<Refusal> for TaskReply {
    fn from(r: Refusal) -> Self {
        refuse(r.0, r.1)
    }
}

fn refuse(code: &str, message: impl Into<String>) -> TaskReply {
    TaskReply::refusal(code, message)
}

/// A handle on the worker service. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    store: Store,
    signer: Arc<Signer>,
    limits: LimitsSection,
    slots_total: usize,
    submitters: TrustPolicy,
    publishers: TrustPolicy,
    wasm: WasmExecutor,
    /// Set with `[executors.wasm] isolated = true`: peers' wasm tasks run
    /// here, in confined worker processes, instead of in `wasm`.
    pool: Option<WasmPool>,
    process: Option<ProcessExecutor>,
    container: Option<ContainerExecutor>,
    slots: Arc<Semaphore>,
    /// Set by `node drain`: no new task is taken.
    draining: std::sync::atomic::AtomicBool,
    /// Set on a network with a ledger: tasks are paid through it.
    payments: Option<Payments>,
    /// This worker's price, and the demand it sees.
    market: Market,
    /// Test fault hooks.
    faults: Faults,
    telemetry: Telemetry,
    seen_tasks: Mutex<HashMap<(PublicKey, Vec<u8>), u64>>,
    bundles: Mutex<HashMap<Cid, Arc<VerifiedBundle>>>,
}

impl Worker {
    /// Builds the executors `config` enables and starts gossiping adverts.
    pub(crate) fn start(
        config: &NodeConfig,
        client: Client,
        store: Store,
        signer: Arc<Signer>,
        payments: Option<Payments>,
        market: Market,
        telemetry: Telemetry,
    ) -> Result<(Self, JoinHandle<()>)> {
        let data_dir = &config.node.data_dir;
        let max_memory = config.limits.memory.max(ByteSize::mib(64));
        let wasm = WasmExecutor::new(p2pc_sandbox::Config {
            cache_dir: Some(data_dir.join("cache")),
            max_concurrent: config.node.slots.clamp(1, 64) as u32,
            max_memory,
            ..p2pc_sandbox::Config::default()
        })
        .map_err(|e| Error::Executor(e.to_string()))?;
        let pool = if config.executors.wasm.isolated {
            let Some((program, args)) = &config.wasm_worker else {
                return Err(Error::Config(
                    "[executors.wasm] isolated = true needs the worker program, which this \
                     embedder of the node did not give (p2pctl node start does)"
                        .into(),
                ));
            };
            let mut pool_config = PoolConfig::new(program.clone(), args.clone());
            pool_config.workers = config.node.slots.clamp(1, 64);
            pool_config.max_memory = max_memory;
            pool_config.allow_unisolated = config.executors.wasm.allow_unisolated;
            let pool = WasmPool::new(pool_config);
            if pool.isolation() == "refused" {
                return Err(Error::Config(
                    "[executors.wasm] isolated = true, but bubblewrap (bwrap) is not installed; \
                     install it, or set allow_unisolated = true to confine workers with \
                     rlimits only"
                        .into(),
                ));
            }
            info!(
                isolation = pool.isolation(),
                "peers' wasm tasks run in isolated worker processes"
            );
            Some(pool)
        } else {
            None
        };
        let process = config
            .executors
            .process
            .enabled
            .then(|| ProcessExecutor::new(config.executors.process_config()));
        let container = config
            .executors
            .container
            .enabled
            .then(|| ContainerExecutor::new(config.executors.container_config()));
        let worker = Self {
            inner: Arc::new(Inner {
                client,
                store,
                signer,
                limits: config.limits.clone(),
                slots_total: config.node.slots.max(1),
                submitters: config.trust.submitters()?,
                publishers: config.trust.publishers()?,
                wasm,
                pool,
                process,
                container,
                slots: Arc::new(Semaphore::new(config.node.slots.max(1))),
                draining: std::sync::atomic::AtomicBool::new(false),
                payments,
                market,
                faults: config.faults.clone(),
                telemetry,
                seen_tasks: Mutex::new(HashMap::new()),
                bundles: Mutex::new(HashMap::new()),
            }),
        };
        let advertise = tokio::spawn(worker.clone().advertise());
        Ok((worker, advertise))
    }

    /// Stops taking new tasks (they are refused `draining`); those running
    /// finish. Returns how many are running.
    pub(crate) fn drain(&self) -> usize {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.running()
    }

    /// Whether the worker is draining.
    pub(crate) fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Tasks running now (holding a slot).
    pub(crate) fn running(&self) -> usize {
        self.inner
            .slots_total
            .saturating_sub(self.inner.slots.available_permits())
    }

    /// Slots free now, and in all.
    pub(crate) fn slots(&self) -> (usize, usize) {
        (self.inner.slots.available_permits(), self.inner.slots_total)
    }

    /// The isolated pool, when peers' wasm tasks run in one.
    pub(crate) fn pool(&self) -> Option<&WasmPool> {
        self.inner.pool.as_ref()
    }

    /// The in-process wasm executor.
    pub(crate) fn wasm(&self) -> &WasmExecutor {
        &self.inner.wasm
    }

    /// Gossips this worker's offer now and then, and at once when its
    /// price moves; steps the price once a window.
    async fn advertise(self) {
        let mut tick = tokio::time::interval(ADVERT_EVERY);
        let mut window = tokio::time::interval(self.inner.market.window());
        window.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = window.tick() => {
                    let before = self.inner.market.price();
                    let (free, total) = self.slots();
                    let busy = total.saturating_sub(free);
                    let after = self.inner.market.step(total as u32, busy as u32);
                    if after == before {
                        continue;
                    }
                }
            }
            let advert = self.inner.advert().encode_to_vec();
            // Fails while no peer subscribes; the next tick tries again.
            let _ = self.inner.client.publish(ADVERT_TOPIC, advert).await;
        }
    }

    /// Answers one task-protocol request from `peer`.
    pub(crate) async fn handle_task(&self, peer: PeerId, request: TaskRequest) -> TaskReply {
        let describe = request.describe;
        let reply = self.inner.handle_task(peer, request).await;
        if !describe && !reply.refused_code.is_empty() {
            let t = &self.inner.telemetry;
            t.metrics.task_refused(&reply.refused_code);
            t.events.publish(EventKind::TaskRefused {
                submitter: peer.to_string(),
                code: reply.refused_code.clone(),
            });
        }
        reply
    }
}

impl Inner {
    /// This worker's signed advert.
    fn advert(&self) -> Envelope {
        let limits = &self.limits;
        let mut executors = vec!["wasm".to_owned()];
        if self.process.is_some() {
            executors.push("process".into());
        }
        if self.container.is_some() {
            executors.push("container".into());
        }
        let draining = self.draining.load(Ordering::SeqCst);
        let now = now_unix_ms();
        let free = self.slots.available_permits();
        let busy = self.slots_total.saturating_sub(free) as u64;
        let waiting = u64::from(self.market.pricing().1);
        let load = (busy + waiting) * 1000 / self.slots_total.max(1) as u64;
        let advert = Advert {
            executors,
            free_slots: if draining {
                0
            } else {
                self.slots.available_permits() as u32
            },
            draining,
            slots: self.slots_total as u32,
            max_fuel: limits.fuel,
            max_memory: limits.memory.0,
            max_timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            max_output: limits.output.0,
            issued_unix_ms: now,
            expires_unix_ms: now.saturating_add(OFFER_TTL_MS),
            load_permille: u32::try_from(load).unwrap_or(u32::MAX),
            seal_key: self.signer.seal_key().public().to_bytes().to_vec(),
            ..Advert::default()
        };
        let mut advert = advert;
        if let Some(p) = &self.payments {
            let (price, collateral, arbiters) = p.terms();
            self.market.published(price, advert.expires_unix_ms);
            advert.network = p.network_id().to_vec();
            advert.price = price;
            advert.collateral = collateral;
            advert.arbiters = arbiters.iter().map(|k| k.to_bytes().to_vec()).collect();
            advert.arbiter = p.is_arbiter();
        }
        self.signer.seal(ADVERT_KIND, advert.encode_to_vec())
    }

    async fn handle_task(&self, peer: PeerId, request: TaskRequest) -> TaskReply {
        if request.describe {
            return TaskReply {
                advert: self.advert().encode_to_vec(),
                ..TaskReply::default()
            };
        }
        if self.draining.load(Ordering::SeqCst) {
            return refuse(
                "draining",
                "this worker is draining: it finishes what it runs and takes no new task",
            );
        }
        let envelope = match Envelope::decode_bounded(&request.task) {
            Ok(e) => e,
            Err(e) => return refuse("malformed", e.to_string()),
        };
        let opened = match envelope.open(TASK_KIND) {
            Ok(o) => o,
            Err(e) => return refuse("bad_signature", e.to_string()),
        };
        let submitter = opened.author;
        if !self.submitters.allows(&submitter) {
            return refuse(
                "untrusted_submitter",
                format!(
                    "tasks signed by {submitter} are not accepted here: the key is not in this \
                     worker's [trust] submitters list"
                ),
            );
        }
        let spec = match TaskSpec::decode(opened.payload) {
            Ok(s) => s,
            Err(e) => return refuse("malformed", format!("malformed task: {e}")),
        };
        if !spec.worker.is_empty() && spec.worker != self.signer.public().to_bytes() {
            return refuse("wrong_worker", "the task names another worker");
        }
        let now = now_unix_ms();
        if spec.deadline_unix_ms <= now {
            return refuse("expired", "the task's deadline has passed");
        }
        if spec.deadline_unix_ms > now.saturating_add(MAX_DEADLINE_MS) {
            return refuse(
                "bad_deadline",
                "the task's deadline is more than a day away",
            );
        }
        if spec.task_id.len() != 16 {
            return refuse("malformed", "a task id is 16 bytes");
        }
        // No task lives longer than a day, so neither does its lease; a
        // longer one is refused before a keep-alive timer is set to it.
        if spec.lease_ms > MAX_DEADLINE_MS {
            return refuse("bad_lease", "the task's lease is more than a day");
        }
        if !self.remember_task(submitter, &spec.task_id, spec.deadline_unix_ms, now) {
            return refuse(
                "replayed",
                format!(
                    "task {} from {submitter} was already received",
                    hex::encode(&spec.task_id)
                ),
            );
        }
        let limits = match self.task_limits(&spec) {
            Ok(l) => l,
            Err(refusal) => return refusal.into(),
        };
        let task_digest = blake3::hash(&request.task);
        // From here the task is this worker's: it keeps the submitter's
        // lease alive while it waits for a slot, a hold or a fetch, and
        // while it runs, until this function returns.
        let _alive = KeepAlive::start(
            self.client.clone(),
            self.signer.clone(),
            peer,
            spec.task_id.clone(),
            task_digest.as_bytes().to_vec(),
            Duration::from_millis(spec.lease_ms),
        );
        // An unpaid task on a paid worker is refused before anything is
        // fetched; the hold itself is checked once the task is runnable.
        if let Some(Unpaid(code, why)) = self
            .payments
            .as_ref()
            .and_then(|p| p.needs_hold(&request.hold))
        {
            return refuse(code, why);
        }
        let left = Duration::from_millis(spec.deadline_unix_ms.saturating_sub(now));
        let waiting = self.market.waiting();
        let _slot = match tokio::time::timeout(left, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                self.market.refused_busy();
                return refuse("busy", "no slot came free before the task's deadline");
            }
        };
        drop(waiting);
        let started = Instant::now();
        let (Some(bundle_cid), Some(input_cid)) =
            (Cid::from_slice(&spec.bundle), Cid::from_slice(&spec.input))
        else {
            return refuse("malformed", "bundle and input are 32-byte blob names");
        };
        let bundle = match self.bundle(bundle_cid, peer).await {
            Ok(b) => b,
            Err(refusal) => return refusal.into(),
        };
        let Ok(kind) = CallKind::try_from(spec.call) else {
            return refuse("malformed", format!("unknown call {}", spec.call));
        };
        let executor = bundle.manifest.executor().to_owned();
        // A sealed task: its input's key opens only for this worker, this
        // task and this submitter.
        let sealed = match &spec.input_key {
            None => None,
            Some(wrapped) => {
                let binding = seal_binding(
                    "input",
                    &spec.job,
                    &spec.task_id,
                    &submitter,
                    &self.signer.public(),
                );
                match self.signer.seal_key().unwrap(
                    &wrapped.to_wrapped(),
                    input_cid.as_bytes(),
                    &binding,
                ) {
                    Ok((key, Some(reply))) => Some((key, reply)),
                    Ok((_, None)) => {
                        return refuse("bad_seal", "the task's input key carries no reply key");
                    }
                    Err(e) => return refuse("bad_seal", format!("the task's input key: {e}")),
                }
            }
        };
        let inline = !spec.inline_input.is_empty() || input_cid == blob_id(&[]);
        if inline {
            if blob_id(&spec.inline_input) != input_cid {
                return refuse(
                    "malformed",
                    "the inline input does not match the input's name",
                );
            }
        } else if let Err(e) = crate::fetch::fetch_counted(
            &self.client,
            &self.store,
            input_cid,
            &[peer],
            &self.telemetry.metrics,
        )
        .await
        {
            return refuse("fetch_failed", format!("cannot fetch the input: {e}"));
        }
        // A command run here reads a stored input as a stream: it is never
        // whole in memory, sealed or not.
        // The component's own world decides, not the manifest's claim; a
        // component that does not load is reported when it runs.
        let streams = !inline
            && kind == CallKind::Run
            && executor == "wasm"
            && self.pool.is_none()
            && self
                .wasm
                .load(&bundle.component)
                .await
                .is_ok_and(|p| p.world() == p2pc_sandbox::World::Command);
        let component_hash = *blake3::hash(&bundle.component).as_bytes();
        let argv = match p2pc_types::argv(&bundle.manifest.args, &spec.args) {
            Ok(argv) => argv,
            // A user's mistake, not the submitting node's: not scored.
            Err(e) => return refuse("bad_args", format!("the task's arguments: {e}")),
        };
        let (call, seed_hash) = if streams {
            // Seeded before the input is read: from the sealed blob's name,
            // or from the plain input's hash, read once from the store.
            let seed_hash = match &sealed {
                Some(_) => *input_cid.as_bytes(),
                None => {
                    let store = self.store.clone();
                    match crate::blocking(move || -> p2pc_store::Result<[u8; 32]> {
                        let mut reader = store.get(&input_cid)?;
                        let mut h = blake3::Hasher::new();
                        std::io::copy(&mut reader, &mut h).map_err(|e| reader.take_error(e))?;
                        Ok(*h.finalize().as_bytes())
                    })
                    .await
                    {
                        Ok(h) => h,
                        Err(e) => return refuse("internal", format!("cannot read the input: {e}")),
                    }
                }
            };
            (Call::Run(Vec::new()), Some(seed_hash))
        } else {
            let bytes = if inline {
                spec.inline_input.to_vec()
            } else {
                let store = self.store.clone();
                match crate::blocking(move || store.get_bytes(&input_cid)).await {
                    Ok(b) => b,
                    Err(e) => return refuse("internal", format!("cannot read the input: {e}")),
                }
            };
            let input = match &sealed {
                None => bytes,
                Some((key, _)) => match p2pc_crypto::seal::open_bytes(key, &bytes) {
                    Ok(plain) => plain,
                    Err(e) => return refuse("bad_seal", format!("the task's input: {e}")),
                },
            };
            let call = match kind {
                CallKind::Run => Call::Run(input),
                CallKind::Map => Call::Map(input),
                CallKind::Reduce => match ReduceInput::decode(input.as_slice()) {
                    Ok(parts) => Call::Reduce(parts.parts),
                    Err(e) => return refuse("malformed", format!("malformed reduce input: {e}")),
                },
            };
            (call, sealed.as_ref().map(|_| *input_cid.as_bytes()))
        };
        // Paid only now that the task is known to be runnable: collateral
        // is never bonded on a task refused for its bundle or input.
        let escrow = match &self.payments {
            None => None,
            Some(p) => match p
                .admit(
                    peer,
                    submitter,
                    &request.hold,
                    *task_digest.as_bytes(),
                    limits.fuel,
                    spec.deadline_unix_ms,
                )
                .await
            {
                Ok(None) => None,
                Ok(Some((id, e))) => Some((p, id, e)),
                Err(Unpaid(code, why)) => return refuse(code, why),
            },
        };
        info!(task = %hex::encode(&spec.task_id), %peer, bundle = %bundle.manifest.name,
            call = call.name(), sealed = sealed.is_some(), streamed = streams, "running task");
        // Seeded from what the task is, as `p2pctl run` seeds it; a sealed
        // task from its sealed input's name, which its replicas share.
        let mode = match (executor.as_str(), seed_hash) {
            ("wasm", Some(hash)) => Mode::derived_from_hash(&component_hash, &hash, &argv),
            ("wasm", None) => Mode::for_call(&component_hash, &call, &argv),
            _ => Mode::Nondeterministic,
        };
        let task = Task {
            mode,
            call,
            limits,
            grants: Grants::default(),
            args: spec.args.clone(),
        };
        let artifact = Artifact {
            bytes: bundle.component.clone(),
            name: bundle.manifest.name.clone(),
            args: bundle.manifest.args.clone(),
        };
        let (progress_tx, progress_rx) = watch::channel(None);
        let (ended, ended_rx) = oneshot::channel();
        // The reporter runs beside the task in this same future: a job
        // that reports no progress costs nothing more than a channel.
        let reporter = report_progress(
            self.client.clone(),
            self.signer.clone(),
            peer,
            spec.task_id.clone(),
            task_digest.as_bytes().to_vec(),
            progress_rx,
            ended_rx,
        );
        let (stdin, producer) = if streams {
            let (feed, input) = p2pc_sandbox::streamed(STREAM_PIECES);
            let store = self.store.clone();
            let key = sealed.as_ref().map(|(k, _)| k.clone());
            let producer =
                tokio::task::spawn_blocking(move || feed_input(&store, input_cid, key, feed));
            (Some(input), Some(producer))
        } else {
            (None, None)
        };
        let run = async {
            let outcome = self
                .execute(&executor, &artifact, task, stdin, progress_tx)
                .await;
            // The last report goes before the receipt, so the submitter's
            // record ends with the job's last progress.
            let _ = ended.send(());
            outcome
        };
        // Each report is bounded by PROGRESS_TIMEOUT, and once the task
        // has ended at most one more is sent.
        let (outcome, ()) = tokio::join!(run, reporter);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(refusal) => return refusal.into(),
        };
        if let Some(producer) = producer {
            match producer.await {
                Ok(Ok(())) => {}
                Ok(Err(refusal)) => return refusal.into(),
                Err(e) => return refuse("internal", format!("the input reader failed: {e}")),
            }
        }
        let mut receipt = Receipt {
            task_id: spec.task_id.clone(),
            task_digest: task_digest.as_bytes().to_vec(),
            submitter: submitter.to_bytes().to_vec(),
            fuel_used: outcome.usage.fuel_used,
            peak_memory: outcome.usage.peak_memory,
            wall_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            ..Receipt::default()
        };
        attach_logs(&mut receipt, &outcome);
        let mut inline = bytes::Bytes::new();
        match outcome.result {
            Ok(mut output) => {
                if self.faults.wrong_output.load(Ordering::SeqCst) {
                    // The test's lying worker: a plausible, signed, wrong answer.
                    match output.first_mut() {
                        Some(b) => *b ^= 0x01,
                        None => output.push(b'!'),
                    }
                }
                receipt.outcome = "ok".into();
                receipt.output_len = output.len() as u64;
                if let Some((input_key, reply)) = &sealed {
                    // Sealed under a fresh key wrapped for the submitter
                    // alone; named by its digest under the input's key,
                    // which replicas compare.
                    receipt.output_digest = input_key.digest(&output).to_vec();
                    let out_key = ContentKey::generate();
                    let plain = std::mem::take(&mut output);
                    output = if plain.len() <= SMALL_OUTPUT {
                        p2pc_crypto::seal::seal_bytes(&out_key, &plain)
                    } else {
                        let k = out_key.clone();
                        match crate::blocking(move || {
                            Ok::<_, Error>(p2pc_crypto::seal::seal_bytes(&k, &plain))
                        })
                        .await
                        {
                            Ok(o) => o,
                            Err(e) => {
                                return refuse("internal", format!("cannot seal the output: {e}"));
                            }
                        }
                    };
                    let binding = seal_binding(
                        "output",
                        &spec.job,
                        &spec.task_id,
                        &submitter,
                        &self.signer.public(),
                    );
                    receipt.output_key = Some(SealedKey::from_wrapped(reply.wrap(
                        &out_key,
                        blob_id(&output).as_bytes(),
                        &binding,
                    )));
                }
                if output.len() <= INLINE_BYTES {
                    // Small outputs travel in the reply and are not kept:
                    // the receipt's name for them lets the submitter check.
                    receipt.output = blob_id(&output).as_bytes().to_vec();
                    inline = output.into();
                } else {
                    let store = self.store.clone();
                    let info = match crate::blocking(move || store.put_bytes(&output)).await {
                        Ok(i) => i,
                        Err(e) => {
                            return refuse("internal", format!("cannot store the output: {e}"));
                        }
                    };
                    receipt.output = info.id.as_bytes().to_vec();
                    announce(&self.client, info.id);
                }
            }
            Err(e) => {
                receipt.outcome = e.code().to_owned();
                receipt.message = e.to_string();
            }
        }
        debug!(task = %hex::encode(&spec.task_id), outcome = %receipt.outcome, "task finished");
        let took = started.elapsed();
        self.telemetry
            .metrics
            .task_ran(&receipt.outcome, receipt.fuel_used, took.as_secs_f64());
        self.telemetry.events.publish(EventKind::TaskRan {
            task_id: hex::encode(&spec.task_id),
            submitter: peer.to_string(),
            outcome: receipt.outcome.clone(),
            fuel_used: receipt.fuel_used,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        });
        let hold = escrow.as_ref().map(|(p, id, e)| {
            receipt.escrow = id.to_vec();
            receipt.settle_unix_ms = now_unix_ms();
            (*p, *id, e.deadline_ms.unwrap_or(spec.deadline_unix_ms))
        });
        let signed = self
            .signer
            .seal(RECEIPT_KIND, receipt.encode_to_vec())
            .encode_to_vec();
        if let Some((p, id, deadline)) = hold {
            p.proposed(id, deadline, &receipt, signed.clone());
        }
        TaskReply {
            receipt: signed,
            inline_output: inline,
            ..TaskReply::default()
        }
    }

    /// Records (submitter, task id) until the task's deadline; false if it
    /// was already there.
    fn remember_task(&self, submitter: PublicKey, id: &[u8], deadline: u64, now: u64) -> bool {
        let mut seen = self.seen_tasks.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > SEEN_TASKS {
            seen.retain(|_, d| *d > now);
        }
        seen.insert((submitter, id.to_vec()), deadline).is_none()
    }

    fn task_limits(&self, spec: &TaskSpec) -> Result<Limits, Refusal> {
        let max = &self.limits;
        let over = |what: &str, asked: String, most: String| {
            Err(Refusal(
                "over_limits",
                format!("the task asks for {asked} of {what}; this worker allows at most {most}"),
            ))
        };
        if spec.fuel > max.fuel {
            return over("fuel", spec.fuel.to_string(), max.fuel.to_string());
        }
        if spec.memory > max.memory.0 {
            return over(
                "memory",
                ByteSize(spec.memory).to_string(),
                max.memory.to_string(),
            );
        }
        if Duration::from_millis(spec.timeout_ms) > max.timeout {
            return over(
                "time",
                format!("{}ms", spec.timeout_ms),
                format!("{}ms", max.timeout.as_millis()),
            );
        }
        if spec.output > max.output.0 {
            return over(
                "output",
                ByteSize(spec.output).to_string(),
                max.output.to_string(),
            );
        }
        let d = Limits::DEFAULT;
        Ok(Limits {
            fuel: if spec.fuel == 0 {
                d.fuel.min(max.fuel)
            } else {
                spec.fuel
            },
            memory: if spec.memory == 0 {
                d.memory.min(max.memory)
            } else {
                ByteSize(spec.memory)
            },
            timeout: if spec.timeout_ms == 0 {
                d.timeout.min(max.timeout)
            } else {
                Duration::from_millis(spec.timeout_ms)
            },
            output: if spec.output == 0 {
                d.output.min(max.output)
            } else {
                ByteSize(spec.output)
            },
            ..d
        })
    }

    /// The verified bundle stored as blob `cid`, fetched from `peer` (or
    /// any provider) when missing. Verified bundles are kept in memory.
    async fn bundle(&self, cid: Cid, peer: PeerId) -> Result<Arc<VerifiedBundle>, Refusal> {
        let now = p2pc_crypto::now_unix();
        let cached = self
            .bundles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cid)
            .cloned();
        if let Some(b) = cached
            && (b.manifest.expires_unix == 0 || now < b.manifest.expires_unix)
        {
            return Ok(b);
        }
        if let Err(e) = crate::fetch::fetch_counted(
            &self.client,
            &self.store,
            cid,
            &[peer],
            &self.telemetry.metrics,
        )
        .await
        {
            return Err(Refusal(
                "fetch_failed",
                format!("cannot fetch the bundle: {e}"),
            ));
        }
        let store = self.store.clone();
        let bytes = crate::blocking(move || store.get_bytes(&cid))
            .await
            .map_err(|e| Refusal("internal", format!("cannot read the bundle: {e}")))?;
        let verified = BundleFile::from_vec(bytes)
            .and_then(|f| f.verify(&self.publishers, now))
            .map_err(|e| Refusal("bad_bundle", format!("bundle refused: {e}")))?;
        let verified = Arc::new(verified);
        let mut cache = self.bundles.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(cid, verified.clone());
        Ok(verified)
    }
}

impl Inner {
    /// Runs `task` on the executor the bundle names.
    async fn execute(
        &self,
        executor: &str,
        artifact: &Artifact,
        task: Task,
        stdin: Option<StreamedInput>,
        progress: watch::Sender<Option<(u64, u64)>>,
    ) -> Result<Outcome, Refusal> {
        let unavailable = |what: &str| {
            Refusal(
                "executor_unavailable",
                format!("this worker does not offer the {what} executor"),
            )
        };
        Ok(match executor {
            "wasm" => match &self.pool {
                Some(pool) => {
                    let outcome = pool.execute(artifact, task).await;
                    // The pool's workers report progress only at the end.
                    if outcome.progress.is_some() {
                        progress.send_replace(outcome.progress);
                    }
                    outcome
                }
                None => match stdin {
                    Some(input) => {
                        self.wasm
                            .execute_streamed(artifact, task, input, Some(progress))
                            .await
                    }
                    None => {
                        self.wasm
                            .execute_reporting(artifact, task, Some(progress))
                            .await
                    }
                },
            },
            "process" => match &self.process {
                Some(e) => e.execute(artifact, task).await,
                None => return Err(unavailable("process")),
            },
            "container" => match &self.container {
                Some(e) => e.execute(artifact, task).await,
                None => return Err(unavailable("container")),
            },
            other => {
                return Err(Refusal(
                    "executor_unavailable",
                    format!("no {other:?} executor here"),
                ));
            }
        })
    }
}

/// Reads a stored input (opening it, if sealed) into a command's stdin,
/// a piece at a time. A sealed input that does not open ends the task's
/// stdin with the error and refuses the task `bad_seal`.
fn feed_input(
    store: &Store,
    cid: Cid,
    key: Option<ContentKey>,
    feed: InputFeed,
) -> Result<(), Refusal> {
    use std::io::Read;
    let reader = match store.get(&cid) {
        Ok(r) => r,
        Err(e) => {
            let why = format!("cannot read the input: {e}");
            feed.blocking_fail(why.clone());
            return Err(Refusal("internal", why));
        }
    };
    let mut reader: Box<dyn Read> = match &key {
        Some(k) => Box::new(p2pc_crypto::OpeningReader::new(reader, k)),
        None => Box::new(reader),
    };
    let mut buf = vec![0u8; p2pc_sandbox::READ_MAX];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if feed
                    .blocking_send(bytes::Bytes::copy_from_slice(&buf[..n]))
                    .is_err()
                {
                    // The task ended without reading the rest.
                    return Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let refusal = match p2pc_crypto::seal::seal_error(&e) {
                    Some(seal) => Refusal("bad_seal", format!("the task's input: {seal}")),
                    None => Refusal("internal", format!("cannot read the input: {e}")),
                };
                feed.blocking_fail(refusal.1.clone());
                return Err(refusal);
            }
        }
    }
}

/// Copies the job's logs and the end of its stderr into `receipt`, within
/// the receipt's byte budget.
fn attach_logs(receipt: &mut Receipt, outcome: &Outcome) {
    let mut budget = RECEIPT_LOG_BYTES;
    let mut dropped = outcome.logs_dropped;
    for line in &outcome.logs {
        if line.message.len() > budget {
            dropped = dropped.saturating_add(1);
            continue;
        }
        budget -= line.message.len();
        receipt.logs.push(ReceiptLog {
            level: line.level.as_str().to_owned(),
            message: line.message.clone(),
        });
    }
    receipt.logs_dropped = dropped;
    let from = outcome.stderr.len().saturating_sub(RECEIPT_STDERR_BYTES);
    receipt.stderr = outcome.stderr[from..].to_vec();
}

/// Sends the submitter the job's progress while it runs, at most every
/// [`PROGRESS_EVERY`], and the last value once `ended` fires.
async fn report_progress(
    client: Client,
    signer: Arc<Signer>,
    submitter: PeerId,
    task_id: Vec<u8>,
    task_digest: Vec<u8>,
    mut progress: watch::Receiver<Option<(u64, u64)>>,
    mut ended: oneshot::Receiver<()>,
) {
    let mut sent = None;
    let mut finished = false;
    loop {
        if !finished {
            tokio::select! {
                changed = progress.changed() => finished = changed.is_err(),
                _ = &mut ended => finished = true,
            }
        }
        let latest = *progress.borrow_and_update();
        if let Some((done, total)) = latest
            && latest != sent
        {
            sent = latest;
            let report = Progress {
                task_id: task_id.clone(),
                task_digest: task_digest.clone(),
                done,
                total,
            };
            let request = TaskRequest {
                progress: signer
                    .seal(PROGRESS_KIND, report.encode_to_vec())
                    .encode_to_vec(),
                ..TaskRequest::default()
            };
            // Progress is advisory: a report lost is replaced by the next.
            if let Err(e) = client
                .request_task(submitter, request.encode_to_vec(), PROGRESS_TIMEOUT)
                .await
            {
                debug!(%submitter, error = %e, "progress report not delivered");
            }
        }
        if finished {
            return;
        }
        // At most one report per interval; cut short when the task ends.
        tokio::select! {
            () = tokio::time::sleep(PROGRESS_EVERY) => {}
            _ = &mut ended => finished = true,
        }
    }
}

/// Sends a submitter keep-alives (progress reports of 0 of 0) every third
/// of a task's lease until dropped.
struct KeepAlive(Option<JoinHandle<()>>);

impl KeepAlive {
    fn start(
        client: Client,
        signer: Arc<Signer>,
        submitter: PeerId,
        task_id: Vec<u8>,
        task_digest: Vec<u8>,
        lease: Duration,
    ) -> Self {
        if lease.is_zero() {
            return Self(None);
        }
        let every = (lease / 3).max(Duration::from_millis(50));
        Self(Some(tokio::spawn(async move {
            let report = Progress {
                task_id,
                task_digest,
                done: 0,
                total: 0,
            };
            let request = TaskRequest {
                progress: signer
                    .seal(PROGRESS_KIND, report.encode_to_vec())
                    .encode_to_vec(),
                ..TaskRequest::default()
            }
            .encode_to_vec();
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                // One sealed report serves every beat: the submitter
                // checks who signed it and for which task, not when.
                if let Err(e) = client.request_task(submitter, request.clone(), every).await {
                    debug!(%submitter, error = %e, "keep-alive not delivered");
                }
            }
        })))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Announces blob `cid` in the background.
pub(crate) fn announce(client: &Client, cid: Cid) {
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(e) = client.provide(cid).await {
            debug!(%cid, error = %e, "could not announce blob");
        }
    });
}
