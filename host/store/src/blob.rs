//! The content-addressed blob folder shared by the cluster.
//!
//! A blob lives at `objects/ab/cdef…` under the storage path, named by the
//! blake3 hash of its bytes. It is written to a temporary file, fsynced,
//! renamed into place and the directory fsynced, so a reader sees either
//! nothing or the whole blob; every read re-hashes the bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

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

    /// Stores `bytes` durably and returns its hash. Writing a blob that is
    /// already present is a no-op: content addressing makes it identical.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = blake3::hash(bytes).to_hex().to_string();
        let path = self.path(&hash);
        if path.exists() {
            return Ok(hash);
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
