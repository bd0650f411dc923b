//! Removal by quorum: under a policy `remove = Quorum(k)`, nobody removes anyone alone.
//! Each member's [`RemoveVote`] for a target is one vote; the removal takes effect in the
//! fold when the vote that makes `k` live, counting votes for the same target is applied.
//!
//! The rules (`docs/protocol.md` § Removal by quorum has the reasoning):
//! - A vote takes effect (is recorded) when its author is a member at its place in the
//!   fold order, the hood's policy is a quorum, the target is a member, and the author is
//!   not the target ([`Denied::OwnVote`]: leaving is a plain `Remove`, and needs no vote).
//! - A vote is **cast at** its causal time: the latest `created_at` in its causal past,
//!   itself included (`Roster::causal_time`). It counts for a later vote only while that
//!   vote's causal time is at most [`VOTE_TTL_SECS`] past it. Time of receipt is never
//!   used (nodes offline across the expiry would disagree), and a voter cannot make a
//!   vote last longer than the 600 s of clock skew validation tolerates.
//! - Only the votes of **current members** count, counted when a vote is applied: a
//!   voter removed (or whose admission was voided) before that point counts for nothing,
//!   unless no removal of theirs is in the applied vote's causal past (its author had
//!   not heard: leaving does not withdraw a vote from a removal that completed without
//!   hearing of it). One vote per voter and target: a newer vote renews theirs.
//! - A vote whose author was removed outside its causal past is judged as their act
//!   before the removal (`docs/protocol.md` § Concurrent removals): it counts only the
//!   votes in its causal past, against a target admitted in it. Whether a vote counts
//!   never depends on op ids, so concurrent removals both stand.
//! - The vote that completes the quorum removes the target exactly as a `Remove` does:
//!   strong removal voids the target's operations outside that vote's causal past. Like a
//!   removal, a vote is never voided (a completed removal is never undone).
//! - Whoever signed the completing vote rekeys, once ([`Roster::owes_rekey`]); any
//!   member's next post rekeys too if they do not.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::hood::Policy;
use crate::identity::{MemberId, MemberKeys};
use crate::item::{Item, OpId};
use crate::membership::{Denied, MembershipError, Op, Roster, State};

/// The smallest quorum a policy may ask (1 would be any member alone: `AnyMember`).
pub const MIN_QUORUM: u16 = 2;
/// The largest quorum a policy may ask.
pub const MAX_QUORUM: u16 = 64;
/// How long a vote counts, in causal time: 7 days.
pub const VOTE_TTL_SECS: u64 = 7 * 24 * 3600;

/// A member's vote to remove `target` (membership operation variant 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveVote {
    pub parents: Vec<OpId>,
    pub created_at: u64,
    pub target: MemberId,
}

/// One recorded vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    pub op: OpId,
    pub voter: MemberId,
    /// The vote's causal time.
    pub cast_at: u64,
}

/// Votes for a target that has not been removed yet, as `members` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub target: MemberId,
    /// Live votes of current members, oldest first.
    pub votes: Vec<Vote>,
    /// How many more votes remove the target.
    pub needed: usize,
}

/// What the fold derives from votes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Per target, each voter's newest vote.
    votes: BTreeMap<MemberId, BTreeMap<MemberId, Vote>>,
    /// The vote that completed each removal by quorum, and its target.
    removals: BTreeMap<OpId, MemberId>,
}

impl Tally {
    /// The target whose removal vote `id` completed, if it did.
    pub(crate) fn completed_by(&self, id: &OpId) -> Option<MemberId> {
        self.removals.get(id).copied()
    }

    /// Records that vote `id` completed the removal of `target`.
    pub(crate) fn completed(&mut self, id: OpId, target: MemberId) {
        self.removals.insert(id, target);
    }

    /// Records `voter`'s vote `id` against `target`, cast at `at`: one vote per voter
    /// and target, the newest (a voter renews an old vote by voting again).
    fn record(&mut self, id: OpId, voter: MemberId, target: MemberId, at: u64) {
        let theirs = self.votes.entry(target).or_default();
        if theirs.get(&voter).is_none_or(|old| old.cast_at < at) {
            theirs.insert(
                voter,
                Vote {
                    op: id,
                    voter,
                    cast_at: at,
                },
            );
        }
    }

    /// The votes for `target` that count at causal time `at`: those of current members
    /// and of members `unseen` says were removed outside the counting vote's causal
    /// past, other than the target, cast at most [`VOTE_TTL_SECS`] before `at`.
    fn live<'a>(
        &'a self,
        state: &'a State,
        target: &'a MemberId,
        at: u64,
        unseen: &'a dyn Fn(&MemberId) -> bool,
    ) -> impl Iterator<Item = &'a Vote> + 'a {
        self.votes.get(target).into_iter().flat_map(move |votes| {
            votes.values().filter(move |v| {
                v.voter != *target
                    && at <= v.cast_at.saturating_add(VOTE_TTL_SECS)
                    && (state.members.contains_key(&v.voter)
                        || (state.removed.contains(&v.voter) && unseen(&v.voter)))
            })
        })
    }
}

/// Whether `author`, a member, may cast `vote` in `state` (the fold's check).
pub(crate) fn check_vote(
    state: &State,
    policy: &Policy,
    author: &MemberId,
    vote: &RemoveVote,
) -> Result<(), Denied> {
    if policy.remove.quorum().is_none() {
        return Err(Denied::NotAQuorumHood);
    }
    if !state.members.contains_key(&vote.target) {
        return Err(Denied::TargetNotMember);
    }
    if *author == vote.target {
        return Err(Denied::OwnVote);
    }
    Ok(())
}

impl Roster {
    /// Records a vote [`check_vote`] allowed and returns whether it makes the quorum:
    /// the fold's step then removes the target. A voter counts if they are a member,
    /// or were removed outside this vote's causal past (its author had not heard:
    /// `position` is the fold's order, `None` for a vote that follows every other), so
    /// a voter who leaves with old parents does not withdraw a vote that completed.
    pub(crate) fn count_vote(
        &self,
        state: &mut State,
        id: &OpId,
        author: MemberId,
        vote: &RemoveVote,
        position: Option<&BTreeMap<OpId, usize>>,
    ) -> bool {
        let at = self
            .time_and_place(id)
            .map_or(vote.created_at, |(at, _)| at);
        state.tally.record(*id, author, vote.target, at);
        let needed = self.policy().remove.quorum().unwrap_or(usize::MAX);
        let unseen = |voter: &MemberId| {
            position.is_some_and(|position| self.removal_unseen(state, id, voter, position))
        };
        let live = state.tally.live(state, &vote.target, at, &unseen);
        if state.members.contains_key(&author) {
            return live.count() >= needed;
        }
        // The author was removed outside this vote's causal past, and the vote is judged
        // as their act before the removal: it counts only the votes they had seen (its
        // causal past), or a removed member could ground a high op id, be placed after
        // every later vote, and complete any pending quorum at any time.
        let Some(position) = position else {
            // Not reached: the fold judges a removed author's vote only at its place.
            return false;
        };
        let votes: BTreeSet<OpId> = live.map(|v| v.op).collect();
        let others: BTreeSet<OpId> = votes.iter().filter(|op| *op != id).copied().collect();
        let seen = self.in_past(id, &others, position);
        votes
            .iter()
            .filter(|op| *op == id || seen.contains(op))
            .count()
            >= needed
    }
}

impl Roster {
    /// Makes a `RemoveVote` against `target` (follow it with a `Rekey` if it removed
    /// them: [`Roster::owes_rekey`]).
    pub fn vote_remove(
        &self,
        keys: &MemberKeys,
        target: MemberId,
        now: u64,
    ) -> Result<Item, MembershipError> {
        self.ensure_settled()?;
        let op = Op::RemoveVote(RemoveVote {
            parents: self.parents_for(&keys.id()),
            created_at: now,
            target,
        });
        self.sign_allowed(keys, op)
    }

    /// The time a new operation made now would be cast at: `now`, or the latest time in
    /// the set if that is later.
    fn vote_time(&self, now: u64) -> u64 {
        now.max(self.causal_time(&self.heads()))
    }

    /// Members with live votes against them, and how many more votes remove each.
    /// Empty unless the policy is a quorum.
    pub fn pending_votes(&self, now: u64) -> Vec<Pending> {
        let Some(k) = self.policy().remove.quorum() else {
            return Vec::new();
        };
        let state = self.state();
        let at = self.vote_time(now);
        state
            .tally
            .votes
            .keys()
            .filter(|t| state.members.contains_key(t))
            .filter_map(|target| {
                let mut votes: Vec<Vote> = state
                    .tally
                    .live(state, target, at, &|_| false)
                    .copied()
                    .collect();
                if votes.is_empty() {
                    return None;
                }
                votes.sort_by_key(|v| (v.cast_at, v.op));
                Some(Pending {
                    target: *target,
                    needed: k.saturating_sub(votes.len()),
                    votes,
                })
            })
            .collect()
    }

    /// How many more votes than those live now (at `now`, or the latest time in the set
    /// if later) remove `target` (`None` unless the policy is a quorum).
    pub fn votes_needed(&self, target: &MemberId, now: u64) -> Option<usize> {
        let k = self.policy().remove.quorum()?;
        let state = self.state();
        let live = state
            .tally
            .live(state, target, self.vote_time(now), &|_| false)
            .count();
        Some(k.saturating_sub(live))
    }

    /// Removals by quorum: the vote that completed each, and its target.
    pub fn quorum_removals(&self) -> impl Iterator<Item = (OpId, MemberId)> + '_ {
        self.state()
            .tally
            .removals
            .iter()
            .map(|(op, target)| (*op, *target))
    }

    /// Whether `me` must rekey: a vote of mine completed a removal, the newest epoch
    /// still went to the member it removed, and no rekey of mine that took effect
    /// follows that vote. One responsible member (the completing vote's author, the
    /// same at every node), so the hood does not get a rekey from each voter; and one
    /// rekey per removal, so a member who keeps making epochs that go to the removed
    /// member cannot spend the voter's chain (needs-rekey then falls to any member's
    /// next post). "Follows" is judged by chain place: `me`'s own operations form one
    /// chain, so a rekey of mine at a higher place than the vote has it in its past.
    pub fn owes_rekey(&self, me: &MemberId) -> bool {
        if self.is_provisional() || !self.is_member(me) || !self.needs_rekey() {
            return false;
        }
        let Some(newest) = self.epochs().max_by_key(|e| (e.generation, e.id)) else {
            return false;
        };
        let place = |id: &OpId| self.time_and_place(id).map(|(_, place)| place);
        let rekeyed_after = |vote: &OpId| {
            let Some(vote_place) = place(vote) else {
                return false;
            };
            self.authored_by(me).any(|(id, op)| {
                matches!(op, Op::Rekey(_))
                    && self.took_effect(id)
                    && place(id).is_some_and(|p| p > vote_place)
            })
        };
        self.quorum_removals().any(|(op, target)| {
            self.author_of(&op) == Some(*me)
                && newest.holders.contains(&target)
                && !rekeyed_after(&op)
        })
    }
}
