//! Validation: how many workers run a task, and which answer counts.
//!
//! p2pc runs are deterministic, so two honest workers given the same task
//! return the same output and fuel; answers are compared by hash.
//!
//! - `none`: one worker; its answer counts.
//! - `k-of-n`: n distinct workers; k equal answers win. Those whose answer
//!   differs from the winners' are the minority: proved wrong. Without a
//!   quorum more replicas are placed, up to [`Validation::cap`], then the
//!   task fails.
//! - `adaptive`: BOINC's adaptive replication. A worker without a run of
//!   valid replicated results has its task replicated (2-of-2, widened to
//!   2-of-3 when they disagree); a trusted worker's only with a
//!   probability falling with its run (`reputation::replicate_ppm`).

use std::fmt;
use std::str::FromStr;

/// Replicas of one task placed at most, however many answers disagree.
pub const MAX_REPLICAS: usize = 7;

/// A job's validation setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Validation {
    /// One worker.
    #[default]
    None,
    /// `k` equal answers of `n` workers.
    Quorum {
        /// Equal answers needed.
        k: u8,
        /// Workers asked at first.
        n: u8,
    },
    /// Replicate by the worker's record.
    Adaptive,
}

impl Validation {
    /// Equal answers needed and workers asked at first, for a task whose
    /// (first) worker is trusted or not. `adaptive` replicates a task
    /// that must be checked as 2-of-2.
    pub fn plan(self, replicate: bool) -> (usize, usize) {
        match self {
            Self::None => (1, 1),
            Self::Quorum { k, n } => (usize::from(k), usize::from(n)),
            Self::Adaptive if replicate => (2, 2),
            Self::Adaptive => (1, 1),
        }
    }

    /// Replicas placed at most when answers disagree.
    pub fn cap(self) -> usize {
        match self {
            Self::None => 1,
            Self::Quorum { k, n } => (usize::from(n) + usize::from(k)).min(MAX_REPLICAS),
            Self::Adaptive => 3,
        }
    }
}

impl fmt::Display for Validation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Quorum { k, n } => write!(f, "{k}-of-{n}"),
            Self::Adaptive => f.write_str("adaptive"),
        }
    }
}

impl FromStr for Validation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => return Ok(Self::None),
            "adaptive" => return Ok(Self::Adaptive),
            _ => {}
        }
        let bad = || format!("validation {s:?}: expected none, adaptive or K-of-N (as 2-of-3)");
        let (k, n) = s.split_once("-of-").ok_or_else(bad)?;
        let (k, n): (u8, u8) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if k == 0 || n < k {
            return Err(format!("validation {s}: needs 1 ≤ K ≤ N"));
        }
        if usize::from(n) > MAX_REPLICAS {
            return Err(format!("validation {s}: at most {MAX_REPLICAS} replicas"));
        }
        if n >= 2 && 2 * usize::from(k) <= usize::from(n) {
            return Err(format!(
                "validation {s}: K must be more than half of N, or two sets of answers could both win"
            ));
        }
        Ok(Self::Quorum { k, n })
    }
}

/// What the answers so far decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `k` answers agree: `winners` gave it, `minority` answered otherwise.
    Agreed {
        /// Indices of the agreeing answers.
        winners: Vec<usize>,
        /// Indices of the answers that differ from the winners'.
        minority: Vec<usize>,
    },
    /// No quorum yet: place this many more replicas.
    More(usize),
    /// No quorum, and no more replicas may be placed.
    NoQuorum,
}

/// Decides a task from the answers of its replicas that ended: `answers`
/// (`None`: that replica ended without one), `k` equal ones needed,
/// `placed` replicas placed so far, at most `cap`.
pub fn decide<A: Eq>(answers: &[Option<A>], k: usize, cap: usize) -> Verdict {
    let k = k.max(1);
    // The largest group of equal answers (the first such, on a tie).
    let mut best: Option<(usize, usize)> = None;
    for (i, a) in answers.iter().enumerate() {
        let Some(a) = a else { continue };
        let n = answers.iter().filter(|b| b.as_ref() == Some(a)).count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((i, n));
        }
    }
    if let Some((i, n)) = best
        && n >= k
    {
        let winner = answers[i].as_ref();
        let winners = (0..answers.len())
            .filter(|j| answers[*j].as_ref() == winner)
            .collect();
        let minority = (0..answers.len())
            .filter(|j| answers[*j].is_some() && answers[*j].as_ref() != winner)
            .collect();
        return Verdict::Agreed { winners, minority };
    }
    let have = best.map_or(0, |(_, n)| n);
    let room = cap.saturating_sub(answers.len());
    if room == 0 {
        return Verdict::NoQuorum;
    }
    Verdict::More((k - have).min(room))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in ["none", "adaptive", "2-of-3", "1-of-1", "3-of-5"] {
            assert_eq!(s.parse::<Validation>().expect("present").to_string(), s);
        }
        for bad in [
            "", "2of3", "0-of-1", "3-of-2", "1-of-3", "2-of-4", "5-of-9", "x-of-3",
        ] {
            assert!(bad.parse::<Validation>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quorum_names_the_minority_and_a_split_asks_for_more() {
        let v = decide(&[Some(1), Some(2), Some(1)], 2, 5);
        assert_eq!(
            v,
            Verdict::Agreed {
                winners: vec![0, 2],
                minority: vec![1]
            }
        );
        assert_eq!(decide(&[Some(1), Some(2)], 2, 3), Verdict::More(1));
        assert_eq!(decide(&[Some(1), None], 2, 3), Verdict::More(1));
        assert_eq!(
            decide(&[Some(1), Some(2), Some(3)], 2, 3),
            Verdict::NoQuorum
        );
        assert_eq!(decide::<u8>(&[None, None], 2, 7), Verdict::More(2));
        assert_eq!(
            decide(&[Some(1)], 1, 1),
            Verdict::Agreed {
                winners: vec![0],
                minority: vec![]
            }
        );
    }
}
