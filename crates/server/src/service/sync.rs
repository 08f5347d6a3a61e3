//! Sources of a knowledge base, its sync runs and its sync state.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kbsync_core::{
    KbId, KnowledgeBase, SyncStatus, User,
    datasource::{AccessToken, DatasourceKind, TokenSource},
};
use kbsync_core::{Source, SourceKind, SyncProgress, SyncRun};
use kbsync_oauth::ConnectionStatus;
use kbsync_store::{NewSource, StoreError};
use kbsync_sync::runner::{DatasourceResolver, ResolveError, StartError};
use uuid::Uuid;

use super::{connections, knowledge, required_text};
use crate::{AppState, error::ApiError};

/// The most items one request may add.
pub const MAX_ITEMS_PER_REQUEST: usize = 100;
const MAX_ID_CHARS: usize = 512;
const MAX_NAME_CHARS: usize = 1024;
const MAX_PATH_CHARS: usize = 4096;
/// The longest access token a browser may hand over for one run.
const MAX_ACCESS_TOKEN_CHARS: usize = 16 * 1024;
/// The most runs the history returns.
pub const MAX_RUNS: u32 = 100;

/// One item picked in the picker.
pub struct PickedItem {
    pub kind: String,
    pub drive_id: String,
    pub item_id: String,
    pub name: String,
    pub path: String,
}

/// What adding sources did: the sources (new or already there) and the run it started, if it
/// could start one (`None` when a run was already going; that run or the next one syncs them).
pub struct AddedSources {
    pub sources: Vec<Source>,
    pub run_id: Option<Uuid>,
}

/// Adds picked folders and files to a knowledge base of that datasource's type and starts a run.
/// Needs manage access: a source brings in anything the connected account can read.
pub async fn add_sources(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    datasource: Option<&str>,
    items: Vec<PickedItem>,
    access_token: Option<String>,
) -> Result<AddedSources, ApiError> {
    let view = knowledge::manageable(state, user, kb_id).await?;
    let kind = match datasource {
        // In a body, an unknown datasource is a bad field (422), not a missing route (404).
        Some(name) => connections::datasource(name)
            .map_err(|_| ApiError::invalid("datasource", format!("unknown datasource `{name}`")))?,
        None => connections::own_datasource(view.kb.kb_type)?,
    };
    if view.kb.kb_type != kind.kb_type() {
        return Err(ApiError::Conflict(format!(
            "this is a {} knowledge base; sources from {} only go on {} knowledge bases",
            view.kb.kb_type,
            kind.display_name(),
            kind.kb_type()
        )));
    }
    if items.is_empty() {
        return Err(ApiError::invalid("items", "pick at least one folder or file"));
    }
    if items.len() > MAX_ITEMS_PER_REQUEST {
        return Err(ApiError::invalid(
            "items",
            format!("at most {MAX_ITEMS_PER_REQUEST} items per request"),
        ));
    }
    let token = browser_token(access_token)?;
    let mut new_sources = Vec::with_capacity(items.len());
    for item in items {
        let source_kind = match item.kind.as_str() {
            "folder" => SourceKind::Folder,
            "file" => SourceKind::File,
            other => {
                return Err(ApiError::invalid(
                    "items.type",
                    format!("must be `folder` or `file`, not `{other}`"),
                ));
            }
        };
        new_sources.push(NewSource {
            kb_id,
            datasource: kind,
            kind: source_kind,
            drive_id: required_text("items.drive_id", &item.drive_id, MAX_ID_CHARS)?,
            item_id: required_text("items.item_id", &item.item_id, MAX_ID_CHARS)?,
            name: required_text("items.name", &item.name, MAX_NAME_CHARS)?,
            path: super::optional_text("items.path", item.path.trim(), MAX_PATH_CHARS)?,
        });
    }
    if new_sources.iter().any(|s| s.item_id == ROOT_ALIAS) {
        resolve_roots(state, kb_id, kind, token.as_ref(), &mut new_sources).await?;
    }
    let mut sources = Vec::with_capacity(new_sources.len());
    for new in new_sources {
        sources.push(
            state
                .store
                .add_source(state.random.uuid(), new, state.clock.now())
                .await?,
        );
    }
    tracing::info!(kb.id = %kb_id, sources = sources.len(), "sources added");
    let run_id = match state.sync.start_manual(kb_id, token).await {
        Ok(run_id) => Some(run_id),
        Err(StartError::AlreadyRunning) => None,
        Err(e) => return Err(start_error(e)),
    };
    Ok(AddedSources { sources, run_id })
}

/// The id a drive's root answers to besides its own (`/drives/{id}/items/root`).
const ROOT_ALIAS: &str = "root";

/// Replaces the `root` alias by the root's real id: items name their parent by its real id, so
/// a source must be known by that id for their paths to resolve.
async fn resolve_roots(
    state: &AppState,
    kb_id: KbId,
    kind: DatasourceKind,
    browser_token: Option<&AccessToken>,
    sources: &mut [NewSource],
) -> Result<(), ApiError> {
    let datasource = state.datasources.datasource(kind).ok_or_else(|| {
        ApiError::NotImplemented(format!(
            "{} is not configured on this server",
            kind.display_name()
        ))
    })?;
    let tokens: Arc<dyn TokenSource> = match browser_token {
        Some(token) => Arc::new(kbsync_core::datasource::StaticToken(token.clone())),
        None => match DatasourceResolver::tokens(&state.datasources, kb_id).await {
            Ok(tokens) => tokens.source,
            Err(ResolveError::NotConnected) => {
                return Err(ApiError::Conflict("connect this knowledge base first".into()));
            }
            Err(ResolveError::NeedsReauth) => return Err(start_error(StartError::NeedsReauth)),
            Err(ResolveError::Unavailable(why)) => return Err(ApiError::Unavailable(why)),
        },
    };
    for source in sources.iter_mut().filter(|s| s.item_id == ROOT_ALIAS) {
        let root = datasource
            .item(tokens.as_ref(), &source.drive_id, ROOT_ALIAS)
            .await
            .map_err(connections::datasource_error)?;
        source.item_id = root.id;
    }
    Ok(())
}

pub async fn list_sources(state: &AppState, user: &User, kb_id: KbId) -> Result<Vec<Source>, ApiError> {
    knowledge::readable(state, user, kb_id).await?;
    Ok(state.store.list_sources(kb_id).await?)
}

/// Removes a source and the documents that came only from it (manage access, like adding one).
/// Refused while a run is going, which could otherwise bring some of them back.
pub async fn remove_source(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    source_id: Uuid,
) -> Result<(), ApiError> {
    knowledge::manageable(state, user, kb_id).await?;
    if state
        .store
        .get_sync_state(kb_id, state.clock.now())
        .await?
        .running
    {
        return Err(ApiError::Conflict(
            "a sync is running; cancel it or wait for it to finish before removing a source".into(),
        ));
    }
    // The documents' blobs are collected later, if no document references them then
    // (docs/storage.md).
    match state
        .store
        .delete_source(kb_id, source_id, state.clock.now())
        .await
    {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("source")),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(kb.id = %kb_id, source.id = %source_id, "source removed");
    Ok(())
}

/// Starts a manual run (409 while one is going).
pub async fn start(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    access_token: Option<String>,
) -> Result<Uuid, ApiError> {
    knowledge::writable(state, user, kb_id).await?;
    let token = browser_token(access_token)?;
    state.sync.start_manual(kb_id, token).await.map_err(start_error)
}

/// Asks the running sync, wherever it runs, to stop; `false` when nothing was running.
pub async fn cancel(state: &AppState, user: &User, kb_id: KbId) -> Result<bool, ApiError> {
    knowledge::writable(state, user, kb_id).await?;
    Ok(state.sync.cancel(kb_id).await?)
}

/// A knowledge base's sync state as the API shows it (ARCHITECTURE §1).
pub struct SyncStateView {
    pub status: SyncStatus,
    pub running: bool,
    pub progress: SyncProgress,
    pub last_error: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub interval_minutes: u32,
    pub connection: Option<ConnectionStatus>,
    /// The publication into Open WebUI, when the knowledge base publishes.
    pub publication: Option<PublicationBrief>,
}

/// Where a knowledge base's publication into Open WebUI stands, as its sync state shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PublicationBrief {
    pub status: kbsync_core::PublicationStatus,
    pub done: u64,
    pub total: u64,
    pub last_published_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// The sync state of a knowledge base the caller sees (at least some of its documents).
pub async fn state_of(state: &AppState, user: &User, kb_id: KbId) -> Result<SyncStateView, ApiError> {
    let view = knowledge::visible(state, user, kb_id).await?;
    state_view(state, &view.kb).await
}

/// The sync state of a knowledge base, without an access check: for callers that checked
/// already, and for the operator's `kbsync status`, which sees every knowledge base.
pub async fn state_view(state: &AppState, kb: &KnowledgeBase) -> Result<SyncStateView, ApiError> {
    let kb_id = kb.id;
    let now = state.clock.now();
    let stored = state.store.get_sync_state(kb_id, now).await?;
    let connection = match DatasourceKind::of(kb.kb_type) {
        Some(_) => state
            .datasources
            .manager
            .status(kb_id)
            .await
            .map_err(connections::oauth_error)?,
        None => None,
    };
    let needs_reauth = connection.as_ref().is_some_and(|c| c.needs_reauth);
    // A connection found revoked outside a run (say, while browsing) shows at once.
    let status = if needs_reauth && !stored.running {
        SyncStatus::NeedsReauth
    } else {
        stored.status
    };
    let schedulable = connection.as_ref().is_some_and(|c| !c.needs_reauth);
    let next_sync_at = if schedulable {
        Some(stored.next_sync_at.unwrap_or(now))
    } else {
        None
    };
    Ok(SyncStateView {
        status,
        running: stored.running,
        progress: stored.progress,
        last_error: stored.last_error,
        last_sync_at: stored.last_sync_at,
        next_sync_at,
        interval_minutes: stored
            .interval_minutes
            .unwrap_or_else(|| default_interval_minutes(state)),
        connection,
        publication: state.store.publication(kb_id).await?.map(|p| PublicationBrief {
            status: p.status,
            done: p.progress_done,
            total: p.progress_total,
            last_published_at: p.last_published_at,
            error: p.error,
        }),
    })
}

pub async fn runs(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    limit: Option<u32>,
) -> Result<Vec<SyncRun>, ApiError> {
    knowledge::readable(state, user, kb_id).await?;
    let limit = limit.unwrap_or(20);
    if limit == 0 || limit > MAX_RUNS {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_RUNS}"),
        ));
    }
    Ok(state.store.list_sync_runs(kb_id, limit).await?)
}

fn browser_token(token: Option<String>) -> Result<Option<AccessToken>, ApiError> {
    match token {
        None => Ok(None),
        Some(t) if t.trim().is_empty() => Ok(None),
        Some(t)
            if t.len() > MAX_ACCESS_TOKEN_CHARS || t.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Err(ApiError::invalid("access_token", "is not a bearer token"))
        }
        Some(t) => Ok(Some(AccessToken::new(t))),
    }
}

fn start_error(e: StartError) -> ApiError {
    match e {
        StartError::AlreadyRunning => {
            ApiError::Conflict("a sync of this knowledge base is already running".into())
        }
        StartError::NotFound => ApiError::NotFound("knowledge base"),
        StartError::NotConnected => ApiError::Conflict("connect this knowledge base first".into()),
        StartError::NeedsReauth => ApiError::Conflict(
            "the connection needs re-authorisation: connect the knowledge base again".into(),
        ),
        StartError::Unsupported => ApiError::Conflict(
            "this knowledge base does not sync from a datasource this server serves".into(),
        ),
        StartError::ShuttingDown => ApiError::Unavailable("the server is shutting down".into()),
        StartError::Store(e) => e.into(),
    }
}

/// The interval between scheduled runs of knowledge bases without their own, in minutes.
pub fn default_interval_minutes(state: &AppState) -> u32 {
    u32::try_from(state.sync_settings.runner.default_interval.num_minutes()).unwrap_or(u32::MAX)
}
