use std::collections::BTreeSet;

use kbsync_core::datasource::{Datasource, DatasourceError, ItemKind, NextPage, SourceRef};
use kbsync_msgraph::QuickXorHash;
use msgraph_emulator::{DeltaBehaviour, ResyncCode};

use crate::common::*;

#[tokio::test]
async fn delta_enumerates_a_nested_folder_across_several_pages() {
    let env = env_config(|c| c.page_size = 2).await;
    let ctl = &env.ctl;
    let d = &env.drive;
    let a = ctl.put_file(d, "/Projects/a.txt", "alpha").unwrap();
    ctl.put_file(d, "/Projects/Specs/b.md", "# bravo").unwrap();
    let c = ctl
        .put_file(d, "/Projects/Specs/Deep/c.txt", noise(5000, 1))
        .unwrap();
    ctl.put_file(d, "/Projects/Specs/Deep/d.txt", "delta").unwrap();
    ctl.put_file(d, "/Projects/Notes/e.txt", "echo").unwrap();
    ctl.put_file(d, "/Other/outside.txt", "not in scope").unwrap();
    ctl.put_file(d, "/top.txt", "not in scope either").unwrap();
    let projects = ctl.item_by_path(d, "/Projects").unwrap();
    let deep = ctl.item_by_path(d, "/Projects/Specs/Deep").unwrap();
    ctl.clear_request_log();

    let round = env.round(&env.source(&projects.id), None).await;

    assert!(round.pages.len() >= 4, "{} pages", round.pages.len());
    let (last, rest) = round.pages.split_last().unwrap();
    assert!(rest.iter().all(|p| matches!(p.next, NextPage::More(_))));
    assert!(matches!(last.next, NextPage::Done(_)));
    assert_eq!(
        round.names(),
        [
            "Deep", "Notes", "Projects", "Specs", "a.txt", "b.md", "c.txt", "d.txt", "e.txt"
        ]
    );
    assert_eq!(round.get(&projects.id).unwrap().kind, ItemKind::Root);
    assert_eq!(round.get(&deep.id).unwrap().kind, ItemKind::Folder);
    let c_item = round.get(&c.id).unwrap();
    assert_eq!(c_item.kind, ItemKind::File);
    assert_eq!(c_item.parent_id.as_deref(), Some(deep.id.as_str()));
    assert_eq!(c_item.drive_id, *d);
    assert_eq!(c_item.size, Some(5000));
    let hash = c_item.hash.as_ref().unwrap();
    assert_eq!(hash.algorithm, "quickXorHash");
    assert_eq!(Some(hash.value.clone()), c.quick_xor_hash);
    assert_eq!(hash.value, QuickXorHash::of(&noise(5000, 1)));
    assert_eq!(round.get(&a.id).unwrap().mime.as_deref(), Some("text/plain"));
    assert!(round.items.iter().all(|i| !i.deleted));

    // The first request is item-scoped with $top; every later one is a nextLink followed
    // verbatim (no query parameter added again).
    let log = ctl.request_log();
    let deltas: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.path.ends_with("/delta"))
        .collect();
    assert_eq!(deltas.len(), round.pages.len());
    assert_eq!(deltas[0].route, "GET /v1.0/drives/{id}/items/{id}/delta");
    assert_eq!(deltas[0].query.as_deref(), Some("$top=2"));
    for e in &deltas[1..] {
        let q = e.query.as_deref().unwrap();
        assert!(q.starts_with("token=") && !q.contains("top"), "{q}");
    }
    env.shutdown().await;
}

#[tokio::test]
async fn delta_of_the_drive_root_uses_the_root_delta_endpoint() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/x/y.txt", "y").unwrap();
    let root = env.ctl.drive(&env.drive).unwrap().root_id;
    env.ctl.clear_request_log();

    let round = env.round(&env.source(&root), None).await;

    let r = round.get(&root).unwrap();
    assert_eq!(r.kind, ItemKind::Root);
    assert_eq!(r.parent_id, None);
    assert_eq!(round.names(), ["root", "x", "y.txt"]);
    let log = env.ctl.request_log();
    assert_eq!(log.count("GET /v1.0/drives/{id}/root/delta"), 1);
    assert_eq!(log.count("GET /v1.0/drives/{id}/items/{id}/delta"), 0);
    env.shutdown().await;
}

#[tokio::test]
async fn a_round_after_a_sharing_change_says_so_and_a_round_without_one_does_not() {
    let env = env().await;
    let (ctl, d) = (&env.ctl, &env.drive);
    ctl.put_file(d, "/P/a.txt", "a").unwrap();
    let p = ctl.item_by_path(d, "/P").unwrap();
    let source = env.source(&p.id);
    let first = env.round(&source, None).await;
    assert!(
        first
            .pages
            .iter()
            .all(|page| !page.items.iter().any(|i| i.sharing.changed))
    );

    ctl.add_permission(
        d,
        &p.id,
        msgraph_emulator::PermissionSpec::link("view", "organization"),
    )
    .unwrap();
    let second = env.round(&source, Some(&first.delta_link)).await;
    assert!(
        second
            .pages
            .iter()
            .any(|page| page.items.iter().any(|i| i.sharing.changed)),
        "the client asks for sharing changes"
    );
    assert!(second.get(&p.id).is_some());

    ctl.put_file(d, "/P/b.txt", "b").unwrap();
    let third = env.round(&source, Some(&second.delta_link)).await;
    assert!(third.get(&p.id).is_some(), "the folder as parent of the new file");
    assert!(
        third
            .pages
            .iter()
            .all(|page| !page.items.iter().any(|i| i.sharing.changed))
    );
    env.shutdown().await;
}

#[tokio::test]
async fn incremental_delta_reports_add_modify_rename_move_and_delete() {
    let env = env().await;
    let (ctl, d) = (&env.ctl, &env.drive);
    let a = ctl.put_file(d, "/P/a.txt", "a1").unwrap();
    let b = ctl.put_file(d, "/P/b.txt", "b").unwrap();
    let c = ctl.put_file(d, "/P/c.txt", "c").unwrap();
    let gone = ctl.put_file(d, "/P/d.txt", "d").unwrap();
    let leaving = ctl.put_file(d, "/P/e.txt", "e").unwrap();
    let sub = ctl.create_folder(d, "/P/Sub").unwrap();
    let elsewhere = ctl.create_folder(d, "/Elsewhere").unwrap();
    let p = ctl.item_by_path(d, "/P").unwrap();
    let source = env.source(&p.id);
    let first = env.round(&source, None).await;

    let added = ctl.put_file(d, "/P/Sub/new.txt", "brand new").unwrap();
    ctl.modify_file(d, &a.id, "a2 is longer").unwrap();
    ctl.rename(d, &b.id, "b-renamed.txt").unwrap();
    ctl.move_item(d, &c.id, &sub.id, None).unwrap();
    ctl.delete(d, &gone.id).unwrap();
    ctl.move_item(d, &leaving.id, &elsewhere.id, None).unwrap();

    let second = env.round(&source, Some(&first.delta_link)).await;

    let new_item = second.get(&added.id).unwrap();
    assert!(!new_item.deleted);
    assert_eq!(new_item.parent_id.as_deref(), Some(sub.id.as_str()));
    let modified = second.get(&a.id).unwrap();
    assert_eq!(
        modified.hash.as_ref().unwrap().value,
        QuickXorHash::of(b"a2 is longer")
    );
    assert_eq!(modified.size, Some(12));
    assert_eq!(second.get(&b.id).unwrap().name.as_deref(), Some("b-renamed.txt"));
    assert_eq!(
        second.get(&c.id).unwrap().parent_id.as_deref(),
        Some(sub.id.as_str())
    );
    // Business drives: a tombstone has no name.
    let tombstone = second.get(&gone.id).unwrap();
    assert!(tombstone.deleted);
    assert_eq!(tombstone.name, None);
    assert_eq!(tombstone.hash, None);
    // Moving out of the scope looks like a deletion from the scope's point of view.
    assert!(second.get(&leaving.id).unwrap().deleted);
    env.shutdown().await;
}

#[tokio::test]
async fn expired_delta_token_gives_cursor_expired_with_a_restart_link() {
    for code in [
        ResyncCode::ResyncChangesApplyDifferences,
        ResyncCode::ResyncChangesUploadDifferences,
    ] {
        let env = env().await;
        let f = env.ctl.put_file(&env.drive, "/Docs/f.txt", "f").unwrap();
        let docs = env.ctl.item_by_path(&env.drive, "/Docs").unwrap();
        let source = env.source(&docs.id);
        let first = env.round(&source, None).await;
        env.ctl.expire_delta_tokens(&env.drive, code).unwrap();

        let err = env
            .ds
            .changes(&env.tokens, &source, Some(&first.delta_link))
            .await
            .unwrap_err();
        let DatasourceError::CursorExpired {
            restart: Some(restart),
        } = err
        else {
            panic!("{err:?}")
        };
        assert!(restart.starts_with(env.emu.graph_url()), "{restart}");

        // The restart link begins a fresh, complete enumeration.
        let again = env.round(&source, Some(&restart)).await;
        assert_eq!(again.names(), ["Docs", "f.txt"]);
        assert!(!again.get(&f.id).unwrap().deleted);
        assert!(env.sleeper.waits().is_empty(), "a 410 is not retried");
        env.shutdown().await;
    }
}

#[tokio::test]
async fn delta_tolerates_children_before_parents_duplicates_and_empty_pages() {
    let b = builder().delta_behaviour(DeltaBehaviour {
        page_size: 4,
        children_first_probability: 0.6,
        duplicate_probability: 0.3,
        empty_page_probability: 0.3,
        ..DeltaBehaviour::default()
    });
    let env = env_with(b, |c| c.page_size = 4).await;
    let mut expected = BTreeSet::new();
    for i in 0..30 {
        let path = format!("/Root{}/Level{}/file{i}.txt", i % 3, i % 5);
        let info = env.ctl.put_file(&env.drive, &path, format!("{i}")).unwrap();
        expected.insert(info.id);
    }
    let root = env.ctl.drive(&env.drive).unwrap().root_id;

    let round = env.round(&env.source(&root), None).await;

    let files: BTreeSet<String> = round
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::File)
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(files, expected);
    let unique: BTreeSet<&str> = round.items.iter().map(|i| i.id.as_str()).collect();
    assert!(
        round.items.len() > unique.len(),
        "duplicates were reported as they came"
    );
    assert!(
        round
            .pages
            .iter()
            .any(|p| p.items.is_empty() && matches!(p.next, NextPage::More(_))),
        "an empty page with a nextLink was followed"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn deleted_source_folder_answers_not_found() {
    let env = env().await;
    env.ctl.put_file(&env.drive, "/Gone/x.txt", "x").unwrap();
    let gone = env.ctl.item_by_path(&env.drive, "/Gone").unwrap();
    let source = env.source(&gone.id);
    let first = env.round(&source, None).await;
    env.ctl.delete(&env.drive, &gone.id).unwrap();

    let fresh = env.ds.changes(&env.tokens, &source, None).await;
    assert!(matches!(fresh, Err(DatasourceError::NotFound(_))), "{fresh:?}");
    let resumed = env
        .ds
        .changes(&env.tokens, &source, Some(&first.delta_link))
        .await;
    assert!(
        matches!(resumed, Err(DatasourceError::NotFound(_))),
        "{resumed:?}"
    );
    let item = env.ds.item(&env.tokens, &env.drive, &gone.id).await;
    assert!(matches!(item, Err(DatasourceError::NotFound(_))), "{item:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn a_source_that_became_forbidden_answers_not_found() {
    let env = env().await;
    let f = env.ctl.put_file(&env.drive, "/Secret/x.txt", "x").unwrap();
    env.ctl.add_fault(msgraph_emulator::FaultRule::new(
        "GET",
        "/v1.0/drives/*/items/*",
        msgraph_emulator::FaultAction::ServerError { status: 403 },
    ));
    let r = env.ds.item(&env.tokens, &env.drive, &f.id).await;
    assert!(matches!(r, Err(DatasourceError::NotFound(_))), "{r:?}");
    assert!(env.sleeper.waits().is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn a_cursor_pointing_at_another_origin_is_refused_without_sending_the_token() {
    let env = env().await;
    let source = SourceRef {
        drive_id: env.drive.clone(),
        item_id: "root".into(),
    };
    let r = env
        .ds
        .changes(
            &env.tokens,
            &source,
            Some("http://127.0.0.2:9/v1.0/drives/x/root/delta?token=abc"),
        )
        .await;
    assert!(matches!(r, Err(DatasourceError::Permanent(_))), "{r:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn item_metadata_carries_the_quick_xor_hash_and_parent() {
    let env = env().await;
    let f = env
        .ctl
        .put_file(&env.drive, "/Meta/report.pdf", noise(777, 9))
        .unwrap();
    let meta = env.ctl.item_by_path(&env.drive, "/Meta").unwrap();
    let item = env.ds.item(&env.tokens, &env.drive, &f.id).await.unwrap();
    assert_eq!(item.name.as_deref(), Some("report.pdf"));
    assert_eq!(item.kind, ItemKind::File);
    assert_eq!(item.parent_id.as_deref(), Some(meta.id.as_str()));
    assert_eq!(item.size, Some(777));
    assert_eq!(item.mime.as_deref(), Some("application/pdf"));
    assert_eq!(item.hash.unwrap().value, QuickXorHash::of(&noise(777, 9)));
    assert!(item.web_url.is_some() && item.modified_at.is_some());
    let root = env.ctl.drive(&env.drive).unwrap().root_id;
    let r = env.ds.item(&env.tokens, &env.drive, &root).await.unwrap();
    assert_eq!(r.kind, ItemKind::Root);
    env.shutdown().await;
}

#[tokio::test]
async fn delta_marks_the_roots_of_permission_hierarchies_and_items_whose_sharing_changed() {
    let env = env().await;
    let (ctl, d) = (&env.ctl, &env.drive);
    let plan = ctl.put_file(d, "/Team/plan.txt", "p").unwrap();
    let memo = ctl.put_file(d, "/Team/memo.txt", "m").unwrap();
    let team = ctl.item_by_path(d, "/Team").unwrap();
    let root = ctl.drive(d).unwrap().root_id;
    ctl.add_permission(
        d,
        &team.id,
        msgraph_emulator::PermissionSpec::link("view", "organization"),
    )
    .unwrap();
    let source = env.source(&root);
    let first = env.round(&source, None).await;
    let own = |round: &Round, id: &str| round.get(id).unwrap().sharing.own;
    assert!(own(&first, &root), "the drive root starts a hierarchy");
    assert!(own(&first, &team.id), "a folder with permissions of its own");
    assert!(!own(&first, &plan.id), "a file that inherits");
    assert!(first.items.iter().all(|i| !i.sharing.changed));

    let bob = ctl
        .create_user(msgraph_emulator::NewUser {
            display_name: "Bob".into(),
            ..Default::default()
        })
        .unwrap();
    ctl.add_permission(
        d,
        &plan.id,
        msgraph_emulator::PermissionSpec::user(&bob.id, &["read"]),
    )
    .unwrap();
    let second = env.round(&source, Some(&first.delta_link)).await;
    let p = second.get(&plan.id).expect("the re-shared file comes back");
    assert!(p.sharing.own && p.sharing.changed, "{:?}", p.sharing);
    assert!(second.get(&memo.id).is_none(), "its sibling did not change");
    let t = second.get(&team.id).expect("the parent hierarchy");
    assert!(!t.sharing.changed);

    ctl.set_permissions(d, &plan.id, Vec::new()).unwrap();
    let third = env.round(&source, Some(&second.delta_link)).await;
    let p = third.get(&plan.id).unwrap();
    assert!(
        p.sharing.own && p.sharing.changed,
        "sharing removed: read its permissions again ({:?})",
        p.sharing
    );
    env.shutdown().await;
}
