use crate::common::*;
use axum::extract::{Query, State};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// A webhook receiver on 127.0.0.1:0: echoes validation tokens (unless `echo` is false), forwards notifications.
struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<Value>,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn receiver(echo: bool) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    async fn hook(
        State((tx, echo)): State<(mpsc::UnboundedSender<Value>, bool)>,
        Query(q): Query<HashMap<String, String>>,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, [(&'static str, &'static str); 1], String) {
        if let Some(t) = q.get("validationToken") {
            let reply = if echo { t.clone() } else { "nope".into() };
            return (
                axum::http::StatusCode::OK,
                [("content-type", "text/plain")],
                reply,
            );
        }
        let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
        (
            axum::http::StatusCode::ACCEPTED,
            [("content-type", "text/plain")],
            String::new(),
        )
    }
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state((tx, echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?tenant=contoso", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .await
            .ok();
    });
    Receiver { url, rx, stop }
}

async fn create(env: &Env, body: Value) -> (u16, Value) {
    let r = env
        .http
        .post(env.url("/subscriptions"))
        .bearer_auth(&env.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn expiry(env: &Env, minutes: i64) -> String {
    (env.ctl.now() + chrono::Duration::minutes(minutes)).to_rfc3339()
}

#[tokio::test]
async fn subscription_is_created_after_the_validation_handshake() {
    let env = env().await;
    let hook = receiver(true).await;
    let (status, sub) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": hook.url, "lifecycleNotificationUrl": hook.url,
               "resource": format!("/drives/{}/root", env.drive), "expirationDateTime": expiry(&env, 60), "clientState": "secret"}),
    )
    .await;
    assert_eq!(status, 201, "{sub}");
    assert_eq!(sub["changeType"], "updated");
    assert_eq!(sub["clientState"], "secret");
    assert_eq!(
        sub["notificationUrl"], hook.url,
        "query strings in notificationUrl are preserved"
    );
    assert!(sub["id"].is_string() && sub["creatorId"] == env.user.as_str());
    let _ = hook.stop.send(());
    env.shutdown().await;
}

#[tokio::test]
async fn subscription_fails_when_the_receiver_does_not_echo_the_validation_token() {
    let env = env().await;
    let hook = receiver(false).await;
    let (status, body) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": hook.url, "resource": "/me/drive/root", "expirationDateTime": expiry(&env, 60)}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "ValidationError");
    let _ = hook.stop.send(());
    env.shutdown().await;
}

#[tokio::test]
async fn subscription_expiration_is_capped_at_42300_minutes() {
    let env = env().await;
    let hook = receiver(true).await;
    let base = json!({"changeType": "updated", "notificationUrl": hook.url, "resource": "/me/drive/root"});
    let mut too_long = base.clone();
    too_long["expirationDateTime"] = expiry(&env, 42_301).into();
    assert_eq!(create(&env, too_long).await.0, 400);
    let mut ok = base.clone();
    ok["expirationDateTime"] = expiry(&env, 42_300).into();
    assert_eq!(create(&env, ok).await.0, 201);
    let _ = hook.stop.send(());
    env.shutdown().await;
}

#[tokio::test]
async fn subscription_is_renewed_with_patch_and_removed_with_delete() {
    let env = env().await;
    let hook = receiver(true).await;
    let (_, sub) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": hook.url, "resource": "/me/drive/root", "expirationDateTime": expiry(&env, 60)}),
    )
    .await;
    let url = env.url(&format!("/subscriptions/{}", sub["id"].as_str().unwrap()));
    let new_exp = expiry(&env, 3000);
    let r = env
        .http
        .patch(&url)
        .bearer_auth(&env.token)
        .json(&json!({"expirationDateTime": new_exp}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let renewed: Value = r.json().await.unwrap();
    assert_eq!(
        renewed["expirationDateTime"].as_str().unwrap()[..16],
        new_exp[..16]
    );
    assert_eq!(
        env.http
            .delete(&url)
            .bearer_auth(&env.token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(env.get(&url).await.status(), 404);
    let _ = hook.stop.send(());
    env.shutdown().await;
}

#[tokio::test]
async fn drive_change_sends_a_notification_without_resource_data() {
    let env = env().await;
    let mut hook = receiver(true).await;
    let (_, sub) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": hook.url, "resource": format!("/drives/{}/root", env.drive),
               "expirationDateTime": expiry(&env, 60), "clientState": "s3cret"}),
    )
    .await;
    env.ctl.put_file(&env.drive, "/new.txt", "x").unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), hook.rx.recv())
        .await
        .unwrap()
        .unwrap();
    let v = &n["value"][0];
    assert_eq!(v["subscriptionId"], sub["id"]);
    assert_eq!(v["clientState"], "s3cret");
    assert_eq!(v["changeType"], "updated");
    assert_eq!(v["tenantId"], env.ctl.tenant_id());
    assert!(v.get("resourceData").is_none());
    let _ = hook.stop.send(());
    env.shutdown().await;
}

#[tokio::test]
async fn lifecycle_reauthorization_required_notification_is_sent() {
    let env = env().await;
    let mut hook = receiver(true).await;
    let (_, sub) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": hook.url, "lifecycleNotificationUrl": hook.url,
               "resource": "/me/drive/root", "expirationDateTime": expiry(&env, 60), "clientState": "c"}),
    )
    .await;
    let id = sub["id"].as_str().unwrap();
    env.ctl.send_reauthorization_required(id).unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), hook.rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n["value"][0]["lifecycleEvent"], "reauthorizationRequired");
    assert_eq!(n["value"][0]["subscriptionId"], id);
    let r = env
        .http
        .post(env.url(&format!("/subscriptions/{id}/reauthorize")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let _ = hook.stop.send(());
    env.shutdown().await;
}

#[tokio::test]
async fn business_drives_accept_only_root_subscriptions() {
    let env = env().await;
    let hook = receiver(true).await;
    let f = env.ctl.create_folder(&env.drive, "/Sub").unwrap();
    let (status, _) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": hook.url, "resource": format!("/drives/{}/items/{}", env.drive, f.id),
               "expirationDateTime": expiry(&env, 60)}),
    )
    .await;
    assert_eq!(status, 400);
    let _ = hook.stop.send(());
    env.shutdown().await;
}
