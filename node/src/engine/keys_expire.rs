//! Keys that expire, on the node's side: every window key older than what a live item
//! can need is deleted from memory and from the store, epochs whose windows are all that
//! old go entirely, and a sealing epoch that cannot seal now (its ratchet ran out, or a
//! legacy epoch from protocol 2) makes the next post rekey first. The rules and the
//! reasoning are in `docs/protocol.md` § Key schedule; the protocol side is
//! `porchlight_proto::keys`.

use porchlight_proto::EpochId;
use porchlight_proto::keys::{self, Forgot};

use super::{Engine, EngineError};

impl Engine {
    /// The epoch membership operations are sealed under: of the epochs this node holds
    /// that can seal now, the newest one that every current member holds too, so that
    /// all of them can open it (a `Rekey` cannot travel under its own new key, and a
    /// rekey that skipped someone must not lock them out of the operations that repair
    /// it); else the newest such epoch this node holds. An epoch whose ratchet has run
    /// out (or that starts later than now) is skipped, so a backdated rekey that became
    /// the newest epoch cannot push operations off gossip. `None` when no epoch held can
    /// seal now.
    pub(super) fn newest_held_epoch(&self, now: u64) -> Option<EpochId> {
        let window = keys::window_of(now);
        let held: Vec<&porchlight_proto::membership::Epoch> = self
            .roster
            .epochs()
            .filter(|e| self.ring.get(&e.id).is_some_and(|k| k.can_seal_at(window)))
            .collect();
        let common = held
            .iter()
            .filter(|e| self.roster.members().all(|m| e.holders.contains(&m.id)))
            .max_by_key(|e| (e.generation, e.id));
        common
            .or_else(|| held.iter().max_by_key(|e| (e.generation, e.id)))
            .map(|e| e.id)
    }

    /// Ratchets every epoch past the windows no live item can be in (the hood's longest
    /// lifetime, plus clock skew, before `now`) and persists the new state, or deletes
    /// the epoch when all its windows are that old.
    pub(super) fn forget_old_windows(&mut self, now: u64) -> Result<(), EngineError> {
        let oldest = keys::oldest_live_window(now, self.roster.policy().max_ttl_secs);
        for (epoch, forgot) in self.ring.forget_before(oldest) {
            match forgot {
                Forgot::Advanced => {
                    if let Some(key) = self.ring.get(&epoch) {
                        self.store.put_key(key)?;
                    }
                }
                Forgot::Dropped => {
                    self.store.forget_key(&epoch)?;
                    tracing::info!(%epoch, "epoch key deleted: all its windows are older than any live item");
                }
            }
        }
        Ok(())
    }

    /// Whether the sealing epoch cannot seal what is made now: its ratchet has run out of
    /// windows, or it is a legacy (protocol 2) epoch without a ratchet. Either way the
    /// next post rekeys first.
    pub(super) fn sealing_epoch_spent(&self, now: u64) -> bool {
        self.roster
            .sealing_epoch()
            .and_then(|e| self.ring.get(&e))
            .is_some_and(|k| k.is_legacy() || !k.can_seal_at(keys::window_of(now)))
    }
}
