//! The body of the `webhook` fuzz target in `fuzz/`: a webhook as anyone
//! on the internet can send it to the issuer's open route. The bytes are
//! split into a signature header and a body; the body is verified as
//! sent (the signature almost never holds), then signed properly and
//! verified again, so the event parser sees every body too. Must never
//! panic, whatever the input.

use std::collections::BTreeMap;

use crate::Provider;
use crate::stripe::Stripe;

const SECRET: &[u8] = b"whsec_fuzz";
const NOW: u64 = 1_800_000_000;

/// One webhook: the header is the bytes up to the first newline.
pub fn webhook(data: &[u8]) {
    let provider = Stripe::new(
        vec![SECRET.to_vec()],
        BTreeMap::from([("usd".to_owned(), 100), ("eur".to_owned(), u64::MAX)]),
    );
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let header = String::from_utf8_lossy(header);
    let _ = provider.verify(Some(&header), body, NOW);
    let _ = provider.verify(None, body, NOW);
    let signed = Stripe::sign(SECRET, NOW, body);
    // A payment that parses mints exactly amount × rate: overflow is an
    // error, never a wrapped number.
    if let Ok(crate::Event {
        kind:
            crate::EventKind::PaymentSucceeded {
                amount,
                currency,
                credits,
                ..
            },
        ..
    }) = provider.verify(Some(&signed), body, NOW)
    {
        let rate = if currency == "usd" { 100 } else { u64::MAX };
        assert_eq!(amount.checked_mul(rate), Some(credits));
    }
}

#[cfg(test)]
mod tests {
    use p2pc_crypto::fuzzing::inputs;

    use super::*;

    #[test]
    fn smoke_webhooks() {
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount":100,"currency":"usd","metadata":{"p2pc_account":"00"}}}}"#;
        let mut seed = Stripe::sign(SECRET, NOW, body).into_bytes();
        seed.push(b'\n');
        seed.extend_from_slice(body);
        for input in inputs("webhook", &seed, 3000) {
            webhook(&input);
        }
    }
}
