//! `p2pctl bundle`: pack components into signed bundles, and check them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use p2pc_crypto::{BundleFile, Manifest, TrustPolicy, VerifiedBundle, now_unix};
use p2pc_sandbox::ByteSize;

use crate::context::{Global, LimitArgs, print_json, write_atomically};

/// Pack, sign, verify and inspect signed component bundles.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Pack a component and its manifest into a bundle (signed with --sign).
    Pack(Box<PackArgs>),
    /// Sign a bundle with a key from the keystore (the manifest's publisher).
    Sign {
        /// The bundle file; rewritten in place unless --output is given.
        bundle: PathBuf,
        /// The key to sign with.
        #[arg(long, value_name = "NAME")]
        key: String,
        /// Write the signed bundle here instead.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check a bundle's signature, component hash, dates and publisher.
    Verify {
        /// The bundle file.
        bundle: PathBuf,
        /// Accept only these publishers (public key or keystore name;
        /// repeatable). Without it any correctly signed bundle passes.
        #[arg(long, value_name = "KEY")]
        trust: Vec<String>,
    },
    /// Show what a bundle says, without requiring it to be valid.
    Inspect {
        /// The bundle file.
        bundle: PathBuf,
    },
    /// Verify a bundle and keep it in the local store.
    Add {
        /// The bundle file.
        bundle: PathBuf,
        /// Accept only these publishers (public key or keystore name;
        /// repeatable).
        #[arg(long, value_name = "KEY")]
        trust: Vec<String>,
    },
    /// List the bundles in the local store.
    Ls,
}

#[derive(Debug, clap::Args)]
pub struct PackArgs {
    /// The component (.wasm); with --executor, the native program or the
    /// root file system tarball.
    component: PathBuf,
    /// Which executor runs the artifact: wasm (a component), process (a
    /// native program) or container (a root file system tarball, as
    /// `podman import` takes).
    #[arg(long, default_value = "wasm", value_parser = ["wasm", "process", "container"])]
    executor: String,
    /// An argument for the program (a command component's or native
    /// program's argv after argv[0]), or the container's command
    /// (repeatable, in order). Arguments given at run or submit time follow
    /// these.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// Job name.
    #[arg(long)]
    name: String,
    /// Job version.
    #[arg(long, default_value = "0.1.0")]
    version: String,
    /// The publisher: a key in the keystore.
    #[arg(long, value_name = "NAME")]
    key: String,
    /// Sign the bundle now (needs the key's passphrase).
    #[arg(long)]
    sign: bool,
    /// Where to write the bundle. Default: NAME-VERSION.p2pcb.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Limits the job asks for; runners apply them unless overridden.
    #[command(flatten)]
    limits: LimitArgs,
    /// Capabilities the job needs (repeatable): scratch.
    #[arg(long, value_name = "CAP", value_parser = ["scratch"])]
    capability: Vec<String>,
    /// How long the bundle stays valid, e.g. 90days. Default: no expiry.
    #[arg(long, value_name = "DUR", value_parser = crate::context::parse_duration, allow_hyphen_values = true)]
    expires_in: Option<Duration>,
}

pub fn run(cmd: Command, g: &Global) -> anyhow::Result<()> {
    match cmd {
        Command::Pack(args) => pack(*args, g),
        Command::Sign {
            bundle,
            key,
            output,
        } => {
            let mut file = read(&bundle)?;
            let secret = g.unlock(&key)?;
            file.sign(&secret)?;
            write(output.as_deref().unwrap_or(&bundle), &file)?;
            if !g.json {
                eprintln!("signed {} as {}", bundle.display(), secret.public());
            }
            Ok(())
        }
        Command::Verify { bundle, trust } => {
            let v = verify(&read(&bundle)?, &policy(&trust, g)?)?;
            if g.json {
                return print_json(&serde_json::json!({
                    "ok": true, "name": v.manifest.name, "version": v.manifest.version,
                    "publisher": v.publisher, "bundle_id": hex::encode(v.id),
                }));
            }
            println!(
                "ok: {} {} signed by {}",
                v.manifest.name, v.manifest.version, v.publisher
            );
            Ok(())
        }
        Command::Inspect { bundle } => inspect(&read(&bundle)?, g),
        Command::Add { bundle, trust } => {
            let file = read(&bundle)?;
            let v = verify(&file, &policy(&trust, g)?)?;
            let record = p2pc_node::bundle_record(&v);
            let record = g.store()?.put_bundle(record, &file.to_bytes())?;
            if g.json {
                return print_json(&record);
            }
            println!("{}", record.id);
            Ok(())
        }
        Command::Ls => {
            let bundles = g.store()?.bundles()?;
            if g.json {
                return print_json(&bundles);
            }
            for b in bundles {
                println!(
                    "{}  {} {}  {}  by {}",
                    b.id,
                    b.name,
                    b.version,
                    b.world,
                    &b.publisher[..16]
                );
            }
            Ok(())
        }
    }
}

fn pack(a: PackArgs, g: &Global) -> anyhow::Result<()> {
    let component = std::fs::read(&a.component)
        .with_context(|| format!("cannot read component {}", a.component.display()))?;
    let world = match a.executor.as_str() {
        "wasm" => detect_world(&component)?.to_string(),
        "container" if a.args.is_empty() => {
            anyhow::bail!("a container bundle needs its command: give it with --arg (repeatable)")
        }
        _ => String::new(),
    };
    p2pc_types::check_args(&a.args).context("--arg")?;
    let publisher = g.keystore()?.info(&a.key)?.public_key;
    let created = now_unix();
    let manifest = Manifest {
        name: a.name.clone(),
        version: a.version.clone(),
        world: world.clone(),
        executor: if a.executor == "wasm" {
            String::new()
        } else {
            a.executor.clone()
        },
        args: a.args.clone(),
        limits: Some(a.limits.requested()),
        capabilities: a.capability,
        publisher: publisher.to_bytes().to_vec(),
        created_unix: created,
        expires_unix: a
            .expires_in
            .map_or(0, |d| created.saturating_add(d.as_secs())),
        ..Manifest::default()
    };
    let mut file = BundleFile::pack(manifest, component);
    if a.sign {
        file.sign(&g.unlock(&a.key)?)?;
    }
    let out = a
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.p2pcb", a.name, a.version)));
    write(&out, &file)?;
    if g.json {
        return print_json(
            &serde_json::json!({ "bundle": out, "world": world, "executor": a.executor, "signed": a.sign }),
        );
    }
    let kind = if world.is_empty() {
        &a.executor
    } else {
        &world
    };
    eprintln!(
        "packed {} ({kind}, {}) into {}",
        a.component.display(),
        if a.sign {
            "signed"
        } else {
            "unsigned: sign it with `p2pctl bundle sign`"
        },
        out.display()
    );
    Ok(())
}

/// Loads the component in a throwaway sandbox to learn (and check) its
/// world, so no bundle ever names a world its component does not have.
fn detect_world(component: &[u8]) -> anyhow::Result<p2pc_sandbox::World> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the async runtime")?;
    Ok(rt.block_on(p2pc_node::detect_world(component))?)
}

/// The trust policy named by `--trust` values: any publisher when empty.
pub fn policy(trust: &[String], g: &Global) -> anyhow::Result<TrustPolicy> {
    if trust.is_empty() {
        return Ok(TrustPolicy::Any);
    }
    let keys = trust
        .iter()
        .map(|t| g.public_key(t))
        .collect::<anyhow::Result<_>>()?;
    Ok(TrustPolicy::Only(keys))
}

pub fn verify(file: &BundleFile, policy: &TrustPolicy) -> anyhow::Result<VerifiedBundle> {
    Ok(file.clone().verify(policy, now_unix())?)
}

pub fn read(path: &Path) -> anyhow::Result<BundleFile> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read bundle {}", path.display()))?;
    BundleFile::from_vec(bytes)
        .with_context(|| format!("{} is not a usable bundle", path.display()))
}

/// Writes a bundle atomically: the old file stays whole if anything fails.
fn write(path: &Path, file: &BundleFile) -> anyhow::Result<()> {
    write_atomically(path, |f| {
        Ok(std::io::Write::write_all(f, &file.to_bytes())?)
    })
}

fn inspect(file: &BundleFile, g: &Global) -> anyhow::Result<()> {
    let m = file.manifest()?;
    let publisher = p2pc_crypto::PublicKey::from_bytes(&m.publisher)
        .map(|k| k.to_string())
        .unwrap_or_else(|_| "(invalid)".into());
    let status = match file.clone().verify(&TrustPolicy::Any, now_unix()) {
        Ok(_) => "valid".to_owned(),
        Err(e) => format!("INVALID: {e}"),
    };
    let limits = m.limits.unwrap_or_default();
    if g.json {
        return print_json(&serde_json::json!({
            "name": m.name, "version": m.version, "world": m.world,
            "executor": m.executor(), "args": m.args,
            "component_blake3": hex::encode(&m.component_blake3), "component_size": m.component_size,
            "limits": { "fuel": limits.fuel, "memory_bytes": limits.memory_bytes,
                        "timeout_ms": limits.timeout_ms, "output_bytes": limits.output_bytes },
            "capabilities": m.capabilities, "publisher": publisher,
            "created_unix": m.created_unix, "expires_unix": m.expires_unix,
            "signed": !file.signature.is_empty(), "status": status,
        }));
    }
    let or_default = |v: u64, shown: String| {
        if v == 0 {
            "runner default".to_owned()
        } else {
            shown
        }
    };
    println!("name:         {} {}", m.name, m.version);
    println!("executor:     {}", m.executor());
    if !m.world.is_empty() {
        println!("world:        {}", m.world);
    }
    if !m.args.is_empty() {
        println!("args:         {}", crate::format::command_line(&m.args));
    }
    println!(
        "component:    {} ({})",
        hex::encode(&m.component_blake3),
        ByteSize(m.component_size)
    );
    println!("publisher:    {publisher}");
    println!(
        "fuel:         {}",
        or_default(limits.fuel, crate::format::thousands(limits.fuel))
    );
    println!(
        "memory:       {}",
        or_default(
            limits.memory_bytes,
            ByteSize(limits.memory_bytes).to_string()
        )
    );
    println!(
        "timeout:      {}",
        or_default(
            limits.timeout_ms,
            crate::format::span(Duration::from_millis(limits.timeout_ms))
        )
    );
    println!(
        "max output:   {}",
        or_default(
            limits.output_bytes,
            ByteSize(limits.output_bytes).to_string()
        )
    );
    println!(
        "capabilities: {}",
        if m.capabilities.is_empty() {
            "none".into()
        } else {
            m.capabilities.join(", ")
        }
    );
    let now = now_unix();
    println!("created:      {}", crate::format::date(m.created_unix, now));
    println!(
        "expires:      {}",
        if m.expires_unix == 0 {
            "never".into()
        } else {
            crate::format::date(m.expires_unix, now)
        }
    );
    println!("signature:    {status}");
    Ok(())
}
