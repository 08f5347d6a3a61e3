//! The UI's handlers: extract (the session is an extractor), check the form's CSRF token, call
//! one service function, render a page or redirect (post → redirect → get).

use axum::{
    Form,
    body::Bytes,
    extract::{Multipart, Path, Query, State, multipart::MultipartRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use chrono::{DateTime, Utc};
use kbsync_core::{Access, DocumentStatus, KbId, KbType, SyncStatus, datasource::DatasourceKind};
use kbsync_store::Page;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    Session, UiError,
    badge::{self, badge},
    is_local_path, render,
    views::{self, Chrome},
};
use crate::{
    AppState, api,
    api::multipart::{self, FormFields},
    auth::{self, ClientAddress, SESSION_COOKIE, constant_time_eq},
    error::ApiError,
    service::{self, connections, documents, knowledge, overview, sync, users, webhooks},
};

type UiResult = Result<Response, UiError>;

const LOGIN_COOKIE: &str = "kbsync_login";
/// Files per page of a knowledge base's page.
const FILES_PER_PAGE: u32 = 50;
/// Knowledge bases per page of the list.
const KBS_PER_PAGE: u32 = 50;

mod account;
mod assets;
mod charts;
mod kb;
mod kb_access;
mod kb_openwebui;
mod kb_sync;
mod oidc;
mod search_admin;
mod signin;

pub use account::*;
pub use assets::*;
pub use kb::*;
pub use kb_access::*;
pub use kb_openwebui::{openwebui_off, openwebui_on, openwebui_publish};
pub use kb_sync::*;
pub use oidc::*;
pub use search_admin::*;
pub use signin::*;

fn parse_kb(id: &str) -> Result<KbId, UiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound("knowledge base").into())
}

fn to_kb(kb_id: KbId) -> Response {
    Redirect::to(&format!("/kb/{kb_id}")).into_response()
}

fn kind_name(kb_type: KbType) -> &'static str {
    match DatasourceKind::of(kb_type) {
        Some(kind) => kind.display_name(),
        None => "Local files",
    }
}

fn pager(page: Page, total: u64) -> (Option<u64>, Option<u64>) {
    let limit = u64::from(page.limit);
    let prev = (page.offset > 0).then(|| page.offset.saturating_sub(limit));
    let next = (page.offset + limit < total).then_some(page.offset + limit);
    (prev, next)
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// One line on a drive's subscription for the KB and admin pages.
fn subscription_line(row: &kbsync_store::DriveSubscription, now: DateTime<Utc>) -> String {
    let mut parts = vec![match row.status {
        kbsync_store::SubscriptionStatus::Active => match row.expires_at {
            Some(e) => format!("active until {}", when(e)),
            None => "active".to_owned(),
        },
        kbsync_store::SubscriptionStatus::Pending => "being created".to_owned(),
        kbsync_store::SubscriptionStatus::Renew => "renewal asked for by the source".to_owned(),
        kbsync_store::SubscriptionStatus::Failed => format!(
            "failing ({} attempt{}), next try {}",
            row.failures,
            if row.failures == 1 { "" } else { "s" },
            if row.next_check_at <= now {
                "now".to_owned()
            } else {
                when(row.next_check_at)
            }
        ),
    }];
    parts.push(match row.last_notification_at {
        Some(t) => format!(
            "{} notification{}, last {}",
            row.notifications,
            if row.notifications == 1 { "" } else { "s" },
            when(t)
        ),
        None => "no notification yet".to_owned(),
    });
    if let Some(e) = &row.last_error {
        parts.push(e.clone());
    }
    parts.join(" · ")
}

fn human_size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KB", b / 1024.0)
    } else {
        format!("{:.1} MB", b / (1024.0 * 1024.0))
    }
}

/// `HttpOnly; SameSite=Lax; Path=/`, and `Secure` when users reach kbsync over https.
fn cookie(state: &AppState, name: &str, value: &str, max_age_secs: i64) -> String {
    cookie_at(state, "/", name, value, max_age_secs)
}

/// [`cookie`] sent back only to the paths under `path`.
fn cookie_at(state: &AppState, path: &str, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = if state.settings.public_url.starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    append_cookie(&mut response, cookie);
    response
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_line_says_state_expiry_notifications_and_the_last_error() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let mut r = kbsync_store::DriveSubscription {
            datasource: "onedrive".into(),
            drive_id: "d1".into(),
            kb_id: None,
            subscription_id: Some("s1".into()),
            client_state_hash: None,
            status: kbsync_store::SubscriptionStatus::Active,
            expires_at: Some(now + chrono::Duration::days(29)),
            created_at: now,
            renewed_at: None,
            next_check_at: now,
            last_notification_at: Some(now),
            notifications: 3,
            failures: 0,
            last_error: None,
        };
        assert_eq!(
            subscription_line(&r, now),
            "active until 2027-02-13 08:00 UTC · 3 notifications, last 2027-01-15 08:00 UTC"
        );
        r.status = kbsync_store::SubscriptionStatus::Failed;
        r.failures = 1;
        r.next_check_at = now + chrono::Duration::minutes(1);
        r.last_error = Some("renewal failed: 503".into());
        assert_eq!(
            subscription_line(&r, now),
            "failing (1 attempt), next try 2027-01-15 08:01 UTC · 3 notifications, last 2027-01-15 08:00 UTC · renewal failed: 503"
        );
    }
}
