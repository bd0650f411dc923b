//! The neighborhood: its id, its policy, and the name of its gossip topic.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{self, FieldError};
use crate::domain;
use crate::identity::MemberId;
use crate::limits::MAX_TTL_SECS;

/// A hood: `SHA-256(HOOD_ID ‖ founder ‖ genesis body)`, where the genesis body (the exact
/// bytes the founder signs) holds 32 random bytes of salt, the hood's name and its
/// policy. Binding the founder means only the founder's key can sign a genesis for it;
/// binding the whole body means the founder cannot sign two geneses with different
/// names or policies for one hood.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HoodId(pub [u8; 32]);

impl HoodId {
    pub fn derive(founder: &MemberId, genesis_body: &[u8]) -> HoodId {
        HoodId(
            Sha256::new()
                .chain_update(domain::HOOD_ID)
                .chain_update(founder.0)
                .chain_update(genesis_body)
                .finalize()
                .into(),
        )
    }

    /// The gossipsub topic: derived from the id, never the human name, and not the id
    /// itself, so that a topic name seen on the wire is not an invite's hood id.
    pub fn topic(&self) -> String {
        let digest = Sha256::new()
            .chain_update(domain::TOPIC)
            .chain_update(self.0)
            .finalize();
        format!("porchlight/2/{}", codec::hex(&digest[..16]))
    }

    pub fn to_hex(&self) -> String {
        codec::hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<HoodId> {
        codec::parse_hex(s).map(HoodId)
    }
}

impl fmt::Display for HoodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for HoodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HoodId({})", &self.to_hex()[..12])
    }
}

/// Who may do a thing.
///
/// Variants are only ever appended: postcard encodes the variant index, so geneses made
/// before a variant existed still decode (and derive the same hood id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    AnyMember,
    AdminsOnly,
    /// Nobody alone: it takes effect once this many distinct members voted for it
    /// (`RemoveVote`, see [`crate::quorum`]). Only for `remove`.
    Quorum(u16),
}

impl Permission {
    /// Whether one member may do the thing alone (never under a quorum).
    pub fn allows(self, is_admin: bool) -> bool {
        match self {
            Permission::AnyMember => true,
            Permission::AdminsOnly => is_admin,
            Permission::Quorum(_) => false,
        }
    }

    /// The number of votes a quorum needs (`None` if this is not a quorum).
    pub fn quorum(self) -> Option<usize> {
        match self {
            Permission::Quorum(k) => Some(usize::from(k)),
            _ => None,
        }
    }
}

/// Per-member limit on report-kind items: at most `max_items` with `created_at` in any
/// one window of `window_secs` (windows aligned to multiples of `window_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub max_items: u16,
    pub window_secs: u32,
}

/// The hood's rules, fixed in its genesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub invite: Permission,
    pub remove: Permission,
    pub rate_limit: RateLimit,
    pub default_ttl_secs: u32,
    pub max_ttl_secs: u32,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            invite: Permission::AnyMember,
            remove: Permission::AdminsOnly,
            rate_limit: RateLimit {
                max_items: 30,
                window_secs: 3600,
            },
            default_ttl_secs: 72 * 3600,
            max_ttl_secs: MAX_TTL_SECS,
        }
    }
}

impl Policy {
    pub fn check(&self) -> Result<(), FieldError> {
        let invalid = |why| {
            Err(FieldError::Invalid {
                what: "policy",
                why,
            })
        };
        if self.rate_limit.max_items == 0 || self.rate_limit.window_secs == 0 {
            return invalid("rate limit must allow at least one item per non-empty window");
        }
        if self.rate_limit.window_secs > 7 * 24 * 3600 {
            return invalid("rate limit window is longer than a week");
        }
        if self.max_ttl_secs == 0 || self.max_ttl_secs > MAX_TTL_SECS {
            return invalid("maximum report lifetime must be between 1 s and 30 days");
        }
        if self.default_ttl_secs == 0 || self.default_ttl_secs > self.max_ttl_secs {
            return invalid("default report lifetime must be between 1 s and the maximum");
        }
        if matches!(self.invite, Permission::Quorum(_)) {
            return invalid("invitations cannot be by quorum");
        }
        if let Permission::Quorum(k) = self.remove
            && !(crate::quorum::MIN_QUORUM..=crate::quorum::MAX_QUORUM).contains(&k)
        {
            return invalid("a removal quorum must be between 2 and 64 members");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid_and_matches_design() {
        let p = Policy::default();
        assert_eq!(p.check(), Ok(()));
        assert_eq!(p.default_ttl_secs, 72 * 3600);
        assert_eq!(p.max_ttl_secs, 30 * 24 * 3600);
    }

    #[test]
    fn policy_over_thirty_days_is_invalid() {
        let p = Policy {
            max_ttl_secs: MAX_TTL_SECS + 1,
            ..Policy::default()
        };
        assert!(p.check().is_err());
    }

    #[test]
    fn topic_is_derived_not_the_id() {
        let h = HoodId([7; 32]);
        let t = h.topic();
        assert!(t.starts_with("porchlight/2/"));
        assert!(!t.contains(&h.to_hex()));
    }
}
