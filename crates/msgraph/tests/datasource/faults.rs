use std::time::Duration;

use kbsync_core::datasource::{AccessToken, Datasource, DatasourceError, NextPage, StaticToken};
use msgraph_emulator::{FaultAction, FaultRule, RetryAfter};

use crate::common::*;

const ITEM_ROUTE: &str = "/v1.0/drives/*/items/*";
const ITEM_KEY: &str = "GET /v1.0/drives/{id}/items/{id}";

fn throttle(status: u16, retry_after: RetryAfter) -> FaultAction {
    FaultAction::Throttle {
        status,
        retry_after,
        rate_limit_headers: false,
    }
}

fn server_error(status: u16) -> FaultAction {
    FaultAction::ServerError { status }
}

/// An env with one file; returns its id.
async fn env_with_file() -> (Env, String) {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/f.txt", "file").unwrap();
    (env, f.id)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test]
async fn throttled_429_with_retry_after_2_waits_at_least_2_seconds_then_succeeds() {
    let (env, id) = env_with_file().await;
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, throttle(429, RetryAfter::Seconds(2))).times(1));

    let item = env.ds.item(&env.tokens, &env.drive, &id).await.unwrap();

    assert_eq!(item.id, id);
    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 1);
    // The full Retry-After, plus at most one base_backoff (1 s) of jitter.
    assert!(waits[0] >= secs(2.0) && waits[0] < secs(3.0), "{waits:?}");
    assert_eq!(env.ctl.request_log().count(ITEM_KEY), 2);
    env.shutdown().await;
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_waited_until_that_date() {
    let (env, id) = env_with_file().await;
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, throttle(429, RetryAfter::HttpDate(7))).times(1));

    env.ds.item(&env.tokens, &env.drive, &id).await.unwrap();

    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 1);
    assert!(waits[0] >= secs(7.0) && waits[0] < secs(8.0), "{waits:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn service_unavailable_503_honours_retry_after() {
    let (env, id) = env_with_file().await;
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, throttle(503, RetryAfter::Seconds(3))).times(2));

    env.ds.item(&env.tokens, &env.drive, &id).await.unwrap();

    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 2);
    assert!(
        waits.iter().all(|w| *w >= secs(3.0) && *w < secs(4.0)),
        "{waits:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn retry_after_beyond_the_cap_returns_throttled_without_waiting() {
    let (env, id) = env_with_file().await;
    env.ctl.add_fault(FaultRule::new(
        "GET",
        ITEM_ROUTE,
        throttle(429, RetryAfter::Seconds(120)),
    ));

    let r = env.ds.item(&env.tokens, &env.drive, &id).await;

    assert_eq!(
        r,
        Err(DatasourceError::Throttled {
            retry_after: secs(120.0)
        })
    );
    assert!(env.sleeper.waits().is_empty());
    assert_eq!(env.ctl.request_log().count(ITEM_KEY), 1);
    env.shutdown().await;
}

#[tokio::test]
async fn persistent_throttling_gives_throttled_once_the_throttle_wait_budget_is_spent() {
    // Waits of 5 s plus at most 1 s of jitter: two fit in 14 s, a third does not. Throttled
    // answers are not failed attempts, so `max_attempts` = 2 does not cut this short.
    let env = env_config(|c| {
        c.max_attempts = 2;
        c.max_throttle_wait = Duration::from_secs(14);
    })
    .await;
    let f = env.ctl.put_file(&env.drive, "/f.txt", "f").unwrap();
    env.ctl.add_fault(FaultRule::new(
        "GET",
        ITEM_ROUTE,
        throttle(429, RetryAfter::Seconds(5)),
    ));

    let r = env.ds.item(&env.tokens, &env.drive, &f.id).await;

    assert_eq!(
        r,
        Err(DatasourceError::Throttled {
            retry_after: secs(5.0)
        })
    );
    assert_eq!(env.ctl.request_log().count(ITEM_KEY), 3);
    assert_eq!(env.sleeper.waits().len(), 2);
    env.shutdown().await;
}

#[tokio::test]
async fn throttled_answers_are_not_failed_attempts_so_sustained_throttling_still_succeeds() {
    let env = env_config(|c| c.max_attempts = 3).await;
    let f = env.ctl.put_file(&env.drive, "/f.txt", "f").unwrap();
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, throttle(429, RetryAfter::Seconds(1))).times(8));

    let item = env.ds.item(&env.tokens, &env.drive, &f.id).await.unwrap();

    assert_eq!(item.id, f.id);
    assert_eq!(env.ctl.request_log().count(ITEM_KEY), 9);
    assert_eq!(env.sleeper.waits().len(), 8);
    env.shutdown().await;
}

#[tokio::test]
async fn throttling_without_retry_after_backs_off_exponentially() {
    let (env, id) = env_with_file().await;
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, throttle(429, RetryAfter::Omitted)).times(3));

    env.ds.item(&env.tokens, &env.drive, &id).await.unwrap();

    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 3);
    // base 1 s, doubling, "equal jitter": [step/2, step).
    for (w, step) in waits.iter().zip([1.0, 2.0, 4.0]) {
        assert!(*w >= secs(step / 2.0) && *w < secs(step), "{waits:?}");
    }
    env.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_500s_then_success_backs_off_exponentially() {
    let (env, id) = env_with_file().await;
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, server_error(500)).times(3));

    let item = env.ds.item(&env.tokens, &env.drive, &id).await.unwrap();

    assert_eq!(item.id, id);
    let waits = env.sleeper.waits();
    assert_eq!(waits.len(), 3);
    for (w, step) in waits.iter().zip([1.0, 2.0, 4.0]) {
        assert!(*w >= secs(step / 2.0) && *w < secs(step), "{waits:?}");
    }
    assert_eq!(env.ctl.request_log().count(ITEM_KEY), 4);
    env.shutdown().await;
}

#[tokio::test]
async fn bad_gateway_gateway_timeout_and_509_are_retried() {
    let (env, id) = env_with_file().await;
    for status in [502, 504, 509] {
        env.ctl
            .add_fault(FaultRule::new("GET", ITEM_ROUTE, server_error(status)).times(1));
    }
    env.ds.item(&env.tokens, &env.drive, &id).await.unwrap();
    assert_eq!(env.sleeper.waits().len(), 3);
    env.shutdown().await;
}

#[tokio::test]
async fn too_many_500s_give_transient_after_max_attempts() {
    let (env, id) = env_with_file().await;
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, server_error(500)));

    let r = env.ds.item(&env.tokens, &env.drive, &id).await;

    assert!(matches!(r, Err(DatasourceError::Transient(_))), "{r:?}");
    let max = env.ds.config().max_attempts as u64;
    assert_eq!(env.ctl.request_log().count(ITEM_KEY), max);
    let waits = env.sleeper.waits();
    assert_eq!(waits.len() as u64, max - 1);
    assert!(
        waits.iter().all(|w| *w <= env.ds.config().max_retry_wait),
        "backoff is capped: {waits:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let (env, id) = env_with_file().await;
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, FaultAction::DropConnection).times(2));

    let item = env.ds.item(&env.tokens, &env.drive, &id).await.unwrap();

    assert_eq!(item.id, id);
    assert_eq!(env.sleeper.waits().len(), 2);
    env.shutdown().await;
}

#[tokio::test]
async fn a_request_that_exceeds_the_timeout_is_retried() {
    let env = env_config(|c| c.request_timeout = Duration::from_millis(300)).await;
    let f = env.ctl.put_file(&env.drive, "/f.txt", "f").unwrap();
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, FaultAction::Delay { millis: 30_000 }).times(1));

    let item = env.ds.item(&env.tokens, &env.drive, &f.id).await.unwrap();

    assert_eq!(item.id, f.id);
    assert_eq!(env.sleeper.waits().len(), 1);
    env.shutdown().await;
}

#[tokio::test]
async fn unauthorized_once_refreshes_exactly_once_then_succeeds() {
    let (env, id) = env_with_file().await;
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, FaultAction::Unauthorized).times(1));

    let item = env.ds.item(&env.tokens, &env.drive, &id).await.unwrap();

    assert_eq!(item.id, id);
    assert_eq!(env.tokens.refreshes(), 1);
    assert!(env.sleeper.waits().is_empty(), "a refresh is repeated at once");
    env.shutdown().await;
}

#[tokio::test]
async fn unauthorized_twice_gives_unauthorized_after_one_refresh() {
    let (env, id) = env_with_file().await;
    env.ctl
        .add_fault(FaultRule::new("GET", ITEM_ROUTE, FaultAction::Unauthorized).times(2));

    let r = env.ds.item(&env.tokens, &env.drive, &id).await;

    assert!(matches!(r, Err(DatasourceError::Unauthorized(_))), "{r:?}");
    assert_eq!(env.tokens.refreshes(), 1);
    assert_eq!(env.ctl.request_log().count(ITEM_KEY), 2);
    env.shutdown().await;
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/f.txt", "f").unwrap();
    let tokens = TestTokens::short_lived(&env.ctl, &env.user, 60);
    env.ctl.advance_clock(chrono::Duration::seconds(120));

    let item = env.ds.item(&tokens, &env.drive, &f.id).await.unwrap();

    assert_eq!(item.id, f.id);
    assert_eq!(tokens.refreshes(), 1);
    env.shutdown().await;
}

#[tokio::test]
async fn a_refused_static_token_gives_unauthorized() {
    let env = env().await;
    let tokens = StaticToken(AccessToken::new("not.a.real.token"));
    let r = env.ds.item(&tokens, &env.drive, "whatever").await;
    assert!(matches!(r, Err(DatasourceError::Unauthorized(_))), "{r:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn a_throttled_delta_page_is_retried_with_the_same_link() {
    let env = env_config(|c| c.page_size = 1).await;
    env.ctl.put_file(&env.drive, "/D/a.txt", "a").unwrap();
    env.ctl.put_file(&env.drive, "/D/b.txt", "b").unwrap();
    let folder = env.ctl.item_by_path(&env.drive, "/D").unwrap();
    let source = env.source(&folder.id);
    let first = env.ds.changes(&env.tokens, &source, None).await.unwrap();
    let NextPage::More(next) = first.next else {
        panic!("expected more pages")
    };
    env.ctl.add_fault(
        FaultRule::new(
            "GET",
            "/v1.0/drives/*/items/*/delta",
            throttle(429, RetryAfter::Seconds(1)),
        )
        .times(1),
    );
    env.ctl.clear_request_log();

    env.ds.changes(&env.tokens, &source, Some(&next)).await.unwrap();

    let log = env.ctl.request_log();
    assert_eq!(log.entries.len(), 2);
    assert_eq!(log.entries[0].status, 429);
    assert_eq!(log.entries[0].query, log.entries[1].query);
    assert_eq!(
        format!(
            "{}{}?{}",
            env.emu.base_url(),
            log.entries[1].path,
            log.entries[1].query.as_deref().unwrap()
        ),
        next
    );
    env.shutdown().await;
}
