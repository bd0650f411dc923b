//! "Seen by" (issue #22) on real nodes over TCP on 127.0.0.1: acks travel by catch-up
//! sync like items, so an author who was offline when a neighbor read her alert counts
//! it once she is back; receiving an alert sends nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use porchlight_node::engine::Acked;
use porchlight_node::seen::SeenBy;
use porchlight_proto::ItemId;
use porchlight_proto::item::Body;
use porchlight_proto::report::Severity;
use porchlight_proto::seen::SeenAsk;
use porchlight_tests::{TestNode, eventually, report};

/// An urgent report that asks who has seen it.
fn asking(text: &str) -> Body {
    let Body::Report(mut r) = report(text) else {
        unreachable!("report() makes a report")
    };
    r.severity = Severity::Urgent;
    // A stand-in: the posting node makes the report's own key.
    r.ask_seen = Some(SeenAsk::generate(&mut porchlight_node::rng()).0);
    Body::Report(r)
}

async fn items(n: &TestNode) -> usize {
    n.node.status_brief().await.unwrap().items
}

async fn seen_at(n: &TestNode, id: &ItemId) -> Option<SeenBy> {
    n.feed()
        .await
        .into_iter()
        .find(|f| f.id == *id)
        .and_then(|f| f.seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_made_while_the_author_was_offline_reaches_her_by_sync() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let carol = alice.invite("carol").await;
    for n in [&alice, &bob, &carol] {
        assert!(
            eventually(|| async { n.node.members().await.unwrap().len() == 3 }).await,
            "{} sees three members",
            n.name
        );
    }
    let id = alice
        .node
        .post(asking("smoke from the garage"))
        .await
        .unwrap();
    for n in [&bob, &carol] {
        assert!(eventually(|| n.has(&id)).await, "{} has the alert", n.name);
    }
    // Receiving it sent nothing: every node holds the one report.
    for n in [&alice, &bob, &carol] {
        assert_eq!(items(n).await, 1, "{}", n.name);
    }
    assert_eq!(
        seen_at(&alice, &id).await,
        Some(SeenBy { of: 2, by: vec![] })
    );

    // Alice goes offline; Bob reads the alert meanwhile. Carol, who does not read it,
    // gets Bob's ack (anonymous to her) and sends none of her own.
    let alice_dir = alice.stop().await;
    assert!(matches!(bob.node.seen(id).await.unwrap(), Acked::Sent(_)));
    assert!(
        eventually(|| async { items(&carol).await == 2 }).await,
        "Carol holds the report and Bob's ack"
    );
    assert!(
        seen_at(&carol, &id).await.is_none(),
        "who has seen it is Alice's alone"
    );

    // Back, Alice gets the ack by catch-up sync (it was gossiped while she was away).
    let alice = TestNode::restart(alice_dir, "alice").await;
    assert!(
        eventually(|| async {
            seen_at(&alice, &id).await
                == Some(SeenBy {
                    of: 2,
                    by: vec!["bob".into()],
                })
        })
        .await,
        "Alice's feed counts Bob: {:?}",
        seen_at(&alice, &id).await
    );
    assert_eq!(
        items(&alice).await,
        2,
        "the report and Bob's ack; none from Carol"
    );
    // Bob asking again sends nothing.
    assert_eq!(bob.node.seen(id).await.unwrap(), Acked::Already);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(items(&alice).await, 2);
    assert_eq!(items(&carol).await, 2);
}
