//! The issuer as an operator runs it: a `p2pctl node` process with
//! `[issuer]`, a key of its own in the node's keystore, webhooks over
//! plain HTTP from several senders at once, and a SIGKILL in the middle of
//! the burst. After a restart every event the node acknowledged is
//! already recorded (a redelivery is a duplicate), and once the provider
//! has redelivered everything, every event has minted exactly once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pc_payments::stripe::Stripe;
use serde_json::{Value, json};

use super::ledger::json_of;
use super::network::{init, start};
use super::{Env, ok, text};

const SECRET: &[u8] = b"whsec_kill_test";
const EVENTS: usize = 400;
const ACCOUNTS: usize = 8;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// One webhook over a fresh HTTP/1.1 connection: the status and body, or
/// the I/O error of a node that went away.
fn post(addr: &str, body: &[u8]) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "POST /v1/issuer/webhooks/stripe HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        Stripe::sign(SECRET, now(), body),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {answer:?}")))?;
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((status, json))
}

fn event(i: usize, account: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": format!("evt_{i:04}"),
        "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": format!("pi_{i:04}"),
            "amount": 1000 + i,
            "currency": "usd",
            "metadata": {"p2pc_account": account},
        }},
    }))
    .expect("json")
}

fn api_addr(dir: &str) -> String {
    let url = std::fs::read_to_string(std::path::Path::new(dir).join("api.url")).expect("api.url");
    url.trim().trim_start_matches("http://").to_owned()
}

#[test]
fn an_issuer_killed_during_a_burst_of_webhooks_mints_every_acknowledged_event_exactly_once() {
    let env = Env::new();
    let dir = init(&env, "issuer", &["/ip4/127.0.0.1/tcp/0"], &[]);
    let keys = format!("{dir}/keys");
    let in_keys = |args: &[&str]| {
        let out = env
            .command(args)
            .env("P2PC_KEYSTORE", &keys)
            .output()
            .expect("p2pctl");
        ok(&out)
    };
    in_keys(&["key", "new", "issuer", "--insecure-no-passphrase"]);
    let issuer: Value =
        serde_json::from_str(&in_keys(&["--json", "key", "show", "issuer"])).expect("json");
    let issuer = issuer["public_key"].as_str().expect("key").to_owned();
    let genesis = env.path("genesis.toml");
    let genesis = genesis.to_str().expect("utf-8");
    ok(&env.run(
        &[
            "ledger",
            "genesis",
            "--network",
            "kill-test",
            "--issuer",
            &issuer,
            "-o",
            genesis,
        ],
        b"",
        None,
    ));
    ok(&env.run(&["ledger", "join", "--node", &dir, genesis], b"", None));
    std::fs::write(format!("{dir}/webhook-secrets"), b"whsec_kill_test\n").expect("secrets");
    let mut toml = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("{dir}/node.toml"))
        .expect("node.toml");
    writeln!(
        toml,
        "\n[issuer]\nkey = \"issuer\"\nwebhook_secrets = \"webhook-secrets\"\nrates = {{ usd = 3 }}\nclearing = \"0s\""
    )
    .expect("write");
    drop(toml);

    let accounts: Vec<String> = (0..ACCOUNTS)
        .map(|i| {
            hex::encode(
                p2pc_crypto::SecretKey::from_seed(&[90 + i as u8; 32])
                    .public()
                    .to_bytes(),
            )
        })
        .collect();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..EVENTS)
            .map(|i| event(i, &accounts[i % ACCOUNTS]))
            .collect(),
    );

    // Four senders at once; the node is killed once about a quarter of
    // the events were acknowledged.
    let node = start(&env, &dir);
    let addr = api_addr(&dir);
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (bodies, acked, addr) = (bodies.clone(), acked.clone(), addr.clone());
            std::thread::spawn(move || {
                for i in (t..EVENTS).step_by(4) {
                    match post(&addr, &bodies[i]) {
                        Ok((200, v)) => {
                            assert_eq!(v["action"], "minted", "{v}");
                            acked.lock().expect("lock").push(i);
                        }
                        Ok((status, v)) => panic!("event {i}: {status} {v}"),
                        // The node is gone: the provider will redeliver.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    while acked.lock().expect("lock").len() < EVENTS / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the issuer acknowledged {} events in two minutes",
            acked.lock().expect("lock").len()
        );
        std::thread::yield_now();
    }
    drop(node); // SIGKILL, then reaped
    for s in senders {
        s.join().expect("a sender");
    }
    let acked = acked.lock().expect("lock").clone();
    eprintln!(
        "issuer test: {} of {EVENTS} events acknowledged before the kill",
        acked.len()
    );
    assert!(
        acked.len() >= EVENTS / 4 && acked.len() < EVENTS,
        "{}",
        acked.len()
    );

    // The node stopped mid-burst; its ledger verifies on disk.
    let report = json_of(&env, &["ledger", "verify", "--node", &dir]);
    assert_eq!(report["ok"], true, "{report}");

    // Restarted, it answers every acknowledged event as a duplicate; then
    // the provider redelivers everything, some twice.
    let node = start(&env, &dir);
    let addr = api_addr(&dir);
    for &i in &acked {
        let (status, v) = post(&addr, &bodies[i]).expect("the issuer answers");
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["duplicate"], true, "acknowledged event {i} was lost: {v}");
    }
    let mut minted_after = 0;
    for round in 0..2 {
        for i in 0..EVENTS {
            let (status, v) = post(&addr, &bodies[i]).expect("the issuer answers");
            assert_eq!(status, 200, "{v}");
            if v["duplicate"] == false {
                assert_eq!(round, 0, "event {i} minted twice: {v}");
                minted_after += 1;
            }
        }
    }
    eprintln!("issuer test: {minted_after} events minted after the restart");
    assert!(minted_after <= EVENTS - acked.len(), "{minted_after}");

    // Every event minted once: supply and each account's balance.
    let want: Vec<u64> = (0..ACCOUNTS)
        .map(|a| {
            (0..EVENTS)
                .filter(|i| i % ACCOUNTS == a)
                .map(|i| 3 * (1000 + i as u64))
                .sum()
        })
        .collect();
    let report = json_of(&env, &["ledger", "verify", "--node", &dir]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["minted"],
        want.iter().sum::<u64>().to_string(),
        "{report}"
    );
    for (account, want) in accounts.iter().zip(&want) {
        let b = json_of(&env, &["ledger", "balance", "--node", &dir, account]);
        assert_eq!(b["available"], *want, "{account}: {b}");
    }
    let status = json_of(&env, &["issuer", "status", "--node", &dir]);
    assert_eq!(status["payments"], EVENTS, "{status}");
    let human = text(
        &env.run(&["issuer", "status", "--node", &dir], b"", None)
            .stdout,
    );
    assert!(human.contains("minted"), "{human}");
    drop(node);
}
