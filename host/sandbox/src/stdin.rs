//! A command's stdin: its input in memory, or streamed to it while it
//! runs (a large input read from the store and opened segment by segment,
//! so it never sits whole in memory).
//!
//! Reads are deterministic either way: a blocking read of `n` bytes
//! returns `min(n, READ_MAX, what is left)`, waiting for a streamed input
//! to catch up rather than returning what happens to have arrived. A guest
//! therefore sees the same reads, and spends the same fuel, whether its
//! input was in memory or streamed, on every node. (A guest that polls
//! with non-blocking reads can still see a streamed input arrive in other
//! pieces; wasi-libc and Rust's standard library block.)

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Mutex, mpsc};
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

/// The most one read of stdin returns.
pub const READ_MAX: usize = 64 * 1024;

/// The producer's end of a streamed stdin: send the input in pieces, then
/// drop it; [`InputFeed::fail`] ends the stream with an error instead.
pub struct InputFeed(mpsc::Sender<Result<Bytes, String>>);

/// The reader stopped (the task ended); nothing more is wanted.
#[derive(Debug, thiserror::Error)]
#[error("the task no longer reads its input")]
pub struct FeedClosed;

impl InputFeed {
    /// Sends the next piece, waiting while the guest is behind.
    pub async fn send(&self, piece: Bytes) -> Result<(), FeedClosed> {
        self.0.send(Ok(piece)).await.map_err(|_| FeedClosed)
    }

    /// [`InputFeed::send`] from a thread outside the async runtime.
    pub fn blocking_send(&self, piece: Bytes) -> Result<(), FeedClosed> {
        self.0.blocking_send(Ok(piece)).map_err(|_| FeedClosed)
    }

    /// Ends the input with an error: the task traps with `why` at the
    /// read that reaches it.
    pub async fn fail(self, why: String) {
        let _ = self.0.send(Err(why)).await;
    }

    /// [`InputFeed::fail`] from a thread outside the async runtime.
    pub fn blocking_fail(self, why: String) {
        let _ = self.0.blocking_send(Err(why));
    }
}

/// The reading end of a streamed stdin, given to
/// [`WasmExecutor::execute_streamed`](crate::WasmExecutor::execute_streamed).
pub struct StreamedInput(mpsc::Receiver<Result<Bytes, String>>);

/// A streamed stdin holding at most `pieces` unread pieces besides what
/// the guest's current read waits for.
pub fn streamed(pieces: usize) -> (InputFeed, StreamedInput) {
    let (tx, rx) = mpsc::channel(pieces.max(1));
    (InputFeed(tx), StreamedInput(rx))
}

struct State {
    buf: BytesMut,
    /// `None` once the producer is done (or for an input in memory).
    rx: Option<mpsc::Receiver<Result<Bytes, String>>>,
    failed: Option<String>,
}

impl State {
    fn ended(&self) -> bool {
        self.rx.is_none() || self.failed.is_some()
    }

    /// Takes what has arrived, without waiting.
    fn drain(&mut self) {
        while let Some(rx) = &mut self.rx {
            match rx.try_recv() {
                Ok(piece) => self.take(piece),
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => self.rx = None,
            }
        }
    }

    fn take(&mut self, piece: Result<Bytes, String>) {
        match piece {
            Ok(b) => self.buf.extend_from_slice(&b),
            Err(why) => {
                self.failed = Some(why);
                self.rx = None;
            }
        }
    }

    /// Waits until `want` bytes are buffered or the input has ended.
    async fn fill(&mut self, want: usize) {
        while self.buf.len() < want {
            let Some(rx) = &mut self.rx else { return };
            match rx.recv().await {
                Some(piece) => self.take(piece),
                None => self.rx = None,
            }
        }
    }

    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let n = size.min(READ_MAX).min(self.buf.len());
        if n == 0 && size > 0 && self.ended() {
            return match &self.failed {
                Some(why) => Err(StreamError::trap(&format!(
                    "the task's input failed: {why}"
                ))),
                None => Err(StreamError::Closed),
            };
        }
        Ok(self.buf.split_to(n).freeze())
    }
}

/// Stdin as the task's WASI context holds it; every handle the guest
/// opens shares one position.
#[derive(Clone)]
pub(crate) struct Stdin(Arc<Mutex<State>>);

impl Stdin {
    pub(crate) fn memory(input: Vec<u8>) -> Self {
        Self(Arc::new(Mutex::new(State {
            buf: BytesMut::from(Bytes::from(input)),
            rx: None,
            failed: None,
        })))
    }

    pub(crate) fn streamed(input: StreamedInput) -> Self {
        Self(Arc::new(Mutex::new(State {
            buf: BytesMut::new(),
            rx: Some(input.0),
            failed: None,
        })))
    }
}

impl IsTerminal for Stdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for Stdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        // Only WASI 0.3 guests read stdin this way, and the sandbox links
        // WASI 0.2 only.
        Box::new(tokio::io::empty())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Stdin {
    async fn ready(&mut self) {
        self.0.lock().await.fill(READ_MAX).await;
    }
}

#[wasmtime_wasi::async_trait]
impl InputStream for Stdin {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let mut state = self
            .0
            .try_lock()
            .map_err(|_| StreamError::trap("concurrent reads of stdin"))?;
        state.drain();
        state.read(size)
    }

    async fn blocking_read(&mut self, size: usize) -> StreamResult<Bytes> {
        let mut state = self.0.lock().await;
        state.fill(size.min(READ_MAX)).await;
        state.read(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_are_the_same_in_memory_and_streamed() {
        let input: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let mut memory = Stdin::memory(input.clone());
        let (feed, rx) = streamed(2);
        let mut stream = Stdin::streamed(rx);
        let producer = {
            let input = input.clone();
            tokio::spawn(async move {
                for piece in input.chunks(7_777) {
                    feed.send(Bytes::copy_from_slice(piece))
                        .await
                        .expect("read");
                }
            })
        };
        for size in [
            1,
            100,
            70_000,
            5,
            200_000,
            1 << 20,
            1 << 20,
            1 << 20,
            1 << 20,
            1 << 20,
        ] {
            let a = memory.blocking_read(size).await.map(|b| b.len()).ok();
            let b = stream.blocking_read(size).await.map(|b| b.len()).ok();
            assert_eq!(a, b, "read of {size}");
        }
        producer.await.expect("producer");
        assert!(matches!(
            stream.blocking_read(1).await,
            Err(StreamError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_failed_feed_traps_at_the_read_that_reaches_it() {
        let (feed, rx) = streamed(2);
        let mut stream = Stdin::streamed(rx);
        feed.send(Bytes::from_static(b"abc")).await.expect("read");
        feed.fail("segment 1 fails authentication".into()).await;
        assert_eq!(&stream.blocking_read(10).await.expect("data")[..], b"abc");
        match stream.blocking_read(10).await {
            Err(StreamError::Trap(e)) => assert!(e.to_string().contains("segment 1"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
