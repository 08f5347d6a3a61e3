//! Publishing knowledge bases into Open WebUI.
//!
//! A knowledge base whose manager turned publishing on has a publication in the store. A publish
//! is requested when it is turned on, after every sync run that got through, and on demand; every
//! instance runs a loop that claims requested publications with a lease (so one knowledge base is
//! never published by two instances at once, and a publish cut short by a crash is taken up again
//! once its lease runs out) and publishes them:
//!
//! 1. the knowledge base's processed documents become a manifest (folder, name, SHA-256 of the
//!    original bytes, which is also the blob's key) and its readers a list of emails;
//! 2. when that input has the digest of the last complete publish, there is nothing to do;
//! 3. otherwise the Open WebUI knowledge base is created (first publish) or checked, its grants
//!    set to the readers that have an Open WebUI account, and its files brought to the manifest
//!    with Open WebUI's own sync protocol ([`kbsync_openwebui::OpenWebUiClient::publish`]).
//!
//! Open WebUI grants access per knowledge base, not per file, so a knowledge base is published only
//! to the people who may read every document in it; those who may read some are left out, with the
//! reason shown to its manager. Open WebUI being down fails the publish (retried at the next
//! request), never the sync.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kbsync_core::{
    Clock, Document, DocumentStatus, KbId, KnowledgeBase, LeftOutReader, Publication, PublicationCounts,
    PublicationStatus, PublishFailure, PublishOutcome, PublishRun, Random, UserKind,
};
use kbsync_openwebui::{
    AccessGrant, FileContent, ManifestFile, OpenWebUiClient, OpenWebUiError, PublishProgress, PublishReport,
};
use kbsync_store::{BlobStore, Page, Store, StoreError};
use kbsync_sync::events::{SyncEvent, SyncEvents};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often and how the publisher works.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// Time between two looks for requested publishes: a change is published at most about this
    /// long after its sync run ends.
    pub tick: Duration,
    /// How long a lease lasts without renewal: an instance that dies mid-publish holds its
    /// knowledge base for at most this long before another instance publishes it.
    pub lease_ttl: chrono::Duration,
    /// How often a publish going on renews its lease (and writes its progress).
    pub renew_every: Duration,
    /// Knowledge bases one look claims at most (published one after the other).
    pub batch: u32,
    /// This instance, as lease owner.
    pub instance_id: String,
}

impl Default for PublisherSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(2),
            lease_ttl: chrono::Duration::minutes(2),
            renew_every: Duration::from_secs(5),
            batch: 8,
            instance_id: "kbsync".to_owned(),
        }
    }
}

/// Publishes requested knowledge bases into one Open WebUI; cheap to share.
pub struct Publisher {
    client: OpenWebUiClient,
    /// Open WebUI's address as people open it (links to its knowledge bases).
    web_url: String,
    store: Arc<dyn Store>,
    blobs: BlobStore,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    events: SyncEvents,
    settings: PublisherSettings,
}

/// Why a publish stopped before it compared files.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("{0}")]
    OpenWebUi(#[from] OpenWebUiError),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("another instance took the publish over")]
    LeaseLost,
}

impl Publisher {
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts a publisher works with, each built by the caller"
    )]
    pub fn new(
        client: OpenWebUiClient,
        web_url: String,
        store: Arc<dyn Store>,
        blobs: BlobStore,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        events: SyncEvents,
        settings: PublisherSettings,
    ) -> Self {
        Self {
            client,
            web_url: web_url.trim_end_matches('/').to_owned(),
            store,
            blobs,
            clock,
            random,
            events,
            settings,
        }
    }

    /// The Open WebUI client publishes go through.
    pub fn client(&self) -> &OpenWebUiClient {
        &self.client
    }

    /// Where people open an Open WebUI knowledge base.
    pub fn knowledge_url(&self, knowledge_id: &str) -> String {
        format!("{}/workspace/knowledge/{knowledge_id}", self.web_url)
    }

    /// Claims the requested publishes (up to `batch`) and runs them one after the other; returns
    /// how many it ran.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let due = self.store.due_publications(now, self.settings.batch).await?;
        let mut ran = 0;
        for kb_id in due {
            let now = self.clock.now();
            let Some(claimed) = self
                .store
                .claim_publication(
                    kb_id,
                    &self.settings.instance_id,
                    now,
                    now + self.settings.lease_ttl,
                )
                .await?
            else {
                continue;
            };
            self.publish_claimed(claimed).await;
            ran += 1;
        }
        Ok(ran)
    }

    /// The loop: looks for requested publishes every `tick` until `shutdown`.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            info!(
                tick_ms = self.settings.tick.as_millis() as u64,
                "Open WebUI publisher started"
            );
            let mut ticker = tokio::time::interval(self.settings.tick.max(Duration::from_millis(10)));
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => {
                        let work = self.tick();
                        tokio::select! {
                            // A publish cut short here is taken up again from the store (its
                            // request stays until a publish answers it).
                            _ = shutdown.cancelled() => break,
                            done = work => match done {
                                Ok(0) => {}
                                Ok(n) => debug!(published = n, "publisher tick"),
                                Err(e) => warn!(error = %e, "publisher tick failed; trying again at the next one"),
                            },
                        }
                    }
                }
            }
            info!("Open WebUI publisher stopped");
        })
    }

    /// Publishes one claimed knowledge base and records the outcome, renewing the lease (and
    /// writing progress) while it works.
    async fn publish_claimed(&self, claimed: Publication) {
        let kb_id = claimed.kb_id;
        let owner = self.settings.instance_id.clone();
        let started = self.clock.now();
        let (progress_tx, progress_rx) = watch::channel((0u64, 0u64));
        let stop_renewing = CancellationToken::new();
        // Also when this future is dropped half-way (shutdown, or the task aborted): a lease nobody
        // renews expires, and another instance takes the publish over.
        let _stop_on_drop = stop_renewing.clone().drop_guard();
        let renewer = tokio::spawn(renew_while_publishing(
            self.store.clone(),
            self.clock.clone(),
            kb_id,
            owner.clone(),
            self.settings.clone(),
            progress_rx,
            stop_renewing.clone(),
        ));
        let result = self.publish(&claimed, &progress_tx).await;
        stop_renewing.cancel();
        let lease_kept = renewer.await.unwrap_or(false);
        let finished = self.clock.now();
        let recorded = match result {
            Ok(Published::Unchanged) => {
                debug!(kb.id = %kb_id, "nothing changed since the last publish");
                self.store
                    .release_publication(kb_id, &owner, claimed.requested_at)
                    .await
            }
            Ok(Published::Done { outcome, digest }) => {
                self.record(kb_id, &owner, &claimed, started, finished, outcome, digest)
                    .await
            }
            Err(PublishError::LeaseLost) => {
                warn!(kb.id = %kb_id, "the publish lease was lost to another instance");
                return;
            }
            Err(e) => {
                let outcome = PublishOutcome {
                    status: PublicationStatus::Failed,
                    error: Some(e.to_string()),
                    counts: claimed.counts.clone(),
                    failures: Vec::new(),
                    left_out: claimed.left_out.clone(),
                };
                self.record(kb_id, &owner, &claimed, started, finished, outcome, None)
                    .await
            }
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => warn!(kb.id = %kb_id, "the publish lease was no longer ours when the publish ended"),
            Err(e) => {
                warn!(kb.id = %kb_id, error = %e, "could not record the publish; it is retried when the lease expires")
            }
        }
        if !lease_kept {
            debug!(kb.id = %kb_id, "the lease could not be renewed during the publish");
        }
        self.events
            .publish(kb_id, SyncEvent::Publish { done: 0, total: 0 });
    }

    #[expect(clippy::too_many_arguments, reason = "one publish's facts, recorded together")]
    async fn record(
        &self,
        kb_id: KbId,
        owner: &str,
        claimed: &Publication,
        started: chrono::DateTime<chrono::Utc>,
        finished: chrono::DateTime<chrono::Utc>,
        outcome: PublishOutcome,
        digest: Option<String>,
    ) -> Result<bool, StoreError> {
        let status = outcome.status;
        metrics::counter!("kbsync_openwebui_publishes_total", "status" => status.as_str()).increment(1);
        metrics::histogram!("kbsync_openwebui_publish_duration_seconds")
            .record((finished - started).num_milliseconds().max(0) as f64 / 1000.0);
        for (outcome_name, n) in [
            ("uploaded", outcome.counts.uploaded),
            ("removed", outcome.counts.removed),
            ("failed", outcome.counts.failed),
        ] {
            metrics::counter!("kbsync_openwebui_files_total", "outcome" => outcome_name).increment(n);
        }
        match &outcome.error {
            Some(error) if status == PublicationStatus::Failed => {
                warn!(kb.id = %kb_id, error = %error, "publishing into Open WebUI failed")
            }
            _ => info!(
                kb.id = %kb_id,
                uploaded = outcome.counts.uploaded,
                removed = outcome.counts.removed,
                unchanged = outcome.counts.unchanged,
                failed = outcome.counts.failed,
                "published into Open WebUI"
            ),
        }
        let run = PublishRun {
            id: self.random.uuid(),
            kb_id,
            started_at: started,
            finished_at: finished,
            outcome,
        };
        self.store
            .finish_publication(&run, owner, claimed.requested_at, digest.as_deref())
            .await
    }

    async fn publish(
        &self,
        claimed: &Publication,
        progress: &watch::Sender<(u64, u64)>,
    ) -> Result<Published, PublishError> {
        let kb_id = claimed.kb_id;
        let kb = self.store.get_kb(kb_id).await?;
        let (manifest, mut failures) = self.manifest(kb_id).await?;
        let readers = self.readers(&kb).await?;
        let digest = input_digest(claimed.knowledge_id.as_deref(), &manifest, &readers.emails);
        if claimed.knowledge_id.is_some() && claimed.published_digest.as_deref() == Some(digest.as_str()) {
            return Ok(Published::Unchanged);
        }

        let knowledge_id = match &claimed.knowledge_id {
            Some(id) => {
                self.client.knowledge(id).await?;
                id.clone()
            }
            None => {
                let created = self
                    .client
                    .create_knowledge(&kb.name, &knowledge_description(&kb))
                    .await?;
                if !self
                    .store
                    .set_publication_knowledge_id(kb_id, &self.settings.instance_id, &created.id)
                    .await?
                {
                    return Err(PublishError::LeaseLost);
                }
                info!(kb.id = %kb_id, openwebui.knowledge_id = %created.id, "created the Open WebUI knowledge base");
                created.id
            }
        };

        let accounts = self.client.users_by_email(&readers.emails).await?;
        let mut left_out = readers.left_out;
        let mut grants = Vec::new();
        for email in &readers.emails {
            match accounts.get(&email.to_lowercase()) {
                Some(user_id) => grants.push(AccessGrant {
                    user_id: user_id.clone(),
                }),
                None => left_out.push(LeftOutReader {
                    email: email.clone(),
                    reason: "has no Open WebUI account with this email".to_owned(),
                }),
            }
        }
        grants.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        grants.dedup_by(|a, b| a.user_id == b.user_id);
        self.client.set_access(&knowledge_id, &grants).await?;

        let events = self.events.clone();
        let report_progress = move |p: PublishProgress| {
            let (done, total) = (p.done as u64, p.total as u64);
            progress.send_replace((done, total));
            events.publish(kb_id, SyncEvent::Publish { done, total });
        };
        let content = BlobContent {
            blobs: self.blobs.clone(),
        };
        let report = self
            .client
            .publish(&knowledge_id, &manifest, &content, &report_progress)
            .await?;
        failures.extend(report.failed.iter().map(|f| PublishFailure {
            path: join_path(&f.path, &f.filename),
            error: f.error.clone(),
        }));
        let complete = failures.is_empty();
        let counts = counts(&report, manifest.len(), &grants, &left_out, failures.len());
        let error = (!complete).then(|| {
            format!(
                "{} file{} could not be published",
                failures.len(),
                if failures.len() == 1 { "" } else { "s" }
            )
        });
        Ok(Published::Done {
            outcome: PublishOutcome {
                status: PublicationStatus::Published,
                error,
                counts,
                failures,
                left_out,
            },
            digest: complete.then_some(digest),
        })
    }

    /// The knowledge base's processed documents as Open WebUI files: folder and name from the
    /// document's path. Two documents at the same path (two sources holding one name) cannot
    /// both be there: the first by path order is published, the others are failures.
    async fn manifest(&self, kb_id: KbId) -> Result<(Vec<ManifestFile>, Vec<PublishFailure>), StoreError> {
        let documents = all_documents(self.store.as_ref(), kb_id).await?;
        let mut seen = HashSet::new();
        let mut manifest = Vec::with_capacity(documents.len());
        let mut failures = Vec::new();
        for doc in documents
            .into_iter()
            .filter(|d| d.status == DocumentStatus::Processed)
        {
            let (path, filename) = split_path(&doc.path, &doc.name);
            if !seen.insert((path.clone(), filename.clone())) {
                failures.push(PublishFailure {
                    path: join_path(&path, &filename),
                    error: "another document of the knowledge base has the same path".to_owned(),
                });
                continue;
            }
            manifest.push(ManifestFile {
                key: doc.id.to_string(),
                path,
                filename,
                sha256: doc.content_hash,
                size: u64::try_from(doc.size).unwrap_or(0),
                content_type: doc.mime,
            });
        }
        Ok((manifest, failures))
    }

    /// Who may read every document of the knowledge base in kbsync (its owner, people it is
    /// granted to, and people the access lists of all its documents name), and who may read only
    /// some of it. Service accounts and disabled accounts are never published to.
    async fn readers(&self, kb: &KnowledgeBase) -> Result<Readers, StoreError> {
        let store = self.store.as_ref();
        let total = store
            .list_documents(kb.id, Page { limit: 1, offset: 0 })
            .await?
            .total;
        let mut whole: BTreeSet<kbsync_core::UserId> = BTreeSet::new();
        whole.insert(kb.owner_id);
        whole.extend(store.list_grants(kb.id).await?.into_iter().map(|g| g.user_id));
        let mut emails = Vec::new();
        let mut left_out = Vec::new();
        let mut offset = 0;
        loop {
            let page = store.list_accounts(Page { limit: 500, offset }).await?;
            let n = page.items.len() as u64;
            for account in page.items {
                let user = account.user;
                if user.disabled || user.kind == UserKind::Service {
                    continue;
                }
                if whole.contains(&user.id) {
                    emails.push(user.email);
                    continue;
                }
                if !store.reads_documents_of(kb.id, user.id).await? {
                    continue;
                }
                let readable = store
                    .list_readable_documents(kb.id, user.id, Page { limit: 1, offset: 0 })
                    .await?
                    .total;
                if readable >= total {
                    emails.push(user.email);
                } else {
                    left_out.push(LeftOutReader {
                        email: user.email,
                        reason: format!(
                            "may read {readable} of the {total} documents in kbsync; Open WebUI grants a whole knowledge base"
                        ),
                    });
                }
            }
            offset += n;
            if n == 0 || offset >= page.total {
                break;
            }
        }
        emails.sort();
        emails.dedup();
        Ok(Readers { emails, left_out })
    }
}

enum Published {
    /// What the publish would send is what the last complete one sent.
    Unchanged,
    Done {
        outcome: PublishOutcome,
        /// The input's digest, when every file made it.
        digest: Option<String>,
    },
}

struct Readers {
    /// People who may read the whole knowledge base, by email.
    emails: Vec<String>,
    left_out: Vec<LeftOutReader>,
}

/// Renews the lease every `renew_every` and writes the latest progress, until `stop`; returns
/// whether the lease was still ours at the last renewal.
async fn renew_while_publishing(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    kb_id: KbId,
    owner: String,
    settings: PublisherSettings,
    mut progress: watch::Receiver<(u64, u64)>,
    stop: CancellationToken,
) -> bool {
    let mut ticker = tokio::time::interval(settings.renew_every.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut kept = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return kept,
            _ = ticker.tick() => {}
        }
        let until = clock.now() + settings.lease_ttl;
        match store.renew_publication_lease(kb_id, &owner, until).await {
            Ok(ours) => kept = ours,
            Err(e) => warn!(kb.id = %kb_id, error = %e, "could not renew the publish lease"),
        }
        if progress.has_changed().unwrap_or(false) {
            let (done, total) = *progress.borrow_and_update();
            if let Err(e) = store.set_publication_progress(kb_id, &owner, done, total).await {
                debug!(kb.id = %kb_id, error = %e, "could not record publish progress");
            }
        }
    }
}

/// Files' bytes from the blob store, by the SHA-256 that is their key.
struct BlobContent {
    blobs: BlobStore,
}

#[async_trait]
impl FileContent for BlobContent {
    async fn read(&self, file: &ManifestFile) -> Result<bytes::Bytes, String> {
        self.blobs
            .read(&file.sha256)
            .await
            .map(bytes::Bytes::from)
            .map_err(|e| format!("the stored file could not be read: {e}"))
    }
}

async fn all_documents(store: &dyn Store, kb_id: KbId) -> Result<Vec<Document>, StoreError> {
    let mut out = Vec::new();
    loop {
        let page = store
            .list_documents(
                kb_id,
                Page {
                    limit: 1000,
                    offset: out.len() as u64,
                },
            )
            .await?;
        let n = page.items.len();
        out.extend(page.items);
        if n == 0 || out.len() as u64 >= page.total {
            return Ok(out);
        }
    }
}

/// A document's folder (relative, `/`-joined, `""` for the top) and file name, from its display
/// path inside the knowledge base.
fn split_path(path: &str, name: &str) -> (String, String) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    match segments.split_last() {
        Some((last, folders)) => (folders.join("/"), (*last).to_owned()),
        None => (String::new(), name.to_owned()),
    }
}

fn join_path(path: &str, filename: &str) -> String {
    if path.is_empty() {
        filename.to_owned()
    } else {
        format!("{path}/{filename}")
    }
}

fn knowledge_description(kb: &KnowledgeBase) -> String {
    if kb.description.trim().is_empty() {
        format!("Published by kbsync from the knowledge base \"{}\".", kb.name)
    } else {
        kb.description.clone()
    }
}

/// SHA-256 over what a publish sends: target, files (folder, name, content hash) and readers.
fn input_digest(knowledge_id: Option<&str>, manifest: &[ManifestFile], readers: &[String]) -> String {
    let mut files: Vec<(&str, &str, &str)> = manifest
        .iter()
        .map(|f| (f.path.as_str(), f.filename.as_str(), f.sha256.as_str()))
        .collect();
    files.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(knowledge_id.unwrap_or_default().as_bytes());
    hasher.update([0xff]);
    for (path, name, hash) in files {
        for part in [path, name, hash] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
    }
    hasher.update([0xff]);
    for email in readers {
        hasher.update(email.to_lowercase().as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

fn counts(
    report: &PublishReport,
    files: usize,
    grants: &[AccessGrant],
    left_out: &[LeftOutReader],
    failed: usize,
) -> PublicationCounts {
    let unique: HashMap<&str, ()> = grants.iter().map(|g| (g.user_id.as_str(), ())).collect();
    PublicationCounts {
        published: files.saturating_sub(report.failed.len()) as u64,
        uploaded: report.uploaded as u64,
        unchanged: report.unchanged as u64,
        removed: report.removed as u64,
        failed: failed as u64,
        readers_granted: unique.len() as u64,
        readers_left_out: left_out.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, name: &str, hash: &str) -> ManifestFile {
        ManifestFile {
            key: name.into(),
            path: path.into(),
            filename: name.into(),
            sha256: hash.into(),
            size: 1,
            content_type: "text/plain".into(),
        }
    }

    #[test]
    fn a_document_path_splits_into_folder_and_name() {
        assert_eq!(
            split_path("Reports/2024/q1.pdf", "q1.pdf"),
            ("Reports/2024".into(), "q1.pdf".into())
        );
        assert_eq!(
            split_path("/Docs/a.txt", "a.txt"),
            ("Docs".into(), "a.txt".into())
        );
        assert_eq!(split_path("a.txt", "a.txt"), (String::new(), "a.txt".into()));
        assert_eq!(split_path("", "upload.txt"), (String::new(), "upload.txt".into()));
        assert_eq!(join_path("", "a.txt"), "a.txt");
        assert_eq!(join_path("Docs/x", "a.txt"), "Docs/x/a.txt");
    }

    #[test]
    fn the_input_digest_ignores_order_and_sees_every_change() {
        let a = vec![file("", "a.txt", "h1"), file("D", "b.txt", "h2")];
        let b = vec![file("D", "b.txt", "h2"), file("", "a.txt", "h1")];
        let readers = vec!["x@example.com".to_owned()];
        let base = input_digest(Some("k"), &a, &readers);
        assert_eq!(base, input_digest(Some("k"), &b, &readers));
        assert_ne!(base, input_digest(Some("k2"), &a, &readers));
        assert_ne!(base, input_digest(Some("k"), &a, &[]));
        let renamed = vec![file("", "a2.txt", "h1"), file("D", "b.txt", "h2")];
        assert_ne!(base, input_digest(Some("k"), &renamed, &readers));
        let moved = vec![file("E", "a.txt", "h1"), file("D", "b.txt", "h2")];
        assert_ne!(base, input_digest(Some("k"), &moved, &readers));
        let changed = vec![file("", "a.txt", "h9"), file("D", "b.txt", "h2")];
        assert_ne!(base, input_digest(Some("k"), &changed, &readers));
    }
}
