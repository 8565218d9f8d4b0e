//! Downloading a blob from the peers that hold it: the getting side of
//! `/p2pc/chunk/1`.
//!
//! The manifest comes from the first provider whose manifest hashes to the
//! blob's name. Chunks are then requested from every provider at once, a
//! window of requests in flight per provider. Each chunk is checked against
//! its name before it is written; a provider that sends one bad byte is
//! dropped for the rest of the download and its chunks go to the others.
//! Accepted chunks are flushed to disk as the download goes, so a download
//! cut short resumes where it stopped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use p2pc_net::{ChunkRequest, ChunkStatus, Client, PeerId};
use p2pc_store::{Cid, Store};
use tracing::{debug, warn};

/// Requests in flight to one provider: 16 MiB of chunks. 16 and 32
/// measured slower on loopback (see docs/benchmarks.md).
pub const WINDOW: usize = 64;
/// Chunks asked for in one request. One: with Yamux's 256 KiB stream
/// window, four-chunk responses measured 0.39x plain TCP against 0.61x.
const BATCH: usize = 1;
/// Chunks between flushes of a download's progress to disk.
const FLUSH_EVERY: usize = 1024;

/// What a download did.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FetchStats {
    /// The blob's length.
    pub bytes: u64,
    /// Chunks received over the network (the rest were already here).
    pub chunks_fetched: usize,
    /// Their bytes.
    #[serde(default)]
    pub bytes_fetched: u64,
    /// Providers that sent at least one good chunk.
    pub peers_used: usize,
    /// Providers dropped for sending data that failed verification.
    pub bad_peers: Vec<String>,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Nobody offered the blob.
    #[error("no provider of blob {0} was found")]
    NoProviders(Cid),
    /// No provider sent a valid manifest.
    #[error("blob {cid}: none of {tried} peer(s) asked could send its manifest{bad}")]
    NoManifest {
        /// The blob.
        cid: Cid,
        /// Peers asked.
        tried: usize,
        /// Note on peers that sent bad data.
        bad: String,
    },
    /// Providers were found but none finished the download.
    #[error(
        "blob {cid}: {missing} of {total} chunks could not be fetched from {tried} provider(s){bad}"
    )]
    Incomplete {
        /// The blob.
        cid: Cid,
        /// Chunks still missing (kept chunks resume next time).
        missing: usize,
        /// Chunks in all.
        total: usize,
        /// Providers tried.
        tried: usize,
        /// Note on providers that sent bad data.
        bad: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] p2pc_store::Error),
}

/// Fetches blob `cid` into `store` from `hints` and the providers the DHT
/// names. Returns at once if the blob is already here.
pub async fn fetch(
    client: &Client,
    store: &Store,
    cid: Cid,
    hints: &[PeerId],
) -> Result<FetchStats, FetchError> {
    if store.has(&cid)? {
        return Ok(FetchStats {
            bytes: store.info(&cid)?.len,
            ..FetchStats::default()
        });
    }
    let me = client.peer_id();
    let mut peers: Vec<PeerId> = Vec::new();
    for p in hints {
        if *p != me && !peers.contains(p) {
            peers.push(*p);
        }
    }
    // Hinted peers are asked first; the DHT adds the rest.
    match tokio::time::timeout(Duration::from_secs(10), client.providers(cid)).await {
        Ok(Ok(found)) => {
            for p in found {
                if p != me && !peers.contains(&p) {
                    peers.push(p);
                }
            }
        }
        Ok(Err(e)) => debug!(%cid, error = %e, "provider lookup failed"),
        Err(_) => debug!(%cid, "provider lookup timed out"),
    }
    if peers.is_empty() {
        return Err(FetchError::NoProviders(cid));
    }

    let mut bad: HashSet<PeerId> = HashSet::new();
    let mut import = None;
    for peer in &peers {
        let request = ChunkRequest {
            blob: cid.as_bytes().to_vec(),
            chunks: Vec::new(),
        };
        match client.request_chunk(*peer, request).await {
            Ok(r) if r.status == ChunkStatus::Ok as i32 => match store.import(cid, &r.manifest)? {
                Ok(i) => {
                    import = Some(i);
                    break;
                }
                Err(rejected) => {
                    warn!(%peer, %cid, %rejected, "provider sent a bad manifest");
                    bad.insert(*peer);
                }
            },
            Ok(r) => debug!(%peer, status = r.status, "provider cannot serve the manifest"),
            Err(e) => debug!(%peer, error = %e, "manifest request failed"),
        }
    }
    let Some(mut import) = import else {
        return Err(FetchError::NoManifest {
            cid,
            tried: peers.len(),
            bad: bad_note(&bad),
        });
    };

    let total = import.chunks().len();
    let mut queue: VecDeque<Cid> = import.missing().into();
    let mut active: Vec<PeerId> = peers.iter().copied().filter(|p| !bad.contains(p)).collect();
    let mut in_flight: HashMap<PeerId, usize> = HashMap::new();
    let mut used: HashSet<PeerId> = HashSet::new();
    let mut pending = FuturesUnordered::new();
    let mut fetched = 0usize;
    let mut fetched_bytes = 0u64;
    let mut since_flush = 0usize;

    loop {
        // Keep every provider's window full.
        'fill: loop {
            let mut sent = false;
            for peer in &active {
                if queue.is_empty() {
                    break 'fill;
                }
                let n = in_flight.entry(*peer).or_insert(0);
                if *n < WINDOW {
                    let take = queue.len().min(BATCH);
                    let hashes: Vec<Cid> = queue.drain(..take).collect();
                    *n += 1;
                    let client = client.clone();
                    let peer = *peer;
                    pending.push(async move {
                        let request = ChunkRequest {
                            blob: cid.as_bytes().to_vec(),
                            chunks: hashes.iter().map(|h| h.as_bytes().to_vec()).collect(),
                        };
                        (peer, hashes, client.request_chunk(peer, request).await)
                    });
                    sent = true;
                }
            }
            if !sent {
                break;
            }
        }
        let Some((peer, hashes, result)) = pending.next().await else {
            break;
        };
        if let Some(n) = in_flight.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
        let still_active = active.contains(&peer);
        let requeue = |queue: &mut VecDeque<Cid>, hashes: &[Cid]| {
            for h in hashes.iter().rev() {
                queue.push_front(*h);
            }
        };
        match result {
            Ok(r) if r.status == ChunkStatus::Ok as i32 && r.chunks.len() == hashes.len() => {
                for (i, (hash, bytes)) in hashes.iter().zip(&r.chunks).enumerate() {
                    match import.add(hash, bytes)? {
                        Ok(added) => {
                            if added {
                                fetched += 1;
                                fetched_bytes += bytes.len() as u64;
                                since_flush += 1;
                            }
                            used.insert(peer);
                        }
                        Err(rejected) => {
                            warn!(%peer, %cid, %rejected, "provider sent corrupt data; dropping it");
                            bad.insert(peer);
                            active.retain(|p| *p != peer);
                            requeue(&mut queue, &hashes[i..]);
                            break;
                        }
                    }
                }
            }
            Ok(r) => {
                debug!(%peer, status = r.status, "provider cannot serve a chunk");
                active.retain(|p| *p != peer);
                requeue(&mut queue, &hashes);
            }
            Err(e) => {
                if still_active {
                    debug!(%peer, error = %e, "chunk request failed; dropping provider");
                }
                active.retain(|p| *p != peer);
                requeue(&mut queue, &hashes);
            }
        }
        if since_flush >= FLUSH_EVERY {
            import = flush(import).await?;
            since_flush = 0;
        }
        if queue.is_empty() && pending.is_empty() {
            break;
        }
        if active.is_empty() && pending.is_empty() {
            break;
        }
    }

    if !import.complete() {
        let missing = import.missing().len();
        flush(import).await?;
        return Err(FetchError::Incomplete {
            cid,
            missing,
            total,
            tried: peers.len(),
            bad: bad_note(&bad),
        });
    }
    // The final sync (pack file, then the index) off the async threads.
    let bytes = tokio::task::spawn_blocking(move || import.finish())
        .await
        .map_err(|e| FetchError::Store(p2pc_store::Error::Io(std::io::Error::other(e))))??;
    // Announce the copy; a lone node has nobody to tell, which is fine.
    if let Err(e) = client.provide(cid).await {
        debug!(%cid, error = %e, "could not announce the fetched blob");
    }
    let mut bad_peers: Vec<String> = bad.iter().map(|p| p.to_string()).collect();
    bad_peers.sort();
    Ok(FetchStats {
        bytes,
        chunks_fetched: fetched,
        bytes_fetched: fetched_bytes,
        peers_used: used.len(),
        bad_peers,
    })
}

/// [`fetch`], counting the bytes received in the node's metrics.
pub(crate) async fn fetch_counted(
    client: &Client,
    store: &Store,
    cid: Cid,
    hints: &[PeerId],
    metrics: &crate::metrics::Metrics,
) -> Result<FetchStats, FetchError> {
    let stats = fetch(client, store, cid, hints).await?;
    metrics.blob_bytes("in", stats.bytes_fetched);
    Ok(stats)
}

/// Syncs what an import holds so far, off the async threads.
async fn flush(mut import: p2pc_store::Import) -> Result<p2pc_store::Import, FetchError> {
    tokio::task::spawn_blocking(move || import.flush().map(|()| import))
        .await
        .map_err(|e| FetchError::Store(p2pc_store::Error::Io(std::io::Error::other(e))))?
        .map_err(FetchError::from)
}

fn bad_note(bad: &HashSet<PeerId>) -> String {
    if bad.is_empty() {
        String::new()
    } else {
        format!("; {} sent corrupt data and was dropped", bad.len())
    }
}

/// Answers one chunk request from the local store.
pub(crate) fn serve(store: &Store, request: &ChunkRequest) -> p2pc_net::ChunkResponse {
    use p2pc_net::ChunkResponse;
    let Some(blob) = Cid::from_slice(&request.blob) else {
        return ChunkResponse::with_status(ChunkStatus::BadRequest);
    };
    if request.chunks.len() > p2pc_net::MAX_CHUNKS_PER_REQUEST {
        return ChunkResponse::with_status(ChunkStatus::BadRequest);
    }
    if request.chunks.is_empty() {
        return match store.manifest(&blob) {
            Ok(m) => ChunkResponse {
                status: ChunkStatus::Ok as i32,
                manifest: m.into(),
                chunks: Vec::new(),
            },
            Err(p2pc_store::Error::NotFound(_)) => {
                ChunkResponse::with_status(ChunkStatus::NotFound)
            }
            Err(_) => ChunkResponse::with_status(ChunkStatus::Unavailable),
        };
    }
    let mut chunks = Vec::with_capacity(request.chunks.len());
    for name in &request.chunks {
        let Some(hash) = Cid::from_slice(name) else {
            return ChunkResponse::with_status(ChunkStatus::BadRequest);
        };
        match store.chunk(&hash) {
            Ok(bytes) => chunks.push(bytes.into()),
            Err(p2pc_store::Error::MissingChunk { .. }) => {
                return ChunkResponse::with_status(ChunkStatus::NotFound);
            }
            Err(_) => return ChunkResponse::with_status(ChunkStatus::Unavailable),
        }
    }
    ChunkResponse {
        status: ChunkStatus::Ok as i32,
        manifest: bytes::Bytes::new(),
        chunks,
    }
}
