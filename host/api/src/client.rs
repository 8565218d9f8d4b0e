//! [`Client`]: the typed client of the gateway, over the node's Unix
//! socket or TCP. `p2pctl` and the tests use it; the request and answer
//! types are the ones the routes use, so the two cannot disagree.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A request body: empty, bytes, or a stream (`Body::from_stream`).
pub type Body = axum::body::Body;

/// Where a node's gateway is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Its Unix socket.
    Unix(PathBuf),
    /// A TCP address, `host:port`.
    Tcp(String),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node could not be reached.
    #[error("{0}")]
    Connect(String),
    /// The node answered with an error.
    #[error("{}", .0.detail)]
    Api(Problem),
    /// The answer was not what this client expects.
    #[error("{0}")]
    Protocol(String),
    /// No answer within the client's timeout.
    #[error("the node did not answer within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api(p) => Some(p.status),
            _ => None,
        }
    }
}

/// A client of one node's gateway. Keeps one idle connection for reuse.
pub struct Client {
    endpoint: Endpoint,
    token: String,
    timeout: Duration,
    idle: Mutex<Option<SendRequest<Body>>>,
}

impl Client {
    /// A client of the gateway at `endpoint`, sending `token`.
    pub fn new(endpoint: Endpoint, token: impl Into<String>) -> Self {
        Self {
            endpoint,
            token: token.into(),
            timeout: Duration::from_secs(60),
            idle: Mutex::new(None),
        }
    }

    /// A client of the node whose data directory is `dir`, over its Unix
    /// socket, with its token.
    pub fn for_node(dir: &Path) -> Result<Self, ClientError> {
        let token = p2pc_node::read_token(dir).map_err(|e| ClientError::Connect(e.to_string()))?;
        let socket = dir.join(p2pc_node::SOCKET_FILE);
        if !socket.exists() {
            return Err(ClientError::Connect(format!(
                "no node is running on {}; start one with `p2pctl node start`",
                dir.display()
            )));
        }
        Ok(Self::new(Endpoint::Unix(socket), token))
    }

    /// The same client, waiting at most `timeout` for an answer's headers.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn connect(&self) -> Result<SendRequest<Body>, ClientError> {
        let unreachable = |e: std::io::Error| {
            ClientError::Connect(format!(
                "cannot reach the node at {:?} ({e}); is it running?",
                self.endpoint
            ))
        };
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                    ClientError::Connect(format!(
                        "no node is running on {} ({e}); start one with `p2pctl node start`",
                        path.parent().unwrap_or(path).display()
                    ))
                })?;
                handshake(stream).await
            }
            Endpoint::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(unreachable)?;
                let _ = stream.set_nodelay(true);
                handshake(stream).await
            }
        }
    }

    /// Sends one request; the answer's body is the caller's to read. An
    /// error status is returned as [`ClientError::Api`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Result<Response<Incoming>, ClientError> {
        let host = match &self.endpoint {
            Endpoint::Unix(_) => "localhost",
            Endpoint::Tcp(a) => a.as_str(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let request = request
            .body(body)
            .map_err(|e| ClientError::Protocol(format!("bad request {path:?}: {e}")))?;
        let call = async {
            let idle = self.idle.lock().expect("the idle slot").take();
            let mut sender = match idle {
                Some(mut s) => match s.ready().await {
                    Ok(()) => s,
                    Err(_) => self.connect().await?,
                },
                None => self.connect().await?,
            };
            let response = sender.send_request(request).await.map_err(|e| {
                ClientError::Connect(format!("the node closed the connection: {e}"))
            })?;
            *self.idle.lock().expect("the idle slot") = Some(sender);
            Ok::<_, ClientError>(response)
        };
        let response = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = read_body(response).await?;
        Err(ClientError::Api(
            serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| {
                Problem::new(status, String::from_utf8_lossy(&bytes).into_owned())
            }),
        ))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (ct, body) = match body {
            Some(b) => (Some("application/json"), Body::from(b)),
            None => (None, Body::empty()),
        };
        let response = self.send(method, path, ct, body).await?;
        let bytes = read_body(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Protocol(format!(
                "the node's answer to {path} is not what this client expects ({e}); is the node the same version?"
            ))
        })
    }

    /// `GET path`, answered with JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, answered with JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.json(Method::POST, path, Some(body)).await
    }

    /// `PUT path` (no body), answered with JSON.
    pub async fn put<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(Method::PUT, path, None).await
    }

    /// `DELETE path`, answered with JSON.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(Method::DELETE, path, None).await
    }

    /// `POST path` with raw bytes (a stream, for a large upload), answered
    /// with JSON.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Body,
    ) -> Result<T, ClientError> {
        let response = self
            .send(Method::POST, path, Some("application/octet-stream"), body)
            .await?;
        let bytes = read_body(response).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("the answer to {path}: {e}")))
    }

    /// Uploads the file at `file` as a blob, streamed.
    pub async fn upload_file<T: DeserializeOwned>(
        &self,
        path: &str,
        file: &Path,
    ) -> Result<T, ClientError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| ClientError::Connect(format!("cannot read {}: {e}", file.display())))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20);
        self.upload(path, Body::from_stream(stream)).await
    }

    /// `GET path`, its body streamed into `out`; the bytes written.
    pub async fn download_to(
        &self,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let response = self.send(Method::GET, path, None, Body::empty()).await?;
        let expected = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = response.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ClientError::Protocol(format!("the download broke off: {e}")))?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data)
                    .await
                    .map_err(|e| ClientError::Protocol(format!("cannot write: {e}")))?;
                written += data.len() as u64;
            }
        }
        if expected.is_some_and(|n| n != written) {
            return Err(ClientError::Protocol(format!(
                "the download broke off after {written} of {} bytes",
                expected.unwrap_or(0)
            )));
        }
        out.flush()
            .await
            .map_err(|e| ClientError::Protocol(format!("cannot write: {e}")))?;
        Ok(written)
    }

    /// Opens `GET /v1/events?…` (`query` without the `?`) as NDJSON.
    pub async fn events(&self, query: &str) -> Result<EventStream, ClientError> {
        let path = if query.is_empty() {
            "/v1/events".to_owned()
        } else {
            format!("/v1/events?{query}")
        };
        let response = self.send(Method::GET, &path, None, Body::empty()).await?;
        Ok(EventStream {
            body: response.into_body(),
            buf: Vec::new(),
        })
    }

    /// `GET path`, the whole body.
    pub async fn get_bytes(&self, path: &str) -> Result<bytes::Bytes, ClientError> {
        let response = self.send(Method::GET, path, None, Body::empty()).await?;
        read_body(response).await
    }
}

/// The event stream, one event at a time.
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the stream ended (a stream that breaks
    /// off, as when the node drops a client that fell behind, is an
    /// error).
    pub async fn next(&mut self) -> Result<Option<p2pc_node::Event>, ClientError> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                if line.len() <= 1 {
                    continue;
                }
                return serde_json::from_slice(&line).map(Some).map_err(|e| {
                    ClientError::Protocol(format!("an event this client cannot read: {e}"))
                });
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(ClientError::Protocol(format!(
                        "the event stream broke off: {e}"
                    )));
                }
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.buf.extend_from_slice(data);
                    }
                }
            }
        }
    }
}

/// Starts HTTP/1 on a connected stream; its connection task runs until
/// the sender is dropped.
async fn handshake<S>(stream: S) -> Result<SendRequest<Body>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = builder()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Connect(format!("HTTP handshake: {e}")))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Connections read in large pieces: a download is mostly body.
fn builder() -> hyper::client::conn::http1::Builder {
    let mut b = hyper::client::conn::http1::Builder::new();
    b.max_buf_size(4 << 20);
    b
}

async fn read_body(response: Response<Incoming>) -> Result<bytes::Bytes, ClientError> {
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ClientError::Protocol(format!("the answer ({status}) broke off: {e}")))
}

impl From<ClientError> for Problem {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api(p) => p,
            other => Problem::new(StatusCode::BAD_GATEWAY, other.to_string()),
        }
    }
}
