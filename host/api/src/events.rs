//! `GET /v1/events`: the node's event stream, as a WebSocket (one event
//! per text message) or, for a plain HTTP request, as newline-delimited
//! JSON. Both start where the client says (`?since=N`, with the `epoch`
//! it belongs to) or at the present, and follow until the client goes.
//!
//! Each stream is one task that copies events from the node's ring into
//! the connection. It never holds more than one batch: while the
//! connection cannot take more, the task waits, and if the ring moves past
//! the stream's position meanwhile (or one batch takes longer than
//! `[api] events_send_timeout`), the client is dropped. So however many
//! clients stop reading, the node keeps only its ring.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use p2pc_node::{EventKind, Events, Gone};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::debug;

use crate::extract::Query;
use crate::problem::{ApiResult, Problem, Resume};
use crate::routes::AppState;

/// Events read from the ring at a time.
const BATCH: usize = 256;
/// The subprotocol the server names when a client offers it.
pub const SUBPROTOCOL: &str = "p2pc.events.v1";
/// A WebSocket close code of our own: the client fell behind.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// A WebSocket is pinged this often, so a dead peer is noticed.
const PING_EVERY: Duration = Duration::from_secs(30);

/// Where to start and what to send.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Send the events numbered above this one (as a client that has seen
    /// up to N resumes). Without it the stream starts at the present;
    /// `since=0` asks for every event still kept.
    pub since: Option<u64>,
    /// The epoch `since` was read in. If the node has restarted since, the
    /// answer is 410 with the new epoch.
    pub epoch: Option<String>,
    /// Only these types, comma-separated (`job_state,task_state`, …).
    pub types: Option<String>,
    /// Only events about this job.
    pub job: Option<String>,
    /// `false`: send what is kept after `since`, then end, rather than
    /// follow. Default `true`.
    pub follow: Option<bool>,
}

/// What a stream sends, once checked.
struct Plan {
    after: u64,
    types: Option<Vec<&'static str>>,
    job: Option<String>,
    follow: bool,
}

impl Plan {
    fn wants(&self, e: &p2pc_node::events::Stored) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(&e.kind))
            && self
                .job
                .as_deref()
                .is_none_or(|j| e.job.as_deref() == Some(j))
    }
}

fn gone(events: &Events, g: Gone, why: &str) -> Problem {
    let mut p = Problem::new(
        StatusCode::GONE,
        format!(
            "{why}; the oldest event kept is {} and the newest {} (epoch {}): \
             resume with since={} to take what is kept, or without since to start now",
            g.oldest,
            g.newest,
            events.epoch(),
            g.oldest.saturating_sub(1)
        ),
    );
    p.kind = "urn:p2pc:problem:events-gone".into();
    p.resume = Some(Resume {
        epoch: events.epoch().to_owned(),
        oldest: g.oldest,
        newest: g.newest,
    });
    p
}

fn plan(events: &Events, q: EventQuery) -> ApiResult<Plan> {
    let newest = events.newest();
    let span = Gone {
        oldest: events.oldest(),
        newest,
    };
    if let Some(epoch) = &q.epoch
        && epoch != events.epoch()
    {
        let mut p = gone(
            events,
            span,
            &format!(
                "the node has restarted: events of epoch {epoch} are gone, the stream's epoch is now {}",
                events.epoch()
            ),
        );
        p.kind = "urn:p2pc:problem:events-epoch".into();
        return Err(p);
    }
    let after = match q.since {
        None => newest,
        Some(n) if n > newest => {
            let mut p = gone(
                events,
                span,
                &format!(
                    "since={n} is past the newest event: the node has restarted since \
                     (its epoch is now {})",
                    events.epoch()
                ),
            );
            p.kind = "urn:p2pc:problem:events-epoch".into();
            return Err(p);
        }
        Some(n) if n.saturating_add(1) < span.oldest => {
            return Err(gone(
                events,
                span,
                &format!("events after {n} are no longer kept ([api] events_buffer)"),
            ));
        }
        Some(n) => n,
    };
    let types = match q.types.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(|t| {
                    let t = t.trim();
                    EventKind::TYPES
                        .iter()
                        .copied()
                        .find(|k| *k == t)
                        .ok_or_else(|| {
                            Problem::bad_request(format!(
                                "no event type {t:?}; the types are {}",
                                EventKind::TYPES.join(", ")
                            ))
                        })
                })
                .collect::<ApiResult<Vec<_>>>()?,
        ),
    };
    Ok(Plan {
        after,
        types,
        job: q.job.filter(|j| !j.is_empty()),
        follow: q.follow.unwrap_or(true),
    })
}

/// The stream of events, as a WebSocket or as NDJSON.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery),
    responses(
        (status = 200, description = "Events, one JSON object per line (a WebSocket upgrade gets one per text message instead)",
            body = p2pc_node::Event, content_type = "application/x-ndjson"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`since` is no longer kept, or belongs to an epoch before the node restarted",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many event streams ([api] events_clients)",
            body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn events(
    State(s): State<AppState>,
    hangup: Option<axum::Extension<crate::serve::Hangup>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, rejection::WebSocketUpgradeRejection>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Response> {
    let wants_ws = headers.contains_key(header::UPGRADE);
    let events = s.node.events().clone();
    let plan = plan(&events, q)?;
    let permit = s.event_slots.clone().try_acquire_owned().map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many event streams are open ([api] events_clients); close one or try later",
        )
    })?;
    let timeout = s.events_send_timeout;
    match ws {
        Ok(ws) => {
            let ws = if ws
                .requested_protocols()
                .any(|p| p.as_bytes() == SUBPROTOCOL.as_bytes())
            {
                ws.protocols([SUBPROTOCOL])
            } else {
                // A browser must see one of the protocols it offered
                // echoed; the token item is the only other one it sends.
                let offered: Option<String> = ws
                    .requested_protocols()
                    .filter_map(|p| p.to_str().ok())
                    .find(|p| p.starts_with("bearer."))
                    .map(str::to_owned);
                match offered {
                    Some(p) => ws.protocols([p]),
                    None => ws,
                }
            };
            Ok(ws
                .on_upgrade(move |socket| websocket(socket, events, plan, timeout, permit))
                .into_response())
        }
        Err(e) if wants_ws => Err(Problem::bad_request(format!(
            "not a usable WebSocket upgrade: {e}"
        ))),
        Err(_) => Ok(ndjson(
            events,
            plan,
            timeout,
            permit,
            hangup.map(|axum::Extension(h)| h),
        )),
    }
}

/// Why a stream ended.
enum End {
    /// The client went, or asked for no more.
    Done,
    /// It fell behind and was dropped.
    TooSlow(u64),
}

/// The next batch the client wants after `plan.after`, waiting for one if
/// following; `Ok(None)` when not following and all is sent.
async fn next(events: &Events, plan: &mut Plan) -> Result<Option<Vec<Bytes>>, Gone> {
    loop {
        let batch = events.read(plan.after, BATCH)?;
        let Some(last) = batch.last() else {
            if !plan.follow {
                return Ok(None);
            }
            events.wait(plan.after).await;
            continue;
        };
        plan.after = last.seq;
        let wanted: Vec<Bytes> = batch
            .iter()
            .filter(|e| plan.wants(e))
            .map(|e| e.json.clone())
            .collect();
        if !wanted.is_empty() {
            return Ok(Some(wanted));
        }
    }
}

/// Sends `send` unless the ring passes `after` first or `timeout` passes.
async fn deliver<F: std::future::Future<Output = bool>>(
    events: &Events,
    after: u64,
    timeout: Duration,
    send: F,
) -> Result<bool, ()> {
    tokio::select! {
        sent = tokio::time::timeout(timeout, send) => sent.map_err(|_| ()),
        () = events.overrun(after) => Err(()),
    }
}

fn ndjson(
    events: Events,
    mut plan: Plan,
    timeout: Duration,
    permit: OwnedSemaphorePermit,
    hangup: Option<crate::serve::Hangup>,
) -> Response {
    // One batch in flight: the body takes it when the socket can.
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let broke = broken.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let _open = events.stream_opened();
        let mut sent = plan.after;
        let end = loop {
            let batch = match next(&events, &mut plan).await {
                Ok(Some(b)) => b,
                Ok(None) => break End::Done,
                Err(_) => break End::TooSlow(sent),
            };
            let mut bytes = Vec::with_capacity(batch.iter().map(|b| b.len() + 1).sum());
            for b in &batch {
                bytes.extend_from_slice(b);
                bytes.push(b'\n');
            }
            match deliver(&events, plan.after, timeout, async {
                tx.send(bytes.into()).await.is_ok()
            })
            .await
            {
                Ok(true) => sent = plan.after,
                Ok(false) => break End::Done,
                Err(()) => break End::TooSlow(sent),
            }
        };
        if let End::TooSlow(at) = end {
            events.stream_dropped();
            debug!(at, "event stream dropped: the client fell behind");
            // The body ends in an error, so a client that reads again sees
            // the stream broken, not complete; and the connection is
            // closed, since a client that never reads would hold it.
            broke.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(tx);
            if let Some(h) = hangup {
                h.0.notify_one();
            }
        }
    });
    let body = Body::from_stream(body_of(rx, broken));
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The batches, then the end: an error if the stream was dropped.
fn body_of(
    mut rx: mpsc::Receiver<Bytes>,
    broken: Arc<std::sync::atomic::AtomicBool>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let mut ended = false;
    futures::stream::poll_fn(move |cx| {
        if ended {
            return std::task::Poll::Ready(None);
        }
        match rx.poll_recv(cx) {
            std::task::Poll::Ready(Some(b)) => std::task::Poll::Ready(Some(Ok(b))),
            std::task::Poll::Ready(None) => {
                ended = true;
                if broken.load(std::sync::atomic::Ordering::SeqCst) {
                    std::task::Poll::Ready(Some(Err(std::io::Error::other(
                        "the client fell behind the event stream and was dropped",
                    ))))
                } else {
                    std::task::Poll::Ready(None)
                }
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
}

async fn websocket(
    socket: WebSocket,
    events: Events,
    mut plan: Plan,
    timeout: Duration,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit;
    let _open = events.stream_opened();
    let (mut sink, mut stream) = socket.split();
    // The client's messages are read only to notice it leave (and so that
    // pings are answered); what it says is ignored.
    let (gone_tx, mut gone_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
        let _ = gone_tx.send(());
    });
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut sent = plan.after;
    let end = loop {
        let batch = tokio::select! {
            b = next(&events, &mut plan) => b,
            _ = &mut gone_rx => break End::Done,
            _ = ping.tick() => {
                match deliver(&events, plan.after, timeout, async {
                    sink.send(Message::Ping(Bytes::new())).await.is_ok()
                }).await {
                    Ok(true) => continue,
                    Ok(false) => break End::Done,
                    Err(()) => break End::TooSlow(sent),
                }
            }
        };
        let batch = match batch {
            Ok(Some(b)) => b,
            Ok(None) => break End::Done,
            Err(_) => break End::TooSlow(sent),
        };
        let delivered = deliver(&events, plan.after, timeout, async {
            for b in batch {
                let text = match String::from_utf8(b.to_vec()) {
                    Ok(t) => t,
                    Err(_) => continue,
                };
                if sink.feed(Message::Text(text.into())).await.is_err() {
                    return false;
                }
            }
            sink.flush().await.is_ok()
        })
        .await;
        match delivered {
            Ok(true) => sent = plan.after,
            Ok(false) => break End::Done,
            Err(()) => break End::TooSlow(sent),
        }
    };
    let close = match end {
        End::Done => None,
        End::TooSlow(at) => {
            events.stream_dropped();
            debug!(at, "event stream dropped: the client fell behind");
            Some(CloseFrame {
                code: CLOSE_TOO_SLOW,
                reason: format!("too slow: fell behind the stream; resume with since={at}").into(),
            })
        }
    };
    // Best effort, briefly: a client that stopped reading may never take it.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(close))).await;
    reader.abort();
}

/// Shared by the routes: the stream slots.
pub(crate) fn slots(n: usize) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(n.max(1)))
}
