//! The test vectors in `docs/protocol.md` are what this code produces, byte for byte.
//! Run with `PORCHLIGHT_BLESS=1` to rewrite the block after a deliberate format change.

#![allow(clippy::unwrap_used)]

use porchlight_proto::clip;
use porchlight_proto::codec::hex;
use porchlight_proto::envelope::{self, ItemId};
use porchlight_proto::invite::{self, SignedTicket, Ticket, TicketId};
use porchlight_proto::item::{Body, Item};
use porchlight_proto::keys::{self, EpochKey, EpochSecret, KeyRing};
use porchlight_proto::membership::{self, JoinRequest};
use porchlight_proto::report::{Category, ClipRef, Location, Report, Severity};
use porchlight_proto::testkit::{NOW, SeededRng};
use porchlight_proto::{HoodId, MemberKeys, Policy};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
const BEGIN: &str = "```vectors\n";
const END: &str = "```\n<!-- vectors:end -->";

fn keys(seed: u64) -> MemberKeys {
    let mut rng = SeededRng::new(seed);
    let signing: [u8; 32] = rng.bytes();
    let exchange: [u8; 32] = rng.bytes();
    MemberKeys::from_secrets(&signing, &exchange)
}

fn vectors() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let alice = keys(1);
    let (s, x) = alice.to_secrets();
    out.push(("alice.signing_secret", hex(s.as_ref())));
    out.push(("alice.exchange_secret", hex(x.as_ref())));
    out.push(("alice.member_id", alice.id().to_hex()));
    out.push(("alice.exchange_key", hex(&alice.exchange_key().0)));
    out.push(("alice.fingerprint", alice.id().fingerprint()));

    let new = membership::found(
        &alice,
        "Elm Street",
        "Alice",
        Policy::default(),
        NOW,
        &mut SeededRng::new(2),
    )
    .expect("vector genesis is valid");
    let hood = new.hood;
    out.push(("genesis.item", hex(&new.genesis.encode())));
    out.push(("genesis.op_id", new.genesis.op_id().to_string()));
    out.push(("hood.id", hood.to_hex()));
    out.push(("hood.topic", hood.topic()));
    out.push(("rekey1.item", hex(&new.rekey.encode())));
    out.push(("rekey1.op_id", new.rekey.op_id().to_string()));
    let base = new.epoch.base_window().expect("a new epoch has a ratchet");
    out.push(("epoch1.base_window", base.to_string()));
    out.push(("epoch1.chain0", hex(new.epoch.rekey_handover().as_ref())));
    out.push((
        "epoch1.key0",
        hex(new.epoch.window_key(base).unwrap().as_ref()),
    ));
    out.push(("epoch1.id", new.epoch.id().to_string()));

    let ticket = Ticket {
        hood,
        hood_name: "Elm Street".into(),
        inviter: alice.id(),
        id: TicketId([0x11; 16]),
        expires_at: NOW + 3600,
        bootstrap: vec!["/ip4/127.0.0.1/tcp/4001".into()],
    };
    let signed = SignedTicket::issue(&alice, &ticket).expect("vector ticket fits");
    let code = signed.to_code();
    assert_eq!(
        invite::parse(&code, NOW).expect("vector code parses").1,
        ticket
    );
    out.push(("invite.code", code));

    let bob = keys(3);
    out.push(("bob.member_id", bob.id().to_hex()));
    let request = JoinRequest::new(&bob, signed, &ticket, "Bob").expect("vector name");
    let roster = new.roster().expect("vector roster");
    let mut ring = KeyRing::new();
    roster.learn_keys(&alice, &mut ring);
    let join = roster
        .admit(&alice, &ring, &request, NOW + 60, &mut SeededRng::new(4))
        .expect("vector join allowed");
    out.push(("join.item", hex(&join.encode())));
    out.push(("join.op_id", join.op_id().to_string()));
    let mut roster = roster;
    roster.insert(&join).expect("vector join inserts");
    assert!(roster.took_effect(&join.op_id()));
    let remove = roster
        .remove(&alice, bob.id(), NOW + 90)
        .expect("vector remove allowed");
    out.push(("remove.item", hex(&remove.encode())));

    let report = Body::Report(Report {
        created_at: NOW + 120,
        expires_at: NOW + 120 + 72 * 3600,
        category: Category::SuspiciousActivity,
        severity: Severity::Warning,
        text: "Man trying car door handles on Elm St".into(),
        behavior: Some("Tried the handles of three parked cars, then left on foot".into()),
        location: Location {
            text: "Elm St, 400 block".into(),
            geohash: Some("9q8yyk8".into()),
        },
        clips: vec![ClipRef {
            sha256: [0xab; 32],
            size: 1_048_576,
            camera: "front-door".into(),
            captured_at: NOW + 100,
        }],
        ask_seen: None,
    });
    let item = Item::sign(&alice, &hood, &report);
    out.push(("report.item", hex(&item.encode())));
    let envelope = envelope::seal(&item, &hood, &new.epoch, [0x24; 24]).expect("vector seals");
    out.push(("report.envelope", hex(&envelope)));
    out.push(("report.item_id", ItemId::of_item(&item.encode()).to_hex()));
    out.push(("report.message_id", ItemId::of_envelope(&envelope).to_hex()));
    // The vector opens with the epoch key, and is the same item.
    let opened = envelope::open(&envelope, &hood, &ring).expect("vector opens");
    assert_eq!(opened.item, item);

    // The key schedule from a fixed secret, recomputed below straight from RFC 5869
    // HKDF-SHA256 (not through the crate's own functions).
    let secret = [0x42u8; 32];
    let schedule_hood = HoodId([0x01; 32]);
    let created_at = NOW + 7200;
    let key = EpochKey::new_epoch(
        &schedule_hood,
        &EpochSecret::from_bytes(secret),
        3,
        created_at,
    );
    let base = keys::first_window(created_at);
    let chain1 = key.handover(base + 1).unwrap();
    out.push(("schedule.secret", hex(&secret)));
    out.push(("schedule.hood", schedule_hood.to_hex()));
    out.push(("schedule.generation", "3".into()));
    out.push(("schedule.created_at", created_at.to_string()));
    out.push(("schedule.base_window", base.to_string()));
    out.push(("schedule.chain0", hex(key.rekey_handover().as_ref())));
    out.push(("schedule.chain1", hex(chain1.as_ref())));
    out.push(("schedule.key0", hex(key.window_key(base).unwrap().as_ref())));
    out.push((
        "schedule.key1",
        hex(key.window_key(base + 1).unwrap().as_ref()),
    ));
    out.push(("schedule.epoch_id", key.id().to_string()));
    let mut ratcheted = key.clone();
    ratcheted.forget_before(base + 1);
    assert!(ratcheted.window_key(base).is_err());

    // Clip transfer: a request for the second chunk of a clip, and the answers.
    let request = clip::Request {
        sha256: [0xab; 32],
        offset: clip::CHUNK_BYTES as u64,
    };
    out.push(("clip.request", hex(&request.encode())));
    let chunk = clip::Response::Chunk {
        total: 5,
        offset: 0,
        bytes: b"hello".to_vec(),
    };
    out.push(("clip.chunk", hex(&chunk.encode())));
    out.push(("clip.pending", hex(&clip::Response::Pending.encode())));
    out.push(("clip.refused", hex(&clip::Response::Refused.encode())));
    out.push(("clip.not_found", hex(&clip::Response::NotFound.encode())));
    out
}

fn block() -> String {
    let mut s = String::from(BEGIN);
    for (name, value) in vectors() {
        s.push_str(&format!("{name} = {value}\n"));
    }
    s
}

#[test]
fn protocol_doc_vectors_match_the_code() {
    let doc = std::fs::read_to_string(DOC).expect("docs/protocol.md exists");
    let start = doc
        .find(BEGIN)
        .expect("docs/protocol.md has a ```vectors block");
    let end = doc[start..]
        .find(END)
        .expect("the vectors block ends with <!-- vectors:end -->")
        + start;
    let expected = block();
    if doc[start..end] != expected {
        if std::env::var_os("PORCHLIGHT_BLESS").is_some() {
            let new_doc = format!("{}{}{}", &doc[..start], expected, &doc[end..]);
            std::fs::write(DOC, new_doc).expect("docs/protocol.md is writable");
            return;
        }
        panic!(
            "docs/protocol.md's vectors differ from the code. If the change is deliberate, run \
             PORCHLIGHT_BLESS=1 cargo test -p porchlight-proto --test vectors\n\nThe code gives:\n{expected}"
        );
    }
}

fn hkdf_expand(prk: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::from_prk(prk)
        .unwrap()
        .expand(&info.concat(), &mut out)
        .unwrap();
    out
}

fn parse(name: &str) -> String {
    vectors().into_iter().find(|(n, _)| *n == name).unwrap().1
}

/// The schedule vectors follow the formulas `docs/protocol.md` § Key schedule states,
/// recomputed here with the HKDF crate directly.
#[test]
fn key_schedule_vectors_follow_the_documented_formulas() {
    let hex32 = |s: String| -> [u8; 32] { hex::decode(s).unwrap().try_into().unwrap() };
    let secret = hex32(parse("schedule.secret"));
    let hood = hex32(parse("schedule.hood"));
    let generation: u64 = parse("schedule.generation").parse().unwrap();
    let created_at: u64 = parse("schedule.created_at").parse().unwrap();
    // The window of `created_at` less twice the 600 s clock skew.
    let base = (created_at - 1200) / 3600;
    assert_eq!(parse("schedule.base_window"), base.to_string());

    let mut chain0 = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&hood), &secret)
        .expand(
            &[
                &b"porchlight-v2-ratchet-start\0"[..],
                &generation.to_be_bytes(),
                &base.to_be_bytes(),
            ]
            .concat(),
            &mut chain0,
        )
        .unwrap();
    assert_eq!(hex::encode(chain0), parse("schedule.chain0"));
    let next = |c: &[u8; 32]| hkdf_expand(c, &[b"porchlight-v2-ratchet-next\0"]);
    let key = |c: &[u8; 32]| hkdf_expand(c, &[b"porchlight-v2-window-key\0"]);
    let chain1 = next(&chain0);
    assert_eq!(hex::encode(chain1), parse("schedule.chain1"));
    assert_eq!(hex::encode(key(&chain0)), parse("schedule.key0"));
    assert_eq!(hex::encode(key(&chain1)), parse("schedule.key1"));
    let mut last = chain0;
    for _ in 1..1024 {
        last = next(&last);
    }
    let id = hkdf_expand(
        &last,
        &[
            b"porchlight-v2-epoch-id\0",
            &hood,
            &generation.to_be_bytes(),
            &base.to_be_bytes(),
        ],
    );
    assert_eq!(hex::encode(id), parse("schedule.epoch_id"));
}

#[test]
fn vectors_are_deterministic() {
    assert_eq!(vectors(), vectors());
}

/// The key schedule vectors against fixed values computed outside this code base, with
/// Python's standard library only (RFC 5869 by hand), so that the check does not rest
/// on the code that generates the vectors nor on the HKDF crate:
///
/// ```python
/// import hmac, hashlib
/// H = lambda k, m: hmac.new(k, m, hashlib.sha256).digest()
/// expand = lambda prk, info: H(prk, info + b"\x01")
/// be = lambda n: n.to_bytes(8, "big")
/// secret, hood, gen, base = bytes([0x42] * 32), bytes([1] * 32), 3, (1700007200 - 1200) // 3600
/// c0 = expand(H(hood, secret), b"porchlight-v2-ratchet-start\0" + be(gen) + be(base))
/// nxt = lambda c: expand(c, b"porchlight-v2-ratchet-next\0")
/// key = lambda c: expand(c, b"porchlight-v2-window-key\0")
/// last = c0
/// for _ in range(1023): last = nxt(last)
/// eid = expand(last, b"porchlight-v2-epoch-id\0" + hood + be(gen) + be(base))
/// ```
#[test]
fn key_schedule_vectors_match_an_independent_computation() {
    for (name, want) in [
        ("schedule.secret", "42".repeat(32)),
        ("schedule.hood", "01".repeat(32)),
        ("schedule.generation", "3".into()),
        ("schedule.created_at", "1700007200".into()),
        ("schedule.base_window", "472223".into()),
        (
            "schedule.chain0",
            "fc60fabf9e66f397f0187a45dca205bd3ff5490bd95e596702c06c78131abb40".into(),
        ),
        (
            "schedule.chain1",
            "badcecf8b53dae66d0983ce31d19ccc551e820ed3496abcf5d73cd9dfc9dfe32".into(),
        ),
        (
            "schedule.key0",
            "1c43f5872e971ab7e2a15ba01a31ee0d9ee8f0a787eb48ee27858d60b7888b2f".into(),
        ),
        (
            "schedule.key1",
            "85b31b5481d0634d884598fae1b6f0adbffc789abf06b3e8977faa9d1426d13c".into(),
        ),
        (
            "schedule.epoch_id",
            "dabba20358c97d83a059969f440502c28e00f649bc06c1082f3971c024a30424".into(),
        ),
    ] {
        assert_eq!(parse(name), want, "{name}");
    }
}
