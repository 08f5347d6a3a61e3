//! The operator's commands on a real deployment: `kbsync backup` while a server runs and
//! `kbsync restore` into a new data directory; `kbsync rotate-key` over stored tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Launch, emulator, free_port, kbsync};

fn run(args: &[&str], data_dir: &Path, env: &[(&str, &str)]) -> Output {
    kbsync()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

async fn upload(api: &Api, kb: &str, name: &str, text: &str) -> String {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name(name.to_owned()),
    );
    let resp = api
        .http
        .post(format!("{}/api/v1/knowledge/{kb}/files", api.base))
        .bearer_auth(&api.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!((200..300).contains(&status), "upload {name}: {status} {body}");
    body["id"].as_str().unwrap().to_owned()
}

/// The search results for `q` once there are `n` of them.
#[expect(
    clippy::disallowed_methods,
    reason = "polls a child process against a real-time deadline"
)]
async fn search_until(api: &Api, q: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = api.get(&format!("/api/v1/search?q={q}")).await;
        assert_eq!(status, 200, "{body}");
        if body["results"].as_array().is_some_and(|r| r.len() >= n) {
            return body["results"].clone();
        }
        assert!(Instant::now() < deadline, "never {n} results for {q}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_serving_restores_into_a_server_with_the_same_search_results() {
    let (port, restored_port) = (free_port(), free_port());
    let emu = emulator(&[port, restored_port]).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let instance = Launch::new(port, &data, &emu).start();
    let api = Api::login(&instance.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, body) = api.post("/api/v1/knowledge", json!({"name": "Handbook"})).await;
    assert_eq!(status, 201, "{body}");
    let kb = body["id"].as_str().unwrap().to_owned();
    let vacation = upload(
        &api,
        &kb,
        "vacation.txt",
        "Vacation policy: every zebrafinch team takes twenty days off.",
    )
    .await;
    upload(
        &api,
        &kb,
        "expenses.txt",
        "Expense policy: zebrafinch receipts go to finance within a week.",
    )
    .await;
    upload(&api, &kb, "badges.txt", "Badge rules for the office.").await;
    let before = search_until(&api, "zebrafinch", 2).await;

    // While the server runs, and takes uploads.
    let backup = dir.path().join("backup");
    let backup_arg = backup.to_str().unwrap();
    let uploads = {
        let api = api.on(&instance.base);
        let kb = kb.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                upload(
                    &api,
                    &kb,
                    &format!("note-{i}.txt"),
                    &format!("meanwhile note {i}"),
                )
                .await;
            }
        })
    };
    let first = stdout(&run(&["backup", backup_arg], &data, &[]));
    uploads.await.unwrap();
    assert!(first.contains("(0 already"), "{first}");
    // Again into the same backup: the blobs are there already.
    let again = stdout(&run(&["backup", backup_arg], &data, &[]));
    assert!(
        again.contains("blob files (3 already") || again.contains("already in"),
        "{again}"
    );

    // Restoring over a data directory that holds anything is refused.
    let refused = run(&["restore", backup_arg], &data, &[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let restored = dir.path().join("restored");
    let out = stdout(&run(&["restore", backup_arg], &restored, &[]));
    assert!(out.contains("blob files"), "{out}");
    instance.terminate().await;

    let second = Launch::new(restored_port, &restored, &emu).start();
    let api = api.on(&second.base);
    let after = search_until(&api, "zebrafinch", 2).await;
    assert_eq!(after, before);
    let (status, content) = api.file_text(&kb, &vacation).await;
    assert_eq!(status, 200);
    assert!(content.contains("twenty days off"));
    // Every document the restored database has, uploaded during the backup or not, has its file.
    let files = api.all_files(&kb).await;
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let (status, _) = api.file_text(&kb, f["id"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{f}");
    }
    second.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
#[expect(
    clippy::disallowed_methods,
    reason = "polls a child process against a real-time deadline"
)]
async fn a_backup_taken_during_a_drive_sync_restores_into_a_server_that_serves_it_and_finishes_the_sync() {
    let (port, restored_port) = (free_port(), free_port());
    let emu = emulator(&[port, restored_port]).await;
    let drive = emu.control();
    let drive_id = drive.default_drive_id();
    crate::common::fill_drive(&drive, &drive_id, "/Shared", 300, 3, "backup during sync, file");
    let folder = drive.item_by_path(&drive_id, "/Shared").unwrap();
    // Downloads take a little while, so that the run is still going when the backup is taken.
    drive.add_fault(msgraph_emulator::FaultRule::new(
        "GET",
        "/_download/*",
        msgraph_emulator::FaultAction::Delay { millis: 20 },
    ));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let instance = Launch::new(port, &data, &emu).start();
    let api = Api::login(&instance.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let kb = api.create_onedrive_kb("Shared drive").await;
    api.connect(&kb).await;
    let (status, body) = api
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            json!({"datasource": "onedrive", "items": [{"type": "folder", "drive_id": drive_id, "item_id": folder.id, "name": "Shared", "path": "/Shared"}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = api.sync_state(&kb).await;
        let done = state["progress"]["current"].as_u64().unwrap_or(0);
        if state["running"] == true && done >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the sync never got going: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let backup = dir.path().join("backup");
    let backup_arg = backup.to_str().unwrap();
    stdout(&run(&["backup", backup_arg], &data, &[]));
    let state = api.sync_state(&kb).await;
    assert_eq!(
        state["running"], true,
        "the backup should be taken during the run: {state}"
    );
    // What the backup holds, as the server searched it then: the files processed by that moment
    // (at least those done before the backup started, at most those done after it ended).
    let restored = dir.path().join("restored");
    stdout(&run(&["restore", backup_arg], &restored, &[]));
    instance.terminate().await;

    let second = Launch::new(restored_port, &restored, &emu).start();
    let api = api.on(&second.base);
    let files = api.all_files(&kb).await;
    let processed: Vec<_> = files.iter().filter(|f| f["status"] == "processed").collect();
    assert!(
        processed.len() >= 20,
        "{} processed in the backup",
        processed.len()
    );
    // Every document of the snapshot is served whole and found by its own words.
    for f in processed.iter().take(40) {
        let name = f["name"].as_str().unwrap();
        let n = &name["file-".len().."file-".len() + 4];
        let (status, hits) = api.get(&format!("/api/v1/search?q=marker{n}")).await;
        assert_eq!(status, 200, "{hits}");
        assert_eq!(hits["results"][0]["name"], name, "{hits}");
        let (status, content) = api.file_text(&kb, f["id"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{f}");
        assert!(content.contains(&format!("marker{n}")));
    }
    // The run the backup caught is taken over once its lease expires, and the restored server
    // ends with the whole drive.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let state = api.sync_state(&kb).await;
        if state["running"] == false && state["status"] == "completed" {
            let files = api.all_files(&kb).await;
            if files.len() == 300 && files.iter().all(|f| f["status"] == "processed") {
                break;
            }
            let (status, body) = api.post(&format!("/api/v1/knowledge/{kb}/sync"), json!({})).await;
            assert!(status == 202 || status == 409, "{status} {body}");
        }
        assert!(
            Instant::now() < deadline,
            "the restored server never finished the sync: {state}\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, hits) = api.get("/api/v1/search?q=marker0299").await;
    assert_eq!(hits["results"][0]["name"], "file-0299.txt", "{hits}");
    second.terminate().await;
    emu.shutdown().await;
}

#[test]
fn backup_of_a_postgres_deployment_is_refused_naming_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["backup", dir.path().join("b").to_str().unwrap()],
        dir.path(),
        &[("KBSYNC_DATABASE_URL", "postgres://127.0.0.1:1/none")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_dump") && err.contains("blobs"), "{err}");
}

const SECRETS: &str = "SELECT refresh_token_key_id, refresh_token_ciphertext FROM connections \
     WHERE refresh_token_ciphertext IS NOT NULL \
     UNION ALL SELECT access_token_key_id, access_token_ciphertext FROM connections \
     WHERE access_token_ciphertext IS NOT NULL \
     UNION ALL SELECT code_verifier_key_id, code_verifier_ciphertext FROM oauth_states ORDER BY 2";

/// Every stored secret's key id and ciphertext, from the data directory's SQLite database or the
/// PostgreSQL database at `database`.
async fn stored_secrets(data: &Path, database: Option<&str>) -> Vec<(String, String)> {
    match database {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let rows = sqlx::query_as(SECRETS).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        None => {
            let url = format!("sqlite://{}", data.join("kbsync.sqlite").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let rows = sqlx::query_as(SECRETS).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_key_moves_every_token_to_the_new_key_and_the_old_key_can_then_be_dropped() {
    rotate_key_round_trip(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_key_moves_every_token_to_the_new_key_on_postgres() {
    let Some(database) = kbsync_kit::PgDatabase::create("kbsync_rotate").await else {
        return;
    };
    rotate_key_round_trip(Some(database.url().to_owned())).await;
}

/// Tokens stored under an old key; `rotate-key`; every row under the new key and readable by a
/// server that no longer knows the old key; a second run changes nothing.
async fn rotate_key_round_trip(database: Option<String>) {
    const OLD: &str = "the old process-test secret key";
    const NEW: &str = "the new process-test secret key";
    let port = free_port();
    let emu = emulator(&[port]).await;
    let control = emu.control();
    let drive_id = control.default_drive_id();
    control
        .put_file(
            &drive_id,
            "/Plans/roadmap.txt",
            b"Roadmap: ship the kestrel release".to_vec(),
        )
        .unwrap();
    let folder = control.item_by_path(&drive_id, "/Plans").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut launch = Launch::new(port, &data, &emu);
    let mut rotate_env = vec![("KBSYNC_SECRET_KEY", NEW), ("KBSYNC_SECRET_KEY_PREVIOUS", OLD)];
    if let Some(url) = &database {
        launch = launch.env("KBSYNC_DATABASE_URL", url);
        rotate_env.push(("KBSYNC_DATABASE_URL", url.as_str()));
    }

    // Connected under the old key.
    let instance = launch.clone().env("KBSYNC_SECRET_KEY", OLD).start();
    let api = Api::login(&instance.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let kb = api.create_onedrive_kb("Plans").await;
    api.connect(&kb).await;
    instance.terminate().await;
    let before = stored_secrets(&data, database.as_deref()).await;
    assert!(before.len() >= 2, "a refresh and an access token: {before:?}");
    let old_id = before[0].0.clone();
    assert!(before.iter().all(|(id, _)| *id == old_id), "{before:?}");

    let out = stdout(&run(&["rotate-key"], &data, &rotate_env));
    assert!(
        out.contains(&format!("re-encrypted {} stored secrets", before.len())),
        "{out}"
    );
    assert!(out.contains("0 remain under another key"), "{out}");
    let after = stored_secrets(&data, database.as_deref()).await;
    assert_eq!(after.len(), before.len());
    let new_id = after[0].0.clone();
    assert_ne!(new_id, old_id);
    assert!(after.iter().all(|(id, _)| *id == new_id), "{after:?}");

    // Done is done: a second run changes nothing.
    let out = stdout(&run(&["rotate-key"], &data, &rotate_env));
    assert!(out.contains("re-encrypted 0 stored secrets"), "{out}");
    assert!(out.contains("0 remain under another key"), "{out}");
    assert_eq!(stored_secrets(&data, database.as_deref()).await, after);

    // Without the previous key the new one reads the tokens: a sync (which needs the access token,
    // or the refresh token to get one) completes.
    let instance = launch.env("KBSYNC_SECRET_KEY", NEW).start();
    let api = api.on(&instance.base);
    let (status, body) = api
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            json!({"datasource": "onedrive", "items": [{"type": "folder", "drive_id": drive_id, "item_id": folder.id, "name": "Plans", "path": "/Plans"}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    api.wait_status(&kb, "completed", Duration::from_secs(60)).await;
    let files = api.all_files(&kb).await;
    assert!(files.iter().any(|f| f["name"] == "roadmap.txt"), "{files:?}");
    instance.terminate().await;
}

#[test]
fn rotate_key_refuses_a_data_directory_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["rotate-key"],
        dir.path(),
        &[("KBSYNC_SECRET_KEY", "a new process-test secret key")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("there is no database"), "{err}");
    assert!(!dir.path().join("kbsync.sqlite").exists());
}
