//! The cost of keeping keys fresh (issue #20, must-show 4): the bytes of one healing
//! rekey and of one exchange-key rotation, sealed as they travel, at 20, 100 and 500
//! members, and the number of messages a day of upkeep takes. Run with
//! `cargo test -p porchlight-proto --test heal_cost -- --nocapture` to print the table
//! `docs/performance.md` quotes (sizes do not depend on the build profile); the
//! assertions bound it.

#![allow(clippy::unwrap_used)]

use porchlight_proto::envelope;
use porchlight_proto::healing::HEAL_EVERY;
use porchlight_proto::testkit::TestHood;

#[test]
fn a_healing_rekey_costs_one_message_of_about_115_bytes_a_member() {
    println!("| members | healing rekey (item) | sealed | rotation sealed | messages a day |");
    println!("|---|---|---|---|---|");
    for members in [20usize, 100, 500] {
        let mut h = TestHood::new(members as u64);
        for _ in 1..members {
            h.join(0, 0);
        }
        h.now += HEAL_EVERY;
        let healer = h
            .members
            .iter()
            .position(|m| h.roster.healing_due(&m.keys.id(), h.now))
            .unwrap();
        let (rekey, _, _) = h
            .roster
            .rekey(&h.members[healer].keys, h.now, &mut h.rng)
            .unwrap();
        let item_bytes = rekey.encode().len();
        let sealed = h.seal_item(healer, &rekey).len();
        h.apply(&rekey);
        let (rotate, _) = h
            .roster
            .rotate(&h.members[0].keys, h.now, &mut h.rng)
            .unwrap();
        let rotation = h.seal_item(0, &rotate).len();
        // One healing rekey and one rotation per member a day.
        let messages = 1 + members;
        println!("| {members} | {item_bytes} B | {sealed} B | {rotation} B | {messages} |");
        // Each wrap is 112 bytes of key material plus its encoding.
        assert!(item_bytes < 200 + 120 * members, "{item_bytes}");
        assert!(item_bytes > 112 * members);
        assert!(sealed >= item_bytes);
        // The smallest padding bucket and the envelope around it.
        assert!(rotation < envelope::BUCKETS[1], "{rotation}");
        // The rekey was the day's healing: nobody else is due that day.
        let due = h
            .members
            .iter()
            .filter(|m| h.roster.healing_due(&m.keys.id(), h.now - 1))
            .count();
        assert_eq!(due, 0, "the rekey made the day's healing");
    }
}
