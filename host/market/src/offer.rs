//! Offers: what a worker says it sells, and the book a submitter keeps of
//! them. The node checks an offer's signature before it gets here; the
//! book keeps the newest offer per worker until it expires.

use std::collections::HashMap;
use std::hash::Hash;

/// The terms of one worker, as its signed offer states them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// Credits per million fuel; 0 runs tasks unpaid.
    pub price: u64,
    /// Slots free when the offer was made.
    pub free_slots: u32,
    /// Slots in all.
    pub slots: u32,
    /// Most fuel a task may ask for.
    pub max_fuel: u64,
    /// Most memory a task may ask for, in bytes.
    pub max_memory: u64,
    /// Busy and queued work per slot, in thousandths (1000: every slot
    /// busy; above: tasks wait for slots).
    pub load_permille: u32,
    /// Credits it bonds per paid task at most.
    pub collateral: u64,
    /// Unix milliseconds when it was made: a newer offer replaces an older.
    pub issued_ms: u64,
    /// Unix milliseconds after which it is void.
    pub expires_ms: u64,
    /// It finishes what it runs and takes nothing new.
    pub draining: bool,
}

impl Offer {
    /// Whether the offer still holds at `now_ms`.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms <= self.expires_ms
    }
}

/// What [`OfferBook::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// The first offer heard from this worker.
    Added,
    /// It replaced an older one.
    Replaced,
    /// Not newer than the one held: ignored.
    Stale,
    /// Already expired: ignored.
    Expired,
    /// The book is full of fresh offers from others: ignored.
    Full,
}

/// The newest fresh offer of each worker, with whatever the node keeps
/// beside it (`T`: its key, the offer as it came).
#[derive(Clone, Debug)]
pub struct OfferBook<P, T> {
    offers: HashMap<P, (Offer, T)>,
    cap: usize,
}

impl<P: Eq + Hash + Clone, T> OfferBook<P, T> {
    /// A book of at most `cap` workers.
    pub fn new(cap: usize) -> Self {
        Self {
            offers: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Files `offer` from `peer`: kept if it is fresh at `now_ms` and newer
    /// than the one held. Past the cap, expired offers are dropped first;
    /// if every one is fresh, a new worker waits for room (those heard
    /// already keep being refreshed).
    pub fn insert(&mut self, peer: P, offer: Offer, data: T, now_ms: u64) -> Insert {
        if !offer.is_fresh(now_ms) {
            return Insert::Expired;
        }
        if let Some((held, _)) = self.offers.get(&peer) {
            if held.issued_ms >= offer.issued_ms {
                return Insert::Stale;
            }
            self.offers.insert(peer, (offer, data));
            return Insert::Replaced;
        }
        if self.offers.len() >= self.cap {
            self.prune(now_ms);
            if self.offers.len() >= self.cap {
                return Insert::Full;
            }
        }
        self.offers.insert(peer, (offer, data));
        Insert::Added
    }

    /// `peer`'s offer, if it is fresh at `now_ms`.
    pub fn get(&self, peer: &P, now_ms: u64) -> Option<&(Offer, T)> {
        self.offers.get(peer).filter(|(o, _)| o.is_fresh(now_ms))
    }

    /// Every offer fresh at `now_ms`.
    pub fn fresh(&self, now_ms: u64) -> impl Iterator<Item = (&P, &Offer, &T)> {
        self.offers
            .iter()
            .filter(move |(_, (o, _))| o.is_fresh(now_ms))
            .map(|(p, (o, t))| (p, o, t))
    }

    /// Forgets `peer`'s offer (it disconnected).
    pub fn remove(&mut self, peer: &P) {
        self.offers.remove(peer);
    }

    /// Drops offers expired at `now_ms`; returns how many.
    pub fn prune(&mut self, now_ms: u64) -> usize {
        let before = self.offers.len();
        self.offers.retain(|_, (o, _)| o.is_fresh(now_ms));
        before - self.offers.len()
    }

    /// Offers held, fresh or not.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether no offer is held.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(issued: u64, expires: u64) -> Offer {
        Offer {
            price: 1,
            slots: 1,
            free_slots: 1,
            issued_ms: issued,
            expires_ms: expires,
            ..Offer::default()
        }
    }

    #[test]
    fn newer_replaces_older_and_expired_ones_are_dropped() {
        let mut book = OfferBook::new(2);
        assert_eq!(book.insert("a", offer(10, 100), (), 20), Insert::Added);
        assert_eq!(book.insert("a", offer(10, 200), (), 20), Insert::Stale);
        assert_eq!(book.insert("a", offer(5, 200), (), 20), Insert::Stale);
        assert_eq!(book.insert("a", offer(11, 200), (), 20), Insert::Replaced);
        assert_eq!(book.get(&"a", 20).map(|(o, _)| o.expires_ms), Some(200));
        assert_eq!(book.insert("b", offer(10, 15), (), 20), Insert::Expired);
        assert_eq!(book.insert("b", offer(10, 50), (), 20), Insert::Added);
        // Full of fresh offers: a third worker waits.
        assert_eq!(book.insert("c", offer(10, 300), (), 20), Insert::Full);
        // Once b's expires, c takes its room.
        assert_eq!(book.insert("c", offer(10, 300), (), 60), Insert::Added);
        assert!(book.get(&"b", 60).is_none());
        assert_eq!(book.fresh(250).count(), 1, "only c's is fresh at 250");
        book.remove(&"c");
        assert_eq!(book.fresh(60).count(), 1);
    }
}
