//! Document access from the drive's permissions, and revoked access: who may read which
//! document, and what a revoked source hides.

use super::*;

kbsync_kit::on_both_databases!(
    a_subfolder_shared_with_someone_gives_them_its_documents_only_and_unsharing_takes_them_back,
    permissions_are_read_only_for_changed_items_until_the_full_read_is_due,
    a_revoked_folder_is_hidden_at_once_and_removed_when_the_next_run_confirms_it,
    a_folder_readable_again_after_one_refusal_comes_back_to_search_without_a_download,
    people_without_an_id_or_address_and_roleless_permissions_open_nothing,
    organization_links_open_documents_to_everyone_only_when_link_grants_are_allowed,
    permissions_that_cannot_be_read_keep_the_access_lists_until_a_run_reads_them,
    a_revoked_source_opens_nothing,
);

async fn a_subfolder_shared_with_someone_gives_them_its_documents_only_and_unsharing_takes_them_back(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/P/Sub/b.txt", "bravo apple");
    env.put("/P/Sub/Deeper/c.txt", "charlie apple");
    env.add_folder("/P").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("Megan@Contoso.com").await;
    let manual = env.kbsync_user("manual@example.com").await;
    let stranger = env.kbsync_user("stranger@example.com").await;
    env.store.set_manual_grants(env.kb, &[manual], &[]).await.unwrap();
    env.sync().await;
    assert!(env.finds_as(megan_here, "apple").await.is_empty());

    // Shared below the source's root: the subfolder's subtree, not the rest.
    let sub = env.id("/P/Sub");
    env.ctl
        .add_permission(&env.drive, &sub, PermissionSpec::user(&megan.id, &["write"]))
        .unwrap();
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(env.finds_as(megan_here, "apple").await, ["b.txt", "c.txt"]);
    assert_eq!(
        env.finds_as(manual, "apple").await,
        ["a.txt", "b.txt", "c.txt"],
        "a manual grant reads the whole knowledge base"
    );
    assert_eq!(
        env.finds_as(env.owner, "apple").await,
        ["a.txt", "b.txt", "c.txt"]
    );
    assert!(env.finds_as(stranger, "apple").await.is_empty());

    // Unshared: gone again for her, the manual grant stays.
    env.ctl.set_permissions(&env.drive, &sub, Vec::new()).unwrap();
    env.sync().await;
    assert!(env.finds_as(megan_here, "apple").await.is_empty());
    assert_eq!(env.finds_as(manual, "apple").await, ["a.txt", "b.txt", "c.txt"]);
}

async fn permissions_are_read_only_for_changed_items_until_the_full_read_is_due(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/P/Sub/b.txt", "bravo apple");
    let p = env.add_folder("/P").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("megan@contoso.com").await;
    env.sync().await;

    // Nothing changed and the full read is fresh: no permission is read.
    env.ctl.clear_request_log();
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 0);

    // A file shared with Megan: the feed reports it, one read, for that item only.
    let a = env.id("/P/a.txt");
    env.ctl
        .add_permission(&env.drive, &a, PermissionSpec::user(&megan.id, &["read"]))
        .unwrap();
    env.ctl.clear_request_log();
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 1);
    assert_eq!(env.count(&format!("/v1.0/drives/*/items/{a}/permissions")), 1);
    assert_eq!(env.finds_as(megan_here, "apple").await, ["a.txt"]);

    // Shared on the source's root: what inherits follows; no more than the changed item is read.
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::user(&megan.id, &["read"]))
        .unwrap();
    env.ctl.clear_request_log();
    env.sync().await;
    assert!(
        env.count(PERMISSIONS_ROUTE) <= 1,
        "{}",
        env.count(PERMISSIONS_ROUTE)
    );

    // The full read waits for the refresh (six hours by default), then reads every kept list.
    env.ctl.clear_request_log();
    env.clock.advance(chrono::Duration::hours(5));
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 0, "read less than six hours ago");
    env.clock.advance(chrono::Duration::hours(1));
    env.sync().await;
    assert!(env.count(PERMISSIONS_ROUTE) >= 2, "the root and the shared file");
    assert_eq!(env.finds_as(megan_here, "apple").await, ["a.txt", "b.txt"]);
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

async fn people_without_an_id_or_address_and_roleless_permissions_open_nothing(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let p = env.add_folder("/P").await;
    let guest_here = env.kbsync_user("guest@fabrikam.com").await;
    let sales_here = env.kbsync_user("sales@example.com").await;
    env.ctl
        .set_permissions(
            &env.drive,
            &p.item_id,
            vec![
                // Neither an id nor an address reaches kbsync: cannot be matched.
                PermissionSpec::User {
                    user_id: None,
                    display_name: Some("Guest".into()),
                    email: Some("guest@fabrikam.com".into()),
                    include_email: false,
                    roles: vec!["read".into()],
                },
                // A group is matched through its members, never through its own address.
                PermissionSpec::Group {
                    group_id: Some("g-sales".into()),
                    display_name: "Sales".into(),
                    email: Some("sales@example.com".into()),
                    roles: vec!["read".into()],
                },
            ],
        )
        .unwrap();
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert!(env.finds_as(guest_here, "apple").await.is_empty());
    assert!(env.finds_as(sales_here, "apple").await.is_empty());
    env.assert_mirrors(&[("P/a.txt", "alpha apple")]).await;
}

async fn organization_links_open_documents_to_everyone_only_when_link_grants_are_allowed(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let p = env.add_folder("/P").await;
    let first = env.kbsync_user("first@example.com").await;
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
    assert!(
        env.finds_as(first, "apple").await.is_empty(),
        "a link opens nothing by default"
    );

    // Allowed (a restart with the new settings reads every knowledge base's permissions again).
    let allowing = env.engine_with(
        limits(),
        PermissionPolicy {
            link_grants: true,
            ..Default::default()
        },
    );
    env.store.forget_sharing_reads(None).await.unwrap();
    env.sync_on(&allowing).await;
    assert_eq!(env.finds_as(first, "apple").await, ["a.txt"]);
    let newcomer = env.kbsync_user("newcomer@example.com").await;
    assert_eq!(
        env.finds_as(newcomer, "apple").await,
        ["a.txt"],
        "every user, new ones too"
    );

    // Allowed no more: closed again.
    env.store.forget_sharing_reads(None).await.unwrap();
    env.sync().await;
    assert!(env.finds_as(first, "apple").await.is_empty());
}

async fn permissions_that_cannot_be_read_keep_the_access_lists_until_a_run_reads_them(store: Arc<dyn Store>) {
    let env = env_with(
        store,
        Options {
            graph: |g| g.max_attempts = 2,
            ..Options::default()
        },
    )
    .await;
    env.put("/P/a.txt", "alpha apple");
    let p = env.add_folder("/P").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("megan@contoso.com").await;
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::user(&megan.id, &["read"]))
        .unwrap();
    env.sync().await;
    assert_eq!(env.finds_as(megan_here, "apple").await, ["a.txt"]);

    // Unshared, but the permissions cannot be read now: nothing changes.
    env.ctl
        .set_permissions(&env.drive, &p.item_id, Vec::new())
        .unwrap();
    env.store.forget_sharing_reads(Some(env.kb)).await.unwrap();
    let fault = env.ctl.add_fault(FaultRule::new(
        "GET",
        &format!("/v1.0/drives/*/items/{}/permissions", p.item_id),
        FaultAction::ServerError { status: 503 },
    ));
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(env.finds_as(megan_here, "apple").await, ["a.txt"]);
    assert_eq!(
        env.store.sharing_read_at(env.kb).await.unwrap(),
        None,
        "read again next run"
    );

    env.ctl.remove_fault(fault);
    env.sync().await;
    assert!(env.finds_as(megan_here, "apple").await.is_empty());
}

async fn a_revoked_source_opens_nothing(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/q.txt", "quiet apple");
    let p = env.add_folder("/P").await;
    let q = env.add_folder("/Q").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("megan@contoso.com").await;
    for folder in [&p, &q] {
        env.ctl
            .add_permission(
                &env.drive,
                &folder.item_id,
                PermissionSpec::user(&megan.id, &["read"]),
            )
            .unwrap();
    }
    env.sync().await;
    assert_eq!(env.finds_as(megan_here, "apple").await, ["a.txt", "q.txt"]);

    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    let summary = env.sync().await;
    // Hidden after one refusal.
    assert_eq!(summary.status, SyncStatus::AccessRevoked, "{summary:?}");
    assert_eq!(env.finds_as(megan_here, "apple").await, ["q.txt"]);

    // Readable again: its documents' lists are written again.
    env.ctl.grant_access(&env.user, &env.drive, &p.item_id).unwrap();
    env.sync().await;
    assert_eq!(env.finds_as(megan_here, "apple").await, ["a.txt", "q.txt"]);

    // Refused on two runs in a row: the documents go too.
    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    env.sync().await;
    env.sync().await;
    assert_eq!(env.finds_as(megan_here, "apple").await, ["q.txt"]);
    env.assert_mirrors(&[("Q/q.txt", "quiet apple")]).await;
}
