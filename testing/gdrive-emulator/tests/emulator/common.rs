use gdrive_emulator::{Control, DRIVE_READONLY_SCOPE, Emulator, RunningEmulator};
use serde_json::Value;

pub struct Env {
    pub emu: RunningEmulator,
    pub ctl: Control,
    pub http: reqwest::Client,
    pub token: String,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

pub async fn start() -> Env {
    start_with(Emulator::builder().seed(7).auto_consent(true)).await
}

pub async fn start_generated(n: usize) -> Env {
    start_with(Emulator::builder().seed(7).auto_consent(true).generate(n)).await
}

pub async fn start_with(b: gdrive_emulator::EmulatorBuilder) -> Env {
    let emu = b.start().await.unwrap();
    let ctl = emu.control();
    let token = ctl
        .mint_tokens(&ctl.default_user_id(), DRIVE_READONLY_SCOPE)
        .unwrap()
        .access_token;
    Env {
        emu,
        ctl,
        http: client(),
        token,
    }
}

impl Env {
    /// GET `{api}/{path}` with the default user's token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(&self.token, path).await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/{}", self.emu.api_url(), path.trim_start_matches('/')))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// GET and parse: (status, body).
    pub async fn json(&self, path: &str) -> (u16, Value) {
        self.json_as(&self.token, path).await
    }

    pub async fn json_as(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self.get_as(token, path).await;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A fresh token of another user.
    pub fn token_for(&self, email: &str) -> String {
        let u = self.ctl.user_by_email(email).unwrap();
        self.ctl
            .mint_tokens(&u.id, DRIVE_READONLY_SCOPE)
            .unwrap()
            .access_token
    }

    pub fn root(&self) -> String {
        self.ctl.root_id()
    }

    pub async fn shutdown(self) {
        self.emu.shutdown().await;
    }
}

/// The reason of the first error item of a Google error body.
pub fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
