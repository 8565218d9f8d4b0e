//! The `p2pctl` command tree.

mod blob;
mod bundle;
mod health;
mod job;
mod key;
mod ledger;
mod market;
mod new;
mod node;
mod payout;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::context::Global;

/// Exit status when the job ran (or was loaded) and failed.
pub const EXIT_TASK_FAILED: u8 = 1;
/// Exit status when p2pctl could not even start: bad arguments, unreadable
/// files, a refused bundle, a wrong passphrase.
pub const EXIT_USAGE: u8 = 2;

/// p2pctl: run, publish and pay for WebAssembly jobs on a peer-to-peer
/// compute network.
#[derive(Debug, Parser)]
#[command(
    name = "p2pctl",
    version,
    about,
    after_help = "Exit status: 0 on success, 1 when a job ran and failed \
                  (the reason is printed), 2 when the command could not start or \
                  was refused.\n\
                  Logging: set P2PC_LOG (e.g. P2PC_LOG=debug) for diagnostics on stderr."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    global: Global,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(Box<run::Args>),
    New(new::Args),
    /// Create and manage keys (identities) in the encrypted keystore.
    #[command(subcommand)]
    Key(key::Command),
    /// Pack, sign, verify and inspect signed component bundles.
    #[command(subcommand)]
    Bundle(bundle::Command),
    /// Store and retrieve content-addressed blobs: the running node's, or
    /// the local store's.
    Blob(blob::Args),
    /// Set up, run and inspect a runner node.
    Node(node::Args),
    /// Submit jobs to the network through the local node and follow them.
    Job(job::Args),
    /// Credits: balances, history, transfers, escrows, and the genesis file.
    Ledger(ledger::Args),
    /// Turn this node's credits back into money through the network's
    /// issuer: request a payout, list requests.
    Payout(payout::Args),
    /// The issuer service on this node (`[issuer]`): payments minted,
    /// payouts to send, and marking them sent or failed.
    Issuer(payout::IssuerArgs),
    /// The market: the workers' offers and prices, and this node's price.
    Market(market::Args),
    /// What this node knows of the workers it used: scores and evidence.
    Reputation(market::ReputationArgs),
    /// What the node's health checker finds: equivocations, supply drift,
    /// a ledger behind, failing workers, odd prices, few peers, a full
    /// disk; each with its evidence and what to do.
    Health(health::HealthArgs),
    /// Follow the node's events as they happen: jobs and tasks, peers'
    /// tasks run here, ledger ops, peers, health findings.
    Events(health::EventsArgs),
    /// Print a shell completion script: `p2pctl completions bash > ~/.local/share/bash-completion/completions/p2pctl`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Programs p2pctl runs as its own helpers; not for people.
    #[command(subcommand, hide = true)]
    Internal(Internal),
}

#[derive(Debug, Subcommand)]
enum Internal {
    /// Serve a pool of isolated wasm workers on stdin and stdout.
    WasmWorker {
        /// Largest memory a task may be given, in bytes.
        #[arg(long, default_value_t = 4 << 30)]
        max_memory: u64,
    },
    /// Append COUNT transfers to a stopped node's ledger, printing each
    /// op id once it is on disk (for the crash test).
    LedgerAppend {
        /// The node's directory.
        #[arg(long = "node", value_name = "DIR")]
        node: PathBuf,
        /// How many.
        #[arg(long)]
        count: u64,
    },
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let g = &self.global;
        match self.command {
            Command::Run(args) => run::run(*args, g),
            Command::New(args) => new::run(args, g).map(|()| ExitCode::SUCCESS),
            Command::Key(cmd) => key::run(cmd, g).map(|()| ExitCode::SUCCESS),
            Command::Bundle(cmd) => bundle::run(cmd, g).map(|()| ExitCode::SUCCESS),
            Command::Blob(cmd) => blob::run(cmd, g).map(|()| ExitCode::SUCCESS),
            Command::Node(args) => node::run(args, g).map(|()| ExitCode::SUCCESS),
            Command::Job(args) => job::run(args, g),
            Command::Ledger(args) => ledger::run(args, g),
            Command::Market(args) => market::run(args, g),
            Command::Payout(args) => payout::run(args, g),
            Command::Issuer(args) => payout::issuer(args, g),
            Command::Reputation(args) => market::reputation(args, g),
            Command::Health(args) => health::health(args, g),
            Command::Events(args) => health::events(args, g),
            Command::Completions { shell } => {
                use clap::CommandFactory;
                let mut cmd = Cli::command();
                // Into memory first: writing to a closed pipe is an error
                // here, not a panic inside the generator.
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cmd, "p2pctl", &mut script);
                use std::io::Write;
                match std::io::stdout().write_all(&script) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                    _ => Ok(ExitCode::SUCCESS),
                }
            }
            Command::Internal(Internal::LedgerAppend { node, count }) => {
                ledger::append(&node, count, g)
            }
            Command::Internal(Internal::WasmWorker { max_memory }) => Ok(
                p2pc_exec::worker::serve_blocking(p2pc_sandbox::ByteSize(max_memory)),
            ),
        }
    }
}
