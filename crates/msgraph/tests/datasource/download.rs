use kbsync_core::datasource::{Datasource, DatasourceError, RemoteItem};
use msgraph_emulator::{FaultAction, FaultRule, RetryAfter};

use crate::common::*;

const DOWNLOAD_ROUTE: &str = "/_download/**";

async fn file(env: &Env, path: &str, bytes: Vec<u8>) -> RemoteItem {
    let info = env.ctl.put_file(&env.drive, path, bytes).unwrap();
    env.ds.item(&env.tokens, &env.drive, &info.id).await.unwrap()
}

#[tokio::test]
async fn download_follows_the_redirect_without_sending_authorization_to_the_download_host() {
    let env = env().await;
    let content = noise(300_000, 4);
    let item = file(&env, "/big/report.bin", content.clone()).await;
    env.ctl.clear_request_log();

    let stream = env.ds.download(&env.tokens, &item).await.unwrap();
    let (bytes, err, _) = drain(stream).await;

    assert_eq!(err, None);
    assert_eq!(bytes, content, "downloaded bytes match");
    assert!(env.ctl.authorization_leaks().is_empty());
    let log = env.ctl.request_log();
    assert_eq!(log.entries.len(), 2, "{:#?}", log.entries);
    let (content_req, download_req) = (&log.entries[0], &log.entries[1]);
    assert_eq!(content_req.route, "GET /v1.0/drives/{id}/items/{id}/content");
    assert_eq!(content_req.status, 302);
    assert!(content_req.had_authorization);
    assert!(download_req.path.starts_with("/_download/"));
    assert_eq!(download_req.status, 200);
    assert!(
        !download_req.had_authorization,
        "no bearer token on the download host"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_large_download_arrives_in_several_chunks_and_matches() {
    let env = env().await;
    let content = noise(6 * 1024 * 1024 + 13, 5);
    let item = file(&env, "/large.bin", content.clone()).await;

    let (bytes, err, chunks) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;

    assert_eq!(err, None);
    assert!(chunks > 1, "streamed, not buffered: {chunks} chunk(s)");
    assert!(bytes == content);
    env.shutdown().await;
}

#[tokio::test]
async fn an_empty_file_downloads_and_verifies() {
    let env = env().await;
    let item = file(&env, "/empty.txt", Vec::new()).await;
    let (bytes, err, _) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;
    assert_eq!(err, None);
    assert!(bytes.is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn a_truncated_download_ends_with_a_transient_error() {
    let env = env().await;
    let content = noise(200_000, 6);
    let item = file(&env, "/cut.bin", content.clone()).await;
    env.ctl
        .add_fault(FaultRule::new("GET", DOWNLOAD_ROUTE, FaultAction::TruncateBody).times(1));

    let (bytes, err, _) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;

    assert!(bytes.len() < content.len());
    assert!(matches!(err, Some(DatasourceError::Transient(_))), "{err:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn bytes_that_do_not_match_the_quick_xor_hash_end_with_a_hash_mismatch() {
    let env = env().await;
    let mut item = file(&env, "/h.txt", b"the real content".to_vec()).await;
    item.hash.as_mut().unwrap().value = kbsync_msgraph::QuickXorHash::of(b"something else!!");

    let (bytes, err, _) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;

    assert_eq!(bytes, b"the real content");
    let Some(DatasourceError::Transient(why)) = err else {
        panic!("{err:?}")
    };
    assert!(why.contains("hash mismatch"), "{why}");
    env.shutdown().await;
}

#[tokio::test]
async fn a_byte_count_that_differs_from_the_size_fails_the_download() {
    let env = env().await;
    let mut item = file(&env, "/s.txt", b"twelve bytes".to_vec()).await;
    item.size = Some(13);

    let (_, err, _) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;

    let Some(DatasourceError::Transient(why)) = err else {
        panic!("{err:?}")
    };
    assert!(why.contains("size mismatch"), "{why}");
    env.shutdown().await;
}

#[tokio::test]
async fn an_item_without_a_hash_is_downloaded_unverified() {
    let env = env().await;
    let mut item = file(&env, "/nohash.txt", b"abc".to_vec()).await;
    item.hash = None;
    let (bytes, err, _) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;
    assert_eq!(err, None);
    assert_eq!(bytes, b"abc");
    env.shutdown().await;
}

#[tokio::test]
async fn a_refused_download_url_is_fetched_again_once() {
    let env = env().await;
    let item = file(&env, "/again.txt", b"second time lucky".to_vec()).await;
    env.ctl
        .add_fault(FaultRule::new("GET", DOWNLOAD_ROUTE, FaultAction::Unauthorized).times(1));
    env.ctl.clear_request_log();

    let (bytes, err, _) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;

    assert_eq!(err, None);
    assert_eq!(bytes, b"second time lucky");
    let log = env.ctl.request_log();
    assert_eq!(log.count("GET /v1.0/drives/{id}/items/{id}/content"), 2);
    assert_eq!(env.tokens.refreshes(), 0, "the user's token was fine all along");
    assert!(env.ctl.authorization_leaks().is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn a_download_url_refused_twice_is_transient_not_unauthorized() {
    let env = env().await;
    let item = file(&env, "/never.txt", b"x".to_vec()).await;
    env.ctl.add_fault(FaultRule::new(
        "GET",
        DOWNLOAD_ROUTE,
        FaultAction::ServerError { status: 403 },
    ));

    let r = env.ds.download(&env.tokens, &item).await;

    assert!(matches!(r, Err(DatasourceError::Transient(_))), "{:?}", r.err());
    env.shutdown().await;
}

#[tokio::test]
async fn a_throttled_download_host_is_waited_for() {
    let env = env().await;
    let item = file(&env, "/busy.txt", b"busy".to_vec()).await;
    env.ctl.add_fault(
        FaultRule::new(
            "GET",
            DOWNLOAD_ROUTE,
            FaultAction::Throttle {
                status: 503,
                retry_after: RetryAfter::Seconds(2),
                rate_limit_headers: false,
            },
        )
        .times(1),
    );

    let (bytes, err, _) = drain(env.ds.download(&env.tokens, &item).await.unwrap()).await;

    assert_eq!(err, None);
    assert_eq!(bytes, b"busy");
    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 1);
    assert!(waits[0] >= std::time::Duration::from_secs(2));
    env.shutdown().await;
}

#[tokio::test]
async fn downloading_a_deleted_file_is_not_found() {
    let env = env().await;
    let item = file(&env, "/doomed.txt", b"bye".to_vec()).await;
    env.ctl.delete(&env.drive, &item.id).unwrap();
    let r = env.ds.download(&env.tokens, &item).await;
    assert!(matches!(r, Err(DatasourceError::NotFound(_))), "{:?}", r.err());
    env.shutdown().await;
}
