//! What the benchmark binaries share: a hood built in memory with real keys and real
//! operations, written into data dirs exactly as a node that joined would have stored it;
//! stores pre-filled through the real `Engine::ingest`; percentiles; the process's CPU
//! time and a process's memory from `/proc`.

use std::path::Path;

use porchlight_node::engine::Engine;
use porchlight_node::node::{Config, Node, NodeError, Setup};
use porchlight_node::store::Store;
use porchlight_proto::testkit::TestHood;
use porchlight_proto::{Body, Policy};

/// The store's folder in a data dir (as `Node::start` opens it).
pub const DB_DIR: &str = "db";

/// A hood of `members` members, its rate limit high enough for any benchmark, with
/// operations made now (so that a running node accepts the items made from it).
pub fn hood(members: usize, seed: u64) -> TestHood {
    let mut policy = Policy::default();
    policy.rate_limit.max_items = u16::MAX;
    let mut h = TestHood::founded_at(seed, policy, porchlight_node::now());
    for _ in 1..members {
        h.join(0, 0);
    }
    h
}

/// Writes member `m`'s key file and the hood's membership log into `dir`, as a node that
/// joined would have stored them, and returns that member's engine over the store (drop
/// it before a node opens the same dir). `Node::start(.., Setup::Existing)` runs the dir.
pub fn member_dir(dir: &Path, h: &TestHood, m: usize) -> Engine {
    std::fs::create_dir_all(dir).expect("create data dir");
    let (signing, exchange) = h.members[m].keys.to_secrets();
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(signing.as_ref());
    key.extend_from_slice(exchange.as_ref());
    let path = dir.join(porchlight_node::identity::FILE);
    std::fs::write(&path, &key).expect("write key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("key file mode");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .expect("data dir mode");
    }
    let store = Store::open(&dir.join(DB_DIR)).expect("open store");
    let log: Vec<_> = h.roster.items().cloned().collect();
    let engine = Engine::from_log(store, h.members[m].keys.clone(), &h.hood(), &log)
        .expect("the hood's log welcomes its own member");
    futures::executor::block_on(engine.store().flush()).expect("flush");
    engine
}

/// `Node::start`, retried for a few seconds while the store is still held: sled lets go
/// of a data dir's lock from a background thread a moment after its last handle drops.
pub async fn start_node(
    config: Config,
    setup: Setup,
) -> (Node, tokio::task::JoinHandle<Result<(), NodeError>>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Node::start(config.clone(), setup.clone()).await {
            Ok(started) => return started,
            Err(NodeError::Store(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node starts: {e}"),
        }
    }
}

/// Sealed reports numbered `numbers`, by `authors` in turn, created over the last
/// `spread` seconds (so that the store's time indexes look like a real one's).
pub fn reports(
    h: &mut TestHood,
    authors: &[usize],
    numbers: std::ops::Range<usize>,
    spread: u64,
) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(numbers.len());
    for i in numbers {
        let mut body = h.report(&format!(
            "report {i}: a parcel was taken from a porch on the 400 block"
        ));
        if let Body::Report(r) = &mut body {
            r.created_at = h.now - (i as u64 % spread.max(1));
            r.expires_at = r.created_at + 72 * 3600;
        }
        out.push(h.seal(authors[i % authors.len()], &body));
    }
    out
}

/// Ingests every envelope through the real validate-and-store path, then flushes.
/// Panics if one is refused: benchmark data must be valid.
pub fn fill(engine: &mut Engine, envelopes: &[Vec<u8>], now: u64) {
    for bytes in envelopes {
        match engine.ingest(bytes, now).expect("store works") {
            porchlight_node::engine::Ingest::New(_) => {}
            other => panic!("benchmark item refused: {other:?}"),
        }
    }
    futures::executor::block_on(engine.store().flush()).expect("flush");
}

/// The value at quantile `q` (0..=1) of `sorted`, by nearest rank; 0 if empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// User plus system CPU seconds this process has used (from `/proc/self/stat`).
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) close with ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // The kernel reports in USER_HZ, which is 100 on every Linux this runs on.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Resident memory of a process: `(VmRSS, VmHWM)` in KiB, from `/proc/<pid>/status`.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A machine description for the figures: CPU model, cores and memory.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / (1024 * 1024));
    format!("{cpu}, {cores} cores, {mem_gib} GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
