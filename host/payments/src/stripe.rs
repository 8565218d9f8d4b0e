//! Stripe-style signed webhooks.
//!
//! The `Stripe-Signature` header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`
//! (other schemes, such as `v0`, are ignored). Each `v1` is
//! HMAC-SHA256(secret, `"{t}.{raw body}"`). A webhook is accepted when its
//! timestamp is within the tolerance of now (300 s by default) and any
//! `v1` matches under any configured secret: during a rotation the
//! provider signs with both secrets, and both are configured. The
//! signature is checked before a byte of the body is parsed.
//!
//! Events acted on: `payment_intent.succeeded` (mint), `charge.refunded`
//! (refund) and `charge.dispute.created` (dispute); every other type is
//! acknowledged and ignored. A payment names its p2pc account in
//! `metadata.p2pc_account`.
//!
//! The outgoing side records payout requests only: no provider can be
//! reached from the machines this is built on, so a payout stays
//! `requested` until an operator sends it (see `docs/design/payments.md`).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::{Event, EventKind, PayoutRequest, PayoutState, Provider, WebhookError};

/// The header the signature travels in.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";
/// The metadata key naming the account a payment buys credits for.
pub const ACCOUNT_KEY: &str = "p2pc_account";
/// How far a timestamp may be from now, by default.
pub const DEFAULT_TOLERANCE_S: u64 = 300;
/// Longest header accepted: a few signatures, never kilobytes.
const MAX_HEADER: usize = 4096;
/// Most `v1` signatures a header may carry (a provider sends one per
/// active secret: two during a rotation).
const MAX_SIGNATURES: usize = 8;

/// A Stripe-style provider: its webhook secrets and the credit rates.
#[derive(Clone)]
pub struct Stripe {
    secrets: Vec<Vec<u8>>,
    tolerance_s: u64,
    /// Credits per minor unit, by lower-case currency code.
    rates: BTreeMap<String, u64>,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe")
            .field("secrets", &self.secrets.len())
            .field("tolerance_s", &self.tolerance_s)
            .field("rates", &self.rates)
            .finish()
    }
}

impl Stripe {
    /// A provider accepting webhooks signed with any of `secrets`, minting
    /// at `rates` (credits per minor unit, by currency).
    pub fn new(secrets: Vec<Vec<u8>>, rates: BTreeMap<String, u64>) -> Self {
        Self {
            secrets,
            tolerance_s: DEFAULT_TOLERANCE_S,
            rates: rates
                .into_iter()
                .map(|(c, r)| (c.to_ascii_lowercase(), r))
                .collect(),
        }
    }

    /// Another tolerance on the timestamp.
    pub fn with_tolerance(mut self, seconds: u64) -> Self {
        self.tolerance_s = seconds;
        self
    }

    /// The `Stripe-Signature` value for `body` at `timestamp` under
    /// `secret`, as the provider makes it: what a test sender uses.
    pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
        format!(
            "t={timestamp},v1={}",
            hex::encode(mac(secret, timestamp, body))
        )
    }

    fn check(&self, header: &str, body: &[u8], now_unix: u64) -> Result<(), WebhookError> {
        if header.len() > MAX_HEADER {
            return Err(WebhookError::MalformedSignature("too long".into()));
        }
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            let Some((k, v)) = part.trim().split_once('=') else {
                return Err(WebhookError::MalformedSignature(format!(
                    "{part:?} is not key=value"
                )));
            };
            match k {
                "t" => {
                    let t: u64 = v.parse().map_err(|_| {
                        WebhookError::MalformedSignature(format!("t={v} is not a time"))
                    })?;
                    if timestamp.replace(t).is_some() {
                        return Err(WebhookError::MalformedSignature("two timestamps".into()));
                    }
                }
                "v1" if signatures.len() == MAX_SIGNATURES => {
                    return Err(WebhookError::MalformedSignature(format!(
                        "more than {MAX_SIGNATURES} v1 signatures"
                    )));
                }
                "v1" => match hex::decode(v) {
                    Ok(sig) if sig.len() == 32 => signatures.push(sig),
                    _ => {
                        return Err(WebhookError::MalformedSignature(format!(
                            "v1={v} is not 64 hex digits"
                        )));
                    }
                },
                // Other schemes (v0, test schemes) are not ours to check.
                _ => {}
            }
        }
        let Some(t) = timestamp else {
            return Err(WebhookError::MalformedSignature("no t=".into()));
        };
        if signatures.is_empty() {
            return Err(WebhookError::MalformedSignature("no v1=".into()));
        }
        let age_s = now_unix.abs_diff(t);
        if age_s > self.tolerance_s {
            return Err(WebhookError::Stale {
                age_s,
                tolerance_s: self.tolerance_s,
            });
        }
        // One MAC a secret, however many signatures the header carries:
        // the work an unauthenticated request can cause is bounded by the
        // secrets configured, not by what it sends.
        for secret in &self.secrets {
            let tag = keyed(secret, t, body).finalize().into_bytes();
            for sig in &signatures {
                if constant_time_eq(&tag, sig) {
                    return Ok(());
                }
            }
        }
        Err(WebhookError::BadSignature)
    }

    fn parse(&self, body: &[u8]) -> Result<Event, WebhookError> {
        let raw: RawEvent =
            serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        let object = raw.data.object;
        let kind = match raw.kind.as_str() {
            "payment_intent.succeeded" => {
                let account = object
                    .metadata
                    .get(ACCOUNT_KEY)
                    .ok_or(WebhookError::NoAccount(ACCOUNT_KEY))?;
                let account = account
                    .parse()
                    .map_err(|_| WebhookError::BadAccount(account.clone()))?;
                let amount = object
                    .amount
                    .ok_or_else(|| WebhookError::Malformed("a payment with no amount".into()))?;
                let currency = object
                    .currency
                    .ok_or_else(|| WebhookError::Malformed("a payment with no currency".into()))?
                    .to_ascii_lowercase();
                let rate = *self
                    .rates
                    .get(&currency)
                    .ok_or_else(|| WebhookError::UnknownCurrency(currency.clone()))?;
                let credits = amount
                    .checked_mul(rate)
                    .ok_or(WebhookError::Overflow { amount, rate })?;
                EventKind::PaymentSucceeded {
                    account,
                    amount,
                    currency,
                    credits,
                }
            }
            "charge.refunded" => EventKind::Refunded {
                amount: object.amount_refunded.unwrap_or(0),
            },
            "charge.dispute.created" => EventKind::Disputed,
            other => EventKind::Ignored(other.to_owned()),
        };
        // A charge or dispute names the payment it belongs to.
        let payment = object.payment_intent.unwrap_or(object.id);
        Ok(Event {
            id: raw.id,
            payment,
            kind,
        })
    }
}

/// Whether `a` and `b` are equal, in time that does not depend on where
/// they differ (`subtle`, which `hmac`'s own comparison uses).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn keyed(secret: &[u8], timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> [u8; 32] {
    keyed(secret, timestamp, body)
        .finalize()
        .into_bytes()
        .into()
}

impl Provider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn verify(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now_unix: u64,
    ) -> Result<Event, WebhookError> {
        let header = signature.ok_or(WebhookError::MissingSignature(SIGNATURE_HEADER))?;
        self.check(header, body, now_unix)?;
        self.parse(body)
    }

    fn payout(&self, _request: &PayoutRequest) -> PayoutState {
        PayoutState::Requested
    }
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: RawObject,
}

#[derive(Deserialize)]
struct RawObject {
    id: String,
    #[serde(default)]
    amount: Option<u64>,
    #[serde(default)]
    amount_refunded: Option<u64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    payment_intent: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const NOW: u64 = 1_764_720_000;

    fn stripe() -> Stripe {
        Stripe::new(vec![SECRET.to_vec()], [("EUR".to_owned(), 100)].into())
    }

    fn payment(id: &str, account: &str, amount: u64) -> Vec<u8> {
        serde_json::json!({
            "id": id,
            "type": "payment_intent.succeeded",
            "created": NOW,
            "data": {"object": {
                "id": "pi_1", "amount": amount, "currency": "eur",
                "metadata": {"p2pc_account": account}
            }}
        })
        .to_string()
        .into_bytes()
    }

    fn account() -> String {
        p2pc_crypto::SecretKey::from_seed(&[1; 32])
            .public()
            .to_string()
    }

    #[test]
    fn a_signed_payment_mints_at_the_rate() {
        let body = payment("evt_1", &account(), 2500);
        let sig = Stripe::sign(SECRET, NOW - 10, &body);
        let event = stripe().verify(Some(&sig), &body, NOW).expect("valid");
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.payment, "pi_1");
        assert_eq!(
            event.kind,
            EventKind::PaymentSucceeded {
                account: account().parse().expect("key"),
                amount: 2500,
                currency: "eur".into(),
                credits: 250_000,
            }
        );
    }

    #[test]
    fn every_bad_webhook_is_refused_with_its_own_error() {
        let s = stripe();
        let body = payment("evt_1", &account(), 2500);
        let good = Stripe::sign(SECRET, NOW, &body);
        assert_eq!(
            s.verify(None, &body, NOW),
            Err(WebhookError::MissingSignature(SIGNATURE_HEADER))
        );
        let wrong = Stripe::sign(b"another secret", NOW, &body);
        assert_eq!(
            s.verify(Some(&wrong), &body, NOW),
            Err(WebhookError::BadSignature)
        );
        let mut changed = body.clone();
        changed[20] ^= 1;
        assert_eq!(
            s.verify(Some(&good), &changed, NOW),
            Err(WebhookError::BadSignature)
        );
        let old = Stripe::sign(SECRET, NOW - 301, &body);
        assert_eq!(
            s.verify(Some(&old), &body, NOW),
            Err(WebhookError::Stale {
                age_s: 301,
                tolerance_s: 300
            })
        );
        let ahead = Stripe::sign(SECRET, NOW + 301, &body);
        assert!(matches!(
            s.verify(Some(&ahead), &body, NOW),
            Err(WebhookError::Stale { .. })
        ));
        for header in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,t=2,v1=00", "nonsense"] {
            assert!(
                matches!(
                    s.verify(Some(header), &body, NOW),
                    Err(WebhookError::MalformedSignature(_))
                ),
                "{header:?}"
            );
        }
        let signed = |b: &[u8]| Stripe::sign(SECRET, NOW, b);
        let none = serde_json::json!({"id": "e", "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi", "amount": 1, "currency": "eur"}}})
        .to_string();
        assert_eq!(
            s.verify(Some(&signed(none.as_bytes())), none.as_bytes(), NOW),
            Err(WebhookError::NoAccount(ACCOUNT_KEY))
        );
        let bad = payment("evt_2", "not-a-key", 1);
        assert_eq!(
            s.verify(Some(&signed(&bad)), &bad, NOW),
            Err(WebhookError::BadAccount("not-a-key".into()))
        );
        assert!(matches!(
            s.verify(Some(&signed(b"{]")), b"{]", NOW),
            Err(WebhookError::Malformed(_))
        ));
        let huge = payment("evt_3", &account(), u64::MAX);
        assert_eq!(
            s.verify(Some(&signed(&huge)), &huge, NOW),
            Err(WebhookError::Overflow {
                amount: u64::MAX,
                rate: 100
            })
        );
    }

    #[test]
    fn during_a_rotation_either_secret_and_any_v1_is_accepted() {
        let s = Stripe::new(
            vec![b"old".to_vec(), b"new".to_vec()],
            [("eur".to_owned(), 1)].into(),
        );
        let body = payment("evt_1", &account(), 5);
        for secret in [b"old".as_slice(), b"new"] {
            let sig = Stripe::sign(secret, NOW, &body);
            assert!(s.verify(Some(&sig), &body, NOW).is_ok());
        }
        // Both signatures in one header, one of them from a secret not
        // configured, and a v0 to ignore.
        let stranger = hex::encode(mac(b"stranger", NOW, &body));
        let new = hex::encode(mac(b"new", NOW, &body));
        let header = format!("t={NOW},v1={stranger},v0=abc,v1={new}");
        assert!(s.verify(Some(&header), &body, NOW).is_ok());
        // Eight signatures are read; a ninth is refused before any MAC, so
        // a header cannot multiply the work a request causes.
        let eight = format!("t={NOW}{},v1={new}", format!(",v1={stranger}").repeat(7));
        assert!(s.verify(Some(&eight), &body, NOW).is_ok());
        let nine = format!("t={NOW}{},v1={new}", format!(",v1={stranger}").repeat(8));
        assert!(matches!(
            s.verify(Some(&nine), &body, NOW),
            Err(WebhookError::MalformedSignature(m)) if m.contains("more than 8")
        ));
    }

    #[test]
    fn refunds_disputes_and_other_events() {
        let s = stripe();
        let refund = serde_json::json!({"id": "evt_r", "type": "charge.refunded",
            "data": {"object": {"id": "ch_1", "payment_intent": "pi_1", "amount_refunded": 700}}})
        .to_string();
        let e = s
            .verify(
                Some(&Stripe::sign(SECRET, NOW, refund.as_bytes())),
                refund.as_bytes(),
                NOW,
            )
            .expect("refund");
        assert_eq!(
            (e.payment.as_str(), e.kind),
            ("pi_1", EventKind::Refunded { amount: 700 })
        );
        let other = serde_json::json!({"id": "evt_o", "type": "customer.created",
            "data": {"object": {"id": "cus_1"}}})
        .to_string();
        let e = s
            .verify(
                Some(&Stripe::sign(SECRET, NOW, other.as_bytes())),
                other.as_bytes(),
                NOW,
            )
            .expect("other");
        assert_eq!(e.kind, EventKind::Ignored("customer.created".into()));
    }
}
