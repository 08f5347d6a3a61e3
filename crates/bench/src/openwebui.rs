//! `openwebui-publish`: 1,000 small files (50 with `--small`) into a real Open WebUI 0.12, through
//! kbsync's `publish()` (sync diff, folders, concurrent uploads, status polling, cleanup) against
//! Open WebUI's own upload path (its UI's: one `POST /files/` with the knowledge base in the metadata
//! per file, one after the other, each waited for), each into a fresh knowledge base of a fresh Open
//! WebUI. Not part of `all`; it skips with a message when Open WebUI is not installed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use async_trait::async_trait;
use bytes::Bytes;
use kbsync_core::SystemClock;
use kbsync_kit::openwebui::OpenWebUi;
use kbsync_openwebui::{FileContent, ManifestFile, OpenWebUiClient, OpenWebUiConfig};
use sha2::{Digest, Sha256};

struct Generated;

#[async_trait]
impl FileContent for Generated {
    async fn read(&self, file: &ManifestFile) -> Result<Bytes, String> {
        Ok(body(&file.key))
    }
}

fn body(key: &str) -> Bytes {
    Bytes::from(format!("Document {key}.\nSome text to index, about {key}.\n"))
}

fn manifest(n: usize) -> Vec<ManifestFile> {
    (0..n)
        .map(|i| {
            let key = format!("doc-{i:05}");
            let bytes = body(&key);
            ManifestFile {
                path: format!("folder-{}", i % 10),
                filename: format!("{key}.txt"),
                sha256: hex::encode(Sha256::digest(&bytes)),
                size: bytes.len() as u64,
                content_type: "text/plain".into(),
                key,
            }
        })
        .collect()
}

pub async fn run(small: bool) -> Result<()> {
    let n = if small { 50 } else { 1000 };
    let Some(owui) = OpenWebUi::start().await else {
        println!("openwebui-publish: skipped (Open WebUI is not installed)");
        return Ok(());
    };
    let files = manifest(n);
    let mut config = OpenWebUiConfig::new(url::Url::parse(owui.base_url())?, owui.admin_token());
    config.poll_interval = Duration::from_millis(100);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let client = OpenWebUiClient::new(config.clone(), http.clone(), Arc::new(SystemClock));

    let kb = client.create_knowledge("bench publish", "kbsync-bench").await?;
    let t = Instant::now();
    let report = client.publish(&kb.id, &files, &Generated, &|_| {}).await?;
    let publish_secs = t.elapsed().as_secs_f64();
    if report.uploaded != n || !report.failed.is_empty() {
        bail!("publish did not upload every file: {report:?}");
    }
    let t = Instant::now();
    let again = client.publish(&kb.id, &files, &Generated, &|_| {}).await?;
    let noop_secs = t.elapsed().as_secs_f64();
    if again.uploaded != 0 {
        bail!("the second publish uploaded again: {again:?}");
    }

    // Open WebUI's own path, into a second knowledge base (flat: its UI uploads into the folder shown).
    let kb2 = client.create_knowledge("bench ui path", "kbsync-bench").await?;
    let t = Instant::now();
    for f in &files {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(body(&f.key).to_vec())
                    .file_name(f.filename.clone())
                    .mime_str("text/plain")?,
            )
            .text(
                "metadata",
                serde_json::json!({"knowledge_id": kb2.id}).to_string(),
            );
        let up: serde_json::Value = http
            .post(format!("{}/api/v1/files/", owui.base_url()))
            .bearer_auth(owui.admin_token())
            .multipart(form)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = up["id"].as_str().unwrap_or_default().to_string();
        loop {
            let s: serde_json::Value = http
                .get(format!("{}/api/v1/files/{id}/process/status", owui.base_url()))
                .bearer_auth(owui.admin_token())
                .send()
                .await?
                .json()
                .await?;
            match s["status"].as_str() {
                Some("completed") => break,
                Some("failed") => bail!("Open WebUI failed to process {}", f.filename),
                _ => tokio::time::sleep(config.poll_interval).await,
            }
        }
    }
    let ui_secs = t.elapsed().as_secs_f64();
    let held = client.knowledge_files(&kb2.id).await?.len();
    if held != n {
        bail!("the UI path left {held} files, not {n}");
    }
    println!("openwebui-publish: {n} files of ~60 bytes in 10 folders, Open WebUI 0.12.4 on this machine");
    println!(
        "  kbsync publish():        {publish_secs:7.1} s  {:7.1} files/s  (concurrency {})",
        n as f64 / publish_secs,
        config.upload_concurrency
    );
    println!(
        "  Open WebUI's UI path:    {ui_secs:7.1} s  {:7.1} files/s  (sequential POST /files/ + status)",
        n as f64 / ui_secs
    );
    println!("  ratio:                   {:7.2}x", ui_secs / publish_secs);
    println!("  publish again (no-op):   {noop_secs:7.2} s");
    Ok(())
}
