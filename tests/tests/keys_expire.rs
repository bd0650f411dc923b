//! Keys that expire (issue #20), through real engines over real sled stores on disk,
//! with time passed in (the engine takes `now` on every call), so thirty days pass in a
//! second: what a node deletes is gone from memory, from its store and after a restart;
//! an old ciphertext no longer opens with the node's own state; a member offline for
//! the longest lifetime less a day, and a member who joins then, read every live item.

#![allow(clippy::unwrap_used)]

use porchlight_node::engine::{Engine, Ingest};
use porchlight_node::store::Store;
use porchlight_proto::envelope::{self, OpenError};
use porchlight_proto::keys::{self, KeyRing};
use porchlight_proto::testkit::SeededRng;
use porchlight_proto::validate::Reason;
use porchlight_proto::{Body, Policy};
use porchlight_tests::engines::{DAY, T0, admit, contains, envelope_of, found};
use porchlight_tests::report_for;

#[tokio::test]
async fn a_window_key_past_the_longest_lifetime_is_gone_from_memory_store_and_restart() {
    let mut rng = SeededRng::new(1);
    let alice_dir = tempfile::tempdir().unwrap();
    let bob_dir = tempfile::tempdir().unwrap();
    let mut alice = found(alice_dir.path(), &mut rng);
    let (bob_keys, mut bob) = admit(&mut alice, 1, bob_dir.path(), T0, &mut rng).await;
    let hood = alice.hood();

    let posted_at = T0 + 60;
    let id = alice
        .post(
            &report_for("parcel taken", posted_at, 72 * 3600),
            posted_at,
            &mut rng,
        )
        .await
        .unwrap();
    let old = envelope_of(&alice, &id);
    assert!(matches!(
        bob.ingest(&old, posted_at).unwrap(),
        Ingest::New(_)
    ));

    // What a copy of Bob's device taken now holds: it opens the report.
    let seized: KeyRing = bob.ring().clone();
    let epoch = alice.roster().sealing_epoch().unwrap();
    let window = keys::window_of(posted_at);
    let key = seized.get(&epoch).unwrap();
    let window_key = key.window_key(window).unwrap();
    let chain = key.handover(window).unwrap();
    assert_eq!(envelope::open(&old, &hood, &seized).unwrap().id, id);
    // The store holds the chain value Bob was handed (the scan below can find one).
    let held = key.handover(key.oldest_window().unwrap()).unwrap();
    let stored_before: Vec<Vec<u8>> = bob.store().key_records().unwrap();
    assert!(stored_before.iter().any(|r| contains(r, &held[..])));

    // Thirty-one days on (the default policy's longest lifetime is thirty days).
    let later = T0 + 31 * DAY;
    bob.expire(later).unwrap();
    bob.store().flush().await.unwrap();
    assert_eq!(
        envelope::open(&old, &hood, bob.ring()).unwrap_err(),
        OpenError::WindowForgotten
    );
    assert!(bob.ring().get(&epoch).unwrap().oldest_window().unwrap() > window);
    // Neither the window key nor any chain value it derives from is in the store.
    let records = bob.store().key_records().unwrap();
    assert!(!records.is_empty());
    for record in &records {
        assert!(!contains(record, &window_key[..]));
        assert!(!contains(record, &chain[..]));
        assert!(!contains(record, &held[..]));
    }
    // Nor after a restart: the node's own state does not open the old ciphertext, and
    // validation ignores it (nobody is blamed for an old item).
    drop(bob);
    let mut bob = Engine::load(Store::open(bob_dir.path()).unwrap(), bob_keys)
        .unwrap()
        .unwrap();
    assert_eq!(
        envelope::open(&old, &hood, bob.ring()).unwrap_err(),
        OpenError::WindowForgotten
    );
    assert_eq!(
        bob.ingest(&old, later).unwrap(),
        Ingest::Ignored(Reason::WindowForgotten)
    );
    // The ratchet goes on forward: what Alice posts now, Bob reads.
    alice.expire(later).unwrap();
    let fresh = alice
        .post(&report_for("all clear", later, 3600), later, &mut rng)
        .await
        .unwrap();
    assert!(matches!(
        bob.ingest(&envelope_of(&alice, &fresh), later).unwrap(),
        Ingest::New(_)
    ));
}

#[tokio::test]
async fn a_member_offline_for_the_longest_lifetime_less_a_day_and_a_late_joiner_read_every_live_item()
 {
    let mut rng = SeededRng::new(2);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut alice = found(dirs[0].path(), &mut rng);
    let (_, mut bob) = admit(&mut alice, 1, dirs[1].path(), T0, &mut rng).await;
    // Bob goes offline. Alice posts one report a day that lives the longest lifetime
    // the policy allows; on day 10 she admits Carol and on day 12 removes her, which
    // rekeys, so the later reports are sealed under a second epoch.
    let max_ttl = u64::from(Policy::default().max_ttl_secs);
    let mut ids = Vec::new();
    let mut carol = None;
    for day in 0..29u64 {
        let now = T0 + day * DAY + 60;
        alice.expire(now).unwrap();
        if day == 10 {
            carol = Some(admit(&mut alice, 2, dirs[2].path(), now, &mut rng).await.0);
        }
        if day == 12 {
            let target = carol.as_ref().unwrap().id();
            alice.remove(target, now, &mut rng).await.unwrap();
        }
        let id = alice
            .post(
                &report_for(&format!("day {day}"), now, max_ttl),
                now,
                &mut rng,
            )
            .await
            .unwrap();
        ids.push(id);
    }
    assert_eq!(alice.roster().epochs().count(), 2);

    // Day 29 (the longest lifetime less a day): every report is still live. Bob's node
    // starts, retires what it must, then catches up: operations, then envelopes.
    let now = T0 + 29 * DAY + 120;
    alice.expire(now).unwrap();
    bob.expire(now).unwrap();
    for op in alice.roster().items() {
        let _ = bob.ingest_op(&op.encode(), now).unwrap();
    }
    for id in &ids {
        let verdict = bob.ingest(&envelope_of(&alice, id), now).unwrap();
        assert!(matches!(verdict, Ingest::New(_)), "{verdict:?}");
    }
    // A member who joins now is handed both epochs from the oldest live window on, and
    // reads every report too.
    let (_, mut dave) = admit(&mut alice, 3, dirs[3].path(), now, &mut rng).await;
    dave.expire(now).unwrap();
    for id in &ids {
        let verdict = dave.ingest(&envelope_of(&alice, id), now).unwrap();
        assert!(matches!(verdict, Ingest::New(_)), "{verdict:?}");
    }
}

/// Upgrade from protocol 2: an epoch made by an old node (a raw key, named by its
/// SHA-256) is learned as a legacy epoch, its version-1 envelopes are read, and the
/// first post after it rekeys, so the hood seals version 2 from then on.
#[tokio::test]
async fn a_legacy_epoch_is_read_and_the_next_post_rekeys_to_the_ratchet() {
    use porchlight_proto::membership::{Op, Rekey};
    use porchlight_proto::{Item, keys::EpochKey};
    let mut rng = SeededRng::new(3);
    let alice_dir = tempfile::tempdir().unwrap();
    let bob_dir = tempfile::tempdir().unwrap();
    let mut alice = found(alice_dir.path(), &mut rng);
    let (bob_keys, mut bob) = admit(&mut alice, 1, bob_dir.path(), T0, &mut rng).await;
    let hood = alice.hood();
    let now = T0 + 600;
    // The rekey an old node would make: a raw key wrapped to both.
    let legacy = EpochKey::legacy(&hood, 2, &[0x5a; 32]);
    let roster = alice.roster();
    let wraps = [alice.keys().clone(), bob_keys.clone()]
        .iter()
        .map(|m| keys::wrap(&legacy, &hood, m.id(), &m.exchange_key(), &mut rng).unwrap())
        .collect();
    let rekey = Item::sign(
        alice.keys(),
        &hood,
        &Body::Membership(Op::Rekey(Rekey {
            parents: roster.heads(),
            created_at: now,
            generation: 2,
            epoch: legacy.id(),
            wraps,
        })),
    );
    for e in [&mut alice, &mut bob] {
        assert!(matches!(
            e.ingest_op(&rekey.encode(), now).unwrap(),
            Ingest::NewOp(_)
        ));
        assert_eq!(e.roster().sealing_epoch(), Some(legacy.id()));
        assert!(e.ring().get(&legacy.id()).unwrap().is_legacy());
    }
    // An old node's report, sealed as version 1, is read.
    let item = Item::sign(
        alice.keys(),
        &hood,
        &report_for("from an old node", now, 3600),
    );
    let v1 = envelope::seal(&item, &hood, &legacy, rng.bytes()).unwrap();
    assert_eq!(v1[0], envelope::LEGACY_VERSION);
    assert!(matches!(bob.ingest(&v1, now).unwrap(), Ingest::New(_)));
    // Bob's first post rekeys to a ratchet epoch and seals version 2; Alice reads it.
    let id = bob
        .post(
            &report_for("after the upgrade", now + 60, 3600),
            now + 60,
            &mut rng,
        )
        .await
        .unwrap();
    let sealing = bob.roster().sealing_epoch().unwrap();
    assert_ne!(sealing, legacy.id());
    assert!(!bob.ring().get(&sealing).unwrap().is_legacy());
    let v2 = envelope_of(&bob, &id);
    assert_eq!(v2[0], envelope::VERSION);
    for op in bob.roster().items() {
        let _ = alice.ingest_op(&op.encode(), now + 60).unwrap();
    }
    assert!(matches!(
        alice.ingest(&v2, now + 60).unwrap(),
        Ingest::New(_)
    ));
}

/// An epoch deleted for good stays deleted: its wrap to Bob is still in the membership
/// log, and before, the next operation Bob applied (or his restart) unwrapped it again
/// and wrote it back to the store (review finding: a member sending any operation kept
/// every old epoch's key alive).
#[tokio::test]
async fn an_epoch_deleted_for_good_is_not_learned_again_from_the_log_nor_at_restart() {
    let mut rng = SeededRng::new(4);
    let alice_dir = tempfile::tempdir().unwrap();
    let bob_dir = tempfile::tempdir().unwrap();
    let mut alice = found(alice_dir.path(), &mut rng);
    let (bob_keys, mut bob) = admit(&mut alice, 1, bob_dir.path(), T0, &mut rng).await;
    let first = bob.roster().sealing_epoch().unwrap();
    let key = bob.ring().get(&first).unwrap();
    let held = key.handover(key.oldest_window().unwrap()).unwrap();

    // Seventy-five days on, every window of the first epoch is older than any live item.
    let later = T0 + 75 * DAY;
    bob.expire(later).unwrap();
    assert!(
        bob.ring().get(&first).is_none(),
        "the first epoch is deleted"
    );

    // Alice posts: her first epoch is spent too, so she rekeys first; Bob applies her
    // operations, and among them the join that wraps the first epoch to him.
    alice.expire(later).unwrap();
    let fresh = alice
        .post(&report_for("still here", later, 3600), later, &mut rng)
        .await
        .unwrap();
    for op in alice.roster().items() {
        let _ = bob.ingest_op(&op.encode(), later).unwrap();
    }
    assert_ne!(bob.roster().sealing_epoch(), Some(first));
    let gone = |bob: &Engine| {
        bob.ring().get(&first).is_none()
            && bob
                .store()
                .key_records()
                .unwrap()
                .iter()
                .all(|r| !contains(r, &held[..]))
    };
    assert!(gone(&bob), "an operation brought the deleted key back");
    assert!(matches!(
        bob.ingest(&envelope_of(&alice, &fresh), later).unwrap(),
        Ingest::New(_)
    ));

    // Nor does a restart, which learns every key the log wraps to Bob.
    bob.store().flush().await.unwrap();
    drop(bob);
    let bob = Engine::load(Store::open(bob_dir.path()).unwrap(), bob_keys)
        .unwrap()
        .unwrap();
    assert!(gone(&bob), "a restart brought the deleted key back");
    assert!(
        bob.ring()
            .get(&alice.roster().sealing_epoch().unwrap())
            .is_some()
    );
}
