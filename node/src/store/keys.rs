//! The `keys` tree: epoch keys, and the key ring built from them.

use super::*;

/// The tree of epoch ids whose keys were deleted for good.
const FORGOTTEN_KEYS: &str = "forgotten_keys";

impl Store {
    /// Stores an epoch key, or replaces its state after the ratchet moved on (the old
    /// chain value is overwritten: see `docs/threat-model.md` on what sled's log keeps).
    pub fn put_key(&self, key: &EpochKey) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.keys.insert(key.id().0, key.to_stored().as_slice())?;
            Ok(())
        })
    }

    /// Deletes an epoch key for good. Its wrap stays in the membership log, which would
    /// hand it back at the next operation or restart (`Engine::learn_keys`), so its id is
    /// kept (at most one per epoch the roster defines) and a key with it is refused.
    /// The id first: a crash between the two leaves the key to the next expiry pass.
    pub fn forget_key(&self, epoch: &EpochId) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.db
                .open_tree(FORGOTTEN_KEYS)?
                .insert(epoch.0, &[][..])?;
            self.keys.remove(epoch.0)?;
            Ok(())
        })
    }

    /// The epochs whose keys were deleted for good.
    pub fn forgotten_keys(&self) -> Result<std::collections::HashSet<EpochId>, StoreError> {
        self.db
            .open_tree(FORGOTTEN_KEYS)?
            .iter()
            .keys()
            .map(|k| {
                let id: [u8; 32] = k?
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("forgotten epoch id"))?;
                Ok(EpochId(id))
            })
            .collect()
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
