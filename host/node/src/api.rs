//! The typed answers a running node gives its clients, and its ledger
//! requests: shared by the node, the gateway (`p2pc-api`, which serves
//! them as JSON with their schemas) and `p2pctl`. Each is a serde type;
//! no side picks JSON apart by hand.

use p2pc_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A worker's offer, as this node holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OfferView {
    /// The worker.
    pub peer: String,
    /// Credits per million fuel.
    pub price: u64,
    /// Slots free when offered.
    pub free_slots: u32,
    /// Slots in all.
    pub slots: u32,
    /// Busy and waiting tasks per slot, thousandths.
    pub load_permille: u32,
    /// Credits bonded per paid task at most.
    pub collateral: u64,
    /// Executors.
    pub executors: Vec<String>,
    /// It arbitrates.
    pub arbiter: bool,
    /// It takes no new task.
    pub draining: bool,
    /// When the offer expires, Unix milliseconds.
    pub expires_unix_ms: u64,
    /// This node's reputation score of it; none without a record.
    pub reputation: Option<f64>,
}

/// This node's price as a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PriceView {
    /// Whether its tasks are paid (a ledger and a base price above 0).
    pub paid: bool,
    /// The price now, credits per million fuel.
    pub price: u64,
    /// Where the price is heading.
    pub target: u64,
    /// `[market] base_price`, `min_price`, `max_price`.
    pub base: u64,
    /// The floor.
    pub min: u64,
    /// The ceiling.
    pub max: u64,
    /// The smoothed pressure, thousandths (500: the target, half the
    /// slots busy).
    pub pressure_permille: u32,
    /// Slots busy now, and in all.
    pub busy: u32,
    /// Slots in all.
    pub slots: u32,
    /// Tasks waiting for a slot now.
    pub waiting: u32,
    /// Tasks refused for lack of a slot this window.
    pub refused: u32,
    /// The window, milliseconds.
    pub window_ms: u64,
    /// Windows stepped since the node started.
    pub windows: u64,
}

/// What this node knows of one worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReputationView {
    /// The worker.
    pub peer: String,
    /// The score now, 0 to 1 (½ is no evidence either way).
    pub score: f64,
    /// Consecutive valid replicated results.
    pub valid_run: u32,
    /// Whether its tasks are only spot-checked under adaptive validation.
    pub trusted: bool,
    /// The share of its tasks adaptive validation replicates.
    pub replicated_share: f64,
    /// Verified receipts.
    pub success: u64,
    /// Of those, replicated and agreeing.
    pub replicated: u64,
    /// Refunds at the deadline.
    pub timeout: u64,
    /// Wrong answers proved by replication.
    pub cheat: u64,
    /// Equivocations proved.
    pub equivocation: u64,
    /// The last events, oldest first: (evidence, Unix milliseconds).
    pub recent: Vec<(String, u64)>,
}

/// The configuration a running node shows its clients (no secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigSummary {
    /// The data directory.
    pub data_dir: String,
    /// Overlay addresses it listens on.
    pub listen: Vec<String>,
    /// Bootstrap peers.
    pub bootstrap: Vec<String>,
    /// Local discovery on.
    pub mdns: bool,
    /// Task slots.
    pub slots: u32,
    /// Whether it keeps a ledger.
    pub ledger: bool,
    /// Whether it arbitrates.
    pub arbiter: bool,
    /// `[market] base_price`.
    pub base_price: u64,
    /// `[market] validation`.
    pub validation: String,
    /// The most fuel a peer's task may ask for.
    pub max_fuel: u64,
    /// The most memory, bytes.
    pub max_memory: u64,
    /// The longest timeout, milliseconds.
    pub max_timeout_ms: u64,
    /// `[api] listen`.
    pub api_listen: String,
    /// The node's version.
    pub version: String,
}

/// The answer to a drain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Drained {
    /// Tasks still running (they finish; none is taken after them).
    pub running: u64,
}

/// A ledger request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "query", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LedgerRequest {
    /// An account's credits: [`Balance`]. No account: the node's own.
    Balance {
        /// The account.
        #[serde(default)]
        #[schema(value_type = Option<String>)]
        account: Option<PublicKey>,
    },
    /// The last `limit` ops that concern an account: [`History`].
    History {
        /// The account; none: the node's own.
        #[serde(default)]
        #[schema(value_type = Option<String>)]
        account: Option<PublicKey>,
        /// At most this many.
        limit: u64,
    },
    /// Send credits from the node's account: [`Transferred`].
    Transfer {
        /// The receiver.
        #[schema(value_type = String)]
        to: PublicKey,
        /// Whole credits, above 0.
        amount: u64,
    },
    /// Escrows, all or those `account` is party to: [`Holds`].
    Holds {
        /// The account.
        #[serde(default)]
        #[schema(value_type = Option<String>)]
        account: Option<PublicKey>,
    },
    /// Rebuild the state from the ops and check every invariant:
    /// [`Verified`].
    Verify,
}

/// The answer to a [`LedgerRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LedgerAnswer {
    /// To [`LedgerRequest::Balance`].
    Balance(Balance),
    /// To [`LedgerRequest::History`].
    History(History),
    /// To [`LedgerRequest::Transfer`].
    Transferred(Transferred),
    /// To [`LedgerRequest::Holds`].
    Holds(Holds),
    /// To [`LedgerRequest::Verify`].
    Verify(Verified),
}

/// An account's credits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    /// The account.
    #[schema(value_type = String)]
    pub account: PublicKey,
    /// What it can spend now: `balance` plus `incoming`.
    pub available: u64,
    /// Claimed by its own ops and not spent.
    pub balance: u64,
    /// Received but not yet claimed (its next op claims them).
    pub incoming: u64,
    /// Locked in open escrows it owns.
    pub held: u64,
    /// Collateral it posted on open escrows.
    pub bonded: u64,
    /// Owed to it by settled escrows not yet final: paid once the
    /// challenge window closes.
    pub pending: u64,
    /// Frozen for equivocating.
    pub frozen: bool,
    /// Its chain's length.
    pub seq: u64,
}

/// Ops that concern an account, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct History {
    /// The account.
    #[schema(value_type = String)]
    pub account: PublicKey,
    /// How many ops concern it in all.
    pub total: u64,
    /// The last ones.
    pub ops: Vec<OpView>,
}

/// One op as `ledger history` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpView {
    /// The op's id, hex.
    pub id: String,
    /// Who signed it.
    #[schema(value_type = String)]
    pub author: PublicKey,
    /// Its place in the author's chain.
    pub seq: u64,
    /// When its author says it was made.
    pub time_ms: u64,
    /// Transfers it claims.
    pub claims: u64,
    /// `applied`, `waiting`, or `refused: ...`.
    pub status: String,
    /// What it does.
    #[serde(flatten)]
    pub body: OpBody,
}

/// What an op does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpBody {
    /// New credits.
    Mint {
        /// Receiver.
        #[schema(value_type = String)]
        to: PublicKey,
        /// Credits.
        amount: u64,
    },
    /// Credits sent.
    Transfer {
        /// Receiver.
        #[schema(value_type = String)]
        to: PublicKey,
        /// Credits.
        amount: u64,
    },
    /// Credits locked for a task.
    Hold {
        /// The worker.
        #[schema(value_type = String)]
        worker: PublicKey,
        /// The arbiter.
        #[schema(value_type = String)]
        arbiter: PublicKey,
        /// Credits per unit of fuel.
        price: u64,
        /// Most fuel paid for.
        fuel_limit: u64,
        /// Challenge window.
        window_ms: u64,
        /// Collateral asked of the worker.
        collateral: u64,
    },
    /// Credits locked for one task (hold v2).
    TaskHold {
        /// The worker.
        #[schema(value_type = String)]
        worker: PublicKey,
        /// The arbiter.
        #[schema(value_type = String)]
        arbiter: PublicKey,
        /// Credits per million fuel.
        price: u64,
        /// Most fuel paid for.
        fuel_limit: u64,
        /// Challenge window.
        window_ms: u64,
        /// Collateral asked of the worker.
        collateral: u64,
        /// The task's digest, hex.
        task: String,
        /// When owner and arbiter may refund it unsettled, Unix ms.
        deadline_ms: u64,
    },
    /// A worker's collateral posted on an escrow.
    Bond {
        /// The escrow, hex.
        escrow: String,
    },
    /// A settlement, refund or confirmation.
    Decide {
        /// The escrow, hex.
        escrow: String,
        /// Which step.
        step: u64,
        /// What was decided.
        outcome: Decision,
        /// Who cosigned.
        #[schema(value_type = String)]
        cosigner: PublicKey,
    },
}

/// How an escrow was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Pay the worker for this much fuel.
    Pay(u64),
    /// Give the credits back.
    Refund,
    /// Confirm an earlier decision.
    Confirm,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Pay(fuel) => write!(f, "pay for {fuel} fuel"),
            Decision::Refund => f.write_str("refund"),
            Decision::Confirm => f.write_str("confirm"),
        }
    }
}

/// The answer to a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transferred {
    /// The op's id, hex.
    pub id: String,
    /// Applied at once, rather than waiting for an earlier op.
    pub applied: bool,
    /// The sender's balance after it.
    pub balance: u64,
}

/// Escrows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Holds {
    /// Each escrow.
    pub holds: Vec<HeldEscrow>,
}

/// One escrow and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeldEscrow {
    /// The escrow's id (its hold op), hex.
    pub escrow: String,
    /// Who locked the credits.
    #[schema(value_type = String)]
    pub owner: PublicKey,
    /// The worker.
    #[schema(value_type = String)]
    pub worker: PublicKey,
    /// The arbiter.
    #[schema(value_type = String)]
    pub arbiter: PublicKey,
    /// Credits locked.
    pub amount: u64,
    /// Credits per `price_unit` fuel.
    pub price: u64,
    /// Fuel one unit of the price pays for: 1,000,000 for a task hold, 1
    /// for an old (v1) hold.
    pub price_unit: u64,
    /// Most fuel paid for.
    pub fuel_limit: u64,
    /// The task a task hold pays for, hex.
    pub task: Option<String>,
    /// A task hold's deadline, Unix ms.
    pub deadline_ms: Option<u64>,
    /// Challenge window.
    pub window_ms: u64,
    /// Collateral asked of the worker.
    pub collateral: u64,
    /// Whether the worker posted it.
    pub bonded: bool,
    /// The settlement, once made.
    pub settled: Option<Settled>,
    /// The final decision, once the window closed.
    #[serde(rename = "final")]
    pub finalised: Option<Decision>,
}

/// A settlement of an escrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Settled {
    /// What it decided.
    pub outcome: Decision,
    /// When.
    pub time_ms: u64,
}

/// What a full verification of the ledger found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verified {
    /// No problems.
    pub ok: bool,
    /// The network's id, hex.
    pub network: String,
    /// Ops stored.
    pub ops: u64,
    /// Ops applied.
    pub applied: u64,
    /// Accounts.
    pub accounts: u64,
    /// Escrows in all.
    pub escrows: u64,
    /// Escrows still open.
    pub open_escrows: u64,
    /// Credits minted in all (a decimal string: it may pass 2^64).
    pub minted: String,
    /// Equivocation proofs held.
    pub proofs: u64,
    /// Each problem found.
    pub problems: Vec<String>,
    /// Ops dated ahead of the clock, waiting (a running node only).
    #[serde(default)]
    pub future_ops: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_requests_have_one_json_shape_each_and_round_trip() {
        let key = p2pc_crypto::SecretKey::generate().public();
        let cases = [
            (
                LedgerRequest::Balance { account: None },
                serde_json::json!({"query": "balance", "account": null}),
            ),
            (
                LedgerRequest::Transfer { to: key, amount: 5 },
                serde_json::json!({"query": "transfer", "to": key.to_string(), "amount": 5}),
            ),
        ];
        for (request, json) in cases {
            assert_eq!(serde_json::to_value(&request).expect("serialise"), json);
            let back: LedgerRequest = serde_json::from_value(json).expect("parse");
            assert_eq!(back, request);
        }
        let err = serde_json::from_value::<LedgerRequest>(serde_json::json!({"query": "mint"}))
            .expect_err("no such query");
        assert!(err.to_string().contains("mint"), "{err}");
    }

    #[test]
    fn each_ledger_answer_comes_back_as_itself() {
        let key = p2pc_crypto::SecretKey::generate().public();
        let answers = [
            LedgerAnswer::Balance(Balance {
                account: key,
                available: 3,
                balance: 1,
                incoming: 2,
                held: 3,
                bonded: 0,
                pending: 5,
                frozen: false,
                seq: 4,
            }),
            LedgerAnswer::History(History {
                account: key,
                total: 1,
                ops: vec![OpView {
                    id: "00".into(),
                    author: key,
                    seq: 1,
                    time_ms: 2,
                    claims: 0,
                    status: "applied".into(),
                    body: OpBody::Decide {
                        escrow: "11".into(),
                        step: 1,
                        outcome: Decision::Pay(7),
                        cosigner: key,
                    },
                }],
            }),
            LedgerAnswer::Transferred(Transferred {
                id: "22".into(),
                applied: true,
                balance: 9,
            }),
            LedgerAnswer::Holds(Holds { holds: Vec::new() }),
            LedgerAnswer::Verify(Verified {
                ok: true,
                network: "33".into(),
                ops: 1,
                applied: 1,
                accounts: 1,
                escrows: 0,
                open_escrows: 0,
                minted: "10".into(),
                proofs: 0,
                problems: Vec::new(),
                future_ops: Some(2),
            }),
        ];
        for answer in answers {
            let json = serde_json::to_string(&answer).expect("serialise");
            let back: LedgerAnswer = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, answer, "{json}");
        }
    }
}

/// What the issuer did with one webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookReceipt {
    /// The provider's event id.
    pub event: String,
    /// The payment it is about.
    pub payment: String,
    /// `minted` (credits to the buyer), `clearing` (minted to the issuer,
    /// to reach the buyer when clearing ends), `reversed` (a refund or
    /// dispute before the credits reached the buyer), `debt` (after),
    /// `ignored` (a kind the issuer does not act on), or `none` (nothing
    /// left to do, e.g. a second success event for one payment).
    pub action: String,
    /// This event id was seen before: nothing was done again.
    pub duplicate: bool,
    /// The op the event caused, hex; none when it caused none.
    pub op: Option<String>,
    /// Credits minted or owed by it.
    pub credits: u64,
}

/// A payment the issuer knows of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    /// The provider's payment id.
    pub payment: String,
    /// The account it buys credits for, once the success event named it.
    pub account: Option<String>,
    /// Minor units paid.
    pub amount: u64,
    /// Currency, lower case.
    pub currency: String,
    /// Credits it bought.
    pub credits: u64,
    /// Minor units refunded so far.
    pub refunded: u64,
    /// The payer disputed it.
    pub disputed: bool,
    /// `clearing`, `credited`, `reversed`, or `unseen` (a refund or
    /// dispute came before the payment's own event).
    pub state: String,
    /// When clearing ends, Unix ms (with `clearing`).
    pub clears_unix_ms: Option<u64>,
    /// The mint op, hex.
    pub mint: Option<String>,
    /// The transfer to the buyer at the end of clearing, hex.
    pub credit: Option<String>,
}

/// A payout request, as the issuer records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PayoutView {
    /// Its id: the transfer op's id, hex.
    pub id: String,
    /// The operator's account.
    pub account: String,
    /// Credits moved to the issuer.
    pub credits: u64,
    /// Of them, credits kept against the account's debt (money is sent
    /// for the rest).
    pub netted: u64,
    /// Where the money goes, as the operator gave it.
    pub destination: String,
    /// `unsent` (on the operator's node: not yet acknowledged by the
    /// issuer), `requested`, `sent`, or `failed`.
    pub state: String,
    /// The provider's reference once sent; why, once failed.
    pub detail: String,
    /// With `failed`: the transfer returning the credits, hex.
    pub returned: Option<String>,
}

/// The issuer service's summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuerStatus {
    /// The issuer's account.
    pub account: String,
    /// The provider (`stripe`).
    pub provider: String,
    /// Credits minted for payments, in all.
    pub minted: u64,
    /// Credits in clearing: minted, not yet the buyers'.
    pub clearing: u64,
    /// The issuer's spendable balance: clearing credits, payouts
    /// received, reversed payments' credits.
    pub balance: u64,
    /// Credits accounts owe for payments reversed after they were
    /// credited.
    pub debt: u64,
    /// Payments recorded.
    pub payments: usize,
    /// Payouts recorded.
    pub payouts: usize,
    /// Payouts in `requested`.
    pub payouts_waiting: usize,
    /// How long bought credits clear, milliseconds.
    pub clearing_ms: u64,
}

/// What the issuer's operator says became of a payout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PayoutUpdate {
    /// Sent: the provider's reference.
    Sent {
        /// The transfer's reference at the provider or bank.
        reference: String,
    },
    /// Failed for good: the credits go back to the operator.
    Failed {
        /// Why.
        reason: String,
    },
}

/// An operator's payout request, to its own node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutRequestBody {
    /// Credits to turn into money.
    pub amount: u64,
    /// Where the money goes (an IBAN, a provider account id), at most 256
    /// bytes.
    pub destination: String,
}
