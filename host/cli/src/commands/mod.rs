//! The `p2pctl` command tree.

mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status when the job ran (or was loaded) and failed.
pub const EXIT_TASK_FAILED: u8 = 1;
/// Exit status when p2pctl could not even start: bad arguments, unreadable
/// files.
pub const EXIT_USAGE: u8 = 2;

/// p2pctl: run, publish and pay for WebAssembly jobs on a peer-to-peer
/// compute network.
#[derive(Debug, Parser)]
#[command(
    name = "p2pctl",
    version,
    about,
    after_help = "Exit status: 0 on success, 1 when a job ran and failed \
                  (the reason is printed), 2 when the command could not start.\n\
                  Logging: set P2PC_LOG (e.g. P2PC_LOG=debug) for diagnostics on stderr."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(run::Args),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Run(args) => run::run(args),
        }
    }
}
