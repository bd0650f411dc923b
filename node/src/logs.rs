//! Rate-limited log lines: what anyone who reaches the port can cause (a malformed join
//! request, say) is logged a few times a window, and the rest counted, so that nobody can
//! fill a home server's disk or journal with our log.

use std::time::{Duration, Instant};

/// A budget of log lines per window. Time is passed in.
#[derive(Debug, Clone)]
pub struct Budget {
    per_window: u32,
    window: Duration,
    started: Option<Instant>,
    used: u32,
    suppressed: u64,
}

/// Whether to log now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Log the line; `suppressed` lines were dropped since the last one logged.
    Log { suppressed: u64 },
    /// Over the budget: counted, not logged.
    Quiet,
}

impl Budget {
    pub fn new(per_window: u32, window: Duration) -> Budget {
        Budget {
            per_window,
            window,
            started: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Takes one line from the budget at `now`.
    pub fn take(&mut self, now: Instant) -> Take {
        let fresh = self
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.window);
        if fresh {
            self.started = Some(now);
            self.used = 0;
        }
        if self.used < self.per_window {
            self.used += 1;
            let suppressed = std::mem::take(&mut self.suppressed);
            Take::Log { suppressed }
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            Take::Quiet
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_a_few_a_window_and_counts_the_rest() {
        let start = Instant::now();
        let mut budget = Budget::new(3, Duration::from_secs(60));
        let takes: Vec<Take> = (0..1000).map(|_| budget.take(start)).collect();
        assert_eq!(
            takes
                .iter()
                .filter(|t| matches!(t, Take::Log { .. }))
                .count(),
            3
        );
        // The next window logs again, and says how many were dropped.
        assert_eq!(
            budget.take(start + Duration::from_secs(61)),
            Take::Log { suppressed: 997 }
        );
        assert_eq!(
            budget.take(start + Duration::from_secs(62)),
            Take::Log { suppressed: 0 }
        );
    }
}
