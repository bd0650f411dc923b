//! Epoch keys: the symmetric keys envelopes are sealed under, how they are wrapped to each
//! member with HPKE (RFC 9180, base mode, X25519-HKDF-SHA256 / HKDF-SHA256 /
//! ChaCha20-Poly1305), and the member's key ring.

use std::collections::BTreeMap;
use std::fmt;

use hpke::aead::ChaCha20Poly1305 as HpkeAead;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::codec::{self, fixed};
use crate::domain;
use crate::hood::HoodId;
use crate::identity::{ExchangeKey, MemberId, MemberKeys};

type Kem = X25519HkdfSha256;

/// Names an epoch key: `SHA-256(EPOCH_ID ‖ hood ‖ key)`, all 32 bytes. The id
/// commits to the key, so a member who unwraps a key can check it is the one everybody
/// else got under that id, and a rekeyer cannot hand different members different keys.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EpochId(pub [u8; 32]);

impl fmt::Debug for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EpochId({})", codec::hex(&self.0))
    }
}

impl fmt::Display for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&codec::hex(&self.0))
    }
}

/// A 256-bit epoch key with its id. `Debug` never shows the key.
#[derive(Clone)]
pub struct EpochKey {
    id: EpochId,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl EpochKey {
    pub fn generate(hood: &HoodId, rng: &mut impl CryptoRng) -> EpochKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        EpochKey::from_bytes(hood, &key)
    }

    pub fn from_bytes(hood: &HoodId, key: &[u8; 32]) -> EpochKey {
        let id = Sha256::new()
            .chain_update(domain::EPOCH_ID)
            .chain_update(hood.0)
            .chain_update(key)
            .finalize()
            .into();
        EpochKey {
            id: EpochId(id),
            key: Zeroizing::new(*key),
        }
    }

    pub fn id(&self) -> EpochId {
        self.id
    }

    /// The raw key, for the AEAD and for the node's key store.
    pub fn secret(&self) -> &[u8; 32] {
        &self.key
    }
}

/// An epoch key sealed to one member. `ciphertext` is the 32-byte key and a 16-byte tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrap {
    pub to: MemberId,
    pub enc: [u8; 32],
    #[serde(with = "fixed")]
    pub ciphertext: [u8; 48],
}

/// A wrap of a named epoch, as a `Join` hands existing epochs to the joiner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochWrap {
    pub epoch: EpochId,
    pub generation: u64,
    pub wrap: Wrap,
}

/// Why a key could not be wrapped or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the recipient's exchange key is not a usable X25519 key")]
    BadRecipientKey,
    #[error("the wrap is not addressed to this member")]
    NotForMe,
    #[error("the wrap does not open (wrong key, tampered, or not for this epoch)")]
    Unwrap,
    #[error("the unwrapped key does not match its epoch id")]
    WrongCommitment,
}

/// HPKE `info`: binds a wrap to its hood, epoch and recipient, so a wrap cannot be moved.
fn info(hood: &HoodId, epoch: &EpochId, to: &MemberId) -> Vec<u8> {
    [domain::WRAP, &hood.0, &epoch.0, &to.0].concat()
}

/// Seals `key` to member `to` whose exchange key is `to_key`.
pub fn wrap(
    key: &EpochKey,
    hood: &HoodId,
    to: MemberId,
    to_key: &ExchangeKey,
    rng: &mut impl CryptoRng,
) -> Result<Wrap, KeyError> {
    let public = <Kem as hpke::Kem>::PublicKey::from_bytes(&to_key.0)
        .map_err(|_| KeyError::BadRecipientKey)?;
    let (enc, ct) = hpke::single_shot_seal_with_rng::<HpkeAead, HkdfSha256, Kem>(
        &OpModeS::Base,
        &public,
        &info(hood, &key.id, &to),
        key.secret(),
        &[],
        rng,
    )
    .map_err(|_| KeyError::BadRecipientKey)?;
    let mut ciphertext = [0u8; 48];
    if ct.len() != ciphertext.len() {
        return Err(KeyError::BadRecipientKey);
    }
    ciphertext.copy_from_slice(&ct);
    let mut enc_bytes = [0u8; 32];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    Ok(Wrap {
        to,
        enc: enc_bytes,
        ciphertext,
    })
}

/// Opens a wrap addressed to `me` and checks the key against `epoch`.
pub fn unwrap(
    w: &Wrap,
    hood: &HoodId,
    epoch: &EpochId,
    me: &MemberKeys,
) -> Result<EpochKey, KeyError> {
    if w.to != me.id() {
        return Err(KeyError::NotForMe);
    }
    let secret = me.exchange_secret();
    let private = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret.as_ref())
        .map_err(|_| KeyError::Unwrap)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&w.enc).map_err(|_| KeyError::Unwrap)?;
    let plain = Zeroizing::new(
        hpke::single_shot_open::<HpkeAead, HkdfSha256, Kem>(
            &OpModeR::Base,
            &private,
            &enc,
            &info(hood, epoch, &w.to),
            &w.ciphertext,
            &[],
        )
        .map_err(|_| KeyError::Unwrap)?,
    );
    let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| KeyError::Unwrap)?;
    let key = EpochKey::from_bytes(hood, &bytes);
    if key.id != *epoch {
        return Err(KeyError::WrongCommitment);
    }
    Ok(key)
}

/// The epoch keys a member holds. Keeps every key it learns, so older items stay
/// readable, until the node retires it ([`KeyRing::retain`]: by expiry, never the
/// sealing epoch). Nothing is evicted by count: a ring learns only epochs the roster
/// defines (`Roster::learn_keys`), so it is bounded by the roster's operations, and a
/// member cannot push a neighbor's real keys out by handing them made-up ones.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<EpochId, (u64, EpochKey)>,
}

impl KeyRing {
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Adds a key; returns whether it was new.
    pub fn insert(&mut self, generation: u64, key: EpochKey) -> bool {
        if self.keys.contains_key(&key.id) {
            return false;
        }
        self.keys.insert(key.id, (generation, key));
        true
    }

    /// Keeps the keys `keep` says yes to and returns the ids of those dropped (their
    /// secrets are zeroized as they go).
    pub fn retain(&mut self, mut keep: impl FnMut(&EpochId, u64) -> bool) -> Vec<EpochId> {
        let mut dropped = Vec::new();
        self.keys.retain(|id, (generation, _)| {
            let kept = keep(id, *generation);
            if !kept {
                dropped.push(*id);
            }
            kept
        });
        dropped
    }

    pub fn get(&self, id: &EpochId) -> Option<&EpochKey> {
        self.keys.get(id).map(|(_, key)| key)
    }

    pub fn contains(&self, id: &EpochId) -> bool {
        self.keys.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `(generation, key)` for each epoch, for persisting.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &EpochKey)> {
        self.keys
            .values()
            .map(|(generation, key)| (*generation, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::SeededRng;

    #[test]
    fn wrap_opens_only_for_its_recipient_epoch_and_hood() {
        let mut rng = SeededRng::new(9);
        let hood = HoodId([1; 32]);
        let alice = MemberKeys::generate(&mut rng);
        let bob = MemberKeys::generate(&mut rng);
        let key = EpochKey::generate(&hood, &mut rng);
        let w = wrap(&key, &hood, alice.id(), &alice.exchange_key(), &mut rng).unwrap();

        let opened = unwrap(&w, &hood, &key.id(), &alice).unwrap();
        assert_eq!(opened.secret(), key.secret());

        assert!(matches!(
            unwrap(&w, &hood, &key.id(), &bob),
            Err(KeyError::NotForMe)
        ));
        let mut moved = w.clone();
        moved.to = bob.id();
        assert!(matches!(
            unwrap(&moved, &hood, &key.id(), &bob),
            Err(KeyError::Unwrap)
        ));
        assert!(matches!(
            unwrap(&w, &HoodId([2; 32]), &key.id(), &alice),
            Err(KeyError::Unwrap)
        ));
        assert!(matches!(
            unwrap(&w, &hood, &EpochId([0; 32]), &alice),
            Err(KeyError::Unwrap)
        ));
        let mut tampered = w.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(matches!(
            unwrap(&tampered, &hood, &key.id(), &alice),
            Err(KeyError::Unwrap)
        ));
    }

    #[test]
    fn key_ring_evicts_nothing_by_count_and_retires_on_request() {
        let mut rng = SeededRng::new(4);
        let hood = HoodId([1; 32]);
        let mut ring = KeyRing::new();
        let first = EpochKey::generate(&hood, &mut rng);
        ring.insert(1, first.clone());
        // Many keys of higher generations do not push the first one out.
        for generation in 2..=600u64 {
            ring.insert(generation, EpochKey::generate(&hood, &mut rng));
        }
        assert_eq!(ring.len(), 600);
        assert!(ring.contains(&first.id()));
        let dropped = ring.retain(|_, generation| generation > 1);
        assert_eq!(dropped, vec![first.id()]);
        assert!(!ring.contains(&first.id()));
    }
}
