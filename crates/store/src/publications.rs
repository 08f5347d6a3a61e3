//! Publishing knowledge bases into Open WebUI: which ones publish and where to, the lease an
//! instance holds while it publishes (so two instances never publish one knowledge base at once),
//! what the last publish did, and a history of publishes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{KbId, Publication, PublishRun};

use crate::Result;

/// How many publishes of one knowledge base the history keeps.
pub const PUBLISH_HISTORY: u32 = 50;

#[async_trait]
pub trait PublicationStore: Send + Sync {
    /// Turns publishing on for a knowledge base, or points it elsewhere: `knowledge_id` names an
    /// existing Open WebUI knowledge base, `None` has the next publish create one (keeping the one
    /// already created, if the target does not change). The publication becomes `pending` with a
    /// publish requested now. `InvalidReference` when the knowledge base does not exist.
    async fn enable_publication(
        &self,
        kb_id: KbId,
        knowledge_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Publication>;
    /// The knowledge base's publication, `None` when it does not publish.
    async fn publication(&self, kb_id: KbId) -> Result<Option<Publication>>;
    /// Turns publishing off (history included); whether it was on.
    async fn disable_publication(&self, kb_id: KbId) -> Result<bool>;
    /// Asks for a publish of the knowledge base, when it publishes; returns whether it does. With
    /// `compare`, the publish compares with Open WebUI even when what it sends has not changed
    /// since the last complete publish (the digest is forgotten).
    async fn request_publication(&self, kb_id: KbId, now: DateTime<Utc>, compare: bool) -> Result<bool>;
    /// Knowledge bases with a publish requested and no live lease, oldest request first.
    async fn due_publications(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<KbId>>;
    /// Takes the lease of a due publication for `owner` until `lease_until` and marks it
    /// `publishing` with its progress reset; `None` when nothing is requested or another owner
    /// holds a live lease. The returned publication's `requested_at` is the request this publish
    /// answers (give it back to `finish_publication`).
    async fn claim_publication(
        &self,
        kb_id: KbId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Publication>>;
    /// Extends `owner`'s lease; false when the lease is no longer its own.
    async fn renew_publication_lease(
        &self,
        kb_id: KbId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Remembers the Open WebUI knowledge base a publish created; false when the lease is no
    /// longer `owner`'s.
    async fn set_publication_knowledge_id(
        &self,
        kb_id: KbId,
        owner: &str,
        knowledge_id: &str,
    ) -> Result<bool>;
    /// Records progress of the publish going on (files done of those to upload).
    async fn set_publication_progress(&self, kb_id: KbId, owner: &str, done: u64, total: u64) -> Result<()>;
    /// Records how a publish ended and releases the lease: status, error, counts, failed files
    /// and left-out readers; `last_published_at` when it published. The request it answered
    /// (`answered`, from the claim) is cleared unless a newer one came meanwhile. Adds the publish
    /// to the history (keeping the latest [`PUBLISH_HISTORY`]). False when the lease was no longer
    /// `owner`'s (nothing is written). `digest` is what the publish sent when it completed without
    /// failed files (`None` otherwise: the next publish compares again).
    async fn finish_publication(
        &self,
        run: &PublishRun,
        owner: &str,
        answered: Option<DateTime<Utc>>,
        digest: Option<&str>,
    ) -> Result<bool>;
    /// Releases `owner`'s lease after a publish that found nothing to do (what it would send has the
    /// digest of the last complete publish): the publication is `published` again, the answered
    /// request cleared (unless a newer one came), and no history is written. False when the lease
    /// was no longer `owner`'s.
    async fn release_publication(
        &self,
        kb_id: KbId,
        owner: &str,
        answered: Option<DateTime<Utc>>,
    ) -> Result<bool>;
    /// The knowledge base's latest publishes, newest first.
    async fn publish_runs(&self, kb_id: KbId, limit: u32) -> Result<Vec<PublishRun>>;
}
