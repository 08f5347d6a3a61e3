//! The store conformance suite: one set of test bodies, each run against SQLite (a fresh file in
//! a temporary directory) and PostgreSQL (a fresh schema in the database named by
//! `KBSYNC_TEST_DATABASE_URL`; skipped with a message when the variable is unset, failing when it
//! is set and the database cannot be reached).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use kbsync_core::datasource::DatasourceKind;
use kbsync_core::{
    AccessGrant, DocumentStatus, GrantOrigin, KbId, KbType, Permission, Role, SyncStatus, UserId,
};
use kbsync_store::{
    AddressLimit, ClaimedSync, Connection, DocumentLocation, Encrypted, KbPatch, LeaseRenewal, LoginAttempt,
    LoginBackoff, NewConnection, NewDocument, NewKnowledgeBase, NewOAuthState, NewSource, NewUser,
    OAuthState, Page, PostgresStore, Reader, RefreshLease, RefreshedTokens, SavedState, SearchQuery,
    SourceKind, Store, StoreError, StoredAccessToken, SyncFailure, SyncGrant, SyncProgress, SyncRelease,
    SyncRunOutcome, SyncState, SyncTrigger, UserStore,
};
use uuid::Uuid;

kbsync_kit::on_both_databases!(
    migrate_and_ping_are_repeatable_and_concurrent_migrations_are_safe,
    create_user_round_trips_and_get_user_finds_it,
    email_uniqueness_ignores_case,
    credentials_lookup_ignores_email_case,
    unknown_user_and_email_are_not_found,
    count_users_counts_every_user,
    session_resolves_to_its_user_until_it_expires,
    deleted_session_no_longer_resolves,
    session_for_unknown_user_is_invalid_reference,
    login_failures_count_per_email_ignoring_case_and_clear,
    login_attempts_past_the_free_ones_wait_out_a_doubling_delay,
    racing_login_attempts_get_through_only_as_many_as_are_free,
    address_attempts_are_limited_per_window_and_successes_are_given_back,
    purge_expired_sessions_removes_only_expired_ones,
    purge_login_failures_removes_only_forgotten_accounts_and_ended_windows,
    purge_sync_runs_keeps_recent_and_running_runs,
    create_kb_round_trips_with_idle_status,
    create_kb_with_unknown_owner_is_invalid_reference,
    list_readable_kbs_shows_owner_grantee_and_admin_but_not_stranger,
    list_readable_kbs_pages_newest_first_with_total,
    update_kb_changes_only_given_fields_and_unknown_is_not_found,
    delete_kb_cascades_and_returns_only_unreferenced_hashes,
    set_manual_grants_replaces_previous_manual_grants,
    set_manual_grants_write_wins_over_read,
    set_manual_grants_unknown_user_is_invalid_reference_and_changes_nothing,
    set_manual_grants_on_unknown_kb_is_not_found,
    create_document_starts_pending_and_round_trips,
    create_document_in_unknown_kb_is_invalid_reference,
    get_document_in_another_kb_is_not_found,
    list_documents_orders_by_path_and_pages_with_total,
    complete_document_marks_processed_and_replaces_chunks,
    fail_document_records_error_and_removes_chunks_from_search,
    complete_or_fail_unknown_document_is_not_found,
    delete_document_returns_hash_only_when_last_reference_goes,
    pending_documents_are_oldest_first_and_limited,
    search_ranks_document_mentioning_term_more_often_higher,
    a_word_in_more_chunks_than_the_search_depth_ranks_only_the_newest_matches,
    the_search_depth_counts_only_chunks_the_reader_may_read,
    search_ignores_diacritics,
    search_treats_query_syntax_characters_as_plain_text,
    search_query_without_words_returns_nothing,
    search_requires_every_query_word,
    search_returns_only_readable_kbs,
    search_kb_ids_filter_narrows_but_never_widens_access,
    search_returns_one_hit_per_document,
    search_snippet_is_plain_short_text_around_the_match,
    search_hit_names_kb_document_and_web_url,
    search_respects_limit,
    search_skips_documents_not_processed,
    oauth_state_is_taken_exactly_once_and_round_trips,
    expired_oauth_state_is_not_found_and_is_gone,
    concurrent_takes_of_one_state_have_exactly_one_winner,
    oauth_state_for_unknown_kb_is_invalid_reference_and_duplicate_is_conflict,
    delete_expired_oauth_states_removes_only_expired_ones,
    connection_round_trips_and_upsert_replaces_it,
    connection_for_unknown_kb_is_invalid_reference,
    delete_connection_forgets_it_and_unknown_is_not_found,
    refresh_lease_is_exclusive_until_released_or_expired,
    concurrent_lease_attempts_have_exactly_one_winner,
    store_refreshed_tokens_writes_rotation_and_releases_the_lease,
    needs_reauth_marks_kb_and_a_new_connection_clears_it,
    deleting_kb_removes_its_connection_and_pending_states,
    add_source_twice_is_harmless_and_cursor_round_trips,
    source_for_unknown_kb_is_invalid_reference,
    upsert_source_document_keeps_id_and_reports_unreferenced_hash,
    update_document_location_keeps_content_and_chunks,
    deleting_a_source_or_kb_cascades_to_its_documents,
    sync_runs_record_outcome_and_failures_newest_first,
    set_sync_status_changes_kb_and_unknown_is_not_found,
    claim_due_syncs_skips_local_needs_reauth_leased_and_not_yet_due_kbs,
    claim_due_syncs_takes_never_synced_first_then_oldest_due_up_to_the_limit,
    claiming_sets_a_live_lease_and_clears_a_stale_cancel_request,
    an_expired_lease_is_taken_over_by_another_owner,
    two_concurrent_claimers_never_claim_the_same_kb,
    try_claim_sync_takes_a_free_or_expired_lease_whatever_the_schedule,
    renew_sync_lease_extends_only_the_holders_lease,
    cancel_request_is_seen_by_the_lease_holder_on_renew,
    release_by_a_former_owner_changes_nothing,
    sync_state_round_trips_progress_interval_and_schedule,
    close_interrupted_runs_fails_only_that_kbs_runs_still_syncing,
    recorded_failures_list_in_order_and_finish_appends_after_them,
    concurrent_failure_records_to_one_run_all_land_in_order,
    delete_source_removes_only_its_documents_and_reports_unreferenced_blobs,
    replace_sync_grants_keeps_manual_grants,
    removing_a_source_withdraws_only_the_sync_grants_it_alone_gave,
    deleting_the_connection_withdraws_sync_grants_and_keeps_manual_ones,
    sync_grants_are_withdrawn_once_needs_reauth_outlasts_the_grace,
    a_revoked_source_is_hidden_from_search_and_grants_nothing_until_cleared,
    advancing_a_cursor_keeps_the_saved_state_and_needs_one,
    sharing_is_read_again_after_sources_or_users_change,
    users_by_emails_ignores_case_and_leaves_out_unknown_emails,
    all_user_ids_lists_every_user_in_creation_order,
);

// --- sources and sync runs ------------------------------------------------------------------

fn new_source(kb_id: KbId, item_id: &str) -> NewSource {
    NewSource {
        kb_id,
        datasource: DatasourceKind::OneDrive,
        kind: SourceKind::Folder,
        drive_id: "drive-1".into(),
        item_id: item_id.into(),
        name: "Docs".into(),
        path: "/Docs".into(),
    }
}

async fn add_source_twice_is_harmless_and_cursor_round_trips(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let first = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(0))
        .await
        .unwrap();
    assert_eq!(first.cursor, None);
    assert_eq!(first.kind, SourceKind::Folder);
    assert_eq!(first.created_at, t(0));
    let again = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(5))
        .await
        .unwrap();
    assert_eq!(again, first);
    let other = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-2"), t(1))
        .await
        .unwrap();
    let saved = SavedState {
        json: "{}",
        files: 7,
        pending: 2,
        settings: "limit=1",
    };
    s.set_source_cursor(first.id, Some("delta-link-1"), Some(saved))
        .await
        .unwrap();
    let sources = s.list_sources(kb_id).await.unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0].id, first.id);
    assert_eq!(sources[0].cursor.as_deref(), Some("delta-link-1"));
    assert_eq!(
        (sources[0].state_files, sources[0].state_pending),
        (Some(7), Some(2))
    );
    assert_eq!(sources[0].state_settings.as_deref(), Some("limit=1"));
    assert_eq!(s.source_state(first.id).await.unwrap().as_deref(), Some("{}"));
    assert_eq!(sources[1].id, other.id);
    assert_eq!((sources[1].state_files, sources[1].state_pending), (None, None));
    assert_eq!(s.source_state(other.id).await.unwrap(), None);
    s.set_source_cursor(first.id, None, None).await.unwrap();
    let cleared = &s.list_sources(kb_id).await.unwrap()[0];
    assert_eq!(
        (
            cleared.cursor.as_deref(),
            cleared.state_files,
            cleared.state_pending
        ),
        (None, None, None)
    );
    assert_eq!(cleared.state_settings, None);
    assert_eq!(s.source_state(first.id).await.unwrap(), None);
    assert!(matches!(
        s.set_source_cursor(Uuid::new_v4(), Some("x"), None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.source_state(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
}

async fn advancing_a_cursor_keeps_the_saved_state_and_needs_one(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let source = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(0))
        .await
        .unwrap();
    // No cursor yet: there is no round to move on from.
    assert!(matches!(
        s.advance_source_cursor(source.id, "delta-2").await,
        Err(StoreError::NotFound)
    ));
    let saved = SavedState {
        json: r#"{"items":{}}"#,
        files: 3,
        pending: 0,
        settings: "limit=2",
    };
    s.set_source_cursor(source.id, Some("delta-1"), Some(saved))
        .await
        .unwrap();
    s.advance_source_cursor(source.id, "delta-2").await.unwrap();
    let after = &s.list_sources(kb_id).await.unwrap()[0];
    assert_eq!(after.cursor.as_deref(), Some("delta-2"));
    assert_eq!((after.state_files, after.state_pending), (Some(3), Some(0)));
    assert_eq!(after.state_settings.as_deref(), Some("limit=2"));
    assert_eq!(
        s.source_state(source.id).await.unwrap().as_deref(),
        Some(r#"{"items":{}}"#)
    );
    assert!(matches!(
        s.advance_source_cursor(Uuid::new_v4(), "x").await,
        Err(StoreError::NotFound)
    ));
}

async fn sharing_is_read_again_after_sources_or_users_change(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);
    s.replace_sync_grants(kb_id, &[], t(10)).await.unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), Some(t(10)));

    // Adding a source the knowledge base has already changes nothing; a new one does.
    let first = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(11))
        .await
        .unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);
    s.replace_sync_grants(kb_id, &[], t(12)).await.unwrap();
    s.add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(13))
        .await
        .unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), Some(t(12)));

    s.delete_source(kb_id, first.id).await.unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);

    s.replace_sync_grants(kb_id, &[], t(14)).await.unwrap();
    user(&*s, "newcomer@example.com", Role::User).await;
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);

    // Forgotten for one knowledge base, or for all of them (a restart with new settings).
    let other = kb(&*s, owner, "other").await;
    s.replace_sync_grants(kb_id, &[], t(15)).await.unwrap();
    s.replace_sync_grants(other, &[], t(15)).await.unwrap();
    s.forget_sharing_reads(Some(kb_id)).await.unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);
    assert_eq!(s.sharing_read_at(other).await.unwrap(), Some(t(15)));
    s.replace_sync_grants(kb_id, &[], t(16)).await.unwrap();
    s.forget_sharing_reads(None).await.unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);
    assert_eq!(s.sharing_read_at(other).await.unwrap(), None);
    s.forget_sharing_reads(Some(Uuid::new_v4())).await.unwrap();

    assert!(matches!(
        s.sharing_read_at(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
}

async fn source_for_unknown_kb_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .add_source(Uuid::new_v4(), new_source(Uuid::new_v4(), "folder-1"), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn upsert_source_document_keeps_id_and_reports_unreferenced_hash(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let source = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(0))
        .await
        .unwrap();
    let first_id = Uuid::new_v4();
    let (doc, gone) = s
        .upsert_source_document(first_id, source.id, new_doc(kb_id, "a/one.txt", &hash(1)), t(0))
        .await
        .unwrap();
    assert_eq!((doc.id, gone), (first_id, None));
    s.complete_document(doc.id, &["alpha words".into()], t(1))
        .await
        .unwrap();
    assert_eq!(s.search(q("alpha", Reader::Admin)).await.unwrap().len(), 1);

    let mut changed = new_doc(kb_id, "a/one.txt", &hash(2));
    changed.size = 7;
    let (doc2, gone) = s
        .upsert_source_document(Uuid::new_v4(), source.id, changed, t(2))
        .await
        .unwrap();
    assert_eq!(doc2.id, first_id, "the document keeps its id");
    assert_eq!(gone, Some(hash(1)));
    assert_eq!(doc2.content_hash, hash(2));
    assert_eq!(doc2.size, 7);
    assert_eq!(doc2.status, DocumentStatus::Pending);
    assert!(
        s.search(q("alpha", Reader::Admin)).await.unwrap().is_empty(),
        "old chunks are gone"
    );

    // A hash another document still uses is not reported.
    let other = s.upsert_source_document(Uuid::new_v4(), source.id, new_doc(kb_id, "b.txt", &hash(3)), t(3));
    other.await.unwrap();
    let (_, gone) = s
        .upsert_source_document(
            Uuid::new_v4(),
            source.id,
            new_doc(kb_id, "a/one.txt", &hash(3)),
            t(4),
        )
        .await
        .unwrap();
    assert_eq!(gone, Some(hash(2)));
    let (_, gone) = s
        .upsert_source_document(Uuid::new_v4(), source.id, new_doc(kb_id, "b.txt", &hash(4)), t(5))
        .await
        .unwrap();
    assert_eq!(gone, None, "a/one.txt still uses the old hash");

    let found = s
        .document_by_source_item(kb_id, "item-a/one.txt")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first_id);
    assert_eq!(s.document_by_source_item(kb_id, "nope").await.unwrap(), None);
    let docs = s.source_documents(source.id).await.unwrap();
    assert_eq!(
        docs.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
        ["a/one.txt", "b.txt"]
    );

    let mut no_item = new_doc(kb_id, "c.txt", &hash(4));
    no_item.source_item_id = None;
    let err = s
        .upsert_source_document(Uuid::new_v4(), source.id, no_item, t(5))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn update_document_location_keeps_content_and_chunks(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let source = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(0))
        .await
        .unwrap();
    let (doc, _) = s
        .upsert_source_document(
            Uuid::new_v4(),
            source.id,
            new_doc(kb_id, "a/old.txt", &hash(1)),
            t(0),
        )
        .await
        .unwrap();
    s.complete_document(doc.id, &["bravo text".into()], t(1))
        .await
        .unwrap();
    let location = DocumentLocation {
        name: "new.txt".into(),
        path: "b/new.txt".into(),
        web_url: Some("https://drive.example/b/new.txt".into()),
    };
    s.update_document_location(kb_id, doc.id, location.clone(), t(2))
        .await
        .unwrap();
    let moved = s.get_document(kb_id, doc.id).await.unwrap();
    assert_eq!(
        (moved.name.as_str(), moved.path.as_str()),
        ("new.txt", "b/new.txt")
    );
    assert_eq!(moved.web_url, location.web_url);
    assert_eq!(moved.content_hash, hash(1));
    assert_eq!(moved.status, DocumentStatus::Processed);
    assert_eq!(s.search(q("bravo", Reader::Admin)).await.unwrap().len(), 1);
    assert!(matches!(
        s.update_document_location(kb_id, Uuid::new_v4(), location, t(3))
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn deleting_a_source_or_kb_cascades_to_its_documents(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    let source = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(0))
        .await
        .unwrap();
    s.upsert_source_document(Uuid::new_v4(), source.id, new_doc(kb_id, "x.txt", &hash(1)), t(0))
        .await
        .unwrap();
    let run = Uuid::new_v4();
    s.create_sync_run(run, kb_id, SyncTrigger::Manual, t(0))
        .await
        .unwrap();
    assert_eq!(s.delete_kb(kb_id).await.unwrap(), vec![hash(1)]);
    assert!(s.list_sources(kb_id).await.unwrap().is_empty());
    assert!(s.source_documents(source.id).await.unwrap().is_empty());
    assert!(s.list_sync_runs(kb_id, 10).await.unwrap().is_empty());
    let _ = owner;
}

async fn sync_runs_record_outcome_and_failures_newest_first(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    s.create_sync_run(first, kb_id, SyncTrigger::Manual, t(0))
        .await
        .unwrap();
    s.create_sync_run(second, kb_id, SyncTrigger::Scheduled, t(10))
        .await
        .unwrap();
    let outcome = SyncRunOutcome {
        status: SyncStatus::CompletedWithErrors,
        processed: 3,
        failed: 2,
        deleted: 1,
        skipped: 4,
        total_found: 10,
        failures: vec![
            SyncFailure {
                item_id: "i1".into(),
                name: "bad.pdf".into(),
                reason: "corrupt".into(),
            },
            SyncFailure {
                item_id: "i2".into(),
                name: "big.docx".into(),
                reason: "too large".into(),
            },
        ],
    };
    s.finish_sync_run(first, &outcome, t(5)).await.unwrap();
    let runs = s.list_sync_runs(kb_id, 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].id, second);
    assert_eq!(runs[0].trigger, SyncTrigger::Scheduled);
    assert_eq!(runs[0].finished_at, None);
    assert_eq!(runs[0].outcome.status, SyncStatus::Syncing);
    assert!(runs[0].outcome.failures.is_empty());
    assert_eq!(runs[1].id, first);
    assert_eq!(runs[1].started_at, t(0));
    assert_eq!(runs[1].finished_at, Some(t(5)));
    assert_eq!(runs[1].outcome, outcome);
    assert_eq!(s.list_sync_runs(kb_id, 1).await.unwrap().len(), 1);
    assert!(matches!(
        s.finish_sync_run(Uuid::new_v4(), &outcome, t(6)).await,
        Err(StoreError::NotFound)
    ));
    let err = s
        .create_sync_run(Uuid::new_v4(), Uuid::new_v4(), SyncTrigger::Manual, t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn set_sync_status_changes_kb_and_unknown_is_not_found(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    s.set_sync_status(kb_id, SyncStatus::AccessRevoked).await.unwrap();
    assert_eq!(
        s.get_kb(kb_id).await.unwrap().sync_status,
        SyncStatus::AccessRevoked
    );
    assert!(matches!(
        s.set_sync_status(Uuid::new_v4(), SyncStatus::Syncing).await,
        Err(StoreError::NotFound)
    ));
}

// --- fixtures --------------------------------------------------------------------------------

fn t(offset_secs: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_750_000_000_123).unwrap() + Duration::seconds(offset_secs)
}

async fn user(s: &dyn Store, email: &str, role: Role) -> UserId {
    let id = Uuid::new_v4();
    s.create_user(
        id,
        NewUser {
            email: email.into(),
            password_hash: "$argon2id$x".into(),
            role,
        },
        t(0),
    )
    .await
    .unwrap();
    id
}

async fn kb_at(s: &dyn Store, owner: UserId, name: &str, at: DateTime<Utc>) -> KbId {
    let id = Uuid::new_v4();
    s.create_kb(
        id,
        NewKnowledgeBase {
            name: name.into(),
            description: format!("{name} description"),
            owner_id: owner,
            kb_type: KbType::Local,
        },
        at,
    )
    .await
    .unwrap();
    id
}

async fn kb(s: &dyn Store, owner: UserId, name: &str) -> KbId {
    kb_at(s, owner, name, t(0)).await
}

fn new_doc(kb_id: KbId, path: &str, hash: &str) -> NewDocument {
    let name = path.rsplit('/').next().unwrap_or(path).to_owned();
    NewDocument {
        kb_id,
        name,
        path: path.into(),
        mime: "text/plain".into(),
        size: 42,
        content_hash: hash.into(),
        source_item_id: Some(format!("item-{path}")),
        web_url: Some(format!("https://drive.example/{path}")),
    }
}

fn hash(n: u32) -> String {
    format!("{n:064x}")
}

async fn doc_at(s: &dyn Store, kb_id: KbId, path: &str, hash: &str, at: DateTime<Utc>) -> Uuid {
    let id = Uuid::new_v4();
    s.create_document(id, new_doc(kb_id, path, hash), at)
        .await
        .unwrap();
    id
}

/// A processed document whose chunks are `chunks`.
async fn indexed(s: &dyn Store, kb_id: KbId, path: &str, chunks: &[&str]) -> Uuid {
    let id = doc_at(s, kb_id, path, &hash(rand_u32()), t(0)).await;
    let chunks: Vec<String> = chunks.iter().map(|c| (*c).to_owned()).collect();
    s.complete_document(id, &chunks, t(1)).await.unwrap();
    id
}

fn rand_u32() -> u32 {
    Uuid::new_v4().as_u128() as u32
}

fn q<'a>(text: &'a str, reader: Reader) -> SearchQuery<'a> {
    SearchQuery {
        text,
        reader,
        kb_ids: &[],
        limit: 20,
    }
}

async fn search_ids(s: &dyn Store, query: SearchQuery<'_>) -> Vec<Uuid> {
    s.search(query)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.document_id)
        .collect()
}

fn page(limit: u32, offset: u64) -> Page {
    Page { limit, offset }
}

// --- migrations and health -------------------------------------------------------------------

async fn migrate_and_ping_are_repeatable_and_concurrent_migrations_are_safe(s: Arc<dyn Store>) {
    s.ping().await.unwrap();
    s.migrate().await.unwrap();
    let (a, b, c) = tokio::join!(s.migrate(), s.migrate(), s.migrate());
    a.unwrap();
    b.unwrap();
    c.unwrap();
    s.ping().await.unwrap();
    assert_eq!(s.count_users().await.unwrap(), 0);
}

// --- users -----------------------------------------------------------------------------------

async fn create_user_round_trips_and_get_user_finds_it(s: Arc<dyn Store>) {
    let id = Uuid::new_v4();
    let created = s
        .create_user(
            id,
            NewUser {
                email: "Alice@Example.com".into(),
                password_hash: "phc".into(),
                role: Role::Admin,
            },
            t(5),
        )
        .await
        .unwrap();
    assert_eq!(created.id, id);
    assert_eq!(created.email, "Alice@Example.com");
    assert_eq!(created.role, Role::Admin);
    assert_eq!(created.created_at, t(5));
    assert_eq!(s.get_user(id).await.unwrap(), created);
}

async fn email_uniqueness_ignores_case(s: Arc<dyn Store>) {
    user(&*s, "bob@example.com", Role::User).await;
    let err = s
        .create_user(
            Uuid::new_v4(),
            NewUser {
                email: "BOB@Example.COM".into(),
                password_hash: "x".into(),
                role: Role::User,
            },
            t(0),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.count_users().await.unwrap(), 1);
}

async fn credentials_lookup_ignores_email_case(s: Arc<dyn Store>) {
    let id = user(&*s, "Carol@Example.com", Role::User).await;
    for email in ["carol@example.com", "CAROL@EXAMPLE.COM", "Carol@Example.com"] {
        let creds = s.get_credentials_by_email(email).await.unwrap();
        assert_eq!(creds.user.id, id);
        assert_eq!(creds.user.email, "Carol@Example.com");
        assert_eq!(creds.password_hash, "$argon2id$x");
    }
}

async fn unknown_user_and_email_are_not_found(s: Arc<dyn Store>) {
    assert!(matches!(
        s.get_user(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.get_credentials_by_email("nobody@example.com").await,
        Err(StoreError::NotFound)
    ));
}

async fn count_users_counts_every_user(s: Arc<dyn Store>) {
    assert_eq!(s.count_users().await.unwrap(), 0);
    user(&*s, "a@example.com", Role::User).await;
    user(&*s, "b@example.com", Role::Admin).await;
    assert_eq!(s.count_users().await.unwrap(), 2);
}

// --- sessions --------------------------------------------------------------------------------

async fn session_resolves_to_its_user_until_it_expires(s: Arc<dyn Store>) {
    let id = user(&*s, "dave@example.com", Role::User).await;
    s.create_session("tokhash", id, t(0), t(3600)).await.unwrap();
    assert_eq!(s.user_for_session("tokhash", t(10)).await.unwrap().id, id);
    assert_eq!(s.user_for_session("tokhash", t(3599)).await.unwrap().id, id);
    assert!(matches!(
        s.user_for_session("tokhash", t(3600)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.user_for_session("tokhash", t(7200)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.user_for_session("other", t(10)).await,
        Err(StoreError::NotFound)
    ));
}

async fn deleted_session_no_longer_resolves(s: Arc<dyn Store>) {
    let id = user(&*s, "erin@example.com", Role::User).await;
    s.create_session("a", id, t(0), t(3600)).await.unwrap();
    s.create_session("b", id, t(0), t(3600)).await.unwrap();
    s.delete_session("a").await.unwrap();
    assert!(matches!(
        s.user_for_session("a", t(1)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.user_for_session("b", t(1)).await.unwrap().id, id);
    // deleting an unknown session is not an error
    s.delete_session("a").await.unwrap();
}

async fn session_for_unknown_user_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .create_session("x", Uuid::new_v4(), t(0), t(10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

// --- login failures --------------------------------------------------------------------------

async fn login_failures_count_per_email_ignoring_case_and_clear(s: Arc<dyn Store>) {
    let none = s.login_failures("frank@example.com").await.unwrap();
    assert_eq!(none.count, 0);
    assert_eq!(none.last_failure_at, None);
    let lenient = backoff(10, 1, 60, t(-1000));
    let one = s
        .begin_login_attempt("frank@example.com", t(1), &lenient)
        .await
        .unwrap();
    assert_eq!(one, LoginAttempt::Allowed { failures: 1 });
    let two = s
        .begin_login_attempt("FRANK@example.com", t(2), &lenient)
        .await
        .unwrap();
    assert_eq!(two, LoginAttempt::Allowed { failures: 2 });
    s.begin_login_attempt("grace@example.com", t(3), &lenient)
        .await
        .unwrap();
    let read = s.login_failures("Frank@Example.com").await.unwrap();
    assert_eq!((read.count, read.last_failure_at), (2, Some(t(2))));
    s.clear_login_failures("frank@EXAMPLE.com").await.unwrap();
    assert_eq!(s.login_failures("frank@example.com").await.unwrap().count, 0);
    assert_eq!(s.login_failures("grace@example.com").await.unwrap().count, 1);
}

fn backoff(free_attempts: u32, first_secs: i64, max_secs: i64, forget_before: DateTime<Utc>) -> LoginBackoff {
    LoginBackoff {
        free_attempts,
        first_delay: Duration::seconds(first_secs),
        max_delay: Duration::seconds(max_secs),
        forget_before,
    }
}

async fn login_attempts_past_the_free_ones_wait_out_a_doubling_delay(s: Arc<dyn Store>) {
    let at = |secs: i64| backoff(2, 10, 30, t(secs - 3600));
    let email = "heidi@example.com";
    let allowed = |n| LoginAttempt::Allowed { failures: n };
    assert_eq!(
        s.begin_login_attempt(email, t(0), &at(0)).await.unwrap(),
        allowed(1)
    );
    // The second failure is the last free one: 10 s to wait after it.
    assert_eq!(
        s.begin_login_attempt(email, t(1), &at(1)).await.unwrap(),
        allowed(2)
    );
    let throttled = s.begin_login_attempt(email, t(5), &at(5)).await.unwrap();
    assert_eq!(throttled, LoginAttempt::Throttled { until: t(11) });
    // A refused attempt changes nothing.
    assert_eq!(s.login_failures(email).await.unwrap().count, 2);
    // Then 20 s, then the cap of 30 s.
    assert_eq!(
        s.begin_login_attempt(email, t(11), &at(11)).await.unwrap(),
        allowed(3)
    );
    assert_eq!(
        s.begin_login_attempt(email, t(30), &at(30)).await.unwrap(),
        LoginAttempt::Throttled { until: t(31) }
    );
    assert_eq!(
        s.begin_login_attempt(email, t(31), &at(31)).await.unwrap(),
        allowed(4)
    );
    assert_eq!(
        s.begin_login_attempt(email, t(60), &at(60)).await.unwrap(),
        LoginAttempt::Throttled { until: t(61) }
    );
    assert_eq!(
        s.begin_login_attempt(email, t(61), &at(61)).await.unwrap(),
        allowed(5)
    );
    assert_eq!(
        s.begin_login_attempt(email, t(90), &at(90)).await.unwrap(),
        LoginAttempt::Throttled { until: t(91) }
    );
    // Failures older than the forgetting bound no longer count, even while a delay would run.
    let forgetful = backoff(2, 10, 30, t(62));
    assert_eq!(
        s.begin_login_attempt(email, t(70), &forgetful).await.unwrap(),
        allowed(1)
    );
    // Without free attempts the very first failure starts a delay.
    let strict = backoff(0, 10, 300, t(-3600));
    assert_eq!(
        s.begin_login_attempt("ivan@example.com", t(0), &strict)
            .await
            .unwrap(),
        allowed(1)
    );
    assert_eq!(
        s.begin_login_attempt("ivan@example.com", t(1), &strict)
            .await
            .unwrap(),
        LoginAttempt::Throttled { until: t(20) }
    );
}

async fn racing_login_attempts_get_through_only_as_many_as_are_free(s: Arc<dyn Store>) {
    let rule = backoff(3, 60, 600, t(-3600));
    let attempts = (0..20).map(|_| {
        let s = s.clone();
        tokio::spawn(async move {
            s.begin_login_attempt("judy@example.com", t(0), &rule)
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<LoginAttempt> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut counts: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| match o {
            LoginAttempt::Allowed { failures } => Some(*failures),
            LoginAttempt::Throttled { .. } => None,
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 2, 3], "{outcomes:?}");
    assert_eq!(s.login_failures("judy@example.com").await.unwrap().count, 3);
}

async fn address_attempts_are_limited_per_window_and_successes_are_given_back(s: Arc<dyn Store>) {
    let limit = AddressLimit {
        max_failures: 2,
        window: Duration::seconds(60),
    };
    let address = "192.0.2.7";
    let allowed = |n| LoginAttempt::Allowed { failures: n };
    assert_eq!(
        s.begin_address_attempt(address, t(0), &limit).await.unwrap(),
        allowed(1)
    );
    // A success gives its attempt back.
    s.give_back_address_attempt(address).await.unwrap();
    assert_eq!(
        s.begin_address_attempt(address, t(1), &limit).await.unwrap(),
        allowed(1)
    );
    assert_eq!(
        s.begin_address_attempt(address, t(2), &limit).await.unwrap(),
        allowed(2)
    );
    assert_eq!(
        s.begin_address_attempt(address, t(3), &limit).await.unwrap(),
        LoginAttempt::Throttled { until: t(60) }
    );
    // Refused attempts do not push the window's end back, and other addresses are unaffected.
    assert_eq!(
        s.begin_address_attempt(address, t(59), &limit).await.unwrap(),
        LoginAttempt::Throttled { until: t(60) }
    );
    assert_eq!(
        s.begin_address_attempt("192.0.2.8", t(59), &limit).await.unwrap(),
        allowed(1)
    );
    // A new window starts afresh.
    assert_eq!(
        s.begin_address_attempt(address, t(60), &limit).await.unwrap(),
        allowed(1)
    );
    // Giving back never goes below zero.
    for _ in 0..3 {
        s.give_back_address_attempt(address).await.unwrap();
    }
    s.give_back_address_attempt("198.51.100.1").await.unwrap();
    assert_eq!(
        s.begin_address_attempt(address, t(61), &limit).await.unwrap(),
        allowed(1)
    );
}

async fn purge_expired_sessions_removes_only_expired_ones(s: Arc<dyn Store>) {
    let u = user(&*s, "kim@example.com", Role::User).await;
    s.create_session("old", u, t(0), t(10)).await.unwrap();
    s.create_session("edge", u, t(0), t(20)).await.unwrap();
    s.create_session("live", u, t(0), t(30)).await.unwrap();
    assert_eq!(s.purge_expired_sessions(t(20)).await.unwrap(), 2);
    assert_eq!(s.user_for_session("live", t(20)).await.unwrap().id, u);
    assert!(matches!(
        s.user_for_session("old", t(0)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.purge_expired_sessions(t(20)).await.unwrap(), 0);
}

async fn purge_login_failures_removes_only_forgotten_accounts_and_ended_windows(s: Arc<dyn Store>) {
    let rule = backoff(5, 1, 60, t(-3600));
    s.begin_login_attempt("old@example.com", t(0), &rule)
        .await
        .unwrap();
    s.begin_login_attempt("new@example.com", t(100), &rule)
        .await
        .unwrap();
    let limit = AddressLimit {
        max_failures: 5,
        window: Duration::seconds(60),
    };
    s.begin_address_attempt("192.0.2.1", t(0), &limit).await.unwrap();
    s.begin_address_attempt("192.0.2.2", t(100), &limit)
        .await
        .unwrap();
    assert_eq!(s.purge_login_failures(t(120), t(50)).await.unwrap(), 2);
    assert_eq!(s.login_failures("old@example.com").await.unwrap().count, 0);
    assert_eq!(s.login_failures("new@example.com").await.unwrap().count, 1);
    // The live window still counts: its next attempt is its second.
    assert_eq!(
        s.begin_address_attempt("192.0.2.2", t(121), &limit)
            .await
            .unwrap(),
        LoginAttempt::Allowed { failures: 2 }
    );
    assert_eq!(
        s.begin_address_attempt("192.0.2.1", t(121), &limit)
            .await
            .unwrap(),
        LoginAttempt::Allowed { failures: 1 }
    );
}

async fn purge_sync_runs_keeps_recent_and_running_runs(s: Arc<dyn Store>) {
    let owner = user(&*s, "lee@example.com", Role::User).await;
    let busy = kb(&*s, owner, "busy").await;
    let quiet = kb(&*s, owner, "quiet").await;
    // busy: five finished runs (at 0, 10, 20, 30, 40) and one still running since 1.
    let mut finished = Vec::new();
    for i in 0..5 {
        let id = Uuid::new_v4();
        s.create_sync_run(id, busy, SyncTrigger::Scheduled, t(i * 10))
            .await
            .unwrap();
        s.finish_sync_run(
            id,
            &outcome_with(SyncStatus::Failed, vec![failure(1)]),
            t(i * 10 + 5),
        )
        .await
        .unwrap();
        finished.push(id);
    }
    let running = Uuid::new_v4();
    s.create_sync_run(running, busy, SyncTrigger::Manual, t(1))
        .await
        .unwrap();
    // quiet: one old finished run.
    let lone = Uuid::new_v4();
    s.create_sync_run(lone, quiet, SyncTrigger::Manual, t(0))
        .await
        .unwrap();
    s.finish_sync_run(lone, &outcome_with(SyncStatus::Completed, vec![]), t(5))
        .await
        .unwrap();

    // Older than t(30), keeping the two most recent per knowledge base: busy loses its runs
    // finished at 5, 15 and 25 but not the running one; quiet keeps its only run.
    assert_eq!(s.purge_sync_runs(t(30), 2).await.unwrap(), 3);
    let mut left: Vec<Uuid> = s
        .list_sync_runs(busy, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    left.sort();
    let mut expected = vec![finished[3], finished[4], running];
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(s.list_sync_runs(quiet, 100).await.unwrap().len(), 1);
    // The failed files of a deleted run went with it.
    assert!(s.list_sync_failures(finished[0], 0).await.unwrap().is_empty());
    assert_eq!(s.list_sync_failures(finished[3], 0).await.unwrap().len(), 1);
    // Keeping none: every finished run before the bound goes, the running one stays.
    assert_eq!(s.purge_sync_runs(t(1000), 0).await.unwrap(), 3);
    let left: Vec<Uuid> = s
        .list_sync_runs(busy, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, vec![running]);
}

// --- knowledge bases -------------------------------------------------------------------------

async fn create_kb_round_trips_with_idle_status(s: Arc<dyn Store>) {
    let owner = user(&*s, "o@example.com", Role::User).await;
    let id = Uuid::new_v4();
    let created = s
        .create_kb(
            id,
            NewKnowledgeBase {
                name: "Handbook".into(),
                description: "all the things".into(),
                owner_id: owner,
                kb_type: KbType::OneDrive,
            },
            t(7),
        )
        .await
        .unwrap();
    assert_eq!(created.sync_status, SyncStatus::Idle);
    assert_eq!(created.kb_type, KbType::OneDrive);
    assert_eq!((created.created_at, created.updated_at), (t(7), t(7)));
    assert_eq!(s.get_kb(id).await.unwrap(), created);
    assert!(matches!(
        s.get_kb(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
}

async fn create_kb_with_unknown_owner_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .create_kb(
            Uuid::new_v4(),
            NewKnowledgeBase {
                name: "x".into(),
                description: String::new(),
                owner_id: Uuid::new_v4(),
                kb_type: KbType::Local,
            },
            t(0),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn list_readable_kbs_shows_owner_grantee_and_admin_but_not_stranger(s: Arc<dyn Store>) {
    let owner = user(&*s, "owner@example.com", Role::User).await;
    let reader = user(&*s, "reader@example.com", Role::User).await;
    let writer = user(&*s, "writer@example.com", Role::User).await;
    let stranger = user(&*s, "stranger@example.com", Role::User).await;
    let a = kb_at(&*s, owner, "a", t(1)).await;
    let b = kb_at(&*s, owner, "b", t(2)).await;
    let c = kb_at(&*s, stranger, "c", t(3)).await;
    s.set_manual_grants(a, &[reader], &[writer]).await.unwrap();
    s.set_manual_grants(b, &[], &[writer]).await.unwrap();

    let ids = |p: kbsync_store::PageOf<kbsync_core::KnowledgeBase>| {
        (p.items.into_iter().map(|k| k.id).collect::<Vec<_>>(), p.total)
    };
    let all = page(100, 0);
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(owner), all).await.unwrap()),
        (vec![b, a], 2)
    );
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(reader), all).await.unwrap()),
        (vec![a], 1)
    );
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(writer), all).await.unwrap()),
        (vec![b, a], 2)
    );
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(stranger), all).await.unwrap()),
        (vec![c], 1)
    );
    assert_eq!(
        ids(s.list_readable_kbs(Reader::Admin, all).await.unwrap()),
        (vec![c, b, a], 3)
    );
    let nobody = user(&*s, "nobody@example.com", Role::User).await;
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(nobody), all).await.unwrap()),
        (vec![], 0)
    );
}

async fn list_readable_kbs_pages_newest_first_with_total(s: Arc<dyn Store>) {
    let owner = user(&*s, "pager@example.com", Role::User).await;
    let mut kbs = Vec::new();
    for i in 0..5 {
        kbs.push(kb_at(&*s, owner, &format!("kb{i}"), t(i)).await);
    }
    kbs.reverse(); // newest first
    let p1 = s
        .list_readable_kbs(Reader::User(owner), page(2, 0))
        .await
        .unwrap();
    let p2 = s
        .list_readable_kbs(Reader::User(owner), page(2, 2))
        .await
        .unwrap();
    let p3 = s
        .list_readable_kbs(Reader::User(owner), page(2, 4))
        .await
        .unwrap();
    let p4 = s.list_readable_kbs(Reader::Admin, page(2, 10)).await.unwrap();
    assert_eq!(p1.items.iter().map(|k| k.id).collect::<Vec<_>>(), kbs[0..2]);
    assert_eq!(p2.items.iter().map(|k| k.id).collect::<Vec<_>>(), kbs[2..4]);
    assert_eq!(p3.items.iter().map(|k| k.id).collect::<Vec<_>>(), kbs[4..5]);
    assert!(p4.items.is_empty());
    assert_eq!((p1.total, p2.total, p3.total, p4.total), (5, 5, 5, 5));
}

async fn update_kb_changes_only_given_fields_and_unknown_is_not_found(s: Arc<dyn Store>) {
    let owner = user(&*s, "upd@example.com", Role::User).await;
    let id = kb(&*s, owner, "before").await;
    let renamed = s
        .update_kb(
            id,
            KbPatch {
                name: Some("after".into()),
                description: None,
            },
            t(50),
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "after");
    assert_eq!(renamed.description, "before description");
    assert_eq!(renamed.created_at, t(0));
    assert_eq!(renamed.updated_at, t(50));
    let described = s
        .update_kb(
            id,
            KbPatch {
                name: None,
                description: Some(String::new()),
            },
            t(60),
        )
        .await
        .unwrap();
    assert_eq!(
        (described.name.as_str(), described.description.as_str()),
        ("after", "")
    );
    assert_eq!(s.get_kb(id).await.unwrap(), described);
    let err = s
        .update_kb(Uuid::new_v4(), KbPatch::default(), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn delete_kb_cascades_and_returns_only_unreferenced_hashes(s: Arc<dyn Store>) {
    let owner = user(&*s, "del@example.com", Role::User).await;
    let reader = user(&*s, "delr@example.com", Role::User).await;
    let doomed = kb(&*s, owner, "doomed").await;
    let kept = kb(&*s, owner, "kept").await;
    s.set_manual_grants(doomed, &[reader], &[]).await.unwrap();
    let only_here = hash(1);
    let shared = hash(2);
    let d1 = doc_at(&*s, doomed, "/one.txt", &only_here, t(0)).await;
    let _d1b = doc_at(&*s, doomed, "/one-copy.txt", &only_here, t(0)).await;
    let d2 = doc_at(&*s, doomed, "/two.txt", &shared, t(0)).await;
    let k2 = doc_at(&*s, kept, "/two.txt", &shared, t(0)).await;
    s.complete_document(d1, &["zeppelin cargo manifest".into()], t(1))
        .await
        .unwrap();
    s.complete_document(k2, &["zeppelin flight plan".into()], t(1))
        .await
        .unwrap();

    let freed = s.delete_kb(doomed).await.unwrap();
    assert_eq!(freed, vec![only_here]);
    assert!(matches!(s.get_kb(doomed).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.get_document(doomed, d1).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.get_document(doomed, d2).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_documents(doomed, page(10, 0)).await.unwrap().total, 0);
    assert!(s.list_grants(doomed).await.unwrap().is_empty());
    assert_eq!(s.strongest_grant(doomed, reader).await.unwrap(), None);
    assert_eq!(search_ids(&*s, q("zeppelin", Reader::Admin)).await, vec![k2]);
    assert_eq!(s.get_document(kept, k2).await.unwrap().content_hash, shared);

    // the last reference going frees the shared hash too
    assert_eq!(s.delete_kb(kept).await.unwrap(), vec![shared]);
    assert!(matches!(s.delete_kb(kept).await, Err(StoreError::NotFound)));
}

// --- grants ----------------------------------------------------------------------------------

async fn set_manual_grants_replaces_previous_manual_grants(s: Arc<dyn Store>) {
    let owner = user(&*s, "g-owner@example.com", Role::User).await;
    let u1 = user(&*s, "g1@example.com", Role::User).await;
    let u2 = user(&*s, "g2@example.com", Role::User).await;
    let u3 = user(&*s, "g3@example.com", Role::User).await;
    let k = kb(&*s, owner, "granted").await;
    s.set_manual_grants(k, &[u1, u2], &[]).await.unwrap();
    assert_eq!(s.strongest_grant(k, u1).await.unwrap(), Some(Permission::Read));
    assert_eq!(s.strongest_grant(k, u2).await.unwrap(), Some(Permission::Read));
    s.set_manual_grants(k, &[u2], &[u3]).await.unwrap();
    assert_eq!(s.strongest_grant(k, u1).await.unwrap(), None);
    assert_eq!(s.strongest_grant(k, u2).await.unwrap(), Some(Permission::Read));
    assert_eq!(s.strongest_grant(k, u3).await.unwrap(), Some(Permission::Write));
    let mut grants = s.list_grants(k).await.unwrap();
    grants.sort_by_key(|g| g.user_id);
    let mut expected = vec![
        AccessGrant {
            kb_id: k,
            user_id: u2,
            permission: Permission::Read,
            origin: GrantOrigin::Manual,
        },
        AccessGrant {
            kb_id: k,
            user_id: u3,
            permission: Permission::Write,
            origin: GrantOrigin::Manual,
        },
    ];
    expected.sort_by_key(|g| g.user_id);
    assert_eq!(grants, expected);
    s.set_manual_grants(k, &[], &[]).await.unwrap();
    assert!(s.list_grants(k).await.unwrap().is_empty());
}

async fn set_manual_grants_write_wins_over_read(s: Arc<dyn Store>) {
    let owner = user(&*s, "w-owner@example.com", Role::User).await;
    let u = user(&*s, "w@example.com", Role::User).await;
    let k = kb(&*s, owner, "w").await;
    s.set_manual_grants(k, &[u, u], &[u]).await.unwrap();
    let grants = s.list_grants(k).await.unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].permission, Permission::Write);
    assert_eq!(s.strongest_grant(k, u).await.unwrap(), Some(Permission::Write));
}

async fn set_manual_grants_unknown_user_is_invalid_reference_and_changes_nothing(s: Arc<dyn Store>) {
    let owner = user(&*s, "i-owner@example.com", Role::User).await;
    let u = user(&*s, "i@example.com", Role::User).await;
    let k = kb(&*s, owner, "i").await;
    s.set_manual_grants(k, &[u], &[]).await.unwrap();
    let before = s.list_grants(k).await.unwrap();
    let err = s
        .set_manual_grants(k, &[], &[u, Uuid::new_v4()])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    assert_eq!(s.list_grants(k).await.unwrap(), before);
    assert_eq!(s.strongest_grant(k, u).await.unwrap(), Some(Permission::Read));
}

async fn set_manual_grants_on_unknown_kb_is_not_found(s: Arc<dyn Store>) {
    let u = user(&*s, "nk@example.com", Role::User).await;
    let err = s.set_manual_grants(Uuid::new_v4(), &[u], &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

// --- documents -------------------------------------------------------------------------------

async fn create_document_starts_pending_and_round_trips(s: Arc<dyn Store>) {
    let owner = user(&*s, "doc@example.com", Role::User).await;
    let k = kb(&*s, owner, "docs").await;
    let id = Uuid::new_v4();
    let created = s
        .create_document(id, new_doc(k, "/reports/q1.pdf", &hash(9)), t(3))
        .await
        .unwrap();
    assert_eq!(created.status, DocumentStatus::Pending);
    assert_eq!(created.name, "q1.pdf");
    assert_eq!(created.error, None);
    assert_eq!(created.source_item_id.as_deref(), Some("item-/reports/q1.pdf"));
    assert_eq!((created.created_at, created.updated_at), (t(3), t(3)));
    assert_eq!(s.get_document(k, id).await.unwrap(), created);

    let mut upload = new_doc(k, "/upload.txt", &hash(10));
    upload.source_item_id = None;
    upload.web_url = None;
    let up_id = Uuid::new_v4();
    let up = s.create_document(up_id, upload, t(4)).await.unwrap();
    assert_eq!(s.get_document(k, up_id).await.unwrap(), up);
    assert_eq!((up.source_item_id, up.web_url), (None, None));

    let dup = s
        .create_document(id, new_doc(k, "/again", &hash(9)), t(5))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
}

async fn create_document_in_unknown_kb_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .create_document(Uuid::new_v4(), new_doc(Uuid::new_v4(), "/x", &hash(1)), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn get_document_in_another_kb_is_not_found(s: Arc<dyn Store>) {
    let owner = user(&*s, "other@example.com", Role::User).await;
    let a = kb(&*s, owner, "a").await;
    let b = kb(&*s, owner, "b").await;
    let d = doc_at(&*s, a, "/x", &hash(1), t(0)).await;
    assert!(matches!(s.get_document(b, d).await, Err(StoreError::NotFound)));
    assert!(matches!(s.delete_document(b, d).await, Err(StoreError::NotFound)));
    assert!(s.get_document(a, d).await.is_ok());
}

async fn list_documents_orders_by_path_and_pages_with_total(s: Arc<dyn Store>) {
    let owner = user(&*s, "list@example.com", Role::User).await;
    let k = kb(&*s, owner, "list").await;
    let other = kb(&*s, owner, "other").await;
    for p in ["/c.txt", "/a.txt", "/b/z.txt", "/b/a.txt"] {
        doc_at(&*s, k, p, &hash(1), t(0)).await;
    }
    doc_at(&*s, other, "/a.txt", &hash(1), t(0)).await;
    let first = s.list_documents(k, page(3, 0)).await.unwrap();
    let rest = s.list_documents(k, page(3, 3)).await.unwrap();
    let paths: Vec<_> = first
        .items
        .iter()
        .chain(rest.items.iter())
        .map(|d| d.path.clone())
        .collect();
    assert_eq!(paths, ["/a.txt", "/b/a.txt", "/b/z.txt", "/c.txt"]);
    assert_eq!((first.items.len(), first.total, rest.total), (3, 4, 4));
}

async fn complete_document_marks_processed_and_replaces_chunks(s: Arc<dyn Store>) {
    let owner = user(&*s, "cmp@example.com", Role::User).await;
    let k = kb(&*s, owner, "cmp").await;
    let d = doc_at(&*s, k, "/doc.txt", &hash(1), t(0)).await;
    s.fail_document(d, "extractor crashed", t(1)).await.unwrap();
    s.complete_document(
        d,
        &["first version walrus".into(), "more walrus text".into()],
        t(2),
    )
    .await
    .unwrap();
    let doc = s.get_document(k, d).await.unwrap();
    assert_eq!(doc.status, DocumentStatus::Processed);
    assert_eq!(doc.error, None);
    assert_eq!(doc.updated_at, t(2));
    assert_eq!(search_ids(&*s, q("walrus", Reader::Admin)).await, vec![d]);

    s.complete_document(d, &["second version narwhal".into()], t(3))
        .await
        .unwrap();
    assert!(search_ids(&*s, q("walrus", Reader::Admin)).await.is_empty());
    assert_eq!(search_ids(&*s, q("narwhal", Reader::Admin)).await, vec![d]);

    // no chunks at all: processed, nothing searchable
    s.complete_document(d, &[], t(4)).await.unwrap();
    assert!(search_ids(&*s, q("narwhal", Reader::Admin)).await.is_empty());
    assert_eq!(
        s.get_document(k, d).await.unwrap().status,
        DocumentStatus::Processed
    );
}

async fn fail_document_records_error_and_removes_chunks_from_search(s: Arc<dyn Store>) {
    let owner = user(&*s, "fail@example.com", Role::User).await;
    let k = kb(&*s, owner, "fail").await;
    let d = indexed(&*s, k, "/f.txt", &["platypus facts"]).await;
    assert_eq!(search_ids(&*s, q("platypus", Reader::Admin)).await, vec![d]);
    s.fail_document(d, "password protected", t(9)).await.unwrap();
    let doc = s.get_document(k, d).await.unwrap();
    assert_eq!(doc.status, DocumentStatus::Failed);
    assert_eq!(doc.error.as_deref(), Some("password protected"));
    assert_eq!(doc.updated_at, t(9));
    assert!(search_ids(&*s, q("platypus", Reader::Admin)).await.is_empty());
}

async fn complete_or_fail_unknown_document_is_not_found(s: Arc<dyn Store>) {
    let err = s
        .complete_document(Uuid::new_v4(), &["x".into()], t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = s.fail_document(Uuid::new_v4(), "x", t(0)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = s
        .delete_document(Uuid::new_v4(), Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn delete_document_returns_hash_only_when_last_reference_goes(s: Arc<dyn Store>) {
    let owner = user(&*s, "dd@example.com", Role::User).await;
    let a = kb(&*s, owner, "a").await;
    let b = kb(&*s, owner, "b").await;
    let h = hash(77);
    let d1 = doc_at(&*s, a, "/1", &h, t(0)).await;
    let d2 = doc_at(&*s, b, "/2", &h, t(0)).await;
    s.complete_document(d1, &["quokka".into()], t(1)).await.unwrap();
    assert_eq!(s.delete_document(a, d1).await.unwrap(), None);
    assert!(matches!(s.get_document(a, d1).await, Err(StoreError::NotFound)));
    assert!(search_ids(&*s, q("quokka", Reader::Admin)).await.is_empty());
    assert_eq!(s.delete_document(b, d2).await.unwrap(), Some(h));
    assert!(matches!(
        s.delete_document(b, d2).await,
        Err(StoreError::NotFound)
    ));
}

async fn pending_documents_are_oldest_first_and_limited(s: Arc<dyn Store>) {
    let owner = user(&*s, "pend@example.com", Role::User).await;
    let k = kb(&*s, owner, "pend").await;
    let newest = doc_at(&*s, k, "/n", &hash(1), t(30)).await;
    let oldest = doc_at(&*s, k, "/o", &hash(2), t(10)).await;
    let middle = doc_at(&*s, k, "/m", &hash(3), t(20)).await;
    let done = doc_at(&*s, k, "/d", &hash(4), t(5)).await;
    let failed = doc_at(&*s, k, "/f", &hash(5), t(6)).await;
    s.complete_document(done, &["x".into()], t(40)).await.unwrap();
    s.fail_document(failed, "nope", t(40)).await.unwrap();
    let ids = |v: Vec<kbsync_core::Document>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.pending_documents(10).await.unwrap()),
        vec![oldest, middle, newest]
    );
    assert_eq!(ids(s.pending_documents(2).await.unwrap()), vec![oldest, middle]);
    assert!(s.pending_documents(0).await.unwrap().is_empty());
}

// --- search ----------------------------------------------------------------------------------

async fn search_ranks_document_mentioning_term_more_often_higher(s: Arc<dyn Store>) {
    let owner = user(&*s, "rank@example.com", Role::User).await;
    let k = kb(&*s, owner, "rank").await;
    let once = indexed(
        &*s,
        k,
        "/once",
        &["the budget was discussed once with several other topics"],
    )
    .await;
    let often = indexed(
        &*s,
        k,
        "/often",
        &["budget budget budget: the budget was discussed again"],
    )
    .await;
    let hits = s.search(q("budget", Reader::Admin)).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.document_id).collect::<Vec<_>>(),
        vec![often, once]
    );
    assert!(hits[0].score > hits[1].score, "{hits:?}");
}

async fn a_word_in_more_chunks_than_the_search_depth_ranks_only_the_newest_matches(s: Arc<dyn Store>) {
    let owner = user(&*s, "depth@example.com", Role::User).await;
    let k = kb(&*s, owner, "depth").await;
    // The best match for "budget", but indexed first: older than SEARCH_DEPTH newer matches.
    let oldest = indexed(&*s, k, "/oldest", &["budget budget budget budget zebra"]).await;
    let depth = usize::try_from(kbsync_store::SEARCH_DEPTH).unwrap();
    let filler: Vec<String> = (0..depth)
        .map(|i| format!("the budget line {i} of a long ledger"))
        .collect();
    let ledger = indexed(
        &*s,
        k,
        "/ledger",
        &filler.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let newest = indexed(&*s, k, "/newest", &["budget budget review"]).await;

    // More than SEARCH_DEPTH chunks match: the oldest one is not ranked.
    assert_eq!(
        search_ids(&*s, q("budget", Reader::Admin)).await,
        vec![newest, ledger]
    );
    // A word in few chunks is ranked exactly, however old they are.
    assert_eq!(search_ids(&*s, q("zebra", Reader::Admin)).await, vec![oldest]);
    assert_eq!(
        search_ids(&*s, q("budget zebra", Reader::Admin)).await,
        vec![oldest]
    );
}

async fn the_search_depth_counts_only_chunks_the_reader_may_read(s: Arc<dyn Store>) {
    let reader = user(&*s, "small-tenant@example.com", Role::User).await;
    let other = user(&*s, "big-tenant@example.com", Role::User).await;
    let mine = kb(&*s, reader, "small").await;
    let theirs = kb(&*s, other, "big").await;
    // The reader's one match is older than more than SEARCH_DEPTH matches it may not read.
    let old = indexed(
        &*s,
        mine,
        "/minutes",
        &["the quarterly budget of the small tenant"],
    )
    .await;
    let depth = usize::try_from(kbsync_store::SEARCH_DEPTH).unwrap();
    let newer: Vec<String> = (0..depth + 500)
        .map(|i| format!("budget line {i} of the other tenant"))
        .collect();
    let ledger = indexed(
        &*s,
        theirs,
        "/ledger",
        &newer.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;

    assert_eq!(
        search_ids(&*s, q("budget", Reader::User(reader))).await,
        vec![old]
    );
    let narrowed = [mine];
    assert_eq!(
        search_ids(
            &*s,
            SearchQuery {
                kb_ids: &narrowed,
                ..q("budget", Reader::User(reader))
            }
        )
        .await,
        vec![old]
    );
    assert_eq!(
        search_ids(&*s, q("budget", Reader::User(other))).await,
        vec![ledger]
    );
}

async fn search_ignores_diacritics(s: Arc<dyn Store>) {
    let owner = user(&*s, "dia@example.com", Role::User).await;
    let k = kb(&*s, owner, "dia").await;
    let umlaut = indexed(&*s, k, "/de", &["Die Übergabe der Schlüssel erfolgt am Montag"]).await;
    let plain = indexed(&*s, k, "/fr", &["Le cafe est ferme"]).await;
    assert_eq!(search_ids(&*s, q("ubergabe", Reader::Admin)).await, vec![umlaut]);
    assert_eq!(search_ids(&*s, q("ÜBERGABE", Reader::Admin)).await, vec![umlaut]);
    assert_eq!(search_ids(&*s, q("schlussel", Reader::Admin)).await, vec![umlaut]);
    assert_eq!(search_ids(&*s, q("café fermé", Reader::Admin)).await, vec![plain]);
}

async fn search_treats_query_syntax_characters_as_plain_text(s: Arc<dyn Store>) {
    let owner = user(&*s, "syn@example.com", Role::User).await;
    let k = kb(&*s, owner, "syn").await;
    let d = indexed(&*s, k, "/s", &["alpha beta gamma delta"]).await;
    let nasty = [
        "\"",
        "\"alpha",
        "alpha\"",
        "*",
        "alpha*",
        "alpha OR",
        "OR alpha",
        "alpha OR zulu",
        "-alpha",
        "alpha -beta",
        "NEAR(",
        "NEAR(alpha beta)",
        "alpha AND",
        "NOT alpha",
        "(",
        ")",
        "alpha)",
        "{",
        "alpha:",
        "text:alpha",
        "^alpha",
        "alpha & beta",
        "alpha | zulu",
        "!alpha",
        "alpha <-> beta",
        "'",
        "alpha'",
        "\\",
        "alpha\\",
        "%",
        "_",
        ";",
        "alpha; DROP TABLE chunks; --",
        ":*",
        "alpha:*",
        "+alpha",
        "alpha~",
        "[alpha]",
        "\u{0}",
        "alpha\u{0}beta",
        "\u{0345}",
        "\u{0903}",
        "alpha\u{0301}",
        "²",
        "ǅ",
        "\u{FFFF}",
    ];
    for text in nasty {
        let result = s.search(q(text, Reader::Admin)).await;
        assert!(result.is_ok(), "query {text:?} failed: {result:?}");
    }
    // Operators are words like any other: every word must occur.
    assert!(
        search_ids(&*s, q("alpha OR zulu", Reader::Admin))
            .await
            .is_empty()
    );
    assert_eq!(
        search_ids(&*s, q("\"alpha\" -beta*", Reader::Admin)).await,
        vec![d]
    );
    assert_eq!(
        search_ids(&*s, q("NEAR(alpha gamma)", Reader::Admin)).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(
        search_ids(&*s, q("(alpha) & [gamma]", Reader::Admin)).await,
        vec![d]
    );
    let or_doc = indexed(&*s, k, "/or", &["near or not, alpha stays"]).await;
    assert_eq!(
        search_ids(&*s, q("NEAR(alpha OR)", Reader::Admin)).await,
        vec![or_doc]
    );
}

async fn search_query_without_words_returns_nothing(s: Arc<dyn Store>) {
    let owner = user(&*s, "empty@example.com", Role::User).await;
    let k = kb(&*s, owner, "empty").await;
    indexed(&*s, k, "/e", &["anything at all"]).await;
    for text in ["", "   ", "!!!", "*", "\"\"", "- ( ) :", "\t\n"] {
        assert!(
            s.search(q(text, Reader::Admin)).await.unwrap().is_empty(),
            "{text:?}"
        );
    }
}

async fn search_requires_every_query_word(s: Arc<dyn Store>) {
    let owner = user(&*s, "and@example.com", Role::User).await;
    let k = kb(&*s, owner, "and").await;
    let both = indexed(&*s, k, "/both", &["red apples and green pears"]).await;
    let one = indexed(&*s, k, "/one", &["red cars only"]).await;
    assert_eq!(search_ids(&*s, q("red pears", Reader::Admin)).await, vec![both]);
    let mut red = search_ids(&*s, q("RED", Reader::Admin)).await;
    red.sort();
    let mut expected = vec![both, one];
    expected.sort();
    assert_eq!(red, expected);
}

async fn search_returns_only_readable_kbs(s: Arc<dyn Store>) {
    let owner = user(&*s, "so@example.com", Role::User).await;
    let grantee = user(&*s, "sg@example.com", Role::User).await;
    let stranger = user(&*s, "ss@example.com", Role::User).await;
    let mine = kb(&*s, owner, "mine").await;
    let shared = kb(&*s, owner, "shared").await;
    s.set_manual_grants(shared, &[grantee], &[]).await.unwrap();
    let in_mine = indexed(&*s, mine, "/m", &["secret okapi notes"]).await;
    let in_shared = indexed(&*s, shared, "/s", &["shared okapi notes"]).await;
    let sorted = |mut v: Vec<Uuid>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(search_ids(&*s, q("okapi", Reader::User(owner))).await),
        sorted(vec![in_mine, in_shared])
    );
    assert_eq!(
        search_ids(&*s, q("okapi", Reader::User(grantee))).await,
        vec![in_shared]
    );
    assert!(
        search_ids(&*s, q("okapi", Reader::User(stranger)))
            .await
            .is_empty()
    );
    assert_eq!(search_ids(&*s, q("okapi", Reader::Admin)).await.len(), 2);
}

async fn search_kb_ids_filter_narrows_but_never_widens_access(s: Arc<dyn Store>) {
    let owner = user(&*s, "fo@example.com", Role::User).await;
    let other = user(&*s, "fx@example.com", Role::User).await;
    let a = kb(&*s, owner, "a").await;
    let b = kb(&*s, owner, "b").await;
    let foreign = kb(&*s, other, "foreign").await;
    let da = indexed(&*s, a, "/a", &["ibex sighting"]).await;
    let db = indexed(&*s, b, "/b", &["ibex sighting"]).await;
    let df = indexed(&*s, foreign, "/f", &["ibex sighting"]).await;
    let a_only = [a];
    let query = SearchQuery {
        text: "ibex",
        reader: Reader::User(owner),
        kb_ids: &a_only,
        limit: 10,
    };
    assert_eq!(search_ids(&*s, query).await, vec![da]);
    let a_and_foreign = [a, foreign];
    let query = SearchQuery {
        text: "ibex",
        reader: Reader::User(owner),
        kb_ids: &a_and_foreign,
        limit: 10,
    };
    assert_eq!(search_ids(&*s, query).await, vec![da]);
    let foreign_only = [foreign];
    let query = SearchQuery {
        text: "ibex",
        reader: Reader::User(owner),
        kb_ids: &foreign_only,
        limit: 10,
    };
    assert!(search_ids(&*s, query).await.is_empty());
    let query = SearchQuery {
        text: "ibex",
        reader: Reader::Admin,
        kb_ids: &[b, foreign],
        limit: 10,
    };
    let mut got = search_ids(&*s, query).await;
    got.sort();
    let mut expected = vec![db, df];
    expected.sort();
    assert_eq!(got, expected);
}

async fn search_returns_one_hit_per_document(s: Arc<dyn Store>) {
    let owner = user(&*s, "one@example.com", Role::User).await;
    let k = kb(&*s, owner, "one").await;
    let many = indexed(
        &*s,
        k,
        "/many",
        &[
            "a chunk about the tapir and nothing else of note here at all",
            "tapir tapir tapir tapir",
            "another tapir chunk with filler words around it",
        ],
    )
    .await;
    let single = indexed(
        &*s,
        k,
        "/single",
        &["one tapir mention within a rather long sentence of words"],
    )
    .await;
    let hits = s.search(q("tapir", Reader::Admin)).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.document_id).collect::<Vec<_>>(),
        vec![many, single]
    );
    assert!(
        hits[0].snippet.contains("tapir tapir"),
        "best chunk's snippet expected: {:?}",
        hits[0].snippet
    );
}

async fn search_snippet_is_plain_short_text_around_the_match(s: Arc<dyn Store>) {
    let owner = user(&*s, "snip@example.com", Role::User).await;
    let k = kb(&*s, owner, "snip").await;
    let filler = "lorem ipsum dolor sit amet consectetur ".repeat(40);
    let text = format!("{filler}\n\nThe Übergabe   protocol starts here. {filler}");
    indexed(&*s, k, "/long", &[text.as_str()]).await;
    for query in ["ubergabe", "Übergabe protocol"] {
        let hits = s.search(q(query, Reader::Admin)).await.unwrap();
        assert_eq!(hits.len(), 1);
        let snippet = &hits[0].snippet;
        assert!(
            snippet.chars().count() <= 240,
            "{} chars: {snippet:?}",
            snippet.chars().count()
        );
        assert!(snippet.contains("Übergabe"), "{snippet:?}");
        assert!(
            !snippet.contains('<') && !snippet.contains('>') && !snippet.contains('\n'),
            "{snippet:?}"
        );
    }
}

async fn search_hit_names_kb_document_and_web_url(s: Arc<dyn Store>) {
    let owner = user(&*s, "hit@example.com", Role::User).await;
    let k = kb(&*s, owner, "hit").await;
    let d = indexed(&*s, k, "/folder/Report.docx", &["axolotl habitat"]).await;
    let hits = s.search(q("axolotl", Reader::Admin)).await.unwrap();
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!((h.knowledge_id, h.document_id), (k, d));
    assert_eq!(h.name, "Report.docx");
    assert_eq!(
        h.web_url.as_deref(),
        Some("https://drive.example//folder/Report.docx")
    );
    assert_eq!(h.snippet, "axolotl habitat");
    assert!(h.score.is_finite() && h.score > 0.0, "{}", h.score);
}

async fn search_respects_limit(s: Arc<dyn Store>) {
    let owner = user(&*s, "lim@example.com", Role::User).await;
    let k = kb(&*s, owner, "lim").await;
    for i in 0..5 {
        indexed(&*s, k, &format!("/{i}"), &["pangolin"]).await;
    }
    assert_eq!(
        s.search(SearchQuery {
            limit: 3,
            ..q("pangolin", Reader::Admin)
        })
        .await
        .unwrap()
        .len(),
        3
    );
    assert_eq!(s.search(q("pangolin", Reader::Admin)).await.unwrap().len(), 5);
    assert!(
        s.search(SearchQuery {
            limit: 0,
            ..q("pangolin", Reader::Admin)
        })
        .await
        .unwrap()
        .is_empty()
    );
}

async fn search_skips_documents_not_processed(s: Arc<dyn Store>) {
    let owner = user(&*s, "np@example.com", Role::User).await;
    let k = kb(&*s, owner, "np").await;
    let ok = indexed(&*s, k, "/ok", &["wombat burrow"]).await;
    let failed = indexed(&*s, k, "/failed", &["wombat burrow"]).await;
    s.fail_document(failed, "later failure", t(5)).await.unwrap();
    let _pending = doc_at(&*s, k, "/pending", &hash(3), t(0)).await;
    assert_eq!(search_ids(&*s, q("wombat", Reader::Admin)).await, vec![ok]);
}

// --- OAuth: pending authorizations -----------------------------------------------------------

fn enc(text: &str) -> Encrypted {
    Encrypted {
        ciphertext: format!("ct-{text}"),
        key_id: "key1".into(),
    }
}

fn new_state(kb_id: KbId, user_id: UserId, hash: &str, created: DateTime<Utc>) -> NewOAuthState {
    NewOAuthState {
        state_hash: hash.into(),
        kb_id,
        user_id,
        datasource: DatasourceKind::OneDrive,
        code_verifier: enc("verifier"),
        binding_hash: format!("binding-of-{hash}"),
        created_at: created,
        expires_at: created + Duration::minutes(10),
    }
}

async fn kb_with_owner(s: &dyn Store) -> (UserId, KbId) {
    let owner = user(s, &format!("o{}@example.com", rand_u32()), Role::User).await;
    let kb_id = kb(s, owner, "connected").await;
    (owner, kb_id)
}

async fn oauth_state_is_taken_exactly_once_and_round_trips(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.create_oauth_state(new_state(kb_id, owner, &hash(1), t(0)))
        .await
        .unwrap();
    let taken = s.take_oauth_state(&hash(1), t(60)).await.unwrap();
    assert_eq!(
        taken,
        OAuthState {
            kb_id,
            user_id: owner,
            datasource: DatasourceKind::OneDrive,
            code_verifier: enc("verifier"),
            binding_hash: format!("binding-of-{}", hash(1)),
            created_at: t(0),
            expires_at: t(600),
        }
    );
    assert!(matches!(
        s.take_oauth_state(&hash(1), t(61)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.take_oauth_state(&hash(2), t(61)).await,
        Err(StoreError::NotFound)
    ));
}

async fn expired_oauth_state_is_not_found_and_is_gone(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.create_oauth_state(new_state(kb_id, owner, &hash(1), t(0)))
        .await
        .unwrap();
    // Expired exactly at expires_at.
    assert!(matches!(
        s.take_oauth_state(&hash(1), t(600)).await,
        Err(StoreError::NotFound)
    ));
    // The expired take removed it: even an earlier clock does not find it again.
    assert!(matches!(
        s.take_oauth_state(&hash(1), t(1)).await,
        Err(StoreError::NotFound)
    ));
}

async fn concurrent_takes_of_one_state_have_exactly_one_winner(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.create_oauth_state(new_state(kb_id, owner, &hash(7), t(0)))
        .await
        .unwrap();
    let takes = (0..8).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { s.take_oauth_state(&hash(7), t(1)).await })
    });
    let results = futures::future::join_all(takes).await;
    let mut wins = 0;
    for r in results {
        match r.unwrap() {
            Ok(state) => {
                assert_eq!(state.kb_id, kb_id);
                wins += 1;
            }
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(wins, 1);
}

async fn oauth_state_for_unknown_kb_is_invalid_reference_and_duplicate_is_conflict(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    let err = s
        .create_oauth_state(new_state(Uuid::new_v4(), owner, &hash(1), t(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    s.create_oauth_state(new_state(kb_id, owner, &hash(2), t(0)))
        .await
        .unwrap();
    let err = s
        .create_oauth_state(new_state(kb_id, owner, &hash(2), t(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

async fn delete_expired_oauth_states_removes_only_expired_ones(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.create_oauth_state(new_state(kb_id, owner, &hash(1), t(0)))
        .await
        .unwrap();
    s.create_oauth_state(new_state(kb_id, owner, &hash(2), t(300)))
        .await
        .unwrap();
    assert_eq!(s.delete_expired_oauth_states(t(700)).await.unwrap(), 1);
    assert!(matches!(
        s.take_oauth_state(&hash(1), t(0)).await,
        Err(StoreError::NotFound)
    ));
    s.take_oauth_state(&hash(2), t(700)).await.unwrap();
}

// --- OAuth: connections ----------------------------------------------------------------------

fn new_connection(kb_id: KbId, refresh: &str) -> NewConnection {
    NewConnection {
        kb_id,
        datasource: DatasourceKind::OneDrive,
        refresh_token: enc(refresh),
        access_token: Some(StoredAccessToken {
            token: enc("access-0"),
            expires_at: t(3600),
        }),
        tenant: Some("tenant-1".into()),
    }
}

fn refreshed(refresh: Option<&str>, access: &str, expires_at: DateTime<Utc>) -> RefreshedTokens {
    RefreshedTokens {
        refresh_token: refresh.map(enc),
        access_token: StoredAccessToken {
            token: enc(access),
            expires_at,
        },
    }
}

async fn connection_round_trips_and_upsert_replaces_it(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    assert!(matches!(s.get_connection(kb_id).await, Err(StoreError::NotFound)));
    let stored = s
        .upsert_connection(new_connection(kb_id, "r1"), t(5))
        .await
        .unwrap();
    let expected = Connection {
        kb_id,
        datasource: DatasourceKind::OneDrive,
        refresh_token: enc("r1"),
        access_token: Some(StoredAccessToken {
            token: enc("access-0"),
            expires_at: t(3600),
        }),
        tenant: Some("tenant-1".into()),
        stored_at: t(5),
        last_refreshed_at: None,
        needs_reauth: false,
        refresh_lease: None,
    };
    assert_eq!(stored, expected);
    assert_eq!(s.get_connection(kb_id).await.unwrap(), expected);

    // A refresh, then a reconnect: everything from the refresh is replaced.
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(10), t(40))
            .await
            .unwrap()
    );
    assert!(
        s.store_refreshed_tokens(kb_id, "a", refreshed(Some("r2"), "access-1", t(4000)), t(11))
            .await
            .unwrap()
    );
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(12), t(40))
            .await
            .unwrap()
    );
    let mut again = new_connection(kb_id, "r3");
    again.access_token = None;
    again.tenant = None;
    let replaced = s.upsert_connection(again, t(20)).await.unwrap();
    assert_eq!(replaced.refresh_token, enc("r3"));
    assert_eq!(replaced.access_token, None);
    assert_eq!(replaced.tenant, None);
    assert_eq!(replaced.stored_at, t(20));
    assert_eq!(replaced.last_refreshed_at, None);
    assert_eq!(replaced.refresh_lease, None, "a reconnect drops any lease");
    assert_eq!(s.get_connection(kb_id).await.unwrap(), replaced);
}

async fn connection_for_unknown_kb_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .upsert_connection(new_connection(Uuid::new_v4(), "r"), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn delete_connection_forgets_it_and_unknown_is_not_found(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    s.delete_connection(kb_id).await.unwrap();
    assert!(matches!(s.get_connection(kb_id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.delete_connection(kb_id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.try_acquire_refresh_lease(kb_id, "a", t(0), t(30)).await,
        Err(StoreError::NotFound)
    ));
}

async fn refresh_lease_is_exclusive_until_released_or_expired(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(0), t(30))
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_connection(kb_id).await.unwrap().refresh_lease,
        Some(RefreshLease {
            owner: "a".into(),
            until: t(30)
        })
    );
    assert!(
        !s.try_acquire_refresh_lease(kb_id, "b", t(10), t(40))
            .await
            .unwrap()
    );
    assert!(
        !s.try_acquire_refresh_lease(kb_id, "a", t(10), t(40))
            .await
            .unwrap(),
        "not re-entrant"
    );
    // Releasing someone else's lease does nothing.
    s.release_refresh_lease(kb_id, "b").await.unwrap();
    assert!(
        !s.try_acquire_refresh_lease(kb_id, "b", t(10), t(40))
            .await
            .unwrap()
    );
    s.release_refresh_lease(kb_id, "a").await.unwrap();
    assert!(
        s.try_acquire_refresh_lease(kb_id, "b", t(11), t(41))
            .await
            .unwrap()
    );
    // b's lease expires at t(41): then c may take it over.
    assert!(
        !s.try_acquire_refresh_lease(kb_id, "c", t(40), t(70))
            .await
            .unwrap()
    );
    assert!(
        s.try_acquire_refresh_lease(kb_id, "c", t(41), t(71))
            .await
            .unwrap()
    );
    // b, whose lease was taken over, can no longer store or mark anything.
    assert!(
        !s.store_refreshed_tokens(kb_id, "b", refreshed(Some("rb"), "ab", t(5000)), t(42))
            .await
            .unwrap()
    );
    assert!(!s.mark_needs_reauth(kb_id, "b", t(0)).await.unwrap());
    assert_eq!(s.get_connection(kb_id).await.unwrap().refresh_token, enc("r1"));
}

async fn concurrent_lease_attempts_have_exactly_one_winner(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.try_acquire_refresh_lease(kb_id, &format!("owner-{i}"), t(1), t(31))
                .await
                .unwrap()
        })
    });
    let won: Vec<bool> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

async fn store_refreshed_tokens_writes_rotation_and_releases_the_lease(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    // Without the lease nothing is written.
    assert!(
        !s.store_refreshed_tokens(kb_id, "a", refreshed(Some("r2"), "access-1", t(4000)), t(10))
            .await
            .unwrap()
    );
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(10), t(40))
            .await
            .unwrap()
    );
    assert!(
        s.store_refreshed_tokens(kb_id, "a", refreshed(Some("r2"), "access-1", t(4000)), t(11))
            .await
            .unwrap()
    );
    let c = s.get_connection(kb_id).await.unwrap();
    assert_eq!(c.refresh_token, enc("r2"));
    assert_eq!(
        c.access_token,
        Some(StoredAccessToken {
            token: enc("access-1"),
            expires_at: t(4000)
        })
    );
    assert_eq!(c.last_refreshed_at, Some(t(11)));
    assert_eq!(c.stored_at, t(0));
    assert_eq!(c.refresh_lease, None);
    // A server that does not rotate: the stored refresh token stays.
    assert!(
        s.try_acquire_refresh_lease(kb_id, "b", t(20), t(50))
            .await
            .unwrap()
    );
    assert!(
        s.store_refreshed_tokens(kb_id, "b", refreshed(None, "access-2", t(5000)), t(21))
            .await
            .unwrap()
    );
    let c = s.get_connection(kb_id).await.unwrap();
    assert_eq!(c.refresh_token, enc("r2"));
    assert_eq!(c.access_token.unwrap().token, enc("access-2"));
}

async fn needs_reauth_marks_kb_and_a_new_connection_clears_it(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let (_, other_kb) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    s.upsert_connection(new_connection(other_kb, "r1"), t(0))
        .await
        .unwrap();
    // Only the lease holder may mark it.
    assert!(!s.mark_needs_reauth(kb_id, "a", t(0)).await.unwrap());
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(1), t(31))
            .await
            .unwrap()
    );
    assert!(s.mark_needs_reauth(kb_id, "a", t(0)).await.unwrap());
    let c = s.get_connection(kb_id).await.unwrap();
    assert!(c.needs_reauth);
    assert_eq!(c.access_token, None, "the access token is dropped");
    assert_eq!(c.refresh_lease, None);
    assert_eq!(
        s.get_kb(kb_id).await.unwrap().sync_status,
        SyncStatus::NeedsReauth
    );
    assert_eq!(s.get_kb(other_kb).await.unwrap().sync_status, SyncStatus::Idle);
    assert!(!s.get_connection(other_kb).await.unwrap().needs_reauth);

    let renewed = s
        .upsert_connection(new_connection(kb_id, "r2"), t(100))
        .await
        .unwrap();
    assert!(!renewed.needs_reauth);
    assert_eq!(s.get_kb(kb_id).await.unwrap().sync_status, SyncStatus::Idle);

    // Forgetting a connection that needs re-authorization also leaves nothing to re-authorize.
    assert!(
        s.try_acquire_refresh_lease(kb_id, "a", t(101), t(131))
            .await
            .unwrap()
    );
    assert!(s.mark_needs_reauth(kb_id, "a", t(0)).await.unwrap());
    s.delete_connection(kb_id).await.unwrap();
    assert_eq!(s.get_kb(kb_id).await.unwrap().sync_status, SyncStatus::Idle);
}

async fn deleting_kb_removes_its_connection_and_pending_states(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    s.upsert_connection(new_connection(kb_id, "r1"), t(0))
        .await
        .unwrap();
    s.create_oauth_state(new_state(kb_id, owner, &hash(3), t(0)))
        .await
        .unwrap();
    s.delete_kb(kb_id).await.unwrap();
    assert!(matches!(s.get_connection(kb_id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.take_oauth_state(&hash(3), t(1)).await,
        Err(StoreError::NotFound)
    ));
}

// --- scheduling, leases and progress ----------------------------------------------------------

/// A OneDrive knowledge base with a source and a healthy connection: due unless scheduled later
/// or leased.
async fn connected_kb(s: &dyn Store, owner: UserId, name: &str) -> KbId {
    let id = Uuid::new_v4();
    s.create_kb(
        id,
        NewKnowledgeBase {
            name: name.into(),
            description: String::new(),
            owner_id: owner,
            kb_type: KbType::OneDrive,
        },
        t(0),
    )
    .await
    .unwrap();
    s.add_source(Uuid::new_v4(), new_source(id, "root"), t(0))
        .await
        .unwrap();
    s.upsert_connection(new_connection(id, "r1"), t(0)).await.unwrap();
    id
}

async fn owner_of_many(s: &dyn Store) -> UserId {
    user(s, &format!("m{}@example.com", rand_u32()), Role::User).await
}

fn claimed_ids(claimed: &[ClaimedSync]) -> Vec<KbId> {
    claimed.iter().map(|c| c.kb_id).collect()
}

fn release(
    next: DateTime<Utc>,
    failures: u32,
    ran: Option<DateTime<Utc>>,
    error: Option<&str>,
) -> SyncRelease {
    SyncRelease {
        next_sync_at: next,
        consecutive_failures: failures,
        last_sync_at: ran,
        last_error: error.map(str::to_owned),
    }
}

async fn claim_due_syncs_skips_local_needs_reauth_leased_and_not_yet_due_kbs(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let never = connected_kb(&*s, owner, "never synced").await;
    let overdue = connected_kb(&*s, owner, "overdue").await;
    s.schedule_sync(overdue, t(-10)).await.unwrap();
    let due_now = connected_kb(&*s, owner, "due exactly now").await;
    s.schedule_sync(due_now, t(0)).await.unwrap();

    let later = connected_kb(&*s, owner, "not yet due").await;
    s.schedule_sync(later, t(1)).await.unwrap();
    let leased = connected_kb(&*s, owner, "leased").await;
    assert!(s.try_claim_sync(leased, "other", t(-5), t(30)).await.unwrap());
    let reauth = connected_kb(&*s, owner, "needs reauth").await;
    assert!(
        s.try_acquire_refresh_lease(reauth, "r", t(0), t(30))
            .await
            .unwrap()
    );
    assert!(s.mark_needs_reauth(reauth, "r", t(0)).await.unwrap());
    let no_source = Uuid::new_v4();
    s.create_kb(
        no_source,
        NewKnowledgeBase {
            name: "no source".into(),
            description: String::new(),
            owner_id: owner,
            kb_type: KbType::OneDrive,
        },
        t(0),
    )
    .await
    .unwrap();
    s.upsert_connection(new_connection(no_source, "r1"), t(0))
        .await
        .unwrap();
    let no_connection = Uuid::new_v4();
    s.create_kb(
        no_connection,
        NewKnowledgeBase {
            name: "no connection".into(),
            description: String::new(),
            owner_id: owner,
            kb_type: KbType::OneDrive,
        },
        t(0),
    )
    .await
    .unwrap();
    s.add_source(Uuid::new_v4(), new_source(no_connection, "root"), t(0))
        .await
        .unwrap();
    // A local knowledge base is never scheduled, whatever rows it has.
    let local = kb(&*s, owner, "local").await;
    s.add_source(Uuid::new_v4(), new_source(local, "root"), t(0))
        .await
        .unwrap();
    s.upsert_connection(new_connection(local, "r1"), t(0))
        .await
        .unwrap();

    let claimed = s.claim_due_syncs("me", t(0), t(30), 100).await.unwrap();
    assert_eq!(
        claimed,
        vec![
            ClaimedSync {
                kb_id: never,
                due_at: None
            },
            ClaimedSync {
                kb_id: overdue,
                due_at: Some(t(-10))
            },
            ClaimedSync {
                kb_id: due_now,
                due_at: Some(t(0))
            },
        ]
    );
    assert!(
        s.claim_due_syncs("someone else", t(0), t(30), 100)
            .await
            .unwrap()
            .is_empty(),
        "claimed knowledge bases are leased"
    );
    // The user reconnects: the knowledge base is due again.
    s.upsert_connection(new_connection(reauth, "r2"), t(1))
        .await
        .unwrap();
    assert_eq!(
        claimed_ids(&s.claim_due_syncs("me", t(1), t(30), 100).await.unwrap()),
        vec![reauth, later]
    );
}

async fn claim_due_syncs_takes_never_synced_first_then_oldest_due_up_to_the_limit(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let mut expected = Vec::new();
    // Created in an order unrelated to their schedule.
    let a = connected_kb(&*s, owner, "a").await;
    s.schedule_sync(a, t(-1)).await.unwrap();
    let b = connected_kb(&*s, owner, "b").await;
    s.schedule_sync(b, t(-100)).await.unwrap();
    let c = connected_kb(&*s, owner, "c").await;
    let d = connected_kb(&*s, owner, "d").await;
    s.schedule_sync(d, t(-50)).await.unwrap();
    let mut never = vec![c];
    let e = connected_kb(&*s, owner, "e").await;
    never.push(e);
    never.sort();
    expected.extend(never);
    expected.extend([b, d, a]);

    assert_eq!(s.claim_due_syncs("me", t(0), t(30), 0).await.unwrap(), vec![]);
    let first = s.claim_due_syncs("me", t(0), t(30), 2).await.unwrap();
    let second = s.claim_due_syncs("me", t(0), t(30), 2).await.unwrap();
    let third = s.claim_due_syncs("me", t(0), t(30), 2).await.unwrap();
    assert_eq!(claimed_ids(&first), expected[0..2]);
    assert_eq!(claimed_ids(&second), expected[2..4]);
    assert_eq!(claimed_ids(&third), expected[4..5]);
    assert_eq!(third[0].due_at, Some(t(-1)));
}

async fn claiming_sets_a_live_lease_and_clears_a_stale_cancel_request(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let k = connected_kb(&*s, owner, "k").await;
    assert_eq!(
        claimed_ids(&s.claim_due_syncs("a", t(0), t(30), 10).await.unwrap()),
        vec![k]
    );
    let state = s.get_sync_state(k, t(29)).await.unwrap();
    assert!(state.running);
    assert!(
        !s.get_sync_state(k, t(30)).await.unwrap().running,
        "expired at lease_until"
    );
    assert!(s.request_sync_cancel(k, t(10)).await.unwrap());
    assert!(s.get_sync_state(k, t(10)).await.unwrap().cancel_requested);
    // a dies; its lease expires with the flag still set. b's claim must not inherit it.
    let claimed = s.claim_due_syncs("b", t(30), t(60), 10).await.unwrap();
    assert_eq!(claimed_ids(&claimed), vec![k]);
    let state = s.get_sync_state(k, t(31)).await.unwrap();
    assert!(state.running && !state.cancel_requested);
    assert_eq!(
        s.renew_sync_lease(k, "b", t(90)).await.unwrap(),
        LeaseRenewal::Held
    );
}

async fn an_expired_lease_is_taken_over_by_another_owner(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let k = connected_kb(&*s, owner, "k").await;
    assert_eq!(
        claimed_ids(&s.claim_due_syncs("a", t(0), t(30), 10).await.unwrap()),
        vec![k]
    );
    assert!(s.claim_due_syncs("b", t(29), t(59), 10).await.unwrap().is_empty());
    assert!(!s.try_claim_sync(k, "b", t(29), t(59)).await.unwrap());
    // At its expiry the lease is stale.
    let taken = s.claim_due_syncs("b", t(30), t(60), 10).await.unwrap();
    assert_eq!(
        taken,
        vec![ClaimedSync {
            kb_id: k,
            due_at: None
        }]
    );
    assert_eq!(
        s.renew_sync_lease(k, "a", t(90)).await.unwrap(),
        LeaseRenewal::Lost
    );
    assert_eq!(
        s.renew_sync_lease(k, "b", t(90)).await.unwrap(),
        LeaseRenewal::Held
    );
    // try_claim_sync takes over an expired lease too.
    assert!(s.try_claim_sync(k, "c", t(90), t(120)).await.unwrap());
    assert_eq!(
        s.renew_sync_lease(k, "b", t(150)).await.unwrap(),
        LeaseRenewal::Lost
    );
}

async fn two_concurrent_claimers_never_claim_the_same_kb(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let mut all = Vec::new();
    for i in 0..50 {
        let k = connected_kb(&*s, owner, &format!("kb{i}")).await;
        if i % 3 == 0 {
            s.schedule_sync(k, t(-i)).await.unwrap();
        }
        all.push(k);
    }
    all.sort();
    let mut claimed: Vec<KbId> = Vec::new();
    // Rounds of concurrent claimers until one round finds nothing left (a PostgreSQL claimer may
    // come back short when it skipped rows others held).
    for round in 0..20 {
        let claims = (0..8).map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.claim_due_syncs(&format!("owner-{round}-{i}"), t(0), t(600), 4)
                    .await
                    .unwrap()
            })
        });
        let mut got = 0;
        for r in futures::future::join_all(claims).await {
            let r = r.unwrap();
            got += r.len();
            claimed.extend(claimed_ids(&r));
        }
        if got == 0 {
            break;
        }
    }
    let mut unique = claimed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), claimed.len(), "a knowledge base was claimed twice");
    assert_eq!(unique, all, "every due knowledge base was claimed");
}

async fn try_claim_sync_takes_a_free_or_expired_lease_whatever_the_schedule(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let k = connected_kb(&*s, owner, "k").await;
    s.schedule_sync(k, t(10_000)).await.unwrap();
    assert!(s.try_claim_sync(k, "a", t(0), t(30)).await.unwrap());
    assert!(
        !s.try_claim_sync(k, "a", t(1), t(31)).await.unwrap(),
        "not re-entrant"
    );
    assert!(!s.try_claim_sync(k, "b", t(1), t(31)).await.unwrap());
    assert!(s.try_claim_sync(k, "b", t(30), t(60)).await.unwrap());
    // The schedule is untouched by a manual claim.
    assert_eq!(
        s.get_sync_state(k, t(31)).await.unwrap().next_sync_at,
        Some(t(10_000))
    );
    // A local knowledge base can be claimed by hand too (the caller decides what to run).
    let local = kb(&*s, owner, "local").await;
    assert!(s.try_claim_sync(local, "a", t(0), t(30)).await.unwrap());
    assert!(matches!(
        s.try_claim_sync(Uuid::new_v4(), "a", t(0), t(30)).await,
        Err(StoreError::NotFound)
    ));
}

async fn renew_sync_lease_extends_only_the_holders_lease(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let k = connected_kb(&*s, owner, "k").await;
    assert_eq!(
        s.renew_sync_lease(k, "a", t(30)).await.unwrap(),
        LeaseRenewal::Lost
    );
    assert!(s.try_claim_sync(k, "a", t(0), t(30)).await.unwrap());
    assert_eq!(
        s.renew_sync_lease(k, "b", t(60)).await.unwrap(),
        LeaseRenewal::Lost
    );
    assert_eq!(
        s.renew_sync_lease(k, "a", t(60)).await.unwrap(),
        LeaseRenewal::Held
    );
    assert!(
        !s.try_claim_sync(k, "b", t(45), t(75)).await.unwrap(),
        "extended past t(30)"
    );
    // Expired but not taken over: still a's, and renewing revives it.
    assert_eq!(
        s.renew_sync_lease(k, "a", t(100)).await.unwrap(),
        LeaseRenewal::Held
    );
    assert!(s.get_sync_state(k, t(70)).await.unwrap().running);
    assert!(!s.try_claim_sync(k, "b", t(70), t(100)).await.unwrap());
    assert_eq!(
        s.renew_sync_lease(Uuid::new_v4(), "a", t(100)).await.unwrap(),
        LeaseRenewal::Lost
    );
    s.delete_kb(k).await.unwrap();
    assert_eq!(
        s.renew_sync_lease(k, "a", t(100)).await.unwrap(),
        LeaseRenewal::Lost
    );
}

async fn cancel_request_is_seen_by_the_lease_holder_on_renew(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let k = connected_kb(&*s, owner, "k").await;
    assert!(
        !s.request_sync_cancel(k, t(0)).await.unwrap(),
        "nothing is running"
    );
    assert!(!s.get_sync_state(k, t(0)).await.unwrap().cancel_requested);
    assert!(matches!(
        s.request_sync_cancel(Uuid::new_v4(), t(0)).await,
        Err(StoreError::NotFound)
    ));
    assert!(s.try_claim_sync(k, "a", t(0), t(30)).await.unwrap());
    assert_eq!(
        s.renew_sync_lease(k, "a", t(30)).await.unwrap(),
        LeaseRenewal::Held
    );
    assert!(s.request_sync_cancel(k, t(5)).await.unwrap());
    assert!(s.get_sync_state(k, t(5)).await.unwrap().cancel_requested);
    assert_eq!(
        s.renew_sync_lease(k, "a", t(40)).await.unwrap(),
        LeaseRenewal::CancelRequested
    );
    assert_eq!(
        s.renew_sync_lease(k, "a", t(40)).await.unwrap(),
        LeaseRenewal::CancelRequested,
        "the request stays until the lease is released"
    );
    assert!(
        s.release_sync(k, "a", &release(t(100), 0, Some(t(6)), None))
            .await
            .unwrap()
    );
    let state = s.get_sync_state(k, t(7)).await.unwrap();
    assert!(!state.running && !state.cancel_requested);
    assert!(!s.request_sync_cancel(k, t(7)).await.unwrap());
    // An expired lease is no run to cancel.
    assert!(s.try_claim_sync(k, "b", t(8), t(20)).await.unwrap());
    assert!(!s.request_sync_cancel(k, t(20)).await.unwrap());
    assert!(s.try_claim_sync(k, "c", t(21), t(50)).await.unwrap());
    assert_eq!(
        s.renew_sync_lease(k, "c", t(60)).await.unwrap(),
        LeaseRenewal::Held
    );
}

async fn release_by_a_former_owner_changes_nothing(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let k = connected_kb(&*s, owner, "k").await;
    assert!(s.try_claim_sync(k, "a", t(0), t(30)).await.unwrap());
    assert!(s.try_claim_sync(k, "b", t(30), t(60)).await.unwrap());
    let before = s.get_sync_state(k, t(31)).await.unwrap();
    assert!(
        !s.release_sync(k, "a", &release(t(500), 3, Some(t(31)), Some("a failed")))
            .await
            .unwrap()
    );
    assert_eq!(s.get_sync_state(k, t(31)).await.unwrap(), before);
    assert!(
        !s.release_sync(Uuid::new_v4(), "a", &release(t(500), 0, None, None))
            .await
            .unwrap()
    );

    assert!(
        s.release_sync(k, "b", &release(t(500), 2, Some(t(40)), Some("throttled")))
            .await
            .unwrap()
    );
    let state = s.get_sync_state(k, t(41)).await.unwrap();
    assert!(!state.running);
    assert_eq!(state.next_sync_at, Some(t(500)));
    assert_eq!(state.consecutive_failures, 2);
    assert_eq!(state.last_sync_at, Some(t(40)));
    assert_eq!(state.last_error.as_deref(), Some("throttled"));
    assert!(
        !s.release_sync(k, "b", &release(t(600), 0, None, None))
            .await
            .unwrap(),
        "released already"
    );
    assert!(
        s.try_claim_sync(k, "c", t(42), t(72)).await.unwrap(),
        "the lease is free"
    );

    // A lease released without running keeps last_sync_at; a clean run clears the error.
    assert!(
        s.release_sync(k, "c", &release(t(700), 0, None, None))
            .await
            .unwrap()
    );
    let state = s.get_sync_state(k, t(43)).await.unwrap();
    assert_eq!(state.last_sync_at, Some(t(40)));
    assert_eq!(state.last_error, None);
    assert_eq!(state.consecutive_failures, 0);
    assert_eq!(state.next_sync_at, Some(t(700)));
}

async fn sync_state_round_trips_progress_interval_and_schedule(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let k = connected_kb(&*s, owner, "k").await;
    assert_eq!(
        s.get_sync_state(k, t(0)).await.unwrap(),
        SyncState {
            kb_id: k,
            status: SyncStatus::Idle,
            progress: SyncProgress::default(),
            last_error: None,
            last_sync_at: None,
            next_sync_at: None,
            interval_minutes: None,
            consecutive_failures: 0,
            running: false,
            cancel_requested: false,
        }
    );
    let run = Uuid::new_v4();
    let progress = SyncProgress {
        run_id: Some(run),
        current: 7,
        total: 120,
        file: Some("Reports/Q3 – Übersicht.docx".into()),
    };
    s.set_sync_progress(k, &progress).await.unwrap();
    s.set_sync_interval(k, Some(45)).await.unwrap();
    s.schedule_sync(k, t(3600)).await.unwrap();
    s.set_sync_status(k, SyncStatus::Syncing).await.unwrap();
    assert!(s.try_claim_sync(k, "a", t(0), t(30)).await.unwrap());
    let state = s.get_sync_state(k, t(1)).await.unwrap();
    assert_eq!(state.progress, progress);
    assert_eq!(state.interval_minutes, Some(45));
    assert_eq!(state.next_sync_at, Some(t(3600)));
    assert_eq!(state.status, SyncStatus::Syncing);
    assert!(state.running);
    s.set_sync_interval(k, None).await.unwrap();
    s.set_sync_progress(k, &SyncProgress::default()).await.unwrap();
    let state = s.get_sync_state(k, t(1)).await.unwrap();
    assert_eq!(state.interval_minutes, None);
    assert_eq!(state.progress, SyncProgress::default());

    let unknown = Uuid::new_v4();
    assert!(matches!(
        s.get_sync_state(unknown, t(0)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.set_sync_progress(unknown, &progress).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.schedule_sync(unknown, t(0)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.set_sync_interval(unknown, Some(5)).await,
        Err(StoreError::NotFound)
    ));
}

fn failure(n: u32) -> SyncFailure {
    SyncFailure {
        item_id: format!("item-{n}"),
        name: format!("file-{n}.pdf"),
        reason: format!("reason {n}"),
    }
}

fn outcome_with(status: SyncStatus, failures: Vec<SyncFailure>) -> SyncRunOutcome {
    SyncRunOutcome {
        status,
        processed: 1,
        failed: failures.len() as u64,
        deleted: 0,
        skipped: 0,
        total_found: 1 + failures.len() as u64,
        failures,
    }
}

async fn close_interrupted_runs_fails_only_that_kbs_runs_still_syncing(s: Arc<dyn Store>) {
    let (_, k) = kb_with_owner(&*s).await;
    let (_, other) = kb_with_owner(&*s).await;
    let (dead, done, elsewhere) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    s.create_sync_run(dead, k, SyncTrigger::Scheduled, t(0))
        .await
        .unwrap();
    s.create_sync_run(done, k, SyncTrigger::Manual, t(1))
        .await
        .unwrap();
    s.finish_sync_run(done, &outcome_with(SyncStatus::Completed, vec![]), t(2))
        .await
        .unwrap();
    s.create_sync_run(elsewhere, other, SyncTrigger::Manual, t(0))
        .await
        .unwrap();

    assert_eq!(s.close_interrupted_runs(k, t(50)).await.unwrap(), 1);
    let runs = s.list_sync_runs(k, 10).await.unwrap();
    let closed = runs.iter().find(|r| r.id == dead).unwrap();
    assert_eq!(closed.outcome.status, SyncStatus::Failed);
    assert_eq!(closed.finished_at, Some(t(50)));
    let finished = runs.iter().find(|r| r.id == done).unwrap();
    assert_eq!(finished.outcome.status, SyncStatus::Completed);
    assert_eq!(finished.finished_at, Some(t(2)));
    assert_eq!(
        s.list_sync_runs(other, 10).await.unwrap()[0].outcome.status,
        SyncStatus::Syncing
    );
    assert_eq!(s.close_interrupted_runs(k, t(60)).await.unwrap(), 0);
    assert_eq!(s.close_interrupted_runs(Uuid::new_v4(), t(60)).await.unwrap(), 0);
}

async fn recorded_failures_list_in_order_and_finish_appends_after_them(s: Arc<dyn Store>) {
    let (_, k) = kb_with_owner(&*s).await;
    let run = Uuid::new_v4();
    s.create_sync_run(run, k, SyncTrigger::Scheduled, t(0))
        .await
        .unwrap();
    s.record_sync_failures(run, &[failure(1), failure(2)])
        .await
        .unwrap();
    s.record_sync_failures(run, &[]).await.unwrap();
    s.record_sync_failures(run, &[failure(3)]).await.unwrap();
    assert_eq!(
        s.list_sync_failures(run, 0).await.unwrap(),
        vec![failure(1), failure(2), failure(3)]
    );
    assert_eq!(s.list_sync_failures(run, 2).await.unwrap(), vec![failure(3)]);
    assert!(s.list_sync_failures(run, 3).await.unwrap().is_empty());
    assert!(s.list_sync_failures(run, u64::MAX).await.unwrap().is_empty());
    // While it runs, list_sync_runs shows what was recorded so far.
    assert_eq!(s.list_sync_runs(k, 1).await.unwrap()[0].outcome.failures.len(), 3);

    s.finish_sync_run(
        run,
        &outcome_with(SyncStatus::CompletedWithErrors, vec![failure(4), failure(5)]),
        t(9),
    )
    .await
    .unwrap();
    let all = vec![failure(1), failure(2), failure(3), failure(4), failure(5)];
    assert_eq!(s.list_sync_failures(run, 0).await.unwrap(), all);
    assert_eq!(s.list_sync_failures(run, 3).await.unwrap(), all[3..]);
    let listed = s.list_sync_runs(k, 10).await.unwrap();
    assert_eq!(listed[0].outcome.failures, all);

    // Another run's failures are its own.
    let next = Uuid::new_v4();
    s.create_sync_run(next, k, SyncTrigger::Manual, t(10))
        .await
        .unwrap();
    s.record_sync_failures(next, &[failure(9)]).await.unwrap();
    assert_eq!(s.list_sync_failures(next, 0).await.unwrap(), vec![failure(9)]);
    let listed = s.list_sync_runs(k, 1).await.unwrap();
    assert_eq!((listed.len(), listed[0].id), (1, next));
    assert_eq!(listed[0].outcome.failures, vec![failure(9)]);

    assert!(matches!(
        s.record_sync_failures(Uuid::new_v4(), &[failure(1)]).await,
        Err(StoreError::NotFound)
    ));
    assert!(s.list_sync_failures(Uuid::new_v4(), 0).await.unwrap().is_empty());
}

async fn concurrent_failure_records_to_one_run_all_land_in_order(s: Arc<dyn Store>) {
    let (_, k) = kb_with_owner(&*s).await;
    let run = Uuid::new_v4();
    s.create_sync_run(run, k, SyncTrigger::Scheduled, t(0))
        .await
        .unwrap();
    let writers = (0..8u32).map(|w| {
        let s = s.clone();
        tokio::spawn(async move {
            let batch: Vec<SyncFailure> = (0..5).map(|i| failure(w * 100 + i)).collect();
            s.record_sync_failures(run, &batch).await.unwrap();
        })
    });
    for r in futures::future::join_all(writers).await {
        r.unwrap();
    }
    let listed = s.list_sync_failures(run, 0).await.unwrap();
    assert_eq!(listed.len(), 40);
    // Each batch is contiguous, in its own order.
    for chunk in listed.chunks(5) {
        let base = chunk[0]
            .item_id
            .trim_start_matches("item-")
            .parse::<u32>()
            .unwrap();
        assert_eq!(chunk, (0..5).map(|i| failure(base + i)).collect::<Vec<_>>());
    }
}

async fn delete_source_removes_only_its_documents_and_reports_unreferenced_blobs(s: Arc<dyn Store>) {
    let (owner, k) = kb_with_owner(&*s).await;
    let other_kb = kb(&*s, owner, "other").await;
    let gone = s
        .add_source(Uuid::new_v4(), new_source(k, "folder-a"), t(0))
        .await
        .unwrap();
    let kept = s
        .add_source(Uuid::new_v4(), new_source(k, "folder-b"), t(0))
        .await
        .unwrap();
    let upsert = |source: Uuid, path: &'static str, h: String| {
        let s = s.clone();
        async move {
            s.upsert_source_document(Uuid::new_v4(), source, new_doc(k, path, &h), t(1))
                .await
                .unwrap()
                .0
                .id
        }
    };
    let only_here = upsert(gone.id, "a/only.txt", hash(1)).await;
    s.complete_document(only_here, &["aardvark lives here".into()], t(2))
        .await
        .unwrap();
    upsert(gone.id, "a/twin-1.txt", hash(5)).await;
    upsert(gone.id, "a/twin-2.txt", hash(5)).await;
    upsert(gone.id, "a/shared-with-b.txt", hash(2)).await;
    upsert(gone.id, "a/shared-with-other-kb.txt", hash(4)).await;
    let in_b = upsert(kept.id, "b/one.txt", hash(2)).await;
    s.complete_document(in_b, &["aardvark visits".into()], t(2))
        .await
        .unwrap();
    let uploaded = doc_at(&*s, k, "uploaded.txt", &hash(3), t(1)).await;
    doc_at(&*s, other_kb, "copy.txt", &hash(4), t(1)).await;

    // Not this knowledge base's source: nothing happens.
    assert!(matches!(
        s.delete_source(other_kb, gone.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.source_documents(gone.id).await.unwrap().len(), 5);

    assert_eq!(s.delete_source(k, gone.id).await.unwrap(), vec![hash(1), hash(5)]);
    assert!(s.source_documents(gone.id).await.unwrap().is_empty());
    assert_eq!(
        s.list_sources(k)
            .await
            .unwrap()
            .iter()
            .map(|x| x.id)
            .collect::<Vec<_>>(),
        vec![kept.id]
    );
    let left: Vec<String> = s
        .list_documents(k, page(100, 0))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.path)
        .collect();
    assert_eq!(left, ["b/one.txt", "uploaded.txt"]);
    assert_eq!(search_ids(&*s, q("aardvark", Reader::Admin)).await, vec![in_b]);
    s.get_document(k, uploaded).await.unwrap();
    assert_eq!(s.list_documents(other_kb, page(10, 0)).await.unwrap().total, 1);
    assert!(matches!(
        s.delete_source(k, gone.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.delete_source(Uuid::new_v4(), kept.id).await,
        Err(StoreError::NotFound)
    ));
    // A source without documents goes too.
    assert_eq!(s.delete_source(k, kept.id).await.unwrap(), vec![hash(2)]);
    assert!(s.list_sources(k).await.unwrap().is_empty());
    assert!(s.search(q("aardvark", Reader::Admin)).await.unwrap().is_empty());
}

fn grant(kb_id: KbId, user_id: UserId, permission: Permission, origin: GrantOrigin) -> AccessGrant {
    AccessGrant {
        kb_id,
        user_id,
        permission,
        origin,
    }
}

async fn sorted_grants(s: &dyn Store, k: KbId) -> Vec<AccessGrant> {
    let mut grants = s.list_grants(k).await.unwrap();
    grants.sort_by_key(|g| (g.user_id, g.origin.as_str()));
    grants
}

async fn replace_sync_grants_keeps_manual_grants(s: Arc<dyn Store>) {
    let owner = user(&*s, "sg-owner@example.com", Role::User).await;
    let u1 = user(&*s, "sg1@example.com", Role::User).await;
    let u2 = user(&*s, "sg2@example.com", Role::User).await;
    let u3 = user(&*s, "sg3@example.com", Role::User).await;
    let k = kb(&*s, owner, "shared").await;
    let other = kb(&*s, owner, "other").await;
    let folder = s
        .add_source(Uuid::new_v4(), new_source(k, "f"), t(0))
        .await
        .unwrap()
        .id;
    let other_folder = s
        .add_source(Uuid::new_v4(), new_source(other, "f"), t(0))
        .await
        .unwrap()
        .id;
    s.set_manual_grants(k, &[u1], &[u2]).await.unwrap();
    s.replace_sync_grants(other, &sync_grants(other_folder, &[u2]), t(0))
        .await
        .unwrap();

    s.replace_sync_grants(k, &sync_grants(folder, &[u1, u3, u3]), t(0))
        .await
        .unwrap();
    let mut expected = vec![
        grant(k, u1, Permission::Read, GrantOrigin::Manual),
        grant(k, u1, Permission::Read, GrantOrigin::Sync),
        grant(k, u2, Permission::Write, GrantOrigin::Manual),
        grant(k, u3, Permission::Read, GrantOrigin::Sync),
    ];
    expected.sort_by_key(|g| (g.user_id, g.origin.as_str()));
    assert_eq!(sorted_grants(&*s, k).await, expected);
    let readable = s.list_readable_kbs(Reader::User(u3), page(10, 0)).await.unwrap();
    assert_eq!(readable.items.iter().map(|x| x.id).collect::<Vec<_>>(), vec![k]);

    // Sharing shrinks: only sync grants follow.
    s.replace_sync_grants(k, &sync_grants(folder, &[u2]), t(0))
        .await
        .unwrap();
    let mut expected = vec![
        grant(k, u1, Permission::Read, GrantOrigin::Manual),
        grant(k, u2, Permission::Write, GrantOrigin::Manual),
        grant(k, u2, Permission::Read, GrantOrigin::Sync),
    ];
    expected.sort_by_key(|g| (g.user_id, g.origin.as_str()));
    assert_eq!(sorted_grants(&*s, k).await, expected);
    assert_eq!(s.strongest_grant(k, u3).await.unwrap(), None);
    assert_eq!(s.strongest_grant(k, u2).await.unwrap(), Some(Permission::Write));

    // An unknown user changes nothing.
    let err = s
        .replace_sync_grants(k, &sync_grants(folder, &[u3, Uuid::new_v4()]), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    assert_eq!(sorted_grants(&*s, k).await, expected);
    // So does a source of another knowledge base.
    let err = s
        .replace_sync_grants(k, &sync_grants(other_folder, &[u3]), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    assert_eq!(sorted_grants(&*s, k).await, expected);
    // Setting manual grants leaves sync grants alone, and the other way round.
    s.set_manual_grants(k, &[], &[]).await.unwrap();
    assert_eq!(
        sorted_grants(&*s, k).await,
        vec![grant(k, u2, Permission::Read, GrantOrigin::Sync)]
    );
    s.replace_sync_grants(k, &[], t(0)).await.unwrap();
    assert!(s.list_grants(k).await.unwrap().is_empty());
    assert_eq!(
        sorted_grants(&*s, other).await,
        vec![grant(other, u2, Permission::Read, GrantOrigin::Sync)]
    );
    assert!(matches!(
        s.replace_sync_grants(Uuid::new_v4(), &sync_grants(folder, &[u1]), t(0))
            .await,
        Err(StoreError::NotFound)
    ));
}

fn sync_grants(source_id: Uuid, users: &[UserId]) -> Vec<SyncGrant> {
    users
        .iter()
        .map(|&user_id| SyncGrant { source_id, user_id })
        .collect()
}

fn sync_readers(grants: &[AccessGrant]) -> Vec<UserId> {
    let mut users: Vec<UserId> = grants
        .iter()
        .filter(|g| g.origin == GrantOrigin::Sync)
        .map(|g| g.user_id)
        .collect();
    users.sort();
    users
}

fn sorted(mut users: Vec<UserId>) -> Vec<UserId> {
    users.sort();
    users
}

async fn removing_a_source_withdraws_only_the_sync_grants_it_alone_gave(s: Arc<dyn Store>) {
    let owner = user(&*s, "rs-owner@example.com", Role::User).await;
    let only_first = user(&*s, "rs1@example.com", Role::User).await;
    let both = user(&*s, "rs2@example.com", Role::User).await;
    let only_second = user(&*s, "rs3@example.com", Role::User).await;
    let k = kb(&*s, owner, "two folders").await;
    let first = s
        .add_source(Uuid::new_v4(), new_source(k, "f1"), t(0))
        .await
        .unwrap()
        .id;
    let second = s
        .add_source(Uuid::new_v4(), new_source(k, "f2"), t(0))
        .await
        .unwrap()
        .id;
    s.set_manual_grants(k, &[only_first], &[]).await.unwrap();
    let mut grants = sync_grants(first, &[only_first, both]);
    grants.extend(sync_grants(second, &[both, only_second]));
    s.replace_sync_grants(k, &grants, t(1)).await.unwrap();
    assert_eq!(
        sync_readers(&s.list_grants(k).await.unwrap()),
        sorted(vec![only_first, both, only_second])
    );

    s.delete_source(k, first).await.unwrap();
    // Only what the removed folder alone granted goes; the manual grant stays.
    assert_eq!(
        sync_readers(&s.list_grants(k).await.unwrap()),
        sorted(vec![both, only_second])
    );
    assert_eq!(
        s.strongest_grant(k, only_first).await.unwrap(),
        Some(Permission::Read)
    );
    assert_eq!(
        sorted_grants(&*s, k)
            .await
            .iter()
            .filter(|g| g.user_id == only_first)
            .count(),
        1
    );
    s.delete_source(k, second).await.unwrap();
    assert!(sync_readers(&s.list_grants(k).await.unwrap()).is_empty());
}

async fn deleting_the_connection_withdraws_sync_grants_and_keeps_manual_ones(s: Arc<dyn Store>) {
    let owner = user(&*s, "dc-owner@example.com", Role::User).await;
    let reader = user(&*s, "dc-reader@example.com", Role::User).await;
    let manual = user(&*s, "dc-manual@example.com", Role::User).await;
    let k = kb(&*s, owner, "connected").await;
    let other = kb(&*s, owner, "untouched").await;
    let folder = s
        .add_source(Uuid::new_v4(), new_source(k, "f"), t(0))
        .await
        .unwrap()
        .id;
    let other_folder = s
        .add_source(Uuid::new_v4(), new_source(other, "f"), t(0))
        .await
        .unwrap()
        .id;
    s.upsert_connection(new_connection(k, "r"), t(0)).await.unwrap();
    s.set_manual_grants(k, &[manual], &[]).await.unwrap();
    s.replace_sync_grants(k, &sync_grants(folder, &[reader]), t(1))
        .await
        .unwrap();
    s.replace_sync_grants(other, &sync_grants(other_folder, &[reader]), t(1))
        .await
        .unwrap();

    s.delete_connection(k).await.unwrap();
    assert_eq!(
        sorted_grants(&*s, k).await,
        vec![grant(k, manual, Permission::Read, GrantOrigin::Manual)]
    );
    assert!(
        search_ids(&*s, q("anything", Reader::User(reader)))
            .await
            .is_empty()
    );
    assert_eq!(s.strongest_grant(k, reader).await.unwrap(), None);
    // Read again once connected again; other knowledge bases keep theirs.
    assert_eq!(s.sharing_read_at(k).await.unwrap(), None);
    assert_eq!(sync_readers(&s.list_grants(other).await.unwrap()), vec![reader]);
}

async fn sync_grants_are_withdrawn_once_needs_reauth_outlasts_the_grace(s: Arc<dyn Store>) {
    let owner = user(&*s, "ra-owner@example.com", Role::User).await;
    let reader = user(&*s, "ra-reader@example.com", Role::User).await;
    let manual = user(&*s, "ra-manual@example.com", Role::User).await;
    let k = kb(&*s, owner, "lapsing").await;
    let healthy = kb(&*s, owner, "healthy").await;
    let mut folders = Vec::new();
    for kb_id in [k, healthy] {
        let folder = s
            .add_source(Uuid::new_v4(), new_source(kb_id, "f"), t(0))
            .await
            .unwrap()
            .id;
        s.upsert_connection(new_connection(kb_id, "r"), t(0))
            .await
            .unwrap();
        s.replace_sync_grants(kb_id, &sync_grants(folder, &[reader]), t(0))
            .await
            .unwrap();
        folders.push(folder);
    }
    s.set_manual_grants(k, &[manual], &[]).await.unwrap();
    assert!(s.try_acquire_refresh_lease(k, "a", t(100), t(160)).await.unwrap());
    assert!(s.mark_needs_reauth(k, "a", t(100)).await.unwrap());
    // A later mark of the same refusal keeps the time it started.
    assert!(s.try_acquire_refresh_lease(k, "a", t(200), t(260)).await.unwrap());
    assert!(s.mark_needs_reauth(k, "a", t(200)).await.unwrap());

    // Within the grace period (marked after the cut-off): nothing changes.
    assert!(s.withdraw_lapsed_sync_grants(t(99)).await.unwrap().is_empty());
    assert_eq!(sync_readers(&s.list_grants(k).await.unwrap()), vec![reader]);
    // Past it (the cut-off reaches the first mark): sync grants go, manual ones stay.
    assert_eq!(s.withdraw_lapsed_sync_grants(t(100)).await.unwrap(), vec![k]);
    assert_eq!(
        sorted_grants(&*s, k).await,
        vec![grant(k, manual, Permission::Read, GrantOrigin::Manual)]
    );
    assert_eq!(s.sharing_read_at(k).await.unwrap(), None);
    assert_eq!(sync_readers(&s.list_grants(healthy).await.unwrap()), vec![reader]);
    assert!(s.withdraw_lapsed_sync_grants(t(300)).await.unwrap().is_empty());

    // Connected again: the grace starts over at the next refusal.
    s.upsert_connection(new_connection(k, "r2"), t(400))
        .await
        .unwrap();
    s.replace_sync_grants(k, &sync_grants(folders[0], &[reader]), t(401))
        .await
        .unwrap();
    assert!(s.withdraw_lapsed_sync_grants(t(1000)).await.unwrap().is_empty());
    assert!(s.try_acquire_refresh_lease(k, "a", t(500), t(560)).await.unwrap());
    assert!(s.mark_needs_reauth(k, "a", t(500)).await.unwrap());
    assert!(s.withdraw_lapsed_sync_grants(t(499)).await.unwrap().is_empty());
    assert_eq!(s.withdraw_lapsed_sync_grants(t(500)).await.unwrap(), vec![k]);
}

async fn a_revoked_source_is_hidden_from_search_and_grants_nothing_until_cleared(s: Arc<dyn Store>) {
    let owner = user(&*s, "rv-owner@example.com", Role::User).await;
    let reader = user(&*s, "rv-reader@example.com", Role::User).await;
    let k = kb(&*s, owner, "revocable").await;
    let lost = s
        .add_source(Uuid::new_v4(), new_source(k, "lost"), t(0))
        .await
        .unwrap();
    let kept = s
        .add_source(Uuid::new_v4(), new_source(k, "kept"), t(0))
        .await
        .unwrap();
    let mut docs = Vec::new();
    for (source, path) in [(&lost, "/lost/plan.txt"), (&kept, "/kept/plan.txt")] {
        let (doc, _) = s
            .upsert_source_document(
                Uuid::new_v4(),
                source.id,
                new_doc(k, path, &hash(rand_u32())),
                t(0),
            )
            .await
            .unwrap();
        s.complete_document(doc.id, &["the rollout plan".into()], t(1))
            .await
            .unwrap();
        docs.push(doc.id);
    }
    let local = indexed(&*s, k, "/local/plan.txt", &["the rollout plan"]).await;
    let mut grants = sync_grants(lost.id, &[reader]);
    grants.extend(sync_grants(kept.id, &[owner]));
    s.replace_sync_grants(k, &grants, t(1)).await.unwrap();
    let all = sorted(vec![docs[0], docs[1], local]);
    assert_eq!(sorted(search_ids(&*s, q("rollout", Reader::Admin)).await), all);

    s.mark_source_revoked(lost.id, t(10)).await.unwrap();
    s.mark_source_revoked(lost.id, t(20)).await.unwrap();
    // Hidden from every reader, but kept; the first mark's time stays.
    assert_eq!(
        sorted(search_ids(&*s, q("rollout", Reader::Admin)).await),
        sorted(vec![docs[1], local])
    );
    assert_eq!(
        sorted(search_ids(&*s, q("rollout", Reader::User(owner))).await),
        sorted(vec![docs[1], local])
    );
    assert_eq!(s.source_documents(lost.id).await.unwrap().len(), 1);
    let sources = s.list_sources(k).await.unwrap();
    let revoked: Vec<_> = sources.iter().map(|x| (x.id, x.revoked_at)).collect();
    assert!(revoked.contains(&(lost.id, Some(t(10)))), "{revoked:?}");
    assert!(revoked.contains(&(kept.id, None)), "{revoked:?}");
    // Its sharing grants nothing while it is marked, even when handed in again.
    assert_eq!(s.strongest_grant(k, reader).await.unwrap(), None);
    s.replace_sync_grants(k, &grants, t(30)).await.unwrap();
    assert_eq!(s.strongest_grant(k, reader).await.unwrap(), None);

    s.clear_source_revoked(lost.id).await.unwrap();
    assert_eq!(sorted(search_ids(&*s, q("rollout", Reader::Admin)).await), all);
    assert_eq!(s.sharing_read_at(k).await.unwrap(), None);
    s.replace_sync_grants(k, &grants, t(40)).await.unwrap();
    assert_eq!(
        s.strongest_grant(k, reader).await.unwrap(),
        Some(Permission::Read)
    );
    assert!(matches!(
        s.mark_source_revoked(Uuid::new_v4(), t(50)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.clear_source_revoked(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
}

async fn users_by_emails_ignores_case_and_leaves_out_unknown_emails(s: Arc<dyn Store>) {
    let alice = user(&*s, "Alice@Example.com", Role::User).await;
    let bob = user(&*s, "bob@example.com", Role::Admin).await;
    user(&*s, "carol@example.com", Role::User).await;
    assert!(s.users_by_emails(&[]).await.unwrap().is_empty());
    let found = s
        .users_by_emails(&[
            "BOB@example.COM".into(),
            "nobody@example.com".into(),
            "alice@example.com".into(),
            " Alice@EXAMPLE.com ".into(),
        ])
        .await
        .unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![alice, bob]);
    assert_eq!(found[0].email, "Alice@Example.com", "the email as it was given");
    assert_eq!(found[1].role, Role::Admin);
    assert!(
        s.users_by_emails(&["nobody@example.com".into()])
            .await
            .unwrap()
            .is_empty()
    );
    // Many emails at once (more than one batch).
    let many: Vec<String> = (0..1200)
        .map(|i| format!("x{i}@example.com"))
        .chain(["CAROL@example.com".to_owned()])
        .collect();
    assert_eq!(s.users_by_emails(&many).await.unwrap().len(), 1);
}

async fn all_user_ids_lists_every_user_in_creation_order(s: Arc<dyn Store>) {
    assert!(s.all_user_ids().await.unwrap().is_empty());
    let mut ids = Vec::new();
    for (i, at) in [5, 1, 3].into_iter().enumerate() {
        let id = Uuid::new_v4();
        s.create_user(
            id,
            NewUser {
                email: format!("all{i}@example.com"),
                password_hash: "$argon2id$x".into(),
                role: Role::User,
            },
            t(at),
        )
        .await
        .unwrap();
        ids.push((at, id));
    }
    ids.sort();
    assert_eq!(
        s.all_user_ids().await.unwrap(),
        ids.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    );
}

// --- backend-specific ------------------------------------------------------------------------

#[tokio::test]
async fn connect_rejects_unknown_url_scheme_as_invalid_url() {
    let err = kbsync_store::connect("mysql://localhost/x").await.err().unwrap();
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_connect_creates_missing_file_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/kbsync.db");
    let store = kbsync_store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "asserts the failure arrives promptly in real time"
)]
async fn postgres_connect_to_unreachable_server_is_unavailable_promptly() {
    let started = std::time::Instant::now();
    // Port 1 on loopback: nothing listens there.
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/none")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn postgres_connect_in_schema_rejects_unsafe_schema_names() {
    for bad in ["", "Upper", "semi;colon", "quote\"", "1abc", &"a".repeat(64)] {
        let err = PostgresStore::connect_in_schema("postgres://postgres@127.0.0.1:1/none", bad)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::InvalidUrl(_)), "{bad:?}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrations_from_several_instances_apply_once() {
    let Some(schema) = kbsync_kit::PgSchema::from_env("kbsync_test") else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(
            PostgresStore::connect_in_schema(schema.url(), schema.name())
                .await
                .unwrap(),
        );
    }
    let results = futures::future::join_all(stores.iter().map(|s| s.migrate())).await;
    for r in results {
        r.unwrap();
    }
    let s: &dyn Store = &stores[0];
    user(s, "after@example.com", Role::User).await;
    assert_eq!(stores[3].count_users().await.unwrap(), 1);
}
