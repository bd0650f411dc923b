//! R7 (docs/threat-model.md), on real nodes over TCP on 127.0.0.1: a rekeyer wraps a key
//! that does not open to one member while the roster counts them a holder, so everyone
//! seals under it. The victim's node rekeys as soon as the operation arrives, and reads
//! what is posted next; before, it read nothing until it next posted itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use porchlight_node::engine::Ingest;
use porchlight_proto::item::{Body, Item};
use porchlight_proto::keys::{self, EpochKey};
use porchlight_proto::membership::{Op, Rekey, Roster};
use porchlight_proto::testkit::SeededRng;
use porchlight_proto::{MemberKeys, envelope};
use porchlight_tests::{TestNode, eventually};

/// Stops `member`'s node and takes its keys, the hood's log and the key ring from its
/// data dir, for an attacker.
async fn take_over(
    member: TestNode,
    hood: &porchlight_proto::HoodId,
) -> (MemberKeys, Roster, porchlight_proto::KeyRing) {
    let dir = member.stop().await;
    let (keys, _) = porchlight_node::identity::load_or_create(dir.path()).expect("keys");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let store = loop {
        match porchlight_node::store::Store::open(&dir.path().join(porchlight_node::local::DB_DIR))
        {
            Ok(store) => break store,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("open the member's store: {e}"),
        }
    };
    let items: Vec<Item> = store
        .ops()
        .unwrap()
        .iter()
        .map(|b| Item::decode(b).unwrap())
        .collect();
    let roster = Roster::from_items(hood, &items).unwrap();
    let ring = store.key_ring(hood).unwrap();
    (keys, roster, ring)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_handed_a_bad_wrap_rekeys_at_once_and_reads_the_next_post() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let mallory = alice.invite("mallory").await;
    for n in [&alice, &bob, &mallory] {
        assert!(eventually(|| async { n.node.members().await.unwrap().len() == 3 }).await);
    }
    let status = alice.node.status().await.unwrap();
    let hood = status.hood.unwrap();
    let sealing = status.sealing_epoch.unwrap();
    let (keys, roster, ring) = take_over(mallory, &hood).await;
    assert_eq!(roster.sealing_epoch(), Some(sealing));

    // Mallory's rekey: a good wrap to Alice and to herself, and to Bob a wrap made for
    // another epoch, which does not open under this one.
    let mut rng = SeededRng::new(77);
    let generation = roster.epochs().map(|e| e.generation).max().unwrap() + 1;
    let created_at = porchlight_node::now();
    let key = EpochKey::generate(&hood, generation, created_at, &mut rng);
    let other = EpochKey::generate(&hood, generation, created_at, &mut rng);
    let mut wraps = Vec::new();
    for m in roster.members() {
        let k = if m.id == bob.node.member() {
            &other
        } else {
            &key
        };
        wraps.push(keys::wrap(k, &hood, m.id, &m.exchange_key, &mut rng).unwrap());
    }
    let rekey = Item::sign(
        &keys,
        &hood,
        &Body::Membership(Op::Rekey(Rekey {
            parents: roster.heads(),
            created_at,
            generation,
            epoch: key.id(),
            wraps,
        })),
    );
    let sealed = envelope::seal(&rekey, &hood, ring.get(&sealing).unwrap(), rng.bytes()).unwrap();
    // As gossip would bring it, to both.
    for n in [&alice, &bob] {
        assert!(matches!(
            n.node.ingest(sealed.clone()).await.unwrap(),
            Ingest::New(_)
        ));
    }
    // Bob's node rekeys at once; Alice takes his rekey and seals under it.
    assert!(
        eventually(|| async {
            let a = alice.node.status().await.unwrap().sealing_epoch;
            let b = bob.node.status().await.unwrap().sealing_epoch;
            a.is_some() && a != Some(key.id()) && a != Some(sealing) && a == b
        })
        .await,
        "Bob's node did not repair the hood's key"
    );
    let id = alice.post("car door tried on Elm St").await;
    assert!(
        eventually(|| async { bob.has(&id).await }).await,
        "Bob does not read what Alice posts after the bad rekey"
    );
}
