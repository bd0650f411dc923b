//! The `outbox` tree: envelopes posted but not yet handed to a peer (`MAX_OUTBOX`).

use super::*;

impl Store {
    /// Queues an envelope for publishing.
    pub fn push_outbox(&self, envelope: &[u8]) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            if self.outbox.len() >= MAX_OUTBOX {
                return Err(StoreError::OutboxFull);
            }
            let seq = self.db.generate_id()?;
            self.outbox.insert(seq.to_be_bytes(), envelope)?;
            Ok(())
        })
    }

    /// How many envelopes wait in the outbox (no read of them).
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
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
        self.write(|| -> Result<(), StoreError> {
            self.outbox.remove(seq.to_be_bytes())?;
            Ok(())
        })
    }
}
