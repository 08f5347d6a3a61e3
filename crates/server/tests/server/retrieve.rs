//! Passages for RAG clients (`GET /api/v1/retrieve`) and the OpenAPI tool server for Open WebUI
//! (`/api/v1/tools/…`), including keys trusted to assert the chatting user.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{Db, Options, TestServer};
use kbsync_core::Clock;
use kbsync_ingest::IngestConfig;
use kbsync_store::DocumentAcl;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    retrieve_returns_whole_chunks_whose_offsets_point_into_the_documents_text,
    retrieve_ranks_passages_with_more_query_words_first,
    retrieve_returns_only_passages_the_caller_may_read,
    retrieve_refuses_bad_parameters_with_422_naming_the_field,
    the_tool_server_spec_is_public_json_with_the_search_operation,
    a_trusted_key_with_a_forwarded_email_searches_as_that_user,
    a_key_without_the_flag_ignores_the_forwarded_email,
    a_trusted_key_naming_an_unknown_or_disabled_user_is_refused,
    only_a_service_accounts_key_may_be_trusted_to_assert_users,
);

const EMAIL_HEADER: &str = "X-OpenWebUI-User-Email";

fn passages(body: &Value) -> &Vec<Value> {
    body["passages"]
        .as_array()
        .unwrap_or_else(|| panic!("no passages: {body}"))
}

fn names(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = passages(body)
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

async fn retrieve_returns_whole_chunks_whose_offsets_point_into_the_documents_text(db: Db) {
    let options = Options {
        ingest: IngestConfig {
            max_concurrent: 2,
            chunk_size: 300,
            chunk_overlap: 40,
            ..IngestConfig::default()
        },
        ..Options::default()
    };
    let Some(s) = TestServer::start(db, options).await else {
        return;
    };
    let token = s.admin_token().await;
    let kb = s.create_kb(&token, "manuals").await;
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&format!(
            "Paragraph {i} of the   manual explains routine matters.\r\n"
        ));
        if i == 14 {
            text.push_str("\n\nThe flux capacitor needs 1.21 gigawatts of power.\n\n");
        }
    }
    let (status, body) = s
        .upload(Some(&token), &kb, "manual.txt", text.clone().into_bytes())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let file = body["id"].as_str().unwrap().to_owned();
    s.wait_processed(&token, &kb, &file).await;

    let (status, body) = s
        .get("/api/v1/retrieve?q=flux%20capacitor&neighbours=1", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = &passages(&body)[0];
    assert_eq!(p["document_id"], file.as_str());
    assert_eq!(p["knowledge_id"], kb.as_str());
    assert_eq!(p["name"], "manual.txt");
    assert_eq!(p["path"], "/manual.txt");
    let chunk = p["text"].as_str().unwrap();
    assert!(chunk.contains("flux capacitor"), "{chunk}");
    assert!(
        chunk.chars().count() > 240,
        "a whole chunk, not a snippet: {chunk:?}"
    );
    // The offsets select exactly the chunk from the document's normalised text.
    let normalised: Vec<char> = kbsync_ingest::normalized_text(&text).chars().collect();
    let (start, end) = (
        p["start"].as_u64().unwrap() as usize,
        p["end"].as_u64().unwrap() as usize,
    );
    assert_eq!(normalised[start..end].iter().collect::<String>(), chunk);
    // One neighbour each side, adjacent in the text.
    let before = p["before"].as_array().unwrap();
    let after = p["after"].as_array().unwrap();
    assert_eq!((before.len(), after.len()), (1, 1), "{p}");
    let whole: String = normalised.iter().collect();
    let b = before[0].as_str().unwrap();
    let a = after[0].as_str().unwrap();
    assert!(
        whole[..whole.find(chunk).unwrap()].contains(&b[..b.len() / 2]),
        "{b}"
    );
    assert!(
        whole.contains(a) && whole.find(a).unwrap() > whole.find(chunk).unwrap(),
        "{a}"
    );
    // Without neighbours there are none in the answer.
    let (_, body) = s.get("/api/v1/retrieve?q=capacitor", Some(&token)).await;
    assert!(passages(&body)[0].get("before").is_none(), "{body}");
    s.stop().await;
}

async fn retrieve_ranks_passages_with_more_query_words_first(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    let kb: Uuid = s.create_kb(&token, "ranking").await.parse().unwrap();
    s.synced(kb, "one", "the heron nests by the lake").await;
    s.synced(kb, "both", "the heron migration route over the lake and hills")
        .await;
    s.synced(kb, "other", "the migration of software to a new server")
        .await;
    s.synced(kb, "none", "nothing relevant at all").await;
    let (status, body) = s
        .get(
            "/api/v1/retrieve?q=When%20does%20the%20heron%20migration%20start%3F&top_k=5",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got: Vec<&str> = passages(&body)
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), 3, "{body}");
    assert_eq!(got[0], "both.txt", "{body}");
    assert!(!got.contains(&"none.txt"));
    let scores: Vec<f64> = passages(&body)
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // The search API uses the same semantics: any word, best first.
    let (_, body) = s.get("/api/v1/search?q=heron%20migration", Some(&token)).await;
    assert_eq!(body["results"][0]["name"], "both.txt", "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 3, "{body}");
    s.stop().await;
}

/// A knowledge base of two documents, one readable by alice at the source, one by its owner
/// only; and a second one nobody but the owner reads. Returns (owner, alice, stranger tokens),
/// alice's id, and the knowledge base ids.
async fn shared_documents(s: &TestServer) -> (String, String, String, String, Uuid, Uuid) {
    let admin = s.admin_token().await;
    let (_, owner) = s.user(&admin, "owner@example.com").await;
    let (alice_id, alice) = s.user(&admin, "alice@example.com").await;
    let (_, stranger) = s.user(&admin, "stranger@example.com").await;
    let kb: Uuid = s.create_kb(&owner, "team").await.parse().unwrap();
    let private: Uuid = s.create_kb(&owner, "private").await.parse().unwrap();
    s.synced(kb, "hers", "the walrus budget").await;
    s.synced(kb, "others", "the walrus roadmap").await;
    s.synced(private, "secret", "walrus secrets").await;
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
    (owner, alice, stranger, alice_id, kb, private)
}

async fn retrieve_returns_only_passages_the_caller_may_read(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let (owner, alice, stranger, _, kb, private) = shared_documents(&s).await;
    let (_, body) = s.get("/api/v1/retrieve?q=walrus", Some(&alice)).await;
    assert_eq!(names(&body), ["hers.txt"]);
    let (_, body) = s.get("/api/v1/retrieve?q=walrus", Some(&owner)).await;
    assert_eq!(names(&body), ["hers.txt", "others.txt", "secret.txt"]);
    let (_, body) = s.get("/api/v1/retrieve?q=walrus", Some(&stranger)).await;
    assert!(passages(&body).is_empty(), "{body}");
    // Naming a knowledge base narrows, never widens.
    let (_, body) = s
        .get(
            &format!("/api/v1/retrieve?q=walrus&knowledge_id={private}"),
            Some(&alice),
        )
        .await;
    assert!(passages(&body).is_empty(), "{body}");
    let (_, body) = s
        .get(
            &format!("/api/v1/retrieve?q=walrus&knowledge_id={kb}&knowledge_id={private}"),
            Some(&owner),
        )
        .await;
    assert_eq!(names(&body), ["hers.txt", "others.txt", "secret.txt"]);
    let (_, body) = s
        .get(
            &format!("/api/v1/retrieve?q=walrus&knowledge_id={kb}"),
            Some(&owner),
        )
        .await;
    assert_eq!(names(&body), ["hers.txt", "others.txt"]);
    assert_eq!(
        s.get("/api/v1/retrieve?q=walrus", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

async fn retrieve_refuses_bad_parameters_with_422_naming_the_field(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let token = s.admin_token().await;
    for (path, field) in [
        ("/api/v1/retrieve", "q"),
        ("/api/v1/retrieve?q=", "q"),
        ("/api/v1/retrieve?q=%20%20", "q"),
        ("/api/v1/retrieve?q=x&top_k=0", "top_k"),
        ("/api/v1/retrieve?q=x&top_k=51", "top_k"),
        ("/api/v1/retrieve?q=x&top_k=many", "top_k"),
        ("/api/v1/retrieve?q=x&neighbours=4", "neighbours"),
        ("/api/v1/retrieve?q=x&neighbours=-1", "neighbours"),
        ("/api/v1/retrieve?q=x&knowledge_id=nope", "knowledge_id"),
    ] {
        let (status, body) = s.get(path, Some(&token)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert!(body.to_string().contains(field), "{path}: {body}");
    }
    let long = "a".repeat(1001);
    let (status, _) = s.get(&format!("/api/v1/retrieve?q={long}"), Some(&token)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = s
        .get("/api/v1/retrieve?q=x&top_k=50&neighbours=3", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.stop().await;
}

async fn the_tool_server_spec_is_public_json_with_the_search_operation(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let (status, spec) = s.get("/api/v1/tools/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK, "{spec}");
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"), "{spec}");
    assert!(spec["info"]["title"].is_string() && spec["info"]["version"].is_string());
    let op = &spec["paths"]["/api/v1/tools/search_knowledge"]["post"];
    assert_eq!(op["operationId"], "search_knowledge");
    assert!(op["summary"].as_str().unwrap().len() > 10);
    assert!(op["description"].as_str().unwrap().len() > 50);
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["query"]));
    assert_eq!(schema["properties"]["query"]["type"], "string");
    assert_eq!(schema["properties"]["top_k"]["type"], "integer");
    let answer = &op["responses"]["200"]["content"]["application/json"]["schema"];
    let item = &answer["properties"]["passages"]["items"]["properties"];
    for field in ["name", "web_url", "text", "path", "score"] {
        assert!(item.get(field).is_some(), "{field}: {answer}");
    }
    // No $ref anywhere: Open WebUI reads the schemas as they are written.
    assert!(!spec.to_string().contains("$ref"));
    assert_eq!(spec["servers"][0]["url"], "http://127.0.0.1");
    // The operation needs a credential.
    let (status, _) = s
        .post("/api/v1/tools/search_knowledge", None, json!({"query": "x"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

/// A read-only service key, optionally trusted to assert users; returns (key, key id, account id).
pub(crate) async fn service_key(s: &TestServer, admin: &str, trusted: bool) -> (String, String, String) {
    let (status, body) = s
        .post(
            "/api/v1/admin/api-keys",
            Some(admin),
            json!({"name": "open-webui", "scope": "read"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["trusted_user_assertion"], false);
    let key = body["key"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();
    let account = body["owner"]["id"].as_str().unwrap().to_owned();
    if trusted {
        let (status, body) = s
            .call(
                Method::PATCH,
                &format!("/api/v1/admin/api-keys/{id}"),
                Some(admin),
                Some(json!({"trusted_user_assertion": true})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["trusted_user_assertion"], true);
    }
    (key, id, account)
}

/// `POST /api/v1/tools/search_knowledge` with a key and, optionally, a forwarded email.
async fn tool_search(s: &TestServer, key: &str, email: Option<&str>, query: &str) -> (StatusCode, Value) {
    let mut req = s
        .http
        .post(format!("{}/api/v1/tools/search_knowledge", s.base))
        .bearer_auth(key)
        .json(&json!({"query": query, "top_k": 10}));
    if let Some(email) = email {
        req = req
            .header(EMAIL_HEADER, email)
            .header("X-OpenWebUI-User-Name", "Someone")
            .header("X-OpenWebUI-User-Role", "user");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The service account reads one knowledge base of its own ("svc.txt"), so that answering as it
/// is told apart from answering as the asserted user.
async fn grant_service_account(s: &TestServer, owner: &str, account: &str) {
    let kb = s.create_kb(owner, "for-the-service").await;
    s.synced(kb.parse().unwrap(), "svc", "walrus facts for the service")
        .await;
    let (status, body) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{kb}/access"),
            Some(owner),
            Some(json!({"read": [account], "write": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn a_trusted_key_with_a_forwarded_email_searches_as_that_user(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let (owner, _, _, _, _, _) = shared_documents(&s).await;
    let admin = s.admin_token().await;
    let (key, _, account) = service_key(&s, &admin, true).await;
    grant_service_account(&s, &owner, &account).await;

    let (status, body) = tool_search(&s, &key, Some("Alice@Example.com"), "walrus").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Hers only: not the owner's document of the same knowledge base, not the service's own.
    assert_eq!(names(&body), ["hers.txt"]);
    let p = &passages(&body)[0];
    assert_eq!(p["text"], "the walrus budget");
    assert!(p.get("web_url").is_some() && p["path"] == "/hers.txt", "{p}");
    // The owner's view through the same key.
    let (_, body) = tool_search(&s, &key, Some("owner@example.com"), "walrus").await;
    assert_eq!(names(&body), ["hers.txt", "others.txt", "secret.txt", "svc.txt"]);
    // Without the header, the key answers as its own account.
    let (_, body) = tool_search(&s, &key, None, "walrus").await;
    assert_eq!(names(&body), ["svc.txt"]);
    // Bad arguments are refused naming the field.
    let (status, body) = tool_search(&s, &key, Some("alice@example.com"), "  ").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("query"), "{body}");
    s.stop().await;
}

async fn a_key_without_the_flag_ignores_the_forwarded_email(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let (owner, alice, _, _, _, _) = shared_documents(&s).await;
    let admin = s.admin_token().await;
    let (key, _, account) = service_key(&s, &admin, false).await;
    grant_service_account(&s, &owner, &account).await;
    let (status, body) = tool_search(&s, &key, Some("alice@example.com"), "walrus").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body), ["svc.txt"]);
    // Nor does a person's session: alice naming the owner still reads as alice.
    let mut req = s
        .http
        .post(format!("{}/api/v1/tools/search_knowledge", s.base))
        .bearer_auth(&alice)
        .json(&json!({"query": "walrus"}));
    req = req.header(EMAIL_HEADER, "owner@example.com");
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(names(&body), ["hers.txt"]);
    s.stop().await;
}

async fn a_trusted_key_naming_an_unknown_or_disabled_user_is_refused(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let (owner, _, _, alice_id, _, _) = shared_documents(&s).await;
    let admin = s.admin_token().await;
    let (key, _, account) = service_key(&s, &admin, true).await;
    grant_service_account(&s, &owner, &account).await;
    let (status, body) = tool_search(&s, &key, Some("nobody@example.com"), "walrus").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("no kbsync account"), "{body}");
    let (status, _) = tool_search(&s, &key, Some(""), "walrus").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A service account's synthetic email is not a user to assert either.
    let (_, me) = s.get("/api/v1/me", Some(&key)).await;
    let (status, _) = tool_search(&s, &key, Some(me["email"].as_str().unwrap()), "walrus").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.disable_in_database(&alice_id).await;
    let (status, body) = tool_search(&s, &key, Some("alice@example.com"), "walrus").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("disabled"), "{body}");
    s.stop().await;
}

async fn only_a_service_accounts_key_may_be_trusted_to_assert_users(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (_, alice) = s.user(&admin, "alice@example.com").await;
    let (status, body) = s
        .post(
            "/api/v1/me/api-keys",
            Some(&alice),
            json!({"name": "mine", "scope": "read"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let personal = body["id"].as_str().unwrap().to_owned();
    let patch = |id: String, token: String, trusted: bool| {
        let s = &s;
        async move {
            s.call(
                Method::PATCH,
                &format!("/api/v1/admin/api-keys/{id}"),
                Some(&token),
                Some(json!({"trusted_user_assertion": trusted})),
            )
            .await
        }
    };
    let (status, body) = patch(personal.clone(), admin.clone(), true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("service account"), "{body}");
    // Not an admin: refused; an API key (even an admin's): refused; unknown key: 404.
    let (svc_key, svc_id, _) = service_key(&s, &admin, false).await;
    assert_eq!(
        patch(svc_id.clone(), alice.clone(), true).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        patch(svc_id.clone(), svc_key.clone(), true).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        patch(Uuid::new_v4().to_string(), admin.clone(), true).await.0,
        StatusCode::NOT_FOUND
    );
    // Turned on and off again; the list shows it.
    assert_eq!(patch(svc_id.clone(), admin.clone(), true).await.0, StatusCode::OK);
    let (_, all) = s.get("/api/v1/admin/api-keys", Some(&admin)).await;
    let listed = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == svc_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["trusted_user_assertion"], true);
    let (status, body) = patch(svc_id.clone(), admin.clone(), false).await;
    assert_eq!(
        (status, &body["trusted_user_assertion"]),
        (StatusCode::OK, &json!(false))
    );
    // Off: the header is ignored again.
    let (status, body) = tool_search(&s, &svc_key, Some("alice@example.com"), "walrus").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.stop().await;
}
