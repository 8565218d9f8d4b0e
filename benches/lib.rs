//! Helpers shared by the benchmarks: percentiles and ratio tables, which
//! parts of a benchmark to run, a gateway on a node. The benchmarks are
//! the other files here, one per concern; run them with
//! `cargo bench -p p2pc-benches --bench NAME` and see `docs/benchmarks.md`.

#![deny(missing_docs)]

use std::time::Duration;

/// The runtime every benchmark drives tasks on: one thread, so the figures
/// measure the sandbox rather than the scheduler.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `p`-th percentile (0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Times `n` calls of `f` one by one.
pub fn sample(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

/// Whether part `name` of a benchmark was asked for: the arguments that
/// are not flags name the parts to run; none runs them all.
pub fn chosen(name: &str) -> bool {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    which.is_empty() || which.iter().any(|w| w == name)
}

/// A gateway on `handle` on an ephemeral loopback port, with the node's
/// token; returns it and the token.
pub async fn gateway(handle: p2pc_node::Handle) -> (p2pc_api::Gateway, String) {
    let dir = handle.data_dir();
    p2pc_node::ensure_token(&dir).expect("token");
    let settings = p2pc_api::Settings {
        token: p2pc_node::read_token(&dir).expect("token"),
        api: p2pc_node::ApiSection {
            listen: "127.0.0.1:0".into(),
            ..Default::default()
        },
    };
    let token = settings.token.clone();
    let g = p2pc_api::serve_with(handle, settings)
        .await
        .expect("gateway");
    (g, token)
}

/// Geometric mean of positive ratios.
pub fn geomean(ratios: &[f64]) -> f64 {
    (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_geomean() {
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&mut s, 50.0), Duration::from_micros(51));
        assert_eq!(percentile(&mut s, 99.0), Duration::from_micros(99));
        assert!((geomean(&[2.0, 8.0]) - 4.0).abs() < 1e-9);
    }
}
