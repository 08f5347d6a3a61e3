//! The harness: an in-process emulator on port 0, a [`OneDrive`] pointed at it, a sleeper that
//! records instead of sleeping, and a token source that counts refreshes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kbsync_core::SeededRandom;
use kbsync_core::datasource::{
    AccessToken, ByteStream, ChangePage, Datasource, DatasourceError, NextPage, RemoteItem, SourceRef,
    TokenSource,
};
use kbsync_msgraph::{GraphConfig, OneDrive, Sleeper, microsoft_oauth};
use msgraph_emulator::{Control, DeltaBehaviour, Emulator, EmulatorBuilder, RunningEmulator};

pub const START: &str = "2025-03-01T09:00:00Z";

pub fn start_time() -> DateTime<Utc> {
    START.parse().unwrap()
}

/// A frozen emulator clock and plain delta (no reordering, no duplicates) so tests can be exact.
pub fn builder() -> EmulatorBuilder {
    Emulator::builder()
        .seed(11)
        .frozen_clock(true)
        .start_time(start_time())
        .delta_behaviour(DeltaBehaviour {
            children_first_probability: 0.0,
            duplicate_probability: 0.0,
            ..DeltaBehaviour::default()
        })
}

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

/// Tokens minted by the emulator; a refresh mints a new one (unless refreshing is disabled).
pub struct TestTokens {
    ctl: Control,
    user: String,
    current: Mutex<AccessToken>,
    refreshes: AtomicUsize,
    can_refresh: bool,
}

impl TestTokens {
    pub fn new(ctl: &Control, user: &str) -> Self {
        let token = ctl
            .mint_access_token(user, &["Files.Read.All", "Sites.Read.All"])
            .unwrap();
        Self {
            ctl: ctl.clone(),
            user: user.to_string(),
            current: Mutex::new(AccessToken::new(token)),
            refreshes: AtomicUsize::new(0),
            can_refresh: true,
        }
    }

    /// A token that lives `secs` seconds of emulator time.
    pub fn short_lived(ctl: &Control, user: &str, secs: i64) -> Self {
        let t = Self::new(ctl, user);
        let token = ctl
            .mint_access_token_for(user, &["Files.Read.All"], chrono::Duration::seconds(secs))
            .unwrap();
        *t.current.lock().unwrap() = AccessToken::new(token);
        t
    }

    pub fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenSource for TestTokens {
    async fn access_token(&self) -> Result<AccessToken, DatasourceError> {
        Ok(self.current.lock().unwrap().clone())
    }

    async fn refresh(&self, rejected: &AccessToken) -> Result<AccessToken, DatasourceError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        if !self.can_refresh {
            return Err(DatasourceError::Unauthorized("cannot refresh".into()));
        }
        let fresh = AccessToken::new(
            self.ctl
                .mint_access_token(&self.user, &["Files.Read.All", "Sites.Read.All"])
                .unwrap(),
        );
        assert_ne!(&fresh, rejected);
        *self.current.lock().unwrap() = fresh.clone();
        Ok(fresh)
    }
}

pub struct Env {
    pub emu: RunningEmulator,
    pub ctl: Control,
    pub ds: OneDrive,
    pub sleeper: Arc<RecordingSleeper>,
    pub tokens: TestTokens,
    pub drive: String,
    pub user: String,
}

pub fn config_for(emu: &RunningEmulator) -> GraphConfig {
    GraphConfig {
        graph_url: emu.graph_url().to_string(),
        request_timeout: Duration::from_secs(10),
        ..GraphConfig::default()
    }
}

pub async fn env() -> Env {
    env_with(builder(), |_| {}).await
}

pub async fn env_config(tweak: impl FnOnce(&mut GraphConfig)) -> Env {
    env_with(builder(), tweak).await
}

pub async fn env_with(b: EmulatorBuilder, tweak: impl FnOnce(&mut GraphConfig)) -> Env {
    let emu = b.start().await.unwrap();
    let ctl = emu.control();
    let mut config = config_for(&emu);
    tweak(&mut config);
    let sleeper = Arc::new(RecordingSleeper::default());
    let http = config.http_client().unwrap();
    let oauth = microsoft_oauth(emu.base_url(), &ctl.tenant_id(), vec!["Files.Read.All".into()]);
    let ds = OneDrive::new(config, oauth, http, sleeper.clone()).with_random(Arc::new(SeededRandom::new(3)));
    let user = ctl.default_user_id();
    let tokens = TestTokens::new(&ctl, &user);
    let drive = ctl.default_drive_id();
    Env {
        emu,
        ctl,
        ds,
        sleeper,
        tokens,
        drive,
        user,
    }
}

impl Env {
    pub fn source(&self, item_id: &str) -> SourceRef {
        SourceRef {
            drive_id: self.drive.clone(),
            item_id: item_id.to_string(),
        }
    }

    /// Follows a delta round to its end: every item of every page, the pages, and the deltaLink.
    pub async fn round(&self, source: &SourceRef, cursor: Option<&str>) -> Round {
        let mut pages = Vec::new();
        let mut cursor = cursor.map(str::to_string);
        for _ in 0..10_000 {
            let page = self
                .ds
                .changes(&self.tokens, source, cursor.as_deref())
                .await
                .unwrap();
            let next = page.next.clone();
            pages.push(page);
            match next {
                NextPage::More(link) => cursor = Some(link),
                NextPage::Done(link) => {
                    return Round {
                        items: pages.iter().flat_map(|p| p.items.clone()).collect(),
                        pages,
                        delta_link: link,
                    };
                }
            }
        }
        panic!("the delta round never ended");
    }

    pub async fn shutdown(self) {
        self.emu.shutdown().await;
    }
}

pub struct Round {
    pub items: Vec<RemoteItem>,
    pub pages: Vec<ChangePage>,
    pub delta_link: String,
}

impl Round {
    /// The last occurrence of an item (Graph: "use the last occurrence you see").
    pub fn get(&self, id: &str) -> Option<&RemoteItem> {
        self.items.iter().rev().find(|i| i.id == id)
    }

    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.items.iter().filter_map(|i| i.name.clone()).collect();
        n.sort();
        n.dedup();
        n
    }
}

/// Drains a download: the bytes that arrived, and the error that ended it, if any.
pub async fn drain(mut stream: ByteStream) -> (Vec<u8>, Option<DatasourceError>, usize) {
    let mut bytes = Vec::new();
    let mut chunks = 0;
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                chunks += 1;
                bytes.extend_from_slice(&chunk);
            }
            Err(e) => {
                assert!(stream.next().await.is_none(), "an error is the last item");
                return (bytes, Some(e), chunks);
            }
        }
    }
    (bytes, None, chunks)
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
