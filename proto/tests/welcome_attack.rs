//! The compact `Welcome` as one hostile member would attack it: the admitter signs the
//! checkpoint its joiner starts from, and the joiner takes every operation it covers
//! without checking author or parents (`validate::judge_op`). What that word may and may
//! not buy the admitter, through the real paths (`Roster::from_welcome`, `validate_op`,
//! `Roster::insert`, `Roster::from_items`). docs/threat-model.md, D20.

#![allow(clippy::unwrap_used)]

use porchlight_proto::item::{Body, Item, OpId};
use porchlight_proto::membership::{MembershipError, Op, Promote, Roster};
use porchlight_proto::testkit::{NOW, SeededRng, TestHood};
use porchlight_proto::validate::{Reason, validate_op};
use porchlight_proto::{MemberKeys, Welcome};

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

/// Alice (founder), Bob and Carol; Bob is removed by Alice, and Dave is about to join
/// (admitted by Alice, the hostile admitter of these tests).
fn hood_with_history() -> (TestHood, usize) {
    let mut h = TestHood::new(11);
    h.join(ALICE, ALICE);
    h.join(ALICE, ALICE);
    h.rekey(ALICE);
    h.remove(ALICE, BOB);
    let dave = h.join(CAROL, ALICE);
    (h, dave)
}

/// Re-signs a welcome's checkpoint as Alice, who admitted the joiner.
fn resign(h: &TestHood, mut w: Welcome) -> Welcome {
    let join = w.ops[1].op_id();
    w.signature =
        h.members[ALICE]
            .keys
            .sign(&[&Welcome::signed_digest(&h.hood(), &join, &w.checkpoint)]);
    w
}

/// Alice adds `id` to what her checkpoint covers, and to its heads when `head`.
fn cover(h: &TestHood, mut w: Welcome, id: OpId, head: bool) -> Welcome {
    let c = &mut w.checkpoint;
    let at = c.covered.binary_search(&id).unwrap_err();
    c.covered.insert(at, id);
    if head {
        let at = c.heads.binary_search(&id).unwrap_err();
        c.heads.insert(at, id);
    }
    resign(h, w)
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
        Op::Genesis(_) => panic!("not a genesis"),
    }
    Item::sign(keys, &h.hood(), &Body::Membership(op))
}

/// Feeds `items` to `roster` through sync's validation, as a node does, until none is
/// left that can be taken; returns the verdicts on what was never taken.
fn sync_into(roster: &mut Roster, items: &[Item]) -> Vec<Reason> {
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
    let refused = sync_into(&mut carols_view, &[planted.clone(), removal.clone()]);
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
    let refused = sync_into(&mut roster, &history);
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
    assert!(sync_into(&mut roster, &history).is_empty());
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
    assert!(sync_into(&mut roster, &history).is_empty());
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
    assert!(sync_into(&mut roster, &history).is_empty());
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
    let welcome = resign(&h, welcome);
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
