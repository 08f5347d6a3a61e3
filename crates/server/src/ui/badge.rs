//! The one-line status of a knowledge base, as the list and its page show it.

use chrono::{DateTime, Utc};
use kbsync_core::{KbType, SyncStatus};

use crate::service::sync::SyncStateView;

/// How a status looks: its words and its tone (a CSS class).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    pub text: String,
    /// `ok`, `busy`, `warn`, `danger` or `muted`.
    pub tone: &'static str,
}

impl Badge {
    fn new(text: impl Into<String>, tone: &'static str) -> Self {
        Self {
            text: text.into(),
            tone,
        }
    }
}

/// What needs the user's attention first: a connection to renew, then a run going, then how the
/// last run ended, then when the next one comes.
pub fn badge(kb_type: KbType, sync: &SyncStateView, failed_files: Option<u64>, now: DateTime<Utc>) -> Badge {
    let needs_reauth = sync.connection.as_ref().is_some_and(|c| c.needs_reauth);
    if sync.status == SyncStatus::NeedsReauth || (needs_reauth && !sync.running) {
        return Badge::new("Re-authorisation required", "danger");
    }
    if sync.running || sync.status == SyncStatus::Syncing {
        return Badge::new(syncing_text(sync), "busy");
    }
    match sync.status {
        SyncStatus::AccessRevoked => return Badge::new("Access revoked", "danger"),
        SyncStatus::FileLimitExceeded => return Badge::new("File limit exceeded", "danger"),
        SyncStatus::Failed => return Badge::new("Sync failed", "danger"),
        SyncStatus::CompletedWithErrors => {
            return Badge::new(completed_with_errors(failed_files), "warn");
        }
        SyncStatus::Cancelled => return Badge::new("Cancelled", "muted"),
        _ => {}
    }
    if kb_type == KbType::Local {
        return Badge::new("Local", "muted");
    }
    let connected = sync.connection.as_ref().is_some_and(|c| c.has_stored_token);
    if !connected {
        return Badge::new("Not connected", "muted");
    }
    match sync.next_sync_at {
        Some(next) => Badge::new(format!("Auto-sync on · {}", next_in(next, now)), "ok"),
        None if sync.status == SyncStatus::Completed => Badge::new("Completed", "ok"),
        None => Badge::new("Idle", "muted"),
    }
}

/// The label of the progress bar: the run going, or how the last one ended.
pub fn progress_label(sync: &SyncStateView, failed_files: Option<u64>) -> String {
    if sync.running || sync.status == SyncStatus::Syncing {
        return syncing_text(sync);
    }
    match sync.status {
        SyncStatus::Idle if sync.last_sync_at.is_some() => "Waiting for the next sync".to_owned(),
        SyncStatus::Idle => "Not synced yet".to_owned(),
        SyncStatus::Syncing => syncing_text(sync),
        SyncStatus::Completed => "Completed".to_owned(),
        SyncStatus::CompletedWithErrors => completed_with_errors(failed_files),
        SyncStatus::Failed => "Failed".to_owned(),
        SyncStatus::Cancelled => "Cancelled".to_owned(),
        SyncStatus::AccessRevoked => "Access revoked".to_owned(),
        SyncStatus::FileLimitExceeded => "File limit exceeded".to_owned(),
        SyncStatus::NeedsReauth => "Re-authorisation required".to_owned(),
    }
}

fn syncing_text(sync: &SyncStateView) -> String {
    if sync.progress.total > 0 {
        format!("Syncing {}/{}", sync.progress.current, sync.progress.total)
    } else {
        "Syncing…".to_owned()
    }
}

fn completed_with_errors(failed_files: Option<u64>) -> String {
    match failed_files {
        Some(1) => "Completed with 1 error".to_owned(),
        Some(n) => format!("Completed with {n} errors"),
        None => "Completed with errors".to_owned(),
    }
}

/// "next in 42 min", "next in 3 h", or "due now".
pub fn next_in(next: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (next - now).num_seconds();
    if secs <= 0 {
        return "due now".to_owned();
    }
    let minutes = (secs + 59) / 60;
    if minutes < 120 {
        format!("next in {minutes} min")
    } else {
        format!("next in {} h", (minutes + 30) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use kbsync_core::SyncProgress;
    use kbsync_core::datasource::DatasourceKind;
    use kbsync_oauth::ConnectionStatus;

    fn view(status: SyncStatus, running: bool, connected: bool, needs_reauth: bool) -> SyncStateView {
        SyncStateView {
            status,
            running,
            progress: SyncProgress {
                run_id: None,
                current: 120,
                total: 480,
                file: None,
            },
            last_error: None,
            last_sync_at: None,
            next_sync_at: None,
            interval_minutes: 60,
            publication: None,
            connection: connected.then_some(ConnectionStatus {
                datasource: DatasourceKind::OneDrive,
                has_stored_token: true,
                token_stored_at: None,
                last_refreshed_at: None,
                needs_reauth,
                app_only: false,
            }),
        }
    }

    #[test]
    fn each_state_has_its_words() {
        let now = DateTime::UNIX_EPOCH;
        let od = KbType::OneDrive;
        let b = |v: &SyncStateView, f| badge(od, v, f, now).text;
        let mut idle = view(SyncStatus::Completed, false, true, false);
        idle.next_sync_at = Some(now + Duration::minutes(42));
        assert_eq!(b(&idle, None), "Auto-sync on · next in 42 min");
        assert_eq!(
            b(&view(SyncStatus::Syncing, true, true, false), None),
            "Syncing 120/480"
        );
        assert_eq!(
            b(
                &view(SyncStatus::CompletedWithErrors, false, true, false),
                Some(3)
            ),
            "Completed with 3 errors"
        );
        assert_eq!(
            b(&view(SyncStatus::Idle, false, true, true), None),
            "Re-authorisation required"
        );
        assert_eq!(
            b(&view(SyncStatus::AccessRevoked, false, true, false), None),
            "Access revoked"
        );
        assert_eq!(
            b(&view(SyncStatus::FileLimitExceeded, false, true, false), None),
            "File limit exceeded"
        );
        assert_eq!(
            b(&view(SyncStatus::Idle, false, false, false), None),
            "Not connected"
        );
        assert_eq!(
            badge(
                KbType::Local,
                &view(SyncStatus::Idle, false, false, false),
                None,
                now
            )
            .text,
            "Local"
        );
    }

    #[test]
    fn next_in_rounds_up_and_switches_to_hours() {
        let now = DateTime::UNIX_EPOCH;
        assert_eq!(next_in(now - Duration::seconds(5), now), "due now");
        assert_eq!(next_in(now + Duration::seconds(61), now), "next in 2 min");
        assert_eq!(next_in(now + Duration::minutes(180), now), "next in 3 h");
    }
}
