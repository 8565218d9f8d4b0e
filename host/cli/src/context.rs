//! What several commands share: where the keystore and the store live, and
//! how a passphrase is obtained.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use p2pc_crypto::{Keystore, PublicKey, SecretKey};

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Directory of key files.
    /// Default: $XDG_DATA_HOME/p2pc/keys or ~/.local/share/p2pc/keys.
    #[arg(long, global = true, value_name = "DIR", env = "P2PC_KEYSTORE")]
    pub keystore: Option<PathBuf>,

    /// Directory of the node's database (blobs, bundles).
    /// Default: $XDG_DATA_HOME/p2pc/store or ~/.local/share/p2pc/store.
    #[arg(long, global = true, value_name = "DIR", env = "P2PC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Read the key passphrase from the first line of FILE. Otherwise it
    /// comes from $P2PC_PASSPHRASE, or a prompt on the terminal.
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `$VAR`/p2pc if `VAR` holds an absolute path, else `$HOME/fallback`/p2pc,
/// as the XDG base-directory convention says.
pub fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    let base = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(fallback)))?;
    Some(base.join("p2pc"))
}

fn data_home() -> Option<PathBuf> {
    xdg_dir("XDG_DATA_HOME", ".local/share")
}

impl Global {
    pub fn keystore(&self) -> anyhow::Result<Keystore> {
        let dir = match &self.keystore {
            Some(d) => d.clone(),
            None => data_home()
                .context("cannot find a home directory; pass --keystore")?
                .join("keys"),
        };
        Ok(Keystore::open(&dir)?)
    }

    pub fn store(&self) -> anyhow::Result<p2pc_store::Store> {
        let dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => data_home()
                .context("cannot find a home directory; pass --data-dir")?
                .join("store"),
        };
        Ok(p2pc_store::Store::open(&dir)?)
    }

    /// The passphrase, from --passphrase-file, $P2PC_PASSPHRASE or a prompt
    /// (asked twice when `confirm`).
    pub fn passphrase(&self, prompt: &str, confirm: bool) -> anyhow::Result<String> {
        if let Some(path) = &self.passphrase_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read passphrase file {}", path.display()))?;
            let line = text.lines().next().unwrap_or("").to_owned();
            if line.is_empty() {
                bail!("passphrase file {} is empty", path.display());
            }
            return Ok(line);
        }
        if let Ok(p) = std::env::var("P2PC_PASSPHRASE") {
            if p.is_empty() {
                bail!("P2PC_PASSPHRASE is set but empty");
            }
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "a passphrase is needed: use --passphrase-file, set P2PC_PASSPHRASE, or run in a terminal"
            );
        }
        let first = rpassword::prompt_password(prompt).context("cannot read the passphrase")?;
        if first.is_empty() {
            bail!("empty passphrase; use --insecure-no-passphrase to store a key unencrypted");
        }
        if confirm
            && rpassword::prompt_password("Repeat passphrase: ")
                .context("cannot read the passphrase")?
                != first
        {
            bail!("the passphrases do not match");
        }
        Ok(first)
    }

    /// Unlocks key `name`, asking for its passphrase only if it has one.
    pub fn unlock(&self, name: &str) -> anyhow::Result<SecretKey> {
        let ks = self.keystore()?;
        let passphrase = if ks.is_encrypted(name)? {
            Some(self.passphrase(&format!("Passphrase for key {name}: "), false)?)
        } else {
            None
        };
        Ok(ks.unlock(name, passphrase.as_deref())?)
    }

    /// A public key given as 64 hex digits or as the name of a key in the
    /// keystore.
    pub fn public_key(&self, key: &str) -> anyhow::Result<PublicKey> {
        if let Ok(k) = key.parse() {
            return Ok(k);
        }
        self.keystore()?
            .info(key)
            .map(|i| i.public_key)
            .with_context(|| {
                format!("{key:?} is neither a public key (64 hex digits) nor a key in the keystore")
            })
    }
}

/// Prints `value` as one line of JSON.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Resource limits, as flags. `run` enforces them; `bundle pack` records
/// them as what the job asks for. Unset means "the bundle's request, else
/// the runner's default".
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Fuel: roughly one unit per wasm instruction executed, e.g.
    /// 1000000, 1,000,000, 10M or 2.5G.
    /// [run default: the bundle's request, else 10G]
    #[arg(long, value_name = "N", value_parser = p2pc_types::parse_count, allow_hyphen_values = true)]
    pub fuel: Option<u64>,

    /// Memory, e.g. 64MiB or 1GiB (at most 4GiB).
    /// [run default: the bundle's request, else 256MiB]
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<p2pc_sandbox::ByteSize>,

    /// Wall-clock time, e.g. 500ms, 2s or 1m.
    /// [run default: the bundle's request, else 30s]
    #[arg(long, value_name = "DUR", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Option<Duration>,

    /// Output, e.g. 1MiB. [run default: the bundle's request, else 64MiB]
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub max_output: Option<p2pc_sandbox::ByteSize>,
}

/// A duration such as `500ms`, `2s`, `1m 30s`; a negative one is refused
/// with a reason rather than humantime's "expected number".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!("invalid duration {s:?}: it cannot be negative"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (expected e.g. 500ms, 2s, 1m 30s)"))
}

impl LimitArgs {
    /// The flags as a manifest's request (0 for unset).
    pub fn requested(&self) -> p2pc_crypto::RequestedLimits {
        p2pc_crypto::RequestedLimits {
            fuel: self.fuel.unwrap_or(0),
            memory_bytes: self.memory.map_or(0, |m| m.bytes()),
            timeout_ms: self
                .timeout
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            output_bytes: self.max_output.map_or(0, |m| m.bytes()),
        }
    }

    /// The limits to enforce: each flag, else the bundle's request, else the
    /// default.
    pub fn resolve(&self, requested: &p2pc_crypto::RequestedLimits) -> p2pc_sandbox::Limits {
        use p2pc_sandbox::{ByteSize, Limits};
        let nonzero = |v: u64| (v != 0).then_some(v);
        Limits {
            fuel: self
                .fuel
                .or(nonzero(requested.fuel))
                .unwrap_or(Limits::DEFAULT.fuel),
            memory: self
                .memory
                .or(nonzero(requested.memory_bytes).map(ByteSize))
                .unwrap_or(Limits::DEFAULT.memory),
            timeout: self
                .timeout
                .or(nonzero(requested.timeout_ms).map(Duration::from_millis))
                .unwrap_or(Limits::DEFAULT.timeout),
            output: self
                .max_output
                .or(nonzero(requested.output_bytes).map(ByteSize))
                .unwrap_or(Limits::DEFAULT.output),
            ..Limits::DEFAULT
        }
    }
}

/// Writes `path` by filling a temporary file beside it and renaming it into
/// place, so a failure part-way (a blob that fails verification, a full
/// disk) leaves the old file, or none, never half a new one.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    fill(tmp.as_file_mut())?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
