//! Moderation without a company (issue #22), on real nodes over TCP on 127.0.0.1:
//! removal by a quorum of members' votes, and local mute.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use porchlight_node::engine::{Engine, Ingest, Removal};
use porchlight_node::node::Setup;
use porchlight_proto::item::{Body, Item};
use porchlight_proto::membership::Op;
use porchlight_proto::quorum::RemoveVote;
use porchlight_proto::validate::Reason;
use porchlight_proto::{MemberId, Permission, Policy};
use porchlight_tests::{TestNode, eventually};

/// Founds a hood whose members remove by a quorum of two votes.
async fn found_quorum_two() -> TestNode {
    let dir = tempfile::tempdir().expect("temp dir");
    TestNode::start_in(
        dir,
        "alice",
        Setup::Found {
            hood_name: "Elm Street".into(),
            policy: Policy {
                remove: Permission::Quorum(2),
                ..Policy::default()
            },
        },
    )
    .await
}

async fn member_count(n: &TestNode) -> usize {
    n.node.members().await.unwrap().len()
}

/// The live votes against `target` that `n` shows in `members`.
async fn votes_against(n: &TestNode, target: MemberId) -> Option<usize> {
    n.node
        .members()
        .await
        .unwrap()
        .iter()
        .find(|m| m.member.id == target)
        .map(|m| m.votes_against)
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

/// Stops `member`'s node and, with its keys and store, signs what a hostile build of it
/// would: a vote for its own removal, sealed under the sealing epoch it holds.
async fn own_vote_of(member: TestNode) -> Vec<u8> {
    let dir = member.stop().await;
    let (keys, _) = porchlight_node::identity::load_or_create(dir.path()).unwrap();
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
    let engine = Engine::load(store, keys.clone()).unwrap().unwrap();
    let roster = engine.roster();
    let vote = Item::sign(
        &keys,
        &roster.hood(),
        &Body::Membership(Op::RemoveVote(RemoveVote {
            parents: roster.parents_for(&keys.id()),
            created_at: porchlight_node::now(),
            target: keys.id(),
        })),
    );
    let epoch = roster.sealing_epoch().unwrap();
    let key = engine.ring().get(&epoch).unwrap();
    porchlight_proto::envelope::seal_random(&vote, &roster.hood(), key, &mut porchlight_node::rng())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_quorum_two_one_vote_and_the_targets_own_remove_nobody_and_a_second_vote_removes_and_rekeys()
 {
    let alice = found_quorum_two().await;
    let bob = alice.invite("bob").await;
    let carol = alice.invite("carol").await;
    let dave = alice.invite("dave").await;
    for n in [&alice, &bob, &carol, &dave] {
        assert!(
            eventually(|| async { member_count(n).await == 4 }).await,
            "{} sees four members",
            n.name
        );
    }
    let dave_id = dave.node.member();

    // Alice, founder and only admin, cannot remove Dave alone: her remove is a vote.
    assert_eq!(
        alice.node.remove(dave_id).await.unwrap(),
        Removal::Voted { needed: 1 }
    );
    for n in [&bob, &carol] {
        assert!(
            eventually(|| async { votes_against(n, dave_id).await == Some(1) }).await,
            "{} shows Alice's vote against Dave",
            n.name
        );
    }

    // Dave votes for his own removal (a hostile build: the real one leaves instead).
    let own = own_vote_of(dave).await;
    for n in [&alice, &bob, &carol] {
        let verdict = n.node.ingest(own.clone()).await.unwrap();
        assert!(
            matches!(
                verdict,
                Ingest::New(_) | Ingest::NewOp(_) | Ingest::Duplicate
            ),
            "{} takes the well-formed vote into its log: {verdict:?}",
            n.name
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in [&alice, &bob, &carol] {
        assert_eq!(
            member_count(n).await,
            4,
            "{}: one vote removes nobody",
            n.name
        );
        assert_eq!(
            votes_against(n, dave_id).await,
            Some(1),
            "{}: Dave's own vote does not count",
            n.name
        );
    }
    let before = alice.node.status().await.unwrap().sealing_epoch;

    // Bob's vote is the second: Dave is removed everywhere, and Bob's node rekeys.
    assert_eq!(bob.node.remove(dave_id).await.unwrap(), Removal::Removed);
    for n in [&alice, &bob, &carol] {
        assert!(
            eventually(|| async { member_count(n).await == 3 }).await,
            "{} sees Dave removed",
            n.name
        );
        assert!(
            eventually(|| async {
                let epoch = n.node.status().await.unwrap().sealing_epoch;
                epoch.is_some() && epoch != before
            })
            .await,
            "{} seals under a new epoch without anyone posting",
            n.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_votes_in_a_partition_converge_after_healing_and_the_completing_voter_rekeys() {
    let alice = found_quorum_two().await;
    let bob = alice.invite("bob").await;
    let carol = alice.invite("carol").await;
    let dave = alice.invite("dave").await;
    let erin = alice.invite("erin").await;
    let all = [&alice, &bob, &carol, &dave, &erin];
    for n in all {
        assert!(
            eventually(|| async { member_count(n).await == 5 }).await,
            "{} sees five members",
            n.name
        );
    }
    let erin_id = erin.node.member();
    let before = alice.node.status().await.unwrap().sealing_epoch;

    // The split: Alice, Bob and Carol on one side; Dave and Erin on the other. One vote
    // against Erin on each side.
    split(&[&alice, &bob, &carol], &[&dave, &erin], true).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        alice.node.remove(erin_id).await.unwrap(),
        Removal::Voted { needed: 1 }
    );
    assert_eq!(
        dave.node.remove(erin_id).await.unwrap(),
        Removal::Voted { needed: 1 }
    );
    assert!(eventually(|| async { votes_against(&carol, erin_id).await == Some(1) }).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in all {
        assert_eq!(
            member_count(n).await,
            5,
            "{}: one vote per side removes nobody",
            n.name
        );
    }

    // The split heals: two votes in the log, and Erin is removed everywhere.
    split(&[&alice, &bob, &carol], &[&dave, &erin], false).await;
    let dave_addr = dave.node.status().await.unwrap().listen[0].clone();
    for n in [&alice, &bob] {
        n.node.dial(dave_addr.clone()).await.unwrap();
    }
    let remaining = [&alice, &bob, &carol, &dave];
    for n in remaining {
        assert!(
            eventually(|| async { member_count(n).await == 4 }).await,
            "{} sees Erin removed",
            n.name
        );
    }
    // Whoever cast the vote that completed the quorum in the fold rekeys: nobody posts.
    assert!(
        eventually(|| async {
            let mut epochs = Vec::new();
            for n in remaining {
                epochs.push(n.node.status().await.unwrap().sealing_epoch);
            }
            epochs[0].is_some() && epochs[0] != before && epochs.iter().all(|e| *e == epochs[0])
        })
        .await,
        "the remaining nodes rekey and agree on the sealing epoch"
    );
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

    // Erin cannot read what is posted now.
    let after = alice.post("after the vote").await;
    assert!(eventually(|| async { dave.has(&after).await }).await);
    let envelope = alice.node.envelope(after).await.unwrap().unwrap();
    assert_eq!(
        erin.node.ingest(envelope).await.unwrap(),
        Ingest::Ignored(Reason::UnknownEpoch),
        "Erin cannot open it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_members_reports_vanish_from_one_nodes_feed_only() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let carol = alice.invite("carol").await;
    for n in [&alice, &bob, &carol] {
        assert!(eventually(|| async { member_count(n).await == 3 }).await);
    }
    let before = bob.post("before the mute").await;
    for n in [&alice, &carol] {
        assert!(
            eventually(|| async { n.has(&before).await }).await,
            "{} reads it",
            n.name
        );
    }
    let mut carol_events = carol.node.events();

    // Carol mutes Bob: his report leaves her feed, and only hers.
    assert!(carol.node.mute(bob.node.member(), true).await.unwrap());
    assert!(!carol.has(&before).await, "muted on Carol's node");
    assert!(alice.has(&before).await, "Alice still reads it");
    assert!(bob.has(&before).await);
    assert!(
        carol
            .node
            .members()
            .await
            .unwrap()
            .iter()
            .any(|m| m.member.id == bob.node.member() && m.muted)
    );

    // What Bob posts now reaches Carol's store (her set stays the hood's) but not her
    // feed, nor her event stream; Alice reads it.
    let after = bob.post("after the mute").await;
    let from_alice = alice.post("alice is not muted").await;
    assert!(eventually(|| async { alice.has(&after).await }).await);
    assert!(eventually(|| async { carol.has(&from_alice).await }).await);
    assert!(
        eventually(|| async { carol.node.envelope(after).await.unwrap().is_some() }).await,
        "Carol's node holds Bob's report"
    );
    assert!(!carol.has(&after).await, "and does not show it");
    let mut announced = Vec::new();
    while let Ok(event) = carol_events.try_recv() {
        if let porchlight_node::node::Event::Item(item) = event {
            announced.push(item.id);
        }
    }
    assert!(
        announced.contains(&from_alice),
        "Carol's stream announces Alice's report"
    );
    assert!(!announced.contains(&after), "and not Bob's");

    // Unmute: both show again.
    assert!(carol.node.mute(bob.node.member(), false).await.unwrap());
    assert!(carol.has(&before).await && carol.has(&after).await);
}
