//! The `keys` tree: epoch keys, and the key ring built from them.

use super::*;

impl Store {
    pub fn put_key(&self, generation: u64, key: &EpochKey) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            let mut v = [0u8; 40];
            v[..8].copy_from_slice(&generation.to_be_bytes());
            v[8..].copy_from_slice(key.secret());
            self.keys.insert(key.id().0, &v[..])?;
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
}
