//! Cancelling a run, and the progress it persists and publishes as it goes.

use super::*;

kbsync_kit::on_both_databases!(
    a_cancelled_run_advances_no_cursor,
    a_run_cancelled_during_slow_downloads_stops_promptly_advances_no_cursor_and_the_next_run_completes,
    progress_is_persisted_and_events_tell_the_run_as_it_goes,
);

async fn a_cancelled_run_advances_no_cursor(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.add_folder("/P").await;
    env.sync().await;
    let before = env.store.list_sources(env.kb).await.unwrap()[0].clone();
    env.put("/P/b.txt", "bravo banana");

    let cancel = CancellationToken::new();
    cancel.cancel();
    let summary = env.sync_with(cancel).await;

    assert_eq!(summary.status, SyncStatus::Cancelled);
    let after = env.store.list_sources(env.kb).await.unwrap()[0].clone();
    assert_eq!(after.cursor, before.cursor);
    assert_eq!(
        env.store.get_kb(env.kb).await.unwrap().sync_status,
        SyncStatus::Cancelled
    );
    assert!(env.finds("banana").await.is_empty());
    let resumed = env.sync().await;
    assert_eq!(resumed.processed, 1);
    assert_eq!(env.finds("banana").await, ["b.txt"]);
}

#[expect(
    clippy::disallowed_methods,
    reason = "asserts the run stops promptly in real time"
)]
async fn a_run_cancelled_during_slow_downloads_stops_promptly_advances_no_cursor_and_the_next_run_completes(
    store: Arc<dyn Store>,
) {
    let env = env_with(
        store,
        Options {
            limits: SyncLimits {
                concurrency: 2,
                ..limits()
            },
            ..Options::default()
        },
    )
    .await;
    env.put("/P/a.txt", "alpha apple");
    env.add_folder("/P").await;
    env.sync().await;
    let cursors = env.cursors().await;
    let mut files = vec![("P/a.txt".to_owned(), "alpha apple".to_owned())];
    for i in 0..6 {
        let (path, text) = (format!("P/new{i}.txt"), format!("new number{i}"));
        env.put(&format!("/{path}"), &text);
        files.push((path, text));
    }
    let delay = env.ctl.add_fault(FaultRule::new(
        "GET",
        CONTENT_ROUTE,
        FaultAction::Delay { millis: 4000 },
    ));
    let mut rx = env.events.subscribe(env.kb);
    let cancel = CancellationToken::new();

    let canceller = async {
        // The first file done: downloads are under way.
        next_event(&mut rx, Duration::from_secs(30), |e| {
            matches!(e, SyncEvent::Progress { .. }).then_some(())
        })
        .await;
        cancel.cancel();
        Instant::now()
    };
    let (summary, cancelled_at) = tokio::join!(env.sync_with(cancel.clone()), canceller);

    assert!(
        cancelled_at.elapsed() < Duration::from_secs(3),
        "the run stopped without waiting for the downloads in flight"
    );
    assert_eq!(summary.status, SyncStatus::Cancelled, "{summary:?}");
    assert!(summary.processed < 6, "{summary:?}");
    assert_eq!(env.cursors().await, cursors, "no cursor moved");
    assert_eq!(env.kb_status().await, SyncStatus::Cancelled);
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.status, SyncStatus::Cancelled);
    assert!(
        runs[0].outcome.failures.is_empty(),
        "cancelled files are not failures"
    );

    env.ctl.remove_fault(delay);
    let resumed = env.sync().await;
    assert_eq!(resumed.status, SyncStatus::Completed, "{resumed:?}");
    let expected: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    env.assert_mirrors(&expected).await;
}

async fn progress_is_persisted_and_events_tell_the_run_as_it_goes(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/P/b.txt", "bravo banana");
    let bad = env.put("/P/bad.pdf", "%PDF-1.4 this is not a pdf at all");
    env.put("/P/skip.bin", "binary");
    env.add_folder("/P").await;
    let mut rx = env.events.subscribe(env.kb);
    let run_id = Uuid::new_v4();
    env.clock.advance(chrono::Duration::seconds(1));

    let summary = env
        .engine
        .run(
            run_id,
            env.kb,
            &env.ds,
            &env.tokens,
            SyncTrigger::Manual,
            CancellationToken::new(),
        )
        .await
        .unwrap();

    assert_eq!(summary.run_id, run_id);
    assert_eq!(summary.status, SyncStatus::CompletedWithErrors, "{summary:?}");
    let events = drain(&mut rx);
    assert_eq!(
        events.first(),
        Some(&SyncEvent::Status {
            run_id,
            status: SyncStatus::Syncing
        })
    );
    let mut bytes_seen = Vec::new();
    let progress: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Progress {
                run_id: r,
                current,
                total,
                bytes,
                total_bytes,
                file,
            } => {
                assert_eq!(*r, run_id);
                assert!(file.as_deref().is_some_and(|f| f.starts_with("/P/")), "{file:?}");
                bytes_seen.push((*bytes, *total_bytes));
                Some((*current, *total))
            }
            _ => None,
        })
        .collect();
    assert_eq!(progress, [(1, 3), (2, 3), (3, 3)], "the three files to download");
    // The bytes of the three files (failed ones count: they are done), as the drive announced them.
    let total_bytes =
        ("alpha apple".len() + "bravo banana".len() + "%PDF-1.4 this is not a pdf at all".len()) as u64;
    assert!(
        bytes_seen.iter().all(|(_, t)| *t == total_bytes),
        "{bytes_seen:?}"
    );
    assert!(bytes_seen.windows(2).all(|w| w[0].0 < w[1].0), "{bytes_seen:?}");
    assert_eq!(bytes_seen.last().map(|b| b.0), Some(total_bytes));
    let failed: Vec<&SyncEvent> = events
        .iter()
        .filter(|e| matches!(e, SyncEvent::FileFailed { .. }))
        .collect();
    assert!(
        matches!(failed[..], [SyncEvent::FileFailed { name, .. }] if name == "bad.pdf"),
        "{failed:?}"
    );
    let n = events.len();
    assert_eq!(
        events[n - 2..],
        [
            SyncEvent::Finished {
                run_id,
                status: SyncStatus::CompletedWithErrors,
                processed: 2,
                failed: 1,
                deleted: 0,
                skipped: 1,
                total_found: 4,
            },
            SyncEvent::Status {
                run_id,
                status: SyncStatus::CompletedWithErrors
            },
        ]
    );

    let state = env.store.get_sync_state(env.kb, env.ctl.now()).await.unwrap();
    assert_eq!(state.status, SyncStatus::CompletedWithErrors);
    assert_eq!(state.progress.run_id, Some(run_id));
    assert_eq!((state.progress.current, state.progress.total), (3, 3));
    assert!(state.progress.file.is_some());
    // The failed file was recorded as it happened, and only once.
    let recorded = env.store.list_sync_failures(run_id, 0).await.unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].item_id, bad);
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.failures, recorded);
    // The unreadable file is a failed document; the others are indexed.
    let docs = env
        .store
        .list_documents(env.kb, Page { limit: 10, offset: 0 })
        .await
        .unwrap()
        .items;
    let status: Vec<(&str, kbsync_core::DocumentStatus)> =
        docs.iter().map(|d| (d.path.as_str(), d.status)).collect();
    assert_eq!(
        status,
        [
            ("/P/a.txt", kbsync_core::DocumentStatus::Processed),
            ("/P/b.txt", kbsync_core::DocumentStatus::Processed),
            ("/P/bad.pdf", kbsync_core::DocumentStatus::Failed),
        ]
    );
    assert_eq!(env.finds("apple").await, ["a.txt"]);
    assert_eq!(env.finds("banana").await, ["b.txt"]);
}
