//! Graph v1.0 wire types, as lenient as the service requires: every property that the service
//! omits in some answer (names on tombstones, sizes, hashes, timestamps) is optional, and
//! timestamps stay strings until mapping so that one odd value cannot fail a whole page.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// One page of a collection: `value` plus the paging links.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

/// A driveItem (live or tombstone).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveItem {
    pub id: String,
    pub name: Option<String>,
    pub size: Option<i64>,
    pub web_url: Option<String>,
    pub last_modified_date_time: Option<String>,
    pub parent_reference: Option<ItemReference>,
    pub file: Option<FileFacet>,
    pub folder: Option<FolderFacet>,
    /// Present (usually `{}`) on a drive's root item.
    pub root: Option<Value>,
    /// Present on tombstones: `{"state":"deleted"}` on business drives, `{}` on personal ones.
    pub deleted: Option<Value>,
    /// The directory/Outlook tombstone convention; driveItem delta should not use it, but it is
    /// tolerated.
    #[serde(rename = "@removed")]
    pub removed: Option<Value>,
    /// OneNote notebooks and other packages: folder-like.
    pub package: Option<Value>,
    /// A shortcut to an item in another drive ("shared with me", "Add to my OneDrive").
    pub remote_item: Option<Box<DriveItemRemote>>,
    /// Delta with `Prefer: deltashowsharingchanges` (business drives): `"True"` on items whose
    /// sharing changed since the token.
    #[serde(rename = "@microsoft.graph.sharedChanged")]
    pub shared_changed: Option<Value>,
    /// The `shared` facet. With `Prefer: hierarchicalsharing` (business drives) delta sets it, possibly
    /// empty, only on the roots of permission hierarchies and on items whose sharing changed; an
    /// item without it inherits its parent's permissions.
    pub shared: Option<Value>,
}

/// The `remoteItem` facet: the item in the drive that really holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveItemRemote {
    pub id: String,
    pub name: Option<String>,
    pub size: Option<i64>,
    pub web_url: Option<String>,
    pub last_modified_date_time: Option<String>,
    pub parent_reference: Option<ItemReference>,
    pub file: Option<FileFacet>,
    pub folder: Option<FolderFacet>,
    pub package: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemReference {
    pub drive_id: Option<String>,
    pub drive_type: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub path: Option<String>,
    pub site_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileFacet {
    pub mime_type: Option<String>,
    pub hashes: Option<Hashes>,
}

/// `quickXorHash` is base64; the others are hex. Only quickXorHash is guaranteed on every drive.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hashes {
    pub quick_xor_hash: Option<String>,
    pub sha1_hash: Option<String>,
    pub sha256_hash: Option<String>,
    pub crc32_hash: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderFacet {
    pub child_count: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drive {
    pub id: String,
    pub name: Option<String>,
    pub drive_type: Option<String>,
    pub web_url: Option<String>,
    pub last_modified_date_time: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    pub id: String,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub web_url: Option<String>,
    pub last_modified_date_time: Option<String>,
}

/// A sharing permission.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub id: String,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    pub link: Option<SharingLink>,
    pub granted_to_v2: Option<IdentitySet>,
    pub granted_to_identities_v2: Option<Vec<IdentitySet>>,
    /// Deprecated forms, read only when the V2 ones are absent.
    pub granted_to: Option<IdentitySet>,
    pub granted_to_identities: Option<Vec<IdentitySet>>,
    pub inherited_from: Option<ItemReference>,
    pub invitation: Option<Invitation>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharingLink {
    pub scope: Option<String>,
    #[serde(rename = "type")]
    pub link_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub email: Option<String>,
}

/// A (sharePoint)identitySet: who a permission is granted to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySet {
    pub user: Option<Identity>,
    pub group: Option<Identity>,
    pub application: Option<Identity>,
    pub device: Option<Identity>,
    pub site_user: Option<Identity>,
    pub site_group: Option<Identity>,
    pub share_point_group: Option<Identity>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub id: Option<String>,
    pub display_name: Option<String>,
    /// Not documented but commonly present on ODB/SharePoint identities.
    pub email: Option<String>,
    /// SharePoint claims, e.g. `i:0#.f|membership|upn` or `c:0o.c|federateddirectoryclaimprovider|<group id>`.
    pub login_name: Option<String>,
}

/// A drive's identifiers for SharePoint REST (`GET /drives/{id}?$select=sharePointIds`).
#[derive(Debug, Clone, Deserialize)]
pub struct DriveSharePointIds {
    #[serde(rename = "sharePointIds", alias = "sharepointIds", default)]
    pub sharepoint_ids: Option<SharePointIds>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharePointIds {
    pub site_id: Option<String>,
    /// The site's absolute URL, where its SharePoint REST API (`{siteUrl}/_api/…`) answers.
    pub site_url: Option<String>,
}

/// A SharePoint REST collection (`odata=nometadata` or `minimalmetadata`).
#[derive(Debug, Clone, Deserialize)]
pub struct SharePointPage<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(rename = "odata.nextLink", alias = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

/// A principal in a SharePoint site group (`SP.User`), as `…/sitegroups/GetById({id})/users` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SharePointPrincipal {
    #[serde(default)]
    pub login_name: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// 1 user, 2 distribution list, 4 security group, 8 SharePoint group.
    #[serde(default)]
    pub principal_type: i64,
    #[serde(default)]
    pub user_principal_name: Option<String>,
}

/// A member of a directory collection (`/groups/{id}/transitiveMembers`): users, groups, devices,
/// contacts and service principals, told apart by `@odata.type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryObject {
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    pub id: Option<String>,
    pub mail: Option<String>,
    pub user_principal_name: Option<String>,
}

/// A change-notification subscription as `POST`/`PATCH /subscriptions` return it (the fields kbsync reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub expiration_date_time: DateTime<Utc>,
}

impl Subscription {
    pub fn into_watch(self) -> kbsync_core::datasource::Watch {
        kbsync_core::datasource::Watch {
            id: self.id,
            expires_at: self.expiration_date_time,
        }
    }
}
