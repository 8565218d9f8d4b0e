//! [`ComputeNode`]: the composition root. Opens the store, unlocks nothing
//! itself (it is handed its key), builds the executors and the overlay, and
//! answers peers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pc_crypto::{Envelope, PublicKey, SecretKey, TrustPolicy, VerifiedBundle};
use p2pc_exec::{ContainerExecutor, ProcessExecutor};
use p2pc_net::{Client, Inbound, Multiaddr, PeerId};
use p2pc_sandbox::WasmExecutor;
use p2pc_store::{Cid, Store};
use prost::Message;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::jobs::Jobs;
use crate::messages::{ADVERT_KIND, ADVERT_TOPIC, Advert, TaskReply, now_unix_ms};
use crate::{Error, NodeConfig, Result};

/// State every handler shares.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) store: Store,
    pub(crate) key: SecretKey,
    pub(crate) public: PublicKey,
    pub(crate) config: NodeConfig,
    pub(crate) submitters: TrustPolicy,
    pub(crate) publishers: TrustPolicy,
    pub(crate) wasm: WasmExecutor,
    pub(crate) process: Option<ProcessExecutor>,
    pub(crate) container: Option<ContainerExecutor>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) seen_tasks: Mutex<HashMap<(PublicKey, Vec<u8>), u64>>,
    pub(crate) bundles: Mutex<HashMap<Cid, Arc<VerifiedBundle>>>,
    /// Adverts heard, by peer: the worker's key and what it offers.
    pub(crate) adverts: Mutex<HashMap<PeerId, (PublicKey, Advert)>>,
    pub(crate) jobs: Jobs,
    /// The ledger replica, if `[ledger] genesis` is set.
    pub(crate) ledger: Option<Arc<crate::ledger::LedgerService>>,
    sequence: AtomicU64,
    started: Instant,
}

impl Shared {
    /// A sequence number above every one this node used before, even
    /// across restarts: microseconds since the epoch, bumped past the last.
    pub(crate) fn next_sequence(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut last = self.sequence.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .sequence
                .compare_exchange(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Announces blob `cid` in the background.
    pub(crate) fn announce(&self, cid: Cid) {
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.provide(cid).await {
                debug!(%cid, error = %e, "could not announce blob");
            }
        });
    }

    fn on_advert(&self, source: Option<PeerId>, data: &[u8]) {
        let Some(source) = source else { return };
        let Ok(envelope) = Envelope::decode_bounded(data) else {
            return;
        };
        let Ok(opened) = envelope.open(ADVERT_KIND) else {
            debug!(%source, "advert with a bad signature");
            return;
        };
        // The advert must be signed by the key the gossip source's peer id
        // was derived from.
        if opened.author.peer_id() != source {
            debug!(%source, "advert signed by another key");
            return;
        }
        let Ok(advert) = Advert::decode(opened.payload) else {
            return;
        };
        if advert.issued_unix_ms + 120_000 < now_unix_ms() {
            return;
        }
        self.adverts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source, (opened.author, advert));
    }
}

/// What `node status` shows.
#[derive(Clone, Debug, serde::Serialize)]
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
    /// Task slots free / total.
    pub free_slots: usize,
    /// Task slots in all.
    pub slots: usize,
    /// Blobs stored.
    pub blobs: usize,
    /// Jobs submitted through this node.
    pub jobs: usize,
    /// Seconds since start.
    pub uptime_secs: u64,
}

/// A running node. Dropping it does not stop it; call
/// [`shutdown`](Self::shutdown).
pub struct ComputeNode {
    pub(crate) shared: Arc<Shared>,
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
        let store = Store::open(data_dir.join("store"))?;
        let wasm = WasmExecutor::new(p2pc_sandbox::Config {
            cache_dir: Some(data_dir.join("cache")),
            max_concurrent: config.node.slots.clamp(1, 64) as u32,
            max_memory: config.limits.memory.max(p2pc_types::ByteSize::mib(64)),
            ..p2pc_sandbox::Config::default()
        })
        .map_err(|e| Error::Executor(e.to_string()))?;
        let process = config
            .executors
            .process
            .enabled
            .then(|| ProcessExecutor::new(config.executors.process_config()));
        let container = config
            .executors
            .container
            .enabled
            .then(|| ContainerExecutor::new(config.executors.container_config()));
        if config.executors.wasm.isolated {
            // TODO: run peers' wasm tasks in the isolated pool; it needs the
            // p2pctl binary's path, which embedders of this crate lack.
            warn!(
                "[executors.wasm] isolated is not used by the node yet; wasm tasks run in-process"
            );
        }

        let ledger = crate::ledger::open_ledger(&config)?
            .map(|l| crate::ledger::LedgerService::new(l, config.ledger.max_clock_skew));

        let (client, inbound, event_loop) = p2pc_net::new(&key, config.net())?;
        let net_task = tokio::spawn(event_loop.run());
        let shared = Arc::new(Shared {
            client: client.clone(),
            store,
            public: key.public(),
            key,
            submitters: config.trust.submitters()?,
            publishers: config.trust.publishers()?,
            wasm,
            process,
            container,
            slots: Arc::new(Semaphore::new(config.node.slots.max(1))),
            seen_tasks: Mutex::new(HashMap::new()),
            bundles: Mutex::new(HashMap::new()),
            adverts: Mutex::new(HashMap::new()),
            jobs: Jobs::default(),
            ledger,
            sequence: AtomicU64::new(0),
            started: Instant::now(),
            config,
        });

        let mut listen = Vec::new();
        for addr in &shared.config.node.listen {
            listen.push(client.listen(addr.clone()).await?);
        }
        client.subscribe(ADVERT_TOPIC).await?;
        let mut tasks = vec![
            net_task,
            tokio::spawn(dispatch(shared.clone(), inbound)),
            tokio::spawn(advertise(shared.clone())),
        ];
        if shared.ledger.is_some() {
            client.subscribe(crate::ledger::LEDGER_TOPIC).await?;
            tasks.push(tokio::spawn(crate::ledger::sync_loop(
                shared.clone(),
                shared.config.ledger.sync_interval,
            )));
            tasks.push(tokio::spawn(crate::ledger::release_loop(shared.clone())));
        }
        for addr in &shared.config.node.bootstrap {
            match client.dial(addr.clone()).await {
                Ok(peer) => info!(%peer, "connected to bootstrap peer"),
                Err(e) => warn!(%addr, error = %e, "bootstrap peer unreachable"),
            }
        }
        if !shared.config.node.bootstrap.is_empty() {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = c.bootstrap().await {
                    debug!(error = %e, "DHT bootstrap did not complete");
                }
            }));
        }
        info!(peer = %client.peer_id(), "node started");
        Ok(Self {
            shared,
            tasks,
            listen,
        })
    }

    /// The overlay client.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// The node's store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.client.peer_id()
    }

    /// The node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.shared.public
    }

    /// The addresses bound at start, each with `/p2p/<peer id>` appended.
    pub fn addrs(&self) -> Vec<Multiaddr> {
        self.listen
            .iter()
            .map(|a| a.clone().with(p2pc_net::Protocol::P2p(self.peer_id())))
            .collect()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.shared.config.node.data_dir.clone()
    }

    /// Stores `bytes` as a blob and announces it.
    pub async fn put_blob(&self, bytes: &[u8]) -> Result<Cid> {
        let info = self.shared.store.put_bytes(bytes)?;
        let _ = self.shared.client.provide(info.id).await;
        Ok(info.id)
    }

    /// Fetches blob `cid` from the network.
    pub async fn fetch(&self, cid: Cid, hints: &[PeerId]) -> Result<crate::FetchStats> {
        Ok(crate::fetch::fetch(&self.shared.client, &self.shared.store, cid, hints).await?)
    }

    /// What the node sees.
    pub async fn status(&self) -> Result<Status> {
        self.shared.status().await
    }

    /// Stops the node: closes every connection and waits for its tasks.
    pub async fn shutdown(self) {
        let _ = self.shared.client.shutdown().await;
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Shared {
    pub(crate) async fn status(&self) -> Result<Status> {
        Ok(Status {
            peer_id: self.client.peer_id().to_string(),
            public_key: self.public.to_string(),
            listen: self
                .client
                .listen_addrs()
                .await?
                .iter()
                .map(|a| a.to_string())
                .collect(),
            peers: self.client.peers().await?.len(),
            workers_known: self.adverts.lock().unwrap_or_else(|e| e.into_inner()).len(),
            free_slots: self.slots.available_permits(),
            slots: self.config.node.slots,
            blobs: self.store.list()?.len(),
            jobs: self.jobs.len(),
            uptime_secs: self.started.elapsed().as_secs(),
        })
    }
}

/// Hands every inbound request to a task of its own, so a slow one never
/// holds up the overlay.
async fn dispatch(shared: Arc<Shared>, mut inbound: mpsc::Receiver<Inbound>) {
    while let Some(message) = inbound.recv().await {
        match message {
            Inbound::Chunk {
                request, channel, ..
            } => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let store = shared.store.clone();
                    let response =
                        tokio::task::spawn_blocking(move || crate::fetch::serve(&store, &request))
                            .await
                            .unwrap_or_else(|_| {
                                p2pc_net::ChunkResponse::with_status(
                                    p2pc_net::ChunkStatus::Unavailable,
                                )
                            });
                    let _ = shared.client.respond_chunk(channel, response).await;
                });
            }
            Inbound::Task {
                peer,
                request,
                channel,
            } => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let reply: TaskReply = shared.handle_task(peer, &request).await;
                    let _ = shared
                        .client
                        .respond_task(channel, reply.encode_to_vec())
                        .await;
                });
            }
            Inbound::Ledger {
                peer,
                request,
                channel,
            } => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let reply = shared.answer_sync(peer, &request).await;
                    let _ = shared.client.respond_ledger(channel, reply).await;
                });
            }
            Inbound::Gossip {
                source,
                via,
                topic,
                data,
            } => {
                if topic == ADVERT_TOPIC {
                    shared.on_advert(source, &data);
                } else if topic == crate::ledger::LEDGER_TOPIC {
                    // In order: gossip of one chain must not race itself.
                    shared.on_ledger_gossip(via, &data).await;
                }
            }
            Inbound::Connected(peer) => {
                debug!(%peer, "peer connected");
                if shared.ledger.is_some() {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = shared.sync_with(peer).await {
                            debug!(%peer, error = %e, "ledger sync failed");
                        }
                    });
                }
            }
            Inbound::Disconnected(peer) => {
                shared
                    .adverts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&peer);
            }
        }
    }
}

/// Gossips this worker's advert now and then.
async fn advertise(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let advert = shared.advert().encode_to_vec();
        // Fails while no peer subscribes; the next tick tries again.
        let _ = shared.client.publish(ADVERT_TOPIC, advert).await;
    }
}
