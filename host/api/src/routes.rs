//! The `/v1` routes. Each handler is annotated with `#[utoipa::path]` and
//! registered through `routes!`, so the OpenAPI document is generated from
//! the same code that serves it and the two cannot drift.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::TryStreamExt;
use p2pc_node::api::{
    Balance, ConfigSummary, Drained, History, Holds, OfferView, PriceView, ReputationView,
    Transferred, Verified,
};
use p2pc_node::{
    FetchStats, Handle, JobInfo, JobLogs, JobState, LedgerAnswer, LedgerRequest, Status, Submission,
};
use p2pc_store::{BlobInfo, BundleRecord, Cid};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::{Json, Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::types::*;

/// What every handler reaches, shared: cloned once per request.
pub(crate) type AppState = std::sync::Arc<Shared>;

/// The node's handle and the gateway's own settings.
pub(crate) struct Shared {
    pub(crate) node: Handle,
    /// The largest blob or bundle upload, bytes.
    pub(crate) max_upload: u64,
    /// One permit per event stream open (`[api] events_clients`).
    pub(crate) event_slots: Arc<tokio::sync::Semaphore>,
    /// `[api] events_send_timeout`.
    pub(crate) events_send_timeout: Duration,
}

/// The longest `?wait=` a job read may ask for.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// Pieces in flight between the store's reader and a download's socket.
const DOWNLOAD_QUEUE: usize = 4;
/// Bytes per read of a download.
const DOWNLOAD_PIECE: usize = 1024 * 1024;

/// The JSON routes: answered within `[api] request_timeout`.
pub(crate) fn json_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(node_status))
        .routes(routes!(node_peers))
        .routes(routes!(node_config))
        .routes(routes!(node_drain))
        .routes(routes!(blob_list))
        .routes(routes!(blob_head))
        .routes(routes!(blob_pin, blob_unpin))
        .routes(routes!(blob_fetch))
        .routes(routes!(bundle_list))
        .routes(routes!(bundle_get))
        .routes(routes!(bundle_pack))
        .routes(routes!(job_submit, job_list))
        .routes(routes!(job_cancel))
        .routes(routes!(job_logs))
        .routes(routes!(job_tasks))
        .routes(routes!(ledger_balance))
        .routes(routes!(ledger_history))
        .routes(routes!(ledger_holds))
        .routes(routes!(ledger_transfer))
        .routes(routes!(ledger_verify))
        .routes(routes!(market_offers))
        .routes(routes!(market_price))
        .routes(routes!(reputation_all))
        .routes(routes!(reputation_one))
        .routes(routes!(node_history))
        .routes(routes!(node_health))
}

/// The event stream: open for as long as the client follows, outside the
/// request timeout and the concurrency bound (`[api] events_clients`
/// bounds it instead).
pub(crate) fn stream_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(crate::events::events))
}

/// `/metrics`, behind the token unless `[api] metrics_public`.
pub(crate) fn metrics_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// The routes that stream or wait, with no overall deadline: a 1 GiB
/// upload or a `?wait=5m` may rightly take long. Slow bodies are still cut
/// off between frames.
pub(crate) fn long_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(blob_upload))
        .routes(routes!(blob_download))
        .routes(routes!(bundle_add))
        .routes(routes!(job_get))
        .routes(routes!(job_output))
}

fn cid(text: &str) -> ApiResult<Cid> {
    text.parse().map_err(|_| {
        Problem::bad_request(format!(
            "{text:?} is not a blob id (64 hex digits, as `POST /v1/blobs` returns)"
        ))
    })
}

fn peer(text: &str) -> ApiResult<p2pc_net::PeerId> {
    text.parse()
        .map_err(|_| Problem::bad_request(format!("{text:?} is not a peer id")))
}

fn account(text: Option<&str>) -> ApiResult<Option<p2pc_crypto::PublicKey>> {
    text.map(|t| {
        t.parse()
            .map_err(|_| Problem::bad_request(format!("{t:?} is not a public key (64 hex digits)")))
    })
    .transpose()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, p2pc_store::Error> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal(format!("a blocking task failed: {e}")))?
        .map_err(Problem::from)
}

// ---- node ----

/// A day of a few series, one point a minute (`[api] history_step`):
/// peers' tasks run here by outcome, fuel, price, balance, peers.
#[utoipa::path(get, path = "/v1/history", tag = "node", params(HistoryQuery),
    responses((status = 200, body = p2pc_node::Timeline),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn node_history(
    State(s): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> Json<p2pc_node::Timeline> {
    Json(s.node.history(q.since_unix_ms))
}

/// The health checker's findings, each with its severity, evidence and
/// what to do (checked at most once a second; every `[health] interval`
/// anyway).
#[utoipa::path(get, path = "/v1/health", tag = "node",
    responses((status = 200, body = p2pc_node::HealthReport), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn node_health(State(s): State<AppState>) -> Json<p2pc_node::HealthReport> {
    Json(s.node.health().await)
}

/// Prometheus metrics, as Prometheus text (0.0.4), or OpenMetrics text
/// when the `Accept` header asks for `application/openmetrics-text`. Needs
/// the token unless `[api] metrics_public = true`.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let text = s.node.metrics_text(openmetrics).await;
    let kind = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

/// What the node sees: peers, slots, jobs, uptime.
#[utoipa::path(get, path = "/v1/node", tag = "node",
    responses((status = 200, body = Status), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn node_status(State(s): State<AppState>) -> ApiResult<Json<Status>> {
    Ok(Json(s.node.status().await?))
}

/// The peers connected.
#[utoipa::path(get, path = "/v1/node/peers", tag = "node",
    responses((status = 200, body = Vec<p2pc_net::PeerInfo>), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn node_peers(State(s): State<AppState>) -> ApiResult<Json<Vec<p2pc_net::PeerInfo>>> {
    Ok(Json(s.node.peers().await?))
}

/// The configuration the node runs with (no secrets).
#[utoipa::path(get, path = "/v1/node/config", tag = "node",
    responses((status = 200, body = ConfigSummary), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn node_config(State(s): State<AppState>) -> Json<ConfigSummary> {
    Json(s.node.config_summary())
}

/// Stop taking new tasks; those running finish.
#[utoipa::path(post, path = "/v1/node/drain", tag = "node",
    responses((status = 200, body = Drained), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn node_drain(State(s): State<AppState>) -> Json<Drained> {
    Json(s.node.drain())
}

// ---- blobs ----

/// Every blob stored, ordered by id.
#[utoipa::path(get, path = "/v1/blobs", tag = "blobs",
    responses((status = 200, body = Vec<BlobInfo>), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn blob_list(State(s): State<AppState>) -> ApiResult<Json<Vec<BlobInfo>>> {
    let store = s.node.store().clone();
    Ok(Json(blocking(move || store.list()).await?))
}

/// Store the request body as a blob (streamed, never whole in memory) and
/// announce it to the network, unless `announce=false`.
#[utoipa::path(post, path = "/v1/blobs", tag = "blobs", params(UploadQuery),
    request_body(content = RawBytes, content_type = "application/octet-stream"),
    responses((status = 201, body = BlobInfo), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json")))]
async fn blob_upload(
    State(s): State<AppState>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<BlobInfo>)> {
    let info = store_body(&s, &headers, body).await?;
    if q.announce.unwrap_or(true) {
        s.node.announce(info.id);
    }
    Ok((StatusCode::CREATED, Json(info)))
}

/// Streams `body` into the store, refusing it past `[api] max_upload`.
async fn store_body(s: &AppState, headers: &HeaderMap, body: Body) -> ApiResult<BlobInfo> {
    let max = s.max_upload;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than [api] max_upload ({max} bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let over = Arc::new(AtomicBool::new(false));
    let capped = Capped {
        inner: bridge,
        left: max,
        over: over.clone(),
    };
    let store = s.node.store().clone();
    let result = tokio::task::spawn_blocking(move || {
        store.put(std::io::BufReader::with_capacity(1 << 20, capped))
    })
    .await
    .map_err(|e| Problem::internal(format!("a blocking task failed: {e}")))?;
    match result {
        Ok(info) => Ok(info),
        Err(_) if over.load(Ordering::Relaxed) => Err(too_large()),
        Err(p2pc_store::Error::Input(e)) => Err(Problem::bad_request(format!(
            "the upload did not arrive whole: {e}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A reader that fails once more than `left` bytes come through it.
struct Capped<R> {
    inner: R,
    left: u64,
    over: Arc<AtomicBool>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => {
                self.over.store(true, Ordering::Relaxed);
                Err(std::io::Error::other("upload over the limit"))
            }
        }
    }
}

/// A blob's bytes, verified chunk by chunk as they are sent. One `Range:
/// bytes=` range is honoured.
#[utoipa::path(get, path = "/v1/blobs/{cid}", tag = "blobs",
    params(("cid" = String, Path, description = "The blob's id"),
        ("Range" = Option<String>, Header, description = "One range, such as bytes=0-1023")),
    responses((status = 200, body = RawBytes, content_type = "application/octet-stream"),
        (status = 206, body = RawBytes, content_type = "application/octet-stream"),
        (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 416, body = Problem, content_type = "application/problem+json")))]
async fn blob_download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = cid(&id)?;
    let store = s.node.store().clone();
    let info = blocking({
        let store = store.clone();
        move || store.info(&id)
    })
    .await?;
    let len = info.len;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(parse_range(v.to_str().unwrap_or(""), len)?),
    };
    let (start, end) = range.unwrap_or((0, len));
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(DOWNLOAD_QUEUE);
    tokio::task::spawn_blocking(move || {
        let send = |item| tx.blocking_send(item).is_ok();
        let mut reader = match store.get(&id) {
            Ok(r) => r,
            Err(e) => {
                send(Err(std::io::Error::other(e)));
                return;
            }
        };
        if let Err(e) = reader.seek_to(start) {
            send(Err(std::io::Error::other(e)));
            return;
        }
        let mut left = end - start;
        while left > 0 {
            let want = usize::try_from(left.min(DOWNLOAD_PIECE as u64)).unwrap_or(DOWNLOAD_PIECE);
            let mut buf = vec![0u8; want];
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if !send(Ok(buf.into())) {
                        return;
                    }
                }
                Err(e) => {
                    // The client sees the body cut short: a blob that fails
                    // verification is never served as if whole.
                    tracing::warn!(blob = %id, error = %reader.take_error(e), "download stopped");
                    send(Err(std::io::Error::other("blob failed verification")));
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
        h.insert(header::ETAG, v);
    }
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let content_range = if end > start {
            format!("bytes {start}-{}/{len}", end - 1)
        } else {
            format!("bytes */{len}")
        };
        if let Ok(v) = HeaderValue::from_str(&content_range) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `len` bytes:
/// the half-open range `[start, end)`.
pub(crate) fn parse_range(text: &str, len: u64) -> ApiResult<(u64, u64)> {
    let unsatisfiable = || {
        Problem::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("range {text:?} is not within the blob's {len} bytes"),
        )
    };
    let spec = text.trim().strip_prefix("bytes=").ok_or_else(|| {
        Problem::bad_request(format!("Range {text:?}: only bytes=START-END is served"))
    })?;
    if spec.contains(',') {
        return Err(Problem::bad_request(
            "only one range per request is served; ask for each separately",
        ));
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| Problem::bad_request(format!("Range {text:?} has no '-'")))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| Problem::bad_request(format!("Range {text:?}: {s:?} is not a number")))
    };
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Err(Problem::bad_request(format!("Range {text:?} is empty"))),
        (true, false) => {
            let n = number(b)?.min(len);
            (len - n, len)
        }
        (false, true) => (number(a)?, len),
        (false, false) => {
            let (a, b) = (number(a)?, number(b)?);
            if b < a {
                return Err(unsatisfiable());
            }
            (a, b.saturating_add(1).min(len))
        }
    };
    if start >= len && len > 0 || start > len {
        return Err(unsatisfiable());
    }
    Ok((start, end))
}

/// What the store knows of one blob: its length, chunks and pin.
#[utoipa::path(get, path = "/v1/blobs/{cid}/info", tag = "blobs",
    params(("cid" = String, Path, description = "The blob's id")),
    responses((status = 200, body = BlobInfo), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn blob_head(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<BlobInfo>> {
    let id = cid(&id)?;
    let store = s.node.store().clone();
    Ok(Json(blocking(move || store.info(&id)).await?))
}

/// Keep a blob through garbage collection.
#[utoipa::path(put, path = "/v1/blobs/{cid}/pin", tag = "blobs",
    params(("cid" = String, Path, description = "The blob's id")),
    responses((status = 200, body = BlobInfo), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn blob_pin(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<BlobInfo>> {
    let id = cid(&id)?;
    let store = s.node.store().clone();
    Ok(Json(
        blocking(move || {
            store.pin(&id)?;
            store.info(&id)
        })
        .await?,
    ))
}

/// Let garbage collection remove a blob again.
#[utoipa::path(delete, path = "/v1/blobs/{cid}/pin", tag = "blobs",
    params(("cid" = String, Path, description = "The blob's id")),
    responses((status = 200, body = BlobInfo), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn blob_unpin(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<BlobInfo>> {
    let id = cid(&id)?;
    let store = s.node.store().clone();
    Ok(Json(
        blocking(move || {
            store.unpin(&id)?;
            store.info(&id)
        })
        .await?,
    ))
}

/// Download a blob from the network into this node, chunks verified.
#[utoipa::path(post, path = "/v1/blobs/{cid}/fetch", tag = "blobs",
    params(("cid" = String, Path, description = "The blob's id")),
    request_body = FetchBlob,
    responses((status = 200, body = FetchStats), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 502, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json")))]
async fn blob_fetch(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<FetchBlob>,
) -> ApiResult<Json<FetchStats>> {
    let id = cid(&id)?;
    let hints = body
        .from
        .iter()
        .map(|p| peer(p.as_str()))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(s.node.fetch(id, &hints).await?))
}

// ---- bundles ----

/// The bundles this node keeps.
#[utoipa::path(get, path = "/v1/bundles", tag = "bundles",
    responses((status = 200, body = Vec<BundleRecord>), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn bundle_list(State(s): State<AppState>) -> ApiResult<Json<Vec<BundleRecord>>> {
    Ok(Json(s.node.bundles().await?))
}

/// Verify a signed bundle file (the request body) and keep it.
#[utoipa::path(post, path = "/v1/bundles", tag = "bundles",
    request_body(content = RawBytes, content_type = "application/octet-stream"),
    responses((status = 201, body = BundleRecord), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json")))]
async fn bundle_add(
    State(s): State<AppState>,
    body: Body,
) -> ApiResult<(StatusCode, Json<BundleRecord>)> {
    // A bundle is checked whole (its signature covers the component), so
    // it is read into memory, within the bundle format's own cap.
    let max = usize::try_from(s.max_upload.min(p2pc_crypto::MAX_BUNDLE_BYTES as u64))
        .unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, max).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a bundle is at most {max} bytes"),
        )
    })?;
    let record = s.node.add_bundle(bytes.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// One bundle and what its manifest asks for.
#[utoipa::path(get, path = "/v1/bundles/{id}", tag = "bundles",
    params(("id" = String, Path, description = "The bundle's id")),
    responses((status = 200, body = BundleDetail), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn bundle_get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<BundleDetail>> {
    let (record, m) = s.node.bundle(cid(&id)?).await?;
    let limits = m.limits.unwrap_or_default();
    Ok(Json(BundleDetail {
        record,
        executor: m.executor().to_owned(),
        args: m.args,
        component_size: m.component_size,
        fuel: limits.fuel,
        memory_bytes: limits.memory_bytes,
        timeout_ms: limits.timeout_ms,
        capabilities: m.capabilities,
        created_unix: m.created_unix,
        expires_unix: m.expires_unix,
    }))
}

/// Pack a stored wasm component into a bundle signed with a key of the
/// node's keystore, and keep it.
#[utoipa::path(post, path = "/v1/bundles/pack", tag = "bundles",
    request_body = PackBundle,
    responses((status = 201, body = BundleRecord), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json")))]
async fn bundle_pack(
    State(s): State<AppState>,
    Json(body): Json<PackBundle>,
) -> ApiResult<(StatusCode, Json<BundleRecord>)> {
    let record = s
        .node
        .pack_bundle(p2pc_node::Pack {
            component: cid(&body.component)?,
            name: body.name,
            version: body.version,
            key: body.key,
            passphrase: body.passphrase,
            args: body.args,
            limits: p2pc_crypto::RequestedLimits {
                fuel: body.fuel.unwrap_or(0),
                memory_bytes: body.memory_bytes.unwrap_or(0),
                timeout_ms: body.timeout_ms.unwrap_or(0),
                output_bytes: 0,
            },
            capabilities: body.capabilities,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

// ---- jobs ----

/// The default job timeout when a submission names none.
const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// The longest timeout or challenge window a submission may ask for.
const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;

/// Submit a job: a bundle, an input, and how it is to be run and paid.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body = SubmitJob,
    responses((status = 201, body = Submitted), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "Too few credits for the job's holds (`urn:p2pc:problem:insufficient-credits`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json")))]
async fn job_submit(
    State(s): State<AppState>,
    Json(body): Json<SubmitJob>,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    let submission = submission(&s, body).await?;
    let job = s.node.submit(submission).await?;
    Ok((StatusCode::CREATED, Json(Submitted { job })))
}

async fn submission(s: &AppState, body: SubmitJob) -> ApiResult<Submission> {
    let bundle = s.node.bundle_bytes(cid(&body.bundle)?).await?;
    let mut input_blob = None;
    let input = match body.input {
        None => Vec::new(),
        Some(JobInput::Text(t)) => t.into_bytes(),
        Some(JobInput::Base64(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map_err(|e| Problem::bad_request(format!("input.base64 is not base64: {e}")))?,
        // Read from the store as it is sent, never whole in memory.
        Some(JobInput::Blob(id)) => {
            input_blob = Some(cid(&id)?);
            Vec::new()
        }
    };
    let validation = body
        .validation
        .map(|v| v.parse().map_err(|e: String| Problem::bad_request(e)))
        .transpose()?;
    if body
        .min_reputation
        .is_some_and(|m| !(0.0..=1.0).contains(&m))
    {
        return Err(Problem::bad_request(
            "min_reputation is a score between 0 and 1",
        ));
    }
    let timeout_ms = body.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(Problem::bad_request(format!(
            "timeout_ms is between 1 and {MAX_TIMEOUT_MS} (7 days)"
        )));
    }
    if body.window_ms.is_some_and(|w| w > MAX_TIMEOUT_MS) {
        return Err(Problem::bad_request(format!(
            "window_ms is at most {MAX_TIMEOUT_MS} (7 days)"
        )));
    }
    let mut submission = Submission::new(bundle, input, Duration::from_millis(timeout_ms));
    submission.to = body.to.as_deref().map(peer).transpose()?;
    submission.args = body.args;
    submission.budget = body.budget;
    submission.max_price = body.max_price;
    submission.window = body.window_ms.map(Duration::from_millis);
    submission.shards = body.shards;
    submission.validation = validation;
    submission.min_reputation = body.min_reputation;
    submission.seal = body.seal;
    submission.input_blob = input_blob;
    Ok(submission)
}

/// The jobs this node keeps, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = JobPage), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn job_list(
    State(s): State<AppState>,
    Query(q): Query<JobQuery>,
) -> ApiResult<Json<JobPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit is between 1 and 1000"));
    }
    if let Some(state) = &q.state
        && !JobState::NAMES.contains(&state.as_str())
    {
        return Err(Problem::bad_request(format!(
            "state {state:?} is none of {}",
            JobState::NAMES.join(", ")
        )));
    }
    let all = s.node.jobs(usize::MAX).await?;
    let mut rest: Box<dyn Iterator<Item = JobInfo>> = Box::new(all.into_iter());
    if let Some(cursor) = q.cursor {
        // Newest first, so the page after `cursor` starts past it.
        let mut seen = false;
        rest = Box::new(rest.skip_while(move |j| {
            let before = !seen;
            if j.id == cursor {
                seen = true;
            }
            before
        }));
    }
    if let Some(state) = q.state {
        rest = Box::new(rest.filter(move |j| j.status.name() == state));
    }
    let mut jobs: Vec<JobInfo> = rest.take(limit as usize + 1).collect();
    let next = if jobs.len() > limit as usize {
        jobs.truncate(limit as usize);
        jobs.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(Json(JobPage { jobs, next }))
}

/// One job's record; with `?wait=`, once it ends or the wait is over.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), JobGet),
    responses((status = 200, body = JobInfo), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn job_get(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<JobGet>,
) -> ApiResult<Json<JobInfo>> {
    let info = match q.wait {
        None => s.node.job(&id).await?,
        Some(w) => {
            let wait = humantime::parse_duration(&w).map_err(|e| {
                Problem::bad_request(format!("wait {w:?} is not a duration such as 30s: {e}"))
            })?;
            if wait > MAX_WAIT {
                return Err(Problem::bad_request(
                    "wait is at most 10m; ask again after it",
                ));
            }
            s.node.wait(&id, wait).await?
        }
    };
    Ok(Json(info))
}

/// Cancel a running job.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = Cancelled), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn job_cancel(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Cancelled>> {
    let info = s.node.job(&id).await?;
    if info.status.is_final() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("job {id} has already ended ({})", info.status.name()),
        ));
    }
    s.node.cancel(&id)?;
    Ok(Json(Cancelled { job: id }))
}

/// A finished job's output bytes.
#[utoipa::path(get, path = "/v1/jobs/{id}/output", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = RawBytes, content_type = "application/octet-stream"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn job_output(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let info = s.node.job(&id).await?;
    if !matches!(info.status, JobState::Done { .. }) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("job {id} has no output: it is {}", info.status.name()),
        ));
    }
    let bytes = s.node.output(&id).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// A job's log lines, stderr and receipts.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobLogs), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn job_logs(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<JobLogs>> {
    Ok(Json(s.node.logs(&id).await?))
}

/// A job's task attempts and the receipts behind its result.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobTasks), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn job_tasks(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<JobTasks>> {
    let info = s.node.job(&id).await?;
    let receipts = match info.status {
        JobState::Done { .. } => s
            .node
            .logs(&id)
            .await
            .map(|l| l.receipts)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Ok(Json(JobTasks {
        job: info.id,
        tasks: info.tasks,
        receipts,
    }))
}

// ---- ledger ----

async fn ledger(s: &AppState, request: LedgerRequest) -> ApiResult<LedgerAnswer> {
    Ok(s.node.ledger(request).await?)
}

fn unexpected() -> Problem {
    Problem::internal("the ledger answered with the wrong kind of record")
}

/// An account's credits: available, held, bonded, pending.
#[utoipa::path(get, path = "/v1/ledger/balance", tag = "ledger", params(AccountQuery),
    responses((status = 200, body = Balance), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn ledger_balance(
    State(s): State<AppState>,
    Query(q): Query<AccountQuery>,
) -> ApiResult<Json<Balance>> {
    let account = account(q.account.as_deref())?;
    match ledger(&s, LedgerRequest::Balance { account }).await? {
        LedgerAnswer::Balance(b) => Ok(Json(b)),
        _ => Err(unexpected()),
    }
}

/// The last ops that concern an account, oldest first.
#[utoipa::path(get, path = "/v1/ledger/history", tag = "ledger", params(AccountQuery),
    responses((status = 200, body = History), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn ledger_history(
    State(s): State<AppState>,
    Query(q): Query<AccountQuery>,
) -> ApiResult<Json<History>> {
    let account = account(q.account.as_deref())?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=10_000).contains(&limit) {
        return Err(Problem::bad_request("limit is between 1 and 10000"));
    }
    match ledger(&s, LedgerRequest::History { account, limit }).await? {
        LedgerAnswer::History(h) => Ok(Json(h)),
        _ => Err(unexpected()),
    }
}

/// Escrows: all, or those an account is party to.
#[utoipa::path(get, path = "/v1/ledger/holds", tag = "ledger", params(AccountQuery),
    responses((status = 200, body = Holds), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn ledger_holds(
    State(s): State<AppState>,
    Query(q): Query<AccountQuery>,
) -> ApiResult<Json<Holds>> {
    let account = account(q.account.as_deref())?;
    match ledger(&s, LedgerRequest::Holds { account }).await? {
        LedgerAnswer::Holds(h) => Ok(Json(h)),
        _ => Err(unexpected()),
    }
}

/// Send credits from the node's own account.
#[utoipa::path(post, path = "/v1/ledger/transfers", tag = "ledger", request_body = Transfer,
    responses((status = 201, body = Transferred), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "Too few credits (`urn:p2pc:problem:insufficient-credits`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json")))]
async fn ledger_transfer(
    State(s): State<AppState>,
    Json(t): Json<Transfer>,
) -> ApiResult<(StatusCode, Json<Transferred>)> {
    let to = account(Some(&t.to))?.expect("given");
    if t.amount == 0 {
        return Err(Problem::bad_request("amount must be above 0"));
    }
    match ledger(
        &s,
        LedgerRequest::Transfer {
            to,
            amount: t.amount,
        },
    )
    .await?
    {
        LedgerAnswer::Transferred(t) => Ok((StatusCode::CREATED, Json(t))),
        _ => Err(unexpected()),
    }
}

/// Rebuild the ledger's state from its ops and check every invariant.
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "ledger",
    responses((status = 200, body = Verified), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn ledger_verify(State(s): State<AppState>) -> ApiResult<Json<Verified>> {
    match ledger(&s, LedgerRequest::Verify).await? {
        LedgerAnswer::Verify(v) => Ok(Json(v)),
        _ => Err(unexpected()),
    }
}

// ---- market ----

/// The fresh offers this node holds, cheapest first.
#[utoipa::path(get, path = "/v1/market/offers", tag = "market",
    responses((status = 200, body = Vec<OfferView>), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn market_offers(State(s): State<AppState>) -> Json<Vec<OfferView>> {
    Json(s.node.offers())
}

/// This node's price as a worker, and what sets it.
#[utoipa::path(get, path = "/v1/market/price", tag = "market",
    responses((status = 200, body = PriceView), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn market_price(State(s): State<AppState>) -> Json<PriceView> {
    Json(s.node.price())
}

/// What this node knows of every worker it used, best first.
#[utoipa::path(get, path = "/v1/reputation", tag = "market",
    responses((status = 200, body = Vec<ReputationView>), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn reputation_all(State(s): State<AppState>) -> Json<Vec<ReputationView>> {
    Json(s.node.reputation(None))
}

/// What this node knows of one worker.
#[utoipa::path(get, path = "/v1/reputation/{peer}", tag = "market",
    params(("peer" = String, Path, description = "The worker's peer id")),
    responses((status = 200, body = ReputationView), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn reputation_one(
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> ApiResult<Json<ReputationView>> {
    let id = peer(&p)?;
    s.node
        .reputation(Some(&id))
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("this node has no record of {p}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_http_says_and_bad_ones_refused() {
        assert_eq!(parse_range("bytes=0-9", 100).expect("a range"), (0, 10));
        assert_eq!(parse_range("bytes=90-", 100).expect("a range"), (90, 100));
        assert_eq!(parse_range("bytes=-10", 100).expect("a range"), (90, 100));
        assert_eq!(
            parse_range("bytes=50-1000", 100).expect("a range"),
            (50, 100)
        );
        assert_eq!(parse_range("bytes=-1000", 100).expect("a range"), (0, 100));
        let status = |t: &str| parse_range(t, 100).expect_err("refused").status;
        assert_eq!(status("bytes=100-"), 416);
        assert_eq!(status("bytes=9-3"), 416);
        assert_eq!(status("bytes=0-1,5-6"), 400);
        assert_eq!(status("items=0-1"), 400);
        assert_eq!(status("bytes=x-1"), 400);
        assert_eq!(status("bytes=-"), 400);
        assert_eq!(status("bytes=18446744073709551615-"), 416);
    }
}
