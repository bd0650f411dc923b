//! The member's key file in the data dir: `identity.key`, 64 bytes (ed25519 secret, then
//! X25519 secret), mode 0600, created on first run.

use std::io::Write;
use std::path::Path;

use porchlight_proto::MemberKeys;
use zeroize::Zeroizing;

pub const FILE: &str = "identity.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write the key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the key file {0} is damaged (expected 64 bytes)")]
    Damaged(String),
}

/// Loads the member's keys from `dir`, creating them on first run.
pub fn load_or_create(dir: &Path) -> Result<(MemberKeys, bool), IdentityError> {
    let path = dir.join(FILE);
    let io = |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            // Checked on every load, not only when created: a restore from a backup, a
            // copy or a hand-made dir may have left them open to other users.
            owner_only(&path, 0o600).map_err(io)?;
            owner_only(dir, 0o700).map_err(io)?;
            if bytes.len() != 64 {
                return Err(IdentityError::Damaged(path.display().to_string()));
            }
            let mut signing = Zeroizing::new([0u8; 32]);
            let mut exchange = Zeroizing::new([0u8; 32]);
            signing.copy_from_slice(&bytes[..32]);
            exchange.copy_from_slice(&bytes[32..]);
            Ok((MemberKeys::from_secrets(&signing, &exchange), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
            // The data dir holds epoch keys and opened items too: owner only.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io)?;
            }
            let keys = MemberKeys::generate(&mut crate::rng());
            let (signing, exchange) = keys.to_secrets();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&path).map_err(io)?;
            file.write_all(signing.as_ref()).map_err(io)?;
            file.write_all(exchange.as_ref()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok((keys, true))
        }
        Err(e) => Err(io(e)),
    }
}

/// Overwrites the X25519 half of the key file in `dir` with zeros, once a rotation has
/// superseded that exchange secret and nothing wrapped to it is needed
/// (`Engine::first_exchange_retired`): a copy of the data dir taken later does not
/// hold it. The signing half is kept. Returns whether it changed the file. (The
/// filesystem may keep the old block until it is reused: see `docs/threat-model.md` § 5.)
pub fn retire_exchange(dir: &Path) -> Result<bool, IdentityError> {
    use std::io::{Seek, SeekFrom};
    let path = dir.join(FILE);
    let io = |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    };
    let bytes = Zeroizing::new(std::fs::read(&path).map_err(io)?);
    if bytes.len() != 64 {
        return Err(IdentityError::Damaged(path.display().to_string()));
    }
    if bytes[32..].iter().all(|b| *b == 0) {
        return Ok(false);
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io)?;
    file.seek(SeekFrom::Start(32)).map_err(io)?;
    file.write_all(&[0u8; 32]).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(true)
}

/// Takes group and other permissions off `path` (to at most `mode`), with a warning,
/// if it has any.
#[cfg(unix)]
fn owner_only(path: &Path, mode: u32) -> Result<(), std::io::Error> {
    use std::os::unix::fs::PermissionsExt;
    let now = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if now & 0o077 == 0 {
        return Ok(());
    }
    tracing::warn!(
        path = %path.display(),
        mode = %format!("{now:o}"),
        "other users could read this: made it owner-only ({mode:o})"
    );
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(now & mode))
}

#[cfg(not(unix))]
fn owner_only(_: &Path, _: u32) -> Result<(), std::io::Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_exchange_secret_leaves_the_key_file_and_the_identity_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = load_or_create(dir.path()).unwrap();
        let secret = *keys.first_exchange_secret().bytes();
        assert!(retire_exchange(dir.path()).unwrap());
        let file = std::fs::read(dir.path().join(FILE)).unwrap();
        assert!(!file.windows(32).any(|w| w == secret));
        let (again, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(again.id(), keys.id());
        assert!(!again.has_exchange());
        assert!(!retire_exchange(dir.path()).unwrap());
    }

    #[test]
    fn keys_are_created_once_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = load_or_create(dir.path()).unwrap();
        assert!(created);
        let (b, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a.id(), b.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn permissions_opened_after_creation_are_closed_again_on_load() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (a, _) = load_or_create(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        std::fs::set_permissions(data.join(FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (b, created) = load_or_create(&data).unwrap();
        assert!(!created);
        assert_eq!(a.id(), b.id());
        assert_eq!(mode(&data.join(FILE)), 0o600);
        assert_eq!(mode(&data), 0o700);
    }

    #[test]
    fn damaged_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"short").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(IdentityError::Damaged(_))
        ));
    }
}
