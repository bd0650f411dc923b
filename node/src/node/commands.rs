//! The handle's commands, as the event loop answers them: post, invite, remove,
//! promote, status, members, the feed reader, clips and health.

use super::*;

impl EventLoop {
    pub(super) async fn on_command(&mut self, command: Command) {
        match command {
            Command::Post(body, reply) => match self.post(*body).await {
                // Published already; acknowledged once durable, by the acknowledger task,
                // so relaying does not wait for this node's disk.
                Ok(id) => match self.acks.try_send((id, reply)) {
                    Ok(()) => {}
                    // More posts waiting than the queue holds: this one waits here.
                    Err(
                        mpsc::error::TrySendError::Full((id, reply))
                        | mpsc::error::TrySendError::Closed((id, reply)),
                    ) => {
                        let result = self.store.flush().await.map(|()| id);
                        let _ = reply.send(result.map_err(|why| NodeError::NotDurable { id, why }));
                    }
                },
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Invite(valid_for, reply) => {
                let _ = reply.send(self.invite(valid_for));
            }
            Command::Remove(member, reply) => {
                let result = match &mut self.engine {
                    None => Err(NodeError::NoHood),
                    Some(engine) => engine
                        .remove(member, crate::now(), &mut crate::rng())
                        .await
                        .map_err(NodeError::from),
                };
                self.after_roster_change(false);
                self.flush_outbox();
                let _ = reply.send(result);
            }
            Command::Mute(member, mute, reply) => {
                let result = crate::mute::set(&self.store, &member, mute).await;
                if let Ok(true) = result {
                    if mute {
                        self.muted.insert(member);
                    } else {
                        self.muted.remove(&member);
                    }
                }
                let _ = reply.send(result.map_err(NodeError::from));
            }
            Command::Seen(report, reply) => {
                let result = match &mut self.engine {
                    None => Err(NodeError::NoHood),
                    Some(engine) => engine
                        .acknowledge(report, crate::now(), &mut crate::rng())
                        .await
                        .map_err(NodeError::from),
                };
                self.flush_outbox();
                let _ = reply.send(result);
            }
            Command::Rename(name, reply) => {
                let result = match &mut self.engine {
                    None => Err(NodeError::NoHood),
                    Some(engine) => engine
                        .rename(&name, crate::now(), &mut crate::rng())
                        .await
                        .map_err(NodeError::from),
                };
                self.after_roster_change(false);
                self.flush_outbox();
                let _ = reply.send(result);
            }
            Command::Promote(member, reply) => {
                let result = match &mut self.engine {
                    None => Err(NodeError::NoHood),
                    Some(engine) => engine
                        .promote(member, crate::now(), &mut crate::rng())
                        .await
                        .map_err(NodeError::from),
                };
                self.after_roster_change(false);
                self.flush_outbox();
                let _ = reply.send(result);
            }
            Command::Ingest(bytes, reply) => {
                let result = self.ingest(&bytes);
                if let Err(e) = self.store.flush().await {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                let _ = reply.send(result);
            }
            Command::Status(digest, reply) => {
                let mut status = self.status();
                if digest {
                    status.digest = self.digest();
                }
                let _ = reply.send(Ok(status));
            }
            Command::Reader(reply) => {
                let _ = reply.send(self.reader());
            }
            Command::Members(reply) => {
                let _ = reply.send(self.members());
            }
            Command::Dial(addr, reply) => {
                let result = self
                    .swarm
                    .dial(addr)
                    .map_err(|e| NodeError::JoinRefused(format!("dial: {e}")));
                let _ = reply.send(result);
            }
            Command::Block(peer, blocked, reply) => {
                let gate = &mut self.swarm.behaviour_mut().gate;
                if blocked {
                    gate.blocked.insert(peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                } else {
                    gate.blocked.remove(&peer);
                }
                let _ = reply.send(Ok(()));
            }
            Command::Sync(reply) => {
                self.sync_all();
                let _ = reply.send(Ok(()));
            }
            Command::Envelope(id, reply) => {
                let result = self
                    .store
                    .item(&id)
                    .map(|r| r.map(|r| r.envelope))
                    .map_err(NodeError::from);
                let _ = reply.send(result);
            }
            Command::ClipRequest(owner, request, reply) => {
                self.send_clip_request(owner, request, reply)
            }
            Command::ClipAsks(reply) => {
                let _ = reply.send(Ok(self.sharing.asks()));
            }
            Command::ClipDecide(id, allow, reply) => {
                let _ = reply.send(self.sharing.decide(&id, allow).map_err(NodeError::from));
            }
            Command::ClipShare(choice, reply) => {
                let result = match choice {
                    Some((sha256, share)) => self
                        .sharing
                        .set_share(sha256, share)
                        .map(|()| share)
                        .map_err(NodeError::from),
                    None => Ok(self.sharing.policy),
                };
                let _ = reply.send(result);
            }
            Command::SetClipPolicy(policy, reply) => {
                self.sharing.policy = policy;
                let _ = reply.send(Ok(policy));
            }
            Command::Health(reply) => {
                let members_connected = self
                    .swarm
                    .connected_peers()
                    .filter(|p| self.is_member(p))
                    .count();
                let last_item_at = self.last_item_at;
                let store = self.store.clone();
                // The probe writes and flushes: off the event loop.
                tokio::spawn(async move {
                    let probe = store.probe(crate::now()).await;
                    let store_error = probe
                        .err()
                        .map(|e| e.to_string())
                        .or_else(|| store.failure());
                    let _ = reply.send(Ok(Health {
                        store_writable: store_error.is_none(),
                        store_error,
                        members_connected,
                        last_item_at,
                    }));
                });
            }
            Command::Shutdown => {}
        }
    }

    /// Stores, announces and publishes a post; the caller acknowledges it after a flush.
    pub(super) async fn post(&mut self, body: Body) -> Result<ItemId, NodeError> {
        let engine = self.engine.as_mut().ok_or(NodeError::NoHood)?;
        let id = engine
            .post_staged(&body, crate::now(), &mut crate::rng())
            .await?;
        self.last_item_at = Some(crate::now());
        if let Some(record) = engine.store().item(&id)?
            && let Ok(item) = Item::decode(&record.item)
            && let Some(feed) = Self::feed_item(engine, id, &item, body)
        {
            let _ = self.events.send(Event::Item(Box::new(feed)));
        }
        self.flush_outbox();
        Ok(id)
    }

    pub(super) fn invite(&mut self, valid_for: Duration) -> Result<String, NodeError> {
        let engine = self.engine.as_ref().ok_or(NodeError::NoHood)?;
        engine.check_invite()?;
        let mut id = [0u8; 16];
        crate::rng().fill_bytes(&mut id);
        let ticket = Ticket {
            hood: engine.hood(),
            hood_name: engine.roster().name().to_owned(),
            inviter: self.keys.id(),
            id: TicketId(id),
            expires_at: crate::now().saturating_add(valid_for.as_secs()),
            bootstrap: self.bootstrap_addresses(),
        };
        Ok(SignedTicket::issue(&self.keys, &ticket)?.to_code())
    }

    pub(super) fn status(&self) -> Status {
        let gossip = self.swarm.behaviour().gossipsub.inner();
        Status {
            member: self.keys.id(),
            peer_id: *self.swarm.local_peer_id(),
            hood: self.engine.as_ref().map(|e| e.hood()),
            hood_name: self.engine.as_ref().map(|e| e.roster().name().to_owned()),
            members: self
                .engine
                .as_ref()
                .map_or(0, |e| e.roster().members().count()),
            connected: self.swarm.connected_peers().copied().collect(),
            mesh_peers: gossip.mesh_peers(&self.topic.hash()).count(),
            known_peers: self.store.peers().map_or(0, |p| p.len()),
            listen: self.listen.clone(),
            items: self.store.item_count(),
            outbox: self.store.outbox_len(),
            digest: None,
            sealing_epoch: self
                .engine
                .as_ref()
                .and_then(|e| e.roster().sealing_epoch()),
            sync: self.syncs.stats,
            gossip_scores: self
                .swarm
                .connected_peers()
                .filter_map(|p| gossip.peer_score(p).map(|s| (*p, s)))
                .collect(),
            removed: self
                .engine
                .as_ref()
                .is_some_and(|e| e.roster().is_removed(&self.keys.id())),
            policy: self.engine.as_ref().map(|e| *e.roster().policy()),
            history_missing: self
                .engine
                .as_ref()
                .map_or(0, |e| e.roster().history_missing()),
        }
    }

    pub(super) fn members(&self) -> Result<Vec<MemberInfo>, NodeError> {
        let engine = self.engine.as_ref().ok_or(NodeError::NoHood)?;
        let now = crate::now();
        let connected: std::collections::HashSet<MemberId> = self
            .swarm
            .connected_peers()
            .filter_map(mesh::member_id)
            .collect();
        // Items held are evidence too, across restarts: the store keeps each author's
        // newest in memory (`status` asks for this; a pass over the expiry index held up
        // the event loop for milliseconds at 100,000 items).
        let latest = self.store.latest_by_author();
        let pending: HashMap<MemberId, usize> = engine
            .roster()
            .pending_votes(now)
            .into_iter()
            .map(|p| (p.target, p.votes.len()))
            .collect();
        Ok(engine
            .roster()
            .members()
            .map(|m| {
                let me = m.id == self.keys.id();
                let connected = me || connected.contains(&m.id);
                let last_seen = if connected {
                    Some(now)
                } else {
                    self.last_seen
                        .get(&m.id)
                        .copied()
                        .max(latest.get(&m.id).map(|t| (*t).min(now)))
                };
                MemberInfo {
                    member: m.clone(),
                    connected,
                    last_seen,
                    votes_against: pending.get(&m.id).copied().unwrap_or(0),
                    votes_needed: engine.roster().votes_needed(&m.id, now),
                    muted: self.muted.contains(&m.id),
                }
            })
            .collect())
    }

    /// A store handle and the members' names: reads then run off the event loop.
    pub(super) fn reader(&self) -> Result<crate::feed::Reader, NodeError> {
        let engine = self.engine.as_ref().ok_or(NodeError::NoHood)?;
        let names = engine
            .roster()
            .members()
            .map(|m| (m.id, m.name.clone()))
            .collect();
        Ok(crate::feed::Reader::new(self.store.clone(), names)
            .muting(self.muted.clone())
            .for_member(self.keys.id()))
    }
}
