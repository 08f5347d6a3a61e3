use chrono::{DateTime, Utc};
use msgraph_emulator::{Control, DeltaBehaviour, Emulator, EmulatorBuilder, RunningEmulator};
use serde_json::Value;

pub const START: &str = "2025-03-01T09:00:00Z";

pub fn start_time() -> DateTime<Utc> {
    START.parse().unwrap()
}

/// A builder with a frozen clock and plain delta (no shuffling, no duplicates) so tests can be exact.
pub fn builder() -> EmulatorBuilder {
    Emulator::builder()
        .seed(7)
        .frozen_clock(true)
        .start_time(start_time())
        .delta_behaviour(DeltaBehaviour {
            children_first_probability: 0.0,
            duplicate_probability: 0.0,
            ..DeltaBehaviour::default()
        })
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
    let token = ctl
        .mint_access_token(&user, &["Files.Read.All", "Sites.Read.All"])
        .unwrap();
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
        self.token = self
            .ctl
            .mint_access_token(user_id, &["Files.Read.All", "Sites.Read.All"])
            .unwrap();
        self.user = user_id.to_string();
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

pub fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

pub fn find<'a>(items: &'a [Value], id: &str) -> Vec<&'a Value> {
    items.iter().filter(|i| i["id"] == id).collect()
}
