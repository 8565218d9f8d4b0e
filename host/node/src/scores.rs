//! Peer scores: how this node answers bad gossip and protocol messages.
//! Every peer starts at 0 and loses [`PENALTY`] per forged, malformed or
//! foreign message it sends or forwards, on any topic (ledger ops, offers);
//! at [`BLOCK_SCORE`] it is disconnected and blocked. Not reputation:
//! that scores workers by the work they did (`p2pc-market`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use p2pc_net::{Client, PeerId};
use tracing::{debug, warn};

/// Score lost per bad message.
pub const PENALTY: i32 = 20;
/// A peer at or below this score is blocked.
pub const BLOCK_SCORE: i32 = -100;
/// Peers scored at most; past it the best-scored are forgotten first.
const MAX_SCORED: usize = 65_536;

/// The scores, shared by every service that reads peers' messages.
#[derive(Clone)]
pub(crate) struct PeerScores {
    scores: Arc<Mutex<HashMap<PeerId, i32>>>,
    client: Client,
}

impl PeerScores {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            scores: Arc::new(Mutex::new(HashMap::new())),
            client,
        }
    }

    /// A peer's score (0 for one never seen misbehaving).
    pub(crate) fn score(&self, peer: &PeerId) -> i32 {
        *self
            .scores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .unwrap_or(&0)
    }

    /// Lowers `peer`'s score for a bad message; blocks it at the floor.
    pub(crate) fn penalise(&self, peer: PeerId, why: &str) {
        let score = {
            let mut scores = self.scores.lock().unwrap_or_else(|e| e.into_inner());
            if scores.len() >= MAX_SCORED && !scores.contains_key(&peer) {
                let worst = scores.values().copied().min().unwrap_or(0);
                scores.retain(|_, s| *s <= worst);
            }
            let s = scores.entry(peer).or_insert(0);
            *s = s.saturating_sub(PENALTY);
            *s
        };
        debug!(%peer, score, why, "peer scored down");
        if score <= BLOCK_SCORE {
            warn!(%peer, why, "blocking peer for repeated bad messages");
            let client = self.client.clone();
            tokio::spawn(async move {
                let _ = client.block(peer).await;
            });
        }
    }
}
