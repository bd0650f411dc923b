//! Rotating exchange keys and healing rekeys (issue #20, goals 3 and 4), through real
//! engines over real sled stores on disk, with time passed in (the engine takes `now` on
//! every call), so a month passes in seconds.
//!
//! - A seized device: Bob's data dir and keys are copied on day 0; for 31 days Alice
//!   posts a report a day and the hood heals daily (each member's node doing its own key
//!   upkeep); the copy, handed every operation and every envelope, opens nothing posted
//!   after the first healing rekey made once Bob had rotated; Bob's live node on day 31
//!   opens nothing older than the longest lifetime, and no tree of its store holds the
//!   copied exchange secret or a key of those old windows.
//! - A hostile member cannot publish an exchange key for another member (a `Rotate` sets
//!   its author's key only, and one naming another member's key takes no effect), nor a
//!   low-order key.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use porchlight_node::engine::{Engine, Ingest};
use porchlight_node::store::Store;
use porchlight_proto::envelope;
use porchlight_proto::keys;
use porchlight_proto::membership::{Denied, Op};
use porchlight_proto::rotation::Rotate;
use porchlight_proto::testkit::SeededRng;
use porchlight_proto::validate::Reason;
use porchlight_proto::{Body, ExchangeKey, Item, Policy};
use porchlight_tests::engines::{DAY, T0, admit, contains, envelope_of, found};
use porchlight_tests::report_for;

/// Hands every operation `from` holds to `to`, as catch-up sync does.
fn sync_ops(from: &Engine, to: &mut Engine, now: u64) {
    for op in from.roster().items() {
        let _ = to.ingest_op(&op.encode(), now).unwrap();
    }
}

/// Every engine hands its operations to every other.
fn sync_all(engines: &mut [Engine], now: u64) {
    for i in 0..engines.len() {
        for j in 0..engines.len() {
            if i != j {
                let (from, to) = if i < j {
                    let (a, b) = engines.split_at_mut(j);
                    (&a[i], &mut b[0])
                } else {
                    let (a, b) = engines.split_at_mut(i);
                    (&b[0], &mut a[j])
                };
                sync_ops(from, to, now);
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_copied_device_is_locked_out_by_healing_and_the_live_one_keeps_nothing_older_than_the_longest_lifetime()
 {
    let mut rng = SeededRng::new(20);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let seized_dir = tempfile::tempdir().unwrap();
    let mut alice = found(dirs[0].path(), &mut rng);
    let (bob_keys, bob) = admit(&mut alice, 1, dirs[1].path(), T0, &mut rng).await;
    let (_, carol) = admit(&mut alice, 2, dirs[2].path(), T0, &mut rng).await;
    let hood = alice.hood();

    // Day 0: Bob's device is copied (his keys and his data dir, the store closed).
    let copied_exchange = bob.roster().member(&bob_keys.id()).unwrap().exchange_key;
    drop(bob);
    copy_dir(dirs[1].path(), seized_dir.path());
    let bob = Engine::load(Store::open(dirs[1].path()).unwrap(), bob_keys.clone())
        .unwrap()
        .unwrap();
    let mut hood_engines = vec![alice, bob, carol];

    // 31 days: every hour of the first minutes of each day each node does its key
    // upkeep (the day's healing rekey if it is its turn, a rotation when due), the
    // nodes sync, and Alice posts a report that lives the longest lifetime allowed.
    let max_ttl = u64::from(Policy::default().max_ttl_secs);
    let mut posts: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut healings = Vec::new();
    // Day 0 is the founding day (08:00 UTC); day d ≥ 1 starts a minute after the d-th
    // midnight (UTC) after it, when only the day's first healer is due.
    let midnight = T0 - T0 % DAY + DAY;
    let mut bob_rotated = None;
    for day in 0..=31u64 {
        let now = match day {
            0 => T0 + 60,
            d => midnight + (d - 1) * DAY + 60,
        };
        for i in 0..hood_engines.len() {
            hood_engines[i].expire(now).unwrap();
            let before = hood_engines[i].roster().epochs().count();
            hood_engines[i].repair_keys(now, &mut rng).await.unwrap();
            if hood_engines[i].roster().epochs().count() > before {
                healings.push((day, i));
            }
            sync_all(&mut hood_engines, now);
        }
        let key = hood_engines[0]
            .roster()
            .member(&bob_keys.id())
            .unwrap()
            .exchange_key;
        if key != copied_exchange && bob_rotated.is_none() {
            bob_rotated = Some(day);
        }
        let posted_at = now + 60;
        let id = hood_engines[0]
            .post(
                &report_for(&format!("day {day}"), posted_at, max_ttl),
                posted_at,
                &mut rng,
            )
            .await
            .unwrap();
        // The attacker records every ciphertext as it goes by.
        posts.push((posted_at, envelope_of(&hood_engines[0], &id)));
        sync_all(&mut hood_engines, posted_at);
    }
    // One healing rekey a day from day 1 (the hood's first epoch is from day 0), never
    // two on one day, and not always by the same member.
    let days: Vec<u64> = healings.iter().map(|(d, _)| *d).collect();
    assert_eq!(days, (1..=31).collect::<Vec<_>>(), "{healings:?}");
    let healers: std::collections::BTreeSet<usize> = healings.iter().map(|(_, i)| *i).collect();
    assert_eq!(healers.len(), 3, "{healings:?}");
    // Bob's first rotation is due a day after he joined: on day 2 (day 1 starts 16
    // hours after he joined).
    let bob_rotated = bob_rotated.unwrap();
    assert!(bob_rotated <= 2);
    // Bob rotated: the roster no longer gives him the copied key.
    let bob = &hood_engines[1];
    assert_ne!(
        bob.roster().member(&bob_keys.id()).unwrap().exchange_key,
        copied_exchange
    );
    let envelopes: Vec<Vec<u8>> = posts.iter().map(|(_, e)| e.clone()).collect();

    // The copy, handed every operation of the log, opens with what it can unwrap only
    // what was posted before the first healing rekey made after Bob's first rotation:
    // the healing of the day he rotated, or of the next day (when the healer rekeyed
    // before his rotation reached it).
    let mut copy = Engine::load(Store::open(seized_dir.path()).unwrap(), bob_keys.clone())
        .unwrap()
        .unwrap();
    let now = T0 + 31 * DAY + 600;
    sync_ops(&hood_engines[0], &mut copy, now);
    assert_eq!(copy.roster().len(), hood_engines[0].roster().len());
    let opened: Vec<usize> = envelopes
        .iter()
        .enumerate()
        .filter(|(_, e)| envelope::open(e, &hood, copy.ring()).is_ok())
        .map(|(i, _)| i)
        .collect();
    eprintln!(
        "healings {healings:?}; Bob rotated on day {bob_rotated}; \
         the copy opens the reports of days {opened:?}"
    );
    assert!(opened.contains(&0), "{opened:?}");
    assert!(
        opened.iter().all(|&d| d as u64 <= bob_rotated),
        "the copy opened {opened:?}; Bob rotated on day {bob_rotated}"
    );

    // Bob's live node on day 31 (two hours on, so that day 0's and day 1's reports are
    // older than the longest lifetime plus the ratchet's margin): it opens every report
    // still live and none older, after a restart too.
    let now = T0 + 31 * DAY + 2 * 3600;
    let bob = &mut hood_engines[1];
    bob.expire(now).unwrap();
    bob.store().flush().await.unwrap();
    let margin = 2 * porchlight_proto::limits::MAX_CLOCK_SKEW_SECS + keys::WINDOW_SECS;
    let check = |bob: &Engine| {
        for ((at, _), e) in posts.iter().zip(&envelopes) {
            let opens = envelope::open(e, &hood, bob.ring()).is_ok();
            if at + max_ttl + margin < now {
                assert!(!opens, "a report from {} s ago opens", now - at);
            } else if at + max_ttl > now {
                assert!(opens, "a live report from {} s ago does not open", now - at);
            }
        }
    };
    check(bob);
    // No tree of the store holds the copied exchange secret, the chain values the copy
    // holds of the old epochs, or the window keys of the old reports.
    let copied_secret = *bob_keys.first_exchange_secret().bytes();
    let mut old_keys: Vec<[u8; 32]> = vec![copied_secret];
    for ((at, _), e) in posts.iter().zip(&envelopes) {
        if at + max_ttl + margin >= now {
            continue;
        }
        let epoch = envelope::Envelope::decode(e).unwrap().epoch;
        if let Some(key) = copy.ring().get(&epoch) {
            old_keys.push(*key.window_key(keys::window_of(*at)).unwrap());
            old_keys.push(*key.handover(keys::window_of(*at)).unwrap());
        }
    }
    assert!(old_keys.len() >= 3, "the copy held the day-0 keys");
    let scan = |bob: &Engine| {
        let bytes = bob.store().all_bytes().unwrap();
        assert!(!bytes.is_empty());
        for record in &bytes {
            for key in &old_keys {
                assert!(!contains(record, key), "old key material in the store");
            }
        }
    };
    scan(bob);
    // Only the current exchange secret (and one superseded less than the grace ago) is
    // kept.
    assert!(bob.store().exchange_secrets().unwrap().len() <= 2);
    drop(hood_engines);
    let bob = Engine::load(Store::open(dirs[1].path()).unwrap(), bob_keys.clone())
        .unwrap()
        .unwrap();
    check(&bob);
    scan(&bob);
}

#[tokio::test]
async fn nobody_publishes_an_exchange_key_for_someone_else_or_a_low_order_one() {
    let mut rng = SeededRng::new(21);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut alice = found(dirs[0].path(), &mut rng);
    let (mallory_keys, mallory) = admit(&mut alice, 1, dirs[1].path(), T0, &mut rng).await;
    let hood = alice.hood();
    let now = T0 + 60;
    let alices_key = alice
        .roster()
        .member(&alice.keys().id())
        .unwrap()
        .exchange_key;
    let rotate = |key: ExchangeKey| {
        Item::sign(
            &mallory_keys,
            &hood,
            &Body::Membership(Op::Rotate(Rotate {
                parents: mallory.roster().heads(),
                created_at: now,
                exchange_key: key,
            })),
        )
    };
    // Mallory claims Alice's key as her own: it takes no effect, and Alice's key is
    // Alice's. (A `Rotate` has no target: it can only change its signer's key.)
    let stolen = rotate(alices_key);
    assert!(matches!(
        alice.ingest_op(&stolen.encode(), now).unwrap(),
        Ingest::NewOp(_)
    ));
    assert_eq!(
        alice.roster().denial(&stolen.op_id()),
        Some(Denied::ExchangeKeyTaken)
    );
    assert_ne!(
        alice
            .roster()
            .member(&mallory_keys.id())
            .unwrap()
            .exchange_key,
        alices_key
    );
    // A low-order point (here the identity, all zeros) is refused outright.
    let low = rotate(ExchangeKey([0; 32]));
    assert!(matches!(
        alice.ingest_op(&low.encode(), now).unwrap(),
        Ingest::Rejected(Reason::InvalidOp(_))
    ));
    // A forged signature (Mallory's rotation presented as Alice's) does not verify.
    let mut forged = rotate(ExchangeKey([9; 32]));
    forged.author = alice.keys().id();
    assert!(matches!(
        alice.ingest_op(&forged.encode(), now).unwrap(),
        Ingest::Rejected(Reason::BadSignature)
    ));
    // Alice's own rotation takes effect, and the next rekey wraps to her new key.
    let new_key = alice.rotate(now, &mut rng).await.unwrap();
    assert_eq!(
        alice
            .roster()
            .member(&alice.keys().id())
            .unwrap()
            .exchange_key,
        new_key
    );
}

/// Late readers with healing (must-show 3): Dave is offline for the longest lifetime
/// less a day while the others heal daily and rotate; when the day's first healer is
/// Dave, the next member heals an hour later. Back, Dave catches up by sync and reads
/// every live report.
#[tokio::test]
async fn a_member_offline_for_the_longest_lifetime_less_a_day_reads_every_live_item_after_daily_healing()
 {
    let mut rng = SeededRng::new(22);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut alice = found(dirs[0].path(), &mut rng);
    let (_, bob) = admit(&mut alice, 1, dirs[1].path(), T0, &mut rng).await;
    let (dave_keys, mut dave) = admit(&mut alice, 2, dirs[2].path(), T0, &mut rng).await;
    let max_ttl = u64::from(Policy::default().max_ttl_secs);
    let midnight = T0 - T0 % DAY + DAY;
    let mut online = vec![alice, bob];
    let mut posts = Vec::new();
    let mut fallbacks = 0;
    // Dave goes offline after day 0; the others run for 29 days.
    for day in 1..=29u64 {
        let day_start = midnight + (day - 1) * DAY;
        let mut healed = false;
        // Each member's upkeep runs every minute; here at the start of each rank's hour.
        for rank in 0..3u64 {
            let now = day_start + rank * porchlight_proto::healing::HEAL_GRACE + 60;
            for i in 0..online.len() {
                online[i].expire(now).unwrap();
                let before = online[i].roster().epochs().count();
                online[i].repair_keys(now, &mut rng).await.unwrap();
                if online[i].roster().epochs().count() > before {
                    assert!(!healed, "two healing rekeys on day {day}");
                    healed = true;
                    fallbacks += usize::from(rank > 0);
                }
                sync_all(&mut online, now);
            }
        }
        assert!(healed, "nobody healed on day {day}");
        let posted_at = day_start + 3 * 3600;
        let id = online[0]
            .post(
                &report_for(&format!("day {day}"), posted_at, max_ttl),
                posted_at,
                &mut rng,
            )
            .await
            .unwrap();
        posts.push(envelope_of(&online[0], &id));
        sync_all(&mut online, posted_at);
    }
    // Dave was the day's first healer on some days: the next member healed an hour on.
    assert!(fallbacks > 0);
    assert!(online[0].roster().epochs().count() >= 30);
    // Day 30, 29 days after Dave left: he starts, expires, catches up and reads all.
    let now = midnight + 29 * DAY + 60;
    dave.expire(now).unwrap();
    sync_ops(&online[0], &mut dave, now);
    assert!(dave.roster().is_member(&dave_keys.id()));
    for (day, envelope) in posts.iter().enumerate() {
        let verdict = dave.ingest(envelope, now).unwrap();
        assert!(
            matches!(verdict, Ingest::New(_)),
            "day {}: {verdict:?}",
            day + 1
        );
    }
}
