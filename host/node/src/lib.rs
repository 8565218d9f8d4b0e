//! `ComputeNode`: the p2pc runner daemon. It composes the store, the wasm
//! sandbox and the other executors, and the overlay; it runs tasks peers
//! send it and returns signed receipts, serves and fetches blobs, submits
//! its own jobs, and answers `p2pctl` over a local control channel.
//!
//! It is not the overlay (`p2pc-net` moves the bytes), not the sandbox, and
//! not a scheduler across many workers yet: one job is one task sent to
//! one worker.
//!
//! Modules:
//! - `config`: [`NodeConfig`], `node.toml` and its environment overrides.
//! - `messages`: the signed task, receipt and advert messages.
//! - `fetch`: multi-provider verified download ([`fetch()`]).
//! - `worker`: running peers' tasks.
//! - `jobs`: submitting tasks and checking receipts ([`JobState`]).
//! - `node`: [`ComputeNode`] itself.
//! - `control`: the Unix-socket control channel and its client, [`Control`].
//! - `ledger`: the node's ledger replica, its gossip and anti-entropy, and
//!   the queries `p2pctl ledger` makes.

#![deny(missing_docs)]

mod config;
mod control;
mod fetch;
mod jobs;
mod ledger;
pub mod messages;
mod node;
mod worker;

pub use config::{LedgerSection, LimitsSection, NodeConfig, NodeSection, TrustSection};
pub use control::{Control, SOCKET_FILE, TOKEN_FILE, ensure_token};
pub use fetch::{FetchError, FetchStats, WINDOW, fetch};
pub use jobs::{JobState, Submission};
pub use ledger::{BLOCK_SCORE, LEDGER_TOPIC, op_json, open_ledger, query};
pub use node::{ComputeNode, Status};

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
    #[error("no job {0} on this node (job records do not survive a restart)")]
    NoSuchJob(String),
    /// A control request was wrong.
    #[error("{0}")]
    Control(String),
    /// The ledger refused or failed.
    #[error("ledger: {0}")]
    Ledger(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
