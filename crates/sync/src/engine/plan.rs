//! Step 3, planning: the gathered states are compared with the documents. Renames and moves are
//! applied without downloading, removed items lose their documents, files that cannot be indexed
//! are skipped; what is left (new and changed files) is the work list for [`super::apply`].

use std::collections::{HashMap, HashSet};

use kbsync_core::Document;
use kbsync_core::SourceKind;
use kbsync_ingest::FileKind;
use kbsync_store::{DocumentLocation, QuarantinedDocument};

use super::SyncEngine;
use super::documents::document_path;
use super::types::{Plan, Run, SyncError, SyncLimits, Work};
use crate::state::{Skip, SourceState};

impl SyncEngine {
    /// Brings the documents in line with the gathered states, except for the files that must
    /// be downloaded: those are returned as the work list.
    ///
    /// An item in several sources is one document, looked after by the plan `owner` names (see
    /// [`assign_owners`]). A document is removed when no source holds its item any more, neither
    /// a gathered one nor one that failed this time (`failed_files`: its files are kept until it
    /// answers again). `touched`: the files the plans hold or removed, when some plan holds
    /// only those (see `read_touched`).
    pub(super) async fn plan(
        &self,
        run: &mut Run,
        plans: &mut [Plan],
        owner: &HashMap<String, usize>,
        failed_files: &HashSet<String>,
        touched: Option<&[String]>,
    ) -> Result<Vec<Work>, SyncError> {
        let store = &self.cx.store;
        let max = self.cx.limits.max_file_size;
        // The documents of the sources being applied, by item id: all of a source that read all
        // of its items, those of the touched items otherwise.
        let mut docs: HashMap<String, Document> = HashMap::new();
        let mut partial = Vec::new();
        for plan in plans.iter() {
            if plan.state.is_complete() {
                docs.extend(
                    store
                        .source_documents(plan.source.id)
                        .await?
                        .into_iter()
                        .filter_map(|doc| Some((doc.source_item_id.clone()?, doc))),
                );
            } else {
                partial.push(plan.source.id);
            }
        }
        if let Some(touched) = touched {
            docs.extend(
                store
                    .source_documents_of_items(&partial, touched)
                    .await?
                    .into_iter()
                    .filter_map(|doc| Some((doc.source_item_id.clone()?, doc))),
            );
        }
        // Whatever document is left mirrors an item that was deleted or left every source.
        let gone: Vec<Document> = docs
            .iter()
            .filter(|(id, _)| !owner.contains_key(id.as_str()) && !failed_files.contains(id.as_str()))
            .map(|(_, d)| d.clone())
            .collect();
        for doc in gone {
            if let Some(id) = &doc.source_item_id {
                docs.remove(id);
            }
            self.remove_document(&doc).await?;
            run.deleted += 1;
        }

        // Quarantined documents, by item id, with the content they are quarantined at: unchanged,
        // they are not brought in again.
        let quarantine = store.quarantined_documents(run.kb_id).await?;
        let quarantined: HashMap<&str, &str> = quarantine
            .iter()
            .filter_map(|q| Some((q.document.source_item_id.as_deref()?, q.content.as_str())))
            .collect();

        let mut work = Vec::new();
        for (i, plan) in plans.iter_mut().enumerate() {
            let root = plan.source.item_id.clone();
            let ids: Vec<String> = plan.state.files(&root).map(str::to_owned).collect();
            for id in ids {
                if owner.get(&id) != Some(&i) {
                    continue;
                }
                let (Some(item), Some(path)) = (
                    plan.state.items.get(&id).cloned(),
                    plan.state
                        .path(&root, &id)
                        .map(|p| document_path(&plan.source, &p)),
                ) else {
                    continue;
                };
                let hash = item.hash_value();
                let mut synced = item.synced_hash.as_deref() == Some(hash.as_str());
                if !synced && quarantined.get(id.as_str()) == Some(&hash.as_str()) {
                    // Quarantined at this content (by a run whose state was not saved).
                    mark_synced(&mut plan.state, &id, None);
                    synced = true;
                }
                let doc = docs.get(&id);
                let skip = if FileKind::detect(&item.name, item.mime.as_deref()).is_none() {
                    Some(Skip::UnsupportedType)
                } else if item.size.is_some_and(|s| u64::try_from(s).unwrap_or(0) > max) {
                    Some(Skip::TooLarge { limit: max })
                } else {
                    None
                };
                if let Some(skip) = skip {
                    // A document of earlier content would no longer match the drive.
                    if let Some(doc) = doc {
                        self.remove_document(doc).await?;
                        run.deleted += 1;
                    }
                    if !synced || item.skipped != Some(skip) {
                        self.count_skip(run, &plan.source, &path, skip);
                    }
                    mark_synced(&mut plan.state, &id, Some(skip));
                    continue;
                }
                if synced {
                    match (doc, item.skipped) {
                        (Some(doc), _) => {
                            // Content unchanged: at most a rename or move, applied without downloading.
                            let location = DocumentLocation {
                                name: item.name.clone(),
                                path: path.clone(),
                                web_url: item.web_url.clone(),
                            };
                            if doc.name != location.name
                                || doc.path != location.path
                                || doc.web_url != location.web_url
                            {
                                store
                                    .update_document_location(
                                        plan.source.kb_id,
                                        doc.id,
                                        location,
                                        self.cx.clock.now(),
                                    )
                                    .await?;
                            }
                            continue;
                        }
                        // Found too large while downloading (its size was not announced): it
                        // stays skipped until it changes or the limit is raised.
                        (None, Some(Skip::TooLarge { limit })) if limit >= max => continue,
                        // Skipped earlier for a reason that no longer holds, or its document
                        // went away: bring it in.
                        (None, _) => {}
                    }
                }
                plan.remaining += 1;
                work.push(Work {
                    plan: i,
                    source_id: plan.source.id,
                    kb_id: plan.source.kb_id,
                    drive_id: plan.source.drive_id.clone(),
                    id,
                    item,
                    path,
                });
            }
        }
        let retried: HashSet<&str> = work.iter().map(|w| w.id.as_str()).collect();
        self.report_quarantine(run, quarantine, &retried).await;
        Ok(work)
    }

    /// Reports the knowledge base's quarantined documents (`quarantine`, as the store lists them)
    /// in the run, except those of `retried` (their content changed: the work list brings them in
    /// again).
    pub(super) async fn report_quarantine(
        &self,
        run: &mut Run,
        quarantine: Vec<QuarantinedDocument>,
        retried: &HashSet<&str>,
    ) {
        for q in quarantine {
            let doc = q.document;
            let item_id = doc.source_item_id.unwrap_or_default();
            if retried.contains(item_id.as_str()) {
                continue;
            }
            let reason = doc
                .error
                .unwrap_or_else(|| kbsync_core::quarantine_reason("no reason recorded"));
            self.report_quarantined(run, &item_id, &doc.name, reason).await;
        }
    }
}

/// Which source looks after each file the plans hold (an item in several sources is one
/// document): the oldest folder source that holds it, else the oldest file source. Sets each
/// plan's `owned`; the map gives the index of the owner in `plans`.
pub(super) fn assign_owners(plans: &mut [&mut Plan]) -> HashMap<String, usize> {
    // Folders first (a folder gives the document its path in the folder), then in source order.
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| plans[i].source.kind != SourceKind::Folder);
    let mut owner: HashMap<String, usize> = HashMap::new();
    for i in order {
        for id in plans[i].state.files(&plans[i].source.item_id) {
            owner.entry(id.to_owned()).or_insert(i);
        }
    }
    for plan in plans.iter_mut() {
        plan.owned.clear();
    }
    for (id, &i) in &owner {
        plans[i].owned.insert(id.clone());
    }
    owner
}

/// The settings that decide what a saved state says about skipped files: the size limit and the
/// types that can be indexed. A state saved under other settings is planned again.
pub(super) fn state_settings(limits: &SyncLimits) -> String {
    format!(
        "max_file_size={};types={}",
        limits.max_file_size,
        kbsync_ingest::supported_extensions().join(",")
    )
}

pub(super) fn mark_synced(state: &mut SourceState, id: &str, skipped: Option<Skip>) {
    if let Some(item) = state.items.get_mut(id) {
        item.synced_hash = Some(item.hash_value());
        item.skipped = skipped;
    }
}
