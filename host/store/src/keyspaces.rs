//! Every fjall keyspace the store uses, in one place.

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

/// Chunk hash (32 bytes) → where its bytes are: pack number (u32 BE),
/// offset (u64 BE), length (u32 BE). The bytes themselves live in pack
/// files (`pack.rs`), written once, outside the LSM tree.
pub(crate) const CHUNKS: &str = "chunks";
/// Blob id (32 bytes) → blob record: length (u64 BE), then chunk hashes.
pub(crate) const BLOBS: &str = "blobs";
/// Blob id (32 bytes) → nothing. A pinned blob cannot be removed.
pub(crate) const PINS: &str = "pins";
/// Bundle id (32 bytes) → JSON `BundleRecord`; the file itself is a blob.
pub(crate) const BUNDLES: &str = "bundles";
/// Job id (the node's key) → the node's record of a job it submitted,
/// opaque to the store (`records.rs`).
pub(crate) const JOBS: &str = "jobs";

pub(crate) struct Keyspaces {
    pub(crate) chunks: Keyspace,
    pub(crate) blobs: Keyspace,
    pub(crate) pins: Keyspace,
    pub(crate) bundles: Keyspace,
    pub(crate) jobs: Keyspace,
}

impl Keyspaces {
    pub(crate) fn open(db: &Database) -> fjall::Result<Self> {
        Ok(Self {
            chunks: db.keyspace(CHUNKS, KeyspaceCreateOptions::default)?,
            blobs: db.keyspace(BLOBS, KeyspaceCreateOptions::default)?,
            pins: db.keyspace(PINS, KeyspaceCreateOptions::default)?,
            bundles: db.keyspace(BUNDLES, KeyspaceCreateOptions::default)?,
            jobs: db.keyspace(JOBS, KeyspaceCreateOptions::default)?,
        })
    }
}
