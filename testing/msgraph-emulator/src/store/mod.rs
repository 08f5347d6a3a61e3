//! The emulator's in-memory state: tenant, users, drives with their item trees, sites, permissions, delta
//! bookkeeping and the identity platform's clients and tokens. Everything mutable lives here, behind one lock
//! in [`crate::Shared`], so a reset is a clone of the initial `Store`.

mod drive;

use crate::auth::AuthState;
use crate::ids::IdGen;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha1::Digest as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What went wrong with a control or Graph operation on the state.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The named user, drive, site or item does not exist (or is deleted).
    #[error("not found: {0}")]
    NotFound(String),
    /// An item with that name already exists in the target folder, or the operation would break the tree.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request itself is invalid (bad name, deleting the root, moving a folder into itself, …).
    #[error("invalid: {0}")]
    Invalid(String),
}

/// The kind of drive, as Graph names it in `driveType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DriveType {
    /// OneDrive personal (consumer): `D4648F06C91D9D3D!123` ids, sha1Hash, tombstones keep their name.
    Personal,
    /// OneDrive for Business: `b!` drive ids, `01…` item ids, quickXorHash only, tombstones without name.
    Business,
    /// A SharePoint document library (same id shapes and rules as business).
    DocumentLibrary,
}

impl DriveType {
    pub fn as_str(self) -> &'static str {
        match self {
            DriveType::Personal => "personal",
            DriveType::Business => "business",
            DriveType::DocumentLibrary => "documentLibrary",
        }
    }
    pub fn is_personal(self) -> bool {
        self == DriveType::Personal
    }
}

/// The `innerError.code` a 410 carries when a delta token can no longer be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum ResyncCode {
    /// Replace local items with the server's version, including deletes.
    #[default]
    ResyncChangesApplyDifferences,
    /// Upload local items the service didn't return.
    ResyncChangesUploadDifferences,
}

impl ResyncCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncCode::ResyncChangesApplyDifferences => "resyncChangesApplyDifferences",
            ResyncCode::ResyncChangesUploadDifferences => "resyncChangesUploadDifferences",
        }
    }
}

/// The bytes of one file version plus the hashes Graph publishes for them.
#[derive(Debug)]
pub struct Content {
    pub bytes: Bytes,
    pub quick_xor_hash: String,
    pub sha1_hash: String,
}

impl Content {
    pub fn new(bytes: Bytes) -> Arc<Self> {
        let quick_xor_hash = crate::quickxorhash::quickxorhash(&bytes);
        let sha1_hash = hex::encode_upper(sha1::Sha1::digest(&bytes));
        Arc::new(Self {
            bytes,
            quick_xor_hash,
            sha1_hash,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub domain: String,
    pub display_name: String,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub display_name: String,
    pub mail: Option<String>,
    pub upn: String,
    pub drive_id: Option<String>,
    pub mfa_required: bool,
    /// The id of another organisation's tenant the user belongs to (see `NewUser::tenant_id`); `None`: a
    /// member of the emulated tenant.
    pub home_tenant: Option<String>,
}

#[derive(Debug, Clone)]
pub enum DriveOwner {
    User(String),
    Site(String),
}

#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub web_url: String,
    pub created_at: DateTime<Utc>,
    pub drive_ids: Vec<String>,
}

/// Who a stored permission grants access to.
#[derive(Debug, Clone)]
pub enum Grantee {
    User {
        user_id: String,
        display_name: String,
        email: Option<String>,
        login: String,
        site_user_id: u32,
    },
    Group {
        group_id: String,
        display_name: String,
        email: Option<String>,
        site_user_id: u32,
    },
    SiteGroup {
        site_group_id: String,
        display_name: String,
    },
    Link {
        link_type: String,
        scope: String,
        web_url: String,
        prevents_download: bool,
        users: Vec<LinkUser>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkUser {
    pub display_name: String,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoredPermission {
    pub id: String,
    pub roles: Vec<String>,
    pub grantee: Grantee,
    pub share_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub folder: bool,
    pub content: Option<Arc<Content>>,
    /// Live children: lower-cased name → id (names are unique case-insensitively, as on OneDrive).
    pub children: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub created_by: String,
    pub modified_by: String,
    pub etag_guid: String,
    pub etag_version: u64,
    pub ctag_version: u64,
    pub created_seq: u64,
    pub changed_seq: u64,
    /// The sequence of the last change of the permissions set on this item (0: never changed).
    pub sharing_seq: u64,
    pub deleted_seq: Option<u64>,
    /// Parent as of each change sequence (first entry is the creation); lets delta tell whether an item
    /// was inside a folder scope when a token was issued.
    pub parent_history: Vec<(u64, Option<String>)>,
    pub permissions: Vec<StoredPermission>,
}

impl Item {
    pub fn is_live(&self) -> bool {
        self.deleted_seq.is_none()
    }
    pub fn parent_at(&self, seq: u64) -> Option<&str> {
        self.parent_history
            .iter()
            .rev()
            .find(|(s, _)| *s <= seq)
            .and_then(|(_, p)| p.as_deref())
    }
    pub fn size(&self) -> u64 {
        self.content.as_ref().map_or(0, |c| c.bytes.len() as u64)
    }
}

#[derive(Debug, Clone)]
pub struct Drive {
    pub id: String,
    pub drive_type: DriveType,
    pub name: String,
    pub owner: DriveOwner,
    pub site_id: Option<String>,
    pub root_id: String,
    pub items: HashMap<String, Item>,
    pub seq: u64,
    pub seq_times: Vec<(u64, DateTime<Utc>)>,
    /// Delta tokens carry the epoch they were minted in; expiring tokens bumps it.
    pub token_epoch: u64,
    pub resync_code: ResyncCode,
    pub created_at: DateTime<Utc>,
    /// The generated items of a lazily generated drive (then read-only; see [`crate::lazy`]).
    pub lazy: Option<Arc<crate::lazy::LazyDrive>>,
    next_personal: u64,
    next_site_user: u32,
}

/// A delta round's entry: an item id, and whether it must be shown as deleted from this scope's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundEntry {
    pub id: String,
    pub tombstone: bool,
    /// The item's sharing changed since the round's token (annotated for clients that ask).
    pub sharing_changed: bool,
}

#[derive(Debug)]
pub struct DeltaRound {
    pub drive_id: String,
    pub scope_id: String,
    pub entries: Vec<RoundEntry>,
    pub snapshot_seq: u64,
    pub epoch: u64,
    pub page_size: usize,
    pub select: Option<Vec<String>>,
    /// The `$top` asked for (kept in the round's deltaLink).
    pub top: Option<usize>,
}

#[derive(Debug, Clone)]
pub enum DeltaToken {
    Link {
        drive_id: String,
        scope_id: String,
        since_seq: u64,
        epoch: u64,
        issued_at: DateTime<Utc>,
        select: Option<Vec<String>>,
        /// The `$top` of the request that started the first round, carried over to every later round.
        top: Option<usize>,
    },
    Page {
        round: Arc<DeltaRound>,
        offset: usize,
        may_be_empty: bool,
        issued_at: DateTime<Utc>,
    },
}

/// How delta rounds exercise clients. Probabilities are drawn from the seeded generator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DeltaBehaviour {
    /// Default page size when the request has no `$top`.
    pub page_size: usize,
    /// Probability that a folder is emitted after its descendants (children before parents).
    pub children_first_probability: f64,
    /// Probability that an item appears a second time later in the same round.
    pub duplicate_probability: f64,
    /// Probability that a page comes back empty (with a nextLink to the same position).
    pub empty_page_probability: f64,
    /// Tokens older than this (emulator clock) answer 410; `None` = never by age.
    pub token_lifetime_secs: Option<i64>,
}

impl Default for DeltaBehaviour {
    fn default() -> Self {
        Self {
            page_size: 200,
            children_first_probability: 0.25,
            duplicate_probability: 0.03,
            empty_page_probability: 0.0,
            token_lifetime_secs: Some(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pub ids: IdGen,
    pub tenant: Tenant,
    pub users: BTreeMap<String, User>,
    pub drives: BTreeMap<String, Drive>,
    pub sites: BTreeMap<String, Site>,
    pub delta_tokens: HashMap<String, DeltaToken>,
    pub delta: DeltaBehaviour,
    pub auth: AuthState,
    pub default_user_id: String,
    pub default_drive_id: String,
    pub web_base: String,
    pub subscriptions: BTreeMap<String, crate::subscriptions::Subscription>,
    /// Explicit access rules and group memberships (see [`crate::access`]).
    pub access: crate::access::AccessState,
    /// The keys that sign ID tokens (see [`crate::signing`]).
    pub signing: crate::signing::SigningKeys,
}

/// Characters OneDrive refuses in names.
fn validate_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.trim() != name || name == "." || name == ".." {
        return Err(StoreError::Invalid(format!("invalid name {name:?}")));
    }
    if name
        .chars()
        .any(|c| matches!(c, '"' | '*' | ':' | '<' | '>' | '?' | '/' | '\\' | '|') || c < ' ')
    {
        return Err(StoreError::Invalid(format!(
            "name {name:?} contains a character OneDrive does not allow"
        )));
    }
    Ok(())
}

/// Splits `/a/b/c` into non-empty segments.
pub fn split_path(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// What the emulator needs to set a new drive up.
pub struct NewDriveSpec {
    pub drive_type: DriveType,
    pub name: String,
    pub owner: DriveOwner,
    pub site_id: Option<String>,
    pub created_by: String,
}

impl Store {
    pub fn new(seed: u64, web_base: String) -> Self {
        let mut ids = IdGen::new(seed);
        let tenant = Tenant {
            id: ids.guid(),
            domain: "contoso.onmicrosoft.com".into(),
            display_name: "Contoso".into(),
        };
        Self {
            ids,
            tenant,
            users: BTreeMap::new(),
            drives: BTreeMap::new(),
            sites: BTreeMap::new(),
            delta_tokens: HashMap::new(),
            delta: DeltaBehaviour::default(),
            auth: AuthState::default(),
            default_user_id: String::new(),
            default_drive_id: String::new(),
            web_base,
            subscriptions: BTreeMap::new(),
            access: crate::access::AccessState::default(),
            signing: crate::signing::SigningKeys::default(),
        }
    }

    pub fn user(&self, id: &str) -> Result<&User, StoreError> {
        self.users
            .get(id)
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    /// Finds a user by id, UPN or mail (case-insensitive for the latter two).
    pub fn find_user(&self, key: &str) -> Option<&User> {
        self.users.get(key).or_else(|| {
            let k = key.to_lowercase();
            self.users.values().find(|u| {
                u.upn.to_lowercase() == k || u.mail.as_deref().is_some_and(|m| m.to_lowercase() == k)
            })
        })
    }

    pub fn drive(&self, id: &str) -> Result<&Drive, StoreError> {
        self.drives
            .get(id)
            .ok_or_else(|| StoreError::NotFound(format!("drive {id}")))
    }

    pub fn drive_mut(&mut self, id: &str) -> Result<&mut Drive, StoreError> {
        self.drives
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(format!("drive {id}")))
    }

    pub fn create_user(&mut self, display_name: &str, mail: Option<&str>, upn: Option<&str>) -> User {
        let id = self.ids.guid();
        let local: String = display_name
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let local = if local.is_empty() {
            format!("user{}", self.users.len() + 1)
        } else {
            local
        };
        let upn = upn
            .map(str::to_string)
            .or_else(|| mail.map(str::to_string))
            .unwrap_or_else(|| {
                let mut candidate = format!("{local}@{}", self.tenant.domain);
                let mut n = 1;
                while self.find_user(&candidate).is_some() {
                    n += 1;
                    candidate = format!("{local}{n}@{}", self.tenant.domain);
                }
                candidate
            });
        let user = User {
            id: id.clone(),
            display_name: display_name.to_string(),
            mail: mail.map(str::to_string),
            upn,
            drive_id: None,
            mfa_required: false,
            home_tenant: None,
        };
        self.users.insert(id, user.clone());
        user
    }

    pub fn create_drive(&mut self, spec: NewDriveSpec, now: DateTime<Utc>) -> Result<String, StoreError> {
        let id = if spec.drive_type.is_personal() {
            self.ids.personal_drive_id()
        } else {
            self.ids.business_drive_id()
        };
        let mut drive = Drive {
            id: id.clone(),
            drive_type: spec.drive_type,
            name: spec.name,
            owner: spec.owner.clone(),
            site_id: spec.site_id,
            root_id: String::new(),
            items: HashMap::new(),
            seq: 0,
            seq_times: Vec::new(),
            token_epoch: 0,
            resync_code: ResyncCode::default(),
            created_at: now,
            lazy: None,
            next_personal: 100,
            next_site_user: 6,
        };
        let root_id = drive.new_item_id(&mut self.ids);
        let seq = drive.bump(now);
        let root = Item {
            id: root_id.clone(),
            name: "root".into(),
            parent_id: None,
            folder: true,
            content: None,
            children: BTreeMap::new(),
            created_at: now,
            modified_at: now,
            created_by: spec.created_by.clone(),
            modified_by: spec.created_by.clone(),
            etag_guid: self.ids.guid().to_uppercase(),
            etag_version: 1,
            ctag_version: 1,
            created_seq: seq,
            changed_seq: seq,
            sharing_seq: 0,
            deleted_seq: None,
            parent_history: vec![(seq, None)],
            permissions: Vec::new(),
        };
        drive.root_id = root_id.clone();
        drive.items.insert(root_id, root);
        self.drives.insert(id.clone(), drive);
        if let DriveOwner::User(uid) = &spec.owner
            && let Some(u) = self.users.get_mut(uid)
            && u.drive_id.is_none()
        {
            u.drive_id = Some(id.clone());
        }
        Ok(id)
    }

    /// Creates every missing folder along `path` and returns the last one's id.
    pub fn ensure_folder(
        &mut self,
        drive_id: &str,
        path: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let Store { ids, drives, .. } = self;
        let drive = drives
            .get_mut(drive_id)
            .ok_or_else(|| StoreError::NotFound(format!("drive {drive_id}")))?;
        let mut cur = drive.root_id.clone();
        for seg in split_path(path) {
            let existing = drive.item(&cur)?.children.get(&seg.to_lowercase()).cloned();
            cur = match existing {
                Some(id) => {
                    if !drive.item(&id)?.folder {
                        return Err(StoreError::Conflict(format!("{seg:?} is a file")));
                    }
                    id
                }
                None => drive.create_child(ids, &cur, seg, None, user, now)?,
            };
        }
        Ok(cur)
    }

    /// Creates or replaces a file at `path`, creating parent folders as needed.
    pub fn put_file(
        &mut self,
        drive_id: &str,
        path: &str,
        content: Arc<Content>,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let segs = split_path(path);
        let Some((name, parents)) = segs.split_last() else {
            return Err(StoreError::Invalid("a file path needs a name".into()));
        };
        let parent = self.ensure_folder(drive_id, &parents.join("/"), user, now)?;
        self.put_file_in(drive_id, &parent, name, content, user, now)
    }

    /// Creates or replaces the file `name` in folder `parent_id`.
    pub fn put_file_in(
        &mut self,
        drive_id: &str,
        parent_id: &str,
        name: &str,
        content: Arc<Content>,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let Store { ids, drives, .. } = self;
        let drive = drives
            .get_mut(drive_id)
            .ok_or_else(|| StoreError::NotFound(format!("drive {drive_id}")))?;
        let existing = drive.item(parent_id)?.children.get(&name.to_lowercase()).cloned();
        match existing {
            Some(id) => {
                if drive.item(&id)?.folder {
                    return Err(StoreError::Conflict(format!("{name:?} is a folder")));
                }
                let seq = drive.bump(now);
                let item = drive
                    .items
                    .get_mut(&id)
                    .ok_or_else(|| StoreError::NotFound(id.clone()))?;
                item.content = Some(content);
                item.etag_version += 1;
                item.ctag_version += 1;
                item.modified_at = now;
                item.modified_by = user.to_string();
                item.changed_seq = seq;
                Ok(id)
            }
            None => drive.create_child(ids, parent_id, name, Some(content), user, now),
        }
    }

    /// Replaces the content of an existing file.
    pub fn modify_file(
        &mut self,
        drive_id: &str,
        item_id: &str,
        content: Arc<Content>,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let drive = self.drive_mut(drive_id)?;
        if drive.item(item_id)?.folder {
            return Err(StoreError::Invalid(format!("{item_id} is a folder")));
        }
        let seq = drive.bump(now);
        let item = drive
            .items
            .get_mut(item_id)
            .ok_or_else(|| StoreError::NotFound(item_id.to_string()))?;
        item.content = Some(content);
        item.etag_version += 1;
        item.ctag_version += 1;
        item.modified_at = now;
        item.modified_by = user.to_string();
        item.changed_seq = seq;
        Ok(())
    }

    pub fn create_folder_in(
        &mut self,
        drive_id: &str,
        parent_id: &str,
        name: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let Store { ids, drives, .. } = self;
        let drive = drives
            .get_mut(drive_id)
            .ok_or_else(|| StoreError::NotFound(format!("drive {drive_id}")))?;
        drive.create_child(ids, parent_id, name, None, user, now)
    }

    /// Renames an item in place. Only the item changes: delta reports it alone, descendants are not re-sent.
    pub fn rename(
        &mut self,
        drive_id: &str,
        item_id: &str,
        new_name: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.move_item(drive_id, item_id, None, Some(new_name), now)
    }

    /// Moves an item to another folder of the same drive, optionally renaming it.
    pub fn move_item(
        &mut self,
        drive_id: &str,
        item_id: &str,
        new_parent: Option<&str>,
        new_name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let drive = self.drive_mut(drive_id)?;
        let item = drive.item(item_id)?;
        let Some(old_parent) = item.parent_id.clone() else {
            return Err(StoreError::Invalid("the root cannot be moved or renamed".into()));
        };
        let old_name = item.name.clone();
        let name = new_name.unwrap_or(&old_name).to_string();
        validate_name(&name)?;
        let parent = new_parent.map_or(old_parent.clone(), str::to_string);
        let target = drive.item(&parent)?;
        if !target.folder {
            return Err(StoreError::Invalid(format!("{parent} is not a folder")));
        }
        if drive.is_within(item_id, &parent) {
            return Err(StoreError::Invalid("cannot move a folder into itself".into()));
        }
        if let Some(existing) = target.children.get(&name.to_lowercase())
            && existing != item_id
        {
            return Err(StoreError::Conflict(format!(
                "an item named {name:?} already exists"
            )));
        }
        let seq = drive.bump(now);
        if let Some(p) = drive.items.get_mut(&old_parent) {
            p.children.remove(&old_name.to_lowercase());
        }
        if let Some(p) = drive.items.get_mut(&parent) {
            p.children.insert(name.to_lowercase(), item_id.to_string());
        }
        let item = drive
            .items
            .get_mut(item_id)
            .ok_or_else(|| StoreError::NotFound(item_id.to_string()))?;
        item.name = name;
        item.etag_version += 1;
        item.changed_seq = seq;
        item.modified_at = now;
        if parent != old_parent {
            item.parent_id = Some(parent.clone());
            item.parent_history.push((seq, Some(parent)));
        }
        Ok(())
    }

    /// Deletes an item; a folder's descendants are deleted with it (each gets its own tombstone).
    pub fn delete(&mut self, drive_id: &str, item_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let drive = self.drive_mut(drive_id)?;
        let item = drive.item(item_id)?;
        let Some(parent) = item.parent_id.clone() else {
            return Err(StoreError::Invalid("the root cannot be deleted".into()));
        };
        let name = item.name.to_lowercase();
        let mut doomed = drive.descendants(item_id);
        doomed.reverse();
        doomed.push(item_id.to_string());
        for id in doomed {
            let seq = drive.bump(now);
            if let Some(i) = drive.items.get_mut(&id) {
                i.deleted_seq = Some(seq);
                i.changed_seq = seq;
                i.etag_version += 1;
                i.children.clear();
            }
        }
        if let Some(p) = drive.items.get_mut(&parent) {
            p.children.remove(&name);
        }
        Ok(())
    }

    /// Invalidates every delta token of the drive (they answer 410) and purges its tombstones.
    pub fn expire_delta_tokens(&mut self, drive_id: &str, code: ResyncCode) -> Result<(), StoreError> {
        let drive = self.drive_mut(drive_id)?;
        drive.token_epoch += 1;
        drive.resync_code = code;
        drive.items.retain(|_, i| i.is_live());
        Ok(())
    }
}
