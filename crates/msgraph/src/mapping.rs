//! Graph wire types → kbsync's datasource types.

use chrono::{DateTime, Utc};
use kbsync_core::datasource::{
    BrowseEntry, ContentHash, EntryKind, GroupMember, ItemKind, ItemSharing, Principal, RemoteItem,
    RemotePermission,
};

use crate::model::{DirectoryObject, DriveItem, Identity, IdentitySet, Permission, Site};

/// The algorithm name of [`ContentHash`]es this datasource reports and verifies.
pub const QUICK_XOR_HASH: &str = "quickXorHash";
/// Reported only when an item has no quickXorHash (older personal items); not verified.
pub const SHA1_HASH: &str = "sha1Hash";

/// Prefix of the `BrowseLocation::drive_id` that names a SharePoint site instead of a drive.
pub const SITE_PREFIX: &str = "site:";

fn timestamp(s: Option<&String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A driveItem as a [`RemoteItem`].
///
/// * `scope_id`: the delta scope; that item is reported as [`ItemKind::Root`] (like a drive's
///   root, which carries the `root` facet).
/// * `fallback_drive_id`: used when the item has no `parentReference.driveId`.
pub fn remote_item(item: &DriveItem, fallback_drive_id: &str, scope_id: Option<&str>) -> RemoteItem {
    let deleted = item.deleted.is_some() || item.removed.is_some();
    let kind = if item.root.is_some() || scope_id == Some(item.id.as_str()) {
        ItemKind::Root
    } else if item.folder.is_some() || item.package.is_some() {
        ItemKind::Folder
    } else {
        // Files, and tombstones that carry neither facet (the engine removes them by id).
        ItemKind::File
    };
    let parent = item.parent_reference.as_ref();
    let hashes = item.file.as_ref().and_then(|f| f.hashes.as_ref());
    let hash = if deleted {
        None
    } else {
        hashes.and_then(|h| match (&h.quick_xor_hash, &h.sha1_hash) {
            (Some(q), _) if !q.is_empty() => Some(ContentHash {
                algorithm: QUICK_XOR_HASH.into(),
                value: q.clone(),
            }),
            (_, Some(s)) if !s.is_empty() => Some(ContentHash {
                algorithm: SHA1_HASH.into(),
                value: s.clone(),
            }),
            _ => None,
        })
    };
    RemoteItem {
        id: item.id.clone(),
        drive_id: parent
            .and_then(|p| p.drive_id.clone())
            .unwrap_or_else(|| fallback_drive_id.to_string()),
        kind,
        name: item.name.clone(),
        parent_id: parent.and_then(|p| p.id.clone()),
        // ODB reports `size: 0` on tombstones, which means nothing.
        size: if deleted { None } else { item.size },
        hash,
        mime: item.file.as_ref().and_then(|f| f.mime_type.clone()),
        web_url: item.web_url.clone(),
        modified_at: timestamp(item.last_modified_date_time.as_ref()),
        deleted,
        sharing: ItemSharing {
            own: !deleted && item.shared.is_some(),
            changed: sharing_changed(item),
        },
    }
}

/// Whether a delta item carries the `@microsoft.graph.sharedChanged` annotation (`"True"`; a
/// JSON `true` is accepted too).
pub fn sharing_changed(item: &DriveItem) -> bool {
    match &item.shared_changed {
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        Some(serde_json::Value::Bool(b)) => *b,
        _ => false,
    }
}

/// A child in a folder listing (or a "shared with me" item) as a picker row. Shortcuts to items
/// of other drives (`remoteItem`) point at the drive that holds the item. `None` for rows the
/// picker cannot use (deleted items).
pub fn browse_entry(item: &DriveItem, fallback_drive_id: Option<&str>) -> Option<BrowseEntry> {
    if item.deleted.is_some() || item.removed.is_some() {
        return None;
    }
    if let Some(remote) = &item.remote_item {
        let folder = remote.folder.is_some() || remote.package.is_some() || item.folder.is_some();
        return Some(BrowseEntry {
            kind: if folder {
                EntryKind::Folder
            } else {
                EntryKind::File
            },
            id: remote.id.clone(),
            drive_id: remote
                .parent_reference
                .as_ref()
                .and_then(|p| p.drive_id.clone())
                .or_else(|| fallback_drive_id.map(str::to_string)),
            name: item
                .name
                .clone()
                .or_else(|| remote.name.clone())
                .unwrap_or_else(|| remote.id.clone()),
            size: remote.size.or(item.size),
            child_count: remote.folder.as_ref().and_then(|f| f.child_count),
            web_url: remote.web_url.clone().or_else(|| item.web_url.clone()),
            modified_at: timestamp(remote.last_modified_date_time.as_ref())
                .or_else(|| timestamp(item.last_modified_date_time.as_ref())),
        });
    }
    let folder = item.folder.is_some() || item.package.is_some();
    Some(BrowseEntry {
        kind: if folder {
            EntryKind::Folder
        } else {
            EntryKind::File
        },
        id: item.id.clone(),
        drive_id: item
            .parent_reference
            .as_ref()
            .and_then(|p| p.drive_id.clone())
            .or_else(|| fallback_drive_id.map(str::to_string)),
        name: item.name.clone().unwrap_or_else(|| item.id.clone()),
        size: item.size,
        child_count: item.folder.as_ref().and_then(|f| f.child_count),
        web_url: item.web_url.clone(),
        modified_at: timestamp(item.last_modified_date_time.as_ref()),
    })
}

/// A drive as a picker row; open it with `BrowseLocation { drive_id: Some(id), item_id: None }`.
pub fn drive_entry(drive: &crate::model::Drive) -> BrowseEntry {
    BrowseEntry {
        kind: EntryKind::Drive,
        id: drive.id.clone(),
        drive_id: Some(drive.id.clone()),
        name: drive.name.clone().unwrap_or_else(|| drive.id.clone()),
        size: None,
        child_count: None,
        web_url: drive.web_url.clone(),
        modified_at: timestamp(drive.last_modified_date_time.as_ref()),
    }
}

/// A SharePoint site as a picker row. Its `drive_id` is `site:{site id}`: opening it with
/// `BrowseLocation { drive_id: Some("site:{id}"), item_id: None }` lists its document libraries.
pub fn site_entry(site: &Site) -> BrowseEntry {
    BrowseEntry {
        kind: EntryKind::Site,
        id: site.id.clone(),
        drive_id: Some(format!("{SITE_PREFIX}{}", site.id)),
        name: site
            .display_name
            .clone()
            .or_else(|| site.name.clone())
            .unwrap_or_else(|| site.id.clone()),
        size: None,
        child_count: None,
        web_url: site.web_url.clone(),
        modified_at: timestamp(site.last_modified_date_time.as_ref()),
    }
}

/// Picker order: drives, sites, folders, files; by name (case-insensitive) within each.
pub fn sort_entries(entries: &mut [BrowseEntry]) {
    fn rank(k: EntryKind) -> u8 {
        match k {
            EntryKind::Drive => 0,
            EntryKind::Site => 1,
            EntryKind::Folder => 2,
            EntryKind::File => 3,
        }
    }
    entries.sort_by(|a, b| {
        rank(a.kind)
            .cmp(&rank(b.kind))
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// The group id in a SharePoint group claim (`c:0o.c|federateddirectoryclaimprovider|<id>`,
/// `c:0t.c|tenant|<id>`, with an optional `_o` owners suffix kept as is).
fn group_claim(login_name: &str) -> Option<&str> {
    let (prefix, id) = login_name.rsplit_once('|')?;
    (prefix.starts_with("c:0o.c|") || prefix.starts_with("c:0t.c|")).then_some(id)
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

fn user(i: &Identity) -> Principal {
    Principal::User {
        id: non_empty(&i.id),
        email: non_empty(&i.email),
        display_name: non_empty(&i.display_name),
    }
}

fn group(id: Option<String>, i: &Identity) -> Principal {
    Principal::Group {
        id,
        email: non_empty(&i.email),
        display_name: non_empty(&i.display_name),
    }
}

/// The principals one identity set names, on an item of drive `drive_id`.
///
/// * `user` → a user (with or without email); `group` → a group by its Entra id.
/// * `siteUser` accompanies `user`/`group` for the same person on ODB/SharePoint and is then
///   ignored. Alone, it is a user known only to the site (`id: None`: the site-local number means
///   nothing elsewhere), or an Entra group when its claim is a group claim.
/// * `siteGroup` and `sharePointGroup` name one SharePoint group of the drive's site →
///   [`Principal::SiteGroup`] with `site` = `drive_id`. Its id is the site-local number of
///   `siteGroup` (what SharePoint REST's `sitegroups/GetById` takes), else the id of
///   `sharePointGroup`. Graph cannot list their members; SharePoint REST can.
/// * `application` and `device` name nobody kbsync can grant to, and are left out.
fn identity_set(set: &IdentitySet, drive_id: &str, out: &mut Vec<Principal>) {
    let mut named = false;
    if let Some(u) = &set.user {
        out.push(user(u));
        named = true;
    }
    if let Some(g) = &set.group {
        out.push(group(non_empty(&g.id), g));
        named = true;
    }
    if let (false, Some(su)) = (named, &set.site_user) {
        match su.login_name.as_deref().and_then(group_claim) {
            Some(gid) => out.push(group(Some(gid.to_string()), su)),
            None => out.push(Principal::User {
                id: None,
                email: non_empty(&su.email),
                display_name: non_empty(&su.display_name),
            }),
        }
    }
    let site_group = [&set.site_group, &set.share_point_group]
        .into_iter()
        .flatten()
        .find_map(|g| non_empty(&g.id).map(|id| (id, g)));
    if let Some((id, g)) = site_group {
        out.push(Principal::SiteGroup {
            site: drive_id.to_string(),
            id,
            display_name: non_empty(&g.display_name),
        });
    }
}

/// A permission as a [`RemotePermission`]: a link is a [`Principal::Link`] with its scope (its
/// type shows in `roles`: view → read, edit → write), followed by the people a `users` link names;
/// direct grants name their users and groups. `inherited_from` is the ancestor's id (personal
/// drives only: ODB/SharePoint never report it). `drive_id` is the drive of the item the
/// permission is on: the site a SharePoint group belongs to is found from it.
pub fn remote_permission(p: &Permission, drive_id: &str) -> RemotePermission {
    let mut principals = Vec::new();
    if let Some(link) = &p.link {
        principals.push(Principal::Link {
            scope: link.scope.clone().unwrap_or_else(|| "unknown".into()),
        });
    }
    match (&p.granted_to_v2, &p.granted_to) {
        (Some(set), _) | (None, Some(set)) => identity_set(set, drive_id, &mut principals),
        (None, None) => {}
    }
    let identities = p
        .granted_to_identities_v2
        .as_ref()
        .or(p.granted_to_identities.as_ref());
    for set in identities.into_iter().flatten() {
        identity_set(set, drive_id, &mut principals);
    }
    if principals.is_empty()
        && let Some(email) = p.invitation.as_ref().and_then(|i| non_empty(&i.email))
    {
        principals.push(Principal::User {
            id: None,
            email: Some(email),
            display_name: None,
        });
    }
    let mut unique: Vec<Principal> = Vec::with_capacity(principals.len());
    for principal in principals {
        if !unique.contains(&principal) {
            unique.push(principal);
        }
    }
    RemotePermission {
        id: p.id.clone(),
        roles: p.roles.clone().unwrap_or_default(),
        principals: unique,
        inherited_from: p
            .inherited_from
            .as_ref()
            .and_then(|r| r.id.clone().or_else(|| r.path.clone())),
    }
}

/// The `@odata.type` of users in directory collections.
pub const USER_TYPE: &str = "#microsoft.graph.user";

/// A member of a group listing as a [`GroupMember`]: users only (a nested group's users are in
/// the transitive listing themselves; devices, contacts and service principals read nothing).
/// Its addresses are its mail and its sign-in name (UPN), each once. An object without
/// `@odata.type` is taken for a user when it has a sign-in name, which only users have.
pub fn group_member(o: &DirectoryObject) -> Option<GroupMember> {
    let is_user = match o.odata_type.as_deref() {
        Some(t) => t.eq_ignore_ascii_case(USER_TYPE),
        None => o.user_principal_name.is_some(),
    };
    if !is_user {
        return None;
    }
    let mut emails: Vec<String> = Vec::new();
    for address in [&o.mail, &o.user_principal_name]
        .into_iter()
        .filter_map(non_empty)
    {
        if !emails.iter().any(|e| e.eq_ignore_ascii_case(&address)) {
            emails.push(address);
        }
    }
    Some(GroupMember {
        id: non_empty(&o.id),
        emails,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn item(json: &str) -> DriveItem {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_odb_tombstone_without_name_is_deleted_and_keeps_its_parent() {
        let t = item(
            r#"{"id":"01WH","parentReference":{"driveId":"b!x","driveType":"business","id":"01PA"},"deleted":{"state":"deleted"},"size":0,"file":{}}"#,
        );
        let r = remote_item(&t, "fallback", None);
        assert!(r.deleted);
        assert_eq!(r.name, None);
        assert_eq!(r.size, None);
        assert_eq!(r.drive_id, "b!x");
        assert_eq!(r.parent_id.as_deref(), Some("01PA"));
        assert_eq!(r.kind, ItemKind::File);
    }

    #[test]
    fn removed_annotation_is_tolerated_as_a_tombstone() {
        let r = remote_item(&item(r#"{"id":"a","@removed":{"reason":"deleted"}}"#), "d", None);
        assert!(r.deleted);
        assert_eq!(r.drive_id, "d");
    }

    #[test]
    fn quick_xor_hash_wins_over_sha1_which_is_only_a_fallback() {
        let both = item(
            r#"{"id":"a","name":"x.txt","size":3,"file":{"mimeType":"text/plain","hashes":{"quickXorHash":"AAA=","sha1Hash":"ABCD"}},"lastModifiedDateTime":"2024-01-02T03:04:05Z"}"#,
        );
        let r = remote_item(&both, "d", None);
        assert_eq!(
            r.hash,
            Some(ContentHash {
                algorithm: "quickXorHash".into(),
                value: "AAA=".into()
            })
        );
        assert_eq!(r.mime.as_deref(), Some("text/plain"));
        assert!(r.modified_at.is_some());
        let sha1_only = item(r#"{"id":"a","file":{"hashes":{"sha1Hash":"ABCD"}}}"#);
        assert_eq!(
            remote_item(&sha1_only, "d", None).hash.unwrap().algorithm,
            "sha1Hash"
        );
    }

    #[test]
    fn the_root_facet_and_the_delta_scope_are_roots() {
        let root = item(r#"{"id":"r","name":"root","root":{},"folder":{"childCount":2}}"#);
        assert_eq!(remote_item(&root, "d", None).kind, ItemKind::Root);
        let scope = item(r#"{"id":"s","name":"Docs","folder":{"childCount":2}}"#);
        assert_eq!(remote_item(&scope, "d", Some("s")).kind, ItemKind::Root);
        assert_eq!(remote_item(&scope, "d", None).kind, ItemKind::Folder);
    }

    #[test]
    fn a_bad_timestamp_does_not_fail_the_item() {
        let r = remote_item(
            &item(r#"{"id":"a","lastModifiedDateTime":"yesterday"}"#),
            "d",
            None,
        );
        assert_eq!(r.modified_at, None);
    }

    #[test]
    fn a_shared_item_points_at_the_drive_that_holds_it() {
        let shared = item(
            r#"{"id":"local","name":"Team Plans","remoteItem":{"id":"01REMOTE","parentReference":{"driveId":"b!other","driveType":"business"},"folder":{"childCount":4},"webUrl":"https://x/Plans"}}"#,
        );
        let e = browse_entry(&shared, None).unwrap();
        assert_eq!(e.kind, EntryKind::Folder);
        assert_eq!(e.id, "01REMOTE");
        assert_eq!(e.drive_id.as_deref(), Some("b!other"));
        assert_eq!(e.name, "Team Plans");
        assert_eq!(e.child_count, Some(4));
        let tombstone = item(r#"{"id":"x","deleted":{}}"#);
        assert!(browse_entry(&tombstone, Some("d")).is_none());
    }

    #[test]
    fn group_claims_in_site_users_become_groups() {
        let p: Permission = serde_json::from_str(
            r#"{"id":"p","roles":["read"],"grantedToV2":{"siteUser":{"id":"7","displayName":"Team","loginName":"c:0o.c|federateddirectoryclaimprovider|g-1"}}}"#,
        )
        .unwrap();
        assert_eq!(
            remote_permission(&p, "b!d").principals,
            vec![Principal::Group {
                id: Some("g-1".into()),
                email: None,
                display_name: Some("Team".into())
            }]
        );
    }

    #[test]
    fn deprecated_granted_to_is_read_when_v2_is_absent() {
        let p: Permission = serde_json::from_str(
            r#"{"id":"p","roles":["write"],"grantedTo":{"user":{"id":"u","displayName":"U","email":"u@x"}},"inheritedFrom":{"driveId":"d","id":"parent"}}"#,
        )
        .unwrap();
        let r = remote_permission(&p, "b!d");
        assert_eq!(r.inherited_from.as_deref(), Some("parent"));
        assert_eq!(
            r.principals,
            vec![Principal::User {
                id: Some("u".into()),
                email: Some("u@x".into()),
                display_name: Some("U".into())
            }]
        );
    }

    #[test]
    fn site_groups_name_the_drive_they_were_found_on() {
        let p: Permission = serde_json::from_str(
            r#"{"id":"p","roles":["read"],"grantedToV2":{"siteGroup":{"id":"4","displayName":"Team Visitors","loginName":"Team Visitors"}}}"#,
        )
        .unwrap();
        assert_eq!(
            remote_permission(&p, "b!lib").principals,
            vec![Principal::SiteGroup {
                site: "b!lib".into(),
                id: "4".into(),
                display_name: Some("Team Visitors".into())
            }]
        );
    }

    #[test]
    fn a_site_group_named_twice_is_one_principal_with_its_site_local_id() {
        let both: Permission = serde_json::from_str(
            r#"{"id":"p","roles":["write"],"grantedToV2":{"siteGroup":{"id":"5","displayName":"Members"},"sharePointGroup":{"id":"0f3a","displayName":"Members"}}}"#,
        )
        .unwrap();
        assert_eq!(
            remote_permission(&both, "b!lib").principals,
            vec![Principal::SiteGroup {
                site: "b!lib".into(),
                id: "5".into(),
                display_name: Some("Members".into())
            }]
        );
        let newer_only: Permission = serde_json::from_str(
            r#"{"id":"p","roles":["write"],"grantedToV2":{"sharePointGroup":{"id":"0f3a","displayName":"Members"}}}"#,
        )
        .unwrap();
        assert!(matches!(
            &remote_permission(&newer_only, "b!lib").principals[..],
            [Principal::SiteGroup { id, .. }] if id == "0f3a"
        ));
    }

    #[test]
    fn entra_groups_stay_groups_next_to_their_site_user() {
        let p: Permission = serde_json::from_str(
            r#"{"id":"p","roles":["read"],"grantedToV2":{"group":{"id":"g-1","displayName":"Sales","email":"sales@x"},"siteUser":{"id":"9","loginName":"c:0o.c|federateddirectoryclaimprovider|g-1"}}}"#,
        )
        .unwrap();
        assert_eq!(
            remote_permission(&p, "b!d").principals,
            vec![Principal::Group {
                id: Some("g-1".into()),
                email: Some("sales@x".into()),
                display_name: Some("Sales".into())
            }]
        );
    }

    #[test]
    fn the_shared_facet_makes_an_item_the_root_of_its_permissions_and_the_annotation_a_change() {
        let root = item(r#"{"id":"a","name":"a.txt","shared":{},"@microsoft.graph.sharedChanged":"True"}"#);
        assert_eq!(
            remote_item(&root, "d", None).sharing,
            ItemSharing {
                own: true,
                changed: true
            }
        );
        let inherits = item(r#"{"id":"b","name":"b.txt"}"#);
        assert_eq!(remote_item(&inherits, "d", None).sharing, ItemSharing::default());
    }

    #[test]
    fn group_members_are_users_with_their_mail_and_sign_in_name_once() {
        let o = |json: &str| -> DirectoryObject { serde_json::from_str(json).unwrap() };
        assert_eq!(
            group_member(&o(
                r##"{"@odata.type":"#microsoft.graph.user","id":"u1","mail":"Ann@x.com","userPrincipalName":"ann@x.com"}"##
            )),
            Some(GroupMember {
                id: Some("u1".into()),
                emails: vec!["Ann@x.com".into()]
            })
        );
        assert_eq!(
            group_member(&o(
                r##"{"@odata.type":"#microsoft.graph.user","id":"u2","mail":null,"userPrincipalName":"ben@x.onmicrosoft.com"}"##
            ))
            .unwrap()
            .emails,
            ["ben@x.onmicrosoft.com"]
        );
        assert_eq!(
            group_member(&o(
                r##"{"@odata.type":"#microsoft.graph.group","id":"g","mail":"g@x.com"}"##
            )),
            None
        );
        assert_eq!(
            group_member(&o(r##"{"@odata.type":"#microsoft.graph.device","id":"d"}"##)),
            None
        );
    }
}
