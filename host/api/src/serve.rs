//! Serving the gateway: one router, on a TCP listener and on the node's
//! Unix socket, each connection driven by hyper with a header timeout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use p2pc_node::{ApiSection, Handle, SOCKET_FILE, URL_FILE};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tracing::{debug, info, warn};

use crate::problem::Problem;
use crate::routes::{self, AppState};

/// How the gateway serves: `[api]` and the token.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The bearer token every `/v1` route needs.
    pub token: String,
    /// `[api]`.
    pub api: ApiSection,
}

/// A running gateway. Dropping it does not stop it; call
/// [`shutdown`](Self::shutdown).
pub struct Gateway {
    closing: CancellationToken,
    connections: TaskTracker,
    /// The TCP listener's address, if one is served.
    pub addr: Option<SocketAddr>,
    /// The Unix socket.
    pub socket: PathBuf,
    url_file: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// The base URL of the TCP listener, such as `http://127.0.0.1:7420`.
    pub fn url(&self) -> Option<String> {
        self.addr.map(|a| format!("http://{a}"))
    }

    /// Stops accepting, lets requests in flight finish for up to
    /// [`GRACE`], closes every connection, and removes the socket and the
    /// URL file. When it returns no connection holds the node any more, so
    /// the node can stop and its data directory be opened again.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.closing.cancel();
        self.connections.close();
        self.connections.wait().await;
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.url_file);
    }
}

/// Serves the gateway for `node` on `[api] listen` and on
/// `<data_dir>/api.sock`, with the token in `<data_dir>/api.token`
/// (created if missing).
pub async fn serve(node: Handle) -> Result<Gateway, p2pc_node::Error> {
    let dir = node.data_dir();
    p2pc_node::ensure_token(&dir)?;
    let settings = Settings {
        token: p2pc_node::read_token(&dir)?,
        api: node.config().api.clone(),
    };
    serve_with(node, settings).await
}

/// [`serve`] with explicit settings.
pub async fn serve_with(node: Handle, settings: Settings) -> Result<Gateway, p2pc_node::Error> {
    let io = p2pc_node::Error::Io;
    let addr = settings.api.address()?;
    let dir = node.data_dir();
    let app = router(node, &settings);
    let header_timeout = settings.api.header_timeout;
    let mut tasks = Vec::new();
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();

    let socket = dir.join(SOCKET_FILE);
    // A socket left by a node that died is in the way; a live node's
    // socket answers, and then this node must not start.
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Err(io(format!(
                "another node is already running on {}",
                dir.display()
            )));
        }
        let _ = std::fs::remove_file(&socket);
    }
    let unix = {
        // Created under a restrictive umask so it is never briefly open to
        // other users.
        let old = umask(0o177);
        let l = tokio::net::UnixListener::bind(&socket);
        umask(old);
        l.map_err(|e| io(format!("cannot listen on {}: {e}", socket.display())))?
    };
    let a = app.clone();
    let (c, t) = (closing.clone(), connections.clone());
    tasks.push(tokio::spawn(async move {
        let mut backoff = Backoff::default();
        loop {
            match unix.accept().await {
                Ok((stream, _)) => {
                    backoff.reset();
                    connection(a.clone(), stream, header_timeout, &c, &t);
                }
                Err(e) => backoff.wait(&e).await,
            }
        }
    }));

    let url_file = dir.join(URL_FILE);
    let mut bound = None;
    if let Some(addr) = addr {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| io(format!("[api] listen: cannot listen on {addr}: {e}")))?;
        let local = tcp
            .local_addr()
            .map_err(|e| io(format!("[api] listen: {e}")))?;
        if !local.ip().is_loopback() {
            warn!(%local, "the API is reachable from other machines ([api] allow_remote)");
        }
        std::fs::write(&url_file, format!("http://{local}\n"))
            .map_err(|e| io(format!("cannot write {}: {e}", url_file.display())))?;
        let a = app.clone();
        let (c, t) = (closing.clone(), connections.clone());
        tasks.push(tokio::spawn(async move {
            let mut backoff = Backoff::default();
            loop {
                match tcp.accept().await {
                    Ok((stream, _)) => {
                        backoff.reset();
                        let _ = stream.set_nodelay(true);
                        connection(a.clone(), stream, header_timeout, &c, &t);
                    }
                    Err(e) => backoff.wait(&e).await,
                }
            }
        }));
        bound = Some(local);
        info!(url = %format!("http://{local}"), "API listening");
    }
    Ok(Gateway {
        closing,
        connections,
        addr: bound,
        socket,
        url_file,
        tasks,
    })
}

/// The pause after a failed accept (out of file descriptors, most often):
/// it doubles from 10 ms to a second while accepts keep failing and starts
/// again after one succeeds. Retrying at once would spin a core the node
/// needs to close connections and recover.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    failures: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    fn reset(&mut self) {
        if self.failures > 0 {
            info!(failures = self.failures, "API accepts again");
        }
        *self = Self::default();
    }

    /// The pause to take now; the next one is longer.
    fn step(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MOST);
        self.failures = self.failures.saturating_add(1);
        pause
    }

    async fn wait(&mut self, e: &std::io::Error) {
        if self.failures == 0 {
            warn!(error = %e, "API accept failed; backing off until it works again");
        } else {
            debug!(error = %e, failures = self.failures, "API accept failed again");
        }
        tokio::time::sleep(self.step()).await;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Self::FIRST,
            failures: 0,
        }
    }
}

/// Put in every request's extensions: closes the request's connection
/// when notified (an event stream drops a client that fell behind, which
/// may never read again, so waiting for it to would keep the socket).
#[derive(Clone)]
pub(crate) struct Hangup(pub(crate) Arc<tokio::sync::Notify>);

/// How long [`Gateway::shutdown`] lets requests in flight finish; an event
/// stream never does, and is cut when this is up.
pub const GRACE: Duration = Duration::from_secs(2);

fn connection<S>(
    app: Router,
    stream: S,
    header_timeout: Duration,
    closing: &CancellationToken,
    tracker: &TaskTracker,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let closing = closing.clone();
    tracker.spawn(async move {
        let hangup = Arc::new(tokio::sync::Notify::new());
        let h = Hangup(hangup.clone());
        let app = tower::ServiceExt::map_request(
            app,
            move |mut r: hyper::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(h.clone());
                r
            },
        );
        let service = TowerToHyperService::new(app);
        let serving = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            // Large reads make fewer, larger body frames for uploads.
            .max_buf_size(4 << 20)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(serving);
        let result = tokio::select! {
            result = serving.as_mut() => result,
            () = hangup.notified() => {
                debug!("API connection closed by the server");
                return;
            }
            () = closing.cancelled() => {
                // Idle connections close at once; a request in flight
                // gets GRACE to finish.
                serving.as_mut().graceful_shutdown();
                match tokio::time::timeout(GRACE, serving).await {
                    Ok(result) => result,
                    Err(_) => return,
                }
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "API connection ended");
        }
    });
}

fn umask(mask: u32) -> u32 {
    // SAFETY: umask only swaps the process's file mode mask.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// The whole application: the `/v1` routes behind the token, `/healthz`
/// and the OpenAPI document open (and `/metrics`, if `[api]
/// metrics_public`), all but the event streams under one concurrency
/// bound; every request matched to a route is counted in the metrics.
pub fn router(node: Handle, settings: &Settings) -> Router {
    let api = &settings.api;
    let state: AppState = Arc::new(routes::Shared {
        node: node.clone(),
        max_upload: api.max_upload.bytes(),
        event_slots: crate::events::slots(api.events_clients),
        events_send_timeout: api.events_send_timeout,
    });
    let max_body = usize::try_from(api.max_body.bytes()).unwrap_or(usize::MAX);
    let (json, _) = routes::json_routes().split_for_parts();
    let (issuer, _) = crate::issuer::routes().split_for_parts();
    let json = json
        .merge(issuer)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            api.request_timeout,
        ));
    let (long, _) = routes::long_routes().split_for_parts();
    // An upload may be long, but a client that stops sending is cut off.
    let long = long
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyTimeoutLayer::new(api.request_timeout));
    let (metrics, _) = routes::metrics_routes().split_for_parts();
    let metrics = metrics.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        api.request_timeout,
    ));
    let (streams, _) = routes::stream_routes().split_for_parts();
    let token: Arc<str> = settings.token.as_str().into();
    let mut guarded = json.merge(long);
    if !api.metrics_public {
        guarded = guarded.merge(metrics.clone());
    }
    let limit = GlobalConcurrencyLimitLayer::new(api.concurrency.max(1));
    let guarded = guarded
        .route_layer(from_fn_with_state(token.clone(), require_token))
        .layer(limit.clone());
    let streams = streams.route_layer(from_fn_with_state(token, require_token));
    let doc: Arc<str> = crate::openapi_json().into();
    let mut open = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.to_string(),
                    )
                }
            }),
        );
    if api.metrics_public {
        open = open.merge(metrics);
    }

    if api.dashboard {
        open = open.merge(crate::dashboard::routes());
    }
    let open = open.layer(limit);
    // The webhook route: its signature is its authentication
    // (`crate::issuer`). Anyone can reach it, so it has permits of its own
    // (a flood of slow webhooks cannot take the token-holders' ones) and
    // a short time to send its body.
    let (webhooks, _) = crate::issuer::open_routes().split_for_parts();
    let open = open.merge(
        webhooks
            .layer(DefaultBodyLimit::max(crate::issuer::MAX_WEBHOOK))
            .layer(RequestBodyTimeoutLayer::new(
                crate::issuer::WEBHOOK_BODY_TIMEOUT,
            ))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                api.request_timeout,
            ))
            .layer(GlobalConcurrencyLimitLayer::new(
                crate::issuer::WEBHOOK_CONCURRENCY,
            )),
    );
    let (n404, n405) = (node.clone(), node.clone());
    let mut app = guarded
        .merge(streams)
        .merge(open)
        .route_layer(from_fn_with_state(node, count))
        .with_state(state)
        .fallback(move || {
            unmatched(&n404, StatusCode::NOT_FOUND);
            async { Problem::not_found("no such route; the routes are listed at /v1/openapi.json") }
        })
        .method_not_allowed_fallback(move || {
            unmatched(&n405, StatusCode::METHOD_NOT_ALLOWED);
            async {
                Problem::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this route does not take that method; see /v1/openapi.json",
                )
            }
        });
    if !api.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = api
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(tower_http::cors::Any)
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::RANGE]),
        );
    }
    app
}

/// Counts a request by its route's template, method and status.
async fn count(State(node): State<Handle>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    node.count_request(&p2pc_node::ApiRequest {
        route,
        method,
        status: response.status().as_u16(),
    });
    response
}

fn unmatched(node: &Handle, status: StatusCode) {
    node.count_request(&p2pc_node::ApiRequest {
        route: "unmatched".into(),
        method: String::new(),
        status: status.as_u16(),
    });
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request carries: a bearer header, or a `bearer.<token>`
/// item of `Sec-WebSocket-Protocol` (a browser cannot set headers on a
/// WebSocket, only subprotocols).
fn presented(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim());
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|item| item.trim().strip_prefix("bearer."))
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    match presented(&request) {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            next.run(request).await
        }
        given => {
            if given.is_some() {
                warn!(path = %request.uri().path(), "API request with a wrong token");
            }
            let mut response = Problem::new(
                StatusCode::UNAUTHORIZED,
                "this route needs the node's token: send `Authorization: Bearer <token>` \
                 (`p2pctl node token` shows it)",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Reads `<dir>/api.url`, the URL a running node's TCP listener got.
pub fn url_of(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(URL_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Backoff;

    #[test]
    fn a_failing_accept_backs_off_to_a_second_and_starts_again_after_one_works() {
        let mut b = Backoff::default();
        let pauses: Vec<Duration> = (0..10).map(|_| b.step()).collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]), "{pauses:?}");
        assert_eq!(*pauses.last().expect("ten"), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(10));
    }
}
