//! Change notifications against the emulated OneDrive, on SQLite and PostgreSQL: the endpoint's
//! handshake and checks, subscriptions created, renewed and re-created, lifecycle events, bursts
//! coalesced into one run, and two instances sharing the work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{future::Future, sync::Arc, time::Duration};

use crate::common::{
    Db, OneDriveTest, Options, TestServer, add_sources, connected_kb, team_folder, wait_idle,
};
use kbsync_core::datasource::TokenSource;
use kbsync_core::{Clock, KbId, OsRandom};
use kbsync_server::{
    AppState, ServerSettings,
    service::webhooks::{Maintained, WebhookSettings, maintain},
};
use kbsync_store::{DriveSubscription, SubscriptionStatus};
use kbsync_sync::runner::DatasourceResolver;
use kbsync_sync::scheduler::{Scheduler, SchedulerSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    the_endpoint_answers_the_handshake_and_refuses_what_is_not_a_notification,
    a_change_at_the_source_is_synced_through_its_notification_without_waiting_for_the_poll,
    a_notification_with_the_wrong_client_state_is_refused_and_counts_nothing,
    a_subscription_is_renewed_before_it_expires_on_the_injected_clock,
    a_subscription_the_source_no_longer_has_is_created_again,
    reauthorization_required_renews_the_subscription_and_catches_up,
    a_burst_of_notifications_makes_one_run,
    two_instances_keep_one_subscription_and_run_a_notified_change_once,
);

/// How long a notified knowledge base waits in these tests (on the injected clock).
const DEBOUNCE_SECS: i64 = 2;

fn fast(settings: &mut ServerSettings) {
    settings.webhooks = Some(WebhookSettings {
        tick: Duration::from_millis(100),
        debounce: chrono::Duration::zero(),
        ..WebhookSettings::default()
    });
}

fn debounced(settings: &mut ServerSettings) {
    settings.webhooks = Some(WebhookSettings {
        tick: Duration::from_millis(100),
        debounce: chrono::Duration::seconds(DEBOUNCE_SECS),
        ..WebhookSettings::default()
    });
}

fn with_webhooks(scheduler: bool, adjust: fn(&mut ServerSettings)) -> Options {
    Options {
        onedrive: Some(OneDriveTest { with_secret: true }),
        emulator_at_server_time: true,
        scheduler,
        adjust,
        ..Options::default()
    }
}

/// Polls `f` until it gives a value, with a deadline.
#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_subscription(s: &TestServer) -> Option<DriveSubscription> {
    let rows = s.state.store.drive_subscriptions().await.unwrap();
    assert!(rows.len() <= 1, "{rows:?}");
    rows.into_iter().next()
}

async fn active(s: &TestServer) -> DriveSubscription {
    eventually("an active subscription", || async {
        the_subscription(s)
            .await
            .filter(|r| r.status == SubscriptionStatus::Active)
    })
    .await
}

/// Waits until the subscription is active and the knowledge base is idle with nothing due (the
/// catch-up run its creation asked for has run, or was answered by the run going on then), then
/// moves the clock a second on, so that the next run starts later than every earlier one.
async fn settled(s: &TestServer, kb: &str) -> DriveSubscription {
    let kb_id: KbId = kb.parse().unwrap();
    let sub = active(s).await;
    eventually("the knowledge base idle with nothing due", || async {
        let now = s.clock.now();
        let state = s.state.store.get_sync_state(kb_id, now).await.unwrap();
        (!state.running && state.next_sync_at.is_some_and(|n| n > now)).then_some(())
    })
    .await;
    s.clock.advance(chrono::Duration::seconds(1));
    sub
}

async fn runs(s: &TestServer, token: &str, kb: &str) -> Vec<Value> {
    let (status, body) = s
        .get(&format!("/api/v1/knowledge/{kb}/sync/runs"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["runs"].as_array().unwrap().clone()
}

/// The knowledge base's connection's tokens, to talk to the emulated Graph as kbsync does.
async fn tokens(s: &TestServer, kb: &str) -> Arc<dyn TokenSource> {
    let kb: KbId = kb.parse().unwrap();
    DatasourceResolver::tokens(&s.state.datasources, kb)
        .await
        .unwrap()
        .source
}

/// The emulated Graph's live subscriptions, as its API lists them.
async fn live_subscriptions(s: &TestServer, kb: &str) -> Vec<Value> {
    let token = tokens(s, kb).await.access_token().await.unwrap();
    let emu = s.emulator.as_ref().unwrap();
    let body: Value = s
        .http
        .get(format!("{}/subscriptions", emu.graph_url()))
        .bearer_auth(token.secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["value"].as_array().unwrap().clone()
}

/// A connected knowledge base syncing `/Team`, synced once by hand.
async fn synced_team(s: &TestServer) -> crate::common::Kb {
    let kb = connected_kb(s).await;
    let folder = team_folder(s, &[("plan.txt", "The quarterly harvest plan for the orchard")]);
    let (status, body) = add_sources(s, &kb.owner, &kb.id, json!([folder])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_idle(s, &kb.owner, &kb.id).await;
    kb
}

async fn post_raw(s: &TestServer, path: &str, body: &str) -> (StatusCode, Option<String>, String) {
    let resp = s
        .http
        .post(format!("{}{path}", s.base))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, kind, resp.text().await.unwrap())
}

async fn the_endpoint_answers_the_handshake_and_refuses_what_is_not_a_notification(db: Db) {
    let Some(s) = TestServer::start(
        db,
        Options {
            adjust: fast,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    // The token comes back decoded, as plain text.
    for path in ["/api/v1/webhooks/msgraph", "/api/v1/webhooks/msgraph/lifecycle"] {
        let (status, kind, body) = post_raw(
            &s,
            &format!("{path}?validationToken=Validation%3A%20a%20b%2Bc"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(kind.unwrap().starts_with("text/plain"));
        assert_eq!(body, "Validation: a b+c");
    }
    let (status, _, _) = post_raw(&s, "/api/v1/webhooks/nosuchsource", r#"{"value":[]}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in ["", "not json", "{}", r#"{"value":[{"clientState":"x"}]}"#] {
        let (status, _, body) = post_raw(&s, "/api/v1/webhooks/msgraph", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("not a change notification collection"), "{body}");
    }
    // A notification for a subscription kbsync does not have is accepted and ignored.
    let unknown =
        json!({"value": [{"subscriptionId": "not-ours", "clientState": "x", "changeType": "updated"}]});
    let (status, _, _) = post_raw(&s, "/api/v1/webhooks/msgraph", &unknown.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    s.stop().await;

    // Off, there is no endpoint.
    let Some(off) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let (status, _, _) = post_raw(&off, "/api/v1/webhooks/msgraph?validationToken=x", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    off.stop().await;
}

async fn a_change_at_the_source_is_synced_through_its_notification_without_waiting_for_the_poll(db: Db) {
    let Some(s) = TestServer::start(db, with_webhooks(true, fast)).await else {
        return;
    };
    let kb = synced_team(&s).await;
    let created_at = s.clock.now();
    let sub = settled(&s, &kb.id).await;
    let now = created_at;
    assert_eq!(sub.kb_id, Some(kb.id.parse().unwrap()));
    assert_eq!(
        sub.client_state_hash.as_ref().map(String::len),
        Some(64),
        "only its SHA-256 is kept"
    );
    let lifetime = chrono::Duration::minutes(kbsync_msgraph::MAX_SUBSCRIPTION_MINUTES);
    let expires = sub.expires_at.unwrap();
    assert!(
        expires > now + lifetime - chrono::Duration::minutes(2) && expires <= now + lifetime,
        "{expires}"
    );
    assert_eq!(live_subscriptions(&s, &kb.id).await.len(), 1);
    let before = runs(&s, &kb.owner, &kb.id).await.len();

    let drive = s.drive();
    drive
        .put_file(
            &drive.default_drive_id(),
            "/Team/aurora.txt",
            b"A memo about the aurora borealis".to_vec(),
        )
        .unwrap();
    // The clock does not move: only the notification can make the knowledge base due now.
    let hits = eventually("the new file in search", || async {
        let (_, hits) = s.get("/api/v1/search?q=borealis", Some(&kb.owner)).await;
        (hits["results"][0]["name"] == "aurora.txt").then_some(hits)
    })
    .await;
    assert_eq!(hits["results"].as_array().unwrap().len(), 1);
    wait_idle(&s, &kb.owner, &kb.id).await;
    let after = runs(&s, &kb.owner, &kb.id).await;
    assert_eq!(after[0]["trigger"], "webhook", "{after:?}");
    assert_eq!(after.len(), before + 1, "{after:?}");
    let row = the_subscription(&s).await.unwrap();
    assert!(row.notifications >= 1, "{row:?}");
    assert!(row.last_notification_at.is_some());

    // The KB page and the admin page show it.
    let drive_id = s.drive().default_drive_id();
    let (cookie, _) = crate::ui::sign_in_as(&s, "owner@example.com").await;
    let (status, html) = crate::ui::page(&s, &cookie, &format!("/kb/{}", kb.id)).await;
    assert_eq!(status, StatusCode::OK);
    let line = format!("Change notifications for drive {drive_id}: active until ");
    assert!(html.contains(&line), "{html}");
    assert!(
        html.contains(&format!("{} notification", row.notifications)),
        "{html}"
    );
    let (cookie, _) = crate::ui::sign_in_as(&s, crate::common::ADMIN_EMAIL).await;
    let (status, html) = crate::ui::page(&s, &cookie, "/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("on: sources post to "), "{html}");
    assert!(html.contains(&format!("onedrive drive {drive_id}")), "{html}");
    s.stop().await;
}

async fn a_notification_with_the_wrong_client_state_is_refused_and_counts_nothing(db: Db) {
    let Some(s) = TestServer::start(db, with_webhooks(false, fast)).await else {
        return;
    };
    synced_team(&s).await;
    let sub = active(&s).await;
    let id = sub.subscription_id.clone().unwrap();
    for state in [json!("forged"), Value::Null] {
        let forged =
            json!({"value": [{"subscriptionId": id, "clientState": state, "changeType": "updated"}]});
        let (status, _, _) = post_raw(&s, "/api/v1/webhooks/msgraph", &forged.to_string()).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "answered like any other, so nothing is learnt"
        );
    }
    let metrics = eventually("the refusals counted", || async {
        let text = s
            .http
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("kbsync_webhook_notifications_total{result=\"rejected\"}")
            .then_some(text)
    })
    .await;
    assert!(!metrics.contains(&id), "no subscription id in the metrics");
    let row = the_subscription(&s).await.unwrap();
    assert_eq!(row.notifications, 0, "{row:?}");
    assert_eq!(row.last_notification_at, None);
    s.stop().await;
}

/// Moves the server's and the emulator's clocks forward together.
fn advance(s: &TestServer, by: chrono::Duration) {
    s.clock.advance(by);
    s.drive().advance_clock(by);
}

/// How far to move the clocks for a subscription created now to be due for renewal.
fn to_renewal() -> chrono::Duration {
    chrono::Duration::minutes(kbsync_msgraph::MAX_SUBSCRIPTION_MINUTES)
        - WebhookSettings::default().renew_before
}

async fn a_subscription_is_renewed_before_it_expires_on_the_injected_clock(db: Db) {
    let Some(s) = TestServer::start(db, with_webhooks(false, fast)).await else {
        return;
    };
    let kb = synced_team(&s).await;
    let first = active(&s).await;
    assert_eq!(
        first.next_check_at,
        first.expires_at.unwrap() - WebhookSettings::default().renew_before
    );
    // Two minutes early, a pass finds nothing to do.
    advance(&s, to_renewal() - chrono::Duration::minutes(2));
    let settings = s.state.settings.webhooks.clone().unwrap();
    assert_eq!(
        maintain(&s.state, &settings).await.unwrap(),
        Maintained::default()
    );
    assert_eq!(the_subscription(&s).await.unwrap().renewed_at, None);

    advance(&s, chrono::Duration::minutes(2));
    let renewed = eventually("the renewal", || async {
        the_subscription(&s).await.filter(|r| r.renewed_at.is_some())
    })
    .await;
    assert_eq!(
        renewed.subscription_id, first.subscription_id,
        "renewed, not replaced"
    );
    assert!(renewed.expires_at.unwrap() > first.expires_at.unwrap());
    assert_eq!(renewed.status, SubscriptionStatus::Active);
    let live = live_subscriptions(&s, &kb.id).await;
    assert_eq!(live.len(), 1);
    let at_source: chrono::DateTime<chrono::Utc> =
        live[0]["expirationDateTime"].as_str().unwrap().parse().unwrap();
    assert_eq!(at_source, renewed.expires_at.unwrap());
    s.stop().await;
}

async fn a_subscription_the_source_no_longer_has_is_created_again(db: Db) {
    let Some(s) = TestServer::start(db, with_webhooks(false, fast)).await else {
        return;
    };
    let kb = synced_team(&s).await;
    let first = active(&s).await;
    let old = first.subscription_id.clone().unwrap();
    // Graph drops it without a word.
    s.drive().remove_subscription(&old).unwrap();
    assert!(live_subscriptions(&s, &kb.id).await.is_empty());

    advance(&s, to_renewal() + chrono::Duration::minutes(1));
    let again = eventually("a new subscription", || async {
        the_subscription(&s).await.filter(|r| {
            r.status == SubscriptionStatus::Active && r.subscription_id.as_deref() != Some(old.as_str())
        })
    })
    .await;
    assert_ne!(
        again.client_state_hash, first.client_state_hash,
        "a new client state"
    );
    let live = live_subscriptions(&s, &kb.id).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["id"].as_str(), again.subscription_id.as_deref());
    // And it is in use: a change is notified to kbsync again.
    let drive = s.drive();
    drive
        .put_file(&drive.default_drive_id(), "/Team/later.txt", b"later".to_vec())
        .unwrap();
    eventually("the notification", || async {
        the_subscription(&s).await.filter(|r| r.notifications >= 1)
    })
    .await;
    s.stop().await;
}

async fn reauthorization_required_renews_the_subscription_and_catches_up(db: Db) {
    let Some(s) = TestServer::start(db, with_webhooks(false, fast)).await else {
        return;
    };
    let kb = synced_team(&s).await;
    let kb_id: KbId = kb.id.parse().unwrap();
    let scheduler = Scheduler::new(s.state.sync.clone(), SchedulerSettings::default());
    let first = drained(&s, &scheduler, &kb.id).await;

    s.drive()
        .send_reauthorization_required(first.subscription_id.as_deref().unwrap())
        .unwrap();
    let renewed = eventually("the renewal", || async {
        the_subscription(&s).await.filter(|r| r.renewed_at.is_some())
    })
    .await;
    assert_eq!(renewed.subscription_id, first.subscription_id);
    assert_eq!(renewed.status, SubscriptionStatus::Active);
    // It also asked for a delta, since changes may have gone unnotified.
    let state = s.state.store.get_sync_state(kb_id, s.clock.now()).await.unwrap();
    assert!(state.next_sync_at.unwrap() <= s.clock.now(), "{state:?}");
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    s.state.sync.wait_idle().await;
    assert_eq!(runs(&s, &kb.owner, &kb.id).await[0]["trigger"], "webhook");
    s.stop().await;
}

async fn a_burst_of_notifications_makes_one_run(db: Db) {
    let Some(s) = TestServer::start(db, with_webhooks(false, debounced)).await else {
        return;
    };
    let kb = synced_team(&s).await;
    let scheduler = Scheduler::new(s.state.sync.clone(), SchedulerSettings::default());
    drained(&s, &scheduler, &kb.id).await;
    let before = runs(&s, &kb.owner, &kb.id).await.len();

    // One save after another: ten notifications.
    let drive = s.drive();
    let drive_id = drive.default_drive_id();
    for i in 0..10 {
        drive
            .put_file(
                &drive_id,
                &format!("/Team/burst-{i}.txt"),
                format!("burst number {i}").into_bytes(),
            )
            .unwrap();
    }
    eventually("ten notifications", || async {
        the_subscription(&s).await.filter(|r| r.notifications == 10)
    })
    .await;
    assert_eq!(scheduler.tick().await.unwrap(), 0, "still within the debounce");
    s.clock.advance(chrono::Duration::seconds(DEBOUNCE_SECS));
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    s.state.sync.wait_idle().await;
    assert_eq!(scheduler.tick().await.unwrap(), 0, "one run answered them all");
    let after = runs(&s, &kb.owner, &kb.id).await;
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert_eq!(after[0]["trigger"], "webhook");
    assert_eq!(after[0]["processed"], 10, "{after:?}");
    s.stop().await;
}

/// Without a scheduler loop: runs what is due (the catch-up the subscription's creation asked
/// for, unless the run going on then answered it) until nothing is, as [`settled`] waits for.
async fn drained(s: &TestServer, scheduler: &Scheduler, kb: &str) -> DriveSubscription {
    active(s).await;
    while scheduler.tick().await.unwrap() > 0 {
        s.state.sync.wait_idle().await;
    }
    settled(s, kb).await
}

/// A second instance over the first one's database, blobs and datasources, with its own runner
/// and scheduler, serving on a port of its own; stopped by the returned sender.
async fn second_instance(
    s: &TestServer,
) -> (
    AppState,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let extractor = kbsync_ingest::Extractor::new(kbsync_ingest::IngestConfig::default());
    let sync = kbsync_sync::SyncRuntime::new(
        s.state.store.clone(),
        s.state.blobs.clone(),
        extractor.clone(),
        s.state.clock.clone(),
        Arc::new(OsRandom),
        Arc::new(s.state.datasources.clone()),
        kbsync_sync::SyncSettings {
            scheduler: Some(SchedulerSettings {
                tick: Duration::from_millis(50),
                ..SchedulerSettings::default()
            }),
            instance_id: "second".into(),
            ..kbsync_sync::SyncSettings::default()
        },
    );
    let state = AppState::new(
        s.state.store.clone(),
        s.state.blobs.clone(),
        extractor,
        s.state.datasources.clone(),
        sync,
        s.state.clock.clone(),
        Arc::new(OsRandom),
        (*s.state.settings).clone(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = state.clone();
    let task = tokio::spawn(async move {
        kbsync_server::serve(listener, served, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (state, tx, task)
}

async fn two_instances_keep_one_subscription_and_run_a_notified_change_once(db: Db) {
    let Some(s) = TestServer::start(db, with_webhooks(true, fast)).await else {
        return;
    };
    let (second, stop, task) = second_instance(&s).await;
    let kb = synced_team(&s).await;
    settled(&s, &kb.id).await;
    assert_eq!(
        live_subscriptions(&s, &kb.id).await.len(),
        1,
        "one subscription for the drive"
    );
    let before = runs(&s, &kb.owner, &kb.id).await.len();

    let drive = s.drive();
    drive
        .put_file(
            &drive.default_drive_id(),
            "/Team/once.txt",
            b"the solstice report".to_vec(),
        )
        .unwrap();
    eventually("the new file in search", || async {
        let (_, hits) = s.get("/api/v1/search?q=solstice", Some(&kb.owner)).await;
        (hits["results"][0]["name"] == "once.txt").then_some(())
    })
    .await;
    s.state.sync.wait_idle().await;
    second.sync.wait_idle().await;
    // Nothing is left due (the frozen clock is an hour from the next poll), so no second run can come.
    let kb_id: KbId = kb.id.parse().unwrap();
    let state = s.state.store.get_sync_state(kb_id, s.clock.now()).await.unwrap();
    assert!(
        !state.running && state.next_sync_at.unwrap() > s.clock.now(),
        "{state:?}"
    );
    let after = runs(&s, &kb.owner, &kb.id).await;
    assert_eq!(after.len(), before + 1, "run exactly once: {after:?}");
    assert_eq!(after[0]["trigger"], "webhook");
    assert_eq!(live_subscriptions(&s, &kb.id).await.len(), 1);
    stop.send(()).unwrap();
    task.await.unwrap();
    s.stop().await;
}
