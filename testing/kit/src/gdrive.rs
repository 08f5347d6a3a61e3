//! The in-process Google Drive emulator in tests: an emulator whose answers can be asserted
//! exactly, a Google Drive datasource pointed at it, and access tokens it minted.

use std::sync::Arc;
use std::time::Duration;

use gdrive_emulator::{Control, DRIVE_READONLY_SCOPE, Emulator, EmulatorBuilder, RunningEmulator};
use kbsync_core::datasource::AccessToken;
use kbsync_gdrive::{GDriveConfig, GoogleDrive, Sleeper, google_oauth};

use crate::start_time;
use crate::tokens::TestTokens;

/// An emulator whose answers a test can assert exactly: seeded, its clock frozen at
/// [`crate::START`].
pub fn exact_emulator(seed: u64) -> EmulatorBuilder {
    Emulator::builder()
        .seed(seed)
        .frozen_clock(true)
        .start_time(start_time())
}

/// Drive settings pointing at `emu`, with a 10 s request timeout (the emulator answers at once,
/// so a request that takes longer is a hung test, not a slow network) and a 20 ms first backoff
/// step.
pub fn gdrive_config(emu: &RunningEmulator) -> GDriveConfig {
    GDriveConfig {
        api_url: emu.api_url(),
        request_timeout: Duration::from_secs(10),
        base_backoff: Duration::from_millis(20),
        ..GDriveConfig::default()
    }
}

/// The Google Drive datasource with `config`, its sign-in pointed at `emu`'s OAuth endpoints,
/// waiting through `sleeper`.
pub fn google_drive(emu: &RunningEmulator, config: GDriveConfig, sleeper: Arc<dyn Sleeper>) -> GoogleDrive {
    let http = config.http_client().unwrap();
    let oauth = google_oauth(&emu.authorize_url(), &emu.token_url());
    GoogleDrive::new(config, oauth, http, sleeper)
}

/// An access token of `user` (an emulator user id) with the `drive.readonly` scope, as the
/// bearer string.
pub fn mint_token(ctl: &Control, user: &str) -> String {
    ctl.mint_tokens(user, DRIVE_READONLY_SCOPE).unwrap().access_token
}

/// Access tokens of `user`, each refresh minting a fresh one (see [`TestTokens`]).
pub fn tokens(ctl: &Control, user: &str) -> TestTokens {
    let (ctl, user) = (ctl.clone(), user.to_owned());
    TestTokens::minted_by(Box::new(move || AccessToken::new(mint_token(&ctl, &user))))
}
