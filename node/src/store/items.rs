//! The `records` and `expiry` trees and the in-memory index of seen ids: storing,
//! finding (by id, by id prefix, by time) and removing items.

use super::*;

impl Store {
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
    pub(super) fn live_at(&self, id: &ItemId) -> Option<u64> {
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
            // An ack's author is a one-time key (`seen`): no member to have seen.
            if record.kind != porchlight_proto::Kind::Seen {
                ix.saw_author(record.author, record.created_at);
            }
            Ok(())
        })
    }

    /// The writes of [`Store::put_item`]: record, then expiry entry.
    pub(super) fn write_item(
        &self,
        id: &ItemId,
        item: &OpId,
        record: &ItemRecord,
    ) -> Result<(), StoreError> {
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
}
