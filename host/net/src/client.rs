//! [`Client`]: the handle the rest of the node uses to drive the overlay.
//! Every method sends a [`Command`] to the [`EventLoop`](crate::EventLoop)
//! and waits for its answer.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, request_response::ResponseChannel};
use p2pc_types::Cid;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::{ChunkRequest, ChunkResponse};
use crate::{Error, Result};

/// A cloneable handle on a running overlay.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
    pub(crate) view: std::sync::Arc<View>,
}

/// What the event loop keeps current for readers that must not wait on
/// it (a status page asked thousands of times a second).
#[derive(Debug, Default)]
pub(crate) struct View {
    pub(crate) peers: std::sync::atomic::AtomicUsize,
    pub(crate) listen: std::sync::Mutex<Vec<Multiaddr>>,
}

/// A peer this node is connected to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PeerInfo {
    /// Its id.
    pub peer_id: String,
    /// Addresses of its open connections.
    pub addresses: Vec<String>,
    /// Its agent string, once identify has run.
    pub agent: Option<String>,
    /// Last measured round trip, in microseconds.
    pub rtt_us: Option<u64>,
}

/// A request the overlay received, for the node to answer.
pub enum Inbound {
    /// A peer asks for a manifest or chunks.
    Chunk {
        /// Who asks.
        peer: PeerId,
        /// What they ask for.
        request: ChunkRequest,
        /// Where the answer goes: [`Client::respond_chunk`].
        channel: ResponseChannel<ChunkResponse>,
    },
    /// A peer sends a task-protocol message.
    Task {
        /// Who sent it.
        peer: PeerId,
        /// The message, at most `MAX_TASK_MESSAGE_BYTES`.
        request: Vec<u8>,
        /// Where the answer goes: [`Client::respond_task`].
        channel: ResponseChannel<Vec<u8>>,
    },
    /// A peer sends a ledger anti-entropy request.
    Ledger {
        /// Who sent it.
        peer: PeerId,
        /// The request, at most `MAX_LEDGER_MESSAGE_BYTES`.
        request: Vec<u8>,
        /// Where the answer goes: [`Client::respond_ledger`].
        channel: ResponseChannel<Vec<u8>>,
    },
    /// A gossip message on a topic this node subscribed to.
    Gossip {
        /// The peer that published it (gossipsub signs messages).
        source: Option<PeerId>,
        /// The peer that passed it on to us: the one to blame for a bad
        /// message.
        via: PeerId,
        /// The topic.
        topic: String,
        /// The message.
        data: Vec<u8>,
        /// What to name it by in [`Client::judge`]: it is passed on to
        /// other peers only once judged good.
        id: GossipId,
    },
    /// A connection to a new peer was established.
    Connected(PeerId),
    /// The last connection to a peer closed.
    Disconnected(PeerId),
}

/// A gossip message held by the overlay until the node judges it.
#[derive(Clone, Debug)]
pub struct GossipId {
    pub(crate) message: libp2p::gossipsub::MessageId,
    pub(crate) via: PeerId,
}

/// What the node found a gossip message to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Good: pass it on.
    Accept,
    /// Forged, malformed or foreign: drop it and pass it to nobody.
    Reject,
    /// Not wrong, but not worth passing on (a queue was full).
    Ignore,
}

type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Command {
    Listen(Multiaddr, Reply<Multiaddr>),
    ListenAddrs(Reply<Vec<Multiaddr>>),
    Dial(Multiaddr, Reply<PeerId>),
    Bootstrap(Reply<()>),
    Provide(Cid, Reply<()>),
    Providers(Cid, Reply<HashSet<PeerId>>),
    FindPeer(PeerId, Reply<bool>),
    Chunk(PeerId, ChunkRequest, Reply<ChunkResponse>),
    Task(PeerId, Vec<u8>, Reply<Vec<u8>>),
    Ledger(PeerId, Vec<u8>, Reply<Vec<u8>>),
    RespondLedger(ResponseChannel<Vec<u8>>, Vec<u8>),
    Block(PeerId, bool, Reply<()>),
    RespondChunk(ResponseChannel<ChunkResponse>, ChunkResponse),
    RespondTask(ResponseChannel<Vec<u8>>, Vec<u8>),
    Subscribe(String, Reply<()>),
    Publish(String, Vec<u8>, Reply<()>),
    Judge(GossipId, Verdict),
    Peers(Reply<Vec<PeerInfo>>),
    Shutdown(Reply<()>),
}

impl Client {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Says what a gossip message is, so the overlay passes on only good
    /// ones: a node never forwards what it has not checked, so an honest
    /// peer is never blamed for an attacker's message. Never waits: if the
    /// overlay's queue is full the message is simply not forwarded.
    pub fn judge(&self, id: GossipId, verdict: Verdict) {
        let _ = self.commands.try_send(Command::Judge(id, verdict));
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Starts listening on `addr`; returns the address actually bound
    /// (port 0 resolved).
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr> {
        self.call(|r| Command::Listen(addr, r)).await
    }

    /// Every address this node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        self.call(Command::ListenAddrs).await
    }

    /// Connects to `addr`, which must end in `/p2p/<peer id>`; returns the
    /// peer once the connection is established.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        self.call(|r| Command::Dial(addr, r)).await
    }

    /// Runs a Kademlia bootstrap: fills the routing table through the peers
    /// already known.
    pub async fn bootstrap(&self) -> Result<()> {
        self.call(Command::Bootstrap).await
    }

    /// Announces that this node holds blob `cid`.
    pub async fn provide(&self, cid: Cid) -> Result<()> {
        self.call(|r| Command::Provide(cid, r)).await
    }

    /// Peers that announced they hold blob `cid`.
    pub async fn providers(&self, cid: Cid) -> Result<HashSet<PeerId>> {
        self.call(|r| Command::Providers(cid, r)).await
    }

    /// Looks `peer` up in the DHT so it can be dialled by id; true if it
    /// was found.
    pub async fn find_peer(&self, peer: PeerId) -> Result<bool> {
        self.call(|r| Command::FindPeer(peer, r)).await
    }

    /// Sends a chunk request to `peer`.
    pub async fn request_chunk(
        &self,
        peer: PeerId,
        request: ChunkRequest,
    ) -> Result<ChunkResponse> {
        self.call(|r| Command::Chunk(peer, request, r)).await
    }

    /// Sends a task-protocol message to `peer` and waits up to `timeout`
    /// for its answer.
    pub async fn request_task(
        &self,
        peer: PeerId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        match tokio::time::timeout(timeout, self.call(|r| Command::Task(peer, request, r))).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Sends a ledger anti-entropy request to `peer` and waits up to
    /// `timeout` for its answer.
    pub async fn request_ledger(
        &self,
        peer: PeerId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        match tokio::time::timeout(timeout, self.call(|r| Command::Ledger(peer, request, r))).await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Answers a ledger anti-entropy request.
    pub async fn respond_ledger(
        &self,
        channel: ResponseChannel<Vec<u8>>,
        response: Vec<u8>,
    ) -> Result<()> {
        self.commands
            .send(Command::RespondLedger(channel, response))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Closes every connection to `peer` and refuses new ones until
    /// [`unblock`](Self::unblock).
    pub async fn block(&self, peer: PeerId) -> Result<()> {
        self.call(|r| Command::Block(peer, true, r)).await
    }

    /// Allows `peer` again.
    pub async fn unblock(&self, peer: PeerId) -> Result<()> {
        self.call(|r| Command::Block(peer, false, r)).await
    }

    /// Answers a chunk request.
    pub async fn respond_chunk(
        &self,
        channel: ResponseChannel<ChunkResponse>,
        response: ChunkResponse,
    ) -> Result<()> {
        self.commands
            .send(Command::RespondChunk(channel, response))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Answers a task-protocol message.
    pub async fn respond_task(
        &self,
        channel: ResponseChannel<Vec<u8>>,
        response: Vec<u8>,
    ) -> Result<()> {
        self.commands
            .send(Command::RespondTask(channel, response))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Subscribes to gossip `topic`.
    pub async fn subscribe(&self, topic: &str) -> Result<()> {
        let topic = topic.to_owned();
        self.call(|r| Command::Subscribe(topic, r)).await
    }

    /// Publishes `data` on gossip `topic`.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<()> {
        let topic = topic.to_owned();
        self.call(|r| Command::Publish(topic, data, r)).await
    }

    /// How many peers are connected now, without asking the event loop.
    pub fn peer_count(&self) -> usize {
        self.view.peers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The addresses listened on now, without asking the event loop.
    pub fn listening(&self) -> Vec<Multiaddr> {
        self.view
            .listen
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// The peers this node is connected to.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        self.call(Command::Peers).await
    }

    /// Closes every connection and stops the event loop.
    pub async fn shutdown(&self) -> Result<()> {
        self.call(Command::Shutdown).await
    }
}
