//! The drives a scenario can sync, behind one trait: OneDrive on the Graph emulator and Google
//! Drive on the Drive emulator. A scenario written against [`Drive`] runs on both, so that their
//! figures are measured the same way (same files, same engine, same counting).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use kbsync_core::datasource::{AccessToken, Datasource, DatasourceKind, StaticToken};
use kbsync_core::{KbId, Source, SourceKind, SyncTrigger};
use kbsync_gdrive::{
    DRIVE_READONLY_SCOPE, GDriveConfig, GoogleDrive, TokioSleeper, USER_DRIVE, google_oauth,
};
use kbsync_store::{NewSource, Store};
use kbsync_sync::{RunSummary, SyncEngine};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::Graph;

/// Which datasource a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    OneDrive,
    GDrive,
}

/// Requests a run made, by what they were for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Requests {
    pub total: u64,
    /// Change-feed and listing pages: Graph delta pages; Drive `changes.list`,
    /// `changes.getStartPageToken` and `files.list`.
    pub listing: u64,
    /// Graph's `/content` (the 302 to the download URL); Drive has no such step.
    pub content: u64,
    /// Download bodies: Graph's download URL, Drive's `alt=media` and `files.export`.
    pub download: u64,
    pub permissions: u64,
    /// Drive's ancestor look-ups (`files.get` of a changed file's folders, to decide whether it
    /// lies under the source: Drive has no folder-scoped change feed).
    pub ancestors: u64,
    /// Everything else (item metadata).
    pub other: u64,
}

impl Requests {
    pub fn describe(&self) -> String {
        format!(
            "{} requests: {} listing/change pages, {} /content, {} download bodies, {} permissions, {} ancestor look-ups, {} other",
            self.total,
            self.listing,
            self.content,
            self.download,
            self.permissions,
            self.ancestors,
            self.other
        )
    }

    /// Floor of an incremental run: its listing pages, Drive's ancestor look-ups (one per folder
    /// of the changed files, which the feed does not carry) and the downloads of `changed` files.
    pub fn floor(&self, changed: u64, requests_per_download: u64) -> u64 {
        self.listing + self.ancestors + requests_per_download * changed
    }
}

/// A drive on an emulator, with a datasource pointed at it and a token for its default user.
#[async_trait]
pub trait Drive: Send + Sync {
    /// "OneDrive", "Google Drive".
    fn label(&self) -> &'static str;
    fn kind(&self) -> DatasourceKind;
    fn datasource(&self) -> &dyn Datasource;
    fn token(&self) -> StaticToken;
    /// The drive id and item id of the folder a whole-drive source syncs.
    fn root(&self) -> (String, String);
    /// Requests a download costs (Graph: `/content` and the download URL; Drive: one).
    fn requests_per_download(&self) -> u64;
    fn clear_requests(&self);
    fn requests(&self) -> Requests;
    /// Creates a file at `path` (folders made as needed); returns its id.
    fn put_file(&self, path: &str, bytes: Bytes) -> Result<String>;
    fn modify_file(&self, id: &str, bytes: Bytes) -> Result<()>;
    fn delete(&self, id: &str) -> Result<()>;
    fn rename(&self, id: &str, name: &str) -> Result<()>;
    /// Every file: (item id, path, size), in path order.
    fn list_files(&self) -> Result<Vec<(String, String, u64)>>;
    /// Fetches `files` with a plain concurrent HTTP client, `concurrency` at once, the way the
    /// service serves them (no processing): the network baseline. Returns (path, bytes).
    async fn fetch(
        &self,
        files: &[(String, String, u64)],
        concurrency: usize,
    ) -> Result<Vec<(String, Bytes)>>;
}

/// A knowledge base's source over the whole of `drive`.
pub async fn add_root_source(store: &Arc<dyn Store>, kb: KbId, drive: &dyn Drive) -> Result<Source> {
    let (drive_id, item_id) = drive.root();
    Ok(store
        .add_source(
            Uuid::new_v4(),
            NewSource {
                kb_id: kb,
                datasource: drive.kind(),
                kind: SourceKind::Folder,
                drive_id,
                item_id,
                name: "/".into(),
                path: "/".into(),
            },
            Utc::now(),
        )
        .await?)
}

/// One manual run of `kb` over `drive`, timed.
pub async fn sync(engine: &SyncEngine, drive: &dyn Drive, kb: KbId) -> Result<(RunSummary, Duration)> {
    let t = Instant::now();
    let summary = engine
        .run(
            Uuid::new_v4(),
            kb,
            drive.datasource(),
            &drive.token(),
            SyncTrigger::Manual,
            CancellationToken::new(),
        )
        .await?;
    Ok((summary, t.elapsed()))
}

#[async_trait]
impl Drive for Graph {
    fn label(&self) -> &'static str {
        "OneDrive"
    }

    fn kind(&self) -> DatasourceKind {
        DatasourceKind::OneDrive
    }

    fn datasource(&self) -> &dyn Datasource {
        self.ds.as_ref()
    }

    fn token(&self) -> StaticToken {
        StaticToken(self.token.clone())
    }

    fn root(&self) -> (String, String) {
        (self.drive.clone(), self.root.clone())
    }

    fn requests_per_download(&self) -> u64 {
        2
    }

    fn clear_requests(&self) {
        self.ctl.clear_request_log();
    }

    fn requests(&self) -> Requests {
        let mut r = Requests::default();
        for (route, n) in &self.ctl.request_counts().counts {
            r.total += n;
            if route.contains("delta") {
                r.listing += n;
            } else if route.ends_with("/content") {
                r.content += n;
            } else if route.contains("_download") {
                r.download += n;
            } else if route.contains("permissions") {
                r.permissions += n;
            } else {
                r.other += n;
            }
        }
        r
    }

    fn put_file(&self, path: &str, bytes: Bytes) -> Result<String> {
        Ok(self.ctl.put_file(&self.drive, path, bytes)?.id)
    }

    fn modify_file(&self, id: &str, bytes: Bytes) -> Result<()> {
        self.ctl.modify_file(&self.drive, id, bytes)?;
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<()> {
        Ok(self.ctl.delete(&self.drive, id)?)
    }

    fn rename(&self, id: &str, name: &str) -> Result<()> {
        self.ctl.rename(&self.drive, id, name)?;
        Ok(())
    }

    fn list_files(&self) -> Result<Vec<(String, String, u64)>> {
        self.files()
    }

    /// The Graph way: `/content` → 302 → the download URL.
    async fn fetch(
        &self,
        files: &[(String, String, u64)],
        concurrency: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let graph_url = self.emu.graph_url().trim_end_matches('/').to_owned();
        let base = self.emu.base_url().trim_end_matches('/').to_owned();
        futures::stream::iter(files.iter().cloned())
            .map(|(id, path, _)| {
                let (client, base) = (&client, &base);
                let url = format!("{graph_url}/drives/{}/items/{id}/content", self.drive);
                let token = self.token.secret().to_owned();
                async move {
                    let r = client.get(&url).bearer_auth(token).send().await?;
                    let location = r
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .context("no download URL in the /content answer")?
                        .to_owned();
                    let location = if location.starts_with('/') {
                        format!("{base}{location}")
                    } else {
                        location
                    };
                    let body = client
                        .get(&location)
                        .send()
                        .await?
                        .error_for_status()?
                        .bytes()
                        .await?;
                    anyhow::Ok((path, body))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await
    }
}

/// The Drive emulator and a Google Drive datasource with an access token for its default user,
/// whose My Drive the scenarios fill and sync.
pub struct GDrive {
    pub emu: gdrive_emulator::RunningEmulator,
    pub ctl: gdrive_emulator::Control,
    pub ds: Arc<GoogleDrive>,
    pub token: AccessToken,
    /// The default user's My Drive root folder.
    pub root: String,
    /// Folders made by [`Drive::put_file`], by path.
    folders: Mutex<HashMap<String, String>>,
}

impl GDrive {
    /// An emulator with an empty My Drive (`seed` decides its ids).
    pub async fn start(seed: u64) -> Result<GDrive> {
        let emu = gdrive_emulator::Emulator::builder()
            .seed(seed)
            .start()
            .await
            .context("starting the Drive emulator")?;
        let ctl = emu.control();
        let config = GDriveConfig {
            api_url: emu.api_url(),
            request_timeout: Duration::from_secs(60),
            ..GDriveConfig::default()
        };
        let http = config.http_client()?;
        let oauth = google_oauth(&emu.authorize_url(), &emu.token_url());
        let ds = Arc::new(GoogleDrive::new(config, oauth, http, Arc::new(TokioSleeper)));
        let token = AccessToken::new(
            ctl.mint_tokens(&ctl.default_user_id(), DRIVE_READONLY_SCOPE)?
                .access_token,
        );
        let root = ctl.root_id();
        Ok(GDrive {
            emu,
            ctl,
            ds,
            token,
            root: root.clone(),
            folders: Mutex::new(HashMap::from([(String::new(), root)])),
        })
    }

    /// The id of the folder at `path` (`/a/b`, `` for the root), made when missing.
    fn folder(&self, path: &str) -> Result<String> {
        let mut folders = self.folders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = folders.get(path) {
            return Ok(id.clone());
        }
        let mut at = String::new();
        let mut parent = self.root.clone();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            at = format!("{at}/{segment}");
            parent = match folders.get(&at) {
                Some(id) => id.clone(),
                None => {
                    let id = self.ctl.create_folder(&parent, segment)?;
                    folders.insert(at.clone(), id.clone());
                    id
                }
            };
        }
        Ok(parent)
    }
}

/// The emulator's paths start with the drive (`/My Drive/a/b.txt`); the scenarios' with `/`.
fn drive_relative(path: &str) -> String {
    path.strip_prefix("/My Drive").unwrap_or(path).to_owned()
}

#[async_trait]
impl Drive for GDrive {
    fn label(&self) -> &'static str {
        "Google Drive"
    }

    fn kind(&self) -> DatasourceKind {
        DatasourceKind::GDrive
    }

    fn datasource(&self) -> &dyn Datasource {
        self.ds.as_ref()
    }

    fn token(&self) -> StaticToken {
        StaticToken(self.token.clone())
    }

    fn root(&self) -> (String, String) {
        (USER_DRIVE.to_owned(), self.root.clone())
    }

    fn requests_per_download(&self) -> u64 {
        1
    }

    fn clear_requests(&self) {
        self.ctl.clear_traffic();
    }

    fn requests(&self) -> Requests {
        let mut r = Requests::default();
        for e in &self.ctl.traffic().entries {
            r.total += 1;
            let query = e.query.as_deref().unwrap_or_default();
            if e.route.contains("/changes") || e.route.ends_with("/files") {
                r.listing += 1;
            } else if e.route.ends_with("/export") || query.split('&').any(|p| p == "alt=media") {
                r.download += 1;
            } else if e.route.contains("/permissions") {
                r.permissions += 1;
            } else if query
                .split('&')
                .any(|p| p == "fields=id%2Cparents%2Ctrashed" || p == "fields=id,parents,trashed")
            {
                r.ancestors += 1;
            } else {
                r.other += 1;
            }
        }
        r
    }

    fn put_file(&self, path: &str, bytes: Bytes) -> Result<String> {
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = self.folder(folder)?;
        Ok(self.ctl.create_file(&parent, name, bytes)?)
    }

    fn modify_file(&self, id: &str, bytes: Bytes) -> Result<()> {
        Ok(self.ctl.update_content(id, bytes)?)
    }

    fn delete(&self, id: &str) -> Result<()> {
        Ok(self.ctl.delete(id)?)
    }

    fn rename(&self, id: &str, name: &str) -> Result<()> {
        Ok(self.ctl.rename(id, name)?)
    }

    fn list_files(&self) -> Result<Vec<(String, String, u64)>> {
        Ok(self
            .ctl
            .files()
            .into_iter()
            .filter(|f| {
                !f.trashed && f.mime_type != gdrive_emulator::FOLDER && f.path.starts_with("/My Drive/")
            })
            .map(|f| (f.id, drive_relative(&f.path), f.size.unwrap_or(0)))
            .collect())
    }

    /// The Drive way: `files.get?alt=media`, one request per file.
    async fn fetch(
        &self,
        files: &[(String, String, u64)],
        concurrency: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let api = self.emu.api_url();
        futures::stream::iter(files.iter().cloned())
            .map(|(id, path, _)| {
                let client = &client;
                let url = format!("{api}/files/{id}?alt=media&supportsAllDrives=true");
                let token = self.token.secret().to_owned();
                async move {
                    let body = client
                        .get(&url)
                        .bearer_auth(token)
                        .send()
                        .await?
                        .error_for_status()?
                        .bytes()
                        .await?;
                    anyhow::Ok((path, body))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await
    }
}
