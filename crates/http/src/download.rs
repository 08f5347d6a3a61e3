//! A download body as a [`ByteStream`] that hashes what arrives and checks the hash, and the
//! length, at the end.
//!
//! Nothing is buffered beyond the chunk in flight. A stalled, cut or corrupted transfer ends the
//! stream with `Err(Transient(…))` as its last item, so the engine drops what it stored and
//! retries the file later.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kbsync_core::datasource::{ByteStream, DatasourceError};

use crate::error_chain;

/// A source's content hash, computed over the bytes as they arrive.
pub trait ContentHash: Send + 'static {
    /// The name of the field the source publishes the hash in, for messages (`md5Checksum`).
    const FIELD: &'static str;
    fn update(&mut self, data: &[u8]);
    /// The hash, encoded as the source publishes it.
    fn finish(self) -> String;
    /// Whether two encoded hashes are the same hash (hex is case-insensitive, base64 is not).
    fn same(actual: &str, expected: &str) -> bool {
        actual == expected
    }
}

/// What the bytes must match; each check is skipped when its value is unknown.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The hash, encoded as the source publishes it.
    pub hash: Option<String>,
    pub size: Option<u64>,
}

struct State<H> {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    hasher: Option<H>,
    received: u64,
    expected: Expected,
    idle_timeout: Duration,
    finished: bool,
}

/// The body of `response` as a stream that fails when no byte arrives for `idle_timeout`, when
/// the connection breaks, or (at the end) when the bytes do not match `expected`.
pub fn verified_stream<H: ContentHash>(
    response: reqwest::Response,
    hasher: H,
    expected: Expected,
    idle_timeout: Duration,
) -> ByteStream {
    let state = State {
        body: Box::pin(response.bytes_stream()),
        hasher: Some(hasher),
        received: 0,
        expected,
        idle_timeout,
        finished: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        if s.finished {
            return None;
        }
        match tokio::time::timeout(s.idle_timeout, s.body.next()).await {
            Err(_) => {
                s.finished = true;
                let e =
                    DatasourceError::Transient(format!("the download stalled after {} bytes", s.received));
                Some((Err(e), s))
            }
            Ok(Some(Ok(chunk))) => {
                if let Some(h) = s.hasher.as_mut() {
                    h.update(&chunk);
                }
                s.received += chunk.len() as u64;
                Some((Ok(chunk), s))
            }
            Ok(Some(Err(e))) => {
                s.finished = true;
                let e = DatasourceError::Transient(format!(
                    "the download broke off after {} bytes: {}",
                    s.received,
                    error_chain(e)
                ));
                Some((Err(e), s))
            }
            Ok(None) => {
                s.finished = true;
                verify(&mut s).map(|e| (Err(e), s))
            }
        }
    }))
}

fn verify<H: ContentHash>(s: &mut State<H>) -> Option<DatasourceError> {
    if let Some(size) = s.expected.size
        && size != s.received
    {
        return Some(DatasourceError::Transient(format!(
            "size mismatch: received {} bytes, the source says {size}",
            s.received
        )));
    }
    let expected = s.expected.hash.as_ref()?;
    let actual = s.hasher.take()?.finish();
    (!H::same(&actual, expected)).then(|| {
        DatasourceError::Transient(format!(
            "hash mismatch: the received bytes hash to {actual}, the source's {} is {expected}",
            H::FIELD
        ))
    })
}
