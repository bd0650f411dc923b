//! The `clips` tree: which live reports reference a clip, by SHA-256.

use super::*;

/// The clips a stored report references, `(SHA-256, size)`; none for other kinds.
pub(super) fn clip_refs(record: &ItemRecord) -> Vec<([u8; 32], u64)> {
    if record.kind != porchlight_proto::Kind::Report {
        return Vec::new();
    }
    match porchlight_proto::item::Item::decode(&record.item).map(|i| i.body()) {
        Ok(Ok(porchlight_proto::item::Body::Report(r))) => {
            r.clips.iter().map(|c| (c.sha256, c.size)).collect()
        }
        _ => Vec::new(),
    }
}

pub(super) fn clip_key(sha256: &[u8; 32], id: &ItemId) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(sha256);
    k[32..].copy_from_slice(&id.0);
    k
}

impl Store {
    /// Deletes the `clips` entries of a record that was just deleted (its bytes).
    pub(super) fn forget_clips(
        &self,
        id: &ItemId,
        record: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let Some(record) = record.and_then(|r| decode::<ItemRecord>(r, "item record").ok()) else {
            return Ok(());
        };
        for (sha256, _) in clip_refs(&record) {
            self.clips.remove(clip_key(&sha256, id))?;
        }
        Ok(())
    }

    /// Fills `clips` from the records once, for a store from before it: one pass over
    /// the records, at the first start of a new version.
    pub(super) fn index_clips(&self) -> Result<(), StoreError> {
        if self.meta.get(CLIPS_INDEXED)?.is_some() {
            return Ok(());
        }
        let mut reports = 0usize;
        for entry in self.each_item() {
            let (id, record) = entry?;
            for (sha256, size) in clip_refs(&record) {
                let mut v = [0u8; 40];
                v[..32].copy_from_slice(&record.author.0);
                v[32..].copy_from_slice(&size.to_be_bytes());
                self.clips.insert(clip_key(&sha256, &id), &v[..])?;
                reports += 1;
            }
        }
        self.meta.insert(CLIPS_INDEXED, &[1])?;
        if reports > 0 {
            tracing::info!(
                references = reports,
                "indexed the clips live reports reference"
            );
        }
        Ok(())
    }

    /// The live reports that reference the clip `sha256`: `(report, author, size)`, at
    /// most `MAX_CLIP_REFS`, from the `clips` tree (no pass over the records).
    pub fn clip_refs(&self, sha256: &[u8; 32]) -> Result<Vec<(ItemId, MemberId, u64)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.clips.scan_prefix(sha256) {
            let (k, v) = entry?;
            let (Some(id), Some(author), Some(size)) =
                (id_at(&k, 32), id_at(&v, 0), u64_at(&v, 32))
            else {
                return Err(StoreError::Corrupt("clip entry"));
            };
            if self.live_at(&ItemId(id)).is_some() {
                out.push((ItemId(id), MemberId(author), size));
                if out.len() >= MAX_CLIP_REFS {
                    break;
                }
            }
        }
        Ok(out)
    }
}
