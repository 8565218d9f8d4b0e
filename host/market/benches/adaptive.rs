//! Adaptive validation against cheaters: a deterministic simulation with
//! the real [`ReputationManager`], [`select::top`], [`Validation::Adaptive`]
//! and [`validation::decide`].
//!
//! 10,000 workers with equal offers (same price, slots and round trip), 5 %
//! of them cheaters who return a wrong answer on 10 % of the tasks they
//! run, each wrong answer distinct (two cheaters never agree). 1,000,000
//! tasks, one simulated second apart, so reputation decays with the
//! configured half-life. Per task:
//!
//! 1. The first worker is chosen by selection: a random sample of 64
//!    workers (not all 10,000, to keep the run short) ranked with
//!    `select::top(.., 1)`, their scores from the manager; 5 % of
//!    placements explore (rank only the sampled workers with no record).
//! 2. `should_replicate` with a random roll decides the plan
//!    (`Validation::Adaptive.plan`): 1 replica, or 2-of-2. Further
//!    replicas are chosen the same way, each distinct from those placed.
//! 3. `decide` with `Validation::Adaptive.cap()` (3): a disagreement adds
//!    a replica; a quorum accepts the winners' answer; three different
//!    answers are no quorum, and the task fails.
//! 4. Evidence: winners of a replicated task `Success { replicated: true }`,
//!    the minority `Cheat`, an unreplicated answer
//!    `Success { replicated: false }`.
//!
//! Run: `cargo bench -p p2pc-market --bench adaptive`. The reputation
//! defaults are run first, then alternative spot-check settings;
//! `P2PC_BENCH_SPOT="1:20000,4:50000"` (scale:floor_ppm, ...) runs those
//! instead, `P2PC_BENCH_TASKS` sets the number of tasks and
//! `P2PC_BENCH_SEED` the seed (7).

use std::time::Instant;

use p2pc_market::select::{self, Candidate, Want};
use p2pc_market::validation::{self, Validation, Verdict};
use p2pc_market::{Evidence, Offer, ReputationConfig, ReputationManager};

const WORKERS: u32 = 10_000;
const CHEATER_SHARE_PERMILLE: u64 = 50;
const CHEAT_RATE_PERMILLE: u64 = 100;
const SAMPLE: usize = 64;
const EXPLORE_PERMILLE: u64 = 50;
const TASK_EVERY_MS: u64 = 1000;
/// The answer every honest run of a task returns (the tasks differ, but
/// only whether answers are equal matters).
const RIGHT: u64 = 0;

/// splitmix64: the figures are the same on every run.
use p2pc_market::SplitMix64 as Rng;

#[derive(Debug, Default)]
struct Outcome {
    tasks: u64,
    runs: u64,
    replicated: u64,
    widened: u64,
    wrong_accepted: u64,
    wrong_accepted_late: u64,
    no_quorum: u64,
    wrong_returned: u64,
    cheaters: u64,
    cheaters_caught: u64,
    honest_flagged: u64,
    /// Cheaters that reached a trusted run at some point.
    cheaters_trusted: u64,
    /// Cheaters with a wrong answer accepted and never caught.
    cheaters_escaped: u64,
    /// Workers that ran at least one task, and of those cheaters.
    workers_used: u64,
    cheaters_used: u64,
    /// The share of all runs done by the busiest 1 % of workers.
    top_share: f64,
    secs: f64,
}

impl Outcome {
    fn pct(&self, n: u64) -> f64 {
        100.0 * n as f64 / self.tasks as f64
    }

    fn overhead(&self) -> f64 {
        self.runs as f64 / self.tasks as f64
    }
}

/// The workers and the randomness: everything a placement needs besides
/// the manager.
struct World {
    rng: Rng,
    cheater: Vec<bool>,
    offer: Offer,
    next_wrong: u64,
    runs_of: Vec<u64>,
}

impl World {
    /// Chooses a worker not in `placed` by selection, runs the task on
    /// it and records who and what it answered.
    fn place(
        &mut self,
        placed: &mut Vec<u32>,
        answers: &mut Vec<Option<u64>>,
        reputation: &ReputationManager<u32>,
        now_ms: u64,
    ) {
        let mut sample = Vec::with_capacity(SAMPLE);
        while sample.len() < SAMPLE {
            let peer = self.rng.below(u64::from(WORKERS)) as u32;
            if placed.contains(&peer) {
                continue;
            }
            sample.push(Candidate {
                peer,
                offer: &self.offer,
                reputation: reputation.score(&peer, now_ms),
                rtt_ms: Some(20.0),
                reserved: 0,
            });
        }
        let want = Want {
            fuel: 1_000_000_000,
            max_price: None,
            min_reputation: None,
            now_ms,
            explore: self.rng.below(1000) < EXPLORE_PERMILLE,
        };
        let chosen = select::top(sample, &want, 1)
            .first()
            .map(|(c, _)| c.peer)
            .expect("every offer is eligible");
        let cheats = self.cheater[chosen as usize] && self.rng.below(1000) < CHEAT_RATE_PERMILLE;
        let answer = if cheats {
            self.next_wrong += 1;
            self.next_wrong
        } else {
            RIGHT
        };
        self.runs_of[chosen as usize] += 1;
        placed.push(chosen);
        answers.push(Some(answer));
    }
}

fn simulate(config: ReputationConfig, tasks: u64, seed: u64) -> Outcome {
    let started = Instant::now();
    let mut rng = Rng(seed);
    let cheater: Vec<bool> = (0..WORKERS)
        .map(|_| rng.below(1000) < CHEATER_SHARE_PERMILLE)
        .collect();
    let mut world = World {
        rng,
        cheater,
        offer: Offer {
            price: 1,
            free_slots: 4,
            slots: 4,
            max_fuel: u64::MAX,
            max_memory: u64::MAX,
            load_permille: 0,
            collateral: 0,
            issued_ms: 0,
            expires_ms: u64::MAX,
            draining: false,
        },
        next_wrong: RIGHT,
        runs_of: vec![0; WORKERS as usize],
    };
    let mut reputation = ReputationManager::new(config);
    let validation = Validation::Adaptive;
    let mut out = Outcome {
        tasks,
        cheaters: world.cheater.iter().filter(|c| **c).count() as u64,
        ..Outcome::default()
    };
    let mut trusted_once = vec![false; WORKERS as usize];
    let mut accepted_wrong = vec![false; WORKERS as usize];
    let mut placed: Vec<u32> = Vec::with_capacity(validation.cap());
    let mut answers: Vec<Option<u64>> = Vec::with_capacity(validation.cap());

    for task in 0..tasks {
        let now_ms = task * TASK_EVERY_MS;
        placed.clear();
        answers.clear();
        world.place(&mut placed, &mut answers, &reputation, now_ms);
        let replicate = reputation.should_replicate(&placed[0], world.rng.next_u64());
        let (k, n) = validation.plan(replicate);
        while placed.len() < n {
            world.place(&mut placed, &mut answers, &reputation, now_ms);
        }
        let verdict = loop {
            match validation::decide(&answers, k, validation.cap()) {
                Verdict::More(m) => {
                    for _ in 0..m {
                        world.place(&mut placed, &mut answers, &reputation, now_ms);
                    }
                }
                v => break v,
            }
        };
        out.runs += placed.len() as u64;
        out.replicated += u64::from(replicate);
        out.widened += u64::from(placed.len() > n);
        out.wrong_returned += answers.iter().filter(|a| **a != Some(RIGHT)).count() as u64;

        let mut apply = |i: usize, evidence: Evidence| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&task.to_be_bytes());
            id[8] = i as u8;
            reputation.apply(placed[i], id, evidence, now_ms);
        };
        match verdict {
            Verdict::Agreed { winners, minority } => {
                if answers[winners[0]] != Some(RIGHT) {
                    accepted_wrong[placed[winners[0]] as usize] = true;
                    out.wrong_accepted += 1;
                    if task >= tasks / 2 {
                        out.wrong_accepted_late += 1;
                    }
                }
                for i in winners {
                    apply(i, Evidence::Success { replicated: k > 1 });
                }
                for i in minority {
                    apply(i, Evidence::Cheat);
                }
            }
            Verdict::NoQuorum => out.no_quorum += 1,
            Verdict::More(_) => unreachable!("decided above"),
        }
        for peer in &placed {
            if world.cheater[*peer as usize] && reputation.trusted(peer) {
                trusted_once[*peer as usize] = true;
            }
        }
    }
    out.cheaters_trusted = trusted_once.iter().filter(|t| **t).count() as u64;
    out.cheaters_escaped = accepted_wrong
        .iter()
        .enumerate()
        .filter(|(w, a)| {
            **a && reputation
                .record(&(*w as u32))
                .is_some_and(|r| r.counts.cheat == 0)
        })
        .count() as u64;

    for (peer, record) in reputation.records() {
        if record.counts.cheat > 0 {
            if world.cheater[*peer as usize] {
                out.cheaters_caught += 1;
            } else {
                out.honest_flagged += 1;
            }
        }
    }
    let used = |w: &(usize, &u64)| *w.1 > 0;
    out.workers_used = world.runs_of.iter().enumerate().filter(used).count() as u64;
    out.cheaters_used = world
        .runs_of
        .iter()
        .enumerate()
        .filter(used)
        .filter(|(w, _)| world.cheater[*w])
        .count() as u64;
    let mut busiest = world.runs_of.clone();
    busiest.sort_unstable_by(|a, b| b.cmp(a));
    let top: u64 = busiest.iter().take(WORKERS as usize / 100).sum();
    out.top_share = top as f64 / out.runs as f64;
    out.secs = started.elapsed().as_secs_f64();
    out
}

fn configs() -> Vec<ReputationConfig> {
    let base = ReputationConfig::default();
    let with = |scale: f64, floor_ppm: u32| ReputationConfig {
        spot_check_scale: scale,
        spot_check_floor_ppm: floor_ppm,
        ..base
    };
    let Ok(list) = std::env::var("P2PC_BENCH_SPOT") else {
        return vec![
            base,
            with(2.0, 20_000),
            with(4.0, 20_000),
            with(1.0, 100_000),
        ];
    };
    list.split(',')
        .map(|item| {
            let (scale, floor) = item
                .split_once(':')
                .expect("P2PC_BENCH_SPOT: scale:floor_ppm, comma-separated");
            with(
                scale.trim().parse().expect("a scale"),
                floor.trim().parse().expect("a floor in ppm"),
            )
        })
        .collect()
}

fn main() {
    let tasks: u64 = std::env::var("P2PC_BENCH_TASKS")
        .map(|s| s.parse().expect("P2PC_BENCH_TASKS: a number"))
        .unwrap_or(1_000_000);
    let seed: u64 = std::env::var("P2PC_BENCH_SEED")
        .map(|s| s.parse().expect("P2PC_BENCH_SEED: a number"))
        .unwrap_or(7);
    println!(
        "adaptive validation: {WORKERS} workers, {}% cheaters wrong on {}% of their runs, \
         {tasks} tasks, a sample of {SAMPLE} ranked per placement, {}% explore",
        CHEATER_SHARE_PERMILLE / 10,
        CHEAT_RATE_PERMILLE / 10,
        EXPLORE_PERMILLE / 10,
    );
    let results: Vec<(ReputationConfig, Outcome)> = configs()
        .into_iter()
        .map(|c| (c, simulate(c, tasks, seed)))
        .collect();
    println!(
        "\n| spot_check_scale | spot_check_floor | wrong accepted | runs / task | replicated | \
         no quorum | cheaters caught | time |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (config, o) in &results {
        println!(
            "| {} | {:.1} % | {} ({:.3} %) | {:.3}× | {:.2} % | {} | {} of {} | {:.1} s |",
            config.spot_check_scale,
            f64::from(config.spot_check_floor_ppm) / 1e4,
            o.wrong_accepted,
            o.pct(o.wrong_accepted),
            o.overhead(),
            o.pct(o.replicated),
            o.no_quorum,
            o.cheaters_caught,
            o.cheaters,
            o.secs,
        );
    }
    println!();
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    for (config, o) in &results {
        println!(
            "scale {} floor {} ppm: wrong accepted <= 0.1 % {}, runs / task <= 1.15 {}; \
             {} wrong answers returned, {} accepted ({} in the second half), {} rejected \
             ({} tasks widened to 3); cheaters: {} ran a task, {} were trusted at some point, \
             {} had a wrong answer accepted and were never caught; honest workers flagged: {}; \
             {} workers ran a task, the busiest 1 % ran {:.0} % of the runs",
            config.spot_check_scale,
            config.spot_check_floor_ppm,
            met(o.pct(o.wrong_accepted) <= 0.1),
            met(o.overhead() <= 1.15),
            o.wrong_returned,
            o.wrong_accepted,
            o.wrong_accepted_late,
            o.wrong_returned - o.wrong_accepted,
            o.widened,
            o.cheaters_used,
            o.cheaters_trusted,
            o.cheaters_escaped,
            o.honest_flagged,
            o.workers_used,
            100.0 * o.top_share,
        );
    }
}
