//! Scheduling: claiming due knowledge bases under a lease, progress, interrupted runs and failure records.

use super::*;

kbsync_kit::on_both_databases!(
    claim_due_syncs_skips_local_needs_reauth_leased_and_not_yet_due_kbs,
    claim_due_syncs_takes_never_synced_first_then_oldest_due_up_to_the_limit,
    claimed_kbs_come_with_their_type,
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
);

/// A OneDrive knowledge base with a source and a healthy connection: due unless scheduled later
/// or leased.
pub(super) async fn connected_kb(s: &dyn Store, owner: UserId, name: &str) -> KbId {
    connected_kb_of(s, owner, name, KbType::OneDrive).await
}

/// [`connected_kb`] of another type.
async fn connected_kb_of(s: &dyn Store, owner: UserId, name: &str, kb_type: KbType) -> KbId {
    let id = Uuid::new_v4();
    s.create_kb(
        id,
        NewKnowledgeBase {
            name: name.into(),
            description: String::new(),
            owner_id: owner,
            kb_type,
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

pub(super) async fn owner_of_many(s: &dyn Store) -> UserId {
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
        run_started_at: None,
        released_at: next,
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
                kb_type: KbType::OneDrive,
                due_at: None,
                requested_at: None
            },
            ClaimedSync {
                kb_id: overdue,
                kb_type: KbType::OneDrive,
                due_at: Some(t(-10)),
                requested_at: None
            },
            ClaimedSync {
                kb_id: due_now,
                kb_type: KbType::OneDrive,
                due_at: Some(t(0)),
                requested_at: None
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

async fn claimed_kbs_come_with_their_type(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let onedrive = connected_kb(&*s, owner, "onedrive").await;
    s.schedule_sync(onedrive, t(-2)).await.unwrap();
    let gdrive = connected_kb_of(&*s, owner, "gdrive", KbType::GDrive).await;
    s.schedule_sync(gdrive, t(-1)).await.unwrap();
    let claimed = s.claim_due_syncs("me", t(0), t(30), 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| (c.kb_id, c.kb_type)).collect::<Vec<_>>(),
        vec![(onedrive, KbType::OneDrive), (gdrive, KbType::GDrive)]
    );
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
            kb_type: KbType::OneDrive,
            due_at: None,
            requested_at: None
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
    s.delete_kb(k, t(0)).await.unwrap();
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

async fn close_interrupted_runs_fails_only_that_kbs_runs_still_syncing(s: Arc<dyn Store>) {
    let (_, k) = kb_with_owner(&*s).await;
    let (_, other) = kb_with_owner(&*s).await;
    let (dead, done, elsewhere) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    s.create_sync_run(dead, k, SyncTrigger::Scheduled, None, t(0))
        .await
        .unwrap();
    s.create_sync_run(done, k, SyncTrigger::Manual, None, t(1))
        .await
        .unwrap();
    s.finish_sync_run(done, &outcome_with(SyncStatus::Completed, vec![]), t(2))
        .await
        .unwrap();
    s.create_sync_run(elsewhere, other, SyncTrigger::Manual, None, t(0))
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
    s.create_sync_run(run, k, SyncTrigger::Scheduled, None, t(0))
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
    s.create_sync_run(next, k, SyncTrigger::Manual, None, t(10))
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
    s.create_sync_run(run, k, SyncTrigger::Scheduled, None, t(0))
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
        s.delete_source(other_kb, gone.id, t(0)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.source_documents(gone.id).await.unwrap().len(), 5);

    assert_eq!(
        s.delete_source(k, gone.id, t(0)).await.unwrap(),
        vec![hash(1), hash(5)]
    );
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
        s.delete_source(k, gone.id, t(0)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.delete_source(Uuid::new_v4(), kept.id, t(0)).await,
        Err(StoreError::NotFound)
    ));
    // A source without documents goes too.
    assert_eq!(s.delete_source(k, kept.id, t(0)).await.unwrap(), vec![hash(2)]);
    assert!(s.list_sources(k).await.unwrap().is_empty());
    assert!(s.search(q("aardvark", Reader::Admin)).await.unwrap().is_empty());
}
