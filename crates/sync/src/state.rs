//! What the engine knows of a source's items: every item of the subtree by id with its name,
//! parent and content hash, so that paths can be rebuilt from parent ids (a folder rename changes
//! the path of every file below it, though the change feed reports only the folder) and nameless
//! tombstones can be resolved by id. Saved next to the cursor it belongs to.

use std::collections::BTreeMap;

use kbsync_core::datasource::{ContentHash, ItemKind, RemoteItem};
use serde::{Deserialize, Serialize};

/// Why a file was brought in without indexing it. Remembered with the hash it applies to, so a
/// skipped file is neither counted again nor downloaded again until something changes: its
/// content, its type (a rename to a supported extension), or the size limit (raised above the
/// one it was skipped under).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Skip {
    /// No extractor reads this type.
    UnsupportedType,
    /// Larger than `limit` bytes (the `max_file_size` of the run that skipped it).
    TooLarge { limit: u64 },
}

impl Skip {
    /// A readable reason, for logs.
    pub fn reason(&self) -> String {
        match self {
            Skip::UnsupportedType => "unsupported file type".to_owned(),
            Skip::TooLarge { limit } => format!("larger than the limit of {limit} bytes"),
        }
    }

    /// The metrics and log label.
    pub fn label(&self) -> &'static str {
        match self {
            Skip::UnsupportedType => "unsupported_type",
            Skip::TooLarge { .. } => "too_large",
        }
    }
}

/// One remembered item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownItem {
    pub kind: ItemKind,
    pub name: String,
    pub parent_id: Option<String>,
    pub size: Option<i64>,
    pub hash: Option<ContentHash>,
    pub mime: Option<String>,
    pub web_url: Option<String>,
    /// The content hash at which this file was last brought in completely (indexed, or skipped
    /// for good as unsupported or too large); `None` while it still has to be (re)tried.
    pub synced_hash: Option<String>,
    /// Set when the file was brought in at `synced_hash` by skipping it (no document exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skip>,
    /// The change feed reports the item as the root of a permission hierarchy (its permissions
    /// may differ from its parent's).
    #[serde(default, skip_serializing_if = "is_false")]
    pub shared: bool,
    /// The principals the item's own permissions name, when they were read: the item's access
    /// list, and that of everything below it down to the next item that has its own. `None`:
    /// the item has its parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<String>>,
    /// The item's permissions must be read (the feed reported a sharing change, or the item
    /// became the root of a permission hierarchy).
    #[serde(default, skip_serializing_if = "is_false")]
    pub acl_stale: bool,
    /// The id of the access list last written to the file's document (`None`: not written since
    /// the document was last brought in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_acl: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl KnownItem {
    /// The remote hash value, or a marker for a file without one (so it is fetched once).
    pub fn hash_value(&self) -> String {
        self.hash
            .as_ref()
            .map_or_else(|| "-".to_owned(), |h| h.value.clone())
    }

    pub fn to_remote(&self, id: &str, drive_id: &str) -> RemoteItem {
        RemoteItem {
            id: id.to_owned(),
            drive_id: drive_id.to_owned(),
            kind: self.kind,
            name: Some(self.name.clone()),
            parent_id: self.parent_id.clone(),
            size: self.size,
            hash: self.hash.clone(),
            mime: self.mime.clone(),
            web_url: self.web_url.clone(),
            modified_at: None,
            deleted: false,
            sharing: Default::default(),
        }
    }
}

/// The items of one source, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    pub items: BTreeMap<String, KnownItem>,
}

impl SourceState {
    /// A saved state; an unreadable one is treated as unknown (the caller then enumerates again).
    pub fn parse(text: Option<&str>) -> Option<Self> {
        text.and_then(|t| serde_json::from_str(t).ok())
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Applies the latest state of one item (a change of the round). A tombstone forgets it; an
    /// item without a name keeps the name it had.
    pub fn apply(&mut self, item: &RemoteItem) {
        if item.deleted {
            self.items.remove(&item.id);
            return;
        }
        let previous = self.items.remove(&item.id);
        let Some(name) = item
            .name
            .clone()
            .or_else(|| previous.as_ref().map(|p| p.name.clone()))
        else {
            return;
        };
        let sharing = item.sharing;
        let (synced_hash, skipped, acl, acl_stale, doc_acl) = match previous {
            None => (None, None, None, sharing.own || sharing.changed, None),
            Some(p) => {
                // A new content hash means the document is brought in again: its access list is
                // written again too.
                let doc_acl = if p.hash == item.hash { p.doc_acl } else { None };
                // An item the feed reported as the root of a permission hierarchy and no longer
                // does (its sharing did not just change) has its parent's permissions again.
                // Items read for another reason (the source's root, a file source) keep theirs.
                let acl = if p.shared && !sharing.own && !sharing.changed {
                    None
                } else {
                    p.acl
                };
                let stale = sharing.changed
                    || (sharing.own && (!p.shared || p.acl_stale))
                    || (sharing.own && acl.is_none());
                (p.synced_hash, p.skipped, acl, stale, doc_acl)
            }
        };
        self.items.insert(
            item.id.clone(),
            KnownItem {
                kind: item.kind,
                name,
                parent_id: item.parent_id.clone(),
                size: item.size,
                hash: item.hash.clone(),
                mime: item.mime.clone(),
                web_url: item.web_url.clone(),
                synced_hash,
                skipped,
                shared: sharing.own,
                acl,
                acl_stale,
                doc_acl,
            },
        );
    }

    /// The principals that may read an item: those of the nearest item, from it up to
    /// `root_id`, whose own permissions were read. `None` when none of them was read yet.
    pub fn effective_acl(&self, root_id: &str, id: &str) -> Option<&[String]> {
        let mut current = id;
        for _ in 0..=self.items.len() {
            let item = self.items.get(current)?;
            if let Some(acl) = &item.acl {
                return Some(acl);
            }
            if current == root_id {
                return None;
            }
            current = item.parent_id.as_deref()?;
        }
        None
    }

    /// The item's path below the source root, starting with the root's name (`Docs/a/b.txt`);
    /// `None` when the item is not (or no longer) inside the subtree of `root_id`.
    pub fn path(&self, root_id: &str, id: &str) -> Option<String> {
        let mut parts = Vec::new();
        let mut current = id;
        // A parent chain longer than the map is a cycle: treat it as outside.
        for _ in 0..=self.items.len() {
            let item = self.items.get(current)?;
            parts.push(item.name.as_str());
            if current == root_id {
                parts.reverse();
                return Some(parts.join("/"));
            }
            current = item.parent_id.as_deref()?;
        }
        None
    }

    /// The ids of the files inside the subtree of `root_id`.
    pub fn files<'a>(&'a self, root_id: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.items
            .iter()
            .filter(move |(id, item)| item.kind == ItemKind::File && self.path(root_id, id).is_some())
            .map(|(id, _)| id.as_str())
    }

    /// Forgets every item that is not inside the subtree of `root_id`.
    pub fn prune(&mut self, root_id: &str) {
        let outside: Vec<String> = self
            .items
            .keys()
            .filter(|id| self.path(root_id, id).is_none())
            .cloned()
            .collect();
        for id in outside {
            self.items.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn item(id: &str, name: Option<&str>, parent: Option<&str>, kind: ItemKind) -> RemoteItem {
        RemoteItem {
            id: id.into(),
            drive_id: "d".into(),
            kind,
            name: name.map(Into::into),
            parent_id: parent.map(Into::into),
            size: None,
            hash: None,
            mime: None,
            web_url: None,
            modified_at: None,
            deleted: false,
            sharing: Default::default(),
        }
    }

    fn shared(mut i: RemoteItem, own: bool, changed: bool) -> RemoteItem {
        i.sharing = kbsync_core::datasource::ItemSharing { own, changed };
        i
    }

    #[test]
    fn sharing_signals_mark_what_must_be_read_and_documents_inherit_from_the_nearest_read_item() {
        let mut s = SourceState::default();
        s.apply(&item("root", Some("Docs"), None, ItemKind::Root));
        s.apply(&shared(
            item("sub", Some("Sub"), Some("root"), ItemKind::Folder),
            true,
            false,
        ));
        s.apply(&item("f", Some("f.txt"), Some("sub"), ItemKind::File));
        s.apply(&item("g", Some("g.txt"), Some("root"), ItemKind::File));
        // A new root of a permission hierarchy must be read; nothing is known yet.
        assert!(s.items["sub"].acl_stale && !s.items["root"].acl_stale);
        assert_eq!(s.effective_acl("root", "f"), None);

        s.items.get_mut("root").unwrap().acl = Some(vec!["email:owner@x".into()]);
        let sub = s.items.get_mut("sub").unwrap();
        sub.acl = Some(vec!["email:megan@x".into()]);
        sub.acl_stale = false;
        assert_eq!(s.effective_acl("root", "f").unwrap(), ["email:megan@x"]);
        assert_eq!(s.effective_acl("root", "g").unwrap(), ["email:owner@x"]);

        // Reported again as it was: nothing to read. Reported changed: read again.
        s.apply(&shared(
            item("sub", Some("Sub"), Some("root"), ItemKind::Folder),
            true,
            false,
        ));
        assert!(!s.items["sub"].acl_stale);
        s.apply(&shared(
            item("sub", Some("Sub"), Some("root"), ItemKind::Folder),
            true,
            true,
        ));
        assert!(s.items["sub"].acl_stale);
        // No longer a root of its own: it inherits again, without a read.
        s.apply(&item("sub", Some("Sub"), Some("root"), ItemKind::Folder));
        assert!(!s.items["sub"].acl_stale && s.items["sub"].acl.is_none());
        assert_eq!(s.effective_acl("root", "f").unwrap(), ["email:owner@x"]);
        // The root (read because it is the source's root) keeps its list whatever the feed says.
        s.apply(&item("root", Some("Docs"), None, ItemKind::Root));
        assert!(s.items["root"].acl.is_some());
    }

    #[test]
    fn paths_are_rebuilt_from_parents_in_any_order_and_follow_folder_renames() {
        let mut s = SourceState::default();
        s.apply(&item("f", Some("c.txt"), Some("sub"), ItemKind::File));
        s.apply(&item("sub", Some("Sub"), Some("root"), ItemKind::Folder));
        s.apply(&item("root", Some("Docs"), None, ItemKind::Root));
        assert_eq!(s.path("root", "f").as_deref(), Some("Docs/Sub/c.txt"));
        s.apply(&item("sub", Some("Renamed"), Some("root"), ItemKind::Folder));
        assert_eq!(s.path("root", "f").as_deref(), Some("Docs/Renamed/c.txt"));
        s.apply(&item("sub", None, Some("elsewhere"), ItemKind::Folder));
        assert_eq!(s.path("root", "f"), None);
        s.prune("root");
        assert_eq!(s.items.keys().collect::<Vec<_>>(), ["root"]);
    }

    #[test]
    fn a_nameless_tombstone_removes_by_id_and_state_round_trips() {
        let mut s = SourceState::default();
        s.apply(&item("root", Some("Docs"), None, ItemKind::Root));
        s.apply(&item("f", Some("a.txt"), Some("root"), ItemKind::File));
        let text = s.to_json().unwrap();
        assert_eq!(SourceState::parse(Some(&text)).unwrap(), s);
        let mut gone = item("f", None, None, ItemKind::File);
        gone.deleted = true;
        s.apply(&gone);
        assert_eq!(s.path("root", "f"), None);
        assert_eq!(SourceState::parse(Some("not json")), None);
    }

    #[test]
    fn a_skip_is_remembered_and_states_saved_before_skips_existed_still_parse() {
        let mut s = SourceState::default();
        s.apply(&item("f", Some("a.png"), Some("root"), ItemKind::File));
        s.items.get_mut("f").unwrap().skipped = Some(Skip::TooLarge { limit: 10 });
        let text = s.to_json().unwrap();
        assert!(
            text.contains(r#""skipped":{"reason":"too_large","limit":10}"#),
            "{text}"
        );
        // A later change keeps what was remembered until the engine decides again.
        s.apply(&item("f", Some("b.png"), Some("root"), ItemKind::File));
        assert_eq!(s.items["f"].skipped, Some(Skip::TooLarge { limit: 10 }));

        let old = r#"{"items":{"f":{"kind":"file","name":"a.txt","parent_id":"root","size":3,"hash":null,"mime":null,"web_url":null,"synced_hash":"-"}}}"#;
        let parsed = SourceState::parse(Some(old)).unwrap();
        assert_eq!(parsed.items["f"].skipped, None);
        assert_eq!(parsed.items["f"].synced_hash.as_deref(), Some("-"));
    }
}
