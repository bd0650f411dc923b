//! Memory of the real `porchlight` binary: the resident set of a node idle in a new hood,
//! and of a node whose store holds N live items (default 100,000), read from
//! `/proc/<pid>/status` (VmRSS now, VmHWM the peak) after the node has settled.
//!
//! ```sh
//! cargo build --release -p porchlight
//! cargo run --release -p porchlight-tests --bin memory-bench [-- --items 100000 --settle-secs 20]
//! ```
//!
//! The binary is `porchlight` beside this one (or `$PORCHLIGHT_BIN`). The N items are
//! written through the node library's real validate-and-store path (`Engine::ingest`)
//! into a data dir the binary then runs (`porchlight run`); it listens on 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use porchlight_tests::bench;

fn usage() -> ! {
    eprintln!("usage: memory-bench [--items N] [--settle-secs S]");
    std::process::exit(2)
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORCHLIGHT_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("own path");
    let bin = exe.with_file_name("porchlight");
    if !bin.exists() {
        eprintln!(
            "{} not found: run `cargo build --release -p porchlight` first (or set PORCHLIGHT_BIN)",
            bin.display()
        );
        std::process::exit(1);
    }
    bin
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("warning: the node did not stop within 30 s; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts the binary with `args` on `data_dir`, waits `settle`, and returns
/// `(VmRSS, VmHWM)` in KiB.
fn measure(bin: &Path, data_dir: &Path, args: &[&str], settle: Duration) -> (u64, u64) {
    let log = std::fs::File::create(data_dir.with_extension("log")).expect("log file");
    let mut cmd = Command::new(bin);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    let mut child = cmd.spawn().expect("start porchlight");
    let pid = child.id();
    let start = Instant::now();
    let mut last = (0, 0);
    while start.elapsed() < settle {
        std::thread::sleep(Duration::from_millis(250));
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
            panic!("porchlight exited early ({status}):\n{log}");
        }
        if let Some(m) = bench::memory_kib(pid) {
            last = m;
        }
    }
    stop(child);
    last
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += dir_size(&entry.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `memory-bench --probe DIR`: opens the store in DIR as a node does, step by step, and
/// prints this process's resident size after each step (where a full store's memory goes).
fn probe(dir: &Path, cache_mib: u64) {
    let rss = |step: &str| {
        let (rss, hwm) = bench::memory_kib(std::process::id()).unwrap_or((0, 0));
        println!(
            "  {step:<28} VmRSS {:>6.1} MiB  VmHWM {:>6.1} MiB",
            mib(rss),
            mib(hwm)
        );
    };
    rss("start");
    let (keys, _) = porchlight_node::identity::load_or_create(dir).expect("keys");
    let store = porchlight_node::store::Store::open_with_cache(
        &dir.join(bench::DB_DIR),
        cache_mib * 1024 * 1024,
    )
    .expect("store");
    rss("store opened");
    let engine = porchlight_node::engine::Engine::load(store.clone(), keys)
        .expect("load")
        .expect("a hood");
    rss("engine loaded");
    let n = store.item_count();
    rss(&format!("item count ({n})"));
    drop(engine.sync_storage().expect("sync set"));
    rss("sync set built");
}

fn main() {
    if let [flag, dir, cache] = &std::env::args().skip(1).collect::<Vec<_>>()[..]
        && flag == "--probe"
    {
        probe(Path::new(dir), cache.parse().unwrap_or_else(|_| usage()));
        return;
    }
    let mut items = 100_000usize;
    let mut settle = Duration::from_secs(20);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| usage());
        match flag.as_str() {
            "--items" => items = value as usize,
            "--settle-secs" => settle = Duration::from_secs(value),
            _ => usage(),
        }
    }
    let bin = binary();
    let root = tempfile::tempdir().expect("temp dir");

    let idle_dir = root.path().join("idle");
    let idle = measure(
        &bin,
        &idle_dir,
        &["up", "--name", "Idle", "--hood", "Bench"],
        settle,
    );

    let full_dir = root.path().join("full");
    let t = Instant::now();
    let mut h = bench::hood(9, 3);
    let mut engine = bench::member_dir(&full_dir, &h, 0);
    let authors: Vec<usize> = (1..9).collect();
    let now = h.now;
    // In chunks, so that the benchmark's own memory stays small.
    for first in (0..items).step_by(10_000) {
        let numbers = first..(first + 10_000).min(items);
        let envelopes = bench::reports(&mut h, &authors, numbers, 2 * 24 * 3600);
        bench::fill(&mut engine, &envelopes, now);
    }
    let held = engine.store().item_count();
    drop(engine);
    eprintln!(
        "filled {held} items in {:.1} s; data dir {:.1} MiB",
        t.elapsed().as_secs_f64(),
        dir_size(&full_dir) as f64 / (1024.0 * 1024.0)
    );
    for cache_mib in [16, 8, 4] {
        println!("where the memory goes with a {cache_mib} MiB sled cache (`--probe`):");
        let status = Command::new(std::env::current_exe().expect("own path"))
            .arg("--probe")
            .arg(&full_dir)
            .arg(cache_mib.to_string())
            .status()
            .expect("probe runs");
        assert!(status.success(), "probe failed");
    }
    let full = measure(&bin, &full_dir, &["run"], settle);

    println!("memory-bench: {}", bin.display());
    println!("machine: {}", bench::machine());
    println!();
    println!(
        "| node | VmRSS after {} s | VmHWM (peak) | target |",
        settle.as_secs()
    );
    println!("|---|---|---|---|");
    println!(
        "| idle, new hood | {:.1} MiB | {:.1} MiB | ≤ 40 MiB |",
        mib(idle.0),
        mib(idle.1)
    );
    println!(
        "| {held} stored items | {:.1} MiB | {:.1} MiB | ≤ 80 MiB |",
        mib(full.0),
        mib(full.1)
    );
}
