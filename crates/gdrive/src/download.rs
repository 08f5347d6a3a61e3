//! The download body as a [`ByteStream`] that hashes what arrives (MD5) and checks it, and the
//! length, at the end.
//!
//! Nothing is buffered beyond the chunk in flight. A stalled, cut or corrupted transfer ends the
//! stream with `Err(Transient(…))` as its last item, so the engine drops what it stored and
//! retries the file later. Exports have no checksum: only a stall or a cut is caught there.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kbsync_core::datasource::{ByteStream, DatasourceError};
use md5::{Digest, Md5};

use crate::client::error_chain;

/// What the bytes must match.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expected {
    /// `md5Checksum`, lowercase hex.
    pub md5: Option<String>,
    pub size: Option<u64>,
}

struct State {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    hasher: Md5,
    received: u64,
    expected: Expected,
    idle_timeout: Duration,
    finished: bool,
}

pub(crate) fn verified_stream(
    response: reqwest::Response,
    expected: Expected,
    idle_timeout: Duration,
) -> ByteStream {
    let state = State {
        body: Box::pin(response.bytes_stream()),
        hasher: Md5::new(),
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
                s.hasher.update(&chunk);
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

fn verify(s: &mut State) -> Option<DatasourceError> {
    if let Some(size) = s.expected.size
        && size != s.received
    {
        return Some(DatasourceError::Transient(format!(
            "size mismatch: received {} bytes, the file has {size}",
            s.received
        )));
    }
    let expected = s.expected.md5.as_ref()?;
    let actual = hex::encode(std::mem::take(&mut s.hasher).finalize());
    (!actual.eq_ignore_ascii_case(expected)).then(|| {
        DatasourceError::Transient(format!(
            "hash mismatch: the received bytes hash to MD5 {actual}, the file's md5Checksum is {expected}"
        ))
    })
}
