//! Authentication: password hashing, opaque session tokens stored hashed, and the extractors that
//! turn `Authorization: Bearer …` (a session token or an API key, or on read-only routes the web
//! UI's session cookie) into the calling [`User`]; the web UI's CSRF tokens derive from the same
//! session token.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, Method, header, request::Parts},
};
use kbsync_core::{ApiKeyScope, OsRandom, Random, User};
use kbsync_store::StoreError;
use sha2::{Digest, Sha256};

use crate::{AppState, error::ApiError, service::api_keys};

/// The authenticated caller of an API route: a session (bearer token from sign-in, or on read-only
/// routes the web UI's cookie) or an API key (`Authorization: Bearer kbs_…`) within its scope. A
/// `read` key is refused (403) on every method but GET and HEAD.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state).await?;
        if let Credential::ApiKey {
            scope: ApiKeyScope::Read,
            ..
        } = caller.credential
            && !is_safe(&parts.method)
        {
            return Err(ApiError::Forbidden(
                "this API key may only read (GET and HEAD); use a write key to make changes".into(),
            ));
        }
        Ok(CurrentUser(caller.user))
    }
}

/// The caller of a route that manages credentials (creating API keys or accounts, changing passwords,
/// roles or whether an account is enabled): it needs
/// a signed-in session, never an API key (403), so that a leaked key can neither make itself
/// permanent nor take its account over. Carries the session token, which such routes keep alive
/// while they end the account's other sessions.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user: User,
    pub session_token: String,
}

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state).await?;
        match caller.credential {
            Credential::Session { token } => Ok(SessionUser {
                user: caller.user,
                session_token: token,
            }),
            Credential::ApiKey { .. } => Err(ApiError::Forbidden(
                "API keys cannot create keys or accounts, change passwords or change accounts; sign in to do this".into(),
            )),
        }
    }
}

/// The header in which Open WebUI forwards the chatting user's email to a tool server (with
/// `ENABLE_FORWARD_USER_INFO_HEADERS=true`; Open WebUI's default header name).
pub const ASSERTED_USER_EMAIL_HEADER: &str = "x-openwebui-user-email";

/// The caller of a tool server operation (`/api/v1/tools/…`, which only read). Any signed-in
/// caller, read keys included; and when the request comes with an API key an admin marked
/// `trusted_user_assertion` and carries [`ASSERTED_USER_EMAIL_HEADER`], the user with that email
/// instead (who must exist, be a person and be enabled: otherwise 403, never the key's own
/// account). For every other credential the header is ignored: a header alone never changes who
/// the caller is.
#[derive(Debug, Clone)]
pub struct ToolCaller(pub User);

impl FromRequestParts<AppState> for ToolCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state).await?;
        let trusted = matches!(
            caller.credential,
            Credential::ApiKey {
                trusted_user_assertion: true,
                ..
            }
        );
        let Some(header) = parts.headers.get(ASSERTED_USER_EMAIL_HEADER).filter(|_| trusted) else {
            return Ok(ToolCaller(caller.user));
        };
        let email = header
            .to_str()
            .map_err(|_| ApiError::Forbidden("the asserted user email is not readable text".into()))?;
        let user = api_keys::asserted_user(state, email).await?;
        tracing::debug!(by = %caller.user.id, user.id = %user.id, "tool request for an asserted user");
        Ok(ToolCaller(user))
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A session token: a bearer token from `POST /auth/login`, or the web UI's cookie.
    Session { token: String },
    /// An API key with its scope, and whether it may assert users (see [`ToolCaller`]).
    ApiKey {
        id: uuid::Uuid,
        scope: ApiKeyScope,
        trusted_user_assertion: bool,
    },
}

/// An authenticated request: the account, and how it signed the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub credential: Credential,
}

fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Who sends a request. The web UI's session cookie opens only the API's safe (read-only) routes:
/// the event stream and the picker's browse data. Every change the UI makes goes through a UI form
/// with a CSRF token, so a cookie can never make the API change something by itself. A bearer token
/// that starts with `kbs_` is an API key; any other is a session token.
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let token = match bearer_token(parts) {
        Some(token) if api_keys::is_api_key(token) => {
            let found = api_keys::authenticate(state, token).await?;
            return Ok(Caller {
                user: found.owner,
                credential: Credential::ApiKey {
                    id: found.key.id,
                    scope: found.key.scope,
                    trusted_user_assertion: found.key.trusted_user_assertion,
                },
            });
        }
        Some(token) => token,
        None if is_safe(&parts.method) => session_cookie(parts).ok_or(ApiError::Unauthenticated)?,
        None => return Err(ApiError::Unauthenticated),
    };
    let user = user_for_token(state, token).await?;
    Ok(Caller {
        user,
        credential: Credential::Session {
            token: token.to_owned(),
        },
    })
}

/// The user a session token (bearer or cookie) belongs to, if the session is still valid.
pub async fn user_for_token(state: &AppState, token: &str) -> Result<User, ApiError> {
    match state
        .store
        .user_for_session(&token_hash(token), state.clock.now())
        .await
    {
        Ok(user) => Ok(user),
        Err(StoreError::NotFound) => Err(ApiError::Unauthenticated),
        Err(other) => Err(other.into()),
    }
}

/// The name of the web UI's session cookie; its value is a session token like the API's.
pub const SESSION_COOKIE: &str = "kbsync_session";

/// The session token carried by the web UI's cookie, if any.
pub fn session_cookie(parts: &Parts) -> Option<&str> {
    cookie(&parts.headers, SESSION_COOKIE)
}

/// The value of one cookie of a request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

/// The CSRF token of a web UI session: derived from the session token, so it needs no storage,
/// changes with every sign-in, and cannot be computed by a page that does not know the cookie.
pub fn csrf_token(session_token: &str) -> String {
    hex::encode(Sha256::digest(format!("csrf:{session_token}").as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The raw bearer token of a request, for routes that act on the session itself (logout).
#[derive(Debug, Clone)]
pub struct BearerToken(pub String);

impl FromRequestParts<AppState> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        bearer_token(parts)
            .map(|t| BearerToken(t.to_owned()))
            .ok_or(ApiError::Unauthenticated)
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Tokens are stored only as their SHA-256, so a database leak does not leak sessions.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Hashes a password with argon2id (PHC string). CPU-heavy: call from a blocking thread.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt_bytes = [0u8; 16];
    OsRandom.fill(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| ApiError::internal("password salt", e))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal("password hashing", e))
}

/// Checks a password against a PHC string; a malformed stored hash counts as a mismatch.
/// CPU-heavy: call from a blocking thread.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Runs a password hash or verification off the async runtime, one of at most
/// `password_hash_concurrency` at a time, so a flood of sign-ins cannot take every core or, at
/// ~19 MiB of argon2 memory each, exhaust memory. A caller that gets no turn within
/// `password_hash_wait` is answered [`ApiError::Busy`].
pub async fn password_work<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let turn = tokio::time::timeout(
        state.settings.password_hash_wait,
        state.password_hashing.clone().acquire_owned(),
    )
    .await;
    let permit = match turn {
        Ok(Ok(permit)) => permit,
        Ok(Err(closed)) => return Err(ApiError::internal("password hashing turns", closed)),
        Err(_) => {
            metrics::counter!("kbsync_logins_total", "outcome" => "busy").increment(1);
            return Err(ApiError::Busy { retry_after_secs: 1 });
        }
    };
    blocking(move || {
        let result = f();
        drop(permit);
        result
    })
    .await
}

/// The client address a request came from: the TCP peer. `X-Forwarded-For` and the like are not
/// read (a client can write them); behind a reverse proxy every client shares the proxy's address.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl ClientAddress {
    /// The key failed sign-ins are counted under: the IPv4 address, or the /64 network of an IPv6
    /// address (one subscriber usually holds a whole /64); `unknown` when the server runs without
    /// peer addresses.
    pub fn throttle_key(&self) -> String {
        match self.0.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => {
                let network = u128::from(v6) & !u128::from(u64::MAX);
                format!("{}/64", Ipv6Addr::from(network))
            }
            None => "unknown".to_owned(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

/// Runs a CPU-heavy closure off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("blocking task", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_verifies_only_the_same_password() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn csrf_token_follows_the_session_and_compares_exactly() {
        let a = csrf_token("session-a");
        assert_eq!(a, csrf_token("session-a"));
        assert_ne!(a, csrf_token("session-b"));
        assert!(!a.contains("session-a"));
        assert!(constant_time_eq(&a, &csrf_token("session-a")));
        assert!(!constant_time_eq(&a, &csrf_token("session-b")));
        assert!(!constant_time_eq(&a, ""));
    }

    #[test]
    fn client_addresses_count_per_ipv4_address_and_per_ipv6_network() {
        let key = |text: &str| ClientAddress(Some(text.parse().unwrap())).throttle_key();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(ClientAddress(None).throttle_key(), "unknown");
    }

    #[test]
    fn token_hash_is_stable_hex_and_hides_the_token() {
        let h = token_hash("abc");
        assert_eq!(h, token_hash("abc"));
        assert_eq!(h.len(), 64);
        assert!(!h.contains("abc"));
    }
}
