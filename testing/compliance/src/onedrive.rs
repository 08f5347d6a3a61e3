//! OneDrive (Microsoft Graph) as a compliance subject: the in-process Graph emulator and the
//! OneDrive datasource pointed at it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use kbsync_core::ManualClock;
use kbsync_core::datasource::{ContentHash, Datasource, DatasourceKind};
use kbsync_kit::emulator::{TestTokens, exact_emulator, graph_config, onedrive};
use kbsync_msgraph::{OneDrive, TokioSleeper};
use kbsync_oauth::{ClientSecret, OAuthClientConfig};
use msgraph_emulator::quickxorhash::quickxorhash;
use msgraph_emulator::{
    ClientRegistration, Control, FaultAction, FaultRule, NewGroup, NewUser, PermissionSpec, ResyncCode,
    RetryAfter, RunningEmulator, glob_match,
};

use crate::{Setup, Subject};

const CLIENT_ID: &str = "kbsync-compliance-client";
const CLIENT_SECRET: &str = "kbsync-compliance-client-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:9/api/v1/datasources/onedrive/auth/callback";
const CONTENT_ROUTE: &str = "/v1.0/drives/*/items/*/content";
const TOKEN_PATH: &str = "/*/oauth2/v2.0/token";
/// What kbsync asks a OneDrive user to consent to (its default scopes).
const SCOPES: &[&str] = &[
    "offline_access",
    "https://graph.microsoft.com/Files.Read.All",
    "https://graph.microsoft.com/Sites.Read.All",
    "https://graph.microsoft.com/GroupMember.Read.All",
];

/// The Graph emulator and the OneDrive datasource.
pub struct OneDriveSubject {
    emu: RunningEmulator,
    ctl: Control,
    ds: OneDrive,
    tokens: TestTokens,
    clock: Arc<ManualClock>,
    drive: String,
    user: String,
}

impl OneDriveSubject {
    fn item_id(&self, path: &str) -> String {
        self.ctl.item_by_path(&self.drive, path).unwrap().id
    }

    fn log_count(&self, keep: impl Fn(&msgraph_emulator::LogEntry) -> bool) -> usize {
        self.ctl.request_log().entries.iter().filter(|e| keep(e)).count()
    }

    /// A user of the tenant with `email`, made when there is none yet.
    fn user_with(&self, name: &str, email: &str) -> String {
        self.ctl
            .create_user(NewUser {
                display_name: name.into(),
                mail: Some(email.into()),
                ..NewUser::default()
            })
            .unwrap()
            .id
    }

    fn collect(&self, item_id: &str, path: &str, out: &mut BTreeMap<String, ContentHash>) {
        for child in self.ctl.children(&self.drive, item_id).unwrap() {
            let child_path = format!("{path}/{}", child.name);
            if child.folder {
                self.collect(&child.id, &child_path, out);
            } else {
                let value = child.quick_xor_hash.clone().unwrap();
                out.insert(
                    child_path,
                    ContentHash {
                        algorithm: "quickXorHash".into(),
                        value,
                    },
                );
            }
        }
    }
}

#[async_trait]
impl Subject for OneDriveSubject {
    async fn start(setup: Setup) -> Self {
        let emu = exact_emulator(11)
            .auto_consent(true)
            .client(ClientRegistration {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                redirect_uris: vec![REDIRECT_URI.into()],
                ..ClientRegistration::default()
            })
            .start()
            .await
            .unwrap();
        let ctl = emu.control();
        let config = kbsync_msgraph::GraphConfig {
            page_size: setup.page_size,
            base_backoff: std::time::Duration::from_millis(20),
            ..graph_config(&emu)
        };
        let ds = onedrive(&emu, config, Arc::new(TokioSleeper)).with_clock(setup.clock.clone());
        let user = ctl.default_user_id();
        let tokens = TestTokens::new(&ctl, &user);
        let drive = ctl.default_drive_id();
        Self {
            emu,
            ctl,
            ds,
            tokens,
            clock: setup.clock,
            drive,
            user,
        }
    }

    fn kind(&self) -> DatasourceKind {
        DatasourceKind::OneDrive
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
        OAuthClientConfig {
            kind: DatasourceKind::OneDrive,
            client_id: CLIENT_ID.into(),
            client_secret: ClientSecret::new(CLIENT_SECRET),
            authorize_url: self.emu.authorize_url(),
            token_url: self.emu.token_url(),
            scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            redirect_uri: REDIRECT_URI.into(),
            extra_authorize_params: Vec::new(),
        }
    }

    fn advance_clock(&self, by: chrono::Duration) {
        self.ctl.advance_clock(by);
    }

    fn token_requests(&self) -> usize {
        self.log_count(|e| e.method == "POST" && glob_match(TOKEN_PATH, &e.path))
    }

    fn drive_id(&self) -> String {
        self.drive.clone()
    }

    fn put(&self, path: &str, text: &str) -> String {
        self.ctl.put_file(&self.drive, path, text.to_owned()).unwrap().id
    }

    fn folder(&self, path: &str) -> String {
        self.ctl.create_folder(&self.drive, path).unwrap().id
    }

    fn id(&self, path: &str) -> String {
        self.item_id(path)
    }

    fn modify(&self, id: &str, text: &str) {
        self.ctl.modify_file(&self.drive, id, text.to_owned()).unwrap();
    }

    fn rename(&self, id: &str, name: &str) {
        self.ctl.rename(&self.drive, id, name).unwrap();
    }

    fn move_to(&self, id: &str, folder_path: &str) {
        let parent = self.item_id(folder_path);
        self.ctl.move_item(&self.drive, id, &parent, None).unwrap();
    }

    fn delete(&self, id: &str) {
        self.ctl.delete(&self.drive, id).unwrap();
    }

    fn purge(&self, id: &str) {
        self.ctl.delete(&self.drive, id).unwrap();
    }

    fn files_under(&self, path: &str) -> BTreeMap<String, ContentHash> {
        let mut out = BTreeMap::new();
        self.collect(&self.item_id(path), path, &mut out);
        out
    }

    fn hash(&self, bytes: &[u8]) -> ContentHash {
        ContentHash {
            algorithm: "quickXorHash".into(),
            value: quickxorhash(bytes),
        }
    }

    fn share_with_user(&self, id: &str, name: &str, email: &str) {
        let user = self.user_with(name, email);
        self.ctl
            .add_permission(&self.drive, id, PermissionSpec::user(&user, &["read"]))
            .unwrap();
    }

    fn share_with_group(&self, id: &str, group: &str, group_email: &str, members: &[(&str, &str)]) {
        let g = self
            .ctl
            .create_group(NewGroup {
                id: None,
                display_name: group.into(),
                mail: Some(group_email.into()),
            })
            .unwrap();
        for (name, email) in members {
            let member = self.user_with(name, email);
            self.ctl.add_group_member(&g.id, &member).unwrap();
        }
        self.ctl
            .add_permission(
                &self.drive,
                id,
                PermissionSpec::Group {
                    group_id: Some(g.id.clone()),
                    display_name: g.display_name.clone(),
                    email: g.mail.clone(),
                    roles: vec!["read".into()],
                },
            )
            .unwrap();
    }

    fn expands_groups(&self) -> bool {
        true
    }

    fn revoke_refresh_tokens(&self) {
        self.ctl.revoke_refresh_tokens(&self.user).unwrap();
    }

    fn expire_cursor(&self) {
        self.ctl
            .expire_delta_tokens(&self.drive, ResyncCode::ResyncChangesApplyDifferences)
            .unwrap();
    }

    fn throttle_downloads(&self, times: u64) {
        self.ctl.add_fault(
            FaultRule::new(
                "GET",
                CONTENT_ROUTE,
                FaultAction::Throttle {
                    status: 429,
                    retry_after: RetryAfter::Seconds(1),
                    rate_limit_headers: false,
                },
            )
            .times(times),
        );
    }

    fn throttled_answers(&self) -> usize {
        self.log_count(|e| e.status == 429 || e.status == 503)
    }

    fn delay_download(&self, id: &str, millis: u64) {
        self.ctl.add_fault(FaultRule::new(
            "GET",
            &format!("/v1.0/drives/*/items/{id}/content"),
            FaultAction::Delay { millis },
        ));
    }

    fn clear_faults(&self) {
        self.ctl.clear_faults();
    }

    fn content_downloads(&self) -> usize {
        self.log_count(|e| glob_match(CONTENT_ROUTE, &e.path))
    }

    fn listing_requests(&self) -> usize {
        self.log_count(|e| e.path.ends_with("/children"))
    }

    fn clear_traffic(&self) {
        self.ctl.clear_request_log();
    }
}
