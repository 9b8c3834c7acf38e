//! Health, metrics and the OpenAPI document.

use crate::common::*;
use reqwest::Method;

both_backends!(health_metrics_and_openapi, readiness_follows_writes,);

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
    let (s, metrics) = env
        .raw(Method::GET, "/metrics", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(s, 200);
    assert!(metrics.contains("hedge_center_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/plan/{hedge_login}\",status=\"200\""));
    assert!(metrics.contains("hedge_center_plan_items 0"));
    assert!(metrics.contains("hedge_center_events_total"));
    let (s, doc) = env
        .raw(Method::GET, "/openapi.json", Some(VIEWER_TOKEN), None)
        .await;
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

/// Makes every event insert fail (`on`) or work again, from outside the center, as a full disk
/// or a database turned read-only would: every write records an event.
async fn fail_writes(env: &Env, on: bool) {
    match &env.location {
        hedge_center::store::StoreLocation::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn.execute_batch(if on {
                "CREATE TRIGGER no_writes BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
            } else {
                "DROP TRIGGER no_writes"
            })
            .unwrap();
        }
        hedge_center::store::StoreLocation::Postgres { url, schema } => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let schema = schema.as_deref().unwrap();
            client
                .batch_execute(&if on {
                    format!("ALTER TABLE {schema}.events ADD CONSTRAINT no_writes CHECK (false) NOT VALID")
                } else {
                    format!("ALTER TABLE {schema}.events DROP CONSTRAINT no_writes")
                })
                .await
                .unwrap();
        }
    }
}

async fn readiness_follows_writes(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    assert_eq!(env.anonymous.ready().await.unwrap().status, "ready");
    fail_writes(&env, true).await;
    // No write was attempted yet: the probe finds the fault.
    let (s, body) = env.raw(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, 503, "{body}");
    let err = env
        .client
        .report_position(&open(CLIENT, 1, "EURUSD", hedge_domain::Side::Buy, "0.1"))
        .await
        .unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("503"),
        "{err}"
    );
    fail_writes(&env, false).await;
    // The probe passes again, but the last real write failed: still not ready, and why.
    let (s, body) = env.raw(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("the last write failed"), "{body}");
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", hedge_domain::Side::Buy, "0.1"))
        .await
        .unwrap();
    assert_eq!(env.anonymous.ready().await.unwrap().status, "ready");
    env.finish().await;
}
