//! A newcomer joins a hood whose membership log is larger than a `Welcome` holds: real
//! nodes on loopback. The admitter sends its signed checkpoint and what of the log fits;
//! the joiner fetches the rest by catch-up sync, checks it, and then posts like anyone.

use std::time::Duration;

use porchlight_node::node::{Config, Setup};
use porchlight_proto::limits::WELCOME_TARGET_BYTES;
use porchlight_tests::{TestNode, WAIT, bench, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_to_a_hood_with_a_large_log_fetches_it_checks_it_and_posts() {
    // 40 members and enough rekeys (each wrapped to all 40) for 1.5 MiB of log.
    let mut h = bench::hood(40, 77);
    let mut log = 0;
    for _ in 0..400 {
        if log > WELCOME_TARGET_BYTES * 3 / 2 {
            break;
        }
        h.rekey(0);
        log = h.roster.items().map(|i| i.encode().len()).sum::<usize>();
    }
    assert!(log > WELCOME_TARGET_BYTES, "the log is {log} bytes");
    let ops = h.roster.len() as u64;

    let dir = tempfile::tempdir().expect("temp dir");
    drop(bench::member_dir(dir.path(), &h, 0));
    let (node, task) =
        bench::start_node(Config::loopback(dir.path(), "alice"), Setup::Existing).await;
    let alice = TestNode {
        node,
        task,
        dir,
        name: "alice".into(),
    };

    let dave = alice.invite("dave").await;
    // Dave's welcome held at most 1 MiB of it: the rest came by sync.
    assert!(
        eventually(|| async {
            dave.node
                .status()
                .await
                .is_ok_and(|s| s.history_missing == 0)
        })
        .await,
        "dave never got the whole history"
    );
    let status = dave.node.status().await.expect("status");
    assert_eq!(status.members, 41);
    assert!(
        status.sync.fetched > 0 && status.sync.fetched < ops,
        "dave fetched {} of {ops} operations by sync",
        status.sync.fetched
    );
    // Checked and settled: the same digest as Alice, and Dave posts.
    assert!(
        eventually(|| async {
            let (a, d) = (alice.node.status().await, dave.node.status().await);
            matches!((a, d), (Ok(a), Ok(d)) if a.digest == d.digest)
        })
        .await,
        "alice and dave never agreed"
    );
    let id = dave.post("a ladder left by the fence").await;
    assert!(
        eventually(|| alice.has(&id)).await,
        "alice never got dave's post"
    );
    let id = alice.post("thanks, it's ours").await;
    assert!(
        eventually(|| dave.has(&id)).await,
        "dave never got alice's post"
    );
    tokio::time::timeout(WAIT + Duration::from_secs(5), async {
        dave.stop().await;
        alice.stop().await;
    })
    .await
    .expect("nodes stop");
}
