//! Issue "Mesh node": real nodes on real TCP sockets on 127.0.0.1 form a hood.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use porchlight_node::engine::Ingest;
use porchlight_node::mesh;
use porchlight_node::node::{Config, Event, Setup};
use porchlight_proto::validate::Reason;
use porchlight_proto::{MemberKeys, testkit::SeededRng};
use porchlight_tests::{TestNode, eventually, eventually_within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_along_an_invite_chain_all_receive_every_report() {
    let mut nodes = vec![TestNode::found("n0").await];
    for i in 1..10 {
        // Each is invited by the member who joined just before: a chain of inviters.
        let next = nodes[i - 1].invite(&format!("n{i}")).await;
        nodes.push(next);
    }
    // Every node has heard of every join before anyone posts.
    for n in &nodes {
        assert!(
            eventually(|| async { n.node.members().await.unwrap().len() == 10 }).await,
            "{} sees ten members",
            n.name
        );
    }
    let mut ids = Vec::new();
    for n in &nodes {
        ids.push(n.post(&format!("report from {}", n.name)).await);
    }
    for n in &nodes {
        let all = eventually(|| async {
            let feed = n.feed().await;
            ids.iter().all(|id| feed.iter().any(|f| f.id == *id))
        })
        .await;
        assert!(
            all,
            "{} did not receive every report: has {} of {}",
            n.name,
            n.feed().await.len(),
            ids.len()
        );
        assert_eq!(
            n.node.members().await.unwrap().len(),
            10,
            "{} sees ten members",
            n.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_get_no_hood_gossip_and_nothing_they_send_is_kept() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let status = alice.node.status().await.unwrap();
    let hood = status.hood.unwrap();
    let alice_addr = status.listen[0].clone();

    // An outsider with its own swarm, speaking gossipsub on the hood's topic to Alice.
    let stranger = MemberKeys::generate(&mut SeededRng::new(77));
    let topic = IdentTopic::new(hood.topic());
    let mut swarm = mesh::swarm(&stranger, &topic.hash(), false).unwrap();
    swarm
        .behaviour_mut()
        .gossipsub
        .set_members([alice.node.peer_id()]);
    swarm
        .behaviour_mut()
        .sync
        .set_members([alice.node.peer_id()]);
    swarm
        .behaviour_mut()
        .gossipsub
        .inner_mut()
        .subscribe(&topic)
        .unwrap();
    swarm.dial(alice_addr.clone()).unwrap();

    // A member of another hood connects to Alice too.
    let other = TestNode::found("other-hood").await;
    other.node.dial(alice_addr).await.unwrap();

    let id = {
        let posted = bob.post("only for Elm Street");
        tokio::pin!(posted);
        let mut id = None;
        let mut received = Vec::new();
        let mut peers_answer = None;
        let mut connected = false;
        let mut published = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        loop {
            tokio::select! {
                posted_id = &mut posted, if id.is_none() => id = Some(posted_id),
                event = swarm.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        connected = true;
                        // The stranger asks Alice where the members are (peer exchange).
                        swarm
                            .behaviour_mut()
                            .sync
                            .inner_mut()
                            .send_request(&peer_id, porchlight_proto::sync::Request::Peers.encode());
                    }
                    SwarmEvent::Behaviour(mesh::BehaviourEvent::Sync(request_response::Event::Message { message: request_response::Message::Response { response, .. }, .. })) => peers_answer = Some(Ok(response)),
                    SwarmEvent::Behaviour(mesh::BehaviourEvent::Sync(request_response::Event::OutboundFailure { error, .. })) => peers_answer = Some(Err(error)),
                    SwarmEvent::Behaviour(mesh::BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => received.push(message.data),
                    _ => {}
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    // The stranger keeps trying to publish into the hood.
                    let r = swarm.behaviour_mut().gossipsub.inner_mut().publish(topic.clone(), b"spam".to_vec());
                    published.push(r.is_ok());
                }
            }
        }
        assert!(connected, "the stranger did connect to Alice");
        assert!(received.is_empty(), "the stranger received hood gossip");
        match peers_answer {
            Some(Err(request_response::OutboundFailure::UnsupportedProtocols)) => {}
            other => panic!("alice answered a stranger's peer exchange: {other:?}"),
        }
        assert!(
            published.iter().all(|ok| !ok),
            "no hood member took the stranger's messages"
        );
        id.unwrap()
    };
    assert!(eventually(|| async { alice.has(&id).await }).await);
    assert!(
        other.feed().await.is_empty(),
        "the other hood got nothing of ours"
    );
    assert_eq!(alice.feed().await.len(), 1);
    assert_eq!(bob.feed().await.len(), 1);
    // The other hood's own post stays in the other hood.
    let theirs = other.post("other hood's news").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!alice.has(&theirs).await && !bob.has(&theirs).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_is_locked_out() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let carol = alice.invite("carol").await;
    assert!(eventually(|| async { bob.node.members().await.unwrap().len() == 3 }).await);

    // Carol is a settled member: gossip reaches her (her join's connections renewed).
    let before = alice.post("before carol left").await;
    assert!(eventually(|| async { carol.has(&before).await }).await);
    let old_epoch = alice.node.status().await.unwrap().sealing_epoch.unwrap();
    assert!(!carol.node.status().await.unwrap().removed);
    alice.node.remove(carol.node.member()).await.unwrap();
    assert!(eventually(|| async { bob.node.members().await.unwrap().len() == 2 }).await);
    // Carol's node is told before it is cut off (D21): the removal reaches it.
    assert!(
        eventually(|| async { carol.node.status().await.unwrap().removed }).await,
        "carol's node learns of its removal"
    );
    assert_eq!(carol.node.members().await.unwrap().len(), 2);

    let after = alice.post("after carol left").await;
    assert!(
        eventually(|| async { bob.has(&after).await }).await,
        "bob receives alice's report"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!carol.has(&after).await, "carol's store lacks it");
    let envelope = alice.node.envelope(after).await.unwrap().unwrap();
    assert_eq!(
        carol.node.ingest(envelope).await.unwrap(),
        Ingest::Ignored(Reason::UnknownEpoch),
        "carol cannot open it"
    );

    // Carol's node tries to reconnect: Alice refuses the connection.
    let alice_addr = alice.node.status().await.unwrap().listen[0].clone();
    carol.node.dial(alice_addr).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !alice
            .node
            .status()
            .await
            .unwrap()
            .connected
            .contains(&carol.node.peer_id()),
        "a removed member cannot connect again"
    );

    // Her own node no longer posts for her.
    assert!(
        carol
            .node
            .post(porchlight_tests::report("still here"))
            .await
            .is_err()
    );
    // A modified node still could, under the old epoch she holds: Alice and Bob reject it.
    let hood = alice.node.status().await.unwrap().hood.unwrap();
    let (keys, key) = porchlight_tests::hijack(carol, &hood, old_epoch).await;
    let item = porchlight_proto::Item::sign(&keys, &hood, &porchlight_tests::report("still here"));
    let envelope =
        porchlight_proto::envelope::seal(&item, &hood, &key, SeededRng::new(3).bytes()).unwrap();
    let hers = porchlight_proto::ItemId::of_item(&item.encode());
    for judge in [&alice, &bob] {
        assert_eq!(
            judge.node.ingest(envelope.clone()).await.unwrap(),
            Ingest::Rejected(Reason::AuthorRemoved)
        );
        assert!(!judge.has(&hers).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_keeps_everything_and_rejoins_without_an_invite() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let before = alice.post("before the restart").await;
    assert!(eventually(|| async { bob.has(&before).await }).await);
    let bob_member = bob.node.member();
    let bob_hood = bob.node.status().await.unwrap().hood;

    let dir = bob.stop().await;
    let bob = TestNode::start_in(dir, "bob", Setup::Existing).await;
    assert_eq!(bob.node.member(), bob_member, "same identity");
    let status = bob.node.status().await.unwrap();
    assert_eq!(status.hood, bob_hood, "same hood");
    assert_eq!(status.members, 2);
    assert!(bob.has(&before).await, "items kept");

    let after = alice.post("after the restart").await;
    assert!(
        eventually(|| async { bob.has(&after).await }).await,
        "bob is back in the mesh"
    );
    let from_bob = bob.post("bob is back").await;
    assert!(
        eventually(|| async { alice.has(&from_bob).await }).await,
        "and can post (keys kept)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_posted_without_peers_is_delivered_once_a_peer_connects() {
    let alice = TestNode::found("alice").await;
    let lonely = alice.post("nobody is listening yet").await;
    assert_eq!(
        alice.node.status().await.unwrap().outbox,
        1,
        "it waits in the outbox"
    );
    let bob = alice.invite("bob").await;
    assert!(eventually(|| async { bob.has(&lonely).await }).await);
    assert!(eventually(|| async { alice.node.status().await.unwrap().outbox == 0 }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_envelope_is_stored_once_and_alerts_once() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let mut events = bob.node.events();
    let id = alice.post("once").await;
    assert!(eventually(|| async { bob.has(&id).await }).await);
    let envelope = alice.node.envelope(id).await.unwrap().unwrap();
    for _ in 0..3 {
        assert_eq!(
            bob.node.ingest(envelope.clone()).await.unwrap(),
            Ingest::Duplicate
        );
    }
    assert_eq!(bob.feed().await.iter().filter(|f| f.id == id).count(), 1);
    let mut alerts = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, Event::Item(ref f) if f.id == id) {
            alerts += 1;
        }
    }
    assert_eq!(alerts, 1, "one alert, not one per copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seen_of_an_offline_member_survives_a_restart() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let report = alice.post("seen by bob").await;
    assert!(eventually(|| async { bob.has(&report).await }).await);
    let created_at = bob
        .feed()
        .await
        .iter()
        .find(|f| f.id == report)
        .map(|f| f.created_at)
        .unwrap();
    let alice_id = alice.node.member();
    alice.stop().await;
    let stopped_at = porchlight_node::now();
    // Alice is not running. Bob keeps, across his restart, the newest of her item's
    // time and the time he last saw her connection close (the `seen_at` tree): the
    // second can be a second or more after the post on a loaded machine.
    let bob = TestNode::start_in(bob.stop().await, "bob", Setup::Existing).await;
    let members = bob.node.members().await.unwrap();
    let info = members.iter().find(|m| m.member.id == alice_id).unwrap();
    assert!(!info.connected);
    let last_seen = info
        .last_seen
        .expect("bob remembers when he last saw alice");
    assert!(
        (created_at..=stopped_at).contains(&last_seen),
        "last seen {last_seen}, between her post at {created_at} and her stop at {stopped_at}"
    );
}

/// Threat model D15, peer exchange: Carol joins through Bob and is connected to him
/// alone, but Bob tells her where Alice is. Bob then leaves for good: Carol's node, left
/// alone, finds Alice by itself (a redial every 30 s), and again after it restarts on a
/// new port, and receives her news.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_only_link_is_gone_finds_the_hood_by_peer_exchange() {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let carol = bob.invite("carol").await;
    for n in [&alice, &bob, &carol] {
        assert!(
            eventually(|| async { n.node.members().await.unwrap().len() == 3 }).await,
            "{} sees three members",
            n.name
        );
    }
    let alice_id = alice.node.peer_id();
    assert!(
        eventually(|| async { carol.node.status().await.unwrap().known_peers == 2 }).await,
        "carol learns where alice is from bob"
    );
    assert!(
        !carol
            .node
            .status()
            .await
            .unwrap()
            .connected
            .contains(&alice_id),
        "carol never connected to alice herself"
    );

    drop(bob.stop().await);
    let connected = |carol: &TestNode| {
        let node = carol.node.clone();
        async move { node.status().await.unwrap().connected.contains(&alice_id) }
    };
    assert!(
        eventually(|| connected(&carol)).await,
        "carol, left alone, reaches alice"
    );
    let before = alice.post("bob left").await;
    assert!(eventually(|| async { carol.has(&before).await }).await);

    let carol = TestNode::restart(carol.stop().await, "carol").await;
    assert!(
        eventually(|| async {
            carol
                .node
                .status()
                .await
                .unwrap()
                .connected
                .contains(&alice_id)
        })
        .await,
        "carol's restarted node reaches alice"
    );
    let id = alice.post("after bob left").await;
    assert!(
        eventually(|| async { carol.has(&id).await }).await,
        "carol receives alice's report"
    );
}

/// Copies a data dir file by file (permissions too: the key file stays 0600).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
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

/// Bob's machine loses power: his node stops without closing anything, so Alice's
/// connection to it stays open on her side. Bob's node comes back (from what its disk
/// held) and connects to Alice while that dead connection is still there. Gossipsub
/// sends its subscriptions on a peer's first connection only, so Alice's never reached
/// the new Bob: he never put her in his mesh nor sent her his reports, for as long as the
/// new connection lasted (sync every 15 s was the only way). Now Alice finds the dead
/// connection gone (QUIC's idle timeout; on TCP, pings without answer) and renews her
/// link to Bob.
async fn power_cut(transport: &'static str) {
    let only = move |config: &mut Config| {
        config
            .listen
            .retain(|a| a.iter().any(|p| p.tag() == transport));
    };
    let alice = TestNode::start_with(
        tempfile::tempdir().unwrap(),
        "alice",
        Setup::Found {
            hood_name: "Elm Street".into(),
            policy: porchlight_proto::Policy::default(),
        },
        only,
    )
    .await;
    assert_eq!(alice.node.status().await.unwrap().listen.len(), 1);
    let code = alice.node.invite(Duration::from_secs(600)).await.unwrap();
    // Bob runs on a thread and runtime of his own: blocking that thread freezes his node
    // with its sockets open, as a power cut does (nothing is closed, nothing answered).
    let (bob_tx, bob_rx) = tokio::sync::oneshot::channel();
    let (freeze_tx, freeze_rx) = std::sync::mpsc::channel::<()>();
    let (thaw_tx, thaw_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let bob = TestNode::start_with(dir, "bob", Setup::Join { code }, only).await;
            let _ = bob_tx.send((bob.node.clone(), bob.dir.path().to_owned()));
            let deadline = std::time::Instant::now() + porchlight_tests::WAIT;
            while freeze_rx.try_recv().is_err() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = thaw_rx.recv_timeout(Duration::from_secs(180));
            drop(bob);
        });
    });
    let (bob, bob_dir) = bob_rx.await.unwrap();
    let bob_peer = bob.peer_id();
    assert!(
        eventually(|| async {
            bob.status().await.unwrap().mesh_peers == 1
                && alice.node.status().await.unwrap().mesh_peers == 1
        })
        .await,
        "alice and bob gossip"
    );

    freeze_tx.send(()).unwrap();
    // The machine boots again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let disk = tempfile::tempdir().unwrap();
    copy_dir(&bob_dir, disk.path());
    let bob = TestNode::restart(disk, "bob").await;
    assert_eq!(bob.node.peer_id(), bob_peer);
    // Over TCP, Alice sees the old connection dead after two pings without answer (about
    // a minute); over QUIC, after its idle timeout.
    assert!(
        eventually_within(Duration::from_secs(150), || async {
            bob.node.status().await.unwrap().mesh_peers == 1
        })
        .await,
        "the restarted bob has alice in his mesh"
    );
    let from_bob = bob.post("bob is back").await;
    assert!(eventually(|| async { alice.has(&from_bob).await }).await);
    let from_alice = alice.post("welcome back").await;
    assert!(eventually(|| async { bob.has(&from_alice).await }).await);

    let _ = thaw_tx.send(());
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_from_a_power_cut_gossips_again_over_quic() {
    power_cut("quic-v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_from_a_power_cut_gossips_again_over_tcp() {
    power_cut("tcp").await;
}

/// Issue #15, point 7: strangers that connect and say nothing hold every outsider slot;
/// once they have been idle for `OUTSIDER_IDLE`, a neighbor with an invite still gets
/// in (the idle one connected longest makes room), where before it was turned away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_outsiders_holding_every_slot_make_room_for_a_joiner() {
    use porchlight_node::node::{MAX_OUTSIDERS, OUTSIDER_IDLE};
    let alice = TestNode::found("alice").await;
    let status = alice.node.status().await.unwrap();
    let topic = IdentTopic::new(status.hood.unwrap().topic());
    let addr = status.listen[0].clone();
    let mut strangers = Vec::new();
    for i in 0..MAX_OUTSIDERS {
        let keys = MemberKeys::generate(&mut SeededRng::new(1000 + i as u64));
        let mut swarm = mesh::swarm(&keys, &topic.hash(), false).unwrap();
        swarm.dial(addr.clone()).unwrap();
        strangers.push(tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        }));
    }
    assert!(
        eventually(|| async {
            alice.node.status().await.unwrap().connected.len() >= MAX_OUTSIDERS
        })
        .await,
        "the strangers hold every outsider slot"
    );
    tokio::time::sleep(OUTSIDER_IDLE + Duration::from_secs(1)).await;
    let bob = tokio::time::timeout(Duration::from_secs(30), alice.invite("bob"))
        .await
        .expect("the neighbor with an invite got in");
    let id = alice.post("welcome, bob").await;
    assert!(eventually(|| async { bob.has(&id).await }).await);
    for s in strangers {
        s.abort();
    }
}
