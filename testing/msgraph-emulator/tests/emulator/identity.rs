use crate::common::*;
use msgraph_emulator::{
    ClientRegistration, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REDIRECT_URI, pkce_s256,
};
use serde_json::Value;
use std::collections::HashMap;

const VERIFIER: &str = "a-very-long-code-verifier-with-enough-entropy-0123456789abcdef";

fn authorize_url(env: &Env, scope: &str, extra: &[(&str, &str)]) -> String {
    let challenge = pkce_s256(VERIFIER);
    let mut params = vec![
        ("client_id", DEFAULT_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", DEFAULT_REDIRECT_URI),
        ("scope", scope),
        ("state", "st-123"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    params.extend_from_slice(extra);
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{}?{q}", env.emu.authorize_url())
}

fn query_of(location: &str) -> HashMap<String, String> {
    let q = location.split_once('?').unwrap().1;
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

async fn code_for(env: &Env, scope: &str) -> String {
    let r = env.http.get(authorize_url(env, scope, &[])).send().await.unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["state"], "st-123");
    q["code"].clone()
}

async fn token(env: &Env, form: &[(&str, &str)]) -> (u16, Value) {
    let r = env
        .http
        .post(env.emu.token_url())
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn redeem(env: &Env, code: &str) -> (u16, Value) {
    token(
        env,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("code", code),
            ("redirect_uri", DEFAULT_REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn refresh(env: &Env, rt: &str) -> (u16, Value) {
    token(
        env,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("refresh_token", rt),
        ],
    )
    .await
}

async fn auto_env() -> Env {
    env_with(builder().auto_consent(true)).await
}

const SCOPES: &str = "offline_access openid Files.Read.All Sites.Read.All";

fn assert_aad_error(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let desc = body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    assert!(
        desc.contains("\r\nTrace ID: ")
            && desc.contains("\r\nCorrelation ID: ")
            && desc.contains("\r\nTimestamp: ")
    );
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(body[k].is_string(), "missing {k}");
    }
    assert!(
        body["error_uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("code={code}"))
    );
}

#[tokio::test]
async fn authorize_shows_a_consent_form_that_a_browser_can_submit() {
    let env = env().await;
    let r = env
        .http
        .get(authorize_url(&env, SCOPES, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("<form id=\"consent\" method=\"POST\""));
    assert!(html.contains("Files.Read.All"));
    // Submit the form as a browser would: every input plus the Accept button.
    let action_start = html.find("action=\"").unwrap() + 8;
    let action = &html[action_start..action_start + html[action_start..].find('"').unwrap()];
    let mut form: Vec<(String, String)> = Vec::new();
    for chunk in html.split("<input type=\"hidden\" ").skip(1) {
        let name = chunk.split("name=\"").nth(1).unwrap().split('"').next().unwrap();
        let value = chunk.split("value=\"").nth(1).unwrap().split('"').next().unwrap();
        form.push((
            name.to_string(),
            value
                .replace("&amp;", "&")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">"),
        ));
    }
    form.push(("login_user".into(), env.user.clone()));
    form.push(("consent".into(), "accept".into()));
    let r = env
        .http
        .post(format!("{}{action}", env.emu.base_url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["state"], "st-123");
    let (status, body) = redeem(&env, &q["code"]).await;
    assert_eq!(status, 200, "{body}");
    env.shutdown().await;
}

#[tokio::test]
async fn consent_denied_redirects_with_access_denied() {
    let env = env().await;
    let challenge = pkce_s256(VERIFIER);
    let form = [
        ("client_id", DEFAULT_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", DEFAULT_REDIRECT_URI),
        ("scope", SCOPES),
        ("state", "s1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("consent", "deny"),
    ];
    let r = env
        .http
        .post(env.emu.authorize_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].starts_with("AADSTS65004"));
    assert_eq!(q["state"], "s1");
    env.shutdown().await;
}

#[tokio::test]
async fn auto_consent_redirects_with_a_code_and_echoes_state() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    assert!(!code.is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn authorize_requires_pkce_s256() {
    let env = auto_env().await;
    let url = authorize_url(&env, SCOPES, &[("code_challenge_method", "plain")]);
    let r = env.http.get(url).send().await.unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "st-123");
    let url = authorize_url(&env, SCOPES, &[("code_challenge", "")]);
    let r = env.http.get(url).send().await.unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].starts_with("AADSTS9002325"));
    env.shutdown().await;
}

#[tokio::test]
async fn authorize_rejects_an_unregistered_redirect_uri_without_redirecting() {
    let env = auto_env().await;
    let r = env
        .http
        .get(authorize_url(
            &env,
            SCOPES,
            &[("redirect_uri", "https://evil.example/cb")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("AADSTS50011"));
    env.shutdown().await;
}

#[tokio::test]
async fn authorization_code_grant_returns_tokens_and_codes_are_single_use() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let (status, body) = redeem(&env, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let exp = body["expires_in"].as_i64().unwrap();
    assert!((3599..=5399).contains(&exp));
    assert_eq!(body["ext_expires_in"], body["expires_in"]);
    assert!(body["refresh_token"].is_string());
    assert!(body["id_token"].is_string());
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
    let (status, body) = redeem(&env, &code).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_grant", 54005);
    env.shutdown().await;
}

#[tokio::test]
async fn tokens_from_the_oauth_flow_work_on_graph() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let (_, body) = redeem(&env, &code).await;
    let at = body["access_token"].as_str().unwrap();
    let me: Value = env
        .http
        .get(env.url("/me"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], env.user);
    env.shutdown().await;
}

#[tokio::test]
async fn wrong_code_verifier_is_invalid_grant() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let (status, body) = token(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("code", &code),
            ("redirect_uri", DEFAULT_REDIRECT_URI),
            ("code_verifier", "not-the-verifier"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_grant", 501481);
    env.shutdown().await;
}

#[tokio::test]
async fn expired_authorization_code_is_invalid_grant_70008() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    env.ctl.advance_clock(chrono::Duration::minutes(11));
    let (status, body) = redeem(&env, &code).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_grant", 70008);
    env.shutdown().await;
}

#[tokio::test]
async fn bad_client_secret_is_401_invalid_client() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let base = [
        ("grant_type", "authorization_code"),
        ("client_id", DEFAULT_CLIENT_ID),
        ("code", code.as_str()),
        ("redirect_uri", DEFAULT_REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ];
    let mut wrong = base.to_vec();
    wrong.push(("client_secret", "nope"));
    let (status, body) = token(&env, &wrong).await;
    assert_eq!(status, 401);
    assert_aad_error(&body, "invalid_client", 7000215);
    let (status, body) = token(&env, &base).await;
    assert_eq!(status, 401);
    assert_aad_error(&body, "invalid_client", 7000218);
    env.ctl.expire_client_secret(DEFAULT_CLIENT_ID).unwrap();
    let mut right = base.to_vec();
    right.push(("client_secret", DEFAULT_CLIENT_SECRET));
    let (status, body) = token(&env, &right).await;
    assert_eq!(status, 401);
    assert_aad_error(&body, "invalid_client", 7000222);
    env.shutdown().await;
}

#[tokio::test]
async fn client_credentials_in_http_basic_auth_are_accepted() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let r = env
        .http
        .post(env.emu.token_url())
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", DEFAULT_REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.shutdown().await;
}

#[tokio::test]
async fn refresh_grant_rotates_the_refresh_token_and_the_old_one_still_works() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let (_, first) = redeem(&env, &code).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = refresh(&env, &rt1).await;
    assert_eq!(status, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    assert_ne!(first["access_token"], second["access_token"]);
    let (status, third) = refresh(&env, &rt2).await;
    assert_eq!(status, 200);
    assert_ne!(third["refresh_token"].as_str().unwrap(), rt2);
    let (status, _) = refresh(&env, &rt1).await;
    assert_eq!(status, 200, "the platform does not revoke a used refresh token");
    env.shutdown().await;
}

#[tokio::test]
async fn without_offline_access_no_refresh_token_is_issued() {
    let env = auto_env().await;
    let code = code_for(&env, "Files.Read.All").await;
    let (status, body) = redeem(&env, &code).await;
    assert_eq!(status, 200);
    assert!(body.get("refresh_token").is_none());
    assert!(body.get("id_token").is_none());
    env.shutdown().await;
}

#[tokio::test]
async fn revoked_refresh_token_is_invalid_grant_50173() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let (_, t) = redeem(&env, &code).await;
    assert_eq!(env.ctl.revoke_refresh_tokens(&env.user).unwrap(), 1);
    let (status, body) = refresh(&env, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_grant", 50173);
    env.shutdown().await;
}

#[tokio::test]
async fn expired_refresh_token_is_invalid_grant_70008() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let (_, t) = redeem(&env, &code).await;
    env.ctl.expire_refresh_tokens(&env.user).unwrap();
    let (status, body) = refresh(&env, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_grant", 70008);
    env.shutdown().await;
}

#[tokio::test]
async fn refresh_token_inactive_for_90_days_is_invalid_grant_700082() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let (_, t) = redeem(&env, &code).await;
    env.ctl.advance_clock(chrono::Duration::days(89));
    let (status, t2) = refresh(&env, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "used within 90 days");
    env.ctl.advance_clock(chrono::Duration::days(91));
    let (status, body) = refresh(&env, t2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_grant", 700082);
    env.shutdown().await;
}

#[tokio::test]
async fn spa_refresh_tokens_expire_24_hours_after_sign_in_700084() {
    let env = env_with(builder().auto_consent(true).client(ClientRegistration {
        client_id: DEFAULT_CLIENT_ID.into(),
        client_secret: DEFAULT_CLIENT_SECRET.into(),
        redirect_uris: vec![DEFAULT_REDIRECT_URI.into()],
        display_name: "spa".into(),
        spa: true,
    }))
    .await;
    let code = code_for(&env, SCOPES).await;
    let (_, t) = redeem(&env, &code).await;
    env.ctl.advance_clock(chrono::Duration::hours(25));
    let (status, body) = refresh(&env, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_grant", 700084);
    env.shutdown().await;
}

#[tokio::test]
async fn mfa_required_returns_interaction_required_50076() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let (_, t) = redeem(&env, &code).await;
    env.ctl.set_mfa_required(&env.user, true).unwrap();
    let (status, body) = refresh(&env, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "interaction_required", 50076);
    assert!(body["claims"].is_string());
    env.shutdown().await;
}

#[tokio::test]
async fn refresh_for_a_scope_never_consented_is_invalid_grant_65001() {
    let env = auto_env().await;
    let code = code_for(&env, SCOPES).await;
    let (_, t) = redeem(&env, &code).await;
    let (status, body) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("scope", "Mail.Read offline_access"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_grant", 65001);
    env.shutdown().await;
}

#[tokio::test]
async fn unknown_refresh_token_and_unsupported_grant_type_errors() {
    let env = auto_env().await;
    let (status, body) = refresh(&env, "1.Anot-a-token").await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_grant", 70000);
    let (status, body) = token(
        &env,
        &[
            ("grant_type", "password"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "unsupported_grant_type", 70003);
    env.shutdown().await;
}
