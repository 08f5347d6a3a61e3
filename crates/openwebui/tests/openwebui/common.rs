use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kbsync_openwebui::{FileContent, ManifestFile, OpenWebUiClient, OpenWebUiConfig, PublishedFile};
use sha2::{Digest, Sha256};

/// File contents by manifest key; a key without content cannot be read.
#[derive(Default, Clone)]
pub struct Contents(pub HashMap<String, Bytes>);

#[async_trait]
impl FileContent for Contents {
    async fn read(&self, file: &ManifestFile) -> Result<Bytes, String> {
        self.0
            .get(&file.key)
            .cloned()
            .ok_or_else(|| format!("no content for {}", file.key))
    }
}

/// A tree of files: `(path, filename, bytes)`, keyed by `path/filename`.
pub fn tree(files: &[(&str, &str, &[u8])]) -> (Vec<ManifestFile>, Contents) {
    let mut manifest = Vec::new();
    let mut contents = Contents::default();
    for (path, filename, bytes) in files {
        let key = format!("{path}/{filename}");
        manifest.push(ManifestFile {
            key: key.clone(),
            path: path.to_string(),
            filename: filename.to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
            content_type: if filename.ends_with(".pdf") {
                "application/pdf".into()
            } else if filename.ends_with(".md") {
                "text/markdown".into()
            } else {
                "text/plain".into()
            },
        });
        contents.0.insert(key, Bytes::copy_from_slice(bytes));
    }
    (manifest, contents)
}

/// What a knowledge base should hold for `manifest`: sorted `(path, filename, sha256)`.
pub fn expected(manifest: &[ManifestFile]) -> Vec<(String, String, Option<String>)> {
    let mut v: Vec<_> = manifest
        .iter()
        .map(|f| (f.path.clone(), f.filename.clone(), Some(f.sha256.clone())))
        .collect();
    v.sort();
    v
}

pub fn held(files: &[PublishedFile]) -> Vec<(String, String, Option<String>)> {
    let mut v: Vec<_> = files
        .iter()
        .map(|f| (f.path.clone(), f.filename.clone(), f.sha256.clone()))
        .collect();
    v.sort();
    v
}

pub fn client(base_url: &str, key: &str, clock: Arc<dyn kbsync_core::Clock>) -> OpenWebUiClient {
    let mut config = OpenWebUiConfig::new(url::Url::parse(base_url).unwrap(), key);
    config.poll_interval = std::time::Duration::from_millis(100);
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    OpenWebUiClient::new(config, http, clock)
}

pub fn no_progress() -> impl Fn(kbsync_openwebui::PublishProgress) + Send + Sync {
    |_| {}
}
