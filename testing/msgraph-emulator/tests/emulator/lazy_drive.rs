use crate::common::*;
use msgraph_emulator::quickxorhash::quickxorhash;
use msgraph_emulator::{DriveType, NewDrive};
use std::collections::HashSet;

#[tokio::test]
async fn a_generated_drive_serves_every_item_once_over_delta_with_parents_before_children() {
    let env = env_with(builder().generate_lazily(2_500)).await;
    let root = env.ctl.drive(&env.drive).unwrap().root_id;
    let (items, pages, delta) = env
        .delta_round(&format!("/drives/{}/root/delta?$top=100", env.drive))
        .await;
    assert_eq!(items.len(), 2_501);
    assert_eq!(pages.len(), 26);
    let mut seen = HashSet::new();
    for item in &items {
        let id = item["id"].as_str().unwrap().to_string();
        if id != root {
            let parent = item["parentReference"]["id"].as_str().unwrap();
            assert!(seen.contains(parent), "{id} came before its parent {parent}");
            assert!(item["parentReference"].get("path").is_none());
        }
        assert!(seen.insert(id), "served twice: {item}");
    }
    assert_eq!(items[0]["root"], serde_json::json!({}));
    assert_eq!(items[0]["folder"]["childCount"], 100);
    let files = items.iter().filter(|i| i.get("file").is_some()).count();
    assert_eq!(files, 2_500 - 24);
    let counts = env.ctl.delta_page_counts(&env.drive).unwrap();
    assert_eq!(
        (counts.requests, counts.repeated, counts.rounds_completed),
        (26, 0, 1)
    );
    assert_eq!(counts.pages_per_round, 26);
    // Nothing changes in a generated drive: the deltaLink answers an empty page and a new deltaLink.
    let again = env.get_json(&delta).await;
    assert_eq!(again["value"].as_array().unwrap().len(), 0);
    assert!(again["@odata.deltaLink"].is_string());
    env.shutdown().await;
}

#[tokio::test]
async fn a_generated_file_downloads_bytes_that_match_its_size_and_quickxorhash() {
    let env = env_with(builder().generate_lazily(1_000)).await;
    let (items, _, _) = env
        .delta_round(&format!("/drives/{}/root/delta", env.drive))
        .await;
    for item in items.iter().filter(|i| i.get("file").is_some()).step_by(97) {
        let id = item["id"].as_str().unwrap();
        let r = env
            .get(&format!("/drives/{}/items/{id}/content", env.drive))
            .await;
        assert_eq!(r.status(), 302);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let bytes = env.http.get(&loc).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, item["size"].as_u64().unwrap());
        assert_eq!(
            item["file"]["hashes"]["quickXorHash"].as_str().unwrap(),
            quickxorhash(&bytes)
        );
        assert!(std::str::from_utf8(&bytes).is_ok());
    }
    env.shutdown().await;
}

#[tokio::test]
async fn a_generated_item_is_found_by_id_by_path_and_among_its_parents_children() {
    let env = env_with(builder().generate_lazily(500)).await;
    let children = env
        .get_json(&format!("/drives/{}/root/children?$top=40", env.drive))
        .await;
    assert_eq!(children["value"].as_array().unwrap().len(), 40);
    assert!(children["@odata.nextLink"].is_string());
    let folder = &children["value"][2];
    let name = folder["name"].as_str().unwrap();
    let by_path = env.get_json(&format!("/drives/{}/root:/{name}", env.drive)).await;
    assert_eq!(by_path["id"], folder["id"]);
    let inside = env
        .get_json(&format!(
            "/drives/{}/items/{}/children",
            env.drive,
            folder["id"].as_str().unwrap()
        ))
        .await;
    let file = &inside["value"][0];
    let path = format!("/{name}/{}", file["name"].as_str().unwrap());
    let by_path = env.get_json(&format!("/drives/{}/root:{path}", env.drive)).await;
    assert_eq!(by_path["id"], file["id"]);
    assert_eq!(
        by_path["parentReference"]["path"],
        format!("/drives/{}/root:/{name}", env.drive)
    );
    let missing = env.get(&format!("/drives/{}/items/01NOPE", env.drive)).await;
    assert_eq!(missing.status(), 404);
    env.shutdown().await;
}

#[tokio::test]
async fn a_generated_folder_scoped_delta_serves_its_subtree_and_generated_drives_are_read_only() {
    let env = env().await;
    let drive = env
        .ctl
        .create_generated_drive(
            NewDrive {
                owner_user_id: env.user.clone(),
                drive_type: DriveType::Business,
                name: Some("Generated".into()),
            },
            10_300,
        )
        .unwrap();
    let root = env.get_json(&format!("/drives/{}/root/children", drive.id)).await;
    let first = root["value"][0]["id"].as_str().unwrap().to_string();
    let (items, _, _) = env
        .delta_round(&format!("/drives/{}/items/{first}/delta", drive.id))
        .await;
    // Folder 1 holds folders 101..=200 (of which 101..=102 hold files 10,101..=10,300) and nothing else.
    assert_eq!(items[0]["id"], first.as_str());
    assert_eq!(items.len(), 1 + 100 + 200);
    assert!(env.ctl.put_file(&drive.id, "/new.txt", "x").is_err());
    env.shutdown().await;
}
