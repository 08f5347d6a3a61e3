//! Change notifications (docs/notifications.md): kbsync subscribes to the changes of every drive
//! a knowledge base syncs a folder of, and a notification makes those knowledge bases due in
//! seconds, through the same leased scheduler as every run. Polling goes on as the safety net.
//!
//! Two halves:
//! - [`maintain`], run periodically on every instance (and at once when a lifecycle event asks):
//!   creates one subscription per watched drive with the connection of a knowledge base that syncs
//!   it, renews it before it expires, creates it again when the source lost it, and deletes it
//!   when no source needs it. Each drive's row is worked on under a lease, so instances never
//!   create two subscriptions for one drive.
//! - [`receive`]: a notification's subscription id and client state are checked (the state
//!   against its stored SHA-256, in constant time); a valid one records the notification and makes
//!   the drive's knowledge bases due after the debounce (a burst makes one run), and wakes this
//!   instance's scheduler then. Unknown subscriptions are ignored.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kbsync_core::datasource::{Datasource, DatasourceError, DatasourceKind, TokenSource, WatchRequest};
use kbsync_store::{DriveSubscription, SubscriptionStatus, WatchedDrive};
use kbsync_sync::runner::DatasourceResolver;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::AppState;
use crate::auth::{constant_time_eq, token_hash};
use crate::error::ApiError;

/// How subscriptions are kept and notifications turned into runs.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Time between two maintenance passes (a lifecycle event wakes the pass at once).
    pub tick: std::time::Duration,
    /// A subscription is renewed this long before it expires.
    pub renew_before: Duration,
    /// A notified knowledge base runs this long after the first notification of a burst.
    pub debounce: Duration,
    /// A failed create or renew is tried again after this, doubling per failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long an instance may hold a drive's row while it talks to the source.
    pub lease: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            tick: std::time::Duration::from_secs(60),
            renew_before: Duration::days(2),
            debounce: Duration::seconds(2),
            retry_base: Duration::minutes(1),
            retry_max: Duration::hours(6),
            lease: Duration::minutes(2),
        }
    }
}

/// The endpoint a datasource's change notifications are posted to, and its lifecycle endpoint.
pub fn endpoints(public_url: &str, kind: DatasourceKind) -> Option<(String, String)> {
    let name = kind.info().webhook?;
    let base = format!("{}/api/v1/webhooks/{name}", public_url.trim_end_matches('/'));
    Some((base.clone(), format!("{base}/lifecycle")))
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintained {
    pub created: u32,
    pub renewed: u32,
    pub deleted: u32,
    pub failed: u32,
}

fn operation(op: &'static str, ok: bool) {
    metrics::counter!(
        "kbsync_webhook_subscription_operations_total",
        "operation" => op,
        "result" => if ok { "ok" } else { "failed" }
    )
    .increment(1);
}

/// One maintenance pass at the clock's now: every watched drive whose row is missing or due is
/// created or renewed, and every row no watched drive needs any more is deleted at the source and
/// here. A drive whose row another instance holds is left to it.
pub async fn maintain(
    state: &AppState,
    settings: &WebhookSettings,
) -> Result<Maintained, kbsync_store::StoreError> {
    let now = state.clock.now();
    let watched: Vec<(WatchedDrive, Arc<dyn Datasource>)> = state
        .store
        .watched_drives()
        .await?
        .into_iter()
        .filter_map(|d| {
            let ds = DatasourceKind::from_name(&d.datasource)
                .and_then(|k| state.datasources.datasource(k))
                .filter(|ds| ds.watch_lifetime().is_some())?
                .clone();
            Some((d, ds))
        })
        .collect();
    let rows = state.store.drive_subscriptions().await?;
    let owner = state.sync_settings.instance_id.as_str();
    let mut done = Maintained::default();
    for (drive, ds) in &watched {
        let row = rows
            .iter()
            .find(|r| r.datasource == drive.datasource && r.drive_id == drive.drive_id);
        if row.is_some_and(|r| r.next_check_at > now) {
            continue;
        }
        let Some(row) = state
            .store
            .claim_drive_subscription(
                &drive.datasource,
                &drive.drive_id,
                owner,
                now,
                now + settings.lease,
            )
            .await?
        else {
            continue;
        };
        // Another instance saw to it since the rows were read: give it back as it is.
        if row.status == SubscriptionStatus::Active && row.next_check_at > now {
            state.store.save_drive_subscription(&row, owner).await?;
            continue;
        }
        keep(state, settings, drive, ds.as_ref(), row, &mut done).await?;
    }
    for row in rows.iter().filter(|r| {
        !watched
            .iter()
            .any(|(d, _)| d.datasource == r.datasource && d.drive_id == r.drive_id)
    }) {
        let Some(row) = state
            .store
            .claim_drive_subscription(&row.datasource, &row.drive_id, owner, now, now + settings.lease)
            .await?
        else {
            continue;
        };
        remove(state, row, &mut done).await?;
    }
    Ok(done)
}

/// The tokens of the first of `kb_ids` (the row's own knowledge base first) whose connection works.
async fn tokens_for(
    state: &AppState,
    preferred: Option<kbsync_core::KbId>,
    kb_ids: &[kbsync_core::KbId],
) -> Option<(kbsync_core::KbId, Arc<dyn TokenSource>)> {
    let ordered = preferred
        .filter(|p| kb_ids.contains(p))
        .into_iter()
        .chain(kb_ids.iter().copied().filter(|k| Some(*k) != preferred));
    for kb_id in ordered {
        match DatasourceResolver::tokens(&state.datasources, kb_id).await {
            Ok(t) => return Some((kb_id, t.source)),
            Err(e) => {
                debug!(kb.id = %kb_id, reason = %e, "no tokens for a drive subscription from this knowledge base")
            }
        }
    }
    None
}

/// Creates or renews one claimed row and saves it (which releases the lease).
async fn keep(
    state: &AppState,
    settings: &WebhookSettings,
    drive: &WatchedDrive,
    ds: &dyn Datasource,
    mut row: DriveSubscription,
    done: &mut Maintained,
) -> Result<(), kbsync_store::StoreError> {
    let owner = state.sync_settings.instance_id.as_str();
    let now = state.clock.now();
    let lifetime = ds.watch_lifetime().unwrap_or_else(|| Duration::days(1));
    // A minute short of the longest lifetime, so clocks that differ a little do not make the
    // source refuse it.
    let expires_at = now + lifetime - Duration::minutes(1);
    let Some((kb_id, tokens)) = tokens_for(state, row.kb_id, &drive.kb_ids).await else {
        fail(
            &mut row,
            settings,
            now,
            "no connection of the knowledge bases syncing this drive works".into(),
        );
        done.failed += 1;
        state.store.save_drive_subscription(&row, owner).await?;
        return Ok(());
    };
    // Renew what the source still has; create what it lost or never had.
    if let (Some(id), Some(expiry)) = (row.subscription_id.clone(), row.expires_at)
        && expiry > now
    {
        match ds.renew_watch(tokens.as_ref(), &id, expires_at).await {
            Ok(watch) => {
                operation("renew", true);
                info!(drive.id = %row.drive_id, subscription.id = %id, expires_at = %watch.expires_at, "drive subscription renewed");
                row.kb_id = Some(kb_id);
                activate(&mut row, settings, now, watch.expires_at);
                row.renewed_at = Some(now);
                done.renewed += 1;
                state.store.save_drive_subscription(&row, owner).await?;
                return Ok(());
            }
            Err(DatasourceError::NotFound(_)) => {
                operation("renew", false);
                info!(drive.id = %row.drive_id, subscription.id = %id, "the source no longer has the drive subscription; creating it again");
            }
            Err(e) => {
                operation("renew", false);
                warn!(drive.id = %row.drive_id, subscription.id = %id, error = %e, "could not renew the drive subscription");
                fail(&mut row, settings, now, format!("renewal failed: {e}"));
                done.failed += 1;
                state.store.save_drive_subscription(&row, owner).await?;
                return Ok(());
            }
        }
    }
    let Some((notification_url, lifecycle_url)) = endpoints(&state.settings.public_url, ds.kind()) else {
        return Ok(());
    };
    let client_state = state.random.token_hex(32);
    let request = WatchRequest {
        drive_id: row.drive_id.clone(),
        notification_url,
        lifecycle_url: Some(lifecycle_url),
        client_state: client_state.clone(),
        expires_at,
    };
    match ds.watch(tokens.as_ref(), &request).await {
        Ok(watch) => {
            operation("create", true);
            info!(drive.id = %row.drive_id, subscription.id = %watch.id, expires_at = %watch.expires_at, "drive subscription created");
            row.kb_id = Some(kb_id);
            row.subscription_id = Some(watch.id);
            row.client_state_hash = Some(token_hash(&client_state));
            activate(&mut row, settings, now, watch.expires_at);
            row.renewed_at = None;
            done.created += 1;
            state.store.save_drive_subscription(&row, owner).await?;
            // Changes made before the subscription existed were never notified: run a delta now.
            state
                .store
                .request_drive_syncs(&row.datasource, &row.drive_id, now, now)
                .await?;
            state.sync.wake_scheduler();
        }
        Err(e) => {
            operation("create", false);
            warn!(drive.id = %row.drive_id, error = %e, "could not create the drive subscription");
            fail(&mut row, settings, now, format!("creation failed: {e}"));
            row.subscription_id = None;
            row.client_state_hash = None;
            row.expires_at = None;
            done.failed += 1;
            state.store.save_drive_subscription(&row, owner).await?;
        }
    }
    Ok(())
}

fn activate(
    row: &mut DriveSubscription,
    settings: &WebhookSettings,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) {
    row.status = SubscriptionStatus::Active;
    row.expires_at = Some(expires_at);
    // Renewed `renew_before` ahead, but never sooner than a minute from now.
    row.next_check_at = (expires_at - settings.renew_before).max(now + Duration::minutes(1));
    row.failures = 0;
    row.last_error = None;
}

fn fail(row: &mut DriveSubscription, settings: &WebhookSettings, now: DateTime<Utc>, error: String) {
    row.failures = row.failures.saturating_add(1);
    let factor = 1i32 << row.failures.saturating_sub(1).min(16);
    let delay = (settings.retry_base * factor).min(settings.retry_max);
    row.status = SubscriptionStatus::Failed;
    row.next_check_at = now + delay;
    row.last_error = Some(error);
}

/// Deletes a row no drive needs any more, and its subscription at the source when the knowledge
/// base that created it can still reach the source. When it cannot (deleted, disconnected), the
/// source ends the subscription at its expiry, and its notifications meanwhile name an unknown
/// subscription and are ignored.
async fn remove(
    state: &AppState,
    row: DriveSubscription,
    done: &mut Maintained,
) -> Result<(), kbsync_store::StoreError> {
    let owner = state.sync_settings.instance_id.as_str();
    let ds = DatasourceKind::from_name(&row.datasource).and_then(|k| state.datasources.datasource(k));
    if let (Some(ds), Some(id), Some(kb_id)) = (ds, row.subscription_id.as_deref(), row.kb_id)
        && let Ok(tokens) = DatasourceResolver::tokens(&state.datasources, kb_id).await
    {
        match ds.unwatch(tokens.source.as_ref(), id).await {
            Ok(()) | Err(DatasourceError::NotFound(_)) => operation("delete", true),
            Err(e) => {
                operation("delete", false);
                warn!(drive.id = %row.drive_id, subscription.id = %id, error = %e, "could not delete the drive subscription at the source; it ends at its expiry");
            }
        }
    }
    info!(drive.id = %row.drive_id, "no source needs the drive subscription any more: removed");
    done.deleted += 1;
    state
        .store
        .delete_drive_subscription(&row.datasource, &row.drive_id, owner)
        .await?;
    Ok(())
}

/// Runs [`maintain`] at start-up, every `tick`, and when a lifecycle event wakes it, until `stop`.
pub fn spawn(state: AppState, settings: WebhookSettings, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(settings.tick.max(std::time::Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wake = state.webhook_wake.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
                () = wake.notified() => {}
            }
            match maintain(&state, &settings).await {
                Ok(m) if m != Maintained::default() => debug!(
                    created = m.created,
                    renewed = m.renewed,
                    deleted = m.deleted,
                    failed = m.failed,
                    "drive subscriptions maintained"
                ),
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "drive subscription maintenance failed; trying again at the next tick")
                }
            }
        }
    })
}

// --- what people see ---------------------------------------------------------------------------

/// The subscriptions of the drives a knowledge base syncs.
pub async fn of_kb(state: &AppState, kb_id: kbsync_core::KbId) -> Result<Vec<DriveSubscription>, ApiError> {
    Ok(state.store.kb_drive_subscriptions(kb_id).await?)
}

/// Every drive subscription.
pub async fn all(state: &AppState) -> Result<Vec<DriveSubscription>, ApiError> {
    Ok(state.store.drive_subscriptions().await?)
}

// --- receiving ---------------------------------------------------------------------------------

/// A POST to a webhook endpoint (change notifications and lifecycle events share the shape).
#[derive(Debug, Deserialize)]
pub struct NotificationBatch {
    pub value: Vec<Notification>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub subscription_id: String,
    #[serde(default)]
    pub client_state: Option<String>,
    #[serde(default)]
    pub lifecycle_event: Option<String>,
}

/// How one notification was judged (the label of `kbsync_webhook_notifications_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Its client state is not the subscription's.
    Rejected,
    /// No subscription of kbsync has that id (an old one, or not ours).
    Unknown,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Rejected => "rejected",
            Verdict::Unknown => "unknown",
        }
    }
}

/// Parses a webhook POST's body; a body that is not a notification collection is a 400.
pub fn parse(body: &[u8]) -> Result<NotificationBatch, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        message: format!("not a change notification collection: {e}"),
    })
}

/// Handles the notifications of one POST (spawned by the handler after it answered 202).
pub async fn receive(
    state: &AppState,
    settings: &WebhookSettings,
    kind: DatasourceKind,
    batch: NotificationBatch,
) {
    // A batch may repeat one subscription's notification many times; each distinct one is
    // looked at once.
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<Notification> = batch
        .value
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect();
    for n in distinct {
        let verdict = match handle(state, settings, kind, &n).await {
            Ok(v) => v,
            Err(e) => {
                warn!(subscription.id = %n.subscription_id, error = %e, "could not handle a change notification");
                continue;
            }
        };
        metrics::counter!("kbsync_webhook_notifications_total", "result" => verdict.as_str()).increment(1);
        match verdict {
            Verdict::Valid => {}
            Verdict::Rejected => {
                warn!(subscription.id = %n.subscription_id, "a change notification with the wrong client state was refused")
            }
            Verdict::Unknown => {
                debug!(subscription.id = %n.subscription_id, "a change notification for an unknown subscription was ignored")
            }
        }
    }
}

async fn handle(
    state: &AppState,
    settings: &WebhookSettings,
    kind: DatasourceKind,
    n: &Notification,
) -> Result<Verdict, kbsync_store::StoreError> {
    let Some(row) = state.store.drive_subscription_by_id(&n.subscription_id).await? else {
        return Ok(Verdict::Unknown);
    };
    if row.datasource != kind.as_str() {
        return Ok(Verdict::Unknown);
    }
    let presented = token_hash(n.client_state.as_deref().unwrap_or_default());
    let expected = row.client_state_hash.as_deref().unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&presented, expected) {
        return Ok(Verdict::Rejected);
    }
    let now = state.clock.now();
    let mut run_at = now + settings.debounce;
    match n.lifecycle_event.as_deref() {
        None => {}
        Some(event) => {
            metrics::counter!("kbsync_webhook_lifecycle_events_total", "event" => lifecycle_label(event))
                .increment(1);
            info!(subscription.id = %n.subscription_id, event, "drive subscription lifecycle event");
            match event {
                "reauthorizationRequired" => {
                    state
                        .store
                        .flag_drive_subscription(&n.subscription_id, SubscriptionStatus::Renew, now)
                        .await?;
                    state.webhook_wake.notify_one();
                }
                "subscriptionRemoved" => {
                    state
                        .store
                        .flag_drive_subscription(&n.subscription_id, SubscriptionStatus::Pending, now)
                        .await?;
                    state.webhook_wake.notify_one();
                }
                // Changes were not delivered: run now.
                "missed" => run_at = now,
                _ => {}
            }
        }
    }
    let kbs = state
        .store
        .request_drive_syncs(&row.datasource, &row.drive_id, now, run_at)
        .await?;
    // Counted once its knowledge bases are due: whoever sees the count sees what it asked for.
    state
        .store
        .record_drive_notification(&n.subscription_id, now)
        .await?;
    debug!(drive.id = %row.drive_id, knowledge_bases = kbs.len(), "change notification: knowledge bases due");
    // Wake this instance's scheduler when the debounce is over; another instance's wakes at its tick.
    let runner = state.sync.clone();
    let wait = (run_at - now).to_std().unwrap_or_default();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        runner.wake_scheduler();
    });
    Ok(Verdict::Valid)
}

fn lifecycle_label(event: &str) -> &'static str {
    match event {
        "reauthorizationRequired" => "reauthorizationRequired",
        "subscriptionRemoved" => "subscriptionRemoved",
        "missed" => "missed",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(now: DateTime<Utc>) -> DriveSubscription {
        DriveSubscription {
            datasource: "onedrive".into(),
            drive_id: "d1".into(),
            kb_id: None,
            subscription_id: Some("s1".into()),
            client_state_hash: None,
            status: SubscriptionStatus::Active,
            expires_at: Some(now + Duration::days(29)),
            created_at: now,
            renewed_at: None,
            next_check_at: now,
            last_notification_at: None,
            notifications: 0,
            failures: 0,
            last_error: None,
        }
    }

    #[test]
    fn failures_back_off_doubling_from_the_base_up_to_the_cap() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let settings = WebhookSettings::default();
        let mut r = row(now);
        let mut delays = Vec::new();
        for _ in 0..12 {
            fail(&mut r, &settings, now, "no".into());
            delays.push((r.next_check_at - now).num_minutes());
        }
        assert_eq!(&delays[..5], &[1, 2, 4, 8, 16]);
        assert_eq!(delays[11], 360, "capped at six hours");
        assert_eq!(r.status, SubscriptionStatus::Failed);
        assert_eq!(r.failures, 12);
        activate(&mut r, &settings, now, now + Duration::days(29));
        assert_eq!((r.failures, r.last_error.as_deref()), (0, None));
        assert_eq!(
            r.next_check_at,
            now + Duration::days(27),
            "renewed two days ahead"
        );
    }

    #[test]
    fn a_subscription_expiring_soon_is_looked_at_again_a_minute_later_not_in_the_past() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let mut r = row(now);
        activate(&mut r, &WebhookSettings::default(), now, now + Duration::hours(1));
        assert_eq!(r.next_check_at, now + Duration::minutes(1));
    }

    #[test]
    fn the_endpoints_hang_off_the_public_url_by_the_datasources_webhook_name() {
        assert_eq!(
            endpoints("https://kb.example.com/", DatasourceKind::OneDrive),
            Some((
                "https://kb.example.com/api/v1/webhooks/msgraph".to_owned(),
                "https://kb.example.com/api/v1/webhooks/msgraph/lifecycle".to_owned()
            ))
        );
    }
}
