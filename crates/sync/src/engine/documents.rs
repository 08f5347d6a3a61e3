//! Documents of sources: where a document shows in its knowledge base ([`document_path`]), removing
//! a document (its blob is collected later, if nothing refers to it then), and what a revoked
//! source does to its documents.

use kbsync_core::Document;
use kbsync_core::{Source, SourceKind};
use kbsync_store::StoreError;

use super::types::{Run, SyncError};
use super::{FILES_METRIC, SyncEngine};

impl SyncEngine {
    /// The source answered 404/403. The first time, its documents leave search at once but are
    /// kept, with its cursor and state, and their access lists are cleared: a passing
    /// error must not cost a full download. When it answers so again on a later run (the loss is
    /// confirmed), its documents go and its cursor is forgotten.
    pub(super) async fn revoke(&self, source: &Source, run: &mut Run) -> Result<(), SyncError> {
        let store = &self.cx.store;
        if source.revoked_at.is_none() {
            tracing::info!(kb.id = %source.kb_id, source.id = %source.id, "source no longer accessible: its documents are hidden until the next run confirms it");
            store.mark_source_revoked(source.id, self.cx.clock.now()).await?;
        } else {
            tracing::info!(kb.id = %source.kb_id, source.id = %source.id, "source still not accessible: removing its documents");
            for doc in store.source_documents(source.id).await? {
                self.remove_document(&doc).await?;
                run.deleted += 1;
            }
            store.forget_source_state(source.id).await?;
        }
        // Its permissions no longer count: the next run reads them all again (and gives its
        // documents their access lists back if it answers again).
        store.forget_sharing_reads(Some(source.kb_id)).await?;
        Ok(())
    }

    pub(super) async fn remove_document(&self, doc: &Document) -> Result<(), SyncError> {
        match self
            .cx
            .store
            .delete_document(doc.kb_id, doc.id, self.cx.clock.now())
            .await
        {
            Ok(_) => {
                metrics::counter!(FILES_METRIC, "outcome" => "deleted").increment(1);
            }
            // Removed meanwhile (by hand): nothing left to do.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

/// Where a document shows in its knowledge base: the path the user picked the source at, then
/// the item's path below it (`/Team/Notes/a.txt`), so that it reads as the path in the drive. A
/// file source keeps the folder it was picked in and takes the file's current name. Without a
/// picked path, the path starts at the source's own name.
pub(super) fn document_path(source: &Source, tree_path: &str) -> String {
    let picked = source.path.trim().trim_end_matches('/');
    if source.path.trim().is_empty() {
        return format!("/{tree_path}");
    }
    match source.kind {
        SourceKind::Folder => match tree_path.split_once('/') {
            Some((_, below)) => format!("{picked}/{below}"),
            None => format!("{picked}/"),
        },
        SourceKind::File => {
            let folder = picked.rsplit_once('/').map_or("", |(folder, _)| folder);
            format!("{folder}/{tree_path}")
        }
    }
}

#[cfg(test)]
mod document_path_tests {
    use uuid::Uuid;

    use super::*;

    fn source(kind: SourceKind, path: &str) -> Source {
        Source {
            id: Uuid::nil(),
            kb_id: Uuid::nil(),
            datasource: kbsync_core::datasource::DatasourceKind::OneDrive,
            kind,
            drive_id: "d".into(),
            item_id: "i".into(),
            name: "n".into(),
            path: path.into(),
            cursor: None,
            state_files: None,
            state_pending: None,
            state_settings: None,
            revoked_at: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
            round: None,
        }
    }

    #[test]
    fn documents_read_as_paths_in_the_drive_below_the_picked_source() {
        let team = source(SourceKind::Folder, "/Team");
        assert_eq!(document_path(&team, "Team/Notes/a.txt"), "/Team/Notes/a.txt");
        let root = source(SourceKind::Folder, "/");
        assert_eq!(document_path(&root, "root/a.txt"), "/a.txt");
        let renamed = source(SourceKind::File, "/Loose/old.txt");
        assert_eq!(document_path(&renamed, "new.txt"), "/Loose/new.txt");
        let unnamed = source(SourceKind::Folder, "");
        assert_eq!(document_path(&unnamed, "Team/a.txt"), "/Team/a.txt");
    }
}
