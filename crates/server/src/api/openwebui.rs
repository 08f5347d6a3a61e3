//! `/api/v1/knowledge/{id}/openwebui…`: publishing a knowledge base into Open WebUI.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use kbsync_core::{KbId, PublicationCounts, PublicationStatus, PublishFailure, PublishRun};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{
    AppState,
    auth::CurrentUser,
    error::{ApiResult, ErrorBody},
    service::openwebui::{self as service, PublicationView},
};

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    /// An existing Open WebUI knowledge base to publish into; absent: create one.
    pub knowledge_id: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Most publishes to answer, newest first (at most 50).
    pub limit: Option<u32>,
}

/// One publish into Open WebUI.
#[derive(Serialize, ToSchema)]
pub struct PublishRunDto {
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub status: PublicationStatus,
    pub error: Option<String>,
    pub counts: PublicationCounts,
    pub failures: Vec<PublishFailure>,
}

impl From<PublishRun> for PublishRunDto {
    fn from(r: PublishRun) -> Self {
        Self {
            id: r.id,
            started_at: r.started_at,
            finished_at: r.finished_at,
            status: r.outcome.status,
            error: r.outcome.error,
            counts: r.outcome.counts,
            failures: r.outcome.failures,
        }
    }
}

/// The knowledge base's publication into Open WebUI (managers)
#[utoipa::path(get, path = "/knowledge/{id}/openwebui", tag = "open webui",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 200, description = "The publication (`enabled` false when off)", body = PublicationView),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 501, description = "Publishing into Open WebUI is not configured", body = ErrorBody),
    ))]
pub async fn get_publication(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Json<PublicationView>> {
    Ok(Json(service::get(&state, &user, id).await?))
}

/// Publish the knowledge base into Open WebUI, into a new or a named Open WebUI knowledge base (managers)
#[utoipa::path(put, path = "/knowledge/{id}/openwebui", tag = "open webui",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    request_body = EnableRequest,
    responses(
        (status = 200, description = "The publication; a publish follows", body = PublicationView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "Another kbsync knowledge base publishes into that one", body = ErrorBody),
        (status = 422, description = "An unknown field, or no such Open WebUI knowledge base", body = ErrorBody),
        (status = 501, description = "Publishing into Open WebUI is not configured", body = ErrorBody),
        (status = 502, description = "Open WebUI refused or failed", body = ErrorBody),
    ))]
pub async fn put_publication(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    ApiJson(body): ApiJson<EnableRequest>,
) -> ApiResult<Json<PublicationView>> {
    Ok(Json(service::enable(&state, &user, id, body.knowledge_id).await?))
}

/// Publish into Open WebUI now (managers)
#[utoipa::path(post, path = "/knowledge/{id}/openwebui/publish", tag = "open webui",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 202, description = "Requested", body = PublicationView),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "The knowledge base does not publish", body = ErrorBody),
        (status = 501, description = "Publishing into Open WebUI is not configured", body = ErrorBody),
    ))]
pub async fn publish_now(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<(StatusCode, Json<PublicationView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(service::publish_now(&state, &user, id).await?),
    ))
}

/// Stop publishing into Open WebUI (managers); what was published stays there
#[utoipa::path(delete, path = "/knowledge/{id}/openwebui", tag = "open webui",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 501, description = "Publishing into Open WebUI is not configured", body = ErrorBody),
    ))]
pub async fn delete_publication(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<StatusCode> {
    service::disable(&state, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The knowledge base's recent publishes into Open WebUI, newest first (managers)
#[utoipa::path(get, path = "/knowledge/{id}/openwebui/publishes", tag = "open webui",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base"), HistoryQuery),
    responses(
        (status = 200, description = "The publishes", body = Vec<PublishRunDto>),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 422, description = "A malformed `limit`", body = ErrorBody),
        (status = 501, description = "Publishing into Open WebUI is not configured", body = ErrorBody),
    ))]
pub async fn list_publishes(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Vec<PublishRunDto>>> {
    let runs = service::history(&state, &user, id, q.limit).await?;
    Ok(Json(runs.into_iter().map(Into::into).collect()))
}
