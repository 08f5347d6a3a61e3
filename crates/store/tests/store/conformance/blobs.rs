//! Blobs are never lost: orphan candidates, the delayed collector, and same-path uploads
//! (docs/storage.md).

use std::time::SystemTime;

use super::*;
use kbsync_store::{BlobStore, CollectedBlobs, collect_blobs};

kbsync_kit::on_both_databases!(
    a_deleted_documents_blob_is_collected_only_after_the_grace_period,
    a_blob_another_document_references_is_never_collected,
    a_blob_file_no_row_knows_is_collected_once_older_than_the_grace_period,
    an_upload_whose_blob_was_collected_before_its_row_committed_puts_it_back,
    concurrent_uploads_deletes_and_collections_of_identical_bytes_never_lose_a_documents_blob,
    a_same_path_upload_replaces_the_document_and_its_old_blob_becomes_a_candidate,
    deleting_a_kb_or_source_makes_its_hashes_candidates,
    concurrent_uploads_of_one_path_leave_one_document,
    a_synced_document_takes_its_blob_back_from_the_candidates_and_lets_go_of_the_old_one,
);

const GRACE: Duration = Duration::hours(1);

fn blob_store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::new(dir.path().join("blobs"));
    (dir, blobs)
}

fn exists(blobs: &BlobStore, hash: &str) -> bool {
    blobs.path(hash).unwrap().exists()
}

/// A local document (no source item) at `path` with the content hash `hash`.
fn upload(kb_id: KbId, path: &str, hash: &str) -> NewDocument {
    NewDocument {
        source_item_id: None,
        web_url: None,
        ..new_doc(kb_id, path, hash)
    }
}

/// Far enough after [`t`] that a blob file written by this test (real time) is older than the
/// grace period.
fn far_future() -> DateTime<Utc> {
    Utc.timestamp_opt(4_000_000_000, 0).unwrap()
}

async fn a_deleted_documents_blob_is_collected_only_after_the_grace_period(s: Arc<dyn Store>) {
    let (_dir, blobs) = blob_store();
    let owner = user(&*s, "gc1@example.com", Role::User).await;
    let k = kb(&*s, owner, "gc1").await;
    let blob = blobs.put_bytes(b"collected late").await.unwrap();
    let d = Uuid::new_v4();
    s.create_document(d, upload(k, "/a.txt", &blob.hash), t(0))
        .await
        .unwrap();

    assert_eq!(
        s.delete_document(k, d, t(10)).await.unwrap(),
        Some(blob.hash.clone())
    );
    assert!(exists(&blobs, &blob.hash), "deleting a document removes no file");
    assert!(s.is_orphan_candidate(&blob.hash).await.unwrap());

    let early = collect_blobs(&*s, &blobs, t(10) + GRACE - Duration::seconds(1), GRACE)
        .await
        .unwrap();
    assert_eq!(early, CollectedBlobs::default());
    assert!(exists(&blobs, &blob.hash));

    let due = collect_blobs(&*s, &blobs, t(10) + GRACE, GRACE).await.unwrap();
    assert_eq!(due.orphans, 1);
    assert!(!exists(&blobs, &blob.hash));
    assert!(!s.is_orphan_candidate(&blob.hash).await.unwrap());
    // A second collector finds nothing left to do.
    let again = collect_blobs(&*s, &blobs, t(10) + GRACE, GRACE).await.unwrap();
    assert_eq!(again, CollectedBlobs::default());
}

async fn a_blob_another_document_references_is_never_collected(s: Arc<dyn Store>) {
    let (_dir, blobs) = blob_store();
    let owner = user(&*s, "gc2@example.com", Role::User).await;
    let a = kb(&*s, owner, "gc2a").await;
    let b = kb(&*s, owner, "gc2b").await;
    let blob = blobs.put_bytes(b"shared bytes").await.unwrap();
    let d1 = Uuid::new_v4();
    let d2 = Uuid::new_v4();
    s.create_document(d1, upload(a, "/1.txt", &blob.hash), t(0))
        .await
        .unwrap();
    s.create_document(d2, upload(b, "/2.txt", &blob.hash), t(0))
        .await
        .unwrap();

    assert_eq!(s.delete_document(a, d1, t(0)).await.unwrap(), None);
    let collected = collect_blobs(&*s, &blobs, far_future(), GRACE).await.unwrap();
    assert_eq!(collected, CollectedBlobs::default());
    assert!(exists(&blobs, &blob.hash));
    assert!(
        !s.is_orphan_candidate(&blob.hash).await.unwrap(),
        "a candidate a document references is cleared"
    );
    assert_eq!(s.get_document(b, d2).await.unwrap().content_hash, blob.hash);
}

async fn a_blob_file_no_row_knows_is_collected_once_older_than_the_grace_period(s: Arc<dyn Store>) {
    let (_dir, blobs) = blob_store();
    let owner = user(&*s, "gc3@example.com", Role::User).await;
    let k = kb(&*s, owner, "gc3").await;
    // A crash between writing the file and committing its row leaves this.
    let leaked = blobs.put_bytes(b"written, never referenced").await.unwrap();
    let kept = blobs.put_bytes(b"referenced").await.unwrap();
    s.create_document(Uuid::new_v4(), upload(k, "/kept.txt", &kept.hash), t(0))
        .await
        .unwrap();
    let written = t(0);
    for hash in [&leaked.hash, &kept.hash] {
        std::fs::File::options()
            .write(true)
            .open(blobs.path(hash).unwrap())
            .unwrap()
            .set_modified(SystemTime::from(written))
            .unwrap();
    }
    // And an unfinished write in the temporary directory.
    let temp = blobs.root().join("tmp").join("unfinished");
    std::fs::create_dir_all(temp.parent().unwrap()).unwrap();
    std::fs::write(&temp, b"half").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&temp)
        .unwrap()
        .set_modified(SystemTime::from(written))
        .unwrap();

    let early = collect_blobs(&*s, &blobs, written + GRACE - Duration::seconds(1), GRACE)
        .await
        .unwrap();
    assert_eq!(early, CollectedBlobs::default());
    assert!(exists(&blobs, &leaked.hash));
    assert!(temp.exists());

    let due = collect_blobs(&*s, &blobs, written + GRACE, GRACE).await.unwrap();
    assert_eq!(
        due,
        CollectedBlobs {
            orphans: 0,
            unknown: 1,
            temporary: 1
        }
    );
    assert!(!exists(&blobs, &leaked.hash));
    assert!(!temp.exists());
    assert!(exists(&blobs, &kept.hash), "a referenced blob stays, however old");
}

async fn an_upload_whose_blob_was_collected_before_its_row_committed_puts_it_back(s: Arc<dyn Store>) {
    let (_dir, blobs) = blob_store();
    let owner = user(&*s, "gc4@example.com", Role::User).await;
    let k = kb(&*s, owner, "gc4").await;
    let bytes: &[u8] = b"uploaded twice";
    let first = blobs.put_bytes(bytes).await.unwrap();
    let old = Uuid::new_v4();
    s.create_document(old, upload(k, "/old.txt", &first.hash), t(0))
        .await
        .unwrap();
    s.delete_document(k, old, t(0)).await.unwrap();

    // The same bytes arrive; the collector removes the blob before the new row commits.
    let held = blobs
        .write_stream_held(
            futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(
                bytes,
            ))]),
            1024,
        )
        .await
        .unwrap();
    assert_eq!(held.blob().hash, first.hash);
    let collected = collect_blobs(&*s, &blobs, t(0) + GRACE, GRACE).await.unwrap();
    assert_eq!(collected.orphans, 1);
    assert!(!exists(&blobs, &first.hash));
    assert_eq!(
        std::fs::read(held.content_path()).unwrap(),
        bytes,
        "the held copy stays readable"
    );

    let new = Uuid::new_v4();
    s.create_document(new, upload(k, "/new.txt", &first.hash), t(5))
        .await
        .unwrap();
    held.settle().await.unwrap();
    assert_eq!(blobs.read(&first.hash).await.unwrap(), bytes);
    assert!(!s.is_orphan_candidate(&first.hash).await.unwrap());
    let collected = collect_blobs(&*s, &blobs, far_future(), GRACE).await.unwrap();
    assert_eq!(collected, CollectedBlobs::default());
    assert!(exists(&blobs, &first.hash));
    // Nothing is left in the temporary directory.
    assert_eq!(std::fs::read_dir(blobs.root().join("tmp")).unwrap().count(), 0);
}

async fn concurrent_uploads_deletes_and_collections_of_identical_bytes_never_lose_a_documents_blob(
    s: Arc<dyn Store>,
) {
    let (_dir, blobs) = blob_store();
    let owner = user(&*s, "gc5@example.com", Role::User).await;
    let k = kb(&*s, owner, "gc5").await;
    let bytes = bytes::Bytes::from_static(b"the same bytes, uploaded and deleted at once");
    // Every candidate is past the grace period at this time, so the collectors act on every
    // chance they get; a third one collects the file as if no row knew it and it were old.
    let now = t(0) + GRACE * 2;
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let mut previous = None;
    for round in 0..40 {
        let uploader = {
            let (s, blobs, bytes) = (s.clone(), blobs.clone(), bytes.clone());
            tokio::spawn(async move {
                let held = blobs
                    .write_stream_held(
                        futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]),
                        1024,
                    )
                    .await
                    .unwrap();
                let id = Uuid::new_v4();
                s.create_document(id, upload(k, &format!("/{round}.txt"), &held.blob().hash), t(0))
                    .await
                    .unwrap();
                let blob = held.settle().await.unwrap();
                (id, blob.hash)
            })
        };
        let deleter = previous.take().map(|(id, _): (Uuid, String)| {
            let s = s.clone();
            tokio::spawn(async move { s.delete_document(k, id, t(0)).await.unwrap() })
        });
        let mut collectors: Vec<_> = (0..2)
            .map(|_| {
                let (s, blobs) = (s.clone(), blobs.clone());
                tokio::spawn(async move {
                    collect_blobs(&*s, &blobs, now, GRACE).await.unwrap();
                })
            })
            .collect();
        collectors.push({
            let (s, blobs, hash) = (s.clone(), blobs.clone(), hash.clone());
            tokio::spawn(async move {
                s.collect_unknown_blob(&blobs, &hash, SystemTime::from(far_future()))
                    .await
                    .unwrap();
            })
        });
        let (id, uploaded) = uploader.await.unwrap();
        assert_eq!(uploaded, hash);
        if let Some(deleter) = deleter {
            deleter.await.unwrap();
        }
        for c in collectors {
            c.await.unwrap();
        }
        for doc in s.list_documents(k, page(100, 0)).await.unwrap().items {
            assert!(
                exists(&blobs, &doc.content_hash),
                "round {round}: document {} lost its blob",
                doc.id
            );
        }
        previous = Some((id, uploaded));
    }
    // With the last document deleted, the blob goes after the grace period.
    let (last, hash) = previous.unwrap();
    s.delete_document(k, last, t(0)).await.unwrap();
    assert!(exists(&blobs, &hash));
    collect_blobs(&*s, &blobs, now, GRACE).await.unwrap();
    assert_eq!(s.list_documents(k, page(100, 0)).await.unwrap().total, 0);
    assert!(!exists(&blobs, &hash));
    assert!(!s.is_orphan_candidate(&hash).await.unwrap());
}

async fn a_same_path_upload_replaces_the_document_and_its_old_blob_becomes_a_candidate(s: Arc<dyn Store>) {
    let owner = user(&*s, "gc6@example.com", Role::User).await;
    let k = kb(&*s, owner, "gc6").await;
    let first_id = Uuid::new_v4();
    let (first, replaced) = s
        .put_uploaded_document(first_id, upload(k, "/a.txt", &hash(601)), t(0))
        .await
        .unwrap();
    assert!(!replaced);
    assert_eq!(first.id, first_id);
    s.complete_document(first_id, &["walrus".into()], t(1))
        .await
        .unwrap();
    assert_eq!(search_ids(&*s, q("walrus", Reader::Admin)).await, vec![first_id]);

    let (second, replaced) = s
        .put_uploaded_document(Uuid::new_v4(), upload(k, "/a.txt", &hash(602)), t(2))
        .await
        .unwrap();
    assert!(replaced);
    assert_eq!(second.id, first_id, "the document keeps its id");
    assert_eq!(second.content_hash, hash(602));
    assert_eq!(second.status, DocumentStatus::Pending);
    assert!(search_ids(&*s, q("walrus", Reader::Admin)).await.is_empty());
    assert!(s.is_orphan_candidate(&hash(601)).await.unwrap());
    assert!(!s.is_orphan_candidate(&hash(602)).await.unwrap());
    let docs = s.list_documents(k, page(10, 0)).await.unwrap();
    assert_eq!(docs.total, 1);

    // The same content again: nothing becomes a candidate.
    let (third, replaced) = s
        .put_uploaded_document(Uuid::new_v4(), upload(k, "/a.txt", &hash(602)), t(3))
        .await
        .unwrap();
    assert!(replaced);
    assert_eq!(third.id, first_id);
    assert!(!s.is_orphan_candidate(&hash(602)).await.unwrap());

    // A document that came from a source is not replaced by an upload at its path.
    let synced = Uuid::new_v4();
    s.create_document(synced, new_doc(k, "/b.txt", &hash(603)), t(0))
        .await
        .unwrap();
    let (other, replaced) = s
        .put_uploaded_document(Uuid::new_v4(), upload(k, "/b.txt", &hash(604)), t(4))
        .await
        .unwrap();
    assert!(!replaced);
    assert_ne!(other.id, synced);
}

async fn deleting_a_kb_or_source_makes_its_hashes_candidates(s: Arc<dyn Store>) {
    let owner = user(&*s, "gc7@example.com", Role::User).await;
    let k = kb(&*s, owner, "gc7").await;
    doc_at(&*s, k, "/x", &hash(701), t(0)).await;
    assert!(!s.is_orphan_candidate(&hash(701)).await.unwrap());
    s.delete_kb(k, t(0)).await.unwrap();
    assert!(s.is_orphan_candidate(&hash(701)).await.unwrap());
}

async fn concurrent_uploads_of_one_path_leave_one_document(s: Arc<dyn Store>) {
    let owner = user(&*s, "gc8@example.com", Role::User).await;
    let k = kb(&*s, owner, "gc8").await;
    let uploads: Vec<_> = (0..8u32)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                s.put_uploaded_document(Uuid::new_v4(), upload(k, "/same.txt", &hash(800 + n)), t(0))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for u in uploads {
        ids.push(u.await.unwrap().0.id);
    }
    let docs = s.list_documents(k, page(20, 0)).await.unwrap();
    assert_eq!(docs.total, 1, "{:?}", docs.items);
    assert!(ids.iter().all(|id| *id == docs.items[0].id));
    // Every hash but the one kept became a candidate.
    let kept = &docs.items[0].content_hash;
    for n in 0..8u32 {
        assert_eq!(
            s.is_orphan_candidate(&hash(800 + n)).await.unwrap(),
            hash(800 + n) != *kept
        );
    }
}

async fn a_synced_document_takes_its_blob_back_from_the_candidates_and_lets_go_of_the_old_one(
    s: Arc<dyn Store>,
) {
    let (_dir, blobs) = blob_store();
    let (_, k) = kb_with_owner(&*s).await;
    let source = s
        .add_source(Uuid::new_v4(), new_source(k, "folder-gc"), t(0))
        .await
        .unwrap();
    let old = blobs.put_bytes(b"version one").await.unwrap();
    let new = blobs.put_bytes(b"version two").await.unwrap();
    // Another document had the new bytes and was deleted: its hash is a candidate.
    let other = Uuid::new_v4();
    s.create_document(other, upload(k, "/other.txt", &new.hash), t(0))
        .await
        .unwrap();
    s.delete_document(k, other, t(0)).await.unwrap();
    assert!(s.is_orphan_candidate(&new.hash).await.unwrap());

    let (doc, _) = s
        .upsert_source_document(Uuid::new_v4(), source.id, new_doc(k, "a/x.txt", &old.hash), t(1))
        .await
        .unwrap();
    let (again, replaced) = s
        .upsert_source_document(Uuid::new_v4(), source.id, new_doc(k, "a/x.txt", &new.hash), t(2))
        .await
        .unwrap();
    assert_eq!(again.id, doc.id);
    assert_eq!(replaced, Some(old.hash.clone()));
    assert!(
        !s.is_orphan_candidate(&new.hash).await.unwrap(),
        "the synced row took it back"
    );
    assert!(s.is_orphan_candidate(&old.hash).await.unwrap());

    let collected = collect_blobs(&*s, &blobs, t(2) + GRACE, GRACE).await.unwrap();
    assert_eq!(collected.orphans, 1);
    assert!(!exists(&blobs, &old.hash));
    assert!(exists(&blobs, &new.hash));
}
