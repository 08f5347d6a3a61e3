//! Signing in through the HTTP API end to end: tokens, throttling per account and per address,
//! the password hasher's limit, sessions and their purge, `/me`, and creating users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{Db, Options, PASSWORD, TestServer};
use chrono::Duration;
use kbsync_server::LoginThrottle;
use reqwest::{Method, StatusCode};
use serde_json::json;

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    login_returns_a_token_and_the_user_and_wrong_credentials_get_401,
    repeated_login_failures_are_slowed_down_until_the_delay_has_passed,
    parallel_wrong_logins_past_the_free_attempts_are_refused_without_evaluation,
    an_overlong_email_is_refused_before_any_lookup_and_leaves_no_trace,
    failed_logins_from_one_address_are_limited_across_accounts,
    a_saturated_password_hasher_answers_busy_instead_of_queueing_forever,
    housekeeping_purges_expired_sessions_and_forgotten_login_failures,
    logout_ends_the_session,
    me_requires_a_valid_bearer_token,
    only_admins_create_users_and_bad_input_names_the_field,
);

async fn login_returns_a_token_and_the_user_and_wrong_credentials_get_401(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let (status, body) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "ADMIN@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["email"], "admin@example.com");
    assert_eq!(body["user"]["role"], "admin");
    assert!(body["token"].as_str().unwrap().len() >= 32);
    assert!(body["user"].get("password_hash").is_none());

    let (status, body) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "admin@example.com", "password": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "bad_credentials");
    let (status, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "ghost@example.com", "password": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = s
        .post("/api/v1/auth/login", None, json!({"email": "admin@example.com"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    s.stop().await;
}

async fn repeated_login_failures_are_slowed_down_until_the_delay_has_passed(db: Db) {
    let options = Options {
        throttle: LoginThrottle {
            free_attempts: 3,
            base_delay_secs: 10,
            max_delay_secs: 600,
        },
        ..Options::default()
    };
    let Some(s) = TestServer::start(db, options).await else {
        return;
    };
    let wrong = json!({"email": crate::common::ADMIN_EMAIL, "password": "wrong password"});
    for _ in 0..3 {
        assert_eq!(
            s.post("/api/v1/auth/login", None, wrong.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is refused while the delay runs, so guessing gains nothing.
    let right = json!({"email": crate::common::ADMIN_EMAIL, "password": PASSWORD});
    let resp = s
        .http
        .post(format!("{}/api/v1/auth/login", s.base))
        .json(&right)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: i64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");

    s.clock.advance(Duration::seconds(10));
    assert_eq!(
        s.post("/api/v1/auth/login", None, right.clone()).await.0,
        StatusCode::OK
    );
    // Success reset the count: three more free attempts.
    for _ in 0..3 {
        assert_eq!(
            s.post("/api/v1/auth/login", None, wrong.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    s.stop().await;
}

/// Twenty wrong guesses at once, with three free attempts: the count is taken atomically before
/// the password is checked, so exactly three are evaluated and the rest are refused unseen.
async fn parallel_wrong_logins_past_the_free_attempts_are_refused_without_evaluation(db: Db) {
    let options = Options {
        throttle: LoginThrottle {
            free_attempts: 3,
            base_delay_secs: 60,
            max_delay_secs: 600,
        },
        ..Options::default()
    };
    let Some(s) = TestServer::start(db, options).await else {
        return;
    };
    let wrong = json!({"email": crate::common::ADMIN_EMAIL, "password": "wrong password"});
    let guesses = (0..20).map(|_| s.post("/api/v1/auth/login", None, wrong.clone()));
    let statuses: Vec<StatusCode> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    let evaluated = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((evaluated, refused), (3, 17), "{statuses:?}");
    assert_eq!(
        s.state
            .store
            .login_failures(crate::common::ADMIN_EMAIL)
            .await
            .unwrap()
            .count,
        3
    );
    s.stop().await;
}

async fn an_overlong_email_is_refused_before_any_lookup_and_leaves_no_trace(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let long = format!("{}@example.com", "a".repeat(300));
    let (status, body) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": long, "password": "whatever"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with("email"),
        "{body}"
    );
    assert_eq!(s.state.store.login_failures(&long).await.unwrap().count, 0);
    let (status, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": crate::common::ADMIN_EMAIL, "password": "p".repeat(5000)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        s.state
            .store
            .login_failures(crate::common::ADMIN_EMAIL)
            .await
            .unwrap()
            .count,
        0
    );
    s.stop().await;
}

async fn failed_logins_from_one_address_are_limited_across_accounts(db: Db) {
    let options = Options {
        adjust: |settings| {
            settings.login_address_limit = kbsync_store::AddressLimit {
                max_failures: 4,
                window: Duration::minutes(15),
            };
        },
        ..Options::default()
    };
    let Some(s) = TestServer::start(db, options).await else {
        return;
    };
    // Successes do not count against the address.
    for _ in 0..6 {
        s.admin_token().await;
    }
    // Guessing across accounts: each account is fresh, the address is not.
    for i in 0..4 {
        let (status, _) = s
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": format!("guess{i}@example.com"), "password": "nope"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let resp = s
        .http
        .post(format!("{}/api/v1/auth/login", s.base))
        .json(&json!({"email": crate::common::ADMIN_EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: i64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    // The window ends, and the address may try again.
    s.clock.advance(Duration::minutes(15));
    s.admin_token().await;
    s.stop().await;
}

async fn a_saturated_password_hasher_answers_busy_instead_of_queueing_forever(db: Db) {
    let options = Options {
        adjust: |settings| {
            settings.password_hash_concurrency = 1;
            settings.password_hash_wait = std::time::Duration::ZERO;
        },
        ..Options::default()
    };
    let Some(s) = TestServer::start(db, options).await else {
        return;
    };
    // Every turn is taken (as by a flood of sign-ins).
    let turn = s.state.password_hashing.clone().try_acquire_owned().unwrap();
    let resp = s
        .http
        .post(format!("{}/api/v1/auth/login", s.base))
        .json(&json!({"email": crate::common::ADMIN_EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");
    drop(turn);
    s.admin_token().await;
    s.stop().await;
}

async fn housekeeping_purges_expired_sessions_and_forgotten_login_failures(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let (status, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let settings = kbsync_server::HousekeepingSettings::default();
    let purged = kbsync_server::service::housekeeping::purge(&s.state, &settings)
        .await
        .unwrap();
    assert_eq!((purged.sessions, purged.login_failures), (0, 0));
    // A week and a day later the session has expired and the failure is forgotten.
    s.clock.advance(Duration::days(8));
    let purged = kbsync_server::service::housekeeping::purge(&s.state, &settings)
        .await
        .unwrap();
    assert_eq!(purged.sessions, 1);
    // The unknown email's failure and the address's ended window.
    assert_eq!(purged.login_failures, 2);
    assert_eq!(
        s.state
            .store
            .login_failures("nobody@example.com")
            .await
            .unwrap()
            .count,
        0
    );
    assert_eq!(
        s.get("/api/v1/me", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

async fn logout_ends_the_session(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    assert_eq!(s.get("/api/v1/me", Some(&token)).await.0, StatusCode::OK);
    assert_eq!(
        s.call(Method::POST, "/api/v1/auth/logout", Some(&token), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("/api/v1/me", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

async fn me_requires_a_valid_bearer_token(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let (status, body) = s.get("/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthenticated");
    assert_eq!(
        s.get("/api/v1/me", Some("not-a-token")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let token = s.admin_token().await;
    let (status, body) = s.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["email"], crate::common::ADMIN_EMAIL);
    // Sessions expire.
    s.clock.advance(Duration::days(8));
    assert_eq!(
        s.get("/api/v1/me", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

async fn only_admins_create_users_and_bad_input_names_the_field(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, user) = s.user(&admin, "user@example.com").await;
    let new = json!({"email": "x@example.com", "password": PASSWORD, "role": "user"});
    assert_eq!(
        s.post("/api/v1/users", Some(&user), new.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.post("/api/v1/users", None, new.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = s.post("/api/v1/users", Some(&admin), new.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], "user");
    let (status, _) = s
        .post(
            "/api/v1/users",
            Some(&admin),
            json!({"email": "X@EXAMPLE.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    for (body, field) in [
        (json!({"email": "not-an-email", "password": PASSWORD}), "email"),
        (json!({"email": "y@example.com", "password": "short"}), "password"),
        (
            json!({"email": "y@example.com", "password": PASSWORD, "role": "root"}),
            "role",
        ),
    ] {
        let (status, resp) = s.post("/api/v1/users", Some(&admin), body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
        assert!(
            resp["error"]["message"].as_str().unwrap().starts_with(field),
            "{resp}"
        );
    }
    s.stop().await;
}
