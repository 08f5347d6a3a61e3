//! The in-process Graph emulator in tests: an emulator whose answers can be asserted exactly, a
//! OneDrive datasource pointed at it, access tokens it minted, and users with drives of their own.

use std::sync::Arc;
use std::time::Duration;

use kbsync_core::datasource::AccessToken;
use kbsync_msgraph::{GraphConfig, OneDrive, Sleeper, microsoft_oauth};
use msgraph_emulator::{
    Control, DeltaBehaviour, DriveType, Emulator, EmulatorBuilder, NewUser, RunningEmulator, UserInfo,
};

pub use crate::tokens::TestTokens;
pub use crate::{START, start_time};

/// The scopes of the access tokens tests mint: what kbsync asks a user to consent to (files,
/// SharePoint sites for the picker, group memberships for per-document access).
pub const SCOPES: &[&str] = &["Files.Read.All", "Sites.Read.All", "GroupMember.Read.All"];

/// Delta rounds as plain as Graph may give them: parents before children, each item once.
pub fn plain_delta() -> DeltaBehaviour {
    DeltaBehaviour {
        children_first_probability: 0.0,
        duplicate_probability: 0.0,
        ..DeltaBehaviour::default()
    }
}

/// An emulator whose answers a test can assert exactly: seeded, its clock frozen at [`START`],
/// and plain delta rounds.
pub fn exact_emulator(seed: u64) -> EmulatorBuilder {
    Emulator::builder()
        .seed(seed)
        .frozen_clock(true)
        .start_time(start_time())
        .delta_behaviour(plain_delta())
}

/// Graph settings pointing at `emu`, with a 10 s request timeout (the emulator answers at once,
/// so a request that takes longer is a hung test, not a slow network).
pub fn graph_config(emu: &RunningEmulator) -> GraphConfig {
    GraphConfig {
        graph_url: emu.graph_url().to_string(),
        request_timeout: Duration::from_secs(10),
        ..GraphConfig::default()
    }
}

/// The OneDrive datasource with `config`, its sign-in pointed at `emu`'s identity platform,
/// waiting through `sleeper`.
pub fn onedrive(emu: &RunningEmulator, config: GraphConfig, sleeper: Arc<dyn Sleeper>) -> OneDrive {
    let http = config.http_client().unwrap();
    let oauth = microsoft_oauth(
        emu.base_url(),
        &emu.control().tenant_id(),
        vec!["Files.Read.All".into()],
    );
    OneDrive::new(config, oauth, http, sleeper)
}

/// An access token of `user` minted by the emulator with [`SCOPES`], as the bearer string.
pub fn mint_token(ctl: &Control, user: &str) -> String {
    ctl.mint_access_token(user, SCOPES).unwrap()
}

/// An access token of `user` minted by the emulator with [`SCOPES`].
pub fn access_token(ctl: &Control, user: &str) -> AccessToken {
    AccessToken::new(mint_token(ctl, user))
}

/// A new user of the emulated tenant with a personal (consumer OneDrive) drive of their own; the
/// drive's id is in `drive_id`.
pub fn personal_drive_user(ctl: &Control, display_name: &str, mail: Option<&str>) -> UserInfo {
    ctl.create_user(NewUser {
        display_name: display_name.into(),
        mail: mail.map(Into::into),
        drive_type: Some(DriveType::Personal),
        ..NewUser::default()
    })
    .unwrap()
}

impl TestTokens {
    /// Tokens of `user` minted by the emulator with [`SCOPES`].
    pub fn new(ctl: &Control, user: &str) -> Self {
        let (ctl, user) = (ctl.clone(), user.to_owned());
        Self::minted_by(Box::new(move || access_token(&ctl, &user)))
    }

    /// Tokens whose first access token lives `secs` seconds of emulator time.
    pub fn short_lived(ctl: &Control, user: &str, secs: i64) -> Self {
        let tokens = Self::new(ctl, user);
        let token = ctl
            .mint_access_token_for(user, &["Files.Read.All"], chrono::Duration::seconds(secs))
            .unwrap();
        tokens.set_current(AccessToken::new(token));
        tokens
    }
}

/// Signs `user` (an emulator user's id, UPN or mail) in at the emulator's authorize endpoint, as a browser
/// that accepts the consent form would: posts `authorize_url`'s parameters with `login_hint` and
/// `consent=accept` (so it works with or without auto-consent) and returns the redirect it answers (the
/// client's redirect URI with `code` and `state`, or with `error`) without following it. Panics when the
/// emulator answers with its own error page instead (e.g. AADSTS50020 for a user of another tenant).
pub async fn sign_in(authorize_url: &str, user: &str) -> String {
    let url = reqwest::Url::parse(authorize_url).unwrap();
    let mut form: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != "login_hint")
        .collect();
    form.push(("login_hint".into(), user.into()));
    form.push(("consent".into(), "accept".into()));
    let mut target = url.clone();
    target.set_query(None);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.post(target).form(&form).send().await.unwrap();
    let status = r.status();
    match r.headers().get("location") {
        Some(l) if status == 302 => l.to_str().unwrap().to_string(),
        _ => panic!(
            "the emulator did not redirect the sign-in ({status}): {}",
            r.text().await.unwrap()
        ),
    }
}
