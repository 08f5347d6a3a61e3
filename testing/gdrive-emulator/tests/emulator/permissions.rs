use crate::common::{reason, start};
use gdrive_emulator::{Grant, Grantee};
use serde_json::Value;

fn g(grantee: Grantee, role: &str, discover: bool) -> Grant {
    Grant {
        grantee,
        role: role.into(),
        allow_file_discovery: discover,
    }
}

fn by_type<'a>(perms: &'a Value, ty: &str) -> &'a Value {
    perms["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} in {perms}"))
}

const FIELDS: &str =
    "fields=nextPageToken,permissions(id,type,role,emailAddress,domain,allowFileDiscovery,permissionDetails)";

#[tokio::test]
async fn my_drive_permissions_list_the_owner_users_groups_domains_and_anyone_with_stable_ids() {
    let env = start().await;
    let root = env.root();
    let folder = env.ctl.create_folder(&root, "Shared").unwrap();
    let child = env.ctl.create_file(&folder, "c.txt", "c").unwrap();
    let other = env.ctl.create_file(&root, "o.txt", "o").unwrap();
    env.ctl
        .set_permissions(
            &folder,
            vec![
                g(
                    Grantee::User {
                        email_address: "blake.rivera@example.com".into(),
                    },
                    "writer",
                    false,
                ),
                g(
                    Grantee::Group {
                        email_address: "engineering@example.com".into(),
                    },
                    "reader",
                    false,
                ),
                g(
                    Grantee::Domain {
                        domain: "example.com".into(),
                    },
                    "reader",
                    true,
                ),
                g(Grantee::Anyone, "reader", false),
            ],
        )
        .unwrap();
    env.ctl
        .set_permissions(
            &other,
            vec![g(
                Grantee::User {
                    email_address: "blake.rivera@example.com".into(),
                },
                "reader",
                false,
            )],
        )
        .unwrap();
    let (s, perms) = env.json(&format!("files/{folder}/permissions?{FIELDS}")).await;
    assert_eq!(s, 200, "{perms}");
    assert_eq!(perms["permissions"].as_array().unwrap().len(), 5);
    let owner = perms["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "owner")
        .unwrap();
    assert_eq!(owner["emailAddress"], "alex.kim@example.com");
    assert_eq!(
        by_type(&perms, "group")["emailAddress"],
        "engineering@example.com"
    );
    assert_eq!(by_type(&perms, "domain")["domain"], "example.com");
    assert_eq!(by_type(&perms, "domain")["allowFileDiscovery"], true);
    assert_eq!(by_type(&perms, "anyone")["allowFileDiscovery"], false);
    assert_eq!(by_type(&perms, "anyone")["id"], "anyoneWithLink");

    let (_, child_perms) = env.json(&format!("files/{child}/permissions?{FIELDS}")).await;
    assert_eq!(
        child_perms["permissions"].as_array().unwrap().len(),
        5,
        "a folder's grants reach its children"
    );
    let (_, other_perms) = env.json(&format!("files/{other}/permissions?{FIELDS}")).await;
    let blake_folder = perms["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["emailAddress"] == "blake.rivera@example.com")
        .unwrap();
    assert_eq!(by_type(&other_perms, "user")["role"], "owner");
    let blake_other = other_perms["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["emailAddress"] == "blake.rivera@example.com")
        .unwrap();
    assert_eq!(
        blake_folder["id"], blake_other["id"],
        "the id names the grantee on every file"
    );
    assert!(
        blake_folder.get("permissionDetails").is_none(),
        "details are for shared drive items"
    );

    // Blake only reads `other`: listing its permissions is refused.
    let blake = env.token_for("blake.rivera@example.com");
    let (s, body) = env.json_as(&blake, &format!("files/{other}/permissions")).await;
    assert_eq!((s, reason(&body)), (403, "insufficientFilePermissions"));
    let (s, _) = env.json_as(&blake, &format!("files/{folder}/permissions")).await;
    assert_eq!(s, 200, "a writer can list");
    env.shutdown().await;
}

#[tokio::test]
async fn shared_drive_permissions_carry_member_and_inherited_file_details() {
    let env = start().await;
    let drive = env
        .ctl
        .create_shared_drive(
            "Team",
            vec![
                g(
                    Grantee::User {
                        email_address: "alex.kim@example.com".into(),
                    },
                    "organizer",
                    false,
                ),
                g(
                    Grantee::Group {
                        email_address: "engineering@example.com".into(),
                    },
                    "writer",
                    false,
                ),
            ],
        )
        .unwrap();
    let folder = env.ctl.create_folder(&drive, "Specs").unwrap();
    let file = env.ctl.create_file(&folder, "s.txt", "s").unwrap();
    env.ctl
        .set_permissions(
            &folder,
            vec![g(
                Grantee::User {
                    email_address: "blake.rivera@example.com".into(),
                },
                "commenter",
                false,
            )],
        )
        .unwrap();
    let (s, body) = env.json(&format!("files/{file}/permissions?{FIELDS}")).await;
    assert_eq!(s, 404, "needs supportsAllDrives: {body}");
    let (s, perms) = env
        .json(&format!(
            "files/{file}/permissions?supportsAllDrives=true&{FIELDS}"
        ))
        .await;
    assert_eq!(s, 200, "{perms}");
    let list = perms["permissions"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let group = by_type(&perms, "group");
    assert_eq!(group["permissionDetails"][0]["permissionType"], "member");
    assert_eq!(group["permissionDetails"][0]["inherited"], true);
    assert_eq!(group["permissionDetails"][0]["inheritedFrom"], drive.as_str());
    let blake = list
        .iter()
        .find(|p| p["emailAddress"] == "blake.rivera@example.com")
        .unwrap();
    assert_eq!(blake["permissionDetails"][0]["permissionType"], "file");
    assert_eq!(blake["permissionDetails"][0]["inheritedFrom"], folder.as_str());
    assert!(
        list.iter().all(|p| p["role"] != "owner"),
        "shared drives have no owner"
    );
    env.shutdown().await;
}
