//! The node's storage: one `Store` over sled, so the storage engine lives in this file.
//!
//! Trees (store format 3, see `FORMAT`):
//! - `meta`: the hood id, the store format, and small settings.
//! - `ops`: membership operations, `OpId → item bytes`. Never expire.
//! - `keys`: epoch keys, `EpochId → generation (u64 BE) ‖ key (32)`.
//! - `records`: live items, `created_at (u64 BE) ‖ ItemId → ItemRecord` (postcard). Keyed
//!   by time, not by id, so that new items are appended at the right edge of the tree:
//!   with random keys every insert touched a random leaf of a tree far larger than the
//!   page cache, and ingest paid for reading leaves back in (docs/performance.md).
//! - `expiry`: the live items, `expires_at (u64 BE) ‖ ItemId → author (32) ‖ created_at
//!   (u64 BE) ‖ OpId (32)`. An item is live once this entry is written (it is written
//!   after the record): what the expiry pass deletes, the items' part of the sync set, all
//!   the rate limiter needs at startup, and, with `tombs`, what the in-memory index is
//!   built from, so a restart reads this small tree instead of every record.
//! - `tombs`: ids that stay seen although nothing live carries them, `keep until (u64
//!   BE) ‖ kind (0: envelope id, 1: inner item id) ‖ id → ()`: a retracted or removed
//!   item's ids until it would have expired (so neither gossip nor sync brings it back),
//!   and the envelope ids of membership operations (for ever). Keyed by time, so running
//!   out is a range deletion.
//! - `sync`: the operations in the set catch-up sync reconciles, `created_at (u64 BE) ‖
//!   OpId → 0` (the items' part of the set comes from `expiry`).
//! - `outbox`: envelopes posted but not yet handed to a peer, `seq (u64 BE) → bytes`.
//! - `peers`: remembered peer addresses, `peer id bytes → address list (postcard)`.
//! - `seen_at`: when each member was last connected or active, `MemberId → Unix time
//!   (u64 BE)`: start-up dials the most recently seen first.
//! - `clips`: the clips live reports reference, `SHA-256 ‖ ItemId → author (32) ‖ size
//!   (u64 BE)`: a clip's owner without a pass over the records. Written before the
//!   record and deleted after it, so an entry can outlive its item after a crash; a
//!   lookup takes only entries whose item is live. Built once from the records for a
//!   store from before it (`CLIPS_INDEXED` in `meta`).
//!
//! In memory, built at open from `expiry` and `tombs` and kept in step with them: every
//! envelope id seen (a live item's times, or a tombstone's keep-until) and every inner
//! item id seen. Ingest's duplicate checks and every lookup by id read this index, not
//! sled: the format 2 store kept it in two sled trees at random keys, and looking up and
//! inserting there was half of ingest's time (docs/performance.md).
//!
//! Write order, for crashes (sled keeps a prefix of the writes): an item's record, then
//! its expiry entry, which makes it live; a record a crash left without its expiry entry
//! is never shown and is deleted once older than any lifetime (`MAX_TTL_SECS`). A removal
//! writes its tombstones first, then deletes the record and the expiry entry; one a crash
//! interrupted (an expiry entry and an envelope tombstone for the same id) is finished at
//! the next open. The expiry pass deletes the expiry entry, then the record, so a crash in
//! between leaves a hidden record, swept like the others. Every write that the caller acknowledges to a person goes through
//! [`Store::flush`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use porchlight_proto::keys::EpochKey;
use porchlight_proto::limits::MAX_TTL_SECS;
use porchlight_proto::{EpochId, HoodId, ItemId, KeyRing, MemberId, OpId};
use serde::{Deserialize, Serialize};

/// sled's page cache: small enough for a Raspberry Pi. At 100,000 items the node's resident
/// size is 69 MiB with 8 MiB here and 78 MiB with 16, and ingest about 3 % slower (see
/// docs/performance.md, memory and ingest).
pub const CACHE_BYTES: u64 = 8 * 1024 * 1024;
/// How often sled writes and syncs its log on its own, in ms. Whatever a person is told
/// is stored goes through [`Store::flush`] first, so this only bounds how much received
/// gossip a crash can cost (sync fetches it again from the neighbors). sled's default is
/// 500 ms: two fsyncs a second on every node while reports arrive, which is disk wear on
/// an SD card and, with many nodes on one machine, a tenth of their CPU
/// (docs/performance.md).
pub const FLUSH_EVERY_MS: u64 = 5_000;
/// Most envelopes kept waiting in the outbox.
pub const MAX_OUTBOX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("the data dir is in use by another porchlight process (is a node running for it?)")]
    Locked,
    #[error("stored data is corrupt ({0}); the data dir may be damaged")]
    Corrupt(&'static str),
    #[error("the outbox is full ({MAX_OUTBOX} posts waiting for a peer)")]
    OutboxFull,
    #[error(
        "this data dir holds a hood of Porchlight protocol {0}, which this version (protocol \
         {PROTOCOL}) cannot run: membership is now a causal log that older hoods do not have. \
         Keep this data dir for the older version, or start anew in another data dir \
         (docs/operations.md, \"Upgrading\")"
    )]
    OldProtocol(u8),
}

/// A remembered peer: its id's bytes and its addresses.
pub type PeerEntry = (Vec<u8>, Vec<String>);

/// What the store keeps about a live item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub kind: porchlight_proto::Kind,
    /// The envelope exactly as it travels (sync serves these bytes).
    pub envelope: Vec<u8>,
    /// The opened inner item's bytes (so reading the feed needs no AEAD).
    pub item: Vec<u8>,
    pub author: MemberId,
    pub created_at: u64,
    pub expires_at: u64,
    pub received_at: u64,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    ops: sled::Tree,
    keys: sled::Tree,
    records: sled::Tree,
    expiry: sled::Tree,
    tombs: sled::Tree,
    sync: sled::Tree,
    outbox: sled::Tree,
    peers: sled::Tree,
    clips: sled::Tree,
    seen_at: sled::Tree,
    /// The ids seen, in memory (see the module doc).
    index: Arc<Mutex<Index>>,
    /// The first storage failure (an I/O error, corruption) a write or a flush met. sled
    /// 0.34's errors are sticky: after one (a full disk, say) every later write and flush
    /// fails until the store is reopened, even once space is free, so the node stops and
    /// is restarted rather than running on with a store that cannot keep anything.
    failure: Arc<Mutex<Option<String>>>,
}

/// A live item as the expiry index holds it: enough to rebuild the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEntry {
    pub id: ItemId,
    pub author: MemberId,
    pub created_at: u64,
    pub expires_at: u64,
}

/// An envelope id's entry in the in-memory index: a live item (`until` is when it
/// expires, `created_at` where its record is) or a tombstone (`created_at == TOMB`,
/// seen until `until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    until: u64,
    created_at: u64,
}

const TOMB: u64 = u64::MAX;

/// An id's key in the in-memory index: its first 16 bytes. Ids are SHA-256 hashes, so
/// two ids share a key only by a 2^128 second preimage, or by a 2^64 birthday search
/// among a member's own items, which would only make one of that member's own items a
/// duplicate of the other (which one depends on arrival order, so nodes could then hold
/// different ones of the pair for good; sync does not loop on it, as it skips ids seen).
/// Lookups by id act on the prefix, so every caller passes ids the node holds or received.
/// Half the memory of whole ids (about 7.6 MiB at 100,000 live items instead of 11.8).
type Key = [u8; 16];

fn key(id: &[u8; 32]) -> Key {
    let mut k = [0u8; 16];
    k.copy_from_slice(&id[..16]);
    k
}

/// Every id the node has seen, in memory, against about 45 µs of sled lookups and
/// random-key inserts per ingested item in format 2.
#[derive(Default)]
struct Index {
    /// Envelope ids: live items and tombstones.
    ids: HashMap<Key, Seen>,
    /// Inner item ids, with the time each stays seen until.
    items: HashMap<Key, u64>,
    /// How many of `ids` are live.
    live: usize,
    /// Each author's newest item's creation time, among the items live at open and
    /// those stored since: evidence of when a member was last active, without a pass
    /// over the expiry index (`status` and `members` ask for it).
    latest: HashMap<MemberId, u64>,
    /// Bumped whenever the sync set (live items, operations) may have changed, so that a
    /// copy of the set built from the trees can tell it is still current.
    changes: u64,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("ids", &self.ids.len())
            .field("items", &self.items.len())
            .field("live", &self.live)
            .finish()
    }
}

impl Index {
    fn seen(&self, id: &[u8; 32]) -> bool {
        self.ids.contains_key(&key(id))
    }

    fn seen_item(&self, id: &[u8; 32]) -> bool {
        self.items.contains_key(&key(id))
    }

    fn get(&self, id: &[u8; 32]) -> Option<Seen> {
        self.ids.get(&key(id)).copied()
    }

    /// A live item's `(expires_at, created_at)`.
    fn live_times(&self, id: &[u8; 32]) -> Option<(u64, u64)> {
        match self.get(id) {
            Some(s) if s.created_at != TOMB => Some((s.until, s.created_at)),
            _ => None,
        }
    }

    /// Records a live item.
    fn set_live(&mut self, id: &[u8; 32], expires_at: u64, created_at: u64) {
        self.changes = self.changes.wrapping_add(1);
        let old = self.ids.insert(
            key(id),
            Seen {
                until: expires_at,
                created_at,
            },
        );
        if !matches!(old, Some(s) if s.created_at != TOMB) {
            self.live += 1;
        }
    }

    /// Makes `id` a tombstone kept until at least `keep_until`.
    fn tomb(&mut self, id: &[u8; 32], keep_until: u64) {
        let until = match self.get(id) {
            Some(s) if s.created_at == TOMB => s.until.max(keep_until),
            Some(_) => {
                self.live = self.live.saturating_sub(1);
                self.changes = self.changes.wrapping_add(1);
                keep_until
            }
            None => keep_until,
        };
        self.ids.insert(
            key(id),
            Seen {
                until,
                created_at: TOMB,
            },
        );
    }

    /// Forgets a live item that expired; whether it was live with these times.
    fn expired(&mut self, id: &[u8; 32], expires_at: u64, created_at: u64) -> bool {
        if self.live_times(id) != Some((expires_at, created_at)) {
            return false;
        }
        self.ids.remove(&key(id));
        self.live = self.live.saturating_sub(1);
        self.changes = self.changes.wrapping_add(1);
        true
    }

    /// Forgets a tombstone kept until before `now`.
    fn forget_tomb(&mut self, id: &[u8; 32], now: u64) {
        if self
            .get(id)
            .is_some_and(|s| s.created_at == TOMB && s.until < now)
        {
            self.ids.remove(&key(id));
        }
    }

    fn saw_author(&mut self, author: MemberId, created_at: u64) {
        let at = self.latest.entry(author).or_insert(created_at);
        *at = (*at).max(created_at);
    }

    fn see_item(&mut self, id: &[u8; 32], until: u64) {
        let at = self.items.entry(key(id)).or_insert(until);
        *at = (*at).max(until);
    }

    /// Forgets an inner item id seen until `at` or before.
    fn forget_item(&mut self, id: &[u8; 32], at: u64) {
        if self.items.get(&key(id)).is_some_and(|until| *until <= at) {
            self.items.remove(&key(id));
        }
    }
}

const HOOD: &[u8] = b"hood";
const FORMAT_KEY: &[u8] = b"format";
const PROTOCOL_KEY: &[u8] = b"protocol";
/// `meta` key of the checkpoint a joiner's roster starts from, while the operations it
/// covers are still arriving (absent otherwise).
const CHECKPOINT_KEY: &[u8] = b"checkpoint";
/// The protocol version of the hood this store holds. A store with a hood and no
/// `protocol` key holds a protocol 1 hood (whose membership log has no causal parents and
/// whose hood id is derived differently): refused with a clear error, never guessed at.
pub const PROTOCOL: u8 = 2;
/// `meta` key the health probe writes (the time of the last probe).
const PROBE: &[u8] = b"probe";
/// In `meta` once the `clips` tree holds every live report's clips.
const CLIPS_INDEXED: &[u8] = b"clips_indexed";
/// Most live reports a lookup of one clip lists.
pub const MAX_CLIP_REFS: usize = 64;
/// The store format this code writes. 1 (no `format` key) kept records in a tree
/// `items` keyed by id; 2 kept the seen ids in the sled trees `seen` and `seen_items`.
/// `Store::open` migrates both.
pub const FORMAT: u8 = 3;
const SYNC_OP: u8 = 0;
/// Format 1 listed items in the `sync` tree with this kind.
const SYNC_ITEM: u8 = 1;
/// Tombstone kinds.
const TOMB_ID: u8 = 0;
const TOMB_ITEM: u8 = 1;
/// The trees of formats 1 and 2 that format 3 does without.
const OLD_TREES: [&[u8]; 3] = [b"items", b"seen", b"seen_items"];

/// The clips a stored report references, `(SHA-256, size)`; none for other kinds.
fn clip_refs(record: &ItemRecord) -> Vec<([u8; 32], u64)> {
    if record.kind != porchlight_proto::Kind::Report {
        return Vec::new();
    }
    match porchlight_proto::item::Item::decode(&record.item).map(|i| i.body()) {
        Ok(Ok(porchlight_proto::item::Body::Report(r))) => {
            r.clips.iter().map(|c| (c.sha256, c.size)).collect()
        }
        _ => Vec::new(),
    }
}

fn clip_key(sha256: &[u8; 32], id: &ItemId) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(sha256);
    k[32..].copy_from_slice(&id.0);
    k
}

fn codec_hex(bytes: &[u8]) -> String {
    porchlight_proto::codec::hex(bytes)
}

/// `time (u64 BE) ‖ id`: the key of `records` (creation time) and `expiry` (expiry).
fn expiry_key(time: u64, id: &ItemId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&time.to_be_bytes());
    k[8..].copy_from_slice(&id.0);
    k
}

fn tomb_key(keep_until: u64, kind: u8, id: &[u8; 32]) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[..8].copy_from_slice(&keep_until.to_be_bytes());
    k[8] = kind;
    k[9..].copy_from_slice(id);
    k
}

/// An `expiry` entry's value.
fn live_value(author: &MemberId, created_at: u64, item: &OpId) -> [u8; 72] {
    let mut v = [0u8; 72];
    v[..32].copy_from_slice(&author.0);
    v[32..40].copy_from_slice(&created_at.to_be_bytes());
    v[40..].copy_from_slice(&item.0);
    v
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

fn id_at(bytes: &[u8], at: usize) -> Option<[u8; 32]> {
    bytes.get(at..at + 32)?.try_into().ok()
}

/// A `time ‖ id` key of `records` or `expiry`.
fn parse_time_key(key: &[u8], what: &'static str) -> Result<(u64, ItemId), StoreError> {
    match (u64_at(key, 0), id_at(key, 8)) {
        (Some(t), Some(id)) if key.len() == 40 => Ok((t, ItemId(id))),
        _ => Err(StoreError::Corrupt(what)),
    }
}

/// An `expiry` entry: `(expires_at, id, author, created_at, inner item id)`.
fn parse_live(key: &[u8], value: &[u8]) -> Result<(LiveEntry, OpId), StoreError> {
    let (expires_at, id) = parse_time_key(key, "expiry index")?;
    match (id_at(value, 0), u64_at(value, 32), id_at(value, 40)) {
        (Some(author), Some(created_at), Some(item)) if value.len() == 72 => Ok((
            LiveEntry {
                id,
                author: MemberId(author),
                created_at,
                expires_at,
            },
            OpId(item),
        )),
        _ => Err(StoreError::Corrupt("expiry entry")),
    }
}

/// A `tombs` key: `(keep_until, kind, id)`.
fn parse_tomb(key: &[u8]) -> Result<(u64, u8, [u8; 32]), StoreError> {
    match (u64_at(key, 0), key.get(8), id_at(key, 9)) {
        (Some(t), Some(&kind @ (TOMB_ID | TOMB_ITEM)), Some(id)) if key.len() == 41 => {
            Ok((t, kind, id))
        }
        _ => Err(StoreError::Corrupt("tombstone")),
    }
}

fn decode<T: Serialize + serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    porchlight_proto::codec::decode(bytes, usize::MAX).map_err(|_| StoreError::Corrupt(what))
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, CACHE_BYTES)
    }

    /// A tree of its own for a subsystem that keeps a little local state (`mute.rs`).
    pub(crate) fn open_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// [`Store::open`] with another page cache size (for measuring what it costs).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()
            .map_err(|e| match e {
                // sled's lock error is an `Io` of kind `Other` with this text.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked
                }
                other => StoreError::Sled(other),
            })?;
        let store = Store {
            meta: db.open_tree("meta")?,
            ops: db.open_tree("ops")?,
            keys: db.open_tree("keys")?,
            records: db.open_tree("records")?,
            expiry: db.open_tree("expiry")?,
            tombs: db.open_tree("tombs")?,
            sync: db.open_tree("sync")?,
            outbox: db.open_tree("outbox")?,
            peers: db.open_tree("peers")?,
            clips: db.open_tree("clips")?,
            seen_at: db.open_tree("seen_at")?,
            index: Default::default(),
            failure: Default::default(),
            db,
        };
        store.migrate()?;
        store.load_index()?;
        store.index_clips()?;
        Ok(store)
    }

    /// The first storage failure seen, if any: once there is one, nothing written since
    /// can be made durable until the store is reopened.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a storage failure in `result` (the first one stays).
    fn noted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Sled(
            e @ (sled::Error::Io(_)
            | sled::Error::Corruption { .. }
            | sled::Error::ReportableBug(_)),
        )) = &result
        {
            let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
            if failure.is_none() {
                tracing::error!(error = %e, "the store failed");
                *failure = Some(e.to_string());
            }
        }
        result
    }

    /// Runs a write, recording a storage failure it meets.
    fn write<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.noted(f())
    }

    /// Whether the store takes a write now: writes a small marker and flushes it (off
    /// the caller's thread). Cheap; for `GET /v1/health`, not for every tick (it costs a
    /// disk sync).
    pub async fn probe(&self, now: u64) -> Result<(), StoreError> {
        self.noted(
            self.meta
                .insert(PROBE, &now.to_be_bytes())
                .map(drop)
                .map_err(StoreError::from),
        )?;
        self.flush().await
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // The index is only changed by short, non-panicking sections; a poisoned lock
        // still holds a consistent index.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds the in-memory index from `expiry` and `tombs`, and finishes removals a
    /// crash interrupted.
    fn load_index(&self) -> Result<(), StoreError> {
        let mut ix = Index::default();
        for entry in self.expiry.iter() {
            let (k, v) = entry?;
            let (live, item) = parse_live(&k, &v)?;
            ix.set_live(&live.id.0, live.expires_at, live.created_at);
            ix.see_item(&item.0, live.expires_at);
            ix.saw_author(live.author, live.created_at);
        }
        let mut interrupted = Vec::new();
        for key in self.tombs.iter().keys() {
            let (keep_until, kind, id) = parse_tomb(&key?)?;
            if kind == TOMB_ITEM {
                ix.see_item(&id, keep_until);
                continue;
            }
            if let Some(times) = ix.live_times(&id) {
                interrupted.push((ItemId(id), times));
            }
            ix.tomb(&id, keep_until);
        }
        for (id, (expires_at, created_at)) in &interrupted {
            self.records.remove(expiry_key(*created_at, id))?;
            self.expiry.remove(expiry_key(*expires_at, id))?;
        }
        if !interrupted.is_empty() {
            tracing::info!(
                items = interrupted.len(),
                "finished removals a crash interrupted"
            );
        }
        *self.index() = ix;
        Ok(())
    }

    /// Brings a format 1 or 2 store to this format. Safe to interrupt: it writes the new
    /// entries, flushes, records the format, and only then drops the old trees; run
    /// again, it redoes the same writes.
    fn migrate(&self) -> Result<(), StoreError> {
        let names = self.db.tree_names();
        let old: Vec<&[u8]> = OLD_TREES
            .into_iter()
            .filter(|t| names.iter().any(|n| n.as_ref() == *t))
            .collect();
        match self.meta.get(FORMAT_KEY)? {
            Some(v) if v.as_ref() == [FORMAT] => {
                // A crash after the format was recorded, before the old trees were dropped.
                for tree in old {
                    self.db.drop_tree(tree)?;
                }
                return Ok(());
            }
            Some(v) if v.as_ref() == [2] => {}
            Some(v) if v.first().is_some_and(|f| *f > FORMAT) => {
                return Err(StoreError::Corrupt("store format is newer than this build"));
            }
            Some(_) => return Err(StoreError::Corrupt("store format")),
            None if old.is_empty() => {
                // A new store.
                self.meta.insert(FORMAT_KEY, &[FORMAT])?;
                return Ok(());
            }
            None => {}
        }
        // Format 1: records keyed by id in `items`.
        let mut moved = 0usize;
        if old.contains(&OLD_TREES[0]) {
            for entry in self.db.open_tree(OLD_TREES[0])?.iter() {
                let (k, v) = entry?;
                let id = id_at(&k, 0)
                    .filter(|_| k.len() == 32)
                    .ok_or(StoreError::Corrupt("item id"))?;
                let record: ItemRecord = decode(&v, "item record")?;
                self.write_item(&ItemId(id), &OpId::of(&record.item), &record)?;
                moved += 1;
            }
        }
        // Format 2 expiry entries (author ‖ created_at) gain the inner item id; format
        // 1's (empty) were rewritten above or have no item.
        let mut live_ids = std::collections::HashSet::new();
        let mut live_items = std::collections::HashSet::new();
        for entry in self.expiry.iter() {
            let (k, v) = entry?;
            let (_, id) = parse_time_key(&k, "expiry index")?;
            if v.len() == 72 {
                live_ids.insert(id.0);
                live_items.insert(id_at(&v, 40).ok_or(StoreError::Corrupt("expiry entry"))?);
                continue;
            }
            let record = match u64_at(&v, 32).filter(|_| v.len() == 40) {
                Some(created_at) => self.records.get(expiry_key(created_at, &id))?,
                None => None,
            };
            match record {
                Some(bytes) => {
                    let record: ItemRecord = decode(&bytes, "item record")?;
                    let item = OpId::of(&record.item);
                    self.expiry.insert(
                        &k,
                        &live_value(&record.author, record.created_at, &item)[..],
                    )?;
                    live_ids.insert(id.0);
                    live_items.insert(item.0);
                    moved += 1;
                }
                // Left by a crash without its item.
                None => {
                    self.expiry.remove(&k)?;
                }
            }
        }
        // Seen ids that are not live become tombstones (the first 8 bytes of a value
        // are its keep-until in both formats).
        for (tree, kind, live) in [
            (OLD_TREES[1], TOMB_ID, &live_ids),
            (OLD_TREES[2], TOMB_ITEM, &live_items),
        ] {
            if !old.contains(&tree) {
                continue;
            }
            for entry in self.db.open_tree(tree)?.iter() {
                let (k, v) = entry?;
                let (Some(id), Some(keep_until)) = (id_at(&k, 0), u64_at(&v, 0)) else {
                    return Err(StoreError::Corrupt("seen entry"));
                };
                if !live.contains(&id) {
                    self.tombs.insert(tomb_key(keep_until, kind, &id), &[])?;
                }
            }
        }
        let item_entries: Vec<sled::IVec> = self
            .sync
            .iter()
            .filter_map(|e| match e {
                Ok((k, v)) if v.as_ref() == [SYNC_ITEM] => Some(Ok(k)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        for key in item_entries {
            self.sync.remove(key)?;
        }
        self.db.flush()?;
        self.meta.insert(FORMAT_KEY, &[FORMAT])?;
        self.db.flush()?;
        for tree in old {
            self.db.drop_tree(tree)?;
        }
        tracing::info!(items = moved, "store migrated to format {FORMAT}");
        Ok(())
    }

    /// Makes every write so far durable. Call before acknowledging.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.noted(self.flush_db().await)
    }

    async fn flush_db(&self) -> Result<(), StoreError> {
        // Not sled's `flush_async`: it waits on one of sled's few shared IO threads for a
        // buffer write queued to the same threads, so enough flushes at once (many nodes
        // in one process) block every IO thread and deadlock. A tokio blocking thread
        // waits instead, and sled's threads stay free to write.
        let db = self.db.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime
                    .spawn_blocking(move || db.flush())
                    .await
                    .map_err(|e| sled::Error::ReportableBug(format!("flush task: {e}")))??;
            }
            Err(_) => {
                db.flush()?;
            }
        }
        Ok(())
    }
    pub fn hood(&self) -> Result<Option<HoodId>, StoreError> {
        match self.meta.get(HOOD)? {
            None => Ok(None),
            Some(v) => {
                // Stores from before protocol 2 have no protocol key.
                match self.meta.get(PROTOCOL_KEY)?.as_deref() {
                    Some([p]) if *p == PROTOCOL => {}
                    Some([p]) => return Err(StoreError::OldProtocol(*p)),
                    Some(_) => return Err(StoreError::Corrupt("protocol version")),
                    None => return Err(StoreError::OldProtocol(1)),
                }
                let bytes: [u8; 32] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("hood id"))?;
                Ok(Some(HoodId(bytes)))
            }
        }
    }

    pub fn set_hood(&self, hood: &HoodId) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.meta.insert(PROTOCOL_KEY, &[PROTOCOL])?;
            self.meta.insert(HOOD, &hood.0)?;
            Ok(())
        })
    }

    /// The encoded checkpoint the roster starts from, if its history is still arriving.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(CHECKPOINT_KEY)?.map(|v| v.to_vec()))
    }

    /// Records (or, with `None`, forgets) the checkpoint the roster starts from.
    pub fn set_checkpoint(&self, checkpoint: Option<&[u8]>) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            match checkpoint {
                Some(bytes) => self.meta.insert(CHECKPOINT_KEY, bytes)?,
                None => self.meta.remove(CHECKPOINT_KEY)?,
            };
            Ok(())
        })
    }

    pub fn put_op(&self, id: &OpId, created_at: u64, item_bytes: &[u8]) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.ops.insert(id.0, item_bytes)?;
            let before = self
                .sync
                .insert(expiry_key(created_at, &ItemId(id.0)), &[SYNC_OP])?;
            if before.is_none() {
                let mut ix = self.index();
                ix.changes = ix.changes.wrapping_add(1);
            }
            Ok(())
        })
    }

    /// The op's signed item bytes.
    pub fn op(&self, id: &OpId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.ops.get(id.0)?.map(|v| v.to_vec()))
    }

    /// Deletes a membership operation (one the roster dropped as no member's to hold:
    /// `Roster::take_strays`) and its sync entry.
    pub fn remove_op(&self, id: &OpId, created_at: u64) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.ops.remove(id.0)?;
            if self
                .sync
                .remove(expiry_key(created_at, &ItemId(id.0)))?
                .is_some()
            {
                let mut ix = self.index();
                ix.changes = ix.changes.wrapping_add(1);
            }
            Ok(())
        })
    }

    /// Changes whenever the set [`Store::sync_elements`] lists may have changed (kept in
    /// memory): a copy of the set built when it read the same is current.
    pub fn sync_generation(&self) -> u64 {
        self.index().changes
    }

    /// Every `(created_at, id)` that catch-up sync reconciles: the operations, and the
    /// live items (from the expiry index).
    pub fn sync_elements(&self) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        let mut out = Vec::with_capacity(self.item_count() + 64);
        for entry in self.sync.iter() {
            let (key, kind) = entry?;
            // Format 1 item entries (kind 1) are left to the expiry index.
            if kind.as_ref() != [SYNC_OP] {
                continue;
            }
            if key.len() != 40 {
                return Err(StoreError::Corrupt("sync index"));
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&key[..8]);
            let mut id = [0u8; 32];
            id.copy_from_slice(&key[8..]);
            out.push((u64::from_be_bytes(t), id));
        }
        for entry in self.live() {
            let entry = entry?;
            out.push((entry.created_at, entry.id.0));
        }
        Ok(out)
    }

    /// Every stored membership operation, as item bytes.
    pub fn ops(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.ops.iter().values().map(|v| Ok(v?.to_vec())).collect()
    }

    /// Stores an epoch key, or replaces its state after the ratchet moved on (the old
    /// chain value is overwritten: see `docs/threat-model.md` on what sled's log keeps).
    pub fn put_key(&self, key: &EpochKey) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.keys.insert(key.id().0, key.to_stored().as_slice())?;
            Ok(())
        })
    }

    /// Deletes a retired epoch key.
    pub fn remove_key(&self, epoch: &EpochId) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.keys.remove(epoch.0)?;
            Ok(())
        })
    }

    /// Every stored epoch key, each checked against its id.
    pub fn key_ring(&self, hood: &HoodId) -> Result<KeyRing, StoreError> {
        let mut ring = KeyRing::new();
        for entry in self.keys.iter() {
            let (k, v) = entry?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("epoch key"))?;
            let key = EpochKey::from_stored(hood, &EpochId(id), &v)
                .map_err(|_| StoreError::Corrupt("epoch key"))?;
            ring.insert(key);
        }
        Ok(ring)
    }

    /// The raw bytes of every stored epoch key record, for tests that scan the store for
    /// key material.
    pub fn key_records(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.keys.iter().values().map(|v| Ok(v?.to_vec())).collect()
    }

    /// Whether this envelope id was accepted before (a live item, or a tombstone that
    /// has not run out yet).
    pub fn seen(&self, id: &ItemId) -> Result<bool, StoreError> {
        Ok(self.index().seen(&id.0))
    }

    /// Remembers an id so that a replay is dropped; kept until `keep_until`. A live
    /// item's entry is left as it is (it is kept until the item expires).
    pub fn mark_seen(&self, id: &ItemId, keep_until: u64) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            let before = self.index().get(&id.0);
            match before {
                // Live, or already kept at least as long.
                Some(s) if s.created_at != TOMB || s.until >= keep_until => return Ok(()),
                _ => {}
            }
            self.tombs
                .insert(tomb_key(keep_until, TOMB_ID, &id.0), &[])?;
            // One tombstone key per id (a crash in between leaves two; the later one counts).
            if let Some(s) = before {
                self.tombs.remove(tomb_key(s.until, TOMB_ID, &id.0))?;
            }
            self.index().tomb(&id.0, keep_until);
            Ok(())
        })
    }

    /// Whether this inner item id was accepted before (in any envelope).
    pub fn seen_item(&self, id: &OpId) -> Result<bool, StoreError> {
        Ok(self.index().seen_item(&id.0))
    }

    /// Where a live item's record is: its `created_at`.
    fn live_at(&self, id: &ItemId) -> Option<u64> {
        self.index()
            .live_times(&id.0)
            .map(|(_, created_at)| created_at)
    }

    /// Stores a live item with its expiry entry, so its envelope id and its inner item
    /// id (`item`, `OpId::of(&record.item)`, which the caller has from validation) are
    /// seen until it expires.
    pub fn put_item(
        &self,
        id: &ItemId,
        item: &OpId,
        record: &ItemRecord,
    ) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.write_item(id, item, record)?;
            let mut ix = self.index();
            ix.set_live(&id.0, record.expires_at, record.created_at);
            ix.see_item(&item.0, record.expires_at);
            ix.saw_author(record.author, record.created_at);
            Ok(())
        })
    }

    /// The writes of [`Store::put_item`]: record, then expiry entry.
    fn write_item(&self, id: &ItemId, item: &OpId, record: &ItemRecord) -> Result<(), StoreError> {
        let before = self.index().get(&id.0);
        match before {
            // Stored again with other times: the old entries go.
            Some(s) if s.created_at != TOMB => {
                if s.created_at != record.created_at {
                    self.records.remove(expiry_key(s.created_at, id))?;
                }
                if s.until != record.expires_at {
                    self.expiry.remove(expiry_key(s.until, id))?;
                }
            }
            // A tombstone would undo this item at the next open: every key of it goes (a
            // crash in `mark_seen` can leave more than one). Rare, and the tree is small.
            Some(_) => {
                let keys: Vec<sled::IVec> = self
                    .tombs
                    .iter()
                    .keys()
                    .filter(|k| match k {
                        Ok(k) => {
                            parse_tomb(k).is_ok_and(|(_, kind, t)| kind == TOMB_ID && t == id.0)
                        }
                        Err(_) => true,
                    })
                    .collect::<Result<_, _>>()?;
                for k in keys {
                    self.tombs.remove(k)?;
                }
            }
            None => {}
        }
        for (sha256, size) in clip_refs(record) {
            let mut v = [0u8; 40];
            v[..32].copy_from_slice(&record.author.0);
            v[32..].copy_from_slice(&size.to_be_bytes());
            self.clips.insert(clip_key(&sha256, id), &v[..])?;
        }
        self.records.insert(
            expiry_key(record.created_at, id),
            porchlight_proto::codec::encode(record),
        )?;
        self.expiry.insert(
            expiry_key(record.expires_at, id),
            &live_value(&record.author, record.created_at, item)[..],
        )?;
        Ok(())
    }

    pub fn item(&self, id: &ItemId) -> Result<Option<ItemRecord>, StoreError> {
        let Some(created_at) = self.live_at(id) else {
            return Ok(None);
        };
        self.records
            .get(expiry_key(created_at, id))?
            .map(|v| decode(&v, "item record"))
            .transpose()
    }

    pub fn has_item(&self, id: &ItemId) -> Result<bool, StoreError> {
        Ok(self.live_at(id).is_some())
    }

    /// Deletes a live item and its entries; its envelope id and inner item id stay seen
    /// until the item would have expired, so sync cannot bring it back.
    ///
    /// The tombstones are written first, then the record and the expiry entry go; a
    /// removal a crash interrupted is finished at the next open. Returns whether the item
    /// was live.
    pub fn remove_item(&self, id: &ItemId) -> Result<bool, StoreError> {
        self.write(|| -> Result<bool, StoreError> {
            let Some((expires_at, created_at)) = self.index().live_times(&id.0) else {
                return Ok(false);
            };
            let at = expiry_key(expires_at, id);
            if let Some(v) = self.expiry.get(at)?
                && let Some(item) = id_at(&v, 40)
            {
                self.tombs
                    .insert(tomb_key(expires_at, TOMB_ITEM, &item), &[])?;
            }
            self.tombs
                .insert(tomb_key(expires_at, TOMB_ID, &id.0), &[])?;
            let record = self.records.remove(expiry_key(created_at, id))?;
            self.expiry.remove(at)?;
            self.index().tomb(&id.0, expires_at);
            self.forget_clips(id, record.as_deref())?;
            Ok(true)
        })
    }

    /// Deletes every live item by `author` (a removed member); returns how many. Reads
    /// the small expiry index, not the records.
    pub fn remove_items_by(&self, author: &MemberId) -> Result<usize, StoreError> {
        self.write(|| -> Result<usize, StoreError> {
            let mut ids = Vec::new();
            for entry in self.live() {
                let entry = entry?;
                if entry.author == *author {
                    ids.push(entry.id);
                }
            }
            let mut removed = 0;
            for id in &ids {
                if self.remove_item(id)? {
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    /// Every live item's author and times, from the expiry index, soonest expiry first.
    pub fn live(&self) -> impl Iterator<Item = Result<LiveEntry, StoreError>> + '_ {
        self.expiry.iter().map(|entry| {
            let (k, v) = entry?;
            Ok(parse_live(&k, &v)?.0)
        })
    }

    /// Every live item, oldest first by creation time, read one at a time: for a pass
    /// over the whole store that must not hold it all in memory at once. A record a crash
    /// left without its expiry entry is not live, and not listed.
    pub fn each_item(&self) -> impl Iterator<Item = Result<(ItemId, ItemRecord), StoreError>> + '_ {
        self.records.iter().filter_map(|entry| {
            let item = || {
                let (k, v) = entry?;
                let (created_at, id) = parse_time_key(&k, "record key")?;
                if self.live_at(&id) != Some(created_at) {
                    return Ok(None);
                }
                Ok(Some((id, decode::<ItemRecord>(&v, "item record")?)))
            };
            item().transpose()
        })
    }

    /// Live items created before the live item `before` (all, with `None`), newest first
    /// by creation time (then id), read one at a time from the tree's right edge: a page
    /// of the feed costs its own items, not a pass over the store. `Ok(None)` if `before`
    /// is not a live item.
    #[allow(clippy::type_complexity)]
    pub fn items_before(
        &self,
        before: Option<&ItemId>,
    ) -> Result<
        Option<impl Iterator<Item = Result<(ItemId, ItemRecord), StoreError>> + '_>,
        StoreError,
    > {
        let end = match before {
            None => None,
            Some(id) => match self.live_at(id) {
                Some(created_at) => Some(expiry_key(created_at, id)),
                None => return Ok(None),
            },
        };
        let range = match end {
            Some(end) => self.records.range(..end.to_vec()),
            None => self.records.range::<Vec<u8>, _>(..),
        };
        Ok(Some(range.rev().filter_map(move |entry| {
            let item = || {
                let (k, v) = entry?;
                let (created_at, id) = parse_time_key(&k, "record key")?;
                if self.live_at(&id) != Some(created_at) {
                    return Ok(None);
                }
                Ok(Some((id, decode::<ItemRecord>(&v, "item record")?)))
            };
            item().transpose()
        })))
    }

    /// Deletes the `clips` entries of a record that was just deleted (its bytes).
    fn forget_clips(&self, id: &ItemId, record: Option<&[u8]>) -> Result<(), StoreError> {
        let Some(record) = record.and_then(|r| decode::<ItemRecord>(r, "item record").ok()) else {
            return Ok(());
        };
        for (sha256, _) in clip_refs(&record) {
            self.clips.remove(clip_key(&sha256, id))?;
        }
        Ok(())
    }

    /// Fills `clips` from the records once, for a store from before it: one pass over
    /// the records, at the first start of a new version.
    fn index_clips(&self) -> Result<(), StoreError> {
        if self.meta.get(CLIPS_INDEXED)?.is_some() {
            return Ok(());
        }
        let mut reports = 0usize;
        for entry in self.each_item() {
            let (id, record) = entry?;
            for (sha256, size) in clip_refs(&record) {
                let mut v = [0u8; 40];
                v[..32].copy_from_slice(&record.author.0);
                v[32..].copy_from_slice(&size.to_be_bytes());
                self.clips.insert(clip_key(&sha256, &id), &v[..])?;
                reports += 1;
            }
        }
        self.meta.insert(CLIPS_INDEXED, &[1])?;
        if reports > 0 {
            tracing::info!(
                references = reports,
                "indexed the clips live reports reference"
            );
        }
        Ok(())
    }

    /// The live reports that reference the clip `sha256`: `(report, author, size)`, at
    /// most `MAX_CLIP_REFS`, from the `clips` tree (no pass over the records).
    pub fn clip_refs(&self, sha256: &[u8; 32]) -> Result<Vec<(ItemId, MemberId, u64)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.clips.scan_prefix(sha256) {
            let (k, v) = entry?;
            let (Some(id), Some(author), Some(size)) =
                (id_at(&k, 32), id_at(&v, 0), u64_at(&v, 32))
            else {
                return Err(StoreError::Corrupt("clip entry"));
            };
            if self.live_at(&ItemId(id)).is_some() {
                out.push((ItemId(id), MemberId(author), size));
                if out.len() >= MAX_CLIP_REFS {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Live items whose id starts with the hex digits `prefix` (any case; anything but
    /// hex digits matches nothing), at most `most` of them. Found in the in-memory index
    /// (a pass over it, no sled reads), then each read at its place in `records`: no pass
    /// over the store.
    pub fn items_with_prefix(
        &self,
        prefix: &str,
        most: usize,
    ) -> Result<Vec<(ItemId, ItemRecord)>, StoreError> {
        let Some(nibbles) = prefix
            .chars()
            .map(|c| c.to_digit(16).map(|d| d as u8))
            .collect::<Option<Vec<u8>>>()
            .filter(|n| n.len() <= 64)
        else {
            return Ok(Vec::new());
        };
        let starts = |bytes: &[u8]| {
            nibbles.iter().enumerate().all(|(i, n)| {
                bytes
                    .get(i / 2)
                    .is_some_and(|b| if i % 2 == 0 { b >> 4 } else { b & 0xf } == *n)
            })
        };
        // The index holds 16 of an id's 32 bytes: match on those, then on the whole id.
        let key_digits = nibbles.len().min(32);
        let candidates: Vec<(Key, u64)> = self
            .index()
            .ids
            .iter()
            .filter(|(k, s)| {
                s.created_at != TOMB
                    && nibbles[..key_digits].iter().enumerate().all(|(i, n)| {
                        (if i % 2 == 0 {
                            k[i / 2] >> 4
                        } else {
                            k[i / 2] & 0xf
                        }) == *n
                    })
            })
            .map(|(k, s)| (*k, s.created_at))
            .take(most)
            .collect();
        let mut out = Vec::new();
        for (k, created_at) in candidates {
            let mut at = [0u8; 24];
            at[..8].copy_from_slice(&created_at.to_be_bytes());
            at[8..].copy_from_slice(&k);
            for entry in self.records.scan_prefix(at) {
                let (key, value) = entry?;
                let (created_at, id) = parse_time_key(&key, "record key")?;
                if starts(&id.0) && self.live_at(&id) == Some(created_at) {
                    out.push((id, decode::<ItemRecord>(&value, "item record")?));
                }
            }
        }
        out.truncate(most);
        Ok(out)
    }

    /// Live items, oldest first by creation time (then id).
    pub fn items(&self) -> Result<Vec<(ItemId, ItemRecord)>, StoreError> {
        self.each_item().collect()
    }

    /// The creation time of the newest item held (the last key of `records`).
    pub fn newest_created_at(&self) -> Result<Option<u64>, StoreError> {
        match self.records.last()? {
            None => Ok(None),
            Some((key, _)) => Ok(Some(parse_time_key(&key, "record key")?.0)),
        }
    }

    /// When the newest record (by creation time) was received: one read at the tree's
    /// right edge, not a pass.
    pub fn last_received(&self) -> Option<u64> {
        let (_, v) = self.records.last().ok()??;
        decode::<ItemRecord>(&v, "item record")
            .ok()
            .map(|r| r.received_at)
    }

    /// Each author's newest item's creation time, among the items live when the store
    /// was opened and every item stored since (kept in memory; no pass over the store).
    pub fn latest_by_author(&self) -> HashMap<MemberId, u64> {
        self.index().latest.clone()
    }

    /// How many live items the store holds (kept in memory; no pass over the store).
    pub fn item_count(&self) -> usize {
        self.index().live
    }

    /// Checks that the trees and the in-memory index agree: every record decodes and is
    /// filed under its creation time; a live one has its expiry entry, carrying the
    /// record's author, time and inner item id (a record a crash left before its expiry
    /// entry is not live, is hidden, and is not a disagreement); every expiry entry has
    /// its record and is live in the index; no live item has a tombstone; every op has its sync entry and every sync
    /// entry its op. Returns what disagrees (empty when consistent). Used after crashes.
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        for entry in self.records.iter() {
            let (k, v) = entry?;
            let Ok((created_at, id)) = parse_time_key(&k, "record key") else {
                problems.push(format!("record key of {} bytes", k.len()));
                continue;
            };
            let Ok(record) = decode::<ItemRecord>(&v, "item record") else {
                problems.push(format!("item {id} does not decode"));
                continue;
            };
            if created_at != record.created_at {
                problems.push(format!("item {id} is filed under another time"));
            }
            // A record a crash left before its expiry entry was written is not live: it
            // is hidden and deleted by the expiry pass, not a disagreement.
            if self.live_at(&id) != Some(created_at) {
                continue;
            }
            match self.expiry.get(expiry_key(record.expires_at, &id))? {
                None => problems.push(format!("item {id} has no expiry entry")),
                Some(v) => match parse_live(&expiry_key(record.expires_at, &id), &v) {
                    Ok((live, item))
                        if live.author == record.author
                            && live.created_at == record.created_at
                            && item == OpId::of(&record.item) => {}
                    _ => problems.push(format!("item {id}'s expiry entry does not match it")),
                },
            }
        }
        let mut live = 0usize;
        for entry in self.expiry.iter() {
            let (k, v) = entry?;
            let Ok((entry, _)) = parse_live(&k, &v) else {
                problems.push(format!("expiry entry of {} + {} bytes", k.len(), v.len()));
                continue;
            };
            live += 1;
            let id = entry.id;
            if !self
                .records
                .contains_key(expiry_key(entry.created_at, &id))?
            {
                problems.push(format!("expiry entry without item {id}"));
            }
            if self.index().live_times(&id.0) != Some((entry.expires_at, entry.created_at)) {
                problems.push(format!("item {id} is not live in the index"));
            }
        }
        for key in self.tombs.iter().keys() {
            let key = key?;
            match parse_tomb(&key) {
                Ok((_, TOMB_ID, id)) if self.index().live_times(&id).is_some() => {
                    problems.push(format!("live item {} has a tombstone", codec_hex(&id)));
                }
                Ok(_) => {}
                Err(_) => problems.push(format!("tombstone key of {} bytes", key.len())),
            }
        }
        if self.item_count() != live {
            problems.push(format!(
                "the index counts {} live items, the expiry index {live}",
                self.item_count()
            ));
        }
        let op_keys: std::collections::HashSet<[u8; 32]> = self
            .sync
            .iter()
            .filter_map(|e| match e {
                Ok((k, v)) if v.as_ref() == [SYNC_OP] => k.get(8..)?.try_into().ok(),
                _ => None,
            })
            .collect();
        for entry in self.ops.iter() {
            let (k, _) = entry?;
            match <[u8; 32]>::try_from(k.as_ref()) {
                Ok(id) if op_keys.contains(&id) => {}
                _ => problems.push(format!("op {} has no sync entry", codec_hex(&k))),
            }
        }
        for entry in self.sync.iter() {
            let (k, v) = entry?;
            match (k.get(8..), v.as_ref()) {
                (Some(id), [SYNC_OP]) if k.len() == 40 => {
                    if !self.ops.contains_key(id)? {
                        problems.push(format!("sync entry without op {}", codec_hex(id)));
                    }
                }
                _ => problems.push(format!("sync entry of {} bytes", k.len())),
            }
        }
        Ok(problems)
    }

    /// Deletes every item that expired at or before `now`, forgets tombstones whose time
    /// is past, and deletes records a crash left without their expiry entry once they are
    /// older than any lifetime. Returns how many items were deleted.
    pub fn expire(&self, now: u64) -> Result<usize, StoreError> {
        self.write(|| -> Result<usize, StoreError> {
            let mut deleted = 0;
            let end = expiry_key(now, &ItemId([0xff; 32]));
            let due: Vec<(sled::IVec, sled::IVec)> = self
                .expiry
                .range(..=end.as_slice())
                .collect::<Result<_, _>>()?;
            for (key, value) in due {
                let Ok((entry, item)) = parse_live(&key, &value) else {
                    tracing::warn!(key = %codec_hex(&key), "skipping a damaged expiry entry");
                    continue;
                };
                let live = self.index().live_times(&entry.id.0);
                // The expiry entry first, so the item stops being live; then its record. A
                // crash in between leaves a record that is not live: hidden, and swept below
                // once older than any lifetime. (The other order left an item that counted as
                // live, was offered to sync, and could not be read.)
                self.expiry.remove(&key)?;
                // A stale second entry for an id stored again with another expiry shares the
                // live copy's record: that record stays.
                let shared =
                    matches!(live, Some((e, c)) if c == entry.created_at && e != entry.expires_at);
                if !shared {
                    let record = self
                        .records
                        .remove(expiry_key(entry.created_at, &entry.id))?;
                    self.forget_clips(&entry.id, record.as_deref())?;
                }
                let mut ix = self.index();
                if ix.expired(&entry.id.0, entry.expires_at, entry.created_at) {
                    deleted += 1;
                }
                ix.forget_item(&item.0, now);
            }
            // Tombstones kept until before now.
            let stale: Vec<sled::IVec> = self
                .tombs
                .range(..tomb_key(now, 0, &[0; 32]).as_slice())
                .keys()
                .collect::<Result<_, _>>()?;
            for key in stale {
                let Ok((_, kind, id)) = parse_tomb(&key) else {
                    tracing::warn!(key = %codec_hex(&key), "skipping a damaged tombstone");
                    continue;
                };
                self.tombs.remove(&key)?;
                let mut ix = self.index();
                match kind {
                    TOMB_ID => ix.forget_tomb(&id, now),
                    _ => ix.forget_item(&id, now.saturating_sub(1)),
                }
            }
            // Every live item expires at most `MAX_TTL_SECS` after its creation, so a record
            // older than that is one a crash left without its expiry entry.
            if let Some(before) = now.checked_sub(u64::from(MAX_TTL_SECS)) {
                let orphans: Vec<sled::IVec> = self
                    .records
                    .range(..expiry_key(before, &ItemId([0; 32])).as_slice())
                    .keys()
                    .collect::<Result<_, _>>()?;
                for key in orphans {
                    let Ok((created_at, id)) = parse_time_key(&key, "record key") else {
                        continue;
                    };
                    if self.live_at(&id) != Some(created_at) {
                        let record = self.records.remove(&key)?;
                        if self.live_at(&id).is_none() {
                            self.forget_clips(&id, record.as_deref())?;
                        }
                    }
                }
            }
            Ok(deleted)
        })
    }

    /// Queues an envelope for publishing.
    pub fn push_outbox(&self, envelope: &[u8]) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            if self.outbox.len() >= MAX_OUTBOX {
                return Err(StoreError::OutboxFull);
            }
            let seq = self.db.generate_id()?;
            self.outbox.insert(seq.to_be_bytes(), envelope)?;
            Ok(())
        })
    }

    /// How many envelopes wait in the outbox (no read of them).
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Waiting envelopes, oldest first, with their queue keys.
    pub fn outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.outbox.iter() {
            let (k, v) = entry?;
            let seq: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("outbox"))?;
            out.push((u64::from_be_bytes(seq), v.to_vec()));
        }
        Ok(out)
    }

    pub fn pop_outbox(&self, seq: u64) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.outbox.remove(seq.to_be_bytes())?;
            Ok(())
        })
    }

    pub fn remember_peer(&self, peer: &[u8], addrs: &[String]) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.peers
                .insert(peer, porchlight_proto::codec::encode(&addrs))?;
            Ok(())
        })
    }

    /// Remembers that `member` was connected or active at `at` (the later time stays).
    pub fn remember_seen(&self, member: &MemberId, at: u64) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.seen_at.fetch_and_update(member.0, |old| {
                let old = old.and_then(|v| u64_at(v, 0)).unwrap_or(0);
                Some(old.max(at).to_be_bytes().to_vec())
            })?;
            Ok(())
        })
    }

    /// When each member was last seen, as [`Store::remember_seen`] kept it.
    pub fn seen_times(&self) -> Result<HashMap<MemberId, u64>, StoreError> {
        let mut out = HashMap::new();
        for entry in self.seen_at.iter() {
            let (k, v) = entry?;
            let (Some(member), Some(at)) = (id_at(&k, 0), u64_at(&v, 0)) else {
                return Err(StoreError::Corrupt("last-seen entry"));
            };
            out.insert(MemberId(member), at);
        }
        Ok(out)
    }

    pub fn peers(&self) -> Result<Vec<PeerEntry>, StoreError> {
        let mut out = Vec::new();
        for entry in self.peers.iter() {
            let (k, v) = entry?;
            out.push((k.to_vec(), decode(&v, "peer addresses")?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
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
}
