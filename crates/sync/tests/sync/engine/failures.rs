//! What goes wrong during a run: failing, slow, too large or unsupported files, the file limit,
//! refused tokens and throttling.

use super::*;

kbsync_kit::on_both_databases!(
    a_failing_file_is_recorded_and_retried_next_run,
    a_run_over_the_file_limit_downloads_nothing_advances_no_cursor_and_counts_the_same_in_any_order,
    too_large_and_unsupported_files_are_skipped_not_failed_and_not_fetched_again,
    a_file_slower_than_the_file_timeout_fails_alone_and_is_retried_next_run,
    a_401_whose_refresh_is_refused_stops_the_run_with_needs_reauth_and_advances_no_cursor,
    a_single_401_is_refreshed_once_and_the_run_completes,
    throttled_downloads_honour_retry_after_and_nothing_fails,
    throttling_that_outlasts_the_retries_fails_the_source_and_holds_back_the_tenants_other_requests,
    a_run_stopped_in_the_middle_of_a_round_leaves_it_saved_and_the_next_run_resumes_from_its_last_page,
);

async fn a_failing_file_is_recorded_and_retried_next_run(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/good.txt", "good grape");
    let bad = env.put("/P/bad.pdf", "%PDF-1.4 this is not a pdf at all");
    let source = env.add_folder("/P").await;

    let first = env.sync().await;
    assert_eq!(first.status, SyncStatus::CompletedWithErrors);
    assert_eq!((first.processed, first.failed), (1, 1));
    assert_eq!(first.failures.len(), 1);
    assert_eq!(first.failures[0].name, "bad.pdf");
    assert_eq!(env.finds("grape").await, ["good.txt"]);
    let cursor = env.store.list_sources(env.kb).await.unwrap()[0].cursor.clone();
    assert!(cursor.is_some(), "the cursor moved although a file failed");
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.failures[0].item_id, bad);

    // Fixed on the drive without the engine being told twice: the retry picks it up.
    let second = env.sync().await;
    assert_eq!(
        (second.processed, second.failed),
        (0, 1),
        "retried and still failing"
    );
    env.ctl
        .modify_file(&env.drive, &bad, kbsync_fixtures::pdf(&["pdf papaya"]))
        .unwrap();
    let third = env.sync().await;
    assert_eq!(third.status, SyncStatus::Completed, "{third:?}");
    assert_eq!(env.finds("papaya").await, ["bad.pdf"]);
    let _ = source;
}

async fn a_run_over_the_file_limit_downloads_nothing_advances_no_cursor_and_counts_the_same_in_any_order(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/A/one.txt", "one olive");
    env.put("/A/Deep/two.txt", "two tomato");
    env.put("/B/three.txt", "three thyme");
    let doomed = env.put("/B/four.txt", "four fennel");
    env.add_folder("/A").await;
    env.add_folder("/B").await;
    let first = env.sync().await;
    assert_eq!(first.status, SyncStatus::Completed, "{first:?}");
    let cursors = env.cursors().await;
    let before = env.contents().await;

    // Now 6 files (two new, one deleted, one binary) in two sources against a limit of 5.
    env.put("/A/Deep/five.txt", "five fig");
    env.put("/B/six.txt", "six sage");
    env.put("/B/seven.bin", "binary");
    env.ctl.delete(&env.drive, &doomed).unwrap();
    let limited = env.engine_with(
        SyncLimits {
            max_files: 5,
            ..limits()
        },
        PermissionPolicy::default(),
    );
    let mut found = Vec::new();
    for (children_first, duplicates) in [(0.0, 0.0), (1.0, 0.9), (0.5, 0.3)] {
        env.ctl.set_delta_behaviour(DeltaBehaviour {
            children_first_probability: children_first,
            duplicate_probability: duplicates,
            ..DeltaBehaviour::default()
        });
        env.ctl.clear_request_log();

        let summary = env.sync_on(&limited).await;

        assert_eq!(summary.status, SyncStatus::FileLimitExceeded, "{summary:?}");
        assert_eq!((summary.processed, summary.deleted, summary.failed), (0, 0, 0));
        found.push(summary.total_found);
        assert_eq!(env.content_requests(), 0, "nothing is downloaded");
        assert_eq!(env.cursors().await, cursors, "no cursor moves");
        assert_eq!(
            env.contents().await,
            before,
            "nothing is applied, not even the deletion"
        );
        assert_eq!(env.kb_status().await, SyncStatus::FileLimitExceeded);
    }
    assert_eq!(found, [6, 6, 6], "the same count whatever the listing order");
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.status, SyncStatus::FileLimitExceeded);
    assert_eq!(runs[0].outcome.total_found, 6);

    // The limit raised, the same changes come in.
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.deleted, summary.skipped), (2, 1, 1));
    env.assert_mirrors(&[
        ("A/one.txt", "one olive"),
        ("A/Deep/two.txt", "two tomato"),
        ("A/Deep/five.txt", "five fig"),
        ("B/three.txt", "three thyme"),
        ("B/six.txt", "six sage"),
    ])
    .await;
}

async fn too_large_and_unsupported_files_are_skipped_not_failed_and_not_fetched_again(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/small.txt", "small sorrel");
    let big = "big ".repeat(300_000); // 1.2 MB against a limit of 1 MiB
    env.put("/P/big.txt", &big);
    let image = env.put("/P/photo.png", "not really a png");
    env.put("/P/data.bin", "raw bytes");
    env.add_folder("/P").await;

    let first = env.sync().await;

    assert_eq!(first.status, SyncStatus::Completed, "{first:?}");
    assert_eq!((first.processed, first.skipped, first.failed), (1, 3, 0));
    assert_eq!(first.total_found, 4);
    assert!(first.failures.is_empty(), "skipped files are not failures");
    assert_eq!(
        env.content_requests(),
        1,
        "only the small text file is downloaded"
    );
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert!(runs[0].outcome.failures.is_empty());
    assert_eq!(runs[0].outcome.skipped, 3);
    env.assert_mirrors(&[("P/small.txt", "small sorrel")]).await;

    // Skipped files are remembered: neither counted nor fetched again while unchanged.
    env.ctl.clear_request_log();
    let second = env.sync().await;
    assert_eq!((second.processed, second.skipped, second.failed), (0, 0, 0));
    assert_eq!(env.content_requests(), 0);

    // Renamed to a supported type, the same content is indexed.
    env.ctl.rename(&env.drive, &image, "photo.txt").unwrap();
    let third = env.sync().await;
    assert_eq!((third.processed, third.skipped), (1, 0), "{third:?}");
    env.assert_mirrors(&[
        ("P/small.txt", "small sorrel"),
        ("P/photo.txt", "not really a png"),
    ])
    .await;

    // A raised size limit brings the big file in.
    let bigger = env.engine_with(
        SyncLimits {
            max_file_size: 4 * 1024 * 1024,
            ..limits()
        },
        PermissionPolicy::default(),
    );
    let fourth = env.sync_on(&bigger).await;
    assert_eq!((fourth.processed, fourth.skipped), (1, 0), "{fourth:?}");
    assert_eq!(env.contents().await.get("/P/big.txt"), Some(&big));
}

#[expect(clippy::disallowed_methods, reason = "asserts the timeout fires in real time")]
async fn a_file_slower_than_the_file_timeout_fails_alone_and_is_retried_next_run(store: Arc<dyn Store>) {
    let env = env_with(
        store,
        Options {
            limits: SyncLimits {
                file_timeout: Duration::from_millis(1500),
                ..limits()
            },
            ..Options::default()
        },
    )
    .await;
    env.put("/P/fast.txt", "fast fennel");
    env.put("/P/quick.txt", "quick quince");
    let slow = env.put("/P/slow.txt", "slow sloe");
    env.add_folder("/P").await;
    env.ctl.add_fault(
        FaultRule::new(
            "GET",
            &format!("/v1.0/drives/*/items/{slow}/content"),
            FaultAction::Delay { millis: 8000 },
        )
        .times(1),
    );

    let started = Instant::now();
    let first = env.sync().await;

    assert!(
        started.elapsed() < Duration::from_secs(7),
        "the run did not wait for the slow file"
    );
    assert_eq!(first.status, SyncStatus::CompletedWithErrors, "{first:?}");
    assert_eq!((first.processed, first.failed), (2, 1));
    assert_eq!(first.failures[0].item_id, slow);
    assert!(
        first.failures[0].reason.contains("timed out"),
        "{:?}",
        first.failures
    );
    assert!(
        env.cursors().await[0].is_some(),
        "the cursor moved although a file failed"
    );
    env.assert_mirrors(&[("P/fast.txt", "fast fennel"), ("P/quick.txt", "quick quince")])
        .await;

    let second = env.sync().await;
    assert_eq!(second.status, SyncStatus::Completed, "{second:?}");
    assert_eq!((second.processed, second.failed), (1, 0));
    env.assert_mirrors(&[
        ("P/fast.txt", "fast fennel"),
        ("P/quick.txt", "quick quince"),
        ("P/slow.txt", "slow sloe"),
    ])
    .await;
}

async fn a_401_whose_refresh_is_refused_stops_the_run_with_needs_reauth_and_advances_no_cursor(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.add_folder("/P").await;
    env.add_folder("/P").await; // the same item again: harmless
    env.put("/Q/q.txt", "quiet quinoa");
    env.add_folder("/Q").await;
    env.sync().await;
    let cursors = env.cursors().await;
    env.put("/P/b.txt", "bravo banana");
    env.put("/Q/r.txt", "rapid radish");

    // The access token is refused on the downloads and the refresh token is revoked.
    env.tokens.refuse_refresh(true);
    let fault = env
        .ctl
        .add_fault(FaultRule::new("GET", CONTENT_ROUTE, FaultAction::Unauthorized));
    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::NeedsReauth, "{summary:?}");
    assert!(env.tokens.refreshes() >= 1, "a refresh was tried");
    assert_eq!(env.cursors().await, cursors, "no cursor moved");
    assert_eq!(env.kb_status().await, SyncStatus::NeedsReauth);
    assert!(env.finds("banana").await.is_empty());
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.status, SyncStatus::NeedsReauth);

    // A browser token refused on the change feed: the same, before anything is downloaded.
    env.ctl.remove_fault(fault);
    env.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/drives/**", FaultAction::Unauthorized).times(1));
    env.ctl.clear_request_log();
    let browser = StaticToken(kbsync_kit::emulator::access_token(&env.ctl, &env.user));
    let summary = env.run_on(&env.engine, &browser, CancellationToken::new()).await;
    assert_eq!(summary.status, SyncStatus::NeedsReauth, "{summary:?}");
    assert_eq!(env.content_requests(), 0);
    assert_eq!(env.cursors().await, cursors);

    // Connected again: the run completes.
    env.tokens.refuse_refresh(false);
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    env.assert_mirrors(&[
        ("P/a.txt", "alpha apple"),
        ("P/b.txt", "bravo banana"),
        ("Q/q.txt", "quiet quinoa"),
        ("Q/r.txt", "rapid radish"),
    ])
    .await;
}

async fn a_single_401_is_refreshed_once_and_the_run_completes(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/P/b.txt", "bravo banana");
    env.add_folder("/P").await;
    env.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/drives/**", FaultAction::Unauthorized).times(1));

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(env.tokens.refreshes(), 1);
    assert_eq!(
        env.ctl
            .request_log()
            .entries
            .iter()
            .filter(|e| e.status == 401)
            .count(),
        1
    );
    env.assert_mirrors(&[("P/a.txt", "alpha apple"), ("P/b.txt", "bravo banana")])
        .await;
}

async fn throttled_downloads_honour_retry_after_and_nothing_fails(store: Arc<dyn Store>) {
    let env = env(store).await;
    let files = [
        ("P/a.txt", "alpha apple"),
        ("P/b.txt", "bravo banana"),
        ("P/c.txt", "charlie cherry"),
    ];
    for (p, t) in files {
        env.put(&format!("/{p}"), t);
    }
    env.add_folder("/P").await;
    env.ctl.add_fault(
        FaultRule::new(
            "GET",
            CONTENT_ROUTE,
            FaultAction::Throttle {
                status: 429,
                retry_after: RetryAfter::Seconds(1),
                rate_limit_headers: false,
            },
        )
        .times(3),
    );

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.failed), (3, 0));
    let throttled = env
        .ctl
        .request_log()
        .entries
        .iter()
        .filter(|e| e.status == 429)
        .count();
    assert_eq!(throttled, 3);
    env.assert_mirrors(&files).await;
}

async fn throttling_that_outlasts_the_retries_fails_the_source_and_holds_back_the_tenants_other_requests(
    store: Arc<dyn Store>,
) {
    // Retry-After beyond what the datasource waits on its own: it reports `Throttled` at once, and
    // the tenant's throttle gate stays closed that long, so the run's later requests (the
    // downloads, which come after every source's changes were gathered) are not even sent.
    let env = env_with(
        store,
        Options {
            graph: |g| g.max_retry_wait = Duration::from_secs(1),
            ..Options::default()
        },
    )
    .await;
    let ok = env.put("/A/ok.txt", "okay oat");
    env.put("/B/b.txt", "bravo banana");
    let a = env.add_folder("/A").await;
    let b = env.add_folder("/B").await;
    let on_b = env.ctl.add_fault(FaultRule::new(
        "GET",
        &format!("/v1.0/drives/*/items/{}/delta", b.item_id),
        FaultAction::Throttle {
            status: 429,
            retry_after: RetryAfter::Seconds(120),
            rate_limit_headers: false,
        },
    ));

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Failed, "{summary:?}");
    assert_eq!((summary.processed, summary.failed), (0, 1));
    let reasons: Vec<(&str, &str)> = summary
        .failures
        .iter()
        .map(|f| (f.item_id.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, ok, "the file first, then the source");
    assert_eq!(reasons[1].0, b.item_id);
    assert!(
        reasons.iter().all(|(_, r)| r.contains("throttled")),
        "{reasons:?}"
    );
    assert!(
        !env.ctl
            .request_log()
            .entries
            .iter()
            .any(|e| e.path.ends_with("/content")),
        "the download waited at the closed gate instead of being sent"
    );
    assert!(
        env.cursor(a.id).await.is_some(),
        "A's round was applied, its file recorded as failed"
    );
    assert_eq!(env.cursor(b.id).await, None, "B's cursor did not move");
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.failures.len(), 2);

    // Once the Retry-After has passed, the next run catches up.
    env.ctl.remove_fault(on_b);
    env.clock.advance(chrono::Duration::seconds(120));
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    env.assert_mirrors(&[("A/ok.txt", "okay oat"), ("B/b.txt", "bravo banana")])
        .await;
}

async fn a_run_stopped_in_the_middle_of_a_round_leaves_it_saved_and_the_next_run_resumes_from_its_last_page(
    store: Arc<dyn Store>,
) {
    // Pages of two items and no retries: the enumeration of 12 files in 3 folders takes many pages,
    // and a failing page fails the source at once.
    let env = env_with(
        store,
        Options {
            graph: |g| {
                g.page_size = 2;
                g.max_attempts = 1;
            },
            ..Options::default()
        },
    )
    .await;
    let files: Vec<(String, String)> = (0..12)
        .map(|i| (format!("Docs/f{}/file{i}.txt", i % 3), format!("text{i} word{i}")))
        .collect();
    for (path, text) in &files {
        env.put(&format!("/{path}"), text);
    }
    let source = env.add_folder("/Docs").await;
    let fault = env.ctl.add_fault(
        FaultRule::new(
            "GET",
            &format!("/v1.0/drives/*/items/{}/delta", source.item_id),
            FaultAction::ServerError { status: 503 },
        )
        .after_first(3),
    );

    let first = env.sync().await;

    assert_eq!(first.status, SyncStatus::Failed, "{first:?}");
    assert_eq!(
        env.content_requests(),
        0,
        "nothing is applied before the round is complete"
    );
    assert_eq!(env.cursor(source.id).await, None);
    let sources = env.store.list_sources(env.kb).await.unwrap();
    let round = sources[0]
        .round
        .clone()
        .expect("the three pages served are saved");
    assert_eq!((round.from.as_deref(), round.full, round.pages), (None, true, 3));

    env.ctl.remove_fault(fault);
    env.ctl.clear_request_log();
    let second = env.sync().await;

    assert_eq!(second.status, SyncStatus::Completed, "{second:?}");
    // The first delta request of the new run is the link saved after the third page: the pages
    // served before are not asked for again, and their items come from the store.
    let log = env.ctl.request_log();
    let resumed = log
        .entries
        .iter()
        .find(|e| e.path.contains("delta"))
        .expect("a delta request");
    let asked = format!("{}?{}", resumed.path, resumed.query.as_deref().unwrap_or(""));
    assert!(round.next.ends_with(&asked), "{asked} is {}", round.next);
    let expected: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    env.assert_mirrors(&expected).await;
    let sources = env.store.list_sources(env.kb).await.unwrap();
    assert_eq!(sources[0].round, None, "the saved round ends with it");
    assert!(env.store.round_page(source.id, 0).await.unwrap().is_empty());
    assert!(env.cursor(source.id).await.is_some());
}
