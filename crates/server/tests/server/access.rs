//! Document-level access through the API: a caller whose permissions at the source name some
//! documents of a knowledge base sees the knowledge base with `documents` access, and only those
//! documents, in its listings, lookups and search; nothing else of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{Db, Options, TestServer};
use kbsync_core::Clock;
use kbsync_store::DocumentAcl;
use reqwest::StatusCode;
use uuid::Uuid;

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    a_caller_named_by_some_access_lists_sees_only_those_documents_everywhere,
);

async fn a_caller_named_by_some_access_lists_sees_only_those_documents_everywhere(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, owner) = s.user(&admin, "owner@example.com").await;
    let (_, alice) = s.user(&admin, "alice@example.com").await;
    let (_, stranger) = s.user(&admin, "stranger@example.com").await;
    let kb_text = s.create_kb(&owner, "team").await;
    let kb: Uuid = kb_text.parse().unwrap();
    let hers = s.synced(kb, "hers", "the walrus budget").await;
    let others = s.synced(kb, "others", "the walrus roadmap").await;
    s.state
        .store
        .set_document_acls(
            kb,
            &[
                DocumentAcl {
                    source_item_id: "hers".into(),
                    principals: vec!["email:alice@example.com".into()],
                },
                DocumentAcl {
                    source_item_id: "others".into(),
                    principals: vec!["email:owner@example.com".into()],
                },
            ],
            s.clock.now(),
        )
        .await
        .unwrap();

    // The knowledge base is listed for her, with `documents` access; strangers see nothing.
    let (status, body) = s.get("/api/v1/knowledge", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["access"], "documents");
    let (status, body) = s.get(&format!("/api/v1/knowledge/{kb}"), Some(&alice)).await;
    assert_eq!(
        (status, body["access"].as_str()),
        (StatusCode::OK, Some("documents"))
    );
    let (status, _) = s.get(&format!("/api/v1/knowledge/{kb}"), Some(&stranger)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Her documents only, with their count; the other one does not exist for her.
    let (status, body) = s
        .get(&format!("/api/v1/knowledge/{kb}/files"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hers.txt"]);
    assert_eq!(body["total"], 1);
    let (status, _) = s
        .get(&format!("/api/v1/knowledge/{kb}/files/{hers}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .get(&format!("/api/v1/knowledge/{kb}/files/{others}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Search finds hers only; the owner finds both.
    let found = |body: &serde_json::Value| -> Vec<String> {
        let mut names: Vec<String> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let (_, body) = s.get("/api/v1/search?q=walrus", Some(&alice)).await;
    assert_eq!(found(&body), ["hers.txt"]);
    let (_, body) = s.get("/api/v1/search?q=walrus", Some(&owner)).await;
    assert_eq!(found(&body), ["hers.txt", "others.txt"]);
    let (_, body) = s.get("/api/v1/search?q=walrus", Some(&stranger)).await;
    assert!(found(&body).is_empty());

    // What speaks of the whole knowledge base (its sources, runs, sharing) stays closed.
    let (status, _) = s
        .get(&format!("/api/v1/knowledge/{kb}/sources"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .get(&format!("/api/v1/knowledge/{kb}/access"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.stop().await;
}
