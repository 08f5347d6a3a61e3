//! `/api/v1/datasources/…` (also served as `/api/v1/connectors/…`: see [`RouteFamily`]) and
//! `/api/v1/knowledge/{id}/connection`.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use kbsync_core::{
    KbId,
    datasource::{BrowseEntry, BrowseLocation, DatasourceKind},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiPath, ApiQuery};
use kbsync_oauth::{CallbackError, Initiated};

use crate::{
    AppState,
    auth::{self, CurrentUser},
    error::{ApiResult, ErrorBody},
    service::connections,
};

#[derive(Serialize, ToSchema)]
pub struct DatasourceDto {
    pub datasource: DatasourceKind,
    /// What people call it.
    #[schema(value_type = String)]
    pub name: &'static str,
    pub configured: bool,
    /// Knowledge bases can connect as the organisation's application (`POST …/auth/app-only`).
    pub app_only: bool,
}

/// The datasources kbsync knows.
#[derive(Serialize, ToSchema)]
pub struct DatasourcesDto {
    pub datasources: Vec<DatasourceDto>,
}

/// The datasources kbsync knows, and whether each is configured
#[utoipa::path(get, path = "/datasources", tag = "datasources",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The datasources", body = DatasourcesDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, CurrentUser(_user): CurrentUser) -> Json<DatasourcesDto> {
    let datasources = connections::datasources(&state)
        .into_iter()
        .map(|c| DatasourceDto {
            datasource: c.kind,
            name: c.kind.display_name(),
            configured: c.configured,
            app_only: connections::app_only_configured(&state, c.kind),
        })
        .collect();
    Json(DatasourcesDto { datasources })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KbParam {
    /// The knowledge base to connect.
    #[param(value_type = uuid::Uuid)]
    pub knowledge_id: KbId,
}

#[derive(Serialize, ToSchema)]
pub struct InitiateResponse {
    /// Where to send the browser: the authorization server's sign-in and consent.
    pub auth_url: String,
}

/// Start connecting a knowledge base to a datasource (OAuth authorization code with PKCE; managers)
///
/// Answers the authorize URL and sets the cookie that binds the flow to the caller's browser
/// (or cookie jar): the callback completes only when it comes back with that cookie.
#[utoipa::path(get, path = "/datasources/{datasource}/auth/initiate", tag = "datasources",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("datasource" = String, Path, description = "The datasource, e.g. `onedrive` or `gdrive`"), KbParam),
    responses(
        (status = 200, description = "The authorize URL; `Set-Cookie` binds the flow to this client", body = InitiateResponse,
            headers(("set-cookie" = String, description = "The flow's binding cookie"))),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such datasource or knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "The knowledge base is of another type", body = ErrorBody),
        (status = 422, description = "No or a malformed `knowledge_id`", body = ErrorBody),
        (status = 501, description = "The datasource's OAuth client is not configured", body = ErrorBody),
    ))]
pub async fn initiate(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(datasource): ApiPath<String>,
    ApiQuery(params): ApiQuery<KbParam>,
) -> ApiResult<Response> {
    let kind = connections::datasource(&datasource)?;
    let (kind, started) = connections::initiate(&state, &user, Some(kind), params.knowledge_id).await?;
    let cookie = binding_cookie(
        &state.settings.public_url,
        RouteFamily::of_callback(&state, kind),
        &started,
    );
    Ok((
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(InitiateResponse {
            auth_url: started.auth_url,
        }),
    )
        .into_response())
}

/// Start connecting a knowledge base to a datasource (the `connectors` name of `…/datasources/{datasource}/auth/initiate`; managers)
///
/// The same operation as `GET /datasources/{datasource}/auth/initiate`, under the path the
/// Open WebUI fork's connectors use (e.g. `/connectors/gdrive/auth/initiate`).
#[utoipa::path(get, path = "/connectors/{datasource}/auth/initiate", tag = "datasources",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("datasource" = String, Path, description = "The datasource, e.g. `gdrive` or `onedrive`"), KbParam),
    responses(
        (status = 200, description = "The authorize URL; `Set-Cookie` binds the flow to this client", body = InitiateResponse,
            headers(("set-cookie" = String, description = "The flow's binding cookie"))),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such datasource or knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "The knowledge base is of another type", body = ErrorBody),
        (status = 422, description = "No or a malformed `knowledge_id`", body = ErrorBody),
        (status = 501, description = "The datasource's OAuth client is not configured", body = ErrorBody),
    ))]
pub async fn connectors_initiate(
    state: State<AppState>,
    user: CurrentUser,
    datasource: ApiPath<String>,
    params: ApiQuery<KbParam>,
) -> ApiResult<Response> {
    initiate(state, user, datasource, params).await
}

/// Connect a knowledge base as the organisation's application, without sign-in (admins)
///
/// The knowledge base is then due for a sync.
#[utoipa::path(post, path = "/datasources/{datasource}/auth/app-only", tag = "datasources",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("datasource" = String, Path, description = "The datasource, e.g. `onedrive` or `gdrive`"), KbParam),
    responses(
        (status = 204, description = "Connected"),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller is not an admin, or uses a read-only key", body = ErrorBody),
        (status = 404, description = "No such datasource or knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "App-only access is not configured, or the knowledge base is of another type", body = ErrorBody),
        (status = 422, description = "No or a malformed `knowledge_id`", body = ErrorBody),
        (status = 501, description = "The datasource's OAuth client is not configured", body = ErrorBody),
        (status = 502, description = "The token endpoint refused", body = ErrorBody),
    ))]
pub async fn connect_app_only(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(datasource): ApiPath<String>,
    ApiQuery(params): ApiQuery<KbParam>,
) -> ApiResult<StatusCode> {
    let kind = connections::datasource(&datasource)?;
    connections::connect_app_only(&state, &user, Some(kind), params.knowledge_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The cookies that bind connect flows to the browser that started them are named this, followed
/// by the flow's id ([`kbsync_oauth::flow_id`]): one cookie per flow, so several flows started in
/// one browser (two knowledge bases at once) do not overwrite each other's.
pub const BINDING_COOKIE_PREFIX: &str = "kbsync_oauth_binding_";

/// The two path families the connect routes are served under: kbsync's own
/// `/api/v1/datasources/{datasource}/…`, and `/api/v1/connectors/{datasource}/…`, the names the
/// Open WebUI fork's connectors use (`/api/v1/connectors/gdrive/auth/callback`). Both run the same
/// handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteFamily {
    Datasources,
    Connectors,
}

impl RouteFamily {
    /// The prefix of the family's routes: binding cookies are sent only there.
    pub fn prefix(self) -> &'static str {
        match self {
            RouteFamily::Datasources => "/api/v1/datasources/",
            RouteFamily::Connectors => "/api/v1/connectors/",
        }
    }

    /// The family of a callback URL (a redirect URI registered with an authorization server).
    pub fn of_redirect_uri(redirect_uri: &str) -> RouteFamily {
        let path = url::Url::parse(redirect_uri)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        if path.starts_with(RouteFamily::Connectors.prefix()) {
            RouteFamily::Connectors
        } else {
            RouteFamily::Datasources
        }
    }

    /// The family of the callback the authorization server sends a datasource's browsers back to
    /// (its registered redirect URI; kbsync's own family when none is configured).
    pub fn of_callback(state: &AppState, kind: DatasourceKind) -> RouteFamily {
        connections::redirect_uri(state, kind).map_or(RouteFamily::Datasources, RouteFamily::of_redirect_uri)
    }
}

/// The `Set-Cookie` value that gives a started flow's binding to the browser: `HttpOnly`,
/// `SameSite=Lax` (it must come back on the authorization server's redirect, a top-level `GET`),
/// limited to the routes of `family` (the family of the registered callback), living as long as
/// the flow's state, and `Secure` when users reach kbsync over https.
pub fn binding_cookie(public_url: &str, family: RouteFamily, started: &Initiated) -> String {
    cookie_line(
        public_url,
        family,
        &started.flow_id,
        &started.binding,
        started.ttl.num_seconds(),
    )
}

/// The `Set-Cookie` value that removes a flow's binding cookie sent to the routes of `family`.
fn cleared_binding_cookie(public_url: &str, family: RouteFamily, flow_id: &str) -> String {
    cookie_line(public_url, family, flow_id, "", 0)
}

fn cookie_line(
    public_url: &str,
    family: RouteFamily,
    flow_id: &str,
    value: &str,
    max_age_secs: i64,
) -> String {
    let secure = if public_url.starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{BINDING_COOKIE_PREFIX}{flow_id}={value}; Path={}; HttpOnly; \
         SameSite=Lax; Max-Age={max_age_secs}{secure}",
        family.prefix()
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// The authorization server's redirect target: completes a connect flow
///
/// Needs no login: the single-use state, and the binding cookie of the browser that started the
/// flow, are the proof. Always answers the small page that reports to the opener, and removes the
/// flow's binding cookie.
#[utoipa::path(get, path = "/datasources/{datasource}/auth/callback", tag = "datasources",
    params(("datasource" = String, Path, description = "The datasource, e.g. `onedrive` or `gdrive`"), CallbackParams,
        ("kbsync_oauth_binding_{flow}" = Option<String>, Cookie, description = "The binding cookie `initiate` set")),
    responses(
        (status = 200, description = "Connected: a page that tells its opener", content(("text/html"))),
        (status = 400, description = "Refused or failed: a page that tells its opener why", content(("text/html"))),
    ))]
pub async fn callback(
    State(state): State<AppState>,
    ApiPath(datasource): ApiPath<String>,
    headers: HeaderMap,
    params: Result<axum::extract::Query<CallbackParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    complete_callback(&state, RouteFamily::Datasources, &datasource, &headers, params).await
}

/// The authorization server's redirect target under the `connectors` name (the same operation as `GET /datasources/{datasource}/auth/callback`)
///
/// Serves a redirect URI registered as `/api/v1/connectors/{datasource}/auth/callback`. Needs no
/// login: the single-use state, and the binding cookie of the browser that started the flow, are
/// the proof.
#[utoipa::path(get, path = "/connectors/{datasource}/auth/callback", tag = "datasources",
    params(("datasource" = String, Path, description = "The datasource, e.g. `gdrive` or `onedrive`"), CallbackParams,
        ("kbsync_oauth_binding_{flow}" = Option<String>, Cookie, description = "The binding cookie `initiate` set")),
    responses(
        (status = 200, description = "Connected: a page that tells its opener", content(("text/html"))),
        (status = 400, description = "Refused or failed: a page that tells its opener why", content(("text/html"))),
    ))]
pub async fn connectors_callback(
    State(state): State<AppState>,
    ApiPath(datasource): ApiPath<String>,
    headers: HeaderMap,
    params: Result<axum::extract::Query<CallbackParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    complete_callback(&state, RouteFamily::Connectors, &datasource, &headers, params).await
}

/// Both callbacks: `family` is the one the request came to (the binding cookie it carries was
/// sent to that family's routes, so that is where it is removed).
async fn complete_callback(
    state: &AppState,
    family: RouteFamily,
    datasource: &str,
    headers: &HeaderMap,
    params: Result<axum::extract::Query<CallbackParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut flow = None;
    let outcome = match (connections::datasource(datasource), params) {
        (Err(_), _) => CallbackOutcome::error(None, "unknown datasource"),
        (_, Err(_)) => CallbackOutcome::error(None, "the authorization response was malformed"),
        (Ok(_), Ok(axum::extract::Query(p))) => {
            let binding = p.state.as_deref().and_then(|st| {
                let id = kbsync_oauth::flow_id(st);
                let cookie = auth::cookie(headers, &format!("{BINDING_COOKIE_PREFIX}{id}"));
                flow = Some(id);
                cookie
            });
            match (p.state, p.code, p.error) {
                (Some(st), _, Some(error)) => {
                    let kb = connections::abandon(state, &st, binding).await;
                    let denied = CallbackError::denied(kb, &error, p.error_description.as_deref());
                    CallbackOutcome::error(denied.kb_id, &denied.reason)
                }
                (Some(st), Some(code), None) => {
                    match connections::complete(state, &st, &code, binding).await {
                        Ok(kb) => CallbackOutcome {
                            knowledge_id: Some(kb),
                            error: None,
                        },
                        Err(e) => CallbackOutcome::error(e.kb_id, &e.reason),
                    }
                }
                _ => CallbackOutcome::error(None, "the authorization response has no state or no code"),
            }
        }
    };
    if let Some(error) = &outcome.error {
        tracing::info!(kb.id = ?outcome.knowledge_id, %error, "oauth callback refused");
    }
    let status = if outcome.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = callback_page(&state.settings.public_url, &outcome);
    let mut response = (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, callback_csp()),
        ],
        Html(page),
    )
        .into_response();
    if let Some(id) = flow
        && let Ok(v) = HeaderValue::from_str(&cleared_binding_cookie(&state.settings.public_url, family, &id))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

pub struct CallbackOutcome {
    pub knowledge_id: Option<KbId>,
    pub error: Option<String>,
}

impl CallbackOutcome {
    fn error(knowledge_id: Option<KbId>, reason: &str) -> Self {
        Self {
            knowledge_id,
            error: Some(reason.to_owned()),
        }
    }
}

/// The script of the callback page; fixed text, so its hash can be pinned in the CSP.
const CALLBACK_SCRIPT: &str = "var d=JSON.parse(document.getElementById('kbsync-result').textContent);\
if(window.opener){window.opener.postMessage(d.message,d.origin);window.close();}";

/// Only the page's own fixed script may run.
fn callback_csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        use sha2::Digest;
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(CALLBACK_SCRIPT.as_bytes()));
        format!("default-src 'none'; script-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'")
    })
}

/// Renders the page: the result travels as JSON inside a non-executable script element (with
/// `<`, `>`, `&` and quotes escaped so no value can end it), is posted to the opener only at
/// the public origin, and is shown HTML-escaped for a person when there is no opener.
pub fn callback_page(public_url: &str, outcome: &CallbackOutcome) -> String {
    let origin = url::Url::parse(public_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| public_url.trim_end_matches('/').to_owned());
    let message = json!({
        "type": if outcome.error.is_some() { "kbsync-auth-error" } else { "kbsync-auth-success" },
        "knowledge_id": outcome.knowledge_id,
        "error": outcome.error,
    });
    let data = json!({ "message": message, "origin": origin });
    let human = match &outcome.error {
        None => "Connected. You can close this window.".to_owned(),
        Some(e) => format!("The connection failed: {e}. Close this window and try again."),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kbsync</title></head>\n<body>\n\
         <p>{}</p>\n<script type=\"application/json\" id=\"kbsync-result\">{}</script>\n<script>{}</script>\n</body></html>\n",
        html_escape(&human),
        script_safe_json(&data),
        CALLBACK_SCRIPT
    )
}

/// JSON that cannot close or confuse the script element it sits in.
fn script_safe_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\'', "\\u0027")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A knowledge base's stored connection (never the token itself).
#[derive(Serialize, ToSchema)]
pub struct ConnectionDto {
    pub datasource: DatasourceKind,
    pub has_stored_token: bool,
    pub token_stored_at: Option<DateTime<Utc>>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub needs_reauth: bool,
    /// Connected as the organisation's application rather than by a user's sign-in.
    pub app_only: bool,
}

/// The knowledge base's connection: whether a token is stored, and whether it needs re-authorisation
#[utoipa::path(get, path = "/knowledge/{id}/connection", tag = "datasources",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 200, description = "The connection", body = ConnectionDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base or no connection, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn get_connection(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(kb_id): ApiPath<KbId>,
) -> ApiResult<Json<ConnectionDto>> {
    let s = connections::status(&state, &user, kb_id).await?;
    Ok(Json(ConnectionDto {
        datasource: s.datasource,
        has_stored_token: s.has_stored_token,
        token_stored_at: s.token_stored_at,
        last_refreshed_at: s.last_refreshed_at,
        needs_reauth: s.needs_reauth,
        app_only: s.app_only,
    }))
}

/// Forget the knowledge base's stored connection (managers)
#[utoipa::path(delete, path = "/knowledge/{id}/connection", tag = "datasources",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn delete_connection(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(kb_id): ApiPath<KbId>,
) -> ApiResult<StatusCode> {
    connections::forget(&state, &user, kb_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BrowseParams {
    /// The connected knowledge base whose connection browses.
    #[param(value_type = uuid::Uuid)]
    pub knowledge_id: KbId,
    /// With `item_id`: the folder to list; absent: the top level (drives and sites).
    pub drive_id: Option<String>,
    pub item_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BrowseResponse {
    pub items: Vec<BrowseEntry>,
}

/// The picker: drives, sites, folders and files at a location of the connected datasource
#[utoipa::path(get, path = "/datasources/{datasource}/browse", tag = "datasources",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("datasource" = String, Path, description = "The datasource, e.g. `onedrive` or `gdrive`"), BrowseParams),
    responses(
        (status = 200, description = "The entries at the location", body = BrowseResponse),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such datasource, knowledge base or location", body = ErrorBody),
        (status = 409, description = "The knowledge base is not connected, or needs re-authorisation", body = ErrorBody),
        (status = 422, description = "No or a malformed `knowledge_id`", body = ErrorBody),
        (status = 502, description = "The datasource answered with an error", body = ErrorBody),
    ))]
pub async fn browse(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(datasource): ApiPath<String>,
    ApiQuery(params): ApiQuery<BrowseParams>,
) -> ApiResult<Json<BrowseResponse>> {
    let kind = connections::datasource(&datasource)?;
    let at = BrowseLocation {
        drive_id: params.drive_id,
        item_id: params.item_id,
    };
    let items = connections::browse(&state, &user, kind, params.knowledge_id, at).await?;
    Ok(Json(BrowseResponse { items }))
}

/// The picker under the `connectors` name (the same operation as `GET /datasources/{datasource}/browse`)
#[utoipa::path(get, path = "/connectors/{datasource}/browse", tag = "datasources",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("datasource" = String, Path, description = "The datasource, e.g. `gdrive` or `onedrive`"), BrowseParams),
    responses(
        (status = 200, description = "The entries at the location", body = BrowseResponse),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such datasource, knowledge base or location", body = ErrorBody),
        (status = 409, description = "The knowledge base is not connected, or needs re-authorisation", body = ErrorBody),
        (status = 422, description = "No or a malformed `knowledge_id`", body = ErrorBody),
        (status = 502, description = "The datasource answered with an error", body = ErrorBody),
    ))]
pub async fn connectors_browse(
    state: State<AppState>,
    user: CurrentUser,
    datasource: ApiPath<String>,
    params: ApiQuery<BrowseParams>,
) -> ApiResult<Json<BrowseResponse>> {
    browse(state, user, datasource, params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_page_keeps_hostile_error_text_inert_and_posts_only_to_the_public_origin() {
        let hostile = "</script><script>alert(1)</script> \"quoted\" 'single' & <b>";
        let page = callback_page(
            "https://kb.example.com/some/path",
            &CallbackOutcome {
                knowledge_id: None,
                error: Some(hostile.to_owned()),
            },
        );
        // Exactly the two script elements of the template, nothing injected.
        assert_eq!(page.matches("<script").count(), 2, "{page}");
        assert_eq!(page.matches("</script>").count(), 2, "{page}");
        assert!(!page.contains("<b>"));
        assert!(page.contains("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &quot;quoted&quot; &#x27;single&#x27; &amp; &lt;b&gt;"));
        assert!(page.contains(r#""origin":"https://kb.example.com""#), "{page}");
        assert!(!page.contains("\"*\""));
        assert!(page.contains("kbsync-auth-error"));
        // The embedded JSON still decodes to the original text.
        let start = page.find("id=\"kbsync-result\">").unwrap() + "id=\"kbsync-result\">".len();
        let end = start + page[start..].find("</script>").unwrap();
        let data: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(data["message"]["error"], hostile);
    }

    #[test]
    fn binding_cookie_is_http_only_lax_limited_to_the_datasources_routes_and_secure_behind_https() {
        let started = Initiated {
            auth_url: "https://login.example.com/authorize".into(),
            flow_id: "0123456789abcdef".into(),
            binding: "the-secret".into(),
            ttl: chrono::Duration::minutes(10),
        };
        let https = binding_cookie("https://kb.example.com", RouteFamily::Datasources, &started);
        assert_eq!(
            https,
            "kbsync_oauth_binding_0123456789abcdef=the-secret; Path=/api/v1/datasources/; HttpOnly; \
             SameSite=Lax; Max-Age=600; Secure"
        );
        let http = binding_cookie("http://127.0.0.1:8080", RouteFamily::Datasources, &started);
        assert!(!http.contains("Secure"), "{http}");
        let cleared = cleared_binding_cookie(
            "https://kb.example.com",
            RouteFamily::Datasources,
            "0123456789abcdef",
        );
        assert!(
            cleared.starts_with("kbsync_oauth_binding_0123456789abcdef=; ")
                && cleared.contains("Max-Age=0")
                && cleared.contains("Path=/api/v1/datasources/")
                && cleared.ends_with("; Secure"),
            "{cleared}"
        );
    }

    #[test]
    fn the_binding_cookie_goes_to_the_route_family_of_the_registered_callback() {
        for (uri, family) in [
            (
                "https://kb.example.com/api/v1/datasources/gdrive/auth/callback",
                RouteFamily::Datasources,
            ),
            (
                "https://kb.example.com/api/v1/connectors/gdrive/auth/callback",
                RouteFamily::Connectors,
            ),
            (
                "http://127.0.0.1:8080/api/v1/connectors/onedrive/auth/callback",
                RouteFamily::Connectors,
            ),
            // Not a kbsync path at all (a proxy rewrites it): kbsync's own family.
            ("https://kb.example.com/oauth/cb", RouteFamily::Datasources),
            ("not a url", RouteFamily::Datasources),
        ] {
            assert_eq!(RouteFamily::of_redirect_uri(uri), family, "{uri}");
        }
        let started = Initiated {
            auth_url: "https://accounts.example.com/o/oauth2/v2/auth".into(),
            flow_id: "0123456789abcdef".into(),
            binding: "the-secret".into(),
            ttl: chrono::Duration::minutes(10),
        };
        let cookie = binding_cookie("https://kb.example.com", RouteFamily::Connectors, &started);
        assert!(cookie.contains("; Path=/api/v1/connectors/; "), "{cookie}");
        let cleared = cleared_binding_cookie(
            "https://kb.example.com",
            RouteFamily::Connectors,
            "0123456789abcdef",
        );
        assert!(
            cleared.contains("; Path=/api/v1/connectors/; ") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
    }

    #[test]
    fn callback_page_reports_success_with_the_knowledge_base() {
        let kb = uuid::Uuid::new_v4();
        let page = callback_page(
            "http://127.0.0.1:8080",
            &CallbackOutcome {
                knowledge_id: Some(kb),
                error: None,
            },
        );
        assert!(page.contains("kbsync-auth-success"));
        assert!(page.contains(&kb.to_string()));
        assert!(page.contains(r#""origin":"http://127.0.0.1:8080""#));
    }
}
