//! "Seen by" (issue #22): an urgent report may ask for acknowledgements, and each member
//! whose person read it answers once with an anonymous `Seen` item that only the report's
//! author can attribute.
//!
//! - The report carries a fresh X25519 public key, [`SeenAsk`], made for it alone; only
//!   the author's node holds its secret, and deletes it when the report expires.
//! - An ack is an ordinary item of kind `Seen`, sealed in an ordinary hood envelope, but
//!   its `author` is a **one-time ed25519 key** made for this ack, not the member: other
//!   members learn that *an* ack for the report exists, and when, not whose it is.
//! - Inside, `sealed` is HPKE (RFC 9180 base mode, X25519, HKDF-SHA256,
//!   ChaCha20-Poly1305) to the report's key, with `info = SEEN_SEAL ‖ hood ‖ report ‖
//!   one-time key`, of `acker id ‖ acker signature`, the signature over `SEEN ‖ hood ‖
//!   report ‖ one-time key`. The author opens it ([`open`]): the acker's signature binds
//!   the ack to its report and to the one-time key that signs the item, so neither part
//!   can be moved to another ack, and nobody but a member can make one that counts.
//!
//! Validation (`validate`) cannot tell whose an ack is, by design: it checks the
//! one-time signature, that the report is known and asked for acks, that the ack expires
//! with it, and how many acks the report already has. Counting distinct members is the
//! author's node's.

use hpke::aead::ChaCha20Poly1305 as HpkeAead;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256 as Kem;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::codec::fixed;
use crate::domain;
use crate::hood::HoodId;
use crate::identity::{ExchangeKey, MemberId, MemberKeys, Signature};
use crate::ids::ItemId;
use crate::signed::Item;

/// What the sealed part of an ack opens to: the acker's id (32) and signature (64).
const PLAIN_BYTES: usize = 32 + 64;
/// The sealed part: the HPKE ciphertext of [`PLAIN_BYTES`] and its 16-byte tag.
pub const SEALED_BYTES: usize = PLAIN_BYTES + 16;

/// A report's request for acknowledgements: the X25519 public key acks are sealed to.
/// On the wire it follows the report's other fields (`docs/protocol.md`, § Seen by), so
/// a report that asks for none is encoded exactly as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenAsk {
    pub key: [u8; 32],
}

impl SeenAsk {
    /// A fresh ask and its secret, for one report. The secret is the author's node's to
    /// keep until the report expires, and never to send.
    pub fn generate(rng: &mut impl CryptoRng) -> (SeenAsk, Zeroizing<[u8; 32]>) {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut());
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret));
        (
            SeenAsk {
                key: public.to_bytes(),
            },
            secret,
        )
    }

    /// Whether acks can be sealed to this key (not a low-order point: see
    /// [`ExchangeKey::is_usable`]).
    pub fn is_usable(&self) -> bool {
        ExchangeKey(self.key).is_usable()
    }
}

/// An acknowledgement: the body of an item of kind `Seen`, signed by a one-time key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub created_at: u64,
    /// Always the report's `expires_at`: an ack lives exactly as long as its report.
    pub expires_at: u64,
    pub report: ItemId,
    /// HPKE's encapsulated key.
    pub enc: [u8; 32],
    #[serde(with = "fixed")]
    pub sealed: [u8; SEALED_BYTES],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeenError {
    #[error("the report's seen key is not usable")]
    BadKey,
    #[error("the ack does not open with this report's key")]
    DoesNotOpen,
    #[error("the ack's signature is not its acker's")]
    BadSignature,
    #[error("the item is not an ack")]
    NotAnAck,
    #[error("the acker could not read the report (not a member when it was posted)")]
    NotAReader,
    #[error("the report's author cannot acknowledge it")]
    OwnReport,
}

fn info(hood: &HoodId, report: &ItemId, once: &MemberId) -> Vec<u8> {
    [domain::SEEN_SEAL, &hood.0, &report.0, &once.0].concat()
}

fn signed_parts<'a>(hood: &'a HoodId, report: &'a ItemId, once: &'a MemberId) -> [&'a [u8]; 4] {
    [domain::SEEN, &hood.0, &report.0, &once.0]
}

/// The ack `acker` sends for `report`, which asked with `ask`: a `Seen` item signed by a
/// fresh one-time key. `expires_at` must be the report's.
pub fn acknowledge(
    acker: &MemberKeys,
    hood: &HoodId,
    report: ItemId,
    ask: &SeenAsk,
    created_at: u64,
    expires_at: u64,
    rng: &mut impl CryptoRng,
) -> Result<Item, SeenError> {
    let once = MemberKeys::generate(rng);
    let once_id = once.id();
    let signature = acker.sign(&signed_parts(hood, &report, &once_id));
    let mut plain = Zeroizing::new([0u8; PLAIN_BYTES]);
    plain[..32].copy_from_slice(&acker.id().0);
    plain[32..].copy_from_slice(&signature.0);
    let public =
        <Kem as hpke::Kem>::PublicKey::from_bytes(&ask.key).map_err(|_| SeenError::BadKey)?;
    let (enc, ct) = hpke::single_shot_seal_with_rng::<HpkeAead, HkdfSha256, Kem>(
        &OpModeS::Base,
        &public,
        &info(hood, &report, &once_id),
        plain.as_ref(),
        &[],
        rng,
    )
    .map_err(|_| SeenError::BadKey)?;
    let sealed: [u8; SEALED_BYTES] = ct.as_slice().try_into().map_err(|_| SeenError::BadKey)?;
    let mut enc_bytes = [0u8; 32];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    let body = Seen {
        created_at,
        expires_at,
        report,
        enc: enc_bytes,
        sealed,
    };
    Ok(Item::sign(&once, hood, &crate::item::Body::Seen(body)))
}

/// Who sent the ack `item` (whose body is `seen`), as the report's author finds with the
/// ask's `secret`: the acker's member id, once the ack opens, their signature checks,
/// and they are one of `readers` (the members who could read the report: the roster at
/// posting, minus the author). Anyone else's ack (a non-member's, a removed member's
/// with a key they kept, the author's own) counts for nothing.
pub fn open(
    item: &Item,
    seen: &Seen,
    hood: &HoodId,
    secret: &[u8; 32],
    readers: &[MemberId],
) -> Result<MemberId, SeenError> {
    if item.kind != crate::ids::Kind::Seen {
        return Err(SeenError::NotAnAck);
    }
    let private =
        <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|_| SeenError::BadKey)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&seen.enc)
        .map_err(|_| SeenError::DoesNotOpen)?;
    let plain = Zeroizing::new(
        hpke::single_shot_open::<HpkeAead, HkdfSha256, Kem>(
            &OpModeR::Base,
            &private,
            &enc,
            &info(hood, &seen.report, &item.author),
            &seen.sealed,
            &[],
        )
        .map_err(|_| SeenError::DoesNotOpen)?,
    );
    if plain.len() != PLAIN_BYTES {
        return Err(SeenError::DoesNotOpen);
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&plain[..32]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&plain[32..]);
    let acker = MemberId(id);
    if !acker.verify(
        &signed_parts(hood, &seen.report, &item.author),
        &Signature(signature),
    ) {
        return Err(SeenError::BadSignature);
    }
    if !readers.contains(&acker) {
        return Err(SeenError::NotAReader);
    }
    Ok(acker)
}
