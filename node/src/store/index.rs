//! The in-memory index of every id seen, built at open from `expiry` and `tombs` and
//! kept in step with them (the module doc of `store` says why it is not in sled).

use super::*;

/// Every id the node has seen, in memory, against about 45 µs of sled lookups and
/// random-key inserts per ingested item in format 2.
#[derive(Default)]
pub(super) struct Index {
    /// Envelope ids: live items and tombstones.
    pub(super) ids: HashMap<Key, Seen>,
    /// Inner item ids, with the time each stays seen until.
    pub(super) items: HashMap<Key, u64>,
    /// How many of `ids` are live.
    pub(super) live: usize,
    /// Each author's newest item's creation time, among the items live at open and
    /// those stored since: evidence of when a member was last active, without a pass
    /// over the expiry index (`status` and `members` ask for it).
    pub(super) latest: HashMap<MemberId, u64>,
    /// Bumped whenever the sync set (live items, operations) may have changed, so that a
    /// copy of the set built from the trees can tell it is still current.
    pub(super) changes: u64,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("ids", &self.ids.len())
            .field("items", &self.items.len())
            .field("live", &self.live)
            .finish()
    }
}

impl Index {
    pub(super) fn seen(&self, id: &[u8; 32]) -> bool {
        self.ids.contains_key(&key(id))
    }

    pub(super) fn seen_item(&self, id: &[u8; 32]) -> bool {
        self.items.contains_key(&key(id))
    }

    pub(super) fn get(&self, id: &[u8; 32]) -> Option<Seen> {
        self.ids.get(&key(id)).copied()
    }

    /// A live item's `(expires_at, created_at)`.
    pub(super) fn live_times(&self, id: &[u8; 32]) -> Option<(u64, u64)> {
        match self.get(id) {
            Some(s) if s.created_at != TOMB => Some((s.until, s.created_at)),
            _ => None,
        }
    }

    /// Records a live item.
    pub(super) fn set_live(&mut self, id: &[u8; 32], expires_at: u64, created_at: u64) {
        self.changes = self.changes.wrapping_add(1);
        let old = self.ids.insert(
            key(id),
            Seen {
                until: expires_at,
                created_at,
            },
        );
        if !matches!(old, Some(s) if s.created_at != TOMB) {
            self.live += 1;
        }
    }

    /// Makes `id` a tombstone kept until at least `keep_until`.
    pub(super) fn tomb(&mut self, id: &[u8; 32], keep_until: u64) {
        let until = match self.get(id) {
            Some(s) if s.created_at == TOMB => s.until.max(keep_until),
            Some(_) => {
                self.live = self.live.saturating_sub(1);
                self.changes = self.changes.wrapping_add(1);
                keep_until
            }
            None => keep_until,
        };
        self.ids.insert(
            key(id),
            Seen {
                until,
                created_at: TOMB,
            },
        );
    }

    /// Forgets a live item that expired; whether it was live with these times.
    pub(super) fn expired(&mut self, id: &[u8; 32], expires_at: u64, created_at: u64) -> bool {
        if self.live_times(id) != Some((expires_at, created_at)) {
            return false;
        }
        self.ids.remove(&key(id));
        self.live = self.live.saturating_sub(1);
        self.changes = self.changes.wrapping_add(1);
        true
    }

    /// Forgets a tombstone kept until before `now`.
    pub(super) fn forget_tomb(&mut self, id: &[u8; 32], now: u64) {
        if self
            .get(id)
            .is_some_and(|s| s.created_at == TOMB && s.until < now)
        {
            self.ids.remove(&key(id));
        }
    }

    pub(super) fn saw_author(&mut self, author: MemberId, created_at: u64) {
        let at = self.latest.entry(author).or_insert(created_at);
        *at = (*at).max(created_at);
    }

    pub(super) fn see_item(&mut self, id: &[u8; 32], until: u64) {
        let at = self.items.entry(key(id)).or_insert(until);
        *at = (*at).max(until);
    }

    /// Forgets an inner item id seen until `at` or before.
    pub(super) fn forget_item(&mut self, id: &[u8; 32], at: u64) {
        if self.items.get(&key(id)).is_some_and(|until| *until <= at) {
            self.items.remove(&key(id));
        }
    }
}
