//! The content-addressed blob folder shared by the cluster.
//!
//! A blob lives at `objects/ab/cdef…` under the storage path, named by the
//! blake3 hash of its bytes. It is written to a temporary file, fsynced,
//! renamed into place and the directory fsynced, so a reader sees either
//! nothing or the whole blob; every read re-hashes the bytes.
//!
//! A blob's modification time is when it was last written: writing one
//! that is there renews it. The sweep never removes a blob renewed within
//! its grace period, and renames a blob aside before removing it, so a
//! write racing the sweep either renewed it first (the sweep sees the
//! renewal on the renamed file and puts it back) or finds it gone and
//! writes it anew.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::StoreError;

/// The storage path's object folder.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (and creates) the blob folder under `storage`.
    pub fn open(storage: &Path) -> Result<Self, StoreError> {
        let root = storage.join("objects");
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        Ok(Self { root })
    }

    /// Where the blob with this hash lives.
    pub fn path(&self, hash: &str) -> PathBuf {
        let (dir, rest) = hash.split_at(2.min(hash.len()));
        self.root.join(dir).join(rest)
    }

    /// Stores `bytes` durably and returns its hash. A blob already present
    /// is identical (content addressing): it is only renewed.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = blake3::hash(bytes).to_hex().to_string();
        let path = self.path(&hash);
        match std::fs::File::options().append(true).open(&path) {
            Ok(file) => {
                file.set_modified(SystemTime::now())
                    .map_err(|e| StoreError::io(&path, e))?;
                return Ok(hash);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        let dir = path.parent().expect("blob paths have a parent");
        // Only the fan-out folder is created here, never `objects/` itself:
        // a storage folder that is away (unmounted, renamed) must fail the
        // write, not receive it in a fresh folder that hides it on return.
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::io(dir, e));
            }
            _ => {}
        }
        let tmp = dir.join(format!(".{}.{}.tmp", &hash[2..], fastrand::u64(..)));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StoreError::io(&path, e)
        })?;
        Ok(hash)
    }

    /// Reads the blob and checks that its bytes still hash to `hash` and
    /// have the recorded `size`.
    pub fn get(&self, hash: &str, size: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.path(hash);
        let bytes = std::fs::read(&path).map_err(|e| {
            // A blob is missing only from a storage folder that is there.
            if e.kind() == std::io::ErrorKind::NotFound && self.root.is_dir() {
                StoreError::MissingBlob {
                    hash: hash.to_owned(),
                }
            } else {
                StoreError::io(&path, e)
            }
        })?;
        verify(hash, size, &bytes)?;
        Ok(bytes)
    }
}

impl BlobStore {
    /// Every blob's hash whose last write is older than `grace`. Leftovers
    /// of that age (a temporary file of a cut write, a blob a cut sweep had
    /// set aside) are removed on the way.
    pub fn older_than(&self, grace: Duration) -> Result<Vec<String>, StoreError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |e| StoreError::io(&path, e)
        };
        let cutoff = SystemTime::now() - grace;
        let mut old = Vec::new();
        for fan in std::fs::read_dir(&self.root).map_err(io(&self.root))? {
            let fan = fan.map_err(io(&self.root))?;
            let Some(prefix) = fan.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !fan.file_type().map_err(io(&fan.path()))?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(fan.path()).map_err(io(&fan.path()))? {
                let entry = entry.map_err(io(&fan.path()))?;
                let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                    continue;
                };
                if modified > cutoff {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    let _ = std::fs::remove_file(entry.path());
                } else {
                    old.push(format!("{prefix}{name}"));
                }
            }
        }
        Ok(old)
    }

    /// Removes blob `hash` unless it was written again within `grace`
    /// (then it stays). Whether it was removed.
    pub fn remove_unless_renewed(&self, hash: &str, grace: Duration) -> Result<bool, StoreError> {
        let path = self.path(hash);
        let aside = path.with_file_name(format!(".{}.swept", &hash[2.min(hash.len())..]));
        match std::fs::rename(&path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        let renewed = std::fs::metadata(&aside)
            .and_then(|m| m.modified())
            .map_err(|e| StoreError::io(&aside, e))?
            > SystemTime::now() - grace;
        if renewed {
            // Put back; a write that found it gone wrote the same bytes.
            std::fs::rename(&aside, &path).map_err(|e| StoreError::io(&path, e))?;
            return Ok(false);
        }
        std::fs::remove_file(&aside).map_err(|e| StoreError::io(&aside, e))?;
        Ok(true)
    }
}

/// Checks bytes against their recorded hash and size.
pub(crate) fn verify(hash: &str, size: u64, bytes: &[u8]) -> Result<(), StoreError> {
    if bytes.len() as u64 != size {
        return Err(StoreError::Corrupt {
            hash: hash.to_owned(),
            reason: format!("{} bytes instead of {size}", bytes.len()),
        });
    }
    let actual = blake3::hash(bytes).to_hex();
    if actual.as_str() != hash {
        return Err(StoreError::Corrupt {
            hash: hash.to_owned(),
            reason: format!("its bytes hash to {actual}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(blobs: &BlobStore, hash: &str, by: Duration) {
        std::fs::File::options()
            .append(true)
            .open(blobs.path(hash))
            .unwrap()
            .set_modified(SystemTime::now() - by)
            .unwrap();
    }

    /// A blob written again is renewed and not swept; an old one is, and a
    /// write after that stores it anew.
    #[test]
    fn a_blob_written_again_within_the_grace_is_not_swept() {
        let dir = std::env::temp_dir().join(format!("baton-blobs-{:016x}", fastrand::u64(..)));
        let blobs = BlobStore::open(&dir).unwrap();
        let grace = Duration::from_secs(3600);
        let hash = blobs.put(b"x").unwrap();
        age(&blobs, &hash, 2 * grace);
        assert_eq!(
            blobs.older_than(grace).unwrap(),
            std::slice::from_ref(&hash)
        );

        blobs.put(b"x").unwrap();
        assert!(blobs.older_than(grace).unwrap().is_empty());
        assert!(!blobs.remove_unless_renewed(&hash, grace).unwrap());
        blobs.get(&hash, 1).unwrap();

        age(&blobs, &hash, 2 * grace);
        assert!(blobs.remove_unless_renewed(&hash, grace).unwrap());
        assert!(matches!(
            blobs.get(&hash, 1),
            Err(StoreError::MissingBlob { .. })
        ));
        blobs.put(b"x").unwrap();
        blobs.get(&hash, 1).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
