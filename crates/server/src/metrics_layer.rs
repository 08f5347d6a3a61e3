//! Prometheus metrics: the process-wide recorder and per-request counters.
//!
//! Every histogram is exported as a Prometheus histogram (`_bucket{le}`, `_sum`, `_count`), never
//! as a summary: quantiles computed on one instance cannot be combined with another's, buckets
//! can (`histogram_quantile(0.99, sum by (le) (rate(…_bucket[5m])))`). Each histogram gets the
//! buckets of the time scale it lives on (docs/metrics.md).

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets (seconds) of what a caller waits for: an HTTP request, a search, a retrieval.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets (seconds) of background work that can take from milliseconds to hours: ingesting an
/// upload, a publish into Open WebUI, a sync run and its phases, how late a scheduled run started.
/// Also the buckets of any histogram not named below.
pub const BACKGROUND_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
    28800.0,
];

/// The histograms on [`REQUEST_BUCKETS`].
pub const REQUEST_HISTOGRAMS: &[&str] = &[
    "kbsync_http_request_seconds",
    "kbsync_search_seconds",
    "kbsync_retrieve_seconds",
];

/// The histograms on [`BACKGROUND_BUCKETS`].
pub const BACKGROUND_HISTOGRAMS: &[&str] = &[
    "kbsync_ingest_seconds",
    "kbsync_openwebui_publish_duration_seconds",
    "kbsync_sync_run_duration_seconds",
    "kbsync_sync_phase_seconds",
    "kbsync_sync_queue_lag_seconds",
];

/// The exporter's settings: buckets for every histogram, so none is rendered as a summary.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    let mut builder = PrometheusBuilder::new().set_buckets(BACKGROUND_BUCKETS)?;
    for name in REQUEST_HISTOGRAMS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), REQUEST_BUCKETS)?;
    }
    for name in BACKGROUND_HISTOGRAMS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), BACKGROUND_BUCKETS)?;
    }
    Ok(builder)
}

/// The handle of the process-wide recorder, installed on first use. Several servers in one
/// process (as in tests) share it.
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = builder().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "histogram buckets refused; histograms are exported as summaries");
                PrometheusBuilder::new()
            });
            builder.install_recorder().unwrap_or_else(|e| {
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

    #[test]
    fn every_named_histogram_renders_buckets_of_its_time_scale_and_no_quantiles() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for name in REQUEST_HISTOGRAMS.iter().chain(BACKGROUND_HISTOGRAMS) {
                metrics::histogram!(*name).record(0.2);
            }
            metrics::histogram!("kbsync_not_named_seconds").record(7.0);
        });
        let text = handle.render();
        assert!(!text.contains("quantile="), "{text}");
        for name in REQUEST_HISTOGRAMS {
            assert!(
                text.contains(&format!("{name}_bucket{{le=\"0.001\"}} 0")),
                "{name}: {text}"
            );
            assert!(
                text.contains(&format!("{name}_bucket{{le=\"0.25\"}} 1")),
                "{name}: {text}"
            );
            assert!(
                text.contains(&format!("{name}_bucket{{le=\"30\"}} 1")),
                "{name}: {text}"
            );
            assert!(
                !text.contains(&format!("{name}_bucket{{le=\"3600\"}}")),
                "{name}: {text}"
            );
        }
        for name in BACKGROUND_HISTOGRAMS.iter().chain(&["kbsync_not_named_seconds"]) {
            assert!(
                text.contains(&format!("{name}_bucket{{le=\"28800\"}} 1")),
                "{name}: {text}"
            );
            assert!(
                text.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 1")),
                "{name}: {text}"
            );
            assert!(
                !text.contains(&format!("{name}_bucket{{le=\"0.001\"}}")),
                "{name}: {text}"
            );
        }
        for name in REQUEST_HISTOGRAMS.iter().chain(BACKGROUND_HISTOGRAMS) {
            assert!(text.contains(&format!("{name}_sum ")), "{name}: {text}");
            assert!(text.contains(&format!("{name}_count 1")), "{name}: {text}");
        }
    }
}
