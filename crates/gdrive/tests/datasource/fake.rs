//! A scripted Drive API v3 in the test process: an axum server whose answers have Google's shape
//! (int64 as strings, `kind` fields, errors as `{"error":{"code","message","errors":[…]}}`,
//! opaque page tokens, `newStartPageToken` only on a feed's last page) and whose state the tests
//! change through methods that also append to the change feed, as Drive does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use md5::{Digest, Md5};
use serde_json::{Value, json};

pub const FOLDER: &str = "application/vnd.google-apps.folder";
pub const DOC: &str = "application/vnd.google-apps.document";
pub const SHORTCUT: &str = "application/vnd.google-apps.shortcut";
pub const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
/// The id of My Drive's root folder.
pub const MY_ROOT: &str = "0AMyDriveRootFolder";

#[derive(Debug, Clone)]
pub struct FakeFile {
    pub id: String,
    pub name: String,
    pub mime: String,
    pub parent: Option<String>,
    pub content: Vec<u8>,
    /// Overrides the md5 Drive reports (to script a corrupted transfer).
    pub md5_override: Option<String>,
    /// Overrides the size Drive reports.
    pub size_override: Option<i64>,
    pub modified: u32,
    pub version: i64,
    pub trashed: bool,
    pub drive_id: Option<String>,
    pub target: Option<(String, String)>,
}

impl FakeFile {
    fn json(&self) -> Value {
        let mut v = json!({
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime,
            "trashed": self.trashed,
            "modifiedTime": format!("2026-02-01T10:{:02}:{:02}.000Z", self.modified / 60 % 60, self.modified % 60),
            "version": self.version.to_string(),
            "webViewLink": format!("https://drive.google.com/file/d/{}/view", self.id),
        });
        if let Some(p) = &self.parent {
            v["parents"] = json!([p]);
        }
        if let Some(d) = &self.drive_id {
            v["driveId"] = json!(d);
        }
        if self.mime == SHORTCUT {
            if let Some((t, m)) = &self.target {
                v["shortcutDetails"] = json!({"targetId": t, "targetMimeType": m});
            }
        } else if self.mime == DOC {
            // Editor files have a quota size that is not the export's length.
            v["size"] = json!("1024");
        } else if self.mime != FOLDER {
            v["size"] = json!(
                self.size_override
                    .unwrap_or(self.content.len() as i64)
                    .to_string()
            );
            v["md5Checksum"] = json!(
                self.md5_override
                    .clone()
                    .unwrap_or_else(|| md5_hex(&self.content))
            );
        }
        v
    }
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// A scripted error: the next `times` requests whose path contains `path` get it.
#[derive(Debug, Clone)]
pub struct Fault {
    pub path: String,
    pub status: u16,
    pub reason: String,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub times: usize,
}

impl Fault {
    pub fn new(path: &str, status: u16, reason: &str, times: usize) -> Self {
        Self {
            path: path.into(),
            status,
            reason: reason.into(),
            location: None,
            retry_after: None,
            times,
        }
    }

    pub fn retry_after(mut self, v: &str) -> Self {
        self.retry_after = Some(v.into());
        self
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub query: HashMap<String, String>,
    pub token: Option<String>,
}

#[derive(Default)]
pub struct FakeState {
    pub files: BTreeMap<String, FakeFile>,
    pub drives: Vec<(String, String)>,
    pub permissions: HashMap<String, Vec<Value>>,
    /// The feed: (shared drive id or None for My Drive, the change).
    pub changes: Vec<(Option<String>, Value)>,
    /// Page tokens below this are refused (400 invalid at pageToken).
    pub oldest_token: usize,
    pub faults: VecDeque<Fault>,
    pub requests: Vec<Request>,
    /// Bearer tokens accepted.
    pub valid_tokens: Vec<String>,
    /// The largest page the fake serves, whatever `pageSize` asks (Drive may serve fewer).
    pub max_page: usize,
    pub shared_with_me: Vec<String>,
    /// Files whose bytes cannot be downloaded (403 `fileNotDownloadable`).
    pub not_downloadable: Vec<String>,
    clock: u32,
}

#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<FakeState>>,
    pub url: String,
    shutdown: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

fn google_error(status: u16, reason: &str, message: &str, location: Option<&str>) -> Response {
    let mut entry = json!({"domain": "global", "reason": reason, "message": message});
    if let Some(l) = location {
        entry["location"] = json!(l);
        entry["locationType"] = json!("parameter");
    }
    let body = json!({"error": {"code": status, "message": message, "errors": [entry]}});
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=UTF-8")],
        v.to_string(),
    )
        .into_response()
}

/// Offset page tokens that do not look like numbers.
fn page_token(offset: usize) -> String {
    format!("~!!~AI9FV7{offset:08}")
}

fn offset_of(token: Option<&String>) -> Option<usize> {
    match token {
        None => Some(0),
        Some(t) => t.strip_prefix("~!!~AI9FV7").and_then(|n| n.parse().ok()),
    }
}

impl Fake {
    pub async fn start() -> Fake {
        let state = Arc::new(Mutex::new(FakeState {
            valid_tokens: vec!["token-1".into()],
            max_page: 1000,
            ..FakeState::default()
        }));
        {
            let mut s = state.lock().unwrap();
            s.files.insert(
                MY_ROOT.into(),
                FakeFile {
                    id: MY_ROOT.into(),
                    name: "My Drive".into(),
                    mime: FOLDER.into(),
                    parent: None,
                    content: Vec::new(),
                    md5_override: None,
                    size_override: None,
                    modified: 0,
                    version: 1,
                    trashed: false,
                    drive_id: None,
                    target: None,
                },
            );
        }
        let app = Router::new()
            .route("/drive/v3/files", get(list_files))
            .route("/drive/v3/files/{id}", get(get_file))
            .route("/drive/v3/files/{id}/export", get(export))
            .route("/drive/v3/files/{id}/permissions", get(permissions))
            .route("/drive/v3/drives", get(drives))
            .route("/drive/v3/changes/startPageToken", get(start_token))
            .route("/drive/v3/changes", get(changes))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Fake {
            state,
            url: format!("http://{addr}/drive/v3"),
            shutdown: Arc::new(Mutex::new(Some(tx))),
        }
    }

    pub fn shutdown(&self) {
        if let Some(tx) = self.shutdown.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.with(|s| s.requests.clone())
    }

    pub fn fault(&self, f: Fault) {
        self.with(|s| s.faults.push_back(f));
    }

    /// Adds (or replaces) a file and records the change.
    pub fn put(&self, mut f: FakeFile) {
        self.with(|s| {
            s.clock += 1;
            f.modified = s.clock;
            if f.drive_id.is_none() {
                f.drive_id = f.parent.as_ref().and_then(|p| s.drive_of(p));
            }
            s.files.insert(f.id.clone(), f.clone());
            s.record(&f.id);
        });
    }

    pub fn folder(&self, id: &str, name: &str, parent: &str) {
        self.put(file(id, name, FOLDER, parent, b""));
    }

    pub fn blob(&self, id: &str, name: &str, parent: &str, content: &[u8]) {
        self.put(file(id, name, "application/pdf", parent, content));
    }

    /// Changes a file in place (a new version) and records the change.
    pub fn edit(&self, id: &str, f: impl FnOnce(&mut FakeFile)) {
        self.with(|s| {
            s.clock += 1;
            let clock = s.clock;
            let file = s.files.get_mut(id).unwrap();
            f(file);
            file.version += 1;
            file.modified = clock;
            s.record(id);
        });
    }

    /// Like [`Fake::edit`] for changes that leave `modifiedTime` alone (rename, move, share).
    pub fn touch(&self, id: &str, f: impl FnOnce(&mut FakeFile)) {
        self.with(|s| {
            let file = s.files.get_mut(id).unwrap();
            f(file);
            file.version += 1;
            s.record(id);
        });
    }

    /// Deletes a file for good (no trash): `removed: true`, no `file`.
    pub fn delete(&self, id: &str) {
        self.with(|s| {
            let drive = s.files.get(id).and_then(|f| f.drive_id.clone());
            s.files.remove(id);
            s.changes.push((
                drive,
                json!({"kind": "drive#change", "changeType": "file", "removed": true, "fileId": id,
                       "time": "2026-02-01T11:00:00.000Z"}),
            ));
        });
    }

    pub fn add_drive(&self, id: &str, name: &str) {
        self.with(|s| {
            s.drives.push((id.into(), name.into()));
            s.files.insert(
                id.into(),
                FakeFile {
                    drive_id: Some(id.into()),
                    ..file(id, name, FOLDER, "", b"")
                },
            );
            s.files.get_mut(id).unwrap().parent = None;
        });
    }

    /// The user leaves (or loses) a shared drive: a drive change, `removed: true`.
    pub fn remove_drive(&self, id: &str) {
        self.with(|s| {
            s.drives.retain(|(d, _)| d != id);
            s.changes.push((
                Some(id.into()),
                json!({"kind": "drive#change", "changeType": "drive", "removed": true, "driveId": id,
                       "time": "2026-02-01T11:00:00.000Z"}),
            ));
        });
    }

    pub fn share(&self, id: &str, permission: Value) {
        self.with(|s| {
            s.permissions.entry(id.into()).or_default().push(permission);
            if let Some(f) = s.files.get_mut(id) {
                f.version += 1;
            }
            s.record(id);
        });
    }
}

pub fn file(id: &str, name: &str, mime: &str, parent: &str, content: &[u8]) -> FakeFile {
    FakeFile {
        id: id.into(),
        name: name.into(),
        mime: mime.into(),
        parent: (!parent.is_empty()).then(|| parent.to_string()),
        content: content.to_vec(),
        md5_override: None,
        size_override: None,
        modified: 0,
        version: 1,
        trashed: false,
        drive_id: None,
        target: None,
    }
}

impl FakeState {
    fn drive_of(&self, id: &str) -> Option<String> {
        self.files.get(id).and_then(|f| f.drive_id.clone())
    }

    fn record(&mut self, id: &str) {
        let Some(f) = self.files.get(id) else {
            return;
        };
        let change = json!({"kind": "drive#change", "changeType": "file", "removed": false, "fileId": id,
                            "time": "2026-02-01T11:00:00.000Z", "file": f.json()});
        self.changes.push((f.drive_id.clone(), change));
    }

    /// Logs the request and answers a scripted fault or a refused token, if any.
    fn gate(&mut self, path: &str, query: &HashMap<String, String>, headers: &HeaderMap) -> Option<Response> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        self.requests.push(Request {
            path: path.to_string(),
            query: query.clone(),
            token: token.clone(),
        });
        if !token.as_ref().is_some_and(|t| self.valid_tokens.contains(t)) {
            let mut r = google_error(401, "authError", "Invalid Credentials", Some("Authorization"));
            r.headers_mut().insert(
                "www-authenticate",
                "Bearer realm=\"https://accounts.google.com/\"".parse().unwrap(),
            );
            return Some(r);
        }
        if let Some(pos) = self.faults.iter().position(|f| path.contains(&f.path)) {
            let f = self.faults[pos].clone();
            if f.times <= 1 {
                self.faults.remove(pos);
            } else {
                self.faults[pos].times -= 1;
            }
            let mut r = google_error(f.status, &f.reason, "scripted failure", f.location.as_deref());
            if let Some(ra) = &f.retry_after {
                r.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            return Some(r);
        }
        None
    }

    fn page_size(&self, query: &HashMap<String, String>, default: usize) -> usize {
        query
            .get("pageSize")
            .and_then(|p| p.parse().ok())
            .unwrap_or(default)
            .min(self.max_page)
    }

    /// Whether a shared drive's item is asked for without `supportsAllDrives=true` (Drive: 404).
    fn hidden(&self, f: &FakeFile, query: &HashMap<String, String>) -> bool {
        f.drive_id.is_some() && query.get("supportsAllDrives").map(String::as_str) != Some("true")
    }
}

fn not_found(id: &str) -> Response {
    google_error(404, "notFound", &format!("File not found: {id}."), Some("fileId"))
}

fn paged(items: Vec<Value>, query: &HashMap<String, String>, size: usize, kind: &str, key: &str) -> Response {
    let Some(offset) = offset_of(query.get("pageToken")) else {
        return google_error(400, "invalid", "Invalid Value", Some("pageToken"));
    };
    let page: Vec<Value> = items.iter().skip(offset).take(size).cloned().collect();
    let mut body = json!({"kind": kind, key: page});
    // A mask without nextPageToken silently stops paging, as Drive does.
    let fields = query.get("fields").cloned().unwrap_or_default();
    if offset + size < items.len() && fields.contains("nextPageToken") {
        body["nextPageToken"] = json!(page_token(offset + size));
    }
    json_ok(body)
}

async fn list_files(
    State(st): State<Arc<Mutex<FakeState>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = s.gate("/files", &q, &headers) {
        return r;
    }
    let query = q.get("q").cloned().unwrap_or_default();
    let size = s.page_size(&q, 100);
    let files: Vec<Value> = if query == "sharedWithMe and trashed = false" {
        s.shared_with_me
            .iter()
            .filter_map(|id| s.files.get(id))
            .map(FakeFile::json)
            .collect()
    } else if let Some(parent) = query
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix("' in parents and trashed = false"))
    {
        let parent = if parent == "root" { MY_ROOT } else { parent };
        if s.files.get(parent).is_some_and(|f| f.drive_id.is_some())
            && q.get("includeItemsFromAllDrives").map(String::as_str) != Some("true")
        {
            return json_ok(json!({"kind": "drive#fileList", "files": []}));
        }
        s.files
            .values()
            .filter(|f| f.parent.as_deref() == Some(parent) && !f.trashed)
            .map(FakeFile::json)
            .collect()
    } else {
        return google_error(400, "invalid", "Invalid Value", Some("q"));
    };
    paged(files, &q, size, "drive#fileList", "files")
}

async fn get_file(
    State(st): State<Arc<Mutex<FakeState>>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = s.gate(&format!("/files/{id}"), &q, &headers) {
        return r;
    }
    let id = if id == "root" { MY_ROOT.to_string() } else { id };
    let Some(f) = s.files.get(&id).cloned() else {
        return not_found(&id);
    };
    if s.hidden(&f, &q) {
        return not_found(&id);
    }
    if q.get("alt").map(String::as_str) == Some("media") {
        if f.mime.starts_with("application/vnd.google-apps.") || s.not_downloadable.contains(&id) {
            return google_error(
                403,
                "fileNotDownloadable",
                "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
                Some("alt"),
            );
        }
        return (
            StatusCode::OK,
            [("content-type", f.mime.clone())],
            Body::from(f.content.clone()),
        )
            .into_response();
    }
    json_ok(f.json())
}

async fn export(
    State(st): State<Arc<Mutex<FakeState>>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = s.gate(&format!("/files/{id}/export"), &q, &headers) {
        return r;
    }
    let Some(f) = s.files.get(&id).cloned() else {
        return not_found(&id);
    };
    if f.mime != DOC || q.get("mimeType").map(String::as_str) != Some(DOCX) {
        return google_error(
            400,
            "badRequest",
            "The requested conversion is not supported.",
            Some("convertTo"),
        );
    }
    (
        StatusCode::OK,
        [("content-type", DOCX)],
        Body::from(f.content.clone()),
    )
        .into_response()
}

async fn permissions(
    State(st): State<Arc<Mutex<FakeState>>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = s.gate(&format!("/files/{id}/permissions"), &q, &headers) {
        return r;
    }
    let Some(f) = s.files.get(&id).cloned() else {
        return not_found(&id);
    };
    if s.hidden(&f, &q) {
        return not_found(&id);
    }
    let size = s.page_size(&q, 100);
    let list = s.permissions.get(&id).cloned().unwrap_or_default();
    paged(list, &q, size, "drive#permissionList", "permissions")
}

async fn drives(
    State(st): State<Arc<Mutex<FakeState>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = s.gate("/drives", &q, &headers) {
        return r;
    }
    let size = s.page_size(&q, 10);
    let list: Vec<Value> = s
        .drives
        .iter()
        .map(|(id, name)| json!({"kind": "drive#drive", "id": id, "name": name, "createdTime": "2025-01-01T00:00:00.000Z"}))
        .collect();
    paged(list, &q, size, "drive#driveList", "drives")
}

async fn start_token(
    State(st): State<Arc<Mutex<FakeState>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = s.gate("/changes/startPageToken", &q, &headers) {
        return r;
    }
    json_ok(json!({"kind": "drive#startPageToken", "startPageToken": s.changes.len().to_string()}))
}

async fn changes(
    State(st): State<Arc<Mutex<FakeState>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = s.gate("/changes", &q, &headers) {
        return r;
    }
    let Some(from) = q
        .get("pageToken")
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|t| *t >= s.oldest_token && *t <= s.changes.len())
    else {
        return google_error(400, "invalid", "Invalid Value", Some("pageToken"));
    };
    let size = s.page_size(&q, 100);
    let drive = q.get("driveId").cloned();
    let end = (from + size).min(s.changes.len());
    let page: Vec<Value> = s.changes[from..end]
        .iter()
        .filter(|(d, _)| drive.is_none() || *d == drive)
        .map(|(_, c)| c.clone())
        .collect();
    let mut body = json!({"kind": "drive#changeList", "changes": page});
    if end < s.changes.len() {
        body["nextPageToken"] = json!(end.to_string());
    } else {
        body["newStartPageToken"] = json!(end.to_string());
    }
    json_ok(body)
}
