//! `/api/v1/knowledge/{id}/openwebui…`: publishing a knowledge base into Open WebUI.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use kbsync_core::{KbId, PublicationCounts, PublicationStatus, PublishFailure, PublishRun};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{
    AppState,
    auth::CurrentUser,
    error::ApiResult,
    service::openwebui::{self as service, PublicationView},
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    /// An existing Open WebUI knowledge base to publish into; absent: create one.
    pub knowledge_id: Option<String>,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    pub limit: Option<u32>,
}

#[derive(Serialize)]
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

pub async fn get_publication(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Json<PublicationView>> {
    Ok(Json(service::get(&state, &user, id).await?))
}

pub async fn put_publication(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    ApiJson(body): ApiJson<EnableRequest>,
) -> ApiResult<Json<PublicationView>> {
    Ok(Json(service::enable(&state, &user, id, body.knowledge_id).await?))
}

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

pub async fn delete_publication(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<StatusCode> {
    service::disable(&state, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_publishes(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Vec<PublishRunDto>>> {
    let runs = service::history(&state, &user, id, q.limit).await?;
    Ok(Json(runs.into_iter().map(Into::into).collect()))
}
