//! Recorded-contract tests: the client against exchanges recorded from the real Open WebUI 0.12.4.

use std::sync::Arc;

use kbsync_core::{ManualClock, SystemClock};
use kbsync_openwebui::{AccessGrant, OpenWebUiClient, OpenWebUiConfig, OpenWebUiError, PublishProgress};

use crate::common::{client, no_progress, tree};
use crate::fake::{Fake, fixture};

const KEY: &str = "sk-recorded";

fn knowledge_id() -> String {
    fixture("knowledge_create").response["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn first_tree() -> Vec<(&'static str, &'static str, &'static [u8])> {
    vec![
        ("", "readme.md", b"# Read me\n"),
        ("docs", "guide.md", b"The guide.\n"),
        ("docs/api", "ref.txt", b"Reference text.\n"),
    ]
}

fn assert_clean(fake: &Fake) {
    assert_eq!(
        fake.problems(),
        Vec::<String>::new(),
        "served: {:?}",
        fake.served()
    );
}

fn first_publish(fake: &Fake) {
    fake.once(fixture("publish1_files"))
        .once(fixture("publish1_diff"));
    fake.once(fixture("publish1_mkdir_0"))
        .once(fixture("publish1_mkdir_1"));
    for i in 0..3 {
        fake.once(fixture(&format!("publish1_upload_{i}")))
            .once(fixture(&format!("publish1_status_{i}_first")))
            .always(fixture(&format!("publish1_status_{i}_final")));
    }
}

#[tokio::test]
async fn a_first_publish_diffs_makes_folders_parents_first_uploads_and_waits_for_processing() {
    let fake = Fake::default();
    first_publish(&fake);
    let c = client(&fake.start().await, KEY, Arc::new(SystemClock));
    let (manifest, contents) = tree(&first_tree());
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: PublishProgress| seen.lock().unwrap().push((p.done, p.total));
    let report = c
        .publish(&knowledge_id(), &manifest, &contents, &progress)
        .await
        .unwrap();
    assert_clean(&fake);
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        (
            report.uploaded,
            report.unchanged,
            report.removed,
            report.directories_created
        ),
        (3, 0, 0, 2)
    );
    assert_eq!(*seen.lock().unwrap(), vec![(0, 3), (1, 3), (2, 3), (3, 3)]);
    let served = fake.served();
    let pos = |n: &str| served.iter().position(|s| s == n).unwrap();
    assert!(pos("publish1_diff") < pos("publish1_mkdir_0"));
    assert!(pos("publish1_mkdir_0") < pos("publish1_mkdir_1"));
    assert!(pos("publish1_mkdir_1") < pos("publish1_upload_0"));
}

#[tokio::test]
async fn a_second_publish_uploads_the_changed_file_then_cleans_up_its_old_version_the_deleted_one_and_the_orphaned_folder()
 {
    let fake = Fake::default();
    fake.once(fixture("publish2_files"))
        .once(fixture("publish2_diff"));
    fake.once(fixture("publish2_upload_0"))
        .once(fixture("publish2_status_0_first"))
        .always(fixture("publish2_status_0_final"));
    fake.once(fixture("publish2_cleanup"));
    let c = client(&fake.start().await, KEY, Arc::new(SystemClock));
    let (manifest, contents) = tree(&[
        ("", "readme.md", b"# Read me\n"),
        ("docs", "guide.md", b"The guide, revised.\n"),
    ]);
    let report = c
        .publish(&knowledge_id(), &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert_clean(&fake);
    assert_eq!(
        (
            report.uploaded,
            report.unchanged,
            report.removed,
            report.directories_removed
        ),
        (1, 1, 2, 1),
        "{report:?}"
    );
    assert_eq!(fake.served().last().map(String::as_str), Some("publish2_cleanup"));
}

#[tokio::test]
async fn failed_processing_is_reported_with_open_webuis_error_and_the_upload_deleted() {
    let fake = Fake::default();
    fake.once(fixture("failed_files")).once(fixture("failed_diff"));
    fake.once(fixture("failed_upload"))
        .once(fixture("failed_status_first"))
        .always(fixture("failed_status_final"));
    fake.once(fixture("failed_file_get"))
        .once(fixture("failed_file_delete"));
    let c = client(&fake.start().await, KEY, Arc::new(SystemClock));
    let mut files = first_tree();
    files.push(("", "broken.pdf", b"%PDF-1.7 this is not a PDF at all"));
    let (manifest, contents) = tree(&files);
    let report = c
        .publish(&knowledge_id(), &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert_clean(&fake);
    assert_eq!((report.uploaded, report.unchanged), (0, 3), "{report:?}");
    assert_eq!(report.failed.len(), 1);
    let recorded = fixture("failed_file_get").response["data"]["error"].clone();
    assert_eq!(report.failed[0].filename, "broken.pdf");
    assert_eq!(Some(report.failed[0].error.as_str()), recorded.as_str());
    assert!(fake.served().contains(&"failed_file_delete".to_string()));
}

#[tokio::test]
async fn processing_that_outlasts_the_timeout_fails_the_file_by_the_injected_clock() {
    // Derived from the recorded status answer: a file that stays pending.
    let mut pending = fixture("publish1_status_0_final");
    pending.response = serde_json::json!({"status": "pending"});
    let fake = Fake::default();
    fake.once(fixture("publish1_files"))
        .once(fixture("publish1_diff"));
    fake.once(fixture("publish1_mkdir_0"))
        .once(fixture("publish1_mkdir_1"));
    fake.once(fixture("publish1_upload_0")).always(pending);
    for i in 1..3 {
        fake.once(fixture(&format!("publish1_upload_{i}")))
            .always(fixture(&format!("publish1_status_{i}_final")));
    }
    let clock = ManualClock::new(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
    fake.advance_per_status(clock.clone(), chrono::Duration::seconds(61));
    let url = fake.start().await;
    let mut config = OpenWebUiConfig::new(url::Url::parse(&url).unwrap(), KEY);
    config.poll_interval = std::time::Duration::from_millis(1);
    let c = OpenWebUiClient::new(config, reqwest::Client::new(), Arc::new(clock));
    let (manifest, contents) = tree(&first_tree());
    let report = c
        .publish(&knowledge_id(), &manifest, &contents, &no_progress())
        .await
        .unwrap();
    assert_clean(&fake);
    assert_eq!(report.uploaded, 2, "{report:?}");
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].filename, "readme.md");
    assert!(
        report.failed[0].error.contains("did not finish processing"),
        "{report:?}"
    );
    // Every status answer moves the clock 61 s (the other files' answers too): the 10-minute timeout
    // is reached after at most 10 polls of the pending file.
    let polls = fake
        .served()
        .iter()
        .filter(|s| *s == "publish1_status_0_final")
        .count();
    assert!((1..=10).contains(&polls), "{polls} polls");
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_with_open_webuis_message() {
    let fake = Fake::default();
    fake.always(fixture("unauthorized"));
    let c = client(&fake.start().await, "sk-not-a-key", Arc::new(SystemClock));
    let recorded = fixture("unauthorized").response["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.knowledge(&knowledge_id()).await,
        Err(OpenWebUiError::Unauthorized(recorded))
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn a_missing_knowledge_base_is_knowledge_not_found_whether_open_webui_says_404_or_400() {
    let fake = Fake::default();
    fake.always(fixture("knowledge_get_missing"))
        .always(fixture("files_missing_knowledge"));
    assert_eq!(
        fixture("files_missing_knowledge").status,
        400,
        "Open WebUI's listing says 400"
    );
    let c = client(&fake.start().await, KEY, Arc::new(SystemClock));
    let missing = "00000000-0000-0000-0000-000000000000";
    assert_eq!(c.knowledge(missing).await, Err(OpenWebUiError::KnowledgeNotFound));
    assert_eq!(
        c.knowledge_files(missing).await,
        Err(OpenWebUiError::KnowledgeNotFound)
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn users_are_found_by_email_whatever_its_case_and_unknown_ones_are_absent() {
    let fake = Fake::default();
    fake.always(fixture("users_all"));
    let c = client(&fake.start().await, KEY, Arc::new(SystemClock));
    let users = fixture("users_all").response["users"].as_array().unwrap().clone();
    let reader = users
        .iter()
        .find(|u| {
            u["email"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case("reader@example.org")
        })
        .unwrap();
    let asked = vec!["READER@example.ORG".to_string(), "nobody@example.org".to_string()];
    let found = c.users_by_email(&asked).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found["READER@example.ORG"], reader["id"].as_str().unwrap());
    assert_clean(&fake);
}

#[tokio::test]
async fn access_is_replaced_with_user_read_grants_of_the_recorded_shape() {
    let fake = Fake::default();
    fake.once(fixture("access_update"))
        .always(fixture("knowledge_get_with_grant"));
    let c = client(&fake.start().await, KEY, Arc::new(SystemClock));
    let sent = fixture("access_update").request["access_grants"][0]["principal_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.set_access(
        &knowledge_id(),
        &[AccessGrant {
            user_id: sent.clone(),
        }],
    )
    .await
    .unwrap();
    let grants = c.knowledge_grants(&knowledge_id()).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(
        (
            grants[0].principal_type.as_str(),
            grants[0].principal_id.as_str(),
            grants[0].permission.as_str()
        ),
        ("user", sent.as_str(), "read")
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn knowledge_files_follows_the_pages_until_the_total() {
    let fake = Fake::default();
    fake.always(fixture("files_page_1"))
        .always(fixture("files_page_2"));
    let c = client(&fake.start().await, KEY, Arc::new(SystemClock));
    let files = c.knowledge_files(&knowledge_id()).await.unwrap();
    let total = fixture("files_page_1").response["total"].as_u64().unwrap() as usize;
    assert!(
        total
            > fixture("files_page_1").response["items"]
                .as_array()
                .unwrap()
                .len()
    );
    assert_eq!(files.len(), total);
    assert!(
        files
            .iter()
            .any(|f| f.path == "docs/api" && f.filename == "ref.txt" && f.sha256.is_some())
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(&format!("http://127.0.0.1:{port}"), KEY, Arc::new(SystemClock));
    let (manifest, contents) = tree(&first_tree());
    let r = c.publish("kb", &manifest, &contents, &no_progress()).await;
    assert!(matches!(r, Err(OpenWebUiError::Unreachable(_))), "{r:?}");
}
