//! What the web UI's pages show, gathered in one call per page: a knowledge base together with
//! its sync state, and the people behind access grants (the API speaks in user ids, people in
//! email addresses).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kbsync_core::{Document, KbId, SyncStatus, User};
use kbsync_core::{Source, SyncRun};
use kbsync_store::{Page, PageOf, RunActivity, StoreError};

use super::{
    knowledge::{self, KbView},
    sync::{self, SyncStateView},
};
use crate::{AppState, ServerSettings, error::ApiError};

/// A knowledge base as a row of the list: with its sync state and, when its last run completed
/// with errors, how many files failed.
pub struct KbSummary {
    pub view: KbView,
    pub sync: SyncStateView,
    pub failed_files: Option<u64>,
}

/// The knowledge bases the caller may read, each with its sync state.
pub async fn list(state: &AppState, user: &User, page: Page) -> Result<PageOf<KbSummary>, ApiError> {
    let found = knowledge::list(state, user, page).await?;
    let mut items = Vec::with_capacity(found.items.len());
    for view in found.items {
        let sync = sync::state_of(state, user, view.kb.id).await?;
        let failed_files = if sync.status == SyncStatus::CompletedWithErrors && view.access.can_read() {
            sync::runs(state, user, view.kb.id, Some(1))
                .await?
                .first()
                .map(|r| r.outcome.failed + r.outcome.quarantined)
        } else {
            None
        };
        items.push(KbSummary {
            view,
            sync,
            failed_files,
        });
    }
    Ok(PageOf {
        items,
        total: found.total,
    })
}

/// Everything a knowledge base's page shows.
pub struct KbDetail {
    pub view: KbView,
    pub sync: SyncStateView,
    pub sources: Vec<Source>,
    pub files: PageOf<Document>,
    /// The latest runs, newest first: the page lists the first [`RUNS_SHOWN`] and charts all.
    pub runs: Vec<SyncRun>,
}

/// The most runs a knowledge base's page lists (its chart shows [`RUNS_CHARTED`]).
pub const RUNS_SHOWN: usize = 10;
/// The most runs a knowledge base's run history chart shows.
const RUNS_CHARTED: u32 = 30;

/// A caller who reads only some documents sees those (and their count), the sync state, and no
/// sources or runs (their names and failures speak of documents they may not read).
pub async fn detail(state: &AppState, user: &User, kb_id: KbId, files: Page) -> Result<KbDetail, ApiError> {
    let view = knowledge::visible(state, user, kb_id).await?;
    let sync = sync::state_of(state, user, kb_id).await?;
    let (sources, runs) = if view.access.can_read() {
        (
            sync::list_sources(state, user, kb_id).await?,
            sync::runs(state, user, kb_id, Some(RUNS_CHARTED)).await?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let files = super::documents::listing(state, user, &view, files).await?;
    Ok(KbDetail {
        view,
        sync,
        sources,
        files,
        runs,
    })
}

/// The manual grants of a knowledge base, as people.
pub struct AccessPeople {
    pub view: KbView,
    pub read: Vec<User>,
    pub write: Vec<User>,
}

pub async fn access(state: &AppState, user: &User, kb_id: KbId) -> Result<AccessPeople, ApiError> {
    let view = knowledge::manageable(state, user, kb_id).await?;
    let lists = knowledge::get_access(state, user, kb_id).await?;
    Ok(AccessPeople {
        view,
        read: users_of(state, &lists.read).await?,
        write: users_of(state, &lists.write).await?,
    })
}

/// Replaces the manual grants with the given email addresses (one list each); an address
/// without a kbsync account is refused, naming it.
pub async fn set_access_by_email(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    read: &[String],
    write: &[String],
) -> Result<AccessPeople, ApiError> {
    let read = ids_of(state, "read", read).await?;
    let write = ids_of(state, "write", write).await?;
    knowledge::set_access(state, user, kb_id, &read, &write).await?;
    access(state, user, kb_id).await
}

async fn users_of(state: &AppState, ids: &[kbsync_core::UserId]) -> Result<Vec<User>, ApiError> {
    let mut users = Vec::with_capacity(ids.len());
    for id in ids {
        match state.store.get_user(*id).await {
            Ok(u) => users.push(u),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    users.sort_by(|a, b| a.email.cmp(&b.email));
    Ok(users)
}

async fn ids_of(
    state: &AppState,
    field: &'static str,
    emails: &[String],
) -> Result<Vec<kbsync_core::UserId>, ApiError> {
    let wanted: Vec<String> = emails
        .iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let found = state.store.users_by_emails(&wanted).await?;
    if let Some(missing) = wanted
        .iter()
        .find(|w| !found.iter().any(|u| u.email.eq_ignore_ascii_case(w)))
    {
        return Err(ApiError::invalid(
            field,
            format!("no kbsync user has the email {missing}"),
        ));
    }
    Ok(found.into_iter().map(|u| u.id).collect())
}

/// What the admin page shows: this instance's settings and its scheduler.
pub struct AdminView {
    pub settings: std::sync::Arc<ServerSettings>,
    pub sync: std::sync::Arc<kbsync_sync::SyncSettings>,
    pub datasources: Vec<super::connections::DatasourceStatus>,
    pub running_runs: usize,
    pub free_slots: usize,
    pub max_runs: usize,
}

pub fn admin(state: &AppState, user: &User) -> Result<AdminView, ApiError> {
    require_admin(user)?;
    Ok(AdminView {
        settings: state.settings.clone(),
        sync: state.sync_settings.clone(),
        datasources: super::connections::datasources(state),
        running_runs: state.sync.running(),
        free_slots: state.sync.free_slots(),
        max_runs: state.sync_settings.runner.max_runs,
    })
}

fn require_admin(user: &User) -> Result<(), ApiError> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only admins may see the settings".into()))
    }
}

/// How many hours of sync activity the admin page shows, the current one included.
pub const ACTIVITY_HOURS: i32 = 24;

/// The sync runs of every knowledge base over the last [`ACTIVITY_HOURS`], by clock hour.
pub struct SyncActivity {
    /// The start of the first hour shown.
    pub since: DateTime<Utc>,
    /// The hours in which a run started, oldest first (the others had none).
    pub hours: Vec<RunActivity>,
}

/// The admin page's sync activity: runs of every knowledge base that started in the current
/// clock hour or the [`ACTIVITY_HOURS`] - 1 before it, grouped by hour.
pub async fn activity(state: &AppState, user: &User) -> Result<SyncActivity, ApiError> {
    require_admin(user)?;
    let now = state.clock.now();
    let hour = TimeDelta::hours(1);
    let this_hour = now
        .duration_trunc(hour)
        .map_err(|e| ApiError::Internal(format!("cannot round {now} to the hour: {e}")))?;
    let since = this_hour - hour * (ACTIVITY_HOURS - 1);
    let hours = state.store.sync_activity(since, this_hour + hour, hour).await?;
    Ok(SyncActivity { since, hours })
}

/// The search page: the knowledge bases to choose from and, when there is a query, the hits.
pub struct SearchView {
    pub kbs: Vec<KbView>,
    pub hits: Option<Result<Vec<kbsync_core::SearchHit>, ApiError>>,
}

/// The most knowledge bases the search page offers to narrow the search to.
const SEARCH_KB_CHOICES: u32 = super::MAX_PAGE_SIZE;
/// How many hits the search page shows.
const SEARCH_HITS: u32 = 25;

pub async fn search(
    state: &AppState,
    user: &User,
    q: Option<&str>,
    kb_id: Option<KbId>,
) -> Result<SearchView, ApiError> {
    let kbs = knowledge::list(
        state,
        user,
        Page {
            limit: SEARCH_KB_CHOICES,
            offset: 0,
        },
    )
    .await?
    .items;
    let kb_ids: Vec<KbId> = kb_id.into_iter().collect();
    let hits = match q {
        Some(q) if !q.trim().is_empty() => {
            Some(super::search::search(state, user, q, &kb_ids, Some(SEARCH_HITS)).await)
        }
        _ => None,
    };
    Ok(SearchView { kbs, hits })
}
