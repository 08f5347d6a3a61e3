//! The Google Drive datasource: the Drive API v3, as Google documents it (and as it behaves where
//! the documentation is silent).
//!
//! [`GoogleDrive`] implements [`Datasource`]; it is stateless, and the sync engine owns cursors,
//! retries across runs and persistence. Within one call the Drive client retries on its own (see
//! [`client`] for the policy and [`errors`] for what each answer means). Every request carries a
//! `fields` mask (a listing's always includes `nextPageToken`: without it Drive stops paging
//! silently), and every request addressed by a file id carries `supportsAllDrives=true` (without
//! it a shared drive's items are 404) — except `files.export`, which does not take it.
//!
//! # Drives and browse locations
//! A `drive_id` is the corpus a source's changes are read from: [`USER_DRIVE`] (`user`) for My
//! Drive and everything shared with the user (the user's change feed), or a shared drive's id
//! (that drive's feed, `driveId=…`). Item ids are Drive file ids; a shared drive's root folder has
//! the drive's id, and `root` names the root of My Drive (or, with a shared drive's `drive_id`,
//! of that drive).
//!
//! | `BrowseLocation` | lists |
//! |---|---|
//! | `{ drive_id: None, .. }` | My Drive (a drive, `user`), each shared drive (`drives.list`, all pages), and "Shared with me" (a site-like place, `shared-with-me`, to go into but not to pick) |
//! | `{ drive_id: Some("shared-with-me"), .. }` | the items shared with the user (`sharedWithMe`), under the `user` drive |
//! | `{ drive_id: Some(d), item_id: None }` | the root folder of My Drive (`user`) or of shared drive `d` |
//! | `{ drive_id: Some(d), item_id: Some(i) }` | folder `i`'s children (not trashed) |
//!
//! Rows are folders and files; Google types without readable bytes are left out, and a shortcut
//! shows as what it points to, under its own name, with its target's id (opening or picking it
//! opens or picks the target).
//!
//! # Changes
//! Drive has no folder-scoped change feed, so [`Datasource::changes`] builds one:
//! * **First round** (`cursor: None`): `changes.getStartPageToken` first (for a shared drive, with
//!   its `driveId`), so nothing that changes during the enumeration is missed; then the source
//!   folder's subtree breadth-first with `files.list` (`'<id>' in parents and trashed = false`),
//!   reporting the source folder itself as [`ItemKind::Root`]. Each call lists up to
//!   `max_listings_per_call` pages; the cursor carries the folders still to list (see
//!   [`cursor`]). When none is left the round is `Done` with the start token.
//! * **Later rounds**: one `changes.list` page per call (`includeRemoved`, `supportsAllDrives`,
//!   `includeItemsFromAllDrives`, `restrictToMyDrive=false`, `driveId` for shared drives).
//!   `nextPageToken` → `More`, `newStartPageToken` → `Done`. Each entry is the file's current
//!   state: `removed` or `trashed` → tombstone; otherwise the file is inside the source when its
//!   `parents` lead up to the source folder (ancestors looked up with `files.get`, cached within
//!   the call); inside → the item, outside → a tombstone (the engine ignores ids it does not
//!   know, and a file moved out must disappear). A folder change inside the source (created,
//!   renamed, moved in) also lists that folder's subtree, paged through the cursor like the first
//!   round: its children did not change, so the feed does not report them. A trashed folder's
//!   descendants need no entries: the engine forgets what no longer has a path to the source.
//! * The shared drive of a source removed, or the user no longer a member (`changeType: drive`,
//!   `removed`) → `NotFound`. A page token Drive refuses (400 `invalid` at `pageToken`; 410), or a
//!   cursor this datasource did not write → `CursorExpired { restart: None }`.
//!
//! # Content
//! A download is decided from the item as listed, so it costs one request: the listing already
//! carries the type, `md5Checksum` and `size`. Only an id Drive refuses to download or export as
//! having no content of its own ([`errors::NOT_CONTENT_REASONS`]: a shortcut) is read again
//! with `files.get` and followed.
//! * Binary files: `files.get?alt=media`, verified while streaming against the item's
//!   `md5Checksum` (hash algorithm [`MD5`]) and `size`; a mismatch ends the stream with
//!   `Transient`.
//! * Google Docs, Sheets and Slides: `files.export` to docx, xlsx and pptx (Office formats keep
//!   headings, tables and every sheet and slide; `text/csv` would keep only the first sheet).
//!   The item's `mime` is the export's type and its name gets the export's extension, so the
//!   extractor picks the matching parser. Exports have no checksum and no known length (Drive's
//!   `size` of an editor file is not the export's), so `size` is `None` and the hash is the
//!   file's `modifiedTime` (algorithm [`MODIFIED_TIME`]): it moves when the content is edited.
//!   `version` was not chosen: it is bumped by every change, renames and moves included, which
//!   would re-export a file that was only moved. Exports over Drive's 10 MB limit fail with
//!   `Permanent` (`exportSizeLimitExceeded`).
//! * Other Google types (forms, sites, maps, drawings, Jamboards, Apps Script, …) are left out of
//!   listings and feeds: they have no bytes kbsync can read.
//! * Shortcuts are followed once: a shortcut to a file is reported under the shortcut's id,
//!   name and folder with its target's type, size and hash, and its download fetches the target
//!   (after the refused attempt on the shortcut's id and a `files.get` of it).
//!   A shortcut to a folder is **not** followed (it could lead back into the source, or duplicate
//!   a subtree the source already holds); neither is a shortcut to a shortcut. A shortcut's item
//!   changes when the shortcut does; an edit of its target outside the source is seen on the
//!   next first round only.
//!
//! # Permissions
//! [`Datasource::permissions`] reads `permissions.list` (all pages): `user` and `group` grants
//! name the account's email (and Drive's grantee id), `domain` grants are
//! `Link { scope: "organization" }` and `anyone` grants `Link { scope: "anonymous" }`; deleted
//! accounts are left out; grants `permissionDetails` marks inherited carry `inherited_from`.
//! Drive does not flag which items have grants of their own, so every folder is reported as one
//! (`ItemSharing::own`), and folders reported by the change feed as changed: files take their
//! folder's permissions. Drive's grants only add up towards the leaves, so a document is never
//! open to more people than its folder is; a file shared on its own is open to fewer in kbsync.
//! A reader without share rights gets 403 `insufficientFilePermissions`: that is `NotFound` with
//! the reason, and the engine then lets no one see those documents (connect an account that may
//! share the folder).
//!
//! Google groups cannot be expanded with `drive.readonly` (that needs the Cloud Identity or
//! Admin SDK groups API and its own scope): [`Datasource::group_members`] answers `NotFound`
//! with that reason.

pub mod client;
pub mod config;
pub mod cursor;
pub mod errors;
pub mod mapping;
mod md5hash;
pub mod model;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use kbsync_core::datasource::{
    BrowseEntry, BrowseLocation, ByteStream, ChangePage, Datasource, DatasourceError, DatasourceKind,
    GroupMember, ItemKind, NextPage, OAuthSpec, Principal, RemoteItem, RemotePermission, SourceRef,
    TokenSource,
};
use kbsync_core::{Clock, OsRandom, Random, SystemClock};
use serde::de::DeserializeOwned;
use tracing::{instrument, warn};

pub use config::{
    DEFAULT_API_URL, DEFAULT_AUTHORIZE_URL, DEFAULT_TOKEN_URL, DRIVE_READONLY_SCOPE, GDriveConfig,
    google_oauth,
};
pub use kbsync_core::retry::{Sleeper, TokioSleeper};
pub use mapping::{MD5, MODIFIED_TIME, SHARED_WITH_ME, USER_DRIVE};

use client::DriveClient;
use cursor::Cursor;
use kbsync_http::{Expected, verified_stream};
use mapping::Content;
use md5hash::Md5Hash;
use model::{ChangeList, DriveList, FILE_FIELDS, File, FileList, PermissionList, StartPageToken};

/// Upper bound on pages followed in one listing, against a service that never stops paging.
const MAX_PAGES: usize = 100_000;
/// Deepest folder nesting walked up when deciding whether a changed file is inside the source.
const MAX_DEPTH: usize = 256;
/// `drives.list` and `permissions.list` accept at most 100 per page.
const MAX_SMALL_PAGE: u32 = 100;
/// The fields of a permission the mapping reads.
const PERMISSION_FIELDS: &str = "nextPageToken,permissions(id,type,role,emailAddress,domain,displayName,allowFileDiscovery,deleted,permissionDetails)";
/// What the ancestor walk reads of a folder.
const PARENT_FIELDS: &str = "id,parents,trashed";

/// The Google Drive datasource.
pub struct GoogleDrive {
    client: DriveClient,
    oauth: OAuthSpec,
}

impl std::fmt::Debug for GoogleDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleDrive")
            .field("config", &self.client.config)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

/// What one `changes` call may do, and what it learned of folders' parents.
struct Walker<'a> {
    tokens: &'a dyn TokenSource,
    drive_id: &'a str,
    /// id → its parent (`None`: no parent, gone, trashed or unreadable: not under the source).
    parents: HashMap<String, Option<String>>,
    /// Shortcut targets read in this call.
    targets: HashMap<String, Option<File>>,
}

impl GoogleDrive {
    /// `http` must not follow redirects and must not carry a default `Authorization` header:
    /// build it with [`GDriveConfig::http_client`]. Jitter comes from the OS generator and "now"
    /// from the system clock unless replaced with [`GoogleDrive::with_random`] and
    /// [`GoogleDrive::with_clock`].
    pub fn new(
        config: GDriveConfig,
        oauth: OAuthSpec,
        http: reqwest::Client,
        sleeper: Arc<dyn Sleeper>,
    ) -> Self {
        Self {
            client: DriveClient::new(http, config, sleeper, Arc::new(OsRandom), Arc::new(SystemClock)),
            oauth,
        }
    }

    /// The source of retry jitter.
    pub fn with_random(mut self, random: Arc<dyn Random>) -> Self {
        self.client.random = random;
        self
    }

    /// "Now", for the throttle gate and an HTTP-date `Retry-After`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.client.clock = clock;
        self
    }

    pub fn config(&self) -> &GDriveConfig {
        &self.client.config
    }

    fn page_size(&self) -> String {
        self.client.config.page_size.clamp(1, 1000).to_string()
    }

    /// Every page of a listing: `query` plus `pageToken`, each page's items taken by `take`.
    async fn all_pages<P: DeserializeOwned, T>(
        &self,
        tokens: &dyn TokenSource,
        segments: &[&str],
        query: &[(&str, &str)],
        take: impl Fn(P) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, DatasourceError> {
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = query.to_vec();
            if let Some(t) = &page_token {
                q.push(("pageToken", t));
            }
            let url = self.client.url(segments, &q)?;
            let page: P = self.client.get_json(tokens, &url).await?;
            let (items, next) = take(page);
            out.extend(items);
            match next.filter(|t| !t.is_empty()) {
                Some(next) => page_token = Some(next),
                None => return Ok(out),
            }
        }
        Err(DatasourceError::Permanent(format!(
            "{} kept paging beyond {MAX_PAGES} pages",
            segments.join("/")
        )))
    }

    /// One page of a folder's children (not trashed).
    async fn children_page(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        folder: &str,
        page_token: Option<&str>,
    ) -> Result<FileList, DatasourceError> {
        let q = format!("'{}' in parents and trashed = false", escape(folder));
        let fields = format!("nextPageToken,files({FILE_FIELDS})");
        let page_size = self.page_size();
        let mut query = vec![
            ("q", q.as_str()),
            ("fields", fields.as_str()),
            ("pageSize", page_size.as_str()),
            ("supportsAllDrives", "true"),
            ("includeItemsFromAllDrives", "true"),
        ];
        if let Some(d) = shared_drive(drive_id) {
            query.push(("corpora", "drive"));
            query.push(("driveId", d));
        }
        if let Some(t) = page_token {
            query.push(("pageToken", t));
        }
        let url = self.client.url(&["files"], &query)?;
        self.client.get_json(tokens, &url).await
    }

    /// Every child of a folder (all pages), or of "Shared with me".
    async fn list_all(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        q: &str,
    ) -> Result<Vec<File>, DatasourceError> {
        let fields = format!("nextPageToken,files({FILE_FIELDS})");
        let page_size = self.page_size();
        let mut query = vec![
            ("q", q),
            ("fields", fields.as_str()),
            ("pageSize", page_size.as_str()),
            ("supportsAllDrives", "true"),
            ("includeItemsFromAllDrives", "true"),
        ];
        if let Some(d) = shared_drive(drive_id) {
            query.push(("corpora", "drive"));
            query.push(("driveId", d));
        }
        self.all_pages(tokens, &["files"], &query, |p: FileList| {
            (p.files, p.next_page_token)
        })
        .await
    }

    /// `files.get` with `fields`.
    async fn get_file(
        &self,
        tokens: &dyn TokenSource,
        id: &str,
        fields: &str,
    ) -> Result<File, DatasourceError> {
        let url = self.client.url(
            &["files", id],
            &[("fields", fields), ("supportsAllDrives", "true")],
        )?;
        self.client.get_json(tokens, &url).await
    }

    async fn top_level(&self, tokens: &dyn TokenSource) -> Result<Vec<BrowseEntry>, DatasourceError> {
        let page_size = MAX_SMALL_PAGE.to_string();
        let drives = self
            .all_pages(
                tokens,
                &["drives"],
                &[
                    ("pageSize", page_size.as_str()),
                    ("fields", "nextPageToken,drives(id,name,createdTime)"),
                ],
                |p: DriveList| (p.drives, p.next_page_token),
            )
            .await;
        let drives = match drives {
            Ok(d) => d,
            // Shared drives are optional (a consumer account may be refused the listing).
            Err(e @ (DatasourceError::NotFound(_) | DatasourceError::Permanent(_))) => {
                warn!(error = %e, "browse: leaving out shared drives");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let mut shared: Vec<BrowseEntry> = drives.iter().map(mapping::drive_entry).collect();
        mapping::sort_entries(&mut shared);
        let mut entries = vec![mapping::my_drive_entry()];
        entries.extend(shared);
        entries.push(mapping::shared_with_me_entry());
        Ok(entries)
    }

    /// The id `root` stands for in `drive_id`: My Drive's `root` alias, or the shared drive's id.
    fn real_id<'a>(drive_id: &'a str, item_id: &'a str) -> &'a str {
        match (item_id, shared_drive(drive_id)) {
            ("root", Some(drive)) => drive,
            _ => item_id,
        }
    }

    /// A shortcut's target (read once per call); `None` when it cannot be read.
    async fn target(&self, w: &mut Walker<'_>, shortcut: &File) -> Result<Option<File>, DatasourceError> {
        let Some(target_id) = shortcut
            .shortcut_details
            .as_ref()
            .and_then(|d| d.target_id.clone())
        else {
            return Ok(None);
        };
        if let Some(t) = w.targets.get(&target_id) {
            return Ok(t.clone());
        }
        let target = match self.get_file(w.tokens, &target_id, FILE_FIELDS).await {
            Ok(t) => Some(t),
            Err(DatasourceError::NotFound(why)) => {
                warn!(
                    reason = why,
                    "a shortcut's target cannot be read: leaving the shortcut out"
                );
                None
            }
            Err(e) => return Err(e),
        };
        w.targets.insert(target_id, target.clone());
        Ok(target)
    }

    /// A listed or changed file as an item, shortcuts followed once; `None` for what kbsync does
    /// not sync.
    async fn item_of(
        &self,
        w: &mut Walker<'_>,
        file: &File,
        scope: Option<&str>,
    ) -> Result<Option<RemoteItem>, DatasourceError> {
        if file.is_shortcut() && !file.trashed {
            let Some(target) = self.target(w, file).await? else {
                return Ok(None);
            };
            return Ok(mapping::shortcut_item(file, &target, w.drive_id));
        }
        Ok(mapping::remote_item(file, w.drive_id, scope))
    }

    /// Lists folders of `cursor.walk` (one page each, at most `max_listings_per_call`), adding
    /// their items to `items` and their subfolders to the walk.
    async fn walk(
        &self,
        w: &mut Walker<'_>,
        cursor: &mut Cursor,
        items: &mut Vec<RemoteItem>,
    ) -> Result<(), DatasourceError> {
        let max_listings = self.client.config.max_listings_per_call.max(1);
        let enough = self.client.config.page_size.max(1) as usize;
        let mut listings = 0;
        while let Some(folder) = cursor.walk.first().cloned() {
            if listings >= max_listings || items.len() >= enough {
                break;
            }
            listings += 1;
            let page = match self
                .children_page(w.tokens, w.drive_id, &folder, cursor.page.as_deref())
                .await
            {
                Ok(p) => p,
                // A folder gone since it was queued: its removal comes through the feed.
                Err(DatasourceError::NotFound(why)) if folder != cursor.scope => {
                    warn!(reason = why, "a folder to list is gone");
                    FileList::default()
                }
                Err(e) => return Err(e),
            };
            for file in &page.files {
                if file.trashed {
                    continue;
                }
                w.parents.insert(file.id.clone(), file.parents.first().cloned());
                let Some(item) = self.item_of(w, file, Some(&cursor.scope)).await? else {
                    continue;
                };
                if item.kind == ItemKind::Folder && !cursor.walk.contains(&item.id) {
                    cursor.walk.push(item.id.clone());
                }
                items.push(item);
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => cursor.page = Some(next),
                None => {
                    cursor.page = None;
                    cursor.walk.remove(0);
                }
            }
        }
        Ok(())
    }

    /// Whether a file whose parent is `parent` lies under `scope`, walking up with `files.get`.
    async fn inside(
        &self,
        w: &mut Walker<'_>,
        parent: Option<&str>,
        scope: &str,
    ) -> Result<bool, DatasourceError> {
        let mut current = parent.map(str::to_string);
        for _ in 0..MAX_DEPTH {
            let Some(id) = current else {
                return Ok(false);
            };
            if id == scope {
                return Ok(true);
            }
            let next = match w.parents.get(&id) {
                Some(p) => p.clone(),
                None => {
                    let p = match self.get_file(w.tokens, &id, PARENT_FIELDS).await {
                        Ok(f) if !f.trashed => f.parents.first().cloned(),
                        Ok(_) => None,
                        Err(DatasourceError::NotFound(_)) => None,
                        Err(e) => return Err(e),
                    };
                    w.parents.insert(id.clone(), p.clone());
                    p
                }
            };
            current = next;
        }
        Ok(false)
    }

    /// A download decided from the file's metadata read again (`files.get`): a shortcut is
    /// followed once to its target; then `alt=media` or an export, by the type.
    async fn download_by_metadata(
        &self,
        tokens: &dyn TokenSource,
        item: &RemoteItem,
    ) -> Result<ByteStream, DatasourceError> {
        const FIELDS: &str = "id,mimeType,trashed,md5Checksum,size,shortcutDetails(targetId,targetMimeType)";
        let mut file = self.get_file(tokens, &item.id, FIELDS).await?;
        if file.is_shortcut() {
            // Followed once: the target's bytes.
            let target = file
                .shortcut_details
                .as_ref()
                .and_then(|d| d.target_id.clone())
                .ok_or_else(|| DatasourceError::NotFound(format!("shortcut {} has no target", item.id)))?;
            file = self.get_file(tokens, &target, FIELDS).await?;
        }
        let idle = self.client.config.download_idle_timeout;
        match mapping::content(file.mime()) {
            Content::Binary => {
                let url = self.client.url(
                    &["files", &file.id],
                    &[("alt", "media"), ("supportsAllDrives", "true")],
                )?;
                let md5 = item
                    .hash
                    .as_ref()
                    .filter(|h| h.algorithm == MD5)
                    .map(|h| h.value.clone())
                    .or(file.md5_checksum.clone());
                let expected = Expected {
                    hash: md5,
                    size: item.size.or(file.size).and_then(|s| u64::try_from(s).ok()),
                };
                let response = self.client.get_head(tokens, &url).await?;
                Ok(verified_stream(response, Md5Hash::default(), expected, idle))
            }
            Content::Export(export, _) => {
                let url = self
                    .client
                    .url(&["files", &file.id, "export"], &[("mimeType", export)])?;
                let response = self.client.get_head(tokens, &url).await?;
                // Exports have no checksum: only a stall or a cut is caught.
                Ok(verified_stream(
                    response,
                    Md5Hash::default(),
                    Expected::default(),
                    idle,
                ))
            }
            Content::Folder | Content::Shortcut | Content::Unsupported => Err(DatasourceError::Permanent(
                format!("{} has no content kbsync can read ({})", item.id, file.mime()),
            )),
        }
    }

    /// The first call of a first round: the start token, the source folder, and a walk from it.
    async fn first_cursor(
        &self,
        w: &mut Walker<'_>,
        source: &SourceRef,
        items: &mut Vec<RemoteItem>,
    ) -> Result<Cursor, DatasourceError> {
        let mut query = vec![("supportsAllDrives", "true"), ("fields", "startPageToken")];
        if let Some(d) = shared_drive(&source.drive_id) {
            query.push(("driveId", d));
        }
        let url = self.client.url(&["changes", "startPageToken"], &query)?;
        let start: StartPageToken = self.client.get_json(w.tokens, &url).await?;
        let scope = self
            .get_file(
                w.tokens,
                Self::real_id(&source.drive_id, &source.item_id),
                FILE_FIELDS,
            )
            .await?;
        if scope.trashed {
            return Err(DatasourceError::NotFound(format!(
                "the source folder {} is in the trash",
                scope.id
            )));
        }
        if !scope.is_folder() {
            return Err(DatasourceError::Permanent(format!(
                "the source {} is not a folder ({})",
                scope.id,
                scope.mime()
            )));
        }
        if let Some(mut root) = mapping::remote_item(&scope, w.drive_id, Some(&scope.id)) {
            root.kind = ItemKind::Root;
            items.push(root);
        }
        Ok(Cursor {
            scope: scope.id.clone(),
            token: start.start_page_token,
            done: true,
            walk: vec![scope.id],
            page: None,
        })
    }

    /// One `changes.list` page applied to the source.
    async fn read_changes(
        &self,
        w: &mut Walker<'_>,
        cursor: &mut Cursor,
        items: &mut Vec<RemoteItem>,
    ) -> Result<(), DatasourceError> {
        let page_size = self.page_size();
        let fields = format!(
            "nextPageToken,newStartPageToken,changes(changeType,removed,fileId,driveId,file({FILE_FIELDS}))"
        );
        let mut query = vec![
            ("pageToken", cursor.token.as_str()),
            ("pageSize", page_size.as_str()),
            ("includeRemoved", "true"),
            ("supportsAllDrives", "true"),
            ("includeItemsFromAllDrives", "true"),
            ("restrictToMyDrive", "false"),
            ("fields", fields.as_str()),
        ];
        let drive = shared_drive(w.drive_id);
        if let Some(d) = drive {
            query.push(("driveId", d));
        }
        let url = self.client.url(&["changes"], &query)?;
        let list: ChangeList = self.client.get_json(w.tokens, &url).await?;
        // The page's own files are their current state: their parents are known.
        for c in &list.changes {
            if let Some(f) = c.file.as_ref().filter(|_| !c.removed) {
                let parent = if f.trashed {
                    None
                } else {
                    f.parents.first().cloned()
                };
                w.parents.insert(f.id.clone(), parent);
            }
        }
        for change in &list.changes {
            if change.change_type.as_deref() == Some("drive") {
                if change.removed && drive.is_some() && change.drive_id.as_deref() == drive {
                    return Err(DatasourceError::NotFound(format!(
                        "shared drive {} was removed, or the user is no longer a member",
                        w.drive_id
                    )));
                }
                continue;
            }
            let Some(id) = change
                .file_id
                .clone()
                .or_else(|| change.file.as_ref().map(|f| f.id.clone()))
            else {
                continue;
            };
            let file = match &change.file {
                Some(f) if !change.removed && !f.trashed => f,
                _ => {
                    items.push(mapping::tombstone(&id, w.drive_id));
                    continue;
                }
            };
            let inside = file.id == cursor.scope
                || self
                    .inside(w, file.parents.first().map(String::as_str), &cursor.scope)
                    .await?;
            if !inside {
                items.push(mapping::tombstone(&id, w.drive_id));
                continue;
            }
            match self.item_of(w, file, Some(&cursor.scope)).await? {
                Some(mut item) => {
                    if item.kind == ItemKind::Root && file.id != cursor.scope {
                        item.kind = ItemKind::Folder;
                    }
                    if matches!(item.kind, ItemKind::Folder | ItemKind::Root) {
                        // Its sharing may be what changed: the feed does not say.
                        item.sharing.changed = true;
                    }
                    if item.kind == ItemKind::Folder && !cursor.walk.contains(&item.id) {
                        cursor.walk.push(item.id.clone());
                    }
                    items.push(item);
                }
                // Now something kbsync does not sync (e.g. a shortcut whose target is gone).
                None => items.push(mapping::tombstone(&id, w.drive_id)),
            }
        }
        match (list.next_page_token, list.new_start_page_token) {
            (Some(next), _) if !next.is_empty() => {
                cursor.token = next;
                cursor.done = false;
            }
            (_, Some(start)) => {
                cursor.token = start;
                cursor.done = true;
            }
            _ => {
                return Err(DatasourceError::Permanent(
                    "a changes page had neither nextPageToken nor newStartPageToken".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The shared drive a `drive_id` names; `None` for the user's corpus.
fn shared_drive(drive_id: &str) -> Option<&str> {
    (drive_id != USER_DRIVE && drive_id != SHARED_WITH_ME && !drive_id.is_empty()).then_some(drive_id)
}

/// A value inside single quotes of a Drive query.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

#[async_trait]
impl Datasource for GoogleDrive {
    fn kind(&self) -> DatasourceKind {
        DatasourceKind::GDrive
    }

    fn oauth(&self) -> &OAuthSpec {
        &self.oauth
    }

    #[instrument(skip_all, fields(drive.id = ?at.drive_id, item.id = ?at.item_id))]
    async fn browse(
        &self,
        tokens: &dyn TokenSource,
        at: &BrowseLocation,
    ) -> Result<Vec<BrowseEntry>, DatasourceError> {
        let Some(drive_id) = at.drive_id.as_deref() else {
            return self.top_level(tokens).await;
        };
        let (files, entry_drive) = if drive_id == SHARED_WITH_ME {
            (
                self.list_all(tokens, USER_DRIVE, "sharedWithMe and trashed = false")
                    .await?,
                USER_DRIVE,
            )
        } else {
            let folder = at.item_id.as_deref().unwrap_or("root");
            let folder = Self::real_id(drive_id, folder);
            let q = format!("'{}' in parents and trashed = false", escape(folder));
            (self.list_all(tokens, drive_id, &q).await?, drive_id)
        };
        let mut entries: Vec<BrowseEntry> = files
            .iter()
            .filter_map(|f| mapping::browse_entry(f, entry_drive))
            .collect();
        mapping::sort_entries(&mut entries);
        Ok(entries)
    }

    #[instrument(skip_all, fields(drive.id = %source.drive_id, item.id = %source.item_id, first = cursor.is_none()))]
    async fn changes(
        &self,
        tokens: &dyn TokenSource,
        source: &SourceRef,
        cursor: Option<&str>,
    ) -> Result<ChangePage, DatasourceError> {
        let mut w = Walker {
            tokens,
            drive_id: &source.drive_id,
            parents: HashMap::new(),
            targets: HashMap::new(),
        };
        let mut items = Vec::new();
        let mut cursor = match cursor {
            None => self.first_cursor(&mut w, source, &mut items).await?,
            Some(text) => {
                let c = Cursor::decode(text)?;
                if c.walk.is_empty() {
                    let mut c = c;
                    self.read_changes(&mut w, &mut c, &mut items).await?;
                    c
                } else {
                    c
                }
            }
        };
        self.walk(&mut w, &mut cursor, &mut items).await?;
        let text = cursor.encode()?;
        let next = if cursor.walk.is_empty() && cursor.done {
            NextPage::Done(text)
        } else {
            NextPage::More(text)
        };
        Ok(ChangePage { items, next })
    }

    #[instrument(skip_all, fields(drive.id = %drive_id, item.id = %item_id))]
    async fn item(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        item_id: &str,
    ) -> Result<RemoteItem, DatasourceError> {
        let file = self
            .get_file(tokens, Self::real_id(drive_id, item_id), FILE_FIELDS)
            .await?;
        let mut w = Walker {
            tokens,
            drive_id,
            parents: HashMap::new(),
            targets: HashMap::new(),
        };
        self.item_of(&mut w, &file, None).await?.ok_or_else(|| {
            DatasourceError::Permanent(format!(
                "{} is not something kbsync can sync ({})",
                file.id,
                file.mime()
            ))
        })
    }

    #[instrument(skip_all, fields(drive.id = %item.drive_id, item.id = %item.id))]
    async fn download(
        &self,
        tokens: &dyn TokenSource,
        item: &RemoteItem,
    ) -> Result<ByteStream, DatasourceError> {
        if item.kind != ItemKind::File || item.deleted {
            return Err(DatasourceError::Permanent(format!(
                "item {} is not a file that can be downloaded",
                item.id
            )));
        }
        // Decided from the listed item: a binary file is downloaded and a Docs Editors file
        // exported at once, one request each. An id without content of its own (a shortcut:
        // Drive refuses to download or export it) is read again and followed.
        let idle = self.client.config.download_idle_timeout;
        let hash = item.hash.as_ref();
        if let Some(md5) = hash.filter(|h| h.algorithm == MD5) {
            let url = self.client.url(
                &["files", &item.id],
                &[("alt", "media"), ("supportsAllDrives", "true")],
            )?;
            let expected = Expected {
                hash: Some(md5.value.clone()),
                size: item.size.and_then(|s| u64::try_from(s).ok()),
            };
            if let Some(response) = self
                .client
                .get_head_unless(tokens, &url, errors::NOT_CONTENT_REASONS)
                .await?
            {
                return Ok(verified_stream(response, Md5Hash::default(), expected, idle));
            }
        } else if let Some(export) = item
            .mime
            .as_deref()
            .filter(|_| hash.is_some_and(|h| h.algorithm == MODIFIED_TIME))
            .and_then(|mime| mapping::EXPORTS.iter().find(|(_, export, _)| *export == mime))
            .map(|(_, export, _)| *export)
        {
            let url = self
                .client
                .url(&["files", &item.id, "export"], &[("mimeType", export)])?;
            if let Some(response) = self
                .client
                .get_head_unless(tokens, &url, errors::NOT_CONTENT_REASONS)
                .await?
            {
                // Exports have no checksum: only a stall or a cut is caught.
                return Ok(verified_stream(
                    response,
                    Md5Hash::default(),
                    Expected::default(),
                    idle,
                ));
            }
        }
        self.download_by_metadata(tokens, item).await
    }

    #[instrument(skip_all, fields(drive.id = %drive_id, item.id = %item_id))]
    async fn permissions(
        &self,
        tokens: &dyn TokenSource,
        drive_id: &str,
        item_id: &str,
    ) -> Result<Vec<RemotePermission>, DatasourceError> {
        let id = Self::real_id(drive_id, item_id);
        let page_size = MAX_SMALL_PAGE.to_string();
        let permissions = self
            .all_pages(
                tokens,
                &["files", id, "permissions"],
                &[
                    ("supportsAllDrives", "true"),
                    ("pageSize", page_size.as_str()),
                    ("fields", PERMISSION_FIELDS),
                ],
                |p: PermissionList| (p.permissions, p.next_page_token),
            )
            .await
            .map_err(|e| match e {
                DatasourceError::NotFound(why) => DatasourceError::NotFound(format!(
                    "the sharing of {id} cannot be read with this connection (reading it needs share rights): {why}"
                )),
                e => e,
            })?;
        Ok(permissions
            .iter()
            .filter_map(mapping::remote_permission)
            .collect())
    }

    #[instrument(skip_all)]
    async fn group_members(
        &self,
        _tokens: &dyn TokenSource,
        group: &Principal,
    ) -> Result<Vec<GroupMember>, DatasourceError> {
        match group {
            Principal::Group { email, .. } => Err(DatasourceError::NotFound(format!(
                "the members of Google group {} cannot be read with drive.readonly (that needs the \
                 Cloud Identity groups API and its own scope)",
                email.as_deref().unwrap_or("(no email)")
            ))),
            Principal::SiteGroup { .. } | Principal::User { .. } | Principal::Link { .. } => Err(
                DatasourceError::Permanent(format!("{group:?} is not a Google group")),
            ),
        }
    }
}
