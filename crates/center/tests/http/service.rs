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

/// A fault of the database that makes every write fail, injected from outside the center.
enum Fault {
    /// Another process holds SQLite's write lock (longer than the center's busy timeout).
    SqliteLocked(rusqlite::Connection),
    /// A trigger fails every event insert with `disk_full` (SQLSTATE 53100), as PostgreSQL does
    /// when it cannot extend a file. Every write records an event.
    PostgresDiskFull,
}

async fn pg_admin(env: &Env) -> (tokio_postgres::Client, String) {
    let hedge_center::store::StoreLocation::Postgres { url, schema } = &env.location else {
        panic!("not a PostgreSQL store");
    };
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    (client, schema.clone().unwrap())
}

async fn fail_writes(env: &Env) -> Fault {
    match &env.location {
        hedge_center::store::StoreLocation::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            Fault::SqliteLocked(conn)
        }
        hedge_center::store::StoreLocation::Postgres { .. } => {
            let (client, schema) = pg_admin(env).await;
            client
                .batch_execute(&format!(
                    "CREATE FUNCTION {schema}.disk_full() RETURNS trigger LANGUAGE plpgsql AS
                       $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
                     CREATE TRIGGER disk_full BEFORE INSERT ON {schema}.events FOR EACH ROW EXECUTE FUNCTION {schema}.disk_full();"
                ))
                .await
                .unwrap();
            Fault::PostgresDiskFull
        }
    }
}

async fn heal(env: &Env, fault: Fault) {
    match fault {
        Fault::SqliteLocked(conn) => conn.execute_batch("ROLLBACK").unwrap(),
        Fault::PostgresDiskFull => {
            let (client, schema) = pg_admin(env).await;
            client
                .batch_execute(&format!(
                    "DROP TRIGGER disk_full ON {schema}.events; DROP FUNCTION {schema}.disk_full()"
                ))
                .await
                .unwrap();
        }
    }
}

/// A write the database cannot take now is answered 503 (send again) and leaves the center
/// unready until a write commits again; a statement the database refuses for good is 500.
async fn readiness_follows_writes(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    assert_eq!(env.anonymous.ready().await.unwrap().status, "ready");
    let fault = fail_writes(&env).await;
    if b == Backend::Postgres {
        // No write was attempted yet: the probe finds the fault. (On SQLite the probe would
        // wait for the lock; it is checked after the report below.)
        let (s, body) = env.raw(Method::GET, "/readyz", None, None).await;
        assert_eq!(s, 503, "{body}");
    }
    let err = env
        .client
        .report_position(&open(CLIENT, 1, "EURUSD", hedge_domain::Side::Buy, "0.1"))
        .await
        .unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("503"),
        "{err}"
    );
    let (s, body) = env.raw(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, 503, "{body}");
    heal(&env, fault).await;
    // The probe passes again, but the last real write failed: still not ready, and why.
    let (s, body) = env.raw(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("the last write failed"), "{body}");
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", hedge_domain::Side::Buy, "0.1"))
        .await
        .unwrap();
    assert_eq!(env.anonymous.ready().await.unwrap().status, "ready");

    if b == Backend::Postgres {
        // A constraint the database enforces and the center's rules do not know: refused for
        // good, 500, and nothing stored, whichever report of a batch it hits.
        let (client, schema) = pg_admin(&env).await;
        client
            .batch_execute(&format!(
                "ALTER TABLE {schema}.positions ADD CONSTRAINT no_big CHECK (volume_units < 100000000) NOT VALID"
            ))
            .await
            .unwrap();
        let body = serde_json::to_string(&open(CLIENT, 2, "EURUSD", hedge_domain::Side::Buy, "2"))
            .unwrap();
        let small = open(CLIENT, 3, "EURUSD", hedge_domain::Side::Buy, "0.5");
        let ((s, answer), small) = tokio::join!(
            env.raw(
                Method::POST,
                "/v1/positions/events",
                Some(CLIENT_TOKEN),
                Some(&body)
            ),
            env.client.report_position(&small)
        );
        assert_eq!(s, 500, "{answer}");
        small.unwrap();
        let stored = env
            .viewer
            .positions(&hedge_center_api::model::PositionFilter::default())
            .await
            .unwrap();
        let ids: Vec<u64> = stored.items.iter().map(|p| p.position_id.0).collect();
        assert_eq!(ids, vec![1, 3]);
    }
    env.finish().await;
}
