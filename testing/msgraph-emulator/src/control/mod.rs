//! Scripting the emulator: a typed Rust handle ([`Control`]) and the JSON control API under `/_emulator/…`,
//! which calls the very same methods.

use crate::Shared;
use crate::auth::ClientRegistration;
use crate::store::{
    Content, DeltaBehaviour, DriveOwner, DriveType, Grantee, LinkUser, NewDriveSpec, ResyncCode, Site,
    StoreError, StoredPermission,
};
use crate::traffic::{AuthorizationLeak, FaultRule, InstalledFault, RequestLog};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A user as the control API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    pub id: String,
    pub display_name: String,
    pub mail: Option<String>,
    pub user_principal_name: String,
    pub drive_id: Option<String>,
}

/// A drive as the control API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DriveInfo {
    pub id: String,
    pub drive_type: DriveType,
    pub name: String,
    pub root_id: String,
    pub site_id: Option<String>,
}

/// A site and its document libraries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteInfo {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub web_url: String,
    pub drive_ids: Vec<String>,
}

/// An item as the control API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemInfo {
    pub id: String,
    pub drive_id: String,
    pub name: String,
    pub parent_id: Option<String>,
    /// Path below the root (`/Folder/file.txt`; empty for the root).
    pub path: String,
    pub folder: bool,
    pub size: u64,
    pub quick_xor_hash: Option<String>,
    pub sha1_hash: Option<String>,
    pub etag: String,
    pub ctag: String,
}

/// A new user.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct NewUser {
    pub display_name: String,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// Also give the user a drive of this type (business or personal).
    #[serde(default)]
    pub drive_type: Option<DriveType>,
}

/// A new drive owned by a user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewDrive {
    pub owner_user_id: String,
    pub drive_type: DriveType,
    #[serde(default)]
    pub name: Option<String>,
}

/// A new SharePoint site with document libraries (default: one called "Documents").
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct NewSite {
    pub display_name: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub libraries: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A permission to set on an item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PermissionSpec {
    /// A user: an emulator user by id, or an external person by name (and email).
    User {
        #[serde(default)]
        user_id: Option<String>,
        #[serde(default)]
        display_name: Option<String>,
        #[serde(default)]
        email: Option<String>,
        /// Whether the identity carries `email` (Graph sometimes omits it).
        #[serde(default = "yes")]
        include_email: bool,
        roles: Vec<String>,
    },
    /// An Entra (Microsoft 365 or security) group.
    Group {
        #[serde(default)]
        group_id: Option<String>,
        display_name: String,
        #[serde(default)]
        email: Option<String>,
        roles: Vec<String>,
    },
    /// A SharePoint site group (Owners / Members / Visitors or custom).
    SiteGroup {
        #[serde(default)]
        site_group_id: Option<String>,
        display_name: String,
        roles: Vec<String>,
    },
    /// A sharing link: `link_type` view/edit/embed, `scope` anonymous/organization/users/existingAccess.
    Link {
        link_type: String,
        scope: String,
        #[serde(default)]
        users: Vec<LinkUser>,
        #[serde(default)]
        roles: Vec<String>,
        #[serde(default)]
        prevents_download: bool,
    },
}

impl PermissionSpec {
    /// A user permission for an emulator user.
    pub fn user(user_id: &str, roles: &[&str]) -> Self {
        PermissionSpec::User {
            user_id: Some(user_id.into()),
            display_name: None,
            email: None,
            include_email: true,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }
    /// A sharing link.
    pub fn link(link_type: &str, scope: &str) -> Self {
        PermissionSpec::Link {
            link_type: link_type.into(),
            scope: scope.into(),
            users: Vec::new(),
            roles: Vec::new(),
            prevents_download: false,
        }
    }
}

/// Everything a client needs to point at a running emulator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmulatorInfo {
    pub base_url: String,
    pub graph_url: String,
    pub authority_url: String,
    pub authorize_url: String,
    pub token_url: String,
    pub control_url: String,
    pub tenant_id: String,
    pub default_user_id: String,
    pub default_drive_id: String,
    pub client_ids: Vec<String>,
    pub now: DateTime<Utc>,
}

/// The typed handle to the emulator's state. Cheap to clone.
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

fn item_info(drive: &crate::store::Drive, item: &crate::store::Item) -> ItemInfo {
    let (etag, ctag) = crate::render::item_etags(item);
    ItemInfo {
        id: item.id.clone(),
        drive_id: drive.id.clone(),
        name: item.name.clone(),
        parent_id: item.parent_id.clone(),
        path: drive.path_of(&item.id),
        folder: item.folder,
        size: if item.folder {
            drive.folder_size(&item.id)
        } else {
            item.size()
        },
        quick_xor_hash: item.content.as_ref().map(|c| c.quick_xor_hash.clone()),
        sha1_hash: item
            .content
            .as_ref()
            .filter(|_| drive.drive_type.is_personal())
            .map(|c| c.sha1_hash.clone()),
        etag,
        ctag,
    }
}

fn site_info(s: &Site) -> SiteInfo {
    SiteInfo {
        id: s.id.clone(),
        name: s.name.clone(),
        display_name: s.display_name.clone(),
        web_url: s.web_url.clone(),
        drive_ids: s.drive_ids.clone(),
    }
}

impl Control {
    fn now_(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// The emulator clock's current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.now_()
    }

    /// Moves the emulator clock forward; every expiry is measured on it.
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.shared.clock.advance(by);
    }

    pub fn info(&self) -> EmulatorInfo {
        let s = self.shared.store.read();
        let base = &self.shared.base_url;
        EmulatorInfo {
            base_url: base.clone(),
            graph_url: self.shared.graph_url.clone(),
            authority_url: format!("{base}/{}", s.tenant.id),
            authorize_url: format!("{base}/{}/oauth2/v2.0/authorize", s.tenant.id),
            token_url: format!("{base}/{}/oauth2/v2.0/token", s.tenant.id),
            control_url: format!("{base}/_emulator"),
            tenant_id: s.tenant.id.clone(),
            default_user_id: s.default_user_id.clone(),
            default_drive_id: s.default_drive_id.clone(),
            client_ids: s.auth.clients.keys().cloned().collect(),
            now: self.now_(),
        }
    }

    pub fn tenant_id(&self) -> String {
        self.shared.store.read().tenant.id.clone()
    }
    pub fn default_user_id(&self) -> String {
        self.shared.store.read().default_user_id.clone()
    }
    pub fn default_drive_id(&self) -> String {
        self.shared.store.read().default_drive_id.clone()
    }

    pub fn create_user(&self, new: NewUser) -> Result<UserInfo, StoreError> {
        let now = self.now_();
        let mut s = self.shared.store.write();
        let user = s.create_user(
            &new.display_name,
            new.mail.as_deref(),
            new.user_principal_name.as_deref(),
        );
        if let Some(t) = new.drive_type {
            let name = "OneDrive".to_string();
            let site_id = if t.is_personal() {
                None
            } else {
                Some(crate::new_site_id(&mut s))
            };
            let id = s.create_drive(
                NewDriveSpec {
                    drive_type: t,
                    name,
                    owner: DriveOwner::User(user.id.clone()),
                    site_id,
                    created_by: user.id.clone(),
                },
                now,
            )?;
            crate::add_owner_permission(&mut s, &id, &user.id)?;
        }
        let u = s.user(&user.id)?;
        Ok(UserInfo {
            id: u.id.clone(),
            display_name: u.display_name.clone(),
            mail: u.mail.clone(),
            user_principal_name: u.upn.clone(),
            drive_id: u.drive_id.clone(),
        })
    }

    pub fn create_drive(&self, new: NewDrive) -> Result<DriveInfo, StoreError> {
        let now = self.now_();
        let mut s = self.shared.store.write();
        s.user(&new.owner_user_id)?;
        let site_id = if new.drive_type.is_personal() {
            None
        } else {
            Some(crate::new_site_id(&mut s))
        };
        let id = s.create_drive(
            NewDriveSpec {
                drive_type: new.drive_type,
                name: new.name.unwrap_or_else(|| "OneDrive".into()),
                owner: DriveOwner::User(new.owner_user_id.clone()),
                site_id,
                created_by: new.owner_user_id.clone(),
            },
            now,
        )?;
        crate::add_owner_permission(&mut s, &id, &new.owner_user_id)?;
        drop(s);
        self.drive(&id)
    }

    pub fn drive(&self, drive_id: &str) -> Result<DriveInfo, StoreError> {
        let s = self.shared.store.read();
        let d = s.drive(drive_id)?;
        Ok(DriveInfo {
            id: d.id.clone(),
            drive_type: d.drive_type,
            name: d.name.clone(),
            root_id: d.root_id.clone(),
            site_id: d.site_id.clone(),
        })
    }

    pub fn create_site(&self, new: NewSite) -> Result<SiteInfo, StoreError> {
        let now = self.now_();
        let mut s = self.shared.store.write();
        let site = crate::create_site(&mut s, &new, now)?;
        Ok(site_info(&site))
    }

    pub fn item(&self, drive_id: &str, item_id: &str) -> Result<ItemInfo, StoreError> {
        let s = self.shared.store.read();
        let d = s.drive(drive_id)?;
        Ok(item_info(d, d.item(item_id)?))
    }

    pub fn item_by_path(&self, drive_id: &str, path: &str) -> Result<ItemInfo, StoreError> {
        let s = self.shared.store.read();
        let d = s.drive(drive_id)?;
        Ok(item_info(d, d.resolve(&d.root_id, path)?))
    }

    /// Lists the live children of a folder.
    pub fn children(&self, drive_id: &str, item_id: &str) -> Result<Vec<ItemInfo>, StoreError> {
        let s = self.shared.store.read();
        let d = s.drive(drive_id)?;
        let item = d.item(item_id)?;
        Ok(item
            .children
            .values()
            .filter_map(|c| d.items.get(c))
            .map(|c| item_info(d, c))
            .collect())
    }

    /// Creates the folder at `path` (and any missing parents).
    pub fn create_folder(&self, drive_id: &str, path: &str) -> Result<ItemInfo, StoreError> {
        let now = self.now_();
        let mut s = self.shared.store.write();
        let owner = s.default_user_id.clone();
        let id = s.ensure_folder(drive_id, path, &owner, now)?;
        let d = s.drive(drive_id)?;
        let info = item_info(d, d.item(&id)?);
        drop(s);
        self.notify(drive_id);
        Ok(info)
    }

    /// Creates or replaces the file at `path` (missing parent folders are created).
    pub fn put_file(
        &self,
        drive_id: &str,
        path: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<ItemInfo, StoreError> {
        let content = Content::new(bytes.into());
        let now = self.now_();
        let mut s = self.shared.store.write();
        let owner = s.default_user_id.clone();
        let id = s.put_file(drive_id, path, content, &owner, now)?;
        let d = s.drive(drive_id)?;
        let info = item_info(d, d.item(&id)?);
        drop(s);
        self.notify(drive_id);
        Ok(info)
    }

    /// Replaces the content of an existing file.
    pub fn modify_file(
        &self,
        drive_id: &str,
        item_id: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<ItemInfo, StoreError> {
        let content = Content::new(bytes.into());
        let now = self.now_();
        let mut s = self.shared.store.write();
        let owner = s.default_user_id.clone();
        s.modify_file(drive_id, item_id, content, &owner, now)?;
        let d = s.drive(drive_id)?;
        let info = item_info(d, d.item(item_id)?);
        drop(s);
        self.notify(drive_id);
        Ok(info)
    }

    pub fn rename(&self, drive_id: &str, item_id: &str, new_name: &str) -> Result<ItemInfo, StoreError> {
        let now = self.now_();
        let mut s = self.shared.store.write();
        s.rename(drive_id, item_id, new_name, now)?;
        let d = s.drive(drive_id)?;
        let info = item_info(d, d.item(item_id)?);
        drop(s);
        self.notify(drive_id);
        Ok(info)
    }

    pub fn move_item(
        &self,
        drive_id: &str,
        item_id: &str,
        new_parent_id: &str,
        new_name: Option<&str>,
    ) -> Result<ItemInfo, StoreError> {
        let now = self.now_();
        let mut s = self.shared.store.write();
        s.move_item(drive_id, item_id, Some(new_parent_id), new_name, now)?;
        let d = s.drive(drive_id)?;
        let info = item_info(d, d.item(item_id)?);
        drop(s);
        self.notify(drive_id);
        Ok(info)
    }

    /// Deletes an item (a folder with everything below it).
    pub fn delete(&self, drive_id: &str, item_id: &str) -> Result<(), StoreError> {
        let now = self.now_();
        self.shared.store.write().delete(drive_id, item_id, now)?;
        self.notify(drive_id);
        Ok(())
    }

    fn notify(&self, drive_id: &str) {
        crate::subscriptions::notify_drive_changed(&self.shared, drive_id);
    }

    /// Sends a `reauthorizationRequired` lifecycle notification for a subscription.
    pub fn send_reauthorization_required(&self, subscription_id: &str) -> Result<(), StoreError> {
        crate::subscriptions::send_reauthorization_required(&self.shared, subscription_id)
    }

    /// Every notification delivery attempt so far.
    pub fn notification_deliveries(&self) -> Vec<crate::subscriptions::NotificationDelivery> {
        self.shared.traffic.lock().notifications.clone()
    }

    /// Replaces the permissions set directly on an item; returns their ids.
    pub fn set_permissions(
        &self,
        drive_id: &str,
        item_id: &str,
        specs: Vec<PermissionSpec>,
    ) -> Result<Vec<String>, StoreError> {
        let mut s = self.shared.store.write();
        s.drive(drive_id)?.item(item_id)?;
        let mut perms = Vec::new();
        for spec in specs {
            perms.push(build_permission(&mut s, drive_id, spec)?);
        }
        let ids = perms.iter().map(|p| p.id.clone()).collect();
        let now = self.shared.clock.now();
        let d = s.drive_mut(drive_id)?;
        if let Some(i) = d.items.get_mut(item_id) {
            i.permissions = perms;
        }
        d.sharing_changed(item_id, now)?;
        Ok(ids)
    }

    /// Adds one permission to an item; returns its id.
    pub fn add_permission(
        &self,
        drive_id: &str,
        item_id: &str,
        spec: PermissionSpec,
    ) -> Result<String, StoreError> {
        let mut s = self.shared.store.write();
        s.drive(drive_id)?.item(item_id)?;
        let p = build_permission(&mut s, drive_id, spec)?;
        let id = p.id.clone();
        let now = self.shared.clock.now();
        let d = s.drive_mut(drive_id)?;
        if let Some(i) = d.items.get_mut(item_id) {
            i.permissions.push(p);
        }
        d.sharing_changed(item_id, now)?;
        Ok(id)
    }

    /// Takes read access to an item and its subtree away from a user, whatever their ownership or permissions:
    /// Graph then answers 403 `accessDenied` (404 `itemNotFound` on personal drives) for the item, its children,
    /// content, permissions and delta (also when resuming a delta or next link), and listings of a still readable
    /// parent leave it out. The nearest rule on the way to the root wins, so `grant_access` on a descendant
    /// re-opens that part.
    pub fn revoke_access(&self, user_id: &str, drive_id: &str, item_id: &str) -> Result<(), StoreError> {
        self.set_access(user_id, drive_id, item_id, false)
    }

    /// Gives a user read access to an item and its subtree (and cancels a `revoke_access` on that same item).
    pub fn grant_access(&self, user_id: &str, drive_id: &str, item_id: &str) -> Result<(), StoreError> {
        self.set_access(user_id, drive_id, item_id, true)
    }

    fn set_access(
        &self,
        user_id: &str,
        drive_id: &str,
        item_id: &str,
        grant: bool,
    ) -> Result<(), StoreError> {
        let mut s = self.shared.store.write();
        s.user(user_id)?;
        s.drive(drive_id)?.item(item_id)?;
        s.set_access_rule(user_id, drive_id, item_id, grant);
        Ok(())
    }

    /// Whether Graph lets the user read the item now (explicit rules, ownership, permissions, memberships).
    pub fn can_read(&self, user_id: &str, drive_id: &str, item_id: &str) -> Result<bool, StoreError> {
        let s = self.shared.store.read();
        s.user(user_id)?;
        let d = s.drive(drive_id)?;
        d.item(item_id)?;
        Ok(s.can_read(user_id, d, item_id))
    }

    /// Makes a user a member of an Entra group: permissions granted to the group (`PermissionSpec::Group` with
    /// that `group_id`) then apply to them, and items shared with the group show in their `sharedWithMe`.
    pub fn add_group_member(&self, group_id: &str, user_id: &str) -> Result<(), StoreError> {
        let mut s = self.shared.store.write();
        s.user(user_id)?;
        s.access
            .group_members
            .entry(group_id.to_string())
            .or_default()
            .insert(user_id.to_string());
        Ok(())
    }

    pub fn remove_group_member(&self, group_id: &str, user_id: &str) -> bool {
        let mut s = self.shared.store.write();
        s.access
            .group_members
            .get_mut(group_id)
            .is_some_and(|m| m.remove(user_id))
    }

    /// Makes a user a member of a SharePoint site group of `site_id` (a site's id, or the `site_id` of a drive):
    /// `PermissionSpec::SiteGroup` permissions with that id then apply to them. A site's creator (the default
    /// user) starts in its Owners group (`3`).
    pub fn add_site_group_member(
        &self,
        site_id: &str,
        site_group_id: &str,
        user_id: &str,
    ) -> Result<(), StoreError> {
        let mut s = self.shared.store.write();
        s.user(user_id)?;
        s.access
            .site_group_members
            .entry((site_id.to_string(), site_group_id.to_string()))
            .or_default()
            .insert(user_id.to_string());
        Ok(())
    }

    pub fn remove_site_group_member(&self, site_id: &str, site_group_id: &str, user_id: &str) -> bool {
        let mut s = self.shared.store.write();
        s.access
            .site_group_members
            .get_mut(&(site_id.to_string(), site_group_id.to_string()))
            .is_some_and(|m| m.remove(user_id))
    }

    /// Revokes every refresh token of a user (the token endpoint then answers AADSTS50173).
    pub fn revoke_refresh_tokens(&self, user_id: &str) -> Result<usize, StoreError> {
        self.shared.store.write().revoke_refresh_tokens(user_id)
    }

    /// Expires every refresh token of a user (AADSTS70008).
    pub fn expire_refresh_tokens(&self, user_id: &str) -> Result<usize, StoreError> {
        self.shared.store.write().expire_refresh_tokens(user_id)
    }

    /// Requires MFA for a user: refresh grants answer `interaction_required` (AADSTS50076).
    pub fn set_mfa_required(&self, user_id: &str, required: bool) -> Result<(), StoreError> {
        let mut s = self.shared.store.write();
        let u = s
            .users
            .get_mut(user_id)
            .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
        u.mfa_required = required;
        Ok(())
    }

    pub fn register_client(&self, reg: ClientRegistration) {
        self.shared.store.write().register_client(reg);
    }

    /// Makes a client's secret expired (AADSTS7000222).
    pub fn expire_client_secret(&self, client_id: &str) -> Result<(), StoreError> {
        let now = self.now_();
        let mut s = self.shared.store.write();
        let c = s
            .auth
            .clients
            .get_mut(client_id)
            .ok_or_else(|| StoreError::NotFound(format!("client {client_id}")))?;
        c.secret_expires_at = Some(now);
        Ok(())
    }

    /// Makes every delta token of a drive answer 410 with `code`.
    pub fn expire_delta_tokens(&self, drive_id: &str, code: ResyncCode) -> Result<(), StoreError> {
        self.shared.store.write().expire_delta_tokens(drive_id, code)
    }

    pub fn delta_behaviour(&self) -> DeltaBehaviour {
        self.shared.store.read().delta.clone()
    }

    pub fn set_delta_behaviour(&self, b: DeltaBehaviour) {
        self.shared.store.write().delta = b;
    }

    pub fn set_auto_consent(&self, on: bool) {
        self.shared
            .auto_consent
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Installs a fault rule; returns its id.
    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.shared.traffic.lock().add_fault(rule)
    }

    pub fn faults(&self) -> Vec<InstalledFault> {
        self.shared.traffic.lock().faults.clone()
    }

    pub fn remove_fault(&self, id: u64) -> bool {
        let mut t = self.shared.traffic.lock();
        let before = t.faults.len();
        t.faults.retain(|f| f.id != id);
        t.faults.len() != before
    }

    pub fn clear_faults(&self) {
        self.shared.traffic.lock().faults.clear();
    }

    /// Limits Graph, identity and download requests to this many per second (emulator clock); beyond it 429.
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        self.shared.traffic.lock().set_rate_limit(per_second);
    }

    pub fn request_log(&self) -> RequestLog {
        self.shared.traffic.lock().log.clone()
    }

    /// Per-route counts and resource units without the entries (cheap after long benchmarks).
    pub fn request_counts(&self) -> RequestLog {
        let t = self.shared.traffic.lock();
        RequestLog {
            entries: Vec::new(),
            counts: t.log.counts.clone(),
            resource_units: t.log.resource_units,
        }
    }

    pub fn clear_request_log(&self) {
        self.shared.traffic.lock().log = RequestLog::default();
    }

    /// Requests to download URLs that carried an Authorization header.
    pub fn authorization_leaks(&self) -> Vec<AuthorizationLeak> {
        self.shared.traffic.lock().leaks.clone()
    }

    /// An access token for a user, valid for an hour of emulator time, without the OAuth dance.
    pub fn mint_access_token(&self, user_id: &str, scopes: &[&str]) -> Result<String, StoreError> {
        self.mint_access_token_for(user_id, scopes, chrono::Duration::seconds(3599))
    }

    pub fn mint_access_token_for(
        &self,
        user_id: &str,
        scopes: &[&str],
        lifetime: chrono::Duration,
    ) -> Result<String, StoreError> {
        let now = self.now_();
        let mut s = self.shared.store.write();
        let client = s.auth.clients.keys().next().cloned().unwrap_or_default();
        let scopes: Vec<String> = scopes.iter().map(|x| x.to_string()).collect();
        s.mint_access_token(user_id, &client, &scopes, lifetime, now)
    }

    /// Puts everything back as it was right after start: state, clock, faults, rate limit, log.
    pub fn reset(&self) {
        let initial = self.shared.initial.lock().clone();
        if let Some(st) = initial {
            *self.shared.store.write() = st;
        }
        self.shared.traffic.lock().reset();
        self.shared.clock.reset();
        self.shared.auto_consent.store(
            self.shared.initial_auto_consent,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

fn roles_or(roles: Vec<String>, default: &str) -> Vec<String> {
    if roles.is_empty() {
        vec![default.to_string()]
    } else {
        roles
    }
}

pub(crate) fn build_permission(
    s: &mut crate::store::Store,
    drive_id: &str,
    spec: PermissionSpec,
) -> Result<StoredPermission, StoreError> {
    let id = s.ids.token(24);
    let guid = s.ids.guid();
    let share = s.ids.token(40);
    let web_base = s.web_base.clone();
    let (grantee, roles) = match spec {
        PermissionSpec::User {
            user_id,
            display_name,
            email,
            include_email,
            roles,
        } => {
            let (uid, name, mail, login) = match user_id {
                Some(uid) => {
                    let u = s.user(&uid)?;
                    (
                        u.id.clone(),
                        display_name.unwrap_or_else(|| u.display_name.clone()),
                        email.or_else(|| u.mail.clone()),
                        u.upn.clone(),
                    )
                }
                None => {
                    let name = display_name.ok_or_else(|| {
                        StoreError::Invalid("a user permission needs user_id or display_name".into())
                    })?;
                    let login = email.clone().unwrap_or_else(|| name.clone());
                    (guid, name, email, login)
                }
            };
            let site_user_id = s.drive_mut(drive_id)?.next_site_user_id();
            (
                Grantee::User {
                    user_id: uid,
                    display_name: name,
                    email: if include_email { mail } else { None },
                    login,
                    site_user_id,
                },
                roles_or(roles, "read"),
            )
        }
        PermissionSpec::Group {
            group_id,
            display_name,
            email,
            roles,
        } => {
            let site_user_id = s.drive_mut(drive_id)?.next_site_user_id();
            (
                Grantee::Group {
                    group_id: group_id.unwrap_or(guid),
                    display_name,
                    email,
                    site_user_id,
                },
                roles_or(roles, "read"),
            )
        }
        PermissionSpec::SiteGroup {
            site_group_id,
            display_name,
            roles,
        } => {
            let id = match site_group_id {
                Some(i) => i,
                None => s.drive_mut(drive_id)?.next_site_user_id().to_string(),
            };
            (
                Grantee::SiteGroup {
                    site_group_id: id,
                    display_name,
                },
                roles_or(roles, "read"),
            )
        }
        PermissionSpec::Link {
            link_type,
            scope,
            users,
            roles,
            prevents_download,
        } => {
            if !matches!(
                scope.as_str(),
                "anonymous" | "organization" | "users" | "existingAccess"
            ) {
                return Err(StoreError::Invalid(format!("unknown link scope {scope:?}")));
            }
            let default_role = if link_type == "edit" { "write" } else { "read" };
            (
                Grantee::Link {
                    link_type,
                    scope,
                    web_url: format!("{web_base}/:f:/s/{share}"),
                    prevents_download,
                    users,
                },
                roles_or(roles, default_role),
            )
        }
    };
    let share_id = matches!(grantee, Grantee::Link { .. }).then(|| format!("s!{share}"));
    Ok(StoredPermission {
        id,
        roles,
        grantee,
        share_id,
    })
}

// ---------------------------------------------------------------------------------------------------------
// HTTP control API

#[derive(Debug)]
struct ControlError(StatusCode, String);

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
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
struct FileBody {
    #[serde(default)]
    path: Option<String>,
    /// UTF-8 text content.
    #[serde(default)]
    content: Option<String>,
    /// Binary content, base64.
    #[serde(default)]
    content_base64: Option<String>,
}

impl FileBody {
    fn bytes(&self) -> Result<Bytes, ControlError> {
        match (&self.content, &self.content_base64) {
            (Some(t), None) => Ok(Bytes::from(t.clone())),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Bytes::from)
                .map_err(|e| ControlError(StatusCode::BAD_REQUEST, format!("content_base64: {e}"))),
            (None, None) => Ok(Bytes::new()),
            (Some(_), Some(_)) => Err(ControlError(
                StatusCode::BAD_REQUEST,
                "give content or content_base64, not both".into(),
            )),
        }
    }
}

#[derive(Deserialize)]
struct PathBody {
    path: String,
}
#[derive(Deserialize)]
struct NameBody {
    name: String,
}
#[derive(Deserialize)]
struct MoveBody {
    parent_id: String,
    #[serde(default)]
    name: Option<String>,
}
#[derive(Deserialize, Default)]
struct ExpireBody {
    #[serde(default)]
    code: Option<ResyncCode>,
}
#[derive(Deserialize)]
struct MfaBody {
    required: bool,
}
#[derive(Deserialize, Default)]
struct TokenBody {
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    lifetime_secs: Option<i64>,
}
#[derive(Deserialize)]
struct AdvanceBody {
    seconds: i64,
}
#[derive(Deserialize)]
struct RateBody {
    requests_per_second: Option<u32>,
}
#[derive(Deserialize)]
struct ToggleBody {
    enabled: bool,
}
#[derive(Deserialize)]
struct LookupQuery {
    path: String,
}
#[derive(Deserialize)]
struct AccessBody {
    user_id: String,
    drive_id: String,
    /// Default: the drive's root.
    #[serde(default)]
    item_id: Option<String>,
}

impl AccessBody {
    fn item(&self, c: &Control) -> Result<String, ControlError> {
        match &self.item_id {
            Some(i) => Ok(i.clone()),
            None => Ok(c.drive(&self.drive_id)?.root_id),
        }
    }
}

#[derive(Deserialize, Default)]
struct LogQuery {
    #[serde(default)]
    entries: Option<bool>,
}

fn opt_json<T: Default + serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        serde_json::from_slice(body).map_err(|e| ControlError(StatusCode::BAD_REQUEST, e.to_string()))
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_emulator/info", get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).info()) }))
        .route(
            "/_emulator/users",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<NewUser>| async move { Ok::<_, ControlError>(Json(ctl(&s).create_user(b)?)) }),
        )
        .route(
            "/_emulator/drives",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<NewDrive>| async move { Ok::<_, ControlError>(Json(ctl(&s).create_drive(b)?)) }),
        )
        .route(
            "/_emulator/drives/{d}",
            get(|State(s): State<Arc<Shared>>, Path(d): Path<String>| async move { Ok::<_, ControlError>(Json(ctl(&s).drive(&d)?)) }),
        )
        .route(
            "/_emulator/sites",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<NewSite>| async move { Ok::<_, ControlError>(Json(ctl(&s).create_site(b)?)) }),
        )
        .route(
            "/_emulator/drives/{d}/folders",
            post(|State(s): State<Arc<Shared>>, Path(d): Path<String>, Json(b): Json<PathBody>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).create_folder(&d, &b.path)?))
            }),
        )
        .route("/_emulator/drives/{d}/files", put(put_file))
        .route(
            "/_emulator/drives/{d}/lookup",
            get(|State(s): State<Arc<Shared>>, Path(d): Path<String>, Query(q): Query<LookupQuery>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).item_by_path(&d, &q.path)?))
            }),
        )
        .route(
            "/_emulator/drives/{d}/items/{i}",
            get(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).item(&d, &i)?))
            })
            .delete(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>| async move {
                ctl(&s).delete(&d, &i)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/drives/{d}/items/{i}/children",
            get(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).children(&d, &i)?))
            }),
        )
        .route("/_emulator/drives/{d}/items/{i}/content", put(modify_file))
        .route(
            "/_emulator/drives/{d}/items/{i}/rename",
            post(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>, Json(b): Json<NameBody>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).rename(&d, &i, &b.name)?))
            }),
        )
        .route(
            "/_emulator/drives/{d}/items/{i}/move",
            post(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>, Json(b): Json<MoveBody>| async move {
                Ok::<_, ControlError>(Json(ctl(&s).move_item(&d, &i, &b.parent_id, b.name.as_deref())?))
            }),
        )
        .route(
            "/_emulator/drives/{d}/items/{i}/permissions",
            put(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>, Json(b): Json<Vec<PermissionSpec>>| async move {
                Ok::<_, ControlError>(Json(serde_json::json!({"ids": ctl(&s).set_permissions(&d, &i, b)?})))
            })
            .post(|State(s): State<Arc<Shared>>, Path((d, i)): Path<(String, String)>, Json(b): Json<PermissionSpec>| async move {
                Ok::<_, ControlError>(Json(serde_json::json!({"id": ctl(&s).add_permission(&d, &i, b)?})))
            }),
        )
        .route(
            "/_emulator/drives/{d}/expire-delta-tokens",
            post(|State(s): State<Arc<Shared>>, Path(d): Path<String>, body: Bytes| async move {
                let b: ExpireBody = opt_json(&body)?;
                ctl(&s).expire_delta_tokens(&d, b.code.unwrap_or_default())?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/access/revoke",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<AccessBody>| async move {
                let c = ctl(&s);
                c.revoke_access(&b.user_id, &b.drive_id, &b.item(&c)?)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/access/grant",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<AccessBody>| async move {
                let c = ctl(&s);
                c.grant_access(&b.user_id, &b.drive_id, &b.item(&c)?)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/access",
            get(|State(s): State<Arc<Shared>>, Query(b): Query<AccessBody>| async move {
                let c = ctl(&s);
                let readable = c.can_read(&b.user_id, &b.drive_id, &b.item(&c)?)?;
                Ok::<_, ControlError>(Json(serde_json::json!({"readable": readable})))
            }),
        )
        .route(
            "/_emulator/groups/{g}/members/{u}",
            put(|State(s): State<Arc<Shared>>, Path((g, u)): Path<(String, String)>| async move {
                ctl(&s).add_group_member(&g, &u)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            })
            .delete(|State(s): State<Arc<Shared>>, Path((g, u)): Path<(String, String)>| async move {
                if ctl(&s).remove_group_member(&g, &u) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
            }),
        )
        .route(
            "/_emulator/sites/{site}/groups/{g}/members/{u}",
            put(|State(s): State<Arc<Shared>>, Path((site, g, u)): Path<(String, String, String)>| async move {
                ctl(&s).add_site_group_member(&site, &g, &u)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            })
            .delete(|State(s): State<Arc<Shared>>, Path((site, g, u)): Path<(String, String, String)>| async move {
                if ctl(&s).remove_site_group_member(&site, &g, &u) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
            }),
        )
        .route(
            "/_emulator/users/{u}/revoke-refresh-tokens",
            post(|State(s): State<Arc<Shared>>, Path(u): Path<String>| async move {
                Ok::<_, ControlError>(Json(serde_json::json!({"revoked": ctl(&s).revoke_refresh_tokens(&u)?})))
            }),
        )
        .route(
            "/_emulator/users/{u}/expire-refresh-tokens",
            post(|State(s): State<Arc<Shared>>, Path(u): Path<String>| async move {
                Ok::<_, ControlError>(Json(serde_json::json!({"expired": ctl(&s).expire_refresh_tokens(&u)?})))
            }),
        )
        .route(
            "/_emulator/users/{u}/mfa",
            put(|State(s): State<Arc<Shared>>, Path(u): Path<String>, Json(b): Json<MfaBody>| async move {
                ctl(&s).set_mfa_required(&u, b.required)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/_emulator/users/{u}/tokens",
            post(|State(s): State<Arc<Shared>>, Path(u): Path<String>, body: Bytes| async move {
                let b: TokenBody = opt_json(&body)?;
                let scopes: Vec<&str> = if b.scopes.is_empty() { vec!["Files.Read.All", "Sites.Read.All"] } else { b.scopes.iter().map(String::as_str).collect() };
                let t = ctl(&s).mint_access_token_for(&u, &scopes, chrono::Duration::seconds(b.lifetime_secs.unwrap_or(3599)))?;
                Ok::<_, ControlError>(Json(serde_json::json!({"access_token": t, "token_type": "Bearer"})))
            }),
        )
        .route(
            "/_emulator/clients",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<ClientRegistration>| async move {
                ctl(&s).register_client(b);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_emulator/clients/{c}/expire-secret",
            post(|State(s): State<Arc<Shared>>, Path(c): Path<String>| async move {
                ctl(&s).expire_client_secret(&c)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route("/_emulator/clock", get(|State(s): State<Arc<Shared>>| async move { Json(serde_json::json!({"now": ctl(&s).now()})) }))
        .route(
            "/_emulator/clock/advance",
            post(|State(s): State<Arc<Shared>>, Json(b): Json<AdvanceBody>| async move {
                let c = ctl(&s);
                c.advance_clock(chrono::Duration::seconds(b.seconds));
                Json(serde_json::json!({"now": c.now()}))
            }),
        )
        .route(
            "/_emulator/delta-behaviour",
            get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).delta_behaviour()) }).put(
                |State(s): State<Arc<Shared>>, Json(b): Json<DeltaBehaviour>| async move {
                    ctl(&s).set_delta_behaviour(b);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/_emulator/auto-consent",
            put(|State(s): State<Arc<Shared>>, Json(b): Json<ToggleBody>| async move {
                ctl(&s).set_auto_consent(b.enabled);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_emulator/faults",
            get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).faults()) })
                .post(|State(s): State<Arc<Shared>>, Json(b): Json<FaultRule>| async move {
                    Json(serde_json::json!({"id": ctl(&s).add_fault(b)}))
                })
                .delete(|State(s): State<Arc<Shared>>| async move {
                    ctl(&s).clear_faults();
                    StatusCode::NO_CONTENT
                }),
        )
        .route(
            "/_emulator/faults/{id}",
            delete(|State(s): State<Arc<Shared>>, Path(id): Path<u64>| async move {
                if ctl(&s).remove_fault(id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
            }),
        )
        .route(
            "/_emulator/rate-limit",
            put(|State(s): State<Arc<Shared>>, Json(b): Json<RateBody>| async move {
                ctl(&s).set_rate_limit(b.requests_per_second);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_emulator/requests",
            get(|State(s): State<Arc<Shared>>, Query(q): Query<LogQuery>| async move {
                let c = ctl(&s);
                Json(if q.entries == Some(false) { c.request_counts() } else { c.request_log() })
            })
            .delete(|State(s): State<Arc<Shared>>| async move {
                ctl(&s).clear_request_log();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_emulator/subscriptions/{id}/reauthorization-required",
            post(|State(s): State<Arc<Shared>>, Path(id): Path<String>| async move {
                ctl(&s).send_reauthorization_required(&id)?;
                Ok::<_, ControlError>(StatusCode::NO_CONTENT)
            }),
        )
        .route("/_emulator/notifications", get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).notification_deliveries()) }))
        .route("/_emulator/authorization-leaks", get(|State(s): State<Arc<Shared>>| async move { Json(ctl(&s).authorization_leaks()) }))
        .route(
            "/_emulator/reset",
            post(|State(s): State<Arc<Shared>>| async move {
                ctl(&s).reset();
                StatusCode::NO_CONTENT
            }),
        )
}

async fn put_file(
    State(s): State<Arc<Shared>>,
    Path(d): Path<String>,
    Json(b): Json<FileBody>,
) -> CResult<ItemInfo> {
    let path = b
        .path
        .clone()
        .ok_or_else(|| ControlError(StatusCode::BAD_REQUEST, "path is required".into()))?;
    let bytes = b.bytes()?;
    Ok(Json(ctl(&s).put_file(&d, &path, bytes)?))
}

async fn modify_file(
    State(s): State<Arc<Shared>>,
    Path((d, i)): Path<(String, String)>,
    Json(b): Json<FileBody>,
) -> CResult<ItemInfo> {
    let bytes = b.bytes()?;
    Ok(Json(ctl(&s).modify_file(&d, &i, bytes)?))
}
