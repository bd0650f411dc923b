//! `Quiet<B>`: polls a behaviour's connection handlers only when they have something to
//! do.
//!
//! libp2p's connection task polls every handler of the swarm each time anything on the
//! connection wakes it: every gossip message in or out polls the join, sync and clip
//! request-response handlers, identify, the relay client, DCUtR and AutoNAT too, and
//! each of those polls walks its queues and timers to find nothing. On a home node that
//! relays alerts those idle polls were about a tenth of the CPU (docs/performance.md).
//!
//! A quiet handler passes its inner handler a waker of its own. It polls the inner
//! handler only after that waker fired, after an event was handed to the inner handler
//! (from the behaviour or from the connection), or while the inner handler still has
//! events to give (it returned `Ready` last time); otherwise it returns `Pending` at
//! once, with the connection's waker registered. That is right for a handler that
//! wakes the waker it was polled with for everything it waits on (streams, timers,
//! channels, its own queues); request-response, identify, DCUtR and AutoNAT's handlers
//! do. The relay client's does not: it hands its transport one queued message a poll and
//! counts on being polled again for the next, so it is wrapped with [`Quiet::eager`],
//! which polls it every time and only boxes its events.
//!
//! Their events travel boxed, both ways. A connection's events are one enum over every
//! handler's, as large as the largest (identify's is 592 bytes, AutoNAT's commands 176),
//! and every gossip message crossed from the connection task to the swarm at that size.
//! Boxed, the rare events cost an allocation each and the gossip events their own size
//! (240 bytes); `tests::events_of_quiet_handlers_are_small` checks it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::task::{ArcWake, AtomicWaker, waker_ref};
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::handler::ConnectionEvent;
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// A behaviour whose connection handlers are [`QuietHandler`]s. Derefs to the inner
/// behaviour.
#[derive(Debug)]
pub struct Quiet<B> {
    inner: B,
    eager: bool,
}

impl<B> Quiet<B> {
    pub fn new(inner: B) -> Quiet<B> {
        Quiet {
            inner,
            eager: false,
        }
    }

    /// Polls the handlers every time, as libp2p would; only boxes their events. For a
    /// handler that needs polls nothing wakes it for.
    pub fn eager(inner: B) -> Quiet<B> {
        Quiet { inner, eager: true }
    }

    fn handler<H>(&self, inner: H) -> QuietHandler<H> {
        let mut handler = QuietHandler::new(inner);
        handler.eager = self.eager;
        handler
    }
}

impl<B> Deref for Quiet<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.inner
    }
}

impl<B> DerefMut for Quiet<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Quiet<B> {
    type ConnectionHandler = QuietHandler<THandler<B>>;
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
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
            .map(|h| self.handler(h))
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
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
            .map(|h| self.handler(h))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, *event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx).map(|event| event.map_in(Box::new))
    }
}

/// Whether the inner handler must be polled, and the connection task to wake when it
/// must.
#[derive(Debug, Default)]
struct Signal {
    due: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for Signal {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.due.store(true, Ordering::Release);
        arc_self.task.wake();
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct QuietHandler<H> {
    inner: H,
    signal: Arc<Signal>,
    /// Poll the inner handler every time (see [`Quiet::eager`]).
    eager: bool,
}

impl<H> QuietHandler<H> {
    pub fn new(inner: H) -> QuietHandler<H> {
        let signal = Arc::new(Signal::default());
        // The first poll always reaches the inner handler.
        signal.due.store(true, Ordering::Release);
        QuietHandler {
            inner,
            signal,
            eager: false,
        }
    }

    fn mark_due(&self) {
        self.signal.due.store(true, Ordering::Release);
    }
}

impl<H: ConnectionHandler> ConnectionHandler for QuietHandler<H> {
    type FromBehaviour = Box<H::FromBehaviour>;
    type ToBehaviour = Box<H::ToBehaviour>;
    type InboundProtocol = H::InboundProtocol;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = H::InboundOpenInfo;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        self.inner.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        if self.eager {
            return self.inner.poll(cx).map(|event| event.map_custom(Box::new));
        }
        // Register first, then look: a wake between the two is not lost.
        self.signal.task.register(cx.waker());
        if !self.signal.due.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = waker_ref(&self.signal);
        let result = self.inner.poll(&mut Context::from_waker(&waker));
        if result.is_ready() {
            // It may have more: the connection polls again at once.
            self.mark_due();
        }
        result.map(|event| event.map_custom(Box::new))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx).map(|event| event.map(Box::new))
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        self.mark_due();
        self.inner.on_behaviour_event(*event)
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        self.mark_due();
        self.inner.on_connection_event(event)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::task::Waker;

    use futures::task::noop_waker;
    use libp2p::core::upgrade::DeniedUpgrade;

    use super::*;

    /// A handler that counts its polls, gives out queued events, and keeps the waker it
    /// was last polled with (as a handler waiting on a timer or a stream does).
    #[derive(Default)]
    struct Probe {
        polls: usize,
        queue: VecDeque<u32>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl ConnectionHandler for Probe {
        type FromBehaviour = u32;
        type ToBehaviour = u32;
        type InboundProtocol = DeniedUpgrade;
        type OutboundProtocol = DeniedUpgrade;
        type InboundOpenInfo = ();
        type OutboundOpenInfo = ();

        fn listen_protocol(&self) -> SubstreamProtocol<DeniedUpgrade, ()> {
            SubstreamProtocol::new(DeniedUpgrade, ())
        }

        fn poll(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), u32>> {
            self.polls += 1;
            *self.waker.lock().expect("lock") = Some(cx.waker().clone());
            match self.queue.pop_front() {
                Some(e) => Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(e)),
                None => Poll::Pending,
            }
        }

        fn on_behaviour_event(&mut self, event: u32) {
            // Two events out for each one in: the second needs a poll of its own.
            self.queue.push_back(event);
            self.queue.push_back(event + 1);
        }

        fn on_connection_event(
            &mut self,
            _: ConnectionEvent<DeniedUpgrade, DeniedUpgrade, (), ()>,
        ) {
        }
    }

    /// Wakes the waker the probe was last polled with, as its timer or stream would.
    fn fire(waker: &Mutex<Option<Waker>>) {
        waker
            .lock()
            .expect("lock")
            .take()
            .expect("the inner handler kept a waker")
            .wake();
    }

    fn poll(h: &mut QuietHandler<Probe>) -> Option<u32> {
        let waker = noop_waker();
        match h.poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(e)) => Some(*e),
            Poll::Ready(_) => panic!("unexpected event"),
            Poll::Pending => None,
        }
    }

    #[test]
    fn polls_the_inner_handler_only_when_due() {
        let probe = Probe::default();
        let inner_waker = probe.waker.clone();
        let mut h = QuietHandler::new(probe);
        // The first poll reaches it; nothing is due after.
        assert_eq!(poll(&mut h), None);
        assert_eq!(h.inner.polls, 1);
        for _ in 0..10 {
            assert_eq!(poll(&mut h), None);
        }
        assert_eq!(
            h.inner.polls, 1,
            "idle polls do not reach the inner handler"
        );

        // An event from the behaviour: both events it queues come out, one a poll.
        h.on_behaviour_event(Box::new(7));
        assert_eq!(poll(&mut h), Some(7));
        assert_eq!(poll(&mut h), Some(8));
        assert_eq!(poll(&mut h), None);
        let after_events = h.inner.polls;
        assert_eq!(after_events, 4);
        assert_eq!(poll(&mut h), None);
        assert_eq!(h.inner.polls, after_events);

        // Its own waker fired (a timer, a stream): it is polled again.
        h.inner.queue.push_back(42);
        assert_eq!(poll(&mut h), None, "nothing woke it yet");
        fire(&inner_waker);
        assert_eq!(poll(&mut h), Some(42));
    }

    #[test]
    fn an_eager_handler_is_polled_every_time() {
        let mut h = QuietHandler::new(Probe::default());
        h.eager = true;
        for _ in 0..5 {
            assert_eq!(poll(&mut h), None);
        }
        assert_eq!(h.inner.polls, 5);
        // Something queued with no wake (as the relay client's handler leaves it) still
        // comes out at the next poll.
        h.inner.queue.push_back(3);
        assert_eq!(poll(&mut h), Some(3));
    }

    #[test]
    fn a_wake_from_the_inner_handler_wakes_the_connection_task() {
        struct Flag(AtomicBool);
        impl ArcWake for Flag {
            fn wake_by_ref(arc_self: &Arc<Self>) {
                arc_self.0.store(true, Ordering::SeqCst);
            }
        }
        let probe = Probe::default();
        let inner_waker = probe.waker.clone();
        let mut h = QuietHandler::new(probe);
        let task = Arc::new(Flag(AtomicBool::new(false)));
        let waker = futures::task::waker(task.clone());
        assert!(h.poll(&mut Context::from_waker(&waker)).is_pending());
        assert!(!task.0.load(Ordering::SeqCst));
        fire(&inner_waker);
        assert!(
            task.0.load(Ordering::SeqCst),
            "the connection task is woken to poll again"
        );
    }

    #[test]
    fn events_of_quiet_handlers_are_small() {
        use libp2p::swarm::{THandlerInEvent, THandlerOutEvent};
        type All = crate::mesh::Behaviour;
        type Gossip = libp2p::gossipsub::Behaviour;
        // The connection's events are no larger than gossipsub's own: every quiet
        // handler's are boxed.
        assert!(
            std::mem::size_of::<THandlerOutEvent<All>>()
                <= std::mem::size_of::<THandlerOutEvent<Gossip>>() + 16
        );
        assert!(std::mem::size_of::<THandlerInEvent<All>>() <= 32);
        // Identify's, unboxed, would not be.
        assert!(
            std::mem::size_of::<THandlerOutEvent<libp2p::identify::Behaviour>>()
                > std::mem::size_of::<THandlerOutEvent<Gossip>>() + 16
        );
    }
}
