use crate::common::*;
use serde_json::{Value, json};

async fn post(env: &Env, path: &str, body: Value) -> (u16, Value) {
    let r = env
        .http
        .post(format!("{}{path}", env.emu.control_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::Null))
}

async fn put(env: &Env, path: &str, body: Value) -> (u16, Value) {
    let r = env
        .http
        .put(format!("{}{path}", env.emu.control_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::Null))
}

async fn get(env: &Env, path: &str) -> Value {
    env.http
        .get(format!("{}{path}", env.emu.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn control_api_puts_modifies_renames_moves_and_deletes_over_http() {
    let env = env().await;
    let d = env.drive.clone();
    let (s, f) = put(
        &env,
        &format!("/drives/{d}/files"),
        json!({"path": "/Reports/q1.txt", "content": "first"}),
    )
    .await;
    assert_eq!(s, 200, "{f}");
    let id = f["id"].as_str().unwrap().to_string();
    let (s, _) = put(
        &env,
        &format!("/drives/{d}/items/{id}/content"),
        json!({"content_base64": "c2Vjb25k"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, r) = post(
        &env,
        &format!("/drives/{d}/items/{id}/rename"),
        json!({"name": "q1-final.txt"}),
    )
    .await;
    assert_eq!((s, r["path"].as_str()), (200, Some("/Reports/q1-final.txt")));
    let (_, folder) = post(
        &env,
        &format!("/drives/{d}/folders"),
        json!({"path": "/Archive/2025"}),
    )
    .await;
    let (s, m) = post(
        &env,
        &format!("/drives/{d}/items/{id}/move"),
        json!({"parent_id": folder["id"]}),
    )
    .await;
    assert_eq!((s, m["path"].as_str()), (200, Some("/Archive/2025/q1-final.txt")));
    let bytes = {
        let item = env
            .get_json(&format!("/drives/{d}/root:/Archive/2025/q1-final.txt"))
            .await;
        env.http
            .get(item["@microsoft.graph.downloadUrl"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(bytes, "second");
    let r = env
        .http
        .delete(format!("{}/drives/{d}/items/{id}", env.emu.control_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(env.get(&format!("/drives/{d}/items/{id}")).await.status(), 404);
    let (s, e) = put(
        &env,
        &format!("/drives/{d}/files"),
        json!({"path": "/Archive", "content": "x"}),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    env.shutdown().await;
}

#[tokio::test]
async fn control_api_creates_users_drives_and_sites() {
    let env = env().await;
    let (s, u) = post(
        &env,
        "/users",
        json!({"display_name": "Bob Builder", "mail": "bob@contoso.onmicrosoft.com"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, d) = post(
        &env,
        "/drives",
        json!({"owner_user_id": u["id"], "drive_type": "personal"}),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["drive_type"], "personal");
    let (s, site) = post(
        &env,
        "/sites",
        json!({"display_name": "Project X", "libraries": ["Documents", "Specs"]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(site["drive_ids"].as_array().unwrap().len(), 2);
    let info = get(&env, "/info").await;
    assert_eq!(info["default_drive_id"], env.drive);
    assert_eq!(info["graph_url"], env.emu.graph_url());
    env.shutdown().await;
}

#[tokio::test]
async fn control_api_mints_tokens_revokes_and_expires_delta_tokens() {
    let env = env().await;
    let (s, t) = post(&env, &format!("/users/{}/tokens", env.user), json!({})).await;
    assert_eq!(s, 200);
    let me = env
        .http
        .get(env.url("/me"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let (s, r) = post(
        &env,
        &format!("/users/{}/revoke-refresh-tokens", env.user),
        json!({}),
    )
    .await;
    assert_eq!((s, r["revoked"].as_u64()), (200, Some(0)));
    let (_, _, link) = env
        .delta_round(&format!("/drives/{}/root/delta", env.drive))
        .await;
    let (s, _) = post(
        &env,
        &format!("/drives/{}/expire-delta-tokens", env.drive),
        json!({"code": "resyncChangesUploadDifferences"}),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(env.get(&link).await.status(), 410);
    env.shutdown().await;
}

#[tokio::test]
async fn control_api_advances_the_clock() {
    let env = env().await;
    let (s, r) = post(&env, "/clock/advance", json!({"seconds": 3600})).await;
    assert_eq!(s, 200);
    assert_eq!(r["now"], "2025-03-01T10:00:00Z");
    assert_eq!(get(&env, "/clock").await["now"], "2025-03-01T10:00:00Z");
    env.shutdown().await;
}

#[tokio::test]
async fn control_api_installs_faults_rate_limits_and_reads_the_request_log() {
    let env = env().await;
    let (s, f) = post(
        &env,
        "/faults",
        json!({"method": "GET", "route": "/v1.0/me", "trigger": {"type": "every_nth", "n": 2}, "count": 1,
               "action": {"type": "throttle", "status": 429, "retry_after": {"seconds": 3}}}),
    )
    .await;
    assert_eq!(s, 200, "{f}");
    let statuses = [
        env.get("/me").await.status(),
        env.get("/me").await.status(),
        env.get("/me").await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 429, 200]);
    let (s, _) = put(&env, "/rate-limit", json!({"requests_per_second": 1})).await;
    assert_eq!(s, 204);
    assert_eq!(
        env.get("/me").await.status(),
        200,
        "the budget counts from when the limit is set"
    );
    assert_eq!(env.get("/me").await.status(), 429, "1 per second");
    let log = get(&env, "/requests").await;
    assert_eq!(log["counts"]["GET /v1.0/me"], 5);
    assert_eq!(log["entries"][1]["fault"], "fault#1");
    let r = env
        .http
        .delete(format!("{}/faults", env.emu.control_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    env.shutdown().await;
}

#[tokio::test]
async fn reset_restores_the_initial_state() {
    let env = env_with(builder().generate(20)).await;
    let before = env
        .ctl
        .children(&env.drive, &env.ctl.drive(&env.drive).unwrap().root_id)
        .unwrap();
    env.ctl.put_file(&env.drive, "/extra.txt", "x").unwrap();
    env.ctl.advance_clock(chrono::Duration::hours(5));
    env.ctl.set_rate_limit(Some(1));
    env.get("/me").await;
    let r = env
        .http
        .post(format!("{}/reset", env.emu.control_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let after = env
        .ctl
        .children(&env.drive, &env.ctl.drive(&env.drive).unwrap().root_id)
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(env.ctl.now(), start_time());
    assert!(env.ctl.request_log().entries.is_empty());
    // Tokens minted before the reset are gone with the state.
    assert_eq!(env.get("/me").await.status(), 401);
    env.shutdown().await;
}
