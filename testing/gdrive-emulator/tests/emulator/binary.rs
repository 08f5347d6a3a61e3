use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kills the child when the test ends, whatever happens.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_its_urls_and_serves_the_generated_domain() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_gdrive-emulator"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--generate",
                "12",
                "--seed",
                "5",
                "--auto-consent",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("generated files:");
            out.push(line);
            if done {
                break;
            }
        }
        out
    })
    .await
    .unwrap();
    let find = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {prefix} in {lines:?}"))
    };
    let control = find("control api url:");
    assert!(find("authorize url:").ends_with("/o/oauth2/v2/auth"));
    assert!(find("token url:").ends_with("/token"));
    assert!(find("api url:").ends_with("/drive/v3"));
    let files: Vec<serde_json::Value> = crate::common::client()
        .get(format!("{control}/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(files.len() > 12, "{}", files.len());
}
