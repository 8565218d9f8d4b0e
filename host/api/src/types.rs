//! The request bodies and answers the gateway adds to the node's own types
//! (`p2pc_node::api`). Shared by the routes and the client, so neither
//! side picks JSON apart by hand.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A job to submit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// The signed bundle: a bundle id (`GET /v1/bundles`) or the id of a
    /// blob holding a bundle file.
    pub bundle: String,
    /// The input.
    #[serde(default)]
    pub input: Option<JobInput>,
    /// Arguments for the program, after the bundle's own.
    #[serde(default)]
    pub args: Vec<String>,
    /// For a map-reduce component, the number of shards (map tasks).
    #[serde(default)]
    pub shards: Option<u32>,
    /// The most the job may lock and pay, in credits.
    #[serde(default)]
    pub budget: Option<u64>,
    /// The highest price accepted, credits per million fuel.
    #[serde(default)]
    pub max_price: Option<u64>,
    /// `none`, `K-of-N` (such as `2-of-3`) or `adaptive`; the node's
    /// default if absent.
    #[serde(default)]
    pub validation: Option<String>,
    /// Only workers with at least this reputation score (0 to 1).
    #[serde(default)]
    pub min_reputation: Option<f64>,
    /// How long the job may take, milliseconds; 60 000 if absent.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The worker to send it to (a peer id); otherwise one is chosen.
    #[serde(default)]
    pub to: Option<String>,
    /// The hold's challenge window, milliseconds; the genesis's minimum
    /// if absent.
    #[serde(default)]
    pub window_ms: Option<u64>,
    /// Seal the input and output, so only the job's workers and this
    /// node read them; if absent, the node's `[jobs] seal_paid` (on) for
    /// a paid job and `seal_unpaid` (off) for an unpaid one.
    #[serde(default)]
    pub seal: Option<bool>,
}

/// Options of a blob upload.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Announce the blob to the network as provided here (the default).
    /// `false` keeps it private to this node until a job sends it: what
    /// `p2pctl job submit` does with inputs, so a sealed job's plaintext
    /// is never advertised.
    pub announce: Option<bool>,
}

/// A job's input: a stored blob, or bytes given inline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JobInput {
    /// The id of a blob on this node (`POST /v1/blobs`).
    Blob(String),
    /// Text, as UTF-8 bytes.
    Text(String),
    /// Bytes, base64 (standard alphabet, padded).
    Base64(String),
}

/// The answer to a submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// The new job's id.
    pub job: String,
}

/// A page of jobs, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// The jobs on this page.
    pub jobs: Vec<p2pc_node::JobInfo>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next: Option<String>,
}

/// Which jobs to list.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// At most this many (1 to 1000; 50 if absent).
    pub limit: Option<u32>,
    /// The `next` of the page before.
    pub cursor: Option<String>,
    /// Only jobs in this state: `submitted`, `running`, `done`, `failed`,
    /// `cancelled` or `lost`.
    pub state: Option<String>,
}

/// How to read one job.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobGet {
    /// Wait up to this long for the job to end first, such as `30s`
    /// (at most 10 minutes).
    pub wait: Option<String>,
}

/// A job's tasks and the receipts its workers signed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobTasks {
    /// The job's id.
    pub job: String,
    /// Each task attempt.
    pub tasks: Vec<p2pc_node::TaskInfo>,
    /// The signed receipts behind the result, hex.
    pub receipts: Vec<String>,
}

/// A stored bundle and what its manifest says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BundleDetail {
    /// What the store records.
    pub record: p2pc_store::BundleRecord,
    /// Arguments the program always gets.
    pub args: Vec<String>,
    /// The executor: `wasm`, `process` or `container`.
    pub executor: String,
    /// The component's size, bytes.
    pub component_size: u64,
    /// Fuel asked for (0: the runner's default).
    pub fuel: u64,
    /// Memory asked for, bytes.
    pub memory_bytes: u64,
    /// Timeout asked for, milliseconds.
    pub timeout_ms: u64,
    /// Capabilities asked for.
    pub capabilities: Vec<String>,
    /// When it was signed, Unix seconds.
    pub created_unix: u64,
    /// When it expires, Unix seconds; 0: never.
    pub expires_unix: u64,
}

/// A component to pack and sign with a key of the node's keystore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackBundle {
    /// The wasm component, as a blob id (`POST /v1/blobs`).
    pub component: String,
    /// The job's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The key in the node's keystore that signs it.
    pub key: String,
    /// The key's passphrase, if it has one.
    #[serde(default)]
    pub passphrase: Option<String>,
    /// Arguments the program always gets.
    #[serde(default)]
    pub args: Vec<String>,
    /// Fuel asked for.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Memory asked for, bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Timeout asked for, milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Capabilities asked for.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Peers to ask first for a blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchBlob {
    /// Peer ids.
    #[serde(default)]
    pub from: Vec<String>,
}

/// Credits to send from the node's account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The receiver's public key, 64 hex digits.
    pub to: String,
    /// Whole credits, above 0.
    pub amount: u64,
}

/// Whose ledger records to read.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// A public key, 64 hex digits; the node's own if absent.
    pub account: Option<String>,
    /// At most this many ops (history only; 20 if absent).
    pub limit: Option<u64>,
}

/// Which points of the history to send.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only points after this time (Unix ms); all 1,440 if absent.
    pub since_unix_ms: Option<u64>,
}

/// The answer to a cancellation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    /// The job's id.
    pub job: String,
}

/// Raw bytes: a blob, a bundle file, a job's output.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawBytes(pub Vec<u8>);
