//! A pool of long-lived, confined worker processes that run wasm tasks, so
//! that a bug in the JIT that lets a job out of its sandbox lands in a
//! process that can reach nothing.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pc_sandbox::{Artifact, ByteSize, Outcome, SandboxExecutor, Task, TaskError};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Semaphore, watch};

use crate::confine::{self, Confine, Rlimits};
use crate::wire::{self, Request, Response};

/// How the pool starts its workers.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// The worker program: a binary whose `main` calls
    /// [`worker::main`](crate::worker::main) (`p2pctl` itself, with
    /// `worker_args = ["internal", "wasm-worker"]`).
    pub worker: PathBuf,
    /// Arguments that select the worker mode of `worker`.
    pub worker_args: Vec<OsString>,
    /// Worker processes, and so tasks that run at once.
    pub workers: usize,
    /// Largest memory a task may be given, per worker.
    pub max_memory: ByteSize,
    /// As root, the uid (and gid) workers run as.
    pub uid: u32,
    /// Run workers without bubblewrap when it is not installed (rlimits,
    /// own session and uid only). Off by default.
    pub allow_unisolated: bool,
    /// The bubblewrap binary; `None` to look for `bwrap` on `PATH`.
    pub bwrap: Option<PathBuf>,
}

impl PoolConfig {
    /// Two workers of `worker` with the defaults.
    pub fn new(worker: impl Into<PathBuf>, worker_args: Vec<OsString>) -> Self {
        Self {
            worker: worker.into(),
            worker_args,
            workers: 2,
            max_memory: ByteSize::gib(4),
            uid: crate::process::DEFAULT_UID_BASE - 1,
            allow_unisolated: false,
            bwrap: None,
        }
    }
}

/// Time a worker gets past a task's own deadline (which the worker
/// enforces) before the pool gives up on it and kills it.
const GRACE: Duration = Duration::from_secs(2);
/// Extra room in a response frame beyond the output and stderr caps.
const RESPONSE_SLACK: u64 = 16 << 20;

/// A wasm executor whose engine runs in confined child processes. Gives the
/// same outputs and fuel as an in-process [`WasmExecutor`]
/// (`p2pc_sandbox::WasmExecutor`); a worker that dies mid-task ends that
/// task with [`TaskError::WorkerLost`] and is replaced.
#[derive(Clone)]
pub struct WasmPool {
    inner: Arc<Inner>,
}

struct Inner {
    config: PoolConfig,
    /// A root-owned, read-only copy of the worker binary, so a worker uid
    /// can run it wherever the original lives; kept for the pool's life.
    _copy: Option<tempfile::TempDir>,
    bwrap: Option<PathBuf>,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
    busy: watch::Sender<Vec<u32>>,
}

struct Worker {
    child: Child,
    io: WorkerIo,
    pid: u32,
}

struct WorkerIo {
    stdin: ChildStdin,
    stdout: ChildStdout,
    has: HashSet<[u8; 32]>,
}

/// A component ready to send to the pool: its bytes and BLAKE3, hashed
/// once rather than per task.
#[derive(Clone, Debug)]
pub struct PoolProgram {
    hash: [u8; 32],
    bytes: p2pc_sandbox::Bytes,
}

impl PoolProgram {
    /// Hashes `bytes`.
    pub fn new(bytes: impl Into<p2pc_sandbox::Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            hash: *blake3::hash(&bytes).as_bytes(),
            bytes,
        }
    }
}

impl WasmPool {
    /// A pool with `config`. Workers start on first use (or
    /// [`warm`](Self::warm)).
    pub fn new(mut config: PoolConfig) -> Self {
        let bwrap = config.bwrap.clone().or_else(|| confine::find_tool("bwrap"));
        let copy = confine::is_root()
            .then(|| private_copy(&config.worker))
            .and_then(|r| {
                r.map_err(|e| tracing::warn!("cannot copy the wasm worker binary: {e}"))
                    .ok()
            });
        if let Some((_, path)) = &copy {
            config.worker = path.clone();
        }
        Self {
            inner: Arc::new(Inner {
                _copy: copy.map(|(dir, _)| dir),
                slots: Semaphore::new(config.workers.max(1)),
                config,
                bwrap,
                idle: Mutex::new(Vec::new()),
                busy: watch::Sender::new(Vec::new()),
            }),
        }
    }

    /// `bubblewrap`, `rlimits only` or `refused`: what a worker would get.
    pub fn isolation(&self) -> &'static str {
        match (&self.inner.bwrap, self.inner.config.allow_unisolated) {
            (Some(_), _) => "bubblewrap",
            (None, true) => "rlimits only",
            (None, false) => "refused",
        }
    }

    /// Starts every worker now, so the first tasks do not wait for them.
    pub fn warm(&self) -> Result<(), TaskError> {
        let mut idle = self.inner.lock_idle();
        while idle.len() < self.inner.config.workers.max(1) {
            idle.push(self.inner.spawn()?);
        }
        Ok(())
    }

    /// Process ids of the workers running a task right now; changes are
    /// announced on the returned channel. For supervision and tests.
    pub fn busy(&self) -> watch::Receiver<Vec<u32>> {
        self.inner.busy.subscribe()
    }

    /// Process ids of the idle workers.
    pub fn idle_workers(&self) -> Vec<u32> {
        self.inner.lock_idle().iter().map(|w| w.pid).collect()
    }

    /// Runs `task` on `program` in a worker.
    pub async fn run(&self, program: &PoolProgram, task: Task) -> Outcome {
        let start = Instant::now();
        let Ok(_slot) = self.inner.slots.acquire().await else {
            unreachable!("the semaphore is never closed")
        };
        let popped = self.inner.lock_idle().pop();
        let mut worker = match popped {
            Some(w) => w,
            None => match self.inner.spawn() {
                Ok(w) => w,
                Err(e) => return Outcome::rejected(e, start.elapsed()),
            },
        };
        let pid = worker.pid;
        self.inner.busy.send_modify(|b| b.push(pid));
        let budget = task.limits.timeout.saturating_add(GRACE);
        let max_response = task
            .limits
            .output
            .0
            .saturating_add(task.limits.stderr.0)
            .saturating_add(RESPONSE_SLACK);
        // The worker's pipe may outlive the process the pool started (if
        // bubblewrap is killed before its child is set to die with it), so
        // the process ending counts as the worker lost, whatever the pipe.
        let result = tokio::time::timeout(budget, async {
            tokio::select! {
                r = worker.io.call(program, &task, max_response) => r,
                status = worker.child.wait() => Err(std::io::Error::other(match status {
                    Ok(s) => format!("the worker process ended ({s})"),
                    Err(e) => format!("the worker process could not be watched: {e}"),
                })),
            }
        })
        .await;
        self.inner.busy.send_modify(|b| b.retain(|p| *p != pid));
        match result {
            Ok(Ok(outcome)) => {
                self.inner.lock_idle().push(worker);
                outcome
            }
            Ok(Err(e)) => {
                let status = worker.kill().await;
                self.inner.replace();
                Outcome::rejected(
                    TaskError::WorkerLost {
                        reason: format!(
                            "the isolated wasm worker (pid {pid}) failed mid-task: {e}; {status}"
                        ),
                    },
                    start.elapsed(),
                )
            }
            Err(_) => {
                worker.kill().await;
                self.inner.replace();
                Outcome::rejected(TaskError::deadline(task.limits.timeout), start.elapsed())
            }
        }
    }
}

impl SandboxExecutor for WasmPool {
    fn kind(&self) -> &'static str {
        "wasm"
    }

    /// The component's argv is `job`, the artifact's arguments, then the
    /// task's, as in-process.
    async fn execute(&self, artifact: &Artifact, mut task: Task) -> Outcome {
        if !artifact.args.is_empty() {
            task.args.splice(0..0, artifact.args.iter().cloned());
        }
        self.run(&PoolProgram::new(artifact.bytes.clone()), task)
            .await
    }
}

fn closed(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        std::io::Error::other("the worker closed its output")
    } else {
        e
    }
}

/// Copies `worker` into a fresh directory readable and executable by all,
/// writable by none.
fn private_copy(worker: &std::path::Path) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("p2pc-worker-").tempdir()?;
    let path = dir.path().join("p2pc-wasm-worker");
    std::fs::copy(worker, &path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok((dir, path))
}

impl Inner {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a worker in place of a lost one, so the next task does not
    /// pay for the start. A failure here surfaces on the next task.
    fn replace(&self) {
        if let Ok(w) = self.spawn() {
            self.lock_idle().push(w);
        }
    }

    fn spawn(&self) -> Result<Worker, TaskError> {
        let c = &self.config;
        let unavailable = |reason: String| TaskError::ExecutorUnavailable {
            executor: "wasm (isolated)".into(),
            reason,
        };
        let mut cmd = match &self.bwrap {
            Some(bwrap) => {
                let mut cmd = std::process::Command::new(bwrap);
                cmd.args(confine::bwrap_system_args(false));
                cmd.arg("--ro-bind").arg(&c.worker).arg(&c.worker);
                // If bubblewrap itself is killed, the worker goes with it
                // and the node sees its pipe close.
                cmd.arg("--die-with-parent");
                cmd.arg("--").arg(&c.worker);
                cmd
            }
            None if c.allow_unisolated => std::process::Command::new(&c.worker),
            None => {
                return Err(unavailable(
                    "bubblewrap (bwrap) is not installed, and unisolated workers are not \
                     allowed (install bubblewrap, or set allow_unisolated = true under \
                     [executors.wasm])"
                        .into(),
                ));
            }
        };
        cmd.args(&c.worker_args)
            .arg("--max-memory")
            .arg(c.max_memory.0.to_string())
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        let root = confine::is_root();
        Confine {
            rlimits: Rlimits {
                cpu_secs: None,
                // The engine reserves address space for its instance pool up
                // front, so the address space is left alone; each task's
                // memory is bounded by the engine itself.
                address_space: None,
                open_files: 64,
                processes: root.then_some(512),
                file_size: Some(64 << 20),
            },
            run_as: root.then_some(c.uid),
            // Workers outlive the thread that starts them; they exit when
            // their stdin closes instead.
            die_with_parent: false,
        }
        .apply(&mut cmd);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| unavailable(format!("cannot start {}: {e}", c.worker.display())))?;
        let (Some(stdin), Some(stdout), Some(pid)) =
            (child.stdin.take(), child.stdout.take(), child.id())
        else {
            return Err(unavailable("the worker has no pipes".into()));
        };
        Ok(Worker {
            child,
            io: WorkerIo {
                stdin,
                stdout,
                has: HashSet::new(),
            },
            pid,
        })
    }
}

impl WorkerIo {
    async fn call(
        &mut self,
        program: &PoolProgram,
        task: &Task,
        max_response: u64,
    ) -> std::io::Result<Outcome> {
        let max = usize::try_from(max_response).unwrap_or(usize::MAX);
        let known = self.has.contains(&program.hash);
        let req = Request::new(program.hash, (!known).then_some(&program.bytes[..]), task);
        wire::write_frame(&mut self.stdin, &req).await?;
        let mut resp = self.read(max).await?;
        if resp.missing_component {
            let req = Request::new(program.hash, Some(&program.bytes), task);
            wire::write_frame(&mut self.stdin, &req).await?;
            resp = self.read(max).await?;
        }
        self.has.insert(program.hash);
        Ok(resp.into_outcome())
    }

    async fn read(&mut self, max: usize) -> std::io::Result<Response> {
        use std::os::fd::AsRawFd;
        let mut frame = wire::Partial::default();
        // tokio keeps the pipe non-blocking; a raw read that finds nothing
        // leaves its readiness tracking correct.
        let fd = self.stdout.as_raw_fd();
        let whole = frame.fill(fd, max, wire::SPIN, false).map_err(closed)?;
        if !whole {
            frame.finish(&mut self.stdout, max).await.map_err(closed)?;
        }
        frame.decode()
    }
}

impl Worker {
    /// Kills the worker (its whole process group) and says how it ended.
    async fn kill(&mut self) -> String {
        confine::kill_group(self.pid);
        let _ = self.child.start_kill();
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) => format!("it ended with {status}"),
            Ok(Err(e)) => format!("waiting for it failed: {e}"),
            Err(_) => "it did not exit after SIGKILL".into(),
        }
    }
}
