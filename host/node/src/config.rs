//! `node.toml`: everything an operator sets for a node, with environment
//! overrides for the settings that change between deployments.
//!
//! ```toml
//! [node]
//! data_dir = "/var/lib/p2pc"          # store, keys, control socket
//! key = "node"                         # the node's key in <data_dir>/keys
//! listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
//! bootstrap = ["/ip4/10.0.0.1/tcp/4001/p2p/12D3Koo..."]
//! mdns = true
//! max_connections = 256
//! slots = 4                            # tasks run at once for peers
//!
//! [limits]                             # the most a peer's task may ask for
//! fuel = 10000000000
//! memory = "1GiB"
//! timeout = "5m"
//! output = "64MiB"
//!
//! [trust]
//! submitters = []                      # keys whose tasks run here; empty: anyone
//! publishers = []                      # keys whose bundles run here; empty: anyone
//!
//! [executors]                          # see the operator guide
//!
//! [ledger]
//! genesis = "genesis.toml"             # the network's genesis file; no ledger without it
//! sync_interval = "30s"                # anti-entropy with one peer this often
//! max_clock_skew = "1m"                # ops dated further ahead wait for the clock
//!
//! [market]                             # what this worker charges (with a ledger)
//! base_price = 1                       # credits per million fuel at half load; 0: unpaid
//! min_price = 1                        # never below (default: base_price)
//! max_price = 4                        # never above (default: 4 × base_price)
//! price_window = "10s"                 # the price moves once a window
//! collateral = 0                       # credits it bonds per paid task
//! arbiters = []                        # arbiter keys it accepts; empty: the genesis's list
//! explore = 0.05                       # share of tasks sent to workers with no record
//! validation = "adaptive"              # default for paid jobs: none, K-of-N, adaptive
//!
//! [reputation]
//! half_life = "7d"                     # evidence counts half as much after this
//! trusted_after = 10                   # consecutive valid replicated results
//! spot_check_floor = 0.02              # trusted workers' tasks replicated at least this often
//!
//! [arbiter]
//! enabled = false                      # co-sign refunds and confirmations for others
//!
//! [jobs]
//! keep = "7d"                          # finished jobs' records and outputs kept this long
//!
//! [api]                                # the gateway; see docs/api.md
//! listen = "127.0.0.1:7420"            # "off": the Unix socket only
//! metrics_public = false               # /metrics without the token
//! dashboard = true                     # the operator's page at /
//! events_buffer = 4096                 # events kept for ?since= resumes
//! history_step = "1m"                  # /v1/history: 1,440 points of this step
//!
//! [health]
//! interval = "30s"                     # how often the checks run
//! min_peers = 1                        # fewer is a warning
//! disk_free_percent = 5                # less free is a warning
//!
//! [payouts]
//! issuer_peer = "12D3Koo…"             # the node running the issuer service
//!
//! [issuer]                             # only on the node that sells credits
//! key = "issuer"                       # a genesis issuer's key in <data_dir>/keys
//! webhook_secrets = "webhook-secrets"  # the provider's signing secrets, one a line
//! rates = { usd = 100 }                # credits per minor unit
//! clearing = "7d"                      # before bought credits reach the buyer
//! ```
//!
//! Environment overrides: `P2PC_LISTEN` and `P2PC_BOOTSTRAP` (comma
//! separated), `P2PC_API_LISTEN` and `P2PC_MDNS` (`true`/`false`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use p2pc_crypto::{PublicKey, TrustPolicy};
use p2pc_exec::ExecutorsConfig;
use p2pc_net::Multiaddr;
use p2pc_types::ByteSize;
use serde::{Deserialize, Deserializer};

use crate::{Error, Result};

/// A node's whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// `[node]`.
    pub node: NodeSection,
    /// `[limits]`.
    pub limits: LimitsSection,
    /// `[trust]`.
    pub trust: TrustSection,
    /// `[executors]`.
    pub executors: ExecutorsConfig,
    /// `[ledger]`.
    pub ledger: LedgerSection,
    /// `[jobs]`.
    pub jobs: JobsSection,
    /// `[market]`.
    pub market: MarketSection,
    /// `[arbiter]`.
    pub arbiter: ArbiterSection,
    /// `[reputation]`.
    pub reputation: ReputationSection,
    /// `[api]`.
    pub api: ApiSection,
    /// `[health]`.
    pub health: HealthSection,
    /// `[issuer]`.
    pub issuer: IssuerSection,
    /// `[payouts]`.
    pub payouts: PayoutsSection,
    /// The issuer's signing key, unlocked by whoever starts the node from
    /// the keystore key `[issuer] key` names. Never read from `node.toml`.
    #[serde(skip)]
    pub issuer_key: Option<IssuerKey>,
    /// Fault hooks for tests: never read from `node.toml`.
    #[doc(hidden)]
    #[serde(skip)]
    pub faults: Faults,
    /// The program the isolated wasm pool runs as each worker process, and
    /// the arguments that select that mode (`p2pctl internal wasm-worker`).
    /// Not read from `node.toml`: whoever starts the node knows where its
    /// own binary is. Without it, `[executors.wasm] isolated = true` is
    /// refused at start.
    #[serde(skip)]
    pub wasm_worker: Option<(PathBuf, Vec<std::ffi::OsString>)>,
}

/// `[market]`: what this node's worker charges for peers' tasks on a
/// network with a ledger, and how it chooses workers for its own jobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketSection {
    /// Credits per million fuel at the target load (half the slots busy).
    /// 0: tasks run unpaid, with no hold. (`price` is the old name.)
    #[serde(alias = "price")]
    pub base_price: u64,
    /// The price never falls below this; `None`: the base price.
    pub min_price: Option<u64>,
    /// The price never rises above this; `None`: four times the base.
    pub max_price: Option<u64>,
    /// The price moves once per window, by at most 12.5 %.
    #[serde(deserialize_with = "duration")]
    pub price_window: Duration,
    /// Credits this worker bonds per paid task, forfeited to the owner if
    /// the task is refunded.
    pub collateral: u64,
    /// Arbiter keys (64 hex digits) this worker accepts on a hold. Empty:
    /// those the genesis lists, or none if it lists none.
    pub arbiters: Vec<String>,
    /// The share of this node's tasks placed only among workers it has no
    /// record of, so newcomers can earn one (0 to 1).
    pub explore: f64,
    /// The validation of paid jobs that do not choose one: `none`, `K-of-N`
    /// or `adaptive`. Unpaid jobs default to `none`.
    pub validation: String,
}

impl Default for MarketSection {
    fn default() -> Self {
        Self {
            base_price: 1,
            min_price: None,
            max_price: None,
            price_window: Duration::from_secs(10),
            collateral: 0,
            arbiters: Vec::new(),
            explore: 0.05,
            validation: "adaptive".into(),
        }
    }
}

/// `[api]`: the HTTP gateway every client uses. It is served on this
/// address and, always, on `<data_dir>/api.sock`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Where the gateway listens; `"off"` or an empty string serves only
    /// the Unix socket.
    pub listen: String,
    /// Binding an address other than loopback is refused without this.
    pub allow_remote: bool,
    /// Origins a browser may call the API from; empty: CORS is off.
    pub cors_origins: Vec<String>,
    /// The largest JSON request body. Blob uploads are streamed and capped
    /// by `max_upload` instead.
    #[serde(deserialize_with = "size")]
    pub max_body: ByteSize,
    /// The largest blob or bundle upload.
    #[serde(deserialize_with = "size")]
    pub max_upload: ByteSize,
    /// Requests served at once; more wait their turn.
    pub concurrency: usize,
    /// A request's headers must arrive within this long.
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// A request other than an upload, a download or a wait must be
    /// answered within this long.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Serve `/metrics` without the token (for a Prometheus server that
    /// cannot send one). The metrics say how busy the node is, not what
    /// it runs.
    pub metrics_public: bool,
    /// Serve the dashboard, the operator's web page, at `/`. Its files
    /// are open; everything it shows comes from `/v1` with the token.
    pub dashboard: bool,
    /// Events kept for clients that resume with `?since=`; a client
    /// further behind than this is dropped.
    pub events_buffer: usize,
    /// Event streams served at once; more are refused (503).
    pub events_clients: usize,
    /// A client that takes longer than this to take one event is dropped.
    #[serde(deserialize_with = "duration")]
    pub events_send_timeout: Duration,
    /// The step of `/v1/history`: one point this often, 1,440 points kept
    /// (24 hours at the default minute).
    #[serde(deserialize_with = "duration")]
    pub history_step: Duration,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7420".into(),
            allow_remote: false,
            cors_origins: Vec::new(),
            max_body: ByteSize::mib(16),
            max_upload: ByteSize::gib(64),
            concurrency: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            metrics_public: false,
            dashboard: true,
            events_buffer: 4096,
            events_clients: 64,
            events_send_timeout: Duration::from_secs(10),
            history_step: Duration::from_secs(60),
        }
    }
}

impl ApiSection {
    /// The TCP address to serve, if any: refused if it is not loopback and
    /// `allow_remote` is off.
    pub fn address(&self) -> Result<Option<std::net::SocketAddr>> {
        let text = self.listen.trim();
        if text.is_empty() || text == "off" {
            return Ok(None);
        }
        let addr: std::net::SocketAddr = text.parse().map_err(|_| {
            Error::Config(format!(
                "[api] listen: {text:?} is not an address such as 127.0.0.1:7420"
            ))
        })?;
        if !addr.ip().is_loopback() && !self.allow_remote {
            return Err(Error::Config(format!(
                "[api] listen = {text:?} is reachable from other machines; set [api] allow_remote = true to allow it"
            )));
        }
        if self.concurrency == 0 {
            return Err(Error::Config("[api] concurrency must be at least 1".into()));
        }
        Ok(Some(addr))
    }

    /// Checks the settings that do not depend on the listener.
    pub fn check(&self) -> Result<()> {
        if self.events_buffer == 0 || self.events_buffer > 1_000_000 {
            return Err(Error::Config(
                "[api] events_buffer must be between 1 and 1000000".into(),
            ));
        }
        if self.history_step < Duration::from_millis(10) {
            return Err(Error::Config(
                "[api] history_step must be at least 10ms".into(),
            ));
        }
        Ok(())
    }
}

/// `[health]`: the network health checker's period and thresholds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// How often the checks run (and `GET /v1/health` runs them when the
    /// last run is older than a second).
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Fewer peers connected than this is a warning.
    pub min_peers: usize,
    /// Less free disk than this share of the data directory's file system
    /// is a warning; a fifth of it is critical.
    pub disk_free_percent: f64,
    /// A worker whose failures and timeouts are this many times the
    /// network's rate (over at least 5 tasks) is a warning.
    pub failure_factor: f64,
    /// An offer priced this many times above or below the median is a
    /// warning.
    pub price_factor: f64,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            min_peers: 1,
            disk_free_percent: 5.0,
            failure_factor: 3.0,
            price_factor: 10.0,
        }
    }
}

/// `[reputation]`: how this node scores the workers it uses.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationSection {
    /// Evidence counts half as much after this long.
    #[serde(deserialize_with = "duration")]
    pub half_life: Duration,
    /// Consecutive valid replicated results before a worker's tasks are
    /// only spot-checked.
    pub trusted_after: u32,
    /// The least share of a trusted worker's tasks that is replicated.
    pub spot_check_floor: f64,
}

impl Default for ReputationSection {
    fn default() -> Self {
        Self {
            half_life: Duration::from_secs(7 * 24 * 3600),
            trusted_after: 10,
            spot_check_floor: 0.02,
        }
    }
}

impl ReputationSection {
    /// The market crate's configuration.
    pub fn config(&self) -> Result<p2pc_market::ReputationConfig> {
        if !(0.0..=1.0).contains(&self.spot_check_floor) {
            return Err(Error::Config(
                "[reputation] spot_check_floor is a share, between 0 and 1".into(),
            ));
        }
        Ok(p2pc_market::ReputationConfig {
            half_life_ms: u64::try_from(self.half_life.as_millis()).unwrap_or(u64::MAX),
            trusted_after: self.trusted_after,
            spot_check_floor_ppm: (self.spot_check_floor * 1e6) as u32,
            ..p2pc_market::ReputationConfig::default()
        })
    }
}

/// Fault hooks a test sets on an otherwise real node.
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// While set, the worker returns a wrong output (its real output with
    /// one byte changed) for every task that succeeds, and signs it.
    pub wrong_output: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Seeds the node's replication choices, so a test is repeatable.
    pub seed: Option<u64>,
}

impl MarketSection {
    /// The pricing engine's configuration.
    pub fn pricing(&self) -> Result<p2pc_market::PricingConfig> {
        let mut c = p2pc_market::PricingConfig::with_base(self.base_price);
        if let Some(min) = self.min_price {
            c.min = min;
        }
        if let Some(max) = self.max_price {
            c.max = max;
        }
        p2pc_market::DynamicPricingEngine::new(c)
            .map_err(|e| Error::Config(format!("[market]: {e}")))?;
        Ok(c)
    }

    /// The default validation of paid jobs.
    pub fn default_validation(&self) -> Result<p2pc_market::Validation> {
        self.validation
            .parse()
            .map_err(|e| Error::Config(format!("[market] validation: {e}")))
    }

    /// The arbiter keys configured.
    pub fn arbiter_keys(&self) -> Result<Vec<PublicKey>> {
        self.arbiters
            .iter()
            .map(|k| {
                k.parse().map_err(|_| {
                    Error::Config(format!(
                        "[market] arbiters: {k:?} is not a 64-hex-digit public key"
                    ))
                })
            })
            .collect()
    }
}

/// `[issuer]`: the issuer service, which mints credits for payments a
/// provider reports through signed webhooks and records payouts
/// (`docs/design/payments.md`). Off unless `key` is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerSection {
    /// The keystore key that signs mints; the genesis file must list its
    /// public key among the issuers. Unset: no issuer service.
    pub key: Option<String>,
    /// The payment provider: `stripe` (Stripe-style signed webhooks).
    pub provider: String,
    /// A file holding the provider's webhook signing secrets, one per
    /// line (two while a secret is rotated). Relative to `node.toml`'s
    /// directory. Required with `key`.
    pub webhook_secrets: Option<PathBuf>,
    /// Credits minted per minor unit of each currency, such as
    /// `{ usd = 100 }` (100 credits a cent). A payment in a currency not
    /// listed is refused.
    pub rates: std::collections::BTreeMap<String, u64>,
    /// How far a webhook's signed timestamp may be from this node's clock.
    #[serde(deserialize_with = "duration")]
    pub tolerance: Duration,
    /// How long bought credits stay in the issuer's account before they
    /// are transferred to the buyer: a refund or chargeback inside it
    /// takes nothing from anyone. `0s` mints to the buyer at once, and a
    /// later reversal becomes a debt netted from the account's payouts.
    #[serde(deserialize_with = "duration")]
    pub clearing: Duration,
}

impl Default for IssuerSection {
    fn default() -> Self {
        Self {
            key: None,
            provider: "stripe".into(),
            webhook_secrets: None,
            rates: std::collections::BTreeMap::new(),
            tolerance: Duration::from_secs(300),
            clearing: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// `[payouts]`: where this node's operator's payout requests go.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayoutsSection {
    /// The peer id of the node running the issuer service.
    pub issuer_peer: Option<String>,
    /// The issuer's account (public key) the credits are transferred to.
    /// Unset: the genesis file's issuer, when it lists exactly one.
    pub issuer_account: Option<String>,
}

/// The issuer's signing key, shared by the services that need it. Its
/// `Debug` names the public key only.
#[derive(Clone)]
pub struct IssuerKey(pub std::sync::Arc<p2pc_crypto::SecretKey>);

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuerKey({})", self.0.public())
    }
}

/// `[arbiter]`: whether this node arbitrates other nodes' escrows.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArbiterSection {
    /// Co-sign what this node can check in its own replica: refunds of
    /// holds whose deadline passed unsettled, settlements a worker proves
    /// with a receipt before the deadline, confirmations once a window
    /// passed with no dispute.
    pub enabled: bool,
}

/// `[jobs]`: the records of jobs this node submits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSection {
    /// How long a finished job's record, logs and output are kept.
    #[serde(deserialize_with = "duration")]
    pub keep: Duration,
    /// Seal paid jobs' inputs and outputs unless a submission says
    /// otherwise (`--seal` / `--no-seal`).
    pub seal_paid: bool,
    /// Seal unpaid jobs' inputs and outputs unless a submission says
    /// otherwise.
    pub seal_unpaid: bool,
}

impl Default for JobsSection {
    fn default() -> Self {
        Self {
            keep: Duration::from_secs(7 * 24 * 3600),
            seal_paid: true,
            seal_unpaid: false,
        }
    }
}

/// `[ledger]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// The network's genesis file; no ledger without one. Relative to the
    /// directory of `node.toml`.
    pub genesis: Option<PathBuf>,
    /// How often to run anti-entropy with a connected peer.
    #[serde(deserialize_with = "duration")]
    pub sync_interval: Duration,
    /// How far ahead of this node's clock an op may be dated and still be
    /// applied at once; ops dated further ahead wait until the clock
    /// catches up.
    #[serde(deserialize_with = "duration")]
    pub max_clock_skew: Duration,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            genesis: None,
            sync_interval: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(60),
        }
    }
}

/// `[node]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Where the node keeps its store, keys and control socket.
    pub data_dir: PathBuf,
    /// Name of the node's key in `<data_dir>/keys`.
    pub key: String,
    /// Addresses to listen on.
    #[serde(deserialize_with = "addrs")]
    pub listen: Vec<Multiaddr>,
    /// Peers to join through, each ending in `/p2p/<peer id>`.
    #[serde(deserialize_with = "addrs")]
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN by mDNS.
    pub mdns: bool,
    /// Most connections at once.
    pub max_connections: u32,
    /// Peers' tasks run at once.
    pub slots: usize,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("p2pc-node"),
            key: "node".to_owned(),
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".parse().expect("valid address"),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .expect("valid address"),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            max_connections: 256,
            slots: 4,
        }
    }
}

/// `[limits]`: the most a peer's task may ask for.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Fuel.
    pub fuel: u64,
    /// Linear memory.
    #[serde(deserialize_with = "size")]
    pub memory: ByteSize,
    /// Wall-clock time, e.g. "5m".
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Output bytes.
    #[serde(deserialize_with = "size")]
    pub output: ByteSize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            fuel: 100_000_000_000,
            memory: ByteSize::gib(1),
            timeout: Duration::from_secs(300),
            output: ByteSize::mib(64),
        }
    }
}

/// `[trust]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustSection {
    /// Keys (64 hex digits) allowed to submit tasks here; empty: anyone.
    pub submitters: Vec<String>,
    /// Keys allowed to publish the bundles run here; empty: anyone.
    pub publishers: Vec<String>,
}

impl TrustSection {
    fn policy(keys: &[String], what: &str) -> Result<TrustPolicy> {
        if keys.is_empty() {
            return Ok(TrustPolicy::Any);
        }
        let mut set = std::collections::BTreeSet::new();
        for k in keys {
            let key: PublicKey = k.parse().map_err(|_| {
                Error::Config(format!(
                    "[trust] {what}: {k:?} is not a 64-hex-digit public key"
                ))
            })?;
            set.insert(key);
        }
        Ok(TrustPolicy::Only(set))
    }

    /// Who may submit tasks.
    pub fn submitters(&self) -> Result<TrustPolicy> {
        Self::policy(&self.submitters, "submitters")
    }

    /// Whose bundles may run.
    pub fn publishers(&self) -> Result<TrustPolicy> {
        Self::policy(&self.publishers, "publishers")
    }
}

fn addrs<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<Multiaddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a multiaddr: {e}")))
        })
        .collect()
}

fn size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<ByteSize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(ByteSize(n)),
        Size::Text(s) => s
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a size: {e}"))),
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration: {e}")))
}

impl NodeConfig {
    /// Reads `path`, then applies the environment overrides. A relative
    /// `data_dir` is taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config =
            Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if config.node.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.node.data_dir = base.join(&config.node.data_dir);
        }
        if let Some(g) = &mut config.ledger.genesis
            && g.is_relative()
        {
            *g = path.parent().unwrap_or(Path::new(".")).join(&*g);
        }
        if let Some(f) = &mut config.issuer.webhook_secrets
            && f.is_relative()
        {
            *f = path.parent().unwrap_or(Path::new(".")).join(&*f);
        }
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Checks that every setting is within the range the node can run
    /// with: each timer's period is above zero and at most a day, counts
    /// that size queues and semaphores are bounded, the output limit is
    /// one an isolated worker's frame can carry. A node refuses to start
    /// otherwise, naming the setting.
    pub fn check(&self) -> Result<()> {
        const DAY: Duration = Duration::from_secs(86_400);
        let period = |name: &str, d: Duration, least: Duration| -> Result<()> {
            if d < least || d > DAY {
                return Err(Error::Config(format!(
                    "{name} is {}; it must be between {} and 1 day",
                    humantime::format_duration(d),
                    humantime::format_duration(least)
                )));
            }
            Ok(())
        };
        let count = |name: &str, n: usize, most: usize| -> Result<()> {
            if n == 0 || n > most {
                return Err(Error::Config(format!(
                    "{name} is {n}; it must be between 1 and {most}"
                )));
            }
            Ok(())
        };
        self.api.check()?;
        period(
            "[ledger] sync_interval",
            self.ledger.sync_interval,
            Duration::from_millis(100),
        )?;
        period(
            "[market] price_window",
            self.market.price_window,
            Duration::from_millis(50),
        )?;
        period(
            "[health] interval",
            self.health.interval,
            Duration::from_millis(100),
        )?;
        period(
            "[api] history_step",
            self.api.history_step,
            Duration::from_millis(10),
        )?;
        if self.issuer.key.is_some() {
            period(
                "[issuer] tolerance",
                self.issuer.tolerance,
                Duration::from_secs(1),
            )?;
            if self.issuer.clearing > Duration::from_secs(180 * 86_400) {
                return Err(Error::Config(format!(
                    "[issuer] clearing is {}; it must be at most 180 days",
                    humantime::format_duration(self.issuer.clearing)
                )));
            }
            if self.issuer.rates.is_empty() {
                return Err(Error::Config(
                    "[issuer] rates is empty: say how many credits a minor unit buys, e.g. rates = { usd = 100 }".into(),
                ));
            }
            if let Some((c, _)) = self.issuer.rates.iter().find(|(_, r)| **r == 0) {
                return Err(Error::Config(format!(
                    "[issuer] rates: {c} is 0; a payment must buy at least one credit a unit"
                )));
            }
        }
        count("[node] slots", self.node.slots, 4096)?;
        count("[api] concurrency", self.api.concurrency, 1 << 20)?;
        count("[api] events_clients", self.api.events_clients, 1 << 16)?;
        if self.limits.output.bytes() > 1 << 40 {
            return Err(Error::Config(format!(
                "[limits] output is {}; it must be at most 1TiB",
                self.limits.output
            )));
        }
        Ok(())
    }

    /// Parses `node.toml` text.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Applies `P2PC_*` overrides read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        let list = |name: &str, v: String| -> Result<Vec<Multiaddr>> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse().map_err(|e| {
                        Error::Config(format!("{name}: {s:?} is not a multiaddr: {e}"))
                    })
                })
                .collect()
        };
        if let Some(v) = var("P2PC_LISTEN") {
            self.node.listen = list("P2PC_LISTEN", v)?;
        }
        if let Some(v) = var("P2PC_BOOTSTRAP") {
            self.node.bootstrap = list("P2PC_BOOTSTRAP", v)?;
        }
        if let Some(v) = var("P2PC_API_LISTEN") {
            self.api.listen = v;
        }
        if let Some(v) = var("P2PC_MDNS") {
            self.node.mdns = match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                other => {
                    return Err(Error::Config(format!(
                        "P2PC_MDNS: {other:?} is not true or false"
                    )));
                }
            };
        }
        Ok(())
    }

    /// The overlay's settings.
    pub fn net(&self) -> p2pc_net::Config {
        p2pc_net::Config {
            listen: self.node.listen.clone(),
            bootstrap: self.node.bootstrap.clone(),
            mdns: self.node.mdns,
            max_connections: self.node.max_connections,
            ..p2pc_net::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_overrides_apply_and_mistakes_are_named() {
        let c = NodeConfig::parse(
            "[node]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\n[limits]\nmemory = \"64MiB\"\ntimeout = \"10s\"\n",
        )
        .expect("parses");
        assert_eq!(c.node.listen.len(), 1);
        assert_eq!(c.limits.memory, ByteSize::mib(64));
        assert_eq!(c.limits.timeout, Duration::from_secs(10));
        assert_eq!(c.node.key, "node");

        let mut c = c;
        c.apply_env(|k| (k == "P2PC_MDNS").then(|| "true".to_owned()))
            .expect("applies");
        assert!(c.node.mdns);
        let err = c
            .apply_env(|k| (k == "P2PC_LISTEN").then(|| "nonsense".to_owned()))
            .expect_err("bad address");
        assert!(err.to_string().contains("P2PC_LISTEN"), "{err}");

        let err = NodeConfig::parse("[node]\nlisten = [\"tcp://x\"]\n").expect_err("bad");
        assert!(err.contains("not a multiaddr"), "{err}");
        let err = NodeConfig::parse("[node]\nlisen = []\n").expect_err("typo");
        assert!(err.contains("lisen"), "{err}");
    }
}
