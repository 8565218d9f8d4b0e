//! The guest SDK for p2pc jobs written in Rust.
//!
//! A job is one function and one macro line:
//!
//! ```ignore
//! fn run(input: Vec<u8>) -> Result<Vec<u8>, p2pc_guest::JobError> {
//!     Ok(input.to_ascii_uppercase())
//! }
//! p2pc_guest::job!(run);
//! ```
//!
//! A map/reduce job gives two functions to [`map_reduce!`]. Build either
//! kind with `cargo component build --release` or
//! `cargo build --release --target wasm32-wasip2`; both produce a component
//! `p2pctl run` accepts. The crate must be a `cdylib`.
//!
//! This crate hides wit-bindgen and the `p2pc:job` WIT package; it does not
//! give a job any capability the runner did not grant. Jobs that want only
//! stdin and stdout need no SDK at all: any WASI P2 command component runs.
//!
//! Modules: [`log`] (log lines with levels), plus [`progress`] and [`emit`]
//! at the top level.

#![deny(missing_docs)]

#[doc(hidden)]
pub mod bindings {
    //! Generated bindings; use the re-exports at the crate root instead.
    #![allow(missing_docs, reason = "generated code")]

    /// The `p2pc:job/job` world.
    pub mod job {
        wit_bindgen::generate!({
            path: "../wit",
            world: "p2pc:job/job",
            pub_export_macro: true,
            export_macro_name: "export_job",
            default_bindings_module: "p2pc_guest::bindings::job",
            generate_all,
        });
    }

    /// The `p2pc:job/map-reduce` world.
    pub mod map_reduce {
        wit_bindgen::generate!({
            path: "../wit",
            world: "p2pc:job/map-reduce",
            pub_export_macro: true,
            export_macro_name: "export_map_reduce",
            default_bindings_module: "p2pc_guest::bindings::map_reduce",
            with: {
                "p2pc:job/host@0.1.0": crate::bindings::job::p2pc::job::host,
                "p2pc:job/types@0.1.0": crate::bindings::job::p2pc::job::types,
            },
        });
    }
}

use bindings::job::p2pc::job::host;

/// Why a job could not produce an output. Returned from a job function; the
/// runner reports it to the submitter as a guest error.
pub use bindings::job::p2pc::job::types::JobError;

/// What a job function returns.
pub type Result<T = Vec<u8>, E = JobError> = std::result::Result<T, E>;

impl JobError {
    /// The input is not what the job expects.
    pub fn invalid_input(message: impl std::fmt::Display) -> Self {
        JobError::InvalidInput(message.to_string())
    }

    /// The job understood its input but could not finish.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        JobError::Failed(message.to_string())
    }
}

impl From<std::str::Utf8Error> for JobError {
    fn from(e: std::str::Utf8Error) -> Self {
        JobError::invalid_input(format_args!("not UTF-8: {e}"))
    }
}

impl From<std::string::FromUtf8Error> for JobError {
    fn from(e: std::string::FromUtf8Error) -> Self {
        JobError::invalid_input(format_args!("not UTF-8: {e}"))
    }
}

/// Log lines, kept by the runner (up to a limit) with the task's outcome.
pub mod log {
    use super::host::{self, Level};

    /// Logs at trace level.
    pub fn trace(message: impl AsRef<str>) {
        host::log(Level::Trace, message.as_ref());
    }
    /// Logs at debug level.
    pub fn debug(message: impl AsRef<str>) {
        host::log(Level::Debug, message.as_ref());
    }
    /// Logs at info level.
    pub fn info(message: impl AsRef<str>) {
        host::log(Level::Info, message.as_ref());
    }
    /// Logs at warn level.
    pub fn warn(message: impl AsRef<str>) {
        host::log(Level::Warn, message.as_ref());
    }
    /// Logs at error level.
    pub fn error(message: impl AsRef<str>) {
        host::log(Level::Error, message.as_ref());
    }
}

/// Reports that `done` of `total` units of work are finished.
pub fn progress(done: u64, total: u64) {
    host::progress(done, total);
}

/// Appends bytes to the task's output, ahead of what the job function
/// returns. Useful for outputs too big to hold in memory at once. Passing the
/// task's output limit ends the task with "output too large".
pub fn emit(bytes: &[u8]) {
    host::emit(bytes);
}

/// Exports `f: fn(Vec<u8>) -> p2pc_guest::Result` as the `run` function of
/// the `p2pc:job/job` world.
#[macro_export]
macro_rules! job {
    ($run:path) => {
        #[doc(hidden)]
        struct __P2pcJob;

        impl $crate::bindings::job::Guest for __P2pcJob {
            fn run(input: ::std::vec::Vec<u8>) -> $crate::Result {
                $run(input)
            }
        }

        $crate::bindings::job::export_job!(__P2pcJob);
    };
}

/// Exports `map: fn(Vec<u8>) -> p2pc_guest::Result` and
/// `reduce: fn(Vec<Vec<u8>>) -> p2pc_guest::Result` as the
/// `p2pc:job/map-reduce` world.
#[macro_export]
macro_rules! map_reduce {
    ($map:path, $reduce:path) => {
        #[doc(hidden)]
        struct __P2pcMapReduce;

        impl $crate::bindings::map_reduce::Guest for __P2pcMapReduce {
            fn map(shard: ::std::vec::Vec<u8>) -> $crate::Result {
                $map(shard)
            }
            fn reduce(outputs: ::std::vec::Vec<::std::vec::Vec<u8>>) -> $crate::Result {
                $reduce(outputs)
            }
        }

        $crate::bindings::map_reduce::export_map_reduce!(__P2pcMapReduce);
    };
}
