//! Rotating exchange keys and healing rekeys, on the node's side (issue #20): the
//! member's exchange secrets (the identity's first one, then each rotated one, kept in
//! the store's `exchange` tree), the rotation schedule, the deletion of old secrets, and
//! the daily healing rekey. The rules are `porchlight_proto::rotation` and
//! `porchlight_proto::healing`; `docs/protocol.md` § Rotating exchange keys and
//! § Healing rekeys say when each thing happens.

use porchlight_proto::healing::ROTATE_EVERY;
use porchlight_proto::{ExchangeKey, ExchangeSecret};
use rand_core::CryptoRng;

use super::{Engine, EngineError};
use crate::store::ExchangeRecord;

/// How long an old exchange secret is kept after this node first sees the roster give
/// the member a newer key: a rekey made meanwhile by a member who had not heard of the
/// rotation still wraps to the old key, and arrives within this in a connected hood. One
/// that arrives later does not open; the node then lacks the sealing key and rekeys
/// (`Engine::repair_keys`), so it reads again.
pub const EXCHANGE_GRACE: u64 = 3_600;

impl Engine {
    /// The exchange secrets held, from the store; the identity's own first secret if
    /// none is stored yet (a node from before rotation, or a new one).
    pub(super) fn load_exchange(&mut self) -> Result<(), EngineError> {
        let mut held = self.store.exchange_secrets()?;
        if held.is_empty() {
            let joined = self
                .roster
                .member(&self.keys.id())
                .map_or(0, |m| m.joined_at);
            let first = ExchangeRecord {
                secret: self.keys.first_exchange_secret(),
                made_at: joined,
                superseded_at: None,
            };
            self.store.put_exchange(&first)?;
            held.push(first);
        }
        self.exchange = held;
        Ok(())
    }

    /// Whether the identity's first exchange secret is still held by these keys though
    /// the store's exchange secrets no longer include it (a rotation superseded it and
    /// it was deleted): the node then scrubs it from the key file
    /// (`identity::retire_exchange`) and from memory ([`Engine::forget_first_exchange`]).
    pub fn first_exchange_retired(&self) -> bool {
        let first = self.keys.first_exchange_secret().public();
        self.keys.has_exchange()
            && !self.exchange.is_empty()
            && self.exchange.iter().all(|r| r.secret.public() != first)
    }

    /// Drops the identity's first exchange secret from memory (see
    /// [`Engine::first_exchange_retired`]).
    pub fn forget_first_exchange(&mut self) {
        self.keys = self.keys.without_exchange();
    }

    /// The secrets wraps to us are tried with, oldest first.
    pub(super) fn exchange_secrets(&self) -> Vec<ExchangeSecret> {
        self.exchange.iter().map(|r| r.secret.clone()).collect()
    }

    /// The exchange key the roster gives this member now.
    fn current_exchange(&self) -> Option<ExchangeKey> {
        self.roster.member(&self.keys.id()).map(|m| m.exchange_key)
    }

    /// Whether this member's exchange key is due for rotation at `now`: its newest
    /// secret is [`ROTATE_EVERY`] old.
    pub fn rotation_due(&self, now: u64) -> bool {
        self.roster.is_member(&self.keys.id())
            && !self.roster.is_provisional()
            && self
                .exchange
                .iter()
                .map(|r| r.made_at)
                .max()
                .is_none_or(|made| now >= made.saturating_add(ROTATE_EVERY))
    }

    /// Publishes a new exchange key: the secret is stored before the operation that
    /// names its public key, so a crash between the two loses nothing wrapped to it.
    pub async fn rotate(
        &mut self,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<ExchangeKey, EngineError> {
        self.ensure_member()?;
        self.ensure_settled()?;
        let (op, secret) = self.roster.rotate(&self.keys, now, rng)?;
        let record = ExchangeRecord {
            secret,
            made_at: now,
            superseded_at: None,
        };
        self.store.put_exchange(&record)?;
        let public = record.secret.public();
        self.exchange.push(record);
        self.submit_op(&op, now, rng).await?;
        tracing::info!(key = ?public, "exchange key rotated");
        Ok(public)
    }

    /// Deletes old exchange secrets: one the roster no longer gives this member is
    /// marked superseded when first seen so, and deleted from memory and store
    /// [`EXCHANGE_GRACE`] later, after every wrap to it in the log has been tried.
    pub(super) fn retire_exchange(&mut self, now: u64) -> Result<(), EngineError> {
        let Some(current) = self.current_exchange() else {
            return Ok(());
        };
        let mut changed = false;
        for record in &mut self.exchange {
            if record.secret.public() != current && record.superseded_at.is_none() {
                record.superseded_at = Some(now);
                self.store.put_exchange(record)?;
            }
            changed |= record
                .superseded_at
                .is_some_and(|at| now >= at.saturating_add(EXCHANGE_GRACE));
        }
        if !changed {
            return Ok(());
        }
        // Open whatever is still addressed to the old secrets first.
        self.learn_keys()?;
        let (gone, kept): (Vec<ExchangeRecord>, Vec<ExchangeRecord>) =
            std::mem::take(&mut self.exchange)
                .into_iter()
                .partition(|r| {
                    r.superseded_at
                        .is_some_and(|at| now >= at.saturating_add(EXCHANGE_GRACE))
                });
        self.exchange = kept;
        for record in gone {
            self.store.forget_exchange(&record.secret.public())?;
            tracing::info!(key = ?record.secret.public(), "old exchange secret deleted");
        }
        Ok(())
    }

    /// Whether the event loop has key upkeep to do at `now`: a healing rekey that is
    /// this member's to make, or a rotation.
    pub fn upkeep_due(&self, now: u64) -> bool {
        self.roster.healing_due(&self.keys.id(), now) || self.rotation_due(now)
    }

    /// Key upkeep: the day's healing rekey if it is this member's to make (after a
    /// rotation, so that the new epoch's wrap to this member goes to a key a copy taken
    /// earlier lacks), else a rotation if one is due. Returns whether it did anything.
    pub async fn upkeep(
        &mut self,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<bool, EngineError> {
        if self.roster.healing_due(&self.keys.id(), now) {
            self.rotate(now, rng).await?;
            let (op, _, _) = self.roster.rekey(&self.keys, now, rng)?;
            self.submit_op(&op, now, rng).await?;
            tracing::info!("healing rekey made");
            return Ok(true);
        }
        if self.rotation_due(now) {
            self.rotate(now, rng).await?;
            return Ok(true);
        }
        Ok(false)
    }
}
