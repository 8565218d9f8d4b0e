//! `p2pctl run`: run a job locally in the sandbox.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use p2pc_exec::{
    ContainerExecutor, ExecutorsConfig, PoolConfig, PoolProgram, ProcessExecutor, WasmPool,
};
use p2pc_sandbox::{
    ByteSize, Call, Config, Grants, Mode, Outcome, Program, SandboxExecutor, Task, TaskError,
    Usage, WasmExecutor, World,
};
use serde_json::json;

use super::EXIT_TASK_FAILED;
use crate::context::{Global, LimitArgs};
use crate::format;

/// Run a job locally in the sandbox.
///
/// COMPONENT is a .wasm component, a signed bundle (.p2pcb), or with
/// --executor a native program or a root file system tarball. A bundle is
/// run only if its signature, component hash and dates verify and its
/// publisher passes --trust; the limits it asks for apply unless a flag
/// overrides them.
///
/// Accepts typed jobs (world p2pc:job/job), map/reduce jobs
/// (p2pc:job/map-reduce: the input is split into shards at line boundaries,
/// each shard is mapped, then the map outputs are reduced) and plain WASI P2
/// commands (the input is their stdin, their stdout is the output).
///
/// The job's output goes to stdout (or --output FILE) and a summary of how it
/// ended (fuel used, peak memory, wall time) to stderr. Runs are
/// deterministic unless --nondeterministic is given: the same component and
/// input give the same output bytes and the same fuel.
///
/// Arguments after `--` go to the job's program: a command component
/// reads them from its argv (after argv[0], and after a bundle's own
/// arguments), like a native program. They are part of what the task is, so
/// they also go into its seed.
///
/// Process and container jobs (bundles packed with --executor, or a bare
/// file with --executor) run only where the operator enables their
/// executor: in node.toml ([executors.process] enabled = true) or for one
/// run with --enable. Their input is stdin and their stdout is the output.
/// They are not deterministic and use no fuel.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The component (.wasm) or signed bundle (.p2pcb) to run.
    component: PathBuf,

    /// Read the job's input from FILE, or from standard input with `-`.
    /// Without it the input is empty.
    #[arg(long, short, value_name = "FILE|-")]
    input: Option<PathBuf>,

    /// Write the job's output to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,

    #[command(flatten)]
    limits: LimitArgs,

    /// Bundles only: accept only these publishers (public key or keystore
    /// name; repeatable). Without it any correctly signed bundle runs.
    #[arg(long, value_name = "KEY")]
    trust: Vec<String>,

    /// Give the job the real clocks and OS randomness instead of the virtual
    /// clock and seeded randomness of deterministic mode.
    #[arg(long)]
    nondeterministic: bool,

    /// Seed for the job's randomness in deterministic mode, as 64 hex
    /// digits. Default: derived from the component and the input.
    #[arg(long, value_name = "HEX", conflicts_with = "nondeterministic")]
    seed: Option<String>,

    /// Give the job an empty scratch directory, visible to it as /scratch and
    /// removed when it ends.
    #[arg(long)]
    scratch: bool,

    /// Let the job open network connections (needs --nondeterministic).
    #[arg(long, requires = "nondeterministic")]
    allow_network: bool,

    /// Map/reduce jobs: split the input into at most N shards.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    shards: u32,

    /// Where compiled components are cached between runs.
    /// Default: $XDG_CACHE_HOME/p2pc/components or ~/.cache/p2pc/components.
    #[arg(long, value_name = "DIR", env = "P2PC_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Compile the component afresh and cache nothing on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,

    /// Print neither the job's log lines nor the summary; errors still go to
    /// stderr.
    #[arg(long, short)]
    quiet: bool,

    /// Bare files only: which executor runs COMPONENT. A bundle names its
    /// own.
    #[arg(long, value_name = "KIND", value_parser = ["wasm", "process", "container"])]
    executor: Option<String>,

    /// Turn an executor on for this run, as node.toml would (repeatable):
    /// process, container, or isolated-wasm (the wasm engine in a confined
    /// worker process).
    #[arg(long, value_name = "EXECUTOR", value_parser = ["process", "container", "isolated-wasm"])]
    enable: Vec<String>,

    /// Let process jobs and isolated wasm workers run without bubblewrap
    /// where it is not installed (rlimits and, as root, an own uid only).
    #[arg(long)]
    allow_unisolated: bool,

    /// The operator's configuration; its [executors] table says which
    /// executors are on. Default: $XDG_CONFIG_HOME/p2pc/node.toml or
    /// ~/.config/p2pc/node.toml, if it exists.
    #[arg(long, value_name = "FILE", env = "P2PC_CONFIG")]
    config: Option<PathBuf>,

    /// Arguments for the job's program, after `--` (e.g. `-- --flag
    /// value`); they follow a bundle's own.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read component {}", args.component.display()))?;
    // Which executor, and the artifact's name and arguments; the bytes are
    // filled in once the bundle (if any) is verified.
    let mut kind = "wasm".to_owned();
    let mut artifact = p2pc_sandbox::Artifact::default();
    let (component, requested) = if bytes.starts_with(p2pc_crypto::BUNDLE_MAGIC) {
        let file = p2pc_crypto::BundleFile::from_vec(bytes)
            .with_context(|| format!("{} is not a usable bundle", args.component.display()))?;
        let bundle = super::bundle::verify(&file, &super::bundle::policy(&args.trust, g)?)
            .with_context(|| format!("refusing to run {}", args.component.display()))?;
        for cap in &bundle.manifest.capabilities {
            if !(cap == "scratch" && args.scratch) {
                bail!(
                    "the bundle asks for the {cap:?} capability; grant it with --{cap} to run it"
                );
            }
        }
        if args.executor.is_some() {
            bail!("a bundle names its own executor; drop --executor");
        }
        artifact.name = bundle.manifest.name.clone();
        artifact.args = bundle.manifest.args.clone();
        kind = bundle.manifest.executor().to_owned();
        (bundle.component, bundle.manifest.limits.unwrap_or_default())
    } else {
        if let Some(k) = &args.executor {
            kind.clone_from(k);
        }
        artifact.name = args
            .component
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !args.trust.is_empty() {
            bail!(
                "--trust applies to signed bundles; {} is a bare component",
                args.component.display()
            );
        }
        (
            bytes::Bytes::from(bytes),
            p2pc_crypto::RequestedLimits::default(),
        )
    };
    // The job's argv after argv[0]: the bundle's own arguments, then those
    // after `--`.
    let argv = p2pc_types::argv(&artifact.args, &args.args).context("the arguments after --")?;
    let limits = args.limits.resolve(&requested);
    let executors = executors_config(&args)?;
    if kind != "wasm" {
        artifact.bytes = component;
        return run_native(&args, g, &executors, &kind, &artifact, limits);
    }
    if limits.memory > ByteSize::gib(4) {
        bail!(
            "--memory {} is more than the 4GiB a 32-bit wasm job can address",
            limits.memory
        );
    }
    let input = read_input(args.input.as_deref())?;
    let fixed = fixed_mode(&args)?;
    let component_hash = *blake3::hash(&component).as_bytes();
    // Each call is seeded from what it is (a map from its shard), as a
    // worker seeds it, unless --seed or --nondeterministic says otherwise.
    let mode_of =
        |call: &Call| fixed.unwrap_or_else(|| Mode::for_call(&component_hash, call, &argv));
    let grants = Grants {
        scratch: args.scratch,
        network: args.allow_network,
    };
    let config = Config {
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir.clone().or_else(default_cache_dir)
        },
        // Maps beyond this wait for a slot; each slot reserves address space.
        max_concurrent: args.shards.clamp(1, 16),
        max_memory: limits.memory.max(ByteSize::mib(64)),
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if executors.wasm.isolated || args.enable.iter().any(|e| e == "isolated-wasm") {
        let report = runtime.block_on(run_isolated(
            &args,
            &executors,
            &component,
            Task {
                mode: fixed.unwrap_or_else(|| Mode::derived(&component_hash, &input, &argv)),
                call: Call::Run(input),
                limits,
                grants,
                args: argv.clone(),
            },
            config.max_memory,
        ))?;
        let code = report.print(&args, g.json, blake3::hash(&component))?;
        return Ok(ExitCode::from(code));
    }
    let report = runtime.block_on(async {
        let executor = WasmExecutor::new(config)?;
        let start = Instant::now();
        let program = match executor.load(&component).await {
            Ok(p) => p,
            Err(e) => return Ok(Report::failed(None, e, start.elapsed())),
        };
        let task = |call: Call| Task {
            mode: mode_of(&call),
            call,
            limits,
            grants,
            args: argv.clone(),
        };
        let report = match program.world() {
            World::MapReduce => {
                // Owned, as each map runs in a task of its own.
                let argv = Arc::new(argv.clone());
                let task = move |call: Call| Task {
                    mode: fixed.unwrap_or_else(|| Mode::for_call(&component_hash, &call, &argv)),
                    call,
                    limits,
                    grants,
                    args: argv.to_vec(),
                };
                map_reduce(&executor, &program, &input, args.shards, task).await
            }
            World::Job | World::Command => Report::from_outcome(
                Some(program.world()),
                executor.run(&program, task(Call::Run(input))).await,
            ),
        };
        anyhow::Ok(report)
    })?;

    let code = report.print(&args, g.json, blake3::hash(&component))?;
    Ok(ExitCode::from(code))
}

/// The [executors] table of the operator's node.toml, if there is one.
fn executors_config(args: &Args) -> anyhow::Result<ExecutorsConfig> {
    let path = match &args.config {
        Some(p) => p.clone(),
        None => match crate::context::xdg_dir("XDG_CONFIG_HOME", ".config") {
            Some(dir) if dir.join("node.toml").exists() => dir.join("node.toml"),
            _ => return Ok(ExecutorsConfig::default()),
        },
    };
    Ok(ExecutorsConfig::load(&path)?)
}

/// Runs a process or container job.
fn run_native(
    args: &Args,
    g: &Global,
    executors: &ExecutorsConfig,
    kind: &str,
    artifact: &p2pc_sandbox::Artifact,
    limits: p2pc_sandbox::Limits,
) -> anyhow::Result<ExitCode> {
    let enabled = |on: bool| on || args.enable.iter().any(|e| e == kind);
    let input = read_input(args.input.as_deref())?;
    let task = Task {
        call: Call::Run(input),
        limits,
        mode: Mode::Nondeterministic,
        grants: Grants {
            scratch: args.scratch,
            network: args.allow_network,
        },
        args: args.args.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (executor, outcome) = match kind {
        "process" => {
            if !enabled(executors.process.enabled) {
                bail!(
                    "this runner does not offer the process executor: enable it in node.toml \
                     ([executors.process] enabled = true) or for this run with --enable process"
                );
            }
            let mut config = executors.process_config();
            config.allow_unisolated |= args.allow_unisolated;
            let exec = ProcessExecutor::new(config);
            (exec.kind(), runtime.block_on(exec.execute(artifact, task)))
        }
        "container" => {
            if !enabled(executors.container.enabled) {
                bail!(
                    "this runner does not offer the container executor: enable it in node.toml \
                     ([executors.container] enabled = true) or for this run with --enable container"
                );
            }
            let exec = ContainerExecutor::new(executors.container_config());
            if let Some(e) = exec.unavailable() {
                bail!("{e}");
            }
            (exec.kind(), runtime.block_on(exec.execute(artifact, task)))
        }
        other => {
            bail!("this runner has no {other:?} executor (it knows wasm, process and container)")
        }
    };
    if let Err(e @ TaskError::ExecutorUnavailable { .. }) = &outcome.result {
        bail!("{e}");
    }
    let mut report = Report::from_outcome(None, outcome);
    report.executor = executor;
    let code = report.print(args, g.json, blake3::hash(&artifact.bytes))?;
    Ok(ExitCode::from(code))
}

/// Runs a wasm job in a confined worker process (`p2pctl internal
/// wasm-worker`) instead of in this process.
async fn run_isolated(
    args: &Args,
    executors: &ExecutorsConfig,
    component: &bytes::Bytes,
    task: Task,
    max_memory: ByteSize,
) -> anyhow::Result<Report> {
    let exe = std::env::current_exe().context("cannot find the p2pctl binary for the worker")?;
    let mut config = PoolConfig::new(exe, vec!["internal".into(), "wasm-worker".into()]);
    config.workers = 1;
    config.max_memory = max_memory;
    config.allow_unisolated = executors.wasm.allow_unisolated || args.allow_unisolated;
    let pool = WasmPool::new(config);
    let program = PoolProgram::new(component.clone());
    let outcome = pool.run(&program, task).await;
    if let Err(TaskError::WrongWorld { reason }) = &outcome.result
        && reason.contains(&World::MapReduce.to_string())
    {
        bail!(
            "map/reduce jobs do not run in isolated workers yet; run this one without \
             --enable isolated-wasm (or with [executors.wasm] isolated = false)"
        );
    }
    if let Err(e @ TaskError::ExecutorUnavailable { .. }) = &outcome.result {
        bail!("{e}");
    }
    let mut report = Report::from_outcome(None, outcome);
    report.executor = "wasm (isolated)";
    Ok(report)
}

fn read_input(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        None => Ok(Vec::new()),
        Some(p) if p == Path::new("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the input from stdin")?;
            Ok(buf)
        }
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read input {}", p.display())),
    }
}

/// The mode `--nondeterministic` or `--seed` fixes for every call; `None`
/// when each call is seeded from what it is ([`Mode::for_call`]).
fn fixed_mode(args: &Args) -> anyhow::Result<Option<Mode>> {
    if args.nondeterministic {
        return Ok(Some(Mode::Nondeterministic));
    }
    let seed = match &args.seed {
        Some(hex_seed) => {
            let bytes = hex::decode(hex_seed).context("--seed is not hexadecimal")?;
            match <[u8; 32]>::try_from(bytes) {
                Ok(seed) => seed,
                Err(b) => bail!(
                    "--seed must be 64 hex digits (32 bytes), got {} bytes",
                    b.len()
                ),
            }
        }
        None => return Ok(None),
    };
    Ok(Some(Mode::Deterministic { seed }))
}

fn default_cache_dir() -> Option<PathBuf> {
    crate::context::xdg_dir("XDG_CACHE_HOME", ".cache").map(|d| d.join("components"))
}

/// Runs `map` over every shard at once, then `reduce` over the map outputs
/// (`p2pc_sandbox::mapreduce`, as a node runs a sharded job).
async fn map_reduce(
    executor: &WasmExecutor,
    program: &Arc<Program>,
    input: &[u8],
    shards: u32,
    task: impl Fn(Call) -> Task + Clone + Send + Sync + 'static,
) -> Report {
    use p2pc_sandbox::mapreduce;
    let start = Instant::now();
    let (executor, program) = (executor.clone(), program.clone());
    let call = move |_: mapreduce::Step, call: Call| {
        let (executor, program, task) = (executor.clone(), program.clone(), task(call));
        async move { executor.run(&program, task).await }
    };
    let output = |o: &Outcome| o.result.as_ref().ok().cloned();
    let steps = mapreduce::run(input, shards as usize, call, output).await;
    let failed = mapreduce::failure(&steps, output);
    let mut total = Report {
        world: Some(World::MapReduce),
        executor: "wasm",
        result: Ok(Vec::new()),
        usage: Usage::default(),
        stderr: Vec::new(),
        logs: Vec::new(),
        tasks: 0,
    };
    for outcome in steps.all() {
        total.add_usage(&outcome.usage);
        total.logs.extend(outcome.logs.iter().cloned());
        total.stderr.extend(&outcome.stderr);
    }
    total.result = match failed {
        None => Ok(steps.reduce.and_then(|r| r.result.ok()).unwrap_or_default()),
        Some(step) => {
            let outcome = match step {
                mapreduce::Step::Map(i) => steps.maps.into_iter().nth(i),
                mapreduce::Step::Reduce => steps.reduce,
            };
            match outcome.map(|o| o.result) {
                Some(Err(e)) => Err((Some(step.to_string()), e)),
                _ => Ok(Vec::new()),
            }
        }
    };
    total.usage.wall_time = start.elapsed();
    total
}

/// What `p2pctl run` prints: one task's outcome, or a map/reduce job's
/// outcomes folded together.
struct Report {
    world: Option<World>,
    /// Which executor ran it.
    executor: &'static str,
    /// The output, or the failing step (for map/reduce) and its error.
    result: Result<Vec<u8>, (Option<String>, TaskError)>,
    usage: Usage,
    stderr: Vec<u8>,
    logs: Vec<p2pc_sandbox::LogLine>,
    tasks: u32,
}

impl Report {
    fn failed(world: Option<World>, error: TaskError, wall_time: Duration) -> Self {
        Self {
            world,
            executor: "wasm",
            result: Err((None, error)),
            usage: Usage {
                wall_time,
                ..Usage::default()
            },
            stderr: Vec::new(),
            logs: Vec::new(),
            tasks: 0,
        }
    }

    fn from_outcome(world: Option<World>, o: Outcome) -> Self {
        Self {
            world,
            executor: "wasm",
            result: o.result.map_err(|e| (None, e)),
            usage: o.usage,
            stderr: o.stderr,
            logs: o.logs,
            tasks: 1,
        }
    }

    /// Folds another task's usage in: fuel adds up, peak memory is the
    /// largest any one task held.
    fn add_usage(&mut self, u: &Usage) {
        self.usage.fuel_used = self.usage.fuel_used.saturating_add(u.fuel_used);
        self.usage.peak_memory = self.usage.peak_memory.max(u.peak_memory);
        self.tasks += 1;
    }

    fn print(&self, args: &Args, json: bool, component_hash: blake3::Hash) -> anyhow::Result<u8> {
        if let (Ok(output), Some(path)) = (&self.result, &args.output) {
            std::fs::write(path, output)
                .with_context(|| format!("cannot write output {}", path.display()))?;
        }
        if json {
            let mut value = json!({
                "ok": self.result.is_ok(),
                "world": self.world.map(|w| w.to_string()),
                "executor": self.executor,
                "component_blake3": component_hash.to_hex().as_str(),
                "fuel_used": self.usage.fuel_used,
                "peak_memory": self.usage.peak_memory,
                "wall_time_us": u64::try_from(self.usage.wall_time.as_micros()).unwrap_or(u64::MAX),
                "logs": self.logs,
                "stderr": String::from_utf8_lossy(&self.stderr),
            });
            match &self.result {
                Ok(output) => {
                    value["ending"] = "success".into();
                    value["output_len"] = output.len().into();
                    value["output_blake3"] = blake3::hash(output).to_hex().as_str().into();
                    if args.output.is_none() {
                        match std::str::from_utf8(output) {
                            Ok(text) => value["output"] = text.into(),
                            Err(_) => {
                                value["output_base64"] = base64::engine::general_purpose::STANDARD
                                    .encode(output)
                                    .into()
                            }
                        }
                    }
                }
                Err((step, e)) => {
                    value["ending"] = e.code().into();
                    value["error"] = json!({ "code": e.code(), "message": e.to_string(), "step": step, "detail": e });
                }
            }
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &value)?;
            writeln!(out)?;
        } else {
            if let (Ok(output), None) = (&self.result, &args.output) {
                let mut out = std::io::stdout().lock();
                out.write_all(output)?;
                out.flush()?;
                // On a terminal, keep the summary off the output's last line
                // without changing the output bytes themselves.
                if std::io::IsTerminal::is_terminal(&out)
                    && !output.is_empty()
                    && !output.ends_with(b"\n")
                {
                    eprintln!();
                }
            }
            self.print_summary(args.quiet);
        }
        Ok(if self.result.is_ok() {
            0
        } else {
            EXIT_TASK_FAILED
        })
    }

    fn print_summary(&self, quiet: bool) {
        if !quiet {
            for line in &self.logs {
                eprintln!(
                    "[job {}] {}",
                    format!("{:?}", line.level).to_lowercase(),
                    line.message
                );
            }
        }
        let usage = format!(
            "fuel {}  peak memory {}  wall {}",
            format::thousands(self.usage.fuel_used),
            ByteSize(self.usage.peak_memory),
            format::duration(self.usage.wall_time),
        );
        match &self.result {
            Ok(_) if quiet => {}
            Ok(_) => {
                let world = self
                    .world
                    .map(|w| w.to_string())
                    .unwrap_or_else(|| self.executor.to_owned());
                let tasks = if self.tasks > 1 {
                    format!("  tasks {}", self.tasks)
                } else {
                    String::new()
                };
                eprintln!("ok ({world})  {usage}{tasks}");
            }
            Err((step, e)) => {
                let text = String::from_utf8_lossy(&self.stderr);
                let text = text.trim_end();
                if !text.is_empty() && !quiet {
                    eprintln!("--- job stderr ---\n{text}\n---");
                }
                match step {
                    Some(step) => eprintln!("error: {step}: {e}"),
                    None => eprintln!("error: {e}"),
                }
                eprintln!("  {usage}");
            }
        }
    }
}
