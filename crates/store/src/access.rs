//! Document-level access: the access list of every synced document (the principals its source
//! says may read it), the members of the groups those lists name, and the principals a kbsync
//! user is known as at a source. Search and listings filter with them inside their queries.
//!
//! A principal is a text key: `user:<id at the source>`, `email:<lower-cased address>`,
//! `group:<directory group id>`, `sitegroup:<id>@<site>`, or `everyone` (a link open to the
//! organisation or to anyone, written only when the administrator lets links grant). A user
//! matches `email:` of their own address, the `user:` keys recorded for them, every group whose
//! expanded members include one of those, and `everyone`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{Document, DocumentId, KbId, UserId};

use crate::{Page, PageOf, Result};

/// The principal every signed-in user matches.
pub const EVERYONE: &str = "everyone";

/// One document's access list, as sync computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentAcl {
    /// The remote item the document mirrors.
    pub source_item_id: String,
    /// The principals that may read it (any order, duplicates ignored). Empty: no one beyond
    /// those who may read the whole knowledge base.
    pub principals: Vec<String>,
}

/// A group the access lists of a knowledge base name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedGroup {
    pub key: String,
    /// When its members were last read from the source; `None`: never.
    pub refreshed_at: Option<DateTime<Utc>>,
}

/// The id of the access list holding exactly these principals (a digest of the sorted set).
pub fn acl_id(principals: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&str> = principals.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hasher = Sha256::new();
    for p in sorted {
        hasher.update(p.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..16])
}

#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Sets the access lists of a knowledge base's documents, by the item they mirror, with their
    /// chunks, in one transaction. Items without a document are skipped.
    async fn set_document_acls(&self, kb_id: KbId, acls: &[DocumentAcl], now: DateTime<Utc>) -> Result<()>;
    /// The groups the access lists of a knowledge base's documents name.
    async fn named_groups(&self, kb_id: KbId) -> Result<Vec<NamedGroup>>;
    /// Replaces a group's members (principal keys) and records `now` as its refresh time.
    async fn replace_group_members(
        &self,
        group_key: &str,
        members: &[String],
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Records that a user is `principal` at a source (e.g. `user:<directory object id>`).
    async fn add_user_principal(&self, user_id: UserId, principal: &str) -> Result<()>;
    /// The principals a user matches, groups expanded (for display and diagnostics).
    async fn user_principals(&self, user_id: UserId) -> Result<Vec<String>>;
    /// Whether the access list of at least one document of the knowledge base names the user.
    async fn reads_documents_of(&self, kb_id: KbId, user_id: UserId) -> Result<bool>;
    /// Whether the access list of this document names the user.
    async fn may_read_document(&self, kb_id: KbId, id: DocumentId, user_id: UserId) -> Result<bool>;
    /// The documents of a knowledge base whose access lists name the user, ordered by path, with
    /// their total count.
    async fn list_readable_documents(
        &self,
        kb_id: KbId,
        user_id: UserId,
        page: Page,
    ) -> Result<PageOf<Document>>;
}
