//! The market service: this node's price as a worker (the
//! [`DynamicPricingEngine`], stepped once a window by the worker's load),
//! its records of the workers it used (the [`ReputationManager`], fed only
//! with evidence this node verified, kept on disk), and the random choices
//! of its jobs (which task is replicated, which goes to a newcomer), which
//! no worker can predict.
//!
//! The rules themselves are in `p2pc-market`; this is the state around
//! them and its persistence.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pc_market::pricing::Inputs;
use p2pc_market::{DynamicPricingEngine, Evidence, Record, ReputationManager, Sample, Validation};
use p2pc_net::PeerId;
use p2pc_store::{JobWrite, Store};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::messages::now_unix_ms;
use crate::{NodeConfig, Result};

/// Where reputation records live in the store's records keyspace.
const PREFIX: &[u8] = b"rep/";
/// Changed records are written this often.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// Prices published and not yet expired, remembered at most.
const PUBLISHED: usize = 256;

/// A handle on the market service. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Market {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Mutex<DynamicPricingEngine>,
    window: Duration,
    /// Prices this worker offered, each with its offer's expiry: a hold at
    /// any of them is accepted until that offer expires.
    published: Mutex<VecDeque<(u64, u64)>>,
    /// Tasks waiting for a slot now.
    waiting: AtomicU32,
    /// Tasks refused for lack of a slot this window.
    refused: AtomicU32,
    reputation: Mutex<ReputationManager<PeerId>>,
    dirty: Mutex<HashSet<PeerId>>,
    store: Store,
    /// A seeded generator (tests), or the OS's randomness.
    rng: Option<Mutex<p2pc_market::SplitMix64>>,
    explore_ppm: u64,
    validation: Validation,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Market {
    /// Loads the reputation records and starts the task that writes them.
    pub(crate) async fn start(config: &NodeConfig, store: Store) -> Result<(Self, JoinHandle<()>)> {
        let engine = DynamicPricingEngine::new(config.market.pricing()?)
            .map_err(|e| crate::Error::Config(format!("[market]: {e}")))?;
        if !(0.0..=1.0).contains(&config.market.explore) {
            return Err(crate::Error::Config(
                "[market] explore is a share, between 0 and 1".into(),
            ));
        }
        let validation = config.market.default_validation()?;
        let mut reputation = ReputationManager::new(config.reputation.config()?);
        let s = store.clone();
        let stored = crate::blocking(move || s.job_records(PREFIX)).await?;
        let mut loaded = 0;
        for (key, value) in stored {
            let peer = std::str::from_utf8(&key[PREFIX.len()..])
                .ok()
                .and_then(|p| p.parse::<PeerId>().ok());
            match (peer, Record::from_bytes(&value)) {
                (Some(peer), Some(record)) => {
                    reputation.restore(peer, record);
                    loaded += 1;
                }
                _ => {
                    warn!(key = %String::from_utf8_lossy(&key), "unreadable reputation record skipped")
                }
            }
        }
        if loaded > 0 {
            info!(workers = loaded, "reputation records loaded");
        }
        let inner = Arc::new(Inner {
            engine: Mutex::new(engine),
            window: config.market.price_window.max(Duration::from_millis(50)),
            published: Mutex::new(VecDeque::new()),
            waiting: AtomicU32::new(0),
            refused: AtomicU32::new(0),
            reputation: Mutex::new(reputation),
            dirty: Mutex::new(HashSet::new()),
            store,
            rng: config
                .faults
                .seed
                .map(|s| Mutex::new(p2pc_market::SplitMix64(s))),
            explore_ppm: (config.market.explore * 1e6) as u64,
            validation,
        });
        let task = tokio::spawn(write_loop(inner.clone()));
        Ok((Self { inner }, task))
    }

    /// The price window.
    pub(crate) fn window(&self) -> Duration {
        self.inner.window
    }

    /// The price now, credits per million fuel.
    pub(crate) fn price(&self) -> u64 {
        lock(&self.inner.engine).price()
    }

    /// What sets the price now, and the demand seen this window.
    pub(crate) fn pricing(&self) -> (Inputs, u32, u32) {
        (
            lock(&self.inner.engine).inputs(),
            self.inner.waiting.load(Ordering::Relaxed),
            self.inner.refused.load(Ordering::Relaxed),
        )
    }

    /// Ends a price window with the worker's slots now; returns the price.
    pub(crate) fn step(&self, slots: u32, busy: u32) -> u64 {
        let sample = Sample {
            slots,
            busy,
            waiting: self.inner.waiting.load(Ordering::Relaxed),
            refused: self.inner.refused.swap(0, Ordering::Relaxed),
        };
        let mut engine = lock(&self.inner.engine);
        let before = engine.price();
        let after = engine.step(sample);
        if after != before {
            debug!(
                before,
                after,
                pressure = engine.pressure_permille(),
                "price moved"
            );
        }
        after
    }

    /// An offer at `price` went out, valid until `expires_ms`.
    pub(crate) fn published(&self, price: u64, expires_ms: u64) {
        let now = now_unix_ms();
        let mut p = lock(&self.inner.published);
        p.retain(|(until, _)| *until >= now);
        if p.len() >= PUBLISHED {
            p.pop_front();
        }
        p.push_back((expires_ms, price));
    }

    /// Whether a hold at `price` pays enough: at least the price of an
    /// offer of this worker's that has not expired, or the price now.
    pub(crate) fn accepts(&self, price: u64) -> bool {
        let now = now_unix_ms();
        let lowest = lock(&self.inner.published)
            .iter()
            .filter(|(until, _)| *until >= now)
            .map(|(_, p)| *p)
            .min();
        price >= lowest.map_or(self.price(), |l| l.min(self.price()))
    }

    /// A task began waiting for a slot; the guard ends the wait.
    pub(crate) fn waiting(&self) -> Waiting {
        self.inner.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(self.inner.clone())
    }

    /// A task was refused for lack of a slot.
    pub(crate) fn refused_busy(&self) {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies verified evidence `id` about `peer`.
    pub(crate) fn evidence(&self, peer: PeerId, id: [u8; 32], evidence: Evidence) {
        let applied = lock(&self.inner.reputation).apply(peer, id, evidence, now_unix_ms());
        if applied {
            debug!(%peer, evidence = evidence.name(), "reputation evidence");
            lock(&self.inner.dirty).insert(peer);
        }
    }

    /// The scores of `peers`, in order, under one lock and one clock read
    /// (a ranking asks for thousands).
    pub(crate) fn scores<'a>(&self, peers: impl Iterator<Item = &'a PeerId>) -> Vec<Option<f64>> {
        let r = lock(&self.inner.reputation);
        let now = now_unix_ms();
        peers.map(|p| r.score(p, now)).collect()
    }

    /// `peer`'s record and score.
    pub(crate) fn record(&self, peer: &PeerId) -> Option<(Record, f64)> {
        let r = lock(&self.inner.reputation);
        let now = now_unix_ms();
        r.record(peer)
            .map(|rec| (rec.clone(), rec.score(r.config().half_life_ms, now)))
    }

    /// Every record, with its score.
    pub(crate) fn records(&self) -> Vec<(PeerId, Record, f64)> {
        let r = lock(&self.inner.reputation);
        let now = now_unix_ms();
        let half = r.config().half_life_ms;
        r.records()
            .map(|(p, rec)| (*p, rec.clone(), rec.score(half, now)))
            .collect()
    }

    /// The validation a paid job gets when it names none.
    pub(crate) fn default_validation(&self) -> Validation {
        self.inner.validation
    }

    /// Whether a task first placed on `peer` is replicated under adaptive
    /// validation: always without a run of valid results, then at a rate
    /// falling with it.
    pub(crate) fn replicate(&self, peer: &PeerId) -> bool {
        let roll = self.roll();
        lock(&self.inner.reputation).should_replicate(peer, roll)
    }

    /// Whether this task goes to a worker with no record.
    pub(crate) fn explore(&self) -> bool {
        self.roll() % 1_000_000 < self.inner.explore_ppm
    }

    /// A uniform random number.
    fn roll(&self) -> u64 {
        match &self.inner.rng {
            Some(state) => lock(state).next_u64(),
            None => {
                let mut b = [0u8; 8];
                if getrandom::fill(&mut b).is_err() {
                    // No randomness: replicate (the safe answer).
                    return 0;
                }
                u64::from_le_bytes(b)
            }
        }
    }

    /// Writes every changed record now.
    pub(crate) async fn flush(&self) {
        write_dirty(&self.inner).await;
    }
}

/// Counts a task as waiting for a slot while it lives.
pub(crate) struct Waiting(Arc<Inner>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn write_dirty(inner: &Arc<Inner>) {
    let peers: Vec<PeerId> = lock(&inner.dirty).drain().collect();
    if peers.is_empty() {
        return;
    }
    let writes: Vec<JobWrite> = {
        let r = lock(&inner.reputation);
        peers
            .iter()
            .filter_map(|p| {
                r.record(p).map(|rec| JobWrite::Put {
                    key: [PREFIX, p.to_string().as_bytes()].concat(),
                    value: rec.to_bytes(),
                })
            })
            .collect()
    };
    let store = inner.store.clone();
    if let Err(e) = crate::blocking(move || store.commit_jobs(&[], &writes)).await {
        warn!(error = %e, "reputation records not written; will retry");
        lock(&inner.dirty).extend(peers);
    }
}

/// Writes changed records once a second: one commit for however many.
async fn write_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(WRITE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        write_dirty(&inner).await;
    }
}
