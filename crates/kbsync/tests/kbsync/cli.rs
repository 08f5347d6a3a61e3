//! The `kbsync` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn kbsync() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbsync"));
    // The tests decide every setting themselves.
    for (key, _) in std::env::vars() {
        if key.starts_with("KBSYNC_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn config_example_prints_a_file_that_serve_accepts() {
    let out = kbsync().args(["config", "example"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bind = \"127.0.0.1:8080\""), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kbsync.toml");
    std::fs::write(&path, &text).unwrap();
    // `migrate` loads the same settings as `serve` and exits.
    let out = kbsync()
        .args(["migrate", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("data/kbsync.sqlite").exists());
}

#[test]
fn a_bad_setting_stops_start_up_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("KBSYNC_BIND", "not-an-address"),
        ("KBSYNC_DATABASE_URL", "mysql://x"),
        ("KBSYNC_CHUNK_SIZE", "ten"),
    ] {
        let out = kbsync()
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "bindd = 1\n").unwrap();
    let out = kbsync()
        .args(["serve", "--config"])
        .arg(&bad_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bindd"));
}

/// `kbsync user create` with the password on standard input.
fn user_create_from_stdin(data_dir: &std::path::Path, email: &str, input: &str) -> std::process::Output {
    let mut child = kbsync()
        .args([
            "user",
            "create",
            "--email",
            email,
            "--password-stdin",
            "--admin",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Whether `email` can sign in with `password`, through a server on the data directory.
fn can_log_in(data_dir: &std::path::Path, email: &str, password: &str) -> bool {
    let mut child = kbsync()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|line| line.contains("kbsync listening"))
        .and_then(|line| {
            line.split("addr=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
        .expect("the server never said where it listens");
    std::thread::spawn(move || lines.for_each(drop));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{addr}/api/v1/auth/login"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
            .status()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    status == reqwest::StatusCode::OK
}

#[test]
fn user_create_reads_the_password_from_stdin_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let out = user_create_from_stdin(dir.path(), "ops@example.com", "a long password\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created admin user ops@example.com"));
    let out = user_create_from_stdin(dir.path(), "OPS@example.com", "a long password\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // The line break that ends the input is not part of the password.
    assert!(can_log_in(dir.path(), "ops@example.com", "a long password"));
}

#[test]
fn user_create_reads_the_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password.txt");
    std::fs::write(&file, "a password from a file\r\n").unwrap();
    let data = dir.path().join("data");
    let out = kbsync()
        .args(["user", "create", "--email", "file@example.com", "--password-file"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user user file@example.com"));
    assert!(can_log_in(&data, "file@example.com", "a password from a file"));

    let out = kbsync()
        .args([
            "user",
            "create",
            "--email",
            "missing@example.com",
            "--password-file",
        ])
        .arg(dir.path().join("no-such-file"))
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-file"));
}

#[test]
fn user_create_refuses_a_password_on_the_command_line_and_creates_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let out = kbsync()
        .args([
            "user",
            "create",
            "--email",
            "ops@example.com",
            "--password",
            "a long password",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--password is not accepted"), "{stderr}");
    assert!(stderr.contains("--password-stdin"), "{stderr}");
    // Nobody was created: the same email is free for a proper attempt.
    let out = user_create_from_stdin(dir.path(), "ops@example.com", "a long password\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A build without the demo refuses `--demo` with a message that says why.
#[cfg(not(feature = "demo"))]
#[test]
fn serve_demo_is_refused_without_the_demo_feature() {
    let dir = tempfile::tempdir().unwrap();
    let out = kbsync()
        .args(["serve", "--demo", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("built without the demo"), "{stderr}");
}

/// The README's first command, on port 0: the demo is searchable, and SIGTERM stops it cleanly.
#[cfg(feature = "demo")]
#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "a synchronous test polls a child process against a real-time deadline"
)]
fn serve_demo_answers_search_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = kbsync()
        .args(["serve", "--demo", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut warned = false;
    for line in stderr.lines() {
        let line = line.unwrap();
        // Start-up says plainly that an account with a public password exists.
        warned |= line.contains("publicly known demo password");
        if line.contains("kbsync listening") {
            addr = line
                .split("addr=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned);
            break;
        }
    }
    let base = format!("http://{}", addr.expect("the server never said where it listens"));
    assert!(warned, "no warning about the demo account's known password");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let login: serde_json::Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"email": "demo@kbsync.local", "password": "kbsync-demo"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body: serde_json::Value = http
                .get(format!("{base}/api/v1/search?q=onboarding"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if body["results"].as_array().is_some_and(|r| !r.is_empty()) {
                assert_eq!(body["results"][0]["name"], "Onboarding checklist.docx");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "demo documents never became searchable: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "{exit:?}");
            break;
        }
        assert!(Instant::now() < deadline, "kbsync did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A generated secret key was kept, private to its owner.
    let meta = std::fs::metadata(dir.path().join("secret_key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
}

/// `--demo` against a database it did not create (here one with a real admin) must not add an
/// admin account with a public password; it says so at start-up.
#[cfg(feature = "demo")]
#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "a synchronous test polls a child process against a real-time deadline"
)]
fn serve_demo_on_an_existing_database_creates_no_demo_account() {
    let dir = tempfile::tempdir().unwrap();
    let out = user_create_from_stdin(dir.path(), "ops@example.com", "a long password\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut child = kbsync()
        .args(["serve", "--demo", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    let mut refused = false;
    let mut known_password = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        refused |= line.contains("not creating the demo account");
        known_password |= line.contains("publicly known demo password");
        if line.contains("kbsync listening") {
            addr = line
                .split("addr=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned);
            break;
        }
    }
    // Keep reading the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        refused,
        "start-up did not say that the demo account was not created"
    );
    assert!(!known_password);
    let base = format!("http://{}", addr.expect("the server never said where it listens"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let login = |email: &'static str, password: &'static str| {
            http.post(format!("{base}/api/v1/auth/login"))
                .json(&serde_json::json!({"email": email, "password": password}))
                .send()
        };
        assert_eq!(
            login("demo@kbsync.local", "kbsync-demo").await.unwrap().status(),
            reqwest::StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            login("ops@example.com", "a long password")
                .await
                .unwrap()
                .status(),
            reqwest::StatusCode::OK
        );
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "{exit:?}");
            break;
        }
        assert!(Instant::now() < deadline, "kbsync did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
