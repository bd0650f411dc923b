//! Local mute (issue #22): members whose reports, updates, all-clears and retractions
//! this node hides from its feed, its API, its event stream and its MQTT alerts.
//!
//! Local only: nothing is sent, no consensus, nobody is told. The items are still
//! received, validated, stored and synced like any other (so the node's set stays the
//! hood's, and unmuting shows them again); only what this node shows its person changes.
//! Kept in the store's `muted` tree, `MemberId → ()`, at most [`MAX_MUTED`] entries.

use std::collections::HashSet;

use porchlight_proto::MemberId;
use porchlight_proto::limits::MAX_MEMBERS;

use crate::store::{Store, StoreError};

/// Most members one node may mute: as many as a hood may have.
pub const MAX_MUTED: usize = MAX_MEMBERS;

const TREE: &str = "muted";

#[derive(Debug, thiserror::Error)]
pub enum MuteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this node already mutes {MAX_MUTED} members; unmute someone first")]
    Full,
}

/// The members this node mutes.
pub fn muted(store: &Store) -> Result<HashSet<MemberId>, MuteError> {
    let tree = store.open_tree(TREE)?;
    let mut out = HashSet::new();
    for entry in tree.iter().take(MAX_MUTED) {
        let (key, _) = entry.map_err(StoreError::from)?;
        if let Ok(bytes) = <[u8; 32]>::try_from(key.as_ref()) {
            out.insert(MemberId(bytes));
        }
    }
    Ok(out)
}

/// Mutes (`true`) or unmutes `member`, durably; returns whether anything changed.
pub async fn set(store: &Store, member: &MemberId, mute: bool) -> Result<bool, MuteError> {
    let tree = store.open_tree(TREE)?;
    let changed = if mute {
        if !tree.contains_key(member.0).map_err(StoreError::from)? && tree.len() >= MAX_MUTED {
            return Err(MuteError::Full);
        }
        tree.insert(member.0, &[] as &[u8])
            .map_err(StoreError::from)?
            .is_none()
    } else {
        tree.remove(member.0).map_err(StoreError::from)?.is_some()
    };
    tree.flush_async().await.map_err(StoreError::from)?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mute_is_kept_across_a_reopen_and_unmute_takes_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (a, b) = (MemberId([1; 32]), MemberId([2; 32]));
        {
            let store = Store::open(&path).unwrap();
            assert!(set(&store, &a, true).await.unwrap());
            assert!(
                !set(&store, &a, true).await.unwrap(),
                "twice changes nothing"
            );
            assert!(set(&store, &b, true).await.unwrap());
            assert!(set(&store, &b, false).await.unwrap());
            assert!(!set(&store, &b, false).await.unwrap());
        }
        // sled lets go of the lock from a background thread a moment after the handle.
        let mut store = None;
        for _ in 0..200 {
            match Store::open(&path) {
                Ok(s) => {
                    store = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        let store = store.expect("the store reopens within 10 s");
        assert_eq!(muted(&store).unwrap(), HashSet::from([a]));
    }
}
