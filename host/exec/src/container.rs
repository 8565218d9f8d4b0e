//! The container executor: a command in a locked-down podman or docker
//! container, from an image that is itself a content-addressed artifact.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use p2pc_sandbox::{Artifact, ByteSize, Outcome, SandboxExecutor, Task, TaskError};

use crate::confine::{self, Confine, Exit, Rlimits};
use crate::process::supervise;

/// How containers are run.
#[derive(Clone, Debug)]
pub struct ContainerConfig {
    /// The engine binary; `None` to look for `podman`, then `docker`, on
    /// `PATH`.
    pub engine: Option<PathBuf>,
    /// An OCI runtime to ask for (`--runtime`), e.g. `runc`. `None` leaves
    /// the engine's default.
    pub runtime: Option<String>,
    /// CPUs a container may use (`--cpus`).
    pub cpus: f64,
    /// Processes a container may hold (`--pids-limit`, `--ulimit nproc`).
    pub pids: u64,
    /// Open files per process (`--ulimit nofile`).
    pub open_files: u64,
    /// Size of the container's writable `/tmp` (a tmpfs).
    pub tmpfs: ByteSize,
    /// `uid:gid` the command runs as.
    pub user: String,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        Self {
            engine: None,
            runtime: None,
            cpus: 1.0,
            pids: 64,
            open_files: 1024,
            tmpfs: ByteSize::mib(64),
            user: "65534:65534".into(),
        }
    }
}

/// Runs a command in a container with no network, a read-only root, no
/// capabilities, no new privileges, capped processes, memory and CPU, an
/// unprivileged user and a size-capped tmpfs; killed and removed at the
/// deadline.
///
/// The artifact is a root file system tarball (what `podman import`
/// takes). It is imported once, tagged by its BLAKE3, so no registry is
/// involved. `artifact.args` is the command (and `task.args` follow it);
/// the input is its stdin.
#[derive(Clone, Debug)]
pub struct ContainerExecutor {
    config: Arc<ContainerConfig>,
    engine: Option<PathBuf>,
    loaded: Arc<Mutex<HashSet<String>>>,
    import: Arc<tokio::sync::Mutex<()>>,
    counter: Arc<AtomicU64>,
}

impl ContainerExecutor {
    /// An executor with `config`; finds the engine now.
    pub fn new(config: ContainerConfig) -> Self {
        let engine = config
            .engine
            .clone()
            .or_else(|| confine::find_tool("podman").or_else(|| confine::find_tool("docker")));
        Self {
            config: Arc::new(config),
            engine,
            loaded: Arc::default(),
            import: Arc::default(),
            counter: Arc::default(),
        }
    }

    /// The engine binary in use, if one was found.
    pub fn engine(&self) -> Option<&std::path::Path> {
        self.engine.as_deref()
    }

    /// Why tasks cannot run here, if that is already known: no engine, or
    /// an engine that does not answer (a docker client without a daemon).
    pub fn unavailable(&self) -> Option<TaskError> {
        let unavailable = |reason: String| TaskError::ExecutorUnavailable {
            executor: "container".into(),
            reason,
        };
        let Some(engine) = &self.engine else {
            return Some(unavailable(
                "neither podman nor docker is installed (install podman)".into(),
            ));
        };
        match Command::new(engine)
            .arg("version")
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(unavailable(format!(
                "{} does not work here: {}",
                engine.display(),
                last_line(&o.stderr)
            ))),
            Err(e) => Some(unavailable(format!("cannot run {}: {e}", engine.display()))),
        }
    }

    /// The local tag of an image tarball: its BLAKE3.
    pub fn image_tag(artifact: &Artifact) -> String {
        format!(
            "localhost/p2pc-image:{}",
            &hex::encode(artifact.blake3())[..32]
        )
    }

    /// Imports the image unless this engine already has it.
    async fn ensure_image(
        &self,
        engine: &std::path::Path,
        artifact: &Artifact,
    ) -> Result<String, TaskError> {
        let tag = Self::image_tag(artifact);
        let known = |s: &Self| {
            s.loaded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&tag)
        };
        if known(self) {
            return Ok(tag);
        }
        let _one_import = self.import.lock().await;
        if known(self) {
            return Ok(tag);
        }
        let (engine, bytes, tag2) = (engine.to_path_buf(), artifact.bytes.clone(), tag.clone());
        let imported = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let exists = Command::new(&engine)
                .args(["image", "inspect", "--format", "{{.Id}}", &tag2])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if exists {
                return Ok(());
            }
            let mut child = Command::new(&engine)
                .args(["import", "-", &tag2])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", engine.display()))?;
            let mut stdin = child.stdin.take().ok_or("no stdin")?;
            let writer = std::thread::spawn(move || stdin.write_all(&bytes));
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            let _ = writer.join();
            if out.status.success() {
                Ok(())
            } else {
                Err(last_line(&out.stderr))
            }
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match imported {
            Ok(()) => {
                self.loaded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(tag.clone());
                Ok(tag)
            }
            Err(reason) => Err(TaskError::InvalidComponent {
                reason: format!("the image tarball could not be imported: {reason}"),
            }),
        }
    }
}

impl SandboxExecutor for ContainerExecutor {
    fn kind(&self) -> &'static str {
        "container"
    }

    async fn execute(&self, artifact: &Artifact, task: Task) -> Outcome {
        let start = Instant::now();
        let Some(engine) = self.engine.clone() else {
            let e = self
                .unavailable()
                .unwrap_or_else(|| TaskError::ExecutorUnavailable {
                    executor: "container".into(),
                    reason: "no container engine".into(),
                });
            return Outcome::rejected(e, start.elapsed());
        };
        if artifact.args.is_empty() {
            return Outcome::rejected(
                TaskError::InvalidComponent {
                    reason: "a container bundle must name the command to run (its args)".into(),
                },
                start.elapsed(),
            );
        }
        let tag = match self.ensure_image(&engine, artifact).await {
            Ok(t) => t,
            Err(e) => return Outcome::rejected(e, start.elapsed()),
        };
        let name = format!(
            "p2pc-{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let cmd = self.command(&engine, &name, &tag, artifact, &task);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut cmd = cmd;
            Confine {
                rlimits: Rlimits {
                    cpu_secs: None,
                    address_space: None,
                    open_files: 1024,
                    processes: None,
                    file_size: None,
                },
                run_as: None,
                die_with_parent: true,
            }
            .apply(&mut cmd);
            let outcome = match cmd.spawn() {
                Ok(child) => supervise(child, &task, start, classify(&task)),
                Err(e) => Outcome::rejected(
                    TaskError::ExecutorUnavailable {
                        executor: "container".into(),
                        reason: format!("cannot run {}: {e}", engine.display()),
                    },
                    start.elapsed(),
                ),
            };
            // Killing the client does not stop the container; removing it
            // does. It is already gone after a normal exit (--rm).
            let _ = Command::new(&engine)
                .args(["rm", "-f", "-t", "0", &name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            outcome
        })
        .await;
        outcome.unwrap_or_else(|e| {
            Outcome::rejected(
                TaskError::WorkerLost {
                    reason: format!("the thread running the container failed: {e}"),
                },
                start.elapsed(),
            )
        })
    }
}

impl ContainerExecutor {
    fn command(
        &self,
        engine: &std::path::Path,
        name: &str,
        tag: &str,
        artifact: &Artifact,
        task: &Task,
    ) -> Command {
        let c = &self.config;
        let memory = task.limits.memory.0.max(6 << 20).to_string();
        let mut cmd = Command::new(engine);
        cmd.args(["run", "--rm", "--interactive", "--name", name]);
        if let Some(runtime) = &c.runtime {
            cmd.args(["--runtime", runtime]);
        }
        if !task.grants.network {
            cmd.arg("--network=none");
        }
        cmd.args([
            "--read-only",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--log-driver=none",
            "--hostname=p2pc",
        ]);
        cmd.arg(format!("--pids-limit={}", c.pids));
        cmd.arg(format!("--memory={memory}"));
        cmd.arg(format!("--memory-swap={memory}"));
        cmd.arg(format!("--cpus={}", c.cpus));
        cmd.arg(format!("--user={}", c.user));
        cmd.arg(format!("--tmpfs=/tmp:rw,size={},mode=1777", c.tmpfs.0));
        cmd.arg(format!("--ulimit=nofile={0}:{0}", c.open_files));
        cmd.arg(format!("--ulimit=nproc={0}:{0}", c.pids));
        cmd.arg(tag).args(&artifact.args).args(&task.args);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The engine keeps its state under these; pass them through.
        for var in ["HOME", "XDG_RUNTIME_DIR", "CONTAINER_HOST", "DOCKER_HOST"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd
    }
}

/// Maps the engine's exit: 125 is the engine's own failure, 126 and 127 a
/// command that cannot run, 137 without our kill the out-of-memory killer.
fn classify(task: &Task) -> impl Fn(Exit, Vec<u8>, &[u8]) -> Result<Vec<u8>, TaskError> + '_ {
    move |exit, output, stderr| match exit.code() {
        Some(0) => Ok(output),
        Some(125) => Err(TaskError::ExecutorUnavailable {
            executor: "container".into(),
            reason: format!("the container engine failed: {}", last_line(stderr)),
        }),
        Some(126 | 127) => Err(TaskError::GuestError {
            message: format!("the command could not run: {}", last_line(stderr)),
        }),
        Some(137) => Err(TaskError::MemoryLimit {
            limit: task.limits.memory,
        }),
        _ => crate::process::classify(exit, output, task),
    }
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)")
        .trim()
        .to_owned()
}
