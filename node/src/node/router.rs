//! The event loop's run: it owns the swarm and the engine, waits on the swarm, the
//! command channel and the tick, and hands each swarm event to the part of the node that
//! owns it (`mesh`, `catch_up`, `clip_requests`, `join`) and each command to `commands`.
//! What changes after any roster change (`after_roster_change`) and the outbox are here.

use super::*;

impl EventLoop {
    pub(super) async fn wait_for_listeners(&mut self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.listen.len() < count {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(event) => self.on_swarm_event(event).await,
                Err(_) => break,
            }
        }
    }

    pub(super) fn subscribe(&mut self) {
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .inner_mut()
            .subscribe(&self.topic)
        {
            tracing::error!(error = %e, "cannot subscribe to the hood topic");
        }
    }

    pub(super) async fn run(mut self) -> Result<(), NodeError> {
        let mut tick = tokio::time::interval(TICK);
        let mut ticks: u32 = 0;
        let mut failed = None;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = self.commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => self.on_command(command).await,
                },
                _ = tick.tick() => {
                    ticks = ticks.wrapping_add(1);
                    self.on_tick(ticks);
                }
            }
            if std::mem::take(&mut self.keys_due) {
                self.repair_keys().await;
            }
            // A broken store (a full disk) fails every later write: stop, and say so,
            // rather than run on losing everything (a service manager restarts us, and a
            // reopened store works again once there is room).
            if let Some(why) = self.store.failure() {
                tracing::error!(error = %why, "the store failed; stopping");
                failed = Some(why);
                break;
            }
        }
        let flushed = self.store.flush().await;
        // The acknowledger answers what it holds and ends, and the last sync flush ends,
        // closing their handles on the store, before this node reports that it stopped
        // (a restart reopens the store).
        let sync_flush = self.syncs.take_flush();
        let EventLoop {
            acks,
            acknowledger,
            store_check,
            ..
        } = self;
        drop(acks);
        let _ = acknowledger.await;
        if let Some(f) = sync_flush {
            let _ = f.await;
        }
        if let Some(f) = store_check {
            let _ = f.await;
        }
        if let Some(why) = failed {
            return Err(NodeError::StoreFailed(why));
        }
        flushed?;
        tracing::info!("stopped");
        Ok(())
    }

    /// Rekeys if this member lacks the key everyone seals under (R7 in
    /// docs/threat-model.md), and publishes the rekey.
    pub(super) async fn repair_keys(&mut self) {
        let Some(engine) = &mut self.engine else {
            return;
        };
        match engine.repair_keys(crate::now(), &mut crate::rng()).await {
            Ok(false) => {}
            Ok(true) => {
                self.after_roster_change(false);
                self.flush_outbox();
            }
            Err(e) => tracing::warn!(error = %e, "could not rekey for a key this member lacks"),
        }
    }

    pub(super) fn on_tick(&mut self, ticks: u32) {
        let now = Instant::now();
        self.watch_history(now);
        // The event loop itself tells the watchdog it runs: a loop stuck anywhere stops
        // telling it, and systemd restarts the node.
        if let Some((every, last)) = &mut self.watchdog
            && now.duration_since(*last) >= *every
        {
            *last = now;
            if let Err(e) = crate::notify::notify("WATCHDOG=1") {
                tracing::warn!(error = %e, "cannot notify systemd's watchdog");
            }
        }
        self.syncs.tick(now);
        for peer in self.outsiders.due(now) {
            if self.is_member(&peer) && self.swarm.behaviour().gossipsub.serves(&peer) {
                continue;
            }
            // A non-member, or a member whose connection predates its admission: close
            // it, and for a member dial again, so the new connection carries gossip.
            tracing::debug!(%peer, "closing a connection without hood traffic");
            let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
            let _ = self.swarm.disconnect_peer_id(peer);
            if self.is_member(&peer) && !addrs.is_empty() {
                let _ = self.swarm.dial(
                    DialOpts::peer_id(peer)
                        .condition(PeerCondition::Always)
                        .addresses(addrs)
                        .build(),
                );
            }
        }
        if ticks.is_multiple_of(OUTBOX_EVERY) {
            self.flush_outbox();
        }
        if ticks.is_multiple_of(CHECK_STORE_EVERY)
            && self.store_check.as_ref().is_none_or(|f| f.is_finished())
        {
            // The flush records a failure in the store; the loop then stops.
            let store = self.store.clone();
            self.store_check = Some(tokio::spawn(async move {
                let _ = store.flush().await;
            }));
        }
        for peer in take_due(&mut self.cut_off, now) {
            if self.swarm.is_connected(&peer) {
                tracing::info!(%peer, "disconnecting a removed member");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        for peer in self.syncs.take_retries() {
            if self.swarm.is_connected(&peer) {
                self.start_sync(peer);
            }
        }
        if ticks.is_multiple_of(SYNC_EVERY) {
            self.sync_all();
        }
        // Alone (every neighbor left, was removed or moved): look for the hood again
        // where this node remembers members, including those heard of by peer exchange.
        if ticks.is_multiple_of(REDIAL_EVERY)
            && self
                .engine
                .as_ref()
                .is_some_and(|e| !e.roster().is_removed(&self.keys.id()))
            && !self.swarm.connected_peers().any(|p| self.is_member(p))
        {
            self.dial_known();
        }
        if ticks.is_multiple_of(EXPIRE_EVERY)
            && let Some(engine) = &mut self.engine
        {
            match engine.expire(crate::now()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired items deleted"),
                Err(e) => tracing::warn!(error = %e, "expiry failed"),
            }
            // The day's healing rekey or a rotation (done by `repair_keys`).
            self.keys_due |= engine.upkeep_due(crate::now());
            // A rotated-away first exchange secret leaves the key file and memory.
            if engine.first_exchange_retired() {
                match crate::identity::retire_exchange(&self.data_dir) {
                    Ok(_) => {
                        engine.forget_first_exchange();
                        self.keys = self.keys.without_exchange();
                        tracing::info!("the first exchange secret was deleted from the key file");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot scrub the key file"),
                }
            }
        }
    }

    pub(super) fn after_roster_change(&mut self, reconnect: bool) {
        let Some(engine) = &self.engine else { return };
        self.keys_due |= engine.keys_due();
        let members: Vec<PeerId> = engine
            .roster()
            .members()
            .filter_map(|m| mesh::peer_id(&m.id))
            .collect();
        let removed: Vec<PeerId> = engine
            .roster()
            .removed()
            .filter_map(mesh::peer_id)
            .collect();
        let me_removed = engine.roster().is_removed(&self.keys.id());
        let behaviour = self.swarm.behaviour_mut();
        behaviour.gossipsub.set_members(members.iter().copied());
        behaviour.sync.set_members(members.iter().copied());
        behaviour.clips.set_members(members.iter().copied());
        behaviour.gate.denied = removed.iter().copied().collect();
        // Anyone still served hood traffic who is no longer a member (removed, or lost a
        // ticket race) is cut off; a non-member reconnecting gets no hood traffic.
        let served: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .copied()
            .filter(|p| self.swarm.behaviour().gossipsub.serves(p) && !members.contains(p))
            .collect();
        for peer in served {
            if !removed.contains(&peer) {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        let now = Instant::now();
        for peer in removed {
            if !self.swarm.is_connected(&peer) || self.cut_off.contains_key(&peer) {
                continue;
            }
            // Gossip still reaches it: the removal (and nothing it can read) goes out
            // first, and it is cut off after `REMOVAL_NOTICE`.
            if self.swarm.behaviour().gossipsub.serves(&peer) && self.cut_off.len() < MAX_CUT_OFF {
                self.cut_off.insert(peer, now + REMOVAL_NOTICE);
            } else {
                tracing::info!(%peer, "disconnecting a removed member");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        if me_removed {
            tracing::warn!("this node was removed from the hood");
        }
        let _ = self.events.send(Event::Membership);
        if !reconnect {
            return;
        }
        let stale: Vec<PeerId> = members
            .into_iter()
            .filter(|p| self.swarm.is_connected(p) && !self.swarm.behaviour().gossipsub.serves(p))
            .collect();
        for peer in stale {
            self.outsiders.forget(&peer);
            let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
            // Never cut a link we cannot make again.
            if addrs.is_empty() {
                continue;
            }
            let _ = self.swarm.disconnect_peer_id(peer);
            let _ = self.swarm.dial(
                DialOpts::peer_id(peer)
                    .condition(PeerCondition::Always)
                    .addresses(addrs)
                    .build(),
            );
        }
    }

    /// Publishes what waits in the outbox, oldest first, until gossip has no taker.
    pub(super) fn flush_outbox(&mut self) {
        if self.engine.is_none() {
            return;
        }
        let waiting = match self.store.outbox() {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return;
            }
        };
        for (seq, bytes) in waiting {
            let result = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .inner_mut()
                .publish(self.topic.clone(), bytes);
            match result {
                // Gossipsub remembers an id even when no queue took the message, and then
                // calls the retry a duplicate: only a message we saw go out leaves the
                // outbox on `Duplicate` (the others wait until gossipsub forgets the id).
                Ok(_) => {
                    self.stuck.remove(&seq);
                    if let Err(e) = self.store.pop_outbox(seq) {
                        tracing::warn!(error = %e, "cannot update the outbox");
                    }
                }
                Err(PublishError::Duplicate) if !self.stuck.contains(&seq) => {
                    if let Err(e) = self.store.pop_outbox(seq) {
                        tracing::warn!(error = %e, "cannot update the outbox");
                    }
                }
                Err(PublishError::Duplicate) => break,
                Err(PublishError::AllQueuesFull(_)) => {
                    self.stuck.insert(seq);
                    break;
                }
                Err(PublishError::NoPeersSubscribedToTopic) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "publish failed; will retry");
                    break;
                }
            }
        }
    }

    pub(super) fn feed_item(
        engine: &Engine,
        id: ItemId,
        item: &Item,
        body: Body,
    ) -> Option<FeedItem> {
        let (created_at, expires_at) = body.times();
        let author_name = engine
            .roster()
            .member(&item.author)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        Some(FeedItem {
            id,
            author: item.author,
            author_name,
            created_at,
            expires_at: expires_at?,
            // Our own report that asks: nobody has seen it yet when it is new.
            seen: match &body {
                Body::Report(r) if r.ask_seen.is_some() && item.author == engine.keys().id() => {
                    Some(crate::seen::SeenBy {
                        of: engine.roster().members().count().saturating_sub(1),
                        by: vec![],
                    })
                }
                _ => None,
            },
            acknowledged: false,
            body,
        })
    }

    /// Ingests bytes from the network or an import; emits what is new.
    pub(super) fn ingest(&mut self, bytes: &[u8]) -> Result<Ingest, NodeError> {
        let Some(engine) = &mut self.engine else {
            return Err(NodeError::NoHood);
        };
        let result = engine.ingest(bytes, crate::now())?;
        if let Ingest::New(accepted) = &result {
            self.last_item_at = Some(crate::now());
            if matches!(accepted.body, Body::Membership(_)) {
                self.after_roster_change(false);
            } else if matches!(accepted.body, Body::Seen(_)) {
                // Acks are not feed items: the author's feed counts them.
            } else if let Some(item) =
                Self::feed_item(engine, accepted.id, &accepted.item, accepted.body.clone())
                && !self.muted.contains(&item.author)
            {
                let _ = self.events.send(Event::Item(Box::new(item)));
            }
            self.saw(accepted.item.author, accepted.created_at);
        }
        Ok(result)
    }

    pub(super) async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let SwarmEvent::ConnectionClosed {
            peer_id,
            connection_id,
            num_established,
            ..
        } = &event
            && self.links.closed(*peer_id, *connection_id)
            && *num_established > 0
            && self.renew(*peer_id)
        {
            return;
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                // Back before the renewal's last connection closed: this one is not a
                // first either, and `links` will say so when the older ones close.
                self.renewals.cancel(&peer_id);
                let gossip = !self.swarm.behaviour().gossipsub.gates(connection_id);
                self.links.established(
                    peer_id,
                    connection_id,
                    std::time::Instant::now(),
                    gossip,
                    endpoint.is_relayed(),
                );
                self.remote
                    .insert(peer_id, endpoint.get_remote_address().clone());
                if let Some(member) = mesh::member_id(&peer_id) {
                    self.saw(member, crate::now());
                    self.remember_seen(member);
                }
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    let member = self.is_member(&peer_id);
                    let known = self.addresses.entry(peer_id).or_default();
                    if !known.contains(&addr) && known.len() < MAX_KNOWN_ADDRS {
                        known.push(addr);
                    }
                    if member {
                        let addrs: Vec<String> = known.iter().map(|a| a.to_string()).collect();
                        if let Err(e) = self.store.remember_peer(&peer_id.to_bytes(), &addrs) {
                            tracing::warn!(error = %e, "cannot remember a peer");
                        }
                    }
                }
                if self.engine.is_some() && !self.is_member(&peer_id) {
                    // Non-members must not take the slots members need. One that has sat
                    // idle (no join request) makes room for the newcomer, so whoever
                    // fills the slots cannot keep a neighbor from joining.
                    match self.outsiders.arrived(peer_id, Instant::now()) {
                        Arrival::Welcome => {}
                        Arrival::Evict(idle) => {
                            tracing::debug!(peer = %idle, "evicting an idle non-member for a new one");
                            let _ = self.swarm.disconnect_peer_id(idle);
                        }
                        Arrival::Full => {
                            tracing::debug!(peer = %peer_id, "too many non-members connected; closing");
                            let _ = self.swarm.disconnect_peer_id(peer_id);
                            return;
                        }
                    }
                }
                if self.join.as_ref().is_some_and(|j| j.inviter == peer_id) {
                    self.send_join_request();
                }
                self.start_sync(peer_id);
                self.ask_peers(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(addrs) = self.renewals.take_dial(&peer_id) {
                    tracing::debug!(peer = %peer_id, "dialing a renewed member");
                    let _ = self.swarm.dial(
                        DialOpts::peer_id(peer_id)
                            .condition(PeerCondition::Disconnected)
                            .addresses(addrs)
                            .build(),
                    );
                }
                if let Some(member) = mesh::member_id(&peer_id) {
                    self.saw(member, crate::now());
                    self.remember_seen(member);
                }
                self.outsiders.disconnected(&peer_id);
                self.addresses.remove(&peer_id);
                self.syncs.disconnected(&peer_id);
                self.ignored.forget(&peer_id);
                self.peer_asks.reset(&peer_id);
                self.remote.remove(&peer_id);
            }
            // Another connection to the peer remains, and it may be newer than the ask (a
            // restarted peer's new connection can be up before its old one is seen
            // closing): ask on it.
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } if self.peer_asks.ask_again_after(&peer_id, &connection_id) => {
                self.peer_asks.reset(&peer_id);
                self.ask_peers(peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Join(event)) => self.on_join(event).await,
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync(event).await,
            SwarmEvent::Behaviour(BehaviourEvent::Clips(event)) => self.on_clip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let addrs: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .take(MAX_KNOWN_ADDRS)
                    .collect();
                if self.is_member(&peer_id) {
                    let strings: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                    if let Err(e) = self.store.remember_peer(&peer_id.to_bytes(), &strings) {
                        tracing::warn!(error = %e, "cannot remember a peer");
                    }
                }
                self.addresses.insert(peer_id, addrs);
            }
            // Two pings in a row timed out (no pong, or the ping stream did not open in
            // time): the other end is gone. Other failures (a peer that does not speak
            // ping, a stream refused) are no sign of that.
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            })) if ping_timed_out(&error) => {
                tracing::debug!(%peer, %error, "pings go unanswered; closing the connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found.into_iter().take(32) {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection failed")
            }
            SwarmEvent::OutgoingConnectionError { error, peer_id, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed")
            }
            _ => {}
        }
    }
}
