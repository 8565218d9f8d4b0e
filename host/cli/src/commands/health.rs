//! `p2pctl health` and `p2pctl events`: what the node's health checker
//! finds, and the node's event stream as it happens.

use std::io::Write;
use std::process::ExitCode;

use p2pc_node::{EventKind, HealthReport};

use super::node::NodeDir;
use crate::context::{Global, print_json};

/// The health checker's findings.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when nothing critical was found (warnings are printed), \
                  1 when a finding is critical, 2 when the node could not be asked."
)]
pub struct HealthArgs {
    #[command(flatten)]
    node: NodeDir,
}

/// Follow the node's events.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Start after this event number (as printed, or as `--json` gives
    /// it); without it, start now. 0: every event still kept.
    #[arg(long, value_name = "N")]
    since: Option<u64>,
    /// The epoch `--since` was read in: if the node restarted since, say
    /// so rather than start over silently.
    #[arg(long, requires = "since")]
    epoch: Option<String>,
    /// Only these types, comma-separated: job_state, task_state, progress,
    /// task_ran, task_refused, ledger_op, peer_connected,
    /// peer_disconnected, health_finding, health_cleared.
    #[arg(long, value_name = "TYPES")]
    types: Option<String>,
    /// Only events about this job.
    #[arg(long, value_name = "JOB")]
    job: Option<String>,
    /// Print what is kept and stop, rather than follow.
    #[arg(long)]
    no_follow: bool,
    #[command(flatten)]
    node: NodeDir,
}

pub fn health(args: HealthArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let api = args.node.api()?;
    let report: HealthReport = api.get("/v1/health")?;
    if g.json {
        print_json(&report)?;
    } else {
        println!(
            "status  {} ({} checks: {})",
            report.status,
            report.checks.len(),
            report.checks.join(", ")
        );
        for f in &report.findings {
            println!();
            let about = f
                .subject
                .as_deref()
                .map_or(String::new(), |s| format!(" [{s}]"));
            println!(
                "{:<8} {}{}: {}",
                f.severity.name(),
                f.check,
                about,
                f.summary
            );
            println!("         evidence: {}", f.evidence);
            println!("         do: {}", f.action);
        }
    }
    Ok(if report.is_critical() {
        ExitCode::from(super::EXIT_TASK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn query(args: &EventsArgs) -> String {
    let mut q = Vec::new();
    let enc = |s: &str| crate::api::seg(s);
    if let Some(n) = args.since {
        q.push(format!("since={n}"));
    }
    if let Some(e) = &args.epoch {
        q.push(format!("epoch={}", enc(e)));
    }
    if let Some(t) = &args.types {
        q.push(format!("types={}", enc(t)));
    }
    if let Some(j) = &args.job {
        q.push(format!("job={}", enc(j)));
    }
    if args.no_follow {
        q.push("follow=false".into());
    }
    q.join("&")
}

/// One event in a line for people.
fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::JobState {
            job, state, detail, ..
        } => format!(
            "job {job} {state}{}",
            detail
                .as_deref()
                .map_or(String::new(), |d| format!(": {d}"))
        ),
        EventKind::TaskState {
            job,
            step,
            attempt,
            state,
            worker,
            outcome,
            ..
        } => format!(
            "job {job} {step} attempt {attempt} {state}{}{}",
            worker
                .as_deref()
                .map_or(String::new(), |w| format!(" on {w}")),
            outcome
                .as_deref()
                .map_or(String::new(), |o| format!(" ({o})"))
        ),
        EventKind::Progress { job, done, total } => format!("job {job} progress {done}/{total}"),
        EventKind::TaskRan {
            submitter,
            outcome,
            fuel_used,
            duration_ms,
            ..
        } => format!(
            "ran a task for {submitter}: {outcome}, {} fuel, {duration_ms} ms",
            crate::format::thousands(*fuel_used)
        ),
        EventKind::TaskRefused { submitter, code } => {
            format!("refused a task from {submitter}: {code}")
        }
        EventKind::LedgerOp {
            op, kind, result, ..
        } => format!("ledger {kind} {} {result}", &op[..op.len().min(16)]),
        EventKind::PeerConnected { peer } => format!("peer {peer} connected"),
        EventKind::PeerDisconnected { peer } => format!("peer {peer} left"),
        EventKind::HealthFinding { finding } => format!(
            "health {} {}: {}",
            finding.severity.name(),
            finding.check,
            finding.summary
        ),
        EventKind::HealthCleared { check, subject } => format!(
            "health {check} cleared{}",
            subject
                .as_deref()
                .map_or(String::new(), |s| format!(" [{s}]"))
        ),
        other => format!("{} event", other.type_name()),
    }
}

pub fn events(args: EventsArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let api = args.node.api()?;
    let q = query(&args);
    let mut out = std::io::stdout().lock();
    let mut epoch_shown = false;
    let result = api.events(&q, |e| {
        let written = if g.json {
            serde_json::to_writer(&mut out, &e)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        } else {
            if !epoch_shown {
                epoch_shown = true;
                writeln!(out, "# epoch {}", e.epoch)?;
            }
            writeln!(out, "{:>6}  {}", e.seq, describe(&e.kind))
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => Ok(true),
            // The reader went away (`| head`): stop quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e.into()),
        }
    });
    result?;
    Ok(ExitCode::SUCCESS)
}
