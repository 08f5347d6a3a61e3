use std::time::Duration;

use futures::StreamExt;
use kbsync_core::datasource::DatasourceError;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A hash that is the byte sum in decimal, so tests can state it by hand.
struct Sum(u64);

impl ContentHash for Sum {
    const FIELD: &'static str = "byteSum";
    fn update(&mut self, data: &[u8]) {
        self.0 += data.iter().map(|b| u64::from(*b)).sum::<u64>();
    }
    fn finish(self) -> String {
        self.0.to_string()
    }
}

/// Serves one HTTP answer whose head announces `length` bytes, then writes `body` and, unless
/// `hang`, closes the connection.
async fn serve_once(length: usize, body: &'static [u8], hang: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = socket.read(&mut request).await.unwrap();
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n");
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(body).await.unwrap();
        socket.flush().await.unwrap();
        if hang {
            // Hold the connection open without sending anything more.
            let _ = socket.read(&mut request).await;
        }
    });
    format!("http://{addr}/")
}

async fn collect(url: &str, expected: Expected, idle: Duration) -> (Vec<u8>, Option<DatasourceError>) {
    let response = reqwest::get(url).await.unwrap();
    let mut stream = verified_stream(response, Sum(0), expected, idle);
    let mut bytes = Vec::new();
    let mut error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(e) => error = Some(e),
        }
    }
    (bytes, error)
}

#[tokio::test]
async fn a_body_that_matches_its_hash_and_size_streams_without_error() {
    let url = serve_once(3, b"abc", false).await;
    let expected = Expected {
        hash: Some("294".into()),
        size: Some(3),
    };
    let (bytes, error) = collect(&url, expected, Duration::from_secs(10)).await;
    assert_eq!(bytes, b"abc");
    assert!(error.is_none(), "{error:?}");
}

#[tokio::test]
async fn a_body_whose_hash_differs_ends_with_a_transient_hash_mismatch() {
    let url = serve_once(3, b"abd", false).await;
    let expected = Expected {
        hash: Some("294".into()),
        size: Some(3),
    };
    let (_, error) = collect(&url, expected, Duration::from_secs(10)).await;
    let Some(DatasourceError::Transient(why)) = error else {
        panic!("expected a transient error, got {error:?}");
    };
    assert!(
        why.contains("hash mismatch") && why.contains("byteSum is 294"),
        "{why}"
    );
}

#[tokio::test]
async fn a_body_of_another_size_ends_with_a_transient_size_mismatch() {
    let url = serve_once(3, b"abc", false).await;
    let expected = Expected {
        hash: None,
        size: Some(4),
    };
    let (_, error) = collect(&url, expected, Duration::from_secs(10)).await;
    assert!(
        matches!(error, Some(DatasourceError::Transient(ref why)) if why.contains("size mismatch")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_body_cut_short_ends_with_a_transient_error_naming_what_arrived() {
    let url = serve_once(10, b"abc", false).await;
    let (bytes, error) = collect(&url, Expected::default(), Duration::from_secs(10)).await;
    assert_eq!(bytes, b"abc");
    assert!(
        matches!(error, Some(DatasourceError::Transient(ref why)) if why.contains("broke off after 3 bytes")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_stalled_body_ends_with_a_transient_error_after_the_idle_timeout() {
    let url = serve_once(10, b"abc", true).await;
    let (_, error) = collect(&url, Expected::default(), Duration::from_millis(200)).await;
    assert!(
        matches!(error, Some(DatasourceError::Transient(ref why)) if why.contains("stalled after 3 bytes")),
        "{error:?}"
    );
}

fn now() -> chrono::DateTime<chrono::Utc> {
    "2025-03-01T09:00:00Z".parse().unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn retry_after_accepts_seconds_decimals_and_http_dates() {
    assert_eq!(
        retry_after(&headers(&[("retry-after", "2")]), now()),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        retry_after(&headers(&[("retry-after", "1.5")]), now()),
        Some(Duration::from_millis(1500))
    );
    // Measured from the answer's Date, not from our clock.
    assert_eq!(
        retry_after(
            &headers(&[
                ("retry-after", "Sat, 01 Mar 2025 09:02:00 GMT"),
                ("date", "Sat, 01 Mar 2025 09:00:30 GMT"),
            ]),
            "2030-01-01T00:00:00Z".parse().unwrap(),
        ),
        Some(Duration::from_secs(90))
    );
    // Without Date, from now.
    assert_eq!(
        retry_after(
            &headers(&[("retry-after", "Sat, 01 Mar 2025 09:02:00 GMT")]),
            now()
        ),
        Some(Duration::from_secs(120))
    );
    // In the past: no wait.
    assert_eq!(
        retry_after(
            &headers(&[("retry-after", "Sat, 01 Mar 2025 08:00:00 GMT")]),
            now()
        ),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now()), None);
    assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now()), None);
}
