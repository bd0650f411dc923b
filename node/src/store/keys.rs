//! The `keys` tree: epoch keys, and the key ring built from them.

use super::*;

impl Store {
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
}
