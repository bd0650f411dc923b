//! The node's storage: one `Store` over sled, so the storage engine lives in this file.
//!
//! Trees:
//! - `meta`: the hood id, and small settings.
//! - `ops`: membership operations, `OpId → item bytes`. Never expire.
//! - `keys`: epoch keys, `EpochId → generation (u64 BE) ‖ key (32)`.
//! - `items`: live items, `ItemId → ItemRecord` (postcard).
//! - `expiry`: the time index, `expires_at (u64 BE) ‖ ItemId → ()`.
//! - `seen`: every envelope id accepted, `ItemId → keep until (u64 BE)`, so a replay is
//!   dropped even after the item itself expired or was retracted.
//! - `seen_items`: the same for inner item ids (`OpId`), so the same signed item
//!   re-sealed in a new envelope (new nonce, new envelope id) is a replay too.
//! - `sync`: the set catch-up sync reconciles, `created_at (u64 BE) ‖ id → kind (1 byte:
//!   0 operation, 1 item)`: every live item by envelope id and every operation by op id.
//! - `outbox`: envelopes posted but not yet handed to a peer, `seq (u64 BE) → bytes`.
//! - `peers`: remembered peer addresses, `peer id bytes → address list (postcard)`.
//!
//! Every write that the caller acknowledges to a person goes through [`Store::flush`].

use std::path::Path;

use porchlight_proto::keys::EpochKey;
use porchlight_proto::{HoodId, ItemId, KeyRing, MemberId, OpId};
use serde::{Deserialize, Serialize};

/// sled's page cache: small enough for a Raspberry Pi. (At 100,000 items a node's resident
/// size was the same with 4, 8 or 16 MiB here: see docs/performance.md, memory.)
pub const CACHE_BYTES: u64 = 16 * 1024 * 1024;
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
    items: sled::Tree,
    expiry: sled::Tree,
    seen: sled::Tree,
    seen_items: sled::Tree,
    sync: sled::Tree,
    outbox: sled::Tree,
    peers: sled::Tree,
}

const HOOD: &[u8] = b"hood";
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
        Ok(Store {
            meta: db.open_tree("meta")?,
            ops: db.open_tree("ops")?,
            keys: db.open_tree("keys")?,
            items: db.open_tree("items")?,
            expiry: db.open_tree("expiry")?,
            seen: db.open_tree("seen")?,
            seen_items: db.open_tree("seen_items")?,
            sync: db.open_tree("sync")?,
            outbox: db.open_tree("outbox")?,
            peers: db.open_tree("peers")?,
            db,
        })
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

    /// Every `(created_at, id)` that catch-up sync reconciles.
    pub fn sync_elements(&self) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        let mut out = Vec::with_capacity(self.sync.len());
        for key in self.sync.iter().keys() {
            let key = key?;
            if key.len() != 40 {
                return Err(StoreError::Corrupt("sync index"));
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&key[..8]);
            let mut id = [0u8; 32];
            id.copy_from_slice(&key[8..]);
            out.push((u64::from_be_bytes(t), id));
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

    pub fn seen(&self, id: &ItemId) -> Result<bool, StoreError> {
        Ok(self.seen.contains_key(id.0)?)
    }

    /// Remembers an id so that a replay is dropped; kept until `keep_until`.
    pub fn mark_seen(&self, id: &ItemId, keep_until: u64) -> Result<(), StoreError> {
        self.seen.insert(id.0, &keep_until.to_be_bytes())?;
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

    pub fn put_item(&self, id: &ItemId, record: &ItemRecord) -> Result<(), StoreError> {
        let bytes = porchlight_proto::codec::encode(record);
        self.items.insert(id.0, bytes)?;
        self.expiry.insert(expiry_key(record.expires_at, id), &[])?;
        self.sync
            .insert(expiry_key(record.created_at, id), &[SYNC_ITEM])?;
        Ok(())
    }

    pub fn item(&self, id: &ItemId) -> Result<Option<ItemRecord>, StoreError> {
        self.items
            .get(id.0)?
            .map(|v| decode(&v, "item record"))
            .transpose()
    }

    pub fn has_item(&self, id: &ItemId) -> Result<bool, StoreError> {
        Ok(self.items.contains_key(id.0)?)
    }

    pub fn remove_item(&self, id: &ItemId) -> Result<bool, StoreError> {
        match self.items.remove(id.0)? {
            None => Ok(false),
            Some(v) => {
                let record: ItemRecord = decode(&v, "item record")?;
                self.expiry.remove(expiry_key(record.expires_at, id))?;
                self.sync.remove(expiry_key(record.created_at, id))?;
                Ok(true)
            }
        }
    }

    /// Deletes every live item by `author` (a removed member); returns how many.
    pub fn remove_items_by(&self, author: &MemberId) -> Result<usize, StoreError> {
        let mut ids = Vec::new();
        for entry in self.items.iter() {
            let (k, v) = entry?;
            let record: ItemRecord = decode(&v, "item record")?;
            if record.author == *author {
                let id: [u8; 32] = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("item id"))?;
                ids.push(ItemId(id));
            }
        }
        for id in &ids {
            self.remove_item(id)?;
        }
        Ok(ids.len())
    }

    /// Every live item in id order, read one at a time: for a pass over the whole store
    /// that must not hold it all in memory at once.
    pub fn each_item(&self) -> impl Iterator<Item = Result<(ItemId, ItemRecord), StoreError>> + '_ {
        self.items.iter().map(|entry| {
            let (k, v) = entry?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("item id"))?;
            Ok((ItemId(id), decode::<ItemRecord>(&v, "item record")?))
        })
    }

    /// Live items, oldest first by creation time.
    pub fn items(&self) -> Result<Vec<(ItemId, ItemRecord)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.items.iter() {
            let (k, v) = entry?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("item id"))?;
            out.push((ItemId(id), decode::<ItemRecord>(&v, "item record")?));
        }
        out.sort_by_key(|(id, r)| (r.created_at, *id));
        Ok(out)
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// Checks that the indexes agree with the items: every item decodes, has its expiry
    /// and sync entries and is marked seen; every expiry and sync entry of an item has
    /// its item. Returns what disagrees (empty when consistent). Used after crashes.
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        for entry in self.items.iter() {
            let (k, v) = entry?;
            let Ok(id) = <[u8; 32]>::try_from(k.as_ref()) else {
                problems.push(format!("item key of {} bytes", k.len()));
                continue;
            };
            let id = ItemId(id);
            let Ok(record) = decode::<ItemRecord>(&v, "item record") else {
                problems.push(format!("item {id} does not decode"));
                continue;
            };
            if !self
                .expiry
                .contains_key(expiry_key(record.expires_at, &id))?
            {
                problems.push(format!("item {id} has no expiry entry"));
            }
            if !self.sync.contains_key(expiry_key(record.created_at, &id))? {
                problems.push(format!("item {id} has no sync entry"));
            }
            if !self.seen.contains_key(id.0)? {
                problems.push(format!("item {id} is not marked seen"));
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
            match k.get(8..) {
                Some(id) if k.len() == 40 => {
                    if !self.items.contains_key(id)? {
                        problems.push(format!("expiry entry without item {}", codec_hex(id)));
                    }
                }
                _ => problems.push(format!("expiry key of {} bytes", k.len())),
            }
        }
        for entry in self.sync.iter() {
            let (k, v) = entry?;
            match (k.get(8..), v.as_ref()) {
                (Some(id), [SYNC_ITEM]) if k.len() == 40 => {
                    if !self.items.contains_key(id)? {
                        problems.push(format!("sync entry without item {}", codec_hex(id)));
                    }
                }
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
        let due: Vec<sled::IVec> = self
            .expiry
            .range(..=end.as_slice())
            .keys()
            .collect::<Result<_, _>>()?;
        for key in due {
            if key.len() != 40 {
                return Err(StoreError::Corrupt("expiry index"));
            }
            // The item first, its index entries last: a crash in between leaves an
            // index entry without an item (harmless), never an item nothing expires.
            if let Some(v) = self.items.remove(&key[8..])? {
                let record: ItemRecord = decode(&v, "item record")?;
                let mut id = [0u8; 32];
                id.copy_from_slice(&key[8..]);
                self.sync
                    .remove(expiry_key(record.created_at, &ItemId(id)))?;
                deleted += 1;
            }
            self.expiry.remove(&key)?;
        }
        for tree in [&self.seen, &self.seen_items] {
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
        let (a, b) = (ItemId([1; 32]), ItemId([2; 32]));
        store.put_item(&a, &record(100)).unwrap();
        store.put_item(&b, &record(200)).unwrap();
        store.mark_seen(&a, 180).unwrap();
        assert_eq!(store.expire(150).unwrap(), 1);
        assert!(!store.has_item(&a).unwrap());
        assert!(store.has_item(&b).unwrap());
        assert!(store.seen(&a).unwrap());
        store.expire(201).unwrap();
        assert!(!store.seen(&a).unwrap());
        assert_eq!(store.item_count(), 0);
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
