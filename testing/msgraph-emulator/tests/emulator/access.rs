//! Per-user read access: owners, permissions (users, groups, site groups, links), and the control API's
//! `revoke_access` / `grant_access` overrides.
use crate::common::*;
use msgraph_emulator::{DriveType, LinkUser, NewUser, PermissionSpec};
use serde_json::{Value, json};

async fn status(env: &Env, path: &str) -> u16 {
    env.get(path).await.status().as_u16()
}

async fn error_code(env: &Env, path: &str) -> (u16, String) {
    let r = env.get(path).await;
    let s = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (s, body["error"]["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn the_default_user_reads_the_default_drive_and_the_site_libraries() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/Docs/a.txt", "a").unwrap();
    assert_eq!(status(&env, &format!("/drives/{}", env.drive)).await, 200);
    assert_eq!(
        status(&env, &format!("/drives/{}/items/{}", env.drive, f.id)).await,
        200
    );
    assert_eq!(status(&env, "/me/drive/root/delta").await, 200);
    let site = env.get_json("/sites?search=contoso").await["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let lib = env.get_json(&format!("/sites/{site}/drive")).await;
    let lib = lib["id"].as_str().unwrap();
    assert_eq!(status(&env, &format!("/drives/{lib}/root/children")).await, 200);
    assert!(
        env.ctl
            .can_read(&env.user, lib, &env.ctl.drive(lib).unwrap().root_id)
            .unwrap()
    );
    env.shutdown().await;
}

#[tokio::test]
async fn another_users_business_drive_answers_403_access_denied() {
    let env = env().await;
    let bob = bob(&env, DriveType::Business);
    let d = bob.drive_id.unwrap();
    let f = env.ctl.put_file(&d, "/Private/plan.txt", "secret").unwrap();
    for path in [
        format!("/drives/{d}"),
        format!("/drives/{d}/root"),
        format!("/drives/{d}/root/children"),
        format!("/drives/{d}/root/delta"),
        format!("/drives/{d}/items/{}", f.id),
        format!("/drives/{d}/items/{}/content", f.id),
        format!("/drives/{d}/items/{}/permissions", f.id),
        format!("/drives/{d}/root:/Private/plan.txt"),
        format!("/users/{}/drive/root/children", bob.id),
    ] {
        assert_eq!(
            error_code(&env, &path).await,
            (403, "accessDenied".to_string()),
            "{path}"
        );
    }
    // Bob himself reads it.
    let bobs = env.ctl.mint_access_token(&bob.id, &["Files.Read.All"]).unwrap();
    let r = env.get_as(&bobs, &format!("/drives/{d}/items/{}", f.id)).await;
    assert_eq!(r.status(), 200);
    env.shutdown().await;
}

#[tokio::test]
async fn a_personal_drive_hides_unshared_items_with_404_item_not_found() {
    let env = env().await;
    let pat = bob(&env, DriveType::Personal);
    let d = pat.drive_id.unwrap();
    let f = env.ctl.put_file(&d, "/photo.png", "png").unwrap();
    assert_eq!(
        error_code(&env, &format!("/drives/{d}/items/{}", f.id)).await,
        (404, "itemNotFound".to_string())
    );
    assert_eq!(
        error_code(&env, &format!("/drives/{d}/root/delta")).await,
        (404, "itemNotFound".to_string())
    );
    env.ctl
        .add_permission(&d, &f.id, PermissionSpec::user(&env.user, &["read"]))
        .unwrap();
    assert_eq!(status(&env, &format!("/drives/{d}/items/{}", f.id)).await, 200);
    env.shutdown().await;
}

#[tokio::test]
async fn a_user_permission_opens_the_item_and_its_subtree_only() {
    let env = env().await;
    let bob = bob(&env, DriveType::Business);
    let d = bob.drive_id.unwrap();
    let inner = env.ctl.put_file(&d, "/Shared/Sub/inner.txt", "in").unwrap();
    let private = env.ctl.put_file(&d, "/Private/p.txt", "p").unwrap();
    let shared = env.ctl.item_by_path(&d, "/Shared").unwrap();
    assert_eq!(
        status(&env, &format!("/drives/{d}/items/{}", shared.id)).await,
        403
    );
    env.ctl
        .add_permission(&d, &shared.id, PermissionSpec::user(&env.user, &["read"]))
        .unwrap();
    for path in [
        format!("/drives/{d}"),
        format!("/drives/{d}/items/{}", shared.id),
        format!("/drives/{d}/items/{}/children", shared.id),
        format!("/drives/{d}/items/{}/content", inner.id),
        format!("/drives/{d}/items/{}:/Sub/inner.txt:", shared.id),
        format!("/drives/{d}/root:/Shared/Sub"),
    ] {
        let s = status(&env, &path).await;
        assert!(s == 200 || s == 302, "{path} → {s}");
    }
    let (items, _, _) = env
        .delta_round(&format!("/drives/{d}/items/{}/delta", shared.id))
        .await;
    assert_eq!(names(&items), ["Shared", "Sub", "inner.txt"]);
    assert_eq!(status(&env, &format!("/drives/{d}/root")).await, 403);
    assert_eq!(status(&env, &format!("/drives/{d}/root/delta")).await, 403);
    assert_eq!(
        status(&env, &format!("/drives/{d}/items/{}", private.id)).await,
        403
    );
    // Taking the permission away closes it again.
    env.ctl.set_permissions(&d, &shared.id, vec![]).unwrap();
    assert_eq!(
        status(&env, &format!("/drives/{d}/items/{}/children", shared.id)).await,
        403
    );
    env.shutdown().await;
}

#[tokio::test]
async fn group_membership_grants_access_through_a_group_permission() {
    let env = env().await;
    let bob = bob(&env, DriveType::Business);
    let d = bob.drive_id.unwrap();
    let folder = env.ctl.create_folder(&d, "/Engineering").unwrap();
    env.ctl
        .add_permission(
            &d,
            &folder.id,
            PermissionSpec::Group {
                group_id: Some("g-eng".into()),
                display_name: "Engineering".into(),
                email: None,
                roles: vec!["read".into()],
            },
        )
        .unwrap();
    let path = format!("/drives/{d}/items/{}/children", folder.id);
    assert_eq!(status(&env, &path).await, 403);
    env.ctl.add_group_member("g-eng", &env.user).unwrap();
    assert_eq!(status(&env, &path).await, 200);
    assert!(env.ctl.remove_group_member("g-eng", &env.user));
    assert_eq!(status(&env, &path).await, 403);
    env.shutdown().await;
}

#[tokio::test]
async fn sharing_links_open_items_by_scope_organization_and_users_but_not_anonymous() {
    let env = env().await;
    let bob = bob(&env, DriveType::Business);
    let d = bob.drive_id.unwrap();
    let org = env.ctl.create_folder(&d, "/Org").unwrap();
    let listed = env.ctl.create_folder(&d, "/Listed").unwrap();
    let others = env.ctl.create_folder(&d, "/Others").unwrap();
    let anon = env.ctl.create_folder(&d, "/Anon").unwrap();
    env.ctl
        .add_permission(&d, &org.id, PermissionSpec::link("view", "organization"))
        .unwrap();
    let users_link = |email: &str| PermissionSpec::Link {
        link_type: "view".into(),
        scope: "users".into(),
        users: vec![LinkUser {
            display_name: "Someone".into(),
            email: Some(email.into()),
        }],
        roles: vec![],
        prevents_download: false,
    };
    env.ctl
        .add_permission(&d, &listed.id, users_link("Adele.Vance@contoso.onmicrosoft.com"))
        .unwrap();
    env.ctl
        .add_permission(&d, &others.id, users_link("carol@example.com"))
        .unwrap();
    env.ctl
        .add_permission(&d, &anon.id, PermissionSpec::link("view", "anonymous"))
        .unwrap();
    let item = |id: &str| format!("/drives/{d}/items/{id}");
    assert_eq!(status(&env, &item(&org.id)).await, 200);
    assert_eq!(status(&env, &item(&listed.id)).await, 200);
    assert_eq!(status(&env, &item(&others.id)).await, 403);
    assert_eq!(status(&env, &item(&anon.id)).await, 403);
    env.shutdown().await;
}

#[tokio::test]
async fn site_group_membership_opens_a_library() {
    let env = env().await;
    let carol = env
        .ctl
        .create_user(NewUser {
            display_name: "Carol".into(),
            ..Default::default()
        })
        .unwrap();
    let site = env.ctl.create_site(msgraph_emulator::NewSite {
        display_name: "Legal".into(),
        ..Default::default()
    });
    let site = site.unwrap();
    let lib = site.drive_ids[0].clone();
    let carols = env.ctl.mint_access_token(&carol.id, &["Files.Read.All"]).unwrap();
    let path = format!("/drives/{lib}/root/children");
    assert_eq!(env.get_as(&carols, &path).await.status(), 403);
    env.ctl.add_site_group_member(&site.id, "4", &carol.id).unwrap();
    assert_eq!(env.get_as(&carols, &path).await.status(), 200, "Visitors read");
    assert!(env.ctl.remove_site_group_member(&site.id, "4", &carol.id));
    assert_eq!(env.get_as(&carols, &path).await.status(), 403);
    env.shutdown().await;
}

#[tokio::test]
async fn revoke_access_makes_a_readable_folder_answer_403_including_delta_and_resumed_links() {
    let env = env().await;
    let d = env.drive.clone();
    for i in 0..4 {
        env.ctl.put_file(&d, &format!("/Src/f{i}.txt"), "x").unwrap();
    }
    let src = env.ctl.item_by_path(&d, "/Src").unwrap();
    let file = env.ctl.item_by_path(&d, "/Src/f0.txt").unwrap();
    let delta = format!("/drives/{d}/items/{}/delta", src.id);
    let (_, _, delta_link) = env.delta_round(&delta).await;
    let first = env.get_json(&format!("{delta}?$top=2")).await;
    let next_link = first["@odata.nextLink"].as_str().unwrap().to_string();

    env.ctl.revoke_access(&env.user, &d, &src.id).unwrap();
    assert!(!env.ctl.can_read(&env.user, &d, &src.id).unwrap());
    for path in [
        format!("/drives/{d}/items/{}", src.id),
        format!("/drives/{d}/items/{}/children", src.id),
        format!("/drives/{d}/items/{}", file.id),
        format!("/drives/{d}/items/{}/content", file.id),
        format!("/drives/{d}/root:/Src/f1.txt"),
        delta.clone(),
        delta_link.clone(),
        next_link.clone(),
    ] {
        assert_eq!(
            error_code(&env, &path).await,
            (403, "accessDenied".to_string()),
            "{path}"
        );
    }
    // The rest of the drive stays readable, and the root listing leaves the folder out.
    let root = env.get_json(&format!("/drives/{d}/root/children")).await;
    assert!(names(root["value"].as_array().unwrap()).is_empty());

    env.ctl.grant_access(&env.user, &d, &src.id).unwrap();
    assert_eq!(
        status(&env, &delta_link).await,
        200,
        "the old deltaLink works again"
    );
    assert_eq!(status(&env, &format!("/drives/{d}/items/{}", file.id)).await, 200);
    env.shutdown().await;
}

#[tokio::test]
async fn revoking_a_subfolder_hides_it_from_the_parent_listing_and_delta() {
    let env = env().await;
    let d = env.drive.clone();
    env.ctl.put_file(&d, "/A/seen.txt", "s").unwrap();
    env.ctl.put_file(&d, "/A/Hidden/h.txt", "h").unwrap();
    let open = env.ctl.put_file(&d, "/A/Hidden/Open/o.txt", "o").unwrap();
    let a = env.ctl.item_by_path(&d, "/A").unwrap();
    let hidden = env.ctl.item_by_path(&d, "/A/Hidden").unwrap();
    let open_dir = env.ctl.item_by_path(&d, "/A/Hidden/Open").unwrap();
    env.ctl.revoke_access(&env.user, &d, &hidden.id).unwrap();
    env.ctl.grant_access(&env.user, &d, &open_dir.id).unwrap();

    let children = env
        .get_json(&format!("/drives/{d}/items/{}/children", a.id))
        .await;
    assert_eq!(names(children["value"].as_array().unwrap()), ["seen.txt"]);
    let (items, _, _) = env
        .delta_round(&format!("/drives/{d}/items/{}/delta", a.id))
        .await;
    let mut n = names(&items);
    n.sort();
    assert_eq!(n, ["A", "Open", "o.txt", "seen.txt"]);
    assert_eq!(
        status(&env, &format!("/drives/{d}/items/{}/content", open.id)).await,
        302
    );
    assert_eq!(
        status(&env, &format!("/drives/{d}/items/{}", hidden.id)).await,
        403
    );
    env.shutdown().await;
}

#[tokio::test]
async fn subscribing_needs_read_access_to_the_drive() {
    let env = env().await;
    let bob = bob(&env, DriveType::Business);
    let d = bob.drive_id.unwrap();
    let r = env
        .http
        .post(env.url("/subscriptions"))
        .bearer_auth(&env.token)
        .json(&json!({
            "changeType": "updated",
            "notificationUrl": "http://127.0.0.1:9/never-called",
            "resource": format!("/drives/{d}/root"),
            "expirationDateTime": "2025-03-02T09:00:00Z",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    env.shutdown().await;
}

#[tokio::test]
async fn control_api_revokes_and_grants_access_and_manages_group_members_over_http() {
    let env = env().await;
    let ctl_url = env.emu.control_url();
    let d = env.drive.clone();
    let f = env.ctl.put_file(&d, "/Src/a.txt", "a").unwrap();
    let src = env.ctl.item_by_path(&d, "/Src").unwrap();
    let post = |path: &str, body: Value| {
        let req = env.http.post(format!("{ctl_url}{path}")).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let readable = |item: &str| {
        let req = env.http.get(format!("{ctl_url}/access")).query(&[
            ("user_id", env.user.as_str()),
            ("drive_id", d.as_str()),
            ("item_id", item),
        ]);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["readable"].clone() }
    };
    let body = json!({"user_id": env.user, "drive_id": d, "item_id": src.id});
    assert_eq!(post("/access/revoke", body.clone()).await, 204);
    assert_eq!(readable(&f.id).await, json!(false));
    assert_eq!(status(&env, &format!("/drives/{d}/items/{}", f.id)).await, 403);
    assert_eq!(post("/access/grant", body).await, 204);
    assert_eq!(readable(&f.id).await, json!(true));
    // Without item_id the rule sits on the root; the nearer grant on /Src still wins below it.
    assert_eq!(
        post("/access/revoke", json!({"user_id": env.user, "drive_id": d})).await,
        204
    );
    assert_eq!(status(&env, &format!("/drives/{d}/root/children")).await, 403);
    assert_eq!(status(&env, &format!("/drives/{d}/items/{}", f.id)).await, 200);
    assert_eq!(
        post("/access/revoke", json!({"user_id": "nobody", "drive_id": d})).await,
        404
    );
    let r = env
        .http
        .put(format!("{ctl_url}/groups/g-1/members/{}", env.user))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = env
        .http
        .delete(format!("{ctl_url}/groups/g-1/members/{}", env.user))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    env.shutdown().await;
}
