//! Bounded fuzzing of what the server takes from anyone on the internet: the OAuth callback's
//! query string and multipart uploads. Generated from a fixed seed (printed cases fail with the
//! input that broke them); whatever comes in, the answer is a 2xx or 4xx, never a 5xx, and the
//! server keeps serving.
//!
//! The same generated inputs also go through `kbsync_server::fuzzing`, the entry points the
//! cargo-fuzz targets `callback_query` and `multipart_upload` (`fuzz/`, nightly) call: the real
//! router in-process, so what CI runs is what the fuzzer runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{Db, OneDriveTest, Options, TestServer};
use reqwest::StatusCode;

kbsync_kit::on_both_databases!(run = kbsync_kit::with_db;
    callback_query_strings_of_any_shape_never_get_a_server_error,
    multipart_bodies_of_any_shape_never_get_a_server_error,
);

/// The fuzz targets' entry points, with the generators below: never a 5xx, some uploads taken,
/// and the in-process app still ready afterwards.
#[test]
fn the_fuzz_targets_entry_points_never_answer_a_server_error() {
    use kbsync_server::fuzzing;
    let mut rng = Rng(0x5eed_0003);
    for case in 0..300 {
        let q = query(&mut rng);
        if let Some(status) = fuzzing::callback_query(q.as_bytes()) {
            assert!(!status.is_server_error(), "case {case}: {status} for ?{q}");
        }
    }
    let mut accepted = 0;
    for case in 0..200 {
        let (content_type, body) = multipart(&mut rng);
        if let Some(status) = fuzzing::multipart_upload(content_type.as_bytes(), &body) {
            assert!(
                !status.is_server_error(),
                "case {case}: {status} for {content_type:?} and {:?}",
                String::from_utf8_lossy(&body[..body.len().min(400)])
            );
            accepted += usize::from(status.is_success());
        }
    }
    assert!(accepted > 0, "no generated upload was accepted");
    // The target's own input split (content type, newline, body) reaches the upload too.
    let status = fuzzing::multipart_input(
        b"multipart/form-data; boundary=b\n--b\r\nContent-Disposition: form-data; name=\"file\"; \
          filename=\"a.txt\"\r\n\r\nwalrus\r\n--b--\r\n",
    );
    assert_eq!(status, Some(StatusCode::ACCEPTED));
    assert!(fuzzing::app().unwrap().ready());
    fuzzing::remove_app_files();
}

/// xorshift64*: reproducible inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.below(options.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Bytes that are mostly printable, with a few of the characters parsers trip on.
    fn text(&mut self, max: usize) -> String {
        let n = self.below(max + 1);
        (0..n)
            .map(|_| match self.below(10) {
                0 => self
                    .pick(&["%", "&", "=", "+", ";", "\"", "\r\n", "\0", "é", "😀"])
                    .to_owned(),
                _ => char::from(b' ' + (self.next() % 95) as u8).to_string(),
            })
            .collect()
    }
}

fn percent_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn query(rng: &mut Rng) -> String {
    let mut parts = Vec::new();
    for _ in 0..rng.below(6) {
        let key = rng.pick(&[
            "code",
            "state",
            "error",
            "error_description",
            "session_state",
            "admin_consent",
            "x",
            "",
        ]);
        let value = match rng.below(6) {
            0 => percent_encode(&rng.bytes(64)),
            1 => rng.text(64).replace(' ', "+"),
            2 => "A".repeat(rng.below(8192)),
            3 => rng
                .pick(&["%zz", "%", "%F0%9F", "%00", "a%2", "%C3%28"])
                .to_owned(),
            4 => String::new(),
            _ => format!("{:x}", rng.next()),
        };
        parts.push(match rng.below(5) {
            0 => key.to_owned(),
            _ => format!("{key}={value}"),
        });
    }
    parts.join(rng.pick(&["&", "&&", ";", "&="]))
}

async fn callback_query_strings_of_any_shape_never_get_a_server_error(db: Db) {
    let options = Options {
        onedrive: Some(OneDriveTest { with_secret: true }),
        ..Options::default()
    };
    let Some(s) = TestServer::start(db, options).await else {
        return;
    };
    let mut rng = Rng(0x5eed_0001);
    for case in 0..300 {
        let q = query(&mut rng);
        let url = format!("{}/api/v1/datasources/onedrive/auth/callback?{q}", s.base);
        let resp = s.http.get(&url).send().await.unwrap();
        let status = resp.status();
        assert!(
            status.is_success() || status.is_client_error() || status.is_redirection(),
            "case {case}: {status} for ?{q}"
        );
    }
    let (status, _) = s.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

/// A multipart body with parts, headers and boundaries of any shape, often well-formed enough
/// to reach the upload's own checks.
fn multipart(rng: &mut Rng) -> (String, Vec<u8>) {
    let boundary = match rng.below(4) {
        0 => String::new(),
        1 => rng.text(90).replace(['\r', '\n', '"'], "x"),
        _ => format!("b{:x}", rng.next()),
    };
    let content_type = match rng.below(6) {
        0 => "multipart/form-data".to_owned(),
        1 => format!("multipart/form-data; boundary=\"{boundary}\""),
        2 => "text/plain".to_owned(),
        _ => format!("multipart/form-data; boundary={boundary}"),
    };
    let mut body = Vec::new();
    for _ in 0..rng.below(4) {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let name = rng.pick(&["file", "other", "", "file\"; filename=\"x.txt"]);
        let filename = match rng.below(5) {
            0 => String::new(),
            1 => "; filename=\"../../etc/passwd\"".to_owned(),
            2 => format!("; filename=\"{}\"", rng.text(300).replace(['"', '\r', '\n'], "_")),
            3 => format!(
                "; filename=\"doc{}\"",
                rng.pick(&[".txt", ".pdf", ".docx", ".json", ".exe", ""])
            ),
            _ => "; filename*=UTF-8''caf%C3%A9.txt".to_owned(),
        };
        if rng.below(6) > 0 {
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"{filename}\r\n").as_bytes(),
            );
        }
        if rng.below(3) == 0 {
            body.extend_from_slice(
                format!("Content-Type: {}\r\n", rng.text(40).replace(['\r', '\n'], " ")).as_bytes(),
            );
        }
        if rng.below(8) == 0 {
            body.extend_from_slice(rng.text(200).as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        match rng.below(3) {
            0 => body.extend_from_slice(&rng.bytes(4096)),
            1 => body.extend_from_slice(rng.text(2048).as_bytes()),
            _ => body.extend_from_slice(b"{\"a\": \"b\"}"),
        }
        body.extend_from_slice(b"\r\n");
    }
    match rng.below(4) {
        0 => {}
        1 => body.truncate(rng.below(body.len() + 1)),
        _ => body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes()),
    }
    (content_type, body)
}

async fn multipart_bodies_of_any_shape_never_get_a_server_error(db: Db) {
    let Some(s) = TestServer::start(db, Options::default()).await else {
        return;
    };
    let admin = s.admin_token().await;
    let kb = s.create_kb(&admin, "Fuzzed uploads").await;
    let mut rng = Rng(0x5eed_0002);
    let mut accepted = 0;
    for case in 0..200 {
        let (content_type, body) = multipart(&mut rng);
        // A header value no HTTP client can send (control characters) is not a case.
        let Ok(content_type_header) = reqwest::header::HeaderValue::from_str(&content_type) else {
            continue;
        };
        let resp = s
            .http
            .post(format!("{}/api/v1/knowledge/{kb}/files", s.base))
            .bearer_auth(&admin)
            .header(reqwest::header::CONTENT_TYPE, content_type_header)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(
            status.is_success() || status.is_client_error(),
            "case {case}: {status} {text} for {content_type:?} and {:?}",
            String::from_utf8_lossy(&body[..body.len().min(400)])
        );
        if status.is_success() {
            accepted += 1;
        }
    }
    // The generator reaches past the form checks: some uploads are taken.
    assert!(accepted > 0, "no generated upload was accepted");
    let (status, _) = s.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .get(&format!("/api/v1/knowledge/{kb}/files"), Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.stop().await;
}
