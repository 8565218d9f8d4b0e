//! A bounded history of a few series for people to look at: peers'
//! tasks run here by outcome, fuel used, this worker's price, this
//! node's balance and its peers, one point every `[api] history_step`
//! (a minute by default), [`POINTS`] points kept (24 hours). Kept in
//! `<data_dir>/history.json` too, so a chart drawn after a restart does
//! not start empty.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pc_net::Client;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::market::Market;
use crate::messages::now_unix_ms;
use crate::metrics::SharedMetrics;
use crate::replica::Replica;

/// Points kept.
pub const POINTS: usize = 1440;
/// The file it is kept in, in the data directory.
pub const HISTORY_FILE: &str = "history.json";

/// One step of the history. Counts are of the step that ends at `t_unix_ms`;
/// the rest are as they stood then.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Point {
    /// The end of the step, Unix ms.
    pub t_unix_ms: u64,
    /// Peers' tasks that ran here and succeeded.
    pub tasks_ok: u64,
    /// Those that ran and failed (trapped, out of fuel, past the deadline…).
    pub tasks_failed: u64,
    /// Those refused without running.
    pub tasks_refused: u64,
    /// Fuel they used.
    pub fuel_used: u64,
    /// This worker's price, credits per million fuel (0: unpaid).
    pub price: u64,
    /// This node's spendable credits, with a ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<u64>,
    /// Peers connected.
    pub peers: u64,
}

/// What `GET /v1/history` answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Timeline {
    /// The step, milliseconds.
    pub step_ms: u64,
    /// The points, oldest first.
    pub points: Vec<Point>,
}

/// A handle on the history. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    step: Duration,
    points: Mutex<VecDeque<Point>>,
    file: PathBuf,
}

/// What a sample reads.
pub(crate) struct Sources {
    pub(crate) client: Client,
    pub(crate) market: Market,
    pub(crate) replica: Option<Replica>,
    pub(crate) metrics: SharedMetrics,
    pub(crate) paid: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    /// Loads what `data_dir` kept (points older than a whole history are
    /// dropped; a damaged file is set aside and started afresh) and starts
    /// sampling every `step`.
    pub(crate) async fn start(
        data_dir: PathBuf,
        step: Duration,
        sources: Sources,
    ) -> (Self, JoinHandle<()>) {
        let file = data_dir.join(HISTORY_FILE);
        let step_ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
        let path = file.clone();
        let kept = tokio::task::spawn_blocking(move || load(&path, step_ms))
            .await
            .unwrap_or_default();
        let this = Self {
            inner: Arc::new(Inner {
                step,
                points: Mutex::new(kept),
                file,
            }),
        };
        let r = this.clone();
        let task = tokio::spawn(async move { r.run(sources).await });
        (this, task)
    }

    /// The points kept, those after `since_unix_ms` only if given.
    pub(crate) fn get(&self, since_unix_ms: Option<u64>) -> Timeline {
        let points = lock(&self.inner.points);
        Timeline {
            step_ms: u64::try_from(self.inner.step.as_millis()).unwrap_or(u64::MAX),
            points: points
                .iter()
                .filter(|p| since_unix_ms.is_none_or(|s| p.t_unix_ms > s))
                .copied()
                .collect(),
        }
    }

    async fn run(self, s: Sources) {
        let mut tick = tokio::time::interval(self.inner.step);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut last = (s.metrics.task_counts(), s.metrics.fuel_total());
        loop {
            tick.tick().await;
            let now = (s.metrics.task_counts(), s.metrics.fuel_total());
            let ((ok, failed, refused), fuel) = now;
            let ((ok0, failed0, refused0), fuel0) = last;
            last = now;
            let balance = match &s.replica {
                Some(r) => r.locked_and_balance().await.ok().map(|(_, b)| b),
                None => None,
            };
            let point = Point {
                t_unix_ms: now_unix_ms(),
                tasks_ok: ok.saturating_sub(ok0),
                tasks_failed: failed.saturating_sub(failed0),
                tasks_refused: refused.saturating_sub(refused0),
                fuel_used: fuel.saturating_sub(fuel0),
                price: if s.paid { s.market.price() } else { 0 },
                balance,
                peers: s.client.peer_count() as u64,
            };
            let snapshot = {
                let mut points = lock(&self.inner.points);
                points.push_back(point);
                while points.len() > POINTS {
                    points.pop_front();
                }
                Timeline {
                    step_ms: u64::try_from(self.inner.step.as_millis()).unwrap_or(u64::MAX),
                    points: points.iter().copied().collect(),
                }
            };
            let file = self.inner.file.clone();
            let saved = tokio::task::spawn_blocking(move || save(&file, &snapshot)).await;
            if let Ok(Err(e)) = saved {
                debug!(error = %e, "history not saved");
            }
        }
    }
}

fn load(path: &std::path::Path, step_ms: u64) -> VecDeque<Point> {
    let Ok(bytes) = std::fs::read(path) else {
        return VecDeque::new();
    };
    let Ok(h) = serde_json::from_slice::<Timeline>(&bytes) else {
        let _ = std::fs::rename(path, path.with_extension("json.damaged"));
        return VecDeque::new();
    };
    let horizon = now_unix_ms().saturating_sub(step_ms.saturating_mul(POINTS as u64));
    let mut v: VecDeque<Point> = h
        .points
        .into_iter()
        .filter(|p| p.t_unix_ms > horizon)
        .collect();
    while v.len() > POINTS {
        v.pop_front();
    }
    v
}

/// Written whole to a temporary file and renamed over the old one, so a
/// crash leaves one or the other. Not synced: losing the last step is
/// fine.
fn save(path: &std::path::Path, h: &Timeline) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(h).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_history_loads_without_points_past_its_horizon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(HISTORY_FILE);
        let now = now_unix_ms();
        let h = Timeline {
            step_ms: 1000,
            points: vec![
                Point {
                    t_unix_ms: now - 5_000_000,
                    tasks_ok: 1,
                    ..Point::default()
                },
                Point {
                    t_unix_ms: now - 1000,
                    tasks_ok: 2,
                    ..Point::default()
                },
            ],
        };
        save(&path, &h).expect("save");
        let back = load(&path, 1000);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].tasks_ok, 2);
        std::fs::write(&path, b"{not json").expect("write");
        assert!(load(&path, 1000).is_empty());
        assert!(path.with_extension("json.damaged").exists());
    }
}
