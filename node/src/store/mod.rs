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

mod clips;
mod exchange;
mod expiry;
mod index;
mod items;
mod keys;
mod meta;
mod migrate;
mod ops;
mod outbox;
mod peers;

pub use exchange::ExchangeRecord;

use self::clips::{clip_key, clip_refs};
use self::index::Index;

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
}

#[cfg(test)]
mod tests;
