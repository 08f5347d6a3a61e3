//! The SQL of [`PublicationStore`](crate::PublicationStore), the same text on both databases.
//! Counts, failed files and left-out readers are stored as JSON text.

use kbsync_core::{
    LeftOutReader, Publication, PublicationCounts, PublishFailure, PublishOutcome, PublishRun,
};

use crate::convert::{from_ms, parse_enum, parse_uuid, to_u64};
use crate::{Result, StoreError};

/// A publication's columns, in [`PublicationRow`]'s order.
macro_rules! publication_cols {
    () => {
        "kb_id, knowledge_id, status, requested_at, last_started_at, last_published_at, error, \
         progress_done, progress_total, counts, failures, left_out, published_digest, enabled_at"
    };
}

pub(crate) use publication_cols;

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode as JSON: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("bad {what} JSON: {e}")))
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PublicationRow {
    pub kb_id: String,
    pub knowledge_id: Option<String>,
    pub status: String,
    pub requested_at: Option<i64>,
    pub last_started_at: Option<i64>,
    pub last_published_at: Option<i64>,
    pub error: Option<String>,
    pub progress_done: i64,
    pub progress_total: i64,
    pub counts: String,
    pub failures: String,
    pub left_out: String,
    pub published_digest: Option<String>,
    pub enabled_at: i64,
}

impl PublicationRow {
    pub(crate) fn into_publication(self) -> Result<Publication> {
        Ok(Publication {
            kb_id: parse_uuid(&self.kb_id)?,
            knowledge_id: self.knowledge_id,
            status: parse_enum(&self.status)?,
            requested_at: self.requested_at.map(from_ms).transpose()?,
            last_started_at: self.last_started_at.map(from_ms).transpose()?,
            last_published_at: self.last_published_at.map(from_ms).transpose()?,
            error: self.error,
            progress_done: to_u64(self.progress_done)?,
            progress_total: to_u64(self.progress_total)?,
            counts: from_json::<PublicationCounts>(&self.counts, "publication counts")?,
            failures: from_json::<Vec<PublishFailure>>(&self.failures, "publish failures")?,
            left_out: from_json::<Vec<LeftOutReader>>(&self.left_out, "left-out readers")?,
            published_digest: self.published_digest,
            enabled_at: from_ms(self.enabled_at)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PublishRunRow {
    pub id: String,
    pub kb_id: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub status: String,
    pub error: Option<String>,
    pub counts: String,
    pub failures: String,
    pub left_out: String,
}

impl PublishRunRow {
    pub(crate) fn into_run(self) -> Result<PublishRun> {
        Ok(PublishRun {
            id: parse_uuid(&self.id)?,
            kb_id: parse_uuid(&self.kb_id)?,
            started_at: from_ms(self.started_at)?,
            finished_at: from_ms(self.finished_at)?,
            outcome: PublishOutcome {
                status: parse_enum(&self.status)?,
                error: self.error,
                counts: from_json(&self.counts, "publication counts")?,
                failures: from_json(&self.failures, "publish failures")?,
                left_out: from_json(&self.left_out, "left-out readers")?,
            },
        })
    }
}

/// Writes `impl PublicationStore for $ty`. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_publication_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::PublicationStore for $ty {
            async fn enable_publication(
                &self,
                kb_id: kbsync_core::KbId,
                knowledge_id: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::Publication> {
                sqlx::query(
                    "INSERT INTO openwebui_publications (kb_id, knowledge_id, status, requested_at, enabled_at) \
                     VALUES ($1, $2, 'pending', $3, $3) \
                     ON CONFLICT (kb_id) DO UPDATE SET \
                     knowledge_id = COALESCE(excluded.knowledge_id, openwebui_publications.knowledge_id), \
                     status = CASE WHEN openwebui_publications.status = 'publishing' \
                     THEN 'publishing' ELSE 'pending' END, \
                     requested_at = excluded.requested_at, error = NULL, published_digest = NULL",
                )
                .bind(kb_id.to_string())
                .bind(knowledge_id)
                .bind($crate::convert::ms(now))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown knowledge base {kb_id}"))
                    }
                    other => other,
                })?;
                $crate::PublicationStore::publication(self, kb_id)
                    .await?
                    .ok_or($crate::StoreError::NotFound)
            }

            async fn publication(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<Option<kbsync_core::Publication>> {
                sqlx::query_as::<_, $crate::sql::publications::PublicationRow>(concat!(
                    "SELECT ",
                    $crate::sql::publications::publication_cols!(),
                    " FROM openwebui_publications WHERE kb_id = $1"
                ))
                    .bind(kb_id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?
                    .map($crate::sql::publications::PublicationRow::into_publication)
                    .transpose()
            }

            async fn disable_publication(&self, kb_id: kbsync_core::KbId) -> $crate::Result<bool> {
                let mut tx = self.begin_write().await?;
                sqlx::query("DELETE FROM openwebui_publish_runs WHERE kb_id = $1")
                    .bind(kb_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                let done = sqlx::query("DELETE FROM openwebui_publications WHERE kb_id = $1")
                    .bind(kb_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn request_publication(
                &self,
                kb_id: kbsync_core::KbId,
                now: chrono::DateTime<chrono::Utc>,
                compare: bool,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE openwebui_publications SET requested_at = $2, \
                     published_digest = CASE WHEN $3 THEN NULL ELSE published_digest END WHERE kb_id = $1",
                )
                .bind(kb_id.to_string())
                .bind($crate::convert::ms(now))
                .bind(compare)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn due_publications(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::Result<Vec<kbsync_core::KbId>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT kb_id FROM openwebui_publications WHERE requested_at IS NOT NULL \
                     AND (lease_until IS NULL OR lease_until <= $1) ORDER BY requested_at, kb_id LIMIT $2",
                )
                .bind($crate::convert::ms(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::convert::collect(rows, |(id,)| $crate::convert::parse_uuid(&id))
            }

            async fn claim_publication(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Option<kbsync_core::Publication>> {
                use $crate::convert::ms;
                sqlx::query_as::<_, $crate::sql::publications::PublicationRow>(concat!(
                    "UPDATE openwebui_publications SET lease_owner = $2, lease_until = $4, \
                     status = 'publishing', last_started_at = $3, progress_done = 0, progress_total = 0 \
                     WHERE kb_id = $1 AND requested_at IS NOT NULL \
                     AND (lease_until IS NULL OR lease_until <= $3) RETURNING ",
                    $crate::sql::publications::publication_cols!()
                ))
                    .bind(kb_id.to_string())
                    .bind(owner)
                    .bind(ms(now))
                    .bind(ms(lease_until))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?
                    .map($crate::sql::publications::PublicationRow::into_publication)
                    .transpose()
            }

            async fn renew_publication_lease(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE openwebui_publications SET lease_until = $3 WHERE kb_id = $1 AND lease_owner = $2",
                )
                .bind(kb_id.to_string())
                .bind(owner)
                .bind($crate::convert::ms(lease_until))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_publication_knowledge_id(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                knowledge_id: &str,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE openwebui_publications SET knowledge_id = $3 WHERE kb_id = $1 AND lease_owner = $2",
                )
                .bind(kb_id.to_string())
                .bind(owner)
                .bind(knowledge_id)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_publication_progress(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                done: u64,
                total: u64,
            ) -> $crate::Result<()> {
                use $crate::convert::to_i64;
                sqlx::query(
                    "UPDATE openwebui_publications SET progress_done = $3, progress_total = $4 \
                     WHERE kb_id = $1 AND lease_owner = $2",
                )
                .bind(kb_id.to_string())
                .bind(owner)
                .bind(to_i64(done))
                .bind(to_i64(total))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(())
            }

            async fn finish_publication(
                &self,
                run: &kbsync_core::PublishRun,
                owner: &str,
                answered: Option<chrono::DateTime<chrono::Utc>>,
                digest: Option<&str>,
            ) -> $crate::Result<bool> {
                use $crate::convert::ms;
                use $crate::sql::publications::to_json;
                let outcome = &run.outcome;
                let published = outcome.status == kbsync_core::PublicationStatus::Published;
                let counts = to_json(&outcome.counts)?;
                let failures = to_json(&outcome.failures)?;
                let left_out = to_json(&outcome.left_out)?;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE openwebui_publications SET status = $3, error = $4, counts = $5, failures = $6, \
                     left_out = $7, lease_owner = NULL, lease_until = NULL, \
                     last_published_at = CASE WHEN $8 THEN $9 ELSE last_published_at END, \
                     requested_at = CASE WHEN requested_at <= $10 THEN NULL ELSE requested_at END, \
                     published_digest = $11 WHERE kb_id = $1 AND lease_owner = $2",
                )
                .bind(run.kb_id.to_string())
                .bind(owner)
                .bind(outcome.status.as_str())
                .bind(outcome.error.as_deref())
                .bind(&counts)
                .bind(&failures)
                .bind(&left_out)
                .bind(published)
                .bind(ms(run.finished_at))
                .bind(answered.map(ms).unwrap_or(i64::MIN))
                .bind(digest)
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO openwebui_publish_runs \
                     (id, kb_id, started_at, finished_at, status, error, counts, failures, left_out) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(run.id.to_string())
                .bind(run.kb_id.to_string())
                .bind(ms(run.started_at))
                .bind(ms(run.finished_at))
                .bind(outcome.status.as_str())
                .bind(outcome.error.as_deref())
                .bind(&counts)
                .bind(&failures)
                .bind(&left_out)
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                sqlx::query(
                    "DELETE FROM openwebui_publish_runs WHERE kb_id = $1 AND id NOT IN \
                     (SELECT id FROM openwebui_publish_runs WHERE kb_id = $1 \
                     ORDER BY started_at DESC, id DESC LIMIT $2)",
                )
                .bind(run.kb_id.to_string())
                .bind(i64::from($crate::PUBLISH_HISTORY))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(true)
            }

            async fn release_publication(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                answered: Option<chrono::DateTime<chrono::Utc>>,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE openwebui_publications SET status = 'published', lease_owner = NULL, \
                     lease_until = NULL, requested_at = CASE WHEN requested_at <= $3 THEN NULL \
                     ELSE requested_at END WHERE kb_id = $1 AND lease_owner = $2",
                )
                .bind(kb_id.to_string())
                .bind(owner)
                .bind(answered.map($crate::convert::ms).unwrap_or(i64::MIN))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn publish_runs(
                &self,
                kb_id: kbsync_core::KbId,
                limit: u32,
            ) -> $crate::Result<Vec<kbsync_core::PublishRun>> {
                let rows = sqlx::query_as::<_, $crate::sql::publications::PublishRunRow>(
                    "SELECT id, kb_id, started_at, finished_at, status, error, counts, failures, left_out \
                     FROM openwebui_publish_runs WHERE kb_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
                )
                .bind(kb_id.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::convert::collect(rows, $crate::sql::publications::PublishRunRow::into_run)
            }
        }
    };
}

pub(crate) use impl_publication_store;
