//! Open WebUI 0.12's wire types, as its routers declare them (`routers/knowledge.py`,
//! `routers/files.py`, `routers/users.py`, `models/*.py`). Unknown fields are ignored.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// `{"detail": …}`: FastAPI's error body; `detail` is a string, or a list for validation errors.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub detail: serde_json::Value,
}

/// `POST /knowledge/create`.
#[derive(Debug, Serialize)]
pub(crate) struct CreateKnowledgeForm<'a> {
    pub name: &'a str,
    pub description: &'a str,
}

/// A knowledge base (`KnowledgeModel` and its responses).
#[derive(Debug, Deserialize)]
pub(crate) struct KnowledgeWire {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub access_grants: Vec<GrantWire>,
}

/// One access grant (`AccessGrantModel`; the same three fields are sent to `/access/update`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GrantWire {
    pub principal_type: String,
    pub principal_id: String,
    pub permission: String,
}

/// `POST /knowledge/{id}/access/update`.
#[derive(Debug, Serialize)]
pub(crate) struct AccessUpdateForm {
    pub access_grants: Vec<GrantWire>,
}

/// `GET /users/all`: `UserInfoListResponse`.
#[derive(Debug, Deserialize)]
pub(crate) struct UserList {
    pub users: Vec<UserWire>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserWire {
    pub id: String,
    pub email: String,
}

/// One entry of `POST /knowledge/{id}/sync/diff`'s manifest (`FileManifestEntry`).
#[derive(Debug, Serialize)]
pub(crate) struct ManifestEntry<'a> {
    pub filename: &'a str,
    pub path: &'a str,
    pub checksum: &'a str,
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct SyncDiffForm<'a> {
    pub manifest: Vec<ManifestEntry<'a>>,
}

/// `SyncDiffResponse`.
#[derive(Debug, Deserialize)]
pub(crate) struct SyncDiff {
    pub added: Vec<DiffFile>,
    pub modified: Vec<ModifiedFile>,
    pub deleted: Vec<DeletedFile>,
    pub mkdir: Vec<String>,
    pub rmdir: Vec<String>,
    pub unmodified_count: usize,
    pub directory_map: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DiffFile {
    pub filename: String,
    pub path: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ModifiedFile {
    pub filename: String,
    pub path: String,
    pub stale_file_id: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeletedFile {
    pub file_id: String,
}

/// `POST /knowledge/{id}/sync/cleanup` (`SyncCleanupForm`).
#[derive(Debug, Serialize)]
pub(crate) struct SyncCleanupForm {
    pub file_ids: Vec<String>,
    pub dir_ids: Vec<String>,
}

/// `POST /knowledge/{id}/dirs/create` (`KnowledgeDirectoryCreateForm`).
#[derive(Debug, Serialize)]
pub(crate) struct CreateDirectoryForm<'a> {
    pub name: &'a str,
    pub parent_id: Option<&'a str>,
}

/// `KnowledgeDirectoryModel`.
#[derive(Debug, Deserialize)]
pub(crate) struct DirectoryWire {
    pub id: String,
}

/// The `metadata` form field of `POST /files/`: links the upload to a knowledge base (and directory)
/// once it is processed (`process_uploaded_file`).
#[derive(Debug, Serialize)]
pub(crate) struct UploadMetadata<'a> {
    pub knowledge_id: &'a str,
    pub directory_id: Option<&'a str>,
}

/// `POST /files/`'s answer (`FileModelResponse` plus `status`), and `GET /files/{id}`.
#[derive(Debug, Deserialize)]
pub(crate) struct FileWire {
    pub id: String,
    #[serde(default)]
    pub data: Option<FileData>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileData {
    #[serde(default)]
    pub error: Option<String>,
}

/// `GET /files/{id}/process/status` (without `stream`).
#[derive(Debug, Deserialize)]
pub(crate) struct ProcessStatus {
    pub status: String,
}

/// `GET /knowledge/{id}/files`: `KnowledgeFileListResponse`.
#[derive(Debug, Deserialize)]
pub(crate) struct KnowledgeFilePage {
    pub items: Vec<KnowledgeFileWire>,
    pub total: usize,
}

/// `FileUserResponse`.
#[derive(Debug, Deserialize)]
pub(crate) struct KnowledgeFileWire {
    pub id: String,
    pub filename: String,
    #[serde(default)]
    pub directory_path: String,
    #[serde(default)]
    pub meta: Option<FileMetaWire>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FileMetaWire {
    #[serde(default)]
    pub file_hash: Option<String>,
}
