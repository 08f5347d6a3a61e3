//! Step 1, gathering: each source is asked what changed. A folder follows the datasource's change
//! feed from its cursor to the end of the round and applies it to its saved state; a file source
//! reads the file's metadata. A source that answers "not found" is revoked on the spot.

use std::collections::{BTreeMap, BTreeSet};

use kbsync_core::datasource::{
    Datasource, DatasourceError, ItemKind, NextPage, RemoteItem, SourceRef, TokenSource,
};
use kbsync_core::{Source, SourceKind};
use kbsync_store::ItemSelection;
use tokio_util::sync::CancellationToken;

use super::SyncEngine;
use super::types::{Gathered, Plan, Quiet, Run, Stop, SyncError};
use crate::state::{KnownItem, SourceState};

/// How many times one source may answer "cursor expired" in one run before the run gives up on it.
const MAX_RESTARTS: usize = 3;

/// What following a folder's change feed gave.
enum Round {
    Done {
        changes: BTreeMap<String, RemoteItem>,
        cursor: String,
        full: bool,
    },
    Gathered(Gathered),
    Stop(Stop),
}

impl SyncEngine {
    /// A quiet folder that must be planned after all (another source changed), with nothing to
    /// apply: with every saved item when `read_all` (a state that cannot be read is then
    /// forgotten with the cursor, so the next run enumerates the folder again, and this run
    /// counts the source as failed), else with none read yet (the items other sources touch
    /// are read later).
    pub(super) async fn wake(
        &self,
        source: &Source,
        quiet: Quiet,
        read_all: bool,
    ) -> Result<Gathered, SyncError> {
        if !read_all {
            let state = SourceState::partial(
                Vec::new(),
                source.state_files.unwrap_or(0),
                source.state_pending.unwrap_or(0),
            )?;
            return Ok(Gathered::Ready(Box::new(Plan::new(
                source.clone(),
                state,
                quiet.cursor,
            ))));
        }
        match self.load_state(source).await? {
            Some(state) => Ok(Gathered::Ready(Box::new(Plan::new(
                source.clone(),
                state,
                quiet.cursor,
            )))),
            None => {
                self.cx.store.forget_source_state(source.id).await?;
                Ok(Gathered::Failed(DatasourceError::Transient(
                    "the saved state of this source could not be read; it will be enumerated again".into(),
                )))
            }
        }
    }

    /// Every saved item of a source (a state an earlier version saved as one document
    /// included); `None` when it has none or it cannot be read.
    pub(super) async fn load_state(&self, source: &Source) -> Result<Option<SourceState>, SyncError> {
        let rows = self.cx.store.source_items(source.id, ItemSelection::All).await?;
        if rows.is_empty() {
            let legacy = self.cx.store.legacy_source_state(source.id).await?;
            return Ok(legacy.as_deref().and_then(SourceState::from_legacy));
        }
        Ok(SourceState::from_rows(rows).ok())
    }

    /// The saved items a round of `changes` touches: the changed items and the folders above
    /// them up to the source's root, the files left to retry (with theirs), and everything below
    /// a folder whose change reaches it (see [`SourceState::reaches_below`]). `None` when the
    /// source's root has no row (a state saved by an earlier version) or a row cannot be read:
    /// the caller reads them all.
    async fn load_touched(
        &self,
        source: &Source,
        changes: &BTreeMap<String, RemoteItem>,
    ) -> Result<Option<SourceState>, SyncError> {
        let store = &self.cx.store;
        let pending = store.source_items(source.id, ItemSelection::Pending).await?;
        let mut starts: BTreeSet<String> = changes.keys().cloned().collect();
        starts.extend(changes.values().filter_map(|c| c.parent_id.clone()));
        starts.extend(pending.into_iter().map(|row| row.item_id));
        starts.insert(source.item_id.clone());
        let starts: Vec<String> = starts.into_iter().collect();
        let rows = store
            .source_items(source.id, ItemSelection::WithAncestors(&starts))
            .await?;
        let Ok(mut state) = SourceState::partial(
            rows,
            source.state_files.unwrap_or(0),
            source.state_pending.unwrap_or(0),
        ) else {
            return Ok(None);
        };
        if !state.items.contains_key(&source.item_id) {
            return Ok(None);
        }
        let reaching: Vec<String> = changes
            .values()
            .filter(|c| {
                state
                    .items
                    .get(&c.id)
                    .is_some_and(|known| known.kind != ItemKind::File && SourceState::reaches_below(known, c))
            })
            .map(|c| c.id.clone())
            .collect();
        if !reaching.is_empty() {
            let below = store
                .source_items(source.id, ItemSelection::Descendants(&reaching))
                .await?;
            if state.add_rows(below).is_err() {
                return Ok(None);
            }
        }
        Ok(Some(state))
    }

    /// When some source read only the items its round touches: the files every gathered
    /// source touches (held now, or held before and removed), each such source having read its
    /// own rows of them too. `None` when every source read all of its items.
    pub(super) async fn read_touched(
        &self,
        gathered: &mut [(Source, Gathered)],
    ) -> Result<Option<Vec<String>>, SyncError> {
        let plans = || {
            gathered.iter().filter_map(|(_, g)| match g {
                Gathered::Ready(plan) => Some(plan),
                _ => None,
            })
        };
        if plans().all(|plan| plan.state.is_complete()) {
            return Ok(None);
        }
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for plan in plans() {
            touched.extend(plan.state.files(&plan.source.item_id).map(str::to_owned));
            touched.extend(plan.state.removed().map(str::to_owned));
        }
        let touched: Vec<String> = touched.into_iter().collect();
        for (source, g) in gathered.iter_mut() {
            let Gathered::Ready(plan) = g else {
                continue;
            };
            if plan.state.is_complete() {
                continue;
            }
            let unread: Vec<String> = touched
                .iter()
                .filter(|id| !plan.state.was_read(id))
                .cloned()
                .collect();
            if unread.is_empty() {
                continue;
            }
            let rows = self
                .cx
                .store
                .source_items(source.id, ItemSelection::WithAncestors(&unread))
                .await?;
            plan.state.add_rows(rows)?;
        }
        Ok(Some(touched))
    }

    /// A source's saved rows of `ids`, with the folders above them; `None` when a row cannot
    /// be read.
    pub(super) async fn read_items(
        &self,
        source: &Source,
        ids: &[String],
    ) -> Result<Option<SourceState>, SyncError> {
        let rows = self
            .cx
            .store
            .source_items(source.id, ItemSelection::WithAncestors(ids))
            .await?;
        Ok(SourceState::partial(
            rows,
            source.state_files.unwrap_or(0),
            source.state_pending.unwrap_or(0),
        )
        .ok())
    }

    /// A folder's round of changes, buffered and applied to its state (not yet to documents).
    /// Saved items are read only when the round brought something or a file is left to retry:
    /// every one of them when `read_all` or the round was a full enumeration, else those the
    /// round touches.
    pub(super) async fn gather_folder(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
        cancel: &CancellationToken,
        run: &mut Run,
        read_all: bool,
    ) -> Result<Result<Gathered, Stop>, SyncError> {
        // A state saved without its counts (before they existed) is read first, as it always was.
        let mut state = None;
        let mut cursor = source.cursor.clone();
        if cursor.is_some() && source.state_files.is_none() {
            state = self.load_state(source).await?;
            if state.is_none() {
                cursor = None;
            }
        }
        let (changes, next_cursor, full) = match self
            .follow_changes(source, ds, tokens, cancel, run, cursor)
            .await?
        {
            Round::Done {
                changes,
                cursor,
                full,
            } => (changes, cursor, full),
            Round::Gathered(g) => return Ok(Ok(g)),
            Round::Stop(stop) => return Ok(Err(stop)),
        };
        if !full
            && changes.is_empty()
            && state.is_none()
            && source.state_pending == Some(0)
            && source.state_settings.as_deref() == Some(self.settings.as_str())
        {
            return Ok(Ok(Gathered::Quiet(Box::new(Quiet { cursor: next_cursor }))));
        }
        if state.is_none() && source.cursor.is_some() && !full && !read_all {
            state = self.load_touched(source, &changes).await?;
        }
        // A full round after an expired cursor starts from the saved state too: files it still
        // returns at the content already brought in are not downloaded again.
        let state = match state {
            Some(state) => state,
            None if source.cursor.is_none() => SourceState::complete(),
            None => match self.load_state(source).await? {
                Some(state) => state,
                None if full => SourceState::complete(),
                None => {
                    // The round is relative to a state that cannot be read: start over.
                    tracing::warn!(source.id = %source.id, "saved source state unreadable: enumerating the source again");
                    return self.gather_from_scratch(source, ds, tokens, cancel, run).await;
                }
            },
        };
        Ok(Ok(planned(source, state, &changes, next_cursor, full)))
    }

    /// A folder enumerated from the start, whatever its saved cursor and state.
    async fn gather_from_scratch(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
        cancel: &CancellationToken,
        run: &mut Run,
    ) -> Result<Result<Gathered, Stop>, SyncError> {
        match self.follow_changes(source, ds, tokens, cancel, run, None).await? {
            Round::Done { changes, cursor, .. } => Ok(Ok(planned(
                source,
                SourceState::complete(),
                &changes,
                cursor,
                true,
            ))),
            Round::Gathered(g) => Ok(Ok(g)),
            Round::Stop(stop) => Ok(Err(stop)),
        }
    }

    /// Follows a folder's change feed from `cursor` (from the start when `None`) to the end of the
    /// round, buffering the latest state of each item (duplicates: last wins).
    async fn follow_changes(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
        cancel: &CancellationToken,
        run: &mut Run,
        mut cursor: Option<String>,
    ) -> Result<Round, SyncError> {
        let mut full = cursor.is_none();
        let at = SourceRef {
            drive_id: source.drive_id.clone(),
            item_id: source.item_id.clone(),
        };
        let mut changes: BTreeMap<String, RemoteItem> = BTreeMap::new();
        let mut restarts = 0;
        loop {
            if cancel.is_cancelled() {
                return Ok(Round::Stop(Stop::Cancelled));
            }
            match ds.changes(tokens, &at, cursor.as_deref()).await {
                Ok(page) => {
                    for mut item in page.items {
                        // The latest state wins, but a sharing change anywhere in the round counts.
                        if let Some(earlier) = changes.get(&item.id) {
                            item.sharing.changed |= earlier.sharing.changed;
                        }
                        changes.insert(item.id.clone(), item);
                    }
                    match page.next {
                        NextPage::More(next) => cursor = Some(next),
                        NextPage::Done(next) => {
                            return Ok(Round::Done {
                                changes,
                                cursor: next,
                                full,
                            });
                        }
                    }
                }
                Err(DatasourceError::CursorExpired { restart }) if restarts < MAX_RESTARTS => {
                    tracing::info!(source.id = %source.id, "change cursor expired: enumerating the source again");
                    restarts += 1;
                    changes.clear();
                    full = true;
                    cursor = restart;
                }
                Err(DatasourceError::NotFound(_)) => {
                    self.revoke(source, run).await?;
                    return Ok(Round::Gathered(Gathered::Revoked));
                }
                Err(DatasourceError::Unauthorized(why)) => return Ok(Round::Stop(Stop::NeedsReauth(why))),
                Err(e) => return Ok(Round::Gathered(Gathered::Failed(e))),
            }
        }
    }

    /// A file source: its current metadata; its cursor is its content hash.
    pub(super) async fn gather_file(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
        run: &mut Run,
    ) -> Result<Result<Gathered, Stop>, SyncError> {
        let mut item = match ds.item(tokens, &source.drive_id, &source.item_id).await {
            Ok(item) if !item.deleted && item.kind == ItemKind::File => item,
            Ok(_) | Err(DatasourceError::NotFound(_)) => {
                self.revoke(source, run).await?;
                return Ok(Ok(Gathered::Revoked));
            }
            Err(DatasourceError::Unauthorized(why)) => return Ok(Err(Stop::NeedsReauth(why))),
            Err(e) => return Ok(Ok(Gathered::Failed(e))),
        };
        let saved = self
            .load_state(source)
            .await?
            .unwrap_or_else(SourceState::complete);
        let mut state = saved.clone();
        state.items.retain(|id, _| *id == item.id);
        // The file is its own root: its path is its name.
        item.parent_id = None;
        state.apply(&item);
        let cursor = state
            .items
            .get(&item.id)
            .map(KnownItem::hash_value)
            .unwrap_or_default();
        let mut plan = Plan::new(source.clone(), state, cursor);
        plan.changed = plan.state != saved || source.cursor.as_deref() != Some(plan.cursor.as_str());
        Ok(Ok(Gathered::Ready(Box::new(plan))))
    }
}

/// A folder's round applied to the state it is relative to: the source ready to be planned.
fn planned(
    source: &Source,
    mut state: SourceState,
    changes: &BTreeMap<String, RemoteItem>,
    cursor: String,
    full: bool,
) -> Gathered {
    if full {
        // A full enumeration returns everything there is: what it did not return is gone.
        state.items.retain(|id, _| changes.contains_key(id));
    }
    for item in changes.values() {
        state.apply(item);
    }
    state.prune(&source.item_id);
    let mut plan = Plan::new(source.clone(), state, cursor);
    plan.changed = full || !changes.is_empty();
    plan.full = full;
    Gathered::Ready(Box::new(plan))
}

/// Whether a gathered source needs no planning: a quiet folder, or a file source that did not
/// change and has nothing to retry.
pub(super) fn is_quiet(source: &Source, g: &Gathered, settings: &str) -> bool {
    match g {
        Gathered::Quiet(_) => true,
        Gathered::Ready(plan) => {
            plan.source.kind == SourceKind::File
                && !plan.changed
                && source.state_pending == Some(0)
                && source.state_settings.as_deref() == Some(settings)
        }
        Gathered::Revoked | Gathered::Failed(_) => false,
    }
}
