//! driveItem delta: rounds, paging and tokens.
//!
//! Every drive keeps a monotonically increasing change sequence; each item remembers the sequence of its last
//! change (creation, content change, rename, move, deletion) and its parent as of each move. A delta link token
//! records the sequence a round was computed at; the next round returns the items changed since, in their latest
//! state. Tokens are opaque random strings looked up server-side, so their content never leaks to clients.

use crate::store::{DeltaRound, DeltaToken, Drive, RoundEntry, Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::Arc;

/// What a delta request asks for.
pub struct DeltaRequest<'a> {
    pub drive_id: &'a str,
    pub scope_id: &'a str,
    pub token: Option<&'a str>,
    pub top: Option<usize>,
    pub select: Option<Vec<String>>,
    pub exclude_parent: bool,
}

/// One page of a delta round, ready to be rendered.
pub struct DeltaPage {
    pub entries: Vec<RoundEntry>,
    pub select: Option<Vec<String>>,
    pub link: DeltaLink,
}

pub enum DeltaLink {
    Next(String),
    Delta(String),
}

#[derive(Debug)]
pub enum DeltaError {
    Store(StoreError),
    /// The token can no longer be used: 410 with a fresh token-less delta in `Location`.
    Expired {
        code: crate::store::ResyncCode,
    },
    /// The token belongs to another drive or scope.
    Mismatch,
}

impl From<StoreError> for DeltaError {
    fn from(e: StoreError) -> Self {
        DeltaError::Store(e)
    }
}

impl Store {
    fn mint_delta_token(&mut self, token: DeltaToken) -> String {
        let id = self.ids.token(48);
        self.delta_tokens.insert(id.clone(), token);
        id
    }

    fn token_too_old(&self, issued_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.delta
            .token_lifetime_secs
            .is_some_and(|secs| (now - issued_at).num_seconds() > secs)
    }

    /// Serves one delta page.
    pub fn delta_page(&mut self, req: DeltaRequest<'_>, now: DateTime<Utc>) -> Result<DeltaPage, DeltaError> {
        let drive = self.drive(req.drive_id)?;
        let scope = drive.item(req.scope_id)?;
        if !scope.folder {
            return Err(DeltaError::Store(StoreError::Invalid(
                "delta needs a folder".into(),
            )));
        }
        let epoch = drive.token_epoch;
        let resync = drive.resync_code;
        let personal = drive.drive_type.is_personal();
        let page_size = req.top.unwrap_or(self.delta.page_size).clamp(1, 1000);
        match req.token {
            None => {
                let entries = self.initial_round(req.drive_id, req.scope_id)?;
                self.start_round(&req, entries, epoch, page_size, now)
            }
            Some("latest") => {
                let since_seq = self.drive(req.drive_id)?.seq;
                let t = self.mint_delta_token(DeltaToken::Link {
                    drive_id: req.drive_id.to_string(),
                    scope_id: req.scope_id.to_string(),
                    since_seq,
                    epoch,
                    issued_at: now,
                    select: req.select.clone(),
                    top: req.top,
                });
                Ok(DeltaPage {
                    entries: Vec::new(),
                    select: req.select,
                    link: DeltaLink::Delta(t),
                })
            }
            Some(token) => {
                if let Some(record) = self.delta_tokens.get(token).cloned() {
                    match record {
                        DeltaToken::Link {
                            drive_id,
                            scope_id,
                            since_seq,
                            epoch: te,
                            issued_at,
                            select,
                            top,
                        } => {
                            if drive_id != req.drive_id || scope_id != req.scope_id {
                                return Err(DeltaError::Mismatch);
                            }
                            if te != epoch || self.token_too_old(issued_at, now) {
                                return Err(DeltaError::Expired { code: resync });
                            }
                            let entries = self.incremental_round(
                                req.drive_id,
                                req.scope_id,
                                since_seq,
                                req.exclude_parent,
                            )?;
                            let req = DeltaRequest {
                                select: req.select.or(select),
                                top: req.top.or(top),
                                ..req
                            };
                            let page_size = req.top.unwrap_or(self.delta.page_size).clamp(1, 1000);
                            self.start_round(&req, entries, epoch, page_size, now)
                        }
                        DeltaToken::Page {
                            round,
                            offset,
                            may_be_empty,
                            issued_at,
                        } => {
                            if round.drive_id != req.drive_id || round.scope_id != req.scope_id {
                                return Err(DeltaError::Mismatch);
                            }
                            if round.epoch != epoch || self.token_too_old(issued_at, now) {
                                return Err(DeltaError::Expired { code: resync });
                            }
                            Ok(self.page_of(round, offset, may_be_empty, now))
                        }
                    }
                } else if let (false, Ok(ts)) = (personal, DateTime::parse_from_rfc3339(token)) {
                    // ODB/SharePoint accept a timestamp as the token: changes since then.
                    let ts = ts.with_timezone(&Utc);
                    if self.token_too_old(ts, now) {
                        return Err(DeltaError::Expired { code: resync });
                    }
                    let drive = self.drive(req.drive_id)?;
                    let since = drive
                        .seq_times
                        .iter()
                        .take_while(|(_, t)| *t <= ts)
                        .last()
                        .map_or(0, |(s, _)| *s);
                    let entries =
                        self.incremental_round(req.drive_id, req.scope_id, since, req.exclude_parent)?;
                    self.start_round(&req, entries, epoch, page_size, now)
                } else {
                    // Unknown tokens (e.g. minted before a reset) cannot be resumed: start over.
                    Err(DeltaError::Expired { code: resync })
                }
            }
        }
    }

    fn start_round(
        &mut self,
        req: &DeltaRequest<'_>,
        entries: Vec<RoundEntry>,
        epoch: u64,
        page_size: usize,
        now: DateTime<Utc>,
    ) -> Result<DeltaPage, DeltaError> {
        let snapshot_seq = self.drive(req.drive_id)?.seq;
        let round = Arc::new(DeltaRound {
            drive_id: req.drive_id.to_string(),
            scope_id: req.scope_id.to_string(),
            entries,
            snapshot_seq,
            epoch,
            page_size,
            select: req.select.clone(),
            top: req.top,
        });
        Ok(self.page_of(round, 0, true, now))
    }

    fn page_of(
        &mut self,
        round: Arc<DeltaRound>,
        offset: usize,
        may_be_empty: bool,
        now: DateTime<Utc>,
    ) -> DeltaPage {
        let select = round.select.clone();
        if may_be_empty && offset < round.entries.len() && self.ids.chance(self.delta.empty_page_probability)
        {
            let t = self.mint_delta_token(DeltaToken::Page {
                round,
                offset,
                may_be_empty: false,
                issued_at: now,
            });
            return DeltaPage {
                entries: Vec::new(),
                select,
                link: DeltaLink::Next(t),
            };
        }
        let end = (offset + round.page_size).min(round.entries.len());
        let entries = round
            .entries
            .get(offset..end)
            .map(<[RoundEntry]>::to_vec)
            .unwrap_or_default();
        let link = if end < round.entries.len() {
            DeltaLink::Next(self.mint_delta_token(DeltaToken::Page {
                round,
                offset: end,
                may_be_empty: true,
                issued_at: now,
            }))
        } else {
            DeltaLink::Delta(self.mint_delta_token(DeltaToken::Link {
                drive_id: round.drive_id.clone(),
                scope_id: round.scope_id.clone(),
                since_seq: round.snapshot_seq,
                epoch: round.epoch,
                issued_at: now,
                select: round.select.clone(),
                top: round.top,
            }))
        };
        DeltaPage {
            entries,
            select,
            link,
        }
    }

    /// Every live item of the scope, scope first, folders before or after their subtree (seeded).
    fn initial_round(&mut self, drive_id: &str, scope_id: &str) -> Result<Vec<RoundEntry>, StoreError> {
        let Store {
            ids, drives, delta, ..
        } = self;
        let drive = drives
            .get(drive_id)
            .ok_or_else(|| StoreError::NotFound(drive_id.to_string()))?;
        let include: Option<&HashSet<String>> = None;
        let mut order = Vec::new();
        tree_order(
            drive,
            scope_id,
            scope_id,
            include,
            ids,
            delta.children_first_probability,
            &mut order,
        );
        let mut entries: Vec<RoundEntry> = order
            .into_iter()
            .map(|id| RoundEntry {
                id,
                tombstone: false,
                sharing_changed: false,
            })
            .collect();
        add_duplicates(&mut entries, ids, delta.duplicate_probability);
        Ok(entries)
    }

    /// Items changed since `since` as seen from `scope_id`.
    ///
    /// * An item whose permissions changed counts as changed (its eTag changes); its entry says so, for
    ///   clients that ask for sharing changes.
    /// * Live items inside the scope are returned in their latest state, with their ancestors up to the scope
    ///   (the parent hierarchy) unless `exclude_parent`.
    /// * Deleted items that were inside the scope at `since` are returned as tombstones.
    /// * Items that moved out of a folder scope are returned as tombstones (with their descendants), because
    ///   from the scope's point of view they are gone.
    /// * Folders that moved into the scope are returned with all their descendants, which the client never saw.
    fn incremental_round(
        &mut self,
        drive_id: &str,
        scope_id: &str,
        since: u64,
        exclude_parent: bool,
    ) -> Result<Vec<RoundEntry>, StoreError> {
        let Store {
            ids, drives, delta, ..
        } = self;
        let drive = drives
            .get(drive_id)
            .ok_or_else(|| StoreError::NotFound(drive_id.to_string()))?;
        let mut changed: Vec<&crate::store::Item> =
            drive.items.values().filter(|i| i.changed_seq > since).collect();
        changed.sort_by_key(|i| i.changed_seq);
        let mut live: HashSet<String> = HashSet::new();
        let mut gone: Vec<String> = Vec::new();
        let mut gone_set: HashSet<String> = HashSet::new();
        for item in changed {
            let now_inside = item.is_live() && drive.is_within(scope_id, &item.id);
            if now_inside {
                live.insert(item.id.clone());
                let moved_in = item.created_seq <= since && !drive.was_within_at(scope_id, &item.id, since);
                if moved_in && item.folder {
                    live.extend(drive.descendants(&item.id));
                }
            } else if drive.was_within_at(scope_id, &item.id, since) {
                if gone_set.insert(item.id.clone()) {
                    gone.push(item.id.clone());
                }
                if item.is_live() && item.folder {
                    for d in drive.descendants(&item.id) {
                        if gone_set.insert(d.clone()) {
                            gone.push(d);
                        }
                    }
                }
            }
        }
        if !exclude_parent {
            let mut ancestors = Vec::new();
            for id in &live {
                let mut cur = drive.items.get(id).and_then(|i| i.parent_id.clone());
                while let Some(p) = cur {
                    if !drive.is_within(scope_id, &p) {
                        break;
                    }
                    ancestors.push(p.clone());
                    if p == scope_id {
                        break;
                    }
                    cur = drive.items.get(&p).and_then(|i| i.parent_id.clone());
                }
            }
            live.extend(ancestors);
        }
        let mut order = Vec::new();
        tree_order(
            drive,
            scope_id,
            scope_id,
            Some(&live),
            ids,
            delta.children_first_probability,
            &mut order,
        );
        let mut entries: Vec<RoundEntry> = order
            .into_iter()
            .map(|id| {
                let sharing_changed = drive.items.get(&id).is_some_and(|i| i.sharing_seq > since);
                RoundEntry {
                    id,
                    tombstone: false,
                    sharing_changed,
                }
            })
            .collect();
        for id in gone {
            let pos = ids.below(entries.len() + 1);
            entries.insert(
                pos,
                RoundEntry {
                    id,
                    tombstone: true,
                    sharing_changed: false,
                },
            );
        }
        add_duplicates(&mut entries, ids, delta.duplicate_probability);
        Ok(entries)
    }
}

/// Depth-first order of the live subtree at `node`, restricted to `include` when given. The scope itself comes
/// first; any other folder is, with probability `p_children_first`, emitted after its descendants.
fn tree_order(
    drive: &Drive,
    scope: &str,
    node: &str,
    include: Option<&HashSet<String>>,
    ids: &mut crate::ids::IdGen,
    p_children_first: f64,
    out: &mut Vec<String>,
) {
    let Some(item) = drive.items.get(node) else { return };
    let wanted = include.is_none_or(|s| s.contains(node));
    let after = node != scope && item.folder && !item.children.is_empty() && ids.chance(p_children_first);
    if wanted && !after {
        out.push(node.to_string());
    }
    let mut children: Vec<&crate::store::Item> = item
        .children
        .values()
        .filter_map(|c| drive.items.get(c))
        .collect();
    children.sort_by_key(|c| c.created_seq);
    for child in children {
        tree_order(drive, scope, &child.id, include, ids, p_children_first, out);
    }
    if wanted && after {
        out.push(node.to_string());
    }
}

/// Re-emits some entries a second time at a later position ("the same item may appear more than once").
fn add_duplicates(entries: &mut Vec<RoundEntry>, ids: &mut crate::ids::IdGen, p: f64) {
    if p <= 0.0 || entries.is_empty() {
        return;
    }
    let n = entries.len();
    let mut inserts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if ids.chance(p) {
            let pos = i + 1 + ids.below(n - i);
            inserts.push((pos, entry.clone()));
        }
    }
    inserts.sort_by_key(|(pos, _)| std::cmp::Reverse(*pos));
    for (pos, e) in inserts {
        entries.insert(pos.min(entries.len()), e);
    }
}
