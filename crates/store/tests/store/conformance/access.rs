//! Document-level access: access lists decide who reads a synced document (in search, listings
//! and lookups) beside ownership and manual grants; groups match through their expanded members;
//! and the lists are withdrawn when what they came from lapses.

use super::*;
use kbsync_store::DocumentAcl;

kbsync_kit::on_both_databases!(
    access_lists_decide_who_reads_each_document_in_search_listings_and_lookups,
    group_members_match_their_groups_and_are_replaced_on_refresh,
    deleting_the_connection_or_a_lapsed_reauth_withdraws_access_lists_and_keeps_manual_grants,
    a_revoked_source_hides_its_documents_from_their_access_lists_until_cleared,
);

fn acl(item: &str, principals: &[&str]) -> DocumentAcl {
    DocumentAcl {
        source_item_id: item.into(),
        principals: principals.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// A processed document of `source` mirroring item `item`, whose text is `text`.
async fn synced(s: &dyn Store, kb_id: KbId, source: Uuid, item: &str, text: &str) -> Uuid {
    let mut new = new_doc(kb_id, &format!("/{item}.txt"), &hash(rand_u32()));
    new.source_item_id = Some(item.into());
    let (doc, _) = s
        .upsert_source_document(Uuid::new_v4(), source, new, t(0))
        .await
        .unwrap();
    s.complete_document(doc.id, &[text.into()], t(1)).await.unwrap();
    doc.id
}

async fn listed(s: &dyn Store, kb_id: KbId, reader: UserId) -> (Vec<Uuid>, u64) {
    let found = s
        .list_readable_documents(kb_id, reader, page(50, 0))
        .await
        .unwrap();
    (sorted(found.items.iter().map(|d| d.id).collect()), found.total)
}

async fn access_lists_decide_who_reads_each_document_in_search_listings_and_lookups(s: Arc<dyn Store>) {
    let owner = user(&*s, "al-owner@example.com", Role::User).await;
    let alice = user(&*s, "Alice@Example.com", Role::User).await;
    let bob = user(&*s, "al-bob@example.com", Role::User).await;
    let manual = user(&*s, "al-manual@example.com", Role::User).await;
    let stranger = user(&*s, "al-stranger@example.com", Role::User).await;
    let k = kb(&*s, owner, "documents").await;
    let folder = s
        .add_source(Uuid::new_v4(), new_source(k, "root"), t(0))
        .await
        .unwrap()
        .id;
    let a = synced(&*s, k, folder, "a", "quarterly budget for alice").await;
    let b = synced(&*s, k, folder, "b", "quarterly budget for bob").await;
    let open = synced(&*s, k, folder, "open", "quarterly budget for everyone").await;
    let unread = synced(&*s, k, folder, "unread", "quarterly budget not read yet").await;
    s.add_user_principal(bob, "user:entra-bob").await.unwrap();
    s.set_document_acls(
        k,
        &[
            acl("a", &["email:alice@example.com", "user:someone-else"]),
            acl("b", &["user:entra-bob"]),
            acl("open", &[kbsync_store::EVERYONE]),
            acl("not-a-document", &["email:alice@example.com"]),
        ],
        t(2),
    )
    .await
    .unwrap();
    s.set_manual_grants(k, &[manual], &[]).await.unwrap();

    let found = |reader| {
        let s = s.clone();
        async move { sorted(search_ids(&*s, q("quarterly budget", reader)).await) }
    };
    let all = sorted(vec![a, b, open, unread]);
    assert_eq!(found(Reader::User(owner)).await, all);
    assert_eq!(found(Reader::User(manual)).await, all);
    assert_eq!(found(Reader::Admin).await, all);
    assert_eq!(found(Reader::User(alice)).await, sorted(vec![a, open]));
    assert_eq!(found(Reader::User(bob)).await, sorted(vec![b, open]));
    assert_eq!(found(Reader::User(stranger)).await, vec![open]);

    assert_eq!(listed(&*s, k, alice).await, (sorted(vec![a, open]), 2));
    assert_eq!(listed(&*s, k, bob).await, (sorted(vec![b, open]), 2));
    assert!(s.may_read_document(k, a, alice).await.unwrap());
    assert!(!s.may_read_document(k, b, alice).await.unwrap());
    assert!(!s.may_read_document(k, unread, alice).await.unwrap());
    assert!(s.reads_documents_of(k, stranger).await.unwrap());
    let kbs = s
        .list_readable_kbs(Reader::User(alice), page(10, 0))
        .await
        .unwrap();
    assert_eq!(kbs.items.iter().map(|kb| kb.id).collect::<Vec<_>>(), vec![k]);
    assert_eq!(kbs.total, 1);

    // A new list replaces the old one, chunks included (search follows at once).
    s.set_document_acls(k, &[acl("open", &["email:alice@example.com"])], t(3))
        .await
        .unwrap();
    assert_eq!(found(Reader::User(stranger)).await, Vec::<Uuid>::new());
    assert!(!s.reads_documents_of(k, stranger).await.unwrap());
    assert_eq!(
        s.list_readable_kbs(Reader::User(stranger), page(10, 0))
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(found(Reader::User(alice)).await, sorted(vec![a, open]));
    // Re-indexed content keeps its document's list.
    s.complete_document(a, &["quarterly budget rewritten".into()], t(4))
        .await
        .unwrap();
    assert_eq!(found(Reader::User(alice)).await, sorted(vec![a, open]));
    assert_eq!(found(Reader::User(bob)).await, vec![b]);
    assert_eq!(found(Reader::User(manual)).await, all);
}

async fn group_members_match_their_groups_and_are_replaced_on_refresh(s: Arc<dyn Store>) {
    let owner = user(&*s, "gm-owner@example.com", Role::User).await;
    let bob = user(&*s, "gm-bob@example.com", Role::User).await;
    let dave = user(&*s, "gm-dave@example.com", Role::User).await;
    let k = kb(&*s, owner, "groups").await;
    let folder = s
        .add_source(Uuid::new_v4(), new_source(k, "root"), t(0))
        .await
        .unwrap()
        .id;
    let team = synced(&*s, k, folder, "team", "roadmap of the team").await;
    let site = synced(&*s, k, folder, "site", "roadmap of the site").await;
    s.set_document_acls(
        k,
        &[
            acl("team", &["group:g-team"]),
            acl("site", &["sitegroup:5@b!drive"]),
        ],
        t(1),
    )
    .await
    .unwrap();
    let groups = s.named_groups(k).await.unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| (g.key.as_str(), g.refreshed_at))
            .collect::<Vec<_>>(),
        [("group:g-team", None), ("sitegroup:5@b!drive", None)]
    );
    assert!(search_ids(&*s, q("roadmap", Reader::User(bob))).await.is_empty());

    s.add_user_principal(bob, "user:entra-bob").await.unwrap();
    s.replace_group_members("group:g-team", &["user:entra-bob".into()], t(2))
        .await
        .unwrap();
    s.replace_group_members("sitegroup:5@b!drive", &["email:gm-dave@example.com".into()], t(2))
        .await
        .unwrap();
    assert_eq!(search_ids(&*s, q("roadmap", Reader::User(bob))).await, vec![team]);
    assert_eq!(
        search_ids(&*s, q("roadmap", Reader::User(dave))).await,
        vec![site]
    );
    assert_eq!(
        s.user_principals(bob).await.unwrap(),
        [
            "email:gm-bob@example.com",
            "everyone",
            "group:g-team",
            "user:entra-bob"
        ]
    );
    assert!(
        s.named_groups(k)
            .await
            .unwrap()
            .iter()
            .all(|g| g.refreshed_at == Some(t(2)))
    );

    // Bob leaves the group: the next refresh takes his access with it.
    s.replace_group_members("group:g-team", &[], t(3)).await.unwrap();
    assert!(search_ids(&*s, q("roadmap", Reader::User(bob))).await.is_empty());
    assert_eq!(
        search_ids(&*s, q("roadmap", Reader::User(dave))).await,
        vec![site]
    );
}

async fn deleting_the_connection_or_a_lapsed_reauth_withdraws_access_lists_and_keeps_manual_grants(
    s: Arc<dyn Store>,
) {
    let owner = user(&*s, "wd-owner@example.com", Role::User).await;
    let reader = user(&*s, "wd-reader@example.com", Role::User).await;
    let manual = user(&*s, "wd-manual@example.com", Role::User).await;
    let mut docs = Vec::new();
    let mut kbs = Vec::new();
    for name in ["disconnected", "lapsing", "healthy"] {
        let k = kb(&*s, owner, name).await;
        let folder = s
            .add_source(Uuid::new_v4(), new_source(k, "f"), t(0))
            .await
            .unwrap()
            .id;
        s.upsert_connection(new_connection(k, "r"), t(0)).await.unwrap();
        docs.push(synced(&*s, k, folder, "doc", "the shared plan").await);
        s.set_document_acls(k, &[acl("doc", &["email:wd-reader@example.com"])], t(1))
            .await
            .unwrap();
        s.mark_sharing_read(k, t(1)).await.unwrap();
        s.set_manual_grants(k, &[manual], &[]).await.unwrap();
        kbs.push(k);
    }
    let (disconnected, lapsing, healthy) = (kbs[0], kbs[1], kbs[2]);
    assert_eq!(
        sorted(search_ids(&*s, q("plan", Reader::User(reader))).await),
        sorted(docs.clone())
    );

    s.delete_connection(disconnected).await.unwrap();
    assert!(!s.reads_documents_of(disconnected, reader).await.unwrap());
    assert_eq!(s.sharing_read_at(disconnected).await.unwrap(), None);

    assert!(
        s.try_acquire_refresh_lease(lapsing, "a", t(100), t(160))
            .await
            .unwrap()
    );
    assert!(s.mark_needs_reauth(lapsing, "a", t(100)).await.unwrap());
    assert!(s.withdraw_lapsed_document_access(t(99)).await.unwrap().is_empty());
    assert!(s.reads_documents_of(lapsing, reader).await.unwrap());
    assert_eq!(
        s.withdraw_lapsed_document_access(t(100)).await.unwrap(),
        vec![lapsing]
    );
    assert!(!s.reads_documents_of(lapsing, reader).await.unwrap());
    assert_eq!(s.sharing_read_at(lapsing).await.unwrap(), None);
    assert!(
        s.withdraw_lapsed_document_access(t(300))
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        search_ids(&*s, q("plan", Reader::User(reader))).await,
        vec![docs[2]]
    );
    assert_eq!(s.sharing_read_at(healthy).await.unwrap(), Some(t(1)));
    assert_eq!(
        sorted(search_ids(&*s, q("plan", Reader::User(manual))).await),
        sorted(docs)
    );
    assert_eq!(
        s.strongest_grant(lapsing, manual).await.unwrap(),
        Some(Permission::Read)
    );
}

async fn a_revoked_source_hides_its_documents_from_their_access_lists_until_cleared(s: Arc<dyn Store>) {
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
    let lost_doc = synced(&*s, k, lost.id, "lost-doc", "the rollout plan").await;
    let kept_doc = synced(&*s, k, kept.id, "kept-doc", "the rollout plan").await;
    let local = indexed(&*s, k, "/local/plan.txt", &["the rollout plan"]).await;
    let everyone_reads = [
        acl("lost-doc", &["email:rv-reader@example.com"]),
        acl("kept-doc", &["email:rv-reader@example.com"]),
    ];
    s.set_document_acls(k, &everyone_reads, t(1)).await.unwrap();
    let all = sorted(vec![lost_doc, kept_doc, local]);
    assert_eq!(sorted(search_ids(&*s, q("rollout", Reader::Admin)).await), all);

    s.mark_source_revoked(lost.id, t(10)).await.unwrap();
    s.mark_source_revoked(lost.id, t(20)).await.unwrap();
    // Hidden from every reader, but kept; the first mark's time stays.
    assert_eq!(
        sorted(search_ids(&*s, q("rollout", Reader::Admin)).await),
        sorted(vec![kept_doc, local])
    );
    assert_eq!(
        search_ids(&*s, q("rollout", Reader::User(reader))).await,
        vec![kept_doc]
    );
    assert!(!s.may_read_document(k, lost_doc, reader).await.unwrap());
    assert_eq!(s.source_documents(lost.id).await.unwrap().len(), 1);
    let revoked: Vec<_> = s
        .list_sources(k)
        .await
        .unwrap()
        .iter()
        .map(|x| (x.id, x.revoked_at))
        .collect();
    assert!(revoked.contains(&(lost.id, Some(t(10)))), "{revoked:?}");
    assert!(revoked.contains(&(kept.id, None)), "{revoked:?}");

    // Readable again: back in search; its list is written again by the next run.
    s.clear_source_revoked(lost.id).await.unwrap();
    assert_eq!(sorted(search_ids(&*s, q("rollout", Reader::Admin)).await), all);
    s.set_document_acls(k, &everyone_reads, t(30)).await.unwrap();
    assert_eq!(
        sorted(search_ids(&*s, q("rollout", Reader::User(reader))).await),
        sorted(vec![lost_doc, kept_doc])
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
