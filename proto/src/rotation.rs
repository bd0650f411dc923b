//! Rotating exchange keys (issue #20): a member replaces the X25519 key that epoch keys
//! are wrapped to with a `Rotate` operation, signed by its identity like every other
//! operation, so nobody can publish an exchange key for someone else: a `Rotate` has no
//! target, it sets its author's key. Rekeys and joins wrap to each member's key as the
//! fold gives it at the builder's roster, which is the rekeyer's causal past: the newest
//! key in it. The old secret is deleted by the member's node once what was wrapped to it
//! has been opened (`docs/protocol.md` § Rotating exchange keys).
//!
//! A rotation is an operation, not a field of `Rekey`, so that a member who never rekeys
//! still rotates on its schedule, and so that old rekeys decode as before. Its cost is
//! one operation along the author's chain and against its budget, like any other: a
//! storm of rotations is bounded by the per-member cap ([`crate::limits::MAX_OPS_PER_MEMBER`]).

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::identity::{ExchangeKey, ExchangeSecret, MemberId, MemberKeys};
use crate::ids::OpId;
use crate::membership::{Denied, MembershipError, Op, Roster, State};
use crate::signed::Item;

/// A member's new exchange key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotate {
    pub parents: Vec<OpId>,
    pub created_at: u64,
    pub exchange_key: ExchangeKey,
}

/// Structure: a key an epoch key can be wrapped to (not of low order, M3).
pub(crate) fn verify(r: &Rotate) -> Result<(), MembershipError> {
    if !r.exchange_key.is_usable() {
        return Err(MembershipError::BadExchangeKey);
    }
    Ok(())
}

/// Whether `author` (a member: `State::check` saw to it) may take `r.exchange_key`: not
/// a key some member holds now, so that one member cannot claim another's key and have
/// wraps addressed to itself readable by that other member.
pub(crate) fn check(state: &State, author: &MemberId, r: &Rotate) -> Result<(), Denied> {
    if state
        .members
        .values()
        .any(|m| m.exchange_key == r.exchange_key && m.id != *author)
    {
        return Err(Denied::ExchangeKeyTaken);
    }
    Ok(())
}

/// Applies a rotation [`check`] allowed: wraps made from here on go to the new key.
pub(crate) fn apply(state: &mut State, author: &MemberId, r: &Rotate) {
    if let Some(m) = state.members.get_mut(author) {
        m.exchange_key = r.exchange_key;
    }
}

impl Roster {
    /// Makes a `Rotate`: a fresh exchange secret for `keys`' member, and the signed
    /// operation that publishes its public key. The caller keeps the secret (and the old
    /// one until what was wrapped to it is opened).
    pub fn rotate(
        &self,
        keys: &MemberKeys,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<(Item, ExchangeSecret), MembershipError> {
        self.ensure_settled()?;
        let secret = ExchangeSecret::generate(rng);
        let op = Op::Rotate(Rotate {
            parents: self.parents_for(&keys.id()),
            created_at: now,
            exchange_key: secret.public(),
        });
        Ok((self.sign_allowed(keys, op)?, secret))
    }
}
