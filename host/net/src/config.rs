//! What a node's overlay needs to know before it starts.

use std::time::Duration;

use libp2p::Multiaddr;

/// Overlay settings. `Default` listens nowhere, knows no peers and has
/// mDNS off: what tests and embedders start from.
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4001` and
    /// `/ip4/0.0.0.0/udp/4001/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Peers to join the network through; each address ends in `/p2p/<id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Find peers on the local network by multicast DNS.
    pub mdns: bool,
    /// Most connections established at once.
    pub max_connections: u32,
    /// How long a chunk request may take.
    pub chunk_timeout: Duration,
    /// How long a task request may take before libp2p gives up on it. The
    /// node applies each task's own deadline, which is shorter.
    pub task_timeout: Duration,
    /// How long an unused connection stays open.
    pub idle_timeout: Duration,
    /// Lets this node *send* task messages of any size (receiving stays
    /// bounded). Only for tests that play a peer breaking the limits.
    #[doc(hidden)]
    pub unbounded_sends: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 256,
            chunk_timeout: Duration::from_secs(30),
            task_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(120),
            unbounded_sends: false,
        }
    }
}
