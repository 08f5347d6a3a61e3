//! The stylesheet and script, compiled into the binary.

use super::*;

pub async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", include_str!("../../../static/app.css"))
}

pub async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../../../static/app.js"),
    )
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
