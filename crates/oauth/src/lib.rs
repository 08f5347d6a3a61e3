//! The connection lifecycle of a knowledge base.
//!
//! - **Connect**: [`ConnectionManager::initiate`] stores a random `state` (only its SHA-256), a
//!   PKCE S256 verifier (encrypted) and the SHA-256 of a random browser binding secret in the
//!   database with a 10-minute lifetime, and returns the authorize URL and the binding (which the
//!   server gives only to the starting browser, in a cookie); [`ConnectionManager::claim`]
//!   consumes the state exactly once and checks the callback's binding;
//!   [`ConnectionManager::complete`] redeems the code with the client secret and the verifier,
//!   and stores the refresh token encrypted.
//! - **Refresh**: [`ConnectionManager::tokens`] is the [`TokenSource`] of a knowledge base. An
//!   access token is cached in memory until 5 minutes before it expires, and is also kept
//!   (encrypted) in the database, so that every instance can use the one any instance obtained. A
//!   refresh is single-flight per connection across all instances: in-process by a per-connection
//!   lock, across instances by a lease in the database. The rotated refresh token is written before
//!   the new access token is handed out. `invalid_grant` (or `interaction_required`) marks the
//!   connection and its knowledge base `needs_reauth`; a timeout or 5xx from the token endpoint is
//!   transient and never does.
//!
//! - **Sign-in**: [`OidcClient`] signs people in to kbsync itself with OpenID Connect (discovery,
//!   code + PKCE + nonce, ID token verification against the provider's keys).
//!
//! - **App-only**: [`AppOnlyTokens`] is the [`TokenSource`] of a connection made as the organisation's
//!   application (client credentials with a secret or a certificate), without any user's delegation.
//!
//! Nothing here logs or returns a token, secret, code or verifier; their `Debug` output is
//! redacted.
//!
//! [`TokenSource`]: kbsync_core::datasource::TokenSource

mod app_only;
mod config;
mod errors;
mod manager;
mod oidc;
mod pkce;
mod token_endpoint;

pub use app_only::{AppOnlyConfig, AppOnlyTokens, CertificateError, ClientCertificate, ClientCredential};
pub use config::{ClientSecret, OAuthClientConfig};
pub use errors::{CallbackError, CallbackErrorKind, OAuthError};
pub use manager::{
    ConnectionManager, ConnectionStatus, Initiated, PendingAuthorization, RefreshSettings, flow_id,
};
pub use oidc::{OidcClient, OidcConfig, OidcError, ProviderMetadata, SignInFlow, VerifiedIdentity};
