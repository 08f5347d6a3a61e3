//! The access scenario, end to end against the emulated tenant: a drive whose folders and files
//! are shared in every way the source allows (a person, a nested group, an organisation link, a
//! link for specific people), synced from its root by the owner, and a SharePoint library whose
//! site group holds another person, synced through the organisation's app (app-only); then the
//! sharing changes and the results follow, for exactly one permission read per changed item.

use super::*;
use kbsync_oauth::{AppOnlyConfig, AppOnlyTokens, ClientCertificate, ClientCredential};
use msgraph_emulator::test_certificates::{APP_CERT_PEM, APP_KEY_PEM};
use msgraph_emulator::{DEFAULT_CLIENT_ID, LinkUser, NewGroup, NewSite};

/// The organisation's app, signing in with its certificate, allowed to read every site.
fn app_only(env: &Env) -> AppOnlyTokens {
    env.ctl
        .grant_app_roles(DEFAULT_CLIENT_ID, &["Sites.Read.All"])
        .unwrap();
    env.ctl
        .add_client_certificate(DEFAULT_CLIENT_ID, APP_CERT_PEM.as_bytes())
        .unwrap();
    AppOnlyTokens::new(
        AppOnlyConfig {
            client_id: DEFAULT_CLIENT_ID.into(),
            token_url: env.emu.token_url(),
            credential: ClientCredential::Certificate(
                ClientCertificate::from_pem(APP_CERT_PEM.as_bytes(), APP_KEY_PEM.as_bytes()).unwrap(),
            ),
            tenant: None,
            default_resource: "https://graph.microsoft.com".into(),
        },
        reqwest::Client::new(),
        env.clock.clone(),
        env.random.clone(),
        Duration::from_secs(10),
    )
}

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

    // A SharePoint library whose Members site group holds Dave, synced app-only into another
    // knowledge base of the same owner.
    let site = env
        .ctl
        .create_site(NewSite {
            display_name: "Sales".into(),
            ..Default::default()
        })
        .unwrap();
    let library = site.drive_ids[0].clone();
    env.ctl
        .put_file(
            &library,
            "/pipeline.txt",
            "harbour notes for the sales site".to_owned(),
        )
        .unwrap();
    let dave = env.graph_user("Dave", "dave@contoso.com");
    env.ctl.add_site_group_member(&site.id, "5", &dave.id).unwrap();
    let dave_here = env.kbsync_user("dave@contoso.com").await;
    let sales_kb = kbsync_kit::fixtures::kb(
        env.store.as_ref(),
        env.owner,
        "sales",
        KbType::OneDrive,
        env.ctl.now(),
    )
    .await;
    let library_root = env.ctl.drive(&library).unwrap().root_id;
    env.store
        .add_source(
            Uuid::new_v4(),
            kbsync_kit::fixtures::onedrive_source(sales_kb, SourceKind::Folder, &library, &library_root, "/"),
            env.clock.now(),
        )
        .await
        .unwrap();
    let app = app_only(&env);
    let summary = env
        .engine
        .run(
            Uuid::new_v4(),
            sales_kb,
            &env.ds,
            &app,
            SyncTrigger::Manual,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(
        env.finds_as(dave_here, "harbour").await,
        ["pipeline.txt"],
        "through the site group"
    );

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
        [
            "D.txt",
            "a.txt",
            "a2.txt",
            "b.txt",
            "c.txt",
            "e.txt",
            "pipeline.txt"
        ]
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
    assert_eq!(
        env.finds_as(dave_here, "harbour").await,
        ["c.txt", "pipeline.txt"]
    );
}
