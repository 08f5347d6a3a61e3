//! Downloads: binary files verified against md5Checksum and size, Docs exported to docx.

use kbsync_core::datasource::{Datasource, DatasourceError, RemoteItem};
use kbsync_gdrive::USER_DRIVE;

use crate::common::*;

async fn listed(env: &Env, id: &str) -> RemoteItem {
    env.ds.item(&env.tokens, USER_DRIVE, id).await.unwrap()
}

#[tokio::test]
async fn a_binary_file_streams_its_bytes_when_md5_and_size_match() {
    let env = env().await;
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    env.fake.blob("f", "big.pdf", MY_ROOT, &content);
    let item = listed(&env, "f").await;
    let (bytes, err) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;
    assert_eq!(err, None);
    assert_eq!(bytes, content);
    let media = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.query.contains_key("alt"))
        .unwrap();
    assert_eq!(
        (media.path.as_str(), media.query["alt"].as_str()),
        ("/files/f", "media")
    );
    assert_eq!(media.query["supportsAllDrives"], "true");
    env.shutdown();
}

#[tokio::test]
async fn bytes_that_do_not_hash_to_the_md5_end_the_stream_with_transient() {
    let env = env().await;
    env.fake.put(FakeFile {
        md5_override: Some(md5_hex(b"what the bytes were supposed to be")),
        ..file("f", "a.pdf", "application/pdf", MY_ROOT, b"corrupted in transit")
    });
    let item = listed(&env, "f").await;
    let (bytes, err) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;
    assert_eq!(bytes, b"corrupted in transit");
    assert!(
        matches!(err, Some(DatasourceError::Transient(ref m)) if m.contains("hash mismatch")),
        "{err:?}"
    );
    env.shutdown();
}

#[tokio::test]
async fn a_short_transfer_is_a_size_mismatch() {
    let env = env().await;
    env.fake.put(FakeFile {
        size_override: Some(100),
        ..file("f", "a.pdf", "application/pdf", MY_ROOT, b"only part of it")
    });
    let item = listed(&env, "f").await;
    assert_eq!(item.size, Some(100));
    let (_, err) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;
    assert!(
        matches!(err, Some(DatasourceError::Transient(ref m)) if m.contains("size mismatch")),
        "{err:?}"
    );
    env.shutdown();
}

#[tokio::test]
async fn a_google_doc_is_exported_to_docx() {
    let env = env().await;
    env.fake
        .put(file("d", "Plan", DOC, MY_ROOT, b"PK\x03\x04 docx bytes"));
    let item = listed(&env, "d").await;
    assert_eq!(item.mime.as_deref(), Some(DOCX));
    assert_eq!(item.name.as_deref(), Some("Plan.docx"));
    let (bytes, err) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;
    assert_eq!((bytes.as_slice(), err), (&b"PK\x03\x04 docx bytes"[..], None));
    let export = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/files/d/export")
        .unwrap();
    assert_eq!(export.query["mimeType"], DOCX);
    env.shutdown();
}

#[tokio::test]
async fn a_file_drive_will_not_hand_out_is_a_permanent_failure_naming_the_reason() {
    let env = env().await;
    env.fake.blob("f", "locked.pdf", MY_ROOT, b"bytes");
    env.fake.with(|s| s.not_downloadable.push("f".into()));
    let item = listed(&env, "f").await;
    let err = env.ds.download(&env.tokens, &item).await.err().unwrap();
    assert!(
        matches!(err, DatasourceError::Permanent(ref m) if m.contains("fileNotDownloadable")),
        "{err:?}"
    );
    // An export over Drive's limit is permanent too.
    env.fake.put(file("d", "Huge", DOC, MY_ROOT, b"x"));
    env.fake
        .fault(Fault::new("/files/d/export", 403, "exportSizeLimitExceeded", 1));
    let doc = listed(&env, "d").await;
    let err = env.ds.download(&env.tokens, &doc).await.err().unwrap();
    assert!(
        matches!(err, DatasourceError::Permanent(ref m) if m.contains("exportSizeLimitExceeded")),
        "{err:?}"
    );
    assert!(env.sleeper.waits().is_empty(), "nothing was retried");
    env.shutdown();
}

/// The requests made after the first `n` (those of the listing).
fn requests_after(env: &Env, n: usize) -> Vec<(String, Option<String>)> {
    env.fake
        .requests()
        .into_iter()
        .skip(n)
        .map(|r| (r.path, r.query.get("alt").cloned()))
        .collect()
}

#[tokio::test]
async fn a_listed_binary_file_downloads_with_its_one_alt_media_request() {
    let env = env().await;
    env.fake.blob("f", "a.pdf", MY_ROOT, b"the bytes");
    let item = listed(&env, "f").await;
    let listing = env.fake.requests().len();
    let (bytes, err) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;
    assert_eq!((bytes.as_slice(), err), (&b"the bytes"[..], None));
    assert_eq!(
        requests_after(&env, listing),
        vec![("/files/f".to_string(), Some("media".to_string()))],
        "no metadata read before the download"
    );
    env.shutdown();
}

#[tokio::test]
async fn a_listed_google_doc_exports_with_its_one_export_request() {
    let env = env().await;
    env.fake.put(file("d", "Plan", DOC, MY_ROOT, b"PK docx"));
    let item = listed(&env, "d").await;
    let listing = env.fake.requests().len();
    let (bytes, err) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;
    assert_eq!((bytes.as_slice(), err), (&b"PK docx"[..], None));
    assert_eq!(
        requests_after(&env, listing),
        vec![("/files/d/export".to_string(), None)]
    );
    env.shutdown();
}

#[tokio::test]
async fn a_shortcut_refused_as_content_is_read_again_and_its_target_downloaded() {
    let env = env().await;
    env.fake.blob("x", "x.pdf", MY_ROOT, b"xray");
    env.fake.put(FakeFile {
        target: Some(("x".into(), "application/pdf".into())),
        ..file("s", "x link", SHORTCUT, MY_ROOT, b"")
    });
    let item = listed(&env, "s").await;
    assert_eq!(item.id, "s");
    let listing = env.fake.requests().len();
    let (bytes, err) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;
    assert_eq!((bytes.as_slice(), err), (&b"xray"[..], None));
    assert_eq!(
        requests_after(&env, listing),
        vec![
            ("/files/s".to_string(), Some("media".to_string())),
            ("/files/s".to_string(), None),
            ("/files/x".to_string(), None),
            ("/files/x".to_string(), Some("media".to_string())),
        ],
        "the refused download, the shortcut's and its target's metadata, the target's bytes"
    );
    env.shutdown();
}
