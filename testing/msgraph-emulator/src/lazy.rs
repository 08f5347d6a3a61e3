//! A drive generated lazily: `n` items (folders and mostly small text files) whose names, parents, sizes,
//! bytes and hashes are pure functions of (seed, index), so that a drive of a million items costs no memory
//! beyond its root. Delta pages, items, children and `/content` are computed on demand; a delta link encodes
//! its position in the round, so the emulator keeps no per-round state either.
//!
//! The tree is a complete tree of [`FANOUT`] children per folder numbered breadth first: node 0 is the drive's
//! (real) root, node `k`'s children are `k·F+1 ..= k·F+F` (those up to `n`), and a node is a folder exactly
//! when it has children. About one item in a hundred is a folder. A folder scope's descendants at each depth
//! form one contiguous range of indices, so a delta round enumerates a scope in index order: parents always
//! come before their children (one of the orders Graph may use), each item exactly once, without duplicates
//! or empty pages.
//!
//! A generated drive is read-only: the control API cannot add, change or remove its items. Permissions may
//! be set on its root; every generated item inherits them.

use crate::clock::graph_time;
use crate::delta::DeltaError;
use crate::ids::mix;
use crate::render::{self, Mode, RenderCtx};
use crate::store::{Content, Drive, Store};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Children per folder of a generated drive.
pub const FANOUT: u64 = 100;

/// The smallest and largest generated file, in bytes (sizes are spread evenly in between).
const FILE_SIZES: (u64, u64) = (120, 2_019);

const TOPICS: &[&str] = &[
    "Quarterly summary",
    "Project plan",
    "Budget overview",
    "Meeting notes",
    "Design review",
    "Vendor contract",
    "Release checklist",
    "Customer feedback",
    "Risk register",
    "Team handbook",
    "Sales forecast",
    "Market analysis",
    "Incident report",
    "Training guide",
    "Architecture notes",
    "Hiring plan",
    "Status update",
    "Policy draft",
    "Roadmap",
    "Retrospective",
];

/// The delta pages a generated drive has served since it was created (or since the counts were cleared).
///
/// A page is identified by its scope, its position in the round and its size: asking for a page that was
/// already served (after a restart from an older link, or from the start) counts as a repeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaPageCounts {
    /// Delta requests that returned a page of an enumeration round (the first request and every nextLink).
    pub requests: u64,
    /// Of those, requests for a page that had been served before.
    pub repeated: u64,
    /// Rounds that reached their deltaLink.
    pub rounds_completed: u64,
    /// Pages in a round of the whole drive at the page size of the latest request.
    pub pages_per_round: u64,
    /// Requests with a deltaLink token (changes since a completed round: always none).
    pub incremental_requests: u64,
}

#[derive(Debug, Default)]
struct PageLog {
    served: HashMap<(u64, u64, u64), u32>,
    counts: DeltaPageCounts,
}

/// The generated part of a drive (see the module documentation).
#[derive(Debug)]
pub struct LazyDrive {
    items: u64,
    seed: u64,
    /// Eight upper-case letters that tell this drive's item ids from other drives' (business drives).
    tag: String,
    pages: Mutex<PageLog>,
}

/// One page of a delta round over a generated drive: node indices (0 = the root) and the link to follow.
pub struct LazyPage {
    pub nodes: Vec<u64>,
    pub link: crate::delta::DeltaLink,
}

/// Where a delta link of a generated drive points: a position in a round of one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    epoch: u64,
    scope: u64,
    offset: u64,
    page: u64,
    issued: i64,
}

impl Position {
    const PREFIX: &'static str = "lazy1";

    fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}.{}.{}.{}.{}.{}",
            Self::PREFIX,
            self.epoch,
            self.scope,
            self.offset,
            self.page,
            self.issued
        ))
    }

    fn decode(token: &str) -> Option<Position> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let mut parts = text.split('.');
        if parts.next()? != Self::PREFIX {
            return None;
        }
        let mut num = || parts.next()?.parse::<u64>().ok();
        let (epoch, scope, offset, page) = (num()?, num()?, num()?, num()?);
        let issued = i64::try_from(num()?).ok()?;
        Some(Position {
            epoch,
            scope,
            offset,
            page,
            issued,
        })
    }
}

impl LazyDrive {
    pub fn new(items: u64, seed: u64, drive_id: &str) -> Self {
        let mut h = mix(seed ^ 0x6c61_7a79);
        for b in drive_id.bytes() {
            h = mix(h ^ u64::from(b));
        }
        let tag: String = (0..8)
            .map(|i| char::from(b'A' + ((h >> (i * 5)) % 26) as u8))
            .collect();
        Self {
            items,
            seed,
            tag,
            pages: Mutex::new(PageLog::default()),
        }
    }

    /// Items below the root.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Files among them (the rest are folders).
    pub fn files(&self) -> u64 {
        // Node k is a folder when k·F + 1 <= n: the first (n - 1) / F nodes below the root.
        self.items - self.items.saturating_sub(1) / FANOUT
    }

    pub fn is_folder(&self, k: u64) -> bool {
        k == 0 || k.saturating_mul(FANOUT).saturating_add(1) <= self.items
    }

    pub fn parent(&self, k: u64) -> Option<u64> {
        (k > 0).then(|| (k - 1) / FANOUT)
    }

    /// The indices of a folder's children (empty for a file).
    pub fn children(&self, k: u64) -> std::ops::Range<u64> {
        if !self.is_folder(k) {
            return 0..0;
        }
        let first = k * FANOUT + 1;
        first..(first + FANOUT).min(self.items + 1)
    }

    /// The item id of node `k` (`root_id` for 0).
    pub fn id(&self, drive: &Drive, k: u64) -> String {
        if k == 0 {
            drive.root_id.clone()
        } else if drive.drive_type.is_personal() {
            format!("{}!{}", drive.id.to_uppercase(), 1_000_000_000 + k)
        } else {
            format!("01{}{k:024}", self.tag)
        }
    }

    /// The node an item id names, if it is one of this drive's.
    pub fn index_of(&self, drive: &Drive, id: &str) -> Option<u64> {
        if id == drive.root_id {
            return Some(0);
        }
        let k = if drive.drive_type.is_personal() {
            let (prefix, n) = id.rsplit_once('!')?;
            if !prefix.eq_ignore_ascii_case(&drive.id) {
                return None;
            }
            n.parse::<u64>().ok()?.checked_sub(1_000_000_000)?
        } else {
            let digits = id.strip_prefix("01")?.strip_prefix(self.tag.as_str())?;
            if digits.len() != 24 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse::<u64>().ok()?
        };
        (1..=self.items).contains(&k).then_some(k)
    }

    fn title(&self, k: u64) -> String {
        let topic = TOPICS[(mix(self.seed ^ k.wrapping_mul(0x2545_f491)) % TOPICS.len() as u64) as usize];
        format!("{topic} {k}")
    }

    /// The name of node `k` (`root` for 0): `Folder {k}`, or `{Topic} {k}.txt` (one file in seven `.md`).
    pub fn name(&self, k: u64) -> String {
        if k == 0 {
            "root".into()
        } else if self.is_folder(k) {
            format!("Folder {k}")
        } else {
            let ext = if mix(self.seed ^ k ^ 0x6d64).is_multiple_of(7) {
                "md"
            } else {
                "txt"
            };
            format!("{}.{ext}", self.title(k))
        }
    }

    /// The size of file `k` in bytes (a folder: the sum of the files below it).
    pub fn size(&self, k: u64) -> u64 {
        if self.is_folder(k) {
            return self.folder_size(k);
        }
        let (lo, hi) = FILE_SIZES;
        lo + mix(self.seed ^ k.wrapping_mul(0x9e37_79b9)) % (hi - lo + 1)
    }

    fn folder_size(&self, k: u64) -> u64 {
        let (mut lo, mut hi) = (k, k);
        let mut total = 0;
        loop {
            lo = lo.saturating_mul(FANOUT).saturating_add(1);
            hi = hi.saturating_mul(FANOUT).saturating_add(FANOUT).min(self.items);
            if lo > self.items {
                return total;
            }
            total += (lo..=hi)
                .filter(|i| !self.is_folder(*i))
                .map(|i| self.size(i))
                .sum::<u64>();
        }
    }

    /// The bytes of file `k`: its title and plain text, exactly [`LazyDrive::size`] bytes, ending in a newline.
    pub fn bytes(&self, k: u64) -> Vec<u8> {
        let len = usize::try_from(self.size(k)).unwrap_or(0).max(2);
        let mut text = format!("{}\n\n", self.title(k));
        let mut part = 0u64;
        while text.len() < len {
            text.push_str(&kbsync_fixtures::text_corpus(
                mix(self.seed ^ k.wrapping_mul(31) ^ part),
                len / 5 + 8,
            ));
            text.push('\n');
            part += 1;
        }
        let mut cut = len - 1;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        while text.len() < len - 1 {
            text.push(' ');
        }
        text.push('\n');
        text.into_bytes()
    }

    /// The content of file `k` with its hashes.
    pub fn content(&self, k: u64) -> Arc<Content> {
        Content::new(self.bytes(k).into())
    }

    /// The path of node `k` below the root (`""` for the root).
    pub fn path(&self, k: u64) -> String {
        let mut parts = Vec::new();
        let mut cur = k;
        while cur > 0 {
            parts.push(self.name(cur));
            cur = (cur - 1) / FANOUT;
        }
        parts.reverse();
        parts.iter().map(|p| format!("/{p}")).collect()
    }

    /// Resolves a `/`-separated path below node `from` (case-insensitively, as OneDrive does).
    pub fn resolve(&self, from: u64, rel: &str) -> Option<u64> {
        let mut cur = from;
        for seg in crate::store::split_path(rel) {
            let stem = seg.rsplit_once('.').map_or(seg, |(s, _)| s);
            let k: u64 = stem.rsplit_once(' ')?.1.parse().ok()?;
            if k == 0
                || k > self.items
                || self.parent(k) != Some(cur)
                || !self.name(k).eq_ignore_ascii_case(seg)
            {
                return None;
            }
            cur = k;
        }
        Some(cur)
    }

    /// Items in a delta round of `scope`: the scope and everything below it.
    fn scope_len(&self, scope: u64) -> u64 {
        let (mut lo, mut hi) = (scope, scope);
        let mut n = 1;
        loop {
            lo = lo.saturating_mul(FANOUT).saturating_add(1);
            hi = hi.saturating_mul(FANOUT).saturating_add(FANOUT).min(self.items);
            if lo > self.items || lo > hi {
                return n;
            }
            n += hi - lo + 1;
        }
    }

    /// The item at position `pos` of a round of `scope`: the scope first, then its descendants depth by depth.
    fn nth_in_scope(&self, scope: u64, pos: u64) -> Option<u64> {
        if pos == 0 {
            return Some(scope);
        }
        let mut rest = pos - 1;
        let (mut lo, mut hi) = (scope, scope);
        loop {
            lo = lo.saturating_mul(FANOUT).saturating_add(1);
            hi = hi.saturating_mul(FANOUT).saturating_add(FANOUT).min(self.items);
            if lo > self.items || lo > hi {
                return None;
            }
            let count = hi - lo + 1;
            if rest < count {
                return Some(lo + rest);
            }
            rest -= count;
        }
    }

    /// One delta page of `scope` (see [`crate::store::Store::delta_page`] for the token forms). Tokens of
    /// this drive encode their position; an unknown token answers 410 like an expired one.
    #[allow(clippy::too_many_arguments)]
    pub fn delta_page(
        &self,
        drive: &Drive,
        scope: u64,
        token: Option<&str>,
        top: Option<usize>,
        default_page: usize,
        lifetime_secs: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<LazyPage, DeltaError> {
        let len = self.scope_len(scope);
        let code = drive.resync_code;
        let page_of = |top: Option<usize>| top.unwrap_or(default_page).clamp(1, 1000) as u64;
        let done = |page: u64| Position {
            epoch: drive.token_epoch,
            scope,
            offset: len,
            page,
            issued: now.timestamp(),
        };
        let start = match token {
            None => Position {
                epoch: drive.token_epoch,
                scope,
                offset: 0,
                page: page_of(top),
                issued: now.timestamp(),
            },
            Some("latest") => {
                return Ok(LazyPage {
                    nodes: Vec::new(),
                    link: crate::delta::DeltaLink::Delta(done(page_of(top)).encode()),
                });
            }
            Some(t) => {
                let pos = Position::decode(t).ok_or(DeltaError::Expired { code })?;
                if pos.scope != scope {
                    return Err(DeltaError::Mismatch);
                }
                let too_old = lifetime_secs.is_some_and(|secs| now.timestamp() - pos.issued > secs);
                if pos.epoch != drive.token_epoch || too_old || pos.offset > len {
                    return Err(DeltaError::Expired { code });
                }
                let page = top.map_or(pos.page, |t| page_of(Some(t)));
                if pos.offset == len {
                    // A deltaLink: a generated drive never changes, so there is nothing new.
                    self.pages.lock().counts.incremental_requests += 1;
                    return Ok(LazyPage {
                        nodes: Vec::new(),
                        link: crate::delta::DeltaLink::Delta(done(page).encode()),
                    });
                }
                Position { page, ..pos }
            }
        };
        let end = (start.offset + start.page).min(len);
        let nodes: Vec<u64> = (start.offset..end)
            .filter_map(|p| self.nth_in_scope(scope, p))
            .collect();
        {
            let mut log = self.pages.lock();
            let seen = log.served.entry((scope, start.offset, start.page)).or_insert(0);
            *seen += 1;
            let repeat = *seen > 1;
            log.counts.requests += 1;
            log.counts.repeated += u64::from(repeat);
            log.counts.rounds_completed += u64::from(end == len);
            log.counts.pages_per_round = (self.items + 1).div_ceil(start.page);
        }
        let link = if end < len {
            crate::delta::DeltaLink::Next(
                Position {
                    offset: end,
                    issued: now.timestamp(),
                    ..start
                }
                .encode(),
            )
        } else {
            crate::delta::DeltaLink::Delta(done(start.page).encode())
        };
        Ok(LazyPage { nodes, link })
    }

    pub fn page_counts(&self) -> DeltaPageCounts {
        self.pages.lock().counts
    }

    pub fn clear_page_counts(&self) {
        *self.pages.lock() = PageLog::default();
    }

    /// The eTag and cTag of generated node `k` (never changes: version 1).
    pub fn etags(&self, k: u64) -> (String, String) {
        let guid = crate::ids::derived_guid(self.seed ^ 0x6574_6167, k).to_uppercase();
        (format!("\"{{{guid}}},1\""), format!("\"c:{{{guid}}},1\""))
    }

    /// The driveItem of node `k` (the root as the store renders it, with the generated children's count
    /// and size).
    pub fn item_json(
        &self,
        store: &Store,
        drive: &Drive,
        k: u64,
        ctx: &RenderCtx<'_>,
        mode: Mode,
    ) -> Map<String, Value> {
        if k == 0 {
            let mut m = match drive.root() {
                Ok(root) => render::item_json(store, drive, root, ctx, mode),
                Err(_) => Map::new(),
            };
            m.insert("size".into(), self.folder_size(0).into());
            m.insert("folder".into(), json!({"childCount": self.children(0).count()}));
            return m;
        }
        let business = !drive.drive_type.is_personal();
        let id = self.id(drive, k);
        let name = self.name(k);
        let (etag, ctag) = self.etags(k);
        let at = graph_time(drive.created_at);
        let creator = match drive.root() {
            Ok(root) => render::identity_of(store, drive, &root.created_by),
            Err(_) => Value::Null,
        };
        let mut m = Map::new();
        m.insert("createdDateTime".into(), at.clone().into());
        m.insert("eTag".into(), etag.into());
        m.insert("id".into(), id.clone().into());
        m.insert("lastModifiedDateTime".into(), at.clone().into());
        m.insert("name".into(), name.clone().into());
        m.insert(
            "webUrl".into(),
            format!(
                "{}{}",
                render::drive_web_url(store, drive),
                render::encode_path(&self.path(k))
            )
            .into(),
        );
        if mode == Mode::Full || !business {
            m.insert("cTag".into(), ctag.into());
        }
        m.insert("createdBy".into(), creator.clone());
        m.insert("lastModifiedBy".into(), creator);
        let parent_k = self.parent(k).unwrap_or(0);
        let mut parent = Map::new();
        parent.insert("driveType".into(), drive.drive_type.as_str().into());
        parent.insert("driveId".into(), drive.id.clone().into());
        parent.insert("id".into(), self.id(drive, parent_k).into());
        if mode == Mode::Full {
            let prefix = if business {
                format!("/drives/{}/root:", drive.id)
            } else {
                "/drive/root:".to_string()
            };
            parent.insert("path".into(), format!("{prefix}{}", self.path(parent_k)).into());
            if parent_k > 0 {
                parent.insert("name".into(), self.name(parent_k).into());
            }
        }
        if let Some(sid) = &drive.site_id {
            parent.insert("siteId".into(), sid.clone().into());
        }
        m.insert("parentReference".into(), Value::Object(parent));
        m.insert(
            "fileSystemInfo".into(),
            json!({"createdDateTime": at, "lastModifiedDateTime": at}),
        );
        if self.is_folder(k) {
            m.insert("size".into(), self.folder_size(k).into());
            m.insert("folder".into(), json!({"childCount": self.children(k).count()}));
        } else {
            let c = self.content(k);
            m.insert("size".into(), c.bytes.len().into());
            m.insert(
                "@microsoft.graph.downloadUrl".into(),
                render::download_url(ctx, &drive.id, &id).into(),
            );
            let mut hashes = Map::new();
            hashes.insert("quickXorHash".into(), c.quick_xor_hash.clone().into());
            if !business {
                hashes.insert("sha1Hash".into(), c.sha1_hash.clone().into());
            }
            m.insert(
                "file".into(),
                json!({"mimeType": render::mime_for(&name), "hashes": hashes}),
            );
        }
        m
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::delta::DeltaLink;
    use std::collections::HashSet;

    fn drive_with(items: u64) -> (Store, String) {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let store = crate::initial_store(
            &crate::Emulator::builder().seed(3).generate_lazily(items),
            "http://emulator.test",
            now,
        )
        .unwrap();
        let id = store.default_drive_id.clone();
        (store, id)
    }

    fn lazy(store: &Store, drive: &str) -> Arc<LazyDrive> {
        store.drive(drive).unwrap().lazy.clone().unwrap()
    }

    /// Follows a whole round of `scope` and returns the nodes in the order served, and the pages.
    fn round(store: &Store, drive: &str, scope: u64, top: usize) -> (Vec<u64>, u64) {
        let d = store.drive(drive).unwrap();
        let l = lazy(store, drive);
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (mut nodes, mut pages, mut token) = (Vec::new(), 0, None::<String>);
        loop {
            let page = l
                .delta_page(d, scope, token.as_deref(), Some(top), 200, None, now)
                .map_err(|_| "delta failed")
                .unwrap();
            pages += 1;
            nodes.extend(page.nodes);
            match page.link {
                DeltaLink::Next(t) => token = Some(t),
                DeltaLink::Delta(_) => return (nodes, pages),
            }
        }
    }

    #[test]
    fn a_round_of_the_drive_serves_every_item_exactly_once_with_parents_first() {
        for (items, top) in [(1, 7), (100, 10), (101, 33), (12_345, 200), (20_000, 1000)] {
            let (store, drive) = drive_with(items);
            let (nodes, pages) = round(&store, &drive, 0, top);
            assert_eq!(nodes.len() as u64, items + 1, "{items} items");
            assert_eq!(pages, (items + 1).div_ceil(top as u64));
            let mut seen = HashSet::new();
            let l = lazy(&store, &drive);
            for k in &nodes {
                if let Some(p) = l.parent(*k) {
                    assert!(seen.contains(&p), "node {k} came before its parent {p}");
                    assert!(l.is_folder(p));
                }
                assert!(seen.insert(*k), "node {k} served twice");
            }
            assert_eq!(l.page_counts().requests, pages);
            assert_eq!(l.page_counts().repeated, 0);
            assert_eq!(l.page_counts().rounds_completed, 1);
        }
    }

    #[test]
    fn a_round_of_a_folder_serves_exactly_its_subtree_with_parents_first() {
        let (store, drive) = drive_with(25_000);
        let l = lazy(&store, &drive);
        for scope in [1, 2, 150, 249] {
            let (nodes, _) = round(&store, &drive, scope, 50);
            let expected: HashSet<u64> = (0..=25_000u64)
                .filter(|k| {
                    let mut cur = Some(*k);
                    while let Some(c) = cur {
                        if c == scope {
                            return true;
                        }
                        cur = l.parent(c);
                    }
                    false
                })
                .collect();
            assert_eq!(nodes.len(), expected.len());
            assert_eq!(nodes.iter().copied().collect::<HashSet<_>>(), expected);
            assert_eq!(nodes[0], scope);
        }
    }

    #[test]
    fn most_items_are_small_files_and_folders_hold_at_most_the_fanout() {
        let (store, drive) = drive_with(1_000_000);
        let l = lazy(&store, &drive);
        let folders = (1..=1_000_000).filter(|k| l.is_folder(*k)).count() as u64;
        assert_eq!(l.files(), 1_000_000 - folders);
        assert!(folders * 100 < 1_000_000 * 2, "{folders} folders");
        assert!(l.children(0).count() as u64 <= FANOUT);
        for k in [500_000, 999_999, 1_000_000] {
            assert!(!l.is_folder(k));
            assert!(l.size(k) <= 2_019);
        }
    }

    #[test]
    fn content_matches_its_size_and_hashes_and_is_the_same_every_time() {
        let (store, drive) = drive_with(20_000);
        let d = store.drive(&drive).unwrap();
        let l = lazy(&store, &drive);
        let ctx = RenderCtx {
            base_url: "http://emulator.test",
            now: d.created_at,
            download_key: &[7; 32],
            download_lifetime_secs: 300,
        };
        for k in [200, 201, 7_777, 20_000] {
            let bytes = l.bytes(k);
            assert_eq!(bytes.len() as u64, l.size(k));
            let name = l.name(k);
            let title = name.rsplit_once('.').unwrap().0;
            assert!(std::str::from_utf8(&bytes).unwrap().starts_with(title));
            assert_eq!(bytes, l.bytes(k));
            let m = l.item_json(&store, d, k, &ctx, Mode::Delta);
            assert_eq!(
                m["file"]["hashes"]["quickXorHash"],
                crate::quickxorhash::quickxorhash(&bytes)
            );
            assert_eq!(m["size"], bytes.len());
            assert_eq!(l.index_of(d, m["id"].as_str().unwrap()), Some(k));
            assert_eq!(l.resolve(0, &l.path(k)), Some(k));
        }
    }

    #[test]
    fn delta_links_resume_where_they_point_and_repeats_are_counted() {
        let (store, drive) = drive_with(1_000);
        let d = store.drive(&drive).unwrap();
        let l = lazy(&store, &drive);
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let first = l
            .delta_page(d, 0, None, Some(100), 200, None, now)
            .map_err(|_| ())
            .unwrap();
        let DeltaLink::Next(next) = first.link else {
            panic!("a nextLink")
        };
        let second = l
            .delta_page(d, 0, Some(&next), None, 200, None, now)
            .map_err(|_| ())
            .unwrap();
        assert_eq!(second.nodes, (100..200).collect::<Vec<u64>>());
        let again = l
            .delta_page(d, 0, Some(&next), None, 200, None, now)
            .map_err(|_| ())
            .unwrap();
        assert_eq!(again.nodes, second.nodes);
        let counts = l.page_counts();
        assert_eq!((counts.requests, counts.repeated), (3, 1));
        assert_eq!(counts.pages_per_round, 11);
        assert!(matches!(
            l.delta_page(d, 0, Some("not-a-token"), None, 200, None, now),
            Err(DeltaError::Expired { .. })
        ));
        assert!(matches!(
            l.delta_page(d, 1, Some(&next), None, 200, None, now),
            Err(DeltaError::Mismatch)
        ));
    }
}
