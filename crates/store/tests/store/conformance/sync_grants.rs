//! Access granted by the sync (from the drive's sharing) beside manual grants, and how it is withdrawn.

use super::*;

kbsync_kit::on_both_databases!(
    replace_sync_grants_keeps_manual_grants,
    removing_a_source_withdraws_only_the_sync_grants_it_alone_gave,
    deleting_the_connection_withdraws_sync_grants_and_keeps_manual_ones,
    sync_grants_are_withdrawn_once_needs_reauth_outlasts_the_grace,
    a_revoked_source_is_hidden_from_search_and_grants_nothing_until_cleared,
);

fn grant(kb_id: KbId, user_id: UserId, permission: Permission, origin: GrantOrigin) -> AccessGrant {
    AccessGrant {
        kb_id,
        user_id,
        permission,
        origin,
    }
}

async fn sorted_grants(s: &dyn Store, k: KbId) -> Vec<AccessGrant> {
    let mut grants = s.list_grants(k).await.unwrap();
    grants.sort_by_key(|g| (g.user_id, g.origin.as_str()));
    grants
}

async fn replace_sync_grants_keeps_manual_grants(s: Arc<dyn Store>) {
    let owner = user(&*s, "sg-owner@example.com", Role::User).await;
    let u1 = user(&*s, "sg1@example.com", Role::User).await;
    let u2 = user(&*s, "sg2@example.com", Role::User).await;
    let u3 = user(&*s, "sg3@example.com", Role::User).await;
    let k = kb(&*s, owner, "shared").await;
    let other = kb(&*s, owner, "other").await;
    let folder = s
        .add_source(Uuid::new_v4(), new_source(k, "f"), t(0))
        .await
        .unwrap()
        .id;
    let other_folder = s
        .add_source(Uuid::new_v4(), new_source(other, "f"), t(0))
        .await
        .unwrap()
        .id;
    s.set_manual_grants(k, &[u1], &[u2]).await.unwrap();
    s.replace_sync_grants(other, &sync_grants(other_folder, &[u2]), t(0))
        .await
        .unwrap();

    s.replace_sync_grants(k, &sync_grants(folder, &[u1, u3, u3]), t(0))
        .await
        .unwrap();
    let mut expected = vec![
        grant(k, u1, Permission::Read, GrantOrigin::Manual),
        grant(k, u1, Permission::Read, GrantOrigin::Sync),
        grant(k, u2, Permission::Write, GrantOrigin::Manual),
        grant(k, u3, Permission::Read, GrantOrigin::Sync),
    ];
    expected.sort_by_key(|g| (g.user_id, g.origin.as_str()));
    assert_eq!(sorted_grants(&*s, k).await, expected);
    let readable = s.list_readable_kbs(Reader::User(u3), page(10, 0)).await.unwrap();
    assert_eq!(readable.items.iter().map(|x| x.id).collect::<Vec<_>>(), vec![k]);

    // Sharing shrinks: only sync grants follow.
    s.replace_sync_grants(k, &sync_grants(folder, &[u2]), t(0))
        .await
        .unwrap();
    let mut expected = vec![
        grant(k, u1, Permission::Read, GrantOrigin::Manual),
        grant(k, u2, Permission::Write, GrantOrigin::Manual),
        grant(k, u2, Permission::Read, GrantOrigin::Sync),
    ];
    expected.sort_by_key(|g| (g.user_id, g.origin.as_str()));
    assert_eq!(sorted_grants(&*s, k).await, expected);
    assert_eq!(s.strongest_grant(k, u3).await.unwrap(), None);
    assert_eq!(s.strongest_grant(k, u2).await.unwrap(), Some(Permission::Write));

    // An unknown user changes nothing.
    let err = s
        .replace_sync_grants(k, &sync_grants(folder, &[u3, Uuid::new_v4()]), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    assert_eq!(sorted_grants(&*s, k).await, expected);
    // So does a source of another knowledge base.
    let err = s
        .replace_sync_grants(k, &sync_grants(other_folder, &[u3]), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    assert_eq!(sorted_grants(&*s, k).await, expected);
    // Setting manual grants leaves sync grants alone, and the other way round.
    s.set_manual_grants(k, &[], &[]).await.unwrap();
    assert_eq!(
        sorted_grants(&*s, k).await,
        vec![grant(k, u2, Permission::Read, GrantOrigin::Sync)]
    );
    s.replace_sync_grants(k, &[], t(0)).await.unwrap();
    assert!(s.list_grants(k).await.unwrap().is_empty());
    assert_eq!(
        sorted_grants(&*s, other).await,
        vec![grant(other, u2, Permission::Read, GrantOrigin::Sync)]
    );
    assert!(matches!(
        s.replace_sync_grants(Uuid::new_v4(), &sync_grants(folder, &[u1]), t(0))
            .await,
        Err(StoreError::NotFound)
    ));
}

fn sync_grants(source_id: Uuid, users: &[UserId]) -> Vec<SyncGrant> {
    users
        .iter()
        .map(|&user_id| SyncGrant { source_id, user_id })
        .collect()
}

fn sync_readers(grants: &[AccessGrant]) -> Vec<UserId> {
    let mut users: Vec<UserId> = grants
        .iter()
        .filter(|g| g.origin == GrantOrigin::Sync)
        .map(|g| g.user_id)
        .collect();
    users.sort();
    users
}

async fn removing_a_source_withdraws_only_the_sync_grants_it_alone_gave(s: Arc<dyn Store>) {
    let owner = user(&*s, "rs-owner@example.com", Role::User).await;
    let only_first = user(&*s, "rs1@example.com", Role::User).await;
    let both = user(&*s, "rs2@example.com", Role::User).await;
    let only_second = user(&*s, "rs3@example.com", Role::User).await;
    let k = kb(&*s, owner, "two folders").await;
    let first = s
        .add_source(Uuid::new_v4(), new_source(k, "f1"), t(0))
        .await
        .unwrap()
        .id;
    let second = s
        .add_source(Uuid::new_v4(), new_source(k, "f2"), t(0))
        .await
        .unwrap()
        .id;
    s.set_manual_grants(k, &[only_first], &[]).await.unwrap();
    let mut grants = sync_grants(first, &[only_first, both]);
    grants.extend(sync_grants(second, &[both, only_second]));
    s.replace_sync_grants(k, &grants, t(1)).await.unwrap();
    assert_eq!(
        sync_readers(&s.list_grants(k).await.unwrap()),
        sorted(vec![only_first, both, only_second])
    );

    s.delete_source(k, first).await.unwrap();
    // Only what the removed folder alone granted goes; the manual grant stays.
    assert_eq!(
        sync_readers(&s.list_grants(k).await.unwrap()),
        sorted(vec![both, only_second])
    );
    assert_eq!(
        s.strongest_grant(k, only_first).await.unwrap(),
        Some(Permission::Read)
    );
    assert_eq!(
        sorted_grants(&*s, k)
            .await
            .iter()
            .filter(|g| g.user_id == only_first)
            .count(),
        1
    );
    s.delete_source(k, second).await.unwrap();
    assert!(sync_readers(&s.list_grants(k).await.unwrap()).is_empty());
}

async fn deleting_the_connection_withdraws_sync_grants_and_keeps_manual_ones(s: Arc<dyn Store>) {
    let owner = user(&*s, "dc-owner@example.com", Role::User).await;
    let reader = user(&*s, "dc-reader@example.com", Role::User).await;
    let manual = user(&*s, "dc-manual@example.com", Role::User).await;
    let k = kb(&*s, owner, "connected").await;
    let other = kb(&*s, owner, "untouched").await;
    let folder = s
        .add_source(Uuid::new_v4(), new_source(k, "f"), t(0))
        .await
        .unwrap()
        .id;
    let other_folder = s
        .add_source(Uuid::new_v4(), new_source(other, "f"), t(0))
        .await
        .unwrap()
        .id;
    s.upsert_connection(new_connection(k, "r"), t(0)).await.unwrap();
    s.set_manual_grants(k, &[manual], &[]).await.unwrap();
    s.replace_sync_grants(k, &sync_grants(folder, &[reader]), t(1))
        .await
        .unwrap();
    s.replace_sync_grants(other, &sync_grants(other_folder, &[reader]), t(1))
        .await
        .unwrap();

    s.delete_connection(k).await.unwrap();
    assert_eq!(
        sorted_grants(&*s, k).await,
        vec![grant(k, manual, Permission::Read, GrantOrigin::Manual)]
    );
    assert!(
        search_ids(&*s, q("anything", Reader::User(reader)))
            .await
            .is_empty()
    );
    assert_eq!(s.strongest_grant(k, reader).await.unwrap(), None);
    // Read again once connected again; other knowledge bases keep theirs.
    assert_eq!(s.sharing_read_at(k).await.unwrap(), None);
    assert_eq!(sync_readers(&s.list_grants(other).await.unwrap()), vec![reader]);
}

async fn sync_grants_are_withdrawn_once_needs_reauth_outlasts_the_grace(s: Arc<dyn Store>) {
    let owner = user(&*s, "ra-owner@example.com", Role::User).await;
    let reader = user(&*s, "ra-reader@example.com", Role::User).await;
    let manual = user(&*s, "ra-manual@example.com", Role::User).await;
    let k = kb(&*s, owner, "lapsing").await;
    let healthy = kb(&*s, owner, "healthy").await;
    let mut folders = Vec::new();
    for kb_id in [k, healthy] {
        let folder = s
            .add_source(Uuid::new_v4(), new_source(kb_id, "f"), t(0))
            .await
            .unwrap()
            .id;
        s.upsert_connection(new_connection(kb_id, "r"), t(0))
            .await
            .unwrap();
        s.replace_sync_grants(kb_id, &sync_grants(folder, &[reader]), t(0))
            .await
            .unwrap();
        folders.push(folder);
    }
    s.set_manual_grants(k, &[manual], &[]).await.unwrap();
    assert!(s.try_acquire_refresh_lease(k, "a", t(100), t(160)).await.unwrap());
    assert!(s.mark_needs_reauth(k, "a", t(100)).await.unwrap());
    // A later mark of the same refusal keeps the time it started.
    assert!(s.try_acquire_refresh_lease(k, "a", t(200), t(260)).await.unwrap());
    assert!(s.mark_needs_reauth(k, "a", t(200)).await.unwrap());

    // Within the grace period (marked after the cut-off): nothing changes.
    assert!(s.withdraw_lapsed_sync_grants(t(99)).await.unwrap().is_empty());
    assert_eq!(sync_readers(&s.list_grants(k).await.unwrap()), vec![reader]);
    // Past it (the cut-off reaches the first mark): sync grants go, manual ones stay.
    assert_eq!(s.withdraw_lapsed_sync_grants(t(100)).await.unwrap(), vec![k]);
    assert_eq!(
        sorted_grants(&*s, k).await,
        vec![grant(k, manual, Permission::Read, GrantOrigin::Manual)]
    );
    assert_eq!(s.sharing_read_at(k).await.unwrap(), None);
    assert_eq!(sync_readers(&s.list_grants(healthy).await.unwrap()), vec![reader]);
    assert!(s.withdraw_lapsed_sync_grants(t(300)).await.unwrap().is_empty());

    // Connected again: the grace starts over at the next refusal.
    s.upsert_connection(new_connection(k, "r2"), t(400))
        .await
        .unwrap();
    s.replace_sync_grants(k, &sync_grants(folders[0], &[reader]), t(401))
        .await
        .unwrap();
    assert!(s.withdraw_lapsed_sync_grants(t(1000)).await.unwrap().is_empty());
    assert!(s.try_acquire_refresh_lease(k, "a", t(500), t(560)).await.unwrap());
    assert!(s.mark_needs_reauth(k, "a", t(500)).await.unwrap());
    assert!(s.withdraw_lapsed_sync_grants(t(499)).await.unwrap().is_empty());
    assert_eq!(s.withdraw_lapsed_sync_grants(t(500)).await.unwrap(), vec![k]);
}

async fn a_revoked_source_is_hidden_from_search_and_grants_nothing_until_cleared(s: Arc<dyn Store>) {
    let owner = user(&*s, "rv-owner@example.com", Role::User).await;
    let reader = user(&*s, "rv-reader@example.com", Role::User).await;
    let k = kb(&*s, owner, "revocable").await;
    let lost = s
        .add_source(Uuid::new_v4(), new_source(k, "lost"), t(0))
        .await
        .unwrap();
    let kept = s
        .add_source(Uuid::new_v4(), new_source(k, "kept"), t(0))
        .await
        .unwrap();
    let mut docs = Vec::new();
    for (source, path) in [(&lost, "/lost/plan.txt"), (&kept, "/kept/plan.txt")] {
        let (doc, _) = s
            .upsert_source_document(
                Uuid::new_v4(),
                source.id,
                new_doc(k, path, &hash(rand_u32())),
                t(0),
            )
            .await
            .unwrap();
        s.complete_document(doc.id, &["the rollout plan".into()], t(1))
            .await
            .unwrap();
        docs.push(doc.id);
    }
    let local = indexed(&*s, k, "/local/plan.txt", &["the rollout plan"]).await;
    let mut grants = sync_grants(lost.id, &[reader]);
    grants.extend(sync_grants(kept.id, &[owner]));
    s.replace_sync_grants(k, &grants, t(1)).await.unwrap();
    let all = sorted(vec![docs[0], docs[1], local]);
    assert_eq!(sorted(search_ids(&*s, q("rollout", Reader::Admin)).await), all);

    s.mark_source_revoked(lost.id, t(10)).await.unwrap();
    s.mark_source_revoked(lost.id, t(20)).await.unwrap();
    // Hidden from every reader, but kept; the first mark's time stays.
    assert_eq!(
        sorted(search_ids(&*s, q("rollout", Reader::Admin)).await),
        sorted(vec![docs[1], local])
    );
    assert_eq!(
        sorted(search_ids(&*s, q("rollout", Reader::User(owner))).await),
        sorted(vec![docs[1], local])
    );
    assert_eq!(s.source_documents(lost.id).await.unwrap().len(), 1);
    let sources = s.list_sources(k).await.unwrap();
    let revoked: Vec<_> = sources.iter().map(|x| (x.id, x.revoked_at)).collect();
    assert!(revoked.contains(&(lost.id, Some(t(10)))), "{revoked:?}");
    assert!(revoked.contains(&(kept.id, None)), "{revoked:?}");
    // Its sharing grants nothing while it is marked, even when handed in again.
    assert_eq!(s.strongest_grant(k, reader).await.unwrap(), None);
    s.replace_sync_grants(k, &grants, t(30)).await.unwrap();
    assert_eq!(s.strongest_grant(k, reader).await.unwrap(), None);

    s.clear_source_revoked(lost.id).await.unwrap();
    assert_eq!(sorted(search_ids(&*s, q("rollout", Reader::Admin)).await), all);
    assert_eq!(s.sharing_read_at(k).await.unwrap(), None);
    s.replace_sync_grants(k, &grants, t(40)).await.unwrap();
    assert_eq!(
        s.strongest_grant(k, reader).await.unwrap(),
        Some(Permission::Read)
    );
    assert!(matches!(
        s.mark_source_revoked(Uuid::new_v4(), t(50)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.clear_source_revoked(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
}
