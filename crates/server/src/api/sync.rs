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
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{
    AppState,
    auth::CurrentUser,
    error::{ApiError, ApiResult, ErrorBody},
    service::{
        sync::{self as service, PickedItem},
        sync_events,
    },
};

// --- wire types --------------------------------------------------------------------------------

/// A folder or file chosen in the picker.
#[derive(Deserialize, ToSchema)]
pub struct PickedItemDto {
    /// `folder` or `file`.
    #[serde(rename = "type")]
    pub kind: String,
    pub drive_id: String,
    pub item_id: String,
    pub name: String,
    #[serde(default)]
    pub path: String,
}

#[derive(Deserialize, ToSchema)]
pub struct AddSourcesRequest {
    /// The datasource the items are in, e.g. `onedrive` or `gdrive`.
    pub datasource: String,
    pub items: Vec<PickedItemDto>,
    /// A token from the browser for this run only; never stored.
    pub access_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SourceDto {
    pub id: Uuid,
    pub datasource: DatasourceKind,
    /// `folder` or `file`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "folder")]
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

#[derive(Serialize, ToSchema)]
pub struct SourcesAccepted {
    /// The run that syncs the sources; `null` when a run was already going (the sources are
    /// picked up by the next run).
    pub run_id: Option<Uuid>,
    pub sources: Vec<SourceDto>,
}

/// The optional body of a manual sync.
#[derive(Deserialize, Default, ToSchema)]
pub struct StartSyncRequest {
    /// A token from the browser for this run only; never stored. Absent: the stored connection.
    pub access_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RunAccepted {
    pub run_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct CancelAccepted {
    /// Whether a run was going and was asked to stop.
    pub cancel_requested: bool,
}

/// The progress of the current (or last) run: files done of those found.
#[derive(Serialize, ToSchema)]
pub struct ProgressDto {
    pub run_id: Option<Uuid>,
    pub current: u64,
    pub total: u64,
    pub file: Option<String>,
}

/// A knowledge base's sync state.
#[derive(Serialize, ToSchema)]
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

/// A file a run could not sync, and why.
#[derive(Serialize, ToSchema)]
pub struct FailureDto {
    pub item_id: String,
    pub name: String,
    pub reason: String,
}

/// One sync run.
#[derive(Serialize, ToSchema)]
pub struct RunDto {
    pub id: Uuid,
    /// `manual`, `scheduled` or `webhook`.
    #[schema(value_type = String, example = "manual")]
    pub trigger: &'static str,
    pub status: SyncStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub processed: u64,
    pub failed: u64,
    pub deleted: u64,
    pub skipped: u64,
    /// Files not brought in because they are quarantined (listed in `failures` with the reason;
    /// not counted in `failed`).
    pub quarantined: u64,
    pub total_found: u64,
    /// Failed files, quarantined files, then sources that could not be read.
    pub failures: Vec<FailureDto>,
    /// Where the run's time went; `null` while it runs and for runs that never finished or
    /// finished before kbsync measured it.
    pub phases: Option<PhasesDto>,
}

/// A run's phase times in seconds (docs/sync.md, "Where a run's time goes"): enumerate, plan and
/// permissions are steps of the run (wall time); download, extract and index are summed over the
/// files, which run concurrently, so together they may exceed `wall_seconds`.
#[derive(Serialize, ToSchema)]
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
            quarantined: r.outcome.quarantined,
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// Most runs to answer, newest first.
    pub limit: Option<u32>,
}

/// A knowledge base's sources.
#[derive(Serialize, ToSchema)]
pub struct SourcesDto {
    pub sources: Vec<SourceDto>,
}

/// A knowledge base's recent runs, newest first.
#[derive(Serialize, ToSchema)]
pub struct RunsDto {
    pub runs: Vec<RunDto>,
}

// --- handlers ------------------------------------------------------------------------------------

/// Add picked folders and files as sources, and start a run that syncs them (managers)
#[utoipa::path(post, path = "/knowledge/{id}/sources", tag = "sync",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = Uuid, Path, description = "The knowledge base")),
    request_body = AddSourcesRequest,
    responses(
        (status = 202, description = "Added; a run syncs them", body = SourcesAccepted),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "The knowledge base is not connected to this datasource", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
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

/// The folders and files the knowledge base syncs from
#[utoipa::path(get, path = "/knowledge/{id}/sources", tag = "sync",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 200, description = "The sources", body = SourcesDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn list_sources(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Json<SourcesDto>> {
    let sources = service::list_sources(&state, &user, id)
        .await?
        .into_iter()
        .map(SourceDto::from)
        .collect();
    Ok(Json(SourcesDto { sources }))
}

/// Remove a source and the documents that came from it (managers)
#[utoipa::path(delete, path = "/knowledge/{id}/sources/{source_id}", tag = "sync",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = Uuid, Path, description = "The knowledge base"), ("source_id" = Uuid, Path, description = "The source")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base or source, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn delete_source(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath((id, source_id)): ApiPath<(KbId, Uuid)>,
) -> ApiResult<StatusCode> {
    service::remove_source(&state, &user, id, source_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start a sync run now (managers)
///
/// The body is optional: without one the run uses the stored connection.
#[utoipa::path(post, path = "/knowledge/{id}/sync", tag = "sync",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = Uuid, Path, description = "The knowledge base")),
    request_body(content = Option<StartSyncRequest>, description = "Optional"),
    responses(
        (status = 202, description = "Started", body = RunAccepted),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "A run is going already, or the knowledge base is not connected or needs re-authorisation", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
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

/// Ask the running sync to stop (managers)
#[utoipa::path(post, path = "/knowledge/{id}/sync/cancel", tag = "sync",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 202, description = "Asked (or nothing was running)", body = CancelAccepted),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn cancel_sync(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<(StatusCode, Json<CancelAccepted>)> {
    let cancel_requested = service::cancel(&state, &user, id).await?;
    Ok((StatusCode::ACCEPTED, Json(CancelAccepted { cancel_requested })))
}

/// The knowledge base's sync state: status, progress, last and next run, connection
#[utoipa::path(get, path = "/knowledge/{id}/sync", tag = "sync",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 200, description = "The sync state", body = SyncStateDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn get_sync(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Json<SyncStateDto>> {
    Ok(Json(service::state_of(&state, &user, id).await?.into()))
}

/// The knowledge base's recent sync runs, newest first, with counts and failed files
#[utoipa::path(get, path = "/knowledge/{id}/sync/runs", tag = "sync",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The knowledge base"), RunsParams),
    responses(
        (status = 200, description = "The runs", body = RunsDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn list_runs(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    ApiQuery(params): ApiQuery<RunsParams>,
) -> ApiResult<Json<RunsDto>> {
    let runs = service::runs(&state, &user, id, params.limit)
        .await?
        .into_iter()
        .map(RunDto::from)
        .collect();
    Ok(Json(RunsDto { runs }))
}

/// Live sync events (Server-Sent Events)
///
/// `status` at once, then `progress`, `file_failed`, `status` and `finished` as they happen, from
/// whichever instance runs the sync; a comment every 15 s keeps the connection open.
#[utoipa::path(get, path = "/knowledge/{id}/sync/events", tag = "sync",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 200, description = "An event stream", content(("text/event-stream"))),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn sync_events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let stream = sync_events::stream(state, &user, id).await?;
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
