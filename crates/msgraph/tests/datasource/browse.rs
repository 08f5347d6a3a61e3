use kbsync_core::datasource::{BrowseLocation, Datasource, DatasourceError, EntryKind};
use msgraph_emulator::{DriveType, NewDrive, NewSite, NewUser, PermissionSpec};

use crate::common::*;

fn at(drive_id: &str, item_id: Option<&str>) -> BrowseLocation {
    BrowseLocation {
        drive_id: Some(drive_id.to_string()),
        item_id: item_id.map(str::to_string),
    }
}

#[tokio::test]
async fn browse_top_level_lists_my_drive_first_then_other_drives_and_sites() {
    let env = env().await;
    let other = env
        .ctl
        .create_drive(NewDrive {
            owner_user_id: env.user.clone(),
            drive_type: DriveType::Business,
            name: Some("Archive".into()),
        })
        .unwrap();
    let site = env
        .ctl
        .create_site(NewSite {
            display_name: "Engineering".into(),
            name: Some("eng".into()),
            libraries: vec!["Documents".into(), "Specs".into()],
        })
        .unwrap();
    // A colleague shares a folder of their own drive with the user.
    let colleague = env
        .ctl
        .create_user(NewUser {
            display_name: "Colleague".into(),
            mail: Some("colleague@contoso.example".into()),
            user_principal_name: None,
            drive_type: None,
            tenant_id: None,
        })
        .unwrap();
    let colleague_drive = env
        .ctl
        .create_drive(NewDrive {
            owner_user_id: colleague.id.clone(),
            drive_type: DriveType::Business,
            name: None,
        })
        .unwrap();
    let shared_folder = env
        .ctl
        .create_folder(&colleague_drive.id, "/Shared plans")
        .unwrap();
    env.ctl
        .add_permission(
            &colleague_drive.id,
            &shared_folder.id,
            PermissionSpec::user(&env.user, &["read"]),
        )
        .unwrap();

    let entries = env
        .ds
        .browse(&env.tokens, &BrowseLocation::default())
        .await
        .unwrap();

    assert_eq!(entries[0].kind, EntryKind::Drive);
    let shared = entries
        .iter()
        .find(|e| e.name == "Shared plans")
        .unwrap_or_else(|| panic!("the shared folder is listed: {entries:?}"));
    assert_eq!(shared.kind, EntryKind::Folder);
    assert_eq!(shared.id, shared_folder.id, "the entry points at the real item");
    assert_eq!(shared.drive_id.as_deref(), Some(colleague_drive.id.as_str()));
    assert_eq!(entries[0].id, env.drive, "the user's own drive comes first");
    assert_eq!(entries[0].drive_id.as_deref(), Some(env.drive.as_str()));
    let drives: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Drive)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(drives, [env.drive.as_str(), other.id.as_str()]);
    let sites: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Site)
        .map(|e| (e.name.as_str(), e.drive_id.as_deref().unwrap()))
        .collect();
    let eng_location = format!("site:{}", site.id);
    assert!(
        sites.contains(&("Engineering", eng_location.as_str())),
        "{sites:?}"
    );
    assert!(sites.iter().any(|(n, _)| *n == "Contoso Team"), "{sites:?}");
    let shared_with_me = env
        .ctl
        .request_log()
        .entries
        .into_iter()
        .find(|e| e.path == "/v1.0/me/drive/sharedWithMe")
        .expect("items shared with the user were asked for");
    assert_eq!(shared_with_me.status, 200);
    let names: Vec<&str> = sites.iter().map(|(n, _)| *n).collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted, "sites by name");
    env.shutdown().await;
}

#[tokio::test]
async fn browse_a_site_lists_its_document_libraries() {
    let env = env().await;
    let site = env
        .ctl
        .create_site(NewSite {
            display_name: "Legal".into(),
            name: None,
            libraries: vec!["Contracts".into(), "Archive".into()],
        })
        .unwrap();

    let entries = env
        .ds
        .browse(&env.tokens, &at(&format!("site:{}", site.id), None))
        .await
        .unwrap();

    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["Archive", "Contracts"]);
    assert!(entries.iter().all(|e| e.kind == EntryKind::Drive));
    let mut ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    let mut expected = site.drive_ids.clone();
    expected.sort();
    assert_eq!(ids, expected);

    // A library opens like any drive.
    let library = &entries[0];
    env.ctl
        .put_file(library.drive_id.as_ref().unwrap(), "/policy.docx", "p")
        .unwrap_or_else(|_| panic!("put into {:?}", library.drive_id));
    let inside = env
        .ds
        .browse(&env.tokens, &at(library.drive_id.as_ref().unwrap(), None))
        .await
        .unwrap();
    assert_eq!(inside.len(), 1);
    assert_eq!(inside[0].name, "policy.docx");
    env.shutdown().await;
}

#[tokio::test]
async fn browse_a_drive_and_a_folder_pages_through_every_child_folders_first() {
    let env = env_config(|c| c.page_size = 2).await;
    let d = &env.drive;
    for name in ["zeta.txt", "Alpha.md", "beta.pdf", "Gamma.txt"] {
        env.ctl.put_file(d, &format!("/Top/{name}"), name).unwrap();
    }
    for folder in ["/Top/yankee", "/Top/Xray", "/Top/Whiskey"] {
        env.ctl.create_folder(d, folder).unwrap();
    }
    env.ctl.put_file(d, "/Top/Xray/inner.txt", "i").unwrap();
    env.ctl.clear_request_log();

    let root = env.ds.browse(&env.tokens, &at(d, None)).await.unwrap();
    assert_eq!(root.len(), 1);
    assert_eq!(root[0].kind, EntryKind::Folder);
    assert_eq!(root[0].name, "Top");
    assert_eq!(root[0].drive_id.as_deref(), Some(d.as_str()));

    let top = env
        .ds
        .browse(&env.tokens, &at(d, Some(&root[0].id)))
        .await
        .unwrap();

    let listed: Vec<(EntryKind, &str)> = top.iter().map(|e| (e.kind, e.name.as_str())).collect();
    assert_eq!(
        listed,
        [
            (EntryKind::Folder, "Whiskey"),
            (EntryKind::Folder, "Xray"),
            (EntryKind::Folder, "yankee"),
            (EntryKind::File, "Alpha.md"),
            (EntryKind::File, "beta.pdf"),
            (EntryKind::File, "Gamma.txt"),
            (EntryKind::File, "zeta.txt"),
        ]
    );
    let xray = top.iter().find(|e| e.name == "Xray").unwrap();
    assert_eq!(xray.child_count, Some(1));
    let zeta = top.iter().find(|e| e.name == "zeta.txt").unwrap();
    assert_eq!(zeta.size, Some(8));
    assert!(zeta.web_url.is_some() && zeta.modified_at.is_some());
    assert!(
        env.ctl
            .request_log()
            .count("GET /v1.0/drives/{id}/items/{id}/children")
            >= 4,
        "7 children by 2 need 4 pages"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn browse_a_missing_folder_is_not_found() {
    let env = env().await;
    let r = env
        .ds
        .browse(&env.tokens, &at(&env.drive, Some("01NOSUCHITEM")))
        .await;
    assert!(matches!(r, Err(DatasourceError::NotFound(_))), "{r:?}");
    env.shutdown().await;
}
