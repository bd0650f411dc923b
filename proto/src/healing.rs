//! Healing rekeys (issue #20): once a day one member, chosen the same way by every node,
//! makes a fresh epoch wrapped to every member's newest exchange key. A device whose
//! secrets were copied and whose member has rotated its exchange key since
//! ([`crate::rotation`]) cannot open it: the copy is locked out from then on, without a
//! removal.
//!
//! Who heals on day `d` (days of [`HEAL_EVERY`] seconds since the epoch of Unix time):
//! the current members sorted by id, starting at `SHA-256(HEAL ‖ hood ‖ newest epoch ‖ d)`
//! modulo their number; the member at rank `r` from there heals once the day is
//! `r · HEAL_GRACE` old and no epoch was made during the day yet. So one member rekeys
//! (no storm), and if it is offline the next one does an hour later. An honest node
//! counts any epoch made during the day (a removal's rekey too) as the day's healing.

use sha2::{Digest, Sha256};

use crate::identity::MemberId;
use crate::membership::Roster;

/// How often the hood heals: one rekey a day.
pub const HEAL_EVERY: u64 = 86_400;
/// How long each member in the day's order is given before the next one heals.
pub const HEAL_GRACE: u64 = 3_600;
/// How often a member rotates its exchange key when it has not rekeyed (it also rotates
/// after each rekey it makes): daily, before the day's healing can be more than a day
/// behind a copy.
pub const ROTATE_EVERY: u64 = 86_400;

/// Domain label of the healer choice.
const HEAL: &[u8] = b"porchlight/heal/v1\0";

impl Roster {
    /// The members in the order they heal on the day `now` falls in (the first is the
    /// day's healer), or none without an epoch or members.
    pub fn healers(&self, now: u64) -> Vec<MemberId> {
        let day = now / HEAL_EVERY;
        let Some(newest) = self.epochs().max_by_key(|e| (e.generation, e.id)) else {
            return Vec::new();
        };
        let members: Vec<MemberId> = self.members().map(|m| m.id).collect();
        if members.is_empty() {
            return Vec::new();
        }
        let digest = Sha256::new()
            .chain_update(HEAL)
            .chain_update(self.hood().0)
            .chain_update(newest.id.0)
            .chain_update(day.to_be_bytes())
            .finalize();
        let mut start = [0u8; 8];
        start.copy_from_slice(&digest[..8]);
        let n = members.len();
        let start = usize::try_from(u64::from_be_bytes(start) % n as u64).unwrap_or(0);
        (0..n).map(|i| members[(start + i) % n]).collect()
    }

    /// Whether `me` should make the healing rekey now: no epoch was made during the day
    /// `now` falls in, and `me`'s rank in the day's order has come (`rank · HEAL_GRACE`
    /// into the day).
    pub fn healing_due(&self, me: &MemberId, now: u64) -> bool {
        if self.is_provisional() || !self.is_member(me) {
            return false;
        }
        let day_start = now - now % HEAL_EVERY;
        // Only the epoch everyone seals under counts: any member can make a rekey dated
        // today that never becomes it (a low generation), and that must not switch the
        // day's healing off (a hostile review, 2026-12-08).
        if self
            .sealing_epoch()
            .and_then(|id| self.epoch(&id))
            .is_some_and(|e| e.created_at >= day_start)
        {
            return false;
        }
        self.healers(now)
            .iter()
            .position(|m| m == me)
            .is_some_and(|rank| now >= day_start + rank as u64 * HEAL_GRACE)
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::{NOW, TestHood};

    use super::*;

    #[test]
    fn one_member_heals_first_and_the_next_one_an_hour_later() {
        let mut h = TestHood::new(31);
        for _ in 0..4 {
            h.join(0, 0);
        }
        let next_day = NOW - NOW % HEAL_EVERY + HEAL_EVERY;
        let order = h.roster.healers(next_day);
        assert_eq!(order.len(), 5);
        let due = |at: u64| -> Vec<MemberId> {
            h.members
                .iter()
                .map(|m| m.keys.id())
                .filter(|id| h.roster.healing_due(id, at))
                .collect()
        };
        // The day the hood was founded: its epoch is from today, nobody heals.
        assert!(due(NOW).is_empty());
        assert_eq!(due(next_day), vec![order[0]]);
        assert_eq!(due(next_day + HEAL_GRACE - 1), vec![order[0]]);
        let mut two = due(next_day + HEAL_GRACE);
        two.sort();
        let mut want = vec![order[0], order[1]];
        want.sort();
        assert_eq!(two, want);
        // The first healer changes from day to day.
        let firsts: std::collections::BTreeSet<MemberId> = (0..20)
            .map(|d| h.roster.healers(next_day + d * HEAL_EVERY)[0])
            .collect();
        assert!(firsts.len() > 1);
    }
}
