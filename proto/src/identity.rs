//! Who a member is: an ed25519 signing key (also the node's libp2p identity) and an
//! X25519 key that epoch keys are wrapped to.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use crate::codec::{self, fixed};
use crate::domain;

/// A member: the 32 bytes of their ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId(pub [u8; 32]);

impl MemberId {
    /// A short code two neighbors read to each other to check they hold the same key:
    /// 80 bits of a domain-separated hash, as five groups of four hex digits.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(domain::FINGERPRINT)
            .chain_update(self.0)
            .finalize();
        let hex = codec::hex(&digest[..10]);
        let groups: Vec<&str> = (0..5).map(|i| &hex[i * 4..i * 4 + 4]).collect();
        groups.join("-")
    }

    /// Checks `signature` over the concatenation of `parts`. Strict verification: no
    /// malleable or small-order encodings are accepted.
    pub fn verify(&self, parts: &[&[u8]], signature: &Signature) -> bool {
        self.verifying_key()
            .is_some_and(|key| verify_with(&key, parts, signature))
    }

    /// The decompressed public key (decompressing costs about a tenth of a signature
    /// check, so a roster keeps them), or `None` if these bytes are not a curve point.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }

    pub fn to_hex(&self) -> String {
        codec::hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<MemberId> {
        codec::parse_hex(s).map(MemberId)
    }
}

/// [`MemberId::verify`] with the key already decompressed: strict verification of
/// `signature` over the concatenation of `parts`.
pub fn verify_with(key: &VerifyingKey, parts: &[&[u8]], signature: &Signature) -> bool {
    let message = parts.concat();
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(&message, &signature).is_ok()
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({})", &self.to_hex()[..12])
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "fixed")] pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", codec::hex(&self.0[..8]))
    }
}

/// A member's X25519 public key, published in their `Genesis` or `Join`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExchangeKey(pub [u8; 32]);

impl ExchangeKey {
    /// Whether HPKE can wrap to this key: X25519 with a fixed clamped scalar must give a
    /// non-zero shared secret. All-zero and the other low-order points (whose every
    /// product with a clamped scalar is the identity) fail, so a member cannot admit a
    /// puppet that no rekey can wrap to (RFC 9180 § 7.1.4 refuses the same outputs).
    pub fn is_usable(&self) -> bool {
        // Any clamped scalar works: it is a multiple of the cofactor 8.
        let probe = StaticSecret::from([0x5a; 32]);
        probe
            .diffie_hellman(&XPublic::from(self.0))
            .was_contributory()
    }
}

impl fmt::Debug for ExchangeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExchangeKey({}…)", codec::hex(&self.0[..6]))
    }
}

/// A member's secret keys. Never leaves the data dir; `Debug` shows only the public id.
/// An X25519 exchange secret held apart from the identity (a rotated one, see
/// [`crate::rotation`]). Zeroized on drop; `Debug` shows only the public key.
#[derive(Clone)]
pub struct ExchangeSecret(Zeroizing<[u8; 32]>);

impl fmt::Debug for ExchangeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExchangeSecret({:?})", self.public())
    }
}

impl ExchangeSecret {
    pub fn generate(rng: &mut impl CryptoRng) -> ExchangeSecret {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        ExchangeSecret(bytes)
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> ExchangeSecret {
        ExchangeSecret(Zeroizing::new(*bytes))
    }

    /// The secret's bytes, for storing.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn public(&self) -> ExchangeKey {
        ExchangeKey(XPublic::from(&StaticSecret::from(*self.0)).to_bytes())
    }
}

#[derive(Clone)]
pub struct MemberKeys {
    signing: SigningKey,
    exchange: StaticSecret,
}

impl fmt::Debug for MemberKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberKeys")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl MemberKeys {
    /// Fresh keys from the caller's CSPRNG.
    pub fn generate(rng: &mut impl CryptoRng) -> MemberKeys {
        let mut signing = Zeroizing::new([0u8; 32]);
        let mut exchange = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(signing.as_mut());
        rng.fill_bytes(exchange.as_mut());
        MemberKeys::from_secrets(&signing, &exchange)
    }

    /// Rebuilds keys from the two 32-byte secrets kept in the data dir.
    pub fn from_secrets(signing: &[u8; 32], exchange: &[u8; 32]) -> MemberKeys {
        MemberKeys {
            signing: SigningKey::from_bytes(signing),
            exchange: StaticSecret::from(*exchange),
        }
    }

    /// The two secrets, for the data dir's key file.
    pub fn to_secrets(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        (
            Zeroizing::new(self.signing.to_bytes()),
            Zeroizing::new(self.exchange.to_bytes()),
        )
    }

    pub fn id(&self) -> MemberId {
        MemberId(self.signing.verifying_key().to_bytes())
    }

    pub fn exchange_key(&self) -> ExchangeKey {
        ExchangeKey(XPublic::from(&self.exchange).to_bytes())
    }

    /// Signs the concatenation of `parts` (the first is always a domain tag).
    pub fn sign(&self, parts: &[&[u8]]) -> Signature {
        Signature(self.signing.sign(&parts.concat()).to_bytes())
    }

    /// These keys without the identity's first exchange secret (all zeros in its
    /// place), once a rotation superseded it and nothing wrapped to it is needed
    /// ([`crate::rotation`]): a copy of the identity taken later does not hold it.
    pub fn without_exchange(&self) -> MemberKeys {
        MemberKeys {
            signing: self.signing.clone(),
            exchange: StaticSecret::from([0u8; 32]),
        }
    }

    /// Whether these keys still hold the identity's first exchange secret.
    pub fn has_exchange(&self) -> bool {
        self.exchange.to_bytes() != [0u8; 32]
    }

    /// The identity's own exchange secret, as an [`ExchangeSecret`].
    pub fn first_exchange_secret(&self) -> ExchangeSecret {
        ExchangeSecret(self.exchange_secret())
    }

    pub(crate) fn exchange_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.exchange.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::SeededRng;

    #[test]
    fn fingerprint_is_five_groups_and_stable() {
        let keys = MemberKeys::generate(&mut SeededRng::new(1));
        let fp = keys.id().fingerprint();
        assert_eq!(fp.len(), 24);
        assert_eq!(fp.split('-').count(), 5);
        assert_eq!(fp, keys.id().fingerprint());
        let other = MemberKeys::generate(&mut SeededRng::new(2));
        assert_ne!(fp, other.id().fingerprint());
    }

    #[test]
    fn signature_binds_message_and_key() {
        let keys = MemberKeys::generate(&mut SeededRng::new(1));
        let sig = keys.sign(&[b"tag\0", b"hello"]);
        assert!(keys.id().verify(&[b"tag\0", b"hello"], &sig));
        assert!(!keys.id().verify(&[b"tag\0", b"hellp"], &sig));
        let other = MemberKeys::generate(&mut SeededRng::new(2));
        assert!(!other.id().verify(&[b"tag\0", b"hello"], &sig));
    }

    #[test]
    fn secrets_round_trip() {
        let keys = MemberKeys::generate(&mut SeededRng::new(3));
        let (s, x) = keys.to_secrets();
        let back = MemberKeys::from_secrets(&s, &x);
        assert_eq!(back.id(), keys.id());
        assert_eq!(back.exchange_key(), keys.exchange_key());
    }
}
