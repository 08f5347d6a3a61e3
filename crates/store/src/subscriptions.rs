//! Change-notification subscriptions: one per drive at its source, shared by every knowledge base
//! that syncs the drive, maintained by whichever instance holds the row's lease (see
//! docs/notifications.md).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::KbId;

use crate::Result;

/// Where a drive's subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// Not created yet, or to be created again (removed or expired at the source).
    Pending,
    /// Live at the source until `expires_at`.
    Active,
    /// The source asked for a renewal (`reauthorizationRequired`): renew at once.
    Renew,
    /// The last attempt failed; tried again at `next_check_at`.
    Failed,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Pending => "pending",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Renew => "renew",
            SubscriptionStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "pending" => SubscriptionStatus::Pending,
            "active" => SubscriptionStatus::Active,
            "renew" => SubscriptionStatus::Renew,
            "failed" => SubscriptionStatus::Failed,
            other => {
                return Err(crate::StoreError::Corrupt(format!(
                    "unknown subscription status {other:?}"
                )));
            }
        })
    }
}

impl std::fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A drive's change-notification subscription as kbsync keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveSubscription {
    /// The datasource's name (`onedrive`).
    pub datasource: String,
    pub drive_id: String,
    /// The knowledge base whose connection created (and renews) it.
    pub kb_id: Option<KbId>,
    /// The source's id of the subscription; `None` until created.
    pub subscription_id: Option<String>,
    /// SHA-256 (hex) of the client state every notification must carry.
    pub client_state_hash: Option<String>,
    pub status: SubscriptionStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub renewed_at: Option<DateTime<Utc>>,
    /// When maintenance next looks at it (renewal time, or a retry).
    pub next_check_at: DateTime<Utc>,
    pub last_notification_at: Option<DateTime<Utc>>,
    /// Valid notifications received.
    pub notifications: u64,
    /// Consecutive failed attempts (create or renew).
    pub failures: u32,
    pub last_error: Option<String>,
}

/// A drive that knowledge bases sync from a folder, with the knowledge bases whose connection is
/// usable (not awaiting re-authorization), in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedDrive {
    pub datasource: String,
    pub drive_id: String,
    pub kb_ids: Vec<KbId>,
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Every drive a folder source that is not revoked reads, of a knowledge base whose
    /// connection is usable; by datasource and drive.
    async fn watched_drives(&self) -> Result<Vec<WatchedDrive>>;
    /// Every drive subscription kbsync keeps, by datasource and drive.
    async fn drive_subscriptions(&self) -> Result<Vec<DriveSubscription>>;
    /// The subscriptions of the drives a knowledge base's sources read.
    async fn kb_drive_subscriptions(&self, kb_id: KbId) -> Result<Vec<DriveSubscription>>;
    /// The subscription with the source's id `subscription_id`.
    async fn drive_subscription_by_id(&self, subscription_id: &str) -> Result<Option<DriveSubscription>>;
    /// Takes the lease of a drive's subscription row for `owner` until `lease_until`, creating
    /// the row (`pending`, checked now) when there is none; `None` when another owner holds a live
    /// lease at `now`.
    async fn claim_drive_subscription(
        &self,
        datasource: &str,
        drive_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<DriveSubscription>>;
    /// Writes what maintenance did (every field but the notification counts) and releases
    /// `owner`'s lease; false, writing nothing, when the lease is no longer its own.
    async fn save_drive_subscription(&self, subscription: &DriveSubscription, owner: &str) -> Result<bool>;
    /// Deletes the row while `owner` holds its lease; false when it no longer does.
    async fn delete_drive_subscription(&self, datasource: &str, drive_id: &str, owner: &str) -> Result<bool>;
    /// Counts a valid notification of the subscription at `now`.
    async fn record_drive_notification(&self, subscription_id: &str, now: DateTime<Utc>) -> Result<()>;
    /// Asks maintenance to look at the subscription at `now` with `status` (`Renew` after
    /// `reauthorizationRequired`, `Pending` after a removal); false when it is unknown.
    async fn flag_drive_subscription(
        &self,
        subscription_id: &str,
        status: SubscriptionStatus,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}
