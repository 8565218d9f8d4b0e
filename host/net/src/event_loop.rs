//! [`EventLoop`]: owns the libp2p `Swarm`, carries out [`Command`]s and
//! turns swarm events into answers and [`Inbound`] messages.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns, noise, ping, tcp, yamux};
use p2pc_crypto::SecretKey;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::client::{Command, GossipId, Inbound, PeerInfo, Verdict};
use crate::protocol::ChunkResponse;
use crate::{Client, Config, Error, RequestFailure, Result};

type Reply<T> = oneshot::Sender<Result<T>>;

/// Runs the overlay. Spawn [`run`](Self::run) on a tokio runtime; it ends
/// on [`Client::shutdown`] or when every [`Client`] is dropped.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<Inbound>,
    pending_listen: HashMap<ListenerId, Reply<Multiaddr>>,
    pending_dial: HashMap<PeerId, Vec<Reply<PeerId>>>,
    pending_bootstrap: HashMap<kad::QueryId, Reply<()>>,
    pending_provide: HashMap<kad::QueryId, Reply<()>>,
    pending_providers: HashMap<kad::QueryId, (HashSet<PeerId>, Reply<HashSet<PeerId>>)>,
    pending_find: HashMap<kad::QueryId, (PeerId, Reply<bool>)>,
    pending_chunk: HashMap<OutboundRequestId, Reply<ChunkResponse>>,
    pending_task: HashMap<OutboundRequestId, Reply<Vec<u8>>>,
    pending_ledger: HashMap<OutboundRequestId, Reply<Vec<u8>>>,
    peers: HashMap<PeerId, PeerState>,
    view: std::sync::Arc<crate::client::View>,
}

#[derive(Default)]
struct PeerState {
    addresses: Vec<Multiaddr>,
    agent: Option<String>,
    rtt: Option<std::time::Duration>,
}

/// Builds the overlay for `key`: a [`Client`], the stream of [`Inbound`]
/// requests the node must answer, and the [`EventLoop`] to spawn.
pub fn new(
    key: &SecretKey,
    config: Config,
) -> Result<(Client, mpsc::Receiver<Inbound>, EventLoop)> {
    let keypair = key.to_libp2p();
    let peer_id = keypair.public().to_peer_id();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::new().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_quic()
        .with_behaviour(|key| Behaviour::new(key, &config))
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    let (command_tx, commands) = mpsc::channel(1024);
    let (inbound_tx, inbound) = mpsc::channel(1024);
    let event_loop = EventLoop {
        swarm,
        commands,
        inbound: inbound_tx,
        pending_listen: HashMap::new(),
        pending_dial: HashMap::new(),
        pending_bootstrap: HashMap::new(),
        pending_provide: HashMap::new(),
        pending_providers: HashMap::new(),
        pending_find: HashMap::new(),
        pending_chunk: HashMap::new(),
        pending_task: HashMap::new(),
        pending_ledger: HashMap::new(),
        peers: HashMap::new(),
        view: Default::default(),
    };
    let client = Client {
        commands: command_tx,
        peer_id,
        view: event_loop.view.clone(),
    };
    Ok((client, inbound, event_loop))
}

/// The peer id an address names in its final `/p2p/...` part.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Settles a request-response event of either protocol: a response or an
/// outbound failure goes to its waiter; an inbound request is returned for
/// the node to answer.
fn answer<Req, Resp>(
    event: request_response::Event<Req, Resp>,
    pending: &mut HashMap<OutboundRequestId, Reply<Resp>>,
    protocol: &str,
) -> Option<(PeerId, Req, request_response::ResponseChannel<Resp>)> {
    use request_response::{Event, Message};
    match event {
        Event::Message { peer, message, .. } => match message {
            Message::Request {
                request, channel, ..
            } => return Some((peer, request, channel)),
            Message::Response {
                request_id,
                response,
            } => {
                if let Some(reply) = pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
        },
        Event::OutboundFailure {
            request_id,
            error,
            peer,
            ..
        } => {
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Err(Error::Request {
                    peer,
                    kind: failure(&error),
                    reason: error.to_string(),
                }));
            }
        }
        Event::InboundFailure { peer, error, .. } => {
            debug!(%peer, %error, protocol, "inbound request failed");
        }
        Event::ResponseSent { .. } => {}
    }
    None
}

fn failure(error: &request_response::OutboundFailure) -> RequestFailure {
    use request_response::OutboundFailure as F;
    match error {
        F::DialFailure => RequestFailure::Unreachable,
        F::Timeout => RequestFailure::Timeout,
        F::ConnectionClosed => RequestFailure::ConnectionClosed,
        F::UnsupportedProtocols => RequestFailure::Unsupported,
        F::Io(_) => RequestFailure::Io,
    }
}

impl EventLoop {
    /// Drives the swarm until shutdown.
    pub async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event).await,
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        info!("overlay shutting down");
                        let _ = reply.send(Ok(()));
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => return,
                },
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let swarm = &mut self.swarm;
        match command {
            Command::Listen(addr, reply) => match swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    self.pending_listen.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::Listen {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    }));
                }
            },
            Command::ListenAddrs(reply) => {
                let _ = reply.send(Ok(swarm.listeners().cloned().collect()));
            }
            Command::Dial(addr, reply) => {
                let Some(peer) = peer_of(&addr) else {
                    let _ = reply.send(Err(Error::BadAddress(format!(
                        "{addr} does not end in /p2p/<peer id>"
                    ))));
                    return;
                };
                if peer == *swarm.local_peer_id() {
                    let _ = reply.send(Err(Error::BadAddress(format!("{addr} is this node"))));
                    return;
                }
                swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, without_peer(&addr));
                if swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                match swarm.dial(addr.clone()) {
                    Ok(()) => self.pending_dial.entry(peer).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(Error::Dial {
                            addr: addr.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Bootstrap(reply) => match swarm.behaviour_mut().kad.bootstrap() {
                Ok(id) => {
                    self.pending_bootstrap.insert(id, reply);
                }
                Err(_) => {
                    let _ = reply.send(Err(Error::NoKnownPeers));
                }
            },
            Command::Provide(cid, reply) => {
                let key = kad::RecordKey::new(&cid.as_bytes());
                match swarm.behaviour_mut().kad.start_providing(key) {
                    Ok(id) => {
                        self.pending_provide.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Dht(e.to_string())));
                    }
                }
            }
            Command::Providers(cid, reply) => {
                let key = kad::RecordKey::new(&cid.as_bytes());
                let id = swarm.behaviour_mut().kad.get_providers(key);
                self.pending_providers.insert(id, (HashSet::new(), reply));
            }
            Command::FindPeer(peer, reply) => {
                if swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(true));
                    return;
                }
                let id = swarm.behaviour_mut().kad.get_closest_peers(peer);
                self.pending_find.insert(id, (peer, reply));
            }
            Command::Chunk(peer, request, reply) => {
                let id = swarm.behaviour_mut().chunk.send_request(&peer, request);
                self.pending_chunk.insert(id, reply);
            }
            Command::Task(peer, request, reply) => {
                let id = swarm.behaviour_mut().task.send_request(&peer, request);
                self.pending_task.insert(id, reply);
            }
            Command::RespondChunk(channel, response) => {
                // Fails only if the requester went away; nothing to do then.
                let _ = swarm.behaviour_mut().chunk.send_response(channel, response);
            }
            Command::RespondTask(channel, response) => {
                let _ = swarm.behaviour_mut().task.send_response(channel, response);
            }
            Command::Ledger(peer, request, reply) => {
                let id = swarm.behaviour_mut().ledger.send_request(&peer, request);
                self.pending_ledger.insert(id, reply);
            }
            Command::RespondLedger(channel, response) => {
                let _ = swarm
                    .behaviour_mut()
                    .ledger
                    .send_response(channel, response);
            }
            Command::Block(peer, block, reply) => {
                let list = &mut swarm.behaviour_mut().blocked;
                if block {
                    list.block_peer(peer);
                    // Blocking refuses new connections; close the open ones.
                    let _ = swarm.disconnect_peer_id(peer);
                } else {
                    list.unblock_peer(peer);
                }
                let _ = reply.send(Ok(()));
            }
            Command::Subscribe(topic, reply) => {
                let result = swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&gossipsub::IdentTopic::new(topic))
                    .map(|_| ())
                    .map_err(|e| Error::Gossip(e.to_string()));
                let _ = reply.send(result);
            }
            Command::Publish(topic, data, reply) => {
                let result = swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(gossipsub::IdentTopic::new(topic), data)
                    .map(|_| ())
                    .map_err(|e| Error::Gossip(e.to_string()));
                let _ = reply.send(result);
            }
            Command::Judge(id, verdict) => {
                let acceptance = match verdict {
                    Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                    Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                    Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                };
                let _ = swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id.message, &id.via, acceptance);
            }
            Command::Peers(reply) => {
                let mut peers: Vec<PeerInfo> = self
                    .peers
                    .iter()
                    .map(|(id, state)| PeerInfo {
                        peer_id: id.to_string(),
                        addresses: state.addresses.iter().map(|a| a.to_string()).collect(),
                        agent: state.agent.clone(),
                        rtt_us: state.rtt.map(|d| d.as_micros() as u64),
                    })
                    .collect();
                peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
                let _ = reply.send(Ok(peers));
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    async fn deliver(&mut self, inbound: Inbound) {
        // The node drains this channel without waiting on the overlay, so
        // awaiting here only slows a peer that floods us.
        if self.inbound.send(inbound).await.is_err() {
            debug!("inbound receiver dropped");
        }
    }

    /// Publishes the connected peers and listen addresses to the view.
    fn update_view(&self) {
        let peers = self.swarm.connected_peers().count();
        self.view
            .peers
            .store(peers, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut listen) = self.view.listen.lock() {
            *listen = self.swarm.listeners().cloned().collect();
        }
    }

    async fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                info!(%address, "listening");
                self.update_view();
                if let Some(reply) = self.pending_listen.remove(&listener_id) {
                    let _ = reply.send(Ok(address));
                }
            }
            SwarmEvent::ExpiredListenAddr { .. } => self.update_view(),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                self.update_view();
                if let Some(reply) = self.pending_listen.remove(&listener_id) {
                    let _ = reply.send(Err(Error::Listen {
                        addr: String::new(),
                        reason: format!("{reason:?}"),
                    }));
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                let state = self.peers.entry(peer_id).or_default();
                state.addresses.push(endpoint.get_remote_address().clone());
                self.update_view();
                if let Some(replies) = self.pending_dial.remove(&peer_id) {
                    for reply in replies {
                        let _ = reply.send(Ok(peer_id));
                    }
                }
                if num_established.get() == 1 {
                    debug!(%peer_id, "connected");
                    self.deliver(Inbound::Connected(peer_id)).await;
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    debug!(%peer_id, "disconnected");
                    self.peers.remove(&peer_id);
                    self.update_view();
                    self.deliver(Inbound::Disconnected(peer_id)).await;
                } else if let Some(state) = self.peers.get_mut(&peer_id) {
                    let gone = endpoint.get_remote_address();
                    state.addresses.retain(|a| a != gone);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } => {
                if let Some(replies) = self.pending_dial.remove(&peer_id) {
                    let reason = match &error {
                        DialError::Transport(errors) => errors
                            .iter()
                            .map(|(a, e)| format!("{a}: {e}"))
                            .collect::<Vec<_>>()
                            .join("; "),
                        other => other.to_string(),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(Error::Dial {
                            addr: peer_id.to_string(),
                            reason: reason.clone(),
                        }));
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event).await,
            _ => {}
        }
    }

    async fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocol_version != crate::behaviour::PROTOCOL_VERSION {
                    warn!(%peer_id, version = %info.protocol_version, "peer speaks another protocol version");
                }
                let kad = &mut self.swarm.behaviour_mut().kad;
                for addr in info.listen_addrs {
                    kad.add_address(&peer_id, addr);
                }
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.agent = Some(info.agent_version);
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    debug!(%peer, %addr, "found by mDNS");
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr.with(Protocol::P2p(peer)));
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            }) => self.on_query(id, result, step.last),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                propagation_source,
                message_id,
            }) => {
                self.deliver(Inbound::Gossip {
                    source: message.source,
                    via: propagation_source,
                    topic: message.topic.into_string(),
                    data: message.data,
                    id: GossipId {
                        message: message_id,
                        via: propagation_source,
                    },
                })
                .await;
            }
            BehaviourEvent::Chunk(event) => {
                if let Some((peer, request, channel)) =
                    answer(event, &mut self.pending_chunk, "chunk")
                {
                    self.deliver(Inbound::Chunk {
                        peer,
                        request,
                        channel,
                    })
                    .await;
                }
            }
            BehaviourEvent::Task(event) => {
                if let Some((peer, request, channel)) =
                    answer(event, &mut self.pending_task, "task")
                {
                    self.deliver(Inbound::Task {
                        peer,
                        request,
                        channel,
                    })
                    .await;
                }
            }
            BehaviourEvent::Ledger(event) => {
                if let Some((peer, request, channel)) =
                    answer(event, &mut self.pending_ledger, "ledger")
                {
                    self.deliver(Inbound::Ledger {
                        peer,
                        request,
                        channel,
                    })
                    .await;
                }
            }
            _ => {}
        }
    }

    fn on_query(&mut self, id: kad::QueryId, result: kad::QueryResult, last: bool) {
        match result {
            kad::QueryResult::Bootstrap(result) if last || result.is_err() => {
                if let Some(reply) = self.pending_bootstrap.remove(&id) {
                    let _ = reply.send(result.map(|_| ()).map_err(|e| Error::Dht(e.to_string())));
                }
            }
            kad::QueryResult::StartProviding(result) => {
                if let Some(reply) = self.pending_provide.remove(&id) {
                    let _ = reply.send(result.map(|_| ()).map_err(|e| Error::Dht(e.to_string())));
                }
            }
            kad::QueryResult::GetClosestPeers(result) => {
                if let Some((target, reply)) = self.pending_find.remove(&id) {
                    let found = match &result {
                        Ok(ok) => ok.peers.iter().any(|p| p.peer_id == target),
                        Err(_) => false,
                    };
                    let _ = reply.send(Ok(found || self.swarm.is_connected(&target)));
                }
            }
            kad::QueryResult::GetProviders(result) => {
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = &result
                    && let Some((found, _)) = self.pending_providers.get_mut(&id)
                {
                    found.extend(providers.iter().copied());
                }
                if (last || result.is_err())
                    && let Some((found, reply)) = self.pending_providers.remove(&id)
                {
                    let _ = reply.send(Ok(found));
                }
            }
            _ => {}
        }
    }
}
