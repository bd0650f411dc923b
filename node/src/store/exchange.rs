//! The `exchange` tree: the member's exchange secrets (issue #20, rotating exchange
//! keys), `public key (32) → secret (32) ‖ made_at (u64 BE) ‖ superseded_at (u64 BE,
//! u64::MAX while not superseded)`. An old secret is removed once what was wrapped to it
//! was opened (`Engine::retire_exchange`); the overwritten bytes may survive in sled's
//! log segments until sled reuses that space (as for epoch keys).

use porchlight_proto::{ExchangeKey, ExchangeSecret};

use super::*;

const EXCHANGE: &str = "exchange";

/// One exchange secret the member holds.
#[derive(Debug, Clone)]
pub struct ExchangeRecord {
    pub secret: ExchangeSecret,
    pub made_at: u64,
    /// When this node first saw the roster give the member another key.
    pub superseded_at: Option<u64>,
}

impl Store {
    pub fn put_exchange(&self, record: &ExchangeRecord) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(48);
        value.extend_from_slice(record.secret.bytes());
        value.extend_from_slice(&record.made_at.to_be_bytes());
        value.extend_from_slice(&record.superseded_at.unwrap_or(u64::MAX).to_be_bytes());
        let value = zeroize::Zeroizing::new(value);
        self.write(|| -> Result<(), StoreError> {
            self.db
                .open_tree(EXCHANGE)?
                .insert(record.secret.public().0, value.as_slice())?;
            Ok(())
        })
    }

    pub fn forget_exchange(&self, key: &ExchangeKey) -> Result<(), StoreError> {
        self.write(|| -> Result<(), StoreError> {
            self.db.open_tree(EXCHANGE)?.remove(key.0)?;
            Ok(())
        })
    }

    /// Every exchange secret stored, oldest first (by `made_at`).
    pub fn exchange_secrets(&self) -> Result<Vec<ExchangeRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.open_tree(EXCHANGE)?.iter() {
            let (_, v) = entry?;
            if v.len() != 48 {
                return Err(StoreError::Corrupt("exchange secret"));
            }
            let mut secret = zeroize::Zeroizing::new([0u8; 32]);
            secret.copy_from_slice(&v[..32]);
            let u64_at = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v[i..i + 8]);
                u64::from_be_bytes(b)
            };
            let superseded = u64_at(40);
            out.push(ExchangeRecord {
                secret: ExchangeSecret::from_bytes(&secret),
                made_at: u64_at(32),
                superseded_at: (superseded != u64::MAX).then_some(superseded),
            });
        }
        out.sort_by_key(|r| r.made_at);
        Ok(out)
    }

    /// The raw bytes of every record of the `exchange` tree, for tests that scan the
    /// store for key material.
    pub fn exchange_records(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.db
            .open_tree(EXCHANGE)?
            .iter()
            .values()
            .map(|v| Ok(v?.to_vec()))
            .collect()
    }
}

impl Store {
    /// Every key and value of every tree of the store, for tests that scan the whole
    /// store for key material.
    pub fn all_bytes(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for name in self.db.tree_names() {
            for entry in self.db.open_tree(name)?.iter() {
                let (k, v) = entry?;
                out.push(k.to_vec());
                out.push(v.to_vec());
            }
        }
        Ok(out)
    }
}
