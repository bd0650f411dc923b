//! Opening a store of an older format: formats 1 and 2 are migrated to 3 in place.

use super::*;

impl Store {
    /// Brings a format 1 or 2 store to this format. Safe to interrupt: it writes the new
    /// entries, flushes, records the format, and only then drops the old trees; run
    /// again, it redoes the same writes.
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
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
}
