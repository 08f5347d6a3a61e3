//! Drive resources to kbsync's datasource types.

use chrono::{DateTime, Utc};
use kbsync_core::datasource::{
    BrowseEntry, ContentHash, EntryKind, ItemKind, ItemSharing, Principal, RemoteItem, RemotePermission,
};

use crate::model::{Drive, File, GOOGLE_APPS_PREFIX, Permission};

/// The `drive_id` of the user's own corpus: My Drive and the items shared with the user. Other
/// `drive_id`s are shared drive ids.
pub const USER_DRIVE: &str = "user";
/// The `drive_id` of the virtual "Shared with me" location of the picker.
pub const SHARED_WITH_ME: &str = "shared-with-me";
/// The hash algorithm of binary files: Drive's `md5Checksum` (lowercase hex).
pub const MD5: &str = "md5";
/// The "hash" of an exported Google file: its `modifiedTime` (see the crate documentation).
pub const MODIFIED_TIME: &str = "modifiedTime";

/// What a Google Docs Editors file is exported to: (its MIME type, the export's MIME type, the
/// extension given to its name).
pub const EXPORTS: &[(&str, &str, &str)] = &[
    (
        "application/vnd.google-apps.document",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    (
        "application/vnd.google-apps.spreadsheet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
    (
        "application/vnd.google-apps.presentation",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pptx",
    ),
];

/// What a file is to kbsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    Folder,
    /// Bytes downloaded with `alt=media`.
    Binary,
    /// A Docs Editors file exported to (MIME type, extension).
    Export(&'a str, &'a str),
    /// A shortcut (followed to its target by the caller).
    Shortcut,
    /// A Google type without bytes kbsync can read (forms, sites, maps, drawings, …): left out.
    Unsupported,
}

pub fn content(mime: &str) -> Content<'static> {
    if mime == crate::model::FOLDER_MIME {
        return Content::Folder;
    }
    if mime == crate::model::SHORTCUT_MIME {
        return Content::Shortcut;
    }
    if let Some((_, export, ext)) = EXPORTS.iter().find(|(m, _, _)| *m == mime) {
        return Content::Export(export, ext);
    }
    if mime.starts_with(GOOGLE_APPS_PREFIX) {
        return Content::Unsupported;
    }
    Content::Binary
}

/// The export of a Docs Editors file by its Google MIME type.
pub fn export_of(mime: &str) -> Option<(&'static str, &'static str)> {
    match content(mime) {
        Content::Export(m, e) => Some((m, e)),
        _ => None,
    }
}

/// `name` with `.ext` appended unless it already ends so.
fn with_extension(name: &str, ext: &str) -> String {
    let suffix = format!(".{ext}");
    if name.to_ascii_lowercase().ends_with(&suffix) {
        name.to_string()
    } else {
        format!("{name}{suffix}")
    }
}

pub fn timestamp(s: Option<&String>) -> Option<DateTime<Utc>> {
    s.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A file as a [`RemoteItem`] of `drive_id`: `None` for what kbsync does not sync (shortcuts,
/// which the caller resolves, and Google types without readable bytes). A trashed file is a
/// tombstone. `scope_id` is reported as [`ItemKind::Root`], as is a folder without parents (the
/// root of My Drive or of a shared drive).
pub fn remote_item(file: &File, drive_id: &str, scope_id: Option<&str>) -> Option<RemoteItem> {
    if file.trashed {
        return Some(tombstone(&file.id, drive_id));
    }
    let parent_id = file.parents.first().cloned();
    let mut item = RemoteItem {
        id: file.id.clone(),
        drive_id: drive_id.to_string(),
        kind: ItemKind::File,
        name: file.name.clone(),
        parent_id,
        size: None,
        hash: None,
        mime: None,
        web_url: file.web_view_link.clone(),
        modified_at: timestamp(file.modified_time.as_ref()),
        deleted: false,
        // Drive does not say which items carry permissions of their own: every folder is read.
        sharing: ItemSharing::default(),
    };
    match content(file.mime()) {
        Content::Folder => {
            let is_root = scope_id == Some(file.id.as_str()) || file.parents.is_empty();
            item.kind = if is_root { ItemKind::Root } else { ItemKind::Folder };
            item.sharing.own = true;
        }
        Content::Binary => {
            item.size = file.size;
            item.mime = file.mime_type.clone();
            item.hash = file
                .md5_checksum
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| ContentHash {
                    algorithm: MD5.into(),
                    value: h.to_ascii_lowercase(),
                });
        }
        Content::Export(export, ext) => {
            item.name = file.name.as_deref().map(|n| with_extension(n, ext));
            item.mime = Some(export.to_string());
            item.hash = file.modified_time.as_ref().map(|t| ContentHash {
                algorithm: MODIFIED_TIME.into(),
                value: t.clone(),
            });
        }
        Content::Shortcut | Content::Unsupported => return None,
    }
    Some(item)
}

/// A shortcut to a file, reported under the shortcut's own id, name and place, with the content
/// (type, size, hash) of its `target`.
pub fn shortcut_item(shortcut: &File, target: &File, drive_id: &str) -> Option<RemoteItem> {
    if shortcut.trashed || target.trashed {
        return Some(tombstone(&shortcut.id, drive_id));
    }
    if !matches!(content(target.mime()), Content::Binary | Content::Export(..)) {
        return None;
    }
    let mut item = remote_item(target, drive_id, None)?;
    item.id = shortcut.id.clone();
    item.parent_id = shortcut.parents.first().cloned();
    item.web_url = shortcut.web_view_link.clone().or(item.web_url);
    if let Some(name) = &shortcut.name {
        item.name = Some(match content(target.mime()) {
            Content::Export(_, ext) => with_extension(name, ext),
            _ => name.clone(),
        });
    }
    Some(item)
}

/// A removed or trashed item: the engine forgets it by id.
pub fn tombstone(id: &str, drive_id: &str) -> RemoteItem {
    RemoteItem {
        id: id.to_string(),
        drive_id: drive_id.to_string(),
        kind: ItemKind::File,
        name: None,
        parent_id: None,
        size: None,
        hash: None,
        mime: None,
        web_url: None,
        modified_at: None,
        deleted: true,
        sharing: ItemSharing::default(),
    }
}

/// A child in a folder listing as a picker row (`None` for what kbsync does not sync). A
/// shortcut shows as what it points to, under its own name, and opens (or is picked as) its
/// target.
pub fn browse_entry(file: &File, drive_id: &str) -> Option<BrowseEntry> {
    let (kind, id) = match content(file.mime()) {
        Content::Folder => (EntryKind::Folder, file.id.clone()),
        Content::Binary | Content::Export(..) => (EntryKind::File, file.id.clone()),
        Content::Shortcut => {
            let details = file.shortcut_details.as_ref()?;
            let target = details.target_id.clone()?;
            match content(details.target_mime_type.as_deref().unwrap_or_default()) {
                Content::Folder => (EntryKind::Folder, target),
                Content::Binary | Content::Export(..) => (EntryKind::File, target),
                Content::Shortcut | Content::Unsupported => return None,
            }
        }
        Content::Unsupported => return None,
    };
    let name = match content(file.mime()) {
        Content::Export(_, ext) => file.name.as_deref().map(|n| with_extension(n, ext)),
        _ => file.name.clone(),
    }
    .unwrap_or_else(|| id.clone());
    Some(BrowseEntry {
        kind,
        id,
        drive_id: Some(drive_id.to_string()),
        name,
        size: match content(file.mime()) {
            Content::Binary => file.size,
            _ => None,
        },
        child_count: None,
        web_url: file.web_view_link.clone(),
        modified_at: timestamp(file.modified_time.as_ref()),
    })
}

/// The user's My Drive as a picker row.
pub fn my_drive_entry() -> BrowseEntry {
    BrowseEntry {
        kind: EntryKind::Drive,
        id: USER_DRIVE.to_string(),
        drive_id: Some(USER_DRIVE.to_string()),
        name: "My Drive".to_string(),
        size: None,
        child_count: None,
        web_url: None,
        modified_at: None,
    }
}

/// "Shared with me": a place to go into, not something to sync (like a SharePoint site).
pub fn shared_with_me_entry() -> BrowseEntry {
    BrowseEntry {
        kind: EntryKind::Site,
        id: SHARED_WITH_ME.to_string(),
        drive_id: Some(SHARED_WITH_ME.to_string()),
        name: "Shared with me".to_string(),
        size: None,
        child_count: None,
        web_url: None,
        modified_at: None,
    }
}

/// A shared drive as a picker row.
pub fn drive_entry(drive: &Drive) -> BrowseEntry {
    BrowseEntry {
        kind: EntryKind::Drive,
        id: drive.id.clone(),
        drive_id: Some(drive.id.clone()),
        name: drive.name.clone().unwrap_or_else(|| drive.id.clone()),
        size: None,
        child_count: None,
        web_url: None,
        modified_at: timestamp(drive.created_time.as_ref()),
    }
}

/// Folders first, then by name (case-insensitive), then by id.
pub fn sort_entries(entries: &mut [BrowseEntry]) {
    entries.sort_by(|a, b| {
        let rank = |e: &BrowseEntry| u8::from(e.kind == EntryKind::File);
        rank(a)
            .cmp(&rank(b))
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// A Drive permission in kbsync's vocabulary; `None` for a deleted account (it names no one who
/// can sign in) or a type Drive may add later.
///
/// * `user` → `Principal::User { email }`, `group` → `Principal::Group { email }`, both with the
///   permission id (Drive's id of the grantee, the same on every file) as `id`;
/// * `domain` → `Principal::Link { scope: "organization" }` (the domain is in the permission id's
///   place: `domain:{name}`), `anyone` → `Principal::Link { scope: "anonymous" }`. Whether
///   `allowFileDiscovery` is set does not matter: anyone with the link can open the file.
/// * `inherited_from`: the `inheritedFrom` of an inherited `permissionDetails` entry (shared
///   drives); `None` for direct grants and on My Drive, where Drive reports no inheritance.
pub fn remote_permission(p: &Permission) -> Option<RemotePermission> {
    if p.deleted {
        return None;
    }
    let id = p.id.clone();
    let principal = match p.kind.as_deref()? {
        "user" => Principal::User {
            id: id.clone(),
            email: p.email_address.clone(),
            display_name: p.display_name.clone(),
        },
        "group" => Principal::Group {
            id: id.clone(),
            email: p.email_address.clone(),
            display_name: p.display_name.clone(),
        },
        "domain" => Principal::Link {
            scope: "organization".into(),
        },
        "anyone" => Principal::Link {
            scope: "anonymous".into(),
        },
        _ => return None,
    };
    let id = id.unwrap_or_else(|| match (p.kind.as_deref(), &p.domain) {
        (Some("domain"), Some(d)) => format!("domain:{d}"),
        (kind, _) => kind.unwrap_or_default().to_string(),
    });
    let mut roles: Vec<String> = p.role.iter().cloned().collect();
    for d in &p.permission_details {
        if let Some(r) = &d.role
            && !roles.contains(r)
        {
            roles.push(r.clone());
        }
    }
    let inherited = p
        .permission_details
        .iter()
        .filter(|d| d.inherited)
        .collect::<Vec<_>>();
    // Inherited only when every detail is: a direct grant on top of an inherited one is the
    // item's own.
    let inherited_from = if !inherited.is_empty() && inherited.len() == p.permission_details.len() {
        inherited.iter().find_map(|d| d.inherited_from.clone())
    } else {
        None
    };
    Some(RemotePermission {
        id,
        roles,
        principals: vec![principal],
        inherited_from,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn file(json: serde_json::Value) -> File {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn docs_editors_files_are_exported_under_a_name_with_the_export_extension() {
        let doc = file(serde_json::json!({
            "id": "d1", "name": "Plan", "mimeType": "application/vnd.google-apps.document",
            "parents": ["f"], "size": "1024", "modifiedTime": "2026-01-02T03:04:05.000Z", "version": "12"
        }));
        let item = remote_item(&doc, USER_DRIVE, None).unwrap();
        assert_eq!(item.name.as_deref(), Some("Plan.docx"));
        assert_eq!(item.mime.as_deref(), Some(EXPORTS[0].1));
        assert_eq!(item.size, None, "the export's length is not the stored size");
        assert_eq!(
            item.hash,
            Some(ContentHash {
                algorithm: MODIFIED_TIME.into(),
                value: "2026-01-02T03:04:05.000Z".into()
            })
        );
        let form = file(
            serde_json::json!({"id": "x", "name": "Poll", "mimeType": "application/vnd.google-apps.form"}),
        );
        assert_eq!(remote_item(&form, USER_DRIVE, None), None);
    }

    #[test]
    fn a_binary_file_carries_its_md5_and_its_size_given_as_a_string() {
        let pdf = file(serde_json::json!({
            "id": "p", "name": "a.pdf", "mimeType": "application/pdf", "parents": ["f"],
            "size": "12345", "md5Checksum": "0CC175B9C0F1B6A831C399E269772661"
        }));
        let item = remote_item(&pdf, "drive-1", None).unwrap();
        assert_eq!(item.size, Some(12345));
        assert_eq!(item.hash.unwrap().value, "0cc175b9c0f1b6a831c399e269772661");
        assert_eq!(item.parent_id.as_deref(), Some("f"));
        assert_eq!(item.drive_id, "drive-1");
    }
}
