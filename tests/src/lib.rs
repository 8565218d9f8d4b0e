//! Paths to the guest components built by this crate's `build.rs`, for the
//! workspace integration tests (`tests/all/`) and the benchmarks.
//!
//! This crate has no runtime code of its own; it exists so that one build
//! script builds every guest once, both ways.

#![deny(missing_docs)]

use std::path::PathBuf;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// Whether `cargo component build` was available and built the examples.
pub const CARGO_COMPONENT_BUILT: bool = generated::CARGO_COMPONENT_BUILT;

/// The example jobs under `examples/`.
pub const EXAMPLES: &[&str] = &["hello", "wordcount", "sha256", "mandelbrot", "rot13"];

/// How a guest was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// `cargo build --release --target wasm32-wasip2`.
    WasiP2,
    /// `cargo component build --release` (wasm32-wasip1 plus the adapter).
    CargoComponent,
}

/// The component file of guest package `name` built the given way.
pub fn guest(name: &str, build: Build) -> PathBuf {
    // cdylib outputs use the crate name (underscores); binaries keep dashes.
    let file = if matches!(
        name,
        "rot13" | "hostile-cmd" | "net-client" | "pulldown-cmark"
    ) {
        format!("{name}.wasm")
    } else {
        format!("{}.wasm", name.replace('-', "_"))
    };
    let target = match build {
        Build::WasiP2 => "wasm32-wasip2",
        Build::CargoComponent => "wasm32-wasip1",
    };
    PathBuf::from(generated::GUEST_DIR)
        .join(target)
        .join("release")
        .join(file)
}

/// The bytes of guest `name` built for wasm32-wasip2.
pub fn guest_bytes(name: &str) -> Vec<u8> {
    let path = guest(name, Build::WasiP2);
    std::fs::read(&path).unwrap_or_else(|e| panic!("guest {} missing: {e}", path.display()))
}

/// Reports that a test cannot run here, for want of `why`. Written straight
/// to stderr, past the test harness's capture, so a skip is never silent;
/// a failure instead where `P2PC_REQUIRE_ISOLATION` is set (as in CI, which
/// installs every tool).
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
    assert!(
        std::env::var_os("P2PC_REQUIRE_ISOLATION").is_none(),
        "P2PC_REQUIRE_ISOLATION is set but: {why}"
    );
}

/// A root file system tarball holding `busybox` (a static build, such as
/// Debian's busybox-static) as `/bin/busybox` with a link for each of
/// `applets`: the image of a container bundle in tests and benchmarks.
pub fn busybox_rootfs(busybox: &std::path::Path, applets: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir bin");
    std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    for applet in applets {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
    }
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .args(["-cf", "-", "."])
        .output()
        .expect("tar runs");
    assert!(tar.status.success(), "tar failed");
    tar.stdout
}

/// Deterministic pseudo-random bytes (xorshift64, a word at a time): no two
/// chunks of a blob alike, so nothing is deduplicated, and nothing
/// compresses. `seed` picks the stream.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    v
}

/// A map-reduce `component` run on `input` in this process as `p2pctl run
/// --shards N` runs it (the same library, each call seeded from what it
/// is): what a sharded job on the network must equal.
pub async fn map_reduce_locally(
    executor: &p2pc_sandbox::WasmExecutor,
    component: &[u8],
    input: &[u8],
    shards: usize,
) -> p2pc_sandbox::mapreduce::Steps<p2pc_sandbox::Outcome> {
    use p2pc_sandbox::{Artifact, Call, Grants, Limits, Mode, SandboxExecutor, Task, mapreduce};
    let hash = *blake3::hash(component).as_bytes();
    let artifact = Artifact::new(component.to_vec());
    let executor = executor.clone();
    let call = move |_: mapreduce::Step, call: Call| {
        let (executor, artifact) = (executor.clone(), artifact.clone());
        async move {
            let task = Task {
                mode: Mode::for_call(&hash, &call, &[]),
                call,
                limits: Limits::default(),
                grants: Grants::default(),
                args: Vec::new(),
            };
            executor.execute(&artifact, task).await
        }
    };
    mapreduce::run(input, shards, call, |o: &p2pc_sandbox::Outcome| {
        o.result.as_ref().ok().cloned()
    })
    .await
}
