//! Events, metrics and health on real nodes: a job's events over a real
//! WebSocket and over NDJSON, resumed and told of a restart; a client
//! that never reads, dropped while the node keeps only its ring; /metrics
//! read by the Prometheus project's own parser; the health checker
//! finding a planted equivocation and rows damaged on disk.

use futures::StreamExt;
use p2pc_api::types::Submitted;
use p2pc_crypto::SecretKey;
use p2pc_ledger::sync::encode_ops;
use p2pc_ledger::{Body, CreditManager};
use p2pc_node::{
    ComputeNode, Event, EventKind, Finding, HealthReport, LEDGER_TOPIC, LedgerAnswer,
    LedgerRequest, Severity,
};
use p2pc_testkit::{Cluster, WAIT, eventually, test_config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite;
use tungstenite::client::IntoClientRequest;

use crate::api::{Http, gateway_for, hello, send, two_nodes};
use crate::support::block_on;

/// Submits the hello job through the API; its id.
async fn submit(http: &Http, text: &str) -> String {
    let (s, v) = send(http.post("/v1/bundles").body(hello())).await;
    assert_eq!(s, 201, "{v}");
    let bundle = v["id"].as_str().expect("id").to_owned();
    let (s, v) = send(http.post("/v1/jobs").json(&json!({
        "bundle": bundle, "input": {"text": text}, "timeout_ms": 30000
    })))
    .await;
    assert_eq!(s, 201, "{v}");
    serde_json::from_value::<Submitted>(v)
        .expect("submitted")
        .job
}

/// Every event `GET /v1/events?query` holds now (not following).
async fn kept(http: &Http, query: &str) -> Vec<Event> {
    let r = http
        .get(&format!("/v1/events?follow=false&{query}"))
        .send()
        .await
        .expect("events");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.expect("body");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("an event per line"))
        .collect()
}

fn is_end_of(job: &str, e: &Event) -> bool {
    matches!(&e.kind, EventKind::JobState { job: j, state, .. } if j == job && state != "submitted" && state != "running")
}

/// Opens the event WebSocket at `query`, offering our subprotocol and the
/// token as a browser would.
async fn websocket(
    url: &str,
    token: &str,
    query: &str,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tungstenite::handshake::client::Response,
    ),
    tungstenite::Error,
> {
    let ws_url = format!("{}/v1/events?{query}", url.replacen("http://", "ws://", 1));
    let mut request = ws_url.into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("p2pc.events.v1, bearer.{token}")
            .parse()
            .expect("header"),
    );
    tokio_tungstenite::connect_async(request).await
}

#[test]
fn a_jobs_events_arrive_in_order_over_websocket_and_ndjson_resume_and_a_restart_is_told() {
    block_on(async {
        // The submitter's key again for its restart: keys are not Clone.
        let seed: [u8; 32] = [7; 32];
        let keys = vec![SecretKey::from_seed(&seed), SecretKey::generate()];
        let submitter_key = SecretKey::from_seed(&seed);
        let cluster = Cluster::start_keyed(keys, |_, _| {})
            .await
            .expect("cluster");
        eventually("a worker known", WAIT, || async {
            (cluster.node(0).status().await.ok()?.workers_known >= 1).then_some(())
        })
        .await
        .expect("worker");
        let (g, url, token) = gateway_for(cluster.node(0).handle(), |_| {}).await;
        let http = Http::new(&url, &token);

        // A WebSocket from now on, then a job.
        let (mut ws, response) = websocket(&url, &token, "").await.expect("websocket");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "p2pc.events.v1",
            "the server names the subprotocol it speaks, as browsers require"
        );
        let job = submit(&http, "events").await;
        let mut seen: Vec<Event> = Vec::new();
        tokio::time::timeout(WAIT, async {
            while let Some(m) = ws.next().await {
                let m = m.expect("a message");
                if let tungstenite::Message::Text(t) = m {
                    let e: Event = serde_json::from_str(&t).expect("an event");
                    let end = is_end_of(&job, &e);
                    seen.push(e);
                    if end {
                        break;
                    }
                }
            }
        })
        .await
        .expect("the job's events over the websocket");
        let epoch = seen[0].epoch.clone();
        assert!(seen.iter().all(|e| e.epoch == epoch));
        assert!(
            seen.windows(2).all(|w| w[0].seq < w[1].seq),
            "numbered in order"
        );
        let of_job: Vec<&Event> = seen
            .iter()
            .filter(|e| e.kind.job() == Some(job.as_str()))
            .collect();
        let states: Vec<String> = of_job
            .iter()
            .map(|e| match &e.kind {
                EventKind::JobState { state, .. } => format!("job {state}"),
                EventKind::TaskState { state, .. } => format!("task {state}"),
                other => other.type_name().to_owned(),
            })
            .collect();
        assert_eq!(
            states.first().map(String::as_str),
            Some("job submitted"),
            "{states:?}"
        );
        assert_eq!(
            states.last().map(String::as_str),
            Some("job done"),
            "{states:?}"
        );
        let running = states
            .iter()
            .position(|s| s == "task running")
            .expect("task running");
        let done = states
            .iter()
            .position(|s| s == "task done")
            .expect("task done");
        assert!(running < done, "{states:?}");
        let EventKind::TaskState {
            worker, outcome, ..
        } = &of_job[done].kind
        else {
            unreachable!()
        };
        assert_eq!(
            worker.as_deref(),
            Some(cluster.node(1).peer_id().to_string().as_str())
        );
        assert_eq!(outcome.as_deref(), Some("ok"));

        // The same events over NDJSON, from the start, for this job only.
        let ndjson = kept(&http, &format!("since=0&job={job}")).await;
        assert_eq!(
            ndjson.iter().map(|e| e.seq).collect::<Vec<_>>(),
            of_job.iter().map(|e| e.seq).collect::<Vec<_>>()
        );
        assert_eq!(ndjson[0], *of_job[0]);
        // Resumed after the second of them, with its epoch: the rest.
        let after = of_job[1].seq;
        let rest = kept(&http, &format!("since={after}&epoch={epoch}&job={job}")).await;
        assert_eq!(
            rest.iter().map(|e| e.seq).collect::<Vec<_>>(),
            of_job[2..].iter().map(|e| e.seq).collect::<Vec<_>>()
        );
        let only = kept(&http, "since=0&types=job_state").await;
        assert!(!only.is_empty() && only.iter().all(|e| e.kind.type_name() == "job_state"));
        let (s, v) = send(http.get("/v1/events?types=job_state,nonsense")).await;
        assert_eq!(s, 400);
        assert!(
            v["detail"].as_str().unwrap_or("").contains("nonsense"),
            "{v}"
        );
        let (s, v) = send(http.get("/v1/events?since=1&epoch=0000000000000000")).await;
        assert_eq!(s, 410, "{v}");
        assert_eq!(v["type"], "urn:p2pc:problem:events-epoch");
        assert_eq!(v["resume"]["epoch"], epoch.as_str());
        let bare = reqwest::Client::new();
        let r = bare
            .get(format!("{url}/v1/events"))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 401);
        drop(ws);
        g.shutdown().await;

        // The submitter restarts: a new epoch, and a client resuming from
        // the old one is told, over NDJSON and over the WebSocket.
        let last = seen.last().expect("events").seq;
        let mut nodes = cluster.nodes;
        let node0 = nodes.remove(0);
        let dir = node0.data_dir();
        node0.shutdown().await;
        let again = ComputeNode::start(test_config(&dir), submitter_key)
            .await
            .expect("restart");
        let (g, url, token) = gateway_for(again.handle(), |_| {}).await;
        let http = Http::new(&url, &token);
        let (s, v) = send(http.get(&format!("/v1/events?since={last}&epoch={epoch}"))).await;
        assert_eq!(s, 410, "{v}");
        assert_eq!(v["type"], "urn:p2pc:problem:events-epoch");
        let new_epoch = v["resume"]["epoch"].as_str().expect("epoch").to_owned();
        assert_ne!(new_epoch, epoch);
        assert_eq!(new_epoch, again.events().epoch());
        assert!(
            v["detail"].as_str().unwrap_or("").contains("restarted"),
            "{v}"
        );
        // Without the epoch, a number past the newest says the same.
        let (s, v) = send(http.get(&format!("/v1/events?since={}", last + 1_000_000))).await;
        assert_eq!(
            (s, v["type"].as_str()),
            (410, Some("urn:p2pc:problem:events-epoch"))
        );
        match websocket(&url, &token, &format!("since={last}&epoch={epoch}")).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 410),
            other => panic!(
                "a websocket resuming an old epoch got {:?}",
                other.map(|_| ())
            ),
        }
        g.shutdown().await;
        again.shutdown().await;
        for n in nodes {
            n.shutdown().await;
        }
    });
}

/// A value of the metric `name` with `labels` (`k="v"` pairs), as
/// Prometheus text shows it.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_node_keeps_only_its_ring() {
    block_on(async {
        let cluster = Cluster::start_with(1, |_, c| c.api.events_buffer = 256)
            .await
            .expect("cluster");
        let node = cluster.node(0);
        let (g, url, token) = gateway_for(node.handle(), |_| {}).await;
        let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().expect("addr");

        // A client with a small receive window asks for the stream, reads
        // the answer's head, and then never reads again.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
        let mut stream = socket.connect(addr).await.expect("connect");
        stream
            .write_all(
                format!(
                    "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .expect("request");
        let mut head = vec![0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut head))
            .await
            .expect("an answer")
            .expect("read");
        assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
        let metrics = || async { node.metrics_text(false).await };
        eventually("the stream to open", WAIT, || async {
            (sample(&metrics().await, "p2pc_event_streams", "") == Some(1.0)).then_some(())
        })
        .await
        .expect("open");

        // 10,000 events of about a kilobyte: far more than the ring, the
        // socket buffers and one batch in flight hold together.
        let evidence = "x".repeat(1000);
        for i in 0..10_000u64 {
            node.events().publish(EventKind::HealthFinding {
                finding: Finding {
                    check: "load".into(),
                    severity: Severity::Info,
                    subject: Some(i.to_string()),
                    summary: "one of many".into(),
                    evidence: evidence.clone(),
                    action: "none".into(),
                    since_unix_ms: 0,
                },
            });
        }
        let (kept, bytes) = node.events().kept();
        assert!(kept <= 256, "the ring holds {kept} events");
        assert!(bytes <= 256 * 1500, "the ring holds {bytes} bytes");
        eventually("the slow client to be dropped", WAIT, || async {
            let m = metrics().await;
            (sample(&m, "p2pc_event_streams_dropped_total", "") == Some(1.0)
                && sample(&m, "p2pc_event_streams", "") == Some(0.0))
            .then_some(())
        })
        .await
        .expect("dropped");

        // Reading now: what was buffered, then the end, well short of all.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
            .await
            .expect("the connection to end");
        let lines = rest.iter().filter(|b| **b == b'\n').count();
        assert!(
            lines < 10_000,
            "{lines} lines reached a client that never read"
        );
        assert!(
            !rest.ends_with(b"0\r\n\r\n"),
            "a dropped stream must not look complete"
        );
        // The node still serves everyone else.
        let http = Http::new(&url, &token);
        let (s, _) = send(http.get("/v1/node")).await;
        assert_eq!(s, 200);
        g.shutdown().await;
        cluster.shutdown().await;
    });
}

/// `text` parsed by the `prometheus_client` Python package (the
/// Prometheus text parser, or the OpenMetrics one): every sample as
/// `name{sorted labels}` → value.
fn parsed(text: &str, openmetrics: bool) -> std::collections::BTreeMap<String, f64> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh, which installs prometheus-client there",
        python.display()
    );
    let parser = if openmetrics {
        "from prometheus_client.openmetrics.parser import text_string_to_metric_families"
    } else {
        "from prometheus_client.parser import text_string_to_metric_families"
    };
    let script = format!(
        "{parser}\nimport json, sys\nout = {{}}\nfor f in text_string_to_metric_families(sys.stdin.read()):\n    for s in f.samples:\n        labels = ','.join(f'{{k}}=\"{{v}}\"' for k, v in sorted(s.labels.items()))\n        out[s.name + ('{{' + labels + '}}' if labels else '')] = s.value\nprint(json.dumps(out))\n"
    );
    let mut child = std::process::Command::new(python)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python ran");
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn metrics_parse_as_prometheus_text_and_their_counters_move_with_the_work() {
    block_on(async {
        let cluster = two_nodes().await;
        let (g0, url0, token0) = gateway_for(cluster.node(0).handle(), |_| {}).await;
        let (g1, url1, token1) = gateway_for(cluster.node(1).handle(), |a| {
            a.metrics_public = true;
        })
        .await;
        let submitter = Http::new(&url0, &token0);
        let bare = reqwest::Client::new();
        let scrape = |url: String, token: Option<String>, openmetrics: bool| {
            let bare = bare.clone();
            async move {
                let mut r = bare.get(format!("{url}/metrics"));
                if let Some(t) = token {
                    r = r.bearer_auth(t);
                }
                if openmetrics {
                    r = r.header("accept", "application/openmetrics-text; version=1.0.0");
                }
                let r = r.send().await.expect("scrape");
                (r.status().as_u16(), r.text().await.expect("text"))
            }
        };
        // The token is needed unless [api] metrics_public.
        assert_eq!(scrape(url0.clone(), None, false).await.0, 401);
        let (s, before) = scrape(url1.clone(), None, false).await;
        assert_eq!(s, 200);
        let worker_before = parsed(&before, false);
        let (_, text) = scrape(url0.clone(), Some(token0.clone()), false).await;
        let submitter_before = parsed(&text, false);

        let job = submit(&submitter, "metrics").await;
        let (s, v) = send(submitter.get(&format!("/v1/jobs/{job}?wait=30s"))).await;
        assert_eq!(
            (s, v["status"]["state"].as_str()),
            (200, Some("done")),
            "{v}"
        );

        let get =
            |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
        let worker = eventually("the worker's counters to move", WAIT, || async {
            let (_, t) = scrape(url1.clone(), None, false).await;
            let m = parsed(&t, false);
            (get(&m, "p2pc_tasks_total{outcome=\"ok\"}")
                == get(&worker_before, "p2pc_tasks_total{outcome=\"ok\"}") + 1.0)
                .then_some(m)
        })
        .await
        .expect("worker counters");
        assert!(
            get(&worker, "p2pc_task_fuel_used_total")
                > get(&worker_before, "p2pc_task_fuel_used_total")
        );
        assert_eq!(
            get(&worker, "p2pc_task_duration_seconds_count"),
            get(&worker_before, "p2pc_task_duration_seconds_count") + 1.0
        );
        assert_eq!(get(&worker, "p2pc_peers_connected"), 1.0);
        // The worker fetched the bundle from the submitter.
        assert!(
            get(&worker, "p2pc_blob_transfer_bytes_total{direction=\"in\"}") > 0.0,
            "{worker:?}"
        );
        let (_, text) = scrape(url0.clone(), Some(token0.clone()), false).await;
        let submitter_after = parsed(&text, false);
        assert_eq!(
            get(&submitter_after, "p2pc_jobs_finished_total{state=\"done\"}"),
            get(
                &submitter_before,
                "p2pc_jobs_finished_total{state=\"done\"}"
            ) + 1.0
        );
        assert_eq!(
            get(
                &submitter_after,
                "p2pc_api_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"201\"}"
            ),
            1.0,
            "{submitter_after:?}"
        );
        assert!(
            get(
                &submitter_after,
                "p2pc_blob_transfer_bytes_total{direction=\"out\"}"
            ) > 0.0
        );
        assert!(get(&submitter_after, "p2pc_events_total") >= 3.0);
        // The same registry as OpenMetrics, for a scraper that asks.
        let (s, om) = scrape(url0.clone(), Some(token0.clone()), true).await;
        assert_eq!(s, 200);
        assert!(om.trim_end().ends_with("# EOF"));
        let om = parsed(&om, true);
        assert!(
            om.keys().any(|k| k.starts_with("p2pc_jobs_finished_total")),
            "{om:?}"
        );
        let _ = token1;
        g0.shutdown().await;
        g1.shutdown().await;
        cluster.shutdown().await;
    });
}

#[test]
fn the_health_checker_finds_a_planted_equivocation_and_rows_damaged_on_disk() {
    block_on(async {
        let genesis_dir = tempfile::tempdir().expect("temp dir");
        // Two accounts: the node's, and one whose key the test holds.
        let (mut keys, genesis, path) = crate::ledger::network(2, genesis_dir.path());
        let liar = keys.pop().expect("two keys");
        let node_key = keys.pop().expect("two keys");
        let node_seed = [100u8; 32]; // crate::ledger::network's first key
        let dir = tempfile::tempdir().expect("node dir");
        let config = |p: &std::path::Path| {
            let mut c = test_config(p);
            c.ledger.genesis = Some(path.clone());
            c
        };
        let node = ComputeNode::start(config(dir.path()), SecretKey::from_seed(&node_seed))
            .await
            .expect("node");
        let (g, url, token) = gateway_for(node.handle(), |_| {}).await;
        let http = Http::new(&url, &token);
        let (s, v) = send(http.get("/v1/health")).await;
        assert_eq!(s, 200);
        let report: HealthReport = serde_json::from_value(v).expect("report");
        assert!(!report.is_critical(), "{report:?}");
        assert!(report.checks.iter().any(|c| c == "supply_drift"));

        // The liar signs two different transfers at one place in its
        // chain and a plain overlay peer gossips both.
        let (peer, peer_task) = crate::ledger::bare_peer(&SecretKey::generate(), &node).await;
        let replica = CreditManager::new(genesis);
        let now = p2pc_node::messages::now_unix_ms();
        let a = replica.draft(
            &liar,
            now,
            Body::Transfer {
                to: node.public_key(),
                amount: 5,
            },
        );
        let b = replica.draft(
            &liar,
            now,
            Body::Transfer {
                to: node.public_key(),
                amount: 7,
            },
        );
        assert_eq!(a.seq, b.seq);
        let frame = encode_ops([&a, &b]);
        let found: Finding = eventually("the equivocation to be found", WAIT, || async {
            let _ = peer.publish(LEDGER_TOPIC, frame.clone()).await;
            node.health()
                .await
                .findings
                .into_iter()
                .find(|f| f.check == "equivocation")
        })
        .await
        .expect("found");
        assert_eq!(found.severity, Severity::Critical);
        assert_eq!(found.subject, Some(liar.public().to_string()));
        let (_, v) = send(http.get("/v1/health")).await;
        assert_eq!(v["status"], "critical", "{v}");
        let raised = kept(&http, "since=0&types=health_finding").await;
        assert!(
            raised.iter().any(|e| matches!(&e.kind, EventKind::HealthFinding { finding } if finding.check == "equivocation")),
            "{raised:?}"
        );
        // An op of the node's own gives its account a row on disk.
        let paid = node
            .ledger(LedgerRequest::Transfer {
                to: liar.public(),
                amount: 1,
            })
            .await
            .expect("transfer");
        assert!(matches!(paid, LedgerAnswer::Transferred(_)), "{paid:?}");
        peer_task.abort();
        g.shutdown().await;
        node.shutdown().await;

        // With the node stopped, one account row on disk gets a balance
        // the ops never gave it.
        {
            let db = fjall::Database::builder(dir.path().join("ledger"))
                .open()
                .expect("ledger db");
            let accounts = db
                .keyspace("accounts", fjall::KeyspaceCreateOptions::default)
                .expect("accounts");
            // The node's row: an account has one once it has authored an op.
            let key = node_key.public().to_bytes();
            let mut row = accounts
                .get(key)
                .expect("read")
                .expect("the node's row")
                .to_vec();
            assert_eq!(row.len(), 48);
            row[40..48].copy_from_slice(&1_000_000u64.to_be_bytes());
            accounts.insert(key, row).expect("write");
            db.persist(fjall::PersistMode::SyncAll).expect("sync");
        }
        let node = ComputeNode::start(config(dir.path()), node_key)
            .await
            .expect("restart");
        let report = node.health().await;
        let drift = report
            .findings
            .iter()
            .find(|f| f.check == "supply_drift")
            .unwrap_or_else(|| panic!("no supply drift in {report:?}"));
        assert_eq!(drift.severity, Severity::Critical);
        assert_eq!(drift.subject.as_deref(), Some("on disk"));
        assert!(
            drift.evidence.contains("differs from memory"),
            "{}",
            drift.evidence
        );
        assert!(!drift.action.is_empty());
        // The equivocation's proof is in the ops, so it is found again.
        assert!(report.findings.iter().any(|f| f.check == "equivocation"));
        let v: Value = serde_json::to_value(&report).expect("json");
        assert_eq!(v["status"], "critical");
        node.shutdown().await;
    });
}
