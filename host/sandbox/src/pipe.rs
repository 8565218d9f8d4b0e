//! A capped in-memory sink for a guest's stdout or stderr.
//!
//! Unlike an unbounded buffer, a guest cannot make the host hold more than
//! `cap` bytes. What happens past the cap depends on the stream: stdout is the
//! task's output, so overflowing it ends the task ("output too large");
//! stderr is diagnostics, so the excess is dropped silently.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Marker error carried by the trap raised when stdout overflows.
#[derive(Debug, thiserror::Error)]
#[error("the job wrote more output than its limit")]
pub(crate) struct OutputOverflow;

#[derive(Clone)]
pub(crate) struct CappedPipe {
    inner: Arc<Mutex<Inner>>,
    overflow_traps: bool,
}

struct Inner {
    buf: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl CappedPipe {
    /// A sink whose overflow ends the task (stdout).
    pub(crate) fn output(cap: usize) -> Self {
        Self::new(cap, true)
    }

    /// A sink that keeps the first `cap` bytes and drops the rest (stderr).
    pub(crate) fn diagnostics(cap: usize) -> Self {
        Self::new(cap, false)
    }

    fn new(cap: usize, overflow_traps: bool) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                buf: Vec::new(),
                cap,
                overflowed: false,
            })),
            overflow_traps,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another writer panicked mid-append; the
        // buffer is still a valid prefix of the stream.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().buf)
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl CappedPipe {
    /// Appends what fits; returns false if anything did not.
    fn append(&self, bytes: &[u8]) -> bool {
        let mut inner = self.lock();
        let room = inner.cap - inner.buf.len();
        if bytes.len() <= room {
            inner.buf.extend_from_slice(bytes);
            true
        } else {
            inner.buf.extend_from_slice(&bytes[..room]);
            inner.overflowed = true;
            false
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.append(&bytes) || !self.overflow_traps {
            Ok(())
        } else {
            Err(StreamError::Trap(wasmtime::Error::new(OutputOverflow)))
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always offer a generous permit: the cap is enforced on `write`, so
        // a guest that floods learns of it by a trap rather than by a stream
        // that silently stops accepting bytes.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.append(buf) || !self.overflow_traps {
            std::task::Poll::Ready(Ok(buf.len()))
        } else {
            std::task::Poll::Ready(Err(std::io::Error::other(OutputOverflow)))
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_overflow_traps_and_keeps_the_prefix() {
        let mut pipe = CappedPipe::output(4);
        assert!(pipe.write(Bytes::from_static(b"abc")).is_ok());
        assert!(matches!(
            pipe.write(Bytes::from_static(b"de")),
            Err(StreamError::Trap(_))
        ));
        assert!(pipe.overflowed());
        assert_eq!(pipe.take(), b"abcd");
    }

    #[test]
    fn diagnostics_drop_the_excess_quietly() {
        let mut pipe = CappedPipe::diagnostics(2);
        assert!(pipe.write(Bytes::from_static(b"hello")).is_ok());
        assert_eq!(pipe.take(), b"he");
    }
}
