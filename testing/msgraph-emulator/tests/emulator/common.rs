//! The harness: an exactly assertable emulator on 127.0.0.1:0 (from the kit), an HTTP client with
//! a token of the acting user, and readers of Graph pages.

use msgraph_emulator::{Control, DriveType, EmulatorBuilder, NewUser, RunningEmulator, UserInfo};
use serde_json::Value;

pub use kbsync_kit::emulator::start_time;

/// A builder with a frozen clock and plain delta (no shuffling, no duplicates) so tests can be exact.
pub fn builder() -> EmulatorBuilder {
    kbsync_kit::emulator::exact_emulator(7)
}

pub struct Env {
    pub emu: RunningEmulator,
    pub ctl: Control,
    pub http: reqwest::Client,
    pub token: String,
    pub drive: String,
    pub user: String,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn env() -> Env {
    env_with(builder()).await
}

pub async fn env_with(b: EmulatorBuilder) -> Env {
    let emu = b.start().await.unwrap();
    let ctl = emu.control();
    let user = ctl.default_user_id();
    let token = kbsync_kit::emulator::mint_token(&ctl, &user);
    let drive = ctl.default_drive_id();
    Env {
        emu,
        ctl,
        http: client(),
        token,
        drive,
        user,
    }
}

impl Env {
    /// From now on, requests carry a token of `user_id` (Graph lets a user read only what they may see).
    pub fn act_as(&mut self, user_id: &str) {
        self.token = kbsync_kit::emulator::mint_token(&self.ctl, user_id);
        self.user = user_id.to_string();
    }

    /// A new user `display_name` with a personal drive, whose token requests carry from now on
    /// (Graph lets only them read their drive); returns the drive's id.
    pub fn act_as_personal_drive_owner(&mut self, display_name: &str) -> String {
        let owner = kbsync_kit::emulator::personal_drive_user(&self.ctl, display_name, None);
        self.act_as(&owner.id);
        owner.drive_id.unwrap()
    }

    /// A GET with another token.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.emu.graph_url(), path)
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_success(), "GET {path} → {status}: {body}");
        body
    }

    /// Follows nextLinks until a deltaLink; returns all items, the pages and the deltaLink.
    pub async fn delta_round(&self, start: &str) -> (Vec<Value>, Vec<Value>, String) {
        let mut url = self.url(start);
        let mut items = Vec::new();
        let mut pages = Vec::new();
        for _ in 0..10_000 {
            let page = self.get_json(&url).await;
            items.extend(page["value"].as_array().unwrap().iter().cloned());
            pages.push(page.clone());
            if let Some(next) = page["@odata.nextLink"].as_str() {
                url = next.to_string();
            } else {
                let delta = page["@odata.deltaLink"]
                    .as_str()
                    .expect("a page has nextLink or deltaLink")
                    .to_string();
                return (items, pages, delta);
            }
        }
        panic!("delta never finished");
    }

    pub async fn shutdown(self) {
        self.emu.shutdown().await;
    }
}

/// Bob, a second user of the tenant, with a drive of `drive_type`.
pub fn bob(env: &Env, drive_type: DriveType) -> UserInfo {
    env.ctl
        .create_user(NewUser {
            display_name: "Bob Builder".into(),
            mail: Some("bob@contoso.onmicrosoft.com".into()),
            drive_type: Some(drive_type),
            ..Default::default()
        })
        .unwrap()
}

pub fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

pub fn find<'a>(items: &'a [Value], id: &str) -> Vec<&'a Value> {
    items.iter().filter(|i| i["id"] == id).collect()
}
