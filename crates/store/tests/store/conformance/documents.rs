//! Documents and their chunks.

use super::*;

kbsync_kit::on_both_databases!(
    create_document_starts_pending_and_round_trips,
    create_document_in_unknown_kb_is_invalid_reference,
    get_document_in_another_kb_is_not_found,
    list_documents_orders_by_path_and_pages_with_total,
    complete_document_marks_processed_and_replaces_chunks,
    fail_document_records_error_and_removes_chunks_from_search,
    complete_or_fail_unknown_document_is_not_found,
    delete_document_returns_hash_only_when_last_reference_goes,
    pending_documents_are_oldest_first_and_limited,
);

async fn create_document_starts_pending_and_round_trips(s: Arc<dyn Store>) {
    let owner = user(&*s, "doc@example.com", Role::User).await;
    let k = kb(&*s, owner, "docs").await;
    let id = Uuid::new_v4();
    let created = s
        .create_document(id, new_doc(k, "/reports/q1.pdf", &hash(9)), t(3))
        .await
        .unwrap();
    assert_eq!(created.status, DocumentStatus::Pending);
    assert_eq!(created.name, "q1.pdf");
    assert_eq!(created.error, None);
    assert_eq!(created.source_item_id.as_deref(), Some("item-/reports/q1.pdf"));
    assert_eq!((created.created_at, created.updated_at), (t(3), t(3)));
    assert_eq!(s.get_document(k, id).await.unwrap(), created);

    let mut upload = new_doc(k, "/upload.txt", &hash(10));
    upload.source_item_id = None;
    upload.web_url = None;
    let up_id = Uuid::new_v4();
    let up = s.create_document(up_id, upload, t(4)).await.unwrap();
    assert_eq!(s.get_document(k, up_id).await.unwrap(), up);
    assert_eq!((up.source_item_id, up.web_url), (None, None));

    let dup = s
        .create_document(id, new_doc(k, "/again", &hash(9)), t(5))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
}

async fn create_document_in_unknown_kb_is_invalid_reference(s: Arc<dyn Store>) {
    let err = s
        .create_document(Uuid::new_v4(), new_doc(Uuid::new_v4(), "/x", &hash(1)), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_)), "{err:?}");
}

async fn get_document_in_another_kb_is_not_found(s: Arc<dyn Store>) {
    let owner = user(&*s, "other@example.com", Role::User).await;
    let a = kb(&*s, owner, "a").await;
    let b = kb(&*s, owner, "b").await;
    let d = doc_at(&*s, a, "/x", &hash(1), t(0)).await;
    assert!(matches!(s.get_document(b, d).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.delete_document(b, d, t(0)).await,
        Err(StoreError::NotFound)
    ));
    assert!(s.get_document(a, d).await.is_ok());
}

async fn list_documents_orders_by_path_and_pages_with_total(s: Arc<dyn Store>) {
    let owner = user(&*s, "list@example.com", Role::User).await;
    let k = kb(&*s, owner, "list").await;
    let other = kb(&*s, owner, "other").await;
    for p in ["/c.txt", "/a.txt", "/b/z.txt", "/b/a.txt"] {
        doc_at(&*s, k, p, &hash(1), t(0)).await;
    }
    doc_at(&*s, other, "/a.txt", &hash(1), t(0)).await;
    let first = s.list_documents(k, page(3, 0)).await.unwrap();
    let rest = s.list_documents(k, page(3, 3)).await.unwrap();
    let paths: Vec<_> = first
        .items
        .iter()
        .chain(rest.items.iter())
        .map(|d| d.path.clone())
        .collect();
    assert_eq!(paths, ["/a.txt", "/b/a.txt", "/b/z.txt", "/c.txt"]);
    assert_eq!((first.items.len(), first.total, rest.total), (3, 4, 4));
}

async fn complete_document_marks_processed_and_replaces_chunks(s: Arc<dyn Store>) {
    let owner = user(&*s, "cmp@example.com", Role::User).await;
    let k = kb(&*s, owner, "cmp").await;
    let d = doc_at(&*s, k, "/doc.txt", &hash(1), t(0)).await;
    s.fail_document(d, "extractor crashed", t(1)).await.unwrap();
    s.complete_document(
        d,
        &["first version walrus".into(), "more walrus text".into()],
        t(2),
    )
    .await
    .unwrap();
    let doc = s.get_document(k, d).await.unwrap();
    assert_eq!(doc.status, DocumentStatus::Processed);
    assert_eq!(doc.error, None);
    assert_eq!(doc.updated_at, t(2));
    assert_eq!(search_ids(&*s, q("walrus", Reader::Admin)).await, vec![d]);

    s.complete_document(d, &["second version narwhal".into()], t(3))
        .await
        .unwrap();
    assert!(search_ids(&*s, q("walrus", Reader::Admin)).await.is_empty());
    assert_eq!(search_ids(&*s, q("narwhal", Reader::Admin)).await, vec![d]);

    // no chunks at all: processed, nothing searchable
    s.complete_document(d, &[], t(4)).await.unwrap();
    assert!(search_ids(&*s, q("narwhal", Reader::Admin)).await.is_empty());
    assert_eq!(
        s.get_document(k, d).await.unwrap().status,
        DocumentStatus::Processed
    );
}

async fn fail_document_records_error_and_removes_chunks_from_search(s: Arc<dyn Store>) {
    let owner = user(&*s, "fail@example.com", Role::User).await;
    let k = kb(&*s, owner, "fail").await;
    let d = indexed(&*s, k, "/f.txt", &["platypus facts"]).await;
    assert_eq!(search_ids(&*s, q("platypus", Reader::Admin)).await, vec![d]);
    s.fail_document(d, "password protected", t(9)).await.unwrap();
    let doc = s.get_document(k, d).await.unwrap();
    assert_eq!(doc.status, DocumentStatus::Failed);
    assert_eq!(doc.error.as_deref(), Some("password protected"));
    assert_eq!(doc.updated_at, t(9));
    assert!(search_ids(&*s, q("platypus", Reader::Admin)).await.is_empty());
}

async fn complete_or_fail_unknown_document_is_not_found(s: Arc<dyn Store>) {
    let err = s
        .complete_document(Uuid::new_v4(), &["x".into()], t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = s.fail_document(Uuid::new_v4(), "x", t(0)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = s
        .delete_document(Uuid::new_v4(), Uuid::new_v4(), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn delete_document_returns_hash_only_when_last_reference_goes(s: Arc<dyn Store>) {
    let owner = user(&*s, "dd@example.com", Role::User).await;
    let a = kb(&*s, owner, "a").await;
    let b = kb(&*s, owner, "b").await;
    let h = hash(77);
    let d1 = doc_at(&*s, a, "/1", &h, t(0)).await;
    let d2 = doc_at(&*s, b, "/2", &h, t(0)).await;
    s.complete_document(d1, &["quokka".into()], t(1)).await.unwrap();
    assert_eq!(s.delete_document(a, d1, t(0)).await.unwrap(), None);
    assert!(matches!(s.get_document(a, d1).await, Err(StoreError::NotFound)));
    assert!(search_ids(&*s, q("quokka", Reader::Admin)).await.is_empty());
    assert_eq!(s.delete_document(b, d2, t(0)).await.unwrap(), Some(h));
    assert!(matches!(
        s.delete_document(b, d2, t(0)).await,
        Err(StoreError::NotFound)
    ));
}

async fn pending_documents_are_oldest_first_and_limited(s: Arc<dyn Store>) {
    let owner = user(&*s, "pend@example.com", Role::User).await;
    let k = kb(&*s, owner, "pend").await;
    let newest = doc_at(&*s, k, "/n", &hash(1), t(30)).await;
    let oldest = doc_at(&*s, k, "/o", &hash(2), t(10)).await;
    let middle = doc_at(&*s, k, "/m", &hash(3), t(20)).await;
    let done = doc_at(&*s, k, "/d", &hash(4), t(5)).await;
    let failed = doc_at(&*s, k, "/f", &hash(5), t(6)).await;
    s.complete_document(done, &["x".into()], t(40)).await.unwrap();
    s.fail_document(failed, "nope", t(40)).await.unwrap();
    let ids = |v: Vec<kbsync_core::Document>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.pending_documents(10).await.unwrap()),
        vec![oldest, middle, newest]
    );
    assert_eq!(ids(s.pending_documents(2).await.unwrap()), vec![oldest, middle]);
    assert!(s.pending_documents(0).await.unwrap().is_empty());
}
