//! The process-isolated extractor against a worker that misbehaves on request: each kind of
//! misbehaviour fails only its own file, with a reason, and the pool goes on with a fresh worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use kbsync_ingest::{ExtractError, Extractor, FileKind, IngestConfig, Isolation, WorkerCommand};

const WORKER: &str = env!("CARGO_BIN_EXE_misbehaving-extract-worker");

fn extractor(max_concurrent: usize, timeout: Duration) -> Extractor {
    Extractor::with_isolation(
        IngestConfig {
            max_concurrent,
            per_file_timeout: timeout,
            ..IngestConfig::default()
        },
        Isolation::Process(WorkerCommand::new(WORKER, Vec::<String>::new()).memory_limit_mb(256)),
    )
}

async fn works(ex: &Extractor) {
    let chunks = ex
        .process(
            FileKind::Txt,
            Bytes::from_static(b"an ordinary file after the bad one"),
        )
        .await
        .unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].text, "an ordinary file after the bad one");
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; "Z" in its stat means it died but was not reaped.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[expect(clippy::disallowed_methods, reason = "measures how long the hung file took")]
async fn a_hang_without_budget_checks_is_killed_at_the_limit_and_the_next_file_works() {
    let ex = extractor(1, Duration::from_millis(700));
    works(&ex).await;
    let first = ex.idle_worker_pids();
    let started = std::time::Instant::now();
    let err = ex
        .process(FileKind::Txt, Bytes::from_static(b"HANG"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, ExtractError::Timeout(Duration::from_millis(700)));
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    // The hung worker was killed and reaped, not left behind.
    assert!(
        first.iter().all(|&pid| !exists(pid)),
        "the hung worker {first:?} still exists"
    );
    works(&ex).await;
    assert_ne!(ex.idle_worker_pids(), first);
    ex.shutdown().await;
}

#[tokio::test]
async fn an_abort_is_a_worker_died_error_and_the_pool_restarts_the_worker() {
    let ex = extractor(1, Duration::from_secs(20));
    let err = ex
        .process(FileKind::Txt, Bytes::from_static(b"ABORT"))
        .await
        .unwrap_err();
    assert_eq!(err, ExtractError::WorkerDied("it crashed (aborted)".into()));
    assert_eq!(
        err.to_string(),
        "the text extractor was stopped: it crashed (aborted)"
    );
    assert!(ex.idle_worker_pids().is_empty());
    works(&ex).await;
    assert_eq!(ex.idle_worker_pids().len(), 1);
    ex.shutdown().await;
}

#[tokio::test]
async fn an_allocation_over_the_memory_limit_fails_only_that_file() {
    let ex = extractor(1, Duration::from_secs(20));
    works(&ex).await;
    let err = ex
        .process(FileKind::Txt, Bytes::from_static(b"ALLOCATE"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ExtractError::WorkerDied("it exceeded its memory limit of 256 MiB".into())
    );
    works(&ex).await;
    ex.shutdown().await;
}

#[tokio::test]
async fn a_stack_overflow_an_exit_and_a_garbled_answer_each_fail_only_their_file() {
    let ex = extractor(1, Duration::from_secs(20));
    let cases: [(&'static [u8], &str); 3] = [
        (b"RECURSE", "it overflowed its stack (too deeply nested content)"),
        (b"EXIT", "it exited unexpectedly (status 3)"),
        (b"GARBAGE", "it sent an answer that could not be read"),
    ];
    for (content, reason) in cases {
        let err = ex
            .process(FileKind::Txt, Bytes::from_static(content))
            .await
            .unwrap_err();
        assert_eq!(err, ExtractError::WorkerDied(reason.into()), "for {content:?}");
        works(&ex).await;
    }
    ex.shutdown().await;
}

#[tokio::test]
async fn concurrent_files_use_at_most_max_concurrent_workers_and_reuse_them() {
    let ex = extractor(2, Duration::from_secs(20));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let ex = ex.clone();
        tasks.push(tokio::spawn(async move {
            ex.process(FileKind::Txt, Bytes::from(format!("file number {i}")))
                .await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap()[0].text, format!("file number {i}"));
    }
    let pids = ex.idle_worker_pids();
    assert!((1..=2).contains(&pids.len()), "workers: {pids:?}");
    ex.shutdown().await;
    assert!(
        pids.iter().all(|&pid| !exists(pid)),
        "workers left after shutdown: {pids:?}"
    );
}

#[tokio::test]
async fn dropping_the_extractor_kills_its_workers() {
    let ex = extractor(2, Duration::from_secs(20));
    let (a, b) = tokio::join!(
        ex.process(FileKind::Txt, Bytes::from_static(b"one")),
        ex.process(FileKind::Txt, Bytes::from_static(b"two"))
    );
    a.unwrap();
    b.unwrap();
    let pids = ex.idle_worker_pids();
    assert!(!pids.is_empty());
    drop(ex);
    until("the dropped extractor's workers are gone", || {
        pids.iter().all(|&pid| !alive(pid))
    })
    .await;
}

#[tokio::test]
async fn a_file_on_disk_is_read_by_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.docx");
    std::fs::write(&path, kbsync_fixtures::docx(&["Worker read this from disk."])).unwrap();
    let ex = extractor(1, Duration::from_secs(20));
    let chunks = ex.process_file(FileKind::Docx, &path).await.unwrap();
    assert_eq!(chunks[0].text, "Worker read this from disk.");
    let missing = ex
        .process_file(FileKind::Pdf, dir.path().join("gone.pdf"))
        .await
        .unwrap_err();
    assert!(matches!(missing, ExtractError::Io(_)), "{missing:?}");
    ex.shutdown().await;
}
