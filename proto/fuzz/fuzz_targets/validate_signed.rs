//! Arbitrary bodies, genuinely signed and sealed, into `validate`: reaches the body's
//! decoding and every rule after the AEAD and the signature. Byte 0 picks the author (a
//! member, an admin, a removed member or an outsider), byte 1 the kind; the rest is the
//! body. The hood is fixed, built once from fixed seeds.

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use porchlight_proto::testkit::TestHood;
use porchlight_proto::validate::{Context, RateLimiter, Verdict, validate};
use porchlight_proto::{Item, ItemId, Kind, MemberId, MemberKeys, domain, envelope};

struct Fixture {
    hood: TestHood,
    authors: Vec<MemberKeys>,
    reports: BTreeMap<ItemId, MemberId>,
    rate: RateLimiter,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut hood = TestHood::new(0x516d);
        let bob = hood.join(0, 0);
        let carol = hood.join(bob, 0);
        let dave = hood.join(0, bob);
        let promote = hood
            .roster
            .promote(&hood.members[0].keys, hood.members[bob].keys.id(), hood.now)
            .expect("the founder may promote");
        hood.apply(&promote);
        hood.remove(0, dave);
        let outsider = hood.outsider();
        let mut authors: Vec<MemberKeys> = hood.members.iter().map(|m| m.keys.clone()).collect();
        authors.push(outsider);
        // Reports the node knows: ids the fuzzer can name in updates, resolves, retracts.
        let reports = BTreeMap::from([
            (ItemId([0; 32]), hood.members[0].keys.id()),
            (ItemId([1; 32]), hood.members[carol].keys.id()),
            (ItemId([2; 32]), hood.members[dave].keys.id()),
        ]);
        Fixture {
            hood,
            authors,
            reports,
            rate: RateLimiter::new(),
        }
    })
}

const KINDS: [Kind; 6] = [
    Kind::Report,
    Kind::Update,
    Kind::Resolve,
    Kind::Retract,
    Kind::Membership,
    Kind::Seen,
];

fuzz_target!(|data: &[u8]| {
    let [who, kind, body @ ..] = data else {
        return;
    };
    let f = fixture();
    let author = &f.authors[usize::from(*who) % f.authors.len()];
    let kind = KINDS[usize::from(*kind) % KINDS.len()];
    let hood = f.hood.hood();
    let signature = author.sign(&[domain::ITEM, &hood.0, &[u8::from(kind)], body]);
    let item = Item {
        author: author.id(),
        kind,
        body: body.to_vec(),
        signature,
    };
    let judge = &f.hood.members[0];
    let Some(epoch) = f.hood.roster.sealing_epoch() else {
        return;
    };
    let Some(key) = judge.ring.get(&epoch) else {
        return;
    };
    // In the window of the body's `created_at`, or of now when the body does not
    // decode, so malformed bodies still reach validation.
    let created_at = item.body().map_or(f.hood.now, |b| b.times().0);
    let window = porchlight_proto::keys::window_of(created_at);
    let Ok(bytes) = envelope::seal_in_window(&item, &hood, key, window, [0; 24]) else {
        return;
    };
    let cx = Context {
        roster: &f.hood.roster,
        keys: &judge.ring,
        rate: &f.rate,
        lookup: &f.reports,
        now: f.hood.now,
    };
    if let Verdict::Accept(accepted) = validate(&bytes, &cx) {
        assert_eq!(accepted.item, item, "the accepted item is the one sealed");
        assert_eq!(
            accepted.body.encode(),
            item.body,
            "the accepted body is canonical"
        );
        assert!(
            f.hood.roster.is_member(&item.author),
            "only members are accepted"
        );
    }
});
