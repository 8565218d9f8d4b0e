//! `p2pctl key`: create and manage identities in the encrypted keystore.
//! No command ever prints a private key.

use std::path::PathBuf;

use anyhow::{Context, bail};
use p2pc_crypto::{KeyInfo, SecretKey};

use crate::context::{Global, print_json};

/// Create, list, show, export and import keys.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a new Ed25519 key, encrypted with a passphrase.
    New {
        /// Name of the key in the keystore (letters, digits, - _ .).
        name: String,
        /// Store the key unencrypted. Anyone who can read the file can use it.
        #[arg(long)]
        insecure_no_passphrase: bool,
    },
    /// List the keys in the keystore.
    List,
    /// Show a key's public key, peer id and protection.
    Show {
        /// The key's name.
        name: String,
    },
    /// Print a key's public key (64 hex digits), to give to others.
    ExportPublic {
        /// The key's name.
        name: String,
    },
    /// Import a key: a p2pc key file (kept encrypted as it is), or a raw
    /// 32-byte Ed25519 seed in hex (encrypted with a new passphrase).
    Import {
        /// Name to give the key.
        name: String,
        /// A p2pc key file.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "seed_file",
            required_unless_present = "seed_file"
        )]
        from: Option<PathBuf>,
        /// A file holding a 32-byte Ed25519 seed as 64 hex digits.
        #[arg(long, value_name = "FILE")]
        seed_file: Option<PathBuf>,
        /// With --seed-file: store the key unencrypted.
        #[arg(long, requires = "seed_file")]
        insecure_no_passphrase: bool,
    },
}

pub fn run(cmd: Command, g: &Global) -> anyhow::Result<()> {
    let ks = g.keystore()?;
    match cmd {
        Command::New {
            name,
            insecure_no_passphrase,
        } => {
            let passphrase = if insecure_no_passphrase {
                None
            } else {
                Some(g.passphrase(&format!("Passphrase for new key {name}: "), true)?)
            };
            let info = ks.create(&name, passphrase.as_deref())?;
            show(&info, g, "created key")
        }
        Command::List => {
            let keys = ks.list()?;
            if g.json {
                return print_json(&keys);
            }
            if keys.is_empty() {
                eprintln!(
                    "no keys in {}; create one with `p2pctl key new NAME`",
                    ks.dir().display()
                );
            }
            for k in keys {
                let lock = if k.encrypted {
                    "encrypted"
                } else {
                    "UNENCRYPTED"
                };
                println!("{:<20} {}  {lock}", k.name, k.public_key);
            }
            Ok(())
        }
        Command::Show { name } => show(&ks.info(&name)?, g, "key"),
        Command::ExportPublic { name } => {
            let info = ks.info(&name)?;
            if g.json {
                return print_json(
                    &serde_json::json!({ "name": info.name, "public_key": info.public_key }),
                );
            }
            println!("{}", info.public_key);
            Ok(())
        }
        Command::Import {
            name,
            from,
            seed_file,
            insecure_no_passphrase,
        } => {
            let info = match (from, seed_file) {
                (Some(file), _) => ks.import_file(&name, &file)?,
                (None, Some(file)) => {
                    let text = zeroize::Zeroizing::new(
                        std::fs::read_to_string(&file)
                            .with_context(|| format!("cannot read {}", file.display()))?,
                    );
                    let seed = zeroize::Zeroizing::new(
                        hex::decode(trim_hex(&text)).context("the seed file is not hex")?,
                    );
                    let Ok(seed) = <[u8; 32]>::try_from(seed.as_slice()) else {
                        bail!(
                            "the seed file must hold 32 bytes (64 hex digits), not {}",
                            seed.len()
                        );
                    };
                    let key = SecretKey::from_seed(&seed);
                    let passphrase = if insecure_no_passphrase {
                        None
                    } else {
                        Some(g.passphrase(&format!("Passphrase for imported key {name}: "), true)?)
                    };
                    ks.store(&name, &key, passphrase.as_deref())?
                }
                (None, None) => unreachable!("clap requires --from or --seed-file"),
            };
            show(&info, g, "imported key")
        }
    }
}

fn show(info: &KeyInfo, g: &Global, what: &str) -> anyhow::Result<()> {
    if g.json {
        return print_json(info);
    }
    println!("{what} {}", info.name);
    println!("  public key: {}", info.public_key);
    println!("  peer id:    {}", info.peer_id);
    println!(
        "  encrypted:  {}",
        if info.encrypted {
            "yes"
        } else {
            "NO (stored in the clear)"
        }
    );
    Ok(())
}

/// The hex digits of a seed file, without whitespace or a 0x prefix.
fn trim_hex(text: &str) -> &str {
    let t = text.trim();
    t.strip_prefix("0x").unwrap_or(t)
}
