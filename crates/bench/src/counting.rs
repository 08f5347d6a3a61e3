//! A [`Store`] that counts the calls made through it (each one is one or a few database
//! queries), by method, and delegates everything to the store it wraps.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{
    AccessGrant, Chunk, Connection, Document, DocumentId, KbId, KnowledgeBase, Passage, Permission,
    SearchHit, Source, SyncFailure, SyncProgress, SyncRun, SyncRunOutcome, SyncState, SyncTrigger, User,
    UserId,
};
use kbsync_store::*;

tokio::task_local! {
    /// Set around the code being measured: calls made from within it (not from tasks it spawns)
    /// are also counted apart, in [`CountingStore::scoped_counts`].
    pub static SCOPE: ();
}

pub struct CountingStore {
    inner: Arc<dyn Store>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    scoped: Mutex<BTreeMap<&'static str, u64>>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            counts: Mutex::new(BTreeMap::new()),
            scoped: Mutex::new(BTreeMap::new()),
        }
    }

    fn count(&self, method: &'static str) {
        if SCOPE.try_with(|_| ()).is_ok() {
            *self
                .scoped
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(method)
                .or_default() += 1;
        }
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(method)
            .or_default() += 1;
    }

    /// Calls made within [`SCOPE`], by method.
    pub fn scoped_counts(&self) -> BTreeMap<&'static str, u64> {
        self.scoped.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Calls by method so far.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl DatabaseStore for CountingStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn migrate(&self) -> Result<()> {
        self.count("migrate");
        self.inner.migrate().await
    }

    async fn ping(&self) -> Result<()> {
        self.count("ping");
        self.inner.ping().await
    }
}

#[async_trait]
impl UserStore for CountingStore {
    async fn create_user(&self, id: UserId, new: NewUser, now: DateTime<Utc>) -> Result<User> {
        self.count("create_user");
        self.inner.create_user(id, new, now).await
    }

    async fn count_users(&self) -> Result<u64> {
        self.count("count_users");
        self.inner.count_users().await
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        self.count("get_user");
        self.inner.get_user(id).await
    }

    async fn get_credentials_by_email(&self, email: &str) -> Result<UserCredentials> {
        self.count("get_credentials_by_email");
        self.inner.get_credentials_by_email(email).await
    }

    async fn users_by_emails(&self, emails: &[String]) -> Result<Vec<User>> {
        self.count("users_by_emails");
        self.inner.users_by_emails(emails).await
    }

    async fn all_user_ids(&self) -> Result<Vec<UserId>> {
        self.count("all_user_ids");
        self.inner.all_user_ids().await
    }

    async fn user_for_identity(&self, issuer: &str, subject: &str) -> Result<User> {
        self.count("user_for_identity");
        self.inner.user_for_identity(issuer, subject).await
    }

    async fn link_identity(
        &self,
        issuer: &str,
        subject: &str,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.count("link_identity");
        self.inner.link_identity(issuer, subject, user_id, now).await
    }

    async fn record_identity_sign_in(
        &self,
        issuer: &str,
        subject: &str,
        email: &str,
        display_name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<User> {
        self.count("record_identity_sign_in");
        self.inner
            .record_identity_sign_in(issuer, subject, email, display_name, now)
            .await
    }

    async fn create_sign_in_flow(&self, flow: SignInFlowRecord) -> Result<()> {
        self.count("create_sign_in_flow");
        self.inner.create_sign_in_flow(flow).await
    }

    async fn take_sign_in_flow(&self, state_hash: &str, now: DateTime<Utc>) -> Result<SignInFlowRecord> {
        self.count("take_sign_in_flow");
        self.inner.take_sign_in_flow(state_hash, now).await
    }

    async fn delete_expired_sign_in_flows(&self, now: DateTime<Utc>) -> Result<u64> {
        self.count("delete_expired_sign_in_flows");
        self.inner.delete_expired_sign_in_flows(now).await
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: UserId,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.count("create_session");
        self.inner
            .create_session(token_hash, user_id, created_at, expires_at)
            .await
    }

    async fn user_for_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<User> {
        self.count("user_for_session");
        self.inner.user_for_session(token_hash, now).await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.count("delete_session");
        self.inner.delete_session(token_hash).await
    }

    async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        self.count("purge_expired_sessions");
        self.inner.purge_expired_sessions(now).await
    }

    async fn login_failures(&self, email: &str) -> Result<LoginFailures> {
        self.count("login_failures");
        self.inner.login_failures(email).await
    }

    async fn begin_login_attempt(
        &self,
        email: &str,
        now: DateTime<Utc>,
        backoff: &LoginBackoff,
    ) -> Result<LoginAttempt> {
        self.count("begin_login_attempt");
        self.inner.begin_login_attempt(email, now, backoff).await
    }

    async fn clear_login_failures(&self, email: &str) -> Result<()> {
        self.count("clear_login_failures");
        self.inner.clear_login_failures(email).await
    }

    async fn begin_address_attempt(
        &self,
        address: &str,
        now: DateTime<Utc>,
        limit: &AddressLimit,
    ) -> Result<LoginAttempt> {
        self.count("begin_address_attempt");
        self.inner.begin_address_attempt(address, now, limit).await
    }

    async fn give_back_address_attempt(&self, address: &str) -> Result<()> {
        self.count("give_back_address_attempt");
        self.inner.give_back_address_attempt(address).await
    }

    async fn purge_login_failures(&self, now: DateTime<Utc>, forget_before: DateTime<Utc>) -> Result<u64> {
        self.count("purge_login_failures");
        self.inner.purge_login_failures(now, forget_before).await
    }
}

#[async_trait]
impl KnowledgeBaseStore for CountingStore {
    async fn create_kb(&self, id: KbId, new: NewKnowledgeBase, now: DateTime<Utc>) -> Result<KnowledgeBase> {
        self.count("create_kb");
        self.inner.create_kb(id, new, now).await
    }

    async fn get_kb(&self, id: KbId) -> Result<KnowledgeBase> {
        self.count("get_kb");
        self.inner.get_kb(id).await
    }

    async fn list_readable_kbs(&self, reader: Reader, page: Page) -> Result<PageOf<KnowledgeBase>> {
        self.count("list_readable_kbs");
        self.inner.list_readable_kbs(reader, page).await
    }

    async fn update_kb(&self, id: KbId, patch: KbPatch, now: DateTime<Utc>) -> Result<KnowledgeBase> {
        self.count("update_kb");
        self.inner.update_kb(id, patch, now).await
    }

    async fn delete_kb(&self, id: KbId, now: DateTime<Utc>) -> Result<Vec<String>> {
        self.count("delete_kb");
        self.inner.delete_kb(id, now).await
    }

    async fn strongest_grant(&self, kb_id: KbId, user_id: UserId) -> Result<Option<Permission>> {
        self.count("strongest_grant");
        self.inner.strongest_grant(kb_id, user_id).await
    }

    async fn list_grants(&self, kb_id: KbId) -> Result<Vec<AccessGrant>> {
        self.count("list_grants");
        self.inner.list_grants(kb_id).await
    }

    async fn set_manual_grants(&self, kb_id: KbId, read: &[UserId], write: &[UserId]) -> Result<()> {
        self.count("set_manual_grants");
        self.inner.set_manual_grants(kb_id, read, write).await
    }

    async fn mark_sharing_read(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<()> {
        self.count("mark_sharing_read");
        self.inner.mark_sharing_read(kb_id, now).await
    }

    async fn sharing_read_at(&self, kb_id: KbId) -> Result<Option<DateTime<Utc>>> {
        self.count("sharing_read_at");
        self.inner.sharing_read_at(kb_id).await
    }

    async fn forget_sharing_reads(&self, kb_id: Option<KbId>) -> Result<()> {
        self.count("forget_sharing_reads");
        self.inner.forget_sharing_reads(kb_id).await
    }

    async fn withdraw_lapsed_document_access(&self, needs_reauth_since: DateTime<Utc>) -> Result<Vec<KbId>> {
        self.count("withdraw_lapsed_document_access");
        self.inner
            .withdraw_lapsed_document_access(needs_reauth_since)
            .await
    }
}

#[async_trait]
impl DocumentStore for CountingStore {
    async fn create_document(
        &self,
        id: DocumentId,
        new: NewDocument,
        now: DateTime<Utc>,
    ) -> Result<Document> {
        self.count("create_document");
        self.inner.create_document(id, new, now).await
    }

    async fn get_document(&self, kb_id: KbId, id: DocumentId) -> Result<Document> {
        self.count("get_document");
        self.inner.get_document(kb_id, id).await
    }

    async fn list_documents(&self, kb_id: KbId, page: Page) -> Result<PageOf<Document>> {
        self.count("list_documents");
        self.inner.list_documents(kb_id, page).await
    }

    async fn complete_document(&self, id: DocumentId, chunks: &[Chunk], now: DateTime<Utc>) -> Result<()> {
        self.count("complete_document");
        self.inner.complete_document(id, chunks, now).await
    }

    async fn fail_document(&self, id: DocumentId, error: &str, now: DateTime<Utc>) -> Result<()> {
        self.count("fail_document");
        self.inner.fail_document(id, error, now).await
    }

    async fn strike_document(
        &self,
        id: DocumentId,
        content: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<kbsync_core::DocumentStatus> {
        self.count("strike_document");
        self.inner.strike_document(id, content, reason, now).await
    }

    async fn quarantined_documents(&self, kb_id: KbId) -> Result<Vec<kbsync_store::QuarantinedDocument>> {
        self.count("quarantined_documents");
        self.inner.quarantined_documents(kb_id).await
    }

    async fn put_uploaded_document(
        &self,
        id: DocumentId,
        new: NewDocument,
        now: DateTime<Utc>,
    ) -> Result<(Document, bool)> {
        self.count("put_uploaded_document");
        self.inner.put_uploaded_document(id, new, now).await
    }

    async fn delete_document(
        &self,
        kb_id: KbId,
        id: DocumentId,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        self.count("delete_document");
        self.inner.delete_document(kb_id, id, now).await
    }

    async fn pending_documents(&self, limit: u32) -> Result<Vec<Document>> {
        self.count("pending_documents");
        self.inner.pending_documents(limit).await
    }

    async fn source_documents(&self, source_id: uuid::Uuid) -> Result<Vec<Document>> {
        self.count("source_documents");
        self.inner.source_documents(source_id).await
    }

    async fn source_documents_of_items(
        &self,
        source_ids: &[uuid::Uuid],
        item_ids: &[String],
    ) -> Result<Vec<Document>> {
        self.count("source_documents_of_items");
        self.inner.source_documents_of_items(source_ids, item_ids).await
    }

    async fn document_by_source_item(&self, kb_id: KbId, source_item_id: &str) -> Result<Option<Document>> {
        self.count("document_by_source_item");
        self.inner.document_by_source_item(kb_id, source_item_id).await
    }

    async fn upsert_source_document(
        &self,
        id: DocumentId,
        source_id: uuid::Uuid,
        new: NewDocument,
        now: DateTime<Utc>,
    ) -> Result<(Document, Option<String>)> {
        self.count("upsert_source_document");
        self.inner.upsert_source_document(id, source_id, new, now).await
    }

    async fn update_document_location(
        &self,
        kb_id: KbId,
        id: DocumentId,
        location: DocumentLocation,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.count("update_document_location");
        self.inner
            .update_document_location(kb_id, id, location, now)
            .await
    }
}

#[async_trait]
impl SearchStore for CountingStore {
    async fn search(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        self.count("search");
        self.inner.search(query).await
    }

    async fn retrieve(&self, query: RetrieveQuery<'_>) -> Result<Vec<Passage>> {
        self.count("retrieve");
        self.inner.retrieve(query).await
    }
}

#[async_trait]
impl ConnectionStore for CountingStore {
    async fn create_oauth_state(&self, state: NewOAuthState) -> Result<()> {
        self.count("create_oauth_state");
        self.inner.create_oauth_state(state).await
    }

    async fn take_oauth_state(&self, state_hash: &str, now: DateTime<Utc>) -> Result<OAuthState> {
        self.count("take_oauth_state");
        self.inner.take_oauth_state(state_hash, now).await
    }

    async fn delete_expired_oauth_states(&self, now: DateTime<Utc>) -> Result<u64> {
        self.count("delete_expired_oauth_states");
        self.inner.delete_expired_oauth_states(now).await
    }

    async fn get_connection(&self, kb_id: KbId) -> Result<Connection> {
        self.count("get_connection");
        self.inner.get_connection(kb_id).await
    }

    async fn upsert_connection(&self, new: NewConnection, now: DateTime<Utc>) -> Result<Connection> {
        self.count("upsert_connection");
        self.inner.upsert_connection(new, now).await
    }

    async fn delete_connection(&self, kb_id: KbId) -> Result<()> {
        self.count("delete_connection");
        self.inner.delete_connection(kb_id).await
    }

    async fn try_acquire_refresh_lease(
        &self,
        kb_id: KbId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        self.count("try_acquire_refresh_lease");
        self.inner
            .try_acquire_refresh_lease(kb_id, owner, now, until)
            .await
    }

    async fn store_refreshed_tokens(
        &self,
        kb_id: KbId,
        owner: &str,
        tokens: RefreshedTokens,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.count("store_refreshed_tokens");
        self.inner.store_refreshed_tokens(kb_id, owner, tokens, now).await
    }

    async fn release_refresh_lease(&self, kb_id: KbId, owner: &str) -> Result<()> {
        self.count("release_refresh_lease");
        self.inner.release_refresh_lease(kb_id, owner).await
    }

    async fn mark_needs_reauth(&self, kb_id: KbId, owner: &str, now: DateTime<Utc>) -> Result<bool> {
        self.count("mark_needs_reauth");
        self.inner.mark_needs_reauth(kb_id, owner, now).await
    }
}

#[async_trait]
impl SourceStore for CountingStore {
    async fn add_source(&self, id: uuid::Uuid, new: NewSource, now: DateTime<Utc>) -> Result<Source> {
        self.count("add_source");
        self.inner.add_source(id, new, now).await
    }

    async fn list_sources(&self, kb_id: KbId) -> Result<Vec<Source>> {
        self.count("list_sources");
        self.inner.list_sources(kb_id).await
    }

    async fn delete_source(
        &self,
        kb_id: KbId,
        source_id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        self.count("delete_source");
        self.inner.delete_source(kb_id, source_id, now).await
    }

    async fn save_source_items(
        &self,
        source_id: uuid::Uuid,
        cursor: &str,
        saved: SavedItems<'_>,
    ) -> Result<()> {
        self.count("save_source_items");
        self.inner.save_source_items(source_id, cursor, saved).await
    }

    async fn forget_source_state(&self, source_id: uuid::Uuid) -> Result<()> {
        self.count("forget_source_state");
        self.inner.forget_source_state(source_id).await
    }

    async fn advance_source_cursor(&self, source_id: uuid::Uuid, cursor: &str) -> Result<()> {
        self.count("advance_source_cursor");
        self.inner.advance_source_cursor(source_id, cursor).await
    }

    async fn save_round_page(&self, source_id: uuid::Uuid, page: RoundPage<'_>) -> Result<()> {
        self.count("save_round_page");
        self.inner.save_round_page(source_id, page).await
    }

    async fn round_page(&self, source_id: uuid::Uuid, page: u64) -> Result<Vec<String>> {
        self.count("round_page");
        self.inner.round_page(source_id, page).await
    }

    async fn forget_round(&self, source_id: uuid::Uuid) -> Result<()> {
        self.count("forget_round");
        self.inner.forget_round(source_id).await
    }

    async fn source_items(&self, source_id: uuid::Uuid, which: ItemSelection<'_>) -> Result<Vec<SourceItem>> {
        self.count("source_items");
        self.inner.source_items(source_id, which).await
    }

    async fn legacy_source_state(&self, source_id: uuid::Uuid) -> Result<Option<String>> {
        self.count("legacy_source_state");
        self.inner.legacy_source_state(source_id).await
    }

    async fn mark_source_revoked(&self, source_id: uuid::Uuid, now: DateTime<Utc>) -> Result<()> {
        self.count("mark_source_revoked");
        self.inner.mark_source_revoked(source_id, now).await
    }

    async fn clear_source_revoked(&self, source_id: uuid::Uuid) -> Result<()> {
        self.count("clear_source_revoked");
        self.inner.clear_source_revoked(source_id).await
    }
}

#[async_trait]
impl ScheduleStore for CountingStore {
    async fn claim_due_syncs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedSync>> {
        self.count("claim_due_syncs");
        self.inner.claim_due_syncs(owner, now, lease_until, limit).await
    }

    async fn try_claim_sync(
        &self,
        kb_id: KbId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        self.count("try_claim_sync");
        self.inner.try_claim_sync(kb_id, owner, now, lease_until).await
    }

    async fn request_drive_syncs(
        &self,
        datasource: &str,
        drive_id: &str,
        now: DateTime<Utc>,
        run_at: DateTime<Utc>,
    ) -> Result<Vec<KbId>> {
        self.count("request_drive_syncs");
        self.inner
            .request_drive_syncs(datasource, drive_id, now, run_at)
            .await
    }

    async fn renew_sync_lease(
        &self,
        kb_id: KbId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<LeaseRenewal> {
        self.count("renew_sync_lease");
        self.inner.renew_sync_lease(kb_id, owner, lease_until).await
    }

    async fn release_sync(&self, kb_id: KbId, owner: &str, release: &SyncRelease) -> Result<bool> {
        self.count("release_sync");
        self.inner.release_sync(kb_id, owner, release).await
    }

    async fn request_sync_cancel(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<bool> {
        self.count("request_sync_cancel");
        self.inner.request_sync_cancel(kb_id, now).await
    }

    async fn schedule_sync(&self, kb_id: KbId, next_sync_at: DateTime<Utc>) -> Result<()> {
        self.count("schedule_sync");
        self.inner.schedule_sync(kb_id, next_sync_at).await
    }

    async fn set_sync_interval(&self, kb_id: KbId, minutes: Option<u32>) -> Result<()> {
        self.count("set_sync_interval");
        self.inner.set_sync_interval(kb_id, minutes).await
    }

    async fn set_sync_status(&self, kb_id: KbId, status: kbsync_core::SyncStatus) -> Result<()> {
        self.count("set_sync_status");
        self.inner.set_sync_status(kb_id, status).await
    }

    async fn set_sync_progress(&self, kb_id: KbId, progress: &SyncProgress) -> Result<()> {
        self.count("set_sync_progress");
        self.inner.set_sync_progress(kb_id, progress).await
    }

    async fn get_sync_state(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<SyncState> {
        self.count("get_sync_state");
        self.inner.get_sync_state(kb_id, now).await
    }
}

#[async_trait]
impl RunStore for CountingStore {
    async fn create_sync_run(
        &self,
        id: uuid::Uuid,
        kb_id: KbId,
        trigger: SyncTrigger,
        due_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.count("create_sync_run");
        self.inner.create_sync_run(id, kb_id, trigger, due_at, now).await
    }

    async fn finish_sync_run(
        &self,
        id: uuid::Uuid,
        outcome: &SyncRunOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.count("finish_sync_run");
        self.inner.finish_sync_run(id, outcome, now).await
    }

    async fn list_sync_runs(&self, kb_id: KbId, limit: u32) -> Result<Vec<SyncRun>> {
        self.count("list_sync_runs");
        self.inner.list_sync_runs(kb_id, limit).await
    }

    async fn close_interrupted_runs(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<u64> {
        self.count("close_interrupted_runs");
        self.inner.close_interrupted_runs(kb_id, now).await
    }

    async fn record_sync_failures(&self, run_id: uuid::Uuid, failures: &[SyncFailure]) -> Result<()> {
        self.count("record_sync_failures");
        self.inner.record_sync_failures(run_id, failures).await
    }

    async fn list_sync_failures(&self, run_id: uuid::Uuid, skip: u64) -> Result<Vec<SyncFailure>> {
        self.count("list_sync_failures");
        self.inner.list_sync_failures(run_id, skip).await
    }

    async fn purge_sync_runs(&self, finished_before: DateTime<Utc>, keep_per_kb: u32) -> Result<u64> {
        self.count("purge_sync_runs");
        self.inner.purge_sync_runs(finished_before, keep_per_kb).await
    }

    async fn sync_activity(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        period: chrono::TimeDelta,
    ) -> Result<Vec<RunActivity>> {
        self.count("sync_activity");
        self.inner.sync_activity(since, until, period).await
    }
}

#[async_trait]
impl AccessStore for CountingStore {
    async fn set_document_acls(&self, kb_id: KbId, acls: &[DocumentAcl], now: DateTime<Utc>) -> Result<()> {
        self.count("set_document_acls");
        self.inner.set_document_acls(kb_id, acls, now).await
    }

    async fn named_groups(&self, kb_id: KbId) -> Result<Vec<NamedGroup>> {
        self.count("named_groups");
        self.inner.named_groups(kb_id).await
    }

    async fn replace_group_members(
        &self,
        group_key: &str,
        members: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.count("replace_group_members");
        self.inner.replace_group_members(group_key, members, now).await
    }

    async fn add_user_principal(&self, user_id: UserId, principal: &str) -> Result<()> {
        self.count("add_user_principal");
        self.inner.add_user_principal(user_id, principal).await
    }

    async fn user_principals(&self, user_id: UserId) -> Result<Vec<String>> {
        self.count("user_principals");
        self.inner.user_principals(user_id).await
    }

    async fn reads_documents_of(&self, kb_id: KbId, user_id: UserId) -> Result<bool> {
        self.count("reads_documents_of");
        self.inner.reads_documents_of(kb_id, user_id).await
    }

    async fn may_read_document(&self, kb_id: KbId, id: DocumentId, user_id: UserId) -> Result<bool> {
        self.count("may_read_document");
        self.inner.may_read_document(kb_id, id, user_id).await
    }

    async fn list_readable_documents(
        &self,
        kb_id: KbId,
        user_id: UserId,
        page: Page,
    ) -> Result<PageOf<Document>> {
        self.count("list_readable_documents");
        self.inner.list_readable_documents(kb_id, user_id, page).await
    }
}

#[async_trait]
impl AccountStore for CountingStore {
    async fn list_accounts(&self, page: Page) -> Result<PageOf<Account>> {
        self.count("list_accounts");
        self.inner.list_accounts(page).await
    }

    async fn get_account(&self, id: UserId) -> Result<Account> {
        self.count("get_account");
        self.inner.get_account(id).await
    }

    async fn create_service_account(
        &self,
        id: UserId,
        email: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<User> {
        self.count("create_service_account");
        self.inner.create_service_account(id, email, name, now).await
    }

    async fn change_account(&self, id: UserId, change: AccountChange, now: DateTime<Utc>) -> Result<User> {
        self.count("change_account");
        self.inner.change_account(id, change, now).await
    }

    async fn set_password_hash(&self, id: UserId, phc: &str, keep_session: Option<&str>) -> Result<()> {
        self.count("set_password_hash");
        self.inner.set_password_hash(id, phc, keep_session).await
    }

    async fn owned_kbs(&self, id: UserId) -> Result<Vec<KbId>> {
        self.count("owned_kbs");
        self.inner.owned_kbs(id).await
    }

    async fn delete_account(&self, id: UserId, transfer_to: Option<UserId>) -> Result<()> {
        self.count("delete_account");
        self.inner.delete_account(id, transfer_to).await
    }
}

#[async_trait]
impl ApiKeyStore for CountingStore {
    async fn create_api_key(
        &self,
        id: uuid::Uuid,
        new: NewApiKey,
        now: DateTime<Utc>,
    ) -> Result<kbsync_core::ApiKey> {
        self.count("create_api_key");
        self.inner.create_api_key(id, new, now).await
    }

    async fn list_api_keys(&self, user_id: UserId) -> Result<Vec<kbsync_core::ApiKey>> {
        self.count("list_api_keys");
        self.inner.list_api_keys(user_id).await
    }

    async fn list_all_api_keys(&self) -> Result<Vec<KeyWithOwner>> {
        self.count("list_all_api_keys");
        self.inner.list_all_api_keys().await
    }

    async fn delete_api_key(&self, id: uuid::Uuid, owner: Option<UserId>) -> Result<()> {
        self.count("delete_api_key");
        self.inner.delete_api_key(id, owner).await
    }

    async fn get_api_key(&self, id: uuid::Uuid) -> Result<KeyWithOwner> {
        self.count("get_api_key");
        self.inner.get_api_key(id).await
    }

    async fn set_api_key_user_assertion(&self, id: uuid::Uuid, trusted: bool) -> Result<KeyWithOwner> {
        self.count("set_api_key_user_assertion");
        self.inner.set_api_key_user_assertion(id, trusted).await
    }

    async fn api_key_user(&self, key_hash: &str, now: DateTime<Utc>) -> Result<KeyWithOwner> {
        self.count("api_key_user");
        self.inner.api_key_user(key_hash, now).await
    }

    async fn record_api_key_use(
        &self,
        id: uuid::Uuid,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<bool> {
        self.count("record_api_key_use");
        self.inner.record_api_key_use(id, now, since).await
    }
}

#[async_trait]
impl PublicationStore for CountingStore {
    async fn enable_publication(
        &self,
        kb_id: KbId,
        knowledge_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<kbsync_core::Publication> {
        self.count("enable_publication");
        self.inner.enable_publication(kb_id, knowledge_id, now).await
    }

    async fn publication(&self, kb_id: KbId) -> Result<Option<kbsync_core::Publication>> {
        self.count("publication");
        self.inner.publication(kb_id).await
    }

    async fn disable_publication(&self, kb_id: KbId) -> Result<bool> {
        self.count("disable_publication");
        self.inner.disable_publication(kb_id).await
    }

    async fn request_publication(&self, kb_id: KbId, now: DateTime<Utc>, compare: bool) -> Result<bool> {
        self.count("request_publication");
        self.inner.request_publication(kb_id, now, compare).await
    }

    async fn due_publications(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<KbId>> {
        self.count("due_publications");
        self.inner.due_publications(now, limit).await
    }

    async fn claim_publication(
        &self,
        kb_id: KbId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<kbsync_core::Publication>> {
        self.count("claim_publication");
        self.inner.claim_publication(kb_id, owner, now, lease_until).await
    }

    async fn renew_publication_lease(
        &self,
        kb_id: KbId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        self.count("renew_publication_lease");
        self.inner
            .renew_publication_lease(kb_id, owner, lease_until)
            .await
    }

    async fn set_publication_knowledge_id(
        &self,
        kb_id: KbId,
        owner: &str,
        knowledge_id: &str,
    ) -> Result<bool> {
        self.count("set_publication_knowledge_id");
        self.inner
            .set_publication_knowledge_id(kb_id, owner, knowledge_id)
            .await
    }

    async fn set_publication_progress(&self, kb_id: KbId, owner: &str, done: u64, total: u64) -> Result<()> {
        self.count("set_publication_progress");
        self.inner
            .set_publication_progress(kb_id, owner, done, total)
            .await
    }

    async fn finish_publication(
        &self,
        run: &kbsync_core::PublishRun,
        owner: &str,
        answered: Option<DateTime<Utc>>,
        digest: Option<&str>,
    ) -> Result<bool> {
        self.count("finish_publication");
        self.inner.finish_publication(run, owner, answered, digest).await
    }

    async fn release_publication(
        &self,
        kb_id: KbId,
        owner: &str,
        answered: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        self.count("release_publication");
        self.inner.release_publication(kb_id, owner, answered).await
    }

    async fn publish_runs(&self, kb_id: KbId, limit: u32) -> Result<Vec<kbsync_core::PublishRun>> {
        self.count("publish_runs");
        self.inner.publish_runs(kb_id, limit).await
    }
}

#[async_trait]
impl SubscriptionStore for CountingStore {
    async fn watched_drives(&self) -> Result<Vec<WatchedDrive>> {
        self.count("watched_drives");
        self.inner.watched_drives().await
    }

    async fn drive_subscriptions(&self) -> Result<Vec<DriveSubscription>> {
        self.count("drive_subscriptions");
        self.inner.drive_subscriptions().await
    }

    async fn kb_drive_subscriptions(&self, kb_id: KbId) -> Result<Vec<DriveSubscription>> {
        self.count("kb_drive_subscriptions");
        self.inner.kb_drive_subscriptions(kb_id).await
    }

    async fn drive_subscription_by_id(&self, subscription_id: &str) -> Result<Option<DriveSubscription>> {
        self.count("drive_subscription_by_id");
        self.inner.drive_subscription_by_id(subscription_id).await
    }

    async fn claim_drive_subscription(
        &self,
        datasource: &str,
        drive_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<DriveSubscription>> {
        self.count("claim_drive_subscription");
        self.inner
            .claim_drive_subscription(datasource, drive_id, owner, now, lease_until)
            .await
    }

    async fn save_drive_subscription(&self, subscription: &DriveSubscription, owner: &str) -> Result<bool> {
        self.count("save_drive_subscription");
        self.inner.save_drive_subscription(subscription, owner).await
    }

    async fn delete_drive_subscription(&self, datasource: &str, drive_id: &str, owner: &str) -> Result<bool> {
        self.count("delete_drive_subscription");
        self.inner
            .delete_drive_subscription(datasource, drive_id, owner)
            .await
    }

    async fn record_drive_notification(&self, subscription_id: &str, now: DateTime<Utc>) -> Result<()> {
        self.count("record_drive_notification");
        self.inner.record_drive_notification(subscription_id, now).await
    }

    async fn flag_drive_subscription(
        &self,
        subscription_id: &str,
        status: SubscriptionStatus,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.count("flag_drive_subscription");
        self.inner
            .flag_drive_subscription(subscription_id, status, now)
            .await
    }
}

#[async_trait]
impl OrphanBlobStore for CountingStore {
    async fn orphan_candidates(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
        self.count("orphan_candidates");
        self.inner.orphan_candidates(cutoff, limit).await
    }

    async fn is_orphan_candidate(&self, hash: &str) -> Result<bool> {
        self.count("is_orphan_candidate");
        self.inner.is_orphan_candidate(hash).await
    }

    async fn collect_orphan(&self, blobs: &BlobStore, hash: &str, cutoff: DateTime<Utc>) -> Result<bool> {
        self.count("collect_orphan");
        self.inner.collect_orphan(blobs, hash, cutoff).await
    }

    async fn known_blob_hashes(&self, hashes: &[String]) -> Result<Vec<String>> {
        self.count("known_blob_hashes");
        self.inner.known_blob_hashes(hashes).await
    }

    async fn collect_unknown_blob(
        &self,
        blobs: &BlobStore,
        hash: &str,
        cutoff: std::time::SystemTime,
    ) -> Result<bool> {
        self.count("collect_unknown_blob");
        self.inner.collect_unknown_blob(blobs, hash, cutoff).await
    }
}
