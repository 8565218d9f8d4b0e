//! `p2pctl` as a user meets it: the real binary, real components, real key
//! files and a real store on disk; checked stdout, stderr and exit status.

mod blobs;
mod bundles;
mod churn;
mod executors;
mod issuer;
mod keys;
mod ledger;
mod network;
mod new;
mod run;
mod sealed;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use p2pc_tests::{Build, guest};

/// A private keystore, store and cache for one test.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `p2pctl` command with this environment's directories.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2pctl"));
        cmd.args(args)
            .env("P2PC_CACHE_DIR", self.path("cache"))
            .env("P2PC_KEYSTORE", self.path("keys"))
            .env("P2PC_DATA_DIR", self.path("store"))
            .env_remove("P2PC_PASSPHRASE")
            .env_remove("P2PC_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `p2pctl` with `stdin`, and the passphrase in the environment if
    /// given.
    pub fn run(&self, args: &[&str], stdin: &[u8], passphrase: Option<&str>) -> Output {
        let mut cmd = self.command(args);
        if let Some(p) = passphrase {
            cmd.env("P2PC_PASSPHRASE", p);
        }
        let mut child = cmd.spawn().expect("p2pctl starts");
        // A command that exits without reading stdin closes the pipe; that
        // is not a test failure.
        let _ = child.stdin.take().expect("piped").write_all(stdin);
        child.wait_with_output().expect("p2pctl finishes")
    }
}

/// `p2pctl args` with a fresh environment.
pub fn p2pctl(args: &[&str], stdin: &[u8]) -> Output {
    Env::new().run(args, stdin, None)
}

pub fn path(name: &str) -> String {
    guest(name, Build::WasiP2).display().to_string()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout as text.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts exit status `code` and that stderr contains `needle`.
pub fn fails(out: &Output, code: i32, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}
