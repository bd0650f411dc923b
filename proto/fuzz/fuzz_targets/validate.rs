//! Arbitrary bytes into `validate`, judged by a member of a fixed hood with history
//! (joins, a promotion, a removal and rekeys), built once from fixed seeds.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use porchlight_proto::testkit::TestHood;
use porchlight_proto::validate::{Context, RateLimiter, Verdict, validate};

struct Fixture {
    hood: TestHood,
    rate: RateLimiter,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut hood = TestHood::new(0xf022);
        let bob = hood.join(0, 0);
        let carol = hood.join(bob, 0);
        let promote = hood
            .roster
            .promote(&hood.members[0].keys, hood.members[bob].keys.id(), hood.now)
            .expect("the founder may promote");
        hood.apply(&promote);
        hood.remove(bob, carol);
        Fixture {
            hood,
            rate: RateLimiter::new(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let cx = Context {
        roster: &f.hood.roster,
        keys: &f.hood.members[0].ring,
        rate: &f.rate,
        lookup: &(),
        now: f.hood.now,
    };
    // Nobody can seal for the hood without its key, so arbitrary bytes never pass.
    assert!(!matches!(validate(data, &cx), Verdict::Accept(_)));
});
