use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use fjall::{Database, PersistMode};
use p2pc_types::Cid;
use serde::Serialize;

use crate::keyspaces::Keyspaces;
use crate::pack::{Loc, Packs};
use crate::{Error, Result};

/// Size of every chunk but a blob's last. 256 KiB: large enough that a
/// 1 GiB blob is only 4096 index entries and BLAKE3 hashes each chunk at
/// full speed, small enough that one chunk fits comfortably in a network
/// message with many in flight. See `docs/design/store.md`.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// What the store knows about a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BlobInfo {
    /// The blob's name: BLAKE3 of its chunk list.
    #[schema(value_type = String)]
    pub id: Cid,
    /// Length in bytes.
    pub len: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// Whether it is pinned.
    pub pinned: bool,
}

/// What a garbage collection removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcStats {
    /// Chunks no blob refers to, removed.
    pub chunks_removed: u64,
    /// Their bytes.
    pub bytes_freed: u64,
}

/// A node's database. Cheap to clone; clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Database,
    pub(crate) ks: Keyspaces,
    pub(crate) packs: Packs,
    poisoned: AtomicBool,
    /// Puts hold this shared while they write chunks; `gc` holds it
    /// exclusively, so it never frees a chunk a put in flight relies on.
    pub(crate) gc_lock: RwLock<()>,
    /// Imports in progress. Their chunks belong to no blob yet, so `gc`
    /// frees nothing while one is open.
    pub(crate) active_imports: std::sync::atomic::AtomicUsize,
}

/// The store's durability rule: a put is acknowledged only after the
/// journal holding the blob's record, and every chunk written before it,
/// is synced to disk (`PersistMode::SyncAll`). Chunks are not synced one by
/// one: until the record is synced the blob does not exist, so a crash
/// leaves either the whole blob or no blob (and some orphaned chunks, which
/// `gc` removes).
pub(crate) const ACK: PersistMode = PersistMode::SyncAll;

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::Open {
            path: dir.to_owned(),
            source: e.into(),
        })?;
        let db = Database::builder(dir)
            .open()
            .map_err(|source| Error::Open {
                path: dir.to_owned(),
                source,
            })?;
        let ks = Keyspaces::open(&db)?;
        let packs = Packs::open(dir.join("packs")).map_err(|e| Error::Open {
            path: dir.to_owned(),
            source: e.into(),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                ks,
                packs,
                poisoned: AtomicBool::new(false),
                gc_lock: RwLock::new(()),
                active_imports: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }

    /// Stores everything `input` yields as one blob, chunk by chunk.
    pub fn put(&self, input: impl Read) -> Result<BlobInfo> {
        self.put_with_progress(input, |_| {})
    }

    /// Like [`put`](Self::put), calling `progress(bytes_so_far)` after each
    /// chunk is written.
    pub fn put_with_progress(
        &self,
        input: impl Read,
        progress: impl FnMut(u64),
    ) -> Result<BlobInfo> {
        self.put_staged(|store, staged| store.stage(input, staged, progress))
    }

    /// Stages one blob with `stage`, then commits it durably.
    fn put_staged(
        &self,
        stage: impl FnOnce(&Self, &mut Staged) -> Result<(Cid, u64, u64)>,
    ) -> Result<BlobInfo> {
        self.check_writable()?;
        let _shared = self.inner.gc_lock.read().unwrap_or_else(|e| e.into_inner());
        let mut staged = Staged::default();
        let (id, len, chunks) = stage(self, &mut staged)?;
        let mut batch = self.inner.db.batch().durability(Some(ACK));
        staged.commit_into(self, &mut batch)?;
        self.write(|| batch.commit())?;
        Ok(BlobInfo {
            id,
            len,
            chunks,
            pinned: self.is_pinned(&id)?,
        })
    }

    /// Writes the chunks of what `input` yields that the store lacks to
    /// `staged`'s pack file, and its blob record to `staged`; nothing is
    /// indexed until [`Staged::commit_into`]. The caller holds `gc_lock`.
    pub(crate) fn stage(
        &self,
        mut input: impl Read,
        staged: &mut Staged,
        mut progress: impl FnMut(u64),
    ) -> Result<(Cid, u64, u64)> {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut record = Vec::with_capacity(8 + 32 * 16);
        record.extend_from_slice(&0u64.to_be_bytes());
        let mut len = 0u64;
        loop {
            let n = read_full(&mut input, &mut buf).map_err(Error::Input)?;
            if n == 0 {
                break;
            }
            self.stage_chunk(&buf[..n], staged, &mut record)?;
            len += n as u64;
            progress(len);
            if n < CHUNK_SIZE {
                break;
            }
        }
        Ok(staged.finish_record(record, len))
    }

    /// [`stage`](Self::stage) for bytes already in memory: no read buffer.
    pub(crate) fn stage_bytes(&self, bytes: &[u8], staged: &mut Staged) -> Result<(Cid, u64, u64)> {
        let mut record = Vec::with_capacity(8 + 32 * (bytes.len() / CHUNK_SIZE + 1));
        record.extend_from_slice(&0u64.to_be_bytes());
        for chunk in bytes.chunks(CHUNK_SIZE) {
            self.stage_chunk(chunk, staged, &mut record)?;
        }
        Ok(staged.finish_record(record, bytes.len() as u64))
    }

    /// Writes `chunk` to the pack unless the store or this batch has it,
    /// and names it in `record`.
    fn stage_chunk(&self, chunk: &[u8], staged: &mut Staged, record: &mut Vec<u8>) -> Result<()> {
        let hash = Cid::of(chunk);
        if !staged.seen.contains(&hash) && !self.inner.ks.chunks.contains_key(hash.as_bytes())? {
            let writer = match &mut staged.pack {
                Some(w) => w,
                None => staged
                    .pack
                    .insert(self.inner.packs.create().map_err(Error::Io)?),
            };
            staged
                .chunks
                .push((hash, writer.append(chunk).map_err(Error::Io)?));
            staged.seen.insert(hash);
        }
        record.extend_from_slice(hash.as_bytes());
        Ok(())
    }

    /// Stores `bytes` as a blob.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<BlobInfo> {
        self.put_staged(|store, staged| store.stage_bytes(bytes, staged))
    }

    /// A reader over blob `id` that verifies every chunk as it reads it,
    /// on the calling thread.
    pub fn get(&self, id: &Cid) -> Result<BlobReader> {
        let record = self.record(id)?;
        Ok(BlobReader {
            store: self.clone(),
            blob: *id,
            record,
            next: 0,
            chunk: Vec::with_capacity(CHUNK_SIZE),
            pos: 0,
            ahead: None,
            parallel: false,
        })
    }

    /// [`get`](Self::get), with the chunks of a large blob read and
    /// verified ahead of the reader by one thread per core: for a reader
    /// that has the machine to itself (`p2pctl blob get` on a stopped
    /// node), which then reads at about twice one core's hashing speed.
    /// A server that shares its cores with the work around each read (the
    /// API's downloads) reads serially: measured, the extra threads made
    /// its downloads slower, not faster.
    pub fn get_ahead(&self, id: &Cid) -> Result<BlobReader> {
        let mut reader = self.get(id)?;
        reader.parallel = true;
        reader.read_ahead();
        Ok(reader)
    }

    /// The whole blob in memory, verified.
    pub fn get_bytes(&self, id: &Cid) -> Result<Vec<u8>> {
        let mut reader = self.get(id)?;
        // Sized from the record, but never past what its chunks can hold
        // (a damaged record's length is not to be trusted with memory).
        let most = (reader.record.hashes.len() as u64).saturating_mul(CHUNK_SIZE as u64);
        let mut out = Vec::with_capacity(usize::try_from(reader.len().min(most)).unwrap_or(0));
        reader
            .read_to_end(&mut out)
            .map_err(|e| reader.take_error(e))?;
        Ok(out)
    }

    /// Whether blob `id` is stored.
    pub fn has(&self, id: &Cid) -> Result<bool> {
        Ok(self.inner.ks.blobs.contains_key(id.as_bytes())?)
    }

    /// What the store knows about blob `id`.
    pub fn info(&self, id: &Cid) -> Result<BlobInfo> {
        let record = self.record(id)?;
        Ok(BlobInfo {
            id: *id,
            len: record.len,
            chunks: record.hashes.len() as u64,
            pinned: self.is_pinned(id)?,
        })
    }

    /// Every blob, ordered by id.
    pub fn list(&self) -> Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        for item in self.inner.ks.blobs.iter() {
            let (key, value) = item.into_inner()?;
            let id = Cid::from_slice(&key).ok_or(Error::CorruptRecord(Cid([0; 32])))?;
            let record = Record::decode(&id, &value)?;
            out.push(BlobInfo {
                id,
                len: record.len,
                chunks: record.hashes.len() as u64,
                pinned: self.is_pinned(&id)?,
            });
        }
        Ok(out)
    }

    /// Protects blob `id` from [`remove`](Self::remove).
    pub fn pin(&self, id: &Cid) -> Result<()> {
        self.check_writable()?;
        self.record(id)?;
        let mut batch = self.inner.db.batch().durability(Some(ACK));
        batch.insert(&self.inner.ks.pins, id.as_bytes(), []);
        self.write(|| batch.commit())
    }

    /// Lifts a pin. Unpinning an unpinned blob is not an error.
    pub fn unpin(&self, id: &Cid) -> Result<()> {
        self.check_writable()?;
        let mut batch = self.inner.db.batch().durability(Some(ACK));
        batch.remove(&self.inner.ks.pins, id.as_bytes());
        self.write(|| batch.commit())
    }

    /// Removes blob `id`; returns false if it was not there. Its chunks stay
    /// until [`gc`](Self::gc), since other blobs may share them.
    pub fn remove(&self, id: &Cid) -> Result<bool> {
        self.check_writable()?;
        if !self.has(id)? {
            return Ok(false);
        }
        if self.is_pinned(id)? {
            return Err(Error::Pinned(*id));
        }
        let mut batch = self.inner.db.batch().durability(Some(ACK));
        batch.remove(&self.inner.ks.blobs, id.as_bytes());
        self.write(|| batch.commit())?;
        Ok(true)
    }

    /// Removes every chunk no blob refers to (left by removed blobs and by
    /// puts that never finished).
    pub fn gc(&self) -> Result<GcStats> {
        self.check_writable()?;
        let _exclusive = self
            .inner
            .gc_lock
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if self.inner.active_imports.load(Ordering::Acquire) > 0 {
            // TODO: track imports' chunks as live instead, so a long
            // download does not hold off collection.
            return Ok(GcStats::default());
        }
        let mut live = std::collections::HashSet::new();
        for item in self.inner.ks.blobs.iter() {
            let (key, value) = item.into_inner()?;
            let id = Cid::from_slice(&key).ok_or(Error::CorruptRecord(Cid([0; 32])))?;
            live.extend(Record::decode(&id, &value)?.hashes);
        }
        let mut stats = GcStats::default();
        let mut live_packs = std::collections::HashSet::new();
        let mut batch = self.inner.db.batch().durability(Some(ACK));
        for item in self.inner.ks.chunks.iter() {
            let (key, value) = item.into_inner()?;
            let Some(hash) = Cid::from_slice(&key) else {
                continue;
            };
            if live.contains(&hash) {
                if let Some(loc) = Loc::decode(&value) {
                    live_packs.insert(loc.pack);
                }
            } else {
                batch.remove(&self.inner.ks.chunks, key);
                stats.chunks_removed += 1;
            }
        }
        self.write(|| batch.commit())?;
        // A pack no live chunk points into holds only dead bytes (or is the
        // leftover of a put that never finished): delete it. Packs that are
        // partly live are kept whole. TODO: rewrite mostly-dead packs once
        // nodes churn through enough data for it to matter.
        for pack in self.inner.packs.ids().map_err(Error::Io)? {
            if !live_packs.contains(&pack) {
                stats.bytes_freed += self.inner.packs.delete(pack).map_err(Error::Io)?;
            }
        }
        Ok(stats)
    }

    /// Stores a chunk without checking its name. For tests that need a
    /// corrupt chunk on disk.
    #[doc(hidden)]
    pub fn put_chunk_unchecked(&self, name: &Cid, bytes: &[u8]) -> Result<()> {
        let mut writer = self.inner.packs.create().map_err(Error::Io)?;
        let loc = writer.append(bytes).map_err(Error::Io)?;
        writer.finish().map_err(Error::Io)?;
        self.write(|| self.inner.ks.chunks.insert(name.as_bytes(), loc.encode()))
    }

    /// The chunk names of blob `id`, in order.
    pub fn chunk_ids(&self, id: &Cid) -> Result<Vec<Cid>> {
        Ok(self.record(id)?.hashes)
    }

    pub(crate) fn is_pinned(&self, id: &Cid) -> Result<bool> {
        Ok(self.inner.ks.pins.contains_key(id.as_bytes())?)
    }

    fn record(&self, id: &Cid) -> Result<Record> {
        let value = self
            .inner
            .ks
            .blobs
            .get(id.as_bytes())?
            .ok_or(Error::NotFound(*id))?;
        Record::decode(id, &value)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.inner.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Runs a write; a failure poisons the store, because fjall cannot say
    /// whether the write reached the disk.
    pub(crate) fn write(&self, op: impl FnOnce() -> fjall::Result<()>) -> Result<()> {
        self.check_writable()?;
        op().map_err(|e| {
            self.inner.poisoned.store(true, Ordering::Release);
            Error::Db(e)
        })
    }

    /// Reads chunk `hash` of `blob` into `buf`, verified.
    pub(crate) fn read_chunk(&self, blob: &Cid, hash: &Cid, buf: &mut Vec<u8>) -> Result<()> {
        let missing = Error::MissingChunk {
            blob: *blob,
            chunk: *hash,
        };
        let corrupt = || Error::CorruptChunk {
            blob: *blob,
            chunk: *hash,
        };
        let value = self.inner.ks.chunks.get(hash.as_bytes())?.ok_or(missing)?;
        let loc = Loc::decode(&value).ok_or_else(corrupt)?;
        match self.inner.packs.read(loc, buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::MissingChunk {
                    blob: *blob,
                    chunk: *hash,
                });
            }
            // A pack shorter than its index says is damaged.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(corrupt()),
            Err(e) => return Err(Error::Io(e)),
        }
        if Cid::of(buf) != *hash {
            return Err(corrupt());
        }
        Ok(())
    }
}

/// Blobs written to a pack file but not yet indexed: one pack and one
/// commit for however many blobs, so many small blobs cost one sync.
#[derive(Default)]
pub(crate) struct Staged {
    pack: Option<crate::pack::PackWriter>,
    chunks: Vec<(Cid, Loc)>,
    seen: std::collections::HashSet<Cid>,
    records: Vec<(Cid, Vec<u8>)>,
}

impl Staged {
    /// Completes a blob record of `len` bytes and keeps it for the commit.
    fn finish_record(&mut self, mut record: Vec<u8>, len: u64) -> (Cid, u64, u64) {
        record[..8].copy_from_slice(&len.to_be_bytes());
        let id = Cid::of(&record[8..]);
        let chunks = ((record.len() - 8) / 32) as u64;
        self.records.push((id, record));
        (id, len, chunks)
    }

    /// Syncs the pack file, then adds the chunks' index entries and the
    /// blob records to `batch`, which the caller commits durably.
    pub(crate) fn commit_into(
        self,
        store: &Store,
        batch: &mut fjall::OwnedWriteBatch,
    ) -> Result<()> {
        if let Some(writer) = self.pack {
            writer.finish().map_err(Error::Io)?;
        }
        let ks = &store.inner.ks;
        for (hash, loc) in &self.chunks {
            batch.insert(&ks.chunks, hash.as_bytes(), loc.encode());
        }
        for (id, record) in self.records {
            batch.insert(&ks.blobs, id.as_bytes(), record);
        }
        Ok(())
    }
}

/// A blob's record: its length and chunk names.
pub(crate) struct Record {
    pub(crate) len: u64,
    pub(crate) hashes: Vec<Cid>,
}

impl Record {
    pub(crate) fn decode(id: &Cid, value: &[u8]) -> Result<Self> {
        if value.len() < 8 || !(value.len() - 8).is_multiple_of(32) || Cid::of(&value[8..]) != *id {
            return Err(Error::CorruptRecord(*id));
        }
        let len = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
        let hashes = value[8..]
            .chunks_exact(32)
            .map(|c| Cid::from_slice(c).expect("32 bytes"))
            .collect();
        Ok(Self { len, hashes })
    }
}

/// Reads a blob chunk by chunk, verifying each chunk before returning any of
/// its bytes; from [`Store::get_ahead`], a large blob's chunks are read and
/// verified ahead on other threads (`readahead`). A verification failure is an `io::Error` of kind
/// `InvalidData` wrapping the store [`Error`].
pub struct BlobReader {
    store: Store,
    blob: Cid,
    record: Record,
    next: usize,
    /// The current chunk, verified; the buffer is reused chunk to chunk.
    chunk: Vec<u8>,
    pos: usize,
    /// Chunks being read and verified ahead on other threads, for a blob
    /// of [`MIN_CHUNKS`](crate::readahead::MIN_CHUNKS) or more.
    ahead: Option<crate::readahead::ReadAhead>,
    /// Read ahead ([`Store::get_ahead`]), from wherever a seek leaves it.
    parallel: bool,
}

impl BlobReader {
    /// The blob's length in bytes.
    pub fn len(&self) -> u64 {
        self.record.len
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.record.len == 0
    }

    /// Starts reading the chunks from `next` on ahead, if this reader
    /// reads ahead and enough remain.
    fn read_ahead(&mut self) {
        let left = self.record.hashes.len().saturating_sub(self.next);
        self.ahead = (self.parallel && left >= crate::readahead::MIN_CHUNKS).then(|| {
            crate::readahead::ReadAhead::start(
                &self.store,
                self.blob,
                self.record.hashes.as_slice().into(),
                self.next,
            )
        });
    }

    /// Moves the reader to byte `offset` (at most the length), so a range
    /// is read without reading what comes before it.
    pub fn seek_to(&mut self, offset: u64) -> Result<()> {
        self.ahead = None;
        let offset = offset.min(self.record.len);
        let chunk = offset / CHUNK_SIZE as u64;
        self.next = usize::try_from(chunk).unwrap_or(usize::MAX);
        self.chunk.clear();
        self.pos = 0;
        let within = (offset % CHUNK_SIZE as u64) as usize;
        if within > 0 {
            // A record's length and its hashes agree unless the database
            // was damaged; then it is an error, not a panic.
            let hash = *self
                .record
                .hashes
                .get(self.next)
                .ok_or(Error::CorruptRecord(self.blob))?;
            self.store.read_chunk(&self.blob, &hash, &mut self.chunk)?;
            self.next += 1;
            self.pos = within.min(self.chunk.len());
        }
        self.read_ahead();
        Ok(())
    }

    /// Recovers the store error behind an `io::Error` this reader returned.
    pub fn take_error(&self, e: io::Error) -> Error {
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(store_error)) => *store_error,
            Some(Err(other)) => Error::Input(io::Error::other(other)),
            None => Error::CorruptRecord(self.blob),
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            let Some(hash) = self.record.hashes.get(self.next) else {
                return Ok(0);
            };
            let ahead = self
                .ahead
                .as_mut()
                .and_then(|a| a.take(self.next, &mut self.chunk));
            let read = match ahead {
                Some(r) => r,
                None => self.store.read_chunk(&self.blob, hash, &mut self.chunk),
            };
            if read.is_err() {
                // Read again, the same chunk fails the same way, in this
                // thread: the workers are done with this blob.
                self.ahead = None;
            }
            read.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.next += 1;
            self.pos = 0;
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Fills `buf` from `r` unless the input ends first; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
