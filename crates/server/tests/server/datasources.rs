//! Connecting a knowledge base to OneDrive through the HTTP API, against the emulator: every
//! status for every kind of caller, the consent → callback flow, state misuse, the binding of a
//! flow to the browser that started it, the callback page's safety, browsing, revocation and
//! forgetting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{Db, OneDriveTest, Options, TestServer};
use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    datasources_list_shows_whether_each_datasource_is_configured,
    initiate_answers_each_caller_with_the_right_status,
    initiate_without_a_client_secret_answers_501,
    connecting_app_only_is_for_admins_and_a_conflict_when_not_configured,
    consent_and_callback_store_a_connection_and_a_replayed_state_is_refused,
    a_callback_without_the_binding_cookie_stores_nothing_and_spends_the_state,
    a_callback_with_another_flows_binding_cookie_stores_nothing,
    a_callback_after_the_initiator_lost_manage_access_stores_nothing,
    two_flows_started_in_one_browser_both_complete,
    callback_error_text_is_inert_and_posted_only_to_the_public_origin,
    browse_uses_the_stored_connection_and_needs_manage_access,
    a_revoked_refresh_token_marks_the_knowledge_base_needs_reauth,
    forgetting_the_connection_needs_manage_access_and_removes_the_token,
);

fn with_onedrive(with_secret: bool) -> Options {
    Options {
        onedrive: Some(OneDriveTest { with_secret }),
        ..Options::default()
    }
}

struct Roles {
    admin: String,
    owner: String,
    writer: String,
    reader: String,
    stranger: String,
    kb: String,
}

async fn roles(s: &TestServer) -> Roles {
    let admin = s.admin_token().await;
    let (_, owner) = s.user(&admin, "owner@example.com").await;
    let (writer_id, writer) = s.user(&admin, "writer@example.com").await;
    let (reader_id, reader) = s.user(&admin, "reader@example.com").await;
    let (_, stranger) = s.user(&admin, "stranger@example.com").await;
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&owner),
            json!({"name": "Drive", "type": "onedrive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let kb = body["id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{kb}/access"),
            Some(&owner),
            Some(json!({"read": [reader_id], "write": [writer_id]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    Roles {
        admin,
        owner,
        writer,
        reader,
        stranger,
        kb,
    }
}

async fn consent(s: &TestServer, auth_url: &str, cookie: Option<&str>) -> (StatusCode, String, String) {
    s.consent(auth_url, cookie).await
}

/// The status, the body and the binding cookie (`name=value`) of `initiate`.
async fn initiate(s: &TestServer, token: Option<&str>, kb: &str) -> (StatusCode, Value, Option<String>) {
    s.initiate(token, kb).await
}

async fn has_stored_token(s: &TestServer, token: &str, kb: &str) -> bool {
    let (status, conn) = s
        .get(&format!("/api/v1/knowledge/{kb}/connection"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{conn}");
    conn["has_stored_token"].as_bool().unwrap()
}

async fn connect(s: &TestServer, r: &Roles) {
    s.connect(&r.owner, &r.kb).await;
}

async fn datasources_list_shows_whether_each_datasource_is_configured(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let token = s.admin_token().await;
    assert_eq!(
        s.get("/api/v1/datasources", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = s.get("/api/v1/datasources", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["datasources"],
        json!([
            {"datasource": "onedrive", "name": "OneDrive / SharePoint", "configured": true, "app_only": false},
            {"datasource": "gdrive", "name": "Google Drive", "configured": false, "app_only": false},
        ])
    );
    s.stop().await;

    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let (_, body) = s.get("/api/v1/datasources", Some(&token)).await;
    assert_eq!(body["datasources"][0]["configured"], false);
    s.stop().await;
}

async fn initiate_answers_each_caller_with_the_right_status(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    for (who, token, expected) in [
        ("anonymous", None, StatusCode::UNAUTHORIZED),
        ("stranger", Some(r.stranger.as_str()), StatusCode::NOT_FOUND),
        ("reader", Some(r.reader.as_str()), StatusCode::FORBIDDEN),
        ("writer", Some(r.writer.as_str()), StatusCode::FORBIDDEN),
        ("owner", Some(r.owner.as_str()), StatusCode::OK),
        ("admin", Some(r.admin.as_str()), StatusCode::OK),
    ] {
        assert_eq!(initiate(&s, token, &r.kb).await.0, expected, "{who}");
    }
    let resp = s
        .http
        .get(format!(
            "{}/api/v1/datasources/onedrive/auth/initiate?knowledge_id={}",
            s.base, r.kb
        ))
        .bearer_auth(&r.owner)
        .send()
        .await
        .unwrap();
    // The binding cookie: one per flow, HttpOnly, SameSite=Lax, only for the datasources routes,
    // as long as the state lives, not Secure on plain http.
    let cookies = crate::common::binding_cookies(resp.headers());
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let attrs: Vec<&str> = cookies[0].split("; ").collect();
    let (name, value) = attrs[0].split_once('=').unwrap();
    assert!(name.len() > "kbsync_oauth_binding_".len(), "{name}");
    assert!(value.len() >= 43, "a 256-bit secret: {value}");
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/api/v1/datasources/",
        "Max-Age=600",
    ] {
        assert!(attrs.contains(&attr), "{attr} missing: {cookies:?}");
    }
    assert!(!attrs.contains(&"Secure"), "{cookies:?}");
    let body: Value = resp.json().await.unwrap();
    // The answer is the authorization server's URL, and it carries no binding.
    assert!(!body.to_string().contains(value), "{body}");
    let url = url::Url::parse(body["auth_url"].as_str().unwrap()).unwrap();
    let authorize = s.emulator.as_ref().unwrap().authorize_url();
    assert!(url.as_str().starts_with(&format!("{authorize}?")), "{url}");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["prompt"], "consent");
    assert!(q["scope"].split(' ').any(|sc| sc == "offline_access"), "{q:?}");
    assert_eq!(
        q["redirect_uri"],
        format!("{}/api/v1/datasources/onedrive/auth/callback", s.base)
    );
    assert!(q["state"].len() >= 32);

    assert_eq!(
        initiate(&s, Some(&r.owner), "not-a-uuid").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        initiate(&s, Some(&r.owner), &uuid::Uuid::new_v4().to_string())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let local = s.create_kb(&r.owner, "local").await;
    assert_eq!(initiate(&s, Some(&r.owner), &local).await.0, StatusCode::CONFLICT);
    let (status, _) = s
        .get(
            &format!("/api/v1/datasources/dropbox/auth/initiate?knowledge_id={}", r.kb),
            Some(&r.owner),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn initiate_without_a_client_secret_answers_501(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(false)).await else {
        return;
    };
    let r = roles(&s).await;
    let (status, body, cookie) = initiate(&s, Some(&r.owner), &r.kb).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(cookie, None);
    assert_eq!(body["error"]["code"], "not_configured");
    s.stop().await;
}

async fn consent_and_callback_store_a_connection_and_a_replayed_state_is_refused(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    let path = format!("/api/v1/knowledge/{}/connection", r.kb);
    let (status, before) = s.get(&path, Some(&r.owner)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(before["has_stored_token"], false);

    let (_, body, cookie) = initiate(&s, Some(&r.owner), &r.kb).await;
    let (status, page, callback) = consent(&s, body["auth_url"].as_str().unwrap(), cookie.as_deref()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("kbsync-auth-success") && page.contains(&r.kb),
        "{page}"
    );

    for (who, token, expected) in [
        ("anonymous", None, StatusCode::UNAUTHORIZED),
        ("stranger", Some(r.stranger.as_str()), StatusCode::NOT_FOUND),
        ("reader", Some(r.reader.as_str()), StatusCode::OK),
        ("writer", Some(r.writer.as_str()), StatusCode::OK),
        ("owner", Some(r.owner.as_str()), StatusCode::OK),
    ] {
        assert_eq!(s.get(&path, token).await.0, expected, "{who}");
    }
    let (_, conn) = s.get(&path, Some(&r.reader)).await;
    assert_eq!(conn["datasource"], "onedrive");
    assert_eq!(conn["has_stored_token"], true);
    assert_eq!(conn["needs_reauth"], false);
    assert!(conn["token_stored_at"].is_string());
    // The status never carries a token.
    assert!(!conn.to_string().to_lowercase().contains("token\":\""), "{conn}");

    // The same state again, even with the cookie: refused, and the connection is untouched.
    let resp = s
        .http
        .get(&callback)
        .header(reqwest::header::COOKIE, cookie.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("kbsync-auth-error"));
    // A forged state and a missing one: refused.
    for forged in [
        format!(
            "{}/api/v1/datasources/onedrive/auth/callback?code=abc&state=forged",
            s.base
        ),
        format!("{}/api/v1/datasources/onedrive/auth/callback?code=abc", s.base),
        format!("{}/api/v1/datasources/onedrive/auth/callback", s.base),
    ] {
        let resp = reqwest::get(&forged).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{forged}");
    }
    assert_eq!(s.get(&path, Some(&r.owner)).await.1["has_stored_token"], true);

    // An expired state (older than 10 minutes) is refused.
    let (_, body, cookie) = initiate(&s, Some(&r.owner), &r.kb).await;
    s.clock.advance(Duration::minutes(11));
    let (status, page, _) = consent(&s, body["auth_url"].as_str().unwrap(), cookie.as_deref()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    s.stop().await;
}

/// The state from an authorize URL.
fn state_of(auth_url: &str) -> String {
    url::Url::parse(auth_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned()
}

/// A colleague signing in with a link someone else started: refused, nothing stored, and the
/// state is spent, so the one who started it cannot finish it with the colleague's code either.
async fn a_callback_without_the_binding_cookie_stores_nothing_and_spends_the_state(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    let (status, body, cookie) = initiate(&s, Some(&r.owner), &r.kb).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let auth_url = body["auth_url"].as_str().unwrap();
    let (status, page, callback) = consent(&s, auth_url, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("kbsync-auth-error"), "{page}");
    assert!(page.contains("not started in this browser"), "{page}");
    assert!(
        !page.contains(&r.kb),
        "an unbound browser learns no knowledge base: {page}"
    );
    assert!(!has_stored_token(&s, &r.owner, &r.kb).await);

    // The starting browser, cookie in hand, cannot use the spent state.
    let resp = s
        .http
        .get(&callback)
        .header(reqwest::header::COOKIE, cookie.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("already used"));
    assert!(!has_stored_token(&s, &r.owner, &r.kb).await);

    // An error callback from an unbound browser names no knowledge base either.
    let (_, body, _) = initiate(&s, Some(&r.owner), &r.kb).await;
    let state = state_of(body["auth_url"].as_str().unwrap());
    let resp = reqwest::get(format!(
        "{}/api/v1/datasources/onedrive/auth/callback?state={state}&error=access_denied",
        s.base
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("kbsync-auth-error") && !page.contains(&r.kb),
        "{page}"
    );
    s.stop().await;
}

/// A cookie of another flow, under its own name or put under this flow's name, does not bind.
async fn a_callback_with_another_flows_binding_cookie_stores_nothing(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    // The colleague's browser holds the cookie of a flow it started itself, on its own KB.
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&r.stranger),
            json!({"name": "Mine", "type": "onedrive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let own_kb = body["id"].as_str().unwrap().to_owned();
    let (_, _, own_cookie) = initiate(&s, Some(&r.stranger), &own_kb).await;
    let own_cookie = own_cookie.unwrap();

    let (_, body, started_cookie) = initiate(&s, Some(&r.owner), &r.kb).await;
    let (status, page, _) = consent(&s, body["auth_url"].as_str().unwrap(), Some(&own_cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("kbsync-auth-error"), "{page}");

    // The other flow's secret under this flow's cookie name.
    let (_, body, started) = initiate(&s, Some(&r.owner), &r.kb).await;
    let name = started.unwrap().split_once('=').unwrap().0.to_owned();
    let other_value = started_cookie.unwrap().split_once('=').unwrap().1.to_owned();
    let forged = format!("{name}={other_value}");
    let (status, page, _) = consent(&s, body["auth_url"].as_str().unwrap(), Some(&forged)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("not started in this browser"), "{page}");

    assert!(!has_stored_token(&s, &r.owner, &r.kb).await);
    assert!(!has_stored_token(&s, &r.stranger, &own_kb).await);
    s.stop().await;
}

/// An admin who starts connecting someone's knowledge base and loses the admin role before the
/// callback cannot finish: the callback checks again who may manage the knowledge base.
async fn a_callback_after_the_initiator_lost_manage_access_stores_nothing(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    let (status, body) = s
        .post(
            "/api/v1/users",
            Some(&r.admin),
            json!({"email": "second-admin@example.com", "password": crate::common::PASSWORD, "role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second_admin_id = body["id"].as_str().unwrap().to_owned();
    let second_admin = s.login("second-admin@example.com", crate::common::PASSWORD).await;

    let (status, body, cookie) = initiate(&s, Some(&second_admin), &r.kb).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.set_role_in_database(&second_admin_id, "user").await;
    let (status, page, callback) = consent(&s, body["auth_url"].as_str().unwrap(), cookie.as_deref()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("kbsync-auth-error"), "{page}");
    assert!(
        page.contains("may no longer change this knowledge base"),
        "{page}"
    );
    assert!(!has_stored_token(&s, &r.owner, &r.kb).await);

    // Given the role back, the spent state still does not complete.
    s.set_role_in_database(&second_admin_id, "admin").await;
    let resp = s
        .http
        .get(&callback)
        .header(reqwest::header::COOKIE, cookie.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(!has_stored_token(&s, &r.owner, &r.kb).await);

    // The owner, who still manages it, connects as before.
    connect(&s, &r).await;
    assert!(has_stored_token(&s, &r.owner, &r.kb).await);
    s.stop().await;
}

/// Each flow has a cookie of its own: a browser connecting two knowledge bases at once finishes
/// both, and each callback clears only its own cookie.
async fn two_flows_started_in_one_browser_both_complete(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&r.owner),
            json!({"name": "Second", "type": "onedrive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = body["id"].as_str().unwrap().to_owned();
    let (_, first_flow, first_cookie) = initiate(&s, Some(&r.owner), &r.kb).await;
    let (_, second_flow, second_cookie) = initiate(&s, Some(&r.owner), &second).await;
    let (first_cookie, second_cookie) = (first_cookie.unwrap(), second_cookie.unwrap());
    assert_ne!(
        first_cookie.split_once('=').unwrap().0,
        second_cookie.split_once('=').unwrap().0
    );
    let jar = format!("{first_cookie}; {second_cookie}");
    for (flow, cookie, kb) in [
        (&second_flow, &second_cookie, &second),
        (&first_flow, &first_cookie, &r.kb),
    ] {
        let (status, page, _, set_cookies) = s
            .consent_with_headers(flow["auth_url"].as_str().unwrap(), Some(&jar))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            page.contains("kbsync-auth-success") && page.contains(kb.as_str()),
            "{page}"
        );
        // The callback removes its own flow's cookie, and only that one.
        let name = cookie.split_once('=').unwrap().0;
        assert_eq!(set_cookies.len(), 1, "{set_cookies:?}");
        assert!(
            set_cookies[0].starts_with(&format!("{name}=;")),
            "{set_cookies:?}"
        );
        assert!(set_cookies[0].contains("Max-Age=0"), "{set_cookies:?}");
        assert!(
            set_cookies[0].contains("Path=/api/v1/datasources/"),
            "{set_cookies:?}"
        );
    }
    assert!(has_stored_token(&s, &r.owner, &r.kb).await);
    assert!(has_stored_token(&s, &r.owner, &second).await);
    s.stop().await;
}

async fn callback_error_text_is_inert_and_posted_only_to_the_public_origin(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    let (_, body, cookie) = initiate(&s, Some(&r.owner), &r.kb).await;
    let url = url::Url::parse(body["auth_url"].as_str().unwrap()).unwrap();
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mut callback =
        url::Url::parse(&format!("{}/api/v1/datasources/onedrive/auth/callback", s.base)).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("error", "access_denied")
        .append_pair(
            "error_description",
            "</script><script>alert('x')</script>\"quotes\"",
        );
    let resp = s
        .http
        .get(callback.as_str())
        .header(reqwest::header::COOKIE, cookie.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    let page = resp.text().await.unwrap();
    assert_eq!(page.matches("<script").count(), 2, "{page}");
    assert!(!page.contains("alert('x')"), "{page}");
    assert!(page.contains("kbsync-auth-error"));
    assert!(
        page.contains(&r.kb),
        "the error names the knowledge base it was for: {page}"
    );
    assert!(page.contains(&format!("\"origin\":\"{}\"", s.base)), "{page}");
    assert!(!page.contains("\"*\""));
    // The error consumed the state.
    assert_eq!(
        s.get(&format!("/api/v1/knowledge/{}/connection", r.kb), Some(&r.owner))
            .await
            .1["has_stored_token"],
        false
    );
    s.stop().await;
}

async fn browse_uses_the_stored_connection_and_needs_manage_access(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    let browse = |token: Option<String>, extra: String| {
        let path = format!("/api/v1/datasources/onedrive/browse?knowledge_id={}{extra}", r.kb);
        let s = &s;
        async move { s.get(&path, token.as_deref()).await }
    };
    // Not connected yet.
    assert_eq!(
        browse(Some(r.owner.clone()), String::new()).await.0,
        StatusCode::CONFLICT
    );
    connect(&s, &r).await;
    let control = s.emulator.as_ref().unwrap().control();
    let drive = control.default_drive_id();
    control.create_folder(&drive, "/Projects").unwrap();
    control
        .put_file(&drive, "/Projects/plan.txt", b"the plan".to_vec())
        .unwrap();

    for (who, token, expected) in [
        ("anonymous", None, StatusCode::UNAUTHORIZED),
        ("stranger", Some(r.stranger.clone()), StatusCode::NOT_FOUND),
        ("reader", Some(r.reader.clone()), StatusCode::FORBIDDEN),
        // Browsing shows all the connected account can read: writers may not.
        ("writer", Some(r.writer.clone()), StatusCode::FORBIDDEN),
        ("owner", Some(r.owner.clone()), StatusCode::OK),
        ("admin", Some(r.admin.clone()), StatusCode::OK),
    ] {
        assert_eq!(browse(token, String::new()).await.0, expected, "{who}");
    }
    let (_, top) = browse(Some(r.owner.clone()), String::new()).await;
    let drives: Vec<&Value> = top["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "drive")
        .collect();
    assert!(drives.iter().any(|d| d["id"] == drive.as_str()), "{top}");
    let (status, root) = browse(Some(r.owner.clone()), format!("&drive_id={drive}")).await;
    assert_eq!(status, StatusCode::OK, "{root}");
    let projects = root["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "Projects")
        .unwrap()
        .clone();
    assert_eq!(projects["kind"], "folder");
    let (_, inside) = browse(
        Some(r.owner.clone()),
        format!("&drive_id={drive}&item_id={}", projects["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(inside["items"][0]["name"], "plan.txt");
    assert_eq!(inside["items"][0]["kind"], "file");
    let (status, _) = browse(
        Some(r.owner.clone()),
        format!("&drive_id={drive}&item_id=nonexistent"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn a_revoked_refresh_token_marks_the_knowledge_base_needs_reauth(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    connect(&s, &r).await;
    let browse = format!("/api/v1/datasources/onedrive/browse?knowledge_id={}", r.kb);
    assert_eq!(s.get(&browse, Some(&r.owner)).await.0, StatusCode::OK);

    let control = s.emulator.as_ref().unwrap().control();
    control.revoke_refresh_tokens(&control.default_user_id()).unwrap();
    // Once the cached access token is near expiry, kbsync must refresh, and the refresh fails.
    s.clock.advance(Duration::hours(2));
    control.advance_clock(Duration::hours(2));
    let (status, body) = s.get(&browse, Some(&r.owner)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("re-authorisation"),
        "{body}"
    );
    let (_, conn) = s
        .get(&format!("/api/v1/knowledge/{}/connection", r.kb), Some(&r.owner))
        .await;
    assert_eq!(conn["needs_reauth"], true);
    let (_, kb) = s
        .get(&format!("/api/v1/knowledge/{}", r.kb), Some(&r.owner))
        .await;
    assert_eq!(kb["sync_status"], "needs_reauth");

    // Connecting again clears it.
    connect(&s, &r).await;
    let (_, conn) = s
        .get(&format!("/api/v1/knowledge/{}/connection", r.kb), Some(&r.owner))
        .await;
    assert_eq!(conn["needs_reauth"], false);
    assert_eq!(s.get(&browse, Some(&r.owner)).await.0, StatusCode::OK);
    s.stop().await;
}

async fn forgetting_the_connection_needs_manage_access_and_removes_the_token(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    connect(&s, &r).await;
    let path = format!("/api/v1/knowledge/{}/connection", r.kb);
    for (who, token, expected) in [
        ("anonymous", None, StatusCode::UNAUTHORIZED),
        ("stranger", Some(r.stranger.as_str()), StatusCode::NOT_FOUND),
        ("reader", Some(r.reader.as_str()), StatusCode::FORBIDDEN),
        ("writer", Some(r.writer.as_str()), StatusCode::FORBIDDEN),
    ] {
        assert_eq!(
            s.call(Method::DELETE, &path, token, None).await.0,
            expected,
            "{who}"
        );
    }
    assert_eq!(
        s.call(Method::DELETE, &path, Some(&r.owner), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get(&path, Some(&r.owner)).await.1["has_stored_token"], false);
    let browse = format!("/api/v1/datasources/onedrive/browse?knowledge_id={}", r.kb);
    assert_eq!(s.get(&browse, Some(&r.owner)).await.0, StatusCode::CONFLICT);
    s.stop().await;
}

async fn connecting_app_only_is_for_admins_and_a_conflict_when_not_configured(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive(true)).await else {
        return;
    };
    let r = roles(&s).await;
    let path = format!("/api/v1/datasources/onedrive/auth/app-only?knowledge_id={}", r.kb);
    for (who, token, expected) in [
        ("anonymous", None, StatusCode::UNAUTHORIZED),
        ("stranger", Some(r.stranger.as_str()), StatusCode::FORBIDDEN),
        ("owner", Some(r.owner.as_str()), StatusCode::FORBIDDEN),
        // Not configured on this server: a conflict with its configuration, nothing stored.
        ("admin", Some(r.admin.as_str()), StatusCode::CONFLICT),
    ] {
        let (status, body) = s.post(&path, token, json!({})).await;
        assert_eq!(status, expected, "{who}: {body}");
    }
    let (status, conn) = s
        .get(&format!("/api/v1/knowledge/{}/connection", r.kb), Some(&r.owner))
        .await;
    assert_eq!(status, StatusCode::OK, "{conn}");
    assert_eq!(
        (conn["has_stored_token"].as_bool(), conn["app_only"].as_bool()),
        (Some(false), Some(false))
    );
    s.stop().await;
}
