//! `MembersOnly<B>`: runs a protocol behaviour only on connections to current members.
//!
//! A non-member may connect (to present a ticket to the join protocol), but gossipsub,
//! sync and clip transfer never see that connection: the wrapped behaviour gets a dummy
//! handler for it and hears nothing about it. So gossipsub cannot learn a non-member's
//! subscriptions, put it in a mesh, or send it a message, whatever topic it claims.
//!
//! Membership is judged when the connection is established. When a peer's membership
//! changes, the node closes its connections and lets them be re-established (a joiner
//! redials after its `Welcome`; a removed member is disconnected and denied).

use std::collections::{HashMap, HashSet};
use std::task::{Context, Poll};

use either::Either;
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

#[derive(Debug)]
pub struct MembersOnly<B> {
    inner: B,
    members: HashSet<PeerId>,
    /// Connections the inner behaviour knows of, per peer.
    open: HashMap<PeerId, usize>,
    /// Connections it does not.
    gated: HashSet<ConnectionId>,
}

impl<B> MembersOnly<B> {
    pub fn new(inner: B) -> MembersOnly<B> {
        MembersOnly {
            inner,
            members: HashSet::new(),
            open: HashMap::new(),
            gated: HashSet::new(),
        }
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Replaces the set of peers that are members. Applies to connections established
    /// from now on.
    pub fn set_members(&mut self, members: impl IntoIterator<Item = PeerId>) {
        self.members = members.into_iter().collect();
    }

    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.members.contains(peer)
    }

    /// Whether the inner behaviour does not run on this connection (a non-member's).
    pub fn gates(&self, id: ConnectionId) -> bool {
        self.gated.contains(&id)
    }

    /// Whether the inner behaviour runs on at least one connection to `peer`.
    pub fn serves(&self, peer: &PeerId) -> bool {
        self.open.get(peer).is_some_and(|n| *n > 0)
    }
}

type Handler<B> = Either<THandler<B>, dummy::ConnectionHandler>;

impl<B: NetworkBehaviour> NetworkBehaviour for MembersOnly<B> {
    type ConnectionHandler = Handler<B>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.members.contains(&peer) {
            self.gated.insert(id);
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        Ok(Either::Left(
            self.inner
                .handle_established_inbound_connection(id, peer, local, remote)?,
        ))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.members.contains(&peer) {
            self.gated.insert(id);
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        Ok(Either::Left(
            self.inner
                .handle_established_outbound_connection(id, peer, addr, role, port_use)?,
        ))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                if self.gated.contains(&e.connection_id) {
                    return;
                }
                let open = self.open.entry(e.peer_id).or_insert(0);
                let other_established = *open;
                *open += 1;
                self.inner.on_swarm_event(FromSwarm::ConnectionEstablished(
                    ConnectionEstablished {
                        other_established,
                        ..e
                    },
                ));
            }
            FromSwarm::ConnectionClosed(e) => {
                if self.gated.remove(&e.connection_id) {
                    return;
                }
                let remaining_established = match self.open.get_mut(&e.peer_id) {
                    Some(n) => {
                        *n = n.saturating_sub(1);
                        *n
                    }
                    None => 0,
                };
                if remaining_established == 0 {
                    self.open.remove(&e.peer_id);
                }
                self.inner
                    .on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                        remaining_established,
                        ..e
                    }));
            }
            FromSwarm::AddressChange(e) if self.gated.contains(&e.connection_id) => {}
            other => self.inner.on_swarm_event(other),
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(event) => self.inner.on_connection_handler_event(peer, id, event),
            Either::Right(never) => match never {},
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx).map(|event| event.map_in(Either::Left))
    }
}
