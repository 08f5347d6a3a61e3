//! Permissions: every page of permissions.list mapped into kbsync's principals.

use kbsync_core::datasource::{Datasource, DatasourceError, Principal};
use kbsync_gdrive::USER_DRIVE;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn users_groups_domains_and_anyone_are_mapped_over_pages_with_inheritance() {
    let env = env().await;
    env.fake.with(|s| s.max_page = 2);
    env.fake.add_drive("0ADsales", "Sales");
    env.fake.folder("Q", "Quarterly", "0ADsales");
    for p in [
        json!({"kind": "drive#permission", "id": "0123", "type": "user", "role": "organizer",
               "emailAddress": "owner@example.com", "displayName": "Olga Owner",
               "permissionDetails": [{"permissionType": "member", "role": "organizer", "inherited": true, "inheritedFrom": "0ADsales"}]}),
        json!({"kind": "drive#permission", "id": "0456", "type": "group", "role": "reader",
               "emailAddress": "sales@example.com",
               "permissionDetails": [{"permissionType": "file", "role": "reader", "inherited": false}]}),
        json!({"kind": "drive#permission", "id": "example.com", "type": "domain", "role": "reader",
               "domain": "example.com", "allowFileDiscovery": false}),
        json!({"kind": "drive#permission", "id": "anyoneWithLink", "type": "anyone", "role": "reader", "allowFileDiscovery": false}),
        json!({"kind": "drive#permission", "id": "0789", "type": "user", "role": "writer", "emailAddress": "gone@example.com", "deleted": true}),
    ] {
        env.fake.share("Q", p);
    }
    let perms = env.ds.permissions(&env.tokens, "0ADsales", "Q").await.unwrap();
    assert_eq!(perms.len(), 4, "the deleted account is left out: {perms:?}");
    assert_eq!(
        perms[0].principals,
        [Principal::User {
            id: Some("0123".into()),
            email: Some("owner@example.com".into()),
            display_name: Some("Olga Owner".into())
        }]
    );
    assert_eq!(perms[0].inherited_from.as_deref(), Some("0ADsales"));
    assert_eq!(perms[0].roles, ["organizer"]);
    assert_eq!(
        perms[1].principals,
        [Principal::Group {
            id: Some("0456".into()),
            email: Some("sales@example.com".into()),
            display_name: None
        }]
    );
    assert_eq!(perms[1].inherited_from, None);
    assert_eq!(
        perms[2].principals,
        [Principal::Link {
            scope: "organization".into()
        }]
    );
    assert_eq!(
        perms[3].principals,
        [Principal::Link {
            scope: "anonymous".into()
        }]
    );
    let pages: Vec<_> = env
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/files/Q/permissions")
        .collect();
    assert_eq!(pages.len(), 3, "5 permissions, 2 per page");
    for r in &pages {
        assert_eq!(r.query["supportsAllDrives"], "true");
        assert!(
            r.query["fields"].contains("permissionDetails") && r.query["fields"].contains("nextPageToken")
        );
    }
    env.shutdown();
}

#[tokio::test]
async fn a_reader_without_share_rights_gets_not_found_with_the_reason_and_groups_cannot_be_expanded() {
    let env = env().await;
    env.fake.folder("F", "Team", MY_ROOT);
    env.fake.fault(Fault::new(
        "/files/F/permissions",
        403,
        "insufficientFilePermissions",
        1,
    ));
    let err = env
        .ds
        .permissions(&env.tokens, USER_DRIVE, "F")
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatasourceError::NotFound(ref m) if m.contains("insufficientFilePermissions") && m.contains("share rights")),
        "{err:?}"
    );
    let group = Principal::Group {
        id: Some("0456".into()),
        email: Some("sales@example.com".into()),
        display_name: None,
    };
    let err = env.ds.group_members(&env.tokens, &group).await.unwrap_err();
    assert!(
        matches!(err, DatasourceError::NotFound(ref m) if m.contains("sales@example.com")),
        "{err:?}"
    );
    let user = Principal::User {
        id: None,
        email: Some("a@example.com".into()),
        display_name: None,
    };
    assert!(matches!(
        env.ds.group_members(&env.tokens, &user).await,
        Err(DatasourceError::Permanent(_))
    ));
    env.shutdown();
}
