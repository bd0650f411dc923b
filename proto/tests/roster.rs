//! The roster is a deterministic function of the *set* of membership operations.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use porchlight_proto::keys::KeyRing;
use porchlight_proto::testkit::TestHood;
use porchlight_proto::{EpochId, HoodId, Item, MemberId, MemberKeys, Roster};
use proptest::prelude::*;

const ALICE: usize = 0;

/// A history with concurrency: after a common prefix, two members act on diverging copies
/// of the roster (as in a partition), and the two sides are merged.
struct History {
    hood: HoodId,
    ops: Vec<Item>,
    keys: BTreeMap<MemberId, MemberKeys>,
    names: BTreeMap<&'static str, MemberId>,
}

fn history(seed: u64) -> History {
    let mut h = TestHood::new(seed);
    let bob = h.join(ALICE, ALICE);
    let carol = h.join(bob, ALICE);
    let dave = h.join(carol, bob);
    let promote = h
        .roster
        .promote(&h.members[ALICE].keys, h.members[bob].keys.id(), h.now)
        .unwrap();
    h.apply(&promote);
    // One ticket, about to be used on both sides by different joiners.
    let (shared_signed, shared_ticket) = h.ticket(dave);

    let mut left = h.clone();
    let mut right = h.clone();
    // Left: Alice removes Carol and rekeys; Bob invites Erin; Gus uses the shared ticket.
    left.remove(ALICE, carol);
    let erin = left.join(bob, bob);
    let gus = left.outsider();
    let join = left
        .roster
        .admit(
            &left.members[ALICE].keys,
            &left.members[ALICE].ring,
            &TestHood::request(&gus, &shared_signed, &shared_ticket),
            left.now,
            &mut left.rng,
        )
        .unwrap();
    left.apply(&join);
    // Right: Carol (not yet removed here) invites Fay, Dave admits her; Dave rekeys;
    // Hal uses the shared ticket.
    right.rng = porchlight_proto::testkit::SeededRng::new(seed ^ 0xfeed);
    let fay = right.join(carol, dave);
    right.rekey(dave);
    let hal = right.outsider();
    let join = right
        .roster
        .admit(
            &right.members[dave].keys,
            &right.members[dave].ring,
            &TestHood::request(&hal, &shared_signed, &shared_ticket),
            right.now,
            &mut right.rng,
        )
        .unwrap();
    right.apply(&join);

    let mut ops: Vec<Item> = left.roster.items().cloned().collect();
    for op in right.roster.items() {
        if !ops.contains(op) {
            ops.push(op.clone());
        }
    }
    let mut keys = BTreeMap::new();
    for m in left.members.iter().chain(right.members.iter()) {
        keys.insert(m.keys.id(), m.keys.clone());
    }
    keys.insert(gus.id(), gus.clone());
    keys.insert(hal.id(), hal.clone());
    let names = BTreeMap::from([
        ("alice", h.members[ALICE].keys.id()),
        ("bob", h.members[bob].keys.id()),
        ("carol", h.members[carol].keys.id()),
        ("dave", h.members[dave].keys.id()),
        ("erin", left.members[erin].keys.id()),
        ("fay", right.members[fay].keys.id()),
        ("gus", gus.id()),
        ("hal", hal.id()),
    ]);
    History {
        hood: h.hood(),
        ops,
        keys,
        names,
    }
}

/// What a member learns from the roster: the set of epoch ids they can open.
fn rings(
    roster: &Roster,
    keys: &BTreeMap<MemberId, MemberKeys>,
) -> BTreeMap<MemberId, BTreeSet<EpochId>> {
    keys.iter()
        .map(|(id, k)| {
            let mut ring = KeyRing::new();
            roster.learn_keys(k, &mut ring);
            (*id, ring.iter().map(|key| key.id()).collect())
        })
        .collect()
}

#[test]
fn merged_history_has_the_expected_roster() {
    let h = history(1);
    let roster = Roster::from_items(&h.hood, &h.ops).unwrap();
    let n = |name: &str| h.names[name];
    // Removal wins: Carol is out, whatever the other side did.
    assert!(roster.is_removed(&n("carol")));
    assert!(!roster.is_member(&n("carol")));
    // Fay was invited by Carol concurrently with Carol's removal and admitted by Dave:
    // whether the join comes before the removal in the fold's order decides (a join by
    // someone else on a removed member's ticket is not voided; docs/protocol.md).
    for name in ["alice", "bob", "dave", "erin"] {
        assert!(roster.is_member(&n(name)), "{name} should be a member");
    }
    assert!(roster.is_admin(&n("bob")));
    // The shared ticket admitted exactly one of Gus and Hal.
    assert_ne!(roster.is_member(&n("gus")), roster.is_member(&n("hal")));
    // Keys went to people who are not (or no longer) members: no epoch Carol or Fay
    // ever held is used for sealing, and a clean one is sealed under only while every
    // holder of it is a member.
    if let Some(sealing) = roster.sealing_epoch() {
        let holders = &roster.epoch(&sealing).unwrap().holders;
        assert!(holders.iter().all(|h| roster.is_member(h)));
        assert!(!holders.contains(&n("fay")));
        assert!(
            !roster
                .epoch(&sealing)
                .unwrap()
                .holders
                .contains(&n("carol"))
        );
    }
}

#[test]
fn rekey_after_merge_reaches_every_member_and_no_one_else() {
    let h = history(2);
    let mut roster = Roster::from_items(&h.hood, &h.ops).unwrap();
    let alice = &h.keys[&h.names["alice"]];
    let (op, key, _) = roster
        .rekey(
            alice,
            1_700_000_100,
            &mut porchlight_proto::testkit::SeededRng::new(3),
        )
        .unwrap();
    roster.insert(&op).unwrap();
    assert!(!roster.needs_rekey());
    assert_eq!(roster.sealing_epoch(), Some(key.id()));
    for (id, epochs) in rings(&roster, &h.keys) {
        assert_eq!(
            epochs.contains(&key.id()),
            roster.is_member(&id),
            "member {id:?} holds the new key iff a member"
        );
    }
}

#[test]
fn removed_member_cannot_rejoin_with_a_new_ticket() {
    let mut h = TestHood::new(3);
    let bob = h.join(ALICE, ALICE);
    h.remove(ALICE, bob);
    let (signed, ticket) = h.ticket(ALICE);
    let bob_keys = h.members[bob].keys.clone();
    let request = TestHood::request(&bob_keys, &signed, &ticket);
    let err = h
        .roster
        .admit(
            &h.members[ALICE].keys,
            &h.members[ALICE].ring,
            &request,
            h.now,
            &mut h.rng,
        )
        .unwrap_err();
    assert_eq!(
        err,
        porchlight_proto::membership::MembershipError::Denied(
            porchlight_proto::membership::Denied::JoinerRemoved
        )
    );
}

#[test]
fn welcome_rebuilds_the_same_roster_and_gives_the_joiner_keys() {
    let mut h = TestHood::new(4);
    let bob = h.join(ALICE, ALICE);
    h.rekey(bob);
    let carol = h.join(bob, bob);
    let welcome = h
        .roster
        .welcome(&h.members[bob].keys, &h.members[carol].keys.id())
        .unwrap();
    let bytes = welcome.encode();
    let decoded = porchlight_proto::Welcome::decode(&bytes).unwrap();
    // A small hood's welcome carries the whole log: the roster is checked at once.
    let rebuilt = Roster::from_welcome(&h.hood(), &h.members[carol].keys.id(), &decoded).unwrap();
    assert!(!rebuilt.is_provisional());
    assert_eq!(rebuilt.checkpoint_held(), Some(true));
    assert_eq!(rebuilt.items().count(), h.roster.items().count());
    assert_eq!(
        rebuilt.members().collect::<Vec<_>>(),
        h.roster.members().collect::<Vec<_>>()
    );
    assert_eq!(rebuilt.sealing_epoch(), h.roster.sealing_epoch());
    assert_eq!(
        Roster::from_items(&h.hood(), &decoded.ops).unwrap(),
        h.roster
    );
    let mut ring = KeyRing::new();
    let (learned, failed) = rebuilt.learn_keys(&h.members[carol].keys, &mut ring);
    assert_eq!((learned, failed), (2, 0));
    assert!(ring.contains(&rebuilt.sealing_epoch().unwrap()));
}

#[test]
fn roster_from_another_hoods_ops_has_no_genesis() {
    let h = history(5);
    let other = TestHood::new(99);
    assert_eq!(
        Roster::from_items(&other.hood(), &h.ops).unwrap_err(),
        porchlight_proto::membership::MembershipError::NoGenesis
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_permutation_of_the_operation_set_gives_the_same_roster_and_keys(
        seed in 0u64..4,
        shuffle in Just(()).prop_perturb(|_, mut rng| {
            let mut order: Vec<usize> = (0..64).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, (rng.next_u32() as usize) % (i + 1));
            }
            order
        }),
    ) {
        let h = history(seed);
        let reference = Roster::from_items(&h.hood, &h.ops).unwrap();
        let reference_rings = rings(&reference, &h.keys);

        let mut permuted: Vec<Item> = Vec::new();
        for i in shuffle.iter().filter(|i| **i < h.ops.len()) {
            permuted.push(h.ops[*i].clone());
        }
        prop_assert_eq!(permuted.len(), h.ops.len());
        let folded = Roster::from_items(&h.hood, &permuted).unwrap();
        prop_assert_eq!(&folded, &reference);
        prop_assert_eq!(rings(&folded, &h.keys), reference_rings.clone());

        // Inserting one at a time, in that order, ends in the same place: an operation
        // whose parents have not arrived waits for them, as a node's does.
        let genesis = permuted.iter().find(|i| i.op_id() == reference.genesis_id()).unwrap();
        let mut stepwise = Roster::from_genesis(genesis).unwrap();
        let mut waiting: Vec<&Item> = permuted.iter().collect();
        for _ in 0..=permuted.len() {
            waiting.retain(|op| match stepwise.insert(op) {
                Ok(_) => false,
                Err(porchlight_proto::membership::MembershipError::MissingParents) => true,
                Err(e) => panic!("{e}"),
            });
        }
        prop_assert!(waiting.is_empty());
        prop_assert_eq!(&stepwise, &reference);
        prop_assert_eq!(stepwise.sealing_epoch(), reference.sealing_epoch());
    }
}
