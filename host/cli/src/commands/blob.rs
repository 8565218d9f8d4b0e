//! `p2pctl blob`: content-addressed blobs in the local store.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use p2pc_store::Cid;

use crate::context::{Global, print_json, write_atomically};

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
        /// The node's directory.
        #[command(flatten)]
        node: super::node::NodeDir,
    },
}

pub fn run(cmd: Command, g: &Global) -> anyhow::Result<()> {
    // A running node holds its store open; fetches go through the node.
    if let Command::Fetch { cid, from, node } = &cmd {
        let stats: p2pc_node::FetchStats = node.control()?.call(
            p2pc_node::Request::Fetch {
                cid: *cid,
                from: from.clone(),
            },
            std::time::Duration::from_secs(24 * 3600),
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
            let mut reader = store.get(&cid)?;
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
            for b in blobs {
                let pin = if b.pinned { "  pinned" } else { "" };
                println!(
                    "{}  {:>12}{pin}",
                    b.id,
                    p2pc_types::ByteSize(b.len).to_string()
                );
            }
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
