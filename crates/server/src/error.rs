//! The one place where errors become HTTP statuses. Bodies are `{"error": {"code", "message"}}`;
//! 5xx bodies never carry internals (those go to the log).

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use kbsync_store::{BlobError, StoreError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (unparseable body, wrong content type).
    #[error("{message}")]
    BadRequest { message: String },
    /// A field has a value the service cannot accept; the message names the field.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("authentication required")]
    Unauthenticated,
    #[error("invalid email or password")]
    BadCredentials,
    /// The caller may see the resource but not do this to it.
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist, or the caller may not know that it does.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{what} is larger than the limit of {limit_bytes} bytes")]
    PayloadTooLarge { what: &'static str, limit_bytes: u64 },
    #[error("too many failed attempts; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable(String),
    /// The server has no capacity for this right now (password hashing is saturated).
    #[error("the server is busy; try again in a moment")]
    Busy { retry_after_secs: u64 },
    /// The server is not set up for this (for example, a datasource without credentials).
    #[error("{0}")]
    NotImplemented(String),
    /// A remote service (a datasource, Open WebUI) answered something unusable; the message names it.
    #[error("{0}")]
    BadGateway(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        ApiError::Internal(format!("{context}: {err}"))
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "not_configured"),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                "internal error".to_owned()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "dependency unavailable");
                "service unavailable, try again later".to_owned()
            }
            other => other.to_string(),
        };
        let mut response =
            (status, Json(json!({"error": {"code": code, "message": message}}))).into_response();
        match &self {
            ApiError::TooManyRequests { retry_after_secs } | ApiError::Busy { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            ApiError::Unauthenticated | ApiError::BadCredentials => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("resource"),
            StoreError::Conflict(what) => ApiError::Conflict(format!("already exists: {what}")),
            StoreError::InvalidReference(what) => ApiError::invalid("reference", what),
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            other => ApiError::internal("store", other),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(err: BlobError) -> Self {
        ApiError::internal("blob store", err)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
