//! Multipart upload bodies. Upload routes have no overall body limit (the file streams to the
//! blob store under the upload limit), so every other part is small by rule: a form field (the
//! UI's CSRF token) is read only up to [`MAX_FORM_FIELD_BYTES`], and a body may carry at most
//! [`MAX_FORM_FIELDS`] of them before its file; more or larger is refused with 400.

use axum::extract::{
    Multipart,
    multipart::{Field, MultipartError},
};

use crate::error::ApiError;

/// The most bytes a non-file field of an upload may hold.
pub const MAX_FORM_FIELD_BYTES: usize = 512;
/// The most non-file fields an upload may carry.
pub const MAX_FORM_FIELDS: usize = 16;
/// How much of a refused body is still read, so that a client still sending it gets the answer.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024;

/// Counts the non-file fields of one upload body.
#[derive(Debug, Default)]
pub struct FormFields {
    seen: usize,
}

impl FormFields {
    /// Reads a non-file field as text, refusing it when it is too long, not UTF-8, or one field
    /// too many.
    pub async fn text(&mut self, mut field: Field<'_>) -> Result<String, ApiError> {
        self.seen += 1;
        if self.seen > MAX_FORM_FIELDS {
            return Err(ApiError::BadRequest {
                message: format!("an upload may carry at most {MAX_FORM_FIELDS} fields besides its file"),
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
            if bytes.len() + chunk.len() > MAX_FORM_FIELD_BYTES {
                return Err(ApiError::BadRequest {
                    message: format!(
                        "a field other than the file is longer than {MAX_FORM_FIELD_BYTES} bytes"
                    ),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        String::from_utf8(bytes).map_err(|_| ApiError::BadRequest {
            message: "a field other than the file is not UTF-8 text".to_owned(),
        })
    }
}

/// Reads and forgets what is left of a refused upload, up to [`DRAIN_LIMIT_BYTES`]. A client
/// still sending a small body then receives the refusal, where closing the connection on unread
/// bytes would reset it before the answer is read. A larger rest is left unread: the connection
/// is closed instead, so a refused body never costs more than the limit.
pub async fn drain(multipart: &mut Multipart) {
    let mut left = DRAIN_LIMIT_BYTES;
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(chunk)) = field.chunk().await {
            if chunk.len() >= left {
                return;
            }
            left -= chunk.len();
        }
    }
}

/// A multipart body that could not be parsed.
pub fn unreadable(e: MultipartError) -> ApiError {
    ApiError::BadRequest {
        message: format!("the upload could not be read: {e}"),
    }
}
