//! Knowledge bases and who may read them: grants given by hand, and the grants sync derives
//! from the sources' sharing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{AccessGrant, KbId, KbType, KnowledgeBase, Permission, User, UserId};

use crate::{Page, PageOf, Result};

#[derive(Debug, Clone)]
pub struct NewKnowledgeBase {
    pub name: String,
    pub description: String,
    pub owner_id: UserId,
    pub kb_type: KbType,
}

/// Fields of a knowledge base that can change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KbPatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Who is asking, for access filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Reads everything.
    Admin,
    /// Reads what it owns or holds a grant on.
    User(UserId),
}

impl Reader {
    pub fn of(user: &User) -> Reader {
        if user.is_admin() {
            Reader::Admin
        } else {
            Reader::User(user.id)
        }
    }
}

/// Knowledge bases, and the manual grants that let people read or write a whole one. (Who may
/// read a synced document comes from its source: see [`crate::AccessStore`].)
#[async_trait]
pub trait KnowledgeBaseStore: Send + Sync {
    // --- knowledge bases -------------------------------------------------------------------

    async fn create_kb(&self, id: KbId, new: NewKnowledgeBase, now: DateTime<Utc>) -> Result<KnowledgeBase>;
    async fn get_kb(&self, id: KbId) -> Result<KnowledgeBase>;
    /// The knowledge bases a reader may read, newest first, with the total count.
    async fn list_readable_kbs(&self, reader: Reader, page: Page) -> Result<PageOf<KnowledgeBase>>;
    async fn update_kb(&self, id: KbId, patch: KbPatch, now: DateTime<Utc>) -> Result<KnowledgeBase>;
    /// Deletes the knowledge base with its documents, chunks and grants, and records its
    /// documents' content hashes as orphan candidates at `now`. Returns the content hashes that
    /// no remaining document references (their blobs are collected later).
    async fn delete_kb(&self, id: KbId, now: DateTime<Utc>) -> Result<Vec<String>>;

    // --- access grants ---------------------------------------------------------------------

    /// The strongest permission any grant (manual or sync) gives this user on this knowledge base.
    async fn strongest_grant(&self, kb_id: KbId, user_id: UserId) -> Result<Option<Permission>>;
    async fn list_grants(&self, kb_id: KbId) -> Result<Vec<AccessGrant>>;
    /// Replaces the manual grants of a knowledge base. A user listed
    /// under both gets write. An unknown user id is `InvalidReference` and changes nothing.
    async fn set_manual_grants(&self, kb_id: KbId, read: &[UserId], write: &[UserId]) -> Result<()>;

    // --- permission reads --------------------------------------------------------------------

    /// Records `now` as the time sync last read every permission of the knowledge base's sources
    /// ([`KnowledgeBaseStore::sharing_read_at`]). `NotFound` for an unknown knowledge base.
    async fn mark_sharing_read(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<()>;
    /// When sync last read every permission of the knowledge base's sources; `None` when they
    /// must be read again in full: never done, or asked for with `forget_sharing_reads`.
    /// `NotFound` for an unknown knowledge base.
    async fn sharing_read_at(&self, kb_id: KbId) -> Result<Option<DateTime<Utc>>>;
    /// Makes the next run of one knowledge base (`Some`), or of every one (`None`: the sharing
    /// policy may have changed with the settings), read its sharing again. An unknown knowledge
    /// base is not an error.
    async fn forget_sharing_reads(&self, kb_id: Option<KbId>) -> Result<()>;
    /// Clears the documents' access lists of every knowledge base whose connection has needed
    /// re-authorization since `needs_reauth_since` or earlier (manual grants stay: only those
    /// who may read the whole knowledge base still read it), and makes their next run read the
    /// permissions again. Returns those knowledge bases (only ones that still had access lists,
    /// so calling it again returns nothing new).
    async fn withdraw_lapsed_document_access(&self, needs_reauth_since: DateTime<Utc>) -> Result<Vec<KbId>>;
}
