//! "Seen by" (issue #22) through the real validation path: acks are accepted by every
//! member without naming their acker, attributed only by the report's author, and
//! refused when tampered with, forged, aimed at a report that did not ask, or made to
//! outlive it.

#![allow(clippy::unwrap_used)]

use porchlight_proto::item::{Body, Item, Kind};
use porchlight_proto::report::{Report, Severity};
use porchlight_proto::seen::{self, SeenAsk, SeenError};
use porchlight_proto::testkit::TestHood;
use porchlight_proto::validate::{Context, Lookup, RateLimiter, Reason, Verdict, validate};
use porchlight_proto::{Accepted, ItemId, MemberId};
use zeroize::Zeroizing;

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;
const DAVE: usize = 3;

/// What a node knows of the one report in these tests.
struct Held {
    id: ItemId,
    author: MemberId,
    ask: Option<(SeenAsk, u64)>,
    acks: usize,
}

impl Lookup for Held {
    fn report_author(&self, report: &ItemId) -> Option<MemberId> {
        (*report == self.id).then_some(self.author)
    }
    fn seen_ask(&self, report: &ItemId) -> Option<(SeenAsk, u64)> {
        if *report == self.id { self.ask } else { None }
    }
    fn acks_held(&self, report: &ItemId) -> usize {
        if *report == self.id { self.acks } else { 0 }
    }
}

/// Alice, Bob, Carol and Dave; Alice posts an urgent report that asks who has seen it.
struct Scene {
    h: TestHood,
    report: Report,
    held: Held,
    secret: Zeroizing<[u8; 32]>,
    readers: Vec<MemberId>,
}

fn scene() -> Scene {
    let mut h = TestHood::new(77);
    h.join(ALICE, ALICE);
    h.join(ALICE, ALICE);
    h.join(ALICE, ALICE);
    let (ask, secret) = SeenAsk::generate(&mut h.rng);
    let Body::Report(mut report) = h.report("smoke from the garage at number 12") else {
        unreachable!()
    };
    report.severity = Severity::Urgent;
    report.ask_seen = Some(ask);
    let bytes = h.seal(ALICE, &Body::Report(report.clone()));
    let Verdict::Accept(a) = h.validate_as(BOB, &bytes) else {
        panic!("the asking report is accepted")
    };
    assert_eq!(
        a.body,
        Body::Report(report.clone()),
        "the ask survives the wire"
    );
    let readers = [BOB, CAROL, DAVE]
        .iter()
        .map(|m| h.members[*m].keys.id())
        .collect();
    Scene {
        held: Held {
            id: a.id,
            author: h.members[ALICE].keys.id(),
            ask: Some((ask, report.expires_at)),
            acks: 0,
        },
        h,
        report,
        secret,
        readers,
    }
}

impl Scene {
    /// Member `by`'s ack of the report (the keys of `by` may be an outsider's).
    fn ack_by(&mut self, by: &porchlight_proto::MemberKeys) -> Item {
        let (ask, expires_at) = self.held.ask.unwrap();
        seen::acknowledge(
            by,
            &self.h.hood(),
            self.held.id,
            &ask,
            self.h.now,
            expires_at,
            &mut self.h.rng,
        )
        .unwrap()
    }

    fn ack(&mut self, by: usize) -> Item {
        let keys = self.h.members[by].keys.clone();
        self.ack_by(&keys)
    }

    /// The verdict member `judge` reaches on `bytes`.
    fn judge(&self, judge: usize, bytes: &[u8]) -> Verdict {
        validate(
            bytes,
            &Context {
                roster: &self.h.roster,
                keys: &self.h.members[judge].ring,
                rate: &RateLimiter::new(),
                lookup: &self.held,
                now: self.h.now,
            },
        )
    }

    fn accepted(&self, judge: usize, bytes: &[u8]) -> Box<Accepted> {
        match self.judge(judge, bytes) {
            Verdict::Accept(a) => a,
            other => panic!("expected Accept, got {other:?}"),
        }
    }

    /// Who the author finds the accepted ack is from.
    fn attribute(&self, a: &Accepted) -> Result<MemberId, SeenError> {
        let Body::Seen(s) = &a.body else {
            panic!("not an ack: {:?}", a.body)
        };
        seen::open(&a.item, s, &self.h.hood(), &self.secret, &self.readers)
    }
}

#[test]
fn an_ack_is_taken_by_every_member_and_only_the_author_learns_whose_it_is() {
    let mut s = scene();
    let bob = s.h.members[BOB].keys.id();
    let ack = s.ack(BOB);
    let bytes = s.h.seal_item(BOB, &ack);
    for judge in [ALICE, CAROL, DAVE] {
        let a = s.accepted(judge, &bytes);
        assert_eq!(a.item.kind, Kind::Seen);
        assert_eq!(
            a.expires_at,
            Some(s.report.expires_at),
            "expires with the report"
        );
        // What every member holds names a one-time key, and nowhere Bob.
        assert_ne!(a.item.author, bob);
        let inner = a.item.encode();
        assert!(
            !inner.windows(32).any(|w| w == bob.0),
            "Bob's id is not in the clear inside the envelope"
        );
    }
    let a = s.accepted(ALICE, &bytes);
    assert_eq!(s.attribute(&a), Ok(bob));
    // A member without the report's secret (any other) cannot open it.
    let (_, other_secret) = SeenAsk::generate(&mut s.h.rng);
    let Body::Seen(body) = &a.body else {
        unreachable!()
    };
    assert_eq!(
        seen::open(&a.item, body, &s.h.hood(), &other_secret, &s.readers),
        Err(SeenError::DoesNotOpen)
    );
}

#[test]
fn a_tampered_ack_is_rejected() {
    let mut s = scene();
    let ack = s.ack(BOB);
    let bytes = s.h.seal_item(BOB, &ack);
    // On the wire: the envelope's AEAD.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        s.judge(CAROL, &flipped),
        Verdict::Reject(Reason::DecryptFailed)
    );
    // By a member, who holds the epoch key and re-seals: the one-time signature.
    let Ok(Body::Seen(mut body)) = ack.body() else {
        unreachable!()
    };
    body.sealed[0] ^= 1;
    let altered = Item {
        body: Body::Seen(body.clone()).encode(),
        ..ack.clone()
    };
    let resealed = s.h.seal_item(CAROL, &altered);
    assert_eq!(
        s.judge(ALICE, &resealed),
        Verdict::Reject(Reason::BadSignature)
    );
    // Bob's sealed part moved under a one-time key of Carol's: it travels (nobody but the
    // author can tell), and the author finds it does not open (the key is bound in).
    body.sealed[0] ^= 1;
    let once = s.h.outsider();
    let moved = Item::sign(&once, &s.h.hood(), &Body::Seen(body));
    let moved = s.h.seal_item(CAROL, &moved);
    let a = s.accepted(ALICE, &moved);
    assert_eq!(s.attribute(&a), Err(SeenError::DoesNotOpen));
}

#[test]
fn an_ack_by_a_non_member_or_by_the_author_counts_for_nothing() {
    let mut s = scene();
    // Someone who never was a member, with an epoch key (as a removed member keeps one):
    // the envelope and the one-time signature are fine, so it travels; the author's
    // opening refuses it.
    let outsider = s.h.outsider();
    let ack = s.ack_by(&outsider);
    let bytes = s.h.seal_item(CAROL, &ack);
    let a = s.accepted(ALICE, &bytes);
    assert_eq!(s.attribute(&a), Err(SeenError::NotAReader));
    let own = s.ack(ALICE);
    let bytes = s.h.seal_item(ALICE, &own);
    let a = s.accepted(ALICE, &bytes);
    assert_eq!(s.attribute(&a), Err(SeenError::NotAReader));
}

#[test]
fn an_ack_of_a_report_that_did_not_ask_is_refused() {
    let mut s = scene();
    let ack = s.ack(BOB);
    let bytes = s.h.seal_item(BOB, &ack);
    s.held.ask = None;
    assert_eq!(
        s.judge(CAROL, &bytes),
        Verdict::Reject(Reason::NotAskingSeen)
    );
    // Not known yet (on its way): nobody is blamed, sync brings it again.
    s.held.id = ItemId([9; 32]);
    assert_eq!(
        s.judge(CAROL, &bytes),
        Verdict::Ignore(Reason::UnknownReport)
    );
}

#[test]
fn an_ack_that_would_outlive_its_report_is_refused() {
    let mut s = scene();
    let (ask, expires_at) = s.held.ask.unwrap();
    let keys = s.h.members[BOB].keys.clone();
    let ack = seen::acknowledge(
        &keys,
        &s.h.hood(),
        s.held.id,
        &ask,
        s.h.now,
        expires_at + 3600,
        &mut s.h.rng,
    )
    .unwrap();
    let bytes = s.h.seal_item(BOB, &ack);
    assert_eq!(s.judge(CAROL, &bytes), Verdict::Reject(Reason::SeenExpiry));
}

#[test]
fn a_report_holds_at_most_as_many_acks_as_the_hood_has_members() {
    let mut s = scene();
    let ack = s.ack(BOB);
    let bytes = s.h.seal_item(BOB, &ack);
    s.held.acks = s.h.roster.members().count() - 1;
    assert!(matches!(s.judge(CAROL, &bytes), Verdict::Accept(_)));
    s.held.acks += 1;
    assert_eq!(s.judge(CAROL, &bytes), Verdict::Ignore(Reason::TooManyAcks));
}

#[test]
fn the_ask_follows_the_report_only_when_present_and_only_urgent_reports_carry_it() {
    let mut s = scene();
    let mut plain = s.report.clone();
    plain.ask_seen = None;
    let with = Body::Report(s.report.clone()).encode();
    let without = Body::Report(plain.clone()).encode();
    // A report that asks for nothing is encoded as before the ask existed.
    assert_eq!(without, porchlight_proto::codec::encode(&plain));
    assert_eq!(&with[..without.len()], &without[..]);
    assert_eq!(with.len(), without.len() + 32);
    assert_eq!(
        Body::decode(Kind::Report, &with).unwrap(),
        Body::Report(s.report.clone())
    );
    // Anything more after the ask is refused.
    let mut longer = with.clone();
    longer.push(0);
    assert!(Body::decode(Kind::Report, &longer).is_err());
    // Only an urgent report may ask.
    let mut warning = s.report.clone();
    warning.severity = Severity::Warning;
    let bytes = s.h.seal(ALICE, &Body::Report(warning));
    assert!(matches!(
        s.h.validate_as(BOB, &bytes),
        Verdict::Reject(Reason::InvalidBody(_))
    ));
}
