use crate::common::{Env, enc, reason, start, start_generated};
use gdrive_emulator::{DocBody, GOOGLE_DOC, SHORTCUT};
use serde_json::Value;
use std::collections::BTreeSet;

#[tokio::test]
async fn files_list_pages_through_every_child_exactly_once_with_next_page_tokens() {
    let env = start().await;
    let folder = env.ctl.create_folder(&env.root(), "Many").unwrap();
    let mut want = BTreeSet::new();
    for i in 0..25 {
        want.insert(
            env.ctl
                .create_file(&folder, &format!("f{i}.txt"), format!("body {i}"))
                .unwrap(),
        );
    }
    let q = enc(&format!("'{folder}' in parents and trashed = false"));
    let mut seen = BTreeSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("files?q={q}&pageSize=10&fields=nextPageToken,files(id,name,parents)");
        if let Some(t) = &token {
            path.push_str(&format!("&pageToken={}", enc(t)));
        }
        let (s, body) = env.json(&path).await;
        assert_eq!(s, 200, "{body}");
        pages += 1;
        for f in body["files"].as_array().unwrap() {
            assert_eq!(f["parents"][0], folder.as_str());
            assert!(f.get("mimeType").is_none(), "the mask drops unrequested fields");
            assert!(
                seen.insert(f["id"].as_str().unwrap().to_string()),
                "no duplicates"
            );
        }
        match body["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, want);
    let (s, body) = env.json("files?pageToken=bogus").await;
    assert_eq!((s, reason(&body)), (400, "invalid"));
    let (s, _) = env.json("files?pageSize=1001").await;
    assert_eq!(s, 400, "pageSize is 1 to 1000");
    env.shutdown().await;
}

#[tokio::test]
async fn the_default_mask_is_kind_id_name_and_mime_type() {
    let env = start().await;
    let id = env.ctl.create_file(&env.root(), "a.txt", "x").unwrap();
    let (_, body) = env.json("files").await;
    let f = &body["files"][0];
    let keys: BTreeSet<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["kind", "id", "name", "mimeType"]));
    assert_eq!(body["kind"], "drive#fileList");
    let (_, body) = env.json(&format!("files/{id}")).await;
    assert_eq!(body.as_object().unwrap().len(), 4);
    let (_, body) = env.json(&format!("files/{id}?fields=*")).await;
    assert_eq!(body["size"], "1", "int64 as a string");
    let (s, body) = env.json(&format!("files/{id}?fields=files(id")).await;
    assert_eq!(s, 400, "{body}");
    env.shutdown().await;
}

#[tokio::test]
async fn trashed_items_are_listed_unless_the_query_excludes_them() {
    let env = start().await;
    let keep = env.ctl.create_file(&env.root(), "keep.txt", "k").unwrap();
    let gone = env.ctl.create_file(&env.root(), "gone.txt", "g").unwrap();
    env.ctl.trash(&gone).unwrap();
    let ids = |b: &Value| -> BTreeSet<String> {
        b["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = env.json("files").await;
    assert_eq!(ids(&all), BTreeSet::from([keep.clone(), gone.clone()]));
    let (_, live) = env.json(&format!("files?q={}", enc("trashed = false"))).await;
    assert_eq!(ids(&live), BTreeSet::from([keep]));
    let (_, dead) = env
        .json(&format!(
            "files?q={}&fields=files(id,trashed)",
            enc("trashed=true")
        ))
        .await;
    assert_eq!(ids(&dead), BTreeSet::from([gone]));
    assert_eq!(dead["files"][0]["trashed"], true);
    env.shutdown().await;
}

#[tokio::test]
async fn queries_filter_by_mime_type_name_and_combinations_and_bad_ones_are_invalid_q() {
    let env = start().await;
    let root = env.root();
    let folder = env.ctl.create_folder(&root, "Docs").unwrap();
    let doc = env
        .ctl
        .create_google(
            &root,
            "Plan",
            DocBody::Document {
                paragraphs: vec!["hello".into()],
            },
        )
        .unwrap();
    let txt = env.ctl.create_file(&root, "it's.txt", "x").unwrap();
    assert_eq!(
        ids_for(&env, "mimeType = 'application/vnd.google-apps.folder'").await,
        BTreeSet::from([folder.clone()])
    );
    assert_eq!(
        ids_for(
            &env,
            "mimeType != 'application/vnd.google-apps.folder' and 'root' in parents"
        )
        .await,
        BTreeSet::from([doc.clone(), txt.clone()])
    );
    assert_eq!(
        ids_for(&env, r"name = 'it\'s.txt'").await,
        BTreeSet::from([txt.clone()])
    );
    assert_eq!(
        ids_for(&env, &format!("mimeType = '{GOOGLE_DOC}' or name contains 'doc'")).await,
        BTreeSet::from([doc.clone(), folder.clone()])
    );
    assert_eq!(
        ids_for(&env, "not name = 'Plan' and (trashed = false)")
            .await
            .len(),
        2
    );
    assert_eq!(
        ids_for(&env, "fullText contains 'hello'").await,
        BTreeSet::from([doc])
    );
    let (s, body) = env.json(&format!("files?q={}", enc("name === 'x'"))).await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["errors"][0]["location"], "q");
    assert_eq!(body["error"]["message"], "Invalid Value");
    env.shutdown().await;
}

#[tokio::test]
async fn alt_media_returns_the_bytes_whose_md5_and_size_the_metadata_gives_and_honours_ranges() {
    let env = start().await;
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = env
        .ctl
        .create_file(&env.root(), "blob.bin", bytes.clone())
        .unwrap();
    let (_, meta) = env
        .json(&format!("files/{id}?fields=size,md5Checksum,mimeType"))
        .await;
    let r = env.get(&format!("files/{id}?alt=media")).await;
    assert_eq!(r.status().as_u16(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());
    assert_eq!(meta["size"], bytes.len().to_string());
    use md5::Digest;
    assert_eq!(meta["md5Checksum"], hex::encode(md5::Md5::digest(&bytes)));
    let r = env
        .http
        .get(format!("{}/files/{id}?alt=media", env.emu.api_url()))
        .bearer_auth(&env.token)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/5000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[10..20]);
    env.shutdown().await;
}

#[tokio::test]
async fn google_docs_and_folders_refuse_alt_media_with_file_not_downloadable() {
    let env = start().await;
    let doc = env
        .ctl
        .create_google(
            &env.root(),
            "Notes",
            DocBody::Document {
                paragraphs: vec!["x".into()],
            },
        )
        .unwrap();
    let (s, body) = env.json(&format!("files/{doc}?alt=media")).await;
    assert_eq!(s, 403);
    assert_eq!(reason(&body), "fileNotDownloadable");
    assert_eq!(
        body["error"]["message"],
        "Only files with binary content can be downloaded. Use Export with Docs Editors files."
    );
    assert_eq!(body["error"]["errors"][0]["location"], "alt");
    let folder = env.ctl.create_folder(&env.root(), "F").unwrap();
    assert_eq!(env.json(&format!("files/{folder}?alt=media")).await.0, 403);
    let (s, body) = env.json("files/1doesnotexist").await;
    assert_eq!((s, reason(&body)), (404, "notFound"));
    assert_eq!(body["error"]["message"], "File not found: 1doesnotexist.");
    env.shutdown().await;
}

#[tokio::test]
async fn shared_drive_items_need_supports_all_drives_and_the_right_corpora() {
    let env = start().await;
    let drive = env.ctl.create_shared_drive("Team", vec![]).unwrap();
    let file = env.ctl.create_file(&drive, "spec.txt", "s").unwrap();
    assert_eq!(env.json(&format!("files/{file}")).await.0, 404);
    let (s, body) = env
        .json(&format!(
            "files/{file}?supportsAllDrives=true&fields=driveId,parents,owners"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["driveId"], drive.as_str());
    assert_eq!(body["parents"][0], drive.as_str());
    assert!(body.get("owners").is_none(), "shared drive items have no owners");

    let (s, body) = env.json(&format!("files?driveId={drive}")).await;
    assert_eq!((s, reason(&body)), (400, "teamDriveIdRequiresTeamDriveCorpora"));
    let (s, _) = env.json(&format!("files?corpora=drive&driveId={drive}")).await;
    assert_eq!(s, 403, "includeItemsFromAllDrives is required");
    let (s, body) = env
        .json(&format!(
            "files?corpora=drive&driveId={drive}&includeItemsFromAllDrives=true&supportsAllDrives=true"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["files"][0]["id"], file.as_str());
    let (_, body) = env.json("files").await;
    assert!(
        body["files"].as_array().unwrap().is_empty(),
        "My Drive only by default"
    );
    let (_, body) = env.json("drives").await;
    assert_eq!(body["drives"][0]["id"], drive.as_str());
    assert_eq!(body["drives"][0]["name"], "Team");
    env.shutdown().await;
}

#[tokio::test]
async fn shared_with_me_lists_what_another_user_shared_and_shortcuts_name_their_target() {
    let env = start_generated(20).await;
    let (s, body) = env
        .json(&format!(
            "files?q={}&fields=files(id,name,ownedByMe,sharedWithMeTime,parents)",
            enc("sharedWithMe")
        ))
        .await;
    assert_eq!(s, 200);
    let names: BTreeSet<&str> = body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["Shared Budget", "Q3 Plan.docx"]));
    for f in body["files"].as_array().unwrap() {
        assert_eq!(f["ownedByMe"], false);
        assert!(f["sharedWithMeTime"].is_string());
        assert!(f.get("parents").is_none(), "the other user's root is not visible");
    }
    let (_, body) = env
        .json(&format!(
            "files?q={}&fields=files(id,shortcutDetails)",
            enc(&format!("mimeType = '{SHORTCUT}'"))
        ))
        .await;
    let target = body["files"][0]["shortcutDetails"]["targetId"].as_str().unwrap();
    assert_eq!(env.json(&format!("files/{target}")).await.0, 200);
    env.shutdown().await;
}

#[tokio::test]
async fn about_requires_fields_and_names_the_user() {
    let env = start().await;
    let (s, body) = env.json("about").await;
    assert_eq!((s, reason(&body)), (400, "required"));
    let (s, body) = env.json("about?fields=user,storageQuota").await;
    assert_eq!(s, 200);
    assert_eq!(body["user"]["displayName"], "Alex Kim");
    assert!(body["user"]["permissionId"].is_string());
    assert!(body.get("kind").is_none());
    env.shutdown().await;
}

async fn ids_for(env: &Env, q: &str) -> BTreeSet<String> {
    let (s, b) = env.json(&format!("files?q={}", enc(q))).await;
    assert_eq!(s, 200, "{q}: {b}");
    b["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_metadata_only_scope_lists_files_but_cannot_download_or_export() {
    let env = start().await;
    let id = env.ctl.create_file(&env.root(), "a.txt", "x").unwrap();
    let doc = env
        .ctl
        .create_google(
            &env.root(),
            "D",
            DocBody::Document {
                paragraphs: vec!["d".into()],
            },
        )
        .unwrap();
    let meta = env
        .ctl
        .mint_tokens(
            &env.ctl.default_user_id(),
            "https://www.googleapis.com/auth/drive.metadata.readonly",
        )
        .unwrap()
        .access_token;
    assert_eq!(env.json_as(&meta, "files").await.0, 200);
    let (s, body) = env.json_as(&meta, &format!("files/{id}?alt=media")).await;
    assert_eq!((s, reason(&body)), (403, "insufficientPermissions"));
    let (s, _) = env
        .json_as(&meta, &format!("files/{doc}/export?mimeType=text/plain"))
        .await;
    assert_eq!(s, 403);
    let profile = env
        .ctl
        .mint_tokens(&env.ctl.default_user_id(), "openid email")
        .unwrap()
        .access_token;
    let (s, body) = env.json_as(&profile, "files").await;
    assert_eq!((s, reason(&body)), (403, "insufficientPermissions"));
    env.shutdown().await;
}

#[tokio::test]
async fn owners_queries_tell_my_files_from_files_shared_with_me() {
    let env = start_generated(10).await;
    let mine = ids_for(&env, "'me' in owners").await;
    let blakes = ids_for(&env, "'blake.rivera@example.com' in owners").await;
    assert!(!mine.is_empty() && !blakes.is_empty());
    assert!(mine.is_disjoint(&blakes));
    let shared = ids_for(&env, "sharedWithMe").await;
    assert!(shared.is_subset(&blakes));
    let (_, body) = env
        .json("files?q=sharedWithMe&fields=files(owners(emailAddress))")
        .await;
    assert_eq!(
        body["files"][0]["owners"][0]["emailAddress"],
        "blake.rivera@example.com"
    );
    env.shutdown().await;
}
