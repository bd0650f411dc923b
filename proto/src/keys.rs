//! Epoch keys: the key schedule envelopes are sealed under, how an epoch's keys are
//! wrapped to each member with HPKE (RFC 9180, base mode, X25519-HKDF-SHA256 /
//! HKDF-SHA256 / ChaCha20-Poly1305), and the member's key ring.
//!
//! # Key schedule (protocol 3)
//! An epoch starts from 32 random bytes, the *epoch secret*, which only its rekeyer ever
//! holds. Everything else is derived with HKDF-SHA256 under distinct labels
//! ([`crate::domain`]):
//! - `chain[base] = HKDF(salt = hood id, ikm = secret, info = RATCHET_START ‖ generation ‖ base)`,
//!   where `base` is the [window](WINDOW_SECS) of the `Rekey`'s `created_at` less twice
//!   the clock skew allowed ([`first_window`]);
//! - `chain[w + 1] = HKDF-Expand(prk = chain[w], info = RATCHET_NEXT)`: a one-way ratchet,
//!   one step per hour, for [`EPOCH_WINDOWS`] windows;
//! - `key[w] = HKDF-Expand(prk = chain[w], info = WINDOW_KEY)`: the AEAD key of window `w`;
//! - `epoch id = HKDF-Expand(prk = chain[last], info = EPOCH_COMMIT ‖ hood ‖ generation ‖ base)`.
//!
//! The id commits to the whole chain: from any `chain[w]` a member hashes forward to the
//! last one and checks the id, so a rekeyer (or an admitter handing a joiner a later chain
//! value) cannot give different members different keys under one id. A member keeps only
//! the chain value of the oldest window a live item can be in ([`KeyRing::forget_before`]);
//! older window keys cannot be derived from it.
//!
//! Epochs of protocol 2 (`id = SHA-256(EPOCH_ID ‖ hood ‖ key)`, the raw key as the AEAD
//! key) still open as *legacy* epochs: their version-1 envelopes open, and they retire
//! as before.

use std::collections::BTreeMap;
use std::fmt;

use hkdf::Hkdf;
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
use crate::identity::{ExchangeKey, ExchangeSecret, MemberId, MemberKeys};
use crate::limits::MAX_CLOCK_SKEW_SECS;

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

/// Seconds in one ratchet window: a window's key opens what was made in that hour.
pub const WINDOW_SECS: u64 = 3600;
/// Windows in an epoch's ratchet (about 42 days): past its last window an epoch cannot
/// seal, and a member rekeys. Also bounds the hashing one key derivation costs.
pub const EPOCH_WINDOWS: u64 = 1024;

/// The window that time `t` (Unix seconds) falls in.
pub fn window_of(t: u64) -> u64 {
    t / WINDOW_SECS
}

/// The first window of an epoch made at `created_at`: the window of `created_at` less
/// twice the clock skew allowed, so that a member whose clock is behind the rekeyer's
/// can seal in it at once.
pub fn first_window(created_at: u64) -> u64 {
    window_of(created_at.saturating_sub(2 * MAX_CLOCK_SKEW_SECS))
}

/// The oldest window an item still live at `now` can have been made in, for a hood whose
/// items live at most `max_ttl_secs`: an item made in window `w` expires before
/// `(w + 1) · WINDOW_SECS + max_ttl`, and its maker's clock may be
/// [`MAX_CLOCK_SKEW_SECS`] ahead of ours or behind (twice, for margin). Keys of older
/// windows are deleted; a `Join` hands each epoch from this window on.
pub fn oldest_live_window(now: u64, max_ttl_secs: u32) -> u64 {
    window_of(now.saturating_sub(u64::from(max_ttl_secs) + 2 * MAX_CLOCK_SKEW_SECS))
}

/// The epoch secret a rekeyer draws: the HKDF input of the epoch's ratchet. Never
/// stored or sent; dropped (and zeroized) once the first chain value is derived.
pub struct EpochSecret(Zeroizing<[u8; 32]>);

impl fmt::Debug for EpochSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EpochSecret(..)")
    }
}

impl EpochSecret {
    pub fn generate(rng: &mut impl CryptoRng) -> EpochSecret {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut());
        EpochSecret(secret)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> EpochSecret {
        EpochSecret(Zeroizing::new(bytes))
    }
}

type Chain = Zeroizing<[u8; 32]>;

fn expand(prk: &[u8; 32], info: &[&[u8]]) -> Chain {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::from_prk(prk)
        .expect("32 bytes is a valid SHA-256 PRK")
        .expand_multi_info(info, out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// `chain[base]` from the epoch secret.
fn chain_start(hood: &HoodId, secret: &EpochSecret, generation: u64, base: u64) -> Chain {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&hood.0), secret.0.as_ref())
        .expand_multi_info(
            &[
                domain::RATCHET_START,
                &generation.to_be_bytes(),
                &base.to_be_bytes(),
            ],
            out.as_mut(),
        )
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// One ratchet step: `chain[w + 1]` from `chain[w]`.
fn chain_next(chain: &[u8; 32]) -> Chain {
    expand(chain, &[domain::RATCHET_NEXT])
}

/// Hashes `chain` (at window `from`) forward to window `to` (`to >= from`).
fn chain_at(chain: &[u8; 32], from: u64, to: u64) -> Chain {
    let mut c = Zeroizing::new(*chain);
    for _ in from..to {
        c = chain_next(&c);
    }
    c
}

/// The epoch id: the commitment to the last chain value.
fn commitment(hood: &HoodId, generation: u64, base: u64, last: &[u8; 32]) -> EpochId {
    EpochId(*expand(
        last,
        &[
            domain::EPOCH_COMMIT,
            &hood.0,
            &generation.to_be_bytes(),
            &base.to_be_bytes(),
        ],
    ))
}

/// The id of a protocol-2 (legacy) epoch key: `SHA-256(EPOCH_ID ‖ hood ‖ key)`.
fn legacy_id(hood: &HoodId, key: &[u8; 32]) -> EpochId {
    EpochId(
        Sha256::new()
            .chain_update(domain::EPOCH_ID)
            .chain_update(hood.0)
            .chain_update(key)
            .finalize()
            .into(),
    )
}

/// Why a window's key is not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("the window is outside the epoch's windows")]
    OutOfRange,
    #[error("the window's key was deleted (older than any live item needs)")]
    Deleted,
    #[error("a legacy epoch has no windows")]
    Legacy,
}

#[derive(Clone)]
enum KeyState {
    /// A protocol-2 epoch: the raw key is the AEAD key of version-1 envelopes.
    Legacy(Zeroizing<[u8; 32]>),
    /// The ratchet: `chain` is the chain value of window `window`; the epoch's windows
    /// run from `base` to `base + EPOCH_WINDOWS - 1`.
    Ratchet {
        base: u64,
        window: u64,
        chain: Chain,
        /// Chain values at `window + MARK_EVERY·i` (i ≥ 1), in memory only, so that a
        /// window key costs at most `MARK_EVERY` steps, not up to `EPOCH_WINDOWS`. All
        /// are at or after `window`: they derive nothing older.
        marks: Vec<Chain>,
    },
}

/// Windows between two in-memory marks of a ratchet.
const MARK_EVERY: u64 = 16;

/// The marks of a ratchet held at `held` (see `KeyState::Ratchet`), up to `last`.
fn marks_from(chain: &[u8; 32], held: u64, last: u64) -> Vec<Chain> {
    // Reserved at its final size: a Vec that grows moves its elements and frees the old
    // buffer without zeroizing it, which would leave copies of chain values behind.
    let count = usize::try_from(last.saturating_sub(held) / MARK_EVERY).unwrap_or(0);
    let mut out = Vec::with_capacity(count);
    let mut c = Zeroizing::new(*chain);
    let mut w = held;
    while w + MARK_EVERY <= last {
        c = chain_at(&c, w, w + MARK_EVERY);
        w += MARK_EVERY;
        out.push(c.clone());
    }
    out
}

/// `chain[window]` from a ratchet held at `held` with its marks (`window >= held`).
fn chain_from(chain: &[u8; 32], marks: &[Chain], held: u64, window: u64) -> Chain {
    let k = (window - held) / MARK_EVERY;
    match k
        .checked_sub(1)
        .and_then(|i| marks.get(usize::try_from(i).ok()?))
    {
        Some(mark) => chain_at(mark, held + k * MARK_EVERY, window),
        None => chain_at(chain, held, window),
    }
}

/// What a member holds of one epoch: its id, generation, and either the ratchet state
/// from the oldest window it still needs, or (a legacy epoch) the raw key. `Debug` never
/// shows key bytes.
#[derive(Clone)]
pub struct EpochKey {
    id: EpochId,
    generation: u64,
    state: KeyState,
}

impl fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("EpochKey");
        d.field("id", &self.id)
            .field("generation", &self.generation);
        if let KeyState::Ratchet { base, window, .. } = &self.state {
            d.field("base", base).field("window", window);
        }
        d.finish_non_exhaustive()
    }
}

/// Stored form of a legacy key: generation ‖ key.
const LEGACY_STORED: usize = 40;
/// Stored form of a ratchet: generation ‖ chain ‖ base ‖ window.
const RATCHET_STORED: usize = 56;

impl EpochKey {
    /// A new epoch of `generation`, made at `created_at`, from `secret`.
    pub fn new_epoch(
        hood: &HoodId,
        secret: &EpochSecret,
        generation: u64,
        created_at: u64,
    ) -> EpochKey {
        let base = first_window(created_at);
        let chain = chain_start(hood, secret, generation, base);
        let last_window = base + EPOCH_WINDOWS - 1;
        let marks = marks_from(&chain, base, last_window);
        let last = chain_from(&chain, &marks, base, last_window);
        EpochKey {
            id: commitment(hood, generation, base, &last),
            generation,
            state: KeyState::Ratchet {
                base,
                window: base,
                chain,
                marks,
            },
        }
    }

    /// A new epoch from fresh randomness (the secret is dropped at once).
    pub fn generate(
        hood: &HoodId,
        generation: u64,
        created_at: u64,
        rng: &mut impl CryptoRng,
    ) -> EpochKey {
        EpochKey::new_epoch(hood, &EpochSecret::generate(rng), generation, created_at)
    }

    /// A legacy (protocol 2) epoch key: the raw key, named by its hash.
    pub fn legacy(hood: &HoodId, generation: u64, key: &[u8; 32]) -> EpochKey {
        EpochKey {
            id: legacy_id(hood, key),
            generation,
            state: KeyState::Legacy(Zeroizing::new(*key)),
        }
    }

    /// The key a wrap handed over, checked against the epoch it names: a chain value of
    /// window `window` of the epoch of `generation` made at `created_at`, or else a legacy
    /// key whose hash is `epoch`. `WrongCommitment` when it is neither.
    pub fn from_handover(
        hood: &HoodId,
        epoch: &EpochId,
        generation: u64,
        created_at: u64,
        window: u64,
        bytes: &[u8; 32],
    ) -> Result<EpochKey, KeyError> {
        EpochKey::from_handover_at(
            hood,
            epoch,
            generation,
            first_window(created_at),
            window,
            bytes,
        )
    }

    /// [`EpochKey::from_handover`] given the epoch's first window.
    fn from_handover_at(
        hood: &HoodId,
        epoch: &EpochId,
        generation: u64,
        base: u64,
        window: u64,
        bytes: &[u8; 32],
    ) -> Result<EpochKey, KeyError> {
        if (base..base.saturating_add(EPOCH_WINDOWS)).contains(&window) {
            let last_window = base + EPOCH_WINDOWS - 1;
            let marks = marks_from(bytes, window, last_window);
            let last = chain_from(bytes, &marks, window, last_window);
            if commitment(hood, generation, base, &last) == *epoch {
                return Ok(EpochKey {
                    id: *epoch,
                    generation,
                    state: KeyState::Ratchet {
                        base,
                        window,
                        chain: Zeroizing::new(*bytes),
                        marks,
                    },
                });
            }
        }
        if legacy_id(hood, bytes) == *epoch {
            return Ok(EpochKey::legacy(hood, generation, bytes));
        }
        Err(KeyError::WrongCommitment)
    }

    pub fn id(&self) -> EpochId {
        self.id
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_legacy(&self) -> bool {
        matches!(self.state, KeyState::Legacy(_))
    }

    /// The raw key of a legacy epoch (the AEAD key of its version-1 envelopes).
    pub fn legacy_secret(&self) -> Option<&[u8; 32]> {
        match &self.state {
            KeyState::Legacy(key) => Some(key),
            KeyState::Ratchet { .. } => None,
        }
    }

    /// The epoch's first window (`None` for a legacy epoch).
    pub fn base_window(&self) -> Option<u64> {
        match &self.state {
            KeyState::Ratchet { base, .. } => Some(*base),
            KeyState::Legacy(_) => None,
        }
    }

    /// The oldest window whose key this state still derives (`None` for a legacy epoch).
    pub fn oldest_window(&self) -> Option<u64> {
        match &self.state {
            KeyState::Ratchet { window, .. } => Some(*window),
            KeyState::Legacy(_) => None,
        }
    }

    /// The epoch's last window (`None` for a legacy epoch): past it, nothing is sealed
    /// under the epoch.
    pub fn last_window(&self) -> Option<u64> {
        self.base_window().map(|b| b + EPOCH_WINDOWS - 1)
    }

    /// Whether the epoch can seal at window `window`.
    pub fn can_seal_at(&self, window: u64) -> bool {
        match &self.state {
            KeyState::Legacy(_) => true,
            KeyState::Ratchet {
                base, window: held, ..
            } => window >= *held && window < base + EPOCH_WINDOWS,
        }
    }

    /// The AEAD key of window `window`, hashed forward from the state held (at most
    /// [`EPOCH_WINDOWS`] steps).
    pub fn window_key(&self, window: u64) -> Result<Zeroizing<[u8; 32]>, WindowError> {
        let KeyState::Ratchet {
            base,
            window: held,
            chain,
            marks,
        } = &self.state
        else {
            return Err(WindowError::Legacy);
        };
        if window < *base || window >= base + EPOCH_WINDOWS {
            return Err(WindowError::OutOfRange);
        }
        if window < *held {
            return Err(WindowError::Deleted);
        }
        let c = chain_from(chain, marks, *held, window);
        Ok(expand(&c, &[domain::WINDOW_KEY]))
    }

    /// The 32 bytes a wrap hands over from window `window` on: the chain value there
    /// (a legacy epoch: its key). `None` if this state no longer reaches back that far
    /// or the window is past the epoch's end.
    pub fn handover(&self, window: u64) -> Option<Zeroizing<[u8; 32]>> {
        match &self.state {
            KeyState::Legacy(key) => Some(key.clone()),
            KeyState::Ratchet {
                base,
                window: held,
                chain,
                marks,
            } => {
                if window < *held || window >= base + EPOCH_WINDOWS {
                    return None;
                }
                Some(chain_from(chain, marks, *held, window))
            }
        }
    }

    /// The bytes of this epoch's own first handover: what a `Rekey` wraps.
    pub fn rekey_handover(&self) -> Zeroizing<[u8; 32]> {
        match &self.state {
            KeyState::Legacy(key) => key.clone(),
            KeyState::Ratchet { chain, .. } => chain.clone(),
        }
    }

    /// Ratchets forward so that windows before `window` can no longer be derived (the
    /// old chain value is zeroized). Returns whether the state changed. Past the last
    /// window the state stays at the last one: the ring drops such an epoch.
    pub fn forget_before(&mut self, window: u64) -> bool {
        let KeyState::Ratchet {
            base,
            window: held,
            chain,
            marks,
        } = &mut self.state
        else {
            return false;
        };
        let last = *base + EPOCH_WINDOWS - 1;
        let to = window.min(last);
        if to <= *held {
            return false;
        }
        *chain = chain_from(chain, marks, *held, to);
        *marks = marks_from(chain, to, last);
        *held = to;
        true
    }

    /// The stored form (see [`EpochKey::from_stored`]).
    pub fn to_stored(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(RATCHET_STORED));
        out.extend_from_slice(&self.generation.to_be_bytes());
        match &self.state {
            KeyState::Legacy(key) => out.extend_from_slice(key.as_ref()),
            KeyState::Ratchet {
                base,
                window,
                chain,
                ..
            } => {
                out.extend_from_slice(chain.as_ref());
                out.extend_from_slice(&base.to_be_bytes());
                out.extend_from_slice(&window.to_be_bytes());
            }
        }
        out
    }

    /// Reads a stored key and checks it against its id (a store that was tampered with
    /// or damaged gives an error, not a wrong key).
    pub fn from_stored(hood: &HoodId, id: &EpochId, bytes: &[u8]) -> Result<EpochKey, KeyError> {
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let key_at = |at: usize| -> Option<[u8; 32]> { bytes.get(at..at + 32)?.try_into().ok() };
        let generation = u64_at(0).ok_or(KeyError::BadStored)?;
        let key = match bytes.len() {
            LEGACY_STORED => {
                let raw = Zeroizing::new(key_at(8).ok_or(KeyError::BadStored)?);
                EpochKey::legacy(hood, generation, &raw)
            }
            RATCHET_STORED => {
                let chain = Zeroizing::new(key_at(8).ok_or(KeyError::BadStored)?);
                let base = u64_at(40).ok_or(KeyError::BadStored)?;
                let window = u64_at(48).ok_or(KeyError::BadStored)?;
                let key = EpochKey::from_handover_at(hood, id, generation, base, window, &chain)?;
                if key.is_legacy() {
                    return Err(KeyError::BadStored);
                }
                key
            }
            _ => return Err(KeyError::BadStored),
        };
        if key.id != *id {
            return Err(KeyError::WrongCommitment);
        }
        Ok(key)
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
    #[error("a stored epoch key is malformed")]
    BadStored,
}

/// HPKE `info`: binds a wrap to its hood, epoch and recipient, so a wrap cannot be moved.
fn info(hood: &HoodId, epoch: &EpochId, to: &MemberId) -> Vec<u8> {
    [domain::WRAP, &hood.0, &epoch.0, &to.0].concat()
}

/// Seals the 32 bytes `plain` (a chain value, or a legacy key) of epoch `epoch` to
/// member `to` whose exchange key is `to_key`.
pub fn wrap_bytes(
    plain: &[u8; 32],
    epoch: &EpochId,
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
        &info(hood, epoch, &to),
        plain,
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

/// Seals what a `Rekey` of `key` hands each member (its first chain value) to `to`.
pub fn wrap(
    key: &EpochKey,
    hood: &HoodId,
    to: MemberId,
    to_key: &ExchangeKey,
    rng: &mut impl CryptoRng,
) -> Result<Wrap, KeyError> {
    wrap_bytes(&key.rekey_handover(), &key.id, hood, to, to_key, rng)
}

/// Opens a wrap addressed to `me`, giving the 32 bytes it carries; the caller checks
/// them against the epoch ([`EpochKey::from_handover`]).
pub fn unwrap(
    w: &Wrap,
    hood: &HoodId,
    epoch: &EpochId,
    me: &MemberKeys,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    unwrap_with(w, hood, epoch, &me.id(), &me.first_exchange_secret())
}

/// [`unwrap`] with one of `me`'s exchange secrets (a rotated one: [`crate::rotation`]).
pub fn unwrap_with(
    w: &Wrap,
    hood: &HoodId,
    epoch: &EpochId,
    me: &MemberId,
    secret: &ExchangeSecret,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    if w.to != *me {
        return Err(KeyError::NotForMe);
    }
    let private =
        <Kem as hpke::Kem>::PrivateKey::from_bytes(secret.bytes()).map_err(|_| KeyError::Unwrap)?;
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
    Ok(Zeroizing::new(bytes))
}

/// The epoch keys a member holds. Keeps what it learns until the node retires it:
/// [`KeyRing::forget_before`] ratchets every epoch past the windows no live item can be
/// in and drops the epochs whose windows are all past, and [`KeyRing::retain`] retires
/// legacy epochs by expiry. Nothing is evicted by count: a ring learns only epochs the
/// roster defines (`Roster::learn_keys`), so it is bounded by the roster's operations,
/// and a member cannot push a neighbor's real keys out by handing them made-up ones.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<EpochId, EpochKey>,
}

/// What [`KeyRing::forget_before`] did to one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Forgot {
    /// Ratcheted forward: the stored state must be replaced.
    Advanced,
    /// Every window of the epoch is older than any live item: the key is gone.
    Dropped,
}

impl KeyRing {
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Adds a key; returns whether it was new.
    pub fn insert(&mut self, key: EpochKey) -> bool {
        if self.keys.contains_key(&key.id) {
            return false;
        }
        self.keys.insert(key.id, key);
        true
    }

    /// Keeps the keys `keep` says yes to (given id and generation) and returns the ids
    /// of those dropped (their secrets are zeroized as they go).
    pub fn retain(&mut self, mut keep: impl FnMut(&EpochId, u64) -> bool) -> Vec<EpochId> {
        let mut dropped = Vec::new();
        self.keys.retain(|id, key| {
            let kept = keep(id, key.generation);
            if !kept {
                dropped.push(*id);
            }
            kept
        });
        dropped
    }

    /// Deletes every window key older than `window` (see [`oldest_live_window`]):
    /// ratchets each epoch forward to it, and drops the epochs that end before it.
    /// Legacy epochs are left to [`KeyRing::retain`].
    pub fn forget_before(&mut self, window: u64) -> Vec<(EpochId, Forgot)> {
        let mut changed = Vec::new();
        self.keys.retain(|id, key| {
            if key.last_window().is_some_and(|last| last < window) {
                changed.push((*id, Forgot::Dropped));
                return false;
            }
            if key.forget_before(window) {
                changed.push((*id, Forgot::Advanced));
            }
            true
        });
        changed
    }

    pub fn get(&self, id: &EpochId) -> Option<&EpochKey> {
        self.keys.get(id)
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

    /// Every key held, for persisting.
    pub fn iter(&self) -> impl Iterator<Item = &EpochKey> {
        self.keys.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{NOW, SeededRng};

    #[test]
    fn wrap_opens_only_for_its_recipient_epoch_and_hood() {
        let mut rng = SeededRng::new(9);
        let hood = HoodId([1; 32]);
        let alice = MemberKeys::generate(&mut rng);
        let bob = MemberKeys::generate(&mut rng);
        let key = EpochKey::generate(&hood, 1, NOW, &mut rng);
        let w = wrap(&key, &hood, alice.id(), &alice.exchange_key(), &mut rng).unwrap();

        let opened = unwrap(&w, &hood, &key.id(), &alice).unwrap();
        let learned =
            EpochKey::from_handover(&hood, &key.id(), 1, NOW, first_window(NOW), &opened).unwrap();
        assert_eq!(
            learned.window_key(window_of(NOW)).unwrap(),
            key.window_key(window_of(NOW)).unwrap()
        );

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
    fn a_handover_is_checked_against_the_epoch_id() {
        let mut rng = SeededRng::new(5);
        let hood = HoodId([1; 32]);
        let key = EpochKey::generate(&hood, 3, NOW, &mut rng);
        let base = first_window(NOW);
        let later = key.handover(base + 10).unwrap();
        // The right chain value at the right window is the epoch.
        let ok = EpochKey::from_handover(&hood, &key.id(), 3, NOW, base + 10, &later).unwrap();
        assert_eq!(ok.oldest_window(), Some(base + 10));
        // The same bytes claimed for another window, generation or creation time, or
        // random bytes, are not.
        for (generation, created_at, window, bytes) in [
            (3, NOW, base + 9, *later),
            (4, NOW, base + 10, *later),
            (3, NOW + 3600, base + 10, *later),
            (3, NOW, base + 10, [7u8; 32]),
        ] {
            assert_eq!(
                EpochKey::from_handover(&hood, &key.id(), generation, created_at, window, &bytes)
                    .unwrap_err(),
                KeyError::WrongCommitment
            );
        }
        // A legacy key is recognised by its own commitment.
        let legacy = EpochKey::legacy(&hood, 1, &[9; 32]);
        let back = EpochKey::from_handover(&hood, &legacy.id(), 1, NOW, base, &[9; 32]).unwrap();
        assert!(back.is_legacy());
    }

    #[test]
    fn forgetting_ratchets_forward_and_old_windows_cannot_be_derived_again() {
        let mut rng = SeededRng::new(6);
        let hood = HoodId([1; 32]);
        let base = first_window(NOW);
        let mut key = EpochKey::generate(&hood, 1, NOW, &mut rng);
        let early = key.window_key(base + 2).unwrap();
        let late = key.window_key(base + 5).unwrap();
        assert_ne!(early, late);
        assert!(key.forget_before(base + 3));
        assert_eq!(key.window_key(base + 2), Err(WindowError::Deleted));
        assert!(key.handover(base + 2).is_none());
        assert_eq!(key.window_key(base + 5).unwrap(), late);
        // The stored form holds only the later chain value, and still commits.
        let stored = key.to_stored();
        let back = EpochKey::from_stored(&hood, &key.id(), &stored).unwrap();
        assert_eq!(back.oldest_window(), Some(base + 3));
        assert_eq!(back.window_key(base + 2), Err(WindowError::Deleted));
        assert_eq!(back.window_key(base + 5).unwrap(), late);
        assert!(!stored.windows(32).any(|w| w == early.as_slice()));
        // Outside the epoch's windows there is no key.
        assert_eq!(
            key.window_key(base + EPOCH_WINDOWS),
            Err(WindowError::OutOfRange)
        );
        assert!(!key.forget_before(base + 1));
    }

    #[test]
    fn window_keys_through_the_marks_are_the_plain_ratchet() {
        let mut rng = SeededRng::new(10);
        let hood = HoodId([1; 32]);
        let mut key = EpochKey::generate(&hood, 1, NOW, &mut rng);
        let base = first_window(NOW);
        key.forget_before(base + 5);
        let start = key.handover(base + 5).unwrap();
        for w in (base + 5..base + 60).chain([base + EPOCH_WINDOWS - 1]) {
            let plain = expand(&chain_at(&start, base + 5, w), &[domain::WINDOW_KEY]);
            assert_eq!(key.window_key(w).unwrap(), plain, "window {}", w - base);
        }
    }

    #[test]
    fn a_stored_key_that_does_not_match_its_id_is_refused() {
        let mut rng = SeededRng::new(7);
        let hood = HoodId([1; 32]);
        let key = EpochKey::generate(&hood, 1, NOW, &mut rng);
        let mut stored = key.to_stored().to_vec();
        stored[8] ^= 1;
        assert_eq!(
            EpochKey::from_stored(&hood, &key.id(), &stored).unwrap_err(),
            KeyError::WrongCommitment
        );
        assert_eq!(
            EpochKey::from_stored(&hood, &key.id(), &stored[..50]).unwrap_err(),
            KeyError::BadStored
        );
        let legacy = EpochKey::legacy(&hood, 2, &[4; 32]);
        let back = EpochKey::from_stored(&hood, &legacy.id(), &legacy.to_stored()).unwrap();
        assert_eq!(back.legacy_secret(), Some(&[4; 32]));
        assert_eq!(back.generation(), 2);
    }

    #[test]
    fn key_ring_evicts_nothing_by_count_and_retires_on_request() {
        let mut rng = SeededRng::new(4);
        let hood = HoodId([1; 32]);
        let mut ring = KeyRing::new();
        let first = EpochKey::legacy(&hood, 1, &[1; 32]);
        ring.insert(first.clone());
        // Many keys of higher generations do not push the first one out.
        for generation in 2..=600u64 {
            ring.insert(EpochKey::legacy(&hood, generation, &rng.bytes()));
        }
        assert_eq!(ring.len(), 600);
        assert!(ring.contains(&first.id()));
        let dropped = ring.retain(|_, generation| generation > 1);
        assert_eq!(dropped, vec![first.id()]);
        assert!(!ring.contains(&first.id()));
    }

    #[test]
    fn key_ring_forgets_old_windows_and_drops_spent_epochs() {
        let mut rng = SeededRng::new(8);
        let hood = HoodId([1; 32]);
        let base = first_window(NOW);
        let old = EpochKey::generate(&hood, 1, NOW, &mut rng);
        let new = EpochKey::generate(&hood, 2, NOW + 100 * WINDOW_SECS, &mut rng);
        let legacy = EpochKey::legacy(&hood, 1, &[3; 32]);
        let mut ring = KeyRing::new();
        for k in [&old, &new, &legacy] {
            ring.insert(k.clone());
        }
        let changed = ring.forget_before(base + 50);
        assert_eq!(changed, vec![(old.id(), Forgot::Advanced)]);
        let last = base + EPOCH_WINDOWS - 1;
        let mut changed = ring.forget_before(last + 1);
        changed.sort();
        let mut want = vec![(old.id(), Forgot::Dropped), (new.id(), Forgot::Advanced)];
        want.sort();
        assert_eq!(changed, want);
        assert!(!ring.contains(&old.id()));
        assert!(ring.contains(&legacy.id()));
    }
}
