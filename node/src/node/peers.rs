//! Peers and links: who is a member, dialing remembered members, renewing a member's
//! replaced link, gossip verdicts and the ignore budget, peer exchange (`ask_peers`,
//! `peer_book`, `on_peers_response`) and penalties.

use super::*;

impl EventLoop {
    /// Dials remembered members (current ones, most recently seen first, at most
    /// `MAX_START_DIALS`) and the bootstrap addresses.
    pub(super) fn dial_known(&mut self) {
        let mut targets: Vec<(Option<PeerId>, Vec<Multiaddr>)> = Vec::new();
        if let Ok(peers) = self.store.peers() {
            let mut known: Vec<(u64, PeerId, Vec<Multiaddr>)> = Vec::new();
            for (peer, addrs) in peers {
                let Ok(peer) = PeerId::from_bytes(&peer) else {
                    continue;
                };
                // Before a hood (a joiner) every remembered peer; then members only.
                if self.engine.is_some() && !self.is_member(&peer) {
                    continue;
                }
                let seen = mesh::member_id(&peer)
                    .and_then(|m| self.last_seen.get(&m).copied())
                    .unwrap_or(0);
                let addrs = addrs.iter().filter_map(|a| a.parse().ok()).collect();
                known.push((seen, peer, addrs));
            }
            targets.extend(
                start_dials(known, &mut crate::rng())
                    .into_iter()
                    .map(|(peer, addrs)| (Some(peer), addrs)),
            );
        }
        for addr in &self.bootstrap {
            let peer = addr.iter().find_map(|p| match p {
                Protocol::P2p(peer) => Some(peer),
                _ => None,
            });
            targets.push((peer, vec![addr.clone()]));
        }
        for (peer, addrs) in targets {
            let opts = match peer {
                Some(peer) if peer == *self.swarm.local_peer_id() => continue,
                Some(peer) => DialOpts::peer_id(peer).addresses(addrs).build(),
                None => match addrs.into_iter().next() {
                    Some(addr) => DialOpts::unknown_peer_id().address(addr).build(),
                    None => continue,
                },
            };
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(error = %e, "dial failed");
            }
        }
    }

    pub(super) fn is_member(&self, peer: &PeerId) -> bool {
        match (&self.engine, mesh::member_id(peer)) {
            (Some(engine), Some(member)) => engine.roster().is_member(&member),
            _ => false,
        }
    }

    /// Keeps `member`'s last-seen time in the store (a member, connected or just gone),
    /// for the dial order of the next start.
    pub(super) fn remember_seen(&mut self, member: MemberId) {
        if let Some(at) = self.last_seen.get(&member).copied()
            && let Err(e) = self.store.remember_seen(&member, at)
        {
            tracing::warn!(error = %e, "cannot keep a member's last-seen time");
        }
    }

    /// Notes that `member` was active at `at` (capped at now), if it is a member.
    pub(super) fn saw(&mut self, member: MemberId, at: u64) {
        if let Some(engine) = &self.engine
            && engine.roster().is_member(&member)
        {
            let at = at.min(crate::now());
            let seen = self.last_seen.entry(member).or_default();
            *seen = (*seen).max(at);
        }
    }

    /// Addresses to put in an invite: routable ones first, loopback only if there is
    /// nothing else; as many as fit.
    pub(super) fn bootstrap_addresses(&self) -> Vec<String> {
        let mut addrs: Vec<&Multiaddr> = self.swarm.external_addresses().collect();
        addrs.extend(self.listen.iter());
        let loopback = |a: &Multiaddr| {
            a.iter().any(|p| {
                matches!(p, Protocol::Ip4(ip) if ip.is_loopback())
                    || matches!(p, Protocol::Ip6(ip) if ip.is_loopback())
            })
        };
        addrs.sort_by_key(|a| loopback(a));
        let mut out: Vec<String> = Vec::new();
        for a in addrs {
            let s = a.to_string();
            if s.len() <= invite::MAX_ADDR_BYTES
                && !out.contains(&s)
                && out.len() < invite::MAX_BOOTSTRAP_ADDRS
            {
                out.push(s);
            }
        }
        out
    }

    /// A peer's first connection closed while a later one, perhaps its restarted node's,
    /// remains: gossipsub never sent our subscriptions on that one (`links`). For a
    /// member, closes the rest and dials it once nothing is left, so the next connection
    /// is a first one on both sides; true if it did. Left as it is: non-members (no
    /// gossip), peers the gate refuses (penalized, removed, blocked), a member renewed in
    /// the last `RENEW_EVERY` (each renewal costs a handshake and dials addresses the
    /// member gave), and one we know no address of (it can dial us; we could not dial
    /// it). Sync still reaches those. A member behind NAT that we cannot dial back after
    /// all is alone until its own redial, at most `REDIAL_EVERY` seconds later.
    pub(super) fn renew(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        self.renewals.expire(now);
        if !self.is_member(&peer)
            || self.swarm.behaviour().gate.refuses(&peer)
            || self.renewals.was_renewed(&peer)
        {
            return false;
        }
        let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
        if addrs.is_empty() {
            tracing::debug!(%peer, "a member's connection was replaced; no address to renew it");
            return false;
        }
        tracing::info!(%peer, "a member came back while its old connection lingered; renewing");
        self.renewals.start(peer, now, addrs);
        let _ = self.swarm.disconnect_peer_id(peer);
        true
    }

    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                // Judged before the message is taken: the operation that completes the
                // history was still taken at the checkpoint's word.
                let provisional = self
                    .engine
                    .as_ref()
                    .is_some_and(|e| e.roster().is_provisional());
                let acceptance = match self.ingest(&message.data) {
                    Ok(Ingest::New(accepted)) => {
                        tracing::debug!(item = %accepted.id, from = %propagation_source, "accepted");
                        MessageAcceptance::Accept
                    }
                    Ok(Ingest::Duplicate) | Ok(Ingest::NewOp(_)) => MessageAcceptance::Ignore,
                    Ok(Ingest::Ignored(reason)) => {
                        if self.over_ignore_budget(propagation_source) {
                            tracing::debug!(from = %propagation_source, %reason, "ignored, over the budget: rejected");
                            MessageAcceptance::Reject
                        } else {
                            tracing::debug!(from = %propagation_source, %reason, "ignored");
                            MessageAcceptance::Ignore
                        }
                    }
                    Ok(Ingest::Rejected(reason)) => {
                        tracing::info!(from = %propagation_source, %reason, "rejected");
                        MessageAcceptance::Reject
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not store a message");
                        MessageAcceptance::Ignore
                    }
                };
                // A node that joined from a checkpoint judges by its admitter's word until
                // the history is checked: it neither vouches for what it takes (no
                // forwarding: a false checkpoint's "member" would get this node blamed by
                // its neighbors) nor blames a peer for what it refuses.
                let acceptance = if provisional {
                    MessageAcceptance::Ignore
                } else {
                    acceptance
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .inner_mut()
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.topic.hash() => {
                tracing::debug!(peer = %peer_id, "peer joined the hood topic");
                self.flush_outbox();
            }
            _ => {}
        }
    }

    /// Counts one ignored message relayed by `peer`; whether it is past the budget.
    pub(super) fn over_ignore_budget(&mut self, peer: PeerId) -> bool {
        let count = self.ignored.count(peer, Instant::now(), IGNORE_WINDOW);
        if count == IGNORE_BUDGET + 1 {
            tracing::info!(%peer, "peer relays too many messages this node cannot read; they now count as invalid");
        }
        count > IGNORE_BUDGET
    }

    /// Peer exchange: asks a member, once per connection spell, where it reaches the
    /// other members, so this node can find the hood again after a restart even if the
    /// members it knew have moved (threat model D15).
    pub(super) fn ask_peers(&mut self, peer: PeerId) {
        if self.engine.is_none()
            || self.peer_asks.was_asked(&peer)
            || !self.swarm.behaviour().sync.serves(&peer)
        {
            return;
        }
        let id = self.send_sync(&peer, &sync::Request::Peers);
        self.peer_asks.sent(peer, id);
    }

    /// What this node tells a member asking for peers: the members it is connected to
    /// now, at the addresses it reached them at or they listen on (first-hand, never
    /// hearsay passed on), and only addresses as private as the asker's own connection
    /// (a member connected over the internet learns no LAN or loopback address). Never
    /// the asker, never a non-member.
    pub(super) fn peer_book(&self, asker: PeerId) -> Vec<sync::PeerAddrs> {
        let reach = self
            .remote
            .get(&asker)
            .map_or(mesh::Scope::Public, mesh::scope);
        let mut book: Vec<sync::PeerAddrs> = Vec::new();
        for (peer, addrs) in &self.addresses {
            if book.len() >= sync::MAX_PEERS {
                break;
            }
            if *peer == asker || !self.is_member(peer) || !self.swarm.is_connected(peer) {
                continue;
            }
            let Some(member) = mesh::member_id(peer) else {
                continue;
            };
            let addrs: Vec<String> = addrs
                .iter()
                .filter(|a| mesh::dialable(a) && mesh::scope(a) >= reach)
                .map(|a| a.to_string())
                .filter(|a| a.len() <= sync::MAX_ADDR_LEN)
                .take(sync::MAX_PEER_ADDRS)
                .collect();
            if !addrs.is_empty() {
                book.push(sync::PeerAddrs {
                    member: member.0,
                    addrs,
                });
            }
        }
        book
    }

    /// Remembers the members a peer told us about, except those this node is connected
    /// to now (it knows where they are, and its own connections and identify overwrite
    /// their entries). Heard addresses go in front of older ones (at most
    /// `MAX_KNOWN_ADDRS` a peer), so a member that moved is found at its new one; what a
    /// lying member can do with that is threat model D24.
    pub(super) fn on_peers_response(&mut self, from: PeerId, bytes: &[u8]) {
        let peers = match sync::Response::decode(bytes) {
            Ok(sync::Response::Peers(peers)) => peers,
            Ok(sync::Response::Refused(why)) => {
                tracing::debug!(peer = %from, why, "peer refused peer exchange");
                return;
            }
            Ok(_) => return self.penalize(from, "answered a peer exchange with something else"),
            Err(_) => return self.penalize(from, "malformed peer exchange answer"),
        };
        let me = *self.swarm.local_peer_id();
        let remembered: HashMap<Vec<u8>, Vec<String>> =
            self.store.peers().unwrap_or_default().into_iter().collect();
        let mut learned = 0;
        for entry in peers {
            let Some(peer) = mesh::peer_id(&MemberId(entry.member)) else {
                continue;
            };
            if peer == me
                || peer == from
                || !self.is_member(&peer)
                || self.swarm.is_connected(&peer)
            {
                continue;
            }
            let mut addrs: Vec<String> = entry
                .addrs
                .into_iter()
                .filter(|a| a.parse::<Multiaddr>().is_ok_and(|a| mesh::dialable(&a)))
                .collect();
            if addrs.is_empty() {
                continue;
            }
            let key = peer.to_bytes();
            for old in remembered.get(&key).into_iter().flatten() {
                if !addrs.contains(old) {
                    addrs.push(old.clone());
                }
            }
            addrs.truncate(MAX_KNOWN_ADDRS);
            if remembered.get(&key) == Some(&addrs) {
                continue;
            }
            match self.store.remember_peer(&key, &addrs) {
                Ok(()) => learned += 1,
                Err(e) => tracing::warn!(error = %e, "cannot remember a peer"),
            }
        }
        tracing::debug!(peer = %from, learned, "peer exchange");
    }

    /// Cuts off a peer that broke the sync protocol, and refuses it for a while.
    pub(super) fn penalize(&mut self, peer: PeerId, why: &str) {
        if self.swarm.behaviour().gate.is_penalized(&peer) {
            // Already cut off: answers still in flight on its closing connection (a sync
            // round and a peer exchange at once) do not count again.
            self.syncs.end(&peer);
            return;
        }
        tracing::warn!(%peer, why, "peer misbehaved in sync; cutting it off");
        self.syncs.stats.penalties += 1;
        self.syncs.end(&peer);
        let gate = &mut self.swarm.behaviour_mut().gate;
        gate.penalized
            .retain(|_, until| *until > std::time::Instant::now());
        gate.penalized
            .insert(peer, std::time::Instant::now() + PENALTY);
        let _ = self.swarm.disconnect_peer_id(peer);
    }
}

/// Whom start-up dials of the remembered members `(last seen, peer, addresses)`: the
/// most recently seen first, those seen at the same time (or never) in random order, at
/// most `MAX_START_DIALS`.
pub(super) fn start_dials(
    known: Vec<(u64, PeerId, Vec<Multiaddr>)>,
    rng: &mut impl rand_core::Rng,
) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let mut known: Vec<(u64, u64, PeerId, Vec<Multiaddr>)> = known
        .into_iter()
        .map(|(seen, peer, addrs)| (seen, rng.next_u64(), peer, addrs))
        .collect();
    known.sort_by_key(|k| (std::cmp::Reverse(k.0), k.1));
    known
        .into_iter()
        .take(MAX_START_DIALS)
        .map(|(_, _, peer, addrs)| (peer, addrs))
        .collect()
}
