//! Ranking 10,000 offers for one task: what a submitting node does each
//! time it places a task. The timed part starts from the node's state, an
//! [`OfferBook`] of 10,000 workers, a [`ReputationManager`] with records of
//! most of them and the round trips it measured, and includes building
//! the `Vec<Candidate>` from them (fresh offers only, each worker's score
//! decayed to now), then either the full sort ([`select::rank`]) or the
//! partial one ([`select::top`], the best 3).
//!
//! Run: `cargo bench -p p2pc-market --bench rank`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use p2pc_market::select::{self, Candidate, Want};
use p2pc_market::{Evidence, Offer, OfferBook, ReputationConfig, ReputationManager};

const WORKERS: u32 = 10_000;
const NOW_MS: u64 = 1_800_000_000_000;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// splitmix64: the figures are the same on every run.
use p2pc_market::SplitMix64 as Rng;

struct Node {
    book: OfferBook<u32, ()>,
    reputation: ReputationManager<u32>,
    rtt_ms: HashMap<u32, f64>,
}

/// 10,000 offers: prices 0–49 credits per million fuel, 1–16 slots with
/// any number free, 2 % draining and 2 % expired; 80 % of the workers
/// with a record (successes, timeouts, now and then a cheat, spread over
/// the last 30 days), 90 % with a measured round trip of 1–300 ms.
fn node() -> Node {
    let mut rng = Rng(42);
    let mut book = OfferBook::new(WORKERS as usize);
    let mut reputation = ReputationManager::new(ReputationConfig::default());
    let mut rtt_ms = HashMap::new();
    let mut evidence_id = 0u64;
    for peer in 0..WORKERS {
        let slots = 1 + rng.below(16) as u32;
        let offer = Offer {
            price: rng.below(50),
            free_slots: rng.below(u64::from(slots) + 1) as u32,
            slots,
            max_fuel: 1 << 40,
            max_memory: 1 << 32,
            load_permille: rng.below(1500) as u32,
            collateral: 0,
            issued_ms: NOW_MS - 60_000,
            expires_ms: if rng.below(50) == 0 {
                NOW_MS - 1
            } else {
                NOW_MS + 300_000
            },
            draining: rng.below(50) == 0,
        };
        assert_eq!(
            book.insert(peer, offer, (), NOW_MS - 30_000),
            p2pc_market::Insert::Added
        );
        if rng.below(10) != 0 {
            rtt_ms.insert(peer, 1.0 + rng.below(300) as f64);
        }
        if rng.below(5) != 0 {
            let events = 1 + rng.below(40);
            for _ in 0..events {
                let e = match rng.below(100) {
                    0 => Evidence::Cheat,
                    1..=5 => Evidence::Timeout,
                    6..=40 => Evidence::Success { replicated: true },
                    _ => Evidence::Success { replicated: false },
                };
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&evidence_id.to_be_bytes());
                evidence_id += 1;
                let at = NOW_MS - 30 * DAY_MS + rng.below(30 * DAY_MS);
                reputation.apply(peer, id, e, at);
            }
        }
    }
    Node {
        book,
        reputation,
        rtt_ms,
    }
}

/// The candidates for one task, as a node builds them from its state.
fn candidates<'a>(node: &'a Node, want: &Want) -> Vec<Candidate<'a, u32>> {
    node.book
        .fresh(want.now_ms)
        .map(|(peer, offer, ())| Candidate {
            peer: *peer,
            offer,
            reputation: node.reputation.score(peer, want.now_ms),
            rtt_ms: node.rtt_ms.get(peer).copied(),
            reserved: 0,
        })
        .collect()
}

fn median(n: usize, mut f: impl FnMut()) -> Duration {
    median_with(n, || (), |()| f())
}

/// The median of `n` timed calls of `f`, each on a fresh input from
/// `setup` (not timed).
fn median_with<I>(n: usize, mut setup: impl FnMut() -> I, mut f: impl FnMut(I)) -> Duration {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let input = setup();
            let start = Instant::now();
            f(input);
            start.elapsed()
        })
        .collect();
    t.sort_unstable();
    t[n / 2]
}

fn main() {
    let node = node();
    let want = Want {
        fuel: 10_000_000_000,
        max_price: Some(40),
        min_reputation: None,
        now_ms: NOW_MS,
        explore: false,
    };
    let eligible = select::rank(candidates(&node, &want), &want).len();
    let best = select::top(candidates(&node, &want), &want, 3);
    let all = select::rank(candidates(&node, &want), &want);
    assert_eq!(
        best.iter().map(|(c, _)| c.peer).collect::<Vec<_>>(),
        all.iter().take(3).map(|(c, _)| c.peer).collect::<Vec<_>>(),
        "top 3 is the head of the full ranking"
    );
    println!(
        "{} offers, {} fresh, {eligible} eligible; {} workers with a record",
        node.book.len(),
        candidates(&node, &want).len(),
        node.reputation.records().count()
    );

    let build = || {
        black_box(candidates(&node, black_box(&want)));
    };
    let rank = || {
        black_box(select::rank(candidates(&node, &want), black_box(&want)));
    };
    let top3 = || {
        black_box(select::top(candidates(&node, &want), black_box(&want), 3));
    };

    // Where the time goes: the reputation look-ups alone, and the two
    // rankings of candidates built beforehand (the copy is not timed).
    let scores = || {
        let mut sum = 0.0;
        for (peer, _, ()) in node.book.fresh(NOW_MS) {
            sum += node.reputation.score(peer, NOW_MS).unwrap_or(0.0);
        }
        black_box(sum);
    };
    let built = candidates(&node, &want);

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let mut g = c.benchmark_group("rank_10k_offers");
    g.bench_function("build_candidates", |b| b.iter(build));
    g.bench_function("reputation_scores", |b| b.iter(scores));
    g.bench_function("rank_prebuilt", |b| {
        b.iter_batched(
            || built.clone(),
            |v| black_box(select::rank(v, &want)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("top3_prebuilt", |b| {
        b.iter_batched(
            || built.clone(),
            |v| black_box(select::top(v, &want, 3)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("build_and_rank", |b| b.iter(rank));
    g.bench_function("build_and_top3", |b| b.iter(top3));
    g.finish();
    c.final_summary();

    const N: usize = 1000;
    let (b50, r50, t50) = (median(N, build), median(N, rank), median(N, top3));
    let s50 = median(N, scores);
    let rp50 = median_with(
        N,
        || built.clone(),
        |v| {
            black_box(select::rank(v, &want));
        },
    );
    let tp50 = median_with(
        N,
        || built.clone(),
        |v| {
            black_box(select::top(v, &want, 3));
        },
    );
    println!("\nranking 10,000 offers for one task, median of {N}:");
    println!("| step | time |");
    println!("|---|---|");
    println!("| build the candidates alone | {b50:.2?} |");
    println!("| of which the reputation scores | {s50:.2?} |");
    println!("| `select::rank` of candidates built beforehand | {rp50:.2?} |");
    println!("| `select::top(.., 3)` of candidates built beforehand | {tp50:.2?} |");
    println!("| build + `select::rank` (full sort) | {r50:.2?} |");
    println!("| build + `select::top(.., 3)` (partial) | {t50:.2?} |");
    let target = Duration::from_millis(1);
    println!(
        "target <= 1 ms per ranking: rank {}, top {}",
        if r50 <= target { "met" } else { "NOT met" },
        if t50 <= target { "met" } else { "NOT met" }
    );
}
