//! The client credentials grant (app-only access): application permissions an administrator consented to,
//! certificates registered for a client, and client assertions signed with them.
//!
//! As the identity platform documents it:
//! - the `scope` of a client credentials request is one resource followed by `/.default`; anything else is
//!   `invalid_scope` AADSTS1002012 ("Client credential flows must have a scope value with /.default suffixed to
//!   the resource identifier"), an unknown resource `invalid_resource` AADSTS500011
//!   (learn.microsoft.com/entra/identity-platform/scenario-daemon-acquire-token);
//! - the client proves itself with its secret, or with `client_assertion_type=
//!   urn:ietf:params:oauth:grant-type:jwt-bearer` and a `client_assertion`: a JWT signed (RS256 or PS256) with
//!   the key of a certificate registered for the application, named by its `x5t#S256` (SHA-256) or `x5t`
//!   (SHA-1) thumbprint, with `aud` = the token endpoint, `iss` = `sub` = the client id, `jti`, `nbf`, `exp`
//!   (learn.microsoft.com/entra/identity-platform/certificate-credentials). Refusals are `invalid_client`
//!   (401): AADSTS700027 (signature, or a certificate not registered), AADSTS700024 (not within its valid
//!   time range), AADSTS700021 (issuer/subject is not the client), AADSTS700023 (audience), AADSTS50027
//!   (malformed);
//! - the answer has `token_type`, `expires_in`, `ext_expires_in` and `access_token`, never a refresh token;
//!   the token's `roles` are the application permissions consented for the client.

use crate::auth::{AadError, AccessRecord, TokenResponse, b64url};
use crate::store::{Store, StoreError};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The resource id of Microsoft Graph in a `scope` (`https://graph.microsoft.com/.default`).
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// Clock skew tolerated on an assertion's `nbf` and `exp`.
const ASSERTION_SKEW_SECS: i64 = 300;

/// A certificate registered for a client ("Certificates & secrets" in the portal).
#[derive(Debug, Clone)]
pub struct RegisteredCertificate {
    pub der: Vec<u8>,
    /// Base64url SHA-1 of the DER (`x5t`).
    pub x5t: String,
    /// Base64url SHA-256 of the DER (`x5t#S256`).
    pub x5t_s256: String,
}

/// How a client proved its identity at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientCredential {
    Secret,
    Certificate,
}

/// What an app-only token carries beyond an ordinary access record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppGrant {
    /// The application permissions (`roles` claim).
    pub roles: Vec<String>,
    pub credential: ClientCredential,
}

impl AppGrant {
    /// Whether the token holds one of `any` (case-insensitively, as permission names are compared).
    pub fn has_role(&self, any: &[&str]) -> bool {
        self.roles
            .iter()
            .any(|r| any.iter().any(|a| a.eq_ignore_ascii_case(r)))
    }
}

fn b64url_bytes(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Reads a PEM (or DER) certificate and computes its thumbprints.
pub fn parse_certificate(pem_or_der: &[u8]) -> Result<RegisteredCertificate, StoreError> {
    let der = match CertificateDer::from_pem_slice(pem_or_der) {
        Ok(c) => c.as_ref().to_vec(),
        Err(_) => pem_or_der.to_vec(),
    };
    webpki::EndEntityCert::try_from(&CertificateDer::from(der.as_slice()))
        .map_err(|e| StoreError::Invalid(format!("not an X.509 certificate: {e}")))?;
    Ok(RegisteredCertificate {
        x5t: b64url_bytes(&sha1::Sha1::digest(&der)),
        x5t_s256: b64url_bytes(&sha2::Sha256::digest(&der)),
        der,
    })
}

fn invalid_client(code: u32, message: impl Into<String>) -> AadError {
    AadError::new(401, "invalid_client", code, message)
}

fn malformed() -> AadError {
    invalid_client(50027, "JWT token is invalid or malformed.")
}

fn decode_part(part: &str) -> Result<serde_json::Value, AadError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| malformed())?;
    serde_json::from_slice(&bytes).map_err(|_| malformed())
}

impl Store {
    /// Registers a certificate for a client; returns its `x5t#S256` thumbprint.
    pub fn add_client_certificate(
        &mut self,
        client_id: &str,
        pem_or_der: &[u8],
    ) -> Result<String, StoreError> {
        let cert = parse_certificate(pem_or_der)?;
        let client = self
            .auth
            .clients
            .get_mut(client_id)
            .ok_or_else(|| StoreError::NotFound(format!("client {client_id}")))?;
        let thumbprint = cert.x5t_s256.clone();
        if !client.certificates.iter().any(|c| c.der == cert.der) {
            client.certificates.push(cert);
        }
        Ok(thumbprint)
    }

    /// An administrator consents to application permissions for a client (replacing earlier ones).
    pub fn set_app_roles(&mut self, client_id: &str, roles: &[String]) -> Result<(), StoreError> {
        let client = self
            .auth
            .clients
            .get_mut(client_id)
            .ok_or_else(|| StoreError::NotFound(format!("client {client_id}")))?;
        client.app_roles = roles.iter().cloned().collect();
        Ok(())
    }

    /// Checks a client assertion for `client_id`; `audiences` are the token endpoint URLs it may name.
    pub fn authenticate_assertion(
        &self,
        client_id: Option<&str>,
        assertion_type: Option<&str>,
        assertion: Option<&str>,
        audiences: &[String],
        now: DateTime<Utc>,
    ) -> Result<String, AadError> {
        if assertion_type != Some(JWT_BEARER_ASSERTION) {
            return Err(AadError::new(
                400,
                "invalid_request",
                50027,
                format!("The client_assertion_type must be '{JWT_BEARER_ASSERTION}'."),
            ));
        }
        let client_id = client_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AadError::missing("client_id"))?;
        let assertion = assertion
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AadError::missing("client_assertion"))?;
        let client = self.auth.clients.get(client_id).ok_or_else(|| {
            AadError::new(
                400,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'.",
                    self.tenant.display_name
                ),
            )
        })?;
        let mut parts = assertion.split('.');
        let (Some(h), Some(p), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let header = decode_part(h)?;
        let claims = decode_part(p)?;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| malformed())?;
        let alg: &dyn rustls_pki_types::SignatureVerificationAlgorithm =
            match header.get("alg").and_then(|a| a.as_str()) {
                Some("RS256") => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
                Some("PS256") => webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
                _ => return Err(malformed()),
            };
        let s256 = header.get("x5t#S256").and_then(|v| v.as_str());
        let s1 = header.get("x5t").and_then(|v| v.as_str());
        let cert = client
            .certificates
            .iter()
            .find(|c| s256 == Some(c.x5t_s256.as_str()) || s1 == Some(c.x5t.as_str()))
            .ok_or_else(|| {
                invalid_client(
                    700027,
                    format!(
                        "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{}']",
                        s256.or(s1).unwrap_or("")
                    ),
                )
            })?;
        let der = CertificateDer::from(cert.der.as_slice());
        let ee = webpki::EndEntityCert::try_from(&der).map_err(|_| malformed())?;
        let signed = format!("{h}.{p}");
        if ee.verify_signature(alg, signed.as_bytes(), &signature).is_err() {
            return Err(invalid_client(
                700027,
                "Client assertion contains an invalid signature.",
            ));
        }
        let claim = |k: &str| claims.get(k).and_then(|v| v.as_str());
        if claim("iss") != Some(client_id) || claim("sub") != Some(client_id) {
            return Err(invalid_client(
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            ));
        }
        if !claim("aud").is_some_and(|a| audiences.iter().any(|x| x.eq_ignore_ascii_case(a))) {
            return Err(invalid_client(
                700023,
                "Client assertion audience claim does not match Realm issuer.",
            ));
        }
        if claim("jti").is_none_or(str::is_empty) {
            return Err(malformed());
        }
        let time = |k: &str| claims.get(k).and_then(serde_json::Value::as_i64);
        let (Some(nbf), Some(exp)) = (time("nbf").or(time("iat")), time("exp")) else {
            return Err(malformed());
        };
        let t = now.timestamp();
        if nbf > t + ASSERTION_SKEW_SECS || exp <= t - ASSERTION_SKEW_SECS {
            return Err(invalid_client(
                700024,
                format!(
                    "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                    now.format("%Y-%m-%dT%H:%M:%SZ"),
                    DateTime::from_timestamp(nbf, 0)
                        .unwrap_or_default()
                        .format("%Y-%m-%dT%H:%M:%SZ"),
                    DateTime::from_timestamp(exp, 0)
                        .unwrap_or_default()
                        .format("%Y-%m-%dT%H:%M:%SZ"),
                ),
            ));
        }
        Ok(client_id.to_string())
    }

    /// `grant_type=client_credentials` for an authenticated client. `sharepoint_origin` is the SharePoint
    /// resource the emulator serves (its own base URL).
    pub fn client_credentials(
        &mut self,
        client_id: &str,
        scope: Option<&str>,
        credential: ClientCredential,
        sharepoint_origin: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenResponse, AadError> {
        let scope = scope
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AadError::missing("scope"))?;
        let resource = match scope.split_whitespace().collect::<Vec<_>>().as_slice() {
            [one] => one.strip_suffix("/.default"),
            _ => None,
        }
        .ok_or_else(|| {
            AadError::new(
                400,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            )
        })?;
        let resource = resource.trim_end_matches('/');
        let audience = if resource.eq_ignore_ascii_case(GRAPH_RESOURCE)
            || resource.eq_ignore_ascii_case(crate::auth::GRAPH_AUDIENCE)
        {
            crate::auth::GRAPH_AUDIENCE.to_string()
        } else if resource.eq_ignore_ascii_case(sharepoint_origin.trim_end_matches('/')) {
            sharepoint_origin.trim_end_matches('/').to_string()
        } else {
            return Err(AadError::new(
                400,
                "invalid_resource",
                500011,
                format!(
                    "The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                    self.tenant.display_name
                ),
            ));
        };
        let roles: Vec<String> = self
            .auth
            .clients
            .get(client_id)
            .map(|c| c.app_roles.iter().cloned().collect())
            .unwrap_or_default();
        let expires_in = 3599 + self.ids.below(1801) as i64;
        let exp = now + Duration::seconds(expires_in);
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "msgraph-emulator"});
        let aud = if audience == crate::auth::GRAPH_AUDIENCE {
            GRAPH_RESOURCE.to_string()
        } else {
            audience.clone()
        };
        let payload = serde_json::json!({
            "aud": aud,
            "iss": format!("https://sts.windows.net/{}/", self.tenant.id),
            "iat": now.timestamp(), "nbf": now.timestamp(), "exp": exp.timestamp(),
            "appid": client_id, "appidacr": if credential == ClientCredential::Certificate { "2" } else { "1" },
            "idtyp": "app", "oid": client_id, "sub": client_id, "tid": self.tenant.id,
            "roles": roles, "uti": self.ids.token(22), "ver": "1.0",
        });
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.ids.bytes::<64>());
        let token = format!("{}.{}.{sig}", b64url(&header), b64url(&payload));
        self.auth.access.insert(
            token.clone(),
            AccessRecord {
                user_id: client_id.to_string(),
                client_id: client_id.to_string(),
                scopes: Vec::new(),
                expires_at: exp,
                audience,
                app: Some(AppGrant { roles, credential }),
            },
        );
        Ok(TokenResponse {
            token_type: "Bearer".into(),
            scope: String::new(),
            expires_in,
            ext_expires_in: expires_in,
            access_token: token,
            refresh_token: None,
            id_token: None,
        })
    }

    /// Whether `caller` is an application calling app-only (not a user).
    pub fn is_app_caller(&self, caller: &str) -> bool {
        !self.users.contains_key(caller) && self.auth.clients.contains_key(caller)
    }
}

/// What a test puts into a client assertion ([`sign_client_assertion`]).
#[derive(Debug, Clone)]
pub struct AssertionSpec<'a> {
    pub client_id: &'a str,
    /// The token endpoint URL.
    pub audience: &'a str,
    pub not_before: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// The certificate whose thumbprint goes into the header (PEM).
    pub certificate_pem: &'a str,
    /// The key that signs (PEM, PKCS#8).
    pub key_pem: &'a str,
}

/// Signs an RS256 client assertion the way a client does, so that tests can also forge wrong ones (another
/// key, another audience, an expired one). Panics on a malformed key or certificate: it is a test helper.
#[expect(clippy::expect_used, reason = "a test helper given fixed, known-good keys")]
pub fn sign_client_assertion(spec: &AssertionSpec<'_>) -> String {
    use rustls_pki_types::PrivateKeyDer;
    let cert = parse_certificate(spec.certificate_pem.as_bytes()).expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(spec.key_pem.as_bytes()).expect("key");
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(key.secret_der()).expect("PKCS#8 RSA key");
    let header =
        serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t#S256": cert.x5t_s256, "x5t": cert.x5t});
    let claims = serde_json::json!({
        "aud": spec.audience, "iss": spec.client_id, "sub": spec.client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": spec.not_before.timestamp(), "iat": spec.not_before.timestamp(), "exp": spec.expires.timestamp(),
    });
    let signed = format!("{}.{}", b64url(&header), b64url(&claims));
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    format!("{signed}.{}", b64url_bytes(&sig))
}
