//! The local control channel: how `p2pctl` talks to a running node.
//!
//! A Unix socket, `<data_dir>/control.sock`, created mode 0600, so only
//! the node's own user can connect; and on top of that a 32-byte token in
//! `<data_dir>/control.token` (also 0600, written at `node init`) that
//! every request carries, so a socket exposed by mistake (a bind mount, a
//! shared directory) is still not enough.
//!
//! Each request is one line of JSON, `{"token": "...", "request": {...}}`
//! with a typed [`Request`], answered by one line, `{"ok": true, "result":
//! ...}` or `{"ok": false, "error": "..."}`; each request's result has a
//! type of its own (see [`crate::api`]). A connection may carry many
//! requests. Lines over 1 MiB are refused.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use p2pc_net::PeerId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tracing::{debug, info, warn};

use crate::api::{Exported, Request, Submitted};
use crate::handle::{ensure_token, read_token};
use crate::network::Submission;
use crate::node::{ComputeNode, Services, put_file};
use crate::{Error, Result};

/// The old channel's socket, beside the gateway's.
const SOCKET_FILE: &str = "control.sock";
const MAX_LINE: usize = 1 << 20;

impl ComputeNode {
    /// Serves the control channel in `data_dir` until the node stops.
    pub fn serve_control(&self) -> Result<tokio::task::JoinHandle<()>> {
        let dir = self.data_dir();
        ensure_token(&dir)?;
        let token = read_token(&dir)?;
        let path = dir.join(SOCKET_FILE);
        // A socket left by a node that died is in the way; a live node's
        // socket answers, and then this node must not start.
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(Error::Io(format!(
                    "another node is already running on {}",
                    dir.display()
                )));
            }
            let _ = std::fs::remove_file(&path);
        }
        let listener = {
            // Created under a restrictive umask so it is never briefly open
            // to other users.
            let old = unsafe_umask(0o177);
            let l = UnixListener::bind(&path);
            unsafe_umask(old);
            l.map_err(|e| Error::Io(format!("cannot listen on {}: {e}", path.display())))?
        };
        let services = self.services.clone();
        Ok(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let services = services.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(services, token, stream).await {
                        debug!(error = %e, "control connection ended");
                    }
                });
            }
        }))
    }
}

fn unsafe_umask(mask: u32) -> u32 {
    // SAFETY: umask only swaps the process's file mode mask.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// One request line.
#[derive(Serialize, Deserialize)]
struct Line {
    token: String,
    request: Request,
}

/// One answer line.
#[derive(Serialize, Deserialize)]
struct Answer<T> {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Answer<Value> {
    fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(message.into()),
        }
    }
}

async fn connection(
    services: Services,
    token: String,
    stream: tokio::net::UnixStream,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let answer = if line.len() > MAX_LINE {
            Answer::error("request line over 1 MiB")
        } else {
            handle(&services, &token, &line).await
        };
        let mut out = serde_json::to_vec(&answer).expect("answers serialise");
        out.push(b'\n');
        write.write_all(&out).await?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(services: &Services, token: &str, line: &[u8]) -> Answer<Value> {
    // The token is checked before the request is looked at, so a caller
    // without it learns nothing about what requests exist.
    #[derive(Deserialize)]
    struct Token {
        #[serde(default)]
        token: String,
    }
    let given = serde_json::from_slice::<Token>(line)
        .map(|t| t.token)
        .unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        warn!("control request with a wrong token");
        return Answer::error("wrong or missing control token");
    }
    let request = match serde_json::from_slice::<Line>(line) {
        Ok(l) => l.request,
        Err(e) => return Answer::error(format!("malformed request: {e}")),
    };
    match command(services, request).await {
        Ok(result) => Answer {
            ok: true,
            result: Some(result),
            error: None,
        },
        Err(e) => Answer::error(e.to_string()),
    }
}

fn peers(list: &[String]) -> Result<Vec<PeerId>> {
    list.iter()
        .map(|s| {
            s.parse()
                .map_err(|_| Error::Control(format!("{s:?} is not a peer id")))
        })
        .collect()
}

async fn read_file(path: PathBuf) -> Result<Vec<u8>> {
    tokio::fs::read(&path)
        .await
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

async fn command(services: &Services, request: Request) -> Result<Value> {
    Ok(match request {
        Request::Status => to_json(&services.status().await?),
        Request::Drain => {
            let running = services.worker.drain();
            info!(running, "draining: no new task is taken");
            to_json(&crate::api::Drained {
                running: running as u64,
            })
        }
        Request::Peers => to_json(&services.client.peers().await?),
        Request::Put { path } => to_json(&put_file(services, path).await?),
        Request::Fetch { cid, from } => {
            let hints = peers(&from)?;
            to_json(&crate::fetch::fetch(&services.client, &services.store, cid, &hints).await?)
        }
        Request::Export { cid, job, path } => {
            let output = match (job, cid) {
                (Some(job), _) => Some(services.network.output(&job).await?),
                (None, Some(_)) => None,
                (None, None) => {
                    return Err(Error::Control("name a job or a blob to export".into()));
                }
            };
            let store = services.store.clone();
            let exported = crate::blocking(move || export(&store, cid, output, path)).await?;
            to_json(&exported)
        }
        Request::Submit(s) => {
            let bundle = read_file(s.bundle).await?;
            let input = match s.input {
                Some(p) => read_file(p).await?,
                None => Vec::new(),
            };
            let to = match s.to {
                Some(t) => Some(
                    t.parse()
                        .map_err(|_| Error::Control(format!("{t:?} is not a peer id")))?,
                ),
                None => None,
            };
            let validation = match s.validation {
                Some(v) => Some(v.parse().map_err(|e: String| Error::Control(e))?),
                None => None,
            };
            if s.min_reputation.is_some_and(|m| !(0.0..=1.0).contains(&m)) {
                return Err(Error::Control(
                    "--min-reputation is a score between 0 and 1".into(),
                ));
            }
            let job = services
                .network
                .submit(Submission {
                    bundle,
                    input,
                    to,
                    timeout: Duration::from_millis(s.timeout_ms),
                    args: s.args,
                    call: Default::default(),
                    budget: s.budget,
                    max_price: s.max_price,
                    window: s.window_ms.map(Duration::from_millis),
                    shards: s.shards,
                    lease: None,
                    max_attempts: None,
                    validation,
                    min_reputation: s.min_reputation,
                })
                .await?;
            to_json(&Submitted { job })
        }
        Request::Job { job } => to_json(&services.network.job(&job).await?),
        Request::Wait { job, timeout_ms } => to_json(
            &services
                .network
                .wait(&job, Duration::from_millis(timeout_ms))
                .await?,
        ),
        Request::Logs { job } => to_json(&services.network.logs(&job).await?),
        Request::Cancel { job } => {
            services.network.cancel(&job)?;
            to_json(&serde_json::json!({}))
        }
        Request::Jobs { limit } => to_json(&services.network.jobs(limit).await?),
        Request::Ledger(r) => to_json(&services.replica()?.command(r).await?),
        Request::Offers => to_json(&services.offers()),
        Request::Price => to_json(&services.price()),
        Request::Reputation { peer } => {
            let peer = match peer {
                Some(p) => Some(
                    p.parse()
                        .map_err(|_| Error::Control(format!("{p:?} is not a peer id")))?,
                ),
                None => None,
            };
            to_json(&services.reputation(peer.as_ref()))
        }
    })
}

/// Writes `output` (a job's), or else blob `cid`, to `path` by way of a
/// temporary file beside it.
fn export(
    store: &p2pc_store::Store,
    cid: Option<p2pc_store::Cid>,
    output: Option<bytes::Bytes>,
    path: PathBuf,
) -> Result<Exported> {
    let tmp = path.with_extension("p2pc-partial");
    let mut file = std::fs::File::create(&tmp)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", tmp.display())))?;
    let written = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", tmp.display()));
    let bytes = match (output, cid) {
        (Some(bytes), _) => {
            file.write_all(&bytes).map_err(written)?;
            bytes.len() as u64
        }
        (None, Some(cid)) => {
            let mut reader = store.get(&cid)?;
            std::io::copy(&mut reader, &mut file).map_err(written)?
        }
        (None, None) => return Err(Error::Control("nothing to export".into())),
    };
    std::fs::rename(&tmp, &path)
        .map_err(|e| Error::Io(format!("cannot rename to {}: {e}", path.display())))?;
    Ok(Exported { bytes, path })
}

/// A connection to a running node's control channel.
pub struct Control {
    reader: BufReader<std::os::unix::net::UnixStream>,
    token: String,
}

impl Control {
    /// Connects to the node whose data directory is `dir`.
    pub fn connect(dir: &Path) -> Result<Self> {
        let token = read_token(dir)?;
        let path = dir.join(SOCKET_FILE);
        let stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
            Error::Io(format!(
                "no node is running on {} ({e}); start one with `p2pctl node start`",
                dir.display()
            ))
        })?;
        Ok(Self {
            reader: BufReader::new(stream),
            token,
        })
    }

    /// Sends `request` and returns its typed result, waiting at most
    /// `timeout`.
    pub fn call<T: DeserializeOwned>(&mut self, request: Request, timeout: Duration) -> Result<T> {
        let line = Line {
            token: self.token.clone(),
            request,
        };
        let mut line = serde_json::to_vec(&line).expect("requests serialise");
        line.push(b'\n');
        let stream = self.reader.get_mut();
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.write_all(&line))
            .map_err(|e| Error::Io(format!("control channel: {e}")))?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer).map_err(|e| {
            Error::Io(if e.kind() == std::io::ErrorKind::WouldBlock {
                format!("the node did not answer within {timeout:?}")
            } else {
                format!("control channel: {e}")
            })
        })?;
        if answer.is_empty() {
            return Err(Error::Io("the node closed the control channel".into()));
        }
        let answer: Answer<T> = serde_json::from_str(&answer).map_err(|e| {
            Error::Io(format!(
                "the node's answer is not what this p2pctl expects ({e}); is the node the same version?"
            ))
        })?;
        match (answer.ok, answer.result) {
            (true, Some(result)) => Ok(result),
            (true, None) => Err(Error::Io("the node's answer has no result".into())),
            (false, _) => Err(Error::Control(
                answer.error.unwrap_or_else(|| "unknown error".to_owned()),
            )),
        }
    }
}
