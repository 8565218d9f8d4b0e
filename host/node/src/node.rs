//! [`ComputeNode`]: the composition root. Opens the store, builds the
//! services (worker, jobs, ledger replica) and the overlay, wires their
//! handles to the inbound router, and answers for them. It holds no state
//! of its own beyond those handles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pc_crypto::{PublicKey, SecretKey};
use p2pc_net::{Client, Multiaddr, PeerId};
use p2pc_store::{Cid, Store};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::events::Events;
use crate::handle::Handle;
use crate::health::Health;
use crate::history::Recorder;
use crate::inbound::Router;
use crate::market::Market;
use crate::messages::ADVERT_TOPIC;
use crate::metrics::{Metrics, Telemetry};
use crate::network::Network;
use crate::pay::Payments;
use crate::replica::{LEDGER_TOPIC, Replica};
use crate::scores::PeerScores;
use crate::signer::Signer;
use crate::worker::Worker;
use crate::{Error, NodeConfig, Result};

/// What `node status` shows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Status {
    /// The node's peer id.
    pub peer_id: String,
    /// Its public key.
    pub public_key: String,
    /// Addresses it listens on.
    pub listen: Vec<String>,
    /// Peers connected.
    pub peers: usize,
    /// Workers whose adverts it holds.
    pub workers_known: usize,
    /// Task slots free now.
    pub free_slots: usize,
    /// Task slots in all.
    pub slots: usize,
    /// Blobs stored (counted at most once a second).
    pub blobs: usize,
    /// Jobs whose records this node keeps.
    pub jobs: usize,
    /// Peers' tasks running here now.
    #[serde(default)]
    pub running: usize,
    /// Draining: finishing what runs, taking nothing new.
    #[serde(default)]
    pub draining: bool,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The node's software version.
    #[serde(default)]
    pub version: String,
}

/// The handles every part of the node reaches the services through.
#[derive(Clone)]
pub(crate) struct Services {
    pub(crate) client: Client,
    pub(crate) store: Store,
    pub(crate) worker: Worker,
    pub(crate) network: Network,
    pub(crate) replica: Option<Replica>,
    pub(crate) market: Market,
    pub(crate) scores: PeerScores,
    pub(crate) config: Arc<NodeConfig>,
    pub(crate) started: Instant,
    pub(crate) public: PublicKey,
    /// The peer id and public key as text, made once: `status` is asked
    /// often.
    pub(crate) names: Arc<(String, String)>,
    /// The blob count `status` shows, and when it was counted.
    pub(crate) blob_count: Arc<std::sync::Mutex<Option<(Instant, usize)>>>,
    pub(crate) telemetry: Telemetry,
    pub(crate) health: Health,
    pub(crate) history: Recorder,
    /// The issuer service, with `[issuer] key`.
    pub(crate) issuer: Option<crate::issuer::Issuer>,
    /// This node's payout requests, on a network with a ledger.
    pub(crate) payouts: Option<crate::payout::Payouts>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Services {
    /// The fresh offers held, cheapest first.
    pub(crate) fn offers(&self) -> Vec<crate::api::OfferView> {
        let mut out: Vec<_> = self
            .network
            .offers()
            .into_iter()
            .map(|(peer, a, reputation)| crate::api::OfferView {
                peer: peer.to_string(),
                price: a.price,
                free_slots: a.free_slots,
                slots: a.slots,
                load_permille: a.load_permille,
                collateral: a.collateral,
                executors: a.executors,
                arbiter: a.arbiter,
                draining: a.draining,
                expires_unix_ms: a.expires_unix_ms,
                reputation,
            })
            .collect();
        out.sort_by(|a, b| a.price.cmp(&b.price).then_with(|| a.peer.cmp(&b.peer)));
        out
    }

    /// This node's price as a worker and what sets it.
    pub(crate) fn price(&self) -> crate::api::PriceView {
        let (inputs, waiting, refused) = self.market.pricing();
        let (free, slots) = self.worker.slots();
        crate::api::PriceView {
            paid: self.replica.is_some() && inputs.config.base > 0,
            price: inputs.price,
            target: inputs.target,
            base: inputs.config.base,
            min: inputs.config.min,
            max: inputs.config.max,
            pressure_permille: inputs.pressure_permille,
            busy: slots.saturating_sub(free) as u32,
            slots: slots as u32,
            waiting,
            refused,
            window_ms: u64::try_from(self.market.window().as_millis()).unwrap_or(u64::MAX),
            windows: inputs.windows,
        }
    }

    /// Reputation records: `peer`'s, or every one, best first.
    pub(crate) fn reputation(&self, peer: Option<&PeerId>) -> Vec<crate::api::ReputationView> {
        let records = match peer {
            Some(p) => self
                .market
                .record(p)
                .map(|(r, s)| vec![(*p, r, s)])
                .unwrap_or_default(),
            None => self.market.records(),
        };
        let config = self.config.reputation.config().unwrap_or_default();
        let mut out: Vec<_> = records
            .into_iter()
            .map(|(peer, r, score)| crate::api::ReputationView {
                peer: peer.to_string(),
                score,
                valid_run: r.valid_run,
                trusted: r.valid_run >= config.trusted_after,
                replicated_share: f64::from(p2pc_market::reputation::replicate_ppm(
                    &config,
                    r.valid_run,
                )) / 1e6,
                success: r.counts.success,
                replicated: r.counts.replicated,
                timeout: r.counts.timeout,
                cheat: r.counts.cheat,
                equivocation: r.counts.equivocation,
                recent: r
                    .recent
                    .iter()
                    .map(|(e, at)| (e.name().to_owned(), *at))
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.peer.cmp(&b.peer))
        });
        out
    }

    pub(crate) fn replica(&self) -> Result<&Replica> {
        self.replica.as_ref().ok_or_else(|| {
            Error::Ledger(
                "this node has no ledger: set [ledger] genesis in node.toml to the network's genesis file"
                    .into(),
            )
        })
    }

    pub(crate) async fn status(&self) -> Result<Status> {
        let (free_slots, slots) = self.worker.slots();
        // Counting blobs reads every record: done at most once a second,
        // so a status asked in a loop costs no disk reads.
        let cached = *lock(&self.blob_count);
        let blobs = match cached {
            Some((at, n)) if at.elapsed() < Duration::from_secs(1) => n,
            _ => {
                let store = self.store.clone();
                let n = crate::blocking(move || store.list().map(|l| l.len())).await?;
                *lock(&self.blob_count) = Some((Instant::now(), n));
                n
            }
        };
        Ok(Status {
            peer_id: self.names.0.to_string(),
            public_key: self.names.1.to_string(),
            listen: self
                .client
                .listening()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            peers: self.client.peer_count(),
            workers_known: self.network.workers().len(),
            free_slots,
            slots,
            blobs,
            jobs: self.network.len(),
            running: self.worker.running(),
            draining: self.worker.is_draining(),
            uptime_secs: self.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }
}

/// A running node. Dropping it does not stop it; call
/// [`shutdown`](Self::shutdown). It derefs to its [`Handle`], so every
/// client call (`submit`, `job`, `wait`, `status`, …) is also a method of
/// the node.
pub struct ComputeNode {
    handle: Handle,
    tasks: Vec<JoinHandle<()>>,
    listen: Vec<Multiaddr>,
}

impl ComputeNode {
    /// Starts a node with `config` and `key`: opens the store under
    /// `config.node.data_dir`, listens, dials the bootstrap peers and joins
    /// the DHT. Returns once it listens on every configured address.
    pub async fn start(config: NodeConfig, key: SecretKey) -> Result<Self> {
        let data_dir = config.node.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", data_dir.display())))?;
        let store = {
            let dir = data_dir.join("store");
            crate::blocking(move || Store::open(dir)).await?
        };
        config.check()?;
        let ledger = crate::replica::open_ledger(&config)?;
        let (client, inbound, event_loop) = p2pc_net::new(&key, config.net())?;
        let metrics = Arc::new(Metrics::new());
        let telemetry = Telemetry {
            events: Events::new(config.api.events_buffer, metrics.clone()),
            metrics,
        };
        // The seal key lives beside the node key, protected by it; the
        // first start makes it.
        let (key, seal) = {
            let path = data_dir
                .join("keys")
                .join(format!("{}.seal", config.node.key));
            crate::blocking(move || {
                let seal = p2pc_crypto::SealKey::load_or_create(&path, &key)
                    .map_err(|e| Error::Io(e.to_string()))?;
                Ok::<_, Error>((key, seal))
            })
            .await?
        };
        let signer = Arc::new(Signer::new(key, seal));
        let mut tasks = vec![tokio::spawn(event_loop.run())];

        let scores = PeerScores::new(client.clone());
        let (market, market_task) = Market::start(&config, store.clone()).await?;
        tasks.push(market_task);
        let replica = match ledger {
            Some(ledger) => {
                let (replica, replica_tasks) = Replica::start(
                    ledger,
                    &config,
                    client.clone(),
                    signer.clone(),
                    scores.clone(),
                    market.clone(),
                    telemetry.clone(),
                );
                tasks.extend(replica_tasks);
                Some(replica)
            }
            None => None,
        };
        let payments = match &replica {
            Some(r) => {
                let (payments, task) = Payments::start(
                    &config,
                    r.clone(),
                    client.clone(),
                    signer.clone(),
                    market.clone(),
                )?;
                tasks.push(task);
                payments.recover().await?;
                Some(payments)
            }
            None => None,
        };
        let issuer = match crate::issuer::Issuer::start(&config, replica.clone(), telemetry.clone())
            .await?
        {
            Some((issuer, task)) => {
                tasks.push(task);
                Some(issuer)
            }
            None => None,
        };
        let payouts = replica
            .clone()
            .map(|r| crate::payout::Payouts::new(&config, r, client.clone(), signer.clone()));
        let (worker, advertise) = Worker::start(
            &config,
            client.clone(),
            store.clone(),
            signer.clone(),
            payments.clone(),
            market.clone(),
            telemetry.clone(),
        )?;
        tasks.push(advertise);
        let (network, network_tasks) = Network::start(
            client.clone(),
            store.clone(),
            signer.clone(),
            &config.jobs,
            payments.clone(),
            market.clone(),
            scores.clone(),
            telemetry.clone(),
        )
        .await?;
        tasks.extend(network_tasks);
        let (health, health_task) = Health::start(crate::health::Sources {
            client: client.clone(),
            replica: replica.clone(),
            network: network.clone(),
            market: market.clone(),
            data_dir: data_dir.clone(),
            config: config.health.clone(),
            sync_interval: config.ledger.sync_interval,
            events: telemetry.events.clone(),
            metrics: telemetry.metrics.clone(),
        });
        tasks.push(health_task);
        let (history, history_task) = Recorder::start(
            data_dir.clone(),
            config.api.history_step,
            crate::history::Sources {
                client: client.clone(),
                market: market.clone(),
                replica: replica.clone(),
                metrics: telemetry.metrics.clone(),
                paid: replica.is_some() && config.market.base_price > 0,
            },
        )
        .await;
        tasks.push(history_task);
        let services = Services {
            client: client.clone(),
            store,
            worker,
            network,
            replica,
            market,
            scores,
            public: signer.public(),
            config: Arc::new(config),
            started: Instant::now(),
            blob_count: Default::default(),
            names: Arc::new((client.peer_id().to_string(), signer.public().to_string())),
            telemetry: telemetry.clone(),
            health,
            history,
            issuer,
            payouts,
        };
        let router = Router::new(&services, payments);
        tasks.push(tokio::spawn(router.run(inbound)));

        let mut listen = Vec::new();
        for addr in &services.config.node.listen {
            listen.push(client.listen(addr.clone()).await?);
        }
        client.subscribe(ADVERT_TOPIC).await?;
        if services.replica.is_some() {
            client.subscribe(LEDGER_TOPIC).await?;
        }
        for addr in &services.config.node.bootstrap {
            match client.dial(addr.clone()).await {
                Ok(peer) => info!(%peer, "connected to bootstrap peer"),
                Err(e) => warn!(%addr, error = %e, "bootstrap peer unreachable"),
            }
        }
        if !services.config.node.bootstrap.is_empty() {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = c.bootstrap().await {
                    debug!(error = %e, "DHT bootstrap did not complete");
                }
            }));
        }
        info!(peer = %client.peer_id(), "node started");
        Ok(Self {
            handle: Handle { services },
            tasks,
            listen,
        })
    }

    /// The fresh offers this node holds, cheapest first.
    pub fn offers(&self) -> Vec<crate::api::OfferView> {
        self.handle.services.offers()
    }

    /// This node's price as a worker and what sets it.
    pub fn price(&self) -> crate::api::PriceView {
        self.handle.services.price()
    }

    /// What this node knows of `peer` as a worker, if anything.
    pub fn reputation(&self, peer: &PeerId) -> Option<crate::api::ReputationView> {
        self.handle.services.reputation(Some(peer)).pop()
    }

    /// The overlay client.
    pub fn client(&self) -> &Client {
        &self.handle.services.client
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.handle.services.client.peer_id()
    }

    /// The node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.handle.services.public
    }

    /// The addresses bound at start, each with `/p2p/<peer id>` appended.
    pub fn addrs(&self) -> Vec<Multiaddr> {
        self.listen
            .iter()
            .map(|a| a.clone().with(p2pc_net::Protocol::P2p(self.peer_id())))
            .collect()
    }

    /// Stores `bytes` as a blob and announces it.
    pub async fn put_blob(&self, bytes: &[u8]) -> Result<Cid> {
        let store = self.handle.services.store.clone();
        let bytes = bytes.to_vec();
        let info = crate::blocking(move || store.put_bytes(&bytes)).await?;
        let _ = self.handle.services.client.provide(info.id).await;
        Ok(info.id)
    }

    /// Waits until every job record written so far is on disk (they are
    /// written in groups, a few milliseconds behind what `job` reports).
    pub async fn flush_records(&self) -> Result<()> {
        self.handle.services.network.flush().await
    }

    /// A finished job's output, read (verified) from the store.
    pub async fn output(&self, id: &str) -> Result<Vec<u8>> {
        Ok(self.handle.services.network.output(id).await?.to_vec())
    }

    /// Stops this node's worker taking new tasks (they are refused
    /// `draining`, and its advert says so); those running finish. Returns
    /// how many are running.
    pub fn drain(&self) -> usize {
        self.handle.services.worker.drain()
    }

    /// Peers' tasks running here now.
    pub fn running(&self) -> usize {
        self.handle.services.worker.running()
    }

    /// The workers this node has heard adverts from.
    pub fn workers(&self) -> Vec<PeerId> {
        self.handle.services.network.workers()
    }

    /// Process ids of the isolated wasm workers, when peers' wasm tasks
    /// run in them (`[executors.wasm] isolated = true`); `None` otherwise.
    pub fn isolated_workers(&self) -> Option<Vec<u32>> {
        self.handle.services.worker.pool().map(|p| p.idle_workers())
    }

    /// Components the in-process wasm executor has compiled or loaded
    /// from its cache: zero on a node whose wasm tasks all ran isolated.
    pub fn in_process_loads(&self) -> u64 {
        let s = self.handle.services.worker.wasm().stats();
        s.compiled
            .saturating_add(s.disk_hits)
            .saturating_add(s.memory_hits)
    }

    /// A digest of the ledger's derived state: equal on replicas that
    /// hold the same ops.
    pub fn ledger_digest(&self) -> Option<[u8; 32]> {
        self.handle.services.replica.as_ref().map(Replica::digest)
    }

    /// Pulls from `peer` every op it holds that this node lacks; returns
    /// how many were new.
    pub async fn ledger_sync(&self, peer: PeerId) -> Result<usize> {
        self.handle.services.replica()?.sync_with(peer).await
    }

    /// How many ops wait for this node's clock to reach their time.
    pub fn ledger_future_ops(&self) -> usize {
        self.handle
            .services
            .replica
            .as_ref()
            .map_or(0, Replica::future_ops)
    }

    /// `peer`'s standing with this node: 0 until it sends or forwards bad
    /// messages (ledger ops, offers); blocked at
    /// [`BLOCK_SCORE`](crate::BLOCK_SCORE).
    pub fn peer_score(&self, peer: &PeerId) -> i32 {
        self.handle.services.scores.score(peer)
    }

    /// Stops the node: ends jobs still running as lost, writes every
    /// pending job record, closes every connection and waits for its
    /// tasks.
    pub async fn shutdown(self) {
        self.handle.services.network.stop().await;
        self.handle.services.market.flush().await;
        let _ = self.handle.services.client.shutdown().await;
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        if let Some(replica) = &self.handle.services.replica {
            replica.stop().await;
        }
    }
}

impl std::ops::Deref for ComputeNode {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}
