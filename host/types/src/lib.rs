//! The shared vocabulary of p2pc: resource limits, sizes, what a task used,
//! and every way a task can end.
//!
//! This crate is plain data. It does no I/O, knows nothing of wasmtime,
//! libp2p or fjall, and every other p2pc crate may depend on it. Types that
//! cross the network later get their wire encodings here too.
//!
//! Modules:
//! - `cid`: [`Cid`], the BLAKE3 name of a chunk, blob or bundle.
//! - `size`: [`ByteSize`], parsed from and printed as `64MiB`, `1.5GB`, `512`.
//! - `limits`: [`Limits`], what a task may consume, with operator defaults.
//! - `outcome`: [`Usage`], [`TaskError`] and [`World`], what a run produced.
//! - `count`: [`parse_count`], counts such as fuel written `10G` or
//!   `1,000,000`, and [`Thousands`], which prints them so.
//! - `args`: [`check_args`], the bounds on a task's command-line arguments,
//!   and [`argv`], a program's own arguments followed by a task's.
//! - `shard`: [`split_at_lines`], how a map/reduce input becomes shards.

#![deny(missing_docs)]

mod args;
mod cid;
mod count;
mod limits;
mod outcome;
mod shard;
mod size;

pub use args::{ArgsError, MAX_ARG_BYTES, MAX_ARGS, argv, check_args};
pub use cid::{Cid, ParseCidError};
pub use count::{ParseCountError, Thousands, parse_count};
pub use limits::Limits;
pub use outcome::{TaskError, Usage, World};
pub use shard::split_at_lines;
pub use size::{ByteSize, ParseSizeError};
