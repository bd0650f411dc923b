//! Propagation benchmark: N Porchlight nodes in one process on loopback TCP publish M
//! reports from random members through the real node (seal, gossipsub, validate, store,
//! event); then, over the same topology, payload sizes, gossipsub settings
//! (`porchlight_node::mesh::gossipsub`) and counted TCP, Noise and yamux transport, three
//! comparison phases of bare gossipsub nodes:
//!
//! - the engine floor: each node runs Porchlight's `Engine` on every message (seals
//!   what it posts; verifies, opens, checks and stores what it receives) and nothing
//!   else of the node: what the design asks of every node, without the node around it;
//! - the signature floor: one strict ed25519 signature check a message, the physical
//!   bound the issue names;
//! - plain gossipsub (the baseline): every message accepted at once.
//!
//! Prints all four, and their ratios to plain gossipsub. Every phase brings its nodes
//! up one at a time, each joining once the ones it dialed are connected, so that
//! gossipsub's meshes come out alike (the table shows their sizes).
//!
//! ```sh
//! cargo run --release -p porchlight-tests --bin meshbench -- --nodes 20 --reports 200 [--json]
//! ```
//!
//! Other options: `--degree D` (each node dials D random earlier nodes; default 4),
//! `--interval-ms T` (one publish every T ms; default 50), `--seed S`, `--link-delay-ms L`
//! (every TCP connection of every phase hands on what it reads L ms late: an emulated
//! one-way latency between homes, `instrument::set_link_delay`; default 0, plain
//! loopback).
//!
//! - Latency: from the publish call (`Node::post` / the command to the swarm's task) to
//!   the receiving node's `Event::Item` / gossipsub message event, both read by a
//!   subscriber task, on this process's monotonic clock; one sample per report and
//!   receiving node (the author's own node excluded).
//! - Bytes: what every node's TCP sockets sent during the publish phase (Noise, yamux and
//!   everything else on the connection included), per report and node.
//! - Duplicates: gossipsub's own count of copies received minus first copies, per
//!   delivery.
//! - CPU: this process's user + system seconds during the publish phase.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};
use porchlight_node::engine::{Engine, Ingest};
use porchlight_node::mesh::instrument;
use porchlight_node::node::{Config, EVENT_QUEUE, Event, Node, NodeError, Setup};
use porchlight_proto::Body;
use porchlight_proto::MemberKeys;
use porchlight_proto::testkit::SeededRng;
use porchlight_tests::bench;
use rand_core::Rng;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Every wait is bounded by this.
const WAIT: Duration = Duration::from_secs(60);
/// Reports published and delivered before measuring (streams opened, caches warm).
const WARMUP: usize = 5;

struct Args {
    nodes: usize,
    reports: usize,
    degree: usize,
    interval: Duration,
    seed: u64,
    json: bool,
    link_delay: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: meshbench --nodes N --reports M [--degree D] [--interval-ms T] [--seed S] [--link-delay-ms L] [--json]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        nodes: 20,
        reports: 200,
        degree: 4,
        interval: Duration::from_millis(50),
        seed: 1,
        json: false,
        link_delay: Duration::ZERO,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match flag.as_str() {
            "--nodes" => args.nodes = value() as usize,
            "--reports" => args.reports = value() as usize,
            "--degree" => args.degree = value() as usize,
            "--interval-ms" => args.interval = Duration::from_millis(value()),
            "--seed" => args.seed = value(),
            "--json" => args.json = true,
            "--link-delay-ms" => args.link_delay = Duration::from_millis(value()),
            _ => usage(),
        }
    }
    if args.nodes < 2
        || args.nodes > 500
        || args.reports == 0
        || args.reports > 100_000
        || args.link_delay > Duration::from_secs(1)
    {
        usage();
    }
    args
}

/// Who dials whom: node `i` dials `degree` distinct earlier nodes (all of them if fewer).
fn topology(n: usize, degree: usize, rng: &mut SeededRng) -> Vec<Vec<usize>> {
    let mut dials = vec![Vec::new(); n];
    for (i, out) in dials.iter_mut().enumerate().skip(1) {
        let mut chosen: Vec<usize> = (0..i).collect();
        // Partial Fisher-Yates: the first `degree` are a uniform choice.
        for j in 0..degree.min(i) {
            let k = j + (rng.next_u64() as usize) % (i - j);
            chosen.swap(j, k);
        }
        chosen.truncate(degree.min(i));
        *out = chosen;
    }
    dials
}

/// Each node's number of connections in the topology.
fn degrees(dials: &[Vec<usize>]) -> Vec<usize> {
    let mut deg = vec![0; dials.len()];
    for (i, out) in dials.iter().enumerate() {
        deg[i] += out.len();
        for &j in out {
            deg[j] += 1;
        }
    }
    deg
}

/// `(report, receiving node, when)`.
type Deliveries = Arc<Mutex<Vec<(u32, u32, Instant)>>>;

fn count(deliveries: &Deliveries) -> usize {
    deliveries.lock().expect("deliveries lock").len()
}

/// What one phase measured.
#[derive(Debug, Default)]
struct Phase {
    delivered: usize,
    expected: usize,
    latencies_ms: Vec<f64>,
    bytes_sent: u64,
    duplicates: u64,
    cpu_s: f64,
    wall_s: f64,
    lagged: u64,
    /// Porchlight only: catch-up sync bytes (application level) within `bytes_sent`.
    sync_bytes: u64,
    /// Mean connected peers and mesh peers per node when publishing starts.
    peers: f64,
    mesh: f64,
}

struct Summary {
    delivery: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    bytes_per_report_node: f64,
    duplicates_per_delivery: f64,
    cpu_s: f64,
    peers: f64,
    mesh: f64,
}

impl Phase {
    fn summary(&mut self, nodes: usize, reports: usize) -> Summary {
        self.latencies_ms.sort_by(f64::total_cmp);
        let l = &self.latencies_ms;
        Summary {
            delivery: self.delivered as f64 / self.expected.max(1) as f64,
            p50: bench::quantile(l, 0.50),
            p95: bench::quantile(l, 0.95),
            p99: bench::quantile(l, 0.99),
            max: l.last().copied().unwrap_or(0.0),
            bytes_per_report_node: self.bytes_sent as f64 / (reports * nodes) as f64,
            duplicates_per_delivery: self.duplicates as f64 / self.delivered.max(1) as f64,
            cpu_s: self.cpu_s,
            peers: self.peers,
            mesh: self.mesh,
        }
    }
}

/// Counters read before and after the publish phase.
struct Snapshot {
    at: Instant,
    cpu: f64,
    sent: u64,
    duplicates: u64,
}

impl Snapshot {
    fn take() -> Snapshot {
        Snapshot {
            at: Instant::now(),
            cpu: bench::cpu_seconds(),
            sent: instrument::traffic().sent,
            duplicates: instrument::gossip_counters().map_or(0, |c| c.duplicates()),
        }
    }

    fn into_phase(self, end: Snapshot) -> Phase {
        Phase {
            cpu_s: end.cpu - self.cpu,
            bytes_sent: end.sent - self.sent,
            duplicates: end.duplicates - self.duplicates,
            wall_s: end.at.duration_since(self.at).as_secs_f64(),
            ..Phase::default()
        }
    }
}

/// Waits (at most `WAIT`) until a new node is connected to the `dialed` nodes it dialed,
/// then 100 ms more. Every phase brings its nodes up this way, one at a time, so that
/// gossipsub forms its meshes alike in all of them: started faster, nodes graft each
/// other differently, and the meshes come out smaller or larger (5.3 against 6.7 peers
/// a node at 20 nodes when one phase's nodes started 10 ms apart and the other's 1 ms),
/// which changes every message's copies and CPU more than any difference measured here.
async fn settle<F, Fut>(connected: F, dialed: usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let deadline = Instant::now() + WAIT;
    while connected().await < dialed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Waits until `deliveries` holds `target` entries or `WAIT` passes.
async fn wait_for(deliveries: &Deliveries, target: usize) {
    let deadline = Instant::now() + WAIT;
    while count(deliveries) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn latencies(deliveries: &Deliveries, sent: &[Option<Instant>]) -> (usize, Vec<f64>) {
    let deliveries = deliveries.lock().expect("deliveries lock");
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(deliveries.len());
    for &(k, node, at) in deliveries.iter() {
        if !seen.insert((k, node)) {
            continue;
        }
        if let Some(Some(t0)) = sent.get(k as usize) {
            out.push(at.saturating_duration_since(*t0).as_secs_f64() * 1000.0);
        }
    }
    (seen.len(), out)
}

// ---------------------------------------------------------------------------------------
// Porchlight

struct Running {
    node: Node,
    task: JoinHandle<Result<(), NodeError>>,
    _dir: tempfile::TempDir,
}

/// Reads a node's events; records measured reports that another node posted.
fn porchlight_collector(
    index: usize,
    mut events: broadcast::Receiver<Event>,
    authors: Arc<Vec<usize>>,
    sink: Deliveries,
    lagged: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Item(item)) => {
                    let at = Instant::now();
                    let Some(k) = report_number(&item.body) else {
                        continue;
                    };
                    if authors.get(k as usize) != Some(&index) {
                        sink.lock()
                            .expect("deliveries lock")
                            .push((k, index as u32, at));
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

async fn porchlight_ready(nodes: &[Running], deg: &[usize]) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let mut ready = true;
        for (i, n) in nodes.iter().enumerate() {
            let status = n.node.status().await.expect("status");
            if status.connected.len() < deg[i] || status.mesh_peers == 0 {
                ready = false;
                break;
            }
        }
        if ready {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, n) in nodes.iter().enumerate() {
        if let Ok(status) = n.node.status().await {
            eprintln!(
                "node {i}: {} of {} connected, {} in mesh",
                status.connected.len(),
                deg[i],
                status.mesh_peers
            );
        }
    }
    false
}

async fn sync_bytes(nodes: &[Running]) -> u64 {
    let mut total = 0;
    for n in nodes {
        total += n.node.status().await.map_or(0, |s| s.sync.bytes_sent);
    }
    total
}

/// Runs the Porchlight phase; returns it and each report's envelope size.
async fn porchlight(
    args: &Args,
    dials: &[Vec<usize>],
    authors: &Arc<Vec<usize>>,
) -> (Phase, Vec<usize>) {
    let n = args.nodes;
    let t = Instant::now();
    let h = bench::hood(n, args.seed);
    let mut nodes: Vec<Running> = Vec::with_capacity(n);
    let mut addrs: Vec<Multiaddr> = Vec::with_capacity(n);
    for (i, out) in dials.iter().enumerate() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(bench::member_dir(dir.path(), &h, i));
        let mut config = Config::loopback(dir.path(), &format!("node {i}"));
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
        config.bootstrap = out.iter().map(|&j| addrs[j].clone()).collect();
        let (node, task) = bench::start_node(config, Setup::Existing).await;
        let listen = node.status().await.expect("status").listen;
        let addr = listen
            .first()
            .expect("the node listens")
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(node.peer_id()));
        addrs.push(addr);
        // Each node joins a settled network, in every phase alike (see `settle`).
        settle(
            || async { node.status().await.map_or(0, |s| s.connected.len()) },
            out.len(),
        )
        .await;
        nodes.push(Running {
            node,
            task,
            _dir: dir,
        });
    }
    let deg = degrees(dials);
    if !porchlight_ready(&nodes, &deg).await {
        eprintln!("warning: porchlight meshes not complete after {WAIT:?}; measuring anyway");
    }
    eprintln!(
        "porchlight: {n} nodes up and meshed in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let sink: Deliveries = Arc::new(Mutex::new(Vec::new()));
    let lagged = Arc::new(AtomicU64::new(0));
    let collectors: Vec<JoinHandle<()>> = nodes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            porchlight_collector(
                i,
                r.node.events(),
                authors.clone(),
                sink.clone(),
                lagged.clone(),
            )
        })
        .collect();

    for w in 0..WARMUP {
        let node = &nodes[authors[w % authors.len()]].node;
        node.post(porchlight_tests::report(&format!("warmup {w}")))
            .await
            .expect("warm-up post");
    }
    // Three more heartbeats for the meshes to settle.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let sync_before = sync_bytes(&nodes).await;
    let (mut peers, mut mesh) = (0, 0);
    for r in &nodes {
        let status = r.node.status().await.expect("status");
        peers += status.connected.len();
        mesh += status.mesh_peers;
    }
    let start = Snapshot::take();
    let mut posts = Vec::with_capacity(args.reports);
    for (k, &a) in authors.iter().enumerate() {
        tokio::time::sleep_until((start.at + args.interval * k as u32).into()).await;
        let node = nodes[a].node.clone();
        posts.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let id = node
                .post(porchlight_tests::report(&format!("meshbench {k}")))
                .await
                .expect("post");
            let size = node
                .envelope(id)
                .await
                .expect("envelope")
                .map_or(0, |e| e.len());
            (t0, size)
        }));
    }
    let expected = args.reports * (n - 1);
    wait_for(&sink, expected).await;
    let end = Snapshot::take();
    let unfinished = posts.iter().filter(|p| !p.is_finished()).count();
    if unfinished > 0 || count(&sink) < expected {
        eprintln!(
            "warning: {unfinished} posts unfinished, {} of {expected} delivered",
            count(&sink)
        );
    }
    let mut sent = Vec::with_capacity(args.reports);
    let mut sizes = Vec::with_capacity(args.reports);
    for post in posts {
        let (t0, size) = post.await.expect("post task");
        sent.push(Some(t0));
        sizes.push(size);
    }
    let mut phase = start.into_phase(end);
    phase.sync_bytes = sync_bytes(&nodes).await - sync_before;
    phase.peers = peers as f64 / n as f64;
    phase.mesh = mesh as f64 / n as f64;
    let (delivered, latencies) = latencies(&sink, &sent);
    phase.delivered = delivered;
    phase.expected = expected;
    phase.latencies_ms = latencies;
    phase.lagged = lagged.load(Ordering::Relaxed);

    for r in &nodes {
        r.node.shutdown().await;
    }
    for r in nodes {
        match tokio::time::timeout(WAIT, r.task).await {
            Ok(Ok(Ok(()))) => {}
            other => eprintln!("warning: a node did not stop cleanly: {other:?}"),
        }
    }
    for c in collectors {
        c.abort();
    }
    (phase, sizes)
}

// ---------------------------------------------------------------------------------------
// Plain gossipsub

enum Command {
    Publish(Vec<u8>),
    /// Engine floor: sign, seal, store and publish a report through the node's `Engine`.
    Post(Box<Body>),
    Status(oneshot::Sender<(usize, usize)>),
    Stop,
}

struct Plain {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<u32>,
    task: JoinHandle<()>,
}

impl Plain {
    /// Connected peers and mesh peers; `None` once the node's task has stopped.
    async fn status(&self) -> Option<(usize, usize)> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Status(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// Payloads: `[1, k (u32 BE), run nonce, filler]` for measured reports, `[0, ...]` for
/// warm-up ones; ids are content hashes, so each is unique.
fn payload(k: u32, measured: bool, size: usize, rng: &mut SeededRng) -> Vec<u8> {
    let mut data = vec![0u8; size.max(16)];
    data[0] = u8::from(measured);
    data[1..5].copy_from_slice(&k.to_be_bytes());
    rng.fill_bytes(&mut data[5..]);
    data
}

/// The report number of a measured plain payload.
fn payload_number(data: &[u8]) -> Option<u32> {
    if data.first() == Some(&1) && data.len() >= 5 {
        let mut k = [0u8; 4];
        k.copy_from_slice(&data[1..5]);
        Some(u32::from_be_bytes(k))
    } else {
        None
    }
}

/// The report number of a measured report (`meshbench {k}`).
fn report_number(body: &Body) -> Option<u32> {
    let Body::Report(report) = body else {
        return None;
    };
    report.text.strip_prefix("meshbench ")?.parse().ok()
}

/// What a gossipsub node of a comparison phase does with a message besides gossipsub.
enum Work {
    /// Plain gossipsub: accepts every message at once.
    Nothing,
    /// The signature floor: signs what it publishes (`[payload, signer index u16 BE,
    /// ed25519 signature]`) and accepts a message only after one strict signature check
    /// against the signer's key, decompressed beforehand. The physical bound.
    Sign {
        keys: Box<MemberKeys>,
        index: u16,
        table: Arc<Vec<VerifyingKey>>,
    },
    /// The engine floor: seals what it posts and validates and stores what it receives
    /// through Porchlight's `Engine`, before it accepts a message: the work the design
    /// asks of every node for every message, and nothing else of the node.
    Engine(Box<Engine>),
}

impl Work {
    /// Judges a received message; the report number to record if it is a new measured one.
    fn receive(&mut self, data: &[u8]) -> (MessageAcceptance, Option<u32>) {
        match self {
            Work::Nothing => (MessageAcceptance::Accept, payload_number(data)),
            Work::Sign { table, .. } => {
                let Some(body_len) = data.len().checked_sub(SIGNED_TAIL) else {
                    return (MessageAcceptance::Reject, None);
                };
                let index = usize::from(u16::from_be_bytes([data[body_len], data[body_len + 1]]));
                let mut signature = [0u8; 64];
                signature.copy_from_slice(&data[body_len + 2..]);
                let valid = table.get(index).is_some_and(|key| {
                    key.verify_strict(
                        &data[..body_len + 2],
                        &ed25519_dalek::Signature::from_bytes(&signature),
                    )
                    .is_ok()
                });
                if valid {
                    (MessageAcceptance::Accept, payload_number(data))
                } else {
                    eprintln!("warning: signature floor node refused a message");
                    (MessageAcceptance::Reject, None)
                }
            }
            Work::Engine(engine) => match engine.ingest(data, porchlight_node::now()) {
                Ok(Ingest::New(accepted)) => {
                    (MessageAcceptance::Accept, report_number(&accepted.body))
                }
                Ok(Ingest::Duplicate) => (MessageAcceptance::Ignore, None),
                other => {
                    eprintln!("warning: engine floor node refused a message: {other:?}");
                    (MessageAcceptance::Reject, None)
                }
            },
        }
    }
}

/// Signer index and signature after a signature-floor payload.
const SIGNED_TAIL: usize = 2 + 64;

/// A gossipsub node of a comparison phase: plain, or doing `work` on every message.
async fn plain_node(topic: IdentTopic, dial: Vec<Multiaddr>, mut work: Work) -> (Plain, Multiaddr) {
    let mut swarm: Swarm<gossipsub::Behaviour> = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(porchlight_node::mesh::tcp_transport)
        .expect("transport")
        .with_behaviour(|key| {
            let behaviour = porchlight_node::mesh::gossipsub(&topic.hash())?;
            Ok(instrument::with_gossip_metrics(
                behaviour,
                key.public().to_peer_id().to_string(),
            ))
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(porchlight_node::mesh::IDLE_TIMEOUT))
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .expect("listen");
    let deadline = Instant::now() + WAIT;
    let listen = loop {
        let event = tokio::time::timeout_at(deadline.into(), swarm.select_next_some())
            .await
            .expect("listening in time");
        if let SwarmEvent::NewListenAddr { address, .. } = event {
            break address;
        }
    };
    let addr = listen.with(libp2p::multiaddr::Protocol::P2p(*swarm.local_peer_id()));
    swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
    for a in dial {
        swarm.dial(a).expect("dial");
    }
    let (commands, mut rx) = mpsc::channel(64);
    let (events, _) = broadcast::channel(EVENT_QUEUE);
    let tx = events.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Message {
                        propagation_source,
                        message_id,
                        message,
                    }) = event
                    {
                        let (acceptance, k) = work.receive(&message.data);
                        swarm.behaviour_mut().report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
                        if let Some(k) = k {
                            let _ = tx.send(k);
                        }
                    }
                }
                command = rx.recv() => match command {
                    Some(Command::Publish(mut data)) => {
                        if let Work::Sign { keys, index, .. } = &work {
                            data.extend_from_slice(&index.to_be_bytes());
                            let signature = keys.sign(&[&data]);
                            data.extend_from_slice(&signature.0);
                        }
                        if let Err(e) = swarm.behaviour_mut().publish(topic.clone(), data) {
                            eprintln!("warning: plain publish failed: {e}");
                        }
                    }
                    Some(Command::Post(body)) => {
                        let Work::Engine(engine) = &mut work else { continue };
                        let now = porchlight_node::now();
                        if let Err(e) = engine.post_staged(&body, now, &mut porchlight_node::rng()).await {
                            eprintln!("warning: engine floor post failed: {e}");
                            continue;
                        }
                        // As the node does: publish what the outbox holds, then make it
                        // durable off this loop.
                        let store = engine.store().clone();
                        for (seq, bytes) in store.outbox().unwrap_or_default() {
                            if let Err(e) = swarm.behaviour_mut().publish(topic.clone(), bytes) {
                                eprintln!("warning: engine floor publish failed: {e}");
                            }
                            let _ = store.pop_outbox(seq);
                        }
                        tokio::spawn(async move {
                            let _ = store.flush().await;
                        });
                    }
                    Some(Command::Status(reply)) => {
                        let connected = swarm.connected_peers().count();
                        let mesh = swarm.behaviour().mesh_peers(&topic.hash()).count();
                        let _ = reply.send((connected, mesh));
                    }
                    Some(Command::Stop) | None => break,
                },
            }
        }
    });
    (
        Plain {
            commands,
            events,
            task,
        },
        addr,
    )
}

fn plain_collector(
    index: usize,
    mut events: broadcast::Receiver<u32>,
    authors: Arc<Vec<usize>>,
    sink: Deliveries,
    lagged: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(k) => {
                    let at = Instant::now();
                    if authors.get(k as usize) != Some(&index) {
                        sink.lock()
                            .expect("deliveries lock")
                            .push((k, index as u32, at));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

async fn plain_ready(nodes: &[Plain], deg: &[usize]) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let mut ready = true;
        for (i, n) in nodes.iter().enumerate() {
            let (connected, mesh) = n.status().await.expect("node runs");
            if connected < deg[i] || mesh == 0 {
                ready = false;
                break;
            }
        }
        if ready {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The comparison phases: gossipsub nodes doing nothing else (the baseline), one
/// signature check a message (the signature floor), or Porchlight's engine (the engine
/// floor). See [`Work`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Signature,
    Engine,
}

async fn gossip_phase(
    args: &Args,
    dials: &[Vec<usize>],
    authors: &Arc<Vec<usize>>,
    sizes: &[usize],
    kind: Kind,
) -> Phase {
    let n = args.nodes;
    let floor = kind == Kind::Engine;
    let name = match kind {
        Kind::Plain => "baseline",
        Kind::Signature => "signature floor",
        Kind::Engine => "engine floor",
    };
    let t = Instant::now();
    let h = bench::hood(if kind == Kind::Plain { 1 } else { n }, args.seed);
    let table: Arc<Vec<VerifyingKey>> = Arc::new(
        h.members
            .iter()
            .filter_map(|m| m.keys.id().verifying_key())
            .collect(),
    );
    let topic = IdentTopic::new(h.hood().topic());
    let mut nodes: Vec<Plain> = Vec::with_capacity(n);
    let mut addrs: Vec<Multiaddr> = Vec::with_capacity(n);
    let mut dirs = Vec::new();
    for (i, out) in dials.iter().enumerate() {
        let dial = out.iter().map(|&j| addrs[j].clone()).collect();
        let work = match kind {
            Kind::Plain => Work::Nothing,
            Kind::Signature => Work::Sign {
                keys: Box::new(h.members[i].keys.clone()),
                index: u16::try_from(i).expect("at most 500 nodes"),
                table: table.clone(),
            },
            Kind::Engine => {
                let dir = tempfile::tempdir().expect("temp dir");
                let engine = bench::member_dir(dir.path(), &h, i);
                dirs.push(dir);
                Work::Engine(Box::new(engine))
            }
        };
        let (node, addr) = plain_node(topic.clone(), dial, work).await;
        settle(
            || async { node.status().await.map_or(0, |(connected, _)| connected) },
            out.len(),
        )
        .await;
        nodes.push(node);
        addrs.push(addr);
    }
    let deg = degrees(dials);
    if !plain_ready(&nodes, &deg).await {
        eprintln!("warning: {name} meshes not complete after {WAIT:?}; measuring anyway");
    }
    eprintln!(
        "{name}: {n} nodes up and meshed in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let sink: Deliveries = Arc::new(Mutex::new(Vec::new()));
    let lagged = Arc::new(AtomicU64::new(0));
    let collectors: Vec<JoinHandle<()>> = nodes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            plain_collector(
                i,
                p.events.subscribe(),
                authors.clone(),
                sink.clone(),
                lagged.clone(),
            )
        })
        .collect();
    let mut rng = SeededRng::new(args.seed ^ 0x5eed);
    let typical = sizes.first().copied().unwrap_or(1024);
    for w in 0..WARMUP {
        let command = if floor {
            Command::Post(Box::new(porchlight_tests::report(&format!("warmup {w}"))))
        } else {
            Command::Publish(payload(w as u32, false, typical, &mut rng))
        };
        let _ = nodes[authors[w % authors.len()]]
            .commands
            .send(command)
            .await;
    }
    // Three more heartbeats for the meshes to settle.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let commands: Vec<Command> = sizes
        .iter()
        .enumerate()
        .map(|(k, &size)| {
            if floor {
                Command::Post(Box::new(porchlight_tests::report(&format!(
                    "meshbench {k}"
                ))))
            } else {
                // The signature floor's signer index and signature make up the size.
                let size = match kind {
                    Kind::Signature => size.saturating_sub(SIGNED_TAIL),
                    _ => size,
                };
                Command::Publish(payload(k as u32, true, size, &mut rng))
            }
        })
        .collect();
    let (mut peers, mut mesh) = (0, 0);
    for node in &nodes {
        let (connected, in_mesh) = node.status().await.expect("node runs");
        peers += connected;
        mesh += in_mesh;
    }
    let start = Snapshot::take();
    let mut sent = Vec::with_capacity(args.reports);
    for (k, command) in commands.into_iter().enumerate() {
        tokio::time::sleep_until((start.at + args.interval * k as u32).into()).await;
        let t0 = Instant::now();
        nodes[authors[k]]
            .commands
            .send(command)
            .await
            .expect("node runs");
        sent.push(Some(t0));
    }
    let expected = args.reports * (n - 1);
    wait_for(&sink, expected).await;
    let end = Snapshot::take();
    let mut phase = start.into_phase(end);
    let (delivered, latencies) = latencies(&sink, &sent);
    phase.delivered = delivered;
    phase.expected = expected;
    phase.latencies_ms = latencies;
    phase.lagged = lagged.load(Ordering::Relaxed);
    phase.peers = peers as f64 / n as f64;
    phase.mesh = mesh as f64 / n as f64;
    for p in &nodes {
        let _ = p.commands.send(Command::Stop).await;
    }
    for p in nodes {
        let _ = tokio::time::timeout(WAIT, p.task).await;
    }
    for c in collectors {
        c.abort();
    }
    drop(dirs);
    phase
}

// ---------------------------------------------------------------------------------------

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

fn summary_json(s: &Summary) -> serde_json::Value {
    serde_json::json!({
        "delivery": s.delivery,
        "p50_ms": s.p50,
        "p95_ms": s.p95,
        "p99_ms": s.p99,
        "max_ms": s.max,
        "bytes_sent_per_report_per_node": s.bytes_per_report_node,
        "duplicates_per_delivery": s.duplicates_per_delivery,
        "cpu_s": s.cpu_s,
        "peers_per_node": s.peers,
        "mesh_peers_per_node": s.mesh,
    })
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    // `MESHBENCH_LOG=porchlight_node=debug` shows the nodes' logs.
    if let Ok(filter) = std::env::var("MESHBENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    instrument::enable_gossip_metrics();
    instrument::set_link_delay(args.link_delay);
    let mut rng = SeededRng::new(args.seed);
    let dials = topology(args.nodes, args.degree, &mut rng);
    let authors: Arc<Vec<usize>> = Arc::new(
        (0..args.reports)
            .map(|_| (rng.next_u64() as usize) % args.nodes)
            .collect(),
    );

    let (mut pl, sizes) = porchlight(&args, &dials, &authors).await;
    let mut el = gossip_phase(&args, &dials, &authors, &sizes, Kind::Engine).await;
    let mut sl = gossip_phase(&args, &dials, &authors, &sizes, Kind::Signature).await;
    let mut bl = gossip_phase(&args, &dials, &authors, &sizes, Kind::Plain).await;
    let (p, e, g, b) = (
        pl.summary(args.nodes, args.reports),
        el.summary(args.nodes, args.reports),
        sl.summary(args.nodes, args.reports),
        bl.summary(args.nodes, args.reports),
    );

    let mean_size = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
    println!(
        "meshbench: {} nodes (each dials {} earlier ones), {} reports, one every {} ms, envelopes {:.0} B on average",
        args.nodes,
        args.degree,
        args.reports,
        args.interval.as_millis(),
        mean_size
    );
    println!("machine: {}", bench::machine());
    println!(
        "engine floor: gossipsub + Porchlight's engine (seal; verify, open, check, store); signature floor: gossipsub + one ed25519 signature check a message"
    );
    println!();
    println!(
        "| | porchlight | engine floor | signature floor | plain gossipsub | porchlight / plain | engine floor / plain | signature floor / plain | porchlight / engine floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let row = |name: &str, v: [f64; 4], digits: usize| {
        let [p, e, g, b] = v;
        println!(
            "| {name} | {p:.digits$} | {e:.digits$} | {g:.digits$} | {b:.digits$} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ratio(p, b),
            ratio(e, b),
            ratio(g, b),
            ratio(p, e)
        );
    };
    let all = |f: fn(&Summary) -> f64| [f(&p), f(&e), f(&g), f(&b)];
    row("delivery (%)", all(|s| s.delivery * 100.0), 2);
    row("p50 latency (ms)", all(|s| s.p50), 2);
    row("p95 latency (ms)", all(|s| s.p95), 2);
    row("p99 latency (ms)", all(|s| s.p99), 2);
    row("max latency (ms)", all(|s| s.max), 2);
    row(
        "bytes sent per report per node",
        all(|s| s.bytes_per_report_node),
        0,
    );
    row(
        "duplicates per delivery",
        all(|s| s.duplicates_per_delivery),
        2,
    );
    row("CPU seconds", all(|s| s.cpu_s), 2);
    row("connected peers per node", all(|s| s.peers), 2);
    row("mesh peers per node", all(|s| s.mesh), 2);
    println!();
    println!(
        "deliveries: porchlight {}/{} in {:.1} s, engine floor {}/{} in {:.1} s, signature floor {}/{} in {:.1} s, baseline {}/{} in {:.1} s; missed events: {} / {} / {} / {}; porchlight catch-up sync sent {} B of its total",
        pl.delivered,
        pl.expected,
        pl.wall_s,
        el.delivered,
        el.expected,
        el.wall_s,
        sl.delivered,
        sl.expected,
        sl.wall_s,
        bl.delivered,
        bl.expected,
        bl.wall_s,
        pl.lagged,
        el.lagged,
        sl.lagged,
        bl.lagged,
        pl.sync_bytes,
    );
    if args.json {
        let json = serde_json::json!({
            "nodes": args.nodes,
            "reports": args.reports,
            "degree": args.degree,
            "interval_ms": args.interval.as_millis() as u64,
            "link_delay_ms": args.link_delay.as_millis() as u64,
            "envelope_bytes_mean": mean_size,
            "porchlight": summary_json(&p),
            "baseline": summary_json(&b),
            "engine_floor": summary_json(&e),
            "signature_floor": summary_json(&g),
            "ratio_p50": ratio(p.p50, b.p50),
            "ratio_p99": ratio(p.p99, b.p99),
            "ratio_bytes": ratio(p.bytes_per_report_node, b.bytes_per_report_node),
            "ratio_cpu": ratio(p.cpu_s, b.cpu_s),
            "engine_floor_ratio_p99": ratio(e.p99, b.p99),
            "engine_floor_ratio_cpu": ratio(e.cpu_s, b.cpu_s),
            "signature_floor_ratio_p99": ratio(g.p99, b.p99),
            "signature_floor_ratio_cpu": ratio(g.cpu_s, b.cpu_s),
            "ratio_p99_over_engine_floor": ratio(p.p99, e.p99),
            "ratio_cpu_over_engine_floor": ratio(p.cpu_s, e.cpu_s),
        });
        println!("{json}");
    }
}
