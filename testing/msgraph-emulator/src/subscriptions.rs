//! Change notifications for drives (`/v1.0/subscriptions`): creation with the validation handshake, renewal,
//! deletion, notifications on every change of the drive (without resource data: clients run delta), and
//! `reauthorizationRequired` lifecycle notifications on demand. A delivery the receiver does not accept in
//! time is retried with doubling delays ([`NotificationPolicy`]) while the subscription lives.

use crate::Shared;
use crate::clock::{graph_time, stopwatch};
use crate::error::{GraphError, RequestMeta};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The longest a driveItem subscription may live: 42,300 minutes.
pub const MAX_EXPIRATION_MINUTES: i64 = 42_300;

/// Graph counts an answer slower than this as slow, and throttles endpoints where more than 10% are.
pub const SLOW_ANSWER_MS: u64 = 2_900;

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub drive_id: String,
    pub resource: String,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub client_state: Option<String>,
    pub expires: DateTime<Utc>,
    pub application_id: String,
    pub creator_id: String,
}

/// How notifications are delivered. Graph waits 3 s for an answer and retries a failed delivery with
/// exponential backoff for up to 4 hours; the defaults keep that shape on a scale tests can wait for
/// (200 ms, 400 ms, 800 ms, 1.6 s and 3.2 s between six attempts).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct NotificationPolicy {
    /// The wait before the first retry; each further retry waits twice as long as the one before.
    pub retry_base_delay_ms: u64,
    /// Attempts per notification, the first included (at least one is made).
    pub max_attempts: u32,
    /// An attempt the receiver has not answered in this time fails (Graph: 3 s).
    pub answer_timeout_ms: u64,
}

impl Default for NotificationPolicy {
    fn default() -> Self {
        Self {
            retry_base_delay_ms: 200,
            max_attempts: 6,
            answer_timeout_ms: 3_000,
        }
    }
}

impl NotificationPolicy {
    /// The wait before attempt `attempt` (1-based): none before the first, then base, 2 × base, 4 × base, …
    pub fn delay_before(&self, attempt: u32) -> std::time::Duration {
        if attempt <= 1 {
            return std::time::Duration::ZERO;
        }
        let factor = 1u64.checked_shl(attempt - 2).unwrap_or(u64::MAX);
        std::time::Duration::from_millis(self.retry_base_delay_ms.saturating_mul(factor))
    }
}

/// One attempt to deliver a notification, as the control API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotificationDelivery {
    /// Shared by every attempt to deliver the same notification (a change notification's `id`).
    #[serde(default)]
    pub notification_id: String,
    pub subscription_id: String,
    pub url: String,
    /// `change` or `reauthorizationRequired`.
    pub kind: String,
    /// HTTP status of the receiver, or `None` when it could not be reached or did not answer in time.
    pub status: Option<u16>,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// Real milliseconds from the start of the first attempt to the start of this one.
    #[serde(default)]
    pub since_first_attempt_ms: u64,
    /// Real milliseconds the receiver took to answer (or until the attempt failed); above
    /// [`SLOW_ANSWER_MS`] Graph counts the answer as slow.
    #[serde(default)]
    pub elapsed_ms: u64,
    /// Why the attempt got no HTTP status: `timeout` (no answer within the policy's answer timeout) or
    /// `connection` (refused, reset, …).
    #[serde(default)]
    pub error: Option<String>,
}

impl NotificationDelivery {
    /// Whether the receiver accepted the notification (2xx).
    pub fn accepted(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// A subscription as the control API reports it, named as Graph names a subscription's properties.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionInfo {
    pub id: String,
    pub drive_id: String,
    pub resource: String,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub client_state: Option<String>,
    pub expiration_date_time: DateTime<Utc>,
    /// Past its expiration on the emulator clock: Graph no longer knows it (GET and PATCH answer 404) and
    /// sends it nothing.
    pub expired: bool,
}

impl SubscriptionInfo {
    pub(crate) fn of(s: &Subscription, now: DateTime<Utc>) -> Self {
        Self {
            id: s.id.clone(),
            drive_id: s.drive_id.clone(),
            resource: s.resource.clone(),
            notification_url: s.notification_url.clone(),
            lifecycle_notification_url: s.lifecycle_url.clone(),
            client_state: s.client_state.clone(),
            expiration_date_time: s.expires,
            expired: s.expires <= now,
        }
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn sub_json(s: &Subscription, graph_url: &str) -> Value {
    json!({
        "@odata.context": format!("{graph_url}/$metadata#subscriptions/$entity"),
        "id": s.id,
        "resource": s.resource,
        "applicationId": s.application_id,
        "changeType": s.change_type,
        "clientState": s.client_state,
        "notificationUrl": s.notification_url,
        "lifecycleNotificationUrl": s.lifecycle_url,
        "expirationDateTime": graph_time(s.expires),
        "creatorId": s.creator_id,
        "includeResourceData": false,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationQueryOptions": null,
        "notificationUrlAppId": null,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    change_type: Option<String>,
    notification_url: Option<String>,
    lifecycle_notification_url: Option<String>,
    resource: Option<String>,
    expiration_date_time: Option<DateTime<Utc>>,
    client_state: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchBody {
    expiration_date_time: Option<DateTime<Utc>>,
}

fn check_expiry(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<DateTime<Utc>, GraphError> {
    let t = t.ok_or_else(|| GraphError::bad_request("expirationDateTime is required."))?;
    if t <= now {
        return Err(GraphError::bad_request(
            "Subscription expiration must be in the future.",
        ));
    }
    if t > now + Duration::minutes(MAX_EXPIRATION_MINUTES) {
        return Err(GraphError::bad_request(format!(
            "Subscription expiration can only be {MAX_EXPIRATION_MINUTES} minutes in the future."
        )));
    }
    Ok(t)
}

/// Resolves `/drives/{id}/root`, `/me/drive/root`, `/users/{id}/drive/root`, `/sites/{id}/drive/root`, and on
/// personal drives also `/drives/{id}/items/{folder}`.
fn resolve_resource(shared: &Shared, caller: &str, resource: &str) -> Result<String, GraphError> {
    let store = shared.store.read();
    let segs: Vec<&str> = resource.trim_matches('/').split('/').collect();
    let user_drive = |key: &str| store.find_user(key).and_then(|u| u.drive_id.clone());
    let bad = || {
        GraphError::bad_request(format!(
            "Resource '{resource}' is not supported for drive subscriptions."
        ))
    };
    let drive = match segs.as_slice() {
        ["me", "drive", "root"] => user_drive(caller),
        ["users", u, "drive", "root"] => user_drive(u),
        ["drives", d, "root"] => store.drives.get(*d).map(|d| d.id.clone()),
        ["sites", s, "drive", "root"] => store.sites.get(*s).and_then(|s| s.drive_ids.first().cloned()),
        ["drives", d, "items", i] => {
            let drive = store.drives.get(*d).ok_or_else(bad)?;
            if !drive.drive_type.is_personal() {
                return Err(GraphError::bad_request(
                    "Only the root of a OneDrive for Business or SharePoint drive can be subscribed to.",
                ));
            }
            drive.item(i)?;
            Some(drive.id.clone())
        }
        _ => return Err(bad()),
    };
    let drive_id = drive.ok_or_else(bad)?;
    // The caller must be able to read what it subscribes to.
    let d = store.drive(&drive_id)?;
    let item = match segs.as_slice() {
        ["drives", _, "items", i] => (*i).to_string(),
        _ => d.root_id.clone(),
    };
    if !store.can_read(caller, d, &item) {
        return Err(crate::graph::access_error(d));
    }
    Ok(drive_id)
}

fn append_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    format!("{url}{sep}{key}={encoded}")
}

/// Whether a `Content-Type` value is `text/plain` (parameters such as `charset` allowed).
fn is_text_plain(content_type: Option<&reqwest::header::HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/plain"))
}

/// The validation handshake: POST `?validationToken=…` and expect, within 10 s, 200 with `Content-Type:
/// text/plain` and the URL-decoded token as the body.
async fn validate(shared: &Shared, url: &str) -> Result<(), GraphError> {
    let token = {
        let mut s = shared.store.write();
        format!(
            "Validation: Testing client application reachability for subscription Request-Id: {}",
            s.ids.guid()
        )
    };
    let fail = |why: String| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            format!(
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request. ({why})"
            ),
        )
    };
    let resp = shared
        .http
        .post(append_query(url, "validationToken", &token))
        .header("content-type", "text/plain; charset=utf-8")
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(fail(format!("status {}", resp.status().as_u16())));
    }
    if !is_text_plain(resp.headers().get(reqwest::header::CONTENT_TYPE)) {
        return Err(fail("the response Content-Type was not text/plain".into()));
    }
    let body = resp.text().await.map_err(|e| fail(e.to_string()))?;
    if body != token {
        return Err(fail("the response body was not the validation token".into()));
    }
    Ok(())
}

/// `/v1.0/subscriptions[/{id}[/reauthorize]]`.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    meta: &RequestMeta,
    caller: &str,
    app: &str,
    method: &Method,
    segs: &[&str],
    body: &[u8],
) -> Result<Response, GraphError> {
    let now = meta.date;
    let graph_url = shared.graph_url.clone();
    match (method.as_str(), segs) {
        ("POST", ["subscriptions"]) => {
            let b: CreateBody = serde_json::from_slice(body)
                .map_err(|e| GraphError::bad_request(format!("Invalid subscription: {e}")))?;
            let change_type = b.change_type.unwrap_or_default();
            if change_type != "updated" {
                return Err(GraphError::bad_request(
                    "Drive subscriptions support only the 'updated' changeType.",
                ));
            }
            let url = b
                .notification_url
                .filter(|u| u.starts_with("http"))
                .ok_or_else(|| GraphError::bad_request("notificationUrl is required."))?;
            if b.client_state.as_ref().is_some_and(|c| c.chars().count() > 128) {
                return Err(GraphError::bad_request(
                    "clientState must be at most 128 characters.",
                ));
            }
            let resource = b
                .resource
                .ok_or_else(|| GraphError::bad_request("resource is required."))?;
            let drive_id = resolve_resource(shared, caller, &resource)?;
            let expires = check_expiry(b.expiration_date_time, now)?;
            validate(shared, &url).await?;
            if let Some(l) = &b.lifecycle_notification_url {
                validate(shared, l).await?;
            }
            let mut store = shared.store.write();
            let id = store.ids.guid();
            let sub = Subscription {
                id: id.clone(),
                drive_id,
                resource,
                change_type,
                notification_url: url,
                lifecycle_url: b.lifecycle_notification_url,
                client_state: b.client_state,
                expires,
                application_id: app.to_string(),
                creator_id: caller.to_string(),
            };
            let v = sub_json(&sub, &graph_url);
            store.subscriptions.insert(id, sub);
            Ok(json_response(StatusCode::CREATED, v))
        }
        ("GET", ["subscriptions"]) => {
            let store = shared.store.read();
            let v: Vec<Value> = store
                .subscriptions
                .values()
                .filter(|s| s.expires > now)
                .map(|s| sub_json(s, &graph_url))
                .collect();
            Ok(json_response(StatusCode::OK, json!({"value": v})))
        }
        ("GET", ["subscriptions", id]) => {
            let store = shared.store.read();
            let s = store
                .subscriptions
                .get(*id)
                .filter(|s| s.expires > now)
                .ok_or_else(|| not_found(id))?;
            Ok(json_response(StatusCode::OK, sub_json(s, &graph_url)))
        }
        ("PATCH", ["subscriptions", id]) => {
            let b: PatchBody =
                serde_json::from_slice(body).map_err(|e| GraphError::bad_request(e.to_string()))?;
            let expires = check_expiry(b.expiration_date_time, now)?;
            let mut store = shared.store.write();
            let s = store
                .subscriptions
                .get_mut(*id)
                .filter(|s| s.expires > now)
                .ok_or_else(|| not_found(id))?;
            s.expires = expires;
            Ok(json_response(StatusCode::OK, sub_json(s, &graph_url)))
        }
        ("DELETE", ["subscriptions", id]) => {
            let mut store = shared.store.write();
            store
                .subscriptions
                .get(*id)
                .filter(|s| s.expires > now)
                .ok_or_else(|| not_found(id))?;
            store.subscriptions.remove(*id);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("POST", ["subscriptions", id, "reauthorize"]) => {
            let store = shared.store.read();
            store
                .subscriptions
                .get(*id)
                .filter(|s| s.expires > now)
                .ok_or_else(|| not_found(id))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "notSupported",
            "Unsupported subscription operation.",
        )),
    }
}

fn not_found(id: &str) -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("The object was not found. Subscription '{id}'."),
    )
}

/// A notification on its way to a receiver.
struct Outgoing {
    notification_id: String,
    subscription_id: String,
    url: String,
    kind: &'static str,
    payload: Value,
}

/// Whether Graph still knows the subscription (not deleted, not expired on the emulator clock).
fn is_live(shared: &Shared, subscription_id: &str) -> bool {
    let now = shared.clock.now();
    shared
        .store
        .read()
        .subscriptions
        .get(subscription_id)
        .is_some_and(|s| s.expires > now)
}

/// Counts a delivery as in flight for as long as it lives, however its task ends.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn start(shared: &Arc<Shared>) -> Self {
        shared.deliveries_in_flight.fetch_add(1, Ordering::SeqCst);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.deliveries_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Posts the notification, retrying with doubling delays until the receiver answers 2xx in time, the attempts
/// of the [`NotificationPolicy`] are used up, the subscription is deleted or expires, or the emulator stops.
/// Every attempt is recorded.
fn deliver(shared: &Arc<Shared>, out: Outgoing) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let in_flight = InFlight::start(shared);
    let shared = shared.clone();
    rt.spawn(async move {
        let _in_flight = in_flight;
        let policy = *shared.notification_policy.lock();
        let timeout = std::time::Duration::from_millis(policy.answer_timeout_ms);
        let first = stopwatch();
        for attempt in 1..=policy.max_attempts.max(1) {
            let delay = policy.delay_before(attempt);
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.stop.cancelled() => return,
                }
                if !is_live(&shared, &out.subscription_id) {
                    return;
                }
            }
            let since_first = first.elapsed();
            let started = stopwatch();
            let answer = tokio::select! {
                a = shared.http.post(&out.url).json(&out.payload).timeout(timeout).send() => a,
                () = shared.stop.cancelled() => return,
            };
            let elapsed = started.elapsed();
            let (status, error) = match answer {
                Ok(r) => (Some(r.status().as_u16()), None),
                Err(e) if e.is_timeout() => (None, Some("timeout".to_string())),
                Err(_) => (None, Some("connection".to_string())),
            };
            let delivery = NotificationDelivery {
                notification_id: out.notification_id.clone(),
                subscription_id: out.subscription_id.clone(),
                url: out.url.clone(),
                kind: out.kind.to_string(),
                status,
                attempt,
                since_first_attempt_ms: millis(since_first),
                elapsed_ms: millis(elapsed),
                error,
            };
            let accepted = delivery.accepted();
            shared.traffic.lock().notifications.push(delivery);
            if accepted {
                return;
            }
        }
    });
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fresh notification id (deterministic by seed and request order).
fn notification_id(shared: &Shared) -> String {
    crate::ids::derived_guid(
        shared.seed,
        shared.request_counter.fetch_add(1, Ordering::Relaxed),
    )
}

/// Sends a change notification to every live subscription of `drive_id`.
pub(crate) fn notify_drive_changed(shared: &Arc<Shared>, drive_id: &str) {
    let now = shared.clock.now();
    let (tenant, subs): (String, Vec<Subscription>) = {
        let store = shared.store.read();
        let subs = store
            .subscriptions
            .values()
            .filter(|s| s.drive_id == drive_id && s.expires > now)
            .cloned()
            .collect();
        (store.tenant.id.clone(), subs)
    };
    for s in subs {
        let id = notification_id(shared);
        let payload = json!({"value": [{
            "id": id,
            "subscriptionId": s.id,
            "subscriptionExpirationDateTime": graph_time(s.expires),
            "clientState": s.client_state,
            "changeType": "updated",
            "resource": s.resource,
            "tenantId": tenant,
        }]});
        deliver(
            shared,
            Outgoing {
                notification_id: id,
                subscription_id: s.id.clone(),
                url: s.notification_url.clone(),
                kind: "change",
                payload,
            },
        );
    }
}

/// Sends `reauthorizationRequired` to a live subscription's lifecycle URL (the only lifecycle event Graph has
/// for driveItem subscriptions: `subscriptionRemoved` and `missed` are Outlook and Teams only).
pub(crate) fn send_reauthorization_required(
    shared: &Arc<Shared>,
    sub_id: &str,
) -> Result<(), crate::StoreError> {
    let now = shared.clock.now();
    let (tenant, s) = {
        let store = shared.store.read();
        let s = store
            .subscriptions
            .get(sub_id)
            .filter(|s| s.expires > now)
            .cloned()
            .ok_or_else(|| crate::StoreError::NotFound(format!("subscription {sub_id}")))?;
        (store.tenant.id.clone(), s)
    };
    let url = s.lifecycle_url.clone().ok_or_else(|| {
        crate::StoreError::Invalid("the subscription has no lifecycleNotificationUrl".into())
    })?;
    let payload = json!({"value": [{
        "subscriptionId": s.id,
        "subscriptionExpirationDateTime": graph_time(s.expires),
        "tenantId": tenant,
        "clientState": s.client_state,
        "lifecycleEvent": "reauthorizationRequired",
    }]});
    deliver(
        shared,
        Outgoing {
            notification_id: notification_id(shared),
            subscription_id: s.id,
            url,
            kind: "reauthorizationRequired",
            payload,
        },
    );
    Ok(())
}
