//! Membership: signed operations in a causal graph, and the [`Roster`], a deterministic
//! fold over that graph.
//!
//! The rules (`docs/protocol.md` § Membership has the long form and the reasoning):
//! - The genesis names the founder, the hood's name and policy; the hood id commits to
//!   all of it. The founder's first `Rekey` makes the first epoch.
//! - Every other operation names its **causal parents**: the heads of the graph its
//!   author had seen. A node holds an operation only once it holds all its parents.
//! - Validation checks signature, structure and bounds only, so every node stores the
//!   same set. Whether an operation **takes effect** is decided by the fold: operations
//!   are applied in a deterministic topological order (parents first, ties by op id), each
//!   against the state the operations before it made. Its author must be a member then,
//!   and the operation allowed by the policy.
//! - **Strong removal**: a `Remove` that takes effect voids every operation of the removed
//!   member that is not in its causal past (made concurrently, or later), except their
//!   removals, and with them whatever depended on them (a member only they admitted is
//!   never admitted). A removal is never voided, and an admin is removed only by someone
//!   admitted before them, so two admins cannot remove each other.
//! - A `Join` admits a non-member with a ticket that was not used before, from an inviter
//!   and by an admitter the policy lets invite, made before the ticket expired (by its
//!   own date and by the latest date in its causal past), and hands over only epochs the
//!   roster defines, at their generation.
//! - **Caps** ([`Budget`]): an operation's place along its author's chain (judged on its
//!   causal past, so alike at every node) is at most 2000; a node holds at most 4000
//!   charged to one member (a joiner whose admission did not take effect is charged to
//!   whoever signed their join); past 20 000, only admins' removals and rekeys.
//! - A `Rekey` defines an epoch at most one generation past the newest.
//!   It takes no effect if dated more than twice the clock skew before the latest
//!   operation in its causal past (`RekeyBackdated`).
//! - A `Rotate` ([`crate::rotation`]) sets its author's exchange key, unless another
//!   member holds that key.
//! - An epoch is *clean* when everyone its key was handed to by an operation that took
//!   effect is still a member; members seal under the clean epoch with the highest
//!   `(generation, id)`, preferring one that every member holds.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::codec::{self, CodecError, FieldError, check_len, check_text};
use crate::domain;
use crate::hood::{HoodId, Policy};
use crate::identity::{ExchangeKey, MemberId, MemberKeys, Signature};
use crate::ids::{Kind, OpId};
use crate::invite::{InviteError, SignedTicket, Ticket, TicketId};
use crate::keys::{self, EpochId, EpochKey, EpochWrap, KeyError, KeyRing, Wrap};
use crate::limits::{
    MAX_EPOCHS, MAX_ITEM_BYTES, MAX_MEMBERS, MAX_NAME_BYTES, MAX_OPS, MAX_OPS_PER_MEMBER,
    MAX_PARENTS, MAX_RESERVED_OPS, MAX_WELCOME_BYTES, WELCOME_TARGET_BYTES,
};
use crate::signed::Item;

/// Largest join request on the wire.
pub const MAX_JOIN_REQUEST_BYTES: usize = 2048;

/// The hood's first operation, signed by its founder. The hood id is derived from the
/// founder and these exact bytes ([`HoodId::derive`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub salt: [u8; 32],
    pub created_at: u64,
    pub name: String,
    pub founder_name: String,
    pub founder_key: ExchangeKey,
    pub policy: Policy,
}

/// What a would-be member presents to the join protocol: the ticket, their exchange key
/// and display name, and a proof that they hold the signing key of `joiner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub ticket: SignedTicket,
    pub joiner: MemberId,
    pub exchange_key: ExchangeKey,
    pub name: String,
    /// Over `JOIN_REQUEST ‖ hood ‖ ticket id ‖ exchange key ‖ name`.
    pub proof: Signature,
}

impl JoinRequest {
    pub fn new(
        keys: &MemberKeys,
        ticket: SignedTicket,
        opened: &Ticket,
        name: &str,
    ) -> Result<JoinRequest, MembershipError> {
        check_text("name", name, MAX_NAME_BYTES, false).map_err(MembershipError::Field)?;
        // Keys whose first exchange secret was scrubbed after a rotation
        // (`MemberKeys::without_exchange`) cannot ask to join with it.
        if !keys.has_exchange() {
            return Err(MembershipError::BadExchangeKey);
        }
        let exchange_key = keys.exchange_key();
        let proof = keys.sign(&Self::proof_parts(opened, &exchange_key, name));
        Ok(JoinRequest {
            ticket,
            joiner: keys.id(),
            exchange_key,
            name: name.to_owned(),
            proof,
        })
    }

    fn proof_parts<'a>(ticket: &'a Ticket, key: &'a ExchangeKey, name: &'a str) -> [&'a [u8]; 5] {
        [
            domain::JOIN_REQUEST,
            &ticket.hood.0,
            &ticket.id.0,
            &key.0,
            name.as_bytes(),
        ]
    }

    /// Checks the ticket's signature, the name, the exchange key (one HPKE can wrap to)
    /// and the joiner's proof; returns the ticket. Expiry and reuse are the roster's to
    /// judge.
    pub fn verify(&self) -> Result<Ticket, MembershipError> {
        let ticket = self.ticket.open().map_err(MembershipError::Ticket)?;
        check_text("name", &self.name, MAX_NAME_BYTES, false).map_err(MembershipError::Field)?;
        if !self.exchange_key.is_usable() {
            return Err(MembershipError::BadExchangeKey);
        }
        if !self.joiner.verify(
            &Self::proof_parts(&ticket, &self.exchange_key, &self.name),
            &self.proof,
        ) {
            return Err(MembershipError::BadProof);
        }
        Ok(ticket)
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<JoinRequest, CodecError> {
        codec::decode(bytes, MAX_JOIN_REQUEST_BYTES)
    }
}

/// A member admits a joiner, and hands them the epoch keys it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    pub parents: Vec<OpId>,
    pub created_at: u64,
    pub request: JoinRequest,
    pub wraps: Vec<EpochWrap>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remove {
    pub parents: Vec<OpId>,
    pub created_at: u64,
    pub target: MemberId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promote {
    pub parents: Vec<OpId>,
    pub created_at: u64,
    pub target: MemberId,
}

/// A fresh epoch key, wrapped to each member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekey {
    pub parents: Vec<OpId>,
    pub created_at: u64,
    pub generation: u64,
    pub epoch: EpochId,
    pub wraps: Vec<Wrap>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Genesis(Genesis),
    Join(Join),
    Remove(Remove),
    Promote(Promote),
    Rekey(Rekey),
    /// A member's vote to remove another, under a quorum policy ([`crate::quorum`]).
    RemoveVote(crate::quorum::RemoveVote),
    /// A member's new exchange key ([`crate::rotation`]).
    Rotate(crate::rotation::Rotate),
    /// A member's new display name ([`crate::rename`]).
    Rename(crate::rename::Rename),
}

impl Op {
    /// Signs this operation as a membership item of `hood` (the bytes
    /// `Body::Membership(op)` encodes to: the operation itself).
    pub fn sign(self, keys: &MemberKeys, hood: &HoodId) -> Item {
        Item::sign_encoded(keys, hood, Kind::Membership, codec::encode(&self))
    }

    /// The operation a membership item carries; `None` for another kind of item or a
    /// body that does not decode.
    pub fn of_item(item: &Item) -> Option<Op> {
        if item.kind != Kind::Membership {
            return None;
        }
        codec::decode(&item.body, MAX_ITEM_BYTES).ok()
    }

    pub fn created_at(&self) -> u64 {
        match self {
            Op::Genesis(o) => o.created_at,
            Op::Join(o) => o.created_at,
            Op::Remove(o) => o.created_at,
            Op::Promote(o) => o.created_at,
            Op::Rekey(o) => o.created_at,
            Op::RemoveVote(o) => o.created_at,
            Op::Rotate(o) => o.created_at,
            Op::Rename(o) => o.created_at,
        }
    }

    /// The operation's causal parents (none for the genesis).
    pub fn parents(&self) -> &[OpId] {
        match self {
            Op::Genesis(_) => &[],
            Op::Join(o) => &o.parents,
            Op::Remove(o) => &o.parents,
            Op::Promote(o) => &o.parents,
            Op::Rekey(o) => &o.parents,
            Op::RemoveVote(o) => &o.parents,
            Op::Rotate(o) => &o.parents,
            Op::Rename(o) => &o.parents,
        }
    }
}

/// What a joiner receives: the checkpoint of the admitter's roster, signed by the
/// admitter, and membership operations as signed items: the genesis, the joiner's own
/// `Join` (it carries their epoch keys), and as much more of the log as fits in
/// [`WELCOME_TARGET_BYTES`] (all of it, in a hood of ordinary size). Sync brings the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub ops: Vec<Item>,
    pub checkpoint: Checkpoint,
    /// The `Join`'s author's signature over [`Welcome::signed_digest`].
    pub signature: Signature,
}

impl Welcome {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Welcome, CodecError> {
        codec::decode(bytes, MAX_WELCOME_BYTES)
    }

    /// What the admitter signs: `SHA-256(CHECKPOINT ‖ hood ‖ join op id ‖ SHA-256(checkpoint))`.
    pub fn signed_digest(hood: &HoodId, join: &OpId, checkpoint: &Checkpoint) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::new()
            .chain_update(domain::CHECKPOINT)
            .chain_update(hood.0)
            .chain_update(join.0)
            .chain_update(sha2::Sha256::digest(checkpoint.encode()))
            .finalize()
            .into()
    }
}

/// The answer to a join request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinResponse {
    Welcome(Box<Welcome>),
    /// Why the member refused, for the joiner to show (at most 200 bytes).
    Refused(String),
}

pub use crate::codec::MAX_REFUSAL_BYTES;

impl JoinResponse {
    /// A refusal, made fit for the wire (see [`codec::refusal`]).
    pub fn refused(why: &str) -> JoinResponse {
        JoinResponse::Refused(codec::refusal(why))
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<JoinResponse, CodecError> {
        let response: JoinResponse = codec::decode(bytes, MAX_WELCOME_BYTES + 16)?;
        if let JoinResponse::Refused(why) = &response {
            codec::check_refusal(why)?;
        }
        Ok(response)
    }
}

/// Why an operation is not well formed, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("item is not a membership operation")]
    NotAnOp,
    #[error("malformed operation: {0}")]
    Malformed(CodecError),
    #[error("bad signature on the operation")]
    BadSignature,
    #[error("the genesis does not derive this hood's id")]
    WrongGenesis,
    #[error("the operation set holds no genesis for this hood")]
    NoGenesis,
    #[error("a hood has exactly one genesis")]
    SecondGenesis,
    #[error("invalid field: {0}")]
    Field(FieldError),
    #[error("invalid ticket: {0}")]
    Ticket(InviteError),
    #[error("the ticket is for another hood")]
    TicketForAnotherHood,
    #[error("the joiner's proof of key does not verify")]
    BadProof,
    #[error("the joiner's exchange key is not one an epoch key can be wrapped to")]
    BadExchangeKey,
    #[error("a wrap in the operation is addressed to the wrong member")]
    MisaddressedWrap,
    #[error("a join hands over the same epoch twice")]
    DuplicateWrap,
    #[error(
        "a rekey must have generation 1 or more, wrap to its author, and no duplicate recipients"
    )]
    BadRekey,
    #[error(
        "an operation must name 1 to {MAX_PARENTS} causal parents, in increasing order, each once"
    )]
    BadParents,
    #[error("a causal parent of the operation is not known here yet")]
    MissingParents,
    #[error("the roster is full ({0} operations)")]
    TooManyOps(usize),
    #[error("not allowed: {0}")]
    Denied(Denied),
    #[error("the welcome's checkpoint is invalid: {0}")]
    BadCheckpoint(&'static str),
    #[error("the welcome holds no join that admits this member")]
    NotWelcomed,
    #[error("the welcome's checkpoint is not signed by the member who admitted us")]
    BadWelcomeSignature,
    #[error("the welcome holds an operation its checkpoint does not cover")]
    UncoveredOp,
    #[error(
        "the welcome's checkpoint is not what its operations make: the admitting member \
         sent a false roster"
    )]
    CheckpointContradicted,
    #[error(
        "this node is still fetching the hood's history ({missing} operations to go); \
         it can do this once it has checked it"
    )]
    Provisional { missing: usize },
    #[error("key wrap failed: {0}")]
    Key(KeyError),
}

/// Why an operation takes no effect (in the fold), or why a member may not make it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the author is not a current member")]
    AuthorNotMember,
    #[error("the ticket's inviter is not a current member")]
    InviterNotMember,
    #[error("the hood's policy does not let this member invite")]
    PolicyForbidsInvite,
    #[error("the hood's policy does not let this member remove others")]
    PolicyForbidsRemove,
    #[error("only admins may promote")]
    NotAdmin,
    #[error("the target is not a member")]
    TargetNotMember,
    #[error("the target is an admin already")]
    AlreadyAdmin,
    #[error("the invite expired before the join")]
    TicketExpired,
    #[error("the invite was already used")]
    TicketReused,
    #[error("a removed member cannot join again")]
    JoinerRemoved,
    #[error("the joiner is a member already")]
    AlreadyMember,
    #[error(
        "a join hands over a key for an epoch the hood does not have, or at the wrong generation"
    )]
    UnknownEpochWrap,
    #[error("a rekey wraps to someone who was never a member")]
    WrapToStranger,
    #[error("a rekey repeats an existing epoch")]
    DuplicateEpoch,
    #[error("a hood has exactly one genesis")]
    SecondGenesis,
    #[error("a rekey's generation is more than one past the newest epoch")]
    GenerationTooHigh,
    #[error("the operation was voided by its author's removal")]
    Voided,
    #[error("an admin can be removed only by someone admitted before them")]
    Outranked,
    #[error("the hood's policy removes without votes")]
    NotAQuorumHood,
    #[error("a member's vote on their own removal does not count")]
    OwnVote,
    #[error("a rekey is dated earlier than operations it follows (less the clock skew allowed)")]
    RekeyBackdated,
    #[error("the exchange key is another member's")]
    ExchangeKeyTaken,
}

/// A member as the roster knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub exchange_key: ExchangeKey,
    pub name: String,
    pub admin: bool,
    pub joined_at: u64,
    /// `None` for the founder.
    pub invited_by: Option<MemberId>,
}

/// An epoch and who was handed its key by an operation that took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    pub id: EpochId,
    pub generation: u64,
    pub created_at: u64,
    pub holders: BTreeSet<MemberId>,
}

/// An operation whose signature and structure were checked (see [`verify_op`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOp {
    pub item: Item,
    pub op: Op,
    /// The opened ticket, for joins.
    pub ticket: Option<Ticket>,
}

/// What the fold derives from the operation set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) members: BTreeMap<MemberId, Member>,
    pub(crate) removed: BTreeSet<MemberId>,
    pub(crate) epochs: BTreeMap<EpochId, Epoch>,
    pub(crate) tickets: BTreeMap<TicketId, MemberId>,
    /// Operations that took effect.
    pub(crate) effective: BTreeSet<OpId>,
    /// Operations voided by their author's removal.
    pub(crate) void: BTreeSet<OpId>,
    /// Why each operation that took no effect did not.
    pub(crate) denied: BTreeMap<OpId, Denied>,
    /// Each member's seniority: how many operations had taken effect when they were
    /// admitted (the founder 0). Lower is more senior.
    pub(crate) seniority: BTreeMap<MemberId, usize>,
    /// How many operations took effect before `effective` began: those a checkpoint
    /// covers, for a roster that starts from one (0 otherwise).
    pub(crate) offset: usize,
    /// Removal votes and the removals they completed (quorum policy; not in a
    /// checkpoint, see `docs/protocol.md` § Removal by quorum).
    pub(crate) tally: crate::quorum::Tally,
    /// Members this fold removed, with their record and the removals that name them (not
    /// in a checkpoint: a roster that starts from one cannot tell when a member it
    /// covers was removed, and judges them as removed everywhere).
    pub(crate) gone: BTreeMap<MemberId, Gone>,
}

/// A member the fold removed (see `Roster::removal_unseen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gone {
    /// Their record when removed (admin status, for their acts judged as a member's).
    pub(crate) member: Member,
    /// The removal that took effect (a `Remove`, or the vote that completed a quorum),
    /// then every later one in the fold's order that found them removed already and
    /// would otherwise have been allowed: whoever saw any of these heard of the removal.
    pub(crate) by: Vec<OpId>,
}

impl State {
    /// Removes `target` for good, by the removal (or completing vote) `by`.
    pub(crate) fn remove_member(&mut self, target: MemberId, by: OpId) {
        if let Some(member) = self.members.remove(&target) {
            self.gone.insert(
                target,
                Gone {
                    member,
                    by: vec![by],
                },
            );
        }
        self.removed.insert(target);
    }

    /// `f` on this state with the removed members `who` counted members again, with the
    /// standing each had when removed (anyone else in `who` is left as they are).
    fn as_if_members<T>(&mut self, who: &[MemberId], f: impl FnOnce(&State) -> T) -> T {
        let back: Vec<Member> = who
            .iter()
            .filter(|m| !self.members.contains_key(m))
            .filter_map(|m| self.gone.get(m))
            .map(|gone| gone.member.clone())
            .collect();
        for member in &back {
            self.members.insert(member.id, member.clone());
        }
        let out = f(self);
        for member in &back {
            self.members.remove(&member.id);
        }
        out
    }

    fn is_admin(&self, id: &MemberId) -> bool {
        self.members.get(id).is_some_and(|m| m.admin)
    }

    /// One past the highest generation. Saturating: a member may publish generation
    /// `u64::MAX`, and the rekey after it must still be a valid operation.
    fn next_generation(&self) -> u64 {
        self.epochs
            .values()
            .map(|e| e.generation)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// Whether `author` may admit on `ticket` in this state, its inviter being a member
    /// (or, in the fold, a member removed outside the join's causal past) who is an
    /// admin or not as `inviter_admin` says.
    fn check_join(
        &self,
        policy: &Policy,
        author: &MemberId,
        join: &Join,
        ticket: &Ticket,
        inviter_admin: bool,
    ) -> Result<(), Denied> {
        // Both the ticket's inviter and the member who admits on it.
        if !policy.invite.allows(inviter_admin) || !policy.invite.allows(self.is_admin(author)) {
            return Err(Denied::PolicyForbidsInvite);
        }
        if join.created_at > ticket.expires_at {
            return Err(Denied::TicketExpired);
        }
        let joiner = join.request.joiner;
        if self.removed.contains(&joiner) {
            return Err(Denied::JoinerRemoved);
        }
        if self.members.contains_key(&joiner) {
            return Err(Denied::AlreadyMember);
        }
        if self.tickets.contains_key(&ticket.id) {
            return Err(Denied::TicketReused);
        }
        for w in &join.wraps {
            match self.epochs.get(&w.epoch) {
                Some(e) if e.generation == w.generation => {}
                _ => return Err(Denied::UnknownEpochWrap),
            }
        }
        Ok(())
    }

    /// Whether `author` may perform `op` in this state.
    fn check(
        &self,
        policy: &Policy,
        author: &MemberId,
        op: &Op,
        ticket: Option<&Ticket>,
    ) -> Result<(), Denied> {
        if !self.members.contains_key(author) {
            return Err(Denied::AuthorNotMember);
        }
        match op {
            Op::Genesis(_) => Err(Denied::SecondGenesis),
            Op::Join(join) => {
                let ticket = ticket.ok_or(Denied::InviterNotMember)?;
                let inviter_admin = self
                    .members
                    .get(&ticket.inviter)
                    .ok_or(Denied::InviterNotMember)?
                    .admin;
                self.check_join(policy, author, join, ticket, inviter_admin)
            }
            Op::Remove(r) => {
                let target = self.members.get(&r.target).ok_or(Denied::TargetNotMember)?;
                if *author == r.target {
                    return Ok(());
                }
                if !policy.remove.allows(self.is_admin(author)) {
                    return Err(Denied::PolicyForbidsRemove);
                }
                // An admin is removed only by someone admitted before them: two admins
                // cannot remove each other, and a junior admin cannot take a senior's
                // place. (A rogue senior admin is what a removal quorum is for.)
                if target.admin && self.seniority.get(author) > self.seniority.get(&r.target) {
                    return Err(Denied::Outranked);
                }
                Ok(())
            }
            Op::Promote(p) => {
                if !self.is_admin(author) {
                    return Err(Denied::NotAdmin);
                }
                match self.members.get(&p.target) {
                    None => Err(Denied::TargetNotMember),
                    Some(m) if m.admin => Err(Denied::AlreadyAdmin),
                    Some(_) => Ok(()),
                }
            }
            Op::Rekey(r) => {
                // At most one past the newest epoch: a member cannot jump the order
                // that decides which epoch everyone seals under.
                if r.generation > self.next_generation() {
                    return Err(Denied::GenerationTooHigh);
                }
                if self.epochs.contains_key(&r.epoch) {
                    return Err(Denied::DuplicateEpoch);
                }
                // A wrap to a member removed concurrently is honest (the rekeyer had not
                // heard): the epoch is made, and is not clean. A wrap to someone who was
                // never admitted is not.
                if r.wraps
                    .iter()
                    .any(|w| !self.members.contains_key(&w.to) && !self.removed.contains(&w.to))
                {
                    return Err(Denied::WrapToStranger);
                }
                Ok(())
            }
            // Quorum hook: the rules are in `quorum.rs`.
            Op::RemoveVote(v) => crate::quorum::check_vote(self, policy, author, v),
            Op::Rotate(r) => crate::rotation::check(self, author, r),
            // Any member may rename itself (the author check above).
            Op::Rename(_) => Ok(()),
        }
    }

    /// Applies an operation that [`State::check`] allowed.
    fn apply(&mut self, id: OpId, author: MemberId, op: &Op, ticket: Option<&Ticket>) {
        match op {
            Op::Genesis(_) => {}
            Op::Join(join) => {
                let joiner = join.request.joiner;
                self.seniority
                    .insert(joiner, self.offset + self.effective.len());
                self.members.insert(
                    joiner,
                    Member {
                        id: joiner,
                        exchange_key: join.request.exchange_key,
                        name: join.request.name.clone(),
                        admin: false,
                        joined_at: join.created_at,
                        invited_by: ticket.map(|t| t.inviter),
                    },
                );
                if let Some(ticket) = ticket {
                    self.tickets.insert(ticket.id, joiner);
                }
                // The admitter holds what it hands over.
                for w in &join.wraps {
                    if let Some(e) = self.epochs.get_mut(&w.epoch) {
                        e.holders.insert(joiner);
                        e.holders.insert(author);
                    }
                }
            }
            Op::Remove(r) => self.remove_member(r.target, id),
            Op::Promote(p) => {
                if let Some(m) = self.members.get_mut(&p.target) {
                    m.admin = true;
                }
            }
            Op::Rekey(r) => {
                let holders = r.wraps.iter().map(|w| w.to).chain([author]).collect();
                self.epochs.insert(
                    r.epoch,
                    Epoch {
                        id: r.epoch,
                        generation: r.generation,
                        created_at: r.created_at,
                        holders,
                    },
                );
            }
            // Counted by `Roster::step` through `Roster::count_vote` (it needs the
            // vote's causal time).
            Op::RemoveVote(_) => {}
            Op::Rotate(r) => crate::rotation::apply(self, &author, r),
            Op::Rename(r) => crate::rename::apply(self, &author, r),
        }
        self.effective.insert(id);
    }
}

/// The membership state: a pure function of the set of operations inserted so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    hood: HoodId,
    genesis: OpId,
    genesis_op: Genesis,
    founder: MemberId,
    ops: BTreeMap<OpId, VerifiedOp>,
    /// Operations no other operation in the set names as a parent.
    heads: BTreeSet<OpId>,
    /// Each author's operations.
    authored: BTreeMap<MemberId, BTreeSet<OpId>>,
    /// The founder and everyone some `Join` in the set admits, whether or not it took
    /// effect: whose operations the set takes (the fold decides what they do).
    known: BTreeSet<MemberId>,
    /// Per-author chains and who signed each joiner's joins (see [`Budget`]).
    budget: Budget,
    // Derived by the fold.
    state: State,
    /// Members' decompressed keys, for `verify_item`.
    verifiers: BTreeMap<MemberId, ed25519_dalek::VerifyingKey>,
    /// Set while the roster starts from a checkpoint and lacks some of the operations
    /// it covers: the fold begins at its state and applies only what it does not cover.
    base: Option<Box<Base>>,
    /// Whether the checkpoint this roster started from proved to be the fold of its
    /// operations (`None` if it started from none, or they have not all arrived).
    checkpoint_held: Option<bool>,
    /// Operations dropped from the set when the checkpoint was checked: ones it vouched
    /// for that no other member takes (see [`Roster::admissible`]), for the node to
    /// delete from its store ([`Roster::take_strays`]).
    strays: Vec<Item>,
}

/// A checkpoint a roster starts from, until every operation it covers is here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Base {
    checkpoint: Checkpoint,
    covered: BTreeSet<OpId>,
    state: State,
    /// How many covered operations are not in the set yet (kept, not counted per call:
    /// catch-up asks after every operation).
    missing: usize,
}

/// A new hood: the signed genesis, the founder's first rekey, its id and that epoch's key.
#[derive(Debug, Clone)]
pub struct NewHood {
    pub genesis: Item,
    pub rekey: Item,
    pub hood: HoodId,
    pub epoch: EpochKey,
}

impl NewHood {
    /// The new hood's roster: its genesis and the founder's first rekey.
    pub fn roster(&self) -> Result<Roster, MembershipError> {
        let mut roster = Roster::from_genesis(&self.genesis)?;
        roster.insert(&self.rekey)?;
        Ok(roster)
    }
}

/// Founds a hood. `created_at` is now; randomness comes from `rng`.
pub fn found(
    keys: &MemberKeys,
    name: &str,
    founder_name: &str,
    policy: Policy,
    created_at: u64,
    rng: &mut impl CryptoRng,
) -> Result<NewHood, MembershipError> {
    let mut salt = [0u8; 32];
    rng.fill_bytes(&mut salt);
    let genesis = Genesis {
        salt,
        created_at,
        name: name.to_owned(),
        founder_name: founder_name.to_owned(),
        founder_key: keys.exchange_key(),
        policy,
    };
    check_genesis(&genesis)?;
    let op = Op::Genesis(genesis);
    let hood = HoodId::derive(&keys.id(), &codec::encode(&op));
    let genesis = op.sign(keys, &hood);
    let roster = Roster::from_genesis(&genesis)?;
    let (rekey, epoch, _) = roster.rekey(keys, created_at, rng)?;
    Ok(NewHood {
        genesis,
        rekey,
        hood,
        epoch,
    })
}

fn check_genesis(g: &Genesis) -> Result<(), MembershipError> {
    let field = MembershipError::Field;
    check_text("hood name", &g.name, MAX_NAME_BYTES, false).map_err(field)?;
    if g.name.trim().is_empty() {
        return Err(field(FieldError::Empty { what: "hood name" }));
    }
    check_text("founder name", &g.founder_name, MAX_NAME_BYTES, false).map_err(field)?;
    g.policy.check().map_err(field)?;
    if !g.founder_key.is_usable() {
        return Err(MembershipError::BadExchangeKey);
    }
    Ok(())
}

fn check_parents(parents: &[OpId]) -> Result<(), MembershipError> {
    if parents.is_empty() || parents.len() > MAX_PARENTS || parents.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(MembershipError::BadParents);
    }
    Ok(())
}

/// Verifies an item as a membership operation of `hood` and checks its structure: all
/// that does not depend on other operations.
pub fn verify_op(hood: &HoodId, item: &Item) -> Result<VerifiedOp, MembershipError> {
    if item.kind != Kind::Membership {
        return Err(MembershipError::NotAnOp);
    }
    if !item.verify(hood) {
        return Err(MembershipError::BadSignature);
    }
    let op: Op = codec::decode(&item.body, MAX_ITEM_BYTES).map_err(MembershipError::Malformed)?;
    let mut ticket = None;
    match &op {
        Op::Genesis(g) => {
            check_genesis(g)?;
            if HoodId::derive(&item.author, &item.body) != *hood {
                return Err(MembershipError::WrongGenesis);
            }
        }
        Op::Join(j) => {
            check_parents(&j.parents)?;
            let t = j.request.verify()?;
            if t.hood != *hood {
                return Err(MembershipError::TicketForAnotherHood);
            }
            check_len("join wraps", j.wraps.len(), MAX_EPOCHS).map_err(MembershipError::Field)?;
            if j.wraps.iter().any(|w| w.wrap.to != j.request.joiner) {
                return Err(MembershipError::MisaddressedWrap);
            }
            let epochs: BTreeSet<EpochId> = j.wraps.iter().map(|w| w.epoch).collect();
            if epochs.len() != j.wraps.len() {
                return Err(MembershipError::DuplicateWrap);
            }
            ticket = Some(t);
        }
        Op::Rekey(r) => {
            check_parents(&r.parents)?;
            check_len("rekey wraps", r.wraps.len(), MAX_MEMBERS).map_err(MembershipError::Field)?;
            let recipients: BTreeSet<MemberId> = r.wraps.iter().map(|w| w.to).collect();
            if r.generation == 0
                || recipients.len() != r.wraps.len()
                || !recipients.contains(&item.author)
            {
                return Err(MembershipError::BadRekey);
            }
        }
        Op::Remove(r) => check_parents(&r.parents)?,
        Op::Promote(p) => check_parents(&p.parents)?,
        Op::RemoveVote(v) => check_parents(&v.parents)?,
        Op::Rotate(r) => {
            check_parents(&r.parents)?;
            crate::rotation::verify(r)?;
        }
        Op::Rename(r) => {
            check_parents(&r.parents)?;
            crate::rename::verify(r)?;
        }
    }
    Ok(VerifiedOp {
        item: item.clone(),
        op,
        ticket,
    })
}

impl Roster {
    /// Checks an item's signature with its author's cached key (a member's), or the
    /// slow way for anyone else.
    pub fn verify_item(&self, item: &Item) -> bool {
        match self.verifiers.get(&item.author) {
            Some(key) => item.verify_with(&self.hood, key),
            None => item.verify(&self.hood),
        }
    }

    /// A roster holding only its genesis.
    pub fn from_genesis(genesis: &Item) -> Result<Roster, MembershipError> {
        if genesis.kind != Kind::Membership {
            return Err(MembershipError::NoGenesis);
        }
        let hood = HoodId::derive(&genesis.author, &genesis.body);
        let stored = verify_op(&hood, genesis)?;
        let Op::Genesis(g) = stored.op.clone() else {
            return Err(MembershipError::NoGenesis);
        };
        let id = genesis.op_id();
        let founder = genesis.author;
        let mut roster = Roster {
            hood,
            genesis: id,
            genesis_op: g,
            founder,
            ops: BTreeMap::from([(id, stored)]),
            heads: BTreeSet::from([id]),
            authored: BTreeMap::from([(founder, BTreeSet::from([id]))]),
            known: BTreeSet::from([founder]),
            budget: Budget::default(),
            state: State::default(),
            verifiers: BTreeMap::new(),
            base: None,
            checkpoint_held: None,
            strays: Vec::new(),
        };
        roster.note_budget(id);
        roster.refold();
        Ok(roster)
    }

    /// Splits a set of items into this hood's genesis and the rest, by op id.
    fn split<'a>(
        hood: &HoodId,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> Result<(&'a Item, BTreeMap<OpId, &'a Item>), MembershipError> {
        let mut pending: BTreeMap<OpId, &Item> = BTreeMap::new();
        let mut genesis = None;
        for item in items {
            if item.kind == Kind::Membership && HoodId::derive(&item.author, &item.body) == *hood {
                genesis = Some(item);
            } else {
                pending.insert(item.op_id(), item);
            }
        }
        Ok((genesis.ok_or(MembershipError::NoGenesis)?, pending))
    }

    /// The roster of `hood` from a set of operations in any order (a `Welcome`, or the
    /// store at start-up). Every item must be a valid operation of the hood, and the set
    /// causally complete (every parent in it).
    pub fn from_items<'a>(
        hood: &HoodId,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> Result<Roster, MembershipError> {
        let (genesis, pending) = Roster::split(hood, items)?;
        let mut roster = Roster::from_genesis(genesis)?;
        roster.add_all(pending)?;
        roster.refold();
        Ok(roster)
    }

    /// The roster of a joiner from its `Welcome`: the admitter's signed checkpoint, then
    /// every operation the welcome carries. If they are all the checkpoint covers, the
    /// claim is checked at once (a false one is refused); otherwise the roster is
    /// provisional until sync brings the rest (see [`Roster::is_provisional`]).
    pub fn from_welcome(
        hood: &HoodId,
        joiner: &MemberId,
        welcome: &Welcome,
    ) -> Result<Roster, MembershipError> {
        let (genesis, pending) = Roster::split(hood, &welcome.ops)?;
        // Our join, by the member who signed the checkpoint.
        let admitter = pending
            .iter()
            .filter(|(_, item)| {
                matches!(Op::of_item(item), Some(Op::Join(j)) if j.request.joiner == *joiner)
            })
            .find(|(id, item)| {
                item.author.verify(
                    &[&Welcome::signed_digest(hood, id, &welcome.checkpoint)],
                    &welcome.signature,
                )
            })
            .map(|(_, item)| item.author);
        let Some(admitter) = admitter else {
            return Err(if pending.values().any(|item| {
                matches!(Op::of_item(item), Some(Op::Join(j)) if j.request.joiner == *joiner)
            }) {
                MembershipError::BadWelcomeSignature
            } else {
                MembershipError::NotWelcomed
            });
        };
        let mut roster = Roster::from_genesis(genesis)?;
        roster.start_from(welcome.checkpoint.clone())?;
        if pending.keys().any(|id| !roster.is_covered(id)) {
            return Err(MembershipError::UncoveredOp);
        }
        if !roster.state.members.contains_key(joiner)
            || !roster.state.members.contains_key(&admitter)
        {
            return Err(MembershipError::NotWelcomed);
        }
        roster.add_all(pending)?;
        roster.settle();
        if roster.checkpoint_held == Some(false) {
            return Err(MembershipError::CheckpointContradicted);
        }
        Ok(roster)
    }

    /// The roster of a node that joined from a checkpoint and has not yet all the
    /// operations it covers (start-up): the checkpoint, then the stored operations.
    pub fn resume<'a>(
        hood: &HoodId,
        checkpoint: &Checkpoint,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> Result<Roster, MembershipError> {
        let (genesis, pending) = Roster::split(hood, items)?;
        let mut roster = Roster::from_genesis(genesis)?;
        roster.start_from(checkpoint.clone())?;
        roster.add_all(pending)?;
        roster.settle();
        Ok(roster)
    }

    /// Makes the roster start from `checkpoint` (a roster holding only its genesis).
    fn start_from(&mut self, checkpoint: Checkpoint) -> Result<(), MembershipError> {
        let state = State::from_checkpoint(&checkpoint)?;
        let covered: BTreeSet<OpId> = checkpoint.covered.iter().copied().collect();
        if !covered.contains(&self.genesis) {
            return Err(MembershipError::BadCheckpoint(
                "it does not cover the hood's genesis",
            ));
        }
        if !state.members.contains_key(&self.founder) && !state.removed.contains(&self.founder) {
            return Err(MembershipError::BadCheckpoint(
                "it does not list the founder",
            ));
        }
        self.heads = checkpoint.heads.iter().copied().collect();
        self.known.extend(state.members.keys().copied());
        self.known.extend(state.removed.iter().copied());
        self.state = state.clone();
        let missing = covered.iter().filter(|c| !self.ops.contains_key(c)).count();
        self.base = Some(Box::new(Base {
            checkpoint,
            covered,
            state,
            missing,
        }));
        self.refresh_verifiers();
        Ok(())
    }

    /// Adds pending operations parents first (depth-first over what is pending),
    /// without folding. Operations a checkpoint covers need no parents here.
    fn add_all(&mut self, mut pending: BTreeMap<OpId, &Item>) -> Result<(), MembershipError> {
        let hood = self.hood;
        let ids: Vec<OpId> = pending.keys().copied().collect();
        for id in ids {
            let mut stack = vec![id];
            while let Some(next) = stack.last().copied() {
                let Some(item) = pending.get(&next).copied() else {
                    stack.pop();
                    continue;
                };
                let verified = verify_op(&hood, item)?;
                if self.is_covered(&next) {
                    self.add_history(next, verified)?;
                    pending.remove(&next);
                    stack.pop();
                    continue;
                }
                let missing: Vec<OpId> = verified
                    .op
                    .parents()
                    .iter()
                    .filter(|p| !self.has(p))
                    .copied()
                    .collect();
                if missing.is_empty() {
                    self.add(next, verified)?;
                    pending.remove(&next);
                    stack.pop();
                } else {
                    for p in missing {
                        if !pending.contains_key(&p) || stack.contains(&p) {
                            return Err(MembershipError::MissingParents);
                        }
                        stack.push(p);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether operation `id` is one the checkpoint this roster starts from covers.
    pub fn is_covered(&self, id: &OpId) -> bool {
        self.base.as_ref().is_some_and(|b| b.covered.contains(id))
    }

    /// Whether `id` is in the set, or covered by the checkpoint the roster starts from.
    fn has(&self, id: &OpId) -> bool {
        self.ops.contains_key(id) || self.is_covered(id)
    }

    /// True while the roster starts from a checkpoint some of whose operations have not
    /// arrived: the member reads, but makes no operation and posts nothing until the
    /// claim is checked.
    pub fn is_provisional(&self) -> bool {
        self.base.is_some()
    }

    /// How many operations the checkpoint covers that are not here yet (0 if none).
    pub fn history_missing(&self) -> usize {
        self.base.as_ref().map_or(0, |b| b.missing)
    }

    /// The checkpoint a provisional roster starts from (to store it).
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.base.as_ref().map(|b| &b.checkpoint)
    }

    /// Whether the checkpoint this roster started from proved true (`None` while its
    /// operations are still arriving, or if it started from none).
    pub fn checkpoint_held(&self) -> Option<bool> {
        self.checkpoint_held
    }

    pub(crate) fn ensure_settled(&self) -> Result<(), MembershipError> {
        match self.history_missing() {
            0 => Ok(()),
            missing => Err(MembershipError::Provisional { missing }),
        }
    }

    /// Stops waiting for the history the checkpoint covers: what arrived of it is
    /// checked as if it were all (operations no other member would take are dropped,
    /// see [`Roster::take_strays`]), the checkpoint counts as not held, and the roster
    /// is folded from the genesis; what is still missing comes later, if ever, through
    /// ordinary validation. For a joiner whose admitter covers an operation nobody
    /// holds: without this it would stay provisional, writing nothing, for good.
    pub fn give_up_checkpoint(&mut self) {
        let Some(base) = self.base.as_mut() else {
            return;
        };
        let ops = &self.ops;
        base.covered.retain(|c| ops.contains_key(c));
        base.missing = 0;
        self.finish();
        self.checkpoint_held = Some(false);
    }

    /// Refolds, or, once every operation the checkpoint covers is here, checks the
    /// checkpoint and drops it.
    fn settle(&mut self) {
        if self.base.is_some() && self.history_missing() == 0 {
            self.finish();
        } else {
            self.refold();
        }
    }

    /// Every operation the checkpoint covers is here: fold them alone and compare with
    /// the claim (the heads too), then fold the whole set from the genesis.
    fn finish(&mut self) {
        let Some(base) = self.base.take() else {
            return;
        };
        // What is derived per operation from its causal past (chain places, causal
        // times, which the fold reads) was computed for history that arrived before its
        // parents: again, parents first.
        self.rebuild_budget();
        let claim = self.fold(|id| base.covered.contains(id), &State::default());
        let named: BTreeSet<OpId> = base
            .covered
            .iter()
            .flat_map(|id| self.ops[id].op.parents().iter().copied())
            .collect();
        let heads = base
            .covered
            .iter()
            .filter(|id| !named.contains(id))
            .copied();
        let claim_held = claim.checkpoint(base.covered.iter().copied(), heads) == base.checkpoint;
        // The covered operations were taken at the checkpoint's word, without their
        // author or parents (`judge_op`). Any that no other member would take (a parent
        // nobody holds, an author no join admits) would keep this node's set apart from
        // everyone's for good, and a store holding an operation without its parents
        // cannot be loaded again: they go, and the checkpoint did not hold.
        let admissible = self.admissible();
        let strays: Vec<OpId> = self
            .ops
            .keys()
            .filter(|id| !admissible.contains(id))
            .copied()
            .collect();
        for id in &strays {
            if let Some(stray) = self.ops.remove(id) {
                if let Some(theirs) = self.authored.get_mut(&stray.item.author) {
                    theirs.remove(id);
                    if theirs.is_empty() {
                        self.authored.remove(&stray.item.author);
                    }
                }
                self.strays.push(stray.item);
            }
        }
        // Only strays the checkpoint vouched for count against it: one it did not cover
        // was taken on this node's own judgement (an operation past the per-member cap,
        // its chain place computed while the history was missing), not the admitter's.
        let vouched = strays.iter().any(|id| base.covered.contains(id));
        self.checkpoint_held = Some(claim_held && !vouched);
        if !strays.is_empty() {
            self.rebuild_budget();
        }
        let named: BTreeSet<OpId> = self
            .ops
            .values()
            .flat_map(|o| o.op.parents().iter().copied())
            .collect();
        self.heads = self
            .ops
            .keys()
            .filter(|id| !named.contains(id))
            .copied()
            .collect();
        self.known = std::iter::once(self.founder)
            .chain(self.ops.values().filter_map(|o| match &o.op {
                Op::Join(j) => Some(j.request.joiner),
                _ => None,
            }))
            .collect();
        self.refold();
    }

    /// Recomputes every operation's chain place and causal time, parents first.
    fn rebuild_budget(&mut self) {
        self.budget = Budget::default();
        for id in self.order_of(&|_: &OpId| true) {
            self.note_budget(id);
        }
    }

    /// The operations validation takes from this set, whatever the order they arrive
    /// in (what every other member ends up holding of it): the genesis, then any
    /// operation whose parents are all taken and whose author is the founder or the
    /// joiner of a taken `Join` (`validate::judge_op` without a checkpoint). Linear: each
    /// operation waits on its parents' count, then on its author.
    fn admissible(&self) -> BTreeSet<OpId> {
        let mut missing: BTreeMap<OpId, usize> = BTreeMap::new();
        let mut children: BTreeMap<OpId, Vec<OpId>> = BTreeMap::new();
        for (id, stored) in &self.ops {
            let parents = stored.op.parents();
            missing.insert(*id, parents.len());
            for p in parents {
                children.entry(*p).or_default().push(*id);
            }
        }
        let mut taken = BTreeSet::new();
        let mut known = BTreeSet::from([self.founder]);
        let mut waiting_for_author: BTreeMap<MemberId, Vec<OpId>> = BTreeMap::new();
        let mut ready: Vec<OpId> = missing
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| *id)
            .collect();
        while let Some(id) = ready.pop() {
            let stored = &self.ops[&id];
            let author = stored.item.author;
            if !known.contains(&author) {
                waiting_for_author.entry(author).or_default().push(id);
                continue;
            }
            // Past the per-member cap along its author's chain: refused everywhere.
            if self
                .budget
                .place
                .get(&id)
                .is_some_and(|place| *place as usize > MAX_OPS_PER_MEMBER)
            {
                continue;
            }
            taken.insert(id);
            if let Op::Join(j) = &stored.op
                && known.insert(j.request.joiner)
                && let Some(theirs) = waiting_for_author.remove(&j.request.joiner)
            {
                ready.extend(theirs);
            }
            for child in children.get(&id).map(Vec::as_slice).unwrap_or_default() {
                if let Some(n) = missing.get_mut(child) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(*child);
                    }
                }
            }
        }
        taken
    }

    /// The operations checking the checkpoint dropped from the set (once: the node
    /// deletes them from its store).
    pub fn take_strays(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.strays)
    }

    /// Adds an operation to the set and recomputes the roster. Returns whether it was
    /// new. Authorization is not checked here: the fold decides what an operation does.
    pub fn insert(&mut self, item: &Item) -> Result<bool, MembershipError> {
        let id = item.op_id();
        if self.ops.contains_key(&id) {
            return Ok(false);
        }
        let verified = verify_op(&self.hood, item)?;
        if self.is_covered(&id) {
            // History the checkpoint already accounts for: it changes nothing until all
            // of it is here.
            self.add_history(id, verified)?;
            if self.history_missing() == 0 {
                self.finish();
            }
            return Ok(true);
        }
        if verified.op.parents().iter().any(|p| !self.has(p)) {
            return Err(MembershipError::MissingParents);
        }
        // An operation that names every head comes after everything in the set, so the
        // fold so far stands and only it needs applying; anything else may reorder
        // concurrent operations, so the fold runs again.
        let last = verified
            .op
            .parents()
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            == self.heads;
        self.add(id, verified)?;
        if last {
            self.apply_last(id);
        } else {
            self.refold();
        }
        Ok(true)
    }

    /// Adds a verified operation whose parents are all present, without folding.
    fn add(&mut self, id: OpId, verified: VerifiedOp) -> Result<(), MembershipError> {
        for p in verified.op.parents() {
            self.heads.remove(p);
        }
        self.heads.insert(id);
        self.add_history(id, verified)
    }

    /// Adds a verified operation without touching the heads (directly for operations a
    /// checkpoint covers, whose heads it names).
    fn add_history(&mut self, id: OpId, verified: VerifiedOp) -> Result<(), MembershipError> {
        if self.ops.len() >= MAX_OPS + MAX_RESERVED_OPS {
            return Err(MembershipError::TooManyOps(self.ops.len()));
        }
        if matches!(verified.op, Op::Genesis(_)) {
            return Err(MembershipError::SecondGenesis);
        }
        self.authored
            .entry(verified.item.author)
            .or_default()
            .insert(id);
        if let Op::Join(j) = &verified.op {
            self.known.insert(j.request.joiner);
        }
        if self.ops.insert(id, verified).is_none()
            && let Some(base) = self.base.as_mut()
            && base.covered.contains(&id)
        {
            base.missing = base.missing.saturating_sub(1);
        }
        self.note_budget(id);
        Ok(())
    }

    /// The deterministic topological order of the operations `include` takes: parents
    /// first; among operations whose parents are all placed, the lowest op id. A parent
    /// not taken counts as placed (a checkpoint accounts for it).
    fn order_of(&self, include: &impl Fn(&OpId) -> bool) -> Vec<OpId> {
        let mut waiting: BTreeMap<OpId, usize> = BTreeMap::new();
        let mut children: BTreeMap<OpId, Vec<OpId>> = BTreeMap::new();
        let mut ready = BinaryHeap::new();
        for (id, stored) in self.ops.iter().filter(|(id, _)| include(id)) {
            let parents: Vec<&OpId> = stored
                .op
                .parents()
                .iter()
                .filter(|p| self.ops.contains_key(p) && include(p))
                .collect();
            if parents.is_empty() {
                ready.push(Reverse(*id));
            } else {
                waiting.insert(*id, parents.len());
                for p in parents {
                    children.entry(*p).or_default().push(*id);
                }
            }
        }
        let mut order = Vec::with_capacity(self.ops.len());
        while let Some(Reverse(id)) = ready.pop() {
            order.push(id);
            for child in children.get(&id).map(Vec::as_slice).unwrap_or_default() {
                if let Some(n) = waiting.get_mut(child) {
                    *n -= 1;
                    if *n == 0 {
                        waiting.remove(child);
                        ready.push(Reverse(*child));
                    }
                }
            }
        }
        order
    }

    /// Every operation `id` causally follows.
    fn ancestors(&self, id: &OpId) -> BTreeSet<OpId> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<OpId> = self.ops[id].op.parents().to_vec();
        while let Some(next) = stack.pop() {
            if seen.insert(next)
                && let Some(stored) = self.ops.get(&next)
            {
                stack.extend_from_slice(stored.op.parents());
            }
        }
        seen
    }

    /// Applies one operation to `state`; returns whether it took effect. `position` is
    /// each operation's place in the fold's order (none for an operation that follows
    /// every other).
    fn step(&self, state: &mut State, id: &OpId, position: Option<&BTreeMap<OpId, usize>>) -> bool {
        let stored = &self.ops[id];
        let author = stored.item.author;
        if let Op::Genesis(g) = &stored.op {
            if *id != self.genesis {
                state.denied.insert(*id, Denied::SecondGenesis);
                return false;
            }
            state.members.insert(
                author,
                Member {
                    id: author,
                    exchange_key: g.founder_key,
                    name: g.founder_name.clone(),
                    admin: true,
                    joined_at: g.created_at,
                    invited_by: None,
                },
            );
            state.seniority.insert(author, 0);
            state.effective.insert(*id);
            return true;
        }
        let policy = &self.genesis_op.policy;
        let verdict = match (
            state.check(policy, &author, &stored.op, stored.ticket.as_ref()),
            &stored.op,
            stored.ticket.as_ref(),
            position,
        ) {
            // The inviter was removed, but not in the join's causal past: its admitter
            // had not heard. The join stands on the inviter's standing before the
            // removal, so a member cannot void the joins on their tickets by leaving
            // with parents from before them (R6).
            (Err(Denied::InviterNotMember), Op::Join(join), Some(ticket), Some(position))
                if state.removed.contains(&ticket.inviter) =>
            {
                // The cheap checks first (a used ticket, a member already, ...): the
                // search below is only for a join that would otherwise take effect.
                match state.check_join(policy, &author, join, ticket, true) {
                    Err(why) => Err(why),
                    Ok(()) if self.removal_unseen(state, id, &ticket.inviter, position) => {
                        let was_admin = state
                            .gone
                            .get(&ticket.inviter)
                            .is_some_and(|g| g.member.admin);
                        state.check_join(policy, &author, join, ticket, was_admin)
                    }
                    Ok(()) => Err(Denied::InviterNotMember),
                }
            }
            // A removal or a vote whose author the fold removed earlier in its order,
            // but not in this operation's causal past: the author had not heard, and
            // it is judged as their act before the removal. Whether it counts must not
            // depend on which of two concurrent operations has the lower op id (their
            // authors choose both ids and parents): so a removed member cannot undo
            // their removal with a vote that sorts first, and a voter or remover cannot
            // undo a removal by leaving with old parents (docs/protocol.md § Concurrent
            // removals).
            (
                Err(Denied::AuthorNotMember),
                Op::Remove(_) | Op::RemoveVote(_),
                _,
                Some(position),
            ) if self.removal_unseen(state, id, &author, position) => state
                .as_if_members(&[author], |s| s.check(policy, &author, &stored.op, None))
                .and_then(|()| self.target_seen(state, id, &stored.op, position)),
            (verdict, ..) => verdict,
        };
        let verdict = verdict.and_then(|()| self.check_op_time(&stored.op, stored.ticket.as_ref()));
        if let Err(why) = verdict {
            if why == Denied::TargetNotMember {
                self.note_late_removal(state, id, position);
            }
            state.denied.insert(*id, why);
            return false;
        }
        // Quorum hook: a vote counts the live votes at its causal time.
        if let Op::RemoveVote(vote) = &stored.op {
            state.effective.insert(*id);
            if self.count_vote(state, id, author, vote, position) {
                state.remove_member(vote.target, *id);
                state.tally.completed(*id, vote.target);
            }
            return true;
        }
        state.apply(*id, author, &stored.op, stored.ticket.as_ref());
        true
    }

    /// Whether `member`, whom the fold has removed, was removed outside `id`'s causal
    /// past: no removal of theirs (`Gone::by`) is in it. `false` for anyone the fold did
    /// not remove here (a member, someone never admitted, or a removal a checkpoint
    /// covers, which cannot be told). The removals are looked up, not searched for.
    pub(crate) fn removal_unseen(
        &self,
        state: &State,
        id: &OpId,
        member: &MemberId,
        position: &BTreeMap<OpId, usize>,
    ) -> bool {
        match state.gone.get(member) {
            Some(gone) => {
                let by: BTreeSet<OpId> = gone.by.iter().copied().collect();
                by.iter().any(|r| position.contains_key(r))
                    && self.in_past(id, &by, position).is_empty()
            }
            None => false,
        }
    }

    /// Which of `wanted` are in `id`'s causal past. The search walks back from `id`
    /// only through operations placed after the first of `wanted` in the fold's order
    /// (every path from one of them to `id` runs through such operations), so it costs
    /// what was placed between them, not the whole past.
    pub(crate) fn in_past(
        &self,
        id: &OpId,
        wanted: &BTreeSet<OpId>,
        position: &BTreeMap<OpId, usize>,
    ) -> BTreeSet<OpId> {
        let mut found = BTreeSet::new();
        let Some(first) = wanted.iter().filter_map(|w| position.get(w)).min() else {
            return found;
        };
        let mut seen = BTreeSet::new();
        let mut stack: Vec<OpId> = match self.ops.get(id) {
            Some(stored) => stored.op.parents().to_vec(),
            None => return found,
        };
        while let Some(next) = stack.pop() {
            if !seen.insert(next) {
                continue;
            }
            if wanted.contains(&next) {
                found.insert(next);
                if found.len() == wanted.len() {
                    break;
                }
            }
            if position.get(&next).is_some_and(|p| p > first)
                && let Some(stored) = self.ops.get(&next)
            {
                stack.extend_from_slice(stored.op.parents());
            }
        }
        found
    }

    /// For a removal or vote judged as its (since removed) author's act before their
    /// removal: its target must have been admitted in its causal past, or a removed
    /// member could remove, with old parents and an op id that places it late, anyone
    /// who joined after him.
    fn target_seen(
        &self,
        state: &State,
        id: &OpId,
        op: &Op,
        position: &BTreeMap<OpId, usize>,
    ) -> Result<(), Denied> {
        let target = match op {
            Op::Remove(r) => r.target,
            Op::RemoveVote(v) => v.target,
            _ => return Ok(()),
        };
        if target == self.founder {
            return Ok(());
        }
        // Only a join that took effect admitted the target: a removed author can sign a
        // join of anyone (a copy of their request) into his own past, which the fold
        // voids, but which must not count as having seen them admitted.
        let admitted: BTreeSet<OpId> = self
            .budget
            .joins
            .get(&target)
            .map(|joins| {
                joins
                    .iter()
                    .filter(|j| state.effective.contains(*j))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        if self.in_past(id, &admitted, position).is_empty() {
            return Err(Denied::TargetNotMember);
        }
        Ok(())
    }

    /// A removal (or a vote that would complete one) of a member the fold has already
    /// removed, that would have been allowed were they a member: it takes no effect, but
    /// whoever follows it has heard of the removal, whichever of the two came first in
    /// the order (`removal_unseen`).
    fn note_late_removal(
        &self,
        state: &mut State,
        id: &OpId,
        position: Option<&BTreeMap<OpId, usize>>,
    ) {
        let Some(position) = position else {
            return;
        };
        let stored = &self.ops[id];
        let author = stored.item.author;
        let target = match &stored.op {
            Op::Remove(r) => r.target,
            Op::RemoveVote(v) => v.target,
            _ => return,
        };
        if !state.gone.contains_key(&target)
            || !(state.members.contains_key(&author)
                || self.removal_unseen(state, id, &author, position))
        {
            return;
        }
        let policy = &self.genesis_op.policy;
        let allowed = state
            .as_if_members(&[author, target], |s| {
                s.check(policy, &author, &stored.op, None)
            })
            .is_ok();
        let late = match &stored.op {
            Op::RemoveVote(vote) if allowed => {
                self.count_vote(state, id, author, vote, Some(position))
            }
            _ => allowed,
        };
        if late && let Some(gone) = state.gone.get_mut(&target) {
            gone.by.push(*id);
        }
    }

    /// The operations a removal `id` of `target` voids: the target's operations outside
    /// its causal past, except removals. A removal is never voided (it still needs its
    /// author to be allowed at its place in the order): removing someone only narrows the
    /// hood, and voiding one would bring a removed member back. Joins by others on the
    /// target's tickets are not voided either: an author picks its parents, so
    /// "concurrent" can be faked by a member who leaves later to expel everyone they
    /// once invited. `ancestors` caches causal pasts across the fold's passes.
    fn voided_by(
        &self,
        id: &OpId,
        target: MemberId,
        ancestors: &mut BTreeMap<OpId, BTreeSet<OpId>>,
    ) -> Vec<OpId> {
        let Some(theirs) = self.authored.get(&target) else {
            return Vec::new();
        };
        let past = ancestors.entry(*id).or_insert_with(|| self.ancestors(id));
        theirs
            .iter()
            .filter(|o| !matches!(&self.ops[o].op, Op::Remove(_) | Op::RemoveVote(_)))
            .filter(|o| *o != id && !past.contains(o))
            .copied()
            .collect()
    }

    /// One pass of the fold with `void` skipped. `Err` carries a larger void set when a
    /// removal voided an operation that had already taken effect in this pass.
    fn pass(
        &self,
        order: &[OpId],
        void: &BTreeSet<OpId>,
        ancestors: &mut BTreeMap<OpId, BTreeSet<OpId>>,
        start: &State,
    ) -> Result<State, BTreeSet<OpId>> {
        let position: BTreeMap<OpId, usize> =
            order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut state = State {
            void: void.clone(),
            ..start.clone()
        };
        for (i, id) in order.iter().enumerate() {
            if state.void.contains(id) {
                state.denied.insert(*id, Denied::Voided);
                continue;
            }
            if !self.step(&mut state, id, Some(&position)) {
                continue;
            }
            let stored = &self.ops[id];
            // A removal, or (quorum hook) the vote that completed one.
            let target = match &stored.op {
                Op::Remove(r) => r.target,
                Op::RemoveVote(_) => match state.tally.completed_by(id) {
                    Some(target) => target,
                    None => continue,
                },
                _ => continue,
            };
            let voided: Vec<OpId> = self
                .voided_by(id, target, ancestors)
                .into_iter()
                .filter(|o| position.contains_key(o) && !state.void.contains(o))
                .collect();
            let undo = voided
                .iter()
                .any(|o| position[o] < i && state.effective.contains(o));
            state.void.extend(voided);
            if undo {
                return Err(state.void);
            }
        }
        Ok(state)
    }

    /// Recomputes everything derived from the set of operations. Deterministic: the
    /// order and every rule are functions of the set alone.
    fn refold(&mut self) {
        let state = match &self.base {
            Some(base) => self.fold(|id| !base.covered.contains(id), &base.state),
            None => self.fold(|_| true, &State::default()),
        };
        self.state = state;
        self.refresh_verifiers();
    }

    /// The fold of the operations `include` takes, from `start`.
    fn fold(&self, include: impl Fn(&OpId) -> bool, start: &State) -> State {
        let order = self.order_of(&include);
        let mut void = BTreeSet::new();
        let mut ancestors = BTreeMap::new();
        // Each repeat voids at least one more operation, so this ends within
        // `ops.len()` passes.
        loop {
            match self.pass(&order, &void, &mut ancestors, start) {
                Ok(state) => break state,
                Err(more) => void = more,
            }
        }
    }

    /// Applies an operation that names every head, so follows every other operation in
    /// the set. Exact: if it is a removal, the target's operations are all in its causal
    /// past, so it voids nothing; and since removals are never voided, every void in the
    /// state belongs to a member who stays removed, so none is undone by it.
    fn apply_last(&mut self, id: OpId) {
        let mut state = std::mem::take(&mut self.state);
        self.step(&mut state, &id, None);
        self.state = state;
        self.refresh_verifiers();
    }

    fn refresh_verifiers(&mut self) {
        let members = &self.state.members;
        self.verifiers.retain(|m, _| members.contains_key(m));
        for m in members.keys() {
            if !self.verifiers.contains_key(m)
                && let Some(key) = m.verifying_key()
            {
                self.verifiers.insert(*m, key);
            }
        }
    }

    /// Whether `author` may perform `op` given the roster as it stands: what the builders
    /// check, so that a member is told why before signing an operation that would take
    /// no effect.
    pub fn authorize(
        &self,
        author: &MemberId,
        op: &Op,
        ticket: Option<&Ticket>,
    ) -> Result<(), Denied> {
        self.state
            .check(&self.genesis_op.policy, author, op, ticket)
    }

    pub fn hood(&self) -> HoodId {
        self.hood
    }

    pub fn name(&self) -> &str {
        &self.genesis_op.name
    }

    pub fn policy(&self) -> &Policy {
        &self.genesis_op.policy
    }

    pub fn founder(&self) -> MemberId {
        self.founder
    }

    pub fn genesis_id(&self) -> OpId {
        self.genesis
    }

    /// The fold's state, for the quorum rules (`quorum.rs`).
    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// The author of operation `id`, if it is in the set.
    pub fn author_of(&self, id: &OpId) -> Option<MemberId> {
        self.ops.get(id).map(|o| o.item.author)
    }

    /// Current members, in id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.state.members.values()
    }

    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.state.members.get(id)
    }

    pub fn is_member(&self, id: &MemberId) -> bool {
        self.state.members.contains_key(id)
    }

    pub fn is_admin(&self, id: &MemberId) -> bool {
        self.state.is_admin(id)
    }

    pub fn is_removed(&self, id: &MemberId) -> bool {
        self.state.removed.contains(id)
    }

    pub fn removed(&self) -> impl Iterator<Item = &MemberId> {
        self.state.removed.iter()
    }

    /// Whether operations by `id` belong in the set: the founder, or someone a `Join` in
    /// the set admits (whether or not it took effect).
    pub fn is_known(&self, id: &MemberId) -> bool {
        self.known.contains(id)
    }

    /// The joiner a ticket admitted, if it was used.
    pub fn ticket_holder(&self, id: &TicketId) -> Option<MemberId> {
        self.state.tickets.get(id).copied()
    }

    pub fn epochs(&self) -> impl Iterator<Item = &Epoch> {
        self.state.epochs.values()
    }

    pub fn epoch(&self, id: &EpochId) -> Option<&Epoch> {
        self.state.epochs.get(id)
    }

    /// How many operations in the set `author` signed.
    pub fn ops_by(&self, author: &MemberId) -> usize {
        self.authored.get(author).map_or(0, BTreeSet::len)
    }

    /// Number of operations in the set.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn contains_op(&self, id: &OpId) -> bool {
        self.ops.contains_key(id)
    }

    /// Whether operation `id` is in the set and took effect.
    pub fn took_effect(&self, id: &OpId) -> bool {
        self.state.effective.contains(id)
    }

    /// Why operation `id` took no effect (`None` if it did, or is not in the set).
    pub fn denial(&self, id: &OpId) -> Option<Denied> {
        self.state.denied.get(id).copied()
    }

    /// Whether operation `id` is in the set and was voided by its author's removal.
    pub fn is_void(&self, id: &OpId) -> bool {
        self.state.void.contains(id)
    }

    /// The heads of the graph: what a new operation names as its parents (at most
    /// [`MAX_PARENTS`], lowest ids first; the rest stay heads for the next one).
    pub fn heads(&self) -> Vec<OpId> {
        self.heads.iter().take(MAX_PARENTS).copied().collect()
    }

    /// The first parent `op` names that the set lacks.
    pub fn missing_parent(&self, op: &Op) -> Option<OpId> {
        op.parents().iter().find(|p| !self.has(p)).copied()
    }

    /// Every operation, as signed items, parents before children (in a provisional
    /// roster, what arrived of the covered history first).
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        let ids: Vec<OpId> = match &self.base {
            Some(base) => self
                .ops
                .keys()
                .filter(|id| base.covered.contains(id))
                .copied()
                .chain(self.order_of(&|id: &OpId| !base.covered.contains(id)))
                .collect(),
            None => self.order_of(&|_: &OpId| true),
        };
        ids.into_iter()
            .map(move |id| &self.ops[&id].item)
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// The `Welcome` for `joiner`, whom a `Join` in the set admitted, signed by
    /// `admitter` (that join's author): the checkpoint of this roster, the genesis, the
    /// join, and the rest of the log, parents first, as far as it fits in
    /// [`WELCOME_TARGET_BYTES`].
    pub fn welcome(
        &self,
        admitter: &MemberKeys,
        joiner: &MemberId,
    ) -> Result<Welcome, MembershipError> {
        self.ensure_settled()?;
        let (join_id, join) = self
            .ops
            .iter()
            .find(|(id, o)| {
                self.state.effective.contains(id)
                    && o.item.author == admitter.id()
                    && matches!(&o.op, Op::Join(j) if j.request.joiner == *joiner)
            })
            .map(|(id, o)| (*id, &o.item))
            .ok_or(MembershipError::NotWelcomed)?;
        let checkpoint = self
            .state
            .checkpoint(self.ops.keys().copied(), self.heads.iter().copied());
        let signature =
            admitter.sign(&[&Welcome::signed_digest(&self.hood, &join_id, &checkpoint)]);
        let genesis = &self.ops[&self.genesis].item;
        let mut room = WELCOME_TARGET_BYTES
            .saturating_sub(checkpoint.encode().len())
            .saturating_sub(genesis.encode().len() + join.encode().len() + 1024);
        let mut ops = vec![genesis.clone(), join.clone()];
        for id in self.order_of(&|_: &OpId| true) {
            if id == self.genesis || id == join_id {
                continue;
            }
            let item = &self.ops[&id].item;
            let len = item.encode().len() + 8;
            if len <= room {
                room -= len;
                ops.push(item.clone());
            }
        }
        Ok(Welcome {
            ops,
            checkpoint,
            signature,
        })
    }

    fn is_clean(&self, epoch: &Epoch) -> bool {
        epoch
            .holders
            .iter()
            .all(|h| self.state.members.contains_key(h))
    }

    fn is_complete(&self, epoch: &Epoch) -> bool {
        self.state.members.keys().all(|m| epoch.holders.contains(m))
    }

    /// The epoch to seal new items under: of the clean epochs, the one with the highest
    /// `(generation, id)` among those every member holds, else among all clean ones.
    /// `None` when no epoch is clean (a rekey is needed first).
    pub fn sealing_epoch(&self) -> Option<EpochId> {
        let clean = || self.state.epochs.values().filter(|e| self.is_clean(e));
        clean()
            .filter(|e| self.is_complete(e))
            .max_by_key(|e| (e.generation, e.id))
            .or_else(|| clean().max_by_key(|e| (e.generation, e.id)))
            .map(|e| e.id)
    }

    /// True when a fresh epoch is needed: no epoch is clean, some member lacks the
    /// sealing epoch, or a newer epoch than the sealing one exists (it went to someone
    /// no longer a member, or skipped a member).
    pub fn needs_rekey(&self) -> bool {
        let newest = self
            .state
            .epochs
            .values()
            .max_by_key(|e| (e.generation, e.id));
        match (
            newest,
            self.sealing_epoch()
                .and_then(|id| self.state.epochs.get(&id)),
        ) {
            (Some(newest), Some(sealing)) => newest.id != sealing.id || !self.is_complete(sealing),
            _ => true,
        }
    }

    /// When `epoch` stopped being the newest: the creation time of the first epoch of a
    /// higher generation. `None` while it is the newest (or unknown). Items sealed under
    /// it were made before then, so its key is needed until then plus the longest
    /// lifetime the policy allows.
    pub fn epoch_retired_at(&self, epoch: &EpochId) -> Option<u64> {
        let generation = self.state.epochs.get(epoch)?.generation;
        self.state
            .epochs
            .values()
            .filter(|e| e.generation > generation)
            .map(|e| e.created_at)
            .min()
    }

    /// Makes the `Join` that admits `request`, handing over every key in `ring` that
    /// is one of the hood's epochs.
    pub fn admit(
        &self,
        admitter: &MemberKeys,
        ring: &KeyRing,
        request: &JoinRequest,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Item, MembershipError> {
        self.ensure_settled()?;
        let ticket = request.verify()?;
        if ticket.hood != self.hood {
            return Err(MembershipError::TicketForAnotherHood);
        }
        let mut join = Join {
            parents: self.parents_for(&admitter.id()),
            created_at: now,
            request: request.clone(),
            wraps: Vec::new(),
        };
        let mut epochs: Vec<&Epoch> = self
            .state
            .epochs
            .values()
            .filter(|e| ring.contains(&e.id))
            .collect();
        // The newest first, so the bound keeps what live items need.
        epochs.sort_by_key(|e| Reverse((e.generation, e.id)));
        for epoch in epochs.into_iter().take(MAX_EPOCHS) {
            let Some(key) = ring.get(&epoch.id) else {
                continue;
            };
            // From the oldest window a live item can be in, never earlier: the joiner
            // reads what is live and nothing older. (An epoch this node has ratcheted
            // past that window, its clock having run ahead, is not handed over.)
            let window = join_window(epoch, now, self.policy().max_ttl_secs);
            let Some(bytes) = key.handover(window) else {
                continue;
            };
            let wrap = keys::wrap_bytes(
                &bytes,
                &epoch.id,
                &self.hood,
                request.joiner,
                &request.exchange_key,
                rng,
            )
            .map_err(MembershipError::Key)?;
            join.wraps.push(EpochWrap {
                epoch: epoch.id,
                generation: epoch.generation,
                wrap,
            });
        }
        self.authorize(&admitter.id(), &Op::Join(join.clone()), Some(&ticket))
            .map_err(MembershipError::Denied)?;
        if self.causal_time(&join.parents) > ticket.expires_at {
            return Err(MembershipError::Denied(Denied::TicketExpired));
        }
        Ok(Op::Join(join).sign(admitter, &self.hood))
    }

    /// Makes a `Rekey`: a fresh epoch key wrapped to every current member.
    pub fn rekey(
        &self,
        keys: &MemberKeys,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<(Item, EpochKey, u64), MembershipError> {
        self.ensure_settled()?;
        if !self.is_member(&keys.id()) {
            return Err(MembershipError::Denied(Denied::AuthorNotMember));
        }
        let generation = self.state.next_generation();
        let parents = self.parents_for(&keys.id());
        // Never dated before what it follows (a clock behind the hood's), or it would
        // take no effect.
        let now = now.max(self.earliest_rekey_time(&parents));
        let key = EpochKey::generate(&self.hood, generation, now, rng);
        let mut wraps = Vec::with_capacity(self.state.members.len());
        for member in self.state.members.values() {
            wraps.push(
                keys::wrap(&key, &self.hood, member.id, &member.exchange_key, rng)
                    .map_err(MembershipError::Key)?,
            );
        }
        let op = Op::Rekey(Rekey {
            parents,
            created_at: now,
            generation,
            epoch: key.id(),
            wraps,
        });
        Ok((op.sign(keys, &self.hood), key, generation))
    }

    /// Makes a `Remove` (follow it with a `Rekey` once inserted).
    pub fn remove(
        &self,
        keys: &MemberKeys,
        target: MemberId,
        now: u64,
    ) -> Result<Item, MembershipError> {
        self.ensure_settled()?;
        let op = Op::Remove(Remove {
            parents: self.parents_for(&keys.id()),
            created_at: now,
            target,
        });
        self.sign_allowed(keys, op)
    }

    /// Signs `op` as `keys`' member once the roster as it stands allows it (what the
    /// builders without a ticket share).
    pub(crate) fn sign_allowed(&self, keys: &MemberKeys, op: Op) -> Result<Item, MembershipError> {
        self.authorize(&keys.id(), &op, None)
            .map_err(MembershipError::Denied)?;
        Ok(op.sign(keys, &self.hood))
    }

    /// Makes a `Promote`.
    pub fn promote(
        &self,
        keys: &MemberKeys,
        target: MemberId,
        now: u64,
    ) -> Result<Item, MembershipError> {
        self.ensure_settled()?;
        let op = Op::Promote(Promote {
            parents: self.parents_for(&keys.id()),
            created_at: now,
            target,
        });
        self.authorize(&keys.id(), &op, None)
            .map_err(MembershipError::Denied)?;
        Ok(op.sign(keys, &self.hood))
    }

    /// Unwraps every epoch key addressed to `me` by an operation that took effect and
    /// that `ring` lacks, at the generation the roster gives the epoch (never the one a
    /// wrap claims). Returns how many keys were learned and how many wraps to `me`
    /// failed to open (a sign of a misbehaving member).
    pub fn learn_keys(&self, me: &MemberKeys, ring: &mut KeyRing) -> (usize, usize) {
        self.learn_keys_with(&me.id(), &[me.first_exchange_secret()], ring)
    }

    /// [`Roster::learn_keys`] with every exchange secret `me` holds (after rotations:
    /// [`crate::rotation`]); each wrap is tried with each, the newest first.
    pub fn learn_keys_with(
        &self,
        me: &MemberId,
        secrets: &[crate::identity::ExchangeSecret],
        ring: &mut KeyRing,
    ) -> (usize, usize) {
        let my_id = *me;
        let (mut learned, mut failed) = (0, 0);
        // A provisional roster also takes what arrived of the covered history (our own
        // join is among it) at the checkpoint's word.
        let history: Vec<&OpId> = match &self.base {
            Some(base) => self
                .ops
                .keys()
                .filter(|id| base.covered.contains(id))
                .collect(),
            None => Vec::new(),
        };
        for id in self.state.effective.iter().chain(history) {
            let wraps: Vec<(EpochId, Option<u64>, &Wrap)> = match &self.ops[id].op {
                Op::Rekey(r) => r
                    .wraps
                    .iter()
                    .filter(|w| w.to == my_id)
                    .map(|w| (r.epoch, None, w))
                    .collect(),
                Op::Join(j) if j.request.joiner == my_id => j
                    .wraps
                    .iter()
                    .map(|w| (w.epoch, Some(j.created_at), &w.wrap))
                    .collect(),
                _ => Vec::new(),
            };
            for (epoch, join_at, wrap) in wraps {
                let Some(meta) = self.state.epochs.get(&epoch) else {
                    continue;
                };
                if ring.contains(&epoch) {
                    continue;
                }
                // A rekey hands the epoch from its first window; a join from the oldest
                // window live at the join (see `Roster::admit`).
                let window = match join_at {
                    None => keys::first_window(meta.created_at),
                    Some(at) => join_window(meta, at, self.policy().max_ttl_secs),
                };
                let opened = secrets.iter().rev().find_map(|secret| {
                    keys::unwrap_with(wrap, &self.hood, &epoch, me, secret)
                        .and_then(|bytes| {
                            EpochKey::from_handover(
                                &self.hood,
                                &epoch,
                                meta.generation,
                                meta.created_at,
                                window,
                                &bytes,
                            )
                        })
                        .ok()
                });
                match opened.ok_or(KeyError::Unwrap) {
                    Ok(key) => {
                        ring.insert(key);
                        learned += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
        }
        (learned, failed)
    }
}

/// The window a `Join` made at `join_at` hands `epoch` from: the oldest a live item can
/// be in then, or the epoch's first window if it is younger.
fn join_window(epoch: &Epoch, join_at: u64, max_ttl_secs: u32) -> u64 {
    keys::oldest_live_window(join_at, max_ttl_secs).max(keys::first_window(epoch.created_at))
}

/// What the operation caps count, kept beside the set (a function of it, like the
/// fold). `docs/protocol.md` § Membership, "Caps", has the rules and the reasoning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Budget {
    /// Each operation's place in its author's chain: one past the highest place of its
    /// author's operations in its causal past. An honest member's operations form one
    /// chain (each names, directly or through others, its author's previous one), so
    /// this counts them; it depends on the operation and its causal past alone, so
    /// every node gives an operation the same place.
    place: BTreeMap<OpId, u32>,
    /// Each author's highest place.
    top: BTreeMap<MemberId, u32>,
    /// The joins in the set that name each joiner.
    joins: BTreeMap<MemberId, BTreeSet<OpId>>,
    /// The latest `created_at` in each operation's causal past, itself included.
    latest: BTreeMap<OpId, u64>,
}

impl Roster {
    /// Records an operation just added to the set (see [`Budget`]).
    fn note_budget(&mut self, id: OpId) {
        let Some(stored) = self.ops.get(&id) else {
            return;
        };
        let author = stored.item.author;
        let joiner = match &stored.op {
            Op::Join(j) => Some(j.request.joiner),
            _ => None,
        };
        let place =
            u32::try_from(self.chain_place(&author, stored.op.parents())).unwrap_or(u32::MAX);
        self.budget.place.insert(id, place);
        let latest = self
            .causal_time(stored.op.parents())
            .max(stored.op.created_at());
        self.budget.latest.insert(id, latest);
        let top = self.budget.top.entry(author).or_insert(0);
        *top = (*top).max(place);
        if let Some(joiner) = joiner {
            self.budget.joins.entry(joiner).or_default().insert(id);
        }
    }

    /// The place in `author`'s chain of an operation by them naming `parents`: one past
    /// the highest place of their operations in its causal past. A function of the
    /// causal past alone: the per-member cap judged on it gives every node the same
    /// verdict (`validate::judge_op`). Parents the set lacks count as nothing.
    pub fn chain_place(&self, author: &MemberId, parents: &[OpId]) -> usize {
        let top = self.budget.top.get(author).copied().unwrap_or(0);
        let mut best = 0u32;
        let mut seen = BTreeSet::new();
        // Breadth first, nearest first: an honest author's previous operation is close,
        // and once an operation at their highest place is found nothing can beat it.
        let mut queue: std::collections::VecDeque<OpId> = parents.iter().copied().collect();
        while best < top
            && let Some(id) = queue.pop_front()
        {
            if !seen.insert(id) {
                continue;
            }
            let Some(stored) = self.ops.get(&id) else {
                continue;
            };
            if stored.item.author == *author {
                best = best.max(self.budget.place.get(&id).copied().unwrap_or(1));
                continue;
            }
            queue.extend(stored.op.parents().iter().copied());
        }
        best as usize + 1
    }

    /// The latest `created_at` among the operations named by `parents` and everything in
    /// their causal past (0 for none): the earliest an operation naming them can have
    /// been made, whatever its own `created_at` says.
    pub fn causal_time(&self, parents: &[OpId]) -> u64 {
        parents
            .iter()
            .filter_map(|p| self.budget.latest.get(p))
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// The latest `created_at` in `id`'s causal past, itself included (a vote's cast
    /// time), and `id`'s place in its author's chain.
    pub(crate) fn time_and_place(&self, id: &OpId) -> Option<(u64, u32)> {
        Some((*self.budget.latest.get(id)?, *self.budget.place.get(id)?))
    }

    /// `author`'s operations in the set.
    pub(crate) fn authored_by(&self, author: &MemberId) -> impl Iterator<Item = (&OpId, &Op)> {
        self.authored
            .get(author)
            .into_iter()
            .flatten()
            .filter_map(|id| Some((id, &self.ops.get(id)?.op)))
    }

    /// A join takes no effect if its causal past holds an operation created after its
    /// ticket expired: expiry is judged against the latest time the join provably
    /// follows, not only the time its author claims (M4 in docs/threat-model.md). A
    /// function of the operation and its causal past, so the same at every node.
    fn check_join_time(&self, op: &Op, ticket: Option<&Ticket>) -> Result<(), Denied> {
        match (op, ticket) {
            (Op::Join(join), Some(ticket))
                if self.causal_time(&join.parents) > ticket.expires_at =>
            {
                Err(Denied::TicketExpired)
            }
            _ => Ok(()),
        }
    }

    /// The time checks of the fold, judged on an operation's causal past: a join's
    /// ticket expiry ([`Roster::check_join_time`]) and a rekey's date
    /// ([`Roster::check_rekey_time`]).
    fn check_op_time(&self, op: &Op, ticket: Option<&Ticket>) -> Result<(), Denied> {
        self.check_join_time(op, ticket)?;
        self.check_rekey_time(op)
    }

    /// A rekey takes no effect if it is dated more than twice the clock skew allowed
    /// before the latest operation in its causal past: its author had seen that
    /// operation, so it was made after it. Without this a member could name the current
    /// heads and date an epoch weeks back, so that its ratchet has all but run out when
    /// it becomes the newest (the backdated-rekey finding, `docs/threat-model.md` § 5).
    /// A function of the operation and its causal past, so the same at every node. A
    /// rekey that names old parents to pass this is handled where keys are used: the
    /// node seals only under epochs that can seal now, and does not retire a ratchet
    /// epoch by its successor's claimed date (`docs/protocol.md` § Key schedule).
    fn check_rekey_time(&self, op: &Op) -> Result<(), Denied> {
        match op {
            Op::Rekey(r)
                if r.created_at
                    .saturating_add(2 * crate::limits::MAX_CLOCK_SKEW_SECS)
                    < self.causal_time(&r.parents) =>
            {
                Err(Denied::RekeyBackdated)
            }
            _ => Ok(()),
        }
    }

    /// The earliest date a rekey naming `parents` may carry and take effect (see
    /// [`Roster::check_rekey_time`]): a node whose clock is behind the hood's dates its
    /// rekey no earlier than this.
    pub fn earliest_rekey_time(&self, parents: &[OpId]) -> u64 {
        self.causal_time(parents)
            .saturating_sub(2 * crate::limits::MAX_CLOCK_SKEW_SECS)
    }

    /// Whether `id`'s admission took effect: a member, or a member since removed. Anyone
    /// else a join names is known (their operations are taken) but not admitted.
    fn is_admitted(&self, id: &MemberId) -> bool {
        self.state.members.contains_key(id) || self.state.removed.contains(id)
    }

    /// The member whose budget `author`'s operations are charged to: their own if they
    /// were admitted; else the budget of whoever signed the join that names them (the
    /// lowest op id if several), transitively. So the joins a removed member signs for
    /// puppets, which the fold voids, give the puppets no budget of their own.
    pub fn budget_owner(&self, author: &MemberId) -> MemberId {
        let mut who = *author;
        let mut seen = BTreeSet::new();
        while !self.is_admitted(&who) && seen.insert(who) {
            let Some(admitter) = self
                .budget
                .joins
                .get(&who)
                .and_then(BTreeSet::first)
                .and_then(|id| self.ops.get(id))
                .map(|stored| stored.item.author)
            else {
                break;
            };
            who = admitter;
        }
        who
    }

    /// How many operations in the set are charged to `owner`'s budget.
    pub fn budget_used(&self, owner: &MemberId) -> usize {
        let charged: usize = self
            .budget
            .joins
            .keys()
            .filter(|j| *j != owner && !self.is_admitted(j) && self.budget_owner(j) == *owner)
            .map(|j| self.ops_by(j))
            .sum();
        self.ops_by(owner) + charged
    }

    /// Whether an operation may take the room kept past [`MAX_OPS`]: a removal or a
    /// rekey by a current admin, or a removal vote by a member (quorum policy).
    pub fn may_use_reserve(&self, author: &MemberId, op: &Op) -> bool {
        match op {
            Op::Remove(_) | Op::Rekey(_) => self.is_admin(author),
            // Under a quorum admins cannot remove alone: members' votes need the room.
            Op::RemoveVote(_) => self.is_member(author),
            _ => false,
        }
    }

    /// Whether `author` signed operations that are not on one chain (neither in the
    /// other's causal past): equivocation, which no honest node does.
    pub fn has_forked(&self, author: &MemberId) -> bool {
        let top = self.budget.top.get(author).copied().unwrap_or(0) as usize;
        self.ops_by(author) > top
    }

    /// Whether an honest builder names `author`'s operations as parents: those of
    /// admitted members whose budget is not full here. Whether other nodes hold an
    /// operation of anyone else may depend on what they held when it came (its author's
    /// budget is charged to another's, or is full: only an equivocating author or one
    /// whose joins were voided gets there); an honest operation must never wait for one,
    /// so it does not name one. (The operations of someone never admitted take no
    /// effect, so not following them changes nothing; those of a member at the budget
    /// do, and an honest operation may then be ordered before one of them: the price of
    /// the equivocation falls on the hood's liveness near that member, until an admin
    /// removes them.)
    fn builds_on(&self, author: &MemberId) -> bool {
        self.is_admitted(author)
            && self.budget_used(&self.budget_owner(author)) < crate::limits::MAX_OPS_PER_BUDGET
    }

    /// `author`'s operation at their highest place (lowest op id among equals).
    fn latest_of(&self, author: &MemberId) -> Option<OpId> {
        let top = self.budget.top.get(author).copied()?;
        self.authored
            .get(author)?
            .iter()
            .find(|id| self.budget.place.get(id) == Some(&top))
            .copied()
    }

    /// The parents a new operation by `author` names: the heads, with any operation by
    /// an author [`Roster::builds_on`] refuses replaced by its nearest ancestors it
    /// accepts, and always `author`'s own latest operation, so that an honest member's
    /// operations form one chain (the heads alone are cut at [`MAX_PARENTS`]).
    pub fn parents_for(&self, author: &MemberId) -> Vec<OpId> {
        let mut chosen = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut stack: Vec<OpId> = self.heads.iter().copied().collect();
        let mut all_heads = true;
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let Some(stored) = self.ops.get(&id) else {
                continue;
            };
            if stored.item.author == *author || self.builds_on(&stored.item.author) {
                chosen.insert(id);
            } else {
                all_heads = false;
                stack.extend_from_slice(stored.op.parents());
            }
        }
        if chosen.is_empty() {
            return self.heads();
        }
        if all_heads && chosen.len() <= MAX_PARENTS {
            // Every head: the operation follows everything in the set.
            return chosen.into_iter().collect();
        }
        let own = self.latest_of(author);
        let room = MAX_PARENTS - usize::from(own.is_some());
        let mut parents: Vec<OpId> = chosen
            .into_iter()
            .filter(|p| Some(*p) != own)
            .take(room)
            .collect();
        parents.extend(own);
        parents.sort();
        parents
    }
}
