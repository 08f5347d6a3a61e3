//! Scenario 10: load. A whole kbsync serves on loopback (as in scenario 9) and syncs a generated
//! drive twice, each time into a fresh database: once with nobody else on the server, then while
//! 100 API clients (real sockets, each its own connection pool) sign in as real users or with
//! API keys and loop over searches, paged file lists and file downloads, and a share of them hold
//! the sync's event stream (SSE) open and read its events as they come. Every request's latency
//! and every error is recorded; any error (a non-2xx answer, a transport error, a wrong answer, an
//! event stream that ends before the run's `finished` event) fails the scenario.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use futures::StreamExt;
use kbsync_core::datasource::{Datasource, DatasourceKind};
use kbsync_core::{ConnectionCredentials, KbId, KbType, OsRandom, Role, StoredAccessToken, SystemClock};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_oauth::ConnectionManager;
use kbsync_server::{AppState, Datasources, ServerSettings};
use kbsync_store::{BlobStore, NewConnection, NewKnowledgeBase, TokenCipher};
use kbsync_sync::{SyncRuntime, SyncSettings};
use msgraph_emulator::Emulator;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Block, Db, Graph, add_folder, limits, pg_url, quantile};

/// The sizes: a 10,000-file sync and 100 clients.
const FILES: usize = 10_000;
const CLIENTS: usize = 100;
/// `--small` (CI): the same shape, a few seconds per database in a debug build.
const SMALL_FILES: usize = 150;
const SMALL_CLIENTS: usize = 20;
/// One client in this many holds an event stream instead of looping over requests.
const SSE_EVERY: usize = 10;
/// The accounts the clients act as (readers of the knowledge base by a manual grant); every other
/// client signs in with a password, the others use a read-only API key of their own.
const READERS: usize = 4;
const PASSWORD: &str = "load-test-password-1";
/// Words in most generated documents (see `kbsync_fixtures::text_corpus`).
const ONE_WORD: &[&str] = &["report", "budget", "project", "customer", "security"];
const TWO_WORDS: &[&str] = &[
    "quarter review",
    "project deadline",
    "customer contract",
    "market growth",
    "storage backup",
];
/// Documents per page of the file list.
const PAGE: u64 = 50;

/// What a client does, one request at a time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    SearchOneWord,
    SearchTwoWords,
    ListFiles,
    FileContent,
    /// An event stream, from the request to its first event.
    SseOpen,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::SearchOneWord => "search, one word",
            Kind::SearchTwoWords => "search, two words",
            Kind::ListFiles => "list files (page of 50)",
            Kind::FileContent => "file content",
            Kind::SseOpen => "event stream: first event",
        }
    }
}

const LOOPED: [Kind; 4] = [
    Kind::SearchOneWord,
    Kind::SearchTwoWords,
    Kind::ListFiles,
    Kind::FileContent,
];

pub async fn run(small: bool, files: Option<usize>, clients: Option<usize>) -> Result<()> {
    let (files, clients) = if small {
        (files.unwrap_or(SMALL_FILES), clients.unwrap_or(SMALL_CLIENTS))
    } else {
        (files.unwrap_or(FILES), clients.unwrap_or(CLIENTS))
    };
    let t = Instant::now();
    let g = Graph::start(Emulator::builder().seed(10).generate(files), |_| {}).await?;
    let drive_files = g.files()?.len();
    println!(
        "  (emulator with {drive_files} generated files started in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let mut databases: Vec<&str> = vec!["sqlite"];
    match pg_url() {
        Some(_) => databases.push("postgres"),
        None => println!("  (PostgreSQL skipped: set KBSYNC_BENCH_DATABASE_URL or KBSYNC_TEST_DATABASE_URL)"),
    }
    let mut failed = Vec::new();
    for which in databases {
        let baseline = {
            let db = fresh(which).await?;
            let k = Kbsync::start(&db, &g, drive_files).await?;
            let run = k.sync(None).await?;
            k.stop().await?;
            run
        };
        let db = fresh(which).await?;
        let k = Kbsync::start(&db, &g, drive_files).await?;
        let load = Load::start(&k, clients).await?;
        let loaded = k.sync(Some(&load)).await?;
        let report = load.finish(loaded.run_id).await?;
        let listed = k.listed_files().await?;
        k.stop().await?;

        let mut b = Block::new(format!(
            "10. load on {}: a {drive_files}-file sync while {clients} API clients ({} holding event streams) work",
            db.label,
            clients / SSE_EVERY
        ));
        b.line(format!(
            "sync without clients: {:.1} s ({}); with clients: {:.1} s ({}); ratio {:.2}x",
            baseline.secs,
            baseline.outcome,
            loaded.secs,
            loaded.outcome,
            loaded.secs / baseline.secs
        ));
        b.line(format!(
            "clients: {} signed in with a password, {} with a read-only API key, as {READERS} readers (manual grant)",
            clients.div_ceil(2),
            clients / 2
        ));
        for (kind, latencies) in &report.latencies {
            let mut ms: Vec<f64> = latencies.iter().map(|d| d * 1e3).collect();
            ms.sort_by(f64::total_cmp);
            b.line(format!(
                "{:<27} n = {:>6}  p50 {:>7.1} ms  p95 {:>7.1} ms  p99 {:>7.1} ms  max {:>8.1} ms",
                kind.label(),
                ms.len(),
                quantile(&ms, 0.5),
                quantile(&ms, 0.95),
                quantile(&ms, 0.99),
                ms.last().copied().unwrap_or(f64::NAN)
            ));
        }
        b.line(format!(
            "event streams: {} events read, {} of {} saw the run's `finished` event",
            report.sse_events, report.sse_finished, report.sse_streams
        ));
        b.line(format!(
            "after the run: {listed} files listed (without clients: {})",
            baseline.listed
        ));
        let same = loaded.outcome == baseline.outcome && listed == baseline.listed;
        b.target(
            "the same outcome as without clients",
            if same { "same" } else { "different" },
            "same",
            same,
        );
        b.target(
            "errors",
            report.errors.len().to_string(),
            "0",
            report.errors.is_empty(),
        );
        for e in report.errors.iter().take(10) {
            b.line(format!("error: {e}"));
        }
        b.print();
        if !report.errors.is_empty() || !same {
            failed.push(db.label);
        }
    }
    g.emu.shutdown().await;
    if !failed.is_empty() {
        bail!(
            "load: errors or a different outcome under load on {}",
            failed.join(", ")
        );
    }
    Ok(())
}

async fn fresh(which: &str) -> Result<Db> {
    match (which, pg_url()) {
        ("postgres", Some(url)) => Db::postgres(&url).await,
        _ => Db::sqlite().await,
    }
}

/// A finished sync run as the scenario reports it.
struct Run {
    run_id: Uuid,
    secs: f64,
    outcome: String,
    /// The documents the owner's file list counts once the run is over.
    listed: u64,
}

/// A kbsync server on loopback over a fresh store, without a scheduler (the scenario starts the
/// runs itself, through the API), with one OneDrive knowledge base syncing the emulated drive's
/// root over a stored connection (as in scenario 9), and its owner signed in.
struct Kbsync {
    state: AppState,
    base: String,
    kb: KbId,
    /// The owner's session token.
    owner_token: String,
    http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _blobs: tempfile::TempDir,
}

impl Kbsync {
    async fn start(db: &Db, g: &Graph, drive_files: usize) -> Result<Kbsync> {
        let store = db.store.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let clock: Arc<dyn kbsync_core::Clock> = Arc::new(SystemClock);
        let random: Arc<dyn kbsync_core::Random> = Arc::new(OsRandom);

        let owner = kbsync_server::service::users::create_user(
            store.as_ref(),
            random.as_ref(),
            Utc::now(),
            "owner@load.example",
            PASSWORD,
            Role::User,
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the owner: {e}"))?;
        let kb = Uuid::new_v4();
        store
            .create_kb(
                kb,
                NewKnowledgeBase {
                    name: "load".into(),
                    description: String::new(),
                    owner_id: owner.id,
                    kb_type: KbType::OneDrive,
                },
                Utc::now(),
            )
            .await?;
        add_folder(&store, kb, &g.drive, &g.root, "/").await?;
        let cipher = TokenCipher::new("kbsync-bench-secret", None)?;
        let now = Utc::now();
        store
            .upsert_connection(
                NewConnection {
                    kb_id: kb,
                    datasource: DatasourceKind::OneDrive,
                    credentials: ConnectionCredentials::Delegated,
                    // Never used: the access token lasts the whole run.
                    refresh_token: Some(cipher.encrypt("bench-refresh-token")),
                    access_token: Some(StoredAccessToken {
                        token: cipher.encrypt(g.token.secret()),
                        expires_at: now + chrono::Duration::hours(24),
                    }),
                    tenant: None,
                },
                now,
            )
            .await?;

        let datasources = Datasources::new(
            ConnectionManager::new(
                store.clone(),
                reqwest::Client::new(),
                cipher,
                clock.clone(),
                random.clone(),
                Vec::new(),
            ),
            vec![g.ds.clone() as Arc<dyn Datasource>],
        );
        let blobs = tempfile::tempdir()?;
        let blob_store = BlobStore::new(blobs.path());
        let extractor = Extractor::new(IngestConfig::default());
        let sync = SyncRuntime::new(
            store.clone(),
            blob_store.clone(),
            extractor.clone(),
            clock.clone(),
            random.clone(),
            Arc::new(datasources.clone()),
            SyncSettings {
                limits: limits(2 * drive_files as u64),
                scheduler: None,
                ..SyncSettings::default()
            },
        );
        let state = AppState::new(
            store,
            blob_store,
            extractor,
            datasources,
            sync,
            clock,
            random,
            ServerSettings {
                public_url: base.clone(),
                ..ServerSettings::default()
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let task = tokio::spawn(async move {
            kbsync_server::serve(listener, served, async move {
                let _ = stopped.await;
            })
            .await
        });
        let http = reqwest::Client::new();
        let owner_token = login(&http, &base, "owner@load.example").await?;
        Ok(Kbsync {
            state,
            base,
            kb,
            owner_token,
            http,
            stop,
            task,
            _blobs: blobs,
        })
    }

    /// Starts a run through the API as the owner and waits for it to finish.
    async fn sync(&self, load: Option<&Load>) -> Result<Run> {
        let started = self
            .http
            .post(format!("{}/api/v1/knowledge/{}/sync", self.base, self.kb))
            .bearer_auth(&self.owner_token)
            .send()
            .await?;
        let answer: Value = ok(started, "starting the sync").await?.json().await?;
        let run_id: Uuid = answer["run_id"]
            .as_str()
            .context("no run_id in the answer to POST …/sync")?
            .parse()?;
        // Generous: a debug build of the full size takes minutes, more under load.
        let deadline = Instant::now() + Duration::from_secs(3 * 3_600);
        let run = loop {
            let runs = self.state.store.list_sync_runs(self.kb, 5).await?;
            if let Some(run) = runs
                .into_iter()
                .find(|r| r.id == run_id && r.finished_at.is_some())
            {
                break run;
            }
            if Instant::now() >= deadline {
                bail!("timed out waiting for the sync run to finish");
            }
            if let Some(load) = load
                && load.stopped_early()
            {
                bail!("a client task ended before the run did");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let secs = run
            .finished_at
            .map_or(f64::NAN, |f| (f - run.started_at).num_milliseconds() as f64 / 1e3);
        let o = &run.outcome;
        let outcome = format!(
            "{}: processed {}, failed {}, skipped {}",
            o.status, o.processed, o.failed, o.skipped
        );
        Ok(Run {
            run_id,
            secs,
            outcome,
            listed: self.listed_files().await?,
        })
    }

    /// The number of documents the owner's file list counts.
    async fn listed_files(&self) -> Result<u64> {
        let r = self
            .http
            .get(format!(
                "{}/api/v1/knowledge/{}/files?limit=1",
                self.base, self.kb
            ))
            .bearer_auth(&self.owner_token)
            .send()
            .await?;
        let page: Value = ok(r, "listing the files").await?.json().await?;
        page["total"].as_u64().context("no total in the file list")
    }

    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("the server task")??;
        Ok(())
    }
}

/// `POST /auth/login`; the session token.
async fn login(http: &reqwest::Client, base: &str, email: &str) -> Result<String> {
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await?;
    let body: Value = ok(r, "signing in").await?.json().await?;
    Ok(body["token"]
        .as_str()
        .context("no token in the sign-in answer")?
        .to_owned())
}

/// The answer when it is a success; otherwise an error naming `what`, the status and the body.
async fn ok(r: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    bail!("{what}: {status}: {}", body.chars().take(300).collect::<String>())
}

/// What every client shares: the server, the knowledge base, the documents the lists showed
/// processed (to download), and when to stop.
struct Shared {
    base: String,
    kb: KbId,
    /// Processed documents seen so far: (id, size), each once.
    indexed: Mutex<Indexed>,
    /// The file list's total, as last answered.
    listed: AtomicU64,
    /// The run is over: looping clients stop after the request in hand.
    stop: CancellationToken,
}

#[derive(Default)]
struct Indexed {
    ids: HashSet<Uuid>,
    docs: Vec<(Uuid, u64)>,
}

/// The clients at work.
struct Load {
    shared: Arc<Shared>,
    /// The looping clients, then the event streams.
    looping: Vec<tokio::task::JoinHandle<ClientReport>>,
    streams: Vec<tokio::task::JoinHandle<ClientReport>>,
}

#[derive(Default)]
struct ClientReport {
    latencies: Vec<(Kind, f64)>,
    errors: Vec<String>,
    sse_events: u64,
    /// The run id of the `finished` event an event stream saw.
    finished: Option<Uuid>,
}

struct LoadReport {
    latencies: BTreeMap<Kind, Vec<f64>>,
    errors: Vec<String>,
    sse_streams: usize,
    sse_events: u64,
    sse_finished: usize,
}

impl Load {
    /// Creates the reader accounts (with a manual read grant, given by the owner through the API),
    /// signs the clients in or gives each its own API key, opens the event streams (waiting for
    /// each one's first event) and lets the looping clients go.
    async fn start(k: &Kbsync, clients: usize) -> Result<Load> {
        let mut readers = Vec::with_capacity(READERS);
        for i in 0..READERS {
            let user = kbsync_server::service::users::create_user(
                k.state.store.as_ref(),
                k.state.random.as_ref(),
                Utc::now(),
                &format!("reader-{i}@load.example"),
                PASSWORD,
                Role::User,
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating a reader: {e}"))?;
            readers.push(user.id);
        }
        let r = k
            .http
            .put(format!("{}/api/v1/knowledge/{}/access", k.base, k.kb))
            .bearer_auth(&k.owner_token)
            .json(&json!({ "read": readers, "write": [] }))
            .send()
            .await?;
        ok(r, "granting the readers").await?;

        // Each client authenticates as a real one would: a session from signing in, or an API key
        // made with such a session.
        let mut sessions = Vec::with_capacity(READERS);
        for i in 0..READERS {
            sessions.push(login(&k.http, &k.base, &format!("reader-{i}@load.example")).await?);
        }
        let mut tokens = Vec::with_capacity(clients);
        for c in 0..clients {
            let session = &sessions[c % READERS];
            if c % 2 == 0 {
                tokens.push(session.clone());
            } else {
                let r = k
                    .http
                    .post(format!("{}/api/v1/me/api-keys", k.base))
                    .bearer_auth(session)
                    .json(&json!({ "name": format!("load client {c}"), "scope": "read" }))
                    .send()
                    .await?;
                let created: Value = ok(r, "creating an API key").await?.json().await?;
                tokens.push(
                    created["key"]
                        .as_str()
                        .context("no key in the answer")?
                        .to_owned(),
                );
            }
        }

        let shared = Arc::new(Shared {
            base: k.base.clone(),
            kb: k.kb,
            indexed: Mutex::new(Indexed::default()),
            listed: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        let (mut looping_tasks, mut streams) = (Vec::new(), Vec::new());
        let mut sse_ready = Vec::new();
        for (c, token) in tokens.into_iter().enumerate() {
            let shared = shared.clone();
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?;
            if c % SSE_EVERY == SSE_EVERY - 1 {
                let (ready, opened) = tokio::sync::oneshot::channel();
                sse_ready.push(opened);
                streams.push(tokio::spawn(async move {
                    event_stream(&shared, &http, &token, ready).await
                }));
            } else {
                looping_tasks.push(tokio::spawn(async move {
                    looping(&shared, &http, &token, c as u64).await
                }));
            }
        }
        for opened in sse_ready {
            // An error here is the stream's own, reported with the others at the end.
            let _ = tokio::time::timeout(Duration::from_secs(60), opened).await;
        }
        Ok(Load {
            shared,
            looping: looping_tasks,
            streams,
        })
    }

    fn stopped_early(&self) -> bool {
        // An event stream ends by itself once it has seen the run finish; a looping client only
        // when told to.
        self.looping.iter().any(tokio::task::JoinHandle::is_finished)
    }

    /// Stops the looping clients once the run is over, waits for the event streams to report it,
    /// and gathers what every client recorded.
    async fn finish(self, run_id: Uuid) -> Result<LoadReport> {
        self.shared.stop.cancel();
        let mut report = LoadReport {
            latencies: BTreeMap::new(),
            errors: Vec::new(),
            sse_streams: self.streams.len(),
            sse_events: 0,
            sse_finished: 0,
        };
        for task in self.looping.into_iter().chain(self.streams) {
            let client = task.await.context("a client task")?;
            for (kind, secs) in client.latencies {
                report.latencies.entry(kind).or_default().push(secs);
            }
            report.errors.extend(client.errors);
            report.sse_events += client.sse_events;
            match client.finished {
                Some(id) if id == run_id => report.sse_finished += 1,
                Some(id) => report
                    .errors
                    .push(format!("event stream: `finished` for another run {id}")),
                None => {}
            }
        }
        Ok(report)
    }
}

/// xorshift64: each client's own sequence of choices.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A client that loops over searches, file lists and downloads until the run is over.
async fn looping(shared: &Shared, http: &reqwest::Client, token: &str, seed: u64) -> ClientReport {
    let mut report = ClientReport::default();
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut turn = seed as usize;
    while !shared.stop.is_cancelled() {
        let r = next(&mut rng);
        let mut kind = LOOPED[turn % LOOPED.len()];
        turn += 1;
        let pick = if kind == Kind::FileContent {
            shared
                .indexed
                .lock()
                .ok()
                .and_then(|k| (!k.docs.is_empty()).then(|| k.docs[r as usize % k.docs.len()]))
        } else {
            None
        };
        if kind == Kind::FileContent && pick.is_none() {
            // Nothing known to be indexed yet: a list instead, which finds some.
            kind = Kind::ListFiles;
        }
        let t = Instant::now();
        let result = match (kind, pick) {
            (Kind::SearchOneWord, _) => {
                search(shared, http, token, ONE_WORD[r as usize % ONE_WORD.len()]).await
            }
            (Kind::SearchTwoWords, _) => {
                search(shared, http, token, TWO_WORDS[r as usize % TWO_WORDS.len()]).await
            }
            (Kind::FileContent, Some((id, size))) => content(shared, http, token, id, size).await,
            _ => list(shared, http, token, r).await,
        };
        let secs = t.elapsed().as_secs_f64();
        match result {
            Ok(()) => report.latencies.push((kind, secs)),
            Err(e) => report.errors.push(format!("{}: {e:#}", kind.label())),
        }
    }
    report
}

async fn get(http: &reqwest::Client, token: &str, url: String, what: &str) -> Result<reqwest::Response> {
    let r = http.get(url).bearer_auth(token).send().await?;
    ok(r, what).await
}

/// A search within the knowledge base: every hit must be of it.
async fn search(shared: &Shared, http: &reqwest::Client, token: &str, words: &str) -> Result<()> {
    let url = format!(
        "{}/api/v1/search?q={}&limit=10&knowledge_id={}",
        shared.base,
        url::form_urlencoded::byte_serialize(words.as_bytes()).collect::<String>(),
        shared.kb
    );
    let body: Value = get(http, token, url, "search").await?.json().await?;
    let hits = body["results"]
        .as_array()
        .context("no results in the search answer")?;
    let kb = shared.kb.to_string();
    if let Some(stray) = hits.iter().find(|h| h["knowledge_id"].as_str() != Some(&kb)) {
        bail!("a hit outside the knowledge base searched: {stray}");
    }
    Ok(())
}

/// One page of the file list, at a random offset within what is listed; processed documents are
/// remembered to download.
async fn list(shared: &Shared, http: &reqwest::Client, token: &str, r: u64) -> Result<()> {
    // A page within what the list last counted, and now and then the first.
    let pages = shared.listed.load(Ordering::Relaxed).div_ceil(PAGE).max(1);
    let offset = if r.is_multiple_of(4) {
        0
    } else {
        (r / 4 % pages) * PAGE
    };
    let url = format!(
        "{}/api/v1/knowledge/{}/files?limit={PAGE}&offset={offset}",
        shared.base, shared.kb
    );
    let page: Value = get(http, token, url, "list").await?.json().await?;
    let items = page["items"].as_array().context("no items in the file list")?;
    if items.len() as u64 > PAGE {
        bail!("{} items in a page of {PAGE}", items.len());
    }
    let total = page["total"].as_u64().context("no total in the file list")?;
    shared.listed.fetch_max(total, Ordering::Relaxed);
    let processed: Vec<(Uuid, u64)> = items
        .iter()
        .filter(|d| d["status"] == "processed")
        .filter_map(|d| {
            let id = d["id"].as_str()?.parse().ok()?;
            Some((id, d["size"].as_u64()?))
        })
        .collect();
    if let Ok(mut k) = shared.indexed.lock() {
        for doc in processed {
            if k.ids.insert(doc.0) {
                k.docs.push(doc);
            }
        }
    }
    Ok(())
}

/// A document's bytes: all of them, as many as its listed size.
async fn content(shared: &Shared, http: &reqwest::Client, token: &str, id: Uuid, size: u64) -> Result<()> {
    let url = format!(
        "{}/api/v1/knowledge/{}/files/{id}/content",
        shared.base, shared.kb
    );
    let bytes = get(http, token, url, "content").await?.bytes().await?;
    if bytes.len() as u64 != size {
        bail!("{} bytes of a {size}-byte document", bytes.len());
    }
    Ok(())
}

/// A client that opens the knowledge base's event stream, says when its first event came, and
/// reads every event until the run's `finished` one. A stream that ends or fails before it, or no
/// `finished` within a minute of the others stopping, is an error.
async fn event_stream(
    shared: &Shared,
    http: &reqwest::Client,
    token: &str,
    ready: tokio::sync::oneshot::Sender<()>,
) -> ClientReport {
    let mut report = ClientReport::default();
    let url = format!("{}/api/v1/knowledge/{}/sync/events", shared.base, shared.kb);
    let t = Instant::now();
    let response = match http
        .get(url)
        .bearer_auth(token)
        // The stream lasts the whole run: no overall timeout.
        .timeout(Duration::from_secs(24 * 3_600))
        .send()
        .await
    {
        Ok(r) => ok(r, "event stream").await,
        Err(e) => Err(e.into()),
    };
    let mut body = match response {
        Ok(r) => r.bytes_stream(),
        Err(e) => {
            report.errors.push(format!("event stream: {e:#}"));
            return report;
        }
    };
    let mut ready = Some(ready);
    let mut buffer = String::new();
    let mut event = String::new();
    loop {
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            () = async {
                shared.stop.cancelled().await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            } => {
                report.errors.push("event stream: no `finished` event within 60 s of the run's end".into());
                return report;
            }
        };
        let chunk = match chunk {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                report.errors.push(format!("event stream broke: {e}"));
                return report;
            }
            None => {
                report
                    .errors
                    .push("event stream ended before the run's `finished` event".into());
                return report;
            }
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                report.sse_events += 1;
                if let Some(ready) = ready.take() {
                    report.latencies.push((Kind::SseOpen, t.elapsed().as_secs_f64()));
                    let _ = ready.send(());
                }
                if event == "finished" {
                    match serde_json::from_str::<Value>(data.trim())
                        .ok()
                        .and_then(|v| v["run_id"].as_str()?.parse().ok())
                    {
                        Some(id) => report.finished = Some(id),
                        None => report.errors.push(format!(
                            "event stream: a `finished` event without a run id: {data}"
                        )),
                    }
                    return report;
                }
            } else if line.is_empty() {
                event.clear();
            }
        }
    }
}
