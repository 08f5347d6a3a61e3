//! Changes of a folder's subtree: the first enumeration (breadth-first over pages, through the
//! cursor), then the user's change feed filtered by ancestry.

use kbsync_core::datasource::{Datasource, DatasourceError, ItemKind, NextPage, SourceRef};
use kbsync_gdrive::cursor::Cursor;
use kbsync_gdrive::{MD5, MODIFIED_TIME};
use serde_json::json;

use crate::common::*;

/// Projects/{a.pdf, Sub/{b.pdf, Deep/{c.pdf}}, Notes (a Doc)}, and an unrelated Other/x.pdf.
fn tree(fake: &Fake) {
    fake.folder("P", "Projects", MY_ROOT);
    fake.blob("a", "a.pdf", "P", b"alpha");
    fake.folder("S", "Sub", "P");
    fake.blob("b", "b.pdf", "S", b"bravo");
    fake.folder("D", "Deep", "S");
    fake.blob("c", "c.pdf", "D", b"charlie");
    fake.put(file("n", "Notes", DOC, "P", b"notes docx"));
    fake.folder("O", "Other", MY_ROOT);
    fake.blob("x", "x.pdf", "O", b"xray");
}

#[tokio::test]
async fn the_first_round_enumerates_the_subtree_breadth_first_over_pages_through_the_cursor() {
    let env = env_config(|c| {
        c.page_size = 2;
        c.max_listings_per_call = 1;
    })
    .await;
    tree(&env.fake);
    let source = env.my_source("P");
    let round = env.round(&source, None).await;

    assert!(round.pages.len() >= 3, "{} pages", round.pages.len());
    let first = &round.pages[0].items[0];
    assert_eq!((first.id.as_str(), first.kind), ("P", ItemKind::Root));
    assert_eq!(round.live(), ["D", "P", "S", "a", "b", "c", "n"]);
    assert_eq!(round.get("c").unwrap().parent_id.as_deref(), Some("D"));
    assert_eq!(round.get("D").unwrap().kind, ItemKind::Folder);
    let a = round.get("a").unwrap();
    assert_eq!(
        (a.size, a.hash.as_ref().unwrap().algorithm.as_str()),
        (Some(5), MD5)
    );
    assert_eq!(a.hash.as_ref().unwrap().value, md5_hex(b"alpha"));
    let n = round.get("n").unwrap();
    assert_eq!(n.name.as_deref(), Some("Notes.docx"));
    assert_eq!(n.hash.as_ref().unwrap().algorithm, MODIFIED_TIME);
    // Every cursor but the last said More; they all decode, and the last one has nothing to walk.
    for p in &round.pages[..round.pages.len() - 1] {
        assert!(matches!(p.next, NextPage::More(_)));
    }
    let done = Cursor::decode(&round.cursor).unwrap();
    assert!(done.walk.is_empty() && done.done && done.scope == "P", "{done:?}");
    // The start token was taken before the enumeration, with the mask, once.
    let reqs = env.fake.requests();
    let starts: Vec<_> = reqs
        .iter()
        .filter(|r| r.path == "/changes/startPageToken")
        .collect();
    assert_eq!(starts.len(), 1);
    assert_eq!(reqs[0].path, "/changes/startPageToken");
    for r in reqs.iter().filter(|r| r.path == "/files") {
        assert_eq!(r.query["pageSize"], "2");
        assert!(r.query["fields"].contains("nextPageToken"));
    }

    // Nothing changed: an empty round, Done at once.
    let again = env.round(&source, Some(&round.cursor)).await;
    assert_eq!(again.pages.len(), 1);
    assert!(again.items.is_empty(), "{:?}", again.items);
    env.shutdown();
}

#[tokio::test]
async fn changes_report_creates_edits_renames_moves_trash_deletes_and_sharing_inside_the_source_only() {
    let env = env().await;
    tree(&env.fake);
    let source = env.my_source("P");
    let first = env.round(&source, None).await;

    env.fake.blob("new", "new.pdf", "S", b"fresh");
    env.fake.edit("a", |f| f.content = b"alpha v2".to_vec());
    env.fake.touch("b", |f| f.name = "renamed.pdf".into());
    env.fake.touch("x", |f| f.parent = Some("D".into())); // moved in
    env.fake.touch("c", |f| f.parent = Some("O".into())); // moved out
    env.fake.blob("t", "t.pdf", "P", b"to trash");
    env.fake.touch("t", |f| f.trashed = true);
    env.fake.delete("n");
    env.fake.blob("o2", "outside.pdf", "O", b"not ours");
    env.fake.share(
        "S",
        json!({"id": "123", "type": "user", "role": "reader", "emailAddress": "megan@example.com"}),
    );

    let round = env.round(&source, Some(&first.cursor)).await;
    let new = round.get("new").unwrap();
    assert_eq!((new.parent_id.as_deref(), new.deleted), (Some("S"), false));
    assert_eq!(
        round.get("a").unwrap().hash.as_ref().unwrap().value,
        md5_hex(b"alpha v2")
    );
    let b = round.get("b").unwrap();
    assert_eq!(b.name.as_deref(), Some("renamed.pdf"));
    assert_eq!(
        b.hash,
        first.get("b").unwrap().hash,
        "a rename keeps the hash: no download"
    );
    assert_eq!(round.get("x").unwrap().parent_id.as_deref(), Some("D"));
    assert_eq!(round.gone(), ["c", "n", "o2", "t"]);
    let s = round.get("S").unwrap();
    assert!(
        s.sharing.own && s.sharing.changed,
        "a folder from the feed may have new sharing: {s:?}"
    );
    assert_eq!(s.kind, ItemKind::Folder);
    // Ancestors were read with their own mask, shared-drive aware.
    let reqs = env.fake.requests();
    let feed = reqs.iter().find(|r| r.path == "/changes").unwrap();
    for (k, v) in [
        ("includeRemoved", "true"),
        ("supportsAllDrives", "true"),
        ("includeItemsFromAllDrives", "true"),
        ("restrictToMyDrive", "false"),
        ("pageSize", "1000"),
    ] {
        assert_eq!(feed.query[k], v, "{k}");
    }
    assert!(!feed.query.contains_key("driveId"));
    assert!(
        feed.query["fields"].contains("nextPageToken") && feed.query["fields"].contains("newStartPageToken")
    );
    for r in reqs.iter().filter(|r| r.path.starts_with("/files/")) {
        assert_eq!(r.query["supportsAllDrives"], "true", "{}", r.path);
        assert!(r.query.contains_key("fields"), "{}", r.path);
    }
    env.shutdown();
}

#[tokio::test]
async fn a_folder_moved_in_brings_its_files_and_subfolders_and_a_folder_moved_out_leaves() {
    let env = env_config(|c| c.max_listings_per_call = 1).await;
    tree(&env.fake);
    env.fake.folder("O2", "Nested", "O");
    env.fake.blob("y", "y.pdf", "O2", b"yankee");
    let source = env.my_source("P");
    let first = env.round(&source, None).await;
    assert!(first.get("x").is_none() && first.get("y").is_none());

    env.fake.touch("O", |f| f.parent = Some("P".into()));
    env.fake.touch("S", |f| f.parent = Some(MY_ROOT.into()));
    let round = env.round(&source, Some(&first.cursor)).await;
    assert_eq!(round.get("O").unwrap().parent_id.as_deref(), Some("P"));
    assert!(!round.get("x").unwrap().deleted, "the moved folder's file");
    assert_eq!(
        round.get("y").unwrap().parent_id.as_deref(),
        Some("O2"),
        "and its subfolder's"
    );
    assert!(round.get("S").unwrap().deleted, "Sub moved out of the source");
    assert!(
        round.pages.len() >= 2,
        "the subtree listing went through the cursor"
    );

    // The next round starts from the feed's new start token: nothing again.
    let again = env.round(&source, Some(&round.cursor)).await;
    assert!(again.items.is_empty(), "{:?}", again.items);
    env.shutdown();
}

#[tokio::test]
async fn a_refused_page_token_or_a_foreign_cursor_asks_for_a_fresh_enumeration() {
    let env = env().await;
    tree(&env.fake);
    let source = env.my_source("P");
    let first = env.round(&source, None).await;
    env.fake.blob("new", "new.pdf", "P", b"fresh");
    env.fake.with(|s| s.oldest_token = s.changes.len());
    let err = env
        .ds
        .changes(&env.tokens, &source, Some(&first.cursor))
        .await
        .unwrap_err();
    assert_eq!(err, DatasourceError::CursorExpired { restart: None });
    let err = env
        .ds
        .changes(
            &env.tokens,
            &source,
            Some("https://graph.microsoft.com/v1.0/drives/d/root/delta?token=x"),
        )
        .await
        .unwrap_err();
    assert_eq!(err, DatasourceError::CursorExpired { restart: None });
    // Starting again works and sees the new file.
    let fresh = env.round(&source, None).await;
    assert!(fresh.get("new").is_some());
    env.shutdown();
}

#[tokio::test]
async fn a_shared_drive_source_reads_its_own_feed_and_ends_when_the_drive_is_gone() {
    let env = env().await;
    env.fake.add_drive("0ADsales", "Sales");
    env.fake.folder("Q", "Quarterly", "0ADsales");
    env.fake.blob("r", "report.pdf", "Q", b"numbers");
    let source = SourceRef {
        drive_id: "0ADsales".into(),
        item_id: "root".into(),
    };
    let first = env.round(&source, None).await;
    assert_eq!(first.get("0ADsales").unwrap().kind, ItemKind::Root);
    assert_eq!(first.get("r").unwrap().drive_id, "0ADsales");
    let start = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/changes/startPageToken")
        .unwrap();
    assert_eq!(start.query["driveId"], "0ADsales");

    env.fake.blob("r2", "report2.pdf", "Q", b"more numbers");
    let round = env.round(&source, Some(&first.cursor)).await;
    assert!(!round.get("r2").unwrap().deleted);
    let feed = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/changes")
        .unwrap();
    assert_eq!(feed.query["driveId"], "0ADsales");

    env.fake.remove_drive("0ADsales");
    let err = env
        .ds
        .changes(&env.tokens, &source, Some(&round.cursor))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatasourceError::NotFound(ref m) if m.contains("0ADsales")),
        "{err:?}"
    );
    env.shutdown();
}

#[tokio::test]
async fn a_shortcut_to_a_file_is_followed_once_and_one_to_a_folder_is_not() {
    let env = env().await;
    tree(&env.fake);
    env.fake.put(FakeFile {
        target: Some(("x".into(), "application/pdf".into())),
        ..file("s1", "x link", SHORTCUT, "P", b"")
    });
    env.fake.put(FakeFile {
        target: Some(("P".into(), FOLDER.into())),
        ..file("s2", "loop", SHORTCUT, "S", b"")
    });
    let source = env.my_source("P");
    let round = env.round(&source, None).await;
    let s1 = round.get("s1").unwrap();
    assert_eq!(
        (s1.name.as_deref(), s1.parent_id.as_deref()),
        (Some("x link"), Some("P"))
    );
    assert_eq!(s1.hash.as_ref().unwrap().value, md5_hex(b"xray"));
    assert!(
        round.get("s2").is_none(),
        "a shortcut to a folder is not followed"
    );
    let (bytes, err) = drain(env.ds.download(&env.tokens, s1).await.unwrap()).await;
    assert_eq!((bytes.as_slice(), err), (&b"xray"[..], None));
    env.shutdown();
}
