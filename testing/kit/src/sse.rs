//! Reads server-sent events (the sync progress stream) in tests.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

/// Reads server-sent events from `resp` until one named `until` arrives, and returns every named
/// event so far as (name, JSON data; `Null` when the data is not JSON). Panics when `within`
/// passes first or the stream ends.
#[expect(clippy::disallowed_methods, reason = "a test's deadline is real time")]
pub async fn read_events(resp: reqwest::Response, until: &str, within: Duration) -> Vec<(String, Value)> {
    let mut stream = resp.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no `{until}` event; got {events:?}"))
            .expect("the stream ended")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if name.is_empty() {
                continue;
            }
            let done = name == until;
            events.push((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
            if done {
                return events;
            }
        }
    }
}
