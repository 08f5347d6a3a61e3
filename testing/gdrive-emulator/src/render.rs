//! Drive v3 resources as JSON, as one user sees them: files, permissions, shared drives, changes.

use crate::clock::google_time;
use crate::store::{
    Content, DocBody, File, GOOGLE_DOC, GOOGLE_SHEET, GOOGLE_SLIDES, Grant, Grantee, Store,
    grantee_permission_id, role_rank,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Export targets per Docs Editors type (Google's table), and whether the emulator produces them.
pub(crate) fn export_formats(mime: &str) -> &'static [&'static str] {
    match mime {
        GOOGLE_DOC => &[
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.oasis.opendocument.text",
            "application/rtf",
            "application/pdf",
            "text/plain",
            "text/html",
            "application/zip",
            "application/epub+zip",
            "text/markdown",
        ],
        GOOGLE_SHEET => &[
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.oasis.opendocument.spreadsheet",
            "application/pdf",
            "application/zip",
            "text/csv",
            "text/tab-separated-values",
        ],
        GOOGLE_SLIDES => &[
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/vnd.oasis.opendocument.presentation",
            "application/pdf",
            "text/plain",
            "image/jpeg",
            "image/png",
            "image/svg+xml",
        ],
        _ => &[],
    }
}

fn web_view_link(f: &File) -> String {
    match f.mime_type.as_str() {
        GOOGLE_DOC => format!("https://docs.google.com/document/d/{}/edit?usp=drivesdk", f.id),
        GOOGLE_SHEET => format!(
            "https://docs.google.com/spreadsheets/d/{}/edit?usp=drivesdk",
            f.id
        ),
        GOOGLE_SLIDES => format!(
            "https://docs.google.com/presentation/d/{}/edit?usp=drivesdk",
            f.id
        ),
        crate::store::FOLDER => format!("https://drive.google.com/drive/folders/{}", f.id),
        _ => format!("https://drive.google.com/file/d/{}/view?usp=drivesdk", f.id),
    }
}

fn user_json(store: &Store, user_id: &str, me: &str) -> Value {
    match store.users.get(user_id) {
        Some(u) => json!({
            "kind": "drive#user",
            "displayName": u.name,
            "emailAddress": u.email,
            "permissionId": u.permission_id,
            "me": u.id == me,
        }),
        None => json!({"kind": "drive#user"}),
    }
}

/// The file resource with every field the emulator knows (the `fields` mask trims it).
pub(crate) fn file_json(store: &Store, f: &File, me: &str) -> Value {
    let role = store.role_for(me, &f.id, true);
    let rank = role.as_deref().map_or(0, role_rank);
    let can_share = rank >= role_rank("writer");
    let is_doc = matches!(f.content, Content::Doc(_));
    let mut v = json!({
        "kind": "drive#file",
        "id": f.id,
        "name": f.name,
        "mimeType": f.mime_type,
        "starred": false,
        "trashed": store.trashed(&f.id),
        "explicitlyTrashed": f.explicitly_trashed,
        "createdTime": google_time(f.created),
        "modifiedTime": google_time(f.modified),
        "version": f.version.to_string(),
        "webViewLink": web_view_link(f),
        "viewedByMe": true,
        "spaces": ["drive"],
        "capabilities": {
            "canDownload": true,
            "canCopy": !f.is_folder(),
            "canEdit": rank >= role_rank("writer"),
            "canRename": rank >= role_rank("writer"),
            "canShare": can_share,
            "canTrash": rank >= role_rank("fileOrganizer") || role.as_deref() == Some("owner"),
            "canDelete": rank >= role_rank("organizer") || role.as_deref() == Some("owner"),
            "canListChildren": f.is_folder(),
            "canReadRevisions": !f.is_folder(),
            "canAddMyDriveParent": f.drive_id.is_none(),
        },
    });
    if let Some(p) = &f.parent
        && store.role_for(me, p, true).is_some()
    {
        v["parents"] = json!([p]);
    }
    if let Some(size) = f.size() {
        v["size"] = json!(size.to_string());
        v["quotaBytesUsed"] = json!(if is_doc { "0".to_string() } else { size.to_string() });
    } else {
        v["quotaBytesUsed"] = json!("0");
    }
    if let Content::Blob(b) = &f.content {
        v["md5Checksum"] = json!(f.md5.clone().unwrap_or_default());
        use sha2::Digest;
        v["sha256Checksum"] = json!(hex::encode(sha2::Sha256::digest(b)));
        v["headRevisionId"] = json!(format!("0B{:0>20}", f.version));
        v["originalFilename"] = json!(f.name);
        v["webContentLink"] = json!(format!("https://drive.google.com/uc?id={}&export=download", f.id));
        if let Some((_, ext)) = f.name.rsplit_once('.')
            && !ext.is_empty()
        {
            v["fileExtension"] = json!(ext);
            v["fullFileExtension"] = json!(ext);
        }
    }
    if is_doc {
        let links: BTreeMap<&str, String> = export_formats(&f.mime_type)
            .iter()
            .map(|m| {
                (
                    *m,
                    format!(
                        "https://docs.google.com/feeds/download/documents/export/Export?id={}&exportFormat={}",
                        f.id,
                        m.rsplit('/').next().unwrap_or(m)
                    ),
                )
            })
            .collect();
        v["exportLinks"] = json!(links);
    }
    if let Some((target, target_mime)) = &f.shortcut_target {
        v["shortcutDetails"] = json!({"targetId": target, "targetMimeType": target_mime});
    }
    if let Some(d) = &f.drive_id {
        v["driveId"] = json!(d);
        v["teamDriveId"] = json!(d);
    } else if let Some(owner) = &f.owner {
        v["owners"] = json!([user_json(store, owner, me)]);
        v["ownedByMe"] = json!(owner == me);
        let shared = store.ancestry(&f.id).iter().any(|a| !a.grants.is_empty());
        v["shared"] = json!(shared);
        if let Some(t) = f.shared_at.get(me) {
            v["sharedWithMeTime"] = json!(google_time(*t));
            v["sharingUser"] = user_json(store, owner, me);
        }
        if can_share {
            let perms = permissions(store, f);
            v["permissionIds"] = json!(perms.iter().map(|p| p["id"].clone()).collect::<Vec<_>>());
            v["permissions"] = json!(perms);
        }
    }
    v
}

fn grant_json(store: &Store, g: &Grant) -> Value {
    let mut p = json!({
        "kind": "drive#permission",
        "id": grantee_permission_id(store, g),
        "role": g.role,
        "deleted": false,
    });
    match &g.grantee {
        Grantee::User { email_address } => {
            p["type"] = json!("user");
            p["emailAddress"] = json!(email_address);
            p["displayName"] = json!(
                store
                    .user_by_email(email_address)
                    .map_or(email_address.as_str(), |u| u.name.as_str())
            );
            p["pendingOwner"] = json!(false);
        }
        Grantee::Group { email_address } => {
            p["type"] = json!("group");
            p["emailAddress"] = json!(email_address);
            p["displayName"] = json!(email_address.split('@').next().unwrap_or(email_address));
        }
        Grantee::Domain { domain } => {
            p["type"] = json!("domain");
            p["domain"] = json!(domain);
            p["displayName"] = json!(domain);
            p["allowFileDiscovery"] = json!(g.allow_file_discovery);
        }
        Grantee::Anyone => {
            p["type"] = json!("anyone");
            p["allowFileDiscovery"] = json!(g.allow_file_discovery);
        }
    }
    p
}

/// `permissions.list` of an item: on My Drive the owner, then every grant on the item or an ancestor (one entry
/// per grantee, the highest role); on a shared drive the drive's members and the item's and ancestors' grants,
/// each with `permissionDetails` saying where it comes from.
pub(crate) fn permissions(store: &Store, f: &File) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let chain = store.ancestry(&f.id);
    let on_shared_drive = f.drive_id.is_some();
    let mut add = |p: Value, detail: Option<Value>, out: &mut Vec<Value>| {
        let id = p["id"].as_str().unwrap_or_default().to_string();
        match index.get(&id).copied() {
            Some(i) => {
                let existing = &mut out[i];
                let new_role = p["role"].as_str().unwrap_or_default();
                if role_rank(new_role) > role_rank(existing["role"].as_str().unwrap_or_default()) {
                    existing["role"] = json!(new_role);
                }
                if let Some(d) = detail
                    && let Some(list) = existing
                        .get_mut("permissionDetails")
                        .and_then(Value::as_array_mut)
                {
                    list.push(d);
                }
            }
            None => {
                let mut p = p;
                if let Some(d) = detail {
                    p["permissionDetails"] = json!([d]);
                }
                index.insert(id, out.len());
                out.push(p);
            }
        }
    };
    if let Some(drive) = f.drive_id.as_ref().and_then(|d| store.drives.get(d)) {
        for m in &drive.members {
            let detail = json!({
                "permissionType": "member",
                "role": m.role,
                "inherited": f.id != drive.id,
                "inheritedFrom": drive.id,
            });
            let detail = if f.id == drive.id {
                json!({"permissionType": "member", "role": m.role, "inherited": false})
            } else {
                detail
            };
            add(grant_json(store, m), Some(detail), &mut out);
        }
    } else if let Some(owner) = f.owner.as_deref().and_then(|o| store.users.get(o)) {
        add(
            json!({
                "kind": "drive#permission",
                "id": owner.permission_id,
                "type": "user",
                "role": "owner",
                "emailAddress": owner.email,
                "displayName": owner.name,
                "deleted": false,
                "pendingOwner": false,
            }),
            None,
            &mut out,
        );
    }
    for a in &chain {
        for g in &a.grants {
            let detail = on_shared_drive.then(|| {
                let mut d = json!({"permissionType": "file", "role": g.role, "inherited": a.id != f.id});
                if a.id != f.id {
                    d["inheritedFrom"] = json!(a.id);
                }
                d
            });
            add(grant_json(store, g), detail, &mut out);
        }
    }
    out
}

pub(crate) fn drive_json(d: &crate::store::SharedDrive, organizer: bool) -> Value {
    json!({
        "kind": "drive#drive",
        "id": d.id,
        "name": d.name,
        "createdTime": google_time(d.created),
        "hidden": false,
        "colorRgb": "#4986e7",
        "capabilities": {
            "canListChildren": true,
            "canDownload": true,
            "canShare": organizer,
            "canManageMembers": organizer,
            "canAddChildren": organizer,
            "canRename": organizer,
            "canDeleteDrive": organizer,
        },
        "restrictions": {
            "adminManagedRestrictions": false,
            "copyRequiresWriterPermission": false,
            "domainUsersOnly": false,
            "driveMembersOnly": false,
            "sharingFoldersRequiresOrganizerPermission": false,
        },
    })
}

/// The bytes of an export, or `None` when the emulator does not produce that format.
pub(crate) fn export_bytes(body: &DocBody, title: &str, target: &str) -> Option<Vec<u8>> {
    match (body, target) {
        (DocBody::Document { paragraphs }, t) => {
            let refs: Vec<&str> = paragraphs.iter().map(String::as_str).collect();
            match t {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                    Some(kbsync_fixtures::docx(&refs))
                }
                // Google's plain-text export starts with a byte-order mark and ends lines with CRLF.
                "text/plain" => Some(format!("\u{feff}{}", paragraphs.join("\r\n")).into_bytes()),
                "text/html" => Some(kbsync_fixtures::html(title, &refs).into_bytes()),
                "text/markdown" => Some(kbsync_fixtures::markdown(title, &refs).into_bytes()),
                "application/pdf" => Some(kbsync_fixtures::pdf(&[&paragraphs.join("\n")])),
                _ => None,
            }
        }
        (DocBody::Spreadsheet { rows }, t) => match t {
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => {
                Some(kbsync_fixtures::xlsx(&[("Sheet1", rows.clone())]))
            }
            "text/csv" => Some(kbsync_fixtures::csv(rows).into_bytes()),
            "text/tab-separated-values" => Some(
                rows.iter()
                    .map(|r| r.join("\t"))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes(),
            ),
            "application/pdf" => Some(kbsync_fixtures::pdf(&[&body.text()])),
            _ => None,
        },
        (DocBody::Presentation { slides }, t) => {
            let refs: Vec<&str> = slides.iter().map(String::as_str).collect();
            match t {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation" => {
                    Some(kbsync_fixtures::pptx(&refs))
                }
                "text/plain" => Some(slides.join("\n\n").into_bytes()),
                "application/pdf" => Some(kbsync_fixtures::pdf(&refs)),
                _ => None,
            }
        }
    }
}
