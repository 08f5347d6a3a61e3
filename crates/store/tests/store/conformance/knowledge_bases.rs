//! Knowledge bases and their manual access grants.

use super::*;

kbsync_kit::on_both_databases!(
    create_kb_round_trips_with_idle_status,
    create_kb_with_unknown_owner_is_invalid_reference,
    list_readable_kbs_shows_owner_grantee_and_admin_but_not_stranger,
    list_readable_kbs_pages_newest_first_with_total,
    update_kb_changes_only_given_fields_and_unknown_is_not_found,
    delete_kb_cascades_and_returns_only_unreferenced_hashes,
    set_manual_grants_replaces_previous_manual_grants,
    set_manual_grants_write_wins_over_read,
    set_manual_grants_unknown_user_is_invalid_reference_and_changes_nothing,
    set_manual_grants_on_unknown_kb_is_not_found,
);

async fn create_kb_round_trips_with_idle_status(s: Arc<dyn Store>) {
    let owner = user(&*s, "o@example.com", Role::User).await;
    let id = Uuid::new_v4();
    let created = s
        .create_kb(
            id,
            NewKnowledgeBase {
                name: "Handbook".into(),
                description: "all the things".into(),
                owner_id: owner,
                kb_type: KbType::OneDrive,
            },
            t(7),
        )
        .await
        .unwrap();
    assert_eq!(created.sync_status, SyncStatus::Idle);
    assert_eq!(created.kb_type, KbType::OneDrive);
    assert_eq!((created.created_at, created.updated_at), (t(7), t(7)));
    assert_eq!(s.get_kb(id).await.unwrap(), created);
    assert!(matches!(
        s.get_kb(Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
}

async fn create_kb_with_unknown_owner_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .create_kb(
            Uuid::new_v4(),
            NewKnowledgeBase {
                name: "x".into(),
                description: String::new(),
                owner_id: Uuid::new_v4(),
                kb_type: KbType::Local,
            },
            t(0),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn list_readable_kbs_shows_owner_grantee_and_admin_but_not_stranger(s: Arc<dyn Store>) {
    let owner = user(&*s, "owner@example.com", Role::User).await;
    let reader = user(&*s, "reader@example.com", Role::User).await;
    let writer = user(&*s, "writer@example.com", Role::User).await;
    let stranger = user(&*s, "stranger@example.com", Role::User).await;
    let a = kb_at(&*s, owner, "a", t(1)).await;
    let b = kb_at(&*s, owner, "b", t(2)).await;
    let c = kb_at(&*s, stranger, "c", t(3)).await;
    s.set_manual_grants(a, &[reader], &[writer]).await.unwrap();
    s.set_manual_grants(b, &[], &[writer]).await.unwrap();

    let ids = |p: kbsync_store::PageOf<kbsync_core::KnowledgeBase>| {
        (p.items.into_iter().map(|k| k.id).collect::<Vec<_>>(), p.total)
    };
    let all = page(100, 0);
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(owner), all).await.unwrap()),
        (vec![b, a], 2)
    );
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(reader), all).await.unwrap()),
        (vec![a], 1)
    );
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(writer), all).await.unwrap()),
        (vec![b, a], 2)
    );
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(stranger), all).await.unwrap()),
        (vec![c], 1)
    );
    assert_eq!(
        ids(s.list_readable_kbs(Reader::Admin, all).await.unwrap()),
        (vec![c, b, a], 3)
    );
    let nobody = user(&*s, "nobody@example.com", Role::User).await;
    assert_eq!(
        ids(s.list_readable_kbs(Reader::User(nobody), all).await.unwrap()),
        (vec![], 0)
    );
}

async fn list_readable_kbs_pages_newest_first_with_total(s: Arc<dyn Store>) {
    let owner = user(&*s, "pager@example.com", Role::User).await;
    let mut kbs = Vec::new();
    for i in 0..5 {
        kbs.push(kb_at(&*s, owner, &format!("kb{i}"), t(i)).await);
    }
    kbs.reverse(); // newest first
    let p1 = s
        .list_readable_kbs(Reader::User(owner), page(2, 0))
        .await
        .unwrap();
    let p2 = s
        .list_readable_kbs(Reader::User(owner), page(2, 2))
        .await
        .unwrap();
    let p3 = s
        .list_readable_kbs(Reader::User(owner), page(2, 4))
        .await
        .unwrap();
    let p4 = s.list_readable_kbs(Reader::Admin, page(2, 10)).await.unwrap();
    assert_eq!(p1.items.iter().map(|k| k.id).collect::<Vec<_>>(), kbs[0..2]);
    assert_eq!(p2.items.iter().map(|k| k.id).collect::<Vec<_>>(), kbs[2..4]);
    assert_eq!(p3.items.iter().map(|k| k.id).collect::<Vec<_>>(), kbs[4..5]);
    assert!(p4.items.is_empty());
    assert_eq!((p1.total, p2.total, p3.total, p4.total), (5, 5, 5, 5));
}

async fn update_kb_changes_only_given_fields_and_unknown_is_not_found(s: Arc<dyn Store>) {
    let owner = user(&*s, "upd@example.com", Role::User).await;
    let id = kb(&*s, owner, "before").await;
    let renamed = s
        .update_kb(
            id,
            KbPatch {
                name: Some("after".into()),
                description: None,
            },
            t(50),
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "after");
    assert_eq!(renamed.description, "before description");
    assert_eq!(renamed.created_at, t(0));
    assert_eq!(renamed.updated_at, t(50));
    let described = s
        .update_kb(
            id,
            KbPatch {
                name: None,
                description: Some(String::new()),
            },
            t(60),
        )
        .await
        .unwrap();
    assert_eq!(
        (described.name.as_str(), described.description.as_str()),
        ("after", "")
    );
    assert_eq!(s.get_kb(id).await.unwrap(), described);
    let err = s
        .update_kb(Uuid::new_v4(), KbPatch::default(), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn delete_kb_cascades_and_returns_only_unreferenced_hashes(s: Arc<dyn Store>) {
    let owner = user(&*s, "del@example.com", Role::User).await;
    let reader = user(&*s, "delr@example.com", Role::User).await;
    let doomed = kb(&*s, owner, "doomed").await;
    let kept = kb(&*s, owner, "kept").await;
    s.set_manual_grants(doomed, &[reader], &[]).await.unwrap();
    let only_here = hash(1);
    let shared = hash(2);
    let d1 = doc_at(&*s, doomed, "/one.txt", &only_here, t(0)).await;
    let _d1b = doc_at(&*s, doomed, "/one-copy.txt", &only_here, t(0)).await;
    let d2 = doc_at(&*s, doomed, "/two.txt", &shared, t(0)).await;
    let k2 = doc_at(&*s, kept, "/two.txt", &shared, t(0)).await;
    s.complete_document(d1, &["zeppelin cargo manifest".into()], t(1))
        .await
        .unwrap();
    s.complete_document(k2, &["zeppelin flight plan".into()], t(1))
        .await
        .unwrap();

    let freed = s.delete_kb(doomed, t(0)).await.unwrap();
    assert_eq!(freed, vec![only_here]);
    assert!(matches!(s.get_kb(doomed).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.get_document(doomed, d1).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.get_document(doomed, d2).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_documents(doomed, page(10, 0)).await.unwrap().total, 0);
    assert!(s.list_grants(doomed).await.unwrap().is_empty());
    assert_eq!(s.strongest_grant(doomed, reader).await.unwrap(), None);
    assert_eq!(search_ids(&*s, q("zeppelin", Reader::Admin)).await, vec![k2]);
    assert_eq!(s.get_document(kept, k2).await.unwrap().content_hash, shared);

    // the last reference going frees the shared hash too
    assert_eq!(s.delete_kb(kept, t(0)).await.unwrap(), vec![shared]);
    assert!(matches!(s.delete_kb(kept, t(0)).await, Err(StoreError::NotFound)));
}

async fn set_manual_grants_replaces_previous_manual_grants(s: Arc<dyn Store>) {
    let owner = user(&*s, "g-owner@example.com", Role::User).await;
    let u1 = user(&*s, "g1@example.com", Role::User).await;
    let u2 = user(&*s, "g2@example.com", Role::User).await;
    let u3 = user(&*s, "g3@example.com", Role::User).await;
    let k = kb(&*s, owner, "granted").await;
    s.set_manual_grants(k, &[u1, u2], &[]).await.unwrap();
    assert_eq!(s.strongest_grant(k, u1).await.unwrap(), Some(Permission::Read));
    assert_eq!(s.strongest_grant(k, u2).await.unwrap(), Some(Permission::Read));
    s.set_manual_grants(k, &[u2], &[u3]).await.unwrap();
    assert_eq!(s.strongest_grant(k, u1).await.unwrap(), None);
    assert_eq!(s.strongest_grant(k, u2).await.unwrap(), Some(Permission::Read));
    assert_eq!(s.strongest_grant(k, u3).await.unwrap(), Some(Permission::Write));
    let mut grants = s.list_grants(k).await.unwrap();
    grants.sort_by_key(|g| g.user_id);
    let mut expected = vec![
        AccessGrant {
            kb_id: k,
            user_id: u2,
            permission: Permission::Read,
            origin: GrantOrigin::Manual,
        },
        AccessGrant {
            kb_id: k,
            user_id: u3,
            permission: Permission::Write,
            origin: GrantOrigin::Manual,
        },
    ];
    expected.sort_by_key(|g| g.user_id);
    assert_eq!(grants, expected);
    s.set_manual_grants(k, &[], &[]).await.unwrap();
    assert!(s.list_grants(k).await.unwrap().is_empty());
}

async fn set_manual_grants_write_wins_over_read(s: Arc<dyn Store>) {
    let owner = user(&*s, "w-owner@example.com", Role::User).await;
    let u = user(&*s, "w@example.com", Role::User).await;
    let k = kb(&*s, owner, "w").await;
    s.set_manual_grants(k, &[u, u], &[u]).await.unwrap();
    let grants = s.list_grants(k).await.unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].permission, Permission::Write);
    assert_eq!(s.strongest_grant(k, u).await.unwrap(), Some(Permission::Write));
}

async fn set_manual_grants_unknown_user_is_invalid_reference_and_changes_nothing(s: Arc<dyn Store>) {
    let owner = user(&*s, "i-owner@example.com", Role::User).await;
    let u = user(&*s, "i@example.com", Role::User).await;
    let k = kb(&*s, owner, "i").await;
    s.set_manual_grants(k, &[u], &[]).await.unwrap();
    let before = s.list_grants(k).await.unwrap();
    let err = s
        .set_manual_grants(k, &[], &[u, Uuid::new_v4()])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
    assert_eq!(s.list_grants(k).await.unwrap(), before);
    assert_eq!(s.strongest_grant(k, u).await.unwrap(), Some(Permission::Read));
}

async fn set_manual_grants_on_unknown_kb_is_not_found(s: Arc<dyn Store>) {
    let u = user(&*s, "nk@example.com", Role::User).await;
    let err = s.set_manual_grants(Uuid::new_v4(), &[u], &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}
