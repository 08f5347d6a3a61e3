//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` declarations by
//! the same `routes!` calls that build the router ([`crate::router::documented_routes`]), served at
//! `/api/v1/openapi.json`, and rendered as a reference page at `/api/docs` (by the web UI's
//! templates, without scripts or anything from elsewhere).
//!
//! Authentication is documented per operation with three schemes: `session_token` (the bearer
//! token `POST /auth/login` answers), `api_key` (a bearer `kbs_…` key; `["write"]` where a read
//! key is refused) and `session_cookie` (the web UI's cookie, which opens only GET routes).
//! Operations without `security` need none.

use std::sync::LazyLock;

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use serde_json::Value;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{auth, error::ErrorBody, router, ui};

/// The names of the security schemes, as operations' `security` refers to them.
pub const SESSION_TOKEN: &str = "session_token";
pub const API_KEY: &str = "api_key";
pub const SESSION_COOKIE: &str = "session_cookie";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kbsync API",
        description = "kbsync keeps knowledge bases in sync with cloud drives and searches them, \
            returning only what the caller may read. Errors answer `{\"error\": {\"code\", \"message\"}}` \
            (schema `ErrorBody`); 5xx messages never carry internals. The web UI's pages are not part of the API \
            and are not described here.",
    ),
    tags(
        (name = "auth", description = "Signing in and out, the caller's own account"),
        (name = "knowledge", description = "Knowledge bases and their manual access grants"),
        (name = "files", description = "Documents of a knowledge base: uploads, metadata, original bytes"),
        (name = "search", description = "Full-text search and passage retrieval over what the caller may read"),
        (name = "sync", description = "Sources, sync runs, sync state and live events"),
        (name = "datasources", description = "Connecting knowledge bases to datasources (OAuth) and the picker"),
        (name = "open webui", description = "Publishing knowledge bases into Open WebUI"),
        (name = "tools", description = "The OpenAPI tool server for Open WebUI"),
        (name = "api keys", description = "Personal API keys, service keys (admins)"),
        (name = "users", description = "Account administration (admins)"),
        (name = "webhooks", description = "Change notifications from datasources"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "documentation", description = "This document and its reference page"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
)]
struct BaseDocument;

/// Adds the security schemes that operations' `security` names.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SESSION_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The session token `POST /api/v1/auth/login` answers, as `Authorization: Bearer <token>`. \
                         Needed (rather than an API key) to manage credentials.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kbs_…")
                    .description(Some(
                        "An API key (`kbs_…`) as `Authorization: Bearer <key>`, made on `/keys` or with \
                         `POST /api/v1/me/api-keys`. A `read` key opens only GET and HEAD; operations that \
                         need a `write` key list `write`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth::SESSION_COOKIE,
                "The web UI's session cookie; it opens only the API's GET routes.",
            ))),
        );
    }
}

/// The document's fixed parts (info, tags, security schemes, the error schema), before the
/// routes add their operations and schemas.
pub fn base_document() -> utoipa::openapi::OpenApi {
    BaseDocument::openapi()
}

/// The whole document: every documented route with its schemas.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> =
        LazyLock::new(|| router::documented_routes().into_openapi());
    &DOCUMENT
}

/// The document as JSON, for the reference page.
fn document_value() -> &'static Value {
    static VALUE: LazyLock<Value> = LazyLock::new(|| serde_json::to_value(document()).unwrap_or_default());
    &VALUE
}

/// This API's OpenAPI 3.1 document (no authentication)
#[utoipa::path(get, path = "/openapi.json", tag = "documentation",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn document_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}

/// The API reference: this document as a page (no authentication, no scripts)
#[utoipa::path(get, path = "/api/docs", tag = "documentation",
    responses((status = 200, description = "The reference page", content(("text/html")))))]
pub async fn reference_page(session: Result<ui::Session, ui::UiError>) -> Response {
    match ui::api_docs::render(document_value(), session.ok().as_ref()) {
        Ok(page) => ui::security_headers(page).await,
        Err(e) => ui::UiError::Api(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn document_is_openapi_3_1_with_the_three_security_schemes() {
        let doc = document_value();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes[SESSION_TOKEN]["scheme"], "bearer");
        assert_eq!(schemes[API_KEY]["scheme"], "bearer");
        assert_eq!(schemes[SESSION_COOKIE]["in"], "cookie");
        assert_eq!(schemes[SESSION_COOKIE]["name"], auth::SESSION_COOKIE);
    }

    /// Every operation has a tag the document declares, a summary and responses; every error
    /// response it documents uses the shared error schema; every security requirement names a
    /// declared scheme.
    #[test]
    fn every_operation_is_tagged_summarised_and_documents_errors_with_the_error_schema() {
        let doc = document_value();
        let tags: Vec<&str> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let name = format!("{method} {path}");
                let op_tags = op["tags"].as_array().unwrap_or_else(|| panic!("{name}: no tags"));
                assert_eq!(op_tags.len(), 1, "{name}: {op_tags:?}");
                assert!(
                    tags.contains(&op_tags[0].as_str().unwrap()),
                    "{name}: undeclared tag"
                );
                assert!(
                    op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                    "{name}: no summary"
                );
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{name}: no responses");
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let body = &response["content"]["application/json"]["schema"]["$ref"];
                        // The OAuth callback answers its errors as a page for the popup's opener.
                        if path.ends_with("/auth/callback") {
                            continue;
                        }
                        assert_eq!(
                            body, "#/components/schemas/ErrorBody",
                            "{name}: {status} does not use the error schema"
                        );
                    }
                }
                for requirement in op["security"].as_array().into_iter().flatten() {
                    for scheme in requirement.as_object().unwrap().keys() {
                        assert!(schemes.contains_key(scheme), "{name}: unknown scheme {scheme}");
                    }
                }
            }
        }
        assert!(operations > 50, "only {operations} operations");
    }
}
