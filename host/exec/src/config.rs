//! The `[executors]` table of an operator's `node.toml`: which executors
//! this runner offers and how each is confined.

use std::path::{Path, PathBuf};

use p2pc_sandbox::ByteSize;
use serde::{Deserialize, Deserializer};

use crate::{ContainerConfig, ProcessConfig};

/// Which executors a runner offers. Only wasm is on unless the operator
/// turns the others on.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorsConfig {
    /// The wasm executor.
    pub wasm: WasmSection,
    /// The process executor.
    pub process: ProcessSection,
    /// The container executor.
    pub container: ContainerSection,
}

/// `[executors.wasm]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WasmSection {
    /// Run the wasm engine in a pool of confined worker processes.
    pub isolated: bool,
    /// Worker processes in that pool.
    pub workers: usize,
    /// Allow pool workers without bubblewrap.
    pub allow_unisolated: bool,
}

impl Default for WasmSection {
    fn default() -> Self {
        Self {
            isolated: false,
            workers: 2,
            allow_unisolated: false,
        }
    }
}

/// `[executors.process]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessSection {
    /// Offer the process executor.
    pub enabled: bool,
    /// Run programs without bubblewrap when it is missing.
    pub allow_unisolated: bool,
    /// Tasks at once (four uids each are used, when root). Default 16.
    pub slots: Option<u32>,
    /// Processes and threads per task. Default 64.
    pub processes: Option<u64>,
    /// Open files per task. Default 256.
    pub open_files: Option<u64>,
    /// Largest file a task may write, e.g. "64MiB".
    #[serde(deserialize_with = "size_opt")]
    pub file_size: Option<ByteSize>,
    /// Where task directories are made. Default: the system temp dir.
    pub work_dir: Option<PathBuf>,
    /// First uid of the per-task range (root only). Default 2000000000.
    pub uid_base: Option<u32>,
}

/// `[executors.container]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerSection {
    /// Offer the container executor.
    pub enabled: bool,
    /// `podman`, `docker` or a path. Default: podman, else docker.
    pub engine: Option<PathBuf>,
    /// OCI runtime, e.g. "runc".
    pub runtime: Option<String>,
    /// CPUs per container. Default 1.
    pub cpus: Option<f64>,
    /// Processes per container. Default 64.
    pub pids: Option<u64>,
    /// Size of the container's /tmp, e.g. "64MiB".
    #[serde(deserialize_with = "size_opt")]
    pub tmpfs: Option<ByteSize>,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What was wrong, with the line where TOML knows it.
    pub message: String,
}

#[derive(Deserialize)]
struct NodeFile {
    #[serde(default)]
    executors: ExecutorsConfig,
}

impl ExecutorsConfig {
    /// Reads the `[executors]` table of a `node.toml`. Other tables are
    /// left to whoever reads them.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.into(),
            message: e.to_string(),
        })?;
        Self::parse(&text).map_err(|message| ConfigError {
            path: path.into(),
            message,
        })
    }

    /// Parses the `[executors]` table out of `node.toml` text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str::<NodeFile>(text)
            .map(|f| f.executors)
            .map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// The process executor's settings.
    pub fn process_config(&self) -> ProcessConfig {
        let p = &self.process;
        let d = ProcessConfig::default();
        ProcessConfig {
            allow_unisolated: p.allow_unisolated,
            work_root: p.work_dir.clone().unwrap_or(d.work_root),
            uid_base: p.uid_base.unwrap_or(d.uid_base),
            slots: p.slots.unwrap_or(d.slots),
            open_files: p.open_files.unwrap_or(d.open_files),
            processes: p.processes.unwrap_or(d.processes),
            file_size: p.file_size.unwrap_or(d.file_size),
            ..d
        }
    }

    /// The container executor's settings.
    pub fn container_config(&self) -> ContainerConfig {
        let c = &self.container;
        let d = ContainerConfig::default();
        ContainerConfig {
            engine: c.engine.clone(),
            runtime: c.runtime.clone(),
            cpus: c.cpus.unwrap_or(d.cpus),
            pids: c.pids.unwrap_or(d.pids),
            tmpfs: c.tmpfs.unwrap_or(d.tmpfs),
            ..d
        }
    }
}

/// A size written as a number of bytes or as text such as "64MiB".
fn size_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(b)) => Ok(Some(ByteSize(b))),
        Some(Size::Text(t)) => t.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_but_wasm_is_off_by_default() {
        let c = ExecutorsConfig::parse("").expect("empty file");
        assert!(!c.process.enabled && !c.container.enabled && !c.wasm.isolated);
    }

    #[test]
    fn a_full_table_parses() {
        let c = ExecutorsConfig::parse(
            r#"
            [node]
            listen = ["/ip4/0.0.0.0/tcp/0"]
            [executors.process]
            enabled = true
            file_size = "16MiB"
            [executors.container]
            enabled = true
            runtime = "runc"
            tmpfs = 1048576
            "#,
        )
        .expect("valid");
        assert!(c.process.enabled && c.container.enabled);
        assert_eq!(c.process_config().file_size, ByteSize::mib(16));
        assert_eq!(c.container_config().tmpfs, ByteSize::mib(1));
        assert_eq!(c.container_config().runtime.as_deref(), Some("runc"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err =
            ExecutorsConfig::parse("[executors.process]\nenabeld = true\n").expect_err("typo");
        assert!(err.contains("enabeld"), "{err}");
    }
}
