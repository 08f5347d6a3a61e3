//! What the engine knows of a source's items: every item of the subtree by id with its name,
//! parent and content hash, so that paths can be rebuilt from parent ids (a folder rename changes
//! the path of every file below it, though the change feed reports only the folder) and nameless
//! tombstones can be resolved by id. Saved next to the cursor it belongs to, one row per item.
//!
//! A run holds either every item of a source or, when only a few changed, the ones it touches (the
//! changed items, the folders above them up to the source's root, what lies below a folder whose
//! change reaches its contents, and the files left to retry); [`SourceState::changes`] says what
//! to write back either way. Items that were not read keep their rows and their counts.

use std::collections::{BTreeMap, HashMap, HashSet};

use kbsync_store::SourceItem;

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

/// The items of one source, by id: all of them, or the ones a run touches (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceState {
    pub items: BTreeMap<String, KnownItem>,
    /// The saved rows of the items that were read, as they were read or last written.
    stored: HashMap<String, StoredItem>,
    /// Owned and pending files among the saved items that were not read.
    unread_files: u64,
    unread_pending: u64,
    /// Every saved item was read.
    complete: bool,
}

/// A saved row as the engine last read or wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredItem {
    owned: bool,
    pending: bool,
    item: KnownItem,
}

/// What a save writes: the rows that changed, the items that left, and the counts.
#[derive(Debug, Default)]
pub struct StateChanges {
    pub upsert: Vec<SourceItem>,
    pub remove: Vec<String>,
    pub files: u64,
    pub pending: u64,
}

/// The document format of a state saved before items had rows of their own.
#[derive(Deserialize)]
struct LegacyState {
    items: BTreeMap<String, KnownItem>,
}

impl SourceState {
    /// A state that holds every item of its source, none saved yet.
    pub fn complete() -> Self {
        Self {
            complete: true,
            ..Self::default()
        }
    }

    /// Every item of a source from its saved rows; `None` when a row cannot be read (the caller
    /// then enumerates again).
    pub fn from_rows(rows: Vec<SourceItem>) -> Result<Self, serde_json::Error> {
        let mut state = Self::complete();
        state.add_rows(rows)?;
        Ok(state)
    }

    /// The items of a source that a run touches, from their saved rows; `files` and `pending`
    /// are the source's saved counts (of every item).
    pub fn partial(rows: Vec<SourceItem>, files: u64, pending: u64) -> Result<Self, serde_json::Error> {
        let mut state = Self {
            unread_files: files,
            unread_pending: pending,
            ..Self::default()
        };
        state.add_rows(rows)?;
        Ok(state)
    }

    /// A state saved as one document by an earlier version: every item, none saved as a row
    /// yet. `None` when it cannot be parsed.
    pub fn from_legacy(text: &str) -> Option<Self> {
        let legacy: LegacyState = serde_json::from_str(text).ok()?;
        Some(Self {
            items: legacy.items,
            ..Self::complete()
        })
    }

    /// Whether applying `change` to the held item `known` reaches what lies below it: its path
    /// (a rename, a move, a deletion) or its access (sharing that must be read again).
    pub fn reaches_below(known: &KnownItem, change: &RemoteItem) -> bool {
        let mut scratch = Self::default();
        scratch.items.insert(change.id.clone(), known.clone());
        scratch.apply(change);
        scratch.items.get(&change.id).is_none_or(|after| {
            after.name != known.name
                || after.parent_id != known.parent_id
                || after.shared != known.shared
                || after.acl != known.acl
                || after.acl_stale
        })
    }

    /// Whether every saved item was read.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Whether the item's saved row was read (whether or not it is still held).
    pub fn was_read(&self, id: &str) -> bool {
        self.stored.contains_key(id) || self.items.contains_key(id)
    }

    /// Adds saved rows that were not read yet (ids already read are left as they are, also when
    /// this run removed them). An error when a row cannot be read.
    pub fn add_rows(&mut self, rows: Vec<SourceItem>) -> Result<(), serde_json::Error> {
        for row in rows {
            if self.was_read(&row.item_id) {
                continue;
            }
            let item: KnownItem = serde_json::from_str(&row.data)?;
            if !self.complete {
                self.unread_files = self.unread_files.saturating_sub(u64::from(row.owned));
                self.unread_pending = self.unread_pending.saturating_sub(u64::from(row.pending));
            }
            self.items.insert(row.item_id.clone(), item.clone());
            self.stored.insert(
                row.item_id,
                StoredItem {
                    owned: row.owned,
                    pending: row.pending,
                    item,
                },
            );
        }
        Ok(())
    }

    /// The ids of saved items that are no longer held (deleted, or moved out of the subtree).
    pub fn removed(&self) -> impl Iterator<Item = &str> + '_ {
        self.stored
            .keys()
            .filter(|id| !self.items.contains_key(id.as_str()))
            .map(String::as_str)
    }

    /// How many files the source looks after, `owned` being those of the held items it does.
    pub fn owned_files(&self, owned: &HashSet<String>) -> u64 {
        self.unread_files + u64::try_from(owned.len()).unwrap_or(u64::MAX)
    }

    /// What must be written for the saved rows to match the held items, `owned` being the files
    /// among them the source looks after.
    pub fn changes(&self, owned: &HashSet<String>) -> Result<StateChanges, serde_json::Error> {
        let mut changes = StateChanges {
            files: self.unread_files,
            pending: self.unread_pending,
            ..StateChanges::default()
        };
        for (id, item) in &self.items {
            let is_owned = owned.contains(id);
            let pending = is_owned && item.synced_hash.as_deref() != Some(item.hash_value().as_str());
            changes.files += u64::from(is_owned);
            changes.pending += u64::from(pending);
            let unchanged = self
                .stored
                .get(id)
                .is_some_and(|s| s.owned == is_owned && s.pending == pending && s.item == *item);
            if !unchanged {
                changes.upsert.push(SourceItem {
                    item_id: id.clone(),
                    parent_id: item.parent_id.clone(),
                    owned: is_owned,
                    pending,
                    data: serde_json::to_string(item)?,
                });
            }
        }
        changes.remove = self.removed().map(str::to_owned).collect();
        Ok(changes)
    }

    /// Records that `changes` were written: the saved rows now match the held items.
    pub fn saved(&mut self, changes: &StateChanges) {
        for id in &changes.remove {
            self.stored.remove(id);
        }
        for row in &changes.upsert {
            if let Some(item) = self.items.get(&row.item_id) {
                self.stored.insert(
                    row.item_id.clone(),
                    StoredItem {
                        owned: row.owned,
                        pending: row.pending,
                        item: item.clone(),
                    },
                );
            }
        }
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
        let mut s = SourceState::complete();
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
        let mut s = SourceState::complete();
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

    /// What a save writes for `s`, applied to `rows` as the store would.
    fn write(s: &mut SourceState, owned: &[&str], rows: &mut BTreeMap<String, SourceItem>) -> StateChanges {
        let owned: HashSet<String> = owned.iter().map(|id| (*id).to_owned()).collect();
        let changes = s.changes(&owned).unwrap();
        for id in &changes.remove {
            rows.remove(id);
        }
        for row in &changes.upsert {
            rows.insert(row.item_id.clone(), row.clone());
        }
        s.saved(&changes);
        changes
    }

    #[test]
    fn a_nameless_tombstone_removes_by_id_and_rows_round_trip() {
        let mut s = SourceState::complete();
        s.apply(&item("root", Some("Docs"), None, ItemKind::Root));
        s.apply(&item("f", Some("a.txt"), Some("root"), ItemKind::File));
        let mut rows = BTreeMap::new();
        let first = write(&mut s, &["f"], &mut rows);
        assert_eq!((first.upsert.len(), first.files, first.pending), (2, 1, 1));
        let read = SourceState::from_rows(rows.values().cloned().collect()).unwrap();
        assert_eq!(read.items, s.items);
        // Nothing changed since: nothing to write.
        let again = s.changes(&HashSet::from(["f".to_owned()])).unwrap();
        assert!(again.upsert.is_empty() && again.remove.is_empty(), "{again:?}");

        let mut gone = item("f", None, None, ItemKind::File);
        gone.deleted = true;
        s.apply(&gone);
        assert_eq!(s.path("root", "f"), None);
        let last = write(&mut s, &[], &mut rows);
        assert_eq!(
            (last.remove.as_slice(), last.files),
            (["f".to_owned()].as_slice(), 0)
        );
        assert_eq!(rows.keys().collect::<Vec<_>>(), ["root"]);

        let mut bad = rows["root"].clone();
        bad.data = "not json".into();
        assert!(SourceState::from_rows(vec![bad]).is_err());
    }

    #[test]
    fn a_partial_state_writes_only_what_it_touched_and_keeps_the_counts_of_the_rest() {
        // Saved: root, two folders, three files (all owned, one of them pending).
        let mut full = SourceState::complete();
        full.apply(&item("root", Some("Docs"), None, ItemKind::Root));
        full.apply(&item("a", Some("A"), Some("root"), ItemKind::Folder));
        full.apply(&item("b", Some("B"), Some("root"), ItemKind::Folder));
        for (id, parent) in [("f1", "a"), ("f2", "a"), ("f3", "b")] {
            full.apply(&item(id, Some(id), Some(parent), ItemKind::File));
        }
        for id in ["f1", "f2"] {
            full.items.get_mut(id).unwrap().synced_hash = Some("-".into());
        }
        let mut rows = BTreeMap::new();
        let saved = write(&mut full, &["f1", "f2", "f3"], &mut rows);
        assert_eq!((saved.files, saved.pending), (3, 1));

        // A run that touches f1 only reads it and the folders above it.
        let read: Vec<SourceItem> = ["root", "a", "f1"].iter().map(|id| rows[*id].clone()).collect();
        let mut part = SourceState::partial(read, 3, 1).unwrap();
        assert!(!part.is_complete() && part.was_read("a") && !part.was_read("f2"));
        // f1 leaves; a row added later that was read already is not read again.
        let mut gone = item("f1", None, None, ItemKind::File);
        gone.deleted = true;
        part.apply(&gone);
        part.add_rows(vec![rows["f1"].clone()]).unwrap();
        assert!(!part.items.contains_key("f1"));
        assert_eq!(part.removed().collect::<Vec<_>>(), ["f1"]);
        let changes = write(&mut part, &[], &mut rows);
        assert!(changes.upsert.is_empty(), "{changes:?}");
        // Two owned files were not read, one of them pending.
        assert_eq!((changes.files, changes.pending), (2, 1));
        assert_eq!(rows.keys().collect::<Vec<_>>(), ["a", "b", "f2", "f3", "root"]);
    }

    #[test]
    fn a_change_reaches_below_a_folder_when_it_moves_renames_deletes_or_reshares_it() {
        let mut s = SourceState::complete();
        s.apply(&item("a", Some("A"), Some("root"), ItemKind::Folder));
        let known = s.items["a"].clone();
        // Reported again as it was (the parent hierarchy of a changed child): nothing below.
        assert!(!SourceState::reaches_below(
            &known,
            &item("a", Some("A"), Some("root"), ItemKind::Folder)
        ));
        assert!(SourceState::reaches_below(
            &known,
            &item("a", Some("A2"), Some("root"), ItemKind::Folder)
        ));
        assert!(SourceState::reaches_below(
            &known,
            &item("a", Some("A"), Some("b"), ItemKind::Folder)
        ));
        let mut gone = item("a", None, None, ItemKind::Folder);
        gone.deleted = true;
        assert!(SourceState::reaches_below(&known, &gone));
        assert!(SourceState::reaches_below(
            &known,
            &shared(item("a", Some("A"), Some("root"), ItemKind::Folder), true, true)
        ));
    }

    #[test]
    fn a_skip_is_remembered_and_states_saved_as_one_document_before_rows_still_parse() {
        let mut s = SourceState::complete();
        s.apply(&item("f", Some("a.png"), Some("root"), ItemKind::File));
        s.items.get_mut("f").unwrap().skipped = Some(Skip::TooLarge { limit: 10 });
        let text = serde_json::to_string(&s.items["f"]).unwrap();
        assert!(
            text.contains(r#""skipped":{"reason":"too_large","limit":10}"#),
            "{text}"
        );
        // A later change keeps what was remembered until the engine decides again.
        s.apply(&item("f", Some("b.png"), Some("root"), ItemKind::File));
        assert_eq!(s.items["f"].skipped, Some(Skip::TooLarge { limit: 10 }));

        // Saved before skips existed, as one document: every item, none of them saved as a row.
        let old = r#"{"items":{"f":{"kind":"file","name":"a.txt","parent_id":"root","size":3,"hash":null,"mime":null,"web_url":null,"synced_hash":"-"}}}"#;
        let parsed = SourceState::from_legacy(old).unwrap();
        assert!(parsed.is_complete());
        assert_eq!(parsed.items["f"].skipped, None);
        assert_eq!(parsed.items["f"].synced_hash.as_deref(), Some("-"));
        let changes = parsed.changes(&HashSet::new()).unwrap();
        assert_eq!(changes.upsert.len(), 1);
        assert_eq!(SourceState::from_legacy("not json"), None);
    }
}
