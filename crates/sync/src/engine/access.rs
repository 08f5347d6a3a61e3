//! Step 4, document access: the permissions of the items that need reading are read (one request
//! each), every document gets the access list of the nearest item above it (itself included)
//! whose permissions were read, and the groups those lists name are expanded when due.
//!
//! Which items are read: the source's root (always known), every item the change feed reports
//! with a sharing change or as a new root of a permission hierarchy, and — when a full read is
//! due (never done, asked for, after a full enumeration, or older than
//! [`PermissionPolicy::refresh`](crate::permissions::PermissionPolicy::refresh)) — every item
//! whose permissions are kept. Everything else inherits, so an unchanged drive costs no request.

use kbsync_core::datasource::{Datasource, DatasourceError, TokenSource};
use kbsync_store::DocumentAcl;

use super::SyncEngine;
use super::types::{Plan, Run, Stop, SyncError};
use crate::permissions::{group_of, member_keys, principal_keys};

impl SyncEngine {
    /// Whether every permission of the knowledge base's sources is to be read in this run.
    pub(super) async fn permissions_due(&self, run: &Run) -> Result<bool, SyncError> {
        let now = self.cx.clock.now();
        Ok(match self.cx.store.sharing_read_at(run.kb_id).await? {
            None => true,
            Some(at) => (now - at)
                .to_std()
                .is_ok_and(|age| age >= self.cx.permissions.refresh),
        })
    }

    /// Reads the permissions that need reading and writes the documents' access lists, for
    /// every source whose round is applied and saved, then expands the groups that are due.
    /// `all_due`: every kept permission is read again (see the module docs); `complete`: every
    /// source of the knowledge base is among `plans` (only then does a full read count as done).
    pub(super) async fn sync_access(
        &self,
        run: &Run,
        plans: &mut [Plan],
        all_due: bool,
        complete: bool,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
    ) -> Result<Result<(), Stop>, SyncError> {
        let mut complete = complete;
        for plan in plans.iter_mut().filter(|p| p.saved) {
            match self
                .plan_access(run, plan, all_due || plan.full, ds, tokens)
                .await?
            {
                Ok(read_all) => complete &= read_all,
                Err(stop) => return Ok(Err(stop)),
            }
        }
        let store = &self.cx.store;
        if complete {
            if all_due {
                store.mark_sharing_read(run.kb_id, self.cx.clock.now()).await?;
            }
        } else {
            // Some permission could not be read: the next run reads them all again.
            store.forget_sharing_reads(Some(run.kb_id)).await?;
        }
        self.refresh_groups(run, ds, tokens).await
    }

    /// One source: reads what it needs, writes its documents' access lists and saves the state
    /// (same cursor). `Ok(false)` when some permission could not be read now.
    async fn plan_access(
        &self,
        run: &Run,
        plan: &mut Plan,
        due: bool,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
    ) -> Result<Result<bool, Stop>, SyncError> {
        let root = plan.source.item_id.clone();
        let targets: Vec<String> = plan
            .state
            .items
            .iter()
            .filter(|(id, item)| {
                let is_root = **id == root;
                item.acl_stale
                    || (is_root && item.acl.is_none())
                    || (due && (is_root || item.acl.is_some() || item.shared))
            })
            .filter(|(id, _)| plan.state.path(&root, id).is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let mut read_all = true;
        let mut state_changed = false;
        for id in targets {
            let read = match ds.permissions(tokens, &plan.source.drive_id, &id).await {
                Ok(permissions) => principal_keys(&permissions, self.cx.permissions),
                // Gone, or no longer visible to these credentials: it names no one.
                Err(DatasourceError::NotFound(why)) => {
                    tracing::info!(kb.id = %run.kb_id, source.id = %plan.source.id, item.id = %id, reason = why, "item permissions not readable: its access list names no one");
                    Vec::new()
                }
                Err(DatasourceError::Unauthorized(why)) => return Ok(Err(Stop::NeedsReauth(why))),
                Err(e) => {
                    tracing::warn!(kb.id = %run.kb_id, source.id = %plan.source.id, item.id = %id, error = %e, "could not read an item's permissions: its documents keep their access lists until a run reads them");
                    read_all = false;
                    continue;
                }
            };
            if let Some(item) = plan.state.items.get_mut(&id) {
                item.acl = Some(read);
                item.acl_stale = false;
                state_changed = true;
            }
        }

        // The lists to write, and the id of each (what the state remembers as written).
        let mut lists: Vec<DocumentAcl> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for id in plan.state.files(&root) {
            let Some(item) = plan.state.items.get(id) else {
                continue;
            };
            // No document yet (not brought in, or skipped): written once it exists.
            if item.synced_hash.is_none() || item.skipped.is_some() {
                continue;
            }
            let Some(principals) = plan.state.effective_acl(&root, id) else {
                continue;
            };
            let acl_id = kbsync_store::acl_id(principals);
            if !due && item.doc_acl.as_deref() == Some(acl_id.as_str()) {
                continue;
            }
            lists.push(DocumentAcl {
                source_item_id: id.to_owned(),
                principals: principals.to_vec(),
            });
            ids.push(acl_id);
        }
        if !lists.is_empty() {
            self.cx
                .store
                .set_document_acls(run.kb_id, &lists, self.cx.clock.now())
                .await?;
            for (acl, acl_id) in lists.iter().zip(ids) {
                if let Some(item) = plan.state.items.get_mut(&acl.source_item_id) {
                    item.doc_acl = Some(acl_id);
                }
            }
            state_changed = true;
            tracing::debug!(kb.id = %run.kb_id, source.id = %plan.source.id, documents = lists.len(), "document access lists written");
        }
        if state_changed {
            self.save_cursor(plan).await?;
        }
        Ok(Ok(read_all))
    }

    /// Expands the groups the knowledge base's access lists name that were never expanded or
    /// longer than [`PermissionPolicy::group_refresh`](crate::permissions::PermissionPolicy::group_refresh)
    /// ago. A group that cannot be read (gone, or not readable with these credentials) has no
    /// members; one that fails for a passing reason keeps the members it had until the next run.
    pub(super) async fn refresh_groups(
        &self,
        run: &Run,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
    ) -> Result<Result<(), Stop>, SyncError> {
        let store = &self.cx.store;
        let now = self.cx.clock.now();
        for group in store.named_groups(run.kb_id).await? {
            let due = group.refreshed_at.is_none_or(|at| {
                (now - at)
                    .to_std()
                    .is_ok_and(|age| age >= self.cx.permissions.group_refresh)
            });
            let Some(principal) = group_of(&group.key).filter(|_| due) else {
                continue;
            };
            let members = match ds.group_members(tokens, &principal).await {
                Ok(members) => member_keys(&members),
                Err(e @ (DatasourceError::NotFound(_) | DatasourceError::Permanent(_))) => {
                    tracing::warn!(kb.id = %run.kb_id, group = %group.key, error = %e, "group members not readable: the group grants nothing");
                    Vec::new()
                }
                Err(DatasourceError::Unauthorized(why)) => return Ok(Err(Stop::NeedsReauth(why))),
                Err(e) => {
                    tracing::warn!(kb.id = %run.kb_id, group = %group.key, error = %e, "could not expand a group: its members are kept until the next run");
                    continue;
                }
            };
            tracing::debug!(kb.id = %run.kb_id, group = %group.key, members = members.len(), "group expanded");
            store.replace_group_members(&group.key, &members, now).await?;
        }
        Ok(Ok(()))
    }
}
