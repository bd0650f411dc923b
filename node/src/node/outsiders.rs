//! Connected non-members: each has `OUTSIDER_GRACE` to present a ticket, at most
//! `MAX_OUTSIDERS` are connected at once, and one that has sat idle (no join request)
//! makes room for a newcomer. The event loop owns the swarm and closes the connections;
//! this struct owns the deadlines and says whom to close.

use super::*;

#[derive(Debug, Default)]
pub(super) struct Outsiders {
    /// Connected non-members and when they must be gone.
    deadlines: HashMap<PeerId, Instant>,
    /// Those of them that sent a join request: not idle, so never evicted for another.
    joining: HashSet<PeerId>,
}

/// What to do with a non-member that just connected.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Arrival {
    /// It has its grace period.
    Welcome,
    /// It has its grace period, in the place of this idle one, to be disconnected.
    Evict(PeerId),
    /// Every place is taken by one that asked to join: disconnect the newcomer.
    Full,
}

impl Outsiders {
    /// A non-member connected at `now`: a grace period if there is room (a connection
    /// of one already here keeps its deadline), else the idlest one's place.
    pub(super) fn arrived(&mut self, peer: PeerId, now: Instant) -> Arrival {
        let mut arrival = Arrival::Welcome;
        if !self.deadlines.contains_key(&peer) && self.deadlines.len() >= MAX_OUTSIDERS {
            match idlest_outsider(&self.deadlines, &self.joining, now) {
                Some(idle) => {
                    self.deadlines.remove(&idle);
                    arrival = Arrival::Evict(idle);
                }
                None => return Arrival::Full,
            }
        }
        self.deadlines.entry(peer).or_insert(now + OUTSIDER_GRACE);
        arrival
    }

    /// `peer` sent a join request: if it is an outsider, it is not idle.
    pub(super) fn asked_to_join(&mut self, peer: PeerId) {
        if self.deadlines.contains_key(&peer) {
            self.joining.insert(peer);
        }
    }

    /// The outsiders whose grace ran out by `now`; they are forgotten.
    pub(super) fn due(&mut self, now: Instant) -> Vec<PeerId> {
        take_due(&mut self.deadlines, now)
    }

    /// `peer` is no longer waited for (it became a member, or its connection is closed
    /// for another reason).
    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.deadlines.remove(peer);
    }

    /// `peer`'s last connection closed.
    pub(super) fn disconnected(&mut self, peer: &PeerId) {
        self.deadlines.remove(peer);
        self.joining.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past `MAX_OUTSIDERS`, a newcomer takes an idle outsider's place, never the place
    /// of one that asked to join; with every place held by joiners it is refused.
    #[test]
    fn a_newcomer_evicts_only_an_idle_outsider() {
        let mut outsiders = Outsiders::default();
        let start = Instant::now();
        let first = PeerId::random();
        assert_eq!(outsiders.arrived(first, start), Arrival::Welcome);
        outsiders.asked_to_join(first);
        let mut idle = Vec::new();
        for _ in 1..MAX_OUTSIDERS {
            let peer = PeerId::random();
            assert_eq!(outsiders.arrived(peer, start), Arrival::Welcome);
            idle.push(peer);
        }
        let later = start + OUTSIDER_IDLE;
        match outsiders.arrived(PeerId::random(), later) {
            Arrival::Evict(peer) => assert!(idle.contains(&peer)),
            other => panic!("expected an eviction, got {other:?}"),
        }
        for peer in &idle {
            outsiders.asked_to_join(*peer);
        }
        // The newcomer that took a place has not asked to join, but it is not idle yet.
        assert_eq!(outsiders.arrived(PeerId::random(), later), Arrival::Full);
        assert_eq!(outsiders.due(later + OUTSIDER_GRACE).len(), MAX_OUTSIDERS);
    }
}
