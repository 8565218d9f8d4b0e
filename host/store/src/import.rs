//! Building a blob from chunks that arrive one by one, in any order, from
//! untrusted sources: the receiving side of a network download.
//!
//! The blob's manifest (its length and chunk list) is checked against the
//! blob's name before anything is accepted, and every chunk against its own
//! name before it is written. Chunks already present are skipped, so a
//! download that was interrupted resumes where it stopped once its chunks
//! were [`flush`](Import::flush)ed.

use std::collections::HashMap;

use p2pc_types::Cid;

use crate::blob::{ACK, Record, Store};
use crate::pack::{Loc, PackWriter};
use crate::{Error, Result};

/// Why a manifest or a chunk offered to an [`Import`] was refused. The
/// import itself stays usable: the caller asks another source.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// The manifest does not hash to the blob's name, or is malformed.
    #[error("manifest does not match blob {0}")]
    BadManifest(Cid),
    /// The bytes do not hash to the chunk's name.
    #[error("chunk bytes do not hash to {0}")]
    BadChunk(Cid),
    /// The blob has no chunk of that name.
    #[error("chunk {0} is not part of this blob")]
    UnknownChunk(Cid),
}

/// A blob being assembled. Create with [`Store::import`].
pub struct Import {
    store: Store,
    id: Cid,
    len: u64,
    hashes: Vec<Cid>,
    /// Chunks still needed, with how many times the blob uses each.
    missing: HashMap<Cid, usize>,
    pack: Option<PackWriter>,
    written: Vec<(Cid, Loc)>,
}

impl Drop for Import {
    fn drop(&mut self) {
        self.store
            .inner()
            .active_imports
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Store {
    /// Starts assembling blob `id` from `manifest`, the bytes a peer sent
    /// as the blob's record: its length (8 bytes, big-endian) then its chunk
    /// hashes. Refused unless the hashes name `id` and the length fits them.
    pub fn import(&self, id: Cid, manifest: &[u8]) -> Result<Result<Import, Rejected>> {
        self.check_writable()?;
        let Ok(record) = Record::decode(&id, manifest) else {
            return Ok(Err(Rejected::BadManifest(id)));
        };
        let n = record.hashes.len() as u64;
        let max = n * crate::CHUNK_SIZE as u64;
        let plausible = if n == 0 {
            record.len == 0
        } else {
            record.len > (n - 1) * crate::CHUNK_SIZE as u64 && record.len <= max
        };
        if !plausible {
            return Ok(Err(Rejected::BadManifest(id)));
        }
        // Registered under the gc lock, so a gc either finished before this
        // import began or sees it and leaves its chunks alone.
        {
            let _shared = self
                .inner()
                .gc_lock
                .read()
                .unwrap_or_else(|e| e.into_inner());
            self.inner()
                .active_imports
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        let mut missing = HashMap::new();
        for hash in &record.hashes {
            if !self.has_chunk(hash)? {
                *missing.entry(*hash).or_insert(0) += 1;
            }
        }
        Ok(Ok(Import {
            store: self.clone(),
            id,
            len: record.len,
            hashes: record.hashes,
            missing,
            pack: None,
            written: Vec::new(),
        }))
    }

    /// The record of blob `id` as [`import`](Self::import) takes it: what a
    /// node sends a peer that asks for the blob's manifest.
    pub fn manifest(&self, id: &Cid) -> Result<Vec<u8>> {
        self.inner()
            .ks
            .blobs
            .get(id.as_bytes())?
            .map(|v| v.to_vec())
            .ok_or(Error::NotFound(*id))
    }

    /// Whether chunk `hash` is stored (it may belong to no blob yet).
    pub fn has_chunk(&self, hash: &Cid) -> Result<bool> {
        Ok(self.inner().ks.chunks.contains_key(hash.as_bytes())?)
    }

    /// Chunk `hash`'s bytes, verified against its name.
    pub fn chunk(&self, hash: &Cid) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(crate::CHUNK_SIZE);
        self.read_chunk(hash, hash, &mut buf)?;
        Ok(buf)
    }
}

impl Import {
    /// The blob being assembled.
    pub fn id(&self) -> Cid {
        self.id
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its chunk names in order.
    pub fn chunks(&self) -> &[Cid] {
        &self.hashes
    }

    /// Distinct chunks still missing, in blob order.
    pub fn missing(&self) -> Vec<Cid> {
        let mut seen = std::collections::HashSet::new();
        self.hashes
            .iter()
            .filter(|h| self.missing.contains_key(h) && seen.insert(**h))
            .copied()
            .collect()
    }

    /// Whether every chunk is present.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// Offers chunk `hash` with `bytes`. `Ok(Err(_))` means the bytes were
    /// refused and nothing was written; `Ok(Ok(false))` that the chunk was
    /// already present.
    pub fn add(&mut self, hash: &Cid, bytes: &[u8]) -> Result<Result<bool, Rejected>> {
        if !self.hashes.contains(hash) {
            return Ok(Err(Rejected::UnknownChunk(*hash)));
        }
        if Cid::of(bytes) != *hash {
            return Ok(Err(Rejected::BadChunk(*hash)));
        }
        if self.missing.remove(hash).is_none() {
            return Ok(Ok(false));
        }
        let inner = self.store.inner();
        let writer = match &mut self.pack {
            Some(w) => w,
            None => self.pack.insert(inner.packs.create().map_err(Error::Io)?),
        };
        self.written
            .push((*hash, writer.append(bytes).map_err(Error::Io)?));
        Ok(Ok(true))
    }

    /// Makes the chunks accepted so far durable and indexed, so a later
    /// import of the same blob (after a crash or a lost peer) skips them.
    pub fn flush(&mut self) -> Result<()> {
        let Some(writer) = self.pack.take() else {
            return Ok(());
        };
        writer.finish().map_err(Error::Io)?;
        let ks = &self.store.inner().ks;
        let mut batch = self.store.inner().db.batch().durability(Some(ACK));
        for (hash, loc) in self.written.drain(..) {
            batch.insert(&ks.chunks, hash.as_bytes(), loc.encode());
        }
        self.store.write(|| batch.commit())
    }

    /// Records the blob once every chunk is present. Returns the blob's
    /// length. Fails with [`Error::MissingChunk`] if one is still missing.
    pub fn finish(mut self) -> Result<u64> {
        if let Some(hash) = self.missing.keys().next() {
            return Err(Error::MissingChunk {
                blob: self.id,
                chunk: *hash,
            });
        }
        self.flush()?;
        let mut record = Vec::with_capacity(8 + 32 * self.hashes.len());
        record.extend_from_slice(&self.len.to_be_bytes());
        for h in &self.hashes {
            record.extend_from_slice(h.as_bytes());
        }
        let inner = self.store.inner();
        let mut batch = inner.db.batch().durability(Some(ACK));
        batch.insert(&inner.ks.blobs, self.id.as_bytes(), record);
        self.store.write(|| batch.commit())?;
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes with no two chunks alike, so nothing is deduplicated.
    fn distinct(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn stores() -> (tempfile::TempDir, Store, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Store::open(dir.path().join("a")).expect("open a");
        let b = Store::open(dir.path().join("b")).expect("open b");
        (dir, a, b)
    }

    #[test]
    fn a_blob_copied_chunk_by_chunk_in_reverse_order_reads_back() {
        let (_dir, a, b) = stores();
        let data = distinct(crate::CHUNK_SIZE * 3 + 17);
        let info = a.put_bytes(&data).expect("put");
        let manifest = a.manifest(&info.id).expect("manifest");
        let mut import = b.import(info.id, &manifest).expect("io").expect("accepted");
        assert_eq!(import.missing().len(), 4);
        for hash in import.missing().into_iter().rev() {
            let bytes = a.chunk(&hash).expect("chunk");
            assert_eq!(import.add(&hash, &bytes).expect("io"), Ok(true));
        }
        assert!(import.complete());
        assert_eq!(import.finish().expect("finish"), data.len() as u64);
        assert_eq!(b.get_bytes(&info.id).expect("get"), data);
    }

    #[test]
    fn bad_manifests_and_bad_chunks_are_refused() {
        let (_dir, a, b) = stores();
        let data = vec![9u8; crate::CHUNK_SIZE + 1];
        let info = a.put_bytes(&data).expect("put");
        let mut manifest = a.manifest(&info.id).expect("manifest");
        manifest[20] ^= 1;
        assert!(matches!(
            b.import(info.id, &manifest).expect("io"),
            Err(Rejected::BadManifest(_))
        ));
        // A length the chunks cannot hold.
        let mut manifest = a.manifest(&info.id).expect("manifest");
        manifest[..8].copy_from_slice(&(10 * crate::CHUNK_SIZE as u64).to_be_bytes());
        assert!(matches!(
            b.import(info.id, &manifest).expect("io"),
            Err(Rejected::BadManifest(_))
        ));

        let manifest = a.manifest(&info.id).expect("manifest");
        let mut import = b.import(info.id, &manifest).expect("io").expect("ok");
        let first = import.missing()[0];
        let mut bytes = a.chunk(&first).expect("chunk");
        bytes[0] ^= 1;
        assert_eq!(
            import.add(&first, &bytes).expect("io"),
            Err(Rejected::BadChunk(first))
        );
        assert_eq!(
            import.add(&Cid::of(b"x"), b"x").expect("io"),
            Err(Rejected::UnknownChunk(Cid::of(b"x")))
        );
        assert!(!import.complete());
        assert!(matches!(import.finish(), Err(Error::MissingChunk { .. })));
        assert!(!b.has(&info.id).expect("has"));
    }

    #[test]
    fn flushed_chunks_survive_an_abandoned_import() {
        let (dir, a, b) = stores();
        let data = distinct(crate::CHUNK_SIZE * 2 + 5);
        let info = a.put_bytes(&data).expect("put");
        let manifest = a.manifest(&info.id).expect("manifest");
        let mut import = b.import(info.id, &manifest).expect("io").expect("ok");
        let first = import.missing()[0];
        import
            .add(&first, &a.chunk(&first).expect("chunk"))
            .expect("io")
            .expect("ok");
        import.flush().expect("flush");
        drop(import);
        drop(b);
        let b = Store::open(dir.path().join("b")).expect("reopen");
        let import = b.import(info.id, &manifest).expect("io").expect("ok");
        assert_eq!(
            import.missing().len(),
            2,
            "the flushed chunk is not fetched again"
        );
    }
}
