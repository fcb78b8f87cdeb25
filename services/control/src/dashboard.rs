//! The dashboard's built assets (`dashboard/dist`, made by `npm run build` there), served at
//! `/` by the control plane.
//!
//! Embedded with `rust-embed`: a release binary carries the dashboard, so one file deploys
//! the whole product and an edge and its dashboard can never be of different builds. Debug
//! builds read the same folder from disk at run time (rust-embed's default), so a developer's
//! `npm run build` shows without recompiling. The folder may be missing (`allow_missing`): the
//! Rust build and CI's cargo steps never need Node, and `/` then answers a short page saying
//! how to build the dashboard.
//!
//! Client-side routes are answered with `index.html` (the SPA fallback) only for a `GET` or
//! `HEAD` of a path outside the server's own prefixes, so an unknown `/v1`, `/app/…`,
//! `/apps/…` or `/sb/…` path keeps its JSON 404 and no dashboard page can shadow an API.

use actix_web::http::Method;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "../../dashboard/dist/"]
#[allow_missing = true]
struct Assets;

/// Paths that belong to the API, the edge or the operator; the SPA fallback never claims them.
const SERVER_PREFIXES: [&str; 7] = [
    "/v1", "/app/", "/apps/", "/sb/", "/healthz", "/readyz", "/metrics",
];

/// Vite puts content-hashed files under `assets/`: a new build has new names, so they can be
/// cached for good; `index.html` must always be fetched fresh to name the current ones.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
<title>Switchboard</title><h1>Switchboard</h1><p>The dashboard is not built into this \
binary. Build it with <code>npm ci &amp;&amp; npm run build</code> in <code>dashboard/</code> \
(<code>cargo xtask run</code> does), then rebuild; the <code>/v1</code> API works without it.</p></html>";

/// The app's default service: a dashboard file, the SPA's `index.html` for a client route, or
/// a 404 (JSON under the server's prefixes, as the API answers elsewhere).
pub async fn serve(request: HttpRequest) -> HttpResponse {
    let path = request.path();
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return not_found();
    }
    if SERVER_PREFIXES
        .iter()
        .any(|prefix| path == prefix.trim_end_matches('/') || path.starts_with(prefix))
    {
        return not_found();
    }
    let relative = path.trim_start_matches('/');
    if !relative.is_empty()
        && let Some(file) = Assets::get(relative)
    {
        let cache = if relative.starts_with("assets/") {
            IMMUTABLE
        } else {
            NO_CACHE
        };
        return file_response(file, cache);
    }
    // A missing file with an extension is a missing asset, not a page: answering it with
    // index.html would hand a script tag HTML and hide the broken reference.
    let last_segment = relative.rsplit('/').next().unwrap_or_default();
    if last_segment.contains('.') {
        return not_found();
    }
    match Assets::get("index.html") {
        Some(index) => file_response(index, NO_CACHE),
        None => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((CACHE_CONTROL, NO_CACHE))
            .body(NOT_BUILT),
    }
}

/// Whether this binary carries a built dashboard (for the startup log).
pub fn is_built() -> bool {
    Assets::get("index.html").is_some()
}

fn file_response(file: rust_embed::EmbeddedFile, cache: &'static str) -> HttpResponse {
    let mime = file.metadata.mimetype();
    let content_type = HeaderValue::from_str(mime)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header((CACHE_CONTROL, cache))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(file.data.into_owned())
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": "not found" }))
}
