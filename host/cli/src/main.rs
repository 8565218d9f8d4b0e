//! `p2pctl`: the command-line client of p2pc.
//!
//! This file only parses arguments, runs the chosen command and turns an
//! error into a short message and an exit code; each subcommand lives in its
//! own module under `commands/`.

mod api;
mod commands;
mod context;
mod format;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("P2PC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(commands::EXIT_USAGE)
        }
    }
}
