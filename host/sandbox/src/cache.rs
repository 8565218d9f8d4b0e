//! Compiled components, cached on disk and in memory.
//!
//! Compiling a component with Cranelift takes milliseconds to seconds; a warm
//! start must take microseconds. So a program is compiled once per engine
//! configuration: the disk cache is keyed by BLAKE3 of the component bytes
//! plus a fingerprint of the engine, and each file carries a BLAKE3 of its
//! contents so a damaged file is detected and recompiled, never loaded.
//!
//! Only artifacts this node compiled itself are ever deserialized; nothing
//! that came over the network is loaded as machine code.

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::executor::Program;

/// Counters that make the cache observable, e.g. to check that a second run
/// of a component did not compile it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled with Cranelift.
    pub compiled: u64,
    /// Components loaded from a file in the cache directory.
    pub disk_hits: u64,
    /// Loads served from the in-memory program cache.
    pub memory_hits: u64,
    /// Cache files found damaged (and replaced).
    pub corrupt_files: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    compiled: AtomicU64,
    disk_hits: AtomicU64,
    memory_hits: AtomicU64,
    corrupt_files: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            corrupt_files: self.corrupt_files.load(Ordering::Relaxed),
        }
    }
}

/// In-memory map from component hash to a ready-to-instantiate program.
pub(crate) struct ProgramCache {
    programs: Mutex<HashMap<[u8; 32], Arc<Program>>>,
    capacity: usize,
    pub(crate) counters: Counters,
}

impl ProgramCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            programs: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            counters: Counters::default(),
        }
    }

    pub(crate) fn get(&self, hash: &[u8; 32]) -> Option<Arc<Program>> {
        let found = self.lock().get(hash).cloned();
        if found.is_some() {
            self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    pub(crate) fn insert(&self, program: Arc<Program>) {
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(program.hash()) {
            // Any entry will do: an evicted program is reloaded from disk in
            // about a millisecond. TODO: LRU once nodes serve many programs.
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
        map.insert(*program.hash(), program);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Program>>> {
        self.programs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A fingerprint of everything about an engine that makes its compiled code
/// incompatible with another's: wasmtime version, target, tunables, features.
pub(crate) fn engine_fingerprint(engine: &Engine) -> [u8; 32] {
    struct Blake3Hasher(blake3::Hasher);
    impl Hasher for Blake3Hasher {
        fn finish(&self) -> u64 {
            unreachable!("only the full digest is used")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    *h.0.finalize().as_bytes()
}

/// Compiles `bytes`, or loads the cached compilation. Blocking: run it on a
/// blocking thread.
pub(crate) fn compile_or_load(
    engine: &Engine,
    dir: Option<&Path>,
    fingerprint: &[u8; 32],
    hash: &[u8; 32],
    bytes: &[u8],
    counters: &Counters,
) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        counters.compiled.fetch_add(1, Ordering::Relaxed);
        return Component::new(engine, bytes);
    };
    let path = cache_path(dir, fingerprint, hash);
    match read_verified(&path) {
        Ok(Some(artifact)) => {
            // SAFETY: the file was written by `store` below from a component
            // this engine compiled, and its BLAKE3 matches, so it is exactly
            // what wasmtime serialized for an engine with this fingerprint.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => {
                    counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cached component rejected, recompiling: {e}");
                    counters.corrupt_files.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(None) => {}
        Err(CacheFileDamaged) => {
            tracing::warn!(path = %path.display(), "cached component is damaged, recompiling");
            counters.corrupt_files.fetch_add(1, Ordering::Relaxed);
        }
    }
    counters.compiled.fetch_add(1, Ordering::Relaxed);
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&path, &component) {
        // The cache is an optimisation: a read-only or full disk must not
        // fail the task.
        tracing::warn!(path = %path.display(), "could not write compiled component: {e}");
    }
    Ok(component)
}

fn cache_path(dir: &Path, fingerprint: &[u8; 32], hash: &[u8; 32]) -> PathBuf {
    dir.join(format!(
        "{}-{}.cwasm",
        hex::encode(hash),
        hex::encode(&fingerprint[..8])
    ))
}

struct CacheFileDamaged;

/// Reads a cache file: 32 bytes of BLAKE3, then the serialized component.
fn read_verified(path: &Path) -> Result<Option<Vec<u8>>, CacheFileDamaged> {
    let mut data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(CacheFileDamaged),
    };
    if data.len() < 32 || blake3::hash(&data[32..]).as_bytes() != &data[..32] {
        return Err(CacheFileDamaged);
    }
    data.drain(..32);
    Ok(Some(data))
}

fn store(path: &Path, component: &Component) -> wasmtime::Result<()> {
    let artifact = component.serialize()?;
    let dir = path
        .parent()
        .expect("cache paths are inside the cache directory");
    fs::create_dir_all(dir)?;
    // Write to a temporary file and rename, so a reader never sees half a
    // file and two writers of the same key cannot interleave.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(blake3::hash(&artifact).as_bytes())?;
    tmp.write_all(&artifact)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
