//! The drive's sharing and revoked access: who may read the KB, and what a revoked source hides.

use super::*;

kbsync_kit::on_both_databases!(
    sharing_is_read_again_when_the_drive_reports_a_change_or_the_last_read_is_older_than_the_refresh,
    a_revoked_folder_is_hidden_at_once_and_removed_when_the_next_run_confirms_it,
    a_folder_readable_again_after_one_refusal_comes_back_to_search_without_a_download,
    sharing_with_a_kbsync_user_grants_read_and_unsharing_takes_it_back,
    organization_links_grant_nothing_unless_link_grants_are_allowed,
    sharing_that_cannot_be_read_keeps_the_sync_grants,
    a_revoked_source_shares_nothing,
);

async fn sharing_is_read_again_when_the_drive_reports_a_change_or_the_last_read_is_older_than_the_refresh(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let p = env.add_folder("/P").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("megan@contoso.com").await;
    env.sync().await;
    assert!(env.grants().await.is_empty());

    // Nothing changed and the sharing is fresh: not read.
    env.ctl.clear_request_log();
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 0);

    // Shared with Megan: the change feed marks the folder, so this run reads the sharing.
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::user(&megan.id, &["read"]))
        .unwrap();
    env.ctl.clear_request_log();
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(env.count(PERMISSIONS_ROUTE), 1);
    assert_eq!(
        env.grants().await,
        [(megan_here, Permission::Read, GrantOrigin::Sync)]
    );

    // Unshared: announced the same way, the grant goes.
    let read_before = env.store.sharing_read_at(env.kb).await.unwrap();
    env.ctl
        .set_permissions(&env.drive, &p.item_id, Vec::new())
        .unwrap();
    env.sync().await;
    assert!(env.grants().await.is_empty());
    assert!(env.store.sharing_read_at(env.kb).await.unwrap() > read_before);

    // A change the feed does not announce (a drive need not) is caught when the last read is
    // older than the refresh (six hours by default).
    env.ctl.clear_request_log();
    env.clock.advance(chrono::Duration::hours(5));
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 0, "read less than six hours ago");
    env.clock.advance(chrono::Duration::hours(1));
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 1, "read six hours ago: due");

    // A new kbsync user may be one the sharing names: read on the next run.
    env.ctl.clear_request_log();
    env.kbsync_user("someone-new@example.com").await;
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 1);
}

async fn a_revoked_folder_is_hidden_at_once_and_removed_when_the_next_run_confirms_it(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/b.txt", "bravo banana");
    let p = env.add_folder("/P").await;
    env.add_folder("/Q").await;
    env.sync().await;

    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    let first = env.sync().await;

    // One refusal: out of search at once, but kept (with the cursor) in case it passes.
    assert_eq!(first.status, SyncStatus::AccessRevoked);
    assert_eq!(first.deleted, 0);
    assert!(env.finds("apple").await.is_empty());
    assert_eq!(env.finds("banana").await, ["b.txt"]);
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("P/a.txt", "alpha apple"), ("Q/b.txt", "bravo banana")])
    );
    assert!(env.cursor(p.id).await.is_some());
    assert_eq!(
        env.store.get_kb(env.kb).await.unwrap().sync_status,
        SyncStatus::AccessRevoked
    );

    // Refused again by the next run: the loss is confirmed and the documents go.
    let second = env.sync().await;
    assert_eq!(second.status, SyncStatus::AccessRevoked);
    assert_eq!(second.deleted, 1);
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("Q/b.txt", "bravo banana")])
    );
    assert!(env.finds("apple").await.is_empty());
    assert_eq!(env.cursor(p.id).await, None);
    assert_eq!(
        env.store.get_kb(env.kb).await.unwrap().sync_status,
        SyncStatus::AccessRevoked
    );
}

async fn a_folder_readable_again_after_one_refusal_comes_back_to_search_without_a_download(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/b.txt", "bravo banana");
    let p = env.add_folder("/P").await;
    env.add_folder("/Q").await;
    env.sync().await;
    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    assert_eq!(env.sync().await.status, SyncStatus::AccessRevoked);
    assert!(env.finds("apple").await.is_empty());
    let downloads = env.content_requests();

    env.ctl.grant_access(&env.user, &env.drive, &p.item_id).unwrap();
    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(summary.deleted, 0);
    assert_eq!(env.content_requests(), downloads, "nothing is downloaded again");
    env.assert_mirrors(&[("P/a.txt", "alpha apple"), ("Q/b.txt", "bravo banana")])
        .await;
    assert!(
        env.store
            .list_sources(env.kb)
            .await
            .unwrap()
            .iter()
            .all(|s| s.revoked_at.is_none())
    );
}

async fn sharing_with_a_kbsync_user_grants_read_and_unsharing_takes_it_back(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let p = env.add_folder("/P").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("Megan@Contoso.com").await;
    let manual = env.kbsync_user("manual@example.com").await;
    let guest_here = env.kbsync_user("guest@fabrikam.com").await;
    env.store.set_manual_grants(env.kb, &[manual], &[]).await.unwrap();
    let owner_email = format!("{}@example.com", env.owner);
    env.ctl
        .set_permissions(
            &env.drive,
            &p.item_id,
            vec![
                PermissionSpec::user(&megan.id, &["write"]),
                // The owner needs no grant.
                PermissionSpec::User {
                    user_id: None,
                    display_name: Some("Owner".into()),
                    email: Some(owner_email),
                    include_email: true,
                    roles: vec!["read".into()],
                },
                // No email: cannot be matched.
                PermissionSpec::User {
                    user_id: None,
                    display_name: Some("Guest".into()),
                    email: Some("guest@fabrikam.com".into()),
                    include_email: false,
                    roles: vec!["read".into()],
                },
                PermissionSpec::Group {
                    group_id: Some("g-sales".into()),
                    display_name: "Sales".into(),
                    email: Some("manual@example.com".into()),
                    roles: vec!["read".into()],
                },
            ],
        )
        .unwrap();

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert!(env.count(PERMISSIONS_ROUTE) >= 1);
    let mut expected = vec![
        (megan_here, Permission::Read, GrantOrigin::Sync),
        (manual, Permission::Read, GrantOrigin::Manual),
    ];
    expected.sort_by_key(|(u, p, o)| (*u, p.as_str(), o.as_str()));
    assert_eq!(env.grants().await, expected);
    assert!(
        env.grants().await.iter().all(|(u, _, _)| *u != guest_here),
        "a person listed without an email is not matched"
    );
    env.assert_mirrors(&[("P/a.txt", "alpha apple")]).await;

    // Unshared: the sync grant goes, the manual one stays.
    env.ctl
        .set_permissions(&env.drive, &p.item_id, Vec::new())
        .unwrap();
    env.sync().await;
    assert_eq!(
        env.grants().await,
        [(manual, Permission::Read, GrantOrigin::Manual)]
    );
}

async fn organization_links_grant_nothing_unless_link_grants_are_allowed(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let p = env.add_folder("/P").await;
    let first = env.kbsync_user("first@example.com").await;
    let second = env.kbsync_user("second@example.com").await;
    env.ctl
        .add_permission(
            &env.drive,
            &p.item_id,
            PermissionSpec::link("view", "organization"),
        )
        .unwrap();
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::link("view", "anonymous"))
        .unwrap();

    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert!(env.grants().await.is_empty(), "a link opens nothing by default");

    // Allowed (a restart with the new settings reads every knowledge base's sharing again).
    let allowing = env.engine_with(
        limits(),
        PermissionPolicy {
            link_grants: true,
            ..Default::default()
        },
    );
    env.store.forget_sharing_reads(None).await.unwrap();
    env.sync_on(&allowing).await;
    let mut expected = vec![
        (first, Permission::Read, GrantOrigin::Sync),
        (second, Permission::Read, GrantOrigin::Sync),
    ];
    expected.sort_by_key(|(u, p, o)| (*u, p.as_str(), o.as_str()));
    assert_eq!(env.grants().await, expected, "every user but the owner");

    // Allowed again no more (a restart with the new settings): the grants go.
    env.store.forget_sharing_reads(None).await.unwrap();
    env.sync().await;
    assert!(env.grants().await.is_empty());
}

async fn sharing_that_cannot_be_read_keeps_the_sync_grants(store: Arc<dyn Store>) {
    let env = env_with(
        store,
        Options {
            graph: |g| g.max_attempts = 2,
            ..Options::default()
        },
    )
    .await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/q.txt", "quiet quinoa");
    let p = env.add_folder("/P").await;
    let q = env.add_folder("/Q").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("megan@contoso.com").await;
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::user(&megan.id, &["read"]))
        .unwrap();
    env.sync().await;
    let granted = [(megan_here, Permission::Read, GrantOrigin::Sync)];
    assert_eq!(env.grants().await, granted);

    // P unshared, but Q's sharing cannot be read: nothing changes.
    env.ctl
        .set_permissions(&env.drive, &p.item_id, Vec::new())
        .unwrap();
    let fault = env.ctl.add_fault(FaultRule::new(
        "GET",
        &format!("/v1.0/drives/*/items/{}/permissions", q.item_id),
        FaultAction::ServerError { status: 503 },
    ));
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(env.grants().await, granted);

    env.ctl.remove_fault(fault);
    env.sync().await;
    assert!(env.grants().await.is_empty());
}

async fn a_revoked_source_shares_nothing(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/q.txt", "quiet quinoa");
    let p = env.add_folder("/P").await;
    let q = env.add_folder("/Q").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let nestor = env.graph_user("Nestor Wilke", "nestor@contoso.com");
    let megan_here = env.kbsync_user("megan@contoso.com").await;
    let nestor_here = env.kbsync_user("nestor@contoso.com").await;
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::user(&megan.id, &["read"]))
        .unwrap();
    env.ctl
        .add_permission(
            &env.drive,
            &q.item_id,
            PermissionSpec::user(&nestor.id, &["read"]),
        )
        .unwrap();
    env.sync().await;
    assert_eq!(env.grants().await.len(), 2);

    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    let summary = env.sync().await;

    // Hidden after one refusal, it already grants nothing.
    assert_eq!(summary.status, SyncStatus::AccessRevoked, "{summary:?}");
    assert_eq!(
        env.grants().await,
        [(nestor_here, Permission::Read, GrantOrigin::Sync)]
    );
    assert!(env.grants().await.iter().all(|(u, _, _)| *u != megan_here));
    assert!(env.finds("apple").await.is_empty());

    // Readable again: its sharing counts again.
    env.ctl.grant_access(&env.user, &env.drive, &p.item_id).unwrap();
    env.sync().await;
    let mut both = vec![
        (megan_here, Permission::Read, GrantOrigin::Sync),
        (nestor_here, Permission::Read, GrantOrigin::Sync),
    ];
    both.sort_by_key(|(u, p, o)| (*u, p.as_str(), o.as_str()));
    assert_eq!(env.grants().await, both);

    // Refused on two runs in a row: the documents go too.
    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    env.sync().await;
    env.sync().await;
    assert_eq!(
        env.grants().await,
        [(nestor_here, Permission::Read, GrantOrigin::Sync)]
    );
    env.assert_mirrors(&[("Q/q.txt", "quiet quinoa")]).await;
}
