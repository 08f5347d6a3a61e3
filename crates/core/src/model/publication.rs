//! Publishing a knowledge base into Open WebUI: whether it is on, where to, and how the last
//! publish went. The durable truth every instance reads; the publisher writes it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{KbId, UnknownVariant};

string_enum!(
    /// Where a knowledge base's publication stands: `pending` (wanted, not started), `publishing`
    /// (an instance is at it), `published` (the last publish brought Open WebUI's knowledge base to
    /// kbsync's documents; some files may still have failed), `failed` (the last publish could not
    /// finish: Open WebUI unreachable, the key refused, its knowledge base gone).
    PublicationStatus, "publication status", {
        Pending => "pending",
        Publishing => "publishing",
        Published => "published",
        Failed => "failed",
    }
);

/// Counts of the last publish that got as far as comparing files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct PublicationCounts {
    /// Files Open WebUI's knowledge base holds after the publish, as kbsync sent them.
    pub published: u64,
    pub uploaded: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub failed: u64,
    /// People granted read access in Open WebUI.
    pub readers_granted: u64,
    /// People who may read some of the knowledge base in kbsync but were not granted it there.
    pub readers_left_out: u64,
}

/// A file the last publish could not bring into Open WebUI, with Open WebUI's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublishFailure {
    pub path: String,
    pub error: String,
}

/// A person who may read some of the knowledge base in kbsync but has no grant in Open WebUI,
/// and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeftOutReader {
    pub email: String,
    pub reason: String,
}

/// A knowledge base's publication into Open WebUI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub kb_id: KbId,
    /// The Open WebUI knowledge base; `None` until the first publish creates it.
    pub knowledge_id: Option<String>,
    pub status: PublicationStatus,
    /// When a publish was last asked for and not yet done (`None`: nothing waits).
    pub requested_at: Option<DateTime<Utc>>,
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_published_at: Option<DateTime<Utc>>,
    /// Why the last publish failed, or what failed in it.
    pub error: Option<String>,
    /// Files done / to upload, while publishing.
    pub progress_done: u64,
    pub progress_total: u64,
    pub counts: PublicationCounts,
    pub failures: Vec<PublishFailure>,
    pub left_out: Vec<LeftOutReader>,
    /// Digest of what the last complete publish sent (its files and readers); `None` when the
    /// next publish must compare with Open WebUI whatever it sends.
    pub published_digest: Option<String>,
    pub enabled_at: DateTime<Utc>,
}

/// The outcome of one publish, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// `Published` or `Failed`.
    pub status: PublicationStatus,
    pub error: Option<String>,
    pub counts: PublicationCounts,
    pub failures: Vec<PublishFailure>,
    pub left_out: Vec<LeftOutReader>,
}

/// One publish, kept as history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRun {
    pub id: uuid::Uuid,
    pub kb_id: KbId,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: PublishOutcome,
}
