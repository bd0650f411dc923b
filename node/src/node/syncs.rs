//! The catch-up sync's state, owned in one place: the sessions this node runs as
//! initiator, the retries of sessions that failed through nobody's fault, the kept sync
//! set a responder answers from, each peer's reconcile budget, the counters `health`
//! reports, and the flush after the last batch. `catch_up.rs` drives it with the swarm
//! and the engine; nothing else touches these fields.

use super::*;

/// One catch-up session this node runs as initiator with one peer.
pub(super) struct SyncSession {
    /// `None` once the sets are reconciled and only fetching is left.
    pub(super) initiator: Option<sync::Initiator>,
    pub(super) need: std::collections::VecDeque<[u8; 32]>,
    pub(super) requested: HashSet<[u8; 32]>,
    started: Instant,
    /// The request whose answer the session waits for: an answer or failure of any
    /// other (one of a session that timed out, on a connection since replaced) is
    /// stale and changes nothing.
    pending: Option<request_response::OutboundRequestId>,
}

#[derive(Default)]
pub(super) struct Syncs {
    sessions: HashMap<PeerId, SyncSession>,
    /// Peers whose session failed through no fault of theirs; retried on the next tick
    /// if still connected (at most one try per peer a round, so no hot loop).
    retry: HashSet<PeerId>,
    /// When each connected peer's session was last retried that way.
    retried: HashMap<PeerId, Instant>,
    pub(super) stats: SyncStats,
    /// Per connected peer: the start of its current window and its reconcile requests in it.
    reconciled: PeerWindows,
    /// The sync set as last built, with the store's `sync_generation` it was built at
    /// and when it was last used: a responder answers every reconcile message of a
    /// session from it instead of reading and sorting the set each time.
    set: Option<(u64, Arc<negentropy::NegentropyStorageVector>, Instant)>,
    /// The flush after the last sync batch, if one was started.
    flush: Option<tokio::task::JoinHandle<()>>,
}

impl Syncs {
    /// Whether a new session with `peer` may start: none runs with it and there is room.
    pub(super) fn may_start(&self, peer: &PeerId) -> bool {
        !self.sessions.contains_key(peer) && self.sessions.len() < MAX_SYNC_SESSIONS
    }

    /// A session with `peer` started, its first request `pending`.
    pub(super) fn started(
        &mut self,
        peer: PeerId,
        initiator: sync::Initiator,
        pending: request_response::OutboundRequestId,
    ) {
        self.stats.sessions += 1;
        self.sessions.insert(
            peer,
            SyncSession {
                initiator: Some(initiator),
                need: Default::default(),
                requested: Default::default(),
                started: Instant::now(),
                pending: Some(pending),
            },
        );
    }

    pub(super) fn session(&mut self, peer: &PeerId) -> Option<&mut SyncSession> {
        self.sessions.get_mut(peer)
    }

    /// The session with `peer` now waits for `id`.
    pub(super) fn waits_for(&mut self, peer: &PeerId, id: request_response::OutboundRequestId) {
        if let Some(session) = self.sessions.get_mut(peer) {
            session.pending = Some(id);
        }
    }

    /// Whether `id` is the request `peer`'s session waits for.
    pub(super) fn is_pending(
        &self,
        peer: &PeerId,
        id: request_response::OutboundRequestId,
    ) -> bool {
        self.sessions
            .get(peer)
            .is_some_and(|s| s.pending == Some(id))
    }

    /// Takes the next batch of ids the session with `peer` needs, and records them as
    /// requested; `None` (and the session ended) when nothing is left.
    pub(super) fn next_batch(&mut self, peer: &PeerId) -> Option<Vec<[u8; 32]>> {
        let session = self.sessions.get_mut(peer)?;
        let mut ids = Vec::new();
        while ids.len() < sync::MAX_FETCH_IDS {
            let Some(id) = session.need.pop_front() else {
                break;
            };
            ids.push(id);
        }
        if ids.is_empty() {
            self.sessions.remove(peer);
            tracing::debug!(%peer, "sync session complete");
            return None;
        }
        session.requested = ids.iter().copied().collect();
        Some(ids)
    }

    /// Ends the session with `peer`, if one runs.
    pub(super) fn end(&mut self, peer: &PeerId) {
        self.sessions.remove(peer);
    }

    /// The session with `peer` failed through nobody's fault (a dropped link, a
    /// timeout): it ends, and is tried again on the next tick, once per peer a round,
    /// so a peer that keeps failing is asked no more often than the round asks everyone.
    pub(super) fn failed(&mut self, peer: PeerId, now: Instant) {
        self.sessions.remove(&peer);
        let last = self.retried.get(&peer).copied();
        if last.is_none_or(|t| now.duration_since(t) >= TICK * SYNC_EVERY) {
            self.retried.insert(peer, now);
            self.retry.insert(peer);
        }
    }

    /// The peers to try again now (each once).
    pub(super) fn take_retries(&mut self) -> HashSet<PeerId> {
        std::mem::take(&mut self.retry)
    }

    /// Counts one reconcile or peer-exchange request from `peer`; whether it is over
    /// `MAX_RECONCILES_PER_WINDOW` in the current `RECONCILE_WINDOW`.
    pub(super) fn over_reconcile_budget(&mut self, peer: PeerId) -> bool {
        self.reconciled
            .count(peer, Instant::now(), RECONCILE_WINDOW)
            > MAX_RECONCILES_PER_WINDOW
    }

    /// `peer`'s last connection closed.
    pub(super) fn disconnected(&mut self, peer: &PeerId) {
        self.reconciled.forget(peer);
        self.retried.remove(peer);
    }

    /// Once a tick: ends sessions older than `SYNC_SESSION_TIMEOUT` and drops a sync
    /// set nobody used for `SYNC_SET_IDLE`.
    pub(super) fn tick(&mut self, now: Instant) {
        self.sessions
            .retain(|_, s| now.duration_since(s.started) < SYNC_SESSION_TIMEOUT);
        if self
            .set
            .as_ref()
            .is_some_and(|(_, _, used)| now.duration_since(*used) >= SYNC_SET_IDLE)
        {
            self.set = None;
        }
    }

    /// The kept sync set, if it was built at `generation`.
    pub(super) fn kept_set(
        &mut self,
        generation: u64,
    ) -> Option<Arc<negentropy::NegentropyStorageVector>> {
        match &mut self.set {
            Some((built, set, used)) if *built == generation => {
                *used = Instant::now();
                Some(set.clone())
            }
            _ => None,
        }
    }

    pub(super) fn keep_set(
        &mut self,
        generation: u64,
        set: Arc<negentropy::NegentropyStorageVector>,
    ) {
        self.set = Some((generation, set, Instant::now()));
    }

    /// Flushes `store` off the event loop after a batch, one flush at a time (a flush
    /// started later covers these writes too).
    pub(super) fn flush_after_batch(&mut self, store: &Store) {
        if self.flush.as_ref().is_none_or(|f| f.is_finished()) {
            let store = store.clone();
            self.flush = Some(tokio::spawn(async move {
                if let Err(e) = store.flush().await {
                    tracing::warn!(error = %e, "flush after sync failed");
                }
            }));
        }
    }

    /// The last flush, for the node's stop to wait on (it holds the store open).
    pub(super) fn take_flush(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.flush.take()
    }
}
