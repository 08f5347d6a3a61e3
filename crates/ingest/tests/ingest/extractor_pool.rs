//! `Extractor::process` contains panics and slow extractions, and never runs more than `max_concurrent`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use kbsync_fixtures as fx;
use kbsync_ingest::{ExtractError, Extractor, FileKind, IngestConfig};

fn extractor(max_concurrent: usize, timeout: Duration) -> Extractor {
    Extractor::new(IngestConfig {
        max_concurrent,
        per_file_timeout: timeout,
        ..IngestConfig::default()
    })
}

#[tokio::test]
async fn process_extracts_and_chunks() {
    let ex = Extractor::new(IngestConfig {
        chunk_size: 200,
        chunk_overlap: 20,
        ..IngestConfig::default()
    });
    let corpus = fx::text_corpus(21, 3000);
    let docx = fx::docx(&corpus.split("\n\n").collect::<Vec<_>>());
    let chunks = ex.process(FileKind::Docx, Bytes::from(docx)).await.unwrap();
    assert!(chunks.len() > 50);
    assert!(chunks.iter().all(|c| !c.text.is_empty()
        && c.text.chars().count() <= 200
        && c.end - c.start == c.text.chars().count()));
    assert_eq!(ex.config().chunk_size, 200);
}

#[tokio::test]
async fn errors_come_back_as_values() {
    let ex = Extractor::new(IngestConfig::default());
    let err = ex
        .process(FileKind::Pdf, Bytes::from_static(b"garbage"))
        .await
        .unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt(_)));
    let err = ex
        .process(FileKind::Pdf, Bytes::from(fx::pdf_image_only(1)))
        .await
        .unwrap_err();
    assert_eq!(err, ExtractError::NoText);
}

#[tokio::test]
async fn a_panicking_extraction_is_contained() {
    let ex = extractor(1, Duration::from_secs(30));
    let result: Result<(), _> = ex.run(|_| panic!("parser bug")).await;
    assert_eq!(result.unwrap_err(), ExtractError::Panicked);
    // The pool still works afterwards (the permit was released).
    let chunks = ex
        .process(FileKind::Txt, Bytes::from_static(b"still alive"))
        .await
        .unwrap();
    assert_eq!(
        chunks,
        vec![kbsync_ingest::TextChunk {
            text: "still alive".to_string(),
            start: 0,
            end: 11
        }]
    );
}

#[tokio::test]
async fn a_slow_extraction_times_out_and_is_cancelled() {
    let ex = extractor(1, Duration::from_millis(100));
    let (tx, rx) = mpsc::channel::<bool>();
    let result: Result<(), _> = ex
        .run(move |budget| {
            // Busy until told to stop: the budget is cancelled once the caller gave up.
            while !budget.is_cancelled() {
                std::thread::yield_now();
            }
            tx.send(true).unwrap();
            budget.check()
        })
        .await;
    assert_eq!(
        result.unwrap_err(),
        ExtractError::Timeout(Duration::from_millis(100))
    );
    // The worker noticed the cancellation and ended by itself.
    assert!(
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap()
    );
    // ... and gave its permit back.
    let ok = ex
        .process(FileKind::Txt, Bytes::from_static(b"next"))
        .await
        .unwrap();
    assert_eq!(ok.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), ["next"]);
}

#[tokio::test]
async fn a_big_file_with_a_tiny_timeout_times_out() {
    let corpus = fx::text_corpus(22, 200_000);
    let pdf = fx::pdf(&corpus.split("\n\n").collect::<Vec<_>>());
    let ex = extractor(1, Duration::from_millis(5));
    let err = ex.process(FileKind::Pdf, Bytes::from(pdf)).await.unwrap_err();
    assert_eq!(err, ExtractError::Timeout(Duration::from_millis(5)));
    assert!(err.to_string().contains("5 ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_concurrent_at_once() {
    const MAX: usize = 2;
    const TASKS: usize = 10;
    let ex = extractor(MAX, Duration::from_secs(60));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(go_rx));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let (ex, running, peak, started_tx, go_rx) = (
            ex.clone(),
            running.clone(),
            peak.clone(),
            started_tx.clone(),
            go_rx.clone(),
        );
        handles.push(tokio::spawn(async move {
            ex.run(move |_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                started_tx.send(()).unwrap();
                go_rx.lock().unwrap().recv().unwrap();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
            .await
        }));
    }
    // Wait until MAX have started, check nobody else got in, then release them one at a time.
    for _ in 0..MAX {
        started_rx.recv().await.unwrap();
    }
    assert_eq!(running.load(Ordering::SeqCst), MAX);
    for released in 0..TASKS {
        go_tx.send(()).unwrap();
        if released + MAX < TASKS {
            started_rx.recv().await.unwrap();
        }
        assert!(running.load(Ordering::SeqCst) <= MAX);
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), MAX);
}

#[tokio::test(flavor = "current_thread")]
async fn process_does_not_block_the_runtime() {
    // On a single-threaded runtime a blocking extraction would starve this ticker.
    let ex = extractor(1, Duration::from_secs(60));
    let corpus = fx::text_corpus(23, 50_000);
    let pdf = Bytes::from(fx::pdf(&corpus.split("\n\n").collect::<Vec<_>>()));
    let work = tokio::spawn({
        let ex = ex.clone();
        async move { ex.process(FileKind::Pdf, pdf).await }
    });
    let mut ticks = 0;
    while !work.is_finished() {
        tokio::task::yield_now().await;
        ticks += 1;
    }
    assert!(ticks > 1, "the runtime kept running while extracting");
    assert!(!work.await.unwrap().unwrap().is_empty());
}

#[tokio::test]
async fn only_a_timeout_or_a_crash_of_the_extractor_counts_as_a_strike() {
    let ex = extractor(2, Duration::from_millis(200));
    let crashed: Result<(), _> = ex.run(|_| panic!("parser bug")).await;
    assert!(crashed.unwrap_err().counts_as_strike());
    // A real file the extractor times out on: millions of empty XML elements.
    let slow = format!("<r>{}</r>", "<a/>".repeat(8_000_000));
    let timed_out = ex.process(FileKind::Xml, Bytes::from(slow)).await.unwrap_err();
    assert_eq!(timed_out, ExtractError::Timeout(Duration::from_millis(200)));
    assert!(timed_out.counts_as_strike());
    let damaged = ex
        .process(FileKind::Pdf, Bytes::from_static(b"garbage"))
        .await
        .unwrap_err();
    assert!(!damaged.counts_as_strike(), "{damaged:?}");
    let scanned = ex
        .process(FileKind::Pdf, Bytes::from(fx::pdf_image_only(1)))
        .await
        .unwrap_err();
    assert!(!scanned.counts_as_strike());
}
