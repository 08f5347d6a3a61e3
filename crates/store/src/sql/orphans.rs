//! The SQL of [`OrphanBlobStore`](crate::OrphanBlobStore), and the helpers with which document
//! writes take a hash (`take_blob`) and let go of one (`release_blob`) inside their transaction.

/// The name a transaction locks to decide about a blob (`lock_name`).
pub(crate) fn blob_lock(hash: &str) -> String {
    format!("blob:{hash}")
}

/// Writes `impl OrphanBlobStore for $ty` and the inherent `take_blob` and `release_blob`.
macro_rules! impl_orphan_blob_store {
    ($ty:ty) => {
        impl $ty {
            /// A document row references `hash`: serializes with the collector's decisions
            /// about it and clears its candidate. Call in the transaction that writes the row,
            /// after the row is written (where in the transaction does not matter for safety:
            /// the collector either ends before this lock is granted or sees the committed row);
            /// after the commit, settle the [`HeldBlob`](crate::HeldBlob).
            pub(crate) async fn take_blob(conn: &mut DbConnection, hash: &str) -> $crate::Result<()> {
                Self::lock_name(&mut *conn, &$crate::sql::orphans::blob_lock(hash)).await?;
                sqlx::query("DELETE FROM blob_orphans WHERE content_hash = $1")
                    .bind(hash)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::err)?;
                Ok(())
            }

            /// A document row let go of `hash`: it becomes an orphan candidate at `now_ms` (a
            /// candidate already there keeps its time).
            pub(crate) async fn release_blob(
                conn: &mut DbConnection,
                hash: &str,
                now_ms: i64,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO blob_orphans (content_hash, since) VALUES ($1, $2) \
                     ON CONFLICT (content_hash) DO NOTHING",
                )
                .bind(hash)
                .bind(now_ms)
                .execute(&mut *conn)
                .await
                .map_err(Self::err)?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::OrphanBlobStore for $ty {
            async fn orphan_candidates(
                &self,
                cutoff: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::Result<Vec<String>> {
                sqlx::query_scalar(
                    "SELECT content_hash FROM blob_orphans WHERE since <= $1 \
                     ORDER BY since, content_hash LIMIT $2",
                )
                .bind($crate::convert::ms(cutoff))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)
            }

            async fn is_orphan_candidate(&self, hash: &str) -> $crate::Result<bool> {
                Ok(
                    sqlx::query("SELECT 1 FROM blob_orphans WHERE content_hash = $1")
                        .bind(hash)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::err)?
                        .is_some(),
                )
            }

            async fn collect_orphan(
                &self,
                blobs: &$crate::BlobStore,
                hash: &str,
                cutoff: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                let cutoff = $crate::convert::ms(cutoff);
                let mut tx = self.begin_write().await?;
                Self::lock_name(&mut *tx, &$crate::sql::orphans::blob_lock(hash)).await?;
                // Decided and cleared in one statement: of two collectors, one deletes the row.
                let decided: Option<String> = sqlx::query_scalar(
                    "DELETE FROM blob_orphans WHERE content_hash = $1 AND since <= $2 \
                     AND NOT EXISTS (SELECT 1 FROM documents WHERE content_hash = $1) \
                     RETURNING content_hash",
                )
                .bind(hash)
                .bind(cutoff)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                if decided.is_none() {
                    // Referenced again: no longer a candidate.
                    sqlx::query("DELETE FROM blob_orphans WHERE content_hash = $1 AND since <= $2")
                        .bind(hash)
                        .bind(cutoff)
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    tx.commit().await.map_err(Self::err)?;
                    return Ok(false);
                }
                // Removed before the commit: a writer taking this hash waits for it, then puts
                // the blob back from its hold.
                blobs.delete(hash).await.map_err($crate::StoreError::from)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(true)
            }

            async fn known_blob_hashes(&self, hashes: &[String]) -> $crate::Result<Vec<String>> {
                if hashes.is_empty() {
                    return Ok(Vec::new());
                }
                let params: Vec<String> = (1..=hashes.len()).map(|i| format!("${i}")).collect();
                let list = params.join(", ");
                let sql = format!(
                    "SELECT content_hash FROM documents WHERE content_hash IN ({list}) \
                     UNION SELECT content_hash FROM blob_orphans WHERE content_hash IN ({list})"
                );
                let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
                for hash in hashes {
                    query = query.bind(hash);
                }
                query.fetch_all(&self.pool).await.map_err(Self::err)
            }

            async fn collect_unknown_blob(
                &self,
                blobs: &$crate::BlobStore,
                hash: &str,
                cutoff: std::time::SystemTime,
            ) -> $crate::Result<bool> {
                let mut tx = self.begin_write().await?;
                Self::lock_name(&mut *tx, &$crate::sql::orphans::blob_lock(hash)).await?;
                let known = sqlx::query(
                    "SELECT 1 FROM documents WHERE content_hash = $1 \
                     UNION ALL SELECT 1 FROM blob_orphans WHERE content_hash = $1 LIMIT 1",
                )
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?
                .is_some();
                let blob_err = |e: $crate::BlobError| $crate::StoreError::Blob(e.to_string());
                let stale = blobs
                    .modified(hash)
                    .await
                    .map_err(blob_err)?
                    .is_some_and(|at| at <= cutoff);
                if known || !stale {
                    return Ok(false);
                }
                blobs.delete(hash).await.map_err(blob_err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_orphan_blob_store;
