//! Removal by quorum (`quorum.rs`), through the real validation path (`validate_op`) and
//! `Roster::insert`, with the testkit's real keys and operations: one vote removes
//! nobody, the second does; the target's own vote never counts; a single hostile member
//! cannot remove anyone alone however they try; votes expire in causal time; votes of a
//! removed member do not count; the completing vote removes strongly; concurrent votes
//! converge in any arrival order.

#![allow(clippy::unwrap_used)]

use porchlight_proto::hood::{Permission, Policy};
use porchlight_proto::identity::{MemberId, MemberKeys};
use porchlight_proto::item::{Body, Item};
use porchlight_proto::membership::{Denied, MembershipError, Op, Remove, Roster};
use porchlight_proto::quorum::{RemoveVote, VOTE_TTL_SECS};
use porchlight_proto::testkit::{NOW, SeededRng, TestHood};
use porchlight_proto::validate::{Reason, validate_op};

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;
const DAVE: usize = 3;

/// Alice (founder, admin), Bob, Carol and Dave, under `remove = quorum:2`.
fn hood() -> TestHood {
    let policy = Policy {
        remove: Permission::Quorum(2),
        ..Policy::default()
    };
    let mut h = TestHood::with_policy(22, policy);
    h.join(ALICE, ALICE);
    h.join(ALICE, ALICE);
    h.join(ALICE, ALICE);
    h
}

fn id(h: &TestHood, i: usize) -> MemberId {
    h.members[i].keys.id()
}

fn sign(h: &TestHood, keys: &MemberKeys, op: Op) -> Item {
    Item::sign(keys, &h.hood(), &Body::Membership(op))
}

/// A vote by `voter` against `target`, naming `parents`, dated `at`.
fn vote(
    h: &TestHood,
    voter: usize,
    target: usize,
    parents: Vec<porchlight_proto::OpId>,
    at: u64,
) -> Item {
    sign(
        h,
        &h.members[voter].keys,
        Op::RemoveVote(RemoveVote {
            parents,
            created_at: at,
            target: id(h, target),
        }),
    )
}

/// What a node does with an operation from the network: `validate_op`, then insert.
fn deliver(roster: &mut Roster, item: &Item, now: u64) -> Result<(), Reason> {
    validate_op(&item.encode(), roster, now)?;
    roster.insert(item).unwrap();
    Ok(())
}

/// Delivers `items` in the given order; an operation waiting for a parent is retried as
/// more arrive (as a node's waiting set does).
fn deliver_all(roster: &mut Roster, items: &[Item], now: u64) {
    let mut waiting: Vec<&Item> = items.iter().collect();
    for _ in 0..=items.len() {
        let before = waiting.len();
        waiting.retain(|item| match deliver(roster, item, now) {
            Ok(()) | Err(Reason::DuplicateOp) => false,
            Err(Reason::MissingParents | Reason::UnknownAuthor) => true,
            Err(other) => panic!("validation refused an operation: {other}"),
        });
        if waiting.is_empty() || waiting.len() == before {
            break;
        }
    }
    assert!(
        waiting.is_empty(),
        "{} operations never delivered",
        waiting.len()
    );
}

#[test]
fn one_vote_removes_nobody_and_a_second_from_another_member_removes() {
    let mut h = hood();
    let carol = id(&h, CAROL);
    let first = h
        .roster
        .vote_remove(&h.members[ALICE].keys, carol, h.now)
        .unwrap();
    deliver(&mut h.roster, &first, NOW).unwrap();
    assert!(h.roster.took_effect(&first.op_id()), "a vote is recorded");
    assert!(h.roster.is_member(&carol), "one vote removes nobody");
    assert_eq!(h.roster.votes_needed(&carol, NOW), Some(1));
    let pending = h.roster.pending_votes(NOW);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].target, carol);
    assert_eq!(pending[0].votes[0].voter, id(&h, ALICE));

    let second = h
        .roster
        .vote_remove(&h.members[BOB].keys, carol, h.now)
        .unwrap();
    deliver(&mut h.roster, &second, NOW).unwrap();
    assert!(!h.roster.is_member(&carol), "the second vote removes");
    assert!(h.roster.is_removed(&carol));
    assert_eq!(
        h.roster.quorum_removals().collect::<Vec<_>>(),
        vec![(second.op_id(), carol)]
    );
    assert!(h.roster.pending_votes(NOW).is_empty());
    // The completing vote's author owes the rekey; nobody else does.
    assert!(h.roster.owes_rekey(&id(&h, BOB)));
    assert!(!h.roster.owes_rekey(&id(&h, ALICE)));
    assert!(!h.roster.owes_rekey(&id(&h, DAVE)));
    h.rekey(BOB);
    assert!(!h.roster.owes_rekey(&id(&h, BOB)), "the rekey settles it");
    assert!(!h.roster.needs_rekey());
}

#[test]
fn the_targets_own_vote_never_counts() {
    let mut h = hood();
    let carol = id(&h, CAROL);
    // The builder refuses it, and says why.
    assert_eq!(
        h.roster
            .vote_remove(&h.members[CAROL].keys, carol, h.now)
            .unwrap_err(),
        MembershipError::Denied(Denied::OwnVote)
    );
    // Signed by hand: validation takes it (it is well formed), the fold denies it.
    let own = vote(&h, CAROL, CAROL, h.roster.parents_for(&carol), h.now);
    deliver(&mut h.roster, &own, NOW).unwrap();
    assert_eq!(h.roster.denial(&own.op_id()), Some(Denied::OwnVote));
    let alice = h
        .roster
        .vote_remove(&h.members[ALICE].keys, carol, h.now)
        .unwrap();
    deliver(&mut h.roster, &alice, NOW).unwrap();
    assert!(
        h.roster.is_member(&carol),
        "Alice's vote and Carol's own make one vote, not two"
    );
    assert_eq!(h.roster.votes_needed(&carol, NOW), Some(1));
}

#[test]
fn a_single_member_cannot_remove_anyone_alone_under_quorum_two() {
    let mut h = hood();
    let alice_keys = h.members[ALICE].keys.clone();
    let bob = id(&h, BOB);
    // The founder and only admin: a plain removal is refused by the builder ...
    assert_eq!(
        h.roster.remove(&alice_keys, bob, h.now).unwrap_err(),
        MembershipError::Denied(Denied::PolicyForbidsRemove)
    );
    // ... and, signed by hand, taken by validation and denied by the fold.
    let remove = sign(
        &h,
        &alice_keys,
        Op::Remove(Remove {
            parents: h.roster.parents_for(&alice_keys.id()),
            created_at: h.now,
            target: bob,
        }),
    );
    deliver(&mut h.roster, &remove, NOW).unwrap();
    assert_eq!(
        h.roster.denial(&remove.op_id()),
        Some(Denied::PolicyForbidsRemove)
    );
    // Voting again and again, on one chain and concurrently (forking her own chain).
    let start = h.roster.heads();
    for i in 0..5 {
        let again = h.roster.vote_remove(&alice_keys, bob, h.now + i).unwrap();
        deliver(&mut h.roster, &again, NOW).unwrap();
        let fork = vote(&h, ALICE, BOB, start.clone(), h.now + 100 + i);
        deliver(&mut h.roster, &fork, NOW).unwrap();
    }
    assert!(h.roster.is_member(&bob), "one member's votes are one vote");
    assert_eq!(h.roster.votes_needed(&bob, NOW), Some(1));
}

#[test]
fn votes_expire_in_causal_time() {
    let mut h = hood();
    let carol = id(&h, CAROL);
    let later = NOW + VOTE_TTL_SECS + 60;
    let alice = h
        .roster
        .vote_remove(&h.members[ALICE].keys, carol, NOW)
        .unwrap();
    deliver(&mut h.roster, &alice, later).unwrap();
    // Bob's vote follows Alice's and is made after her vote expired.
    let bob = h
        .roster
        .vote_remove(&h.members[BOB].keys, carol, later)
        .unwrap();
    deliver(&mut h.roster, &bob, later).unwrap();
    assert!(h.roster.took_effect(&bob.op_id()));
    assert!(
        h.roster.is_member(&carol),
        "a vote older than {VOTE_TTL_SECS} s in the completing vote's causal time is void"
    );
    assert_eq!(h.roster.votes_needed(&carol, later), Some(1));
    assert_eq!(h.roster.pending_votes(later)[0].votes.len(), 1);

    // Bob's vote is dated by its own word ...
    let dave_parents = h.roster.parents_for(&id(&h, DAVE));
    // ... but Dave's, dated back to Alice's time, still follows Bob's (later) vote: its
    // causal time is Bob's, so Alice's vote stays expired for it, and Bob's counts.
    let dave = vote(&h, DAVE, CAROL, dave_parents, NOW);
    deliver(&mut h.roster, &dave, later).unwrap();
    assert!(!h.roster.is_member(&carol), "Bob's and Dave's votes remove");
    assert_eq!(h.roster.quorum_removals().count(), 1);
}

#[test]
fn a_backdated_vote_cannot_revive_an_expired_one_it_follows() {
    let mut h = hood();
    let carol = id(&h, CAROL);
    let later = NOW + VOTE_TTL_SECS + 60;
    let alice = h
        .roster
        .vote_remove(&h.members[ALICE].keys, carol, NOW)
        .unwrap();
    deliver(&mut h.roster, &alice, later).unwrap();
    // Something happens later (Dave rekeys).
    h.now = later;
    h.rekey(DAVE);
    // Bob dates his vote within Alice's week, but names the heads: its causal time is
    // the rekey's, past her vote's expiry.
    let backdated = vote(&h, BOB, CAROL, h.roster.parents_for(&id(&h, BOB)), NOW + 10);
    deliver(&mut h.roster, &backdated, later).unwrap();
    assert!(h.roster.is_member(&carol));
}

#[test]
fn votes_of_a_member_removed_before_the_count_do_not_count() {
    let mut h = hood();
    let (bob, carol) = (id(&h, BOB), id(&h, CAROL));
    // Bob votes against Carol; then Alice and Carol remove Bob.
    let bob_vote = h
        .roster
        .vote_remove(&h.members[BOB].keys, carol, h.now)
        .unwrap();
    deliver(&mut h.roster, &bob_vote, NOW).unwrap();
    for voter in [ALICE, CAROL] {
        let v = h
            .roster
            .vote_remove(&h.members[voter].keys, bob, h.now)
            .unwrap();
        deliver(&mut h.roster, &v, NOW).unwrap();
    }
    assert!(h.roster.is_removed(&bob));
    // Dave's vote against Carol would be the second, but Bob's no longer counts.
    let dave = h
        .roster
        .vote_remove(&h.members[DAVE].keys, carol, h.now)
        .unwrap();
    deliver(&mut h.roster, &dave, NOW).unwrap();
    assert!(h.roster.is_member(&carol));
    assert_eq!(h.roster.votes_needed(&carol, NOW), Some(1));
}

#[test]
fn the_completing_vote_voids_the_targets_concurrent_operations() {
    let mut h = hood();
    let carol = id(&h, CAROL);
    let base = h.roster.heads();
    // Carol, not yet knowing, rekeys and admits Erin concurrently with the votes.
    let mut carol_side = h.clone();
    carol_side.now = NOW + 5;
    carol_side.rekey(CAROL);
    let erin = carol_side.join(CAROL, CAROL);
    let erin_id = id(&carol_side, erin);
    let carol_ops: Vec<Item> = carol_side
        .roster
        .items()
        .filter(|i| i.author == carol)
        .cloned()
        .collect();
    assert_eq!(carol_ops.len(), 2);
    let a = vote(&h, ALICE, CAROL, base.clone(), NOW + 1);
    let b = vote(&h, BOB, CAROL, base, NOW + 2);
    let mut all = carol_ops.clone();
    all.extend([a, b]);
    deliver_all(&mut h.roster, &all, NOW + 10);
    assert!(h.roster.is_removed(&carol));
    for op in &carol_ops {
        assert!(
            h.roster.is_void(&op.op_id()),
            "Carol's concurrent op is void"
        );
    }
    assert!(
        !h.roster.is_member(&erin_id),
        "whom only Carol admitted is not a member"
    );
}

/// Two partitions vote concurrently (Alice and Bob against Carol on one side, Carol and
/// Dave against Bob on the other), Carol also acts; every arrival order of the union
/// gives the same roster, in which both removals stand.
#[test]
fn concurrent_votes_in_a_partition_converge_in_any_arrival_order() {
    let h = hood();
    let (bob, carol) = (id(&h, BOB), id(&h, CAROL));
    let genesis_side: Vec<Item> = h.roster.items().cloned().collect();
    let mut left = h.clone();
    let mut right = h.clone();
    left.now = NOW + 10;
    right.now = NOW + 20;
    for voter in [ALICE, BOB] {
        let v = left
            .roster
            .vote_remove(&left.members[voter].keys, carol, left.now)
            .unwrap();
        left.apply(&v);
    }
    left.rekey(BOB);
    for voter in [CAROL, DAVE] {
        let v = right
            .roster
            .vote_remove(&right.members[voter].keys, bob, right.now)
            .unwrap();
        right.apply(&v);
    }
    right.rekey(DAVE);
    assert!(left.roster.is_removed(&carol) && left.roster.is_member(&bob));
    assert!(right.roster.is_removed(&bob) && right.roster.is_member(&carol));
    let mut union: Vec<Item> = left.roster.items().cloned().collect();
    union.extend(right.roster.items().cloned());
    union.retain(|i| !genesis_side[..1].contains(i));

    let mut results = Vec::new();
    let mut rng = SeededRng::new(5);
    for round in 0..12 {
        let mut order = union.clone();
        // A seeded shuffle (Fisher–Yates); the first round keeps the left side first,
        // the second reverses it.
        match round {
            0 => {}
            1 => order.reverse(),
            _ => {
                for i in (1..order.len()).rev() {
                    let j = (u64::from_le_bytes(rng.bytes()) % (i as u64 + 1)) as usize;
                    order.swap(i, j);
                }
            }
        }
        let mut roster = Roster::from_genesis(&genesis_side[0]).unwrap();
        deliver_all(&mut roster, &order, NOW + 60);
        let members: Vec<MemberId> = roster.members().map(|m| m.id).collect();
        let removed: Vec<MemberId> = roster.removed().copied().collect();
        let effective: Vec<bool> = union
            .iter()
            .map(|i| roster.took_effect(&i.op_id()))
            .collect();
        results.push((
            members,
            removed,
            effective,
            roster.sealing_epoch(),
            roster.quorum_removals().collect::<Vec<_>>(),
        ));
    }
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "every order gives one roster"
    );
    // Both quorums are in the union, each completed by a vote whose author had not heard
    // of the other: both removals stand, everywhere. (Before, the one whose completing
    // vote had the lower op id won and the other's removed voter no longer counted:
    // op ids are their authors' choice, so the better grinder won.)
    let (members, removed, ..) = &results[0];
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(!members.contains(&bob) && !members.contains(&carol));
    // And the same as the fold of the whole set at once.
    let all: Vec<Item> = genesis_side[..1].iter().chain(&union).cloned().collect();
    let folded = Roster::from_items(&h.hood(), &all).unwrap();
    assert_eq!(folded.members().map(|m| m.id).collect::<Vec<_>>(), *members);
}

#[test]
fn a_vote_in_a_hood_without_quorum_takes_no_effect() {
    let mut h = TestHood::new(3);
    h.join(ALICE, ALICE);
    let bob = id(&h, BOB);
    assert_eq!(
        h.roster
            .vote_remove(&h.members[ALICE].keys, bob, h.now)
            .unwrap_err(),
        MembershipError::Denied(Denied::NotAQuorumHood)
    );
    let v = vote(&h, ALICE, BOB, h.roster.parents_for(&id(&h, ALICE)), h.now);
    deliver(&mut h.roster, &v, NOW).unwrap();
    assert_eq!(h.roster.denial(&v.op_id()), Some(Denied::NotAQuorumHood));
    assert!(h.roster.is_member(&bob));
}

#[test]
fn quorum_policies_outside_two_to_sixty_four_and_invite_by_quorum_are_invalid() {
    for k in [0, 1, 65] {
        let p = Policy {
            remove: Permission::Quorum(k),
            ..Policy::default()
        };
        assert!(p.check().is_err(), "quorum:{k}");
    }
    let p = Policy {
        invite: Permission::Quorum(2),
        ..Policy::default()
    };
    assert!(p.check().is_err());
    let p = Policy {
        remove: Permission::Quorum(3),
        ..Policy::default()
    };
    assert_eq!(p.check(), Ok(()));
}

/// The hood of `hood()` on another seed (so other keys, so other op ids).
fn hood_seeded(seed: u64) -> TestHood {
    let policy = Policy {
        remove: Permission::Quorum(2),
        ..Policy::default()
    };
    let mut h = TestHood::with_policy(seed, policy);
    h.join(ALICE, ALICE);
    h.join(ALICE, ALICE);
    h.join(ALICE, ALICE);
    h
}

/// `make(t)` for `t` = `from`, `from + 1`, ... until its op id sorts before `other`'s
/// (`before`) or after it: the grinding an author does for free.
fn ground(other: &Item, before: bool, from: u64, make: impl Fn(u64) -> Item) -> Item {
    (from..from + 10_000)
        .map(make)
        .find(|item| (item.op_id() < other.op_id()) == before)
        .expect("one in two ids sorts either way")
}

/// What the test compares across orders: members, removed, and which operations of
/// `ops` took effect.
fn outcome(r: &Roster, ops: &[Item]) -> (Vec<MemberId>, Vec<MemberId>, Vec<bool>) {
    (
        r.members().map(|m| m.id).collect(),
        r.removed().copied().collect(),
        ops.iter().map(|i| r.took_effect(&i.op_id())).collect(),
    )
}

/// Delivers `ops` on top of `base` in a seeded shuffled order (and, for round 0, as
/// given; round 1 reversed); returns the roster.
fn shuffled(base: &Roster, ops: &[Item], round: u64, now: u64) -> Roster {
    let mut order = ops.to_vec();
    match round {
        0 => {}
        1 => order.reverse(),
        _ => {
            let mut rng = SeededRng::new(round);
            for i in (1..order.len()).rev() {
                let j = (u64::from_le_bytes(rng.bytes()) % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
        }
    }
    let mut r = base.clone();
    deliver_all(&mut r, &order, now);
    r
}

/// Hostile review 2026-12-07, first finding. Dave is voted out by Alice and Bob (Bob's
/// vote completes). Dave then signs a vote against Bob naming Carol's older vote
/// against Bob as parent, ground so that its op id sorts before Bob's completing vote
/// (and, as a control, after it). Before, with Dave's vote first in the fold's order it
/// removed Bob, so Bob's completing vote was denied and Dave stayed. Now the removal of
/// Dave stands in both orders, over many seeds and delivery orders, and every node
/// agrees with a full refold: concurrent removals both stand (Dave's vote, made before
/// he heard of his removal as far as anyone can tell, still counts against Bob).
#[test]
fn a_removed_member_cannot_undo_his_quorum_removal_with_a_vote_that_sorts_first() {
    let mut stayed = Vec::new();
    for seed in 0..24 {
        let mut h = hood_seeded(seed);
        let (bob, dave) = (id(&h, BOB), id(&h, DAVE));
        let carol_vote = h
            .roster
            .vote_remove(&h.members[CAROL].keys, bob, h.now)
            .unwrap();
        h.apply(&carol_vote);
        let base = h.roster.clone();
        let a = h
            .roster
            .vote_remove(&h.members[ALICE].keys, dave, h.now + 1)
            .unwrap();
        h.apply(&a);
        let b = h
            .roster
            .vote_remove(&h.members[BOB].keys, dave, h.now + 2)
            .unwrap();
        h.apply(&b);
        assert!(h.roster.is_removed(&dave));
        for before in [true, false] {
            let undo = ground(&b, before, h.now + 3, |t| {
                vote(&h, DAVE, BOB, vec![carol_vote.op_id()], t)
            });
            let ops = vec![a.clone(), b.clone(), undo.clone()];
            let mut seen = Vec::new();
            for round in 0..6 {
                let r = shuffled(&base, &ops, round, NOW + 60);
                if !r.is_removed(&dave) {
                    stayed.push((seed, before, round));
                }
                seen.push(outcome(&r, &ops));
            }
            let all: Vec<Item> = base.items().cloned().chain(ops.clone()).collect();
            let refolded = Roster::from_items(&h.hood(), &all).unwrap();
            seen.push(outcome(&refolded, &ops));
            assert!(
                seen.windows(2).all(|w| w[0] == w[1]),
                "seed {seed}, undo sorts first: {before}: orders disagree"
            );
            // Both removals stand: Dave's (completed by Bob) and Bob's (completed by
            // Dave's vote, concurrent with his removal, with Carol's).
            assert!(refolded.is_removed(&bob), "seed {seed}");
            assert!(refolded.took_effect(&b.op_id()), "seed {seed}");
        }
    }
    assert_eq!(
        stayed,
        Vec::<(u64, bool, u64)>::new(),
        "(seed, undo sorts first, round) where Dave undid his removal"
    );
}

/// Hostile review 2026-12-07, second finding. Alice and Bob vote Dave out (Bob's vote
/// completes); Alice leaves naming only her vote as parent (so the leave is concurrent
/// with Bob's completing vote), ground to sort before it (and after). Before, with the
/// leave first, Alice was no longer a member when Bob's vote was counted, so Dave
/// stayed. Now a vote counts for a completing vote whose author had not heard of its
/// voter's removal: Dave is removed in both orders.
#[test]
fn a_voter_cannot_undo_a_completed_removal_by_leaving_with_old_parents() {
    let mut stayed = Vec::new();
    for seed in 0..24 {
        let mut h = hood_seeded(seed);
        let (alice, dave) = (id(&h, ALICE), id(&h, DAVE));
        let base = h.roster.clone();
        let a = h
            .roster
            .vote_remove(&h.members[ALICE].keys, dave, h.now + 1)
            .unwrap();
        h.apply(&a);
        let b = h
            .roster
            .vote_remove(&h.members[BOB].keys, dave, h.now + 2)
            .unwrap();
        h.apply(&b);
        assert!(h.roster.is_removed(&dave));
        for before in [true, false] {
            let leave = ground(&b, before, h.now + 3, |t| {
                sign(
                    &h,
                    &h.members[ALICE].keys,
                    Op::Remove(Remove {
                        parents: vec![a.op_id()],
                        created_at: t,
                        target: alice,
                    }),
                )
            });
            let ops = vec![a.clone(), b.clone(), leave.clone()];
            let mut seen = Vec::new();
            for round in 0..6 {
                let r = shuffled(&base, &ops, round, NOW + 60);
                if !r.is_removed(&dave) {
                    stayed.push((seed, before, round));
                }
                assert!(r.is_removed(&alice), "she left");
                seen.push(outcome(&r, &ops));
            }
            let all: Vec<Item> = base.items().cloned().chain(ops.clone()).collect();
            seen.push(outcome(&Roster::from_items(&h.hood(), &all).unwrap(), &ops));
            assert!(
                seen.windows(2).all(|w| w[0] == w[1]),
                "seed {seed}, leave sorts first: {before}: orders disagree"
            );
        }
    }
    assert_eq!(
        stayed,
        Vec::<(u64, bool, u64)>::new(),
        "(seed, leave sorts first, round) where Alice's leave undid Dave's removal"
    );
}

/// Hostile review 2026-12-07, third finding. Bob's vote completes Dave's removal and he
/// rekeys, as he owes. Then Carol, a member, keeps making epochs that also go to Dave
/// (a wrap to a removed member is taken: it is honest when made concurrently). Before,
/// Bob owed a rekey again after each (`owes_rekey` asked only whether the newest
/// epoch's holders include the target), so Carol could burn Bob's chain one operation
/// of hers for one of his. Now the completing voter owes one rekey per removal: once a
/// rekey of his follows his vote, the hood's needs-rekey rule (any member's next post)
/// takes over.
#[test]
fn the_completing_voter_owes_one_rekey_per_removal_however_many_epochs_go_to_the_target() {
    let mut h = hood();
    let (bob, dave) = (id(&h, BOB), id(&h, DAVE));
    for voter in [ALICE, BOB] {
        let v = h
            .roster
            .vote_remove(&h.members[voter].keys, dave, h.now)
            .unwrap();
        deliver(&mut h.roster, &v, NOW).unwrap();
    }
    assert!(h.roster.is_removed(&dave));
    assert!(h.roster.owes_rekey(&bob));
    h.rekey(BOB);
    assert!(!h.roster.owes_rekey(&bob));
    let mut owed = 0;
    for round in 0..5 {
        let carol = h.members[CAROL].keys.clone();
        let (honest, _, _) = h.roster.rekey(&carol, h.now + round, &mut h.rng).unwrap();
        let Some(Op::Rekey(mut rekey)) = Op::of_item(&honest) else {
            panic!("a rekey");
        };
        let mut to_dave = rekey.wraps[0].clone();
        to_dave.to = dave;
        rekey.wraps.push(to_dave);
        let hostile = sign(&h, &carol, Op::Rekey(rekey));
        deliver(&mut h.roster, &hostile, NOW + 60).unwrap();
        assert!(h.roster.took_effect(&hostile.op_id()));
        assert!(h.roster.needs_rekey(), "the newest epoch went to Dave");
        if h.roster.owes_rekey(&bob) {
            owed += 1;
            h.rekey(BOB);
        }
    }
    assert_eq!(owed, 0, "rekeys Carol's epochs made Bob owe");
}

/// The other side of the rule that closed the first finding (a removal or vote is
/// judged on what its author had seen): a removed member's vote, judged as his act
/// before his removal, counts only the votes in its causal past. Dave, voted out, signs
/// a vote against Bob naming parents from before his removal, dated now and ground to an
/// op id above every later operation's (so the fold places it after them, Carol's
/// pending vote against Bob included). It does not complete Carol's vote: he had not
/// seen it. (Without the causal-past count, such a vote completed any pending quorum
/// at any time.)
#[test]
fn a_removed_members_late_placed_vote_does_not_complete_a_quorum_he_never_saw() {
    for seed in 0..12 {
        let mut h = hood_seeded(seed);
        let (bob, dave) = (id(&h, BOB), id(&h, DAVE));
        let before = h.roster.heads();
        let base = h.roster.clone();
        let mut ops = Vec::new();
        for voter in [ALICE, BOB] {
            let v = h
                .roster
                .vote_remove(&h.members[voter].keys, dave, h.now + 1)
                .unwrap();
            h.apply(&v);
            ops.push(v);
        }
        let carol = h
            .roster
            .vote_remove(&h.members[CAROL].keys, bob, h.now + 2)
            .unwrap();
        h.apply(&carol);
        ops.push(carol);
        assert!(h.roster.is_removed(&dave) && h.roster.is_member(&bob));
        let highest = ops.iter().map(Item::op_id).max().unwrap();
        let late = (h.now + 3..h.now + 100_000)
            .map(|t| vote(&h, DAVE, BOB, before.clone(), t))
            .find(|v| v.op_id() > highest)
            .unwrap();
        ops.push(late.clone());
        for round in 0..4 {
            // Delivered once the clock has passed the vote's date.
            let r = shuffled(&base, &ops, round, NOW + 100_000);
            assert!(r.is_removed(&dave), "seed {seed}");
            assert!(r.is_member(&bob), "seed {seed}, round {round}");
            assert_eq!(r.votes_needed(&bob, NOW + 100_000), Some(1), "seed {seed}");
        }
    }
}
