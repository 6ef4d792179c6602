//! Where a payload (input, output, checkpoint value) lives.

use crate::{INLINE_MAX, Store, StoreError, blob};

/// Bytes of a payload with their identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// blake3 of the bytes.
    pub hash: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A payload as the database records it: hash and size always, the bytes
/// themselves only when small enough to keep inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPayload {
    /// blake3 of the bytes.
    pub hash: String,
    /// Length in bytes.
    pub size: i64,
    /// The bytes, when kept in the row instead of the blob folder.
    pub inline: Option<Vec<u8>>,
}

impl Store {
    /// Makes a payload durable where it belongs: inline when small, else as a
    /// blob written before the row that names it, so a committed row never
    /// points at a blob that is not there.
    pub fn put_payload(&self, bytes: Vec<u8>) -> Result<StoredPayload, StoreError> {
        let size = bytes.len() as i64;
        if bytes.len() <= INLINE_MAX {
            let hash = blake3::hash(&bytes).to_hex().to_string();
            Ok(StoredPayload {
                hash,
                size,
                inline: Some(bytes),
            })
        } else {
            let hash = self.blobs.put(&bytes)?;
            Ok(StoredPayload {
                hash,
                size,
                inline: None,
            })
        }
    }

    /// Reads a payload back and verifies it against its hash.
    pub fn load_payload(&self, stored: &StoredPayload) -> Result<Vec<u8>, StoreError> {
        match &stored.inline {
            Some(bytes) => {
                blob::verify(&stored.hash, stored.size as u64, bytes)?;
                Ok(bytes.clone())
            }
            None => self.blobs.get(&stored.hash, stored.size as u64),
        }
    }

    /// [`Store::load_payload`] for async callers: an inline payload (at most
    /// 16 KiB) is checked where it is, a blob on a blocking thread, since it
    /// can be 64 MiB, too much to read and hash on the async threads.
    pub async fn read_payload(&self, stored: StoredPayload) -> Result<Vec<u8>, StoreError> {
        if stored.inline.is_some() {
            return self.load_payload(&stored);
        }
        let store = self.clone();
        let path = format!("blob {}", stored.hash);
        tokio::task::spawn_blocking(move || store.load_payload(&stored))
            .await
            .map_err(|e| StoreError::Io {
                path,
                source: std::io::Error::other(e),
            })?
    }
}
