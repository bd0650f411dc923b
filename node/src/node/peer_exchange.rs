//! Peer exchange's bookkeeping: which connected members were asked for their peers (once
//! per connection spell), the asks outstanding by request id, and the asks that went
//! down with a connection that may be on its way out while a newer one stays. The event
//! loop owns the swarm and sends the asks (`peers.rs`: `ask_peers`); this struct owns
//! only what it remembers about them.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::ConnectionId;

#[derive(Debug, Default)]
pub(super) struct PeerAsks {
    /// Connected members asked for their peers (once per connection spell).
    asked: HashSet<PeerId>,
    /// The outstanding asks by request id.
    requests: HashMap<OutboundRequestId, PeerId>,
    /// Peers whose ask went down with a connection that may be on its way out while a
    /// newer one stays (a restarted member back before its old link is seen closing):
    /// asked again on the newer one when that connection is seen closed.
    lost: HashMap<PeerId, ConnectionId>,
}

impl PeerAsks {
    /// Whether `peer` was asked in this connection spell.
    pub(super) fn was_asked(&self, peer: &PeerId) -> bool {
        self.asked.contains(peer)
    }

    /// Notes the ask `id` sent to `peer`.
    pub(super) fn sent(&mut self, peer: PeerId, id: OutboundRequestId) {
        self.asked.insert(peer);
        self.requests.insert(id, peer);
    }

    /// Whether `id` is one of our asks; it is outstanding no more.
    pub(super) fn answered(&mut self, id: &OutboundRequestId) -> bool {
        self.requests.remove(id).is_some()
    }

    /// Whether another ask to `peer` is still on its way.
    pub(super) fn is_outstanding(&self, peer: &PeerId) -> bool {
        self.requests.values().any(|p| p == peer)
    }

    /// `peer` may be asked again.
    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.asked.remove(peer);
    }

    /// `peer`'s ask went down with `connection`, which may be closing: ask again when it
    /// is seen closed.
    pub(super) fn lost_with(&mut self, peer: PeerId, connection: ConnectionId) {
        self.lost.insert(peer, connection);
    }

    /// Whether closing `connection` of `peer` (another connection remains) calls for a
    /// new ask on the one that remains.
    pub(super) fn ask_again_after(&self, peer: &PeerId, connection: &ConnectionId) -> bool {
        self.asked.contains(peer) || self.lost.get(peer) == Some(connection)
    }

    /// `peer`'s connection spell ended (or a new ask replaces the old): nothing is kept.
    pub(super) fn reset(&mut self, peer: &PeerId) {
        self.asked.remove(peer);
        self.lost.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ask is answered once; a peer is asked again only after it is forgotten or its
    /// spell reset; a lost ask asks again only when its own connection closes.
    #[test]
    fn asks_are_remembered_per_spell_and_a_lost_one_waits_for_its_connection() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut asks = PeerAsks::default();
        assert!(!asks.was_asked(&peer));
        // Request ids come only from a behaviour; the lost-connection path needs none.
        asks.forget(&peer);
        asks.lost_with(peer, ConnectionId::new_unchecked(1));
        assert!(asks.ask_again_after(&peer, &ConnectionId::new_unchecked(1)));
        assert!(!asks.ask_again_after(&peer, &ConnectionId::new_unchecked(2)));
        assert!(!asks.ask_again_after(&other, &ConnectionId::new_unchecked(1)));
        assert!(!asks.is_outstanding(&peer));
        asks.reset(&peer);
        assert!(!asks.ask_again_after(&peer, &ConnectionId::new_unchecked(1)));
    }
}
