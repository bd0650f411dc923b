//! Membership: signed operations and the [`Roster`], a deterministic fold over their *set*.
//!
//! The rules (`docs/protocol.md` § Membership has the long form):
//! - The genesis names the founder, who is the first member and an admin.
//! - A `Join` admits its joiner when its author and the ticket's inviter were admitted
//!   and the policy lets the inviter invite. A ticket admits once: of all joins that
//!   carry one ticket, only the one with the lowest op id counts.
//! - A `Promote` by an admin makes a member an admin.
//! - Admission and promotion are computed as a least fixed point, so the order in which
//!   operations arrive cannot matter.
//! - A `Remove` by a member the policy allows (or by the target, to leave) removes the
//!   target for good: removal wins over every join, also a concurrent one.
//! - Epochs come from the genesis and from `Rekey`s. An epoch is *clean* when everyone
//!   who was ever handed its key is still a member. Members seal under the clean epoch
//!   with the highest `(generation, id)`; if that is not the newest epoch, or a member
//!   lacks its key, the roster asks for a rekey.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, FieldError, check_len, check_text};
use crate::domain;
use crate::hood::{HoodId, Policy};
use crate::identity::{ExchangeKey, MemberId, MemberKeys, Signature};
use crate::invite::{InviteError, SignedTicket, Ticket, TicketId};
use crate::item::{Body, Item, Kind, OpId};
use crate::keys::{self, EpochId, EpochKey, EpochWrap, KeyError, KeyRing, Wrap};
use crate::limits::{
    MAX_EPOCHS, MAX_MEMBERS, MAX_NAME_BYTES, MAX_OPS, MAX_OPS_PER_MEMBER, MAX_WELCOME_BYTES,
};

/// Largest join request on the wire.
pub const MAX_JOIN_REQUEST_BYTES: usize = 2048;

/// The hood's first operation, signed by its founder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub salt: [u8; 32],
    pub created_at: u64,
    pub name: String,
    pub founder_name: String,
    pub founder_key: ExchangeKey,
    pub policy: Policy,
    /// Epoch 0, wrapped to the founder, so that every key a member holds comes from an
    /// operation in the log.
    pub epoch: EpochId,
    pub wrap: Wrap,
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

    /// Checks the ticket's signature, the name and the joiner's proof; returns the ticket.
    /// Expiry and reuse are the roster's to judge.
    pub fn verify(&self) -> Result<Ticket, MembershipError> {
        let ticket = self.ticket.open().map_err(MembershipError::Ticket)?;
        check_text("name", &self.name, MAX_NAME_BYTES, false).map_err(MembershipError::Field)?;
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
    pub created_at: u64,
    pub request: JoinRequest,
    pub wraps: Vec<EpochWrap>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remove {
    pub created_at: u64,
    pub target: MemberId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promote {
    pub created_at: u64,
    pub target: MemberId,
}

/// A fresh epoch key, wrapped to each member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekey {
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
}

impl Op {
    pub fn created_at(&self) -> u64 {
        match self {
            Op::Genesis(o) => o.created_at,
            Op::Join(o) => o.created_at,
            Op::Remove(o) => o.created_at,
            Op::Promote(o) => o.created_at,
            Op::Rekey(o) => o.created_at,
        }
    }
}

/// What a joiner receives: every membership operation, as signed items. The joiner's own
/// `Join` among them carries its epoch keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub ops: Vec<Item>,
}

impl Welcome {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Welcome, CodecError> {
        codec::decode(bytes, MAX_WELCOME_BYTES)
    }
}

/// The answer to a join request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinResponse {
    Welcome(Welcome),
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
    #[error("a wrap in the operation is addressed to the wrong member")]
    MisaddressedWrap,
    #[error(
        "a rekey must have generation 1 or more, wrap to its author, and no duplicate recipients"
    )]
    BadRekey,
    #[error("the roster is full ({0} operations)")]
    TooManyOps(usize),
    #[error("not allowed: {0}")]
    Denied(Denied),
    #[error("key wrap failed: {0}")]
    Key(KeyError),
}

/// Why the roster refuses an operation from its author, as things stand.
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
    #[error("the invite expired before the join")]
    TicketExpired,
    #[error("the invite was already used by someone else")]
    TicketReused,
    #[error("a removed member cannot join again")]
    JoinerRemoved,
    #[error("a rekey wraps to someone who is not a member")]
    WrapToNonMember,
    #[error("a hood has exactly one genesis")]
    SecondGenesis,
    #[error("a rekey's generation is more than one past the newest epoch")]
    GenerationTooHigh,
    #[error("a rekey must wrap the new key to every current member")]
    RekeyMissesMember,
    #[error("the author has made too many membership operations")]
    TooManyOps,
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

/// An epoch and who was ever handed its key.
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

/// The membership state: a pure function of the set of operations inserted so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    hood: HoodId,
    genesis: OpId,
    name: String,
    policy: Policy,
    founder: MemberId,
    ops: BTreeMap<OpId, VerifiedOp>,
    // Derived by `refold`.
    members: BTreeMap<MemberId, Member>,
    /// Members' decompressed keys, for `verify_item`.
    verifiers: BTreeMap<MemberId, ed25519_dalek::VerifyingKey>,
    removed: BTreeSet<MemberId>,
    epochs: BTreeMap<EpochId, Epoch>,
    tickets: BTreeMap<TicketId, MemberId>,
}

/// A new hood: the signed genesis, its id and epoch 0's key.
#[derive(Debug, Clone)]
pub struct NewHood {
    pub genesis: Item,
    pub hood: HoodId,
    pub epoch: EpochKey,
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
    let hood = HoodId::derive(&keys.id(), &salt);
    let epoch = EpochKey::generate(&hood, rng);
    let wrap = keys::wrap(&epoch, &hood, keys.id(), &keys.exchange_key(), rng)
        .map_err(MembershipError::Key)?;
    let genesis = Genesis {
        salt,
        created_at,
        name: name.to_owned(),
        founder_name: founder_name.to_owned(),
        founder_key: keys.exchange_key(),
        policy,
        epoch: epoch.id(),
        wrap,
    };
    check_genesis(&genesis).map_err(MembershipError::Field)?;
    let item = Item::sign(keys, &hood, &Body::Membership(Op::Genesis(genesis)));
    Ok(NewHood {
        genesis: item,
        hood,
        epoch,
    })
}

fn check_genesis(g: &Genesis) -> Result<(), FieldError> {
    check_text("hood name", &g.name, MAX_NAME_BYTES, false)?;
    if g.name.trim().is_empty() {
        return Err(FieldError::Empty { what: "hood name" });
    }
    check_text("founder name", &g.founder_name, MAX_NAME_BYTES, false)?;
    g.policy.check()
}

/// Verifies an item as a membership operation of `hood` and checks its structure (all
/// that does not depend on the roster's state).
pub fn verify_op(hood: &HoodId, item: &Item) -> Result<VerifiedOp, MembershipError> {
    if item.kind != Kind::Membership {
        return Err(MembershipError::NotAnOp);
    }
    if !item.verify(hood) {
        return Err(MembershipError::BadSignature);
    }
    let op = match item.body().map_err(MembershipError::Malformed)? {
        Body::Membership(op) => op,
        _ => return Err(MembershipError::NotAnOp),
    };
    let mut ticket = None;
    match &op {
        Op::Genesis(g) => {
            check_genesis(g).map_err(MembershipError::Field)?;
            if HoodId::derive(&item.author, &g.salt) != *hood {
                return Err(MembershipError::WrongGenesis);
            }
            if g.wrap.to != item.author {
                return Err(MembershipError::MisaddressedWrap);
            }
        }
        Op::Join(j) => {
            let t = j.request.verify()?;
            if t.hood != *hood {
                return Err(MembershipError::TicketForAnotherHood);
            }
            check_len("join wraps", j.wraps.len(), MAX_EPOCHS).map_err(MembershipError::Field)?;
            if j.wraps.iter().any(|w| w.wrap.to != j.request.joiner) {
                return Err(MembershipError::MisaddressedWrap);
            }
            ticket = Some(t);
        }
        Op::Rekey(r) => {
            check_len("rekey wraps", r.wraps.len(), MAX_MEMBERS).map_err(MembershipError::Field)?;
            let recipients: BTreeSet<MemberId> = r.wraps.iter().map(|w| w.to).collect();
            if r.generation == 0
                || recipients.len() != r.wraps.len()
                || !recipients.contains(&item.author)
            {
                return Err(MembershipError::BadRekey);
            }
        }
        Op::Remove(_) | Op::Promote(_) => {}
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
        let Body::Membership(Op::Genesis(g)) =
            genesis.body().map_err(MembershipError::Malformed)?
        else {
            return Err(MembershipError::NoGenesis);
        };
        let hood = HoodId::derive(&genesis.author, &g.salt);
        let stored = verify_op(&hood, genesis)?;
        let id = genesis.op_id();
        let mut roster = Roster {
            hood,
            genesis: id,
            name: g.name.clone(),
            policy: g.policy,
            founder: genesis.author,
            ops: BTreeMap::from([(id, stored)]),
            members: BTreeMap::new(),
            verifiers: BTreeMap::new(),
            removed: BTreeSet::new(),
            epochs: BTreeMap::new(),
            tickets: BTreeMap::new(),
        };
        roster.refold();
        Ok(roster)
    }

    /// The roster of `hood` from a set of operations in any order (a `Welcome`, or the
    /// store at start-up). Every item must be a valid operation of the hood.
    pub fn from_items<'a>(
        hood: &HoodId,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> Result<Roster, MembershipError> {
        let items: Vec<&Item> = items.into_iter().collect();
        let genesis = items
            .iter()
            .find(|item| {
                matches!(item.body(), Ok(Body::Membership(Op::Genesis(g)))
                    if HoodId::derive(&item.author, &g.salt) == *hood)
            })
            .ok_or(MembershipError::NoGenesis)?;
        let mut roster = Roster::from_genesis(genesis)?;
        for item in items {
            roster.insert_quiet(item)?;
        }
        roster.refold();
        Ok(roster)
    }

    /// Adds an operation to the set and recomputes the roster. Returns whether it was
    /// new. Authorization is not checked here (the fold decides what an operation does);
    /// `validate` gates what comes off the network with [`Roster::authorize`].
    pub fn insert(&mut self, item: &Item) -> Result<bool, MembershipError> {
        let new = self.insert_quiet(item)?;
        if new {
            self.refold();
        }
        Ok(new)
    }

    fn insert_quiet(&mut self, item: &Item) -> Result<bool, MembershipError> {
        let id = item.op_id();
        if self.ops.contains_key(&id) {
            return Ok(false);
        }
        if self.ops.len() >= MAX_OPS {
            return Err(MembershipError::TooManyOps(self.ops.len()));
        }
        let stored = verify_op(&self.hood, item)?;
        if matches!(stored.op, Op::Genesis(_)) {
            return Err(MembershipError::SecondGenesis);
        }
        self.ops.insert(id, stored);
        Ok(true)
    }

    /// Recomputes everything derived from the set of operations. Deterministic: it reads
    /// the set in op-id order and computes least fixed points.
    fn refold(&mut self) {
        let policy = self.policy;
        let founder = self.founder;
        // The first join per ticket, in op-id order, is the only one that can count.
        let mut per_ticket: BTreeMap<TicketId, (OpId, &VerifiedOp, &Join, &Ticket)> =
            BTreeMap::new();
        let mut promotes = Vec::new();
        let mut removes = Vec::new();
        for (id, stored) in &self.ops {
            match (&stored.op, &stored.ticket) {
                (Op::Join(join), Some(ticket)) => {
                    per_ticket
                        .entry(ticket.id)
                        .or_insert((*id, stored, join, ticket));
                }
                (Op::Promote(p), _) => promotes.push((stored.item.author, p.target)),
                (Op::Remove(r), _) => removes.push((stored.item.author, r.target)),
                _ => {}
            }
        }

        let mut admitted: BTreeSet<MemberId> = BTreeSet::from([founder]);
        let mut admins: BTreeSet<MemberId> = BTreeSet::from([founder]);
        let mut tickets: BTreeMap<TicketId, MemberId> = BTreeMap::new();
        // Least fixed point: admission and promotion only ever grow the sets.
        loop {
            let mut changed = false;
            for (ticket_id, (_, stored, join, ticket)) in &per_ticket {
                if tickets.contains_key(ticket_id) {
                    continue;
                }
                let inviter = ticket.inviter;
                if admitted.contains(&stored.item.author)
                    && admitted.contains(&inviter)
                    && policy.invite.allows(admins.contains(&inviter))
                    && join.created_at <= ticket.expires_at
                {
                    tickets.insert(*ticket_id, join.request.joiner);
                    admitted.insert(join.request.joiner);
                    changed = true;
                }
            }
            for (author, target) in &promotes {
                if admins.contains(author) && admitted.contains(target) && admins.insert(*target) {
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }

        let removed: BTreeSet<MemberId> = removes
            .iter()
            .filter(|(author, target)| {
                admitted.contains(author)
                    && admitted.contains(target)
                    && (author == target || policy.remove.allows(admins.contains(author)))
            })
            .map(|(_, target)| *target)
            .collect();

        // Member details: the founder from the genesis; each joiner from the applied join
        // with the lowest op id that admitted them.
        let mut members: BTreeMap<MemberId, Member> = BTreeMap::new();
        if let Some(VerifiedOp {
            op: Op::Genesis(g), ..
        }) = self.ops.get(&self.genesis)
        {
            members.insert(
                founder,
                Member {
                    id: founder,
                    exchange_key: g.founder_key,
                    name: g.founder_name.clone(),
                    admin: true,
                    joined_at: g.created_at,
                    invited_by: None,
                },
            );
        }
        let mut applied: Vec<(OpId, &Join, &Ticket)> = per_ticket
            .iter()
            .filter(|(ticket_id, _)| tickets.contains_key(*ticket_id))
            .map(|(_, (id, _, join, ticket))| (*id, *join, *ticket))
            .collect();
        applied.sort_by_key(|(id, _, _)| *id);
        for (_, join, ticket) in applied {
            let joiner = join.request.joiner;
            members.entry(joiner).or_insert_with(|| Member {
                id: joiner,
                exchange_key: join.request.exchange_key,
                name: join.request.name.clone(),
                admin: false,
                joined_at: join.created_at,
                invited_by: Some(ticket.inviter),
            });
        }
        members.retain(|id, _| !removed.contains(id));
        for (id, member) in members.iter_mut() {
            member.admin = admins.contains(id);
        }

        // Epochs, and everyone who was ever handed each one's key (whatever became of the
        // operation that handed it over: the key is out either way).
        let mut epochs: BTreeMap<EpochId, Epoch> = BTreeMap::new();
        for stored in self.ops.values() {
            match &stored.op {
                Op::Genesis(g) if stored.item.author == founder => {
                    epochs.entry(g.epoch).or_insert_with(|| Epoch {
                        id: g.epoch,
                        generation: 0,
                        created_at: g.created_at,
                        holders: BTreeSet::new(),
                    });
                }
                Op::Rekey(r) if admitted.contains(&stored.item.author) => {
                    epochs.entry(r.epoch).or_insert_with(|| Epoch {
                        id: r.epoch,
                        generation: r.generation,
                        created_at: r.created_at,
                        holders: BTreeSet::new(),
                    });
                }
                _ => {}
            }
        }
        for stored in self.ops.values() {
            let handed: Vec<(EpochId, MemberId)> = match &stored.op {
                Op::Genesis(g) => vec![(g.epoch, g.wrap.to)],
                // The rekeyer made the key, and an admitter holds what it hands over:
                // both hold the epoch whatever their wraps say.
                Op::Rekey(r) => r
                    .wraps
                    .iter()
                    .map(|w| (r.epoch, w.to))
                    .chain([(r.epoch, stored.item.author)])
                    .collect(),
                Op::Join(j) => j
                    .wraps
                    .iter()
                    .flat_map(|w| [(w.epoch, w.wrap.to), (w.epoch, stored.item.author)])
                    .collect(),
                Op::Remove(_) | Op::Promote(_) => vec![],
            };
            for (epoch, to) in handed {
                if let Some(e) = epochs.get_mut(&epoch) {
                    e.holders.insert(to);
                }
            }
        }

        self.members = members;
        self.verifiers.retain(|m, _| self.members.contains_key(m));
        for m in self.members.keys() {
            if !self.verifiers.contains_key(m)
                && let Some(key) = m.verifying_key()
            {
                self.verifiers.insert(*m, key);
            }
        }
        self.removed = removed;
        self.epochs = epochs;
        self.tickets = tickets;
    }

    /// Whether `author` may perform `op` given the roster as it stands: the gate that
    /// `validate` applies to operations arriving from the network.
    pub fn authorize(
        &self,
        author: &MemberId,
        op: &Op,
        ticket: Option<&Ticket>,
    ) -> Result<(), Denied> {
        if !self.members.contains_key(author) {
            return Err(Denied::AuthorNotMember);
        }
        if self.ops_by(author) >= MAX_OPS_PER_MEMBER {
            return Err(Denied::TooManyOps);
        }
        match op {
            Op::Genesis(_) => Err(Denied::SecondGenesis),
            Op::Join(join) => {
                let ticket = ticket.ok_or(Denied::InviterNotMember)?;
                let inviter = self
                    .members
                    .get(&ticket.inviter)
                    .ok_or(Denied::InviterNotMember)?;
                if !self.policy.invite.allows(inviter.admin) {
                    return Err(Denied::PolicyForbidsInvite);
                }
                if join.created_at > ticket.expires_at {
                    return Err(Denied::TicketExpired);
                }
                if self.removed.contains(&join.request.joiner) {
                    return Err(Denied::JoinerRemoved);
                }
                match self.tickets.get(&ticket.id) {
                    Some(joiner) if *joiner != join.request.joiner => Err(Denied::TicketReused),
                    _ => Ok(()),
                }
            }
            Op::Remove(r) => {
                if !self.members.contains_key(&r.target) && !self.removed.contains(&r.target) {
                    return Err(Denied::TargetNotMember);
                }
                if *author != r.target && !self.policy.remove.allows(self.is_admin(author)) {
                    return Err(Denied::PolicyForbidsRemove);
                }
                Ok(())
            }
            Op::Promote(p) => {
                if !self.is_admin(author) {
                    return Err(Denied::NotAdmin);
                }
                if !self.members.contains_key(&p.target) {
                    return Err(Denied::TargetNotMember);
                }
                Ok(())
            }
            Op::Rekey(r) => {
                if r.wraps.iter().any(|w| !self.members.contains_key(&w.to)) {
                    return Err(Denied::WrapToNonMember);
                }
                // Skipping a member would cut them off from what follows.
                if self
                    .members
                    .keys()
                    .any(|m| !r.wraps.iter().any(|w| w.to == *m))
                {
                    return Err(Denied::RekeyMissesMember);
                }
                // At most one past the newest epoch: a member cannot jump the order
                // that decides which epoch everyone seals under.
                if r.generation > self.next_generation() {
                    return Err(Denied::GenerationTooHigh);
                }
                Ok(())
            }
        }
    }

    pub fn hood(&self) -> HoodId {
        self.hood
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn founder(&self) -> MemberId {
        self.founder
    }

    pub fn genesis_id(&self) -> OpId {
        self.genesis
    }

    /// Current members, in id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.get(id)
    }

    pub fn is_member(&self, id: &MemberId) -> bool {
        self.members.contains_key(id)
    }

    pub fn is_admin(&self, id: &MemberId) -> bool {
        self.members.get(id).is_some_and(|m| m.admin)
    }

    pub fn is_removed(&self, id: &MemberId) -> bool {
        self.removed.contains(id)
    }

    pub fn removed(&self) -> impl Iterator<Item = &MemberId> {
        self.removed.iter()
    }

    /// The joiner a ticket admitted, if it was used.
    pub fn ticket_holder(&self, id: &TicketId) -> Option<MemberId> {
        self.tickets.get(id).copied()
    }

    pub fn epochs(&self) -> impl Iterator<Item = &Epoch> {
        self.epochs.values()
    }

    pub fn epoch(&self, id: &EpochId) -> Option<&Epoch> {
        self.epochs.get(id)
    }

    /// How many operations in the set `author` signed.
    pub fn ops_by(&self, author: &MemberId) -> usize {
        self.ops
            .values()
            .filter(|s| s.item.author == *author)
            .count()
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

    /// Every operation, as signed items, in op-id order.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.ops.values().map(|s| &s.item)
    }

    pub fn welcome(&self) -> Welcome {
        Welcome {
            ops: self.items().cloned().collect(),
        }
    }

    fn is_clean(&self, epoch: &Epoch) -> bool {
        epoch.holders.iter().all(|h| self.members.contains_key(h))
    }

    /// The epoch to seal new items under: the clean epoch with the highest
    /// `(generation, id)`. `None` when no epoch is clean (a rekey is needed first).
    pub fn sealing_epoch(&self) -> Option<EpochId> {
        self.epochs
            .values()
            .filter(|e| self.is_clean(e))
            .max_by_key(|e| (e.generation, e.id))
            .map(|e| e.id)
    }

    /// True when a fresh epoch is needed: the newest epoch was handed to someone who is
    /// no longer a member, or some member lacks the sealing epoch's key.
    pub fn needs_rekey(&self) -> bool {
        let newest = self.epochs.values().max_by_key(|e| (e.generation, e.id));
        match (
            newest,
            self.sealing_epoch().and_then(|id| self.epochs.get(&id)),
        ) {
            (Some(newest), Some(sealing)) => {
                newest.id != sealing.id || self.members.keys().any(|m| !sealing.holders.contains(m))
            }
            _ => true,
        }
    }

    /// One past the highest generation in the log. Saturating: any member may publish a
    /// `Rekey` at generation `u64::MAX`, and the rekey after it must still be a valid
    /// operation (a plain `+ 1` panics in debug builds and wraps to the invalid 0 in
    /// release, so the hood could never rekey again). Ties are broken by epoch id.
    fn next_generation(&self) -> u64 {
        self.epochs
            .values()
            .map(|e| e.generation)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// Makes the `Join` that admits `request`, handing over every key in `ring`.
    pub fn admit(
        &self,
        admitter: &MemberKeys,
        ring: &KeyRing,
        request: &JoinRequest,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Item, MembershipError> {
        let ticket = request.verify()?;
        if ticket.hood != self.hood {
            return Err(MembershipError::TicketForAnotherHood);
        }
        let mut join = Join {
            created_at: now,
            request: request.clone(),
            wraps: Vec::new(),
        };
        self.authorize(&admitter.id(), &Op::Join(join.clone()), Some(&ticket))
            .map_err(MembershipError::Denied)?;
        for (generation, key) in ring.iter() {
            let wrap = keys::wrap(key, &self.hood, request.joiner, &request.exchange_key, rng)
                .map_err(MembershipError::Key)?;
            join.wraps.push(EpochWrap {
                epoch: key.id(),
                generation,
                wrap,
            });
        }
        Ok(Item::sign(
            admitter,
            &self.hood,
            &Body::Membership(Op::Join(join)),
        ))
    }

    /// Makes a `Rekey`: a fresh epoch key wrapped to every current member.
    pub fn rekey(
        &self,
        keys: &MemberKeys,
        now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<(Item, EpochKey, u64), MembershipError> {
        if !self.is_member(&keys.id()) {
            return Err(MembershipError::Denied(Denied::AuthorNotMember));
        }
        let key = EpochKey::generate(&self.hood, rng);
        let mut wraps = Vec::with_capacity(self.members.len());
        for member in self.members.values() {
            wraps.push(
                keys::wrap(&key, &self.hood, member.id, &member.exchange_key, rng)
                    .map_err(MembershipError::Key)?,
            );
        }
        let generation = self.next_generation();
        let op = Op::Rekey(Rekey {
            created_at: now,
            generation,
            epoch: key.id(),
            wraps,
        });
        Ok((
            Item::sign(keys, &self.hood, &Body::Membership(op)),
            key,
            generation,
        ))
    }

    /// Makes a `Remove` (follow it with a `Rekey` once inserted).
    pub fn remove(
        &self,
        keys: &MemberKeys,
        target: MemberId,
        now: u64,
    ) -> Result<Item, MembershipError> {
        let op = Op::Remove(Remove {
            created_at: now,
            target,
        });
        self.authorize(&keys.id(), &op, None)
            .map_err(MembershipError::Denied)?;
        Ok(Item::sign(keys, &self.hood, &Body::Membership(op)))
    }

    /// Makes a `Promote`.
    pub fn promote(
        &self,
        keys: &MemberKeys,
        target: MemberId,
        now: u64,
    ) -> Result<Item, MembershipError> {
        let op = Op::Promote(Promote {
            created_at: now,
            target,
        });
        self.authorize(&keys.id(), &op, None)
            .map_err(MembershipError::Denied)?;
        Ok(Item::sign(keys, &self.hood, &Body::Membership(op)))
    }

    /// Unwraps every epoch key addressed to `me` in the log that `ring` lacks. Returns
    /// how many keys were learned and how many wraps to `me` failed to open (a sign of
    /// a misbehaving member).
    pub fn learn_keys(&self, me: &MemberKeys, ring: &mut KeyRing) -> (usize, usize) {
        let my_id = me.id();
        let (mut learned, mut failed) = (0, 0);
        for stored in self.ops.values() {
            let wraps: Vec<(EpochId, u64, &Wrap)> = match &stored.op {
                Op::Genesis(g) => vec![(g.epoch, 0, &g.wrap)],
                Op::Rekey(r) => r
                    .wraps
                    .iter()
                    .filter(|w| w.to == my_id)
                    .map(|w| (r.epoch, r.generation, w))
                    .collect(),
                Op::Join(j) => j
                    .wraps
                    .iter()
                    .map(|w| (w.epoch, w.generation, &w.wrap))
                    .collect(),
                Op::Remove(_) | Op::Promote(_) => vec![],
            };
            for (epoch, generation, wrap) in wraps {
                if wrap.to != my_id || ring.contains(&epoch) {
                    continue;
                }
                match keys::unwrap(wrap, &self.hood, &epoch, me) {
                    Ok(key) => {
                        let generation =
                            self.epochs.get(&epoch).map_or(generation, |e| e.generation);
                        ring.insert(generation, key);
                        learned += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
        }
        (learned, failed)
    }
}
