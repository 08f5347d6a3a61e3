//! The Graph v1.0 surface under `/v1.0`: users, drives, items (by id or path), children, delta, content,
//! permissions and sites. One handler parses the path itself, because Graph addresses the same drive through
//! many prefixes (`/me/drive`, `/users/{id}/drive`, `/drives/{id}`, `/sites/{id}/drive`, …) and items through
//! `root:/path:` segments that a router cannot express.

use crate::Shared;
use crate::app_only::AppGrant;
use crate::auth::AccessRecord;
use crate::auth::GRAPH_AUDIENCE;
use crate::delta::{DeltaError, DeltaLink, DeltaRequest};
use crate::error::{GraphError, RequestMeta};
use crate::render::{self, Mode, RenderCtx};
use crate::scopes::{SITES_READ, has_permission};
use crate::store::{DriveOwner, Store};
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type Query = HashMap<String, String>;

fn parse_query(uri: &Uri) -> Query {
    let mut q = HashMap::new();
    if let Some(raw) = uri.query() {
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            let k = k.trim_start_matches('$').to_ascii_lowercase();
            q.insert(k, v.into_owned());
        }
    }
    q
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn select_of(q: &Query) -> Option<Vec<String>> {
    q.get("select").map(|s| {
        s.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    })
}

fn top_of(q: &Query) -> Result<Option<usize>, GraphError> {
    match q.get("top") {
        None => Ok(None),
        Some(t) => t
            .parse::<usize>()
            .map(|n| Some(n.clamp(1, 1000)))
            .map_err(|_| GraphError::bad_request(format!("Invalid $top value '{t}'"))),
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// Where a drive-relative request points.
enum ItemRef {
    Root,
    Id(String),
}

/// The entry point for every `/v1.0/…` request.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(meta): Extension<RequestMeta>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = match authenticate(&shared, &meta, &headers) {
        Err(e) => Err(e),
        Ok(record) => {
            let (caller, app) = (record.user_id.clone(), record.client_id.clone());
            let rest = uri
                .path()
                .strip_prefix("/v1.0")
                .unwrap_or("")
                .trim_end_matches('/');
            let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
            if let Some(grant) = &record.app
                && let Err(e) = app_only_allows(grant, &segs)
            {
                Err(e)
            } else if segs.first() == Some(&"subscriptions") {
                crate::subscriptions::handle(&shared, &meta, &caller, &app, &method, &segs, &body).await
            } else {
                route(&shared, &meta, &record, &method, &uri, &headers)
            }
        }
    };
    match result {
        Ok(r) => r,
        Err(e) => e.into_response_with(&meta),
    }
}

/// The bearer token's record: the caller's user id, the application's id and the permissions granted.
fn authenticate(
    shared: &Shared,
    meta: &RequestMeta,
    headers: &HeaderMap,
) -> Result<AccessRecord, GraphError> {
    let token = bearer(headers)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| GraphError::unauthorized("Access token is empty."))?;
    let store = shared.store.read();
    let record = store
        .check_access_token(token, meta.date)
        .map_err(GraphError::unauthorized)?;
    if record.audience != GRAPH_AUDIENCE {
        return Err(GraphError::unauthorized(
            "Access token validation failure. Invalid audience.",
        ));
    }
    Ok(record.clone())
}

/// Application permissions that let an app-only caller read every site and its libraries.
const APP_SITE_ROLES: &[&str] = &[
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
];
/// Application permissions that let an app-only caller read every drive (not list sites).
const APP_FILE_ROLES: &[&str] = &["Files.Read.All", "Files.ReadWrite.All"];

/// What an app-only caller may ask: nothing under `/me` (there is no signed-in user: Graph answers 400,
/// learn.microsoft.com/troubleshoot/entra/entra-id/users-groups-entra-apis/error-call-me-endpoint-microsoft-graph),
/// sites with a `Sites.*` application permission, drives with a `Sites.*` or `Files.*` one. A token without
/// any role is refused outright.
fn app_only_allows(grant: &AppGrant, segs: &[&str]) -> Result<(), GraphError> {
    if segs.first() == Some(&"me") {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        ));
    }
    if grant.roles.is_empty() {
        return Err(GraphError::unauthorized(
            "Either scp or roles claim need to be present in the token.",
        ));
    }
    let allowed = match segs.first() {
        Some(&"sites") if !segs.contains(&"drive") && !segs.contains(&"drives") => {
            grant.has_role(APP_SITE_ROLES)
        }
        Some(&"sites" | &"drives" | &"users") => {
            grant.has_role(APP_SITE_ROLES) || grant.has_role(APP_FILE_ROLES)
        }
        // Other resources (subscriptions, directory objects) check their own permissions.
        _ => true,
    };
    if allowed {
        Ok(())
    } else {
        Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "accessDenied",
            "Access denied. You do not have permission to perform this action or access this resource.",
        ))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn route(
    shared: &Shared,
    meta: &RequestMeta,
    record: &AccessRecord,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, GraphError> {
    let now = meta.date;
    let caller = record.user_id.clone();
    if method != Method::GET && method != Method::HEAD {
        return Err(GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "notSupported",
            "The emulator serves read operations only.",
        ));
    }
    let q = parse_query(uri);
    let rest = uri.path().strip_prefix("/v1.0").unwrap_or("");
    let rest = rest.trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let ctx = RenderCtx {
        base_url: &shared.base_url,
        now,
        download_key: &shared.download_key,
        download_lifetime_secs: shared.download_lifetime_secs,
    };
    if segs.first() == Some(&"sites") && !has_permission(record, SITES_READ) {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "accessDenied",
            "Access denied. You do not have permission to perform this action or access this resource.",
        ));
    }
    match segs.as_slice() {
        [] => Err(GraphError::bad_request("Invalid request")),
        ["groups", id, members, rest @ ..]
            if members.eq_ignore_ascii_case("transitiveMembers") && rest.len() <= 1 =>
        {
            let cast = rest.first().map(|c| decode(c));
            crate::directory::transitive_members(shared, record, &decode(id), cast.as_deref(), &q)
        }
        ["me"] => user_response(shared, &caller),
        ["users", id] => user_response(shared, &decode(id)),
        ["me", "drives"] => user_drives(shared, &caller),
        ["users", id, "drives"] => user_drives(shared, &decode(id)),
        ["drives"] => user_drives(shared, &caller),
        ["me", "drive", "sharedWithMe"] => shared_with_me(shared, &ctx, &caller, &caller),
        ["users", id, "drive", "sharedWithMe"] => shared_with_me(shared, &ctx, &caller, &decode(id)),
        ["sites"] => list_sites(shared, &q),
        ["sites", id] => {
            let store = shared.store.read();
            let site = find_site(&store, &decode(id))?;
            Ok(json_response(
                StatusCode::OK,
                render::site_json(site, &shared.graph_url),
            ))
        }
        ["sites", id, "drives"] => {
            let store = shared.store.read();
            let site = find_site(&store, &decode(id))?;
            let drives: Vec<Value> = site
                .drive_ids
                .iter()
                .filter_map(|d| store.drives.get(d))
                .map(|d| render::drive_json(&store, d))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                json!({"@odata.context": format!("{}/$metadata#drives", shared.graph_url), "value": drives}),
            ))
        }
        _ => {
            let (drive_id, tail) = {
                let store = shared.store.read();
                resolve_drive(&store, &caller, &segs)?
            };
            let tail_raw: Vec<&str> = segs
                .get(segs.len() - tail..)
                .map(<[&str]>::to_vec)
                .unwrap_or_default();
            drive_route(shared, &ctx, &caller, &drive_id, &tail_raw.join("/"), &q, headers)
        }
    }
}

fn user_response(shared: &Shared, key: &str) -> Result<Response, GraphError> {
    let store = shared.store.read();
    let user = store.find_user(key).ok_or_else(|| {
        GraphError::new(StatusCode::NOT_FOUND, "Request_ResourceNotFound", format!("Resource '{key}' does not exist or one of its queried reference-property objects are not present."))
    })?;
    Ok(json_response(
        StatusCode::OK,
        render::user_json(user, &shared.graph_url),
    ))
}

fn user_drives(shared: &Shared, key: &str) -> Result<Response, GraphError> {
    let store = shared.store.read();
    let user = store
        .find_user(key)
        .ok_or_else(|| GraphError::not_found(format!("user {key}")))?;
    let drives: Vec<Value> = store
        .drives
        .values()
        .filter(|d| matches!(&d.owner, DriveOwner::User(u) if *u == user.id))
        .map(|d| render::drive_json(&store, d))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({"@odata.context": format!("{}/$metadata#drives", shared.graph_url), "value": drives}),
    ))
}

fn find_site<'a>(store: &'a Store, key: &str) -> Result<&'a crate::store::Site, GraphError> {
    if key == "root" {
        return store
            .sites
            .values()
            .next()
            .ok_or_else(|| GraphError::not_found("no root site"));
    }
    store
        .sites
        .get(key)
        .or_else(|| store.sites.values().find(|s| s.id.split(',').nth(1) == Some(key)))
        .ok_or_else(|| GraphError::not_found(format!("site {key}")))
}

fn list_sites(shared: &Shared, q: &Query) -> Result<Response, GraphError> {
    let store = shared.store.read();
    let search = q
        .get("search")
        .map(|s| s.trim_matches('"').to_lowercase())
        .unwrap_or_default();
    let sites: Vec<Value> = store
        .sites
        .values()
        .filter(|s| {
            search.is_empty()
                || search == "*"
                || s.display_name.to_lowercase().contains(&search)
                || s.name.to_lowercase().contains(&search)
        })
        .map(|s| {
            let mut v = render::site_json(s, &shared.graph_url);
            if let Some(o) = v.as_object_mut() {
                o.remove("@odata.context");
            }
            v
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({"@odata.context": format!("{}/$metadata#sites", shared.graph_url), "value": sites}),
    ))
}

/// Finds the drive a path addresses; returns it and how many trailing segments remain.
fn resolve_drive(store: &Store, caller: &str, segs: &[&str]) -> Result<(String, usize), GraphError> {
    let user_drive = |key: &str| -> Result<String, GraphError> {
        let user = store
            .find_user(key)
            .ok_or_else(|| GraphError::not_found(format!("user {key}")))?;
        user.drive_id
            .clone()
            .ok_or_else(|| GraphError::not_found("The user has no drive (mysite not found)"))
    };
    let site_drive = |key: &str| -> Result<String, GraphError> {
        let site = find_site(store, key)?;
        site.drive_ids
            .first()
            .cloned()
            .ok_or_else(|| GraphError::not_found("site has no drive"))
    };
    match segs {
        ["me", "drive", ..] => Ok((user_drive(caller)?, segs.len() - 2)),
        ["users", id, "drive", ..] => Ok((user_drive(&decode(id))?, segs.len() - 3)),
        ["drives", id, ..] => {
            let id = decode(id);
            store.drive(&id)?;
            Ok((id, segs.len() - 2))
        }
        ["sites", id, "drive", ..] => Ok((site_drive(&decode(id))?, segs.len() - 3)),
        ["sites", _, "drives", id, ..] => {
            let id = decode(id);
            store.drive(&id)?;
            Ok((id, segs.len() - 4))
        }
        _ => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Resource not found for the segment.",
        )),
    }
}

/// Splits `root:/a/b:/children` or `items/{id}:/rel:/content` into (item reference, relative path, action).
fn parse_item_path(tail: &str) -> Result<(ItemRef, Option<String>, String), GraphError> {
    let (base, after) = if let Some(after) = tail.strip_prefix("root") {
        (ItemRef::Root, after)
    } else if let Some(after) = tail.strip_prefix("items/") {
        let end = after.find(['/', ':']).unwrap_or(after.len());
        (ItemRef::Id(decode(&after[..end])), &after[end..])
    } else {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Resource not found for the segment '{tail}'."),
        ));
    };
    if let Some(path_part) = after.strip_prefix(':') {
        let (path, action) = match path_part.find(':') {
            Some(i) => (&path_part[..i], &path_part[i + 1..]),
            None => (path_part, ""),
        };
        Ok((
            base,
            Some(decode(path)),
            action.trim_start_matches('/').to_string(),
        ))
    } else {
        Ok((base, None, after.trim_start_matches('/').to_string()))
    }
}

/// The answer when the caller may not read something in `drive`: 404 `itemNotFound` on personal drives
/// (consumer OneDrive does not reveal items that are not shared with the caller), 403 `accessDenied` on
/// OneDrive for Business and SharePoint.
pub(crate) fn access_error(drive: &crate::store::Drive) -> GraphError {
    if drive.drive_type.is_personal() {
        GraphError::not_found("Item does not exist")
    } else {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "accessDenied",
            "Access denied. You do not have permission to perform this action or access this resource.",
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn drive_route(
    shared: &Shared,
    ctx: &RenderCtx<'_>,
    caller: &str,
    drive_id: &str,
    tail: &str,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, GraphError> {
    {
        let store = shared.store.read();
        let drive = store.drive(drive_id)?;
        if !store.can_see_drive(caller, drive) {
            return Err(access_error(drive));
        }
    }
    if tail.is_empty() {
        let store = shared.store.read();
        let drive = store.drive(drive_id)?;
        let mut v = render::drive_json(&store, drive);
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "@odata.context".into(),
                format!("{}/$metadata#drives/$entity", shared.graph_url).into(),
            );
        }
        return Ok(json_response(StatusCode::OK, v));
    }
    let (base, rel, action) = parse_item_path(tail)?;
    let lazy = shared.store.read().drive(drive_id)?.lazy.clone();
    if let Some(lazy) = lazy {
        let target = LazyTarget {
            base,
            rel,
            action: decode(&action),
        };
        return lazy_route(shared, ctx, caller, drive_id, &lazy, target, q, headers);
    }
    let item_id = {
        let store = shared.store.read();
        let drive = store.drive(drive_id)?;
        let base_id = match &base {
            ItemRef::Root => drive.root_id.clone(),
            ItemRef::Id(id) => drive.item(id)?.id.clone(),
        };
        let id = match &rel {
            Some(p) => drive.resolve(&base_id, p)?.id.clone(),
            None => base_id,
        };
        if !store.can_read(caller, drive, &id) {
            return Err(access_error(drive));
        }
        id
    };
    let action_decoded = decode(&action);
    match action_decoded.as_str() {
        "" => {
            let store = shared.store.read();
            let drive = store.drive(drive_id)?;
            let item = drive.item(&item_id)?;
            let mut m = render::item_json(&store, drive, item, ctx, Mode::Full);
            m.insert(
                "@odata.context".into(),
                format!(
                    "{}/$metadata#drives('{}')/items/$entity",
                    shared.graph_url, drive_id
                )
                .into(),
            );
            if q.get("expand").is_some_and(|e| e.contains("permissions")) {
                let perms: Vec<Value> = render::effective_permissions(drive, item)
                    .into_iter()
                    .map(|(p, from)| render::permission_json(&store, drive, p, from))
                    .collect();
                m.insert("permissions".into(), Value::Array(perms));
            }
            let mut sel = select_of(q);
            if let Some(s) = &mut sel {
                s.push("@odata.context".into());
                if q.get("expand").is_some_and(|e| e.contains("permissions")) {
                    s.push("permissions".into());
                }
            }
            Ok(json_response(
                StatusCode::OK,
                render::apply_select(m, sel.as_deref()),
            ))
        }
        "children" => children(shared, ctx, caller, drive_id, &item_id, q),
        "content" => content(shared, ctx, drive_id, &item_id, headers),
        "permissions" => permissions(shared, drive_id, &item_id, q, None),
        a if a.starts_with("permissions/") => {
            permissions(shared, drive_id, &item_id, q, a.strip_prefix("permissions/"))
        }
        a if a == "delta" || a.starts_with("delta(") => {
            let mut token = q.get("token").cloned();
            if let Some(inner) = a.strip_prefix("delta(").and_then(|s| s.strip_suffix(')')) {
                let v = inner.trim_start_matches("token=").trim_matches('\'');
                if !v.is_empty() {
                    token = Some(v.to_string());
                }
            }
            delta(shared, ctx, caller, drive_id, &item_id, token, q, headers)
        }
        other => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Resource not found for the segment '{other}'."),
        )),
    }
}

/// `GET /me/drive/sharedWithMe`: items of other drives shared with the caller, each with a `remoteItem` facet
/// that points at the drive really holding it. Another user's list is not the caller's to read (403).
fn shared_with_me(
    shared: &Shared,
    ctx: &RenderCtx<'_>,
    caller: &str,
    whose: &str,
) -> Result<Response, GraphError> {
    let store = shared.store.read();
    let user = store.find_user(whose).ok_or_else(|| {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!("Resource '{whose}' does not exist or one of its queried reference-property objects are not present."),
        )
    })?;
    if user.id != caller {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "accessDenied",
            "Access denied. You do not have permission to perform this action or access this resource.",
        ));
    }
    let values: Vec<Value> = store
        .shared_with_me(&user.id)
        .into_iter()
        .map(|(drive, item)| Value::Object(render::shared_item_json(&store, drive, item, ctx)))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({"@odata.context": format!("{}/$metadata#Collection(driveItem)", shared.graph_url), "value": values}),
    ))
}

fn encode_skiptoken(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("Paged=TRUE&p_SortBehavior=0&p_Offset={offset}"))
}

fn decode_skiptoken(t: &str) -> Result<usize, GraphError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.rsplit_once("p_Offset=").and_then(|(_, n)| n.parse().ok()))
        .ok_or_else(|| GraphError::bad_request("Invalid $skiptoken"))
}

fn next_link(graph_url: &str, path: &str, top: usize, offset: usize, select: Option<&String>) -> String {
    let mut link = format!(
        "{graph_url}{path}?$top={top}&$skiptoken={}",
        encode_skiptoken(offset)
    );
    if let Some(s) = select {
        link.push_str("&$select=");
        link.push_str(&render::encode_segment(s));
    }
    link
}

fn children(
    shared: &Shared,
    ctx: &RenderCtx<'_>,
    caller: &str,
    drive_id: &str,
    item_id: &str,
    q: &Query,
) -> Result<Response, GraphError> {
    let store = shared.store.read();
    let drive = store.drive(drive_id)?;
    let item = drive.item(item_id)?;
    if !item.folder {
        return Ok(json_response(StatusCode::OK, json!({"value": []})));
    }
    let top = top_of(q)?.unwrap_or(200);
    let offset = q
        .get("skiptoken")
        .map(|t| decode_skiptoken(t))
        .transpose()?
        .unwrap_or(0);
    let select = select_of(q);
    let filter = store.has_revocations(caller, drive_id);
    let ids: Vec<&String> = item
        .children
        .values()
        .filter(|id| !filter || store.can_read(caller, drive, id))
        .collect();
    let page: Vec<Value> = ids
        .iter()
        .skip(offset)
        .take(top)
        .filter_map(|id| drive.items.get(*id))
        .map(|c| {
            render::apply_select(
                render::item_json(&store, drive, c, ctx, Mode::Full),
                select.as_deref(),
            )
        })
        .collect();
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#drives('{}')/items('{}')/children", shared.graph_url, drive_id, item_id),
        "value": page,
    });
    if offset + top < ids.len() {
        let path = format!(
            "/drives/{}/items/{}/children",
            drive_id,
            render::encode_segment(item_id)
        );
        if let Some(o) = body.as_object_mut() {
            o.insert(
                "@odata.nextLink".into(),
                next_link(&shared.graph_url, &path, top, offset + top, q.get("select")).into(),
            );
        }
    }
    Ok(json_response(StatusCode::OK, body))
}

fn content(
    shared: &Shared,
    ctx: &RenderCtx<'_>,
    drive_id: &str,
    item_id: &str,
    headers: &HeaderMap,
) -> Result<Response, GraphError> {
    let store = shared.store.read();
    let drive = store.drive(drive_id)?;
    let item = drive.item(item_id)?;
    if item.folder {
        return Err(GraphError::not_found("The item is a folder and has no content."));
    }
    let (etag, ctag) = render::item_etags(item);
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        // eTags contain commas themselves, so match them as substrings rather than splitting the list.
        if inm.trim() == "*" || inm.contains(&etag) || inm.contains(&ctag) {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    let url = render::download_url(ctx, drive_id, item_id);
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

fn permissions(
    shared: &Shared,
    drive_id: &str,
    item_id: &str,
    q: &Query,
    single: Option<&str>,
) -> Result<Response, GraphError> {
    let store = shared.store.read();
    let drive = store.drive(drive_id)?;
    let item = drive.item(item_id)?;
    let all = render::effective_permissions(drive, item);
    permissions_page(shared, &store, drive, item_id, all, q, single)
}

/// One page of an item's permissions (or the one named `single`).
fn permissions_page(
    shared: &Shared,
    store: &Store,
    drive: &crate::store::Drive,
    item_id: &str,
    all: Vec<(&crate::store::StoredPermission, Option<&crate::store::Item>)>,
    q: &Query,
    single: Option<&str>,
) -> Result<Response, GraphError> {
    let drive_id = drive.id.as_str();
    if let Some(pid) = single {
        let (p, from) = all
            .into_iter()
            .find(|(p, _)| p.id == pid)
            .ok_or_else(|| GraphError::not_found(format!("permission {pid}")))?;
        return Ok(json_response(
            StatusCode::OK,
            render::permission_json(store, drive, p, from),
        ));
    }
    let top = top_of(q)?.unwrap_or(100);
    let offset = q
        .get("skiptoken")
        .map(|t| decode_skiptoken(t))
        .transpose()?
        .unwrap_or(0);
    let select = select_of(q);
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(top)
        .map(|(p, from)| {
            let v = render::permission_json(store, drive, p, *from);
            match v {
                Value::Object(m) => render::apply_select(m, select.as_deref()),
                other => other,
            }
        })
        .collect();
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#drives('{}')/items('{}')/permissions", shared.graph_url, drive_id, item_id),
        "value": page,
    });
    if offset + top < all.len() {
        let path = format!(
            "/drives/{}/items/{}/permissions",
            drive_id,
            render::encode_segment(item_id)
        );
        if let Some(o) = body.as_object_mut() {
            o.insert(
                "@odata.nextLink".into(),
                next_link(&shared.graph_url, &path, top, offset + top, q.get("select")).into(),
            );
        }
    }
    Ok(json_response(StatusCode::OK, body))
}

fn delta_base(graph_url: &str, drive_id: &str, root_id: &str, scope_id: &str) -> String {
    if scope_id == root_id {
        format!("{graph_url}/drives/{drive_id}/root/delta")
    } else {
        format!(
            "{graph_url}/drives/{drive_id}/items/{}/delta",
            render::encode_segment(scope_id)
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn delta(
    shared: &Shared,
    ctx: &RenderCtx<'_>,
    caller: &str,
    drive_id: &str,
    scope_id: &str,
    token: Option<String>,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, GraphError> {
    let prefers = |what: &str| {
        headers.get_all("prefer").iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(what)))
        })
    };
    let exclude_parent = prefers("deltaexcludeparent")
        || headers
            .get("deltaExcludeParent")
            .is_some_and(|v| v.to_str().is_ok_and(|s| !s.eq_ignore_ascii_case("false")));
    let mut store = shared.store.write();
    let root_id = store.drive(drive_id)?.root_id.clone();
    let base = delta_base(&shared.graph_url, drive_id, &root_id, scope_id);
    let req = DeltaRequest {
        drive_id,
        scope_id,
        token: token.as_deref(),
        top: top_of(q)?,
        select: select_of(q),
        exclude_parent,
    };
    let page = match store.delta_page(req, ctx.now) {
        Ok(p) => p,
        Err(DeltaError::Store(e)) => return Err(e.into()),
        Err(DeltaError::Mismatch) => {
            return Err(GraphError::bad_request(
                "The delta token does not belong to this drive and item.",
            ));
        }
        Err(DeltaError::Expired { code }) => {
            return Err(GraphError::resync_required(code, base));
        }
    };
    let store = &*store;
    let drive = store.drive(drive_id)?;
    // Sharing changes are annotated on business drives only, and only for clients that also ask for
    // deleted-as-removed and permission-gap traversal, which the annotation requires.
    let show_sharing = !drive.drive_type.is_personal()
        && prefers("deltashowsharingchanges")
        && prefers("deltashowremovedasdeleted")
        && prefers("deltatraversepermissiongaps");
    // `Prefer: hierarchicalsharing` (business drives): the `shared` facet only on the roots of permission
    // hierarchies and on items whose sharing changed since the token; without it, no `shared` facet at all.
    let hierarchical = !drive.drive_type.is_personal() && prefers("hierarchicalsharing");
    let filter = store.has_revocations(caller, drive_id);
    let values: Vec<Value> = page
        .entries
        .iter()
        .filter_map(|e| {
            let item = drive.items.get(&e.id)?;
            let dead = e.tombstone || !item.is_live();
            if filter && !dead && !store.can_read(caller, drive, &e.id) {
                return None;
            }
            let mut m = if dead {
                render::tombstone_json(drive, item)
            } else {
                render::item_json(store, drive, item, ctx, Mode::Delta)
            };
            let permission_root = item.parent_id.is_none() || !item.permissions.is_empty();
            if hierarchical && !dead && (permission_root || e.sharing_changed) {
                m.insert("shared".into(), render::shared_facet(store, drive, item));
            }
            if show_sharing && e.sharing_changed {
                m.insert("@microsoft.graph.sharedChanged".into(), "True".into());
            }
            Some(render::apply_select(m, page.select.as_deref()))
        })
        .collect();
    let mut body = json!({"@odata.context": format!("{}/$metadata#Collection(driveItem)", shared.graph_url), "value": values});
    if let Some(o) = body.as_object_mut() {
        match page.link {
            DeltaLink::Next(t) => o.insert("@odata.nextLink".into(), format!("{base}?token={t}").into()),
            DeltaLink::Delta(t) => o.insert("@odata.deltaLink".into(), format!("{base}?token={t}").into()),
        };
    }
    Ok(json_response(StatusCode::OK, body))
}

/// What a request addresses in a generated drive: an item (by id or root, then a relative path) and an action.
struct LazyTarget {
    base: ItemRef,
    rel: Option<String>,
    action: String,
}

/// The Graph surface of a generated drive (see [`crate::lazy`]): items, children, content, permissions and
/// delta computed on demand. Every generated item inherits the root's permissions, so whoever reads the root
/// reads them all.
#[allow(clippy::too_many_arguments)]
fn lazy_route(
    shared: &Shared,
    ctx: &RenderCtx<'_>,
    caller: &str,
    drive_id: &str,
    lazy: &crate::lazy::LazyDrive,
    target: LazyTarget,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, GraphError> {
    let store = shared.store.read();
    let drive = store.drive(drive_id)?;
    let missing = || GraphError::not_found("Item does not exist");
    let base = match &target.base {
        ItemRef::Root => 0,
        ItemRef::Id(id) => lazy.index_of(drive, id).ok_or_else(missing)?,
    };
    let k = match &target.rel {
        Some(p) => lazy.resolve(base, p).ok_or_else(missing)?,
        None => base,
    };
    if !store.can_read(caller, drive, &drive.root_id) {
        return Err(access_error(drive));
    }
    let item_id = lazy.id(drive, k);
    match target.action.as_str() {
        "" => {
            let mut m = lazy.item_json(&store, drive, k, ctx, Mode::Full);
            m.insert(
                "@odata.context".into(),
                format!(
                    "{}/$metadata#drives('{}')/items/$entity",
                    shared.graph_url, drive_id
                )
                .into(),
            );
            let mut sel = select_of(q);
            if let Some(s) = &mut sel {
                s.push("@odata.context".into());
            }
            Ok(json_response(
                StatusCode::OK,
                render::apply_select(m, sel.as_deref()),
            ))
        }
        "children" => {
            let top = top_of(q)?.unwrap_or(200) as u64;
            let offset = q
                .get("skiptoken")
                .map(|t| decode_skiptoken(t))
                .transpose()?
                .unwrap_or(0) as u64;
            let select = select_of(q);
            let children = lazy.children(k);
            let count = children.end - children.start;
            let page: Vec<Value> = children
                .skip(offset as usize)
                .take(top as usize)
                .map(|c| {
                    render::apply_select(
                        lazy.item_json(&store, drive, c, ctx, Mode::Full),
                        select.as_deref(),
                    )
                })
                .collect();
            let mut body = json!({
                "@odata.context": format!("{}/$metadata#drives('{}')/items('{}')/children", shared.graph_url, drive_id, item_id),
                "value": page,
            });
            if offset + top < count {
                let path = format!(
                    "/drives/{}/items/{}/children",
                    drive_id,
                    render::encode_segment(&item_id)
                );
                if let Some(o) = body.as_object_mut() {
                    o.insert(
                        "@odata.nextLink".into(),
                        next_link(
                            &shared.graph_url,
                            &path,
                            top as usize,
                            (offset + top) as usize,
                            q.get("select"),
                        )
                        .into(),
                    );
                }
            }
            Ok(json_response(StatusCode::OK, body))
        }
        "content" => {
            if lazy.is_folder(k) {
                return Err(GraphError::not_found("The item is a folder and has no content."));
            }
            let (etag, ctag) = lazy.etags(k);
            if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok())
                && (inm.trim() == "*" || inm.contains(&etag) || inm.contains(&ctag))
            {
                return Ok(StatusCode::NOT_MODIFIED.into_response());
            }
            let mut resp = StatusCode::FOUND.into_response();
            if let Ok(v) = HeaderValue::from_str(&render::download_url(ctx, drive_id, &item_id)) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            Ok(resp)
        }
        a if a == "permissions" || a.starts_with("permissions/") => {
            let root = drive.root()?;
            let all: Vec<_> = if k == 0 {
                root.permissions.iter().map(|p| (p, None)).collect()
            } else {
                root.permissions.iter().map(|p| (p, Some(root))).collect()
            };
            permissions_page(
                shared,
                &store,
                drive,
                &item_id,
                all,
                q,
                a.strip_prefix("permissions/"),
            )
        }
        a if a == "delta" || a.starts_with("delta(") => {
            let mut token = q.get("token").cloned();
            if let Some(inner) = a.strip_prefix("delta(").and_then(|s| s.strip_suffix(')')) {
                let v = inner.trim_start_matches("token=").trim_matches('\'');
                if !v.is_empty() {
                    token = Some(v.to_string());
                }
            }
            if !lazy.is_folder(k) {
                return Err(GraphError::bad_request("delta needs a folder"));
            }
            let base = delta_base(&shared.graph_url, drive_id, &drive.root_id, &item_id);
            let page = lazy
                .delta_page(
                    drive,
                    k,
                    token.as_deref(),
                    top_of(q)?,
                    store.delta.page_size,
                    store.delta.token_lifetime_secs,
                    ctx.now,
                )
                .map_err(|e| match e {
                    DeltaError::Store(e) => e.into(),
                    DeltaError::Mismatch => {
                        GraphError::bad_request("The delta token does not belong to this drive and item.")
                    }
                    DeltaError::Expired { code } => GraphError::resync_required(code, base.clone()),
                })?;
            let prefers = |what: &str| {
                headers.get_all("prefer").iter().any(|v| {
                    v.to_str()
                        .is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(what)))
                })
            };
            let hierarchical = !drive.drive_type.is_personal() && prefers("hierarchicalsharing");
            let select = select_of(q);
            let values: Vec<Value> = page
                .nodes
                .iter()
                .map(|&n| {
                    let mut m = lazy.item_json(&store, drive, n, ctx, Mode::Delta);
                    if hierarchical
                        && n == 0
                        && let Ok(root) = drive.root()
                    {
                        m.insert("shared".into(), render::shared_facet(&store, drive, root));
                    }
                    render::apply_select(m, select.as_deref())
                })
                .collect();
            let mut body = json!({"@odata.context": format!("{}/$metadata#Collection(driveItem)", shared.graph_url), "value": values});
            if let Some(o) = body.as_object_mut() {
                match page.link {
                    DeltaLink::Next(t) => {
                        o.insert("@odata.nextLink".into(), format!("{base}?token={t}").into())
                    }
                    DeltaLink::Delta(t) => {
                        o.insert("@odata.deltaLink".into(), format!("{base}?token={t}").into())
                    }
                };
            }
            Ok(json_response(StatusCode::OK, body))
        }
        other => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Resource not found for the segment '{other}'."),
        )),
    }
}
