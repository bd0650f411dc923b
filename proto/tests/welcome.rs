//! The compact `Welcome`: a checkpoint signed by the admitter, the joiner's own join,
//! and as much of the log as fits; sync brings the rest, and the joiner checks the
//! checkpoint against it. Issue #14, M2 and R9 in docs/threat-model.md.
//!
//! The second half attacks it as one hostile member would: the admitter signs the
//! checkpoint its joiner starts from, and the joiner takes every operation it covers
//! without checking author or parents (`validate::judge_op`). What that word may and may
//! not buy the admitter, through the real paths. docs/threat-model.md, D20.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use porchlight_proto::checkpoint::Holders;
use porchlight_proto::item::{Body, Item, OpId};
use porchlight_proto::keys::KeyRing;
use porchlight_proto::limits::WELCOME_TARGET_BYTES;
use porchlight_proto::membership::{MembershipError, Op, Promote, Roster};
use porchlight_proto::testkit::{NOW, SeededRng, TestHood};
use porchlight_proto::validate::{Reason, validate_op};
use porchlight_proto::{JoinResponse, MemberId, MemberKeys, Welcome};

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

/// Alice (founder), Bob and Carol; Bob is removed by Alice, and Dave is about to join.
fn hood_with_history() -> (TestHood, usize) {
    let mut h = TestHood::new(11);
    h.join(ALICE, ALICE);
    h.join(ALICE, ALICE);
    h.rekey(ALICE);
    h.remove(ALICE, BOB);
    let dave = h.join(CAROL, ALICE);
    (h, dave)
}

fn welcome_for(h: &TestHood, admitter: usize, joiner: usize) -> Welcome {
    h.roster
        .welcome(&h.members[admitter].keys, &h.members[joiner].keys.id())
        .unwrap()
}

/// `welcome` with its checkpoint signed again by member `by`, over the join it carries
/// second (as a welcome does).
fn signed_by(h: &TestHood, by: usize, mut welcome: Welcome) -> Welcome {
    let join = welcome.ops[1].op_id();
    welcome.signature = h.members[by].keys.sign(&[&Welcome::signed_digest(
        &h.hood(),
        &join,
        &welcome.checkpoint,
    )]);
    welcome
}

/// Feeds `items` to `roster` through sync's validation, as a node does, until none is
/// left that can be taken; returns the verdicts on what was never taken.
fn sync_refused(roster: &mut Roster, items: &[Item]) -> Vec<Reason> {
    let mut left: Vec<Vec<u8>> = items.iter().map(Item::encode).collect();
    let mut refused = Vec::new();
    for _ in 0..=items.len() {
        let before = left.len();
        left.retain(|bytes| match validate_op(bytes, roster, NOW) {
            Ok(op) => {
                roster.insert(&op.item).unwrap();
                false
            }
            Err(Reason::DuplicateOp) => false,
            Err(Reason::MissingParents | Reason::UnknownAuthor) => true,
            Err(other) => {
                refused.push(other);
                false
            }
        });
        if left.is_empty() || left.len() == before {
            break;
        }
    }
    for bytes in &left {
        refused.push(validate_op(bytes, roster, NOW).unwrap_err());
    }
    refused
}

/// [`sync_refused`] for honest operations: every one is taken.
fn sync_into(roster: &mut Roster, items: &[Item]) {
    let refused = sync_refused(roster, items);
    assert!(
        refused.is_empty(),
        "sync refused honest operations: {refused:?}"
    );
}

#[test]
fn a_small_hoods_welcome_carries_the_whole_log_and_is_checked_at_once() {
    let (h, dave) = hood_with_history();
    let welcome = welcome_for(&h, ALICE, dave);
    assert_eq!(welcome.ops.len(), h.roster.len());
    let roster = Roster::from_welcome(&h.hood(), &h.members[dave].keys.id(), &welcome).unwrap();
    assert!(!roster.is_provisional());
    assert_eq!(roster.checkpoint_held(), Some(true));
    assert_eq!(roster.heads(), h.roster.heads());
    assert_eq!(
        roster.members().collect::<Vec<_>>(),
        h.roster.members().collect::<Vec<_>>()
    );
    assert_eq!(roster.sealing_epoch(), h.roster.sealing_epoch());
}

/// A joiner whose welcome lacks part of the log starts from the checkpoint: it reads
/// (it has the keys), refuses to make operations, takes the history by sync in any
/// order, and then holds exactly the roster everyone else does.
#[test]
fn a_joiner_starts_from_the_checkpoint_and_checks_it_once_history_arrives() {
    let (mut h, dave) = hood_with_history();
    let mut welcome = welcome_for(&h, ALICE, dave);
    let dave_id = h.members[dave].keys.id();
    // Keep only the genesis and Dave's join (what a large hood's welcome holds).
    let full = welcome.ops.clone();
    welcome.ops.truncate(2);
    let mut roster = Roster::from_welcome(&h.hood(), &dave_id, &welcome).unwrap();
    assert!(roster.is_provisional());
    assert_eq!(roster.history_missing(), h.roster.len() - 2);
    assert!(roster.is_member(&dave_id));
    assert!(!roster.is_member(&h.members[BOB].keys.id()));
    assert_eq!(roster.sealing_epoch(), h.roster.sealing_epoch());
    let mut ring = KeyRing::new();
    roster.learn_keys(&h.members[dave].keys, &mut ring);
    assert!(ring.contains(&roster.sealing_epoch().unwrap()));
    // No operation while provisional.
    let mut rng = SeededRng::new(5);
    assert!(matches!(
        roster.rekey(&h.members[dave].keys, NOW, &mut rng),
        Err(MembershipError::Provisional { .. })
    ));
    // Meanwhile the hood goes on: Carol rekeys; the joiner takes it on top of the
    // checkpoint.
    h.rekey(CAROL);
    let newest: Vec<Item> = h.roster.items().cloned().collect();
    let rekey = newest.last().unwrap().clone();
    sync_into(&mut roster, std::slice::from_ref(&rekey));
    assert_eq!(roster.sealing_epoch(), h.roster.sealing_epoch());
    // The history, newest first (the worst order for parents).
    let mut history: Vec<Item> = full[2..].to_vec();
    history.reverse();
    sync_into(&mut roster, &history);
    assert!(!roster.is_provisional());
    assert_eq!(roster.checkpoint_held(), Some(true));
    assert_eq!(roster.heads(), h.roster.heads());
    assert_eq!(
        roster.members().collect::<Vec<_>>(),
        h.roster.members().collect::<Vec<_>>()
    );
    assert_eq!(roster.sealing_epoch(), h.roster.sealing_epoch());
    assert!(roster.rekey(&h.members[dave].keys, NOW, &mut rng).is_ok());
}

/// The checkpoint is signed by the member whose join admits the joiner: changed in
/// transit (or by anyone else), the welcome is refused.
#[test]
fn a_tampered_checkpoint_is_refused() {
    let (h, dave) = hood_with_history();
    let dave_id = h.members[dave].keys.id();
    let mut welcome = welcome_for(&h, ALICE, dave);
    welcome
        .checkpoint
        .members
        .retain(|m| m.id != h.members[CAROL].keys.id());
    assert_eq!(
        Roster::from_welcome(&h.hood(), &dave_id, &welcome).unwrap_err(),
        MembershipError::BadWelcomeSignature
    );
    // Signed by Carol, who did not admit Dave: the same.
    let welcome = signed_by(&h, CAROL, welcome_for(&h, ALICE, dave));
    assert_eq!(
        Roster::from_welcome(&h.hood(), &dave_id, &welcome).unwrap_err(),
        MembershipError::BadWelcomeSignature
    );
    // A welcome for someone else (whose join it does not carry).
    let mut welcome = welcome_for(&h, ALICE, dave);
    welcome.ops.truncate(2);
    assert_eq!(
        Roster::from_welcome(&h.hood(), &h.members[CAROL].keys.id(), &welcome).unwrap_err(),
        MembershipError::NotWelcomed
    );
}

/// A hostile admitter signs a false checkpoint: Bob, whom Alice removed, is still a
/// member in it, and the epoch he holds is called clean. With the whole log in the
/// welcome, the joiner refuses it at once; without, the joiner is provisional (it
/// posts nothing, so it seals nothing under Bob's epoch) and, once the history is
/// here, follows the history and says the checkpoint did not hold.
#[test]
fn a_false_checkpoint_is_found_out_by_the_history() {
    let (h, dave) = hood_with_history();
    let dave_id = h.members[dave].keys.id();
    let bob = h.members[BOB].keys.clone();
    let lie = |mut welcome: Welcome| {
        let c = &mut welcome.checkpoint;
        c.removed.retain(|r| *r != bob.id());
        let at = c
            .members
            .iter()
            .position(|m| m.id > bob.id())
            .unwrap_or(c.members.len());
        let mut fake = c.members[0].clone();
        fake.id = bob.id();
        fake.exchange_key = bob.exchange_key();
        fake.admin = false;
        c.members.insert(at, fake);
        // Holder bitmaps are over the member list: one more member, one more bit, 0.
        for e in &mut c.epochs {
            if let Holders::Members(bits) = &mut e.holders {
                let old: Vec<bool> = (0..c.members.len() - 1)
                    .map(|i| bits[i / 8] & (1 << (i % 8)) != 0)
                    .collect();
                let mut new = vec![0u8; c.members.len().div_ceil(8)];
                for (i, held) in old.iter().enumerate() {
                    let j = if i >= at { i + 1 } else { i };
                    if *held {
                        new[j / 8] |= 1 << (j % 8);
                    }
                }
                *bits = new;
            }
        }
        // Tainted only by Bob: call it clean, held by everyone.
        for e in &mut c.epochs {
            if e.holders == Holders::Tainted(bob.id()) {
                e.holders = Holders::Members(vec![0xff; c.members.len().div_ceil(8)]);
                if !c.members.len().is_multiple_of(8)
                    && let Holders::Members(bits) = &mut e.holders
                {
                    *bits.last_mut().unwrap() = (1u8 << (c.members.len() % 8)) - 1;
                }
            }
        }
        signed_by(&h, ALICE, welcome)
    };
    let whole = lie(welcome_for(&h, ALICE, dave));
    assert_eq!(
        Roster::from_welcome(&h.hood(), &dave_id, &whole).unwrap_err(),
        MembershipError::CheckpointContradicted
    );
    let mut partial = whole.clone();
    let history = partial.ops.split_off(2);
    let mut roster = Roster::from_welcome(&h.hood(), &dave_id, &partial).unwrap();
    assert!(
        roster.is_member(&bob.id()),
        "the lie holds while provisional"
    );
    let mut rng = SeededRng::new(9);
    assert!(matches!(
        roster.rekey(&h.members[dave].keys, NOW, &mut rng),
        Err(MembershipError::Provisional { .. })
    ));
    sync_into(&mut roster, &history);
    assert_eq!(roster.checkpoint_held(), Some(false));
    assert!(!roster.is_member(&bob.id()));
    assert!(roster.is_removed(&bob.id()));
    assert_eq!(roster.sealing_epoch(), h.roster.sealing_epoch());
}

/// An operation the checkpoint does not cover has no place in a welcome; malformed
/// checkpoints are refused with a reason.
#[test]
fn malformed_welcomes_are_refused() {
    let (mut h, dave) = hood_with_history();
    let dave_id = h.members[dave].keys.id();
    let welcome = welcome_for(&h, ALICE, dave);
    h.rekey(CAROL);
    let mut extra = welcome.clone();
    extra.ops.push(h.roster.items().last().unwrap().clone());
    assert_eq!(
        Roster::from_welcome(&h.hood(), &dave_id, &extra).unwrap_err(),
        MembershipError::UncoveredOp
    );
    let mut unsorted = welcome.clone();
    unsorted.checkpoint.covered.reverse();
    let mut no_heads = welcome.clone();
    no_heads.checkpoint.heads.clear();
    let mut short_bits = welcome.clone();
    for e in &mut short_bits.checkpoint.epochs {
        if let Holders::Members(bits) = &mut e.holders {
            bits.clear();
        }
    }
    let mut stranger_taint = welcome.clone();
    stranger_taint.checkpoint.epochs[0].holders = Holders::Tainted(MemberId([7; 32]));
    for bad in [unsorted, no_heads, short_bits, stranger_taint] {
        assert!(matches!(
            Roster::from_welcome(&h.hood(), &dave_id, &signed_by(&h, ALICE, bad)).unwrap_err(),
            MembershipError::BadCheckpoint(_)
        ));
    }
}

/// The bound of issue #14: a hood of 1000 members after 1000 rekeys (each wrapped to
/// every member: about 110 MB of log) welcomes its 1000th member in at most 1 MiB, and
/// the joiner starts from it: a member, with the sealing epoch's key, provisional until
/// sync brings the log, then holding the same roster as the admitter.
#[test]
fn a_thousand_members_after_a_thousand_rekeys_welcome_in_a_mebibyte() {
    const MEMBERS: usize = 1000;
    const REKEYS: usize = 1000;
    let mut rng = SeededRng::new(1000);
    let founder = MemberKeys::generate(&mut rng);
    let new = porchlight_proto::membership::found(
        &founder,
        "Elm Street",
        "Alice",
        Default::default(),
        NOW,
        &mut rng,
    )
    .unwrap();
    let mut roster = new.roster().unwrap();
    let mut ring = KeyRing::new();
    roster.learn_keys(&founder, &mut ring);
    let mut log: Vec<Item> = roster.items().cloned().collect();
    let admit = |roster: &mut Roster, ring: &KeyRing, rng: &mut SeededRng, name: &str| {
        let keys = MemberKeys::generate(rng);
        let ticket = porchlight_proto::Ticket {
            hood: roster.hood(),
            hood_name: roster.name().to_owned(),
            inviter: founder.id(),
            id: porchlight_proto::TicketId(rng.bytes()),
            expires_at: NOW + 3600,
            bootstrap: vec![],
        };
        let signed = porchlight_proto::invite::SignedTicket::issue(&founder, &ticket).unwrap();
        let request = porchlight_proto::JoinRequest::new(&keys, signed, &ticket, name).unwrap();
        let join = roster.admit(&founder, ring, &request, NOW, rng).unwrap();
        roster.insert(&join).unwrap();
        (keys, join)
    };
    let mut neighbors = Vec::new();
    for i in 1..MEMBERS - 1 {
        let (keys, join) = admit(&mut roster, &ring, &mut rng, &format!("Neighbor {i}"));
        neighbors.push(keys);
        log.push(join);
    }
    // Two members share the rekeys: one member's chain holds at most
    // `MAX_OPS_PER_MEMBER` operations, and the founder's 998 joins, 1000 rekeys and the
    // newcomer's join would be 2001 with the genesis and the first rekey (the newcomer's
    // join then past the cap: refused by every node, dropped by the joiner).
    for i in 0..REKEYS {
        let by = if i % 2 == 0 { &founder } else { &neighbors[0] };
        let (rekey, key, _) = roster.rekey(by, NOW, &mut rng).unwrap();
        roster.insert(&rekey).unwrap();
        ring.insert(key);
        log.push(rekey);
    }
    let log_bytes: usize = log.iter().map(|i| i.encode().len()).sum();
    assert!(
        log_bytes > 100 * 1024 * 1024,
        "the log is {log_bytes} bytes"
    );
    let (joiner, join) = admit(&mut roster, &ring, &mut rng, "Newcomer");
    log.push(join);
    assert_eq!(roster.members().count(), MEMBERS);

    let welcome = roster.welcome(&founder, &joiner.id()).unwrap();
    let checkpoint_bytes = welcome.checkpoint.encode().len();
    let bytes = JoinResponse::Welcome(Box::new(welcome)).encode();
    eprintln!(
        "welcome: {} bytes, its checkpoint {checkpoint_bytes}, for {MEMBERS} members after \
         {REKEYS} rekeys (log: {log_bytes} bytes)",
        bytes.len()
    );
    assert!(checkpoint_bytes <= WELCOME_TARGET_BYTES / 2);
    assert!(
        bytes.len() <= WELCOME_TARGET_BYTES,
        "the welcome is {} bytes",
        bytes.len()
    );
    let Ok(JoinResponse::Welcome(welcome)) = JoinResponse::decode(&bytes) else {
        panic!("the welcome decodes");
    };
    let mut joined = Roster::from_welcome(&roster.hood(), &joiner.id(), &welcome).unwrap();
    assert!(joined.is_provisional());
    assert_eq!(joined.members().count(), MEMBERS);
    assert!(joined.is_member(&joiner.id()));
    assert_eq!(joined.sealing_epoch(), roster.sealing_epoch());
    let mut joiner_ring = KeyRing::new();
    joined.learn_keys(&joiner, &mut joiner_ring);
    assert!(joiner_ring.contains(&joined.sealing_epoch().unwrap()));

    // Sync brings the rest, in id order (not causal order), through validation.
    let have: BTreeSet<_> = welcome.ops.iter().map(Item::op_id).collect();
    let mut rest: Vec<Item> = log
        .into_iter()
        .filter(|i| !have.contains(&i.op_id()))
        .collect();
    rest.sort_by_key(Item::op_id);
    sync_into(&mut joined, &rest);
    assert!(!joined.is_provisional());
    assert_eq!(joined.checkpoint_held(), Some(true));
    assert_eq!(joined.heads(), roster.heads());
    assert_eq!(joined.sealing_epoch(), roster.sealing_epoch());
    assert_eq!(
        joined.members().collect::<Vec<_>>(),
        roster.members().collect::<Vec<_>>()
    );
    assert!(matches!(
        joined.items().next().map(|i| i.body()),
        Some(Ok(Body::Membership(Op::Genesis(_))))
    ));
}

/// Everything public a roster derives from its set, to compare two rosters of one set.
fn derived(roster: &Roster, ids: &[porchlight_proto::item::OpId]) -> String {
    let heads = roster.heads();
    let members: Vec<MemberId> = roster.members().map(|m| m.id).collect();
    let mut out = format!(
        "members {:?}\nremoved {:?}\nheads {heads:?}\nepochs {:?}\nsealing {:?} {}\ncausal {}\n",
        roster.members().collect::<Vec<_>>(),
        roster.removed().collect::<Vec<_>>(),
        roster.epochs().collect::<Vec<_>>(),
        roster.sealing_epoch(),
        roster.needs_rekey(),
        roster.causal_time(&heads),
    );
    for id in ids {
        out += &format!(
            "op {id:?}: held {} effect {} void {} denial {:?}\n",
            roster.contains_op(id),
            roster.took_effect(id),
            roster.is_void(id),
            roster.denial(id)
        );
    }
    for m in &members {
        out += &format!(
            "member {m:?}: place {} ops {} budget {} forked {} known {}\n",
            roster.chain_place(m, &heads),
            roster.ops_by(m),
            roster.budget_used(&roster.budget_owner(m)),
            roster.has_forked(m),
            roster.is_known(m)
        );
    }
    out
}

/// A provisional roster folds what arrives on top of the checkpoint (incrementally when
/// an operation names every head, as a rekey made after the checkpoint does). Once the
/// history is whole it must hold exactly what a node that had the same operations all
/// along holds: the same effects, voids, heads and caps' counts, also when a removal
/// made concurrently with the checkpoint voids an admission the checkpoint took, and the
/// history arrives children first (chain places and causal times computed without
/// parents).
#[test]
fn a_provisional_roster_ends_where_a_full_fold_of_the_same_operations_does() {
    let mut h = TestHood::new(23);
    let bob = h.join(ALICE, ALICE);
    let carol = h.join(ALICE, ALICE);
    h.rekey(bob);
    h.rekey(carol);
    // Alice removes Carol before she hears that Carol admitted Erin: the removal voids
    // that admission wherever both are held.
    let before = h.roster.clone();
    let carol_id = h.members[carol].keys.id();
    let removal = before
        .remove(&h.members[ALICE].keys, carol_id, NOW)
        .unwrap();
    let erin = h.join(ALICE, carol);
    h.rekey(erin);
    h.rekey(bob);
    let dave = h.join(ALICE, ALICE);
    let dave_id = h.members[dave].keys.id();
    let mut welcome = welcome_for(&h, ALICE, dave);
    let history: Vec<Item> = welcome.ops[2..].iter().rev().cloned().collect();
    welcome.ops.truncate(2);
    let mut joiner = Roster::from_welcome(&h.hood(), &dave_id, &welcome).unwrap();
    assert!(joiner.is_provisional());
    assert!(joiner.is_member(&h.members[erin].keys.id()));

    // Everyone else: the checkpoint's set, the removal, then Bob's rekey after both.
    let mut full = h.roster.clone();
    full.insert(&removal).unwrap();
    assert!(!full.is_member(&h.members[erin].keys.id()));
    let mut rng = SeededRng::new(9);
    let (rekey, _, _) = full.rekey(&h.members[bob].keys, NOW + 1, &mut rng).unwrap();
    full.insert(&rekey).unwrap();

    sync_into(&mut joiner, std::slice::from_ref(&removal));
    // Bob's rekey names every head the joiner has: applied on top, not refolded.
    let parents: BTreeSet<_> = match rekey.body().unwrap() {
        Body::Membership(op) => op.parents().iter().copied().collect(),
        _ => unreachable!(),
    };
    let joiner_heads: BTreeSet<_> = joiner.heads().into_iter().collect();
    assert_eq!(parents, joiner_heads);
    sync_into(&mut joiner, std::slice::from_ref(&rekey));
    assert!(joiner.is_provisional());
    sync_into(&mut joiner, &history);
    assert!(!joiner.is_provisional());
    assert_eq!(joiner.checkpoint_held(), Some(true));

    let ids: Vec<_> = full.items().map(Item::op_id).collect();
    assert_eq!(joiner.len(), full.len());
    assert_eq!(derived(&joiner, &ids), derived(&full, &ids));
    let rebuilt = Roster::from_items(&h.hood(), full.items()).unwrap();
    assert_eq!(derived(&rebuilt, &ids), derived(&full, &ids));
}

/// A joiner that gives up on its checkpoint with part of the history missing holds what
/// a roster built from its remaining operations holds (heads, who is known, chain
/// places, effects), and once the missing operation and those it dropped arrive after
/// all, exactly what everyone holds.
#[test]
fn giving_up_leaves_the_roster_a_fold_of_what_it_holds_and_late_history_is_taken() {
    let mut h = TestHood::new(29);
    let bob = h.join(ALICE, ALICE);
    h.rekey(bob);
    let carol = h.join(ALICE, bob);
    h.rekey(carol);
    h.rekey(bob);
    let dave = h.join(ALICE, ALICE);
    let dave_id = h.members[dave].keys.id();
    let mut welcome = welcome_for(&h, ALICE, dave);
    let history: Vec<Item> = welcome.ops.split_off(2);
    // Carol's join never arrives: her rekey and all after it cannot be taken.
    let carol_join = history
        .iter()
        .find(|i| {
            matches!(i.body(), Ok(Body::Membership(Op::Join(j)))
                if j.request.joiner == h.members[carol].keys.id())
        })
        .unwrap()
        .clone();
    let arrived: Vec<Item> = history
        .iter()
        .filter(|i| i.op_id() != carol_join.op_id())
        .rev()
        .cloned()
        .collect();
    let mut joiner = Roster::from_welcome(&h.hood(), &dave_id, &welcome).unwrap();
    sync_into(&mut joiner, &arrived);
    assert_eq!(joiner.history_missing(), 1);
    joiner.give_up_checkpoint();
    assert!(!joiner.is_provisional());
    assert_eq!(joiner.checkpoint_held(), Some(false));
    let strays = joiner.take_strays();
    assert!(!strays.is_empty());

    let all: Vec<_> = h.roster.items().map(Item::op_id).collect();
    let rebuilt = Roster::from_items(&h.hood(), joiner.items()).unwrap();
    assert_eq!(derived(&joiner, &all), derived(&rebuilt, &all));
    assert!(!joiner.is_known(&h.members[carol].keys.id()));
    // Dave's own join follows Carol's: without it, he is not admitted either.
    assert!(!joiner.is_member(&dave_id));

    // The rest arrives after all, by ordinary validation.
    let mut late = vec![carol_join];
    late.extend(strays);
    sync_into(&mut joiner, &late);
    assert_eq!(joiner.len(), h.roster.len());
    assert_eq!(derived(&joiner, &all), derived(&h.roster, &all));
    assert!(joiner.is_member(&dave_id));
}

/// While provisional a joiner judges the per-member cap on chain places computed without
/// the covered history that has not arrived (too low), so it takes an operation past the
/// cap that every other node refuses. Once the history is here the places are computed
/// again, parents first, and that operation leaves as a stray: the joiner ends with the
/// set everyone holds. It is not the admitter's doing, so the checkpoint still held.
#[test]
fn an_operation_past_the_cap_taken_while_provisional_leaves_and_the_checkpoint_held() {
    use porchlight_proto::limits::MAX_OPS_PER_MEMBER;
    use porchlight_proto::membership::Promote;
    let mut h = TestHood::new(37);
    let bob = h.join(ALICE, ALICE);
    let hood = h.hood();
    let alice_id = h.members[ALICE].keys.id();
    let bob_keys = h.members[bob].keys.clone();
    let chained = |parents: Vec<porchlight_proto::item::OpId>| {
        Item::sign(
            &bob_keys,
            &hood,
            &Body::Membership(Op::Promote(Promote {
                parents,
                created_at: NOW,
                target: alice_id,
            })),
        )
    };
    // Bob's chain, up to the cap.
    let mut last = h.roster.heads();
    let mut chain = Vec::new();
    for _ in 0..MAX_OPS_PER_MEMBER {
        let op = chained(last);
        h.roster.insert(&op).unwrap();
        last = vec![op.op_id()];
        chain.push(op);
    }
    let past = chained(last);
    assert!(matches!(
        validate_op(&past.encode(), &h.roster, NOW),
        Err(Reason::TooManyOps)
    ));
    let dave = h.join(ALICE, ALICE);
    let dave_id = h.members[dave].keys.id();
    let mut welcome = welcome_for(&h, ALICE, dave);
    let history: Vec<Item> = welcome.ops.split_off(2);
    let mut joiner = Roster::from_welcome(&hood, &dave_id, &welcome).unwrap();
    // Bob's latest arrives before the rest of his chain, then the operation past it.
    sync_into(&mut joiner, std::slice::from_ref(chain.last().unwrap()));
    sync_into(&mut joiner, std::slice::from_ref(&past));
    assert!(joiner.contains_op(&past.op_id()), "taken while provisional");
    let rest: Vec<Item> = history.into_iter().rev().collect();
    sync_into(&mut joiner, &rest);
    assert!(!joiner.is_provisional());
    assert!(!joiner.contains_op(&past.op_id()));
    let strays: Vec<_> = joiner.take_strays().iter().map(Item::op_id).collect();
    assert_eq!(strays, vec![past.op_id()]);
    let all: Vec<_> = h.roster.items().map(Item::op_id).collect();
    assert_eq!(derived(&joiner, &all), derived(&h.roster, &all));
    assert_eq!(
        joiner.checkpoint_held(),
        Some(true),
        "the admitter's checkpoint was true"
    );
}

// ---------------------------------------------------------------------------------------
// One hostile admitter
// ---------------------------------------------------------------------------------------

/// Alice adds `id` to what her checkpoint covers, and to its heads when `head`.
fn cover(h: &TestHood, mut w: Welcome, id: OpId, head: bool) -> Welcome {
    let c = &mut w.checkpoint;
    let at = c.covered.binary_search(&id).unwrap_err();
    c.covered.insert(at, id);
    if head {
        let at = c.heads.binary_search(&id).unwrap_err();
        c.heads.insert(at, id);
    }
    signed_by(h, ALICE, w)
}

/// A `Promote` signed by `keys` naming `parents` (whoever `keys` is).
fn promote(h: &TestHood, keys: &MemberKeys, parents: Vec<OpId>, target: usize) -> Item {
    Item::sign(
        keys,
        &h.hood(),
        &Body::Membership(Op::Promote(Promote {
            parents,
            created_at: NOW,
            target: h.members[target].keys.id(),
        })),
    )
}

/// `op` signed again by `keys`, naming `parents`: a hostile member names whatever it
/// likes (the builders name only admitted authors' operations).
fn naming(h: &TestHood, keys: &MemberKeys, op: &Item, parents: Vec<OpId>) -> Item {
    let Ok(Body::Membership(mut op)) = op.body() else {
        panic!("a membership operation");
    };
    match &mut op {
        Op::Join(o) => o.parents = parents,
        Op::Remove(o) => o.parents = parents,
        Op::Promote(o) => o.parents = parents,
        Op::Rekey(o) => o.parents = parents,
        Op::RemoveVote(o) => o.parents = parents,
        Op::Rotate(o) => o.parents = parents,
        Op::Rename(o) => o.parents = parents,
        Op::Genesis(_) => panic!("not a genesis"),
    }
    Item::sign(keys, &h.hood(), &Body::Membership(op))
}

fn op_ids(roster: &Roster) -> Vec<OpId> {
    let mut ids: Vec<OpId> = roster.items().map(Item::op_id).collect();
    ids.sort();
    ids
}

/// Alice signs a true checkpoint of a set she alone holds: a `Promote` by an outsider
/// (nobody takes it: no join admits its author) and, after it, her removal of Carol.
/// The rest of the hood never takes either (unknown author; missing parent), so without
/// a check the joiner would see Carol removed for good, seal under a rekey nobody else
/// can take, and never agree with anyone on the set. Once the history is here, the
/// joiner drops both and holds what everyone holds.
#[test]
fn operations_only_the_admitter_holds_leave_the_joiner_once_the_history_is_here() {
    let (mut h, dave) = hood_with_history();
    let dave_id = h.members[dave].keys.id();
    let carol = h.members[CAROL].keys.id();
    let outsider = h.outsider();
    // Alice's private copy of the log: `Roster::insert` takes any well-formed operation.
    let mut private = h.roster.clone();
    let planted = promote(&h, &outsider, private.heads(), BOB);
    private.insert(&planted).unwrap();
    let removal = private.remove(&h.members[ALICE].keys, carol, NOW).unwrap();
    let removal = naming(&h, &h.members[ALICE].keys, &removal, private.heads());
    private.insert(&removal).unwrap();
    assert!(!private.is_member(&carol));
    let mut welcome = private.welcome(&h.members[ALICE].keys, &dave_id).unwrap();
    let history = welcome.ops.split_off(2);
    assert!(history.contains(&removal) && history.contains(&planted));

    // The rest of the hood never takes them, whatever it is sent.
    let mut carols_view = h.roster.clone();
    let refused = sync_refused(&mut carols_view, &[planted.clone(), removal.clone()]);
    assert_eq!(
        refused,
        vec![Reason::UnknownAuthor, Reason::MissingParents],
        "an honest member refuses both"
    );

    let mut roster = Roster::from_welcome(&h.hood(), &dave_id, &welcome).unwrap();
    assert!(roster.is_provisional());
    assert!(
        !roster.is_member(&carol),
        "provisional, the joiner reads the admitter's word"
    );
    let refused = sync_refused(&mut roster, &history);
    assert!(
        refused.is_empty(),
        "covered operations are all taken: {refused:?}"
    );
    assert!(!roster.is_provisional());
    assert_eq!(
        roster.checkpoint_held(),
        Some(false),
        "a checkpoint over operations no member takes does not hold"
    );
    assert!(
        roster.is_member(&carol),
        "Carol stays a member, as everywhere"
    );
    assert!(!roster.contains_op(&planted.op_id()));
    assert!(!roster.contains_op(&removal.op_id()));
    assert_eq!(
        roster
            .take_strays()
            .iter()
            .map(Item::op_id)
            .collect::<Vec<_>>(),
        {
            let mut ids = vec![planted.op_id(), removal.op_id()];
            ids.sort();
            ids
        }
    );
    assert_eq!(op_ids(&roster), op_ids(&h.roster));
    assert_eq!(roster.heads(), h.roster.heads());
    assert_eq!(
        roster.members().collect::<Vec<_>>(),
        h.roster.members().collect::<Vec<_>>()
    );
    assert_eq!(roster.sealing_epoch(), h.roster.sealing_epoch());
    // What the joiner makes next, everyone takes.
    let mut rng = SeededRng::new(3);
    let (rekey, _, _) = roster.rekey(&h.members[dave].keys, NOW, &mut rng).unwrap();
    assert!(validate_op(&rekey.encode(), &h.roster, NOW).is_ok());
    h.apply(&rekey);
    roster.insert(&rekey).unwrap();
    assert_eq!(roster.sealing_epoch(), h.roster.sealing_epoch());
}

/// Alice covers an operation whose parent nobody holds (by an outsider, so it changes
/// nothing the checkpoint states). The joiner takes it at the checkpoint's word; a set
/// holding it is not causally complete, which is how a node's store must be to load
/// again (`Roster::from_items`, `Engine::load`): without a check, the joiner's data dir
/// would never start again.
#[test]
fn a_covered_operation_without_its_parent_does_not_stay_to_break_the_next_start() {
    let (mut h, dave) = hood_with_history();
    let dave_id = h.members[dave].keys.id();
    let outsider = h.outsider();
    let orphan = promote(&h, &outsider, vec![OpId([0x5a; 32])], CAROL);
    let mut welcome = h.roster.welcome(&h.members[ALICE].keys, &dave_id).unwrap();
    let mut history = welcome.ops.split_off(2);
    let welcome = cover(&h, welcome, orphan.op_id(), true);
    history.push(orphan.clone());
    // An honest member never takes it.
    assert_eq!(
        validate_op(&orphan.encode(), &h.roster, NOW).unwrap_err(),
        Reason::UnknownAuthor
    );

    let mut roster = Roster::from_welcome(&h.hood(), &dave_id, &welcome).unwrap();
    assert!(sync_refused(&mut roster, &history).is_empty());
    assert!(!roster.is_provisional());
    assert_eq!(roster.checkpoint_held(), Some(false));
    assert!(!roster.contains_op(&orphan.op_id()));
    assert_eq!(op_ids(&roster), op_ids(&h.roster));
    // The next start rebuilds the roster from the stored set.
    let items: Vec<Item> = roster.items().cloned().collect();
    let again = Roster::from_items(&h.hood(), &items).unwrap();
    assert_eq!(again.heads(), h.roster.heads());
    assert_eq!(again.sealing_epoch(), h.roster.sealing_epoch());
}

/// A join that no member takes (its parent is one nobody holds) admits nobody: the
/// joiner it names learns that it is not a member once the history is here, rather than
/// post into a hood that refuses all it sends.
#[test]
fn a_join_nobody_else_takes_admits_nobody() {
    let (mut h, _) = hood_with_history();
    let erin = h.outsider();
    let (signed, ticket) = h.ticket(ALICE);
    let request = TestHood::request(&erin, &signed, &ticket);
    // Alice's private set holds an op only she has (an outsider's), and her join of
    // Erin after it.
    let mut private = h.roster.clone();
    let outsider = h.outsider();
    let planted = promote(&h, &outsider, private.heads(), CAROL);
    private.insert(&planted).unwrap();
    let mut rng = SeededRng::new(17);
    let join = private
        .admit(
            &h.members[ALICE].keys,
            &h.members[ALICE].ring,
            &request,
            NOW,
            &mut rng,
        )
        .unwrap();
    let join = naming(&h, &h.members[ALICE].keys, &join, private.heads());
    private.insert(&join).unwrap();
    let mut welcome = private.welcome(&h.members[ALICE].keys, &erin.id()).unwrap();
    let history = welcome.ops.split_off(2);
    let mut roster = Roster::from_welcome(&h.hood(), &erin.id(), &welcome).unwrap();
    assert!(roster.is_member(&erin.id()));
    assert!(sync_refused(&mut roster, &history).is_empty());
    assert_eq!(roster.checkpoint_held(), Some(false));
    assert!(!roster.is_member(&erin.id()));
    assert_eq!(op_ids(&roster), op_ids(&h.roster));
    // Nobody else takes the join either.
    assert_eq!(
        validate_op(&join.encode(), &h.roster, NOW).unwrap_err(),
        Reason::MissingParents
    );
}

/// Alice covers an operation id that nobody holds. The joiner stays provisional for as
/// long as the history lacks it: it reads, but makes no operation, admits nobody and
/// posts nothing (a liveness attack by the admitter, which could as well have refused
/// the join; the joiner shows `history_missing`, and should join again through another
/// member).
#[test]
fn a_covered_id_nobody_holds_keeps_the_joiner_provisional_and_inert() {
    let (h, dave) = hood_with_history();
    let dave_id = h.members[dave].keys.id();
    let mut welcome = h.roster.welcome(&h.members[ALICE].keys, &dave_id).unwrap();
    let history = welcome.ops.split_off(2);
    let welcome = cover(&h, welcome, OpId([0xa5; 32]), false);
    let mut roster = Roster::from_welcome(&h.hood(), &dave_id, &welcome).unwrap();
    assert!(sync_refused(&mut roster, &history).is_empty());
    assert!(roster.is_provisional());
    assert_eq!(roster.history_missing(), 1);
    let keys = &h.members[dave].keys;
    let mut rng = SeededRng::new(4);
    let provisional = |r: Result<Item, MembershipError>| {
        assert!(
            matches!(r, Err(MembershipError::Provisional { missing: 1 })),
            "{r:?}"
        );
    };
    provisional(roster.rekey(keys, NOW, &mut rng).map(|(op, _, _)| op));
    provisional(roster.remove(keys, h.members[CAROL].keys.id(), NOW));
    provisional(roster.promote(keys, h.members[CAROL].keys.id(), NOW));
    assert!(matches!(
        roster.welcome(keys, &h.members[CAROL].keys.id()),
        Err(MembershipError::Provisional { .. })
    ));
    // It still reads what everyone else does: the same roster and sealing epoch.
    assert_eq!(
        roster.members().collect::<Vec<_>>(),
        h.roster.members().collect::<Vec<_>>()
    );
    assert_eq!(roster.sealing_epoch(), h.roster.sealing_epoch());
    // The node gives up on the checkpoint (after sync sessions that bring nothing):
    // the roster is then what everyone's is, and the joiner may write.
    roster.give_up_checkpoint();
    assert!(!roster.is_provisional());
    assert_eq!(roster.checkpoint_held(), Some(false));
    assert_eq!(op_ids(&roster), op_ids(&h.roster));
    assert_eq!(roster.heads(), h.roster.heads());
    assert!(roster.is_member(&dave_id));
    assert!(roster.rekey(keys, NOW, &mut rng).is_ok());
}

/// A checkpoint as heavy as the codec lets one be for its size: `members` members
/// (made-up ones besides the real three) and `epochs` made-up epochs, each claimed
/// clean and held by every member, signed by Alice. The joiner's roster holds one set
/// entry per (epoch, holder) bit: about 110 bytes each at its peak, all copies counted
/// (measured: 4000 members and 250 epochs, a million pairs, took 112 MB).
fn heavy_welcome(members: usize, epochs: usize) -> (TestHood, usize, Welcome) {
    use porchlight_proto::checkpoint::{CheckpointEpoch, Holders};
    use porchlight_proto::keys::EpochId;
    let (h, dave) = hood_with_history();
    let dave_id = h.members[dave].keys.id();
    let mut welcome = h.roster.welcome(&h.members[ALICE].keys, &dave_id).unwrap();
    let c = &mut welcome.checkpoint;
    let template = c.members[0].clone();
    let mut rng = SeededRng::new(77);
    while c.members.len() < members {
        let mut fake = template.clone();
        fake.id = porchlight_proto::MemberId(rng.bytes());
        fake.name = "x".into();
        fake.admin = false;
        c.members.push(fake);
    }
    c.members.sort_by_key(|m| m.id);
    let all = {
        let mut bits = vec![0xffu8; members.div_ceil(8)];
        if !members.is_multiple_of(8) {
            *bits.last_mut().unwrap() = (1u8 << (members % 8)) - 1;
        }
        bits
    };
    for e in &mut c.epochs {
        e.holders = Holders::Members(all.clone());
    }
    for i in 0..epochs {
        c.epochs.push(CheckpointEpoch {
            id: EpochId(rng.bytes()),
            generation: 2 + i as u64,
            created_at: NOW,
            holders: Holders::Members(all.clone()),
        });
    }
    c.epochs.sort_by_key(|e| e.id);
    let welcome = signed_by(&h, ALICE, welcome);
    (h, dave, welcome)
}

/// The heaviest checkpoint 8 MiB holds: 4000 members and as many made-up epochs as fit,
/// each claimed clean and held by everyone: 56 million (epoch, holder) pairs, about 6 GB
/// for the joiner to build from one welcome (a Raspberry Pi has 1 to 8).
/// Refused while it is read, before anything is built.
#[test]
fn a_checkpoint_naming_millions_of_holders_is_refused_before_it_is_built() {
    use porchlight_proto::checkpoint::MAX_CHECKPOINT_HOLDERS;
    use porchlight_proto::limits::{MAX_MEMBERS, MAX_WELCOME_BYTES};
    let (h, dave, welcome) = heavy_welcome(MAX_MEMBERS, 14_000);
    let bytes = porchlight_proto::JoinResponse::Welcome(Box::new(welcome.clone())).encode();
    assert!(
        bytes.len() <= MAX_WELCOME_BYTES,
        "the welcome is {} bytes",
        bytes.len()
    );
    assert!(welcome.checkpoint.epochs.len() * MAX_MEMBERS > 25 * MAX_CHECKPOINT_HOLDERS);
    let Ok(porchlight_proto::JoinResponse::Welcome(welcome)) =
        porchlight_proto::JoinResponse::decode(&bytes)
    else {
        panic!("the welcome decodes");
    };
    let started = std::time::Instant::now();
    assert_eq!(
        Roster::from_welcome(&h.hood(), &h.members[dave].keys.id(), &welcome).unwrap_err(),
        MembershipError::BadCheckpoint("its epochs name too many holders")
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
