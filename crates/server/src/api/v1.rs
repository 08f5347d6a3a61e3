//! `/api/v1` handlers and their wire types.

use axum::{
    Json,
    body::Body,
    extract::{Multipart, RawQuery, State, multipart::MultipartRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use kbsync_core::{Document, DocumentId, DocumentStatus, KbId, Passage, Role, SearchHit, User, UserId};
use kbsync_store::PageOf;
use serde::{Deserialize, Serialize};
use tokio_util::io::ReaderStream;
use utoipa::{IntoParams, ToSchema};

use super::{
    extract::{ApiJson, ApiPath, ApiQuery},
    multipart::FormFields,
};
use crate::{
    AppState,
    auth::{ClientAddress, CurrentUser, SessionUser},
    error::{ApiError, ApiResult, ErrorBody},
    service::{self, documents, knowledge, knowledge::KbView, search, users},
};

// --- wire types --------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct UserDto {
    #[schema(value_type = uuid::Uuid)]
    pub id: UserId,
    pub email: String,
    pub role: Role,
}

impl From<User> for UserDto {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            role: u.role,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KnowledgeDto {
    #[schema(value_type = uuid::Uuid)]
    pub id: KbId,
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kb_type: kbsync_core::KbType,
    #[schema(value_type = uuid::Uuid)]
    pub owner_id: UserId,
    pub sync_status: kbsync_core::SyncStatus,
    /// What the caller may do: `documents` (read only the documents whose permissions at the
    /// source name them), `read`, `write` or `manage`.
    #[schema(value_type = String, example = "manage")]
    pub access: &'static str,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<KbView> for KnowledgeDto {
    fn from(v: KbView) -> Self {
        let access = match v.access {
            kbsync_core::Access::Manage => "manage",
            kbsync_core::Access::Write => "write",
            kbsync_core::Access::Documents => "documents",
            _ => "read",
        };
        let kb = v.kb;
        Self {
            id: kb.id,
            name: kb.name,
            description: kb.description,
            kb_type: kb.kb_type,
            owner_id: kb.owner_id,
            sync_status: kb.sync_status,
            access,
            created_at: kb.created_at,
            updated_at: kb.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FileDto {
    #[schema(value_type = uuid::Uuid)]
    pub id: DocumentId,
    #[schema(value_type = uuid::Uuid)]
    pub knowledge_id: KbId,
    pub name: String,
    pub path: String,
    pub size: i64,
    pub mime: String,
    pub status: DocumentStatus,
    pub error: Option<String>,
    pub content_hash: String,
    pub web_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Document> for FileDto {
    fn from(d: Document) -> Self {
        Self {
            id: d.id,
            knowledge_id: d.kb_id,
            name: d.name,
            path: d.path,
            size: d.size,
            mime: d.mime,
            status: d.status,
            error: d.error,
            content_hash: d.content_hash,
            web_url: d.web_url,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// One page of a list: `items`, the `total` number there are, and the page asked for.
#[derive(Serialize, ToSchema)]
pub struct ListDto<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

impl<T> ListDto<T> {
    pub fn of<U: Into<T>>(page: kbsync_store::Page, found: PageOf<U>) -> Self {
        Self {
            items: found.items.into_iter().map(Into::into).collect(),
            total: found.total,
            limit: page.limit,
            offset: page.offset,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page (default 50, at most 200).
    pub limit: Option<u32>,
    /// Items to skip.
    pub offset: Option<u64>,
}

// --- auth and users ----------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// The session token: send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub user: UserDto,
}

/// Sign in with email and password
///
/// Answers a session token for `Authorization: Bearer`. Failed attempts are counted per account
/// and per client address.
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 403, description = "Password sign-in is turned off, or the account is disabled", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
        (status = 429, description = "Too many failed attempts; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "Password hashing is saturated; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddress,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let outcome = users::login(&state, client, &req.email, &req.password).await?;
    Ok(Json(LoginResponse {
        token: outcome.token,
        user: outcome.user.into(),
    }))
}

/// Sign out: end the session whose token the request carries
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    security(("session_token" = [])),
    responses(
        (status = 204, description = "The session has ended"),
        (status = 401, description = "No bearer token", body = ErrorBody),
    ))]
pub async fn logout(State(state): State<AppState>, token: crate::auth::BearerToken) -> ApiResult<StatusCode> {
    users::logout(&state, &token.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own account
#[utoipa::path(get, path = "/me", tag = "auth",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The caller", body = UserDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
    ))]
pub async fn me(CurrentUser(user): CurrentUser) -> Json<UserDto> {
    Json(user.into())
}

#[derive(Deserialize, ToSchema)]
pub struct CreateUserRequest {
    pub email: String,
    pub password: String,
    /// `admin` or `user` (the default).
    pub role: Option<String>,
}

/// Create a user account (admins, signed in: an API key cannot create accounts, so that a leaked
/// key cannot make itself an admin with a password of its choosing)
#[utoipa::path(post, path = "/users", tag = "users",
    security(("session_token" = [])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserDto),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "An API key, or the caller is not an admin", body = ErrorBody),
        (status = 409, description = "An account with this email exists", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    SessionUser { user: caller, .. }: SessionUser,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserDto>)> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden("only admins may create users".into()));
    }
    let role = match req.role.as_deref() {
        None => Role::User,
        Some(r) => r
            .parse()
            .map_err(|e: kbsync_core::UnknownVariant| ApiError::invalid("role", e.to_string()))?,
    };
    let user = users::create_user(
        state.store.as_ref(),
        state.random.as_ref(),
        state.clock.now(),
        &req.email,
        &req.password,
        role,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

// --- knowledge bases ---------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct CreateKnowledgeRequest {
    pub name: String,
    pub description: Option<String>,
    /// `local` (the default: uploads) or a datasource, e.g. `onedrive` or `gdrive`.
    #[serde(rename = "type")]
    pub kb_type: Option<String>,
}

/// Create a knowledge base
#[utoipa::path(post, path = "/knowledge", tag = "knowledge",
    security(("session_token" = []), ("api_key" = ["write"])),
    request_body = CreateKnowledgeRequest,
    responses(
        (status = 201, description = "Created; the caller owns it", body = KnowledgeDto),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn create_knowledge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(req): ApiJson<CreateKnowledgeRequest>,
) -> ApiResult<(StatusCode, Json<KnowledgeDto>)> {
    let view = knowledge::create(
        &state,
        &user,
        &req.name,
        req.description.as_deref(),
        req.kb_type.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// The knowledge bases the caller may read (at least some documents of)
#[utoipa::path(get, path = "/knowledge", tag = "knowledge",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "One page of knowledge bases", body = ListDto<KnowledgeDto>),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn list_knowledge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> ApiResult<Json<ListDto<KnowledgeDto>>> {
    let page = service::page(params.limit, params.offset)?;
    let found = knowledge::list(&state, &user, page).await?;
    Ok(Json(ListDto::of(page, found)))
}

/// One knowledge base
#[utoipa::path(get, path = "/knowledge/{id}", tag = "knowledge",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 200, description = "The knowledge base", body = KnowledgeDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn get_knowledge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Json<KnowledgeDto>> {
    Ok(Json(knowledge::visible(&state, &user, id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
pub struct PatchKnowledgeRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Absent: unchanged; `null`: the server's default; a number: this knowledge base's own.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub sync_interval_minutes: Option<Option<u32>>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`, via `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

/// Change a knowledge base's name, description or sync interval (managers)
#[utoipa::path(patch, path = "/knowledge/{id}", tag = "knowledge",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    request_body = PatchKnowledgeRequest,
    responses(
        (status = 200, description = "The changed knowledge base", body = KnowledgeDto),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller may not change this", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn patch_knowledge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    ApiJson(req): ApiJson<PatchKnowledgeRequest>,
) -> ApiResult<Json<KnowledgeDto>> {
    let changes = knowledge::KbChanges {
        name: req.name.as_deref(),
        description: req.description.as_deref(),
        sync_interval_minutes: req.sync_interval_minutes,
    };
    let view = knowledge::patch(&state, &user, id, changes).await?;
    Ok(Json(view.into()))
}

/// Delete a knowledge base with its documents, sources and connection (managers)
#[utoipa::path(delete, path = "/knowledge/{id}", tag = "knowledge",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller may not change this", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn delete_knowledge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<StatusCode> {
    knowledge::delete(&state, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The users granted access by hand (grants from the drive's sharing are not listed here).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AccessDto {
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub read: Vec<UserId>,
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub write: Vec<UserId>,
}

/// The knowledge base's manual read and write grants (managers)
#[utoipa::path(get, path = "/knowledge/{id}/access", tag = "knowledge",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    responses(
        (status = 200, description = "The grants", body = AccessDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "The caller does not manage the knowledge base", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn get_access(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Json<AccessDto>> {
    let lists = knowledge::get_access(&state, &user, id).await?;
    Ok(Json(AccessDto {
        read: lists.read,
        write: lists.write,
    }))
}

/// Replace the knowledge base's manual grants (managers)
#[utoipa::path(put, path = "/knowledge/{id}/access", tag = "knowledge",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    request_body = AccessDto,
    responses(
        (status = 200, description = "The grants now", body = AccessDto),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller may not change this", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 422, description = "An unknown user id, or a field of the wrong type", body = ErrorBody),
    ))]
pub async fn put_access(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
    ApiJson(req): ApiJson<AccessDto>,
) -> ApiResult<Json<AccessDto>> {
    let lists = knowledge::set_access(&state, &user, id, &req.read, &req.write).await?;
    Ok(Json(AccessDto {
        read: lists.read,
        write: lists.write,
    }))
}

// --- files -------------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct UploadAccepted {
    #[schema(value_type = uuid::Uuid)]
    pub id: DocumentId,
    pub name: String,
    pub status: DocumentStatus,
}

/// The form of an upload: one file, in a part named `file` (other small fields are ignored).
#[derive(ToSchema)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Upload a file (writers of a local knowledge base)
///
/// The file is stored at once and extracted and indexed in the background; a file of the same
/// name replaces the earlier one.
#[utoipa::path(post, path = "/knowledge/{id}/files", tag = "files",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Stored; extraction follows (`status` is `pending`)", body = UploadAccepted),
        (status = 400, description = "Not a multipart body, or a malformed one", body = ErrorBody),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller may not change this", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 409, description = "The knowledge base syncs from a datasource; uploads go to local ones", body = ErrorBody),
        (status = 413, description = "The file is larger than the upload limit", body = ErrorBody),
        (status = 422, description = "No `file` part, or an unsupported file type", body = ErrorBody),
    ))]
pub async fn upload_file(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(kb_id): ApiPath<KbId>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<UploadAccepted>)> {
    // Access is checked before the body is read, so strangers cannot make the server store bytes.
    knowledge::writable(&state, &user, kb_id).await?;
    let mut multipart = multipart.map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
    })?;
    let stored = store_upload(&state, &user, kb_id, &mut multipart).await;
    if stored.is_err() {
        crate::api::multipart::drain(&mut multipart).await;
    }
    stored
}

/// Reads the upload body: small fields are read and forgotten, the file is stored.
async fn store_upload(
    state: &AppState,
    user: &User,
    kb_id: KbId,
    multipart: &mut Multipart,
) -> ApiResult<(StatusCode, Json<UploadAccepted>)> {
    let mut fields = FormFields::default();
    loop {
        let field = multipart.next_field().await.map_err(|e| ApiError::BadRequest {
            message: format!("malformed multipart body: {e}"),
        })?;
        let Some(field) = field else {
            return Err(ApiError::invalid(
                "file",
                "the multipart body needs a field named \"file\"",
            ));
        };
        if field.name() != Some("file") {
            // Other fields are read (and forgotten) under the small-field limit, so a body
            // without a file cannot stream on forever.
            fields.text(field).await?;
            continue;
        }
        let name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let doc = documents::upload(
            state,
            user,
            kb_id,
            name.as_deref(),
            content_type.as_deref(),
            field,
        )
        .await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(UploadAccepted {
                id: doc.id,
                name: doc.name,
                status: doc.status,
            }),
        ));
    }
}

/// The knowledge base's documents the caller may read
#[utoipa::path(get, path = "/knowledge/{id}/files", tag = "files",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base"), PageParams),
    responses(
        (status = 200, description = "One page of documents", body = ListDto<FileDto>),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 404, description = "No such knowledge base, or the caller may not see it", body = ErrorBody),
        (status = 422, description = "A field has a value the service cannot accept; the message names it", body = ErrorBody),
    ))]
pub async fn list_files(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(kb_id): ApiPath<KbId>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> ApiResult<Json<ListDto<FileDto>>> {
    let page = service::page(params.limit, params.offset)?;
    let found = documents::list(&state, &user, kb_id, page).await?;
    Ok(Json(ListDto::of(page, found)))
}

/// One document's metadata and status
#[utoipa::path(get, path = "/knowledge/{id}/files/{file_id}", tag = "files",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base"), ("file_id" = uuid::Uuid, Path, description = "The document")),
    responses(
        (status = 200, description = "The document", body = FileDto),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 404, description = "No such knowledge base or document, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn get_file(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath((kb_id, id)): ApiPath<(KbId, DocumentId)>,
) -> ApiResult<Json<FileDto>> {
    Ok(Json(documents::get(&state, &user, kb_id, id).await?.into()))
}

/// The document's original bytes, as an attachment
#[utoipa::path(get, path = "/knowledge/{id}/files/{file_id}/content", tag = "files",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base"), ("file_id" = uuid::Uuid, Path, description = "The document")),
    responses(
        (status = 200, description = "The file, with its media type", content(("application/octet-stream"))),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 404, description = "No such knowledge base or document, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn file_content(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath((kb_id, id)): ApiPath<(KbId, DocumentId)>,
) -> ApiResult<Response> {
    let (doc, file) = documents::content(&state, &user, kb_id, id).await?;
    let disposition = content_disposition(&doc.name);
    Ok((
        [
            (header::CONTENT_TYPE, doc.mime),
            (header::CONTENT_LENGTH, doc.size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        Body::from_stream(ReaderStream::new(file)),
    )
        .into_response())
}

/// Delete a document (writers)
#[utoipa::path(delete, path = "/knowledge/{id}/files/{file_id}", tag = "files",
    security(("session_token" = []), ("api_key" = ["write"])),
    params(("id" = uuid::Uuid, Path, description = "The knowledge base"), ("file_id" = uuid::Uuid, Path, description = "The document")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 403, description = "A read-only API key, or the caller may not change this", body = ErrorBody),
        (status = 404, description = "No such knowledge base or document, or the caller may not see it", body = ErrorBody),
    ))]
pub async fn delete_file(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath((kb_id, id)): ApiPath<(KbId, DocumentId)>,
) -> ApiResult<StatusCode> {
    documents::delete(&state, &user, kb_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `attachment` with an ASCII fallback name and the exact name in RFC 5987 form.
fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

// --- search ------------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
}

/// Full-text search over every document the caller may read
#[utoipa::path(get, path = "/search", tag = "search",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    description = "Ranked hits with a snippet each, only from documents the caller may read.",
    params(("q" = String, Query, description = "The words to search for"), ("limit" = Option<u32>, Query, description = "Most hits to answer"), ("knowledge_id" = Option<Vec<uuid::Uuid>>, Query, explode, description = "Limit the search to these knowledge bases (repeat the parameter); default: every readable one")),
    responses(
        (status = 200, description = "The hits, best first", body = SearchResponse),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 422, description = "No `q`, or a malformed `limit` or `knowledge_id`", body = ErrorBody),
    ))]
// `q`, `limit` and any number of `knowledge_id` parameters; parsed by hand because the
// repeated key does not fit a struct.
pub async fn search_route(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<SearchResponse>> {
    let mut q = None;
    let mut limit = None;
    let mut kb_ids = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "q" => q = Some(value.into_owned()),
            "limit" => {
                limit = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| ApiError::invalid("limit", "must be a whole number"))?,
                )
            }
            "knowledge_id" => kb_ids.push(
                value
                    .parse::<KbId>()
                    .map_err(|_| ApiError::invalid("knowledge_id", "must be a knowledge base id"))?,
            ),
            _ => {}
        }
    }
    let q = q.ok_or_else(|| ApiError::invalid("q", "is required"))?;
    let results = search::search(&state, &user, &q, &kb_ids, limit).await?;
    Ok(Json(SearchResponse { results }))
}

#[derive(Serialize, ToSchema)]
pub struct RetrieveResponse {
    pub passages: Vec<Passage>,
}

/// Passages for retrieval-augmented generation: whole chunks, best first
#[utoipa::path(get, path = "/retrieve", tag = "search",
    security(("session_token" = []), ("api_key" = []), ("session_cookie" = [])),
    description = "Whole chunks of the documents the caller may read, best first, optionally with neighbouring chunks.",
    params(("q" = String, Query, description = "The words to search for"),
        ("top_k" = Option<u32>, Query, description = "Most passages to answer"),
        ("neighbours" = Option<u32>, Query, description = "Preceding and following chunks to add to each passage"),
        ("knowledge_id" = Option<Vec<uuid::Uuid>>, Query, explode, description = "Limit the search to these knowledge bases (repeat the parameter); default: every readable one")),
    responses(
        (status = 200, description = "The passages, best first", body = RetrieveResponse),
        (status = 401, description = "No valid session token, API key or (on GET) session cookie", body = ErrorBody),
        (status = 422, description = "No `q`, or a malformed number or `knowledge_id`", body = ErrorBody),
    ))]
// `q`, `top_k`, `neighbours` and any number of `knowledge_id` parameters (parsed by hand, like
// search's).
pub async fn retrieve_route(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<RetrieveResponse>> {
    let mut q = None;
    let mut top_k = None;
    let mut neighbours = None;
    let mut kb_ids = Vec::new();
    let whole = |field: &'static str, value: &str| {
        value
            .parse::<u32>()
            .map_err(|_| ApiError::invalid(field, "must be a whole number"))
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "q" => q = Some(value.into_owned()),
            "top_k" => top_k = Some(whole("top_k", &value)?),
            "neighbours" => neighbours = Some(whole("neighbours", &value)?),
            "knowledge_id" => kb_ids.push(
                value
                    .parse::<KbId>()
                    .map_err(|_| ApiError::invalid("knowledge_id", "must be a knowledge base id"))?,
            ),
            _ => {}
        }
    }
    let q = q.ok_or_else(|| ApiError::invalid("q", "is required"))?;
    let passages = search::retrieve(&state, &user, &q, &kb_ids, top_k, neighbours).await?;
    Ok(Json(RetrieveResponse { passages }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_quotes_safely_and_keeps_the_exact_name_encoded() {
        let d = content_disposition("Übergabe \"final\".pdf");
        assert!(
            d.starts_with("attachment; filename=\"_bergabe _final_.pdf\""),
            "{d}"
        );
        assert!(
            d.ends_with("filename*=UTF-8''%C3%9Cbergabe%20%22final%22.pdf"),
            "{d}"
        );
    }
}
