//! The `peers` and `seen_at` trees: remembered addresses and when each member was last
//! seen.

use super::*;

impl Store {
    pub fn remember_peer(&self, peer: &[u8], addrs: &[String]) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.peers
                .insert(peer, porchlight_proto::codec::encode(&addrs))?;
            Ok(())
        })
    }

    /// Remembers that `member` was connected or active at `at` (the later time stays).
    pub fn remember_seen(&self, member: &MemberId, at: u64) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.seen_at.fetch_and_update(member.0, |old| {
                let old = old.and_then(|v| u64_at(v, 0)).unwrap_or(0);
                Some(old.max(at).to_be_bytes().to_vec())
            })?;
            Ok(())
        })
    }

    /// When each member was last seen, as [`Store::remember_seen`] kept it.
    pub fn seen_times(&self) -> Result<HashMap<MemberId, u64>, StoreError> {
        let mut out = HashMap::new();
        for entry in self.seen_at.iter() {
            let (k, v) = entry?;
            let (Some(member), Some(at)) = (id_at(&k, 0), u64_at(&v, 0)) else {
                return Err(StoreError::Corrupt("last-seen entry"));
            };
            out.insert(MemberId(member), at);
        }
        Ok(out)
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
