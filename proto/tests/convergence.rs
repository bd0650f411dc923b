//! Convergence through validation: random histories of joins, removals, promotions and
//! rekeys by several admins, and backdated promotions that fork an admin's own chain
//! (equivocation), some concurrent (admins act on their own copies and only
//! sometimes sync), are delivered to five fresh replicas in different orders through the
//! sync path's `validate_op`, operations that arrive before their parents waiting as a
//! node's do. Every replica ends with the same roster and sealing epoch; after at most
//! one more rekey, every current member can open the sealing epoch and nobody else can.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use porchlight_proto::item::Item;
use porchlight_proto::keys::KeyRing;
use porchlight_proto::testkit::{NOW, SeededRng, TestHood};
use porchlight_proto::validate::{Reason, validate_op};
use porchlight_proto::{MemberId, MemberKeys, Roster};
use proptest::prelude::*;

/// One admin's node: its own roster copy and key ring.
#[derive(Clone)]
struct Admin {
    keys: MemberKeys,
    roster: Roster,
    ring: KeyRing,
}

/// Delivers `items` to `roster` in the given order through validation; an operation
/// waiting for a parent or its author's join is retried as more arrive.
fn deliver(roster: &mut Roster, items: &[Item]) {
    let mut waiting: Vec<&Item> = items.iter().collect();
    for _ in 0..=items.len() {
        let before = waiting.len();
        waiting.retain(|item| match validate_op(&item.encode(), roster, NOW) {
            Ok(verified) => {
                roster.insert(&verified.item).unwrap();
                false
            }
            Err(Reason::DuplicateOp) => false,
            Err(Reason::MissingParents | Reason::UnknownAuthor) => true,
            Err(other) => panic!("validation refused an honest operation: {other}"),
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

fn sync(a: &mut Admin, b: &mut Admin) {
    let from_a: Vec<Item> = a.roster.items().cloned().collect();
    let from_b: Vec<Item> = b.roster.items().cloned().collect();
    deliver(&mut b.roster, &from_a);
    deliver(&mut a.roster, &from_b);
    a.roster.learn_keys(&a.keys, &mut a.ring);
    b.roster.learn_keys(&b.keys, &mut b.ring);
}

#[derive(Debug, Clone)]
enum Step {
    Join(usize),
    Remove(usize, usize),
    Promote(usize, usize),
    Rekey(usize),
    Sync(usize, usize),
    /// An admin signs a promotion naming the heads from the start: backdated, and a fork
    /// of its own chain if it acted since (equivocation, which honest builders then stop
    /// building on).
    Fork(usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..4usize).prop_map(Step::Join),
        2 => (0..4usize, 0..64usize).prop_map(|(a, t)| Step::Remove(a, t)),
        1 => (0..4usize, 0..64usize).prop_map(|(a, t)| Step::Promote(a, t)),
        2 => (0..4usize).prop_map(Step::Rekey),
        2 => (0..4usize, 0..4usize).prop_map(|(a, b)| Step::Sync(a, b)),
        1 => (0..4usize, 0..64usize).prop_map(|(a, t)| Step::Fork(a, t)),
    ]
}

/// Runs a history; returns every operation made and every identity's keys.
fn run(seed: u64, steps: &[Step]) -> (Roster, Vec<Item>, BTreeMap<MemberId, MemberKeys>) {
    let mut h = TestHood::new(seed);
    // Four admins: Alice and three she admits and promotes.
    for _ in 0..3 {
        let i = h.join(0, 0);
        let op = h
            .roster
            .promote(&h.members[0].keys, h.members[i].keys.id(), h.now)
            .unwrap();
        h.apply(&op);
    }
    let genesis = h.roster.clone();
    let start_heads = h.roster.heads();
    let mut everyone: BTreeMap<MemberId, MemberKeys> = h
        .members
        .iter()
        .map(|m| (m.keys.id(), m.keys.clone()))
        .collect();
    let mut admins: Vec<Admin> = h
        .members
        .iter()
        .map(|m| Admin {
            keys: m.keys.clone(),
            roster: h.roster.clone(),
            ring: m.ring.clone(),
        })
        .collect();
    let mut rng = SeededRng::new(seed ^ 0x5eed);
    for step in steps {
        match *step {
            Step::Join(a) => {
                let admin = &mut admins[a];
                let joiner = MemberKeys::generate(&mut rng);
                let ticket = porchlight_proto::Ticket {
                    hood: admin.roster.hood(),
                    hood_name: "Elm Street".into(),
                    inviter: admin.keys.id(),
                    id: porchlight_proto::TicketId(rng.bytes()),
                    expires_at: NOW + 3600,
                    bootstrap: vec![],
                };
                let signed =
                    porchlight_proto::invite::SignedTicket::issue(&admin.keys, &ticket).unwrap();
                let request = TestHood::request(&joiner, &signed, &ticket);
                if let Ok(op) =
                    admin
                        .roster
                        .admit(&admin.keys, &admin.ring, &request, NOW, &mut rng)
                {
                    admin.roster.insert(&op).unwrap();
                    everyone.insert(joiner.id(), joiner);
                }
            }
            Step::Remove(a, t) => {
                let admin = &mut admins[a];
                let members: Vec<MemberId> = admin.roster.members().map(|m| m.id).collect();
                let Some(&target) = members.get(t % members.len().max(1)) else {
                    continue;
                };
                if let Ok(op) = admin.roster.remove(&admin.keys, target, NOW) {
                    admin.roster.insert(&op).unwrap();
                    if let Ok((op, _, _)) = admin.roster.rekey(&admin.keys, NOW, &mut rng) {
                        admin.roster.insert(&op).unwrap();
                    }
                }
            }
            Step::Promote(a, t) => {
                let admin = &mut admins[a];
                let members: Vec<MemberId> = admin.roster.members().map(|m| m.id).collect();
                let Some(&target) = members.get(t % members.len().max(1)) else {
                    continue;
                };
                if let Ok(op) = admin.roster.promote(&admin.keys, target, NOW) {
                    admin.roster.insert(&op).unwrap();
                }
            }
            Step::Rekey(a) => {
                let admin = &mut admins[a];
                if let Ok((op, _, _)) = admin.roster.rekey(&admin.keys, NOW, &mut rng) {
                    admin.roster.insert(&op).unwrap();
                }
            }
            Step::Sync(a, b) if a != b => {
                let (x, y) = if a < b { (a, b) } else { (b, a) };
                let (left, right) = admins.split_at_mut(y);
                sync(&mut left[x], &mut right[0]);
            }
            Step::Sync(..) => {}
            Step::Fork(a, t) => {
                let admin = &mut admins[a];
                let members: Vec<MemberId> = admin.roster.members().map(|m| m.id).collect();
                let Some(&target) = members.get(t % members.len().max(1)) else {
                    continue;
                };
                let op = Item::sign(
                    &admin.keys,
                    &admin.roster.hood(),
                    &porchlight_proto::Body::Membership(porchlight_proto::membership::Op::Promote(
                        porchlight_proto::membership::Promote {
                            parents: start_heads.clone(),
                            created_at: NOW - 1,
                            target,
                        },
                    )),
                );
                admin.roster.insert(&op).unwrap();
            }
        }
        for admin in &mut admins {
            let Admin { keys, roster, ring } = admin;
            roster.learn_keys(keys, ring);
        }
    }
    let mut all: Vec<Item> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for admin in &admins {
        for item in admin.roster.items() {
            if seen.insert(item.op_id()) {
                all.push(item.clone());
            }
        }
    }
    (genesis, all, everyone)
}

/// A deterministic shuffle of `items` by `seed`.
fn shuffled(items: &[Item], seed: u64) -> Vec<Item> {
    let mut rng = SeededRng::new(seed);
    let mut out = items.to_vec();
    for i in (1..out.len()).rev() {
        let j = (u64::from_le_bytes(rng.bytes()) % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn replicas_converge_whatever_order_operations_arrive_in(
        seed in any::<u64>(),
        steps in proptest::collection::vec(step(), 4..28),
    ) {
        let (start, all, everyone) = run(seed, &steps);
        let mut replicas: Vec<Roster> = (0..5u64)
            .map(|r| {
                let mut roster = Roster::from_genesis(start.items().next().unwrap()).unwrap();
                deliver(&mut roster, &shuffled(&all, seed.wrapping_add(r)));
                roster
            })
            .collect();
        for r in &replicas[1..] {
            prop_assert_eq!(r, &replicas[0]);
            prop_assert_eq!(r.sealing_epoch(), replicas[0].sealing_epoch());
        }
        // One more rekey where the merged roster asks for it (a node does this when it
        // sees `needs_rekey`), by its lowest-id member, delivered to every replica.
        let Some(first) = replicas[0].members().next() else {
            // Everyone was removed: nothing is left to read.
            return Ok(());
        };
        if replicas[0].needs_rekey() {
            let by = first.id;
            let (op, _, _) = replicas[0]
                .rekey(&everyone[&by], NOW, &mut SeededRng::new(seed ^ 1))
                .unwrap();
            for r in &mut replicas {
                deliver(r, std::slice::from_ref(&op));
            }
        }
        let roster = &replicas[0];
        prop_assert!(!roster.needs_rekey());
        let sealing = roster.sealing_epoch().unwrap();
        for (id, keys) in &everyone {
            let mut ring = KeyRing::new();
            roster.learn_keys(keys, &mut ring);
            prop_assert_eq!(
                ring.contains(&sealing),
                roster.is_member(id),
                "a member must read the sealing epoch, and nobody else"
            );
        }
        for r in &replicas[1..] {
            prop_assert_eq!(r, roster);
        }
    }
}
