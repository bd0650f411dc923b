//! Findings of a hostile review of 2026-12-08 (threat model R15, R16), through
//! `validate_op` and `Roster::insert`; each failed before its fix.

#![allow(clippy::unwrap_used)]

use porchlight_proto::healing::{HEAL_EVERY, HEAL_GRACE};
use porchlight_proto::identity::{MemberId, MemberKeys};
use porchlight_proto::item::{Body, Item};
use porchlight_proto::keys::{self, EpochKey};
use porchlight_proto::membership::{Join, Op, Rekey, Remove, Roster};
use porchlight_proto::testkit::{NOW, TestHood};
use porchlight_proto::validate::{Reason, validate_op};

const ALICE: usize = 0;
const BOB: usize = 1;

fn id(h: &TestHood, i: usize) -> MemberId {
    h.members[i].keys.id()
}
fn sign(h: &TestHood, keys: &MemberKeys, op: Op) -> Item {
    Item::sign(keys, &h.hood(), &Body::Membership(op))
}
fn deliver(roster: &mut Roster, item: &Item, now: u64) -> Result<(), Reason> {
    validate_op(&item.encode(), roster, now)?;
    roster.insert(item).unwrap();
    Ok(())
}

/// Removed admin Bob plants a join of Dave (who joined after Bob's removal) in his own
/// causal past, then removes Dave with old parents: target_seen counts the forged join.
#[test]
fn review_forged_join_does_not_let_a_removed_admin_remove_a_later_joiner() {
    let mut removed = 0;
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
        h.remove(ALICE, BOB);
        let dave = h.join(ALICE, ALICE);
        let request = h
            .roster
            .items()
            .find_map(|i| match Op::of_item(i) {
                Some(Op::Join(j)) if j.request.joiner == id(&h, dave) => Some(j.request),
                _ => None,
            })
            .unwrap();
        let bob = h.members[BOB].keys.clone();
        let forged = sign(
            &h,
            &bob,
            Op::Join(Join {
                parents: before.clone(),
                created_at: h.now,
                request,
                wraps: vec![],
            }),
        );
        let mut r = h.roster.clone();
        deliver(&mut r, &forged, NOW).unwrap();
        let highest = r.items().map(Item::op_id).max().unwrap();
        let late = (h.now..h.now + 2000)
            .map(|t| {
                sign(
                    &h,
                    &bob,
                    Op::Remove(Remove {
                        parents: vec![forged.op_id()],
                        created_at: t,
                        target: id(&h, dave),
                    }),
                )
            })
            .find(|x| x.op_id() > highest)
            .unwrap();
        deliver(&mut r, &late, NOW).unwrap();
        if !r.is_member(&id(&h, dave)) {
            removed += 1;
        }
    }
    assert_eq!(
        removed, 0,
        "a removed admin removed a member who joined after him"
    );
}

/// Any member suppresses the day's healing with a low-generation rekey dated today that
/// never becomes the sealing epoch.
#[test]
fn review_a_low_generation_rekey_does_not_suppress_healing() {
    let mut h = TestHood::new(31);
    for _ in 0..4 {
        h.join(0, 0);
    }
    h.rekey(0);
    h.rekey(1);
    let next_day = NOW - NOW % HEAL_EVERY + HEAL_EVERY;
    let sealing = h.roster.sealing_epoch();
    let mallory = h.members[2].keys.clone();
    let me = h.roster.member(&mallory.id()).unwrap().exchange_key;
    let now = next_day - 300;
    let key = EpochKey::generate(&h.hood(), 1, next_day, &mut h.rng);
    let wrap = keys::wrap(&key, &h.hood(), mallory.id(), &me, &mut h.rng).unwrap();
    let op = sign(
        &h,
        &mallory,
        Op::Rekey(Rekey {
            parents: h.roster.heads(),
            created_at: next_day,
            generation: 1,
            epoch: key.id(),
            wraps: vec![wrap],
        }),
    );
    let mut r = h.roster.clone();
    deliver(&mut r, &op, now).unwrap();
    assert!(r.took_effect(&op.op_id()));
    assert_eq!(r.sealing_epoch(), sealing, "not sealed under");
    assert!(!r.needs_rekey());
    let base: usize = (0..24)
        .map(|k| {
            h.members
                .iter()
                .filter(|m| {
                    h.roster
                        .healing_due(&m.keys.id(), next_day + k * HEAL_GRACE)
                })
                .count()
        })
        .sum();
    assert!(base > 0, "someone heals that day without the hostile rekey");
    let mut due = 0;
    for k in 0..24 {
        let at = next_day + k * HEAL_GRACE;
        due += h
            .members
            .iter()
            .filter(|m| r.healing_due(&m.keys.id(), at))
            .count();
    }
    assert!(due > 0, "nobody heals all day: healing suppressed");
}
