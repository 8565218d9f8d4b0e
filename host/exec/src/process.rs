//! The process executor: a native program run as a confined child process.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use p2pc_sandbox::{Artifact, ByteSize, Call, Outcome, SandboxExecutor, Task, TaskError, Usage};

use crate::confine::{self, Confine, Exit, Rlimits, UidSlots};
use crate::io::{Capture, Event};

/// How the process executor confines programs.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// Run programs without bubblewrap when it is not installed (rlimits,
    /// own session and, as root, an own uid only; no namespaces). Off by
    /// default: without bubblewrap the executor refuses every task.
    pub allow_unisolated: bool,
    /// Where per-task directories are made. Default: the system temp dir.
    pub work_root: PathBuf,
    /// As root, tasks run as uids `uid_base..uid_base + 4 * slots`, one per
    /// running task; `slots` also caps how many run at once.
    pub uid_base: u32,
    /// Tasks that may run at once.
    pub slots: u32,
    /// Open files per task.
    pub open_files: u64,
    /// Processes and threads per task.
    pub processes: u64,
    /// Largest file a task may write in its working directory or `/tmp`.
    pub file_size: ByteSize,
    /// The bubblewrap binary; `None` to look for `bwrap` on `PATH`.
    pub bwrap: Option<PathBuf>,
    /// Use bubblewrap when it is there. Off only to run unisolated on
    /// purpose (with `allow_unisolated`).
    pub use_bwrap: bool,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            allow_unisolated: false,
            work_root: std::env::temp_dir(),
            uid_base: DEFAULT_UID_BASE,
            slots: 16,
            open_files: 256,
            processes: 64,
            file_size: ByteSize::mib(64),
            bwrap: None,
            use_bwrap: true,
        }
    }
}

/// First uid of the range given to process tasks when the node is root:
/// far above any uid a distribution hands out.
pub const DEFAULT_UID_BASE: u32 = 2_000_000_000;

/// Runs native programs under rlimits, in their own session, with an empty
/// environment and a fresh working directory, and inside bubblewrap
/// namespaces where bubblewrap is installed.
///
/// The artifact is the program's bytes; it is written to a fresh directory
/// and run as `argv[0] = artifact.name` with `artifact.args` then
/// `task.args`. The task's
/// input is its stdin and its stdout is the output.
#[derive(Clone, Debug)]
pub struct ProcessExecutor {
    config: Arc<ProcessConfig>,
    bwrap: Option<PathBuf>,
    slots: Option<Arc<UidSlots>>,
    running: Arc<tokio::sync::Semaphore>,
}

impl ProcessExecutor {
    /// An executor with `config`. Finds bubblewrap now; whether tasks may
    /// run without it is decided per task (see
    /// [`ProcessConfig::allow_unisolated`]).
    pub fn new(config: ProcessConfig) -> Self {
        let bwrap = if config.use_bwrap {
            config.bwrap.clone().or_else(|| confine::find_tool("bwrap"))
        } else {
            None
        };
        let slots = confine::is_root().then(|| UidSlots::new(config.uid_base, config.slots));
        Self {
            running: Arc::new(tokio::sync::Semaphore::new(config.slots.max(1) as usize)),
            config: Arc::new(config),
            bwrap,
            slots,
        }
    }

    /// `bubblewrap`, `rlimits only` or `refused`: what a task would get.
    pub fn isolation(&self) -> &'static str {
        match (&self.bwrap, self.config.allow_unisolated) {
            (Some(_), _) => "bubblewrap",
            (None, true) => "rlimits only",
            (None, false) => "refused",
        }
    }

    /// Why tasks cannot run here, if they cannot.
    pub fn unavailable(&self) -> Option<TaskError> {
        (self.bwrap.is_none() && !self.config.allow_unisolated).then(|| {
            TaskError::ExecutorUnavailable {
                executor: "process".into(),
                reason: "bubblewrap (bwrap) is not installed, and this runner does not allow \
                         unisolated processes (install bubblewrap, or set \
                         allow_unisolated = true under [executors.process])"
                    .into(),
            }
        })
    }
}

impl SandboxExecutor for ProcessExecutor {
    fn kind(&self) -> &'static str {
        "process"
    }

    async fn execute(&self, artifact: &Artifact, task: Task) -> Outcome {
        let start = Instant::now();
        if let Some(e) = self.unavailable() {
            return Outcome::rejected(e, start.elapsed());
        }
        let Ok(_running) = self.running.clone().acquire_owned().await else {
            unreachable!("the semaphore is never closed")
        };
        let slot = match &self.slots {
            Some(s) => Some(s.acquire().await),
            None => None,
        };
        let this = self.clone();
        let artifact = artifact.clone();
        let uid = slot.as_ref().map(|s| s.uid);
        let outcome = tokio::task::spawn_blocking(move || this.run(&artifact, &task, uid, start))
            .await
            .unwrap_or_else(|e| {
                Outcome::rejected(
                    TaskError::WorkerLost {
                        reason: format!("the thread running the process failed: {e}"),
                    },
                    start.elapsed(),
                )
            });
        // Dropping the slot kills whatever still runs as its uid.
        drop(slot);
        outcome
    }
}

impl ProcessExecutor {
    fn run(&self, artifact: &Artifact, task: &Task, uid: Option<u32>, start: Instant) -> Outcome {
        let dir = match TaskDir::create(&self.config.work_root, artifact, uid) {
            Ok(d) => d,
            Err(e) => {
                return Outcome::rejected(
                    TaskError::ExecutorUnavailable {
                        executor: "process".into(),
                        reason: format!(
                            "cannot prepare a task directory under {}: {e}",
                            self.config.work_root.display()
                        ),
                    },
                    start.elapsed(),
                );
            }
        };
        let mut cmd = match &self.bwrap {
            Some(bwrap) => {
                let mut cmd = Command::new(bwrap);
                cmd.args(confine::bwrap_system_args(task.grants.network));
                cmd.arg("--ro-bind").arg(&dir.bin).arg("/p2pc/bin");
                cmd.arg("--bind").arg(&dir.work).arg("/work");
                cmd.args(["--chdir", "/work", "--die-with-parent", "--"]);
                cmd.arg(Path::new("/p2pc/bin").join(&dir.name));
                cmd
            }
            None => {
                let mut cmd = Command::new(dir.bin.join(&dir.name));
                cmd.current_dir(&dir.work);
                cmd
            }
        };
        let home = match &self.bwrap {
            Some(_) => Path::new("/work"),
            None => dir.work.as_path(),
        };
        cmd.args(&artifact.args)
            .args(&task.args)
            .env_clear()
            .env("HOME", home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("TMPDIR", "/tmp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let processes = match uid {
            Some(_) => Some(self.config.processes),
            // Without a uid of its own the limit counts the node's user's
            // threads too, so it is raised by what already runs.
            None => Some(threads_of_current_user().saturating_add(self.config.processes)),
        };
        Confine {
            rlimits: Rlimits {
                cpu_secs: Some(task.limits.timeout.as_secs().saturating_add(1)),
                address_space: Some(task.limits.memory.0),
                open_files: self.config.open_files,
                processes,
                file_size: Some(self.config.file_size.0),
            },
            run_as: uid,
            die_with_parent: true,
        }
        .apply(&mut cmd);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Outcome::rejected(
                    TaskError::ExecutorUnavailable {
                        executor: "process".into(),
                        reason: format!("cannot start the program: {e}"),
                    },
                    start.elapsed(),
                );
            }
        };
        let run = supervise(child, task, start, |exit, out, _| classify(exit, out, task));
        drop(dir);
        run
    }
}

/// Feeds the task's input to stdin (a reduce's parts one after another),
/// captures the output, enforces the deadline and the output cap, and maps
/// how the child ended to an [`Outcome`].
pub(crate) fn supervise(
    mut child: std::process::Child,
    task: &Task,
    start: Instant,
    classify: impl Fn(Exit, Vec<u8>, &[u8]) -> Result<Vec<u8>, TaskError>,
) -> Outcome {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let input = match &task.call {
        Call::Run(input) | Call::Map(input) => input.clone(),
        Call::Reduce(parts) => parts.concat(),
    };
    if let Some(mut stdin) = child.stdin.take() {
        std::thread::spawn(move || {
            // A program that does not read its input is not an error.
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = child
        .stdout
        .take()
        .map(|s| Capture::spawn(s, task.limits.output.0 as usize, Some(tx.clone())));
    let stderr = child
        .stderr
        .take()
        .map(|s| Capture::spawn(s, task.limits.stderr.0 as usize, None));
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Event::Exited(confine::wait4(pid)));
        });
    }
    drop(tx);

    // A timeout too long to add to the clock is as good as none.
    let deadline = start
        .checked_add(task.limits.timeout)
        .unwrap_or_else(|| start + Duration::from_secs(30 * 365 * 86_400));
    let mut ended_by: Option<TaskError> = None;
    let exit = loop {
        let wait = if ended_by.is_some() {
            Duration::from_secs(30)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match rx.recv_timeout(wait) {
            Ok(Event::Exited(exit)) => break exit,
            Ok(Event::Overflow) => {
                ended_by.get_or_insert(TaskError::OutputTooLarge {
                    limit: task.limits.output,
                });
                confine::kill_group(pid);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if ended_by.is_none() => {
                ended_by = Some(TaskError::deadline(task.limits.timeout));
                confine::kill_group(pid);
            }
            Err(_) => {
                break Err(std::io::Error::other(
                    "the process did not exit after SIGKILL",
                ));
            }
        }
    };
    // Anything the program left running in its group goes with it.
    confine::kill_group(pid);
    let wall_time = start.elapsed();
    let output = stdout.and_then(Capture::finish).map(|(bytes, _)| bytes);
    let (stderr, _) = stderr.and_then(Capture::finish).unwrap_or_default();
    let Some(output) = output else {
        return Outcome {
            stderr,
            ..Outcome::rejected(
                TaskError::WorkerLost {
                    reason: "the program's output stayed open after it ended \
                             (a process outside its group holds it)"
                        .into(),
                },
                wall_time,
            )
        };
    };
    let (result, peak_memory) = match exit {
        Err(e) => (
            Err(TaskError::WorkerLost {
                reason: format!("could not wait for the process: {e}"),
            }),
            0,
        ),
        Ok(exit) => (
            ended_by.map_or_else(|| classify(exit, output, &stderr), Err),
            exit.max_rss,
        ),
    };
    Outcome {
        result,
        usage: Usage {
            fuel_used: 0,
            peak_memory,
            wall_time,
        },
        stderr,
        logs: Vec::new(),
        logs_dropped: 0,
        progress: None,
    }
}

pub(crate) fn classify(exit: Exit, output: Vec<u8>, task: &Task) -> Result<Vec<u8>, TaskError> {
    // bubblewrap reports a child killed by signal N as exit status 128 + N.
    let signal = exit.signal().or_else(|| {
        exit.code()
            .filter(|c| (129..160).contains(c))
            .map(|c| c - 128)
    });
    match (exit.code(), signal) {
        (Some(0), _) => Ok(output),
        (_, Some(libc::SIGXCPU)) => Err(TaskError::deadline(task.limits.timeout)),
        (_, Some(libc::SIGXFSZ)) => Err(TaskError::GuestError {
            message: "killed by SIGXFSZ: the program wrote a file over its size limit".into(),
        }),
        (_, Some(sig)) => Err(TaskError::Trap {
            message: format!(
                "the program was killed by signal {sig} ({})",
                confine::signal_name(sig)
            ),
        }),
        (Some(code), None) => Err(TaskError::GuestError {
            message: format!("exit status {code}"),
        }),
        (None, None) => Err(TaskError::Trap {
            message: format!("the program ended with wait status {:#x}", exit.status),
        }),
    }
}

/// A task's private directory: `bin/NAME` (the program, read-only) and
/// `work/` (its working directory, owned by the task's uid). Removed when
/// dropped.
struct TaskDir {
    _root: tempfile::TempDir,
    bin: PathBuf,
    work: PathBuf,
    name: OsString,
}

impl TaskDir {
    fn create(root: &Path, artifact: &Artifact, uid: Option<u32>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let dir = tempfile::Builder::new()
            .prefix("p2pc-task-")
            .tempdir_in(root)?;
        // Traversable but not listable by the task's uid.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        let bin = dir.path().join("bin");
        let work = dir.path().join("work");
        std::fs::create_dir(&bin)?;
        std::fs::create_dir(&work)?;
        let name = program_name(&artifact.name);
        let program = bin.join(&name);
        std::fs::write(&program, &artifact.bytes)?;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o555))?;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o555))?;
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700))?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&work, Some(uid), Some(uid))?;
        }
        Ok(Self {
            _root: dir,
            bin,
            work,
            name,
        })
    }
}

/// The program's file name: the artifact's name when it is a plain file
/// name, else `program`.
fn program_name(name: &str) -> OsString {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    OsString::from(if ok { name } else { "program" })
}

/// Threads (each counts against `RLIMIT_NPROC`) of this process's user.
fn threads_of_current_user() -> u64 {
    // SAFETY: plain system call.
    let uid = unsafe { libc::getuid() };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0u64;
    for e in entries.flatten() {
        let mut status = String::new();
        if std::fs::File::open(e.path().join("status"))
            .and_then(|mut f| f.read_to_string(&mut status))
            .is_err()
        {
            continue;
        }
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        if field("Uid:") == Some(u64::from(uid)) {
            total += field("Threads:").unwrap_or(1);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_names_are_plain_file_names() {
        assert_eq!(program_name("busybox"), "busybox");
        assert_eq!(program_name("../etc/passwd"), "program");
        assert_eq!(program_name(""), "program");
        assert_eq!(program_name(".."), "program");
        assert_eq!(program_name("a b"), "program");
    }
}
