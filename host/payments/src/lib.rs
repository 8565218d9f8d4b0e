//! Payment providers for p2pc's issuer: how money coming in and going out
//! is told to the network. A [`Provider`] verifies a provider's webhook
//! (its signature before anything is parsed) and turns it into an
//! [`Event`]: a payment that mints credits, a refund or a dispute that
//! claws them back while they are still held; and it sends payouts.
//!
//! One real provider: [`stripe::Stripe`], Stripe-style signed webhooks
//! (HMAC-SHA256 over `"{timestamp}.{raw body}"`, a tolerance on the
//! timestamp, several signatures accepted during secret rotation).
//!
//! Pure: no I/O, no clock (the time is passed in), no ledger. Recording
//! events exactly once and signing mints are the issuer service's job in
//! `p2pc-node`.

#![deny(missing_docs)]

pub mod fuzzing;
pub mod stripe;

use p2pc_crypto::PublicKey;

/// What a verified webhook says happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The provider's id for the event: the same on every retry, so it is
    /// what exactly-once is keyed on.
    pub id: String,
    /// The provider's id for the payment the event is about.
    pub payment: String,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of event the issuer acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Money arrived for `account`: mint `credits`.
    PaymentSucceeded {
        /// The p2pc account the payment's metadata names.
        account: PublicKey,
        /// The amount in the currency's minor unit (cents).
        amount: u64,
        /// ISO 4217 code, lower case.
        currency: String,
        /// Credits at the configured rate.
        credits: u64,
    },
    /// The payment was refunded (`amount` minor units of it).
    Refunded {
        /// The minor units refunded.
        amount: u64,
    },
    /// The payer disputed the payment (a chargeback).
    Disputed,
    /// A kind the issuer does not act on; acknowledged and recorded.
    Ignored(String),
}

/// Why a webhook was refused. Every variant is the sender's fault and is
/// answered with a 4xx; nothing is recorded or minted for it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookError {
    /// No signature header.
    #[error("no {0} header: webhooks must be signed")]
    MissingSignature(&'static str),
    /// The signature header does not parse.
    #[error("the signature header is malformed: {0}")]
    MalformedSignature(String),
    /// The timestamp is outside the tolerance: a replay, or a clock far off.
    #[error(
        "the signature's timestamp is {age_s} s from now, more than the {tolerance_s} s allowed"
    )]
    Stale {
        /// Seconds between the timestamp and now (either way).
        age_s: u64,
        /// The tolerance.
        tolerance_s: u64,
    },
    /// No signature matches the body with any configured secret.
    #[error("no signature matches the body: a wrong secret, or the body was changed")]
    BadSignature,
    /// The body is not an event of the provider's format.
    #[error("the event does not parse: {0}")]
    Malformed(String),
    /// A payment whose metadata names no p2pc account.
    #[error("the payment names no p2pc account (metadata.{0})")]
    NoAccount(&'static str),
    /// A payment whose account is not an Ed25519 public key.
    #[error("the payment's p2pc account {0:?} is not a 64-hex-digit public key")]
    BadAccount(String),
    /// A currency with no configured rate.
    #[error("no rate is configured for currency {0:?}")]
    UnknownCurrency(String),
    /// The amount times the rate does not fit.
    #[error("{amount} at {rate} credits per unit overflows")]
    Overflow {
        /// Minor units.
        amount: u64,
        /// Credits per minor unit.
        rate: u64,
    },
}

/// A payout to send: credits an operator turned back into money.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutRequest {
    /// The issuer's id for it (the transfer op's id, hex).
    pub id: String,
    /// Who is paid.
    pub account: PublicKey,
    /// Credits paid out.
    pub credits: u64,
    /// Where the money goes, as the operator gave it (an IBAN, a
    /// provider account id); opaque here.
    pub destination: String,
}

/// What became of a payout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayoutState {
    /// Recorded, not yet sent.
    Requested,
    /// Sent; the provider's reference.
    Sent(String),
    /// Failed for good: the credits go back.
    Failed(String),
}

/// The header provider `name` signs its webhooks in, if `name` is a
/// provider this crate knows.
pub fn signature_header(name: &str) -> Option<&'static str> {
    match name {
        "stripe" => Some(stripe::SIGNATURE_HEADER),
        _ => None,
    }
}

/// One payment provider, both ways.
pub trait Provider: Send + Sync {
    /// Its name, as config and metrics name it (`stripe`).
    fn name(&self) -> &'static str;

    /// Verifies a webhook and parses it. `signature` is the value of the
    /// provider's signature header, if the request had one; `body` the raw
    /// bytes as received; `now_unix` the time.
    fn verify(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now_unix: u64,
    ) -> Result<Event, WebhookError>;

    /// Sends a payout, or says why it cannot.
    fn payout(&self, request: &PayoutRequest) -> PayoutState;
}
