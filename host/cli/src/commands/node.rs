//! `p2pctl node`: set up, run and inspect a runner node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use p2pc_crypto::{Keystore, SecretKey};
use p2pc_node::{ComputeNode, NodeConfig};
use serde_json::json;

use crate::context::{Global, print_json};

/// Where the node lives.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeDir {
    /// The node's directory: node.toml, keys, store, API socket and token.
    /// Default: $XDG_DATA_HOME/p2pc/node or ~/.local/share/p2pc/node.
    #[arg(long = "node", global = true, value_name = "DIR", env = "P2PC_NODE")]
    pub dir: Option<PathBuf>,
}

impl NodeDir {
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.dir {
            Some(d) => Ok(d.clone()),
            None => Ok(crate::context::xdg_dir("XDG_DATA_HOME", ".local/share")
                .context("cannot find a home directory; pass --node DIR")?
                .join("node")),
        }
    }

    /// The running node's API, if a node answers in the directory.
    pub fn running(&self) -> Option<crate::api::Api> {
        let dir = self.path().ok()?;
        std::os::unix::net::UnixStream::connect(dir.join(p2pc_node::SOCKET_FILE)).ok()?;
        crate::api::Api::connect(&dir).ok()
    }

    /// A connection to the running node's API.
    pub fn api(&self) -> anyhow::Result<crate::api::Api> {
        crate::api::Api::connect(&self.path()?)
    }
}

/// Set up, start and inspect a runner node.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a node: its directory, node.toml, key and API token.
    Init {
        /// Serve the HTTP API on ADDR ("off": only on the node's Unix
        /// socket). Another machine may reach it only with
        /// `[api] allow_remote = true` in node.toml.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7420")]
        api_listen: String,
        /// Listen on ADDR (repeatable). Default: TCP and QUIC on port 4001.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// Join the network through ADDR, ending in /p2p/<peer id> (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// Do not look for peers on the LAN by mDNS.
        #[arg(long)]
        no_mdns: bool,
        /// Store the node key unencrypted, so the node starts unattended.
        #[arg(long)]
        insecure_no_passphrase: bool,
        /// Join the credit ledger of the network this genesis file founds
        /// (copied into the node directory; see `p2pctl ledger genesis`).
        #[arg(long, value_name = "FILE")]
        genesis: Option<PathBuf>,
        #[command(flatten)]
        market: MarketFlags,
    },
    /// Run the node in the foreground until interrupted (Ctrl-C, SIGTERM).
    Start,
    /// Show what the running node sees.
    Status,
    /// Print the API token clients send (`Authorization: Bearer ...`).
    Token,
    /// Print the address of the running node's dashboard, with the token
    /// in its fragment (kept by the page, never sent to the server).
    Dashboard,
    /// List the peers the running node is connected to.
    Peers,
    /// Stop the running node's worker taking new tasks, wait for the ones
    /// it runs to finish, and say when it is safe to stop.
    Drain {
        /// Wait at most this long for running tasks.
        #[arg(long, default_value = "10m", value_parser = crate::context::parse_duration)]
        timeout: Duration,
    },
}

/// What the node's worker charges, and whom it trusts to arbitrate
/// (`[market]` and `[arbiter]` in node.toml).
#[derive(Debug, clap::Args)]
pub struct MarketFlags {
    /// Price of peers' tasks on a paid network, in credits per million
    /// fuel; 0 runs them unpaid.
    #[arg(long, default_value_t = 1, value_name = "CREDITS_PER_MFUEL")]
    price: u64,
    /// Credits the worker bonds per paid task, forfeited if it is refunded.
    #[arg(long, default_value_t = 0, value_name = "CREDITS")]
    collateral: u64,
    /// Accept KEY (64 hex digits) as the arbiter of holds paying this
    /// worker (repeatable). Without one, only the genesis's listed arbiters.
    #[arg(long = "accept-arbiter", value_name = "KEY")]
    accept_arbiter: Vec<String>,
    /// Make this node an arbiter: it co-signs refunds, settlements and
    /// confirmations it can check in its own replica.
    #[arg(long)]
    arbiter: bool,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeDir,
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<()> {
    let dir = args.node.path()?;
    match args.command {
        Command::Init {
            api_listen,
            listen,
            bootstrap,
            no_mdns,
            insecure_no_passphrase,
            genesis,
            market,
        } => init(
            &dir,
            &api_listen,
            listen,
            bootstrap,
            no_mdns,
            insecure_no_passphrase,
            genesis.as_deref(),
            &market,
            g,
        ),
        Command::Start => start(&dir, g),
        Command::Token => {
            let token = p2pc_node::read_token(&dir)?;
            if g.json {
                let url = p2pc_api::url_of(&dir);
                return print_json(&json!({"token": token, "url": url}));
            }
            println!("{token}");
            Ok(())
        }
        Command::Dashboard => {
            let token = p2pc_node::read_token(&dir)?;
            let Some(url) = p2pc_api::url_of(&dir) else {
                bail!(
                    "no dashboard address in {}: is the node running, with `[api] listen` on an address?",
                    dir.display()
                );
            };
            let link = format!("{}/#token={token}", url.trim_end_matches('/'));
            if g.json {
                return print_json(&json!({"url": url, "link": link}));
            }
            println!("{link}");
            Ok(())
        }
        Command::Status => {
            let status: p2pc_node::Status = args.node.api()?.get("/v1/node")?;
            if g.json {
                return print_json(&status);
            }
            println!("peer id     {}", status.peer_id);
            println!("version     {}", status.version);
            println!("public key  {}", status.public_key);
            for addr in &status.listen {
                println!("listening   {addr}");
            }
            println!("peers       {}", status.peers);
            println!("workers     {} known", status.workers_known);
            println!("slots       {} of {} free", status.free_slots, status.slots);
            println!("blobs       {}", status.blobs);
            println!("jobs        {}", status.jobs);
            println!(
                "running     {} task(s){}",
                status.running,
                if status.draining {
                    " (draining: taking no new task)"
                } else {
                    ""
                }
            );
            println!(
                "uptime      {}",
                crate::format::span(Duration::from_secs(status.uptime_secs))
            );
            Ok(())
        }
        Command::Drain { timeout } => {
            let api = args.node.api()?;
            let drained: p2pc_node::api::Drained = api.post("/v1/node/drain", &())?;
            let start = std::time::Instant::now();
            let mut running = drained.running;
            let mut said = u64::MAX;
            while running > 0 {
                if running != said && !g.json {
                    eprintln!("draining: waiting for {running} running task(s) to finish");
                    said = running;
                }
                if start.elapsed() >= timeout {
                    anyhow::bail!(
                        "{running} task(s) still running after {}; the node takes no new task, \
                         but stopping it now loses them",
                        crate::format::span(timeout)
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
                let status: p2pc_node::Status = api.get("/v1/node")?;
                running = status.running as u64;
            }
            if g.json {
                return print_json(&json!({"drained": true, "running": 0}));
            }
            println!("drained: no task running; safe to stop");
            Ok(())
        }
        Command::Peers => {
            let peers: Vec<p2pc_net::PeerInfo> = args.node.api()?.get("/v1/node/peers")?;
            if g.json {
                return print_json(&peers);
            }
            if peers.is_empty() {
                println!("no peers connected");
            }
            for p in peers {
                let rtt = p.rtt_us.map(|us| format!("{:.1}ms", us as f64 / 1000.0));
                println!(
                    "{}  {}  {}",
                    p.peer_id,
                    p.addresses.first().map_or("-", String::as_str),
                    rtt.unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "one per `node init` flag group")]
fn init(
    dir: &Path,
    api_listen: &str,
    listen: Vec<String>,
    bootstrap: Vec<String>,
    no_mdns: bool,
    insecure: bool,
    genesis: Option<&Path>,
    market: &MarketFlags,
    g: &Global,
) -> anyhow::Result<()> {
    let config_path = dir.join("node.toml");
    if config_path.exists() {
        bail!(
            "{} already exists; this node is set up",
            config_path.display()
        );
    }
    // Checked before anything is created.
    let genesis_text = match genesis {
        Some(path) => {
            p2pc_ledger::Genesis::load(path)?;
            Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            )
        }
        None => None,
    };
    for k in &market.accept_arbiter {
        k.parse::<p2pc_crypto::PublicKey>().map_err(|_| {
            anyhow::anyhow!("--accept-arbiter {k:?} is not a 64-hex-digit public key")
        })?;
    }
    let api = p2pc_node::ApiSection {
        listen: api_listen.to_owned(),
        ..Default::default()
    };
    api.address().context("--api-listen")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for a in listen.iter().chain(&bootstrap) {
        a.parse::<p2pc_net::Multiaddr>()
            .with_context(|| format!("{a:?} is not a multiaddr"))?;
    }
    let keystore = Keystore::open(dir.join("keys"))?;
    let passphrase = if insecure {
        None
    } else {
        Some(g.passphrase("Passphrase for the node key: ", true)?)
    };
    let info = keystore.create("node", passphrase.as_deref())?;
    p2pc_node::ensure_token(dir)?;
    let quote = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let listen = if listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/tcp/4001".to_owned(),
            "/ip4/0.0.0.0/udp/4001/quic-v1".to_owned(),
        ]
    } else {
        listen
    };
    let mut text = format!(
        "# p2pc node configuration; see docs/operator-guide.md.\n\
         [node]\n\
         data_dir = \".\"\n\
         key = \"node\"\n\
         listen = [{}]\n\
         bootstrap = [{}]\n\
         mdns = {}\n\
         slots = 4\n\n\
         [limits]\n\
         fuel = 100000000000\n\
         memory = \"1GiB\"\n\
         timeout = \"5m\"\n\
         output = \"64MiB\"\n\n\
         [trust]\n\
         submitters = []\n\
         publishers = []\n\n\
         # What this worker charges on a paid network (credits per million\n\
         # fuel at half load; the price moves with load between min_price\n\
         # and max_price), the collateral it bonds per task, the arbiters\n\
         # it accepts. See the operator guide.\n\
         [market]\n\
         base_price = {}\n\
         collateral = {}\n\
         arbiters = [{}]\n\n\
         [arbiter]\n\
         enabled = {}\n\n\
         # The HTTP API every client uses (p2pctl uses the Unix socket\n\
         # api.sock beside this file). See docs/api.md.\n\
         [api]\n\
         listen = \"{}\"\n",
        quote(&listen),
        quote(&bootstrap),
        !no_mdns,
        market.price,
        market.collateral,
        quote(&market.accept_arbiter),
        market.arbiter,
        api_listen,
    );
    if let Some(g) = &genesis_text {
        std::fs::write(dir.join("genesis.toml"), g)
            .with_context(|| format!("cannot write {}", dir.join("genesis.toml").display()))?;
        text.push_str("\n[ledger]\ngenesis = \"genesis.toml\"\n");
    }
    NodeConfig::parse(&text).map_err(|e| anyhow::anyhow!("generated config is invalid: {e}"))?;
    std::fs::write(&config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let peer = info.public_key.peer_id();
    if g.json {
        return print_json(
            &json!({"dir": dir, "peer_id": peer.to_string(), "public_key": info.public_key.to_string()}),
        );
    }
    println!("node set up in {}", dir.display());
    println!("peer id     {peer}");
    println!("public key  {}", info.public_key);
    println!("start it with: p2pctl node start --node {}", dir.display());
    Ok(())
}

/// The configuration of the node set up in `dir`.
pub fn load_config(dir: &Path) -> anyhow::Result<NodeConfig> {
    let config_path = dir.join("node.toml");
    if !config_path.exists() {
        bail!(
            "{} not found; set the node up with `p2pctl node init --node {}`",
            config_path.display(),
            dir.display()
        );
    }
    Ok(NodeConfig::load(&config_path)?)
}

/// The node's key, asking for its passphrase only if it has one.
pub fn unlock_key(config: &NodeConfig, g: &Global) -> anyhow::Result<SecretKey> {
    let keystore = Keystore::open(config.node.data_dir.join("keys"))?;
    let name = &config.node.key;
    let passphrase = if keystore.is_encrypted(name)? {
        Some(g.passphrase(&format!("Passphrase for node key {name}: "), false)?)
    } else {
        None
    };
    Ok(keystore.unlock(name, passphrase.as_deref())?)
}

fn start(dir: &Path, g: &Global) -> anyhow::Result<()> {
    let mut config = load_config(dir)?;
    let key = unlock_key(&config, g)?;
    // The issuer's key signs mints; it lives in the node's keystore beside
    // the node key and is unlocked here, as that one is.
    if let Some(name) = config.issuer.key.clone() {
        let keystore = Keystore::open(config.node.data_dir.join("keys"))?;
        let passphrase = if keystore.is_encrypted(&name)? {
            Some(g.passphrase(&format!("Passphrase for issuer key {name}: "), false)?)
        } else {
            None
        };
        let issuer = keystore
            .unlock(&name, passphrase.as_deref())
            .with_context(|| format!("cannot unlock [issuer] key {name:?}"))?;
        config.issuer_key = Some(p2pc_node::IssuerKey(std::sync::Arc::new(issuer)));
    }
    // With `[executors.wasm] isolated = true`, peers' wasm tasks run in
    // copies of this binary in its worker mode.
    if config.executors.wasm.isolated {
        let exe = std::env::current_exe()
            .context("cannot find the p2pctl binary for the wasm workers")?;
        config.wasm_worker = Some((exe, vec!["internal".into(), "wasm-worker".into()]));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let dashboard = config.api.dashboard;
        let node = ComputeNode::start(config, key).await?;
        let gateway = match p2pc_api::serve(node.handle()).await {
            Ok(g) => g,
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        };
        // Machine-readable first lines: scripts and tests wait for these.
        println!("peer_id {}", node.peer_id());
        for addr in node.addrs() {
            println!("listening {addr}");
        }
        if let Some(url) = gateway.url() {
            println!("api {url}");
        }
        println!("ready");
        if let (Some(url), true) = (gateway.url(), dashboard) {
            eprintln!("dashboard at {url}/ (`p2pctl node dashboard` prints a link with the token)");
        }
        use std::io::Write;
        std::io::stdout().flush().ok();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch for SIGTERM")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("shutting down");
        gateway.shutdown().await;
        node.shutdown().await;
        anyhow::Ok(())
    })
}
