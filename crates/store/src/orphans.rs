//! Late collection of blob files (docs/storage.md). Blobs are shared by every document with the
//! same bytes, so no caller removes one: a document that lets go of a hash (deleted, or given new
//! content) records it as an orphan candidate in the transaction that changes the row, and
//! [`collect_blobs`] removes the file once the hash has been a candidate for the grace period
//! and no document references it. A blob file that no row knows at all (a crash between writing
//! the file and committing its row) is removed once its file is older than the grace period.
//!
//! Every decision to remove a file is taken in a transaction that is serialized with the
//! document writes taking the same hash (`create_document`, `put_uploaded_document`,
//! `upsert_source_document`), and the file is removed before that transaction commits: a writer
//! either commits first (and the collector sees its row and keeps the file) or waits until the
//! file is gone (and puts it back from its [`HeldBlob`](crate::HeldBlob) after committing).

use std::time::SystemTime;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::{BlobStore, Result};

/// How many candidates or files one pass looks at per batch.
const BATCH: usize = 500;

/// The candidates and unknown files of blobs, and their collection.
#[async_trait]
pub trait OrphanBlobStore: Send + Sync {
    /// Hashes that have been orphan candidates since `cutoff` or earlier, oldest first.
    async fn orphan_candidates(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<Vec<String>>;
    /// Whether `hash` is an orphan candidate now.
    async fn is_orphan_candidate(&self, hash: &str) -> Result<bool>;
    /// Collects one candidate. In one transaction, serialized with document writes taking
    /// `hash`, one statement deletes the candidate if it has been one since `cutoff` or earlier
    /// and no document references the hash; only the instance whose statement deleted it then
    /// removes the blob file, before committing. A candidate that a document references again
    /// is just cleared. Returns whether the file was removed.
    async fn collect_orphan(&self, blobs: &BlobStore, hash: &str, cutoff: DateTime<Utc>) -> Result<bool>;
    /// The hashes among `hashes` that some document references or that are candidates.
    async fn known_blob_hashes(&self, hashes: &[String]) -> Result<Vec<String>>;
    /// Removes the file of a blob that no document references and that is no candidate, when
    /// the file was last modified at `cutoff` or earlier, serialized like
    /// [`collect_orphan`](Self::collect_orphan). Returns whether it removed the file.
    async fn collect_unknown_blob(&self, blobs: &BlobStore, hash: &str, cutoff: SystemTime) -> Result<bool>;
}

/// What one [`collect_blobs`] pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectedBlobs {
    /// Blob files of candidates older than the grace period that no document referenced.
    pub orphans: u64,
    /// Blob files no row knew, older than the grace period.
    pub unknown: u64,
    /// Temporary files older than the grace period (writes a crash interrupted).
    pub temporary: u64,
}

/// Removes the blob files that are garbage at `now`: those of candidates older than `grace` that
/// no document references, and files older than `grace` that no document or candidate knows
/// (with the temporary files of writes that never finished). Safe to run on several instances
/// at once. A file's age is judged by the earlier of `now` and the filesystem's clock, so that a
/// file written a moment ago is never old. Goes on past a blob it cannot remove and reports the
/// first error at the end.
pub async fn collect_blobs<S>(
    store: &S,
    blobs: &BlobStore,
    now: DateTime<Utc>,
    grace: Duration,
) -> Result<CollectedBlobs>
where
    S: OrphanBlobStore + ?Sized,
{
    let cutoff = now - grace;
    let mut collected = CollectedBlobs::default();
    let mut first_error = None;
    let mut seen = std::collections::HashSet::new();
    loop {
        let candidates = store.orphan_candidates(cutoff, BATCH as u32).await?;
        let fresh: Vec<String> = candidates
            .into_iter()
            .filter(|h| seen.insert(h.clone()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for hash in fresh {
            match store.collect_orphan(blobs, &hash, cutoff).await {
                Ok(true) => collected.orphans += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(blob.hash = %hash, error = %e, "could not collect an orphan blob");
                    first_error.get_or_insert(e);
                }
            }
        }
    }

    // Files are stamped by the filesystem's clock: a file is old when it is old by both clocks
    // (they agree in production; a test's clock may run ahead of the files').
    let filesystem_now = blobs.filesystem_now().await?;
    let grace_std = grace.to_std().unwrap_or_default();
    let file_cutoff = SystemTime::from(now)
        .min(filesystem_now)
        .checked_sub(grace_std)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    collected.temporary = blobs.remove_stale_temp_files(file_cutoff).await?;
    let stale = blobs.files_modified_before(file_cutoff).await?;
    for batch in stale.chunks(BATCH) {
        let known: std::collections::HashSet<String> =
            store.known_blob_hashes(batch).await?.into_iter().collect();
        for hash in batch.iter().filter(|h| !known.contains(*h)) {
            match store.collect_unknown_blob(blobs, hash, file_cutoff).await {
                Ok(true) => collected.unknown += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(blob.hash = %hash, error = %e, "could not collect an unknown blob");
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(collected),
    }
}
