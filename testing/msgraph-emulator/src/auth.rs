//! Identity platform state: registered clients, authorization codes, refresh and access tokens, and the rules
//! the token endpoint applies (with the AADSTS codes of the reference).

use crate::store::{Store, StoreError};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::collections::{BTreeMap, HashMap};

/// A confidential client registered with the emulator's identity platform.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientRegistration {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    /// Shown on the consent page.
    #[serde(default = "default_client_name")]
    pub display_name: String,
    /// A single-page-app registration: refresh tokens are capped at 24 hours (AADSTS700084).
    #[serde(default)]
    pub spa: bool,
}

fn default_client_name() -> String {
    "kbsync".into()
}

/// The client the binary registers when no `--client-id` is given.
pub const DEFAULT_CLIENT_ID: &str = "3c0a2d3e-5f7b-4b8e-9a1c-6d2f8e4b7a10";
/// The secret of [`DEFAULT_CLIENT_ID`].
pub const DEFAULT_CLIENT_SECRET: &str = "emulator-client-secret";
/// The redirect URI of [`DEFAULT_CLIENT_ID`].
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost:8080/api/v1/oauth/callback";

impl Default for ClientRegistration {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            redirect_uris: vec![DEFAULT_REDIRECT_URI.into()],
            display_name: default_client_name(),
            spa: false,
        }
    }
}

/// Which group memberships an app registration puts into the `groups` claim of its ID tokens: Entra's
/// `groupMembershipClaims` in the application manifest ("Token configuration → Add groups claim").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum GroupMembershipClaims {
    /// No `groups` claim (Entra's default).
    #[default]
    None,
    /// The ids of the security groups the user is a member of, transitively.
    SecurityGroup,
    /// Every group (the emulator's directory only has security groups, so the same as `SecurityGroup`).
    All,
}

/// Entra's limit on the `groups` claim of a JWT: beyond it the token carries an overage claim instead.
pub const GROUPS_CLAIM_LIMIT: usize = 200;

/// Changes to the next ID token the emulator issues (one shot), for tests of how a client validates ID tokens.
/// Each field left at its default keeps what the emulator would put there.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct IdTokenOverrides {
    /// Replaces `aud` (a token meant for another application).
    pub aud: Option<String>,
    /// Replaces `iss`.
    pub iss: Option<String>,
    /// Replaces `tid`, and `iss` with that tenant's issuer unless `iss` is given too (a token from another
    /// organisation's tenant).
    pub tid: Option<String>,
    /// Replaces `nonce`; an empty string leaves the claim out.
    pub nonce: Option<String>,
    /// Moves `iat`/`nbf`/`exp` by this many seconds (negative: issued in the past).
    pub issued_at_offset_secs: i64,
    /// Lifetime from `iat` to `exp` (default 3600 s, Entra's one hour).
    pub lifetime_secs: Option<i64>,
    /// Signs with this key (a retired one too, see `Control::retire_signing_key`) and names it in the header.
    pub kid: Option<String>,
    /// Signs with a key that was never published, while the header names the key that should have signed:
    /// the signature does not verify.
    pub forged_signature: bool,
}

#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub reg: ClientRegistration,
    /// Whether and which groups ID tokens for this client carry.
    pub group_membership_claims: GroupMembershipClaims,
    pub secret_expires_at: Option<DateTime<Utc>>,
    /// Certificates whose keys may sign client assertions (see [`crate::app_only`]).
    pub certificates: Vec<crate::app_only::RegisteredCertificate>,
    /// Application permissions an administrator consented to (the `roles` of app-only tokens).
    pub app_roles: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub code_challenge: String,
    /// The authorize request's `nonce`, echoed in the ID token.
    pub nonce: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub redeemed: bool,
}

/// An approved authorize request, for which the emulator issues a code.
#[derive(Debug, Clone)]
pub struct CodeRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub user_id: &'a str,
    pub scopes: Vec<String>,
    pub code_challenge: &'a str,
    pub nonce: Option<&'a str>,
}

/// The chain of refresh tokens a sign-in starts: when, and whether a SPA's (capped lifetime).
#[derive(Debug, Clone, Copy)]
struct Family {
    started: DateTime<Utc>,
    spa: bool,
}

#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub issued_at: DateTime<Utc>,
    /// When the sign-in that started this chain of rotated tokens happened (SPA cap).
    pub family_started: DateTime<Utc>,
    pub revoked: bool,
    pub expired: bool,
    pub spa: bool,
}

#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// The signed-in user; for an app-only token, the client id (the application is the caller).
    pub user_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    /// The resource the token is for: [`GRAPH_AUDIENCE`] or a SharePoint origin.
    pub audience: String,
    /// Set on tokens of the client credentials grant: the application permissions and how the client
    /// proved its identity.
    pub app: Option<crate::app_only::AppGrant>,
}

/// The audience of Microsoft Graph tokens (the `aud` claim real Graph tokens carry).
pub const GRAPH_AUDIENCE: &str = "00000003-0000-0000-c000-000000000000";

#[derive(Debug, Clone, Default)]
pub struct AuthState {
    pub clients: BTreeMap<String, RegisteredClient>,
    pub codes: HashMap<String, AuthCode>,
    pub refresh: HashMap<String, RefreshRecord>,
    pub access: HashMap<String, AccessRecord>,
    /// Applied to the next ID token, then cleared.
    pub next_id_token: Option<IdTokenOverrides>,
}

/// An identity platform error: the `error` value, the AADSTS number, the message, and the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub message: String,
    pub suberror: Option<&'static str>,
}

impl AadError {
    pub fn new(status: u16, error: &'static str, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            code,
            message: message.into(),
            suberror: None,
        }
    }
    fn grant(code: u32, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", code, message)
    }
    pub fn missing(param: &str) -> Self {
        Self::new(
            400,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }
}

/// Refresh tokens unused for this long expire (AADSTS700082).
pub const REFRESH_INACTIVITY_DAYS: i64 = 90;
/// SPA refresh tokens live at most this long from sign-in (AADSTS700084).
pub const SPA_REFRESH_HOURS: i64 = 24;
/// Authorization codes live this long.
pub const CODE_LIFETIME_MINUTES: i64 = 10;

/// What the token endpoint returns on success.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenResponse {
    pub token_type: String,
    /// Absent from client credentials answers.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub scope: String,
    pub expires_in: i64,
    pub ext_expires_in: i64,
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id_token: Option<String>,
}

/// Scopes that are about the sign-in itself rather than a resource; always consentable.
fn is_oidc_scope(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "openid" | "profile" | "email" | "offline_access"
    )
}

/// Strips the Graph resource prefix so `https://graph.microsoft.com/Files.Read.All` equals `Files.Read.All`.
fn normalise_scope(s: &str) -> String {
    s.strip_prefix("https://graph.microsoft.com/")
        .unwrap_or(s)
        .to_string()
}

pub fn parse_scopes(s: &str) -> Vec<String> {
    s.split_whitespace().map(normalise_scope).collect()
}

/// `BASE64URL(SHA256(verifier))`, the S256 PKCE transformation.
pub fn pkce_s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

pub(crate) fn b64url(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

impl Store {
    pub fn register_client(&mut self, reg: ClientRegistration) {
        self.auth.clients.insert(
            reg.client_id.clone(),
            RegisteredClient {
                reg,
                group_membership_claims: GroupMembershipClaims::None,
                secret_expires_at: None,
                certificates: Vec::new(),
                app_roles: std::collections::BTreeSet::new(),
            },
        );
    }

    /// Checks client id and secret the way the token endpoint does.
    pub fn authenticate_client(
        &self,
        client_id: Option<&str>,
        secret: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<&RegisteredClient, AadError> {
        let client_id = client_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AadError::missing("client_id"))?;
        let client = self.auth.clients.get(client_id).ok_or_else(|| {
            AadError::new(
                400,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                    self.tenant.display_name
                ),
            )
        })?;
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            return Err(AadError::new(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ));
        };
        if secret != client.reg.client_secret {
            return Err(AadError::new(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"
                    .to_string()
                    + client_id
                    + "'.",
            ));
        }
        if client.secret_expires_at.is_some_and(|t| t <= now) {
            return Err(AadError::new(
                401,
                "invalid_client",
                7000222,
                format!(
                    "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app."
                ),
            ));
        }
        Ok(client)
    }

    pub fn issue_code(&mut self, req: CodeRequest<'_>, now: DateTime<Utc>) -> String {
        let code = format!("1.A{}", self.ids.token(180));
        self.auth.codes.insert(
            code.clone(),
            AuthCode {
                client_id: req.client_id.to_string(),
                redirect_uri: req.redirect_uri.to_string(),
                user_id: req.user_id.to_string(),
                scopes: req.scopes,
                code_challenge: req.code_challenge.to_string(),
                nonce: req.nonce.map(str::to_string),
                expires_at: now + Duration::minutes(CODE_LIFETIME_MINUTES),
                redeemed: false,
            },
        );
        code
    }

    /// Mints an access token for a user directly (tests of Graph clients skip the OAuth dance with it). Its
    /// `tid` is the tenant the user signs in to ([`Self::user_tenant`]): a user of another organisation gets
    /// tokens of that organisation's tenant, as at Entra, where Graph serves every tenant at one URL.
    pub fn mint_access_token(
        &mut self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let user = self.user(user_id)?.clone();
        let tid = self.user_tenant(&user);
        let exp = now + lifetime;
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "msgraph-emulator"});
        let payload = serde_json::json!({
            "aud": "00000003-0000-0000-c000-000000000000",
            "iss": format!("https://sts.windows.net/{tid}/"),
            "iat": now.timestamp(), "nbf": now.timestamp(), "exp": exp.timestamp(),
            "appid": client_id, "name": user.display_name, "oid": user.id, "tid": tid,
            "scp": scopes.join(" "), "upn": user.upn, "uti": self.ids.token(22), "ver": "1.0",
        });
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.ids.bytes::<64>());
        let token = format!("{}.{}.{sig}", b64url(&header), b64url(&payload));
        self.auth.access.insert(
            token.clone(),
            AccessRecord {
                user_id: user_id.to_string(),
                client_id: client_id.to_string(),
                scopes: scopes.to_vec(),
                expires_at: exp,
                audience: GRAPH_AUDIENCE.to_string(),
                app: None,
            },
        );
        Ok(token)
    }

    /// The issuer of the ID tokens of a tenant: `{base}/{tenant-id}/v2.0`.
    pub fn issuer(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/v2.0", self.web_base)
    }

    /// The tenant a user signs in to: their home tenant when they belong to another organisation.
    pub fn user_tenant(&self, user: &crate::store::User) -> String {
        user.home_tenant.clone().unwrap_or_else(|| self.tenant.id.clone())
    }

    /// The ids of the groups `user_id` is a member of, directly or through nested groups, sorted.
    pub fn transitive_groups(&self, user_id: &str) -> Vec<String> {
        let a = &self.access;
        let mut ids: std::collections::BTreeSet<&String> = a.groups.keys().collect();
        ids.extend(a.group_members.keys());
        ids.extend(a.group_member_groups.keys());
        ids.into_iter()
            .filter(|g| self.in_group(g, user_id))
            .cloned()
            .collect()
    }

    /// A v2.0 ID token for `user_id` and `client_id`, signed RS256 with the current key, with the claims Entra
    /// puts there for `scopes` (`name`, `preferred_username` and `oid` need `profile`; `email` needs `email`
    /// and a mail address), the `nonce` of the authorize request, and `groups` when the client asks for group
    /// claims. A pending [`IdTokenOverrides`] is applied and consumed.
    pub fn id_token(
        &mut self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        nonce: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let user = self.user(user_id)?.clone();
        let o = self.auth.next_id_token.take().unwrap_or_default();
        let has = |scope: &str| scopes.iter().any(|s| s.eq_ignore_ascii_case(scope));
        let home_tid = self.user_tenant(&user);
        let tid = o.tid.clone().unwrap_or_else(|| home_tid.clone());
        let iss = o.iss.clone().unwrap_or_else(|| self.issuer(&tid));
        let iat = (now + Duration::seconds(o.issued_at_offset_secs)).timestamp();
        let exp = iat + o.lifetime_secs.unwrap_or(3600);
        let sub = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(
            format!("{home_tid}\n{}\n{client_id}", user.id).as_bytes(),
        ));
        let uti = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.ids.bytes::<64>()[..16]);
        let mut claims = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            claims.insert(k.to_string(), v);
        };
        put(
            "aud",
            o.aud.clone().unwrap_or_else(|| client_id.to_string()).into(),
        );
        put("iss", iss.into());
        put("iat", iat.into());
        put("nbf", iat.into());
        put("exp", exp.into());
        if has("email")
            && let Some(mail) = &user.mail
        {
            put("email", mail.clone().into());
        }
        if has("profile") {
            put("name", user.display_name.clone().into());
            put("oid", user.id.clone().into());
            put("preferred_username", user.upn.clone().into());
        }
        match o.nonce.as_deref().or(nonce) {
            Some("") | None => {}
            Some(n) => put("nonce", n.into()),
        }
        put("sub", sub.into());
        put("tid", tid.into());
        put("uti", uti.into());
        put("ver", "2.0".into());
        let group_claims = self
            .auth
            .clients
            .get(client_id)
            .map_or(GroupMembershipClaims::None, |c| c.group_membership_claims);
        if group_claims != GroupMembershipClaims::None {
            let groups = self.transitive_groups(user_id);
            if groups.len() > GROUPS_CLAIM_LIMIT {
                claims.insert("_claim_names".into(), serde_json::json!({"groups": "src1"}));
                claims.insert(
                    "_claim_sources".into(),
                    serde_json::json!({"src1": {"endpoint": format!(
                        "{}/v1.0/users/{}/getMemberObjects", self.web_base, user.id
                    )}}),
                );
            } else {
                claims.insert("groups".into(), groups.into());
            }
        }
        self.signing.sign(
            &serde_json::Value::Object(claims),
            o.kid.as_deref(),
            o.forged_signature,
        )
    }

    fn issue_tokens(
        &mut self,
        client_id: &str,
        user_id: &str,
        scopes: Vec<String>,
        family: Family,
        nonce: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<TokenResponse, AadError> {
        let Family {
            started: family_started,
            spa,
        } = family;
        let internal = |e: StoreError| AadError::new(400, "invalid_grant", 70000, e.to_string());
        let expires_in = 3599 + self.ids.below(1801) as i64;
        let resource_scopes: Vec<String> = scopes.iter().filter(|s| !is_oidc_scope(s)).cloned().collect();
        let access_token = self
            .mint_access_token(
                user_id,
                client_id,
                &resource_scopes,
                Duration::seconds(expires_in),
                now,
            )
            .map_err(internal)?;
        let offline = scopes.iter().any(|s| s.eq_ignore_ascii_case("offline_access"));
        let refresh_token = if offline {
            let t = format!("1.A{}", self.ids.token(300));
            self.auth.refresh.insert(
                t.clone(),
                RefreshRecord {
                    client_id: client_id.to_string(),
                    user_id: user_id.to_string(),
                    scopes: scopes.clone(),
                    issued_at: now,
                    family_started,
                    revoked: false,
                    expired: false,
                    spa,
                },
            );
            Some(t)
        } else {
            None
        };
        let id_token = if scopes.iter().any(|s| s.eq_ignore_ascii_case("openid")) {
            Some(
                self.id_token(user_id, client_id, &scopes, nonce, now)
                    .map_err(internal)?,
            )
        } else {
            None
        };
        let mut granted = resource_scopes;
        granted.extend(
            scopes
                .iter()
                .filter(|s| is_oidc_scope(s) && !s.eq_ignore_ascii_case("offline_access"))
                .cloned(),
        );
        Ok(TokenResponse {
            token_type: "Bearer".into(),
            scope: granted.join(" "),
            expires_in,
            ext_expires_in: expires_in,
            access_token,
            refresh_token,
            id_token,
        })
    }

    /// `grant_type=authorization_code`.
    pub fn redeem_code(
        &mut self,
        client_id: &str,
        code: Option<&str>,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<TokenResponse, AadError> {
        let code = code
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AadError::missing("code"))?;
        let record = self.auth.codes.get(code).cloned().ok_or_else(|| {
            AadError::grant(70000, "The provided value for the 'code' parameter is not valid.")
        })?;
        if record.redeemed {
            return Err(AadError::grant(
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            ));
        }
        if record.expires_at <= now {
            return Err(AadError::grant(
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            ));
        }
        if record.client_id != client_id {
            return Err(AadError::grant(
                70000,
                "The provided value for the 'code' parameter is not valid. The code was issued to a different client.",
            ));
        }
        let redirect_uri = redirect_uri
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AadError::missing("redirect_uri"))?;
        if redirect_uri != record.redirect_uri {
            return Err(AadError::grant(
                50011,
                format!(
                    "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI used in the authorization request."
                ),
            ));
        }
        let verifier = code_verifier
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AadError::missing("code_verifier"))?;
        if pkce_s256(verifier) != record.code_challenge {
            return Err(AadError::grant(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            ));
        }
        if let Some(c) = self.auth.codes.get_mut(code) {
            c.redeemed = true;
        }
        let spa = self.auth.clients.get(client_id).is_some_and(|c| c.reg.spa);
        self.issue_tokens(
            client_id,
            &record.user_id,
            record.scopes,
            Family { started: now, spa },
            record.nonce.as_deref(),
            now,
        )
    }

    /// `grant_type=refresh_token`: a new refresh token every time; the old one stays valid (rotation is the
    /// client's job), except when revoked or expired.
    pub fn redeem_refresh(
        &mut self,
        client_id: &str,
        refresh_token: Option<&str>,
        scope: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<TokenResponse, AadError> {
        let token = refresh_token
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AadError::missing("refresh_token"))?;
        let record = self.auth.refresh.get(token).cloned().ok_or_else(|| {
            AadError::grant(
                70000,
                "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid.",
            )
        })?;
        if record.client_id != client_id {
            return Err(AadError::grant(
                70000,
                "The refresh token was issued to a different client.",
            ));
        }
        if record.revoked {
            return Err(AadError::grant(
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. Have the user sign in again.",
            ));
        }
        if record.expired {
            return Err(AadError::grant(
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            ));
        }
        if record.spa && now - record.family_started > Duration::hours(SPA_REFRESH_HOURS) {
            return Err(AadError::grant(
                700084,
                "The refresh token was issued to a single page app (SPA), and therefore has a fixed, limited lifetime of 1.00:00:00, which cannot be extended. It is now expired and a new sign in request must be sent by the SPA to the sign in page.",
            ));
        }
        let idle = now - record.issued_at;
        if idle > Duration::days(REFRESH_INACTIVITY_DAYS) {
            return Err(AadError::grant(
                700082,
                format!(
                    "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for {}.00:00:00.",
                    record.issued_at.format("%Y-%m-%dT%H:%M:%S%.6f0Z"),
                    REFRESH_INACTIVITY_DAYS
                ),
            ));
        }
        let user = self
            .user(&record.user_id)
            .map_err(|e| AadError::grant(70000, e.to_string()))?;
        if user.mfa_required {
            let mut e = AadError::new(
                400,
                "interaction_required",
                50076,
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.",
            );
            e.suberror = Some("basic_action");
            return Err(e);
        }
        let scopes = match scope.filter(|s| !s.trim().is_empty()) {
            Some(s) => {
                let requested = parse_scopes(s);
                let granted: Vec<String> = record.scopes.iter().map(|s| s.to_ascii_lowercase()).collect();
                if let Some(missing) = requested
                    .iter()
                    .find(|s| !is_oidc_scope(s) && !granted.contains(&s.to_ascii_lowercase()))
                {
                    return Err(AadError::grant(
                        65001,
                        format!(
                            "The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource. Missing scope: {missing}."
                        ),
                    ));
                }
                let mut scopes = requested;
                if record
                    .scopes
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case("offline_access"))
                    && !scopes.iter().any(|s| s.eq_ignore_ascii_case("offline_access"))
                {
                    scopes.push("offline_access".into());
                }
                scopes
            }
            None => record.scopes.clone(),
        };
        self.issue_tokens(
            client_id,
            &record.user_id,
            scopes,
            Family {
                started: record.family_started,
                spa: record.spa,
            },
            None,
            now,
        )
    }

    /// Marks every refresh token of a user revoked (AADSTS50173 afterwards).
    pub fn revoke_refresh_tokens(&mut self, user_id: &str) -> Result<usize, StoreError> {
        self.user(user_id)?;
        let mut n = 0;
        for r in self.auth.refresh.values_mut().filter(|r| r.user_id == user_id) {
            r.revoked = true;
            n += 1;
        }
        Ok(n)
    }

    /// Marks every refresh token of a user expired (AADSTS70008 afterwards).
    pub fn expire_refresh_tokens(&mut self, user_id: &str) -> Result<usize, StoreError> {
        self.user(user_id)?;
        let mut n = 0;
        for r in self.auth.refresh.values_mut().filter(|r| r.user_id == user_id) {
            r.expired = true;
            n += 1;
        }
        Ok(n)
    }

    /// The user behind a bearer token, or why it is refused.
    pub fn check_access_token(&self, token: &str, now: DateTime<Utc>) -> Result<&AccessRecord, &'static str> {
        match self.auth.access.get(token) {
            None if !token.contains('.') => Err(
                "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE Compact Serialization Format.",
            ),
            None => Err("Access token validation failure. Invalid audience."),
            Some(r) if r.expires_at <= now => Err("Access token has expired or is not yet valid."),
            Some(r) => Ok(r),
        }
    }
}
