//! Issue #8, "Reliability and security battery": churn. Twenty real nodes on 127.0.0.1;
//! six of them are stopped and started again at random (on the same data dir, on a new
//! port) while reports flow from random live members. In the end every node holds every
//! acknowledged report and has alerted for each exactly once. docs/reliability.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use porchlight_node::node::Event;
use porchlight_proto::ItemId;
use porchlight_proto::testkit::SeededRng;
use porchlight_tests::{TestNode, eventually};
use tempfile::TempDir;
use tokio::sync::broadcast::error::RecvError;

const NODES: usize = 20;
/// 30 % of the nodes.
const CHURNERS: usize = 6;
/// Each churner is stopped and started again this many times.
const CYCLES: usize = 3;
/// At most this many nodes are down at once.
const MAX_DOWN: usize = 3;
/// Links each node dials besides its inviter, so the mesh is not a tree.
const EXTRA_LINKS: usize = 3;
/// Bounds on the churn phase.
const MAX_STEPS: usize = 600;
const CHURN_DEADLINE: Duration = Duration::from_secs(60);

/// Per node name: how many `Event::Item` alerts each item id raised, over all the node's
/// runs, and how many events a slow subscriber missed.
#[derive(Default)]
struct Alerts {
    counts: HashMap<String, HashMap<ItemId, u32>>,
    lagged: u64,
}

type Shared = Arc<Mutex<Alerts>>;

/// Counts the alerts of this run of the node until it stops.
fn watch(alerts: &Shared, node: &TestNode) {
    let mut events = node.node.events();
    let alerts = alerts.clone();
    let name = node.name.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Item(item)) => {
                    let mut a = alerts.lock().unwrap();
                    *a.counts
                        .entry(name.clone())
                        .or_default()
                        .entry(item.id)
                        .or_default() += 1;
                }
                Ok(Event::Membership) => {}
                Err(RecvError::Lagged(n)) => alerts.lock().unwrap().lagged += n,
                Err(RecvError::Closed) => break,
            }
        }
    });
}

fn below(rng: &mut SeededRng, n: usize) -> usize {
    (u64::from_le_bytes(rng.bytes()) % n as u64) as usize
}

fn seed() -> u64 {
    std::env::var("PORCHLIGHT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(8, |d| d.as_nanos() as u64)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_of_twenty_nodes_restarting_at_random_lose_no_report_and_alert_once() {
    let started = Instant::now();
    let seed = seed();
    println!("churn: seed {seed} (rerun this schedule with PORCHLIGHT_SEED={seed})");
    let mut rng = SeededRng::new(seed);
    let alerts = Shared::default();

    // Twenty members, each invited by a random earlier one.
    let mut nodes: Vec<Option<TestNode>> = vec![Some(TestNode::found_with_rate("n0", 100).await)];
    watch(&alerts, nodes[0].as_ref().unwrap());
    for i in 1..NODES {
        let inviter = below(&mut rng, i);
        let next = nodes[inviter]
            .as_ref()
            .unwrap()
            .invite(&format!("n{i}"))
            .await;
        watch(&alerts, &next);
        nodes.push(Some(next));
    }
    for n in nodes.iter().flatten() {
        assert!(
            eventually(|| async { n.node.members().await.unwrap().len() == NODES }).await,
            "{} sees {NODES} members",
            n.name
        );
    }
    // More links than the invite tree, so a node's neighbors are not all one churner.
    let addrs: Vec<_> = {
        let mut a = Vec::new();
        for n in nodes.iter().flatten() {
            a.push(n.node.status().await.unwrap().listen[0].clone());
        }
        a
    };
    let mut peer_ids = Vec::new();
    for n in nodes.iter().flatten() {
        peer_ids.push(n.node.status().await.unwrap().peer_id);
    }
    let mut links: Vec<Vec<usize>> = vec![Vec::new(); NODES];
    for (i, n) in nodes.iter().flatten().enumerate() {
        for _ in 0..EXTRA_LINKS {
            let j = below(&mut rng, NODES);
            if j != i {
                n.node.dial(addrs[j].clone()).await.unwrap();
                links[i].push(j);
            }
        }
    }
    // The churn starts once the links exist: a node remembers the peers it has been
    // connected to, and one stopped before its links were up would know only its inviter.
    for (i, n) in nodes.iter().flatten().enumerate() {
        assert!(
            eventually(|| async {
                let connected = n.node.status().await.unwrap().connected;
                links[i].iter().all(|j| connected.contains(&peer_ids[*j]))
            })
            .await,
            "{} is connected to the nodes it dialed",
            n.name
        );
    }
    let built = started.elapsed();

    // Six churners, each stopped and started CYCLES times at random, never more than
    // MAX_DOWN down at once, while random live members post.
    let mut churners: Vec<usize> = (0..NODES).collect();
    for i in (1..churners.len()).rev() {
        let j = below(&mut rng, i + 1);
        churners.swap(i, j);
    }
    churners.truncate(CHURNERS);
    churners.sort_unstable();
    println!("churn: churners {churners:?}");
    let mut cycles_left: HashMap<usize, usize> = churners.iter().map(|c| (*c, CYCLES)).collect();
    let mut down: HashMap<usize, (TempDir, Instant)> = HashMap::new();
    let mut posted: Vec<(ItemId, usize)> = Vec::new();
    let mut restarts = 0usize;
    let mut max_down = 0usize;
    let mut posted_then_stopped = 0usize;
    let mut last_poster = None;
    let churn_started = Instant::now();
    for _step in 0..MAX_STEPS {
        let done = cycles_left.values().all(|c| *c == 0);
        if (done && down.is_empty()) || churn_started.elapsed() > CHURN_DEADLINE {
            break;
        }
        // Whoever's downtime is over comes back.
        let due: Vec<usize> = down
            .iter()
            .filter(|(_, (_, back))| *back <= Instant::now())
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            let (dir, _) = down.remove(&i).unwrap();
            let node = TestNode::restart(dir, &format!("n{i}")).await;
            watch(&alerts, &node);
            nodes[i] = Some(node);
            restarts += 1;
        }
        // Now and then a churner goes down for 0.3 to 3 s.
        let candidates: Vec<usize> = churners
            .iter()
            .copied()
            .filter(|c| cycles_left[c] > 0 && nodes[*c].is_some())
            .collect();
        if !candidates.is_empty() && down.len() < MAX_DOWN && below(&mut rng, 4) == 0 {
            // Half the time the member who just posted, before its report went far.
            let c = match last_poster {
                Some(p) if candidates.contains(&p) && below(&mut rng, 2) == 0 => p,
                _ => candidates[below(&mut rng, candidates.len())],
            };
            if last_poster == Some(c) {
                posted_then_stopped += 1;
            }
            let dir = nodes[c].take().unwrap().stop().await;
            let back = Instant::now() + Duration::from_millis(300 + below(&mut rng, 2700) as u64);
            down.insert(c, (dir, back));
            *cycles_left.get_mut(&c).unwrap() -= 1;
            max_down = max_down.max(down.len());
        }
        // A random live member posts (acknowledged = stored durably).
        let live: Vec<usize> = (0..NODES).filter(|i| nodes[*i].is_some()).collect();
        let author = live[below(&mut rng, live.len())];
        let n = nodes[author].as_ref().unwrap();
        let id = n
            .post(&format!("report {} from {}", posted.len(), n.name))
            .await;
        posted.push((id, author));
        last_poster = Some(author);
        tokio::time::sleep(Duration::from_millis(below(&mut rng, 150) as u64)).await;
    }
    // Bounded by time: whoever is still down comes back now.
    for (i, (dir, _)) in down.drain() {
        let node = TestNode::restart(dir, &format!("n{i}")).await;
        watch(&alerts, &node);
        nodes[i] = Some(node);
        restarts += 1;
    }
    let churn_time = churn_started.elapsed();
    assert!(
        cycles_left.values().all(|c| *c == 0),
        "every churner was stopped and started {CYCLES} times within {CHURN_DEADLINE:?}: {cycles_left:?}"
    );
    assert_eq!(restarts, CHURNERS * CYCLES);

    // Every node holds every acknowledged report, and nothing else.
    let nodes: Vec<TestNode> = nodes.into_iter().map(|n| n.unwrap()).collect();
    let ids: HashSet<ItemId> = posted.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), posted.len(), "every post got its own id");
    let converging = Instant::now();
    let all = eventually(|| async {
        for n in &nodes {
            let feed = n.feed().await;
            if feed.len() != ids.len() || !feed.iter().all(|f| ids.contains(&f.id)) {
                return false;
            }
        }
        true
    })
    .await;
    if !all {
        for n in &nodes {
            let held: HashSet<ItemId> = n.feed().await.iter().map(|f| f.id).collect();
            let missing: Vec<String> = posted
                .iter()
                .filter(|(id, _)| !held.contains(id))
                .map(|(_, by)| format!("n{by}"))
                .collect();
            let st = n.node.status().await.unwrap();
            eprintln!(
                "{}: holds {} of {}, connected {}, missing posts by {:?}",
                n.name,
                held.len(),
                ids.len(),
                st.connected.len(),
                missing
            );
        }
    }
    assert!(all, "every node holds every acknowledged report");
    let converged_in = converging.elapsed();

    // The same items, roster and epoch everywhere.
    let digests = eventually(|| async {
        let mut digests = HashSet::new();
        for n in &nodes {
            digests.insert(n.node.status().await.unwrap().digest);
        }
        digests.len() == 1
    })
    .await;
    assert!(digests, "every node has the same digest");

    // Each node alerted once for each report: its own at posting, the others by gossip
    // or, for what it missed while down, by catch-up sync; never again after a restart.
    let once = eventually(|| async {
        let a = alerts.lock().unwrap();
        nodes.iter().all(|n| {
            a.counts
                .get(&n.name)
                .is_some_and(|c| ids.iter().all(|id| c.contains_key(id)))
        })
    })
    .await;
    // Late copies (gossip repair, a sync round) must not alert again either.
    for n in &nodes {
        n.node.sync_now().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    {
        let a = alerts.lock().unwrap();
        assert_eq!(a.lagged, 0, "no subscriber missed events");
        for n in &nodes {
            let counts = a.counts.get(&n.name).cloned().unwrap_or_default();
            let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
            assert!(twice.is_empty(), "{} alerted twice: {twice:?}", n.name);
            let missed = ids.iter().filter(|id| !counts.contains_key(id)).count();
            assert_eq!(missed, 0, "{} never alerted for {missed} reports", n.name);
            assert!(
                counts.keys().all(|id| ids.contains(id)),
                "{} alerted for something nobody posted",
                n.name
            );
        }
    }
    assert!(once);

    let mut fetched = 0;
    for n in &nodes {
        fetched += n.node.status().await.unwrap().sync.fetched;
    }
    println!(
        "churn: {NODES} nodes, {CHURNERS} churners x {CYCLES} = {restarts} restarts (at most \
         {max_down} down at once), {} reports from random live members ({posted_then_stopped} \
         by a node stopped right after posting); mesh built in {:.1} s, churn {:.1} s, every \
         node held every report {:.1} s after the last restart; {fetched} items fetched by \
         sync since the last starts; alerts once per report per node; one digest; total {:.1} s",
        posted.len(),
        built.as_secs_f64(),
        churn_time.as_secs_f64(),
        converged_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
