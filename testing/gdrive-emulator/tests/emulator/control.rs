use crate::common::{start, start_generated, start_with};
use gdrive_emulator::{Emulator, FileInfo};
use serde_json::{Value, json};

#[tokio::test]
async fn info_names_the_urls_the_default_user_its_root_and_the_client() {
    let env = start().await;
    let info: Value = env
        .http
        .get(format!("{}/info", env.emu.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let base = env.emu.base_url();
    assert_eq!(info["authorize_url"], format!("{base}/o/oauth2/v2/auth"));
    assert_eq!(info["token_url"], format!("{base}/token"));
    assert_eq!(info["api_url"], format!("{base}/drive/v3"));
    assert_eq!(info["default_user"]["email"], "alex.kim@example.com");
    assert_eq!(info["my_drive_root_id"], env.root().as_str());
    assert_eq!(info["client_id"], gdrive_emulator::DEFAULT_CLIENT_ID);
    let (s, root) = env.json("files/root?fields=id,name").await;
    assert_eq!(s, 200);
    assert_eq!(root["id"], info["my_drive_root_id"]);
    assert_eq!(root["name"], "My Drive");
    env.shutdown().await;
}

#[tokio::test]
async fn http_mutations_script_the_drive_and_files_lists_paths_sizes_and_md5s() {
    let env = start().await;
    let ctl = env.emu.control_url();
    let post = |path: String, body: Value| {
        let http = env.http.clone();
        async move {
            let r = http.post(path).json(&body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let folder = post(format!("{ctl}/files"), json!({"name": "Docs", "kind": "folder"})).await;
    let fid = folder["id"].as_str().unwrap().to_string();
    let file = post(
        format!("{ctl}/files"),
        json!({"name": "a.txt", "kind": "file", "content": "hello", "parent_id": fid}),
    )
    .await;
    assert_eq!(file["path"], "/My Drive/Docs/a.txt");
    assert_eq!(file["mimeType"], "text/plain");
    assert_eq!(file["size"], 5);
    assert_eq!(file["md5Checksum"], "5d41402abc4b2a76b9719d911017c592");
    let id = file["id"].as_str().unwrap().to_string();
    let doc = post(
        format!("{ctl}/files"),
        json!({"name": "Plan", "kind": "google", "type": "document", "paragraphs": ["p1"]}),
    )
    .await;
    assert_eq!(doc["mimeType"], "application/vnd.google-apps.document");
    post(format!("{ctl}/files/{id}/rename"), json!({"name": "b.txt"})).await;
    post(format!("{ctl}/files/{id}/trash"), json!({})).await;
    let r = env
        .http
        .put(format!("{ctl}/files/{id}/content"))
        .json(&json!({"content": "changed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let files: Vec<FileInfo> = env
        .http
        .get(format!("{ctl}/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b = files.iter().find(|f| f.id == id).unwrap();
    assert_eq!(b.path, "/My Drive/Docs/b.txt");
    assert!(b.trashed);
    assert_eq!(b.size, Some(7));
    let r = env.http.delete(format!("{ctl}/files/{id}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = env.http.get(format!("{ctl}/files/{id}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = env
        .http
        .post(format!("{ctl}/files"))
        .json(&json!({"name": "x", "kind": "file", "parent_id": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "a bad parent is a clear error");
    env.shutdown().await;
}

#[tokio::test]
async fn the_generated_domain_is_reproducible_from_the_seed_and_has_every_kind_of_item() {
    let a = start_generated(40).await;
    let b = start_generated(40).await;
    let c = start_with(Emulator::builder().seed(8).generate(40)).await;
    let files = a.ctl.files();
    assert_eq!(files, b.ctl.files(), "same seed, same domain");
    assert_ne!(files, c.ctl.files(), "another seed, another domain");
    let count = |m: &str| files.iter().filter(|f| f.mime_type == m).count();
    assert!(count("application/vnd.google-apps.folder") >= 8);
    assert!(count("application/vnd.google-apps.document") >= 4);
    assert!(count("application/vnd.google-apps.spreadsheet") >= 4);
    assert_eq!(count("application/vnd.google-apps.shortcut"), 1);
    assert!(count("application/pdf") >= 4);
    assert!(count("application/vnd.openxmlformats-officedocument.wordprocessingml.document") >= 4);
    assert!(
        files
            .iter()
            .any(|f| f.path.starts_with("/Shared drives/Engineering/"))
    );
    assert!(
        files
            .iter()
            .any(|f| f.path.starts_with("/Drives/blake.rivera@example.com/"))
    );
    for f in files.iter().filter(|f| f.md5_checksum.is_some()) {
        assert!(f.size.unwrap() > 0, "{} has text", f.path);
    }
    let (_, drives) = a.json("drives").await;
    assert_eq!(drives["drives"][0]["name"], "Engineering");
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn http_control_scripts_users_groups_drives_tokens_and_page_token_expiry() {
    let env = start().await;
    let ctl = env.emu.control_url();
    let send = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (s, user) = send(
        env.http
            .post(format!("{ctl}/users"))
            .json(&json!({"name": "Casey Lee", "email": "casey@example.com"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(
        env.http
            .put(format!("{ctl}/groups/sales@example.com"))
            .json(&json!(["casey@example.com"])),
    )
    .await;
    assert_eq!(s, 200);
    let (s, drive) = send(env.http.post(format!("{ctl}/drives")).json(&json!({
        "name": "Sales",
        "members": [{"type": "group", "email_address": "sales@example.com", "role": "reader"}]
    })))
    .await;
    assert_eq!(s, 200);
    let drive_id = drive["id"].as_str().unwrap().to_string();
    let (s, tokens) = send(env.http.post(format!("{ctl}/tokens")).json(&json!({
        "user_id": user["id"], "scope": "https://www.googleapis.com/auth/drive.readonly"
    })))
    .await;
    assert_eq!(s, 200);
    let casey = tokens["access_token"].as_str().unwrap().to_string();
    let (s, drives) = env.json_as(&casey, "drives").await;
    assert_eq!(s, 200);
    assert_eq!(
        drives["drives"][0]["id"],
        drive_id.as_str(),
        "a member through the group"
    );
    assert_eq!(
        env.json("drives").await.1["drives"],
        json!([]),
        "Alex is not a member"
    );

    let (_, start) = env.json_as(&casey, "changes/startPageToken").await;
    let token = start["startPageToken"].as_str().unwrap().to_string();
    let (s, _) = send(env.http.post(format!("{ctl}/page-tokens/expire"))).await;
    assert_eq!(s, 200);
    assert_eq!(
        env.json_as(&casey, &format!("changes?pageToken={token}")).await.0,
        400
    );

    let user_id = user["id"].as_str().unwrap();
    let (s, revoked) = send(env.http.post(format!("{ctl}/users/{user_id}/revoke-tokens"))).await;
    assert_eq!(s, 200);
    assert_eq!(revoked["revoked"], 2, "the access and the refresh token");
    assert_eq!(env.json_as(&casey, "drives").await.0, 401);
    let log: Value = env
        .http
        .get(format!("{ctl}/traffic"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log["counts"]["GET /drive/v3/drives"].as_u64().unwrap() >= 3);
    env.shutdown().await;
}
