//! `kbsync serve --demo`: a demo account and a knowledge base of generated sample documents of
//! every supported type, so that a fresh machine has something real to log in to and search, and
//! emulated OneDrive and Google Drive drives to connect knowledge bases to.

use std::convert::Infallible;

use bytes::Bytes;
use kbsync_core::datasource::DatasourceKind;
use kbsync_core::{OsRandom, Random, Role, User};
use kbsync_server::{AppState, service::documents, service::knowledge, service::users};
use kbsync_store::{Page, Reader, StoreError};

use crate::config::{GDriveSettings, OneDriveSettings, Settings};

/// How many files the emulated demo drive holds.
const DEMO_DRIVE_FILES: usize = 60;

/// The demo's emulated drives; they live as long as this value.
pub struct DemoEmulators {
    onedrive: msgraph_emulator::RunningEmulator,
    gdrive: gdrive_emulator::RunningEmulator,
}

impl DemoEmulators {
    /// Stops both emulators and waits for them.
    pub async fn shutdown(self) {
        self.onedrive.shutdown().await;
        self.gdrive.shutdown().await;
    }
}

/// Starts the Microsoft Graph and Google Drive emulators in-process, each with a generated drive,
/// and points the OneDrive and Google Drive datasources at them, so that connecting a knowledge
/// base works without a Microsoft or Google account. Consent is given automatically.
pub async fn start_emulators(settings: &mut Settings) -> anyhow::Result<DemoEmulators> {
    let onedrive = start_onedrive(settings).await?;
    let gdrive = start_gdrive(settings).await?;
    // The emulators reach kbsync on loopback, so change notifications work whatever the public
    // URL's scheme: on unless the environment turned them off.
    if std::env::var("KBSYNC_WEBHOOKS").map_or(true, |v| v.is_empty()) {
        settings.webhooks = true;
    }
    Ok(DemoEmulators { onedrive, gdrive })
}

async fn start_onedrive(settings: &mut Settings) -> anyhow::Result<msgraph_emulator::RunningEmulator> {
    let client_id = "kbsync-demo".to_owned();
    let client_secret = OsRandom.token_hex(24);
    let emulator = msgraph_emulator::Emulator::builder()
        .seed(7)
        .generate(DEMO_DRIVE_FILES)
        .auto_consent(true)
        .client(msgraph_emulator::ClientRegistration {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            redirect_uris: vec![settings.redirect_uri(DatasourceKind::OneDrive)],
            display_name: "kbsync demo".into(),
            spa: false,
        })
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("starting the demo OneDrive emulator: {e}"))?;
    settings.onedrive = Some(OneDriveSettings {
        client_id,
        client_secret: Some(client_secret),
        authorize_url: emulator.authorize_url(),
        token_url: emulator.token_url(),
        graph_url: emulator.graph_url().to_owned(),
        scopes: crate::config::DEFAULT_SCOPES
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        app_only: None,
    });
    println!(
        "demo: an emulated OneDrive with {DEMO_DRIVE_FILES} sample files runs at {}; create a knowledge base of type \
         \"onedrive\" and connect it (consent is automatic)",
        emulator.base_url()
    );
    Ok(emulator)
}

async fn start_gdrive(settings: &mut Settings) -> anyhow::Result<gdrive_emulator::RunningEmulator> {
    let client_id = "kbsync-demo.apps.googleusercontent.com".to_owned();
    let client_secret = format!("GOCSPX-{}", OsRandom.token_hex(24));
    let emulator = gdrive_emulator::Emulator::builder()
        .seed(7)
        .generate(DEMO_DRIVE_FILES)
        .auto_consent(true)
        .client(gdrive_emulator::ClientRegistration {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            redirect_uris: vec![settings.redirect_uri(DatasourceKind::GDrive)],
        })
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("starting the demo Google Drive emulator: {e}"))?;
    settings.gdrive = Some(GDriveSettings {
        client_id,
        client_secret: Some(client_secret),
        authorize_url: emulator.authorize_url(),
        token_url: emulator.token_url(),
        api_url: emulator.api_url(),
    });
    println!(
        "demo: an emulated Google Drive with {DEMO_DRIVE_FILES} sample files runs at {}; create a knowledge base of \
         type \"gdrive\" and connect it (consent is automatic)",
        emulator.base_url()
    );
    Ok(emulator)
}

pub const DEMO_EMAIL: &str = "demo@kbsync.local";
/// Deliberately public: the demo account exists only on machines started with `--demo`.
pub const DEMO_PASSWORD: &str = "kbsync-demo";
const DEMO_KB_NAME: &str = "Demo: sample documents";

/// Whether the database a URL names does not exist yet, so that opening it creates it: a SQLite
/// file that is not there (or an in-memory database). A PostgreSQL database is never new to us:
/// kbsync does not create it, and it may hold real accounts.
pub fn database_is_new(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return false;
    };
    let path = rest.trim_start_matches("//");
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    path.is_empty() || path == ":memory:" || !std::path::Path::new(path).exists()
}

/// Creates the demo user and knowledge base unless they exist, and prints how to use them. The
/// demo account's password is public, so it is created only in a database this start created
/// (`database_is_new`); an existing database gets none, and the log says so.
pub async fn seed(state: &AppState, database_is_new: bool) -> anyhow::Result<()> {
    let Some(user) = demo_user(state, database_is_new).await? else {
        tracing::warn!(
            user.email = DEMO_EMAIL,
            "--demo: not creating the demo account (its password is public) in a database this start did not \
             create; start with a fresh --data-dir (and no KBSYNC_DATABASE_URL) for the demo account and its documents"
        );
        return Ok(());
    };
    tracing::warn!(
        user.email = DEMO_EMAIL,
        "--demo: the admin account {DEMO_EMAIL} exists with the publicly known demo password; anyone who can \
         reach this server can sign in with it. Use --demo only on a throwaway data directory"
    );
    let existing = state
        .store
        .list_readable_kbs(
            Reader::User(user.id),
            Page {
                limit: 200,
                offset: 0,
            },
        )
        .await?;
    if !existing
        .items
        .iter()
        .any(|kb| kb.name == DEMO_KB_NAME && kb.owner_id == user.id)
    {
        let view = knowledge::create(
            state,
            &user,
            DEMO_KB_NAME,
            Some("Generated documents of every supported type, for trying out search."),
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the demo knowledge base: {e}"))?;
        for (name, bytes) in sample_documents() {
            let body = futures::stream::once(async move { Ok::<_, Infallible>(Bytes::from(bytes)) });
            documents::upload(state, &user, view.kb.id, Some(&name), None, body)
                .await
                .map_err(|e| anyhow::anyhow!("adding demo document {name}: {e}"))?;
        }
        tracing::info!(kb.id = %view.kb.id, "created the demo knowledge base");
    }
    println!(
        "demo: log in as {DEMO_EMAIL} / {DEMO_PASSWORD}, e.g.\n  \
         TOKEN=$(curl -s {url}/api/v1/auth/login -H 'content-type: application/json' \
         -d '{{\"email\":\"{DEMO_EMAIL}\",\"password\":\"{DEMO_PASSWORD}\"}}' | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" '{url}/api/v1/search?q=onboarding+checklist'",
        url = state.settings.public_url
    );
    Ok(())
}

/// The demo account: the one an earlier `--demo` start created in this database, or a new one
/// when the database is new; `None` otherwise.
async fn demo_user(state: &AppState, database_is_new: bool) -> anyhow::Result<Option<User>> {
    match state.store.get_credentials_by_email(DEMO_EMAIL).await {
        Ok(c) => Ok(Some(c.user)),
        Err(StoreError::NotFound) if database_is_new => users::create_user(
            state.store.as_ref(),
            state.random.as_ref(),
            state.clock.now(),
            DEMO_EMAIL,
            DEMO_PASSWORD,
            Role::Admin,
        )
        .await
        .map(Some)
        .map_err(|e| anyhow::anyhow!("creating the demo user: {e}")),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One document of each supported type, with text worth searching for.
fn sample_documents() -> Vec<(String, Vec<u8>)> {
    use kbsync_fixtures as fx;
    let prose = fx::text_corpus(42, 600);
    vec![
        (
            "Onboarding checklist.docx".into(),
            fx::docx(&[
                "Onboarding checklist for new engineers",
                "Day one: collect your laptop, sign the security policy and join the on-call rotation channel.",
                "Week one: pair with your buddy on a small change and ship it to production.",
            ]),
        ),
        (
            "Quarterly revenue.xlsx".into(),
            fx::xlsx(&[(
                "Revenue",
                vec![
                    vec!["Quarter".into(), "Region".into(), "Revenue (EUR)".into()],
                    vec!["Q1".into(), "North".into(), "125000".into()],
                    vec!["Q2".into(), "North".into(), "148500".into()],
                    vec!["Q1".into(), "South".into(), "98000".into()],
                ],
            )]),
        ),
        (
            "Product roadmap.pptx".into(),
            fx::pptx(&["Product roadmap 2027", "Milestone: Google Drive datasource", "Milestone: semantic search"]),
        ),
        (
            "Incident postmortem.pdf".into(),
            fx::pdf(&[
                "Incident postmortem: the search index fell behind during a database failover.",
                "Action items: alert on replication lag, rehearse the failover runbook every quarter.",
            ]),
        ),
        (
            "Travel policy.html".into(),
            fx::html(
                "Travel policy",
                &["Book trains for journeys under four hours.", "Expenses are reimbursed within ten working days."],
            )
            .into_bytes(),
        ),
        ("Meeting notes.md".into(), format!("# Weekly sync\n\n- Decided to adopt the onboarding checklist.\n\n{prose}\n").into_bytes()),
        ("Release notes.txt".into(), b"Release 1.4 adds incremental sync and faster full-text search.\n".to_vec()),
        ("Office locations.csv".into(), b"city,address\nBerlin,Alexanderplatz 1\nLisbon,Rua Augusta 10\n".to_vec()),
        ("Service catalogue.json".into(), br#"{"services":[{"name":"search","owner":"platform team"},{"name":"sync","owner":"data team"}]}"#.to_vec()),
        ("Glossary.xml".into(), b"<glossary><term name=\"delta query\">Asks a drive only for what changed since a cursor.</term></glossary>".to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::database_is_new;

    #[test]
    fn only_a_sqlite_file_that_is_not_there_yet_is_a_new_database() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("kbsync.sqlite");
        assert!(database_is_new(&format!("sqlite://{}", missing.display())));
        assert!(database_is_new(&format!("sqlite:{}?mode=rwc", missing.display())));
        assert!(database_is_new("sqlite::memory:"));
        std::fs::write(&missing, b"").unwrap();
        assert!(!database_is_new(&format!("sqlite://{}", missing.display())));
        assert!(!database_is_new(&format!(
            "sqlite://{}?mode=rwc",
            missing.display()
        )));
        assert!(!database_is_new("postgres://kbsync@127.0.0.1/kbsync"));
        assert!(!database_is_new("postgresql://kbsync@127.0.0.1/kbsync"));
    }
}
