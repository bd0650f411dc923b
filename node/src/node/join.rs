//! The join: as joiner, sending the ticket to the inviter and taking the `Welcome`; as
//! member, admitting whoever presents a ticket we can verify.

use super::*;

impl EventLoop {
    /// Presents the ticket to the inviter and waits for the welcome.
    pub(super) async fn join(
        &mut self,
        signed: SignedTicket,
        ticket: Ticket,
    ) -> Result<(), NodeError> {
        let request = JoinRequest::new(&self.keys, signed, &ticket, &self.name)
            .map_err(|e| NodeError::JoinRefused(e.to_string()))?;
        let inviter = mesh::peer_id(&ticket.inviter)
            .ok_or_else(|| NodeError::JoinRefused("the invite names an invalid inviter".into()))?;
        let addrs: Vec<Multiaddr> = ticket
            .bootstrap
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        self.join = Some(JoinState {
            inviter,
            request: request.encode(),
            sent: false,
        });
        self.swarm
            .dial(DialOpts::peer_id(inviter).addresses(addrs).build())
            .map_err(|e| NodeError::JoinRefused(format!("cannot dial the inviter: {e}")))?;
        if self.swarm.is_connected(&inviter) {
            self.send_join_request();
        }
        let deadline = Instant::now() + JOIN_DEADLINE;
        while self.engine.is_none() {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| NodeError::JoinTimeout(JOIN_DEADLINE))?;
            if let SwarmEvent::Behaviour(BehaviourEvent::Join(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                peer,
                ..
            })) = &event
                && *peer == inviter
            {
                self.on_welcome(response, &ticket.hood).await?;
                continue;
            }
            if let SwarmEvent::Behaviour(BehaviourEvent::Join(
                request_response::Event::OutboundFailure { error, .. },
            )) = &event
            {
                return Err(NodeError::JoinRefused(format!(
                    "the join request failed: {error}"
                )));
            }
            self.on_swarm_event(event).await;
        }
        Ok(())
    }

    pub(super) fn send_join_request(&mut self) {
        if let Some(join) = &mut self.join
            && !join.sent
        {
            join.sent = true;
            let request = join.request.clone();
            let inviter = join.inviter;
            self.swarm
                .behaviour_mut()
                .join
                .send_request(&inviter, request);
        }
    }

    pub(super) async fn on_welcome(
        &mut self,
        response: &[u8],
        hood: &HoodId,
    ) -> Result<(), NodeError> {
        let welcome = match JoinResponse::decode(response) {
            Ok(JoinResponse::Welcome(w)) => w,
            Ok(JoinResponse::Refused(why)) => return Err(NodeError::JoinRefused(why)),
            Err(e) => return Err(NodeError::JoinRefused(format!("malformed answer: {e}"))),
        };
        let engine = Engine::from_welcome(self.store.clone(), self.keys.clone(), hood, &welcome)?;
        // Remember where the inviter is, so a restart finds the hood without the invite.
        if let Some(join) = &self.join {
            let addrs: Vec<String> = self
                .addresses
                .get(&join.inviter)
                .map(|a| a.iter().map(|a| a.to_string()).collect())
                .unwrap_or_default();
            if !addrs.is_empty() {
                self.store.remember_peer(&join.inviter.to_bytes(), &addrs)?;
            }
        }
        self.store.flush().await?;
        tracing::info!(
            members = engine.roster().members().count(),
            "joined the hood"
        );
        self.engine = Some(engine);
        self.join = None;
        // Our connection to the admitter predates our membership: renew it.
        self.after_roster_change(true);
        self.subscribe();
        Ok(())
    }

    pub(super) async fn on_join(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        let request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        } = event
        else {
            return;
        };
        self.outsiders.asked_to_join(peer);
        let response = match self.admit(&peer, &request).await {
            Ok(welcome) => {
                tracing::info!(%peer, "admitted a new member");
                JoinResponse::Welcome(Box::new(welcome))
            }
            Err(why) => {
                match self.join_refusals.take(std::time::Instant::now()) {
                    crate::logs::Take::Log { suppressed: 0 } => {
                        tracing::info!(%peer, %why, "refused a join request");
                    }
                    crate::logs::Take::Log { suppressed } => {
                        tracing::info!(%peer, %why, suppressed, "refused a join request (and `suppressed` more since the last such line)");
                    }
                    crate::logs::Take::Quiet => {}
                }
                JoinResponse::refused(&why)
            }
        };
        let admitted = matches!(response, JoinResponse::Welcome(_));
        if self
            .swarm
            .behaviour_mut()
            .join
            .send_response(channel, response.encode())
            .is_err()
        {
            tracing::debug!(%peer, "joiner went away before the welcome");
        }
        if admitted {
            self.after_roster_change(false);
            self.flush_outbox();
        }
    }

    pub(super) async fn admit(
        &mut self,
        peer: &PeerId,
        request: &[u8],
    ) -> Result<porchlight_proto::Welcome, String> {
        let engine = self.engine.as_mut().ok_or("this node is not in a hood")?;
        let request =
            JoinRequest::decode(request).map_err(|e| format!("malformed request: {e}"))?;
        if mesh::peer_id(&request.joiner) != Some(*peer) {
            return Err("the request is not from the connected peer".into());
        }
        engine
            .admit(&request, crate::now(), &mut crate::rng())
            .await
            .map_err(|e| e.to_string())
    }
}
