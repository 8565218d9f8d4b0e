//! The ledger's two costs.
//!
//! 1. Apply rate: ops inserted into one fresh replica per second, every
//!    signature verified, against raw Ed25519 verification (ed25519-dalek
//!    `verify_strict`, keys parsed beforehand) of the same ops' signatures
//!    in the same run. Reported as a ratio.
//! 2. Convergence after a partition heals, for 100 and 1,000 replicas: a
//!    discrete-event simulation with a modelled network, in which every
//!    replica is a real `CreditManager` and every message the real sync
//!    encoding. Replicas sit on a random graph of degree 8; each half of
//!    the partition makes its own ops; at heal, the cut edges return and
//!    both ends of each pull from the other (as a node does on connect),
//!    then gossip what they learned, which floods their side. Latency per
//!    message is uniform in 20–80 ms; applying an op costs the per-op time
//!    measured in part 1. Reported: simulated time from heal until every
//!    replica holds every op, and that all digests agree.
//!
//! 3. Webhooks: payment events verified and minted per second by a real
//!    node's issuer service (`[issuer]`, clearing 0): each event's
//!    `Stripe-Signature` checked over its raw body, the event parsed, a
//!    mint signed, checked and written with the event's record in one
//!    batch, synced (group commit) before the answer. Sent by 32 clients
//!    at once, through the gateway over HTTP/1.1 keep-alive and, to see
//!    what HTTP costs, straight to the node's handle. Against part 1's
//!    apply rate, measured in the same run.
//!
//! Run: `cargo bench -p p2pc-benches --bench ledger [apply|convergence|webhooks]`
//! (`P2PC_BENCH_WEBHOOKS=5000`).
//! (`P2PC_BENCH_OPS=20000`, `P2PC_BENCH_PARTITION_OPS=200`.)

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::{Duration, Instant};

use p2pc_crypto::SecretKey;
use p2pc_ledger::sync::{SyncRequest, answer, decode_ops, encode_ops};
use p2pc_ledger::{Body, CreditManager, Genesis, Insert, Op};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn accounts(n: usize) -> (Vec<SecretKey>, Genesis) {
    let keys: Vec<SecretKey> = (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            SecretKey::from_seed(&seed)
        })
        .collect();
    let genesis = Genesis {
        network: "bench".into(),
        allocations: keys.iter().map(|k| (k.public(), 1_000_000_000)).collect(),
        ..Genesis::default()
    };
    (keys, genesis)
}

/// `n` valid transfers among `keys`, drafted against `reference` (which
/// ends holding them all).
fn transfers(
    reference: &mut CreditManager,
    keys: &[SecretKey],
    senders: &[usize],
    n: usize,
    rng: &mut Rng,
    t0: u64,
) -> Vec<Op> {
    let mut ops = Vec::with_capacity(n);
    for i in 0..n {
        let from = senders[rng.below(senders.len() as u64) as usize];
        let to = rng.below(keys.len() as u64) as usize;
        let op = reference.draft(
            &keys[from],
            t0 + i as u64,
            Body::Transfer {
                to: keys[to].public(),
                amount: 1 + rng.below(100),
            },
        );
        assert!(matches!(reference.insert(op.clone()), Insert::Applied(_)));
        ops.push(op);
    }
    ops
}

fn apply_rate() -> Duration {
    let n = env_usize("P2PC_BENCH_OPS", 20_000);
    let (keys, genesis) = accounts(100);
    let mut rng = Rng(1);
    let mut reference = CreditManager::new(genesis.clone());
    let all: Vec<usize> = (0..keys.len()).collect();
    let ops = transfers(&mut reference, &keys, &all, n, &mut rng, 0);

    // Raw: the same signatures over the same bytes, keys parsed once.
    let prepared: Vec<(
        ed25519_dalek::VerifyingKey,
        Vec<u8>,
        ed25519_dalek::Signature,
    )> = ops
        .iter()
        .map(|op| {
            (
                ed25519_dalek::VerifyingKey::from_bytes(&op.author.to_bytes()).expect("key"),
                op.signed_bytes(),
                ed25519_dalek::Signature::from_bytes(&op.signature.0),
            )
        })
        .collect();
    let mut best_raw = Duration::MAX;
    let mut best_apply = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        for (key, msg, sig) in &prepared {
            key.verify_strict(msg, sig).expect("valid");
        }
        best_raw = best_raw.min(start.elapsed());

        let mut replica = CreditManager::new(genesis.clone());
        let batch = ops.clone();
        let start = Instant::now();
        for op in batch {
            replica.insert(op);
        }
        best_apply = best_apply.min(start.elapsed());
        assert_eq!(replica.digest(), reference.digest(), "the replica agrees");
    }
    let raw_rate = n as f64 / best_raw.as_secs_f64();
    let apply_rate = n as f64 / best_apply.as_secs_f64();
    println!("apply rate ({n} transfers among 100 accounts, best of 3):");
    println!("  raw Ed25519 verify_strict   {raw_rate:>10.0} signatures/s");
    println!("  CreditManager::insert       {apply_rate:>10.0} ops/s");
    println!(
        "  ratio                       {:>10.2}x",
        apply_rate / raw_rate
    );
    best_apply / n as u32
}

/// Simulated time in microseconds.
type Micros = u64;

enum Event {
    /// A gossip message (an encoded op batch) arrives.
    Gossip { to: usize, from: usize, msg: usize },
    /// A sync request arrives at `to`, from `from`.
    SyncAsk {
        to: usize,
        from: usize,
        request: Vec<u8>,
    },
    /// A sync answer arrives back at `to`.
    SyncReply { to: usize, reply: Vec<u8> },
}

struct Sim {
    replicas: Vec<CreditManager>,
    neighbours: Vec<Vec<usize>>,
    /// Gossip messages by id: their encoded ops.
    messages: Vec<Vec<u8>>,
    /// (replica, message) pairs already forwarded.
    seen: HashSet<(usize, usize)>,
    /// Each replica is busy applying until this time.
    busy_until: Vec<Micros>,
    queue: BinaryHeap<Reverse<(Micros, u64)>>,
    events: std::collections::HashMap<u64, Event>,
    next_event: u64,
    rng: Rng,
    per_op: Micros,
}

impl Sim {
    fn latency(&mut self) -> Micros {
        20_000 + self.rng.below(60_000)
    }

    fn schedule(&mut self, at: Micros, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, event);
        self.queue.push(Reverse((at, id)));
    }

    /// `r` inserts `ops` from time `now`; returns when it is done and the
    /// ops that were new to it.
    fn apply(&mut self, r: usize, now: Micros, ops: Vec<Op>) -> (Micros, Vec<Op>) {
        let start = now.max(self.busy_until[r]);
        let done = start + self.per_op * ops.len() as u64;
        self.busy_until[r] = done;
        let mut new = Vec::new();
        for op in ops {
            if !matches!(self.replicas[r].insert(op.clone()), Insert::Duplicate) {
                new.push(op);
            }
        }
        (done, new)
    }

    fn flood(&mut self, r: usize, from: Option<usize>, msg: usize, at: Micros) {
        if !self.seen.insert((r, msg)) {
            return;
        }
        for n in self.neighbours[r].clone() {
            if Some(n) != from {
                let l = self.latency();
                self.schedule(
                    at + l,
                    Event::Gossip {
                        to: n,
                        from: r,
                        msg,
                    },
                );
            }
        }
    }

    fn publish(&mut self, r: usize, ops: &[Op], at: Micros) {
        for batch in ops.chunks(128) {
            self.messages.push(encode_ops(batch));
            let msg = self.messages.len() - 1;
            self.flood(r, None, msg, at);
        }
    }

    fn ask(&mut self, from: usize, to: usize, at: Micros) {
        let request = SyncRequest::of(&self.replicas[from]).encode();
        let l = self.latency();
        self.schedule(at + l, Event::SyncAsk { to, from, request });
    }

    /// Runs until every replica holds `total` ops; returns that time.
    fn run(&mut self, total: usize) -> Option<Micros> {
        let mut complete = self.replicas.iter().filter(|r| r.len() == total).count();
        while let Some(Reverse((now, id))) = self.queue.pop() {
            let event = self.events.remove(&id).expect("scheduled");
            let r = match event {
                Event::Gossip { to, from, msg } => {
                    if self.seen.contains(&(to, msg)) {
                        continue;
                    }
                    let ops = decode_ops(&self.messages[msg])
                        .expect("well formed")
                        .into_iter()
                        .map(|o| o.expect("valid"))
                        .collect();
                    let before = self.replicas[to].len();
                    let (done, _) = self.apply(to, now, ops);
                    self.flood(to, Some(from), msg, done);
                    if before == self.replicas[to].len() {
                        continue;
                    }
                    to
                }
                Event::SyncAsk { to, from, request } => {
                    let request = SyncRequest::decode(&request).expect("valid");
                    let (ops, _more) = answer(&self.replicas[to], &request, usize::MAX);
                    let mut reply = vec![0];
                    reply.extend(encode_ops(&ops));
                    let l = self.latency();
                    self.schedule(now + l, Event::SyncReply { to: from, reply });
                    continue;
                }
                Event::SyncReply { to, reply, .. } => {
                    let ops = decode_ops(&reply[1..])
                        .expect("well formed")
                        .into_iter()
                        .map(|o| o.expect("valid"))
                        .collect();
                    let (done, new) = self.apply(to, now, ops);
                    if new.is_empty() {
                        continue;
                    }
                    self.publish(to, &new, done);
                    to
                }
            };
            if self.replicas[r].len() == total {
                complete += 1;
                if complete == self.replicas.len() {
                    return Some(self.busy_until[r].max(now));
                }
            }
        }
        None
    }
}

/// `links`: how many of the cut edges come back at heal (all if None).
fn convergence(replicas: usize, per_op: Micros, links: Option<usize>) {
    let partition_ops = env_usize("P2PC_BENCH_PARTITION_OPS", 200);
    let (keys, genesis) = accounts(40);
    let mut rng = Rng(replicas as u64);
    // Random graph of degree about 8: a ring plus random chords.
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); replicas];
    let link = |a: usize, b: usize, n: &mut Vec<Vec<usize>>| {
        if a != b && !n[a].contains(&b) {
            n[a].push(b);
            n[b].push(a);
        }
    };
    for i in 0..replicas {
        link(i, (i + 1) % replicas, &mut neighbours);
    }
    for i in 0..replicas {
        for _ in 0..3 {
            let j = rng.below(replicas as u64) as usize;
            link(i, j, &mut neighbours);
        }
    }
    let half = |i: usize| i < replicas / 2;
    let mut cut: Vec<(usize, usize)> = (0..replicas)
        .flat_map(|a| neighbours[a].iter().map(move |&b| (a, b)))
        .filter(|&(a, b)| a < b && half(a) != half(b))
        .collect();

    // During the partition each half's accounts transact; each half's
    // replicas all hold that half's ops (gossip within a half is the
    // steady state, not what is measured).
    let mut left = CreditManager::new(genesis.clone());
    let mut right = CreditManager::new(genesis.clone());
    let left_ops = transfers(
        &mut left,
        &keys,
        &(0..20).collect::<Vec<_>>(),
        partition_ops / 2,
        &mut rng,
        0,
    );
    let right_ops = transfers(
        &mut right,
        &keys,
        &(20..40).collect::<Vec<_>>(),
        partition_ops / 2,
        &mut rng,
        0,
    );
    let total = left_ops.len() + right_ops.len();
    if let Some(k) = links {
        cut.truncate(k);
    }
    let replicas_v: Vec<CreditManager> = (0..replicas)
        .map(|i| if half(i) { left.clone() } else { right.clone() })
        .collect();
    let mut sim = Sim {
        replicas: replicas_v,
        neighbours,
        messages: Vec::new(),
        seen: HashSet::new(),
        busy_until: vec![0; replicas],
        queue: BinaryHeap::new(),
        events: Default::default(),
        next_event: 0,
        rng: Rng(7),
        per_op,
    };
    // Heal at time 0: both ends of every restored edge pull.
    for &(a, b) in &cut {
        sim.ask(a, b, 0);
        sim.ask(b, a, 0);
    }
    let wall = Instant::now();
    let at = sim.run(total).expect("every replica converges");
    let digest = sim.replicas[0].digest();
    assert!(
        sim.replicas.iter().all(|r| r.digest() == digest),
        "replicas holding the same ops agree"
    );
    println!(
        "  {replicas:>5} replicas, {total} ops made in the partition, {} links restored: converged {:.3} s after heal (simulated; {:.1} s to simulate)",
        cut.len(),
        at as f64 / 1e6,
        wall.elapsed().as_secs_f64()
    );
}

const SECRET: &[u8] = b"whsec_bench";

/// A signed `payment_intent.succeeded` event, numbered `i`.
fn webhook(i: usize, account: &str) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(&serde_json::json!({
        "id": format!("evt_{i:08}"),
        "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": format!("pi_{i:08}"),
            "amount": 100 + (i % 1000),
            "currency": "usd",
            "metadata": {"p2pc_account": account},
        }},
    }))
    .expect("json");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let signature = p2pc_payments::stripe::Stripe::sign(SECRET, now, &body);
    (body, signature)
}

/// Events per second through one issuer node, `clients` senders at once:
/// over HTTP when `http`, else straight to the node's handle.
async fn webhook_rate(n: usize, clients: usize, http: bool) -> f64 {
    use http_body_util::BodyExt;

    let dir = tempfile::tempdir().expect("dir");
    let issuer = SecretKey::generate();
    let genesis = Genesis {
        network: "bench-issuer".into(),
        issuers: [issuer.public()].into(),
        ..Genesis::default()
    };
    let path = dir.path().join("genesis.toml");
    std::fs::write(&path, genesis.to_toml()).expect("genesis");
    let secrets = dir.path().join("secrets");
    std::fs::write(&secrets, SECRET).expect("secrets");
    let issuer = std::sync::Arc::new(issuer);
    let cluster = p2pc_testkit::Cluster::start_with(1, |_, c| {
        c.ledger.genesis = Some(path.clone());
        c.issuer.key = Some("issuer".into());
        c.issuer.webhook_secrets = Some(secrets.clone());
        c.issuer.rates = [("usd".to_owned(), 1)].into();
        c.issuer.clearing = Duration::ZERO;
        c.issuer_key = Some(p2pc_node::IssuerKey(issuer.clone()));
    })
    .await
    .expect("node");
    let handle = cluster.node(0).handle();
    let account = SecretKey::generate().public().to_string();
    let events: Vec<(Vec<u8>, String)> = (0..n).map(|i| webhook(i, &account)).collect();
    let events = std::sync::Arc::new(events);
    let gateway = if http {
        Some(p2pc_benches::gateway(handle.clone()).await.0)
    } else {
        None
    };
    let addr = gateway.as_ref().and_then(|g| g.addr);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (events, next, handle) = (events.clone(), next.clone(), handle.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = match addr {
                Some(addr) => {
                    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    stream.set_nodelay(true).expect("nodelay");
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                            .expect("handshake");
                    tokio::spawn(conn);
                    Some(sender)
                }
                None => None,
            };
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((body, signature)) = events.get(i) else {
                    break;
                };
                match &mut sender {
                    Some(sender) => {
                        let request = hyper::Request::post("/v1/issuer/webhooks/stripe")
                            .header("host", "localhost")
                            .header("content-type", "application/json")
                            .header("stripe-signature", signature.as_str())
                            .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
                            .expect("request");
                        let response = sender.send_request(request).await.expect("answer");
                        assert_eq!(response.status(), 200);
                        let _ = response.into_body().collect().await.expect("body");
                    }
                    None => {
                        let r = handle
                            .issuer_webhook("stripe", Some(signature), body)
                            .await
                            .expect("minted");
                        assert_eq!(r.action, "minted");
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let supply = handle
        .ledger(p2pc_node::LedgerRequest::Verify)
        .await
        .expect("verify");
    match supply {
        p2pc_node::LedgerAnswer::Verify(v) => {
            assert!(v.ok, "{v:?}");
            let want: u64 = (0..n).map(|i| 100 + (i % 1000) as u64).sum();
            assert_eq!(v.minted, want.to_string(), "every event minted once");
        }
        other => panic!("{other:?}"),
    }
    if let Some(g) = gateway {
        g.shutdown().await;
    }
    cluster.shutdown().await;
    rate
}

fn webhooks(per_op: Duration) {
    let n = env_usize("P2PC_BENCH_WEBHOOKS", 5000);
    let apply = 1.0 / per_op.as_secs_f64();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut http = Vec::new();
    let mut direct = Vec::new();
    // Three rounds, alternating; the median of each.
    for _ in 0..3 {
        http.push(rt.block_on(webhook_rate(n, 32, true)));
        direct.push(rt.block_on(webhook_rate(n, 32, false)));
    }
    http.sort_by(f64::total_cmp);
    direct.sort_by(f64::total_cmp);
    println!("webhooks verified and minted ({n} events, 32 senders, median of 3):");
    println!(
        "  through the gateway (HTTP)   {:>10.0} events/s   {:.2}x the apply rate",
        http[1],
        http[1] / apply
    );
    println!(
        "  to the node's handle         {:>10.0} events/s   {:.2}x the apply rate",
        direct[1],
        direct[1] / apply
    );
    println!("  ledger apply rate (part 1)   {apply:>10.0} ops/s");
}

fn main() {
    let on = p2pc_benches::chosen;
    let per_op = apply_rate();
    if on("webhooks") {
        webhooks(per_op);
    }
    if !on("convergence") {
        return;
    }
    let per_op_us = per_op.as_micros().max(1) as Micros;
    println!(
        "convergence after heal (latency 20-80 ms, degree ~8, {per_op_us} µs per op applied):"
    );
    for links in [None, Some(1)] {
        convergence(100, per_op_us, links);
        convergence(1000, per_op_us, links);
    }
}
