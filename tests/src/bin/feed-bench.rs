//! The feed and `status` of the real `porchlight` binary on a large store (issue #15's
//! targets): the first feed page's latency, `status`'s latency while four clients page
//! through the whole feed without pause and one event stream is open, and the node's
//! peak resident size (VmHWM) throughout.
//!
//! ```sh
//! cargo build --release -p porchlight -p porchlight-tests
//! target/release/fill-store --items 100000 --data-dir /tmp/big
//! target/release/feed-bench --data-dir /tmp/big [--secs 30]
//! ```
//!
//! The binary is `porchlight` beside this one (or `$PORCHLIGHT_BIN`); it runs on a copy
//! of nothing: DIR itself (it listens on 127.0.0.1 only).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use porchlight_tests::bench;

fn usage() -> ! {
    eprintln!("usage: feed-bench --data-dir DIR [--secs S] [--readers first|all]");
    std::process::exit(2)
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORCHLIGHT_BIN") {
        return PathBuf::from(bin);
    }
    let bin = std::env::current_exe()
        .expect("own path")
        .with_file_name("porchlight");
    if !bin.exists() {
        eprintln!("{} not found: build it first", bin.display());
        std::process::exit(1);
    }
    bin
}

fn new_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

struct Api {
    base: String,
    auth: String,
}

impl Api {
    fn get(&self, agent: &ureq::Agent, path: &str) -> (u16, Vec<u8>) {
        let mut r = agent
            .get(&format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .call()
            .expect("the API answers");
        let status = r.status().as_u16();
        let mut body = Vec::new();
        let _ = r.body_mut().as_reader().read_to_end(&mut body);
        (status, body)
    }
}

fn wait_for_api(dir: &Path) -> Api {
    let deadline = Instant::now() + Duration::from_secs(120);
    let agent = new_agent();
    loop {
        assert!(Instant::now() < deadline, "the node never answered");
        std::thread::sleep(Duration::from_millis(100));
        let (Ok(addr), Ok(token)) = (
            std::fs::read_to_string(dir.join("api.addr")),
            std::fs::read_to_string(dir.join("api.token")),
        ) else {
            continue;
        };
        let api = Api {
            base: format!("http://{}", addr.trim()),
            auth: format!("Bearer {}", token.trim()),
        };
        if let Ok(r) = agent
            .get(&format!("{}/v1/status", api.base))
            .header("Authorization", &api.auth)
            .call()
            && r.status() == 200
        {
            return api;
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        bench::quantile(&samples, 0.5),
        bench::quantile(&samples, 0.99),
        samples.last().copied().unwrap_or(0.0)
    );
}

fn main() {
    let mut dir: Option<PathBuf> = None;
    let mut secs = 30u64;
    // `first`: each reader asks for the newest page again and again (a dashboard, a
    // `feed` after a post); `all`: each pages back through the whole store, 1000 a page.
    let mut whole = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--data-dir" => dir = Some(PathBuf::from(value)),
            "--secs" => secs = value.parse().unwrap_or_else(|_| usage()),
            "--readers" => {
                whole = match value.as_str() {
                    "first" => false,
                    "all" => true,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    let Some(dir) = dir else { usage() };
    println!("machine: {}", bench::machine());
    let mut child = Command::new(binary())
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start porchlight");
    let pid = child.id();
    let api = Arc::new(wait_for_api(&dir));
    let agent = new_agent();
    let (_, status) = api.get(&agent, "/v1/status");
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap_or_default();
    println!("items held: {}", status["items"]);

    // The first page, alone.
    let mut first = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let (code, body) = api.get(&agent, "/v1/feed");
        first.push(ms(t.elapsed()));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    }
    report("first feed page (100 items), alone", first);

    // Four readers paging through the whole feed, one event stream, and status.
    let stop = Arc::new(AtomicBool::new(false));
    let pages = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (api, stop, pages, busy) = (api.clone(), stop.clone(), pages.clone(), busy.clone());
        readers.push(std::thread::spawn(move || {
            let agent = new_agent();
            let mut before: Option<String> = None;
            while !stop.load(Ordering::Relaxed) {
                let cursor = before
                    .as_ref()
                    .map(|b| format!("&before={b}"))
                    .unwrap_or_default();
                let path = if whole {
                    format!("/v1/feed?limit=1000{cursor}")
                } else {
                    "/v1/feed".to_owned()
                };
                let (code, body) = api.get(&agent, &path);
                if code == 503 {
                    // Busy: every feed reader's slot was taken. Wait as told, then ask
                    // for the same page again (what `porchlight feed` does).
                    busy.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                pages.fetch_add(1, Ordering::Relaxed);
                let page: Vec<serde_json::Value> = if code == 200 {
                    serde_json::from_slice(&body).unwrap_or_default()
                } else {
                    Vec::new()
                };
                before = if whole && page.len() == 1000 {
                    page.first()
                        .and_then(|i| i["id"].as_str())
                        .map(str::to_owned)
                } else {
                    None // the end (or an expired cursor): from the newest again
                };
            }
        }));
    }
    let sse = {
        let api = api.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let agent = new_agent();
            let mut r = agent
                .get(&format!("{}/v1/events", api.base))
                .header("Authorization", &api.auth)
                .call()
                .expect("event stream");
            let mut reader = r.body_mut().as_reader();
            let mut buf = [0u8; 1024];
            while !stop.load(Ordering::Relaxed) {
                if reader.read(&mut buf).unwrap_or(0) == 0 {
                    break;
                }
            }
        })
    };
    let mut under_load = Vec::new();
    let started = Instant::now();
    let mut hwm = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let (code, _) = api.get(&agent, "/v1/status");
        under_load.push(ms(t.elapsed()));
        assert_eq!(code, 200);
        if let Some((_, peak)) = bench::memory_kib(pid) {
            hwm = peak;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let mut first_loaded = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        api.get(&agent, "/v1/feed");
        first_loaded.push(ms(t.elapsed()));
    }
    for r in readers {
        let _ = r.join();
    }
    report(
        &format!(
            "status, while 4 clients read the feed ({} pages of {} in {secs} s, {} refused \
             as busy, {}) and an event stream is open",
            pages.load(Ordering::Relaxed),
            if whole { 1000 } else { 100 },
            busy.load(Ordering::Relaxed),
            if whole {
                "each paging through all"
            } else {
                "the newest page, again and again"
            }
        ),
        under_load,
    );
    report("first feed page after the load", first_loaded);
    if let Some((rss, peak)) = bench::memory_kib(pid) {
        hwm = hwm.max(peak);
        println!(
            "node memory: VmRSS {:.1} MiB, VmHWM (peak, whole run) {:.1} MiB",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    // The stream ends with the node.
    let _ = sse.join();
}
