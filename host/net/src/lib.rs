//! The p2pc overlay: a libp2p swarm (TCP and QUIC, Noise, Yamux,
//! identify, ping, Kademlia in server mode, optional mDNS, gossipsub) and
//! p2pc's own request-response protocols, chunk exchange and remote
//! execution, with bounded message sizes.
//!
//! The rest of the node never touches the `Swarm`: it holds a cloneable
//! [`Client`] whose methods send commands to the [`EventLoop`] that owns
//! the swarm, and it answers the [`Inbound`] requests the loop hands it.
//! This crate moves bytes and finds peers; it does not know what a task or
//! a blob store is (that is `p2pc-node`), and it trusts nothing it
//! receives beyond what libp2p authenticated: the sending peer's id.
//!
//! Modules:
//! - `protocol`: wire formats and limits of `/p2pc/chunk/1` and
//!   `/p2pc/task/1`, and their codec.
//! - `behaviour`: the composed libp2p behaviour.
//! - `config`: [`Config`].
//! - `client`: [`Client`], [`Inbound`], [`PeerInfo`].
//! - `event_loop`: [`EventLoop`] and [`new`].

#![deny(missing_docs)]

mod behaviour;
mod client;
mod config;
mod event_loop;
mod protocol;

use std::time::Duration;

pub use behaviour::{KAD_PROTOCOL, MAX_GOSSIP_BYTES, PROTOCOL_VERSION};
pub use client::{Client, GossipId, Inbound, PeerInfo, Verdict};
pub use config::Config;
pub use event_loop::{EventLoop, new, peer_of};
pub use libp2p::multiaddr::Protocol;
pub use libp2p::request_response::ResponseChannel;
pub use libp2p::{Multiaddr, PeerId};
pub use protocol::{
    CHUNK_PROTOCOL, ChunkRequest, ChunkResponse, ChunkStatus, LEDGER_PROTOCOL,
    MAX_CHUNK_REQUEST_BYTES, MAX_CHUNK_RESPONSE_BYTES, MAX_CHUNKS_PER_REQUEST,
    MAX_LEDGER_MESSAGE_BYTES, MAX_TASK_MESSAGE_BYTES, TASK_PROTOCOL,
};

/// How a request to a peer failed, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFailure {
    /// The peer could not be reached.
    Unreachable,
    /// No answer within the protocol's timeout.
    Timeout,
    /// The connection closed before the answer came: the peer went away.
    ConnectionClosed,
    /// The peer does not speak the protocol.
    Unsupported,
    /// The stream failed, e.g. the answer was over the size limit.
    Io,
}

/// Why an overlay operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event loop has stopped.
    #[error("the overlay has stopped")]
    Stopped,
    /// The transport could not be built.
    #[error("cannot set up the transport: {0}")]
    Transport(String),
    /// Listening failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// An address was not usable.
    #[error("bad address: {0}")]
    BadAddress(String),
    /// A dial failed.
    #[error("cannot connect to {addr}: {reason}")]
    Dial {
        /// The address or peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A DHT operation needs at least one known peer.
    #[error("no known peers to bootstrap from")]
    NoKnownPeers,
    /// A DHT query failed.
    #[error("DHT query failed: {0}")]
    Dht(String),
    /// A request to a peer failed.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// What kind of failure.
        kind: RequestFailure,
        /// libp2p's description.
        reason: String,
    },
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Gossip failed.
    #[error("gossip: {0}")]
    Gossip(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
