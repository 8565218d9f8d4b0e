//! The local control channel: how `p2pctl` talks to a running node.
//!
//! A Unix socket, `<data_dir>/control.sock`, created mode 0600, so only
//! the node's own user can connect; and on top of that a 32-byte token in
//! `<data_dir>/control.token` (also 0600, written at `node init`) that
//! every request carries, so a socket exposed by mistake (a bind mount, a
//! shared directory) is still not enough.
//!
//! Each request is one line of JSON, `{"token": "...", "cmd": "...", ...}`,
//! answered by one line, `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": "..."}`. A connection may carry many requests.
//! Lines over 1 MiB are refused.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use p2pc_net::PeerId;
use p2pc_store::Cid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tracing::{debug, warn};

use crate::jobs::Submission;
use crate::node::{ComputeNode, Shared};
use crate::{Error, Result};

/// The socket's file name in the data directory.
pub const SOCKET_FILE: &str = "control.sock";
/// The token's file name in the data directory.
pub const TOKEN_FILE: &str = "control.token";
const MAX_LINE: usize = 1 << 20;

/// Writes a fresh token to `<dir>/control.token` unless one is there.
pub fn ensure_token(dir: &Path) -> Result<()> {
    let path = dir.join(TOKEN_FILE);
    if path.exists() {
        return Ok(());
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| Error::Io(format!("no randomness: {e}")))?;
    write_private(&path, hex::encode(raw).as_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}

fn read_token(dir: &Path) -> Result<String> {
    let path = dir.join(TOKEN_FILE);
    let token = std::fs::read_to_string(&path).map_err(|e| {
        Error::Io(format!(
            "cannot read the control token {}: {e} (run `p2pctl node init` first)",
            path.display()
        ))
    })?;
    Ok(token.trim().to_owned())
}

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
        let shared = self.shared.clone();
        Ok(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(shared, token, stream).await {
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

async fn connection(
    shared: Arc<Shared>,
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
            json!({"ok": false, "error": "request line over 1 MiB"})
        } else {
            match serde_json::from_slice::<Value>(&line) {
                Ok(request) => handle(&shared, &token, request).await,
                Err(e) => json!({"ok": false, "error": format!("malformed request: {e}")}),
            }
        };
        let mut out = serde_json::to_vec(&answer).expect("JSON values serialise");
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

async fn handle(shared: &Arc<Shared>, token: &str, request: Value) -> Value {
    let given = request.get("token").and_then(Value::as_str).unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        warn!("control request with a wrong token");
        return json!({"ok": false, "error": "wrong or missing control token"});
    }
    match command(shared, &request).await {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

fn field<'a>(request: &'a Value, name: &str) -> Result<&'a str> {
    request
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Control(format!("missing field {name:?}")))
}

fn cid(request: &Value, name: &str) -> Result<Cid> {
    let text = field(request, name)?;
    text.parse()
        .map_err(|_| Error::Control(format!("{text:?} is not a blob id (64 hex digits)")))
}

fn peers(request: &Value, name: &str) -> Result<Vec<PeerId>> {
    let Some(list) = request.get(name).and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|v| {
            let s = v.as_str().unwrap_or("");
            s.parse()
                .map_err(|_| Error::Control(format!("{s:?} is not a peer id")))
        })
        .collect()
}

fn read_file(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io(format!("cannot read {path}: {e}")))
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

async fn command(shared: &Arc<Shared>, request: &Value) -> Result<Value> {
    match field(request, "cmd")? {
        "status" => Ok(to_json(&shared.status().await?)),
        "peers" => Ok(to_json(&shared.client.peers().await?)),
        "put" => {
            let bytes = read_file(field(request, "path")?)?;
            let info = shared.store.put_bytes(&bytes)?;
            shared.announce(info.id);
            Ok(to_json(&info))
        }
        "fetch" => {
            let cid = cid(request, "cid")?;
            let hints = peers(request, "from")?;
            let stats = crate::fetch::fetch(&shared.client, &shared.store, cid, &hints).await?;
            Ok(to_json(&stats))
        }
        "export" => {
            let path = PathBuf::from(field(request, "path")?);
            let tmp = path.with_extension("p2pc-partial");
            let mut file = std::fs::File::create(&tmp)
                .map_err(|e| Error::Io(format!("cannot create {}: {e}", tmp.display())))?;
            let inline = request
                .get("job")
                .and_then(Value::as_str)
                .and_then(|job| shared.jobs.inline_output(job));
            let n = match inline {
                Some(bytes) => {
                    file.write_all(&bytes)
                        .map_err(|e| Error::Io(format!("cannot write {}: {e}", tmp.display())))?;
                    bytes.len() as u64
                }
                None => {
                    let mut reader = shared.store.get(&cid(request, "cid")?)?;
                    std::io::copy(&mut reader, &mut file)
                        .map_err(|e| Error::Io(format!("cannot write {}: {e}", tmp.display())))?
                }
            };
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::Io(format!("cannot rename to {}: {e}", path.display())))?;
            Ok(json!({"bytes": n, "path": path}))
        }
        "submit" => {
            let bundle = read_file(field(request, "bundle")?)?;
            let input = match request.get("input").and_then(Value::as_str) {
                Some(p) => read_file(p)?,
                None => Vec::new(),
            };
            let to = match request.get("to").and_then(Value::as_str) {
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| Error::Control(format!("{s:?} is not a peer id")))?,
                ),
                None => None,
            };
            let timeout = Duration::from_millis(
                request
                    .get("timeout_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(60_000),
            );
            let args = match request.get("args") {
                None => Vec::new(),
                Some(v) => serde_json::from_value::<Vec<String>>(v.clone())
                    .map_err(|_| Error::Control("args is not a list of strings".into()))?,
            };
            let id = shared
                .submit(Submission {
                    bundle,
                    input,
                    to,
                    timeout,
                    args,
                })
                .await?;
            Ok(json!({"job": id}))
        }
        "job" => Ok(to_json(&shared.job(field(request, "job")?)?)),
        "wait" => {
            let timeout = Duration::from_millis(
                request
                    .get("timeout_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(60_000),
            );
            Ok(to_json(
                &shared.wait(field(request, "job")?, timeout).await?,
            ))
        }
        cmd if cmd.starts_with("ledger_") => shared.ledger_command(request.clone()).await,
        other => Err(Error::Control(format!("unknown command {other:?}"))),
    }
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

    /// Sends `request` (a JSON object with `cmd`) and returns its result,
    /// waiting at most `timeout`.
    pub fn call(&mut self, mut request: Value, timeout: Duration) -> Result<Value> {
        request["token"] = Value::String(self.token.clone());
        let mut line = serde_json::to_vec(&request).expect("JSON values serialise");
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
        let value: Value = serde_json::from_str(&answer)
            .map_err(|e| Error::Io(format!("malformed answer from the node: {e}")))?;
        if value["ok"].as_bool() == Some(true) {
            Ok(value["result"].clone())
        } else {
            Err(Error::Control(
                value["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned(),
            ))
        }
    }
}
