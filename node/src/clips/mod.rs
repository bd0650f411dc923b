//! Clips. This file is the library: doorbell clips kept at home under `<data dir>/clips/<sha256 hex>`.
//!
//! A report carries only a clip's SHA-256 and size (`ClipRef`); the bytes stay here until
//! the owner shares them. Import streams the file once: it is hashed while it is copied
//! into a temporary file in the library, which is renamed to its hash only when complete,
//! so the library never holds a partial clip under a valid name.

//!
//! [`sharing`]: the owner's policy and asks, and the requester's fetch.

pub mod sharing;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use porchlight_proto::codec;
use rand_core::Rng;
use sha2::{Digest, Sha256};

pub const DIR: &str = "clips";
/// The largest clip the library takes: a doorbell clip is seconds of video, not hours.
pub const MAX_CLIP_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Read buffer for hashing and copying.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("clip file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("clip file {path} is not a regular file")]
    NotAFile { path: String },
    #[error("clip file {path} is {size} bytes, over the {MAX_CLIP_BYTES}-byte limit")]
    TooLarge { path: String, size: u64 },
    #[error("cannot write to the clip library {path}: {source}")]
    Library {
        path: String,
        source: std::io::Error,
    },
    #[error("no clip with SHA-256 {0} in this node's library")]
    Unknown(String),
}

/// A clip in the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clip {
    pub sha256: [u8; 32],
    pub size: u64,
}

fn library(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

/// Where a clip with this hash lives (whether or not it is there).
pub fn path(data_dir: &Path, sha256: &[u8; 32]) -> PathBuf {
    library(data_dir).join(codec::hex(sha256))
}

/// The clip with this hash, if the library holds it.
pub fn get(data_dir: &Path, sha256: &[u8; 32]) -> Result<Clip, ClipError> {
    match std::fs::metadata(path(data_dir, sha256)) {
        Ok(meta) if meta.is_file() => Ok(Clip {
            sha256: *sha256,
            size: meta.len(),
        }),
        _ => Err(ClipError::Unknown(codec::hex(sha256))),
    }
}

/// What [`import`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub clip: Clip,
    /// False if the library already held these bytes.
    pub new: bool,
}

/// Copies `file` into the library, hashing it on the way; `progress(done, total)` is
/// called after every chunk. Importing the same bytes twice keeps one copy.
pub fn import(
    data_dir: &Path,
    file: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<Imported, ClipError> {
    let read_err = |source| ClipError::Read {
        path: file.display().to_string(),
        source,
    };
    let input = std::fs::File::open(file).map_err(read_err)?;
    let meta = input.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(ClipError::NotAFile {
            path: file.display().to_string(),
        });
    }
    let total = meta.len();
    if total > MAX_CLIP_BYTES {
        return Err(ClipError::TooLarge {
            path: file.display().to_string(),
            size: total,
        });
    }
    copy_in(
        data_dir,
        &file.display().to_string(),
        input,
        total,
        progress,
    )
}

/// Streams a clip from `input` (an HTTP body, a pipe) into the library, hashing it on
/// the way, as [`import`] does for a file; `source` names it in errors. At most
/// [`MAX_CLIP_BYTES`] are read: a longer stream is refused and leaves nothing behind.
pub fn import_reader(
    data_dir: &Path,
    source: &str,
    input: impl Read,
    progress: impl FnMut(u64, u64),
) -> Result<Imported, ClipError> {
    copy_in(data_dir, source, input, 0, progress)
}

/// The one import path: temp file in the library, hash while copying, fsync, rename to
/// the hash. `total` is the expected size for progress (0: unknown).
fn copy_in(
    data_dir: &Path,
    source: &str,
    mut input: impl Read,
    total: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<Imported, ClipError> {
    let read_err = |source_err| ClipError::Read {
        path: source.to_owned(),
        source: source_err,
    };
    let dir = library(data_dir);
    let lib_err = |source| ClipError::Library {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(lib_err)?;
    let mut nonce = [0u8; 8];
    crate::rng().fill_bytes(&mut nonce);
    let temp = dir.join(format!(".import-{}", codec::hex(&nonce)));
    let result = (|| {
        let mut output = std::fs::File::create(&temp).map_err(lib_err)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut done: u64 = 0;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            done = done.saturating_add(n as u64);
            if done > MAX_CLIP_BYTES {
                return Err(ClipError::TooLarge {
                    path: source.to_owned(),
                    size: done,
                });
            }
            hasher.update(chunk);
            output.write_all(chunk).map_err(lib_err)?;
            progress(done, total.max(done));
        }
        output.sync_all().map_err(lib_err)?;
        let sha256: [u8; 32] = hasher.finalize().into();
        let clip = Clip { sha256, size: done };
        let target = path(data_dir, &sha256);
        if target.is_file() {
            let _ = std::fs::remove_file(&temp);
            return Ok(Imported { clip, new: false });
        }
        std::fs::rename(&temp, target).map_err(lib_err)?;
        Ok(Imported { clip, new: true })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Most library entries one listing reads (a library of doorbell clips holds hundreds).
pub const MAX_LISTED: usize = 100_000;

/// Deletes the temp files (`.import-*`, `.fetch-*`) a killed process left in the library.
/// Call at start only, while no import or fetch of this data dir runs. Returns how many.
pub fn sweep_temp(data_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(library(data_dir)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.take(MAX_LISTED).flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if (name.starts_with(".import-") || name.starts_with(".fetch-"))
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// A clip in the library, with when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub clip: Clip,
    pub modified: std::time::SystemTime,
}

/// The library's clips (files named by a hash; temp files are not clips), at most
/// `MAX_LISTED`, in no order.
pub fn list(data_dir: &Path) -> Result<Vec<Listed>, ClipError> {
    let dir = library(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ClipError::Library {
                path: dir.display().to_string(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries.take(MAX_LISTED).flatten() {
        let name = entry.file_name();
        let Some(sha256) = name.to_str().and_then(codec::parse_hex::<32>) else {
            continue;
        };
        // Only the library's own (lowercase) names: what `path` finds.
        if name.to_str() != Some(codec::hex(&sha256).as_str()) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        out.push(Listed {
            clip: Clip {
                sha256,
                size: meta.len(),
            },
            modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
        });
    }
    Ok(out)
}

/// SHA-256 of a file, streamed.
pub fn hash_file(file: &Path) -> Result<[u8; 32], ClipError> {
    let read_err = |source| ClipError::Read {
        path: file.display().to_string(),
        source,
    };
    let mut input = std::fs::File::open(file).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_names_the_clip_by_its_hash_and_keeps_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("doorbell.mp4");
        let bytes: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &bytes).unwrap();
        let mut calls = 0;
        let imported = import(dir.path(), &src, |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .unwrap();
        assert!(imported.new);
        let clip = imported.clip;
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(clip.sha256, expected);
        assert_eq!(clip.size, bytes.len() as u64);
        assert!(calls >= 3, "progress is reported per chunk");
        assert_eq!(std::fs::read(path(dir.path(), &expected)).unwrap(), bytes);
        assert_eq!(hash_file(&src).unwrap(), expected);
        assert_eq!(get(dir.path(), &expected).unwrap(), clip);
        // Again: one copy, same answer, no leftovers.
        let again = import(dir.path(), &src, |_, _| {}).unwrap();
        assert_eq!((again.clip, again.new), (clip, false));
        assert_eq!(std::fs::read_dir(library(dir.path())).unwrap().count(), 1);
    }

    #[test]
    fn import_reader_hashes_a_stream_like_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 13) as u8).collect();
        let imported =
            import_reader(dir.path(), "http://frigate/clip.mp4", &bytes[..], |_, _| {}).unwrap();
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(imported.clip.sha256, expected);
        assert_eq!(imported.clip.size, bytes.len() as u64);
        assert!(imported.new);
        assert_eq!(std::fs::read(path(dir.path(), &expected)).unwrap(), bytes);
        // A stream that breaks midway leaves no clip and no temp file.
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("connection reset"));
                }
                self.0 -= 1;
                let n = buf.len().min(1000);
                buf[..n].fill(1);
                Ok(n)
            }
        }
        let err = import_reader(dir.path(), "http://frigate/x", Broken(3), |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("http://frigate/x"), "{err}");
        assert_eq!(std::fs::read_dir(library(dir.path())).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_file_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = import(dir.path(), &dir.path().join("nope.mp4"), |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("nope.mp4"), "{err}");
        assert!(!library(dir.path()).exists());
        let err = import(dir.path(), dir.path(), |_, _| {}).unwrap_err();
        assert!(matches!(err, ClipError::NotAFile { .. }), "{err}");
        assert!(matches!(
            get(dir.path(), &[7; 32]),
            Err(ClipError::Unknown(_))
        ));
    }
}
