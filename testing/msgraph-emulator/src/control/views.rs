//! The JSON shapes of the control API: what it reports (users, drives, sites, items, the emulator's addresses)
//! and what it takes to create users, drives and sites. The typed handle returns the same values.

use crate::store::{DriveType, Site};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    /// Makes the user a member of another organisation's tenant (its id, a GUID): they sign in through
    /// `/common` or `/organizations` (or that tenant's own path), their ID and access tokens carry that `tid`,
    /// and the emulated tenant's own authorize endpoint refuses them (AADSTS50020).
    #[serde(default)]
    pub tenant_id: Option<String>,
}

/// Changes to a user ([`Control::update_user`](super::Control::update_user)); `None` leaves a value as it is.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct UserPatch {
    #[serde(default)]
    pub display_name: Option<String>,
    /// `Some(None)` removes the mail address.
    #[serde(default)]
    pub mail: Option<Option<String>>,
}

/// A new Entra group of the directory.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct NewGroup {
    /// Its object id (default: a new GUID).
    #[serde(default)]
    pub id: Option<String>,
    pub display_name: String,
    #[serde(default)]
    pub mail: Option<String>,
}

/// A directory group as the control API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: String,
    pub display_name: String,
    pub mail: Option<String>,
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

/// Everything a client needs to point at a running emulator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmulatorInfo {
    pub base_url: String,
    pub graph_url: String,
    pub authority_url: String,
    pub authorize_url: String,
    pub token_url: String,
    /// The OpenID issuer of the tenant, `{authority}/v2.0`.
    pub issuer: String,
    pub control_url: String,
    pub tenant_id: String,
    pub default_user_id: String,
    pub default_drive_id: String,
    pub client_ids: Vec<String>,
    pub now: DateTime<Utc>,
}

pub(super) fn item_info(drive: &crate::store::Drive, item: &crate::store::Item) -> ItemInfo {
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

pub(super) fn site_info(s: &Site) -> SiteInfo {
    SiteInfo {
        id: s.id.clone(),
        name: s.name.clone(),
        display_name: s.display_name.clone(),
        web_url: s.web_url.clone(),
        drive_ids: s.drive_ids.clone(),
    }
}
