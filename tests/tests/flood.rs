//! Issue #8, "Reliability and security battery": flood. A member whose node is replaced
//! by a bare gossipsub peer holding its keys (so it passes the members-only gate) sends
//! (a) validly signed and sealed reports beyond the hood's rate limit, (b) 10,000 invalid
//! messages the nodes reject, (c) 10,000 invalid messages the nodes ignore without blame.
//! Real nodes on 127.0.0.1. Figures: docs/reliability.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, PublishError, TopicHash};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use porchlight_node::mesh;
use porchlight_node::node::Event;
use porchlight_proto::envelope::{self, Envelope};
use porchlight_proto::limits::MAX_ENVELOPE_BYTES;
use porchlight_proto::testkit::SeededRng;
use porchlight_proto::{EpochId, EpochKey, HoodId, Item, ItemId, MemberKeys};
use porchlight_tests::{TestNode, eventually, hijack, report, report_at};
use tokio::sync::oneshot;

/// The tests here measure the process's CPU time: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Invalid messages the attacker sends in (b) and (c).
const INVALID: usize = 10_000;
/// The bound on the nodes' CPU per invalid message: generous, for a shared noisy machine
/// and an unoptimized build (the measured figure is in docs/reliability.md).
const CPU_PER_MESSAGE: Duration = Duration::from_millis(2);
/// How long the idle baseline is measured.
const IDLE: Duration = Duration::from_secs(2);

/// A member's keys driving a bare gossipsub swarm (TCP, Noise, yamux, gossipsub and
/// nothing else), free to send whatever it likes on the hood's topic.
struct Attacker {
    swarm: Swarm<gossipsub::Behaviour>,
    topic: TopicHash,
    subscribed: HashSet<PeerId>,
    closed: usize,
}

impl Attacker {
    /// `queue`: gossipsub's per-peer send queue. A message that finds it full is not
    /// sent (`AllQueuesFull`), so a short queue lets the attacker count exactly what it
    /// sent; nothing waits long enough in it to be dropped.
    fn new(keys: &MemberKeys, topic: &TopicHash, queue: usize) -> Attacker {
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .message_id_fn(|m: &gossipsub::Message| {
                gossipsub::MessageId::from(ItemId::of_envelope(&m.data).0.to_vec())
            })
            .max_transmit_size(MAX_ENVELOPE_BYTES + 4096)
            .heartbeat_interval(Duration::from_secs(1))
            .connection_handler_queue_len(queue)
            .publish_queue_duration(Duration::from_secs(120))
            .build()
            .unwrap();
        let behaviour =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).unwrap();
        let swarm = libp2p::SwarmBuilder::with_existing_identity(mesh::keypair(keys))
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| behaviour)
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        Attacker {
            swarm,
            topic: topic.clone(),
            subscribed: HashSet::new(),
            closed: 0,
        }
    }

    fn on_event(&mut self, event: SwarmEvent<gossipsub::Event>) {
        match event {
            SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, topic })
                if topic == self.topic =>
            {
                self.subscribed.insert(peer_id);
            }
            SwarmEvent::ConnectionClosed { .. } => self.closed += 1,
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                eprintln!("attacker: dial failed: {error}")
            }
            _ => {}
        }
    }

    /// Runs the swarm for `time`.
    async fn drive(&mut self, time: Duration) {
        let until = tokio::time::Instant::now() + time;
        while let Ok(event) = tokio::time::timeout_at(until, self.swarm.select_next_some()).await {
            self.on_event(event);
        }
    }

    /// Dials the victims and waits until each has told us it is on the hood's topic.
    async fn connect(&mut self, victims: &[(PeerId, Multiaddr)]) {
        for (_, addr) in victims {
            self.swarm.dial(addr.clone()).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !victims.iter().all(|(p, _)| self.subscribed.contains(p)) {
            assert!(
                Instant::now() < deadline,
                "the victims never subscribed ({} connections closed)",
                self.closed
            );
            self.drive(Duration::from_millis(50)).await;
        }
    }

    /// Publishes one message; `false` if every queue was full (the message is lost: its
    /// id is in gossipsub's duplicate cache now).
    fn publish(&mut self, message: Vec<u8>) -> bool {
        match self
            .swarm
            .behaviour_mut()
            .publish(self.topic.clone(), message)
        {
            Ok(_) => true,
            Err(PublishError::AllQueuesFull(_)) => false,
            Err(e) => panic!("publish: {e}"),
        }
    }
}

/// The node's TCP listen address (the attacker speaks TCP only).
fn tcp_addr(listen: &[Multiaddr]) -> Multiaddr {
    listen
        .iter()
        .find(|a| {
            a.iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::Tcp(_)))
        })
        .expect("a TCP listen address")
        .clone()
}

/// User plus system CPU time of the process or thread whose `stat` file this is.
fn cpu(stat: &str) -> Duration {
    let stat = std::fs::read_to_string(stat).expect("read stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat format");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime, fields 14 and 15; in USER_HZ, 100 on every Linux this runs on.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn below(rng: &mut SeededRng, n: usize) -> usize {
    (u64::from_le_bytes(rng.bytes()) % n as u64) as usize
}

fn random_bytes(rng: &mut SeededRng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        out.extend_from_slice(&rng.bytes::<32>());
    }
    out.truncate(len);
    out
}

/// Counts `Event::Item` alerts per item id on a node, from now on.
fn watch(node: &TestNode) -> Arc<Mutex<HashMap<ItemId, u32>>> {
    let alerts = Arc::new(Mutex::new(HashMap::new()));
    let mut events = node.node.events();
    let counts = alerts.clone();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Event::Item(item) = event {
                *counts.lock().unwrap().entry(item.id).or_default() += 1;
            }
        }
    });
    alerts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_over_the_rate_limit_are_refused_everywhere_and_honest_reports_still_arrive() {
    const LIMIT: u16 = 5;
    const EXCESS: usize = 200;
    let _serial = SERIAL.lock().await;
    let alice = TestNode::found_with_rate("alice", LIMIT).await;
    let bob = alice.invite("bob").await;
    let carol = bob.invite("carol").await;
    let mallory = alice.invite("mallory").await;
    let honest = [&alice, &bob, &carol];
    for n in honest {
        assert!(eventually(|| async { n.node.members().await.unwrap().len() == 4 }).await);
    }
    let status = alice.node.status().await.unwrap();
    let hood = status.hood.unwrap();
    let mallory_id = mallory.node.member();
    let (keys, key) = hijack(mallory, &hood, status.sealing_epoch.unwrap()).await;

    // Mallory's reports: all validly signed and sealed, all created in one rate window;
    // the first LIMIT are within the limit, the rest are the flood.
    let created_at = porchlight_node::now();
    let mut rng = SeededRng::new(8);
    let items: Vec<Item> = (0..usize::from(LIMIT) + EXCESS)
        .map(|i| Item::sign(&keys, &hood, &report_at(&format!("flood {i}"), created_at)))
        .collect();
    let envelopes: Vec<Vec<u8>> = items
        .iter()
        .map(|item| envelope::seal(item, &hood, &key, rng.bytes()).unwrap())
        .collect();
    let ids: Vec<ItemId> = items.iter().map(|i| ItemId::of_item(&i.encode())).collect();
    let (allowed, excess) = ids.split_at(usize::from(LIMIT));

    let alerts: Vec<_> = honest.iter().map(|n| watch(n)).collect();
    let mut attacker = Attacker::new(&keys, &IdentTopic::new(hood.topic()).hash(), 5000);
    let mut victims = Vec::new();
    for n in honest {
        let st = n.node.status().await.unwrap();
        victims.push((st.peer_id, tcp_addr(&st.listen)));
    }
    attacker.connect(&victims).await;

    // Honest members post while the flood goes on (two reports each, 0.5 s apart).
    let posters: Vec<_> = honest
        .iter()
        .map(|n| {
            let node = n.node.clone();
            let name = n.name.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..2 {
                    ids.push(node.post(report(&format!("{name} {i}"))).await.unwrap());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                ids
            })
        })
        .collect();
    // The flood, over about 1.5 s, in order; each node's gossipsub score for the flooder
    // is sampled as it goes.
    let attacker_peer = *attacker.swarm.local_peer_id();
    let mut lowest = vec![f64::INFINITY; honest.len()];
    let flood_started = Instant::now();
    for (i, envelope) in envelopes.into_iter().enumerate() {
        assert!(attacker.publish(envelope), "the send queue took it");
        attacker.drive(Duration::from_millis(7)).await;
        if i % 10 == 9 {
            for (n, low) in honest.iter().zip(lowest.iter_mut()) {
                let st = n.node.status().await.unwrap();
                if let Some((_, s)) = st.gossip_scores.iter().find(|(p, _)| *p == attacker_peer) {
                    *low = low.min(*s);
                }
            }
        }
    }
    attacker.drive(Duration::from_secs(1)).await;
    let flood_time = flood_started.elapsed();
    let mut honest_ids = Vec::new();
    for p in posters {
        honest_ids.extend(p.await.unwrap());
    }

    // Honest reports arrive everywhere.
    for n in honest {
        assert!(
            eventually(|| async {
                let feed = n.feed().await;
                honest_ids.iter().all(|id| feed.iter().any(|f| f.id == *id))
            })
            .await,
            "{} holds every honest report",
            n.name
        );
    }
    // A sync round cannot bring the excess either.
    for n in honest {
        n.node.sync_now().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let graylist = gossipsub::PeerScoreThresholds::default().graylist_threshold;
    for (n, low) in honest.iter().zip(&lowest) {
        assert!(
            *low < graylist,
            "{} graylisted the flooder (lowest score {low})",
            n.name
        );
    }
    for (n, alerts) in honest.iter().zip(&alerts) {
        let feed = n.feed().await;
        let held: HashSet<ItemId> = feed
            .iter()
            .filter(|f| f.author == mallory_id)
            .map(|f| f.id)
            .collect();
        assert_eq!(
            held,
            allowed.iter().copied().collect(),
            "{} holds exactly mallory's first {LIMIT} reports",
            n.name
        );
        assert_eq!(feed.len(), usize::from(LIMIT) + honest_ids.len());
        let alerts = alerts.lock().unwrap();
        assert!(
            excess.iter().all(|id| !alerts.contains_key(id)),
            "{} alerted for the excess",
            n.name
        );
        assert!(
            allowed.iter().all(|id| alerts.get(id) == Some(&1)),
            "{} alerted once for each allowed report",
            n.name
        );
    }
    let mut digests = HashSet::new();
    for n in honest {
        digests.insert(n.node.status().await.unwrap().digest);
    }
    assert_eq!(digests.len(), 1, "the honest nodes agree");
    assert_eq!(
        attacker.closed, 0,
        "the attacker stayed connected throughout"
    );
    println!(
        "flood (a): limit {LIMIT}/h, {} sealed reports sent to 3 nodes in {:.1} s: each node \
         holds and alerted for the first {LIMIT}, none of the {EXCESS} over the limit; {} honest \
         reports delivered everywhere meanwhile; each node's lowest gossipsub score for the \
         flooder during the flood {lowest:?} (graylisted below {graylist})",
        ids.len(),
        flood_time.as_secs_f64(),
        honest_ids.len()
    );
}

/// What invalid messages the attacker sends.
#[derive(Clone, Copy, Debug)]
enum Invalid {
    /// Refused with blame (`Reject`): garbage, another hood, a failed AEAD, a bad signature.
    Rejected,
    /// Refused without blame (`Ignore`): an unknown version, an unknown epoch.
    Ignored,
}

/// The `i`-th invalid message of the kind, for the hood whose epoch key `key` is.
fn invalid(
    kind: Invalid,
    i: usize,
    rng: &mut SeededRng,
    keys: &MemberKeys,
    hood: &HoodId,
    key: &EpochKey,
) -> Vec<u8> {
    let sealed_like = |version: u8, hood: HoodId, epoch: EpochId, rng: &mut SeededRng| {
        let len = 256 + below(rng, 800);
        Envelope {
            version,
            hood,
            epoch,
            window: porchlight_proto::keys::window_of(porchlight_node::now()),
            nonce: rng.bytes(),
            ciphertext: random_bytes(rng, len),
        }
        .encode()
    };
    match (kind, i % 4) {
        (Invalid::Rejected, 0) => {
            let len = 64 + below(rng, 1100);
            random_bytes(rng, len)
        }
        (Invalid::Rejected, 1) => sealed_like(2, HoodId(rng.bytes()), key.id(), rng),
        (Invalid::Rejected, 2) => sealed_like(2, *hood, key.id(), rng),
        (Invalid::Rejected, _) => {
            // Sealed right, but the signature is over another body.
            let now = porchlight_node::now();
            let mut item = Item::sign(keys, hood, &report_at(&format!("signed {i}"), now));
            item.body = report_at(&format!("sent {i}"), now).encode();
            envelope::seal(&item, hood, key, rng.bytes()).unwrap()
        }
        (Invalid::Ignored, n) if n % 2 == 0 => sealed_like(3, *hood, key.id(), rng),
        (Invalid::Ignored, _) => sealed_like(2, *hood, EpochId(rng.bytes()), rng),
    }
}

/// What the attacker's thread reports once it has sent everything.
#[derive(Debug)]
struct Sent {
    messages: usize,
    queue_full: usize,
    took: Duration,
    closed: usize,
}

/// Figures of one flood against one node.
#[derive(Debug)]
struct Figures {
    sent: Sent,
    /// CPU of everything in the process but the attacker's thread, during the flood.
    nodes_cpu: Duration,
    /// The same over the idle baseline, scaled to the flood's duration.
    idle_cpu: Duration,
    /// The victim's gossipsub score for the attacker, sampled every 100 ms.
    scores: Vec<f64>,
    honest: usize,
}

/// Alice (the victim) and Bob are honest; Mallory's node is replaced by an attacker on
/// its own OS thread and runtime, so the CPU it spends making and sending messages can
/// be told apart from the nodes'. It sends `count` messages of `kind` to Alice while
/// Bob posts; Alice's CPU (with Bob's, an upper bound) is measured against an idle
/// baseline.
async fn flood(kind: Invalid, count: usize) -> Figures {
    let alice = TestNode::found("alice").await;
    let bob = alice.invite("bob").await;
    let mallory = alice.invite("mallory").await;
    for n in [&alice, &bob] {
        assert!(eventually(|| async { n.node.members().await.unwrap().len() == 3 }).await);
    }
    let status = alice.node.status().await.unwrap();
    let hood = status.hood.unwrap();
    let (keys, key) = hijack(mallory, &hood, status.sealing_epoch.unwrap()).await;
    let victim = (status.peer_id, tcp_addr(&status.listen));
    let attacker_peer = mesh::peer_id(&keys.id()).unwrap();

    let (ready_tx, ready_rx) = oneshot::channel::<PathBuf>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (sent_tx, sent_rx) = oneshot::channel::<Sent>();
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let stat = PathBuf::from("/proc")
                .join(std::fs::read_link("/proc/thread-self").unwrap())
                .join("stat");
            let topic = IdentTopic::new(hood.topic()).hash();
            // A short queue: the attacker learns at once when Alice stops reading.
            let mut attacker = Attacker::new(&keys, &topic, 64);
            attacker.connect(std::slice::from_ref(&victim)).await;
            ready_tx.send(stat).unwrap();
            let mut go_rx = go_rx;
            while go_rx.try_recv().is_err() {
                attacker.drive(Duration::from_millis(20)).await;
            }
            let mut rng = SeededRng::new(10_000);
            let started = Instant::now();
            let deadline = started + Duration::from_secs(90);
            let (mut messages, mut queue_full, mut i) = (0, 0, 0);
            while messages < count && Instant::now() < deadline {
                let bytes = invalid(kind, i, &mut rng, &keys, &hood, &key);
                i += 1;
                if attacker.publish(bytes) {
                    messages += 1;
                    if messages % 16 == 0 {
                        attacker.drive(Duration::ZERO).await;
                        tokio::task::yield_now().await;
                    }
                } else {
                    queue_full += 1;
                    attacker.drive(Duration::from_millis(2)).await;
                }
            }
            // Let the queue empty and Alice read the rest.
            attacker.drive(Duration::from_secs(1)).await;
            sent_tx
                .send(Sent {
                    messages,
                    queue_full,
                    took: started.elapsed(),
                    closed: attacker.closed,
                })
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            while stop_rx.try_recv().is_err() && Instant::now() < deadline {
                attacker.drive(Duration::from_millis(20)).await;
            }
        });
    });
    let stat = tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .expect("the attacker connects in time")
        .unwrap();
    let stat = stat.to_str().unwrap().to_owned();
    let nodes_cpu = |process: Duration, attacker: Duration| process.saturating_sub(attacker);

    // The idle baseline: the same nodes, the attacker connected and quiet.
    let (p0, a0) = (cpu("/proc/self/stat"), cpu(&stat));
    let idle_started = Instant::now();
    tokio::time::sleep(IDLE).await;
    let idle = nodes_cpu(cpu("/proc/self/stat") - p0, cpu(&stat) - a0)
        .div_f64(idle_started.elapsed().as_secs_f64());

    // The flood, while Bob posts three reports.
    let bob_node = bob.node.clone();
    let posting = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(bob_node.post(report(&format!("bob {i}"))).await.unwrap());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ids
    });
    let (p0, a0) = (cpu("/proc/self/stat"), cpu(&stat));
    let flood_started = Instant::now();
    go_tx.send(()).unwrap();
    let mut scores = Vec::new();
    let mut sent_rx = sent_rx;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let sent = loop {
        tokio::select! {
            sent = &mut sent_rx => break sent.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let st = alice.node.status().await.unwrap();
                if let Some((_, s)) = st.gossip_scores.iter().find(|(p, _)| *p == attacker_peer) {
                    scores.push(*s);
                }
            }
            _ = tokio::time::sleep_until(deadline) => panic!("the flood did not end in time"),
        }
    };
    let nodes_cpu = nodes_cpu(cpu("/proc/self/stat") - p0, cpu(&stat) - a0);
    let idle_cpu = idle.mul_f64(flood_started.elapsed().as_secs_f64());

    // Bob's reports reached Alice during the flood; nothing of the flood was kept.
    let honest = posting.await.unwrap();
    assert!(
        eventually(|| async {
            let feed = alice.feed().await;
            honest.iter().all(|id| feed.iter().any(|f| f.id == *id))
        })
        .await,
        "alice got bob's reports"
    );
    assert_eq!(alice.feed().await.len(), honest.len(), "only bob's reports");
    assert_eq!(alice.node.status().await.unwrap().items, honest.len());
    let _ = stop_tx.send(());
    thread.join().unwrap();
    Figures {
        sent,
        nodes_cpu,
        idle_cpu,
        scores,
        honest: honest.len(),
    }
}

fn print(name: &str, f: &Figures) {
    let per = f.nodes_cpu.div_f64(f.sent.messages as f64);
    let net = f
        .nodes_cpu
        .saturating_sub(f.idle_cpu)
        .div_f64(f.sent.messages as f64);
    let graylist = gossipsub::PeerScoreThresholds::default().graylist_threshold;
    let below = f.scores.iter().filter(|s| **s < graylist).count();
    let min = f.scores.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "flood ({name}): {} invalid messages in {:.2} s ({} times the 64-message send queue \
         was full); nodes' CPU {:.0} ms ({:.0} ms idle baseline over the same time): {:.0} µs \
         per message, {:.0} µs above idle; victim's score for the attacker: min {min:.0}, \
         below the graylist threshold ({graylist}) in {below} of {} samples; {} honest \
         reports delivered meanwhile",
        f.sent.messages,
        f.sent.took.as_secs_f64(),
        f.sent.queue_full,
        f.nodes_cpu.as_secs_f64() * 1e3,
        f.idle_cpu.as_secs_f64() * 1e3,
        per.as_secs_f64() * 1e6,
        net.as_secs_f64() * 1e6,
        f.scores.len(),
        f.honest,
    );
}

/// Floods with `INVALID` messages of `kind`: all sent over one connection, the attacker
/// graylisted, and little CPU spent per message.
async fn flood_is_graylisted_cheaply(kind: Invalid, name: &str) {
    let _serial = SERIAL.lock().await;
    let f = flood(kind, INVALID).await;
    print(name, &f);
    assert_eq!(f.sent.messages, INVALID, "the attacker sent them all");
    assert_eq!(f.sent.closed, 0, "over one connection");
    let graylist = gossipsub::PeerScoreThresholds::default().graylist_threshold;
    assert!(
        f.scores.iter().any(|s| *s < graylist),
        "the attacker was graylisted: {:?}",
        f.scores
    );
    assert!(
        f.nodes_cpu.div_f64(INVALID as f64) < CPU_PER_MESSAGE,
        "the nodes spent {:?} on {INVALID} messages",
        f.nodes_cpu
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sending_10000_invalid_messages_is_graylisted_and_costs_little_cpu() {
    flood_is_graylisted_cheaply(Invalid::Rejected, "b, rejected").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sending_10000_messages_nodes_cannot_read_is_graylisted_past_the_budget() {
    // Past `IGNORE_BUDGET` a minute, messages no one can judge count as invalid (D22).
    flood_is_graylisted_cheaply(Invalid::Ignored, "c, ignored").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_messages_nodes_cannot_read_cost_their_relay_nothing() {
    let _serial = SERIAL.lock().await;
    // What an honest peer may relay around a rekey: within the budget, no blame.
    let count = usize::try_from(porchlight_node::node::IGNORE_BUDGET).unwrap() / 2;
    let f = flood(Invalid::Ignored, count).await;
    print("c', ignored, within the budget", &f);
    assert_eq!(f.sent.messages, count);
    assert!(!f.scores.is_empty());
    assert!(
        f.scores.iter().all(|s| *s >= 0.0),
        "the relay was not penalized: {:?}",
        f.scores
    );
}
