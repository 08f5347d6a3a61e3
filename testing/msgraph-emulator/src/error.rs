//! Graph's error shape: `{"error":{"code","message","innerError":{"code"?,"date","request-id","client-request-id"}}}`.

use crate::clock::graph_time;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

/// Per-request identifiers, created by the traffic middleware and echoed in headers and error bodies.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: String,
    pub client_request_id: String,
    pub date: DateTime<Utc>,
}

/// A Graph error about to be sent.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub inner_code: Option<&'static str>,
    pub headers: Vec<(header::HeaderName, String)>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            inner_code: None,
            headers: Vec::new(),
        }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "itemNotFound", what)
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalidRequest", msg)
    }
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", msg);
        e.headers.push((
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"".into(),
        ));
        e
    }
    /// 410 Gone `resyncRequired` with the delta code in `innerError.code` and, in `Location`, the token-less
    /// delta URL that starts a fresh enumeration (driveitem-delta.md, Example 2).
    pub fn resync_required(code: crate::store::ResyncCode, location: String) -> Self {
        Self::new(
            StatusCode::GONE,
            "resyncRequired",
            "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd. Upload any local changes that the server doesn't know about.",
        )
        .with_inner(code.as_str())
        .with_header(header::LOCATION, location)
    }
    pub fn with_inner(mut self, code: &'static str) -> Self {
        self.inner_code = Some(code);
        self
    }
    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON body for this error.
    pub fn body(&self, meta: &RequestMeta) -> serde_json::Value {
        let mut inner = serde_json::json!({
            "date": graph_time(meta.date),
            "request-id": meta.request_id,
            "client-request-id": meta.client_request_id,
        });
        if let (Some(code), Some(obj)) = (self.inner_code, inner.as_object_mut()) {
            obj.insert("code".into(), code.into());
        }
        serde_json::json!({"error": {"code": self.code, "message": self.message, "innerError": inner}})
    }

    pub fn into_response_with(self, meta: &RequestMeta) -> Response {
        let body = self.body(meta);
        let mut resp = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

impl From<crate::store::StoreError> for GraphError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound(m) => GraphError::not_found(format!("Item does not exist ({m})")),
            StoreError::Conflict(m) => GraphError::new(StatusCode::CONFLICT, "nameAlreadyExists", m),
            StoreError::Invalid(m) => GraphError::bad_request(m),
        }
    }
}
