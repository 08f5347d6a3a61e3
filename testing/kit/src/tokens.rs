//! Access tokens as the connection manager hands them out, minted by an emulator: what the
//! datasource tests use when the behaviour under test is not the OAuth flow itself.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use kbsync_core::datasource::{AccessToken, DatasourceError, TokenSource};

/// Mints a fresh access token of one user at an emulator.
pub type Minter = Box<dyn Fn() -> AccessToken + Send + Sync>;

/// Access tokens of one emulator user, as the connection manager hands them out: a refresh mints
/// a fresh one (counted), unless the refresh token is taken to be revoked
/// ([`TestTokens::refuse_refresh`]): then it answers `Unauthorized`, as the connection manager
/// does after `invalid_grant`.
pub struct TestTokens {
    mint: Minter,
    current: Mutex<AccessToken>,
    refreshes: AtomicUsize,
    refuse_refresh: AtomicBool,
}

impl TestTokens {
    /// Tokens that `mint` makes; the first one is minted at once.
    pub fn minted_by(mint: Minter) -> Self {
        let first = mint();
        Self {
            mint,
            current: Mutex::new(first),
            refreshes: AtomicUsize::new(0),
            refuse_refresh: AtomicBool::new(false),
        }
    }

    /// Replaces the access token handed out until the next refresh.
    pub fn set_current(&self, token: AccessToken) {
        *self.current.lock().unwrap() = token;
    }

    /// How many refreshes were asked for (refused ones too).
    pub fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }

    /// From now on refreshes are refused (`true`) or granted again (`false`).
    pub fn refuse_refresh(&self, refuse: bool) {
        self.refuse_refresh.store(refuse, Ordering::SeqCst);
    }
}

#[async_trait]
impl TokenSource for TestTokens {
    async fn access_token(&self) -> Result<AccessToken, DatasourceError> {
        Ok(self.current.lock().unwrap().clone())
    }

    async fn refresh(&self, rejected: &AccessToken) -> Result<AccessToken, DatasourceError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        if self.refuse_refresh.load(Ordering::SeqCst) {
            return Err(DatasourceError::Unauthorized(
                "the refresh token was revoked (invalid_grant)".into(),
            ));
        }
        let fresh = (self.mint)();
        assert_ne!(&fresh, rejected);
        *self.current.lock().unwrap() = fresh.clone();
        Ok(fresh)
    }
}
