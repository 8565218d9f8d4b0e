//! `p2pctl new`: create a job crate from a template, ready to build with
//! either `cargo component build` or `cargo build --target wasm32-wasip2`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::context::{Global, print_json};

/// Create a new job crate in DIR (its name is DIR's last component).
///
/// The crate builds with `cargo component build --release` and with
/// `cargo build --release --target wasm32-wasip2`, has a test `cargo test`
/// runs natively, and a README that says how to build, run, bundle and
/// submit it.
///
/// Worlds:
///   job         a function from input bytes to output bytes (p2pc:job/job)
///   map-reduce  map over shards of the input, then reduce (p2pc:job/map-reduce)
///   command     a plain WASI command: stdin, stdout and argv; no SDK
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The directory to create; its last component names the crate.
    dir: PathBuf,

    /// Which kind of job.
    #[arg(long, default_value = "job", value_parser = ["job", "map-reduce", "command"])]
    world: String,

    /// The p2pc guest SDK (the `guest-sdk` directory of a p2pc checkout)
    /// the crate depends on. Default: the checkout this p2pctl was built
    /// from.
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

/// The guest SDK of the checkout this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../guest-sdk");

const JOB: &str = include_str!("../../templates/job/lib.rs");
const MAP_REDUCE: &str = include_str!("../../templates/map-reduce/lib.rs");
const COMMAND: &str = include_str!("../../templates/command/main.rs");
const README: &str = include_str!("../../templates/README.md.tmpl");

/// Why `.cargo/config.toml` is written, as it says in the file.
const CARGO_CONFIG: &str = "\
# wasm SIMD (simd128) roughly halves the time of vectorisable loops, every
# p2pc runner supports it, and runners keep it deterministic. Interleaving
# vectorised loops 4 ways gives each iteration four times the work, so the
# per-iteration fuel accounting (what you are billed for) costs a quarter
# as much: matmul runs 2.6x faster metered. Results are unchanged.
[target.wasm32-wasip2]
rustflags = [\"-C\", \"target-feature=+simd128\", \"-C\", \"llvm-args=-force-vector-interleave=4\"]

[target.wasm32-wasip1]
rustflags = [\"-C\", \"target-feature=+simd128\", \"-C\", \"llvm-args=-force-vector-interleave=4\"]
";

pub fn run(args: Args, g: &Global) -> anyhow::Result<()> {
    let dir = &args.dir;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not end in a crate name", dir.display()))?
        .to_owned();
    check_name(&name)?;
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists; p2pctl new makes a new directory (pick another name, or remove it)",
                dir.display()
            );
        }
    }
    let sdk = match &args.sdk {
        Some(p) => p.clone(),
        None => PathBuf::from(BUILT_FROM_SDK),
    };
    let sdk = std::fs::canonicalize(&sdk)
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .with_context(|| {
            format!(
                "cannot find the p2pc guest SDK at {}: pass --sdk with the guest-sdk directory \
                 of a p2pc checkout",
                sdk.display()
            )
        })?;

    let parent = std::path::absolute(dir)
        .with_context(|| format!("bad path {}", dir.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let files = files(&args.world, &name, &sdk, inside_workspace(&parent));
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::create_dir_all(dir.join(".cargo"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (path, text) in &files {
        let path = dir.join(path);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The SDK's checkout pins the versions it was tested with; starting
    // from its lock file gives the same ones (cargo drops what is unused).
    let lock = sdk.join("../Cargo.lock");
    if args.world != "command" && lock.is_file() {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("cannot copy {}", lock.display()))?;
    }

    if g.json {
        return print_json(&serde_json::json!({
            "dir": dir, "name": name, "world": args.world, "sdk": sdk,
            "files": files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        }));
    }
    eprintln!(
        "created {name}, a {} job crate, in {}",
        args.world,
        dir.display()
    );
    eprintln!("next:");
    eprintln!("  cd {}", dir.display());
    eprintln!(
        "  cargo component build --release    (or: cargo build --release --target wasm32-wasip2)"
    );
    eprintln!(
        "  {}",
        run_line(&args.world, &file_stem(&args.world, &name), "wasm32-wasip1")
    );
    Ok(())
}

/// Cargo's rules for a package name, plus what makes a usable file name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let starts_well = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !ok_chars || !starts_well {
        bail!(
            "{name:?} is not a usable crate name: use letters, digits, - and _, starting with a letter"
        );
    }
    Ok(())
}

/// The `.wasm` file cargo writes: a library's is the crate name with `-`
/// as `_`, a binary's keeps the name as it is.
fn file_stem(world: &str, name: &str) -> String {
    if world == "command" {
        name.to_owned()
    } else {
        name.replace('-', "_")
    }
}

/// A WIT package name for a command component: lowercase kebab-case words,
/// each starting with a letter.
fn wit_package(name: &str) -> String {
    let words: Vec<String> = name
        .to_ascii_lowercase()
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.starts_with(|c: char| c.is_ascii_digit()) {
                format!("n{w}")
            } else {
                w.to_owned()
            }
        })
        .collect();
    format!("local:{}", words.join("-"))
}

/// Whether `dir` lies inside a cargo workspace, which a new crate there
/// would otherwise be taken to belong to.
fn inside_workspace(dir: &Path) -> bool {
    dir.ancestors().any(|d| {
        std::fs::read_to_string(d.join("Cargo.toml"))
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
    })
}

fn run_line(world: &str, file: &str, target: &str) -> String {
    let wasm = format!("target/{target}/release/{file}.wasm");
    match world {
        "map-reduce" => format!(
            "printf 'the quick brown fox\\njumps over\\nthe lazy dog\\n' | p2pctl run {wasm} --input - --shards 2"
        ),
        "command" => format!("printf 'one two\\nthree\\n' | p2pctl run {wasm} --input - -- -l -w"),
        _ => format!("echo hello | p2pctl run {wasm} --input -"),
    }
}

/// Every file of the new crate, by path inside it.
fn files(world: &str, name: &str, sdk: &Path, in_workspace: bool) -> Vec<(&'static str, String)> {
    let file = file_stem(world, name);
    let (what, source_path, source, submit_args) = match world {
        "map-reduce" => (
            "A p2pc map/reduce job (world `p2pc:job/map-reduce`): it counts the words of its \
             input, one `map` per shard and a `reduce` over their counts.",
            "src/lib.rs",
            MAP_REDUCE,
            "",
        ),
        "command" => (
            "A p2pc job that is a plain WASI command: stdin is its input, stdout its output, and \
             it takes options on its command line (`-l`, `-w`, `-c`, as `wc` does).",
            "src/main.rs",
            COMMAND,
            " -- -l",
        ),
        _ => (
            "A p2pc job (world `p2pc:job/job`): one function from input bytes to output bytes. \
             This one upper-cases its input.",
            "src/lib.rs",
            JOB,
            "",
        ),
    };
    let mut manifest = format!(
        "[package]\n\
         name = \"{name}\"\n\
         version = \"0.1.0\"\n\
         edition = \"2024\"\n\
         publish = false\n"
    );
    if world == "command" {
        manifest.push_str(&format!(
            "\n[dependencies]\n\n\
             # Tells `cargo component build` to make this command a component; it\n\
             # uses no WIT of its own. (`cargo build --target wasm32-wasip2` needs\n\
             # nothing: a WASI P2 binary is a component already.)\n\
             [package.metadata.component]\n\
             package = \"{}\"\n",
            wit_package(name)
        ));
    } else {
        manifest.push_str(&format!(
            "\n[lib]\n\
             # A component is a cdylib: without this, cargo builds no .wasm at all.\n\
             crate-type = [\"cdylib\"]\n\n\
             [dependencies]\n\
             p2pc-guest = {{ path = {:?} }}\n",
            sdk.display().to_string()
        ));
    }
    manifest.push_str(
        "\n[profile.release]\n\
         # Smaller components load faster; runners compile them anyway.\n\
         strip = \"debuginfo\"\n",
    );
    if in_workspace {
        manifest.push_str(
            "\n# A workspace of its own, not a member of the one around it.\n\
             [workspace]\n",
        );
    }
    let readme = README
        .replace("{{name}}", name)
        .replace("{{file}}", &file)
        .replace("{{what}}", what)
        .replace("{{run}}", &run_line(world, &file, "wasm32-wasip2"))
        .replace("{{submit_args}}", submit_args);
    vec![
        ("Cargo.toml", manifest),
        (source_path, source.to_owned()),
        ("README.md", readme),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        (".gitignore", "/target\n".to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["my-job", "job2", "a_b"] {
            check_name(ok).expect(ok);
        }
        for bad in ["", "2job", "-x", "my job", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(file_stem("job", "my-job"), "my_job");
        assert_eq!(file_stem("command", "my-wc"), "my-wc");
        assert_eq!(wit_package("My_Job-2x"), "local:my-job-n2x");
    }
}
