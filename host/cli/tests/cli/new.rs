//! `p2pctl new`: every template is created, tested, built both ways and
//! run; and the README's quick start works exactly as the README shows it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Env, ok, text};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A cargo command for a crate outside the workspace. The outer test
/// build's flags and target are for the host and must not leak in; the
/// target directory is the one given (kept between runs so the SDK's
/// dependencies build once).
fn cargo(dir: &Path, target_dir: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(dir).args(args);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    if let Some(t) = target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    cmd
}

fn succeeds(mut cmd: impl std::borrow::BorrowMut<Command>) -> String {
    let cmd = cmd.borrow_mut();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} exited with {}:\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout) + &text(&out.stderr)
}

fn cargo_component_available() -> bool {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["component", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_template_builds_both_ways_passes_its_test_and_runs() {
    assert!(
        cargo_component_available(),
        "cargo-component is not installed; run scripts/setup.sh"
    );
    let env = Env::new();
    let target = root().join("target/new-crates");
    // (world, crate name, input, arguments after --, expected output)
    let cases: [(&str, &str, &str, &[&str], &str); 3] = [
        ("job", "my-job", "hello", &[], "HELLO"),
        (
            "map-reduce",
            "my-count",
            "the quick brown fox\njumps over\nthe lazy dog\n",
            &[],
            "9\n",
        ),
        (
            "command",
            "my-wc",
            "one two\nthree\n",
            &["-l", "-w"],
            "2 3\n",
        ),
    ];
    for (world, name, input, args, want) in cases {
        let dir = env.path(name);
        let dir_str = dir.to_str().expect("utf-8 path");
        ok(&env.run(&["new", dir_str, "--world", world], b"", None));
        for file in [
            "Cargo.toml",
            "README.md",
            ".cargo/config.toml",
            ".gitignore",
        ] {
            assert!(dir.join(file).is_file(), "{world}: {file} missing");
        }
        let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
        assert!(
            readme.contains("cargo component build --release")
                && readme.contains("cargo build --release --target wasm32-wasip2")
                && readme.contains("p2pctl bundle pack")
                && readme.contains("p2pctl job submit"),
            "{world} README:\n{readme}"
        );

        succeeds(cargo(&dir, Some(&target), &["test", "-q"]).arg("-j2"));
        succeeds(cargo(
            &dir,
            Some(&target),
            &["build", "-j2", "--release", "--target", "wasm32-wasip2"],
        ));
        succeeds(cargo(
            &dir,
            Some(&target),
            &["component", "build", "-j2", "--release"],
        ));

        // A library's file is named with `_`, a binary's as the crate.
        let file = if world == "command" {
            format!("{name}.wasm")
        } else {
            format!("{}.wasm", name.replace('-', "_"))
        };
        for triple in ["wasm32-wasip2", "wasm32-wasip1"] {
            let wasm = target.join(triple).join("release").join(&file);
            let wasm = wasm.to_str().expect("utf-8 path");
            let mut argv = vec!["run", wasm, "--input", "-", "--shards", "2", "--"];
            argv.extend_from_slice(args);
            let out = env.run(&argv, input.as_bytes(), None);
            assert_eq!(ok(&out), want, "{world} built for {triple}");
            let summary = text(&out.stderr);
            let world_name = match world {
                "command" => "wasi:cli/command",
                "map-reduce" => "p2pc:job/map-reduce",
                _ => "p2pc:job/job",
            };
            assert!(summary.contains(world_name), "{world}: {summary}");
        }
    }

    // A second `new` into an existing crate loses nothing.
    let again = env.run(
        &["new", env.path("my-job").to_str().expect("utf-8")],
        b"",
        None,
    );
    crate::fails(&again, 2, "already exists");
    let bad = env.run(
        &["new", env.path("2fast").to_str().expect("utf-8")],
        b"",
        None,
    );
    crate::fails(&bad, 2, "not a usable crate name");
}

#[test]
fn a_crate_made_inside_a_workspace_is_a_workspace_of_its_own() {
    let env = Env::new();
    std::fs::write(env.path("Cargo.toml"), "[workspace]\nmembers = []\n").expect("write");
    let dir = env.path("inner");
    ok(&env.run(&["new", dir.to_str().expect("utf-8")], b"", None));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
    assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
    // cargo agrees: the crate resolves on its own, not as a stray member.
    succeeds(cargo(
        &dir,
        None,
        &["metadata", "--no-deps", "--format-version", "1", "-q"],
    ));

    let outside = tempfile::tempdir().expect("temp dir");
    let dir = outside.path().join("outer");
    ok(&env.run(&["new", dir.to_str().expect("utf-8")], b"", None));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
    assert!(!manifest.contains("[workspace]"), "{manifest}");
}

/// The fenced block after the line starting with `heading` in README.md.
fn readme_block(readme: &str, heading: &str, fence: &str) -> String {
    let from = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[from..];
    let start = rest
        .find(&format!("```{fence}\n"))
        .unwrap_or_else(|| panic!("no ```{fence} block after {heading:?}"))
        + fence.len()
        + 4;
    let len = rest[start..].find("```").expect("the block ends");
    rest[start..start + len].to_owned()
}

/// Runs the README's quick start line by line, as a newcomer would paste
/// it, in an empty directory standing for the checkout. The one line it
/// does not run is `cargo install` (a release build of p2pctl): the test's
/// own p2pctl is put on PATH instead, which is what that line does.
#[test]
fn the_readme_quick_start_works_as_written() {
    assert!(
        cargo_component_available(),
        "cargo-component is not installed; run scripts/setup.sh"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let job = readme_block(&readme, "## A job in five lines", "rust");
    let steps = readme_block(&readme, "## A job in five lines", "sh");

    let work = tempfile::tempdir().expect("temp dir");
    let checkout = work.path().join("p2pc");
    std::fs::create_dir(&checkout).expect("mkdir");
    let p2pctl_dir = Path::new(env!("CARGO_BIN_EXE_p2pctl"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        p2pctl_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut script = String::from("set -euxo pipefail\n");
    let mut installs = 0;
    for line in steps.lines() {
        let command = line.split(" #").next().unwrap_or("").trim();
        if command.is_empty() {
            continue;
        }
        if command.starts_with("cargo install") {
            assert!(command.contains("--path host/cli"), "{command}");
            installs += 1;
            continue;
        }
        script.push_str(command);
        script.push('\n');
        // Share compiled dependencies between runs: the crate's target
        // directory is a link into the repository's, made as soon as
        // `p2pctl new` has made the crate.
        if command.contains("p2pctl new") {
            script.push_str(&format!(
                "ln -s {} target\n",
                root().join("target/readme-job").display()
            ));
        }
    }
    assert_eq!(
        installs, 1,
        "the quick start installs p2pctl first:\n{steps}"
    );
    std::fs::create_dir_all(root().join("target/readme-job")).expect("mkdir");

    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&checkout)
        .env("PATH", &path)
        .env("P2PC_CACHE_DIR", work.path().join("cache"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("bash runs");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "the quick start failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("HELLO"), "{stdout}");

    // The job the README shows is the one p2pctl new wrote.
    let source = std::fs::read_to_string(work.path().join("my-job/src/lib.rs")).expect("lib.rs");
    assert!(
        source.starts_with(&job),
        "README's job:\n{job}\np2pctl new wrote:\n{source}"
    );
}
