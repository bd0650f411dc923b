//! The store's tests, on real sled databases in temp dirs.

use super::*;

/// Opens a store again in the same process: sled's IO threads may still hold the
/// previous handle's lock for a moment after it is dropped.
fn put(store: &Store, id: &ItemId, r: &ItemRecord) {
    store.put_item(id, &OpId::of(&r.item), r).unwrap();
}

fn reopen(path: &Path) -> Store {
    reopening(path).unwrap()
}

fn reopening(path: &Path) -> Result<Store, StoreError> {
    for _ in 0..200 {
        match Store::open(path) {
            Err(StoreError::Locked) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
    panic!("the store stayed locked for 2 s after its handle was dropped");
}

fn record(expires_at: u64) -> ItemRecord {
    ItemRecord {
        kind: porchlight_proto::Kind::Report,
        envelope: vec![1, 2, 3],
        item: vec![4],
        author: MemberId([7; 32]),
        created_at: 10,
        expires_at,
        received_at: 11,
    }
}

/// A kept copy of the sync set is current exactly while the generation stays: every
/// change of the set (an item stored, removed or expired, an operation stored) moves
/// it, and reads and repeated writes of the same operation do not.
#[test]
fn the_sync_generation_moves_with_every_change_of_the_sync_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut last = store.sync_generation();
    let mut moved = |store: &Store, what: &str, expect: bool| {
        let now = store.sync_generation();
        assert_eq!(now != last, expect, "{what}");
        last = now;
    };
    let a = ItemId([1; 32]);
    put(&store, &a, &record(100));
    moved(&store, "an item stored", true);
    store.sync_elements().unwrap();
    store.item(&a).unwrap();
    moved(&store, "reads", false);
    store.put_op(&OpId([9; 32]), 5, b"op").unwrap();
    moved(&store, "an operation stored", true);
    store.put_op(&OpId([9; 32]), 5, b"op").unwrap();
    moved(&store, "the same operation again", false);
    assert!(store.remove_item(&a).unwrap());
    moved(&store, "an item removed", true);
    let b = ItemId([2; 32]);
    put(&store, &b, &record(100));
    moved(&store, "another stored", true);
    assert_eq!(store.expire(101).unwrap(), 1);
    moved(&store, "an item expired", true);
    store.mark_seen(&ItemId([3; 32]), 500).unwrap();
    moved(&store, "an id marked seen", false);
    // A stray operation deleted after a checkpoint's check, and a removed member's
    // items.
    store.remove_op(&OpId([9; 32]), 5).unwrap();
    moved(&store, "an operation deleted", true);
    assert!(
        !store
            .sync_elements()
            .unwrap()
            .iter()
            .any(|(_, id)| *id == [9; 32])
    );
    store.remove_op(&OpId([9; 32]), 5).unwrap();
    moved(&store, "a deleted operation deleted again", false);
    // `record` is by member 7.
    put(&store, &ItemId([4; 32]), &record(1000));
    moved(&store, "carol's item stored", true);
    assert_eq!(store.remove_items_by(&MemberId([7; 32])).unwrap(), 1);
    moved(&store, "a member's items removed", true);
    assert!(store.sync_elements().unwrap().is_empty());
}

/// Items are found by a prefix of their id's hex (any case, odd lengths, up to the
/// whole id past the 16 bytes the index keeps), only while live; anything but hex
/// finds nothing.
#[test]
fn items_are_found_by_id_prefix_only_while_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = |fill: u8, at10: u8| {
        let mut b = [fill; 32];
        b[10] = at10;
        ItemId(b)
    };
    // Two ids alike in their first 10 bytes, one that differs at once.
    let (a, b, c) = (id(0xab, 1), id(0xab, 2), id(0x12, 1));
    for (i, x) in [a, b, c].iter().enumerate() {
        let mut r = record(100);
        r.created_at = 10 + i as u64;
        r.item = vec![i as u8];
        put(&store, x, &r);
    }
    let found = |p: &str| -> Vec<ItemId> {
        let mut ids: Vec<ItemId> = store
            .items_with_prefix(p, 10)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort_by_key(|i| i.0);
        ids
    };
    assert_eq!(found("abab"), vec![a, b]);
    assert_eq!(found("ABa"), vec![a, b], "any case, odd length");
    assert_eq!(found(&a.to_hex()), vec![a], "the whole id");
    assert_eq!(found(&a.to_hex()[..21]), vec![a, b]);
    assert_eq!(found(&a.to_hex()[..22]), vec![a]);
    let mut other = a.to_hex();
    other.replace_range(63.., "0");
    assert!(
        found(&other).is_empty(),
        "past the 16 bytes the index keeps"
    );
    assert_eq!(found("1212"), vec![c]);
    assert!(found("zz12").is_empty());
    assert!(found("9999").is_empty());
    assert_eq!(
        store.items_with_prefix("ab", 1).unwrap().len(),
        1,
        "at most"
    );
    assert!(store.remove_item(&a).unwrap());
    assert_eq!(found("abab"), vec![b], "a removed item is not found");
}

/// A stored report with clips: its record, by member `author` of `hood`.
fn clip_report(
    hood: &porchlight_proto::testkit::TestHood,
    author: usize,
    clips: &[[u8; 32]],
    expires_at: u64,
) -> ItemRecord {
    let mut body = hood.report("a clip");
    if let porchlight_proto::Body::Report(r) = &mut body {
        r.clips = clips
            .iter()
            .map(|sha| porchlight_proto::ClipRef {
                sha256: *sha,
                size: u64::from(sha[0]) * 100,
                camera: "porch".into(),
                captured_at: 1,
            })
            .collect();
    }
    let keys = &hood.members[author].keys;
    let item = porchlight_proto::Item::sign(keys, &hood.hood(), &body);
    ItemRecord {
        kind: porchlight_proto::Kind::Report,
        envelope: vec![author as u8],
        item: item.encode(),
        author: keys.id(),
        created_at: 10,
        expires_at,
        received_at: 11,
    }
}

/// A clip's reports are found by its hash while they are live (stored, not yet
/// removed or expired), across a restart, and a store from before the clip index
/// gets it built at open.
#[test]
fn clips_are_found_by_hash_while_their_reports_are_live() {
    let mut hood = porchlight_proto::testkit::TestHood::new(3);
    hood.join(0, 0);
    let dir = tempfile::tempdir().unwrap();
    let (x, y, z) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let (a, b, c) = (ItemId([10; 32]), ItemId([11; 32]), ItemId([12; 32]));
    let owners = |store: &Store, sha: &[u8; 32]| -> Vec<(ItemId, MemberId, u64)> {
        let mut refs = store.clip_refs(sha).unwrap();
        refs.sort_by_key(|r| r.0.0);
        refs
    };
    let (m0, m1) = (hood.members[0].keys.id(), hood.members[1].keys.id());
    {
        let store = Store::open(dir.path()).unwrap();
        put(&store, &a, &clip_report(&hood, 0, &[x, y], 100));
        put(&store, &b, &clip_report(&hood, 1, &[y], 200));
        put(&store, &c, &clip_report(&hood, 1, &[z], 300));
        assert_eq!(owners(&store, &x), vec![(a, m0, 100)]);
        assert_eq!(owners(&store, &y), vec![(a, m0, 200), (b, m1, 200)]);
        assert!(owners(&store, &[9; 32]).is_empty());
        assert!(store.remove_item(&b).unwrap());
        assert_eq!(owners(&store, &y), vec![(a, m0, 200)], "removed");
        assert_eq!(store.expire(150).unwrap(), 1);
        assert!(owners(&store, &x).is_empty(), "expired");
        assert!(owners(&store, &y).is_empty(), "expired");
        assert_eq!(owners(&store, &z), vec![(c, m1, 300)]);
    }
    let store = reopen(dir.path());
    assert_eq!(owners(&store, &z), vec![(c, m1, 300)], "after a restart");
    // A store from before the index: its entries and marker gone, rebuilt at open.
    store.clips.clear().unwrap();
    store.meta.remove(CLIPS_INDEXED).unwrap();
    store.db.flush().unwrap();
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(owners(&store, &z), vec![(c, m1, 300)], "indexed at open");
}

/// A member's last-seen time survives a restart, and an earlier time never
/// replaces a later one.
#[test]
fn last_seen_times_are_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (MemberId([1; 32]), MemberId([2; 32]));
    {
        let store = Store::open(dir.path()).unwrap();
        store.remember_seen(&a, 100).unwrap();
        store.remember_seen(&a, 50).unwrap();
        store.remember_seen(&b, 70).unwrap();
        store.db.flush().unwrap();
    }
    let store = reopen(dir.path());
    let seen = store.seen_times().unwrap();
    assert_eq!(seen.get(&a), Some(&100));
    assert_eq!(seen.get(&b), Some(&70));
}

#[test]
fn expire_deletes_only_what_is_due_and_forgets_old_seen_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, b, c) = (ItemId([1; 32]), ItemId([2; 32]), ItemId([3; 32]));
    put(&store, &a, &record(100));
    put(&store, &b, &record(200));
    store.mark_seen(&c, 180).unwrap();
    assert_eq!(store.item_count(), 2);
    assert_eq!(store.expire(150).unwrap(), 1);
    assert!(!store.has_item(&a).unwrap());
    assert!(!store.seen(&a).unwrap(), "its time is past");
    assert!(store.has_item(&b).unwrap());
    assert!(store.seen(&c).unwrap());
    assert_eq!(store.item_count(), 1);
    assert!(store.verify().unwrap().is_empty());
    store.expire(201).unwrap();
    assert!(!store.seen(&c).unwrap());
    assert_eq!(store.item_count(), 0);
    assert!(store.verify().unwrap().is_empty());
}

#[test]
fn a_removed_item_stays_seen_until_it_would_have_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = ItemId([1; 32]);
    put(&store, &a, &record(100));
    assert!(store.remove_item(&a).unwrap());
    assert!(!store.remove_item(&a).unwrap());
    assert!(!store.has_item(&a).unwrap());
    assert_eq!(store.item(&a).unwrap(), None);
    assert!(store.seen(&a).unwrap());
    assert_eq!(store.item_count(), 0);
    assert!(store.verify().unwrap().is_empty());
    futures::executor::block_on(store.flush()).unwrap();
    drop(store);
    let store = reopen(dir.path());
    assert!(store.seen(&a).unwrap(), "the tombstone outlives a restart");
    assert!(store.seen_item(&OpId::of(&record(100).item)).unwrap());
    assert!(!store.has_item(&a).unwrap());
    store.expire(99).unwrap();
    assert!(store.seen(&a).unwrap());
    store.expire(101).unwrap();
    assert!(!store.seen(&a).unwrap());
    assert!(!store.seen_item(&OpId::of(&record(100).item)).unwrap());
    assert!(store.verify().unwrap().is_empty());
}

#[test]
fn a_format_1_store_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (ItemId([1; 32]), ItemId([2; 32]));
    let mut rb = record(300);
    rb.created_at = 20;
    {
        // Format 1, written the way the previous release wrote it.
        let db = sled::open(dir.path()).unwrap();
        let items = db.open_tree("items").unwrap();
        let expiry = db.open_tree("expiry").unwrap();
        let sync = db.open_tree("sync").unwrap();
        let seen = db.open_tree("seen").unwrap();
        for (id, r) in [(a, record(100)), (b, rb.clone())] {
            items
                .insert(id.0, porchlight_proto::codec::encode(&r))
                .unwrap();
            expiry.insert(expiry_key(r.expires_at, &id), &[]).unwrap();
            sync.insert(expiry_key(r.created_at, &id), &[SYNC_ITEM])
                .unwrap();
            seen.insert(id.0, &r.expires_at.to_be_bytes()).unwrap();
        }
        seen.insert([9; 32], &50u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    for _ in 0..2 {
        let store = reopen(dir.path());
        assert_eq!(store.item_count(), 2);
        assert_eq!(store.item(&a).unwrap(), Some(record(100)));
        assert_eq!(store.item(&b).unwrap(), Some(rb.clone()));
        assert!(store.seen(&ItemId([9; 32])).unwrap());
        assert!(store.verify().unwrap().is_empty(), "{:?}", store.verify());
        let live: Vec<LiveEntry> = store.live().collect::<Result<_, _>>().unwrap();
        assert_eq!(live.len(), 2);
        assert_eq!(live[1].created_at, 20);
        assert_eq!(
            store
                .items()
                .unwrap()
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            vec![a, b],
            "oldest first"
        );
        futures::executor::block_on(store.flush()).unwrap();
    }
}

#[test]
fn a_removal_a_crash_interrupted_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (ItemId([1; 32]), ItemId([2; 32]));
    let r = record(100);
    {
        let store = Store::open(dir.path()).unwrap();
        put(&store, &a, &r);
        put(&store, &b, &r);
        // As if the process died right after `remove_item`'s tombstones (a), and
        // after its record deletion (b).
        store
            .tombs
            .insert(tomb_key(100, TOMB_ID, &a.0), &[])
            .unwrap();
        store.records.remove(expiry_key(r.created_at, &b)).unwrap();
        assert_eq!(store.item(&b).unwrap(), None);
        assert!(!store.verify().unwrap().is_empty());
        futures::executor::block_on(store.flush()).unwrap();
    }
    let store = reopen(dir.path());
    assert!(!store.has_item(&a).unwrap(), "finished at open");
    assert!(store.seen(&a).unwrap(), "and still seen");
    assert_eq!(store.item_count(), 1);
    store.expire(100).unwrap();
    assert!(store.verify().unwrap().is_empty(), "{:?}", store.verify());
    assert!(!store.has_item(&b).unwrap());
    assert_eq!(store.live().count(), 0);
    assert_eq!(store.item_count(), 0);
}

#[test]
fn a_record_a_crash_left_without_its_expiry_entry_is_not_shown_and_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let a = ItemId([1; 32]);
    let r = record(100);
    {
        let store = Store::open(dir.path()).unwrap();
        put(&store, &a, &r);
        // As if the process died between a put's two writes (before the expiry
        // entry), or between the expiry pass's two (after it).
        store.expiry.remove(expiry_key(100, &a)).unwrap();
        futures::executor::block_on(store.flush()).unwrap();
    }
    let store = reopen(dir.path());
    assert!(!store.seen(&a).unwrap() && !store.has_item(&a).unwrap());
    assert_eq!(store.item(&a).unwrap(), None);
    assert!(store.items().unwrap().is_empty(), "not live, not listed");
    assert_eq!(
        store.sync_elements().unwrap(),
        vec![],
        "not offered to sync"
    );
    assert_eq!(store.item_count(), 0);
    assert!(
        store.verify().unwrap().is_empty(),
        "an expected state after a crash"
    );
    store.expire(200).unwrap();
    assert_eq!(store.records.len(), 1, "younger than any lifetime: kept");
    store
        .expire(r.created_at + u64::from(MAX_TTL_SECS) + 1)
        .unwrap();
    assert!(store.verify().unwrap().is_empty(), "{:?}", store.verify());
    assert_eq!(store.records.len(), 0);
}

#[test]
fn an_id_tombstoned_twice_then_stored_stays_live_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = ItemId([1; 32]);
    {
        let store = Store::open(dir.path()).unwrap();
        store.mark_seen(&a, 50).unwrap();
        store.mark_seen(&a, 60).unwrap();
        store.mark_seen(&a, 55).unwrap();
        assert_eq!(store.tombs.len(), 1, "one key per id");
        // As if a crash in `mark_seen` had left a second key.
        store
            .tombs
            .insert(tomb_key(40, TOMB_ID, &a.0), &[])
            .unwrap();
        put(&store, &a, &record(100));
        assert!(store.verify().unwrap().is_empty(), "{:?}", store.verify());
        futures::executor::block_on(store.flush()).unwrap();
    }
    let store = reopen(dir.path());
    assert_eq!(store.item(&a).unwrap(), Some(record(100)));
    assert_eq!(store.item_count(), 1);
}

#[test]
fn a_format_2_store_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, gone, lost) = (
        ItemId([1; 32]),
        ItemId([2; 32]),
        ItemId([3; 32]),
        ItemId([4; 32]),
    );
    let mut rb = record(300);
    rb.created_at = 20;
    rb.item = vec![5, 6];
    {
        // Format 2, written the way the previous release wrote it.
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        let records = db.open_tree("records").unwrap();
        let expiry = db.open_tree("expiry").unwrap();
        let seen = db.open_tree("seen").unwrap();
        let seen_items = db.open_tree("seen_items").unwrap();
        for (id, r) in [(a, record(100)), (b, rb.clone())] {
            records
                .insert(
                    expiry_key(r.created_at, &id),
                    porchlight_proto::codec::encode(&r),
                )
                .unwrap();
            let mut live = [0u8; 40];
            live[..32].copy_from_slice(&r.author.0);
            live[32..].copy_from_slice(&r.created_at.to_be_bytes());
            expiry
                .insert(expiry_key(r.expires_at, &id), &live[..])
                .unwrap();
            let mut index = [0u8; 16];
            index[..8].copy_from_slice(&r.expires_at.to_be_bytes());
            index[8..].copy_from_slice(&r.created_at.to_be_bytes());
            seen.insert(id.0, &index[..]).unwrap();
            seen_items
                .insert(OpId::of(&r.item).0, &r.expires_at.to_be_bytes())
                .unwrap();
        }
        // A retracted item's tombstones, and an expiry entry a crash left alone.
        seen.insert(gone.0, &250u64.to_be_bytes()).unwrap();
        seen_items.insert([8; 32], &250u64.to_be_bytes()).unwrap();
        let mut live = [0u8; 40];
        live[32..].copy_from_slice(&7u64.to_be_bytes());
        expiry.insert(expiry_key(90, &lost), &live[..]).unwrap();
        meta.insert(FORMAT_KEY, &[2]).unwrap();
        db.flush().unwrap();
    }
    for _ in 0..2 {
        let store = reopen(dir.path());
        assert_eq!(store.item_count(), 2);
        assert_eq!(store.item(&a).unwrap(), Some(record(100)));
        assert_eq!(store.item(&b).unwrap(), Some(rb.clone()));
        assert!(store.seen(&gone).unwrap() && !store.has_item(&gone).unwrap());
        assert!(!store.seen(&lost).unwrap());
        assert!(store.seen_item(&OpId([8; 32])).unwrap());
        assert!(store.seen_item(&OpId::of(&rb.item)).unwrap());
        assert!(store.verify().unwrap().is_empty(), "{:?}", store.verify());
        assert!(
            !store
                .db
                .tree_names()
                .iter()
                .any(|n| n.as_ref() == b"seen" || n.as_ref() == b"seen_items")
        );
        futures::executor::block_on(store.flush()).unwrap();
    }
    let store = reopen(dir.path());
    store.expire(260).unwrap();
    assert!(!store.seen(&gone).unwrap());
    assert!(!store.seen_item(&OpId([8; 32])).unwrap());
    assert!(
        store.seen_item(&OpId::of(&rb.item)).unwrap(),
        "b lives to 300"
    );
    assert_eq!(store.item_count(), 1);
}

#[test]
fn a_store_of_a_newer_format_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        put(&store, &ItemId([1; 32]), &record(100));
        store.meta.insert(FORMAT_KEY, &[FORMAT + 1]).unwrap();
        futures::executor::block_on(store.flush()).unwrap();
    }
    let err = reopening(dir.path()).unwrap_err();
    assert!(err.to_string().contains("newer than this build"), "{err}");
    let db = (0..200)
        .find_map(|_| {
            let db = sled::open(dir.path()).ok();
            if db.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            db
        })
        .expect("the store stayed locked");
    assert_eq!(
        db.open_tree("meta")
            .unwrap()
            .get(FORMAT_KEY)
            .unwrap()
            .unwrap()
            .as_ref(),
        [FORMAT + 1]
    );
    assert_eq!(db.open_tree("records").unwrap().len(), 1);
}

#[test]
fn outbox_is_bounded_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..MAX_OUTBOX {
        store.push_outbox(&[i as u8]).unwrap();
    }
    assert!(matches!(
        store.push_outbox(&[0]),
        Err(StoreError::OutboxFull)
    ));
    let out = store.outbox().unwrap();
    assert_eq!(out[0].1, vec![0]);
    store.pop_outbox(out[0].0).unwrap();
    assert_eq!(store.outbox().unwrap().len(), MAX_OUTBOX - 1);
}

#[test]
fn a_protocol_1_hood_is_refused_with_a_clear_error_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        // What a protocol 1 node wrote: the hood, and no protocol key.
        store.meta.insert(HOOD, &[3u8; 32]).unwrap();
        futures::executor::block_on(store.flush()).unwrap();
    }
    let store = reopen(dir.path());
    let err = store.hood().unwrap_err();
    assert!(matches!(err, StoreError::OldProtocol(1)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("protocol 1") && text.contains("another data dir"),
        "{text}"
    );
    assert_eq!(store.meta.get(PROTOCOL_KEY).unwrap(), None);
    assert_eq!(
        store.meta.get(HOOD).unwrap().as_deref(),
        Some(&[3u8; 32][..])
    );
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let hood = HoodId([3; 32]);
    {
        let store = Store::open(dir.path()).unwrap();
        store.set_hood(&hood).unwrap();
        put(&store, &ItemId([1; 32]), &record(100));
        futures::executor::block_on(store.flush()).unwrap();
    }
    let store = reopen(dir.path());
    assert_eq!(store.hood().unwrap(), Some(hood));
    assert_eq!(store.item(&ItemId([1; 32])).unwrap(), Some(record(100)));
}
