//! The libp2p behaviours a p2pc node runs, composed into one.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, allow_block_list, connection_limits, gossipsub, identify, identity, kad, mdns,
    ping, request_response,
};

use crate::config::Config;
use crate::protocol::{
    CHUNK_PROTOCOL, ChunkCodec, LEDGER_PROTOCOL, MAX_CHUNK_REQUEST_BYTES, MAX_CHUNK_RESPONSE_BYTES,
    MAX_LEDGER_MESSAGE_BYTES, MAX_TASK_MESSAGE_BYTES, TASK_PROTOCOL, TaskCodec,
};

/// Kademlia protocol name: our own DHT, not the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/p2pc/kad/1");
/// Identify's protocol version string.
pub const PROTOCOL_VERSION: &str = "/p2pc/1";
/// Largest gossip message.
pub const MAX_GOSSIP_BYTES: usize = 64 << 10;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) chunk: request_response::Behaviour<ChunkCodec>,
    pub(crate) task: request_response::Behaviour<TaskCodec>,
    pub(crate) ledger: request_response::Behaviour<TaskCodec>,
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
}

impl Behaviour {
    pub(crate) fn new(
        key: &identity::Keypair,
        config: &Config,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let peer_id = key.public().to_peer_id();
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(4))
            .with_max_pending_incoming(Some(config.max_connections));

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(Duration::from_secs(30));
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Every node serves the DHT: nodes on one machine or a LAN have no
        // confirmed external address, and would otherwise stay clients.
        kad.set_mode(Some(kad::Mode::Server));

        let mdns = if config.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                peer_id,
            )?)
        } else {
            None
        };

        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(MAX_GOSSIP_BYTES)
            .heartbeat_interval(Duration::from_millis(500))
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Nothing is forwarded until the node has checked it
            // (`Client::judge`): forwarding first would pass an attacker's
            // garbage on, and get this node blamed for it.
            .validate_messages()
            .build()?;
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )?;

        let chunk = request_response::Behaviour::with_codec(
            ChunkCodec::new(MAX_CHUNK_REQUEST_BYTES, MAX_CHUNK_RESPONSE_BYTES),
            [(CHUNK_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.chunk_timeout)
                .with_max_concurrent_streams(256),
        );
        let mut task_codec = TaskCodec::new(MAX_TASK_MESSAGE_BYTES, MAX_TASK_MESSAGE_BYTES);
        if config.unbounded_sends {
            task_codec = task_codec.unbounded_sends();
        }
        let task = request_response::Behaviour::with_codec(
            task_codec,
            [(TASK_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.task_timeout)
                .with_max_concurrent_streams(1024),
        );

        let ledger = request_response::Behaviour::with_codec(
            TaskCodec::new(MAX_LEDGER_MESSAGE_BYTES, MAX_LEDGER_MESSAGE_BYTES),
            [(LEDGER_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.task_timeout)
                .with_max_concurrent_streams(64),
        );

        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            identify: identify::Behaviour::new(
                identify::Config::new(PROTOCOL_VERSION.to_owned(), key.public())
                    .with_agent_version(format!("p2pc/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            kad,
            mdns: mdns.into(),
            gossipsub,
            chunk,
            task,
            ledger,
            blocked: Default::default(),
        })
    }
}
