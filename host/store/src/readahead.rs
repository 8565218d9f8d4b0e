//! Verified reads ahead of the reader, on every core: a large blob's
//! chunks are read from their packs and hashed by a few threads while the
//! caller consumes the ones before, so one reader gets close to BLAKE3's
//! multi-threaded speed rather than its one-core speed.
//!
//! Memory is bounded by buffers that double as permits: a worker takes a
//! free buffer before it claims the next chunk, and the reader returns each
//! buffer once its bytes are consumed, so at most `window` chunks are in
//! memory whatever the pace of either side. Chunks are claimed in order,
//! so the one the reader waits for is always held by a worker that has a
//! buffer: no deadlock. Results are handed out in order, errors included:
//! the bytes before a corrupt chunk are still read, then the error.
//!
//! Dropping the reader stops the workers: their channels close.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use p2pc_types::Cid;

use crate::Result;
use crate::blob::Store;

/// Chunks from this many on, a read goes ahead in the background; a
/// smaller blob costs more to start threads for than it gains.
pub(crate) const MIN_CHUNKS: usize = 4;

type Done = (usize, Result<()>, Vec<u8>);

pub(crate) struct ReadAhead {
    /// Verified chunks (and errors) as workers finish them.
    done: Receiver<Done>,
    /// Ones that came before their turn.
    early: BTreeMap<usize, (Result<()>, Vec<u8>)>,
    /// Buffers the reader is through with: permits to read one more.
    free: SyncSender<Vec<u8>>,
}

impl ReadAhead {
    /// Starts reading `hashes[from..]` of `blob` ahead, verified.
    pub(crate) fn start(store: &Store, blob: Cid, hashes: Arc<[Cid]>, from: usize) -> Self {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let window = workers * 2 + 2;
        let (free, permits) = sync_channel::<Vec<u8>>(window);
        for _ in 0..window {
            free.send(Vec::new())
                .expect("the channel has room for every buffer");
        }
        let permits = Arc::new(std::sync::Mutex::new(permits));
        let (finished, done) = sync_channel::<Done>(window);
        let next = Arc::new(AtomicUsize::new(from));
        for _ in 0..workers {
            let (store, hashes, next, permits, finished) = (
                store.clone(),
                hashes.clone(),
                next.clone(),
                permits.clone(),
                finished.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("p2pc-read".into())
                .spawn(move || {
                    loop {
                        // A permit first, then the next chunk: the chunk
                        // waited on always has its buffer.
                        let buf = match permits.lock() {
                            Ok(p) => p.recv(),
                            Err(_) => return,
                        };
                        let Ok(mut buf) = buf else { return };
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(hash) = hashes.get(i) else { return };
                        let r = store.read_chunk(&blob, hash, &mut buf);
                        if finished.send((i, r, buf)).is_err() {
                            return;
                        }
                    }
                });
            // No thread: the reader falls back to reading in its own.
            if spawned.is_err() {
                break;
            }
        }
        Self {
            done,
            early: BTreeMap::new(),
            free,
        }
    }

    /// Chunk `i`, verified, into `chunk` (whose old buffer goes back to
    /// the workers). `None` when no worker is left to read it.
    pub(crate) fn take(&mut self, i: usize, chunk: &mut Vec<u8>) -> Option<Result<()>> {
        let (result, buf) = match self.early.remove(&i) {
            Some(x) => x,
            None => loop {
                let (j, r, buf) = self.done.recv().ok()?;
                if j == i {
                    break (r, buf);
                }
                self.early.insert(j, (r, buf));
            },
        };
        let old = std::mem::replace(chunk, buf);
        // A full channel or gone workers: the buffer is simply dropped.
        let _ = self.free.try_send(old);
        Some(result)
    }
}
