//! An in-process fake Open WebUI (axum on port 0) that answers with exchanges recorded from the real
//! Open WebUI 0.12.4 (tests/fixtures/*.json) and checks that each request kbsync sends has the
//! recorded request's method, path, query page, JSON shape (the same keys, the same kinds of values)
//! and multipart fields. A request no fixture matches is answered 599 and recorded as a problem.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use kbsync_core::ManualClock;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub method: String,
    pub path: String,
    pub query: Value,
    pub request: Value,
    pub status: u16,
    pub response: Value,
}

pub fn fixture(name: &str) -> Fixture {
    let file = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    Fixture {
        name: name.to_string(),
        method: v["method"].as_str().unwrap().to_string(),
        path: v["path"].as_str().unwrap().to_string(),
        query: v["query"].clone(),
        request: v["request"].clone(),
        status: v["status"].as_u64().unwrap() as u16,
        response: v["response"].clone(),
    }
}

struct Route {
    fixture: Fixture,
    /// `None`: answers every time; `Some(n)`: n more times.
    times: Option<usize>,
}

#[derive(Default)]
struct State {
    routes: Vec<Route>,
    problems: Vec<String>,
    served: Vec<String>,
    /// Advanced by `advance_per_status` on every processing-status request.
    clock: Option<(ManualClock, chrono::Duration)>,
}

#[derive(Clone, Default)]
pub struct Fake {
    state: Arc<Mutex<State>>,
}

impl Fake {
    /// Serves `fixture` once (then the next route for the same request, if any).
    pub fn once(&self, f: Fixture) -> &Self {
        self.state.lock().unwrap().routes.push(Route {
            fixture: f,
            times: Some(1),
        });
        self
    }

    /// Serves `fixture` for every matching request.
    pub fn always(&self, f: Fixture) -> &Self {
        self.state.lock().unwrap().routes.push(Route {
            fixture: f,
            times: None,
        });
        self
    }

    pub fn advance_per_status(&self, clock: ManualClock, by: chrono::Duration) {
        self.state.lock().unwrap().clock = Some((clock, by));
    }

    pub fn problems(&self) -> Vec<String> {
        self.state.lock().unwrap().problems.clone()
    }

    /// The fixtures served, in order.
    pub fn served(&self) -> Vec<String> {
        self.state.lock().unwrap().served.clone()
    }

    /// Listens on a free port; the URL to give the client. Stops with the test's runtime.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = self.clone();
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let fake = fake.clone();
                async move { fake.answer(method, uri, headers, body) }
            });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let mut state = self.state.lock().unwrap();
        let path = uri.path().to_string();
        let page = uri.query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("page=").map(str::to_string))
        });
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let multipart = content_type
            .starts_with("multipart/form-data")
            .then(|| parse_multipart(&content_type, &body));
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !bearer.starts_with("Bearer ") {
            state
                .problems
                .push(format!("{method} {path} without a bearer token"));
        }
        let found = state.routes.iter().position(|r| {
            let f = &r.fixture;
            f.method == method.as_str()
                && f.path == path
                && (f.query.is_null() || f.query["page"].as_str() == page.as_deref())
                && match (&multipart, f.request.get("multipart")) {
                    (Some(m), Some(rec)) => m["file"]["filename"] == rec["file"]["filename"],
                    (None, None) => true,
                    _ => false,
                }
        });
        let Some(i) = found else {
            state
                .problems
                .push(format!("no recorded exchange for {method} {uri}"));
            return (StatusCode::from_u16(599).unwrap(), "no fixture").into_response();
        };
        let fixture = state.routes[i].fixture.clone();
        if let Some(n) = &mut state.routes[i].times {
            *n -= 1;
            if *n == 0 {
                state.routes.remove(i);
            }
        }
        state.served.push(fixture.name.clone());
        // The request's shape.
        if let Some(rec) = fixture.request.get("multipart") {
            let m = multipart.unwrap_or(Value::Null);
            if !same_shape(&m["metadata"], &rec["metadata"]) {
                state.problems.push(format!(
                    "{}: metadata {} does not have the recorded shape {}",
                    fixture.name, m["metadata"], rec["metadata"]
                ));
            }
            if m["file"]["content_type"].as_str().is_none() {
                state
                    .problems
                    .push(format!("{}: the file part has no content type", fixture.name));
            }
        } else if !fixture.request.is_null() {
            match serde_json::from_slice::<Value>(&body) {
                Ok(sent) if same_shape(&sent, &fixture.request) => {}
                Ok(sent) => state.problems.push(format!(
                    "{}: sent {sent} does not have the recorded shape {}",
                    fixture.name, fixture.request
                )),
                Err(e) => state
                    .problems
                    .push(format!("{}: the body is not JSON: {e}", fixture.name)),
            }
        }
        if path.ends_with("/process/status")
            && let Some((clock, by)) = &state.clock
        {
            clock.advance(*by);
        }
        let status = StatusCode::from_u16(fixture.status).unwrap();
        (status, axum::Json(fixture.response)).into_response()
    }
}

/// The same keys and kinds of values, recursively (arrays: every element like the recorded first;
/// `null` stands for "absent" and matches only `null`).
pub fn same_shape(sent: &Value, recorded: &Value) -> bool {
    match (sent, recorded) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|r| same_shape(v, r)))
        }
        (Value::Array(a), Value::Array(b)) => match b.first() {
            Some(first) => a.iter().all(|v| same_shape(v, first)),
            None => true,
        },
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// `{"file": {filename, content_type}, "metadata": <JSON>}` from a multipart/form-data body.
fn parse_multipart(content_type: &str, body: &[u8]) -> Value {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let text = String::from_utf8_lossy(body);
    let mut out = serde_json::json!({});
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        let name = head
            .split("name=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("");
        match name {
            "file" => {
                let filename = head
                    .split("filename=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("");
                let ctype = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Content-Type: ")
                            .or_else(|| l.strip_prefix("content-type: "))
                    })
                    .map(str::trim);
                out["file"] = serde_json::json!({"filename": filename, "content_type": ctype});
            }
            "metadata" => {
                out["metadata"] = serde_json::from_str(content).unwrap_or(Value::Null);
            }
            _ => {}
        }
    }
    out
}
