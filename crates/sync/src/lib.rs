//! The sync engine: one run brings a knowledge base's documents in line with its sources.
//!
//! A run goes in four steps:
//!
//! 1. **Gather.** Every source is asked what changed. A folder source follows the datasource's
//!    change feed from its cursor, page by page, and buffers the whole round (items arrive in any
//!    order, possibly twice, children before parents); a file source reads the file's metadata.
//!    What the engine knows of a source's items (names, parents, hashes) is kept in a
//!    [`state::SourceState`] saved together with the cursor, one row per item, so paths are
//!    rebuilt from parent ids and nameless tombstones are resolved by id; a round with a few
//!    changes reads and writes only the items it touches. A source that answers "not found" (404/403) is
//!    revoked at once, whatever else the run does: its documents leave search (kept, with its
//!    cursor) and their access lists are cleared; if the next run gets the same answer the loss is
//!    confirmed and the documents are removed, if it reads the source they come back.
//! 2. **Check the limit.** With every source gathered, the files of the knowledge base are
//!    counted (distinct items, whatever order the feeds listed them in). Over
//!    [`SyncLimits::max_files`] the run stops with `file_limit_exceeded` before anything is
//!    downloaded or any cursor moves.
//! 3. **Apply.** Renames and moves (content unchanged) update documents without downloading;
//!    deleted items and items that left a source are removed; files that cannot be indexed
//!    (unsupported type, over [`SyncLimits::max_file_size`]) are skipped. What is left is the
//!    work list: new and changed files, downloaded, extracted and indexed with bounded
//!    concurrency, each within [`SyncLimits::file_timeout`]. A source's new cursor is saved as
//!    soon as every file of its round is brought in or recorded as a failed file; failed files
//!    are retried by the next run although the cursor moved, because their state says they were
//!    never brought in at their current hash.
//! 4. **Document access.** Every document carries the access list of its item at the source: the
//!    principals (users, groups, site groups, and `everyone` for open links when allowed) that the
//!    nearest item above it whose permissions were read names (see [`permissions`]). A run reads
//!    only the permissions of the source's root and of the items the change feed reports with a
//!    sharing change or as new roots of a permission hierarchy, until a full read is due. The
//!    groups the lists name are then expanded from the source when due.
//!
//! **Skipped files are not failures.** A failure means "retried next run"; a file skipped for
//! its type or size will be skipped again until it changes, so it is only counted (`skipped`),
//! logged at debug level with its reason, and remembered in the source state (so it is neither
//! counted nor fetched again while it stays as it is). It never appears in a run's failures.
//!
//! **Final status**, when several things happened in one run, the first that applies wins:
//! `needs_reauth` > `file_limit_exceeded` > `cancelled` > `access_revoked` > `failed` >
//! `completed_with_errors` > `completed`. The order follows what the user has to do: nothing
//! else can proceed until the user signs in again; a knowledge base over its file limit syncs
//! nothing until sources or the limit change; a cancelled run says nothing about the sources it
//! did not reach; a revoked source needs the owner to share it again (or the source removed),
//! which outweighs a passing failure of another source; and a source that could not be read at
//! all outweighs individual files that failed.

mod engine;
pub mod events;
pub mod permissions;
pub mod runner;
pub mod runtime;
pub mod scheduler;
pub mod state;

pub use crate::engine::{RunStart, RunSummary, SyncContext, SyncEngine, SyncError, SyncLimits};
pub use crate::permissions::PermissionPolicy;
pub use crate::runtime::{SyncRuntime, SyncSettings};
