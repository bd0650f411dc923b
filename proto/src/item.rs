//! The signed inner item: author, kind, the exact body bytes, and a signature over
//! `ITEM ‖ hood ‖ kind ‖ body`. The signature covers the bytes that travel; nothing is
//! re-serialized to verify.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{self, CodecError};
use crate::domain;
use crate::hood::HoodId;
use crate::identity::{MemberId, MemberKeys, Signature};
use crate::limits::MAX_ITEM_BYTES;
use crate::membership::Op;
use crate::report::{Report, Resolve, Retract, Update};

/// What an item's body is. On the wire and in the signature: one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Kind {
    Report = 1,
    Update = 2,
    Resolve = 3,
    Retract = 4,
    Membership = 5,
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
            _ => return Err("unknown item kind"),
        })
    }
}

/// An inner item, as it travels inside an envelope (and, for membership operations, in
/// a `Welcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub author: MemberId,
    pub kind: Kind,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub signature: Signature,
}

impl Item {
    /// Encodes and signs `body` for `hood`.
    pub fn sign(keys: &MemberKeys, hood: &HoodId, body: &Body) -> Item {
        let kind = body.kind();
        let body = body.encode();
        let signature = keys.sign(&[domain::ITEM, &hood.0, &[u8::from(kind)], &body]);
        Item {
            author: keys.id(),
            kind,
            body,
            signature,
        }
    }

    pub fn verify(&self, hood: &HoodId) -> bool {
        self.author.verify(
            &[domain::ITEM, &hood.0, &[u8::from(self.kind)], &self.body],
            &self.signature,
        )
    }

    /// [`Item::verify`] with the author's key already decompressed. `key` must be the
    /// author's (a roster's cache, keyed by author).
    pub fn verify_with(&self, hood: &HoodId, key: &ed25519_dalek::VerifyingKey) -> bool {
        key.as_bytes() == &self.author.0
            && crate::identity::verify_with(
                key,
                &[domain::ITEM, &hood.0, &[u8::from(self.kind)], &self.body],
                &self.signature,
            )
    }

    /// Decodes the body as its declared kind.
    pub fn body(&self) -> Result<Body, CodecError> {
        Body::decode(self.kind, &self.body)
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Item, CodecError> {
        codec::decode(bytes, MAX_ITEM_BYTES)
    }

    /// The id of the item itself, independent of the envelope that carried it: the
    /// identity of a membership operation, and the key for deduplicating re-sealed copies.
    pub fn op_id(&self) -> OpId {
        OpId::of(&self.encode())
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

/// A decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Report(Report),
    Update(Update),
    Resolve(Resolve),
    Retract(Retract),
    Membership(Op),
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Report(_) => Kind::Report,
            Body::Update(_) => Kind::Update,
            Body::Resolve(_) => Kind::Resolve,
            Body::Retract(_) => Kind::Retract,
            Body::Membership(_) => Kind::Membership,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Body::Report(b) => codec::encode(b),
            Body::Update(b) => codec::encode(b),
            Body::Resolve(b) => codec::encode(b),
            Body::Retract(b) => codec::encode(b),
            Body::Membership(b) => codec::encode(b),
        }
    }

    /// Decodes `bytes` as a body of `kind`: the kind byte, not the bytes, decides the type.
    pub fn decode(kind: Kind, bytes: &[u8]) -> Result<Body, CodecError> {
        Ok(match kind {
            Kind::Report => Body::Report(codec::decode(bytes, MAX_ITEM_BYTES)?),
            Kind::Update => Body::Update(codec::decode(bytes, MAX_ITEM_BYTES)?),
            Kind::Resolve => Body::Resolve(codec::decode(bytes, MAX_ITEM_BYTES)?),
            Kind::Retract => Body::Retract(codec::decode(bytes, MAX_ITEM_BYTES)?),
            Kind::Membership => Body::Membership(codec::decode(bytes, MAX_ITEM_BYTES)?),
        })
    }

    /// `(created_at, expires_at)`; membership operations never expire.
    pub fn times(&self) -> (u64, Option<u64>) {
        match self {
            Body::Report(b) => (b.created_at, Some(b.expires_at)),
            Body::Update(b) => (b.created_at, Some(b.expires_at)),
            Body::Resolve(b) => (b.created_at, Some(b.expires_at)),
            Body::Retract(b) => (b.created_at, Some(b.expires_at)),
            Body::Membership(op) => (op.created_at(), None),
        }
    }
}
