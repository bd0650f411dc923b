//! Renames (`rename.rs`), through the real validation path (`validate_op`) and
//! `Roster::insert`: a member renames itself and every replica agrees in any arrival
//! order; a name that breaks the rules is refused before it reaches the set; nobody
//! renames anyone else (a rename has no target); an outsider's rename is refused and a
//! removed member's takes no effect; the new name is what a joiner's welcome carries.

#![allow(clippy::unwrap_used)]

use porchlight_proto::identity::{MemberId, MemberKeys};
use porchlight_proto::item::{Body, Item};
use porchlight_proto::membership::{Denied, MembershipError, Op, Roster};
use porchlight_proto::rename::Rename;
use porchlight_proto::testkit::{NOW, TestHood};
use porchlight_proto::validate::{Reason, validate_op};

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

fn hood() -> TestHood {
    let mut h = TestHood::new(31);
    h.join(ALICE, ALICE);
    h.join(ALICE, ALICE);
    h
}

fn id(h: &TestHood, i: usize) -> MemberId {
    h.members[i].keys.id()
}

fn name_of(roster: &Roster, member: &MemberId) -> String {
    roster.member(member).unwrap().name.clone()
}

/// A rename signed by `keys`, naming `parents`, as a hostile build would sign it
/// (without the builder's checks).
fn raw(h: &TestHood, keys: &MemberKeys, name: &str, parents: Vec<porchlight_proto::OpId>) -> Item {
    Item::sign(
        keys,
        &h.hood(),
        &Body::Membership(Op::Rename(Rename {
            parents,
            created_at: NOW,
            name: name.to_owned(),
        })),
    )
}

/// What a node does with an operation from the network: `validate_op`, then insert.
fn deliver(roster: &mut Roster, item: &Item) -> Result<(), Reason> {
    validate_op(&item.encode(), roster, NOW)?;
    roster.insert(item).unwrap();
    Ok(())
}

#[test]
fn a_member_renames_itself_and_every_replica_agrees_in_any_order() {
    let h = hood();
    let bob = id(&h, BOB);
    let carol = id(&h, CAROL);
    let base = h.roster.clone();
    let first = base.rename(&h.members[BOB].keys, "Bob Ross", NOW).unwrap();
    let mut after = base.clone();
    deliver(&mut after, &first).unwrap();
    assert_eq!(name_of(&after, &bob), "Bob Ross");
    // Bob renames again (after the first), and Carol renames concurrently.
    let second = after.rename(&h.members[BOB].keys, "Robert", NOW).unwrap();
    let carols = base
        .rename(&h.members[CAROL].keys, "Carol K.", NOW)
        .unwrap();
    let ops = [first, second, carols];
    let mut names = Vec::new();
    for order in [[0, 1, 2], [2, 0, 1], [0, 2, 1]] {
        let mut replica = base.clone();
        for i in order {
            deliver(&mut replica, &ops[i]).unwrap();
        }
        names.push((name_of(&replica, &bob), name_of(&replica, &carol)));
    }
    assert!(names.iter().all(|n| n == &names[0]), "{names:?}");
    assert_eq!(names[0], ("Robert".to_owned(), "Carol K.".to_owned()));
    // A full fold of the same set agrees.
    let all: Vec<&Item> = base.items().chain(ops.iter()).collect();
    let refolded = Roster::from_items(&h.hood(), all).unwrap();
    assert_eq!(name_of(&refolded, &bob), "Robert");
}

#[test]
fn two_renames_signed_concurrently_settle_alike_in_either_order() {
    let h = hood();
    let bob = id(&h, BOB);
    let parents = h.roster.parents_for(&bob);
    let a = raw(&h, &h.members[BOB].keys, "Left", parents.clone());
    let b = raw(&h, &h.members[BOB].keys, "Right", parents);
    let mut one = h.roster.clone();
    deliver(&mut one, &a).unwrap();
    deliver(&mut one, &b).unwrap();
    let mut two = h.roster.clone();
    deliver(&mut two, &b).unwrap();
    deliver(&mut two, &a).unwrap();
    assert_eq!(name_of(&one, &bob), name_of(&two, &bob));
    assert_eq!(one, two);
}

#[test]
fn a_name_that_breaks_the_rules_is_refused_and_changes_nothing() {
    let h = hood();
    let bob = id(&h, BOB);
    let keys = &h.members[BOB].keys;
    let parents = h.roster.parents_for(&bob);
    for bad in [
        String::new(),
        "   ".to_owned(),
        "x".repeat(65),
        "Bob\u{0007}".to_owned(),
        "Bob\u{202e}evil".to_owned(),
    ] {
        // The builder refuses it before signing, and says which field.
        assert!(matches!(
            h.roster.rename(keys, &bad, NOW),
            Err(MembershipError::Field(_))
        ));
        // A hostile build's signed rename is refused by validation, not taken.
        let mut roster = h.roster.clone();
        let item = raw(&h, keys, &bad, parents.clone());
        assert!(
            matches!(
                deliver(&mut roster, &item),
                Err(Reason::InvalidOp(MembershipError::Field(_)))
            ),
            "{bad:?}"
        );
        assert_eq!(roster, h.roster, "nothing changed");
        assert_eq!(name_of(&roster, &bob), "Neighbor");
    }
}

#[test]
fn nobody_renames_anyone_else_and_outsiders_and_removed_members_rename_nobody() {
    let mut h = hood();
    let alice = id(&h, ALICE);
    let carol = id(&h, CAROL);
    // A rename names no one: Alice's rename renames Alice, whatever she wants.
    let mut roster = h.roster.clone();
    let item = roster.rename(&h.members[ALICE].keys, "Carol", NOW).unwrap();
    deliver(&mut roster, &item).unwrap();
    assert_eq!(name_of(&roster, &alice), "Carol");
    assert_eq!(name_of(&roster, &carol), "Neighbor", "Carol keeps her name");

    // An outsider's rename is refused at the door.
    let stranger = h.outsider();
    let item = raw(&h, &stranger, "Mallory", h.roster.heads().to_vec());
    let mut roster = h.roster.clone();
    assert_eq!(deliver(&mut roster, &item), Err(Reason::UnknownAuthor));

    // A removed member's rename (signed after the removal) takes no effect.
    h.remove(ALICE, CAROL);
    assert_eq!(
        h.roster
            .rename(&h.members[CAROL].keys, "Back", NOW)
            .unwrap_err(),
        MembershipError::Denied(Denied::AuthorNotMember)
    );
    let item = raw(
        &h,
        &h.members[CAROL].keys,
        "Back",
        h.roster.heads().to_vec(),
    );
    let mut roster = h.roster.clone();
    deliver(&mut roster, &item).unwrap();
    assert!(!roster.took_effect(&item.op_id()));
    assert!(roster.member(&carol).is_none());
}

#[test]
fn a_joiners_welcome_carries_the_new_name() {
    let mut h = hood();
    let bob = id(&h, BOB);
    let item = h
        .roster
        .rename(&h.members[BOB].keys, "Bob Ross", NOW)
        .unwrap();
    h.apply(&item);
    let dave = h.join(ALICE, ALICE);
    let dave_id = id(&h, dave);
    let welcome = h.roster.welcome(&h.members[ALICE].keys, &dave_id).unwrap();
    let joined = Roster::from_welcome(&h.hood(), &dave_id, &welcome).unwrap();
    assert_eq!(name_of(&joined, &bob), "Bob Ross");
}
