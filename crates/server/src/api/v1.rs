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

use super::{
    extract::{ApiJson, ApiPath, ApiQuery},
    multipart::FormFields,
};
use crate::{
    AppState,
    auth::{ClientAddress, CurrentUser},
    error::{ApiError, ApiResult},
    service::{self, documents, knowledge, knowledge::KbView, search, users},
};

// --- wire types --------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct UserDto {
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

#[derive(Serialize)]
pub struct KnowledgeDto {
    pub id: KbId,
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kb_type: kbsync_core::KbType,
    pub owner_id: UserId,
    pub sync_status: kbsync_core::SyncStatus,
    /// What the caller may do: `documents` (read only the documents whose permissions at the
    /// source name them), `read`, `write` or `manage`.
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

#[derive(Serialize)]
pub struct FileDto {
    pub id: DocumentId,
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

#[derive(Serialize)]
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

#[derive(Deserialize)]
pub struct PageParams {
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

// --- auth and users ----------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize)]
pub struct LoginResponse {
    pub token: String,
    pub user: UserDto,
}

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

pub async fn logout(State(state): State<AppState>, token: crate::auth::BearerToken) -> ApiResult<StatusCode> {
    users::logout(&state, &token.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(CurrentUser(user): CurrentUser) -> Json<UserDto> {
    Json(user.into())
}

#[derive(Deserialize)]
pub struct CreateUserRequest {
    pub email: String,
    pub password: String,
    pub role: Option<String>,
}

pub async fn create_user(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
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

#[derive(Deserialize)]
pub struct CreateKnowledgeRequest {
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kb_type: Option<String>,
}

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

pub async fn list_knowledge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> ApiResult<Json<ListDto<KnowledgeDto>>> {
    let page = service::page(params.limit, params.offset)?;
    let found = knowledge::list(&state, &user, page).await?;
    Ok(Json(ListDto::of(page, found)))
}

pub async fn get_knowledge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<Json<KnowledgeDto>> {
    Ok(Json(knowledge::visible(&state, &user, id).await?.into()))
}

#[derive(Deserialize)]
pub struct PatchKnowledgeRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Absent: unchanged; `null`: the server's default; a number: this knowledge base's own.
    #[serde(default, deserialize_with = "present")]
    pub sync_interval_minutes: Option<Option<u32>>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`, via `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

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

pub async fn delete_knowledge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<KbId>,
) -> ApiResult<StatusCode> {
    knowledge::delete(&state, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize)]
pub struct AccessDto {
    #[serde(default)]
    pub read: Vec<UserId>,
    #[serde(default)]
    pub write: Vec<UserId>,
}

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

#[derive(Serialize)]
pub struct UploadAccepted {
    pub id: DocumentId,
    pub name: String,
    pub status: DocumentStatus,
}

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

pub async fn get_file(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath((kb_id, id)): ApiPath<(KbId, DocumentId)>,
) -> ApiResult<Json<FileDto>> {
    Ok(Json(documents::get(&state, &user, kb_id, id).await?.into()))
}

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

#[derive(Serialize)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
}

/// `q`, `limit` and any number of `knowledge_id` parameters; parsed by hand because the
/// repeated key does not fit a struct.
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

#[derive(Serialize)]
pub struct RetrieveResponse {
    pub passages: Vec<Passage>,
}

/// `q`, `top_k`, `neighbours` and any number of `knowledge_id` parameters (parsed by hand, like
/// search's).
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
