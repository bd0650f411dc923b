//! `Links`: which connections a peer has, in the order they came up, to tell when a
//! member's node came back on a new connection while its old one still looked open.
//!
//! Gossipsub sends this node's subscriptions on a peer's *first* connection only (and
//! shares one send queue between all of them). When a member's machine loses power, or
//! its network, nothing closes its connection on this side; its node comes back and
//! connects again, and that connection is not the first. The new node never hears this
//! node's subscriptions: it does not graft this node into its mesh (it drops our GRAFT
//! as for a topic we never announced) and does not publish to it, for as long as the new
//! connection lasts. Once the old connection is gone (a ping without answer, a reset)
//! [`Links::closed`] says so, and the node renews its link to the member: it closes what
//! is left and dials again, so the next connection is a first one for both sides.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

/// A connection that came up this long after the one before it is not a simultaneous
/// dial of the same pair of nodes (those come up within a handshake of each other) but
/// a peer that came back.
pub const REPLACED_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Link {
    id: ConnectionId,
    since: Instant,
    /// Gossip runs on it (a member's connection; `MembersOnly`).
    gossip: bool,
    /// Over a relay: a direct connection that comes up beside it is the same node's
    /// (DCUtR), and the relayed one closing is no sign of a restart.
    relayed: bool,
}

/// Every open connection, per peer, oldest first. Bounded by the swarm's connection
/// limits: an entry lives exactly as long as its connection.
#[derive(Debug, Default)]
pub struct Links {
    peers: HashMap<PeerId, Vec<Link>>,
}

impl Links {
    pub fn established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        now: Instant,
        gossip: bool,
        relayed: bool,
    ) {
        self.peers.entry(peer).or_default().push(Link {
            id,
            since: now,
            gossip,
            relayed,
        });
    }

    /// Forgets a closed connection. True if it was the peer's first gossip connection
    /// (the one our subscriptions went out on), not relayed, and a gossip connection
    /// that came up at least `REPLACED_AFTER` later remains: that one may be a restarted
    /// node that never heard our subscriptions.
    pub fn closed(&mut self, peer: PeerId, id: ConnectionId) -> bool {
        let Some(links) = self.peers.get_mut(&peer) else {
            return false;
        };
        let Some(at) = links.iter().position(|l| l.id == id) else {
            return false;
        };
        let gone = links.remove(at);
        let first_gossip = gone.gossip && !links[..at].iter().any(|l| l.gossip);
        let replaced = first_gossip
            && !gone.relayed
            && links.iter().any(|l| {
                l.gossip && l.since.saturating_duration_since(gone.since) >= REPLACED_AFTER
            });
        if links.is_empty() {
            self.peers.remove(&peer);
        }
        replaced
    }

    pub fn len(&self) -> usize {
        self.peers.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn a_later_connection_outliving_the_first_is_a_replacement() {
        let (mut links, p, t) = (Links::default(), peer(), Instant::now());
        let (old, new) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        links.established(p, old, t, true, false);
        links.established(p, new, t + Duration::from_secs(30), true, false);
        assert!(links.closed(p, old));
        assert_eq!(links.len(), 1);
        // The last one closing leaves nothing behind.
        assert!(!links.closed(p, new));
        assert!(links.is_empty());
    }

    #[test]
    fn simultaneous_dials_relays_later_closes_and_non_members_are_no_replacement() {
        let t = Instant::now();
        let later = t + Duration::from_secs(30);
        let ids: Vec<ConnectionId> = (0..3).map(ConnectionId::new_unchecked).collect();

        // Two connections within a handshake: the first closing is no sign.
        let (mut links, p) = (Links::default(), peer());
        links.established(p, ids[0], t, true, false);
        links.established(p, ids[1], t + Duration::from_millis(20), true, false);
        assert!(!links.closed(p, ids[0]));

        // A relayed connection replaced by a direct one (DCUtR).
        let (mut links, p) = (Links::default(), peer());
        links.established(p, ids[0], t, true, true);
        links.established(p, ids[1], later, true, false);
        assert!(!links.closed(p, ids[0]));

        // The later connection closing: the first, which heard our subscriptions, stays.
        let (mut links, p) = (Links::default(), peer());
        links.established(p, ids[0], t, true, false);
        links.established(p, ids[1], later, true, false);
        assert!(!links.closed(p, ids[1]));

        // A connection from before the peer was a member carried no gossip: the later
        // one was gossip's first.
        let (mut links, p) = (Links::default(), peer());
        links.established(p, ids[0], t, false, false);
        links.established(p, ids[1], later, true, false);
        assert!(!links.closed(p, ids[0]));

        // The gossip connection closing while only a non-gossip one is left.
        let (mut links, p) = (Links::default(), peer());
        links.established(p, ids[0], t, true, false);
        links.established(p, ids[1], later, false, false);
        assert!(!links.closed(p, ids[0]));

        // Unknown peers and connections change nothing.
        assert!(!links.closed(peer(), ids[2]));
        assert!(!links.closed(p, ids[2]));
    }
}
