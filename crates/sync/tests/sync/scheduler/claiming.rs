//! Which knowledge bases are due and claimed, when they are due again, and how failures back off.

use super::*;

kbsync_kit::on_both_databases!(
    due_kbs_are_claimed_and_synced_once_and_not_yet_due_ones_are_not,
    scheduled_runs_record_the_scheduled_trigger_and_manual_runs_the_manual_one,
    scheduled_runs_record_how_late_they_started_after_they_were_due,
    after_a_run_the_next_sync_is_the_interval_plus_bounded_jitter,
    advancing_the_clock_past_the_interval_makes_a_kb_due_again,
    failed_runs_back_off_exponentially_up_to_the_cap_and_success_resets,
    a_stale_lease_is_taken_over_and_its_interrupted_run_closed,
    a_tick_keeps_claiming_until_the_slots_are_full,
);

async fn due_kbs_are_claimed_and_synced_once_and_not_yet_due_ones_are_not(store: Arc<dyn Store>) {
    let w = world(store).await;
    let due = w.synced_kb("due", 2).await;
    let later = w.synced_kb("later", 1).await;
    w.store.schedule_sync(later, w.now() + minutes(10)).await.unwrap();
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    let runs = w.runs(due).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].outcome.status, SyncStatus::Completed);
    assert_eq!(runs[0].outcome.processed, 2);
    assert!(w.runs(later).await.is_empty());
    assert_eq!(w.downloads(), 2);

    // Nothing is due any more: another pass claims nothing and downloads nothing.
    assert_eq!(scheduler.tick().await.unwrap(), 0);
    idle(&runner).await;
    assert_eq!(w.runs(due).await.len(), 1);
    assert_eq!(w.downloads(), 2);
    assert!(!w.state(due).await.running);
}

async fn scheduled_runs_record_the_scheduled_trigger_and_manual_runs_the_manual_one(store: Arc<dyn Store>) {
    let w = world(store).await;
    let scheduled = w.synced_kb("scheduled", 1).await;
    let manual = w.synced_kb("manual", 1).await;
    w.store
        .schedule_sync(manual, w.now() + minutes(30))
        .await
        .unwrap();
    let runner = w.runner("instance-a", settings());

    assert_eq!(w.scheduler(&runner, 10).tick().await.unwrap(), 1);
    let run_id = runner.start_manual(manual, None).await.unwrap();
    idle(&runner).await;

    let runs = w.runs(scheduled).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger, SyncTrigger::Scheduled);
    let runs = w.runs(manual).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger, SyncTrigger::Manual);
    assert_eq!(
        runs[0].id, run_id,
        "start_manual returns the id the run is recorded under"
    );
    assert_eq!(runs[0].outcome.status, SyncStatus::Completed);
}

/// A run the scheduler starts records when its knowledge base was due, so the queue lag can be
/// read back from the store (the admin page's activity chart); a manual run has no due time.
async fn scheduled_runs_record_how_late_they_started_after_they_were_due(store: Arc<dyn Store>) {
    let w = world(store).await;
    let late = w.synced_kb("late", 1).await;
    let manual = w.synced_kb("manual", 1).await;
    w.store.schedule_sync(late, w.now() - minutes(3)).await.unwrap();
    w.store
        .schedule_sync(manual, w.now() + minutes(30))
        .await
        .unwrap();
    let runner = w.runner("instance-a", settings());

    assert_eq!(w.scheduler(&runner, 10).tick().await.unwrap(), 1);
    runner.start_manual(manual, None).await.unwrap();
    idle(&runner).await;

    let activity = w
        .store
        .sync_activity(w.now() - minutes(60), w.now() + minutes(60), minutes(120))
        .await
        .unwrap();
    assert_eq!(activity.len(), 1, "{activity:?}");
    assert_eq!(activity[0].runs, 2);
    assert_eq!(activity[0].lagged_runs, 1, "a manual run has no due time");
    assert_eq!(activity[0].lag_max, minutes(3));
    assert_eq!(activity[0].processed, 2);
}

async fn after_a_run_the_next_sync_is_the_interval_plus_bounded_jitter(store: Arc<dyn Store>) {
    let w = world(store).await;
    let mut kbs = Vec::new();
    for i in 0..4 {
        kbs.push(w.synced_kb(&format!("kb-{i}"), 1).await);
    }
    let own = w.synced_kb("own-interval", 1).await;
    w.store.set_sync_interval(own, Some(10)).await.unwrap();
    let runner = w.runner(
        "instance-a",
        RunnerSettings {
            max_runs: 8,
            ..settings()
        },
    );
    let t0 = w.now();

    assert_eq!(w.scheduler(&runner, 10).tick().await.unwrap(), 5);
    idle(&runner).await;

    let mut next = Vec::new();
    for kb in &kbs {
        let state = w.state(*kb).await;
        assert_eq!(state.status, SyncStatus::Completed);
        assert_eq!(state.last_sync_at, Some(t0));
        assert_eq!(state.consecutive_failures, 0);
        assert_eq!(state.last_error, None);
        assert!(!state.running);
        let at = state.next_sync_at.unwrap();
        // 60 minutes plus at most a tenth of them.
        assert_between(at, t0, minutes(60), minutes(66));
        next.push(at);
    }
    next.sort();
    next.dedup();
    assert_eq!(
        next.len(),
        kbs.len(),
        "jitter spreads knowledge bases synced together"
    );

    let at = w.state(own).await.next_sync_at.unwrap();
    assert_between(at, t0, minutes(10), minutes(11));
}

async fn advancing_the_clock_past_the_interval_makes_a_kb_due_again(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("again", 1).await;
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    let next = w.state(kb).await.next_sync_at.unwrap();

    w.clock.set(next - chrono::Duration::seconds(1));
    assert_eq!(scheduler.tick().await.unwrap(), 0, "not due a second early");

    w.clock.set(next);
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.outcome.status == SyncStatus::Completed));
    assert_eq!(w.state(kb).await.last_sync_at, Some(next));
    // The second run found nothing new to download.
    assert_eq!(w.downloads(), 1);
}

async fn failed_runs_back_off_exponentially_up_to_the_cap_and_success_resets(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("flaky", 1).await;
    let fault = w.ctl.add_fault(FaultRule::new(
        "GET",
        "/v1.0/**",
        FaultAction::ServerError { status: 500 },
    ));
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    // retry_base 5 min doubling, retry_max 20 min.
    for (failures, delay) in [(1, 5), (2, 10), (3, 20), (4, 20), (5, 20)] {
        assert_eq!(scheduler.tick().await.unwrap(), 1, "attempt {failures}");
        idle(&runner).await;
        let state = w.state(kb).await;
        assert_eq!(state.status, SyncStatus::Failed);
        assert_eq!(state.consecutive_failures, failures);
        assert!(state.last_error.is_some());
        let next = state.next_sync_at.unwrap();
        assert_between(
            next,
            w.now(),
            minutes(delay),
            minutes(delay) + minutes(delay) / 10,
        );
        // Not due before its backoff is over.
        w.clock.set(next - chrono::Duration::seconds(1));
        assert_eq!(scheduler.tick().await.unwrap(), 0);
        w.clock.set(next);
    }
    assert_eq!(w.runs(kb).await.len(), 5);

    assert!(w.ctl.remove_fault(fault));
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    let state = w.state(kb).await;
    assert_eq!(state.status, SyncStatus::Completed);
    assert_eq!(state.consecutive_failures, 0);
    assert_eq!(state.last_error, None);
    assert_between(state.next_sync_at.unwrap(), w.now(), minutes(60), minutes(66));
}

async fn a_stale_lease_is_taken_over_and_its_interrupted_run_closed(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("orphan", 1).await;
    // An instance claimed it, started a run and died.
    let claimed = w
        .store
        .claim_due_syncs("crashed-instance", w.now(), w.now() + minutes(2), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let orphan = Uuid::new_v4();
    w.store
        .create_sync_run(orphan, kb, SyncTrigger::Scheduled, None, w.now())
        .await
        .unwrap();
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    assert_eq!(scheduler.tick().await.unwrap(), 0, "the lease is still live");
    assert!(matches!(
        runner.start_manual(kb, None).await,
        Err(StartError::AlreadyRunning)
    ));

    w.clock.advance(minutes(2) + chrono::Duration::seconds(1));
    assert_eq!(
        scheduler.tick().await.unwrap(),
        1,
        "an expired lease is taken over"
    );
    idle(&runner).await;
    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let old = runs.iter().find(|r| r.id == orphan).unwrap();
    assert_eq!(old.outcome.status, SyncStatus::Failed);
    assert!(old.finished_at.is_some());
    let new = runs.iter().find(|r| r.id != orphan).unwrap();
    assert_eq!(new.outcome.status, SyncStatus::Completed);
    assert!(!w.state(kb).await.running);
}

async fn a_tick_keeps_claiming_until_the_slots_are_full(store: Arc<dyn Store>) {
    let w = world(store).await;
    w.slow_downloads(200);
    let mut kbs = Vec::new();
    for i in 0..5 {
        kbs.push(w.synced_kb(&format!("kb-{i}"), 1).await);
    }
    let runner = w.runner(
        "instance-a",
        RunnerSettings {
            max_runs: 4,
            ..settings()
        },
    );
    // Claims of two at most: the tick claims again until the four slots are taken.
    let scheduler = w.scheduler(&runner, 2);

    assert_eq!(scheduler.tick().await.unwrap(), 4);
    assert!(runner.running() <= 4);
    idle(&runner).await;
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    for kb in kbs {
        assert_eq!(w.runs(kb).await.len(), 1);
    }
}
