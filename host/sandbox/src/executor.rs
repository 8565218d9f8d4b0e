//! [`WasmExecutor`]: loads components into programs and runs tasks on them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use p2pc_types::{TaskError, Usage, World};
use tokio::sync::Semaphore;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    CallHook, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::bindings::JobError;
use crate::bindings::job::{Job, JobPre};
use crate::bindings::map_reduce::MapReducePre;
use crate::cache::{self, CacheStats, ProgramCache};
use crate::pipe::OutputOverflow;
use crate::state::TaskState;
use crate::stdin::{Stdin, StreamedInput};
use crate::task::{Call, Mode, Outcome, Task};
use crate::{Artifact, Config, Error, SandboxExecutor};

/// Interfaces a component may import. Anything else is a capability this
/// runner does not have, and the component is refused before it runs.
const PROVIDED: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "p2pc:job/",
];
/// Interfaces that need the network grant.
const NETWORK: &str = "wasi:sockets/";

/// A compiled, linked component, ready to instantiate in microseconds.
/// Obtained from [`WasmExecutor::load`]; cheap to share.
pub struct Program {
    hash: [u8; 32],
    world: World,
    network_imports: Vec<String>,
    pre: Pre,
}

enum Pre {
    Job(JobPre<TaskState>),
    MapReduce(MapReducePre<TaskState>),
    Command(CommandPre<TaskState>),
}

impl Program {
    /// BLAKE3 of the component bytes.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The world the component was built for.
    pub fn world(&self) -> World {
        self.world
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("hash", &hex::encode(self.hash))
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

/// Runs WebAssembly components in a fuel-, memory- and time-limited sandbox.
///
/// One executor owns one wasmtime `Engine` (Cranelift, pooling allocator,
/// fuel metering that also keeps deadlines) and serves many concurrent tasks. Cloning
/// is cheap and shares everything.
///
/// Order of use: [`new`](Self::new) once; [`load`](Self::load) a component
/// (compiles it, or finds it cached); [`run`](Self::run) tasks on the
/// program as often as needed, concurrently if you like.
#[derive(Clone)]
pub struct WasmExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<TaskState>,
    fingerprint: [u8; 32],
    programs: ProgramCache,
    slots: Semaphore,
    config: Config,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl WasmExecutor {
    /// Builds the engine (and, with fuel metering off, starts its deadline
    /// clock).
    pub fn new(config: Config) -> Result<Self, Error> {
        let engine = Engine::new(&engine_config(&config)?).map_err(Error::Engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(Error::Engine)?;
        Job::add_to_linker::<_, wasmtime::component::HasSelf<TaskState>>(&mut linker, |s| s)
            .map_err(Error::Engine)?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::CacheDir {
                path: dir.clone(),
                source,
            })?;
        }

        let ticker_stop = Arc::new(AtomicBool::new(false));
        if epochs(&config) {
            spawn_epoch_ticker(engine.clone(), config.epoch_tick, ticker_stop.clone())?;
        }

        Ok(Self {
            inner: Arc::new(Inner {
                fingerprint: cache::engine_fingerprint(&engine),
                engine,
                linker,
                programs: ProgramCache::new(config.program_cache_entries),
                slots: Semaphore::new(config.max_concurrent as usize),
                config,
                ticker_stop,
            }),
        })
    }

    /// The executor's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Cache counters since this executor was created.
    pub fn stats(&self) -> CacheStats {
        self.inner.programs.counters.snapshot()
    }

    /// Turns component bytes into a [`Program`]: checks they are a component
    /// of a world p2pc runs, importing nothing the runner lacks; compiles it
    /// (or loads the cached compilation); and pre-links it.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<Program>, TaskError> {
        let hash = *blake3::hash(bytes).as_bytes();
        if let Some(program) = self.inner.programs.get(&hash) {
            return Ok(program);
        }
        check_header(bytes)?;

        let inner = self.inner.clone();
        let owned = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || {
            cache::compile_or_load(
                &inner.engine,
                inner.config.cache_dir.as_deref(),
                &inner.fingerprint,
                &hash,
                &owned,
                &inner.programs.counters,
            )
        })
        .await
        .map_err(|e| TaskError::InvalidComponent {
            reason: format!("compilation did not finish: {e}"),
        })?
        .map_err(|e| TaskError::InvalidComponent {
            reason: format!("{e:#}"),
        })?;

        let program = Arc::new(self.link(hash, &component)?);
        self.inner.programs.insert(program.clone());
        Ok(program)
    }

    fn link(&self, hash: [u8; 32], component: &Component) -> Result<Program, TaskError> {
        let engine = &self.inner.engine;
        let ty = component.component_type();

        let mut network_imports = Vec::new();
        for (name, _) in ty.imports(engine) {
            if name.starts_with(NETWORK) {
                network_imports.push(name.to_owned());
            } else if !PROVIDED.iter().any(|p| name.starts_with(p)) {
                return Err(TaskError::CapabilityDenied {
                    capability: format!(
                        "the component imports `{name}`, which this runner does not provide"
                    ),
                });
            }
        }

        let world = detect_world(engine, component)?;
        let pre = self.inner.linker.instantiate_pre(component).map_err(|e| {
            TaskError::CapabilityDenied {
                capability: format!("the component's imports cannot be satisfied: {e:#}"),
            }
        })?;
        let wrong = |e: wasmtime::Error| TaskError::WrongWorld {
            reason: format!("exports look like {world} but do not match it: {e:#}"),
        };
        let pre = match world {
            World::Job => Pre::Job(JobPre::new(pre).map_err(wrong)?),
            World::MapReduce => Pre::MapReduce(MapReducePre::new(pre).map_err(wrong)?),
            World::Command => Pre::Command(CommandPre::new(pre).map_err(wrong)?),
        };
        Ok(Program {
            hash,
            world,
            network_imports,
            pre,
        })
    }

    /// Loads `bytes` and runs one task on it. Load failures come back as the
    /// outcome's error, like any other ending.
    pub async fn run_component(&self, bytes: &[u8], task: Task) -> Outcome {
        let start = Instant::now();
        match self.load(bytes).await {
            Ok(program) => self.run(&program, task).await,
            Err(e) => Outcome::rejected(e, start.elapsed()),
        }
    }

    /// Runs one task on a loaded program. Never panics and never hangs past
    /// the task's timeout: every ending is an [`Outcome`].
    pub async fn run(&self, program: &Program, task: Task) -> Outcome {
        self.run_reporting(program, task, None).await
    }

    /// Like [`run`](Self::run), and every `host.progress` call the job
    /// makes is sent on `progress` as it happens (the last value wins), so
    /// a caller can pass progress on while the task runs.
    pub async fn run_reporting(
        &self,
        program: &Program,
        task: Task,
        progress: Option<ProgressSink>,
    ) -> Outcome {
        self.run_with(program, task, progress, None).await
    }

    async fn run_with(
        &self,
        program: &Program,
        task: Task,
        progress: Option<ProgressSink>,
        streamed: Option<StreamedInput>,
    ) -> Outcome {
        let start = Instant::now();
        if let Err(e) = self.admit(program, &task) {
            return Outcome::rejected(e, start.elapsed());
        }
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");

        let is_command = program.world == World::Command;
        let (scratch, mut state) = match prepare(&task, is_command, streamed) {
            Ok(prepared) => prepared,
            Err(e) => return Outcome::rejected(e, start.elapsed()),
        };
        state.progress_sink = progress;

        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        let fuel_limit = task.limits.fuel;
        // A timeout too large to add is no deadline at all (fuel still ends
        // the task).
        let deadline = start
            .checked_add(task.limits.timeout)
            .filter(|_| self.inner.config.deadlines != crate::Deadlines::Off);
        let config = &self.inner.config;
        if config.fuel_metering {
            store
                .set_fuel(fuel_limit)
                .expect("fuel metering is enabled");
        }
        if config.fuel_metering && !epochs(config) {
            // The guest yields every so much fuel; `until_deadline` ends it
            // at the first yield past the deadline. Yields never change the
            // fuel used, only where the host gets control.
            store
                .fuel_async_yield_interval(Some(config.fuel_yield_interval.max(1)))
                .expect("fuel metering is enabled");
        } else if epochs(config) {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    Ok(UpdateDeadline::Interrupt)
                } else {
                    // Yielding at every tick lets one thread interleave many
                    // long-running tasks fairly.
                    Ok(UpdateDeadline::Yield(1))
                }
            });
        }

        if let Some(deadline) = deadline {
            // Host calls use little fuel for what they may do (a megabyte
            // of randomness, a large log line), so fuel yields alone could
            // let a loop of them run on: the deadline is also checked as
            // the guest enters and leaves each one.
            store.call_hook(move |_, hook| match hook {
                CallHook::CallingHost | CallHook::ReturningFromHost
                    if Instant::now() >= deadline =>
                {
                    Err(wasmtime::Error::new(Trap::Interrupt))
                }
                _ => Ok(()),
            });
        }
        let call = call(&program.pre, &mut store, task.call);
        let raw = until_deadline(call, deadline).await;
        let wall_time = start.elapsed();

        let fuel_used = if self.inner.config.fuel_metering {
            fuel_limit.saturating_sub(store.get_fuel().unwrap_or(0))
        } else {
            0
        };
        let state = store.into_data();
        drop(scratch);
        let usage = Usage {
            fuel_used,
            peak_memory: state.limiter.peak(),
            wall_time,
        };
        let stderr = state.diagnostics.take();
        let result = classify(raw, &state, &task.limits, &stderr, is_command);
        Outcome {
            result,
            usage,
            stderr,
            logs: state.logs,
            logs_dropped: state.logs_dropped,
            progress: state.progress,
        }
    }

    /// Checks a task against the program and the runner before any slot or
    /// memory is spent on it.
    fn admit(&self, program: &Program, task: &Task) -> Result<(), TaskError> {
        let fits = matches!(
            (program.world, &task.call),
            (World::Job | World::Command, Call::Run(_))
                | (World::MapReduce, Call::Map(_) | Call::Reduce(_))
        );
        if !fits {
            return Err(TaskError::WrongWorld {
                reason: format!(
                    "the task calls `{}` but the component is a {} component",
                    task.call.name(),
                    program.world
                ),
            });
        }
        if let Some(import) = program.network_imports.first()
            && !task.grants.network
        {
            return Err(TaskError::CapabilityDenied {
                capability: format!(
                    "network: the component imports `{import}` and the task is not granted network access"
                ),
            });
        }
        if task.grants.network && matches!(task.mode, Mode::Deterministic { .. }) {
            return Err(TaskError::CapabilityDenied {
                capability: "network: a deterministic task cannot be granted network access".into(),
            });
        }
        if let Err(e) = p2pc_types::check_args(&task.args) {
            return Err(TaskError::CapabilityDenied {
                capability: format!("arguments: {e}"),
            });
        }
        let max = self.inner.config.max_memory;
        if task.limits.memory > max {
            return Err(TaskError::CapabilityDenied {
                capability: format!(
                    "memory: the task asks for {} and this runner offers at most {max}",
                    task.limits.memory
                ),
            });
        }
        Ok(())
    }
}

impl SandboxExecutor for WasmExecutor {
    fn kind(&self) -> &'static str {
        "wasm"
    }

    /// The component's argv is `job`, the artifact's arguments, then the
    /// task's.
    async fn execute(&self, artifact: &Artifact, task: Task) -> Outcome {
        self.execute_reporting(artifact, task, None).await
    }
}

impl WasmExecutor {
    /// Runs a command component with `input` streamed to its stdin as the
    /// producer feeds it (the task's own `Run` input is ignored), so an
    /// input of any size runs in bounded memory. Components of other worlds
    /// take their input whole and are refused here.
    pub async fn execute_streamed(
        &self,
        artifact: &Artifact,
        task: Task,
        input: StreamedInput,
        progress: Option<ProgressSink>,
    ) -> Outcome {
        self.execute_with(artifact, task, progress, Some(input))
            .await
    }

    /// [`SandboxExecutor::execute`], with the job's progress sent on
    /// `progress` as it happens (see [`run_reporting`](Self::run_reporting)).
    pub async fn execute_reporting(
        &self,
        artifact: &Artifact,
        task: Task,
        progress: Option<ProgressSink>,
    ) -> Outcome {
        self.execute_with(artifact, task, progress, None).await
    }

    async fn execute_with(
        &self,
        artifact: &Artifact,
        mut task: Task,
        progress: Option<ProgressSink>,
        streamed: Option<StreamedInput>,
    ) -> Outcome {
        if !artifact.args.is_empty() {
            task.args.splice(0..0, artifact.args.iter().cloned());
        }
        let start = Instant::now();
        match self.load(&artifact.bytes).await {
            Ok(program) if streamed.is_some() && program.world != World::Command => {
                Outcome::rejected(
                    TaskError::WrongWorld {
                        reason: format!(
                            "a streamed input is a command's stdin; this component is {}",
                            program.world
                        ),
                    },
                    start.elapsed(),
                )
            }
            Ok(program) => self.run_with(&program, task, progress, streamed).await,
            Err(e) => Outcome::rejected(e, start.elapsed()),
        }
    }
}

/// Where a running job's progress goes: the latest `(done, total)` it
/// reported through `host.progress`.
pub type ProgressSink = tokio::sync::watch::Sender<Option<(u64, u64)>>;

/// Creates what a task is granted and the state its store holds. The
/// scratch directory, if any, lives until the returned handle is dropped.
fn prepare(
    task: &Task,
    is_command: bool,
    streamed: Option<StreamedInput>,
) -> Result<(Option<tempfile::TempDir>, TaskState), TaskError> {
    let denied = |what: String| TaskError::CapabilityDenied { capability: what };
    let scratch = task
        .grants
        .scratch
        .then(tempfile::TempDir::new)
        .transpose()
        .map_err(|e| denied(format!("scratch directory could not be created: {e}")))?;
    let stdin = match (streamed, &task.call, is_command) {
        (Some(input), _, true) => Stdin::streamed(input),
        (None, Call::Run(input), true) => Stdin::memory(input.clone()),
        _ => Stdin::memory(Vec::new()),
    };
    let state = TaskState::new(task, stdin, is_command, scratch.as_ref().map(|d| d.path()))
        .map_err(|e| denied(format!("{e:#}")))?;
    Ok((scratch, state))
}

/// What the guest call returned: output bytes, or the job's own error.
type CallResult = wasmtime::Result<Result<Vec<u8>, String>>;

async fn call(pre: &Pre, store: &mut Store<TaskState>, call: Call) -> CallResult {
    let job_result = |r: Result<Vec<u8>, JobError>| {
        r.map_err(|e| match e {
            JobError::InvalidInput(m) => format!("invalid input: {m}"),
            JobError::Failed(m) => m,
        })
    };
    match (pre, call) {
        (Pre::Job(pre), Call::Run(input)) => {
            let job = pre.instantiate_async(&mut *store).await?;
            Ok(job_result(job.call_run(&mut *store, &input).await?))
        }
        (Pre::MapReduce(pre), Call::Map(shard)) => {
            let job = pre.instantiate_async(&mut *store).await?;
            Ok(job_result(job.call_map(&mut *store, &shard).await?))
        }
        (Pre::MapReduce(pre), Call::Reduce(outputs)) => {
            let job = pre.instantiate_async(&mut *store).await?;
            Ok(job_result(job.call_reduce(&mut *store, &outputs).await?))
        }
        (Pre::Command(pre), Call::Run(_)) => {
            let cmd = pre.instantiate_async(&mut *store).await?;
            match cmd.wasi_cli_run().call_run(&mut *store).await {
                Ok(Ok(())) => Ok(Ok(Vec::new())),
                Ok(Err(())) => Ok(Err("exit status 1".into())),
                Err(e) => match e.downcast_ref::<I32Exit>() {
                    Some(I32Exit(0)) => Ok(Ok(Vec::new())),
                    Some(I32Exit(code)) => Ok(Err(format!("exit status {code}"))),
                    None => Err(e),
                },
            }
        }
        _ => unreachable!("`admit` checked that the call fits the world"),
    }
}

/// Turns what the call returned into the task's result, naming the limit or
/// problem that ended it.
fn classify(
    raw: CallResult,
    state: &TaskState,
    limits: &p2pc_types::Limits,
    stderr: &[u8],
    is_command: bool,
) -> Result<Vec<u8>, TaskError> {
    let output_too_large = || TaskError::OutputTooLarge {
        limit: limits.output,
    };
    match raw {
        Ok(Ok(returned)) => {
            let mut output = state.output.take();
            if !is_command {
                if output.len() as u64 + returned.len() as u64 > limits.output.bytes() {
                    return Err(output_too_large());
                }
                output.extend_from_slice(&returned);
            }
            Ok(output)
        }
        Ok(Err(message)) => Err(TaskError::GuestError { message }),
        Err(e) => {
            if state.output.overflowed() || e.is::<OutputOverflow>() {
                return Err(output_too_large());
            }
            let trap = e.downcast_ref::<Trap>();
            if trap == Some(&Trap::MemoryOutOfBounds)
                && let Some(function) = runaway_recursion(&e)
            {
                return Err(TaskError::StackOverflow {
                    in_memory: true,
                    function,
                });
            }
            match trap {
                Some(Trap::OutOfFuel) => Err(TaskError::OutOfFuel { limit: limits.fuel }),
                Some(Trap::StackOverflow) => Err(TaskError::StackOverflow {
                    in_memory: false,
                    function: None,
                }),
                Some(Trap::Interrupt) => Err(TaskError::deadline(limits.timeout)),
                // A guest whose allocation was refused aborts with a trap of
                // its own choosing; the limiter knows the real reason.
                _ if state.limiter.was_denied() => Err(TaskError::MemoryLimit {
                    limit: limits.memory,
                }),
                Some(trap) => Err(TaskError::Trap {
                    message: with_last_line(trap.to_string(), stderr),
                }),
                None => Err(TaskError::Trap {
                    message: with_last_line(format!("{e:#}"), stderr),
                }),
            }
        }
    }
}

/// Frames of a trap's backtrace kept (innermost first): enough to see a
/// recursion, cheap to take once per trap.
const BACKTRACE_FRAMES: usize = 64;

/// Whether an out-of-bounds access is the job's own stack running out.
///
/// A Rust or C job keeps its stack in linear memory, below its data
/// (`--stack-first`), so running past its end makes the stack pointer
/// wrap and the next store land far out of bounds. The stack pointer is
/// a global of the job's core module, out of reach through a component,
/// so the evidence is the backtrace: every frame taken (all
/// [`BACKTRACE_FRAMES`] of them) but a few innermost ones (a `memset` the
/// frame's set-up called) repeats a cycle of at most four functions. A
/// stray access rarely happens that deep in a recursion; one that does is
/// reported as the overflow the job was heading for anyway.
///
/// Returns the recursing function's name, if the component has one.
fn runaway_recursion(e: &wasmtime::Error) -> Option<Option<String>> {
    let frames = e.downcast_ref::<wasmtime::WasmBacktrace>()?.frames();
    if frames.len() < BACKTRACE_FRAMES {
        return None;
    }
    let same = |a: &wasmtime::FrameInfo, b: &wasmtime::FrameInfo| {
        a.func_index() == b.func_index() && a.func_name() == b.func_name()
    };
    for skip in 0..=4 {
        let window = &frames[skip..];
        for period in 1..=4 {
            if window
                .iter()
                .zip(&window[period..])
                .all(|(a, b)| same(a, b))
            {
                let name = window[..period]
                    .iter()
                    .find_map(|f| f.func_name())
                    .map(str::to_owned);
                return Some(name);
            }
        }
    }
    None
}

/// Appends the last line the guest printed (a Rust panic message, usually)
/// to a trap description.
fn with_last_line(mut message: String, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    // Skip Rust's "note: run with RUST_BACKTRACE=1" hint: the line before it
    // is the panic message, which is what a reader wants.
    if let Some(line) = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("note: "))
    {
        let line: String = line.chars().take(300).collect();
        message.push_str(" (stderr: ");
        message.push_str(line.trim());
        message.push(')');
    }
    message
}

fn check_header(bytes: &[u8]) -> Result<(), TaskError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: &[u8] = &[1, 0, 0, 0];
    let invalid = |reason: &str| {
        Err(TaskError::InvalidComponent {
            reason: reason.to_owned(),
        })
    };
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return invalid("not WebAssembly (the file does not start with the \\0asm magic number)");
    }
    if &bytes[4..8] == CORE_VERSION {
        return invalid(
            "this is a core WebAssembly module, not a component; build it with \
             `cargo component build` or `cargo build --target wasm32-wasip2`",
        );
    }
    Ok(())
}

fn detect_world(engine: &Engine, component: &Component) -> Result<World, TaskError> {
    let ty = component.component_type();
    let exports: Vec<(String, bool)> = ty
        .exports(engine)
        .map(|(name, item)| {
            (
                name.to_owned(),
                matches!(item.ty, ComponentItem::ComponentFunc(_)),
            )
        })
        .collect();
    let func = |n: &str| exports.iter().any(|(name, f)| name == n && *f);
    if func("run") {
        Ok(World::Job)
    } else if func("map") && func("reduce") {
        Ok(World::MapReduce)
    } else if exports
        .iter()
        .any(|(n, _)| n.starts_with("wasi:cli/run@0.2"))
    {
        Ok(World::Command)
    } else {
        let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
        Err(TaskError::WrongWorld {
            reason: format!(
                "the component exports [{}]; p2pc runs {} (export `run`), {} (exports `map` \
                 and `reduce`) and {} (export `wasi:cli/run`)",
                names.join(", "),
                World::Job,
                World::MapReduce,
                World::Command
            ),
        })
    }
}

/// Whether deadlines are kept by epoch interruption: without fuel
/// metering (which keeps them at its own yield points), or when asked.
fn epochs(config: &Config) -> bool {
    match config.deadlines {
        crate::Deadlines::Auto => !config.fuel_metering,
        crate::Deadlines::Epoch => true,
        crate::Deadlines::Off => false,
    }
}

/// Runs a task's call until it ends or `deadline` passes. The call is
/// polled first, so a task that finishes as its deadline passes is not
/// cut off; then the clock is read at every point the guest yields (each
/// `fuel_yield_interval` of fuel, each epoch tick) and a timer covers a
/// guest waiting in a host call. Past the deadline the call is dropped
/// (wasmtime disposes of its stack) and the task ends as an interrupt,
/// which is reported as a deadline.
async fn until_deadline<T>(
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
    deadline: Option<Instant>,
) -> wasmtime::Result<T> {
    let Some(deadline) = deadline else {
        return call.await;
    };
    let mut call = std::pin::pin!(call);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(tokio::time::Instant::from_std(
        deadline
    )));
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(r) = call.as_mut().poll(cx) {
            return std::task::Poll::Ready(r);
        }
        // A guest that yields (and so is woken at once) keeps this task
        // busy; the timer alone could fire late then. The clock is read
        // at each yield instead: once per fuel interval.
        if Instant::now() >= deadline || timer.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Err(wasmtime::Error::new(Trap::Interrupt)));
        }
        std::task::Poll::Pending
    })
    .await
}

fn engine_config(config: &Config) -> Result<wasmtime::Config, Error> {
    let mut pool = PoolingAllocationConfig::default();
    let slots = config.max_concurrent.max(1);
    let max_memory = usize::try_from(config.max_memory.bytes()).unwrap_or(usize::MAX);
    pool.total_component_instances(slots)
        // A component built by cargo-component links a few core instances
        // (the program, the WASI adapter, shims); leave room for more.
        .total_core_instances(slots * 16)
        .total_memories(slots * 4)
        .total_tables(slots * 16)
        .total_stacks(slots)
        .max_memory_size(max_memory);

    let mut c = wasmtime::Config::new();
    c.strategy(wasmtime::Strategy::Cranelift)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .consume_fuel(config.fuel_metering)
        // With fuel on, deadlines are kept at fuel yields: no epoch checks
        // in every loop and call.
        .epoch_interruption(epochs(config))
        .max_wasm_stack(config.max_wasm_stack)
        .async_stack_size(config.max_wasm_stack.saturating_add(1024 * 1024))
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES))
        // Determinism is engine-wide: it costs little and means any replica
        // computes the same bits. Wasm threads are compiled out (the
        // `threads` feature is off), so there is no scheduling to vary.
        .cranelift_nan_canonicalization(config.nan_canonicalization)
        .relaxed_simd_deterministic(true)
        .wasm_component_model(true);
    if config.max_memory.bytes() > 4 << 30 {
        return Err(Error::MemoryCeiling(config.max_memory));
    }
    Ok(c)
}

fn spawn_epoch_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) -> Result<(), Error> {
    std::thread::Builder::new()
        .name("p2pc-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .map(drop)
        .map_err(Error::Thread)
}

/// Where a component cache file lives. Exposed for tests that damage it.
#[doc(hidden)]
pub fn cache_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
