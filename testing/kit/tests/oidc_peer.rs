//! The OpenID provider peer starts, a test signs an account in through its login and consent pages with
//! plain HTTP, and the code it returns redeems for an ID token with the account's claims. Skipped (with a
//! message) when the peer is not installed, unless `CI` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use kbsync_kit::oidc_peer::{ACCOUNTS, OidcPeer};
use serde_json::Value;
use sha2::Digest as _;

const REDIRECT_URI: &str = "http://127.0.0.1:9/auth/oidc/callback";
const VERIFIER: &str = "peer-test-code-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn authorize_url(endpoint: &str, client_id: &str, extra: &[(&str, &str)]) -> String {
    let challenge = b64(&sha2::Sha256::digest(VERIFIER.as_bytes()));
    let mut url = reqwest::Url::parse(endpoint).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid email profile")
        .append_pair("state", "st-peer")
        .append_pair("nonce", "nonce-peer")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra);
    url.to_string()
}

fn query(url: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test]
async fn the_peer_signs_an_account_in_and_its_code_redeems_for_an_id_token_with_the_claims() {
    let Some(peer) = OidcPeer::start(REDIRECT_URI).await else {
        return;
    };
    let http = reqwest::Client::new();
    let discovery: Value = http
        .get(format!("{}/.well-known/openid-configuration", peer.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], peer.issuer());
    assert!(
        discovery["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&"RS256".into())
    );

    let endpoint = discovery["authorization_endpoint"].as_str().unwrap();
    let callback = peer
        .sign_in(&authorize_url(endpoint, peer.client_id(), &[]), ACCOUNTS[0])
        .await;
    assert!(callback.starts_with(REDIRECT_URI), "{callback}");
    let q = query(&callback);
    assert_eq!(q["state"], "st-peer");
    assert_eq!(q["iss"], peer.issuer());

    let token_request = |verifier: &str| {
        http.post(discovery["token_endpoint"].as_str().unwrap())
            .basic_auth(peer.client_id(), Some(peer.client_secret()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", q["code"].as_str()),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", verifier),
            ])
            .send()
    };
    let refused = token_request("a-wrong-verifier-that-is-long-enough-to-be-valid-0123456789")
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "PKCE is enforced");
    // A failed PKCE check consumes the code in oidc-provider, so sign in again.
    let callback = peer
        .sign_in(&authorize_url(endpoint, peer.client_id(), &[]), ACCOUNTS[0])
        .await;
    let q = query(&callback);
    let r = http
        .post(discovery["token_endpoint"].as_str().unwrap())
        .basic_auth(peer.client_id(), Some(peer.client_secret()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let id_token = body["id_token"].as_str().expect("an id_token");
    let mut parts = id_token.split('.');
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts.next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts.next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], peer.issuer());
    assert_eq!(claims["aud"], peer.client_id());
    assert_eq!(claims["sub"], "pat@example.org");
    assert_eq!(claims["email"], "pat@example.org");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Pat Example");
    assert_eq!(claims["nonce"], "nonce-peer");
}

#[tokio::test]
async fn a_missing_pkce_challenge_comes_back_to_the_client_as_an_error() {
    let Some(peer) = OidcPeer::start(REDIRECT_URI).await else {
        return;
    };
    let mut url = reqwest::Url::parse(&format!("{}/auth", peer.issuer())).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", peer.client_id())
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid")
        .append_pair("state", "st-nopkce");
    let callback = peer.sign_in(url.as_str(), ACCOUNTS[1]).await;
    let q = query(&callback);
    assert_eq!(q["error"], "invalid_request", "{callback}");
    assert_eq!(q["state"], "st-nopkce");
}
