//! `/api/v1/knowledge/{id}/sources` and `/api/v1/knowledge/{id}/sync…`.

use std::convert::Infallible;
use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::sse::{Event, KeepAlive, Sse},
};
use chrono::{DateTime, Utc};
use futures::Stream;
use kbsync_core::{KbId, SyncStatus, datasource::DatasourceKind};
use kbsync_core::{Source, SyncPhaseTimes, SyncRun};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{
    AppState,
    auth::CurrentUser,
    error::{ApiError, ApiResult},
    service::{
        sync::{self as service, PickedItem},
        sync_events,
    },
};

// --- wire types --------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct PickedItemDto {
    #[serde(rename = "type")]
    pub kind: String,
    pub drive_id: String,
    pub item_id: String,
    pub name: String,
    #[serde(default)]
    pub path: String,
}

#[derive(Deserialize)]
pub struct AddSourcesRequest {
    pub datasource: String,
    pub items: Vec<PickedItemDto>,
    /// A token from the browser for this run only; never stored.
    pub access_token: Option<String>,
}

#[derive(Serialize)]
pub struct SourceDto {
    pub id: Uuid,
    pub datasource: DatasourceKind,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub drive_id: String,
    pub item_id: String,
    pub name: String,
    pub path: String,
    /// Whether a sync round of this source has completed (it has a cursor).
    pub synced: bool,
    pub created_at: DateTime<Utc>,
}

impl From<Source> for SourceDto {
    fn from(s: Source) -> Self {
        Self {
            id: s.id,
            datasource: s.datasource,
            kind: s.kind.as_str(),
            drive_id: s.drive_id,
            item_id: s.item_id,
            name: s.name,
            path: s.path,
            synced: s.cursor.is_some(),
            created_at: s.created_at,
        }
    }
}

#[derive(Serialize)]
pub struct SourcesAccepted {
    /// The run that syncs the sources; `null` when a run was already going (the sources are
    /// picked up by the next run).
    pub run_id: Option<Uuid>,
    pub sources: Vec<SourceDto>,
}

#[derive(Deserialize, Default)]
pub struct StartSyncRequest {
    pub access_token: Option<String>,
}

#[derive(Serialize)]
pub struct RunAccepted {
    pub run_id: Uuid,
}

#[derive(Serialize)]
pub struct CancelAccepted {
    /// Whether a run was going and was asked to stop.
    pub cancel_requested: bool,
}

#[derive(Serialize)]
pub struct ProgressDto {
    pub run_id: Option<Uuid>,
    pub current: u64,
    pub total: u64,
    pub file: Option<String>,
}

#[derive(Serialize)]
pub struct SyncStateDto {
    pub status: SyncStatus,
    pub running: bool,
    pub progress: ProgressDto,
    pub last_error: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub interval_minutes: u32,
    pub has_stored_token: bool,
    pub needs_reauth: bool,
    pub token_stored_at: Option<DateTime<Utc>>,
    /// The publication into Open WebUI; `null` when the knowledge base does not publish.
    pub openwebui: Option<service::PublicationBrief>,
}

impl From<service::SyncStateView> for SyncStateDto {
    fn from(v: service::SyncStateView) -> Self {
        let connection = v.connection.as_ref();
        Self {
            status: v.status,
            running: v.running,
            progress: ProgressDto {
                run_id: v.progress.run_id,
                current: v.progress.current,
                total: v.progress.total,
                file: v.progress.file,
            },
            last_error: v.last_error,
            last_sync_at: v.last_sync_at,
            next_sync_at: v.next_sync_at,
            interval_minutes: v.interval_minutes,
            has_stored_token: connection.is_some_and(|c| c.has_stored_token),
            needs_reauth: connection.is_some_and(|c| c.needs_reauth),
            token_stored_at: connection.and_then(|c| c.token_stored_at),
            openwebui: v.publication,
        }
    }
}

#[derive(Serialize)]
pub struct FailureDto {
    pub item_id: String,
    pub name: String,
    pub reason: String,
}

#[derive(Serialize)]
pub struct RunDto {
    pub id: Uuid,
    pub trigger: &'static str,
    pub status: SyncStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub processed: u64,
    pub failed: u64,
    pub deleted: u64,
    pub skipped: u64,
    pub total_found: u64,
    pub failures: Vec<FailureDto>,
    /// Where the run's time went; `null` while it runs and for runs that never finished or
    /// finished before kbsync measured it.
    pub phases: Option<PhasesDto>,
}

/// A run's phase times in seconds (docs/sync.md, "Where a run's time goes"): enumerate, plan and
/// permissions are steps of the run (wall time); download, extract and index are summed over the
/// files, which run concurrently, so together they may exceed `wall_seconds`.
#[derive(Serialize)]
pub struct PhasesDto {
    pub enumerate_seconds: f64,
    pub plan_seconds: f64,
    pub download_seconds: f64,
    pub extract_seconds: f64,
    pub index_seconds: f64,
    pub permissions_seconds: f64,
    pub wall_seconds: f64,
}

impl From<SyncPhaseTimes> for PhasesDto {
    fn from(p: SyncPhaseTimes) -> Self {
        Self {
            enumerate_seconds: p.enumerate.as_secs_f64(),
            plan_seconds: p.plan.as_secs_f64(),
            download_seconds: p.download.as_secs_f64(),
            extract_seconds: p.extract.as_secs_f64(),
            index_seconds: p.index.as_secs_f64(),
            permissions_seconds: p.permissions.as_secs_f64(),
            wall_seconds: p.wall.as_secs_f64(),
        }
    }
}

impl From<SyncRun> for RunDto {
    fn from(r: SyncRun) -> Self {
        Self {
            id: r.id,
            trigger: r.trigger.as_str(),
            status: r.outcome.status,
            started_at: r.started_at,
            finished_at: r.finished_at,
            processed: r.outcome.processed,
            failed: r.outcome.failed,
            deleted: r.outcome.deleted,
            skipped: r.outcome.skipped,
            total_found: r.outcome.total_found,
            failures: r
                .outcome
                .failures
                .into_iter()
                .map(|f| FailureDto {
                    item_id: f.item_id,
                    name: f.name,
                    reason: f.reason,
                })
                .collect(),
            phases: r.outcome.phases.map(PhasesDto::from),
        }
    }
}

#[derive(Deserialize)]
pub struct RunsParams {
    pub limit: Option<u32>,
}

// --- handlers ------------------------------------------------------------------------------------

pub async fn add_sources(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    ApiJson(req): ApiJson<AddSourcesRequest>,
) -> ApiResult<(StatusCode, Json<SourcesAccepted>)> {
    let items = req
        .items
        .into_iter()
        .map(|i| PickedItem {
            kind: i.kind,
            drive_id: i.drive_id,
            item_id: i.item_id,
            name: i.name,
            path: i.path,
        })
        .collect();
    let added =
        service::add_sources(&state, &user, id, Some(&req.datasource), items, req.access_token).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SourcesAccepted {
            run_id: added.run_id,
            sources: added.sources.into_iter().map(SourceDto::from).collect(),
        }),
    ))
}

pub async fn list_sources(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Json<serde_json::Value>> {
    let sources: Vec<SourceDto> = service::list_sources(&state, &user, id)
        .await?
        .into_iter()
        .map(SourceDto::from)
        .collect();
    Ok(Json(json!({ "sources": sources })))
}

pub async fn delete_source(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath((id, source_id)): ApiPath<(KbId, Uuid)>,
) -> ApiResult<StatusCode> {
    service::remove_source(&state, &user, id, source_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn start_sync(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<RunAccepted>)> {
    // The body is optional: no body (or an empty one) starts a run with the stored connection.
    let req: StartSyncRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartSyncRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::invalid("body", e.to_string()),
            _ => ApiError::BadRequest {
                message: format!("the body is not valid JSON: {e}"),
            },
        })?
    };
    let token = req.access_token;
    let run_id = service::start(&state, &user, id, token).await?;
    Ok((StatusCode::ACCEPTED, Json(RunAccepted { run_id })))
}

pub async fn cancel_sync(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<(StatusCode, Json<CancelAccepted>)> {
    let cancel_requested = service::cancel(&state, &user, id).await?;
    Ok((StatusCode::ACCEPTED, Json(CancelAccepted { cancel_requested })))
}

pub async fn get_sync(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Json<SyncStateDto>> {
    Ok(Json(service::state_of(&state, &user, id).await?.into()))
}

pub async fn list_runs(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    ApiQuery(params): ApiQuery<RunsParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let runs: Vec<RunDto> = service::runs(&state, &user, id, params.limit)
        .await?
        .into_iter()
        .map(RunDto::from)
        .collect();
    Ok(Json(json!({ "runs": runs })))
}

/// Server-Sent Events of a knowledge base's sync: `status` at once, then `progress`,
/// `file_failed`, `status` and `finished` as they happen, from whichever instance runs the sync.
pub async fn sync_events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let stream = sync_events::stream(state, &user, id).await?;
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
