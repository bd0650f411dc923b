//! The ratchet inside an epoch against a hostile member (issue #20), through the real
//! validation path: a member who backdates or forward-dates windows, seals a version-1
//! envelope under a ratchet epoch, or hands a joiner a made-up chain value.

#![allow(clippy::unwrap_used)]

use porchlight_proto::envelope::{self, LegacyEnvelope};
use porchlight_proto::item::{Body, Item};
use porchlight_proto::keys::{self, EpochWrap, KeyRing};
use porchlight_proto::membership::{Join, Op};
use porchlight_proto::testkit::{NOW, TestHood};
use porchlight_proto::validate::{Reason, Verdict};

const ALICE: usize = 0;
const BOB: usize = 1;

/// Alice (founder) and Bob, ten days after the hood began.
fn hood() -> TestHood {
    let mut h = TestHood::new(11);
    h.join(ALICE, ALICE);
    h.now = NOW + 10 * 86_400;
    h
}

fn reject(v: Verdict) -> Reason {
    match v {
        Verdict::Reject(r) => r,
        other => panic!("expected Reject, got {other:?}"),
    }
}

fn ignore(v: Verdict) -> Reason {
    match v {
        Verdict::Ignore(r) => r,
        other => panic!("expected Ignore, got {other:?}"),
    }
}

/// Bob's fresh report sealed in `window` of the sealing epoch.
fn sealed_in(h: &mut TestHood, window: u64) -> Vec<u8> {
    let item = Item::sign(&h.members[BOB].keys, &h.hood(), &h.report("fresh"));
    let epoch = h.roster.sealing_epoch().unwrap();
    let key = h.members[BOB].ring.get(&epoch).unwrap().clone();
    envelope::seal_in_window(&item, &h.hood(), &key, window, h.rng.bytes()).unwrap()
}

#[test]
fn an_item_sealed_in_its_own_window_is_accepted() {
    let mut h = hood();
    let now = keys::window_of(h.now);
    let bytes = sealed_in(&mut h, now);
    assert!(matches!(h.validate_as(ALICE, &bytes), Verdict::Accept(_)));
}

#[test]
fn a_fresh_item_in_a_backdated_window_is_rejected_or_ignored_once_forgotten() {
    let mut h = hood();
    let now = keys::window_of(h.now);
    // The key of a day ago still exists: the AEAD opens, the window is not the item's.
    let bytes = sealed_in(&mut h, now - 24);
    assert_eq!(reject(h.validate_as(ALICE, &bytes)), Reason::BadWindow);
    // A judge that deleted that window's key cannot open it at all, and blames nobody.
    let forgot = h.members[ALICE].ring.forget_before(now - 2);
    assert!(!forgot.is_empty());
    assert_eq!(
        ignore(h.validate_as(ALICE, &bytes)),
        Reason::WindowForgotten
    );
}

#[test]
fn a_window_outside_the_epoch_or_in_the_future_is_refused() {
    let mut h = hood();
    let epoch = h.roster.sealing_epoch().unwrap();
    let key = h.members[BOB].ring.get(&epoch).unwrap().clone();
    let last = key.last_window().unwrap();
    // Past the epoch's last window no key exists.
    let item = Item::sign(&h.members[BOB].keys, &h.hood(), &h.report("late"));
    assert!(envelope::seal_in_window(&item, &h.hood(), &key, last + 1, [1; 24]).is_err());
    let mut env = porchlight_proto::Envelope::decode(&sealed_in(&mut h, last)).unwrap();
    env.window = last + 1;
    assert_eq!(
        reject(h.validate_as(ALICE, &env.encode())),
        Reason::BadWindow
    );
    env.window = key.base_window().unwrap() - 1;
    assert_eq!(
        reject(h.validate_as(ALICE, &env.encode())),
        Reason::BadWindow
    );
    // A window inside the epoch but ahead of the item: the AEAD opens, the window is
    // not the item's.
    let ahead = keys::window_of(h.now) + 48;
    assert!(ahead < last);
    let bytes = sealed_in(&mut h, ahead);
    assert_eq!(reject(h.validate_as(ALICE, &bytes)), Reason::BadWindow);
    // An item dated two days ahead, in its own window: the clock check ignores it.
    let mut body = h.report("from the future");
    if let Body::Report(r) = &mut body {
        r.created_at = h.now + 2 * 86_400;
        r.expires_at = r.created_at + 3600;
    }
    let item = Item::sign(&h.members[BOB].keys, &h.hood(), &body);
    let bytes = envelope::seal_random(&item, &h.hood(), &key, &mut h.rng).unwrap();
    assert_eq!(
        ignore(h.validate_as(ALICE, &bytes)),
        Reason::FutureTimestamp
    );
}

#[test]
fn a_version_one_envelope_under_a_ratchet_epoch_is_rejected() {
    let h = hood();
    let epoch = h.roster.sealing_epoch().unwrap();
    let env = LegacyEnvelope {
        version: envelope::LEGACY_VERSION,
        hood: h.hood(),
        epoch,
        nonce: [3; 24],
        ciphertext: vec![0; 300],
    };
    assert_eq!(
        reject(h.validate_as(ALICE, &env.encode())),
        Reason::BadWindow
    );
}

/// A hostile admitter hands the joiner a made-up chain value for the epoch everyone
/// seals under. The joiner checks it against the epoch id, learns nothing from it (it
/// does not read garbage, or blame honest senders for it), and counts the wrap as
/// failed: the node then rekeys for everyone (`Engine::repair_keys`).
#[test]
fn a_joiner_handed_a_made_up_chain_value_refuses_it() {
    let mut h = hood();
    let (signed, ticket) = h.ticket(BOB);
    let dave = h.outsider();
    let request = TestHood::request(&dave, &signed, &ticket);
    let sealing = h.roster.sealing_epoch().unwrap();
    let generation = h.roster.epoch(&sealing).unwrap().generation;
    let wrap = keys::wrap_bytes(
        &[0x66; 32],
        &sealing,
        &h.hood(),
        dave.id(),
        &dave.exchange_key(),
        &mut h.rng,
    )
    .unwrap();
    let join = Item::sign(
        &h.members[BOB].keys,
        &h.hood(),
        &Body::Membership(Op::Join(Join {
            parents: h.roster.parents_for(&h.members[BOB].keys.id()),
            created_at: h.now,
            request,
            wraps: vec![EpochWrap {
                epoch: sealing,
                generation,
                wrap,
            }],
        })),
    );
    let bytes = h.seal_item(BOB, &join);
    assert!(matches!(h.ingest_as(ALICE, &bytes), Verdict::Accept(_)));
    assert!(h.roster.is_member(&dave.id()));
    let mut ring = KeyRing::new();
    assert_eq!(h.roster.learn_keys(&dave, &mut ring), (0, 1));
    assert!(!ring.contains(&sealing));
    // An honest admitter's join, by contrast, hands the real state.
    let carol = h.join(ALICE, ALICE);
    assert!(h.members[carol].ring.contains(&sealing));
}

/// Compatibility: a protocol-2 epoch key (raw, named by its SHA-256 hash) still seals
/// and opens version-1 envelopes, and only those.
#[test]
fn a_legacy_epoch_opens_its_version_one_envelopes() {
    let h = hood();
    let legacy = keys::EpochKey::legacy(&h.hood(), 1, &[0x55; 32]);
    let mut ring = KeyRing::new();
    ring.insert(legacy.clone());
    let item = Item::sign(&h.members[BOB].keys, &h.hood(), &h.report("old node"));
    let bytes = envelope::seal(&item, &h.hood(), &legacy, [9; 24]).unwrap();
    assert_eq!(bytes[0], envelope::LEGACY_VERSION);
    let opened = envelope::open(&bytes, &h.hood(), &ring).unwrap();
    assert_eq!(opened.item, item);
    assert_eq!(opened.window, None);
    // The same key named in a version-2 header does not open.
    let v1 = LegacyEnvelope::decode(&bytes).unwrap();
    let v2 = porchlight_proto::Envelope {
        version: envelope::VERSION,
        hood: v1.hood,
        epoch: v1.epoch,
        window: keys::window_of(h.now),
        nonce: v1.nonce,
        ciphertext: v1.ciphertext,
    };
    assert_eq!(
        envelope::open(&v2.encode(), &h.hood(), &ring).unwrap_err(),
        envelope::OpenError::BadWindow
    );
}
