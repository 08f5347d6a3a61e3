use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn binary_prints_its_urls_and_serves_a_generated_drive() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_msgraph-emulator"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--generate",
            "60",
            "--seed",
            "3",
            "--auto-consent",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = std::collections::HashMap::new();
    while let Some(line) = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        if let Some((k, v)) = line.split_once(": ") {
            printed.insert(k.trim().to_string(), v.trim().to_string());
        }
        if line.starts_with("generated files:") {
            break;
        }
    }
    for k in [
        "graph base url",
        "authority url",
        "control api url",
        "default user id",
        "default drive id",
        "client id",
        "client secret",
    ] {
        assert!(printed.contains_key(k), "missing {k}: {printed:?}");
    }
    let http = reqwest::Client::new();
    let control = &printed["control api url"];
    let user = &printed["default user id"];
    let tok: Value = http
        .post(format!("{control}/users/{user}/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = tok["access_token"].as_str().unwrap();
    let children: Value = http
        .get(format!(
            "{}/drives/{}/root/children",
            printed["graph base url"], printed["default drive id"]
        ))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!children["value"].as_array().unwrap().is_empty());
    child.kill().await.unwrap();
}
