//! A second, real OpenID provider for sign-in tests: the certified `oidc-provider` npm package, run by
//! `testing/oidc-peer/provider.mjs` with one confidential client (PKCE required, RS256 ID tokens carrying
//! `email`, `email_verified` and `name`) and the accounts in [`ACCOUNTS`].
//!
//! The package is installed outside the clone by `testing/oidc-peer/install.sh` (`.ci/run` calls it) into
//! [`INSTALL_DIR_ENV`] or [`DEFAULT_INSTALL_DIR`]. Without it (or without `node`), [`OidcPeer::start`] returns
//! `None` and the test skips, unless `CI` is set: then it panics, so CI never skips these tests silently.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where `install.sh` puts the package unless [`INSTALL_DIR_ENV`] says otherwise.
pub const DEFAULT_INSTALL_DIR: &str = "/opt/kbsync-peers/oidc-provider";
/// Overrides [`DEFAULT_INSTALL_DIR`] (for `install.sh` and for the tests alike).
pub const INSTALL_DIR_ENV: &str = "KBSYNC_OIDC_PEER_DIR";
/// The peer's accounts (the login is also the `sub`): the first two have a verified email, the last an
/// unverified one (`email_verified: false`).
pub const ACCOUNTS: &[&str] = &["pat@example.org", "sam@example.org", "unverified@example.org"];
/// The peer's client id and secret.
pub const CLIENT_ID: &str = "kbsync-peer-client";
pub const CLIENT_SECRET: &str = "kbsync-peer-secret";

/// How long the provider may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn install_dir() -> PathBuf {
    std::env::var_os(INSTALL_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_INSTALL_DIR), PathBuf::from)
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../oidc-peer/provider.mjs")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// A running `oidc-provider`; dropping it kills the process.
pub struct OidcPeer {
    child: Child,
    issuer: String,
    redirect_uri: String,
}

impl std::fmt::Debug for OidcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcPeer").field("issuer", &self.issuer).finish()
    }
}

impl OidcPeer {
    /// Starts the provider on a free port of 127.0.0.1 with `redirect_uri` registered for [`CLIENT_ID`]
    /// (its origin's `/` is the registered post-logout redirect URI), and waits for it to listen. `None` when
    /// the package or `node` is missing and `CI` is unset.
    pub async fn start(redirect_uri: &str) -> Option<OidcPeer> {
        Self::start_with(redirect_uri, false).await
    }

    /// [`start`](Self::start), with the package's strict default when `claims_in_userinfo_only`: the ID
    /// token then carries no `email` or `name`, which a client must read from the userinfo endpoint.
    pub async fn start_with(redirect_uri: &str, claims_in_userinfo_only: bool) -> Option<OidcPeer> {
        let dir = install_dir();
        let installed = dir.join("node_modules/oidc-provider/package.json").is_file();
        if !installed || !on_path("node") {
            let why = if installed {
                "`node` is not on PATH".to_string()
            } else {
                format!(
                    "oidc-provider is not installed in {} (run testing/oidc-peer/install.sh)",
                    dir.display()
                )
            };
            if std::env::var_os("CI").is_some() {
                panic!("{why}, and CI is set: the OpenID provider tests must run in CI");
            }
            eprintln!("\n\n*** SKIPPED: the OpenID provider peer is unavailable: {why} ***\n");
            return None;
        }
        let mut child = Command::new("node")
            .arg(script())
            .env(INSTALL_DIR_ENV, &dir)
            .env("OIDC_PEER_HOST", "127.0.0.1")
            .env("OIDC_PEER_PORT", "0")
            .env("OIDC_PEER_CLIENT_ID", CLIENT_ID)
            .env("OIDC_PEER_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_PEER_REDIRECT_URIS", redirect_uri)
            .env(
                "OIDC_PEER_CONFORM_ID_TOKEN_CLAIMS",
                if claims_in_userinfo_only { "1" } else { "0" },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = stderr.clone();
            tokio::spawn(async move {
                let mut buf = String::new();
                let _ = err.read_to_string(&mut buf).await;
                sink.lock().unwrap().push_str(&buf);
            });
        }
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(issuer) = line.strip_prefix("listening ") {
                    return Some(issuer.trim().to_string());
                }
            }
            None
        })
        .await;
        let Ok(Some(issuer)) = ready else {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            panic!(
                "the OpenID provider did not get ready within {START_TIMEOUT:?}; stderr:\n{}",
                stderr.lock().unwrap()
            );
        };
        // Keep reading stdout so the provider never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(OidcPeer {
            child,
            issuer,
            redirect_uri: redirect_uri.to_string(),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash); discovery is at `{issuer}/.well-known/openid-configuration`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn client_id(&self) -> &str {
        CLIENT_ID
    }

    pub fn client_secret(&self) -> &str {
        CLIENT_SECRET
    }

    /// The redirect URI registered for the client.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Signs `account` in the way a browser would: opens `authorize_url` (the provider's authorization
    /// endpoint with the client's parameters), submits the login form (any password) and the consent form,
    /// following the provider's redirects with a cookie store, and returns the first URL outside the provider
    /// (the client's redirect URI with `code`, `state` and `iss`, or with `error`) without requesting it.
    pub async fn sign_in(&self, authorize_url: &str, account: &str) -> String {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut url = reqwest::Url::parse(authorize_url).expect("authorize URL");
        let mut form: Option<Vec<(&str, &str)>> = None;
        let mut logins = 0;
        for _ in 0..20 {
            if !url.as_str().starts_with(&format!("{}/", self.issuer)) {
                return url.to_string();
            }
            let request = match form.take() {
                Some(f) => http.post(url.clone()).form(&f),
                None => http.get(url.clone()),
            };
            let r = request.send().await.unwrap();
            let status = r.status();
            if status.is_redirection() {
                let location = r.headers()["location"].to_str().unwrap().to_string();
                url = url.join(&location).unwrap();
                continue;
            }
            let page = r.text().await.unwrap();
            assert_eq!(status, 200, "the provider refused {url}: {page}");
            if page.contains(r#"name="prompt" value="login""#) {
                logins += 1;
                assert!(logins < 2, "the provider does not know the account {account:?}");
                form = Some(vec![
                    ("prompt", "login"),
                    ("login", account),
                    ("password", "test"),
                ]);
            } else if page.contains(r#"name="prompt" value="consent""#) {
                form = Some(vec![("prompt", "consent")]);
            } else {
                panic!("unexpected page from the provider at {url}: {page}");
            }
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("the form's action");
            url = url.join(action).unwrap();
        }
        panic!("the sign-in did not leave the provider after 20 steps (last at {url})");
    }
}

impl Drop for OidcPeer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
