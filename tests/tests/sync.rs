//! Issue "Catch-up sync": nodes that were offline, and neighborhoods split by an outage,
//! converge. Real nodes on TCP on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::IdentTopic;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use porchlight_node::engine::Ingest;
use porchlight_node::mesh::{self, BehaviourEvent};
use porchlight_node::node::Setup;
use porchlight_proto::validate::Reason;
use porchlight_tests::{TestNode, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_offline_while_500_reports_were_posted_catches_up() {
    let alice = TestNode::found_with_rate("alice", 1000).await;
    let bob = alice.invite("bob").await;
    // Carol stays online, so Alice's posts go out by gossip at once and nothing waits in
    // an outbox for Bob: only sync can bring them to him.
    let carol = alice.invite("carol").await;
    let bob_dir = bob.stop().await;
    let mut ids = Vec::new();
    for i in 0..500 {
        ids.push(alice.post(&format!("report {i}")).await);
    }
    assert!(eventually(|| async { carol.feed().await.len() == 500 }).await);
    assert_eq!(alice.node.status().await.unwrap().outbox, 0);
    let bob = TestNode::start_in(bob_dir, "bob", Setup::Existing).await;
    let all = eventually(|| async {
        let feed = bob.feed().await;
        feed.len() >= 500
    })
    .await;
    let feed = bob.feed().await;
    assert!(all, "bob holds {} of 500", feed.len());
    for id in &ids {
        assert!(feed.iter().any(|f| f.id == *id));
    }
    assert!(bob.node.status().await.unwrap().sync.fetched >= 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_neighborhood_converges_after_healing() {
    // Twelve nodes along an invite chain: n0 — n1 — … — n11.
    let mut nodes = vec![TestNode::found_with_rate("n0", 100).await];
    for i in 1..12 {
        let next = nodes[i - 1].invite(&format!("n{i}")).await;
        nodes.push(next);
    }
    for n in &nodes {
        assert!(eventually(|| async { n.node.members().await.unwrap().len() == 12 }).await);
    }
    let (left, right) = nodes.split_at(6);
    // The outage: nobody on one side reaches anybody on the other.
    for l in left {
        for r in right {
            l.node.block(r.node.peer_id(), true).await.unwrap();
            r.node.block(l.node.peer_id(), true).await.unwrap();
        }
    }
    // Both sides post; the left removes n11, who is on the right and does not hear of it.
    // (n11 is the end of the chain: removing a member in the middle would also cut off
    // those who only know the hood through them; see docs/operations.md.)
    let removed = &right[5];
    left[0].node.remove(removed.node.member()).await.unwrap();
    // Every node on the left has heard of it before posting.
    for n in left {
        assert!(eventually(|| async { n.node.members().await.unwrap().len() == 11 }).await);
    }
    let mut left_posts = Vec::new();
    for n in left {
        left_posts.push(n.post(&format!("left: {}", n.name)).await);
    }
    let mut right_posts = Vec::new();
    for n in right {
        right_posts.push(n.post(&format!("right: {}", n.name)).await);
    }
    for n in left {
        assert!(
            eventually(|| async {
                let feed = n.feed().await;
                left_posts.iter().all(|id| feed.iter().any(|f| f.id == *id))
            })
            .await,
            "{} holds every post of its side",
            n.name
        );
    }
    assert!(
        !right[0].has(&left_posts[0]).await,
        "the sides really were apart"
    );

    // The outage ends.
    for l in left {
        for r in right {
            l.node.block(r.node.peer_id(), false).await.unwrap();
            r.node.block(l.node.peer_id(), false).await.unwrap();
        }
    }
    let bridge = right[0].node.status().await.unwrap().listen[0].clone();
    left[5].node.dial(bridge).await.unwrap();

    let members: Vec<&TestNode> = nodes.iter().filter(|n| n.name != removed.name).collect();
    let converged = eventually(|| async {
        for n in &members {
            n.node.sync_now().await.unwrap();
        }
        let mut digests = Vec::new();
        for n in &members {
            digests.push(n.node.status().await.unwrap().digest);
        }
        digests.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    if !converged {
        for n in &members {
            let st = n.node.status().await.unwrap();
            eprintln!(
                "{}: items {} members {} epoch {:?} digest {:?} connected {}",
                n.name,
                st.items,
                st.members,
                st.sealing_epoch.map(|e| e.0[0]),
                st.digest.map(|d| d[0]),
                st.connected.len()
            );
        }
    }
    assert!(
        converged,
        "every member holds the same items, roster and epoch"
    );

    let reference = members[0].node.status().await.unwrap();
    for n in &members {
        let status = n.node.status().await.unwrap();
        assert_eq!(status.members, 11, "{} has the same roster", n.name);
        assert_eq!(status.sealing_epoch, reference.sealing_epoch);
        assert!(n.has(&left_posts[5]).await && n.has(&right_posts[0]).await);
        // The removed member's post is gone from every store, also on its old side.
        assert!(
            !n.has(&right_posts[5]).await,
            "{} still holds n11's post",
            n.name
        );
    }
    // n11 cannot read what was sealed after its removal.
    let sealed_after = left[1].node.envelope(left_posts[1]).await.unwrap().unwrap();
    assert_eq!(
        removed.node.ingest(sealed_after).await.unwrap(),
        Ingest::Ignored(Reason::UnknownEpoch)
    );
}

/// How long a hostile program runs at most.
const HOSTILE_TIME: Duration = Duration::from_secs(10);

/// How a hostile peer answers a sync request: `None` drops it unanswered.
type Reply = Box<dyn Fn(&[u8]) -> Option<Vec<u8>>>;

/// Answers every sync request with `reply(request)`; runs for `time`, until the victim
/// penalizes someone, or until `done()` has held for a second. Gives back its swarm:
/// its connections last as long as the caller keeps it.
async fn hostile_peer(
    keys: porchlight_proto::MemberKeys,
    victim: &TestNode,
    reply: impl Fn(&[u8]) -> Option<Vec<u8>>,
    penalties_before: u64,
    time: Duration,
    done: &dyn Fn() -> bool,
) -> libp2p::Swarm<mesh::Behaviour> {
    let hood = victim.node.status().await.unwrap().hood.unwrap();
    let topic = IdentTopic::new(hood.topic());
    let mut swarm = mesh::swarm(&keys, &topic.hash(), false).unwrap();
    swarm
        .behaviour_mut()
        .sync
        .set_members([victim.node.peer_id()]);
    swarm
        .behaviour_mut()
        .gossipsub
        .set_members([victim.node.peer_id()]);
    let addr = victim.node.status().await.unwrap().listen[0].clone();
    swarm.dial(addr).unwrap();
    let mut deadline = tokio::time::Instant::now() + time;
    let mut finishing = false;
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                    message: request_response::Message::Request { request, channel, .. }, ..
                })) = event && let Some(answer) = reply(&request) {
                    let _ = swarm.behaviour_mut().sync.inner_mut().send_response(channel, answer);
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
        if victim.node.status().await.unwrap().sync.penalties > penalties_before {
            break;
        }
        if !finishing && done() {
            finishing = true;
            deadline = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
        }
    }
    swarm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sync_peers_are_cut_off_and_nothing_is_stored() {
    let alice = TestNode::found("alice").await;
    let before = alice.post("before the attack").await;
    // Three members whose nodes are replaced by hostile programs that keep their keys.
    let garbage: Reply = Box::new(|_| Some(vec![0xde, 0xad, 0xbe, 0xef, 0x01]));
    let oversize: Reply =
        Box::new(|_| Some(vec![7u8; porchlight_proto::sync::MAX_RESPONSE_BYTES + 4096]));
    let unasked: Reply = Box::new(|_| {
        Some(
            porchlight_proto::sync::Response::Items(vec![
                porchlight_proto::sync::Element::Envelope(vec![1, 2, 3]),
            ])
            .encode(),
        )
    });
    // Never converges: every round gets the answer to the first message against an
    // unrelated large set, so fingerprints never match.
    let first_answer = std::sync::Mutex::new(None::<Vec<u8>>);
    let unrelated = porchlight_proto::sync::storage((0u32..4000).map(|i| {
        let mut id = [0xee; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        (u64::from(i), id)
    }))
    .unwrap();
    let endless: Reply = Box::new(move |request| {
        let mut first = first_answer.lock().unwrap();
        if first.is_none()
            && let Ok(porchlight_proto::sync::Request::Reconcile(query)) =
                porchlight_proto::sync::Request::decode(request)
        {
            *first = porchlight_proto::sync::respond(&unrelated, &query).ok();
        }
        Some(
            porchlight_proto::sync::Response::Reconcile(first.clone().unwrap_or_default()).encode(),
        )
    });
    // Syncs honestly (as a node holding nothing) but answers peer exchange with more
    // members than the codec allows.
    let too_many_peers = || -> Reply {
        let empty = porchlight_proto::sync::storage(std::iter::empty()).unwrap();
        Box::new(move |request| {
            use porchlight_proto::sync::{PeerAddrs, Request, Response, respond};
            Some(match Request::decode(request) {
                Ok(Request::Reconcile(query)) => {
                    Response::Reconcile(respond(&empty, &query).unwrap_or_default()).encode()
                }
                Ok(Request::Peers) => Response::Peers(vec![
                    PeerAddrs {
                        member: [9; 32],
                        addrs: vec!["/ip4/127.0.0.1/tcp/9".into()],
                    };
                    porchlight_proto::sync::MAX_PEERS + 1
                ])
                .encode(),
                _ => Response::Items(Vec::new()).encode(),
            })
        })
    };
    for (i, reply) in [garbage, oversize, unasked, endless, too_many_peers()]
        .into_iter()
        .enumerate()
    {
        let member = alice.invite(&format!("m{i}")).await;
        let peer = member.node.peer_id();
        let dir = member.stop().await;
        let (keys, _) = porchlight_node::identity::load_or_create(dir.path()).unwrap();
        let penalties = alice.node.status().await.unwrap().sync.penalties;
        hostile_peer(keys, &alice, reply, penalties, HOSTILE_TIME, &|| false).await;
        let status = alice.node.status().await.unwrap();
        assert_eq!(
            status.sync.penalties,
            penalties + 1,
            "hostile peer {i} was penalized"
        );
        assert!(
            eventually(|| async { !alice.node.status().await.unwrap().connected.contains(&peer) })
                .await,
            "hostile peer {i} was cut off"
        );
    }
    // The same, but the hostile program connects while the member's own node is still
    // connected (as a restarted node can be back before its old connection is seen
    // closing): Alice asked that member for peers long ago, and asks again on the
    // connection that remains once the old one closes.
    let member = alice.invite("m5").await;
    let (keys, _) = porchlight_node::identity::load_or_create(member.dir.path()).unwrap();
    let penalties = alice.node.status().await.unwrap().sync.penalties;
    tokio::join!(
        hostile_peer(
            keys,
            &alice,
            too_many_peers(),
            penalties,
            HOSTILE_TIME,
            &|| false
        ),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(member.stop().await);
        }
    );
    assert_eq!(
        alice.node.status().await.unwrap().sync.penalties,
        penalties + 1,
        "the hostile program behind a replaced connection was penalized"
    );

    // Nothing was stored, and Alice still works.
    let feed = alice.feed().await;
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].id, before);
    alice.post("after the attack").await;
    assert_eq!(alice.feed().await.len(), 2);
}

/// A node that stops while it holds a sync request drops it unanswered: its connection
/// task resets the stream, which the asker reads as an empty answer. That is no fault
/// of the member's (before, it was cut off for `PENALTY` as "malformed", and its
/// restarted node could not reconnect for ten minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_request_dropped_unanswered_costs_the_member_nothing() {
    let alice = TestNode::found("alice").await;
    alice.post("something to sync").await;
    let member = alice.invite("m").await;
    let peer = member.node.peer_id();
    let dir = member.stop().await;
    let (keys, _) = porchlight_node::identity::load_or_create(dir.path()).unwrap();
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let dropped = |_: &[u8]| {
        asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        None
    };
    // Alice asks on connect (reconcile and peers), and the hostile program waits a second
    // more for any penalty to show.
    let done = || asked.load(std::sync::atomic::Ordering::Relaxed) >= 2;
    let _link = hostile_peer(keys, &alice, dropped, 0, HOSTILE_TIME, &done).await;
    assert!(
        asked.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "alice asked the member"
    );
    let status = alice.node.status().await.unwrap();
    assert_eq!(status.sync.penalties, 0, "no one was penalized");
    assert!(
        status.connected.contains(&peer),
        "the member is still connected"
    );
}

/// A node from before sync was framed speaks only `/porchlight/sync/2`: a current node
/// falls back to it for its own requests and answers that node's requests in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_speaking_only_the_unframed_sync_version_still_syncs() {
    use porchlight_proto::sync::{Request, Response};
    let alice = TestNode::found("alice").await;
    let member = alice.invite("old").await;
    let dir = member.stop().await;
    let (keys, _) = porchlight_node::identity::load_or_create(dir.path()).unwrap();
    let behaviour = request_response::Behaviour::with_codec(
        mesh::BytesCodec::sync(),
        [(
            mesh::SYNC_PROTOCOL_UNFRAMED,
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default(),
    );
    let mut old = libp2p::SwarmBuilder::with_existing_identity(mesh::keypair(&keys))
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let listen = alice.node.status().await.unwrap().listen;
    let tcp = listen
        .iter()
        .find(|a| a.iter().any(|p| p.tag() == "tcp"))
        .unwrap();
    old.dial(tcp.clone()).unwrap();
    let (mut asked_us, mut answered) = (None, None);
    let deadline = tokio::time::Instant::now() + porchlight_tests::WAIT;
    while asked_us.is_none() || answered.is_none() {
        let event = tokio::select! {
            event = old.select_next_some() => event,
            _ = tokio::time::sleep_until(deadline) => panic!("no sync over /2 in time"),
        };
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                old.behaviour_mut()
                    .send_request(&peer_id, Request::Peers.encode());
            }
            SwarmEvent::Behaviour(request_response::Event::Message { message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        asked_us = Some(Request::decode(&request).map(|_| ()));
                        let _ = old
                            .behaviour_mut()
                            .send_response(channel, Response::refused("busy").encode());
                    }
                    request_response::Message::Response { response, .. } => {
                        answered = Some(Response::decode(&response).map(|_| ()));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(asked_us.unwrap().is_ok(), "alice's request over /2 decodes");
    assert!(answered.unwrap().is_ok(), "alice's answer over /2 decodes");
    assert_eq!(alice.node.status().await.unwrap().sync.penalties, 0);
}

/// Issue #14, M8: a copy of a report re-sealed under a new nonce (by anyone holding the
/// epoch key) is the same item. Two nodes that kept different copies agree on it, an
/// update that names it applies on both, and their digests match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resealed_copy_is_the_same_item_and_nodes_holding_different_copies_agree() {
    use porchlight_proto::item::Body;
    use porchlight_proto::report::Update;
    use porchlight_proto::testkit::SeededRng;
    use porchlight_proto::{KeyRing, envelope};

    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let mallory = alice.invite("mallory").await;
    for n in [&alice, &bob] {
        assert!(eventually(|| async { n.node.members().await.unwrap().len() == 3 }).await);
    }
    let status = alice.node.status().await.unwrap();
    let hood = status.hood.unwrap();
    let (_, key) = porchlight_tests::hijack(mallory, &hood, status.sealing_epoch.unwrap()).await;

    // Alice and Bob are apart when Alice posts; Bob gets a re-sealed copy instead.
    alice.node.block(bob.node.peer_id(), true).await.unwrap();
    bob.node.block(alice.node.peer_id(), true).await.unwrap();
    let id = alice.post("parcel taken from porch").await;
    let original = alice.node.envelope(id).await.unwrap().unwrap();
    let mut ring = KeyRing::new();
    ring.insert(key.clone());
    let item = envelope::open(&original, &hood, &ring).unwrap().item;
    let resealed = envelope::seal(&item, &hood, &key, SeededRng::new(11).bytes()).unwrap();
    assert_ne!(resealed, original);
    assert!(matches!(
        bob.node.ingest(resealed.clone()).await.unwrap(),
        Ingest::New(a) if a.id == id
    ));
    // Alice updates her report, naming it by its id.
    let now = porchlight_node::now();
    let update = alice
        .node
        .post(Body::Update(Update {
            created_at: now,
            expires_at: now + 3600,
            report: id,
            severity: None,
            text: "a second parcel taken".into(),
        }))
        .await
        .unwrap();

    // They meet again.
    alice.node.block(bob.node.peer_id(), false).await.unwrap();
    bob.node.block(alice.node.peer_id(), false).await.unwrap();
    let addr = alice.node.status().await.unwrap().listen[0].clone();
    bob.node.dial(addr).await.unwrap();
    assert!(
        eventually(|| async { bob.has(&update).await }).await,
        "the update reaches bob and applies to his copy"
    );
    assert!(
        eventually(|| async {
            let a = alice.node.status().await.unwrap().digest;
            let b = bob.node.status().await.unwrap().digest;
            a.is_some() && a == b
        })
        .await,
        "one digest though they hold different envelopes"
    );
    // Each kept the copy it had: one item, not two.
    assert_eq!(bob.node.envelope(id).await.unwrap().unwrap(), resealed);
    assert_eq!(alice.node.envelope(id).await.unwrap().unwrap(), original);
    let reports = |feed: Vec<porchlight_node::node::FeedItem>| {
        feed.iter()
            .filter(|f| matches!(f.body, Body::Report(_)))
            .count()
    };
    assert_eq!(reports(bob.feed().await), 1);
    assert_eq!(reports(alice.feed().await), 1);
}

/// Issue #15, "Must show" 3: a member whose node is replaced by a program that asks for
/// the same item over and over (512 copies of its id in every fetch) gets answers until
/// its byte budget is spent, is then slowed (its fetches refused), and is penalized and
/// cut off when it keeps asking; an honest member that missed posts meanwhile still
/// catches up by sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_refetching_is_slowed_then_penalized_and_honest_peers_keep_syncing() {
    use porchlight_proto::sync::{Request, Response};
    let alice = TestNode::found_with_rate("alice", 1000).await;
    let bob = alice.invite("bob").await;
    let carol = alice.invite("carol").await;
    let item = alice.post(&"a long report ".repeat(60)).await;
    let mallory = alice.invite("mallory").await;
    let mallory_peer = mallory.node.peer_id();
    let (keys, _) = porchlight_node::identity::load_or_create(mallory.dir.path()).unwrap();
    let _mallory_dir = mallory.stop().await;
    // Bob is away while it happens, and misses a post.
    let bob_dir = bob.stop().await;
    let missed = alice.post("while bob was away").await;
    let penalties = alice.node.status().await.unwrap().sync.penalties;

    let hood = alice.node.status().await.unwrap().hood.unwrap();
    let topic = IdentTopic::new(hood.topic());
    let mut swarm = mesh::swarm(&keys, &topic.hash(), false).unwrap();
    swarm
        .behaviour_mut()
        .sync
        .set_members([alice.node.peer_id()]);
    swarm
        .behaviour_mut()
        .gossipsub
        .set_members([alice.node.peer_id()]);
    swarm
        .dial(alice.node.status().await.unwrap().listen[0].clone())
        .unwrap();
    let fetch = Request::Fetch(vec![item.0; porchlight_proto::sync::MAX_FETCH_IDS]).encode();
    let (mut served, mut slowed, mut served_after_slowed) = (0u32, 0u32, 0u32);
    let mut bytes = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut cut_off = false;
    while !cut_off {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    swarm.behaviour_mut().sync.inner_mut().send_request(&peer_id, fetch.clone());
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                    peer,
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => {
                    match Response::decode(&response) {
                        Ok(Response::Items(items)) => {
                            served += 1;
                            if slowed > 0 {
                                served_after_slowed += 1;
                            }
                            // As the meter counts them: each element and its framing.
                            bytes += items.iter().map(|e| e.len() + 16).sum::<usize>();
                        }
                        Ok(Response::Refused(_)) => slowed += 1,
                        other => panic!("unexpected answer {other:?}"),
                    }
                    swarm.behaviour_mut().sync.inner_mut().send_request(&peer, fetch.clone());
                }
                SwarmEvent::ConnectionClosed { num_established: 0, .. } => cut_off = true,
                _ => {}
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    drop(swarm);
    let status = alice.node.status().await.unwrap();
    eprintln!("served {served} answers ({bytes} bytes), then slowed {slowed} times");
    assert!(cut_off, "the refetching member was cut off");
    assert!(
        bytes as u64 >= porchlight_node::mesh::meter::BYTES_PER_WINDOW,
        "served its whole budget first ({bytes} bytes)"
    );
    assert_eq!(served_after_slowed, 0, "nothing served once slowed");
    assert_eq!(
        slowed,
        porchlight_node::mesh::meter::MAX_REFUSED,
        "slowed, then penalized"
    );
    assert_eq!(status.sync.penalties, penalties + 1, "penalized once");
    // Mallory saw the connection close; Alice's node may take a moment to see it too.
    assert!(
        eventually(|| async {
            !alice
                .node
                .status()
                .await
                .unwrap()
                .connected
                .contains(&mallory_peer)
        })
        .await,
        "alice let go of mallory"
    );

    // Bob comes back and catches up by sync (Carol being online, the post went out by
    // gossip while Bob was away and waits in no outbox).
    let bob = TestNode::start_in(bob_dir, "bob", Setup::Existing).await;
    assert!(
        eventually(|| async { bob.has(&missed).await }).await,
        "the honest member caught up"
    );
    assert_eq!(
        alice.node.status().await.unwrap().sync.penalties,
        penalties + 1,
        "no honest member was penalized"
    );
    drop(carol);
}
