//! In-process p2pc clusters for tests. Every node is a real
//! [`ComputeNode`] with its own store in a temporary directory, talking
//! libp2p over loopback TCP. Nothing here stands in for a real component;
//! the only extras are adversaries built from the same overlay crate:
//! [`CorruptProvider`], which serves bad chunks, and [`HostilePeer`],
//! which attacks a node on every protocol.
//!
//! Not for production use (`publish = false`).

mod hostile;

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use p2pc_crypto::{BundleFile, Manifest, RequestedLimits, SecretKey};
use p2pc_net::{ChunkResponse, ChunkStatus, Client, Inbound, Multiaddr, PeerId};
use p2pc_node::{ComputeNode, NodeConfig};
use p2pc_store::Cid;

pub use hostile::{Assault, HostilePeer};

/// Every wait in a test is bounded by this unless it says otherwise.
pub const WAIT: Duration = Duration::from_secs(30);

/// A set of running nodes. Node 0 is the bootstrap node of the others.
pub struct Cluster {
    /// The nodes, in start order.
    pub nodes: Vec<ComputeNode>,
    dir: tempfile::TempDir,
}

/// A node config for tests: loopback TCP on a free port, no mDNS, data in
/// `dir`.
pub fn test_config(dir: &std::path::Path) -> NodeConfig {
    let mut config = NodeConfig::default();
    config.node.data_dir = dir.to_owned();
    config.node.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid address")];
    config.node.mdns = false;
    config.limits.memory = p2pc_types::ByteSize::mib(128);
    config
}

impl Cluster {
    /// Starts `n` nodes with the default test config.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, |_, _| {}).await
    }

    /// Starts `n` nodes, letting `tweak(i, config)` change each node's
    /// config. Nodes after the first bootstrap through node 0.
    pub async fn start_with(
        n: usize,
        tweak: impl FnMut(usize, &mut NodeConfig),
    ) -> anyhow::Result<Self> {
        Self::start_keyed((0..n).map(|_| SecretKey::generate()).collect(), tweak).await
    }

    /// Starts one node per key, as [`start_with`](Self::start_with) does.
    pub async fn start_keyed(
        keys: Vec<SecretKey>,
        mut tweak: impl FnMut(usize, &mut NodeConfig),
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut nodes: Vec<ComputeNode> = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let mut config = test_config(&dir.path().join(format!("node{i}")));
            if let Some(first) = nodes.first() {
                config.node.bootstrap = first.addrs();
            }
            tweak(i, &mut config);
            let node = tokio::time::timeout(WAIT, ComputeNode::start(config, key))
                .await
                .context("node start timed out")??;
            // Both ends must see the connection before a test uses it.
            if let Some(first) = nodes.first() {
                let id = node.peer_id().to_string();
                eventually("the bootstrap node to see a new node", WAIT, || async {
                    let peers = first.client().peers().await.ok()?;
                    peers.iter().any(|p| p.peer_id == id).then_some(())
                })
                .await?;
            }
            nodes.push(node);
        }
        Ok(Self { nodes, dir })
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &ComputeNode {
        &self.nodes[i]
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
}

/// A signed bundle of `component` (of the job world) published by `key`.
pub fn bundle(key: &SecretKey, name: &str, component: Vec<u8>, limits: RequestedLimits) -> Vec<u8> {
    bundle_with_world(key, name, component, limits, "p2pc:job/job")
}

/// A signed bundle of `component` of `world` published by `key`.
pub fn bundle_with_world(
    key: &SecretKey,
    name: &str,
    component: Vec<u8>,
    limits: RequestedLimits,
    world: &str,
) -> Vec<u8> {
    let manifest = Manifest {
        name: name.into(),
        version: "1.0.0".into(),
        world: world.into(),
        publisher: key.public().to_bytes().to_vec(),
        created_unix: p2pc_crypto::now_unix(),
        limits: Some(limits),
        ..Manifest::default()
    };
    let mut file = BundleFile::pack(manifest, component);
    file.sign(key).expect("the manifest names this key");
    file.to_bytes()
}

/// How a [`CorruptProvider`] misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Every chunk it sends has one bit flipped.
    FlipBits,
    /// It serves this many chunks faithfully, then vanishes: its overlay
    /// shuts down and every connection closes.
    VanishAfter(usize),
}

/// An adversary: a bare overlay peer that claims to hold a blob and serves
/// its manifest faithfully but its chunks badly.
pub struct CorruptProvider {
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl CorruptProvider {
    /// Starts it, holding a copy of `data` as blob, joined to `bootstrap`.
    pub async fn start(data: &[u8], bootstrap: Multiaddr) -> anyhow::Result<(Self, Cid)> {
        Self::start_with(data, bootstrap, Misbehaviour::FlipBits).await
    }

    /// Starts one that misbehaves as `how`.
    pub async fn start_with(
        data: &[u8],
        bootstrap: Multiaddr,
        how: Misbehaviour,
    ) -> anyhow::Result<(Self, Cid)> {
        let dir = tempfile::tempdir()?;
        let store = p2pc_store::Store::open(dir.path())?;
        let cid = store.put_bytes(data)?.id;
        let key = SecretKey::generate();
        let (client, mut inbound, event_loop) = p2pc_net::new(&key, p2pc_net::Config::default())?;
        let net = tokio::spawn(event_loop.run());
        client.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
        client.dial(bootstrap).await?;
        let _ = client.bootstrap().await;
        client.provide(cid).await?;
        let c = client.clone();
        let task = tokio::spawn(async move {
            let _dir = dir;
            let _net = net;
            let mut served = 0usize;
            while let Some(message) = inbound.recv().await {
                if let Inbound::Chunk {
                    request, channel, ..
                } = message
                {
                    let response = if request.chunks.is_empty() {
                        match store.manifest(&cid) {
                            Ok(m) => ChunkResponse {
                                status: ChunkStatus::Ok as i32,
                                manifest: m.into(),
                                chunks: Vec::new(),
                            },
                            Err(_) => ChunkResponse::with_status(ChunkStatus::NotFound),
                        }
                    } else {
                        if let Misbehaviour::VanishAfter(n) = how
                            && served >= n
                        {
                            let _ = c.shutdown().await;
                            return;
                        }
                        let mut chunks = Vec::new();
                        for name in &request.chunks {
                            let hash = Cid::from_slice(name).expect("32 bytes");
                            let mut bytes = store.chunk(&hash).expect("held");
                            if how == Misbehaviour::FlipBits {
                                bytes[0] ^= 1;
                            }
                            served += 1;
                            chunks.push(bytes.into());
                        }
                        ChunkResponse {
                            status: ChunkStatus::Ok as i32,
                            manifest: Default::default(),
                            chunks,
                        }
                    };
                    let _ = c.respond_chunk(channel, response).await;
                }
            }
        });
        Ok((Self { client, task }, cid))
    }

    /// Its peer id.
    pub fn peer_id(&self) -> PeerId {
        self.client.peer_id()
    }

    /// Stops it.
    pub async fn stop(self) {
        let _ = self.client.shutdown().await;
        self.task.abort();
    }
}
