//! Sign-in with OpenID Connect against the emulated Entra: the whole browser flow (kbsync's login
//! route → the provider's authorize endpoint → kbsync's callback), the accounts it creates and links,
//! and every way an ID token or a callback can be wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{Db, OidcTest, Options, SIGN_IN_CLIENT, TestServer};
use kbsync_core::Clock;
use kbsync_store::DocumentAcl;
use msgraph_emulator::{GroupMembershipClaims, IdTokenOverrides, NewGroup, NewUser, UserInfo};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    a_first_sign_in_creates_the_account_and_opens_a_session_that_lands_on_next,
    a_second_sign_in_finds_the_same_account_and_refreshes_its_name_and_email,
    a_password_account_with_the_same_email_is_linked_not_duplicated,
    a_person_who_signs_in_finds_at_once_the_documents_shared_with_their_oid_or_email,
    id_tokens_that_fail_verification_sign_nobody_in,
    a_rotated_signing_key_is_fetched_and_a_retired_one_refused,
    a_callback_without_the_starting_browsers_cookie_is_refused_and_spends_the_state,
    a_replayed_callback_is_refused,
    a_refusal_at_the_provider_is_shown_on_the_sign_in_page,
    only_allowed_domains_sign_in_and_admin_groups_decide_roles_at_each_sign_in,
    a_service_accounts_address_signs_nobody_in,
    a_disabled_account_cannot_sign_in,
    with_password_sign_in_off_only_the_provider_signs_people_in,
    a_multi_tenant_set_up_trusts_only_verified_addresses_from_other_tenants,
    signing_out_offers_the_providers_sign_out,
    a_real_provider_signs_a_verified_account_in_and_finds_it_again,
    a_real_providers_unverified_email_signs_nobody_in,
    claims_only_at_the_real_providers_userinfo_endpoint_are_read_there,
);

async fn start(db: Db, oidc: OidcTest) -> Option<TestServer> {
    TestServer::start(
        db,
        Options {
            oidc: Some(oidc),
            ..Options::default()
        },
    )
    .await
}

fn provider(s: &TestServer) -> msgraph_emulator::Control {
    s.sign_in.as_ref().unwrap().control()
}

/// A person of the emulated tenant, with an email address.
fn person(s: &TestServer, name: &str, mail: Option<&str>) -> UserInfo {
    let upn = format!("{}@contoso.example", name.to_lowercase());
    provider(s)
        .create_user(NewUser {
            display_name: name.into(),
            mail: mail.map(str::to_owned),
            user_principal_name: Some(upn),
            ..NewUser::default()
        })
        .unwrap()
}

/// What a browser saw at the end of a sign-in.
struct Outcome {
    status: StatusCode,
    location: Option<String>,
    /// The session token the `kbsync_session` cookie was set to.
    session: Option<String>,
    page: String,
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

/// Starts a sign-in as a browser does: the provider's authorize URL and the binding cookie (`name=value`).
async fn begin(s: &TestServer, next: Option<&str>) -> (String, String) {
    let url = match next {
        Some(n) => format!("{}/auth/oidc/login?next={}", s.base, urlencoding(n)),
        None => format!("{}/auth/oidc/login", s.base),
    };
    let resp = browser().get(url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "{}",
        resp.text().await.unwrap()
    );
    let binding = set_cookie(resp.headers(), "kbsync_oidc").expect("a binding cookie");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    (location, format!("kbsync_oidc={binding}"))
}

fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The provider's answer for `upn` (consent is automatic): kbsync's callback URL.
async fn authorize(s: &TestServer, authorize_url: &str, upn: &str) -> String {
    let resp = browser()
        .get(format!("{authorize_url}&login_hint={}", urlencoding(upn)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND, "{}", resp.text().await.unwrap());
    let callback = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        callback.starts_with(&format!("{}/auth/oidc/callback?", s.base)),
        "{callback}"
    );
    callback
}

async fn callback(callback_url: &str, cookie: Option<&str>) -> Outcome {
    let mut req = browser().get(callback_url);
    if let Some(c) = cookie {
        req = req.header(reqwest::header::COOKIE, c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let session = set_cookie(resp.headers(), "kbsync_session");
    Outcome {
        status,
        location,
        session,
        page: resp.text().await.unwrap(),
    }
}

/// A sign-in of `upn` up to the provider's answer: kbsync's callback URL and the browser's binding cookie.
async fn at_provider(s: &TestServer, upn: &str) -> (String, String) {
    let (authorize_url, cookie) = begin(s, None).await;
    (authorize(s, &authorize_url, upn).await, cookie)
}

/// A whole sign-in of `upn` in one browser.
async fn sign_in(s: &TestServer, upn: &str) -> Outcome {
    let (back, cookie) = at_provider(s, upn).await;
    callback(&back, Some(&cookie)).await
}

/// A whole sign-in of `upn` whose ID token the provider changes by `overrides`.
async fn sign_in_with_next_token(s: &TestServer, upn: &str, overrides: IdTokenOverrides) -> Outcome {
    let (back, cookie) = at_provider(s, upn).await;
    provider(s).set_next_id_token(overrides);
    callback(&back, Some(&cookie)).await
}

/// Signs `upn` in and returns the session token, asserting success.
async fn signed_in(s: &TestServer, upn: &str) -> String {
    let outcome = sign_in(s, upn).await;
    assert_eq!(outcome.status, StatusCode::SEE_OTHER, "{}", outcome.page);
    assert_eq!(outcome.location.as_deref(), Some("/kb"));
    outcome.session.expect("a session cookie")
}

/// Asserts a sign-in was refused with `status`, the page saying `why`, and no session.
fn refused(outcome: &Outcome, status: StatusCode, why: &str) {
    assert_eq!(outcome.status, status, "{}", outcome.page);
    assert!(outcome.session.is_none(), "no session on a refusal");
    assert!(outcome.page.contains(why), "expected {why:?} in {}", outcome.page);
}

async fn a_first_sign_in_creates_the_account_and_opens_a_session_that_lands_on_next(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let pat = person(&s, "Pat", Some("pat@contoso.example"));
    let users_before = s.state.store.count_users().await.unwrap();

    // The sign-in page offers the provider by its name.
    let page = browser().get(format!("{}/login", s.base)).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("Sign in with Microsoft"), "{page}");
    assert!(page.contains("href=\"/auth/oidc/login\""), "{page}");

    let (authorize_url, cookie) = begin(&s, Some("/search?q=walrus")).await;
    // The authorize request is the code flow with PKCE S256, a state and a nonce, for kbsync's callback.
    let url = url::Url::parse(&authorize_url).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], SIGN_IN_CLIENT);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], format!("{}/auth/oidc/callback", s.base));
    assert_eq!(q["scope"], "openid email profile");
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43, "{q:?}");
    assert!(cookie.len() > "kbsync_oidc=".len() + 40);

    let back = authorize(&s, &authorize_url, &pat.user_principal_name).await;
    let outcome = callback(&back, Some(&cookie)).await;
    assert_eq!(outcome.status, StatusCode::SEE_OTHER, "{}", outcome.page);
    assert_eq!(outcome.location.as_deref(), Some("/search?q=walrus"));
    let token = outcome.session.expect("the session cookie");

    // The session opens the API like a password session, as the new account.
    let (status, me) = s.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "pat@contoso.example");
    assert_eq!(me["role"], "user");
    assert_eq!(s.state.store.count_users().await.unwrap(), users_before + 1);
    let user = s
        .state
        .store
        .get_user(me["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(user.display_name.as_deref(), Some("Pat"));
    let credentials = s
        .state
        .store
        .get_credentials_by_email("pat@contoso.example")
        .await
        .unwrap();
    assert_eq!(
        credentials.password_hash, None,
        "an OpenID account has no password"
    );
    // Its Entra object id is recorded as one of its principals.
    let principals = s.state.store.user_principals(user.id).await.unwrap();
    assert!(principals.contains(&format!("user:{}", pat.id)), "{principals:?}");
    // A password attempt on the password-less account fails like a wrong password.
    let (status, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "pat@contoso.example", "password": "kbsync-dummy-password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn a_second_sign_in_finds_the_same_account_and_refreshes_its_name_and_email(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let sam = person(&s, "Sam", Some("sam@contoso.example"));
    let first = signed_in(&s, &sam.user_principal_name).await;
    let (_, me) = s.get("/api/v1/me", Some(&first)).await;
    let count = s.state.store.count_users().await.unwrap();

    provider(&s)
        .update_user(
            &sam.id,
            msgraph_emulator::UserPatch {
                display_name: Some("Sam Smith".into()),
                mail: Some(Some("sam.smith@contoso.example".into())),
            },
        )
        .unwrap();
    let second = signed_in(&s, &sam.user_principal_name).await;
    assert_ne!(first, second, "each sign-in opens its own session");
    let (_, again) = s.get("/api/v1/me", Some(&second)).await;
    assert_eq!(again["id"], me["id"]);
    assert_eq!(again["email"], "sam.smith@contoso.example");
    assert_eq!(s.state.store.count_users().await.unwrap(), count);
    let user = s
        .state
        .store
        .get_user(me["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(user.display_name.as_deref(), Some("Sam Smith"));
    s.stop().await;
}

async fn a_password_account_with_the_same_email_is_linked_not_duplicated(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (id, _) = s.user(&admin, "Lee@Contoso.example").await;
    let lee = person(&s, "Lee", Some("lee@contoso.example"));
    let count = s.state.store.count_users().await.unwrap();

    let token = signed_in(&s, &lee.user_principal_name).await;
    let (_, me) = s.get("/api/v1/me", Some(&token)).await;
    assert_eq!(
        me["id"],
        id.as_str(),
        "the existing account, matched regardless of case"
    );
    assert_eq!(s.state.store.count_users().await.unwrap(), count);
    // Its password still works too.
    s.login("lee@contoso.example", crate::common::PASSWORD).await;
    s.stop().await;
}

async fn a_person_who_signs_in_finds_at_once_the_documents_shared_with_their_oid_or_email(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, owner) = s.user(&admin, "owner@contoso.example").await;
    let kb: Uuid = s.create_kb(&owner, "team").await.parse().unwrap();
    // Sync named Ada by her object id (as drives' sharing does) and Bo by email, before either has an account.
    let ada = person(&s, "Ada", None);
    let bo = person(&s, "Bo", Some("bo@contoso.example"));
    s.synced(kb, "for-ada", "walrus migration plan").await;
    s.synced(kb, "for-bo", "walrus feeding schedule").await;
    s.synced(kb, "for-nobody", "walrus secret").await;
    s.state
        .store
        .set_document_acls(
            kb,
            &[
                DocumentAcl {
                    source_item_id: "for-ada".into(),
                    principals: vec![format!("user:{}", ada.id)],
                },
                DocumentAcl {
                    source_item_id: "for-bo".into(),
                    principals: vec!["email:bo@contoso.example".into()],
                },
                DocumentAcl {
                    source_item_id: "for-nobody".into(),
                    principals: vec!["email:owner@contoso.example".into()],
                },
            ],
            s.clock.now(),
        )
        .await
        .unwrap();

    for (upn, expected) in [
        (&ada.user_principal_name, "for-ada.txt"),
        (&bo.user_principal_name, "for-bo.txt"),
    ] {
        let token = signed_in(&s, upn).await;
        let (status, body) = s.get("/api/v1/search?q=walrus", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let names: Vec<&str> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec![expected], "{upn}: {body}");
    }
    s.stop().await;
}

async fn id_tokens_that_fail_verification_sign_nobody_in(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let kim = person(&s, "Kim", Some("kim@contoso.example"));
    let count = s.state.store.count_users().await.unwrap();
    let foreign_tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let cases: Vec<(&str, IdTokenOverrides, &str)> = vec![
        (
            "another application's token",
            IdTokenOverrides {
                aud: Some("someone-else".into()),
                ..Default::default()
            },
            "not for this application",
        ),
        (
            "another issuer",
            IdTokenOverrides {
                iss: Some("https://login.example.org/evil/v2.0".into()),
                ..Default::default()
            },
            "issued by",
        ),
        (
            "expired an hour ago",
            IdTokenOverrides {
                issued_at_offset_secs: -7200,
                ..Default::default()
            },
            "has expired",
        ),
        (
            "issued in the future",
            IdTokenOverrides {
                issued_at_offset_secs: 3600,
                ..Default::default()
            },
            "in the future",
        ),
        (
            "a bad signature",
            IdTokenOverrides {
                forged_signature: true,
                ..Default::default()
            },
            "signature does not verify",
        ),
        (
            "another sign-in's nonce (a replayed token)",
            IdTokenOverrides {
                nonce: Some("nonce-of-an-earlier-sign-in".into()),
                ..Default::default()
            },
            "nonce is not this sign-in",
        ),
        (
            "no nonce",
            IdTokenOverrides {
                nonce: Some(String::new()),
                ..Default::default()
            },
            "carries no nonce",
        ),
        (
            "a foreign tenant",
            IdTokenOverrides {
                tid: Some(foreign_tenant.into()),
                ..Default::default()
            },
            "issued by",
        ),
        (
            "a foreign tenant under our issuer",
            IdTokenOverrides {
                tid: Some(foreign_tenant.into()),
                iss: Some(format!(
                    "{}/{}/v2.0",
                    s.sign_in.as_ref().unwrap().base_url(),
                    provider(&s).tenant_id()
                )),
                ..Default::default()
            },
            "another tenant",
        ),
    ];
    for (case, overrides, why) in cases {
        let outcome = sign_in_with_next_token(&s, &kim.user_principal_name, overrides).await;
        assert_eq!(outcome.status, StatusCode::FORBIDDEN, "{case}: {}", outcome.page);
        assert!(outcome.session.is_none(), "{case}");
        assert!(
            outcome.page.contains(why),
            "{case}: expected {why:?} in {}",
            outcome.page
        );
    }
    assert_eq!(
        s.state.store.count_users().await.unwrap(),
        count,
        "no account was made"
    );
    // The clock skew is small but real: a token issued 30 s ahead of kbsync's clock is fine.
    let outcome = sign_in_with_next_token(
        &s,
        &kim.user_principal_name,
        IdTokenOverrides {
            issued_at_offset_secs: 30,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(outcome.status, StatusCode::SEE_OTHER, "{}", outcome.page);
    s.stop().await;
}

async fn a_rotated_signing_key_is_fetched_and_a_retired_one_refused(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let ro = person(&s, "Ro", Some("ro@contoso.example"));
    signed_in(&s, &ro.user_principal_name).await;
    let old = provider(&s).current_signing_kid().unwrap();
    provider(&s).rotate_signing_key().unwrap();
    provider(&s).retire_previous_signing_keys();
    // A token signed by the new key names a key kbsync has not seen: it fetches the keys again.
    signed_in(&s, &ro.user_principal_name).await;
    // A token signed by the retired key is refused, though kbsync once held that key.
    let outcome = sign_in_with_next_token(
        &s,
        &ro.user_principal_name,
        IdTokenOverrides {
            kid: Some(old),
            ..Default::default()
        },
    )
    .await;
    refused(&outcome, StatusCode::FORBIDDEN, "does not list");
    s.stop().await;
}

async fn a_callback_without_the_starting_browsers_cookie_is_refused_and_spends_the_state(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let jo = person(&s, "Jo", Some("jo@contoso.example"));
    let (back, cookie) = at_provider(&s, &jo.user_principal_name).await;
    // Another browser (no cookie, or another flow's cookie) cannot complete it...
    let (_, other_cookie) = begin(&s, None).await;
    refused(
        &callback(&back, None).await,
        StatusCode::BAD_REQUEST,
        "another browser",
    );
    // ...and the attempt spent the state: the right browser cannot finish it either.
    refused(
        &callback(&back, Some(&cookie)).await,
        StatusCode::BAD_REQUEST,
        "expired or was already used",
    );
    let (back, _cookie) = at_provider(&s, &jo.user_principal_name).await;
    refused(
        &callback(&back, Some(&other_cookie)).await,
        StatusCode::BAD_REQUEST,
        "another browser",
    );
    // A flow left too long expires.
    let (back, cookie) = at_provider(&s, &jo.user_principal_name).await;
    s.clock.advance(chrono::Duration::minutes(11));
    refused(
        &callback(&back, Some(&cookie)).await,
        StatusCode::BAD_REQUEST,
        "expired or was already used",
    );
    s.stop().await;
}

async fn a_replayed_callback_is_refused(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let mo = person(&s, "Mo", Some("mo@contoso.example"));
    let (back, cookie) = at_provider(&s, &mo.user_principal_name).await;
    let first = callback(&back, Some(&cookie)).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.page);
    refused(
        &callback(&back, Some(&cookie)).await,
        StatusCode::BAD_REQUEST,
        "expired or was already used",
    );
    s.stop().await;
}

async fn a_refusal_at_the_provider_is_shown_on_the_sign_in_page(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let (authorize_url, cookie) = begin(&s, None).await;
    let state = url::Url::parse(&authorize_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let back = format!(
        "{}/auth/oidc/callback?error=access_denied&error_description=AADSTS65004&state={state}",
        s.base
    );
    let outcome = callback(&back, Some(&cookie)).await;
    refused(
        &outcome,
        StatusCode::FORBIDDEN,
        "cancelled or refused at the provider",
    );
    assert!(
        outcome.page.contains("Sign in with Microsoft"),
        "the page offers to try again"
    );
    // A callback without any state is a clear 400.
    let outcome = callback(&format!("{}/auth/oidc/callback?code=x", s.base), Some(&cookie)).await;
    refused(&outcome, StatusCode::BAD_REQUEST, "carries no state");
    s.stop().await;
}

async fn only_allowed_domains_sign_in_and_admin_groups_decide_roles_at_each_sign_in(db: Db) {
    let admins_group = "5b1e2c3d-0000-4000-8000-00000000a0a0";
    let Some(s) = start(
        db,
        OidcTest {
            allowed_domains: vec!["contoso.example".into()],
            admin_groups: vec![admins_group.into()],
            ..OidcTest::default()
        },
    )
    .await
    else {
        return;
    };
    provider(&s)
        .set_group_membership_claims(SIGN_IN_CLIENT, GroupMembershipClaims::SecurityGroup)
        .unwrap();
    provider(&s)
        .create_group(NewGroup {
            id: Some(admins_group.into()),
            display_name: "kbsync admins".into(),
            mail: None,
        })
        .unwrap();
    let boss = person(&s, "Boss", Some("boss@contoso.example"));
    provider(&s).add_group_member(admins_group, &boss.id).unwrap();
    let staff = person(&s, "Staff", Some("staff@contoso.example"));
    let outsider = person(&s, "Out", Some("out@fabrikam.example"));

    let token = signed_in(&s, &boss.user_principal_name).await;
    assert_eq!(s.get("/api/v1/me", Some(&token)).await.1["role"], "admin");
    let token = signed_in(&s, &staff.user_principal_name).await;
    assert_eq!(s.get("/api/v1/me", Some(&token)).await.1["role"], "user");
    // The groups decide at every sign-in: leaving the group demotes, joining promotes.
    provider(&s).add_group_member(admins_group, &staff.id).unwrap();
    assert!(provider(&s).remove_group_member(admins_group, &boss.id));
    let token = signed_in(&s, &staff.user_principal_name).await;
    assert_eq!(s.get("/api/v1/me", Some(&token)).await.1["role"], "admin");
    let token = signed_in(&s, &boss.user_principal_name).await;
    assert_eq!(s.get("/api/v1/me", Some(&token)).await.1["role"], "user");
    refused(
        &sign_in(&s, &outsider.user_principal_name).await,
        StatusCode::FORBIDDEN,
        "Accounts of fabrikam.example may not sign in",
    );
    assert!(
        s.state
            .store
            .get_credentials_by_email("out@fabrikam.example")
            .await
            .is_err(),
        "no account for a refused domain"
    );
    s.stop().await;
}

async fn a_disabled_account_cannot_sign_in(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let al = person(&s, "Al", Some("al@contoso.example"));
    let token = signed_in(&s, &al.user_principal_name).await;
    let (_, me) = s.get("/api/v1/me", Some(&token)).await;
    s.disable_in_database(me["id"].as_str().unwrap()).await;
    assert_eq!(
        s.get("/api/v1/me", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    refused(
        &sign_in(&s, &al.user_principal_name).await,
        StatusCode::FORBIDDEN,
        "disabled",
    );
    s.stop().await;
}

async fn with_password_sign_in_off_only_the_provider_signs_people_in(db: Db) {
    let Some(s) = TestServer::start(
        db,
        Options {
            oidc: Some(OidcTest::default()),
            adjust: |settings| settings.password_login = false,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let (status, body) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": crate::common::ADMIN_EMAIL, "password": crate::common::PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sign in with Microsoft"),
        "{body}"
    );
    let page = browser().get(format!("{}/login", s.base)).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("Sign in with Microsoft"), "{page}");
    assert!(!page.contains("type=\"password\""), "no password form: {page}");
    let vi = person(&s, "Vi", Some("vi@contoso.example"));
    signed_in(&s, &vi.user_principal_name).await;
    s.stop().await;
}

async fn a_multi_tenant_set_up_trusts_only_verified_addresses_from_other_tenants(db: Db) {
    let Some(s) = start(
        db,
        OidcTest {
            tenant: Some("organizations"),
            ..OidcTest::default()
        },
    )
    .await
    else {
        return;
    };
    // Someone of another organisation, whose address their own administrators set: kbsync cannot trust it.
    let guest = provider(&s)
        .create_user(NewUser {
            display_name: "Guest".into(),
            mail: Some("ceo@contoso.example".into()),
            user_principal_name: Some("guest@fabrikam.example".into()),
            tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            ..NewUser::default()
        })
        .unwrap();
    refused(
        &sign_in(&s, &guest.user_principal_name).await,
        StatusCode::FORBIDDEN,
        "verified email",
    );
    assert!(
        s.state
            .store
            .get_credentials_by_email("ceo@contoso.example")
            .await
            .is_err()
    );
    s.stop().await;
}

async fn signing_out_offers_the_providers_sign_out(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let page = browser()
        .get(format!("{}/login?signed_out=1", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("You are signed out of kbsync"), "{page}");
    let logout = format!(
        "{}/oauth2/v2.0/logout?",
        s.sign_in.as_ref().unwrap().authority_url()
    );
    assert!(page.contains(&logout), "{page}");
    assert!(
        page.contains(&urlencoding(&format!("{}/login", s.base))),
        "returns to kbsync: {page}"
    );
    s.stop().await;
}

async fn start_with_real_provider(db: Db) -> Option<TestServer> {
    start(
        db,
        OidcTest {
            real_provider: true,
            ..OidcTest::default()
        },
    )
    .await
}

/// A whole sign-in of `account` at the real provider (its login and consent pages).
async fn sign_in_at_real_provider(s: &TestServer, account: &str) -> Outcome {
    let (authorize_url, cookie) = begin(s, Some("/kb?from=peer")).await;
    let peer = s.peer.as_ref().unwrap();
    assert!(authorize_url.starts_with(peer.issuer()), "{authorize_url}");
    let back = peer.sign_in(&authorize_url, account).await;
    assert!(
        back.starts_with(&format!("{}/auth/oidc/callback?", s.base)),
        "{back}"
    );
    callback(&back, Some(&cookie)).await
}

async fn a_real_provider_signs_a_verified_account_in_and_finds_it_again(db: Db) {
    let Some(s) = start_with_real_provider(db).await else {
        return;
    };
    let count = s.state.store.count_users().await.unwrap();
    let first = sign_in_at_real_provider(&s, "pat@example.org").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.page);
    assert_eq!(first.location.as_deref(), Some("/kb?from=peer"));
    let (status, me) = s.get("/api/v1/me", first.session.as_deref()).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "pat@example.org");
    assert_eq!(s.state.store.count_users().await.unwrap(), count + 1);
    // No Entra object id: nothing but the email names this person at the sources.
    let id = me["id"].as_str().unwrap().parse().unwrap();
    assert!(
        s.state
            .store
            .user_principals(id)
            .await
            .unwrap()
            .iter()
            .all(|p| !p.starts_with("user:"))
    );

    let second = sign_in_at_real_provider(&s, "pat@example.org").await;
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.page);
    let (_, again) = s.get("/api/v1/me", second.session.as_deref()).await;
    assert_eq!(again["id"], me["id"]);
    assert_eq!(s.state.store.count_users().await.unwrap(), count + 1);
    s.stop().await;
}

async fn a_real_providers_unverified_email_signs_nobody_in(db: Db) {
    let Some(s) = start_with_real_provider(db).await else {
        return;
    };
    refused(
        &sign_in_at_real_provider(&s, "unverified@example.org").await,
        StatusCode::FORBIDDEN,
        "verified email",
    );
    assert!(
        s.state
            .store
            .get_credentials_by_email("unverified@example.org")
            .await
            .is_err()
    );
    s.stop().await;
}

async fn a_service_accounts_address_signs_nobody_in(db: Db) {
    let Some(s) = start(db, OidcTest::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (status, key) = s
        .post(
            "/api/v1/admin/api-keys",
            Some(&admin),
            json!({"name": "assistant", "scope": "read"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let service = s
        .state
        .store
        .get_user(key["owner"]["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert!(service.is_service());
    // Someone at the provider whose address is the service account's cannot take it over.
    let impostor = person(&s, "Impostor", Some(&service.email));
    refused(
        &sign_in(&s, &impostor.user_principal_name).await,
        StatusCode::FORBIDDEN,
        "service account",
    );
    s.stop().await;
}

async fn claims_only_at_the_real_providers_userinfo_endpoint_are_read_there(db: Db) {
    let Some(s) = start(
        db,
        OidcTest {
            real_provider: true,
            claims_in_userinfo_only: true,
            ..OidcTest::default()
        },
    )
    .await
    else {
        return;
    };
    let outcome = sign_in_at_real_provider(&s, "sam@example.org").await;
    assert_eq!(outcome.status, StatusCode::SEE_OTHER, "{}", outcome.page);
    let (_, me) = s.get("/api/v1/me", outcome.session.as_deref()).await;
    assert_eq!(me["email"], "sam@example.org");
    // The verification flag comes from userinfo too: an unverified address still signs nobody in.
    refused(
        &sign_in_at_real_provider(&s, "unverified@example.org").await,
        StatusCode::FORBIDDEN,
        "verified email",
    );
    s.stop().await;
}
