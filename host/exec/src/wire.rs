//! The pipe protocol between a node and its isolated wasm workers:
//! length-prefixed protobuf frames, one request and one response at a time.

use std::time::Duration;

use p2pc_sandbox::{
    ByteSize, Call, Grants, Limits, LogLine, Mode, Outcome, Task, TaskError, Usage,
};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A task for a worker. The component travels only the first time a worker
/// sees it; after that, its BLAKE3 names it.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Request {
    #[prost(bytes = "vec", tag = "1")]
    pub component_blake3: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub component: Vec<u8>,
    /// 0 run, 1 map, 2 reduce.
    #[prost(uint32, tag = "3")]
    pub call: u32,
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub inputs: Vec<Vec<u8>>,
    #[prost(uint64, tag = "5")]
    pub fuel: u64,
    #[prost(uint64, tag = "6")]
    pub memory: u64,
    #[prost(uint64, tag = "7")]
    pub timeout_ms: u64,
    #[prost(uint64, tag = "8")]
    pub output: u64,
    #[prost(uint64, tag = "9")]
    pub stderr: u64,
    #[prost(uint32, tag = "10")]
    pub log_lines: u32,
    /// Empty for a nondeterministic task.
    #[prost(bytes = "vec", tag = "11")]
    pub seed: Vec<u8>,
    #[prost(bool, tag = "12")]
    pub scratch: bool,
    #[prost(bool, tag = "13")]
    pub network: bool,
    /// Arguments after argv[0].
    #[prost(string, repeated, tag = "14")]
    pub args: Vec<String>,
}

/// How a task ended, from a worker.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Response {
    /// The worker does not hold the component; send it again with bytes.
    #[prost(bool, tag = "1")]
    pub missing_component: bool,
    #[prost(bool, tag = "2")]
    pub ok: bool,
    #[prost(bytes = "vec", tag = "3")]
    pub output: Vec<u8>,
    /// A [`TaskError`] as JSON, when not ok.
    #[prost(string, tag = "4")]
    pub error_json: String,
    #[prost(uint64, tag = "5")]
    pub fuel_used: u64,
    #[prost(uint64, tag = "6")]
    pub peak_memory: u64,
    #[prost(uint64, tag = "7")]
    pub wall_us: u64,
    #[prost(bytes = "vec", tag = "8")]
    pub stderr: Vec<u8>,
    /// The log lines as JSON.
    #[prost(string, tag = "9")]
    pub logs_json: String,
    #[prost(uint64, tag = "10")]
    pub logs_dropped: u64,
    #[prost(bool, tag = "11")]
    pub has_progress: bool,
    #[prost(uint64, tag = "12")]
    pub progress_done: u64,
    #[prost(uint64, tag = "13")]
    pub progress_total: u64,
}

impl Request {
    pub(crate) fn new(hash: [u8; 32], component: Option<&[u8]>, task: &Task) -> Self {
        let (call, inputs) = match &task.call {
            Call::Run(i) => (0, vec![i.clone()]),
            Call::Map(i) => (1, vec![i.clone()]),
            Call::Reduce(parts) => (2, parts.clone()),
        };
        let l = &task.limits;
        Self {
            component_blake3: hash.to_vec(),
            component: component.map(<[u8]>::to_vec).unwrap_or_default(),
            call,
            inputs,
            fuel: l.fuel,
            memory: l.memory.0,
            timeout_ms: u64::try_from(l.timeout.as_millis()).unwrap_or(u64::MAX),
            output: l.output.0,
            stderr: l.stderr.0,
            log_lines: l.log_lines,
            seed: match task.mode {
                Mode::Deterministic { seed } => seed.to_vec(),
                Mode::Nondeterministic => Vec::new(),
            },
            scratch: task.grants.scratch,
            network: task.grants.network,
            args: task.args.clone(),
        }
    }

    pub(crate) fn task(self) -> Result<Task, String> {
        let mut inputs = self.inputs;
        let call = match self.call {
            0 | 1 if inputs.len() == 1 => {
                let input = inputs.pop().unwrap_or_default();
                if self.call == 0 {
                    Call::Run(input)
                } else {
                    Call::Map(input)
                }
            }
            2 => Call::Reduce(inputs),
            other => return Err(format!("malformed call {other}")),
        };
        let mode = if self.seed.is_empty() {
            Mode::Nondeterministic
        } else {
            Mode::Deterministic {
                seed: self.seed.try_into().map_err(|_| "seed is not 32 bytes")?,
            }
        };
        Ok(Task {
            call,
            limits: Limits {
                fuel: self.fuel,
                memory: ByteSize(self.memory),
                timeout: Duration::from_millis(self.timeout_ms),
                output: ByteSize(self.output),
                stderr: ByteSize(self.stderr),
                log_lines: self.log_lines,
            },
            mode,
            grants: Grants {
                scratch: self.scratch,
                network: self.network,
            },
            args: self.args,
        })
    }
}

impl Response {
    pub(crate) fn from_outcome(o: Outcome) -> Self {
        let (ok, output, error_json) = match o.result {
            Ok(out) => (true, out, String::new()),
            Err(e) => (
                false,
                Vec::new(),
                serde_json::to_string(&e).unwrap_or_default(),
            ),
        };
        Self {
            missing_component: false,
            ok,
            output,
            error_json,
            fuel_used: o.usage.fuel_used,
            peak_memory: o.usage.peak_memory,
            wall_us: u64::try_from(o.usage.wall_time.as_micros()).unwrap_or(u64::MAX),
            stderr: o.stderr,
            logs_json: serde_json::to_string(&o.logs).unwrap_or_default(),
            logs_dropped: o.logs_dropped,
            has_progress: o.progress.is_some(),
            progress_done: o.progress.map_or(0, |p| p.0),
            progress_total: o.progress.map_or(0, |p| p.1),
        }
    }

    /// The outcome this response reports. A response that does not parse
    /// is the worker breaking the protocol, which is reported as such.
    pub(crate) fn into_outcome(self) -> Outcome {
        let result = if self.ok {
            Ok(self.output)
        } else {
            Err(
                serde_json::from_str::<TaskError>(&self.error_json).unwrap_or_else(|e| {
                    TaskError::WorkerLost {
                        reason: format!("the worker sent an unreadable error: {e}"),
                    }
                }),
            )
        };
        Outcome {
            result,
            usage: Usage {
                fuel_used: self.fuel_used,
                peak_memory: self.peak_memory,
                wall_time: Duration::from_micros(self.wall_us),
            },
            stderr: self.stderr,
            logs: serde_json::from_str::<Vec<LogLine>>(&self.logs_json).unwrap_or_default(),
            logs_dropped: self.logs_dropped,
            progress: self
                .has_progress
                .then_some((self.progress_done, self.progress_total)),
        }
    }
}

/// One frame: a little-endian u32 length, then the message.
fn encode_frame(msg: &impl Message) -> std::io::Result<Vec<u8>> {
    let len = msg.encoded_len();
    let prefix = u32::try_from(len).map_err(|_| std::io::Error::other("frame over 4 GiB"))?;
    let mut frame = Vec::with_capacity(4 + len);
    frame.extend_from_slice(&prefix.to_le_bytes());
    msg.encode(&mut frame).map_err(std::io::Error::other)?;
    Ok(frame)
}

/// Writes one frame.
pub(crate) async fn write_frame(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &impl Message,
) -> std::io::Result<()> {
    w.write_all(&encode_frame(msg)?).await?;
    w.flush().await
}

/// [`write_frame`] on a blocking writer (the worker's stdout).
pub(crate) fn write_frame_blocking(
    w: &mut impl std::io::Write,
    msg: &impl Message,
) -> std::io::Result<()> {
    w.write_all(&encode_frame(msg)?)?;
    w.flush()
}

/// How long a reader spins on a non-blocking pipe before it sleeps. A
/// short task's frame usually arrives within it, and catching it awake
/// saves the two scheduler wake-ups a sleeping reader costs (tens of
/// microseconds each on a virtual machine).
pub(crate) const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// One non-blocking `read(2)`.
fn read_raw(fd: std::os::fd::RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A frame being read from a non-blocking pipe: the 4-byte length, then
/// the body; never a byte past the frame's end.
pub(crate) struct Partial {
    /// Sized to what is wanted so far; `filled` bytes of it are real.
    bytes: Vec<u8>,
    filled: usize,
    body_len: Option<usize>,
}

impl Default for Partial {
    fn default() -> Self {
        Self {
            bytes: vec![0; 4],
            filled: 0,
            body_len: None,
        }
    }
}

impl Partial {
    pub(crate) fn is_complete(&self) -> bool {
        self.body_len.is_some() && self.filled == self.bytes.len()
    }

    /// Whether nothing at all has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Accounts for `n` new bytes; sizes the buffer for the body when the
    /// header is whole.
    fn grew(&mut self, n: usize, max: usize) -> std::io::Result<()> {
        self.filled += n;
        if self.body_len.is_none() && self.filled == 4 {
            let len =
                u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
                    as usize;
            if len > max {
                return Err(std::io::Error::other(format!(
                    "frame of {len} bytes is over the {max}-byte limit"
                )));
            }
            self.body_len = Some(len);
            self.bytes.resize(4 + len, 0);
        }
        Ok(())
    }

    fn eof() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the pipe closed")
    }

    /// Reads from `fd` until the frame is whole or, when nothing arrives
    /// for `spin`, until `block` says to sleep in `poll(2)` (true) or to
    /// return what there is (false). Returns whether the frame is whole.
    pub(crate) fn fill(
        &mut self,
        fd: std::os::fd::RawFd,
        max: usize,
        spin: std::time::Duration,
        block: bool,
    ) -> std::io::Result<bool> {
        let mut since = std::time::Instant::now();
        while !self.is_complete() {
            let filled = self.filled;
            match read_raw(fd, &mut self.bytes[filled..]) {
                Ok(0) => return Err(Self::eof()),
                Ok(n) => {
                    self.grew(n, max)?;
                    since = std::time::Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if since.elapsed() < spin {
                        std::hint::spin_loop();
                    } else if block {
                        let mut pfd = libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd; EINTR just loops.
                        unsafe { libc::poll(&mut pfd, 1, -1) };
                        since = std::time::Instant::now();
                    } else {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Finishes the frame with async reads (after [`fill`](Self::fill)
    /// gave up spinning).
    pub(crate) async fn finish(
        &mut self,
        r: &mut (impl AsyncRead + Unpin),
        max: usize,
    ) -> std::io::Result<()> {
        while !self.is_complete() {
            let filled = self.filled;
            match r.read(&mut self.bytes[filled..]).await? {
                0 => return Err(Self::eof()),
                n => self.grew(n, max)?,
            }
        }
        Ok(())
    }

    /// Takes what `bytes` holds of the frame, as [`fill`](Self::fill)
    /// takes a read; returns how many bytes it took.
    pub(crate) fn feed(&mut self, bytes: &[u8], max: usize) -> std::io::Result<usize> {
        let want = self.bytes.len() - self.filled;
        let n = want.min(bytes.len());
        let filled = self.filled;
        self.bytes[filled..filled + n].copy_from_slice(&bytes[..n]);
        self.grew(n, max)?;
        Ok(n)
    }

    /// Decodes the whole frame's message.
    pub(crate) fn decode<M: Message + Default>(&self) -> std::io::Result<M> {
        M::decode(&self.bytes[4..])
            .map_err(|e| std::io::Error::other(format!("malformed frame: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::time::Duration;

    use super::*;

    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: two valid out-parameters; the descriptors are then owned.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fresh descriptors from pipe(2), each owned once.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    fn request() -> Request {
        let task = Task {
            args: vec!["-T".into(), "two words".into()],
            ..Task::run(b"input".to_vec())
        };
        Request::new([7; 32], Some(b"component"), &task)
    }

    #[test]
    fn a_task_crosses_the_pipe_with_its_arguments() {
        let task = request().task().expect("decodes");
        assert_eq!(task.args, ["-T", "two words"]);
        assert_eq!(task.call, Call::Run(b"input".to_vec()));
    }

    #[test]
    fn a_frame_arriving_in_pieces_is_read_whole_and_no_further() {
        let (r, mut w) = pipe();
        set_nonblocking(r.as_raw_fd()).expect("nonblocking");
        let mut bytes = Vec::new();
        write_frame_blocking(&mut bytes, &request()).expect("encode");
        let (head, tail) = bytes.split_at(3);
        w.write_all(head).expect("write");
        let mut frame = Partial::default();
        let whole = frame.fill(r.as_raw_fd(), 1 << 20, Duration::ZERO, false);
        assert!(!whole.expect("partial read"));
        w.write_all(tail).expect("write");
        w.write_all(b"next frame").expect("write");
        assert!(
            frame
                .fill(r.as_raw_fd(), 1 << 20, SPIN, true)
                .expect("whole")
        );
        assert_eq!(frame.decode::<Request>().expect("decode"), request());
        // The bytes after the frame are still in the pipe.
        let mut rest = [0u8; 10];
        assert_eq!(read_raw(r.as_raw_fd(), &mut rest).expect("rest"), 10);
    }

    #[test]
    fn an_oversized_or_cut_frame_is_an_error() {
        let (r, mut w) = pipe();
        set_nonblocking(r.as_raw_fd()).expect("nonblocking");
        w.write_all(&u32::MAX.to_le_bytes()).expect("write");
        let err = Partial::default()
            .fill(r.as_raw_fd(), 1 << 20, SPIN, true)
            .expect_err("too large");
        assert!(err.to_string().contains("limit"), "{err}");

        let (r, mut w) = pipe();
        set_nonblocking(r.as_raw_fd()).expect("nonblocking");
        w.write_all(&100u32.to_le_bytes()).expect("write");
        drop(w);
        let mut frame = Partial::default();
        let err = frame
            .fill(r.as_raw_fd(), 1 << 20, SPIN, true)
            .expect_err("cut");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(!frame.is_empty());
    }
}
