//! The churn soak: ten real `p2pctl node` processes on loopback (an
//! arbiter, a submitter and eight workers) share one paid network; while
//! the submitter sends paid jobs, workers are killed with SIGKILL and
//! started again at random. At the end every job has ended (done, or
//! failed with its holds refunded), every replica verifies and holds the
//! same ops (no acknowledged op lost, no credit made or lost), and no
//! node's memory passed a bound.
//!
//! `P2PC_CHURN_SECS` sets how long the churn lasts (default 20 s, for CI;
//! 600 for a soak), `P2PC_CHURN_SEED` the random choices.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::ledger::{json_of, public_key_of};
use super::network::{NodeProcess, init_with, start, start_with};
use super::{Env, ok, text};

/// Workers in the soak (and two more nodes: the arbiter and the submitter).
const WORKERS: usize = 8;
/// No node's resident memory may pass this.
const MEMORY_BOUND: u64 = 1 << 30;

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Waits up to `limit` for `check` to hold, polling every 200 ms.
fn until(what: &str, limit: Duration, mut check: impl FnMut() -> Option<String>) {
    let end = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < end {
        match check() {
            None => return,
            Some(why) => last = why,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} within {limit:?}: {last}");
}

#[test]
fn workers_killed_and_restarted_under_paid_load_lose_no_credit_and_no_op() {
    let secs: u64 = std::env::var("P2PC_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut seed: u64 = std::env::var("P2PC_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut random = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let env = Env::new();
    let tcp = ["/ip4/127.0.0.1/tcp/0"];
    // The arbiter and the submitter charge like workers but accept no
    // arbiter, so no paid task is ever placed on them: every job runs on
    // the workers that churn.
    let arbiter_dir = init_with(&env, "arbiter", &tcp, &[], &["--arbiter", "--price", "3"]);
    let arbiter_key = public_key_of(&arbiter_dir);
    let submitter_dir = init_with(&env, "submitter", &tcp, &[], &["--price", "3"]);
    let submitter_key = public_key_of(&submitter_dir);
    let worker_dirs: Vec<String> = (0..WORKERS)
        .map(|i| {
            init_with(
                &env,
                &format!("worker{i}"),
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
            )
        })
        .collect();
    let genesis = env.path("genesis.toml").display().to_string();
    let mut args = vec![
        "ledger".to_owned(),
        "genesis".into(),
        "--network".into(),
        "churn".into(),
        "--mint".into(),
        format!("{submitter_key}=1000000"),
        "--challenge-window".into(),
        "1s".into(),
        "-o".into(),
        genesis.clone(),
    ];
    for d in &worker_dirs {
        args.push("--mint".into());
        args.push(format!("{}=100", public_key_of(d)));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&env.run(&args, b"", None));
    let everyone: Vec<&String> = [&arbiter_dir, &submitter_dir]
        .into_iter()
        .chain(&worker_dirs)
        .collect();
    for dir in &everyone {
        ok(&env.run(&["ledger", "join", "--node", dir, &genesis], b"", None));
    }
    let arbiter = start(&env, &arbiter_dir);
    let boot = format!("{}/p2p/{}", arbiter.addrs[0], arbiter.peer_id);
    let vars = [("P2PC_BOOTSTRAP", boot.as_str())];
    let submitter = start_with(&env, &submitter_dir, &vars);
    let mut workers: Vec<Option<NodeProcess>> = worker_dirs
        .iter()
        .map(|d| Some(start_with(&env, d, &vars)))
        .collect();
    until(
        "the submitter hears the workers",
        Duration::from_secs(60),
        || {
            let known =
                json_of(&env, &["node", "status", "--node", &submitter.dir])["workers_known"]
                    .as_u64()
                    .unwrap_or(0);
            (known < WORKERS as u64).then(|| format!("{known} offers heard"))
        },
    );

    let file = p2pc_testkit::bundle(
        &p2pc_crypto::SecretKey::generate(),
        "hello",
        p2pc_tests::guest_bytes("hello"),
        p2pc_crypto::RequestedLimits::default(),
    );
    let bundle = env.path("hello.p2pcb").display().to_string();
    std::fs::write(&bundle, file).expect("bundle");
    std::fs::write(env.path("name"), b"churn").expect("input");
    let input = env.path("name").display().to_string();

    // Paid jobs from a thread of their own while the workers churn.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut kills = 0usize;
    let mut peak = 0u64;
    let sent = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = env.run(
                    &[
                        "job",
                        "submit",
                        &bundle,
                        "--input",
                        &input,
                        "--max-price",
                        "3",
                        "--validate",
                        "none",
                        "--timeout",
                        "8s",
                        "--node",
                        &submitter.dir,
                    ],
                    b"",
                    None,
                );
                assert!(out.status.success(), "submit: {}", text(&out.stderr));
                sent += 1;
                std::thread::sleep(Duration::from_millis(150));
            }
            sent
        });
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(500 + random(1000) as u64));
            let i = random(WORKERS);
            match workers[i].take() {
                // Dropped: SIGKILL, no shutdown, nothing flushed beyond
                // what was synced.
                Some(w) => {
                    if let Some(rss) = rss_of(w.pid()) {
                        peak = peak.max(rss);
                    }
                    drop(w);
                    kills += 1;
                }
                None => workers[i] = Some(start_with(&env, &worker_dirs[i], &vars)),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sender.join().expect("sender")
    });
    for (i, w) in workers.iter_mut().enumerate() {
        if w.is_none() {
            *w = Some(start_with(&env, &worker_dirs[i], &vars));
        }
    }
    assert!(kills >= 2 && sent >= 5, "{kills} kills, {sent} jobs");

    // Every job ends: done, or failed with its holds refunded.
    until("every job ends", Duration::from_secs(120), || {
        let jobs = json_of(
            &env,
            &["job", "list", "--limit", "1000", "--node", &submitter.dir],
        );
        let open: Vec<String> = jobs
            .as_array()
            .expect("a list")
            .iter()
            .filter(|j| {
                !matches!(
                    j["status"]["state"].as_str(),
                    Some("done" | "failed" | "lost")
                )
            })
            .map(|j| format!("{} {}", j["id"], j["status"]))
            .collect();
        (!open.is_empty()).then(|| format!("still open: {open:?}"))
    });
    let jobs = json_of(
        &env,
        &["job", "list", "--limit", "1000", "--node", &submitter.dir],
    );
    let done = jobs
        .as_array()
        .expect("a list")
        .iter()
        .filter(|j| j["status"]["state"] == "done")
        .count();
    assert!(done > 0, "no job finished: {jobs}");
    let on_workers = jobs
        .as_array()
        .expect("a list")
        .iter()
        .flat_map(|j| j["tasks"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["cost"].as_u64().is_some_and(|c| c > 0))
        .count();
    assert!(on_workers > 0, "no task was paid: {jobs}");

    // Every replica: verified, no escrow left open, the same ops, the
    // same credits minted.
    let mut dirs: Vec<String> = vec![arbiter.dir.clone(), submitter.dir.clone()];
    dirs.extend(workers.iter().flatten().map(|w| w.dir.clone()));
    until("the replicas converge", Duration::from_secs(120), || {
        let views: Vec<Value> = dirs
            .iter()
            .map(|d| json_of(&env, &["ledger", "verify", "--node", d]))
            .collect();
        let first = &views[0];
        for (d, v) in dirs.iter().zip(&views) {
            if v["ok"] != true || v["problems"].as_array().is_some_and(|p| !p.is_empty()) {
                return Some(format!("{d}: {v}"));
            }
            if v["ops"] != first["ops"] || v["open_escrows"] != 0 || v["minted"] != first["minted"]
            {
                return Some(format!("{d}: {v} against {first}"));
            }
        }
        let held = json_of(&env, &["ledger", "balance", "--node", &submitter.dir])["held"].clone();
        (held != 0).then(|| format!("the submitter still holds {held}"))
    });
    let verified = json_of(&env, &["ledger", "verify", "--node", &submitter.dir]);
    let minted = 1_000_000 + 100 * WORKERS as u64;
    assert_eq!(verified["minted"], minted.to_string(), "{verified}");

    for p in [&arbiter, &submitter]
        .into_iter()
        .chain(workers.iter().flatten())
    {
        if let Some(rss) = rss_of(p.pid()) {
            peak = peak.max(rss);
        }
    }
    assert!(peak < MEMORY_BOUND, "a node held {} MiB", peak >> 20);
    eprintln!(
        "churn: {secs} s, {kills} kills, {sent} jobs ({done} done), {} ops, peak {} MiB",
        verified["ops"],
        peak >> 20
    );
}
