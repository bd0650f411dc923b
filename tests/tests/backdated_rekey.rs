//! The backdated-rekey finding (`docs/threat-model.md` § 5), through real engines over
//! real sled stores, with time passed in: a member who dates a `Rekey` weeks back.
//!
//! (a) Naming the current heads, the rekey follows operations made weeks after its date:
//! the fold gives it no effect (`RekeyBackdated`), at every node alike.
//! (b) Naming old parents (so its date is not contradicted by its causal past) and ground
//! to fold last, the rekey does become the newest epoch, with a ratchet that has already
//! run out. It must not make the honest epoch retire at once (items sealed under it by
//! members who have not heard of the rekey are still read), and the next operation must
//! still be sealed under an epoch that can seal now, so that it goes out by gossip.

#![allow(clippy::unwrap_used)]

use porchlight_node::engine::{Engine, Ingest};
use porchlight_proto::keys::{self, EpochKey};
use porchlight_proto::membership::{Denied, Op, Rekey};
use porchlight_proto::testkit::SeededRng;
use porchlight_proto::{Body, EpochId, Item, MemberKeys, OpId};
use porchlight_tests::engines::{DAY, T0, admit, envelope_of, found};
use porchlight_tests::report_for;

/// Hands every operation `from` holds to `to`, as catch-up sync does.
fn sync_ops(from: &Engine, to: &mut Engine, now: u64) {
    for op in from.roster().items() {
        let _ = to.ingest_op(&op.encode(), now).unwrap();
    }
}

/// A `Rekey` by `author` dated `created_at`, naming `parents`, at `generation`, wrapped
/// to every member `roster_of` knows; made by hand, as a hostile member would.
fn hostile_rekey(
    roster_of: &Engine,
    author: &MemberKeys,
    parents: Vec<OpId>,
    created_at: u64,
    generation: u64,
    rng: &mut SeededRng,
) -> (Item, EpochId) {
    let hood = roster_of.hood();
    let key = EpochKey::generate(&hood, generation, created_at, rng);
    let wraps = roster_of
        .roster()
        .members()
        .map(|m| keys::wrap(&key, &hood, m.id, &m.exchange_key, rng).unwrap())
        .collect();
    let item = Item::sign(
        author,
        &hood,
        &Body::Membership(Op::Rekey(Rekey {
            parents,
            created_at,
            generation,
            epoch: key.id(),
            wraps,
        })),
    );
    (item, key.id())
}

#[tokio::test]
async fn a_backdated_rekey_neither_takes_effect_over_newer_operations_nor_retires_the_live_epoch() {
    let mut rng = SeededRng::new(41);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut alice = found(dirs[0].path(), &mut rng);
    let (mallory_keys, mut mallory) = admit(&mut alice, 1, dirs[1].path(), T0, &mut rng).await;
    let (_, mut carol) = admit(&mut alice, 2, dirs[2].path(), T0, &mut rng).await;
    let mallory_join = alice
        .roster()
        .items()
        .find(|i| matches!(Op::of_item(i), Some(Op::Join(j)) if j.request.joiner == mallory_keys.id()))
        .unwrap()
        .op_id();

    // Day 43: the first epoch's ratchet (about 42.7 days) has run out; Alice's post
    // rekeys first. Everyone catches up.
    let day43 = T0 + 43 * DAY;
    for e in [&mut alice, &mut mallory, &mut carol] {
        e.expire(day43).unwrap();
    }
    alice
        .post(&report_for("day 43", day43, 3600), day43, &mut rng)
        .await
        .unwrap();
    sync_ops(&alice, &mut mallory, day43);
    sync_ops(&alice, &mut carol, day43);
    let honest = alice.roster().sealing_epoch().unwrap();
    assert_eq!(alice.roster().epoch(&honest).unwrap().generation, 2);
    assert_eq!(carol.roster().sealing_epoch(), Some(honest));

    // Day 53. (a) Mallory names the current heads and dates her rekey day 1.
    let now = T0 + 53 * DAY;
    let (backdated, _) = hostile_rekey(
        &mallory,
        &mallory_keys,
        mallory.roster().heads(),
        T0 + DAY,
        3,
        &mut rng,
    );
    assert!(matches!(
        alice.ingest_op(&backdated.encode(), now).unwrap(),
        Ingest::NewOp(_)
    ));
    assert_eq!(
        alice.roster().denial(&backdated.op_id()),
        Some(Denied::RekeyBackdated)
    );
    assert_eq!(alice.roster().sealing_epoch(), Some(honest));

    // (b) Mallory names her own join (day 0) and dates the rekey then: nothing in its
    // causal past contradicts the date. She grinds its id so that it folds after every
    // other operation, at generation 3: it becomes the newest epoch, its ratchet spent.
    let (old_parents, spent) = loop {
        let (item, epoch) =
            hostile_rekey(&mallory, &mallory_keys, vec![mallory_join], T0, 3, &mut rng);
        if alice.roster().items().all(|i| i.op_id() < item.op_id()) {
            break (item, epoch);
        }
    };
    assert!(matches!(
        alice.ingest_op(&old_parents.encode(), now).unwrap(),
        Ingest::NewOp(_)
    ));
    assert!(alice.roster().took_effect(&old_parents.op_id()));
    assert_eq!(alice.roster().sealing_epoch(), Some(spent));
    assert!(
        !alice
            .ring()
            .get(&spent)
            .unwrap()
            .can_seal_at(keys::window_of(now))
    );

    // The expiry pass keeps the honest epoch: its windows are live, whatever date the
    // spent epoch claims (before the fix it retired at once, as superseded 52 days ago).
    alice.expire(now).unwrap();
    assert!(alice.ring().contains(&honest));
    // Carol has not heard of the rekey and posts under the honest epoch: Alice reads it.
    carol.expire(now).unwrap();
    let from_carol = carol
        .post(&report_for("from carol", now, 3 * DAY), now, &mut rng)
        .await
        .unwrap();
    let verdict = alice
        .ingest(&envelope_of(&carol, &from_carol), now)
        .unwrap();
    assert!(matches!(verdict, Ingest::New(_)), "{verdict:?}");

    // Alice's next post rekeys first, and the rekey is sealed under an epoch that can
    // seal now (the honest one), so it goes out by gossip with the post: two envelopes
    // in the outbox, not one (before the fix the rekey went into the log unsealed).
    let queued = alice.store().outbox_len();
    let post = alice
        .post(&report_for("day 53", now, 3600), now, &mut rng)
        .await
        .unwrap();
    assert_eq!(alice.store().outbox_len(), queued + 2);
    let fresh = alice.roster().sealing_epoch().unwrap();
    assert_eq!(alice.roster().epoch(&fresh).unwrap().generation, 4);
    // Carol, handed Mallory's two rekeys by sync, takes Alice's rekey from gossip
    // (sealed under the honest epoch), then the post under the epoch it makes.
    sync_ops(&mallory, &mut carol, now);
    carol.ingest_op(&backdated.encode(), now).unwrap();
    carol.ingest_op(&old_parents.encode(), now).unwrap();
    let outbox = alice.store().outbox().unwrap();
    for (_, envelope) in &outbox[outbox.len() - 2..] {
        let verdict = carol.ingest(envelope, now).unwrap();
        assert!(matches!(verdict, Ingest::New(_)), "{verdict:?}");
    }
    assert!(carol.store().item(&post).unwrap().is_some());
}
