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

/// Writes one frame: a little-endian u32 length, then the message.
pub(crate) async fn write_frame(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &impl Message,
) -> std::io::Result<()> {
    let body = msg.encode_to_vec();
    let len = u32::try_from(body.len()).map_err(|_| std::io::Error::other("frame over 4 GiB"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads one frame of at most `max` bytes. `Ok(None)` at a clean end of
/// stream before a frame starts.
pub(crate) async fn read_frame<M: Message + Default>(
    r: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> std::io::Result<Option<M>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is over the {max}-byte limit"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    M::decode(body.as_slice())
        .map(Some)
        .map_err(|e| std::io::Error::other(format!("malformed frame: {e}")))
}

/// [`write_frame`] on a blocking writer (the worker's stdout).
pub(crate) fn write_frame_blocking(
    w: &mut impl std::io::Write,
    msg: &impl Message,
) -> std::io::Result<()> {
    let body = msg.encode_to_vec();
    let len = u32::try_from(body.len()).map_err(|_| std::io::Error::other("frame over 4 GiB"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    w.flush()
}

/// [`read_frame`] on a blocking reader (the worker's stdin).
pub(crate) fn read_frame_blocking<M: Message + Default>(
    r: &mut impl std::io::Read,
    max: usize,
) -> std::io::Result<Option<M>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is over the {max}-byte limit"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    M::decode(body.as_slice())
        .map(Some)
        .map_err(|e| std::io::Error::other(format!("malformed frame: {e}")))
}
