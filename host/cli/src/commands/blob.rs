//! `p2pctl blob`: content-addressed blobs in the local store.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use p2pc_store::Cid;

use p2pc_api::types::FetchBlob;
use p2pc_store::BlobInfo;

use crate::api::Api;
use crate::context::{Global, print_json, write_atomically};

/// Put, get, list and remove blobs: through the running node's API when
/// one runs in `--node DIR` (or, with neither `--node` nor `--data-dir`,
/// in the default node directory), else in the store directly.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: super::node::NodeDir,
}

/// Put, get, list and remove blobs in the local store.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Store a file (or stdin with `-`) and print its content id.
    Put {
        /// The file, or `-` for stdin.
        file: PathBuf,
        /// Print a line to stderr after each chunk is stored.
        #[arg(long)]
        progress: bool,
        /// Pin the blob so `blob rm` refuses to remove it.
        #[arg(long)]
        pin: bool,
    },
    /// Write a blob to stdout or a file, verifying every chunk.
    Get {
        /// The blob's content id.
        cid: Cid,
        /// Write to FILE (only once the whole blob verified).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the stored blobs.
    Ls,
    /// Remove blobs (their chunks are freed by `blob gc`).
    Rm {
        /// Content ids.
        #[arg(required = true)]
        cids: Vec<Cid>,
    },
    /// Protect a blob from `blob rm`.
    Pin {
        /// The blob's content id.
        cid: Cid,
    },
    /// Lift a pin.
    Unpin {
        /// The blob's content id.
        cid: Cid,
    },
    /// Free chunks no blob uses.
    Gc,
    /// Fetch a blob from the network into the running node's store,
    /// verifying every chunk, from every provider at once.
    Fetch {
        /// The blob's content id.
        cid: Cid,
        /// Ask this peer first (repeatable); the DHT finds the others.
        #[arg(long, value_name = "PEER")]
        from: Vec<String>,
    },
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<()> {
    let cmd = args.command;
    // A running node holds its store open; fetches go through the node.
    if let Command::Fetch { cid, from } = &cmd {
        let stats: p2pc_node::FetchStats = args.node.api()?.post(
            &format!("/v1/blobs/{cid}/fetch"),
            &FetchBlob { from: from.clone() },
        )?;
        if g.json {
            return print_json(&stats);
        }
        println!(
            "{cid}: {} bytes, {} chunks fetched from {} peer(s)",
            stats.bytes, stats.chunks_fetched, stats.peers_used
        );
        for bad in &stats.bad_peers {
            println!("dropped {bad} for sending corrupt data");
        }
        return Ok(());
    }
    // A node named with --node (or $P2PC_NODE) that runs wins; without one,
    // the default node's, unless --data-dir names a store.
    if (args.node.dir.is_some() || g.data_dir.is_none())
        && let Some(api) = args.node.running()
    {
        return through_api(&api, cmd, g);
    }
    let store = g.store()?;
    match cmd {
        Command::Put {
            file,
            progress,
            pin,
        } => {
            let report = |bytes: u64| {
                if progress {
                    eprintln!("stored {bytes} bytes");
                }
            };
            let mut info = if file == Path::new("-") {
                store.put_with_progress(std::io::stdin().lock(), report)?
            } else {
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                store.put_with_progress(std::io::BufReader::with_capacity(1 << 20, f), report)?
            };
            if pin {
                store.pin(&info.id)?;
                info.pinned = true;
            }
            if g.json {
                return print_json(&info);
            }
            println!("{}", info.id);
            Ok(())
        }
        Command::Get { cid, output } => {
            // The node is stopped: this reader has the machine to itself.
            let mut reader = store.get_ahead(&cid)?;
            match output {
                None => {
                    let mut out = std::io::stdout().lock();
                    std::io::copy(&mut reader, &mut out).map_err(|e| reader.take_error(e))?;
                    out.flush()?;
                }
                Some(path) => write_atomically(&path, |f| {
                    std::io::copy(&mut reader, f).map_err(|e| reader.take_error(e))?;
                    Ok(())
                })?,
            }
            Ok(())
        }
        Command::Ls => {
            let blobs = store.list()?;
            if g.json {
                return print_json(&blobs);
            }
            show(&blobs);
            Ok(())
        }
        Command::Rm { cids } => {
            for cid in cids {
                if !store.remove(&cid)? {
                    anyhow::bail!("no blob {cid}");
                }
            }
            Ok(())
        }
        Command::Pin { cid } => Ok(store.pin(&cid)?),
        Command::Unpin { cid } => Ok(store.unpin(&cid)?),
        Command::Fetch { .. } => unreachable!("handled before the store is opened"),
        Command::Gc => {
            let stats = store.gc()?;
            if g.json {
                return print_json(&stats);
            }
            println!(
                "removed {} unused chunks ({})",
                stats.chunks_removed,
                p2pc_types::ByteSize(stats.bytes_freed)
            );
            Ok(())
        }
    }
}

/// The blob commands while the node runs: its store is the node's.
fn through_api(api: &Api, cmd: Command, g: &Global) -> anyhow::Result<()> {
    match cmd {
        Command::Put {
            file,
            progress,
            pin,
        } => {
            if progress {
                eprintln!("uploading {} to the running node", file.display());
            }
            let mut info: BlobInfo = if file == Path::new("-") {
                // Standard input is spooled to a temporary file first, so
                // the upload is streamed with a known length.
                let mut tmp =
                    tempfile::NamedTempFile::new().context("cannot make a temporary file")?;
                std::io::copy(&mut std::io::stdin().lock(), tmp.as_file_mut())
                    .context("cannot read standard input")?;
                api.upload_file("/v1/blobs", tmp.path())?
            } else {
                api.upload_file("/v1/blobs", &file)?
            };
            if pin {
                info = api.put(&format!("/v1/blobs/{}/pin", info.id))?;
            }
            if progress {
                eprintln!("stored {} bytes", info.len);
            }
            if g.json {
                return print_json(&info);
            }
            println!("{}", info.id);
            Ok(())
        }
        Command::Get { cid, output } => {
            match output {
                None => api.download_stdout(&format!("/v1/blobs/{cid}"))?,
                Some(path) => api.download_file(&format!("/v1/blobs/{cid}"), &path)?,
            };
            Ok(())
        }
        Command::Ls => {
            let blobs: Vec<BlobInfo> = api.get("/v1/blobs")?;
            if g.json {
                return print_json(&blobs);
            }
            show(&blobs);
            Ok(())
        }
        Command::Pin { cid } => {
            let _: BlobInfo = api.put(&format!("/v1/blobs/{cid}/pin"))?;
            Ok(())
        }
        Command::Unpin { cid } => {
            let _: BlobInfo = api.delete(&format!("/v1/blobs/{cid}/pin"))?;
            Ok(())
        }
        Command::Rm { .. } | Command::Gc => anyhow::bail!(
            "the node is running and holds its store; stop it (`p2pctl node drain`, then stop) to remove blobs or collect garbage"
        ),
        Command::Fetch { .. } => unreachable!("handled before"),
    }
}

/// `blob ls` as text.
fn show(blobs: &[BlobInfo]) {
    for b in blobs {
        let pin = if b.pinned { "  pinned" } else { "" };
        println!(
            "{}  {:>12}{pin}",
            b.id,
            p2pc_types::ByteSize(b.len).to_string()
        );
    }
}
