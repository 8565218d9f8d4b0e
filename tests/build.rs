//! Builds every guest component the tests and benchmarks run: the examples,
//! the hostile fixtures, the benchmark kernels and one third-party WASI
//! program (pulldown-cmark's CLI), for `wasm32-wasip2` with
//! plain cargo and, for the examples, a second time with
//! `cargo component build` (which targets `wasm32-wasip1` and adapts), so
//! both workflows job authors use are tested.
//!
//! Guests go to `target/guests/` (their own target directory, so this
//! nested cargo never waits on the outer one's lock) and their paths are
//! handed to the tests through `$OUT_DIR/guests.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLES: &[&str] = &["hello", "wordcount", "sha256", "mandelbrot", "rot13"];
const FIXTURES: &[&str] = &[
    "hostile",
    "hostile-cmd",
    "wrong-world",
    "strange-import",
    "net-client",
    "kernels-guest",
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf();
    for dir in [
        "wit",
        "guest-sdk",
        "examples",
        "tests/fixtures",
        "benches/kernels",
        "benches/kernels-guest",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // The lock file pins guest dependencies; the cargo config sets their
    // target features.
    for file in ["Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let target_dir = root.join("target").join("guests");

    let all: Vec<&str> = EXAMPLES.iter().chain(FIXTURES).copied().collect();
    cargo(
        &root,
        &target_dir,
        &["build", "--release", "--target", "wasm32-wasip2"],
        &all,
    );

    // A third-party program as its authors publish it: the markdown CLI of
    // pulldown-cmark, which takes its options from argv. (Its `getopts`
    // feature, which the binary needs, is turned on where tests/Cargo.toml
    // names it: cargo takes no --features for a package outside the
    // workspace.)
    cargo(
        &root,
        &target_dir,
        &[
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--bin",
            "pulldown-cmark",
        ],
        &["pulldown-cmark"],
    );

    let component = if cargo_component_available(&root) {
        cargo(
            &root,
            &target_dir,
            &["component", "build", "--release"],
            EXAMPLES,
        );
        true
    } else {
        println!(
            "cargo:warning=cargo-component is not installed: the cargo-component build tests will \
             fail. Run scripts/setup.sh to install it."
        );
        false
    };

    let mut out = String::new();
    out.push_str(&format!(
        "pub const CARGO_COMPONENT_BUILT: bool = {component};\n"
    ));
    out.push_str(&format!(
        "pub const GUEST_DIR: &str = {:?};\n",
        target_dir.display().to_string()
    ));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    std::fs::write(out_dir.join("guests.rs"), out).expect("OUT_DIR is writable");
}

fn cargo(root: &Path, target_dir: &Path, args: &[&str], packages: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(args)
        .arg("--target-dir")
        .arg(target_dir);
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the
    // host; guests get a plain build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        status.success(),
        "building guests failed: {cmd:?} exited with {status}. Are the wasm targets installed? \
         Run scripts/setup.sh."
    );
}

fn cargo_component_available(root: &Path) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .current_dir(root)
        .args(["component", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}
