//! The SQL of [`SubscriptionStore`](crate::SubscriptionStore), the same text on both databases.

use crate::convert::{from_ms, parse_uuid, to_u32, to_u64};
use crate::{DriveSubscription, Result, SubscriptionStatus};

/// A subscription row's columns, in [`SubscriptionRow`]'s order.
macro_rules! subscription_cols {
    () => {
        "datasource, drive_id, kb_id, subscription_id, client_state_hash, status, expires_at, created_at, \
         renewed_at, next_check_at, last_notification_at, notifications, failures, last_error"
    };
}

pub(crate) use subscription_cols;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SubscriptionRow {
    pub datasource: String,
    pub drive_id: String,
    pub kb_id: Option<String>,
    pub subscription_id: Option<String>,
    pub client_state_hash: Option<String>,
    pub status: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub renewed_at: Option<i64>,
    pub next_check_at: i64,
    pub last_notification_at: Option<i64>,
    pub notifications: i64,
    pub failures: i32,
    pub last_error: Option<String>,
}

impl SubscriptionRow {
    pub(crate) fn into_subscription(self) -> Result<DriveSubscription> {
        Ok(DriveSubscription {
            datasource: self.datasource,
            drive_id: self.drive_id,
            kb_id: self.kb_id.as_deref().map(parse_uuid).transpose()?,
            subscription_id: self.subscription_id,
            client_state_hash: self.client_state_hash,
            status: SubscriptionStatus::parse(&self.status)?,
            expires_at: self.expires_at.map(from_ms).transpose()?,
            created_at: from_ms(self.created_at)?,
            renewed_at: self.renewed_at.map(from_ms).transpose()?,
            next_check_at: from_ms(self.next_check_at)?,
            last_notification_at: self.last_notification_at.map(from_ms).transpose()?,
            notifications: to_u64(self.notifications)?,
            failures: to_u32(self.failures)?,
            last_error: self.last_error,
        })
    }
}

pub(crate) fn into_subscriptions(rows: Vec<SubscriptionRow>) -> Result<Vec<DriveSubscription>> {
    rows.into_iter().map(SubscriptionRow::into_subscription).collect()
}

/// Writes `impl SubscriptionStore for $ty`.
macro_rules! impl_subscription_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::SubscriptionStore for $ty {
            async fn watched_drives(&self) -> $crate::Result<Vec<$crate::WatchedDrive>> {
                use $crate::convert::parse_uuid;
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT DISTINCT s.datasource, s.drive_id, s.kb_id FROM sources s \
                     JOIN connections c ON c.kb_id = s.kb_id AND c.needs_reauth = FALSE \
                     WHERE s.kind = 'folder' AND s.revoked_at IS NULL \
                     ORDER BY s.datasource, s.drive_id, s.kb_id",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let mut drives: Vec<$crate::WatchedDrive> = Vec::new();
                for (datasource, drive_id, kb_id) in rows {
                    let kb_id = parse_uuid(&kb_id)?;
                    match drives.last_mut() {
                        Some(d) if d.datasource == datasource && d.drive_id == drive_id => d.kb_ids.push(kb_id),
                        _ => drives.push($crate::WatchedDrive {
                            datasource,
                            drive_id,
                            kb_ids: vec![kb_id],
                        }),
                    }
                }
                Ok(drives)
            }

            async fn drive_subscriptions(&self) -> $crate::Result<Vec<$crate::DriveSubscription>> {
                let rows: Vec<$crate::sql::subscriptions::SubscriptionRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::subscriptions::subscription_cols!(),
                    " FROM drive_subscriptions ORDER BY datasource, drive_id"
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::sql::subscriptions::into_subscriptions(rows)
            }

            async fn kb_drive_subscriptions(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<Vec<$crate::DriveSubscription>> {
                let rows: Vec<$crate::sql::subscriptions::SubscriptionRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::subscriptions::subscription_cols!(),
                    " FROM drive_subscriptions d WHERE EXISTS (SELECT 1 FROM sources s \
                     WHERE s.kb_id = $1 AND s.datasource = d.datasource AND s.drive_id = d.drive_id) \
                     ORDER BY datasource, drive_id"
                ))
                .bind(kb_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::sql::subscriptions::into_subscriptions(rows)
            }

            async fn drive_subscription_by_id(
                &self,
                subscription_id: &str,
            ) -> $crate::Result<Option<$crate::DriveSubscription>> {
                let row: Option<$crate::sql::subscriptions::SubscriptionRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::subscriptions::subscription_cols!(),
                    " FROM drive_subscriptions WHERE subscription_id = $1"
                ))
                .bind(subscription_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                row.map($crate::sql::subscriptions::SubscriptionRow::into_subscription)
                    .transpose()
            }

            async fn claim_drive_subscription(
                &self,
                datasource: &str,
                drive_id: &str,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Option<$crate::DriveSubscription>> {
                use $crate::convert::ms;
                sqlx::query(
                    "INSERT INTO drive_subscriptions (datasource, drive_id, status, created_at, next_check_at) \
                     VALUES ($1, $2, 'pending', $3, $3) ON CONFLICT (datasource, drive_id) DO NOTHING",
                )
                .bind(datasource)
                .bind(drive_id)
                .bind(ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                let row: Option<$crate::sql::subscriptions::SubscriptionRow> = sqlx::query_as(concat!(
                    "UPDATE drive_subscriptions SET lease_owner = $3, lease_expires_at = $5 \
                     WHERE datasource = $1 AND drive_id = $2 \
                     AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= $4) \
                     RETURNING ",
                    $crate::sql::subscriptions::subscription_cols!()
                ))
                .bind(datasource)
                .bind(drive_id)
                .bind(owner)
                .bind(ms(now))
                .bind(ms(lease_until))
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                row.map($crate::sql::subscriptions::SubscriptionRow::into_subscription)
                    .transpose()
            }

            async fn save_drive_subscription(
                &self,
                s: &$crate::DriveSubscription,
                owner: &str,
            ) -> $crate::Result<bool> {
                use $crate::convert::{ms, to_i32};
                let done = sqlx::query(
                    "UPDATE drive_subscriptions SET kb_id = $4, subscription_id = $5, client_state_hash = $6, \
                     status = $7, expires_at = $8, renewed_at = $9, next_check_at = $10, failures = $11, \
                     last_error = $12, lease_owner = NULL, lease_expires_at = NULL \
                     WHERE datasource = $1 AND drive_id = $2 AND lease_owner = $3",
                )
                .bind(&s.datasource)
                .bind(&s.drive_id)
                .bind(owner)
                .bind(s.kb_id.map(|k| k.to_string()))
                .bind(&s.subscription_id)
                .bind(&s.client_state_hash)
                .bind(s.status.as_str())
                .bind(s.expires_at.map(ms))
                .bind(s.renewed_at.map(ms))
                .bind(ms(s.next_check_at))
                .bind(to_i32(s.failures))
                .bind(&s.last_error)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_drive_subscription(
                &self,
                datasource: &str,
                drive_id: &str,
                owner: &str,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "DELETE FROM drive_subscriptions WHERE datasource = $1 AND drive_id = $2 AND lease_owner = $3",
                )
                .bind(datasource)
                .bind(drive_id)
                .bind(owner)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_drive_notification(
                &self,
                subscription_id: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE drive_subscriptions SET notifications = notifications + 1, \
                     last_notification_at = $2 WHERE subscription_id = $1",
                )
                .bind(subscription_id)
                .bind($crate::convert::ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(())
            }

            async fn flag_drive_subscription(
                &self,
                subscription_id: &str,
                status: $crate::SubscriptionStatus,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE drive_subscriptions SET status = $2, next_check_at = $3 WHERE subscription_id = $1",
                )
                .bind(subscription_id)
                .bind(status.as_str())
                .bind($crate::convert::ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use impl_subscription_store;
