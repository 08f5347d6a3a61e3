//! The one place where errors become HTTP statuses. Bodies are `{"error": {"code", "message"}}`;
//! 5xx bodies never carry internals (those go to the log).

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use kbsync_store::{BlobError, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

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

    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::Invalid),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, ErrorCode::BadCredentials),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            ApiError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy),
            ApiError::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, ErrorCode::NotConfigured),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, ErrorCode::BadGateway),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }
}

/// Every error answer's body: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people: what went wrong (for 5xx, never the internal cause).
    pub message: String,
}

/// What kind of error it is, for programs; each code comes with one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed (unparseable body, wrong content type).
    BadRequest,
    /// 422: a field has a value the service cannot accept; the message names the field.
    Invalid,
    /// 401: no valid session token, API key or session cookie.
    Unauthenticated,
    /// 401: sign-in with a wrong email or password.
    BadCredentials,
    /// 403: the caller may see the resource but not do this to it.
    Forbidden,
    /// 404: the resource does not exist, or the caller may not know that it does.
    NotFound,
    /// 409: the change conflicts with the current state.
    Conflict,
    /// 413: the body is larger than the limit.
    PayloadTooLarge,
    /// 429: too many failed attempts; see `Retry-After`.
    TooManyRequests,
    /// 503: a dependency (the database) is unavailable.
    Unavailable,
    /// 503: the server has no capacity right now; see `Retry-After`.
    Busy,
    /// 501: the server is not set up for this.
    NotConfigured,
    /// 502: a remote service answered something unusable.
    BadGateway,
    /// 500: an internal error (details are in the server's log).
    Internal,
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
        let body = ErrorBody {
            error: ErrorDetail { code, message },
        };
        let mut response = (status, Json(body)).into_response();
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
