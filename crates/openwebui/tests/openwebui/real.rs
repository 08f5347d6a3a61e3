//! Against the real Open WebUI 0.12.4 (`kbsync_kit::openwebui`): skipped with a message when it is not
//! installed, failing under `CI`. The tests share one instance and make their own knowledge bases,
//! except the one that stops and restarts Open WebUI.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kbsync_core::SystemClock;
use kbsync_kit::openwebui::OpenWebUi;
use kbsync_openwebui::{AccessGrant, KnowledgeGrant, OpenWebUiClient, OpenWebUiError, PublishProgress};

use crate::common::{client, expected, held, no_progress, tree};

async fn shared() -> Option<(&'static OpenWebUi, OpenWebUiClient)> {
    let owui = OpenWebUi::shared().await?;
    let c = client(owui.base_url(), &owui.admin_token(), Arc::new(SystemClock));
    Some((owui, c))
}

fn unique(name: &str) -> String {
    format!("{name} {}", uuid::Uuid::new_v4())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_mirrors_a_folder_tree_and_follows_changes_deletions_renames_and_moves() {
    let Some((_owui, c)) = shared().await else { return };
    let kb = c.create_knowledge(&unique("tree"), "kbsync test").await.unwrap();
    let (manifest, contents) = tree(&[
        ("", "readme.md", b"# Read me\n"),
        ("docs", "guide.md", b"The guide.\n"),
        ("docs/api", "ref.txt", b"Reference.\n"),
        ("notes", "today.txt", b"Notes of today.\n"),
        ("docs", "r\u{e9}sum\u{e9} (final).txt", b"Non-ASCII name.\n"),
    ]);
    let report = c
        .publish(&kb.id, &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        (report.uploaded, report.unchanged, report.directories_created),
        (5, 0, 3)
    );
    assert_eq!(
        held(&c.knowledge_files(&kb.id).await.unwrap()),
        expected(&manifest)
    );

    let again = c
        .publish(&kb.id, &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert_eq!(
        (again.uploaded, again.unchanged, again.removed),
        (0, 5, 0),
        "{again:?}"
    );

    // guide.md changed, notes/today.txt deleted (its folder goes too), ref.txt renamed, readme.md
    // moved into docs.
    let (manifest, contents) = tree(&[
        ("docs", "readme.md", b"# Read me\n"),
        ("docs", "guide.md", b"The guide, revised.\n"),
        ("docs/api", "reference.txt", b"Reference.\n"),
        ("docs", "r\u{e9}sum\u{e9} (final).txt", b"Non-ASCII name.\n"),
    ]);
    let report = c
        .publish(&kb.id, &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        (
            report.uploaded,
            report.unchanged,
            report.removed,
            report.directories_removed
        ),
        (3, 1, 4, 1),
        "{report:?}"
    );
    assert_eq!(
        held(&c.knowledge_files(&kb.id).await.unwrap()),
        expected(&manifest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_publish_converges_on_the_next_without_duplicates() {
    let Some((_owui, mut c)) = shared().await else {
        return;
    };
    let kb = c
        .create_knowledge(&unique("interrupted"), "kbsync test")
        .await
        .unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("file-{i}.txt")).collect();
    let bodies: Vec<Vec<u8>> = (0..8).map(|i| format!("content {i}\n").into_bytes()).collect();
    let files: Vec<(&str, &str, &[u8])> = names
        .iter()
        .zip(&bodies)
        .enumerate()
        .map(|(i, (n, b))| (if i % 2 == 0 { "" } else { "sub" }, n.as_str(), b.as_slice()))
        .collect();
    let (manifest, contents) = tree(&files);
    let mut config = c.config().clone();
    config.upload_concurrency = 1;
    c = OpenWebUiClient::new(config, reqwest::Client::new(), Arc::new(SystemClock));

    let (tx, rx) = tokio::sync::watch::channel(0usize);
    let progress = move |p: PublishProgress| {
        let _ = tx.send(p.done);
    };
    let mut rx2 = rx.clone();
    tokio::select! {
        biased;
        _ = rx2.wait_for(|done| *done >= 3) => {}
        r = c.publish(&kb.id, &manifest, &contents, &progress) => panic!("not interrupted: {r:?}"),
    }
    let report = c
        .publish(&kb.id, &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.uploaded + report.unchanged, 8, "{report:?}");
    let files = c.knowledge_files(&kb.id).await.unwrap();
    assert_eq!(held(&files), expected(&manifest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::disallowed_methods,
    reason = "waiting for Open WebUI's processing has a real deadline"
)]
async fn a_file_linked_twice_is_kept_once_with_the_wanted_content() {
    let Some((owui, c)) = shared().await else { return };
    let kb = c
        .create_knowledge(&unique("duplicates"), "kbsync test")
        .await
        .unwrap();
    let (old, old_contents) = tree(&[("", "a.txt", b"old\n"), ("", "b.txt", b"b\n")]);
    c.publish(&kb.id, &old, &old_contents, &no_progress())
        .await
        .unwrap();
    // What a publish interrupted between an upload and the cleanup of the version it replaces leaves:
    // a second a.txt linked beside the first, through Open WebUI's own upload path.
    let http = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"new\n".to_vec())
                .file_name("a.txt")
                .mime_str("text/plain")
                .unwrap(),
        )
        .text("metadata", serde_json::json!({"knowledge_id": kb.id}).to_string());
    let up: serde_json::Value = http
        .post(format!("{}/api/v1/files/", owui.base_url()))
        .bearer_auth(owui.admin_token())
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = up["id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = owui.get(&format!("/api/v1/files/{id}/process/status")).await;
        if s["status"] == "completed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processing did not complete: {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        c.knowledge_files(&kb.id).await.unwrap().len(),
        3,
        "the duplicate is linked"
    );

    let (new, new_contents) = tree(&[("", "a.txt", b"new\n"), ("", "b.txt", b"b\n")]);
    let report = c
        .publish(&kb.id, &new, &new_contents, &no_progress())
        .await
        .unwrap();
    assert_eq!((report.uploaded, report.removed), (0, 1), "{report:?}");
    let files = c.knowledge_files(&kb.id).await.unwrap();
    assert_eq!(held(&files), expected(&new));
    assert!(
        files.iter().any(|f| f.id == id),
        "the copy with the wanted content is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_open_webui_cannot_process_is_reported_with_its_error_and_retried() {
    let Some((_owui, c)) = shared().await else { return };
    let kb = c
        .create_knowledge(&unique("failing"), "kbsync test")
        .await
        .unwrap();
    let (mut manifest, contents) = tree(&[
        ("", "fine.txt", b"fine\n"),
        ("", "broken.pdf", b"%PDF-1.7 this is not a PDF at all"),
    ]);
    // And one the caller cannot read.
    let (unreadable, _) = tree(&[("", "gone.txt", b"gone\n")]);
    manifest.extend(unreadable);
    let calls = AtomicUsize::new(0);
    let progress = |_: PublishProgress| {
        calls.fetch_add(1, Ordering::SeqCst);
    };
    let report = c.publish(&kb.id, &manifest, &contents, &progress).await.unwrap();
    assert_eq!(report.uploaded, 1, "{report:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "once at the start, then per file"
    );
    let mut failed: Vec<_> = report.failed.iter().map(|f| f.filename.as_str()).collect();
    failed.sort();
    assert_eq!(failed, ["broken.pdf", "gone.txt"]);
    let broken = report.failed.iter().find(|f| f.filename == "broken.pdf").unwrap();
    assert!(!broken.error.is_empty());
    eprintln!("Open WebUI's error for a broken PDF: {}", broken.error);
    let gone = report.failed.iter().find(|f| f.filename == "gone.txt").unwrap();
    assert!(gone.error.contains("cannot read"), "{gone:?}");

    let files = c.knowledge_files(&kb.id).await.unwrap();
    assert_eq!(
        files.iter().map(|f| f.filename.as_str()).collect::<Vec<_>>(),
        ["fine.txt"]
    );

    // Retried, not counted as unchanged.
    let again = c
        .publish(&kb.id, &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert_eq!(
        (again.uploaded, again.unchanged, again.failed.len()),
        (0, 1, 2),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_are_found_by_email_and_granted_read_access() {
    let Some((owui, c)) = shared().await else { return };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let alice = format!("alice-{tag}@example.org");
    let bob = format!("bob-{tag}@example.org");
    let alice_id = owui.create_user(&alice, "Alice").await;
    let bob_id = owui.create_user(&bob, "Bob").await;
    let asked = vec![
        alice.to_uppercase(),
        bob.clone(),
        format!("nobody-{tag}@example.org"),
    ];
    let found = c.users_by_email(&asked).await.unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[&alice.to_uppercase()], alice_id);
    assert_eq!(found[&bob], bob_id);

    let kb = c
        .create_knowledge(&unique("access"), "kbsync test")
        .await
        .unwrap();
    assert_eq!(c.knowledge_grants(&kb.id).await.unwrap(), vec![]);
    let grants = vec![
        AccessGrant {
            user_id: alice_id.clone(),
        },
        AccessGrant {
            user_id: bob_id.clone(),
        },
    ];
    c.set_access(&kb.id, &grants).await.unwrap();
    let mut want: Vec<KnowledgeGrant> = [&alice_id, &bob_id]
        .iter()
        .map(|id| KnowledgeGrant {
            principal_type: "user".into(),
            principal_id: id.to_string(),
            permission: "read".into(),
        })
        .collect();
    want.sort();
    assert_eq!(c.knowledge_grants(&kb.id).await.unwrap(), want);

    c.set_access(
        &kb.id,
        &[AccessGrant {
            user_id: bob_id.clone(),
        }],
    )
    .await
    .unwrap();
    let now = c.knowledge_grants(&kb.id).await.unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].principal_id, bob_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_knowledge_base_and_a_wrong_key_are_told_apart() {
    let Some((owui, c)) = shared().await else { return };
    let kb = c.create_knowledge(&unique("gone"), "kbsync test").await.unwrap();
    assert_eq!(c.knowledge(&kb.id).await.unwrap().id, kb.id);
    let http = reqwest::Client::new();
    let r = http
        .delete(format!("{}/api/v1/knowledge/{}/delete", owui.base_url(), kb.id))
        .bearer_auth(owui.admin_token())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(c.knowledge(&kb.id).await, Err(OpenWebUiError::KnowledgeNotFound));
    let (manifest, contents) = tree(&[("", "a.txt", b"a\n")]);
    assert_eq!(
        c.publish(&kb.id, &manifest, &contents, &no_progress()).await,
        Err(OpenWebUiError::KnowledgeNotFound)
    );
    assert_eq!(
        c.knowledge_files(&kb.id).await,
        Err(OpenWebUiError::KnowledgeNotFound)
    );

    let wrong = client(owui.base_url(), "sk-not-a-real-key", Arc::new(SystemClock));
    assert!(matches!(
        wrong.knowledge(&kb.id).await,
        Err(OpenWebUiError::Unauthorized(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_api_key_works_like_the_admins_session() {
    let Some((owui, _)) = shared().await else { return };
    // The only test that makes the shared admin's API key (making one replaces the previous).
    let key = owui.admin_api_key().await;
    assert!(key.starts_with("sk-"), "{key}");
    let c = client(owui.base_url(), &key, Arc::new(SystemClock));
    let kb = c
        .create_knowledge(&unique("api key"), "kbsync test")
        .await
        .unwrap();
    let (manifest, contents) = tree(&[("x", "a.txt", b"a\n")]);
    let report = c
        .publish(&kb.id, &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert_eq!(report.uploaded, 1, "{report:?}");
    assert!(
        c.users_by_email(&[owui_admin()])
            .await
            .unwrap()
            .contains_key(&owui_admin())
    );
}

fn owui_admin() -> String {
    kbsync_kit::openwebui::ADMIN_EMAIL.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_webui_down_is_unreachable_and_the_next_publish_after_its_restart_converges() {
    let Some(owui) = OpenWebUi::start().await else {
        return;
    };
    let c = client(owui.base_url(), &owui.admin_token(), Arc::new(SystemClock));
    let kb = c.create_knowledge("restart", "kbsync test").await.unwrap();
    let (manifest, contents) = tree(&[("", "a.txt", b"a\n"), ("d", "b.txt", b"b\n")]);
    owui.stop().await;
    let down = c.publish(&kb.id, &manifest, &contents, &no_progress()).await;
    assert!(matches!(down, Err(OpenWebUiError::Unreachable(_))), "{down:?}");
    owui.restart().await;
    let c = client(owui.base_url(), &owui.admin_token(), Arc::new(SystemClock));
    let report = c
        .publish(&kb.id, &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert_eq!(report.uploaded, 2, "{report:?}");
    assert_eq!(
        held(&c.knowledge_files(&kb.id).await.unwrap()),
        expected(&manifest)
    );
}
