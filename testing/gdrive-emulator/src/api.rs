//! The Drive API v3 under `/drive/v3`: `about`, `files.list`, `files.get` (metadata and `alt=media`),
//! `files.export`, `permissions.list`/`get`, `changes.getStartPageToken`, `changes.list`, `drives.list`/`get`.
//! It serves reads; the drive changes through the control API.

use crate::Shared;
use crate::error::ApiError;
use crate::fields::Mask;
use crate::query::{self, Subject};
use crate::render;
use crate::store::{ChangeKey, Content, File, Store};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";
/// Scopes that read metadata.
const METADATA_SCOPES: &[&str] = &[
    "drive",
    "drive.readonly",
    "drive.file",
    "drive.metadata",
    "drive.metadata.readonly",
];
/// Scopes that read content (`alt=media`, export) and list shared drives.
const CONTENT_SCOPES: &[&str] = &["drive", "drive.readonly", "drive.file"];

type Params = HashMap<String, String>;

struct Caller {
    user_id: String,
    scopes: Vec<String>,
}

impl Caller {
    fn require(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let ok = self.scopes.iter().any(|s| {
            let short = s.strip_prefix(SCOPE_PREFIX).unwrap_or(s);
            allowed.contains(&short)
        });
        if ok {
            Ok(())
        } else {
            Err(ApiError::insufficient_scopes())
        }
    }
}

fn authenticate(shared: &Shared, headers: &HeaderMap, params: &Params) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .map(str::to_string)
        .or_else(|| params.get("access_token").cloned());
    let Some(token) = token else {
        return Err(
            ApiError::new(StatusCode::UNAUTHORIZED, "global", "required", "Login Required.")
                .at("Authorization", "header"),
        );
    };
    let now = shared.clock.now();
    let store = shared.store.read();
    match store.access_tokens.get(&token) {
        Some(t) if now < t.expires && store.clients.contains_key(&t.client_id) => Ok(Caller {
            user_id: t.user_id.clone(),
            scopes: t.scope.split_whitespace().map(str::to_string).collect(),
        }),
        _ => Err(ApiError::invalid_credentials()),
    }
}

fn flag(p: &Params, name: &str) -> bool {
    p.get(name).is_some_and(|v| v == "true")
}

fn page_size(p: &Params, default: usize, max: usize) -> Result<usize, ApiError> {
    match p.get("pageSize") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid_parameter("pageSize")),
        },
    }
}

/// Applies `fields` (or the method's default mask) to a response.
fn masked(p: &Params, default: &str, v: &Value) -> Result<Response, ApiError> {
    let text = p.get("fields").map_or(default, String::as_str);
    let mask = Mask::parse(text).map_err(|bad| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "global",
            "invalidParameter",
            format!("Invalid field selection {bad}"),
        )
        .at("fields", "parameter")
    })?;
    Ok(axum::Json(mask.apply(v)).into_response())
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(rest): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    match dispatch(&shared, &method, &rest, &params, &headers) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn dispatch(
    shared: &Shared,
    method: &Method,
    rest: &str,
    p: &Params,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let caller = authenticate(shared, headers, p)?;
    caller.require(METADATA_SCOPES)?;
    if method != Method::GET && method != Method::HEAD {
        caller.require(&["drive"])?;
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "global",
            "notImplemented",
            "The emulator serves reads; change the drive through /_emulator.",
        ));
    }
    let store = shared.store.read();
    match segs.as_slice() {
        ["about"] => about(&store, &caller, p),
        ["files"] => files_list(&store, &caller, p),
        ["files", id] => files_get(&store, &caller, id, p, headers),
        ["files", id, "export"] => files_export(&store, &caller, id, p),
        ["files", id, "permissions"] => permissions_list(&store, &caller, id, p),
        ["files", id, "permissions", pid] => permissions_get(&store, &caller, id, pid, p),
        ["changes", "startPageToken"] => start_page_token(&store, &caller, p),
        ["changes"] => changes_list(&store, &caller, p),
        ["drives"] => {
            caller.require(CONTENT_SCOPES)?;
            drives_list(&store, &caller, p)
        }
        ["drives", id] => {
            caller.require(CONTENT_SCOPES)?;
            let d = member_drive(&store, &caller, id)?;
            masked(
                p,
                "kind,id,name",
                &render::drive_json(d, is_organizer(&store, &caller, id)),
            )
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "global",
            "notFound",
            format!("Method not found: {rest}"),
        )),
    }
}

fn about(store: &Store, caller: &Caller, p: &Params) -> Result<Response, ApiError> {
    if !p.contains_key("fields") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "global",
            "required",
            "The 'fields' parameter is required for this method.",
        )
        .at("fields", "parameter"));
    }
    let u = store
        .user(&caller.user_id)
        .map_err(|_| ApiError::invalid_credentials())?;
    let usage: u64 = store
        .files
        .values()
        .filter(|f| f.owner.as_deref() == Some(u.id.as_str()))
        .filter(|f| matches!(f.content, Content::Blob(_)))
        .filter_map(File::size)
        .sum();
    let exports: HashMap<&str, &[&str]> = [
        crate::store::GOOGLE_DOC,
        crate::store::GOOGLE_SHEET,
        crate::store::GOOGLE_SLIDES,
    ]
    .into_iter()
    .map(|m| (m, render::export_formats(m)))
    .collect();
    let v = json!({
        "kind": "drive#about",
        "user": {
            "kind": "drive#user",
            "displayName": u.name,
            "emailAddress": u.email,
            "permissionId": u.permission_id,
            "me": true,
        },
        "storageQuota": {
            "limit": "16106127360",
            "usage": usage.to_string(),
            "usageInDrive": usage.to_string(),
            "usageInDriveTrash": "0",
        },
        "canCreateDrives": true,
        "maxUploadSize": "5242880000000",
        "exportFormats": exports,
        "appInstalled": false,
    });
    masked(p, "kind", &v)
}

/// The item, if the caller can open it (listing access or a link grant). Shared-drive items need
/// `supportsAllDrives=true`, or they are not found.
fn visible<'a>(store: &'a Store, caller: &Caller, id: &str, p: &Params) -> Result<&'a File, ApiError> {
    let id = if id == "root" {
        store
            .users
            .get(&caller.user_id)
            .map_or(id, |u| u.root_id.as_str())
    } else {
        id
    };
    let f = store.files.get(id).ok_or_else(|| ApiError::file_not_found(id))?;
    if store.role_for(&caller.user_id, id, true).is_none() {
        return Err(ApiError::file_not_found(id));
    }
    if f.drive_id.is_some() && !(flag(p, "supportsAllDrives") || flag(p, "supportsTeamDrives")) {
        return Err(ApiError::file_not_found(id));
    }
    Ok(f)
}

fn member_drive<'a>(
    store: &'a Store,
    caller: &Caller,
    id: &str,
) -> Result<&'a crate::store::SharedDrive, ApiError> {
    let d = store
        .drives
        .get(id)
        .ok_or_else(|| ApiError::drive_not_found(id))?;
    if store.role_for(&caller.user_id, id, false).is_none() {
        return Err(ApiError::drive_not_found(id));
    }
    Ok(d)
}

fn is_organizer(store: &Store, caller: &Caller, drive: &str) -> bool {
    store.role_for(&caller.user_id, drive, false).as_deref() == Some("organizer")
}

fn subject_matches(store: &Store, caller: &Caller, f: &File, expr: &query::Expr, root: &str) -> bool {
    let me_email = store
        .users
        .get(&caller.user_id)
        .map(|u| u.email.clone())
        .unwrap_or_default();
    let text = match &f.content {
        _ if !expr.uses_full_text() => String::new(),
        Content::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        Content::Doc(d) => d.text(),
        Content::None => String::new(),
    };
    let has_role = |who: &str, role: &str| {
        let email = if who == "me" { me_email.as_str() } else { who };
        let Some(u) = store.user_by_email(email) else {
            return false;
        };
        let r = store.role_for(&u.id, &f.id, false);
        let rank = r.as_deref().map_or(0, crate::store::role_rank);
        match role {
            "owners" => r.as_deref() == Some("owner"),
            "writers" => rank >= crate::store::role_rank("writer"),
            _ => rank >= crate::store::role_rank("reader"),
        }
    };
    let s = Subject {
        name: &f.name,
        mime_type: &f.mime_type,
        text: &text,
        parent: f.parent.as_deref(),
        trashed: store.trashed(&f.id),
        shared_with_me: f.shared_at.contains_key(&caller.user_id),
        modified: f.modified,
        created: f.created,
        has_role: &has_role,
    };
    expr.matches(&s, root)
}

fn list_token(offset: usize, fingerprint: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{offset}|{fingerprint}"))
}

fn parse_list_token(token: &str, fingerprint: &str) -> Result<usize, ApiError> {
    let bad = || ApiError::invalid_parameter("pageToken");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (offset, fp) = text.split_once('|').ok_or_else(bad)?;
    if fp != fingerprint {
        return Err(bad());
    }
    offset.parse().map_err(|_| bad())
}

fn fingerprint(parts: &[&str]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(parts.join("\u{1}").as_bytes())[..8])
}

fn files_list(store: &Store, caller: &Caller, p: &Params) -> Result<Response, ApiError> {
    let size = page_size(p, 100, 1000)?;
    let all_drives = flag(p, "includeItemsFromAllDrives") || flag(p, "includeTeamDriveItems");
    let corpora = p.get("corpora").map_or("user", String::as_str);
    let drive_id = p
        .get("driveId")
        .or_else(|| p.get("teamDriveId"))
        .filter(|d| !d.is_empty());
    if !["user", "domain", "drive", "allDrives"].contains(&corpora) {
        return Err(ApiError::invalid_parameter("corpora"));
    }
    if drive_id.is_some() && corpora != "drive" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "global",
            "teamDriveIdRequiresTeamDriveCorpora",
            "The corpora parameter must be set to drive when driveId is specified.",
        )
        .at("corpora", "parameter"));
    }
    if corpora == "drive" && drive_id.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "global",
            "teamDriveCorporaRequiresTeamDriveId",
            "The driveId parameter must be specified when corpora is set to drive.",
        )
        .at("driveId", "parameter"));
    }
    if (corpora == "drive" || corpora == "allDrives") && !all_drives {
        return Err(ApiError::forbidden(
            "teamDriveIdRequiresIncludeTeamDriveItems",
            "The includeItemsFromAllDrives parameter must be set to true when driveId is specified or corpora contains drive or allDrives.",
        ));
    }
    if let Some(d) = drive_id {
        member_drive(store, caller, d)?;
    }
    let q = p.get("q").map_or("", String::as_str);
    let expr = query::parse(q).map_err(|()| ApiError::invalid_parameter("q"))?;
    let order = p.get("orderBy").map_or("", String::as_str);
    let keys = parse_order(order)?;
    let root = store
        .users
        .get(&caller.user_id)
        .map(|u| u.root_id.clone())
        .unwrap_or_default();
    let mut items: Vec<&File> = store
        .files
        .values()
        .filter(|f| !f.is_root)
        .filter(|f| match corpora {
            "drive" => f.drive_id.as_ref() == drive_id,
            "allDrives" => true,
            _ => f.drive_id.is_none() || all_drives,
        })
        .filter(|f| store.role_for(&caller.user_id, &f.id, false).is_some())
        .filter(|f| {
            expr.as_ref()
                .is_none_or(|e| subject_matches(store, caller, f, e, &root))
        })
        .collect();
    items.sort_by(|a, b| {
        for (key, desc) in &keys {
            let ord = match key.as_str() {
                "folder" => b.is_folder().cmp(&a.is_folder()),
                "name" | "name_natural" => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
                "modifiedTime" => a.modified.cmp(&b.modified),
                "createdTime" => a.created.cmp(&b.created),
                "sharedWithMeTime" => a
                    .shared_at
                    .get(&caller.user_id)
                    .cmp(&b.shared_at.get(&caller.user_id)),
                "quotaBytesUsed" => a.size().cmp(&b.size()),
                _ => std::cmp::Ordering::Equal,
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != std::cmp::Ordering::Equal {
                return ord;
            }
        }
        a.seq.cmp(&b.seq)
    });
    let fp = fingerprint(&[
        caller.user_id.as_str(),
        q,
        corpora,
        drive_id.map_or("", String::as_str),
        order,
        if all_drives { "1" } else { "0" },
    ]);
    let offset = match p.get("pageToken").filter(|t| !t.is_empty()) {
        Some(t) => parse_list_token(t, &fp)?,
        None => 0,
    };
    let page: Vec<Value> = items
        .iter()
        .skip(offset)
        .take(size)
        .map(|f| render::file_json(store, f, &caller.user_id))
        .collect();
    let mut v = json!({"kind": "drive#fileList", "incompleteSearch": false, "files": page});
    if offset + size < items.len() {
        v["nextPageToken"] = json!(list_token(offset + size, &fp));
    }
    masked(
        p,
        "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)",
        &v,
    )
}

fn parse_order(order: &str) -> Result<Vec<(String, bool)>, ApiError> {
    const KEYS: &[&str] = &[
        "createdTime",
        "folder",
        "modifiedByMeTime",
        "modifiedTime",
        "name",
        "name_natural",
        "quotaBytesUsed",
        "recency",
        "sharedWithMeTime",
        "starred",
        "viewedByMeTime",
    ];
    let mut out = Vec::new();
    for part in order.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut words = part.split_whitespace();
        let key = words.next().unwrap_or_default();
        let desc = match words.next() {
            None => false,
            Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(ApiError::invalid_parameter("orderBy")),
        };
        if !KEYS.contains(&key) || words.next().is_some() {
            return Err(ApiError::invalid_parameter("orderBy"));
        }
        out.push((key.to_string(), desc));
    }
    Ok(out)
}

fn not_downloadable() -> ApiError {
    ApiError::forbidden(
        "fileNotDownloadable",
        "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
    )
    .at("alt", "parameter")
}

fn files_get(
    store: &Store,
    caller: &Caller,
    id: &str,
    p: &Params,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let f = visible(store, caller, id, p)?;
    if p.get("alt").map(String::as_str) != Some("media") {
        return masked(
            p,
            "kind,id,name,mimeType",
            &render::file_json(store, f, &caller.user_id),
        );
    }
    caller.require(CONTENT_SCOPES)?;
    let Content::Blob(bytes) = &f.content else {
        return Err(not_downloadable());
    };
    let mime =
        HeaderValue::from_str(&f.mime_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let total = bytes.len();
    if let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        match parse_range(range, total) {
            Some((start, end)) => {
                let body = bytes.slice(start..=end);
                let mut resp = (StatusCode::PARTIAL_CONTENT, Body::from(body)).into_response();
                let h = resp.headers_mut();
                h.insert(header::CONTENT_TYPE, mime);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
                return Ok(resp);
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "global",
                    "requestedRangeNotSatisfiable",
                    "Request range not satisfiable",
                ));
            }
        }
    }
    let mut resp = (StatusCode::OK, Body::from(bytes.clone())).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, mime);
    Ok(resp)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`, within `total`.
fn parse_range(h: &str, total: usize) -> Option<(usize, usize)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if total == 0 {
        return None;
    }
    let (start, end) = if a.is_empty() {
        let n: usize = b.parse().ok()?;
        (total.saturating_sub(n), total - 1)
    } else {
        let start: usize = a.parse().ok()?;
        let end = if b.is_empty() {
            total - 1
        } else {
            b.parse::<usize>().ok()?.min(total - 1)
        };
        (start, end)
    };
    (start <= end && start < total).then_some((start, end))
}

fn files_export(store: &Store, caller: &Caller, id: &str, p: &Params) -> Result<Response, ApiError> {
    let f = visible(store, caller, id, p)?;
    caller.require(CONTENT_SCOPES)?;
    let Some(target) = p.get("mimeType").filter(|m| !m.is_empty()) else {
        return Err(ApiError::required("mimeType"));
    };
    let Content::Doc(body) = &f.content else {
        return Err(ApiError::forbidden(
            "fileNotExportable",
            "Export only supports Docs Editors files.",
        ));
    };
    if !render::export_formats(&f.mime_type).contains(&target.as_str()) {
        return Err(
            ApiError::bad_request("The requested conversion is not supported.").at("convertTo", "parameter"),
        );
    }
    let Some(bytes) = render::export_bytes(body, &f.name, target) else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "global",
            "notImplemented",
            format!("The emulator does not produce {target} exports."),
        ));
    };
    if bytes.len() as u64 > store.export_limit {
        return Err(ApiError::forbidden(
            "exportSizeLimitExceeded",
            "This file is too large to be exported.",
        ));
    }
    let mut resp = (StatusCode::OK, Body::from(bytes)).into_response();
    if let Ok(v) = HeaderValue::from_str(target) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

fn permission_source<'a>(
    store: &'a Store,
    caller: &Caller,
    id: &str,
    p: &Params,
) -> Result<&'a File, ApiError> {
    let f = visible(store, caller, id, p)?;
    let role = store.role_for(&caller.user_id, &f.id, true);
    let rank = role.as_deref().map_or(0, crate::store::role_rank);
    let shared_drive_member = f.drive_id.is_some() && store.role_for(&caller.user_id, &f.id, false).is_some();
    if rank < crate::store::role_rank("writer") && !shared_drive_member {
        return Err(ApiError::forbidden(
            "insufficientFilePermissions",
            "The user does not have sufficient permissions for this file.",
        ));
    }
    Ok(f)
}

fn permissions_list(store: &Store, caller: &Caller, id: &str, p: &Params) -> Result<Response, ApiError> {
    let f = permission_source(store, caller, id, p)?;
    let all = render::permissions(store, f);
    // A My Drive item's whole list comes at once unless pageSize is set; shared drive items page by 100.
    let size = match p.get("pageSize") {
        None if f.drive_id.is_none() => all.len().max(1),
        _ => page_size(p, 100, 100)?,
    };
    let fp = fingerprint(&[caller.user_id.as_str(), f.id.as_str()]);
    let offset = match p.get("pageToken").filter(|t| !t.is_empty()) {
        Some(t) => parse_list_token(t, &fp)?,
        None => 0,
    };
    let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
    let mut v = json!({"kind": "drive#permissionList", "permissions": page});
    if offset + size < all.len() {
        v["nextPageToken"] = json!(list_token(offset + size, &fp));
    }
    masked(p, "kind,nextPageToken,permissions(kind,id,type,role)", &v)
}

fn permissions_get(
    store: &Store,
    caller: &Caller,
    id: &str,
    pid: &str,
    p: &Params,
) -> Result<Response, ApiError> {
    let f = permission_source(store, caller, id, p)?;
    let perm = render::permissions(store, f)
        .into_iter()
        .find(|x| x["id"] == pid)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "global",
                "notFound",
                format!("Permission not found: {pid}."),
            )
            .at("permissionId", "parameter")
        })?;
    masked(p, "kind,id,type,role", &perm)
}

fn drives_list(store: &Store, caller: &Caller, p: &Params) -> Result<Response, ApiError> {
    let size = page_size(p, 10, 100)?;
    let q = p.get("q").map_or("", String::as_str);
    let name_filter = if q.is_empty() {
        None
    } else {
        Some(parse_drive_query(q)?)
    };
    let drives: Vec<&crate::store::SharedDrive> = store
        .drives
        .values()
        .filter(|d| store.role_for(&caller.user_id, &d.id, false).is_some())
        .filter(|d| {
            name_filter.as_ref().is_none_or(|(op, v)| match op.as_str() {
                "=" => d.name == *v,
                "!=" => d.name != *v,
                _ => d.name.to_lowercase().contains(&v.to_lowercase()),
            })
        })
        .collect();
    let fp = fingerprint(&[caller.user_id.as_str(), q, "drives"]);
    let offset = match p.get("pageToken").filter(|t| !t.is_empty()) {
        Some(t) => parse_list_token(t, &fp)?,
        None => 0,
    };
    let page: Vec<Value> = drives
        .iter()
        .skip(offset)
        .take(size)
        .map(|d| render::drive_json(d, is_organizer(store, caller, &d.id)))
        .collect();
    let mut v = json!({"kind": "drive#driveList", "drives": page});
    if offset + size < drives.len() {
        v["nextPageToken"] = json!(list_token(offset + size, &fp));
    }
    masked(p, "kind,nextPageToken,drives(kind,id,name)", &v)
}

/// `name = '…'`, `name != '…'` or `name contains '…'`: the part of the drives query language the emulator reads.
fn parse_drive_query(q: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::invalid_parameter("q");
    let rest = q.trim().strip_prefix("name").ok_or_else(bad)?.trim_start();
    let (op, value) = if let Some(v) = rest.strip_prefix("contains") {
        ("contains", v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        ("!=", v)
    } else if let Some(v) = rest.strip_prefix('=') {
        ("=", v)
    } else {
        return Err(bad());
    };
    let v = value.trim();
    let inner = v
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .ok_or_else(bad)?;
    Ok((op.to_string(), inner.replace("\\'", "'").replace("\\\\", "\\")))
}

fn feed_drive<'a>(store: &'a Store, caller: &Caller, p: &Params) -> Result<Option<&'a str>, ApiError> {
    match p
        .get("driveId")
        .or_else(|| p.get("teamDriveId"))
        .filter(|d| !d.is_empty())
    {
        None => Ok(None),
        Some(d) => {
            if !(flag(p, "supportsAllDrives") || flag(p, "supportsTeamDrives")) {
                return Err(ApiError::drive_not_found(d));
            }
            Ok(Some(member_drive(store, caller, d)?.id.as_str()))
        }
    }
}

fn start_page_token(store: &Store, caller: &Caller, p: &Params) -> Result<Response, ApiError> {
    feed_drive(store, caller, p)?;
    let v = json!({"kind": "drive#startPageToken", "startPageToken": store.next_change.to_string()});
    masked(p, "kind,startPageToken", &v)
}

fn changes_list(store: &Store, caller: &Caller, p: &Params) -> Result<Response, ApiError> {
    let Some(token) = p.get("pageToken").filter(|t| !t.is_empty()) else {
        return Err(ApiError::required("pageToken"));
    };
    let from: u64 = token
        .parse()
        .ok()
        .filter(|t| *t >= store.min_valid_token && *t <= store.next_change)
        .ok_or_else(|| ApiError::invalid_parameter("pageToken"))?;
    let size = page_size(p, 100, 1000)?;
    let drive = feed_drive(store, caller, p)?;
    let all_drives = flag(p, "includeItemsFromAllDrives") || flag(p, "includeTeamDriveItems");
    let include_removed = p.get("includeRemoved").is_none_or(|v| v != "false");
    let restrict = flag(p, "restrictToMyDrive");
    let me = caller.user_id.as_str();
    let mut out = Vec::new();
    let mut next = None;
    for (seq, rec) in store.changes.range(from..) {
        if !rec.audience.contains(me) {
            continue;
        }
        let change = match &rec.key {
            ChangeKey::File(id) => {
                let in_feed = |corpus: Option<&str>| match drive {
                    Some(d) => corpus == Some(d),
                    None => all_drives || corpus.is_none(),
                };
                if !rec.corpora.iter().any(|c| in_feed(c.as_deref())) {
                    continue;
                }
                let current = store
                    .files
                    .get(id)
                    .filter(|f| store.role_for(me, &f.id, false).is_some())
                    .filter(|f| in_feed(f.drive_id.as_deref()));
                if restrict && current.is_some_and(|f| f.owner.as_deref() != Some(me)) {
                    continue;
                }
                let mut c = json!({
                    "kind": "drive#change",
                    "changeType": "file",
                    "time": crate::clock::google_time(rec.time),
                    "removed": current.is_none(),
                    "fileId": id,
                });
                if let Some(d) = &rec.drive_id {
                    c["driveId"] = json!(d);
                }
                if let Some(f) = current {
                    c["file"] = render::file_json(store, f, me);
                }
                c
            }
            ChangeKey::Drive(id) => {
                if drive.is_some() || !all_drives {
                    continue;
                }
                let current = store
                    .drives
                    .get(id)
                    .filter(|_| store.role_for(me, id, false).is_some());
                let mut c = json!({
                    "kind": "drive#change",
                    "changeType": "drive",
                    "time": crate::clock::google_time(rec.time),
                    "removed": current.is_none(),
                    "driveId": id,
                });
                if let Some(d) = current {
                    c["drive"] = render::drive_json(d, is_organizer(store, caller, id));
                }
                c
            }
        };
        if !include_removed && change["removed"] == json!(true) {
            continue;
        }
        if out.len() == size {
            next = Some(*seq);
            break;
        }
        out.push(change);
    }
    let mut v = json!({"kind": "drive#changeList", "changes": out});
    match next {
        Some(n) => v["nextPageToken"] = json!(n.to_string()),
        None => v["newStartPageToken"] = json!(store.next_change.to_string()),
    }
    masked(
        p,
        "kind,nextPageToken,newStartPageToken,changes(kind,changeType,time,removed,fileId,driveId,file(kind,id,name,mimeType),drive(kind,id,name))",
        &v,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-3", 10), Some((0, 3)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=-4", 10), Some((6, 9)));
        assert_eq!(parse_range("bytes=8-100", 10), Some((8, 9)));
        assert_eq!(parse_range("bytes=10-12", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
    }

    #[test]
    fn order_by_accepts_googles_keys_and_rejects_others() {
        assert_eq!(
            parse_order("folder,name desc").unwrap(),
            vec![("folder".to_string(), false), ("name".to_string(), true)]
        );
        assert!(parse_order("size").is_err());
        assert!(parse_order("name sideways").is_err());
    }
}
