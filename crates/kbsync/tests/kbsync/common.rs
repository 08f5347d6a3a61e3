//! `kbsync serve` processes against an in-process Graph emulator, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use msgraph_emulator::{ClientRegistration, Control, Emulator, RunningEmulator};
use serde_json::{Value, json};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "a long admin password";
pub const CLIENT_ID: &str = "kbsync-process-test";
pub const CLIENT_SECRET: &str = "kbsync-process-test-secret";

pub fn kbsync() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbsync"));
    for (key, _) in std::env::vars() {
        if key.starts_with("KBSYNC_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A free loopback port (kept for the restarts of one instance, whose public URL must not change).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts an emulator whose OAuth client redirects to each of the given kbsync ports.
pub async fn emulator(ports: &[u16]) -> RunningEmulator {
    Emulator::builder()
        .seed(11)
        .auto_consent(true)
        .client(ClientRegistration {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}/api/v1/datasources/onedrive/auth/callback"))
                .collect(),
            display_name: "kbsync process test".into(),
            spa: false,
        })
        .start()
        .await
        .unwrap()
}

/// How to start one instance.
/// Fills the drive under `root` with `count` text files `file-NNNN.txt` spread over `folders`
/// folders (`Folder NN`), file i saying "`words` i markerNNNN"; returns each file's name and path.
pub fn fill_drive(
    drive: &Control,
    drive_id: &str,
    root: &str,
    count: usize,
    folders: usize,
    words: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut files = std::collections::BTreeMap::new();
    for i in 0..count {
        let name = format!("file-{i:04}.txt");
        let path = format!("{root}/Folder {:02}/{name}", i % folders);
        drive
            .put_file(drive_id, &path, format!("{words} {i} marker{i:04}").into_bytes())
            .unwrap();
        files.insert(name, path);
    }
    files
}

#[derive(Clone)]
pub struct Launch {
    pub port: u16,
    pub data_dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Launch {
    pub fn new(port: u16, data_dir: &Path, emu: &RunningEmulator) -> Self {
        let env = [
            ("KBSYNC_SECRET_KEY", "process-test-secret-key"),
            ("KBSYNC_ADMIN_EMAIL", ADMIN_EMAIL),
            ("KBSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("KBSYNC_ONEDRIVE_CLIENT_ID", CLIENT_ID),
            ("KBSYNC_ONEDRIVE_CLIENT_SECRET", CLIENT_SECRET),
            ("KBSYNC_ONEDRIVE_AUTHORIZE_URL", &emu.authorize_url()),
            ("KBSYNC_ONEDRIVE_TOKEN_URL", &emu.token_url()),
            ("KBSYNC_ONEDRIVE_GRAPH_URL", emu.graph_url()),
            ("KBSYNC_SCHEDULER_TICK_SECS", "1"),
            ("KBSYNC_SYNC_LEASE_SECS", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self {
            port,
            data_dir: data_dir.to_owned(),
            env,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn start(&self) -> Instance {
        let mut cmd = kbsync();
        cmd.args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{}", self.port),
            "--data-dir",
        ])
        .arg(&self.data_dir)
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        Instance::spawn(cmd, self.port)
    }
}

/// A running `kbsync serve`; its log is collected (so the pipe never fills) for assertions and
/// failure messages. Killed when dropped.
pub struct Instance {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<String>>,
}

impl Instance {
    pub fn spawn(mut cmd: Command, port: u16) -> Instance {
        Self::adopt(cmd.spawn().unwrap(), port)
    }

    /// Waits for a started process (stderr piped) to listen on `port`.
    pub fn adopt(mut child: Child, port: u16) -> Instance {
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if line.contains("kbsync listening")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = child.kill();
            panic!("kbsync did not start listening:\n{}", log.lock().unwrap());
        }
        Instance {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    #[expect(
        clippy::disallowed_methods,
        reason = "polls a child process against a real-time deadline"
    )]
    pub async fn terminate(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                assert!(exit.success(), "{exit:?}\n{}", self.log());
                return self.log();
            }
            assert!(
                Instant::now() < deadline,
                "kbsync did not stop after SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small HTTP client for one instance.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn login(base: &str, email: &str, password: &str) -> Api {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "login: {}", resp.status());
        let body: Value = resp.json().await.unwrap();
        Api {
            http,
            base: base.to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// The same account on another instance (sessions live in the shared database).
    pub fn on(&self, base: &str) -> Api {
        Api {
            http: self.http.clone(),
            base: base.to_owned(),
            token: self.token.clone(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_onedrive_kb(&self, name: &str) -> String {
        self.create_kb(name, "onedrive").await
    }

    /// A knowledge base of type `kb_type` (`local` or a datasource's name).
    pub async fn create_kb(&self, name: &str, kb_type: &str) -> String {
        let (status, body) = self
            .post("/api/v1/knowledge", json!({"name": name, "type": kb_type}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Connects a OneDrive knowledge base (see [`Api::connect_to`]).
    pub async fn connect(&self, kb: &str) {
        self.connect_to("onedrive", kb).await;
    }

    /// initiate → the emulator's automatic consent → kbsync's callback, as a browser would: the
    /// binding cookie initiate sets goes back to the callback.
    pub async fn connect_to(&self, datasource: &str, kb: &str) {
        let resp = self
            .http
            .get(format!(
                "{}/api/v1/datasources/{datasource}/auth/initiate?knowledge_id={kb}",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let binding = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|c| c.starts_with("kbsync_oauth_binding_"))
            .map(|c| c.split(';').next().unwrap().to_owned());
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "{body}");
        let binding = binding.expect("initiate sets the binding cookie");
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = browser
            .get(body["auth_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 302, "{}", resp.text().await.unwrap());
        let callback = resp.headers()["location"].to_str().unwrap().to_owned();
        let resp = browser
            .get(&callback)
            .header(reqwest::header::COOKIE, binding)
            .send()
            .await
            .unwrap();
        let page = resp.text().await.unwrap();
        assert!(page.contains("kbsync-auth-success"), "{page}");
    }

    pub async fn sync_state(&self, kb: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/knowledge/{kb}/sync")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls until the knowledge base's latest run ended with `status`.
    #[expect(
        clippy::disallowed_methods,
        reason = "polls a child process against a real-time deadline"
    )]
    pub async fn wait_status(&self, kb: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let state = self.sync_state(kb).await;
            if state["running"] == false && state["status"] == status {
                return state;
            }
            assert!(Instant::now() < deadline, "never reached {status}: {state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A document's stored content: its status and text.
    pub async fn file_text(&self, kb: &str, file: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!(
                "{}/api/v1/knowledge/{kb}/files/{file}/content",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Every document of a knowledge base by name, with its path; each must be processed and
    /// present once.
    pub async fn processed_files_by_name(&self, kb: &str) -> std::collections::BTreeMap<String, String> {
        let mut found = std::collections::BTreeMap::new();
        for f in &self.all_files(kb).await {
            assert_eq!(f["status"], "processed", "{f}");
            let previous = found.insert(
                f["name"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
            );
            assert!(previous.is_none(), "duplicate document {f}");
        }
        found
    }

    /// The knowledge base's runs, newest first; none may be left `syncing` (a run cut short is
    /// closed as failed).
    pub async fn runs_none_left_syncing(&self, kb: &str) -> Vec<Value> {
        let (_, runs) = self
            .get(&format!("/api/v1/knowledge/{kb}/sync/runs?limit=100"))
            .await;
        let runs = runs["runs"].as_array().unwrap().clone();
        assert!(runs.iter().all(|r| r["status"] != "syncing"), "{runs:?}");
        runs
    }

    /// Every document of a knowledge base, page by page.
    pub async fn all_files(&self, kb: &str) -> Vec<Value> {
        let mut files = Vec::new();
        loop {
            let (status, body) = self
                .get(&format!(
                    "/api/v1/knowledge/{kb}/files?limit=200&offset={}",
                    files.len()
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            let items = body["items"].as_array().unwrap().clone();
            if items.is_empty() {
                return files;
            }
            files.extend(items);
        }
    }
}

/// A PostgreSQL cluster of a test's own (the machine's shared server is never restarted: other
/// tests use it): initdb into a temporary directory, trust authentication, a free port, its
/// socket in that directory. Run as the `postgres` OS user when the test runs as root, since
/// PostgreSQL refuses root. Stopped and removed when dropped, also when the test fails.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    // Dropped last: the cluster is stopped before its directory goes.
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Starts a cluster, or `None` (with a message) when PostgreSQL's server programs are not
    /// installed and CI is unset; with CI set, their absence fails the test.
    pub fn start() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .max();
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)"
            );
            eprintln!("skipped: PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)");
            return None;
        };
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::tempdir().unwrap();
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the cluster's directory to postgres");
        }
        let cluster = PrivatePostgres {
            data: dir.path().join("data"),
            port: free_port(),
            bin,
            as_postgres,
            dir,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                cluster.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        cluster.pg_ctl(&["start"]);
        Some(cluster)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast restart (`pg_ctl restart -m fast`): every connection is closed, the server is
    /// back when this returns.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast"]);
    }

    fn pg_ctl(&self, action: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let mut args = vec![
            "-D",
            self.data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &options,
            "-w",
            "-t",
            "60",
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                self.data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
