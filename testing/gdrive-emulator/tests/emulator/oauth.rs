use crate::common::{Env, client, start, start_with};
use gdrive_emulator::{
    ConsentMode, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REDIRECT_URI, DRIVE_READONLY_SCOPE,
    Emulator, pkce_s256,
};
use serde_json::Value;
use std::collections::HashMap;

const VERIFIER: &str = "a-pkce-verifier-that-is-long-enough-0123456789abcdefghij";

fn authorize_url(env: &Env, extra: &[(&str, &str)]) -> String {
    let challenge = pkce_s256(VERIFIER);
    let mut params = vec![
        ("client_id", DEFAULT_CLIENT_ID),
        ("redirect_uri", DEFAULT_REDIRECT_URI),
        ("response_type", "code"),
        ("scope", DRIVE_READONLY_SCOPE),
        ("state", "st-123"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{}?{q}", env.emu.authorize_url())
}

/// Follows the authorize redirect and returns its query parameters.
async fn authorize(env: &Env, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let r = client().get(authorize_url(env, extra)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302, "authorize redirects");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(DEFAULT_REDIRECT_URI), "{loc}");
    url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn token(env: &Env, form: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .post(env.emu.token_url())
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn exchange(env: &Env, code: &str, verifier: &str) -> (u16, Value) {
    token(
        env,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", DEFAULT_REDIRECT_URI),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("code_verifier", verifier),
        ],
    )
    .await
}

#[tokio::test]
async fn offline_code_flow_with_pkce_gives_a_refresh_token_only_on_first_consent_or_prompt_consent() {
    let env = start().await;
    let q = authorize(&env, &[("access_type", "offline")]).await;
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["scope"], DRIVE_READONLY_SCOPE);
    let (status, body) = exchange(&env, &q["code"], VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], DRIVE_READONLY_SCOPE);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("1//"));
    let (s, about) = env
        .json_as(body["access_token"].as_str().unwrap(), "about?fields=user")
        .await;
    assert_eq!(s, 200);
    assert_eq!(about["user"]["emailAddress"], "alex.kim@example.com");

    let again = authorize(&env, &[("access_type", "offline")]).await;
    let (_, body) = exchange(&env, &again["code"], VERIFIER).await;
    assert!(body.get("access_token").is_some());
    assert!(
        body.get("refresh_token").is_none(),
        "no second refresh token without prompt=consent"
    );

    let forced = authorize(&env, &[("access_type", "offline"), ("prompt", "consent")]).await;
    let (_, body) = exchange(&env, &forced["code"], VERIFIER).await;
    assert!(
        body["refresh_token"].is_string(),
        "prompt=consent issues a new one"
    );

    let online = authorize(&env, &[]).await;
    let (_, body) = exchange(&env, &online["code"], VERIFIER).await;
    assert!(
        body.get("refresh_token").is_none(),
        "online access has no refresh token"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn the_refresh_grant_answers_without_a_refresh_token_and_accepts_http_basic_client_auth() {
    let env = start().await;
    let q = authorize(&env, &[("access_type", "offline")]).await;
    let (_, body) = exchange(&env, &q["code"], VERIFIER).await;
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let r = client()
        .post(env.emu.token_url())
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["expires_in"], 3599);
    assert!(
        body.get("refresh_token").is_none(),
        "Google does not rotate refresh tokens"
    );
    let (s, _) = env
        .json_as(body["access_token"].as_str().unwrap(), "about?fields=user")
        .await;
    assert_eq!(s, 200);
    env.shutdown().await;
}

#[tokio::test]
async fn bad_codes_and_verifiers_get_invalid_grant_with_googles_descriptions() {
    let env = start().await;
    let q = authorize(&env, &[("access_type", "offline")]).await;
    let (s, body) = exchange(
        &env,
        &q["code"],
        "a-wrong-verifier-that-is-long-enough-000000000000000000",
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(body["error_description"], "Invalid code verifier.");
    let (s, body) = exchange(&env, "4/0Anot-a-code", VERIFIER).await;
    assert_eq!(s, 400);
    assert_eq!(body["error_description"], "Malformed auth code.");
    let (s, _) = exchange(&env, &q["code"], VERIFIER).await;
    assert_eq!(s, 200, "a failed verifier check does not burn the code");
    let (s, body) = exchange(&env, &q["code"], VERIFIER).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "codes are single-use"
    );

    let expiring = authorize(&env, &[]).await;
    env.ctl.advance_clock(601);
    let (s, body) = exchange(&env, &expiring["code"], VERIFIER).await;
    assert_eq!(s, 400);
    assert_eq!(body["error_description"], "Token has been expired or revoked.");
    env.shutdown().await;
}

#[tokio::test]
async fn client_authentication_errors_are_invalid_request_invalid_client_and_unauthorized_client() {
    let env = start().await;
    let (s, body) = token(&env, &[("grant_type", "refresh_token"), ("refresh_token", "x")]).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")));
    assert_eq!(
        body["error_description"],
        "Could not determine client ID from request."
    );
    let (s, body) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_client")));

    // A refresh token presented by another registered client.
    env.ctl.register_client(gdrive_emulator::ClientRegistration {
        client_id: "other.apps.googleusercontent.com".into(),
        client_secret: "other-secret".into(),
        redirect_uris: vec![DEFAULT_REDIRECT_URI.into()],
    });
    let minted = env
        .ctl
        .mint_tokens(&env.ctl.default_user_id(), DRIVE_READONLY_SCOPE)
        .unwrap();
    let rt = minted.refresh_token.unwrap();
    let (s, body) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("client_id", "other.apps.googleusercontent.com"),
            ("client_secret", "other-secret"),
        ],
    )
    .await;
    let _ = minted.access_token;
    assert_eq!(
        (s, body["error"].as_str()),
        (401, Some("unauthorized_client")),
        "{body}"
    );
    let (s, body) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "1//0unknown"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(body["error_description"], "Token has been expired or revoked.");
    env.shutdown().await;
}

#[tokio::test]
async fn a_redirect_uri_mismatch_shows_an_error_page_instead_of_redirecting() {
    let env = start().await;
    let url = authorize_url(&env, &[]).replace(
        &url::form_urlencoded::byte_serialize(DEFAULT_REDIRECT_URI.as_bytes()).collect::<String>(),
        "http%3A%2F%2Fevil.example%2Fcb",
    );
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("redirect_uri_mismatch"));
    env.shutdown().await;
}

#[tokio::test]
async fn an_unknown_scope_such_as_offline_access_shows_invalid_scope_instead_of_redirecting() {
    let env = start().await;
    let with_scope = |scope: &str| {
        authorize_url(&env, &[]).replace(
            &url::form_urlencoded::byte_serialize(DRIVE_READONLY_SCOPE.as_bytes()).collect::<String>(),
            &url::form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>(),
        )
    };
    let r = client()
        .get(with_scope(&format!("{DRIVE_READONLY_SCOPE} offline_access")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.headers().get("location").is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("invalid_scope"), "{page}");
    assert!(page.contains("invalid=[offline_access]"), "{page}");
    // The OpenID Connect scopes Google knows are accepted next to Drive's.
    let r = client()
        .get(with_scope(&format!("openid email {DRIVE_READONLY_SCOPE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302, "{}", r.text().await.unwrap());
    env.shutdown().await;
}

#[tokio::test]
async fn a_denied_consent_redirects_with_access_denied_and_the_state() {
    let env = start().await;
    env.ctl.set_consent(ConsentMode::Deny);
    let q = authorize(&env, &[]).await;
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-123");
    assert!(!q.contains_key("code"));
    env.shutdown().await;
}

#[tokio::test]
async fn without_auto_consent_a_consent_page_posts_the_decision() {
    let env = start_with(Emulator::builder().seed(3)).await;
    let r = client().get(authorize_url(&env, &[])).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("value=\"allow\"") && page.contains("st-123"));
    let challenge = pkce_s256(VERIFIER);
    let r = client()
        .post(env.emu.authorize_url())
        .form(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", DEFAULT_REDIRECT_URI),
            ("response_type", "code"),
            ("scope", DRIVE_READONLY_SCOPE),
            ("state", "st-123"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.contains("code=4%2F0A") && loc.contains("state=st-123"),
        "{loc}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn revoking_a_refresh_token_kills_its_access_tokens_and_the_grant() {
    let env = start().await;
    let minted = env
        .ctl
        .mint_tokens(&env.ctl.default_user_id(), DRIVE_READONLY_SCOPE)
        .unwrap();
    let rt = minted.refresh_token.clone().unwrap();
    let r = client()
        .post(format!("{}?token={}", env.emu.revoke_url(), rt))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, body) = env.json_as(&minted.access_token, "about?fields=user").await;
    assert_eq!(s, 401);
    assert_eq!(body["error"]["errors"][0]["reason"], "authError");
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    let (s, body) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(
        (s, body["error_description"].as_str()),
        (400, Some("Token has been expired or revoked."))
    );
    let r = client()
        .post(format!("{}?token={}", env.emu.revoke_url(), rt))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        400,
        "a revoked token cannot be revoked again"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn access_tokens_expire_after_an_hour_and_user_revocation_invalidates_them() {
    let env = start().await;
    let (s, _) = env.json("about?fields=user").await;
    assert_eq!(s, 200);
    env.ctl.advance_clock(3600);
    let (s, body) = env.json("about?fields=user").await;
    assert_eq!(s, 401);
    assert_eq!(body["error"]["message"], "Invalid Credentials");

    let fresh = env
        .ctl
        .mint_tokens(&env.ctl.default_user_id(), DRIVE_READONLY_SCOPE)
        .unwrap();
    assert_eq!(env.json_as(&fresh.access_token, "about?fields=user").await.0, 200);
    assert!(env.ctl.revoke_user_tokens(&env.ctl.default_user_id()) >= 2);
    assert_eq!(env.json_as(&fresh.access_token, "about?fields=user").await.0, 401);
    let r = env
        .http
        .get(format!("{}/about?fields=user", env.emu.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "no token at all");
    env.shutdown().await;
}
