//! Catch-up sync: sessions as initiator (reconcile, then fetch what we miss), answers
//! as responder (the cached sync set, the reconcile budget), and the watch on a roster
//! that starts from a checkpoint until its history has arrived.

use super::*;

impl EventLoop {
    /// Brings the network's view in line with the roster: who gets gossip, who is
    /// denied, and (with `reconnect`) renews connections to members that predate their
    /// membership, so that gossip runs on them. Only the side that learned of its own
    /// admission reconnects: the admitter must not cut the connection its welcome is
    /// still travelling on.
    /// Gives up on the checkpoint this node joined with when the history it covers
    /// stops arriving: `HISTORY_PATIENCE` without one more operation, over at least
    /// `HISTORY_SESSIONS` sync sessions. Safe whenever it happens: the roster then
    /// follows what arrived, and the rest comes through ordinary validation if it ever
    /// does.
    pub(super) fn watch_history(&mut self, now: Instant) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        if !engine.roster().is_provisional() {
            self.history_watch = None;
            return;
        }
        let missing = engine.roster().history_missing();
        let sessions = self.syncs.stats.sessions;
        match self.history_watch {
            Some((before, since, at)) if before == missing => {
                if now.duration_since(since) < HISTORY_PATIENCE || sessions < at + HISTORY_SESSIONS
                {
                    return;
                }
            }
            _ => {
                self.history_watch = Some((missing, now, sessions));
                return;
            }
        }
        self.history_watch = None;
        if let Err(e) = engine.give_up_history() {
            tracing::error!(error = %e, "cannot give up on the checkpoint");
            return;
        }
        self.after_roster_change(false);
    }

    /// The digest of what this node holds (`Engine::digest`), from the kept sync set.
    pub(super) fn digest(&mut self) -> Option<[u8; 32]> {
        let set = self.sync_set().ok()?;
        self.engine.as_ref()?.digest_of(&set).ok()
    }

    /// The sync set, read from the store only if it changed since it was last read.
    pub(super) fn sync_set(&mut self) -> Result<Arc<negentropy::NegentropyStorageVector>, String> {
        let generation = self.store.sync_generation();
        if let Some(set) = self.syncs.kept_set(generation) {
            return Ok(set);
        }
        let engine = self.engine.as_ref().ok_or("not in a hood")?;
        let set = Arc::new(engine.sync_storage().map_err(|e| e.to_string())?);
        self.syncs.keep_set(generation, set.clone());
        Ok(set)
    }

    /// Starts catch-up sync with every connected member (as many as sessions allow).
    pub(super) fn sync_all(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            self.start_sync(peer);
        }
    }

    /// Starts a session with `peer` as initiator, if it is a member we serve sync to and
    /// no session with it runs.
    pub(super) fn start_sync(&mut self, peer: PeerId) {
        if self.engine.is_none()
            || !self.syncs.may_start(&peer)
            || !self.swarm.behaviour().sync.serves(&peer)
        {
            return;
        }
        let started = self.sync_set().and_then(|set| {
            sync::Initiator::start(set.as_ref().clone()).map_err(|e| e.to_string())
        });
        let (initiator, first) = match started {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start sync");
                return;
            }
        };
        let pending = self.send_sync(&peer, &sync::Request::Reconcile(first));
        self.syncs.started(peer, initiator, pending);
    }

    pub(super) fn send_sync(
        &mut self,
        peer: &PeerId,
        request: &sync::Request,
    ) -> request_response::OutboundRequestId {
        let bytes = request.encode();
        self.syncs.stats.bytes_sent += bytes.len() as u64;
        self.swarm
            .behaviour_mut()
            .sync
            .inner_mut()
            .send_request(peer, bytes)
    }

    /// Sends the session's next request and waits for its answer only.
    pub(super) fn send_in_session(&mut self, peer: PeerId, request: &sync::Request) {
        let id = self.send_sync(&peer, request);
        self.syncs.waits_for(&peer, id);
    }

    /// Asks for the next batch of what the session needs, or ends the session.
    pub(super) fn fetch_next(&mut self, peer: PeerId) {
        if let Some(ids) = self.syncs.next_batch(&peer) {
            self.send_in_session(peer, &sync::Request::Fetch(ids));
        }
    }

    pub(super) async fn on_sync(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                self.syncs.stats.bytes_received += request.len() as u64;
                let response = self.answer_sync(peer, &request);
                let bytes = response.encode();
                self.syncs.stats.bytes_sent += bytes.len() as u64;
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .inner_mut()
                    .send_response(channel, bytes);
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        response,
                        request_id,
                    },
                ..
            } => {
                self.syncs.stats.bytes_received += response.len() as u64;
                if self.peer_asks.answered(&request_id) {
                    self.on_peers_response(peer, &response);
                } else if self.syncs.is_pending(&peer, request_id) {
                    self.on_sync_response(peer, &response).await;
                } else {
                    tracing::debug!(%peer, "stale or unsolicited sync response dropped");
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                connection_id,
                request_id,
                error,
            } if self.peer_asks.answered(&request_id) => {
                tracing::debug!(%peer, %error, "peer exchange request failed");
                match error {
                    request_response::OutboundFailure::Io(e)
                        if e.kind() == std::io::ErrorKind::InvalidData =>
                    {
                        self.penalize(peer, "peer exchange answer over the size limit");
                    }
                    // Nobody's fault: unless another ask is on its way, ask again on
                    // the peer's next connection, or at once if the request went down
                    // with a connection the peer has already replaced.
                    _ if self.peer_asks.is_outstanding(&peer) => {}
                    request_response::OutboundFailure::ConnectionClosed
                        if self.swarm.is_connected(&peer) =>
                    {
                        self.peer_asks.forget(&peer);
                        self.ask_peers(peer);
                    }
                    // The ask may have gone down with a connection that is closing
                    // (its failure can come before the close is seen, and as an I/O
                    // error): ask again on another if that connection closes.
                    _ => {
                        self.peer_asks.forget(&peer);
                        if self.swarm.is_connected(&peer) {
                            self.peer_asks.lost_with(peer, connection_id);
                        }
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            } if self.syncs.is_pending(&peer, request_id) => {
                tracing::debug!(%peer, %error, "sync request failed");
                match error {
                    // Our codec's verdict on an answer over the size limit.
                    request_response::OutboundFailure::Io(e)
                        if e.kind() == std::io::ErrorKind::InvalidData =>
                    {
                        self.penalize(peer, "sync response over the size limit");
                    }
                    // A dropped link or a timeout is nobody's fault. A peer that
                    // restarted can be back on a new connection before the request on
                    // its old one fails: try again on the next tick rather than wait
                    // for the next round.
                    _ => self.syncs.failed(peer, Instant::now()),
                }
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a stale sync request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "sync request from a peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// The responder's side: stateless per message.
    pub(super) fn answer_sync(&mut self, peer: PeerId, request: &[u8]) -> sync::Response {
        if self.engine.is_none() {
            return sync::Response::refused("not in a hood");
        }
        match sync::Request::decode(request) {
            Ok(sync::Request::Reconcile(query)) => {
                if self.syncs.over_reconcile_budget(peer) {
                    return sync::Response::refused("too many reconcile requests; slow down");
                }
                let storage = match self.sync_set() {
                    Ok(s) => s,
                    Err(e) => return sync::Response::refused(&e),
                };
                match sync::respond(&storage, &query) {
                    Ok(reply) => sync::Response::Reconcile(reply),
                    Err(e) => {
                        self.penalize(peer, "malformed reconcile message");
                        sync::Response::refused(&e.to_string())
                    }
                }
            }
            Ok(sync::Request::Fetch(ids)) => {
                let now = std::time::Instant::now();
                match self.meter.check(peer, now) {
                    crate::mesh::meter::Verdict::Serve => {}
                    crate::mesh::meter::Verdict::SlowDown => {
                        return sync::Response::refused(
                            "over this node's byte budget for your fetches; slow down",
                        );
                    }
                    crate::mesh::meter::Verdict::Penalize => {
                        self.penalize(peer, "kept fetching over its byte budget");
                        return sync::Response::refused("over the byte budget");
                    }
                }
                match self.engine.as_ref().map(|e| e.fetch(&ids)) {
                    Some(Ok(elements)) => {
                        let bytes = elements.iter().map(|e| e.len() + 16).sum();
                        self.meter.spent(peer, bytes, now);
                        sync::Response::Items(elements)
                    }
                    Some(Err(e)) => sync::Response::refused(&e.to_string()),
                    None => sync::Response::refused("not in a hood"),
                }
            }
            Ok(sync::Request::Peers) => {
                if self.syncs.over_reconcile_budget(peer) {
                    return sync::Response::refused("too many sync requests; slow down");
                }
                sync::Response::Peers(self.peer_book(peer))
            }
            Err(e) => {
                self.penalize(peer, "malformed sync request");
                sync::Response::refused(&e.to_string())
            }
        }
    }

    pub(super) async fn on_sync_response(&mut self, peer: PeerId, bytes: &[u8]) {
        if self.syncs.session(&peer).is_none() {
            tracing::debug!(%peer, "unsolicited sync response dropped");
            return;
        }
        match sync::Response::decode(bytes) {
            Ok(sync::Response::Reconcile(reply)) => {
                let Some(session) = self.syncs.session(&peer) else {
                    return;
                };
                let Some(initiator) = session.initiator.as_mut() else {
                    return self.penalize(peer, "reconcile answer after reconciliation ended");
                };
                match initiator.step(&reply) {
                    Ok(Some(next)) => self.send_in_session(peer, &sync::Request::Reconcile(next)),
                    Ok(None) => {
                        let mut need = initiator.take_need();
                        session.initiator = None;
                        // What we saw and dropped on purpose (expired, retracted) stays gone.
                        need.retain(|id| !self.store.seen(&ItemId(*id)).unwrap_or(false));
                        session.need = need.into();
                        self.fetch_next(peer);
                    }
                    Err(e) => self.penalize(peer, &e.to_string()),
                }
            }
            Ok(sync::Response::Items(elements)) => {
                let Some(session) = self.syncs.session(&peer) else {
                    return;
                };
                // An operation's id is its hash; an item's is its inner item's, known once
                // the envelope is opened, so items are checked as they are ingested.
                let unasked_op = elements.iter().any(|e| {
                    matches!(e, sync::Element::Op(b)
                        if !session.requested.contains(&porchlight_proto::OpId::of(b).0))
                });
                if unasked_op || elements.len() > session.requested.len() {
                    return self.penalize(peer, "sent items that were not asked for");
                }
                let requested = session.requested.clone();
                self.syncs.stats.fetched += elements.len() as u64;
                if self.ingest_elements(elements, &requested).await {
                    return self.penalize(peer, "sent items that were not asked for");
                }
                self.fetch_next(peer);
            }
            Ok(sync::Response::Refused(why)) => {
                tracing::debug!(%peer, why, "peer refused sync");
                self.syncs.end(&peer);
            }
            Ok(sync::Response::Peers(_)) => self.penalize(peer, "peers sent unasked"),
            Err(_) => self.penalize(peer, "malformed sync response"),
        }
    }

    /// Applies fetched elements: operations first (over as many passes as make progress,
    /// so a join arrives before the operations of the member it admits), then items.
    /// Applies fetched operations, then items. Returns whether an item that was not
    /// asked for arrived (a valid item is kept all the same: it is the hood's).
    pub(super) async fn ingest_elements(
        &mut self,
        elements: Vec<sync::Element>,
        requested: &HashSet<[u8; 32]>,
    ) -> bool {
        let mut ops = Vec::new();
        let mut envelopes = Vec::new();
        for element in elements {
            match element {
                sync::Element::Op(b) => ops.push(b),
                sync::Element::Envelope(b) => envelopes.push(b),
            }
        }
        // One pass: an operation whose parents or author's join come later in the batch
        // waits in the engine and is applied when they are (`Engine::ingest_op`).
        let mut applied_ops = false;
        if let Some(engine) = &mut self.engine {
            for op in ops {
                match engine.ingest_op(&op, crate::now()) {
                    Ok(Ingest::NewOp(_)) => applied_ops = true,
                    Ok(Ingest::Rejected(reason)) => {
                        tracing::info!(%reason, "synced operation rejected")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not store a synced operation"),
                }
            }
        }
        if applied_ops {
            self.after_roster_change(false);
        }
        let mut unasked = false;
        for envelope in envelopes {
            match self.ingest(&envelope) {
                Ok(Ingest::New(a)) => unasked |= !requested.contains(&a.id.0),
                Ok(Ingest::Rejected(reason)) => tracing::debug!(%reason, "synced item rejected"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not store a synced item"),
            }
        }
        // Nothing here was acknowledged to anyone: flush off the event loop.
        self.syncs.flush_after_batch(&self.store);
        unasked
    }
}
