//! The one place where every rule about incoming items lives. The node calls
//! [`validate`] for gossip and for sync alike, and acts on the verdict.

use std::collections::{BTreeMap, HashMap};

use crate::codec::{CodecError, FieldError};
use crate::envelope::{self, ItemId, OpenError};
use crate::hood::Policy;
use crate::identity::MemberId;
use crate::item::Kind;
use crate::item::{Body, Item, OpId};
use crate::keys::{self, EpochId, KeyRing};
use crate::limits::{
    MAX_CLOCK_SKEW_SECS, MAX_ITEM_BYTES, MAX_MEMBERS, MAX_OPS, MAX_OPS_PER_BUDGET,
    MAX_OPS_PER_MEMBER, MAX_RESERVED_OPS,
};
use crate::membership::{self, Denied, MembershipError, Roster, VerifiedOp};
use crate::report;
use crate::seen::SeenAsk;

/// How the node finds the author of a report that an update, resolve or retract names.
pub trait Lookup {
    fn report_author(&self, report: &ItemId) -> Option<MemberId>;

    /// The ask for acknowledgements of the live report `report`, and when it expires;
    /// `None` if it asked for none (or is not known).
    fn seen_ask(&self, _report: &ItemId) -> Option<(SeenAsk, u64)> {
        None
    }

    /// How many acks for `report` this node holds.
    fn acks_held(&self, _report: &ItemId) -> usize {
        0
    }
}

impl Lookup for BTreeMap<ItemId, MemberId> {
    fn report_author(&self, report: &ItemId) -> Option<MemberId> {
        self.get(report).copied()
    }
}

impl Lookup for HashMap<ItemId, MemberId> {
    fn report_author(&self, report: &ItemId) -> Option<MemberId> {
        self.get(report).copied()
    }
}

/// No reports known (for tests and tools that judge only reports and operations).
impl Lookup for () {
    fn report_author(&self, _: &ItemId) -> Option<MemberId> {
        None
    }
}

/// Everything `validate` judges against. Nothing here is changed by judging.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub roster: &'a Roster,
    pub keys: &'a KeyRing,
    pub rate: &'a RateLimiter,
    pub lookup: &'a dyn Lookup,
    /// Unix seconds.
    pub now: u64,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("hood", &self.roster.hood())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// An accepted item, opened, verified and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Id of the envelope (what sync and gossip know it by).
    pub id: ItemId,
    /// Id of the inner item (the same for every envelope that carries it).
    pub op_id: OpId,
    pub epoch: EpochId,
    pub item: Item,
    pub body: Body,
    pub created_at: u64,
    /// `None` for membership operations, which do not expire.
    pub expires_at: Option<u64>,
}

/// The verdict on one envelope. `Reject` means the sender misbehaved (the node penalizes
/// the peer that sent it); `Ignore` means it is not for us now (duplicate, expired, from
/// an epoch or about a report we do not know yet) and nobody is blamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept(Box<Accepted>),
    Reject(Reason),
    Ignore(Reason),
}

/// Why an envelope was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("envelope is {0} bytes, over the limit")]
    Oversize(usize),
    #[error("malformed envelope: {0}")]
    Malformed(CodecError),
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    #[error("envelope is for another hood")]
    WrongHood,
    #[error("sealed under an unknown epoch")]
    UnknownEpoch,
    #[error("sealed in a window outside its epoch's, or not the window the item was made in")]
    BadWindow,
    #[error("sealed in a window whose key this node deleted (nothing made then is live)")]
    WindowForgotten,
    #[error("ciphertext does not authenticate")]
    DecryptFailed,
    #[error("bad padding")]
    BadPadding,
    #[error("malformed item: {0}")]
    MalformedItem(CodecError),
    #[error("author is not a member")]
    NotAMember,
    #[error("author's admission did not take effect (voided by a removal)")]
    NotAdmitted,
    #[error("author was removed from the hood")]
    AuthorRemoved,
    #[error("bad signature")]
    BadSignature,
    #[error("malformed body: {0}")]
    MalformedBody(CodecError),
    #[error("created_at is more than {MAX_CLOCK_SKEW_SECS} s in the future")]
    FutureTimestamp,
    #[error("item has expired")]
    Expired,
    #[error("invalid body: {0}")]
    InvalidBody(FieldError),
    #[error("only a report's author or an admin may update, resolve or retract it")]
    NotReportAuthor,
    #[error("refers to a report this node does not have")]
    UnknownReport,
    #[error("author is over the hood's rate limit")]
    RateLimited,
    #[error("invalid membership operation: {0}")]
    InvalidOp(MembershipError),
    #[error("membership operation not allowed: {0}")]
    Unauthorized(Denied),
    #[error("membership operation already known")]
    DuplicateOp,
    #[error("author is not known yet (their join may still be on its way)")]
    UnknownAuthor,
    #[error("a causal parent of the operation has not arrived yet")]
    MissingParents,
    #[error(
        "the author has made {MAX_OPS_PER_MEMBER} membership operations in a chain, or \
         {MAX_OPS_PER_BUDGET} are charged to them: the most one member may"
    )]
    TooManyOps,
    #[error("the roster holds {MAX_OPS} operations, the most it may")]
    RosterFull,
    #[error("acknowledges a report that did not ask for acknowledgements")]
    NotAskingSeen,
    #[error("an acknowledgement must expire when its report does")]
    SeenExpiry,
    #[error("the report has as many acknowledgements as the hood has members")]
    TooManyAcks,
}

/// Judges envelope bytes. Cheap checks first (size, decoding, version, hood, known epoch),
/// then the AEAD, then membership of the author and the signature, then the body's rules.
pub fn validate(bytes: &[u8], cx: &Context<'_>) -> Verdict {
    match judge(bytes, cx) {
        Ok(accepted) => Verdict::Accept(Box::new(accepted)),
        Err(reason) if reason.is_ignore() => Verdict::Ignore(reason),
        Err(reason) => Verdict::Reject(reason),
    }
}

impl Reason {
    /// Reasons that blame nobody: the state of this node, not the sender, decides.
    pub fn is_ignore(&self) -> bool {
        matches!(
            self,
            Reason::UnsupportedVersion(_)
                | Reason::UnknownEpoch
                | Reason::WindowForgotten
                | Reason::Expired
                | Reason::UnknownReport
                | Reason::DuplicateOp
                | Reason::UnknownAuthor
                | Reason::NotAdmitted
                | Reason::MissingParents
                | Reason::TooManyOps
                | Reason::RosterFull
                // Depends on what this node holds, and the acks are anonymous: the
                // relaying peer cannot be told from the one that made too many.
                | Reason::TooManyAcks
                // A node whose clock is behind (a Pi without a real-time clock after a
                // power cut) must not blame its honest neighbors: sync brings the item
                // again once the clock has caught up.
                | Reason::FutureTimestamp
        )
    }
}

fn judge(bytes: &[u8], cx: &Context<'_>) -> Result<Accepted, Reason> {
    let roster = cx.roster;
    let hood = roster.hood();
    let opened = envelope::open(bytes, &hood, cx.keys).map_err(|e| match e {
        OpenError::Oversize(n) => Reason::Oversize(n),
        OpenError::Malformed(e) => Reason::Malformed(e),
        OpenError::UnsupportedVersion(v) => Reason::UnsupportedVersion(v),
        OpenError::WrongHood => Reason::WrongHood,
        OpenError::UnknownEpoch => Reason::UnknownEpoch,
        OpenError::BadWindow => Reason::BadWindow,
        OpenError::WindowForgotten => Reason::WindowForgotten,
        OpenError::Decrypt => Reason::DecryptFailed,
        OpenError::BadPadding => Reason::BadPadding,
        OpenError::MalformedItem(e) => Reason::MalformedItem(e),
    })?;
    let item = opened.item;
    // The window is authenticated with the ciphertext; it must be the one the signed
    // item was made in, so that a member cannot seal a fresh item under an old window's
    // key (which others may have deleted, or which a seized device still holds).
    let check_window = |created_at: u64| match opened.window {
        Some(w) if w != keys::window_of(created_at) => Err(Reason::BadWindow),
        _ => Ok(()),
    };
    if item.kind == Kind::Membership {
        let verified = judge_op(&item, roster, cx.now)?;
        let created_at = verified.op.created_at();
        check_window(created_at)?;
        return Ok(Accepted {
            id: opened.id,
            op_id: item.op_id(),
            epoch: opened.epoch,
            body: Body::Membership(verified.op),
            item,
            created_at,
            expires_at: None,
        });
    }
    if item.kind == Kind::Seen {
        let (body, created_at, expires_at) = judge_seen(&item, cx)?;
        check_window(created_at)?;
        return Ok(Accepted {
            id: opened.id,
            op_id: item.op_id(),
            epoch: opened.epoch,
            item,
            body,
            created_at,
            expires_at: Some(expires_at),
        });
    }
    let author = item.author;
    if roster.is_removed(&author) {
        return Err(Reason::AuthorRemoved);
    }
    if !roster.is_member(&author) {
        // Someone a join in the log admitted whose admission the fold voided: a peer
        // that relays their item from before it heard is not to blame.
        if roster.is_known(&author) {
            return Err(Reason::NotAdmitted);
        }
        return Err(Reason::NotAMember);
    }
    if !roster.verify_item(&item) {
        return Err(Reason::BadSignature);
    }
    let body = item.body().map_err(Reason::MalformedBody)?;
    let (created_at, expires_at) = body.times();
    check_window(created_at)?;
    if created_at > cx.now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(Reason::FutureTimestamp);
    }
    let policy = roster.policy();
    if let Some(expires_at) = expires_at {
        report::check_lifetime(created_at, expires_at, policy).map_err(Reason::InvalidBody)?;
        if expires_at <= cx.now {
            return Err(Reason::Expired);
        }
    }
    match &body {
        Body::Report(r) => r.check().map_err(Reason::InvalidBody)?,
        Body::Update(u) => {
            u.check().map_err(Reason::InvalidBody)?;
            check_reference(cx, &author, &u.report)?;
        }
        Body::Resolve(r) => {
            r.check().map_err(Reason::InvalidBody)?;
            check_reference(cx, &author, &r.report)?;
        }
        Body::Retract(r) => check_reference(cx, &author, &r.report)?,
        // Judged above, by kind; the body decodes as the kind names.
        Body::Membership(_) => return Err(Reason::InvalidOp(MembershipError::NotAnOp)),
        Body::Seen(_) => return Err(Reason::MalformedBody(CodecError::NonCanonical)),
    }
    if expires_at.is_some() && !cx.rate.allows(policy, &author, created_at, cx.now) {
        return Err(Reason::RateLimited);
    }
    Ok(Accepted {
        id: opened.id,
        op_id: item.op_id(),
        epoch: opened.epoch,
        item,
        body,
        created_at,
        expires_at,
    })
}

/// The rules of an acknowledgement (`seen`; `docs/protocol.md` § Seen by). Its author
/// is a one-time key, never a member, so membership and the rate limit cannot be judged
/// here: only the report's author can tell whose an ack is. What every node checks: the
/// one-time signature (so no member can alter another's ack), that the report is one
/// this node holds and that it asked for acks, that the ack expires with it, and that
/// the report holds fewer acks than the hood has members (the bound on what anyone can
/// store under one report).
fn judge_seen(item: &Item, cx: &Context<'_>) -> Result<(Body, u64, u64), Reason> {
    if !item.verify(&cx.roster.hood()) {
        return Err(Reason::BadSignature);
    }
    let body = item.body().map_err(Reason::MalformedBody)?;
    let Body::Seen(seen) = &body else {
        return Err(Reason::MalformedBody(CodecError::NonCanonical));
    };
    let (created_at, expires_at) = (seen.created_at, seen.expires_at);
    if created_at > cx.now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(Reason::FutureTimestamp);
    }
    report::check_lifetime(created_at, expires_at, cx.roster.policy())
        .map_err(Reason::InvalidBody)?;
    if expires_at <= cx.now {
        return Err(Reason::Expired);
    }
    if cx.lookup.report_author(&seen.report).is_none() {
        return Err(Reason::UnknownReport);
    }
    let Some((_, report_expires)) = cx.lookup.seen_ask(&seen.report) else {
        return Err(Reason::NotAskingSeen);
    };
    if expires_at != report_expires {
        return Err(Reason::SeenExpiry);
    }
    if cx.lookup.acks_held(&seen.report) >= cx.roster.members().count() {
        return Err(Reason::TooManyAcks);
    }
    Ok((body, created_at, expires_at))
}

/// Judges a membership operation that arrives as signed item bytes rather than in an
/// envelope (catch-up sync), by the same rules as gossip (see [`judge_op`]).
pub fn validate_op(bytes: &[u8], roster: &Roster, now: u64) -> Result<VerifiedOp, Reason> {
    if bytes.len() > MAX_ITEM_BYTES {
        return Err(Reason::Oversize(bytes.len()));
    }
    let item = Item::decode(bytes).map_err(Reason::MalformedItem)?;
    judge_op(&item, roster, now)
}

/// The rules every membership operation meets to join the set, by gossip or by sync:
/// a well-formed operation of this hood, signed by someone the set knows (the founder,
/// or the joiner of a `Join` in it), whose causal parents are all here. Nothing here
/// depends on what the roster makes of the set, so every node takes the same operations;
/// whether one takes effect is the fold's to decide ([`Roster`]). Operations of removed
/// members are taken too: one made before its author's removal counts wherever it
/// arrives, and the fold voids what was made concurrently or later.
pub fn judge_op(item: &Item, roster: &Roster, now: u64) -> Result<VerifiedOp, Reason> {
    let id = item.op_id();
    if roster.contains_op(&id) {
        return Err(Reason::DuplicateOp);
    }
    // History a checkpoint covers (a joiner catching up): the checkpoint bounds it and
    // vouches for its place, so neither its author nor its parents need be here yet.
    let covered = roster.is_covered(&id);
    if !covered && !roster.is_known(&item.author) {
        return Err(Reason::UnknownAuthor);
    }
    let verified = membership::verify_op(&roster.hood(), item).map_err(|e| match e {
        MembershipError::BadSignature => Reason::BadSignature,
        other => Reason::InvalidOp(other),
    })?;
    if verified.op.created_at() > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(Reason::FutureTimestamp);
    }
    if !covered && roster.missing_parent(&verified.op).is_some() {
        return Err(Reason::MissingParents);
    }
    if covered {
        // The checkpoint bounds the history it covers; the caps judge an operation's
        // causal past, which is not all here yet.
        if roster.len() >= MAX_OPS + MAX_RESERVED_OPS {
            return Err(Reason::RosterFull);
        }
        return Ok(verified);
    }
    check_caps(&verified, roster)?;
    Ok(verified)
}

/// The operation caps (`docs/protocol.md` § Membership, "Caps"). The per-member cap is
/// judged on the operation's causal past (its place in its author's chain), so every
/// node reaches the same verdict and none keeps an operation another refuses. The other
/// two count what this node holds and bound its storage: the budget (an author's own
/// operations and those charged to them: a voided joiner's go to whoever signed their
/// join) is out of an honest member's reach, and past [`MAX_OPS`] only admins' removals
/// and rekeys are taken, so a full roster can still remove whoever filled it.
fn check_caps(verified: &VerifiedOp, roster: &Roster) -> Result<(), Reason> {
    let author = &verified.item.author;
    if roster.chain_place(author, verified.op.parents()) > MAX_OPS_PER_MEMBER {
        return Err(Reason::TooManyOps);
    }
    if roster.budget_used(&roster.budget_owner(author)) >= MAX_OPS_PER_BUDGET {
        return Err(Reason::TooManyOps);
    }
    let full = roster.len() >= MAX_OPS;
    if (full && !roster.may_use_reserve(author, &verified.op))
        || roster.len() >= MAX_OPS + MAX_RESERVED_OPS
    {
        return Err(Reason::RosterFull);
    }
    Ok(())
}

fn check_reference(cx: &Context<'_>, author: &MemberId, report: &ItemId) -> Result<(), Reason> {
    match cx.lookup.report_author(report) {
        None => Err(Reason::UnknownReport),
        Some(original) if original == *author || cx.roster.is_admin(author) => Ok(()),
        Some(_) => Err(Reason::NotReportAuthor),
    }
}

/// Most `(member, window)` counters kept; past this the oldest windows are dropped.
pub const MAX_RATE_ENTRIES: usize = MAX_MEMBERS * 32;

/// A member may have at most this many windows' worth of the rate limit live (not yet
/// expired) at once: a day's worth by default, however they spread their timestamps.
pub const LIVE_WINDOWS: u32 = 24;

/// Per-member counts of accepted report-kind items, by window of `created_at`. Counting by
/// the author's own timestamps (not arrival time) means a node catching up through sync
/// reaches the same verdicts as one that was online. Because timestamps are the author's
/// to choose, a second cap bounds each member's *live* items (those whose `expires_at` is
/// still ahead) in all windows together.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    counts: BTreeMap<(u64, MemberId), u16>,
    /// Per member: how many accepted items expire at each time, and their total.
    live: BTreeMap<MemberId, (u64, BTreeMap<u64, u32>)>,
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    fn window(policy: &Policy, created_at: u64) -> u64 {
        created_at / u64::from(policy.rate_limit.window_secs.max(1))
    }

    /// Whether `author` may have one more item created at `created_at`, judged at `now`.
    pub fn allows(&self, policy: &Policy, author: &MemberId, created_at: u64, now: u64) -> bool {
        let count = self
            .counts
            .get(&(Self::window(policy, created_at), *author))
            .copied()
            .unwrap_or(0);
        // Total minus what expired since the last prune (few: prune runs on a timer).
        let live: u64 = self.live.get(author).map_or(0, |(total, m)| {
            let expired: u64 = m.range(..=now).map(|(_, n)| u64::from(*n)).sum();
            total.saturating_sub(expired)
        });
        count < policy.rate_limit.max_items
            && live < u64::from(policy.rate_limit.max_items) * u64::from(LIVE_WINDOWS)
    }

    /// Counts an accepted item. Membership operations and acks are not rate-limited.
    pub fn record(&mut self, policy: &Policy, accepted: &Accepted) {
        let Some(expires_at) = accepted.expires_at else {
            return;
        };
        // An ack's author is a one-time key: nothing to count it against.
        if accepted.item.kind == Kind::Seen {
            return;
        }
        self.count(
            policy,
            &accepted.item.author,
            accepted.created_at,
            expires_at,
        );
    }

    /// Counts an accepted item from its author and times alone (as a node's store
    /// indexes them, so that a restart needs no pass over the items themselves).
    pub fn count(&mut self, policy: &Policy, author: &MemberId, created_at: u64, expires_at: u64) {
        let key = (Self::window(policy, created_at), *author);
        let count = self.counts.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        let (total, expiries) = self.live.entry(*author).or_default();
        *total += 1;
        *expiries.entry(expires_at).or_insert(0) += 1;
        while self.counts.len() > MAX_RATE_ENTRIES {
            self.counts.pop_first();
        }
    }

    /// Forgets windows that ended before anything in them could still be live, and items
    /// that have expired.
    pub fn prune(&mut self, policy: &Policy, now: u64) {
        let oldest_live = now.saturating_sub(u64::from(policy.max_ttl_secs));
        let first_kept = Self::window(policy, oldest_live);
        self.counts.retain(|(window, _), _| *window >= first_kept);
        for (total, expiries) in self.live.values_mut() {
            let kept = expiries.split_off(&now.saturating_add(1));
            let gone: u64 = expiries.values().map(|n| u64::from(*n)).sum();
            *total = total.saturating_sub(gone);
            *expiries = kept;
        }
        self.live.retain(|_, (total, _)| *total > 0);
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{NOW, TestHood};

    #[test]
    fn live_cap_counts_only_items_not_yet_expired() {
        let mut policy = Policy::default();
        policy.rate_limit.max_items = 1;
        let mut h = TestHood::with_policy(3, policy);
        let bob = h.join(0, 0);
        let mut rate = RateLimiter::new();
        let cap = LIVE_WINDOWS as u64;
        // One item per window, each living one hour, back over `cap` windows from `t`
        // (all after the hood's first epoch began: nothing is sealed in an epoch before
        // its first window).
        let t = NOW + 3600 * cap;
        h.now = t;
        for i in 0..cap {
            let mut body = h.report("x");
            let Body::Report(r) = &mut body else {
                unreachable!()
            };
            r.created_at = t - 3600 * i;
            r.expires_at = t + 3600;
            let bytes = h.seal(bob, &body);
            let Verdict::Accept(a) = h.validate_with(0, &bytes, &rate) else {
                panic!("item {i} refused")
            };
            rate.record(h.roster.policy(), &a);
        }
        let author = h.members[bob].keys.id();
        assert!(!rate.allows(&policy, &author, t - 3600 * cap, t));
        // An hour later they have all expired: the member may post again.
        rate.prune(&policy, t + 3600);
        assert!(rate.allows(&policy, &author, t + 3600, t + 3600));
    }
}
