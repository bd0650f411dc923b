//! The node's storage: one `Store` over sled, so the storage engine lives in this file.
//!
//! Trees (store format 2, see `FORMAT`):
//! - `meta`: the hood id, the store format, and small settings.
//! - `ops`: membership operations, `OpId → item bytes`. Never expire.
//! - `keys`: epoch keys, `EpochId → generation (u64 BE) ‖ key (32)`.
//! - `records`: live items, `created_at (u64 BE) ‖ ItemId → ItemRecord` (postcard). Keyed
//!   by time, not by id, so that new items are appended at the right edge of the tree:
//!   with random keys every insert touched a random leaf of a tree far larger than the
//!   page cache, and ingest paid for reading leaves back in (docs/performance.md).
//! - `seen`: every envelope id accepted, `ItemId → keep until (u64 BE) [‖ created_at (u64
//!   BE)]`. A 16-byte value is a live item and says where its record is (the id index);
//!   an 8-byte value is a tombstone, so a replay is dropped even after the item expired or
//!   was retracted, until the time it holds.
//! - `seen_items`: the same for inner item ids (`OpId`), so the same signed item
//!   re-sealed in a new envelope (new nonce, new envelope id) is a replay too.
//! - `sync`: the operations in the set catch-up sync reconciles, `created_at (u64 BE) ‖
//!   OpId → 0`. (Format 1 also listed every item here; format 2 takes the items' part of
//!   the set from `expiry`, one write less per item.)
//! - `expiry`: the time index, `expires_at (u64 BE) ‖ ItemId → author (32) ‖ created_at
//!   (u64 BE)`: what the expiry pass deletes, the items' part of the sync set, and all
//!   the rate limiter needs at startup, so a restart reads this small tree instead of
//!   every record.
//! - `outbox`: envelopes posted but not yet handed to a peer, `seq (u64 BE) → bytes`.
//! - `peers`: remembered peer addresses, `peer id bytes → address list (postcard)`.
//!
//! An item's writes go records, expiry, then its `seen` index entry last, so an
//! item reachable by id has all its entries (`Store::verify` checks this after crashes).
//! Every write that the caller acknowledges to a person goes through [`Store::flush`].

use std::path::Path;

use porchlight_proto::keys::EpochKey;
use porchlight_proto::{HoodId, ItemId, KeyRing, MemberId, OpId};
use serde::{Deserialize, Serialize};

/// sled's page cache: small enough for a Raspberry Pi. At 100,000 items the node's resident
/// size is 69 MiB with 8 MiB here and 78 MiB with 16, and ingest about 3 % slower (see
/// docs/performance.md, memory and ingest).
pub const CACHE_BYTES: u64 = 8 * 1024 * 1024;
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
    seen: sled::Tree,
    seen_items: sled::Tree,
    sync: sled::Tree,
    outbox: sled::Tree,
    peers: sled::Tree,
    /// Live items, counted at open from the `seen` index and kept since.
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// A live item as the expiry index holds it: enough to rebuild the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEntry {
    pub id: ItemId,
    pub author: MemberId,
    pub created_at: u64,
    pub expires_at: u64,
}

const HOOD: &[u8] = b"hood";
const FORMAT_KEY: &[u8] = b"format";
/// The store format this code writes. 1 (no `format` key) kept records in a tree
/// `items` keyed by id; `Store::open` migrates it.
pub const FORMAT: u8 = 2;
const SYNC_OP: u8 = 0;
const SYNC_ITEM: u8 = 1;

fn codec_hex(bytes: &[u8]) -> String {
    porchlight_proto::codec::hex(bytes)
}

fn expiry_key(expires_at: u64, id: &ItemId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&expires_at.to_be_bytes());
    k[8..].copy_from_slice(&id.0);
    k
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

    /// [`Store::open`] with another page cache size (for measuring what it costs).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
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
            seen: db.open_tree("seen")?,
            seen_items: db.open_tree("seen_items")?,
            sync: db.open_tree("sync")?,
            outbox: db.open_tree("outbox")?,
            peers: db.open_tree("peers")?,
            count: Default::default(),
            db,
        };
        store.migrate()?;
        let mut live = 0;
        for value in store.seen.iter().values() {
            if value?.len() == 16 {
                live += 1;
            }
        }
        store
            .count
            .store(live, std::sync::atomic::Ordering::Relaxed);
        Ok(store)
    }

    /// Brings a format 1 store (records keyed by id in `items`) to this format. Safe to
    /// interrupt: it writes the new entries, flushes, records the format, and only then
    /// drops the old tree; run again, it redoes the same writes.
    fn migrate(&self) -> Result<(), StoreError> {
        let old_name: &[u8] = b"items";
        let has_old = self.db.tree_names().iter().any(|n| n.as_ref() == old_name);
        match self.meta.get(FORMAT_KEY)? {
            Some(v) if v.as_ref() == [FORMAT] => {
                // A crash after the format was recorded, before the old tree was dropped.
                if has_old {
                    self.db.drop_tree(old_name)?;
                }
                return Ok(());
            }
            Some(_) => return Err(StoreError::Corrupt("store format is newer than this build")),
            None => {}
        }
        if has_old {
            let old = self.db.open_tree(old_name)?;
            let mut moved = 0usize;
            for entry in old.iter() {
                let (k, v) = entry?;
                let id: [u8; 32] = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("item id"))?;
                let record: ItemRecord = decode(&v, "item record")?;
                self.write_item(&ItemId(id), &record)?;
                moved += 1;
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
            self.db.drop_tree(old_name)?;
            tracing::info!(items = moved, "store migrated to format {FORMAT}");
        } else {
            self.meta.insert(FORMAT_KEY, &[FORMAT])?;
        }
        Ok(())
    }

    /// Makes every write so far durable. Call before acknowledging.
    pub async fn flush(&self) -> Result<(), StoreError> {
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
                let bytes: [u8; 32] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("hood id"))?;
                Ok(Some(HoodId(bytes)))
            }
        }
    }

    pub fn set_hood(&self, hood: &HoodId) -> Result<(), StoreError> {
        self.meta.insert(HOOD, &hood.0)?;
        Ok(())
    }

    pub fn put_op(&self, id: &OpId, created_at: u64, item_bytes: &[u8]) -> Result<(), StoreError> {
        self.ops.insert(id.0, item_bytes)?;
        self.sync
            .insert(expiry_key(created_at, &ItemId(id.0)), &[SYNC_OP])?;
        Ok(())
    }

    /// The op's signed item bytes.
    pub fn op(&self, id: &OpId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.ops.get(id.0)?.map(|v| v.to_vec()))
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

    pub fn put_key(&self, generation: u64, key: &EpochKey) -> Result<(), StoreError> {
        let mut v = [0u8; 40];
        v[..8].copy_from_slice(&generation.to_be_bytes());
        v[8..].copy_from_slice(key.secret());
        self.keys.insert(key.id().0, &v[..])?;
        Ok(())
    }

    pub fn key_ring(&self, hood: &HoodId) -> Result<KeyRing, StoreError> {
        let mut ring = KeyRing::new();
        for entry in self.keys.iter() {
            let (k, v) = entry?;
            if v.len() != 40 || k.len() != 32 {
                return Err(StoreError::Corrupt("epoch key"));
            }
            let mut generation = [0u8; 8];
            generation.copy_from_slice(&v[..8]);
            let mut secret = [0u8; 32];
            secret.copy_from_slice(&v[8..]);
            let key = EpochKey::from_bytes(hood, &secret);
            if key.id().0[..] != k[..] {
                return Err(StoreError::Corrupt("epoch key id"));
            }
            ring.insert(u64::from_be_bytes(generation), key);
        }
        Ok(ring)
    }

    /// Whether this envelope id was accepted before (a live item, or a tombstone that
    /// has not run out yet).
    pub fn seen(&self, id: &ItemId) -> Result<bool, StoreError> {
        Ok(self.seen.contains_key(id.0)?)
    }

    /// Remembers an id so that a replay is dropped; kept until `keep_until`. A live
    /// item's entry is left as it is (it is kept until the item expires).
    pub fn mark_seen(&self, id: &ItemId, keep_until: u64) -> Result<(), StoreError> {
        if self.live_at(id)?.is_none() {
            self.seen.insert(id.0, &keep_until.to_be_bytes())?;
        }
        Ok(())
    }

    pub fn seen_item(&self, id: &OpId) -> Result<bool, StoreError> {
        Ok(self.seen_items.contains_key(id.0)?)
    }

    /// Remembers an inner item id until `keep_until`.
    pub fn mark_seen_item(&self, id: &OpId, keep_until: u64) -> Result<(), StoreError> {
        self.seen_items.insert(id.0, &keep_until.to_be_bytes())?;
        Ok(())
    }

    /// Where a live item's record is: its `created_at`, from the `seen` index.
    fn live_at(&self, id: &ItemId) -> Result<Option<u64>, StoreError> {
        Ok(self.live_times(id)?.map(|(_, created_at)| created_at))
    }

    /// A live item's `(expires_at, created_at)` from its `seen` index entry; `None` for
    /// a tombstone or an id never seen.
    fn live_times(&self, id: &ItemId) -> Result<Option<(u64, u64)>, StoreError> {
        match self.seen.get(id.0)? {
            Some(v) if v.len() == 16 => {
                let mut e = [0u8; 8];
                e.copy_from_slice(&v[..8]);
                let mut c = [0u8; 8];
                c.copy_from_slice(&v[8..]);
                Ok(Some((u64::from_be_bytes(e), u64::from_be_bytes(c))))
            }
            Some(v) if v.len() == 8 => Ok(None),
            Some(_) => Err(StoreError::Corrupt("seen entry")),
            None => Ok(None),
        }
    }

    /// Stores a live item with its index entries, and marks its id seen until it expires.
    pub fn put_item(&self, id: &ItemId, record: &ItemRecord) -> Result<(), StoreError> {
        if self.write_item(id, record)? {
            self.count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// The writes of [`Store::put_item`]; whether the item is new.
    fn write_item(&self, id: &ItemId, record: &ItemRecord) -> Result<bool, StoreError> {
        let at = expiry_key(record.created_at, id);
        let bytes = porchlight_proto::codec::encode(record);
        let new = self.records.insert(at, bytes)?.is_none();
        let mut live = [0u8; 40];
        live[..32].copy_from_slice(&record.author.0);
        live[32..].copy_from_slice(&record.created_at.to_be_bytes());
        self.expiry
            .insert(expiry_key(record.expires_at, id), &live[..])?;
        let mut index = [0u8; 16];
        index[..8].copy_from_slice(&record.expires_at.to_be_bytes());
        index[8..].copy_from_slice(&record.created_at.to_be_bytes());
        self.seen.insert(id.0, &index[..])?;
        Ok(new)
    }

    pub fn item(&self, id: &ItemId) -> Result<Option<ItemRecord>, StoreError> {
        let Some(created_at) = self.live_at(id)? else {
            return Ok(None);
        };
        self.records
            .get(expiry_key(created_at, id))?
            .map(|v| decode(&v, "item record"))
            .transpose()
    }

    pub fn has_item(&self, id: &ItemId) -> Result<bool, StoreError> {
        Ok(self.live_at(id)?.is_some())
    }

    /// Deletes a live item and its index entries; its id stays seen until the item would
    /// have expired, so sync cannot bring it back.
    ///
    /// The record goes first (so the feed and sync stop showing it), its expiry entry
    /// next, its index entry last; the index entry holds both times, so a removal a
    /// crash interrupted (an index entry left pointing at no record) is finished by the
    /// next call, from the expiry pass. Returns whether a record was deleted.
    pub fn remove_item(&self, id: &ItemId) -> Result<bool, StoreError> {
        let Some((expires_at, created_at)) = self.live_times(id)? else {
            return Ok(false);
        };
        let existed = self.records.remove(expiry_key(created_at, id))?.is_some();
        self.expiry.remove(expiry_key(expires_at, id))?;
        self.seen.insert(id.0, &expires_at.to_be_bytes())?;
        if existed {
            self.count
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(existed)
    }

    /// Deletes every live item by `author` (a removed member); returns how many. Reads
    /// the small expiry index, not the records.
    pub fn remove_items_by(&self, author: &MemberId) -> Result<usize, StoreError> {
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
    }

    /// Every live item's author and times, from the expiry index, soonest expiry first.
    pub fn live(&self) -> impl Iterator<Item = Result<LiveEntry, StoreError>> + '_ {
        self.expiry.iter().filter_map(|entry| {
            let (k, v) = match entry {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            if k.len() != 40 {
                return Some(Err(StoreError::Corrupt("expiry index")));
            }
            // An entry a crash left without its item has no value (format 1) or an
            // item nothing indexes any more: skipped here, deleted by the expiry pass.
            if v.len() != 40 {
                return None;
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&k[..8]);
            let mut id = [0u8; 32];
            id.copy_from_slice(&k[8..]);
            let mut author = [0u8; 32];
            author.copy_from_slice(&v[..32]);
            let mut c = [0u8; 8];
            c.copy_from_slice(&v[32..]);
            Some(Ok(LiveEntry {
                id: ItemId(id),
                author: MemberId(author),
                created_at: u64::from_be_bytes(c),
                expires_at: u64::from_be_bytes(t),
            }))
        })
    }

    /// Every live item, oldest first by creation time, read one at a time: for a pass
    /// over the whole store that must not hold it all in memory at once.
    pub fn each_item(&self) -> impl Iterator<Item = Result<(ItemId, ItemRecord), StoreError>> + '_ {
        self.records.iter().map(|entry| {
            let (k, v) = entry?;
            let id: [u8; 32] = k
                .get(8..)
                .filter(|_| k.len() == 40)
                .and_then(|id| id.try_into().ok())
                .ok_or(StoreError::Corrupt("record key"))?;
            Ok((ItemId(id), decode::<ItemRecord>(&v, "item record")?))
        })
    }

    /// Live items, oldest first by creation time (then id).
    pub fn items(&self) -> Result<Vec<(ItemId, ItemRecord)>, StoreError> {
        self.each_item().collect()
    }

    /// How many live items the store holds (kept in memory; no pass over the store).
    pub fn item_count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks that the indexes agree with the items: every record decodes, is indexed
    /// by its id in `seen` and has its expiry and sync entries; every index entry has its
    /// record; every op has its sync entry. Returns what disagrees (empty when
    /// consistent). Used after crashes.
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        for entry in self.records.iter() {
            let (k, v) = entry?;
            let Some(id) = k
                .get(8..)
                .filter(|_| k.len() == 40)
                .and_then(|id| <[u8; 32]>::try_from(id).ok())
            else {
                problems.push(format!("record key of {} bytes", k.len()));
                continue;
            };
            let id = ItemId(id);
            let Ok(record) = decode::<ItemRecord>(&v, "item record") else {
                problems.push(format!("item {id} does not decode"));
                continue;
            };
            if k[..8] != record.created_at.to_be_bytes() {
                problems.push(format!("item {id} is filed under another time"));
            }
            if self.live_at(&id)? != Some(record.created_at) {
                problems.push(format!("item {id} is not indexed in seen"));
            }
            if !self
                .expiry
                .contains_key(expiry_key(record.expires_at, &id))?
            {
                problems.push(format!("item {id} has no expiry entry"));
            }
        }
        for entry in self.seen.iter() {
            let (k, v) = entry?;
            let Ok(id) = <[u8; 32]>::try_from(k.as_ref()) else {
                problems.push(format!("seen key of {} bytes", k.len()));
                continue;
            };
            match v.len() {
                8 => {}
                16 => {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&v[8..]);
                    let at = expiry_key(u64::from_be_bytes(t), &ItemId(id));
                    if !self.records.contains_key(at)? {
                        problems.push(format!("seen index without item {}", codec_hex(&id)));
                    }
                }
                n => problems.push(format!("seen entry of {n} bytes")),
            }
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
        for entry in self.expiry.iter() {
            let (k, _) = entry?;
            match k.get(8..).and_then(|id| <[u8; 32]>::try_from(id).ok()) {
                Some(id) if k.len() == 40 => {
                    if !self.has_item(&ItemId(id))? {
                        problems.push(format!("expiry entry without item {}", codec_hex(&id)));
                    }
                }
                _ => problems.push(format!("expiry key of {} bytes", k.len())),
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

    /// Deletes every item that expired at or before `now`, and forgets seen ids whose
    /// time is past. Returns how many items were deleted.
    pub fn expire(&self, now: u64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        let end = expiry_key(now, &ItemId([0xff; 32]));
        let due: Vec<(sled::IVec, sled::IVec)> = self
            .expiry
            .range(..=end.as_slice())
            .collect::<Result<_, _>>()?;
        for (key, value) in due {
            let Some(id) = key
                .get(8..)
                .filter(|_| key.len() == 40)
                .and_then(|id| <[u8; 32]>::try_from(id).ok())
            else {
                return Err(StoreError::Corrupt("expiry index"));
            };
            // The item first, its index entries last: a crash in between leaves an
            // index entry without an item (harmless, deleted by the next pass), never an
            // item nothing expires.
            if self.remove_item(&ItemId(id))? {
                deleted += 1;
            } else {
                // No index entry: a crash came between the item's first writes and its
                // index entry. Delete what it left.
                if let Some(created) = value.get(32..40) {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(created);
                    let at = expiry_key(u64::from_be_bytes(t), &ItemId(id));
                    self.records.remove(at)?;
                }
                self.expiry.remove(&key)?;
            }
        }
        for tree in [&self.seen, &self.seen_items] {
            // Only tombstones (8 bytes) run out here; a live item's index entry goes
            // with its item, above.
            let stale: Vec<sled::IVec> = tree
                .iter()
                .filter_map(|e| match e {
                    Ok((k, v)) if v.len() == 8 => {
                        let mut t = [0u8; 8];
                        t.copy_from_slice(&v);
                        (u64::from_be_bytes(t) < now).then_some(Ok(k))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()?;
            for key in stale {
                tree.remove(key)?;
            }
        }
        Ok(deleted)
    }

    /// Queues an envelope for publishing.
    pub fn push_outbox(&self, envelope: &[u8]) -> Result<(), StoreError> {
        if self.outbox.len() >= MAX_OUTBOX {
            return Err(StoreError::OutboxFull);
        }
        let seq = self.db.generate_id()?;
        self.outbox.insert(seq.to_be_bytes(), envelope)?;
        Ok(())
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
        self.outbox.remove(seq.to_be_bytes())?;
        Ok(())
    }

    pub fn remember_peer(&self, peer: &[u8], addrs: &[String]) -> Result<(), StoreError> {
        self.peers
            .insert(peer, porchlight_proto::codec::encode(&addrs))?;
        Ok(())
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

    #[test]
    fn expire_deletes_only_what_is_due_and_forgets_old_seen_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b, c) = (ItemId([1; 32]), ItemId([2; 32]), ItemId([3; 32]));
        store.put_item(&a, &record(100)).unwrap();
        store.put_item(&b, &record(200)).unwrap();
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
        store.put_item(&a, &record(100)).unwrap();
        assert!(store.remove_item(&a).unwrap());
        assert!(!store.remove_item(&a).unwrap());
        assert!(!store.has_item(&a).unwrap());
        assert_eq!(store.item(&a).unwrap(), None);
        assert!(store.seen(&a).unwrap());
        assert_eq!(store.item_count(), 0);
        assert!(store.verify().unwrap().is_empty());
        store.expire(99).unwrap();
        assert!(store.seen(&a).unwrap());
        store.expire(101).unwrap();
        assert!(!store.seen(&a).unwrap());
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
            let store = Store::open(dir.path()).unwrap();
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
    fn a_removal_a_crash_interrupted_is_finished_by_the_expiry_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = ItemId([1; 32]);
        let r = record(100);
        store.put_item(&a, &r).unwrap();
        // As if the process died right after `remove_item`'s first write.
        store.records.remove(expiry_key(r.created_at, &a)).unwrap();
        assert_eq!(store.item(&a).unwrap(), None);
        assert!(!store.verify().unwrap().is_empty());
        store.expire(100).unwrap();
        assert!(store.verify().unwrap().is_empty(), "{:?}", store.verify());
        assert!(!store.has_item(&a).unwrap());
        assert_eq!(store.live().count(), 0);
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_item(&ItemId([1; 32]), &record(100)).unwrap();
            store.meta.insert(FORMAT_KEY, &[FORMAT + 1]).unwrap();
            futures::executor::block_on(store.flush()).unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");
        let db = sled::open(dir.path()).unwrap();
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
    fn a_record_left_without_its_index_by_a_crash_is_deleted_at_its_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = ItemId([1; 32]);
        store.put_item(&a, &record(100)).unwrap();
        // As if the process died before the last write, the index entry.
        store.seen.remove(a.0).unwrap();
        assert!(!store.verify().unwrap().is_empty());
        store.expire(100).unwrap();
        assert!(store.verify().unwrap().is_empty());
        assert!(store.items().unwrap().is_empty());
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
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let hood = HoodId([3; 32]);
        {
            let store = Store::open(dir.path()).unwrap();
            store.set_hood(&hood).unwrap();
            store.put_item(&ItemId([1; 32]), &record(100)).unwrap();
            futures::executor::block_on(store.flush()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.hood().unwrap(), Some(hood));
        assert_eq!(store.item(&ItemId([1; 32])).unwrap(), Some(record(100)));
    }
}
