//! Per-peer counts in fixed windows, for the budgets a connected peer may spend: sync
//! reconcile and peer-exchange requests (`MAX_RECONCILES_PER_WINDOW` a
//! `RECONCILE_WINDOW`) and relayed messages this node cannot read (`IGNORE_BUDGET` an
//! `IGNORE_WINDOW`). One entry per connected peer: the event loop forgets a peer when its
//! last connection closes.

use std::collections::HashMap;

use libp2p::PeerId;
use tokio::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(super) struct PeerWindows {
    /// Per peer: the start of its current window and its count in it.
    windows: HashMap<PeerId, (Instant, u32)>,
}

impl PeerWindows {
    /// Counts one for `peer` at `now` in windows of `window` (a new window starts once
    /// the last one has run out); returns the count in the current window.
    pub(super) fn count(&mut self, peer: PeerId, now: Instant, window: Duration) -> u32 {
        let (start, count) = self.windows.entry(peer).or_insert((now, 0));
        if now.duration_since(*start) >= window {
            (*start, *count) = (now, 0);
        }
        *count = count.saturating_add(1);
        *count
    }

    /// `peer`'s last connection closed.
    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.windows.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts add up within a window, start again in the next, and are per peer.
    #[test]
    fn counts_start_again_in_each_window_and_per_peer() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let window = Duration::from_secs(60);
        let start = Instant::now();
        let mut windows = PeerWindows::default();
        assert_eq!(windows.count(a, start, window), 1);
        assert_eq!(windows.count(a, start + Duration::from_secs(59), window), 2);
        assert_eq!(windows.count(b, start + Duration::from_secs(59), window), 1);
        assert_eq!(windows.count(a, start + window, window), 1);
        windows.forget(&b);
        assert_eq!(windows.count(b, start + window, window), 1);
    }
}
