use crate::common::*;
use msgraph_emulator::{DeltaBehaviour, NewUser, PermissionSpec, ResyncCode};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

fn root_delta(env: &Env) -> String {
    format!("/drives/{}/root/delta", env.drive)
}

#[tokio::test]
async fn delta_pages_with_next_link_then_delta_link_and_opaque_tokens() {
    let env = env().await;
    for i in 0..9 {
        env.ctl
            .put_file(&env.drive, &format!("/D/f{i}.txt"), "x")
            .unwrap();
    }
    let (items, pages, delta) = env.delta_round(&format!("{}?$top=4", root_delta(&env))).await;
    assert_eq!(items.len(), 11, "root + folder + 9 files");
    assert!(pages.len() >= 3);
    for p in &pages[..pages.len() - 1] {
        assert!(p["@odata.nextLink"].is_string());
        assert!(p.get("@odata.deltaLink").is_none());
        assert_eq!(
            p["@odata.context"],
            format!("{}/$metadata#Collection(driveItem)", env.emu.graph_url())
        );
    }
    let last = pages.last().unwrap();
    assert!(last.get("@odata.nextLink").is_none());
    let token = delta.split("token=").nth(1).unwrap();
    assert!(token.len() >= 32);
    assert!(!token.contains(&env.drive), "tokens are opaque");
    // Nothing changed: the next round is empty.
    let (again, _, _) = env.delta_round(&delta).await;
    assert!(again.is_empty(), "{again:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn delta_token_latest_returns_empty_value_and_delta_link() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/old.txt", "x").unwrap();
    let page = env.get_json(&format!("{}?token=latest", root_delta(&env))).await;
    assert_eq!(page["value"].as_array().unwrap().len(), 0);
    let link = page["@odata.deltaLink"].as_str().unwrap().to_string();
    env.ctl.put_file(&env.drive, "/new.txt", "y").unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    let n = names(&items);
    assert!(n.contains(&"new.txt".to_string()));
    assert!(!n.contains(&"old.txt".to_string()));
    env.shutdown().await;
}

#[tokio::test]
async fn delta_shows_latest_state_only_after_two_renames() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/a.txt", "x").unwrap();
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    env.ctl.rename(&env.drive, &f.id, "b.txt").unwrap();
    env.ctl.rename(&env.drive, &f.id, "c.txt").unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    let hits = find(&items, &f.id);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["name"], "c.txt");
    env.shutdown().await;
}

#[tokio::test]
async fn delta_may_repeat_items_within_a_round() {
    let env = env_with(builder().delta_behaviour(DeltaBehaviour {
        duplicate_probability: 0.5,
        ..DeltaBehaviour::default()
    }))
    .await;
    for i in 0..20 {
        env.ctl.put_file(&env.drive, &format!("/f{i}.txt"), "x").unwrap();
    }
    let (items, _, _) = env.delta_round(&format!("{}?$top=5", root_delta(&env))).await;
    let unique: HashSet<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), 21);
    assert!(items.len() > unique.len(), "some item must appear twice");
    env.shutdown().await;
}

#[tokio::test]
async fn delta_can_return_children_before_their_parents() {
    let env = env_with(builder().delta_behaviour(DeltaBehaviour {
        children_first_probability: 1.0,
        duplicate_probability: 0.0,
        ..DeltaBehaviour::default()
    }))
    .await;
    env.ctl.put_file(&env.drive, "/A/B/c.txt", "x").unwrap();
    let (items, _, _) = env.delta_round(&root_delta(&env)).await;
    let pos: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, v)| (v["name"].as_str().unwrap(), i))
        .collect();
    assert!(pos["c.txt"] < pos["B"]);
    assert!(pos["B"] < pos["A"]);
    env.shutdown().await;
}

#[tokio::test]
async fn delta_items_have_no_parent_reference_path() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/A/b.txt", "x").unwrap();
    let (items, _, _) = env.delta_round(&root_delta(&env)).await;
    for i in &items {
        assert!(i["parentReference"].get("path").is_none(), "{i}");
    }
    let file = items.iter().find(|i| i["name"] == "b.txt").unwrap();
    assert!(file["parentReference"]["id"].is_string());
    env.shutdown().await;
}

#[tokio::test]
async fn delta_root_item_has_root_facet_and_name_root() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/x.txt", "12345").unwrap();
    let (items, _, _) = env.delta_round(&root_delta(&env)).await;
    let root = items.iter().find(|i| i.get("root").is_some()).unwrap();
    assert_eq!(root["name"], "root");
    assert_eq!(root["root"], serde_json::json!({}));
    assert_eq!(root["folder"]["childCount"], 1);
    assert_eq!(root["size"], 5);
    let pr = root["parentReference"].as_object().unwrap();
    assert_eq!(pr.len(), 2, "only driveId and driveType: {pr:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn business_delta_items_omit_ctag() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/x.txt", "x").unwrap();
    let (items, _, _) = env.delta_round(&root_delta(&env)).await;
    assert!(items.iter().all(|i| i.get("cTag").is_none()));
    env.shutdown().await;
}

#[tokio::test]
async fn business_tombstones_have_deleted_facet_and_no_name() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/gone.txt", "x").unwrap();
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    env.ctl.delete(&env.drive, &f.id).unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    let t = find(&items, &f.id)[0];
    assert_eq!(t["deleted"], serde_json::json!({"state": "deleted"}));
    assert!(t.get("name").is_none());
    assert!(t.get("@microsoft.graph.downloadUrl").is_none());
    assert!(t.get("cTag").is_none());
    assert!(t.get("lastModifiedDateTime").is_none());
    assert_eq!(t["parentReference"]["driveType"], "business");
    assert!(items.iter().all(|i| i.get("@removed").is_none()));
    env.shutdown().await;
}

#[tokio::test]
async fn personal_tombstones_keep_name_and_omit_size_and_ctag() {
    let mut env = env().await;
    let d = env.act_as_personal_drive_owner("Pat");
    let f = env.ctl.put_file(&d, "/gone.txt", "x").unwrap();
    let (_, _, link) = env.delta_round(&format!("/drives/{d}/root/delta")).await;
    env.ctl.delete(&d, &f.id).unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    let t = find(&items, &f.id)[0];
    assert_eq!(t["name"], "gone.txt");
    assert!(t.get("deleted").is_some());
    assert!(t.get("size").is_none());
    assert!(t.get("cTag").is_none());
    env.shutdown().await;
}

#[tokio::test]
async fn deleting_a_folder_reports_tombstones_for_it_and_its_descendants() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/Dir/Sub/x.txt", "x").unwrap();
    let dir = env.ctl.item_by_path(&env.drive, "/Dir").unwrap();
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    env.ctl.delete(&env.drive, &dir.id).unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    let deleted: HashSet<&str> = items
        .iter()
        .filter(|i| i.get("deleted").is_some())
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(deleted.contains(dir.id.as_str()));
    assert!(deleted.contains(f.id.as_str()));
    assert_eq!(deleted.len(), 3);
    env.shutdown().await;
}

#[tokio::test]
async fn folder_rename_emits_only_the_folder() {
    let env = env_with(builder().delta_behaviour(DeltaBehaviour {
        children_first_probability: 0.0,
        duplicate_probability: 0.0,
        ..DeltaBehaviour::default()
    }))
    .await;
    env.ctl.put_file(&env.drive, "/Old/a.txt", "x").unwrap();
    env.ctl.put_file(&env.drive, "/Old/b.txt", "x").unwrap();
    let folder = env.ctl.item_by_path(&env.drive, "/Old").unwrap();
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    env.ctl.rename(&env.drive, &folder.id, "New").unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    let non_root: Vec<&Value> = items.iter().filter(|i| i.get("root").is_none()).collect();
    assert_eq!(non_root.len(), 1, "{items:?}");
    assert_eq!(non_root[0]["name"], "New");
    env.shutdown().await;
}

#[tokio::test]
async fn move_within_drive_emits_item_with_new_parent_id() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/A/x.txt", "x").unwrap();
    let b = env.ctl.create_folder(&env.drive, "/B").unwrap();
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    env.ctl.move_item(&env.drive, &f.id, &b.id, None).unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    let hit = find(&items, &f.id)[0];
    assert_eq!(hit["parentReference"]["id"], b.id);
    assert!(hit.get("deleted").is_none());
    env.shutdown().await;
}

#[tokio::test]
async fn folder_scoped_delta_returns_only_the_subtree() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/In/a.txt", "x").unwrap();
    env.ctl.put_file(&env.drive, "/In/Deep/b.txt", "x").unwrap();
    env.ctl.put_file(&env.drive, "/Out/c.txt", "x").unwrap();
    let scope = env.ctl.item_by_path(&env.drive, "/In").unwrap();
    let url = format!("/drives/{}/items/{}/delta", env.drive, scope.id);
    let (items, _, link) = env.delta_round(&url).await;
    let mut n = names(&items);
    n.sort();
    assert_eq!(n, vec!["Deep", "In", "a.txt", "b.txt"]);
    assert!(link.contains(&format!("/items/{}/delta", scope.id)));
    env.ctl.put_file(&env.drive, "/Out/d.txt", "x").unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    assert!(
        items.is_empty(),
        "changes outside the scope are not reported: {items:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn moving_an_item_out_of_a_scoped_folder_shows_it_as_deleted_there() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/In/Sub/a.txt", "x").unwrap();
    let sub = env.ctl.item_by_path(&env.drive, "/In/Sub").unwrap();
    let out = env.ctl.create_folder(&env.drive, "/Out").unwrap();
    let scope = env.ctl.item_by_path(&env.drive, "/In").unwrap();
    let url = format!("/drives/{}/items/{}/delta", env.drive, scope.id);
    let (_, _, link) = env.delta_round(&url).await;
    env.ctl.move_item(&env.drive, &sub.id, &out.id, None).unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    for id in [&sub.id, &f.id] {
        let hit = find(&items, id);
        assert_eq!(hit.len(), 1, "{items:?}");
        assert!(hit[0].get("deleted").is_some());
    }
    // The root-scoped view sees a plain move.
    env.shutdown().await;
}

#[tokio::test]
async fn moving_a_folder_into_a_scope_emits_it_and_its_descendants() {
    let env = env().await;
    let scope = env.ctl.create_folder(&env.drive, "/In").unwrap();
    let f = env.ctl.put_file(&env.drive, "/Out/Sub/a.txt", "x").unwrap();
    let sub = env.ctl.item_by_path(&env.drive, "/Out/Sub").unwrap();
    let url = format!("/drives/{}/items/{}/delta", env.drive, scope.id);
    let (_, _, link) = env.delta_round(&url).await;
    env.ctl.move_item(&env.drive, &sub.id, &scope.id, None).unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    assert_eq!(find(&items, &sub.id)[0]["parentReference"]["id"], scope.id);
    assert_eq!(find(&items, &f.id)[0]["name"], "a.txt");
    env.shutdown().await;
}

#[tokio::test]
async fn expired_delta_token_returns_410_with_resync_code_and_location() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/x.txt", "x").unwrap();
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    env.ctl
        .expire_delta_tokens(&env.drive, ResyncCode::ResyncChangesApplyDifferences)
        .unwrap();
    let r = env.get(&link).await;
    assert_eq!(r.status(), 410);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        location,
        format!("{}/drives/{}/root/delta", env.emu.graph_url(), env.drive)
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resyncRequired");
    assert_eq!(
        body["error"]["innerError"]["code"],
        "resyncChangesApplyDifferences"
    );
    let (items, _, fresh) = env.delta_round(&location).await;
    assert!(names(&items).contains(&"x.txt".to_string()));
    assert_eq!(env.get(&fresh).await.status(), 200);
    env.ctl
        .expire_delta_tokens(&env.drive, ResyncCode::ResyncChangesUploadDifferences)
        .unwrap();
    let body: Value = env.get(&fresh).await.json().await.unwrap();
    assert_eq!(
        body["error"]["innerError"]["code"],
        "resyncChangesUploadDifferences"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn delta_token_older_than_its_lifetime_returns_410() {
    let env = env().await;
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    env.ctl.advance_clock(chrono::Duration::days(29));
    let token = env.ctl.mint_access_token(&env.user, &["Files.Read.All"]).unwrap();
    let r = env.http.get(&link).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    env.ctl.advance_clock(chrono::Duration::days(2));
    let token = env.ctl.mint_access_token(&env.user, &["Files.Read.All"]).unwrap();
    let r = env.http.get(&link).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.headers().contains_key("location"));
    env.shutdown().await;
}

#[tokio::test]
async fn delta_with_select_without_deleted_omits_the_facet_on_tombstones() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/x.txt", "x").unwrap();
    let (_, _, link) = env
        .delta_round(&format!("{}?$select=id,name", root_delta(&env)))
        .await;
    env.ctl.delete(&env.drive, &f.id).unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    let t = find(&items, &f.id)[0];
    assert!(
        t.get("deleted").is_none(),
        "the select (kept in the link) did not ask for deleted: {t}"
    );
    let (_, _, link) = env
        .delta_round(&format!("{}?$select=id,name,deleted", root_delta(&env)))
        .await;
    let g = env.ctl.put_file(&env.drive, "/y.txt", "y").unwrap();
    env.ctl.delete(&env.drive, &g.id).unwrap();
    let h = env.ctl.put_file(&env.drive, "/z.txt", "z").unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    assert!(find(&items, &h.id)[0].get("deleted").is_none());
    assert!(
        find(&items, &g.id).is_empty(),
        "created and deleted between rounds: not reported"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn delta_includes_parent_hierarchy_unless_delta_exclude_parent() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/A/B/x.txt", "x").unwrap();
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    env.ctl.put_file(&env.drive, "/A/B/x.txt", "changed").unwrap();
    let (items, _, _) = env.delta_round(&link).await;
    let mut n = names(&items);
    n.sort();
    assert_eq!(n, vec!["A", "B", "root", "x.txt"]);
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    env.ctl.put_file(&env.drive, "/A/B/x.txt", "again").unwrap();
    let page: Value = env
        .http
        .get(&link)
        .bearer_auth(&env.token)
        .header("Prefer", "deltaExcludeParent")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names(page["value"].as_array().unwrap()), vec!["x.txt"]);
    env.shutdown().await;
}

#[tokio::test]
async fn delta_accepts_a_timestamp_token_on_business_drives() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/before.txt", "x").unwrap();
    env.ctl.advance_clock(chrono::Duration::minutes(40));
    env.ctl.put_file(&env.drive, "/after.txt", "x").unwrap();
    let (items, _, _) = env
        .delta_round(&format!("{}?token=2025-03-01T09%3A30%3A00Z", root_delta(&env)))
        .await;
    let n = names(&items);
    assert!(n.contains(&"after.txt".to_string()));
    assert!(!n.contains(&"before.txt".to_string()));
    env.shutdown().await;
}

#[tokio::test]
async fn delta_empty_pages_still_carry_a_next_link() {
    let env = env_with(builder().delta_behaviour(DeltaBehaviour {
        empty_page_probability: 1.0,
        children_first_probability: 0.0,
        duplicate_probability: 0.0,
        ..DeltaBehaviour::default()
    }))
    .await;
    env.ctl.put_file(&env.drive, "/x.txt", "x").unwrap();
    let (items, pages, _) = env.delta_round(&root_delta(&env)).await;
    assert_eq!(items.len(), 2);
    let empty_with_next = pages
        .iter()
        .filter(|p| p["value"].as_array().unwrap().is_empty() && p["@odata.nextLink"].is_string())
        .count();
    assert!(empty_with_next >= 1);
    env.shutdown().await;
}

#[tokio::test]
async fn delta_function_syntax_with_token_works() {
    let env = env().await;
    let (_, _, link) = env.delta_round(&root_delta(&env)).await;
    let token = link.split("token=").nth(1).unwrap().to_string();
    env.ctl.put_file(&env.drive, "/n.txt", "x").unwrap();
    let (items, _, _) = env
        .delta_round(&format!("/drives/{}/root/delta(token='{token}')", env.drive))
        .await;
    assert!(names(&items).contains(&"n.txt".to_string()));
    env.shutdown().await;
}

#[tokio::test]
async fn delta_is_deterministic_for_a_seed() {
    async fn run() -> (Vec<String>, String) {
        let env = env_with(builder().generate(60).delta_behaviour(DeltaBehaviour::default())).await;
        let (items, _, link) = env
            .delta_round(&format!("/drives/{}/root/delta?$top=25", env.drive))
            .await;
        let ids = items
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        let token = link.split("token=").nth(1).unwrap().to_string();
        env.shutdown().await;
        (ids, token)
    }
    assert_eq!(run().await, run().await);
}

#[tokio::test]
async fn delta_top_of_the_first_request_is_carried_over_to_next_and_delta_links() {
    let env = env().await;
    for i in 0..5 {
        env.ctl.put_file(&env.drive, &format!("/f{i}.txt"), "x").unwrap();
    }
    // Root + 5 files by 2: three pages, every link followed verbatim (no $top repeated).
    let (items, pages, link) = env.delta_round(&format!("{}?$top=2", root_delta(&env))).await;
    assert_eq!(items.len(), 6);
    assert_eq!(pages.len(), 3);
    assert!(pages.iter().all(|p| p["value"].as_array().unwrap().len() <= 2));
    assert!(!link.contains("top"), "links are opaque: {link}");
    for i in 5..10 {
        env.ctl.put_file(&env.drive, &format!("/f{i}.txt"), "x").unwrap();
    }
    // The next round (root + 5 new files) keeps the page size of the first request.
    let (items, pages, link) = env.delta_round(&link).await;
    assert_eq!(items.len(), 6);
    assert_eq!(pages.len(), 3);
    assert!(pages.iter().all(|p| p["value"].as_array().unwrap().len() <= 2));
    // And the round after that too.
    for i in 10..13 {
        env.ctl.put_file(&env.drive, &format!("/f{i}.txt"), "x").unwrap();
    }
    let (_, pages, _) = env.delta_round(&link).await;
    assert_eq!(pages.len(), 2, "root + 3 files by 2");
    env.shutdown().await;
}

#[tokio::test]
async fn delta_token_latest_keeps_top_for_the_following_rounds() {
    let env = env().await;
    let latest = env
        .get_json(&format!("{}?token=latest&$top=1", root_delta(&env)))
        .await;
    let link = latest["@odata.deltaLink"].as_str().unwrap().to_string();
    env.ctl.put_file(&env.drive, "/a.txt", "a").unwrap();
    env.ctl.put_file(&env.drive, "/b.txt", "b").unwrap();
    let (items, pages, _) = env.delta_round(&link).await;
    assert_eq!(items.len(), 3, "root + 2 files");
    assert_eq!(pages.len(), 3, "one item per page");
    env.shutdown().await;
}

/// The `Prefer` header kbsync sends to learn about sharing changes.
const SHARING_PREFER: &str =
    "deltashowremovedasdeleted, deltatraversepermissiongaps, deltashowsharingchanges";

async fn delta_page_preferring(env: &Env, link: &str, prefer: &str) -> Value {
    env.http
        .get(link)
        .bearer_auth(&env.token)
        .header("Prefer", prefer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_sharing_change_returns_the_item_in_the_next_round_annotated_only_when_asked() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/Shared/a.txt", "x").unwrap();
    let folder = env.ctl.item_by_path(&env.drive, "/Shared").unwrap();
    let bob = env
        .ctl
        .create_user(NewUser {
            display_name: "Bob".into(),
            ..Default::default()
        })
        .unwrap();
    let (before, _, link) = env.delta_round(&root_delta(&env)).await;
    let etag_before = find(&before, &folder.id)[0]["eTag"].clone();
    env.ctl
        .add_permission(&env.drive, &folder.id, PermissionSpec::user(&bob.id, &["read"]))
        .unwrap();

    // Asked for: the folder comes back marked; the root (its parent hierarchy) is not marked.
    let page = delta_page_preferring(&env, &link, SHARING_PREFER).await;
    let items = page["value"].as_array().unwrap();
    let marked: Vec<&str> = items
        .iter()
        .filter(|i| i["@microsoft.graph.sharedChanged"] == "True")
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(marked, [folder.id.as_str()], "{items:?}");
    assert_ne!(
        find(items, &folder.id)[0]["eTag"],
        etag_before,
        "a sharing change changes the eTag"
    );

    // Not asked for, or asked without the preferences it requires: the item, unmarked.
    for prefer in ["", "deltashowsharingchanges"] {
        let page = delta_page_preferring(&env, &link, prefer).await;
        let items = page["value"].as_array().unwrap();
        assert!(!find(items, &folder.id).is_empty());
        assert!(
            items
                .iter()
                .all(|i| i.get("@microsoft.graph.sharedChanged").is_none()),
            "{prefer:?}: {items:?}"
        );
    }

    // The round after: nothing changed, nothing marked.
    let delta = page["@odata.deltaLink"].as_str().unwrap().to_owned();
    let after = delta_page_preferring(&env, &delta, SHARING_PREFER).await;
    assert!(after["value"].as_array().unwrap().is_empty(), "{after:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn personal_drives_do_not_annotate_sharing_changes() {
    let mut env = env().await;
    let d = env.act_as_personal_drive_owner("Pat");
    env.ctl.put_file(&d, "/Shared/a.txt", "x").unwrap();
    let folder = env.ctl.item_by_path(&d, "/Shared").unwrap();
    let (_, _, link) = env.delta_round(&format!("/drives/{d}/root/delta")).await;
    env.ctl
        .add_permission(&d, &folder.id, PermissionSpec::link("view", "anonymous"))
        .unwrap();
    let page = delta_page_preferring(&env, &link, SHARING_PREFER).await;
    let items = page["value"].as_array().unwrap();
    assert!(
        !find(items, &folder.id).is_empty(),
        "the changed item is in the round"
    );
    assert!(
        items
            .iter()
            .all(|i| i.get("@microsoft.graph.sharedChanged").is_none())
    );
    env.shutdown().await;
}

/// What a client sends to read sharing hierarchically and be told of sharing changes.
const HIERARCHICAL_PREFER: &str =
    "hierarchicalsharing, deltashowremovedasdeleted, deltatraversepermissiongaps, deltashowsharingchanges";

fn shared_of<'a>(items: &'a [Value], id: &str) -> Option<&'a Value> {
    find(items, id)[0].get("shared")
}

#[tokio::test]
async fn hierarchical_sharing_puts_the_shared_facet_only_on_the_roots_of_permission_hierarchies() {
    let env = env().await;
    let plan = env.ctl.put_file(&env.drive, "/Team/plan.txt", "p").unwrap();
    let notes = env.ctl.put_file(&env.drive, "/Team/Sub/notes.txt", "n").unwrap();
    let own = env.ctl.put_file(&env.drive, "/Private/own.txt", "o").unwrap();
    let team = env.ctl.item_by_path(&env.drive, "/Team").unwrap();
    let private = env.ctl.item_by_path(&env.drive, "/Private").unwrap();
    let root = env.ctl.drive(&env.drive).unwrap().root_id;
    let bob = env
        .ctl
        .create_user(NewUser {
            display_name: "Bob".into(),
            ..Default::default()
        })
        .unwrap();
    env.ctl
        .add_permission(&env.drive, &team.id, PermissionSpec::user(&bob.id, &["read"]))
        .unwrap();
    // Unique permissions that share with nobody: only the owner.
    env.ctl
        .set_permissions(
            &env.drive,
            &private.id,
            vec![PermissionSpec::user(&env.user, &["owner"])],
        )
        .unwrap();

    let page = delta_page_preferring(&env, &env.url(&root_delta(&env)), HIERARCHICAL_PREFER).await;
    let items = page["value"].as_array().unwrap();
    assert_eq!(
        shared_of(items, &root),
        Some(&serde_json::json!({})),
        "the drive root"
    );
    assert_eq!(shared_of(items, &private.id), Some(&serde_json::json!({})));
    let shared = shared_of(items, &team.id).expect("a shared folder");
    assert_eq!(shared["scope"], "users");
    assert_eq!(shared["owner"]["user"]["id"], env.user.as_str());
    assert!(shared["sharedDateTime"].is_string());
    let sub = env.ctl.item_by_path(&env.drive, "/Team/Sub").unwrap();
    for inherits in [&plan.id, &notes.id, &own.id, &sub.id] {
        assert_eq!(shared_of(items, inherits), None, "{inherits} inherits");
    }

    // Without the preference, today's rendering: no `shared` facet at all.
    let plain = delta_page_preferring(&env, &env.url(&root_delta(&env)), "").await;
    assert!(
        plain["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("shared").is_none())
    );
    env.shutdown().await;
}

#[tokio::test]
async fn removing_an_items_sharing_leaves_an_empty_shared_facet_and_annotates_the_change() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/Docs/a.txt", "a").unwrap();
    let docs = env.ctl.item_by_path(&env.drive, "/Docs").unwrap();
    env.ctl
        .add_permission(&env.drive, &f.id, PermissionSpec::link("view", "organization"))
        .unwrap();
    let first = delta_page_preferring(&env, &env.url(&root_delta(&env)), HIERARCHICAL_PREFER).await;
    let items = first["value"].as_array().unwrap();
    assert_eq!(shared_of(items, &f.id).unwrap()["scope"], "organization");
    let link = first["@odata.deltaLink"].as_str().unwrap().to_owned();

    env.ctl.set_permissions(&env.drive, &f.id, Vec::new()).unwrap();
    let page = delta_page_preferring(&env, &link, HIERARCHICAL_PREFER).await;
    let items = page["value"].as_array().unwrap();
    let file = &find(items, &f.id)[0];
    assert_eq!(file["shared"], serde_json::json!({}), "sharing removed: {file}");
    assert_eq!(file["@microsoft.graph.sharedChanged"], "True");
    assert_eq!(shared_of(items, &docs.id), None, "the parent hierarchy inherits");
    env.shutdown().await;
}

#[tokio::test]
async fn personal_drives_show_no_shared_facet_for_hierarchical_sharing() {
    let mut env = env().await;
    let d = env.act_as_personal_drive_owner("Pat");
    env.ctl.put_file(&d, "/Shared/a.txt", "x").unwrap();
    let folder = env.ctl.item_by_path(&d, "/Shared").unwrap();
    env.ctl
        .add_permission(&d, &folder.id, PermissionSpec::link("view", "anonymous"))
        .unwrap();
    let page = delta_page_preferring(
        &env,
        &env.url(&format!("/drives/{d}/root/delta")),
        HIERARCHICAL_PREFER,
    )
    .await;
    assert!(
        page["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("shared").is_none())
    );
    env.shutdown().await;
}
