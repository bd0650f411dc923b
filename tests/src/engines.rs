//! One hood of in-process engines on an injected clock, for the key-expiry, healing and
//! backdated-rekey tests: found a hood at `T0`, admit members, read envelopes back.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use porchlight_node::engine::Engine;
use porchlight_node::store::Store;
use porchlight_proto::invite::SignedTicket;
use porchlight_proto::testkit::SeededRng;
use porchlight_proto::{ItemId, JoinRequest, MemberKeys, Policy, Ticket, TicketId};

pub const T0: u64 = 1_800_000_000;
pub const DAY: u64 = 86_400;

pub fn found(dir: &Path, rng: &mut SeededRng) -> Engine {
    let keys = MemberKeys::generate(rng);
    Engine::found(
        Store::open(dir).unwrap(),
        keys,
        "Elm Street",
        "Alice",
        Policy::default(),
        T0,
        rng,
    )
    .unwrap()
}

/// A new member admitted by `alice` at `now` on ticket `n`, with an engine over `dir`.
pub async fn admit(
    alice: &mut Engine,
    n: u8,
    dir: &Path,
    now: u64,
    rng: &mut SeededRng,
) -> (MemberKeys, Engine) {
    let keys = MemberKeys::generate(rng);
    let ticket = Ticket {
        hood: alice.hood(),
        hood_name: "Elm Street".into(),
        inviter: alice.keys().id(),
        id: TicketId([n; 16]),
        expires_at: now + 600,
        bootstrap: vec![],
    };
    let signed = SignedTicket::issue(alice.keys(), &ticket).unwrap();
    let request = JoinRequest::new(&keys, signed, &ticket, &format!("Member {n}")).unwrap();
    let welcome = alice.admit(&request, now, rng).await.unwrap();
    let engine = Engine::from_welcome(
        Store::open(dir).unwrap(),
        keys.clone(),
        &alice.hood(),
        &welcome,
    )
    .unwrap();
    (keys, engine)
}

pub fn envelope_of(engine: &Engine, id: &ItemId) -> Vec<u8> {
    engine.store().item(id).unwrap().unwrap().envelope
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
