//! What is not a page: the static files, the security headers, the answer for any other path.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// The headers every answer carries: no sniffing, no framing, scripts and styles of this site only.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

const STATIC_FILES: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("../../static/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../static/app.js")),
    ("htmx.min.js", "text/javascript; charset=utf-8", include_str!("../../static/vendor/htmx-2.0.11.min.js")),
    (
        "htmx-sse.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/vendor/htmx-ext-sse-2.2.4.min.js"),
    ),
];

/// The app's CSS and scripts, compiled into the binary.
pub async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match STATIC_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "public, max-age=3600")], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// Any other path.
pub async fn not_found_page() -> Response {
    (StatusCode::NOT_FOUND, Html("<!doctype html><title>Not found</title><p>There is nothing here. <a href=\"/\">Back to the servers</a>.</p>")).into_response()
}
