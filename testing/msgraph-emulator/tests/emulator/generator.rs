use crate::common::*;
use std::collections::{HashMap, HashSet};

fn depth(folders: &HashMap<&str, &serde_json::Value>, start: &str) -> usize {
    let mut d = 0;
    let mut id = start.to_string();
    while let Some(p) = folders
        .get(id.as_str())
        .and_then(|f| f["parentReference"]["id"].as_str())
    {
        d += 1;
        id = p.to_string();
    }
    d
}

#[tokio::test]
async fn generate_builds_a_nested_drive_of_mixed_types_with_real_text() {
    let env = env_with(builder().generate(400)).await;
    let (items, _, _) = env
        .delta_round(&format!("/drives/{}/root/delta?$top=1000", env.drive))
        .await;
    let files: Vec<_> = items.iter().filter(|i| i.get("file").is_some()).collect();
    assert_eq!(files.len(), 400);
    let exts: HashSet<&str> = files
        .iter()
        .map(|f| f["name"].as_str().unwrap().rsplit('.').next().unwrap())
        .collect();
    for e in ["txt", "md", "html", "csv", "json", "docx", "xlsx", "pptx", "pdf"] {
        assert!(exts.contains(e), "missing {e}");
    }
    let folders: HashMap<&str, &serde_json::Value> = items
        .iter()
        .filter(|i| i.get("folder").is_some())
        .map(|i| (i["id"].as_str().unwrap(), i))
        .collect();
    let max_depth = folders.keys().map(|id| depth(&folders, id)).max().unwrap();
    assert!((2..=4).contains(&max_depth), "max folder depth {max_depth}");
    let per_folder = files.len() / (folders.len() - 1);
    assert!((8..=40).contains(&per_folder), "{per_folder} files per folder");
    let sizes: Vec<u64> = files.iter().map(|f| f["size"].as_u64().unwrap()).collect();
    assert!(sizes.iter().all(|&s| s > 200));
    assert!(sizes.iter().any(|&s| s > 10_000));
    let txt = files
        .iter()
        .find(|f| f["name"].as_str().unwrap().ends_with(".txt"))
        .unwrap();
    let body = env
        .http
        .get(txt["@microsoft.graph.downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.split_whitespace().count() > 50);
    let docx = files
        .iter()
        .find(|f| f["name"].as_str().unwrap().ends_with(".docx"))
        .unwrap();
    let bytes = env
        .http
        .get(docx["@microsoft.graph.downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..2], b"PK");
    let pdf = files
        .iter()
        .find(|f| f["name"].as_str().unwrap().ends_with(".pdf"))
        .unwrap();
    let bytes = env
        .http
        .get(pdf["@microsoft.graph.downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    env.shutdown().await;
}

#[tokio::test]
async fn generated_drive_is_deterministic_for_a_seed() {
    async fn listing(seed: u64) -> Vec<(String, String, Option<String>)> {
        let env = env_with(builder().seed(seed).generate(50)).await;
        let root = env.ctl.drive(&env.drive).unwrap().root_id;
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            for c in env.ctl.children(&env.drive, &id).unwrap() {
                if c.folder {
                    stack.push(c.id.clone());
                }
                out.push((c.id, c.path, c.quick_xor_hash));
            }
        }
        env.shutdown().await;
        out
    }
    let a = listing(11).await;
    assert_eq!(a, listing(11).await);
    assert_ne!(a, listing(12).await);
}
