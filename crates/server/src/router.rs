//! Every route, in one place: the API grouped by version, the web UI's pages apart (see
//! [`crate::ui::router`]).

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{delete, get, post},
};
use tower_http::trace::TraceLayer;

use crate::{
    AppState,
    api::{accounts, datasources, health, openwebui, sync, tools, v1, webhooks},
    error::ApiError,
    metrics_layer, ui,
};

/// JSON request bodies larger than this are refused; uploads have their own limit.
const JSON_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let uploads = Router::new()
        .route("/knowledge/{id}/files", post(v1::upload_file).get(v1::list_files))
        .layer(DefaultBodyLimit::disable());

    let api_v1 = Router::new()
        .route("/auth/login", post(v1::login))
        .route("/auth/logout", post(v1::logout))
        .route("/me", get(v1::me))
        .route("/me/password", post(accounts::change_own_password))
        .route(
            "/me/api-keys",
            post(accounts::create_own_key).get(accounts::list_own_keys),
        )
        .route("/me/api-keys/{id}", delete(accounts::revoke_own_key))
        .route(
            "/admin/api-keys",
            post(accounts::create_service_key).get(accounts::list_all_keys),
        )
        .route(
            "/admin/api-keys/{id}",
            delete(accounts::revoke_any_key).patch(accounts::patch_any_key),
        )
        .route("/users", post(v1::create_user).get(accounts::list_accounts))
        .route(
            "/users/{id}",
            get(accounts::get_account)
                .patch(accounts::patch_account)
                .delete(accounts::delete_account),
        )
        .route("/users/{id}/password", post(accounts::reset_password))
        .route("/knowledge", post(v1::create_knowledge).get(v1::list_knowledge))
        .route(
            "/knowledge/{id}",
            get(v1::get_knowledge)
                .patch(v1::patch_knowledge)
                .delete(v1::delete_knowledge),
        )
        .route("/knowledge/{id}/access", get(v1::get_access).put(v1::put_access))
        .route(
            "/knowledge/{id}/files/{file_id}",
            get(v1::get_file).delete(v1::delete_file),
        )
        .route("/knowledge/{id}/files/{file_id}/content", get(v1::file_content))
        .route("/search", get(v1::search_route))
        .route("/retrieve", get(v1::retrieve_route))
        .route("/tools/openapi.json", get(tools::openapi_spec))
        .route("/tools/search_knowledge", post(tools::search_knowledge))
        .route(
            "/knowledge/{id}/connection",
            get(datasources::get_connection).delete(datasources::delete_connection),
        )
        .route(
            "/knowledge/{id}/sources",
            post(sync::add_sources).get(sync::list_sources),
        )
        .route("/knowledge/{id}/sources/{source_id}", delete(sync::delete_source))
        .route("/knowledge/{id}/sync", post(sync::start_sync).get(sync::get_sync))
        .route("/knowledge/{id}/sync/cancel", post(sync::cancel_sync))
        .route("/knowledge/{id}/sync/events", get(sync::sync_events))
        .route("/knowledge/{id}/sync/runs", get(sync::list_runs))
        .route(
            "/knowledge/{id}/openwebui",
            get(openwebui::get_publication)
                .put(openwebui::put_publication)
                .delete(openwebui::delete_publication),
        )
        .route("/knowledge/{id}/openwebui/publish", post(openwebui::publish_now))
        .route(
            "/knowledge/{id}/openwebui/publishes",
            get(openwebui::list_publishes),
        )
        .route("/datasources", get(datasources::list))
        .route(
            "/datasources/{datasource}/auth/initiate",
            get(datasources::initiate),
        )
        .route(
            "/datasources/{datasource}/auth/app-only",
            post(datasources::connect_app_only),
        )
        .route(
            "/datasources/{datasource}/auth/callback",
            get(datasources::callback),
        )
        .route("/datasources/{datasource}/browse", get(datasources::browse))
        .route("/webhooks/{webhook}", post(webhooks::notify))
        .route("/webhooks/{webhook}/lifecycle", post(webhooks::notify))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .merge(uploads);

    Router::new()
        .nest("/api/v1", api_v1)
        .merge(ui::router())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(middleware::from_fn(metrics_layer::record_request))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
