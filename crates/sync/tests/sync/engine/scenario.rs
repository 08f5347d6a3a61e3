//! The access scenario, end to end against the emulated tenant: a drive whose folders and files
//! are shared in every way the source allows (a person, a nested group, an organisation link, a
//! link for specific people), synced from its root by the owner; then the sharing changes and
//! the results follow, for exactly one permission read per changed item.

use super::*;
use msgraph_emulator::{LinkUser, NewGroup};

kbsync_kit::on_both_databases!(each_person_finds_exactly_what_the_drive_shares_with_them_and_changes_follow,);

const GROUP_MEMBERS_ROUTE: &str = "/v1.0/groups/*/transitiveMembers*";

async fn each_person_finds_exactly_what_the_drive_shares_with_them_and_changes_follow(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/A/a.txt", "harbour notes for alice");
    env.put("/A/deep/a2.txt", "harbour details for alice");
    env.put("/B/b.txt", "harbour notes for bob");
    env.put("/C/c.txt", "harbour notes for the organisation");
    env.put("/D.txt", "harbour notes for carol");
    env.put("/E/e.txt", "harbour notes for nobody");
    let root = env.ctl.drive(&env.drive).unwrap().root_id;
    env.add_source(SourceKind::Folder, &root, "/").await;

    let alice = env.graph_user("Alice", "alice@contoso.com");
    let bob = env.graph_user("Bob", "bob@contoso.com");
    env.graph_user("Carol", "carol@contoso.com");
    let outer = env
        .ctl
        .create_group(NewGroup {
            id: None,
            display_name: "Planning".into(),
            mail: None,
        })
        .unwrap();
    let inner = env
        .ctl
        .create_group(NewGroup {
            id: None,
            display_name: "Planning core".into(),
            mail: None,
        })
        .unwrap();
    env.ctl.add_group_member_group(&outer.id, &inner.id).unwrap();
    env.ctl.add_group_member(&inner.id, &bob.id).unwrap();

    env.ctl
        .add_permission(
            &env.drive,
            &env.id("/A"),
            PermissionSpec::user(&alice.id, &["read"]),
        )
        .unwrap();
    env.ctl
        .add_permission(
            &env.drive,
            &env.id("/B"),
            PermissionSpec::Group {
                group_id: Some(outer.id.clone()),
                display_name: outer.display_name.clone(),
                email: None,
                roles: vec!["read".into()],
            },
        )
        .unwrap();
    env.ctl
        .add_permission(
            &env.drive,
            &env.id("/C"),
            PermissionSpec::link("view", "organization"),
        )
        .unwrap();
    env.ctl
        .add_permission(
            &env.drive,
            &env.id("/D.txt"),
            PermissionSpec::Link {
                link_type: "view".into(),
                scope: "users".into(),
                users: vec![LinkUser {
                    display_name: "Carol".into(),
                    email: Some("carol@contoso.com".into()),
                }],
                roles: vec!["read".into()],
                prevents_download: false,
            },
        )
        .unwrap();

    let alice_here = env.kbsync_user("alice@contoso.com").await;
    let bob_here = env.kbsync_user("Bob@Contoso.com").await;
    let carol_here = env.kbsync_user("carol@contoso.com").await;
    let stranger = env.kbsync_user("stranger@contoso.com").await;

    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(env.finds_as(alice_here, "harbour").await, ["a.txt", "a2.txt"]);
    assert_eq!(
        env.finds_as(bob_here, "harbour").await,
        ["b.txt"],
        "through a group inside a group"
    );
    assert_eq!(env.finds_as(carol_here, "harbour").await, ["D.txt"]);
    assert!(env.finds_as(stranger, "harbour").await.is_empty());
    assert_eq!(
        env.finds_as(env.owner, "harbour").await,
        ["D.txt", "a.txt", "a2.txt", "b.txt", "c.txt", "e.txt"]
    );

    // With link grants allowed, everyone in the tenant finds C too (and only C more).
    let allowing = env.engine_with(
        limits(),
        PermissionPolicy {
            link_grants: true,
            ..Default::default()
        },
    );
    env.store.forget_sharing_reads(None).await.unwrap();
    env.sync_on(&allowing).await;
    assert_eq!(env.finds_as(stranger, "harbour").await, ["c.txt"]);
    assert_eq!(
        env.finds_as(alice_here, "harbour").await,
        ["a.txt", "a2.txt", "c.txt"]
    );

    // The sharing changes: Bob leaves the inner group, A is no longer shared with Alice.
    assert!(env.ctl.remove_group_member(&inner.id, &bob.id));
    env.ctl
        .set_permissions(&env.drive, &env.id("/A"), Vec::new())
        .unwrap();
    env.ctl.clear_request_log();
    env.clock.advance(chrono::Duration::minutes(60));
    let summary = env.sync_on(&allowing).await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(
        env.count(PERMISSIONS_ROUTE),
        1,
        "one permission read, for the one item whose sharing changed"
    );
    assert_eq!(
        env.count(&format!("/v1.0/drives/*/items/{}/permissions", env.id("/A"))),
        1
    );
    assert_eq!(
        env.count(GROUP_MEMBERS_ROUTE),
        1,
        "the one group named, expanded once"
    );
    assert_eq!(env.content_requests(), 0, "nothing downloaded again");
    assert_eq!(env.finds_as(alice_here, "harbour").await, ["c.txt"]);
    assert_eq!(env.finds_as(bob_here, "harbour").await, ["c.txt"]);
    assert_eq!(env.finds_as(carol_here, "harbour").await, ["D.txt", "c.txt"]);
}
