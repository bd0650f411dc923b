//! The outer envelope: what travels on gossip and sync.
//!
//! Version 2: `ciphertext = XChaCha20-Poly1305(window key, nonce, pad(item bytes), aad)`
//! with `aad = version ‖ hood ‖ epoch ‖ window`, where the window key is the epoch's key
//! of the hour the item was made in (`keys`, § Key schedule). Version 1 (protocol 2)
//! sealed under the raw epoch key with `aad = version ‖ hood ‖ epoch`; it still opens
//! under a legacy epoch key and nothing else. The author is only inside the ciphertext.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::hood::HoodId;
pub use crate::ids::ItemId;
use crate::keys::{self, EpochId, EpochKey, KeyRing, WindowError};
use crate::limits::{MAX_ENVELOPE_BYTES, MAX_ITEM_BYTES};
use crate::signed::Item;

/// The envelope version sealed under a ratchet window key.
pub const VERSION: u8 = 2;
/// The version protocol 2 sealed under a raw (legacy) epoch key.
pub const LEGACY_VERSION: u8 = 1;
/// Padding buckets below 16 KiB; above it, multiples of 16 KiB.
pub const BUCKETS: [usize; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];
const LARGE_BUCKET: usize = 16384;
const TAG_BYTES: usize = 16;

/// A version-2 envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u8,
    pub hood: HoodId,
    pub epoch: EpochId,
    /// The ratchet window (`created_at / 3600` of the item inside).
    pub window: u64,
    pub nonce: [u8; 24],
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

impl Envelope {
    pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
        codec::decode(bytes, MAX_ENVELOPE_BYTES)
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

/// A version-1 envelope (protocol 2), sealed under a legacy epoch key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyEnvelope {
    pub version: u8,
    pub hood: HoodId,
    pub epoch: EpochId,
    pub nonce: [u8; 24],
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

impl LegacyEnvelope {
    pub fn decode(bytes: &[u8]) -> Result<LegacyEnvelope, CodecError> {
        codec::decode(bytes, MAX_ENVELOPE_BYTES)
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

/// Why an envelope could not be opened, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("envelope is {0} bytes, over the limit")]
    Oversize(usize),
    #[error("malformed envelope: {0}")]
    Malformed(CodecError),
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    #[error("envelope is for another hood")]
    WrongHood,
    #[error("envelope is sealed under an epoch this member does not hold")]
    UnknownEpoch,
    #[error("envelope names a window outside its epoch's, or the wrong version for its epoch")]
    BadWindow,
    #[error("the envelope's window key was deleted: nothing sealed then can still be live")]
    WindowForgotten,
    #[error("ciphertext does not authenticate")]
    Decrypt,
    #[error("bad padding inside the ciphertext")]
    BadPadding,
    #[error("malformed item: {0}")]
    MalformedItem(CodecError),
}

/// Why an item could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("item is {0} bytes, over the limit")]
    Oversize(usize),
    #[error("malformed item body")]
    MalformedBody,
    #[error("this member holds no key of the epoch for the item's window: {0}")]
    NoWindowKey(WindowError),
}

/// The header bytes a version-2 envelope authenticates with its ciphertext:
/// `version ‖ hood ‖ epoch ‖ window` (window as 8 bytes big-endian).
pub fn aad(hood: &HoodId, epoch: &EpochId, window: u64) -> Vec<u8> {
    [&[VERSION][..], &hood.0, &epoch.0, &window.to_be_bytes()].concat()
}

/// The header bytes a version-1 (legacy) envelope authenticates.
pub fn legacy_aad(hood: &HoodId, epoch: &EpochId) -> Vec<u8> {
    [&[LEGACY_VERSION][..], &hood.0, &epoch.0].concat()
}

/// The padded size for an item of `len` bytes (one byte of padding at least).
pub fn padded_len(len: usize) -> usize {
    let need = len + 1;
    BUCKETS
        .iter()
        .copied()
        .find(|b| *b >= need)
        .unwrap_or_else(|| need.div_ceil(LARGE_BUCKET) * LARGE_BUCKET)
}

/// ISO/IEC 7816-4 padding: `0x80`, then zeros up to the bucket.
pub fn pad(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(padded_len(bytes.len()));
    out.extend_from_slice(bytes);
    out.push(0x80);
    out.resize(padded_len(bytes.len()), 0);
    out
}

pub fn unpad(mut bytes: Vec<u8>) -> Option<Vec<u8>> {
    let end = bytes.iter().rposition(|b| *b != 0)?;
    if bytes[end] != 0x80 || bytes.len() != padded_len(end) {
        return None;
    }
    bytes.truncate(end);
    Some(bytes)
}

/// Seals `item` under `key` in the window of the item's `created_at`, with the given
/// 24-byte nonce (random, from the caller). A legacy key seals a version-1 envelope.
pub fn seal(
    item: &Item,
    hood: &HoodId,
    key: &EpochKey,
    nonce: [u8; 24],
) -> Result<Vec<u8>, SealError> {
    let created_at = item.body().map_err(|_| SealError::MalformedBody)?.times().0;
    seal_in_window(item, hood, key, keys::window_of(created_at), nonce)
}

/// [`seal`] in the given window, whatever the item says (tests use it to play a member
/// who backdates windows; validation refuses the result).
pub fn seal_in_window(
    item: &Item,
    hood: &HoodId,
    key: &EpochKey,
    window: u64,
    nonce: [u8; 24],
) -> Result<Vec<u8>, SealError> {
    let item_bytes = item.encode();
    if item_bytes.len() > MAX_ITEM_BYTES {
        return Err(SealError::Oversize(item_bytes.len()));
    }
    let epoch = key.id();
    let bytes = if let Some(raw) = key.legacy_secret() {
        let ciphertext = XChaCha20Poly1305::new(raw.into())
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &pad(&item_bytes),
                    aad: &legacy_aad(hood, &epoch),
                },
            )
            .map_err(|_| SealError::Oversize(item_bytes.len()))?;
        LegacyEnvelope {
            version: LEGACY_VERSION,
            hood: *hood,
            epoch,
            nonce,
            ciphertext,
        }
        .encode()
    } else {
        let window_key = key.window_key(window).map_err(SealError::NoWindowKey)?;
        let ciphertext = XChaCha20Poly1305::new((&*window_key).into())
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &pad(&item_bytes),
                    aad: &aad(hood, &epoch, window),
                },
            )
            .map_err(|_| SealError::Oversize(item_bytes.len()))?;
        Envelope {
            version: VERSION,
            hood: *hood,
            epoch,
            window,
            nonce,
            ciphertext,
        }
        .encode()
    };
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(SealError::Oversize(bytes.len()));
    }
    Ok(bytes)
}

/// Seals with a fresh random nonce.
pub fn seal_random(
    item: &Item,
    hood: &HoodId,
    key: &EpochKey,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    seal(item, hood, key, nonce)
}

/// An opened envelope: the inner item's id, the epoch (and window) it was sealed under,
/// and the (not yet verified) inner item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub id: ItemId,
    pub epoch: EpochId,
    /// The ratchet window; `None` for a version-1 envelope.
    pub window: Option<u64>,
    pub item: Item,
}

/// Opens an envelope for `hood` with the keys in `ring`. Cheap checks run first (size,
/// decoding, version, hood, known epoch, window), then the AEAD, then the item's
/// decoding. The item's signature, and that the window is the item's, are *not* checked
/// here: see `validate`.
pub fn open(bytes: &[u8], hood: &HoodId, ring: &KeyRing) -> Result<Opened, OpenError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(OpenError::Oversize(bytes.len()));
    }
    // Postcard writes the leading `u8` version as one raw byte.
    let (envelope_hood, epoch, window, nonce, ciphertext) = match bytes.first() {
        Some(&LEGACY_VERSION) => {
            let e = LegacyEnvelope::decode(bytes).map_err(OpenError::Malformed)?;
            (e.hood, e.epoch, None, e.nonce, e.ciphertext)
        }
        Some(&other) if other != VERSION => return Err(OpenError::UnsupportedVersion(other)),
        // Version 2, or empty (which fails to decode).
        _ => {
            let e = Envelope::decode(bytes).map_err(OpenError::Malformed)?;
            (e.hood, e.epoch, Some(e.window), e.nonce, e.ciphertext)
        }
    };
    if envelope_hood != *hood {
        return Err(OpenError::WrongHood);
    }
    let key = ring.get(&epoch).ok_or(OpenError::UnknownEpoch)?;
    let (aead_key, aad) = match (window, key.legacy_secret()) {
        (None, Some(raw)) => (zeroize::Zeroizing::new(*raw), legacy_aad(hood, &epoch)),
        (Some(window), None) => match key.window_key(window) {
            Ok(k) => (k, aad(hood, &epoch, window)),
            Err(WindowError::Deleted) => return Err(OpenError::WindowForgotten),
            Err(_) => return Err(OpenError::BadWindow),
        },
        _ => return Err(OpenError::BadWindow),
    };
    if ciphertext.len() < TAG_BYTES {
        return Err(OpenError::Decrypt);
    }
    let padded = XChaCha20Poly1305::new((&*aead_key).into())
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError::Decrypt)?;
    let item_bytes = unpad(padded).ok_or(OpenError::BadPadding)?;
    let item = Item::decode(&item_bytes).map_err(OpenError::MalformedItem)?;
    Ok(Opened {
        id: ItemId::of_item(&item_bytes),
        epoch,
        window,
        item,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_round_trips_at_every_bucket_edge() {
        for len in [0usize, 1, 254, 255, 256, 511, 16383, 16384, 40000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let padded = pad(&bytes);
            assert!(padded.len() > len);
            assert_eq!(padded.len(), padded_len(len));
            assert_eq!(unpad(padded), Some(bytes));
        }
    }

    #[test]
    fn padding_hides_length_within_a_bucket() {
        assert_eq!(pad(&[1; 10]).len(), pad(&[1; 200]).len());
    }

    #[test]
    fn bad_padding_is_refused() {
        assert_eq!(unpad(vec![0; 256]), None);
        let mut p = pad(&[1, 2, 3]);
        p[3] = 0x81;
        assert_eq!(unpad(p), None);
        // Right marker, wrong bucket: a sender must pad to the bucket, not to any length.
        assert_eq!(unpad(vec![1, 2, 0x80, 0]), None);
    }
}
