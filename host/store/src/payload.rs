//! Where a payload (input, output, checkpoint value) lives.

use baton_core::store::async_trait;

use crate::{INLINE_MAX, PayloadStore, SqlStore, StoreError, StoredPayload, blob};

#[async_trait]
impl PayloadStore for SqlStore {
    fn put_payload(&self, bytes: Vec<u8>) -> Result<StoredPayload, StoreError> {
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

    fn load_payload(&self, stored: &StoredPayload) -> Result<Vec<u8>, StoreError> {
        match &stored.inline {
            Some(bytes) => {
                blob::verify(&stored.hash, stored.size as u64, bytes)?;
                Ok(bytes.clone())
            }
            None => self.blobs.get(&stored.hash, stored.size as u64),
        }
    }

    async fn read_payload(&self, stored: StoredPayload) -> Result<Vec<u8>, StoreError> {
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

    fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        self.blobs.put(bytes)
    }

    fn blob(&self, hash: &str, size: u64) -> Result<Vec<u8>, StoreError> {
        self.blobs.get(hash, size)
    }
}
