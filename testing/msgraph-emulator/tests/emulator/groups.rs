//! The directory: Entra groups with nested groups, `GET /groups/{id}/transitiveMembers` (paging, `$select`,
//! the user cast, 404 and 403 in the directory's error shape), and nested membership granting access.
use crate::common::*;
use msgraph_emulator::{NewGroup, NewUser, PermissionSpec, UserInfo};
use serde_json::Value;

fn user(env: &Env, name: &str, mail: &str) -> UserInfo {
    env.ctl
        .create_user(NewUser {
            display_name: name.into(),
            mail: Some(mail.into()),
            ..NewUser::default()
        })
        .unwrap()
}

fn group(env: &Env, id: &str, name: &str) {
    env.ctl
        .create_group(NewGroup {
            id: Some(id.into()),
            display_name: name.into(),
            mail: Some(format!("{}@contoso.com", name.to_lowercase())),
        })
        .unwrap();
}

/// Sales has Ann and the group Europe; Europe has Ben and the group Paris; Paris has Cat and Ann again.
fn nested_groups(env: &Env) -> [UserInfo; 3] {
    let ann = user(env, "Ann Lee", "ann@contoso.com");
    let ben = user(env, "Ben Ode", "ben@contoso.com");
    let cat = user(env, "Cat Roy", "cat@contoso.com");
    group(env, "g-sales", "Sales");
    group(env, "g-europe", "Europe");
    group(env, "g-paris", "Paris");
    env.ctl.add_group_member("g-sales", &ann.id).unwrap();
    env.ctl.add_group_member_group("g-sales", "g-europe").unwrap();
    env.ctl.add_group_member("g-europe", &ben.id).unwrap();
    env.ctl.add_group_member_group("g-europe", "g-paris").unwrap();
    env.ctl.add_group_member("g-paris", &cat.id).unwrap();
    env.ctl.add_group_member("g-paris", &ann.id).unwrap();
    [ann, ben, cat]
}

/// Every object of every page, and how many pages there were.
async fn all_pages(env: &Env, first: &str) -> (Vec<Value>, usize) {
    let mut url = first.to_string();
    let mut out = Vec::new();
    for pages in 1..100 {
        let page = env.get_json(&url).await;
        out.extend(page["value"].as_array().unwrap().iter().cloned());
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => return (out, pages),
        }
    }
    panic!("paging never ended");
}

fn ids_of_type(objects: &[Value], odata_type: &str) -> Vec<String> {
    let mut ids: Vec<String> = objects
        .iter()
        .filter(|o| o["@odata.type"] == odata_type)
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn transitive_members_lists_nested_users_and_groups_once_across_pages() {
    let env = env().await;
    let [ann, ben, cat] = nested_groups(&env);
    let (objects, pages) = all_pages(&env, "/groups/g-sales/transitiveMembers?$top=2").await;
    assert_eq!(pages, 3, "5 objects by 2");
    let mut users = vec![ann.id.clone(), ben.id.clone(), cat.id.clone()];
    users.sort();
    assert_eq!(ids_of_type(&objects, "#microsoft.graph.user"), users);
    assert_eq!(
        ids_of_type(&objects, "#microsoft.graph.group"),
        ["g-europe", "g-paris"]
    );
    assert_eq!(objects.len(), 5, "Ann is in two of the groups and listed once");
    let ann_obj = objects.iter().find(|o| o["id"] == ann.id.as_str()).unwrap();
    assert_eq!(ann_obj["mail"], "ann@contoso.com");
    assert_eq!(ann_obj["displayName"], "Ann Lee");
    assert!(ann_obj["userPrincipalName"].is_string());

    // A nested group lists only what is below it.
    let (paris, _) = all_pages(&env, "/groups/g-paris/transitiveMembers").await;
    let mut expected = vec![ann.id.clone(), cat.id.clone()];
    expected.sort();
    assert_eq!(ids_of_type(&paris, "#microsoft.graph.user"), expected);
    assert!(ids_of_type(&paris, "#microsoft.graph.group").is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn next_links_are_opaque_and_keep_top_and_select() {
    let env = env().await;
    nested_groups(&env);
    let first = env
        .get_json("/groups/g-sales/transitiveMembers?$top=2&$select=id,mail")
        .await;
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(next.contains("$skiptoken="), "{next}");
    assert!(!next.contains("offset"), "{next}");
    assert!(
        first["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#directoryObjects")
    );
    let (objects, _) = all_pages(&env, next).await;
    for o in first["value"].as_array().unwrap().iter().chain(&objects) {
        let mut keys: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["@odata.type", "id", "mail"], "{o}");
    }
    env.shutdown().await;
}

#[tokio::test]
async fn the_user_cast_lists_only_users() {
    let env = env().await;
    nested_groups(&env);
    let (objects, _) = all_pages(&env, "/groups/g-sales/transitiveMembers/microsoft.graph.user").await;
    assert_eq!(objects.len(), 3);
    assert!(
        objects
            .iter()
            .all(|o| o["@odata.type"] == "#microsoft.graph.user")
    );
    let (groups, _) = all_pages(&env, "/groups/g-sales/transitiveMembers/microsoft.graph.group").await;
    assert_eq!(
        ids_of_type(&groups, "#microsoft.graph.group"),
        ["g-europe", "g-paris"]
    );
    let r = env
        .get("/groups/g-sales/transitiveMembers/microsoft.graph.nonsense")
        .await;
    assert_eq!(r.status(), 400);
    env.shutdown().await;
}

#[tokio::test]
async fn an_unknown_group_is_404_request_resource_not_found() {
    let env = env().await;
    let r = env
        .get("/groups/00000000-0000-0000-0000-000000000000/transitiveMembers")
        .await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Resource '00000000-0000-0000-0000-000000000000' does not exist")
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());
    env.shutdown().await;
}

#[tokio::test]
async fn a_token_without_a_group_permission_is_403_authorization_request_denied() {
    let env = env().await;
    nested_groups(&env);
    let files_only = env
        .ctl
        .mint_access_token(&env.user, &["Files.Read.All", "Sites.Read.All"])
        .unwrap();
    let r = env.get_as(&files_only, "/groups/g-sales/transitiveMembers").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(
        body["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
    // Any of the documented permissions will do, with or without the resource prefix.
    for scope in [
        "Group.Read.All",
        "Directory.Read.All",
        "https://graph.microsoft.com/GroupMember.Read.All",
    ] {
        let t = env.ctl.mint_access_token(&env.user, &[scope]).unwrap();
        let r = env.get_as(&t, "/groups/g-sales/transitiveMembers").await;
        assert_eq!(r.status(), 200, "{scope}");
    }
    env.shutdown().await;
}

#[tokio::test]
async fn top_is_bounded_by_the_directory_maximum_of_999() {
    let env = env().await;
    nested_groups(&env);
    assert_eq!(
        env.get("/groups/g-sales/transitiveMembers?$top=999")
            .await
            .status(),
        200
    );
    for bad in ["1000", "0", "many"] {
        let r = env
            .get(&format!("/groups/g-sales/transitiveMembers?$top={bad}"))
            .await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "Request_BadRequest");
    }
    env.shutdown().await;
}

#[tokio::test]
async fn membership_through_a_nested_group_grants_access_and_unnesting_takes_it_away() {
    let mut env = env().await;
    let [_, _, cat] = nested_groups(&env);
    let f = env.ctl.put_file(&env.drive, "/Sales/q3.txt", "q3").unwrap();
    let folder = env.ctl.item_by_path(&env.drive, "/Sales").unwrap();
    env.ctl
        .add_permission(
            &env.drive,
            &folder.id,
            PermissionSpec::Group {
                group_id: Some("g-sales".into()),
                display_name: "Sales".into(),
                email: None,
                roles: vec!["read".into()],
            },
        )
        .unwrap();
    assert!(env.ctl.can_read(&cat.id, &env.drive, &f.id).unwrap());
    env.act_as(&cat.id);
    let shared = env.get_json("/me/drive/sharedWithMe").await;
    assert_eq!(shared["value"][0]["remoteItem"]["id"], folder.id.as_str());

    assert!(env.ctl.remove_group_member_group("g-europe", "g-paris"));
    assert!(!env.ctl.can_read(&cat.id, &env.drive, &f.id).unwrap());
    env.shutdown().await;
}

#[tokio::test]
async fn groups_are_created_and_nested_through_the_control_api() {
    let env = env().await;
    let base = env.emu.control_url();
    let http = client();
    let created: Value = http
        .post(format!("{base}/groups"))
        .json(&serde_json::json!({"display_name": "Finance", "mail": "finance@contoso.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let finance = created["id"].as_str().unwrap().to_string();
    let audit = env.ctl.create_group(NewGroup {
        id: None,
        display_name: "Audit".into(),
        mail: None,
    });
    let audit = audit.unwrap().id;
    let r = http
        .put(format!("{base}/groups/{finance}/groups/{audit}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .put(format!("{base}/groups/{finance}/groups/{finance}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a group cannot contain itself");
    let (objects, _) = all_pages(&env, &format!("/groups/{finance}/transitiveMembers")).await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["displayName"], "Audit");
    assert_eq!(objects[0]["mail"], Value::Null);
    let r = http
        .delete(format!("{base}/groups/{finance}/groups/{audit}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (objects, _) = all_pages(&env, &format!("/groups/{finance}/transitiveMembers")).await;
    assert!(objects.is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn site_routes_need_a_sites_permission() {
    let env = env().await;
    let files_only = env.ctl.mint_access_token(&env.user, &["Files.Read.All"]).unwrap();
    let site = env.get_json("/sites?search=*").await["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        "/sites?search=*".to_string(),
        format!("/sites/{site}"),
        format!("/sites/{site}/drives"),
        format!("/sites/{site}/drive/root/children"),
    ] {
        let r = env.get_as(&files_only, &path).await;
        assert_eq!(r.status(), 403, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "accessDenied", "{path}");
        for scope in ["Sites.Read.All", "Sites.ReadWrite.All", "Sites.FullControl.All"] {
            let t = env.ctl.mint_access_token(&env.user, &[scope]).unwrap();
            assert_eq!(env.get_as(&t, &path).await.status(), 200, "{path} with {scope}");
        }
    }
    // The drives themselves stay readable with Files.Read.All.
    let lib = env.get_json(&format!("/sites/{site}/drive")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        env.get_as(&files_only, &format!("/drives/{lib}/root/children"))
            .await
            .status(),
        200
    );
    env.shutdown().await;
}
