//! The nouns of kbsync: users, knowledge bases, access grants, documents and
//! search hits; and, in their own modules, connections, sources, sync runs and sync state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod connection;
mod source;
mod sync_run;
mod sync_state;

pub use connection::{Connection, ConnectionCredentials, Encrypted, RefreshLease, StoredAccessToken};
pub use publication::{
    LeftOutReader, Publication, PublicationCounts, PublicationStatus, PublishFailure, PublishOutcome,
    PublishRun,
};
pub use source::{SavedRound, Source, SourceKind};
pub use sync_run::{SyncFailure, SyncPhase, SyncPhaseTimes, SyncRun, SyncRunOutcome, SyncTrigger};
pub use sync_state::{SyncProgress, SyncState};

pub type UserId = Uuid;
pub type KbId = Uuid;
pub type DocumentId = Uuid;

/// A value that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of: {expected}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Declares a string-backed enum whose database, JSON and display spellings are one and the same.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        // By hand rather than derived: the derive does not see `serde(rename)` through the macro
        // and would document the variants' Rust names; the spellings come from `as_str`.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($name::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

// After the macro: the module declares string enums of its own.
mod publication;

string_enum!(
    /// What a user may do across the whole instance.
    Role, "role", { Admin => "admin", User => "user" }
);

string_enum!(
    /// Whom an account stands for: a person (signs in with a password or through an OpenID provider), or
    /// a program an administrator set up (a service account: it never signs in, it only holds API keys
    /// and knowledge-base grants).
    UserKind, "account kind", { Person => "person", Service => "service" }
);

string_enum!(
    /// What an API key may do: `read` opens only the safe methods (GET and HEAD: search, lists,
    /// content); `write` everything its user may do, except managing credentials.
    ApiKeyScope, "API key scope", { Read => "read", Write => "write" }
);

string_enum!(
    /// Where a knowledge base's documents come from: uploads, or a datasource that kbsync syncs.
    KbType, "knowledge base type", { Local => "local", OneDrive => "onedrive", GDrive => "gdrive" }
);

string_enum!(
    /// A knowledge base's sync status.
    SyncStatus, "sync status", {
        Idle => "idle",
        Syncing => "syncing",
        Completed => "completed",
        CompletedWithErrors => "completed_with_errors",
        Failed => "failed",
        Cancelled => "cancelled",
        AccessRevoked => "access_revoked",
        FileLimitExceeded => "file_limit_exceeded",
        NeedsReauth => "needs_reauth",
    }
);

impl SyncStatus {
    /// The statuses a run ends with when it failed: it brought in nothing it was meant to, or
    /// stopped before the end for a reason its owner must look at. A run that completed with
    /// errors or was cancelled did not fail.
    pub const FAILURES: [SyncStatus; 4] = [
        SyncStatus::Failed,
        SyncStatus::AccessRevoked,
        SyncStatus::FileLimitExceeded,
        SyncStatus::NeedsReauth,
    ];

    /// Whether a run that ended with this status failed (one of [`SyncStatus::FAILURES`]).
    pub fn is_failure(self) -> bool {
        Self::FAILURES.contains(&self)
    }
}

string_enum!(
    /// What a grant lets its user do with a knowledge base.
    Permission, "permission", { Read => "read", Write => "write" }
);

string_enum!(
    /// Who made a grant: a person (kept until a person removes it) or permission sync (follows the drive's sharing).
    GrantOrigin, "grant origin", { Manual => "manual", Sync => "sync" }
);

string_enum!(
    /// Where a document is in the ingestion pipeline. `quarantined`: extracting its content killed or
    /// timed out the text extractor twice; it is not tried again until its content changes (its error
    /// says why, see [`quarantine_reason`]).
    DocumentStatus, "document status", {
        Pending => "pending",
        Processed => "processed",
        Failed => "failed",
        Quarantined => "quarantined",
    }
);

/// The error of a quarantined document: `last` is why extraction failed the second time (the
/// extractor's own words, such as "text extraction took longer than the limit of 60 s").
pub fn quarantine_reason(last: &str) -> String {
    format!(
        "quarantined: the text extractor timed out or crashed on this file twice ({last}); \
         it is retried when the file changes"
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    /// The name an OpenID provider gives the person, refreshed at each sign-in; `None` for accounts made
    /// by hand.
    pub display_name: Option<String>,
    /// A disabled account keeps its data, but its sessions and keys open nothing.
    pub disabled: bool,
    /// A person, or a service account that holds only API keys.
    pub kind: UserKind,
    pub created_at: DateTime<Utc>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn is_service(&self) -> bool {
        self.kind == UserKind::Service
    }
}

/// An API key as kbsync keeps it: never the key itself (only its SHA-256, which is not part of this
/// type), but a short prefix of it so that its owner can tell keys apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Uuid,
    /// The account the key acts as (a person, or a service account).
    pub user_id: UserId,
    pub name: String,
    pub scope: ApiKeyScope,
    /// The key's first characters (`kbs_` and a few more), not enough to use it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// `None`: the key does not expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key last opened a request, to the minute; `None`: never used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key may name the user a tool server request is for (Open WebUI's forwarded
    /// `X-OpenWebUI-User-Email`); only a service account's key, set by an admin.
    pub trusted_user_assertion: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeBase {
    pub id: KbId,
    pub name: String,
    pub description: String,
    pub owner_id: UserId,
    #[serde(rename = "type")]
    pub kb_type: KbType,
    pub sync_status: SyncStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGrant {
    pub kb_id: KbId,
    pub user_id: UserId,
    pub permission: Permission,
    pub origin: GrantOrigin,
}

/// What one user may do with one knowledge base, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Not even its existence is revealed.
    None,
    /// Only the documents whose access lists (their permissions at the source) name the user:
    /// those are listed, read and searched; nothing else of the knowledge base is shown.
    Documents,
    /// List, read and search all its documents.
    Read,
    /// Also add and remove documents.
    Write,
    /// Everything, including changing, sharing and deleting the knowledge base (owner or admin).
    Manage,
}

impl Access {
    /// Resolves a user's access from ownership, role and the strongest grant the user holds.
    pub fn resolve(user: &User, kb: &KnowledgeBase, strongest_grant: Option<Permission>) -> Access {
        if user.is_admin() || kb.owner_id == user.id {
            return Access::Manage;
        }
        match strongest_grant {
            Some(Permission::Write) => Access::Write,
            Some(Permission::Read) => Access::Read,
            None => Access::None,
        }
    }

    /// Reads the whole knowledge base (every document, its sources and runs).
    pub fn can_read(self) -> bool {
        self >= Access::Read
    }

    /// Sees the knowledge base at all (at least some of its documents).
    pub fn can_see(self) -> bool {
        self >= Access::Documents
    }

    pub fn can_write(self) -> bool {
        self >= Access::Write
    }

    pub fn can_manage(self) -> bool {
        self >= Access::Manage
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub id: DocumentId,
    pub kb_id: KbId,
    pub name: String,
    /// Display path inside the knowledge base, `/` separated, ending with the name.
    pub path: String,
    pub mime: String,
    pub size: i64,
    /// SHA-256 of the original bytes, lowercase hex; also the blob's key.
    pub content_hash: String,
    /// The datasource's id for the item this document came from; `None` for uploads.
    pub source_item_id: Option<String>,
    pub web_url: Option<String>,
    pub status: DocumentStatus,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One ranked search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    #[schema(value_type = uuid::Uuid)]
    pub knowledge_id: KbId,
    #[schema(value_type = uuid::Uuid)]
    pub document_id: DocumentId,
    pub name: String,
    pub snippet: String,
    /// Higher is better; comparable only within one result list.
    pub score: f64,
    pub web_url: Option<String>,
}

/// One chunk of a document's extracted text, as it is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub text: String,
    /// Where the chunk lies in the document's normalised extracted text, in characters;
    /// `None` when not known (text indexed before offsets were recorded, or given directly).
    pub span: Option<CharSpan>,
}

/// A range of characters (Unicode scalar values, not bytes): `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharSpan {
    pub start: u64,
    pub end: u64,
}

impl From<String> for Chunk {
    fn from(text: String) -> Self {
        Chunk { text, span: None }
    }
}

impl From<&str> for Chunk {
    fn from(text: &str) -> Self {
        Chunk::from(text.to_owned())
    }
}

/// One ranked passage for retrieval: a whole chunk of a document, with where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Passage {
    #[schema(value_type = uuid::Uuid)]
    pub knowledge_id: KbId,
    #[schema(value_type = uuid::Uuid)]
    pub document_id: DocumentId,
    pub name: String,
    /// The document's path at its source (for uploads, the path it was given).
    pub path: String,
    pub web_url: Option<String>,
    /// Higher is better; comparable only within one result list.
    pub score: f64,
    /// The chunk's position in its document, from 0.
    pub chunk_index: u64,
    /// The chunk's full text.
    pub text: String,
    /// Character offset of the chunk in the document's normalised extracted text; `None` for
    /// chunks indexed before offsets were recorded.
    pub start: Option<u64>,
    /// Character offset just past the chunk's end (see `start`).
    pub end: Option<u64>,
    /// Up to the requested number of preceding chunks' text, in document order (only when
    /// neighbours were requested). Chunks overlap, so neighbours repeat a little of `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Vec<String>>,
    /// Up to the requested number of following chunks' text, in document order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> User {
        User {
            id: Uuid::new_v4(),
            email: "a@example.com".into(),
            role,
            display_name: None,
            disabled: false,
            kind: UserKind::Person,
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    fn kb(owner: UserId) -> KnowledgeBase {
        KnowledgeBase {
            id: Uuid::new_v4(),
            name: "kb".into(),
            description: String::new(),
            owner_id: owner,
            kb_type: KbType::Local,
            sync_status: SyncStatus::Idle,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn string_enums_round_trip_through_text_and_json() {
        for s in SyncStatus::ALL {
            assert_eq!(s.as_str().parse::<SyncStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        let err = "bogus".parse::<KbType>().unwrap_err();
        assert!(err.to_string().contains("local onedrive gdrive"), "{err}");
    }

    #[test]
    fn string_enums_document_their_json_spellings() {
        let schema = serde_json::to_value(<KbType as utoipa::PartialSchema>::schema()).unwrap();
        let json: Vec<serde_json::Value> = KbType::ALL
            .iter()
            .map(|t| serde_json::to_value(t).unwrap())
            .collect();
        assert_eq!(schema["enum"], serde_json::Value::Array(json), "{schema}");
        assert_eq!(schema["type"], "string");
        assert_eq!(<SyncStatus as utoipa::ToSchema>::name(), "SyncStatus");
    }

    #[test]
    fn access_comes_from_ownership_role_then_grants() {
        let owner = user(Role::User);
        let admin = user(Role::Admin);
        let other = user(Role::User);
        let k = kb(owner.id);
        assert_eq!(Access::resolve(&owner, &k, None), Access::Manage);
        assert_eq!(Access::resolve(&admin, &k, None), Access::Manage);
        assert_eq!(Access::resolve(&other, &k, None), Access::None);
        assert_eq!(Access::resolve(&other, &k, Some(Permission::Read)), Access::Read);
        let w = Access::resolve(&other, &k, Some(Permission::Write));
        assert!(w.can_read() && w.can_write() && !w.can_manage());
        assert!(!Access::None.can_read());
        assert!(Access::Documents.can_see() && !Access::Documents.can_read());
        assert!(!Access::None.can_see());
    }
}
