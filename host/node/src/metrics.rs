//! The node's Prometheus metrics, in one `prometheus-client` registry:
//! counters and histograms the services update as work happens, and
//! gauges set from the services' own state just before a scrape. Names
//! follow Prometheus's rules: a `p2pc_` prefix, base units, `_total`
//! counters, few label values.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// One label, `outcome`, `state`, `direction`….
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    pub(crate) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct State {
    pub(crate) state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Direction {
    pub(crate) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Result_ {
    pub(crate) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Severity {
    pub(crate) severity: &'static str,
}

/// The labels of an API request: the route's template (never the
/// concrete path, which would make a series per blob), the method and
/// the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequest {
    /// The route, such as `/v1/jobs/{id}`; `unmatched` for a 404.
    pub route: String,
    /// `GET`, `POST`, …
    pub method: String,
    /// The status code.
    pub status: u16,
}

type IntGauge = Gauge<i64, std::sync::atomic::AtomicI64>;

/// Every metric the node serves.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) tasks: Family<Outcome, Counter>,
    pub(crate) task_seconds: Histogram,
    pub(crate) task_fuel: Histogram,
    pub(crate) fuel_used: Counter,
    pub(crate) jobs: Family<State, IntGauge>,
    pub(crate) jobs_finished: Family<State, Counter>,
    pub(crate) escrow_locked: IntGauge,
    pub(crate) balance: IntGauge,
    pub(crate) price: IntGauge,
    pub(crate) ledger_ops: Family<Result_, Counter>,
    pub(crate) ledger_applied: Counter,
    pub(crate) peers: IntGauge,
    pub(crate) blob_bytes: Family<Direction, Counter<u64, AtomicU64>>,
    pub(crate) api_requests: Family<ApiRequest, Counter>,
    pub(crate) events: Counter,
    pub(crate) event_streams: IntGauge,
    pub(crate) event_streams_dropped: Counter,
    pub(crate) findings: Family<Severity, IntGauge>,
    pub(crate) uptime: IntGauge,
    /// The issuer's webhooks, by result: what an accepted one did
    /// (`minted`, `clearing`, `reversed`, `debt`, `ignored`, `duplicate`)
    /// or why one was refused (`rejected_signature`, `rejected_event`).
    pub(crate) webhooks: Family<Outcome, Counter>,
    /// Credits the issuer minted.
    pub(crate) minted: Counter,
    /// Payouts by the state they reached: requested, sent, failed.
    pub(crate) payouts: Family<State, Counter>,
    /// Peers' tasks ok, failed and refused: the history's counts (a
    /// family cannot be summed cheaply).
    counts: [AtomicU64; 3],
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut r = Registry::with_prefix("p2pc");
        let tasks = Family::<Outcome, Counter>::default();
        r.register(
            "tasks",
            "Peers' tasks this node took as a worker, by outcome: ok, a task error's code, or refused_<code>",
            tasks.clone(),
        );
        // 1 ms to about 4.7 hours.
        let task_seconds = Histogram::new(exponential_buckets(0.001, 4.0, 13));
        r.register_with_unit(
            "task_duration",
            "How long peers' tasks ran here, from slot to receipt",
            Unit::Seconds,
            task_seconds.clone(),
        );
        // A thousand to about 10^13 units of fuel.
        let task_fuel = Histogram::new(exponential_buckets(1e3, 10.0, 11));
        r.register(
            "task_fuel",
            "Fuel peers' tasks used here, per task",
            task_fuel.clone(),
        );
        let fuel_used = Counter::default();
        r.register(
            "task_fuel_used",
            "Fuel used by peers' tasks here, in all",
            fuel_used.clone(),
        );
        let jobs = Family::<State, IntGauge>::default();
        r.register(
            "jobs",
            "Jobs this node submitted that are still live, by state",
            jobs.clone(),
        );
        let jobs_finished = Family::<State, Counter>::default();
        r.register(
            "jobs_finished",
            "Jobs this node submitted that ended since it started, by final state",
            jobs_finished.clone(),
        );
        let escrow_locked = IntGauge::default();
        r.register(
            "escrow_locked_credits",
            "Credits locked in open holds on this node's ledger replica",
            escrow_locked.clone(),
        );
        let balance = IntGauge::default();
        r.register(
            "balance_credits",
            "This node's spendable credits",
            balance.clone(),
        );
        let price = IntGauge::default();
        r.register(
            "price_credits_per_mfuel",
            "This worker's price now, credits per million fuel",
            price.clone(),
        );
        let ledger_ops = Family::<Result_, Counter>::default();
        r.register(
            "ledger_ops",
            "Ledger ops this replica stored, by what the insert did: applied, waiting, refused, equivocation",
            ledger_ops.clone(),
        );
        let ledger_applied = Counter::default();
        r.register(
            "ledger_ops_applied",
            "Ledger ops applied, including those an op unblocked",
            ledger_applied.clone(),
        );
        let peers = IntGauge::default();
        r.register("peers_connected", "Peers connected", peers.clone());
        let blob_bytes = Family::<Direction, Counter<u64, AtomicU64>>::default();
        r.register_with_unit(
            "blob_transfer",
            "Verified blob bytes fetched from peers (in) and served to them (out)",
            Unit::Bytes,
            blob_bytes.clone(),
        );
        let api_requests = Family::<ApiRequest, Counter>::default();
        r.register(
            "api_requests",
            "Gateway requests answered, by route, method and status",
            api_requests.clone(),
        );
        let events = Counter::default();
        r.register("events", "Events published", events.clone());
        let event_streams = IntGauge::default();
        r.register("event_streams", "Event streams open", event_streams.clone());
        let event_streams_dropped = Counter::default();
        r.register(
            "event_streams_dropped",
            "Event streams closed because the client fell behind",
            event_streams_dropped.clone(),
        );
        let findings = Family::<Severity, IntGauge>::default();
        r.register(
            "health_findings",
            "Findings of the last health check, by severity",
            findings.clone(),
        );
        let uptime = IntGauge::default();
        r.register_with_unit(
            "uptime",
            "Seconds since the node started",
            Unit::Seconds,
            uptime.clone(),
        );
        let webhooks = Family::<Outcome, Counter>::default();
        r.register(
            "issuer_webhooks",
            "Payment webhooks the issuer answered, by result: minted, clearing, reversed, debt, ignored, duplicate, rejected_signature, rejected_event",
            webhooks.clone(),
        );
        let minted = Counter::default();
        r.register(
            "issuer_minted_credits",
            "Credits the issuer minted for payments",
            minted.clone(),
        );
        let payouts = Family::<State, Counter>::default();
        r.register(
            "issuer_payouts",
            "Payouts the issuer recorded, by the state they reached: requested, sent, failed",
            payouts.clone(),
        );
        Self {
            registry: r,
            webhooks,
            minted,
            payouts,
            tasks,
            task_seconds,
            task_fuel,
            fuel_used,
            jobs,
            jobs_finished,
            escrow_locked,
            balance,
            price,
            ledger_ops,
            ledger_applied,
            peers,
            blob_bytes,
            api_requests,
            events,
            event_streams,
            event_streams_dropped,
            findings,
            uptime,
            counts: Default::default(),
        }
    }

    /// Counts a peer's task that ran here.
    pub(crate) fn task_ran(&self, outcome: &str, fuel: u64, seconds: f64) {
        self.tasks
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
        let i = usize::from(outcome != "ok");
        self.counts[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.task_seconds.observe(seconds);
        #[expect(clippy::cast_precision_loss, reason = "a histogram bucket")]
        self.task_fuel.observe(fuel as f64);
        self.fuel_used.inc_by(fuel);
    }

    /// Counts a peer's task refused here.
    pub(crate) fn task_refused(&self, code: &str) {
        self.tasks
            .get_or_create(&Outcome {
                outcome: format!("refused_{code}"),
            })
            .inc();
        self.counts[2].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts blob bytes moved over the overlay.
    pub(crate) fn blob_bytes(&self, direction: &'static str, n: u64) {
        self.blob_bytes
            .get_or_create(&Direction { direction })
            .inc_by(n);
    }

    /// Fuel used by peers' tasks here, in all (for the history).
    pub(crate) fn fuel_total(&self) -> u64 {
        self.fuel_used.get()
    }

    /// Peers' tasks so far: (ok, failed, refused), for the history.
    pub(crate) fn task_counts(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.counts[0].load(Relaxed),
            self.counts[1].load(Relaxed),
            self.counts[2].load(Relaxed),
        )
    }

    /// The registry in Prometheus text (0.0.4), or OpenMetrics text.
    pub(crate) fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(8192);
        let r = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        // Writing to a String cannot fail.
        debug_assert!(r.is_ok());
        out
    }
}

/// Shared by every service that reports.
pub(crate) type SharedMetrics = Arc<Metrics>;

/// What every service reports through: the event stream and the
/// metrics.
#[derive(Clone)]
pub(crate) struct Telemetry {
    pub(crate) events: crate::events::Events,
    pub(crate) metrics: SharedMetrics,
}
