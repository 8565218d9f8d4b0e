//! The node's event stream: typed events (job and task state changes,
//! progress, peers' tasks run here, ledger ops stored, peers joining and
//! leaving, health findings), numbered from 1 in a stream whose epoch
//! changes every time the node starts.
//!
//! Publishing never waits and never allocates per reader: an event is
//! serialised once into a ring of the last `[api] events_buffer` events,
//! and each reader keeps only its position in it. A reader that falls
//! further behind than the ring holds finds its next event gone and is
//! told so ([`Gone`]); so a client that stops reading costs the node
//! nothing more than the ring it already keeps.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::health::Finding;
use crate::messages::now_unix_ms;
use crate::metrics::SharedMetrics;

/// The longest text an event carries in one field; longer messages are
/// cut (the job's record keeps them whole).
const MAX_TEXT: usize = 1024;
/// The ring's bound in bytes, whatever `[api] events_buffer` says.
const MAX_BYTES: usize = 64 << 20;

/// One event, as `GET /v1/events` sends it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Event {
    /// Its number in the stream, from 1; consecutive for a client that
    /// asked for every type.
    pub seq: u64,
    /// The stream's epoch: new every time the node starts, so a client
    /// can tell "I missed some" from "the node restarted".
    pub epoch: String,
    /// When it was published, Unix milliseconds.
    pub time_unix_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened, by `type`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A job this node submitted changed state.
    JobState {
        /// The job.
        job: String,
        /// Its bundle's name.
        name: String,
        /// `submitted`, `running`, `done`, `failed`, `cancelled`, `lost`.
        state: String,
        /// The outcome, error or reason, for people.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A task of such a job (one attempt on one worker) changed state.
    TaskState {
        /// The job.
        job: String,
        /// The task.
        task_id: String,
        /// 1 for the first attempt.
        attempt: u32,
        /// `run`, `map 3`, `reduce`.
        step: String,
        /// `running`, `done`, `lost`, `failed`.
        state: String,
        /// The worker, once chosen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
        /// The receipt's outcome, once it came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<String>,
        /// The error, or why the attempt was lost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Fuel used, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fuel_used: Option<u64>,
        /// What it cost, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost: Option<u64>,
    },
    /// A job's worker reported progress.
    Progress {
        /// The job.
        job: String,
        /// Units done.
        done: u64,
        /// Units in all.
        total: u64,
    },
    /// A peer's task ran on this node, as a worker.
    TaskRan {
        /// The task.
        task_id: String,
        /// Who sent it.
        submitter: String,
        /// `ok` or the task error's code.
        outcome: String,
        /// Fuel it used.
        fuel_used: u64,
        /// From slot to receipt, milliseconds.
        duration_ms: u64,
    },
    /// A peer's task was refused here without running.
    TaskRefused {
        /// Who sent it.
        submitter: String,
        /// The refusal's code, such as `busy` or `draining`.
        code: String,
    },
    /// The ledger replica stored an op.
    LedgerOp {
        /// The op's id, hex.
        op: String,
        /// The account that signed it.
        author: String,
        /// `mint`, `transfer`, `hold`, `task_hold`, `bond`, `decide`.
        kind: String,
        /// `applied`, `waiting`, `refused` or `equivocation`.
        result: String,
    },
    /// A peer connected.
    PeerConnected {
        /// The peer.
        peer: String,
    },
    /// A peer's last connection closed.
    PeerDisconnected {
        /// The peer.
        peer: String,
    },
    /// The health checker found something new.
    HealthFinding {
        /// The finding.
        finding: Finding,
    },
    /// A finding no longer holds.
    HealthCleared {
        /// The check that had found it.
        check: String,
        /// What it was about, if the check names one thing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
}

impl EventKind {
    /// Every `type`, for filters and docs.
    pub const TYPES: [&'static str; 10] = [
        "job_state",
        "task_state",
        "progress",
        "task_ran",
        "task_refused",
        "ledger_op",
        "peer_connected",
        "peer_disconnected",
        "health_finding",
        "health_cleared",
    ];

    /// This event's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::JobState { .. } => "job_state",
            EventKind::TaskState { .. } => "task_state",
            EventKind::Progress { .. } => "progress",
            EventKind::TaskRan { .. } => "task_ran",
            EventKind::TaskRefused { .. } => "task_refused",
            EventKind::LedgerOp { .. } => "ledger_op",
            EventKind::PeerConnected { .. } => "peer_connected",
            EventKind::PeerDisconnected { .. } => "peer_disconnected",
            EventKind::HealthFinding { .. } => "health_finding",
            EventKind::HealthCleared { .. } => "health_cleared",
        }
    }

    /// The job it is about, if any.
    pub fn job(&self) -> Option<&str> {
        match self {
            EventKind::JobState { job, .. }
            | EventKind::TaskState { job, .. }
            | EventKind::Progress { job, .. } => Some(job),
            _ => None,
        }
    }
}

/// One event as kept: its JSON, made once for every reader, and what
/// filters look at.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Its number.
    pub seq: u64,
    /// Its `type`.
    pub kind: &'static str,
    /// The job it is about, if any.
    pub job: Option<Arc<str>>,
    /// The event, serialised.
    pub json: Bytes,
}

/// A resume point the ring no longer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gone {
    /// The oldest event still kept (the newest + 1 if none is).
    pub oldest: u64,
    /// The newest event published.
    pub newest: u64,
}

/// A cheap, cloneable handle on the stream.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Bus>,
}

struct Bus {
    epoch: String,
    capacity: usize,
    ring: Mutex<Ring>,
    /// The newest event's number; readers wait on it.
    newest: watch::Sender<u64>,
    metrics: SharedMetrics,
}

#[derive(Default)]
struct Ring {
    /// Events kept, oldest first; `items[0].seq` is the oldest.
    items: VecDeque<Stored>,
    bytes: usize,
    next: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn cut(s: &mut String) {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

fn cut_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        cut(s);
    }
}

impl Events {
    /// A new stream keeping `capacity` events, with a fresh epoch.
    pub(crate) fn new(capacity: usize, metrics: SharedMetrics) -> Self {
        let mut raw = [0u8; 8];
        // An epoch only needs to differ between starts; the time does if
        // the system's randomness is unavailable.
        if getrandom::fill(&mut raw).is_err() {
            raw = now_unix_ms().to_be_bytes();
        }
        Self {
            inner: Arc::new(Bus {
                epoch: hex::encode(raw),
                capacity: capacity.max(1),
                ring: Mutex::new(Ring {
                    next: 1,
                    ..Ring::default()
                }),
                newest: watch::Sender::new(0),
                metrics,
            }),
        }
    }

    /// The stream's epoch.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// The newest event's number (0 before the first).
    pub fn newest(&self) -> u64 {
        *self.inner.newest.borrow()
    }

    /// The oldest event kept (the newest + 1 if none is).
    pub fn oldest(&self) -> u64 {
        let ring = lock(&self.inner.ring);
        ring.items.front().map_or(ring.next, |e| e.seq)
    }

    /// Events kept now, and their bytes.
    pub fn kept(&self) -> (usize, usize) {
        let ring = lock(&self.inner.ring);
        (ring.items.len(), ring.bytes)
    }

    /// Publishes an event. Never waits on readers.
    pub fn publish(&self, mut kind: EventKind) {
        match &mut kind {
            EventKind::JobState { detail, .. } => cut_opt(detail),
            EventKind::TaskState { message, .. } => cut_opt(message),
            EventKind::HealthFinding { finding } => {
                cut(&mut finding.summary);
                cut(&mut finding.evidence);
                cut(&mut finding.action);
            }
            _ => {}
        }
        let name = kind.type_name();
        let job: Option<Arc<str>> = kind.job().map(Into::into);
        let seq = {
            let mut ring = lock(&self.inner.ring);
            let seq = ring.next;
            let event = Event {
                seq,
                epoch: self.inner.epoch.clone(),
                time_unix_ms: now_unix_ms(),
                kind,
            };
            let Ok(json) = serde_json::to_vec(&event) else {
                return;
            };
            ring.next = seq + 1;
            ring.bytes += json.len();
            ring.items.push_back(Stored {
                seq,
                kind: name,
                job,
                json: json.into(),
            });
            while ring.items.len() > self.inner.capacity || ring.bytes > MAX_BYTES {
                match ring.items.pop_front() {
                    Some(old) => ring.bytes -= old.json.len(),
                    None => break,
                }
            }
            seq
        };
        self.inner.newest.send_replace(seq);
        self.inner.metrics.events.inc();
    }

    /// Up to `max` events after `after`, oldest first; [`Gone`] if the
    /// event after `after` is no longer kept.
    pub fn read(&self, after: u64, max: usize) -> Result<Vec<Stored>, Gone> {
        let ring = lock(&self.inner.ring);
        let oldest = ring.items.front().map_or(ring.next, |e| e.seq);
        let newest = ring.next - 1;
        if after.saturating_add(1) < oldest {
            return Err(Gone { oldest, newest });
        }
        let skip = usize::try_from(after.saturating_add(1) - oldest).unwrap_or(usize::MAX);
        Ok(ring.items.iter().skip(skip).take(max).cloned().collect())
    }

    /// Waits until an event after `after` is published (at once if one
    /// is).
    pub async fn wait(&self, after: u64) {
        let mut rx = self.inner.newest.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|n| *n > after).await;
    }

    /// Resolves once the event after `after` has left the ring: a reader
    /// stuck there can never catch up.
    pub async fn overrun(&self, after: u64) {
        let mut rx = self.inner.newest.subscribe();
        loop {
            if self.oldest() > after.saturating_add(1) {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Counts a stream opened; the guard counts it closed.
    pub fn stream_opened(&self) -> StreamGuard {
        self.inner.metrics.event_streams.inc();
        StreamGuard {
            events: self.clone(),
        }
    }

    /// Counts a stream dropped because its client fell behind.
    pub fn stream_dropped(&self) {
        self.inner.metrics.event_streams_dropped.inc();
    }
}

/// Counts an open stream until dropped.
pub struct StreamGuard {
    events: Events,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.events.inner.metrics.event_streams.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u64) -> EventKind {
        EventKind::PeerConnected {
            peer: format!("p{n}"),
        }
    }

    #[test]
    fn readers_resume_and_too_old_a_point_is_gone() {
        let events = Events::new(4, Arc::new(crate::metrics::Metrics::new()));
        assert_eq!(events.read(0, 10).expect("empty").len(), 0);
        for n in 1..=6 {
            events.publish(peer(n));
        }
        assert_eq!(events.newest(), 6);
        assert_eq!(events.oldest(), 3);
        let got: Vec<u64> = events
            .read(2, 10)
            .expect("kept")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(got, [3, 4, 5, 6]);
        assert_eq!(events.read(4, 1).expect("kept")[0].seq, 5);
        assert_eq!(
            events.read(1, 10).expect_err("gone"),
            Gone {
                oldest: 3,
                newest: 6
            }
        );
        assert!(events.read(6, 10).expect("caught up").is_empty());
        let e: Event =
            serde_json::from_slice(&events.read(5, 1).expect("kept")[0].json).expect("an event");
        assert_eq!(e.seq, 6);
        assert_eq!(e.epoch, events.epoch());
        assert_eq!(e.kind, peer(6));
    }

    #[test]
    fn long_text_is_cut_and_the_ring_stays_bounded() {
        let events = Events::new(100, Arc::new(crate::metrics::Metrics::new()));
        for _ in 0..1000 {
            events.publish(EventKind::JobState {
                job: "j".into(),
                name: "n".into(),
                state: "failed".into(),
                detail: Some("x".repeat(100_000)),
            });
        }
        let (n, bytes) = events.kept();
        assert_eq!(n, 100);
        assert!(bytes < 100 * (MAX_TEXT + 512), "{bytes} bytes kept");
    }

    #[test]
    fn two_starts_have_different_epochs() {
        let m = Arc::new(crate::metrics::Metrics::new());
        assert_ne!(Events::new(1, m.clone()).epoch(), Events::new(1, m).epoch());
    }
}
