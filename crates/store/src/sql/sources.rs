//! The SQL of [`SourceStore`](crate::SourceStore): sources, their cursors and saved state, and
//! revocation, the same text on both databases.

use crate::convert::{from_ms, parse_datasource, parse_uuid};
use crate::{Result, StoreError};

macro_rules! source_cols {
    () => {
        "id, kb_id, datasource, kind, drive_id, item_id, name, path, cursor, state_files, state_pending, state_settings, \
         revoked_at, created_at, round_from, round_next, round_full, round_pages"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SourceRow {
    pub id: String,
    pub kb_id: String,
    pub datasource: String,
    pub kind: String,
    pub drive_id: String,
    pub item_id: String,
    pub name: String,
    pub path: String,
    pub cursor: Option<String>,
    pub state_files: Option<i64>,
    pub state_pending: Option<i64>,
    pub state_settings: Option<String>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    pub round_from: Option<String>,
    pub round_next: Option<String>,
    pub round_full: bool,
    pub round_pages: i64,
}

impl SourceRow {
    pub(crate) fn into_source(self) -> Result<kbsync_core::Source> {
        let kind = match self.kind.as_str() {
            "folder" => kbsync_core::SourceKind::Folder,
            "file" => kbsync_core::SourceKind::File,
            other => return Err(StoreError::Corrupt(format!("unknown source kind {other:?}"))),
        };
        Ok(kbsync_core::Source {
            id: parse_uuid(&self.id)?,
            kb_id: parse_uuid(&self.kb_id)?,
            datasource: parse_datasource(&self.datasource)?,
            kind,
            drive_id: self.drive_id,
            item_id: self.item_id,
            name: self.name,
            path: self.path,
            cursor: self.cursor,
            state_files: self.state_files.and_then(|n| u64::try_from(n).ok()),
            state_pending: self.state_pending.and_then(|n| u64::try_from(n).ok()),
            state_settings: self.state_settings,
            revoked_at: self.revoked_at.map(from_ms).transpose()?,
            created_at: from_ms(self.created_at)?,
            round: self.round_next.map(|next| kbsync_core::SavedRound {
                from: self.round_from,
                next,
                full: self.round_full,
                pages: u64::try_from(self.round_pages).unwrap_or(0),
            }),
        })
    }
}

/// A row of `source_items`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SourceItemRow {
    pub item_id: String,
    pub parent_id: Option<String>,
    pub owned: bool,
    pub pending: bool,
    pub data: String,
}

impl From<SourceItemRow> for crate::SourceItem {
    fn from(row: SourceItemRow) -> Self {
        Self {
            item_id: row.item_id,
            parent_id: row.parent_id,
            owned: row.owned,
            pending: row.pending,
            data: row.data,
        }
    }
}

/// Which way a recursive read of `source_items` walks from its seed rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Each step adds the parent of what was reached: the folders above.
    Up,
    /// Each step adds the children of what was reached: everything below.
    Down,
}

/// Pushes `WITH RECURSIVE reached (item_id) AS (…)`: the ids of a source's rows reached by
/// walking `step` from the seed rows. `seed` is the seed rows' condition up to the id list, e.g.
/// `"item_id IN ("`; the ids follow, then a `)` for each `(` it opened.
pub(crate) fn reached<'a, DB>(
    qb: &mut sqlx::QueryBuilder<DB>,
    source_id: &'a str,
    seed: &'static str,
    ids: &'a [String],
    step: Step,
) where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push("WITH RECURSIVE reached (item_id) AS (SELECT item_id FROM source_items WHERE source_id = ")
        .push_bind(source_id)
        .push(" AND ")
        .push(seed);
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(id.as_str());
    }
    let opened = seed.matches('(').count();
    qb.push(")".repeat(opened));
    let (walked, joined) = match step {
        Step::Up => ("s.parent_id", "s.item_id"),
        Step::Down => ("s.item_id", "s.parent_id"),
    };
    qb.push(format!(
        " UNION SELECT {walked} FROM source_items s JOIN reached ON {joined} = reached.item_id WHERE s.source_id = "
    ))
    .push_bind(source_id)
    .push(format!(" AND {walked} IS NOT NULL) "));
}

/// Writes `impl SourceStore for $ty`. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_source_store {
    ($ty:ty) => {
        impl $ty {
            /// `NotFound` unless the source exists (asked after a read found nothing).
            async fn source_exists(&self, source_id: &str) -> $crate::Result<()> {
                let exists: Option<String> = sqlx::query_scalar("SELECT id FROM sources WHERE id = $1")
                    .bind(source_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?;
                exists.map(|_| ()).ok_or($crate::StoreError::NotFound)
            }
        }

        #[async_trait::async_trait]
        impl $crate::SourceStore for $ty {
            async fn add_source(
                &self,
                id: uuid::Uuid,
                new: $crate::NewSource,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::Source> {
                let kb = new.kb_id.to_string();
                let inserted = sqlx::query(
                    "INSERT INTO sources (id, kb_id, datasource, kind, drive_id, item_id, name, path, \
                     cursor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9) \
                     ON CONFLICT (kb_id, drive_id, item_id) DO NOTHING",
                )
                .bind(id.to_string())
                .bind(&kb)
                .bind(new.datasource.as_str())
                .bind(new.kind.as_str())
                .bind(&new.drive_id)
                .bind(&new.item_id)
                .bind(&new.name)
                .bind(&new.path)
                .bind($crate::convert::ms(now))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown knowledge base {}", new.kb_id))
                    }
                    other => other,
                })?;
                if inserted.rows_affected() > 0 {
                    // A new source's permissions are read in full on the next run.
                    $crate::KnowledgeBaseStore::forget_sharing_reads(self, Some(new.kb_id)).await?;
                }
                sqlx::query_as::<_, $crate::sql::sources::SourceRow>(concat!(
                    "SELECT ",
                    $crate::sql::sources::source_cols!(),
                    " FROM sources WHERE kb_id = $1 AND drive_id = $2 AND item_id = $3"
                ))
                .bind(&kb)
                .bind(&new.drive_id)
                .bind(&new.item_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_source()
            }

            async fn list_sources(&self, kb_id: kbsync_core::KbId) -> $crate::Result<Vec<kbsync_core::Source>> {
                let rows = sqlx::query_as::<_, $crate::sql::sources::SourceRow>(concat!(
                    "SELECT ",
                    $crate::sql::sources::source_cols!(),
                    " FROM sources WHERE kb_id = $1 ORDER BY created_at, id"
                ))
                .bind(kb_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::convert::collect(rows, $crate::sql::sources::SourceRow::into_source)
            }

            async fn delete_source(
                &self,
                kb_id: kbsync_core::KbId,
                source_id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Vec<String>> {
                let kb = kb_id.to_string();
                let source = source_id.to_string();
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query("SELECT 1 FROM sources WHERE id = $1 AND kb_id = $2")
                    .bind(&source)
                    .bind(&kb)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if exists.is_none() {
                    return Err($crate::StoreError::NotFound);
                }
                // The hashes of the source's documents that no other document uses (in any
                // knowledge base), taken inside the transaction that deletes them.
                let mut hashes: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT d.content_hash FROM documents d WHERE d.source_id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM documents o WHERE o.content_hash = d.content_hash \
                     AND (o.source_id IS NULL OR o.source_id <> $1))",
                )
                .bind(&source)
                .fetch_all(&mut *tx)
                .await
                .map_err(Self::err)?;
                // Their blobs are collected later (docs/storage.md).
                sqlx::query(
                    "INSERT INTO blob_orphans (content_hash, since) \
                     SELECT DISTINCT content_hash, $2 FROM documents WHERE source_id = $1 \
                     ON CONFLICT (content_hash) DO NOTHING",
                )
                .bind(&source)
                .bind($crate::convert::ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                // Sources changed: the next run reads every permission again.
                sqlx::query("UPDATE knowledge_bases SET sharing_read_at = NULL WHERE id = $1")
                    .bind(&kb)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                // Chunks go with their documents (ON DELETE CASCADE; on SQLite the FTS5 index
                // follows through the chunk triggers), exactly as in delete_document.
                sqlx::query("DELETE FROM documents WHERE source_id = $1")
                    .bind(&source)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                sqlx::query("DELETE FROM sources WHERE id = $1")
                    .bind(&source)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                hashes.sort();
                Ok(hashes)
            }

            // --- cursor and saved state ----------------------------------------------------

            async fn save_source_items(
                &self,
                source_id: uuid::Uuid,
                cursor: &str,
                saved: $crate::SavedItems<'_>,
            ) -> $crate::Result<()> {
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                let id = source_id.to_string();
                let mut tx = self.begin_write().await?;
                // The round that ends here was saved page by page, or not at all.
                let done = sqlx::query(concat!(
                    "UPDATE sources SET cursor = $2, state_files = $3, state_pending = $4, state_settings = $5, ",
                    $crate::sql::sources::no_round!(),
                    " WHERE id = $1"
                ))
                .bind(&id)
                .bind(cursor)
                .bind(count(saved.files))
                .bind(count(saved.pending))
                .bind(saved.settings)
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                // A state saved as one document is replaced by the rows.
                for table in [
                    "DELETE FROM source_states WHERE source_id = $1",
                    "DELETE FROM source_round_items WHERE source_id = $1",
                ] {
                    sqlx::query(table)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                }
                // Bounded batches keep every statement under the backends' bind-parameter limits.
                for batch in saved.remove.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::new("DELETE FROM source_items WHERE source_id = ");
                    qb.push_bind(&id).push(" AND item_id IN (");
                    let mut list = qb.separated(", ");
                    for item in batch {
                        list.push_bind(item.as_str());
                    }
                    qb.push(")");
                    qb.build().execute(&mut *tx).await.map_err(Self::err)?;
                }
                for batch in saved.upsert.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::new(
                        "INSERT INTO source_items (source_id, item_id, parent_id, owned, pending, data) ",
                    );
                    qb.push_values(batch, |mut row, item| {
                        row.push_bind(&id)
                            .push_bind(item.item_id.as_str())
                            .push_bind(item.parent_id.as_deref())
                            .push_bind(item.owned)
                            .push_bind(item.pending)
                            .push_bind(item.data.as_str());
                    });
                    qb.push(
                        " ON CONFLICT (source_id, item_id) DO UPDATE SET parent_id = excluded.parent_id, \
                         owned = excluded.owned, pending = excluded.pending, data = excluded.data",
                    );
                    qb.build().execute(&mut *tx).await.map_err(Self::err)?;
                }
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn forget_source_state(&self, source_id: uuid::Uuid) -> $crate::Result<()> {
                let id = source_id.to_string();
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(concat!(
                    "UPDATE sources SET cursor = NULL, state_files = NULL, state_pending = NULL, \
                     state_settings = NULL, ",
                    $crate::sql::sources::no_round!(),
                    " WHERE id = $1"
                ))
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                for table in [
                    "DELETE FROM source_items WHERE source_id = $1",
                    "DELETE FROM source_states WHERE source_id = $1",
                    "DELETE FROM source_round_items WHERE source_id = $1",
                ] {
                    sqlx::query(table)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                }
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn advance_source_cursor(&self, source_id: uuid::Uuid, cursor: &str) -> $crate::Result<()> {
                let done = sqlx::query("UPDATE sources SET cursor = $2 WHERE id = $1 AND cursor IS NOT NULL")
                    .bind(source_id.to_string())
                    .bind(cursor)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn save_round_page(
                &self,
                source_id: uuid::Uuid,
                page: $crate::RoundPage<'_>,
            ) -> $crate::Result<()> {
                let id = source_id.to_string();
                let number = i64::try_from(page.page).unwrap_or(i64::MAX);
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE sources SET round_from = $2, round_next = $3, round_full = $4, round_pages = $5 \
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(page.from)
                .bind(page.next)
                .bind(page.full)
                .bind(number.saturating_add(1))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                if page.page == 0 {
                    // A new round replaces whatever an earlier one saved.
                    sqlx::query("DELETE FROM source_round_items WHERE source_id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                }
                // Four parameters a row: 1,000 rows stay under both backends' limits.
                for batch in page.items.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::new(
                        "INSERT INTO source_round_items (source_id, page, item_id, data) ",
                    );
                    qb.push_values(batch, |mut row, (item_id, data)| {
                        row.push_bind(&id)
                            .push_bind(number)
                            .push_bind(item_id.as_str())
                            .push_bind(data.as_str());
                    });
                    qb.push(" ON CONFLICT (source_id, page, item_id) DO UPDATE SET data = excluded.data");
                    qb.build().execute(&mut *tx).await.map_err(Self::err)?;
                }
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn round_page(&self, source_id: uuid::Uuid, page: u64) -> $crate::Result<Vec<String>> {
                let Ok(number) = i64::try_from(page) else {
                    return Ok(Vec::new());
                };
                sqlx::query_scalar(
                    "SELECT data FROM source_round_items WHERE source_id = $1 AND page = $2 ORDER BY item_id",
                )
                .bind(source_id.to_string())
                .bind(number)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)
            }

            async fn forget_round(&self, source_id: uuid::Uuid) -> $crate::Result<()> {
                let id = source_id.to_string();
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(concat!(
                    "UPDATE sources SET ",
                    $crate::sql::sources::no_round!(),
                    " WHERE id = $1"
                ))
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query("DELETE FROM source_round_items WHERE source_id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn source_items(
                &self,
                source_id: uuid::Uuid,
                which: $crate::ItemSelection<'_>,
            ) -> $crate::Result<Vec<$crate::SourceItem>> {
                use $crate::ItemSelection;
                use $crate::sql::sources::{Step, reached};
                let id = source_id.to_string();
                const COLS: &str = "SELECT si.item_id, si.parent_id, si.owned, si.pending, si.data FROM source_items si ";
                let (ids, seed, step) = match which {
                    ItemSelection::All | ItemSelection::Pending => {
                        let filter = if which == ItemSelection::Pending { " AND si.pending" } else { "" };
                        let mut qb = sqlx::QueryBuilder::new(COLS);
                        qb.push("WHERE si.source_id = ").push_bind(&id).push(filter);
                        let rows: Vec<$crate::sql::sources::SourceItemRow> =
                            qb.build_query_as().fetch_all(&self.pool).await.map_err(Self::err)?;
                        if rows.is_empty() {
                            self.source_exists(&id).await?;
                        }
                        return Ok(rows.into_iter().map(Into::into).collect());
                    }
                    ItemSelection::WithAncestors(ids) => (ids, "item_id IN (", Step::Up),
                    ItemSelection::Descendants(ids) => (ids, "parent_id IN (", Step::Down),
                };
                let mut found: std::collections::BTreeMap<String, $crate::SourceItem> = Default::default();
                for batch in ids.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::new("");
                    reached(&mut qb, &id, seed, batch, step);
                    qb.push(COLS)
                        .push("JOIN reached ON si.item_id = reached.item_id WHERE si.source_id = ")
                        .push_bind(&id);
                    let rows: Vec<$crate::sql::sources::SourceItemRow> =
                        qb.build_query_as().fetch_all(&self.pool).await.map_err(Self::err)?;
                    for row in rows {
                        found.insert(row.item_id.clone(), row.into());
                    }
                }
                if found.is_empty() {
                    self.source_exists(&id).await?;
                }
                Ok(found.into_values().collect())
            }

            async fn legacy_source_state(&self, source_id: uuid::Uuid) -> $crate::Result<Option<String>> {
                let row: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT st.state FROM sources s LEFT JOIN source_states st ON st.source_id = s.id \
                     WHERE s.id = $1",
                )
                .bind(source_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                row.map(|(state,)| state).ok_or($crate::StoreError::NotFound)
            }

            // --- revocation ----------------------------------------------------------------

            async fn mark_source_revoked(
                &self,
                source_id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let source = source_id.to_string();
                let mut tx = self.begin_write().await?;
                let kb: Option<String> = sqlx::query_scalar(
                    "UPDATE sources SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING kb_id",
                )
                .bind(&source)
                .bind($crate::convert::ms(now))
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                kb.ok_or($crate::StoreError::NotFound)?;
                // Its documents are hidden from search; their access lists no longer name anyone
                // (so no listing shows them either) until a run reads the source again.
                sqlx::query(
                    "UPDATE chunks SET acl_id = NULL WHERE acl_id IS NOT NULL AND document_id IN \
                     (SELECT id FROM documents WHERE source_id = $1)",
                )
                .bind(&source)
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                sqlx::query("UPDATE documents SET acl_id = NULL WHERE source_id = $1 AND acl_id IS NOT NULL")
                    .bind(&source)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn clear_source_revoked(&self, source_id: uuid::Uuid) -> $crate::Result<()> {
                let mut tx = self.begin_write().await?;
                let kb: Option<String> =
                    sqlx::query_scalar("UPDATE sources SET revoked_at = NULL WHERE id = $1 RETURNING kb_id")
                        .bind(source_id.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                let kb = kb.ok_or($crate::StoreError::NotFound)?;
                // Readable again: the next run reads its permissions and writes its lists again.
                sqlx::query("UPDATE knowledge_bases SET sharing_read_at = NULL WHERE id = $1")
                    .bind(&kb)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_source_store;

pub(crate) use source_cols;

/// The assignments of an `UPDATE sources` that clear a saved round.
macro_rules! no_round {
    () => {
        "round_from = NULL, round_next = NULL, round_full = FALSE, round_pages = 0"
    };
}

pub(crate) use no_round;
