//! The pre-authenticated download host (`/_download/{token}`): no Authorization header needed (one sent anyway
//! is recorded by the traffic layer), the token expires on the emulator clock, and a single `Range` gives 206.

use crate::Shared;
use crate::error::{GraphError, RequestMeta};
use crate::render;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Parses a single `bytes=` range against a length. `None` = ignore the header (serve 200); `Some(Err)` = 416.
fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        let suffix: u64 = end.parse().ok()?;
        if suffix == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(suffix), len - 1)));
    }
    let start: u64 = start.parse().ok()?;
    let end: u64 = if end.is_empty() {
        len.saturating_sub(1)
    } else {
        end.parse().ok()?
    };
    if start >= len || end < start {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(len - 1))))
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(meta): Extension<RequestMeta>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (drive_id, item_id) = match render::verify_download(&shared.download_key, &token, meta.date) {
        Ok(v) => v,
        Err(why) => {
            return GraphError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("The download URL is not valid ({why}). Request the item again for a fresh URL."),
            )
            .into_response_with(&meta);
        }
    };
    let (content, name) = {
        let store = shared.store.read();
        let found = store.drive(&drive_id).and_then(|d| {
            match d.lazy.as_ref().and_then(|l| Some((l, l.index_of(d, &item_id)?))) {
                Some((l, k)) if k > 0 && !l.is_folder(k) => Ok((Some(l.content(k)), l.name(k))),
                _ => d.item(&item_id).map(|i| (i.content.clone(), i.name.clone())),
            }
        });
        match found {
            Ok((Some(c), name)) => (c, name),
            _ => return GraphError::not_found("Item does not exist").into_response_with(&meta),
        }
    };
    let len = content.bytes.len() as u64;
    let mime = render::mime_for(&name);
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let mut resp = match range {
        Some(Ok((start, end))) => {
            let body = content.bytes.slice(start as usize..=end as usize);
            let mut r = (StatusCode::PARTIAL_CONTENT, Body::from(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        Some(Err(())) => {
            let mut r = GraphError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalidRange",
                "The requested range is not satisfiable.",
            )
            .into_response_with(&meta);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        None => (StatusCode::OK, Body::from(content.bytes.clone())).into_response(),
    };
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    resp
}
