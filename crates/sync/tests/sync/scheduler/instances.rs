//! Several instances on one database, manual starts and cancels, the loop and shutdown.

use super::*;

kbsync_kit::on_both_databases!(
    two_runners_sharing_a_database_sync_every_due_kb_exactly_once,
    a_manual_start_while_a_run_is_going_is_refused_on_every_instance,
    a_cancel_through_another_instance_stops_the_run_without_advancing_cursors,
    shutdown_releases_leases_for_immediate_pickup_and_leaves_no_run_syncing,
    the_scheduler_loop_syncs_due_kbs_and_stops_on_shutdown,
    a_run_that_ends_has_the_loop_fill_its_slot_before_the_next_tick,
);

#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn two_runners_sharing_a_database_sync_every_due_kb_exactly_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    let mut kbs = Vec::new();
    for i in 0..20 {
        kbs.push(w.synced_kb(&format!("shared-{i:02}"), 1).await);
    }
    let a = w.runner("instance-a", settings());
    let b = w.runner("instance-b", settings());
    let (sa, sb) = (w.scheduler(&a, 3), w.scheduler(&b, 3));

    let (mut by_a, mut by_b) = (0, 0);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while by_a + by_b < kbs.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 20 launched",
            by_a + by_b
        );
        let (ta, tb) = tokio::join!(sa.tick(), sb.tick());
        by_a += ta.unwrap();
        by_b += tb.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    idle(&a).await;
    idle(&b).await;
    let (ta, tb) = tokio::join!(sa.tick(), sb.tick());
    assert_eq!((ta.unwrap(), tb.unwrap()), (0, 0));

    assert_eq!(by_a + by_b, 20);
    assert!(by_a > 0 && by_b > 0, "both instances took work: {by_a} + {by_b}");
    for kb in &kbs {
        let runs = w.runs(*kb).await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].outcome.status, SyncStatus::Completed);
        assert_eq!(runs[0].trigger, SyncTrigger::Scheduled);
    }
    assert_eq!(w.downloads(), 20, "every file downloaded once");
}

async fn a_manual_start_while_a_run_is_going_is_refused_on_every_instance(store: Arc<dyn Store>) {
    let w = world(store).await;
    w.slow_downloads(300);
    let kb = w.synced_kb("busy", 8).await;
    let a = w.runner("instance-a", settings());
    let b = w.runner("instance-b", settings());

    a.start_manual(kb, None).await.unwrap();
    assert!(matches!(
        a.start_manual(kb, None).await,
        Err(StartError::AlreadyRunning)
    ));
    assert!(matches!(
        b.start_manual(kb, None).await,
        Err(StartError::AlreadyRunning)
    ));
    w.wait_syncing(kb).await;
    assert!(w.state(kb).await.running);
    assert!(matches!(
        b.start_manual(kb, None).await,
        Err(StartError::AlreadyRunning)
    ));
    assert_eq!(
        w.scheduler(&b, 10).tick().await.unwrap(),
        0,
        "a leased KB is not claimed"
    );

    assert!(a.cancel(kb).await.unwrap());
    idle(&a).await;
    assert_eq!(w.runs(kb).await.len(), 1);
    // Free again: a new manual run starts.
    w.ctl.clear_faults();
    b.start_manual(kb, None).await.unwrap();
    idle(&b).await;
    assert_eq!(w.runs(kb).await.len(), 2);
}

async fn a_cancel_through_another_instance_stops_the_run_without_advancing_cursors(store: Arc<dyn Store>) {
    let w = world(store).await;
    w.slow_downloads(300);
    let kb = w.synced_kb("long", 8).await;
    let a = w.runner("instance-a", settings());
    let b = w.runner("instance-b", settings());
    assert!(!b.cancel(kb).await.unwrap(), "nothing runs yet");

    let run_id = a.start_manual(kb, None).await.unwrap();
    w.wait_syncing(kb).await;
    assert!(b.cancel(kb).await.unwrap());
    assert_eq!(b.running(), 0);
    idle(&a).await;

    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, run_id);
    assert_eq!(runs[0].outcome.status, SyncStatus::Cancelled);
    assert!(
        runs[0].outcome.processed < 8,
        "the run stopped early: {:?}",
        runs[0].outcome
    );
    let state = w.state(kb).await;
    assert_eq!(state.status, SyncStatus::Cancelled);
    assert!(!state.running);
    for source in w.store.list_sources(kb).await.unwrap() {
        assert_eq!(source.cursor, None, "a cancelled run advances no cursor");
    }
    // A user's cancel is not a failure, and the schedule goes on at the interval.
    assert_eq!(state.consecutive_failures, 0);
    assert_between(state.next_sync_at.unwrap(), w.now(), minutes(60), minutes(66));
}

async fn shutdown_releases_leases_for_immediate_pickup_and_leaves_no_run_syncing(store: Arc<dyn Store>) {
    let w = world(store).await;
    w.slow_downloads(300);
    let kb = w.synced_kb("handover", 8).await;
    let a = w.runner("instance-a", settings());
    let b = w.runner("instance-b", settings());

    a.start_manual(kb, None).await.unwrap();
    w.wait_syncing(kb).await;
    tokio::time::timeout(DEADLINE, a.shutdown())
        .await
        .expect("shutdown hung");
    assert_eq!(a.running(), 0);

    let state = w.state(kb).await;
    assert!(!state.running, "the lease was released");
    assert_eq!(state.next_sync_at, Some(w.now()), "due again at once");
    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome.status, SyncStatus::Cancelled);
    assert!(runs.iter().all(|r| r.outcome.status != SyncStatus::Syncing));
    assert!(matches!(
        a.start_manual(kb, None).await,
        Err(StartError::ShuttingDown)
    ));
    assert_eq!(
        w.scheduler(&a, 10).tick().await.unwrap(),
        0,
        "a stopped runner claims nothing"
    );

    // Another instance picks it up on its next pass, without the clock moving.
    w.ctl.clear_faults();
    assert_eq!(w.scheduler(&b, 10).tick().await.unwrap(), 1);
    idle(&b).await;
    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().any(|r| r.outcome.status == SyncStatus::Completed));
}

async fn the_scheduler_loop_syncs_due_kbs_and_stops_on_shutdown(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("looped", 1).await;
    let runner = w.runner("instance-a", settings());
    let shutdown = CancellationToken::new();
    let handle = w.scheduler(&runner, 10).spawn(shutdown.clone());

    eventually("the loop to sync the due knowledge base", || async {
        w.runs(kb)
            .await
            .iter()
            .any(|r| r.outcome.status == SyncStatus::Completed)
    })
    .await;
    // Newly due work is picked up by later ticks.
    let later = w.synced_kb("later", 1).await;
    eventually("the loop to sync a knowledge base added later", || async {
        w.runs(later)
            .await
            .iter()
            .any(|r| r.outcome.status == SyncStatus::Completed)
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, handle)
        .await
        .expect("the loop did not stop")
        .unwrap();
    assert!(matches!(
        runner.start_manual(kb, None).await,
        Err(StartError::ShuttingDown)
    ));
    assert_eq!(w.runs(kb).await.len(), 1);
}

async fn a_run_that_ends_has_the_loop_fill_its_slot_before_the_next_tick(store: Arc<dyn Store>) {
    let w = world(store).await;
    let mut kbs = Vec::new();
    for i in 0..3 {
        kbs.push(w.synced_kb(&format!("kb-{i}"), 1).await);
    }
    // One slot, and a tick far beyond the test's deadline: only the first tick (at once) claims
    // by the clock, so every later knowledge base is claimed because a run ended.
    let runner = w.runner(
        "instance-a",
        RunnerSettings {
            max_runs: 1,
            ..settings()
        },
    );
    let scheduler = Scheduler::new(
        runner.clone(),
        SchedulerSettings {
            tick: Duration::from_secs(3600),
            batch: 10,
            reauth_grace: chrono::Duration::hours(72),
        },
    );
    let shutdown = CancellationToken::new();
    let handle = scheduler.spawn(shutdown.clone());

    for kb in &kbs {
        eventually(
            "every due knowledge base to sync, one after the other",
            || async {
                w.runs(*kb)
                    .await
                    .iter()
                    .any(|r| r.outcome.status == SyncStatus::Completed)
            },
        )
        .await;
    }
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, handle)
        .await
        .expect("the loop did not stop")
        .unwrap();
    for kb in kbs {
        assert_eq!(w.runs(kb).await.len(), 1);
    }
}
