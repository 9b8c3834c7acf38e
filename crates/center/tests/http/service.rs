//! Health, metrics and the OpenAPI document.

use crate::common::*;
use reqwest::Method;

both_backends!(health_metrics_and_openapi,);

async fn health_metrics_and_openapi(b: Backend) {
    let env = Env::start(b).await;
    let (s, body) = env.raw(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, 200, "{body}");
    let health = env.anonymous.ready().await.unwrap();
    assert_eq!(health.status, "ready");
    assert_eq!(
        health.store,
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    env.register_defaults().await;
    env.hedge.plan(HEDGE).await.unwrap();
    let (s, metrics) = env.raw(Method::GET, "/metrics", None, None).await;
    assert_eq!(s, 200);
    assert!(metrics.contains("hedge_center_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/plan/{hedge_login}\",status=\"200\""));
    assert!(metrics.contains("hedge_center_plan_items 0"));
    assert!(metrics.contains("hedge_center_events_total"));
    let (s, doc) = env.raw(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/positions/events",
        "/v1/plan/{hedge_login}",
        "/v1/events/stream",
        "/new_position/",
        "/all_positions/",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi misses {p}");
    }
    let (s, body) = env
        .raw(Method::GET, "/v1/nothing", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(s, 404, "{body}");
    env.finish().await;
}
