//! Step 4, permission sync: every folder's sharing, read when it is due, replaces the knowledge
//! base's sync grants (who the sharing names, turned into users by [`crate::permissions`]).

use std::collections::{BTreeSet, HashMap};

use kbsync_core::Source;
use kbsync_core::UserId;
use kbsync_core::datasource::{Datasource, DatasourceError, TokenSource};
use kbsync_store::SyncGrant;
use uuid::Uuid;

use super::SyncEngine;
use super::types::{Run, Stop, SyncError};
use crate::permissions::{self, Grantees};

impl SyncEngine {
    /// Reads every folder's sharing and replaces the knowledge base's sync grants with what it
    /// names, when it is due: when `hinted` (the change feed reported a sharing change, or a
    /// folder was enumerated in full), when it was never read or sources or users changed since
    /// (`Store::sharing_read_at` is `None`), or when it was read longer than
    /// [`PermissionPolicy::refresh`] ago. A folder whose sharing cannot be read right now leaves
    /// the grants as they are.
    pub(super) async fn refresh_permissions(
        &self,
        run: &Run,
        folders: &[&Source],
        hinted: bool,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
    ) -> Result<Result<(), Stop>, SyncError> {
        let store = &self.cx.store;
        let now = self.cx.clock.now();
        let due = hinted
            || match store.sharing_read_at(run.kb_id).await? {
                None => true,
                Some(at) => (now - at)
                    .to_std()
                    .is_ok_and(|age| age >= self.cx.permissions.refresh),
            };
        if !due {
            return Ok(Ok(()));
        }
        // Each folder's grantees, kept apart: every grant is recorded with the source that gave
        // it, so removing or losing a source withdraws exactly what only it granted.
        let mut per_source: Vec<(Uuid, Grantees)> = Vec::with_capacity(folders.len());
        for source in folders {
            match ds.permissions(tokens, &source.drive_id, &source.item_id).await {
                Ok(perms) => per_source.push((source.id, permissions::grantees(&perms, self.cx.permissions))),
                // Taken away since the round was read: it names no one any more.
                Err(DatasourceError::NotFound(why)) => {
                    tracing::info!(kb.id = %run.kb_id, source.id = %source.id, reason = why, "source sharing no longer readable: it grants nothing");
                }
                Err(DatasourceError::Unauthorized(why)) => return Ok(Err(Stop::NeedsReauth(why))),
                Err(e) => {
                    tracing::warn!(kb.id = %run.kb_id, source.id = %source.id, error = %e, "could not read the sharing of a source: sync grants left as they are until the next run reads it");
                    store.forget_sharing_reads(Some(run.kb_id)).await?;
                    return Ok(Ok(()));
                }
            }
        }
        // One look-up for all of them.
        let mut all = Grantees::default();
        for (_, grantees) in &per_source {
            all.merge(grantees.clone());
        }
        let everyone: Vec<UserId> = if all.everyone {
            store.all_user_ids().await?
        } else {
            Vec::new()
        };
        let mut by_email: HashMap<String, UserId> = HashMap::new();
        if !all.emails.is_empty() {
            let emails: Vec<String> = all.emails.into_iter().collect();
            for user in store.users_by_emails(&emails).await? {
                by_email.insert(user.email.trim().to_lowercase(), user.id);
            }
        }
        // The owner needs no grant.
        let owner = store.get_kb(run.kb_id).await?.owner_id;
        let mut grants: BTreeSet<SyncGrant> = BTreeSet::new();
        for (source_id, grantees) in &per_source {
            let readers = grantees
                .emails
                .iter()
                .filter_map(|email| by_email.get(email))
                .chain(everyone.iter().filter(|_| grantees.everyone));
            for &user_id in readers {
                if user_id != owner {
                    grants.insert(SyncGrant {
                        source_id: *source_id,
                        user_id,
                    });
                }
            }
        }
        let grants: Vec<SyncGrant> = grants.into_iter().collect();
        store.replace_sync_grants(run.kb_id, &grants, now).await?;
        tracing::debug!(kb.id = %run.kb_id, grants = grants.len(), "sync grants replaced");
        Ok(Ok(()))
    }
}
