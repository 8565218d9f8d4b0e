//! What every executor that starts a host process does to confine it:
//! resource limits, its own session, an unprivileged identity, and
//! bubblewrap namespaces where bubblewrap is installed.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Resource limits set on a child between fork and exec. `None` leaves the
/// limit as inherited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimits {
    /// CPU seconds (`RLIMIT_CPU`); the kernel sends SIGXCPU, then SIGKILL.
    pub cpu_secs: Option<u64>,
    /// Address space in bytes (`RLIMIT_AS`): allocations past it fail.
    pub address_space: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Processes and threads of the child's user (`RLIMIT_NPROC`). Only
    /// meaningful when the child runs as a user of its own (see
    /// [`UidSlots`]); otherwise the count includes every process of the
    /// node's user.
    pub processes: Option<u64>,
    /// Largest file the child may write (`RLIMIT_FSIZE`).
    pub file_size: Option<u64>,
}

/// How a child is confined before it runs.
#[derive(Clone, Debug)]
pub(crate) struct Confine {
    pub rlimits: Rlimits,
    /// Switch to this uid and gid (needs root). `None` keeps the node's.
    pub run_as: Option<u32>,
    /// Kill the child if the thread that started it exits. Only for
    /// children whose starting thread lives as long as they do.
    pub die_with_parent: bool,
}

impl Confine {
    /// Installs the confinement on `cmd`; it takes effect in the child.
    pub(crate) fn apply(&self, cmd: &mut std::process::Command) {
        let limits = self.rlimits;
        let run_as = self.run_as;
        let die_with_parent = self.die_with_parent;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Its own session and process group, so the whole group can
                // be killed at once and no terminal is shared.
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                set_rlimit(libc::RLIMIT_CORE, Some(0))?;
                set_rlimit(libc::RLIMIT_CPU, limits.cpu_secs)?;
                set_rlimit(libc::RLIMIT_AS, limits.address_space)?;
                set_rlimit(libc::RLIMIT_NOFILE, Some(limits.open_files))?;
                set_rlimit(libc::RLIMIT_NPROC, limits.processes)?;
                set_rlimit(libc::RLIMIT_FSIZE, limits.file_size)?;
                if let Some(id) = run_as {
                    // Raw system calls: glibc's wrappers coordinate threads,
                    // which a freshly forked child no longer has.
                    if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                        || libc::syscall(libc::SYS_setresgid, id, id, id) != 0
                        || libc::syscall(libc::SYS_setresuid, id, id, id) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if die_with_parent && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

fn set_rlimit(resource: libc::__rlimit_resource_t, value: Option<u64>) -> io::Result<()> {
    let Some(v) = value else { return Ok(()) };
    let lim = libc::rlimit {
        rlim_cur: v,
        rlim_max: v,
    };
    // SAFETY: plain system call on a stack value.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends SIGKILL to every process in the process group `pgid`.
pub(crate) fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        // SAFETY: plain system call; ESRCH (group already gone) is fine.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Whether this process may switch a child to another uid.
pub fn is_root() -> bool {
    // SAFETY: plain system call.
    unsafe { libc::geteuid() == 0 }
}

/// The first executable called `name` on `PATH`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A pool of otherwise unused uids, one per running task, so that a task's
/// process limit counts only its own processes and everything it left
/// behind can be killed by uid before the uid is used again.
///
/// The pool holds more uids than tasks may run and hands out the one that
/// rested longest: the kernel releases a uid's process count some time
/// after its processes are reaped (here, after each bubblewrap pid
/// namespace is torn down), so a uid reused at once could start its next
/// task already near its limit.
#[derive(Debug)]
pub struct UidSlots {
    free: Mutex<VecDeque<u32>>,
    permits: Arc<Semaphore>,
}

/// Uids per concurrent task.
const UIDS_PER_SLOT: u32 = 4;

/// One uid, held while a task runs; returned (after its processes are
/// killed) when dropped.
pub(crate) struct UidSlot {
    pub uid: u32,
    slots: Arc<UidSlots>,
    _permit: OwnedSemaphorePermit,
}

impl UidSlots {
    /// Room for `slots` tasks at once, with uids from `base` on.
    pub fn new(base: u32, slots: u32) -> Arc<Self> {
        let slots = slots.max(1);
        let uids = slots.saturating_mul(UIDS_PER_SLOT);
        Arc::new(Self {
            free: Mutex::new((base..base.saturating_add(uids)).collect()),
            permits: Arc::new(Semaphore::new(slots as usize)),
        })
    }

    pub(crate) async fn acquire(self: &Arc<Self>) -> UidSlot {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
        let uid = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or_else(|| unreachable!("a permit guarantees a free uid"));
        // Whatever an earlier holder left running dies before reuse.
        kill_uid(uid);
        UidSlot {
            uid,
            slots: self.clone(),
            _permit: permit,
        }
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        kill_uid(self.uid);
        self.slots
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(self.uid);
    }
}

/// Kills every process running as `uid`, including any that left their
/// process group or session. Works by forking a helper that becomes `uid`
/// and signals everything it may signal. Needs root; a no-op otherwise.
pub(crate) fn kill_uid(uid: u32) {
    if !is_root() {
        return;
    }
    // SAFETY: between fork and _exit the child makes only raw system calls.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            if libc::syscall(libc::SYS_setresgid, uid, uid, uid) == 0
                && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
            {
                libc::kill(-1, libc::SIGKILL);
            }
            libc::_exit(0);
        }
        if pid > 0 {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
}

/// Arguments that make bubblewrap show the child a read-only system (`/usr`,
/// `/etc` without password hashes, the library and binary directories), a
/// fresh `/dev`, `/proc` and private `/tmp`, no home directories, and
/// nothing else of the host; with every namespace unshared, including the
/// network unless `share_net`.
pub(crate) fn bwrap_system_args(share_net: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["--unshare-all"]);
    if share_net {
        push(&["--share-net"]);
    }
    push(&["--cap-drop", "ALL", "--hostname", "p2pc"]);
    for dir in [
        "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
    ] {
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(dir) {
                args.extend([
                    OsString::from("--symlink"),
                    target.into_os_string(),
                    OsString::from(dir),
                ]);
            }
        } else if meta.is_dir() {
            args.extend(["--ro-bind", dir, dir].map(OsString::from));
        }
    }
    for secret in [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/shadow-",
        "/etc/gshadow-",
    ] {
        if Path::new(secret).exists() {
            args.extend(["--ro-bind", "/dev/null", secret].map(OsString::from));
        }
    }
    args.extend(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"].map(OsString::from));
    args
}

/// How a child ended, from `wait4`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exit {
    /// Raw wait status.
    pub status: i32,
    /// Largest resident set of the child and its waited-for descendants.
    pub max_rss: u64,
}

impl Exit {
    pub(crate) fn code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }

    pub(crate) fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }
}

/// Waits for `pid` (blocking) and returns its status and peak memory.
pub(crate) fn wait4(pid: u32) -> io::Result<Exit> {
    let pid = i32::try_from(pid).map_err(io::Error::other)?;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: plain system call on stack values.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok(Exit {
                status,
                max_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
            });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A signal's conventional name, for messages.
pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "a signal",
    }
}
