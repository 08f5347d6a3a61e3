//! Publishes kbsync knowledge bases into Open WebUI 0.12.
//!
//! [`OpenWebUiClient`] talks to one Open WebUI deployment with an admin's API key: it creates and
//! reads knowledge bases, looks users up by email, replaces a knowledge base's access grants, and
//! [`publish`](OpenWebUiClient::publish)es a set of files into a knowledge base with Open WebUI's own
//! sync protocol (`/sync/diff`, `/dirs/create`, `POST /files/` with the knowledge base in its
//! metadata, `/files/{id}/process/status`, `/sync/cleanup`). See [`publish`] for why it converges
//! when it is interrupted and run again.
//!
//! Open WebUI grants are per knowledge base, never per file: the caller decides who may read the
//! whole knowledge base and hands that to [`OpenWebUiClient::set_access`], which only ever grants
//! `read` to users (never `anyone`, never groups).

pub mod client;
pub mod config;
pub mod errors;
pub(crate) mod model;
pub mod publish;

use async_trait::async_trait;
use bytes::Bytes;

pub use client::OpenWebUiClient;
pub use config::OpenWebUiConfig;
pub use errors::OpenWebUiError;

/// A knowledge base in Open WebUI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knowledge {
    pub id: String,
    pub name: String,
}

/// Read permission on a knowledge base for one Open WebUI user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessGrant {
    /// The Open WebUI user id (see [`OpenWebUiClient::users_by_email`]).
    pub user_id: String,
}

/// A grant as Open WebUI stores it (read back for verification and the UI).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KnowledgeGrant {
    /// `user`, `group` or `anyone`.
    pub principal_type: String,
    /// A user id, a group id, or `*`.
    pub principal_id: String,
    /// `read` or `write`.
    pub permission: String,
}

/// One file the knowledge base must hold after a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// The caller's id for the file (a kbsync document id), handed back to [`FileContent::read`].
    pub key: String,
    /// The directory relative to the knowledge base's root: `""` for the root, segments joined by
    /// `/` (no leading, trailing or doubled `/`).
    pub path: String,
    /// The file's name (no `/`).
    pub filename: String,
    /// Lowercase hex SHA-256 of the raw bytes: Open WebUI's `meta.file_hash`, which its diff compares.
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
}

/// Where [`OpenWebUiClient::publish`] reads the bytes of the files it uploads.
#[async_trait]
pub trait FileContent: Send + Sync {
    /// The raw bytes of `file` (their SHA-256 must be `file.sha256`), or why they cannot be read; an
    /// error fails that file only.
    async fn read(&self, file: &ManifestFile) -> Result<Bytes, String>;
}

/// How far the uploads of a publish are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishProgress {
    /// Files whose upload finished, successfully or not.
    pub done: usize,
    /// Files to upload in this publish (added and modified ones).
    pub total: usize,
}

/// What a publish did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Files uploaded and processed by Open WebUI (new and changed ones).
    pub uploaded: usize,
    /// Files Open WebUI already held with the same content (or is still processing from an earlier
    /// publish).
    pub unchanged: usize,
    /// Files removed from the knowledge base: deleted ones, replaced versions, and duplicates left
    /// by an interrupted publish.
    pub removed: usize,
    pub directories_created: usize,
    pub directories_removed: usize,
    /// Files that could not be published this time; the next publish tries them again.
    pub failed: Vec<FailedFile>,
}

/// A file a publish could not bring into Open WebUI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedFile {
    pub path: String,
    pub filename: String,
    /// Open WebUI's own message where it gave one (processing error, refused upload), else kbsync's.
    pub error: String,
}

/// A file a knowledge base holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublishedFile {
    /// Open WebUI's file id.
    pub id: String,
    /// Its directory relative to the knowledge base's root (`""` for the root).
    pub path: String,
    pub filename: String,
    /// `meta.file_hash` (SHA-256 of the raw bytes), when Open WebUI recorded one.
    pub sha256: Option<String>,
}
