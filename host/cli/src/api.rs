//! How `p2pctl` talks to a running node: the gateway's `/v1` routes over
//! the node's Unix socket, through `p2pc_api::Client`, each call made
//! blocking on a small runtime of its own.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A connection to a running node's API.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    client: p2pc_api::Client,
}

/// How long an ordinary call may take.
pub const ASK: Duration = Duration::from_secs(30);

impl Api {
    /// Connects to the node whose directory is `dir`.
    pub fn connect(dir: &Path) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let client = p2pc_api::Client::for_node(dir)?.with_timeout(ASK);
        Ok(Self { runtime, client })
    }

    /// `GET path`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        Ok(self.runtime.block_on(self.client.get(path))?)
    }

    /// `GET path`, waiting up to `timeout` for the answer.
    pub fn get_within<T: DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        Ok(self.runtime.block_on(async {
            tokio::time::timeout(timeout, self.client.get(path))
                .await
                .map_err(|_| p2pc_api::ClientError::Timeout(timeout))?
        })?)
    }

    /// Follows `GET /v1/events?query`, calling `each` for every event
    /// until it returns `false` or the stream ends.
    pub fn events(
        &self,
        query: &str,
        mut each: impl FnMut(p2pc_node::Event) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            let mut stream = self.client.events(query).await?;
            while let Some(event) = stream.next().await? {
                if !each(event)? {
                    break;
                }
            }
            Ok(())
        })
    }

    /// `POST path` with a JSON body.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        Ok(self.runtime.block_on(self.client.post(path, body))?)
    }

    /// `PUT path`.
    pub fn put<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        Ok(self.runtime.block_on(self.client.put(path))?)
    }

    /// `DELETE path`.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        Ok(self.runtime.block_on(self.client.delete(path))?)
    }

    /// Streams the file at `file` to `POST path`.
    pub fn upload_file<T: DeserializeOwned>(&self, path: &str, file: &Path) -> anyhow::Result<T> {
        Ok(self.runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(24 * 3600),
                self.client.upload_file(path, file),
            )
            .await
            .map_err(|_| p2pc_api::ClientError::Timeout(Duration::from_secs(24 * 3600)))?
        })?)
    }

    /// Streams `GET path` into the file at `dest`, replaced atomically;
    /// the bytes written.
    pub fn download_file(&self, path: &str, dest: &Path) -> anyhow::Result<u64> {
        let mut written = 0;
        crate::context::write_atomically(dest, |f| {
            let file = f.try_clone().context("cannot reopen the temporary file")?;
            written = self.runtime.block_on(async {
                let mut out =
                    tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
                self.client.download_to(path, &mut out).await
            })?;
            Ok(())
        })?;
        Ok(written)
    }

    /// Streams `GET path` to standard output; the bytes written.
    pub fn download_stdout(&self, path: &str) -> anyhow::Result<u64> {
        Ok(self.runtime.block_on(async {
            let mut out = tokio::io::stdout();
            self.client.download_to(path, &mut out).await
        })?)
    }
}

/// `text` as one path segment: anything but letters, digits, `-`, `_`
/// and `.` percent-encoded, so a mistyped id is an error from the node,
/// never a different route.
pub fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
