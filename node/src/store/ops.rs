//! The `ops` tree (membership operations) and the `sync` tree (the operations' part of
//! the sync set), with the generation that moves with every change of the sync set.

use super::*;

impl Store {
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
}
