//! The p2pc node database: content-addressed blobs, signed bundles and
//! the records of submitted jobs. One
//! fjall database per node holds the index and records; chunk bytes live in
//! append-only pack files beside it.
//!
//! A blob is split into fixed-size chunks of [`CHUNK_SIZE`] bytes (the last
//! may be shorter). Each chunk is named by its BLAKE3 hash; a blob is named
//! by the BLAKE3 hash of its chunk list (the chunk hashes concatenated), so
//! a blob's name commits to every byte. Everything read back is checked
//! against its name. Blobs stream in and out, so no blob has to fit in
//! memory.
//!
//! This crate is storage only: it does not fetch from peers or verify
//! signatures (bundles are verified by `p2pc-crypto` before being stored).
//!
//! Modules:
//! - `keyspaces`: the one list of fjall keyspaces and what each holds.
//! - `pack`: append-only pack files holding chunk bytes.
//! - `blob`: [`Store`] with put/get/has/list/pin/remove/gc, [`BlobReader`].
//! - `readahead`: a large blob's chunks read and verified ahead of its
//!   reader on every core, in bounded memory.
//! - `import`: [`Import`], a blob assembled from verified chunks that
//!   arrive in any order (a network download).
//! - `bundle`: [`BundleRecord`]s of verified bundles, files kept as pinned blobs.
//! - `records`: job records a submitting node keeps ([`JobWrite`]), written
//!   in one commit with the outputs they name.
//! - `error`: [`Error`].

#![deny(missing_docs)]

mod blob;
mod bundle;
mod error;
mod import;
mod keyspaces;
mod pack;
mod readahead;
mod records;

pub use blob::{BlobInfo, BlobReader, CHUNK_SIZE, GcStats, Store};
pub use bundle::BundleRecord;
pub use error::{Error, Result};
pub use import::{Import, Rejected};
pub use p2pc_types::Cid;
pub use records::JobWrite;
