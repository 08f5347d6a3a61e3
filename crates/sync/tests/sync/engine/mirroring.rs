//! A KB mirrors its sources: new, changed, renamed, moved and deleted files, folder and file
//! sources, and a delta token that expired.

use super::*;

kbsync_kit::on_both_databases!(
    initial_sync_of_a_nested_folder_mirrors_the_drive,
    incremental_changes_are_applied_and_a_rename_does_not_download_again,
    a_folder_moved_out_of_the_subtree_removes_its_files,
    an_expired_delta_token_resyncs_fully_and_removes_what_disappeared,
    a_run_without_changes_makes_one_delta_request_per_folder,
    a_file_source_is_fetched_only_when_its_hash_changes,
    a_file_in_two_sources_is_one_document_fetched_once,
    a_run_with_a_few_changes_reads_only_the_saved_items_it_touches,
    a_folder_rename_or_deletion_reaches_every_file_below_it_in_a_run_that_reads_few_items,
);

async fn initial_sync_of_a_nested_folder_mirrors_the_drive(store: Arc<dyn Store>) {
    let env = env(store).await;
    let files = [
        ("/Projects/a.txt", "alpha apple"),
        ("/Projects/Specs/b.md", "bravo banana"),
        ("/Projects/Specs/Deep/c.txt", "charlie cherry"),
        ("/Projects/Notes/d.txt", "delta date"),
    ];
    for (p, t) in files {
        env.put(p, t);
    }
    env.put("/Other/outside.txt", "outside fig");
    env.put("/Projects/image.bin", "not a supported type");
    env.add_folder("/Projects").await;

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.skipped, summary.failed), (4, 1, 0));
    assert_eq!(summary.total_found, 5);
    assert_eq!(env.contents().await, env.drive_files(&files));
    assert_eq!(env.finds("cherry").await, ["c.txt"]);
    assert!(env.finds("fig").await.is_empty());
    let kb = env.store.get_kb(env.kb).await.unwrap();
    assert_eq!(kb.sync_status, SyncStatus::Completed);
    let runs = env.store.list_sync_runs(env.kb, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome.processed, 4);
}

async fn incremental_changes_are_applied_and_a_rename_does_not_download_again(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/keep.txt", "keep kiwi");
    let modify = env.put("/P/mod.txt", "old olive");
    let rename = env.put("/P/ren.txt", "rename raspberry");
    let moving = env.put("/P/Sub/mv.txt", "move mango");
    env.put("/P/Sub/under.txt", "under ugli");
    let gone = env.put("/P/del.txt", "delete durian");
    env.ctl.create_folder(&env.drive, "/P/Other").unwrap();
    let sub = env.id("/P/Sub");
    env.add_folder("/P").await;
    env.sync().await;

    env.put("/P/new.txt", "new nectarine");
    env.ctl
        .modify_file(&env.drive, &modify, "fresh orange".to_owned())
        .unwrap();
    env.ctl.rename(&env.drive, &rename, "renamed.txt").unwrap();
    env.ctl
        .move_item(&env.drive, &moving, &env.id("/P/Other"), None)
        .unwrap();
    env.ctl.delete(&env.drive, &gone).unwrap();
    env.ctl.rename(&env.drive, &sub, "Sub2").unwrap();
    env.ctl.clear_request_log();

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.deleted), (2, 1), "{summary:?}");
    assert_eq!(
        env.content_requests(),
        2,
        "only the new and the modified file are downloaded"
    );
    assert_eq!(
        env.contents().await,
        env.drive_files(&[
            ("P/keep.txt", "keep kiwi"),
            ("P/mod.txt", "fresh orange"),
            ("P/new.txt", "new nectarine"),
            ("P/renamed.txt", "rename raspberry"),
            ("P/Other/mv.txt", "move mango"),
            ("P/Sub2/under.txt", "under ugli"),
        ])
    );
    assert_eq!(env.finds("orange").await, ["mod.txt"]);
    assert!(env.finds("olive").await.is_empty());
    assert!(env.finds("durian").await.is_empty());
    assert_eq!(env.finds("raspberry").await, ["renamed.txt"]);
}

async fn a_folder_moved_out_of_the_subtree_removes_its_files(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/stay.txt", "stay strawberry");
    env.put("/P/F/one.txt", "one quince");
    env.put("/P/F/Deeper/two.txt", "two tangerine");
    env.ctl.create_folder(&env.drive, "/Elsewhere").unwrap();
    env.add_folder("/P").await;
    env.sync().await;
    assert_eq!(env.contents().await.len(), 3);

    env.ctl
        .move_item(&env.drive, &env.id("/P/F"), &env.id("/Elsewhere"), None)
        .unwrap();
    let summary = env.sync().await;

    assert_eq!(summary.deleted, 2, "{summary:?}");
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("P/stay.txt", "stay strawberry")])
    );
    assert!(env.finds("tangerine").await.is_empty());
}

async fn an_expired_delta_token_resyncs_fully_and_removes_what_disappeared(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let b = env.put("/P/b.txt", "bravo banana");
    env.add_folder("/P").await;
    env.sync().await;

    env.ctl.delete(&env.drive, &b).unwrap();
    env.put("/P/c.txt", "charlie cherry");
    env.ctl
        .expire_delta_tokens(&env.drive, ResyncCode::ResyncChangesApplyDifferences)
        .unwrap();
    env.ctl.clear_request_log();
    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("P/a.txt", "alpha apple"), ("P/c.txt", "charlie cherry")])
    );
    assert!(env.finds("banana").await.is_empty());
    // The files it already holds at their content are not downloaded again: only the new one.
    assert_eq!((summary.processed, summary.deleted), (1, 1), "{summary:?}");
    assert_eq!(env.content_requests(), 1);
}

async fn a_run_without_changes_makes_one_delta_request_per_folder(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/A/a.txt", "alpha apple");
    env.put("/B/b.txt", "bravo banana");
    env.add_folder("/A").await;
    env.add_folder("/B").await;
    env.sync().await;
    env.ctl.clear_request_log();

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed);
    assert_eq!(
        (summary.processed, summary.deleted, summary.total_found),
        (0, 0, 2)
    );
    assert_eq!(env.delta_requests(), 2, "{:#?}", env.ctl.request_log().entries);
    // The sharing was read by the first run and is not due again: nothing else is asked.
    assert_eq!(
        env.ctl.request_log().entries.len(),
        2,
        "{:#?}",
        env.ctl.request_log().entries
    );
    assert_eq!(env.content_requests(), 0);
    assert_eq!(env.contents().await.len(), 2);
}

async fn a_file_source_is_fetched_only_when_its_hash_changes(store: Arc<dyn Store>) {
    let env = env(store).await;
    let id = env.put("/Loose/single.txt", "single sapote");
    env.store
        .add_source(
            Uuid::new_v4(),
            kbsync_kit::fixtures::onedrive_source(
                env.kb,
                SourceKind::File,
                &env.drive,
                &id,
                "/Loose/single.txt",
            ),
            env.ctl.now(),
        )
        .await
        .unwrap();
    assert_eq!(env.sync().await.processed, 1);
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("Loose/single.txt", "single sapote")])
    );

    env.ctl.clear_request_log();
    assert_eq!(env.sync().await.processed, 0);
    assert_eq!(env.content_requests(), 0);

    env.ctl
        .modify_file(&env.drive, &id, "second salak".to_owned())
        .unwrap();
    assert_eq!(env.sync().await.processed, 1);
    assert_eq!(env.finds("salak").await, ["single.txt"]);
    assert!(env.finds("sapote").await.is_empty());
}

async fn a_file_in_two_sources_is_one_document_fetched_once(store: Arc<dyn Store>) {
    let env = env(store).await;
    let a = env.put("/P/a.txt", "alpha apple");
    env.put("/P/b.txt", "bravo banana");
    // The file picked first, then its folder: the folder gives the document its path.
    env.add_source(SourceKind::File, &a, "/P/a.txt").await;
    env.add_folder("/P").await;

    let first = env.sync().await;
    assert_eq!(first.status, SyncStatus::Completed, "{first:?}");
    assert_eq!((first.processed, first.total_found), (2, 2));
    env.assert_mirrors(&[("P/a.txt", "alpha apple"), ("P/b.txt", "bravo banana")])
        .await;

    env.ctl.clear_request_log();
    let second = env.sync().await;
    assert_eq!((second.processed, second.deleted), (0, 0), "{second:?}");
    assert_eq!(env.content_requests(), 0);

    env.ctl
        .modify_file(&env.drive, &a, "alpha apricot".to_owned())
        .unwrap();
    let third = env.sync().await;
    assert_eq!((third.processed, third.deleted), (1, 0), "{third:?}");
    env.assert_mirrors(&[("P/a.txt", "alpha apricot"), ("P/b.txt", "bravo banana")])
        .await;
}

/// Replaces the saved row of `id` in `source` with one no engine can read, keeping the cursor and
/// the counts: only a run that reads that row notices.
async fn spoil_saved_item(env: &Env, source: &Source, id: &str) {
    let source = env
        .store
        .list_sources(env.kb)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == source.id)
        .unwrap();
    let mut row = env
        .store
        .source_items(source.id, ItemSelection::All)
        .await
        .unwrap()
        .into_iter()
        .find(|row| row.item_id == id)
        .unwrap();
    row.data = "not the engine's".into();
    let saved = SavedItems {
        upsert: std::slice::from_ref(&row),
        remove: &[],
        files: source.state_files.unwrap(),
        pending: source.state_pending.unwrap(),
        settings: source.state_settings.as_deref().unwrap(),
    };
    env.store
        .save_source_items(source.id, source.cursor.as_deref().unwrap(), saved)
        .await
        .unwrap();
}

async fn a_run_with_a_few_changes_reads_only_the_saved_items_it_touches(store: Arc<dyn Store>) {
    let env = env(store).await;
    for i in 0..20 {
        env.put(&format!("/P/A/a{i}.txt"), &format!("alpha number{i}"));
    }
    let changed = env.put("/P/B/b.txt", "bravo banana");
    let source = env.add_folder("/P").await;
    env.sync().await;
    // A file the next round does not touch can no longer be read from its row.
    spoil_saved_item(&env, &source, &env.id("/P/A/a3.txt")).await;

    env.ctl
        .modify_file(&env.drive, &changed, "bravo blueberry".to_owned())
        .unwrap();
    env.put("/P/A/new.txt", "new nectarine");
    env.ctl.clear_request_log();
    let summary = env.sync().await;

    // The round was applied without reading the spoiled row (reading every row would have
    // found it unreadable and enumerated the folder again).
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.total_found), (2, 22), "{summary:?}");
    assert_eq!(env.delta_requests(), 1);
    assert_eq!(env.content_requests(), 2);
    assert_eq!(env.finds("blueberry").await, ["b.txt"]);
    assert_eq!(env.finds("nectarine").await, ["new.txt"]);
    assert_eq!(env.finds("number3").await, ["a3.txt"]);
    assert_eq!(env.contents().await.len(), 22);
    let saved = &env.store.list_sources(env.kb).await.unwrap()[0];
    assert_eq!((saved.state_files, saved.state_pending), (Some(22), Some(0)));
}

async fn a_folder_rename_or_deletion_reaches_every_file_below_it_in_a_run_that_reads_few_items(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/P/keep.txt", "keep kiwi");
    env.put("/P/R/one.txt", "one quince");
    env.put("/P/R/Deep/two.txt", "two tangerine");
    env.put("/P/D/three.txt", "three tamarind");
    env.put("/P/D/Deep/four.txt", "four feijoa");
    env.add_folder("/P").await;
    env.sync().await;

    env.ctl.rename(&env.drive, &env.id("/P/R"), "Renamed").unwrap();
    env.ctl.delete(&env.drive, &env.id("/P/D")).unwrap();
    env.ctl.clear_request_log();
    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.deleted), (0, 2), "{summary:?}");
    assert_eq!(env.content_requests(), 0);
    assert_eq!(
        env.contents().await,
        env.drive_files(&[
            ("P/keep.txt", "keep kiwi"),
            ("P/Renamed/one.txt", "one quince"),
            ("P/Renamed/Deep/two.txt", "two tangerine"),
        ])
    );
    let saved = &env.store.list_sources(env.kb).await.unwrap()[0];
    assert_eq!((saved.state_files, saved.state_pending), (Some(3), Some(0)));
    // The rows of the deleted folder went with it.
    let rows = env
        .store
        .source_items(saved.id, ItemSelection::All)
        .await
        .unwrap();
    assert_eq!(rows.len(), 6, "P, keep, Renamed, one, Deep, two: {rows:?}");
}
