//! `porchlight-proto`: the pure protocol core of Porchlight.
//!
//! No I/O, no clock and no RNG of its own: time (`now`, Unix seconds) and randomness
//! (`&mut impl CryptoRng`) are passed in, so everything here is deterministic and testable
//! without a socket.
//!
//! # Layout
//! - [`codec`]: postcard with size caps and no trailing bytes; hex helpers; field checks.
//! - [`identity`]: member keys (ed25519 + X25519), [`MemberId`], fingerprints.
//! - [`hood`]: [`HoodId`], [`Policy`], the gossip topic name.
//! - [`ids`]: [`Kind`], [`OpId`] and [`ItemId`], which the modules below all name.
//! - [`signed`]: the signed inner [`Item`] over its exact body bytes.
//! - [`report`]: report, update, resolve and retract bodies and their rules.
//! - [`seen`]: "seen by": a report's ask for acknowledgements, and the anonymous acks.
//! - [`item`]: an item's typed [`Body`]; [`Item::sign`] and [`Item::body`].
//! - [`keys`]: epoch keys, HPKE key wraps, the [`KeyRing`].
//! - [`envelope`]: seal and open: padding, XChaCha20-Poly1305, item ids.
//! - [`invite`]: one-time tickets and their `porchlight1…` text form.
//! - [`membership`]: operations and the [`Roster`], a deterministic fold over their set.
//! - [`quorum`]: removal by a quorum of members' votes (`RemoveVote`), its fold rules.
//! - [`checkpoint`]: the state a fold reached, that a `Welcome` carries to a joiner.
//! - [`validate`]: the one function that judges incoming envelope bytes.
//! - [`sync`]: catch-up sync messages and the negentropy state machine.
//! - [`clip`]: clip transfer messages and the requester's [`clip::Download`].
//!
//! The wire format is specified in `docs/protocol.md`, whose test vectors are checked by
//! `tests/vectors.rs`.

pub mod checkpoint;
pub mod clip;
pub mod codec;
pub mod envelope;
pub mod healing;
pub mod hood;
pub mod identity;
pub mod ids;
pub mod invite;
pub mod item;
pub mod keys;
pub mod membership;
pub mod quorum;
pub mod rename;
pub mod report;
pub mod rotation;
pub mod seen;
pub mod signed;
pub mod sync;
pub mod validate;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use envelope::{Envelope, ItemId};
pub use hood::{HoodId, Permission, Policy, RateLimit};
pub use identity::{ExchangeKey, ExchangeSecret, MemberId, MemberKeys, Signature};
pub use invite::{Ticket, TicketId};
pub use item::{Body, Item, Kind, OpId};
pub use keys::{EpochId, EpochKey, KeyRing};
pub use membership::{JoinRequest, JoinResponse, Op, Roster, Welcome};
pub use report::{Category, ClipRef, Location, Report, Severity};
pub use validate::{Accepted, Context, Lookup, RateLimiter, Reason, Verdict, validate};

/// Domain-separation tags. Every signature and hash in the protocol starts with one; each
/// ends in a NUL so that no tag is a prefix of another.
pub mod domain {
    pub const ITEM: &[u8] = b"porchlight-v1-item\0";
    pub const TICKET: &[u8] = b"porchlight-v1-ticket\0";
    pub const JOIN_REQUEST: &[u8] = b"porchlight-v1-join-request\0";
    pub const HOOD_ID: &[u8] = b"porchlight-v2-hood-id\0";
    pub const EPOCH_ID: &[u8] = b"porchlight-v1-epoch-id\0";
    pub const WRAP: &[u8] = b"porchlight-v1-epoch-wrap\0";
    pub const ITEM_ID: &[u8] = b"porchlight-v1-item-id\0";
    pub const OP_ID: &[u8] = b"porchlight-v1-op-id\0";
    pub const FINGERPRINT: &[u8] = b"porchlight-v1-fingerprint\0";
    pub const TOPIC: &[u8] = b"porchlight-v1-topic\0";
    pub const CHECKPOINT: &[u8] = b"porchlight-v2-checkpoint\0";
    /// An acker's signature over the report and the one-time key of their ack (`seen`).
    pub const SEEN: &[u8] = b"porchlight-v1-seen\0";
    /// HPKE `info` for an ack's sealed part.
    pub const SEEN_SEAL: &[u8] = b"porchlight-v1-seen-seal\0";
    /// HKDF labels of the key schedule (`keys`): the first chain value of an epoch's
    /// ratchet, the step from one window's chain value to the next, the AEAD key of a
    /// window, and the epoch id (a commitment to the last chain value).
    pub const RATCHET_START: &[u8] = b"porchlight-v2-ratchet-start\0";
    pub const RATCHET_NEXT: &[u8] = b"porchlight-v2-ratchet-next\0";
    pub const WINDOW_KEY: &[u8] = b"porchlight-v2-window-key\0";
    pub const EPOCH_COMMIT: &[u8] = b"porchlight-v2-epoch-id\0";
}

/// Protocol-wide bounds. Each is checked before the work it bounds.
pub mod limits {
    /// Largest envelope on the wire. A `Rekey` to `MAX_MEMBERS` members fits.
    pub const MAX_ENVELOPE_BYTES: usize = 512 * 1024;
    /// Largest inner item (before padding).
    pub const MAX_ITEM_BYTES: usize = MAX_ENVELOPE_BYTES - 1024;
    /// Most members a hood may have (a rekey wraps to each).
    pub const MAX_MEMBERS: usize = 4000;
    /// Most membership operations a roster holds.
    pub const MAX_OPS: usize = 20_000;
    /// Most membership operations one member may sign, counted along their own chain
    /// (each operation's place: one past the highest of its author's operations in its
    /// causal past), so that every node reaches the same verdict whatever it holds.
    pub const MAX_OPS_PER_MEMBER: usize = 2_000;
    /// Most membership operations a node holds that are charged to one member: their
    /// own, and those of everyone whose admission did not take effect and whose join
    /// they signed (transitively). Twice the chain cap, so an honest member (one chain)
    /// never comes near it; only an author who signed operations concurrent with each
    /// other (equivocation) or a member whose joins were voided (puppets) reaches it.
    pub const MAX_OPS_PER_BUDGET: usize = 2 * MAX_OPS_PER_MEMBER;
    /// Past [`MAX_OPS`], room kept for removals and rekeys by admins, so that a full
    /// roster can still remove whoever filled it.
    pub const MAX_RESERVED_OPS: usize = 2_000;
    /// Most epochs a join hands over (the newest first). A key ring evicts nothing by
    /// count: the node deletes keys by expiry (`keys::KeyRing::forget_before`).
    pub const MAX_EPOCHS: usize = 256;
    /// Most causal parents one membership operation names.
    pub const MAX_PARENTS: usize = 16;
    /// Largest `Welcome` on the wire.
    pub const MAX_WELCOME_BYTES: usize = 8 * 1024 * 1024;
    /// What a `Welcome` is built to fit in: its checkpoint, the genesis and the joiner's
    /// `Join` always, and the rest of the log only as far as it fits. A hood of 1000
    /// members after 1000 rekeys welcomes in less (`proto/tests/welcome.rs`).
    pub const WELCOME_TARGET_BYTES: usize = 1024 * 1024;
    /// How far in the future an item's `created_at` may be, for clock skew.
    pub const MAX_CLOCK_SKEW_SECS: u64 = 600;
    /// Hard cap on any report's lifetime, whatever the policy says: 30 days.
    pub const MAX_TTL_SECS: u32 = 30 * 24 * 3600;
    /// Longest hood name and member display name, in bytes.
    pub const MAX_NAME_BYTES: usize = 64;
}
