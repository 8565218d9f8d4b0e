//! Everything one task's `Store` holds, and the `p2pc:job/host` interface
//! implemented on it.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{Level, host, job};
use crate::determinism::{FixedWallClock, SeededRng, SteppingClock};
use crate::limiter::MemoryLimiter;
use crate::pipe::{CappedPipe, OutputOverflow};
use crate::task::{Grants, LogLevel, LogLine, Mode, Task};

/// Longest log line kept; longer lines are cut at a character boundary.
const MAX_LOG_LINE: usize = 4096;

pub(crate) struct TaskState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// Command stdout, or typed-job `emit` output.
    pub(crate) output: CappedPipe,
    pub(crate) diagnostics: CappedPipe,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) logs_dropped: u64,
    log_limit: usize,
    pub(crate) progress: Option<(u64, u64)>,
    /// Where progress goes as it is reported, if anyone listens.
    pub(crate) progress_sink: Option<crate::executor::ProgressSink>,
}

impl TaskState {
    /// Builds the WASI context a task sees. `stdin` is the input of a command
    /// component; typed jobs get an empty stdin.
    pub(crate) fn new(
        task: &Task,
        stdin: crate::stdin::Stdin,
        is_command: bool,
        scratch: Option<&std::path::Path>,
    ) -> wasmtime::Result<Self> {
        let limits = &task.limits;
        let output = CappedPipe::output(to_usize(limits.output.bytes()));
        let diagnostics = CappedPipe::diagnostics(to_usize(limits.stderr.bytes()));

        let mut b = WasiCtxBuilder::new();
        b.stdin(stdin);
        // A typed job's output is what `run` returns; anything it prints is
        // a diagnostic, like stderr.
        b.stdout(if is_command {
            output.clone()
        } else {
            diagnostics.clone()
        });
        b.stderr(diagnostics.clone());
        // Hostile guests must not make the host allocate big buffers.
        b.max_random_size(1 << 20);
        // argv[0] is the same everywhere so replicas see the same argv.
        b.arg("job");
        b.args(&task.args);

        if let Mode::Deterministic { seed } = task.mode {
            b.wall_clock(FixedWallClock);
            b.monotonic_clock(SteppingClock::new());
            b.secure_random(SeededRng::new(&seed, "secure"));
            b.insecure_random(SeededRng::new(&seed, "insecure"));
            b.insecure_random_seed(SeededRng::seed_u128(&seed));
        }
        apply_grants(&mut b, &task.grants, scratch)?;

        Ok(Self {
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory.bytes()),
            output,
            diagnostics,
            logs: Vec::new(),
            logs_dropped: 0,
            log_limit: limits.log_lines as usize,
            progress: None,
            progress_sink: None,
        })
    }
}

fn apply_grants(
    b: &mut WasiCtxBuilder,
    grants: &Grants,
    scratch: Option<&std::path::Path>,
) -> wasmtime::Result<()> {
    if let Some(dir) = scratch {
        b.preopened_dir(dir, "/scratch", wasmtime_wasi::FsPerms::ReadWrite)?;
    }
    if grants.network {
        b.inherit_network();
        b.allow_ip_name_lookup(true);
        b.allow_tcp(true);
        b.allow_udp(true);
    } else {
        b.allow_ip_name_lookup(false);
        b.allow_tcp(false);
        b.allow_udp(false);
    }
    Ok(())
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for TaskState {
    fn log(&mut self, level: Level, mut message: String) {
        if self.logs.len() >= self.log_limit {
            self.logs_dropped += 1;
            return;
        }
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        tracing::debug!(target: "p2pc::job", ?level, "{message}");
        self.logs.push(LogLine { level, message });
    }

    fn progress(&mut self, done: u64, total: u64) {
        self.progress = Some((done, total));
        if let Some(sink) = &self.progress_sink {
            sink.send_replace(self.progress);
        }
    }

    fn emit(&mut self, bytes: Vec<u8>) -> wasmtime::Result<()> {
        use wasmtime_wasi::p2::OutputStream;
        match self.output.write(bytes.into()) {
            Ok(()) => Ok(()),
            Err(_) => Err(wasmtime::Error::new(OutputOverflow)),
        }
    }
}

impl job::p2pc::job::types::Host for TaskState {}
