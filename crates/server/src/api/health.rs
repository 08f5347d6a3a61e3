use axum::{Json, extract::State, http::header, response::IntoResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    AppState,
    error::{ApiResult, ErrorBody},
};

/// The answer of the health routes.
#[derive(Serialize, ToSchema)]
pub struct HealthDto {
    /// `ok` (liveness) or `ready` (readiness).
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process answers
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthDto)))]
pub async fn healthz() -> Json<HealthDto> {
    Json(HealthDto { status: "ok" })
}

/// Readiness: the database answers
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthDto),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<HealthDto>> {
    state.store.ping().await?;
    Ok(Json(HealthDto { status: "ready" }))
}

/// Prometheus metrics (text exposition format)
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The metrics", content(("text/plain; version=0.0.4")))))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
