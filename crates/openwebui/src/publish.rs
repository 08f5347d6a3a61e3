//! Publishing: bringing an Open WebUI knowledge base to exactly a list of files with Open WebUI
//! 0.12's own sync protocol.
//!
//! 1. Duplicates first: a knowledge base holding two files with the same folder and name (left by a
//!    publish interrupted between an upload and the cleanup of the version it replaced, or by an
//!    upload whose processing finished after its publish gave up on it) keeps one of them — the one
//!    with the wanted content if there is one — and loses the others. Open WebUI's diff indexes files
//!    by folder and name, so it would otherwise never report the extra ones.
//! 2. `POST /knowledge/{id}/sync/diff` with the manifest (`{filename, path, checksum, size}`).
//! 3. `POST /knowledge/{id}/dirs/create` for each missing directory, parents first.
//! 4. Added and modified files are uploaded, a few at a time: `POST /files/` with
//!    `metadata = {knowledge_id, directory_id}`; Open WebUI processes the file in the background and
//!    then links it to the knowledge base and directory itself (`process_uploaded_file`), so the
//!    upload is complete when `GET /files/{id}/process/status` says `completed`. `failed` is reported
//!    with Open WebUI's error (read from the file's `data.error`) and the unlinked upload is deleted,
//!    so the next diff reports the file as added again.
//! 5. `POST /knowledge/{id}/sync/cleanup` with the deleted files, the replaced versions of files whose
//!    new version was uploaded (never of a failed one: the old version stays until a new one
//!    arrives) and the orphaned directories.
//!
//! Interrupted anywhere, the next publish converges: an upload still processing from less than an
//! hour ago counts as unmodified in Open WebUI's diff (it will link itself), one older than that (or
//! one that failed) is uploaded again, and whatever was linked twice is removed by step 1.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};
use tracing::{info, instrument, warn};

use crate::client::{OpenWebUiClient, Scope};
use crate::errors::OpenWebUiError;
use crate::model::{
    CreateDirectoryForm, DirectoryWire, FileWire, ManifestEntry, ProcessStatus, SyncCleanupForm, SyncDiff,
    SyncDiffForm, UploadMetadata,
};
use crate::{FailedFile, FileContent, ManifestFile, PublishProgress, PublishReport};

/// How one file's upload ended, when it did not abort the publish.
enum Outcome {
    /// Processed and linked; `stale` is the version it replaces, to be removed.
    Uploaded {
        stale: Option<String>,
    },
    Failed(FailedFile),
}

/// One file to upload.
struct Job<'a> {
    file: &'a ManifestFile,
    directory_id: Option<String>,
    stale: Option<String>,
}

impl OpenWebUiClient {
    /// Brings the knowledge base to exactly `files` with Open WebUI's sync protocol (see the
    /// [module](crate::publish) documentation). A file that cannot be read, is refused, or fails
    /// processing is reported in [`PublishReport::failed`] and the publish goes on; an unreachable
    /// Open WebUI, a refused API key or a vanished knowledge base abort it with the error. Safe to
    /// interrupt (drop the future) and run again. `progress` hears about every finished upload.
    #[instrument(skip_all, fields(knowledge.id = %knowledge_id, files = files.len()))]
    pub async fn publish(
        &self,
        knowledge_id: &str,
        files: &[ManifestFile],
        content: &dyn FileContent,
        progress: &(dyn Fn(PublishProgress) + Send + Sync),
    ) -> Result<PublishReport, OpenWebUiError> {
        let mut report = PublishReport::default();
        let wanted = self.publishable(files, &mut report.failed);

        report.removed += self.remove_duplicates(knowledge_id, &wanted).await?;

        let diff = self.sync_diff(knowledge_id, &wanted).await?;
        let mut directories = diff.directory_map.clone();
        for path in &diff.mkdir {
            let id = self.create_directory(knowledge_id, path, &directories).await?;
            directories.insert(path.clone(), id);
            report.directories_created += 1;
        }

        let jobs = self.jobs(&diff, &wanted, &directories);
        let total = jobs.len();
        progress(PublishProgress { done: 0, total });
        let concurrency = self.config.upload_concurrency.max(1);
        // The (lazy) uploads are made and boxed before the stream, so that the stream holds no
        // closure over borrowed jobs: a task spawned around `publish` (the publisher's loop) must be
        // `Send` for every lifetime, which such a closure cannot prove to the compiler.
        let uploads: Vec<futures::future::BoxFuture<'_, Result<Outcome, OpenWebUiError>>> = jobs
            .into_iter()
            .map(|job| self.upload(knowledge_id, job, content).boxed())
            .collect();
        let mut uploads = futures::stream::iter(uploads).buffer_unordered(concurrency);
        let mut stale_ids = Vec::new();
        let mut done = 0;
        while let Some(outcome) = uploads.next().await {
            match outcome? {
                Outcome::Uploaded { stale } => {
                    report.uploaded += 1;
                    stale_ids.extend(stale);
                }
                Outcome::Failed(failed) => {
                    warn!(path = %failed.path, filename = %failed.filename, error = %failed.error,
                        "a file was not published");
                    report.failed.push(failed);
                }
            }
            done += 1;
            progress(PublishProgress { done, total });
        }
        drop(uploads);

        let mut file_ids: Vec<String> = diff.deleted.iter().map(|d| d.file_id.clone()).collect();
        file_ids.extend(stale_ids);
        let dir_ids = children_last(&diff.rmdir, &diff.directory_map);
        if !file_ids.is_empty() || !dir_ids.is_empty() {
            self.cleanup(knowledge_id, file_ids.clone(), dir_ids.clone())
                .await?;
        }
        report.removed += file_ids.len();
        report.directories_removed = dir_ids.len();
        report.unchanged = diff.unmodified_count;
        info!(
            uploaded = report.uploaded,
            unchanged = report.unchanged,
            removed = report.removed,
            failed = report.failed.len(),
            "published to Open WebUI"
        );
        Ok(report)
    }

    /// The files Open WebUI can hold: a valid folder and name, once each. The others are failed.
    fn publishable<'a>(
        &self,
        files: &'a [ManifestFile],
        failed: &mut Vec<FailedFile>,
    ) -> Vec<&'a ManifestFile> {
        let mut seen = HashSet::new();
        let mut wanted = Vec::with_capacity(files.len());
        for file in files {
            let problem = if file.filename.is_empty() || file.filename.contains('/') {
                Some("the file name is empty or contains '/'")
            } else if !file.path.is_empty() && file.path.split('/').any(str::is_empty) {
                Some("the folder path has an empty segment (a leading, trailing or doubled '/')")
            } else if !seen.insert((file.path.as_str(), file.filename.as_str())) {
                Some("another file has the same folder and name")
            } else {
                None
            };
            match problem {
                Some(why) => failed.push(FailedFile {
                    path: file.path.clone(),
                    filename: file.filename.clone(),
                    error: why.to_string(),
                }),
                None => wanted.push(file),
            }
        }
        wanted
    }

    /// Removes all but one file of each folder and name; how many were removed.
    async fn remove_duplicates(
        &self,
        knowledge_id: &str,
        wanted: &[&ManifestFile],
    ) -> Result<usize, OpenWebUiError> {
        let held = self.knowledge_files(knowledge_id).await?;
        let wanted_hash: HashMap<(&str, &str), String> = wanted
            .iter()
            .map(|f| ((f.path.as_str(), f.filename.as_str()), f.sha256.to_lowercase()))
            .collect();
        let mut by_name: HashMap<(&str, &str), Vec<&crate::PublishedFile>> = HashMap::new();
        for file in &held {
            by_name
                .entry((file.path.as_str(), file.filename.as_str()))
                .or_default()
                .push(file);
        }
        let mut extra = Vec::new();
        for (name, copies) in by_name {
            if copies.len() < 2 {
                continue;
            }
            let keep = wanted_hash
                .get(&name)
                .and_then(|hash| {
                    copies
                        .iter()
                        .position(|c| c.sha256.as_deref() == Some(hash.as_str()))
                })
                .unwrap_or(0);
            extra.extend(
                copies
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != keep)
                    .map(|(_, c)| c.id.clone()),
            );
        }
        if extra.is_empty() {
            return Ok(0);
        }
        warn!(duplicates = extra.len(), "removing files Open WebUI holds twice");
        let removed = extra.len();
        self.cleanup(knowledge_id, extra, Vec::new()).await?;
        Ok(removed)
    }

    async fn sync_diff(
        &self,
        knowledge_id: &str,
        wanted: &[&ManifestFile],
    ) -> Result<SyncDiff, OpenWebUiError> {
        let lowercase: Vec<String> = wanted.iter().map(|f| f.sha256.to_lowercase()).collect();
        let form = SyncDiffForm {
            manifest: wanted
                .iter()
                .zip(&lowercase)
                .map(|(f, checksum)| ManifestEntry {
                    filename: &f.filename,
                    path: &f.path,
                    checksum,
                    size: f.size,
                })
                .collect(),
        };
        self.json(
            self.request(Method::POST, &["knowledge", knowledge_id, "sync", "diff"])?
                .json(&form),
            Scope::Knowledge,
        )
        .await
    }

    async fn create_directory(
        &self,
        knowledge_id: &str,
        path: &str,
        known: &HashMap<String, String>,
    ) -> Result<String, OpenWebUiError> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let parent_id = if parent.is_empty() {
            None
        } else {
            Some(
                known
                    .get(parent)
                    .ok_or_else(|| OpenWebUiError::Rejected {
                        status: 0,
                        message: format!("Open WebUI asked for {path:?} before its parent"),
                    })?
                    .as_str(),
            )
        };
        let form = CreateDirectoryForm { name, parent_id };
        let directory: DirectoryWire = self
            .json(
                self.request(Method::POST, &["knowledge", knowledge_id, "dirs", "create"])?
                    .json(&form),
                Scope::Knowledge,
            )
            .await?;
        Ok(directory.id)
    }

    fn jobs<'a>(
        &self,
        diff: &SyncDiff,
        wanted: &[&'a ManifestFile],
        directories: &HashMap<String, String>,
    ) -> Vec<Job<'a>> {
        let by_name: HashMap<(&str, &str), &'a ManifestFile> = wanted
            .iter()
            .map(|f| ((f.path.as_str(), f.filename.as_str()), *f))
            .collect();
        let job = |path: &str, filename: &str, stale: Option<String>| {
            by_name.get(&(path, filename)).map(|file| Job {
                file,
                directory_id: directories.get(path).cloned(),
                stale,
            })
        };
        diff.added
            .iter()
            .filter_map(|a| job(&a.path, &a.filename, None))
            .chain(
                diff.modified
                    .iter()
                    .filter_map(|m| job(&m.path, &m.filename, Some(m.stale_file_id.clone()))),
            )
            .collect()
    }

    /// Uploads one file and waits for Open WebUI to process (and link) it.
    async fn upload(
        &self,
        knowledge_id: &str,
        job: Job<'_>,
        content: &dyn FileContent,
    ) -> Result<Outcome, OpenWebUiError> {
        let file = job.file;
        let failed = |error: String| {
            Ok(Outcome::Failed(FailedFile {
                path: file.path.clone(),
                filename: file.filename.clone(),
                error,
            }))
        };
        let bytes = match content.read(file).await {
            Ok(bytes) => bytes,
            Err(why) => return failed(format!("cannot read the file: {why}")),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != file.sha256.to_lowercase() {
            return failed(format!(
                "the file's content has SHA-256 {actual}, not {} as listed: it changed since the list was made",
                file.sha256
            ));
        }
        let uploaded = match self
            .upload_bytes(knowledge_id, file, job.directory_id.as_deref(), bytes)
            .await
        {
            Ok(uploaded) => uploaded,
            Err(OpenWebUiError::Rejected { message, .. }) => return failed(message),
            Err(e) => return Err(e),
        };
        match self.wait_for_processing(&uploaded.id).await? {
            Processing::Completed => Ok(Outcome::Uploaded { stale: job.stale }),
            Processing::Failed(error) => {
                // Not linked to the knowledge base: delete it so it does not linger in Open WebUI.
                if let Err(e) = self
                    .send(
                        self.request(Method::DELETE, &["files", &uploaded.id])?,
                        Scope::Other,
                    )
                    .await
                {
                    warn!(file.id = %uploaded.id, error = %e, "could not delete a failed upload");
                }
                failed(error)
            }
            Processing::Vanished => failed("the upload disappeared from Open WebUI".to_string()),
            Processing::TimedOut => failed(format!(
                "Open WebUI did not finish processing the file within {:?}",
                self.config.processing_timeout
            )),
        }
    }

    async fn upload_bytes(
        &self,
        knowledge_id: &str,
        file: &ManifestFile,
        directory_id: Option<&str>,
        bytes: Bytes,
    ) -> Result<FileWire, OpenWebUiError> {
        let metadata = Self::to_json(&UploadMetadata {
            knowledge_id,
            directory_id,
        })?;
        let part =
            Part::stream_with_length(bytes.clone(), bytes.len() as u64).file_name(file.filename.clone());
        let part = match part.mime_str(&file.content_type) {
            Ok(part) => part,
            Err(_) => Part::stream_with_length(bytes.clone(), bytes.len() as u64)
                .file_name(file.filename.clone())
                .mime_str("application/octet-stream")
                .map_err(|e| OpenWebUiError::Rejected {
                    status: 0,
                    message: e.to_string(),
                })?,
        };
        // Names go into the multipart header as UTF-8, which Open WebUI stores as they are (the
        // default percent-encoding would make "résumé.pdf" a different name than the manifest's).
        let form = Form::new()
            .percent_encode_noop()
            .part("file", part)
            .text("metadata", metadata);
        self.json(
            self.request(Method::POST, &["files", ""])?.multipart(form),
            Scope::Other,
        )
        .await
    }

    async fn wait_for_processing(&self, file_id: &str) -> Result<Processing, OpenWebUiError> {
        let timeout =
            chrono::Duration::from_std(self.config.processing_timeout).unwrap_or(chrono::Duration::MAX);
        let deadline = self.clock.now() + timeout;
        loop {
            let status: ProcessStatus = match self
                .json(
                    self.request(Method::GET, &["files", file_id, "process", "status"])?,
                    Scope::Other,
                )
                .await
            {
                Ok(status) => status,
                Err(OpenWebUiError::Rejected { status: 404, .. }) => return Ok(Processing::Vanished),
                Err(e) => return Err(e),
            };
            match status.status.as_str() {
                "completed" => return Ok(Processing::Completed),
                "failed" => return Ok(Processing::Failed(self.processing_error(file_id).await?)),
                _ => {}
            }
            if self.clock.now() >= deadline {
                return Ok(Processing::TimedOut);
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// The error Open WebUI recorded for a failed file (`data.error`).
    async fn processing_error(&self, file_id: &str) -> Result<String, OpenWebUiError> {
        let file: FileWire = match self
            .json(self.request(Method::GET, &["files", file_id])?, Scope::Other)
            .await
        {
            Ok(file) => file,
            Err(OpenWebUiError::Rejected { status: 404, .. }) => {
                return Ok("Open WebUI could not process the file".to_string());
            }
            Err(e) => return Err(e),
        };
        Ok(file
            .data
            .and_then(|d| d.error)
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "Open WebUI could not process the file".to_string()))
    }

    async fn cleanup(
        &self,
        knowledge_id: &str,
        file_ids: Vec<String>,
        dir_ids: Vec<String>,
    ) -> Result<(), OpenWebUiError> {
        self.send(
            self.request(Method::POST, &["knowledge", knowledge_id, "sync", "cleanup"])?
                .json(&SyncCleanupForm { file_ids, dir_ids }),
            Scope::Knowledge,
        )
        .await?;
        Ok(())
    }
}

enum Processing {
    Completed,
    Failed(String),
    Vanished,
    TimedOut,
}

/// Directory ids ordered parents first: Open WebUI's cleanup removes them in reverse, children first.
fn children_last(ids: &[String], directory_map: &HashMap<String, String>) -> Vec<String> {
    let depth: HashMap<&str, usize> = directory_map
        .iter()
        .map(|(path, id)| (id.as_str(), path.matches('/').count()))
        .collect();
    let mut ids = ids.to_vec();
    ids.sort_by_key(|id| (depth.get(id.as_str()).copied().unwrap_or(0), id.clone()));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphaned_directories_are_sent_parents_first_so_cleanup_removes_children_first() {
        let map: HashMap<String, String> = [("a", "1"), ("a/b", "2"), ("a/b/c", "3"), ("z", "4")]
            .into_iter()
            .map(|(p, i)| (p.to_string(), i.to_string()))
            .collect();
        let ids: Vec<String> = ["3", "1", "2", "4"].iter().map(|s| s.to_string()).collect();
        assert_eq!(children_last(&ids, &map), vec!["1", "4", "2", "3"]);
    }
}
