//! Publishing into the real Open WebUI (`kbsync_kit::openwebui`, installed by
//! testing/openwebui-peer/install.sh): a knowledge base synced from the emulated OneDrive is
//! published, its Open WebUI knowledge base holds exactly the same files (folders, names, SHA-256)
//! and is granted to exactly the people who may read all of it; changes at the source follow; a
//! publish cut short converges when taken up again; Open WebUI going away fails the publish, never
//! the sync. On SQLite and PostgreSQL. Without the install the tests skip with a message (and fail
//! under CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kbsync_kit::openwebui::OpenWebUi;
use kbsync_openwebui::{OpenWebUiClient, OpenWebUiConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{
    Db, OneDriveTest, OpenWebUiTest, Options, TestServer, add_sources, team_folder, wait_idle,
};

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    publishing_mirrors_the_synced_drive_into_open_webui_and_follows_changes_at_the_source,
    a_publish_cut_short_converges_when_another_instance_takes_it_up_without_duplicates,
    open_webui_going_away_fails_the_publish_not_the_sync_and_the_next_publish_converges,
    publishing_is_refused_without_open_webui_settings_or_manage_access_and_with_a_bad_target,
    open_webui_loads_the_tool_server_spec_with_a_service_key_and_lists_the_tool,
);

/// Tool server connections are one setting of the shared Open WebUI: tests that change it take turns.
static TOOL_SERVER_SETTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A name no other test (or database variant) of this process uses in the shared Open WebUI.
fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn options(owui: &str, token: String, background: bool, instance_id: &'static str) -> Options {
    Options {
        onedrive: Some(OneDriveTest { with_secret: true }),
        openwebui: Some(OpenWebUiTest {
            url: owui.to_owned(),
            api_key: token,
            background,
            instance_id,
        }),
        ..Options::default()
    }
}

struct Published {
    kb: String,
    owner: String,
    owner_email: String,
}

/// An owner (with an Open WebUI account of the same email) whose OneDrive knowledge base syncs
/// `files` under /Team.
async fn synced_kb(s: &TestServer, owui: &OpenWebUi, files: &[(&str, &str)]) -> Published {
    let admin = s.admin_token().await;
    let owner_email = format!("{}@example.com", unique("owner"));
    let (_, owner) = s.user(&admin, &owner_email).await;
    owui.create_user(&owner_email, "Owner").await;
    let (status, body) = s
        .post(
            "/api/v1/knowledge",
            Some(&owner),
            json!({"name": unique("Team drive"), "type": "onedrive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let kb = body["id"].as_str().unwrap().to_owned();
    s.connect(&owner, &kb).await;
    let folder = team_folder(s, files);
    let (status, body) = add_sources(s, &owner, &kb, json!([folder])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let state = wait_idle(s, &owner, &kb).await;
    assert_eq!(state["status"], "completed", "{state}");
    Published {
        kb,
        owner,
        owner_email,
    }
}

/// Runs a sync of the knowledge base now (a second later on the server's clock) and waits for its end.
async fn sync_again(s: &TestServer, p: &Published) -> Value {
    s.clock.advance(chrono::Duration::seconds(1));
    let (status, body) = s
        .post(
            &format!("/api/v1/knowledge/{}/sync", p.kb),
            Some(&p.owner),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_idle(s, &p.owner, &p.kb).await
}

/// Polls the publication until no publish waits or runs and its last one ended after `after`
/// publishes (counted in the history), with a deadline.
#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn wait_published(s: &TestServer, token: &str, kb: &str, publishes: usize) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let (status, body) = s
            .get(&format!("/api/v1/knowledge/{kb}/openwebui"), Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, history) = s
            .get(
                &format!("/api/v1/knowledge/{kb}/openwebui/publishes"),
                Some(token),
            )
            .await;
        let done = history.as_array().map_or(0, Vec::len);
        if body["requested"] == false && body["status"] != "publishing" && done >= publishes {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "publish not done: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// kbsync's documents of a knowledge base as Open WebUI must hold them: (folder, name, SHA-256).
async fn kbsync_files(s: &TestServer, token: &str, kb: &str) -> BTreeSet<(String, String, String)> {
    let (status, body) = s
        .get(&format!("/api/v1/knowledge/{kb}/files?limit=200"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "processed")
        .map(|f| {
            let path = f["path"].as_str().unwrap().trim_start_matches('/').to_owned();
            let (folder, name) = match path.rsplit_once('/') {
                Some((folder, name)) => (folder.to_owned(), name.to_owned()),
                None => (String::new(), path.clone()),
            };
            assert_eq!(name, f["name"].as_str().unwrap());
            (folder, name, f["content_hash"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn client(owui: &OpenWebUi) -> OpenWebUiClient {
    OpenWebUiClient::new(
        OpenWebUiConfig::new(owui.base_url().parse().unwrap(), owui.admin_token()),
        reqwest::Client::new(),
        Arc::new(kbsync_core::SystemClock),
    )
}

/// What Open WebUI's knowledge base holds: (folder, name, SHA-256), each file once.
async fn openwebui_files(owui: &OpenWebUi, knowledge_id: &str) -> BTreeSet<(String, String, String)> {
    let files = client(owui).knowledge_files(knowledge_id).await.unwrap();
    let set: BTreeSet<_> = files
        .iter()
        .map(|f| {
            (
                f.path.clone(),
                f.filename.clone(),
                f.sha256.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(set.len(), files.len(), "duplicates in Open WebUI: {files:?}");
    set
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

async fn publishing_mirrors_the_synced_drive_into_open_webui_and_follows_changes_at_the_source(db: Db) {
    let Some(owui) = OpenWebUi::shared().await else {
        return;
    };
    let Some(s) = TestServer::start(db, options(owui.base_url(), owui.admin_token(), true, "one")).await
    else {
        return;
    };
    let p = synced_kb(
        &s,
        owui,
        &[
            ("plan.txt", "The quarterly harvest plan for the orchard"),
            ("Notes/minutes.md", "# Minutes\nWe agreed on the zeppelin budget."),
            ("Notes/Old/agenda.txt", "Agenda: apples, pears, plums"),
        ],
    )
    .await;
    // Readers: a colleague granted the whole knowledge base (with an Open WebUI account), one
    // without an Open WebUI account, and one the drive shares a single file with.
    let admin = s.admin_token().await;
    let colleague_email = format!("{}@example.com", unique("colleague"));
    let (colleague_id, _) = s.user(&admin, &colleague_email).await;
    let colleague_owui = owui.create_user(&colleague_email, "Colleague").await;
    let stranger_email = format!("{}@example.com", unique("no-webui"));
    let (stranger_id, _) = s.user(&admin, &stranger_email).await;
    let (status, body) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{}/access", p.kb),
            Some(&p.owner),
            Some(json!({"read": [colleague_id, stranger_id], "write": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let drive = s.drive();
    let drive_id = drive.default_drive_id();
    let partial_email = format!("{}@example.com", unique("partial"));
    let partial = drive
        .create_user(msgraph_emulator::NewUser {
            display_name: "Partial Reader".into(),
            mail: Some(partial_email.clone()),
            user_principal_name: Some(partial_email.clone()),
            drive_type: None,
            tenant_id: None,
        })
        .unwrap();
    let plan = drive.item_by_path(&drive_id, "/Team/plan.txt").unwrap();
    drive
        .add_permission(
            &drive_id,
            &plan.id,
            msgraph_emulator::PermissionSpec::user(&partial.id, &["read"]),
        )
        .unwrap();
    s.user(&admin, &partial_email).await;
    owui.create_user(&partial_email, "Partial").await;
    sync_again(&s, &p).await;

    // Turned on: a new Open WebUI knowledge base, published by the loop.
    let (status, on) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{}/openwebui", p.kb),
            Some(&p.owner),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{on}");
    assert_eq!(on["enabled"], true);
    assert_eq!(on["status"], "pending");
    let published = wait_published(&s, &p.owner, &p.kb, 1).await;
    assert_eq!(published["status"], "published", "{published}");
    assert_eq!(published["error"], Value::Null, "{published}");
    let knowledge_id = published["openwebui_knowledge_id"].as_str().unwrap().to_owned();
    assert_eq!(
        published["openwebui_url"],
        format!("{}/workspace/knowledge/{knowledge_id}", owui.base_url())
    );
    let expected = kbsync_files(&s, &p.owner, &p.kb).await;
    assert_eq!(expected.len(), 3);
    assert!(
        expected.contains(&(
            "Team/Notes".into(),
            "minutes.md".into(),
            sha256("# Minutes\nWe agreed on the zeppelin budget.")
        )),
        "{expected:?}"
    );
    assert_eq!(openwebui_files(owui, &knowledge_id).await, expected);
    assert_eq!(published["counts"]["uploaded"], 3, "{published}");
    assert_eq!(published["counts"]["published"], 3, "{published}");

    // Granted to the owner and the colleague (read only); the others are left out with reasons.
    let grants = client(owui).knowledge_grants(&knowledge_id).await.unwrap();
    let owner_owui = client(owui)
        .users_by_email(std::slice::from_ref(&p.owner_email))
        .await
        .unwrap()[&p.owner_email.to_lowercase()]
        .clone();
    let granted: BTreeSet<(String, String, String)> = grants
        .into_iter()
        .map(|g| (g.principal_type, g.principal_id, g.permission))
        .collect();
    assert_eq!(
        granted,
        BTreeSet::from([
            ("user".into(), owner_owui, "read".into()),
            ("user".into(), colleague_owui, "read".into()),
        ])
    );
    let left_out: Vec<(String, String)> = published["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["email"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(left_out.len(), 2, "{left_out:?}");
    assert!(
        left_out
            .iter()
            .any(|(e, r)| *e == partial_email && r.contains("may read 1 of the 3 documents")),
        "{left_out:?}"
    );
    assert!(
        left_out
            .iter()
            .any(|(e, r)| *e == stranger_email && r.contains("no Open WebUI account")),
        "{left_out:?}"
    );
    // The sync state carries the publication.
    let (_, sync) = s
        .get(&format!("/api/v1/knowledge/{}/sync", p.kb), Some(&p.owner))
        .await;
    assert_eq!(sync["openwebui"]["status"], "published", "{sync}");

    // Changed, deleted, renamed and moved at the source: the next sync publishes by itself.
    let agenda = drive
        .item_by_path(&drive_id, "/Team/Notes/Old/agenda.txt")
        .unwrap();
    drive
        .modify_file(&drive_id, &plan.id, b"The revised harvest plan".to_vec())
        .unwrap();
    let minutes = drive.item_by_path(&drive_id, "/Team/Notes/minutes.md").unwrap();
    drive.delete(&drive_id, &minutes.id).unwrap();
    let team = drive.item_by_path(&drive_id, "/Team").unwrap();
    drive
        .move_item(&drive_id, &agenda.id, &team.id, Some("agenda-2024.txt"))
        .unwrap();
    drive
        .put_file(
            &drive_id,
            "/Team/Reports/q3.txt",
            b"Third quarter figures".to_vec(),
        )
        .unwrap();
    sync_again(&s, &p).await;
    let again = wait_published(&s, &p.owner, &p.kb, 2).await;
    assert_eq!(again["status"], "published", "{again}");
    let expected = kbsync_files(&s, &p.owner, &p.kb).await;
    assert_eq!(
        expected
            .iter()
            .map(|(f, n, _)| format!("{f}/{n}"))
            .collect::<Vec<_>>(),
        ["Team/agenda-2024.txt", "Team/plan.txt", "Team/Reports/q3.txt"]
    );
    assert!(expected.contains(&(
        "Team".into(),
        "plan.txt".into(),
        sha256("The revised harvest plan")
    )));
    assert_eq!(openwebui_files(owui, &knowledge_id).await, expected);

    // A sync that changes nothing publishes nothing (no new history entry).
    sync_again(&s, &p).await;
    wait_published(&s, &p.owner, &p.kb, 2).await;
    let (_, history) = s
        .get(
            &format!("/api/v1/knowledge/{}/openwebui/publishes", p.kb),
            Some(&p.owner),
        )
        .await;
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");

    // Turned off: Open WebUI's knowledge base stays as it is.
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/knowledge/{}/openwebui", p.kb),
            Some(&p.owner),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, off) = s
        .get(&format!("/api/v1/knowledge/{}/openwebui", p.kb), Some(&p.owner))
        .await;
    assert_eq!(off["enabled"], false, "{off}");
    assert_eq!(openwebui_files(owui, &knowledge_id).await, expected);
    s.stop().await;
}

#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn a_publish_cut_short_converges_when_another_instance_takes_it_up_without_duplicates(db: Db) {
    let Some(owui) = OpenWebUi::shared().await else {
        return;
    };
    // Without the loop: the test runs the publishes.
    let Some(s) = TestServer::start(db, options(owui.base_url(), owui.admin_token(), false, "first")).await
    else {
        return;
    };
    let files: Vec<(String, String)> = (0..24)
        .map(|i| {
            (
                format!("Batch/file-{i:02}.txt"),
                format!("Document number {i} of the batch"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let p = synced_kb(&s, owui, &refs).await;
    let (status, body) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{}/openwebui", p.kb),
            Some(&p.owner),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The first instance dies once some files are up (its publish future is dropped mid-way).
    let store = s.state.store.clone();
    let kb_id: uuid::Uuid = p.kb.parse().unwrap();
    let publisher = s.state.openwebui.clone().unwrap();
    let running = tokio::spawn(async move { publisher.tick().await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let publication = store.publication(kb_id).await.unwrap().unwrap();
        if let Some(id) = &publication.knowledge_id
            && !client(owui).knowledge_files(id).await.unwrap().is_empty()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no file reached Open WebUI"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    let _ = running.await;
    let cut = store.publication(kb_id).await.unwrap().unwrap();
    assert_eq!(cut.status, kbsync_core::PublicationStatus::Publishing);
    let knowledge_id = cut.knowledge_id.clone().unwrap();

    // Another instance takes it up once the lease runs out, and converges.
    let second = kbsync_server::publishing::Publisher::new(
        client(owui),
        owui.base_url().to_owned(),
        store.clone(),
        s.state.blobs.clone(),
        Arc::new(s.clock.clone()),
        Arc::new(kbsync_core::OsRandom),
        s.state.sync_events.clone(),
        kbsync_server::publishing::PublisherSettings {
            instance_id: "second".into(),
            ..Default::default()
        },
    );
    assert_eq!(
        second.tick().await.unwrap(),
        0,
        "the dead instance's lease still holds"
    );
    s.clock.advance(chrono::Duration::minutes(3));
    assert_eq!(second.tick().await.unwrap(), 1);
    let done = store.publication(kb_id).await.unwrap().unwrap();
    assert_eq!(done.status, kbsync_core::PublicationStatus::Published, "{done:?}");
    assert_eq!(done.knowledge_id.as_deref(), Some(knowledge_id.as_str()));
    assert!(done.failures.is_empty(), "{:?}", done.failures);
    assert_eq!(
        openwebui_files(owui, &knowledge_id).await,
        kbsync_files(&s, &p.owner, &p.kb).await
    );
    assert_eq!(openwebui_files(owui, &knowledge_id).await.len(), 24);
    s.stop().await;
}

/// A TCP relay to Open WebUI that can be cut (connections refused and open ones reset) and
/// restored on the same port: Open WebUI going away and coming back, as kbsync sees it.
struct Relay {
    port: u16,
    target: String,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay {
            port,
            target: target.trim_start_matches("http://").to_owned(),
            task: std::sync::Mutex::new(None),
        };
        relay.serve(listener);
        relay
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Refuses new connections and resets the open ones.
    async fn cut(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}

async fn open_webui_going_away_fails_the_publish_not_the_sync_and_the_next_publish_converges(db: Db) {
    let Some(owui) = OpenWebUi::shared().await else {
        return;
    };
    let relay = Relay::start(owui.base_url()).await;
    let Some(s) = TestServer::start(db, options(&relay.url(), owui.admin_token(), false, "relayed")).await
    else {
        return;
    };
    let p = synced_kb(&s, owui, &[("a.txt", "alpha"), ("Sub/b.txt", "bravo")]).await;
    s.call(
        Method::PUT,
        &format!("/api/v1/knowledge/{}/openwebui", p.kb),
        Some(&p.owner),
        Some(json!({})),
    )
    .await;
    assert_eq!(s.publisher().tick().await.unwrap(), 1);
    let (_, first) = s
        .get(&format!("/api/v1/knowledge/{}/openwebui", p.kb), Some(&p.owner))
        .await;
    assert_eq!(first["status"], "published", "{first}");
    let knowledge_id = first["openwebui_knowledge_id"].as_str().unwrap().to_owned();

    // Open WebUI goes away; a sync still works, and its publish fails with a clear error.
    relay.cut().await;
    s.drive()
        .put_file(&s.drive().default_drive_id(), "/Team/c.txt", b"charlie".to_vec())
        .unwrap();
    let state = sync_again(&s, &p).await;
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(s.publisher().tick().await.unwrap(), 1);
    let (_, failed) = s
        .get(&format!("/api/v1/knowledge/{}/openwebui", p.kb), Some(&p.owner))
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("Open WebUI"), "{error}");
    assert!(!error.contains(&owui.admin_token()), "{error}");
    let (_, sync) = s
        .get(&format!("/api/v1/knowledge/{}/sync", p.kb), Some(&p.owner))
        .await;
    assert_eq!(sync["status"], "completed", "the sync is unaffected: {sync}");
    assert_eq!(sync["openwebui"]["status"], "failed", "{sync}");

    // Back: a publish asked for by hand converges.
    relay.restore().await;
    s.clock.advance(chrono::Duration::seconds(1));
    let (status, body) = s
        .post(
            &format!("/api/v1/knowledge/{}/openwebui/publish", p.kb),
            Some(&p.owner),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(s.publisher().tick().await.unwrap(), 1);
    let (_, back) = s
        .get(&format!("/api/v1/knowledge/{}/openwebui", p.kb), Some(&p.owner))
        .await;
    assert_eq!(back["status"], "published", "{back}");
    assert_eq!(
        openwebui_files(owui, &knowledge_id).await,
        kbsync_files(&s, &p.owner, &p.kb).await
    );
    let (_, history) = s
        .get(
            &format!("/api/v1/knowledge/{}/openwebui/publishes", p.kb),
            Some(&p.owner),
        )
        .await;
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["published", "failed", "published"]);
    s.stop().await;
}

async fn publishing_is_refused_without_open_webui_settings_or_manage_access_and_with_a_bad_target(db: Db) {
    // Not configured: 501 with what to set.
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let kb = s.create_kb(&admin, "Local").await;
    let (status, body) = s
        .call(
            Method::PUT,
            &format!("/api/v1/knowledge/{kb}/openwebui"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("KBSYNC_OPENWEBUI_URL")
    );
    let (status, body) = s
        .get(&format!("/api/v1/knowledge/{kb}/openwebui"), Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    s.stop().await;

    // Configured (an address nothing answers at: these checks never reach it, or fail cleanly).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let Some(s) = TestServer::start(db, options(&dead, "sk-unused".into(), false, "x")).await else {
        return;
    };
    let admin = s.admin_token().await;
    let kb = s.create_kb(&admin, "Local").await;
    let (_, reader) = s.user(&admin, "reader@example.com").await;
    for (method, path, body) in [
        (
            Method::PUT,
            format!("/api/v1/knowledge/{kb}/openwebui"),
            Some(json!({})),
        ),
        (Method::GET, format!("/api/v1/knowledge/{kb}/openwebui"), None),
        (
            Method::POST,
            format!("/api/v1/knowledge/{kb}/openwebui/publish"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/api/v1/knowledge/{kb}/openwebui"), None),
    ] {
        let (status, answer) = s.call(method.clone(), &path, Some(&reader), body).await;
        assert!(
            matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
            "{method} {path}: {status} {answer}"
        );
    }
    let path = format!("/api/v1/knowledge/{kb}/openwebui");
    let put = |body: Value| s.call(Method::PUT, &path, Some(&admin), Some(body));
    let (status, body) = put(json!({"knowledge_id": "not an id!"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = put(json!({"knowledge_id": 5})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = put(json!({"bogus": true})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Naming an existing Open WebUI knowledge base is checked there: unreachable is a 502.
    let (status, body) = put(json!({"knowledge_id": "0b7c6a55-3f0e-4a8e-9d3a-4b1b8f1e2c3d"})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(!body.to_string().contains("sk-unused"), "{body}");
    let (status, body) = s
        .post(
            &format!("/api/v1/knowledge/{kb}/openwebui/publish"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "publishing is off: {body}");
    // Turned on, a publish against nothing fails and says so.
    let (status, body) = put(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(s.publisher().tick().await.unwrap(), 1);
    let (_, body) = s
        .get(&format!("/api/v1/knowledge/{kb}/openwebui"), Some(&admin))
        .await;
    assert_eq!(body["status"], "failed", "{body}");
    assert!(body["error"].as_str().unwrap().contains("Open WebUI"), "{body}");
    s.stop().await;
}

async fn open_webui_loads_the_tool_server_spec_with_a_service_key_and_lists_the_tool(db: Db) {
    let Some(owui) = OpenWebUi::shared().await else {
        return;
    };
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let (key, _, _) = crate::retrieve::service_key(&s, &admin, true).await;
    let id = unique("kbsync");
    let connection = json!({
        "url": format!("{}/api/v1/tools", s.base),
        "path": "openapi.json",
        "type": "openapi",
        "auth_type": "bearer",
        "key": key,
        "config": {"enable": true},
        // No name here: the listing then takes the spec's title, which it has only if the spec loaded.
        "info": {"id": id},
    });
    // Open WebUI's own check of a connection fetches and parses the spec with the key.
    let verified = owui
        .post("/api/v1/configs/tool_servers/verify", &connection)
        .await;
    let op = &verified["paths"]["/api/v1/tools/search_knowledge"]["post"];
    assert_eq!(op["operationId"], "search_knowledge", "{verified}");
    // Registered, it is among the tools Open WebUI offers, under the spec's title.
    let _turn = TOOL_SERVER_SETTING.lock().await;
    owui.post(
        "/api/v1/configs/tool_servers",
        &json!({"TOOL_SERVER_CONNECTIONS": [connection]}),
    )
    .await;
    let tools = owui.get("/api/v1/tools/").await;
    let listed = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == format!("server:{id}"))
        .unwrap_or_else(|| panic!("server:{id} not listed: {tools}"));
    let (_, spec) = s.get("/api/v1/tools/openapi.json", None).await;
    assert_eq!(listed["name"], spec["info"]["title"], "{listed}");
    owui.post(
        "/api/v1/configs/tool_servers",
        &json!({"TOOL_SERVER_CONNECTIONS": []}),
    )
    .await;
    s.stop().await;
}
