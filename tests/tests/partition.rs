//! A hood split in two, where each side removes a different member, heals into one:
//! issue #14's multi-node case, on real nodes over TCP on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use porchlight_node::engine::Ingest;
use porchlight_proto::validate::Reason;
use porchlight_proto::{Permission, Policy};
use porchlight_tests::{TestNode, eventually};

/// Founds a hood where any member may remove another, so two sides can each remove
/// someone without an admin on both.
async fn found() -> TestNode {
    let dir = tempfile::tempdir().expect("temp dir");
    TestNode::start_in(
        dir,
        "alice",
        porchlight_node::node::Setup::Found {
            hood_name: "Elm Street".into(),
            policy: Policy {
                remove: Permission::AnyMember,
                ..Policy::default()
            },
        },
    )
    .await
}

/// Every node in `side` refuses every node in `other`, both ways.
async fn split(side: &[&TestNode], other: &[&TestNode], blocked: bool) {
    for a in side {
        for b in other {
            a.node.block(b.node.peer_id(), blocked).await.unwrap();
            b.node.block(a.node.peer_id(), blocked).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sides_remove_different_members_and_the_hood_converges() {
    let alice = found().await;
    let bob = alice.invite("bob").await;
    let carol = alice.invite("carol").await;
    let dave = bob.invite("dave").await;
    let erin = alice.invite("erin").await;
    let all = [&alice, &bob, &carol, &dave, &erin];
    for n in all {
        assert!(
            eventually(|| async { n.node.members().await.unwrap().len() == 5 }).await,
            "{} sees five members",
            n.name
        );
    }

    // The split: Alice, Carol and Erin on one side; Bob and Dave on the other.
    split(&[&alice, &carol, &erin], &[&bob, &dave], true).await;
    alice.node.remove(carol.node.member()).await.unwrap();
    bob.node.remove(dave.node.member()).await.unwrap();
    assert!(eventually(|| async { erin.node.members().await.unwrap().len() == 4 }).await);
    assert!(eventually(|| async { dave.node.members().await.unwrap().len() == 4 }).await);
    // Neither side hears of the other's removal while the split lasts.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for (n, others) in [
        (&alice, [&bob, &dave]),
        (&erin, [&bob, &dave]),
        (&bob, [&alice, &erin]),
    ] {
        let connected = n.node.status().await.unwrap().connected;
        for o in others {
            assert!(
                !connected.contains(&o.node.peer_id()),
                "{} is cut off from {}",
                n.name,
                o.name
            );
        }
    }
    assert_eq!(erin.node.members().await.unwrap().len(), 4);
    assert_eq!(alice.node.members().await.unwrap().len(), 4);
    assert_eq!(bob.node.members().await.unwrap().len(), 4);
    assert!(!alice.node.status().await.unwrap().removed);

    // The split heals.
    split(&[&alice, &carol, &erin], &[&bob, &dave], false).await;
    for n in [&alice, &erin] {
        let bob_addr = bob.node.status().await.unwrap().listen[0].clone();
        n.node.dial(bob_addr).await.unwrap();
    }
    let remaining = [&alice, &bob, &erin];
    for n in remaining {
        assert!(
            eventually(|| async { n.node.members().await.unwrap().len() == 3 }).await,
            "{} ends with Alice, Bob and Erin",
            n.name
        );
    }

    // Everyone left can post and read; the hood rekeys on the first post.
    let from_alice = alice.post("after the split, from alice").await;
    let from_bob = bob.post("after the split, from bob").await;
    for n in remaining {
        for id in [&from_alice, &from_bob] {
            assert!(
                eventually(|| async { n.has(id).await }).await,
                "{} reads every post",
                n.name
            );
        }
    }
    // One digest: the same items, operations and sealing epoch.
    assert!(
        eventually(|| async {
            let mut digests = Vec::new();
            for n in remaining {
                digests.push(n.node.status().await.unwrap().digest);
            }
            digests.iter().all(|d| d.is_some() && *d == digests[0])
        })
        .await,
        "the remaining nodes converge"
    );

    // Neither removed member reads anything posted after its removal.
    for removed in [&carol, &dave] {
        for id in [&from_alice, &from_bob] {
            assert!(!removed.has(id).await, "{} lacks it", removed.name);
            let envelope = alice.node.envelope(*id).await.unwrap().unwrap();
            assert_eq!(
                removed.node.ingest(envelope).await.unwrap(),
                Ingest::Ignored(Reason::UnknownEpoch),
                "{} cannot open it",
                removed.name
            );
        }
    }
}
