//! The Drive API v3 resources the client reads (only the fields its `fields` masks ask for).
//! int64 values (`size`, `version`) arrive as JSON strings; numbers are accepted too.

use serde::{Deserialize, Deserializer};

/// The folder MIME type.
pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
/// The shortcut MIME type.
pub const SHORTCUT_MIME: &str = "application/vnd.google-apps.shortcut";
/// The prefix of Google's own types (Docs Editors files, folders, shortcuts, forms, …).
pub const GOOGLE_APPS_PREFIX: &str = "application/vnd.google-apps.";

/// The fields of a file the client reads (`files.get`, and each `files(…)` of a listing).
pub const FILE_FIELDS: &str = "id,name,mimeType,parents,size,md5Checksum,modifiedTime,version,trashed,driveId,webViewLink,shortcutDetails(targetId,targetMimeType)";

/// A file resource.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct File {
    pub id: String,
    pub name: Option<String>,
    pub mime_type: Option<String>,
    #[serde(default)]
    pub parents: Vec<String>,
    #[serde(default, deserialize_with = "int64")]
    pub size: Option<i64>,
    pub md5_checksum: Option<String>,
    pub modified_time: Option<String>,
    #[serde(default, deserialize_with = "int64")]
    pub version: Option<i64>,
    #[serde(default)]
    pub trashed: bool,
    pub drive_id: Option<String>,
    pub web_view_link: Option<String>,
    pub shortcut_details: Option<ShortcutDetails>,
}

impl File {
    pub fn mime(&self) -> &str {
        self.mime_type.as_deref().unwrap_or_default()
    }

    pub fn is_folder(&self) -> bool {
        self.mime() == FOLDER_MIME
    }

    pub fn is_shortcut(&self) -> bool {
        self.mime() == SHORTCUT_MIME
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShortcutDetails {
    pub target_id: Option<String>,
    pub target_mime_type: Option<String>,
}

/// `files.list`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    #[serde(default)]
    pub files: Vec<File>,
    pub next_page_token: Option<String>,
}

/// A shared drive.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drive {
    pub id: String,
    pub name: Option<String>,
    pub created_time: Option<String>,
}

/// `drives.list`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveList {
    #[serde(default)]
    pub drives: Vec<Drive>,
    pub next_page_token: Option<String>,
}

/// `changes.getStartPageToken`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartPageToken {
    pub start_page_token: String,
}

/// One entry of `changes.list`: the current state of a file or a shared drive.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub change_type: Option<String>,
    #[serde(default)]
    pub removed: bool,
    pub file_id: Option<String>,
    pub file: Option<File>,
    pub drive_id: Option<String>,
}

/// `changes.list`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeList {
    #[serde(default)]
    pub changes: Vec<Change>,
    pub next_page_token: Option<String>,
    pub new_start_page_token: Option<String>,
}

/// A permission.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub role: Option<String>,
    pub email_address: Option<String>,
    pub domain: Option<String>,
    pub display_name: Option<String>,
    pub allow_file_discovery: Option<bool>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub permission_details: Vec<PermissionDetail>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionDetail {
    pub permission_type: Option<String>,
    pub role: Option<String>,
    #[serde(default)]
    pub inherited: bool,
    pub inherited_from: Option<String>,
}

/// `permissions.list`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionList {
    #[serde(default)]
    pub permissions: Vec<Permission>,
    pub next_page_token: Option<String>,
}

/// An int64 as Google writes it (a string), or as a number.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Text(String),
        Number(i64),
    }
    Ok(match Option::<Int64>::deserialize(d)? {
        None => None,
        Some(Int64::Number(n)) => Some(n),
        Some(Int64::Text(s)) => s.trim().parse().ok(),
    })
}
