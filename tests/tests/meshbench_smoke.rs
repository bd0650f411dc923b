//! meshbench itself runs: a small mesh with churn, every side delivering everything.
//! (Its numbers are benchmarks, read in docs/performance.md; this only checks that the
//! tool works, since a broken benchmark went unnoticed once: its hood's keys had expired
//! and no node started.)

use std::process::Command;
use std::time::Duration;

#[test]
fn a_small_meshbench_with_churn_delivers_everything_on_every_side() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args([
            "--nodes",
            "4",
            "--reports",
            "6",
            "--interval-ms",
            "50",
            "--churn",
            "25",
            "--link-delay-ms",
            "5",
            "--link-jitter-ms",
            "2",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("meshbench starts");
    // Bounded: a run this size takes seconds; a hung one is killed.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("meshbench did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "meshbench failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line at the end");
    let v: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
    for side in ["porchlight", "engine_floor", "signature_floor", "baseline"] {
        assert_eq!(v[side]["delivery"].as_f64(), Some(1.0), "{side}: {json}");
    }
    assert_eq!(v["churn"]["restarted"].as_u64(), Some(1), "{json}");
    assert_eq!(
        v["churn"]["every_acknowledged_report_everywhere"].as_bool(),
        Some(true),
        "{json}"
    );
    assert!(v["churn"]["acknowledged"].as_u64() >= Some(1), "{json}");
}
