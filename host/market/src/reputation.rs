//! The [`ReputationManager`]: what this node knows of each worker, from
//! evidence it verified itself, never from what another node says a
//! score is.
//!
//! A record holds two decaying sums, good and bad, and a count of
//! consecutive valid replicated results (BOINC's "consecutive valid"):
//!
//! | Evidence | Good | Bad | Valid run |
//! |---|---|---|---|
//! | a verified receipt (`task_success`) | +1 | | +1 if it was replicated and agreed, else unchanged |
//! | a refund at the deadline (`timeout`) | | +2 | reset to 0 |
//! | a wrong answer proved by replication (`cheat_detected`) | reset to 0 | +25 | reset to 0 |
//! | two signed ops for one chain position (`equivocation`) | reset to 0 | +50 | reset to 0 |
//!
//! The score is `(good + 1) / (good + bad + 2)`: a Beta(1, 1) prior, so a
//! worker with no record scores ½, one success lifts it to ⅔, and the
//! score stays strictly between 0 and 1. Both sums halve every half-life,
//! so old behaviour counts less than new and a worker that behaved badly
//! long ago can earn its way back; the valid run does not decay (only a
//! bad result ends it). A cheat wipes the good sum: a wrong answer from a
//! deterministic run is fraud, not bad luck, and no history outweighs it.
//!
//! Each piece of evidence carries an id (the hash of what proves it);
//! applying the same id twice changes nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// One piece of evidence about a worker, already verified by the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Evidence {
    /// A verified receipt; `replicated`: its answer agreed with another
    /// worker's on the same task.
    Success {
        /// Compared with other workers' answers and agreed.
        replicated: bool,
    },
    /// Its task's hold was refunded at the deadline: no receipt came.
    Timeout,
    /// Replication proved its answer wrong.
    Cheat,
    /// It signed two ledger ops for one position of its chain.
    Equivocation,
}

impl Evidence {
    /// The name used in records, logs and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success { replicated: true } => "task_success_replicated",
            Self::Success { replicated: false } => "task_success",
            Self::Timeout => "timeout",
            Self::Cheat => "cheat_detected",
            Self::Equivocation => "equivocation",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Success { replicated: false } => 0,
            Self::Success { replicated: true } => 1,
            Self::Timeout => 2,
            Self::Cheat => 3,
            Self::Equivocation => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Self::Success { replicated: false },
            1 => Self::Success { replicated: true },
            2 => Self::Timeout,
            3 => Self::Cheat,
            4 => Self::Equivocation,
            _ => return None,
        })
    }
}

/// How reputation is kept (`[reputation]` in `node.toml`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReputationConfig {
    /// Good and bad halve every this many milliseconds.
    pub half_life_ms: u64,
    /// Consecutive valid replicated results before a worker's tasks stop
    /// being replicated every time (BOINC's threshold, 10).
    pub trusted_after: u32,
    /// A trusted worker's task is replicated with probability
    /// `spot_check_scale / valid_run`, at least the floor.
    pub spot_check_scale: f64,
    /// The lowest replication probability, in millionths (20,000: 2 %).
    pub spot_check_floor_ppm: u32,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        Self {
            half_life_ms: 7 * 24 * 3600 * 1000,
            trusted_after: 10,
            spot_check_scale: 1.0,
            spot_check_floor_ppm: 20_000,
        }
    }
}

/// How many of each kind of evidence a record has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Verified receipts, replicated or not.
    pub success: u64,
    /// Of those, replicated and agreeing.
    pub replicated: u64,
    /// Refunds at the deadline.
    pub timeout: u64,
    /// Wrong answers proved.
    pub cheat: u64,
    /// Equivocations proved.
    pub equivocation: u64,
}

/// Events a record remembers, most recent last.
pub const RECENT: usize = 8;

/// What this node knows of one worker.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// The decayed sum of good evidence, as of `updated_ms`.
    pub good: f64,
    /// The decayed sum of bad evidence, as of `updated_ms`.
    pub bad: f64,
    /// When the sums were last decayed.
    pub updated_ms: u64,
    /// Consecutive valid replicated results.
    pub valid_run: u32,
    /// Evidence seen, by kind.
    pub counts: Counts,
    /// The last few events: kind and time.
    pub recent: VecDeque<(Evidence, u64)>,
}

impl Record {
    /// The sums decayed to `now_ms`.
    fn decayed(&self, half_life_ms: u64, now_ms: u64) -> (f64, f64) {
        let dt = now_ms.saturating_sub(self.updated_ms) as f64;
        let k = if half_life_ms == 0 {
            1.0
        } else {
            0.5f64.powf(dt / half_life_ms as f64)
        };
        (self.good * k, self.bad * k)
    }

    /// The score at `now_ms`, strictly between 0 and 1.
    pub fn score(&self, half_life_ms: u64, now_ms: u64) -> f64 {
        let (good, bad) = self.decayed(half_life_ms, now_ms);
        (good + 1.0) / (good + bad + 2.0)
    }

    /// The record's bytes, for the node's store.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.recent.len() * 9);
        out.push(1u8);
        out.extend_from_slice(&self.good.to_bits().to_be_bytes());
        out.extend_from_slice(&self.bad.to_bits().to_be_bytes());
        out.extend_from_slice(&self.updated_ms.to_be_bytes());
        out.extend_from_slice(&self.valid_run.to_be_bytes());
        let c = &self.counts;
        for n in [c.success, c.replicated, c.timeout, c.cheat, c.equivocation] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.push(self.recent.len() as u8);
        for (e, at) in &self.recent {
            out.push(e.code());
            out.extend_from_slice(&at.to_be_bytes());
        }
        out
    }

    /// A record from [`Record::to_bytes`]; `None` if the bytes are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.take(1)? != [1] {
            return None;
        }
        let good = f64::from_bits(r.u64()?);
        let bad = f64::from_bits(r.u64()?);
        let updated_ms = r.u64()?;
        let valid_run = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
        let mut counts = [0u64; 5];
        for c in &mut counts {
            *c = r.u64()?;
        }
        let n = r.take(1)?[0] as usize;
        if n > RECENT {
            return None;
        }
        let mut recent = VecDeque::with_capacity(n);
        for _ in 0..n {
            let e = Evidence::from_code(r.take(1)?[0])?;
            recent.push_back((e, r.u64()?));
        }
        if !r.0.is_empty() {
            return None;
        }
        let finite = |x: f64| x.is_finite() && x >= 0.0;
        if !finite(good) || !finite(bad) {
            return None;
        }
        let [success, replicated, timeout, cheat, equivocation] = counts;
        Some(Self {
            good,
            bad,
            updated_ms,
            valid_run,
            counts: Counts {
                success,
                replicated,
                timeout,
                cheat,
                equivocation,
            },
            recent,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Evidence ids remembered, so a repeat changes nothing.
const SEEN: usize = 1 << 20;

/// Records of many workers, keyed by `P`.
#[derive(Clone, Debug)]
pub struct ReputationManager<P> {
    config: ReputationConfig,
    records: HashMap<P, Record>,
    seen: HashSet<[u8; 32]>,
    seen_order: VecDeque<[u8; 32]>,
}

impl<P: Eq + Hash + Clone> ReputationManager<P> {
    /// An empty manager.
    pub fn new(config: ReputationConfig) -> Self {
        Self {
            config,
            records: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ReputationConfig {
        &self.config
    }

    /// Applies evidence `id` about `peer` at `now_ms`. Returns false, and
    /// changes nothing, if `id` was applied before.
    pub fn apply(&mut self, peer: P, id: [u8; 32], evidence: Evidence, now_ms: u64) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back(id);
        if self.seen_order.len() > SEEN
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        let half_life = self.config.half_life_ms;
        let r = self.records.entry(peer).or_default();
        // Evidence dated before the record's last update (replayed from
        // disk out of order) is decayed as if it were new: never into
        // the future.
        let now_ms = now_ms.max(r.updated_ms);
        let (good, bad) = r.decayed(half_life, now_ms);
        r.good = good;
        r.bad = bad;
        r.updated_ms = now_ms;
        let c = &mut r.counts;
        match evidence {
            Evidence::Success { replicated } => {
                r.good += 1.0;
                c.success = c.success.saturating_add(1);
                if replicated {
                    c.replicated = c.replicated.saturating_add(1);
                    r.valid_run = r.valid_run.saturating_add(1);
                }
            }
            Evidence::Timeout => {
                r.bad += 2.0;
                c.timeout = c.timeout.saturating_add(1);
                r.valid_run = 0;
            }
            Evidence::Cheat => {
                r.good = 0.0;
                r.bad += 25.0;
                c.cheat = c.cheat.saturating_add(1);
                r.valid_run = 0;
            }
            Evidence::Equivocation => {
                r.good = 0.0;
                r.bad += 50.0;
                c.equivocation = c.equivocation.saturating_add(1);
                r.valid_run = 0;
            }
        }
        r.recent.push_back((evidence, now_ms));
        while r.recent.len() > RECENT {
            r.recent.pop_front();
        }
        true
    }

    /// `peer`'s score at `now_ms`; `None` if it has no record.
    pub fn score(&self, peer: &P, now_ms: u64) -> Option<f64> {
        self.records
            .get(peer)
            .map(|r| r.score(self.config.half_life_ms, now_ms))
    }

    /// `peer`'s record.
    pub fn record(&self, peer: &P) -> Option<&Record> {
        self.records.get(peer)
    }

    /// Every record.
    pub fn records(&self) -> impl Iterator<Item = (&P, &Record)> {
        self.records.iter()
    }

    /// Puts back a record read from disk.
    pub fn restore(&mut self, peer: P, record: Record) {
        self.records.insert(peer, record);
    }

    /// Whether `peer` has the consecutive valid results to be trusted.
    pub fn trusted(&self, peer: &P) -> bool {
        self.records
            .get(peer)
            .is_some_and(|r| r.valid_run >= self.config.trusted_after)
    }

    /// The probability, in millionths, that a task of `peer`'s is
    /// replicated under adaptive validation: always below the threshold,
    /// then `scale / valid_run`, at least the floor.
    pub fn replicate_ppm(&self, peer: &P) -> u32 {
        let run = self.records.get(peer).map_or(0, |r| r.valid_run);
        replicate_ppm(&self.config, run)
    }

    /// Whether a task of `peer`'s is replicated, given `roll`, a uniform
    /// random number the worker cannot predict.
    pub fn should_replicate(&self, peer: &P, roll: u64) -> bool {
        roll % 1_000_000 < u64::from(self.replicate_ppm(peer))
    }
}

/// [`ReputationManager::replicate_ppm`] for a valid run of `run`.
pub fn replicate_ppm(config: &ReputationConfig, run: u32) -> u32 {
    if run < config.trusted_after {
        return 1_000_000;
    }
    let p = (config.spot_check_scale / f64::from(run.max(1))).clamp(0.0, 1.0);
    ((p * 1e6) as u32).max(config.spot_check_floor_ppm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = 24 * 3600 * 1000;

    fn id(n: u64) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn a_cheat_resets_the_run_and_sinks_the_score() {
        let mut m = ReputationManager::new(ReputationConfig::default());
        for n in 0..12 {
            assert!(m.apply("w", id(n), Evidence::Success { replicated: true }, n));
        }
        assert!(m.trusted(&"w"));
        assert_eq!(m.replicate_ppm(&"w"), 1_000_000 / 12);
        let before = m.score(&"w", 20).expect("present");
        assert!(before > 0.9);
        assert!(
            !m.apply("w", id(3), Evidence::Cheat, 20),
            "a repeated id counts once"
        );
        assert!(m.apply("w", id(100), Evidence::Cheat, 20));
        let r = m.record(&"w").expect("present");
        assert_eq!((r.valid_run, r.counts.cheat, r.counts.success), (0, 1, 12));
        assert!(!m.trusted(&"w"));
        assert_eq!(m.replicate_ppm(&"w"), 1_000_000);
        assert!(m.score(&"w", 20).expect("present") < 0.05);
        assert!(m.score(&"new", 20).is_none(), "no record: no score");
    }

    #[test]
    fn unreplicated_success_raises_the_score_but_not_the_run() {
        let mut m = ReputationManager::new(ReputationConfig::default());
        m.apply("w", id(1), Evidence::Success { replicated: false }, 0);
        assert_eq!(m.record(&"w").expect("present").valid_run, 0);
        assert!((m.score(&"w", 0).expect("present") - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn records_round_trip_and_bad_bytes_are_refused() {
        let mut m = ReputationManager::new(ReputationConfig::default());
        for (n, e) in [
            Evidence::Success { replicated: true },
            Evidence::Timeout,
            Evidence::Success { replicated: false },
            Evidence::Cheat,
            Evidence::Equivocation,
        ]
        .into_iter()
        .enumerate()
        {
            m.apply("w", id(n as u64), e, n as u64 * DAY);
        }
        let r = m.record(&"w").expect("present").clone();
        let bytes = r.to_bytes();
        assert_eq!(Record::from_bytes(&bytes), Some(r));
        for cut in 0..bytes.len() {
            assert_eq!(Record::from_bytes(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Record::from_bytes(&longer), None);
        let mut nan = bytes;
        nan[1..9].copy_from_slice(&f64::NAN.to_bits().to_be_bytes());
        assert_eq!(Record::from_bytes(&nan), None);
    }

    #[test]
    fn the_spot_check_rate_falls_to_its_floor() {
        let c = ReputationConfig::default();
        assert_eq!(replicate_ppm(&c, 9), 1_000_000);
        assert_eq!(replicate_ppm(&c, 10), 100_000);
        assert_eq!(replicate_ppm(&c, 40), 25_000);
        assert_eq!(replicate_ppm(&c, 1000), 20_000);
    }

    fn evidence() -> impl Strategy<Value = Evidence> {
        prop_oneof![
            6 => any::<bool>().prop_map(|replicated| Evidence::Success { replicated }),
            1 => Just(Evidence::Timeout),
            1 => Just(Evidence::Cheat),
            1 => Just(Evidence::Equivocation),
        ]
    }

    proptest! {
        #[test]
        fn scores_stay_in_bounds_and_decay_towards_a_half(
            events in prop::collection::vec((evidence(), 0u64..10 * DAY), 0..100),
            later in 0u64..1000 * DAY,
        ) {
            let c = ReputationConfig::default();
            let mut m = ReputationManager::new(c);
            let mut t = 0;
            for (n, (e, dt)) in events.iter().enumerate() {
                t += dt;
                m.apply(0u8, id(n as u64), *e, t);
                let s = m.score(&0, t).expect("present");
                prop_assert!(s > 0.0 && s < 1.0, "score {s}");
            }
            if let Some(r) = m.record(&0) {
                // Decay only ever moves a score towards ½.
                let now = r.score(c.half_life_ms, t);
                let then = r.score(c.half_life_ms, t + later);
                prop_assert!((then - 0.5).abs() <= (now - 0.5).abs() + 1e-12);
                // The run counts replicated successes since the last bad event.
                let run = events.iter().rev()
                    .take_while(|(e, _)| matches!(e, Evidence::Success { .. }))
                    .filter(|(e, _)| *e == Evidence::Success { replicated: true })
                    .count();
                prop_assert_eq!(r.valid_run as usize, run);
            }
        }

        #[test]
        fn good_evidence_never_lowers_a_score_and_bad_never_raises_it(
            events in prop::collection::vec(evidence(), 0..50), next in evidence(),
        ) {
            let mut m = ReputationManager::new(ReputationConfig::default());
            for (n, e) in events.iter().enumerate() {
                m.apply(0u8, id(n as u64), *e, 0);
            }
            let before = m.score(&0, 0).unwrap_or(0.5);
            m.apply(0u8, id(1000), next, 0);
            let after = m.score(&0, 0).expect("present");
            match next {
                Evidence::Success { .. } => prop_assert!(after >= before),
                _ => prop_assert!(after <= before),
            }
        }
    }
}
