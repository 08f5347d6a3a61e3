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
    service::{self, connections, documents, knowledge, overview, sync, users},
};

type UiResult = Result<Response, UiError>;

const LOGIN_COOKIE: &str = "kbsync_login";
/// Files per page of a knowledge base's page.
const FILES_PER_PAGE: u32 = 50;
/// Knowledge bases per page of the list.
const KBS_PER_PAGE: u32 = 50;

// --- sign in and out ----------------------------------------------------------------------------

pub async fn home() -> Redirect {
    Redirect::to("/kb")
}

#[derive(Deserialize)]
pub struct NextParam {
    next: Option<String>,
}

/// The sign-in form. Before there is a session, its CSRF token is a random value kept in a
/// short-lived cookie of its own and echoed by the form (double submit).
pub async fn login_form(State(state): State<AppState>, Query(p): Query<NextParam>) -> Response {
    let token = state.random.token_hex(16);
    let page = views::LoginPage {
        chrome: Chrome::anonymous(),
        login_csrf: token.clone(),
        next: p.next.filter(|n| is_local_path(n)).unwrap_or_default(),
        email: String::new(),
        error: None,
    };
    with_cookie(render(&page), &cookie(&state, LOGIN_COOKIE, &token, 3600))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> UiResult {
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&f.csrf, expected) {
        return Err(UiError::Csrf);
    }
    match users::login(&state, client, &f.email, &f.password).await {
        Ok(outcome) => {
            let target = if is_local_path(&f.next) {
                f.next.as_str()
            } else {
                "/kb"
            };
            let ttl = state.settings.session_ttl.num_seconds().max(0);
            let mut response = Redirect::to(target).into_response();
            append_cookie(
                &mut response,
                &cookie(&state, SESSION_COOKIE, &outcome.token, ttl),
            );
            append_cookie(&mut response, &cookie(&state, LOGIN_COOKIE, "", 0));
            Ok(response)
        }
        Err(
            e @ (ApiError::BadCredentials
            | ApiError::TooManyRequests { .. }
            | ApiError::Busy { .. }
            | ApiError::Invalid { .. }),
        ) => {
            let status = e.status();
            let message = match e {
                ApiError::BadCredentials => "Wrong email or password.".to_owned(),
                other => other.to_string(),
            };
            let page = views::LoginPage {
                chrome: Chrome::anonymous(),
                login_csrf: f.csrf,
                next: if is_local_path(&f.next) {
                    f.next
                } else {
                    String::new()
                },
                email: f.email,
                error: Some(message),
            };
            Ok((status, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(State(state): State<AppState>, session: Session, Form(f): Form<CsrfForm>) -> UiResult {
    session.check_csrf(&f.csrf)?;
    users::logout(&state, &session.token).await?;
    let mut response = Redirect::to("/login").into_response();
    append_cookie(&mut response, &cookie(&state, SESSION_COOKIE, "", 0));
    Ok(response)
}

/// `HttpOnly; SameSite=Lax; Path=/`, and `Secure` when users reach kbsync over https.
fn cookie(state: &AppState, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = if state.settings.public_url.starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
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

// --- knowledge bases ----------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct OffsetParam {
    offset: Option<u64>,
}

pub async fn kb_list(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<OffsetParam>,
) -> UiResult {
    let page = Page {
        limit: KBS_PER_PAGE,
        offset: p.offset.unwrap_or(0),
    };
    let found = overview::list(&state, &session.user, page).await?;
    let now = state.clock.now();
    let rows = found
        .items
        .into_iter()
        .map(|s| {
            let b = badge(s.view.kb.kb_type, &s.sync, s.failed_files, now);
            let id = s.view.kb.id;
            let connect = match b.text.as_str() {
                _ if !s.view.access.can_manage() => None,
                "Re-authorisation required" => Some("Reconnect"),
                "Not connected" => Some("Connect"),
                _ => None,
            };
            views::KbRow {
                id: id.to_string(),
                after_connect: match connect {
                    Some("Connect") => format!("/kb/{id}/pick"),
                    _ => "/kb".to_owned(),
                },
                connect,
                name: s.view.kb.name,
                description: s.view.kb.description,
                kind: kind_name(s.view.kb.kb_type).to_owned(),
                badge_text: b.text,
                badge_tone: b.tone,
            }
        })
        .collect();
    let (prev_offset, next_offset) = pager(page, found.total);
    Ok(render(&views::KbListPage {
        chrome: Chrome::of(&session, "kb"),
        rows,
        total: found.total,
        prev_offset,
        next_offset,
    }))
}

pub async fn kb_new(State(state): State<AppState>, session: Session) -> Response {
    render(&new_page(&state, &session, String::new(), String::new(), None))
}

fn new_page(
    state: &AppState,
    session: &Session,
    name: String,
    description: String,
    error: Option<String>,
) -> views::KbNewPage {
    views::KbNewPage {
        chrome: Chrome::of(session, "kb"),
        onedrive: connections::connectors(state)
            .iter()
            .any(|c| c.kind == DatasourceKind::OneDrive && c.configured),
        name,
        description,
        error,
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "type")]
    kb_type: String,
}

pub async fn kb_create(
    State(state): State<AppState>,
    session: Session,
    Form(f): Form<CreateForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_type = (!f.kb_type.is_empty()).then_some(f.kb_type.as_str());
    match knowledge::create(&state, &session.user, &f.name, Some(&f.description), kb_type).await {
        Ok(view) => Ok(Redirect::to(&format!("/kb/{}", view.kb.id)).into_response()),
        Err(e @ ApiError::Invalid { .. }) => {
            let page = new_page(&state, &session, f.name, f.description, Some(e.to_string()));
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn kb_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(p): Query<OffsetParam>,
) -> UiResult {
    let kb_id = parse_kb(&id)?;
    let page = Page {
        limit: FILES_PER_PAGE,
        offset: p.offset.unwrap_or(0),
    };
    let d = overview::detail(&state, &session.user, kb_id, page).await?;
    let now = state.clock.now();
    let failed_files = d
        .runs
        .first()
        .filter(|_| d.sync.status == SyncStatus::CompletedWithErrors)
        .map(|r| r.outcome.failed);
    let b = badge(d.view.kb.kb_type, &d.sync, failed_files, now);
    let connection = d.sync.connection.as_ref();
    let (prev_offset, next_offset) = pager(page, d.files.total);
    let kb = d.view.kb;
    let access = d.view.access;
    Ok(render(&views::KbPage {
        chrome: Chrome::of(&session, "kb"),
        id: kb.id.to_string(),
        kind: kind_name(kb.kb_type).to_owned(),
        is_remote: kb.kb_type != KbType::Local,
        can_write: access >= Access::Write,
        can_manage: access.can_manage(),
        badge_text: b.text,
        badge_tone: b.tone,
        running: d.sync.running,
        status: d.sync.status.as_str().to_owned(),
        progress_current: d.sync.progress.current,
        progress_total: d.sync.progress.total,
        progress_label: badge::progress_label(&d.sync, failed_files),
        progress_file: d.sync.progress.file.clone().unwrap_or_default(),
        // The last error explains a run that ended badly; after a good run or a reconnect it is
        // history (the run list keeps it).
        last_error: d.sync.last_error.clone().filter(|_| {
            !d.sync.running
                && !matches!(
                    d.sync.status,
                    SyncStatus::Idle | SyncStatus::Completed | SyncStatus::Syncing
                )
        }),
        last_sync: d.sync.last_sync_at.map(when).unwrap_or_else(|| "never".into()),
        next_sync: match d.sync.next_sync_at {
            Some(next) => badge::next_in(next, now),
            None => "not scheduled".into(),
        },
        connected: connection.is_some_and(|c| c.has_stored_token),
        needs_reauth: connection.is_some_and(|c| c.needs_reauth) || d.sync.status == SyncStatus::NeedsReauth,
        sources: d
            .sources
            .into_iter()
            .map(|s| views::SourceRow {
                id: s.id.to_string(),
                kind: s.kind.as_str(),
                synced: s.cursor.is_some(),
                name: s.name,
                path: s.path,
            })
            .collect(),
        files: d
            .files
            .items
            .into_iter()
            .map(|f| views::FileRow {
                size: human_size(f.size),
                status: f.status.as_str().to_owned(),
                tone: match f.status {
                    DocumentStatus::Processed => "ok",
                    DocumentStatus::Pending => "busy",
                    DocumentStatus::Failed => "danger",
                },
                error: f.error,
                name: f.name,
                path: f.path,
            })
            .collect(),
        files_total: d.files.total,
        prev_offset,
        next_offset,
        runs: d.runs.into_iter().map(run_row).collect(),
        name: kb.name,
        description: kb.description,
    }))
}

fn run_row(r: kbsync_store::SyncRun) -> views::RunRow {
    let o = r.outcome;
    let running = r.finished_at.is_none();
    views::RunRow {
        started: when(r.started_at),
        trigger: r.trigger.as_str().to_owned(),
        status: if running {
            "running".to_owned()
        } else {
            o.status.as_str().replace('_', " ")
        },
        tone: match o.status {
            _ if running => "busy",
            SyncStatus::Completed => "ok",
            SyncStatus::CompletedWithErrors | SyncStatus::Cancelled => "warn",
            _ => "danger",
        },
        duration: r
            .finished_at
            .map(|f| {
                let secs = (f - r.started_at).num_seconds().max(0);
                if secs < 120 {
                    format!("{secs} s")
                } else {
                    format!("{} min", secs / 60)
                }
            })
            .unwrap_or_default(),
        counts: format!(
            "{} found · {} processed · {} failed · {} deleted · {} skipped",
            o.total_found, o.processed, o.failed, o.deleted, o.skipped
        ),
        failures: o
            .failures
            .into_iter()
            .map(|f| views::FailureRow {
                name: f.name,
                reason: f.reason,
            })
            .collect(),
    }
}

pub async fn kb_delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    knowledge::delete(&state, &session.user, parse_kb(&id)?).await?;
    Ok(Redirect::to("/kb").into_response())
}

/// An upload to a local knowledge base. The form puts its CSRF field before the file, so the
/// token is checked before any byte of the file is stored.
pub async fn upload(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> UiResult {
    let kb_id = parse_kb(&id)?;
    let mut multipart = multipart.map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
    })?;
    let stored = store_upload(&state, &session, kb_id, &mut multipart).await;
    if stored.is_err() {
        multipart::drain(&mut multipart).await;
    }
    stored
}

/// Reads the upload form: the CSRF field, then the file, which is stored.
async fn store_upload(
    state: &AppState,
    session: &Session,
    kb_id: KbId,
    multipart: &mut Multipart,
) -> UiResult {
    let mut checked = false;
    let mut fields = FormFields::default();
    while let Some(field) = multipart.next_field().await.map_err(multipart::unreadable)? {
        match field.name() {
            Some("csrf") => {
                let value = fields.text(field).await?;
                session.check_csrf(&value)?;
                checked = true;
            }
            Some("file") if checked => {
                let name = field.file_name().map(str::to_owned);
                let content_type = field.content_type().map(str::to_owned);
                documents::upload(
                    state,
                    &session.user,
                    kb_id,
                    name.as_deref(),
                    content_type.as_deref(),
                    field,
                )
                .await?;
                return Ok(to_kb(kb_id));
            }
            Some("file") => return Err(UiError::Csrf),
            _ => {
                fields.text(field).await?;
            }
        }
    }
    if checked {
        Err(ApiError::invalid("file", "choose a file to upload").into())
    } else {
        Err(UiError::Csrf)
    }
}

// --- sync ---------------------------------------------------------------------------------------

pub async fn sync_now(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    sync::start(&state, &session.user, kb_id, None).await?;
    Ok(to_kb(kb_id))
}

pub async fn cancel(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    sync::cancel(&state, &session.user, kb_id).await?;
    Ok(to_kb(kb_id))
}

#[derive(Deserialize)]
pub struct ConnectParams {
    #[serde(default)]
    csrf: String,
    provider: Option<String>,
}

/// Opened in the connect popup: starts the authorization flow, gives this browser the flow's
/// binding cookie and sends it to the authorization server, which comes back to the API's
/// callback page (which needs that cookie). A GET (a popup is a navigation), so the CSRF token
/// travels in the query.
pub async fn connect(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(p): Query<ConnectParams>,
) -> UiResult {
    session.check_csrf(&p.csrf)?;
    let kind = connections::provider(p.provider.as_deref().unwrap_or(DatasourceKind::OneDrive.as_str()))?;
    let started = connections::initiate(&state, &session.user, kind, parse_kb(&id)?).await?;
    let cookie = api::connectors::binding_cookie(&state.settings.public_url, &started);
    Ok(with_cookie(
        Redirect::to(&started.auth_url).into_response(),
        &cookie,
    ))
}

/// The picker browses what the connected account can read: for those who manage the knowledge
/// base only, like adding and removing sources.
pub async fn picker(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> UiResult {
    let view = knowledge::manageable(&state, &session.user, parse_kb(&id)?).await?;
    Ok(render(&views::PickerPage {
        chrome: Chrome::of(&session, "kb"),
        id: view.kb.id.to_string(),
        name: view.kb.name,
    }))
}

#[derive(Deserialize)]
struct PickedItemForm {
    #[serde(rename = "type")]
    kind: String,
    drive_id: String,
    item_id: String,
    name: String,
    #[serde(default)]
    path: String,
}

/// The picker's form: `csrf`, `provider` and one `item` field (a JSON object) per picked item.
pub async fn add_sources(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let kb_id = parse_kb(&id)?;
    let mut csrf = String::new();
    let mut provider = DatasourceKind::OneDrive.as_str().to_owned();
    let mut raw_items = Vec::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "csrf" => csrf = value.into_owned(),
            "provider" => provider = value.into_owned(),
            "item" => raw_items.push(value.into_owned()),
            _ => {}
        }
    }
    session.check_csrf(&csrf)?;
    let mut items = Vec::with_capacity(raw_items.len());
    for raw in raw_items {
        let item: PickedItemForm = serde_json::from_str(&raw)
            .map_err(|e| ApiError::invalid("items", format!("not a picked item: {e}")))?;
        items.push(service::sync::PickedItem {
            kind: item.kind,
            drive_id: item.drive_id,
            item_id: item.item_id,
            name: item.name,
            path: item.path,
        });
    }
    sync::add_sources(&state, &session.user, kb_id, &provider, items, None).await?;
    Ok(to_kb(kb_id))
}

pub async fn remove_source(
    State(state): State<AppState>,
    session: Session,
    Path((id, source_id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    let source_id: Uuid = source_id.parse().map_err(|_| ApiError::NotFound("source"))?;
    sync::remove_source(&state, &session.user, kb_id, source_id).await?;
    Ok(to_kb(kb_id))
}

// --- access -------------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct SavedParam {
    saved: Option<String>,
}

pub async fn access_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(p): Query<SavedParam>,
) -> UiResult {
    let people = overview::access(&state, &session.user, parse_kb(&id)?).await?;
    let page = access_view(&state, &session, people, None, p.saved.is_some()).await?;
    Ok(render(&page))
}

async fn access_view(
    state: &AppState,
    session: &Session,
    people: overview::AccessPeople,
    error: Option<String>,
    saved: bool,
) -> Result<views::AccessPage, UiError> {
    let owner = state
        .store
        .get_user(people.view.kb.owner_id)
        .await
        .map_err(ApiError::from)?;
    let emails = |users: &[kbsync_core::User]| {
        users
            .iter()
            .map(|u| u.email.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(views::AccessPage {
        chrome: Chrome::of(session, "kb"),
        id: people.view.kb.id.to_string(),
        name: people.view.kb.name.clone(),
        owner: owner.email,
        read: emails(&people.read),
        write: emails(&people.write),
        error,
        saved,
    })
}

#[derive(Deserialize)]
pub struct AccessForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    read: String,
    #[serde(default)]
    write: String,
}

pub async fn access_save(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<AccessForm>,
) -> UiResult {
    session.check_csrf(&f.csrf)?;
    let kb_id = parse_kb(&id)?;
    let split = |text: &str| -> Vec<String> {
        text.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match overview::set_access_by_email(&state, &session.user, kb_id, &split(&f.read), &split(&f.write)).await
    {
        Ok(_) => Ok(Redirect::to(&format!("/kb/{kb_id}/access?saved=1")).into_response()),
        Err(e @ ApiError::Invalid { .. }) => {
            let people = overview::access(&state, &session.user, kb_id).await?;
            let mut page = access_view(&state, &session, people, Some(e.to_string()), false).await?;
            page.read = f.read;
            page.write = f.write;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// --- search and admin ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct SearchParams {
    q: Option<String>,
    kb: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<SearchParams>,
) -> UiResult {
    let kb_id = match p.kb.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(parse_kb(k)?),
        None => None,
    };
    let found = overview::search(&state, &session.user, p.q.as_deref(), kb_id).await?;
    let kb_name = |id: KbId| {
        found
            .kbs
            .iter()
            .find(|v| v.kb.id == id)
            .map(|v| v.kb.name.clone())
            .unwrap_or_else(|| "a knowledge base".to_owned())
    };
    let (searched, hits, error) = match found.hits {
        None => (false, Vec::new(), None),
        Some(Ok(hits)) => (
            true,
            hits.into_iter()
                .map(|h| views::HitRow {
                    kb_name: kb_name(h.knowledge_id),
                    kb_id: h.knowledge_id.to_string(),
                    name: h.name,
                    snippet: views::highlight(&h.snippet, p.q.as_deref().unwrap_or_default()),
                    web_url: h
                        .web_url
                        .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
                })
                .collect(),
            None,
        ),
        Some(Err(e @ ApiError::Invalid { .. })) => (true, Vec::new(), Some(e.to_string())),
        Some(Err(e)) => return Err(e.into()),
    };
    Ok(render(&views::SearchPage {
        chrome: Chrome::of(&session, "search"),
        q: p.q.unwrap_or_default(),
        kbs: found
            .kbs
            .iter()
            .map(|v| views::KbChoice {
                id: v.kb.id.to_string(),
                name: v.kb.name.clone(),
                selected: Some(v.kb.id) == kb_id,
            })
            .collect(),
        searched,
        hits,
        error,
    }))
}

pub async fn admin(State(state): State<AppState>, session: Session) -> UiResult {
    let a = overview::admin(&state, &session.user)?;
    let s = &a.settings;
    let sync = &a.sync;
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let row = |name, value: String| views::SettingRow { name, value };
    let mb = |bytes: u64| format!("{} MB", bytes / (1024 * 1024));
    let settings = vec![
        row("Public URL", s.public_url.clone()),
        row("Largest upload", mb(s.max_upload_bytes)),
        row("Session lifetime", format!("{} days", s.session_ttl.num_days())),
        row(
            "Sync interval (default)",
            format!("{} min", sync.runner.default_interval.num_minutes()),
        ),
        row("Most files per knowledge base", sync.limits.max_files.to_string()),
        row("Largest synced file", mb(sync.limits.max_file_size)),
        row("Files at once per run", sync.limits.concurrency.to_string()),
        row(
            "Time limit per file",
            format!("{} s", sync.limits.file_timeout.as_secs()),
        ),
        row("Sharing links grant access", yes_no(sync.permissions.link_grants)),
        row(
            "Failed sign-ins per address",
            format!(
                "{} per {} min",
                s.login_address_limit.max_failures,
                s.login_address_limit.window.num_minutes()
            ),
        ),
        row(
            "Run records kept",
            match &s.housekeeping {
                Some(h) => format!(
                    "{} days, at least the latest {} per knowledge base",
                    h.run_retention.num_days(),
                    h.keep_runs_per_kb
                ),
                None => "all (no housekeeping on this instance)".to_owned(),
            },
        ),
        row("Run lease", format!("{} s", sync.runner.lease_ttl.num_seconds())),
        row("Instance", sync.instance_id.clone()),
    ];
    let connectors = a
        .connectors
        .iter()
        .map(|c| {
            row(
                c.kind.display_name(),
                if c.configured {
                    "configured"
                } else {
                    "not configured"
                }
                .to_owned(),
            )
        })
        .collect();
    let scheduler = vec![
        row(
            "Scheduler on this instance",
            match &sync.scheduler {
                Some(sch) => format!("on, looks for due knowledge bases every {} s", sch.tick.as_secs()),
                None => "off (manual runs only)".to_owned(),
            },
        ),
        row("Runs going on this instance", a.running_runs.to_string()),
        row("Free run slots", format!("{} of {}", a.free_slots, a.max_runs)),
    ];
    Ok(render(&views::AdminPage {
        chrome: Chrome::of(&session, "admin"),
        settings,
        connectors,
        scheduler,
    }))
}

// --- static files -------------------------------------------------------------------------------

pub async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", include_str!("../../static/app.css"))
}

pub async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    )
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

// --- helpers ------------------------------------------------------------------------------------

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
