//! Scenario 9: freshness. How long after a change at the source its text is searchable, with
//! change notifications on (the production settings: scheduler tick 5 s, debounce 2 s) and with
//! polling alone, and how many runs a burst of changes causes.
//!
//! A whole kbsync serves on loopback over the bench's store, with the real system clock: the
//! server, its scheduler, the drive subscription maintenance and the webhook endpoint the
//! emulator posts its notifications to. The knowledge base's connection is stored as the OAuth
//! flow would leave it (the emulator's access token, encrypted), so no flow is needed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use kbsync_core::datasource::{Datasource, DatasourceKind};
use kbsync_core::{
    ConnectionCredentials, KbId, KbType, OsRandom, StoredAccessToken, SyncRun, SyncTrigger, SystemClock,
    UserId,
};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_oauth::ConnectionManager;
use kbsync_server::service::webhooks::WebhookSettings;
use kbsync_server::{AppState, Datasources, ServerSettings};
use kbsync_store::{BlobStore, NewConnection, Reader, SearchQuery, SubscriptionStatus, TokenCipher};
use kbsync_sync::runner::RunnerSettings;
use kbsync_sync::scheduler::SchedulerSettings;
use kbsync_sync::{SyncRuntime, SyncSettings};
use msgraph_emulator::Emulator;

use crate::common::{Block, Db, Graph, add_folder, new_kb, quantile};

/// The folder the knowledge base syncs.
const FOLDER: &str = "/Fresh";
/// The size of every changed document: ~1 MB of text (the extraction cap is 20 MiB).
const DOC_BYTES: usize = 1_000_000;
/// How often the harness asks the store whether a word is searchable yet.
const POLL: Duration = Duration::from_millis(50);

pub async fn run(small: bool) -> Result<()> {
    for db in Db::all().await? {
        one(&db, small).await?;
    }
    Ok(())
}

async fn one(db: &Db, small: bool) -> Result<()> {
    // 1. Notifications on: one change after another, then a burst.
    let changes = if small { 5 } else { 50 };
    let g = Graph::start(Emulator::builder().seed(9), |_| {}).await?;
    let k = Kbsync::start(
        db,
        &g,
        Some(WebhookSettings::default()),
        chrono::Duration::minutes(60),
    )
    .await?;
    let t = Instant::now();
    k.settled(Duration::from_secs(120)).await?;
    let setup = t.elapsed();
    let sub = k.state.store.drive_subscriptions().await?;
    let mut setup_runs = k.state.store.list_sync_runs(k.kb, 100).await?;
    setup_runs.sort_by_key(|r| r.started_at);
    let latencies = k
        .one_after_another(&g, "ntf", changes, Duration::from_secs(120), |_| Duration::ZERO)
        .await?;
    let mut b = Block::new(format!(
        "9. freshness on {}: {changes} changes of a ~1 MB text document, one after another, change notifications on",
        db.label
    ));
    b.line(format!(
        "setup: server, subscription ({} active) and the first runs ({}) settled in {:.1} s; \
         production settings: scheduler tick 5 s, debounce 2 s",
        sub.iter()
            .filter(|s| s.status == SubscriptionStatus::Active)
            .count(),
        describe_runs(&setup_runs),
        setup.as_secs_f64()
    ));
    let notified = Spread::of(&latencies);
    b.line(format!("change -> searchable: {}", notified.describe()));
    b.line("baseline: polling alone (below): the polling interval's order");
    b.target(
        "p95",
        format!("{:.1} s", notified.p95),
        "< 10 s",
        notified.p95 < 10.0,
    );
    b.print();

    let (burst, window) = if small {
        (10, Duration::from_secs(1))
    } else {
        (100, Duration::from_secs(5))
    };
    let report = k.burst(&g, burst, window).await?;
    let mut b = Block::new(format!(
        "9. freshness on {}: a burst of {burst} new ~1 MB documents within {:.0} s, change notifications on",
        db.label,
        window.as_secs_f64()
    ));
    b.line(format!(
        "burst put in {:.2} s; all {burst} searchable {:.1} s after its start; the knowledge base idle after {:.1} s",
        report.put.as_secs_f64(),
        report.searchable.as_secs_f64(),
        report.idle.as_secs_f64()
    ));
    b.line(format!("runs: {}", describe_runs(&report.runs)));
    b.target(
        "runs caused by the burst",
        report.runs.len().to_string(),
        "<= 3",
        report.runs.len() <= 3,
    );
    b.print();
    k.stop().await?;
    g.emu.shutdown().await;

    // 2. Polling alone, with a short interval: the changes come at evenly spread points of the
    // polling cycle, so the figures are those of a change made at a random time.
    let (changes, interval) = if small {
        (3, chrono::Duration::seconds(10))
    } else {
        (10, chrono::Duration::minutes(1))
    };
    let g = Graph::start(Emulator::builder().seed(10), |_| {}).await?;
    let k = Kbsync::start(db, &g, None, interval).await?;
    k.settled(Duration::from_secs(120)).await?;
    let cycle = interval.to_std()?;
    let latencies = k
        .one_after_another(&g, "pll", changes, cycle * 2 + Duration::from_secs(120), |i| {
            // Strata of the cycle, visited out of order: i * 7 mod n (7 is prime to 3 and 10).
            let stratum = (i * 7) % changes;
            cycle.mul_f64((stratum as f64 + 0.5) / changes as f64)
        })
        .await?;
    k.stop().await?;
    g.emu.shutdown().await;
    let polled = Spread::of(&latencies);
    let mut b = Block::new(format!(
        "9. freshness on {}: {changes} changes of a ~1 MB text document, polling alone (no notifications)",
        db.label
    ));
    b.line(format!(
        "polling interval {} s (plus up to 10% jitter), scheduler tick 5 s; each change made at another point of the cycle",
        interval.num_seconds()
    ));
    b.line(format!("change -> searchable: {}", polled.describe()));
    b.line(format!(
        "with notifications (above): p50 {:.1} s, p95 {:.1} s = {:.2}x / {:.2}x of polling's",
        notified.p50,
        notified.p95,
        notified.p50 / polled.p50,
        notified.p95 / polled.p95
    ));
    b.print();
    Ok(())
}

/// p50 / p95 / max of latencies in seconds.
struct Spread {
    n: usize,
    p50: f64,
    p95: f64,
    max: f64,
}

impl Spread {
    fn of(latencies: &[Duration]) -> Spread {
        let mut s: Vec<f64> = latencies.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(f64::total_cmp);
        Spread {
            n: s.len(),
            p50: quantile(&s, 0.5),
            p95: quantile(&s, 0.95),
            max: s.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn describe(&self) -> String {
        format!(
            "p50 {:.1} s, p95 {:.1} s, max {:.1} s (n = {})",
            self.p50, self.p95, self.max, self.n
        )
    }
}

fn describe_runs(runs: &[SyncRun]) -> String {
    let each: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{} {:.1} s processed {}",
                r.trigger.as_str(),
                r.finished_at
                    .map_or(f64::NAN, |f| (f - r.started_at).num_milliseconds() as f64 / 1e3),
                r.outcome.processed
            )
        })
        .collect();
    format!("{} ({})", runs.len(), each.join("; "))
}

struct BurstReport {
    /// How long putting the burst's files took.
    put: Duration,
    /// From the burst's start until every file was searchable.
    searchable: Duration,
    /// From the burst's start until the knowledge base was idle with nothing due.
    idle: Duration,
    /// The runs that started after the burst's start, oldest first.
    runs: Vec<SyncRun>,
}

/// A word found in one document only: letters, ending in `x` so that no stemmer folds two of them
/// into one (`tag` tells the parts of the scenario apart).
fn unique_word(tag: &str, i: usize) -> String {
    const LETTERS: &[u8] = b"bcdfghjkmnpqrtvwz";
    let mut code = String::new();
    let mut n = i;
    loop {
        code.push(char::from(LETTERS[n % LETTERS.len()]));
        n /= LETTERS.len();
        if n == 0 {
            break;
        }
    }
    format!("kbfresh{tag}{code}x")
}

/// ~1 MB of prose with `word` in the middle.
fn document(title: &str, word: &str) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "orchard",
        "report",
        "lists",
        "harvest",
        "figures",
        "for",
        "each",
        "quarter",
        "and",
        "notes",
        "which",
        "rows",
        "of",
        "trees",
        "need",
        "pruning",
        "before",
        "spring",
        "while",
        "irrigation",
        "plans",
        "cover",
        "the",
        "northern",
        "slope",
        "with",
        "new",
        "pipes",
        "budget",
        "review",
    ];
    let mut out = format!("# {title}\n\n");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ title.len() as u64;
    let mut inserted = false;
    let mut sentence = 0;
    while out.len() < DOC_BYTES {
        if !inserted && out.len() >= DOC_BYTES / 2 {
            out.push_str(&format!("This paragraph mentions {word} once.\n\n"));
            inserted = true;
        }
        for w in 0..12 {
            // xorshift: varied text without a random number generator's state shared with anything.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if w > 0 {
                out.push(' ');
            }
            out.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
        }
        sentence += 1;
        out.push_str(if sentence % 6 == 0 { ".\n\n" } else { ". " });
    }
    out.into_bytes()
}

/// A kbsync server on loopback over the bench's store: scheduler on, change notifications as
/// given, one OneDrive knowledge base syncing [`FOLDER`] of the emulated drive.
struct Kbsync {
    state: AppState,
    owner: UserId,
    kb: KbId,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _blobs: tempfile::TempDir,
}

impl Kbsync {
    async fn start(
        db: &Db,
        g: &Graph,
        webhooks: Option<WebhookSettings>,
        default_interval: chrono::Duration,
    ) -> Result<Kbsync> {
        let store = db.store.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);

        let folder = g.ctl.create_folder(&g.drive, FOLDER)?;
        for (name, text) in [
            ("plan.md", "The quarterly plan for the orchard"),
            ("minutes.txt", "Minutes of the spring meeting"),
        ] {
            g.ctl
                .put_file(&g.drive, &format!("{FOLDER}/{name}"), text.as_bytes().to_vec())?;
        }
        let (owner, kb) = new_kb(&store, KbType::OneDrive).await?;
        add_folder(&store, kb, &g.drive, &folder.id, FOLDER).await?;
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

        let clock: Arc<dyn kbsync_core::Clock> = Arc::new(SystemClock);
        let datasources = Datasources::new(
            ConnectionManager::new(
                store.clone(),
                reqwest::Client::new(),
                cipher,
                clock.clone(),
                Arc::new(OsRandom),
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
            Arc::new(OsRandom),
            Arc::new(datasources.clone()),
            SyncSettings {
                runner: RunnerSettings {
                    default_interval,
                    ..RunnerSettings::default()
                },
                scheduler: Some(SchedulerSettings::default()),
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
            Arc::new(OsRandom),
            ServerSettings {
                // The emulator posts notifications to the server's own address.
                public_url: base,
                webhooks,
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
        Ok(Kbsync {
            state,
            owner,
            kb,
            stop,
            task,
            _blobs: blobs,
        })
    }

    /// Stops the server, and leaves its knowledge base without a connection so that a later
    /// server over the same store never runs it.
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("the server task")??;
        self.state.store.delete_connection(self.kb).await?;
        Ok(())
    }

    /// Waits until the knowledge base has run at least once, its subscription (with
    /// notifications on) is active, and it is idle with nothing due: the initial sync and the
    /// catch-up run the subscription's creation asked for are over.
    async fn settled(&self, within: Duration) -> Result<()> {
        let webhooks = self.state.settings.webhooks.is_some();
        until("the initial sync to settle", within, || async {
            if webhooks {
                let subs = self.state.store.drive_subscriptions().await?;
                if !subs.iter().any(|s| s.status == SubscriptionStatus::Active) {
                    return Ok(None);
                }
            }
            let runs = self.state.store.list_sync_runs(self.kb, 1).await?;
            if runs.first().is_none_or(|r| r.finished_at.is_none()) {
                return Ok(None);
            }
            Ok(self.idle().await?.then_some(()))
        })
        .await
    }

    /// Not running, and not due before a moment from now.
    async fn idle(&self) -> Result<bool> {
        let now = Utc::now();
        let state = self.state.store.get_sync_state(self.kb, now).await?;
        Ok(!state.running && state.next_sync_at.is_some_and(|n| n > now))
    }

    async fn searchable(&self, word: &str) -> Result<bool> {
        let hits = self
            .state
            .store
            .search(SearchQuery {
                text: word,
                reader: Reader::User(self.owner),
                kb_ids: &[self.kb],
                limit: 5,
            })
            .await?;
        Ok(!hits.is_empty())
    }

    /// `n` changes, each once the knowledge base is idle and `pause(i)` later: even ones put a
    /// new `.md` document, odd ones rewrite the previous one (as a `.txt` would be saved over).
    /// Returns the time from each change to its word being searchable.
    async fn one_after_another(
        &self,
        g: &Graph,
        tag: &str,
        n: usize,
        within: Duration,
        pause: impl Fn(usize) -> Duration,
    ) -> Result<Vec<Duration>> {
        let mut latencies = Vec::with_capacity(n);
        let mut last_id = String::new();
        for i in 0..n {
            until("the knowledge base idle", within, || async {
                Ok(self.idle().await?.then_some(()))
            })
            .await?;
            tokio::time::sleep(pause(i)).await;
            let word = unique_word(tag, i);
            let bytes = document(&format!("Change {i}"), &word);
            let t = Instant::now();
            if i % 2 == 0 {
                last_id = g
                    .ctl
                    .put_file(&g.drive, &format!("{FOLDER}/{tag}-{i}.md"), bytes)?
                    .id;
            } else {
                g.ctl.modify_file(&g.drive, &last_id, bytes)?;
            }
            until(&format!("change {i} to be searchable"), within, || async {
                Ok(self.searchable(&word).await?.then_some(()))
            })
            .await?;
            latencies.push(t.elapsed());
        }
        Ok(latencies)
    }

    /// `n` new documents put at even steps within `window`, then waits until every one is
    /// searchable and the knowledge base is idle; reports the runs that started meanwhile.
    async fn burst(&self, g: &Graph, n: usize, window: Duration) -> Result<BurstReport> {
        until("the knowledge base idle", Duration::from_secs(120), || async {
            Ok(self.idle().await?.then_some(()))
        })
        .await?;
        let words: Vec<String> = (0..n).map(|i| unique_word("bst", i)).collect();
        let docs: Vec<Vec<u8>> = words
            .iter()
            .enumerate()
            .map(|(i, w)| document(&format!("Burst {i}"), w))
            .collect();
        let step = window / u32::try_from(n)?;
        // Run records keep whole milliseconds: a run that starts with the burst counts.
        let since = Utc::now() - chrono::Duration::milliseconds(1);
        let start = Instant::now();
        for (i, bytes) in docs.into_iter().enumerate() {
            tokio::time::sleep_until((start + step * u32::try_from(i)?).into()).await;
            g.ctl
                .put_file(&g.drive, &format!("{FOLDER}/burst-{i}.txt"), bytes)?;
        }
        let put = start.elapsed();
        // Generous: in a debug build the burst's ~100 MB are extracted and indexed slowly.
        let within = Duration::from_secs(1_800);
        // Word by word: each is looked for until it is found, with one deadline for them all.
        let deadline = Instant::now() + within;
        for word in &words {
            let left = deadline.saturating_duration_since(Instant::now());
            until("every file of the burst to be searchable", left, || async {
                Ok(self.searchable(word).await?.then_some(()))
            })
            .await?;
        }
        let searchable = start.elapsed();
        until("the knowledge base idle after the burst", within, || async {
            Ok(self.idle().await?.then_some(()))
        })
        .await?;
        let idle = start.elapsed();
        let mut runs: Vec<SyncRun> = self
            .state
            .store
            .list_sync_runs(self.kb, 1_000)
            .await?
            .into_iter()
            .filter(|r| r.started_at >= since)
            .collect();
        runs.sort_by_key(|r| r.started_at);
        if runs.iter().any(|r| r.trigger == SyncTrigger::Manual) {
            bail!("a manual run during the burst: nothing here starts one");
        }
        Ok(BurstReport {
            put,
            searchable,
            idle,
            runs,
        })
    }
}

/// Polls `f` every [`POLL`] until it gives a value; fails after `within`.
async fn until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {} s waiting for {what}", within.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}
