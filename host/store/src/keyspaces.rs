//! Every fjall keyspace the store uses, in one place.

use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions};

/// Chunk hash (32 bytes) → chunk bytes. Values are large, so fjall keeps
/// them in separate blob files (key-value separation) and compaction moves
/// only the small keys.
pub(crate) const CHUNKS: &str = "chunks";
/// Blob id (32 bytes) → blob record: length (u64 BE), then chunk hashes.
pub(crate) const BLOBS: &str = "blobs";
/// Blob id (32 bytes) → nothing. A pinned blob cannot be removed.
pub(crate) const PINS: &str = "pins";
/// Bundle id (32 bytes) → JSON `BundleRecord`; the file itself is a blob.
pub(crate) const BUNDLES: &str = "bundles";

pub(crate) struct Keyspaces {
    pub(crate) chunks: Keyspace,
    pub(crate) blobs: Keyspace,
    pub(crate) pins: Keyspace,
    pub(crate) bundles: Keyspace,
}

impl Keyspaces {
    pub(crate) fn open(db: &Database) -> fjall::Result<Self> {
        Ok(Self {
            chunks: db.keyspace(CHUNKS, || {
                KeyspaceCreateOptions::default()
                    // Chunks are mostly incompressible (media, archives, model
                    // weights), so compressing them only costs time.
                    .with_kv_separation(Some(
                        KvSeparationOptions::default().compression(CompressionType::None),
                    ))
                    // Bounds what a streaming put holds in memory before
                    // fjall flushes it to disk.
                    .max_memtable_size(32 << 20)
            })?,
            blobs: db.keyspace(BLOBS, KeyspaceCreateOptions::default)?,
            pins: db.keyspace(PINS, KeyspaceCreateOptions::default)?,
            bundles: db.keyspace(BUNDLES, KeyspaceCreateOptions::default)?,
        })
    }
}
