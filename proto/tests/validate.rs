//! Negative (and a few positive) tests of `validate`: each asserts the exact verdict.

#![allow(clippy::unwrap_used)]

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use porchlight_proto::codec::{CodecError, FieldError};
use porchlight_proto::envelope::{self, Envelope};
use porchlight_proto::hood::{Permission, Policy, RateLimit};
use porchlight_proto::invite::{self, InviteError, SignedTicket};
use porchlight_proto::item::{Body, Item, Kind};
use porchlight_proto::keys::{EpochId, EpochKey};
use porchlight_proto::limits::MAX_ENVELOPE_BYTES;
use porchlight_proto::membership::{Denied, Join, MembershipError, Op};
use porchlight_proto::report::{Category, Report, Update};
use porchlight_proto::testkit::TestHood;
use porchlight_proto::validate::{Context, RateLimiter, Reason, Verdict, validate};
use porchlight_proto::{HoodId, MemberKeys};
use std::collections::BTreeMap;

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

/// Alice (founder, admin), Bob and Carol.
fn hood() -> TestHood {
    let mut h = TestHood::new(42);
    h.join(ALICE, ALICE);
    h.join(BOB, ALICE);
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

fn accepted(v: Verdict) -> Box<porchlight_proto::Accepted> {
    match v {
        Verdict::Accept(a) => a,
        other => panic!("expected Accept, got {other:?}"),
    }
}

/// Runs an operation through validation and into the roster as member `judge`'s node
/// does, and returns why the fold gave it no effect.
fn denied(h: &mut TestHood, judge: usize, bytes: &[u8]) -> Denied {
    let a = accepted(h.ingest_as(judge, bytes));
    h.roster
        .denial(&a.op_id)
        .unwrap_or_else(|| panic!("the operation took effect: {:?}", a.body))
}

fn decode(bytes: &[u8]) -> Envelope {
    Envelope::decode(bytes).unwrap()
}

#[test]
fn valid_report_is_accepted_by_every_member() {
    let mut h = hood();
    let body = h.report("parcel taken from porch");
    let bytes = h.seal(BOB, &body);
    for judge in [ALICE, BOB, CAROL] {
        let a = accepted(h.validate_as(judge, &bytes));
        assert_eq!(a.item.author, h.members[BOB].keys.id());
        assert_eq!(a.body, body);
        assert_eq!(a.id, porchlight_proto::ItemId::of_item(&a.item.encode()));
        assert_ne!(a.id, porchlight_proto::ItemId::of_envelope(&bytes));
    }
}

#[test]
fn forged_signature_is_rejected() {
    let mut h = hood();
    // Carol signs, but claims Bob wrote it.
    let mut item = Item::sign(&h.members[CAROL].keys, &h.hood(), &h.report("fake"));
    item.author = h.members[BOB].keys.id();
    let bytes = h.seal_item(CAROL, &item);
    assert_eq!(reject(h.validate_as(ALICE, &bytes)), Reason::BadSignature);

    // A genuine item with one signature bit flipped.
    let mut item = Item::sign(&h.members[BOB].keys, &h.hood(), &h.report("real"));
    item.signature.0[5] ^= 0x01;
    let bytes = h.seal_item(BOB, &item);
    assert_eq!(reject(h.validate_as(ALICE, &bytes)), Reason::BadSignature);
}

#[test]
fn body_changed_after_signing_is_rejected() {
    let mut h = hood();
    let mut item = Item::sign(&h.members[BOB].keys, &h.hood(), &h.report("ten"));
    let Body::Report(mut r) = item.body().unwrap() else {
        unreachable!()
    };
    r.text = "one hundred".into();
    item.body = Body::Report(r).encode();
    let bytes = h.seal_item(BOB, &item);
    assert_eq!(reject(h.validate_as(ALICE, &bytes)), Reason::BadSignature);
}

#[test]
fn signature_by_a_non_member_is_rejected() {
    let mut h = hood();
    // Mallory somehow holds the epoch key (say, leaked), and signs her own item.
    let mallory = h.outsider();
    let item = Item::sign(&mallory, &h.hood(), &h.report("hello"));
    let bytes = h.seal_item(ALICE, &item);
    assert_eq!(reject(h.validate_as(BOB, &bytes)), Reason::NotAMember);
}

#[test]
fn item_by_someone_whose_admission_was_voided_is_ignored_not_blamed() {
    let mut h = hood();
    // Carol invites and admits Dave. Concurrently (not having seen it), Alice removes
    // Carol: strong removal voids Carol's join of Dave.
    let (signed, ticket) = h.ticket(CAROL);
    let dave = h.outsider();
    let request = TestHood::request(&dave, &signed, &ticket);
    let before = h.clone();
    let join = h
        .roster
        .admit(
            &h.members[CAROL].keys,
            &h.members[CAROL].ring,
            &request,
            h.now,
            &mut h.rng,
        )
        .unwrap();
    h.apply(&join);
    h.members.push(porchlight_proto::testkit::TestMember {
        keys: dave.clone(),
        ring: porchlight_proto::keys::KeyRing::new(),
    });
    h.apply(&join);
    let dave_index = h.members.len() - 1;
    let by_dave = h.seal(dave_index, &h.report("hello from Dave"));
    let remove = before
        .roster
        .remove(
            &before.members[ALICE].keys,
            before.members[CAROL].keys.id(),
            h.now,
        )
        .unwrap();
    h.apply(&remove);
    assert!(h.roster.is_void(&join.op_id()));
    assert!(!h.roster.is_member(&dave.id()));
    // A neighbor that relays Dave's report from before it heard is not to blame.
    assert_eq!(ignore(h.validate_as(ALICE, &by_dave)), Reason::NotAdmitted);
}

#[test]
fn tampered_ciphertext_nonce_and_tag_are_rejected() {
    let mut h = hood();
    let body = h.report("ok");
    let bytes = h.seal(BOB, &body);
    let env = decode(&bytes);

    let mut c = env.clone();
    c.ciphertext[0] ^= 0x80;
    assert_eq!(
        reject(h.validate_as(ALICE, &c.encode())),
        Reason::DecryptFailed
    );

    let mut n = env.clone();
    n.nonce[23] ^= 0x01;
    assert_eq!(
        reject(h.validate_as(ALICE, &n.encode())),
        Reason::DecryptFailed
    );

    let mut t = env.clone();
    let last = t.ciphertext.len() - 1;
    t.ciphertext[last] ^= 0x01; // the Poly1305 tag is the last 16 bytes
    assert_eq!(
        reject(h.validate_as(ALICE, &t.encode())),
        Reason::DecryptFailed
    );

    let mut short = env;
    short.ciphertext.truncate(10);
    assert_eq!(
        reject(h.validate_as(ALICE, &short.encode())),
        Reason::DecryptFailed
    );
}

#[test]
fn ciphertext_under_other_aad_is_rejected() {
    let h = hood();
    let item = Item::sign(&h.members[BOB].keys, &h.hood(), &h.report("ok"));
    let epoch = h.roster.sealing_epoch().unwrap();
    let key = h.members[BOB].ring.get(&epoch).unwrap().clone();
    // Sealed with the right key but authenticated as another hood's header, then given
    // this hood's header: the header is not what the sender authenticated.
    let other_hood = HoodId([9; 32]);
    let nonce = [7u8; 24];
    let window = porchlight_proto::keys::window_of(h.now);
    let window_key = key.window_key(window).unwrap();
    let ciphertext = XChaCha20Poly1305::new((&*window_key).into())
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &envelope::pad(&item.encode()),
                aad: &envelope::aad(&other_hood, &epoch, window),
            },
        )
        .unwrap();
    let env = Envelope {
        version: envelope::VERSION,
        hood: h.hood(),
        epoch,
        window,
        nonce,
        ciphertext,
    };
    assert_eq!(
        reject(h.validate_as(ALICE, &env.encode())),
        Reason::DecryptFailed
    );
}

#[test]
fn envelope_for_another_hood_is_rejected() {
    let h = hood();
    let mut other = TestHood::new(7);
    let bytes = other.seal(0, &other.report("not for you"));
    assert_eq!(reject(h.validate_as(ALICE, &bytes)), Reason::WrongHood);
    // Relabelled with this hood's id: its epoch is not one of ours.
    let mut env = decode(&bytes);
    env.hood = h.hood();
    assert_eq!(
        ignore(h.validate_as(ALICE, &env.encode())),
        Reason::UnknownEpoch
    );
}

#[test]
fn unknown_epoch_is_ignored_not_rejected() {
    let mut h = hood();
    let bytes = h.seal(BOB, &h.report("ok"));
    let mut env = decode(&bytes);
    env.epoch = EpochId([0xee; 32]);
    assert_eq!(
        ignore(h.validate_as(ALICE, &env.encode())),
        Reason::UnknownEpoch
    );
}

#[test]
fn unsupported_version_is_ignored() {
    let mut h = hood();
    let mut env = decode(&h.seal(BOB, &h.report("ok")));
    env.version = 3;
    assert_eq!(
        ignore(h.validate_as(ALICE, &env.encode())),
        Reason::UnsupportedVersion(3)
    );
}

#[test]
fn report_by_a_member_after_removal_is_rejected() {
    let mut h = hood();
    let old_epoch = h.roster.sealing_epoch().unwrap();
    h.remove(ALICE, CAROL);
    assert_ne!(h.roster.sealing_epoch(), Some(old_epoch));
    // Carol still holds the old epoch key and uses it.
    let item = Item::sign(&h.members[CAROL].keys, &h.hood(), &h.report("still here"));
    let key = h.members[CAROL].ring.get(&old_epoch).unwrap().clone();
    let bytes = envelope::seal_random(&item, &h.hood(), &key, &mut h.rng).unwrap();
    assert_eq!(reject(h.validate_as(ALICE, &bytes)), Reason::AuthorRemoved);
    assert_eq!(reject(h.validate_as(BOB, &bytes)), Reason::AuthorRemoved);
}

#[test]
fn removed_member_cannot_open_items_sealed_after_removal() {
    let mut h = hood();
    h.remove(ALICE, CAROL);
    let bytes = h.seal(ALICE, &h.report("after removal"));
    assert!(matches!(h.validate_as(BOB, &bytes), Verdict::Accept(_)));
    assert_eq!(
        envelope::open(&bytes, &h.hood(), &h.members[CAROL].ring),
        Err(envelope::OpenError::UnknownEpoch)
    );
}

#[test]
fn membership_op_presented_as_a_report_is_rejected() {
    let mut h = hood();
    let op = h
        .roster
        .promote(&h.members[ALICE].keys, h.members[BOB].keys.id(), h.now)
        .unwrap();
    // The kind byte is under the signature: relabelling breaks it.
    let mut relabelled = op.clone();
    relabelled.kind = Kind::Report;
    let bytes = h.seal_item(ALICE, &relabelled);
    assert_eq!(reject(h.validate_as(BOB, &bytes)), Reason::BadSignature);

    // Signed as a report, but the body is an operation's bytes: it does not decode.
    let forged = Item {
        kind: Kind::Report,
        signature: h.members[ALICE].keys.sign(&[
            porchlight_proto::domain::ITEM,
            &h.hood().0,
            &[Kind::Report as u8],
            &op.body,
        ]),
        ..op
    };
    let bytes = h.seal_item(ALICE, &forged);
    assert!(matches!(
        reject(h.validate_as(BOB, &bytes)),
        Reason::MalformedBody(_)
    ));
}

#[test]
fn oversize_envelope_is_rejected_before_any_work() {
    let h = hood();
    let bytes = vec![0u8; MAX_ENVELOPE_BYTES + 1];
    assert_eq!(
        reject(h.validate_as(ALICE, &bytes)),
        Reason::Oversize(MAX_ENVELOPE_BYTES + 1)
    );
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut h = hood();
    let mut bytes = h.seal(BOB, &h.report("ok"));
    bytes.push(0);
    assert_eq!(
        reject(h.validate_as(ALICE, &bytes)),
        Reason::Malformed(CodecError::TrailingBytes(1))
    );
}

#[test]
fn timestamp_more_than_ten_minutes_ahead_is_ignored_not_blamed() {
    let mut h = hood();
    let mut body = h.report("from the future");
    let Body::Report(r) = &mut body else {
        unreachable!()
    };
    r.created_at = h.now + 601;
    r.expires_at = h.now + 3600;
    let bytes = h.seal(BOB, &body);
    // A node whose clock is behind must not graylist honest neighbors: the item is
    // ignored, and sync brings it again later.
    assert_eq!(
        ignore(h.validate_as(ALICE, &bytes)),
        Reason::FutureTimestamp
    );
    // Ten minutes of skew is tolerated.
    let Body::Report(r) = &mut body else {
        unreachable!()
    };
    r.created_at = h.now + 600;
    let bytes = h.seal(BOB, &body);
    assert!(matches!(h.validate_as(ALICE, &bytes), Verdict::Accept(_)));
}

#[test]
fn suspicious_activity_without_behavior_is_rejected() {
    let mut h = hood();
    let mut body = h.report("someone walking around");
    let Body::Report(r) = &mut body else {
        unreachable!()
    };
    r.category = Category::SuspiciousActivity;
    let bytes = h.seal(BOB, &body);
    assert!(matches!(
        reject(h.validate_as(ALICE, &bytes)),
        Reason::InvalidBody(FieldError::Invalid {
            what: "behavior",
            ..
        })
    ));
    let Body::Report(r) = &mut body else {
        unreachable!()
    };
    r.behavior = Some("tried car door handles along the street".into());
    let bytes = h.seal(BOB, &body);
    assert!(matches!(h.validate_as(ALICE, &bytes), Verdict::Accept(_)));
}

#[test]
fn lifetime_beyond_policy_is_rejected_and_expired_is_ignored() {
    let mut h = hood();
    // A day on, so that the expired report was made after the epoch began (nothing is
    // sealed in an epoch before its first window).
    h.now += 86_400;
    let mut body = h.report("long");
    let Body::Report(r) = &mut body else {
        unreachable!()
    };
    r.expires_at = r.created_at + 31 * 24 * 3600;
    let bytes = h.seal(BOB, &body);
    assert!(matches!(
        reject(h.validate_as(ALICE, &bytes)),
        Reason::InvalidBody(FieldError::Invalid {
            what: "expires_at",
            ..
        })
    ));
    let Body::Report(r) = &mut body else {
        unreachable!()
    };
    r.created_at = h.now - 7200;
    r.expires_at = h.now - 3600;
    let bytes = h.seal(BOB, &body);
    assert_eq!(ignore(h.validate_as(ALICE, &bytes)), Reason::Expired);
}

#[test]
fn update_by_someone_other_than_author_or_admin_is_rejected() {
    let mut h = hood();
    let report = h.seal(BOB, &h.report("parcel gone"));
    let report_id = accepted(h.validate_as(ALICE, &report)).id;
    let update = |h: &TestHood| {
        Body::Update(Update {
            created_at: h.now,
            expires_at: h.now + 3600,
            report: report_id,
            severity: None,
            text: "found it".into(),
        })
    };
    let lookup = BTreeMap::from([(report_id, h.members[BOB].keys.id())]);
    let judge = |h: &TestHood, bytes: &[u8]| {
        validate(
            bytes,
            &Context {
                roster: &h.roster,
                keys: &h.members[ALICE].ring,
                rate: &RateLimiter::new(),
                lookup: &lookup,
                now: h.now,
            },
        )
    };
    let by_carol = h.seal(CAROL, &update(&h));
    assert_eq!(reject(judge(&h, &by_carol)), Reason::NotReportAuthor);
    let by_bob = h.seal(BOB, &update(&h));
    assert!(matches!(judge(&h, &by_bob), Verdict::Accept(_)));
    let by_admin = h.seal(ALICE, &update(&h));
    assert!(matches!(judge(&h, &by_admin), Verdict::Accept(_)));
    // Without the report, the update waits: nobody is blamed.
    assert_eq!(ignore(h.validate_as(ALICE, &by_bob)), Reason::UnknownReport);
}

#[test]
fn member_over_the_rate_limit_is_rejected() {
    let policy = Policy {
        rate_limit: RateLimit {
            max_items: 2,
            window_secs: 3600,
        },
        ..Policy::default()
    };
    let mut h = TestHood::with_policy(5, policy);
    let bob = h.join(ALICE, ALICE);
    let mut rate = RateLimiter::new();
    for i in 0..2 {
        let bytes = h.seal(bob, &h.report(&format!("report {i}")));
        let a = accepted(h.validate_with(ALICE, &bytes, &rate));
        rate.record(h.roster.policy(), &a);
    }
    let third = h.seal(bob, &h.report("report 3"));
    assert_eq!(
        reject(h.validate_with(ALICE, &third, &rate)),
        Reason::RateLimited
    );
    // Alice has her own budget.
    let hers = h.seal(ALICE, &h.report("mine"));
    assert!(matches!(
        h.validate_with(ALICE, &hers, &rate),
        Verdict::Accept(_)
    ));
}

#[test]
fn removal_by_someone_the_policy_does_not_allow_is_rejected() {
    let mut h = hood();
    // Default policy: only admins remove. Bob is not an admin.
    let op = Item::sign(
        &h.members[BOB].keys,
        &h.hood(),
        &Body::Membership(Op::Remove(porchlight_proto::membership::Remove {
            parents: h.roster.heads(),
            created_at: h.now,
            target: h.members[CAROL].keys.id(),
        })),
    );
    let bytes = h.seal_item(BOB, &op);
    assert_eq!(denied(&mut h, ALICE, &bytes), Denied::PolicyForbidsRemove);
    assert!(h.roster.is_member(&h.members[CAROL].keys.id()));
    // Leaving is always allowed.
    let leave = h
        .roster
        .remove(&h.members[CAROL].keys, h.members[CAROL].keys.id(), h.now)
        .unwrap();
    let bytes = h.seal_item(CAROL, &leave);
    assert!(matches!(h.validate_as(ALICE, &bytes), Verdict::Accept(_)));
}

#[test]
fn promotion_by_a_non_admin_is_rejected() {
    let mut h = hood();
    let op = Item::sign(
        &h.members[BOB].keys,
        &h.hood(),
        &Body::Membership(Op::Promote(porchlight_proto::membership::Promote {
            parents: h.roster.heads(),
            created_at: h.now,
            target: h.members[BOB].keys.id(),
        })),
    );
    let bytes = h.seal_item(BOB, &op);
    assert_eq!(denied(&mut h, ALICE, &bytes), Denied::NotAdmin);
    assert!(!h.roster.is_admin(&h.members[BOB].keys.id()));
}

#[test]
fn invite_only_for_admins_is_enforced() {
    let policy = Policy {
        invite: Permission::AdminsOnly,
        ..Policy::default()
    };
    let mut h = TestHood::with_policy(11, policy);
    let bob = h.join(ALICE, ALICE);
    let (signed, ticket) = h.ticket(bob);
    let dave = h.outsider();
    let request = TestHood::request(&dave, &signed, &ticket);
    assert_eq!(
        h.roster
            .admit(
                &h.members[ALICE].keys,
                &h.members[ALICE].ring,
                &request,
                h.now,
                &mut h.rng
            )
            .unwrap_err(),
        MembershipError::Denied(Denied::PolicyForbidsInvite)
    );
}

/// A join made by `admitter` for `request`, built by hand so that the roster's own
/// checks in `admit` do not stop it: this is what a misbehaving member could send.
fn raw_join(
    h: &TestHood,
    admitter: usize,
    request: porchlight_proto::JoinRequest,
    at: u64,
) -> Item {
    Item::sign(
        &h.members[admitter].keys,
        &h.hood(),
        &Body::Membership(Op::Join(Join {
            parents: h.roster.heads(),
            created_at: at,
            request,
            wraps: vec![],
        })),
    )
}

#[test]
fn expired_invite_is_rejected() {
    let mut h = hood();
    let (signed, ticket) = h.ticket(BOB);
    let code = signed.to_code();
    assert_eq!(
        invite::parse(&code, ticket.expires_at + 1).unwrap_err(),
        InviteError::Expired {
            expired_at: ticket.expires_at
        }
    );
    let dave = h.outsider();
    let request = TestHood::request(&dave, &signed, &ticket);
    let join = raw_join(&h, ALICE, request, ticket.expires_at + 1);
    h.now = ticket.expires_at + 1;
    let bytes = h.seal_item(ALICE, &join);
    assert_eq!(denied(&mut h, BOB, &bytes), Denied::TicketExpired);
    assert!(!h.roster.is_member(&dave.id()));
}

#[test]
fn reused_invite_is_rejected() {
    let mut h = hood();
    let (signed, ticket) = h.ticket(BOB);
    let dave = h.outsider();
    let first = h
        .roster
        .admit(
            &h.members[ALICE].keys,
            &h.members[ALICE].ring,
            &TestHood::request(&dave, &signed, &ticket),
            h.now,
            &mut h.rng,
        )
        .unwrap();
    h.apply(&first);
    let erin = h.outsider();
    let request = TestHood::request(&erin, &signed, &ticket);
    assert_eq!(
        h.roster
            .admit(
                &h.members[ALICE].keys,
                &h.members[ALICE].ring,
                &request,
                h.now,
                &mut h.rng
            )
            .unwrap_err(),
        MembershipError::Denied(Denied::TicketReused)
    );
    let second = raw_join(&h, CAROL, request, h.now);
    let bytes = h.seal_item(CAROL, &second);
    assert_eq!(denied(&mut h, ALICE, &bytes), Denied::TicketReused);
    assert!(!h.roster.is_member(&erin.id()));
    assert!(h.roster.is_member(&dave.id()));
}

#[test]
fn forged_invite_is_rejected() {
    let mut h = hood();
    let (signed, ticket) = h.ticket(BOB);
    // Carol rewrites Bob's ticket to last forever.
    let mut longer = ticket.clone();
    longer.expires_at = u64::MAX;
    let forged = SignedTicket {
        body: porchlight_proto::codec::encode(&longer),
        signature: signed.signature,
    };
    assert_eq!(
        invite::parse(&forged.to_code(), h.now).unwrap_err(),
        InviteError::BadSignature
    );
    let dave = h.outsider();
    let request = porchlight_proto::JoinRequest::new(&dave, forged, &longer, "Dave").unwrap();
    let join = raw_join(&h, CAROL, request, h.now);
    let bytes = h.seal_item(CAROL, &join);
    assert_eq!(
        reject(h.validate_as(ALICE, &bytes)),
        Reason::InvalidOp(MembershipError::Ticket(InviteError::BadSignature))
    );
}

#[test]
fn mistyped_invite_is_rejected() {
    let mut h = hood();
    let (signed, _) = h.ticket(BOB);
    let code = signed.to_code();
    // Swap two adjacent, different characters: a classic transcription error.
    let mut chars: Vec<char> = code.chars().collect();
    let i = (20..chars.len() - 1)
        .find(|&i| chars[i] != chars[i + 1])
        .unwrap();
    chars.swap(i, i + 1);
    let swapped: String = chars.into_iter().collect();
    assert_ne!(swapped, code);
    assert_eq!(
        invite::parse(&swapped, h.now).unwrap_err(),
        InviteError::Checksum
    );
    assert_eq!(
        invite::parse(&code.replacen("porchlight1", "porchlite1", 1), h.now).unwrap_err(),
        InviteError::WrongPrefix
    );
}

#[test]
fn join_request_with_stolen_ticket_but_wrong_proof_is_rejected() {
    let mut h = hood();
    let (signed, ticket) = h.ticket(BOB);
    let dave = h.outsider();
    let mut request = TestHood::request(&dave, &signed, &ticket);
    // Mallory swaps in her own exchange key to receive the wrapped keys.
    let mallory = MemberKeys::generate(&mut h.rng);
    request.exchange_key = mallory.exchange_key();
    let join = raw_join(&h, ALICE, request, h.now);
    let bytes = h.seal_item(ALICE, &join);
    assert_eq!(
        reject(h.validate_as(BOB, &bytes)),
        Reason::InvalidOp(MembershipError::BadProof)
    );
}

#[test]
fn rekey_wrapping_to_a_stranger_or_jumping_generations_takes_no_effect() {
    let mut h = hood();
    let mallory = h.outsider();
    let key = EpochKey::generate(&h.hood(), 2, h.now, &mut h.rng);
    let mut wraps = Vec::new();
    for to in [&h.members[BOB].keys.clone(), &mallory] {
        wraps.push(
            porchlight_proto::keys::wrap(&key, &h.hood(), to.id(), &to.exchange_key(), &mut h.rng)
                .unwrap(),
        );
    }
    let now = h.now;
    let epoch = key.id();
    let rekey = |h: &TestHood, wraps: Vec<porchlight_proto::keys::Wrap>, generation: u64| {
        Body::Membership(Op::Rekey(porchlight_proto::membership::Rekey {
            parents: h.roster.heads(),
            created_at: now,
            generation,
            epoch,
            wraps,
        }))
    };
    let sealing = h.roster.sealing_epoch();
    let body = rekey(&h, wraps.clone(), 2);
    let op = Item::sign(&h.members[BOB].keys, &h.hood(), &body);
    let bytes = h.seal_item(BOB, &op);
    assert_eq!(denied(&mut h, ALICE, &bytes), Denied::WrapToStranger);
    assert!(h.roster.epoch(&epoch).is_none());
    // Bob learns nothing from it, and the hood seals as before.
    assert!(!h.members[BOB].ring.contains(&epoch));
    assert_eq!(h.roster.sealing_epoch(), sealing);
    // A rekey that does not wrap to its own author is malformed: the author holds the
    // key whatever the wraps say, and the roster must count them.
    let body = rekey(&h, wraps[1..].to_vec(), 2);
    let op = Item::sign(&h.members[BOB].keys, &h.hood(), &body);
    let bytes = h.seal_item(BOB, &op);
    assert_eq!(
        reject(h.validate_as(ALICE, &bytes)),
        Reason::InvalidOp(MembershipError::BadRekey)
    );
    // Jumping generations would let one member decide the sealing epoch for good.
    let mut everyone = Vec::new();
    for m in [ALICE, BOB, CAROL] {
        let to = h.members[m].keys.clone();
        everyone.push(
            porchlight_proto::keys::wrap(&key, &h.hood(), to.id(), &to.exchange_key(), &mut h.rng)
                .unwrap(),
        );
    }
    let body = rekey(&h, everyone.clone(), 7);
    let op = Item::sign(&h.members[BOB].keys, &h.hood(), &body);
    let bytes = h.seal_item(BOB, &op);
    assert_eq!(denied(&mut h, ALICE, &bytes), Denied::GenerationTooHigh);
    // Skipping a member makes an epoch that member lacks: it is not sealed under while
    // a complete one exists, and the hood is asked to rekey.
    let body = rekey(&h, everyone[..2].to_vec(), 2);
    let op = Item::sign(&h.members[BOB].keys, &h.hood(), &body);
    let bytes = h.seal_item(BOB, &op);
    accepted(h.ingest_as(ALICE, &bytes));
    assert!(h.roster.epoch(&epoch).is_some());
    assert_eq!(h.roster.sealing_epoch(), sealing);
    assert!(h.roster.needs_rekey());
}

#[test]
fn removing_a_rekeyer_retires_the_epoch_they_made() {
    let mut h = hood();
    h.rekey(BOB);
    let bobs_epoch = h.roster.sealing_epoch().unwrap();
    assert!(
        h.roster
            .epoch(&bobs_epoch)
            .unwrap()
            .holders
            .contains(&h.members[BOB].keys.id())
    );
    let op = h
        .roster
        .remove(&h.members[ALICE].keys, h.members[BOB].keys.id(), h.now)
        .unwrap();
    h.apply(&op);
    assert!(h.roster.needs_rekey());
    assert_ne!(h.roster.sealing_epoch(), Some(bobs_epoch));
}

#[test]
fn member_cannot_flood_the_roster_with_operations() {
    use porchlight_proto::limits::MAX_OPS_PER_MEMBER;
    let mut h = hood();
    let already = h.roster.ops_by(&h.members[ALICE].keys.id());
    let carol = h.members[CAROL].keys.id();
    // Alice (an admin) promotes Carol, then makes the most operations one member may:
    // raw promotions of Carol, who is an admin already, so they take no effect.
    let promote = h
        .roster
        .promote(&h.members[ALICE].keys, carol, h.now)
        .unwrap();
    h.apply(&promote);
    for i in 0..(MAX_OPS_PER_MEMBER - already - 1) as u64 {
        let op = Item::sign(
            &h.members[ALICE].keys,
            &h.hood(),
            &Body::Membership(Op::Promote(porchlight_proto::membership::Promote {
                parents: h.roster.heads(),
                created_at: h.now + i,
                target: carol,
            })),
        );
        h.roster.insert(&op).unwrap();
    }
    assert_eq!(
        h.roster.ops_by(&h.members[ALICE].keys.id()),
        MAX_OPS_PER_MEMBER
    );
    let op = Item::sign(
        &h.members[ALICE].keys,
        &h.hood(),
        &Body::Membership(Op::Promote(porchlight_proto::membership::Promote {
            parents: h.roster.heads(),
            created_at: h.now,
            target: carol,
        })),
    );
    let bytes = h.seal_item(ALICE, &op);
    assert_eq!(ignore(h.validate_as(ALICE, &bytes)), Reason::TooManyOps);
    // Carol (an admin too) still may act: one member's flood does not block the others.
    let remove = h
        .roster
        .remove(&h.members[CAROL].keys, h.members[BOB].keys.id(), h.now)
        .unwrap();
    let bytes = h.seal_item(CAROL, &remove);
    accepted(h.ingest_as(CAROL, &bytes));
    assert!(h.roster.is_removed(&h.members[BOB].keys.id()));
}

#[test]
fn backdated_reports_cannot_exceed_a_days_worth_of_live_items() {
    use porchlight_proto::validate::LIVE_WINDOWS;
    let policy = Policy {
        rate_limit: RateLimit {
            max_items: 2,
            window_secs: 3600,
        },
        ..Policy::default()
    };
    let mut h = TestHood::with_policy(6, policy);
    let bob = h.join(ALICE, ALICE);
    // Two days on, so that every backdated report was made after the epoch began.
    h.now += 2 * 86_400;
    let mut rate = RateLimiter::new();
    let cap = 2 * LIVE_WINDOWS as usize;
    let mut accepted_count = 0;
    // Two per hour-window, spread back over many windows.
    for i in 0..(cap + 4) {
        let mut body = h.report(&format!("old {i}"));
        let Body::Report(r) = &mut body else {
            unreachable!()
        };
        r.created_at = h.now - 3600 * (i as u64 / 2);
        r.expires_at = r.created_at + 30 * 24 * 3600 - 1;
        let bytes = h.seal(bob, &body);
        match h.validate_with(ALICE, &bytes, &rate) {
            Verdict::Accept(a) => {
                rate.record(h.roster.policy(), &a);
                accepted_count += 1;
            }
            Verdict::Reject(Reason::RateLimited) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted_count, cap);
}

#[test]
fn invisible_reordering_characters_are_rejected() {
    let mut h = hood();
    let mut body = h.report("all clear");
    let Body::Report(r) = &mut body else {
        unreachable!()
    };
    r.text = "all clear \u{202E}reversed".into();
    let bytes = h.seal(BOB, &body);
    assert_eq!(
        reject(h.validate_as(ALICE, &bytes)),
        Reason::InvalidBody(FieldError::ControlCharacter { what: "text" })
    );
}

#[test]
fn known_operation_is_ignored_as_duplicate() {
    let mut h = hood();
    let op = h.roster.items().last().unwrap().clone();
    let bytes = h.seal_item(ALICE, &op);
    assert_eq!(ignore(h.validate_as(BOB, &bytes)), Reason::DuplicateOp);
}

#[test]
fn second_genesis_is_rejected() {
    let mut h = hood();
    let genesis = h
        .roster
        .items()
        .find(|i| i.op_id() == h.roster.genesis_id())
        .unwrap()
        .clone();
    // The founder signs another genesis: a hood has exactly one.
    let Body::Membership(Op::Genesis(mut g)) = genesis.body().unwrap() else {
        unreachable!()
    };
    g.salt = [1; 32];
    let other = Item::sign(
        &h.members[ALICE].keys,
        &h.hood(),
        &Body::Membership(Op::Genesis(g)),
    );
    let bytes = h.seal_item(ALICE, &other);
    assert_eq!(
        reject(h.validate_as(BOB, &bytes)),
        Reason::InvalidOp(MembershipError::WrongGenesis)
    );
}

#[test]
fn accepted_verdict_carries_the_body_times() {
    let mut h = hood();
    let body = h.report("x");
    let Body::Report(Report {
        created_at,
        expires_at,
        ..
    }) = body.clone()
    else {
        unreachable!()
    };
    let bytes = h.seal(BOB, &body);
    let a = accepted(h.validate_as(ALICE, &bytes));
    assert_eq!((a.created_at, a.expires_at), (created_at, Some(expires_at)));
}

#[test]
fn cached_key_check_refuses_a_key_that_is_not_the_authors() {
    let h = hood();
    let item = Item::sign(&h.members[BOB].keys, &h.hood(), &h.report("real"));
    let bob = h.members[BOB].keys.id().verifying_key().unwrap();
    let carol = h.members[CAROL].keys.id().verifying_key().unwrap();
    assert!(item.verify_with(&h.hood(), &bob));
    assert!(h.roster.verify_item(&item));
    // Carol's key never vouches for Bob's item, whatever the signature.
    assert!(!item.verify_with(&h.hood(), &carol));
    let mut forged = Item::sign(&h.members[CAROL].keys, &h.hood(), &h.report("fake"));
    forged.author = h.members[BOB].keys.id();
    assert!(!forged.verify_with(&h.hood(), &carol));
    assert!(!h.roster.verify_item(&forged));
}
