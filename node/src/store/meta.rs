//! The `meta` tree: the hood id and the checkpoint a roster started from.

use super::*;

impl Store {
    pub fn hood(&self) -> Result<Option<HoodId>, StoreError> {
        match self.meta.get(HOOD)? {
            None => Ok(None),
            Some(v) => {
                // Stores from before protocol 2 have no protocol key.
                match self.meta.get(PROTOCOL_KEY)?.as_deref() {
                    Some([p]) if *p == PROTOCOL => {}
                    Some([p]) => return Err(StoreError::OldProtocol(*p)),
                    Some(_) => return Err(StoreError::Corrupt("protocol version")),
                    None => return Err(StoreError::OldProtocol(1)),
                }
                let bytes: [u8; 32] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("hood id"))?;
                Ok(Some(HoodId(bytes)))
            }
        }
    }

    pub fn set_hood(&self, hood: &HoodId) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.meta.insert(PROTOCOL_KEY, &[PROTOCOL])?;
            self.meta.insert(HOOD, &hood.0)?;
            Ok(())
        })
    }

    /// The encoded checkpoint the roster starts from, if its history is still arriving.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(CHECKPOINT_KEY)?.map(|v| v.to_vec()))
    }

    /// Records (or, with `None`, forgets) the checkpoint the roster starts from.
    pub fn set_checkpoint(&self, checkpoint: Option<&[u8]>) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            match checkpoint {
                Some(bytes) => self.meta.insert(CHECKPOINT_KEY, bytes)?,
                None => self.meta.remove(CHECKPOINT_KEY)?,
            };
            Ok(())
        })
    }
}
