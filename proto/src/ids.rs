//! The ids and kinds every other protocol module names: an item's [`Kind`], a membership
//! operation's [`OpId`] and an item's [`ItemId`]. They sit below `item`, `envelope`,
//! `report` and `membership`, so those modules import them from here and not from each
//! other.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec;
use crate::domain;

/// What an item's body is. On the wire and in the signature: one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Kind {
    Report = 1,
    Update = 2,
    Resolve = 3,
    Retract = 4,
    Membership = 5,
    /// An anonymous acknowledgement that a person read a report (`seen`).
    Seen = 6,
}

impl From<Kind> for u8 {
    fn from(kind: Kind) -> u8 {
        kind as u8
    }
}

impl TryFrom<u8> for Kind {
    type Error = &'static str;
    fn try_from(byte: u8) -> Result<Kind, &'static str> {
        Ok(match byte {
            1 => Kind::Report,
            2 => Kind::Update,
            3 => Kind::Resolve,
            4 => Kind::Retract,
            5 => Kind::Membership,
            6 => Kind::Seen,
            _ => return Err("unknown item kind"),
        })
    }
}

/// `SHA-256(OP_ID ‖ item bytes)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(pub [u8; 32]);

impl OpId {
    pub fn of(item_bytes: &[u8]) -> OpId {
        OpId(
            Sha256::new()
                .chain_update(domain::OP_ID)
                .chain_update(item_bytes)
                .finalize()
                .into(),
        )
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpId({})", &codec::hex(&self.0)[..12])
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&codec::hex(&self.0))
    }
}

/// An item's id: `SHA-256(OP_ID ‖ inner item bytes)` ([`ItemId::of_item`]), the same for
/// every envelope that carries the signed item, so a copy re-sealed by anyone holding the
/// epoch key is the same item everywhere: in the store, in sync, and in the updates,
/// resolves and retracts that name it. (Protocol 1 named items by envelope.)
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemId(pub [u8; 32]);

impl ItemId {
    /// The id of the item whose exact encoded bytes are `item_bytes`.
    pub fn of_item(item_bytes: &[u8]) -> ItemId {
        ItemId(OpId::of(item_bytes).0)
    }

    /// `SHA-256(ITEM_ID ‖ envelope bytes)`: the envelope's own hash, gossipsub's message
    /// id (so the exact same bytes are not relayed twice). Not the item's id.
    pub fn of_envelope(envelope_bytes: &[u8]) -> ItemId {
        ItemId(
            Sha256::new()
                .chain_update(domain::ITEM_ID)
                .chain_update(envelope_bytes)
                .finalize()
                .into(),
        )
    }

    pub fn to_hex(&self) -> String {
        codec::hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<ItemId> {
        codec::parse_hex(s).map(ItemId)
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ItemId({})", &self.to_hex()[..12])
    }
}
