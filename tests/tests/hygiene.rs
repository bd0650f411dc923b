//! Disk hygiene: an expired camera draft takes its clip with it, and the clips nobody
//! posted are held to a byte quota, oldest first. A real node and a real clip library.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use porchlight_node::clips::{self, Clip};
use porchlight_node::hub::drafts::DRAFT_TTL_SECS;
use porchlight_node::hub::{Candidate, Draft, DraftId, Drafts, Hub, Source};
use porchlight_proto::item::Body;
use porchlight_proto::report::ClipRef;
use porchlight_tests::{TestNode, report};

/// A clip of `size` bytes whose content is `seed`, in the library of `dir`.
fn clip(dir: &Path, seed: u8, size: usize) -> Clip {
    let bytes = vec![seed; size];
    clips::import_reader(dir, "test", &bytes[..], |_, _| {})
        .unwrap()
        .clip
}

/// Sets a library clip's modification time to `secs_ago` seconds ago.
fn age(dir: &Path, clip: &Clip, secs_ago: u64) {
    let file = std::fs::File::options()
        .write(true)
        .open(clips::path(dir, &clip.sha256))
        .unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .unwrap();
}

/// A draft with `clip`, made at `made_at`.
fn draft(dir: &Path, source_id: &str, clip: Clip, made_at: u64) -> Draft {
    let candidate = Candidate {
        source: Source::Webhook,
        source_id: Some(source_id.into()),
        camera: "front_door".into(),
        labels: vec!["person".into()],
        zones: vec![],
        captured_at: made_at,
        clip: None,
        text: None,
        category: None,
    };
    let draft = Draft::new(DraftId::random(), candidate, Ok(clip), made_at);
    Drafts::open(dir).put(&draft, made_at).unwrap();
    draft
}

fn in_library(dir: &Path, clip: &Clip) -> bool {
    clips::path(dir, &clip.sha256).is_file()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_draft_leaves_no_clip_behind_unless_a_report_uses_it() {
    let alice = TestNode::found("Alice").await;
    let dir = alice.dir.path();
    let now = porchlight_node::now();
    let long_ago = now - DRAFT_TTL_SECS - 60;
    let expired = clip(dir, 1, 4096);
    let shared = clip(dir, 2, 4096);
    let live = clip(dir, 3, 4096);
    let expired_draft = draft(dir, "expired", expired, long_ago);
    draft(dir, "expired but posted", shared, long_ago);
    let live_draft = draft(dir, "live", live, now);
    // A report of ours uses `shared`: it stays for neighbors who fetch it.
    let Body::Report(mut posted) = report("package taken") else {
        unreachable!()
    };
    posted.clips.push(ClipRef {
        sha256: shared.sha256,
        size: shared.size,
        camera: "front_door".into(),
        captured_at: now,
    });
    alice.node.post(Body::Report(posted)).await.unwrap();

    let hub = Hub::new(alice.node.clone(), dir, Vec::new());
    let swept = hub.sweep().await.unwrap();
    assert_eq!(swept.expired_drafts, 2, "{swept:?}");
    assert!(
        !in_library(dir, &expired),
        "the expired draft's clip is gone"
    );
    assert!(in_library(dir, &shared), "a clip a live report uses stays");
    assert!(in_library(dir, &live), "a live draft's clip stays");
    let left = hub.drafts().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, live_draft.id);
    assert!(
        !dir.join("drafts")
            .join(format!("{}.json", expired_draft.id))
            .exists(),
        "the expired draft's file is gone"
    );
    // A second sweep finds nothing more to do.
    let again = hub.sweep().await.unwrap();
    assert_eq!(again.expired_drafts, 0);
    assert_eq!(again.clips, 0);
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_nobody_posted_are_held_to_the_quota_oldest_first() {
    let alice = TestNode::found("Alice").await;
    let dir = alice.dir.path();
    let now = porchlight_node::now();
    let oldest = clip(dir, 1, 1500);
    let older = clip(dir, 2, 1500);
    let newest = clip(dir, 3, 1500);
    let posted_clip = clip(dir, 4, 5000);
    age(dir, &oldest, 300);
    age(dir, &older, 200);
    age(dir, &newest, 100);
    // The oldest file of all, but a live report uses it: never counted, never deleted.
    age(dir, &posted_clip, 1000);
    let Body::Report(mut posted) = report("package taken") else {
        unreachable!()
    };
    posted.clips.push(ClipRef {
        sha256: posted_clip.sha256,
        size: posted_clip.size,
        camera: "front_door".into(),
        captured_at: now,
    });
    alice.node.post(Body::Report(posted)).await.unwrap();

    let hub = Hub::with_clip_quota(alice.node.clone(), dir, Vec::new(), 3000);
    let swept = hub.sweep().await.unwrap();
    assert_eq!(swept.clips, 1, "{swept:?}");
    assert_eq!(swept.bytes, 1500);
    assert!(
        !in_library(dir, &oldest),
        "the oldest unposted clip went first"
    );
    assert!(in_library(dir, &older));
    assert!(in_library(dir, &newest));
    assert!(
        in_library(dir, &posted_clip),
        "a posted clip is not counted"
    );
    // Within the quota now: nothing more goes.
    assert_eq!(hub.sweep().await.unwrap().clips, 0);
    alice.stop().await;
}
