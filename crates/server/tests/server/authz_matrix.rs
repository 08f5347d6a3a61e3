//! The authorisation matrix: every operation of the OpenAPI document the server serves (so every
//! route of the router, which is built from the same declarations) × every kind of caller, each
//! answered with the status [`EXPECTED`] says. An operation missing from the table, or an entry
//! naming no operation, fails the test: a new route cannot ship without its rule.
//!
//! Requests reach the checks for real: path parameters name objects that exist (made in the
//! fixture, or fresh for each case when the operation changes or deletes something), and bodies
//! are valid, so an allowed caller gets the operation's own success status, not merely "not 401".
//! The whole matrix is printed (`--nocapture`), mismatches marked, with their bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::{Db, OneDriveTest, OpenWebUiTest, Options, PASSWORD, TestServer, team_folder};
use kbsync_core::Clock as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    every_operation_answers_every_kind_of_caller_as_the_authorisation_table_says,
);

/// Who calls. Key principals hold keys of the knowledge bases' manager (`ReadKey`, `WriteKey`)
/// or of an admin (`AdminReadKey`, `AdminWriteKey`), so that a key's scope is seen on knowledge
/// base routes and on administration routes alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Principal {
    Anonymous,
    /// Signed in, no grant on the knowledge bases.
    Stranger,
    /// A manual `read` grant.
    Reader,
    /// A manual `write` grant.
    Writer,
    /// The knowledge bases' owner (manage access).
    Manager,
    Admin,
    /// The session token of an account disabled after signing in (it had a `write` grant).
    Disabled,
    /// A `write` key of that disabled account, made before it was disabled.
    DisabledKey,
    ReadKey,
    WriteKey,
    AdminReadKey,
    AdminWriteKey,
}

use Principal::*;

const PRINCIPALS: [Principal; 12] = [
    Anonymous,
    Stranger,
    Reader,
    Writer,
    Manager,
    Admin,
    Disabled,
    DisabledKey,
    ReadKey,
    WriteKey,
    AdminReadKey,
    AdminWriteKey,
];

/// A knowledge base access level, as a principal holds it on the fixture's knowledge bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KbAccess {
    None,
    Read,
    Write,
    Manage,
}

impl Principal {
    fn short(self) -> &'static str {
        match self {
            Anonymous => "anon",
            Stranger => "strangr",
            Reader => "reader",
            Writer => "writer",
            Manager => "manager",
            Admin => "admin",
            Disabled => "disabld",
            DisabledKey => "dis-key",
            ReadKey => "r-key",
            WriteKey => "w-key",
            AdminReadKey => "adm-rkey",
            AdminWriteKey => "adm-wkey",
        }
    }

    /// Whether the credential is accepted at all (a disabled account's are not).
    fn authenticates(self) -> bool {
        !matches!(self, Anonymous | Disabled | DisabledKey)
    }

    fn is_key(self) -> bool {
        matches!(
            self,
            DisabledKey | ReadKey | WriteKey | AdminReadKey | AdminWriteKey
        )
    }

    fn is_read_key(self) -> bool {
        matches!(self, ReadKey | AdminReadKey)
    }

    fn is_admin(self) -> bool {
        matches!(self, Admin | AdminReadKey | AdminWriteKey)
    }

    fn kb_access(self) -> KbAccess {
        match self {
            Anonymous | Stranger | Disabled | DisabledKey => KbAccess::None,
            Reader => KbAccess::Read,
            Writer => KbAccess::Write,
            Manager | ReadKey | WriteKey | Admin | AdminReadKey | AdminWriteKey => KbAccess::Manage,
        }
    }
}

/// An operation's authorisation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// No sign-in (health, documentation, sign-in, OAuth callback, webhooks): every caller gets
    /// the same answer, whatever credential it sends.
    Public,
    /// Any accepted credential, a `read` key even on POST (the tool server only reads).
    AnyCredential,
    /// Any accepted credential; a `read` key only on GET.
    SignedIn,
    /// A signed-in session, never an API key (credential management).
    Session,
    /// Ends the session whose token the request carries: any session token (an already dead one
    /// too: nothing to end), never an API key (400).
    Logout,
    /// Sees the knowledge base (reader and up); to anyone else it does not exist (404).
    KbSee,
    /// Adds and removes documents (writer and up); a reader is told no (403).
    KbWrite,
    /// Changes, shares, connects and deletes (owner or admin); readers and writers are told no.
    KbManage,
    /// Administrators (403 for everyone else).
    Admin,
    /// Administrators with a signed-in session (credential management).
    AdminSession,
}

/// The table: per operation (`METHOD /path` as the OpenAPI document spells it), its rule and the
/// status an allowed caller gets. Every other caller's status follows from the rule
/// ([`expected`]).
///
/// Where the allowed status is not a 2xx, the operation cannot succeed in this test server, and
/// the status given is the one that comes after every authorisation check (noted per entry).
const EXPECTED: &[(&str, Rule, u16)] = &[
    // Operations, documentation.
    ("GET /healthz", Rule::Public, 200),
    ("GET /readyz", Rule::Public, 200),
    ("GET /metrics", Rule::Public, 200),
    ("GET /api/docs", Rule::Public, 200),
    ("GET /api/v1/openapi.json", Rule::Public, 200),
    ("GET /api/v1/tools/openapi.json", Rule::Public, 200),
    // Signing in and the caller's own account.
    ("POST /api/v1/auth/login", Rule::Public, 200),
    ("POST /api/v1/auth/logout", Rule::Logout, 204),
    ("GET /api/v1/me", Rule::SignedIn, 200),
    ("POST /api/v1/me/password", Rule::Session, 204),
    ("POST /api/v1/me/api-keys", Rule::Session, 201),
    ("GET /api/v1/me/api-keys", Rule::SignedIn, 200),
    ("DELETE /api/v1/me/api-keys/{id}", Rule::SignedIn, 204),
    // Administration. Creating accounts and keys, changing roles, enabling and passwords need a
    // signed-in admin, never a key (a leaked key must not make itself an admin); an admin's
    // `write` key may still delete accounts and revoke keys.
    ("POST /api/v1/admin/api-keys", Rule::AdminSession, 201),
    ("GET /api/v1/admin/api-keys", Rule::Admin, 200),
    ("PATCH /api/v1/admin/api-keys/{id}", Rule::AdminSession, 200),
    ("DELETE /api/v1/admin/api-keys/{id}", Rule::Admin, 204),
    ("POST /api/v1/users", Rule::AdminSession, 201),
    ("GET /api/v1/users", Rule::Admin, 200),
    ("GET /api/v1/users/{id}", Rule::Admin, 200),
    ("PATCH /api/v1/users/{id}", Rule::AdminSession, 200),
    ("DELETE /api/v1/users/{id}", Rule::Admin, 204),
    ("POST /api/v1/users/{id}/password", Rule::AdminSession, 204),
    // Knowledge bases.
    ("POST /api/v1/knowledge", Rule::SignedIn, 201),
    ("GET /api/v1/knowledge", Rule::SignedIn, 200),
    ("GET /api/v1/knowledge/{id}", Rule::KbSee, 200),
    ("PATCH /api/v1/knowledge/{id}", Rule::KbManage, 200),
    ("DELETE /api/v1/knowledge/{id}", Rule::KbManage, 204),
    ("GET /api/v1/knowledge/{id}/access", Rule::KbManage, 200),
    ("PUT /api/v1/knowledge/{id}/access", Rule::KbManage, 200),
    // Files.
    ("POST /api/v1/knowledge/{id}/files", Rule::KbWrite, 202),
    ("GET /api/v1/knowledge/{id}/files", Rule::KbSee, 200),
    ("GET /api/v1/knowledge/{id}/files/{file_id}", Rule::KbSee, 200),
    (
        "DELETE /api/v1/knowledge/{id}/files/{file_id}",
        Rule::KbWrite,
        204,
    ),
    (
        "GET /api/v1/knowledge/{id}/files/{file_id}/content",
        Rule::KbSee,
        200,
    ),
    // Search: any caller, over what they may read.
    ("GET /api/v1/search", Rule::SignedIn, 200),
    ("GET /api/v1/retrieve", Rule::SignedIn, 200),
    ("POST /api/v1/tools/search_knowledge", Rule::AnyCredential, 200),
    // Sources and sync.
    ("POST /api/v1/knowledge/{id}/sources", Rule::KbManage, 202),
    ("GET /api/v1/knowledge/{id}/sources", Rule::KbSee, 200),
    (
        "DELETE /api/v1/knowledge/{id}/sources/{source_id}",
        Rule::KbManage,
        204,
    ),
    ("POST /api/v1/knowledge/{id}/sync", Rule::KbWrite, 202),
    ("GET /api/v1/knowledge/{id}/sync", Rule::KbSee, 200),
    ("POST /api/v1/knowledge/{id}/sync/cancel", Rule::KbWrite, 202),
    ("GET /api/v1/knowledge/{id}/sync/events", Rule::KbSee, 200),
    ("GET /api/v1/knowledge/{id}/sync/runs", Rule::KbSee, 200),
    // Datasources and connections.
    ("GET /api/v1/datasources", Rule::SignedIn, 200),
    (
        "GET /api/v1/datasources/{datasource}/auth/initiate",
        Rule::KbManage,
        200,
    ),
    // 409: app-only access is not configured in this server (checked after the admin and manage
    // checks).
    (
        "POST /api/v1/datasources/{datasource}/auth/app-only",
        Rule::Admin,
        409,
    ),
    (
        "GET /api/v1/datasources/{datasource}/auth/callback",
        Rule::Public,
        200,
    ),
    ("GET /api/v1/datasources/{datasource}/browse", Rule::KbManage, 200),
    // The same handlers under the connectors names (`/api/v1/connectors/gdrive/…`).
    (
        "GET /api/v1/connectors/{datasource}/auth/initiate",
        Rule::KbManage,
        200,
    ),
    (
        "GET /api/v1/connectors/{datasource}/auth/callback",
        Rule::Public,
        200,
    ),
    ("GET /api/v1/connectors/{datasource}/browse", Rule::KbManage, 200),
    ("GET /api/v1/knowledge/{id}/connection", Rule::KbSee, 200),
    ("DELETE /api/v1/knowledge/{id}/connection", Rule::KbManage, 204),
    // Publishing into Open WebUI.
    ("GET /api/v1/knowledge/{id}/openwebui", Rule::KbManage, 200),
    ("PUT /api/v1/knowledge/{id}/openwebui", Rule::KbManage, 200),
    ("DELETE /api/v1/knowledge/{id}/openwebui", Rule::KbManage, 204),
    (
        "POST /api/v1/knowledge/{id}/openwebui/publish",
        Rule::KbManage,
        202,
    ),
    (
        "GET /api/v1/knowledge/{id}/openwebui/publishes",
        Rule::KbManage,
        200,
    ),
    // Change notifications (each proves itself with its subscription's client state).
    ("POST /api/v1/webhooks/{webhook}", Rule::Public, 200),
    ("POST /api/v1/webhooks/{webhook}/lifecycle", Rule::Public, 200),
];

/// The status `who` must get from an operation under `rule` whose allowed callers get `ok`.
fn expected(rule: Rule, who: Principal, method: &str, ok: u16) -> u16 {
    if rule == Rule::Public {
        return ok;
    }
    if who == Anonymous {
        return 401;
    }
    if rule == Rule::Logout {
        return if who.is_key() { 400 } else { ok };
    }
    if !who.authenticates() {
        return 401;
    }
    if who.is_read_key() && method != "GET" && rule != Rule::AnyCredential {
        return 403;
    }
    if who.is_key() && matches!(rule, Rule::Session | Rule::AdminSession) {
        return 403;
    }
    let access = who.kb_access();
    match rule {
        Rule::Public | Rule::Logout | Rule::AnyCredential | Rule::SignedIn | Rule::Session => ok,
        Rule::Admin | Rule::AdminSession if who.is_admin() => ok,
        Rule::Admin | Rule::AdminSession => 403,
        Rule::KbSee | Rule::KbWrite | Rule::KbManage if access == KbAccess::None => 404,
        Rule::KbSee => ok,
        Rule::KbWrite if access >= KbAccess::Write => ok,
        Rule::KbManage if access >= KbAccess::Manage => ok,
        Rule::KbWrite | Rule::KbManage => 403,
    }
}

/// Every operation of an OpenAPI document, as `METHOD /path`.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                found.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    found
}

/// The table and the document name the same operations, once each.
fn check_table_covers(doc_ops: &BTreeSet<String>) {
    let mut table = BTreeSet::new();
    for (op, _, _) in EXPECTED {
        assert!(table.insert(op.to_string()), "the table names {op} twice");
    }
    let missing: Vec<_> = doc_ops.difference(&table).collect();
    let unknown: Vec<_> = table.difference(doc_ops).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "the authorisation table is out of step with the router.\n\
         Operations without an entry (add one to EXPECTED in {}): {missing:?}\n\
         Entries naming no operation: {unknown:?}",
        file!()
    );
}

/// The table and the router agree, without a server (a quick failure for a new route).
#[test]
fn the_authorisation_table_names_exactly_the_operations_the_router_serves() {
    let doc = serde_json::to_value(kbsync_server::openapi::document()).unwrap();
    let ops = operations(&doc);
    assert!(ops.len() > 50, "only {} operations", ops.len());
    check_table_covers(&ops);
}

/// What one case sends.
struct Request {
    method: Method,
    /// Path and query.
    path: String,
    body: Body,
    cookie: Option<String>,
}

enum Body {
    None,
    Json(Value),
    Upload(String),
}

impl Request {
    fn new(method: &str, path: impl Into<String>) -> Self {
        Self {
            method: method.parse().unwrap(),
            path: path.into(),
            body: Body::None,
            cookie: None,
        }
    }

    fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
}

/// The objects the cases work on, and every principal's credential.
struct Fixture {
    credentials: BTreeMap<Principal, String>,
    /// The session each principal's account holds, to make fresh keys of that account.
    owner_session: BTreeMap<Principal, String>,
    manager: String,
    admin: String,
    reader_id: String,
    writer_id: String,
    /// The disabled account: a writer of every knowledge base of the fixture.
    disabled_id: String,
    /// An account administrators act on (read, change, reset password).
    target_id: String,
    /// A local knowledge base with one processed file.
    local_kb: String,
    file_id: String,
    /// A connected OneDrive knowledge base.
    drive_kb: String,
    /// A picker item of the emulated drive (a folder).
    team: Value,
    service_key_id: String,
    unique: AtomicU32,
}

impl Fixture {
    async fn new(s: &TestServer) -> Fixture {
        let admin = s.admin_token().await;
        let (_, stranger) = s.user(&admin, "stranger@example.com").await;
        let (reader_id, reader) = s.user(&admin, "reader@example.com").await;
        let (writer_id, writer) = s.user(&admin, "writer@example.com").await;
        let (_, manager) = s.user(&admin, "manager@example.com").await;
        let (disabled_id, disabled) = s.user(&admin, "disabled@example.com").await;
        let (target_id, _) = s.user(&admin, "target@example.com").await;
        s.user(&admin, "login@example.com").await;

        let key = |session: String, scope: &'static str| async move {
            let (status, body) = s
                .post(
                    "/api/v1/me/api-keys",
                    Some(&session),
                    json!({"name": format!("{scope} key"), "scope": scope}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["key"].as_str().unwrap().to_owned()
        };
        let read_key = key(manager.clone(), "read").await;
        let write_key = key(manager.clone(), "write").await;
        let admin_read_key = key(admin.clone(), "read").await;
        let admin_write_key = key(admin.clone(), "write").await;
        let disabled_key = key(disabled.clone(), "write").await;

        let mut fx = Fixture {
            credentials: BTreeMap::new(),
            owner_session: BTreeMap::new(),
            manager: manager.clone(),
            admin: admin.clone(),
            reader_id,
            writer_id,
            disabled_id: disabled_id.clone(),
            target_id,
            local_kb: String::new(),
            file_id: String::new(),
            drive_kb: String::new(),
            team: team_folder(s, &[("plan.txt", "the walrus plan")]),
            service_key_id: String::new(),
            unique: AtomicU32::new(0),
        };
        fx.local_kb = fx.fresh_kb(s, "local").await;
        let (status, body) = s
            .upload(
                Some(&manager),
                &fx.local_kb,
                "walrus.txt",
                b"the walrus budget".to_vec(),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        fx.file_id = body["id"].as_str().unwrap().to_owned();
        let processed = s.wait_processed(&manager, &fx.local_kb, &fx.file_id).await;
        assert_eq!(processed["status"], "processed", "{processed}");
        fx.drive_kb = fx.fresh_connected_kb(s).await;
        fx.service_key_id = fx.fresh_service_key(s).await;

        // The disabled account (a writer of every knowledge base) is disabled by an admin.
        let (status, body) = s
            .call(
                Method::PATCH,
                &format!("/api/v1/users/{disabled_id}"),
                Some(&admin),
                Some(json!({"disabled": true})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        for (who, credential) in [
            (Stranger, stranger.clone()),
            (Reader, reader.clone()),
            (Writer, writer.clone()),
            (Manager, manager.clone()),
            (Admin, admin.clone()),
            (Disabled, disabled),
            (DisabledKey, disabled_key),
            (ReadKey, read_key),
            (WriteKey, write_key),
            (AdminReadKey, admin_read_key),
            (AdminWriteKey, admin_write_key),
        ] {
            fx.credentials.insert(who, credential);
        }
        for (who, session) in [
            (Stranger, stranger),
            (Reader, reader),
            (Writer, writer),
            (Manager, manager.clone()),
            (Admin, admin.clone()),
            (ReadKey, manager.clone()),
            (WriteKey, manager),
            (AdminReadKey, admin.clone()),
            (AdminWriteKey, admin),
        ] {
            fx.owner_session.insert(who, session);
        }
        fx
    }

    fn next(&self) -> u32 {
        self.unique.fetch_add(1, Ordering::Relaxed)
    }

    /// The manual grants of every knowledge base of the fixture: the reader reads, the writer and
    /// the disabled account write.
    fn grants(&self) -> Value {
        json!({"read": [self.reader_id], "write": [self.writer_id, self.disabled_id]})
    }

    async fn grant(&self, s: &TestServer, kb: &str) {
        let (status, body) = s
            .call(
                Method::PUT,
                &format!("/api/v1/knowledge/{kb}/access"),
                Some(&self.manager),
                Some(self.grants()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// A knowledge base of the manager's, shared with the reader and the writer.
    async fn fresh_kb(&self, s: &TestServer, kb_type: &str) -> String {
        let (status, body) = s
            .post(
                "/api/v1/knowledge",
                Some(&self.manager),
                json!({"name": format!("kb {}", self.next()), "type": kb_type}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        self.grant(s, &id).await;
        id
    }

    async fn fresh_connected_kb(&self, s: &TestServer) -> String {
        let kb = self.fresh_kb(s, "onedrive").await;
        s.connect(&self.manager, &kb).await;
        kb
    }

    /// A service account's key (its id).
    async fn fresh_service_key(&self, s: &TestServer) -> String {
        let (status, body) = s
            .post(
                "/api/v1/admin/api-keys",
                Some(&self.admin),
                json!({"name": format!("service {}", self.next()), "scope": "read"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// A fresh key of `who`'s own account (the manager's for callers without a live session).
    async fn fresh_own_key(&self, s: &TestServer, who: Principal) -> String {
        let session = self.owner_session.get(&who).unwrap_or(&self.manager);
        let (status, body) = s
            .post(
                "/api/v1/me/api-keys",
                Some(session),
                json!({"name": format!("own {}", self.next()), "scope": "read"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// An account made for one case.
    async fn fresh_user(&self, s: &TestServer) -> String {
        let (status, body) = s
            .post(
                "/api/v1/users",
                Some(&self.admin),
                json!({"email": format!("fresh-{}@example.com", self.next()), "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// The request of one case; objects that the operation changes or deletes are made for it.
    async fn request(&self, s: &TestServer, op: &str, who: Principal) -> Request {
        let (method, template) = op.split_once(' ').unwrap();
        let n = self.next();
        let local = &self.local_kb;
        let drive = &self.drive_kb;
        let request = match op {
            "GET /healthz"
            | "GET /readyz"
            | "GET /metrics"
            | "GET /api/docs"
            | "GET /api/v1/openapi.json"
            | "GET /api/v1/tools/openapi.json"
            | "GET /api/v1/me"
            | "GET /api/v1/me/api-keys"
            | "GET /api/v1/admin/api-keys"
            | "GET /api/v1/users"
            | "GET /api/v1/knowledge"
            | "GET /api/v1/datasources" => Request::new(method, template),
            "POST /api/v1/auth/login" => Request::new(method, template)
                .json(json!({"email": "login@example.com", "password": PASSWORD})),
            "POST /api/v1/auth/logout" => Request::new(method, template),
            "POST /api/v1/me/password" => Request::new(method, template)
                .json(json!({"current_password": PASSWORD, "new_password": PASSWORD})),
            "POST /api/v1/me/api-keys" | "POST /api/v1/admin/api-keys" => {
                Request::new(method, template).json(json!({"name": format!("key {n}"), "scope": "read"}))
            }
            "DELETE /api/v1/me/api-keys/{id}" => {
                let key = self.fresh_own_key(s, who).await;
                Request::new(method, format!("/api/v1/me/api-keys/{key}"))
            }
            "PATCH /api/v1/admin/api-keys/{id}" => {
                Request::new(method, format!("/api/v1/admin/api-keys/{}", self.service_key_id))
                    .json(json!({"trusted_user_assertion": false}))
            }
            "DELETE /api/v1/admin/api-keys/{id}" => {
                let key = self.fresh_service_key(s).await;
                Request::new(method, format!("/api/v1/admin/api-keys/{key}"))
            }
            "POST /api/v1/users" => Request::new(method, template)
                .json(json!({"email": format!("new-{n}@example.com"), "password": PASSWORD})),
            "GET /api/v1/users/{id}" => Request::new(method, format!("/api/v1/users/{}", self.target_id)),
            "PATCH /api/v1/users/{id}" => Request::new(method, format!("/api/v1/users/{}", self.target_id))
                .json(json!({"disabled": false})),
            "DELETE /api/v1/users/{id}" => {
                let user = self.fresh_user(s).await;
                Request::new(method, format!("/api/v1/users/{user}"))
            }
            "POST /api/v1/users/{id}/password" => {
                Request::new(method, format!("/api/v1/users/{}/password", self.target_id))
                    .json(json!({"password": PASSWORD}))
            }
            "POST /api/v1/knowledge" => {
                Request::new(method, template).json(json!({"name": format!("new kb {n}")}))
            }
            "GET /api/v1/knowledge/{id}"
            | "GET /api/v1/knowledge/{id}/access"
            | "GET /api/v1/knowledge/{id}/files"
            | "GET /api/v1/knowledge/{id}/openwebui"
            | "GET /api/v1/knowledge/{id}/openwebui/publishes" => {
                Request::new(method, template.replace("{id}", local))
            }
            "PATCH /api/v1/knowledge/{id}" => Request::new(method, format!("/api/v1/knowledge/{local}"))
                .json(json!({"description": "shared"})),
            "DELETE /api/v1/knowledge/{id}" => {
                let kb = self.fresh_kb(s, "local").await;
                Request::new(method, format!("/api/v1/knowledge/{kb}"))
            }
            "PUT /api/v1/knowledge/{id}/access" => {
                // The same grants again: the fixture stays as it is.
                Request::new(method, format!("/api/v1/knowledge/{local}/access")).json(self.grants())
            }
            "POST /api/v1/knowledge/{id}/files" => Request {
                body: Body::Upload(format!("upload-{n}.txt")),
                ..Request::new(method, format!("/api/v1/knowledge/{local}/files"))
            },
            "GET /api/v1/knowledge/{id}/files/{file_id}"
            | "GET /api/v1/knowledge/{id}/files/{file_id}/content" => Request::new(
                method,
                template
                    .replace("{id}", local)
                    .replace("{file_id}", &self.file_id),
            ),
            "DELETE /api/v1/knowledge/{id}/files/{file_id}" => {
                let doc = s
                    .synced(local.parse().unwrap(), &format!("doomed-{n}"), "to be deleted")
                    .await;
                Request::new(method, format!("/api/v1/knowledge/{local}/files/{doc}"))
            }
            "GET /api/v1/search" => Request::new(method, "/api/v1/search?q=walrus"),
            "GET /api/v1/retrieve" => Request::new(method, "/api/v1/retrieve?q=walrus"),
            "POST /api/v1/tools/search_knowledge" => {
                Request::new(method, template).json(json!({"query": "walrus"}))
            }
            "POST /api/v1/knowledge/{id}/sources" => {
                let kb = self.fresh_connected_kb(s).await;
                Request::new(method, format!("/api/v1/knowledge/{kb}/sources"))
                    .json(json!({"datasource": "onedrive", "items": [self.team]}))
            }
            "GET /api/v1/knowledge/{id}/sources"
            | "GET /api/v1/knowledge/{id}/sync"
            | "GET /api/v1/knowledge/{id}/sync/events"
            | "GET /api/v1/knowledge/{id}/sync/runs"
            | "GET /api/v1/knowledge/{id}/connection"
            | "POST /api/v1/knowledge/{id}/sync/cancel" => {
                Request::new(method, template.replace("{id}", drive))
            }
            "DELETE /api/v1/knowledge/{id}/sources/{source_id}" => {
                let kb = self.fresh_kb(s, "onedrive").await;
                let source = s
                    .state
                    .store
                    .add_source(
                        uuid::Uuid::new_v4(),
                        kbsync_store::NewSource {
                            kb_id: kb.parse().unwrap(),
                            datasource: kbsync_core::datasource::DatasourceKind::OneDrive,
                            kind: kbsync_core::SourceKind::Folder,
                            drive_id: "drive".into(),
                            item_id: "item".into(),
                            name: "Team".into(),
                            path: "/Team".into(),
                        },
                        s.clock.now(),
                    )
                    .await
                    .unwrap();
                Request::new(method, format!("/api/v1/knowledge/{kb}/sources/{}", source.id))
            }
            "POST /api/v1/knowledge/{id}/sync" => {
                let kb = self.fresh_connected_kb(s).await;
                Request::new(method, format!("/api/v1/knowledge/{kb}/sync"))
            }
            "GET /api/v1/datasources/{datasource}/auth/initiate" => Request::new(
                method,
                format!("/api/v1/datasources/onedrive/auth/initiate?knowledge_id={drive}"),
            ),
            "POST /api/v1/datasources/{datasource}/auth/app-only" => Request::new(
                method,
                format!("/api/v1/datasources/onedrive/auth/app-only?knowledge_id={drive}"),
            ),
            "GET /api/v1/datasources/{datasource}/browse" => Request::new(
                method,
                format!("/api/v1/datasources/onedrive/browse?knowledge_id={drive}"),
            ),
            "GET /api/v1/connectors/{datasource}/auth/initiate" => Request::new(
                method,
                format!("/api/v1/connectors/onedrive/auth/initiate?knowledge_id={drive}"),
            ),
            "GET /api/v1/connectors/{datasource}/browse" => Request::new(
                method,
                format!("/api/v1/connectors/onedrive/browse?knowledge_id={drive}"),
            ),
            "GET /api/v1/datasources/{datasource}/auth/callback"
            | "GET /api/v1/connectors/{datasource}/auth/callback" => {
                // A real flow of the manager's, up to the callback the browser would load (under
                // the connectors names: the same callback at the other path).
                let kb = self.fresh_kb(s, "onedrive").await;
                let (status, body, cookie) = s.initiate(Some(&self.manager), &kb).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let http = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap();
                let resp = http.get(body["auth_url"].as_str().unwrap()).send().await.unwrap();
                assert_eq!(resp.status(), StatusCode::FOUND);
                let callback = resp.headers()["location"].to_str().unwrap().to_owned();
                let path = callback.strip_prefix(&s.base).unwrap();
                let path = if template.starts_with("/api/v1/connectors/") {
                    path.replacen("/api/v1/datasources/", "/api/v1/connectors/", 1)
                } else {
                    path.to_owned()
                };
                Request {
                    cookie,
                    ..Request::new(method, path)
                }
            }
            "DELETE /api/v1/knowledge/{id}/connection" => {
                let kb = self.fresh_kb(s, "onedrive").await;
                Request::new(method, format!("/api/v1/knowledge/{kb}/connection"))
            }
            "PUT /api/v1/knowledge/{id}/openwebui" => {
                let kb = self.fresh_kb(s, "local").await;
                Request::new(method, format!("/api/v1/knowledge/{kb}/openwebui")).json(json!({}))
            }
            "DELETE /api/v1/knowledge/{id}/openwebui" => {
                Request::new(method, format!("/api/v1/knowledge/{local}/openwebui"))
            }
            "POST /api/v1/knowledge/{id}/openwebui/publish" => {
                let kb = self.fresh_kb(s, "local").await;
                s.state
                    .store
                    .enable_publication(kb.parse().unwrap(), None, s.clock.now())
                    .await
                    .unwrap();
                Request::new(method, format!("/api/v1/knowledge/{kb}/openwebui/publish"))
            }
            "POST /api/v1/webhooks/{webhook}" | "POST /api/v1/webhooks/{webhook}/lifecycle" => Request::new(
                method,
                format!(
                    "{}?validationToken=hello",
                    template.replace("{webhook}", "msgraph")
                ),
            ),
            other => panic!("no request for {other}: add one to Fixture::request"),
        };
        let path = request.path.split('?').next().unwrap();
        assert!(
            matches_template(template, path),
            "the request for {op} goes to {path}"
        );
        request
    }
}

/// Whether `path` is `template` with each `{param}` segment filled.
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

/// Sends a case's request with `who`'s credential: the status and (except for event streams)
/// the beginning of the body.
async fn send(s: &TestServer, fx: &Fixture, who: Principal, request: Request) -> (u16, String) {
    let mut req = s
        .http
        .request(request.method, format!("{}{}", s.base, request.path));
    if let Some(credential) = fx.credentials.get(&who) {
        req = req.bearer_auth(credential);
    }
    if let Some(cookie) = request.cookie {
        req = req.header(reqwest::header::COOKIE, cookie);
    }
    req = match request.body {
        Body::None => req,
        Body::Json(body) => req.json(&body),
        Body::Upload(name) => req.multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"the walrus upload".to_vec()).file_name(name),
        )),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let stream = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = if stream {
        "(event stream)".to_owned()
    } else {
        resp.text().await.unwrap_or_default().chars().take(200).collect()
    };
    (status, body)
}

async fn every_operation_answers_every_kind_of_caller_as_the_authorisation_table_says(db: Db) {
    let options = Options {
        onedrive: Some(OneDriveTest { with_secret: true }),
        // A publisher whose Open WebUI is never reached: enabling and requesting publishes are
        // kbsync's own bookkeeping; its loop runs once at the start and then daily.
        openwebui: Some(OpenWebUiTest {
            url: "http://127.0.0.1:9".into(),
            api_key: "unused".into(),
            background: false,
            instance_id: "authz",
        }),
        adjust: |settings| {
            settings.webhooks = Some(kbsync_server::service::webhooks::WebhookSettings::default())
        },
        ..Options::default()
    };
    let Some(s) = TestServer::start(db, options).await else {
        return;
    };
    // The operations the server serves, from its own document.
    let (status, doc) = s.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let ops = operations(&doc);
    check_table_covers(&ops);

    let fx = Fixture::new(&s).await;
    // Signing out ends the credential's session: those cases come last.
    let mut table: Vec<_> = EXPECTED.iter().collect();
    table.sort_by_key(|(_, rule, _)| *rule == Rule::Logout);

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (op, rule, ok) in table {
        let method = op.split_once(' ').unwrap().0;
        let mut cells = Vec::new();
        for who in PRINCIPALS {
            let want = expected(*rule, who, method, *ok);
            let request = fx.request(&s, op, who).await;
            let (got, body) = send(&s, &fx, who, request).await;
            if got != want {
                failures.push(format!("{op} as {who:?}: got {got}, want {want}: {body}"));
                cells.push(format!("{got}!{want}"));
            } else {
                cells.push(got.to_string());
            }
        }
        rows.push((op, cells));
    }

    let mut matrix = format!("{:<58}", "operation");
    for who in PRINCIPALS {
        write!(matrix, " {:>8}", who.short()).unwrap();
    }
    for (op, cells) in &rows {
        write!(matrix, "\n{op:<58}").unwrap();
        for cell in cells {
            write!(matrix, " {cell:>8}").unwrap();
        }
    }
    println!("{matrix}\n(got!want where they differ)");
    assert!(
        failures.is_empty(),
        "{} of {} cases answered otherwise than the authorisation table says:\n{matrix}\n\n{}",
        failures.len(),
        rows.len() * PRINCIPALS.len(),
        failures.join("\n")
    );
    s.stop().await;
}

#[test]
fn expectations_follow_the_rules() {
    // A few fixed points of `expected`, so that a change to it is deliberate.
    assert_eq!(expected(Rule::KbManage, Stranger, "GET", 200), 404);
    assert_eq!(expected(Rule::KbManage, Writer, "PATCH", 200), 403);
    assert_eq!(expected(Rule::KbManage, ReadKey, "GET", 200), 200);
    assert_eq!(expected(Rule::KbManage, ReadKey, "DELETE", 204), 403);
    assert_eq!(expected(Rule::KbWrite, Reader, "POST", 202), 403);
    assert_eq!(expected(Rule::KbSee, Disabled, "GET", 200), 401);
    assert_eq!(expected(Rule::Session, WriteKey, "POST", 201), 403);
    assert_eq!(expected(Rule::AnyCredential, ReadKey, "POST", 200), 200);
    assert_eq!(expected(Rule::Logout, DisabledKey, "POST", 204), 400);
    assert_eq!(expected(Rule::Logout, Disabled, "POST", 204), 204);
    assert_eq!(expected(Rule::Admin, Manager, "GET", 200), 403);
    assert_eq!(expected(Rule::Public, Anonymous, "GET", 200), 200);
}
