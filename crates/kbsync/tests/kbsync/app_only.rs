//! App-only access end to end: `kbsync serve` configured with the application's certificate
//! (`KBSYNC_ONEDRIVE_APP_ONLY`), an administrator connects a knowledge base as the organisation's application
//! (no sign-in), picks a SharePoint site's document library in the picker, and its documents become
//! searchable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use msgraph_emulator::NewSite;
use msgraph_emulator::test_certificates::{APP_CERT_PEM, APP_KEY_PEM};
use serde_json::{Value, json};

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, CLIENT_ID, Launch, free_port};

#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "polls a child process against a real-time deadline"
)]
async fn an_admin_connects_a_kb_app_only_and_a_sharepoint_library_syncs_with_the_certificate() {
    let port = free_port();
    let emu = crate::common::emulator(&[port]).await;
    let ctl = emu.control();
    // The administrator's consent to application permissions, and the certificate in the app registration.
    ctl.grant_app_roles(CLIENT_ID, &["Sites.Read.All"]).unwrap();
    ctl.add_client_certificate(CLIENT_ID, APP_CERT_PEM.as_bytes())
        .unwrap();
    let site = ctl
        .create_site(NewSite {
            display_name: "Legal Department".into(),
            name: Some("legal".into()),
            libraries: vec!["Contracts".into()],
        })
        .unwrap();
    let library = site.drive_ids[0].clone();
    ctl.put_file(
        &library,
        "/2026/supplier-agreement.txt",
        "The supplier agreement mentions the zanzibarquokka clause.",
    )
    .unwrap();
    ctl.put_file(&library, "/2026/notes.md", "# Notes\nnothing special")
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("app-cert.pem");
    let key = dir.path().join("app-key.pem");
    std::fs::write(&cert, APP_CERT_PEM).unwrap();
    std::fs::write(&key, APP_KEY_PEM).unwrap();
    let data = dir.path().join("data");
    let instance = Launch::new(port, &data, &emu)
        .env("KBSYNC_ONEDRIVE_APP_ONLY", "true")
        .env("KBSYNC_ONEDRIVE_TENANT_ID", &ctl.tenant_id())
        .env("KBSYNC_ONEDRIVE_CLIENT_CERT_FILE", cert.to_str().unwrap())
        .env("KBSYNC_ONEDRIVE_CLIENT_KEY_FILE", key.to_str().unwrap())
        .start();
    let admin = Api::login(&instance.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, list) = admin.get("/api/v1/datasources").await;
    assert_eq!(list["datasources"][0]["app_only"], true, "{list}");

    // A user who is not an administrator may not connect their knowledge base as the application.
    let (status, body) = admin
        .post(
            "/api/v1/users",
            json!({"email": "user@example.com", "password": "a long user password", "role": "user"}),
        )
        .await;
    assert!(status == 201 || status == 200, "{status} {body}");
    let user = Api::login(&instance.base, "user@example.com", "a long user password").await;
    let theirs = user.create_onedrive_kb("Mine").await;
    let (status, _) = user
        .post(
            &format!("/api/v1/datasources/onedrive/auth/app-only?knowledge_id={theirs}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);

    let kb = admin.create_onedrive_kb("Contracts").await;
    let (status, body) = admin
        .post(
            &format!("/api/v1/datasources/onedrive/auth/app-only?knowledge_id={kb}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, connection) = admin.get(&format!("/api/v1/knowledge/{kb}/connection")).await;
    assert_eq!(connection["app_only"], true, "{connection}");
    assert_eq!(connection["has_stored_token"], true, "{connection}");

    // The picker, as the application sees the tenant: the site, then its library.
    let (status, top) = admin
        .get(&format!("/api/v1/datasources/onedrive/browse?knowledge_id={kb}"))
        .await;
    assert_eq!(status, 200, "{top}");
    let entries = top["items"].as_array().unwrap().clone();
    let site_entry = entries
        .iter()
        .find(|e| e["name"] == "Legal Department")
        .unwrap_or_else(|| panic!("the site is not in the picker: {top}"));
    let site_drive = site_entry["drive_id"].as_str().unwrap();
    let (status, libraries) = admin
        .get(&format!(
            "/api/v1/datasources/onedrive/browse?knowledge_id={kb}&drive_id={}",
            urlencode(site_drive)
        ))
        .await;
    assert_eq!(status, 200, "{libraries}");
    assert!(libraries.to_string().contains(&library), "{libraries}");

    let root = ctl.drive(&library).unwrap().root_id;
    let (status, body) = admin
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            json!({"datasource": "onedrive", "items": [{"type": "folder", "drive_id": library, "item_id": root, "name": "Contracts", "path": "/"}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let _ = admin
        .post(&format!("/api/v1/knowledge/{kb}/sync"), json!({}))
        .await;

    let deadline = Instant::now() + Duration::from_secs(120);
    let hits = loop {
        let (status, hits) = admin.get("/api/v1/search?q=zanzibarquokka").await;
        assert_eq!(status, 200, "{hits}");
        if hits["results"].as_array().is_some_and(|r| !r.is_empty()) {
            break hits;
        }
        assert!(
            Instant::now() < deadline,
            "the library never became searchable: {}\n{}",
            admin.sync_state(&kb).await,
            instance.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(hits["results"][0]["name"], "supplier-agreement.txt", "{hits}");
    let state: Value = admin.wait_status(&kb, "completed", Duration::from_secs(60)).await;
    assert_eq!(state["needs_reauth"], false, "{state}");
    // Tokens came from the client credentials grant with the certificate; nothing was delegated.
    let log = emu.control().request_log();
    assert!(
        log.entries.iter().all(|e| !e.path.contains("/authorize")),
        "no user signed in"
    );
    assert!(!instance.log().contains(APP_KEY_PEM.lines().nth(1).unwrap()));
    instance.terminate().await;
    emu.shutdown().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
