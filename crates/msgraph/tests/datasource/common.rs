//! The harness: an in-process emulator on port 0, a [`OneDrive`] pointed at it, a sleeper that
//! records instead of sleeping, and the kit's token datasource that counts refreshes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kbsync_core::SeededRandom;
use kbsync_core::datasource::{
    ByteStream, ChangePage, Datasource, DatasourceError, NextPage, RemoteItem, SourceRef,
};
pub use kbsync_kit::emulator::TestTokens;
use kbsync_msgraph::{GraphConfig, OneDrive, Sleeper};
use msgraph_emulator::{Control, EmulatorBuilder, RunningEmulator};

/// An emulator whose answers the tests can assert exactly (frozen clock, plain delta).
pub fn builder() -> EmulatorBuilder {
    kbsync_kit::emulator::exact_emulator(11)
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

pub struct Env {
    pub emu: RunningEmulator,
    pub ctl: Control,
    pub ds: OneDrive,
    pub sleeper: Arc<RecordingSleeper>,
    pub tokens: TestTokens,
    pub drive: String,
    pub user: String,
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
    let mut config = kbsync_kit::emulator::graph_config(&emu);
    tweak(&mut config);
    let sleeper = Arc::new(RecordingSleeper::default());
    let ds = kbsync_kit::emulator::onedrive(&emu, config, sleeper.clone())
        .with_random(Arc::new(SeededRandom::new(3)));
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
