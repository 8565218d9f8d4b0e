//! The issuer service on real nodes, through the real gateway: webhooks
//! signed as the provider signs them, sent over HTTP; mints checked on
//! every replica. A valid event mints once however often and in whatever
//! order it comes; forged, stale, changed, unsigned and unactionable
//! events are refused with a 4xx and mint nothing; bought credits clear
//! before they reach the buyer, and a refund inside the clearing period
//! takes nothing from anyone; a refund after it becomes a debt netted from
//! the account's payouts; payouts move the credits and a failed one
//! returns them.

use std::time::Duration;

use p2pc_crypto::{PublicKey, SecretKey};
use p2pc_ledger::Genesis;
use p2pc_node::api::{IssuerStatus, PaymentView, PayoutView, WebhookReceipt};
use p2pc_payments::stripe::Stripe;
use p2pc_testkit::{Cluster, WAIT, eventually};
use serde_json::{Value, json};

use crate::api::{Http, gateway, send};
use crate::support::{balance, block_on, verify_ok};

const ISSUER: usize = 0;
const OPERATOR: usize = 1;
const SECRET: &[u8] = b"whsec_test_current";
const OLD_SECRET: &[u8] = b"whsec_test_previous";
/// Credits a cent buys.
const RATE: u64 = 10;

fn node_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&[210 + i as u8; 32])
}

fn issuer_key() -> SecretKey {
    SecretKey::from_seed(&[209; 32])
}

/// An issuer node (its issuer key apart from its node key) and an
/// operator's node that asks it for payouts. `clearing` is
/// `[issuer] clearing`.
async fn cluster(dir: &std::path::Path, clearing: Duration) -> Cluster {
    let genesis = Genesis {
        network: "issuer-test".into(),
        issuers: [issuer_key().public()].into(),
        min_window_ms: 300,
        ..Genesis::default()
    };
    let path = dir.join("genesis.toml");
    std::fs::write(&path, genesis.to_toml()).expect("write genesis");
    let secrets = dir.join("webhook-secrets");
    // Two secrets, as during a rotation.
    std::fs::write(&secrets, b"whsec_test_current\nwhsec_test_previous\n").expect("secrets");
    let issuer_peer = node_key(ISSUER).public().peer_id().to_string();
    Cluster::start_keyed((0..2).map(node_key).collect(), |i, c| {
        c.ledger.genesis = Some(path.clone());
        c.ledger.sync_interval = Duration::from_millis(500);
        c.market.base_price = 0;
        if i == ISSUER {
            c.issuer.key = Some("issuer".into());
            c.issuer.webhook_secrets = Some(secrets.clone());
            c.issuer.rates = [("usd".to_owned(), RATE)].into();
            c.issuer.clearing = clearing;
            c.issuer_key = Some(p2pc_node::IssuerKey(std::sync::Arc::new(issuer_key())));
        } else {
            c.payouts.issuer_peer = Some(issuer_peer.clone());
        }
    })
    .await
    .expect("cluster")
}

fn now() -> u64 {
    p2pc_node::messages::now_unix_ms() / 1000
}

/// A `payment_intent.succeeded` event as the provider sends it.
fn payment(event: &str, payment: &str, account: &str, cents: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": event,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": now(),
        "data": {"object": {
            "id": payment,
            "object": "payment_intent",
            "amount": cents,
            "currency": "usd",
            "metadata": {"p2pc_account": account},
        }},
    }))
    .expect("json")
}

fn refund(event: &str, payment: &str, cents: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": event,
        "object": "event",
        "type": "charge.refunded",
        "data": {"object": {
            "id": format!("ch_{payment}"),
            "object": "charge",
            "payment_intent": payment,
            "amount_refunded": cents,
        }},
    }))
    .expect("json")
}

/// Posts `body` to the webhook route with `signature` (none: no header).
async fn deliver(url: &str, body: &[u8], signature: Option<String>) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut r = client
        .post(format!("{url}/v1/issuer/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        r = r.header("Stripe-Signature", s);
    }
    send(r).await
}

/// Signs and posts `body` as the provider would.
async fn signed(url: &str, body: &[u8]) -> (u16, Value) {
    deliver(url, body, Some(Stripe::sign(SECRET, now(), body))).await
}

fn receipt(v: Value) -> WebhookReceipt {
    serde_json::from_value(v).expect("a webhook receipt")
}

async fn available(node: &p2pc_node::ComputeNode, of: PublicKey) -> u64 {
    balance(node, of).await.available
}

async fn minted(node: &p2pc_node::ComputeNode) -> u128 {
    match node
        .ledger(p2pc_node::LedgerRequest::Verify)
        .await
        .expect("verify")
    {
        p2pc_node::LedgerAnswer::Verify(v) => {
            assert!(v.ok, "{v:?}");
            v.minted.parse().expect("a number")
        }
        other => panic!("verify answered {other:?}"),
    }
}

#[test]
fn each_event_mints_exactly_once_however_often_and_in_whatever_order_it_comes() {
    block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let cluster = cluster(dir.path(), Duration::ZERO).await;
        let (_g, url, token) = gateway(&cluster, ISSUER).await;
        let http = Http::new(&url, &token);
        let buyer = SecretKey::generate().public();

        // One event, sent five times: minted by the first, the others
        // answered as duplicates. The second secret (a rotation) works.
        let body = payment("evt_one", "pi_one", &buyer.to_string(), 1234);
        let (status, first) = signed(&url, &body).await;
        assert_eq!(status, 200, "{first}");
        let first = receipt(first);
        assert_eq!(
            (first.action.as_str(), first.duplicate, first.credits),
            ("minted", false, 1234 * RATE)
        );
        for i in 0..4 {
            let secret = if i % 2 == 0 { SECRET } else { OLD_SECRET };
            let (status, again) =
                deliver(&url, &body, Some(Stripe::sign(secret, now(), &body))).await;
            assert_eq!(status, 200, "{again}");
            let again = receipt(again);
            assert!(again.duplicate, "{again:?}");
            assert_eq!(again.op, first.op, "answered as the first time");
        }
        assert_eq!(available(cluster.node(ISSUER), buyer).await, 1234 * RATE);

        // A second success event for the same payment (another event id)
        // mints nothing either.
        let other = payment("evt_one_again", "pi_one", &buyer.to_string(), 1234);
        let (status, v) = signed(&url, &other).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(receipt(v).action, "none");

        // 100 events for 10 accounts, each sent three times, all at once
        // in a shuffled order.
        let accounts: Vec<PublicKey> = (0..10).map(|_| SecretKey::generate().public()).collect();
        let mut expected = vec![0u64; accounts.len()];
        let mut bodies = Vec::new();
        for i in 0..100u64 {
            let a = (i % 10) as usize;
            let cents = 100 + i;
            expected[a] += cents * RATE;
            bodies.push(payment(
                &format!("evt_{i}"),
                &format!("pi_{i}"),
                &accounts[a].to_string(),
                cents,
            ));
        }
        let mut order: Vec<usize> = (0..300).map(|n| n % 100).collect();
        // A fixed permutation: reproducible, far from sorted.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let sends = order.iter().map(|&i| signed(&url, &bodies[i]));
        let answers = futures::future::join_all(sends).await;
        let mut minted_now = std::collections::HashMap::new();
        for (status, v) in answers {
            assert_eq!(status, 200, "{v}");
            let r = receipt(v);
            if !r.duplicate {
                assert_eq!(r.action, "minted", "{r:?}");
                assert!(
                    minted_now.insert(r.event.clone(), r.credits).is_none(),
                    "{r:?} minted twice"
                );
            }
        }
        assert_eq!(minted_now.len(), 100, "every event minted once");

        // Balances and supply match, on the issuer and on the other replica.
        let total: u64 = expected.iter().sum::<u64>() + 1234 * RATE;
        for node in [ISSUER, OPERATOR] {
            let n = cluster.node(node);
            eventually("every mint on every replica", WAIT, || async {
                (minted(n).await == u128::from(total)).then_some(())
            })
            .await
            .expect("supply");
            for (a, want) in accounts.iter().zip(&expected) {
                assert_eq!(available(n, *a).await, *want);
            }
            verify_ok(n).await;
        }
        let (status, s) = send(http.get("/v1/issuer")).await;
        assert_eq!(status, 200, "{s}");
        let s: IssuerStatus = serde_json::from_value(s).expect("status");
        assert_eq!(
            (s.minted, s.payments, s.clearing, s.debt),
            (total, 101, 0, 0)
        );

        // The metrics count what happened.
        let (status, _) = send(http.get("/v1/issuer/payments")).await;
        assert_eq!(status, 200);
        let text = http
            .get("/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(
            text.contains(&format!("p2pc_issuer_minted_credits_total {total}")),
            "{text}"
        );
        assert!(
            text.contains("p2pc_issuer_webhooks_total{outcome=\"minted\"} 101"),
            "{text}"
        );
        assert!(
            text.contains("p2pc_issuer_webhooks_total{outcome=\"duplicate\"} 204"),
            "{text}"
        );
        cluster.shutdown().await;
    });
}

#[test]
fn forged_stale_changed_unsigned_and_unactionable_webhooks_are_refused_and_mint_nothing() {
    block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let cluster = cluster(dir.path(), Duration::ZERO).await;
        let (_g, url, token) = gateway(&cluster, ISSUER).await;
        let http = Http::new(&url, &token);
        let buyer = SecretKey::generate().public().to_string();
        let body = payment("evt_x", "pi_x", &buyer, 500);
        let mut changed = body.clone();
        let at = changed
            .windows(3)
            .position(|w| w == b"500")
            .expect("amount");
        changed[at] = b'9';
        let no_account = serde_json::to_vec(&json!({
            "id": "evt_y", "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_y", "amount": 500, "currency": "usd", "metadata": {}}},
        }))
        .expect("json");
        let bad_account = payment("evt_z", "pi_z", "not-a-key", 500);
        let no_rate = serde_json::to_vec(&json!({
            "id": "evt_w", "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_w", "amount": 500, "currency": "eur",
                "metadata": {"p2pc_account": buyer}}},
        }))
        .expect("json");
        // What is sent, how it is signed, and the status and words expected.
        type Case<'a> = (&'a str, Vec<u8>, Option<String>, u16, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (
                "a wrong secret",
                body.clone(),
                Some(Stripe::sign(b"whsec_other", now(), &body)),
                401,
                "no signature matches",
            ),
            (
                "an old timestamp",
                body.clone(),
                Some(Stripe::sign(SECRET, now() - 301, &body)),
                401,
                "more than the 300 s",
            ),
            (
                "a changed body",
                changed.clone(),
                Some(Stripe::sign(SECRET, now(), &body)),
                401,
                "no signature matches",
            ),
            (
                "no header",
                body.clone(),
                None,
                401,
                "no Stripe-Signature header",
            ),
            (
                "a malformed header",
                body.clone(),
                Some("t=abc,v1=00".into()),
                401,
                "malformed",
            ),
            (
                "no account",
                no_account.clone(),
                Some(Stripe::sign(SECRET, now(), &no_account)),
                422,
                "names no p2pc account",
            ),
            (
                "a malformed account",
                bad_account.clone(),
                Some(Stripe::sign(SECRET, now(), &bad_account)),
                422,
                "not a 64-hex-digit public key",
            ),
            (
                "a currency with no rate",
                no_rate.clone(),
                Some(Stripe::sign(SECRET, now(), &no_rate)),
                422,
                "no rate",
            ),
            (
                "garbage, signed",
                b"{not json".to_vec(),
                Some(Stripe::sign(SECRET, now(), b"{not json")),
                400,
                "does not parse",
            ),
        ];
        for (what, body, signature, want, says) in cases {
            let (status, v) = deliver(&url, &body, signature).await;
            assert_eq!(status, want, "{what}: {v}");
            let detail = v["detail"].as_str().unwrap_or("");
            assert!(
                detail.contains(says),
                "{what}: {detail:?} should say {says:?}"
            );
        }
        // An unknown provider, and an oversized body.
        let client = reqwest::Client::new();
        let r = client
            .post(format!("{url}/v1/issuer/webhooks/paypal"))
            .body("{}");
        assert_eq!(send(r).await.0, 404);
        let big = vec![b' '; 300 << 10];
        let (status, _) = deliver(&url, &big, Some(Stripe::sign(SECRET, now(), &big))).await;
        assert_eq!(status, 413);
        // Nothing was minted or recorded.
        assert_eq!(minted(cluster.node(ISSUER)).await, 0);
        let (_, s) = send(http.get("/v1/issuer")).await;
        let s: IssuerStatus = serde_json::from_value(s).expect("status");
        assert_eq!((s.minted, s.payments), (0, 0));
        // The same event, signed properly, still mints: a refusal recorded
        // nothing that would make it a duplicate.
        let (status, v) = signed(&url, &body).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(receipt(v).action, "minted");
        let text = http
            .get("/metrics")
            .send()
            .await
            .expect("m")
            .text()
            .await
            .expect("t");
        assert!(
            text.contains("p2pc_issuer_webhooks_total{outcome=\"rejected_signature\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("p2pc_issuer_webhooks_total{outcome=\"rejected_event\"} 4"),
            "{text}"
        );
        // A node with no issuer has no webhook route to speak of.
        let (_g1, url1, _) = gateway(&cluster, OPERATOR).await;
        let (status, v) = signed(&url1, &body).await;
        assert_eq!(status, 404, "{v}");
        cluster.shutdown().await;
    });
}

#[test]
fn bought_credits_clear_before_the_buyer_has_them_and_a_refund_inside_clearing_takes_nothing() {
    block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let cluster = cluster(dir.path(), Duration::from_secs(2)).await;
        let (_g, url, token) = gateway(&cluster, ISSUER).await;
        let http = Http::new(&url, &token);
        let issuer = cluster.node(ISSUER);
        let buyer = SecretKey::generate().public();
        let me = issuer_key().public();

        // Payment A clears; payment B is refunded in full inside its
        // clearing period; a refund of C arrives before C's own event.
        let (_, a) = signed(&url, &payment("evt_a", "pi_a", &buyer.to_string(), 100)).await;
        assert_eq!(receipt(a).action, "clearing");
        let (_, b) = signed(&url, &payment("evt_b", "pi_b", &buyer.to_string(), 200)).await;
        assert_eq!(receipt(b).action, "clearing");
        assert_eq!(available(issuer, buyer).await, 0, "not the buyer's yet");
        assert_eq!(
            available(issuer, me).await,
            300 * RATE,
            "the issuer holds them"
        );
        let (_, rb) = signed(&url, &refund("evt_rb", "pi_b", 200)).await;
        assert_eq!(receipt(rb).action, "reversed");
        let (_, rc) = signed(&url, &refund("evt_rc", "pi_c", 50)).await;
        assert_eq!(receipt(rc).action, "reversed");
        let (_, c) = signed(&url, &payment("evt_c", "pi_c", &buyer.to_string(), 50)).await;
        assert_eq!(receipt(c).action, "reversed", "refunded before it was paid");
        // Payment D, sent last, clears last: once the buyer has A and D,
        // B's clearing (earlier) is long over too.
        let (_, d) = signed(&url, &payment("evt_d", "pi_d", &buyer.to_string(), 7)).await;
        assert_eq!(receipt(d).action, "clearing");
        eventually("A and D credited at the end of clearing", WAIT, || async {
            (available(issuer, buyer).await == 107 * RATE).then_some(())
        })
        .await
        .expect("cleared");
        let (_, payments) = send(http.get("/v1/issuer/payments")).await;
        let payments: Vec<PaymentView> = serde_json::from_value(payments).expect("payments");
        let state = |id: &str| {
            payments
                .iter()
                .find(|p| p.payment == id)
                .map(|p| p.state.clone())
                .expect("recorded")
        };
        assert_eq!(
            [state("pi_a"), state("pi_b"), state("pi_c"), state("pi_d")],
            ["credited", "reversed", "reversed", "credited"]
        );
        // B's credits stayed with the issuer: minted, never the buyer's.
        assert_eq!(available(issuer, me).await, 200 * RATE);
        assert_eq!(minted(issuer).await, u128::from(307 * RATE));
        verify_ok(issuer).await;
        cluster.shutdown().await;
    });
}

#[test]
fn payouts_move_credits_a_failed_one_returns_them_and_a_later_refund_is_netted() {
    block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let cluster = cluster(dir.path(), Duration::ZERO).await;
        let (_gi, url, token) = gateway(&cluster, ISSUER).await;
        let issuer_http = Http::new(&url, &token);
        let (_go, op_url, op_token) = gateway(&cluster, OPERATOR).await;
        let operator_http = Http::new(&op_url, &op_token);
        let operator = node_key(OPERATOR).public();
        let (issuer, op_node) = (cluster.node(ISSUER), cluster.node(OPERATOR));

        // The operator's account buys 1,000 credits.
        let (status, v) = signed(&url, &payment("evt_p", "pi_p", &operator.to_string(), 100)).await;
        assert_eq!(status, 200, "{v}");
        eventually("the mint on the operator's replica", WAIT, || async {
            (available(op_node, operator).await == 1000).then_some(())
        })
        .await
        .expect("minted");

        // Payout one: requested, then failed: the credits come back.
        let (status, p) = send(
            operator_http
                .post("/v1/payouts")
                .json(&json!({"amount": 300, "destination": "DE89 3704 0044 0532 0130 00"})),
        )
        .await;
        assert_eq!(status, 201, "{p}");
        let p: PayoutView = serde_json::from_value(p).expect("payout");
        assert_eq!(
            (p.state.as_str(), p.credits, p.netted),
            ("requested", 300, 0)
        );
        assert_eq!(available(op_node, operator).await, 700);
        let (_, listed) = send(issuer_http.get("/v1/issuer/payouts")).await;
        let listed: Vec<PayoutView> = serde_json::from_value(listed).expect("payouts");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, p.id);
        assert_eq!(listed[0].destination, "DE89 3704 0044 0532 0130 00");
        let (status, failed) = send(
            issuer_http
                .post(&format!("/v1/issuer/payouts/{}", p.id))
                .json(&json!({"state": "failed", "reason": "the bank refused the account"})),
        )
        .await;
        assert_eq!(status, 200, "{failed}");
        let failed: PayoutView = serde_json::from_value(failed).expect("payout");
        assert_eq!(failed.state, "failed");
        assert!(failed.returned.is_some());
        eventually("the failed payout's credits back", WAIT, || async {
            (available(op_node, operator).await == 1000).then_some(())
        })
        .await
        .expect("returned");
        // A final payout does not change again.
        let (status, v) = send(
            issuer_http
                .post(&format!("/v1/issuer/payouts/{}", p.id))
                .json(&json!({"state": "sent", "reference": "x"})),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        let (status, v) = send(
            issuer_http
                .post("/v1/issuer/payouts/nonsense")
                .json(&json!({"state": "sent", "reference": "x"})),
        )
        .await;
        assert_eq!(status, 400, "{v}");

        // A refund of 40 % after the credits were the operator's: a debt
        // of 400, netted from the next payout.
        let (_, r) = signed(&url, &refund("evt_pr", "pi_p", 40)).await;
        let r = receipt(r);
        assert_eq!((r.action.as_str(), r.credits), ("debt", 400));
        let (status, p2) = send(
            operator_http
                .post("/v1/payouts")
                .json(&json!({"amount": 500, "destination": "acct_123"})),
        )
        .await;
        assert_eq!(status, 201, "{p2}");
        let p2: PayoutView = serde_json::from_value(p2).expect("payout");
        assert_eq!((p2.state.as_str(), p2.netted), ("requested", 400));
        let (status, sent) = send(
            issuer_http
                .post(&format!("/v1/issuer/payouts/{}", p2.id))
                .json(&json!({"state": "sent", "reference": "tr_42"})),
        )
        .await;
        assert_eq!(status, 200, "{sent}");
        let (_, mine) = send(operator_http.get("/v1/payouts")).await;
        let mine: Vec<PayoutView> = serde_json::from_value(mine).expect("payouts");
        let states: std::collections::BTreeMap<String, String> =
            mine.into_iter().map(|p| (p.id, p.state)).collect();
        assert_eq!(states.get(&p.id).map(String::as_str), Some("failed"));
        assert_eq!(states.get(&p2.id).map(String::as_str), Some("sent"));
        let (_, s) = send(issuer_http.get("/v1/issuer")).await;
        let s: IssuerStatus = serde_json::from_value(s).expect("status");
        assert_eq!((s.debt, s.payouts, s.payouts_waiting), (0, 2, 0));

        // Bad requests: too much, nothing, no destination.
        let (status, v) = send(
            operator_http
                .post("/v1/payouts")
                .json(&json!({"amount": 1_000_000, "destination": "acct_123"})),
        )
        .await;
        assert_eq!(status, 402, "{v}");
        let (status, _) = send(
            operator_http
                .post("/v1/payouts")
                .json(&json!({"amount": 0, "destination": "acct_123"})),
        )
        .await;
        assert_eq!(status, 400);
        let (status, _) = send(
            operator_http
                .post("/v1/payouts")
                .json(&json!({"amount": 5, "destination": " "})),
        )
        .await;
        assert_eq!(status, 400);
        // The issuer has no payout route of its own to ask.
        let (status, v) = send(
            issuer_http
                .post("/v1/payouts")
                .json(&json!({"amount": 5, "destination": "x"})),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        for node in [issuer, op_node] {
            verify_ok(node).await;
        }
        cluster.shutdown().await;
    });
}
