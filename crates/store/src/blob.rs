//! Content-addressed blobs on the local filesystem: `root/ab/cd/<sha256>` for the hash
//! `abcd…`, written through a temporary file under `root/tmp` and renamed into place, so a blob
//! path either does not exist or holds the complete content.
//!
//! Blob files are removed only by the collector ([`collect_blobs`](crate::collect_blobs)); a
//! writer that is about to make a document reference a blob holds a second link to its bytes
//! ([`HeldBlob`]) until that row is committed, and then settles it, which puts the blob back if
//! the collector removed it meanwhile.

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

/// A blob that is in place, plus a second link to its bytes under `root/tmp` (the hold) that the
/// collector never touches while it is young. Read it through [`content_path`](Self::content_path);
/// once the row referencing it has committed, [`settle`](Self::settle) it. Dropped unsettled
/// (the row was not written), the hold is removed and the blob is left to the collector.
#[derive(Debug)]
pub struct HeldBlob {
    blob: StoredBlob,
    hold: TempFile,
    dest: PathBuf,
}

impl std::fmt::Debug for TempFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempFile").field("path", &self.path).finish()
    }
}

impl HeldBlob {
    pub fn blob(&self) -> &StoredBlob {
        &self.blob
    }

    /// The held copy of the bytes: readable whatever the collector does to the blob's path.
    pub fn content_path(&self) -> &Path {
        &self.hold.path
    }

    /// Puts the held bytes at the blob's path (again: same hash, same content), so the blob
    /// exists even if the collector removed it before the referencing row committed. Call only
    /// after that commit: from then on the collector keeps the blob.
    pub async fn settle(mut self) -> Result<StoredBlob, BlobError> {
        if let Some(parent) = self.dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(&self.hold.path, &self.dest).await?;
        self.hold.armed = false;
        if let Some(parent) = self.dest.parent() {
            sync_dir(parent).await;
        }
        Ok(self.blob)
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
        let (mut temp, blob) = self.write_temp(stream, max_bytes).await?;
        let dest = self.path(&blob.hash)?;
        self.place(&mut temp, &dest).await?;
        Ok(blob)
    }

    /// Like [`write_stream`](Self::write_stream), and keeps a second link to the bytes until
    /// the document row that references the blob has committed: see [`HeldBlob`].
    pub async fn write_stream_held<S, E>(&self, stream: S, max_bytes: u64) -> Result<HeldBlob, BlobError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let (mut temp, blob) = self.write_temp(stream, max_bytes).await?;
        let dest = self.path(&blob.hash)?;
        let hold = TempFile {
            path: self.temp_path(),
            armed: true,
        };
        if tokio::fs::hard_link(&temp.path, &hold.path).await.is_err() {
            tokio::fs::copy(&temp.path, &hold.path).await?;
        }
        self.place(&mut temp, &dest).await?;
        Ok(HeldBlob { blob, hold, dest })
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    async fn write_temp<S, E>(&self, stream: S, max_bytes: u64) -> Result<(TempFile, StoredBlob), BlobError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let temp = TempFile {
            path: self.temp_path(),
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
        Ok((temp, StoredBlob { hash, size }))
    }

    /// Renames the written temporary file to the blob's path.
    async fn place(&self, temp: &mut TempFile, dest: &Path) -> Result<(), BlobError> {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // Same hash, same content: replacing an existing blob is harmless.
        tokio::fs::rename(&temp.path, dest).await?;
        temp.armed = false;
        if let Some(parent) = dest.parent() {
            sync_dir(parent).await;
        }
        Ok(())
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

    /// When the blob's file was last written; `None` when there is no such file.
    pub async fn modified(&self, hash: &str) -> Result<Option<std::time::SystemTime>, BlobError> {
        match tokio::fs::metadata(self.path(hash)?).await {
            Ok(meta) => Ok(Some(meta.modified()?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The time by the clock that stamps the files' modification times: that of a file written
    /// now (and removed again). File ages are judged by it, whatever clock the caller runs on.
    pub async fn filesystem_now(&self) -> Result<std::time::SystemTime, BlobError> {
        tokio::fs::create_dir_all(self.root.join("tmp")).await?;
        let probe = TempFile {
            path: self.temp_path(),
            armed: true,
        };
        tokio::fs::write(&probe.path, b"").await?;
        Ok(tokio::fs::metadata(&probe.path).await?.modified()?)
    }

    /// The hashes of the blob files last written at `cutoff` or earlier (files whose names are
    /// not blob hashes are left alone).
    pub async fn files_modified_before(
        &self,
        cutoff: std::time::SystemTime,
    ) -> Result<Vec<String>, BlobError> {
        let mut found = Vec::new();
        for first in list_dir(&self.root).await? {
            if !is_hex_of_len(&first, 2) {
                continue;
            }
            let first_dir = self.root.join(&first);
            for second in list_dir(&first_dir).await? {
                if !is_hex_of_len(&second, 2) {
                    continue;
                }
                let second_dir = first_dir.join(&second);
                for name in list_dir(&second_dir).await? {
                    if !is_hex_of_len(&name, 64) {
                        continue;
                    }
                    match tokio::fs::metadata(second_dir.join(&name)).await {
                        Ok(meta) if meta.is_file() && meta.modified()? <= cutoff => found.push(name),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(found)
    }

    /// Removes the temporary files last written at `cutoff` or earlier: writes that a crash
    /// interrupted, or holds never settled. Returns how many it removed.
    pub async fn remove_stale_temp_files(&self, cutoff: std::time::SystemTime) -> Result<u64, BlobError> {
        let tmp_dir = self.root.join("tmp");
        let mut removed = 0;
        for name in list_dir(&tmp_dir).await? {
            let path = tmp_dir.join(name);
            let stale = match tokio::fs::metadata(&path).await {
                Ok(meta) => meta.is_file() && meta.modified()? <= cutoff,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(e.into()),
            };
            if stale {
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }

    /// Removes the blob; a blob that is not there is fine. Only the collector calls this, in the
    /// transaction that decided the blob is garbage ([`OrphanBlobStore`](crate::OrphanBlobStore)).
    pub async fn delete(&self, hash: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(hash)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The names of a directory's entries; none when it does not exist.
async fn list_dir(dir: &Path) -> Result<Vec<String>, BlobError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

fn is_hex_of_len(name: &str, len: usize) -> bool {
    name.len() == len
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
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

    #[tokio::test]
    async fn a_held_blob_stays_readable_and_its_settle_puts_back_a_removed_blob() {
        let (_dir, store) = store();
        let held = store
            .write_stream_held(chunks(&[b"held ", b"bytes"]), 1024)
            .await
            .unwrap();
        let hash = held.blob().hash.clone();
        assert_eq!(store.read(&hash).await.unwrap(), b"held bytes");
        store.delete(&hash).await.unwrap();
        assert_eq!(std::fs::read(held.content_path()).unwrap(), b"held bytes");
        let blob = held.settle().await.unwrap();
        assert_eq!(blob.hash, hash);
        assert_eq!(store.read(&hash).await.unwrap(), b"held bytes");
        assert_eq!(tmp_entries(&store), 0);
    }

    #[tokio::test]
    async fn an_unsettled_hold_is_removed_when_dropped_and_the_blob_stays() {
        let (_dir, store) = store();
        let held = store
            .write_stream_held(chunks(&[b"dropped"]), 1024)
            .await
            .unwrap();
        let hash = held.blob().hash.clone();
        drop(held);
        assert_eq!(tmp_entries(&store), 0);
        assert_eq!(store.read(&hash).await.unwrap(), b"dropped");
    }

    #[tokio::test]
    async fn only_blob_files_at_least_as_old_as_the_cutoff_are_listed() {
        let (_dir, store) = store();
        let old = store.put_bytes(b"old").await.unwrap();
        let new = store.put_bytes(b"new").await.unwrap();
        let now = store.filesystem_now().await.unwrap();
        let hour = std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(store.path(&old.hash).unwrap())
            .unwrap()
            .set_modified(now - hour * 2)
            .unwrap();
        // Not a blob's name: never listed.
        std::fs::write(store.path(&old.hash).unwrap().with_file_name("notes.txt"), b"x").unwrap();
        assert_eq!(
            store.files_modified_before(now - hour).await.unwrap(),
            vec![old.hash.clone()]
        );
        let mut both = store.files_modified_before(now + hour).await.unwrap();
        both.sort();
        let mut expected = vec![old.hash, new.hash];
        expected.sort();
        assert_eq!(both, expected);
        assert_eq!(tmp_entries(&store), 0, "the probe file is gone");
    }
}
