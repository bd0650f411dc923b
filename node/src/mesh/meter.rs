//! Peer metering: one byte budget per member for what this node reads from its store
//! and disk to answer others (sync `Fetch` answers and clip chunks). A member within its
//! budget is served; over it, it is slowed (its requests are refused, or dropped, until
//! the window ends); one that keeps asking while over it is penalized. Honest catch-up
//! fits in the budget: 100,000 missed items are about 38 MiB of fetches
//! (docs/performance.md, "Catch-up sync").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Bytes of fetch answers and clip chunks one member gets per `WINDOW`.
pub const BYTES_PER_WINDOW: u64 = 64 * 1024 * 1024;
/// The metering window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Requests refused in one window (over the budget) before the member is penalized.
pub const MAX_REFUSED: u32 = 32;
/// Most members metered at once; past that, the entry whose window started first goes.
pub const MAX_METERED: usize = 4096;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within budget: answer it (and count what the answer costs with [`Meter::spent`]).
    Serve,
    /// Over budget: refuse it for now.
    SlowDown,
    /// Over budget and still asking: penalize the member.
    Penalize,
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    start: Instant,
    bytes: u64,
    refused: u32,
}

/// Per-member byte budgets.
#[derive(Debug, Default)]
pub struct Meter {
    peers: HashMap<PeerId, Usage>,
}

impl Meter {
    fn usage(&mut self, peer: PeerId, now: Instant) -> &mut Usage {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_METERED {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, u)| u.start)
                .map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
            }
        }
        let usage = self.peers.entry(peer).or_insert(Usage {
            start: now,
            bytes: 0,
            refused: 0,
        });
        if now.duration_since(usage.start) >= WINDOW {
            *usage = Usage {
                start: now,
                bytes: 0,
                refused: 0,
            };
        }
        usage
    }

    /// Judges a request from `peer` before any work is done for it.
    pub fn check(&mut self, peer: PeerId, now: Instant) -> Verdict {
        let usage = self.usage(peer, now);
        if usage.bytes < BYTES_PER_WINDOW {
            return Verdict::Serve;
        }
        usage.refused += 1;
        if usage.refused > MAX_REFUSED {
            Verdict::Penalize
        } else {
            Verdict::SlowDown
        }
    }

    /// Counts `bytes` answered to `peer`.
    pub fn spent(&mut self, peer: PeerId, bytes: usize, now: Instant) {
        let usage = self.usage(peer, now);
        usage.bytes = usage.bytes.saturating_add(bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_over_budget_is_slowed_then_penalized_and_served_again_next_window() {
        let mut meter = Meter::default();
        let (hog, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let answer = 4 * 1024 * 1024;
        for _ in 0..BYTES_PER_WINDOW / answer as u64 {
            assert_eq!(meter.check(hog, t0), Verdict::Serve);
            meter.spent(hog, answer, t0);
        }
        for _ in 0..MAX_REFUSED {
            assert_eq!(meter.check(hog, t0), Verdict::SlowDown);
        }
        assert_eq!(meter.check(hog, t0), Verdict::Penalize);
        assert_eq!(
            meter.check(other, t0),
            Verdict::Serve,
            "budgets are per member"
        );
        assert_eq!(
            meter.check(hog, t0 + WINDOW),
            Verdict::Serve,
            "a new window"
        );
    }

    #[test]
    fn the_metered_members_are_bounded() {
        let mut meter = Meter::default();
        let t0 = Instant::now();
        for i in 0..MAX_METERED + 10 {
            meter.spent(PeerId::random(), 1, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(meter.peers.len(), MAX_METERED);
    }
}
