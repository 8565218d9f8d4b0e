//! `ComputeNode`: the p2pc runner daemon. It composes the store, the wasm
//! sandbox and the other executors, and the overlay; it runs tasks peers
//! send it and returns signed receipts, serves and fetches blobs, submits
//! its own jobs and keeps their records, and gives its clients a
//! [`Handle`] (the gateway, `p2pc-api`, serves it over HTTP).
//!
//! A job is one task, or a map-reduce job's map tasks spread over workers
//! and one reduce; each task runs in attempts with leases, and on a network
//! with a ledger every attempt is paid through its own hold.
//!
//! It is not the overlay (`p2pc-net` moves the bytes), not the sandbox, and
//! not the market's rules (`p2pc-market` prices, ranks, scores and
//! decides between replicas' answers; the node feeds it verified inputs
//! and carries out its decisions).
//!
//! The node is a set of services, each owning its state behind a small
//! cloneable handle:
//! - `worker`: runs peers' tasks, in process or in the isolated pool.
//! - `network`: `ComputeNetwork`, the jobs this node submits and their
//!   records on disk ([`JobInfo`], [`JobState`]).
//! - `replica`: the ledger replica, its gossip and anti-entropy, and the
//!   queries `p2pctl ledger` makes.
//! - `pay`: how tasks are paid: holds, settlements, refunds, and the
//!   arbiter.
//! - `issuer`: with `[issuer] key`, the one service that signs mints:
//!   payment providers' webhooks, exactly once, and payout requests.
//! - `payout`: this node's own payout requests to the issuer.
//! - `attempts`: the pure state machine of a task's attempts.
//! - `market`: this node's price as a worker, its reputation records of
//!   the workers it used, and its jobs' random replication choices.
//! - `scores`: peer scores for bad messages on any topic.
//! - `handle`: [`Handle`], the typed, async face of the node its clients
//!   get, and the API token's file.
//! - `health`: the network health checker ([`HealthReport`]).
//! - `history`: a day of a few series at one-minute steps ([`History`]).
//!
//! Every service reports through `events` (the numbered event stream,
//! [`Events`]) and `metrics` (the Prometheus registry).
//!
//! `inbound` routes what the overlay delivers to those handles without
//! ever waiting on disk or the overlay; `node` ([`ComputeNode`]) builds
//! the services and wires them. Leaves used by all: `config`
//! ([`NodeConfig`]), `messages` (the signed wire messages), `fetch`
//! (multi-provider verified download), `signer` (the node's key), `api`.
//!
//! Modules depend on each other one way only:
//! `config`, `messages`, `api`, `signer`, `metrics`, `events`, `fetch` ←
//! `replica` ← `issuer`, `payout`, `pay` ← `worker` ← `network` ← `health`, `history` ←
//! `inbound` ← `node` ← `handle`. A service asks another only through its
//! handle.

#![deny(missing_docs)]

pub mod api;
mod attempts;
mod config;
pub mod events;
mod fetch;
pub mod fuzzing;
mod handle;
pub mod health;
pub mod history;
mod inbound;
mod issuer;
mod market;
pub mod messages;
mod metrics;
mod network;
mod node;
mod pay;
mod payout;
mod replica;
mod scores;
mod signer;
mod worker;

pub use api::{LedgerAnswer, LedgerRequest};
pub use config::{
    ApiSection, ArbiterSection, Faults, HealthSection, IssuerKey, IssuerSection, JobsSection,
    LedgerSection, LimitsSection, MarketSection, NodeConfig, NodeSection, PayoutsSection,
    ReputationSection, TrustSection,
};
pub use events::{Event, EventKind, Events, Gone};
pub use fetch::{FetchError, FetchStats, WINDOW, fetch};
pub use handle::{
    Handle, Pack, SOCKET_FILE, TOKEN_FILE, URL_FILE, bundle_record, detect_world, ensure_token,
    read_token,
};
pub use health::{Finding, HealthReport, Severity};
pub use history::{Point, Timeline};
pub use metrics::ApiRequest;
pub use network::{
    DEFAULT_ATTEMPTS, DEFAULT_LEASE, JobInfo, JobLogs, JobProgress, JobState, MAX_LIVE_JOBS,
    MAX_SHARDS, RECENT_JOBS, Submission, TaskInfo,
};
pub use node::{ComputeNode, Status};
pub use p2pc_market::Validation;
pub use replica::{LEDGER_TOPIC, op_view, open_ledger, query};
pub use scores::BLOCK_SCORE;

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// File or socket I/O failed.
    #[error("{0}")]
    Io(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] p2pc_store::Error),
    /// The overlay failed.
    #[error(transparent)]
    Net(#[from] p2pc_net::Error),
    /// An executor could not be built.
    #[error("executor: {0}")]
    Executor(String),
    /// A download failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A job could not be submitted or completed.
    #[error("{0}")]
    Submit(String),
    /// No job of that id.
    #[error("no job {0} on this node (finished jobs are kept for [jobs] keep, 7 days by default)")]
    NoSuchJob(String),
    /// A request was wrong.
    #[error("{0}")]
    Control(String),
    /// What a request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The ledger refused or failed.
    #[error("ledger: {0}")]
    Ledger(String),
    /// A payment provider's webhook was refused: its signature, its age,
    /// or an event the issuer cannot act on. Nothing was recorded.
    #[error("webhook refused: {0}")]
    Webhook(p2pc_payments::WebhookError),
    /// The account has too few credits for what was asked: a transfer, a
    /// task's hold, a job's holds.
    #[error("{0}")]
    InsufficientCredits(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `f`, which does blocking I/O (the store, files, fsync), off the
/// async threads.
pub(crate) async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T>
where
    T: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(format!("a blocking task failed: {e}")))?
        .map_err(Into::into)
}
