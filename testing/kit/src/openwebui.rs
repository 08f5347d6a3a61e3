//! A real Open WebUI 0.12 for the tests that publish into it: `open-webui serve` from the virtual
//! environment `testing/openwebui-peer/install.sh` makes (in [`INSTALL_DIR_ENV`] or
//! [`DEFAULT_INSTALL_DIR`]), offline, with a fresh data directory, a free port of 127.0.0.1 and the
//! admin [`ADMIN_EMAIL`].
//!
//! Without the install, [`OpenWebUi::start`] and [`OpenWebUi::shared`] return `None` and the test
//! skips with a message, unless `CI` is set: then they panic, so CI never skips these tests silently.
//! Startup takes ~40 s on two cores, so tests of one binary share [`OpenWebUi::shared`] where they
//! can (each makes its own knowledge bases); a test that stops or restarts the server starts its own.
//!
//! The server runs under a small shell watchdog that kills it when the test process goes away, so
//! the shared instance (a `static`, never dropped) does not outlive `cargo test`; dropping an
//! [`OpenWebUi`] kills the server and removes its data directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// Where `install.sh` puts the virtual environment unless [`INSTALL_DIR_ENV`] says otherwise.
pub const DEFAULT_INSTALL_DIR: &str = "/opt/kbsync-peers/openwebui";
/// Overrides [`DEFAULT_INSTALL_DIR`] (for `install.sh` and for the tests alike).
pub const INSTALL_DIR_ENV: &str = "KBSYNC_OPENWEBUI_DIR";
/// The first admin, created from `WEBUI_ADMIN_EMAIL` / `WEBUI_ADMIN_PASSWORD` at the first start.
pub const ADMIN_EMAIL: &str = "admin@kbsync.test";
pub const ADMIN_PASSWORD: &str = "kbsync-admin-Passw0rd!";
/// The password of users made by [`OpenWebUi::create_user`].
pub const USER_PASSWORD: &str = "kbsync-user-Passw0rd!";

/// How long Open WebUI may take to answer `/health` (~40 s on an idle 2-core machine; tests compile
/// and run beside it).
const START_TIMEOUT: Duration = Duration::from_secs(240);

/// Kills the server (`$1…`) when the test process (`KBSYNC_PARENT_PID`) is gone, and removes the
/// data directory then when `KBSYNC_REMOVE_DIR` names it. Its own pid file lets `stop` kill the
/// server itself.
const WATCHDOG: &str = r#"
"$@" &
server=$!
echo "$server" > "$KBSYNC_SERVER_PID_FILE"
trap 'kill -KILL $server 2>/dev/null; exit 0' TERM INT
while kill -0 "$KBSYNC_PARENT_PID" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 1; done
kill -KILL "$server" 2>/dev/null
wait "$server" 2>/dev/null
if [ -n "$KBSYNC_REMOVE_DIR" ] && ! kill -0 "$KBSYNC_PARENT_PID" 2>/dev/null; then rm -rf "$KBSYNC_REMOVE_DIR"; fi
"#;

fn install_dir() -> PathBuf {
    std::env::var_os(INSTALL_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_INSTALL_DIR), PathBuf::from)
}

fn executable() -> PathBuf {
    install_dir().join("venv/bin/open-webui")
}

/// `None` (after a message) when Open WebUI is not installed and `CI` is unset; panics under `CI`.
fn available() -> Option<PathBuf> {
    let exe = executable();
    if exe.is_file() {
        return Some(exe);
    }
    let why = format!(
        "Open WebUI is not installed in {} (run testing/openwebui-peer/install.sh)",
        install_dir().display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}, and CI is set: the Open WebUI tests must run in CI");
    }
    eprintln!("\n\n*** SKIPPED: Open WebUI is unavailable: {why} ***\n");
    None
}

/// A running Open WebUI.
pub struct OpenWebUi {
    exe: PathBuf,
    port: u16,
    base_url: String,
    /// Holds DATA_DIR (`data/`), the log and the pid file.
    root: PathBuf,
    /// Removes `root` on drop (`None` for the shared instance: its watchdog removes it).
    _dir: Option<tempfile::TempDir>,
    shared: bool,
    watchdog: Mutex<Option<Child>>,
    admin_token: Mutex<String>,
}

impl std::fmt::Debug for OpenWebUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenWebUi")
            .field("base_url", &self.base_url)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

static SHARED: OnceCell<Option<OpenWebUi>> = OnceCell::const_new();

impl OpenWebUi {
    /// Starts a fresh Open WebUI of the test's own and signs the admin in; `None` when it is not
    /// installed (and `CI` is unset).
    pub async fn start() -> Option<OpenWebUi> {
        let exe = available()?;
        let dir = tempfile::Builder::new()
            .prefix("kbsync-openwebui-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let server = Self::launch(exe, root, Some(dir), false);
        server.wait_ready().await;
        Some(server)
    }

    /// The instance shared by the tests of this process, started by the first caller.
    pub async fn shared() -> Option<&'static OpenWebUi> {
        SHARED
            .get_or_init(|| async {
                let exe = available()?;
                let dir = tempfile::Builder::new()
                    .prefix("kbsync-openwebui-shared-")
                    .tempdir()
                    .unwrap();
                // Its watchdog removes the directory: a static is never dropped.
                let root = dir.keep();
                let server = Self::launch(exe, root, None, true);
                server.wait_ready().await;
                Some(server)
            })
            .await
            .as_ref()
    }

    fn launch(exe: PathBuf, root: PathBuf, dir: Option<tempfile::TempDir>, shared: bool) -> Self {
        std::fs::create_dir_all(root.join("data")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = OpenWebUi {
            exe,
            port,
            base_url: format!("http://127.0.0.1:{port}"),
            root,
            _dir: dir,
            shared,
            watchdog: Mutex::new(None),
            admin_token: Mutex::new(String::new()),
        };
        server.spawn();
        server
    }

    fn spawn(&self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let data = self.root.join("data");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("openwebui-watchdog")
            .arg(&self.exe)
            .args(["serve", "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .current_dir(&data)
            .env("KBSYNC_PARENT_PID", std::process::id().to_string())
            .env("KBSYNC_SERVER_PID_FILE", self.root.join("server.pid"))
            .env(
                "KBSYNC_REMOVE_DIR",
                if self.shared {
                    self.root.as_os_str()
                } else {
                    "".as_ref()
                },
            )
            .env("DATA_DIR", &data)
            .env("OFFLINE_MODE", "true")
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("BYPASS_EMBEDDING_AND_RETRIEVAL", "true")
            .env("ENABLE_OLLAMA_API", "false")
            .env("ENABLE_OPENAI_API", "false")
            .env("ENABLE_API_KEYS", "true")
            .env("ENABLE_FORWARD_USER_INFO_HEADERS", "true")
            .env("WEBUI_SECRET_KEY", "kbsync-test-secret-key")
            .env("WEBUI_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("WEBUI_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("WEBUI_ADMIN_NAME", "kbsync admin")
            .env("ENABLE_VERSION_UPDATE_CHECK", "false")
            .env("SCARF_NO_ANALYTICS", "true")
            .env("DO_NOT_TRACK", "true")
            .env("ANONYMIZED_TELEMETRY", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        *self.watchdog.lock().unwrap() = Some(command.spawn().expect("spawn Open WebUI"));
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("openwebui.log")
    }

    /// The server's log so far (for a failing test's message).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        log[log.floor_char_boundary(start)..].to_string()
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the start-up deadline is real elapsed time"
    )]
    async fn wait_ready(&self) {
        let http = client();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.watchdog.lock().unwrap().as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "Open WebUI exited ({status}) while starting; log:\n{}",
                    self.log_tail()
                );
            }
            let healthy = http
                .get(format!("{}/health", self.base_url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Open WebUI did not answer /health within {START_TIMEOUT:?}; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let answer: Value = http
            .post(format!("{}/api/v1/auths/signin", self.base_url))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        *self.admin_token.lock().unwrap() = answer["token"].as_str().expect("token").to_string();
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, no `/api`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The admin's JWT (renewed by every start).
    pub fn admin_token(&self) -> String {
        self.admin_token.lock().unwrap().clone()
    }

    /// A new `sk-…` API key of the admin (replacing its previous one).
    pub async fn admin_api_key(&self) -> String {
        let answer = self.post("/api/v1/auths/api_key", &json!({})).await;
        answer["api_key"].as_str().expect("api_key").to_string()
    }

    /// Makes a user (role `user`, password [`USER_PASSWORD`]) and returns its Open WebUI id.
    pub async fn create_user(&self, email: &str, name: &str) -> String {
        let answer = self
            .post(
                "/api/v1/auths/add",
                &json!({"name": name, "email": email, "password": USER_PASSWORD, "role": "user"}),
            )
            .await;
        answer["id"].as_str().expect("user id").to_string()
    }

    /// `POST path` with `body` as the admin; the JSON answer (panics on an error status).
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let r = client()
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(self.admin_token())
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `GET path` as the admin; the JSON answer (panics on an error status).
    pub async fn get(&self, path: &str) -> Value {
        let r = client()
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Kills the server (as a crash would) and keeps its data; its port is refused until
    /// [`restart`](Self::restart).
    pub async fn stop(&self) {
        assert!(!self.shared, "the shared Open WebUI cannot be stopped");
        self.kill();
    }

    /// Starts the server again on the same port and data, and signs the admin in again.
    pub async fn restart(&self) {
        assert!(!self.shared, "the shared Open WebUI cannot be restarted");
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    fn kill(&self) {
        let Some(mut watchdog) = self.watchdog.lock().unwrap().take() else {
            return;
        };
        kill_server(&self.root.join("server.pid"));
        let _ = watchdog.kill();
        let _ = watchdog.wait();
        let _ = std::fs::remove_file(self.root.join("server.pid"));
    }

    /// The data directory (`DATA_DIR`).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
}

fn kill_server(pid_file: &Path) {
    if let Ok(pid) = std::fs::read_to_string(pid_file) {
        let _ = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .stderr(Stdio::null())
            .status();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl Drop for OpenWebUi {
    fn drop(&mut self) {
        if let Ok(mut watchdog) = self.watchdog.lock()
            && let Some(mut child) = watchdog.take()
        {
            kill_server(&self.root.join("server.pid"));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
