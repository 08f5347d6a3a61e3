//! Change notifications for drives (`/v1.0/subscriptions`): creation with the validation handshake, renewal,
//! deletion, notifications on every change of the drive (without resource data: clients run delta), and
//! `reauthorizationRequired` lifecycle notifications on demand.

use crate::Shared;
use crate::clock::graph_time;
use crate::error::{GraphError, RequestMeta};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// The longest a driveItem subscription may live: 42,300 minutes.
pub const MAX_EXPIRATION_MINUTES: i64 = 42_300;

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

/// One attempt to deliver a notification, as the control API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotificationDelivery {
    pub subscription_id: String,
    pub url: String,
    /// `change` or `reauthorizationRequired`.
    pub kind: String,
    /// HTTP status of the receiver, or `None` when it could not be reached.
    pub status: Option<u16>,
    pub attempt: u32,
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

/// The validation handshake: POST `?validationToken=…` and expect 200 with the token as plain text in 10 s.
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
            store.subscriptions.remove(*id).ok_or_else(|| not_found(id))?;
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

/// Posts `payload` to `url`, retrying a few times on failure, and records every attempt.
fn deliver(shared: &Arc<Shared>, sub_id: String, url: String, kind: &'static str, payload: Value) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let shared = shared.clone();
    rt.spawn(async move {
        for attempt in 1..=3u32 {
            let status = shared
                .http
                .post(&url)
                .json(&payload)
                .timeout(std::time::Duration::from_secs(3))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16());
            shared.traffic.lock().notifications.push(NotificationDelivery {
                subscription_id: sub_id.clone(),
                url: url.clone(),
                kind: kind.to_string(),
                status,
                attempt,
            });
            if status.is_some_and(|s| (200..300).contains(&s)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt))).await;
        }
    });
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
        let id = crate::ids::derived_guid(
            shared.seed,
            shared
                .request_counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
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
            s.id.clone(),
            s.notification_url.clone(),
            "change",
            payload,
        );
    }
}

/// Sends `reauthorizationRequired` to a subscription's lifecycle URL.
pub(crate) fn send_reauthorization_required(
    shared: &Arc<Shared>,
    sub_id: &str,
) -> Result<(), crate::StoreError> {
    let (tenant, s) = {
        let store = shared.store.read();
        let s = store
            .subscriptions
            .get(sub_id)
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
    deliver(shared, s.id, url, "reauthorizationRequired", payload);
    Ok(())
}
