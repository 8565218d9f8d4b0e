//! Choosing a worker for a task: the submitter's side of the market.
//!
//! An offer is eligible if it is fresh, its worker is not draining, its
//! price is within the job's cap and its worker's reputation meets the
//! job's floor (urgent work). Eligible offers are ranked by
//!
//! ```text
//! score = (expected cost + 1) × latency × load / trust      (lower is better)
//! expected cost = price × fuel estimate / 10^6               (credits)
//! latency       = 1 + round trip / 1 s                       (unknown: 100 ms)
//! load          = (1 + tasks of this job already on it) × (1 + busy share / 2),
//!                 doubled if it has no slot free
//! trust         = reputation score (no record: ½, the prior)
//! ```
//!
//! Why this shape: what a submitter buys is a *correct answer soon*, so
//! the expected cost is divided by the chance the answer is good (a worker
//! with half the reputation must be half the price to rank the same), and
//! multiplied by what delays it (distance, and a queue of other work).
//! Every factor is monotone, so at equal reputation the cheaper offer
//! ranks first and at equal price the better reputation does. The `+ 1`
//! keeps latency and load deciding on an unpaid network, where every
//! price is 0. Tasks already placed on a worker count against it, so a
//! job's shards spread.
//!
//! Newcomers: with no record a worker would rank at the prior forever if
//! nobody tried it. A small share of tasks (the caller's roll, see
//! [`Want::explore`]) is ranked among workers with no record only, so
//! honest newcomers earn one; replication (adaptive validation replicates
//! every task of a worker without a run of valid results) keeps that safe.

use crate::offer::Offer;

/// What a task wants of a worker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Want {
    /// The task's fuel estimate (its limit, if nothing better is known).
    pub fuel: u64,
    /// The highest price accepted, credits per million fuel.
    pub max_price: Option<u64>,
    /// The lowest reputation accepted (urgent work).
    pub min_reputation: Option<f64>,
    /// Now, Unix milliseconds: expired offers are never chosen.
    pub now_ms: u64,
    /// Rank only workers with no record, if there are any (the share of
    /// tasks given to newcomers).
    pub explore: bool,
}

/// One worker to rank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate<'a, P> {
    /// Who.
    pub peer: P,
    /// Its offer.
    pub offer: &'a Offer,
    /// Its reputation score; `None`: no record.
    pub reputation: Option<f64>,
    /// The last measured round trip, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Tasks of this job already placed on it.
    pub reserved: u32,
}

/// Why an offer is not eligible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ineligible {
    /// Past its expiry.
    Expired,
    /// Its worker is draining.
    Draining,
    /// Its price is above the job's cap.
    TooExpensive,
    /// Its worker's reputation is below the job's floor.
    Untrusted,
}

/// The reputation assumed of a worker with no record.
pub const PRIOR: f64 = 0.5;
/// The round trip assumed when none was measured, milliseconds.
pub const UNKNOWN_RTT_MS: f64 = 100.0;

/// The candidate's score for `want` (lower is better), or why it is not
/// eligible.
pub fn score<P>(c: &Candidate<'_, P>, want: &Want) -> Result<f64, Ineligible> {
    let o = c.offer;
    if !o.is_fresh(want.now_ms) {
        return Err(Ineligible::Expired);
    }
    if o.draining {
        return Err(Ineligible::Draining);
    }
    if want.max_price.is_some_and(|m| o.price > m) {
        return Err(Ineligible::TooExpensive);
    }
    let trust = c.reputation.unwrap_or(PRIOR);
    if want.min_reputation.is_some_and(|m| trust < m) {
        return Err(Ineligible::Untrusted);
    }
    let cost = o.price as f64 * want.fuel as f64 / 1e6;
    let latency = 1.0 + c.rtt_ms.unwrap_or(UNKNOWN_RTT_MS).max(0.0) / 1000.0;
    let slots = f64::from(o.slots.max(1));
    let busy = (slots - f64::from(o.free_slots.min(o.slots))) / slots;
    let mut load = (1.0 + f64::from(c.reserved)) * (1.0 + busy / 2.0);
    if o.free_slots == 0 {
        load *= 2.0;
    }
    Ok((cost + 1.0) * latency * load / trust.max(1e-9))
}

/// The eligible candidates, best first (ties broken by `P`'s order, so
/// the ranking is deterministic).
pub fn rank<'a, P: Ord>(
    candidates: Vec<Candidate<'a, P>>,
    want: &Want,
) -> Vec<(Candidate<'a, P>, f64)> {
    let mut out = scored(candidates, want);
    out.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.peer.cmp(&b.0.peer)));
    out
}

/// The `n` best eligible candidates, best first: a partial sort, for
/// choosing among many offers.
pub fn top<'a, P: Ord>(
    candidates: Vec<Candidate<'a, P>>,
    want: &Want,
    n: usize,
) -> Vec<(Candidate<'a, P>, f64)> {
    let mut out = scored(candidates, want);
    let order = |a: &(Candidate<'a, P>, f64), b: &(Candidate<'a, P>, f64)| {
        a.1.total_cmp(&b.1).then_with(|| a.0.peer.cmp(&b.0.peer))
    };
    if n == 0 {
        return Vec::new();
    }
    if out.len() > n {
        out.select_nth_unstable_by(n - 1, order);
        out.truncate(n);
    }
    out.sort_unstable_by(order);
    out
}

fn scored<'a, P>(candidates: Vec<Candidate<'a, P>>, want: &Want) -> Vec<(Candidate<'a, P>, f64)> {
    let explore = want.explore && candidates.iter().any(|c| c.reputation.is_none());
    candidates
        .into_iter()
        .filter(|c| !explore || c.reputation.is_none())
        .filter_map(|c| score(&c, want).ok().map(|s| (c, s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(price: u64, expires: u64) -> Offer {
        Offer {
            price,
            slots: 2,
            free_slots: 2,
            issued_ms: 0,
            expires_ms: expires,
            ..Offer::default()
        }
    }

    fn want() -> Want {
        Want {
            fuel: 10_000_000_000,
            max_price: None,
            min_reputation: None,
            now_ms: 100,
            explore: false,
        }
    }

    fn c<'a>(peer: u32, offer: &'a Offer, reputation: Option<f64>) -> Candidate<'a, u32> {
        Candidate {
            peer,
            offer,
            reputation,
            rtt_ms: Some(1.0),
            reserved: 0,
        }
    }

    #[test]
    fn cheaper_wins_at_equal_reputation_and_reputation_at_equal_price() {
        let (cheap, dear) = (offer(1, 1000), offer(2, 1000));
        let ranked = rank(
            vec![c(1, &dear, Some(0.8)), c(2, &cheap, Some(0.8))],
            &want(),
        );
        assert_eq!(ranked[0].0.peer, 2);
        let ranked = rank(
            vec![c(1, &cheap, Some(0.6)), c(2, &cheap, Some(0.9))],
            &want(),
        );
        assert_eq!(ranked[0].0.peer, 2);
    }

    #[test]
    fn expired_draining_dear_and_untrusted_offers_are_never_chosen() {
        let expired = offer(1, 99);
        let mut draining = offer(1, 1000);
        draining.draining = true;
        let dear = offer(10, 1000);
        let fine = offer(5, 1000);
        let w = Want {
            max_price: Some(9),
            min_reputation: Some(0.6),
            ..want()
        };
        let ranked = rank(
            vec![
                c(1, &expired, Some(0.9)),
                c(2, &draining, Some(0.9)),
                c(3, &dear, Some(0.9)),
                c(4, &fine, None),
                c(5, &fine, Some(0.7)),
            ],
            &w,
        );
        assert_eq!(
            ranked.iter().map(|(c, _)| c.peer).collect::<Vec<_>>(),
            vec![5]
        );
        assert_eq!(score(&c(1, &expired, None), &w), Err(Ineligible::Expired));
        assert_eq!(score(&c(3, &dear, None), &w), Err(Ineligible::TooExpensive));
        assert_eq!(score(&c(4, &fine, None), &w), Err(Ineligible::Untrusted));
    }

    #[test]
    fn exploring_ranks_only_newcomers_and_a_job_spreads() {
        let o = offer(1, 1000);
        let w = Want {
            explore: true,
            ..want()
        };
        let ranked = rank(vec![c(1, &o, Some(0.99)), c(2, &o, None)], &w);
        assert_eq!(ranked.len(), 1);
        assert_eq!(ranked[0].0.peer, 2);
        let mut busy = c(1, &o, Some(0.9));
        busy.reserved = 1;
        let ranked = rank(vec![busy, c(2, &o, Some(0.9))], &want());
        assert_eq!(
            ranked[0].0.peer, 2,
            "a job's second task goes to another worker"
        );
    }

    #[test]
    fn top_agrees_with_rank() {
        let offers: Vec<Offer> = (0..200).map(|i| offer(1 + i % 17, 1000)).collect();
        let cands = || {
            offers
                .iter()
                .enumerate()
                .map(|(i, o)| c(i as u32, o, Some(0.3 + (i % 7) as f64 / 10.0)))
                .collect::<Vec<_>>()
        };
        let all: Vec<u32> = rank(cands(), &want()).iter().map(|(c, _)| c.peer).collect();
        let best: Vec<u32> = top(cands(), &want(), 10)
            .iter()
            .map(|(c, _)| c.peer)
            .collect();
        assert_eq!(best, all[..10]);
    }
}
