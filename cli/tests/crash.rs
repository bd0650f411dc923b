//! Crash: a real `porchlight run` process acknowledges posts through its API and is
//! killed with SIGKILL at random moments, 200 times, reopening the same data dir each
//! time. Every acknowledged report must still be there, reopening must work, and the
//! store's indexes must agree with its items (`Store::verify`).
//!
//! `PORCHLIGHT_CRASH_CYCLES` changes the count; the seed is printed so that a failing
//! schedule can be replayed with `PORCHLIGHT_CRASH_SEED`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use porchlight_node::engine::Engine;
use porchlight_node::store::Store;
use porchlight_proto::{ItemId, Policy};

/// The whole test must end within this, whatever the machine.
const DEADLINE: Duration = Duration::from_secs(900);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn start(dir: &Path) -> Child {
    common::bin()
        .arg("--data-dir")
        .arg(dir)
        .args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The API's base URL and token once the node answers, or `None` if it died.
fn wait_for_api(dir: &Path, child: &mut Child) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let agent = agent();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the node exited on its own after a crash: {status}");
        }
        let addr = std::fs::read_to_string(dir.join("api.addr"));
        let token = std::fs::read_to_string(dir.join("api.token"));
        if let (Ok(addr), Ok(token)) = (addr, token) {
            let base = format!("http://{}", addr.trim());
            let auth = format!("Bearer {}", token.trim());
            if let Ok(r) = agent
                .get(&format!("{base}/v1/status"))
                .header("Authorization", &auth)
                .call()
                && r.status() == 200
            {
                return (base, auth);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the node never answered after a restart"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Opens the store as the node would after the crash and checks it.
fn check_store(dir: &Path, acked: &[String]) -> usize {
    let store = Store::open(&dir.join("db")).expect("the store reopens after SIGKILL");
    let problems = store.verify().expect("the store reads back");
    assert!(
        problems.is_empty(),
        "inconsistent store after a crash: {problems:?}"
    );
    for id in acked {
        let id = ItemId::from_hex(id).unwrap();
        assert!(
            store.item(&id).unwrap().is_some(),
            "acknowledged report {id} lost"
        );
    }
    let (keys, _) = porchlight_node::identity::load_or_create(dir).unwrap();
    let engine = Engine::load(store.clone(), keys).expect("the engine loads after a crash");
    assert!(engine.is_some(), "the hood survives");
    store.item_count()
}

#[test]
fn acknowledged_reports_survive_200_sigkills() {
    let cycles: usize = std::env::var("PORCHLIGHT_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("PORCHLIGHT_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash schedule seed: {seed} (PORCHLIGHT_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    porchlight_node::local::init(dir, "Crash").unwrap();
    let mut policy = Policy::default();
    // Enough for every post of the run: the rate limit is not under test here.
    policy.rate_limit.max_items = u16::MAX;
    policy.rate_limit.window_secs = 1;
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(porchlight_node::local::create_hood(
            dir,
            "Crash Street",
            policy,
        ))
        .unwrap();

    let started = Instant::now();
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut killed_while_posting = 0;
    let mut unacknowledged = 0;
    for cycle in 0..cycles {
        assert!(
            started.elapsed() < DEADLINE,
            "only {cycle} of {cycles} cycles within {DEADLINE:?}"
        );
        let mut child = start(dir);
        let (base, auth) = wait_for_api(dir, &mut child);
        // Post as fast as the node acknowledges, until the kill.
        let stop = Arc::new(AtomicBool::new(false));
        let poster = {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 10_000 {
                    n += 1;
                    let body = serde_json::json!({
                        "category": "other",
                        "text": format!("crash cycle {cycle} post {n}"),
                    });
                    let Ok(mut r) = agent
                        .post(&format!("{base}/v1/reports"))
                        .header("Authorization", &auth)
                        .send_json(&body)
                    else {
                        return; // the process is gone
                    };
                    if r.status() == 201 {
                        let v: serde_json::Value = r.body_mut().read_json().unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .push(v["id"].as_str().unwrap().to_owned());
                    } else {
                        let text = r.body_mut().read_to_string().unwrap_or_default();
                        panic!("a post was refused: {} {text}", r.status());
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(rng.next() % 200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        poster.join().expect("the poster thread");
        let acked_now = acked.lock().unwrap().clone();
        let held = check_store(dir, &acked_now);
        // Stored but never acknowledged: the kill fell between the write and the answer.
        let extra = held - acked_now.len();
        if extra > unacknowledged {
            killed_while_posting += 1;
        }
        unacknowledged = extra;
    }
    let acked = acked.lock().unwrap().clone();
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len());
    assert!(
        acked.len() >= cycles,
        "posts were acknowledged: {}",
        acked.len()
    );
    eprintln!(
        "{cycles} SIGKILLs in {:?}: {} reports acknowledged, 0 lost; {killed_while_posting} kills \
         landed between a post's write and its acknowledgement",
        started.elapsed(),
        acked.len()
    );

    // And the node itself serves every one of them after the last crash.
    let mut child = start(dir);
    let (base, auth) = wait_for_api(dir, &mut child);
    // The feed a page at a time (1,000 items), from the newest back.
    let mut served: HashSet<String> = HashSet::new();
    let mut before = String::new();
    for _ in 0..10_000 {
        let page: Vec<serde_json::Value> = agent()
            .get(&format!("{base}/v1/feed?limit=1000{before}"))
            .header("Authorization", &auth)
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        served.extend(
            page.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned)),
        );
        match page.first().and_then(|i| i["id"].as_str()) {
            Some(first) if page.len() == 1000 => before = format!("&before={first}"),
            _ => break,
        }
    }
    for id in &acked {
        assert!(served.contains(id), "{id} not in the feed");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
