//! The HTTP API end to end: a real server on port 0, the knowledge-base, file, search and health
//! routes, every error status, and the access rules for owner, writer, reader, stranger, admin
//! and anonymous callers. Signing in and users are in `auth.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{Db, Options, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    knowledge_routes_enforce_access_for_every_kind_of_caller,
    knowledge_creation_validates_name_type_and_body,
    knowledge_list_is_paginated_and_shows_only_readable_bases,
    access_grants_replace_manual_grants_and_reject_unknown_users,
    every_supported_file_type_is_ingested_and_searchable,
    upload_enforces_access_type_size_and_form_rules,
    a_broken_file_fails_with_a_reason_without_affecting_others,
    file_routes_return_metadata_original_bytes_and_delete,
    search_returns_only_documents_the_caller_may_read,
    deleting_a_knowledge_base_removes_its_files_from_search,
    a_same_name_upload_replaces_the_earlier_document,
    uploads_and_deletes_of_identical_bytes_racing_the_collector_never_lose_a_blob,
    health_readiness_metrics_and_unknown_routes,
    latency_metrics_are_exported_as_histograms_with_buckets_not_summaries,
);

async fn knowledge_routes_enforce_access_for_every_kind_of_caller(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, owner) = s.user(&admin, "owner@example.com").await;
    let (reader_id, reader) = s.user(&admin, "reader@example.com").await;
    let (writer_id, writer) = s.user(&admin, "writer@example.com").await;
    let (_, stranger) = s.user(&admin, "stranger@example.com").await;
    let kb = s.create_kb(&owner, "Handbook").await;
    let (status, body) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{kb}/access"),
            Some(&owner),
            Some(json!({"read": [reader_id], "write": [writer_id]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let path = format!("/api/v1/knowledge/{kb}");
    let callers: [(&str, Option<&str>, StatusCode, StatusCode); 6] = [
        // (who, token, GET, PATCH)
        ("owner", Some(&owner), StatusCode::OK, StatusCode::OK),
        ("admin", Some(&admin), StatusCode::OK, StatusCode::OK),
        ("writer", Some(&writer), StatusCode::OK, StatusCode::FORBIDDEN),
        ("reader", Some(&reader), StatusCode::OK, StatusCode::FORBIDDEN),
        (
            "stranger",
            Some(&stranger),
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
        ),
        (
            "anonymous",
            None,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (who, token, get_status, patch_status) in callers {
        assert_eq!(s.get(&path, token).await.0, get_status, "GET as {who}");
        let (status, body) = s
            .call(
                Method::PATCH,
                &path,
                token,
                Some(json!({"description": format!("by {who}")})),
            )
            .await;
        assert_eq!(status, patch_status, "PATCH as {who}: {body}");
        let access_path = format!("{path}/access");
        let expected_access = if patch_status == StatusCode::OK {
            StatusCode::OK
        } else {
            patch_status
        };
        assert_eq!(
            s.get(&access_path, token).await.0,
            expected_access,
            "GET access as {who}"
        );
        let files_path = format!("{path}/files");
        assert_eq!(
            s.get(&files_path, token).await.0,
            get_status,
            "list files as {who}"
        );
    }
    let (_, body) = s.get(&path, Some(&reader)).await;
    assert_eq!(body["access"], "read");
    let (_, body) = s.get(&path, Some(&writer)).await;
    assert_eq!(body["access"], "write");
    assert_eq!(body["description"], "by admin");

    for (who, token, expected) in [
        ("anonymous", None, StatusCode::UNAUTHORIZED),
        ("stranger", Some(stranger.as_str()), StatusCode::NOT_FOUND),
        ("reader", Some(reader.as_str()), StatusCode::FORBIDDEN),
        ("writer", Some(writer.as_str()), StatusCode::FORBIDDEN),
    ] {
        assert_eq!(
            s.call(Method::DELETE, &path, token, None).await.0,
            expected,
            "DELETE as {who}"
        );
    }
    assert_eq!(
        s.call(Method::DELETE, &path, Some(&owner), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get(&path, Some(&owner)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&path, Some(&admin)).await.0, StatusCode::NOT_FOUND);
    // A malformed id names nothing.
    assert_eq!(
        s.get("/api/v1/knowledge/not-a-uuid", Some(&admin)).await.0,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

async fn knowledge_creation_validates_name_type_and_body(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&token),
            json!({"name": "  Team wiki  "}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "Team wiki");
    assert_eq!(body["type"], "local");
    assert_eq!(body["sync_status"], "idle");
    for (req, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"name": "a", "type": "dropbox"}), "type"),
        (json!({"name": "a", "type": "onedrive"}), "type"),
        // Registered but not wired on this server: refused, not a knowledge base nothing syncs.
        (json!({"name": "a", "type": "gdrive"}), "type"),
        (json!({"description": "no name"}), "body"),
    ] {
        let (status, resp) = s.post("/api/v1/knowledge", Some(&token), req.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{req}: {resp}");
        assert!(
            resp["error"]["message"].as_str().unwrap().starts_with(field),
            "{resp}"
        );
    }
    let resp = s
        .http
        .post(format!("{}/api/v1/knowledge", s.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    s.stop().await;
}

async fn knowledge_list_is_paginated_and_shows_only_readable_bases(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, alice) = s.user(&admin, "alice@example.com").await;
    let (bob_id, bob) = s.user(&admin, "bob@example.com").await;
    for i in 0..5 {
        s.create_kb(&alice, &format!("alice {i}")).await;
    }
    let shared = s.create_kb(&alice, "shared with bob").await;
    s.create_kb(&bob, "bob's own").await;
    s.call(
        Method::PUT,
        &format!("/api/v1/knowledge/{shared}/access"),
        Some(&alice),
        Some(json!({"read": [bob_id]})),
    )
    .await;

    let (status, page) = s.get("/api/v1/knowledge?limit=4&offset=0", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 6);
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    let (_, rest) = s.get("/api/v1/knowledge?limit=4&offset=4", Some(&alice)).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);

    let (_, bobs) = s.get("/api/v1/knowledge", Some(&bob)).await;
    let names: Vec<&str> = bobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(bobs["total"], 2);
    assert!(
        names.contains(&"shared with bob") && names.contains(&"bob's own"),
        "{names:?}"
    );

    let (_, all) = s.get("/api/v1/knowledge", Some(&admin)).await;
    assert_eq!(all["total"], 7);
    assert_eq!(
        s.get("/api/v1/knowledge?limit=0", Some(&admin)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        s.get("/api/v1/knowledge?limit=abc", Some(&admin)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    s.stop().await;
}

async fn access_grants_replace_manual_grants_and_reject_unknown_users(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (a_id, a) = s.user(&admin, "a@example.com").await;
    let (b_id, b) = s.user(&admin, "b@example.com").await;
    let kb = s.create_kb(&admin, "kb").await;
    let path = format!("/api/v1/knowledge/{kb}/access");
    let (status, body) = s
        .call(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({"read": [a_id], "write": [b_id]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"read": [a_id], "write": [b_id]}));
    assert_eq!(
        s.get(&format!("/api/v1/knowledge/{kb}"), Some(&a)).await.0,
        StatusCode::OK
    );

    // Replacing drops a's grant.
    s.call(Method::PUT, &path, Some(&admin), Some(json!({"write": [b_id]})))
        .await;
    assert_eq!(
        s.get(&format!("/api/v1/knowledge/{kb}"), Some(&a)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/api/v1/knowledge/{kb}"), Some(&b)).await.0,
        StatusCode::OK
    );

    let ghost = uuid::Uuid::new_v4();
    let (status, body) = s
        .call(Method::PUT, &path, Some(&admin), Some(json!({"read": [ghost]})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Nothing changed.
    assert_eq!(
        s.get(&path, Some(&admin)).await.1,
        json!({"read": [], "write": [b_id]})
    );
    let (status, _) = s
        .call(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({"read": ["not-a-uuid"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    s.stop().await;
}

fn sample_files() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    use kbsync_fixtures as fx;
    vec![
        (
            "plan.docx",
            fx::docx(&["The zeppelin hangar plan", "Übergabe am Montag"]),
            "zeppelin",
        ),
        (
            "budget.xlsx",
            fx::xlsx(&[("Budget", vec![vec!["item".into(), "kumquat".into()]])]),
            "kumquat",
        ),
        ("deck.pptx", fx::pptx(&["Quarterly narwhal review"]), "narwhal"),
        (
            "report.pdf",
            fx::pdf(&["The aardvark migration report"]),
            "aardvark",
        ),
        (
            "page.html",
            fx::html("Title", &["The marmalade recipe"]).into_bytes(),
            "marmalade",
        ),
        (
            "notes.md",
            b"# Notes\n\nThe xylophone workshop".to_vec(),
            "xylophone",
        ),
        ("readme.txt", b"The quokka census".to_vec(), "quokka"),
        ("data.csv", b"animal,count\nwombat,3\n".to_vec(), "wombat"),
        ("data.json", br#"{"animal": "platypus"}"#.to_vec(), "platypus"),
        (
            "data.xml",
            b"<root><animal>pangolin</animal></root>".to_vec(),
            "pangolin",
        ),
    ]
}

async fn every_supported_file_type_is_ingested_and_searchable(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let kb = s.create_kb(&token, "all types").await;
    let mut ids = Vec::new();
    for (name, bytes, word) in sample_files() {
        let (status, body) = s.upload(Some(&token), &kb, name, bytes).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        assert_eq!(body["status"], "pending");
        assert_eq!(body["name"], name);
        ids.push((name, body["id"].as_str().unwrap().to_owned(), word));
    }
    for (name, id, word) in ids {
        let file = s.wait_processed(&token, &kb, &id).await;
        assert_eq!(file["status"], "processed", "{name}: {file}");
        let (status, body) = s.get(&format!("/api/v1/search?q={word}"), Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{word}: {body}");
        assert_eq!(results[0]["document_id"], id.as_str());
        assert_eq!(results[0]["knowledge_id"], kb.as_str());
        assert_eq!(results[0]["name"], name);
        assert!(
            results[0]["snippet"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains(word),
            "{body}"
        );
    }
    // Diacritics are folded: "ubergabe" finds "Übergabe".
    let (_, body) = s.get("/api/v1/search?q=ubergabe", Some(&token)).await;
    assert_eq!(body["results"][0]["name"], "plan.docx");
    s.stop().await;
}

async fn upload_enforces_access_type_size_and_form_rules(db: Db) {
    let Some(s) = TestServer::start(
        db,
        Options {
            max_upload_bytes: 1024,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let admin = s.admin_token().await;
    let (reader_id, reader) = s.user(&admin, "reader@example.com").await;
    let (writer_id, writer) = s.user(&admin, "writer@example.com").await;
    let (_, stranger) = s.user(&admin, "stranger@example.com").await;
    let kb = s.create_kb(&admin, "uploads").await;
    s.call(
        Method::PUT,
        &format!("/api/v1/knowledge/{kb}/access"),
        Some(&admin),
        Some(json!({"read": [reader_id], "write": [writer_id]})),
    )
    .await;
    let small = b"hello".to_vec();
    assert_eq!(
        s.upload(None, &kb, "a.txt", small.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.upload(Some(&stranger), &kb, "a.txt", small.clone()).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.upload(Some(&reader), &kb, "a.txt", small.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.upload(Some(&writer), &kb, "a.txt", small.clone()).await.0,
        StatusCode::ACCEPTED
    );

    let (status, body) = s.upload(Some(&writer), &kb, "tool.exe", small.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with("file"),
        "{body}"
    );
    let (status, body) = s.upload(Some(&writer), &kb, "big.txt", vec![b'a'; 4096]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let url = format!("{}/api/v1/knowledge/{kb}/files", s.base);
    let form = reqwest::multipart::Form::new().text("other", "x");
    let resp = s
        .http
        .post(&url)
        .bearer_auth(&writer)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Fields besides the file are small by rule (the route has no overall body limit).
    let form = reqwest::multipart::Form::new()
        .text("note", "a".repeat(2000))
        .part(
            "file",
            reqwest::multipart::Part::bytes(small.clone()).file_name("b.txt"),
        );
    let resp = s
        .http
        .post(&url)
        .bearer_auth(&writer)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than 512 bytes"),
        "{body}"
    );
    let resp = s
        .http
        .post(&url)
        .bearer_auth(&writer)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Only the accepted upload exists.
    let (_, files) = s
        .get(&format!("/api/v1/knowledge/{kb}/files"), Some(&reader))
        .await;
    assert_eq!(files["total"], 1, "{files}");
    s.stop().await;
}

async fn a_broken_file_fails_with_a_reason_without_affecting_others(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let kb = s.create_kb(&token, "mixed").await;
    let mut truncated = kbsync_fixtures::docx(&["never seen"]);
    truncated.truncate(truncated.len() / 2);
    let (_, bad) = s.upload(Some(&token), &kb, "broken.docx", truncated).await;
    let (_, garbage) = s
        .upload(
            Some(&token),
            &kb,
            "garbage.pdf",
            b"%PDF-1.4 this is not really a pdf".to_vec(),
        )
        .await;
    let (_, good) = s
        .upload(Some(&token), &kb, "good.txt", b"the resilient heron".to_vec())
        .await;
    for failed in [bad, garbage] {
        let file = s
            .wait_processed(&token, &kb, failed["id"].as_str().unwrap())
            .await;
        assert_eq!(file["status"], "failed", "{file}");
        assert!(!file["error"].as_str().unwrap().is_empty(), "{file}");
    }
    let file = s.wait_processed(&token, &kb, good["id"].as_str().unwrap()).await;
    assert_eq!(file["status"], "processed");
    assert_eq!(file["error"], serde_json::Value::Null);
    let (_, body) = s.get("/api/v1/search?q=heron", Some(&token)).await;
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn file_routes_return_metadata_original_bytes_and_delete(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (reader_id, reader) = s.user(&admin, "reader@example.com").await;
    let (_, stranger) = s.user(&admin, "stranger@example.com").await;
    let kb = s.create_kb(&admin, "files").await;
    s.call(
        Method::PUT,
        &format!("/api/v1/knowledge/{kb}/access"),
        Some(&admin),
        Some(json!({"read": [reader_id]})),
    )
    .await;
    let bytes = kbsync_fixtures::pdf(&["The okapi sanctuary"]);
    let (_, up) = s.upload(Some(&admin), &kb, "okapi.pdf", bytes.clone()).await;
    let id = up["id"].as_str().unwrap();
    let file = s.wait_processed(&admin, &kb, id).await;
    assert_eq!(file["size"], bytes.len());
    assert_eq!(file["mime"], "application/pdf");
    assert_eq!(file["path"], "/okapi.pdf");
    assert_eq!(file["content_hash"].as_str().unwrap().len(), 64);

    let (_, list) = s
        .get(&format!("/api/v1/knowledge/{kb}/files"), Some(&reader))
        .await;
    let item = &list["items"][0];
    for key in [
        "id",
        "name",
        "path",
        "size",
        "mime",
        "status",
        "error",
        "content_hash",
        "updated_at",
    ] {
        assert!(item.get(key).is_some(), "missing {key}: {item}");
    }

    let content_url = format!("{}/api/v1/knowledge/{kb}/files/{id}/content", s.base);
    let resp = s
        .http
        .get(&content_url)
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), bytes);
    assert_eq!(
        s.http
            .get(&content_url)
            .bearer_auth(&stranger)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.http.get(&content_url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let file_path = format!("/api/v1/knowledge/{kb}/files/{id}");
    assert_eq!(
        s.call(Method::DELETE, &file_path, Some(&reader), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call(Method::DELETE, &file_path, Some(&stranger), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.call(Method::DELETE, &file_path, Some(&admin), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get(&file_path, Some(&admin)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        s.call(Method::DELETE, &file_path, Some(&admin), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, body) = s.get("/api/v1/search?q=okapi", Some(&admin)).await;
    assert_eq!(body["results"].as_array().unwrap().len(), 0);
    // The blob goes with its last document, once the grace period has passed.
    let hash = file["content_hash"].as_str().unwrap();
    let settings = kbsync_server::HousekeepingSettings::default();
    kbsync_server::service::housekeeping::purge(&s.state, &settings)
        .await
        .unwrap();
    assert!(
        s.state.blobs.open(hash).await.is_ok(),
        "kept during the grace period"
    );
    s.clock.advance(settings.blob_grace);
    let purged = kbsync_server::service::housekeeping::purge(&s.state, &settings)
        .await
        .unwrap();
    assert_eq!(purged.blobs, 1);
    assert!(s.state.blobs.open(hash).await.is_err());
    s.stop().await;
}

async fn search_returns_only_documents_the_caller_may_read(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, alice) = s.user(&admin, "alice@example.com").await;
    let (bob_id, bob) = s.user(&admin, "bob@example.com").await;
    let private = s.create_kb(&alice, "private").await;
    let shared = s.create_kb(&alice, "shared").await;
    s.call(
        Method::PUT,
        &format!("/api/v1/knowledge/{shared}/access"),
        Some(&alice),
        Some(json!({"read": [bob_id]})),
    )
    .await;
    let (_, a) = s
        .upload(
            Some(&alice),
            &private,
            "secret.txt",
            b"the capybara secret plan".to_vec(),
        )
        .await;
    let (_, b) = s
        .upload(
            Some(&alice),
            &shared,
            "public.txt",
            b"the capybara public plan, capybara again".to_vec(),
        )
        .await;
    s.wait_processed(&alice, &private, a["id"].as_str().unwrap())
        .await;
    s.wait_processed(&alice, &shared, b["id"].as_str().unwrap()).await;

    let names = |body: &serde_json::Value| -> Vec<String> {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, body) = s.get("/api/v1/search?q=capybara", Some(&alice)).await;
    assert_eq!(
        names(&body),
        vec!["public.txt", "secret.txt"],
        "ranked by relevance: {body}"
    );
    assert!(body["results"][0]["score"].as_f64().unwrap() >= body["results"][1]["score"].as_f64().unwrap());
    let (_, body) = s.get("/api/v1/search?q=capybara", Some(&bob)).await;
    assert_eq!(names(&body), vec!["public.txt"]);
    // Asking for a KB one may not read yields nothing from it.
    let (_, body) = s
        .get(
            &format!("/api/v1/search?q=capybara&knowledge_id={private}"),
            Some(&bob),
        )
        .await;
    assert!(names(&body).is_empty());
    let (_, body) = s
        .get(
            &format!("/api/v1/search?q=capybara&knowledge_id={private}&knowledge_id={shared}"),
            Some(&alice),
        )
        .await;
    assert_eq!(names(&body).len(), 2);
    let (_, body) = s
        .get(
            &format!("/api/v1/search?q=capybara&knowledge_id={private}"),
            Some(&alice),
        )
        .await;
    assert_eq!(names(&body), vec!["secret.txt"]);
    let (_, body) = s.get("/api/v1/search?q=capybara&limit=1", Some(&alice)).await;
    assert_eq!(names(&body).len(), 1);
    let (_, body) = s.get("/api/v1/search?q=capybara", Some(&admin)).await;
    assert_eq!(names(&body).len(), 2);

    assert_eq!(
        s.get("/api/v1/search?q=capybara", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    for bad in [
        "/api/v1/search",
        "/api/v1/search?q=",
        "/api/v1/search?q=x&limit=0",
        "/api/v1/search?q=x&knowledge_id=nope",
    ] {
        assert_eq!(
            s.get(bad, Some(&alice)).await.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    // Query syntax is plain text, never an error.
    for q in ["%22capybara", "capybara%20OR", "NEAR(", "*", "-capybara"] {
        assert_eq!(
            s.get(&format!("/api/v1/search?q={q}"), Some(&alice)).await.0,
            StatusCode::OK,
            "{q}"
        );
    }
    s.stop().await;
}

async fn deleting_a_knowledge_base_removes_its_files_from_search(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let kb = s.create_kb(&token, "doomed").await;
    let (_, f) = s
        .upload(Some(&token), &kb, "a.txt", b"the ephemeral mayfly".to_vec())
        .await;
    s.wait_processed(&token, &kb, f["id"].as_str().unwrap()).await;
    assert_eq!(
        s.get("/api/v1/search?q=mayfly", Some(&token)).await.1["results"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.call(
            Method::DELETE,
            &format!("/api/v1/knowledge/{kb}"),
            Some(&token),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("/api/v1/search?q=mayfly", Some(&token)).await.1["results"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    s.stop().await;
}

async fn a_same_name_upload_replaces_the_earlier_document(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let kb = s.create_kb(&token, "versions").await;
    let (status, first) = s
        .upload(Some(&token), &kb, "a.txt", b"the first aardvark".to_vec())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let id = first["id"].as_str().unwrap();
    let first = s.wait_processed(&token, &kb, id).await;
    let (status, second) = s
        .upload(Some(&token), &kb, "a.txt", b"the second bonobo".to_vec())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(second["id"], id, "a new version of the same document");
    let second = s.wait_processed(&token, &kb, id).await;
    assert_eq!(second["status"], "processed");
    assert_ne!(second["content_hash"], first["content_hash"]);

    let (_, list) = s
        .get(&format!("/api/v1/knowledge/{kb}/files"), Some(&token))
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["name"], "a.txt");
    let hits = |q: &'static str| {
        let s = &s;
        let token = &token;
        async move {
            s.get(&format!("/api/v1/search?q={q}"), Some(token)).await.1["results"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(hits("aardvark").await, 0, "the old text left search");
    assert_eq!(hits("bonobo").await, 1);
    let old_hash = first["content_hash"].as_str().unwrap();
    assert!(s.state.store.is_orphan_candidate(old_hash).await.unwrap());
    s.stop().await;
}

/// Uploads of the same bytes race the deletion of the previous document holding them and the
/// blob collector (run again and again while the upload is in flight, as if a day had passed,
/// so it acts whenever it can), many times: every document keeps its blob, and each upload is
/// extracted from it.
async fn uploads_and_deletes_of_identical_bytes_racing_the_collector_never_lose_a_blob(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let kb = s.create_kb(&token, "racing").await;
    let grace = kbsync_server::HousekeepingSettings::default().blob_grace;
    let bytes = b"the same racing cheetah".to_vec();
    let mut previous: Option<String> = None;
    for round in 0..15 {
        let name = format!("{round}.txt");
        let uploaded = std::sync::atomic::AtomicBool::new(false);
        let upload = async {
            let answer = s.upload(Some(&token), &kb, &name, bytes.clone()).await;
            uploaded.store(true, std::sync::atomic::Ordering::SeqCst);
            answer
        };
        let delete = async {
            if let Some(id) = &previous {
                let path = format!("/api/v1/knowledge/{kb}/files/{id}");
                assert_eq!(
                    s.call(Method::DELETE, &path, Some(&token), None).await.0,
                    StatusCode::NO_CONTENT
                );
            }
        };
        // Collects again and again while the upload is in flight.
        let collect = async {
            while !uploaded.load(std::sync::atomic::Ordering::SeqCst) {
                let a_day_later = kbsync_core::Clock::now(&s.clock) + chrono::Duration::days(1);
                kbsync_store::collect_blobs(&*s.state.store, &s.state.blobs, a_day_later, grace)
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        };
        let ((status, up), (), ()) = futures::join!(upload, delete, collect);
        assert_eq!(status, StatusCode::ACCEPTED, "{up}");
        let id = up["id"].as_str().unwrap().to_owned();
        let file = s.wait_processed(&token, &kb, &id).await;
        assert_eq!(file["status"], "processed", "round {round}: {file}");
        let (_, list) = s
            .get(&format!("/api/v1/knowledge/{kb}/files"), Some(&token))
            .await;
        for item in list["items"].as_array().unwrap() {
            let hash = item["content_hash"].as_str().unwrap();
            assert!(
                s.state.blobs.open(hash).await.is_ok(),
                "round {round}: {} lost its blob",
                item["name"]
            );
        }
        previous = Some(id);
    }
    s.stop().await;
}

async fn health_readiness_metrics_and_unknown_routes(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    assert_eq!(
        s.get("/healthz", None).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert_eq!(
        s.get("/readyz", None).await,
        (StatusCode::OK, json!({"status": "ready"}))
    );
    s.admin_token().await;
    let resp = s.http.get(format!("{}/metrics", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(text.contains("kbsync_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/api/v1/auth/login\""), "{text}");
    let (status, body) = s.get("/api/v1/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    s.stop().await;
}

async fn latency_metrics_are_exported_as_histograms_with_buckets_not_summaries(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (status, body) = s.get("/api/v1/search?q=orchard", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let resp = s.http.get(format!("{}/metrics", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    // The request's own histogram, labelled by route, on the request-time buckets.
    for le in ["0.001", "0.25", "30", "+Inf"] {
        let bucket = format!(
            "kbsync_http_request_seconds_bucket{{method=\"GET\",route=\"/api/v1/search\",le=\"{le}\"}} "
        );
        assert!(text.contains(&bucket), "{bucket} missing: {text}");
        let search = format!("kbsync_search_seconds_bucket{{le=\"{le}\"}} ");
        assert!(text.contains(&search), "{search} missing: {text}");
    }
    assert!(
        text.contains("kbsync_http_request_seconds_count{method=\"GET\",route=\"/api/v1/search\"} "),
        "{text}"
    );
    assert!(text.contains("# TYPE kbsync_search_seconds histogram"), "{text}");
    assert!(text.contains("kbsync_search_seconds_sum "), "{text}");
    assert!(text.contains("kbsync_search_seconds_count "), "{text}");
    // No histogram of the process is a summary: quantiles cannot be aggregated across instances.
    assert!(!text.contains("quantile="), "{text}");
    s.stop().await;
}
