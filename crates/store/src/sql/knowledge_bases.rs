//! The SQL of [`KnowledgeBaseStore`](crate::KnowledgeBaseStore): knowledge bases, manual grants and
//! when permissions were read, the same text on both databases. Also the helpers the other areas
//! call inside their own transactions (`withdraw_document_access`) and `kb_exists`.

use kbsync_core::{AccessGrant, KnowledgeBase};

use crate::Result;
use crate::convert::{from_ms, parse_enum, parse_uuid};

macro_rules! kb_cols {
    () => {
        "id, name, description, owner_id, kb_type, sync_status, created_at, updated_at"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KbRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub owner_id: String,
    pub kb_type: String,
    pub sync_status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl KbRow {
    pub(crate) fn into_kb(self) -> Result<KnowledgeBase> {
        Ok(KnowledgeBase {
            id: parse_uuid(&self.id)?,
            name: self.name,
            description: self.description,
            owner_id: parse_uuid(&self.owner_id)?,
            kb_type: parse_enum(&self.kb_type)?,
            sync_status: parse_enum(&self.sync_status)?,
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GrantRow {
    pub kb_id: String,
    pub user_id: String,
    pub permission: String,
    pub origin: String,
}

impl GrantRow {
    pub(crate) fn into_grant(self) -> Result<AccessGrant> {
        Ok(AccessGrant {
            kb_id: parse_uuid(&self.kb_id)?,
            user_id: parse_uuid(&self.user_id)?,
            permission: parse_enum(&self.permission)?,
            origin: parse_enum(&self.origin)?,
        })
    }
}

/// Writes `impl KnowledgeBaseStore for $ty`, and the inherent helpers other areas call inside
/// their transactions. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_knowledge_base_store {
    ($ty:ty) => {
        impl $ty {
            /// Withdraws what sync read of who may read the knowledge base's documents (their
            /// access lists: until sync sets them again only those who may read the whole
            /// knowledge base read them) and makes its next run read the permissions again.
            /// Inside the caller's write transaction.
            async fn withdraw_document_access(conn: &mut DbConnection, kb: &str) -> $crate::Result<()> {
                sqlx::query("UPDATE chunks SET acl_id = NULL WHERE kb_id = $1 AND acl_id IS NOT NULL")
                    .bind(kb)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::err)?;
                sqlx::query("UPDATE documents SET acl_id = NULL WHERE kb_id = $1 AND acl_id IS NOT NULL")
                    .bind(kb)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::err)?;
                sqlx::query("UPDATE knowledge_bases SET sharing_read_at = NULL WHERE id = $1")
                    .bind(kb)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::err)?;
                Ok(())
            }

            /// `NotFound` unless the knowledge base exists.
            async fn kb_exists(&self, kb_id: &str) -> $crate::Result<()> {
                sqlx::query("SELECT 1 FROM knowledge_bases WHERE id = $1")
                    .bind(kb_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?
                    .map(|_| ())
                    .ok_or($crate::StoreError::NotFound)
            }
        }

        #[async_trait::async_trait]
        impl $crate::KnowledgeBaseStore for $ty {
            // --- knowledge bases -----------------------------------------------------------

            async fn create_kb(
                &self,
                id: kbsync_core::KbId,
                new: $crate::NewKnowledgeBase,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::KnowledgeBase> {
                use $crate::convert::*;
                let now = truncate_ms(now)?;
                sqlx::query(
                    "INSERT INTO knowledge_bases \
                     (id, name, description, owner_id, kb_type, sync_status, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'idle', $6, $6)",
                )
                .bind(id.to_string())
                .bind(&new.name)
                .bind(&new.description)
                .bind(new.owner_id.to_string())
                .bind(new.kb_type.as_str())
                .bind(ms(now))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown owner {}", new.owner_id))
                    }
                    $crate::StoreError::Conflict(_) => {
                        $crate::StoreError::Conflict(format!("knowledge base {id}"))
                    }
                    other => other,
                })?;
                Ok(kbsync_core::KnowledgeBase {
                    id,
                    name: new.name,
                    description: new.description,
                    owner_id: new.owner_id,
                    kb_type: new.kb_type,
                    sync_status: kbsync_core::SyncStatus::Idle,
                    created_at: now,
                    updated_at: now,
                })
            }

            async fn get_kb(&self, id: kbsync_core::KbId) -> $crate::Result<kbsync_core::KnowledgeBase> {
                sqlx::query_as::<_, $crate::sql::knowledge_bases::KbRow>(concat!(
                    "SELECT ",
                    $crate::sql::knowledge_bases::kb_cols!(),
                    " FROM knowledge_bases WHERE id = $1"
                ))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_kb()
            }

            async fn list_readable_kbs(
                &self,
                reader: $crate::Reader,
                page: $crate::Page,
            ) -> $crate::Result<$crate::PageOf<kbsync_core::KnowledgeBase>> {
                use $crate::convert::*;
                use $crate::sql::knowledge_bases::KbRow;
                let limit = i64::from(page.limit);
                let offset = to_i64(page.offset);
                let (rows, total): (Vec<KbRow>, i64) = match reader {
                    $crate::Reader::Admin => {
                        let rows = sqlx::query_as::<_, KbRow>(concat!(
                            "SELECT ",
                            $crate::sql::knowledge_bases::kb_cols!(),
                            " FROM knowledge_bases ORDER BY created_at DESC, id DESC \
                             LIMIT $1 OFFSET $2"
                        ))
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM knowledge_bases")
                            .fetch_one(&self.pool)
                            .await
                            .map_err(Self::err)?;
                        (rows, total)
                    }
                    $crate::Reader::User(user_id) => {
                        let uid = user_id.to_string();
                        let rows = sqlx::query_as::<_, KbRow>(concat!(
                            "SELECT ",
                            $crate::sql::knowledge_bases::kb_cols!(),
                            " FROM knowledge_bases kb WHERE kb.owner_id = $1 \
                             OR kb.id IN (SELECT kb_id FROM kb_grants WHERE user_id = $1) \
                             OR EXISTS (SELECT 1 FROM documents d WHERE d.kb_id = kb.id AND d.acl_id IN (",
                            $crate::sql::access::readable_acls!("$1"),
                            ")) ORDER BY kb.created_at DESC, kb.id DESC LIMIT $2 OFFSET $3"
                        ))
                        .bind(&uid)
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                        let total: i64 = sqlx::query_scalar(
                            concat!(
                                "SELECT COUNT(*) FROM knowledge_bases kb WHERE kb.owner_id = $1 \
                                 OR kb.id IN (SELECT kb_id FROM kb_grants WHERE user_id = $1) \
                                 OR EXISTS (SELECT 1 FROM documents d WHERE d.kb_id = kb.id AND d.acl_id IN (",
                                $crate::sql::access::readable_acls!("$1"),
                                "))"
                            ),
                        )
                        .bind(&uid)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(Self::err)?;
                        (rows, total)
                    }
                };
                Ok($crate::PageOf {
                    items: collect(rows, KbRow::into_kb)?,
                    total: to_u64(total)?,
                })
            }

            async fn update_kb(
                &self,
                id: kbsync_core::KbId,
                patch: $crate::KbPatch,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::KnowledgeBase> {
                sqlx::query_as::<_, $crate::sql::knowledge_bases::KbRow>(concat!(
                    "UPDATE knowledge_bases SET name = COALESCE($2, name), \
                     description = COALESCE($3, description), updated_at = $4 \
                     WHERE id = $1 RETURNING ",
                    $crate::sql::knowledge_bases::kb_cols!()
                ))
                .bind(id.to_string())
                .bind(patch.name)
                .bind(patch.description)
                .bind($crate::convert::ms(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_kb()
            }

            async fn delete_kb(
                &self,
                id: kbsync_core::KbId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Vec<String>> {
                let kb_id = id.to_string();
                let mut tx = self.begin_write().await?;
                // Its blobs are collected later (docs/storage.md).
                sqlx::query(
                    "INSERT INTO blob_orphans (content_hash, since) \
                     SELECT DISTINCT content_hash, $2 FROM documents WHERE kb_id = $1 \
                     ON CONFLICT (content_hash) DO NOTHING",
                )
                .bind(&kb_id)
                .bind($crate::convert::ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                let mut hashes: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT d.content_hash FROM documents d WHERE d.kb_id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM documents o \
                     WHERE o.content_hash = d.content_hash AND o.kb_id <> $1)",
                )
                .bind(&kb_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(Self::err)?;
                let deleted = sqlx::query("DELETE FROM knowledge_bases WHERE id = $1")
                    .bind(&kb_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if deleted.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                tx.commit().await.map_err(Self::err)?;
                hashes.sort();
                Ok(hashes)
            }

            // --- access grants -------------------------------------------------------------

            async fn strongest_grant(
                &self,
                kb_id: kbsync_core::KbId,
                user_id: kbsync_core::UserId,
            ) -> $crate::Result<Option<kbsync_core::Permission>> {
                let best: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(MAX(CASE WHEN permission = 'write' THEN 2 ELSE 1 END) AS BIGINT) \
                     FROM kb_grants WHERE kb_id = $1 AND user_id = $2",
                )
                .bind(kb_id.to_string())
                .bind(user_id.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(match best {
                    None => None,
                    Some(2) => Some(kbsync_core::Permission::Write),
                    Some(_) => Some(kbsync_core::Permission::Read),
                })
            }

            async fn list_grants(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<Vec<kbsync_core::AccessGrant>> {
                let rows = sqlx::query_as::<_, $crate::sql::knowledge_bases::GrantRow>(
                    "SELECT kb_id, user_id, permission, origin FROM kb_grants WHERE kb_id = $1 \
                     ORDER BY origin, user_id",
                )
                .bind(kb_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::convert::collect(rows, $crate::sql::knowledge_bases::GrantRow::into_grant)
            }

            async fn set_manual_grants(
                &self,
                kb_id: kbsync_core::KbId,
                read: &[kbsync_core::UserId],
                write: &[kbsync_core::UserId],
            ) -> $crate::Result<()> {
                let mut wanted: std::collections::BTreeMap<kbsync_core::UserId, kbsync_core::Permission> =
                    std::collections::BTreeMap::new();
                for u in read {
                    wanted.insert(*u, kbsync_core::Permission::Read);
                }
                for u in write {
                    wanted.insert(*u, kbsync_core::Permission::Write);
                }
                let kb = kb_id.to_string();
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query("SELECT 1 FROM knowledge_bases WHERE id = $1")
                    .bind(&kb)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if exists.is_none() {
                    return Err($crate::StoreError::NotFound);
                }
                for user_id in wanted.keys() {
                    let known = sqlx::query("SELECT 1 FROM users WHERE id = $1")
                        .bind(user_id.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    if known.is_none() {
                        return Err($crate::StoreError::InvalidReference(format!(
                            "unknown user {user_id}"
                        )));
                    }
                }
                sqlx::query("DELETE FROM kb_grants WHERE kb_id = $1 AND origin = 'manual'")
                    .bind(&kb)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                for (user_id, permission) in &wanted {
                    sqlx::query(
                        "INSERT INTO kb_grants (kb_id, user_id, permission, origin) \
                         VALUES ($1, $2, $3, 'manual')",
                    )
                    .bind(&kb)
                    .bind(user_id.to_string())
                    .bind(permission.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                }
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            // --- permission reads ---------------------------------------------------------------

            async fn mark_sharing_read(
                &self,
                kb_id: kbsync_core::KbId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let exists = sqlx::query("UPDATE knowledge_bases SET sharing_read_at = $2 WHERE id = $1")
                    .bind(kb_id.to_string())
                    .bind($crate::convert::ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if exists.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn sharing_read_at(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<Option<chrono::DateTime<chrono::Utc>>> {
                let row: Option<(Option<i64>,)> =
                    sqlx::query_as("SELECT sharing_read_at FROM knowledge_bases WHERE id = $1")
                        .bind(kb_id.to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::err)?;
                match row {
                    None => Err($crate::StoreError::NotFound),
                    Some((None,)) => Ok(None),
                    Some((Some(at),)) => $crate::convert::from_ms(at).map(Some),
                }
            }

            async fn forget_sharing_reads(&self, kb_id: Option<kbsync_core::KbId>) -> $crate::Result<()> {
                match kb_id {
                    Some(kb_id) => {
                        sqlx::query("UPDATE knowledge_bases SET sharing_read_at = NULL WHERE id = $1")
                            .bind(kb_id.to_string())
                            .execute(&self.pool)
                            .await
                    }
                    None => sqlx::query(
                        "UPDATE knowledge_bases SET sharing_read_at = NULL WHERE sharing_read_at IS NOT NULL",
                    )
                    .execute(&self.pool)
                    .await,
                }
                .map_err(Self::err)?;
                Ok(())
            }

            async fn withdraw_lapsed_document_access(
                &self,
                needs_reauth_since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Vec<kbsync_core::KbId>> {
                const LAPSED: &str = "SELECT c.kb_id FROM connections c WHERE c.needs_reauth = TRUE \
                     AND c.needs_reauth_since <= $1 AND EXISTS (SELECT 1 FROM documents d \
                     WHERE d.kb_id = c.kb_id AND d.acl_id IS NOT NULL) ORDER BY c.kb_id";
                let since = $crate::convert::ms(needs_reauth_since);
                // Called on every scheduler tick: a read first, so the usual "nothing lapsed"
                // takes no write lock.
                let any: Option<String> = sqlx::query_scalar(LAPSED)
                    .bind(since)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if any.is_none() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin_write().await?;
                let kbs: Vec<String> = sqlx::query_scalar(LAPSED)
                    .bind(since)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                for kb in &kbs {
                    Self::withdraw_document_access(&mut tx, kb).await?;
                }
                tx.commit().await.map_err(Self::err)?;
                kbs.iter()
                    .map(|kb| $crate::convert::parse_uuid(kb))
                    .collect()
            }
        }
    };
}

pub(crate) use impl_knowledge_base_store;

pub(crate) use kb_cols;
