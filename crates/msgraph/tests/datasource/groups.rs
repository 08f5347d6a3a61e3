//! Group expansion: an Entra group's users through `/groups/{id}/transitiveMembers` (nested groups,
//! all pages, users only), the errors a caller acts on, and the principals that are not Entra groups.

use kbsync_core::datasource::{
    AccessToken, Datasource, DatasourceError, GroupMember, Principal, StaticToken,
};
use msgraph_emulator::{NewGroup, NewUser, UserInfo};

use crate::common::*;

fn user(env: &Env, name: &str, mail: Option<&str>) -> UserInfo {
    env.ctl
        .create_user(NewUser {
            display_name: name.into(),
            mail: mail.map(str::to_string),
            ..NewUser::default()
        })
        .unwrap()
}

fn entra_group(id: &str) -> Principal {
    Principal::Group {
        id: Some(id.into()),
        email: None,
        display_name: None,
    }
}

/// Sales: Ann and Europe; Europe: Ben and Paris; Paris: Cat (no mail) and Ann again.
fn nested_groups(env: &Env) -> [UserInfo; 3] {
    let ann = user(env, "Ann Lee", Some("ann@contoso.com"));
    let ben = user(env, "Ben Ode", Some("ben@contoso.com"));
    let cat = user(env, "Cat Roy", None);
    for (id, name) in [("g-sales", "Sales"), ("g-europe", "Europe"), ("g-paris", "Paris")] {
        env.ctl
            .create_group(NewGroup {
                id: Some(id.into()),
                display_name: name.into(),
                mail: None,
            })
            .unwrap();
    }
    env.ctl.add_group_member("g-sales", &ann.id).unwrap();
    env.ctl.add_group_member_group("g-sales", "g-europe").unwrap();
    env.ctl.add_group_member("g-europe", &ben.id).unwrap();
    env.ctl.add_group_member_group("g-europe", "g-paris").unwrap();
    env.ctl.add_group_member("g-paris", &cat.id).unwrap();
    env.ctl.add_group_member("g-paris", &ann.id).unwrap();
    [ann, ben, cat]
}

#[tokio::test]
async fn group_members_are_the_users_of_nested_groups_read_across_pages() {
    let env = env_config(|c| c.page_size = 2).await;
    let [ann, ben, cat] = nested_groups(&env);
    env.ctl.clear_request_log();

    let mut members = env
        .ds
        .group_members(&env.tokens, &entra_group("g-sales"))
        .await
        .unwrap();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    let mut expected = vec![
        GroupMember {
            id: Some(ann.id.clone()),
            emails: vec!["ann@contoso.com".into(), ann.user_principal_name.clone()],
        },
        GroupMember {
            id: Some(ben.id.clone()),
            emails: vec!["ben@contoso.com".into(), ben.user_principal_name.clone()],
        },
        GroupMember {
            id: Some(cat.id.clone()),
            emails: vec![cat.user_principal_name.clone()],
        },
    ];
    for m in &mut expected {
        m.emails.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    }
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(members, expected, "users only, each once, nested groups resolved");

    let log = env.ctl.request_log();
    assert_eq!(
        log.count("GET /v1.0/groups/{id}/transitiveMembers"),
        3,
        "five directory objects by two: every page was read"
    );
    let first = log
        .entries
        .iter()
        .find(|e| e.path.contains("transitiveMembers"))
        .unwrap();
    let query = first.query.as_deref().unwrap_or_default();
    assert!(query.contains("$select=id,mail,userPrincipalName"), "{query}");
    env.shutdown().await;
}

#[tokio::test]
async fn a_group_without_members_has_none() {
    let env = env().await;
    env.ctl
        .create_group(NewGroup {
            id: Some("g-empty".into()),
            display_name: "Empty".into(),
            mail: None,
        })
        .unwrap();
    let members = env
        .ds
        .group_members(&env.tokens, &entra_group("g-empty"))
        .await
        .unwrap();
    assert!(members.is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn a_group_that_does_not_exist_is_not_found() {
    let env = env().await;
    let e = env
        .ds
        .group_members(&env.tokens, &entra_group("9d1a0a7e-0000-0000-0000-000000000000"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DatasourceError::NotFound(why) if why.contains("Request_ResourceNotFound")),
        "{e:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_connection_without_group_member_read_all_gets_not_found_naming_the_permission() {
    let env = env().await;
    nested_groups(&env);
    let token = env
        .ctl
        .mint_access_token(&env.user, &["Files.Read.All", "Sites.Read.All"])
        .unwrap();
    let tokens = StaticToken(AccessToken::new(token));
    let e = env
        .ds
        .group_members(&tokens, &entra_group("g-sales"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DatasourceError::NotFound(why) if why.contains("GroupMember.Read.All")),
        "{e:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_group_members() {
    let env = env().await;
    nested_groups(&env);
    let tokens = TestTokens::short_lived(&env.ctl, &env.user, 60);
    env.ctl.advance_clock(chrono::Duration::seconds(120));
    let members = env
        .ds
        .group_members(&tokens, &entra_group("g-sales"))
        .await
        .unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(tokens.refreshes(), 1);
    env.shutdown().await;
}

#[tokio::test]
async fn site_groups_users_and_links_are_not_expanded_through_graph() {
    let env = env().await;
    let site_group = Principal::SiteGroup {
        site: env.drive.clone(),
        id: "4".into(),
        display_name: Some("Team Visitors".into()),
    };
    let e = env.ds.group_members(&env.tokens, &site_group).await.unwrap_err();
    assert!(
        // A personal drive has no site, hence no site groups (site groups are read through SharePoint REST:
        // see `site_groups`).
        matches!(&e, DatasourceError::NotFound(why) if why.contains("no SharePoint site")),
        "{e:?}"
    );
    let person = Principal::User {
        id: Some(env.user.clone()),
        email: None,
        display_name: None,
    };
    let anyone = Principal::Link {
        scope: "anonymous".into(),
    };
    for not_a_group in [person, anyone] {
        let e = env.ds.group_members(&env.tokens, &not_a_group).await.unwrap_err();
        assert!(matches!(e, DatasourceError::Permanent(_)), "{e:?}");
    }
    // Only the site group asked Graph something: which site the drive belongs to.
    assert_eq!(env.ctl.request_log().entries.len(), 1, "only the drive was read");
    env.shutdown().await;
}
