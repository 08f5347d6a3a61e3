//! Extraction in `kbsync extract-worker` processes: the same text as in-process extraction, no
//! worker left behind, and a served sync whose documents are extracted by workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use kbsync_ingest::{Extractor, FileKind, IngestConfig, Isolation, WorkerCommand};
use serde_json::json;

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Launch, free_port};

fn extractor(isolation: Isolation) -> Extractor {
    Extractor::with_isolation(
        IngestConfig {
            max_concurrent: 2,
            ..IngestConfig::default()
        },
        isolation,
    )
}

fn workers() -> Isolation {
    Isolation::Process(WorkerCommand::new(
        env!("CARGO_BIN_EXE_kbsync"),
        ["extract-worker"],
    ))
}

/// The pids of the live `extract-worker` children of `parent`.
fn worker_children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") || fields.get(1) != Some(&parent.to_string().as_str()) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("extract-worker") {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_files_extract_identically_in_worker_processes_and_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = kbsync_fixtures::text_corpus(7, 3000);
    let mut files: Vec<(String, Vec<u8>)> = kbsync_fixtures::corpus::every_type(&corpus)
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect();
    files.push((
        "encrypted.pdf".into(),
        kbsync_fixtures::pdf_encrypted_stub(&["secret"]),
    ));
    files.push(("scanned.pdf".into(), kbsync_fixtures::pdf_image_only(2)));
    files.push(("broken.docx".into(), b"PK not really a zip".to_vec()));
    let in_process = extractor(Isolation::Thread);
    let isolated = extractor(workers());
    for (name, bytes) in &files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let kind = FileKind::detect(name, None).unwrap();
        let expected = in_process.process_file(kind, &path).await;
        let got = isolated.process_file(kind, &path).await;
        assert_eq!(got, expected, "{name}");
        let from_memory = isolated.process(kind, bytes.clone().into()).await;
        assert_eq!(from_memory, expected, "{name} sent as bytes");
    }
    let pids = isolated.idle_worker_pids();
    assert!((1..=2).contains(&pids.len()), "{pids:?}");
    isolated.shutdown().await;
    let me = std::process::id();
    assert!(
        worker_children(me).iter().all(|p| !pids.contains(p)),
        "workers left: {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::disallowed_methods,
    reason = "polls a process list against a real-time deadline"
)]
async fn no_worker_process_outlives_a_dropped_extractor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.txt");
    std::fs::write(&path, "some text").unwrap();
    let isolated = extractor(workers());
    let (a, b) = tokio::join!(
        isolated.process_file(FileKind::Txt, &path),
        isolated.process_file(FileKind::Txt, &path)
    );
    assert_eq!(a.unwrap()[0].text, "some text");
    assert_eq!(b.unwrap()[0].text, "some text");
    let pids = isolated.idle_worker_pids();
    assert!(!pids.is_empty());
    drop(isolated);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "workers {pids:?} outlived the extractor"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::disallowed_methods,
    reason = "polls a process list against a real-time deadline"
)]
async fn a_served_sync_indexes_documents_through_extraction_workers() {
    let port = free_port();
    let emu = crate::common::emulator(&[port]).await;
    let drive = emu.control();
    let drive_id = drive.default_drive_id();
    let docs: [(&str, Vec<u8>); 3] = [
        (
            "/Docs/report.pdf",
            kbsync_fixtures::pdf(&["The quarterly pelican report."]),
        ),
        (
            "/Docs/minutes.docx",
            kbsync_fixtures::docx(&["Minutes about the flamingo budget."]),
        ),
        ("/Docs/notes.txt", b"Notes on the heron migration.".to_vec()),
    ];
    for (path, bytes) in &docs {
        drive.put_file(&drive_id, path, bytes.clone()).unwrap();
    }
    let folder = drive.item_by_path(&drive_id, "/Docs").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::new(port, dir.path(), &emu)
        .env("KBSYNC_EXTRACT_ISOLATION", "process")
        .env("KBSYNC_EXTRACT_MEMORY_MB", "512")
        .env("KBSYNC_INGEST_CONCURRENCY", "2");
    let instance = launch.start();
    let api = Api::login(&instance.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let kb = api.create_onedrive_kb("Birds").await;
    api.connect(&kb).await;
    let (status, body) = api
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            json!({"datasource": "onedrive", "items": [{"type": "folder", "drive_id": drive_id, "item_id": folder.id, "name": "Docs", "path": "/Docs"}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    api.wait_status(&kb, "completed", Duration::from_secs(120)).await;
    let found = api.processed_files_by_name(&kb).await;
    assert_eq!(found.len(), 3, "{found:?}");
    for (word, name) in [
        ("pelican", "report.pdf"),
        ("flamingo", "minutes.docx"),
        ("heron", "notes.txt"),
    ] {
        let (_, hits) = api.get(&format!("/api/v1/search?q={word}")).await;
        assert_eq!(hits["results"][0]["name"], name, "{hits}");
    }
    // The server extracted through its own `kbsync extract-worker` children, started with the
    // configured memory limit, and kept them for the next files.
    let server = instance.child.id();
    let workers = worker_children(server);
    assert!(
        (1..=2).contains(&workers.len()),
        "extract-worker children of the server: {workers:?}\n{}",
        instance.log()
    );
    for pid in &workers {
        let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
            .replace('\0', " ");
        assert!(
            cmdline.contains("extract-worker --memory-limit-mb 512"),
            "{cmdline}"
        );
    }
    instance.terminate().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "workers {workers:?} outlived the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    emu.shutdown().await;
}
