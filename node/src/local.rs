//! What the CLI does to a data dir without a running node: create the identity, found a
//! hood. A running node holds the store's lock, so these fail with
//! [`StoreError::Locked`] while one runs for the same data dir.

use std::path::Path;

use porchlight_proto::{HoodId, MemberId, Policy};

use crate::config::{self, ConfigError};
use crate::engine::{Engine, EngineError};
use crate::identity::{self, IdentityError};
use crate::store::{Store, StoreError};

/// The store's directory inside a data dir.
pub const DB_DIR: &str = "db";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("this node is already in the hood {name:?}; use another data dir for another hood")]
    AlreadyInHood { name: String },
    #[error("the name must not be empty")]
    EmptyName,
}

/// The hood a data dir holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoodInfo {
    pub id: HoodId,
    pub name: String,
}

/// This node's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialized {
    pub member: MemberId,
    pub name: String,
    /// False if the identity was already there (then nothing but the name changed).
    pub created: bool,
}

/// Creates the identity (if there is none) and sets the display name in `porchlight.toml`.
pub fn init(data_dir: &Path, name: &str) -> Result<Initialized, LocalError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(LocalError::EmptyName);
    }
    let (keys, created) = identity::load_or_create(data_dir)?;
    config::set_name(data_dir, name)?;
    Ok(Initialized {
        member: keys.id(),
        name: name.to_owned(),
        created,
    })
}

/// The hood in `data_dir`, if it has one.
pub fn hood(data_dir: &Path) -> Result<Option<HoodInfo>, LocalError> {
    if !data_dir.join(DB_DIR).exists() {
        return Ok(None);
    }
    let (keys, _) = identity::load_or_create(data_dir)?;
    let store = Store::open(&data_dir.join(DB_DIR))?;
    Ok(Engine::load(store, keys)?.map(|e| HoodInfo {
        id: e.hood(),
        name: e.roster().name().to_owned(),
    }))
}

/// Founds a hood named `hood_name`, with this node's member as its first admin.
pub async fn create_hood(
    data_dir: &Path,
    hood_name: &str,
    policy: Policy,
) -> Result<HoodInfo, LocalError> {
    let config = config::load(data_dir)?;
    let (keys, _) = identity::load_or_create(data_dir)?;
    let store = Store::open(&data_dir.join(DB_DIR))?;
    if let Some(existing) = Engine::load(store.clone(), keys.clone())? {
        return Err(LocalError::AlreadyInHood {
            name: existing.roster().name().to_owned(),
        });
    }
    let engine = Engine::found(
        store.clone(),
        keys,
        hood_name,
        &config.name,
        policy,
        crate::now(),
        &mut crate::rng(),
    )?;
    store.flush().await?;
    Ok(HoodInfo {
        id: engine.hood(),
        name: engine.roster().name().to_owned(),
    })
}
