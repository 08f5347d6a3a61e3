//! The picker: My Drive, shared drives (paged), "Shared with me", folders and files (paged).

use kbsync_core::datasource::{BrowseLocation, Datasource, EntryKind};
use kbsync_gdrive::{SHARED_WITH_ME, USER_DRIVE};

use crate::common::*;

#[tokio::test]
async fn the_top_level_lists_my_drive_every_shared_drive_over_pages_and_shared_with_me() {
    let env = env().await;
    env.fake.with(|s| s.max_page = 2);
    for (id, name) in [
        ("0AD3", "Sales"),
        ("0AD1", "Engineering"),
        ("0AD2", "legal"),
        ("0AD4", "Ops"),
        ("0AD5", "HR"),
    ] {
        env.fake.add_drive(id, name);
    }
    let entries = env
        .ds
        .browse(&env.tokens, &BrowseLocation::default())
        .await
        .unwrap();
    let rows: Vec<(EntryKind, &str, &str)> = entries
        .iter()
        .map(|e| (e.kind, e.id.as_str(), e.name.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            (EntryKind::Drive, USER_DRIVE, "My Drive"),
            (EntryKind::Drive, "0AD1", "Engineering"),
            (EntryKind::Drive, "0AD5", "HR"),
            (EntryKind::Drive, "0AD2", "legal"),
            (EntryKind::Drive, "0AD4", "Ops"),
            (EntryKind::Drive, "0AD3", "Sales"),
            (EntryKind::Site, SHARED_WITH_ME, "Shared with me"),
        ]
    );
    let drive_pages: Vec<_> = env
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/drives")
        .collect();
    assert_eq!(drive_pages.len(), 3, "5 drives, 2 per page");
    assert!(
        drive_pages
            .iter()
            .all(|r| r.query["fields"].contains("nextPageToken"))
    );
    env.shutdown();
}

#[tokio::test]
async fn a_folder_lists_all_its_pages_folders_first_with_docs_named_by_their_export_and_unreadable_types_left_out()
 {
    let env = env().await;
    env.fake.with(|s| s.max_page = 2);
    env.fake.folder("F", "Projects", MY_ROOT);
    env.fake.blob("b", "budget.pdf", "F", b"%PDF-1.7 budget");
    env.fake.folder("s", "Archive", "F");
    env.fake.put(file("d", "Plan", DOC, "F", b"docx bytes"));
    env.fake.put(file(
        "form",
        "Survey",
        "application/vnd.google-apps.form",
        "F",
        b"",
    ));
    env.fake.put(FakeFile {
        target: Some(("b".into(), "application/pdf".into())),
        ..file("sc", "Budget link", SHORTCUT, "F", b"")
    });
    env.fake.blob("t", "gone.pdf", "F", b"x");
    env.fake.touch("t", |f| f.trashed = true);

    let at = BrowseLocation {
        drive_id: Some(USER_DRIVE.into()),
        item_id: Some("F".into()),
    };
    let entries = env.ds.browse(&env.tokens, &at).await.unwrap();
    let rows: Vec<(EntryKind, &str, &str, Option<i64>)> = entries
        .iter()
        .map(|e| (e.kind, e.id.as_str(), e.name.as_str(), e.size))
        .collect();
    assert_eq!(
        rows,
        [
            (EntryKind::Folder, "s", "Archive", None),
            (EntryKind::File, "b", "Budget link", None),
            (EntryKind::File, "b", "budget.pdf", Some(15)),
            (EntryKind::File, "d", "Plan.docx", None),
        ],
        "a shortcut opens its target under its own name; the form is left out"
    );
    assert!(entries.iter().all(|e| e.drive_id.as_deref() == Some(USER_DRIVE)));
    let lists: Vec<_> = env
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/files")
        .collect();
    assert_eq!(lists.len(), 3, "5 live children, 2 per page");
    for r in &lists {
        assert_eq!(r.query["q"], "'F' in parents and trashed = false");
        assert!(
            r.query["fields"].starts_with("nextPageToken,files("),
            "{:?}",
            r.query
        );
        assert_eq!(r.query["supportsAllDrives"], "true");
    }

    // My Drive's root, and "Shared with me".
    env.fake.with(|s| s.shared_with_me = vec!["b".into()]);
    let root = BrowseLocation {
        drive_id: Some(USER_DRIVE.into()),
        item_id: None,
    };
    let names: Vec<String> = env
        .ds
        .browse(&env.tokens, &root)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["Projects"]);
    let shared = BrowseLocation {
        drive_id: Some(SHARED_WITH_ME.into()),
        item_id: None,
    };
    let shared = env.ds.browse(&env.tokens, &shared).await.unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(
        (shared[0].id.as_str(), shared[0].drive_id.as_deref()),
        ("b", Some(USER_DRIVE))
    );
    env.shutdown();
}

#[tokio::test]
async fn a_shared_drive_is_listed_from_its_root_with_its_drive_id_and_corpus() {
    let env = env().await;
    env.fake.add_drive("0ADsales", "Sales");
    env.fake.folder("q", "Quarterly", "0ADsales");
    let at = BrowseLocation {
        drive_id: Some("0ADsales".into()),
        item_id: None,
    };
    let entries = env.ds.browse(&env.tokens, &at).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].id.as_str(), entries[0].drive_id.as_deref()),
        ("q", Some("0ADsales"))
    );
    let r = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/files")
        .unwrap();
    assert_eq!(r.query["q"], "'0ADsales' in parents and trashed = false");
    assert_eq!(r.query["corpora"], "drive");
    assert_eq!(r.query["driveId"], "0ADsales");
    assert_eq!(r.query["includeItemsFromAllDrives"], "true");
    env.shutdown();
}
