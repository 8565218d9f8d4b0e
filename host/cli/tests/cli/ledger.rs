//! `p2pctl ledger` on a node directory: a writer killed with SIGKILL loses
//! no acknowledged op, and the commands work against a running node and a
//! stopped one alike.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::Value;

use super::network::{init, init_with, start, start_with};
use super::{Env, ok, text};

/// A node directory whose own key starts with 1,000,000 credits.
fn node_with_ledger(env: &Env, name: &str) -> String {
    let dir = init(env, name, &["/ip4/127.0.0.1/tcp/0"], &[]);
    let public = public_key_of(&dir);
    let genesis = env.path(&format!("{name}-genesis.toml"));
    let genesis = genesis.to_str().expect("utf-8 path");
    ok(&env.run(
        &[
            "ledger",
            "genesis",
            "--network",
            "crash-test",
            "--mint",
            &format!("{public}=1000000"),
            "-o",
            genesis,
        ],
        b"",
        None,
    ));
    ok(&env.run(&["ledger", "join", "--node", &dir, genesis], b"", None));
    dir
}

pub(crate) fn public_key_of(dir: &str) -> String {
    let keys = std::path::Path::new(dir).join("keys");
    let env_keys = Env::new();
    let out = env_keys
        .command(&["key", "show", "node", "--json"])
        .env("P2PC_KEYSTORE", &keys)
        .output()
        .expect("key show");
    let v: Value = serde_json::from_str(&text(&out.stdout)).expect("json");
    v["public_key"].as_str().expect("public key").to_owned()
}

pub(crate) fn json_of(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(&env.run(&all, b"", None))).expect("json")
}

#[test]
fn a_writer_killed_at_random_points_loses_no_acknowledged_op() {
    let env = Env::new();
    let dir = node_with_ledger(&env, "crash");
    let mut acked: Vec<String> = Vec::new();
    // Ops on disk after the previous round.
    let mut before: usize = 0;
    // Kill points from a fixed pseudo-random sequence: reproducible runs,
    // varied places (between ops, mid-batch, mid-fsync).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..6 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let kill_after = 1 + (seed >> 33) % 40;
        let mut child = env
            .command(&[
                "internal",
                "ledger-append",
                "--node",
                &dir,
                "--count",
                "100000",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut seen = 0;
        for line in lines.by_ref() {
            let line = line.expect("line");
            assert_eq!(line.len(), 64, "an op id: {line}");
            acked.push(line);
            seen += 1;
            if seen >= kill_after {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reap");
        assert!(!status.success(), "round {round}: the writer was killed");
        // Ops it acknowledged before the kill landed but that were still
        // in the pipe: acknowledged all the same.
        for line in lines {
            let Ok(line) = line else { break };
            if line.len() == 64 {
                acked.push(line);
                seen += 1;
            }
        }

        // Every acknowledged op is there and the ledger verifies.
        let report = json_of(&env, &["ledger", "verify", "--node", &dir]);
        assert_eq!(report["ok"], true, "round {round}: {report}");
        let ops = report["ops"].as_u64().expect("count") as usize;
        assert!(
            ops >= acked.len(),
            "round {round}: {ops} ops < {} acknowledged",
            acked.len()
        );
        let history = json_of(
            &env,
            &["ledger", "history", "--node", &dir, "--limit", "1000000"],
        );
        let held: std::collections::HashSet<&str> = history["ops"]
            .as_array()
            .expect("ops")
            .iter()
            .filter_map(|o| o["id"].as_str())
            .collect();
        for id in &acked {
            assert!(
                held.contains(id.as_str()),
                "round {round}: acknowledged op {id} lost"
            );
        }
        // This round kept what it acknowledged, plus at most the one op
        // being written when it was killed (earlier rounds may each have
        // kept one such op too).
        assert!(
            ops <= before + seen as usize + 1,
            "round {round}: {ops} ops after {before} and {seen} acknowledged"
        );
        before = ops;
    }
    let balance = json_of(&env, &["ledger", "balance", "--node", &dir]);
    let ops = json_of(&env, &["ledger", "verify", "--node", &dir])["ops"]
        .as_u64()
        .expect("count");
    assert_eq!(balance["available"], 1_000_000 - ops, "{balance}");
}

#[test]
fn ledger_commands_through_a_running_node_and_on_a_stopped_one() {
    let env = Env::new();
    let dir = node_with_ledger(&env, "live");
    // A node without a ledger; its key is the receiving account.
    let bare = init(&env, "bare", &["/ip4/127.0.0.1/tcp/0"], &[]);
    let someone = public_key_of(&bare);
    let someone = someone.as_str();

    // Stopped: answered from the database.
    let t = json_of(&env, &["ledger", "transfer", "--node", &dir, someone, "40"]);
    assert_eq!(t["applied"], true, "{t}");
    {
        let _node = start(&env, &dir);
        // Running: through the control channel (the database is the
        // node's now).
        let t = json_of(&env, &["ledger", "transfer", "--node", &dir, someone, "2"]);
        assert_eq!(t["balance"], 1_000_000 - 42, "{t}");
        let b = json_of(&env, &["ledger", "balance", "--node", &dir, someone]);
        assert_eq!(b["incoming"], 42, "{b}");
        let out = env.run(
            &["ledger", "transfer", "--node", &dir, someone, "99999999"],
            b"",
            None,
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(
            text(&out.stderr).contains("not enough credits: 99999999 needed, 999958 available"),
            "{}",
            text(&out.stderr)
        );
        let human = ok(&env.run(&["ledger", "verify", "--node", &dir], b"", None));
        assert!(human.contains("2 ops (2 applied)"), "{human}");
        let holds = ok(&env.run(&["ledger", "holds", "--node", &dir], b"", None));
        assert_eq!(holds.trim(), "no escrows");
    }
    let history = json_of(&env, &["ledger", "history", "--node", &dir]);
    assert_eq!(history["total"], 2, "{history}");

    // Clear refusals.
    let out = env.run(
        &["ledger", "join", "--node", &dir, "/nonexistent.toml"],
        b"",
        None,
    );
    assert!(
        text(&out.stderr).contains("already names a genesis file"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(
        &["ledger", "transfer", "--node", &dir, "nobody", "1"],
        b"",
        None,
    );
    assert!(
        text(&out.stderr).contains("is not a public key"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["ledger", "verify", "--node", &bare], b"", None);
    assert!(
        text(&out.stderr).contains("has no ledger"),
        "{}",
        text(&out.stderr)
    );
}

/// Three real node processes on one ledger: a job submitted through the
/// CLI is paid for the fuel it used, `ledger balance` shows what each side
/// can spend, and every replica verifies.
#[test]
fn a_paid_job_through_the_cli_moves_exactly_its_cost() {
    let env = Env::new();
    let tcp = ["/ip4/127.0.0.1/tcp/0"];
    let arbiter_dir = init_with(&env, "arbiter", &tcp, &[], &["--arbiter", "--price", "0"]);
    let arbiter_key = public_key_of(&arbiter_dir);
    let worker_dir = init_with(
        &env,
        "worker",
        &tcp,
        &[],
        &[
            "--price",
            "3",
            "--collateral",
            "5",
            "--accept-arbiter",
            &arbiter_key,
        ],
    );
    let submitter_dir = init_with(&env, "submitter", &tcp, &[], &["--price", "0"]);
    let genesis = env.path("genesis.toml").display().to_string();
    let submitter_key = public_key_of(&submitter_dir);
    let worker_key = public_key_of(&worker_dir);
    ok(&env.run(
        &[
            "ledger",
            "genesis",
            "--network",
            "paid-cli",
            "--mint",
            &format!("{submitter_key}=1000000"),
            "--mint",
            &format!("{worker_key}=100"),
            "--challenge-window",
            "1s",
            "-o",
            &genesis,
        ],
        b"",
        None,
    ));
    for dir in [&arbiter_dir, &worker_dir, &submitter_dir] {
        ok(&env.run(&["ledger", "join", "--node", dir, &genesis], b"", None));
    }
    let arbiter = start(&env, &arbiter_dir);
    let boot = format!("{}/p2p/{}", arbiter.addrs[0], arbiter.peer_id);
    let worker = start_with(&env, &worker_dir, &[("P2PC_BOOTSTRAP", &boot)]);
    let submitter = start_with(&env, &submitter_dir, &[("P2PC_BOOTSTRAP", &boot)]);
    // The submitter needs the worker's and the arbiter's adverts.
    let mut heard = 0;
    for _ in 0..600 {
        heard = json_of(&env, &["node", "status", "--node", &submitter.dir])["workers_known"]
            .as_u64()
            .unwrap_or(0);
        if heard >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(heard >= 2, "adverts heard: {heard}");

    let file = p2pc_testkit::bundle(
        &p2pc_crypto::SecretKey::generate(),
        "hello",
        p2pc_tests::guest_bytes("hello"),
        p2pc_crypto::RequestedLimits::default(),
    );
    std::fs::write(env.path("hello.p2pcb"), file).expect("write bundle");
    std::fs::write(env.path("name"), b"cli").expect("write input");
    let out = env.run(
        &[
            "job",
            "submit",
            env.path("hello.p2pcb").to_str().expect("utf-8"),
            "--input",
            env.path("name").to_str().expect("utf-8"),
            "--to",
            &worker.peer_id,
            "--max-price",
            "3",
            "--wait",
            "--node",
            &submitter.dir,
        ],
        b"",
        None,
    );
    assert!(out.status.success(), "submit: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello, cli!");
    let jobs = json_of(&env, &["job", "list", "--node", &submitter.dir]);
    let task = &jobs[0]["tasks"][0];
    let cost = task["cost"].as_u64().expect("a cost");
    assert!(cost > 0, "{task}");
    let status = ok(&env.run(
        &[
            "job",
            "status",
            jobs[0]["id"].as_str().expect("id"),
            "--node",
            &submitter.dir,
        ],
        b"",
        None,
    ));
    assert!(status.contains("3 credits per million fuel"), "{status}");

    // Final once the 1 s window closed, on every replica.
    for dir in [&worker.dir, &submitter.dir, &arbiter.dir] {
        let mut last = Value::Null;
        for _ in 0..300 {
            last = json_of(&env, &["ledger", "balance", "--node", dir, &worker_key]);
            if last["available"] == 100 + cost && last["pending"] == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(last["available"], 100 + cost, "{dir}: {last}");
        let s = json_of(&env, &["ledger", "balance", "--node", dir, &submitter_key]);
        assert_eq!(s["available"], 1_000_000 - cost, "{dir}: {s}");
        assert_eq!(s["held"], 0, "{dir}: {s}");
        let v = json_of(&env, &["ledger", "verify", "--node", dir]);
        assert_eq!(v["ok"], true, "{dir}: {v}");
    }
    let shown = ok(&env.run(&["ledger", "balance", "--node", &worker.dir], b"", None));
    assert!(shown.starts_with("account"), "{shown}");
    assert!(shown.contains("available"), "{shown}");

    // The market as each side sees it: the worker's offer at its price, the
    // worker's own price and its inputs, the submitter's record of it.
    let offers = json_of(&env, &["market", "offers", "--node", &submitter.dir]);
    let offer = offers
        .as_array()
        .expect("a list")
        .iter()
        .find(|o| o["peer"] == worker.peer_id.as_str())
        .unwrap_or_else(|| panic!("no offer of the worker: {offers}"));
    assert_eq!(offer["price"], 3, "{offer}");
    assert_eq!(offer["collateral"], 5, "{offer}");
    let table = ok(&env.run(&["market", "offers", "--node", &submitter.dir], b"", None));
    assert!(table.contains("credits per million fuel"), "{table}");
    let price = json_of(&env, &["market", "price", "--node", &worker.dir]);
    assert_eq!(
        (&price["paid"], &price["price"], &price["base"]),
        (&Value::Bool(true), &Value::from(3), &Value::from(3)),
        "{price}"
    );
    let shown = ok(&env.run(&["market", "price", "--node", &worker.dir], b"", None));
    assert!(shown.contains("pressure"), "{shown}");
    let records = json_of(&env, &["reputation", "--node", &submitter.dir]);
    let record = &records[0];
    assert_eq!(record["peer"], worker.peer_id.as_str(), "{records}");
    assert_eq!(record["success"], 1, "{record}");
    assert!(record["score"].as_f64().expect("a score") > 0.5, "{record}");
    let shown = ok(&env.run(
        &["reputation", &worker.peer_id, "--node", &submitter.dir],
        b"",
        None,
    ));
    assert!(shown.contains("task_success"), "{shown}");
    let none = ok(&env.run(
        &["reputation", &submitter.peer_id, "--node", &worker.dir],
        b"",
        None,
    ));
    assert!(none.contains("no record"), "{none}");
}
