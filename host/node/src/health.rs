//! The network health checker: a periodic look at what this node can see
//! (its ledger replica, the workers it used, the offers it holds, its
//! peers and its disk), each finding with a severity, the evidence and
//! what to do. Findings are served at `GET /v1/health`, shown by
//! `p2pctl health`, and published as events when they appear and clear.
//!
//! The rules are a pure function of what was gathered ([`evaluate`]), so
//! they are tested without a network; gathering reads the replica off the
//! async threads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::HealthSection;
use crate::events::{EventKind, Events};
use crate::market::Market;
use crate::messages::now_unix_ms;
use crate::metrics::{Severity as SeverityLabel, SharedMetrics};
use crate::network::Network;
use crate::replica::{Replica, SyncView};
use p2pc_ledger::Audit;
use p2pc_net::Client;

/// How bad a finding is.
#[derive(
    Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Something is off; the node still works.
    Warning,
    /// Credits or results may be wrong, or the node is about to stop
    /// working: act now.
    Critical,
}

impl Severity {
    /// Its name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One thing the checker found.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Finding {
    /// The check that found it: `equivocation`, `supply_drift`,
    /// `ledger_rows`, `ledger_behind`, `failing_worker`, `price_anomaly`,
    /// `few_peers`, `disk_space`.
    pub check: String,
    /// How bad it is.
    pub severity: Severity,
    /// What it is about (a peer, an account), when the check names one
    /// thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// What is wrong, in a sentence.
    pub summary: String,
    /// The figures behind it.
    pub evidence: String,
    /// What to do.
    pub action: String,
    /// When it was first found (Unix ms); it has held since.
    pub since_unix_ms: u64,
}

/// What `GET /v1/health` answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct HealthReport {
    /// The worst severity found, or `ok`.
    pub status: String,
    /// When the checks ran, Unix ms.
    pub checked_unix_ms: u64,
    /// The checks that ran (those needing a ledger are skipped without
    /// one).
    pub checks: Vec<String>,
    /// What they found, worst first.
    pub findings: Vec<Finding>,
}

impl HealthReport {
    /// Whether any finding is critical.
    pub fn is_critical(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Critical)
    }
}

/// A worker's record as the checker sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkerView {
    pub(crate) peer: String,
    pub(crate) good: u64,
    pub(crate) bad: u64,
}

/// The ledger as the checker sees it.
#[derive(Clone, Debug)]
pub(crate) struct LedgerView {
    /// Accounts proved to have equivocated, and whether it is this node.
    pub(crate) liars: Vec<(String, bool)>,
    pub(crate) audit: Result<Audit, String>,
    pub(crate) sync: SyncView,
    pub(crate) sync_interval: Duration,
}

/// Everything the rules look at.
#[derive(Clone, Debug)]
pub(crate) struct Inputs {
    pub(crate) uptime: Duration,
    pub(crate) peers: usize,
    pub(crate) ledger: Option<LedgerView>,
    pub(crate) workers: Vec<WorkerView>,
    pub(crate) offers: Vec<(String, u64)>,
    /// Free and total bytes of the data directory's file system.
    pub(crate) disk: Option<(u64, u64)>,
}

fn finding(
    check: &str,
    severity: Severity,
    subject: Option<String>,
    summary: String,
    evidence: String,
    action: &str,
) -> Finding {
    Finding {
        check: check.to_owned(),
        severity,
        subject,
        summary,
        evidence,
        action: action.to_owned(),
        since_unix_ms: 0,
    }
}

/// The checks that run on `inputs`.
pub(crate) fn checks(inputs: &Inputs) -> Vec<String> {
    let mut v = vec!["failing_worker", "price_anomaly", "few_peers", "disk_space"];
    if inputs.ledger.is_some() {
        v.splice(
            0..0,
            [
                "equivocation",
                "supply_drift",
                "ledger_rows",
                "ledger_behind",
            ],
        );
    }
    v.into_iter().map(str::to_owned).collect()
}

/// The rules: what `inputs` show is wrong, under `config`'s thresholds.
pub(crate) fn evaluate(inputs: &Inputs, config: &HealthSection) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(l) = &inputs.ledger {
        ledger_findings(l, inputs, &mut out);
    }
    worker_findings(&inputs.workers, config, &mut out);
    price_findings(&inputs.offers, config, &mut out);
    if inputs.peers < config.min_peers {
        out.push(finding(
            "few_peers",
            Severity::Warning,
            None,
            format!(
                "{} peers connected, fewer than [health] min_peers = {}",
                inputs.peers, config.min_peers
            ),
            format!("peers connected: {}", inputs.peers),
            "check [node] bootstrap and that this node's listen addresses are reachable; \
             `p2pctl node peers` lists who is connected",
        ));
    }
    if let Some((free, total)) = inputs.disk
        && total > 0
    {
        #[expect(clippy::cast_precision_loss, reason = "a percentage")]
        let percent = free as f64 * 100.0 / total as f64;
        let severity = if percent < config.disk_free_percent / 5.0 {
            Some(Severity::Critical)
        } else if percent < config.disk_free_percent {
            Some(Severity::Warning)
        } else {
            None
        };
        if let Some(severity) = severity {
            out.push(finding(
                "disk_space",
                severity,
                None,
                format!("the data directory's disk is {percent:.1} % free"),
                format!(
                    "{} free of {} ([health] disk_free_percent = {})",
                    p2pc_types::ByteSize(free),
                    p2pc_types::ByteSize(total),
                    config.disk_free_percent
                ),
                "free space on that file system, or lower [jobs] keep so old outputs are \
                 pruned sooner; `p2pctl blob gc` removes unpinned blobs (node stopped)",
            ));
        }
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.check.cmp(&b.check))
            .then_with(|| a.subject.cmp(&b.subject))
    });
    out
}

fn ledger_findings(l: &LedgerView, inputs: &Inputs, out: &mut Vec<Finding>) {
    for (account, own) in &l.liars {
        out.push(finding(
            "equivocation",
            Severity::Critical,
            Some(account.clone()),
            if *own {
                "this node's own account signed two different ops at one place in its chain"
                    .to_owned()
            } else {
                format!("account {account} signed two different ops at one place in its chain")
            },
            format!(
                "an equivocation proof (both signed ops) is held by this replica; \
                 {} account(s) proved in all",
                l.liars.len()
            ),
            if *own {
                "another process runs with this node's key: stop it, and run one node per key; \
                 the account is frozen by every replica"
            } else {
                "every replica freezes the account, and its work is no longer chosen; \
                 take no credits or results from it"
            },
        ));
    }
    match &l.audit {
        Err(e) => out.push(finding(
            "supply_drift",
            Severity::Critical,
            None,
            "the ledger's rows on disk cannot be read".into(),
            e.clone(),
            "stop the node and run `p2pctl ledger verify`; move the ledger directory aside \
             to have it rebuilt from peers",
        )),
        Ok(a) => {
            for (what, s) in [("in memory", &a.memory), ("on disk", &a.disk)] {
                if !s.balanced() {
                    out.push(finding(
                        "supply_drift",
                        Severity::Critical,
                        Some(what.to_owned()),
                        format!(
                            "the credits on this replica ({what}) do not add up to those minted"
                        ),
                        format!(
                            "balances {} + held {} + unclaimed {} = {}, but {} were minted{}",
                            s.spendable,
                            s.held,
                            s.unclaimed,
                            s.spendable + s.held + s.unclaimed,
                            s.minted,
                            if a.examples.is_empty() {
                                String::new()
                            } else {
                                format!("; {}", a.examples.join("; "))
                            }
                        ),
                        "stop the node and run `p2pctl ledger verify`; the ops are the truth: \
                         move the ledger directory aside and start the node, which rebuilds it \
                         from its peers. If it happens again, suspect the disk",
                    ));
                }
            }
            if a.rows_differing > 0 && a.disk.balanced() && a.memory.balanced() {
                out.push(finding(
                    "ledger_rows",
                    Severity::Warning,
                    None,
                    format!(
                        "{} ledger rows on disk differ from the state the ops give",
                        a.rows_differing
                    ),
                    a.examples.join("; "),
                    "run `p2pctl ledger verify` with the node stopped; the rows are rewritten \
                     from the ops as accounts change",
                ));
            }
        }
    }
    let grace = l.sync_interval.saturating_mul(3);
    if inputs.peers > 0 && inputs.uptime > grace {
        let stale = l.sync.last_ok_ago.is_none_or(|ago| ago > grace);
        if stale || l.sync.behind {
            out.push(finding(
                "ledger_behind",
                Severity::Warning,
                None,
                if l.sync.behind {
                    "the ledger is still catching up with its peers".to_owned()
                } else {
                    "the ledger has not synced with a peer lately".to_owned()
                },
                format!(
                    "last successful sync: {}; ops pulled then: {}; more waiting: {}",
                    l.sync.last_ok_ago.map_or("never".to_owned(), |d| format!(
                        "{} ago",
                        humantime::format_duration(Duration::from_secs(d.as_secs()))
                    )),
                    l.sync.pulled,
                    l.sync.behind
                ),
                "check that peers with the same genesis are connected (`p2pctl node peers`); \
                 balances shown may be out of date meanwhile",
            ));
        }
    }
}

fn worker_findings(workers: &[WorkerView], config: &HealthSection, out: &mut Vec<Finding>) {
    let (good, bad) = workers.iter().fold((0u64, 0u64), |(g, b), w| {
        (g.saturating_add(w.good), b.saturating_add(w.bad))
    });
    for w in workers {
        let total = w.good.saturating_add(w.bad);
        if total < 5 || w.bad == 0 {
            continue;
        }
        // Compared with everyone else, so one bad worker among two does
        // not hide itself by raising the network's rate.
        let others = (good - w.good).saturating_add(bad - w.bad);
        #[expect(clippy::cast_precision_loss, reason = "rates")]
        let (rate, others_rate) = (
            w.bad as f64 / total as f64,
            if others == 0 {
                0.0
            } else {
                (bad - w.bad) as f64 / others as f64
            },
        );
        if rate >= 0.2 && rate > config.failure_factor * others_rate {
            out.push(finding(
                "failing_worker",
                Severity::Warning,
                Some(w.peer.clone()),
                format!(
                    "worker {} fails or times out on {:.0} % of this node's tasks",
                    w.peer,
                    rate * 100.0
                ),
                format!(
                    "{} bad of {} tasks; the other workers: {:.1} % of {}",
                    w.bad,
                    total,
                    others_rate * 100.0,
                    others
                ),
                "reputation already chooses it less; to stop using it, set a higher \
                 --min-reputation on jobs or add the workers you trust to [trust]",
            ));
        }
    }
}

fn price_findings(offers: &[(String, u64)], config: &HealthSection, out: &mut Vec<Finding>) {
    let mut prices: Vec<u64> = offers.iter().map(|(_, p)| *p).filter(|p| *p > 0).collect();
    if prices.len() < 3 {
        return;
    }
    prices.sort_unstable();
    let median = prices[prices.len() / 2];
    #[expect(clippy::cast_precision_loss, reason = "ratios")]
    for (peer, price) in offers.iter().filter(|(_, p)| *p > 0) {
        let ratio = *price as f64 / median as f64;
        if ratio > config.price_factor || ratio < 1.0 / config.price_factor {
            out.push(finding(
                "price_anomaly",
                Severity::Warning,
                Some(peer.clone()),
                format!("worker {peer} asks {ratio:.2}× the median price"),
                format!(
                    "price {price}, median {median} over {} offers ([health] price_factor = {})",
                    prices.len(),
                    config.price_factor
                ),
                "a price far below the rest can be a worker that takes tasks and then times \
                 out; far above, a worker jobs will avoid. --max-price caps what a job pays",
            ));
        }
    }
}

/// Free and total bytes of the file system holding `path`.
#[allow(
    clippy::useless_conversion,
    reason = "statvfs's fields are u64 here, u32 on 32-bit targets"
)]
fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct it is given; the path is a valid
    // NUL-terminated string.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let unit = u64::from(s.f_frsize).max(1);
    Some((
        u64::from(s.f_bavail).saturating_mul(unit),
        u64::from(s.f_blocks).saturating_mul(unit),
    ))
}

/// A handle on the checker. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    replica: Option<Replica>,
    network: Network,
    market: Market,
    data_dir: PathBuf,
    config: HealthSection,
    sync_interval: Duration,
    started: Instant,
    events: Events,
    metrics: SharedMetrics,
    /// The last report and when it was made; and the findings it held,
    /// by check and subject, with when each was first found.
    last: tokio::sync::Mutex<Option<(Instant, HealthReport)>>,
    since: Mutex<Raised>,
}

/// Findings raised, by check and subject: their severity and when they
/// were first found.
type Raised = BTreeMap<(String, Option<String>), (Severity, u64)>;

/// What the checker reads.
pub(crate) struct Sources {
    pub(crate) client: Client,
    pub(crate) replica: Option<Replica>,
    pub(crate) network: Network,
    pub(crate) market: Market,
    pub(crate) data_dir: PathBuf,
    pub(crate) config: HealthSection,
    pub(crate) sync_interval: Duration,
    pub(crate) events: Events,
    pub(crate) metrics: SharedMetrics,
}

impl Health {
    /// Starts the periodic check.
    pub(crate) fn start(s: Sources) -> (Self, JoinHandle<()>) {
        let every = s.config.interval.max(Duration::from_millis(100));
        let this = Self {
            inner: Arc::new(Inner {
                client: s.client,
                replica: s.replica,
                network: s.network,
                market: s.market,
                data_dir: s.data_dir,
                config: s.config,
                sync_interval: s.sync_interval,
                started: Instant::now(),
                events: s.events,
                metrics: s.metrics,
                last: tokio::sync::Mutex::new(None),
                since: Mutex::new(BTreeMap::new()),
            }),
        };
        let h = this.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                h.check(Duration::ZERO).await;
            }
        });
        (this, task)
    }

    /// The findings now: the last report if it is younger than `fresh`,
    /// otherwise a new one.
    pub(crate) async fn check(&self, fresh: Duration) -> HealthReport {
        // One check at a time; those asking meanwhile share its report.
        let mut last = self.inner.last.lock().await;
        if let Some((at, report)) = &*last
            && at.elapsed() < fresh
        {
            return report.clone();
        }
        let inputs = self.gather().await;
        let mut findings = evaluate(&inputs, &self.inner.config);
        self.track(&mut findings);
        let status = findings
            .first()
            .map_or("ok", |f| f.severity.name())
            .to_owned();
        let report = HealthReport {
            status,
            checked_unix_ms: now_unix_ms(),
            checks: checks(&inputs),
            findings,
        };
        for s in [Severity::Info, Severity::Warning, Severity::Critical] {
            let n = report.findings.iter().filter(|f| f.severity == s).count();
            self.inner
                .metrics
                .findings
                .get_or_create(&SeverityLabel { severity: s.name() })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        *last = Some((Instant::now(), report.clone()));
        report
    }

    /// Dates findings by when they were first seen, and publishes those
    /// that are new (or worse) and those that cleared.
    fn track(&self, findings: &mut [Finding]) {
        let now = now_unix_ms();
        let mut since = self
            .inner
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = BTreeMap::new();
        for f in findings.iter_mut() {
            let key = (f.check.clone(), f.subject.clone());
            let (first, raised) = match since.get(&key) {
                Some((sev, at)) if *sev >= f.severity => (*at, false),
                Some((_, at)) => (*at, true),
                None => (now, true),
            };
            f.since_unix_ms = first;
            if raised {
                match f.severity {
                    Severity::Critical => warn!(check = %f.check, "{}", f.summary),
                    _ => info!(check = %f.check, "{}", f.summary),
                }
                self.inner
                    .events
                    .publish(EventKind::HealthFinding { finding: f.clone() });
            }
            next.insert(key, (f.severity, first));
        }
        for (check, subject) in since.keys().filter(|k| !next.contains_key(*k)) {
            info!(%check, "health finding cleared");
            self.inner.events.publish(EventKind::HealthCleared {
                check: check.clone(),
                subject: subject.clone(),
            });
        }
        *since = next;
    }

    async fn gather(&self) -> Inputs {
        let i = &self.inner;
        let ledger = match &i.replica {
            Some(r) => Some(LedgerView {
                liars: r.liars().await.unwrap_or_default(),
                audit: r.audit().await.map_err(|e| e.to_string()),
                sync: r.sync_view(),
                sync_interval: i.sync_interval,
            }),
            None => None,
        };
        let workers = i
            .market
            .records()
            .into_iter()
            .map(|(peer, r, _)| WorkerView {
                peer: peer.to_string(),
                good: r.counts.success,
                bad: r.counts.timeout.saturating_add(r.counts.cheat),
            })
            .collect();
        let offers = i
            .network
            .offers()
            .into_iter()
            .map(|(peer, a, _)| (peer.to_string(), a.price))
            .collect();
        let dir = i.data_dir.clone();
        let disk = tokio::task::spawn_blocking(move || disk_space(&dir))
            .await
            .ok()
            .flatten();
        Inputs {
            uptime: i.started.elapsed(),
            peers: i.client.peer_count(),
            ledger,
            workers,
            offers,
            disk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pc_ledger::Supply;

    fn quiet() -> Inputs {
        Inputs {
            uptime: Duration::from_secs(3600),
            peers: 3,
            ledger: None,
            workers: Vec::new(),
            offers: Vec::new(),
            disk: Some((50, 100)),
        }
    }

    fn supply(spendable: u128) -> Supply {
        Supply {
            spendable,
            unclaimed: 5,
            held: 10,
            minted: 115,
        }
    }

    fn ledger(audit: Audit) -> LedgerView {
        LedgerView {
            liars: Vec::new(),
            audit: Ok(audit),
            sync: SyncView {
                last_ok_ago: Some(Duration::from_secs(1)),
                behind: false,
                pulled: 0,
            },
            sync_interval: Duration::from_secs(30),
        }
    }

    fn checks_of(f: &[Finding]) -> Vec<(&str, Severity)> {
        f.iter().map(|f| (f.check.as_str(), f.severity)).collect()
    }

    #[test]
    fn a_quiet_node_is_ok() {
        let mut i = quiet();
        i.ledger = Some(ledger(Audit {
            memory: supply(100),
            disk: supply(100),
            rows_differing: 0,
            examples: Vec::new(),
        }));
        assert!(evaluate(&i, &HealthSection::default()).is_empty());
        assert_eq!(checks(&i).len(), 8);
    }

    #[test]
    fn drift_on_disk_and_equivocations_are_critical() {
        let mut i = quiet();
        let mut l = ledger(Audit {
            memory: supply(100),
            disk: supply(1_000_100),
            rows_differing: 1,
            examples: vec!["account row ab differs from memory".into()],
        });
        l.liars = vec![("cafe".into(), false)];
        i.ledger = Some(l);
        let f = evaluate(&i, &HealthSection::default());
        assert_eq!(
            checks_of(&f),
            [
                ("equivocation", Severity::Critical),
                ("supply_drift", Severity::Critical)
            ]
        );
        assert!(f[1].evidence.contains("1000100"), "{}", f[1].evidence);
        assert!(f[1].evidence.contains("differs from memory"));
    }

    #[test]
    fn rows_that_differ_but_balance_are_a_warning() {
        let mut i = quiet();
        i.ledger = Some(ledger(Audit {
            memory: supply(100),
            disk: supply(100),
            rows_differing: 2,
            examples: vec!["escrow row 01 differs from memory".into()],
        }));
        let f = evaluate(&i, &HealthSection::default());
        assert_eq!(checks_of(&f), [("ledger_rows", Severity::Warning)]);
    }

    #[test]
    fn a_ledger_that_never_synced_with_its_peers_is_behind() {
        let mut i = quiet();
        let mut l = ledger(Audit {
            memory: supply(100),
            disk: supply(100),
            rows_differing: 0,
            examples: Vec::new(),
        });
        l.sync.last_ok_ago = None;
        i.ledger = Some(l.clone());
        assert_eq!(
            checks_of(&evaluate(&i, &HealthSection::default())),
            [("ledger_behind", Severity::Warning)]
        );
        // Not before the node has had time to sync, nor without peers.
        i.uptime = Duration::from_secs(10);
        assert!(evaluate(&i, &HealthSection::default()).is_empty());
        i.uptime = Duration::from_secs(3600);
        i.peers = 0;
        assert_eq!(
            checks_of(&evaluate(&i, &HealthSection::default())),
            [("few_peers", Severity::Warning)]
        );
    }

    #[test]
    fn a_worker_failing_far_above_the_others_is_named() {
        let mut i = quiet();
        i.workers = vec![
            WorkerView {
                peer: "bad".into(),
                good: 6,
                bad: 4,
            },
            WorkerView {
                peer: "fine".into(),
                good: 99,
                bad: 1,
            },
            WorkerView {
                peer: "new".into(),
                good: 1,
                bad: 2,
            },
        ];
        let f = evaluate(&i, &HealthSection::default());
        assert_eq!(checks_of(&f), [("failing_worker", Severity::Warning)]);
        assert_eq!(f[0].subject.as_deref(), Some("bad"));
    }

    #[test]
    fn prices_far_from_the_median_and_a_full_disk() {
        let mut i = quiet();
        i.offers = vec![
            ("a".into(), 10),
            ("b".into(), 12),
            ("c".into(), 11),
            ("cheap".into(), 1),
            ("dear".into(), 500),
        ];
        // Under a fifth of disk_free_percent (5 %) is critical.
        i.disk = Some((1, 200));
        let f = evaluate(&i, &HealthSection::default());
        assert_eq!(
            checks_of(&f),
            [
                ("disk_space", Severity::Critical),
                ("price_anomaly", Severity::Warning),
                ("price_anomaly", Severity::Warning)
            ]
        );
        i.disk = Some((4, 100));
        assert_eq!(
            evaluate(&i, &HealthSection::default())[0].severity,
            Severity::Warning
        );
    }
}
