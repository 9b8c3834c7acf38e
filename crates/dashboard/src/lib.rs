//! The hedge center's web dashboard: a live panel for accounts, client positions, the hedge plan,
//! hedges and the event log, successor of HedgeTerminal's panel for the whole system.
//!
//! The page is plain HTML, CSS and JavaScript with no build step and no external fetch, embedded in
//! the binary ([`asset`]) so the center serves it with no separate server and no internet. The browser
//! talks only to the center's `/v1` API with the bearer token the user enters, and follows the
//! center's event stream (`/v1/events/stream`, resumed with `Last-Event-ID`) so it updates without
//! reloads and survives a center restart. [`router`] serves `/` and `/assets/...` with exact content
//! types, revalidated caching (an `ETag` per asset) and a Content-Security-Policy that allows nothing
//! but the center itself; the center merges it into its application.

pub mod asset;

pub use asset::{Asset, ASSETS};

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Only the center itself may supply scripts, styles, images and connections; nothing may frame the
/// page. No inline script or style is allowed: the page needs none.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes: `/` (the page) and `/assets/{name}` (its script, style and icon). Generic
/// over the state so it merges into the center's router whatever state that carries.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset_by_name))
}

async fn index(headers: HeaderMap) -> Response {
    match asset::find("index.html") {
        Some(page) => serve(page, &headers),
        None => not_found(),
    }
}

async fn asset_by_name(Path(name): Path<String>, headers: HeaderMap) -> Response {
    // The page itself is served at `/` only, so relative links always resolve against the root.
    match asset::find(&name).filter(|a| a.name != "index.html") {
        Some(found) => serve(found, &headers),
        None => not_found(),
    }
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.bytes.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    // Revalidate every time: the assets change with the binary and are tiny, and a 304 costs little.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(headers);
    response
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn not_found() -> Response {
    let mut response = (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "no such dashboard asset\n",
    )
        .into_response();
    security_headers(response.headers_mut());
    response
}
