//! What an item says: the typed [`Body`] (a report, an update, a resolve, a retract or a
//! membership operation) of a signed [`Item`], and [`Item::sign`]/[`Item::body`], which
//! encode and decode it. The signed bytes themselves are `signed`'s; the ids and kinds
//! `ids`'.

use crate::codec::{self, CodecError};
use crate::hood::HoodId;
use crate::identity::MemberKeys;
pub use crate::ids::{Kind, OpId};
use crate::limits::MAX_ITEM_BYTES;
use crate::membership::Op;
use crate::report::{Report, Resolve, Retract, Update};
use crate::seen::{Seen, SeenAsk};
pub use crate::signed::Item;

impl Item {
    /// Encodes and signs `body` for `hood`.
    pub fn sign(keys: &MemberKeys, hood: &HoodId, body: &Body) -> Item {
        Item::sign_encoded(keys, hood, body.kind(), body.encode())
    }

    /// Decodes the body as its declared kind.
    pub fn body(&self) -> Result<Body, CodecError> {
        Body::decode(self.kind, &self.body)
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
    /// An anonymous acknowledgement of a report that asked for them (`seen`).
    Seen(Seen),
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Report(_) => Kind::Report,
            Body::Update(_) => Kind::Update,
            Body::Resolve(_) => Kind::Resolve,
            Body::Retract(_) => Kind::Retract,
            Body::Membership(_) => Kind::Membership,
            Body::Seen(_) => Kind::Seen,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Body::Report(b) => encode_report(b),
            Body::Update(b) => codec::encode(b),
            Body::Resolve(b) => codec::encode(b),
            Body::Retract(b) => codec::encode(b),
            Body::Membership(b) => codec::encode(b),
            Body::Seen(b) => codec::encode(b),
        }
    }

    /// Decodes `bytes` as a body of `kind`: the kind byte, not the bytes, decides the type.
    pub fn decode(kind: Kind, bytes: &[u8]) -> Result<Body, CodecError> {
        Ok(match kind {
            Kind::Report => Body::Report(decode_report(bytes)?),
            Kind::Update => Body::Update(codec::decode(bytes, MAX_ITEM_BYTES)?),
            Kind::Resolve => Body::Resolve(codec::decode(bytes, MAX_ITEM_BYTES)?),
            Kind::Retract => Body::Retract(codec::decode(bytes, MAX_ITEM_BYTES)?),
            Kind::Membership => Body::Membership(codec::decode(bytes, MAX_ITEM_BYTES)?),
            Kind::Seen => Body::Seen(codec::decode(bytes, MAX_ITEM_BYTES)?),
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
            Body::Seen(b) => (b.created_at, Some(b.expires_at)),
        }
    }
}

/// A report's fields, then its ask for acknowledgements if any bytes follow: exactly
/// one [`SeenAsk`] (32 bytes), nothing else. Canonical like every decode: the bytes must
/// be what encoding the result gives.
fn decode_report(bytes: &[u8]) -> Result<Report, CodecError> {
    if bytes.len() > MAX_ITEM_BYTES {
        return Err(CodecError::Oversize {
            len: bytes.len(),
            max: MAX_ITEM_BYTES,
        });
    }
    let (mut report, rest): (Report, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(CodecError::Malformed)?;
    if !rest.is_empty() {
        report.ask_seen = Some(codec::decode::<SeenAsk>(rest, 32)?);
    }
    if encode_report(&report) != bytes {
        return Err(CodecError::NonCanonical);
    }
    Ok(report)
}

/// A report's fields, then its ask for acknowledgements when there is one.
fn encode_report(report: &Report) -> Vec<u8> {
    match &report.ask_seen {
        None => codec::encode(report),
        Some(ask) => [codec::encode(report), codec::encode(ask)].concat(),
    }
}
