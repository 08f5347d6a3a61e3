//! `kbsync sync <kb>`: one run of a knowledge base in this process, through the same lease as the
//! scheduler's runs, shown as it goes; the exit status says how it ended.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use kbsync_core::{KnowledgeBase, SyncRun, SyncStatus};
use kbsync_server::AppState;
use kbsync_sync::events::SyncEvent;
use kbsync_sync::runner::StartError;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::progress::{Display, Done};
use super::{Exit, Failure, find_kb};

/// How often the stored progress is read while no event comes (the number of files to bring in
/// is stored before the first file is done), and how often `--wait` looks whether the other run
/// ended.
const POLL: Duration = Duration::from_secs(1);

/// Runs one sync of the knowledge base `wanted` (id or exact name) and reports it. `wait`: when
/// it is being synced elsewhere, wait for that run to end and then run, instead of exiting with
/// [`Exit::Busy`].
pub async fn run(state: &AppState, wanted: &str, wait: bool) -> anyhow::Result<()> {
    let kb = find_kb(state.store.as_ref(), wanted).await?;
    let mut display = Display::for_stdout();
    let mut events = state.sync_events.subscribe(kb.id);
    // Ctrl-C is ours from before the run starts: it cancels the run rather than end the process.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let run_id = start(state, &kb, wait, &display, &mut interrupt).await?;
    display.run_started();
    display.say(&format!("syncing \"{}\" ({}), run {run_id}", kb.name, kb.id));

    let idle = state.sync.wait_idle();
    tokio::pin!(idle);
    let mut poll = tokio::time::interval(POLL);
    let mut cancelling = false;
    let mut shown_failures = HashSet::new();
    loop {
        tokio::select! {
            () = &mut idle => break,
            received = events.recv() => match received {
                Ok(event) => show(&mut display, run_id, event, &mut shown_failures),
                // Missed events: the stored state and the run's record tell the rest.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => {
                    idle.as_mut().await;
                    break;
                }
            },
            _ = poll.tick() => {
                if let Ok(stored) = state.store.get_sync_state(kb.id, state.clock.now()).await
                    && stored.progress.run_id == Some(run_id)
                {
                    display.total_known(stored.progress.total);
                }
            }
            Some(()) = interrupt.recv() => {
                if cancelling {
                    display.finish();
                    return Err(Failure::new(
                        Exit::Cancelled,
                        "interrupted; the run's lease expires by itself (KBSYNC_SYNC_LEASE_SECS)",
                    )
                    .into());
                }
                cancelling = true;
                display.say("cancelling the run (no cursor moves); Ctrl-C again to leave at once");
                state.sync.cancel(kb.id).await?;
            }
        }
    }
    // Events published before the run let go of the knowledge base.
    while let Ok(event) = events.try_recv() {
        show(&mut display, run_id, event, &mut shown_failures);
    }
    display.finish();
    let run = finished_run(state, &kb, run_id).await?;
    report(&kb, &run, &shown_failures)
}

/// Starts the run, or says why not.
async fn start(
    state: &AppState,
    kb: &KnowledgeBase,
    wait: bool,
    display: &Display,
    interrupt: &mut Signal,
) -> anyhow::Result<Uuid> {
    let mut said_waiting = false;
    loop {
        let refusal = match state.sync.start_manual(kb.id, None).await {
            Ok(run_id) => return Ok(run_id),
            Err(e) => e,
        };
        let message = refusal.to_string();
        let exit = match refusal {
            StartError::AlreadyRunning if wait => {
                if !said_waiting {
                    display.say(&format!(
                        "\"{}\" is being synced elsewhere (a server or another kbsync sync); waiting for that run to end",
                        kb.name
                    ));
                    said_waiting = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(POLL) => continue,
                    _ = interrupt.recv() => {
                        return Err(Failure::new(Exit::Cancelled, "interrupted while waiting; no run started").into());
                    }
                }
            }
            StartError::AlreadyRunning => {
                return Err(Failure::new(
                    Exit::Busy,
                    format!(
                        "\"{}\" is being synced elsewhere (a server or another kbsync sync); try again when it ends, \
                         or pass --wait",
                        kb.name
                    ),
                )
                .into());
            }
            StartError::NotFound => Exit::NotFound,
            StartError::NotConnected => {
                return Err(Failure::new(
                    Exit::NeedsReauth,
                    format!(
                        "\"{}\" is not connected to its datasource: connect it in the web UI first",
                        kb.name
                    ),
                )
                .into());
            }
            StartError::NeedsReauth => {
                return Err(Failure::new(
                    Exit::NeedsReauth,
                    format!(
                        "the connection of \"{}\" needs re-authorisation: connect it again in the web UI",
                        kb.name
                    ),
                )
                .into());
            }
            StartError::Unsupported | StartError::ShuttingDown | StartError::Store(_) => Exit::Error,
        };
        return Err(Failure::new(exit, message).into());
    }
}

/// Shows one event of the run; remembers the failed files it showed.
fn show(display: &mut Display, run_id: Uuid, event: SyncEvent, shown_failures: &mut HashSet<String>) {
    match event {
        SyncEvent::Progress {
            run_id: r,
            current,
            total,
            bytes,
            total_bytes,
            file,
        } if r == run_id => display.progress(&Done {
            current,
            total,
            bytes,
            total_bytes,
            file,
        }),
        SyncEvent::FileFailed {
            run_id: r,
            name,
            reason,
        } if r == run_id => {
            display.say(&format!("failed: {name}: {reason}"));
            shown_failures.insert(name);
        }
        _ => {}
    }
}

/// The run's record, once it has ended.
async fn finished_run(state: &AppState, kb: &KnowledgeBase, run_id: Uuid) -> anyhow::Result<SyncRun> {
    let runs = state.store.list_sync_runs(kb.id, 10).await?;
    runs.into_iter()
        .find(|r| r.id == run_id && r.finished_at.is_some())
        .ok_or_else(|| anyhow::anyhow!("the run {run_id} ended without a record of how (see the log above)"))
}

/// The failures not shown yet, the summary line, and the exit status of the run's outcome.
fn report(kb: &KnowledgeBase, run: &SyncRun, shown_failures: &HashSet<String>) -> anyhow::Result<()> {
    let o = &run.outcome;
    let summary = format!(
        "{}: {} processed, {} failed, {} deleted, {} skipped ({} files found)",
        o.status, o.processed, o.failed, o.deleted, o.skipped, o.total_found
    );
    let exit = match o.status {
        SyncStatus::Completed => None,
        SyncStatus::CompletedWithErrors => Some(Exit::FilesFailed),
        SyncStatus::NeedsReauth => Some(Exit::NeedsReauth),
        SyncStatus::Cancelled => Some(Exit::Cancelled),
        SyncStatus::Failed
        | SyncStatus::AccessRevoked
        | SyncStatus::FileLimitExceeded
        | SyncStatus::Idle
        | SyncStatus::Syncing => Some(Exit::RunFailed),
    };
    let Some(exit) = exit else {
        println!("{summary}");
        return Ok(());
    };
    for failure in o.failures.iter().filter(|f| !shown_failures.contains(&f.name)) {
        println!("failed: {}: {}", failure.name, failure.reason);
    }
    println!("{summary}");
    let why = match exit {
        Exit::FilesFailed => "some files could not be brought in; the next run retries them",
        Exit::NeedsReauth => {
            "the datasource refused the connection: connect the knowledge base again in the web UI"
        }
        Exit::Cancelled => "the run was cancelled",
        _ => "the run did not complete",
    };
    Err(Failure::new(exit, format!("\"{}\": {why}", kb.name)).into())
}
