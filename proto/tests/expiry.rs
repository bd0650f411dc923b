//! M4 (docs/threat-model.md): ticket expiry judged against the latest time in a join's
//! causal past, through the real validation path (`validate_op`) and `Roster::insert`.

#![allow(clippy::unwrap_used)]

use porchlight_proto::item::{Body, Item};
use porchlight_proto::membership::{Denied, Join, Op};
use porchlight_proto::testkit::TestHood;
use porchlight_proto::validate::validate_op;

const ALICE: usize = 0;
const BOB: usize = 1;

/// Bob (any member may invite, the default) holds an unused ticket of his own. Two hours
/// after it expired, when the hood has moved on (Alice rekeyed), he admits someone on it,
/// dating the join before the expiry and naming the current heads. Judged on the join's
/// claimed time alone, it took effect. Now the join provably follows Alice's rekey, made
/// after the expiry: it takes no effect, at every node, whatever it claims.
#[test]
fn a_join_that_follows_an_operation_made_after_its_ticket_expired_takes_no_effect() {
    let mut h = TestHood::new(21);
    h.join(ALICE, ALICE);
    let (signed, ticket) = h.ticket(BOB);
    h.now = ticket.expires_at + 7200;
    h.rekey(ALICE);
    let mallory = h.outsider();
    let join = Item::sign(
        &h.members[BOB].keys,
        &h.hood(),
        &Body::Membership(Op::Join(Join {
            parents: h.roster.heads(),
            created_at: ticket.expires_at - 1,
            request: TestHood::request(&mallory, &signed, &ticket),
            wraps: vec![],
        })),
    );
    let verified = validate_op(&join.encode(), &h.roster, h.now).unwrap();
    h.apply(&verified.item);
    assert!(
        !h.roster.is_member(&mallory.id()),
        "a backdated join on an expired ticket admitted its joiner"
    );
    assert_eq!(h.roster.denial(&join.op_id()), Some(Denied::TicketExpired));
    // The same ticket, used before it expired (a join that follows nothing later), still
    // admits: what counts is what the join provably follows.
    let mut early = TestHood::new(21);
    early.join(ALICE, ALICE);
    let (signed, ticket) = early.ticket(BOB);
    let friend = early.outsider();
    let op = early
        .roster
        .admit(
            &early.members[BOB].keys,
            &early.members[BOB].ring,
            &TestHood::request(&friend, &signed, &ticket),
            ticket.expires_at - 1,
            &mut early.rng,
        )
        .unwrap();
    let verified = validate_op(&op.encode(), &early.roster, ticket.expires_at).unwrap();
    early.apply(&verified.item);
    assert!(early.roster.is_member(&friend.id()));
}
