//! The expiry pass (`expire`: expired items and tombstones go) and the consistency
//! check (`verify`) over the trees.

use super::*;

impl Store {
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
}
