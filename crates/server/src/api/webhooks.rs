//! The change-notification endpoints a datasource posts to: `POST /api/v1/webhooks/{webhook}` and
//! `…/{webhook}/lifecycle` (see [`crate::service::webhooks`]). No sign-in: a notification proves
//! itself with its subscription's client state.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use kbsync_core::datasource::DatasourceKind;

use crate::{
    AppState,
    error::{ApiError, ErrorBody},
    service::webhooks,
};

/// A datasource's change notifications (no sign-in: each proves itself with its subscription's client state)
///
/// The validation handshake (`?validationToken=…`: the token, decoded, as text/plain with 200),
/// or a notification collection: 202 at once, handled after the answer; 400 when the body is not
/// one. 404 when change notifications are off or the datasource has none.
#[utoipa::path(post, path = "/webhooks/{webhook}", tag = "webhooks",
    params(
        ("webhook" = String, Path, description = "The datasource's webhook name, e.g. `msgraph`"),
        ("validationToken" = Option<String>, Query, description = "The subscription handshake: answered back as text"),
    ),
    request_body(content_type = "application/json", description = "The datasource's notification collection (Microsoft Graph: `{\"value\": [...]}`)"),
    responses(
        (status = 200, description = "The handshake's token, decoded", content(("text/plain"))),
        (status = 202, description = "Accepted; handled after the answer"),
        (status = 400, description = "The body is not a notification collection", body = ErrorBody),
        (status = 404, description = "Change notifications are off, or the datasource has none", body = ErrorBody),
    ))]
pub async fn notify(
    State(state): State<AppState>,
    Path(webhook): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (Some(settings), Some(kind)) = (
        state.settings.webhooks.clone(),
        DatasourceKind::from_webhook(&webhook),
    ) else {
        return Err(ApiError::NotFound("webhook"));
    };
    if let Some(token) = query.get("validationToken") {
        metrics::counter!("kbsync_webhook_validations_total").increment(1);
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            token.clone(),
        )
            .into_response());
    }
    let batch = match webhooks::parse(&body) {
        Ok(batch) => batch,
        Err(e) => {
            metrics::counter!("kbsync_webhook_notifications_total", "result" => "malformed").increment(1);
            return Err(e);
        }
    };
    tokio::spawn(async move { webhooks::receive(&state, &settings, kind, batch).await });
    Ok(StatusCode::ACCEPTED.into_response())
}

/// A datasource's lifecycle notifications (subscription removed, missed changes, reauthorisation)
///
/// Answered like [`notify`]: the handshake, or 202 and handled after the answer.
#[utoipa::path(post, path = "/webhooks/{webhook}/lifecycle", tag = "webhooks",
    params(
        ("webhook" = String, Path, description = "The datasource's webhook name, e.g. `msgraph`"),
        ("validationToken" = Option<String>, Query, description = "The subscription handshake: answered back as text"),
    ),
    request_body(content_type = "application/json", description = "The datasource's lifecycle notification collection"),
    responses(
        (status = 200, description = "The handshake's token, decoded", content(("text/plain"))),
        (status = 202, description = "Accepted; handled after the answer"),
        (status = 400, description = "The body is not a notification collection", body = ErrorBody),
        (status = 404, description = "Change notifications are off, or the datasource has none", body = ErrorBody),
    ))]
pub async fn notify_lifecycle(
    state: State<AppState>,
    webhook: Path<String>,
    query: Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    notify(state, webhook, query, body).await
}
