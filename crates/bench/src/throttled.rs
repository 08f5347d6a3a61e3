//! Scenario 4: the emulator admits R requests per second and answers 429 + Retry-After beyond.
//! First one knowledge base syncs alone; then two knowledge bases of the same tenant (half the
//! files each) sync at once through one datasource, as the scheduler would run them, so that
//! their requests compete for the tenant's budget.
//!
//! Beside kbsync, in the same run and against the same emulator, a minimal client fetches the
//! same files (`/content`, then the download URL) with one shared gate that honours each
//! `Retry-After` exactly, without jitter: what any client that waits as told can reach on this
//! limiter. Both runs are then read back from the emulator's request log, one calendar second
//! (the limiter's window) at a time, to say where the time beyond `admitted / R` went.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use kbsync_core::datasource::{AccessToken, StaticToken};
use kbsync_core::{KbType, SyncTrigger};
use msgraph_emulator::{Emulator, LogEntry};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Block, Db, Graph, add_folder, engine, limits, new_kb};

/// Issue 19's target: at most this much slower than `admitted / R`, with no failed file.
const TARGET_RATIO: f64 = 1.10;

pub async fn run(small: bool) -> Result<()> {
    let (n, rate) = if small { (30, 20) } else { (300, 50) };
    for runs in [1, 2] {
        throttled(n, rate, runs).await?;
    }
    Ok(())
}

/// `runs` knowledge bases of one tenant, `n` files in all, synced at once.
async fn throttled(n: usize, rate: u32, runs: usize) -> Result<()> {
    let per_kb = n / runs;
    // Real clock: the emulator's rate window is its clock's second.
    let g = Graph::start(Emulator::builder().seed(4), |_| {}).await?;
    let db = Db::sqlite().await?;
    let blobs = tempfile::tempdir()?;
    let engine = engine(db.store.clone(), blobs.path(), limits(10 * n as u64));
    let mut kbs = Vec::new();
    let mut files = Vec::new();
    for k in 0..runs {
        let folder_path = format!("/Throttled-{k}");
        for i in 0..per_kb {
            let file = g.ctl.put_file(
                &g.drive,
                &format!("{folder_path}/t-{i}.txt"),
                format!("throttled note {k}/{i}"),
            )?;
            files.push(file.id);
        }
        let folder = g.ctl.item_by_path(&g.drive, &folder_path)?;
        let (_, kb) = new_kb(&db.store, KbType::OneDrive).await?;
        add_folder(&db.store, kb, &g.drive, &folder.id, &folder_path).await?;
        // Each run has its own token, as two connections of one tenant would.
        let token = g.ctl.mint_access_token_for(
            &g.ctl.default_user_id(),
            &["Files.Read.All", "Sites.Read.All"],
            chrono::Duration::hours(24),
        )?;
        kbs.push((kb, StaticToken(AccessToken::new(token))));
    }
    g.ctl.clear_request_log();
    g.ctl.set_rate_limit(Some(rate));
    let t = Instant::now();
    let summaries = futures::future::try_join_all(kbs.iter().map(|(kb, token)| {
        engine.run(
            Uuid::new_v4(),
            *kb,
            g.ds.as_ref(),
            token,
            SyncTrigger::Manual,
            CancellationToken::new(),
        )
    }))
    .await?;
    let elapsed = t.elapsed().as_secs_f64();
    g.ctl.set_rate_limit(None);
    let kbsync = Windows::read(&g.ctl.request_log().entries, rate);

    // The minimal client, with as many requests in flight as the runs had files in flight.
    let concurrency = kbsync_sync::SyncLimits::default().concurrency * runs;
    g.ctl.clear_request_log();
    g.ctl.set_rate_limit(Some(rate));
    let t = Instant::now();
    fetch_honouring_retry_after(&g, &files, concurrency).await?;
    let minimal_elapsed = t.elapsed().as_secs_f64();
    g.ctl.set_rate_limit(None);
    let minimal = Windows::read(&g.ctl.request_log().entries, rate);

    let ideal = kbsync.admitted as f64 / f64::from(rate);
    let ratio = elapsed / ideal;
    let minimal_ratio = minimal_elapsed / (minimal.admitted as f64 / f64::from(rate));
    let processed: u64 = summaries.iter().map(|s| s.processed).sum();
    let failed: u64 = summaries.iter().map(|s| s.failed).sum();
    let mut b = Block::new(format!(
        "4. throttled: {runs} knowledge base(s) of one tenant at once, {per_kb} files each, R = {rate} requests/s, \
         429 + Retry-After: 1 beyond"
    ));
    b.line(format!(
        "kbsync: {elapsed:.2} s, {} requests ({} admitted, {} answered 429); processed {processed}, failed {failed}",
        kbsync.admitted + kbsync.throttled,
        kbsync.admitted,
        kbsync.throttled
    ));
    for f in summaries.iter().flat_map(|s| s.failures.iter()).take(3) {
        b.line(format!("failed: {}: {}", f.name, f.reason));
    }
    b.line(format!(
        "baseline: admitted requests / R = {ideal:.2} s; ratio {ratio:.2}x"
    ));
    b.line(format!(
        "baseline: a minimal client honouring Retry-After exactly (one shared gate, no jitter, {concurrency} at \
         once), same files: {minimal_elapsed:.2} s, {} admitted, {} answered 429; ratio {minimal_ratio:.2}x",
        minimal.admitted, minimal.throttled
    ));
    b.line(format!(
        "where the time beyond admitted / R went, kbsync: {}",
        kbsync.describe(rate)
    ));
    b.line(format!(
        "  the same for the minimal client: {}",
        minimal.describe(rate)
    ));
    b.target("failed files", failed.to_string(), "0", failed == 0);
    b.target(
        "time / (requests / R)",
        format!("{ratio:.2}x"),
        &format!("<= {TARGET_RATIO:.2}x"),
        ratio <= TARGET_RATIO,
    );
    b.print();
    Ok(())
}

/// What a request log says about the limiter's windows (the emulator's calendar seconds).
#[derive(Debug, Default)]
struct Windows {
    admitted: u64,
    throttled: u64,
    /// Windows from the first request's to the last one's.
    spanned: u64,
    /// Windows that admitted all R requests.
    full: u64,
    /// Unused slots (in seconds: slots / R) of windows that follow a window with a 429: the
    /// clients were still waiting out a `Retry-After` when the window opened.
    lost_waiting: f64,
    /// Unused slots of the other windows: the clients did not ask for more (the first and last
    /// windows of the run, work between requests).
    lost_client: f64,
    /// How far into a window that follows a 429 its first request came, on average.
    resume_ms: f64,
    /// How long a throttled window took from its first request to its first 429, on average:
    /// the time the clients needed to send R requests.
    fill_ms: f64,
}

impl Windows {
    fn read(entries: &[LogEntry], rate: u32) -> Windows {
        // window → (admitted, 429s, first request's offset, first 429's offset), offsets in ms.
        let mut by_window: BTreeMap<i64, (u64, u64, f64, Option<f64>)> = BTreeMap::new();
        for e in entries {
            let offset = f64::from(e.timestamp.timestamp_subsec_micros()) / 1e3;
            let w = by_window
                .entry(e.timestamp.timestamp())
                .or_insert((0, 0, offset, None));
            w.2 = w.2.min(offset);
            if e.status == 429 {
                w.1 += 1;
                w.3 = Some(w.3.map_or(offset, |o: f64| o.min(offset)));
            } else {
                w.0 += 1;
            }
        }
        let mut out = Windows::default();
        let (Some(first), Some(last)) = (
            by_window.keys().next().copied(),
            by_window.keys().next_back().copied(),
        ) else {
            return out;
        };
        let (mut resumes, mut fills) = (Vec::new(), Vec::new());
        let r = f64::from(rate);
        for second in first..=last {
            let (admitted, throttled, first_ms, first_429) =
                by_window.get(&second).copied().unwrap_or((0, 0, 0.0, None));
            out.admitted += admitted;
            out.throttled += throttled;
            out.spanned += 1;
            let unused = u64::from(rate).saturating_sub(admitted) as f64 / r;
            if unused == 0.0 {
                out.full += 1;
            }
            if by_window.get(&(second - 1)).is_some_and(|w| w.1 > 0) {
                out.lost_waiting += unused;
                if admitted + throttled > 0 {
                    resumes.push(first_ms);
                }
            } else {
                out.lost_client += unused;
            }
            if let Some(at) = first_429 {
                fills.push(at - first_ms);
            }
        }
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        out.resume_ms = mean(&resumes);
        out.fill_ms = mean(&fills);
        out
    }

    fn describe(&self, rate: u32) -> String {
        format!(
            "{} windows of 1 s (the fewest that admit {} requests: {}), {} full; unused slots {:.2} s while waiting out a Retry-After (the first request of \
             a window after a 429 came {:.0} ms in; a throttled window took {:.0} ms to fill), {:.2} s where the \
             client asked for less",
            self.spanned,
            self.admitted,
            self.admitted.div_ceil(u64::from(rate)),
            self.full,
            self.lost_waiting,
            self.resume_ms,
            self.fill_ms,
            self.lost_client
        )
    }
}

/// Fetches `ids` (`/content`, then the download URL it points to), `concurrency` at once; a 429
/// closes one shared gate for exactly its `Retry-After`, and every request waits at the gate.
async fn fetch_honouring_retry_after(g: &Graph, ids: &[String], concurrency: usize) -> Result<()> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let gate = Mutex::new(tokio::time::Instant::now());
    let graph_url = g.emu.graph_url().trim_end_matches('/').to_owned();
    let base = g.emu.base_url().trim_end_matches('/').to_owned();
    let send = |url: String, bearer: bool| {
        let (client, gate) = (&client, &gate);
        async move {
            loop {
                let open_at = *gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                tokio::time::sleep_until(open_at).await;
                let mut request = client.get(&url);
                if bearer {
                    request = request.bearer_auth(g.token.secret());
                }
                let response = request.send().await?;
                if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return anyhow::Ok(response);
                }
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .context("a 429 without Retry-After in seconds")?;
                let until = tokio::time::Instant::now() + Duration::from_secs(retry_after);
                let mut open_at = gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                *open_at = (*open_at).max(until);
            }
        }
    };
    futures::stream::iter(ids)
        .map(|id| {
            let (graph_url, base, send) = (&graph_url, &base, &send);
            async move {
                let content =
                    send(format!("{graph_url}/drives/{}/items/{id}/content", g.drive), true).await?;
                let location = content
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
                send(location, false).await?.error_for_status()?.bytes().await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{DateTime, Utc};

    use super::*;

    fn entry(ms: i64, status: u16) -> LogEntry {
        let timestamp: DateTime<Utc> = DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap();
        LogEntry {
            seq: 0,
            timestamp,
            method: "GET".into(),
            path: "/v1.0/drives/d/items/i/content".into(),
            query: None,
            route: "GET /v1.0/drives/{id}/items/{id}/content".into(),
            status,
            had_authorization: true,
            user_agent: None,
            resource_units: 1,
            fault: None,
        }
    }

    #[test]
    fn windows_count_unused_slots_after_a_429_apart_from_those_the_client_left() {
        // R = 2. Window 0: 2 admitted from 100 ms, a 429 at 300 ms. Window 1: the gate reopened
        // 300 ms in, 1 admitted. Window 2: nothing asked (the client's own pause). Window 3: 2.
        let log = [
            entry(100, 200),
            entry(200, 200),
            entry(300, 429),
            entry(1_300, 200),
            entry(3_000, 200),
            entry(3_500, 200),
        ];
        let w = Windows::read(&log, 2);
        assert_eq!((w.admitted, w.throttled, w.spanned, w.full), (5, 1, 4, 2));
        assert!((w.lost_waiting - 0.5).abs() < 1e-9, "{w:?}");
        assert!((w.lost_client - 1.0).abs() < 1e-9, "{w:?}");
        assert!((w.resume_ms - 300.0).abs() < 1e-6, "{w:?}");
        assert!((w.fill_ms - 200.0).abs() < 1e-6, "{w:?}");
    }
}
