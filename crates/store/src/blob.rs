//! Content-addressed blobs on the local filesystem: `root/ab/cd/<sha256>` for the hash
//! `abcd…`, written through a temporary file under `root/tmp` and renamed into place, so a blob
//! path either does not exist or holds the complete content.

use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// A blob that is durably stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// SHA-256 of the content, lowercase hex.
    pub hash: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The content is larger than the limit the caller set: skip it.
    #[error("the content exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The filesystem failed (a missing blob is an `Io` error of kind `NotFound`).
    #[error("blob storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The input stream failed: retry the download.
    #[error("the content stream failed: {0}")]
    Source(String),
    /// The text is not a SHA-256 hex digest.
    #[error("not a blob hash: {0:?}")]
    InvalidHash(String),
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// Removes the temporary file unless it was renamed into place (also when the future writing
/// it is dropped half-way).
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl BlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Hashes the stream while writing it to a temporary file under `root/tmp`, fsyncs it and
    /// renames it to the blob's path. Fails with `TooLarge` (leaving nothing behind) as soon as
    /// more than `max_bytes` arrive, and with `Source` when the stream yields an error.
    pub async fn write_stream<S, E>(&self, stream: S, max_bytes: u64) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let mut temp = TempFile {
            path: tmp_dir.join(uuid::Uuid::new_v4().simple().to_string()),
            armed: true,
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp.path)
            .await?;

        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|e| BlobError::Source(e.to_string()))?;
            size = size.saturating_add(chunk.len() as u64);
            if size > max_bytes {
                drop(file);
                return Err(BlobError::TooLarge { limit: max_bytes });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        drop(file);

        let hash = hex::encode(hasher.finalize());
        let dest = self.path(&hash)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // Same hash, same content: replacing an existing blob is harmless.
        tokio::fs::rename(&temp.path, &dest).await?;
        temp.armed = false;
        if let Some(parent) = dest.parent() {
            sync_dir(parent).await;
        }
        Ok(StoredBlob { hash, size })
    }

    pub async fn put_bytes(&self, bytes: &[u8]) -> Result<StoredBlob, BlobError> {
        let owned = bytes::Bytes::copy_from_slice(bytes);
        let stream = futures::stream::iter([Ok::<_, std::convert::Infallible>(owned)]);
        self.write_stream(stream, u64::MAX).await
    }

    /// Where the blob with this hash lives. Fails with `InvalidHash` unless `hash` is 64 hex
    /// characters (so no path can be smuggled in); upper case is accepted and normalised.
    pub fn path(&self, hash: &str) -> Result<PathBuf, BlobError> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::InvalidHash(hash.chars().take(80).collect()));
        }
        let hash = hash.to_ascii_lowercase();
        Ok(self.root.join(&hash[0..2]).join(&hash[2..4]).join(&hash))
    }

    pub async fn open(&self, hash: &str) -> Result<tokio::fs::File, BlobError> {
        Ok(tokio::fs::File::open(self.path(hash)?).await?)
    }

    pub async fn read(&self, hash: &str) -> Result<Vec<u8>, BlobError> {
        Ok(tokio::fs::read(self.path(hash)?).await?)
    }

    /// Removes the blob; a blob that is not there is fine.
    pub async fn delete(&self, hash: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(hash)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Makes a rename durable (best effort: not every platform can open a directory).
async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("blobs"));
        (dir, store)
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<bytes::Bytes, String>> + Send {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(bytes::Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn tmp_entries(store: &BlobStore) -> usize {
        std::fs::read_dir(store.root().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn stream_hash_is_sha256_of_all_parts_and_content_reads_back() {
        let (_dir, store) = store();
        let blob = store
            .write_stream(chunks(&[b"hello ", b"world"]), 1024)
            .await
            .unwrap();
        assert_eq!(
            blob.hash,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(blob.size, 11);
        assert_eq!(store.read(&blob.hash).await.unwrap(), b"hello world");
        let path = store.path(&blob.hash).unwrap();
        assert!(
            path.ends_with(format!("b9/4d/{}", blob.hash)),
            "{}",
            path.display()
        );
        assert_eq!(tmp_entries(&store), 0);
    }

    #[tokio::test]
    async fn empty_content_is_a_valid_blob() {
        let (_dir, store) = store();
        let blob = store.put_bytes(b"").await.unwrap();
        assert_eq!(
            blob.hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(blob.size, 0);
    }

    #[tokio::test]
    async fn too_large_stream_fails_and_leaves_no_temp_file_or_blob() {
        let (_dir, store) = store();
        let err = store
            .write_stream(chunks(&[b"12345", b"67890", b"x"]), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 10 }), "{err}");
        assert_eq!(tmp_entries(&store), 0);
        // exactly at the limit is fine
        let ok = store
            .write_stream(chunks(&[b"12345", b"67890"]), 10)
            .await
            .unwrap();
        assert_eq!(ok.size, 10);
    }

    #[tokio::test]
    async fn failing_source_is_reported_and_leaves_no_temp_file() {
        let (_dir, store) = store();
        let stream = futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"part")),
            Err("connection reset".to_owned()),
        ]);
        let err = store.write_stream(stream, 1024).await.unwrap_err();
        assert!(
            matches!(&err, BlobError::Source(m) if m.contains("connection reset")),
            "{err}"
        );
        assert_eq!(tmp_entries(&store), 0);
    }

    #[tokio::test]
    async fn writing_the_same_content_twice_is_idempotent() {
        let (_dir, store) = store();
        let a = store.put_bytes(b"same").await.unwrap();
        let b = store.write_stream(chunks(&[b"sa", b"me"]), 100).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(store.read(&a.hash).await.unwrap(), b"same");
    }

    #[tokio::test]
    async fn path_traversal_and_malformed_hashes_are_rejected() {
        let (_dir, store) = store();
        let evil = format!("../../{}", "a".repeat(58));
        for bad in [
            "",
            "abc",
            "../etc/passwd",
            evil.as_str(),
            &"g".repeat(64),
            &"a".repeat(65),
        ] {
            assert!(matches!(store.path(bad), Err(BlobError::InvalidHash(_))), "{bad}");
            assert!(
                matches!(store.read(bad).await, Err(BlobError::InvalidHash(_))),
                "{bad}"
            );
            assert!(
                matches!(store.delete(bad).await, Err(BlobError::InvalidHash(_))),
                "{bad}"
            );
        }
        let upper = "B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9";
        assert_eq!(
            store.path(upper).unwrap(),
            store.path(&upper.to_lowercase()).unwrap()
        );
    }

    #[tokio::test]
    async fn delete_removes_blob_and_tolerates_missing_ones() {
        let (_dir, store) = store();
        let blob = store.put_bytes(b"gone soon").await.unwrap();
        store.delete(&blob.hash).await.unwrap();
        let err = store.open(&blob.hash).await.unwrap_err();
        assert!(
            matches!(&err, BlobError::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
            "{err}"
        );
        store.delete(&blob.hash).await.unwrap();
    }
}
