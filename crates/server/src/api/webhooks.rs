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

use crate::{AppState, error::ApiError, service::webhooks};

/// The validation handshake (`?validationToken=…`: the token, decoded, as text/plain with 200),
/// or a notification collection: 202 at once, handled after the answer; 400 when the body is not
/// one. 404 when change notifications are off or the datasource has none.
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
