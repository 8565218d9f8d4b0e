//! Pack files: where chunk bytes live. Each put appends its new chunks to a
//! pack file of its own, written once, sequentially, and synced before the
//! put is acknowledged. The `chunks` keyspace maps a chunk's hash to its
//! [`Loc`]. Pack files are never modified after they are synced; `gc`
//! deletes packs no chunk refers to.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Where a chunk's bytes are: pack number, offset, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) pack: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

impl Loc {
    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.pack.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        Some(Self {
            pack: u32::from_be_bytes(bytes[..4].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[4..12].try_into().ok()?),
            len: u32::from_be_bytes(bytes[12..].try_into().ok()?),
        })
    }
}

/// Open pack files kept for reading; more than this and an arbitrary one is
/// closed (it reopens in microseconds).
const MAX_OPEN: usize = 64;

pub(crate) struct Packs {
    dir: PathBuf,
    next: AtomicU32,
    open: Mutex<HashMap<u32, Arc<File>>>,
}

impl Packs {
    pub(crate) fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let next = match list(&dir)?.into_iter().max() {
            None => 0,
            Some(m) => m.checked_add(1).ok_or_else(|| {
                std::io::Error::other(format!(
                    "{}: pack {m} is the last number a pack can have",
                    dir.display()
                ))
            })?,
        };
        Ok(Self {
            dir,
            next: AtomicU32::new(next),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A new, empty pack file for one put.
    pub(crate) fn create(&self) -> std::io::Result<PackWriter> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.path(id);
        let file = File::create_new(&path)?;
        Ok(PackWriter {
            id,
            dir: self.dir.clone(),
            out: BufWriter::with_capacity(1 << 20, file),
            offset: 0,
        })
    }

    /// Reads `loc` into `buf` (resized to fit).
    pub(crate) fn read(&self, loc: Loc, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let file = self.file(loc.pack)?;
        buf.resize(loc.len as usize, 0);
        file.read_exact_at(buf, loc.offset)
    }

    /// Every pack number on disk.
    pub(crate) fn ids(&self) -> std::io::Result<Vec<u32>> {
        list(&self.dir)
    }

    /// Deletes pack `id`; returns its size.
    pub(crate) fn delete(&self, id: u32) -> std::io::Result<u64> {
        self.lock().remove(&id);
        let path = self.path(id);
        let size = std::fs::metadata(&path)?.len();
        std::fs::remove_file(&path)?;
        Ok(size)
    }

    fn file(&self, id: u32) -> std::io::Result<Arc<File>> {
        if let Some(f) = self.lock().get(&id) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.path(id))?);
        let mut open = self.lock();
        if open.len() >= MAX_OPEN
            && let Some(victim) = open.keys().next().copied()
        {
            open.remove(&victim);
        }
        open.insert(id, f.clone());
        Ok(f)
    }

    fn path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("{id:010}.pack"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<File>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn list(dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".pack"))
            .and_then(|n| n.parse().ok())
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Appends chunks to one new pack file.
pub(crate) struct PackWriter {
    id: u32,
    dir: PathBuf,
    out: BufWriter<File>,
    offset: u64,
}

impl PackWriter {
    pub(crate) fn append(&mut self, chunk: &[u8]) -> std::io::Result<Loc> {
        self.out.write_all(chunk)?;
        let loc = Loc {
            pack: self.id,
            offset: self.offset,
            len: chunk.len() as u32,
        };
        self.offset += chunk.len() as u64;
        Ok(loc)
    }

    /// Flushes and syncs the file and its directory entry. Only after this
    /// may an index entry point into the pack.
    pub(crate) fn finish(self) -> std::io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_round_trip() {
        let loc = Loc {
            pack: 7,
            offset: 1 << 40,
            len: 262_144,
        };
        assert_eq!(Loc::decode(&loc.encode()), Some(loc));
        assert_eq!(Loc::decode(&[0; 15]), None);
    }
}
