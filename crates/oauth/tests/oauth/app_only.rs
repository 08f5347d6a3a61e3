//! App-only tokens (client credentials) against the emulator's identity platform: secret and certificate,
//! one cached token per resource until 5 minutes before expiry on the injected clock, forced renewal, and
//! SharePoint REST refusing a token obtained with a secret.

use std::sync::Arc;
use std::time::Duration;

use kbsync_core::datasource::{DatasourceError, TokenSource};
use kbsync_core::{ManualClock, SeededRandom};
use kbsync_oauth::{AppOnlyConfig, AppOnlyTokens, ClientCertificate, ClientCredential, ClientSecret};
use msgraph_emulator::test_certificates::{APP_CERT_PEM, APP_KEY_PEM, OTHER_CERT_PEM, OTHER_KEY_PEM};
use msgraph_emulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator, NewSite, RunningEmulator};

const TOKEN_ROUTE: &str = "POST /{id}/oauth2/v2.0/token";
const GRAPH: &str = "https://graph.microsoft.com";

async fn emulator() -> RunningEmulator {
    let emu = Emulator::builder().seed(11).start().await.unwrap();
    let ctl = emu.control();
    ctl.grant_app_roles(DEFAULT_CLIENT_ID, &["Sites.Read.All", "Files.Read.All"])
        .unwrap();
    ctl.add_client_certificate(DEFAULT_CLIENT_ID, APP_CERT_PEM.as_bytes())
        .unwrap();
    emu
}

fn tokens(emu: &RunningEmulator, credential: ClientCredential, clock: &ManualClock) -> AppOnlyTokens {
    AppOnlyTokens::new(
        AppOnlyConfig {
            client_id: DEFAULT_CLIENT_ID.into(),
            token_url: emu.token_url(),
            credential,
            tenant: None,
            default_resource: GRAPH.into(),
        },
        reqwest::Client::new(),
        Arc::new(clock.clone()),
        Arc::new(SeededRandom::new(3)),
        Duration::from_secs(10),
    )
}

fn certificate() -> ClientCredential {
    ClientCredential::Certificate(
        ClientCertificate::from_pem(APP_CERT_PEM.as_bytes(), APP_KEY_PEM.as_bytes()).unwrap(),
    )
}

fn token_requests(emu: &RunningEmulator) -> u64 {
    emu.control().request_counts().count(TOKEN_ROUTE)
}

async fn graph_status(emu: &RunningEmulator, token: &str, path: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}{path}", emu.graph_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_secret_gets_a_graph_token_that_is_cached_until_five_minutes_before_expiry() {
    let emu = emulator().await;
    let clock = ManualClock::new(emu.control().now());
    let source = tokens(
        &emu,
        ClientCredential::Secret(ClientSecret::new(DEFAULT_CLIENT_SECRET)),
        &clock,
    );
    let first = source.access_token().await.unwrap();
    assert_eq!(graph_status(&emu, first.secret(), "/sites?search=*").await, 200);
    assert_eq!(token_requests(&emu), 1);
    // The emulator's tokens live at least 3599 s: at 3599 - 301 s the cached one is still fresh.
    clock.advance(chrono::Duration::seconds(3599 - 301));
    assert_eq!(source.access_token().await.unwrap(), first);
    assert_eq!(token_requests(&emu), 1);
    // At most 5 minutes before it expires (the emulator's lifetime is at most 5400 s) it is replaced.
    clock.advance(chrono::Duration::seconds(5400 - (3599 - 301) - 300));
    let second = source.access_token().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(token_requests(&emu), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn refresh_replaces_a_rejected_token_and_each_resource_has_its_own() {
    let emu = emulator().await;
    let clock = ManualClock::new(emu.control().now());
    let source = tokens(&emu, certificate(), &clock);
    let graph = source.access_token().await.unwrap();
    let renewed = source.refresh(&graph).await.unwrap();
    assert_ne!(renewed, graph);
    assert_eq!(source.access_token().await.unwrap(), renewed);
    let origin = emu.control().sharepoint_origin();
    let sharepoint = source.access_token_for(&format!("{origin}/")).await.unwrap();
    assert_ne!(sharepoint, renewed);
    assert_eq!(source.access_token_for(&origin).await.unwrap(), sharepoint);
    assert_eq!(token_requests(&emu), 3);
    // The SharePoint token is not a Graph token.
    assert_eq!(
        graph_status(&emu, sharepoint.secret(), "/sites?search=*").await,
        401
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn sharepoint_rest_accepts_a_certificate_token_and_refuses_a_secret_token() {
    let emu = emulator().await;
    let ctl = emu.control();
    let site = ctl
        .create_site(NewSite {
            display_name: "Research".into(),
            ..Default::default()
        })
        .unwrap();
    let url = format!("{}/_api/web/sitegroups/GetById(3)/users", site.web_url);
    let origin = ctl.sharepoint_origin();
    let clock = ManualClock::new(ctl.now());
    let get = |token: String| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .header("Accept", "application/json;odata=nometadata")
                .send()
                .await
                .unwrap()
        }
    };
    let by_secret = tokens(
        &emu,
        ClientCredential::Secret(ClientSecret::new(DEFAULT_CLIENT_SECRET)),
        &clock,
    );
    let r = get(by_secret
        .access_token_for(&origin)
        .await
        .unwrap()
        .secret()
        .to_owned())
    .await;
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error_description"], "Unsupported app only token.");

    let by_certificate = tokens(&emu, certificate(), &clock);
    let r = get(by_certificate
        .access_token_for(&origin)
        .await
        .unwrap()
        .secret()
        .to_owned())
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    // The site's creator is in its Owners group (3).
    assert_eq!(body["value"].as_array().unwrap().len(), 1, "{body}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_certificate_the_application_does_not_have_is_refused_as_misconfiguration() {
    let emu = emulator().await;
    let clock = ManualClock::new(emu.control().now());
    let other = ClientCertificate::from_pem(OTHER_CERT_PEM.as_bytes(), OTHER_KEY_PEM.as_bytes()).unwrap();
    let source = tokens(&emu, ClientCredential::Certificate(other), &clock);
    let err = source.access_token().await.unwrap_err();
    assert!(
        matches!(&err, DatasourceError::Permanent(m) if m.contains("invalid_client") && m.contains("AADSTS700027")),
        "{err:?}"
    );
    let wrong = tokens(
        &emu,
        ClientCredential::Secret(ClientSecret::new("not-the-secret")),
        &clock,
    );
    assert!(matches!(
        wrong.access_token().await,
        Err(DatasourceError::Permanent(_))
    ));
    emu.shutdown().await;
}

#[test]
fn certificates_load_from_pem_and_show_only_their_thumbprint() {
    let cert = ClientCertificate::from_pem(APP_CERT_PEM.as_bytes(), APP_KEY_PEM.as_bytes()).unwrap();
    let debug = format!("{cert:?}");
    assert!(debug.contains(cert.thumbprint()), "{debug}");
    assert!(!debug.contains("PRIVATE"), "{debug}");
    assert!(ClientCertificate::from_pem(APP_KEY_PEM.as_bytes(), APP_KEY_PEM.as_bytes()).is_err());
    assert!(ClientCertificate::from_pem(APP_CERT_PEM.as_bytes(), APP_CERT_PEM.as_bytes()).is_err());
}
