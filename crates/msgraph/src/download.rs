//! The download body as a [`ByteStream`] that hashes what arrives and checks it at the end.
//!
//! Nothing is buffered beyond the chunk in flight. A stalled, cut or corrupted transfer ends the
//! stream with `Err(Transient(…))` as its last item, so the engine drops what it stored and
//! retries the file later.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kbsync_core::datasource::{ByteStream, DatasourceError};

use crate::client::error_chain;
use crate::quickxorhash::QuickXorHash;

/// What the bytes must match. Only checked when the item had a quickXorHash (a missing hash is
/// not a mismatch: Graph fills hashes in lazily).
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub quick_xor_hash: Option<String>,
    pub size: Option<u64>,
}

struct State {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    hasher: QuickXorHash,
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
        hasher: QuickXorHash::new(),
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
                verify(&s).map(|e| (Err(e), s))
            }
        }
    }))
}

fn verify(s: &State) -> Option<DatasourceError> {
    let expected_hash = s.expected.quick_xor_hash.as_ref()?;
    if let Some(size) = s.expected.size
        && size != s.received
    {
        return Some(DatasourceError::Transient(format!(
            "size mismatch: received {} bytes, the item has {size}",
            s.received
        )));
    }
    let actual = s.hasher.finish_base64();
    (actual != *expected_hash).then(|| {
        DatasourceError::Transient(format!(
            "hash mismatch: the received bytes hash to {actual}, the item's quickXorHash is {expected_hash}"
        ))
    })
}
