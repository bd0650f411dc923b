//! One member acting alone, against the membership log: each attack of issue #14 through
//! the real validation path (`validate` for gossip, `validate_op` for sync) and the fold.
//! Each of these failed on the protocol-1 code (see docs/threat-model.md, M1–M9).

#![allow(clippy::unwrap_used)]

use porchlight_proto::HoodId;
use porchlight_proto::hood::{Permission, Policy};
use porchlight_proto::identity::ExchangeKey;
use porchlight_proto::item::{Body, Item};
use porchlight_proto::keys::{self, EpochKey, EpochWrap, KeyRing};
use porchlight_proto::membership::Genesis;
use porchlight_proto::membership::{Denied, Join, MembershipError, Op, Roster};
use porchlight_proto::testkit::{NOW, SeededRng, TestHood};
use porchlight_proto::validate::{Reason, Verdict, validate_op};

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

/// Alice (founder, admin), Bob and Carol.
fn hood() -> TestHood {
    let mut h = TestHood::new(7);
    h.join(ALICE, ALICE);
    h.join(BOB, ALICE);
    h
}

/// Alice makes Bob an admin.
fn promote_bob(h: &mut TestHood) {
    let op = h
        .roster
        .promote(&h.members[ALICE].keys, h.members[BOB].keys.id(), h.now)
        .unwrap();
    h.apply(&op);
}

fn accepted(v: Verdict) -> Box<porchlight_proto::Accepted> {
    match v {
        Verdict::Accept(a) => a,
        other => panic!("expected Accept, got {other:?}"),
    }
}

/// A join by `admitter` built by hand (no builder checks): what a hostile member sends.
fn raw_join(h: &TestHood, admitter: usize, join: Join) -> Item {
    Item::sign(
        &h.members[admitter].keys,
        &h.hood(),
        &Body::Membership(Op::Join(join)),
    )
}

/// M1: a second `Join` for a member, carrying wraps of made-up epochs with huge
/// generations, once cut its victim off from every later epoch (the key ring evicted the
/// victim's real keys, on every restart). Now it takes no effect, nothing is learned from
/// it, and the victim reads the next epoch.
#[test]
fn second_join_for_a_member_with_made_up_epochs_cuts_nobody_off() {
    let mut h = hood();
    let carol = h.members[CAROL].keys.clone();
    let (signed, ticket) = h.ticket(BOB);
    let request = TestHood::request(&carol, &signed, &ticket);
    let mut wraps = Vec::new();
    for i in 0..256u64 {
        let key = EpochKey::generate(&h.hood(), u64::MAX - i, h.now, &mut h.rng);
        wraps.push(EpochWrap {
            epoch: key.id(),
            generation: u64::MAX - i,
            wrap: keys::wrap(
                &key,
                &h.hood(),
                carol.id(),
                &carol.exchange_key(),
                &mut h.rng,
            )
            .unwrap(),
        });
    }
    let join = raw_join(
        &h,
        BOB,
        Join {
            parents: h.roster.heads(),
            created_at: h.now,
            request,
            wraps,
        },
    );
    let bytes = h.seal_item(BOB, &join);
    let a = accepted(h.ingest_as(ALICE, &bytes));
    assert_eq!(h.roster.denial(&a.op_id), Some(Denied::AlreadyMember));
    let ring_before = h.members[CAROL].ring.len();
    // Alice removes Bob (the attacker) and rekeys: Carol holds the new epoch, and a
    // restart (the roster rebuilt from the stored log) learns no made-up key either.
    h.remove(ALICE, BOB);
    let sealing = h.roster.sealing_epoch().unwrap();
    assert!(h.members[CAROL].ring.contains(&sealing));
    let rebuilt = Roster::from_items(&h.hood(), h.roster.items()).unwrap();
    let mut ring = KeyRing::new();
    rebuilt.learn_keys(&carol, &mut ring);
    assert_eq!(ring.len(), ring_before + 1);
    assert!(ring.contains(&sealing));
}

/// M3: a member admitted a puppet whose exchange key was all zeros; HPKE refused to wrap
/// to it, so every rekey failed and nobody could post after a removal. Now the join is
/// malformed (the sender is blamed), for every low-order point, and rekeys go on.
#[test]
fn puppet_with_an_unusable_exchange_key_cannot_block_rekeys() {
    let mut h = hood();
    // The all-zero point, the identity, and a point of order 8 (libsodium's list).
    let mut order8 = [0u8; 32];
    order8.copy_from_slice(
        &porchlight_proto::codec::parse_hex::<32>(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        )
        .unwrap(),
    );
    for bad in [
        [0u8; 32],
        {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        },
        order8,
    ] {
        let puppet = h.outsider();
        let (signed, ticket) = h.ticket(BOB);
        let mut request = TestHood::request(&puppet, &signed, &ticket);
        request.exchange_key = ExchangeKey(bad);
        // Re-sign the proof over the bad key, as a colluding puppet would.
        request = porchlight_proto::JoinRequest {
            proof: puppet.sign(&[
                porchlight_proto::domain::JOIN_REQUEST,
                &ticket.hood.0,
                &ticket.id.0,
                &bad,
                request.name.as_bytes(),
            ]),
            ..request
        };
        assert_eq!(request.verify(), Err(MembershipError::BadExchangeKey));
        let join = raw_join(
            &h,
            BOB,
            Join {
                parents: h.roster.heads(),
                created_at: h.now,
                request,
                wraps: vec![],
            },
        );
        let bytes = h.seal_item(BOB, &join);
        match h.validate_as(ALICE, &bytes) {
            Verdict::Reject(Reason::InvalidOp(MembershipError::BadExchangeKey)) => {}
            other => panic!("expected the join refused, got {other:?}"),
        }
        assert_eq!(
            validate_op(&join.encode(), &h.roster, h.now).unwrap_err(),
            Reason::InvalidOp(MembershipError::BadExchangeKey)
        );
    }
    // A removal still rekeys, and everyone left reads the new epoch.
    h.remove(ALICE, CAROL);
    let sealing = h.roster.sealing_epoch().unwrap();
    assert!(h.members[ALICE].ring.contains(&sealing));
    assert!(h.members[BOB].ring.contains(&sealing));
    assert!(!h.members[CAROL].ring.contains(&sealing));
}

/// M4: with invites for admins only, a non-admin admitted anyone with an unused, expired
/// admin ticket by backdating the join. Now the admitter needs invite permission too,
/// and expiry is judged on the join's time.
#[test]
fn non_admin_cannot_revive_an_expired_admin_ticket() {
    let policy = Policy {
        invite: Permission::AdminsOnly,
        ..Policy::default()
    };
    let mut h = TestHood::with_policy(8, policy);
    let bob = h.join(ALICE, ALICE);
    let (signed, ticket) = h.ticket(ALICE);
    // A month later, Bob uses the never-used code, dating his join before its expiry.
    h.now = ticket.expires_at + 30 * 24 * 3600;
    let mallory = h.outsider();
    let join = raw_join(
        &h,
        bob,
        Join {
            parents: h.roster.heads(),
            created_at: ticket.expires_at - 1,
            request: TestHood::request(&mallory, &signed, &ticket),
            wraps: vec![],
        },
    );
    let bytes = h.seal_item(bob, &join);
    let a = accepted(h.ingest_as(ALICE, &bytes));
    assert_eq!(h.roster.denial(&a.op_id), Some(Denied::PolicyForbidsInvite));
    assert!(!h.roster.is_member(&mallory.id()));
    // Alice herself, honest, is refused by her builder once the ticket expired.
    let late = h.outsider();
    let (signed, ticket) = {
        h.now = NOW;
        let t = h.ticket(ALICE);
        h.now = t.1.expires_at + 1;
        t
    };
    let err = h
        .roster
        .admit(
            &h.members[ALICE].keys,
            &h.members[ALICE].ring,
            &TestHood::request(&late, &signed, &ticket),
            h.now,
            &mut h.rng,
        )
        .unwrap_err();
    assert_eq!(err, MembershipError::Denied(Denied::TicketExpired));
}

/// M5: two admins who removed different members at the same time each refused the
/// other's rekey, and the two op sets never converged. Now both sides take every
/// operation, and end with one roster.
#[test]
fn concurrent_removals_by_two_admins_converge() {
    let mut h = hood();
    let dave = h.join(ALICE, ALICE);
    promote_bob(&mut h);
    let mut left = h.clone();
    let mut right = h.clone();
    right.rng = SeededRng::new(99);
    left.remove(ALICE, CAROL);
    right.remove(BOB, dave);
    let from_left: Vec<Item> = left.roster.items().cloned().collect();
    let from_right: Vec<Item> = right.roster.items().cloned().collect();
    for item in &from_right {
        match validate_op(&item.encode(), &left.roster, left.now) {
            Ok(v) => {
                left.roster.insert(&v.item).unwrap();
            }
            Err(Reason::DuplicateOp) => {}
            Err(e) => panic!("left refused {e}"),
        }
    }
    for item in &from_left {
        match validate_op(&item.encode(), &right.roster, right.now) {
            Ok(v) => {
                right.roster.insert(&v.item).unwrap();
            }
            Err(Reason::DuplicateOp) => {}
            Err(e) => panic!("right refused {e}"),
        }
    }
    assert_eq!(left.roster, right.roster);
    assert!(left.roster.is_removed(&h.members[CAROL].keys.id()));
    assert!(left.roster.is_removed(&h.members[dave].keys.id()));
    // Both rekeys went to someone the other side removed: the hood rekeys once more,
    // and everyone left reads it; the removed read nothing sealed under it.
    assert!(left.roster.needs_rekey());
    let (op, key, _) = left
        .roster
        .rekey(&h.members[ALICE].keys, h.now, &mut left.rng)
        .unwrap();
    left.roster.insert(&op).unwrap();
    assert_eq!(left.roster.sealing_epoch(), Some(key.id()));
    assert!(!left.roster.needs_rekey());
    for (i, m) in h.members.iter().enumerate() {
        let mut ring = KeyRing::new();
        left.roster.learn_keys(&m.keys, &mut ring);
        assert_eq!(
            ring.contains(&key.id()),
            i == ALICE || i == BOB,
            "member {i}"
        );
    }
}

/// M6: the fold picked, per ticket, the join with the lowest op id before checking it
/// could take effect, so an inadmissible join with a lower id (say, by a non-member, or
/// inside a Welcome) un-admitted the real joiner and everyone they admitted.
#[test]
fn inadmissible_join_with_a_lower_id_does_not_unadmit_the_real_joiner() {
    let mut h = hood();
    let (signed, ticket) = h.ticket(BOB);
    let erin = h.outsider();
    let request = TestHood::request(&erin, &signed, &ticket);
    let real = h
        .roster
        .admit(
            &h.members[ALICE].keys,
            &h.members[ALICE].ring,
            &request,
            h.now,
            &mut h.rng,
        )
        .unwrap();
    // Carol makes joins on the same ticket for a puppet, dated after its expiry (so none
    // can take effect), until one has a lower op id than the real join.
    let puppet = h.outsider();
    let puppet_request = TestHood::request(&puppet, &signed, &ticket);
    let fake = (1..10_000u64)
        .map(|i| {
            raw_join(
                &h,
                CAROL,
                Join {
                    parents: h.roster.heads(),
                    created_at: ticket.expires_at + i,
                    request: puppet_request.clone(),
                    wraps: vec![],
                },
            )
        })
        .find(|j| j.op_id() < real.op_id())
        .unwrap();
    h.now = ticket.expires_at + 20_000;
    for op in [&fake, &real] {
        let bytes = h.seal_item(ALICE, op);
        accepted(h.ingest_as(ALICE, &bytes));
    }
    assert!(h.roster.is_member(&erin.id()));
    assert!(!h.roster.is_member(&puppet.id()));
    assert_eq!(h.roster.denial(&fake.op_id()), Some(Denied::TicketExpired));
    assert_eq!(h.roster.ticket_holder(&ticket.id), Some(erin.id()));
}

/// M7: the hood id committed only to the founder and a salt, so a founder could sign two
/// geneses with different policies and nodes kept whichever came first. Now the id
/// commits to the whole genesis: another policy is another hood.
#[test]
fn founder_cannot_sign_a_second_genesis_with_another_policy() {
    let mut h = hood();
    let Ok(Body::Membership(Op::Genesis(g))) = h.roster.items().next().unwrap().body() else {
        panic!("the first operation is the genesis")
    };
    let other = Genesis {
        policy: Policy {
            remove: Permission::AnyMember,
            ..*h.roster.policy()
        },
        ..g
    };
    let forged = Item::sign(
        &h.members[ALICE].keys,
        &h.hood(),
        &Body::Membership(Op::Genesis(other.clone())),
    );
    let bytes = h.seal_item(ALICE, &forged);
    match h.validate_as(BOB, &bytes) {
        Verdict::Reject(Reason::InvalidOp(MembershipError::WrongGenesis)) => {}
        other => panic!("expected the second genesis refused, got {other:?}"),
    }
    // It derives another hood id altogether.
    let body = Body::Membership(Op::Genesis(other)).encode();
    assert_ne!(HoodId::derive(&h.members[ALICE].keys.id(), &body), h.hood());
    // And a log with both is this hood's with the real genesis only.
    let mut items: Vec<Item> = h.roster.items().cloned().collect();
    items.push(forged);
    assert!(Roster::from_items(&h.hood(), &items).is_err());
}

/// Strong removal: what a member does concurrently with their removal (admit a puppet,
/// promote one) is void, and so is everything that depended on it.
#[test]
fn removal_voids_the_removed_members_concurrent_acts() {
    let mut h = hood();
    promote_bob(&mut h);
    let before = h.clone();
    // Bob, about to be removed, admits a puppet and promotes Carol.
    let puppet = h.join(BOB, BOB);
    let promote_carol = h
        .roster
        .promote(&h.members[BOB].keys, h.members[CAROL].keys.id(), h.now)
        .unwrap();
    h.apply(&promote_carol);
    // The puppet admits another.
    let second = h.join(puppet, puppet);
    assert!(h.roster.is_member(&h.members[second].keys.id()));
    // Alice had not seen any of it when she removed Bob.
    let remove = before
        .roster
        .remove(
            &before.members[ALICE].keys,
            before.members[BOB].keys.id(),
            h.now,
        )
        .unwrap();
    let bytes = h.seal_item(ALICE, &remove);
    accepted(h.ingest_as(CAROL, &bytes));
    assert!(h.roster.is_removed(&h.members[BOB].keys.id()));
    assert!(!h.roster.is_member(&h.members[puppet].keys.id()));
    assert!(!h.roster.is_member(&h.members[second].keys.id()));
    assert!(!h.roster.is_admin(&h.members[CAROL].keys.id()));
    assert!(h.roster.is_member(&h.members[CAROL].keys.id()));
    assert!(h.roster.is_void(&promote_carol.op_id()));
}

/// Two admins cannot remove each other: an admin is removed only by someone admitted
/// before them, so of two concurrent removals between admins only the senior's stands,
/// whichever order they arrive in (and a removed junior admin cannot retaliate later).
#[test]
fn between_two_admins_only_the_seniors_removal_stands_in_any_order() {
    let mut h = hood();
    promote_bob(&mut h);
    let a = h
        .roster
        .remove(&h.members[ALICE].keys, h.members[BOB].keys.id(), h.now)
        .unwrap();
    // Bob's builder refuses; a hostile Bob signs it anyway.
    assert_eq!(
        h.roster
            .remove(&h.members[BOB].keys, h.members[ALICE].keys.id(), h.now)
            .unwrap_err(),
        MembershipError::Denied(Denied::Outranked)
    );
    let b = Item::sign(
        &h.members[BOB].keys,
        &h.hood(),
        &Body::Membership(Op::Remove(porchlight_proto::membership::Remove {
            parents: h.roster.heads(),
            created_at: h.now,
            target: h.members[ALICE].keys.id(),
        })),
    );
    for order in [[&a, &b], [&b, &a]] {
        let mut r = h.roster.clone();
        for op in order {
            r.insert(op).unwrap();
        }
        assert!(r.is_member(&h.members[ALICE].keys.id()));
        assert!(r.is_removed(&h.members[BOB].keys.id()));
        assert!(r.is_member(&h.members[CAROL].keys.id()));
    }
}

/// M9 (the rest is in validate.rs): a node whose clock is behind ignores a fresh
/// operation from the future instead of blaming the peer, and takes it once its clock
/// catches up.
#[test]
fn operation_from_the_future_waits_for_the_clock() {
    let h = hood();
    let op = h
        .roster
        .promote(
            &h.members[ALICE].keys,
            h.members[BOB].keys.id(),
            h.now + 3600,
        )
        .unwrap();
    assert_eq!(
        validate_op(&op.encode(), &h.roster, h.now).unwrap_err(),
        Reason::FutureTimestamp
    );
    assert!(Reason::FutureTimestamp.is_ignore());
    assert!(validate_op(&op.encode(), &h.roster, h.now + 3600).is_ok());
}

#[test]
fn operation_naming_an_unknown_parent_waits() {
    let mut h = hood();
    let mut other = h.clone();
    let first = other
        .roster
        .promote(
            &other.members[ALICE].keys,
            other.members[BOB].keys.id(),
            h.now,
        )
        .unwrap();
    other.apply(&first);
    let second = other
        .roster
        .remove(
            &other.members[BOB].keys,
            other.members[CAROL].keys.id(),
            h.now,
        )
        .unwrap();
    assert_eq!(
        validate_op(&second.encode(), &h.roster, h.now).unwrap_err(),
        Reason::MissingParents
    );
    h.apply(&first);
    assert!(validate_op(&second.encode(), &h.roster, h.now).is_ok());
}
