//! What a drive does to its item tree: looking items up by id or path, paths and ancestry (now and at an
//! earlier change), sizes, and creating children; every change bumps the drive's change counter.

use super::{Content, Drive, Item, StoreError, split_path, validate_name};
use crate::ids::IdGen;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

impl Drive {
    /// Records a change of the permissions set on `item_id`: the item shows up in the next delta
    /// round (its eTag changes), marked as a sharing change.
    pub fn sharing_changed(&mut self, item_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.item(item_id)?;
        let seq = self.bump(now);
        if let Some(item) = self.items.get_mut(item_id) {
            item.etag_version += 1;
            item.changed_seq = seq;
            item.sharing_seq = seq;
        }
        Ok(())
    }

    pub(super) fn bump(&mut self, now: DateTime<Utc>) -> u64 {
        self.seq += 1;
        self.seq_times.push((self.seq, now));
        self.seq
    }

    pub(super) fn new_item_id(&mut self, ids: &mut IdGen) -> String {
        if self.drive_type.is_personal() {
            self.next_personal += 1;
            format!("{}!{}", self.id.to_uppercase(), self.next_personal)
        } else {
            ids.business_item_id()
        }
    }

    pub fn next_site_user_id(&mut self) -> u32 {
        self.next_site_user += 1;
        self.next_site_user
    }

    pub fn item(&self, id: &str) -> Result<&Item, StoreError> {
        self.items
            .get(id)
            .filter(|i| i.is_live())
            .ok_or_else(|| StoreError::NotFound(format!("item {id}")))
    }

    pub fn root(&self) -> Result<&Item, StoreError> {
        self.item(&self.root_id)
    }

    /// Path below the root, `""` for the root itself, `/A/B` otherwise.
    pub fn path_of(&self, id: &str) -> String {
        let mut parts = Vec::new();
        let mut cur = self.items.get(id);
        while let Some(item) = cur {
            match &item.parent_id {
                Some(p) => {
                    parts.push(item.name.as_str());
                    cur = self.items.get(p);
                }
                None => break,
            }
        }
        parts.reverse();
        if parts.is_empty() {
            String::new()
        } else {
            format!("/{}", parts.join("/"))
        }
    }

    /// Resolves a `/`-separated path relative to `from` (case-insensitively).
    pub fn resolve(&self, from: &str, rel: &str) -> Result<&Item, StoreError> {
        let mut cur = self.item(from)?;
        for seg in split_path(rel) {
            let next = cur
                .children
                .get(&seg.to_lowercase())
                .ok_or_else(|| StoreError::NotFound(rel.to_string()))?;
            cur = self.item(next)?;
        }
        Ok(cur)
    }

    /// Whether `ancestor` is `id` or one of its current ancestors.
    pub fn is_within(&self, ancestor: &str, id: &str) -> bool {
        let mut cur = Some(id);
        while let Some(c) = cur {
            if c == ancestor {
                return true;
            }
            cur = self.items.get(c).and_then(|i| i.parent_id.as_deref());
        }
        false
    }

    /// Whether `id` was inside `scope` (and alive) at change sequence `seq`.
    pub fn was_within_at(&self, scope: &str, id: &str, seq: u64) -> bool {
        let mut cur = id;
        for _ in 0..10_000 {
            let Some(item) = self.items.get(cur) else {
                return false;
            };
            if item.created_seq > seq || item.deleted_seq.is_some_and(|d| d <= seq) {
                return false;
            }
            if cur == scope {
                return true;
            }
            match item.parent_at(seq) {
                Some(p) => cur = p,
                None => return false,
            }
        }
        false
    }

    /// Live descendants of `id` (not including it), parents before children.
    pub fn descendants(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![id.to_string()];
        while let Some(cur) = stack.pop() {
            if let Some(item) = self.items.get(&cur) {
                for child in item.children.values().rev() {
                    out.push(child.clone());
                    stack.push(child.clone());
                }
            }
        }
        out
    }

    /// Total size of the live files below a folder (Graph reports folder sizes as the sum).
    pub fn folder_size(&self, id: &str) -> u64 {
        self.descendants(id)
            .iter()
            .filter_map(|d| self.items.get(d))
            .map(Item::size)
            .sum()
    }

    pub(super) fn create_child(
        &mut self,
        ids: &mut IdGen,
        parent_id: &str,
        name: &str,
        content: Option<Arc<Content>>,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        validate_name(name)?;
        if self.lazy.is_some() {
            return Err(StoreError::Invalid("a generated drive is read-only".into()));
        }
        let parent = self.item(parent_id)?;
        if !parent.folder {
            return Err(StoreError::Invalid(format!("{parent_id} is not a folder")));
        }
        if parent.children.contains_key(&name.to_lowercase()) {
            return Err(StoreError::Conflict(format!(
                "an item named {name:?} already exists"
            )));
        }
        let id = self.new_item_id(ids);
        let seq = self.bump(now);
        let etag_guid = ids.guid().to_uppercase();
        let item = Item {
            id: id.clone(),
            name: name.to_string(),
            parent_id: Some(parent_id.to_string()),
            folder: content.is_none(),
            content,
            children: BTreeMap::new(),
            created_at: now,
            modified_at: now,
            created_by: user_id.to_string(),
            modified_by: user_id.to_string(),
            etag_guid,
            etag_version: 1,
            ctag_version: 1,
            created_seq: seq,
            changed_seq: seq,
            sharing_seq: 0,
            deleted_seq: None,
            parent_history: vec![(seq, Some(parent_id.to_string()))],
            permissions: Vec::new(),
        };
        self.items.insert(id.clone(), item);
        if let Some(parent) = self.items.get_mut(parent_id) {
            parent.children.insert(name.to_lowercase(), id.clone());
        }
        Ok(id)
    }
}
