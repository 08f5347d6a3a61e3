use kbsync_core::datasource::{Datasource, Principal, RemotePermission};
use msgraph_emulator::{LinkUser, NewUser, PermissionSpec};

use crate::common::*;

fn user_spec(name: &str, email: Option<&str>, include_email: bool, roles: &[&str]) -> PermissionSpec {
    PermissionSpec::User {
        user_id: None,
        display_name: Some(name.into()),
        email: email.map(str::to_string),
        include_email,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

fn link(link_type: &str, scope: &str, users: Vec<LinkUser>) -> PermissionSpec {
    PermissionSpec::Link {
        link_type: link_type.into(),
        scope: scope.into(),
        users,
        roles: Vec::new(),
        prevents_download: false,
    }
}

fn by_id<'a>(perms: &'a [RemotePermission], id: &str) -> &'a RemotePermission {
    perms.iter().find(|p| p.id == id).unwrap()
}

#[tokio::test]
async fn permissions_of_every_principal_kind_are_read_across_pages() {
    let env = env().await;
    let (ctl, d) = (&env.ctl, &env.drive);
    ctl.put_file(d, "/Shared/doc.txt", "doc").unwrap();
    let folder = ctl.item_by_path(d, "/Shared").unwrap();
    let megan = ctl
        .create_user(NewUser {
            display_name: "Megan Bowen".into(),
            mail: Some("megan@contoso.onmicrosoft.com".into()),
            ..NewUser::default()
        })
        .unwrap();
    let mut specs = vec![
        PermissionSpec::user(&megan.id, &["write"]),
        user_spec("Ext Person", Some("ext@fabrikam.com"), true, &["read"]),
        user_spec("No Mail", Some("hidden@contoso.com"), false, &["read"]),
        PermissionSpec::Group {
            group_id: Some("g-sales".into()),
            display_name: "Sales".into(),
            email: Some("sales@contoso.com".into()),
            roles: vec!["read".into()],
        },
        PermissionSpec::SiteGroup {
            site_group_id: Some("9".into()),
            display_name: "Team Visitors".into(),
            roles: vec!["read".into()],
        },
        link("view", "anonymous", Vec::new()),
        link("edit", "organization", Vec::new()),
        link(
            "view",
            "users",
            vec![
                LinkUser {
                    display_name: "Link Friend".into(),
                    email: Some("friend@fabrikam.com".into()),
                },
                LinkUser {
                    display_name: "Megan Bowen".into(),
                    email: Some("megan@contoso.onmicrosoft.com".into()),
                },
            ],
        ),
        link("view", "existingAccess", Vec::new()),
    ];
    // Enough to need a second page (the service pages permissions by 100).
    for i in 0..110 {
        specs.push(user_spec(
            &format!("Filler {i}"),
            Some(&format!("filler{i}@contoso.com")),
            true,
            &["read"],
        ));
    }
    let ids = ctl.set_permissions(d, &folder.id, specs).unwrap();
    ctl.clear_request_log();

    let perms = env.ds.permissions(&env.tokens, d, &folder.id).await.unwrap();

    assert_eq!(
        env.ctl
            .request_log()
            .count("GET /v1.0/drives/{id}/items/{id}/permissions"),
        2,
        "all pages were read"
    );
    // The folder's own 119, plus the owner's permission inherited from the root.
    assert_eq!(perms.len(), ids.len() + 1);
    let owner = perms
        .iter()
        .find(|p| p.roles == ["owner"])
        .expect("the inherited owner permission");
    assert_eq!(
        owner.inherited_from, None,
        "business drives do not say where from"
    );
    assert!(matches!(
        &owner.principals[..],
        [Principal::User { email: Some(e), .. }] if e == "adele.vance@contoso.onmicrosoft.com"
    ));

    let p = by_id(&perms, &ids[0]);
    assert_eq!(p.roles, ["write"]);
    assert_eq!(
        p.principals,
        [Principal::User {
            id: Some(megan.id.clone()),
            email: Some("megan@contoso.onmicrosoft.com".into()),
            display_name: Some("Megan Bowen".into()),
        }]
    );
    assert!(matches!(
        &by_id(&perms, &ids[1]).principals[..],
        [Principal::User { email: Some(e), .. }] if e == "ext@fabrikam.com"
    ));
    assert!(matches!(
        &by_id(&perms, &ids[2]).principals[..],
        [Principal::User { email: None, display_name: Some(n), id: Some(_) }] if n == "No Mail"
    ));
    assert_eq!(
        by_id(&perms, &ids[3]).principals,
        [Principal::Group {
            id: Some("g-sales".into()),
            email: Some("sales@contoso.com".into()),
            display_name: Some("Sales".into()),
        }]
    );
    assert_eq!(
        by_id(&perms, &ids[4]).principals,
        [Principal::SiteGroup {
            site: d.clone(),
            id: "9".into(),
            display_name: Some("Team Visitors".into()),
        }]
    );
    let anonymous = by_id(&perms, &ids[5]);
    assert_eq!(
        anonymous.principals,
        [Principal::Link {
            scope: "anonymous".into()
        }]
    );
    assert_eq!(anonymous.roles, ["read"]);
    let org = by_id(&perms, &ids[6]);
    assert_eq!(
        org.principals,
        [Principal::Link {
            scope: "organization".into()
        }]
    );
    assert_eq!(org.roles, ["write"]);
    let specific = by_id(&perms, &ids[7]);
    assert_eq!(specific.principals.len(), 3);
    assert_eq!(
        specific.principals[0],
        Principal::Link {
            scope: "users".into()
        }
    );
    assert!(specific.principals.contains(&Principal::User {
        id: None,
        email: Some("friend@fabrikam.com".into()),
        display_name: Some("Link Friend".into()),
    }));
    assert!(specific.principals.contains(&Principal::User {
        id: Some(megan.id.clone()),
        email: Some("megan@contoso.onmicrosoft.com".into()),
        display_name: Some("Megan Bowen".into()),
    }));
    assert_eq!(
        by_id(&perms, &ids[8]).principals,
        [Principal::Link {
            scope: "existingAccess".into()
        }]
    );
    assert!(matches!(
        &by_id(&perms, &ids[118]).principals[..],
        [Principal::User { email: Some(e), .. }] if e == "filler109@contoso.com"
    ));
    env.shutdown().await;
}

#[tokio::test]
async fn permissions_on_a_personal_drive_say_where_they_are_inherited_from() {
    let env = env().await;
    let owner = kbsync_kit::emulator::personal_drive_user(&env.ctl, "Pat Personal", Some("pat@outlook.com"));
    let drive = owner.drive_id.clone().unwrap();
    let tokens = TestTokens::new(&env.ctl, &owner.id);
    let f = env.ctl.put_file(&drive, "/Album/pic.png", "png").unwrap();
    let album = env.ctl.item_by_path(&drive, "/Album").unwrap();
    let ids = env
        .ctl
        .set_permissions(&drive, &album.id, vec![link("view", "anonymous", Vec::new())])
        .unwrap();

    let perms = env.ds.permissions(&tokens, &drive, &f.id).await.unwrap();

    let inherited = by_id(&perms, &ids[0]);
    assert_eq!(inherited.inherited_from.as_deref(), Some(album.id.as_str()));
    assert_eq!(
        inherited.principals,
        [Principal::Link {
            scope: "anonymous".into()
        }]
    );
    env.shutdown().await;
}
