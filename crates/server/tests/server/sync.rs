//! Sources, sync runs, their state, history and event stream through the HTTP API, against the
//! emulated OneDrive, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common::{
    Db, OneDriveTest, Options, TestServer, add_sources, connected_kb, team_folder, wait_idle,
};
use msgraph_emulator::{FaultAction, FaultRule};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    adding_a_folder_source_syncs_it_and_the_kb_matches_the_drive,
    adding_sources_refuses_bad_input_wrong_kb_types_and_callers_without_manage_access,
    a_second_sync_conflicts_while_one_runs_and_cancel_stops_it,
    the_event_stream_reports_progress_failed_files_and_the_finished_run,
    removing_a_source_removes_its_documents_only,
    writers_may_not_add_or_remove_sources_but_still_sync_and_upload,
    a_browser_access_token_syncs_once_without_storing_a_connection,
    a_kb_sets_its_own_sync_interval_and_can_return_to_the_default,
    the_drive_root_picked_by_its_alias_syncs_with_paths_from_the_root,
    a_run_records_where_its_time_went_in_its_history_page_and_metrics,
);

fn with_onedrive() -> Options {
    Options {
        onedrive: Some(OneDriveTest { with_secret: true }),
        ..Options::default()
    }
}

/// Polls until a run holds the knowledge base.
#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn wait_running(s: &TestServer, token: &str, kb: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = s.get(&format!("/api/v1/knowledge/{kb}/sync"), Some(token)).await;
        if body["running"] == true {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no run started: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn file_names(s: &TestServer, token: &str, kb: &str) -> Vec<String> {
    let (status, body) = s.get(&format!("/api/v1/knowledge/{kb}/files"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut names: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn adding_a_folder_source_syncs_it_and_the_kb_matches_the_drive(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let kb = connected_kb(&s).await;
    let folder = team_folder(
        &s,
        &[
            ("plan.txt", "The quarterly harvest plan for the orchard"),
            ("Notes/minutes.md", "# Minutes\nWe agreed on the zeppelin budget."),
        ],
    );
    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([folder.clone()])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["run_id"].is_string(), "{body}");
    assert_eq!(body["sources"][0]["type"], "folder");
    let state = wait_idle(&s, &kb.owner, &kb.id).await;
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(state["has_stored_token"], true);
    assert!(state["last_sync_at"].is_string(), "{state}");
    assert!(state["next_sync_at"].is_string(), "{state}");
    assert_eq!(
        file_names(&s, &kb.owner, &kb.id).await,
        ["minutes.md", "plan.txt"]
    );

    let (status, hits) = s.get("/api/v1/search?q=zeppelin", Some(&kb.owner)).await;
    assert_eq!(status, StatusCode::OK, "{hits}");
    assert_eq!(hits["results"][0]["name"], "minutes.md", "{hits}");

    // Adding the same folder again is harmless: still one source, same documents.
    s.clock.advance(chrono::Duration::seconds(1));
    let (status, _) = add_sources(&s, &kb.owner, &kb.id, json!([folder])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_idle(&s, &kb.owner, &kb.id).await;
    let (_, sources) = s
        .get(&format!("/api/v1/knowledge/{}/sources", kb.id), Some(&kb.owner))
        .await;
    assert_eq!(sources["sources"].as_array().unwrap().len(), 1, "{sources}");
    assert_eq!(
        file_names(&s, &kb.owner, &kb.id).await,
        ["minutes.md", "plan.txt"]
    );

    let (status, runs) = s
        .get(&format!("/api/v1/knowledge/{}/sync/runs", kb.id), Some(&kb.owner))
        .await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["processed"], 2, "{runs:?}");
    assert_eq!(runs[1]["trigger"], "manual");
    assert_eq!(runs[0]["processed"], 0, "nothing changed: {runs:?}");
    s.stop().await;
}

async fn adding_sources_refuses_bad_input_wrong_kb_types_and_callers_without_manage_access(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let kb = connected_kb(&s).await;
    let admin = s.admin_token().await;
    let (reader_id, reader) = s.user(&admin, "reader@example.com").await;
    let (_, stranger) = s.user(&admin, "stranger@example.com").await;
    let (status, _) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{}/access", kb.id),
            Some(&kb.owner),
            Some(json!({"read": [reader_id]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let folder = team_folder(&s, &[("a.txt", "alpha")]);
    let path = format!("/api/v1/knowledge/{}/sources", kb.id);

    let (status, body) = s
        .post(
            &path,
            Some(&kb.owner),
            json!({"datasource": "dropbox", "items": [folder.clone()]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("datasource"),
        "{body}"
    );
    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let mut wrong = folder.clone();
    wrong["type"] = json!("site");
    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([wrong])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let mut blank = folder.clone();
    blank["item_id"] = json!("  ");
    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([blank])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = s.post(&path, Some(&kb.owner), json!({"items": "nope"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, _) = add_sources(&s, &reader, &kb.id, json!([folder.clone()])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = add_sources(&s, &stranger, &kb.id, json!([folder.clone()])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .post(
            &path,
            None,
            json!({"datasource": "onedrive", "items": [folder.clone()]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Sources only go on a knowledge base of that datasource's type.
    let local = s.create_kb(&kb.owner, "Uploads").await;
    let (status, body) = add_sources(&s, &kb.owner, &local, json!([folder])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = s
        .post(
            &format!("/api/v1/knowledge/{local}/sync"),
            Some(&kb.owner),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Nothing was added by the refused requests.
    let (_, sources) = s.get(&path, Some(&reader)).await;
    assert_eq!(sources["sources"], json!([]));
    s.stop().await;
}

async fn a_second_sync_conflicts_while_one_runs_and_cancel_stops_it(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let kb = connected_kb(&s).await;
    let files: Vec<(String, String)> = (0..12)
        .map(|i| (format!("f{i:02}.txt"), format!("file number {i}")))
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let folder = team_folder(&s, &refs);
    // Every download is slow, so the run is still going when we look.
    let slow = s.drive().add_fault(FaultRule::new(
        "GET",
        "/_download/*",
        FaultAction::Delay { millis: 400 },
    ));
    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([folder])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_running(&s, &kb.owner, &kb.id).await;

    let sync = format!("/api/v1/knowledge/{}/sync", kb.id);
    let (status, body) = s.post(&sync, Some(&kb.owner), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = s
        .post(&format!("{sync}/cancel"), Some(&kb.owner), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["cancel_requested"], true);
    let state = wait_idle(&s, &kb.owner, &kb.id).await;
    assert_eq!(state["status"], "cancelled", "{state}");
    let (_, sources) = s
        .get(&format!("/api/v1/knowledge/{}/sources", kb.id), Some(&kb.owner))
        .await;
    assert_eq!(
        sources["sources"][0]["synced"], false,
        "a cancelled run advances no cursor"
    );

    // Nothing runs now: cancel says so, and a new run completes everything.
    s.drive().remove_fault(slow);
    let (status, body) = s
        .post(&format!("{sync}/cancel"), Some(&kb.owner), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["cancel_requested"], false);
    let (status, body) = s.post(&sync, Some(&kb.owner), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let state = wait_idle(&s, &kb.owner, &kb.id).await;
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(file_names(&s, &kb.owner, &kb.id).await.len(), 12);
    s.stop().await;
}

/// Reads server-sent events until one named `until` arrives (or a minute passes).
async fn read_events(resp: reqwest::Response, until: &str) -> Vec<(String, Value)> {
    kbsync_kit::sse::read_events(resp, until, Duration::from_secs(60)).await
}

async fn the_event_stream_reports_progress_failed_files_and_the_finished_run(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let kb = connected_kb(&s).await;
    let folder = team_folder(&s, &[("one.txt", "first file"), ("two.txt", "second file")]);
    let drive = s.drive();
    let drive_id = drive.default_drive_id();
    drive
        .put_file(
            &drive_id,
            "/Team/broken.pdf",
            b"%PDF-1.7 this is not really a pdf".to_vec(),
        )
        .unwrap();
    let resp = s
        .http
        .get(format!("{}/api/v1/knowledge/{}/sync/events", s.base, kb.id))
        .bearer_auth(&kb.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([folder])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run_id = body["run_id"].clone();
    let events = read_events(resp, "finished").await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "status", "{events:?}");
    assert!(names.contains(&"progress"), "{events:?}");
    let (_, last_progress) = events.iter().rev().find(|(n, _)| n == "progress").unwrap();
    assert_eq!(last_progress["current"], last_progress["total"], "{events:?}");
    let (_, failed) = events
        .iter()
        .find(|(n, _)| n == "file_failed")
        .unwrap_or_else(|| panic!("no file_failed event: {events:?}"));
    assert_eq!(failed["name"], "broken.pdf");
    assert!(!failed["reason"].as_str().unwrap().is_empty());
    let (_, finished) = events.last().unwrap();
    assert_eq!(finished["run_id"], run_id);
    assert_eq!(finished["status"], "completed_with_errors", "{finished}");
    assert_eq!(finished["processed"], 2);
    assert_eq!(finished["failed"], 1);

    let (_, runs) = s
        .get(&format!("/api/v1/knowledge/{}/sync/runs", kb.id), Some(&kb.owner))
        .await;
    assert_eq!(runs["runs"][0]["failures"][0]["name"], "broken.pdf", "{runs}");
    s.stop().await;
}

async fn removing_a_source_removes_its_documents_only(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let kb = connected_kb(&s).await;
    let team = team_folder(&s, &[("team.txt", "team notes")]);
    let drive = s.drive();
    let drive_id = drive.default_drive_id();
    let other = drive
        .put_file(&drive_id, "/Other/other.txt", b"other notes".to_vec())
        .unwrap();
    let other_item = json!({"type": "file", "drive_id": drive_id, "item_id": other.id, "name": "other.txt", "path": "/Other/other.txt"});
    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([team, other_item])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_idle(&s, &kb.owner, &kb.id).await;
    assert_eq!(file_names(&s, &kb.owner, &kb.id).await, ["other.txt", "team.txt"]);

    let team_source = body["sources"][0]["id"].as_str().unwrap();
    let path = format!("/api/v1/knowledge/{}/sources/{team_source}", kb.id);
    let (status, body) = s.call(Method::DELETE, &path, Some(&kb.owner), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(file_names(&s, &kb.owner, &kb.id).await, ["other.txt"]);
    let (_, hits) = s.get("/api/v1/search?q=team", Some(&kb.owner)).await;
    assert_eq!(hits["results"], json!([]), "{hits}");
    let (status, _) = s.call(Method::DELETE, &path, Some(&kb.owner), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// A source brings in whatever the connected account can read, so adding and removing sources
/// needs manage access (owner or admin); writers keep syncing, and uploading to local knowledge
/// bases.
async fn writers_may_not_add_or_remove_sources_but_still_sync_and_upload(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let kb = connected_kb(&s).await;
    let admin = s.admin_token().await;
    let (writer_id, writer) = s.user(&admin, "writer@example.com").await;
    let (reader_id, reader) = s.user(&admin, "reader@example.com").await;
    let (_, stranger) = s.user(&admin, "stranger@example.com").await;
    let grants = json!({"read": [reader_id], "write": [writer_id]});
    let access = format!("/api/v1/knowledge/{}/access", kb.id);
    let (status, _) = s
        .call(Method::PUT, &access, Some(&kb.owner), Some(grants.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let team = team_folder(&s, &[("team.txt", "team notes")]);

    for (who, token, expected) in [
        ("stranger", &stranger, StatusCode::NOT_FOUND),
        ("reader", &reader, StatusCode::FORBIDDEN),
        ("writer", &writer, StatusCode::FORBIDDEN),
    ] {
        let (status, body) = add_sources(&s, token, &kb.id, json!([team.clone()])).await;
        assert_eq!(status, expected, "{who}: {body}");
    }
    let sources = format!("/api/v1/knowledge/{}/sources", kb.id);
    assert_eq!(s.get(&sources, Some(&kb.owner)).await.1["sources"], json!([]));

    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([team])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_idle(&s, &kb.owner, &kb.id).await;
    let source = body["sources"][0]["id"].as_str().unwrap();
    let one = format!("{sources}/{source}");
    for (who, token, expected) in [
        ("stranger", &stranger, StatusCode::NOT_FOUND),
        ("reader", &reader, StatusCode::FORBIDDEN),
        ("writer", &writer, StatusCode::FORBIDDEN),
    ] {
        let (status, body) = s.call(Method::DELETE, &one, Some(token), None).await;
        assert_eq!(status, expected, "{who}: {body}");
    }
    assert_eq!(
        s.get(&sources, Some(&writer)).await.1["sources"][0]["id"],
        source,
        "writers still see the sources"
    );
    assert_eq!(file_names(&s, &writer, &kb.id).await, ["team.txt"]);

    // Writers still start runs, and upload to a local knowledge base.
    let (status, body) = s
        .post(
            &format!("/api/v1/knowledge/{}/sync", kb.id),
            Some(&writer),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_idle(&s, &kb.owner, &kb.id).await;
    let local = s.create_kb(&kb.owner, "Uploads").await;
    let (status, _) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{local}/access"),
            Some(&kb.owner),
            Some(grants),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .upload(
            Some(&writer),
            &local,
            "notes.txt",
            b"written by a writer".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // The owner removes the source.
    let (status, body) = s.call(Method::DELETE, &one, Some(&kb.owner), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    s.stop().await;
}

async fn a_browser_access_token_syncs_once_without_storing_a_connection(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, owner) = s.user(&admin, "owner@example.com").await;
    let (_, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&owner),
            json!({"name": "Drive", "type": "onedrive"}),
        )
        .await;
    let kb = body["id"].as_str().unwrap().to_owned();
    let folder = team_folder(&s, &[("doc.txt", "browser token document")]);
    let drive = s.drive();
    let token = drive
        .mint_access_token(&drive.default_user_id(), &["Files.Read.All"])
        .unwrap();
    let (status, body) = s
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            Some(&owner),
            json!({"datasource": "onedrive", "items": [folder], "access_token": token}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let state = wait_idle(&s, &owner, &kb).await;
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(state["has_stored_token"], false);
    assert_eq!(file_names(&s, &owner, &kb).await, ["doc.txt"]);
    let (status, _) = s
        .get(&format!("/api/v1/knowledge/{kb}/connection"), Some(&owner))
        .await;
    assert_eq!(status, StatusCode::OK);
    // Without a stored connection or a token, a run cannot start.
    let (status, body) = s
        .post(&format!("/api/v1/knowledge/{kb}/sync"), Some(&owner), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = s
        .post(
            &format!("/api/v1/knowledge/{kb}/sync"),
            Some(&owner),
            json!({"access_token": "has spaces in it"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    s.stop().await;
}

async fn a_kb_sets_its_own_sync_interval_and_can_return_to_the_default(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let kb = connected_kb(&s).await;
    let path = format!("/api/v1/knowledge/{}", kb.id);
    let sync = format!("{path}/sync");
    let (_, state) = s.get(&sync, Some(&kb.owner)).await;
    assert_eq!(state["interval_minutes"], 60, "{state}");
    let (status, body) = s
        .call(
            Method::PATCH,
            &path,
            Some(&kb.owner),
            Some(json!({"sync_interval_minutes": 15})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, state) = s.get(&sync, Some(&kb.owner)).await;
    assert_eq!(state["interval_minutes"], 15, "{state}");
    // A rename leaves the interval alone; null goes back to the server's default.
    s.call(
        Method::PATCH,
        &path,
        Some(&kb.owner),
        Some(json!({"name": "Renamed"})),
    )
    .await;
    let (_, state) = s.get(&sync, Some(&kb.owner)).await;
    assert_eq!(state["interval_minutes"], 15, "{state}");
    s.call(
        Method::PATCH,
        &path,
        Some(&kb.owner),
        Some(json!({"sync_interval_minutes": null})),
    )
    .await;
    let (_, state) = s.get(&sync, Some(&kb.owner)).await;
    assert_eq!(state["interval_minutes"], 60, "{state}");

    for bad in [json!(0), json!(7 * 24 * 60 + 1), json!("hourly")] {
        let (status, body) = s
            .call(
                Method::PATCH,
                &path,
                Some(&kb.owner),
                Some(json!({"sync_interval_minutes": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let local = s.create_kb(&kb.owner, "Uploads").await;
    let (status, body) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/knowledge/{local}"),
            Some(&kb.owner),
            Some(json!({"sync_interval_minutes": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    s.stop().await;
}

async fn the_drive_root_picked_by_its_alias_syncs_with_paths_from_the_root(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let kb = connected_kb(&s).await;
    team_folder(&s, &[("Deep/memo.txt", "a memo about lighthouses")]);
    let drive_id = s.drive().default_drive_id();
    let root =
        json!({"type": "folder", "drive_id": drive_id, "item_id": "root", "name": "OneDrive", "path": "/"});
    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([root])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let real_root = s.drive().drive(&drive_id).unwrap().root_id;
    assert_eq!(body["sources"][0]["item_id"], real_root.as_str());
    let state = wait_idle(&s, &kb.owner, &kb.id).await;
    assert_eq!(state["status"], "completed", "{state}");
    let (_, files) = s
        .get(&format!("/api/v1/knowledge/{}/files", kb.id), Some(&kb.owner))
        .await;
    assert_eq!(files["items"][0]["path"], "/Team/Deep/memo.txt", "{files}");
    s.stop().await;
}

/// A run's phase time in seconds, as `GET …/sync/runs` reports it.
fn phase(run: &Value, name: &str) -> f64 {
    run["phases"][format!("{name}_seconds")]
        .as_f64()
        .unwrap_or_else(|| panic!("no {name}_seconds: {run}"))
}

async fn a_run_records_where_its_time_went_in_its_history_page_and_metrics(db: Db) {
    let Some(s) = TestServer::start(db, with_onedrive()).await else {
        return;
    };
    let kb = connected_kb(&s).await;
    let folder = team_folder(
        &s,
        &[
            ("plan.txt", "The quarterly harvest plan for the orchard"),
            ("Notes/minutes.md", "# Minutes\nWe agreed on the zeppelin budget."),
            ("Notes/budget.csv", "item,amount\nzeppelin,1200"),
        ],
    );
    // Each download takes at least this long, so the download phase has a known lower bound.
    let delay = 0.15;
    let slow = s.drive().add_fault(FaultRule::new(
        "GET",
        "/_download/*",
        FaultAction::Delay { millis: 150 },
    ));
    let (status, body) = add_sources(&s, &kb.owner, &kb.id, json!([folder])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let state = wait_idle(&s, &kb.owner, &kb.id).await;
    assert_eq!(state["status"], "completed", "{state}");
    s.drive().remove_fault(slow);

    // Nothing changed: a second run enumerates, and downloads, extracts and indexes nothing.
    s.clock.advance(chrono::Duration::seconds(1));
    let sync = format!("/api/v1/knowledge/{}/sync", kb.id);
    let (status, body) = s.post(&sync, Some(&kb.owner), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let state = wait_idle(&s, &kb.owner, &kb.id).await;
    assert_eq!(state["status"], "completed", "{state}");

    let (status, runs) = s.get(&format!("{sync}/runs"), Some(&kb.owner)).await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    let (quiet, first) = (&runs["runs"][0], &runs["runs"][1]);
    assert_eq!(first["processed"], 3, "{runs}");
    for name in [
        "enumerate",
        "plan",
        "download",
        "extract",
        "index",
        "permissions",
        "wall",
    ] {
        assert!(phase(first, name) > 0.0, "{name}: {first}");
    }
    // Three files each waited for their download: summed over files, whatever ran at once.
    assert!(phase(first, "download") >= 3.0 * delay, "{first}");
    // The steps of a run follow one another inside its wall time.
    let steps = phase(first, "enumerate") + phase(first, "plan") + phase(first, "permissions");
    assert!(steps <= phase(first, "wall"), "{first}");
    assert!(phase(first, "download") <= 3.0 * phase(first, "wall"), "{first}");
    assert_eq!(quiet["processed"], 0, "{runs}");
    assert!(phase(quiet, "enumerate") > 0.0, "{quiet}");
    for name in ["download", "extract", "index"] {
        assert_eq!(phase(quiet, name), 0.0, "{name}: {quiet}");
    }

    // The knowledge base's page shows them with each run.
    let (cookie, _) = crate::ui::sign_in_as(&s, "owner@example.com").await;
    let (status, html) = crate::ui::page(&s, &cookie, &format!("/kb/{}", kb.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("Time: enumerate ").count(), 2, "{html}");
    assert!(html.contains(" · download 0 µs · "), "the quiet run: {html}");

    // And /metrics has their histogram, one observation per phase per run.
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in ["enumerate", "plan", "download", "extract", "index", "permissions"] {
        let bucket = format!("kbsync_sync_phase_seconds_bucket{{phase=\"{name}\",le=\"+Inf\"}} ");
        assert!(text.contains(&bucket), "{bucket} missing: {text}");
    }
    s.stop().await;
}
