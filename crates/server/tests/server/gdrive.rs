//! Google Drive through the HTTP API, against the in-process Google Drive emulator: the datasource
//! list, connecting through both route families (`/api/v1/datasources/gdrive/…` and the
//! `/api/v1/connectors/gdrive/…` names), the picker's levels with paging, and a folder source that
//! syncs, is searchable and follows renames and deletions at the source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use crate::common::{Db, GDriveTest, Options, TestServer, wait_idle};
use gdrive_emulator::{Grant, Grantee};
use reqwest::StatusCode;
use serde_json::{Value, json};

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    gdrive_is_listed_as_configured_and_a_gdrive_knowledge_base_can_be_created,
    gdrive_connects_through_both_route_families_and_the_binding_cookie_follows_the_registered_callback,
    gdrive_browse_lists_my_drive_shared_drives_and_shared_with_me_and_pages_through_a_folder,
    a_gdrive_folder_source_syncs_the_emulators_files_is_searchable_and_follows_renames_and_deletions,
);

fn with_gdrive() -> Options {
    Options {
        gdrive: Some(GDriveTest::default()),
        ..Options::default()
    }
}

/// An owner (token) and a new Google Drive knowledge base of theirs.
async fn gdrive_kb(s: &TestServer) -> (String, String) {
    let admin = s.admin_token().await;
    let (_, owner) = s.user(&admin, "owner@example.com").await;
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&owner),
            json!({"name": "Drive", "type": "gdrive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["type"], "gdrive", "{body}");
    (owner, body["id"].as_str().unwrap().to_owned())
}

/// initiate (under `prefix`) → the emulator's automatic consent → the callback under
/// `callback_prefix` (the emulator redirects to the registered datasources callback; the path is
/// rewritten to reach the other family's), carrying the binding cookie. Returns the callback's
/// status and page, and the binding cookie's `Set-Cookie` as initiate sent it.
async fn connect_via(
    s: &TestServer,
    token: &str,
    kb: &str,
    prefix: &str,
    callback_prefix: &str,
) -> (StatusCode, String, String) {
    let resp = s
        .http
        .get(format!("{}{prefix}/auth/initiate?knowledge_id={kb}", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let set_cookie = crate::common::binding_cookies(resp.headers());
    assert_eq!(set_cookie.len(), 1, "{set_cookie:?}");
    let set_cookie = set_cookie[0].clone();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    let auth_url = body["auth_url"].as_str().unwrap();
    let query: Vec<(String, String)> = url::Url::parse(auth_url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    for (k, v) in [
        ("access_type", "offline"),
        ("prompt", "consent"),
        ("code_challenge_method", "S256"),
        // Exactly the datasource's scope: Google refuses `offline_access` as an invalid scope.
        ("scope", "https://www.googleapis.com/auth/drive.readonly"),
    ] {
        assert!(
            query.iter().any(|(qk, qv)| qk == k && qv == v),
            "{k}={v} missing from {auth_url}"
        );
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(auth_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let registered = format!("{}/api/v1/datasources/gdrive/auth/callback?", s.base);
    assert!(location.starts_with(&registered), "{location}");
    let callback = location.replacen(
        "/api/v1/datasources/gdrive/auth/callback",
        &format!("{callback_prefix}/auth/callback"),
        1,
    );
    let resp = http
        .get(&callback)
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let cleared = crate::common::binding_cookies(resp.headers());
    let page = resp.text().await.unwrap();
    if status == StatusCode::OK {
        // The callback removes the flow's cookie where its family's routes are.
        assert_eq!(cleared.len(), 1, "{cleared:?}");
        let family = &callback_prefix[..callback_prefix.rfind('/').unwrap() + 1];
        assert!(
            cleared[0].contains("Max-Age=0") && cleared[0].contains(&format!("Path={family};")),
            "{cleared:?}"
        );
    }
    (status, page, set_cookie)
}

async fn has_stored_token(s: &TestServer, token: &str, kb: &str) -> bool {
    let (status, body) = s
        .get(&format!("/api/v1/knowledge/{kb}/connection"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["datasource"], "gdrive", "{body}");
    body["has_stored_token"] == true
}

async fn gdrive_is_listed_as_configured_and_a_gdrive_knowledge_base_can_be_created(db: Db) {
    let Some(s) = TestServer::start(db, with_gdrive()).await else {
        return;
    };
    let token = s.admin_token().await;
    let (status, body) = s.get("/api/v1/datasources", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["datasources"],
        json!([
            {"datasource": "onedrive", "name": "OneDrive / SharePoint", "configured": false, "app_only": false},
            {"datasource": "gdrive", "name": "Google Drive", "configured": true, "app_only": false},
        ])
    );
    let (owner, kb) = gdrive_kb(&s).await;
    assert!(!has_stored_token(&s, &owner, &kb).await);
    // A Google Drive knowledge base does not connect to OneDrive, under either name.
    for prefix in ["/api/v1/datasources/onedrive", "/api/v1/connectors/onedrive"] {
        let (status, body, _) = s.initiate_at(prefix, Some(&owner), &kb).await;
        assert_eq!(status, StatusCode::CONFLICT, "{prefix}: {body}");
    }
    s.stop().await;
}

async fn gdrive_connects_through_both_route_families_and_the_binding_cookie_follows_the_registered_callback(
    db: Db,
) {
    let Some(s) = TestServer::start(db, with_gdrive()).await else {
        return;
    };
    let (owner, kb) = gdrive_kb(&s).await;
    // kbsync's own names end to end.
    let (status, page, set_cookie) = connect_via(
        &s,
        &owner,
        &kb,
        "/api/v1/datasources/gdrive",
        "/api/v1/datasources/gdrive",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("kbsync-auth-success") && page.contains(&kb),
        "{page}"
    );
    // The registered callback is under /api/v1/datasources/: the cookie goes there.
    assert!(set_cookie.contains("Path=/api/v1/datasources/;"), "{set_cookie}");
    assert!(has_stored_token(&s, &owner, &kb).await);

    // The connectors names: initiate and callback, on a second knowledge base.
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&owner),
            json!({"name": "Drive 2", "type": "gdrive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = body["id"].as_str().unwrap().to_owned();
    let (status, page, _) = connect_via(
        &s,
        &owner,
        &second,
        "/api/v1/connectors/gdrive",
        "/api/v1/connectors/gdrive",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("kbsync-auth-success") && page.contains(&second),
        "{page}"
    );
    assert!(has_stored_token(&s, &owner, &second).await);

    // The connectors callback is as strict as the other: no binding cookie, nothing stored.
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&owner),
            json!({"name": "Drive 3", "type": "gdrive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let third = body["id"].as_str().unwrap().to_owned();
    let (status, body, _) = s
        .initiate_at("/api/v1/connectors/gdrive", Some(&owner), &third)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, page, _) = s.consent(body["auth_url"].as_str().unwrap(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(!has_stored_token(&s, &owner, &third).await);
    // Strangers cannot start a flow under the connectors names either.
    let admin = s.admin_token().await;
    let (_, stranger) = s.user(&admin, "stranger@example.com").await;
    let (status, body, _) = s
        .initiate_at("/api/v1/connectors/gdrive", Some(&stranger), &kb)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body, _) = s.initiate_at("/api/v1/connectors/gdrive", None, &kb).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    s.stop().await;
}

/// `/Team` in My Drive with `n` text files and a subfolder `Sub` holding one; returns Team's id.
fn team_folder(s: &TestServer, n: usize) -> String {
    let drive = s.gdrive();
    let root = drive.root_id();
    let team = drive.create_folder(&root, "Team").unwrap();
    for i in 0..n {
        drive
            .create_file(
                &team,
                &format!("note-{i}.txt"),
                format!("note number {i} about the team's plans"),
            )
            .unwrap();
    }
    let sub = drive.create_folder(&team, "Sub").unwrap();
    drive
        .create_file(&sub, "deep.md", "a quarterly walrus census, deep in the tree")
        .unwrap();
    team
}

fn names(items: &Value) -> BTreeSet<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn gdrive_browse_lists_my_drive_shared_drives_and_shared_with_me_and_pages_through_a_folder(db: Db) {
    let Some(s) = TestServer::start(db, with_gdrive()).await else {
        return;
    };
    let (owner, kb) = gdrive_kb(&s).await;
    let drive = s.gdrive();
    let me = drive.info().default_user.email;
    drive
        .create_shared_drive(
            "Engineering",
            vec![Grant {
                grantee: Grantee::User { email_address: me },
                role: "organizer".into(),
                allow_file_discovery: false,
            }],
        )
        .unwrap();
    let team = team_folder(&s, 5);
    // Not connected yet: browsing is a conflict.
    let browse = |prefix: &str, query: &str| format!("{prefix}/browse?knowledge_id={kb}{query}");
    let (status, body) = s
        .get(&browse("/api/v1/connectors/gdrive", ""), Some(&owner))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, page, _) = connect_via(
        &s,
        &owner,
        &kb,
        "/api/v1/datasources/gdrive",
        "/api/v1/datasources/gdrive",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");

    // The top level, under both names: My Drive, each shared drive, and "Shared with me".
    for prefix in ["/api/v1/datasources/gdrive", "/api/v1/connectors/gdrive"] {
        let (status, body) = s.get(&browse(prefix, ""), Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{prefix}: {body}");
        let rows: Vec<(String, String)> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["kind"].as_str().unwrap().to_owned(),
                    i["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for expected in [
            ("drive", "My Drive"),
            ("drive", "Engineering"),
            ("site", "Shared with me"),
        ] {
            assert!(
                rows.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{expected:?} missing at the top level: {rows:?}"
            );
        }
    }
    // My Drive's root holds Team.
    let (status, body) = s
        .get(
            &browse("/api/v1/connectors/gdrive", "&drive_id=user"),
            Some(&owner),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let team_row = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "Team")
        .unwrap_or_else(|| panic!("no Team in My Drive: {body}"))
        .clone();
    assert_eq!(team_row["kind"], "folder");
    assert_eq!(team_row["id"], team.as_str());
    // Team's six children come in pages of two: every row arrives, in three listings or more.
    s.gdrive().clear_traffic();
    let (status, body) = s
        .get(
            &browse(
                "/api/v1/connectors/gdrive",
                &format!("&drive_id=user&item_id={team}"),
            ),
            Some(&owner),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected: BTreeSet<String> = (0..5)
        .map(|i| format!("note-{i}.txt"))
        .chain(["Sub".to_owned()])
        .collect();
    assert_eq!(names(&body["items"]), expected, "{body}");
    let listings = s.gdrive().traffic().count("GET /drive/v3/files");
    assert!(listings >= 3, "{listings} listings for six rows in pages of two");
    // The same folder under kbsync's own names answers the same rows.
    let (status, same) = s
        .get(
            &browse(
                "/api/v1/datasources/gdrive",
                &format!("&drive_id=user&item_id={team}"),
            ),
            Some(&owner),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(names(&same["items"]), expected);
    s.stop().await;
}

/// The documents of `kb` by name, once every one is processed.
async fn documents(s: &TestServer, token: &str, kb: &str) -> Vec<Value> {
    let (status, body) = s
        .get(&format!("/api/v1/knowledge/{kb}/files?limit=100"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().unwrap().clone();
    for item in &items {
        assert_eq!(item["status"], "processed", "{item}");
    }
    items
}

/// The names of the files (not folders, not trashed) under `/My Drive/Team/`, as the emulator
/// lists them.
fn emulator_files_under_team(s: &TestServer) -> BTreeSet<String> {
    s.gdrive()
        .files()
        .into_iter()
        .filter(|f| {
            f.path.starts_with("/My Drive/Team/") && !f.trashed && f.mime_type != gdrive_emulator::FOLDER
        })
        .map(|f| f.name)
        .collect()
}

async fn sync_now(s: &TestServer, token: &str, kb: &str) -> Value {
    let (status, body) = s
        .post(&format!("/api/v1/knowledge/{kb}/sync"), Some(token), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = wait_idle(s, token, kb).await;
    assert_eq!(done["status"], "completed", "{done}");
    done
}

async fn a_gdrive_folder_source_syncs_the_emulators_files_is_searchable_and_follows_renames_and_deletions(
    db: Db,
) {
    let Some(s) = TestServer::start(db, with_gdrive()).await else {
        return;
    };
    let (owner, kb) = gdrive_kb(&s).await;
    let team = team_folder(&s, 3);
    // Outside the source: never synced.
    let drive = s.gdrive();
    drive
        .create_file(&drive.root_id(), "outside.txt", "not in the source")
        .unwrap();
    let (status, page, _) = connect_via(
        &s,
        &owner,
        &kb,
        "/api/v1/connectors/gdrive",
        "/api/v1/datasources/gdrive",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, body) = s
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            Some(&owner),
            json!({"datasource": "gdrive", "items": [
                {"type": "folder", "drive_id": "user", "item_id": team, "name": "Team", "path": "/Team"}
            ]}),
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");

    // Adding a source starts a run.
    let done = wait_idle(&s, &owner, &kb).await;
    assert_eq!(done["status"], "completed", "{done}");
    let docs = documents(&s, &owner, &kb).await;
    let synced: BTreeSet<String> = docs
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(synced, emulator_files_under_team(&s));
    assert_eq!(synced.len(), 4, "{docs:?}");
    let deep = docs.iter().find(|d| d["name"] == "deep.md").unwrap();
    assert_eq!(deep["path"], "/Team/Sub/deep.md", "{deep}");

    let (status, hits) = s.get("/api/v1/search?q=walrus", Some(&owner)).await;
    assert_eq!(status, StatusCode::OK, "{hits}");
    assert_eq!(hits["results"].as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits["results"][0]["name"], "deep.md", "{hits}");

    // At the source: one file renamed, one deleted, one trashed.
    let by_name = |name: &str| {
        s.gdrive()
            .files()
            .into_iter()
            .find(|f| f.name == name && f.path.starts_with("/My Drive/Team/"))
            .unwrap()
            .id
    };
    drive.rename(&by_name("note-0.txt"), "renamed.txt").unwrap();
    drive.delete(&by_name("note-1.txt")).unwrap();
    drive.trash(&by_name("deep.md")).unwrap();

    sync_now(&s, &owner, &kb).await;
    let docs = documents(&s, &owner, &kb).await;
    let synced: BTreeSet<String> = docs
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(synced, emulator_files_under_team(&s));
    assert_eq!(
        synced,
        ["note-2.txt", "renamed.txt"]
            .into_iter()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>()
    );
    let (_, hits) = s.get("/api/v1/search?q=walrus", Some(&owner)).await;
    assert_eq!(hits["results"], json!([]), "{hits}");
    s.stop().await;
}
