//! The OpenAPI tool server's routes (`/api/v1/tools/…`); see [`crate::service::tools`].

use axum::{Json, extract::State};
use serde_json::Value;

use super::extract::ApiJson;
use crate::{
    AppState,
    auth::ToolCaller,
    error::ApiResult,
    service::tools::{self, SearchKnowledgeRequest, SearchKnowledgeResponse},
};

/// The spec, without authentication (see [`crate::service::tools`]).
pub async fn openapi_spec(State(state): State<AppState>) -> Json<Value> {
    Json(tools::openapi_spec(&state.settings.public_url))
}

pub async fn search_knowledge(
    State(state): State<AppState>,
    ToolCaller(user): ToolCaller,
    ApiJson(req): ApiJson<SearchKnowledgeRequest>,
) -> ApiResult<Json<SearchKnowledgeResponse>> {
    Ok(Json(tools::search_knowledge(&state, &user, req).await?))
}
