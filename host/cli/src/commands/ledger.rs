//! `p2pctl ledger`: the credit ledger. Through the running node's control
//! channel when it runs; otherwise straight from its database on disk.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use p2pc_crypto::{PublicKey, SecretKey};
use p2pc_ledger::{ArbiterPolicy, Body, Genesis, Insert, Ledger};
use p2pc_node::api::OpBody;
use p2pc_node::{LedgerAnswer, LedgerRequest, NodeConfig};
use serde_json::json;

use super::node::{NodeDir, load_config, unlock_key};
use crate::context::{Global, print_json};
use crate::format;

/// Inspect and use the credit ledger.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a genesis file founding a new network.
    Genesis {
        /// The network's name (part of its id).
        #[arg(long)]
        network: String,
        /// A key that may mint credits (repeatable).
        #[arg(long, value_name = "KEY")]
        issuer: Vec<String>,
        /// Credits an account starts with, as KEY=AMOUNT (repeatable).
        #[arg(long, value_name = "KEY=AMOUNT")]
        mint: Vec<String>,
        /// Only these keys may arbitrate escrows (repeatable). Default: any.
        #[arg(long, value_name = "KEY")]
        arbiter: Vec<String>,
        /// The shortest challenge window a hold may carry.
        #[arg(long, default_value = "10m", value_parser = crate::context::parse_duration, allow_hyphen_values = true)]
        challenge_window: Duration,
        /// Write to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Make a set-up node join the ledger this genesis file founds: copy
    /// it into the node directory and name it in node.toml.
    Join {
        /// The network's genesis file.
        genesis: PathBuf,
    },
    /// Show an account's credits. Default: the node's own account.
    Balance {
        /// The account's public key.
        account: Option<String>,
    },
    /// List the ops that concern an account, oldest first.
    History {
        /// The account's public key. Default: the node's own.
        account: Option<String>,
        /// Show at most the last N.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Send credits from the node's account.
    Transfer {
        /// The receiving account's public key.
        to: String,
        /// Whole credits, e.g. 25, 1,000 or 2M.
        #[arg(value_parser = p2pc_types::parse_count, allow_hyphen_values = true)]
        amount: u64,
    },
    /// List escrows (holds) and where each stands.
    Holds {
        /// Only those this account is party to.
        account: Option<String>,
    },
    /// Rebuild the state from the ops on disk and check every invariant.
    Verify,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeDir,
}

fn key(text: &str) -> anyhow::Result<PublicKey> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a public key (64 hex digits)"))
}

fn account(text: Option<String>) -> anyhow::Result<Option<PublicKey>> {
    text.as_deref().map(key).transpose()
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let request = match args.command {
        Command::Genesis {
            network,
            issuer,
            mint,
            arbiter,
            challenge_window,
            output,
        } => {
            return genesis(network, issuer, mint, arbiter, challenge_window, output, g);
        }
        Command::Join { genesis } => return join(&args.node.path()?, &genesis, g),
        // Absent accounts mean "the node's own account".
        Command::Balance { account: a } => LedgerRequest::Balance {
            account: account(a)?,
        },
        Command::History { account: a, limit } => LedgerRequest::History {
            account: account(a)?,
            limit,
        },
        Command::Transfer { to, amount } => LedgerRequest::Transfer {
            to: key(&to)?,
            amount,
        },
        Command::Holds { account: a } => LedgerRequest::Holds {
            account: account(a)?,
        },
        Command::Verify => LedgerRequest::Verify,
    };
    let dir = args.node.path()?;
    let answer: LedgerAnswer = match args.node.running() {
        Some(api) => through_api(&api, &request)?,
        None => offline(&dir, &request, g)?,
    };
    if g.json {
        print_json(&answer)?;
    } else {
        show(&answer);
    }
    if let LedgerAnswer::Verify(v) = &answer
        && !v.ok
    {
        return Ok(ExitCode::from(super::EXIT_TASK_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the running node.
fn through_api(api: &crate::api::Api, request: &LedgerRequest) -> anyhow::Result<LedgerAnswer> {
    let query = |account: &Option<p2pc_crypto::PublicKey>| {
        account.map_or(String::new(), |a| format!("account={a}&"))
    };
    Ok(match request {
        LedgerRequest::Balance { account } => {
            LedgerAnswer::Balance(api.get(&format!("/v1/ledger/balance?{}", query(account)))?)
        }
        LedgerRequest::History { account, limit } => LedgerAnswer::History(api.get(&format!(
            "/v1/ledger/history?{}limit={limit}",
            query(account)
        ))?),
        LedgerRequest::Holds { account } => {
            LedgerAnswer::Holds(api.get(&format!("/v1/ledger/holds?{}", query(account)))?)
        }
        LedgerRequest::Transfer { to, amount } => LedgerAnswer::Transferred(api.post(
            "/v1/ledger/transfers",
            &p2pc_api::types::Transfer {
                to: to.to_string(),
                amount: *amount,
            },
        )?),
        LedgerRequest::Verify => {
            LedgerAnswer::Verify(api.get_within("/v1/ledger/verify", Duration::from_secs(600))?)
        }
        other => anyhow::bail!("this p2pctl cannot send {other:?}"),
    })
}

/// Opens the stopped node's ledger and its config.
fn open(dir: &Path) -> anyhow::Result<(NodeConfig, Ledger)> {
    let config = load_config(dir)?;
    let ledger = p2pc_node::open_ledger(&config)?.with_context(|| {
        format!(
            "the node in {} has no ledger: set [ledger] genesis in its node.toml",
            dir.display()
        )
    })?;
    Ok((config, ledger))
}

/// Answers `request` from the database of a node that is not running.
fn offline(dir: &Path, request: &LedgerRequest, g: &Global) -> anyhow::Result<LedgerAnswer> {
    let (config, mut ledger) = open(dir)?;
    // The node's own account is the default; transfers need its key.
    let needs_key = matches!(
        request,
        LedgerRequest::Transfer { .. }
            | LedgerRequest::Balance { account: None }
            | LedgerRequest::History { account: None, .. }
    );
    let key = if needs_key {
        Some(unlock_key(&config, g)?)
    } else {
        None
    };
    let now = p2pc_node::messages::now_unix_ms();
    let (answer, _op) = p2pc_node::query(&mut ledger, key.as_ref(), request, now)?;
    Ok(answer)
}

fn show(answer: &LedgerAnswer) {
    // Amounts with thousands separators, as `ledger transfer` reads them.
    let n = |v: u64| format::thousands(v);
    match answer {
        LedgerAnswer::Balance(a) => {
            println!("account    {}", a.account);
            println!("available  {} (can be spent now)", n(a.available));
            println!("locked     {} (held for tasks in open escrows)", n(a.held));
            if a.bonded > 0 {
                println!("bonded     {} (collateral on open escrows)", n(a.bonded));
            }
            if a.pending > 0 {
                println!(
                    "pending    {} (earned; paid once each challenge window closes)",
                    n(a.pending)
                );
            }
            if a.frozen {
                println!("FROZEN: this account equivocated; its ops no longer apply");
            }
        }
        LedgerAnswer::History(h) => {
            println!(
                "{} ops concern {} (showing the last {})",
                h.total,
                h.account,
                h.ops.len()
            );
            for op in &h.ops {
                let (kind, detail) = match &op.body {
                    OpBody::Mint { to, amount } => {
                        ("mint", format!("{} → {}", n(*amount), short(to)))
                    }
                    OpBody::Transfer { to, amount } => {
                        ("transfer", format!("{} → {}", n(*amount), short(to)))
                    }
                    OpBody::Hold {
                        worker,
                        price,
                        fuel_limit,
                        ..
                    } => (
                        "hold",
                        format!(
                            "{} × {} fuel, worker {}",
                            n(*price),
                            n(*fuel_limit),
                            short(worker)
                        ),
                    ),
                    OpBody::TaskHold {
                        worker,
                        price,
                        fuel_limit,
                        task,
                        ..
                    } => (
                        "task hold",
                        format!(
                            "{} per Mfuel × {} fuel, worker {}, task {}",
                            n(*price),
                            n(*fuel_limit),
                            short(worker),
                            short(task)
                        ),
                    ),
                    OpBody::Bond { escrow } => ("bond", format!("escrow {}", short(escrow))),
                    OpBody::Decide {
                        escrow,
                        step,
                        outcome,
                        ..
                    } => (
                        "decide",
                        format!("escrow {} step {step}: {outcome}", short(escrow)),
                    ),
                };
                println!(
                    "{} {}#{} {:<8} {:<40} {}",
                    short(&op.id),
                    short(&op.author),
                    op.seq,
                    kind,
                    detail,
                    op.status
                );
            }
        }
        LedgerAnswer::Transferred(t) => {
            println!(
                "sent: op {} ({}); balance now {}",
                t.id,
                if t.applied { "applied" } else { "waiting" },
                n(t.balance)
            );
        }
        LedgerAnswer::Holds(h) => {
            if h.holds.is_empty() {
                println!("no escrows");
            }
            for e in &h.holds {
                let state = match (&e.finalised, &e.settled) {
                    (Some(f), _) => format!("final: {f}"),
                    (None, Some(s)) => format!("settled: {}", s.outcome),
                    (None, None) => "open".to_owned(),
                };
                println!(
                    "{} owner {} worker {} arbiter {} amount {} {}",
                    short(&e.escrow),
                    short(&e.owner),
                    short(&e.worker),
                    short(&e.arbiter),
                    n(e.amount),
                    state
                );
            }
        }
        LedgerAnswer::Verify(a) => {
            println!(
                "{} ({} applied), {}, {} ({} open), {} credits minted, {}",
                format::count(a.ops, "op"),
                format::thousands(a.applied),
                format::count(a.accounts, "account"),
                format::count(a.escrows, "escrow"),
                format::thousands(a.open_escrows),
                a.minted,
                format::count(a.proofs, "equivocation proof"),
            );
            if let Some(n) = a.future_ops.filter(|&n| n > 0) {
                println!(
                    "{n} ops dated ahead of this node's clock wait for it (not counted above)"
                );
            }
            if a.problems.is_empty() {
                println!(
                    "ok: the state rebuilt from the ops equals the live state and every invariant holds"
                );
            }
            for p in &a.problems {
                println!("PROBLEM: {p}");
            }
        }
    }
}

fn join(dir: &Path, genesis: &Path, g: &Global) -> anyhow::Result<ExitCode> {
    let config_path = dir.join("node.toml");
    let text = std::fs::read_to_string(&config_path).with_context(|| {
        format!(
            "cannot read {}; set the node up first with `p2pctl node init`",
            config_path.display()
        )
    })?;
    let config =
        NodeConfig::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    if config.ledger.genesis.is_some() {
        bail!(
            "{} already names a genesis file; a node's ledger belongs to one network",
            config_path.display()
        );
    }
    let parsed = Genesis::load(genesis)?;
    let target = dir.join("genesis.toml");
    std::fs::copy(genesis, &target)
        .with_context(|| format!("cannot copy {} to {}", genesis.display(), target.display()))?;
    let text = format!(
        "{}\n[ledger]\ngenesis = \"genesis.toml\"\n",
        text.trim_end()
    );
    NodeConfig::parse(&text).map_err(|e| anyhow::anyhow!("the new node.toml is invalid: {e}"))?;
    std::fs::write(&config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let id = hex::encode(parsed.id());
    if g.json {
        print_json(&json!({"network": parsed.network, "network_id": id}))?;
    } else {
        println!(
            "joined network {} (id {id}); restart the node to use it",
            parsed.network
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The first 8 characters of a key or id, as the tables show them.
fn short(v: &dyn std::fmt::Display) -> String {
    v.to_string().chars().take(8).collect()
}

fn genesis(
    network: String,
    issuers: Vec<String>,
    mints: Vec<String>,
    arbiters: Vec<String>,
    window: Duration,
    output: Option<PathBuf>,
    g: &Global,
) -> anyhow::Result<ExitCode> {
    let mut allocations = std::collections::BTreeMap::new();
    for m in &mints {
        let (k, amount) = m
            .split_once('=')
            .with_context(|| format!("--mint {m:?}: expected KEY=AMOUNT"))?;
        let amount: u64 = p2pc_types::parse_count(amount)
            .ok()
            .filter(|a| *a > 0)
            .with_context(|| format!("--mint {m:?}: AMOUNT must be a whole number above 0"))?;
        let total: &mut u64 = allocations.entry(key(k)?).or_default();
        *total = total
            .checked_add(amount)
            .with_context(|| format!("--mint {m:?}: too many credits"))?;
    }
    let genesis = Genesis {
        network,
        issuers: issuers
            .iter()
            .map(|k| key(k))
            .collect::<anyhow::Result<_>>()?,
        allocations,
        min_window_ms: u64::try_from(window.as_millis())
            .ok()
            .filter(|ms| *ms <= 7 * 86_400_000)
            .ok_or_else(|| anyhow::anyhow!("--challenge-window is at most 7 days"))?,
        arbiters: if arbiters.is_empty() {
            ArbiterPolicy::Any
        } else {
            ArbiterPolicy::Listed(
                arbiters
                    .iter()
                    .map(|k| key(k))
                    .collect::<anyhow::Result<_>>()?,
            )
        },
    };
    // What is written must read back to the same network.
    let text = format!(
        "# p2pc genesis file; network id {}\n{}",
        hex::encode(genesis.id()),
        genesis.to_toml()
    );
    Genesis::from_toml(&text, "generated genesis")?;
    match output {
        Some(path) => {
            std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if g.json {
                print_json(&json!({"path": path, "network_id": hex::encode(genesis.id())}))?;
            } else {
                eprintln!(
                    "wrote {} (network id {})",
                    path.display(),
                    hex::encode(genesis.id())
                );
            }
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `p2pctl internal ledger-append`: appends ops that each spend 1 credit
/// of the node's account (transfers and task holds in turn), printing
/// each op's id once it is on disk. The crash test kills it at random
/// points.
pub fn append(dir: &Path, count: u64, g: &Global) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let (config, mut ledger) = open(dir)?;
    let key = unlock_key(&config, g)?;
    let to = SecretKey::from_seed(&[7; 32]).public();
    let arbiter = SecretKey::from_seed(&[8; 32]).public();
    let window_ms = ledger.state().genesis().min_window_ms;
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let body = if i % 2 == 0 {
            Body::Transfer { to, amount: 1 }
        } else {
            // One million fuel at 1 credit per million: 1 credit held.
            Body::TaskHold(p2pc_ledger::TaskHold {
                worker: to,
                arbiter,
                price: 1,
                fuel_limit: p2pc_ledger::FUEL_PER_PRICE_UNIT,
                window_ms,
                collateral: 0,
                task: *blake3::hash(&i.to_be_bytes()).as_bytes(),
                deadline_ms: i + 60_000,
            })
        };
        let op = ledger.state().draft(&key, i, body);
        let id = op.id();
        match ledger.insert(op)? {
            Insert::Applied(_) => {}
            other => bail!("append refused: {other:?}"),
        }
        writeln!(out, "{}", hex::encode(id))?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
