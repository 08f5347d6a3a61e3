//! Signing in with an OpenID provider: starting a sign-in, completing it, and the account it signs
//! in to (found by the provider identity, linked by a trusted email, or created just in time).

use chrono::Duration;
use kbsync_core::{Role, User};
use kbsync_oauth::{OidcClient, OidcError, SignInFlow, VerifiedIdentity};
use kbsync_store::{AccountChange, NewUser, SignInFlowRecord, StoreError};

use crate::{AppState, auth::token_hash, error::ApiError, service::users::LoginOutcome};

/// How long a started sign-in may take to come back.
pub const FLOW_TTL_SECS: i64 = 600;

/// The OpenID provider kbsync signs people in with, and the rules for whom it lets in.
#[derive(Debug)]
pub struct OidcSignIn {
    pub client: OidcClient,
    /// Email domains allowed to sign in (lower case); empty allows every domain.
    pub allowed_domains: Vec<String>,
    /// Group ids (the token's `groups`) whose members are admins; empty leaves roles alone.
    pub admin_groups: Vec<String>,
}

impl OidcSignIn {
    /// What the sign-in button names, e.g. "Microsoft".
    pub fn display_name(&self) -> &str {
        &self.client.config().display_name
    }
}

/// A started sign-in: where to send the browser, and the binding the browser keeps in a cookie.
pub struct Started {
    pub authorize_url: String,
    pub binding: String,
}

/// Starts a sign-in that returns to `next` (a local path; anything else returns to the start page).
pub async fn begin(state: &AppState, oidc: &OidcSignIn, next: &str) -> Result<Started, ApiError> {
    let flow = SignInFlow::new(state.random.as_ref());
    let authorize_url = oidc.client.authorize_url(&flow).await.map_err(provider_error)?;
    let now = state.clock.now();
    state
        .store
        .create_sign_in_flow(SignInFlowRecord {
            state_hash: flow.state_hash(),
            binding_hash: flow.binding_hash(),
            next_path: next.to_owned(),
            created_at: now,
            expires_at: now + Duration::seconds(FLOW_TTL_SECS),
        })
        .await?;
    Ok(Started {
        authorize_url,
        binding: flow.binding,
    })
}

/// What the provider sent back to the callback.
pub struct Callback<'a> {
    pub state: &'a str,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub error_description: Option<&'a str>,
    /// The binding from the browser's cookie.
    pub binding: Option<&'a str>,
}

/// A completed sign-in: the session, and where to go.
pub struct Completed {
    pub login: LoginOutcome,
    pub next: String,
}

/// Completes a sign-in: the flow is taken once (a replayed callback finds nothing), must have been
/// started by this browser, the code is redeemed and the ID token verified; then the account is
/// found, linked or created and a session opened.
pub async fn complete(
    state: &AppState,
    oidc: &OidcSignIn,
    callback: Callback<'_>,
) -> Result<Completed, ApiError> {
    let outcome = complete_inner(state, oidc, callback).await;
    let label = match &outcome {
        Ok(_) => "success",
        Err(ApiError::Unavailable(_)) => "unavailable",
        Err(ApiError::Internal(_)) => "error",
        Err(_) => "refused",
    };
    metrics::counter!("kbsync_oidc_sign_ins_total", "outcome" => label).increment(1);
    outcome
}

async fn complete_inner(
    state: &AppState,
    oidc: &OidcSignIn,
    callback: Callback<'_>,
) -> Result<Completed, ApiError> {
    let now = state.clock.now();
    let flow = SignInFlow {
        state: callback.state.to_owned(),
        binding: callback.binding.unwrap_or_default().to_owned(),
    };
    let record = match state.store.take_sign_in_flow(&flow.state_hash(), now).await {
        Ok(record) => record,
        Err(StoreError::NotFound) => {
            return Err(ApiError::BadRequest {
                message: "This sign-in has expired or was already used. Start again.".to_owned(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if callback.binding.is_none() || !flow.binding_matches(&record.binding_hash) {
        return Err(ApiError::BadRequest {
            message: "This sign-in was started in another browser. Start again here.".to_owned(),
        });
    }
    if let Some(error) = callback.error {
        let error = sanitize(error);
        tracing::info!(oidc.error = %error, "the provider refused a sign-in");
        let description = callback.error_description.map(sanitize).unwrap_or_default();
        return Err(ApiError::Forbidden(if error == "access_denied" {
            "The sign-in was cancelled or refused at the provider.".to_owned()
        } else {
            format!("The provider refused the sign-in ({error}). {description}")
                .trim_end()
                .to_owned()
        }));
    }
    let code = callback
        .code
        .filter(|c| !c.is_empty())
        .ok_or(ApiError::BadRequest {
            message: "The provider sent no authorization code.".to_owned(),
        })?;
    let identity = oidc.client.complete(&flow, code).await.map_err(provider_error)?;
    let user = account_for(state, oidc, &identity).await?;
    let token = state.random.token_hex(32);
    state
        .store
        .create_session(
            &token_hash(&token),
            user.id,
            now,
            now + state.settings.session_ttl,
        )
        .await?;
    Ok(Completed {
        login: LoginOutcome { token, user },
        next: record.next_path,
    })
}

/// The account `identity` signs in to. In order: the account already linked to the identity (its
/// email and name refreshed); else the account with the identity's trusted email, linked now (a
/// password account stays usable with its password); else a new account. Emails are taken only
/// when trusted ([`VerifiedIdentity::trusted_email`]), since sharing is matched by them.
async fn account_for(
    state: &AppState,
    oidc: &OidcSignIn,
    identity: &VerifiedIdentity,
) -> Result<User, ApiError> {
    let email = identity.trusted_email().map(str::to_owned).ok_or_else(|| {
        ApiError::Forbidden(
            "The provider did not give a verified email address for this account, so kbsync cannot tell \
             who it is. Ask an administrator."
                .to_owned(),
        )
    })?;
    if !domain_allowed(&oidc.allowed_domains, &email) {
        return Err(ApiError::Forbidden(format!(
            "Accounts of {} may not sign in to kbsync.",
            email.rsplit('@').next().unwrap_or_default()
        )));
    }
    let now = state.clock.now();
    let store = &state.store;
    let name = identity.name.as_deref();
    // Two first sign-ins of one person may race: each step that loses a race looks again.
    let mut user = None;
    for _ in 0..3 {
        match store.user_for_identity(&identity.issuer, &identity.subject).await {
            Ok(_) => {
                user = Some(
                    match store
                        .record_identity_sign_in(&identity.issuer, &identity.subject, &email, name, now)
                        .await
                    {
                        Ok(user) => user,
                        // Another account holds the new address: keep the old one.
                        Err(StoreError::Conflict(_)) => {
                            let linked = store
                                .user_for_identity(&identity.issuer, &identity.subject)
                                .await?;
                            tracing::warn!(user = %linked.id, "an account's new email from its provider belongs to another account; kept the old one");
                            let old = linked.email.clone();
                            store
                                .record_identity_sign_in(&identity.issuer, &identity.subject, &old, name, now)
                                .await?
                        }
                        Err(e) => return Err(e.into()),
                    },
                );
                break;
            }
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let existing = match store.get_credentials_by_email(&email).await {
            Ok(c) => Some(c.user),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let account = match existing {
            // Service accounts belong to programs: no person signs in to one.
            Some(account) if account.is_service() => {
                return Err(ApiError::Forbidden(
                    "This address belongs to a service account, which cannot sign in.".to_owned(),
                ));
            }
            Some(account) => account,
            None => {
                let role = role_from_groups(oidc, identity).unwrap_or(Role::User);
                let new = NewUser {
                    email: email.clone(),
                    password_hash: None,
                    role,
                    display_name: name.map(str::to_owned),
                };
                match store.create_user(state.random.uuid(), new, now).await {
                    Ok(created) => {
                        tracing::info!(user = %created.id, "created an account at its first sign-in");
                        created
                    }
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        match store
            .link_identity(&identity.issuer, &identity.subject, account.id, now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut user =
        user.ok_or_else(|| ApiError::internal("sign-in", "the account kept changing under the sign-in"))?;
    if user.disabled {
        return Err(ApiError::Forbidden(
            "This account is disabled. Ask an administrator.".to_owned(),
        ));
    }
    if let Some(role) = role_from_groups(oidc, identity)
        && role != user.role
    {
        let change = AccountChange {
            role: Some(role),
            disabled: None,
        };
        match store.change_account(user.id, change, now).await {
            Ok(changed) => {
                tracing::info!(user = %user.id, role = role.as_str(), "the provider's groups changed an account's role");
                user = changed;
            }
            // The last enabled admin stays one until another admin exists.
            Err(StoreError::Conflict(reason)) => {
                tracing::warn!(user = %user.id, %reason, "kept an account's role that its groups would change");
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Entra's object id is what drives' sharing names the person by.
    if let (Some(oid), Some(_)) = (&identity.oid, &identity.tid) {
        store.add_user_principal(user.id, &format!("user:{oid}")).await?;
    }
    Ok(user)
}

/// The role the token's groups give, when admin groups are configured and the token lists them: the
/// provider's groups then decide, at every sign-in (a token without the list, e.g. Entra's overage
/// claim for people in very many groups, leaves the role as it is).
fn role_from_groups(oidc: &OidcSignIn, identity: &VerifiedIdentity) -> Option<Role> {
    if oidc.admin_groups.is_empty() {
        return None;
    }
    let groups = identity.groups.as_ref()?;
    let admin = groups
        .iter()
        .any(|g| oidc.admin_groups.iter().any(|a| a.eq_ignore_ascii_case(g)));
    Some(if admin { Role::Admin } else { Role::User })
}

fn domain_allowed(allowed: &[String], email: &str) -> bool {
    let domain = email.rsplit('@').next().unwrap_or_default().to_lowercase();
    allowed.is_empty() || allowed.contains(&domain)
}

fn provider_error(e: OidcError) -> ApiError {
    match e {
        OidcError::Unavailable(m) => {
            tracing::warn!(error = %m, "the OpenID provider could not be reached");
            ApiError::Unavailable(format!("The sign-in provider could not be reached: {m}"))
        }
        OidcError::Misconfigured(m) => {
            tracing::error!(error = %m, "the OpenID provider does not fit kbsync's configuration");
            ApiError::Internal(format!("OpenID provider: {m}"))
        }
        OidcError::Refused(m) => ApiError::Forbidden(format!("The provider refused the sign-in: {m}")),
        OidcError::InvalidToken(m) => {
            tracing::warn!(error = %m, "an ID token failed verification");
            ApiError::Forbidden(format!("The sign-in could not be verified: {m}"))
        }
    }
}

/// A provider's error code as it may be shown: printable ASCII, bounded.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_domains_compare_the_address_domain_without_case() {
        let allowed = vec!["contoso.com".to_owned()];
        assert!(domain_allowed(&allowed, "Pat@Contoso.com"));
        assert!(!domain_allowed(&allowed, "pat@contoso.com.evil.example"));
        assert!(!domain_allowed(&allowed, "pat@sub.contoso.com"));
        assert!(domain_allowed(&[], "pat@anything.example"));
    }

    #[test]
    fn provider_error_codes_are_shown_only_as_printable_ascii() {
        assert_eq!(
            sanitize("invalid_request\r\nX-Injected: 1"),
            "invalid_requestX-Injected: 1"
        );
        assert_eq!(sanitize(&"x".repeat(500)).len(), 200);
    }
}
