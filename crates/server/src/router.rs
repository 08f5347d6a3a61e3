//! Every route, in one place: the API grouped by version, the web UI's pages apart (see
//! [`crate::ui::router`]).
//!
//! API, health and documentation routes are declared only through `routes!`, which takes each
//! route's method and path from its handler's `#[utoipa::path]`: the router and the OpenAPI
//! document ([`crate::openapi`]) are built from the same declarations, so a route cannot be served
//! without being documented (a test below refuses routes added any other way).

use axum::{Router, extract::DefaultBodyLimit, middleware};
use tower_http::trace::TraceLayer;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState, admission,
    api::{accounts, datasources, health, openwebui, sync, tools, v1, webhooks},
    error::ApiError,
    metrics_layer, openapi, ui,
};

/// JSON request bodies larger than this are refused; uploads have their own limit.
const JSON_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let (documented, _) = documented_routes().split_for_parts();
    documented
        .merge(ui::router())
        .fallback(|| async { ApiError::NotFound("route") })
        // Inside the metrics: a request's recorded time includes its wait for a turn.
        .layer(middleware::from_fn_with_state(
            state.api_admission.clone(),
            admission::admit,
        ))
        .layer(middleware::from_fn(metrics_layer::record_request))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The API under `/api/v1`, the health and metrics routes and the API's documentation, with the
/// OpenAPI document that describes them.
pub fn documented_routes() -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(v1::upload_file, v1::list_files))
        .layer(DefaultBodyLimit::disable());

    let api_v1 = OpenApiRouter::new()
        .routes(routes!(v1::login))
        .routes(routes!(v1::logout))
        .routes(routes!(v1::me))
        .routes(routes!(accounts::change_own_password))
        .routes(routes!(accounts::create_own_key, accounts::list_own_keys))
        .routes(routes!(accounts::revoke_own_key))
        .routes(routes!(accounts::create_service_key, accounts::list_all_keys))
        .routes(routes!(accounts::revoke_any_key, accounts::patch_any_key))
        .routes(routes!(v1::create_user, accounts::list_accounts))
        .routes(routes!(
            accounts::get_account,
            accounts::patch_account,
            accounts::delete_account
        ))
        .routes(routes!(accounts::reset_password))
        .routes(routes!(v1::create_knowledge, v1::list_knowledge))
        .routes(routes!(
            v1::get_knowledge,
            v1::patch_knowledge,
            v1::delete_knowledge
        ))
        .routes(routes!(v1::get_access, v1::put_access))
        .routes(routes!(v1::get_file, v1::delete_file))
        .routes(routes!(v1::file_content))
        .routes(routes!(v1::search_route))
        .routes(routes!(v1::retrieve_route))
        .routes(routes!(tools::openapi_spec))
        .routes(routes!(tools::search_knowledge))
        .routes(routes!(
            datasources::get_connection,
            datasources::delete_connection
        ))
        .routes(routes!(sync::add_sources, sync::list_sources))
        .routes(routes!(sync::delete_source))
        .routes(routes!(sync::start_sync, sync::get_sync))
        .routes(routes!(sync::cancel_sync))
        .routes(routes!(sync::sync_events))
        .routes(routes!(sync::list_runs))
        .routes(routes!(
            openwebui::get_publication,
            openwebui::put_publication,
            openwebui::delete_publication
        ))
        .routes(routes!(openwebui::publish_now))
        .routes(routes!(openwebui::list_publishes))
        .routes(routes!(datasources::list))
        .routes(routes!(datasources::initiate))
        .routes(routes!(datasources::connect_app_only))
        .routes(routes!(datasources::callback))
        .routes(routes!(datasources::browse))
        .routes(routes!(datasources::connectors_initiate))
        .routes(routes!(datasources::connectors_callback))
        .routes(routes!(datasources::connectors_browse))
        .routes(routes!(webhooks::notify))
        .routes(routes!(webhooks::notify_lifecycle))
        .routes(routes!(openapi::document_json))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .merge(uploads);

    OpenApiRouter::with_openapi(openapi::base_document())
        .nest("/api/v1", api_v1)
        .routes(routes!(openapi::reference_page))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

#[cfg(test)]
mod tests {
    /// A route added outside `routes!` would be served without being documented.
    #[test]
    fn documented_routes_are_declared_only_through_the_routes_macro() {
        let source = include_str!("router.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        for forbidden in [".route(", ".route_service(", ".nest_service("] {
            assert!(
                !code.contains(forbidden),
                "router.rs declares a route with `{forbidden}`: use `.routes(routes!(handler))` with a \
                 `#[utoipa::path]` on the handler, so that the OpenAPI document describes it"
            );
        }
        // The web UI's router (merged above, undocumented: its pages are not the API) must not
        // serve anything under the API's prefix.
        let ui = include_str!("ui/mod.rs");
        assert!(!ui.contains("\"/api"), "the UI router serves a route under /api");
    }
}
