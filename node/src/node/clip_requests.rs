//! Clip transfer on the swarm: our requests to a clip's owner, and the owner's side
//! (`Sharing`) answering requests for our own clips.

use super::*;

impl EventLoop {
    pub(super) fn send_clip_request(
        &mut self,
        owner: MemberId,
        request: clip::Request,
        reply: Reply<clip::Response>,
    ) {
        let Some(peer) = mesh::peer_id(&owner) else {
            let _ = reply.send(Err(NodeError::Unreachable(
                owner.fingerprint(),
                "not a valid member id".into(),
            )));
            return;
        };
        if !self.is_member(&peer) {
            let _ = reply.send(Err(NodeError::Unreachable(
                owner.fingerprint(),
                "not a member".into(),
            )));
            return;
        }
        if !self.swarm.is_connected(&peer) {
            let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
            let _ = self
                .swarm
                .dial(DialOpts::peer_id(peer).addresses(addrs).build());
        }
        let id = self
            .swarm
            .behaviour_mut()
            .clips
            .inner_mut()
            .send_request(&peer, request.encode());
        self.clip_replies.insert(id, reply);
    }

    /// The size of clip `sha256` if one of our own live reports references it: from
    /// the store's clip index, not a pass over the records.
    pub(super) fn own_clip(&mut self, sha256: &[u8; 32]) -> Option<u64> {
        let me = self.keys.id();
        self.store
            .clip_refs(sha256)
            .ok()?
            .into_iter()
            .find(|(_, author, _)| *author == me)
            .map(|(_, _, size)| size)
    }

    pub(super) fn on_clip(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                // The gate lets only members' connections speak this protocol.
                let now = std::time::Instant::now();
                match self.meter.check(peer, now) {
                    crate::mesh::meter::Verdict::Serve => {}
                    // Slowed: no answer (the requester's request fails; it may ask
                    // again later), no clip read.
                    crate::mesh::meter::Verdict::SlowDown => return,
                    crate::mesh::meter::Verdict::Penalize => {
                        return self.penalize(peer, "kept asking for clips over its byte budget");
                    }
                }
                let response = match (clip::Request::decode(&request), mesh::member_id(&peer)) {
                    (Ok(request), Some(requester)) => {
                        let own = self.own_clip(&request.sha256);
                        let answer = self.sharing.answer(
                            &self.data_dir,
                            requester,
                            &request,
                            own,
                            crate::now(),
                        );
                        if let clip::Response::Chunk { bytes, .. } = &answer {
                            self.meter.spent(peer, bytes.len(), now);
                        }
                        answer
                    }
                    _ => {
                        self.penalize(peer, "malformed clip request");
                        return;
                    }
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .clips
                    .inner_mut()
                    .send_response(channel, response.encode());
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                peer,
                ..
            } => {
                let Some(reply) = self.clip_replies.remove(&request_id) else {
                    return;
                };
                let result = clip::Response::decode(&response).map_err(|e| {
                    NodeError::Unreachable(format!("{peer}"), format!("malformed clip answer: {e}"))
                });
                let _ = reply.send(result);
            }
            request_response::Event::OutboundFailure {
                request_id,
                peer,
                error,
                ..
            } => {
                if let Some(reply) = self.clip_replies.remove(&request_id) {
                    let who = mesh::member_id(&peer)
                        .map_or_else(|| peer.to_string(), |m| m.fingerprint());
                    let _ = reply.send(Err(NodeError::Unreachable(who, error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "clip request from a peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
