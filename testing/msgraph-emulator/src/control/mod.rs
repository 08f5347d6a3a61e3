//! Scripting the emulator: a typed Rust handle ([`Control`]) and the JSON control API under `/_emulator/…`,
//! which calls the very same methods. This module holds the handle; the JSON shapes it takes and returns are in
//! [`views`], the permissions it sets on items in [`permissions`], and the HTTP routes in [`http`].

mod http;
mod permissions;
mod views;

use crate::Shared;
use crate::auth::{ClientRegistration, GroupMembershipClaims, IdTokenOverrides};
use crate::signing::SigningKeyInfo;
use crate::store::{Content, DeltaBehaviour, DriveOwner, NewDriveSpec, ResyncCode, StoreError};
use crate::subscriptions::{NotificationDelivery, NotificationPolicy, SubscriptionInfo};
use crate::traffic::{AuthorizationLeak, FaultRule, InstalledFault, RequestLog};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(crate) use self::http::router;
pub use self::permissions::PermissionSpec;
pub(crate) use self::permissions::build_permission;
pub use self::views::{
    DriveInfo, EmulatorInfo, GroupInfo, ItemInfo, NewDrive, NewGroup, NewSite, NewUser, SiteInfo, UserInfo,
    UserPatch,
};
use self::views::{item_info, site_info};

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
            issuer: s.issuer(&s.tenant.id),
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

    /// Changes a user's name or mail address, as a directory administrator would; later tokens carry the new values.
    pub fn update_user(&self, user_id: &str, patch: UserPatch) -> Result<UserInfo, StoreError> {
        let mut s = self.shared.store.write();
        let u = s
            .users
            .get_mut(user_id)
            .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
        if let Some(name) = patch.display_name {
            u.display_name = name;
        }
        if let Some(mail) = patch.mail {
            u.mail = mail;
        }
        Ok(UserInfo {
            id: u.id.clone(),
            display_name: u.display_name.clone(),
            mail: u.mail.clone(),
            user_principal_name: u.upn.clone(),
            drive_id: u.drive_id.clone(),
        })
    }

    pub fn create_user(&self, new: NewUser) -> Result<UserInfo, StoreError> {
        let now = self.now_();
        let mut s = self.shared.store.write();
        let home_tenant = match new.tenant_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) if t.eq_ignore_ascii_case(&s.tenant.id) => None,
            Some(t) => {
                uuid::Uuid::parse_str(t)
                    .map_err(|_| StoreError::Invalid(format!("tenant_id {t:?} is not a GUID")))?;
                Some(t.to_ascii_lowercase())
            }
        };
        let user = s.create_user(
            &new.display_name,
            new.mail.as_deref(),
            new.user_principal_name.as_deref(),
        );
        if let Some(u) = s.users.get_mut(&user.id) {
            u.home_tenant = home_tenant;
        }
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

    /// Creates a drive like [`Control::create_drive`] whose items are generated lazily: `items` folders and
    /// mostly small text files, deterministic for the emulator's seed (see [`crate::lazy`]).
    pub fn create_generated_drive(&self, new: NewDrive, items: u64) -> Result<DriveInfo, StoreError> {
        let info = self.create_drive(new)?;
        let lazy = Arc::new(crate::lazy::LazyDrive::new(items, self.shared.seed, &info.id));
        self.shared.store.write().drive_mut(&info.id)?.lazy = Some(lazy);
        Ok(info)
    }

    /// The delta pages a generated drive has served, repeats included.
    pub fn delta_page_counts(&self, drive_id: &str) -> Result<crate::lazy::DeltaPageCounts, StoreError> {
        Ok(self.lazy_drive(drive_id)?.page_counts())
    }

    /// Starts counting a generated drive's delta pages afresh.
    pub fn clear_delta_page_counts(&self, drive_id: &str) -> Result<(), StoreError> {
        self.lazy_drive(drive_id)?.clear_page_counts();
        Ok(())
    }

    fn lazy_drive(&self, drive_id: &str) -> Result<Arc<crate::lazy::LazyDrive>, StoreError> {
        self.shared
            .store
            .read()
            .drive(drive_id)?
            .lazy
            .clone()
            .ok_or_else(|| StoreError::Invalid(format!("drive {drive_id} is not a generated drive")))
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

    /// Every notification delivery attempt so far, in the order they ended.
    pub fn notification_deliveries(&self) -> Vec<NotificationDelivery> {
        self.shared.traffic.lock().notifications.clone()
    }

    /// How many notifications are being delivered or wait for a retry. Zero means every notification sent so
    /// far has been accepted, has used up its attempts, or was dropped with its subscription.
    pub fn notifications_in_flight(&self) -> usize {
        self.shared.deliveries_in_flight.load(Ordering::SeqCst)
    }

    /// How notifications are delivered and retried now.
    pub fn notification_policy(&self) -> NotificationPolicy {
        *self.shared.notification_policy.lock()
    }

    /// Changes how notifications sent from now on are delivered and retried.
    pub fn set_notification_policy(&self, policy: NotificationPolicy) {
        *self.shared.notification_policy.lock() = policy;
    }

    /// Every subscription Graph created, expired ones too (flagged), ordered by id.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        let now = self.now_();
        self.shared
            .store
            .read()
            .subscriptions
            .values()
            .map(|s| SubscriptionInfo::of(s, now))
            .collect()
    }

    /// One subscription, expired or not.
    pub fn subscription(&self, subscription_id: &str) -> Result<SubscriptionInfo, StoreError> {
        let now = self.now_();
        self.shared
            .store
            .read()
            .subscriptions
            .get(subscription_id)
            .map(|s| SubscriptionInfo::of(s, now))
            .ok_or_else(|| StoreError::NotFound(format!("subscription {subscription_id}")))
    }

    /// Drops a subscription without telling anyone, as Graph does when it removes one: its notifications
    /// stop (pending retries included), and GET, PATCH and DELETE on it answer 404 `ResourceNotFound`, so the
    /// client has to create a new one.
    pub fn remove_subscription(&self, subscription_id: &str) -> Result<(), StoreError> {
        self.shared
            .store
            .write()
            .subscriptions
            .remove(subscription_id)
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound(format!("subscription {subscription_id}")))
    }

    /// Makes a subscription expire now (its expiration becomes the emulator clock's current time): Graph then
    /// answers 404 `ResourceNotFound` for it and sends it no more notifications (pending retries included). It
    /// stays listed by [`Control::subscriptions`] with `expired: true`.
    pub fn expire_subscription(&self, subscription_id: &str) -> Result<(), StoreError> {
        let now = self.now_();
        let mut store = self.shared.store.write();
        let s = store
            .subscriptions
            .get_mut(subscription_id)
            .ok_or_else(|| StoreError::NotFound(format!("subscription {subscription_id}")))?;
        s.expires = s.expires.min(now);
        Ok(())
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

    /// Creates an Entra group (a group with that id is an error).
    pub fn create_group(&self, new: NewGroup) -> Result<GroupInfo, StoreError> {
        let mut s = self.shared.store.write();
        let id = new.id.unwrap_or_else(|| s.ids.guid());
        if s.access.groups.contains_key(&id) {
            return Err(StoreError::Conflict(format!("group {id} exists")));
        }
        let g = s.ensure_group(&id, Some(&new.display_name), new.mail.as_deref());
        Ok(GroupInfo {
            id: g.id.clone(),
            display_name: g.display_name.clone(),
            mail: g.mail.clone(),
        })
    }

    /// A directory group.
    pub fn group(&self, group_id: &str) -> Result<GroupInfo, StoreError> {
        let s = self.shared.store.read();
        let g = s
            .access
            .groups
            .get(group_id)
            .ok_or_else(|| StoreError::NotFound(format!("group {group_id}")))?;
        Ok(GroupInfo {
            id: g.id.clone(),
            display_name: g.display_name.clone(),
            mail: g.mail.clone(),
        })
    }

    /// Makes a user a member of an Entra group (a group the directory does not know yet is created, named
    /// after its id): permissions granted to the group (`PermissionSpec::Group` with that `group_id`), or to a
    /// group it is nested in, then apply to them, and items shared with the group show in their `sharedWithMe`.
    pub fn add_group_member(&self, group_id: &str, user_id: &str) -> Result<(), StoreError> {
        let mut s = self.shared.store.write();
        s.user(user_id)?;
        s.ensure_group(group_id, None, None);
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

    /// Makes group `member_group_id` a member of group `group_id` (both created, named after their ids, when the
    /// directory does not know them): the member group's members, transitively, are then members of `group_id`.
    pub fn add_group_member_group(&self, group_id: &str, member_group_id: &str) -> Result<(), StoreError> {
        if group_id == member_group_id {
            return Err(StoreError::Invalid("a group cannot be a member of itself".into()));
        }
        let mut s = self.shared.store.write();
        s.ensure_group(group_id, None, None);
        s.ensure_group(member_group_id, None, None);
        s.access
            .group_member_groups
            .entry(group_id.to_string())
            .or_default()
            .insert(member_group_id.to_string());
        Ok(())
    }

    pub fn remove_group_member_group(&self, group_id: &str, member_group_id: &str) -> bool {
        let mut s = self.shared.store.write();
        s.access
            .group_member_groups
            .get_mut(group_id)
            .is_some_and(|m| m.remove(member_group_id))
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

    /// Makes an Entra group a member of a SharePoint site group (its members then read what the site group
    /// may, and SharePoint REST lists the group with `PrincipalType` 4).
    pub fn add_site_group_group(
        &self,
        site_id: &str,
        site_group_id: &str,
        group_id: &str,
    ) -> Result<(), StoreError> {
        let mut s = self.shared.store.write();
        if !s.sites.contains_key(site_id) && !s.drives.values().any(|d| d.site_id.as_deref() == Some(site_id))
        {
            return Err(StoreError::NotFound(format!("site {site_id}")));
        }
        s.access
            .site_group_groups
            .entry((site_id.to_string(), site_group_id.to_string()))
            .or_default()
            .insert(group_id.to_string());
        Ok(())
    }

    /// Registers a certificate (PEM or DER) for a client, so that it can authenticate with client assertions
    /// signed by the certificate's key. Returns the certificate's `x5t#S256` thumbprint.
    pub fn add_client_certificate(&self, client_id: &str, pem: &[u8]) -> Result<String, StoreError> {
        self.shared.store.write().add_client_certificate(client_id, pem)
    }

    /// An administrator consents to application permissions (e.g. `Sites.Read.All`) for a client: app-only
    /// tokens issued afterwards carry them as `roles`.
    pub fn grant_app_roles(&self, client_id: &str, roles: &[&str]) -> Result<(), StoreError> {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_string()).collect();
        self.shared.store.write().set_app_roles(client_id, &roles)
    }

    /// The origin SharePoint REST answers on (the emulator's own), the resource of `{origin}/.default`.
    pub fn sharepoint_origin(&self) -> String {
        self.shared.base_url.trim_end_matches('/').to_string()
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

    /// Whether ID tokens issued to `client_id` carry the user's groups (Entra's `groupMembershipClaims`).
    pub fn set_group_membership_claims(
        &self,
        client_id: &str,
        value: GroupMembershipClaims,
    ) -> Result<(), StoreError> {
        let mut s = self.shared.store.write();
        let c = s
            .auth
            .clients
            .get_mut(client_id)
            .ok_or_else(|| StoreError::NotFound(format!("client {client_id}")))?;
        c.group_membership_claims = value;
        Ok(())
    }

    /// The signing keys, oldest first: which one signs, which are in the JWKS.
    pub fn signing_keys(&self) -> Vec<SigningKeyInfo> {
        self.shared.store.read().signing.infos()
    }

    /// The key id that signs new ID tokens.
    pub fn current_signing_kid(&self) -> Result<String, StoreError> {
        self.shared.store.read().signing.current_kid()
    }

    /// Rotates the ID token signing key: a fresh RSA 2048 key signs from now on and joins the JWKS; the previous
    /// keys stay listed (the overlap) until retired. Returns the new key id.
    pub fn rotate_signing_key(&self) -> Result<String, StoreError> {
        let key = crate::signing::SigningKeys::generate()?;
        Ok(self.shared.store.write().signing.rotate_to(key))
    }

    /// Takes a key out of the JWKS (not the current one). It can still sign a token on request
    /// ([`IdTokenOverrides::kid`]), which a client must then refuse.
    pub fn retire_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        self.shared.store.write().signing.retire(kid)
    }

    /// Ends the overlap: every key but the current one leaves the JWKS. Returns their ids.
    pub fn retire_previous_signing_keys(&self) -> Vec<String> {
        self.shared.store.write().signing.retire_previous()
    }

    /// Changes the next ID token the emulator issues (one shot; replaces a pending change).
    pub fn set_next_id_token(&self, overrides: IdTokenOverrides) {
        self.shared.store.write().auth.next_id_token = Some(overrides);
    }

    /// Drops a pending [`Control::set_next_id_token`].
    pub fn clear_next_id_token(&self) {
        self.shared.store.write().auth.next_id_token = None;
    }

    /// An ID token for a user and client, as the token endpoint would issue it after an authorize request with
    /// `scopes` and `nonce` (emulator clock; a pending [`IdTokenOverrides`] applies).
    pub fn mint_id_token(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[&str],
        nonce: Option<&str>,
    ) -> Result<String, StoreError> {
        let now = self.now_();
        let scopes: Vec<String> = scopes.iter().map(|x| x.to_string()).collect();
        self.shared
            .store
            .write()
            .id_token(user_id, client_id, &scopes, nonce, now)
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

    /// Puts everything back as it was right after start: state (subscriptions too), clock, faults, rate limit,
    /// logs, notification policy.
    pub fn reset(&self) {
        let initial = self.shared.initial.lock().clone();
        if let Some(st) = initial {
            *self.shared.store.write() = st;
        }
        self.shared.traffic.lock().reset();
        *self.shared.notification_policy.lock() = self.shared.initial_notification_policy;
        self.shared.clock.reset();
        self.shared.auto_consent.store(
            self.shared.initial_auto_consent,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}
