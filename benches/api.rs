//! The gateway's costs, each against a baseline measured in the same run.
//!
//! 1. `node`: `GET /v1/node` (the node's status, behind the token) on a
//!    real node, against a bare axum route returning the same JSON, served
//!    on the same runtime: requests per second with 32 keep-alive clients,
//!    and the p99 latency.
//! 2. `submit`: job submission latency (bundle by id, input inline) over
//!    TCP and over the Unix socket, against the line-per-request control
//!    channel the API replaced (measured while it still existed; see
//!    docs/benchmarks.md), one submission at a time, each job run to its
//!    end before the next.
//! 3. `blobs`: a 1 GiB blob uploaded and downloaded through the API (Unix
//!    socket, streamed, every chunk verified on the way out), against what
//!    `p2pctl blob put/get` does on a stopped node: the same store calls on
//!    the same files, in process.
//!
//! Run: `cargo bench -p p2pc-benches --bench api [node|submit|blobs]`
//! (`P2PC_BENCH_MIB=256` for a smaller blob, `P2PC_BENCH_SECS=5`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use p2pc_api::{Client, Endpoint};
use p2pc_benches::percentile;
use p2pc_crypto::{RequestedLimits, SecretKey};
use p2pc_testkit::{Cluster, bundle};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts the gateway of `cluster`'s node `i` on an ephemeral port.
async fn gateway(cluster: &Cluster, i: usize) -> (p2pc_api::Gateway, String) {
    p2pc_benches::gateway(cluster.node(i).handle()).await
}

/// `clients` keep-alive clients each asking `path` for `secs`: requests
/// per second and the p99.
async fn load(
    addr: String,
    token: &str,
    path: &'static str,
    clients: usize,
    secs: u64,
) -> (f64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = Client::new(Endpoint::Tcp(addr.clone()), token);
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _ = client.get_bytes(path).await.expect("answer");
                samples.push(t.elapsed());
            }
            samples
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    (rate, percentile(&mut all, 99.0))
}

fn node_route(rt: &tokio::runtime::Runtime) {
    let secs = env_usize("P2PC_BENCH_SECS", 5) as u64;
    rt.block_on(async {
        let cluster = Cluster::start(1).await.expect("cluster");
        let (g, token) = gateway(&cluster, 0).await;
        let addr = g.addr.expect("tcp").to_string();
        // The bare route serialises the same value with plain axum: what
        // the API adds is the token, the limits and asking the node.
        let status = cluster.node(0).status().await.expect("status");
        let bare = axum::Router::new().route(
            "/v1/node",
            axum::routing::get(move || {
                let status = status.clone();
                async move { axum::Json(status) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let bare_addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move { axum::serve(listener, bare).await });
        // Warm both, then measure the bare route first and the API second.
        let _ = load(bare_addr.clone(), &token, "/v1/node", 4, 1).await;
        let _ = load(addr.clone(), &token, "/v1/node", 4, 1).await;
        // Three rounds, alternating, so a noisy second hurts both sides.
        let mut rounds = Vec::new();
        for _ in 0..3 {
            let bare = load(bare_addr.clone(), &token, "/v1/node", 32, secs).await;
            let api = load(addr.clone(), &token, "/v1/node", 32, secs).await;
            let open = load(addr.clone(), &token, "/healthz", 32, secs).await;
            rounds.push((api.0 / bare.0, bare, api, open));
        }
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, (bare_rate, bare_p99), (api_rate, api_p99), (open_rate, _)) = rounds[1];
        println!(
            "GET /v1/node: {api_rate:.0} req/s, p99 {api_p99:?}; bare axum route: {bare_rate:.0} req/s, \
             p99 {bare_p99:?}; ratio {ratio:.2}x, the median of 3 rounds (target >= 0.8x); \
             the gateway's /healthz (no token, no node): {open_rate:.0} req/s"
        );
        server.abort();
        g.shutdown().await;
        cluster.shutdown().await;
    });
}

fn submit(rt: &tokio::runtime::Runtime) {
    let n = env_usize("P2PC_BENCH_TASKS", 200);
    rt.block_on(async {
        let cluster = Cluster::start(2).await.expect("cluster");
        p2pc_testkit::eventually("a worker known", Duration::from_secs(30), || async {
            (cluster.node(0).status().await.ok()?.workers_known >= 1).then_some(())
        })
        .await
        .expect("worker");
        let (g, token) = gateway(&cluster, 0).await;
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        let tcp = Client::new(Endpoint::Tcp(g.addr.expect("tcp").to_string()), &token);
        let unix = Client::new(Endpoint::Unix(g.socket.clone()), &token);
        let record: p2pc_store::BundleRecord = unix
            .upload("/v1/bundles", p2pc_api::ClientBody::from(file.clone()))
            .await
            .expect("bundle added");
        let body = p2pc_api::types::SubmitJob {
            bundle: record.id.to_string(),
            input: Some(p2pc_api::types::JobInput::Text("bench".into())),
            timeout_ms: Some(30_000),
            ..Default::default()
        };
        let mut results = Vec::new();
        for (name, client) in [("tcp", &tcp), ("unix", &unix)] {
            let mut samples = Vec::new();
            for i in 0..n + 10 {
                let t = Instant::now();
                let s: p2pc_api::types::Submitted =
                    client.post("/v1/jobs", &body).await.expect("submitted");
                let took = t.elapsed();
                let _ = cluster
                    .node(0)
                    .wait(&s.job, Duration::from_secs(30))
                    .await
                    .expect("the job ends");
                if i >= 10 {
                    samples.push(took);
                }
            }
            let p50 = percentile(&mut samples, 50.0);
            let p99 = percentile(&mut samples, 99.0);
            results.push((name, p50, p99));
        }
        for (name, p50, p99) in results {
            println!("submit over {name}: p50 {p50:?}, p99 {p99:?}");
        }
        g.shutdown().await;
        cluster.shutdown().await;
    });
}

fn blobs(rt: &tokio::runtime::Runtime) {
    let mib = env_usize("P2PC_BENCH_MIB", 1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).expect("create"));
        for i in 0..mib {
            f.write_all(&p2pc_tests::pseudo_random(1 << 20, i as u64))
                .expect("write");
        }
    }
    // Baseline: what `p2pctl blob put/get` does on a stopped node. Three
    // rounds, alternating with the API, the median ratio of each reported.
    let direct = |round: usize| {
        let store =
            p2pc_store::Store::open(dir.path().join(format!("direct{round}"))).expect("store");
        let t = Instant::now();
        let f = std::fs::File::open(&src).expect("open");
        let info = store
            .put(std::io::BufReader::with_capacity(1 << 20, f))
            .expect("put");
        let put = t.elapsed();
        let t = Instant::now();
        let mut reader = store.get_ahead(&info.id).expect("get");
        let mut out = std::fs::File::create(dir.path().join("direct.out")).expect("create");
        std::io::copy(&mut reader, &mut out).expect("copy");
        out.sync_all().expect("sync");
        (put, t.elapsed())
    };
    let mut rounds = Vec::new();
    for round in 0..3 {
        let (put_direct, get_direct) = direct(round);
        let (put_api, get_api) = rt.block_on(async {
            let cluster = Cluster::start(1).await.expect("cluster");
            let (g, token) = gateway(&cluster, 0).await;
            let client = Client::new(Endpoint::Unix(g.socket.clone()), &token)
                .with_timeout(Duration::from_secs(3600));
            let t = Instant::now();
            let info: p2pc_store::BlobInfo =
                client.upload_file("/v1/blobs", &src).await.expect("upload");
            let put = t.elapsed();
            let t = Instant::now();
            let out = tokio::fs::File::create(dir.path().join("api.out"))
                .await
                .expect("create");
            let mut out = tokio::io::BufWriter::with_capacity(1 << 20, out);
            let n = client
                .download_to(&format!("/v1/blobs/{}", info.id), &mut out)
                .await
                .expect("download");
            out.into_inner().sync_all().await.expect("sync");
            assert_eq!(n, (mib as u64) << 20);
            let get = t.elapsed();
            g.shutdown().await;
            cluster.shutdown().await;
            (put, get)
        });
        rounds.push((put_direct, get_direct, put_api, get_api));
    }
    let median = |mut v: Vec<(f64, Duration, Duration)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[1]
    };
    let up = median(
        rounds
            .iter()
            .map(|r| (r.0.as_secs_f64() / r.2.as_secs_f64(), r.2, r.0))
            .collect(),
    );
    let down = median(
        rounds
            .iter()
            .map(|r| (r.1.as_secs_f64() / r.3.as_secs_f64(), r.3, r.1))
            .collect(),
    );
    let (put_api, put_direct, get_api, get_direct) = (up.1, up.2, down.1, down.2);
    let mbps = |d: Duration| mib as f64 / d.as_secs_f64();
    println!(
        "{mib} MiB upload (median of 3 rounds): API {:.0} MiB/s, direct {:.0} MiB/s, ratio {:.2}x (target >= 0.8x)",
        mbps(put_api),
        mbps(put_direct),
        put_direct.as_secs_f64() / put_api.as_secs_f64()
    );
    println!(
        "{mib} MiB download (median of 3 rounds): API {:.0} MiB/s, direct {:.0} MiB/s, ratio {:.2}x (target >= 0.8x)",
        mbps(get_api),
        mbps(get_direct),
        get_direct.as_secs_f64() / get_api.as_secs_f64()
    );
}

fn main() {
    let on = p2pc_benches::chosen;
    let rt = runtime();
    if on("node") {
        node_route(&rt);
    }
    if on("submit") {
        submit(&rt);
    }
    if on("blobs") {
        blobs(&rt);
    }
}
