//! The OpenAPI tool server's routes (`/api/v1/tools/…`); see [`crate::service::tools`].

use axum::{Json, extract::State};
use serde_json::Value;

use super::extract::ApiJson;
use crate::{
    AppState,
    auth::ToolCaller,
    error::{ApiResult, ErrorBody},
    service::tools::{self, SearchKnowledgeRequest, SearchKnowledgeResponse},
};

/// The tool server's own small OpenAPI document, for Open WebUI (no authentication)
///
/// Describes only `search_knowledge`; the whole API is described at `/api/v1/openapi.json`.
#[utoipa::path(get, path = "/tools/openapi.json", tag = "tools",
    responses((status = 200, description = "An OpenAPI document", body = Object)))]
pub async fn openapi_spec(State(state): State<AppState>) -> Json<Value> {
    Json(tools::openapi_spec(&state.settings.public_url))
}

/// The tool server's operation: passages for a question, from what the user may read
///
/// With an API key an admin marked `trusted_user_assertion`, the `X-OpenWebUI-User-Email` header
/// names the user the passages are for.
#[utoipa::path(post, path = "/tools/search_knowledge", tag = "tools",
    security(("session_token" = []), ("api_key" = [])),
    params(("x-openwebui-user-email" = Option<String>, Header, description = "The user the request is for (trusted service keys only)")),
    request_body = SearchKnowledgeRequest,
    responses(
        (status = 200, description = "The passages, best first", body = SearchKnowledgeResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session token or API key", body = ErrorBody),
        (status = 403, description = "The asserted user does not exist, is disabled or is not a person", body = ErrorBody),
        (status = 422, description = "No `query`, or a bad `top_k`", body = ErrorBody),
    ))]
pub async fn search_knowledge(
    State(state): State<AppState>,
    ToolCaller(user): ToolCaller,
    ApiJson(req): ApiJson<SearchKnowledgeRequest>,
) -> ApiResult<Json<SearchKnowledgeResponse>> {
    Ok(Json(tools::search_knowledge(&state, &user, req).await?))
}
