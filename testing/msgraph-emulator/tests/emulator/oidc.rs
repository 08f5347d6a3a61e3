//! OpenID Connect as Entra serves it: discovery per tenant, the JWKS with rotation, RS256 ID tokens that a
//! relying party verifies (here with `jsonwebtoken`), their claims, and the controls that make tokens wrong.

use crate::common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use msgraph_emulator::{
    ClientRegistration, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REDIRECT_URI,
    GroupMembershipClaims, IdTokenOverrides, NewUser, pkce_s256,
};
use serde_json::{Value, json};
use std::collections::HashMap;

const VERIFIER: &str = "an-oidc-code-verifier-long-enough-0123456789-abcdefghijklmnop";

async fn auto_env() -> Env {
    env_with(builder().auto_consent(true)).await
}

fn authorize_url_at(env: &Env, tenant: &str, scope: &str, extra: &[(&str, &str)]) -> String {
    let challenge = pkce_s256(VERIFIER);
    let mut params = vec![
        ("client_id", DEFAULT_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", DEFAULT_REDIRECT_URI),
        ("scope", scope),
        ("state", "st-oidc"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    params.extend_from_slice(extra);
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{}/{tenant}/oauth2/v2.0/authorize?{q}", env.emu.base_url())
}

fn query_of(location: &str) -> HashMap<String, String> {
    let q = location.split_once('?').unwrap().1;
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// Signs in through `tenant`'s authorize endpoint and redeems the code; returns the token response.
async fn sign_in_at(env: &Env, tenant: &str, scope: &str, extra: &[(&str, &str)]) -> Value {
    let r = env
        .http
        .get(authorize_url_at(env, tenant, scope, extra))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let q = query_of(r.headers()["location"].to_str().unwrap());
    let r = env
        .http
        .post(format!("{}/{tenant}/oauth2/v2.0/token", env.emu.base_url()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("code", q["code"].as_str()),
            ("redirect_uri", DEFAULT_REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn sign_in(env: &Env, scope: &str, extra: &[(&str, &str)]) -> String {
    let tenant = env.ctl.tenant_id();
    let body = sign_in_at(env, &tenant, scope, extra).await;
    body["id_token"].as_str().unwrap().to_string()
}

async fn get_json(env: &Env, url: &str) -> (u16, Value) {
    let r = env.http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn jwks(env: &Env) -> Value {
    let (status, body) = get_json(env, &env.emu.jwks_url()).await;
    assert_eq!(status, 200);
    body
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn header_kid(token: &str) -> String {
    decode_header(token).unwrap().kid.unwrap()
}

/// Verifies `token` as a relying party does: the key the header names, from `jwks`; RS256; the issuer and
/// the audience. The emulator's clock is frozen in the past, so expiry is checked by the tests themselves.
fn verify(token: &str, jwks: &Value, issuer: &str, audience: &str) -> jsonwebtoken::errors::Result<Value> {
    let header = decode_header(token)?;
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let kid = header.kid.expect("kid");
    let Some(jwk) = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid) else {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into());
    };
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "sig");
    let key = DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
    Ok(decode::<Value>(token, &key, &v)?.claims)
}

fn claims_unverified(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn discovery_names_the_tenant_issuer_and_its_endpoints_by_id_or_domain() {
    let env = auto_env().await;
    let base = env.emu.base_url().to_string();
    let tid = env.ctl.tenant_id();
    for segment in [tid.as_str(), "contoso.onmicrosoft.com"] {
        let (status, doc) = get_json(
            &env,
            &format!("{base}/{segment}/v2.0/.well-known/openid-configuration"),
        )
        .await;
        assert_eq!(status, 200, "{doc}");
        assert_eq!(doc["issuer"], format!("{base}/{tid}/v2.0"));
        assert_eq!(doc["issuer"], env.emu.issuer_url());
        assert_eq!(doc["authorization_endpoint"], env.emu.authorize_url());
        assert_eq!(doc["token_endpoint"], env.emu.token_url());
        assert_eq!(doc["jwks_uri"], env.emu.jwks_url());
        assert_eq!(
            doc["end_session_endpoint"],
            format!("{base}/{tid}/oauth2/v2.0/logout")
        );
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["RS256"]));
        assert_eq!(doc["subject_types_supported"], json!(["pairwise"]));
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        for scope in ["openid", "profile", "email", "offline_access"] {
            assert!(
                doc["scopes_supported"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(scope))
            );
        }
        for claim in [
            "sub",
            "iss",
            "aud",
            "nonce",
            "tid",
            "oid",
            "email",
            "preferred_username",
            "name",
        ] {
            assert!(
                doc["claims_supported"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(claim)),
                "{claim}"
            );
        }
        assert!(
            doc["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("client_secret_post"))
        );
    }
    env.shutdown().await;
}

#[tokio::test]
async fn multi_tenant_discovery_has_the_tenantid_template_and_unknown_tenants_are_refused() {
    let env = auto_env().await;
    let base = env.emu.base_url().to_string();
    for segment in ["common", "organizations"] {
        let (status, doc) = get_json(
            &env,
            &format!("{base}/{segment}/v2.0/.well-known/openid-configuration"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(doc["issuer"], format!("{base}/{{tenantid}}/v2.0"));
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{base}/{segment}/oauth2/v2.0/authorize")
        );
        assert_eq!(doc["jwks_uri"], format!("{base}/{segment}/discovery/v2.0/keys"));
        let (status, keys) = get_json(&env, doc["jwks_uri"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(keys["keys"][0]["issuer"], format!("{base}/{{tenantid}}/v2.0"));
    }
    let (status, body) = get_json(
        &env,
        &format!("{base}/fabrikam.onmicrosoft.com/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_tenant");
    assert_eq!(body["error_codes"], json!([90002]));
    let (status, _) = get_json(
        &env,
        &format!("{base}/fabrikam.onmicrosoft.com/discovery/v2.0/keys"),
    )
    .await;
    assert_eq!(status, 400);
    env.shutdown().await;
}

#[tokio::test]
async fn id_token_verifies_against_the_jwks_and_carries_entra_claims_and_the_nonce() {
    let env = auto_env().await;
    let token = sign_in(&env, "openid profile email", &[("nonce", "n-0S6_WzA2Mj")]).await;
    let jwks = jwks(&env).await;
    assert_eq!(kids(&jwks), vec![header_kid(&token)]);
    let c = verify(&token, &jwks, &env.emu.issuer_url(), DEFAULT_CLIENT_ID).unwrap();
    let user = env.ctl.default_user_id();
    assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(c["oid"], user);
    assert_eq!(c["tid"], env.ctl.tenant_id());
    assert_eq!(c["ver"], "2.0");
    assert_eq!(c["name"], "Adele Vance");
    assert_eq!(c["preferred_username"], "adele.vance@contoso.onmicrosoft.com");
    assert_eq!(c["email"], "adele.vance@contoso.onmicrosoft.com");
    let sub = c["sub"].as_str().unwrap();
    assert_ne!(sub, user, "sub is pairwise, not the object id");
    assert_eq!(sub.len(), 43);
    let now = env.ctl.now().timestamp();
    assert_eq!(c["iat"], now);
    assert_eq!(c["nbf"], now);
    assert_eq!(c["exp"], now + 3600);
    assert!(
        c.get("groups").is_none(),
        "no group claims unless the app asks for them"
    );
    // A changed claim breaks the signature.
    use base64::Engine as _;
    let mut changed = c.clone();
    changed["name"] = json!("Mallory");
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(changed.to_string());
    let err = verify(&parts.join("."), &jwks, &env.emu.issuer_url(), DEFAULT_CLIENT_ID).unwrap_err();
    assert_eq!(err.kind(), &jsonwebtoken::errors::ErrorKind::InvalidSignature);
    env.shutdown().await;
}

#[tokio::test]
async fn without_nonce_profile_or_email_scopes_those_claims_are_absent() {
    let env = auto_env().await;
    let token = sign_in(&env, "openid", &[]).await;
    let c = verify(
        &token,
        &jwks(&env).await,
        &env.emu.issuer_url(),
        DEFAULT_CLIENT_ID,
    )
    .unwrap();
    for claim in ["nonce", "email", "name", "preferred_username", "oid"] {
        assert!(c.get(claim).is_none(), "{claim} in {c}");
    }
    assert!(c["sub"].is_string() && c["tid"].is_string());
    // A user without a mail address gets no email claim even with the email scope.
    let u = env
        .ctl
        .create_user(NewUser {
            display_name: "No Mail".into(),
            ..NewUser::default()
        })
        .unwrap();
    let t = env
        .ctl
        .mint_id_token(&u.id, DEFAULT_CLIENT_ID, &["openid", "profile", "email"], None)
        .unwrap();
    let c = claims_unverified(&t);
    assert!(c.get("email").is_none(), "{c}");
    assert_eq!(c["preferred_username"], u.user_principal_name);
    env.shutdown().await;
}

#[tokio::test]
async fn sub_is_stable_per_user_and_client_and_differs_between_clients() {
    let env = auto_env().await;
    env.ctl.register_client(ClientRegistration {
        client_id: "second-app".into(),
        client_secret: "second-secret".into(),
        ..ClientRegistration::default()
    });
    let user = env.ctl.default_user_id();
    let mint = |client: &str| {
        claims_unverified(
            &env.ctl
                .mint_id_token(&user, client, &["openid", "profile"], None)
                .unwrap(),
        )
    };
    let (a1, a2, b) = (
        mint(DEFAULT_CLIENT_ID),
        mint(DEFAULT_CLIENT_ID),
        mint("second-app"),
    );
    assert_eq!(a1["sub"], a2["sub"]);
    assert_ne!(a1["sub"], b["sub"]);
    assert_eq!(a1["oid"], b["oid"]);
    assert_eq!(b["aud"], "second-app");
    env.shutdown().await;
}

#[tokio::test]
async fn rotation_lists_both_keys_then_only_the_new_one_and_a_retired_key_can_still_sign_on_request() {
    let env = auto_env().await;
    let issuer = env.emu.issuer_url();
    let first = env.ctl.current_signing_kid().unwrap();
    let before = jwks(&env).await;
    let second = env.ctl.rotate_signing_key().unwrap();
    assert_ne!(first, second);
    let overlap = jwks(&env).await;
    assert_eq!(
        kids(&overlap),
        vec![second.clone(), first.clone()],
        "newest first"
    );
    let token = sign_in(&env, "openid", &[]).await;
    assert_eq!(header_kid(&token), second);
    verify(&token, &overlap, &issuer, DEFAULT_CLIENT_ID).unwrap();
    assert!(
        verify(&token, &before, &issuer, DEFAULT_CLIENT_ID).is_err(),
        "a JWKS fetched before the rotation does not know the new key"
    );

    assert_eq!(env.ctl.retire_previous_signing_keys(), vec![first.clone()]);
    let after = jwks(&env).await;
    assert_eq!(kids(&after), vec![second.clone()]);
    env.ctl.set_next_id_token(IdTokenOverrides {
        kid: Some(first.clone()),
        ..IdTokenOverrides::default()
    });
    let old = sign_in(&env, "openid", &[]).await;
    assert_eq!(header_kid(&old), first);
    verify(&old, &before, &issuer, DEFAULT_CLIENT_ID).unwrap();
    assert!(verify(&old, &after, &issuer, DEFAULT_CLIENT_ID).is_err());
    assert!(
        env.ctl.retire_signing_key(&second).is_err(),
        "the signing key cannot be retired"
    );
    let infos = env.ctl.signing_keys();
    assert_eq!(infos.len(), 2);
    assert!(infos[1].current && infos[1].published && !infos[0].published);
    env.shutdown().await;
}

#[tokio::test]
async fn a_forged_signature_names_the_current_key_but_does_not_verify_and_is_one_shot() {
    let env = auto_env().await;
    let issuer = env.emu.issuer_url();
    env.ctl.set_next_id_token(IdTokenOverrides {
        forged_signature: true,
        ..IdTokenOverrides::default()
    });
    let forged = sign_in(&env, "openid", &[]).await;
    let jwks = jwks(&env).await;
    assert_eq!(header_kid(&forged), env.ctl.current_signing_kid().unwrap());
    let err = verify(&forged, &jwks, &issuer, DEFAULT_CLIENT_ID).unwrap_err();
    assert_eq!(err.kind(), &jsonwebtoken::errors::ErrorKind::InvalidSignature);
    let next = sign_in(&env, "openid", &[]).await;
    verify(&next, &jwks, &issuer, DEFAULT_CLIENT_ID).unwrap();
    env.shutdown().await;
}

#[tokio::test]
async fn overrides_set_over_http_change_aud_tenant_times_and_nonce_of_the_next_token() {
    let env = auto_env().await;
    let foreign = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let r = env
        .http
        .put(format!("{}/next-id-token", env.emu.control_url()))
        .json(&json!({
            "aud": "someone-else", "tid": foreign, "nonce": "replayed",
            "issued_at_offset_secs": -7200, "lifetime_secs": 600
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let token = sign_in(&env, "openid", &[("nonce", "fresh")]).await;
    let c = verify(
        &token,
        &jwks(&env).await,
        &format!("{}/{foreign}/v2.0", env.emu.base_url()),
        "someone-else",
    )
    .unwrap();
    let now = env.ctl.now().timestamp();
    assert_eq!(c["tid"], foreign);
    assert_eq!(c["nonce"], "replayed");
    assert_eq!(c["iat"], now - 7200);
    assert_eq!(c["exp"], now - 7200 + 600);
    let plain = claims_unverified(&sign_in(&env, "openid", &[("nonce", "fresh")]).await);
    assert_eq!(plain["nonce"], "fresh");
    assert_eq!(plain["aud"], DEFAULT_CLIENT_ID);
    env.shutdown().await;
}

#[tokio::test]
async fn groups_claim_lists_transitive_groups_only_when_the_app_asks_and_overflows_past_200() {
    let env = auto_env().await;
    let user = env.ctl.default_user_id();
    let (inner, outer) = (
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
    );
    env.ctl.add_group_member(inner, &user).unwrap();
    env.ctl.add_group_member_group(outer, inner).unwrap();
    env.ctl
        .add_group_member(
            "33333333-3333-4333-8333-333333333333",
            &env.ctl
                .create_user(NewUser {
                    display_name: "Other".into(),
                    ..NewUser::default()
                })
                .unwrap()
                .id,
        )
        .unwrap();
    let mint = || {
        claims_unverified(
            &env.ctl
                .mint_id_token(&user, DEFAULT_CLIENT_ID, &["openid"], None)
                .unwrap(),
        )
    };
    assert!(mint().get("groups").is_none());
    let r = env
        .http
        .put(format!(
            "{}/clients/{DEFAULT_CLIENT_ID}/group-membership-claims",
            env.emu.control_url()
        ))
        .json(&json!({"value": "SecurityGroup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(mint()["groups"], json!([inner, outer]));
    for i in 0..200 {
        env.ctl.add_group_member(&format!("group-{i:03}"), &user).unwrap();
    }
    let c = mint();
    assert!(c.get("groups").is_none());
    assert_eq!(c["_claim_names"], json!({"groups": "src1"}));
    assert!(
        c["_claim_sources"]["src1"]["endpoint"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1.0/users/{user}/getMemberObjects"))
    );
    env.ctl
        .set_group_membership_claims(DEFAULT_CLIENT_ID, GroupMembershipClaims::None)
        .unwrap();
    assert!(mint().get("_claim_names").is_none());
    env.shutdown().await;
}

#[tokio::test]
async fn a_user_of_another_tenant_signs_in_through_organizations_but_not_through_this_tenant() {
    let env = auto_env().await;
    let foreign = "8a2b6c1d-0e3f-4a5b-9c7d-1e2f3a4b5c6d";
    let u = env
        .ctl
        .create_user(NewUser {
            display_name: "Farah Guest".into(),
            mail: Some("farah@fabrikam.example".into()),
            tenant_id: Some(foreign.into()),
            ..NewUser::default()
        })
        .unwrap();
    let tid = env.ctl.tenant_id();
    let r = env
        .http
        .get(authorize_url_at(
            &env,
            &tid,
            "openid",
            &[("login_hint", "farah@fabrikam.example")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("AADSTS50020"));

    let body = sign_in_at(
        &env,
        "organizations",
        "openid profile",
        &[("login_hint", "farah@fabrikam.example")],
    )
    .await;
    let token = body["id_token"].as_str().unwrap();
    let base = env.emu.base_url();
    let (status, doc) = get_json(
        &env,
        &format!("{base}/{foreign}/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], format!("{base}/{foreign}/v2.0"));
    let c = verify(
        token,
        &jwks(&env).await,
        &format!("{base}/{foreign}/v2.0"),
        DEFAULT_CLIENT_ID,
    )
    .unwrap();
    assert_eq!(c["tid"], foreign);
    assert_eq!(c["oid"], u.id);
    // The tenant's own users still sign in through /organizations with their tenant's issuer.
    let own = sign_in_at(&env, "organizations", "openid", &[]).await;
    assert_eq!(claims_unverified(own["id_token"].as_str().unwrap())["tid"], tid);
    env.shutdown().await;
}

#[tokio::test]
async fn logout_redirects_to_the_post_logout_uri_with_state_or_shows_a_page() {
    let env = auto_env().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(env.emu.logout_url())
        .query(&[
            ("post_logout_redirect_uri", "http://127.0.0.1:9/signed-out"),
            ("state", "s1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://127.0.0.1:9/signed-out?state=s1");
    let r = http.get(env.emu.logout_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You signed out of your account"));
    env.shutdown().await;
}

#[tokio::test]
async fn response_types_other_than_code_are_refused_with_the_documented_errors() {
    let env = auto_env().await;
    let tid = env.ctl.tenant_id();
    for (rt, error, code) in [
        ("id_token", "unsupported_response_type", "AADSTS700054"),
        ("bogus", "invalid_request", "AADSTS9002313"),
    ] {
        let r = env
            .http
            .get(authorize_url_at(&env, &tid, "openid", &[("response_type", rt)]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let q = query_of(r.headers()["location"].to_str().unwrap());
        assert_eq!(q["error"], error);
        assert!(
            q["error_description"].starts_with(code),
            "{}",
            q["error_description"]
        );
        assert_eq!(q["state"], "st-oidc");
    }
    env.shutdown().await;
}

#[tokio::test]
async fn signing_keys_rotate_and_retire_over_the_control_api() {
    let env = auto_env().await;
    let c = env.emu.control_url();
    let first = env.ctl.current_signing_kid().unwrap();
    let r = env
        .http
        .post(format!("{c}/signing-keys/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let second = r.json::<Value>().await.unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, keys) = get_json(&env, &format!("{c}/signing-keys")).await;
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert_eq!(keys[1]["kid"], second);
    assert_eq!(keys[1]["current"], true);
    let r = env
        .http
        .post(format!("{c}/signing-keys/{first}/retire"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(kids(&jwks(&env).await), vec![second.clone()]);
    let r = env
        .http
        .post(format!("{c}/signing-keys/{second}/retire"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A reset brings the first key back.
    env.ctl.reset();
    assert_eq!(kids(&jwks(&env).await), vec![first]);
    env.shutdown().await;
}

#[tokio::test]
async fn the_kits_sign_in_picks_the_user_by_login_hint_through_the_consent_form() {
    let env = env().await;
    let u = env
        .ctl
        .create_user(NewUser {
            display_name: "Bea Second".into(),
            mail: Some("bea@contoso.example".into()),
            ..NewUser::default()
        })
        .unwrap();
    let tid = env.ctl.tenant_id();
    let location = kbsync_kit::emulator::sign_in(
        &authorize_url_at(&env, &tid, "openid profile", &[("nonce", "n-kit")]),
        "bea@contoso.example",
    )
    .await;
    assert!(location.starts_with(DEFAULT_REDIRECT_URI), "{location}");
    let q = query_of(&location);
    assert_eq!(q["state"], "st-oidc");
    let r = env
        .http
        .post(env.emu.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("code", q["code"].as_str()),
            ("redirect_uri", DEFAULT_REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let c = claims_unverified(body["id_token"].as_str().unwrap());
    assert_eq!(c["oid"], u.id);
    assert_eq!(c["nonce"], "n-kit");
    env.shutdown().await;
}
