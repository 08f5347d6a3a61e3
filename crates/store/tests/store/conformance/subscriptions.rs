//! Change notifications: drive subscriptions under a lease, and the runs a notification asks for.

use super::scheduling::{connected_kb, owner_of_many};
use super::*;
use kbsync_store::{DriveSubscription, SubscriptionStatus, WatchedDrive};

kbsync_kit::on_both_databases!(
    a_notification_makes_every_kb_of_the_drive_due_and_a_burst_keeps_the_first_time,
    a_notification_during_a_run_makes_the_kb_due_again_when_the_run_ends,
    a_notification_before_the_run_began_is_answered_by_it,
    a_kb_backing_off_after_failures_keeps_its_backoff_when_notified,
    watched_drives_are_folder_sources_of_usable_connections_by_drive,
    a_subscription_row_is_leased_saved_and_deleted_by_its_holder_only,
    notifications_are_counted_and_lifecycle_flags_set_by_subscription_id,
    a_kbs_subscriptions_are_those_of_its_sources_drives,
);

const OD: &str = "onedrive";

/// Claims every due knowledge base at `now` for `owner` and releases each after a run from
/// `started` to `now` that completed, next due an hour later.
async fn run_due(s: &dyn Store, owner: &str, started: DateTime<Utc>, now: DateTime<Utc>) -> Vec<ClaimedSync> {
    let claimed = s
        .claim_due_syncs(owner, started, now + Duration::hours(1), 100)
        .await
        .unwrap();
    for c in &claimed {
        let released = s
            .release_sync(
                c.kb_id,
                owner,
                &SyncRelease {
                    next_sync_at: now + Duration::hours(1),
                    consecutive_failures: 0,
                    last_sync_at: Some(now),
                    last_error: None,
                    run_started_at: Some(started),
                    released_at: now,
                },
            )
            .await
            .unwrap();
        assert!(released);
    }
    claimed
}

async fn next_sync_at(s: &dyn Store, kb: KbId) -> Option<DateTime<Utc>> {
    s.get_sync_state(kb, t(0)).await.unwrap().next_sync_at
}

async fn kb_on_drive(s: &dyn Store, owner: UserId, drive: &str) -> KbId {
    let kb = connected_kb(s, owner, drive).await;
    if drive != "drive-1" {
        s.delete_source(kb, s.list_sources(kb).await.unwrap()[0].id, t(0))
            .await
            .unwrap();
        s.add_source(
            Uuid::new_v4(),
            kbsync_kit::fixtures::onedrive_source(kb, SourceKind::Folder, drive, "root", "/Docs"),
            t(0),
        )
        .await
        .unwrap();
    }
    kb
}

async fn a_notification_makes_every_kb_of_the_drive_due_and_a_burst_keeps_the_first_time(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let a = kb_on_drive(&*s, owner, "drive-1").await;
    let b = kb_on_drive(&*s, owner, "drive-1").await;
    let other = kb_on_drive(&*s, owner, "drive-2").await;
    // Every one synced once: next due in an hour.
    assert_eq!(run_due(&*s, "i1", t(0), t(1)).await.len(), 3);

    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(
        s.request_drive_syncs(OD, "drive-1", t(10), t(12)).await.unwrap(),
        expected
    );
    // A burst: later notifications keep the first due time.
    for i in 11..20 {
        s.request_drive_syncs(OD, "drive-1", t(i), t(i + 2))
            .await
            .unwrap();
    }
    assert_eq!(next_sync_at(&*s, a).await, Some(t(12)));
    assert_eq!(next_sync_at(&*s, other).await, Some(t(3601)));
    assert!(
        s.request_drive_syncs(OD, "drive-9", t(10), t(12))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.request_drive_syncs("gdrive", "drive-1", t(10), t(12))
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        s.claim_due_syncs("i1", t(11), t(40), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = s.claim_due_syncs("i1", t(12), t(40), 100).await.unwrap();
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    assert!(
        claimed.iter().all(|c| c.requested_at == Some(t(19))),
        "the claim names the latest pending notification: {claimed:?}"
    );
}

async fn a_notification_during_a_run_makes_the_kb_due_again_when_the_run_ends(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let kb = kb_on_drive(&*s, owner, "drive-1").await;
    let claimed = s.claim_due_syncs("i1", t(0), t(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].requested_at, None);
    // The run began at t(1); a change is notified at t(5), while it runs (it holds the lease).
    s.request_drive_syncs(OD, "drive-1", t(5), t(7)).await.unwrap();
    assert!(
        s.claim_due_syncs("i2", t(8), t(60), 10).await.unwrap().is_empty(),
        "leased"
    );
    let release = SyncRelease {
        next_sync_at: t(3600),
        consecutive_failures: 0,
        last_sync_at: Some(t(20)),
        last_error: None,
        run_started_at: Some(t(1)),
        released_at: t(20),
    };
    assert!(s.release_sync(kb, "i1", &release).await.unwrap());
    assert_eq!(next_sync_at(&*s, kb).await, Some(t(20)), "due again at once");

    // That next run answers it: afterwards the interval applies and nothing is pending.
    let again = run_due(&*s, "i2", t(21), t(30)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].requested_at, Some(t(5)));
    assert_eq!(next_sync_at(&*s, kb).await, Some(t(3630)));
    let later = s.claim_due_syncs("i3", t(3630), t(3700), 10).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].requested_at, None, "a scheduled run");
}

async fn a_notification_before_the_run_began_is_answered_by_it(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let kb = kb_on_drive(&*s, owner, "drive-1").await;
    assert_eq!(run_due(&*s, "i1", t(0), t(1)).await.len(), 1);
    s.request_drive_syncs(OD, "drive-1", t(10), t(12)).await.unwrap();
    let claimed = run_due(&*s, "i1", t(12), t(20)).await;
    assert_eq!(claimed[0].requested_at, Some(t(10)));
    assert_eq!(next_sync_at(&*s, kb).await, Some(t(3620)), "nothing left pending");
}

async fn a_kb_backing_off_after_failures_keeps_its_backoff_when_notified(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let kb = kb_on_drive(&*s, owner, "drive-1").await;
    s.claim_due_syncs("i1", t(0), t(60), 10).await.unwrap();
    let failed = SyncRelease {
        next_sync_at: t(600),
        consecutive_failures: 2,
        last_sync_at: Some(t(5)),
        last_error: Some("throttled".into()),
        run_started_at: Some(t(1)),
        released_at: t(5),
    };
    assert!(s.release_sync(kb, "i1", &failed).await.unwrap());
    assert_eq!(
        s.request_drive_syncs(OD, "drive-1", t(10), t(12)).await.unwrap(),
        vec![kb]
    );
    assert_eq!(next_sync_at(&*s, kb).await, Some(t(600)));
}

async fn watched_drives_are_folder_sources_of_usable_connections_by_drive(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let a = kb_on_drive(&*s, owner, "drive-1").await;
    let b = kb_on_drive(&*s, owner, "drive-1").await;
    let c = kb_on_drive(&*s, owner, "drive-2").await;
    // A file source alone does not make a drive watched.
    let files = kb_on_drive(&*s, owner, "drive-3").await;
    s.delete_source(files, s.list_sources(files).await.unwrap()[0].id, t(0))
        .await
        .unwrap();
    s.add_source(
        Uuid::new_v4(),
        kbsync_kit::fixtures::onedrive_source(files, SourceKind::File, "drive-3", "f1", "/a.pdf"),
        t(0),
    )
    .await
    .unwrap();
    // A revoked source, and a connection awaiting re-authorization, do not either.
    let revoked = kb_on_drive(&*s, owner, "drive-4").await;
    s.mark_source_revoked(s.list_sources(revoked).await.unwrap()[0].id, t(1))
        .await
        .unwrap();
    let lapsed = kb_on_drive(&*s, owner, "drive-5").await;
    assert!(
        s.try_acquire_refresh_lease(lapsed, "a", t(1), t(60))
            .await
            .unwrap()
    );
    assert!(s.mark_needs_reauth(lapsed, "a", t(1)).await.unwrap());

    let mut ab = vec![a, b];
    ab.sort();
    assert_eq!(
        s.watched_drives().await.unwrap(),
        vec![
            WatchedDrive {
                datasource: OD.into(),
                drive_id: "drive-1".into(),
                kb_ids: ab
            },
            WatchedDrive {
                datasource: OD.into(),
                drive_id: "drive-2".into(),
                kb_ids: vec![c]
            },
        ]
    );
}

async fn a_subscription_row_is_leased_saved_and_deleted_by_its_holder_only(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let kb = kb_on_drive(&*s, owner, "drive-1").await;
    let mut row = s
        .claim_drive_subscription(OD, "drive-1", "i1", t(0), t(30))
        .await
        .unwrap()
        .expect("a new row is claimed");
    assert_eq!(row.status, SubscriptionStatus::Pending);
    assert_eq!(row.subscription_id, None);
    assert_eq!(row.next_check_at, t(0));
    assert_eq!(row.created_at, t(0));
    assert!(
        s.claim_drive_subscription(OD, "drive-1", "i2", t(1), t(31))
            .await
            .unwrap()
            .is_none(),
        "a live lease keeps others out"
    );

    row.kb_id = Some(kb);
    row.subscription_id = Some("sub-1".into());
    row.client_state_hash = Some("ab".repeat(32));
    row.status = SubscriptionStatus::Active;
    row.expires_at = Some(t(86_400));
    row.renewed_at = Some(t(2));
    row.next_check_at = t(80_000);
    row.failures = 0;
    assert!(
        !s.save_drive_subscription(&row, "i2").await.unwrap(),
        "not i2's lease"
    );
    assert!(s.save_drive_subscription(&row, "i1").await.unwrap());
    assert!(!s.save_drive_subscription(&row, "i1").await.unwrap(), "released");
    assert_eq!(s.drive_subscriptions().await.unwrap(), vec![row.clone()]);
    assert_eq!(
        s.drive_subscription_by_id("sub-1").await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(s.drive_subscription_by_id("sub-2").await.unwrap(), None);

    // Free again: another instance claims it, finds it as saved, and only it may delete it.
    let again = s
        .claim_drive_subscription(OD, "drive-1", "i2", t(3), t(33))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, row);
    // Its lease expires: another takes it over.
    let taken = s
        .claim_drive_subscription(OD, "drive-1", "i3", t(33), t(63))
        .await
        .unwrap();
    assert!(taken.is_some());
    assert!(!s.delete_drive_subscription(OD, "drive-1", "i2").await.unwrap());
    assert!(s.delete_drive_subscription(OD, "drive-1", "i3").await.unwrap());
    assert!(s.drive_subscriptions().await.unwrap().is_empty());
}

async fn active_row(s: &dyn Store, drive: &str, sub_id: &str) -> DriveSubscription {
    let mut row = s
        .claim_drive_subscription(OD, drive, "i1", t(0), t(30))
        .await
        .unwrap()
        .unwrap();
    row.subscription_id = Some(sub_id.into());
    row.client_state_hash = Some("cd".repeat(32));
    row.status = SubscriptionStatus::Active;
    row.expires_at = Some(t(86_400));
    row.next_check_at = t(80_000);
    assert!(s.save_drive_subscription(&row, "i1").await.unwrap());
    row
}

async fn notifications_are_counted_and_lifecycle_flags_set_by_subscription_id(s: Arc<dyn Store>) {
    active_row(&*s, "drive-1", "sub-1").await;
    s.record_drive_notification("sub-1", t(5)).await.unwrap();
    s.record_drive_notification("sub-1", t(6)).await.unwrap();
    s.record_drive_notification("sub-unknown", t(6)).await.unwrap();
    let row = s.drive_subscription_by_id("sub-1").await.unwrap().unwrap();
    assert_eq!(row.notifications, 2);
    assert_eq!(row.last_notification_at, Some(t(6)));

    assert!(
        s.flag_drive_subscription("sub-1", SubscriptionStatus::Renew, t(7))
            .await
            .unwrap()
    );
    assert!(
        !s.flag_drive_subscription("sub-2", SubscriptionStatus::Renew, t(7))
            .await
            .unwrap()
    );
    let row = s.drive_subscription_by_id("sub-1").await.unwrap().unwrap();
    assert_eq!(row.status, SubscriptionStatus::Renew);
    assert_eq!(row.next_check_at, t(7));
    // Maintenance's own save keeps the counts.
    let claimed = s
        .claim_drive_subscription(OD, "drive-1", "i1", t(8), t(30))
        .await
        .unwrap()
        .unwrap();
    assert!(s.save_drive_subscription(&claimed, "i1").await.unwrap());
    assert_eq!(
        s.drive_subscription_by_id("sub-1")
            .await
            .unwrap()
            .unwrap()
            .notifications,
        2
    );
}

async fn a_kbs_subscriptions_are_those_of_its_sources_drives(s: Arc<dyn Store>) {
    let owner = owner_of_many(&*s).await;
    let kb = kb_on_drive(&*s, owner, "drive-1").await;
    let other = kb_on_drive(&*s, owner, "drive-2").await;
    let one = active_row(&*s, "drive-1", "sub-1").await;
    let two = active_row(&*s, "drive-2", "sub-2").await;
    assert_eq!(s.kb_drive_subscriptions(kb).await.unwrap(), vec![one]);
    assert_eq!(s.kb_drive_subscriptions(other).await.unwrap(), vec![two]);
}
