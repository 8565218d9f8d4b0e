//! Three real `p2pctl node` processes on 127.0.0.1, one over QUIC: a job
//! submitted through the CLI runs on another node and its result comes
//! back; `node status`, `node peers` and `blob fetch` talk to the running
//! node over its API socket.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sha2::Digest;

use crate::{Env, text};

/// A running `p2pctl node start`, killed when dropped.
pub(crate) struct NodeProcess {
    child: Child,
    pub(crate) peer_id: String,
    pub(crate) addrs: Vec<String>,
    pub(crate) dir: String,
}

impl NodeProcess {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn init(env: &Env, name: &str, listen: &[&str], bootstrap: &[String]) -> String {
    init_with(env, name, listen, bootstrap, &[])
}

/// [`init`] with more `node init` flags.
pub(crate) fn init_with(
    env: &Env,
    name: &str,
    listen: &[&str],
    bootstrap: &[String],
    extra: &[&str],
) -> String {
    let dir = env.path(name).display().to_string();
    let mut args = vec![
        "node",
        "init",
        "--node",
        &dir,
        "--no-mdns",
        "--insecure-no-passphrase",
        // Several nodes run at once: each API on a port of its own.
        "--api-listen",
        "127.0.0.1:0",
    ];
    for l in listen {
        args.extend(["--listen", l]);
    }
    for b in bootstrap {
        args.extend(["--bootstrap", b]);
    }
    args.extend_from_slice(extra);
    let out = env.run(&args, b"", None);
    assert!(out.status.success(), "init: {}", text(&out.stderr));
    dir
}

pub(crate) fn start(env: &Env, dir: &str) -> NodeProcess {
    start_with(env, dir, &[])
}

/// [`start`] with environment variables set, e.g. `P2PC_BOOTSTRAP`.
pub(crate) fn start_with(env: &Env, dir: &str, vars: &[(&str, &str)]) -> NodeProcess {
    // The node's log goes to a file beside it, for when a test fails.
    let log = std::fs::File::create(format!("{dir}.log")).expect("log file");
    let mut command = env.command(&["node", "start", "--node", dir]);
    for (k, v) in vars {
        command.env(k, v);
    }
    let mut child = command
        .env("P2PC_LOG", "p2pc_node=debug,p2pc_net=debug")
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut peer_id, mut addrs) = (String::new(), Vec::new());
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the node reports ready within a minute");
        if let Some(p) = line.strip_prefix("peer_id ") {
            peer_id = p.to_owned();
        } else if let Some(a) = line.strip_prefix("listening ") {
            addrs.push(a.to_owned());
        } else if line == "ready" {
            break;
        }
    }
    NodeProcess {
        child,
        peer_id,
        addrs,
        dir: dir.to_owned(),
    }
}

#[test]
fn three_node_processes_over_tcp_and_quic_run_a_job_submitted_through_the_cli() {
    let env = Env::new();
    let a_dir = init(
        &env,
        "a",
        &["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"],
        &[],
    );
    let a = start(&env, &a_dir);
    let a_tcp = a
        .addrs
        .iter()
        .find(|x| x.contains("/tcp/"))
        .expect("tcp")
        .clone();
    let a_quic = a
        .addrs
        .iter()
        .find(|x| x.contains("/quic-v1"))
        .expect("quic")
        .clone();
    // B joins over TCP, C over QUIC only.
    let b_dir = init(&env, "b", &["/ip4/127.0.0.1/tcp/0"], &[a_tcp]);
    let b = start(&env, &b_dir);
    let c_dir = init(&env, "c", &["/ip4/127.0.0.1/udp/0/quic-v1"], &[a_quic]);
    let c = start(&env, &c_dir);

    let status = env.run(&["node", "status", "--node", &c.dir, "--json"], b"", None);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["peer_id"], c.peer_id.as_str());
    let peers = env.run(&["node", "peers", "--node", &a.dir], b"", None);
    assert!(peers.status.success());

    // The blob commands work while the node runs, through its API.
    let data = p2pc_tests::pseudo_random(700_000, 9);
    std::fs::write(env.path("blob.in"), &data).expect("write blob");
    let blob_in = env.path("blob.in").display().to_string();
    let put = env.run(
        &["blob", "put", &blob_in, "--pin", "--node", &c.dir],
        b"",
        None,
    );
    assert!(put.status.success(), "put: {}", text(&put.stderr));
    let cid = text(&put.stdout).trim().to_owned();
    let out_path = env.path("blob.out").display().to_string();
    let get = env.run(
        &["blob", "get", &cid, "-o", &out_path, "--node", &c.dir],
        b"",
        None,
    );
    assert!(get.status.success(), "get: {}", text(&get.stderr));
    assert_eq!(std::fs::read(&out_path).expect("read back"), data);
    let ls = env.run(&["blob", "ls", "--node", &c.dir], b"", None);
    assert!(
        text(&ls.stdout).contains(&format!("{cid} ")),
        "{}",
        text(&ls.stdout)
    );
    assert!(text(&ls.stdout).contains("pinned"), "{}", text(&ls.stdout));
    let unpin = env.run(&["blob", "unpin", &cid, "--node", &c.dir], b"", None);
    assert!(unpin.status.success(), "{}", text(&unpin.stderr));
    let rm = env.run(&["blob", "rm", &cid, "--node", &c.dir], b"", None);
    assert!(!rm.status.success());
    assert!(text(&rm.stderr).contains("stop it"), "{}", text(&rm.stderr));
    // The token the API wants, and the URL it listens on.
    let token = env.run(&["node", "token", "--node", &c.dir, "--json"], b"", None);
    assert!(token.status.success(), "{}", text(&token.stderr));
    let token: serde_json::Value = serde_json::from_slice(&token.stdout).expect("json");
    assert_eq!(token["token"].as_str().map(str::len), Some(64));
    assert!(
        token["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{token}"
    );
    // The dashboard's link carries the token after `#`.
    let link = env.run(&["node", "dashboard", "--node", &c.dir], b"", None);
    assert!(link.status.success(), "{}", text(&link.stderr));
    assert_eq!(
        text(&link.stdout).trim(),
        format!(
            "{}/#token={}",
            token["url"].as_str().expect("url"),
            token["token"].as_str().expect("token")
        )
    );

    // A signed bundle, written where the CLI can read it.
    let publisher = p2pc_crypto::SecretKey::generate();
    let file = p2pc_testkit::bundle(
        &publisher,
        "sha256",
        p2pc_tests::guest_bytes("sha256"),
        p2pc_crypto::RequestedLimits::default(),
    );
    std::fs::write(env.path("sha256.p2pc"), file).expect("write bundle");
    std::fs::write(env.path("input"), b"hello from the CLI").expect("write input");
    let bundle = env.path("sha256.p2pc").display().to_string();
    let input = env.path("input").display().to_string();

    // Submitted on C (QUIC), run on B (TCP), through A's DHT.
    let out = env.run(
        &[
            "job",
            "submit",
            &bundle,
            "--input",
            &input,
            "--to",
            &b.peer_id,
            "--wait",
            "--timeout",
            "60s",
            "--node",
            &c.dir,
        ],
        b"",
        None,
    );
    assert!(out.status.success(), "submit: {}", text(&out.stderr));
    let expected = format!(
        "{}\n",
        hex::encode(sha2::Sha256::digest(b"hello from the CLI"))
    );
    assert_eq!(text(&out.stdout), expected);
    assert!(
        text(&out.stderr).contains(&format!("done on {}", b.peer_id)),
        "{}",
        text(&out.stderr)
    );

    // A command job's arguments travel in the signed task to its argv.
    let cmark = p2pc_testkit::bundle(
        &publisher,
        "cmark",
        p2pc_tests::guest_bytes("pulldown-cmark"),
        p2pc_crypto::RequestedLimits::default(),
    );
    std::fs::write(env.path("cmark.p2pcb"), cmark).expect("write bundle");
    std::fs::write(env.path("table.md"), "| a | b |\n|---|---|\n| 1 | 2 |\n").expect("write");
    let cmark = env.path("cmark.p2pcb").display().to_string();
    let table = env.path("table.md").display().to_string();
    let submit_md = |args: &[&str]| {
        let mut argv = vec![
            "job", "submit", &cmark, "--input", &table, "--to", &b.peer_id, "--wait", "--node",
            &c.dir, "--",
        ];
        argv.extend_from_slice(args);
        let out = env.run(&argv, b"", None);
        assert!(out.status.success(), "submit: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(submit_md(&["-T"]).contains("<table>"));
    assert!(!submit_md(&[]).contains("<table>"));

    // A worker seeds a task as `p2pctl run` does, from the component, the
    // input and the arguments: a local run predicts the remote one's
    // randomness byte for byte.
    let hostile = p2pc_tests::guest_bytes("hostile");
    let file = p2pc_testkit::bundle(
        &publisher,
        "hostile",
        hostile.clone(),
        p2pc_crypto::RequestedLimits::default(),
    );
    std::fs::write(env.path("hostile.p2pcb"), file).expect("write bundle");
    std::fs::write(env.path("hostile.wasm"), hostile).expect("write component");
    std::fs::write(env.path("entropy"), "entropy").expect("write input");
    let (hostile_bundle, entropy) = (
        env.path("hostile.p2pcb").display().to_string(),
        env.path("entropy").display().to_string(),
    );
    let remote = env.run(
        &[
            "job",
            "submit",
            &hostile_bundle,
            "--input",
            &entropy,
            "--to",
            &b.peer_id,
            "--wait",
            "--node",
            &c.dir,
            "--",
            "some",
            "args",
        ],
        b"",
        None,
    );
    assert!(remote.status.success(), "{}", text(&remote.stderr));
    let local = env.run(
        &[
            "run",
            env.path("hostile.wasm").to_str().expect("utf-8"),
            "--input",
            &entropy,
            "--",
            "some",
            "args",
        ],
        b"",
        None,
    );
    assert!(local.status.success(), "{}", text(&local.stderr));
    assert_eq!(remote.stdout, local.stdout);
    assert_eq!(remote.stdout.len(), 8, "a 64-bit hash");

    // Without --wait the id comes back; status and result follow it.
    let out = env.run(
        &[
            "job", "submit", &bundle, "--input", &input, "--to", &b.peer_id, "--node", &c.dir,
        ],
        b"",
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    let mut done = false;
    for _ in 0..600 {
        let s = env.run(
            &["job", "status", &id, "--json", "--node", &c.dir],
            b"",
            None,
        );
        let v: serde_json::Value = serde_json::from_slice(&s.stdout).expect("json");
        assert_eq!(v["id"], id.as_str(), "{v}");
        if v["status"]["state"] == "done" {
            done = true;
            break;
        }
        assert_ne!(v["status"]["state"], "failed", "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(done, "the job finished within a minute");
    let out = env.run(&["job", "result", &id, "--node", &c.dir], b"", None);
    assert_eq!(text(&out.stdout), expected);
    // The node keeps its jobs: listed, and their logs asked for.
    let out = env.run(&["job", "list", "--json", "--node", &c.dir], b"", None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let listed: Vec<&str> = jobs
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert!(listed.contains(&id.as_str()), "{listed:?}");
    assert!(listed.len() >= 4, "every job submitted on C: {listed:?}");
    let out = env.run(&["job", "logs", &id, "--node", &c.dir], b"", None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("logged nothing"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["job", "status", &id, "--node", &c.dir], b"", None);
    assert!(
        text(&out.stderr).contains(&format!("done on {}", b.peer_id)),
        "{}",
        text(&out.stderr)
    );

    // C's event stream kept the job's life, and its health checker
    // found nothing critical.
    let out = env.run(
        &[
            "events",
            "--since",
            "0",
            "--job",
            &id,
            "--no-follow",
            "--node",
            &c.dir,
        ],
        b"",
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.starts_with("# epoch "), "{printed}");
    assert!(printed.contains(&format!("job {id} done")), "{printed}");
    let out = env.run(
        &[
            "events",
            "--since",
            "0",
            "--types",
            "job_state",
            "--no-follow",
            "--json",
            "--node",
            &c.dir,
        ],
        b"",
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one event per line"))
        .collect();
    assert!(lines.iter().all(|e| e["type"] == "job_state"), "{lines:?}");
    assert!(lines.iter().any(|e| e["job"] == id.as_str()), "{lines:?}");
    let out = env.run(
        &[
            "events",
            "--types",
            "nonsense",
            "--no-follow",
            "--node",
            &c.dir,
        ],
        b"",
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nonsense"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["health", "--node", &c.dir], b"", None);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("status  "),
        "{}",
        text(&out.stdout)
    );

    // The bundle, held by C and fetched by B to run it, is fetched by A,
    // which never saw it, through the network.
    let bundle_bytes = std::fs::read(&bundle).expect("bundle");
    let cid = p2pc_node::messages::blob_id(&bundle_bytes).to_string();
    let out = env.run(
        &[
            "blob", "fetch", &cid, "--node", &a.dir, "--from", &b.peer_id,
        ],
        b"",
        None,
    );
    assert!(
        out.status.success(),
        "fetch: {}\nA's log:\n{}\nB's log:\n{}",
        text(&out.stderr),
        std::fs::read_to_string(format!("{}.log", a.dir)).unwrap_or_default(),
        std::fs::read_to_string(format!("{}.log", b.dir)).unwrap_or_default()
    );
    assert!(
        text(&out.stdout).contains(&format!("{} bytes", bundle_bytes.len())),
        "{}",
        text(&out.stdout)
    );
    let out = env.run(
        &["blob", "fetch", &"ab".repeat(32), "--node", &a.dir],
        b"",
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no provider"),
        "{}",
        text(&out.stderr)
    );
    let missing = env.run(&["job", "status", "0000", "--node", &c.dir], b"", None);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no job 0000"),
        "{}",
        text(&missing.stderr)
    );

    // Talking to a node that is not running says so.
    drop(b);
    let out = env.run(&["node", "status", "--node", &b_dir], b"", None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no node is running"),
        "{}",
        text(&out.stderr)
    );
    drop(c);
    drop(a);
}
