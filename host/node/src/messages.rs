//! The messages of `/p2pc/task/1`: signed tasks, signed receipts and
//! worker adverts, each carried in a `p2pc_crypto::Envelope` of its own
//! kind so a signature over one can never pass as another.
//!
//! Participants: a *submitter* node and a *worker* node. While a task runs,
//! the worker sends the submitter signed progress reports on the same
//! protocol; its receipt carries the job's log lines and stderr tail.
//! Goals: the worker runs only tasks signed by a submitter it trusts, once
//! each, before their deadline; the submitter accepts only a result signed
//! by the worker it chose, bound to the exact task it sent.
//! On a network with a ledger, tasks are paid: a task request carries the
//! submitter's hold op bound to the task's digest, the receipt names the
//! settlement the worker proposes, the submitter answers with its
//! co-signatures ([`Settle`]), and an arbiter co-signs what one party
//! cannot get from the other ([`Arbitrate`]). `docs/design/task-plane.md`
//! has the rules.
//! A sealed task's input and output are sealed blobs whose keys travel
//! wrapped for their readers only (`docs/design/sealing.md`).
//! Non-goals: checking that the result is right
//! (validation by re-execution is the market's job), secrecy of inputs from
//! the worker that runs them.

use bytes::Bytes;
use p2pc_crypto::{Envelope, EnvelopeError, PublicKey, SecretKey};
use p2pc_types::Cid;
use prost::Message;

/// Envelope kind of a task.
pub const TASK_KIND: &str = "p2pc/task/1";
/// Envelope kind of a receipt.
pub const RECEIPT_KIND: &str = "p2pc/receipt/1";
/// Envelope kind of a progress report.
pub const PROGRESS_KIND: &str = "p2pc/progress/1";
/// Envelope kind of a worker advert.
pub const ADVERT_KIND: &str = "p2pc/advert/1";
/// Gossip topic of worker adverts.
pub const ADVERT_TOPIC: &str = "p2pc/workers/1";
/// Inputs and outputs up to this size travel inside the task or the
/// reply; larger ones are fetched as blobs.
pub const INLINE_BYTES: usize = 1 << 20;
/// Furthest in the future a task's deadline may be.
pub const MAX_DEADLINE_MS: u64 = 24 * 3600 * 1000;
/// Bytes of log text a receipt carries at most; lines past it are counted
/// as dropped. Keeps a receipt well inside an envelope's size limit
/// whatever a job logs.
pub const RECEIPT_LOG_BYTES: usize = 256 << 10;
/// Bytes of the end of a task's stderr a receipt carries at most.
pub const RECEIPT_STDERR_BYTES: usize = 64 << 10;

/// Which export of a component a task calls ([`TaskSpec::call`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum CallKind {
    /// `run(input)`, or a command with the input on stdin. The default.
    Run = 0,
    /// `map(shard)` of the map-reduce world; the input is the shard.
    Map = 1,
    /// `reduce(outputs)`; the input is a [`ReduceInput`].
    Reduce = 2,
}

/// The input of a reduce task: the map outputs, in shard order.
#[derive(Clone, PartialEq, Message)]
pub struct ReduceInput {
    /// Each map task's output.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub parts: Vec<Vec<u8>>,
}

/// What a submitter asks a worker to run. Signed as a [`TASK_KIND`]
/// envelope.
#[derive(Clone, PartialEq, Message)]
pub struct TaskSpec {
    /// Random 16 bytes; the submitter's name for the task.
    #[prost(bytes = "vec", tag = "1")]
    pub task_id: Vec<u8>,
    /// The signed bundle to run, as a blob.
    #[prost(bytes = "vec", tag = "2")]
    pub bundle: Vec<u8>,
    /// The input, as a blob.
    #[prost(bytes = "vec", tag = "3")]
    pub input: Vec<u8>,
    /// Fuel limit.
    #[prost(uint64, tag = "4")]
    pub fuel: u64,
    /// Memory limit in bytes.
    #[prost(uint64, tag = "5")]
    pub memory: u64,
    /// Wall-clock limit of the run in milliseconds.
    #[prost(uint64, tag = "6")]
    pub timeout_ms: u64,
    /// Output limit in bytes.
    #[prost(uint64, tag = "7")]
    pub output: u64,
    /// Unix milliseconds after which the task must not start.
    #[prost(uint64, tag = "8")]
    pub deadline_unix_ms: u64,
    /// The worker key allowed to run it (32 bytes); empty: any.
    #[prost(bytes = "vec", tag = "9")]
    pub worker: Vec<u8>,
    /// The input's bytes, when at most [`INLINE_BYTES`]; they must hash to
    /// `input`.
    #[prost(bytes = "bytes", tag = "10")]
    pub inline_input: Bytes,
    /// Arguments for the program after the bundle's own (`argv` after
    /// `argv[0]` and the bundle's `args`), bounded by
    /// `p2pc_types::check_args`. Signed with the rest, so they are part of
    /// what the task is.
    #[prost(string, repeated, tag = "11")]
    pub args: Vec<String>,
    /// Which export to call: a [`CallKind`]. Absent (0) is `run`, so
    /// tasks from before map and reduce mean what they meant.
    #[prost(enumeration = "CallKind", tag = "12")]
    pub call: i32,
    /// The task's lease in milliseconds: the worker reports progress or a
    /// keep-alive at least every third of it, and the submitter gives the
    /// task up (and places it elsewhere) after a lease of silence. 0: none.
    #[prost(uint64, tag = "13")]
    pub lease_ms: u64,
    /// The submitter's name for the job the task belongs to (bound into a
    /// sealed task's keys).
    #[prost(bytes = "vec", tag = "14")]
    pub job: Vec<u8>,
    /// For a sealed task: the input's content key and a reply key,
    /// wrapped with HPKE for this worker, bound to
    /// [`seal_binding`]`("input", ..)`. `input` (and `inline_input`) are
    /// then the sealed blob; the worker wraps the output's key under the
    /// reply key.
    #[prost(message, optional, tag = "15")]
    pub input_key: Option<SealedKey>,
}

/// A content key wrapped for one reader with HPKE
/// (`p2pc_crypto::seal::wrap`).
#[derive(Clone, PartialEq, Message)]
pub struct SealedKey {
    /// HPKE's encapsulated key.
    #[prost(bytes = "vec", tag = "1")]
    pub enc: Vec<u8>,
    /// The content key, sealed.
    #[prost(bytes = "vec", tag = "2")]
    pub ciphertext: Vec<u8>,
}

impl SealedKey {
    /// As the crypto crate names it.
    pub fn to_wrapped(&self) -> p2pc_crypto::WrappedKey {
        p2pc_crypto::WrappedKey {
            enc: self.enc.clone(),
            ciphertext: self.ciphertext.clone(),
        }
    }

    /// From the crypto crate's form.
    pub fn from_wrapped(w: p2pc_crypto::WrappedKey) -> Self {
        Self {
            enc: w.enc,
            ciphertext: w.ciphertext,
        }
    }
}

/// What a wrapped key of a sealed task is bound to: its use (`input`,
/// read by the worker, or `output`, read by the submitter), the job, the
/// task, the submitter and the worker. A wrap opens only for the same
/// five, so a sealed input or output moved into another task, or a key
/// wrapped for one worker, is refused.
pub fn seal_binding(
    role: &str,
    job: &[u8],
    task_id: &[u8],
    submitter: &PublicKey,
    worker: &PublicKey,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + role.len() + job.len() + task_id.len() + 24);
    for part in [role.as_bytes(), job, task_id] {
        b.extend_from_slice(&(part.len() as u64).to_le_bytes());
        b.extend_from_slice(part);
    }
    b.extend_from_slice(&submitter.to_bytes());
    b.extend_from_slice(&worker.to_bytes());
    b
}

/// One line a job logged, as a receipt carries it.
#[derive(Clone, PartialEq, Message)]
pub struct ReceiptLog {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    #[prost(string, tag = "1")]
    pub level: String,
    /// The text (at most 4 KiB, as the sandbox cut it).
    #[prost(string, tag = "2")]
    pub message: String,
}

/// A worker's report of how far a running task has got, sent to the
/// submitter while the task runs. Signed as a [`PROGRESS_KIND`] envelope.
#[derive(Clone, PartialEq, Message)]
pub struct Progress {
    /// The task's id.
    #[prost(bytes = "vec", tag = "1")]
    pub task_id: Vec<u8>,
    /// BLAKE3 of the task envelope, as in the receipt.
    #[prost(bytes = "vec", tag = "2")]
    pub task_digest: Vec<u8>,
    /// Units done, as the job reported them (`host.progress`).
    #[prost(uint64, tag = "3")]
    pub done: u64,
    /// Units in all. 0 with `done` 0: a keep-alive, no progress known.
    #[prost(uint64, tag = "4")]
    pub total: u64,
}

/// What a worker attests it did. Signed as a [`RECEIPT_KIND`] envelope.
#[derive(Clone, PartialEq, Message)]
pub struct Receipt {
    /// The task's id.
    #[prost(bytes = "vec", tag = "1")]
    pub task_id: Vec<u8>,
    /// BLAKE3 of the task envelope's encoded bytes: binds the receipt to
    /// exactly one signed task.
    #[prost(bytes = "vec", tag = "2")]
    pub task_digest: Vec<u8>,
    /// The submitter's key.
    #[prost(bytes = "vec", tag = "3")]
    pub submitter: Vec<u8>,
    /// `ok`, or the task error's code (`fuel_exhausted`, ...).
    #[prost(string, tag = "4")]
    pub outcome: String,
    /// The error's message, when not ok.
    #[prost(string, tag = "5")]
    pub message: String,
    /// The output blob, when ok.
    #[prost(bytes = "vec", tag = "6")]
    pub output: Vec<u8>,
    /// Output length.
    #[prost(uint64, tag = "7")]
    pub output_len: u64,
    /// Fuel used.
    #[prost(uint64, tag = "8")]
    pub fuel_used: u64,
    /// Peak memory in bytes.
    #[prost(uint64, tag = "9")]
    pub peak_memory: u64,
    /// Wall time in microseconds (informational).
    #[prost(uint64, tag = "10")]
    pub wall_us: u64,
    /// Lines the job logged, up to [`RECEIPT_LOG_BYTES`] of text.
    #[prost(message, repeated, tag = "11")]
    pub logs: Vec<ReceiptLog>,
    /// Lines logged but not carried: past the sandbox's line limit or
    /// this receipt's byte budget.
    #[prost(uint64, tag = "12")]
    pub logs_dropped: u64,
    /// The last [`RECEIPT_STDERR_BYTES`] of what the job wrote to stderr.
    #[prost(bytes = "vec", tag = "13")]
    pub stderr: Vec<u8>,
    /// For a paid task, the hold op's id: the escrow this receipt settles.
    #[prost(bytes = "vec", tag = "14")]
    pub escrow: Vec<u8>,
    /// The settlement's time (Unix ms, the worker's clock): the time the
    /// co-signed decisions carry. The confirmation carries this plus the
    /// hold's window.
    #[prost(uint64, tag = "15")]
    pub settle_unix_ms: u64,
    /// For a sealed task: the output's content key wrapped for the
    /// submitter under the task's reply key (`output` names the sealed
    /// blob; `output_len` is the plaintext's length).
    #[prost(message, optional, tag = "16")]
    pub output_key: Option<SealedKey>,
    /// For a sealed task: the plaintext output's keyed BLAKE3 under a key
    /// derived from the input's content key
    /// (`p2pc_crypto::ContentKey::digest`): replicas compare it, and only
    /// readers of the input can test a guess against it.
    #[prost(bytes = "vec", tag = "17")]
    pub output_digest: Vec<u8>,
}

impl Receipt {
    /// What replicas of one task are compared on: outcome, output (the
    /// plaintext's digest for a sealed task, whose blobs differ), its
    /// length and fuel.
    pub fn answer(&self) -> (String, Vec<u8>, u64, u64) {
        let output = if self.output_digest.is_empty() {
            &self.output
        } else {
            &self.output_digest
        };
        (
            self.outcome.clone(),
            output.clone(),
            self.output_len,
            self.fuel_used,
        )
    }
}

/// What a worker offers. Signed as an [`ADVERT_KIND`] envelope, gossiped
/// on [`ADVERT_TOPIC`] and returned by a describe request.
#[derive(Clone, PartialEq, Message)]
pub struct Advert {
    /// Executors offered: `wasm`, `process`, `container`.
    #[prost(string, repeated, tag = "1")]
    pub executors: Vec<String>,
    /// Slots free now.
    #[prost(uint32, tag = "2")]
    pub free_slots: u32,
    /// Slots in all.
    #[prost(uint32, tag = "3")]
    pub slots: u32,
    /// Most fuel a task may ask for.
    #[prost(uint64, tag = "4")]
    pub max_fuel: u64,
    /// Most memory.
    #[prost(uint64, tag = "5")]
    pub max_memory: u64,
    /// Longest run, in milliseconds.
    #[prost(uint64, tag = "6")]
    pub max_timeout_ms: u64,
    /// Largest output.
    #[prost(uint64, tag = "7")]
    pub max_output: u64,
    /// Unix milliseconds when made; older adverts are ignored.
    #[prost(uint64, tag = "8")]
    pub issued_unix_ms: u64,
    /// The ledger network (genesis id) its tasks are paid on; empty: none,
    /// tasks run unpaid.
    #[prost(bytes = "vec", tag = "9")]
    pub network: Vec<u8>,
    /// Credits per million fuel. 0: unpaid.
    #[prost(uint64, tag = "10")]
    pub price: u64,
    /// Credits it bonds per paid task at most.
    #[prost(uint64, tag = "11")]
    pub collateral: u64,
    /// Arbiter keys (32 bytes each) it accepts on a hold.
    #[prost(bytes = "vec", repeated, tag = "12")]
    pub arbiters: Vec<Vec<u8>>,
    /// Whether this node arbitrates ([`Arbitrate`] requests).
    #[prost(bool, tag = "13")]
    pub arbiter: bool,
    /// Draining: it finishes what it runs and takes no new task.
    #[prost(bool, tag = "14")]
    pub draining: bool,
    /// Unix milliseconds after which the offer is void (0, from an older
    /// node: two minutes after `issued_unix_ms`).
    #[prost(uint64, tag = "15")]
    pub expires_unix_ms: u64,
    /// Busy and waiting tasks per slot, in thousandths.
    #[prost(uint32, tag = "16")]
    pub load_permille: u32,
    /// The X25519 key sealed tasks' inputs are wrapped for (32 bytes; not
    /// the signing key). Empty: takes no sealed task.
    #[prost(bytes = "vec", tag = "17")]
    pub seal_key: Vec<u8>,
}

/// A task-protocol request.
#[derive(Clone, PartialEq, Message)]
pub struct TaskRequest {
    /// A signed [`TaskSpec`] envelope, encoded. Empty with `describe`.
    #[prost(bytes = "vec", tag = "1")]
    pub task: Vec<u8>,
    /// Asks for the worker's signed [`Advert`] instead.
    #[prost(bool, tag = "2")]
    pub describe: bool,
    /// A signed [`Progress`] envelope, encoded: a worker reporting to the
    /// submitter of a task it runs. The reply is empty.
    #[prost(bytes = "vec", tag = "3")]
    pub progress: Vec<u8>,
    /// With `task` on a paid network: the submitter's hold op (ledger
    /// bytes), bound to the task envelope's digest.
    #[prost(bytes = "vec", tag = "4")]
    pub hold: Vec<u8>,
    /// The submitter's co-signatures on a receipt's settlement.
    #[prost(message, optional, tag = "5")]
    pub settle: Option<Settle>,
    /// A request to this node as an arbiter.
    #[prost(message, optional, tag = "6")]
    pub arbitrate: Option<Arbitrate>,
    /// A payout request or a question about one, to this node as the
    /// network's issuer.
    #[prost(message, optional, tag = "7")]
    pub payout: Option<PayoutAsk>,
}

/// An operator asking the issuer to turn credits back into money, or how
/// a payout it asked for stands. The asker is the peer the request came
/// from (the overlay authenticates it); its account is that peer's key.
#[derive(Clone, PartialEq, Message)]
pub struct PayoutAsk {
    /// The asker's signed transfer to the issuer's account (ledger op
    /// bytes). Empty: a question about payout `id`.
    #[prost(bytes = "vec", tag = "1")]
    pub transfer: Vec<u8>,
    /// Where the money goes (an IBAN, a provider account id): opaque to
    /// the network, at most 256 bytes.
    #[prost(string, tag = "2")]
    pub destination: String,
    /// With no transfer: the payout asked about (the transfer's op id).
    #[prost(bytes = "vec", tag = "3")]
    pub id: Vec<u8>,
}

/// The issuer's answer to a [`PayoutAsk`].
#[derive(Clone, PartialEq, Message)]
pub struct PayoutAnswer {
    /// The payout's id (its transfer's op id).
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// `requested`, `sent` or `failed`.
    #[prost(string, tag = "2")]
    pub state: String,
    /// The provider's reference once sent, or why it failed.
    #[prost(string, tag = "3")]
    pub detail: String,
    /// Credits the transfer moved.
    #[prost(uint64, tag = "4")]
    pub credits: u64,
    /// Of them, credits kept against a debt from a reversed payment.
    #[prost(uint64, tag = "5")]
    pub netted: u64,
}

/// The owner's side of a settlement, sent to the worker once its receipt
/// verified: co-signatures on step 1 (pay `fuel_used` at `time_ms`) and
/// step 2 (confirm at `time_ms` + the hold's window). The worker writes
/// both decisions; only it does, so two parties never race to write one.
#[derive(Clone, PartialEq, Message)]
pub struct Settle {
    /// The hold op's id.
    #[prost(bytes = "vec", tag = "1")]
    pub escrow: Vec<u8>,
    /// Fuel paid for, as the receipt said.
    #[prost(uint64, tag = "2")]
    pub fuel_used: u64,
    /// The settlement's time, as the receipt said.
    #[prost(uint64, tag = "3")]
    pub time_ms: u64,
    /// The owner's co-signature on step 1.
    #[prost(bytes = "vec", tag = "4")]
    pub pay: Vec<u8>,
    /// The owner's co-signature on step 2.
    #[prost(bytes = "vec", tag = "5")]
    pub confirm: Vec<u8>,
}

/// What a party asks an arbiter to co-sign. The asker is the peer the
/// request came from (the overlay authenticates it).
#[derive(Clone, PartialEq, Message)]
pub struct Arbitrate {
    /// The hold op's id.
    #[prost(bytes = "vec", tag = "1")]
    pub escrow: Vec<u8>,
    /// An [`ArbitrateKind`].
    #[prost(enumeration = "ArbitrateKind", tag = "2")]
    pub kind: i32,
    /// For `settle`: the worker's signed receipt envelope for the hold's
    /// task. For `cheat`: the minority's receipt.
    #[prost(bytes = "vec", tag = "3")]
    pub receipt: Vec<u8>,
    /// For `cheat`: the signed task envelope the minority's receipt is for.
    #[prost(bytes = "vec", tag = "4")]
    pub task: Vec<u8>,
    /// For `cheat`: the agreeing workers' receipts, each for the task
    /// envelope at the same place in `agreeing_tasks`.
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub agreeing_receipts: Vec<Vec<u8>>,
    /// For `cheat`: the agreeing workers' task envelopes.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub agreeing_tasks: Vec<Vec<u8>>,
}

/// What an [`Arbitrate`] request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ArbitrateKind {
    /// The owner: the hold's deadline passed with no settlement; refund it
    /// (step 1) and confirm the refund (step 2).
    Refund = 0,
    /// The worker: the owner never settled; here is the receipt, signed
    /// before the deadline.
    Settle = 1,
    /// The worker: the window passed with no dispute; confirm.
    Confirm = 2,
    /// The owner: replication proved this worker's answer wrong; here are
    /// its receipt and the agreeing workers' receipts for the same task.
    /// The arbiter then co-signs no settlement of the hold, only its
    /// refund at the deadline.
    Cheat = 3,
}

/// A task-protocol response.
#[derive(Clone, PartialEq, Message)]
pub struct TaskReply {
    /// A signed [`Receipt`] envelope, encoded.
    #[prost(bytes = "vec", tag = "1")]
    pub receipt: Vec<u8>,
    /// The output, when at most [`INLINE_BYTES`].
    #[prost(bytes = "bytes", tag = "2")]
    pub inline_output: Bytes,
    /// Why the task was refused without running (no receipt then).
    #[prost(string, tag = "3")]
    pub refused: String,
    /// The refusal's code, e.g. `untrusted_submitter`.
    #[prost(string, tag = "4")]
    pub refused_code: String,
    /// A signed [`Advert`] envelope, for a describe request.
    #[prost(bytes = "vec", tag = "5")]
    pub advert: Vec<u8>,
    /// An arbiter's co-signatures, in step order, for an [`Arbitrate`]
    /// request.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub cosignatures: Vec<Vec<u8>>,
    /// The time the co-signed decisions carry (Unix ms).
    #[prost(uint64, tag = "7")]
    pub decision_unix_ms: u64,
    /// The issuer's answer to a [`PayoutAsk`].
    #[prost(message, optional, tag = "8")]
    pub payout: Option<PayoutAnswer>,
}

impl TaskReply {
    /// A refusal: a code a program can branch on and a message for people.
    pub fn refusal(code: &str, message: impl Into<String>) -> Self {
        Self {
            refused_code: code.to_owned(),
            refused: message.into(),
            ..Self::default()
        }
    }
}

/// Why a receipt was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not a receipt envelope, or its signature fails.
    #[error("receipt envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// Signed by someone other than the worker the task went to.
    #[error("receipt signed by {found}, not by the worker {expected}")]
    WrongSigner {
        /// The worker the task was sent to.
        expected: PublicKey,
        /// Who signed.
        found: PublicKey,
    },
    /// The receipt is for another task (a replay of an old receipt).
    #[error("receipt is for another task: replayed or misdirected")]
    OtherTask,
    /// The receipt does not decode.
    #[error("receipt is malformed: {0}")]
    Malformed(String),
    /// The inline output does not match the receipt's output blob.
    #[error("the output sent does not match the output the receipt names")]
    OutputMismatch,
}

/// The name of a blob holding exactly `bytes`, as the store computes it:
/// BLAKE3 of the list of BLAKE3s of its chunks.
pub fn blob_id(bytes: &[u8]) -> Cid {
    let mut list = Vec::with_capacity(32 * (bytes.len() / p2pc_store::CHUNK_SIZE + 1));
    for chunk in bytes.chunks(p2pc_store::CHUNK_SIZE) {
        list.extend_from_slice(Cid::of(chunk).as_bytes());
    }
    Cid::of(&list)
}

/// Seals `spec` as a task envelope.
pub fn seal_task(key: &SecretKey, sequence: u64, spec: &TaskSpec) -> Envelope {
    Envelope::seal(key, TASK_KIND, sequence, spec.encode_to_vec())
}

/// Verifies a receipt envelope answers the task envelope `task_wire` sent
/// to `worker`, and returns the receipt.
pub fn check_receipt(
    receipt_wire: &[u8],
    task_wire: &[u8],
    worker: &PublicKey,
) -> Result<Receipt, ReceiptError> {
    let envelope = Envelope::decode_bounded(receipt_wire)?;
    let opened = envelope.open(RECEIPT_KIND)?;
    if opened.author != *worker {
        return Err(ReceiptError::WrongSigner {
            expected: *worker,
            found: opened.author,
        });
    }
    let receipt =
        Receipt::decode(opened.payload).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if receipt.task_digest != blake3::hash(task_wire).as_bytes() {
        return Err(ReceiptError::OtherTask);
    }
    Ok(receipt)
}

/// Current Unix time in milliseconds.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_id_matches_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = p2pc_store::Store::open(dir.path()).expect("open");
        for len in [0, 1, p2pc_store::CHUNK_SIZE, p2pc_store::CHUNK_SIZE + 1] {
            let data = vec![7u8; len];
            assert_eq!(
                store.put_bytes(&data).expect("put").id,
                blob_id(&data),
                "{len}"
            );
        }
    }

    #[test]
    fn receipts_bind_to_worker_and_task() {
        let worker = SecretKey::generate();
        let other = SecretKey::generate();
        let task_a = b"task a".to_vec();
        let task_b = b"task b".to_vec();
        let receipt = Receipt {
            task_digest: blake3::hash(&task_a).as_bytes().to_vec(),
            outcome: "ok".into(),
            ..Receipt::default()
        };
        let wire =
            Envelope::seal(&worker, RECEIPT_KIND, 1, receipt.encode_to_vec()).encode_to_vec();
        assert_eq!(
            check_receipt(&wire, &task_a, &worker.public()),
            Ok(receipt.clone())
        );
        assert_eq!(
            check_receipt(&wire, &task_b, &worker.public()),
            Err(ReceiptError::OtherTask)
        );
        assert!(matches!(
            check_receipt(&wire, &task_a, &other.public()),
            Err(ReceiptError::WrongSigner { .. })
        ));
        let forged = Envelope::seal(&other, RECEIPT_KIND, 1, receipt.encode_to_vec());
        let mut forged = forged;
        forged.author = worker.public().to_bytes().to_vec();
        assert!(matches!(
            check_receipt(&forged.encode_to_vec(), &task_a, &worker.public()),
            Err(ReceiptError::Envelope(EnvelopeError::BadSignature))
        ));
    }
}
