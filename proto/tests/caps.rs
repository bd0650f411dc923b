//! The operation caps against one member (docs/threat-model.md, R2 and R3), through the
//! real validation path (`validate_op`, as sync; gossip runs the same `judge_op`) and
//! `Roster::insert`. Each failed on the caps of the first causal fold, which counted what
//! each node held: a member past the cap split nodes for good, and a removed member's
//! puppets each had a budget of their own.

#![allow(clippy::unwrap_used)]

use porchlight_proto::identity::{MemberId, MemberKeys};
use porchlight_proto::invite::{SignedTicket, Ticket, TicketId};
use porchlight_proto::item::{Body, Item, OpId};
use porchlight_proto::limits::{MAX_OPS, MAX_OPS_PER_BUDGET, MAX_OPS_PER_MEMBER, MAX_RESERVED_OPS};
use porchlight_proto::membership::{Join, Op, Promote, Roster};
use porchlight_proto::testkit::{NOW, SeededRng, TestHood};
use porchlight_proto::validate::{Reason, validate_op};

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

/// Alice (founder, admin), Bob and Carol.
fn hood() -> TestHood {
    let mut h = TestHood::new(11);
    h.join(ALICE, ALICE);
    h.join(BOB, ALICE);
    h
}

/// An operation that takes no effect (a non-admin's promotion) but counts: the cheapest
/// thing a member can sign to spend a budget.
fn filler(h: &TestHood, keys: &MemberKeys, parents: Vec<OpId>, n: u64) -> Item {
    Item::sign(
        keys,
        &h.hood(),
        &Body::Membership(Op::Promote(Promote {
            parents,
            created_at: NOW - 10_000_000 + n,
            target: MemberId([7; 32]),
        })),
    )
}

/// `n` operations by `keys`, each naming the one before (the first names `first`).
fn chain(h: &TestHood, keys: &MemberKeys, first: Vec<OpId>, n: usize) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::with_capacity(n);
    for i in 0..n {
        let parents = match out.last() {
            Some(prev) => vec![prev.op_id()],
            None => first.clone(),
        };
        out.push(filler(h, keys, parents, i as u64));
    }
    out
}

/// What a node does with operations from the network, in the order given: `validate_op`,
/// then insert; one missing a parent waits and is tried again as more arrive (as the
/// engine's waiting list does). Returns the final refusals, by op id; every operation
/// must be delivered or refused.
fn deliver(roster: &mut Roster, items: &[Item]) -> Vec<(OpId, Reason)> {
    let (refused, stuck) = try_deliver(roster, items);
    assert_eq!(stuck, 0, "{stuck} operations never delivered");
    refused
}

/// [`deliver`], also returning how many still wait for a parent (one that was refused).
fn try_deliver(roster: &mut Roster, items: &[Item]) -> (Vec<(OpId, Reason)>, usize) {
    let mut waiting: Vec<&Item> = items.iter().collect();
    let mut refused = Vec::new();
    loop {
        let before = waiting.len();
        waiting.retain(|item| match validate_op(&item.encode(), roster, NOW) {
            Ok(verified) => {
                roster.insert(&verified.item).unwrap();
                false
            }
            Err(Reason::MissingParents | Reason::UnknownAuthor) => true,
            Err(other) => {
                refused.push((item.op_id(), other));
                false
            }
        });
        if waiting.is_empty() || waiting.len() == before {
            break;
        }
    }
    (refused, waiting.len())
}

/// A deterministic shuffle.
fn shuffled(items: &[Item], seed: u64) -> Vec<Item> {
    let mut rng = SeededRng::new(seed);
    let mut out = items.to_vec();
    for i in (1..out.len()).rev() {
        let j = (u64::from_le_bytes(rng.bytes()) % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

fn ids(roster: &Roster) -> Vec<OpId> {
    let mut ids: Vec<OpId> = roster.items().map(Item::op_id).collect();
    ids.sort();
    ids
}

/// R2: Bob signs 1999 operations in a chain, then two children of the last (each his
/// 2000th along its chain) and a grandchild (his 2001st). Nodes that counted what they
/// held took whichever child came first and refused the other, for good. Judged on each
/// operation's causal past, every replica takes both children and refuses the grandchild,
/// in any order.
#[test]
fn two_children_at_the_cap_are_judged_alike_in_any_order() {
    let h = hood();
    let bob = h.members[BOB].keys.clone();
    let prefix = chain(&h, &bob, h.roster.heads(), MAX_OPS_PER_MEMBER - 1);
    let tip = prefix.last().unwrap().op_id();
    let left = filler(&h, &bob, vec![tip], 1 << 20);
    let right = filler(&h, &bob, vec![tip], 1 << 21);
    let over = filler(&h, &bob, vec![left.op_id()], 1 << 22);
    let contested = vec![left.clone(), right.clone(), over.clone()];
    let mut base = h.roster.clone();
    assert!(deliver(&mut base, &prefix).is_empty());
    let replicas: Vec<Roster> = (0..4u64)
        .map(|seed| {
            let mut r = base.clone();
            let mut order = shuffled(&contested, seed);
            if seed == 3 {
                order.reverse();
            }
            let refused = deliver(&mut r, &order);
            assert_eq!(refused, vec![(over.op_id(), Reason::TooManyOps)]);
            r
        })
        .collect();
    for r in &replicas {
        assert!(r.contains_op(&left.op_id()) && r.contains_op(&right.op_id()));
        assert!(!r.contains_op(&over.op_id()));
        assert_eq!(ids(r), ids(&replicas[0]));
        assert_eq!(r, &replicas[0]);
    }
}

/// R2: Bob signs 1500 operations in a chain, then 600 concurrent ones (2100 in all, past
/// the 2000 a node once held). Counting what it held, each node kept the first 500 of the
/// 600 it happened to receive. Now each is the 1501st along its chain: every replica takes
/// all of them whatever the order, and holds the same set and roster.
#[test]
fn concurrent_operations_past_the_cap_are_taken_alike_in_any_order() {
    let h = hood();
    let bob = h.members[BOB].keys.clone();
    let prefix = chain(&h, &bob, h.roster.heads(), 1500);
    let tip = prefix.last().unwrap().op_id();
    let wide: Vec<Item> = (0..600u64)
        .map(|i| filler(&h, &bob, vec![tip], (1 << 20) + i))
        .collect();
    let mut base = h.roster.clone();
    assert!(deliver(&mut base, &prefix).is_empty());
    let replicas: Vec<Roster> = (0..3u64)
        .map(|seed| {
            let mut r = base.clone();
            let refused = deliver(&mut r, &shuffled(&wide, seed));
            assert!(refused.is_empty(), "refused {} of them", refused.len());
            r
        })
        .collect();
    for r in &replicas {
        assert_eq!(r.ops_by(&bob.id()), 2100);
        assert_eq!(r, &replicas[0]);
    }
    // Signing operations that are not on one chain is equivocation, and shows.
    assert!(replicas[0].has_forked(&bob.id()));
    assert!(!replicas[0].has_forked(&h.members[ALICE].keys.id()));
}

/// A join on a ticket `inviter` signs, admitting fresh keys, built by hand.
fn puppet_join(
    h: &TestHood,
    inviter: &MemberKeys,
    parents: Vec<OpId>,
    rng: &mut SeededRng,
) -> (Item, MemberKeys) {
    let puppet = MemberKeys::generate(rng);
    let ticket = Ticket {
        hood: h.hood(),
        hood_name: h.roster.name().to_owned(),
        inviter: inviter.id(),
        id: TicketId(rng.bytes()),
        expires_at: NOW + 3600,
        bootstrap: vec![],
    };
    let signed = SignedTicket::issue(inviter, &ticket).unwrap();
    let request = TestHood::request(&puppet, &signed, &ticket);
    let join = Item::sign(
        inviter,
        &h.hood(),
        &Body::Membership(Op::Join(Join {
            parents,
            created_at: NOW,
            request,
            wraps: vec![],
        })),
    );
    (join, puppet)
}

/// R3: Bob, removed, signs joins for three puppets on tickets of his own, naming the
/// heads from before his removal (so the set takes them: he was known), and each puppet
/// signs 1500 operations. With a budget each, the puppets stored 4500 operations, and
/// a few such members filled the roster. Now the fold voids the joins (Bob's removal),
/// so the puppets are not admitted and their operations are charged to Bob: what the set
/// holds of Bob's and his puppets' stays within one budget, at every node, and Alice (an
/// admin) still removes and rekeys.
#[test]
fn puppets_of_a_removed_member_share_his_budget() {
    let mut h = hood();
    let before = h.roster.heads();
    h.remove(ALICE, BOB);
    let bob = h.members[BOB].keys.clone();
    let mut rng = SeededRng::new(99);
    let mut r = h.roster.clone();
    let mut puppets = Vec::new();
    for _ in 0..3 {
        let (join, puppet) = puppet_join(&h, &bob, before.clone(), &mut rng);
        assert!(deliver(&mut r, &[join]).is_empty());
        puppets.push(puppet);
    }
    // The puppets take turns, each operation naming every head (so it follows all
    // that came before), 1500 each if they could.
    let mut refused = Vec::new();
    for n in 0..4500u64 {
        let puppet = &puppets[(n % 3) as usize];
        let op = filler(&h, puppet, r.heads(), n);
        refused.extend(deliver(&mut r, &[op]));
    }
    let puppets: Vec<MemberId> = puppets.iter().map(MemberKeys::id).collect();
    let family: usize = r.ops_by(&bob.id()) + puppets.iter().map(|p| r.ops_by(p)).sum::<usize>();
    assert!(
        family <= MAX_OPS_PER_BUDGET,
        "a removed member and his puppets hold {family} operations"
    );
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|(_, why)| *why == Reason::TooManyOps));
    for p in &puppets {
        assert!(r.is_known(p) && !r.is_member(p));
        assert_eq!(r.budget_owner(p), bob.id());
    }
    // Alice removes Carol and rekeys: nothing Bob did stands in the way.
    let alice = h.members[ALICE].keys.clone();
    let removal = r.remove(&alice, h.members[CAROL].keys.id(), NOW).unwrap();
    // An honest operation never names an operation a node might not hold: none of the
    // puppets' (their admission took no effect).
    let Body::Membership(op) = removal.body().unwrap() else {
        unreachable!()
    };
    let named: Vec<MemberId> = op
        .parents()
        .iter()
        .map(|p| r.items().find(|i| i.op_id() == *p).unwrap().author)
        .collect();
    assert!(named.iter().all(|a| !puppets.contains(a)), "{named:?}");
    assert!(deliver(&mut r, &[removal]).is_empty());
    let (rekey, _, _) = r.rekey(&alice, NOW, &mut rng).unwrap();
    assert!(deliver(&mut r, std::slice::from_ref(&rekey)).is_empty());
    assert!(r.took_effect(&rekey.op_id()));
}

/// R3: when members together fill the roster to its cap, a non-admin's operation is
/// refused, and an admin's removal and rekey are still taken (from the reserve).
#[test]
fn a_full_roster_keeps_room_for_an_admins_removal_and_rekey() {
    let mut h = hood();
    // Ten members, each of whom signs up to 2000 operations, one chain each.
    let fillers: Vec<usize> = (0..10).map(|_| h.join(ALICE, ALICE)).collect();
    let mut r = h.roster.clone();
    let mut n = 0u64;
    while r.len() < MAX_OPS {
        let by = &h.members[fillers[(n as usize) % fillers.len()]].keys;
        let op = filler(&h, by, r.heads(), n);
        assert!(deliver(&mut r, &[op]).is_empty(), "refused at {}", r.len());
        n += 1;
    }
    let carol = h.members[CAROL].keys.clone();
    let late = filler(&h, &carol, r.heads(), n);
    assert_eq!(
        deliver(&mut r, &[late]),
        vec![(filler(&h, &carol, r.heads(), n).op_id(), Reason::RosterFull)]
    );
    let alice = h.members[ALICE].keys.clone();
    let removal = r.remove(&alice, carol.id(), NOW).unwrap();
    assert!(deliver(&mut r, &[removal]).is_empty());
    assert!(r.is_removed(&carol.id()));
    let (rekey, _, _) = r.rekey(&alice, NOW, &mut SeededRng::new(5)).unwrap();
    assert!(deliver(&mut r, std::slice::from_ref(&rekey)).is_empty());
    assert!(r.took_effect(&rekey.op_id()));
    assert!(r.len() < MAX_OPS + MAX_RESERVED_OPS);
}
