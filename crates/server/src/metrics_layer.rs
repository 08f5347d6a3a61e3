//! Prometheus metrics: the process-wide recorder and per-request counters.

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The handle of the process-wide recorder, installed on first use. Several servers in one
/// process (as in tests) share it.
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new().install_recorder().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "a metrics recorder was already installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            })
        })
        .clone()
}

/// Counts requests by method, route template (never the raw path, which would explode the
/// label set) and status, and records their duration.
pub async fn record_request(req: Request, next: Next) -> Response {
    #[expect(clippy::disallowed_methods, reason = "measures the request's real duration")]
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("kbsync_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("kbsync_http_request_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a metrics label, from a fixed set: a client may send any token as a method, and
/// every distinct label value would be a new time series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_come_from_a_fixed_set_whatever_the_client_sends() {
        for (method, label) in [
            (Method::GET, "GET"),
            (Method::HEAD, "HEAD"),
            (Method::POST, "POST"),
            (Method::PUT, "PUT"),
            (Method::PATCH, "PATCH"),
            (Method::DELETE, "DELETE"),
            (Method::OPTIONS, "OPTIONS"),
            (Method::TRACE, "other"),
            (Method::CONNECT, "other"),
        ] {
            assert_eq!(method_label(&method), label);
        }
        for invented in ["FOO", "X-ATTACK-1", "get"] {
            let method = Method::from_bytes(invented.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{invented}");
        }
    }
}
