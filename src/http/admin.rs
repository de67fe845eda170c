//! The admin console at `/admin`: static files compiled into the binary (no build step, nothing
//! to deploy beside it). The page talks to the public GraphQL API like any client; see
//! README "The admin console".

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console is made of: (name under /admin/, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("admin/index.html")),
    ("console.css", CSS, include_bytes!("admin/console.css")),
    ("app.js", JS, include_bytes!("admin/app.js")),
    ("api.js", JS, include_bytes!("admin/api.js")),
    ("dom.js", JS, include_bytes!("admin/dom.js")),
    ("live.js", JS, include_bytes!("admin/live.js")),
    ("pages.js", JS, include_bytes!("admin/pages.js")),
    ("chart.js", JS, include_bytes!("admin/chart.js")),
];

/// The page loads only its own files and talks only to this origin (HTTP and WebSocket).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin") }))
        .route("/admin", get(|| async { asset("index.html") }))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route(
            "/admin/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

fn asset(name: &str) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(file, _, _)| *file == name) else {
        return (StatusCode::NOT_FOUND, "no such file in the admin console").into_response();
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Assets change with the binary; revalidate rather than run a stale console.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
