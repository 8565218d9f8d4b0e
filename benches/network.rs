//! The overlay's two costs: moving a large blob between two nodes, and
//! round trips of tiny tasks.
//!
//! 1. Verified transfer of a 1 GiB blob from one node to another over
//!    loopback TCP (Noise, Yamux, `/p2pc/chunk/1`, every chunk's BLAKE3
//!    checked, written to the receiver's store and synced), against a plain
//!    TCP copy of the same bytes in the same run: file to socket to file,
//!    synced at the end. Reported as throughput, and the ratio of the two.
//! 2. Tiny tasks (the hello example) submitted on one node, run on the
//!    other, receipt verified: latency one at a time (p50, p99) and
//!    throughput with many in flight.
//!
//! 3. Tiny paid tasks against unpaid ones, in one run on one cluster with
//!    a ledger: a submitter, a worker that charges, one that does not, and
//!    an arbiter. Each paid task signs a hold, the worker checks and
//!    applies it, and the settlement and confirmation follow.
//!
//! 4. Failover: a worker running a task is shut down; the time until the
//!    task runs on another worker (lease 2 s), three times.
//! 5. A map-reduce job of 16 shards (wordcount over 32 MiB of text,
//!    `P2PC_BENCH_SHARD_MIB`) on 1, 2 and 4 workers
//!    (nodes in this one process, on this machine's 2 cores), against the
//!    same job run locally through the same library, in the same run.
//!
//! 6. Honest tiny tasks while a hostile peer floods the worker on every
//!    protocol (garbage, wrong messages, gossip floods, abandoned
//!    streams; a fresh attacker each time the worker blocks one), against
//!    the same tasks with no attacker, alternating in the same run.
//!
//! 7. Sealed tiny tasks against unsealed ones, alternating one at a time
//!    on one cluster in the same run: the cost of a content key, a seal
//!    and a wrap on each side.
//!
//! Run: `cargo bench -p p2pc-benches --bench network [tiny|paid|transfer|failover|shards|replicated|flooded|sealed]`
//! (`P2PC_BENCH_MIB=256` for a smaller blob, `P2PC_BENCH_TASKS=1000`.)

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pc_benches::percentile;
use p2pc_crypto::{RequestedLimits, SecretKey};
use p2pc_node::{JobState, Submission};
use p2pc_testkit::{Cluster, bundle};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Plain TCP: the sender streams a file into a socket; the receiver
/// writes what arrives to a file and syncs it.
fn plain_tcp(src: &std::path::Path, dst: &std::path::Path) -> Duration {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dst = dst.to_owned();
    let start = Instant::now();
    let receiver = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().expect("accept");
        let mut out = std::fs::File::create(&dst).expect("create");
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = sock.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).expect("write");
        }
        out.sync_all().expect("sync");
    });
    let mut sock = std::net::TcpStream::connect(addr).expect("connect");
    sock.set_nodelay(true).ok();
    let mut file = std::fs::File::open(src).expect("open");
    std::io::copy(&mut file, &mut sock).expect("send");
    drop(sock);
    receiver.join().expect("receiver");
    start.elapsed()
}

fn transfer(rt: &tokio::runtime::Runtime) {
    let mib = env_usize("P2PC_BENCH_MIB", 1024);
    let len = mib << 20;
    let bytes = p2pc_tests::pseudo_random(len, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::write(&src, &bytes).expect("write source");
    std::fs::File::open(&src)
        .and_then(|f| f.sync_all())
        .expect("sync");

    let mut tcp = Vec::new();
    let mut p2p = Vec::new();
    for round in 0..3 {
        let dst = dir.path().join(format!("dst{round}"));
        tcp.push(plain_tcp(&src, &dst));
        std::fs::remove_file(&dst).ok();

        let took = rt.block_on(async {
            let quic = std::env::var_os("P2PC_BENCH_QUIC").is_some();
            let cluster = Cluster::start_with(2, |_, c| {
                if quic {
                    c.node.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr")];
                }
            })
            .await
            .expect("cluster");
            let cid = cluster.node(0).store().put(&bytes[..]).expect("put").id;
            let from = cluster.node(0).peer_id();
            let start = Instant::now();
            let stats = cluster.node(1).fetch(cid, &[from]).await.expect("fetch");
            let took = start.elapsed();
            assert_eq!(stats.bytes, len as u64);
            cluster.shutdown().await;
            took
        });
        p2p.push(took);
        let gbps = |d: Duration| len as f64 / d.as_secs_f64() / 1e9;
        println!(
            "round {round}: plain TCP {:.2} GB/s, p2pc verified {:.2} GB/s",
            gbps(tcp[round]),
            gbps(took)
        );
    }
    let tcp_med = percentile(&mut tcp, 50.0);
    let p2p_med = percentile(&mut p2p, 50.0);
    let gbps = |d: Duration| len as f64 / d.as_secs_f64() / 1e9;
    println!(
        "transfer {mib} MiB: plain TCP {:.2} GB/s ({:?}), p2pc {:.2} GB/s ({:?}); ratio {:.2}x (target >= 0.5x)",
        gbps(tcp_med),
        tcp_med,
        gbps(p2p_med),
        p2p_med,
        tcp_med.as_secs_f64() / p2p_med.as_secs_f64()
    );
}

fn tiny_tasks(rt: &tokio::runtime::Runtime) {
    let n = env_usize("P2PC_BENCH_TASKS", 4000);
    rt.block_on(async {
        let cluster = Arc::new(Cluster::start(2).await.expect("cluster"));
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        let m = measure(cluster.clone(), 1, file, n, 50).await;
        println!(
            "tiny tasks: one at a time p50 {:?} p99 {:?} (target p50 <= 5ms); \
             64 in flight: {:.0} tasks/s (target >= 2000), p50 {:?} p99 {:?}",
            m.p50, m.p99, m.rate, m.loaded_p50, m.loaded_p99,
        );
        if let Ok(c) = Arc::try_unwrap(cluster) {
            c.shutdown().await;
        }
    });
}

/// What [`measure`] found.
struct Measured {
    /// One at a time.
    p50: Duration,
    p99: Duration,
    /// 64 in flight.
    rate: f64,
    loaded_p50: Duration,
    loaded_p99: Duration,
}

/// Tiny tasks from node 0 to node `to`, after `warm` unmeasured ones:
/// latency one at a time, then throughput and latency with 64 in flight.
async fn measure(
    cluster: Arc<Cluster>,
    to: usize,
    file: Vec<u8>,
    n: usize,
    warm: usize,
) -> Measured {
    let worker = cluster.node(to).peer_id();
    let one = move |cluster: Arc<Cluster>, file: Vec<u8>| async move {
        let start = Instant::now();
        let mut s = Submission::new(file, b"bench".to_vec(), Duration::from_secs(60));
        s.to = Some(worker);
        let job = cluster.node(0).submit(s).await.expect("submit");
        let state = cluster
            .node(0)
            .wait(&job, Duration::from_secs(60))
            .await
            .expect("wait")
            .status;
        assert!(
            matches!(&state, JobState::Done { outcome, .. } if outcome == "ok"),
            "{state:?}"
        );
        start.elapsed()
    };
    for _ in 0..warm {
        one(cluster.clone(), file.clone()).await;
    }
    let mut lat = Vec::new();
    for _ in 0..(n / 4).max(100) {
        lat.push(one(cluster.clone(), file.clone()).await);
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("permit");
        let (c, f) = (cluster.clone(), file.clone());
        handles.push(tokio::spawn(async move {
            let d = one(c, f).await;
            drop(permit);
            d
        }));
    }
    let mut loaded = Vec::new();
    for h in handles {
        loaded.push(h.await.expect("task"));
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    Measured {
        p50: percentile(&mut lat, 50.0),
        p99: percentile(&mut lat, 99.0),
        rate,
        loaded_p50: percentile(&mut loaded, 50.0),
        loaded_p99: percentile(&mut loaded, 99.0),
    }
}

fn paid_tasks(rt: &tokio::runtime::Runtime) {
    let n = env_usize("P2PC_BENCH_TASKS", 1000);
    rt.block_on(async {
        let keys: Vec<SecretKey> = (0..4)
            .map(|i| SecretKey::from_seed(&[60 + i; 32]))
            .collect();
        let genesis = p2pc_ledger::Genesis {
            network: "bench".into(),
            allocations: [(keys[0].public(), 1_000_000_000_000)].into(),
            min_window_ms: 1000,
            ..p2pc_ledger::Genesis::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("genesis.toml");
        std::fs::write(&path, genesis.to_toml()).expect("genesis");
        let arbiter = keys[3].public().to_string();
        let cluster = Cluster::start_keyed(keys, |i, c| {
            c.ledger.genesis = Some(path.clone());
            c.market.base_price = if i == 2 { 1 } else { 0 };
            c.market.arbiters = vec![arbiter.clone()];
            c.arbiter.enabled = i == 3;
        })
        .await
        .expect("cluster");
        p2pc_testkit::eventually("adverts", Duration::from_secs(60), || async {
            let s = cluster.node(0).status().await.ok()?;
            (s.workers_known >= 3).then_some(())
        })
        .await
        .expect("adverts heard");
        let cluster = Arc::new(cluster);
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        let free = measure(cluster.clone(), 1, file.clone(), n, 20).await;
        let paid = measure(cluster.clone(), 2, file, n, 20).await;
        println!(
            "unpaid: p50 {:?}, {:.0} tasks/s; paid: p50 {:?}, {:.0} tasks/s; \
             paid/unpaid throughput {:.2}x, p50 {:.2}x (target >= 0.5x)",
            free.p50,
            free.rate,
            paid.p50,
            paid.rate,
            paid.rate / free.rate,
            free.p50.as_secs_f64() / paid.p50.as_secs_f64(),
        );
        if let Ok(c) = Arc::try_unwrap(cluster) {
            c.shutdown().await;
        }
    });
}

fn failover(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let lease = Duration::from_secs(2);
        let file = bundle(
            &SecretKey::generate(),
            "mandelbrot",
            p2pc_tests::guest_bytes("mandelbrot"),
            RequestedLimits::default(),
        );
        let mut took = Vec::new();
        for round in 0..3 {
            let mut cluster = Cluster::start(3).await.expect("cluster");
            p2pc_testkit::eventually("adverts", Duration::from_secs(60), || async {
                let s = cluster.node(0).status().await.ok()?;
                (s.workers_known >= 2).then_some(())
            })
            .await
            .expect("adverts");
            let mut s = Submission::new(file.clone(), b"1200 1200 600".to_vec(), Duration::from_secs(60));
            s.lease = Some(lease);
            let job = cluster.node(0).submit(s).await.expect("submit");
            let running = p2pc_testkit::eventually("running", Duration::from_secs(60), || async {
                [1, 2].into_iter().find(|&i| cluster.node(i).running() > 0)
            })
            .await
            .expect("running");
            let gone = cluster.nodes.remove(running);
            let start = Instant::now();
            gone.shutdown().await;
            p2pc_testkit::eventually("placed again", Duration::from_secs(60), || async {
                let info = cluster.node(0).job(&job).await.ok()?;
                (info.tasks.len() >= 2).then_some(())
            })
            .await
            .expect("failover");
            let d = start.elapsed();
            println!("round {round}: running elsewhere {d:?} after the worker's loss");
            took.push(d);
            cluster.node(0).wait(&job, Duration::from_secs(60)).await.expect("done");
            cluster.shutdown().await;
        }
        let p50 = percentile(&mut took, 50.0);
        println!("failover: median {p50:?} from a worker's loss to its task running elsewhere (target <= lease + 1 s = {:?})", lease + Duration::from_secs(1));
    });
}

fn shards(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let component = p2pc_tests::guest_bytes("wordcount");
        let file = p2pc_testkit::bundle_with_world(
            &SecretKey::generate(),
            "wordcount",
            component.clone(),
            RequestedLimits::default(),
            "p2pc:job/map-reduce",
        );
        // Words over many lines: P2PC_BENCH_SHARD_MIB (default 32) MiB.
        let mib = env_usize("P2PC_BENCH_SHARD_MIB", 32);
        let words = [
            "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
        ];
        let mut text = String::new();
        let mut i = 0usize;
        while text.len() < mib << 20 {
            text.push_str(words[i % words.len()]);
            text.push(if i % 11 == 10 { '\n' } else { ' ' });
            i += 1;
        }
        let input = text.into_bytes();
        let executor =
            p2pc_sandbox::WasmExecutor::new(p2pc_sandbox::Config::default()).expect("executor");
        // Warm (the compile), then timed.
        let _ = p2pc_tests::map_reduce_locally(&executor, &component, &input, 16).await;
        let start = Instant::now();
        let local = p2pc_tests::map_reduce_locally(&executor, &component, &input, 16).await;
        let local_time = start.elapsed();
        let expected = local.reduce.and_then(|o| o.result.ok()).expect("local");
        println!("16 shards of {mib} MiB locally: {local_time:?}");
        for workers in [1usize, 2, 4] {
            let cluster = Cluster::start(workers + 1).await.expect("cluster");
            p2pc_testkit::eventually("adverts", Duration::from_secs(60), || async {
                let s = cluster.node(0).status().await.ok()?;
                (s.workers_known >= workers).then_some(())
            })
            .await
            .expect("adverts");
            let mut times = Vec::new();
            for _ in 0..3 {
                let mut s = Submission::new(file.clone(), input.clone(), Duration::from_secs(300));
                s.shards = Some(16);
                let start = Instant::now();
                let job = cluster.node(0).submit(s).await.expect("submit");
                let info = cluster
                    .node(0)
                    .wait(&job, Duration::from_secs(300))
                    .await
                    .expect("wait");
                times.push(start.elapsed());
                assert!(
                    matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
                    "{info:?}"
                );
                assert_eq!(
                    cluster.node(0).output(&job).await.expect("output"),
                    expected
                );
            }
            let med = percentile(&mut times, 50.0);
            println!(
                "16 shards on {workers} worker(s): {med:?}, {:.2}x the local run",
                med.as_secs_f64() / local_time.as_secs_f64()
            );
            cluster.shutdown().await;
        }
    });
}

/// The same job once, and as 2-of-3 (three workers in parallel), in the
/// same run: latency for a tiny task and a CPU-bound one, and fuel.
fn replicated(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let cluster = Cluster::start(4).await.expect("cluster");
        p2pc_testkit::eventually("adverts", Duration::from_secs(60), || async {
            let s = cluster.node(0).status().await.ok()?;
            (s.workers_known >= 3).then_some(())
        })
        .await
        .expect("adverts");
        let owner = cluster.node(0);
        let jobs = [
            (
                "tiny (hello)",
                "hello",
                b"bench".to_vec(),
                env_usize("P2PC_BENCH_TASKS", 40),
            ),
            (
                "CPU-bound (mandelbrot 600x600)",
                "mandelbrot",
                b"600 600 300".to_vec(),
                5,
            ),
        ];
        for (label, guest, input, n) in jobs {
            let file = bundle(
                &SecretKey::generate(),
                guest,
                p2pc_tests::guest_bytes(guest),
                RequestedLimits::default(),
            );
            let mut results = Vec::new();
            for validation in [
                p2pc_node::Validation::None,
                p2pc_node::Validation::Quorum { k: 2, n: 3 },
            ] {
                let mut times = Vec::new();
                let mut fuel = 0u64;
                // One warm-up (compiles on every worker), then timed.
                for round in 0..=n {
                    let mut s =
                        Submission::new(file.clone(), input.clone(), Duration::from_secs(120));
                    s.validation = Some(validation);
                    let start = Instant::now();
                    let job = owner.submit(s).await.expect("submit");
                    let info = owner
                        .wait(&job, Duration::from_secs(120))
                        .await
                        .expect("wait");
                    let took = start.elapsed();
                    assert!(
                        matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
                        "{info:?}"
                    );
                    if round > 0 {
                        times.push(took);
                        fuel += info.tasks.iter().filter_map(|t| t.fuel_used).sum::<u64>();
                    }
                }
                results.push((percentile(&mut times, 50.0), fuel));
            }
            let ((one, fuel1), (three, fuel3)) = (results[0], results[1]);
            println!(
                "{label}: single p50 {one:?}, 2-of-3 p50 {three:?}: latency {:.2}x, fuel {:.2}x",
                three.as_secs_f64() / one.as_secs_f64(),
                fuel3 as f64 / fuel1 as f64
            );
        }
        cluster.shutdown().await;
    });
}

/// `n` tiny tasks from node 0 to node 1, 16 in flight: tasks a second.
async fn throughput(cluster: &Arc<Cluster>, file: &[u8], n: usize) -> f64 {
    let worker = cluster.node(1).peer_id();
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("permit");
        let (c, f) = (cluster.clone(), file.to_vec());
        handles.push(tokio::spawn(async move {
            let mut s = Submission::new(f, b"bench".to_vec(), Duration::from_secs(60));
            s.to = Some(worker);
            let job = c.node(0).submit(s).await.expect("submit");
            let state = c
                .node(0)
                .wait(&job, Duration::from_secs(60))
                .await
                .expect("wait")
                .status;
            assert!(
                matches!(&state, JobState::Done { outcome, .. } if outcome == "ok"),
                "{state:?}"
            );
            drop(permit);
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn flooded(rt: &tokio::runtime::Runtime) {
    let n = env_usize("P2PC_BENCH_TASKS", 400);
    rt.block_on(async {
        let cluster = Arc::new(Cluster::start(2).await.expect("cluster"));
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        throughput(&cluster, &file, 50).await;
        let (mut calm, mut rough) = (Vec::new(), Vec::new());
        let mut attackers = 0usize;
        let mut sent = 0usize;
        for _ in 0..2 {
            calm.push(throughput(&cluster, &file, n).await);
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flood = {
                let (cluster, stop) = (cluster.clone(), stop.clone());
                tokio::spawn(async move {
                    let worker = cluster.node(1).peer_id();
                    let addr = cluster.node(1).addrs()[0].clone();
                    let (mut started, mut sent) = (0usize, 0usize);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let mut a = p2pc_testkit::HostilePeer::start(addr.clone())
                            .await
                            .expect("attacker");
                        started += 1;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed)
                            && cluster.node(1).peer_score(&a.peer_id()) > p2pc_node::BLOCK_SCORE
                        {
                            sent += a.attack(worker, None).await.sent;
                            a.flood(p2pc_node::messages::ADVERT_TOPIC, 50).await;
                            a.flood(p2pc_node::LEDGER_TOPIC, 50).await;
                            a.abandon(worker, 32).await;
                            sent += 132;
                        }
                        a.stop().await;
                    }
                    (started, sent)
                })
            };
            rough.push(throughput(&cluster, &file, n).await);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let (a, m) = flood.await.expect("flood");
            attackers += a;
            sent += m;
        }
        let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        println!(
            "honest tasks: {:.0}/s alone, {:.0}/s under a flood ({sent} hostile messages from \
             {attackers} attackers, each blocked in turn); under flood / alone = {:.2}x (target >= 0.8x); \
             rounds alone {calm:.0?}, flooded {rough:.0?}",
            best(&calm),
            best(&rough),
            best(&rough) / best(&calm),
        );
        if let Ok(c) = Arc::try_unwrap(cluster) {
            c.shutdown().await;
        }
    });
}

fn sealed(rt: &tokio::runtime::Runtime) {
    let n = env_usize("P2PC_BENCH_TASKS", 2000);
    rt.block_on(async {
        let cluster = Cluster::start(2).await.expect("cluster");
        let file = bundle(
            &SecretKey::generate(),
            "hello",
            p2pc_tests::guest_bytes("hello"),
            RequestedLimits::default(),
        );
        let worker = cluster.node(1).peer_id();
        let one = |seal: bool| {
            let (cluster, file) = (&cluster, file.clone());
            async move {
                let start = Instant::now();
                let mut s = Submission::new(file, b"bench".to_vec(), Duration::from_secs(60));
                s.to = Some(worker);
                s.seal = Some(seal);
                let job = cluster.node(0).submit(s).await.expect("submit");
                let info = cluster
                    .node(0)
                    .wait(&job, Duration::from_secs(60))
                    .await
                    .expect("wait");
                assert!(
                    matches!(&info.status, JobState::Done { outcome, .. } if outcome == "ok"),
                    "{info:?}"
                );
                assert_eq!(info.sealed, seal);
                start.elapsed()
            }
        };
        for _ in 0..50 {
            one(false).await;
            one(true).await;
        }
        let (mut plain, mut sealed) = (Vec::new(), Vec::new());
        for i in 0..n {
            // Alternating, first one then the other, so drift hits both.
            if i % 2 == 0 {
                plain.push(one(false).await);
                sealed.push(one(true).await);
            } else {
                sealed.push(one(true).await);
                plain.push(one(false).await);
            }
        }
        let (p50, s50) = (percentile(&mut plain, 50.0), percentile(&mut sealed, 50.0));
        let (p99, s99) = (percentile(&mut plain, 99.0), percentile(&mut sealed, 99.0));
        println!(
            "sealed tiny tasks, {n} each, alternating: unsealed p50 {p50:?} p99 {p99:?}; \
             sealed p50 {s50:?} p99 {s99:?}; p50 ratio {:.3} (target <= 1.1)",
            s50.as_secs_f64() / p50.as_secs_f64()
        );
        cluster.shutdown().await;
    });
}

fn main() {
    // `cargo test --benches` runs bench binaries with no arguments to
    // check they start; only `cargo bench` passes --bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let which = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if which
        .as_deref()
        .is_none_or(|w| "tiny".contains(w) || w == "tasks")
    {
        tiny_tasks(&rt);
    }
    if which.as_deref().is_none_or(|w| w == "failover") {
        failover(&rt);
    }
    if which.as_deref().is_none_or(|w| w == "shards") {
        shards(&rt);
    }
    if which.as_deref().is_none_or(|w| w == "replicated") {
        replicated(&rt);
    }
    if which.as_deref().is_none_or(|w| w == "flooded") {
        flooded(&rt);
    }
    if which.as_deref().is_none_or(|w| w == "paid") {
        paid_tasks(&rt);
    }
    if which.as_deref().is_none_or(|w| w == "sealed") {
        sealed(&rt);
    }
    if which.as_deref().is_none_or(|w| "transfer".contains(w)) {
        transfer(&rt);
    }
}
