//! JSON representations of users, drives, driveItems, tombstones, permissions and sites, as Graph v1.0 shows
//! them (business vs personal differences included).

use crate::clock::graph_time;
use crate::store::{Drive, DriveOwner, Grantee, Item, Site, Store, StoredPermission, User};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};
use sha2::Digest as _;

/// Characters left alone when percent-encoding one path segment of a URL.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

pub fn encode_path(path: &str) -> String {
    path.split('/').map(encode_segment).collect::<Vec<_>>().join("/")
}

/// What rendering needs besides the state.
pub struct RenderCtx<'a> {
    pub base_url: &'a str,
    pub now: DateTime<Utc>,
    pub download_key: &'a [u8; 32],
    pub download_lifetime_secs: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// GET item, children: `parentReference.path` and `cTag` included.
    Full,
    /// delta: no `parentReference.path`; business drives omit `cTag`.
    Delta,
}

fn signature(key: &[u8; 32], payload: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(key);
    h.update(payload.as_bytes());
    let digest = h.finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
}

/// A pre-authenticated download URL for an item, valid until `now + lifetime` on the emulator clock.
pub fn download_url(ctx: &RenderCtx<'_>, drive_id: &str, item_id: &str) -> String {
    let exp = ctx.now.timestamp() + ctx.download_lifetime_secs;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{drive_id}\n{item_id}\n{exp}").as_bytes());
    format!(
        "{}/_download/{payload}.{}",
        ctx.base_url,
        signature(ctx.download_key, &payload)
    )
}

/// Verifies a download token; returns (drive id, item id) or why it is refused.
pub fn verify_download(
    key: &[u8; 32],
    token: &str,
    now: DateTime<Utc>,
) -> Result<(String, String), &'static str> {
    let (payload, sig) = token.rsplit_once('.').ok_or("malformed")?;
    if signature(key, payload) != sig {
        return Err("invalid signature");
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "malformed")?;
    let text = String::from_utf8(raw).map_err(|_| "malformed")?;
    let mut parts = text.split('\n');
    let (Some(d), Some(i), Some(exp)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("malformed");
    };
    let exp: i64 = exp.parse().map_err(|_| "malformed")?;
    if now.timestamp() > exp {
        return Err("expired");
    }
    Ok((d.to_string(), i.to_string()))
}

pub fn user_json(u: &User, graph_url: &str) -> Value {
    let (given, surname) = u.display_name.split_once(' ').unwrap_or((&u.display_name, ""));
    json!({
        "@odata.context": format!("{graph_url}/$metadata#users/$entity"),
        "businessPhones": [], "displayName": u.display_name, "givenName": given, "jobTitle": null,
        "mail": u.mail, "mobilePhone": null, "officeLocation": null, "preferredLanguage": "en-US",
        "surname": surname, "userPrincipalName": u.upn, "id": u.id,
    })
}

pub(crate) fn identity_of(store: &Store, drive: &Drive, user_id: &str) -> Value {
    match store.users.get(user_id) {
        Some(u) if drive.drive_type.is_personal() => {
            json!({"user": {"displayName": u.display_name, "id": u.id}})
        }
        Some(u) => {
            let mut user = json!({"displayName": u.display_name, "id": u.id});
            if let (Some(m), Some(o)) = (&u.mail, user.as_object_mut()) {
                o.insert("email".into(), m.clone().into());
            }
            json!({"user": user})
        }
        None => {
            json!({"application": {"displayName": "SharePoint", "id": "00000003-0000-0ff1-ce00-000000000000"}})
        }
    }
}

pub fn drive_web_url(store: &Store, drive: &Drive) -> String {
    match &drive.owner {
        DriveOwner::User(uid) => {
            let upn = store
                .users
                .get(uid)
                .map_or_else(|| uid.clone(), |u| u.upn.replace(['@', '.'], "_"));
            if drive.drive_type.is_personal() {
                format!("{}/personal/{}", store.web_base, drive.id)
            } else {
                format!("{}/personal/{upn}/Documents", store.web_base)
            }
        }
        DriveOwner::Site(sid) => {
            let site = store.sites.get(sid).map_or("site", |s| s.name.as_str());
            format!("{}/sites/{site}/{}", store.web_base, encode_segment(&drive.name))
        }
    }
}

pub fn drive_json(store: &Store, drive: &Drive) -> Value {
    let owner = match &drive.owner {
        DriveOwner::User(uid) => {
            let d = store.drives.get(&drive.id).unwrap_or(drive);
            identity_of(store, d, uid)
        }
        DriveOwner::Site(sid) => {
            let name = store.sites.get(sid).map_or("", |s| s.display_name.as_str());
            json!({"group": {"id": sid, "displayName": format!("{name} Owners")}})
        }
    };
    let used = drive.folder_size(&drive.root_id);
    let total: u64 = 1_099_511_627_776;
    let mut v = json!({
        "id": drive.id,
        "driveType": drive.drive_type.as_str(),
        "name": drive.name,
        "description": "",
        "createdDateTime": graph_time(drive.created_at),
        "lastModifiedDateTime": graph_time(drive.created_at),
        "webUrl": drive_web_url(store, drive),
        "owner": owner,
        "quota": {"deleted": 0, "remaining": total.saturating_sub(used), "state": "normal", "total": total, "used": used},
    });
    if let (Some(sid), Some(o)) = (&drive.site_id, v.as_object_mut()) {
        // A library's site URL is where SharePoint REST answers for its site (the emulator serves it).
        let ids = match store.sites.get(sid) {
            Some(site) => json!({"siteId": sid, "siteUrl": site.web_url}),
            None => json!({"siteId": sid}),
        };
        o.insert("sharePointIds".into(), ids);
    }
    v
}

pub fn site_json(site: &Site, graph_url: &str) -> Value {
    let mut parts = site.id.split(',');
    let host = parts.next().unwrap_or("");
    let coll = parts.next().unwrap_or("");
    let web = parts.next().unwrap_or("");
    json!({
        "@odata.context": format!("{graph_url}/$metadata#sites/$entity"),
        "id": site.id,
        "name": site.name,
        "displayName": site.display_name,
        "description": "",
        "createdDateTime": graph_time(site.created_at),
        "lastModifiedDateTime": graph_time(site.created_at),
        "webUrl": site.web_url,
        "siteCollection": {"hostname": host},
        "sharepointIds": {"siteId": coll, "webId": web, "siteUrl": site.web_url},
    })
}

fn etag(item: &Item) -> String {
    format!("\"{{{}}},{}\"", item.etag_guid, item.etag_version)
}

fn ctag(item: &Item) -> String {
    format!("\"c:{{{}}},{}\"", item.etag_guid, item.ctag_version)
}

pub fn item_etags(item: &Item) -> (String, String) {
    (etag(item), ctag(item))
}

pub fn mime_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// A live driveItem.
pub fn item_json(
    store: &Store,
    drive: &Drive,
    item: &Item,
    ctx: &RenderCtx<'_>,
    mode: Mode,
) -> Map<String, Value> {
    let business = !drive.drive_type.is_personal();
    let mut m = Map::new();
    m.insert("createdDateTime".into(), graph_time(item.created_at).into());
    m.insert("eTag".into(), etag(item).into());
    m.insert("id".into(), item.id.clone().into());
    m.insert("lastModifiedDateTime".into(), graph_time(item.modified_at).into());
    m.insert("name".into(), item.name.clone().into());
    let path = drive.path_of(&item.id);
    m.insert(
        "webUrl".into(),
        format!("{}{}", drive_web_url(store, drive), encode_path(&path)).into(),
    );
    if mode == Mode::Full || !business {
        m.insert("cTag".into(), ctag(item).into());
    }
    m.insert("createdBy".into(), identity_of(store, drive, &item.created_by));
    m.insert(
        "lastModifiedBy".into(),
        identity_of(store, drive, &item.modified_by),
    );
    let mut parent = Map::new();
    parent.insert("driveType".into(), drive.drive_type.as_str().into());
    parent.insert("driveId".into(), drive.id.clone().into());
    if let Some(pid) = &item.parent_id {
        parent.insert("id".into(), pid.clone().into());
        if mode == Mode::Full {
            let parent_path = drive.path_of(pid);
            let prefix = if business {
                format!("/drives/{}/root:", drive.id)
            } else {
                "/drive/root:".to_string()
            };
            parent.insert("path".into(), format!("{prefix}{parent_path}").into());
            if let Some(p) = drive.items.get(pid)
                && p.parent_id.is_some()
            {
                parent.insert("name".into(), p.name.clone().into());
            }
        }
        if let Some(sid) = &drive.site_id {
            parent.insert("siteId".into(), sid.clone().into());
        }
    }
    m.insert("parentReference".into(), Value::Object(parent));
    m.insert(
        "fileSystemInfo".into(),
        json!({"createdDateTime": graph_time(item.created_at), "lastModifiedDateTime": graph_time(item.modified_at)}),
    );
    if item.folder {
        m.insert("size".into(), drive.folder_size(&item.id).into());
        m.insert("folder".into(), json!({"childCount": item.children.len()}));
        if item.parent_id.is_none() {
            m.insert("root".into(), json!({}));
        }
    } else if let Some(c) = &item.content {
        m.insert("size".into(), c.bytes.len().into());
        m.insert(
            "@microsoft.graph.downloadUrl".into(),
            download_url(ctx, &drive.id, &item.id).into(),
        );
        let mut hashes = Map::new();
        hashes.insert("quickXorHash".into(), c.quick_xor_hash.clone().into());
        if !business {
            hashes.insert("sha1Hash".into(), c.sha1_hash.clone().into());
        }
        m.insert(
            "file".into(),
            json!({"mimeType": mime_for(&item.name), "hashes": hashes}),
        );
    }
    m
}

/// A deleted item as delta reports it: business drives omit the name (and report size 0), personal drives keep
/// the name but omit size and cTag.
pub fn tombstone_json(drive: &Drive, item: &Item) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), item.id.clone().into());
    let mut parent = Map::new();
    parent.insert("driveId".into(), drive.id.clone().into());
    parent.insert("driveType".into(), drive.drive_type.as_str().into());
    if let Some(pid) = &item.parent_id {
        parent.insert("id".into(), pid.clone().into());
    }
    m.insert("parentReference".into(), Value::Object(parent));
    if drive.drive_type.is_personal() {
        m.insert("name".into(), item.name.clone().into());
        m.insert("deleted".into(), json!({}));
        m.insert("eTag".into(), etag(item).into());
        m.insert("lastModifiedDateTime".into(), graph_time(item.modified_at).into());
    } else {
        m.insert("deleted".into(), json!({"state": "deleted"}));
        m.insert("size".into(), 0.into());
    }
    if item.folder {
        m.insert("folder".into(), json!({"childCount": 0}));
    } else {
        m.insert("file".into(), json!({}));
    }
    m
}

/// Keeps only the properties named in `$select` (`content.downloadUrl` is an alias of the download URL).
pub fn apply_select(m: Map<String, Value>, select: Option<&[String]>) -> Value {
    let Some(select) = select else {
        return Value::Object(m);
    };
    if select.iter().any(|s| s == "*") {
        return Value::Object(m);
    }
    let wanted = |k: &str| {
        // Annotations are not properties: $select does not drop them.
        k == "@microsoft.graph.sharedChanged"
            || select.iter().any(|s| {
                s == k
                    || (k == "@microsoft.graph.downloadUrl"
                        && (s == "content.downloadUrl" || s == "@content.downloadUrl"))
            })
    };
    Value::Object(m.into_iter().filter(|(k, _)| wanted(k)).collect())
}

fn role_values(roles: &[String]) -> Value {
    Value::Array(roles.iter().map(|r| Value::from(r.clone())).collect())
}

/// One permission. `inherited_from` is shown only on personal drives (ODB/SharePoint never return it).
pub fn permission_json(
    store: &Store,
    drive: &Drive,
    p: &StoredPermission,
    inherited_from: Option<&Item>,
) -> Value {
    let business = !drive.drive_type.is_personal();
    let mut m = Map::new();
    m.insert("id".into(), p.id.clone().into());
    m.insert("roles".into(), role_values(&p.roles));
    match &p.grantee {
        Grantee::User {
            user_id,
            display_name,
            email,
            login,
            site_user_id,
        } => {
            let mut user = Map::new();
            user.insert("displayName".into(), display_name.clone().into());
            user.insert("id".into(), user_id.clone().into());
            if let Some(e) = email {
                user.insert("email".into(), e.clone().into());
            }
            let mut set = Map::new();
            set.insert("user".into(), Value::Object(user));
            if business {
                let mut su = Map::new();
                su.insert("displayName".into(), display_name.clone().into());
                if let Some(e) = email {
                    su.insert("email".into(), e.clone().into());
                }
                su.insert("id".into(), site_user_id.to_string().into());
                su.insert("loginName".into(), format!("i:0#.f|membership|{login}").into());
                set.insert("siteUser".into(), Value::Object(su));
            }
            m.insert("grantedToV2".into(), Value::Object(set));
        }
        Grantee::Group {
            group_id,
            display_name,
            email,
            site_user_id,
        } => {
            let mut group = Map::new();
            group.insert("displayName".into(), display_name.clone().into());
            group.insert("id".into(), group_id.clone().into());
            if let Some(e) = email {
                group.insert("email".into(), e.clone().into());
            }
            let mut set = Map::new();
            set.insert("group".into(), Value::Object(group));
            if business {
                set.insert(
                    "siteUser".into(),
                    json!({
                        "displayName": display_name,
                        "id": site_user_id.to_string(),
                        "loginName": format!("c:0o.c|federateddirectoryclaimprovider|{group_id}"),
                    }),
                );
            }
            m.insert("grantedToV2".into(), Value::Object(set));
        }
        Grantee::SiteGroup {
            site_group_id,
            display_name,
        } => {
            m.insert(
                "grantedToV2".into(),
                json!({"siteGroup": {"displayName": display_name, "id": site_group_id, "loginName": display_name}}),
            );
        }
        Grantee::Link {
            link_type,
            scope,
            web_url,
            prevents_download,
            users,
        } => {
            m.insert(
                "link".into(),
                json!({"scope": scope, "type": link_type, "webUrl": web_url, "preventsDownload": prevents_download}),
            );
            if let Some(s) = &p.share_id {
                m.insert("shareId".into(), s.clone().into());
            }
            if !users.is_empty() {
                let ids: Vec<Value> = users
                    .iter()
                    .map(|u| {
                        let mut user = Map::new();
                        user.insert("displayName".into(), u.display_name.clone().into());
                        if let Some(e) = &u.email {
                            user.insert("email".into(), e.clone().into());
                        }
                        let found = u.email.as_deref().and_then(|e| store.find_user(e));
                        if let Some(f) = found {
                            user.insert("id".into(), f.id.clone().into());
                        }
                        json!({"user": user})
                    })
                    .collect();
                m.insert("grantedToIdentitiesV2".into(), Value::Array(ids));
            }
            if !business {
                m.insert("hasPassword".into(), false.into());
            }
        }
    }
    if let (false, Some(from)) = (business, inherited_from) {
        m.insert(
            "inheritedFrom".into(),
            json!({"driveId": drive.id, "id": from.id, "path": format!("/drive/root:{}", drive.path_of(&from.id))}),
        );
    }
    Value::Object(m)
}

/// Effective permissions of an item: those set on its ancestors (inherited) followed by its own.
pub fn effective_permissions<'a>(
    drive: &'a Drive,
    item: &'a Item,
) -> Vec<(&'a StoredPermission, Option<&'a Item>)> {
    let mut chain = Vec::new();
    let mut cur = item.parent_id.as_deref();
    while let Some(id) = cur {
        match drive.items.get(id) {
            Some(a) => {
                chain.push(a);
                cur = a.parent_id.as_deref();
            }
            None => break,
        }
    }
    chain.reverse();
    let mut out = Vec::new();
    for a in chain {
        out.extend(a.permissions.iter().map(|p| (p, Some(a))));
    }
    out.extend(item.permissions.iter().map(|p| (p, None)));
    out
}

/// Who owns a drive's items, as the `shared` facet names them: the user, or the site's owners group.
fn drive_owner(store: &Store, drive: &Drive) -> Value {
    match &drive.owner {
        DriveOwner::User(uid) => identity_of(store, drive, uid),
        DriveOwner::Site(sid) => {
            let name = store.sites.get(sid).map_or("", |s| s.display_name.as_str());
            json!({"group": {"id": sid, "displayName": format!("{name} Owners")}})
        }
    }
}

/// The `shared` facet delta shows with `Prefer: hierarchicalsharing` on the root of a permission hierarchy (an
/// item with permissions of its own, or the drive root) and on an item whose sharing changed
/// (learn.microsoft.com/graph/api/driveitem-delta, "Scanning permissions hierarchies"; the facet:
/// learn.microsoft.com/graph/api/resources/shared). It is empty when the item's own permissions share it with
/// nobody beyond the drive's owner and the site's groups (unique permissions without sharing, or sharing
/// removed);
/// otherwise it holds the owner, the widest scope (`anonymous`, `organization`, `users`) and when the item's
/// sharing last changed.
pub fn shared_facet(store: &Store, drive: &Drive, item: &Item) -> Value {
    let sharing: Vec<&StoredPermission> = item
        .permissions
        .iter()
        .filter(|p| match (&p.grantee, &drive.owner) {
            (Grantee::SiteGroup { .. }, _) => false,
            (Grantee::User { user_id, .. }, DriveOwner::User(owner)) => user_id != owner,
            _ => true,
        })
        .collect();
    if sharing.is_empty() {
        return json!({});
    }
    let link_scope = |scope: &str| {
        sharing
            .iter()
            .any(|p| matches!(&p.grantee, Grantee::Link { scope: s, .. } if s == scope))
    };
    let scope = if link_scope("anonymous") {
        "anonymous"
    } else if link_scope("organization") {
        "organization"
    } else {
        "users"
    };
    let shared_at = drive
        .seq_times
        .iter()
        .find(|(seq, _)| *seq == item.sharing_seq)
        .map_or(item.created_at, |(_, t)| *t);
    json!({"owner": drive_owner(store, drive), "scope": scope, "sharedDateTime": graph_time(shared_at)})
}

/// The id a "shared with me" entry has in the caller's view: stable for the shared item, and different from the
/// item's own id (as in Graph's examples), so clients must use `remoteItem.id` with `remoteItem.parentReference.driveId`.
fn shared_entry_id(drive: &Drive, item: &Item) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"sharedWithMe\n");
    h.update(drive.id.as_bytes());
    h.update(b"\n");
    h.update(item.id.as_bytes());
    let digest = h.finalize();
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut s = String::with_capacity(34);
    s.push_str("01");
    for b in digest.iter().take(32) {
        s.push(char::from(BASE32[usize::from(*b) % 32]));
    }
    s
}

/// One entry of `sharedWithMe`: a driveItem whose `remoteItem` facet describes the item in the drive that holds
/// it (id, name, size, webUrl, `parentReference.driveId`/`driveType`/`id`, `file` or `folder`, timestamps,
/// `createdBy`/`lastModifiedBy`, `shared.owner`).
pub fn shared_item_json(
    store: &Store,
    drive: &Drive,
    item: &Item,
    ctx: &RenderCtx<'_>,
) -> Map<String, Value> {
    let mut remote = item_json(store, drive, item, ctx, Mode::Full);
    for k in ["eTag", "cTag", "@microsoft.graph.downloadUrl", "root"] {
        remote.remove(k);
    }
    remote.insert("shared".into(), json!({"owner": drive_owner(store, drive)}));
    let mut m = Map::new();
    m.insert("id".into(), shared_entry_id(drive, item).into());
    for k in [
        "name",
        "size",
        "webUrl",
        "createdDateTime",
        "lastModifiedDateTime",
        "createdBy",
        "lastModifiedBy",
        "fileSystemInfo",
    ] {
        if let Some(v) = remote.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    if item.folder {
        m.insert("folder".into(), json!({"childCount": item.children.len()}));
    } else {
        m.insert("file".into(), json!({"mimeType": mime_for(&item.name)}));
    }
    m.insert("remoteItem".into(), Value::Object(remote));
    m
}
