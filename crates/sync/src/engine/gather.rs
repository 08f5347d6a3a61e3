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
        /// Pages of the round are saved in the store: only saving the source's items forgets them.
        resumable: bool,
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
        // The pending rows are read on their own first: on SQLite a seed of "pending OR these ids"
        // scans every row of the source, two reads by index do not.
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
        let (changes, next_cursor, full, resumable) = match self
            .follow_changes(source, ds, tokens, cancel, run, cursor)
            .await?
        {
            Round::Done {
                changes,
                cursor,
                full,
                resumable,
            } => (changes, cursor, full, resumable),
            Round::Gathered(g) => return Ok(Ok(g)),
            Round::Stop(stop) => return Ok(Err(stop)),
        };
        if !full
            && !resumable
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
    /// round, gathering the latest state of each item (duplicates: last wins). Every page but the
    /// last is saved in the store with the link that follows it before the next is asked for, and
    /// its items are read back only once the round is complete: a long enumeration holds one page
    /// at a time, and a run stopped in the middle of it (killed, failed, cancelled) leaves a round
    /// the next run resumes from its last saved page (when it starts from the same cursor).
    async fn follow_changes(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
        cancel: &CancellationToken,
        run: &mut Run,
        mut cursor: Option<String>,
    ) -> Result<Round, SyncError> {
        let store = &self.cx.store;
        let from = cursor.clone();
        let mut full = from.is_none();
        // Pages saved in the store for this round (numbered from 0).
        let mut saved: u64 = 0;
        match &source.round {
            Some(round) if round.from == from && round.pages > 0 => {
                tracing::info!(source.id = %source.id, pages = round.pages, "resuming the change round a stopped run saved");
                cursor = Some(round.next.clone());
                full = round.full;
                saved = round.pages;
            }
            Some(_) => store.forget_round(source.id).await?,
            None => {}
        }
        let at = SourceRef {
            drive_id: source.drive_id.clone(),
            item_id: source.item_id.clone(),
        };
        let mut restarts = 0;
        loop {
            if cancel.is_cancelled() {
                return Ok(Round::Stop(Stop::Cancelled));
            }
            match ds.changes(tokens, &at, cursor.as_deref()).await {
                Ok(page) => match page.next {
                    NextPage::More(next) => {
                        let items = latest(BTreeMap::new(), page.items)
                            .into_values()
                            .map(|item| Ok((item.id.clone(), serde_json::to_string(&item)?)))
                            .collect::<Result<Vec<_>, serde_json::Error>>()?;
                        let page = kbsync_store::RoundPage {
                            from: from.as_deref(),
                            full,
                            page: saved,
                            next: &next,
                            items: &items,
                        };
                        store.save_round_page(source.id, page).await?;
                        saved += 1;
                        cursor = Some(next);
                    }
                    NextPage::Done(next) => {
                        let Some(changes) = self.saved_pages(source, saved).await? else {
                            // A saved page that cannot be read back: the round starts over.
                            store.forget_round(source.id).await?;
                            if restarts >= MAX_RESTARTS {
                                return Ok(Round::Gathered(Gathered::Failed(DatasourceError::Transient(
                                    "the saved pages of this source's change round could not be read back"
                                        .into(),
                                ))));
                            }
                            tracing::warn!(source.id = %source.id, "a saved page of the change round is unreadable: starting the round again");
                            restarts += 1;
                            saved = 0;
                            cursor = from.clone();
                            full = from.is_none();
                            continue;
                        };
                        return Ok(Round::Done {
                            changes: latest(changes, page.items),
                            cursor: next,
                            full,
                            resumable: saved > 0,
                        });
                    }
                },
                Err(DatasourceError::CursorExpired { restart }) if restarts < MAX_RESTARTS => {
                    tracing::info!(source.id = %source.id, "change cursor expired: enumerating the source again");
                    restarts += 1;
                    if saved > 0 {
                        store.forget_round(source.id).await?;
                        saved = 0;
                    }
                    full = true;
                    cursor = restart;
                }
                Err(DatasourceError::NotFound(_)) => {
                    if saved > 0 {
                        store.forget_round(source.id).await?;
                    }
                    self.revoke(source, run).await?;
                    return Ok(Round::Gathered(Gathered::Revoked));
                }
                Err(DatasourceError::Unauthorized(why)) => return Ok(Round::Stop(Stop::NeedsReauth(why))),
                Err(e) => return Ok(Round::Gathered(Gathered::Failed(e))),
            }
        }
    }

    /// The items of a round's first `pages` saved pages, the latest state of each; `None` when
    /// one cannot be read back.
    async fn saved_pages(
        &self,
        source: &Source,
        pages: u64,
    ) -> Result<Option<BTreeMap<String, RemoteItem>>, SyncError> {
        let mut changes = BTreeMap::new();
        for page in 0..pages {
            let mut items = Vec::new();
            for data in self.cx.store.round_page(source.id, page).await? {
                match serde_json::from_str::<RemoteItem>(&data) {
                    Ok(item) => items.push(item),
                    Err(_) => return Ok(None),
                }
            }
            changes = latest(changes, items);
        }
        Ok(Some(changes))
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

/// `changes` with `items` (a later page) over them: the latest state of each item wins, but a
/// sharing change anywhere in the round counts.
fn latest(mut changes: BTreeMap<String, RemoteItem>, items: Vec<RemoteItem>) -> BTreeMap<String, RemoteItem> {
    for mut item in items {
        if let Some(earlier) = changes.get(&item.id) {
            item.sharing.changed |= earlier.sharing.changed;
        }
        changes.insert(item.id.clone(), item);
    }
    changes
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
