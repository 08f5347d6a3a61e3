use crate::common::*;
use msgraph_emulator::{LinkUser, NewUser, PermissionSpec};
use serde_json::Value;

async fn all_permissions(env: &Env, drive: &str, item: &str, top: usize) -> Vec<Value> {
    let mut url = format!("/drives/{drive}/items/{item}/permissions?$top={top}");
    let mut out = Vec::new();
    loop {
        let page = env.get_json(&url).await;
        out.extend(page["value"].as_array().unwrap().iter().cloned());
        match page["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => return out,
        }
    }
}

fn specs(bob: &str) -> Vec<PermissionSpec> {
    vec![
        PermissionSpec::user(bob, &["write"]),
        PermissionSpec::User {
            user_id: None,
            display_name: Some("Guest Without Mail".into()),
            email: None,
            include_email: false,
            roles: vec!["read".into()],
        },
        PermissionSpec::Group {
            group_id: Some("g-1".into()),
            display_name: "Engineering".into(),
            email: Some("eng@contoso.onmicrosoft.com".into()),
            roles: vec!["read".into()],
        },
        PermissionSpec::SiteGroup {
            site_group_id: Some("7".into()),
            display_name: "Custom Readers".into(),
            roles: vec!["read".into()],
        },
        PermissionSpec::link("view", "anonymous"),
        PermissionSpec::link("edit", "organization"),
        PermissionSpec::Link {
            link_type: "view".into(),
            scope: "users".into(),
            users: vec![LinkUser {
                display_name: "Carol".into(),
                email: Some("carol@example.com".into()),
            }],
            roles: vec![],
            prevents_download: false,
        },
        PermissionSpec::link("view", "existingAccess"),
    ]
}

#[tokio::test]
async fn permissions_list_users_with_and_without_email_groups_site_groups_and_links_of_each_scope() {
    let env = env().await;
    let bob = env
        .ctl
        .create_user(NewUser {
            display_name: "Bob".into(),
            mail: Some("bob@contoso.onmicrosoft.com".into()),
            ..Default::default()
        })
        .unwrap();
    let folder = env.ctl.create_folder(&env.drive, "/Shared").unwrap();
    env.ctl
        .set_permissions(&env.drive, &folder.id, specs(&bob.id))
        .unwrap();
    let perms = all_permissions(&env, &env.drive, &folder.id, 100).await;
    // Owner (inherited from the root) + 8 set here.
    assert_eq!(perms.len(), 9);
    let owner = &perms[0];
    assert_eq!(owner["roles"], serde_json::json!(["owner"]));
    assert_eq!(owner["grantedToV2"]["user"]["id"], env.user);
    let by_role = |i: usize| &perms[i + 1];
    assert_eq!(
        by_role(0)["grantedToV2"]["user"]["email"],
        "bob@contoso.onmicrosoft.com"
    );
    assert!(
        by_role(0)["grantedToV2"]["siteUser"]["loginName"]
            .as_str()
            .unwrap()
            .starts_with("i:0#.f|membership|")
    );
    assert!(by_role(1)["grantedToV2"]["user"].get("email").is_none());
    assert_eq!(by_role(2)["grantedToV2"]["group"]["id"], "g-1");
    assert_eq!(
        by_role(2)["grantedToV2"]["siteUser"]["loginName"],
        "c:0o.c|federateddirectoryclaimprovider|g-1"
    );
    assert_eq!(by_role(3)["grantedToV2"]["siteGroup"]["id"], "7");
    let scopes: Vec<&str> = perms.iter().filter_map(|p| p["link"]["scope"].as_str()).collect();
    assert_eq!(
        scopes,
        vec!["anonymous", "organization", "users", "existingAccess"]
    );
    assert_eq!(by_role(5)["roles"], serde_json::json!(["write"]));
    assert_eq!(
        by_role(6)["grantedToIdentitiesV2"][0]["user"]["email"],
        "carol@example.com"
    );
    assert!(
        perms.iter().all(|p| p.get("inheritedFrom").is_none()),
        "ODB/SharePoint never return inheritedFrom"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn permissions_are_paged_with_next_link() {
    let env = env().await;
    let folder = env.ctl.create_folder(&env.drive, "/Shared").unwrap();
    env.ctl
        .set_permissions(&env.drive, &folder.id, specs(&env.user))
        .unwrap();
    let page = env
        .get_json(&format!(
            "/drives/{}/items/{}/permissions?$top=4",
            env.drive, folder.id
        ))
        .await;
    assert_eq!(page["value"].as_array().unwrap().len(), 4);
    assert!(page["@odata.nextLink"].is_string());
    assert_eq!(all_permissions(&env, &env.drive, &folder.id, 4).await.len(), 9);
    env.shutdown().await;
}

#[tokio::test]
async fn personal_drive_permissions_show_inherited_from() {
    let mut env = env().await;
    let d = env.act_as_personal_drive_owner("Pat");
    let docs = env.ctl.create_folder(&d, "/Documents").unwrap();
    env.ctl
        .add_permission(&d, &docs.id, PermissionSpec::link("view", "anonymous"))
        .unwrap();
    let f = env.ctl.put_file(&d, "/Documents/a.txt", "x").unwrap();
    let perms = all_permissions(&env, &d, &f.id, 100).await;
    let link = perms.iter().find(|p| p.get("link").is_some()).unwrap();
    assert_eq!(link["inheritedFrom"]["id"], docs.id);
    assert_eq!(link["inheritedFrom"]["path"], "/drive/root:/Documents");
    assert_eq!(link["hasPassword"], false);
    assert!(link["grantedToV2"].is_null());
    env.shutdown().await;
}

#[tokio::test]
async fn site_library_root_lists_site_groups_owners_members_visitors() {
    let env = env().await;
    let site = env.get_json("/sites?search=contoso").await["value"][0].clone();
    let drive = env
        .get_json(&format!("/sites/{}/drive", site["id"].as_str().unwrap()))
        .await;
    let root = env
        .get_json(&format!("/drives/{}/root", drive["id"].as_str().unwrap()))
        .await;
    let perms = all_permissions(
        &env,
        drive["id"].as_str().unwrap(),
        root["id"].as_str().unwrap(),
        100,
    )
    .await;
    let groups: Vec<(&str, &str)> = perms
        .iter()
        .map(|p| {
            (
                p["grantedToV2"]["siteGroup"]["id"].as_str().unwrap(),
                p["roles"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, vec![("3", "owner"), ("5", "write"), ("4", "read")]);
    env.shutdown().await;
}
