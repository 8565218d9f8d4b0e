use std::path::PathBuf;

use p2pc_types::Cid;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No blob with that id.
    #[error("no blob {0}")]
    NotFound(Cid),
    /// A chunk's bytes do not hash to its name: the disk or the database
    /// returned damaged data.
    #[error("chunk {chunk} of blob {blob} is corrupt: its bytes do not match its BLAKE3 name")]
    CorruptChunk {
        /// The blob being read.
        blob: Cid,
        /// The damaged chunk.
        chunk: Cid,
    },
    /// A chunk a blob needs is missing.
    #[error("chunk {chunk} of blob {blob} is missing")]
    MissingChunk {
        /// The blob being read.
        blob: Cid,
        /// The missing chunk.
        chunk: Cid,
    },
    /// A blob's record is unreadable.
    #[error("the record of blob {0} is damaged")]
    CorruptRecord(Cid),
    /// The blob is pinned and cannot be removed.
    #[error("blob {0} is pinned; unpin it first")]
    Pinned(Cid),
    /// A durable write failed earlier; the store refuses further writes
    /// until it is reopened, so nothing is acknowledged that was not kept.
    #[error("the store stopped accepting writes after a failed durable write; reopen it")]
    Poisoned,
    /// Reading the input of a put failed. Nothing was stored under a blob
    /// name; chunks already written are removed by the next `gc`.
    #[error("reading the blob's input failed: {0}")]
    Input(std::io::Error),
    /// The database could not be opened at this path.
    #[error("cannot open the store at {}: {source}", path.display())]
    Open {
        /// The directory.
        path: PathBuf,
        /// What fjall said.
        source: fjall::Error,
    },
    /// Reading or writing a pack file failed.
    #[error("pack file I/O: {0}")]
    Io(std::io::Error),
    /// fjall reported an error.
    #[error("database error: {0}")]
    Db(#[from] fjall::Error),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
