//! API keys and account administration through the HTTP API: keys by scope, revoked and expired
//! keys, keys of disabled accounts, service keys and their grants, what keys may not do, admin
//! actions on accounts (roles, disabling, deleting with and without handing knowledge bases over,
//! password resets, the last-admin guard) and a person's own password change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{ADMIN_EMAIL, Db, Options, PASSWORD, TestServer};
use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    a_personal_key_is_shown_once_listed_without_the_key_and_revoked_only_by_its_owner,
    a_read_key_searches_lists_and_reads_content_but_cannot_change_anything,
    key_requests_are_validated,
    revoked_and_expired_keys_are_refused,
    keys_cannot_create_keys_or_change_passwords_and_signing_out_with_one_leaves_it_working,
    a_disabled_user_is_refused_with_session_and_key_until_re_enabled,
    a_keys_last_use_is_recorded_at_most_once_a_minute,
    a_service_key_reads_only_what_its_account_is_granted,
    non_admins_get_403_on_admin_routes,
    admins_list_users_and_role_changes_take_effect,
    the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted,
    deleting_a_user_with_a_transfer_keeps_their_knowledge_bases,
    deleting_a_user_without_a_transfer_deletes_their_knowledge_bases_and_grants,
    changing_ones_own_password_ends_the_other_sessions_only,
    an_admin_password_reset_ends_that_users_sessions,
);

/// Makes a key as `token`'s account: (id, key).
async fn key(s: &TestServer, token: &str, scope: &str) -> (String, String) {
    let (status, body) = s
        .post(
            "/api/v1/me/api-keys",
            Some(token),
            json!({"name": format!("{scope} key"), "scope": scope}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

async fn delete(s: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    s.call(Method::DELETE, path, Some(token), None).await
}

async fn patch(s: &TestServer, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::PATCH, path, Some(token), Some(body)).await
}

async fn a_personal_key_is_shown_once_listed_without_the_key_and_revoked_only_by_its_owner(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, alice) = s.user(&admin, "alice@example.com").await;
    let (_, bob) = s.user(&admin, "bob@example.com").await;

    let (status, body) = s
        .post(
            "/api/v1/me/api-keys",
            Some(&alice),
            json!({"name": "assistant", "scope": "read", "expires_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["key"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kbs_"), "{secret}");
    assert!(secret.len() >= 4 + 64, "{secret}");
    assert_eq!(body["name"], "assistant");
    assert_eq!(body["scope"], "read");
    assert_eq!(body["expires_at"], "2030-01-01T00:00:00Z");
    assert_eq!(body["last_used_at"], Value::Null);
    let prefix = body["prefix"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(&prefix) && prefix.len() < 16, "{prefix}");

    let (status, me) = s.get("/api/v1/me", Some(&secret)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "alice@example.com");

    let (status, list) = s.get("/api/v1/me/api-keys", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["prefix"], prefix.as_str());
    assert!(
        !list.to_string().contains(&secret),
        "the list shows the key: {list}"
    );
    let (_, bobs) = s.get("/api/v1/me/api-keys", Some(&bob)).await;
    assert_eq!(bobs["items"].as_array().unwrap().len(), 0);

    // Someone else's key is not found; the owner's revocation works once.
    let (status, _) = delete(&s, &format!("/api/v1/me/api-keys/{id}"), &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/me", Some(&secret)).await.0, StatusCode::OK);
    let (status, _) = delete(&s, &format!("/api/v1/me/api-keys/{id}"), &alice).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = delete(&s, &format!("/api/v1/me/api-keys/{id}"), &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = s.get("/api/v1/me", Some(&secret)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    s.stop().await;
}

async fn a_read_key_searches_lists_and_reads_content_but_cannot_change_anything(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, alice) = s.user(&admin, "alice@example.com").await;
    let kb = s.create_kb(&alice, "notes").await;
    let (status, up) = s
        .upload(Some(&alice), &kb, "heron.txt", b"The grey heron waits.".to_vec())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let file = up["id"].as_str().unwrap().to_owned();
    s.wait_processed(&alice, &kb, &file).await;

    let (_, read) = key(&s, &alice, "read").await;
    let (status, list) = s.get("/api/v1/knowledge", Some(&read)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["items"][0]["id"], kb.as_str());
    assert_eq!(
        s.get(&format!("/api/v1/knowledge/{kb}"), Some(&read)).await.0,
        StatusCode::OK
    );
    let (status, files) = s.get(&format!("/api/v1/knowledge/{kb}/files"), Some(&read)).await;
    assert_eq!(status, StatusCode::OK, "{files}");
    let resp = s
        .http
        .get(format!("{}/api/v1/knowledge/{kb}/files/{file}/content", s.base))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "The grey heron waits.");
    let (status, found) = s.get("/api/v1/search?q=heron", Some(&read)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["results"].as_array().unwrap().len(), 1, "{found}");

    // Every change is refused with a message, and nothing changed.
    let (status, body) = s
        .post("/api/v1/knowledge", Some(&read), json!({"name": "nope"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("read"),
        "{body}"
    );
    let (status, _) = s.upload(Some(&read), &kb, "x.txt", b"x".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        delete(&s, &format!("/api/v1/knowledge/{kb}/files/{file}"), &read)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        patch(
            &s,
            &format!("/api/v1/knowledge/{kb}"),
            &read,
            json!({"name": "renamed"})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        delete(&s, &format!("/api/v1/knowledge/{kb}"), &read).await.0,
        StatusCode::FORBIDDEN
    );
    let (_, after) = s.get(&format!("/api/v1/knowledge/{kb}"), Some(&alice)).await;
    assert_eq!(after["name"], "notes");

    // A write key may change what its account may change.
    let (_, write) = key(&s, &alice, "write").await;
    let (status, body) = s
        .post("/api/v1/knowledge", Some(&write), json!({"name": "by a script"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        delete(&s, &format!("/api/v1/knowledge/{kb}/files/{file}"), &write)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    s.stop().await;
}

async fn key_requests_are_validated(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let post = |body: Value| s.post("/api/v1/me/api-keys", Some(&admin), body);
    let (status, body) = post(json!({"name": "  ", "scope": "read"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with("name"),
        "{body}"
    );
    let (status, body) = post(json!({"name": "x".repeat(101), "scope": "read"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = post(json!({"name": "k", "scope": "admin"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("scope"),
        "{body}"
    );
    let now = s.state.clock.now();
    let (status, body) = post(json!({"name": "k", "scope": "read", "expires_at": now})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("expires_at"),
        "{body}"
    );
    let (status, body) = post(json!({"name": "k", "scope": "read", "expires_at": "tomorrow"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = post(json!({"name": "k"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, list) = s.get("/api/v1/me/api-keys", Some(&admin)).await;
    assert!(list["items"].as_array().unwrap().is_empty(), "{list}");
    s.stop().await;
}

async fn revoked_and_expired_keys_are_refused(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let expires = s.state.clock.now() + Duration::hours(1);
    let (status, body) = s
        .post(
            "/api/v1/me/api-keys",
            Some(&admin),
            json!({"name": "short", "scope": "write", "expires_at": expires}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let short = body["key"].as_str().unwrap().to_owned();
    let (revoked_id, revoked) = key(&s, &admin, "read").await;
    assert_eq!(s.get("/api/v1/me", Some(&short)).await.0, StatusCode::OK);
    assert_eq!(s.get("/api/v1/me", Some(&revoked)).await.0, StatusCode::OK);

    delete(&s, &format!("/api/v1/me/api-keys/{revoked_id}"), &admin).await;
    let (status, body) = s.get("/api/v1/me", Some(&revoked)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");

    s.clock.advance(Duration::minutes(59));
    assert_eq!(s.get("/api/v1/me", Some(&short)).await.0, StatusCode::OK);
    s.clock.advance(Duration::minutes(1));
    assert_eq!(
        s.get("/api/v1/me", Some(&short)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.post("/api/v1/knowledge", Some(&short), json!({"name": "x"}))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // A made-up key and a key-shaped session token are refused alike.
    let (status, _) = s
        .get("/api/v1/me", Some(&format!("kbs_{}", "0".repeat(64))))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn keys_cannot_create_keys_or_change_passwords_and_signing_out_with_one_leaves_it_working(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (alice_id, alice) = s.user(&admin, "alice@example.com").await;
    let (key_id, write) = key(&s, &alice, "write").await;

    let (status, body) = s
        .post(
            "/api/v1/me/api-keys",
            Some(&write),
            json!({"name": "more", "scope": "write"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = s
        .post(
            "/api/v1/me/password",
            Some(&write),
            json!({"current_password": PASSWORD, "new_password": "another password"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, admin_write) = key(&s, &admin, "write").await;
    let (status, _) = s
        .post(
            "/api/v1/admin/api-keys",
            Some(&admin_write),
            json!({"name": "svc", "scope": "read"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .post(
            &format!("/api/v1/users/{alice_id}/password"),
            Some(&admin_write),
            json!({"password": "taken over!"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.login("alice@example.com", PASSWORD).await;

    let (status, body) = s.post("/api/v1/auth/logout", Some(&write), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(s.get("/api/v1/me", Some(&write)).await.0, StatusCode::OK);
    // A key may revoke itself: that only takes access away.
    assert_eq!(
        delete(&s, &format!("/api/v1/me/api-keys/{key_id}"), &write)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("/api/v1/me", Some(&write)).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

async fn a_disabled_user_is_refused_with_session_and_key_until_re_enabled(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (alice_id, alice) = s.user(&admin, "alice@example.com").await;
    let kb = s.create_kb(&alice, "notes").await;
    let (_, read) = key(&s, &alice, "read").await;

    let (status, body) = patch(
        &s,
        &format!("/api/v1/users/{alice_id}"),
        &admin,
        json!({"disabled": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);
    for token in [&alice, &read] {
        for path in [
            "/api/v1/me".to_owned(),
            format!("/api/v1/knowledge/{kb}"),
            "/api/v1/search?q=x".into(),
        ] {
            let (status, body) = s.get(&path, Some(token)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        }
    }
    let (status, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = patch(
        &s,
        &format!("/api/v1/users/{alice_id}"),
        &admin,
        json!({"disabled": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The key works again; the old session ended for good.
    assert_eq!(s.get("/api/v1/me", Some(&read)).await.0, StatusCode::OK);
    assert_eq!(
        s.get("/api/v1/me", Some(&alice)).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.login("alice@example.com", PASSWORD).await;
    s.stop().await;
}

async fn a_keys_last_use_is_recorded_at_most_once_a_minute(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, read) = key(&s, &admin, "read").await;
    let last_used = || async {
        let (_, list) = s.get("/api/v1/me/api-keys", Some(&admin)).await;
        list["items"][0]["last_used_at"].clone()
    };
    assert_eq!(last_used().await, Value::Null);
    let first = s.state.clock.now();
    s.get("/api/v1/me", Some(&read)).await;
    assert_eq!(last_used().await, json!(first));
    s.clock.advance(Duration::seconds(30));
    s.get("/api/v1/me", Some(&read)).await;
    assert_eq!(last_used().await, json!(first), "written again within the minute");
    s.clock.advance(Duration::seconds(31));
    let later = s.state.clock.now();
    s.get("/api/v1/me", Some(&read)).await;
    assert_eq!(last_used().await, json!(later));
    s.stop().await;
}

async fn a_service_key_reads_only_what_its_account_is_granted(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let granted = s.create_kb(&admin, "granted").await;
    let other = s.create_kb(&admin, "other").await;

    let (status, body) = s
        .post(
            "/api/v1/admin/api-keys",
            Some(&admin),
            json!({"name": "assistant", "scope": "read"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let service_key = body["key"].as_str().unwrap().to_owned();
    let account = body["owner"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["owner"]["kind"], "service");
    assert!(
        body["owner"]["email"].as_str().unwrap().ends_with(".invalid"),
        "{body}"
    );

    let (status, me) = s.get("/api/v1/me", Some(&service_key)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["role"], "user");
    let (_, list) = s.get("/api/v1/knowledge", Some(&service_key)).await;
    assert_eq!(list["total"], 0, "{list}");

    let (status, body) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{granted}/access"),
            Some(&admin),
            Some(json!({"read": [account], "write": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list) = s.get("/api/v1/knowledge", Some(&service_key)).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["id"], granted.as_str());
    assert_eq!(
        s.get(&format!("/api/v1/knowledge/{other}"), Some(&service_key))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // A service account never signs in and gets no password; it cannot become an admin.
    let (status, _) = s
        .post(
            &format!("/api/v1/users/{account}/password"),
            Some(&admin),
            json!({"password": "a password!"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = patch(
        &s,
        &format!("/api/v1/users/{account}"),
        &admin,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, all) = s.get("/api/v1/admin/api-keys", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["owner"]["id"], account.as_str());
    assert!(!all.to_string().contains(&service_key));
    let id = items[0]["id"].as_str().unwrap();
    assert_eq!(
        delete(&s, &format!("/api/v1/admin/api-keys/{id}"), &admin)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("/api/v1/me", Some(&service_key)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The account stays, listed as a service account.
    let (_, users) = s.get("/api/v1/users", Some(&admin)).await;
    assert!(
        users["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == account.as_str() && u["kind"] == "service"),
        "{users}"
    );
    s.stop().await;
}

async fn non_admins_get_403_on_admin_routes(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (admin_key_id, _) = key(&s, &admin, "read").await;
    let (bob_id, _) = s.user(&admin, "bob@example.com").await;
    let (_, alice) = s.user(&admin, "alice@example.com").await;
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/users".into(), None),
        (Method::GET, format!("/api/v1/users/{bob_id}"), None),
        (
            Method::PATCH,
            format!("/api/v1/users/{bob_id}"),
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, format!("/api/v1/users/{bob_id}"), None),
        (
            Method::POST,
            format!("/api/v1/users/{bob_id}/password"),
            Some(json!({"password": "new password"})),
        ),
        (Method::GET, "/api/v1/admin/api-keys".into(), None),
        (
            Method::POST,
            "/api/v1/admin/api-keys".into(),
            Some(json!({"name": "x", "scope": "read"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/admin/api-keys/{admin_key_id}"),
            None,
        ),
    ];
    for (method, path, body) in calls {
        let (status, answer) = s.call(method.clone(), &path, Some(&alice), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
    }
    let (_, me) = s.get("/api/v1/users", Some(&admin)).await;
    assert_eq!(me["total"], 3);
    let (_, keys) = s.get("/api/v1/admin/api-keys", Some(&admin)).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn admins_list_users_and_role_changes_take_effect(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (bob_id, bob) = s.user(&admin, "bob@example.com").await;
    let (status, list) = s.get("/api/v1/users", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 2);
    let first = &list["items"][0];
    assert_eq!(first["email"], ADMIN_EMAIL);
    assert_eq!(first["role"], "admin");
    assert_eq!(first["kind"], "person");
    assert_eq!(first["disabled"], false);
    assert_eq!(first["has_password"], true);
    assert_eq!(first["oidc"], false);
    assert!(first.get("password_hash").is_none());
    assert_eq!(list["items"][1]["id"], bob_id.as_str());

    assert_eq!(s.get("/api/v1/users", Some(&bob)).await.0, StatusCode::FORBIDDEN);
    let (status, body) = patch(
        &s,
        &format!("/api/v1/users/{bob_id}"),
        &admin,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "admin");
    // At once, with the session bob already has.
    assert_eq!(s.get("/api/v1/users", Some(&bob)).await.0, StatusCode::OK);
    let (status, _) = patch(
        &s,
        &format!("/api/v1/users/{bob_id}"),
        &admin,
        json!({"role": "user"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.get("/api/v1/users", Some(&bob)).await.0, StatusCode::FORBIDDEN);

    let (status, _) = patch(
        &s,
        &format!("/api/v1/users/{bob_id}"),
        &admin,
        json!({"role": "owner"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = patch(&s, &format!("/api/v1/users/{bob_id}"), &admin, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let ghost = uuid::Uuid::new_v4();
    let (status, _) = patch(
        &s,
        &format!("/api/v1/users/{ghost}"),
        &admin,
        json!({"role": "user"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, me) = s.get("/api/v1/me", Some(&admin)).await;
    let admin_id = me["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/users/{admin_id}");
    for change in [json!({"role": "user"}), json!({"disabled": true})] {
        let (status, body) = patch(&s, &path, &admin, change).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("admin"),
            "{body}"
        );
    }
    let (status, body) = delete(&s, &path, &admin).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(s.get("/api/v1/users", Some(&admin)).await.0, StatusCode::OK);

    // With a second admin, the first may step down.
    let (bob_id, _) = s.user(&admin, "bob@example.com").await;
    patch(
        &s,
        &format!("/api/v1/users/{bob_id}"),
        &admin,
        json!({"role": "admin"}),
    )
    .await;
    let (status, body) = patch(&s, &path, &admin, json!({"role": "user"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.stop().await;
}

async fn deleting_a_user_with_a_transfer_keeps_their_knowledge_bases(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (leaver_id, leaver) = s.user(&admin, "leaver@example.com").await;
    let (heir_id, heir) = s.user(&admin, "heir@example.com").await;
    let kb = s.create_kb(&leaver, "handbook").await;
    let (status, up) = s.upload(Some(&leaver), &kb, "a.txt", b"kept text".to_vec()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    s.wait_processed(&leaver, &kb, up["id"].as_str().unwrap()).await;

    let (status, body) = delete(
        &s,
        &format!("/api/v1/users/{leaver_id}?transfer_to={}", uuid::Uuid::new_v4()),
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = delete(
        &s,
        &format!("/api/v1/users/{leaver_id}?transfer_to={heir_id}"),
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    assert_eq!(
        s.get("/api/v1/me", Some(&leaver)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get(&format!("/api/v1/users/{leaver_id}"), Some(&admin)).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, got) = s.get(&format!("/api/v1/knowledge/{kb}"), Some(&heir)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["owner_id"], heir_id.as_str());
    assert_eq!(got["access"], "manage");
    let (_, files) = s.get(&format!("/api/v1/knowledge/{kb}/files"), Some(&heir)).await;
    assert_eq!(files["total"], 1, "{files}");
    s.stop().await;
}

async fn deleting_a_user_without_a_transfer_deletes_their_knowledge_bases_and_grants(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (leaver_id, leaver) = s.user(&admin, "leaver@example.com").await;
    let (reader_id, reader) = s.user(&admin, "reader@example.com").await;
    let theirs = s.create_kb(&leaver, "theirs").await;
    let (status, up) = s
        .upload(Some(&leaver), &theirs, "a.txt", b"gone soon".to_vec())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    s.wait_processed(&leaver, &theirs, up["id"].as_str().unwrap())
        .await;
    let shared = s.create_kb(&admin, "shared").await;
    let (status, _) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{shared}/access"),
            Some(&admin),
            Some(json!({"read": [reader_id], "write": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = delete(&s, &format!("/api/v1/users/{leaver_id}"), &admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        s.get(&format!("/api/v1/knowledge/{theirs}"), Some(&admin))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/api/v1/me", Some(&leaver)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, found) = s.get("/api/v1/search?q=gone", Some(&admin)).await;
    assert_eq!(found["results"].as_array().unwrap().len(), 0, "{found}");

    let (status, body) = delete(&s, &format!("/api/v1/users/{reader_id}"), &admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, access) = s
        .get(&format!("/api/v1/knowledge/{shared}/access"), Some(&admin))
        .await;
    assert_eq!(access["read"].as_array().unwrap().len(), 0, "{access}");
    assert_eq!(
        s.get("/api/v1/me", Some(&reader)).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

async fn changing_ones_own_password_ends_the_other_sessions_only(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, first) = s.user(&admin, "alice@example.com").await;
    let second = s.login("alice@example.com", PASSWORD).await;
    let (_, read) = key(&s, &first, "read").await;

    let (status, body) = s
        .post(
            "/api/v1/me/password",
            Some(&first),
            json!({"current_password": "not it at all", "new_password": "a new password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(s.get("/api/v1/me", Some(&second)).await.0, StatusCode::OK);
    let (status, body) = s
        .post(
            "/api/v1/me/password",
            Some(&first),
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = s
        .post(
            "/api/v1/me/password",
            Some(&first),
            json!({"current_password": PASSWORD, "new_password": "a new password"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(s.get("/api/v1/me", Some(&first)).await.0, StatusCode::OK);
    assert_eq!(
        s.get("/api/v1/me", Some(&second)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/api/v1/me", Some(&read)).await.0,
        StatusCode::OK,
        "keys stay"
    );
    let (status, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.login("alice@example.com", "a new password").await;
    s.stop().await;
}

async fn an_admin_password_reset_ends_that_users_sessions(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (alice_id, alice) = s.user(&admin, "alice@example.com").await;
    let (status, body) = s
        .post(
            &format!("/api/v1/users/{alice_id}/password"),
            Some(&admin),
            json!({"password": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(s.get("/api/v1/me", Some(&alice)).await.0, StatusCode::OK);
    let (status, body) = s
        .post(
            &format!("/api/v1/users/{alice_id}/password"),
            Some(&admin),
            json!({"password": "set by the admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        s.get("/api/v1/me", Some(&alice)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.get("/api/v1/me", Some(&admin)).await.0, StatusCode::OK);
    s.login("alice@example.com", "set by the admin").await;
    s.stop().await;
}
