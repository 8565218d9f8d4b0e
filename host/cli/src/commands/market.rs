//! `p2pctl market` and `p2pctl reputation`: the offers a node hears, its
//! own price and what sets it, and what it knows of the workers it used.

use std::process::ExitCode;

use p2pc_node::api::{OfferView, PriceView, ReputationView};

use super::node::NodeDir;
use crate::context::{Global, print_json};

/// The market as the local node sees it.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The workers' offers the node holds, cheapest first: price, load,
    /// free slots and this node's reputation score of each.
    Offers,
    /// This node's price as a worker now, and the inputs that set it.
    Price,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeDir,
}

/// What the node knows of the workers it used.
#[derive(Debug, clap::Args)]
pub struct ReputationArgs {
    /// One worker's peer id; every worker's if absent.
    peer: Option<String>,
    #[command(flatten)]
    node: NodeDir,
}

fn short(peer: &str) -> &str {
    // Peer ids share their first characters; the end tells them apart.
    // The last twelve characters, on a character boundary whatever the
    // node sent.
    let start = peer.char_indices().rev().nth(11).map_or(0, |(i, _)| i);
    &peer[start..]
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let api = args.node.api()?;
    let n = crate::format::thousands;
    match args.command {
        Command::Offers => {
            let offers: Vec<OfferView> = api.get("/v1/market/offers")?;
            if g.json {
                print_json(&offers)?;
                return Ok(ExitCode::SUCCESS);
            }
            if offers.is_empty() {
                println!("no offers heard yet (workers gossip one every few seconds)");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<14} {:>8} {:>6} {:>6} {:>10} {:>10}  notes",
                "peer", "price", "load", "free", "collateral", "reputation"
            );
            for o in &offers {
                let mut notes = Vec::new();
                if o.arbiter {
                    notes.push("arbiter");
                }
                if o.draining {
                    notes.push("draining");
                }
                println!(
                    "…{:<13} {:>8} {:>5}% {:>3}/{:<2} {:>10} {:>10}  {}",
                    short(&o.peer),
                    n(o.price),
                    o.load_permille / 10,
                    o.free_slots,
                    o.slots,
                    n(o.collateral),
                    o.reputation
                        .map_or_else(|| "new".to_owned(), |r| format!("{r:.2}")),
                    notes.join(", ")
                );
            }
            println!("prices in credits per million fuel");
        }
        Command::Price => {
            let p: PriceView = api.get("/v1/market/price")?;
            if g.json {
                print_json(&p)?;
                return Ok(ExitCode::SUCCESS);
            }
            if !p.paid {
                println!(
                    "price     0: this node runs peers' tasks unpaid (no ledger, or [market] base_price = 0)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "price     {} credits per million fuel (heading to {})",
                n(p.price),
                n(p.target)
            );
            println!(
                "bounds    base {}, min {}, max {}",
                n(p.base),
                n(p.min),
                n(p.max)
            );
            println!(
                "pressure  {}.{}% of slots (target 50%): {} of {} busy, {} waiting, {} refused this window",
                p.pressure_permille / 10,
                p.pressure_permille % 10,
                p.busy,
                p.slots,
                p.waiting,
                p.refused
            );
            println!(
                "window    {} ms; {} windows so far; it moves at most 12.5% a window",
                n(p.window_ms),
                n(p.windows)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reputation(args: ReputationArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let api = args.node.api()?;
    let records: Vec<ReputationView> = match &args.peer {
        None => api.get("/v1/reputation")?,
        Some(p) => match api.get(&format!("/v1/reputation/{}", crate::api::seg(p))) {
            Ok(r) => vec![r],
            Err(e)
                if e.downcast_ref::<p2pc_api::ClientError>()
                    .and_then(p2pc_api::ClientError::status)
                    == Some(404) =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        },
    };
    if g.json {
        match &args.peer {
            Some(_) => print_json(&records.first())?,
            None => print_json(&records)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        match &args.peer {
            Some(p) => println!("no record of {p}: this node has sent it no task yet"),
            None => println!("no records yet: this node has used no worker"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    for r in &records {
        println!("peer      {}", r.peer);
        println!(
            "score     {:.3}{}",
            r.score,
            if r.trusted { " (trusted)" } else { "" }
        );
        println!(
            "evidence  {} verified ({} replicated and agreeing), {} timeouts, {} cheats, {} equivocations",
            r.success, r.replicated, r.timeout, r.cheat, r.equivocation
        );
        println!(
            "validity  {} consecutive valid replicated results; adaptive replicates {:.1}% of its tasks",
            r.valid_run,
            r.replicated_share * 100.0
        );
        if args.peer.is_some() {
            let now = p2pc_node::messages::now_unix_ms() / 1000;
            for (event, at) in r.recent.iter().rev() {
                println!("          {event} {}", crate::format::date(at / 1000, now));
            }
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
