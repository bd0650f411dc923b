//! The signed inner item: author, kind, the exact body bytes, and a signature over
//! `ITEM ‖ hood ‖ kind ‖ body`. The signature covers the bytes that travel; nothing is
//! re-serialized to verify. What the body bytes mean is `item`'s ([`crate::item::Body`]);
//! this module knows only bytes, so `membership` and `envelope` can build on it.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::domain;
use crate::hood::HoodId;
use crate::identity::{MemberId, MemberKeys, Signature};
use crate::ids::{Kind, OpId};
use crate::limits::MAX_ITEM_BYTES;

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
    /// Signs the encoded `body` of `kind` for `hood`: the signature covers these exact
    /// bytes. [`Item::sign`] encodes a typed body first.
    pub fn sign_encoded(keys: &MemberKeys, hood: &HoodId, kind: Kind, body: Vec<u8>) -> Item {
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
