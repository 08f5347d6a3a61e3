//! Sources, their cursors and documents, and sync runs.

use super::*;

kbsync_kit::on_both_databases!(
    add_source_twice_is_harmless_and_cursor_round_trips,
    source_for_unknown_kb_is_invalid_reference,
    upsert_source_document_keeps_id_and_reports_unreferenced_hash,
    update_document_location_keeps_content_and_chunks,
    deleting_a_source_or_kb_cascades_to_its_documents,
    sync_runs_record_outcome_and_failures_newest_first,
    sync_runs_keep_their_phase_times_to_the_microsecond,
    sync_activity_groups_every_kbs_runs_by_period_with_counts_and_queue_lag,
    set_sync_status_changes_kb_and_unknown_is_not_found,
    advancing_a_cursor_keeps_the_saved_state_and_needs_one,
    saved_items_are_read_by_id_with_ancestors_below_folders_or_pending,
    a_round_saved_page_by_page_is_read_back_by_page_and_forgotten_when_its_end_is_saved,
    sharing_is_read_again_after_sources_or_users_change,
);

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
    let rows = vec![
        item_row("root", None, false, false),
        item_row("f1", Some("root"), true, false),
        item_row("f2", Some("root"), true, true),
    ];
    let saved = SavedItems {
        upsert: &rows,
        remove: &[],
        files: 7,
        pending: 2,
        settings: "limit=1",
    };
    s.save_source_items(first.id, "delta-link-1", saved)
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
    assert_eq!(
        sorted(s.source_items(first.id, ItemSelection::All).await.unwrap()),
        sorted(rows)
    );
    assert_eq!(sources[1].id, other.id);
    assert_eq!((sources[1].state_files, sources[1].state_pending), (None, None));
    assert!(
        s.source_items(other.id, ItemSelection::All)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.legacy_source_state(first.id).await.unwrap(), None);
    s.forget_source_state(first.id).await.unwrap();
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
    assert!(
        s.source_items(first.id, ItemSelection::All)
            .await
            .unwrap()
            .is_empty()
    );
    let none = SavedItems {
        upsert: &[],
        remove: &[],
        files: 0,
        pending: 0,
        settings: "",
    };
    assert!(matches!(
        s.save_source_items(Uuid::new_v4(), "x", none).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.forget_source_state(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.source_items(Uuid::new_v4(), ItemSelection::All).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.legacy_source_state(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
}

fn item_row(id: &str, parent: Option<&str>, owned: bool, pending: bool) -> SourceItem {
    SourceItem {
        item_id: id.into(),
        parent_id: parent.map(Into::into),
        owned,
        pending,
        data: format!(r#"{{"name":"{id}"}}"#),
    }
}

fn sorted(mut rows: Vec<SourceItem>) -> Vec<SourceItem> {
    rows.sort_by(|a, b| a.item_id.cmp(&b.item_id));
    rows
}

fn ids(rows: Vec<SourceItem>) -> Vec<String> {
    sorted(rows).into_iter().map(|r| r.item_id).collect()
}

async fn save(s: &dyn Store, source: Uuid, upsert: &[SourceItem], remove: &[String], cursor: &str) {
    let saved = SavedItems {
        upsert,
        remove,
        files: 3,
        pending: 1,
        settings: "",
    };
    s.save_source_items(source, cursor, saved).await.unwrap();
}

async fn read(s: &dyn Store, source: Uuid, which: ItemSelection<'_>) -> Vec<String> {
    ids(s.source_items(source, which).await.unwrap())
}

async fn saved_items_are_read_by_id_with_ancestors_below_folders_or_pending(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let source = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(0))
        .await
        .unwrap();
    let other = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-2"), t(0))
        .await
        .unwrap();
    // root ─ a ─ a1 ─ f1 (pending)
    //      │    └ f2
    //      └ b ─ f3
    let rows = vec![
        item_row("root", None, false, false),
        item_row("a", Some("root"), false, false),
        item_row("a1", Some("a"), false, false),
        item_row("f1", Some("a1"), true, true),
        item_row("f2", Some("a"), true, false),
        item_row("b", Some("root"), false, false),
        item_row("f3", Some("b"), true, false),
    ];
    save(&*s, source.id, &rows, &[], "d1").await;
    // Another source's rows are its own.
    save(&*s, other.id, &[item_row("f1", Some("x"), true, true)], &[], "o1").await;

    let strings = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
    let wanted = strings(&["f1", "f3", "gone"]);
    assert_eq!(
        read(&*s, source.id, ItemSelection::WithAncestors(&wanted)).await,
        ["a", "a1", "b", "f1", "f3", "root"]
    );
    let folder = strings(&["a"]);
    assert_eq!(
        read(&*s, source.id, ItemSelection::Descendants(&folder)).await,
        ["a1", "f1", "f2"]
    );
    assert_eq!(read(&*s, source.id, ItemSelection::Pending).await, ["f1"]);
    assert_eq!(read(&*s, source.id, ItemSelection::All).await.len(), 7);

    // A save replaces changed rows and removes the ones that left, nothing else.
    let mut moved = item_row("f2", Some("b"), true, false);
    moved.data = r#"{"name":"moved"}"#.into();
    let upsert = [moved.clone(), item_row("f1", Some("a1"), true, false)];
    save(&*s, source.id, &upsert, &strings(&["a1"]), "d2").await;
    let all = s.source_items(source.id, ItemSelection::All).await.unwrap();
    assert_eq!(all.iter().find(|r| r.item_id == "f2"), Some(&moved));
    assert!(read(&*s, source.id, ItemSelection::Pending).await.is_empty());
    assert!(
        read(&*s, source.id, ItemSelection::Descendants(&folder))
            .await
            .is_empty()
    );
    assert_eq!(read(&*s, other.id, ItemSelection::All).await, ["f1"]);

    // Many ids at once (more than one statement's worth).
    let many: Vec<SourceItem> = (0..1_200)
        .map(|i| item_row(&format!("n{i:04}"), Some("b"), true, false))
        .collect();
    save(&*s, source.id, &many, &[], "d3").await;
    let names: Vec<String> = many.iter().map(|r| r.item_id.clone()).collect();
    // The 1,200 with b and the root above them.
    assert_eq!(
        read(&*s, source.id, ItemSelection::WithAncestors(&names))
            .await
            .len(),
        1_202
    );
    // The 1,200, f3 and the moved f2.
    assert_eq!(
        read(&*s, source.id, ItemSelection::Descendants(&strings(&["b"])))
            .await
            .len(),
        1_202
    );
    save(&*s, source.id, &[], &names, "d4").await;
    assert_eq!(read(&*s, source.id, ItemSelection::All).await.len(), 6);
    // Gone with the source.
    s.delete_source(kb_id, source.id, t(9)).await.unwrap();
    assert!(matches!(
        s.source_items(source.id, ItemSelection::All).await,
        Err(StoreError::NotFound)
    ));
}

async fn round_of(s: &dyn Store, kb_id: KbId, source: Uuid) -> Option<kbsync_core::SavedRound> {
    s.list_sources(kb_id)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == source)
        .unwrap()
        .round
}

async fn a_round_saved_page_by_page_is_read_back_by_page_and_forgotten_when_its_end_is_saved(
    s: Arc<dyn Store>,
) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let source = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(0))
        .await
        .unwrap();
    assert_eq!(source.round, None);
    let items = |names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), format!(r#"{{"id":"{n}"}}"#)))
            .collect()
    };
    fn page<'a>(page: u64, next: &'a str, items: &'a [(String, String)]) -> RoundPage<'a> {
        RoundPage {
            from: None,
            full: true,
            page,
            next,
            items,
        }
    }
    let first = items(&["b", "a"]);
    let second = items(&["a", "c"]);
    s.save_round_page(source.id, page(0, "next-1", &first))
        .await
        .unwrap();
    s.save_round_page(source.id, page(1, "next-2", &second))
        .await
        .unwrap();
    assert_eq!(
        round_of(&*s, kb_id, source.id).await,
        Some(kbsync_core::SavedRound {
            from: None,
            next: "next-2".into(),
            full: true,
            pages: 2,
        })
    );
    // Each page as saved, by item id; the same item on two pages is on both.
    assert_eq!(
        s.round_page(source.id, 0).await.unwrap(),
        [r#"{"id":"a"}"#, r#"{"id":"b"}"#]
    );
    assert_eq!(
        s.round_page(source.id, 1).await.unwrap(),
        [r#"{"id":"a"}"#, r#"{"id":"c"}"#]
    );
    assert!(s.round_page(source.id, 2).await.unwrap().is_empty());

    // A round started anew (page 0) replaces the old one, and remembers where it started.
    let other = items(&["z"]);
    let anew = RoundPage {
        from: Some("d0"),
        full: false,
        page: 0,
        next: "next-z",
        items: &other,
    };
    s.save_round_page(source.id, anew).await.unwrap();
    let round = round_of(&*s, kb_id, source.id).await.unwrap();
    assert_eq!(
        (round.from.as_deref(), round.full, round.pages),
        (Some("d0"), false, 1)
    );
    assert_eq!(s.round_page(source.id, 0).await.unwrap(), [r#"{"id":"z"}"#]);
    assert!(s.round_page(source.id, 1).await.unwrap().is_empty());

    // Saving the source's items at the end of the round forgets it.
    save(&*s, source.id, &[item_row("root", None, false, false)], &[], "d1").await;
    assert_eq!(round_of(&*s, kb_id, source.id).await, None);
    assert!(s.round_page(source.id, 0).await.unwrap().is_empty());

    // So do forget_round and forgetting the source's state.
    s.save_round_page(source.id, page(0, "next-1", &first))
        .await
        .unwrap();
    s.forget_round(source.id).await.unwrap();
    assert_eq!(round_of(&*s, kb_id, source.id).await, None);
    assert!(s.round_page(source.id, 0).await.unwrap().is_empty());
    s.save_round_page(source.id, page(0, "next-1", &first))
        .await
        .unwrap();
    s.forget_source_state(source.id).await.unwrap();
    assert_eq!(round_of(&*s, kb_id, source.id).await, None);
    assert!(s.round_page(source.id, 0).await.unwrap().is_empty());

    // An unknown source.
    assert!(matches!(
        s.save_round_page(Uuid::new_v4(), page(0, "n", &first)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.forget_round(Uuid::new_v4()).await,
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
    let rows = vec![item_row("root", None, false, false)];
    let saved = SavedItems {
        upsert: &rows,
        remove: &[],
        files: 3,
        pending: 0,
        settings: "limit=2",
    };
    s.save_source_items(source.id, "delta-1", saved).await.unwrap();
    s.advance_source_cursor(source.id, "delta-2").await.unwrap();
    let after = &s.list_sources(kb_id).await.unwrap()[0];
    assert_eq!(after.cursor.as_deref(), Some("delta-2"));
    assert_eq!((after.state_files, after.state_pending), (Some(3), Some(0)));
    assert_eq!(after.state_settings.as_deref(), Some("limit=2"));
    assert_eq!(s.source_items(source.id, ItemSelection::All).await.unwrap(), rows);
    assert!(matches!(
        s.advance_source_cursor(Uuid::new_v4(), "x").await,
        Err(StoreError::NotFound)
    ));
}

async fn sharing_is_read_again_after_sources_or_users_change(s: Arc<dyn Store>) {
    let (owner, kb_id) = kb_with_owner(&*s).await;
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);
    s.mark_sharing_read(kb_id, t(10)).await.unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), Some(t(10)));

    // Adding a source the knowledge base has already changes nothing; a new one does.
    let first = s
        .add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(11))
        .await
        .unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);
    s.mark_sharing_read(kb_id, t(12)).await.unwrap();
    s.add_source(Uuid::new_v4(), new_source(kb_id, "folder-1"), t(13))
        .await
        .unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), Some(t(12)));

    s.delete_source(kb_id, first.id, t(0)).await.unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);

    s.mark_sharing_read(kb_id, t(14)).await.unwrap();
    user(&*s, "newcomer@example.com", Role::User).await;
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);

    // Forgotten for one knowledge base, or for all of them (a restart with new settings).
    let other = kb(&*s, owner, "other").await;
    s.mark_sharing_read(kb_id, t(15)).await.unwrap();
    s.mark_sharing_read(other, t(15)).await.unwrap();
    s.forget_sharing_reads(Some(kb_id)).await.unwrap();
    assert_eq!(s.sharing_read_at(kb_id).await.unwrap(), None);
    assert_eq!(s.sharing_read_at(other).await.unwrap(), Some(t(15)));
    s.mark_sharing_read(kb_id, t(16)).await.unwrap();
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
    s.create_sync_run(run, kb_id, SyncTrigger::Manual, None, t(0))
        .await
        .unwrap();
    assert_eq!(s.delete_kb(kb_id, t(0)).await.unwrap(), vec![hash(1)]);
    assert!(s.list_sources(kb_id).await.unwrap().is_empty());
    assert!(s.source_documents(source.id).await.unwrap().is_empty());
    assert!(s.list_sync_runs(kb_id, 10).await.unwrap().is_empty());
    let _ = owner;
}

async fn sync_runs_record_outcome_and_failures_newest_first(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    s.create_sync_run(first, kb_id, SyncTrigger::Manual, None, t(0))
        .await
        .unwrap();
    s.create_sync_run(second, kb_id, SyncTrigger::Scheduled, None, t(10))
        .await
        .unwrap();
    let outcome = SyncRunOutcome {
        status: SyncStatus::CompletedWithErrors,
        processed: 3,
        failed: 2,
        deleted: 1,
        skipped: 4,
        quarantined: 1,
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
        phases: None,
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
        .create_sync_run(Uuid::new_v4(), Uuid::new_v4(), SyncTrigger::Manual, None, t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn sync_activity_groups_every_kbs_runs_by_period_with_counts_and_queue_lag(s: Arc<dyn Store>) {
    let (_, kb_id) = kb_with_owner(&*s).await;
    let (_, other) = kb_with_owner(&*s).await;
    let hour = Duration::hours(1);
    let finished = |processed, failed, deleted, status| SyncRunOutcome {
        status,
        processed,
        failed,
        deleted,
        skipped: 0,
        quarantined: 0,
        total_found: processed + failed,
        failures: vec![],
        phases: None,
    };
    // (kb, started, due, outcome): `None` outcome = still running.
    let runs = [
        // Before the window and at its end: not counted.
        (
            kb_id,
            t(-5),
            None,
            Some(finished(100, 0, 0, SyncStatus::Completed)),
        ),
        (
            kb_id,
            t(3 * 3600),
            None,
            Some(finished(100, 0, 0, SyncStatus::Completed)),
        ),
        // First hour: 10 s late, and one that started before it was due (lag 0), which failed.
        (
            kb_id,
            t(10),
            Some(t(0)),
            Some(finished(5, 1, 2, SyncStatus::CompletedWithErrors)),
        ),
        (
            other,
            t(100),
            Some(t(130)),
            Some(finished(0, 0, 0, SyncStatus::AccessRevoked)),
        ),
        // Second hour: a manual run of the other knowledge base (no due time).
        (
            other,
            t(3600 + 5),
            None,
            Some(finished(7, 0, 0, SyncStatus::Completed)),
        ),
        // Third hour: a run still going, a minute late.
        (kb_id, t(2 * 3600 + 1), Some(t(2 * 3600 - 59)), None),
    ];
    for (kb, started, due, outcome) in runs {
        let id = Uuid::new_v4();
        let trigger = if due.is_some() {
            SyncTrigger::Scheduled
        } else {
            SyncTrigger::Manual
        };
        s.create_sync_run(id, kb, trigger, due, started).await.unwrap();
        if let Some(outcome) = outcome {
            s.finish_sync_run(id, &outcome, started + Duration::seconds(30))
                .await
                .unwrap();
        }
    }
    let activity = s.sync_activity(t(0), t(3 * 3600), hour).await.unwrap();
    let zero = Duration::zero();
    assert_eq!(
        activity,
        vec![
            kbsync_store::RunActivity {
                period_start: t(0),
                runs: 2,
                failed_runs: 1,
                processed: 5,
                failed_files: 1,
                deleted: 2,
                lagged_runs: 2,
                lag_total: Duration::seconds(10),
                lag_max: Duration::seconds(10),
            },
            kbsync_store::RunActivity {
                period_start: t(3600),
                runs: 1,
                failed_runs: 0,
                processed: 7,
                failed_files: 0,
                deleted: 0,
                lagged_runs: 0,
                lag_total: zero,
                lag_max: zero,
            },
            kbsync_store::RunActivity {
                period_start: t(2 * 3600),
                runs: 1,
                failed_runs: 0,
                processed: 0,
                failed_files: 0,
                deleted: 0,
                lagged_runs: 1,
                lag_total: Duration::seconds(60),
                lag_max: Duration::seconds(60),
            },
        ]
    );
    assert_eq!(activity[0].lag_mean(), Some(Duration::seconds(5)));
    assert_eq!(activity[1].lag_mean(), None);
    // A window that holds no run, an empty window and a period that is not positive find nothing.
    assert!(
        s.sync_activity(t(-7200), t(-3600), hour)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.sync_activity(t(0), t(0), hour).await.unwrap().is_empty());
    assert!(s.sync_activity(t(0), t(3600), zero).await.unwrap().is_empty());
}

async fn sync_runs_keep_their_phase_times_to_the_microsecond(s: Arc<dyn Store>) {
    use std::time::Duration as StdDuration;
    let (_, kb_id) = kb_with_owner(&*s).await;
    let (measured, unmeasured, interrupted) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (run, at) in [(measured, 0), (unmeasured, 10), (interrupted, 20)] {
        s.create_sync_run(run, kb_id, SyncTrigger::Manual, None, t(at))
            .await
            .unwrap();
    }
    let phases = SyncPhaseTimes {
        enumerate: StdDuration::from_micros(1_234_567),
        plan: StdDuration::from_micros(89),
        download: StdDuration::from_secs(7 * 3600),
        extract: StdDuration::from_micros(1),
        index: StdDuration::from_millis(2_500),
        permissions: StdDuration::ZERO,
        wall: StdDuration::from_secs(3 * 3600) + StdDuration::from_micros(5),
    };
    let mut outcome = outcome_with(SyncStatus::Completed, vec![]);
    // What is below a microsecond is not kept.
    outcome.phases = Some(SyncPhaseTimes {
        plan: StdDuration::from_nanos(89_999),
        ..phases
    });
    s.finish_sync_run(measured, &outcome, t(5)).await.unwrap();
    let runs = s.list_sync_runs(kb_id, 10).await.unwrap();
    assert_eq!(runs[2].id, measured);
    assert_eq!(runs[2].outcome.phases, Some(phases));

    s.finish_sync_run(unmeasured, &outcome_with(SyncStatus::Failed, vec![]), t(15))
        .await
        .unwrap();
    assert_eq!(s.close_interrupted_runs(kb_id, t(30)).await.unwrap(), 1);
    let runs = s.list_sync_runs(kb_id, 10).await.unwrap();
    assert_eq!(runs[0].id, interrupted);
    assert_eq!(runs[0].outcome.status, SyncStatus::Failed);
    assert_eq!(
        runs[0].outcome.phases, None,
        "an interrupted run was never measured"
    );
    assert_eq!(runs[1].id, unmeasured);
    assert_eq!(runs[1].outcome.phases, None);
    assert_eq!(runs[2].outcome.phases, Some(phases));
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
