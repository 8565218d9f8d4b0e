//! `p2pctl job`: submit jobs to the network through the local node and
//! follow them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use p2pc_api::types::{JobInput, JobPage, SubmitJob, Submitted};
use p2pc_node::{JobInfo, JobLogs, JobState};
use serde_json::json;

use super::EXIT_TASK_FAILED;
use super::node::NodeDir;
use crate::api::{Api, seg};
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
        /// On a paid network, the most the job may lock and so pay, in
        /// credits: the task's fuel limit is cut to what this buys at the
        /// worker's price. Default: the fuel limit at the worker's price.
        #[arg(long, value_name = "CREDITS")]
        budget: Option<u64>,
        /// The highest price accepted, in credits per million fuel; workers
        /// asking more are not chosen.
        #[arg(long, value_name = "CREDITS_PER_MFUEL")]
        max_price: Option<u64>,
        /// For a map-reduce component: split the input into at most N
        /// shards at line boundaries, each mapped by a task on its own
        /// worker where there are enough, then reduced by one more.
        #[arg(long, value_name = "N")]
        shards: Option<u32>,
        /// How long after the settlement the job's owner may dispute it,
        /// e.g. 10m. Default: the shortest the network's genesis allows.
        #[arg(long, value_parser = crate::context::parse_duration)]
        window: Option<Duration>,
        /// How answers are checked: `none` (one worker), `K-of-N` such as
        /// `2-of-3` (N distinct workers, K equal answers win; the others
        /// are not paid and lose their collateral), or `adaptive` (replicate
        /// the tasks of workers without a record of valid results, then
        /// spot-check). Default: the node's `[market] validation` for a
        /// paid job, none for an unpaid one.
        #[arg(long, value_name = "none|K-of-N|adaptive", value_parser = parse_validation)]
        validate: Option<String>,
        /// Only workers this node scores at least this high (0 to 1; ½ is a
        /// worker with no record): for urgent work.
        #[arg(long, value_name = "SCORE")]
        min_reputation: Option<f64>,
        /// Seal the input and output end to end: only the chosen workers
        /// read the input, only this node reads the output; peers and
        /// chunk providers see ciphertext. Default: on for a paid job, off
        /// for an unpaid one (the node's `[jobs] seal_paid`, `seal_unpaid`).
        #[arg(long, overrides_with = "no_seal")]
        seal: bool,
        /// Do not seal, whatever the node's default.
        #[arg(long, overrides_with = "seal")]
        no_seal: bool,
        /// Arguments for the job's program, after `--`: they follow the
        /// bundle's own (`bundle pack --arg`) in its argv.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Show a job's state, worker and progress.
    Status {
        /// The job id `job submit` printed.
        id: String,
    },
    /// Show what a finished job logged (`host.log` lines) and the end of
    /// its stderr, as its worker's receipt carried them.
    Logs {
        /// The job id.
        id: String,
    },
    /// List the jobs this node keeps, newest first.
    List {
        /// Show at most N.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Cancel a running job: nothing more is placed, and the holds of tasks
    /// not answered are refunded at their deadlines.
    Cancel {
        /// The job id.
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

fn parse_validation(s: &str) -> Result<String, String> {
    s.parse::<p2pc_node::Validation>().map(|v| v.to_string())
}

fn now() -> u64 {
    p2pc_node::messages::now_unix_ms() / 1000
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let api = args.node.api()?;
    match args.command {
        Command::Submit {
            bundle,
            input,
            to,
            wait,
            timeout,
            budget,
            max_price,
            shards,
            window,
            validate,
            min_reputation,
            seal,
            no_seal,
            args,
        } => {
            p2pc_types::check_args(&args).context("the arguments after --")?;
            let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            // The bundle and the input travel as blobs, streamed; the job
            // names them by id. The input is not announced: the node sends
            // (and, if sealed, seals) what the workers need.
            let bundle: p2pc_store::BundleRecord = api
                .upload_file("/v1/bundles", &bundle)
                .with_context(|| format!("cannot add bundle {}", bundle.display()))?;
            let input = match &input {
                Some(path) => {
                    let blob: p2pc_store::BlobInfo = api
                        .upload_file("/v1/blobs?announce=false", path)
                        .with_context(|| format!("cannot upload input {}", path.display()))?;
                    Some(JobInput::Blob(blob.id.to_string()))
                }
                None => None,
            };
            let request = SubmitJob {
                bundle: bundle.id.to_string(),
                input,
                to,
                timeout_ms: Some(timeout_ms),
                args,
                budget,
                max_price,
                window_ms: window.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
                shards,
                validation: validate,
                min_reputation,
                seal: match (seal, no_seal) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            let Submitted { job: id } = api.post("/v1/jobs", &request)?;
            if !wait {
                if g.json {
                    print_json(&json!({ "job": id }))?;
                } else {
                    println!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let info = follow(&api, &id, timeout, g.json)?;
            if g.json {
                print_json(&job_json(&info)?)?;
                return Ok(exit_for(&info.status));
            }
            eprintln!("job {id}");
            print_state(&info.status);
            if is_ok(&info.status) {
                api.download_stdout(&format!("/v1/jobs/{}/output", seg(&id)))?;
            }
            Ok(exit_for(&info.status))
        }
        Command::Status { id } => {
            let info: JobInfo = api.get(&format!("/v1/jobs/{}", seg(&id)))?;
            if g.json {
                print_json(&job_json(&info)?)?;
            } else {
                let n = crate::format::thousands;
                println!("job       {} ({})", info.id, info.name);
                println!(
                    "submitted {}",
                    crate::format::date(info.submitted_unix_ms / 1000, now())
                );
                for t in &info.tasks {
                    let mut line = format!(
                        "task      {:<8} attempt {} {:<8} on {}",
                        if t.step.is_empty() { "run" } else { &t.step },
                        t.attempt,
                        if t.state.is_empty() { "-" } else { &t.state },
                        t.worker.as_deref().unwrap_or("(no worker)")
                    );
                    if let Some(o) = &t.outcome {
                        line.push_str(&format!(": {o}"));
                    }
                    if let Some(f) = t.fuel_used {
                        line.push_str(&format!(", fuel {}", n(f)));
                    }
                    if let Some(c) = t.cost {
                        line.push_str(&format!(", cost {}", n(c)));
                    }
                    if let Some(e) = &t.escrow {
                        line.push_str(&format!(", hold {}", &e[..16.min(e.len())]));
                    }
                    if let Some(m) = &t.message {
                        line.push_str(&format!(" ({m})"));
                    }
                    println!("{line}");
                }
                if let Some(price) = info.tasks.iter().find_map(|t| t.price) {
                    let locked = info
                        .tasks
                        .iter()
                        .filter_map(|t| t.locked)
                        .fold(0, u64::saturating_add);
                    println!(
                        "paid      {} credits per million fuel; {} locked; cost {}",
                        n(price),
                        n(locked),
                        n(total_cost(&info))
                    );
                }
                if !info.validation.is_empty() && info.validation != "none" {
                    let mut line = format!("validated {}", info.validation);
                    if info.unreplicated > 0 {
                        line.push_str(&format!(
                            " ({} ran on one worker: too few workers to replicate)",
                            crate::format::count(info.unreplicated, "task")
                        ));
                    }
                    println!("{line}");
                }
                if info.sealed {
                    println!("sealed    input and output end to end (peers see ciphertext)");
                }
                print_state(&info.status);
                if let Some(p) = &info.progress {
                    println!("progress  {}", progress_text(p.done, p.total));
                }
            }
            Ok(exit_for(&info.status))
        }
        Command::Cancel { id } => {
            let _: p2pc_api::types::Cancelled =
                api.post(&format!("/v1/jobs/{}/cancel", seg(&id)), &())?;
            if g.json {
                print_json(&json!({"job_id": id, "cancelled": true}))?;
            } else {
                println!(
                    "job {id} cancelled: nothing more is placed; holds of tasks not answered are refunded at their deadlines"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { id } => {
            let logs: JobLogs = api.get(&format!("/v1/jobs/{}/logs", seg(&id)))?;
            if g.json {
                print_json(&logs)?;
                return Ok(ExitCode::SUCCESS);
            }
            if logs.logs.is_empty() && logs.stderr.is_empty() {
                let info: JobInfo = api.get(&format!("/v1/jobs/{}", seg(&id)))?;
                if info.status.is_final() {
                    eprintln!("job {id} logged nothing");
                } else {
                    eprintln!("job {id} has not finished; its logs come with its receipt");
                }
            }
            for line in &logs.logs {
                let level = serde_json::to_value(line.level)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                println!("{level:<5} {}", line.message);
            }
            if logs.logs_dropped > 0 {
                println!(
                    "({} dropped past the limits)",
                    crate::format::count(logs.logs_dropped, "line")
                );
            }
            if !logs.stderr.is_empty() {
                println!(
                    "--- stderr (its last {}) ---",
                    crate::format::count(logs.stderr.len() as u64, "byte")
                );
                print!("{}", logs.stderr);
                if !logs.stderr.ends_with('\n') {
                    println!();
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::List { limit } => {
            let page: JobPage = api.get(&format!("/v1/jobs?limit={}", limit.clamp(1, 1000)))?;
            let jobs = page.jobs;
            if g.json {
                print_json(&jobs)?;
                return Ok(ExitCode::SUCCESS);
            }
            if jobs.is_empty() {
                println!("no jobs");
            }
            for j in jobs {
                println!(
                    "{}  {:<20} {:<10} {}",
                    j.id,
                    j.name,
                    state_name(&j.status),
                    crate::format::date(j.submitted_unix_ms / 1000, now())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Result { id, output } => {
            let info: JobInfo = api.get(&format!("/v1/jobs/{}", seg(&id)))?;
            match &info.status {
                JobState::Done { outcome, .. } if outcome == "ok" => {}
                JobState::Done {
                    outcome, message, ..
                } => bail!("job {id} failed on its worker: {message} ({outcome})"),
                JobState::Failed { error } => bail!("job {id} failed: {error}"),
                JobState::Lost { reason } => bail!("job {id} was lost: {reason}"),
                _ => bail!("job {id} has not finished yet"),
            }
            match output {
                Some(path) => {
                    api.download_file(&format!("/v1/jobs/{}/output", seg(&id)), &path)?;
                }
                None => {
                    api.download_stdout(&format!("/v1/jobs/{}/output", seg(&id)))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Waits for a job to end, showing its progress on stderr (unless
/// `quiet`) as the worker reports it.
fn follow(api: &Api, id: &str, timeout: Duration, quiet: bool) -> anyhow::Result<JobInfo> {
    let now = std::time::Instant::now();
    // A timeout too long to add is as good as none.
    let deadline = now
        .checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86400));
    let step = Duration::from_millis(500);
    let mut shown = None;
    // A bar on a terminal, as indicatif draws it; plain lines otherwise.
    let bar = (!quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let wait = left.min(step);
        let info: JobInfo = api.get_within(
            &format!("/v1/jobs/{}?wait={}ms", seg(id), wait.as_millis()),
            wait.saturating_add(crate::api::ASK),
        )?;
        if info.status.is_final() || left.is_zero() {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            } else if shown.is_some() && !quiet {
                eprintln!();
            }
            return Ok(info);
        }
        if let Some(p) = &info.progress
            && shown != Some(*p)
            && !quiet
        {
            match &bar {
                Some(bar) => {
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                    // A sharded job reports tasks done; one task its units.
                    bar.set_message(if info.tasks.len() > 1 {
                        "tasks"
                    } else {
                        "progress"
                    });
                }
                None => eprint!("\rprogress {}", progress_text(p.done, p.total)),
            }
            shown = Some(*p);
        }
    }
}

fn progress_text(done: u64, total: u64) -> String {
    if total == 0 {
        return crate::format::thousands(done);
    }
    let pct = (done as f64 / total as f64 * 100.0).clamp(0.0, 100.0);
    format!(
        "{} of {} ({pct:.0}%)",
        crate::format::thousands(done),
        crate::format::thousands(total)
    )
}

/// The job's total cost: what each task that answered cost.
fn total_cost(info: &JobInfo) -> u64 {
    info.tasks
        .iter()
        .filter_map(|t| t.cost)
        .fold(0, u64::saturating_add)
}

/// A job as `--json` prints it: its record, with `job_id`, `state`,
/// `output`, `fuel_used` and `cost` at the top.
fn job_json(info: &JobInfo) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(info)?;
    let (output, fuel) = match &info.status {
        JobState::Done {
            output, fuel_used, ..
        } => (output.clone(), Some(*fuel_used)),
        _ => (None, None),
    };
    if let Some(map) = v.as_object_mut() {
        map.insert("job_id".into(), json!(info.id));
        map.insert("state".into(), json!(state_name(&info.status)));
        map.insert("output".into(), json!(output));
        map.insert("fuel_used".into(), json!(fuel));
        map.insert("cost".into(), json!(total_cost(info)));
    }
    Ok(v)
}

fn is_ok(state: &JobState) -> bool {
    matches!(state, JobState::Done { outcome, .. } if outcome == "ok")
}

fn exit_for(state: &JobState) -> ExitCode {
    match state {
        JobState::Done { .. } if is_ok(state) => ExitCode::SUCCESS,
        JobState::Done { .. }
        | JobState::Failed { .. }
        | JobState::Lost { .. }
        | JobState::Cancelled { .. } => ExitCode::from(EXIT_TASK_FAILED),
        _ => ExitCode::SUCCESS,
    }
}

fn state_name(state: &JobState) -> &'static str {
    match state {
        JobState::Submitted => "submitted",
        JobState::Running { .. } => "running",
        JobState::Done { .. } if is_ok(state) => "done",
        JobState::Done { .. } => "job error",
        JobState::Failed { .. } => "failed",
        JobState::Lost { .. } => "lost",
        JobState::Cancelled { .. } => "cancelled",
        _ => "unknown",
    }
}

fn print_state(state: &JobState) {
    match state {
        JobState::Done {
            worker,
            outcome,
            message,
            fuel_used,
            output_len,
            ..
        } => {
            eprintln!(
                "done on {worker}: {outcome} (fuel {}, output {}){}",
                crate::format::thousands(*fuel_used),
                crate::format::count(*output_len, "byte"),
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            );
        }
        JobState::Failed { error } => eprintln!("failed: {error}"),
        JobState::Lost { reason } => eprintln!("lost: {reason}"),
        JobState::Cancelled { finished } => {
            eprintln!(
                "cancelled ({} finished first)",
                crate::format::count(*finished, "task")
            )
        }
        JobState::Running { worker } => eprintln!("running on {worker}"),
        JobState::Submitted => eprintln!("submitted: looking for a worker"),
        _ => eprintln!("unknown state"),
    }
}
