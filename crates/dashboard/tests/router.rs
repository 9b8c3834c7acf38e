//! The dashboard router answers with the embedded files, exact content types, revalidation headers
//! and a self-only Content-Security-Policy, and 404 for anything else.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(path: &str, if_none_match: Option<&str>) -> axum::response::Response {
    let app: Router = hedge_dashboard::router();
    let mut req = Request::builder().uri(path);
    if let Some(tag) = if_none_match {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    app.oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible")
}

async fn body_text(resp: axum::response::Response) -> String {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn header_of(resp: &axum::response::Response, name: header::HeaderName) -> &str {
    resp.headers()
        .get(&name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .expect("ascii header")
}

#[tokio::test]
async fn root_serves_the_page_with_strict_headers() {
    let resp = get("/", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header_of(&resp, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    let csp = header_of(&resp, header::CONTENT_SECURITY_POLICY).to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(
        !csp.contains("http"),
        "no other origin may be allowed: {csp}"
    );
    assert_eq!(header_of(&resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(header_of(&resp, header::CACHE_CONTROL), "no-cache");
    assert!(header_of(&resp, header::ETAG).starts_with('"'));
    let page = body_text(resp).await;
    assert!(page.contains("<script src=\"/assets/app.js\""));
    assert!(page.contains("/assets/app.css"));
    // The page must not reach for anything outside the center.
    assert!(!page.contains("http://") && !page.contains("https://"));
}

#[tokio::test]
async fn assets_have_their_content_types() {
    for (path, ty) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let resp = get(path, None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(header_of(&resp, header::CONTENT_TYPE), ty, "{path}");
        assert!(resp.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let text = body_text(resp).await;
        assert!(!text.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn script_fetches_nothing_outside_the_center() {
    let script = body_text(get("/assets/app.js", None).await).await;
    // The only absolute URL allowed is the SVG namespace, an identifier that is never fetched.
    for (i, _) in script.match_indices("http") {
        assert!(
            script[i..].starts_with("http://www.w3.org/2000/svg"),
            "the script names another origin: {}",
            &script[i..(i + 40).min(script.len())]
        );
    }
    assert!(script.contains("/v1/events/stream"));
}

#[tokio::test]
async fn unknown_assets_are_404() {
    for path in [
        "/assets/missing.js",
        "/assets/index.html",
        "/assets/..%2FCargo.toml",
        "/assets/",
        "/index.html",
    ] {
        let resp = get(path, None).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn a_matching_etag_gets_304_without_a_body() {
    let first = get("/assets/app.css", None).await;
    let tag = header_of(&first, header::ETAG).to_owned();
    let again = get("/assets/app.css", Some(&tag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header_of(&again, header::ETAG), tag);
    assert!(body_text(again).await.is_empty());
    let stale = get("/assets/app.css", Some("\"0-0\"")).await;
    assert_eq!(stale.status(), StatusCode::OK);
}

#[tokio::test]
async fn merges_into_a_router_with_state() {
    #[derive(Clone)]
    struct CenterState;
    let app: Router = Router::new()
        .route("/v1/ping", axum::routing::get(|| async { "pong" }))
        .merge(hedge_dashboard::router::<CenterState>())
        .with_state(CenterState);
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .oneshot(
            Request::builder()
                .uri("/v1/ping")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(body_text(resp).await, "pong");
}
