//! The datasource abstraction.
//!
//! A datasource is stateless: it answers questions about a remote drive (browse, changes since a
//! cursor, item metadata, download, permissions). The sync engine owns the loop, cursors,
//! retries and persistence. Every datasource is named in [`DatasourceKind`], a closed enum, so
//! the compiler lists every place a new one must be handled.

use std::{fmt, pin::Pin, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::KbType;

/// Every datasource kbsync knows. What the rest of kbsync needs to know of one (its name in
/// the API, the settings and the metrics; what people see) is its [`DatasourceInfo`] in the
/// registry below: outside the datasource's own crate, code asks [`DatasourceKind::info`]
/// rather than matching on the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum DatasourceKind {
    #[serde(rename = "onedrive")]
    OneDrive,
    #[serde(rename = "gdrive")]
    GDrive,
}

/// What kbsync names and shows of a datasource: one entry per [`DatasourceKind`].
#[derive(Debug, PartialEq, Eq)]
pub struct DatasourceInfo {
    pub kind: DatasourceKind,
    /// Its name in API paths and JSON, in metrics labels, as the type of its knowledge bases,
    /// and (upper-cased) in its settings: `KBSYNC_ONEDRIVE_CLIENT_ID`.
    pub name: &'static str,
    /// What people call it.
    pub display_name: &'static str,
    /// The choice offered when a knowledge base is created.
    pub kb_choice: &'static str,
    /// The top level of the picker (what browsing without a location lists).
    pub picker_root: &'static str,
    /// What the picker calls each kind of row, in the words of the datasource's users.
    pub entry_labels: EntryLabels,
    /// What a document's sharing at the source lets people read in kbsync (which grants count,
    /// which do not), in the words of the datasource's users: shown where a knowledge base's
    /// access is managed.
    pub sharing: &'static str,
    /// The last segment of its change-notification endpoint, `/api/v1/webhooks/{webhook}`, when
    /// it can notify changes (see [`Datasource::watch`]).
    pub webhook: Option<&'static str>,
}

/// What the picker calls the rows of each [`EntryKind`].
#[derive(Debug, PartialEq, Eq)]
pub struct EntryLabels {
    pub drive: &'static str,
    pub site: &'static str,
    pub folder: &'static str,
    pub file: &'static str,
}

impl EntryLabels {
    pub fn label(&self, kind: EntryKind) -> &'static str {
        match kind {
            EntryKind::Drive => self.drive,
            EntryKind::Site => self.site,
            EntryKind::Folder => self.folder,
            EntryKind::File => self.file,
        }
    }
}

/// OneDrive and SharePoint (Microsoft Graph), crate `kbsync-msgraph`.
const ONEDRIVE: DatasourceInfo = DatasourceInfo {
    kind: DatasourceKind::OneDrive,
    name: "onedrive",
    display_name: "OneDrive / SharePoint",
    kb_choice: "OneDrive / SharePoint folders, kept in sync",
    picker_root: "OneDrive and SharePoint",
    entry_labels: EntryLabels {
        drive: "drive",
        site: "site",
        folder: "folder",
        file: "file",
    },
    sharing: "Each synced document may also be read by the people, Microsoft 365 and security groups \
              and SharePoint site groups its OneDrive or SharePoint sharing names, as of the last sync. \
              A link open to the whole organisation or to anyone grants nothing unless an administrator \
              lets links grant access.",
    webhook: Some("msgraph"),
};

/// Google Drive (Drive API v3), crate `kbsync-gdrive`.
const GDRIVE: DatasourceInfo = DatasourceInfo {
    kind: DatasourceKind::GDrive,
    name: "gdrive",
    display_name: "Google Drive",
    kb_choice: "Google Drive folders, kept in sync",
    picker_root: "Google Drive",
    entry_labels: EntryLabels {
        drive: "drive",
        site: "view",
        folder: "folder",
        file: "file",
    },
    sharing: "Each synced document may also be read by the people its Google Drive sharing names \
              (shared drive members included), as of the last sync. Google groups cannot be expanded \
              with read-only Drive access, so sharing with a group lets no one read through it. \
              Sharing with a whole domain, or with anyone who has the link, grants nothing unless an \
              administrator lets links grant access.",
    webhook: None,
};

impl DatasourceKind {
    pub const ALL: &'static [DatasourceKind] = &[DatasourceKind::OneDrive, DatasourceKind::GDrive];

    /// This datasource's entry in the registry.
    pub fn info(self) -> &'static DatasourceInfo {
        match self {
            DatasourceKind::OneDrive => &ONEDRIVE,
            DatasourceKind::GDrive => &GDRIVE,
        }
    }

    /// The datasource whose change-notification endpoint ends in `webhook`.
    pub fn from_webhook(webhook: &str) -> Option<DatasourceKind> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.info().webhook == Some(webhook))
    }

    /// The datasource an API path or a form names (its [`DatasourceInfo::name`]).
    pub fn from_name(name: &str) -> Option<DatasourceKind> {
        Self::ALL.iter().copied().find(|k| k.info().name == name)
    }

    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// The knowledge-base type whose documents this datasource provides.
    pub fn kb_type(self) -> KbType {
        match self {
            DatasourceKind::OneDrive => KbType::OneDrive,
            DatasourceKind::GDrive => KbType::GDrive,
        }
    }

    /// The datasource of a knowledge-base type; `None` for `local`.
    pub fn of(kb_type: KbType) -> Option<DatasourceKind> {
        match kb_type {
            KbType::Local => None,
            KbType::OneDrive => Some(DatasourceKind::OneDrive),
            KbType::GDrive => Some(DatasourceKind::GDrive),
        }
    }

    pub fn display_name(self) -> &'static str {
        self.info().display_name
    }
}

impl fmt::Display for DatasourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong, phrased as what the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasourceError {
    /// The credentials were refused even after a refresh: the user must sign in again.
    #[error("the datasource refused the credentials: {0}")]
    Unauthorized(String),
    /// Too many requests: wait at least `retry_after` before the next one.
    #[error("throttled by the datasource; retry after {retry_after:?}")]
    Throttled { retry_after: Duration },
    /// The change cursor is no longer valid: enumerate again from scratch (from `restart`, when
    /// the datasource named where to start) and remove what the enumeration no longer returns.
    #[error("the change cursor has expired; a full resync is needed")]
    CursorExpired { restart: Option<String> },
    /// The item does not exist, or the caller may no longer see it (404 or 403).
    #[error("not found or no longer accessible: {0}")]
    NotFound(String),
    /// A passing failure (timeout, connection reset, 5xx, a corrupted transfer): retry later.
    #[error("temporary datasource failure: {0}")]
    Transient(String),
    /// A failure that will not go away by retrying (a malformed answer, an unsupported item).
    #[error("datasource error: {0}")]
    Permanent(String),
}

/// A bearer access token. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The token itself, for an `Authorization` header and nothing else.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// Where a datasource gets its access tokens. The datasource asks once per request, and asks
/// for a refresh at most once when the remote answers 401.
#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn access_token(&self) -> Result<AccessToken, DatasourceError>;
    /// `rejected` was refused by the remote; return a different, fresh token, or
    /// `DatasourceError::Unauthorized` when none can be had.
    async fn refresh(&self, rejected: &AccessToken) -> Result<AccessToken, DatasourceError>;
    /// A token for another resource of the same service (e.g. SharePoint REST next to Graph,
    /// `resource` being its origin such as `https://contoso.sharepoint.com`). Sources that can only
    /// hold one token say so with `Permanent`.
    async fn access_token_for(&self, resource: &str) -> Result<AccessToken, DatasourceError> {
        Err(DatasourceError::Permanent(format!(
            "this connection cannot get a token for {resource}"
        )))
    }
}

/// A fixed token (one supplied by the browser for a single run); it cannot be refreshed.
#[derive(Debug, Clone)]
pub struct StaticToken(pub AccessToken);

#[async_trait]
impl TokenSource for StaticToken {
    async fn access_token(&self) -> Result<AccessToken, DatasourceError> {
        Ok(self.0.clone())
    }

    async fn refresh(&self, _rejected: &AccessToken) -> Result<AccessToken, DatasourceError> {
        Err(DatasourceError::Unauthorized(
            "the supplied access token was refused".into(),
        ))
    }
}

/// A place in the picker: the top level, a drive's root, or a folder.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrowseLocation {
    pub drive_id: Option<String>,
    pub item_id: Option<String>,
}

/// What a picker row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Drive,
    Site,
    Folder,
    File,
}

/// One row of the picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BrowseEntry {
    pub kind: EntryKind,
    pub id: String,
    pub drive_id: Option<String>,
    pub name: String,
    pub size: Option<i64>,
    pub child_count: Option<i64>,
    pub web_url: Option<String>,
    pub modified_at: Option<DateTime<Utc>>,
}

/// A picked folder or file that a knowledge base syncs from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub drive_id: String,
    pub item_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    File,
    Folder,
    /// The root of a drive (or of a delta scope).
    Root,
}

/// An item's content hash as the datasource reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentHash {
    /// e.g. `quickXorHash`.
    pub algorithm: String,
    pub value: String,
}

/// The latest state of one remote item, as a change feed or a lookup reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteItem {
    pub id: String,
    pub drive_id: String,
    pub kind: ItemKind,
    /// Absent on some deletions: track items by id.
    pub name: Option<String>,
    pub parent_id: Option<String>,
    pub size: Option<i64>,
    pub hash: Option<ContentHash>,
    pub mime: Option<String>,
    pub web_url: Option<String>,
    pub modified_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    /// What the change feed says of the item's sharing.
    #[serde(default)]
    pub sharing: ItemSharing,
}

/// What a change feed reports of an item's sharing, so that the engine reads permissions only
/// where they can differ from the parent's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSharing {
    /// The item is the root of a permission hierarchy: its permissions may differ from its
    /// parent's (Graph, with `Prefer: hierarchicalsharing`: the item carries a `shared` facet,
    /// possibly empty). An item without it has its parent's permissions.
    pub own: bool,
    /// The feed says the item's sharing changed since the cursor (Graph: the
    /// `@microsoft.graph.sharedChanged` annotation; business drives only, and files only in
    /// practice, so its absence proves nothing).
    pub changed: bool,
}

/// One page of changes since a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePage {
    pub items: Vec<RemoteItem>,
    pub next: NextPage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextPage {
    /// More pages belong to this round: ask again with this cursor.
    More(String),
    /// The round is complete: keep this cursor for the next round.
    Done(String),
}

/// Who a permission names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Principal {
    User {
        id: Option<String>,
        email: Option<String>,
        display_name: Option<String>,
    },
    /// A directory group (Entra security or Microsoft 365 group), by its directory id.
    Group {
        id: Option<String>,
        email: Option<String>,
        display_name: Option<String>,
    },
    /// A group that exists only inside one site (a SharePoint site group: Owners, Members,
    /// Visitors, …); its `id` is unique only within `site`. `site` is whatever the datasource needs
    /// to find the site again (Graph: the id of the drive whose permissions named the group).
    SiteGroup {
        site: String,
        id: String,
        display_name: Option<String>,
    },
    /// A sharing link: `anonymous` (anyone), `organization`, or `users` (specific people).
    Link { scope: String },
}

/// One sharing permission on an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotePermission {
    pub id: String,
    pub roles: Vec<String>,
    pub principals: Vec<Principal>,
    /// Set when the permission is inherited from an ancestor (not reported by every service).
    pub inherited_from: Option<String>,
}

/// A user a group expands to, as the datasource names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The user's stable id at the source (Graph: the Entra object id), when it is known.
    pub id: Option<String>,
    /// The addresses the user is known by at the source (mail, sign-in name), as reported.
    pub emails: Vec<String>,
}

/// A download as a stream of byte chunks; the datasource verifies the content hash and fails
/// the stream's last item with `Transient` when the bytes do not match.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, DatasourceError>> + Send>>;

/// The OAuth 2.0 authorization-code settings of a datasource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSpec {
    pub authorize_url: String,
    pub token_url: String,
    pub scopes: Vec<String>,
    /// Parameters the authorization server wants on the authorize URL besides the standard ones
    /// (Google: `access_type=offline` for a refresh token); empty for most.
    pub extra_authorize_params: Vec<(String, String)>,
}

/// What a datasource is asked to watch: a drive's changes delivered to kbsync's webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRequest {
    /// The drive whose changes are wanted (its whole tree).
    pub drive_id: String,
    /// Where the source posts change notifications.
    pub notification_url: String,
    /// Where the source posts lifecycle events (renewal needed, removal, missed changes).
    pub lifecycle_url: Option<String>,
    /// The secret every notification must carry back; kbsync keeps only its hash.
    pub client_state: String,
    /// When the watch should end (at most the datasource's [`Datasource::watch_lifetime`]).
    pub expires_at: DateTime<Utc>,
}

/// A watch the source created or renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The source's id of the watch (a Graph subscription id).
    pub id: String,
    /// When the source will end it unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// What a datasource without change notifications answers when asked to watch.
fn cannot_watch(kind: DatasourceKind) -> DatasourceError {
    DatasourceError::Permanent(format!("{} cannot notify changes", kind.display_name()))
}

/// What every datasource provides.
#[async_trait]
pub trait Datasource: Send + Sync + 'static {
    fn kind(&self) -> DatasourceKind;
    fn oauth(&self) -> &OAuthSpec;

    /// The picker: at the top level (`BrowseLocation::default()`) drives and sites, then folders
    /// and files.
    async fn browse(
        &self,
        tokens: &dyn TokenSource,
        at: &BrowseLocation,
    ) -> Result<Vec<BrowseEntry>, DatasourceError>;

    /// One page of changes of a folder's subtree since `cursor` (`None`: enumerate everything).
    async fn changes(
        &self,
        tokens: &dyn TokenSource,
        source: &SourceRef,
        cursor: Option<&str>,
    ) -> Result<ChangePage, DatasourceError>;

    /// An item's current metadata.
    async fn item(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        item_id: &str,
    ) -> Result<RemoteItem, DatasourceError>;

    /// The item's bytes, verified against `item.hash` when it has one.
    async fn download(
        &self,
        tokens: &dyn TokenSource,
        item: &RemoteItem,
    ) -> Result<ByteStream, DatasourceError>;

    /// Every sharing permission on an item (all pages).
    async fn permissions(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        item_id: &str,
    ) -> Result<Vec<RemotePermission>, DatasourceError>;

    /// Every user in a group (`Principal::Group` or `Principal::SiteGroup`), nested groups
    /// resolved, all pages read. `NotFound` when the group is gone or cannot be read with these
    /// credentials; `Permanent` for a principal that is not a group.
    async fn group_members(
        &self,
        tokens: &dyn TokenSource,
        group: &Principal,
    ) -> Result<Vec<GroupMember>, DatasourceError>;

    /// The longest a watch of a drive may live, when this datasource can notify kbsync of
    /// changes; `None` (the default) when it cannot, and its knowledge bases are only polled.
    fn watch_lifetime(&self) -> Option<chrono::Duration> {
        None
    }

    /// Asks the source to notify `request.notification_url` of every change of a drive. The
    /// source may call that URL (a validation handshake) before it answers.
    async fn watch(
        &self,
        _tokens: &dyn TokenSource,
        _request: &WatchRequest,
    ) -> Result<Watch, DatasourceError> {
        Err(cannot_watch(self.kind()))
    }

    /// Extends a watch to `expires_at`. `NotFound` when the source no longer has it (it must be
    /// created again).
    async fn renew_watch(
        &self,
        _tokens: &dyn TokenSource,
        _watch_id: &str,
        _expires_at: DateTime<Utc>,
    ) -> Result<Watch, DatasourceError> {
        Err(cannot_watch(self.kind()))
    }

    /// Ends a watch. `NotFound` when the source no longer has it.
    async fn unwatch(&self, _tokens: &dyn TokenSource, _watch_id: &str) -> Result<(), DatasourceError> {
        Err(cannot_watch(self.kind()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_never_print_their_value() {
        let t = AccessToken::new("eyJ-secret");
        assert_eq!(format!("{t:?}"), "AccessToken(***)");
        assert_eq!(t.secret(), "eyJ-secret");
    }

    #[test]
    fn every_datasource_maps_to_its_knowledge_base_type_and_back() {
        for kind in DatasourceKind::ALL {
            assert_eq!(DatasourceKind::of(kind.kb_type()), Some(*kind));
        }
        assert_eq!(DatasourceKind::of(KbType::Local), None);
    }

    #[test]
    fn every_datasource_has_one_registry_entry_whose_name_is_its_kb_type_and_parses_back() {
        for kind in DatasourceKind::ALL {
            let info = kind.info();
            assert_eq!(info.kind, *kind);
            assert_eq!(info.name, kind.kb_type().as_str());
            assert_eq!(DatasourceKind::from_name(info.name), Some(*kind));
            assert_eq!(
                serde_json::to_string(kind).ok(),
                Some(format!("\"{}\"", info.name))
            );
        }
        assert_eq!(DatasourceKind::from_name("local"), None);
        // What people see of every datasource is written out, not left for a page to guess.
        for kind in DatasourceKind::ALL {
            let info = kind.info();
            let labels = &info.entry_labels;
            for text in [
                info.display_name,
                info.kb_choice,
                info.picker_root,
                info.sharing,
                labels.drive,
                labels.site,
                labels.folder,
                labels.file,
            ] {
                assert!(!text.trim().is_empty(), "{kind}: an empty text");
            }
            assert_eq!(labels.label(EntryKind::Site), labels.site);
            assert!(info.sharing.ends_with('.'), "{kind}: {}", info.sharing);
        }
        assert_eq!(DatasourceKind::from_name("OneDrive"), None);
    }
}
