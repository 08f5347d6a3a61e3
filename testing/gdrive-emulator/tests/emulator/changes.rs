use crate::common::{Env, reason, start};
use gdrive_emulator::{Grant, Grantee};
use serde_json::Value;

async fn start_token(env: &Env, extra: &str) -> String {
    let (s, body) = env.json(&format!("changes/startPageToken?{extra}")).await;
    assert_eq!(s, 200, "{body}");
    body["startPageToken"].as_str().unwrap().to_string()
}

/// Every change from `token` to the end, and the new start token.
async fn drain(env: &Env, token: &str, extra: &str) -> (Vec<Value>, String) {
    drain_as(env, &env.token, token, extra).await
}

async fn drain_as(env: &Env, bearer: &str, token: &str, extra: &str) -> (Vec<Value>, String) {
    let mut out = Vec::new();
    let mut token = token.to_string();
    for _ in 0..100 {
        let (s, body) = env
            .json_as(
                bearer,
                &format!(
                    "changes?pageToken={token}&fields=nextPageToken,newStartPageToken,changes(changeType,removed,fileId,driveId,time,file(id,name,parents,trashed,md5Checksum,driveId),drive(id,name))&{extra}"
                ),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        out.extend(body["changes"].as_array().unwrap().iter().cloned());
        if let Some(n) = body["newStartPageToken"].as_str() {
            assert!(
                body.get("nextPageToken").is_none(),
                "newStartPageToken only on the last page"
            );
            return (out, n.to_string());
        }
        token = body["nextPageToken"].as_str().unwrap().to_string();
    }
    panic!("changes never ended");
}

fn only(changes: &[Value], id: &str) -> Value {
    let mine: Vec<&Value> = changes.iter().filter(|c| c["fileId"] == id).collect();
    assert_eq!(mine.len(), 1, "one entry per file: {changes:?}");
    mine[0].clone()
}

#[tokio::test]
async fn each_mutation_kind_appears_as_the_files_current_state() {
    let env = start().await;
    let root = env.root();
    let t0 = start_token(&env, "").await;
    let folder = env.ctl.create_folder(&root, "A").unwrap();
    let other = env.ctl.create_folder(&root, "B").unwrap();
    let file = env.ctl.create_file(&folder, "x.txt", "one").unwrap();
    let (changes, t1) = drain(&env, &t0, "").await;
    let c = only(&changes, &file);
    assert_eq!(c["changeType"], "file");
    assert_eq!(c["removed"], false);
    assert_eq!(c["file"]["name"], "x.txt");
    assert!(c["time"].is_string());
    assert_eq!(changes.len(), 3);

    env.ctl.update_content(&file, "two").unwrap();
    let (changes, t2) = drain(&env, &t1, "").await;
    let c = only(&changes, &file);
    assert_eq!(
        c["file"]["md5Checksum"], "b8a9f715dbb64fd5c56e7783c6820a61",
        "md5 of 'two'"
    );
    assert_eq!(changes.len(), 1);

    env.ctl.rename(&file, "y.txt").unwrap();
    let (changes, t3) = drain(&env, &t2, "").await;
    assert_eq!(only(&changes, &file)["file"]["name"], "y.txt");

    env.ctl.move_item(&file, &other).unwrap();
    let (changes, t4) = drain(&env, &t3, "").await;
    assert_eq!(only(&changes, &file)["file"]["parents"][0], other.as_str());
    assert_eq!(
        changes.len(),
        1,
        "a move shows only the item, with its new parents"
    );

    env.ctl.trash(&folder).unwrap();
    let (changes, t5) = drain(&env, &t4, "").await;
    let c = only(&changes, &folder);
    assert_eq!(c["removed"], false);
    assert_eq!(c["file"]["trashed"], true);

    env.ctl.delete(&file).unwrap();
    let (changes, t6) = drain(&env, &t5, "").await;
    let c = only(&changes, &file);
    assert_eq!(c["removed"], true);
    assert!(c.get("file").is_none());
    let (changes, _) = drain(&env, &t5, "includeRemoved=false").await;
    assert!(changes.is_empty(), "includeRemoved=false hides removals");

    let (changes, t7) = drain(&env, &t6, "").await;
    assert!(changes.is_empty());
    assert_eq!(t6, t7, "nothing happened, same token");

    // From the first token, each file appears once, in its latest state.
    let (changes, _) = drain(&env, &t0, "").await;
    assert_eq!(only(&changes, &file)["removed"], true);
    assert_eq!(changes.len(), 3);
    env.shutdown().await;
}

#[tokio::test]
async fn a_small_page_size_pages_with_next_page_token() {
    let env = start().await;
    let t0 = start_token(&env, "").await;
    for i in 0..5 {
        env.ctl
            .create_file(&env.root(), &format!("{i}.txt"), "x")
            .unwrap();
    }
    let (s, body) = env.json(&format!("changes?pageToken={t0}&pageSize=2")).await;
    assert_eq!(s, 200);
    assert_eq!(body["changes"].as_array().unwrap().len(), 2);
    assert!(body["nextPageToken"].is_string());
    assert!(body.get("newStartPageToken").is_none());
    let (all, _) = drain(&env, &t0, "pageSize=2").await;
    assert_eq!(all.len(), 5);
    env.shutdown().await;
}

#[tokio::test]
async fn shared_drive_changes_come_per_drive_or_with_include_items_from_all_drives() {
    let env = start().await;
    let drive = env.ctl.create_shared_drive("Team", vec![]).unwrap();
    let user_t = start_token(&env, "").await;
    let drive_t = start_token(&env, &format!("driveId={drive}&supportsAllDrives=true")).await;
    let file = env.ctl.create_file(&drive, "a.txt", "a").unwrap();
    let (changes, _) = drain(&env, &user_t, "").await;
    assert!(
        changes.is_empty(),
        "not in the user feed without includeItemsFromAllDrives"
    );
    let (changes, _) = drain(
        &env,
        &user_t,
        "includeItemsFromAllDrives=true&supportsAllDrives=true",
    )
    .await;
    assert_eq!(only(&changes, &file)["file"]["driveId"], drive.as_str());
    let (changes, _) = drain(
        &env,
        &drive_t,
        &format!("driveId={drive}&supportsAllDrives=true&includeItemsFromAllDrives=true"),
    )
    .await;
    let c = only(&changes, &file);
    assert_eq!(c["driveId"], drive.as_str());

    let t = start_token(&env, "").await;
    env.ctl.delete_shared_drive(&drive).unwrap();
    let (changes, _) = drain(&env, &t, "includeItemsFromAllDrives=true&supportsAllDrives=true").await;
    let d: Vec<&Value> = changes.iter().filter(|c| c["changeType"] == "drive").collect();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["removed"], true);
    assert_eq!(only(&changes, &file)["removed"], true);
    let (s, body) = env
        .json(&format!(
            "changes/startPageToken?driveId={drive}&supportsAllDrives=true"
        ))
        .await;
    assert_eq!((s, reason(&body)), (404, "notFound"));
    env.shutdown().await;
}

#[tokio::test]
async fn losing_access_is_a_removal_for_the_user_who_lost_it() {
    let env = start().await;
    let blake = env.token_for("blake.rivera@example.com");
    let file = env.ctl.create_file(&env.root(), "shared.txt", "s").unwrap();
    let (_, b) = env.json_as(&blake, "changes/startPageToken").await;
    let t0 = b["startPageToken"].as_str().unwrap().to_string();
    let share = Grant {
        grantee: Grantee::User {
            email_address: "blake.rivera@example.com".into(),
        },
        role: "reader".into(),
        allow_file_discovery: false,
    };
    env.ctl.set_permissions(&file, vec![share]).unwrap();
    let (changes, t1) = drain_as(&env, &blake, &t0, "").await;
    assert_eq!(
        only(&changes, &file)["removed"],
        false,
        "sharing adds it to the feed"
    );
    env.ctl.set_permissions(&file, vec![]).unwrap();
    let (changes, _) = drain_as(&env, &blake, &t1, "").await;
    assert_eq!(only(&changes, &file)["removed"], true, "unsharing removes it");
    env.shutdown().await;
}

#[tokio::test]
async fn unknown_and_expired_page_tokens_get_400_invalid_on_page_token() {
    let env = start().await;
    let t0 = start_token(&env, "").await;
    for bad in ["garbage", "0", "999999"] {
        let (s, body) = env.json(&format!("changes?pageToken={bad}")).await;
        assert_eq!((s, reason(&body)), (400, "invalid"), "{bad}");
        assert_eq!(body["error"]["errors"][0]["location"], "pageToken");
        assert_eq!(body["error"]["errors"][0]["locationType"], "parameter");
    }
    let (s, body) = env.json("changes").await;
    assert_eq!((s, reason(&body)), (400, "required"));
    assert_eq!(env.json(&format!("changes?pageToken={t0}")).await.0, 200);
    env.ctl.expire_page_tokens();
    let (s, body) = env.json(&format!("changes?pageToken={t0}")).await;
    assert_eq!((s, reason(&body)), (400, "invalid"));
    let fresh = start_token(&env, "").await;
    assert_eq!(env.json(&format!("changes?pageToken={fresh}")).await.0, 200);
    env.shutdown().await;
}

#[tokio::test]
async fn a_move_between_my_drive_and_a_shared_drive_is_news_to_both_feeds() {
    let env = start().await;
    let drive = env.ctl.create_shared_drive("Team", vec![]).unwrap();
    let folder = env.ctl.create_folder(&env.root(), "Move me").unwrap();
    let inner = env.ctl.create_file(&folder, "inner.txt", "i").unwrap();
    let drive_q = format!("driveId={drive}&supportsAllDrives=true&includeItemsFromAllDrives=true");
    let user_t = start_token(&env, "").await;
    let drive_t = start_token(&env, &drive_q).await;
    env.ctl.move_item(&folder, &drive).unwrap();
    let (changes, user_t2) = drain(&env, &user_t, "").await;
    assert_eq!(only(&changes, &folder)["removed"], true, "left My Drive");
    assert_eq!(only(&changes, &inner)["removed"], true, "its subtree left too");
    let (changes, drive_t2) = drain(&env, &drive_t, &drive_q).await;
    assert_eq!(only(&changes, &folder)["file"]["driveId"], drive.as_str());
    assert_eq!(only(&changes, &inner)["file"]["parents"][0], folder.as_str());

    env.ctl.move_item(&folder, &env.root()).unwrap();
    let (changes, _) = drain(&env, &drive_t2, &drive_q).await;
    assert_eq!(only(&changes, &folder)["removed"], true, "left the shared drive");
    let (changes, _) = drain(&env, &user_t2, "").await;
    assert_eq!(only(&changes, &inner)["removed"], false, "back in My Drive");
    env.shutdown().await;
}
