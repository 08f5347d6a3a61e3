//! Admission of reads: at most [`ServerSettings::api_concurrency`](crate::ServerSettings) GET
//! and HEAD requests to the API and the web UI are handled at once; the others wait their turn,
//! first come first served.
//!
//! Every handler takes connections from the store's pool, and so do the sync runs of this
//! instance. Without a limit, a hundred clients searching at once queue a hundred requests at
//! the pool, and each statement of a sync run waits behind all of them: measured with
//! `kbsync-bench load`, a sync ran 23–24 times slower with 30 clients than alone. With the limit
//! below the pool's size, requests queue here instead and the runs always find a connection.
//! A handler's turn ends with its response: a download or an event stream that goes on
//! streaming holds none. Only reads wait (what many clients send at once); writes are few, and
//! an upload may stream its body for minutes. Never held up either: health checks and metrics
//! (probes time out), and the requests whose handler waits on another service (browsing a
//! drive, the sign-in callbacks), which would hold a turn for as long as that service takes.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use tokio::sync::Semaphore;

/// Requests admitted at once, whatever the load.
fn exempt(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
        || matches!(path, "/healthz" | "/readyz" | "/metrics")
        || path.starts_with("/api/v1/datasources/")
        || path.starts_with("/api/v1/connectors/")
        || path.ends_with("/callback")
}

/// The middleware: waits for a turn (unless the request is exempt), then handles the request.
pub async fn admit(State(turns): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    if exempt(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    // The semaphore is never closed; were it, the request would go on without a turn.
    let _turn = turns.acquire_owned().await.ok();
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{Router, body::Body, http::StatusCode, middleware, routing::get};
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    fn app(turns: Arc<Semaphore>, release: Arc<Notify>) -> Router {
        Router::new()
            .route(
                "/api/v1/slow",
                get(move || {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        "done"
                    }
                }),
            )
            .route("/api/v1/fast", get(|| async { "fast" }))
            .route("/readyz", get(|| async { "ready" }))
            .layer(middleware::from_fn_with_state(turns, admit))
    }

    fn request(path: &str) -> Request {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_request_beyond_the_limit_waits_for_a_turn_while_health_checks_pass() {
        let turns = Arc::new(Semaphore::new(1));
        let release = Arc::new(Notify::new());
        let app = app(turns.clone(), release.clone());
        let slow = tokio::spawn(app.clone().oneshot(request("/api/v1/slow")));
        // The slow request holds the only turn once it is in its handler.
        tokio::time::timeout(Duration::from_secs(10), async {
            while turns.available_permits() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();

        let fast = tokio::spawn(app.clone().oneshot(request("/api/v1/fast")));
        let ready = app.clone().oneshot(request("/readyz")).await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK, "a health check is never held up");
        let mut fast = fast;
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut fast)
                .await
                .is_err(),
            "the second request waits for the turn"
        );

        release.notify_one();
        assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
        let fast = tokio::time::timeout(Duration::from_secs(10), fast)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            fast.status(),
            StatusCode::OK,
            "and is handled once the turn is free"
        );
        assert_eq!(turns.available_permits(), 1, "every turn is given back");
    }

    #[test]
    fn reads_wait_except_health_metrics_and_those_waiting_on_another_service() {
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/datasources/onedrive/browse",
            "/api/v1/datasources/onedrive/auth/callback",
            "/api/v1/connectors/gdrive/browse",
            "/api/v1/connectors/gdrive/auth/callback",
            "/auth/oidc/callback",
        ] {
            assert!(exempt(&Method::GET, path), "{path}");
        }
        for path in [
            "/api/v1/search",
            "/api/v1/knowledge",
            "/",
            "/healthz/x",
            "/api/v1/datasources",
        ] {
            assert!(!exempt(&Method::GET, path), "{path}");
            assert!(!exempt(&Method::HEAD, path), "{path}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(exempt(&method, "/api/v1/knowledge"), "{method}");
        }
    }
}
