//! Accounts, login with throttling, and API sessions.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use kbsync_core::{Role, User};
use kbsync_store::{LoginAttempt, LoginBackoff, NewUser, Store, StoreError};

use crate::{
    AppState,
    auth::{ClientAddress, blocking, hash_password, password_work, token_hash, verify_password},
    error::ApiError,
};

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 1024;
const MAX_EMAIL_CHARS: usize = 254;

/// How failed logins for one account are slowed down: after `free_attempts` failures, each
/// further attempt must wait `base_delay_secs · 2^(failures − free_attempts)`, at most
/// `max_delay_secs`, after the previous failure. A success resets the count; an attempt made
/// while the delay runs is refused without being evaluated or counted.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    pub free_attempts: u32,
    pub base_delay_secs: u64,
    pub max_delay_secs: u64,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            free_attempts: 5,
            base_delay_secs: 1,
            max_delay_secs: 15 * 60,
        }
    }
}

impl LoginThrottle {
    /// This rule as the store applies it, forgetting failures older than `forget_before`.
    pub fn backoff(&self, forget_before: DateTime<Utc>) -> LoginBackoff {
        let secs = |s: u64| Duration::seconds(i64::from(u32::try_from(s).unwrap_or(u32::MAX)));
        LoginBackoff {
            free_attempts: self.free_attempts,
            first_delay: secs(self.base_delay_secs),
            max_delay: secs(self.max_delay_secs),
            forget_before,
        }
    }
}

pub struct LoginOutcome {
    pub token: String,
    pub user: User,
}

/// Checks an email and password and opens a session.
///
/// Order matters: the input's size is checked before anything is looked up; then the client
/// address and the account each take an attempt atomically (a refused one is 429 with the wait),
/// so parallel guesses cannot slip past the count; only then is the password verified, under the
/// bounded password-hashing turns. A success clears the account's failures and gives the
/// address its attempt back.
pub async fn login(
    state: &AppState,
    client: ClientAddress,
    email: &str,
    password: &str,
) -> Result<LoginOutcome, ApiError> {
    if !state.settings.password_login {
        return Err(ApiError::Forbidden(match &state.oidc {
            Some(oidc) => format!(
                "Password sign-in is turned off: sign in with {}.",
                oidc.display_name()
            ),
            None => "Password sign-in is turned off.".to_owned(),
        }));
    }
    let email = email.trim();
    if email.is_empty() {
        return Err(ApiError::invalid("email", "must not be empty"));
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(ApiError::invalid(
            "email",
            format!("must be at most {MAX_EMAIL_CHARS} characters"),
        ));
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let now = state.clock.now();
    let address = client.throttle_key();
    let throttled = |until: DateTime<Utc>| {
        metrics::counter!("kbsync_logins_total", "outcome" => "throttled").increment(1);
        ApiError::TooManyRequests {
            // Rounded up: coming back after the advertised wait always finds the delay over.
            retry_after_secs: u64::try_from((until - now).num_milliseconds().saturating_add(999) / 1000)
                .unwrap_or(0)
                .max(1),
        }
    };
    if let LoginAttempt::Throttled { until } = state
        .store
        .begin_address_attempt(&address, now, &state.settings.login_address_limit)
        .await?
    {
        return Err(throttled(until));
    }
    let backoff = state
        .settings
        .login_throttle
        .backoff(now - state.settings.login_failure_retention);
    if let LoginAttempt::Throttled { until } = state.store.begin_login_attempt(email, now, &backoff).await? {
        return Err(throttled(until));
    }

    let credentials = match state.store.get_credentials_by_email(email).await {
        Ok(c) => Some(c),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    // An unknown email, a disabled account, or one without a password (it signs in through an OpenID
    // provider) costs the same argon2 work and gets the same answer as a wrong password, so timing
    // does not tell which accounts exist. (The dummy hash's own password matches it: the guard
    // below still refuses those accounts.)
    let phc = credentials
        .as_ref()
        .filter(|c| !c.user.disabled)
        .and_then(|c| c.password_hash.clone());
    let password = password.to_owned();
    let matches = password_work(state, move || match &phc {
        Some(phc) => verify_password(&password, phc),
        None => verify_password(&password, dummy_hash()),
    })
    .await?;

    match credentials {
        Some(c) if matches && !c.user.disabled && c.password_hash.is_some() => {
            state.store.clear_login_failures(email).await?;
            state.store.give_back_address_attempt(&address).await?;
            let token = state.random.token_hex(32);
            state
                .store
                .create_session(
                    &token_hash(&token),
                    c.user.id,
                    now,
                    now + state.settings.session_ttl,
                )
                .await?;
            metrics::counter!("kbsync_logins_total", "outcome" => "success").increment(1);
            Ok(LoginOutcome { token, user: c.user })
        }
        // The failure was counted when the attempt was taken.
        _ => {
            metrics::counter!("kbsync_logins_total", "outcome" => "failure").increment(1);
            Err(ApiError::BadCredentials)
        }
    }
}

/// Ends a session. An API key is not a session: signing out with one is refused (400) and leaves
/// the key working; keys are revoked instead (`DELETE /api/v1/me/api-keys/{id}`).
pub async fn logout(state: &AppState, token: &str) -> Result<(), ApiError> {
    if super::api_keys::is_api_key(token) {
        return Err(ApiError::BadRequest {
            message: "an API key is not a session: revoke it instead of signing out with it".into(),
        });
    }
    Ok(state.store.delete_session(&token_hash(token)).await?)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("kbsync-dummy-password").unwrap_or_default())
}

/// Validates and creates a user. Used by the API (admins only) and by the CLI.
pub async fn create_user(
    store: &dyn Store,
    random: &dyn kbsync_core::Random,
    now: chrono::DateTime<chrono::Utc>,
    email: &str,
    password: &str,
    role: Role,
) -> Result<User, ApiError> {
    let email = validate_email(email)?;
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let password = password.to_owned();
    let password_hash = blocking(move || hash_password(&password)).await??;
    match store
        .create_user(
            random.uuid(),
            NewUser {
                email: email.clone(),
                password_hash: Some(password_hash),
                role,
                display_name: None,
            },
            now,
        )
        .await
    {
        Ok(user) => Ok(user),
        Err(StoreError::Conflict(_)) => Err(ApiError::Conflict(format!(
            "a user with email {email} already exists"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Creates the first admin when the database has no user yet. Returns the user when it made one.
pub async fn bootstrap_admin(
    store: &dyn Store,
    random: &dyn kbsync_core::Random,
    now: chrono::DateTime<chrono::Utc>,
    email: &str,
    password: &str,
) -> Result<Option<User>, ApiError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    create_user(store, random, now, email, password, Role::Admin)
        .await
        .map(Some)
}

fn validate_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let valid = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(email.to_owned())
    } else {
        Err(ApiError::invalid("email", "must be an email address"))
    }
}

/// The default session lifetime.
pub fn default_session_ttl() -> Duration {
    Duration::days(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_validation_accepts_addresses_and_rejects_the_rest() {
        assert_eq!(validate_email(" a@b.c ").unwrap(), "a@b.c");
        for bad in ["", "ab", "@b", "a@", "a b@c", "a@b@c"] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
