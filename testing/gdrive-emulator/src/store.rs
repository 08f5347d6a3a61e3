//! The in-memory state: users and groups, My Drives and shared drives, files with their content and direct
//! grants, the change log behind `changes.list`, and the OAuth clients, codes and tokens.
//!
//! Access is computed, never stored per file: a user sees a My Drive item they own or that is granted to them
//! (or to a group they are in) on the item or an ancestor, and a shared-drive item of a drive they are a member
//! of. The change log records, per file, who could see it before or after each mutation (its audience), so a
//! change renders as the file's current state for a user who still sees it and as `removed: true` for one who
//! lost it.

use crate::ids::{IdGen, derived_numeric};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const FOLDER: &str = "application/vnd.google-apps.folder";
pub const SHORTCUT: &str = "application/vnd.google-apps.shortcut";
pub const GOOGLE_DOC: &str = "application/vnd.google-apps.document";
pub const GOOGLE_SHEET: &str = "application/vnd.google-apps.spreadsheet";
pub const GOOGLE_SLIDES: &str = "application/vnd.google-apps.presentation";

/// Why a control operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub permission_id: String,
    pub root_id: String,
}

/// The body of a Google Docs Editors file, from which exports are built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocBody {
    /// A Google Doc: one paragraph per entry.
    Document { paragraphs: Vec<String> },
    /// A Google Sheet: the first (only) sheet's rows.
    Spreadsheet { rows: Vec<Vec<String>> },
    /// Google Slides: one text per slide.
    Presentation { slides: Vec<String> },
}

impl DocBody {
    pub fn mime_type(&self) -> &'static str {
        match self {
            DocBody::Document { .. } => GOOGLE_DOC,
            DocBody::Spreadsheet { .. } => GOOGLE_SHEET,
            DocBody::Presentation { .. } => GOOGLE_SLIDES,
        }
    }
    /// All the text, for `fullText contains` and the reported size.
    pub fn text(&self) -> String {
        match self {
            DocBody::Document { paragraphs } => paragraphs.join("\n"),
            DocBody::Spreadsheet { rows } => rows.iter().map(|r| r.join(",")).collect::<Vec<_>>().join("\n"),
            DocBody::Presentation { slides } => slides.join("\n"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Content {
    None,
    Blob(Bytes),
    Doc(DocBody),
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Grantee {
    User { email_address: String },
    Group { email_address: String },
    Domain { domain: String },
    Anyone,
}

/// A direct permission on an item (or a shared drive membership).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(flatten)]
    pub grantee: Grantee,
    /// `organizer`, `fileOrganizer`, `writer`, `commenter` or `reader`.
    pub role: String,
    /// For domain and anyone grants: whether the item can be found by search (otherwise link only).
    #[serde(default)]
    pub allow_file_discovery: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct File {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    pub parent: Option<String>,
    pub drive_id: Option<String>,
    /// The owning user (none on shared drives).
    pub owner: Option<String>,
    pub content: Content,
    pub md5: Option<String>,
    pub shortcut_target: Option<(String, String)>,
    pub explicitly_trashed: bool,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub version: u64,
    /// Creation order, the default listing order.
    pub seq: u64,
    pub grants: Vec<Grant>,
    /// A My Drive root or a shared drive's root folder.
    pub is_root: bool,
    /// When the item was shared with each grantee user (for `sharedWithMeTime`).
    pub shared_at: BTreeMap<String, DateTime<Utc>>,
}

impl File {
    pub fn size(&self) -> Option<u64> {
        match &self.content {
            Content::Blob(b) => Some(b.len() as u64),
            Content::Doc(d) => Some(d.text().len() as u64),
            Content::None => None,
        }
    }
    pub fn is_folder(&self) -> bool {
        self.mime_type == FOLDER
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SharedDrive {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    pub members: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ChangeKey {
    File(String),
    Drive(String),
}

#[derive(Debug, Clone)]
pub(crate) struct ChangeRecord {
    pub key: ChangeKey,
    pub drive_id: Option<String>,
    /// Where the item was before or after the change: `None` for My Drives, a shared drive's id otherwise
    /// (a move between them is news to both feeds).
    pub corpora: BTreeSet<Option<String>>,
    pub time: DateTime<Utc>,
    /// Users who could see the item before or after the change (the change is theirs to read).
    pub audience: BTreeSet<String>,
}

/// An item's audience and drive before a mutation.
pub(crate) struct Snapshot {
    id: String,
    audience: BTreeSet<String>,
    drive: Option<String>,
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRegistration {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

pub const DEFAULT_CLIENT_ID: &str = "kbsync-emulator.apps.googleusercontent.com";
pub const DEFAULT_CLIENT_SECRET: &str = "GOCSPX-emulator-secret";
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:8080/api/v1/connectors/gdrive/auth/callback";

impl Default for ClientRegistration {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            redirect_uris: vec![DEFAULT_REDIRECT_URI.into()],
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    pub scope: String,
    pub offline: bool,
    pub force_consent: bool,
    pub challenge: Option<(String, String)>,
    pub expires: DateTime<Utc>,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub expires: DateTime<Utc>,
    /// The refresh token it came from (revoking either revokes both).
    pub refresh: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub ids: IdGen,
    pub users: BTreeMap<String, User>,
    pub default_user: String,
    /// Group email → member user ids.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    pub files: BTreeMap<String, File>,
    next_seq: u64,
    pub drives: BTreeMap<String, SharedDrive>,
    pub changes: BTreeMap<u64, ChangeRecord>,
    latest_change: HashMap<ChangeKey, u64>,
    pub next_change: u64,
    /// Page tokens below this are rejected (see `expire_page_tokens`).
    pub min_valid_token: u64,
    pub clients: BTreeMap<String, ClientRegistration>,
    pub codes: HashMap<String, AuthCode>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    /// (client, user) pairs that already received a refresh token.
    pub offline_granted: BTreeSet<(String, String)>,
    /// `files.export` refuses outputs larger than this (Google: 10 MB).
    pub export_limit: u64,
}

/// What a role allows, most to least.
pub(crate) fn role_rank(role: &str) -> u8 {
    match role {
        "owner" => 6,
        "organizer" => 5,
        "fileOrganizer" => 4,
        "writer" => 3,
        "commenter" => 2,
        "reader" => 1,
        _ => 0,
    }
}

impl Store {
    pub fn new(seed: u64) -> Self {
        Self {
            ids: IdGen::new(seed),
            users: BTreeMap::new(),
            default_user: String::new(),
            groups: BTreeMap::new(),
            files: BTreeMap::new(),
            next_seq: 1,
            drives: BTreeMap::new(),
            changes: BTreeMap::new(),
            latest_change: HashMap::new(),
            next_change: 1,
            min_valid_token: 1,
            clients: BTreeMap::new(),
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            offline_granted: BTreeSet::new(),
            export_limit: 10 * 1024 * 1024,
        }
    }

    pub fn add_user(&mut self, name: &str, email: &str, now: DateTime<Utc>) -> String {
        let id = self.ids.numeric(21);
        let root_id = self.ids.root_id();
        let permission_id = self.ids.numeric(20);
        self.files.insert(
            root_id.clone(),
            File {
                id: root_id.clone(),
                name: "My Drive".into(),
                mime_type: FOLDER.into(),
                parent: None,
                drive_id: None,
                owner: Some(id.clone()),
                content: Content::None,
                md5: None,
                shortcut_target: None,
                explicitly_trashed: false,
                created: now,
                modified: now,
                version: 1,
                seq: 0,
                grants: Vec::new(),
                is_root: true,
                shared_at: BTreeMap::new(),
            },
        );
        self.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                name: name.into(),
                email: email.into(),
                permission_id,
                root_id,
            },
        );
        id
    }

    pub fn user(&self, id: &str) -> Result<&User, StoreError> {
        self.users
            .get(id)
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        self.users.values().find(|u| u.email.eq_ignore_ascii_case(email))
    }

    pub fn file(&self, id: &str) -> Result<&File, StoreError> {
        self.files
            .get(id)
            .ok_or_else(|| StoreError::NotFound(format!("file {id}")))
    }

    fn file_mut(&mut self, id: &str) -> Result<&mut File, StoreError> {
        self.files
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(format!("file {id}")))
    }

    /// The item and its ancestors, nearest first.
    pub fn ancestry(&self, id: &str) -> Vec<&File> {
        let mut out = Vec::new();
        let mut cur = self.files.get(id);
        while let Some(f) = cur {
            if out.len() > 64 {
                break;
            }
            out.push(f);
            cur = f.parent.as_deref().and_then(|p| self.files.get(p));
        }
        out
    }

    /// Every descendant of a folder (not the folder itself).
    pub fn descendants(&self, id: &str) -> Vec<String> {
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for f in self.files.values() {
            if let Some(p) = &f.parent {
                children.entry(p.as_str()).or_default().push(f.id.as_str());
            }
        }
        let mut out = Vec::new();
        let mut stack = vec![id];
        while let Some(cur) = stack.pop() {
            for c in children.get(cur).map(Vec::as_slice).unwrap_or_default() {
                out.push((*c).to_string());
                stack.push(*c);
            }
        }
        out
    }

    /// Trashed explicitly or through an ancestor.
    pub fn trashed(&self, id: &str) -> bool {
        self.ancestry(id).iter().any(|f| f.explicitly_trashed)
    }

    /// Whether a grant applies to a user: their own, or a group's they are in; with `via_link`, also a domain
    /// grant of their domain and an anyone grant (which open the item by link but do not list it).
    fn grant_applies(&self, g: &Grant, user: &User, via_link: bool) -> bool {
        match &g.grantee {
            Grantee::User { email_address } => email_address.eq_ignore_ascii_case(&user.email),
            Grantee::Group { email_address } => self
                .groups
                .get(&email_address.to_lowercase())
                .is_some_and(|m| m.contains(&user.id)),
            Grantee::Domain { domain } => {
                via_link
                    && user
                        .email
                        .rsplit_once('@')
                        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
            }
            Grantee::Anyone => via_link,
        }
    }

    /// The user's role on an item, if any.
    pub fn role_for(&self, user_id: &str, file_id: &str, via_link: bool) -> Option<String> {
        let user = self.users.get(user_id)?;
        let chain = self.ancestry(file_id);
        let item = chain.first()?;
        let mut best: Option<&'static str> = None;
        let consider = |role: &str, best: &mut Option<&'static str>| {
            if best.is_none_or(|b| role_rank(role) > role_rank(b)) {
                *best = Some(role_static(role));
            }
        };
        if let Some(d) = &item.drive_id {
            let drive = self.drives.get(d)?;
            for m in &drive.members {
                if self.grant_applies(m, user, false) {
                    consider(&m.role, &mut best);
                }
            }
        } else if item.owner.as_deref() == Some(user_id) {
            return Some("owner".into());
        }
        for f in &chain {
            for g in &f.grants {
                if self.grant_applies(g, user, via_link) {
                    consider(&g.role, &mut best);
                }
            }
        }
        best.map(str::to_string)
    }

    /// Users who can see the item (listing access, not link access).
    pub fn audience(&self, file_id: &str) -> BTreeSet<String> {
        self.users
            .keys()
            .filter(|u| self.role_for(u, file_id, false).is_some())
            .cloned()
            .collect()
    }

    /// The users an item is shared with directly (by user or group grant) who do not own it.
    pub fn shared_with(&self, file_id: &str) -> BTreeSet<String> {
        let Some(f) = self.files.get(file_id) else {
            return BTreeSet::new();
        };
        if f.drive_id.is_some() {
            return BTreeSet::new();
        }
        self.users
            .values()
            .filter(|u| f.owner.as_deref() != Some(u.id.as_str()))
            .filter(|u| f.grants.iter().any(|g| self.grant_applies(g, u, false)))
            .map(|u| u.id.clone())
            .collect()
    }

    /// `/My Drive/a/b.txt`, `/Shared drives/Team/x`, or `/Drives/<email>/…` for other users' My Drives.
    pub fn path(&self, id: &str) -> String {
        let chain = self.ancestry(id);
        let mut parts: Vec<String> = Vec::new();
        for f in chain.iter().rev() {
            if f.is_root {
                if let Some(d) = f.drive_id.as_ref().and_then(|d| self.drives.get(d)) {
                    parts.push(format!("Shared drives/{}", d.name));
                } else if f.owner.as_deref() == Some(self.default_user.as_str()) {
                    parts.push("My Drive".into());
                } else {
                    let email = f
                        .owner
                        .as_deref()
                        .and_then(|o| self.users.get(o))
                        .map_or("?", |u| u.email.as_str());
                    parts.push(format!("Drives/{email}"));
                }
            } else {
                parts.push(f.name.clone());
            }
        }
        format!("/{}", parts.join("/"))
    }

    fn record(
        &mut self,
        key: ChangeKey,
        drive_id: Option<String>,
        mut corpora: BTreeSet<Option<String>>,
        mut audience: BTreeSet<String>,
        now: DateTime<Utc>,
    ) {
        corpora.insert(drive_id.clone());
        if let Some(old) = self.latest_change.remove(&key)
            && let Some(rec) = self.changes.remove(&old)
        {
            audience.extend(rec.audience);
            corpora.extend(rec.corpora);
        }
        let seq = self.next_change;
        self.next_change += 1;
        self.latest_change.insert(key.clone(), seq);
        self.changes.insert(
            seq,
            ChangeRecord {
                key,
                drive_id,
                corpora,
                time: now,
                audience,
            },
        );
    }

    /// Audiences and drives of the item and its descendants, before a mutation.
    fn audiences(&self, id: &str) -> Vec<Snapshot> {
        std::iter::once(id.to_string())
            .chain(self.descendants(id))
            .map(|f| {
                let audience = self.audience(&f);
                let drive = self.files.get(&f).and_then(|x| x.drive_id.clone());
                Snapshot {
                    id: f,
                    audience,
                    drive,
                }
            })
            .collect()
    }

    /// Records a change for the item, and for each descendant whose audience or drive changed.
    fn record_subtree(&mut self, before: Vec<Snapshot>, now: DateTime<Utc>) {
        for (i, prev) in before.into_iter().enumerate() {
            let after = self.audience(&prev.id);
            let drive = self.files.get(&prev.id).and_then(|x| x.drive_id.clone());
            if i == 0 || after != prev.audience || drive != prev.drive {
                let mut all = prev.audience;
                all.extend(after);
                let corpora = BTreeSet::from([prev.drive]);
                self.record(ChangeKey::File(prev.id), drive, corpora, all, now);
            }
        }
    }

    fn touch(&mut self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let f = self.file_mut(id)?;
        f.modified = now;
        f.version += 1;
        Ok(())
    }

    /// Where a new item goes: the parent must be a folder; the item inherits its drive and owner.
    fn placement(&self, parent: &str) -> Result<(Option<String>, Option<String>), StoreError> {
        let p = self.file(parent)?;
        if !p.is_folder() {
            return Err(StoreError::Invalid(format!("{parent} is not a folder")));
        }
        Ok((p.drive_id.clone(), p.owner.clone()))
    }

    pub fn create(
        &mut self,
        parent: &str,
        name: &str,
        mime_type: &str,
        content: Content,
        shortcut_target: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let (drive_id, owner) = self.placement(parent)?;
        if name.is_empty() {
            return Err(StoreError::Invalid("an item needs a name".into()));
        }
        let shortcut_target = match shortcut_target {
            Some(t) => {
                let target = self.file(&t)?;
                Some((t, target.mime_type.clone()))
            }
            None => None,
        };
        let id = self.ids.file_id();
        let md5 = md5_of(&content);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.files.insert(
            id.clone(),
            File {
                id: id.clone(),
                name: name.into(),
                mime_type: mime_type.into(),
                parent: Some(parent.into()),
                drive_id: drive_id.clone(),
                owner,
                content,
                md5,
                shortcut_target,
                explicitly_trashed: false,
                created: now,
                modified: now,
                version: 1,
                seq,
                grants: Vec::new(),
                is_root: false,
                shared_at: BTreeMap::new(),
            },
        );
        let audience = self.audience(&id);
        self.record(
            ChangeKey::File(id.clone()),
            drive_id,
            BTreeSet::new(),
            audience,
            now,
        );
        Ok(id)
    }

    pub fn update_content(
        &mut self,
        id: &str,
        content: Content,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let f = self.file(id)?;
        let mime = match (&content, &f.content) {
            (Content::Blob(_), Content::Blob(_)) => f.mime_type.clone(),
            (Content::Doc(d), Content::Doc(_)) => d.mime_type().to_string(),
            _ => {
                return Err(StoreError::Invalid(format!(
                    "{id} ({}) cannot take this kind of content",
                    f.mime_type
                )));
            }
        };
        let md5 = md5_of(&content);
        let f = self.file_mut(id)?;
        f.content = content;
        f.md5 = md5;
        f.mime_type = mime;
        self.touch(id, now)?;
        let before = self.audiences(id).into_iter().take(1).collect();
        self.record_subtree(before, now);
        Ok(())
    }

    pub fn rename(&mut self, id: &str, name: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        if name.is_empty() {
            return Err(StoreError::Invalid("an item needs a name".into()));
        }
        if self.file(id)?.is_root {
            return Err(StoreError::Invalid("a root cannot be renamed".into()));
        }
        self.file_mut(id)?.name = name.into();
        self.touch(id, now)?;
        let before = self.audiences(id).into_iter().take(1).collect();
        self.record_subtree(before, now);
        Ok(())
    }

    pub fn move_to(&mut self, id: &str, new_parent: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let f = self.file(id)?;
        if f.is_root {
            return Err(StoreError::Invalid("a root cannot move".into()));
        }
        let (drive_id, owner) = self.placement(new_parent)?;
        if new_parent == id || self.descendants(id).iter().any(|d| d == new_parent) {
            return Err(StoreError::Invalid("cannot move a folder into itself".into()));
        }
        let before = self.audiences(id);
        let moved: Vec<String> = std::iter::once(id.to_string())
            .chain(self.descendants(id))
            .collect();
        for m in &moved {
            let f = self.file_mut(m)?;
            f.drive_id.clone_from(&drive_id);
            if drive_id.is_some() {
                f.owner = None;
            } else if f.owner.is_none() {
                f.owner.clone_from(&owner);
            }
        }
        self.file_mut(id)?.parent = Some(new_parent.into());
        self.touch(id, now)?;
        self.record_subtree(before, now);
        Ok(())
    }

    pub fn set_trashed(&mut self, id: &str, trashed: bool, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.file(id)?.is_root {
            return Err(StoreError::Invalid("a root cannot be trashed".into()));
        }
        self.file_mut(id)?.explicitly_trashed = trashed;
        self.touch(id, now)?;
        let before = self.audiences(id).into_iter().take(1).collect();
        self.record_subtree(before, now);
        Ok(())
    }

    /// Deletes the item and everything under it for good: each gets a `removed` change.
    pub fn delete(&mut self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.file(id)?.is_root {
            return Err(StoreError::Invalid("a root cannot be deleted".into()));
        }
        let before = self.audiences(id);
        for s in &before {
            self.files.remove(&s.id);
        }
        // Shortcuts to a deleted target stay, dangling, as on Drive.
        for s in before {
            self.record(ChangeKey::File(s.id), s.drive, BTreeSet::new(), s.audience, now);
        }
        Ok(())
    }

    pub fn set_grants(&mut self, id: &str, grants: Vec<Grant>, now: DateTime<Utc>) -> Result<(), StoreError> {
        for g in &grants {
            if role_rank(&g.role) == 0 || g.role == "owner" {
                return Err(StoreError::Invalid(format!(
                    "role {:?} cannot be granted",
                    g.role
                )));
            }
        }
        let before = self.audiences(id);
        let old_shared = self.shared_with(id);
        self.file_mut(id)?.grants = grants;
        let new_shared = self.shared_with(id);
        let f = self.file_mut(id)?;
        f.shared_at.retain(|u, _| new_shared.contains(u));
        for u in new_shared.difference(&old_shared) {
            f.shared_at.insert(u.clone(), now);
        }
        self.touch(id, now)?;
        self.record_subtree(before, now);
        Ok(())
    }

    pub fn create_drive(
        &mut self,
        name: &str,
        members: Vec<Grant>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        if name.is_empty() {
            return Err(StoreError::Invalid("a shared drive needs a name".into()));
        }
        let id = self.ids.drive_id();
        self.drives.insert(
            id.clone(),
            SharedDrive {
                id: id.clone(),
                name: name.into(),
                created: now,
                members,
            },
        );
        self.files.insert(
            id.clone(),
            File {
                id: id.clone(),
                name: name.into(),
                mime_type: FOLDER.into(),
                parent: None,
                drive_id: Some(id.clone()),
                owner: None,
                content: Content::None,
                md5: None,
                shortcut_target: None,
                explicitly_trashed: false,
                created: now,
                modified: now,
                version: 1,
                seq: 0,
                grants: Vec::new(),
                is_root: true,
                shared_at: BTreeMap::new(),
            },
        );
        let audience = self.audience(&id);
        self.record(
            ChangeKey::Drive(id.clone()),
            Some(id.clone()),
            BTreeSet::new(),
            audience,
            now,
        );
        Ok(id)
    }

    /// Deletes a shared drive and all of its items.
    pub fn delete_drive(&mut self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        if !self.drives.contains_key(id) {
            return Err(StoreError::NotFound(format!("shared drive {id}")));
        }
        let audience = self.audience(id);
        let items: Vec<String> = self.descendants(id);
        for f in &items {
            self.files.remove(f);
        }
        self.files.remove(id);
        self.drives.remove(id);
        for f in items {
            self.record(
                ChangeKey::File(f),
                Some(id.to_string()),
                BTreeSet::new(),
                audience.clone(),
                now,
            );
        }
        self.record(
            ChangeKey::Drive(id.to_string()),
            Some(id.to_string()),
            BTreeSet::new(),
            audience,
            now,
        );
        Ok(())
    }

    /// Every page token issued so far stops working; new ones work.
    pub fn expire_page_tokens(&mut self) {
        self.next_change += 1;
        self.min_valid_token = self.next_change;
    }

    /// Revokes every access and refresh token of a user.
    pub fn revoke_user_tokens(&mut self, user_id: &str) -> usize {
        let before = self.access_tokens.len() + self.refresh_tokens.len();
        self.access_tokens.retain(|_, t| t.user_id != user_id);
        self.refresh_tokens.retain(|_, t| t.user_id != user_id);
        self.offline_granted.retain(|(_, u)| u != user_id);
        before - self.access_tokens.len() - self.refresh_tokens.len()
    }

    /// Revokes a token and the grant it belongs to (an access token takes its refresh token along).
    pub fn revoke_token(&mut self, token: &str) -> bool {
        let refresh = if let Some(a) = self.access_tokens.remove(token) {
            a.refresh
        } else if self.refresh_tokens.contains_key(token) {
            Some(token.to_string())
        } else {
            return false;
        };
        if let Some(r) = refresh {
            self.refresh_tokens.remove(&r);
            self.access_tokens
                .retain(|_, a| a.refresh.as_deref() != Some(r.as_str()));
        }
        true
    }
}

fn role_static(role: &str) -> &'static str {
    match role {
        "owner" => "owner",
        "organizer" => "organizer",
        "fileOrganizer" => "fileOrganizer",
        "writer" => "writer",
        "commenter" => "commenter",
        _ => "reader",
    }
}

pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

fn md5_of(content: &Content) -> Option<String> {
    match content {
        Content::Blob(b) => Some(md5_hex(b)),
        _ => None,
    }
}

/// The stable permission id of a grantee: a user's `permissionId`, a digest for groups and domains, and
/// `anyoneWithLink` / `anyone` for link and public grants.
pub(crate) fn grantee_permission_id(store: &Store, g: &Grant) -> String {
    match &g.grantee {
        Grantee::User { email_address } => store.user_by_email(email_address).map_or_else(
            || derived_numeric(&email_address.to_lowercase()),
            |u| u.permission_id.clone(),
        ),
        Grantee::Group { email_address } => {
            derived_numeric(&format!("group:{}", email_address.to_lowercase()))
        }
        Grantee::Domain { domain } => derived_numeric(&format!("domain:{}", domain.to_lowercase())),
        Grantee::Anyone => {
            if g.allow_file_discovery {
                "anyone".into()
            } else {
                "anyoneWithLink".into()
            }
        }
    }
}
