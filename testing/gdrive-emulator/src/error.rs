//! Google's JSON error shape for the Drive API:
//! `{"error":{"code","message","errors":[{"domain","reason","message","location","locationType"}],"status"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer of the Drive API (boxed: it travels in every handler's `Result`).
#[derive(Debug, Clone)]
pub(crate) struct ApiError(Box<ErrorFields>);

#[derive(Debug, Clone)]
pub(crate) struct ErrorFields {
    pub status: StatusCode,
    pub domain: &'static str,
    pub reason: String,
    pub message: String,
    pub location: Option<(String, &'static str)>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, domain: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorFields {
            status,
            domain,
            reason: reason.to_string(),
            message: message.into(),
            location: None,
            retry_after: None,
        }))
    }
    pub fn at(mut self, location: &str, location_type: &'static str) -> Self {
        self.0.location = Some((location.to_string(), location_type));
        self
    }
    /// 400 `invalid` "Invalid Value" on a parameter (a bad `q`, page token, field value).
    pub fn invalid_parameter(name: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "global", "invalid", "Invalid Value").at(name, "parameter")
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "global", "badRequest", message)
    }
    pub fn required(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "global",
            "required",
            format!("Required parameter: {name}"),
        )
        .at(name, "parameter")
    }
    pub fn file_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "global",
            "notFound",
            format!("File not found: {id}."),
        )
        .at("fileId", "parameter")
    }
    pub fn drive_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "global",
            "notFound",
            format!("Shared drive not found: {id}"),
        )
        .at("driveId", "parameter")
    }
    /// 401 "Invalid Credentials": a missing, unknown, expired or revoked access token.
    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "global",
            "authError",
            "Invalid Credentials",
        )
        .at("Authorization", "header")
    }
    pub fn insufficient_scopes() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "global",
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        )
    }
    pub fn forbidden(reason: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "global", reason, message)
    }

    fn status_name(&self) -> &'static str {
        match self.status.as_u16() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ALREADY_EXISTS",
            416 => "OUT_OF_RANGE",
            429 => "RESOURCE_EXHAUSTED",
            500 => "INTERNAL",
            501 => "NOT_IMPLEMENTED",
            502 | 503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "UNKNOWN",
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let mut item = json!({"domain": self.domain, "reason": self.reason, "message": self.message});
        if let Some((loc, ty)) = &self.location {
            item["location"] = json!(loc);
            item["locationType"] = json!(ty);
        }
        json!({"error": {
            "code": self.status.as_u16(),
            "message": self.message,
            "errors": [item],
            "status": self.status_name(),
        }})
    }
}

impl std::ops::Deref for ApiError {
    type Target = ErrorFields;
    fn deref(&self) -> &ErrorFields {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorFields {
        &mut self.0
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    r#"Bearer realm="https://accounts.google.com/", error="invalid_token""#,
                ),
            );
        }
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
