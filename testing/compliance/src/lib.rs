//! The datasource compliance suite: what every datasource must do, written once and run against
//! each datasource and its emulator.
//!
//! A datasource and its emulator form a [`Subject`]: it starts the emulator, points the
//! datasource at it, hands out tokens, and performs source operations (add, modify, rename, move,
//! delete files, share them, revoke the user's grant, expire the change cursor, throttle, count
//! downloads, list what the source holds). Each [`behaviours`] function takes a subject and a
//! store, drives kbsync's real sync engine (and, where the behaviour is about OAuth, kbsync's real
//! connection manager through the emulator's authorize and token endpoints), and asserts what a
//! user of kbsync expects.
//!
//! [`suite!`] declares every behaviour as a test for one subject on SQLite and PostgreSQL:
//! `<subject module>::sqlite::<behaviour>` and `<subject module>::postgres::<behaviour>`.
//!
//! The subjects: [`OneDriveSubject`] (Microsoft Graph emulator) and [`GDriveSubject`] (Google
//! Drive emulator). A new datasource passes the suite when it implements [`Subject`] for its
//! emulator and adds one `suite!` line to `tests/compliance/main.rs`.
//!
//! This is test support: a failure is a failed test, so it may panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod behaviours;
mod gdrive;
mod harness;
mod oauth;
mod onedrive;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use kbsync_core::ManualClock;
use kbsync_core::datasource::{ContentHash, Datasource, DatasourceKind};
use kbsync_kit::tokens::TestTokens;
use kbsync_kit::{Db, TestDb};
use kbsync_oauth::OAuthClientConfig;
use kbsync_store::Store;

pub use gdrive::GDriveSubject;
pub use harness::Harness;
pub use onedrive::OneDriveSubject;

/// What a subject is started with.
pub struct Setup {
    /// The clock of the engine, the connection manager and the datasource; it starts where the
    /// emulator's frozen clock stands ([`kbsync_kit::START`]).
    pub clock: Arc<ManualClock>,
    /// Items per page of every listing and change feed: small, so that every behaviour pages.
    pub page_size: u32,
}

/// A datasource and its emulator, as the compliance behaviours drive them.
///
/// Paths name items below the root of the default user's own drive, `/`-separated with a
/// leading `/` (`/Src/Sub/a.txt`), as kbsync shows a source's documents.
#[async_trait]
pub trait Subject: Send + Sync + Sized + 'static {
    /// Starts the emulator (empty drive, the default user, kbsync's OAuth client registered with
    /// automatic consent) and the datasource pointed at it.
    async fn start(setup: Setup) -> Self;

    fn kind(&self) -> DatasourceKind;
    /// The clock it was started with.
    fn clock(&self) -> Arc<ManualClock>;
    fn datasource(&self) -> &dyn Datasource;
    /// Tokens of the default user minted by the emulator (each refresh mints another).
    fn tokens(&self) -> &TestTokens;
    /// kbsync's OAuth client registration at the emulator.
    fn oauth_client(&self) -> OAuthClientConfig;
    /// Moves the emulator's clock on (access tokens expire by it).
    fn advance_clock(&self, by: chrono::Duration);
    /// Requests to the token endpoint so far.
    fn token_requests(&self) -> usize;

    /// The id of the default user's own drive, as the datasource's picker and sources name it.
    fn drive_id(&self) -> String;
    /// Creates a file with `text` at `path` (missing folders too); returns its id.
    fn put(&self, path: &str, text: &str) -> String;
    /// Creates a folder at `path` (missing parents too); returns its id.
    fn folder(&self, path: &str) -> String;
    /// The id of the item at `path`.
    fn id(&self, path: &str) -> String;
    /// Replaces a file's content.
    fn modify(&self, id: &str, text: &str);
    fn rename(&self, id: &str, name: &str);
    /// Moves an item into the folder at `folder_path`.
    fn move_to(&self, id: &str, folder_path: &str);
    /// Deletes an item as a user of the source usually does (OneDrive: delete, to the recycle
    /// bin; Drive: move to the trash).
    fn delete(&self, id: &str);
    /// Deletes an item for good (Drive: `files.delete`; OneDrive has only one kind of delete).
    fn purge(&self, id: &str);
    /// Every file below the folder at `path` (its subtree), by path, with its content hash as the
    /// source reports it.
    fn files_under(&self, path: &str) -> BTreeMap<String, ContentHash>;
    /// The hash the source reports for a file of these bytes.
    fn hash(&self, bytes: &[u8]) -> ContentHash;

    /// Shares an item with a person of the organisation (made at the source when new).
    fn share_with_user(&self, id: &str, name: &str, email: &str);
    /// Shares an item with a group of the organisation whose members are `members` (name,
    /// email; made at the source when new).
    fn share_with_group(&self, id: &str, group: &str, group_email: &str, members: &[(&str, &str)]);
    /// Whether kbsync can expand this source's groups into their members (Google groups need an
    /// API and a scope kbsync does not ask for).
    fn expands_groups(&self) -> bool;

    /// Revokes the default user's refresh tokens (the user removed kbsync's access).
    fn revoke_refresh_tokens(&self);
    /// Makes every change cursor issued so far invalid (Graph: 410 resync; Drive: 400 on
    /// `pageToken`).
    fn expire_cursor(&self);
    /// Throttles the next `times` downloads (Graph: 429 with `Retry-After`; Drive: 403
    /// `userRateLimitExceeded` and 429 `rateLimitExceeded`).
    fn throttle_downloads(&self, times: u64);
    /// Throttling answers given so far.
    fn throttled_answers(&self) -> usize;
    /// Holds the download of one file back for `millis` of real time.
    fn delay_download(&self, id: &str, millis: u64);
    fn clear_faults(&self);
    /// Content downloads (and exports) so far, from the emulator's traffic log.
    fn content_downloads(&self) -> usize;
    /// Folder listings (browse pages) so far.
    fn listing_requests(&self) -> usize;
    fn clear_traffic(&self);
}

/// Runs one behaviour for subject `S` on a fresh database of kind `db` (skipped with a message
/// when `db` is PostgreSQL and `KBSYNC_TEST_DATABASE_URL` is unset).
pub async fn run<S, F, Fut>(db: Db, behaviour: F)
where
    S: Subject,
    F: FnOnce(S, Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(test_db) = TestDb::new(db, "kbsync_compliance") else {
        return;
    };
    let store = test_db.open().await;
    let subject = S::start(Setup {
        clock: Arc::new(ManualClock::new(kbsync_kit::start_time())),
        page_size: 2,
    })
    .await;
    behaviour(subject, store).await;
    drop(test_db);
}

/// Declares every compliance behaviour as a test for `$subject` (a [`Subject`] type), once per
/// database: `sqlite::NAME` and `postgres::NAME`. Use it inside a module named after the
/// datasource.
#[macro_export]
macro_rules! suite {
    ($subject:ty) => {
        $crate::suite!(@db $subject, sqlite, Sqlite);
        $crate::suite!(@db $subject, postgres, Postgres);
    };
    (@db $subject:ty, $module:ident, $db:ident) => {
        mod $module {
            $crate::suite!(@tests $subject, $db;
                connect_through_the_oauth_flow_stores_the_connection_and_syncs,
                an_expired_access_token_is_refreshed_once_for_concurrent_callers,
                a_revoked_grant_needs_reauthorisation_and_keeps_every_document,
                browse_lists_the_drive_and_every_page_of_a_folder,
                initial_sync_equals_the_source,
                incremental_changes_download_only_new_and_modified_files,
                rename_and_move_apply_without_download,
                deletions_and_moved_out_subtrees_remove_their_documents,
                an_expired_cursor_resyncs_fully_and_converges_without_duplicates,
                throttling_is_waited_out_and_nothing_fails,
                documents_carry_the_sources_grants,
                a_run_dropped_midway_is_completed_by_the_next_without_duplicates,
                a_file_over_the_size_limit_is_skipped_and_reported,
            );
        }
    };
    (@tests $subject:ty, $db:ident; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::run::<$subject, _, _>(
                    ::kbsync_kit::Db::$db,
                    $crate::behaviours::$name::<$subject>,
                )
                .await
            }
        )*
    };
}
