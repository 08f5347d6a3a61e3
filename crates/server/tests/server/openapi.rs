//! The OpenAPI document end to end: it is served, every operation it documents is routed, real
//! responses of representative routes (success and error) validate against its schemas, and the
//! reference page renders it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{
    Db, OneDriveTest, Options, TestServer, add_sources, connected_kb, team_folder, wait_idle,
};
use crate::json_schema;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    every_documented_operation_is_routed,
    real_responses_validate_against_the_document,
    the_reference_page_renders_the_document_without_anything_from_elsewhere,
);

async fn document(s: &TestServer) -> Value {
    let (status, doc) = s.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    doc
}

/// Every (method, path) the document lists, with its path parameters filled in.
fn operations(doc: &Value) -> Vec<(Method, String, String)> {
    let mut found = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let mut path = template.clone();
        for (param, value) in [
            ("{datasource}", "onedrive"),
            ("{webhook}", "msgraph"),
            ("{id}", "6d5b1c6e-0d0a-4b8e-9a51-0f4c1d2e3f40"),
            ("{file_id}", "6d5b1c6e-0d0a-4b8e-9a51-0f4c1d2e3f41"),
            ("{source_id}", "6d5b1c6e-0d0a-4b8e-9a51-0f4c1d2e3f42"),
        ] {
            path = path.replace(param, value);
        }
        assert!(
            !path.contains('{'),
            "a path parameter this test does not fill: {template}"
        );
        for method in item.as_object().unwrap().keys() {
            found.push((
                method.to_uppercase().parse().unwrap(),
                path.clone(),
                template.clone(),
            ));
        }
    }
    found
}

/// Whether the answer came from the router's fallback (no route) or from a route that lacks the
/// method: what a documented but unrouted operation would answer.
fn unrouted(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && body["error"]["message"] == "route not found")
}

/// Anonymous requests, so that none changes anything: each answers from its route (401, 400, a
/// page, …), never from the fallback. (That the router serves nothing undocumented is the
/// router's own unit test: routes are declared only from the handlers' documentation.)
async fn every_documented_operation_is_routed(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let doc = document(&s).await;
    let operations = operations(&doc);
    assert!(operations.len() > 50, "{}", operations.len());
    // The check can tell: an unknown path and a wrong method are unrouted.
    let (status, body) = s.get("/api/v1/no-such-route", None).await;
    assert!(unrouted(status, &body), "{status} {body}");
    let (status, body) = s.call(Method::PUT, "/api/v1/search", None, None).await;
    assert!(unrouted(status, &body), "{status} {body}");
    for (method, path, template) in operations {
        let (status, body) = s.call(method.clone(), &path, None, None).await;
        assert!(
            !unrouted(status, &body),
            "{method} {template} is documented but not routed: {status} {body}"
        );
    }
    s.stop().await;
}

/// Checks `body` against the schema the document gives for this operation's `status`.
fn assert_documented(doc: &Value, method: &str, template: &str, status: StatusCode, body: &Value) {
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "{method} {template} is not documented");
    let response = &op["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{method} {template} answered {status}, which is not documented: {body}"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {template} {status}: no JSON schema");
    let errors = json_schema::validate(doc, schema, body);
    assert!(
        errors.is_empty(),
        "{method} {template} {status} does not match the document:\n{}\nbody: {body}",
        errors.join("\n")
    );
}

async fn real_responses_validate_against_the_document(db: Db) {
    let Some(s) = TestServer::start(
        db,
        Options {
            onedrive: Some(OneDriveTest { with_secret: true }),
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let doc = document(&s).await;
    let check = |method: &str, template: &str, (status, body): (StatusCode, Value)| {
        assert_documented(&doc, method, template, status, &body);
        body
    };

    // A synced OneDrive knowledge base: sources, a run with its counts, the sync state.
    let kb = connected_kb(&s).await;
    let token = kb.owner.clone();
    let folder = team_folder(
        &s,
        &[
            ("plan.txt", "The quarterly harvest plan for the orchard"),
            ("broken.pdf", "not a pdf at all"),
        ],
    );
    let added = check(
        "post",
        "/api/v1/knowledge/{id}/sources",
        add_sources(&s, &token, &kb.id, json!([folder])).await,
    );
    assert!(added["run_id"].is_string(), "{added}");
    wait_idle(&s, &token, &kb.id).await;
    let kb_path = format!("/api/v1/knowledge/{}", kb.id);
    check(
        "get",
        "/api/v1/knowledge/{id}/sync",
        s.get(&format!("{kb_path}/sync"), Some(&token)).await,
    );
    let runs = check(
        "get",
        "/api/v1/knowledge/{id}/sync/runs",
        s.get(&format!("{kb_path}/sync/runs"), Some(&token)).await,
    );
    assert!(
        !runs["runs"][0]["failures"].as_array().unwrap().is_empty(),
        "{runs}"
    );
    check(
        "get",
        "/api/v1/knowledge/{id}/sources",
        s.get(&format!("{kb_path}/sources"), Some(&token)).await,
    );
    check(
        "get",
        "/api/v1/knowledge/{id}/connection",
        s.get(&format!("{kb_path}/connection"), Some(&token)).await,
    );
    check(
        "get",
        "/api/v1/datasources",
        s.get("/api/v1/datasources", Some(&token)).await,
    );
    let browse = check(
        "get",
        "/api/v1/datasources/{datasource}/browse",
        s.get(
            &format!("/api/v1/datasources/onedrive/browse?knowledge_id={}", kb.id),
            Some(&token),
        )
        .await,
    );
    assert!(!browse["items"].as_array().unwrap().is_empty(), "{browse}");

    // Knowledge bases, their files, search and retrieval.
    let kbs = check(
        "get",
        "/api/v1/knowledge",
        s.get("/api/v1/knowledge", Some(&token)).await,
    );
    assert_eq!(kbs["total"], 1, "{kbs}");
    check(
        "get",
        "/api/v1/knowledge/{id}",
        s.get(&kb_path, Some(&token)).await,
    );
    let files = check(
        "get",
        "/api/v1/knowledge/{id}/files",
        s.get(&format!("{kb_path}/files"), Some(&token)).await,
    );
    assert!(files["total"].as_u64().unwrap() >= 1, "{files}");
    for file in files["items"].as_array().unwrap() {
        let file_path = format!("{kb_path}/files/{}", file["id"].as_str().unwrap());
        check(
            "get",
            "/api/v1/knowledge/{id}/files/{file_id}",
            s.get(&file_path, Some(&token)).await,
        );
    }
    let hits = check(
        "get",
        "/api/v1/search",
        s.get("/api/v1/search?q=harvest", Some(&token)).await,
    );
    assert_eq!(hits["results"][0]["name"], "plan.txt", "{hits}");
    let passages = check(
        "get",
        "/api/v1/retrieve",
        s.get("/api/v1/retrieve?q=harvest&neighbours=1", Some(&token))
            .await,
    );
    assert!(!passages["passages"].as_array().unwrap().is_empty(), "{passages}");
    check(
        "post",
        "/api/v1/tools/search_knowledge",
        s.post(
            "/api/v1/tools/search_knowledge",
            Some(&token),
            json!({"query": "harvest"}),
        )
        .await,
    );
    let (status, local) = s
        .post("/api/v1/knowledge", Some(&token), json!({"name": "Uploads"}))
        .await;
    check("post", "/api/v1/knowledge", (status, local.clone()));
    let uploaded = s
        .upload(
            Some(&token),
            local["id"].as_str().unwrap(),
            "notes.txt",
            b"orchard notes".to_vec(),
        )
        .await;
    check("post", "/api/v1/knowledge/{id}/files", uploaded);

    // The caller, keys and accounts.
    let admin = s.admin_token().await;
    check("get", "/api/v1/me", s.get("/api/v1/me", Some(&token)).await);
    check(
        "post",
        "/api/v1/auth/login",
        s.post(
            "/api/v1/auth/login",
            None,
            json!({"email": crate::common::ADMIN_EMAIL, "password": crate::common::PASSWORD}),
        )
        .await,
    );
    let created = check(
        "post",
        "/api/v1/admin/api-keys",
        s.post(
            "/api/v1/admin/api-keys",
            Some(&admin),
            json!({"name": "indexer", "scope": "read"}),
        )
        .await,
    );
    assert!(
        created["key"].is_string() && created["owner"].is_object(),
        "{created}"
    );
    check(
        "post",
        "/api/v1/me/api-keys",
        s.post(
            "/api/v1/me/api-keys",
            Some(&token),
            json!({"name": "cli", "scope": "write"}),
        )
        .await,
    );
    check(
        "get",
        "/api/v1/me/api-keys",
        s.get("/api/v1/me/api-keys", Some(&token)).await,
    );
    check(
        "get",
        "/api/v1/admin/api-keys",
        s.get("/api/v1/admin/api-keys", Some(&admin)).await,
    );
    check("get", "/api/v1/users", s.get("/api/v1/users", Some(&admin)).await);
    check("get", "/healthz", s.get("/healthz", None).await);
    check("get", "/readyz", s.get("/readyz", None).await);

    // Errors: the shared error shape, at the statuses the document lists.
    check("get", "/api/v1/knowledge", s.get("/api/v1/knowledge", None).await);
    check(
        "get",
        "/api/v1/knowledge/{id}",
        s.get(
            "/api/v1/knowledge/6d5b1c6e-0d0a-4b8e-9a51-0f4c1d2e3f40",
            Some(&token),
        )
        .await,
    );
    check(
        "get",
        "/api/v1/search",
        s.get("/api/v1/search", Some(&token)).await,
    );
    check(
        "get",
        "/api/v1/knowledge",
        s.get("/api/v1/knowledge?limit=0", Some(&token)).await,
    );
    check(
        "post",
        "/api/v1/knowledge",
        s.post("/api/v1/knowledge", Some(&token), json!({"name": 5}))
            .await,
    );
    check(
        "post",
        "/api/v1/auth/login",
        s.post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "wrong"}),
        )
        .await,
    );
    check("get", "/api/v1/users", s.get("/api/v1/users", Some(&token)).await);
    s.stop().await;
}

async fn the_reference_page_renders_the_document_without_anything_from_elsewhere(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let doc = document(&s).await;
    let response = s.http.get(format!("{}/api/docs", s.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let page = response.text().await.unwrap();
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(
            page.contains(&format!("<code class=\"op-path\">{path}</code>")),
            "{path} is not on the page"
        );
    }
    for name in ["ErrorBody", "KnowledgeDto", "SyncStateDto", "RunDto"] {
        assert!(
            page.contains(&format!("<code>{name}</code>")),
            "{name} is not on the page"
        );
    }
    for scheme in ["session_token", "api_key", "session_cookie"] {
        assert!(page.contains(scheme), "{scheme} is not on the page");
    }
    for attribute in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !page.contains(attribute),
            "the page loads something from elsewhere: {attribute}"
        );
    }
    s.stop().await;
}
