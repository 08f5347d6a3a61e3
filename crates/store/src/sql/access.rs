//! The SQL of [`AccessStore`](crate::AccessStore): access lists, group members and user
//! principals, the same text on both databases, and the fragment every access filter shares.

use sqlx::QueryBuilder;

/// The principals the user bound as `$u` is known as: `everyone`, `email:` of their address and
/// the `user:` keys recorded for them.
macro_rules! user_keys {
    ($u:literal) => {
        concat!(
            "SELECT 'everyone' AS k UNION ALL SELECT 'email:' || u.email_lower FROM users u WHERE u.id = ",
            $u,
            " UNION ALL SELECT up.principal FROM user_principals up WHERE up.user_id = ",
            $u
        )
    };
}

/// The ids of the access lists that name the user bound as `$u`: through one of their own
/// principals, or a group whose members include one of them.
macro_rules! readable_acls {
    ($u:literal) => {
        concat!(
            "SELECT ap.acl_id FROM acl_principals ap WHERE ap.principal IN (",
            $crate::sql::access::user_keys!($u),
            " UNION ALL SELECT gm.group_key FROM access_group_members gm WHERE gm.member IN (",
            $crate::sql::access::user_keys!($u),
            "))"
        )
    };
}

pub(crate) use {readable_acls, user_keys};

/// Pushes `readable_acls!` for `user_id` onto a query being built, binding the user id where the
/// fragment names it (the builder numbers placeholders itself).
pub(crate) fn push_readable_acls<DB>(qb: &mut QueryBuilder<DB>, user_id: &str)
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let keys = |qb: &mut QueryBuilder<DB>| {
        qb.push("SELECT 'everyone' UNION ALL SELECT 'email:' || u.email_lower FROM users u WHERE u.id = ")
            .push_bind(user_id.to_owned())
            .push(" UNION ALL SELECT up.principal FROM user_principals up WHERE up.user_id = ")
            .push_bind(user_id.to_owned());
    };
    qb.push("SELECT ap.acl_id FROM acl_principals ap WHERE ap.principal IN (");
    keys(qb);
    qb.push(" UNION ALL SELECT gm.group_key FROM access_group_members gm WHERE gm.member IN (");
    keys(qb);
    qb.push("))");
}

macro_rules! impl_access_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::AccessStore for $ty {
            async fn set_document_acls(
                &self,
                kb_id: kbsync_core::KbId,
                acls: &[$crate::DocumentAcl],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                if acls.is_empty() {
                    return Ok(());
                }
                let kb = kb_id.to_string();
                let mut tx = self.begin_write().await?;
                let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
                for acl in acls {
                    let id = $crate::access::acl_id(&acl.principals);
                    if written.insert(id.clone()) {
                        let fresh = sqlx::query(
                            "INSERT INTO acls (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(&id)
                        .bind($crate::convert::ms(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                        if fresh.rows_affected() > 0 {
                            let mut principals: Vec<&String> = acl.principals.iter().collect();
                            principals.sort_unstable();
                            principals.dedup();
                            for principal in principals {
                                sqlx::query("INSERT INTO acl_principals (acl_id, principal) VALUES ($1, $2)")
                                    .bind(&id)
                                    .bind(principal)
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(Self::err)?;
                            }
                        }
                    }
                    let doc: Option<String> = sqlx::query_scalar(
                        "UPDATE documents SET acl_id = $3 WHERE kb_id = $1 AND source_item_id = $2 \
                         AND (acl_id IS NULL OR acl_id <> $3) RETURNING id",
                    )
                    .bind(&kb)
                    .bind(&acl.source_item_id)
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                    if let Some(doc) = doc {
                        sqlx::query("UPDATE chunks SET acl_id = $2 WHERE document_id = $1")
                            .bind(&doc)
                            .bind(&id)
                            .execute(&mut *tx)
                            .await
                            .map_err(Self::err)?;
                    }
                }
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn named_groups(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<Vec<$crate::NamedGroup>> {
                let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
                    "SELECT p.principal, g.refreshed_at FROM (SELECT DISTINCT ap.principal FROM acl_principals ap \
                     WHERE ap.acl_id IN (SELECT DISTINCT d.acl_id FROM documents d WHERE d.kb_id = $1 \
                     AND d.acl_id IS NOT NULL) AND (ap.principal LIKE 'group:%' OR ap.principal LIKE 'sitegroup:%')) p \
                     LEFT JOIN access_groups g ON g.group_key = p.principal ORDER BY p.principal",
                )
                .bind(kb_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                rows.into_iter()
                    .map(|(key, at)| {
                        Ok($crate::NamedGroup {
                            key,
                            refreshed_at: at.map($crate::convert::from_ms).transpose()?,
                        })
                    })
                    .collect()
            }

            async fn replace_group_members(
                &self,
                group_key: &str,
                members: &[String],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO access_groups (group_key, refreshed_at) VALUES ($1, $2) \
                     ON CONFLICT (group_key) DO UPDATE SET refreshed_at = $2",
                )
                .bind(group_key)
                .bind($crate::convert::ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                sqlx::query("DELETE FROM access_group_members WHERE group_key = $1")
                    .bind(group_key)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                let unique: std::collections::BTreeSet<&String> = members.iter().collect();
                for member in unique {
                    sqlx::query("INSERT INTO access_group_members (group_key, member) VALUES ($1, $2)")
                        .bind(group_key)
                        .bind(member)
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                }
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn add_user_principal(
                &self,
                user_id: kbsync_core::UserId,
                principal: &str,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO user_principals (user_id, principal) VALUES ($1, $2) \
                     ON CONFLICT (user_id, principal) DO NOTHING",
                )
                .bind(user_id.to_string())
                .bind(principal)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(())
            }

            async fn user_principals(&self, user_id: kbsync_core::UserId) -> $crate::Result<Vec<String>> {
                sqlx::query_scalar(concat!(
                    "SELECT DISTINCT k FROM (",
                    $crate::sql::access::user_keys!("$1"),
                    " UNION ALL SELECT gm.group_key FROM access_group_members gm WHERE gm.member IN (",
                    $crate::sql::access::user_keys!("$1"),
                    ")) keys ORDER BY k"
                ))
                .bind(user_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)
            }

            async fn reads_documents_of(
                &self,
                kb_id: kbsync_core::KbId,
                user_id: kbsync_core::UserId,
            ) -> $crate::Result<bool> {
                let found: Option<i64> = sqlx::query_scalar(concat!(
                    "SELECT CAST(1 AS BIGINT) FROM documents d WHERE d.kb_id = $1 AND d.acl_id IN (",
                    $crate::sql::access::readable_acls!("$2"),
                    ") LIMIT 1"
                ))
                .bind(kb_id.to_string())
                .bind(user_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(found.is_some())
            }

            async fn may_read_document(
                &self,
                kb_id: kbsync_core::KbId,
                id: kbsync_core::DocumentId,
                user_id: kbsync_core::UserId,
            ) -> $crate::Result<bool> {
                let found: Option<i64> = sqlx::query_scalar(concat!(
                    "SELECT CAST(1 AS BIGINT) FROM documents d WHERE d.kb_id = $1 AND d.id = $2 AND d.acl_id IN (",
                    $crate::sql::access::readable_acls!("$3"),
                    ")"
                ))
                .bind(kb_id.to_string())
                .bind(id.to_string())
                .bind(user_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(found.is_some())
            }

            async fn list_readable_documents(
                &self,
                kb_id: kbsync_core::KbId,
                user_id: kbsync_core::UserId,
                page: $crate::Page,
            ) -> $crate::Result<$crate::PageOf<kbsync_core::Document>> {
                use $crate::convert::*;
                use $crate::sql::documents::DocRow;
                let kb = kb_id.to_string();
                let uid = user_id.to_string();
                let rows = sqlx::query_as::<_, DocRow>(concat!(
                    "SELECT ",
                    $crate::sql::documents::doc_cols!(),
                    " FROM documents WHERE kb_id = $1 AND acl_id IN (",
                    $crate::sql::access::readable_acls!("$2"),
                    ") ORDER BY path, id LIMIT $3 OFFSET $4"
                ))
                .bind(&kb)
                .bind(&uid)
                .bind(i64::from(page.limit))
                .bind(to_i64(page.offset))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let total: i64 = sqlx::query_scalar(concat!(
                    "SELECT COUNT(*) FROM documents WHERE kb_id = $1 AND acl_id IN (",
                    $crate::sql::access::readable_acls!("$2"),
                    ")"
                ))
                .bind(&kb)
                .bind(&uid)
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok($crate::PageOf {
                    items: collect(rows, DocRow::into_document)?,
                    total: to_u64(total)?,
                })
            }
        }
    };
}

pub(crate) use impl_access_store;
