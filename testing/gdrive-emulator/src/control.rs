//! The control API: a typed handle ([`Control`]) and the same operations over HTTP under `/_emulator/…` (no
//! authentication). Every mutation goes through the store, so it produces the change entries Drive would.

use crate::Shared;
use crate::oauth::{ConsentMode, TokenResponse, issue_access};
use crate::store::{
    ClientRegistration, Content, DocBody, FOLDER, Grant, Grantee, RefreshGrant, SHORTCUT, StoreError,
};
use crate::traffic::{FaultRule, InstalledFault, RequestLog};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The typed control handle of a running emulator.
#[derive(Clone)]
pub struct Control {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("base_url", &self.shared.base_url)
            .finish()
    }
}

/// A user of the emulated domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub email: String,
    pub permission_id: String,
    /// The id of the user's My Drive root folder.
    pub root_id: String,
}

/// Where everything is: `GET /_emulator/info`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmulatorInfo {
    pub authorize_url: String,
    pub token_url: String,
    pub revoke_url: String,
    pub api_url: String,
    pub control_url: String,
    pub default_user: UserInfo,
    pub my_drive_root_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub seed: u64,
}

/// One item as the control API lists it: `GET /_emulator/files`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub id: String,
    pub name: String,
    /// `/My Drive/a/b.txt`, `/Shared drives/<name>/…`, or `/Drives/<owner email>/…` for other users' items.
    pub path: String,
    pub mime_type: String,
    /// Bytes of binary content (for Docs Editors files, the length of their text); none for folders and
    /// shortcuts.
    pub size: Option<u64>,
    pub md5_checksum: Option<String>,
    pub trashed: bool,
    pub parent_id: Option<String>,
    pub drive_id: Option<String>,
    pub owner_email: Option<String>,
    pub version: u64,
}

/// A shared drive: `POST /_emulator/drives`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DriveInfo {
    pub id: String,
    pub name: String,
    pub members: Vec<Grant>,
}

/// What a new item is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NewContent {
    Folder,
    /// A binary file; `content` is UTF-8 text, `content_base64` any bytes. The MIME type defaults from the
    /// name's extension.
    File {
        #[serde(default)]
        mime_type: Option<String>,
        #[serde(default)]
        content: Option<String>,
        #[serde(default)]
        content_base64: Option<String>,
    },
    /// A Google Doc, Sheet or Slides file.
    Google {
        #[serde(flatten)]
        body: DocBody,
    },
    Shortcut {
        target_id: String,
    },
}

/// `POST /_emulator/files`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewFile {
    /// The parent folder (a My Drive folder, a shared drive id, or a folder in one); default: the default
    /// user's My Drive root.
    #[serde(default)]
    pub parent_id: Option<String>,
    pub name: String,
    #[serde(flatten)]
    pub content: NewContent,
}

/// A MIME type from a file name's extension, as Drive infers it on upload.
pub fn mime_for_name(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

fn decode_content(content: Option<&str>, b64: Option<&str>) -> Result<Bytes, StoreError> {
    match (content, b64) {
        (Some(t), None) => Ok(Bytes::from(t.to_string())),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(Bytes::from)
            .map_err(|e| StoreError::Invalid(format!("content_base64: {e}"))),
        (None, None) => Ok(Bytes::new()),
        (Some(_), Some(_)) => Err(StoreError::Invalid(
            "give content or content_base64, not both".into(),
        )),
    }
}

impl Control {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.shared.clock.now()
    }

    /// URLs, the default user and its My Drive root, and the registered client.
    pub fn info(&self) -> EmulatorInfo {
        let s = self.shared.store.read();
        let u = s.users.get(&s.default_user);
        let user = UserInfo {
            id: s.default_user.clone(),
            name: u.map(|u| u.name.clone()).unwrap_or_default(),
            email: u.map(|u| u.email.clone()).unwrap_or_default(),
            permission_id: u.map(|u| u.permission_id.clone()).unwrap_or_default(),
            root_id: u.map(|u| u.root_id.clone()).unwrap_or_default(),
        };
        let client = s.clients.values().next().cloned().unwrap_or_default();
        let base = &self.shared.base_url;
        EmulatorInfo {
            authorize_url: format!("{base}/o/oauth2/v2/auth"),
            token_url: format!("{base}/token"),
            revoke_url: format!("{base}/revoke"),
            api_url: format!("{base}/drive/v3"),
            control_url: format!("{base}/_emulator"),
            my_drive_root_id: user.root_id.clone(),
            default_user: user,
            client_id: client.client_id,
            client_secret: client.client_secret,
            redirect_uris: client.redirect_uris,
            seed: self.shared.seed,
        }
    }

    pub fn default_user_id(&self) -> String {
        self.shared.store.read().default_user.clone()
    }

    /// The default user's My Drive root folder id.
    pub fn root_id(&self) -> String {
        self.info().my_drive_root_id
    }

    /// Every item (not the roots), in path order.
    pub fn files(&self) -> Vec<FileInfo> {
        let s = self.shared.store.read();
        let mut out: Vec<FileInfo> = s
            .files
            .values()
            .filter(|f| !f.is_root)
            .map(|f| file_info(&s, f))
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path).then(a.id.cmp(&b.id)));
        out
    }

    pub fn file(&self, id: &str) -> Result<FileInfo, StoreError> {
        let s = self.shared.store.read();
        Ok(file_info(&s, s.file(id)?))
    }

    /// The first item with this control path (`/My Drive/Docs/a.txt`).
    pub fn file_by_path(&self, path: &str) -> Result<FileInfo, StoreError> {
        self.files()
            .into_iter()
            .find(|f| f.path == path)
            .ok_or_else(|| StoreError::NotFound(format!("path {path}")))
    }

    /// Creates an item; returns its id.
    pub fn create(&self, new: NewFile) -> Result<String, StoreError> {
        let now = self.now();
        let mut s = self.shared.store.write();
        let parent = match new.parent_id {
            Some(p) => p,
            None => s.user(&s.default_user.clone())?.root_id.clone(),
        };
        match new.content {
            NewContent::Folder => s.create(&parent, &new.name, FOLDER, Content::None, None, now),
            NewContent::File {
                mime_type,
                content,
                content_base64,
            } => {
                let bytes = decode_content(content.as_deref(), content_base64.as_deref())?;
                let mime = mime_type.unwrap_or_else(|| mime_for_name(&new.name).to_string());
                if mime.starts_with("application/vnd.google-apps.") {
                    return Err(StoreError::Invalid(format!("{mime} has no binary content")));
                }
                s.create(&parent, &new.name, &mime, Content::Blob(bytes), None, now)
            }
            NewContent::Google { body } => {
                let mime = body.mime_type();
                s.create(&parent, &new.name, mime, Content::Doc(body), None, now)
            }
            NewContent::Shortcut { target_id } => {
                s.create(&parent, &new.name, SHORTCUT, Content::None, Some(target_id), now)
            }
        }
    }

    pub fn create_folder(&self, parent_id: &str, name: &str) -> Result<String, StoreError> {
        self.create(NewFile {
            parent_id: Some(parent_id.into()),
            name: name.into(),
            content: NewContent::Folder,
        })
    }

    /// A binary file whose MIME type follows its name.
    pub fn create_file(
        &self,
        parent_id: &str,
        name: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<String, StoreError> {
        let now = self.now();
        let mime = mime_for_name(name);
        self.shared
            .store
            .write()
            .create(parent_id, name, mime, Content::Blob(bytes.into()), None, now)
    }

    pub fn create_google(&self, parent_id: &str, name: &str, body: DocBody) -> Result<String, StoreError> {
        self.create(NewFile {
            parent_id: Some(parent_id.into()),
            name: name.into(),
            content: NewContent::Google { body },
        })
    }

    pub fn create_shortcut(
        &self,
        parent_id: &str,
        name: &str,
        target_id: &str,
    ) -> Result<String, StoreError> {
        self.create(NewFile {
            parent_id: Some(parent_id.into()),
            name: name.into(),
            content: NewContent::Shortcut {
                target_id: target_id.into(),
            },
        })
    }

    pub fn update_content(&self, id: &str, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        let now = self.now();
        self.shared
            .store
            .write()
            .update_content(id, Content::Blob(bytes.into()), now)
    }

    pub fn update_google(&self, id: &str, body: DocBody) -> Result<(), StoreError> {
        let now = self.now();
        self.shared
            .store
            .write()
            .update_content(id, Content::Doc(body), now)
    }

    pub fn rename(&self, id: &str, name: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.shared.store.write().rename(id, name, now)
    }

    pub fn move_item(&self, id: &str, new_parent_id: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.shared.store.write().move_to(id, new_parent_id, now)
    }

    pub fn trash(&self, id: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.shared.store.write().set_trashed(id, true, now)
    }

    pub fn untrash(&self, id: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.shared.store.write().set_trashed(id, false, now)
    }

    /// Deletes for good (the item and everything under it).
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.shared.store.write().delete(id, now)
    }

    /// Replaces an item's direct grants (the owner stays).
    pub fn set_permissions(&self, id: &str, grants: Vec<Grant>) -> Result<(), StoreError> {
        let now = self.now();
        self.shared.store.write().set_grants(id, grants, now)
    }

    /// Creates a shared drive; without members the default user is its organizer.
    pub fn create_shared_drive(&self, name: &str, members: Vec<Grant>) -> Result<String, StoreError> {
        let now = self.now();
        let mut s = self.shared.store.write();
        let members = if members.is_empty() {
            let email = s.user(&s.default_user.clone())?.email.clone();
            vec![Grant {
                grantee: Grantee::User { email_address: email },
                role: "organizer".into(),
                allow_file_discovery: false,
            }]
        } else {
            members
        };
        s.create_drive(name, members, now)
    }

    pub fn delete_shared_drive(&self, id: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.shared.store.write().delete_drive(id, now)
    }

    pub fn shared_drives(&self) -> Vec<DriveInfo> {
        self.shared
            .store
            .read()
            .drives
            .values()
            .map(|d| DriveInfo {
                id: d.id.clone(),
                name: d.name.clone(),
                members: d.members.clone(),
            })
            .collect()
    }

    /// Adds a user (with an empty My Drive); returns its id.
    pub fn add_user(&self, name: &str, email: &str) -> Result<String, StoreError> {
        let now = self.now();
        let mut s = self.shared.store.write();
        if s.user_by_email(email).is_some() {
            return Err(StoreError::Invalid(format!("{email} exists")));
        }
        Ok(s.add_user(name, email, now))
    }

    pub fn user_by_email(&self, email: &str) -> Result<UserInfo, StoreError> {
        let s = self.shared.store.read();
        let u = s
            .user_by_email(email)
            .ok_or_else(|| StoreError::NotFound(format!("user {email}")))?;
        Ok(UserInfo {
            id: u.id.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            permission_id: u.permission_id.clone(),
            root_id: u.root_id.clone(),
        })
    }

    /// Sets a group's members (by email).
    pub fn set_group(&self, group_email: &str, member_emails: &[String]) -> Result<(), StoreError> {
        let mut s = self.shared.store.write();
        let mut ids = std::collections::BTreeSet::new();
        for m in member_emails {
            let u = s
                .user_by_email(m)
                .ok_or_else(|| StoreError::NotFound(format!("user {m}")))?;
            ids.insert(u.id.clone());
        }
        s.groups.insert(group_email.to_lowercase(), ids);
        Ok(())
    }

    /// Revokes every token of a user (as when they remove the app's access); returns how many.
    pub fn revoke_user_tokens(&self, user_id: &str) -> usize {
        self.shared.store.write().revoke_user_tokens(user_id)
    }

    /// Every change page token issued so far is rejected from now on (400 `invalid` on `pageToken`).
    pub fn expire_page_tokens(&self) {
        self.shared.store.write().expire_page_tokens();
    }

    /// Issues an access token and a refresh token for a user without the browser dance (for tests).
    pub fn mint_tokens(&self, user_id: &str, scope: &str) -> Result<TokenResponse, StoreError> {
        let now = self.now();
        let mut s = self.shared.store.write();
        s.user(user_id)?;
        let client = s
            .clients
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| StoreError::NotFound("client".into()))?;
        let refresh = s.ids.refresh_token();
        s.refresh_tokens.insert(
            refresh.clone(),
            RefreshGrant {
                user_id: user_id.into(),
                client_id: client.clone(),
                scope: scope.into(),
            },
        );
        let access = issue_access(&mut s, user_id, &client, scope, Some(refresh.clone()), now);
        Ok(TokenResponse {
            access_token: access,
            expires_in: 3599,
            token_type: "Bearer".into(),
            scope: scope.into(),
            refresh_token: Some(refresh),
        })
    }

    pub fn register_client(&self, c: ClientRegistration) {
        self.shared.store.write().clients.insert(c.client_id.clone(), c);
    }

    pub fn set_consent(&self, mode: ConsentMode) {
        *self.shared.consent.lock() = mode;
    }

    /// Exports larger than this are refused with 403 `exportSizeLimitExceeded` (default 10 MB).
    pub fn set_export_limit(&self, bytes: u64) {
        self.shared.store.write().export_limit = bytes;
    }

    pub fn advance_clock(&self, seconds: i64) {
        self.shared.clock.advance(chrono::Duration::seconds(seconds));
    }

    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.shared.traffic.lock().add_fault(rule)
    }

    pub fn faults(&self) -> Vec<InstalledFault> {
        self.shared.traffic.lock().faults.clone()
    }

    pub fn clear_faults(&self) {
        self.shared.traffic.lock().faults.clear();
    }

    pub fn traffic(&self) -> RequestLog {
        self.shared.traffic.lock().log.clone()
    }

    pub fn clear_traffic(&self) {
        self.shared.traffic.lock().log = RequestLog::default();
    }
}

fn file_info(s: &crate::store::Store, f: &crate::store::File) -> FileInfo {
    FileInfo {
        id: f.id.clone(),
        name: f.name.clone(),
        path: s.path(&f.id),
        mime_type: f.mime_type.clone(),
        size: f.size(),
        md5_checksum: f.md5.clone(),
        trashed: s.trashed(&f.id),
        parent_id: f.parent.clone(),
        drive_id: f.drive_id.clone(),
        owner_email: f
            .owner
            .as_deref()
            .and_then(|o| s.users.get(o))
            .map(|u| u.email.clone()),
        version: f.version,
    }
}

#[derive(Debug)]
struct ControlError(StatusCode, String);

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        ControlError(status, e.to_string())
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

type CResult<T> = Result<Json<T>, ControlError>;

fn ctl(shared: &Arc<Shared>) -> Control {
    Control {
        shared: shared.clone(),
    }
}

#[derive(Deserialize)]
struct ContentBody {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    content_base64: Option<String>,
    /// New body of a Google Docs Editors file instead.
    #[serde(default)]
    google: Option<DocBody>,
}

#[derive(Deserialize)]
struct NameBody {
    name: String,
}

#[derive(Deserialize)]
struct MoveBody {
    parent_id: String,
}

#[derive(Deserialize)]
struct DriveBody {
    name: String,
    #[serde(default)]
    members: Vec<Grant>,
}

#[derive(Deserialize)]
struct UserBody {
    name: String,
    email: String,
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    user_id: Option<String>,
    scope: String,
}

#[derive(Deserialize)]
struct ConsentBody {
    mode: ConsentMode,
}

#[derive(Deserialize)]
struct SecondsBody {
    seconds: i64,
}

#[derive(Deserialize)]
struct BytesBody {
    bytes: u64,
}

fn ok() -> Json<serde_json::Value> {
    Json(serde_json::json!({"ok": true}))
}

async fn info(State(s): State<Arc<Shared>>) -> Json<EmulatorInfo> {
    Json(ctl(&s).info())
}

async fn files(State(s): State<Arc<Shared>>) -> Json<Vec<FileInfo>> {
    Json(ctl(&s).files())
}

async fn create_file(State(s): State<Arc<Shared>>, Json(b): Json<NewFile>) -> CResult<FileInfo> {
    let c = ctl(&s);
    let id = c.create(b)?;
    Ok(Json(c.file(&id)?))
}

async fn get_file(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> CResult<FileInfo> {
    Ok(Json(ctl(&s).file(&id)?))
}

async fn delete_file(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> CResult<serde_json::Value> {
    ctl(&s).delete(&id)?;
    Ok(ok())
}

async fn put_content(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(b): Json<ContentBody>,
) -> CResult<FileInfo> {
    let c = ctl(&s);
    match b.google {
        Some(body) => c.update_google(&id, body)?,
        None => c.update_content(
            &id,
            decode_content(b.content.as_deref(), b.content_base64.as_deref())?,
        )?,
    }
    Ok(Json(c.file(&id)?))
}

async fn rename(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(b): Json<NameBody>,
) -> CResult<FileInfo> {
    let c = ctl(&s);
    c.rename(&id, &b.name)?;
    Ok(Json(c.file(&id)?))
}

async fn move_item(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(b): Json<MoveBody>,
) -> CResult<FileInfo> {
    let c = ctl(&s);
    c.move_item(&id, &b.parent_id)?;
    Ok(Json(c.file(&id)?))
}

async fn trash(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> CResult<FileInfo> {
    let c = ctl(&s);
    c.trash(&id)?;
    Ok(Json(c.file(&id)?))
}

async fn untrash(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> CResult<FileInfo> {
    let c = ctl(&s);
    c.untrash(&id)?;
    Ok(Json(c.file(&id)?))
}

async fn set_permissions(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(b): Json<Vec<Grant>>,
) -> CResult<serde_json::Value> {
    ctl(&s).set_permissions(&id, b)?;
    Ok(ok())
}

async fn create_drive(State(s): State<Arc<Shared>>, Json(b): Json<DriveBody>) -> CResult<DriveInfo> {
    let c = ctl(&s);
    let id = c.create_shared_drive(&b.name, b.members)?;
    c.shared_drives()
        .into_iter()
        .find(|d| d.id == id)
        .map(Json)
        .ok_or_else(|| ControlError(StatusCode::INTERNAL_SERVER_ERROR, "drive vanished".into()))
}

async fn list_drives(State(s): State<Arc<Shared>>) -> Json<Vec<DriveInfo>> {
    Json(ctl(&s).shared_drives())
}

async fn delete_drive(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> CResult<serde_json::Value> {
    ctl(&s).delete_shared_drive(&id)?;
    Ok(ok())
}

async fn add_user(State(s): State<Arc<Shared>>, Json(b): Json<UserBody>) -> CResult<UserInfo> {
    let c = ctl(&s);
    c.add_user(&b.name, &b.email)?;
    Ok(Json(c.user_by_email(&b.email)?))
}

async fn set_group(
    State(s): State<Arc<Shared>>,
    Path(email): Path<String>,
    Json(members): Json<Vec<String>>,
) -> CResult<serde_json::Value> {
    ctl(&s).set_group(&email, &members)?;
    Ok(ok())
}

async fn revoke_tokens(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Json<serde_json::Value> {
    let n = ctl(&s).revoke_user_tokens(&id);
    Json(serde_json::json!({"revoked": n}))
}

async fn expire_tokens(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    ctl(&s).expire_page_tokens();
    ok()
}

async fn mint(State(s): State<Arc<Shared>>, Json(b): Json<TokenBody>) -> CResult<TokenResponse> {
    let c = ctl(&s);
    let user = b.user_id.unwrap_or_else(|| c.default_user_id());
    Ok(Json(c.mint_tokens(&user, &b.scope)?))
}

async fn consent(State(s): State<Arc<Shared>>, Json(b): Json<ConsentBody>) -> Json<serde_json::Value> {
    ctl(&s).set_consent(b.mode);
    ok()
}

async fn advance(State(s): State<Arc<Shared>>, Json(b): Json<SecondsBody>) -> Json<serde_json::Value> {
    ctl(&s).advance_clock(b.seconds);
    ok()
}

async fn export_limit(State(s): State<Arc<Shared>>, Json(b): Json<BytesBody>) -> Json<serde_json::Value> {
    ctl(&s).set_export_limit(b.bytes);
    ok()
}

async fn list_faults(State(s): State<Arc<Shared>>) -> Json<Vec<InstalledFault>> {
    Json(ctl(&s).faults())
}

async fn add_fault(State(s): State<Arc<Shared>>, Json(rule): Json<FaultRule>) -> Json<serde_json::Value> {
    let id = ctl(&s).add_fault(rule);
    Json(serde_json::json!({"id": id}))
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    ctl(&s).clear_faults();
    ok()
}

async fn traffic(State(s): State<Arc<Shared>>) -> Json<RequestLog> {
    Json(ctl(&s).traffic())
}

async fn clear_traffic(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    ctl(&s).clear_traffic();
    ok()
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_emulator/info", get(info))
        .route("/_emulator/files", get(files).post(create_file))
        .route("/_emulator/files/{id}", get(get_file).delete(delete_file))
        .route("/_emulator/files/{id}/content", put(put_content))
        .route("/_emulator/files/{id}/rename", post(rename))
        .route("/_emulator/files/{id}/move", post(move_item))
        .route("/_emulator/files/{id}/trash", post(trash))
        .route("/_emulator/files/{id}/untrash", post(untrash))
        .route("/_emulator/files/{id}/permissions", put(set_permissions))
        .route("/_emulator/drives", get(list_drives).post(create_drive))
        .route("/_emulator/drives/{id}", axum::routing::delete(delete_drive))
        .route("/_emulator/users", post(add_user))
        .route("/_emulator/groups/{email}", put(set_group))
        .route("/_emulator/users/{id}/revoke-tokens", post(revoke_tokens))
        .route("/_emulator/page-tokens/expire", post(expire_tokens))
        .route("/_emulator/tokens", post(mint))
        .route("/_emulator/consent", put(consent))
        .route("/_emulator/clock/advance", post(advance))
        .route("/_emulator/export-limit", put(export_limit))
        .route(
            "/_emulator/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_emulator/traffic", get(traffic).delete(clear_traffic))
}
