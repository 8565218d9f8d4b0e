//! `p2pctl job`: submit jobs to the network through the local node and
//! follow them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::EXIT_TASK_FAILED;
use super::node::NodeDir;
use crate::context::{Global, print_json};

/// Submit jobs to the network and follow them.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Send a signed bundle and its input to a worker.
    Submit {
        /// The signed bundle file.
        bundle: PathBuf,
        /// The input file.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// The worker's peer id. Default: the best worker the node knows.
        #[arg(long, value_name = "PEER")]
        to: Option<String>,
        /// Wait for the result and print it.
        #[arg(long)]
        wait: bool,
        /// How long the job may take, e.g. 30s or 5m.
        #[arg(long, default_value = "60s", value_parser = crate::context::parse_duration, allow_hyphen_values = true)]
        timeout: Duration,
        /// Arguments for the job's program, after `--`: they follow the
        /// bundle's own (`bundle pack --arg`) in its argv.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Show a job's state.
    Status {
        /// The job id `job submit` printed.
        id: String,
    },
    /// Write a finished job's output to stdout or a file.
    Result {
        /// The job id.
        id: String,
        /// Write to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeDir,
}

fn absolute(p: &std::path::Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(p).with_context(|| format!("bad path {}", p.display()))?;
    if !abs.exists() {
        bail!("{} does not exist", p.display());
    }
    Ok(abs.to_string_lossy().into_owned())
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let mut control = args.node.control()?;
    match args.command {
        Command::Submit {
            bundle,
            input,
            to,
            wait,
            timeout,
            args,
        } => {
            p2pc_types::check_args(&args).context("the arguments after --")?;
            let mut request = json!({
                "cmd": "submit",
                "bundle": absolute(&bundle)?,
                "timeout_ms": timeout.as_millis() as u64,
            });
            if let Some(i) = &input {
                request["input"] = json!(absolute(i)?);
            }
            if let Some(t) = to {
                request["to"] = json!(t);
            }
            if !args.is_empty() {
                request["args"] = json!(args);
            }
            let answer = control.call(request, Duration::from_secs(60))?;
            let id = answer["job"].as_str().unwrap_or("").to_owned();
            if !wait {
                if g.json {
                    print_json(&answer)?;
                } else {
                    println!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let state = control.call(
                json!({"cmd": "wait", "job": id, "timeout_ms": timeout.as_millis() as u64}),
                timeout.saturating_add(Duration::from_secs(10)),
            )?;
            if g.json {
                print_json(&json!({"job": id, "status": state}))?;
                return Ok(exit_for(&state));
            }
            eprintln!("job {id}");
            print_state(&state);
            if state["state"] == "done" && state["outcome"] == "ok" {
                let tmp = tempfile::NamedTempFile::new().context("cannot make a temporary file")?;
                export(&mut control, &id, &state, tmp.path())?;
                let bytes = std::fs::read(tmp.path())?;
                use std::io::Write;
                std::io::stdout().write_all(&bytes)?;
            }
            Ok(exit_for(&state))
        }
        Command::Status { id } => {
            let state = control.call(json!({"cmd": "job", "job": id}), Duration::from_secs(10))?;
            if g.json {
                print_json(&state)?;
            } else {
                print_state(&state);
            }
            Ok(exit_for(&state))
        }
        Command::Result { id, output } => {
            let state = control.call(json!({"cmd": "job", "job": id}), Duration::from_secs(10))?;
            match state["state"].as_str() {
                Some("done") if state["outcome"] == "ok" => {}
                Some("done") => bail!(
                    "job {id} failed on its worker: {} ({})",
                    state["message"].as_str().unwrap_or(""),
                    state["outcome"].as_str().unwrap_or("")
                ),
                Some("failed") => {
                    bail!("job {id} failed: {}", state["error"].as_str().unwrap_or(""))
                }
                _ => bail!("job {id} has not finished yet"),
            }
            match output {
                Some(path) => {
                    let path = std::path::absolute(&path)?;
                    export(&mut control, &id, &state, &path)?;
                }
                None => {
                    let tmp =
                        tempfile::NamedTempFile::new().context("cannot make a temporary file")?;
                    export(&mut control, &id, &state, tmp.path())?;
                    let bytes = std::fs::read(tmp.path())?;
                    use std::io::Write;
                    std::io::stdout().write_all(&bytes)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn export(
    control: &mut p2pc_node::Control,
    id: &str,
    state: &Value,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let cid = state["output"].as_str().context("the job has no output")?;
    control.call(
        json!({"cmd": "export", "cid": cid, "job": id, "path": path}),
        Duration::from_secs(600),
    )?;
    Ok(())
}

fn exit_for(state: &Value) -> ExitCode {
    match state["state"].as_str() {
        Some("done") if state["outcome"] == "ok" => ExitCode::SUCCESS,
        Some("done") | Some("failed") => ExitCode::from(EXIT_TASK_FAILED),
        _ => ExitCode::SUCCESS,
    }
}

fn print_state(state: &Value) {
    match state["state"].as_str() {
        Some("done") => {
            eprintln!(
                "done on {}: {} (fuel {}, output {}){}",
                state["worker"].as_str().unwrap_or(""),
                state["outcome"].as_str().unwrap_or(""),
                crate::format::thousands(state["fuel_used"].as_u64().unwrap_or(0)),
                crate::format::count(state["output_len"].as_u64().unwrap_or(0), "byte"),
                state["message"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
        Some("failed") => eprintln!("failed: {}", state["error"].as_str().unwrap_or("")),
        Some("running") => eprintln!("running on {}", state["worker"].as_str().unwrap_or("")),
        Some(other) => eprintln!("{other}"),
        None => eprintln!("unknown state"),
    }
}
