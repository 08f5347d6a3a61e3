//! App-only access: the client credentials grant (secret or certificate assertion), application permissions on
//! Graph, and SharePoint REST site-group membership.

use crate::common::*;
use chrono::Duration;
use msgraph_emulator::app_only::{AssertionSpec, sign_client_assertion};
use msgraph_emulator::test_certificates::{APP_CERT_PEM, APP_KEY_PEM, OTHER_CERT_PEM, OTHER_KEY_PEM};
use msgraph_emulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, NewSite};
use serde_json::Value;

const GRAPH_DEFAULT: &str = "https://graph.microsoft.com/.default";

async fn token_request(env: &Env, form: &[(&str, &str)]) -> (u16, Value) {
    let r = env
        .http
        .post(env.emu.token_url())
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn secret_token(env: &Env, scope: &str) -> (u16, Value) {
    token_request(
        env,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", scope),
        ],
    )
    .await
}

fn assertion(env: &Env, cert: &str, key: &str, aud: &str, valid_from_minutes: i64) -> String {
    let now = env.ctl.now() + Duration::minutes(valid_from_minutes);
    sign_client_assertion(&AssertionSpec {
        client_id: DEFAULT_CLIENT_ID,
        audience: aud,
        not_before: now,
        expires: now + Duration::minutes(10),
        certificate_pem: cert,
        key_pem: key,
    })
}

async fn certificate_token(env: &Env, assertion: &str, scope: &str) -> (u16, Value) {
    token_request(
        env,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("scope", scope),
        ],
    )
    .await
}

fn app_env_roles(env: &Env, roles: &[&str]) {
    env.ctl.grant_app_roles(DEFAULT_CLIENT_ID, roles).unwrap();
    env.ctl
        .add_client_certificate(DEFAULT_CLIENT_ID, APP_CERT_PEM.as_bytes())
        .unwrap();
}

#[tokio::test]
async fn client_credentials_with_a_secret_give_an_app_token_without_refresh_token() {
    let env = env().await;
    app_env_roles(&env, &["Sites.Read.All"]);
    let (status, body) = secret_token(&env, GRAPH_DEFAULT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() >= 3599);
    assert!(body["ext_expires_in"].is_i64());
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims: Value = {
        use base64::Engine as _;
        let p = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["roles"], serde_json::json!(["Sites.Read.All"]));
    assert_eq!(claims["idtyp"], "app");
    env.shutdown().await;
}

#[tokio::test]
async fn client_credentials_need_a_resource_default_scope() {
    let env = env().await;
    for bad in [
        "https://graph.microsoft.com/Files.Read.All",
        "Files.Read.All offline_access",
    ] {
        let (status, body) = secret_token(&env, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_scope");
        assert_eq!(body["error_codes"], serde_json::json!([1002012]));
    }
    let (status, body) = secret_token(&env, "https://unknown.example/.default").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_resource")));
    let (status, body) = token_request(
        &env,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "wrong"),
            ("scope", GRAPH_DEFAULT),
        ],
    )
    .await;
    assert_eq!((status, body["error_codes"][0].as_u64()), (401, Some(7000215)));
    env.shutdown().await;
}

#[tokio::test]
async fn certificate_assertions_are_checked_for_key_time_and_audience() {
    let env = env().await;
    app_env_roles(&env, &["Sites.Read.All"]);
    let aud = env.emu.token_url();
    let good = assertion(&env, APP_CERT_PEM, APP_KEY_PEM, &aud, 0);
    let (status, body) = certificate_token(&env, &good, GRAPH_DEFAULT).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());

    // Signed with a key whose certificate is not registered.
    let other = assertion(&env, OTHER_CERT_PEM, OTHER_KEY_PEM, &aud, 0);
    let (status, body) = certificate_token(&env, &other, GRAPH_DEFAULT).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert_eq!(body["error_codes"], serde_json::json!([700027]));

    // The registered certificate's thumbprint, but another key signed: the signature is invalid.
    let forged = assertion(&env, APP_CERT_PEM, OTHER_KEY_PEM, &aud, 0);
    let (status, body) = certificate_token(&env, &forged, GRAPH_DEFAULT).await;
    assert_eq!((status, body["error_codes"][0].as_u64()), (401, Some(700027)));

    let expired = assertion(&env, APP_CERT_PEM, APP_KEY_PEM, &aud, -60);
    let (status, body) = certificate_token(&env, &expired, GRAPH_DEFAULT).await;
    assert_eq!((status, body["error_codes"][0].as_u64()), (401, Some(700024)));

    let elsewhere = assertion(
        &env,
        APP_CERT_PEM,
        APP_KEY_PEM,
        "https://login.microsoftonline.com/other/oauth2/v2.0/token",
        0,
    );
    let (status, body) = certificate_token(&env, &elsewhere, GRAPH_DEFAULT).await;
    assert_eq!((status, body["error_codes"][0].as_u64()), (401, Some(700023)));
    env.shutdown().await;
}

#[tokio::test]
async fn app_callers_read_sites_and_drives_with_application_permissions_but_not_me() {
    let env = env().await;
    let site = env
        .ctl
        .create_site(NewSite {
            display_name: "Finance".into(),
            ..Default::default()
        })
        .unwrap();
    env.ctl
        .put_file(&site.drive_ids[0], "/Reports/q1.txt", "first quarter")
        .unwrap();

    // No application permission consented yet.
    let (_, body) = secret_token(&env, GRAPH_DEFAULT).await;
    let bare = body["access_token"].as_str().unwrap().to_string();
    let r = env.get_as(&bare, "/sites?search=*").await;
    assert_eq!(r.status().as_u16(), 401);

    env.ctl
        .grant_app_roles(DEFAULT_CLIENT_ID, &["Sites.Read.All"])
        .unwrap();
    let (_, body) = secret_token(&env, GRAPH_DEFAULT).await;
    let app = body["access_token"].as_str().unwrap().to_string();
    let me = env.get_as(&app, "/me/drive").await;
    assert_eq!(me.status().as_u16(), 400);
    let err: Value = me.json().await.unwrap();
    assert_eq!(
        err["error"]["message"],
        "/me request is only valid with delegated authentication flow."
    );

    let sites: Value = env.get_as(&app, "/sites?search=*").await.json().await.unwrap();
    assert!(
        sites["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == site.id)
    );
    let drive: Value = env
        .get_as(&app, &format!("/drives/{}", site.drive_ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(drive["sharePointIds"]["siteUrl"], site.web_url.as_str());
    let delta: Value = env
        .get_as(&app, &format!("/drives/{}/root/delta", site.drive_ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        delta["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "q1.txt"),
        "{delta}"
    );

    // Files.Read.All reads drives but does not list sites.
    env.ctl
        .grant_app_roles(DEFAULT_CLIENT_ID, &["Files.Read.All"])
        .unwrap();
    let (_, body) = secret_token(&env, GRAPH_DEFAULT).await;
    let files = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(env.get_as(&files, "/sites?search=*").await.status().as_u16(), 403);
    assert_eq!(
        env.get_as(&files, &format!("/drives/{}/root/children", site.drive_ids[0]))
            .await
            .status()
            .as_u16(),
        200
    );
    env.shutdown().await;
}

#[tokio::test]
async fn sharepoint_rest_lists_site_group_users_and_groups_only_for_certificate_app_tokens() {
    let env = env().await;
    app_env_roles(&env, &["Sites.Read.All"]);
    let site = env
        .ctl
        .create_site(NewSite {
            display_name: "Projects".into(),
            ..Default::default()
        })
        .unwrap();
    let bob = bob(&env, msgraph_emulator::DriveType::Business);
    env.ctl.add_site_group_member(&site.id, "5", &bob.id).unwrap();
    env.ctl
        .add_site_group_group(&site.id, "5", "a5f3c1d2-0000-4000-8000-000000000042")
        .unwrap();
    let origin = env.ctl.sharepoint_origin();
    let sp_scope = format!("{origin}/.default");
    let url = format!("{}/_api/web/sitegroups/GetById(5)/users", site.web_url);
    let get = |token: String| {
        env.http
            .get(&url)
            .bearer_auth(token)
            .header("Accept", "application/json;odata=nometadata")
            .send()
    };

    // A secret-based app token for SharePoint is issued, but SharePoint refuses it.
    let (status, body) = secret_token(&env, &sp_scope).await;
    assert_eq!(status, 200, "{body}");
    let r = get(body["access_token"].as_str().unwrap().to_string())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error_description"], "Unsupported app only token.");

    // A Graph token has the wrong audience.
    let a = assertion(&env, APP_CERT_PEM, APP_KEY_PEM, &env.emu.token_url(), 0);
    let (_, body) = certificate_token(&env, &a, GRAPH_DEFAULT).await;
    let r = get(body["access_token"].as_str().unwrap().to_string())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let a = assertion(&env, APP_CERT_PEM, APP_KEY_PEM, &env.emu.token_url(), 0);
    let (status, body) = certificate_token(&env, &a, &sp_scope).await;
    assert_eq!(status, 200, "{body}");
    let r = get(body["access_token"].as_str().unwrap().to_string())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let members: Value = r.json().await.unwrap();
    let v = members["value"].as_array().unwrap();
    assert_eq!(v.len(), 2, "{members}");
    let user = v.iter().find(|m| m["PrincipalType"] == 1).unwrap();
    assert_eq!(user["Email"], "bob@contoso.onmicrosoft.com");
    assert!(
        user["LoginName"]
            .as_str()
            .unwrap()
            .starts_with("i:0#.f|membership|")
    );
    let group = v.iter().find(|m| m["PrincipalType"] == 4).unwrap();
    assert_eq!(
        group["LoginName"],
        "c:0t.c|tenant|a5f3c1d2-0000-4000-8000-000000000042"
    );
    assert!(members.get("odata.metadata").is_none());

    // The other documented form, and a group that does not exist.
    let alt = format!("{}/_api/web/sitegroups(5)/users", site.web_url);
    let a = assertion(&env, APP_CERT_PEM, APP_KEY_PEM, &env.emu.token_url(), 0);
    let (_, body) = certificate_token(&env, &a, &sp_scope).await;
    let token = body["access_token"].as_str().unwrap().to_string();
    let r = env.http.get(&alt).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let missing = format!("{}/_api/web/sitegroups/GetById(77)/users", site.web_url);
    let r = env.http.get(&missing).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    env.shutdown().await;
}
