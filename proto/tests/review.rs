//! Findings of a hostile-member review of the first causal fold (docs/threat-model.md,
//! R1, R4–R6), through the real validation path (`validate_op`) and `Roster::insert`.
//! Each test failed on that code; the rules that close them: a removal is never voided,
//! only someone admitted earlier removes an admin, and a removal voids only the removed
//! member's own operations.

#![allow(clippy::unwrap_used)]

use porchlight_proto::identity::{MemberId, MemberKeys};
use porchlight_proto::item::{Body, Item};
use porchlight_proto::membership::{Denied, Join, Op, Remove, Roster};
use porchlight_proto::testkit::{NOW, SeededRng, TestHood};
use porchlight_proto::validate::{Reason, validate_op};

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

/// Alice (founder, admin), Bob and Carol (default policy: any member invites, admins
/// remove).
fn hood() -> TestHood {
    let mut h = TestHood::new(7);
    h.join(ALICE, ALICE);
    h.join(BOB, ALICE);
    h
}

fn id(h: &TestHood, i: usize) -> MemberId {
    h.members[i].keys.id()
}

fn sign(h: &TestHood, keys: &MemberKeys, op: Op) -> Item {
    Item::sign(keys, &h.hood(), &Body::Membership(op))
}

/// What a node does with an operation from the network: `validate_op`, then insert.
fn deliver(roster: &mut Roster, item: &Item) -> Result<(), Reason> {
    validate_op(&item.encode(), roster, NOW)?;
    roster.insert(item).unwrap();
    Ok(())
}

/// Admin Bob removes Carol and, concurrently, leaves, with the removal first in the
/// order or the leave first (he grinds `created_at`: `removal_first`); then Alice, a
/// member, rekeys on top of both.
fn sticky_history(removal_first: bool) -> (TestHood, Roster, Item) {
    let mut h = hood();
    let promote = h
        .roster
        .promote(&h.members[ALICE].keys, id(&h, BOB), h.now)
        .unwrap();
    h.apply(&promote);
    let bob = h.members[BOB].keys.clone();
    let parents = h.roster.heads();
    let removal = sign(
        &h,
        &bob,
        Op::Remove(Remove {
            parents: parents.clone(),
            created_at: h.now,
            target: id(&h, CAROL),
        }),
    );
    let mut t = h.now;
    let leave = loop {
        let leave = sign(
            &h,
            &bob,
            Op::Remove(Remove {
                parents: parents.clone(),
                created_at: t,
                target: bob.id(),
            }),
        );
        if (leave.op_id() > removal.op_id()) == removal_first {
            break leave;
        }
        t += 1;
    };
    let mut r = h.roster.clone();
    deliver(&mut r, &removal).unwrap();
    deliver(&mut r, &leave).unwrap();
    assert!(r.is_removed(&bob.id()));
    // A removal is never voided, and is judged on what its author had seen: Bob's
    // removal of Carol stands though he left concurrently, whichever sorts first.
    assert!(
        r.is_removed(&id(&h, CAROL)),
        "removal first in the order: {removal_first}"
    );
    assert!(r.took_effect(&removal.op_id()));
    // Alice, a member who has seen everything, rekeys (as needs_rekey tells her to).
    assert!(r.needs_rekey());
    let alice = h.members[ALICE].keys.clone();
    let (rekey, _, _) = r.rekey(&alice, h.now, &mut h.rng).unwrap();
    deliver(&mut r, &rekey).unwrap();
    (h, r, rekey)
}

/// R1: a removal voided by its author's concurrent leave left its target a member
/// whose every later operation was void. Now the removal stands, and every operation of
/// a member who remains takes effect. Both orders of the removal and the leave: with the
/// leave first, Bob was no longer a member at his removal's place, so Carol stayed (the
/// hostile review of 2026-12-07; this test tried only the removal first before).
#[test]
fn review_voided_removal_leaves_victim_ops_void_forever() {
    for removal_first in [true, false] {
        let (h, r, rekey) = sticky_history(removal_first);
        // Alice's rekey names every head, so `insert` took the incremental path; a full
        // fold of the same set agrees.
        let refolded = Roster::from_items(&h.hood(), r.items()).unwrap();
        assert!(refolded.is_member(&id(&h, ALICE)));
        assert!(refolded.is_removed(&id(&h, CAROL)));
        assert!(
            refolded.took_effect(&rekey.op_id()),
            "a member's rekey after all removals is void: {:?}",
            refolded.denial(&rekey.op_id())
        );
    }
}

/// R1b, same history: `apply_last` (the incremental path of `insert`) and a full
/// `refold` of the same set disagree on whether Carol's rekey took effect, so the
/// roster depends on delivery order and on whether the node restarted.
#[test]
fn review_apply_last_differs_from_refold() {
    for removal_first in [true, false] {
        let (h, r, rekey) = sticky_history(removal_first);
        let refolded = Roster::from_items(&h.hood(), r.items()).unwrap();
        assert_eq!(
            r.took_effect(&rekey.op_id()),
            refolded.took_effect(&rekey.op_id()),
            "incremental insert and full fold disagree"
        );
        assert_eq!(r.sealing_epoch(), refolded.sealing_epoch());
    }
}

/// R4. Counter-removal with a made-up "concurrency": parents are the author's
/// word. Admin Bob is removed by Alice, who then rekeys and admits Dave. Any time later,
/// Bob (removed) signs a removal of Alice naming the heads from before his removal. The
/// fold takes it as a counter-removal: Alice, the founder, is removed, and every operation
/// of hers after that point (her rekey that cut Bob off, Dave's join) is void.
#[test]
fn review_removed_admin_backdates_counter_removal() {
    let mut h = hood();
    let promote = h
        .roster
        .promote(&h.members[ALICE].keys, id(&h, BOB), h.now)
        .unwrap();
    h.apply(&promote);
    let before = h.roster.heads();
    h.remove(ALICE, BOB);
    let dave = h.join(ALICE, ALICE);
    assert!(h.roster.is_member(&id(&h, dave)));
    // Much later, removed Bob:
    let bob = h.members[BOB].keys.clone();
    let counter = sign(
        &h,
        &bob,
        Op::Remove(Remove {
            parents: before,
            created_at: h.now,
            target: id(&h, ALICE),
        }),
    );
    let mut r = h.roster.clone();
    deliver(&mut r, &counter).unwrap();
    assert!(
        r.is_member(&id(&h, ALICE)) && r.is_member(&id(&h, dave)),
        "removed Bob removed Alice ({}) and Dave lost his membership ({})",
        r.is_removed(&id(&h, ALICE)),
        !r.is_member(&id(&h, dave))
    );
}

/// R5: a removed member came back when an admin removed her remover with parents from
/// before her removal (the strong removal voided the removal). Now a removal is never
/// voided, and a junior admin cannot remove a senior one at all.
#[test]
fn review_backdated_removal_brings_removed_member_back() {
    let mut h = hood();
    let promote = h
        .roster
        .promote(&h.members[ALICE].keys, id(&h, BOB), h.now)
        .unwrap();
    h.apply(&promote);
    let before = h.roster.heads();
    // Bob, now an admin, removes Carol; Alice (more senior) later removes Bob, naming
    // parents from before Carol's removal.
    h.remove(BOB, CAROL);
    assert!(h.roster.is_removed(&id(&h, CAROL)));
    let alice = h.members[ALICE].keys.clone();
    let removal = sign(
        &h,
        &alice,
        Op::Remove(Remove {
            parents: before.clone(),
            created_at: h.now,
            target: id(&h, BOB),
        }),
    );
    let mut r = h.roster.clone();
    deliver(&mut r, &removal).unwrap();
    assert!(r.is_removed(&id(&h, BOB)));
    let (rekey, _, _) = r.rekey(&alice, h.now, &mut h.rng).unwrap();
    deliver(&mut r, &rekey).unwrap();
    assert!(r.is_removed(&id(&h, CAROL)), "Carol stays removed");
    assert!(
        !r.epoch(&r.sealing_epoch().unwrap())
            .unwrap()
            .holders
            .contains(&id(&h, CAROL))
    );
    // And the other way round: junior Bob cannot remove Alice at all.
    let bob = h.members[BOB].keys.clone();
    let by_bob = sign(
        &h,
        &bob,
        Op::Remove(Remove {
            parents: before,
            created_at: h.now,
            target: id(&h, ALICE),
        }),
    );
    let mut r = h.roster.clone();
    deliver(&mut r, &by_bob).unwrap();
    assert!(r.is_member(&id(&h, ALICE)));
    assert_eq!(
        r.denial(&by_bob.op_id()),
        Some(porchlight_proto::membership::Denied::Outranked)
    );
}

/// R6. A non-admin erases everyone on his tickets. Bob (no admin rights; default
/// policy) invites Dave, Alice admits him; Dave admits Erin. Bob then leaves, naming
/// parents from before Dave's join. The leave is concurrent with Dave's join, so the
/// fold may order either first (by op id, which the seed decides): over forty seeds,
/// whichever comes first, Dave and Erin stay members (before the fold judged a join's
/// inviter on the fold's state, and about two seeds in five expelled them both).
#[test]
fn review_backdated_leave_expels_everyone_on_his_tickets() {
    let mut expelled = Vec::new();
    for seed in 0..40 {
        let mut h = TestHood::new(seed);
        h.join(ALICE, ALICE);
        h.join(BOB, ALICE);
        let before = h.roster.heads();
        let dave = h.join(BOB, ALICE);
        let erin = h.join(dave, dave);
        assert!(h.roster.is_member(&id(&h, erin)));
        let bob = h.members[BOB].keys.clone();
        let leave = sign(
            &h,
            &bob,
            Op::Remove(Remove {
                parents: before,
                created_at: h.now,
                target: bob.id(),
            }),
        );
        let mut r = h.roster.clone();
        deliver(&mut r, &leave).unwrap();
        assert!(r.is_removed(&bob.id()));
        if !r.is_member(&id(&h, dave)) || !r.is_member(&id(&h, erin)) {
            expelled.push(seed);
        }
    }
    assert_eq!(
        expelled,
        Vec::<u64>::new(),
        "seeds where Bob's leave expelled Dave and Erin"
    );
}

/// The other side of R6: a join whose admitter had seen its inviter's removal (the
/// removal is in the join's causal past) takes no effect, whatever the seed.
#[test]
fn a_join_on_the_ticket_of_a_member_its_admitter_saw_leave_takes_no_effect() {
    for seed in 0..10 {
        let mut h = TestHood::new(seed);
        h.join(ALICE, ALICE);
        h.join(BOB, ALICE);
        let (signed, ticket) = h.ticket(BOB);
        let bob = h.members[BOB].keys.clone();
        let leave = h.roster.remove(&bob, bob.id(), h.now).unwrap();
        h.apply(&leave);
        let dave = h.outsider();
        let join = sign(
            &h,
            &h.members[ALICE].keys,
            Op::Join(Join {
                parents: h.roster.heads(),
                created_at: h.now,
                request: TestHood::request(&dave, &signed, &ticket),
                wraps: vec![],
            }),
        );
        let mut r = h.roster.clone();
        deliver(&mut r, &join).unwrap();
        assert!(!r.is_member(&dave.id()), "seed {seed}");
        assert_eq!(
            r.denial(&join.op_id()),
            Some(Denied::InviterNotMember),
            "seed {seed}"
        );
        // The same in a full refold: a rekey concurrent with the join arrives after it.
        let (rekey, _, _) = h
            .roster
            .rekey(&h.members[ALICE].keys, h.now, &mut SeededRng::new(seed))
            .unwrap();
        deliver(&mut r, &rekey).unwrap();
        assert!(!r.is_member(&dave.id()), "seed {seed}, refolded");
        assert_eq!(
            r.denial(&join.op_id()),
            Some(Denied::InviterNotMember),
            "seed {seed}, refolded"
        );
    }
}

/// A removal judged as its removed author's act before the removal (so that whether it
/// counts does not depend on op ids: the 2026-12-07 review) reaches only members
/// admitted in its causal past. Admin Bob is removed by Alice, who then admits Dave.
/// Bob signs a removal of Dave naming parents from before his own removal, ground to an
/// op id that places it after Dave's join: Dave stays, over many seeds.
#[test]
fn a_removed_admin_cannot_remove_someone_who_joined_after_him_with_old_parents() {
    for seed in 0..12 {
        let mut h = TestHood::new(seed);
        h.join(ALICE, ALICE);
        h.join(BOB, ALICE);
        let promote = h
            .roster
            .promote(&h.members[ALICE].keys, id(&h, BOB), h.now)
            .unwrap();
        h.apply(&promote);
        let before = h.roster.heads();
        let from = h.roster.len();
        h.remove(ALICE, BOB);
        let dave = h.join(ALICE, ALICE);
        let highest = h.roster.items().skip(from).map(Item::op_id).max().unwrap();
        let bob = h.members[BOB].keys.clone();
        let late = (h.now..h.now + 500)
            .map(|t| {
                sign(
                    &h,
                    &bob,
                    Op::Remove(Remove {
                        parents: before.clone(),
                        created_at: t,
                        target: id(&h, dave),
                    }),
                )
            })
            .find(|r| r.op_id() > highest)
            .expect("an id above a handful of others within 500 tries");
        let mut r = h.roster.clone();
        deliver(&mut r, &late).unwrap();
        assert!(r.is_member(&id(&h, dave)), "seed {seed}");
        assert_eq!(
            r.denial(&late.op_id()),
            Some(Denied::TargetNotMember),
            "seed {seed}"
        );
    }
}

/// Found attacking removals as one member (threat model, "removals, what was tried"):
/// Alice and Bob (admins) remove Xavier concurrently; only the first in the fold's order
/// takes effect, the other finds him removed already. Carol, who had seen only Bob's
/// removal, admits Yuri on Xavier's ticket. Before, whether the join counted depended
/// on which removal had the lower op id (with Alice's first, Bob's was "not a removal"
/// and the join stood on a removed inviter): a later removal that finds its target
/// removed already still tells whoever follows it. Both orders, many seeds.
#[test]
fn a_join_after_either_of_two_concurrent_removals_of_its_inviter_takes_no_effect() {
    let mut admitted = Vec::new();
    for seed in 0..16 {
        let mut h = hood();
        let mut h2 = TestHood::new(seed + 100);
        std::mem::swap(&mut h.rng, &mut h2.rng);
        let xavier = h.join(ALICE, ALICE);
        let promote = h
            .roster
            .promote(&h.members[ALICE].keys, id(&h, BOB), h.now)
            .unwrap();
        h.apply(&promote);
        let (signed, ticket) = h.ticket(xavier);
        let parents = h.roster.heads();
        let by_bob = sign(
            &h,
            &h.members[BOB].keys,
            Op::Remove(Remove {
                parents: parents.clone(),
                created_at: h.now,
                target: id(&h, xavier),
            }),
        );
        let yuri = h.outsider();
        let join = sign(
            &h,
            &h.members[CAROL].keys,
            Op::Join(Join {
                parents: vec![by_bob.op_id()],
                created_at: h.now,
                request: TestHood::request(&yuri, &signed, &ticket),
                wraps: vec![],
            }),
        );
        for alice_first in [true, false] {
            let by_alice = (h.now..h.now + 500)
                .map(|t| {
                    sign(
                        &h,
                        &h.members[ALICE].keys,
                        Op::Remove(Remove {
                            parents: parents.clone(),
                            created_at: t,
                            target: id(&h, xavier),
                        }),
                    )
                })
                .find(|r| (r.op_id() < by_bob.op_id()) == alice_first)
                .unwrap();
            for order in [[&by_alice, &by_bob, &join], [&by_bob, &join, &by_alice]] {
                let mut r = h.roster.clone();
                for item in order {
                    deliver(&mut r, item).unwrap();
                }
                assert!(r.is_removed(&id(&h, xavier)));
                if r.is_member(&yuri.id()) {
                    admitted.push((seed, alice_first));
                }
            }
        }
    }
    assert_eq!(
        admitted,
        Vec::<(u64, bool)>::new(),
        "(seed, Alice's removal first) where Yuri was admitted"
    );
}
