//! Property tests over every wire type and every decoder.
//!
//! - Round trips: decoding an encoding gives the same value back, and encoding that
//!   value again gives the same bytes. Pure codec round trips use arbitrary field values;
//!   the signed and sealed values are made with real keys by the crate's own constructors.
//! - Robustness: no decoder panics on arbitrary input, and `validate` never accepts bytes
//!   that are not exactly a valid envelope (arbitrary, truncated or with a byte flipped).

use std::fmt::Debug;
use std::sync::OnceLock;

use porchlight_proto::codec::{self, CodecError};
use porchlight_proto::envelope::{self, Envelope};
use porchlight_proto::hood::{Permission, Policy, RateLimit};
use porchlight_proto::identity::{ExchangeKey, MemberId, MemberKeys, Signature};
use porchlight_proto::invite::{self, MAX_TICKET_BYTES, SignedTicket, Ticket, TicketId};
use porchlight_proto::item::{Body, Item, Kind, OpId};
use porchlight_proto::keys::{self, EpochId, EpochKey, EpochWrap, KeyRing, Wrap};
use porchlight_proto::limits::MAX_TTL_SECS;
use porchlight_proto::membership::{
    self, Genesis, Join, JoinRequest, JoinResponse, MAX_REFUSAL_BYTES, Op, Promote, Rekey, Remove,
    Roster, Welcome,
};
use porchlight_proto::report::{
    Category, ClipRef, Location, MAX_CLIPS, Report, Resolve, Retract, Severity, Update,
};
use porchlight_proto::testkit::{NOW, SeededRng};
use porchlight_proto::validate::{Context, RateLimiter, Verdict, validate};
use porchlight_proto::{HoodId, ItemId, domain};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;

const BECH32_ALPHABET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Encode, decode, re-encode: the same value and the same bytes.
fn check_round_trip<T, E>(
    value: &T,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, E>,
) -> Result<(), TestCaseError>
where
    T: PartialEq + Debug,
    E: Debug,
{
    let bytes = encode(value);
    let back = decode(&bytes).map_err(|e| {
        TestCaseError::fail(format!("encoding of {value:?} does not decode: {e:?}"))
    })?;
    prop_assert_eq!(&back, value);
    prop_assert_eq!(encode(&back), bytes);
    Ok(())
}

fn check_body_round_trip(body: &Body) -> Result<(), TestCaseError> {
    let kind = body.kind();
    check_round_trip(body, Body::encode, |b| Body::decode(kind, b))
}

/// The item round trips, and so does its body as the kind it declares.
fn check_item_round_trip(item: &Item) -> Result<(), TestCaseError> {
    check_round_trip(item, Item::encode, Item::decode)?;
    let body = item
        .body()
        .map_err(|e| TestCaseError::fail(format!("body does not decode: {e:?}")))?;
    prop_assert_eq!(&body.encode(), &item.body);
    check_body_round_trip(&body)
}

/// `bytes` with its varint at `offset` re-encoded one byte longer than it needs to be
/// (same value): a low group of continuation bits, then a zero byte.
fn with_overlong_varint(bytes: &[u8], offset: usize) -> Vec<u8> {
    let end = bytes[offset..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .map(|i| offset + i)
        .expect("a varint ends");
    let mut out = bytes.to_vec();
    out[end] |= 0x80;
    out.insert(end + 1, 0x00);
    out
}

// ---------------------------------------------------------------------------------------
// Strategies: arbitrary values (for pure codec round trips)
// ---------------------------------------------------------------------------------------

/// Any text, control characters and newlines included.
fn any_text() -> impl Strategy<Value = String> {
    "(?s).{0,24}"
}

fn member_id() -> impl Strategy<Value = MemberId> {
    any::<[u8; 32]>().prop_map(MemberId)
}

fn signature() -> impl Strategy<Value = Signature> {
    any::<[u8; 64]>().prop_map(Signature)
}

fn hood_id() -> impl Strategy<Value = HoodId> {
    any::<[u8; 32]>().prop_map(HoodId)
}

fn epoch_id() -> impl Strategy<Value = EpochId> {
    any::<[u8; 32]>().prop_map(EpochId)
}

fn item_id() -> impl Strategy<Value = ItemId> {
    any::<[u8; 32]>().prop_map(ItemId)
}

fn exchange_key() -> impl Strategy<Value = ExchangeKey> {
    any::<[u8; 32]>().prop_map(ExchangeKey)
}

fn kind() -> impl Strategy<Value = Kind> {
    select(vec![
        Kind::Report,
        Kind::Update,
        Kind::Resolve,
        Kind::Retract,
        Kind::Membership,
        Kind::Seen,
    ])
}

fn permission() -> impl Strategy<Value = Permission> {
    prop_oneof![
        Just(Permission::AnyMember),
        Just(Permission::AdminsOnly),
        any::<u16>().prop_map(Permission::Quorum)
    ]
}

prop_compose! {
    /// Any policy, valid or not: the codec does not judge.
    fn any_policy()(
        invite in permission(),
        remove in permission(),
        max_items in any::<u16>(),
        window_secs in any::<u32>(),
        default_ttl_secs in any::<u32>(),
        max_ttl_secs in any::<u32>(),
    ) -> Policy {
        Policy { invite, remove, rate_limit: RateLimit { max_items, window_secs }, default_ttl_secs, max_ttl_secs }
    }
}

fn category() -> impl Strategy<Value = Category> {
    select(Category::ALL.to_vec())
}

fn severity() -> impl Strategy<Value = Severity> {
    select(vec![Severity::Info, Severity::Warning, Severity::Urgent])
}

fn geohash() -> impl Strategy<Value = String> {
    "[0123456789bcdefghjkmnpqrstuvwxyz]{1,7}"
}

prop_compose! {
    fn any_clip()(
        sha256 in any::<[u8; 32]>(),
        size in any::<u64>(),
        camera in any_text(),
        captured_at in any::<u64>(),
    ) -> ClipRef {
        ClipRef { sha256, size, camera, captured_at }
    }
}

prop_compose! {
    fn any_report()(
        created_at in any::<u64>(),
        expires_at in any::<u64>(),
        category in category(),
        severity in severity(),
        text in any_text(),
        behavior in option::of(any_text()),
        location_text in any_text(),
        geohash in option::of(geohash()),
        clips in vec(any_clip(), 0..=MAX_CLIPS),
        ask_seen in option::of(any::<[u8; 32]>()),
    ) -> Report {
        Report {
            created_at,
            expires_at,
            category,
            severity,
            text,
            behavior,
            location: Location { text: location_text, geohash },
            clips,
            ask_seen: ask_seen.map(|key| porchlight_proto::seen::SeenAsk { key }),
        }
    }
}

prop_compose! {
    fn any_update()(
        created_at in any::<u64>(),
        expires_at in any::<u64>(),
        report in item_id(),
        severity in option::of(severity()),
        text in any_text(),
    ) -> Update {
        Update { created_at, expires_at, report, severity, text }
    }
}

prop_compose! {
    fn any_resolve()(
        created_at in any::<u64>(),
        expires_at in any::<u64>(),
        report in item_id(),
        text in any_text(),
    ) -> Resolve {
        Resolve { created_at, expires_at, report, text }
    }
}

prop_compose! {
    fn any_retract()(
        created_at in any::<u64>(),
        expires_at in any::<u64>(),
        report in item_id(),
    ) -> Retract {
        Retract { created_at, expires_at, report }
    }
}

prop_compose! {
    fn any_wrap()(
        to in member_id(),
        enc in any::<[u8; 32]>(),
        ciphertext in any::<[u8; 48]>(),
    ) -> Wrap {
        Wrap { to, enc, ciphertext }
    }
}

fn any_parents() -> impl Strategy<Value = Vec<OpId>> {
    vec(any::<[u8; 32]>().prop_map(OpId), 0..4)
}

prop_compose! {
    fn any_epoch_wrap()(
        epoch in epoch_id(),
        generation in any::<u64>(),
        wrap in any_wrap(),
    ) -> EpochWrap {
        EpochWrap { epoch, generation, wrap }
    }
}

prop_compose! {
    fn any_genesis()(
        salt in any::<[u8; 32]>(),
        created_at in any::<u64>(),
        name in any_text(),
        founder_name in any_text(),
        founder_key in exchange_key(),
        policy in any_policy(),
    ) -> Genesis {
        Genesis { salt, created_at, name, founder_name, founder_key, policy }
    }
}

prop_compose! {
    /// Any signed ticket whose encoding fits `MAX_TICKET_BYTES` (so it has a text code):
    /// a 534-byte body takes a 2-byte length and a 64-byte signature to exactly 600.
    fn any_signed_ticket()(
        body in vec(any::<u8>(), 0..=MAX_TICKET_BYTES - 66),
        signature in signature(),
    ) -> SignedTicket {
        SignedTicket { body, signature }
    }
}

prop_compose! {
    fn any_join_request()(
        ticket in any_signed_ticket(),
        joiner in member_id(),
        exchange_key in exchange_key(),
        name in any_text(),
        proof in signature(),
    ) -> JoinRequest {
        JoinRequest { ticket, joiner, exchange_key, name, proof }
    }
}

prop_compose! {
    fn any_join()(
        parents in any_parents(),
        created_at in any::<u64>(),
        request in any_join_request(),
        wraps in vec(any_epoch_wrap(), 0..4),
    ) -> Join {
        Join { parents, created_at, request, wraps }
    }
}

prop_compose! {
    fn any_remove()(parents in any_parents(), created_at in any::<u64>(), target in member_id()) -> Remove {
        Remove { parents, created_at, target }
    }
}

prop_compose! {
    fn any_remove_vote()(parents in any_parents(), created_at in any::<u64>(), target in member_id()) -> porchlight_proto::quorum::RemoveVote {
        porchlight_proto::quorum::RemoveVote { parents, created_at, target }
    }
}

prop_compose! {
    fn any_promote()(parents in any_parents(), created_at in any::<u64>(), target in member_id()) -> Promote {
        Promote { parents, created_at, target }
    }
}

prop_compose! {
    fn any_rekey()(
        parents in any_parents(),
        created_at in any::<u64>(),
        generation in any::<u64>(),
        epoch in epoch_id(),
        wraps in vec(any_wrap(), 0..4),
    ) -> Rekey {
        Rekey { parents, created_at, generation, epoch, wraps }
    }
}

prop_compose! {
    fn any_ticket()(
        hood in hood_id(),
        hood_name in any_text(),
        inviter in member_id(),
        id in any::<[u8; 16]>(),
        expires_at in any::<u64>(),
        bootstrap in vec(any_text(), 0..=4),
    ) -> Ticket {
        Ticket { hood, hood_name, inviter, id: TicketId(id), expires_at, bootstrap }
    }
}

prop_compose! {
    fn any_item()(
        author in member_id(),
        kind in kind(),
        body in vec(any::<u8>(), 0..300),
        signature in signature(),
    ) -> Item {
        Item { author, kind, body, signature }
    }
}

prop_compose! {
    fn any_envelope()(
        version in any::<u8>(),
        hood in hood_id(),
        epoch in epoch_id(),
        window in any::<u64>(),
        nonce in any::<[u8; 24]>(),
        ciphertext in vec(any::<u8>(), 0..600),
    ) -> Envelope {
        Envelope { version, hood, epoch, window, nonce, ciphertext }
    }
}

// ---------------------------------------------------------------------------------------
// Strategies: valid values (for the crate's checking constructors)
// ---------------------------------------------------------------------------------------

/// A name the crate accepts: at most 16 characters (so at most 64 bytes), no control
/// characters, not blank.
fn valid_name() -> impl Strategy<Value = String> {
    "[^\\s\\p{C}][^\\p{C}]{0,15}"
}

/// A bootstrap address the crate accepts: no whitespace, at most 80 bytes.
fn valid_addr() -> impl Strategy<Value = String> {
    "[^\\s\\p{C}]{1,20}"
}

/// A person's text: not blank, newlines allowed, other control characters not.
fn valid_text() -> impl Strategy<Value = String> {
    "[^\\s\\p{C}](?:[^\\p{C}]|\n){0,60}"
}

fn valid_policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(Permission::AnyMember), Just(Permission::AdminsOnly)],
        prop_oneof![
            Just(Permission::AnyMember),
            Just(Permission::AdminsOnly),
            (2..=64u16).prop_map(Permission::Quorum)
        ],
        1..=u16::MAX,
        1..=7 * 24 * 3600u32,
        1..=MAX_TTL_SECS,
    )
        .prop_flat_map(|(invite, remove, max_items, window_secs, max_ttl_secs)| {
            (1..=max_ttl_secs).prop_map(move |default_ttl_secs| Policy {
                invite,
                remove,
                rate_limit: RateLimit {
                    max_items,
                    window_secs,
                },
                default_ttl_secs,
                max_ttl_secs,
            })
        })
}

prop_compose! {
    fn valid_clip()(
        sha256 in any::<[u8; 32]>(),
        size in any::<u64>(),
        camera in "[^\\p{C}]{0,16}",
        captured_at in any::<u64>(),
    ) -> ClipRef {
        ClipRef { sha256, size, camera, captured_at }
    }
}

prop_compose! {
    /// A report that `validate` accepts at `NOW` under the default policy: created in the
    /// hour before `NOW`, still live, within 30 days.
    fn valid_report()(
        age in 0u64..3600,
        lifetime in 3601u64..=u64::from(MAX_TTL_SECS),
        category in category(),
        severity in severity(),
        text in valid_text(),
        behavior in option::of(valid_text()),
        location_text in "[^\\p{C}]{0,30}",
        geohash in option::of(geohash()),
        clips in vec(valid_clip(), 0..=MAX_CLIPS),
    ) -> Report {
        let created_at = NOW - age;
        let behavior = match (category, behavior) {
            (Category::SuspiciousActivity, None) => Some("tried the door handles".to_owned()),
            (_, behavior) => behavior,
        };
        Report {
            created_at,
            expires_at: created_at + lifetime,
            category,
            severity,
            text,
            behavior,
            location: Location { text: location_text, geohash },
            clips,
            ask_seen: None,
        }
    }
}

prop_compose! {
    /// A ticket `SignedTicket::issue` accepts, with the inviter's keys from `seed`.
    fn valid_ticket()(
        seed in any::<u64>(),
        hood in hood_id(),
        hood_name in valid_name(),
        id in any::<[u8; 16]>(),
        expires_at in any::<u64>(),
        bootstrap in vec(valid_addr(), 0..=4),
    ) -> (u64, Ticket) {
        let inviter = MemberKeys::generate(&mut SeededRng::new(seed)).id();
        (seed, Ticket { hood, hood_name, inviter, id: TicketId(id), expires_at, bootstrap })
    }
}

/// A hood made with real keys by the crate's constructors: founded, a joiner admitted,
/// promoted, removed, and a rekey after it. Every operation is kept.
#[derive(Debug, Clone)]
struct RealHood {
    founder: MemberKeys,
    genesis: Item,
    join: Item,
    promote: Item,
    remove: Item,
    rekey: Item,
    request: JoinRequest,
    roster: Roster,
}

/// A real welcome (of a hood whose joiner was removed since), for its checkpoint.
fn some_welcome() -> Welcome {
    let hood = real_hood(7, "Elm Street", "Alice", "Bob", Policy::default());
    hood.roster
        .welcome(&hood.founder, &hood.request.joiner)
        .expect("the founder admitted the joiner")
}

fn real_hood(
    seed: u64,
    hood_name: &str,
    founder_name: &str,
    joiner_name: &str,
    policy: Policy,
) -> RealHood {
    let mut rng = SeededRng::new(seed);
    let founder = MemberKeys::generate(&mut rng);
    let new = membership::found(&founder, hood_name, founder_name, policy, NOW, &mut rng)
        .expect("a valid name and policy found a hood");
    let mut roster = new.roster().expect("a fresh hood is valid");
    let mut ring = KeyRing::new();
    roster.learn_keys(&founder, &mut ring);
    let ticket = Ticket {
        hood: new.hood,
        hood_name: hood_name.to_owned(),
        inviter: founder.id(),
        id: TicketId(rng.bytes()),
        expires_at: NOW + 3600,
        bootstrap: vec!["/ip4/192.0.2.1/tcp/4001".into()],
    };
    let signed = SignedTicket::issue(&founder, &ticket).expect("a valid ticket is issued");
    let joiner = MemberKeys::generate(&mut rng);
    let request =
        JoinRequest::new(&joiner, signed, &ticket, joiner_name).expect("a valid name joins");
    let join = roster
        .admit(&founder, &ring, &request, NOW, &mut rng)
        .expect("the founder may admit");
    roster.insert(&join).expect("the join is well formed");
    let promote = roster
        .promote(&founder, joiner.id(), NOW)
        .expect("the founder may promote");
    roster.insert(&promote).expect("the promote is well formed");
    // Under a quorum policy the founder's removal is a vote.
    let remove = if policy.remove.quorum().is_some() {
        roster.vote_remove(&founder, joiner.id(), NOW)
    } else {
        roster.remove(&founder, joiner.id(), NOW)
    }
    .expect("the founder may remove (or vote to)");
    roster.insert(&remove).expect("the remove is well formed");
    let (rekey, _, _) = roster
        .rekey(&founder, NOW, &mut rng)
        .expect("the founder may rekey");
    roster.insert(&rekey).expect("the rekey is well formed");
    RealHood {
        founder: founder.clone(),
        genesis: new.genesis,
        join,
        promote,
        remove,
        rekey,
        request,
        roster,
    }
}

prop_compose! {
    fn any_real_hood()(
        seed in any::<u64>(),
        hood_name in valid_name(),
        founder_name in valid_name(),
        joiner_name in valid_name(),
        policy in valid_policy(),
    ) -> RealHood {
        real_hood(seed, &hood_name, &founder_name, &joiner_name, policy)
    }
}

// ---------------------------------------------------------------------------------------
// A fixed hood to validate against
// ---------------------------------------------------------------------------------------

struct Fixture {
    founder: MemberKeys,
    key: EpochKey,
    roster: Roster,
    ring: KeyRing,
    rate: RateLimiter,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = SeededRng::new(0x9017);
        let founder = MemberKeys::generate(&mut rng);
        let new = membership::found(
            &founder,
            "Elm Street",
            "Alice",
            Policy::default(),
            NOW,
            &mut rng,
        )
        .expect("the default policy founds a hood");
        let roster = new.roster().expect("a fresh hood is valid");
        let mut ring = KeyRing::new();
        assert_eq!(roster.learn_keys(&founder, &mut ring), (1, 0));
        Fixture {
            founder,
            key: new.epoch,
            roster,
            ring,
            rate: RateLimiter::new(),
        }
    })
}

fn judge(bytes: &[u8]) -> Verdict {
    let f = fixture();
    validate(
        bytes,
        &Context {
            roster: &f.roster,
            keys: &f.ring,
            rate: &f.rate,
            lookup: &(),
            now: NOW,
        },
    )
}

/// `report` signed by the fixture's founder and sealed under its epoch key.
fn sealed_report(report: &Report, nonce: [u8; 24]) -> Vec<u8> {
    let f = fixture();
    let item = Item::sign(&f.founder, &f.roster.hood(), &Body::Report(report.clone()));
    envelope::seal(&item, &f.roster.hood(), &f.key, nonce).expect("a report fits an envelope")
}

fn is_accept(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Accept(_))
}

// ---------------------------------------------------------------------------------------
// Round trips: arbitrary values through the codec
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn policy_round_trips(policy in any_policy()) {
        check_round_trip(&policy, codec::encode, |b| codec::decode::<Policy>(b, 64))?;
    }

    #[test]
    fn report_body_round_trips(report in any_report()) {
        check_body_round_trip(&Body::Report(report))?;
    }

    #[test]
    fn seen_body_round_trips(
        created_at in any::<u64>(),
        expires_at in any::<u64>(),
        report in item_id(),
        enc in any::<[u8; 32]>(),
        sealed in vec(any::<u8>(), porchlight_proto::seen::SEALED_BYTES),
    ) {
        let mut fixed = [0u8; porchlight_proto::seen::SEALED_BYTES];
        fixed.copy_from_slice(&sealed);
        check_body_round_trip(&Body::Seen(porchlight_proto::seen::Seen {
            created_at,
            expires_at,
            report,
            enc,
            sealed: fixed,
        }))?;
    }

    #[test]
    fn update_body_round_trips(update in any_update()) {
        check_body_round_trip(&Body::Update(update))?;
    }

    #[test]
    fn resolve_body_round_trips(resolve in any_resolve()) {
        check_body_round_trip(&Body::Resolve(resolve))?;
    }

    #[test]
    fn retract_body_round_trips(retract in any_retract()) {
        check_body_round_trip(&Body::Retract(retract))?;
    }

    #[test]
    fn genesis_body_round_trips(genesis in any_genesis()) {
        check_body_round_trip(&Body::Membership(Op::Genesis(genesis)))?;
    }

    #[test]
    fn join_body_round_trips(join in any_join()) {
        check_body_round_trip(&Body::Membership(Op::Join(join)))?;
    }

    #[test]
    fn remove_body_round_trips(remove in any_remove()) {
        check_body_round_trip(&Body::Membership(Op::Remove(remove)))?;
    }

    #[test]
    fn remove_vote_body_round_trips(vote in any_remove_vote()) {
        check_body_round_trip(&Body::Membership(Op::RemoveVote(vote)))?;
    }

    #[test]
    fn promote_body_round_trips(promote in any_promote()) {
        check_body_round_trip(&Body::Membership(Op::Promote(promote)))?;
    }

    #[test]
    fn rekey_body_round_trips(rekey in any_rekey()) {
        check_body_round_trip(&Body::Membership(Op::Rekey(rekey)))?;
    }

    #[test]
    fn item_round_trips(item in any_item()) {
        check_round_trip(&item, Item::encode, Item::decode)?;
    }

    #[test]
    fn envelope_round_trips(envelope in any_envelope()) {
        check_round_trip(&envelope, Envelope::encode, Envelope::decode)?;
    }

    #[test]
    fn ticket_round_trips(ticket in any_ticket()) {
        check_round_trip(&ticket, codec::encode, |b| codec::decode::<Ticket>(b, MAX_TICKET_BYTES))?;
    }

    #[test]
    fn signed_ticket_round_trips_through_the_codec(signed in any_signed_ticket()) {
        check_round_trip(&signed, codec::encode, |b| {
            codec::decode::<SignedTicket>(b, MAX_TICKET_BYTES)
        })?;
    }

    #[test]
    fn signed_ticket_round_trips_through_its_text_code(signed in any_signed_ticket()) {
        check_round_trip(&signed, |s| s.to_code().into_bytes(), |b| {
            SignedTicket::from_code(std::str::from_utf8(b).expect("a code is ASCII"))
        })?;
    }

    #[test]
    fn join_request_round_trips(request in any_join_request()) {
        check_round_trip(&request, JoinRequest::encode, JoinRequest::decode)?;
    }

    #[test]
    fn welcome_of_arbitrary_items_round_trips(ops in vec(any_item(), 0..6)) {
        let welcome = Welcome { ops, ..some_welcome() };
        check_round_trip(&welcome, Welcome::encode, Welcome::decode)?;
    }

    #[test]
    fn join_response_with_a_welcome_round_trips(ops in vec(any_item(), 0..6)) {
        let response = JoinResponse::Welcome(Box::new(Welcome { ops, ..some_welcome() }));
        check_round_trip(&response, JoinResponse::encode, JoinResponse::decode)?;
    }

    #[test]
    fn join_response_with_a_refusal_round_trips(why in "[^\\p{C}]{0,50}") {
        let response = JoinResponse::Refused(why);
        check_round_trip(&response, JoinResponse::encode, JoinResponse::decode)?;
    }

    #[test]
    fn refusal_is_cut_to_its_limit_on_a_character_boundary(why in "[^\\p{C}]{0,120}") {
        let JoinResponse::Refused(cut) = JoinResponse::refused(&why) else {
            return Err(TestCaseError::fail("refused() makes a refusal"));
        };
        prop_assert!(cut.len() <= MAX_REFUSAL_BYTES);
        prop_assert!(why.starts_with(&cut));
        // Whole when it fits; otherwise short of the limit by less than one character.
        prop_assert!(cut == why || cut.len() > MAX_REFUSAL_BYTES - 4);
    }

    #[test]
    fn item_with_an_overlong_body_length_is_refused(item in any_item()) {
        // author (32 bytes), kind (1 byte), then the body's length.
        let bytes = with_overlong_varint(&item.encode(), 33);
        prop_assert_eq!(Item::decode(&bytes), Err(CodecError::NonCanonical));
    }

    #[test]
    fn envelope_with_an_overlong_ciphertext_length_is_refused(envelope in any_envelope()) {
        // version (1), hood (32), epoch (32), window (a varint), nonce (24), then the
        // ciphertext's length.
        let at = 65 + codec::encode(&envelope.window).len() + 24;
        let bytes = with_overlong_varint(&envelope.encode(), at);
        prop_assert_eq!(Envelope::decode(&bytes), Err(CodecError::NonCanonical));
    }
}

// ---------------------------------------------------------------------------------------
// Round trips: values made with real keys by the crate's constructors
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn founded_genesis_item_round_trips(hood in any_real_hood()) {
        prop_assert!(matches!(hood.genesis.body(), Ok(Body::Membership(Op::Genesis(_)))));
        check_item_round_trip(&hood.genesis)?;
    }

    #[test]
    fn admitted_join_item_round_trips(hood in any_real_hood()) {
        prop_assert!(matches!(hood.join.body(), Ok(Body::Membership(Op::Join(_)))));
        check_item_round_trip(&hood.join)?;
    }

    #[test]
    fn promote_item_round_trips(hood in any_real_hood()) {
        prop_assert!(matches!(hood.promote.body(), Ok(Body::Membership(Op::Promote(_)))));
        check_item_round_trip(&hood.promote)?;
    }

    #[test]
    fn remove_item_round_trips(hood in any_real_hood()) {
        prop_assert!(matches!(
            hood.remove.body(),
            Ok(Body::Membership(Op::Remove(_) | Op::RemoveVote(_)))
        ));
        check_item_round_trip(&hood.remove)?;
    }

    #[test]
    fn rekey_item_round_trips(hood in any_real_hood()) {
        prop_assert!(matches!(hood.rekey.body(), Ok(Body::Membership(Op::Rekey(_)))));
        check_item_round_trip(&hood.rekey)?;
    }

    #[test]
    fn join_request_from_real_keys_round_trips(hood in any_real_hood()) {
        check_round_trip(&hood.request, JoinRequest::encode, JoinRequest::decode)?;
    }

    #[test]
    fn welcome_of_a_real_hood_round_trips(hood in any_real_hood()) {
        let welcome = hood
            .roster
            .welcome(&hood.founder, &hood.request.joiner)
            .expect("the founder admitted the joiner");
        prop_assert_eq!(welcome.ops.len(), 6);
        check_round_trip(&welcome, Welcome::encode, Welcome::decode)?;
    }

    #[test]
    fn issued_ticket_round_trips_through_the_codec((seed, ticket) in valid_ticket()) {
        let keys = MemberKeys::generate(&mut SeededRng::new(seed));
        let signed = SignedTicket::issue(&keys, &ticket).expect("a valid ticket is issued");
        check_round_trip(&signed, codec::encode, |b| {
            codec::decode::<SignedTicket>(b, MAX_TICKET_BYTES)
        })?;
        check_round_trip(&ticket, codec::encode, |b| codec::decode::<Ticket>(b, MAX_TICKET_BYTES))?;
    }

    #[test]
    fn issued_ticket_round_trips_through_its_text_code((seed, ticket) in valid_ticket()) {
        let keys = MemberKeys::generate(&mut SeededRng::new(seed));
        let signed = SignedTicket::issue(&keys, &ticket).expect("a valid ticket is issued");
        let code = signed.to_code();
        let back = SignedTicket::from_code(&code).expect("an issued code parses");
        prop_assert_eq!(&back, &signed);
        prop_assert_eq!(back.to_code(), code);
    }

    #[test]
    fn issued_ticket_code_opens_to_its_ticket_until_it_expires(
        (seed, ticket) in valid_ticket(),
        before in any::<u64>(),
    ) {
        let keys = MemberKeys::generate(&mut SeededRng::new(seed));
        let code = SignedTicket::issue(&keys, &ticket).expect("a valid ticket is issued").to_code();
        let now = before % ticket.expires_at.saturating_add(1);
        let (_, opened) = invite::parse(&code, now).expect("an unexpired issued code parses");
        prop_assert_eq!(opened, ticket);
    }

    #[test]
    fn report_with_clips_and_geohash_round_trips_as_a_signed_item(
        seed in any::<u64>(),
        report in valid_report(),
        hood in hood_id(),
    ) {
        report.check().expect("the strategy makes valid reports");
        let keys = MemberKeys::generate(&mut SeededRng::new(seed));
        let item = Item::sign(&keys, &hood, &Body::Report(report.clone()));
        check_item_round_trip(&item)?;
        prop_assert_eq!(item.body(), Ok(Body::Report(report)));
    }

    #[test]
    fn sealed_envelope_round_trips(report in valid_report(), nonce in any::<[u8; 24]>()) {
        let bytes = sealed_report(&report, nonce);
        let envelope = Envelope::decode(&bytes).expect("a sealed envelope decodes");
        prop_assert_eq!(envelope.encode(), bytes);
        check_round_trip(&envelope, Envelope::encode, Envelope::decode)?;
    }
}

// ---------------------------------------------------------------------------------------
// Arbitrary input never panics a decoder
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelope_decode_never_panics(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn item_decode_never_panics(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = Item::decode(&bytes);
    }

    #[test]
    fn body_decode_never_panics_for_any_kind(kind in kind(), bytes in vec(any::<u8>(), 0..1024)) {
        let _ = Body::decode(kind, &bytes);
    }

    #[test]
    fn join_request_decode_never_panics(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = JoinRequest::decode(&bytes);
    }

    #[test]
    fn welcome_decode_never_panics(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = Welcome::decode(&bytes);
    }

    #[test]
    fn join_response_decode_never_panics(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = JoinResponse::decode(&bytes);
    }

    #[test]
    fn policy_decode_never_panics(bytes in vec(any::<u8>(), 0..64)) {
        let _ = codec::decode::<Policy>(&bytes, 64);
    }

    #[test]
    fn signed_ticket_decode_never_panics(bytes in vec(any::<u8>(), 0..700)) {
        let _ = codec::decode::<SignedTicket>(&bytes, MAX_TICKET_BYTES);
    }

    #[test]
    fn from_code_never_panics_on_arbitrary_strings(code in "(?s).{0,300}") {
        let _ = SignedTicket::from_code(&code);
    }

    #[test]
    fn from_code_never_panics_on_bech32_strings(
        rest in proptest::string::string_regex(&format!("[{BECH32_ALPHABET}]{{0,1100}}")).unwrap(),
        upper in any::<bool>(),
    ) {
        let code = format!("porchlight1{rest}");
        let code = if upper { code.to_uppercase() } else { code };
        let _ = SignedTicket::from_code(&code);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_strings(code in "(?s).{0,300}", now in any::<u64>()) {
        let _ = invite::parse(&code, now);
    }

    #[test]
    fn parse_never_panics_on_bech32_strings(
        rest in proptest::string::string_regex(&format!("[{BECH32_ALPHABET}]{{0,1100}}")).unwrap(),
        now in any::<u64>(),
    ) {
        let _ = invite::parse(&format!("porchlight1{rest}"), now);
    }

    #[test]
    fn parse_refuses_codes_with_arbitrary_bodies(signed in any_signed_ticket(), now in any::<u64>()) {
        // A well-formed code around bytes nobody signed.
        prop_assert!(invite::parse(&signed.to_code(), now).is_err());
    }

    #[test]
    fn open_refuses_arbitrary_body_bytes(signed in any_signed_ticket()) {
        prop_assert!(signed.open().is_err());
    }

    #[test]
    fn open_refuses_a_ticket_under_an_arbitrary_signature(
        ticket in any_ticket(),
        signature in signature(),
    ) {
        let signed = SignedTicket { body: codec::encode(&ticket), signature };
        prop_assert!(signed.open().is_err());
    }

    #[test]
    fn validate_never_accepts_arbitrary_bytes(bytes in vec(any::<u8>(), 0..1024)) {
        prop_assert!(!is_accept(&judge(&bytes)));
    }

    #[test]
    fn validate_never_accepts_an_arbitrary_envelope_for_the_hood(
        version in prop_oneof![Just(envelope::VERSION), any::<u8>()],
        window_offset in 0u64..2048,
        nonce in any::<[u8; 24]>(),
        ciphertext in vec(any::<u8>(), 0..600),
    ) {
        // Right hood, a known epoch and (mostly) one of its windows, so every check up
        // to the AEAD passes.
        let f = fixture();
        let envelope = Envelope {
            version,
            hood: f.roster.hood(),
            epoch: f.key.id(),
            window: porchlight_proto::keys::window_of(NOW) + window_offset,
            nonce,
            ciphertext,
        };
        prop_assert!(!is_accept(&judge(&envelope.encode())));
    }
}

// ---------------------------------------------------------------------------------------
// Valid envelopes, damaged
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn valid_envelope_is_accepted(report in valid_report(), nonce in any::<[u8; 24]>()) {
        let verdict = judge(&sealed_report(&report, nonce));
        prop_assert!(is_accept(&verdict), "{:?}", verdict);
    }

    #[test]
    fn valid_envelope_with_a_byte_flipped_is_never_accepted(
        report in valid_report(),
        nonce in any::<[u8; 24]>(),
        at in any::<Index>(),
        mask in 1..=u8::MAX,
    ) {
        let mut bytes = sealed_report(&report, nonce);
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        let verdict = judge(&bytes);
        prop_assert!(!is_accept(&verdict), "flipping byte {} by {:#04x}: {:?}", i, mask, verdict);
    }

    #[test]
    fn valid_envelope_truncated_at_any_length_is_never_accepted(
        report in valid_report(),
        nonce in any::<[u8; 24]>(),
    ) {
        let bytes = sealed_report(&report, nonce);
        for len in 0..bytes.len() {
            let verdict = judge(&bytes[..len]);
            prop_assert!(!is_accept(&verdict), "truncated to {}: {:?}", len, verdict);
        }
    }

    #[test]
    fn validate_never_panics_on_signed_items_with_arbitrary_bodies(
        kind in kind(),
        body in vec(any::<u8>(), 0..400),
        nonce in any::<[u8; 24]>(),
    ) {
        // A member's genuine signature over bytes that may mean anything, sealed under the
        // real key: this reaches the body's decoding and every rule after it.
        let f = fixture();
        let hood = f.roster.hood();
        let signature = f.founder.sign(&[domain::ITEM, &hood.0, &[u8::from(kind)], &body]);
        let item = Item { author: f.founder.id(), kind, body, signature };
        // In the window of now: the body may not decode to say when it was made.
        let window = porchlight_proto::keys::window_of(NOW);
        let bytes = envelope::seal_in_window(&item, &hood, &f.key, window, nonce)
            .expect("a small item fits");
        if let Verdict::Accept(accepted) = judge(&bytes) {
            prop_assert_eq!(accepted.body.encode(), item.body);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rekeys and generations
// ---------------------------------------------------------------------------------------

fn generation() -> impl Strategy<Value = u64> {
    prop_oneof![1..=1000u64, (u64::MAX - 4)..=u64::MAX, 1..=u64::MAX]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn rekey_after_any_generation_is_well_formed_and_jumps_are_rejected(
        seed in any::<u64>(),
        generation in generation(),
    ) {
        let mut rng = SeededRng::new(seed);
        let founder = MemberKeys::generate(&mut rng);
        let new = membership::found(&founder, "Elm Street", "Alice", Policy::default(), NOW, &mut rng)
            .expect("the default policy founds a hood");
        let mut roster = new.roster().expect("a fresh hood is valid");
        let mut ring = KeyRing::new();
        roster.learn_keys(&founder, &mut ring);
        // A member rekeys at any generation: validate accepts it, so every node inserts it.
        let key = EpochKey::generate(&roster.hood(), generation, NOW, &mut rng);
        let wrap = keys::wrap(&key, &roster.hood(), founder.id(), &founder.exchange_key(), &mut rng)
            .expect("the founder's key is usable");
        let op = Op::Rekey(Rekey { parents: roster.heads(), created_at: NOW, generation, epoch: key.id(), wraps: vec![wrap] });
        let item = Item::sign(&founder, &roster.hood(), &Body::Membership(op));
        let bytes = envelope::seal(&item, &roster.hood(), &new.epoch, [7; 24]).expect("fits");
        let verdict = validate(&bytes, &Context {
            roster: &roster,
            keys: &ring,
            rate: &RateLimiter::new(),
            lookup: &(),
            now: NOW,
        });
        // Validate takes a rekey at any generation (its structure is sound), so every
        // node stores the same set; the fold gives it effect only at most one generation
        // past the newest epoch (the founder's first rekey made generation 1).
        prop_assert!(is_accept(&verdict), "{:?}", verdict);
        prop_assert_eq!(roster.insert(&item), Ok(true));
        let id = item.op_id();
        if generation <= 2 {
            prop_assert!(roster.took_effect(&id));
        } else {
            prop_assert_eq!(roster.denial(&id), Some(membership::Denied::GenerationTooHigh));
        }
        // The next honest rekey must still be an operation that takes effect.
        let (next, _, next_generation) = roster.rekey(&founder, NOW, &mut rng)
            .expect("a member may rekey");
        prop_assert_eq!(next_generation, if generation <= 2 { generation.max(1) + 1 } else { 2 });
        prop_assert_eq!(roster.insert(&next), Ok(true));
        prop_assert!(roster.took_effect(&next.op_id()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sync_decoders_never_panic_and_accept_only_canonical_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        use porchlight_proto::sync::{Request, Response};
        if let Ok(request) = Request::decode(&bytes) {
            prop_assert_eq!(request.encode(), bytes.clone());
        }
        if let Ok(response) = Response::decode(&bytes) {
            prop_assert_eq!(response.encode(), bytes.clone());
        }
    }

    #[test]
    fn negentropy_frames_from_a_peer_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
        use porchlight_proto::sync;
        let set = (0u32..500).map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            (u64::from(i), id)
        });
        let storage = sync::storage(set).unwrap();
        let _ = sync::respond(&storage, &bytes);
        let (mut initiator, _) = sync::Initiator::start(sync::storage(std::iter::empty()).unwrap()).unwrap();
        let _ = initiator.step(&bytes);
    }
}
