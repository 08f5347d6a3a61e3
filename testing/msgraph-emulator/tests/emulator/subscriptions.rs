use crate::common::*;
use axum::extract::{Query, State};
use axum::routing::post;
use msgraph_emulator::{NotificationDelivery, NotificationPolicy};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How a test webhook receiver answers.
#[derive(Clone)]
struct Behaviour {
    /// Echo the validation token (otherwise answer something else).
    echo: bool,
    /// `Content-Type` of the validation answer.
    validation_content_type: &'static str,
    /// Answer 500 to this many notification posts before accepting.
    fail_first: usize,
    /// Hold the answer to the first notification post this long.
    first_answer_delay: Option<Duration>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            echo: true,
            validation_content_type: "text/plain",
            fail_first: 0,
            first_answer_delay: None,
        }
    }
}

/// A webhook receiver on 127.0.0.1:0: answers validation requests and notification posts as its [`Behaviour`]
/// says, and forwards the notifications it accepts.
struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<Value>,
    /// Notification posts received (accepted or not).
    posts: Arc<AtomicUsize>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Stops the server and waits until it has closed its connections.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

#[derive(Clone)]
struct HookState {
    tx: mpsc::UnboundedSender<Value>,
    behaviour: Behaviour,
    posts: Arc<AtomicUsize>,
}

async fn receiver(echo: bool) -> Receiver {
    receiver_with(Behaviour {
        echo,
        ..Behaviour::default()
    })
    .await
}

async fn receiver_with(behaviour: Behaviour) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    async fn hook(
        State(st): State<HookState>,
        Query(q): Query<HashMap<String, String>>,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, [(&'static str, &'static str); 1], String) {
        if let Some(t) = q.get("validationToken") {
            let reply = if st.behaviour.echo {
                t.clone()
            } else {
                "nope".into()
            };
            return (
                axum::http::StatusCode::OK,
                [("content-type", st.behaviour.validation_content_type)],
                reply,
            );
        }
        let seen = st.posts.fetch_add(1, Ordering::SeqCst);
        if seen == 0
            && let Some(d) = st.behaviour.first_answer_delay
        {
            tokio::time::sleep(d).await;
        }
        if seen < st.behaviour.fail_first {
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "text/plain")],
                String::new(),
            );
        }
        let _ = st.tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
        (
            axum::http::StatusCode::ACCEPTED,
            [("content-type", "text/plain")],
            String::new(),
        )
    }
    let posts = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(HookState {
            tx,
            behaviour,
            posts: posts.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?tenant=contoso", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .await
            .ok();
    });
    Receiver {
        url,
        rx,
        posts,
        stop,
        task,
    }
}

/// Polls `f` until it gives a value; fails the test after 15 s.
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(v) = f() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until the emulator has no notification on its way, then returns every delivery attempt.
async fn settled_deliveries(env: &Env) -> Vec<NotificationDelivery> {
    until("the deliveries to settle", || {
        (env.ctl.notifications_in_flight() == 0).then_some(())
    })
    .await;
    env.ctl.notification_deliveries()
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
    hook.stop().await;
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
    hook.stop().await;
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
    hook.stop().await;
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
    hook.stop().await;
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
    hook.stop().await;
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
    hook.stop().await;
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
    hook.stop().await;
    env.shutdown().await;
}

/// Creates a subscription to the default drive's root notifying (and lifecycle-notifying) `hook`.
async fn subscribe(env: &Env, hook: &Receiver, client_state: &str) -> Value {
    let (status, sub) = create(
        env,
        json!({"changeType": "updated", "notificationUrl": hook.url, "lifecycleNotificationUrl": hook.url,
               "resource": format!("/drives/{}/root", env.drive), "expirationDateTime": expiry(env, 60),
               "clientState": client_state}),
    )
    .await;
    assert_eq!(status, 201, "{sub}");
    sub
}

fn change_attempts(deliveries: &[NotificationDelivery], sub_id: &str) -> Vec<NotificationDelivery> {
    deliveries
        .iter()
        .filter(|d| d.subscription_id == sub_id && d.kind == "change")
        .cloned()
        .collect()
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_doubling_delays_until_accepted() {
    let env = env().await;
    assert_eq!(
        env.ctl.notification_policy(),
        NotificationPolicy {
            retry_base_delay_ms: 200,
            max_attempts: 6,
            answer_timeout_ms: 3000
        },
        "the default schedule"
    );
    let mut hook = receiver_with(Behaviour {
        fail_first: 2,
        ..Behaviour::default()
    })
    .await;
    let sub = subscribe(&env, &hook, "s").await;
    let sub_id = sub["id"].as_str().unwrap();
    env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();

    let attempts = change_attempts(&settled_deliveries(&env).await, sub_id);
    let statuses: Vec<_> = attempts.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(202)], "{attempts:?}");
    assert_eq!(attempts.iter().map(|d| d.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        attempts
            .iter()
            .all(|d| d.notification_id == attempts[0].notification_id && d.error.is_none()),
        "one notification, three attempts: {attempts:?}"
    );
    assert!(attempts[2].accepted() && !attempts[1].accepted());
    let first_gap = attempts[1].since_first_attempt_ms - attempts[0].since_first_attempt_ms;
    let second_gap = attempts[2].since_first_attempt_ms - attempts[1].since_first_attempt_ms;
    assert!(first_gap >= 200, "waits the base delay first: {attempts:?}");
    assert!(second_gap >= 400, "then twice as long: {attempts:?}");
    assert!(second_gap > first_gap, "{attempts:?}");
    assert_eq!(hook.posts.load(Ordering::SeqCst), 3);
    let accepted = hook.rx.recv().await.unwrap();
    assert_eq!(accepted["value"][0]["id"], attempts[0].notification_id.as_str());
    hook.stop().await;
    env.shutdown().await;
}

#[tokio::test]
async fn delivery_gives_up_after_the_configured_attempts() {
    let policy = NotificationPolicy {
        retry_base_delay_ms: 5,
        max_attempts: 3,
        ..NotificationPolicy::default()
    };
    let env = env_with(builder().notification_policy(policy)).await;
    assert_eq!(env.ctl.notification_policy(), policy);
    let hook = receiver_with(Behaviour {
        fail_first: usize::MAX,
        ..Behaviour::default()
    })
    .await;
    let sub = subscribe(&env, &hook, "s").await;
    env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    let attempts = change_attempts(&settled_deliveries(&env).await, sub["id"].as_str().unwrap());
    assert_eq!(
        attempts.iter().map(|d| (d.attempt, d.status)).collect::<Vec<_>>(),
        [(1, Some(500)), (2, Some(500)), (3, Some(500))]
    );
    hook.stop().await;
    env.shutdown().await;
}

#[tokio::test]
async fn an_answer_later_than_the_timeout_fails_the_attempt_and_answer_times_are_recorded() {
    let env = env().await;
    env.ctl.set_notification_policy(NotificationPolicy {
        retry_base_delay_ms: 20,
        answer_timeout_ms: 500,
        ..NotificationPolicy::default()
    });
    let hook = receiver_with(Behaviour {
        first_answer_delay: Some(Duration::from_millis(2000)),
        ..Behaviour::default()
    })
    .await;
    let sub = subscribe(&env, &hook, "s").await;
    env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    let attempts = change_attempts(&settled_deliveries(&env).await, sub["id"].as_str().unwrap());
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].status, None);
    assert_eq!(attempts[0].error.as_deref(), Some("timeout"));
    assert!(
        (500..2000).contains(&attempts[0].elapsed_ms),
        "the attempt ends at the timeout: {attempts:?}"
    );
    assert_eq!(attempts[1].status, Some(202));
    assert!(attempts[1].elapsed_ms < 500, "{attempts:?}");
    hook.stop().await;
    env.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_receiver_is_recorded_as_a_connection_error() {
    let env = env().await;
    env.ctl.set_notification_policy(NotificationPolicy {
        retry_base_delay_ms: 5,
        max_attempts: 2,
        ..NotificationPolicy::default()
    });
    let hook = receiver(true).await;
    let sub = subscribe(&env, &hook, "s").await;
    hook.stop().await;
    env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    let attempts = change_attempts(&settled_deliveries(&env).await, sub["id"].as_str().unwrap());
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|d| d.status.is_none() && d.error.as_deref() == Some("connection")),
        "{attempts:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn validation_fails_when_the_answer_is_not_text_plain() {
    let env = env().await;
    let json_hook = receiver_with(Behaviour {
        validation_content_type: "application/json",
        ..Behaviour::default()
    })
    .await;
    let (status, body) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": json_hook.url, "resource": "/me/drive/root",
               "expirationDateTime": expiry(&env, 60)}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "ValidationError");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("text/plain"),
        "{body}"
    );

    let charset_hook = receiver_with(Behaviour {
        validation_content_type: "text/plain; charset=utf-8",
        ..Behaviour::default()
    })
    .await;
    let (status, body) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": charset_hook.url, "resource": "/me/drive/root",
               "expirationDateTime": expiry(&env, 60)}),
    )
    .await;
    assert_eq!(status, 201, "parameters of text/plain are fine: {body}");

    // The lifecycle URL is validated the same way.
    let (status, body) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": charset_hook.url, "lifecycleNotificationUrl": json_hook.url,
               "resource": "/me/drive/root", "expirationDateTime": expiry(&env, 60)}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(env.ctl.subscriptions().len(), 1);
    json_hook.stop().await;
    charset_hook.stop().await;
    env.shutdown().await;
}

/// A receiver that never accepts gets its first attempt; then `drop_it` ends the subscription, and the
/// emulator must stop retrying although attempts are left (the schedule would run for 15 s).
async fn retries_stop_when(drop_it: impl FnOnce(&Env, &str)) {
    let env = env().await;
    env.ctl.set_notification_policy(NotificationPolicy {
        retry_base_delay_ms: 500,
        max_attempts: 6,
        ..NotificationPolicy::default()
    });
    let hook = receiver_with(Behaviour {
        fail_first: usize::MAX,
        ..Behaviour::default()
    })
    .await;
    let sub = subscribe(&env, &hook, "s").await;
    let sub_id = sub["id"].as_str().unwrap();
    env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    until("the first attempt", || {
        (!change_attempts(&env.ctl.notification_deliveries(), sub_id).is_empty()).then_some(())
    })
    .await;
    drop_it(&env, sub_id);
    let attempts = change_attempts(&settled_deliveries(&env).await, sub_id);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(hook.posts.load(Ordering::SeqCst), 1);
    hook.stop().await;
    env.shutdown().await;
}

#[tokio::test]
async fn retries_stop_when_the_subscription_is_removed() {
    retries_stop_when(|env, id| env.ctl.remove_subscription(id).unwrap()).await;
}

#[tokio::test]
async fn retries_stop_when_the_subscription_expires() {
    retries_stop_when(|env, id| env.ctl.expire_subscription(id).unwrap()).await;
}

#[tokio::test]
async fn a_removed_subscription_answers_404_so_the_client_must_create_a_new_one() {
    let env = env().await;
    let hook = receiver(true).await;
    let sub = subscribe(&env, &hook, "s").await;
    let id = sub["id"].as_str().unwrap();
    env.ctl.remove_subscription(id).unwrap();

    let url = env.url(&format!("/subscriptions/{id}"));
    let r = env
        .http
        .patch(&url)
        .bearer_auth(&env.token)
        .json(&json!({"expirationDateTime": expiry(&env, 120)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ResourceNotFound");
    assert_eq!(env.get(&url).await.status(), 404);
    assert!(env.ctl.subscriptions().is_empty());
    assert!(env.ctl.remove_subscription(id).is_err());

    env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    assert_eq!(env.ctl.notifications_in_flight(), 0, "nothing is sent");
    assert!(env.ctl.notification_deliveries().is_empty());

    let again = subscribe(&env, &hook, "s").await;
    assert_ne!(again["id"], sub["id"]);
    hook.stop().await;
    env.shutdown().await;
}

#[tokio::test]
async fn an_expired_subscription_answers_404_and_gets_no_more_notifications() {
    let env = env().await;
    let mut hook = receiver(true).await;
    let sub = subscribe(&env, &hook, "s").await;
    let id = sub["id"].as_str().unwrap();
    env.ctl.expire_subscription(id).unwrap();

    let url = env.url(&format!("/subscriptions/{id}"));
    assert_eq!(env.get(&url).await.status(), 404);
    let patch = env
        .http
        .patch(&url)
        .bearer_auth(&env.token)
        .json(&json!({"expirationDateTime": expiry(&env, 120)}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 404);
    let delete = env
        .http
        .delete(&url)
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    let listed = env.get_json("/subscriptions").await;
    assert_eq!(listed["value"], json!([]));

    env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    assert_eq!(env.ctl.notifications_in_flight(), 0, "nothing is sent");
    assert!(env.ctl.notification_deliveries().is_empty());
    assert!(
        env.ctl.send_reauthorization_required(id).is_err(),
        "no lifecycle notification for an expired subscription"
    );
    assert!(
        hook.rx.try_recv().is_err(),
        "driveItem subscriptions get no subscriptionRemoved lifecycle event"
    );

    let info = env.ctl.subscription(id).unwrap();
    assert!(info.expired);
    assert_eq!(info.expiration_date_time, env.ctl.now());
    hook.stop().await;
    env.shutdown().await;
}

#[tokio::test]
async fn control_lists_every_subscription_expired_ones_flagged() {
    let env = env().await;
    let hook = receiver(true).await;
    let with_lifecycle = subscribe(&env, &hook, "state one").await;
    let (status, plain) = create(
        &env,
        json!({"changeType": "updated", "notificationUrl": hook.url, "resource": "/me/drive/root",
               "expirationDateTime": expiry(&env, 90)}),
    )
    .await;
    assert_eq!(status, 201);
    env.ctl
        .expire_subscription(plain["id"].as_str().unwrap())
        .unwrap();

    let mut subs = env.ctl.subscriptions();
    subs.sort_by_key(|s| s.expired);
    assert_eq!(subs.len(), 2);
    let (live, expired) = (&subs[0], &subs[1]);
    assert_eq!(live.id, with_lifecycle["id"].as_str().unwrap());
    assert_eq!(live.drive_id, env.drive);
    assert_eq!(live.resource, format!("/drives/{}/root", env.drive));
    assert_eq!(live.notification_url, hook.url);
    assert_eq!(
        live.lifecycle_notification_url.as_deref(),
        Some(hook.url.as_str())
    );
    assert_eq!(live.client_state.as_deref(), Some("state one"));
    assert_eq!(
        live.expiration_date_time,
        env.ctl.now() + chrono::Duration::minutes(60)
    );
    assert!(!live.expired);
    assert_eq!(expired.id, plain["id"].as_str().unwrap());
    assert_eq!(expired.resource, "/me/drive/root");
    assert_eq!(expired.drive_id, env.drive, "the resource resolved to its drive");
    assert_eq!(expired.lifecycle_notification_url, None);
    assert_eq!(expired.client_state, None);
    assert!(expired.expired);
    hook.stop().await;
    env.shutdown().await;
}

#[tokio::test]
async fn control_api_lists_removes_and_expires_subscriptions_over_http() {
    let env = env().await;
    let hook = receiver(true).await;
    let a = subscribe(&env, &hook, "a").await;
    let b = subscribe(&env, &hook, "b").await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let ctl = env.emu.control_url();

    let list: Value = env
        .http
        .get(format!("{ctl}/subscriptions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let first = list.iter().find(|s| s["id"] == a).unwrap();
    for key in [
        "driveId",
        "resource",
        "notificationUrl",
        "lifecycleNotificationUrl",
        "clientState",
        "expirationDateTime",
    ] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    assert_eq!(first["clientState"], "a");
    assert_eq!(first["expired"], false);

    let expire = env
        .http
        .post(format!("{ctl}/subscriptions/{a}/expire"))
        .send()
        .await
        .unwrap();
    assert_eq!(expire.status(), 204);
    let one: Value = env
        .http
        .get(format!("{ctl}/subscriptions/{a}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["expired"], true);
    assert_eq!(env.get(&format!("/subscriptions/{a}")).await.status(), 404);

    let removed = env
        .http
        .delete(format!("{ctl}/subscriptions/{b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(env.get(&format!("/subscriptions/{b}")).await.status(), 404);
    let again = env
        .http
        .delete(format!("{ctl}/subscriptions/{b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let unknown = env
        .http
        .post(format!("{ctl}/subscriptions/nope/expire"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(env.ctl.subscriptions().len(), 1);

    let put = env
        .http
        .put(format!("{ctl}/notification-policy"))
        .json(&json!({"retry_base_delay_ms": 50, "max_attempts": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let policy: NotificationPolicy = env
        .http
        .get(format!("{ctl}/notification-policy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        policy,
        NotificationPolicy {
            retry_base_delay_ms: 50,
            max_attempts: 2,
            answer_timeout_ms: 3000
        }
    );
    let in_flight: Value = env
        .http
        .get(format!("{ctl}/notifications/in-flight"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(in_flight, json!({"in_flight": 0}));

    env.ctl.reset();
    assert!(env.ctl.subscriptions().is_empty());
    assert_eq!(env.ctl.notification_policy(), NotificationPolicy::default());
    hook.stop().await;
    env.shutdown().await;
}

#[tokio::test]
async fn notifications_carry_the_client_state_verbatim_and_the_current_expiration() {
    let env = env().await;
    let mut hook = receiver(true).await;
    let prefix = "Ünïcode & spaces =?/+%20 ";
    let state = format!("{prefix}{}", "x".repeat(128 - prefix.chars().count()));
    assert_eq!(state.chars().count(), 128);
    let sub = subscribe(&env, &hook, &state).await;
    let id = sub["id"].as_str().unwrap();
    let renewed: Value = env
        .http
        .patch(env.url(&format!("/subscriptions/{id}")))
        .bearer_auth(&env.token)
        .json(&json!({"expirationDateTime": expiry(&env, 600)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    let change = tokio::time::timeout(Duration::from_secs(10), hook.rx.recv())
        .await
        .unwrap()
        .unwrap();
    let n = &change["value"][0];
    assert_eq!(n["clientState"], state.as_str());
    assert_eq!(n["subscriptionExpirationDateTime"], renewed["expirationDateTime"]);

    env.ctl.send_reauthorization_required(id).unwrap();
    let lifecycle = tokio::time::timeout(Duration::from_secs(10), hook.rx.recv())
        .await
        .unwrap()
        .unwrap();
    let l = &lifecycle["value"][0];
    assert_eq!(l["lifecycleEvent"], "reauthorizationRequired");
    assert_eq!(l["clientState"], state.as_str());
    assert_eq!(l["subscriptionExpirationDateTime"], renewed["expirationDateTime"]);
    hook.stop().await;
    env.shutdown().await;
}
