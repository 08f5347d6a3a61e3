//! What every datasource must do, each behaviour a function of a [`Subject`] and a store. The
//! names say what they prove; [`crate::suite!`] makes each one a test per database.

use std::sync::Arc;
use std::time::Duration;

use kbsync_core::SyncStatus;
use kbsync_core::datasource::{BrowseLocation, EntryKind, TokenSource};
use kbsync_store::{Reader, Store};
use kbsync_sync::SyncLimits;
use kbsync_sync::events::SyncEvent;
use tokio_util::sync::CancellationToken;

use crate::harness::limits;
use crate::{Harness, Subject, oauth};

/// Long enough for any access token the emulators issue (an hour) to be stale.
fn past_token_expiry() -> chrono::Duration {
    chrono::Duration::hours(2)
}

/// Moves kbsync's clock and the emulator's on together.
fn advance<S: Subject>(h: &Harness<S>, by: chrono::Duration) {
    h.clock.advance(by);
    h.subject.advance_clock(by);
}

/// Connecting goes through the datasource's OAuth flow: the authorize URL carries PKCE (S256)
/// and the datasource's own parameters, the emulator consents, the code is redeemed once, the
/// connection is stored, and its tokens sync the source.
pub async fn connect_through_the_oauth_flow_stores_the_connection_and_syncs<S: Subject>(
    subject: S,
    store: Arc<dyn Store>,
) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[("/Src/a.txt", "alpha apple"), ("/Src/Sub/b.txt", "bravo banana")]);
    h.add_folder_source("/Src").await;
    let manager = oauth::manager(&h, 1);
    let before = h.subject.token_requests();

    let (query, connected) = oauth::connect(&h, &manager).await;

    assert_eq!(query.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(
        query.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert!(query.contains_key("code_challenge"), "{query:?}");
    assert!(query.contains_key("state"), "{query:?}");
    for (name, value) in &h.subject.datasource().oauth().extra_authorize_params {
        assert_eq!(
            query.get(name),
            Some(value),
            "the authorize URL carries the datasource's {name}: {query:?}"
        );
    }
    assert_eq!(connected.map_err(|e| e.to_string()), Ok(h.kb));
    assert_eq!(
        h.subject.token_requests() - before,
        1,
        "the code is redeemed once"
    );
    let status = manager.status(h.kb).await.unwrap().unwrap();
    assert_eq!(status.datasource, h.subject.kind());
    assert!(status.has_stored_token && !status.needs_reauth, "{status:?}");

    let tokens = manager.tokens(h.kb);
    let summary = h
        .run_on(&h.engine, tokens.as_ref(), CancellationToken::new())
        .await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    h.assert_mirrors("/Src").await;
    assert_eq!(
        h.subject.token_requests() - before,
        1,
        "the access token of the exchange is used as it is"
    );
}

/// An access token past its expiry is refreshed once, however many callers want one at the same
/// time and on however many instances; the refreshed connection syncs, and refreshes again later
/// (a refresh that returns no new refresh token keeps the stored one).
pub async fn an_expired_access_token_is_refreshed_once_for_concurrent_callers<S: Subject>(
    subject: S,
    store: Arc<dyn Store>,
) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[("/Src/a.txt", "alpha apple")]);
    h.add_folder_source("/Src").await;
    let manager = oauth::manager(&h, 1);
    let other_instance = oauth::manager(&h, 2);
    let (_, connected) = oauth::connect(&h, &manager).await;
    assert_eq!(connected.map_err(|e| e.to_string()), Ok(h.kb));
    let tokens = manager.tokens(h.kb);
    let first = tokens.access_token().await.unwrap();

    advance(&h, past_token_expiry());
    let before = h.subject.token_requests();
    let other_tokens = other_instance.tokens(h.kb);
    let mut callers: Vec<&dyn TokenSource> = vec![tokens.as_ref(); 6];
    callers.extend([other_tokens.as_ref(); 2]);
    let got = futures::future::join_all(callers.iter().map(|t| t.access_token())).await;

    let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        h.subject.token_requests() - before,
        1,
        "one refresh for eight callers on two instances"
    );
    assert!(
        got.iter().all(|t| *t == got[0]),
        "every caller got the one refreshed token"
    );
    assert_ne!(got[0], first);
    let summary = h
        .run_on(&h.engine, tokens.as_ref(), CancellationToken::new())
        .await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    h.assert_mirrors("/Src").await;
    assert_eq!(
        h.subject.token_requests() - before,
        1,
        "the run refreshed nothing more"
    );

    advance(&h, past_token_expiry());
    let again = tokens.access_token().await.unwrap();
    assert_ne!(again, got[0]);
    assert_eq!(
        h.subject.token_requests() - before,
        2,
        "the stored refresh token still works"
    );
    let status = manager.status(h.kb).await.unwrap().unwrap();
    assert!(!status.needs_reauth, "{status:?}");
}

/// A user who revoked kbsync's access at the source: the next run stops with `needs_reauth`,
/// advances no cursor, and every document stays.
pub async fn a_revoked_grant_needs_reauthorisation_and_keeps_every_document<S: Subject>(
    subject: S,
    store: Arc<dyn Store>,
) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[("/Src/a.txt", "alpha apple"), ("/Src/b.txt", "bravo banana")]);
    h.add_folder_source("/Src").await;
    let manager = oauth::manager(&h, 1);
    let (_, connected) = oauth::connect(&h, &manager).await;
    assert_eq!(connected.map_err(|e| e.to_string()), Ok(h.kb));
    let tokens = manager.tokens(h.kb);
    let summary = h
        .run_on(&h.engine, tokens.as_ref(), CancellationToken::new())
        .await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    let held = h.contents().await;
    let cursors = h.cursors().await;
    h.subject.put("/Src/c.txt", "charlie cherry");

    h.subject.revoke_refresh_tokens();
    advance(&h, past_token_expiry());
    let summary = h
        .run_on(&h.engine, tokens.as_ref(), CancellationToken::new())
        .await;

    assert_eq!(summary.status, SyncStatus::NeedsReauth, "{summary:?}");
    assert_eq!(h.kb_status().await, SyncStatus::NeedsReauth);
    let status = manager.status(h.kb).await.unwrap().unwrap();
    assert!(status.needs_reauth, "{status:?}");
    assert_eq!(h.contents().await, held, "no document lost");
    assert_eq!(h.finds("banana").await, ["b.txt"]);
    assert_eq!(h.cursors().await, cursors, "no cursor moved");
}

/// The picker: the top level offers the user's drive, the drive's root lists its folders, and a
/// folder lists every child over several pages, folders first.
pub async fn browse_lists_the_drive_and_every_page_of_a_folder<S: Subject>(
    subject: S,
    store: Arc<dyn Store>,
) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[
        ("/Pick/a.txt", "alpha"),
        ("/Pick/b.txt", "bravo"),
        ("/Pick/c.txt", "charlie"),
        ("/Pick/d.txt", "delta"),
        ("/Pick/Inner/e.txt", "echo"),
        ("/Other/o.txt", "oscar"),
    ]);
    let ds = h.subject.datasource();
    let tokens = h.subject.tokens();
    let drive = h.subject.drive_id();

    let top = ds.browse(tokens, &BrowseLocation::default()).await.unwrap();
    assert!(
        top.iter()
            .any(|e| e.kind == EntryKind::Drive && e.drive_id.as_deref() == Some(drive.as_str())),
        "the top level offers the user's drive {drive}: {top:#?}"
    );

    let root = ds
        .browse(
            tokens,
            &BrowseLocation {
                drive_id: Some(drive.clone()),
                item_id: None,
            },
        )
        .await
        .unwrap();
    let names: Vec<(&str, EntryKind)> = root.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        [("Other", EntryKind::Folder), ("Pick", EntryKind::Folder)],
        "{root:#?}"
    );
    let pick = root.iter().find(|e| e.name == "Pick").unwrap();
    assert_eq!(pick.id, h.subject.id("/Pick"));

    h.subject.clear_traffic();
    let inside = ds
        .browse(
            tokens,
            &BrowseLocation {
                drive_id: pick.drive_id.clone().or(Some(drive.clone())),
                item_id: Some(pick.id.clone()),
            },
        )
        .await
        .unwrap();
    let names: Vec<(&str, EntryKind, Option<i64>)> = inside
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.kind,
                e.size.filter(|_| e.kind == EntryKind::File),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("Inner", EntryKind::Folder, None),
            ("a.txt", EntryKind::File, Some(5)),
            ("b.txt", EntryKind::File, Some(5)),
            ("c.txt", EntryKind::File, Some(7)),
            ("d.txt", EntryKind::File, Some(5)),
        ],
        "{inside:#?}"
    );
    assert!(
        h.subject.listing_requests() >= 3,
        "five children at two a page take three pages, {} were read",
        h.subject.listing_requests()
    );
}

/// The first run brings in exactly the files below the source folder (nested ones included, at
/// their paths, with the source's content), and nothing outside it.
pub async fn initial_sync_equals_the_source<S: Subject>(subject: S, store: Arc<dyn Store>) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[
        ("/Projects/a.txt", "alpha apple"),
        ("/Projects/Specs/b.md", "bravo banana"),
        ("/Projects/Specs/Deep/c.txt", "charlie cherry"),
        ("/Projects/Notes/d.txt", "delta date"),
        ("/Projects/Notes/e.txt", "echo elderberry"),
        ("/Other/outside.txt", "outside fig"),
    ]);
    h.subject.folder("/Projects/Empty");
    h.add_folder_source("/Projects").await;

    let summary = h.sync_completed().await;

    assert_eq!((summary.processed, summary.skipped), (5, 0), "{summary:?}");
    assert_eq!(summary.total_found, 5, "{summary:?}");
    h.assert_mirrors("/Projects").await;
    assert_eq!(h.subject.content_downloads(), 5, "each file downloaded once");
    assert_eq!(h.finds("cherry").await, ["c.txt"]);
    assert!(h.finds("fig").await.is_empty(), "nothing from outside the source");
}

/// Later runs bring in new and modified files only: nothing else is downloaded again, and what
/// a file said before it changed is no longer found.
pub async fn incremental_changes_download_only_new_and_modified_files<S: Subject>(
    subject: S,
    store: Arc<dyn Store>,
) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[
        ("/Src/keep.txt", "keep kiwi"),
        ("/Src/Sub/deep.txt", "deep damson"),
    ]);
    let modified = h.subject.put("/Src/mod.txt", "old olive");
    h.add_folder_source("/Src").await;
    h.sync_completed().await;

    h.subject.put("/Src/new.txt", "new nectarine");
    h.subject.put("/Src/Sub/newer.txt", "newer nutmeg");
    h.subject.modify(&modified, "fresh orange");
    h.subject.clear_traffic();
    let summary = h.sync_completed().await;

    assert_eq!((summary.processed, summary.deleted), (3, 0), "{summary:?}");
    assert_eq!(
        h.subject.content_downloads(),
        3,
        "only the new and the modified files are downloaded"
    );
    h.assert_mirrors("/Src").await;
    assert_eq!(h.finds("orange").await, ["mod.txt"]);
    assert!(h.finds("olive").await.is_empty());

    h.subject.clear_traffic();
    let quiet = h.sync_completed().await;
    assert_eq!((quiet.processed, quiet.deleted), (0, 0), "{quiet:?}");
    assert_eq!(h.subject.content_downloads(), 0);
}

/// A renamed file, a file moved to another folder of the source and a renamed folder change
/// their documents' names and paths without downloading anything.
pub async fn rename_and_move_apply_without_download<S: Subject>(subject: S, store: Arc<dyn Store>) {
    let h = Harness::new(subject, store).await;
    let renamed = h.subject.put("/Src/ren.txt", "rename raspberry");
    let moved = h.subject.put("/Src/Sub/mv.txt", "move mango");
    h.put_tree(&[
        ("/Src/Sub/under.txt", "under ugli"),
        ("/Src/Other/keep.txt", "keep kiwi"),
    ]);
    h.add_folder_source("/Src").await;
    h.sync_completed().await;

    h.subject.rename(&renamed, "renamed.txt");
    h.subject.move_to(&moved, "/Src/Other");
    let sub = h.subject.id("/Src/Sub");
    h.subject.rename(&sub, "Sub2");
    h.subject.clear_traffic();
    let summary = h.sync_completed().await;

    assert_eq!((summary.processed, summary.deleted), (0, 0), "{summary:?}");
    assert_eq!(h.subject.content_downloads(), 0, "nothing downloaded again");
    h.assert_mirrors("/Src").await;
    let paths: Vec<String> = h.contents().await.into_keys().collect();
    assert_eq!(
        paths,
        [
            "/Src/Other/keep.txt",
            "/Src/Other/mv.txt",
            "/Src/Sub2/under.txt",
            "/Src/renamed.txt"
        ]
    );
    assert_eq!(h.finds("raspberry").await, ["renamed.txt"]);
}

/// Deleted files (the usual way and for good) and a folder moved out of the source lose their
/// documents, the folder's whole subtree included; what stays is not downloaded again.
pub async fn deletions_and_moved_out_subtrees_remove_their_documents<S: Subject>(
    subject: S,
    store: Arc<dyn Store>,
) {
    let h = Harness::new(subject, store).await;
    let deleted = h.subject.put("/Src/del.txt", "delete durian");
    let purged = h.subject.put("/Src/purge.txt", "purge persimmon");
    h.put_tree(&[
        ("/Src/stay.txt", "stay strawberry"),
        ("/Src/F/one.txt", "one quince"),
        ("/Src/F/Deeper/two.txt", "two tangerine"),
    ]);
    h.subject.folder("/Elsewhere");
    h.add_folder_source("/Src").await;
    h.sync_completed().await;
    assert_eq!(h.documents().await.len(), 5);

    h.subject.delete(&deleted);
    h.subject.purge(&purged);
    let f = h.subject.id("/Src/F");
    h.subject.move_to(&f, "/Elsewhere");
    h.subject.clear_traffic();
    let summary = h.sync_completed().await;

    assert_eq!((summary.deleted, summary.processed), (4, 0), "{summary:?}");
    assert_eq!(h.subject.content_downloads(), 0);
    h.assert_mirrors("/Src").await;
    for gone in ["durian", "persimmon", "quince", "tangerine"] {
        assert!(h.finds(gone).await.is_empty(), "{gone} is still found");
    }
    assert_eq!(h.finds("strawberry").await, ["stay.txt"]);
}

/// A change cursor the source no longer accepts: the run enumerates the source again, removes
/// what it no longer holds, downloads only what it does not have, and ends with one document
/// per file; the run after it has nothing to do.
pub async fn an_expired_cursor_resyncs_fully_and_converges_without_duplicates<S: Subject>(
    subject: S,
    store: Arc<dyn Store>,
) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[("/Src/a.txt", "alpha apple"), ("/Src/Sub/s.txt", "sierra sloe")]);
    let b = h.subject.put("/Src/b.txt", "bravo banana");
    h.add_folder_source("/Src").await;
    h.sync_completed().await;
    let first_cursors = h.cursors().await;

    h.subject.purge(&b);
    h.subject.put("/Src/c.txt", "charlie cherry");
    h.subject.expire_cursor();
    h.subject.clear_traffic();
    let summary = h.sync_completed().await;

    assert_eq!((summary.processed, summary.deleted), (1, 1), "{summary:?}");
    assert_eq!(
        h.subject.content_downloads(),
        1,
        "only the new file is downloaded"
    );
    h.assert_mirrors("/Src").await;
    assert!(h.finds("banana").await.is_empty());
    assert_ne!(h.cursors().await, first_cursors, "a new cursor was saved");

    h.subject.clear_traffic();
    let quiet = h.sync_completed().await;
    assert_eq!((quiet.processed, quiet.deleted), (0, 0), "{quiet:?}");
    assert_eq!(h.subject.content_downloads(), 0);
    h.assert_mirrors("/Src").await;
}

/// Throttled downloads are retried after the wait the source asks for (or a backoff): the run
/// completes and no file fails.
pub async fn throttling_is_waited_out_and_nothing_fails<S: Subject>(subject: S, store: Arc<dyn Store>) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[
        ("/Src/a.txt", "alpha apple"),
        ("/Src/b.txt", "bravo banana"),
        ("/Src/c.txt", "charlie cherry"),
    ]);
    h.add_folder_source("/Src").await;
    h.subject.throttle_downloads(3);

    let summary = h.sync_completed().await;

    assert_eq!((summary.processed, summary.failed), (3, 0), "{summary:?}");
    assert!(summary.failures.is_empty(), "{summary:?}");
    assert_eq!(h.subject.throttled_answers(), 3);
    h.assert_mirrors("/Src").await;
}

/// Documents carry the grants of their items at the source: a person a folder is shared with
/// finds its documents and no others, a stranger finds nothing, the owner of the knowledge base
/// everything; a group grant names the group (and reaches its members where the source lets
/// kbsync expand groups).
pub async fn documents_carry_the_sources_grants<S: Subject>(subject: S, store: Arc<dyn Store>) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[
        ("/Src/Shared/s.txt", "harbour notes for alice"),
        ("/Src/Shared/Deep/s2.txt", "harbour details for alice"),
        ("/Src/Team/t.txt", "harbour notes for the team"),
        ("/Src/private.txt", "harbour notes for nobody"),
    ]);
    let shared = h.subject.id("/Src/Shared");
    let team = h.subject.id("/Src/Team");
    h.subject.share_with_user(&shared, "Alice", "alice@example.com");
    h.subject.share_with_group(
        &team,
        "Planning",
        "planning@example.com",
        &[("Bob", "bob@example.com")],
    );
    h.add_folder_source("/Src").await;
    let alice = h.kbsync_user("alice@example.com").await;
    let bob = h.kbsync_user("Bob@Example.com").await;
    let stranger = h.kbsync_user("stranger@example.com").await;

    h.sync_completed().await;

    assert_eq!(
        h.finds_as(Reader::User(alice), "harbour").await,
        ["s.txt", "s2.txt"]
    );
    assert!(h.finds_as(Reader::User(stranger), "harbour").await.is_empty());
    assert_eq!(
        h.finds_as(Reader::User(h.owner), "harbour").await,
        ["private.txt", "s.txt", "s2.txt", "t.txt"]
    );
    let groups = h.store.named_groups(h.kb).await.unwrap();
    assert_eq!(groups.len(), 1, "the team's group is named: {groups:?}");
    let bob_finds = h.finds_as(Reader::User(bob), "harbour").await;
    if h.subject.expands_groups() {
        assert_eq!(bob_finds, ["t.txt"], "through the group");
    } else {
        assert!(bob_finds.is_empty(), "a group kbsync cannot expand opens nothing");
    }
}

/// A run dropped midway (the process died, downloads in flight): the next run brings the
/// knowledge base in line with the source, one document per file, and the one after it has
/// nothing left to do.
pub async fn a_run_dropped_midway_is_completed_by_the_next_without_duplicates<S: Subject>(
    subject: S,
    store: Arc<dyn Store>,
) {
    let h = Harness::new(subject, store).await;
    let tree = [
        ("/Src/a.txt", "alpha apple"),
        ("/Src/b.txt", "bravo banana"),
        ("/Src/c.txt", "charlie cherry"),
        ("/Src/Sub/d.txt", "delta date"),
        ("/Src/Sub/e.txt", "echo elderberry"),
    ];
    h.put_tree(&tree);
    let slow = h.subject.put("/Src/Sub/slow.txt", "slow sloe");
    h.add_folder_source("/Src").await;
    h.subject.delay_download(&slow, 20_000);
    let mut events = h.events.subscribe(h.kb);

    let run = h.sync();
    let midway = async {
        loop {
            match events.recv().await {
                Ok(SyncEvent::Progress { current, .. }) if current >= 2 => break,
                Ok(_) => {}
                Err(e) => panic!("event channel: {e}"),
            }
        }
    };
    let dropped = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            summary = run => panic!("the run ended before it was dropped: {summary:?}"),
            () = midway => {}
        }
    })
    .await;
    assert!(dropped.is_ok(), "no progress within 30 s");
    assert!(
        h.documents().await.len() < tree.len() + 1,
        "the dropped run did not finish"
    );

    h.subject.clear_faults();
    let summary = h.sync_completed().await;
    assert!(summary.processed >= 1, "{summary:?}");
    h.assert_mirrors("/Src").await;

    h.subject.clear_traffic();
    let quiet = h.sync_completed().await;
    assert_eq!((quiet.processed, quiet.deleted), (0, 0), "{quiet:?}");
    assert_eq!(h.subject.content_downloads(), 0);
    h.assert_mirrors("/Src").await;
}

/// A file over the size limit is skipped, not downloaded and not failed; the run counts it as
/// skipped (in its summary and its history) and later runs do not count it again until the limit
/// allows it.
pub async fn a_file_over_the_size_limit_is_skipped_and_reported<S: Subject>(
    subject: S,
    store: Arc<dyn Store>,
) {
    let h = Harness::new(subject, store).await;
    h.put_tree(&[("/Src/small.txt", "small sorrel")]);
    let big = format!("{} bulky", "big ".repeat(500));
    h.subject.put("/Src/big.txt", &big);
    h.add_folder_source("/Src").await;
    let strict = h.engine_with(SyncLimits {
        max_file_size: 1000,
        ..limits()
    });

    let first = h
        .run_on(&strict, h.subject.tokens(), CancellationToken::new())
        .await;

    assert_eq!(first.status, SyncStatus::Completed, "{first:?}");
    assert_eq!(
        (first.processed, first.skipped, first.failed),
        (1, 1, 0),
        "{first:?}"
    );
    assert!(first.failures.is_empty(), "a skipped file is not a failure");
    assert_eq!(h.subject.content_downloads(), 1, "the big file is not downloaded");
    let runs = h.store.list_sync_runs(h.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.skipped, 1);
    assert!(runs[0].outcome.failures.is_empty());
    assert!(h.finds("bulky").await.is_empty());
    assert_eq!(h.finds("sorrel").await, ["small.txt"]);

    h.subject.clear_traffic();
    let second = h
        .run_on(&strict, h.subject.tokens(), CancellationToken::new())
        .await;
    assert_eq!(
        (second.processed, second.skipped, second.failed),
        (0, 0, 0),
        "{second:?}"
    );
    assert_eq!(h.subject.content_downloads(), 0);

    let raised = h.sync_completed().await;
    assert_eq!((raised.processed, raised.skipped), (1, 0), "{raised:?}");
    h.assert_mirrors("/Src").await;
    assert_eq!(h.finds("bulky").await, ["big.txt"]);
}
