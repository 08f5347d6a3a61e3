//! Strikes against a document's content and its quarantine (docs/reliability.md, "Quarantine").

use kbsync_store::QUARANTINE_STRIKES;

use super::*;

kbsync_kit::on_both_databases!(
    first_strike_fails_the_document_and_the_second_on_the_same_content_quarantines_it,
    a_strike_against_other_content_starts_counting_again,
    a_changed_synced_file_brought_in_again_is_no_longer_quarantined,
    completing_a_document_clears_its_strikes,
    an_upload_of_the_same_bytes_stays_quarantined_and_other_bytes_clear_it,
    strike_on_an_unknown_document_is_not_found,
);

const TIMEOUT: &str = "text extraction took longer than the limit of 60 s";

async fn synced_doc(s: &dyn Store, k: KbId, item: &str, content: &str) -> (Uuid, Uuid) {
    let source = s
        .add_source(Uuid::new_v4(), new_source(k, &format!("folder-{item}")), t(0))
        .await
        .unwrap();
    let (doc, _) = s
        .upsert_source_document(Uuid::new_v4(), source.id, new_doc(k, item, content), t(0))
        .await
        .unwrap();
    (source.id, doc.id)
}

async fn first_strike_fails_the_document_and_the_second_on_the_same_content_quarantines_it(
    s: Arc<dyn Store>,
) {
    assert_eq!(QUARANTINE_STRIKES, 2);
    let owner = user(&*s, "strike@example.com", Role::User).await;
    let k = kb(&*s, owner, "strikes").await;
    let other = kb(&*s, owner, "other").await;
    let (_, d) = synced_doc(&*s, k, "/bomb.pdf", &hash(1)).await;
    s.complete_document(d, &["old text walrus".into()], t(1))
        .await
        .unwrap();

    let first = s.strike_document(d, "ctag-1", TIMEOUT, t(2)).await.unwrap();
    assert_eq!(first, DocumentStatus::Failed);
    let doc = s.get_document(k, d).await.unwrap();
    assert_eq!(doc.status, DocumentStatus::Failed);
    assert_eq!(doc.error.as_deref(), Some(TIMEOUT));
    assert!(search_ids(&*s, q("walrus", Reader::Admin)).await.is_empty());
    assert!(s.quarantined_documents(k).await.unwrap().is_empty());

    let second = s.strike_document(d, "ctag-1", TIMEOUT, t(3)).await.unwrap();
    assert_eq!(second, DocumentStatus::Quarantined);
    let doc = s.get_document(k, d).await.unwrap();
    assert_eq!(doc.status, DocumentStatus::Quarantined);
    let reason = doc.error.clone().unwrap();
    assert!(reason.starts_with("quarantined: "), "{reason}");
    assert!(reason.contains(TIMEOUT), "{reason}");
    assert!(reason.contains("retried when the file changes"), "{reason}");
    let listed = s.list_documents(k, page(10, 0)).await.unwrap().items;
    assert_eq!(listed[0].status, DocumentStatus::Quarantined);
    let quarantined = s.quarantined_documents(k).await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].document, doc);
    assert_eq!(quarantined[0].content, "ctag-1");
    assert!(s.quarantined_documents(other).await.unwrap().is_empty());
    // Quarantined is not pending: nothing resumes it.
    assert!(s.pending_documents(100).await.unwrap().iter().all(|p| p.id != d));
}

async fn a_strike_against_other_content_starts_counting_again(s: Arc<dyn Store>) {
    let owner = user(&*s, "recount@example.com", Role::User).await;
    let k = kb(&*s, owner, "recount").await;
    let (_, d) = synced_doc(&*s, k, "/flaky.pdf", &hash(1)).await;
    assert_eq!(
        s.strike_document(d, "ctag-1", TIMEOUT, t(1)).await.unwrap(),
        DocumentStatus::Failed
    );
    assert_eq!(
        s.strike_document(d, "ctag-2", "the text extractor crashed on this file", t(2))
            .await
            .unwrap(),
        DocumentStatus::Failed
    );
    assert!(s.quarantined_documents(k).await.unwrap().is_empty());
    assert_eq!(
        s.strike_document(d, "ctag-2", TIMEOUT, t(3)).await.unwrap(),
        DocumentStatus::Quarantined
    );
    assert_eq!(s.quarantined_documents(k).await.unwrap()[0].content, "ctag-2");
}

async fn a_changed_synced_file_brought_in_again_is_no_longer_quarantined(s: Arc<dyn Store>) {
    let owner = user(&*s, "changed@example.com", Role::User).await;
    let k = kb(&*s, owner, "changed").await;
    let (source, d) = synced_doc(&*s, k, "/bomb.pdf", &hash(1)).await;
    s.strike_document(d, "ctag-1", TIMEOUT, t(1)).await.unwrap();
    s.strike_document(d, "ctag-1", TIMEOUT, t(2)).await.unwrap();
    assert_eq!(s.quarantined_documents(k).await.unwrap().len(), 1);

    let (again, _) = s
        .upsert_source_document(Uuid::new_v4(), source, new_doc(k, "/bomb.pdf", &hash(2)), t(3))
        .await
        .unwrap();
    assert_eq!(again.id, d);
    assert_eq!(again.status, DocumentStatus::Pending);
    assert_eq!(again.error, None);
    assert!(s.quarantined_documents(k).await.unwrap().is_empty());
    s.complete_document(d, &["fixed text narwhal".into()], t(4))
        .await
        .unwrap();
    assert_eq!(search_ids(&*s, q("narwhal", Reader::Admin)).await, vec![d]);
    // An ordinary failure is no quarantine either.
    s.strike_document(d, "ctag-3", TIMEOUT, t(5)).await.unwrap();
    s.strike_document(d, "ctag-3", TIMEOUT, t(6)).await.unwrap();
    s.fail_document(d, "download failed: connection reset", t(7))
        .await
        .unwrap();
    assert_eq!(s.get_document(k, d).await.unwrap().status, DocumentStatus::Failed);
    assert!(s.quarantined_documents(k).await.unwrap().is_empty());
}

async fn completing_a_document_clears_its_strikes(s: Arc<dyn Store>) {
    let owner = user(&*s, "clear@example.com", Role::User).await;
    let k = kb(&*s, owner, "clear").await;
    let (_, d) = synced_doc(&*s, k, "/slow.pdf", &hash(1)).await;
    s.strike_document(d, "ctag-1", TIMEOUT, t(1)).await.unwrap();
    // A passing timeout: the next attempt at the same content succeeds.
    s.complete_document(d, &["text".into()], t(2)).await.unwrap();
    assert_eq!(
        s.strike_document(d, "ctag-1", TIMEOUT, t(3)).await.unwrap(),
        DocumentStatus::Failed,
        "a success in between starts the count again"
    );
}

async fn an_upload_of_the_same_bytes_stays_quarantined_and_other_bytes_clear_it(s: Arc<dyn Store>) {
    let owner = user(&*s, "upload@example.com", Role::User).await;
    let k = kb(&*s, owner, "uploads").await;
    let upload = |content: &str| NewDocument {
        source_item_id: None,
        web_url: None,
        ..new_doc(k, "/bomb.xml", content)
    };
    let (doc, _) = s
        .put_uploaded_document(Uuid::new_v4(), upload(&hash(1)), t(0))
        .await
        .unwrap();
    s.strike_document(doc.id, &hash(1), TIMEOUT, t(1)).await.unwrap();
    // Uploaded again, same bytes: tried again, and the second strike quarantines it.
    let (again, replaced) = s
        .put_uploaded_document(Uuid::new_v4(), upload(&hash(1)), t(2))
        .await
        .unwrap();
    assert!(replaced);
    assert_eq!(again.status, DocumentStatus::Pending);
    assert_eq!(
        s.strike_document(doc.id, &hash(1), TIMEOUT, t(3)).await.unwrap(),
        DocumentStatus::Quarantined
    );
    let (third, _) = s
        .put_uploaded_document(Uuid::new_v4(), upload(&hash(1)), t(4))
        .await
        .unwrap();
    assert_eq!(third.id, doc.id);
    assert_eq!(third.status, DocumentStatus::Quarantined);
    assert!(third.error.unwrap().starts_with("quarantined: "));
    assert!(
        s.pending_documents(100)
            .await
            .unwrap()
            .iter()
            .all(|p| p.id != doc.id)
    );

    let (fixed, _) = s
        .put_uploaded_document(Uuid::new_v4(), upload(&hash(2)), t(5))
        .await
        .unwrap();
    assert_eq!(fixed.status, DocumentStatus::Pending);
    assert_eq!(fixed.error, None);
    assert!(s.quarantined_documents(k).await.unwrap().is_empty());
}

async fn strike_on_an_unknown_document_is_not_found(s: Arc<dyn Store>) {
    let err = s
        .strike_document(Uuid::new_v4(), "c", TIMEOUT, t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}
