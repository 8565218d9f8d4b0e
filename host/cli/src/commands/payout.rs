//! `p2pctl payout` (an operator turning credits back into money) and
//! `p2pctl issuer` (the issuer service's operator: payments, payouts).

use std::process::ExitCode;

use anyhow::bail;
use p2pc_node::api::{IssuerStatus, PaymentView, PayoutRequestBody, PayoutUpdate, PayoutView};

use super::node::NodeDir;
use crate::context::{Global, print_json};

/// Turn this node's credits back into money through the network's issuer.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Ask for AMOUNT credits to be paid out: they move to the issuer in a
    /// signed transfer, and the issuer records the payout (`requested`,
    /// then `sent`, or `failed` with the credits returned). The issuer is
    /// `[payouts] issuer_peer` in node.toml.
    Request {
        /// Credits to pay out.
        amount: u64,
        /// Where the money goes: an IBAN or a provider account id, as the
        /// issuer's operator expects it.
        #[arg(long = "to", value_name = "DESTINATION")]
        destination: String,
    },
    /// This node's payout requests and how each stands (each not yet
    /// final is asked about again; one never acknowledged is sent again).
    List,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeDir,
}

/// The issuer service on this node: what it minted, what it holds, the
/// payouts it must send.
#[derive(Debug, clap::Subcommand)]
pub enum IssuerCommand {
    /// Credits minted, clearing, owed; payouts waiting.
    Status,
    /// Every payment recorded, with its state.
    Payments,
    /// Every payout recorded, with its state.
    Payouts,
    /// Say what became of a requested payout: sent (with the provider's
    /// or bank's reference) or failed (its credits go back).
    Mark {
        /// The payout's id (`p2pctl issuer payouts`).
        id: String,
        /// It was sent; the reference.
        #[arg(
            long,
            value_name = "REFERENCE",
            conflicts_with = "failed",
            required_unless_present = "failed"
        )]
        sent: Option<String>,
        /// It failed for good; why.
        #[arg(long, value_name = "REASON")]
        failed: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct IssuerArgs {
    #[command(subcommand)]
    command: IssuerCommand,
    #[command(flatten)]
    node: NodeDir,
}

fn print_payouts(payouts: &[PayoutView]) {
    if payouts.is_empty() {
        println!("no payouts");
        return;
    }
    let n = crate::format::thousands;
    println!(
        "{:<18} {:>12} {:>10}  {:<10} destination / detail",
        "id", "credits", "netted", "state"
    );
    for p in payouts {
        let detail = if p.detail.is_empty() {
            p.destination.clone()
        } else {
            format!("{} ({})", p.destination, p.detail)
        };
        println!(
            "{:<18} {:>12} {:>10}  {:<10} {}",
            &p.id[..16.min(p.id.len())],
            n(p.credits),
            n(p.netted),
            p.state,
            detail
        );
    }
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let api = args.node.api()?;
    match args.command {
        Command::Request {
            amount,
            destination,
        } => {
            if amount == 0 {
                bail!("AMOUNT must be above 0");
            }
            let p: PayoutView = api.post(
                "/v1/payouts",
                &PayoutRequestBody {
                    amount,
                    destination,
                },
            )?;
            if g.json {
                print_json(&p)?;
            } else if p.state == "unsent" {
                println!(
                    "payout {} signed: {} credits moved to the issuer, but the issuer has not acknowledged it yet ({}); `p2pctl payout list` sends it again",
                    p.id,
                    crate::format::thousands(p.credits),
                    p.detail
                );
            } else {
                println!(
                    "payout {}: {} credits moved to the issuer, {}{}",
                    p.id,
                    crate::format::thousands(p.credits),
                    p.state,
                    if p.netted > 0 {
                        format!(
                            " ({} kept against a debt for a reversed payment)",
                            crate::format::thousands(p.netted)
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
        Command::List => {
            let payouts: Vec<PayoutView> = api.get("/v1/payouts")?;
            if g.json {
                print_json(&payouts)?;
            } else {
                print_payouts(&payouts);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn issuer(args: IssuerArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let api = args.node.api()?;
    let n = crate::format::thousands;
    match args.command {
        IssuerCommand::Status => {
            let s: IssuerStatus = api.get("/v1/issuer")?;
            if g.json {
                print_json(&s)?;
            } else {
                println!("account          {}", s.account);
                println!("provider         {}", s.provider);
                println!("minted           {} credits", n(s.minted));
                println!(
                    "clearing         {} credits ({} after payment)",
                    n(s.clearing),
                    humantime::format_duration(std::time::Duration::from_millis(s.clearing_ms))
                );
                println!("balance          {} credits", n(s.balance));
                println!("owed to issuer   {} credits", n(s.debt));
                println!("payments         {}", s.payments);
                println!(
                    "payouts          {} ({} waiting to be sent)",
                    s.payouts, s.payouts_waiting
                );
            }
        }
        IssuerCommand::Payments => {
            let payments: Vec<PaymentView> = api.get("/v1/issuer/payments")?;
            if g.json {
                print_json(&payments)?;
            } else if payments.is_empty() {
                println!("no payments");
            } else {
                println!(
                    "{:<28} {:>12} {:>8} {:>14}  {:<9} account",
                    "payment", "amount", "currency", "credits", "state"
                );
                for p in &payments {
                    println!(
                        "{:<28} {:>12} {:>8} {:>14}  {:<9} {}",
                        p.payment,
                        n(p.amount),
                        p.currency,
                        n(p.credits),
                        p.state,
                        p.account.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        IssuerCommand::Payouts => {
            let payouts: Vec<PayoutView> = api.get("/v1/issuer/payouts")?;
            if g.json {
                print_json(&payouts)?;
            } else {
                print_payouts(&payouts);
            }
        }
        IssuerCommand::Mark { id, sent, failed } => {
            let update = match (sent, failed) {
                (Some(reference), None) => PayoutUpdate::Sent { reference },
                (None, Some(reason)) => PayoutUpdate::Failed { reason },
                _ => bail!("say --sent REFERENCE or --failed REASON"),
            };
            let p: PayoutView = api.post(&format!("/v1/issuer/payouts/{id}"), &update)?;
            if g.json {
                print_json(&p)?;
            } else if p.state == "failed" {
                println!(
                    "payout {} failed; {} credits returned to {} (op {})",
                    p.id,
                    n(p.credits),
                    p.account,
                    p.returned.as_deref().unwrap_or("-")
                );
            } else {
                println!("payout {} sent ({})", p.id, p.detail);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
