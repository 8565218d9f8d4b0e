//! The gateway on real nodes: real HTTP (reqwest) on loopback and the
//! typed client on the Unix socket, against every route, its successes and
//! its errors.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use p2pc_api::types::{JobPage, JobTasks, Submitted};
use p2pc_crypto::{RequestedLimits, SecretKey};
use p2pc_node::{JobInfo, JobState};
use p2pc_store::{BlobInfo, BundleRecord};
use p2pc_testkit::{Cluster, WAIT, bundle, eventually};
use serde_json::{Value, json};

use crate::support::block_on;

/// A gateway on node `i` of `cluster`, on an ephemeral loopback port,
/// with small caps so the tests can pass them.
pub(crate) async fn gateway(cluster: &Cluster, i: usize) -> (p2pc_api::Gateway, String, String) {
    gateway_for(cluster.node(i).handle(), |_| {}).await
}

/// A gateway on `handle`, with `tweak` applied to its `[api]`.
pub(crate) async fn gateway_for(
    handle: p2pc_node::Handle,
    tweak: impl FnOnce(&mut p2pc_node::ApiSection),
) -> (p2pc_api::Gateway, String, String) {
    let dir = handle.data_dir();
    p2pc_node::ensure_token(&dir).expect("token");
    let token = p2pc_node::read_token(&dir).expect("token");
    let mut api = p2pc_node::ApiSection {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    api.max_body = p2pc_types::ByteSize::kib(64);
    api.max_upload = p2pc_types::ByteSize::mib(4);
    tweak(&mut api);
    let g = p2pc_api::serve_with(
        handle,
        p2pc_api::Settings {
            token: token.clone(),
            api,
        },
    )
    .await
    .expect("gateway");
    let url = g.url().expect("tcp");
    (g, url, token)
}

/// A submitter and a worker it has heard.
pub(crate) async fn two_nodes() -> Cluster {
    let cluster = Cluster::start(2).await.expect("cluster");
    eventually("a worker known", WAIT, || async {
        (cluster.node(0).status().await.ok()?.workers_known >= 1).then_some(())
    })
    .await
    .expect("worker");
    cluster
}

pub(crate) struct Http {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Http {
    pub(crate) fn new(url: &str, token: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            url: url.to_owned(),
            token: token.to_owned(),
        }
    }

    fn at(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    pub(crate) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.at(reqwest::Method::GET, path)
    }

    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.at(reqwest::Method::POST, path)
    }

    fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.at(reqwest::Method::PUT, path)
    }

    fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.at(reqwest::Method::DELETE, path)
    }
}

/// The status, and the problem document when it is an error.
pub(crate) async fn send(r: reqwest::RequestBuilder) -> (u16, Value) {
    let response = r.send().await.expect("an answer");
    let status = response.status().as_u16();
    let is_problem = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("") == p2pc_api::PROBLEM_JSON);
    let bytes = response.bytes().await.expect("a body");
    if status >= 400 {
        assert!(is_problem, "{status} is not a problem document");
    }
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status >= 400 {
        for field in ["type", "title", "status", "detail"] {
            assert!(
                value.get(field).is_some(),
                "{status}: no {field} in {value}"
            );
        }
        assert_eq!(value["status"], status, "{value}");
    }
    (status, value)
}

fn detail(v: &Value) -> String {
    v["detail"].as_str().unwrap_or("").to_owned()
}

pub(crate) fn hello() -> Vec<u8> {
    bundle(
        &SecretKey::generate(),
        "hello",
        p2pc_tests::guest_bytes("hello"),
        RequestedLimits::default(),
    )
}

#[test]
fn every_route_answers_over_http_and_every_client_mistake_is_a_clear_4xx() {
    block_on(async {
        let cluster = two_nodes().await;
        let (g, url, token) = gateway(&cluster, 0).await;
        let http = Http::new(&url, &token);
        let bare = reqwest::Client::new();

        // Open routes, and the token on every other.
        let r = bare
            .get(format!("{url}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status(), 200);
        let doc = bare
            .get(format!("{url}/v1/openapi.json"))
            .send()
            .await
            .expect("doc")
            .text()
            .await
            .expect("text");
        assert_eq!(doc, p2pc_api::openapi_json());
        let (s, v) = send(bare.get(format!("{url}/v1/node"))).await;
        assert_eq!(s, 401, "{v}");
        assert!(detail(&v).contains("p2pctl node token"), "{v}");
        let (s, _) = send(
            bare.get(format!("{url}/v1/node"))
                .bearer_auth("0".repeat(64)),
        )
        .await;
        assert_eq!(s, 401);
        let (s, _) = send(
            bare.get(format!("{url}/v1/node"))
                .header("sec-websocket-protocol", format!("p2pc, bearer.{token}")),
        )
        .await;
        assert_eq!(s, 200, "the token as a WebSocket subprotocol");

        // The dashboard's files are open, and only its own code may run.
        let page = bare.get(format!("{url}/")).send().await.expect("page");
        assert_eq!(page.status(), 200);
        let headers = page.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let html = page.text().await.expect("html");
        assert!(html.contains(r#"src="/dashboard/app.js""#), "{html}");
        let app = bare
            .get(format!("{url}/dashboard/app.js"))
            .send()
            .await
            .expect("app.js");
        assert_eq!(app.status(), 200);
        assert_eq!(
            app.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        let etag = app.headers()["etag"].clone();
        let again = bare
            .get(format!("{url}/dashboard/app.js"))
            .header("if-none-match", etag)
            .send()
            .await
            .expect("app.js again");
        assert_eq!(again.status(), 304, "an unchanged file is not sent again");
        let (other, other_url, _) =
            gateway_for(cluster.node(1).handle(), |a| a.dashboard = false).await;
        let (s, v) = send(bare.get(format!("{other_url}/"))).await;
        assert_eq!(s, 404, "[api] dashboard = false: {v}");
        other.shutdown().await;

        // Node.
        let (s, v) = send(http.get("/v1/node")).await;
        assert_eq!(s, 200);
        assert_eq!(v["peer_id"], cluster.node(0).peer_id().to_string());
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        let (s, v) = send(http.get("/v1/node/peers")).await;
        assert_eq!(s, 200);
        assert!(
            v.as_array().is_some_and(|p| !p.is_empty()),
            "a peer connected: {v}"
        );
        let (s, v) = send(http.get("/v1/node/config")).await;
        assert_eq!(s, 200);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(v["slots"].as_u64().is_some_and(|n| n > 0), "{v}");
        let (s, v) = send(http.get("/v1/nowhere")).await;
        assert_eq!(s, 404, "{v}");
        let (s, _) = send(http.delete("/v1/node")).await;
        assert_eq!(s, 405);

        // Blobs: upload streamed, download whole and in ranges, pins.
        let data = p2pc_tests::pseudo_random(600_000, 3);
        let (s, v) = send(http.post("/v1/blobs").body(data.clone())).await;
        assert_eq!(s, 201, "{v}");
        let blob: BlobInfo = serde_json::from_value(v).expect("blob info");
        assert_eq!(blob.len, data.len() as u64);
        let whole = http
            .get(&format!("/v1/blobs/{}", blob.id))
            .send()
            .await
            .expect("download");
        assert_eq!(whole.status(), 200);
        assert_eq!(whole.bytes().await.expect("bytes"), data);
        // A range across the first chunk boundary (256 KiB).
        let part = http
            .get(&format!("/v1/blobs/{}", blob.id))
            .header("range", "bytes=262000-262999")
            .send()
            .await
            .expect("range");
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes 262000-262999/{}", data.len())
        );
        assert_eq!(part.bytes().await.expect("bytes"), &data[262_000..263_000]);
        let tail = http
            .get(&format!("/v1/blobs/{}", blob.id))
            .header("range", "bytes=-10")
            .send()
            .await
            .expect("suffix");
        assert_eq!(tail.bytes().await.expect("bytes"), &data[data.len() - 10..]);
        let (s, _) = send(
            http.get(&format!("/v1/blobs/{}", blob.id))
                .header("range", "bytes=999999999-"),
        )
        .await;
        assert_eq!(s, 416);
        let head = http
            .client
            .head(format!("{url}/v1/blobs/{}", blob.id))
            .bearer_auth(&token)
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["content-length"], data.len().to_string());
        let (s, v) = send(http.get(&format!("/v1/blobs/{}/info", blob.id))).await;
        assert_eq!((s, v["len"].as_u64()), (200, Some(data.len() as u64)));
        let (s, v) = send(http.put(&format!("/v1/blobs/{}/pin", blob.id))).await;
        assert_eq!((s, v["pinned"].as_bool()), (200, Some(true)));
        let (s, v) = send(http.get("/v1/blobs")).await;
        assert_eq!(s, 200);
        assert!(
            v.as_array()
                .expect("a list")
                .iter()
                .any(|b| b["id"] == blob.id.to_string() && b["pinned"] == true),
            "{v}"
        );
        let (s, v) = send(http.delete(&format!("/v1/blobs/{}/pin", blob.id))).await;
        assert_eq!((s, v["pinned"].as_bool()), (200, Some(false)));
        let missing = "ab".repeat(32);
        let (s, v) = send(http.get(&format!("/v1/blobs/{missing}"))).await;
        assert_eq!(s, 404, "{v}");
        let (s, v) = send(http.get("/v1/blobs/not-a-cid")).await;
        assert_eq!(s, 400);
        assert!(detail(&v).contains("not a blob id"), "{v}");
        // Over the cap by its declared length: refused before the body is
        // read (so a client that waits for the answer sends nothing more).
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut sock = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
                .await
                .expect("connect");
            let head = format!(
                "POST /v1/blobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
                 content-length: {}\r\n\r\n",
                5 << 20
            );
            sock.write_all(head.as_bytes()).await.expect("send");
            let mut answer = vec![0u8; 4096];
            let n = tokio::time::timeout(WAIT, sock.read(&mut answer))
                .await
                .expect("an answer in time")
                .expect("read");
            let answer = String::from_utf8_lossy(&answer[..n]);
            assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
            assert!(answer.contains("max_upload"), "{answer}");
        }
        // A streamed upload with no length is cut off at the cap too.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..6).map(|_| Ok(vec![1u8; 1 << 20])).collect();
        let (s, _) = send(
            http.post("/v1/blobs")
                .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
        )
        .await;
        assert_eq!(s, 413);
        let (s, v) = send(
            http.post(&format!("/v1/blobs/{missing}/fetch"))
                .json(&json!({"from": ["nobody"]})),
        )
        .await;
        assert_eq!(s, 400, "{v}");

        // Bundles: add, list, inspect, pack with a key of the node's own.
        let file = hello();
        let (s, v) = send(http.post("/v1/bundles").body(file.clone())).await;
        assert_eq!(s, 201, "{v}");
        let record: BundleRecord = serde_json::from_value(v).expect("record");
        let (s, v) = send(http.get("/v1/bundles")).await;
        assert_eq!(s, 200);
        assert!(v.to_string().contains(&record.id.to_string()));
        let (s, v) = send(http.get(&format!("/v1/bundles/{}", record.id))).await;
        assert_eq!((s, v["record"]["name"].as_str()), (200, Some("hello")));
        let (s, v) = send(http.post("/v1/bundles").body(b"not a bundle".to_vec())).await;
        assert_eq!(s, 400);
        assert!(detail(&v).contains("bundle"), "{v}");
        let keys =
            p2pc_crypto::Keystore::open(cluster.node(0).data_dir().join("keys")).expect("keystore");
        keys.create("publisher", None).expect("a key");
        keys.create("locked", Some("a passphrase")).expect("a key");
        let (s, v) = send(
            http.post("/v1/blobs")
                .body(p2pc_tests::guest_bytes("hello")),
        )
        .await;
        assert_eq!(s, 201);
        let component = v["id"].as_str().expect("id").to_owned();
        let pack =
            json!({"component": component, "name": "packed", "version": "1.0", "key": "publisher"});
        let (s, v) = send(http.post("/v1/bundles/pack").json(&pack)).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["world"], "p2pc:job/job");
        let packed = v["id"].as_str().expect("id").to_owned();
        let locked = json!({"component": component, "name": "p", "version": "1", "key": "locked"});
        let (s, v) = send(http.post("/v1/bundles/pack").json(&locked)).await;
        assert_eq!(s, 400);
        assert!(detail(&v).contains("passphrase"), "{v}");
        let (s, v) = send(
            http.post("/v1/bundles/pack")
                .json(&json!({"component": blob.id.to_string(), "name": "x", "version": "1", "key": "publisher"})),
        )
        .await;
        assert_eq!(s, 400, "random bytes are no component: {v}");

        // Jobs: submit, wait, output, logs, tasks, list, cancel.
        let (s, v) = send(http.post("/v1/jobs").json(&json!({
            "bundle": packed, "input": {"text": "api"}, "timeout_ms": 30000
        })))
        .await;
        assert_eq!(s, 201, "{v}");
        let job: Submitted = serde_json::from_value(v).expect("submitted");
        let (s, v) = send(http.get(&format!("/v1/jobs/{}?wait=30s", job.job))).await;
        assert_eq!(s, 200);
        let info: JobInfo = serde_json::from_value(v).expect("job info");
        assert!(
            matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
            "{info:?}"
        );
        let out = http
            .get(&format!("/v1/jobs/{}/output", job.job))
            .send()
            .await
            .expect("output");
        assert_eq!(out.bytes().await.expect("bytes"), &b"Hello, api!"[..]);
        let (s, v) = send(http.get(&format!("/v1/jobs/{}/logs", job.job))).await;
        assert_eq!(s, 200);
        assert_eq!(v["receipts"].as_array().map(Vec::len), Some(1));
        let (s, v) = send(http.get(&format!("/v1/jobs/{}/tasks", job.job))).await;
        assert_eq!(s, 200);
        let tasks: JobTasks = serde_json::from_value(v).expect("tasks");
        assert_eq!(tasks.tasks.len(), 1);
        assert_eq!(tasks.receipts.len(), 1);
        // A second job, by blob input, so paging has two pages.
        let (s, v) = send(http.post("/v1/jobs").json(&json!({
            "bundle": record.id.to_string(), "input": {"blob": blob.id.to_string()}
        })))
        .await;
        assert_eq!(s, 201, "{v}");
        let second: Submitted = serde_json::from_value(v).expect("submitted");
        let _ = send(http.get(&format!("/v1/jobs/{}?wait=30s", second.job))).await;
        let (s, v) = send(http.get("/v1/jobs?limit=1")).await;
        assert_eq!(s, 200);
        let first: JobPage = serde_json::from_value(v).expect("page");
        assert_eq!(first.jobs.len(), 1);
        let cursor = first.next.clone().expect("a next page");
        let (_, v) = send(http.get(&format!("/v1/jobs?limit=1&cursor={cursor}"))).await;
        let next: JobPage = serde_json::from_value(v).expect("page");
        assert_eq!(next.jobs.len(), 1);
        assert_ne!(next.jobs[0].id, first.jobs[0].id);
        assert!(next.next.is_none());
        let (_, v) = send(http.get("/v1/jobs?state=done")).await;
        assert_eq!(v["jobs"].as_array().map(Vec::len), Some(2), "{v}");
        let (_, v) = send(http.get("/v1/jobs?state=running")).await;
        assert_eq!(v["jobs"].as_array().map(Vec::len), Some(0), "{v}");
        let (s, v) = send(http.get("/v1/jobs?state=sleeping")).await;
        assert_eq!(s, 400);
        assert!(detail(&v).contains("running"), "names the states: {v}");
        let (s, _) = send(http.get("/v1/jobs?limit=0")).await;
        assert_eq!(s, 400);
        let (s, _) = send(http.post(&format!("/v1/jobs/{}/cancel", job.job))).await;
        assert_eq!(s, 409, "a finished job cannot be cancelled");
        let (s, v) = send(http.get(&format!("/v1/jobs/{}", "0".repeat(32)))).await;
        assert_eq!(s, 404, "{v}");
        let (s, _) = send(http.get(&format!("/v1/jobs/{}?wait=forever", job.job))).await;
        assert_eq!(s, 400);
        let (s, v) = send(
            http.post("/v1/jobs")
                .json(&json!({"bundle": missing, "input": {"text": "x"}})),
        )
        .await;
        assert_eq!(s, 404, "{v}");
        let (s, v) = send(http.post("/v1/jobs").json(&json!({
            "bundle": packed, "validation": "3-of-2"
        })))
        .await;
        assert_eq!(s, 400, "{v}");
        let (s, v) = send(http.post("/v1/jobs").json(&json!({
            "bundle": packed, "input": {"base64": "***"}
        })))
        .await;
        assert_eq!(s, 400);
        assert!(detail(&v).contains("base64"), "{v}");

        // Bodies the API cannot take.
        let (s, v) = send(
            http.post("/v1/jobs")
                .header("content-type", "application/json")
                .body("{\"bundle\": "),
        )
        .await;
        assert_eq!(s, 400);
        assert!(detail(&v).contains("not a valid request"), "{v}");
        let (s, v) = send(http.post("/v1/jobs").json(&json!({"bundle": 7}))).await;
        assert_eq!(s, 400);
        assert!(detail(&v).contains("bundle"), "names the field: {v}");
        let (s, _) = send(
            http.post("/v1/jobs")
                .json(&json!({"bundle": "x", "extra": 1})),
        )
        .await;
        assert_eq!(s, 400);
        let (s, _) = send(http.post("/v1/jobs").body("{}")).await;
        assert_eq!(s, 415);
        let huge = json!({"bundle": "x", "args": vec!["a".repeat(1000); 100]});
        let (s, _) = send(http.post("/v1/jobs").json(&huge)).await;
        assert_eq!(s, 413);

        // Ledger routes on a node without a ledger say so; market routes
        // answer.
        let (s, v) = send(http.get("/v1/ledger/balance")).await;
        assert_eq!(s, 422);
        assert!(detail(&v).contains("no ledger"), "{v}");
        let (s, v) = send(http.get("/v1/ledger/balance?account=zz")).await;
        assert_eq!(s, 400, "{v}");
        let (s, v) = send(http.get("/v1/market/offers")).await;
        assert_eq!(s, 200);
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
        let (s, _) = send(http.get("/v1/market/price")).await;
        assert_eq!(s, 200);
        let (s, v) = send(http.get("/v1/reputation")).await;
        assert_eq!(s, 200, "{v}");
        let worker = cluster.node(1).peer_id().to_string();
        let (s, _) = send(http.get(&format!("/v1/reputation/{worker}"))).await;
        assert!(s == 200 || s == 404, "{s}");
        let (s, _) = send(http.get("/v1/reputation/nobody")).await;
        assert_eq!(s, 400);

        // Drain last: the node takes no new task after it.
        let (s, v) = send(http.post("/v1/node/drain")).await;
        assert_eq!((s, v["running"].as_u64()), (200, Some(0)));
        let (_, v) = send(http.get("/v1/node")).await;
        assert_eq!(v["draining"], true);

        g.shutdown().await;
        cluster.shutdown().await;
    });
}

#[test]
fn the_same_routes_answer_over_the_unix_socket_and_a_job_runs_to_done() {
    block_on(async {
        let cluster = two_nodes().await;
        let (g, _, _) = gateway(&cluster, 0).await;
        let client = p2pc_api::Client::for_node(&cluster.node(0).data_dir()).expect("client");
        let status: p2pc_node::Status = client.get("/v1/node").await.expect("status");
        assert_eq!(status.peer_id, cluster.node(0).peer_id().to_string());
        let record: BundleRecord = client
            .upload("/v1/bundles", p2pc_api::ClientBody::from(hello()))
            .await
            .expect("bundle");
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("input");
        std::fs::write(&input, b"socket").expect("input");
        let blob: BlobInfo = client.upload_file("/v1/blobs", &input).await.expect("blob");
        let job: Submitted = client
            .post(
                "/v1/jobs",
                &p2pc_api::types::SubmitJob {
                    bundle: record.id.to_string(),
                    input: Some(p2pc_api::types::JobInput::Blob(blob.id.to_string())),
                    ..Default::default()
                },
            )
            .await
            .expect("submitted");
        let info: JobInfo = client
            .get(&format!("/v1/jobs/{}?wait=30s", job.job))
            .await
            .expect("job");
        assert!(matches!(info.status, JobState::Done { .. }), "{info:?}");
        let out = client
            .get_bytes(&format!("/v1/jobs/{}/output", job.job))
            .await
            .expect("output");
        assert_eq!(&out[..], b"Hello, socket!");
        // Errors come back typed.
        let err = client
            .get::<JobInfo>("/v1/jobs/nope")
            .await
            .expect_err("no such job");
        assert_eq!(err.status(), Some(404), "{err}");
        // A client without the token is refused on the socket too.
        let stranger = p2pc_api::Client::new(p2pc_api::Endpoint::Unix(g.socket.clone()), "wrong");
        let err = stranger
            .get::<p2pc_node::Status>("/v1/node")
            .await
            .expect_err("refused");
        assert_eq!(err.status(), Some(401));
        // A second gateway on the same directory is refused while this one
        // runs.
        let again = p2pc_api::serve_with(
            cluster.node(0).handle(),
            p2pc_api::Settings {
                token: "t".into(),
                api: p2pc_node::ApiSection {
                    listen: "off".into(),
                    ..Default::default()
                },
            },
        )
        .await;
        assert!(
            again.is_err_and(|e| e.to_string().contains("already running")),
            "a live socket is not taken over"
        );
        // The socket is private to the node's user.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&g.socket)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let token_mode = std::fs::metadata(cluster.node(0).data_dir().join(p2pc_node::TOKEN_FILE))
            .expect("token")
            .permissions()
            .mode();
        assert_eq!(token_mode & 0o777, 0o600);
        g.shutdown().await;
        cluster.shutdown().await;
    });
}

#[test]
fn a_non_loopback_address_needs_allow_remote() {
    let api = p2pc_node::ApiSection {
        listen: "0.0.0.0:7420".into(),
        ..Default::default()
    };
    let err = api.address().expect_err("refused");
    assert!(err.to_string().contains("allow_remote"), "{err}");
    let api = p2pc_node::ApiSection {
        allow_remote: true,
        ..api
    };
    assert!(api.address().expect("allowed").is_some());
    let off = p2pc_node::ApiSection {
        listen: "off".into(),
        ..Default::default()
    };
    assert_eq!(off.address().expect("off"), None);
    let bad = p2pc_node::ApiSection {
        listen: "localhost".into(),
        ..Default::default()
    };
    assert!(bad.address().is_err());
}

#[test]
fn ledger_and_market_routes_answer_on_a_paid_network() {
    block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let liar = Arc::new(AtomicBool::new(false));
        let cluster = crate::market::paid_cluster(dir.path(), &liar, |_| {}).await;
        let (g, url, token) = gateway(&cluster, crate::market::OWNER).await;
        let http = Http::new(&url, &token);
        let (s, v) = send(http.get("/v1/ledger/balance")).await;
        assert_eq!(s, 200, "{v}");
        let before = v["available"].as_u64().expect("available");
        let to = SecretKey::generate().public().to_string();
        let (s, v) = send(
            http.post("/v1/ledger/transfers")
                .json(&json!({"to": to, "amount": 5})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let (_, v) = send(http.get(&format!("/v1/ledger/balance?account={to}"))).await;
        assert_eq!(v["available"], 5, "{v}");
        let (_, v) = send(http.get("/v1/ledger/balance")).await;
        assert_eq!(v["available"].as_u64(), Some(before - 5));
        let (s, v) = send(http.get("/v1/ledger/history?limit=5")).await;
        assert_eq!(s, 200);
        assert!(v["total"].as_u64().is_some_and(|t| t >= 1), "{v}");
        let (s, _) = send(http.get("/v1/ledger/history?limit=0")).await;
        assert_eq!(s, 400);
        let (s, v) = send(http.get("/v1/ledger/holds")).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = send(http.get("/v1/ledger/verify")).await;
        assert_eq!((s, v["ok"].as_bool()), (200, Some(true)), "{v}");
        let (s, v) = send(
            http.post("/v1/ledger/transfers")
                .json(&json!({"to": to, "amount": 0})),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        let (s, v) = send(
            http.post("/v1/ledger/transfers")
                .json(&json!({"to": to, "amount": u64::MAX})),
        )
        .await;
        assert_eq!(s, 402, "more than the balance: {v}");
        assert_eq!(v["type"], "urn:p2pc:problem:insufficient-credits", "{v}");
        let (s, v) = send(http.get("/v1/market/offers")).await;
        assert_eq!(s, 200);
        assert!(v.as_array().is_some_and(|o| o.len() >= 3), "{v}");
        let (s, v) = send(http.get("/v1/market/price")).await;
        assert_eq!(s, 200);
        assert_eq!(v["paid"], false, "the owner charges nothing: {v}");
        g.shutdown().await;
        cluster.shutdown().await;
    });
}
