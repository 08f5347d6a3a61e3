//! The harness: a scripted Drive on port 0, a [`GoogleDrive`] pointed at it, a sleeper that
//! records instead of sleeping, and a token source that counts refreshes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kbsync_core::SeededRandom;
use kbsync_core::datasource::{
    AccessToken, ByteStream, ChangePage, Datasource, DatasourceError, NextPage, RemoteItem, SourceRef,
    TokenSource,
};
use kbsync_gdrive::{GDriveConfig, GoogleDrive, Sleeper, USER_DRIVE, google_oauth};

pub use crate::fake::*;

/// Records every wait asked for and returns at once.
#[derive(Debug, Default)]
pub struct RecordingSleeper {
    waits: Mutex<Vec<Duration>>,
}

impl RecordingSleeper {
    pub fn waits(&self) -> Vec<Duration> {
        self.waits.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, d: Duration) {
        self.waits.lock().unwrap().push(d);
        tokio::task::yield_now().await;
    }
}

/// Hands out `token-1`; a refresh hands out `token-{n+1}` (which the fake may or may not accept).
#[derive(Debug, Default)]
pub struct Tokens {
    pub refreshes: AtomicUsize,
}

#[async_trait]
impl TokenSource for Tokens {
    async fn access_token(&self) -> Result<AccessToken, DatasourceError> {
        Ok(AccessToken::new(format!(
            "token-{}",
            self.refreshes.load(Ordering::SeqCst) + 1
        )))
    }

    async fn refresh(&self, _rejected: &AccessToken) -> Result<AccessToken, DatasourceError> {
        let n = self.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(AccessToken::new(format!("token-{}", n + 1)))
    }
}

pub struct Env {
    pub fake: Fake,
    pub ds: GoogleDrive,
    pub sleeper: Arc<RecordingSleeper>,
    pub tokens: Tokens,
}

pub async fn env() -> Env {
    env_config(|_| {}).await
}

pub async fn env_config(tweak: impl FnOnce(&mut GDriveConfig)) -> Env {
    let fake = Fake::start().await;
    let mut config = GDriveConfig {
        api_url: fake.url.clone(),
        request_timeout: Duration::from_secs(10),
        ..GDriveConfig::default()
    };
    tweak(&mut config);
    let sleeper = Arc::new(RecordingSleeper::default());
    let http = config.http_client().unwrap();
    let ds = GoogleDrive::new(
        config,
        google_oauth("http://127.0.0.1:1/auth", "http://127.0.0.1:1/token"),
        http,
        sleeper.clone(),
    )
    .with_random(Arc::new(SeededRandom::new(3)));
    Env {
        fake,
        ds,
        sleeper,
        tokens: Tokens::default(),
    }
}

impl Env {
    pub fn my_source(&self, folder: &str) -> SourceRef {
        SourceRef {
            drive_id: USER_DRIVE.into(),
            item_id: folder.into(),
        }
    }

    /// Follows a round to its end: every item of every page, the pages, and the final cursor.
    pub async fn round(&self, source: &SourceRef, cursor: Option<&str>) -> Round {
        let mut pages = Vec::new();
        let mut cursor = cursor.map(str::to_string);
        for _ in 0..1000 {
            let page = self
                .ds
                .changes(&self.tokens, source, cursor.as_deref())
                .await
                .unwrap();
            let next = page.next.clone();
            pages.push(page);
            match next {
                NextPage::More(c) => cursor = Some(c),
                NextPage::Done(c) => {
                    return Round {
                        items: pages.iter().flat_map(|p| p.items.clone()).collect(),
                        pages,
                        cursor: c,
                    };
                }
            }
        }
        panic!("the round never ended");
    }

    pub fn shutdown(self) {
        self.fake.shutdown();
    }
}

pub struct Round {
    pub items: Vec<RemoteItem>,
    pub pages: Vec<ChangePage>,
    pub cursor: String,
}

impl Round {
    /// The last occurrence of an item.
    pub fn get(&self, id: &str) -> Option<&RemoteItem> {
        self.items.iter().rev().find(|i| i.id == id)
    }

    /// The ids of the items that are not tombstones, sorted, each once.
    pub fn live(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .items
            .iter()
            .filter(|i| !self.get(&i.id).unwrap().deleted)
            .map(|i| i.id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The ids of the tombstones, sorted, each once.
    pub fn gone(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .items
            .iter()
            .filter(|i| self.get(&i.id).unwrap().deleted)
            .map(|i| i.id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Drains a download: the bytes that arrived, and the error that ended it, if any.
pub async fn drain(mut stream: ByteStream) -> (Vec<u8>, Option<DatasourceError>) {
    let mut bytes = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(e) => {
                assert!(stream.next().await.is_none(), "an error is the last item");
                return (bytes, Some(e));
            }
        }
    }
    (bytes, None)
}
