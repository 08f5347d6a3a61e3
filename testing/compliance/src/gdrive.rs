//! Google Drive as a compliance subject: the in-process Drive emulator and the Google Drive
//! datasource pointed at it. Paths below the default user's My Drive.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use gdrive_emulator::{
    ClientRegistration, Control, FaultAction, FaultRule, Grant, Grantee, LogEntry, RunningEmulator,
};
use kbsync_core::ManualClock;
use kbsync_core::datasource::{ContentHash, Datasource, DatasourceKind};
use kbsync_gdrive::{GDriveConfig, GoogleDrive, MD5, TokioSleeper, USER_DRIVE};
use kbsync_kit::gdrive::{exact_emulator, gdrive_config, google_drive};
use kbsync_kit::tokens::TestTokens;
use kbsync_oauth::{ClientSecret, OAuthClientConfig};
use md5::Digest;

use crate::{Setup, Subject};

const CLIENT_ID: &str = "kbsync-compliance.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-kbsync-compliance";
const REDIRECT_URI: &str = "http://127.0.0.1:9/api/v1/datasources/gdrive/auth/callback";
/// Where the emulator's control paths of the default user's items start.
const MY_DRIVE: &str = "/My Drive";

/// The Drive emulator and the Google Drive datasource.
pub struct GDriveSubject {
    /// Kept for its lifetime: dropping it stops the emulator.
    _emu: RunningEmulator,
    ctl: Control,
    ds: GoogleDrive,
    tokens: TestTokens,
    clock: Arc<ManualClock>,
    user: String,
}

impl GDriveSubject {
    fn find(&self, path: &str) -> Option<String> {
        if path.is_empty() || path == "/" {
            return Some(self.ctl.root_id());
        }
        self.ctl
            .files()
            .into_iter()
            .find(|f| f.path == format!("{MY_DRIVE}{path}") && !f.trashed)
            .map(|f| f.id)
    }

    fn log_count(&self, keep: impl Fn(&LogEntry) -> bool) -> usize {
        self.ctl.traffic().entries.iter().filter(|e| keep(e)).count()
    }

    /// A user of the domain with `email`, made when there is none yet.
    fn ensure_user(&self, name: &str, email: &str) {
        if self.ctl.user_by_email(email).is_err() {
            self.ctl.add_user(name, email).unwrap();
        }
    }

    /// Adds `grant` to an item's direct grants.
    fn add_grant(&self, id: &str, grant: Grant) {
        self.ctl.set_permissions(id, vec![grant]).unwrap();
    }
}

/// Whether a logged request is a file's content: `alt=media` or an export.
fn is_download(e: &LogEntry) -> bool {
    let media = gdrive_emulator::glob_match("/drive/v3/files/*", &e.path)
        && e.query
            .as_deref()
            .is_some_and(|q| q.split('&').any(|p| p == "alt=media"));
    media || gdrive_emulator::glob_match("/drive/v3/files/*/export", &e.path)
}

#[async_trait]
impl Subject for GDriveSubject {
    async fn start(setup: Setup) -> Self {
        let emu = exact_emulator(11)
            .auto_consent(true)
            .client(ClientRegistration {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                redirect_uris: vec![REDIRECT_URI.into()],
            })
            .start()
            .await
            .unwrap();
        let ctl = emu.control();
        let config = GDriveConfig {
            page_size: setup.page_size,
            ..gdrive_config(&emu)
        };
        let ds = google_drive(&emu, config, Arc::new(TokioSleeper)).with_clock(setup.clock.clone());
        let user = ctl.default_user_id();
        let tokens = kbsync_kit::gdrive::tokens(&ctl, &user);
        Self {
            _emu: emu,
            ctl,
            ds,
            tokens,
            clock: setup.clock,
            user,
        }
    }

    fn kind(&self) -> DatasourceKind {
        DatasourceKind::GDrive
    }

    fn clock(&self) -> Arc<ManualClock> {
        self.clock.clone()
    }

    fn datasource(&self) -> &dyn Datasource {
        &self.ds
    }

    fn tokens(&self) -> &TestTokens {
        &self.tokens
    }

    fn oauth_client(&self) -> OAuthClientConfig {
        OAuthClientConfig::from_spec(
            DatasourceKind::GDrive,
            self.ds.oauth(),
            CLIENT_ID,
            ClientSecret::new(CLIENT_SECRET),
            REDIRECT_URI,
        )
    }

    fn advance_clock(&self, by: chrono::Duration) {
        self.ctl.advance_clock(by.num_seconds());
    }

    fn token_requests(&self) -> usize {
        self.log_count(|e| e.method == "POST" && e.path == "/token")
    }

    fn drive_id(&self) -> String {
        USER_DRIVE.to_owned()
    }

    fn put(&self, path: &str, text: &str) -> String {
        let (parent, name) = path.rsplit_once('/').unwrap();
        let parent = self.folder(parent);
        self.ctl.create_file(&parent, name, text.to_owned()).unwrap()
    }

    fn folder(&self, path: &str) -> String {
        if let Some(id) = self.find(path) {
            return id;
        }
        let (parent, name) = path.rsplit_once('/').unwrap();
        let parent = self.folder(parent);
        self.ctl.create_folder(&parent, name).unwrap()
    }

    fn id(&self, path: &str) -> String {
        self.find(path)
            .unwrap_or_else(|| panic!("nothing at {path} in My Drive"))
    }

    fn modify(&self, id: &str, text: &str) {
        self.ctl.update_content(id, text.to_owned()).unwrap();
    }

    fn rename(&self, id: &str, name: &str) {
        self.ctl.rename(id, name).unwrap();
    }

    fn move_to(&self, id: &str, folder_path: &str) {
        let parent = self.id(folder_path);
        self.ctl.move_item(id, &parent).unwrap();
    }

    fn delete(&self, id: &str) {
        self.ctl.trash(id).unwrap();
    }

    fn purge(&self, id: &str) {
        self.ctl.delete(id).unwrap();
    }

    fn files_under(&self, path: &str) -> BTreeMap<String, ContentHash> {
        let prefix = format!("{MY_DRIVE}{path}/");
        self.ctl
            .files()
            .into_iter()
            .filter(|f| f.path.starts_with(&prefix) && !f.trashed)
            .filter_map(|f| {
                let value = f.md5_checksum?;
                let path = f.path.strip_prefix(MY_DRIVE)?.to_owned();
                Some((
                    path,
                    ContentHash {
                        algorithm: MD5.into(),
                        value,
                    },
                ))
            })
            .collect()
    }

    fn hash(&self, bytes: &[u8]) -> ContentHash {
        ContentHash {
            algorithm: MD5.into(),
            value: hex::encode(md5::Md5::digest(bytes)),
        }
    }

    fn share_with_user(&self, id: &str, name: &str, email: &str) {
        self.ensure_user(name, email);
        self.add_grant(
            id,
            Grant {
                grantee: Grantee::User {
                    email_address: email.into(),
                },
                role: "reader".into(),
                allow_file_discovery: false,
            },
        );
    }

    fn share_with_group(&self, id: &str, _group: &str, group_email: &str, members: &[(&str, &str)]) {
        for (name, email) in members {
            self.ensure_user(name, email);
        }
        let emails: Vec<String> = members.iter().map(|(_, e)| (*e).to_owned()).collect();
        self.ctl.set_group(group_email, &emails).unwrap();
        self.add_grant(
            id,
            Grant {
                grantee: Grantee::Group {
                    email_address: group_email.into(),
                },
                role: "reader".into(),
                allow_file_discovery: false,
            },
        );
    }

    fn expands_groups(&self) -> bool {
        false
    }

    fn revoke_refresh_tokens(&self) {
        assert!(self.ctl.revoke_user_tokens(&self.user) > 0, "nothing to revoke");
    }

    fn expire_cursor(&self) {
        self.ctl.expire_page_tokens();
    }

    fn throttle_downloads(&self, times: u64) {
        // Both ways Drive throttles: 403 with a rate-limit reason (no `Retry-After`), and 429.
        let with_403 = times / 2 + times % 2;
        self.ctl.add_fault(
            FaultRule::new("GET", "/drive/v3/files/*", FaultAction::user_rate_limit()).times(with_403),
        );
        self.ctl.add_fault(
            FaultRule::new(
                "GET",
                "/drive/v3/files/*",
                FaultAction::too_many_requests(Some(1)),
            )
            .times(times - with_403),
        );
    }

    fn throttled_answers(&self) -> usize {
        self.log_count(|e| e.fault.is_some() && matches!(e.status, 403 | 429))
    }

    fn delay_download(&self, id: &str, millis: u64) {
        self.ctl.add_fault(FaultRule::new(
            "GET",
            &format!("/drive/v3/files/{id}"),
            FaultAction::Delay { millis },
        ));
    }

    fn clear_faults(&self) {
        self.ctl.clear_faults();
    }

    fn content_downloads(&self) -> usize {
        self.log_count(is_download)
    }

    fn listing_requests(&self) -> usize {
        self.log_count(|e| e.method == "GET" && e.path == "/drive/v3/files")
    }

    fn clear_traffic(&self) {
        self.ctl.clear_traffic();
    }
}
