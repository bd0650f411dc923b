//! Renewing a member's link (`peers.rs`: `renew`): the members whose connections are being
//! closed to be made again, with the addresses to dial once the last one is closed, and
//! when each member was last renewed (at most once a `RENEW_EVERY`). The event loop owns
//! the swarm and closes and dials; this struct owns what it remembers.

use super::*;

#[derive(Debug, Default)]
pub(super) struct Renewals {
    /// Members whose connections are being closed to be made again (a replaced
    /// connection, `links`), with the addresses to dial once the last one is closed.
    pending: HashMap<PeerId, Vec<Multiaddr>>,
    /// When each member was last renewed, for the last `RENEW_EVERY`.
    renewed: HashMap<PeerId, Instant>,
}

impl Renewals {
    /// Forgets renewals older than `RENEW_EVERY` at `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        self.renewed
            .retain(|_, at| now.duration_since(*at) < RENEW_EVERY);
    }

    /// Whether `peer` was renewed in the last `RENEW_EVERY` (as of the last `expire`).
    pub(super) fn was_renewed(&self, peer: &PeerId) -> bool {
        self.renewed.contains_key(peer)
    }

    /// `peer`'s connections are being closed at `now`; dial `addrs` once none is left.
    pub(super) fn start(&mut self, peer: PeerId, now: Instant, addrs: Vec<Multiaddr>) {
        self.renewed.insert(peer, now);
        self.pending.insert(peer, addrs);
    }

    /// `peer` connected again before its last old connection closed: no dial.
    pub(super) fn cancel(&mut self, peer: &PeerId) {
        self.pending.remove(peer);
    }

    /// `peer`'s last connection closed: the addresses to dial, if it was being renewed.
    pub(super) fn take_dial(&mut self, peer: &PeerId) -> Option<Vec<Multiaddr>> {
        self.pending.remove(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renewal dials once, is cancelled by a new connection, and blocks another
    /// renewal of the same member for `RENEW_EVERY`.
    #[test]
    fn a_member_is_renewed_once_a_period_and_dialed_once() {
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().expect("valid multiaddr");
        let start = Instant::now();
        let mut renewals = Renewals::default();
        renewals.expire(start);
        assert!(!renewals.was_renewed(&peer));
        renewals.start(peer, start, vec![addr.clone()]);
        assert!(renewals.was_renewed(&peer));
        assert_eq!(renewals.take_dial(&peer), Some(vec![addr.clone()]));
        assert_eq!(renewals.take_dial(&peer), None);
        renewals.start(peer, start, vec![addr]);
        renewals.cancel(&peer);
        assert_eq!(renewals.take_dial(&peer), None);
        renewals.expire(start + RENEW_EVERY);
        assert!(!renewals.was_renewed(&peer));
    }
}
