//! Map/reduce orchestration, shared by `p2pctl run` (each call runs in
//! this process) and the node (each call is a task on a worker), so both
//! split the input the same way, run the maps at once, hand the reduce
//! the map outputs in shard order, and name the step that failed alike.
//! The caller says how one call runs and what counts as its output; this
//! module does nothing else (no executor, no network).

use std::fmt;
use std::future::Future;

use crate::Call;

/// A step of a map/reduce job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The map of shard `n` (0-based).
    Map(usize),
    /// The reduce.
    Reduce,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Map(n) => write!(f, "map of shard {n}"),
            Step::Reduce => f.write_str("reduce"),
        }
    }
}

/// What every step returned: the maps by shard, then the reduce (absent
/// when a map failed, so no reduce ran).
#[derive(Debug)]
pub struct Steps<S> {
    /// Each map's result, in shard order.
    pub maps: Vec<S>,
    /// The reduce's result.
    pub reduce: Option<S>,
}

impl<S> Steps<S> {
    /// Every step's result in order, the reduce last.
    pub fn all(&self) -> impl Iterator<Item = &S> {
        self.maps.iter().chain(self.reduce.as_ref())
    }
}

/// Splits `input` into at most `shards` shards at line boundaries, runs
/// `call(Call::Map(shard))` for every shard at once, and, if every map has
/// an output (`output` says which: `None` is a failure), runs
/// `call(Call::Reduce(outputs))` with the outputs in shard order.
pub async fn run<S, F, Fut>(
    input: &[u8],
    shards: usize,
    call: F,
    output: impl Fn(&S) -> Option<Vec<u8>>,
) -> Steps<S>
where
    F: Fn(Step, Call) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = S> + Send + 'static,
    S: Send + 'static,
{
    let mut maps = tokio::task::JoinSet::new();
    for (i, shard) in p2pc_types::split_at_lines(input, shards)
        .into_iter()
        .enumerate()
    {
        let call = call.clone();
        let shard = shard.to_vec();
        maps.spawn(async move { (i, call(Step::Map(i), Call::Map(shard)).await) });
    }
    let mut done = maps.join_all().await;
    done.sort_by_key(|(i, _)| *i);
    let maps: Vec<S> = done.into_iter().map(|(_, s)| s).collect();
    let outputs: Option<Vec<Vec<u8>>> = maps.iter().map(&output).collect();
    let reduce = match outputs {
        Some(parts) => Some(call(Step::Reduce, Call::Reduce(parts)).await),
        None => None,
    };
    Steps { maps, reduce }
}

/// The first step that failed, if one did.
pub fn failure<S>(steps: &Steps<S>, output: impl Fn(&S) -> Option<Vec<u8>>) -> Option<Step> {
    if let Some(i) = steps.maps.iter().position(|s| output(s).is_none()) {
        return Some(Step::Map(i));
    }
    match &steps.reduce {
        Some(r) if output(r).is_some() => None,
        _ => Some(Step::Reduce),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn maps_in_shard_order_then_one_reduce_and_the_first_failure_named() {
        let echo = |_: Step, call: Call| async move {
            match call {
                Call::Map(s) => Some(s),
                Call::Reduce(parts) => Some(parts.concat()),
                Call::Run(_) => None,
            }
        };
        let out = |s: &Option<Vec<u8>>| s.clone();
        let input = b"alpha\nbeta\ngamma\ndelta\nepsilon\nzeta\n";
        let shards = p2pc_types::split_at_lines(input, 4).len();
        assert!(shards >= 2);
        let steps = run(input, 4, echo, out).await;
        assert_eq!(steps.maps.len(), shards);
        assert_eq!(steps.reduce.clone().flatten(), Some(input.to_vec()));
        assert_eq!(failure(&steps, out), None);

        let fail_second = |step: Step, call: Call| async move {
            match (step, call) {
                (Step::Map(1), _) => None,
                (_, Call::Map(s)) => Some(s),
                _ => Some(Vec::new()),
            }
        };
        let steps = run(input, 4, fail_second, out).await;
        assert!(steps.reduce.is_none(), "no reduce after a failed map");
        assert_eq!(failure(&steps, out), Some(Step::Map(1)));
        assert_eq!(Step::Map(1).to_string(), "map of shard 1");
    }
}
