//! What the client does with Google's error answers: refresh once on 401, back off on rate
//! limits (403 with a rate-limit reason, 429) and 5xx, honour Retry-After, give up when bounded.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kbsync_core::datasource::{Datasource, DatasourceError};
use kbsync_gdrive::USER_DRIVE;

use crate::common::*;

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_a_second_refusal_is_unauthorized() {
    let env = env().await;
    env.fake.blob("f", "a.pdf", MY_ROOT, b"x");
    // token-1 expires; the refreshed token-2 works.
    env.fake.with(|s| s.valid_tokens = vec!["token-2".into()]);
    let item = env.ds.item(&env.tokens, USER_DRIVE, "f").await.unwrap();
    assert_eq!(item.id, "f");
    assert_eq!(env.tokens.refreshes.load(Ordering::SeqCst), 1);
    let sent: Vec<Option<String>> = env.fake.requests().into_iter().map(|r| r.token).collect();
    assert_eq!(sent, [Some("token-1".into()), Some("token-2".into())]);
    // Now nothing works: one more refresh, then Unauthorized.
    env.fake.with(|s| s.valid_tokens.clear());
    let err = env.ds.item(&env.tokens, USER_DRIVE, "f").await.unwrap_err();
    assert!(matches!(err, DatasourceError::Unauthorized(_)), "{err:?}");
    assert_eq!(env.tokens.refreshes.load(Ordering::SeqCst), 2);
    let refused = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/files/f")
        .count();
    assert_eq!(
        refused, 4,
        "two requests per call: the first and the one after the refresh"
    );
    env.shutdown();
}

#[tokio::test]
async fn rate_limits_as_403_or_429_are_retried_with_growing_jittered_backoff() {
    let env = env().await;
    env.fake.blob("f", "a.pdf", MY_ROOT, b"x");
    env.fake
        .fault(Fault::new("/files/f", 403, "userRateLimitExceeded", 2));
    env.fake
        .fault(Fault::new("/files/f", 429, "rateLimitExceeded", 1));
    let item = env.ds.item(&env.tokens, USER_DRIVE, "f").await.unwrap();
    assert_eq!(item.id, "f");
    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 3, "{waits:?}");
    // Equal jitter around 1 s, 2 s, 4 s.
    for (w, step) in waits.iter().zip([1.0, 2.0, 4.0]) {
        let step = Duration::from_secs_f64(step);
        assert!(*w >= step / 2 && *w < step, "{w:?} for a {step:?} step");
    }
    env.shutdown();
}

#[tokio::test]
async fn a_retry_after_is_waited_in_full_and_one_beyond_the_cap_is_returned_as_throttled() {
    let env = env().await;
    env.fake.blob("f", "a.pdf", MY_ROOT, b"x");
    env.fake
        .fault(Fault::new("/files/f", 429, "rateLimitExceeded", 1).retry_after("7"));
    env.ds.item(&env.tokens, USER_DRIVE, "f").await.unwrap();
    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(
        waits[0] >= Duration::from_secs(7) && waits[0] < Duration::from_millis(7250),
        "{waits:?}"
    );

    env.fake
        .fault(Fault::new("/files/f", 403, "rateLimitExceeded", 1).retry_after("3600"));
    let err = env.ds.item(&env.tokens, USER_DRIVE, "f").await.unwrap_err();
    assert_eq!(
        err,
        DatasourceError::Throttled {
            retry_after: Duration::from_secs(3600)
        }
    );
    env.shutdown();
}

#[tokio::test]
async fn server_errors_are_retried_and_a_lasting_one_is_transient_after_max_attempts() {
    let env = env_config(|c| c.max_attempts = 3).await;
    env.fake.blob("f", "a.pdf", MY_ROOT, b"x");
    env.fake.fault(Fault::new("/files/f", 503, "backendError", 1));
    env.fake.fault(Fault::new("/files/f", 500, "backendError", 1));
    env.ds.item(&env.tokens, USER_DRIVE, "f").await.unwrap();
    assert_eq!(env.sleeper.waits().len(), 2);

    env.fake.fault(Fault::new("/files/f", 502, "backendError", 10));
    let err = env.ds.item(&env.tokens, USER_DRIVE, "f").await.unwrap_err();
    assert!(
        matches!(err, DatasourceError::Transient(ref m) if m.contains("3 attempts")),
        "{err:?}"
    );
    // A lasting rate limit is Throttled, not Transient.
    env.fake.with(|s| s.faults.clear());
    env.fake
        .fault(Fault::new("/files/f", 403, "userRateLimitExceeded", 10));
    let err = env.ds.item(&env.tokens, USER_DRIVE, "f").await.unwrap_err();
    assert!(matches!(err, DatasourceError::Throttled { .. }), "{err:?}");
    env.shutdown();
}

#[tokio::test]
async fn a_missing_item_is_not_found_and_a_denial_names_its_reason() {
    let env = env().await;
    let err = env.ds.item(&env.tokens, USER_DRIVE, "nope").await.unwrap_err();
    assert!(
        matches!(err, DatasourceError::NotFound(ref m) if m.contains("notFound")),
        "{err:?}"
    );
    env.fake.blob("f", "a.pdf", MY_ROOT, b"x");
    env.fake
        .fault(Fault::new("/files/f", 403, "appNotAuthorizedToFile", 1));
    let err = env.ds.item(&env.tokens, USER_DRIVE, "f").await.unwrap_err();
    assert!(
        matches!(err, DatasourceError::NotFound(ref m) if m.contains("appNotAuthorizedToFile")),
        "{err:?}"
    );
    assert!(env.sleeper.waits().is_empty());
    env.shutdown();
}
