//! `GET /me/drive/sharedWithMe`: items of other drives shared with the caller, each with a `remoteItem` facet.
use crate::common::*;
use msgraph_emulator::{DriveType, LinkUser, PermissionSpec};
use serde_json::Value;

async fn shared_with_me(env: &Env) -> Vec<Value> {
    env.get_json("/me/drive/sharedWithMe").await["value"]
        .as_array()
        .unwrap()
        .clone()
}

fn remote_names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["remoteItem"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn shared_with_me_lists_items_shared_from_other_drives_with_remote_item_facets() {
    let env = env().await;
    let bob = bob(&env, DriveType::Business);
    let d = bob.drive_id.unwrap();
    let report = env.ctl.put_file(&d, "/Reports/q1.docx", "quarter one").unwrap();
    env.ctl.put_file(&d, "/Team/notes.txt", "n").unwrap();
    let team = env.ctl.item_by_path(&d, "/Team").unwrap();
    let reports = env.ctl.item_by_path(&d, "/Reports").unwrap();
    env.ctl
        .add_permission(&d, &report.id, PermissionSpec::user(&env.user, &["read"]))
        .unwrap();
    env.ctl
        .add_permission(
            &d,
            &team.id,
            PermissionSpec::Link {
                link_type: "edit".into(),
                scope: "users".into(),
                users: vec![LinkUser {
                    display_name: "Adele Vance".into(),
                    email: Some("adele.vance@contoso.onmicrosoft.com".into()),
                }],
                roles: vec![],
                prevents_download: false,
            },
        )
        .unwrap();

    let body = env.get_json("/me/drive/sharedWithMe").await;
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#Collection(driveItem)")
    );
    let items = body["value"].as_array().unwrap().clone();
    assert_eq!(remote_names(&items), ["q1.docx", "Team"]);

    let file = &items[0];
    let remote = &file["remoteItem"];
    assert_eq!(remote["id"], report.id);
    assert_ne!(file["id"], report.id, "the entry is not the remote item itself");
    assert_eq!(file["name"], "q1.docx");
    assert_eq!(remote["size"], 11);
    assert_eq!(file["size"], 11);
    assert_eq!(remote["parentReference"]["driveId"], d);
    assert_eq!(remote["parentReference"]["driveType"], "business");
    assert_eq!(remote["parentReference"]["id"], reports.id);
    assert_eq!(
        remote["file"]["hashes"]["quickXorHash"],
        report.quick_xor_hash.clone().unwrap()
    );
    assert!(file["file"].is_object());
    assert!(remote["webUrl"].as_str().unwrap().ends_with("/Reports/q1.docx"));
    assert_eq!(remote["shared"]["owner"]["user"]["id"], bob.id);
    assert!(remote.get("@microsoft.graph.downloadUrl").is_none());

    let folder = &items[1]["remoteItem"];
    assert_eq!(folder["id"], team.id);
    assert_eq!(folder["folder"]["childCount"], 1);
    assert!(items[1]["folder"].is_object());

    // The remote reference opens the item, and a shared folder can be walked and delta'd.
    let opened = env
        .get_json(&format!("/drives/{d}/items/{}", remote["id"].as_str().unwrap()))
        .await;
    assert_eq!(opened["name"], "q1.docx");
    let (walked, _, _) = env
        .delta_round(&format!("/drives/{d}/items/{}/delta", team.id))
        .await;
    assert_eq!(names(&walked), ["Team", "notes.txt"]);
    let log = env.ctl.request_log();
    assert_eq!(log.count("GET /v1.0/me/drive/sharedWithMe"), 1);
    env.shutdown().await;
}

#[tokio::test]
async fn shared_with_me_leaves_out_own_items_unshared_items_organization_links_and_revoked_items() {
    let env = env().await;
    assert!(shared_with_me(&env).await.is_empty(), "nothing shared at start");
    let bob = bob(&env, DriveType::Business);
    let d = bob.drive_id.unwrap();
    let mine = env.ctl.put_file(&env.drive, "/mine.txt", "m").unwrap();
    env.ctl
        .add_permission(&env.drive, &mine.id, PermissionSpec::user(&env.user, &["read"]))
        .unwrap();
    env.ctl.put_file(&d, "/unshared.txt", "u").unwrap();
    let org = env.ctl.put_file(&d, "/org.txt", "o").unwrap();
    env.ctl
        .add_permission(&d, &org.id, PermissionSpec::link("view", "organization"))
        .unwrap();
    let revoked = env.ctl.put_file(&d, "/revoked.txt", "r").unwrap();
    env.ctl
        .add_permission(&d, &revoked.id, PermissionSpec::user(&env.user, &["read"]))
        .unwrap();
    let to_bob = env.ctl.put_file(&d, "/for-bob-only.txt", "b").unwrap();
    env.ctl
        .add_permission(&d, &to_bob.id, PermissionSpec::user(&bob.id, &["read"]))
        .unwrap();
    assert_eq!(remote_names(&shared_with_me(&env).await), ["revoked.txt"]);
    env.ctl.revoke_access(&env.user, &d, &revoked.id).unwrap();
    assert!(shared_with_me(&env).await.is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn shared_with_me_includes_items_shared_with_a_group_the_user_is_in() {
    let env = env().await;
    let pat = bob(&env, DriveType::Personal);
    let d = pat.drive_id.unwrap();
    let album = env.ctl.create_folder(&d, "/Album").unwrap();
    env.ctl
        .add_permission(
            &d,
            &album.id,
            PermissionSpec::Group {
                group_id: Some("g-family".into()),
                display_name: "Family".into(),
                email: None,
                roles: vec!["read".into()],
            },
        )
        .unwrap();
    assert!(shared_with_me(&env).await.is_empty());
    env.ctl.add_group_member("g-family", &env.user).unwrap();
    let items = shared_with_me(&env).await;
    assert_eq!(remote_names(&items), ["Album"]);
    assert_eq!(items[0]["remoteItem"]["parentReference"]["driveType"], "personal");
    assert_eq!(items[0]["remoteItem"]["parentReference"]["driveId"], d);
    env.shutdown().await;
}

#[tokio::test]
async fn shared_with_me_of_another_user_is_access_denied() {
    let env = env().await;
    let bob = bob(&env, DriveType::Business);
    let mine = env.get(&format!("/users/{}/drive/sharedWithMe", env.user)).await;
    assert_eq!(mine.status(), 200);
    let theirs = env.get(&format!("/users/{}/drive/sharedWithMe", bob.id)).await;
    assert_eq!(theirs.status(), 403);
    let body: Value = theirs.json().await.unwrap();
    assert_eq!(body["error"]["code"], "accessDenied");
    env.shutdown().await;
}
