//! SharePoint site groups expand through SharePoint REST with an app-only token for the site's origin.

use std::sync::Arc;
use std::time::Duration;

use kbsync_core::datasource::{Datasource, DatasourceError, GroupMember, Principal};
use kbsync_core::{ManualClock, SeededRandom};
use kbsync_oauth::{AppOnlyConfig, AppOnlyTokens, ClientCertificate, ClientCredential, ClientSecret};
use msgraph_emulator::test_certificates::{APP_CERT_PEM, APP_KEY_PEM};
use msgraph_emulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, NewSite, NewUser, SiteInfo, UserInfo};

use crate::common::*;

fn app_tokens(env: &Env, credential: ClientCredential) -> AppOnlyTokens {
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
            credential,
            tenant: None,
            default_resource: "https://graph.microsoft.com".into(),
        },
        reqwest::Client::new(),
        Arc::new(ManualClock::new(env.ctl.now())),
        Arc::new(SeededRandom::new(5)),
        Duration::from_secs(10),
    )
}

fn certificate() -> ClientCredential {
    ClientCredential::Certificate(
        ClientCertificate::from_pem(APP_CERT_PEM.as_bytes(), APP_KEY_PEM.as_bytes()).unwrap(),
    )
}

fn site(env: &Env) -> SiteInfo {
    env.ctl
        .create_site(NewSite {
            display_name: "Engineering".into(),
            ..Default::default()
        })
        .unwrap()
}

fn user(env: &Env, name: &str, mail: &str) -> UserInfo {
    env.ctl
        .create_user(NewUser {
            display_name: name.into(),
            mail: Some(mail.into()),
            ..Default::default()
        })
        .unwrap()
}

fn site_group(site: &SiteInfo, id: &str) -> Principal {
    Principal::SiteGroup {
        site: site.drive_ids[0].clone(),
        id: id.into(),
        display_name: None,
    }
}

fn has_email(members: &[GroupMember], mail: &str) -> bool {
    members
        .iter()
        .any(|m| m.emails.iter().any(|e| e.eq_ignore_ascii_case(mail)))
}

#[tokio::test]
async fn a_site_groups_users_come_from_sharepoint_rest_with_a_certificate_app_token() {
    let env = env().await;
    let tokens = app_tokens(&env, certificate());
    let site = site(&env);
    let bob = user(&env, "Bob", "bob@contoso.onmicrosoft.com");
    let carol = user(&env, "Carol", "carol@contoso.onmicrosoft.com");
    env.ctl.add_site_group_member(&site.id, "5", &bob.id).unwrap();
    env.ctl.add_site_group_member(&site.id, "5", &carol.id).unwrap();

    let members = env
        .ds
        .group_members(&tokens, &site_group(&site, "5"))
        .await
        .unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(has_email(&members, "bob@contoso.onmicrosoft.com"));
    assert!(has_email(&members, "carol@contoso.onmicrosoft.com"));
    // Owners (3) holds the site's creator; Visitors (4) nobody.
    let owners = env
        .ds
        .group_members(&tokens, &site_group(&site, "3"))
        .await
        .unwrap();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert!(
        env.ds
            .group_members(&tokens, &site_group(&site, "4"))
            .await
            .unwrap()
            .is_empty()
    );
    // A group the site does not have.
    assert!(matches!(
        env.ds.group_members(&tokens, &site_group(&site, "99")).await,
        Err(DatasourceError::NotFound(_))
    ));
    env.emu.shutdown().await;
}

#[tokio::test]
async fn a_secret_based_app_connection_cannot_read_site_groups() {
    let env = env().await;
    let tokens = app_tokens(
        &env,
        ClientCredential::Secret(ClientSecret::new(DEFAULT_CLIENT_SECRET)),
    );
    let site = site(&env);
    let err = env
        .ds
        .group_members(&tokens, &site_group(&site, "3"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DatasourceError::NotFound(why) if why.contains("certificate")),
        "{err:?}"
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn a_drive_of_no_site_has_no_site_groups() {
    let env = env().await;
    let tokens = app_tokens(&env, certificate());
    let group = Principal::SiteGroup {
        site: env.drive.clone(),
        id: "3".into(),
        display_name: None,
    };
    assert!(matches!(
        env.ds.group_members(&tokens, &group).await,
        Err(DatasourceError::NotFound(_))
    ));
    env.emu.shutdown().await;
}

#[tokio::test]

async fn entra_groups_in_a_site_group_are_expanded_to_their_users() {
    let env = env().await;
    let tokens = app_tokens(&env, certificate());
    env.ctl
        .grant_app_roles(DEFAULT_CLIENT_ID, &["Sites.Read.All", "GroupMember.Read.All"])
        .unwrap();
    let site = site(&env);
    let dave = user(&env, "Dave", "dave@contoso.onmicrosoft.com");
    let group = "a5f3c1d2-0000-4000-8000-000000000042";
    env.ctl.add_group_member(group, &dave.id).unwrap();
    env.ctl.add_site_group_group(&site.id, "4", group).unwrap();
    let members = env
        .ds
        .group_members(&tokens, &site_group(&site, "4"))
        .await
        .unwrap();
    assert!(has_email(&members, "dave@contoso.onmicrosoft.com"), "{members:?}");
    env.emu.shutdown().await;
}
