//! Running totals at the edge of what the center keeps: a write that would carry one past i64
//! units is refused with 422 and changes nothing, on both stores.

use crate::common::*;
use hedge_center_api::model::*;
use hedge_domain::Side;
use reqwest::Method;

both_backends!(legacy_total_overflow, position_total_overflow,);

/// 1e9 lots, the most one request may carry; 92 of them fit in i64 units, the 93rd does not.
const MAX_LOTS: &str = "1000000000";

async fn legacy_total_overflow(b: Backend) {
    let env = Env::start(b).await;
    let buy = |volume: &'static str| {
        let env = &env;
        async move {
            let body = format!(r#"{{"symbol": "EURUSD", "volume": {volume}, "side": 0}}"#);
            env.raw(Method::GET, "/new_position/", None, Some(&body))
                .await
        }
    };
    for _ in 0..92 {
        assert_eq!(buy(MAX_LOTS).await.0, 200);
    }
    let events_before = env.viewer.events(&PageQuery::default()).await.unwrap();
    let (s, text) = buy(MAX_LOTS).await;
    assert_eq!(s, 422, "{text}");
    let e: ApiError = serde_json::from_str(&text).unwrap();
    assert_eq!(e.field.as_deref(), Some("volume"), "{text}");
    assert!(e.message.contains("largest total"), "{text}");
    let events_after = env.viewer.events(&PageQuery::default()).await.unwrap();
    assert_eq!(events_after.items.len(), events_before.items.len());
    // The total stays an exact integer: a small buy afterwards keeps every digit.
    assert_eq!(buy("0.12345678").await.0, 200);
    let (_, body) = env.raw(Method::GET, "/all_positions/", None, None).await;
    assert_eq!(
        body,
        r#""{\"EURUSD\":{\"volume\":92000000000.12345678,\"side\":0}}""#
    );
    env.finish().await;
}

async fn position_total_overflow(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    for id in 1..=92 {
        env.client
            .report_position(&open(CLIENT, id, "EURUSD", Side::Buy, MAX_LOTS))
            .await
            .unwrap();
    }
    let err = env
        .client
        .report_position(&open(CLIENT, 93, "EURUSD", Side::Buy, MAX_LOTS))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    assert!(!err.is_retryable(), "{err}");
    // Nothing of the refused report was kept: the position does not exist and its key is free.
    assert_eq!(
        env.viewer
            .position(CLIENT, hedge_domain::PositionId(93))
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    env.client
        .report_position(&open(CLIENT, 93, "EURUSD", Side::Buy, "0.5"))
        .await
        .unwrap();
    // Read as text, so the total is seen as the center wrote it (/v1 volumes are JSON numbers,
    // hence a half lot: a double holds it exactly at this size).
    let (status, plan) = env
        .raw(Method::GET, "/v1/plan/2001", Some(HEDGE_TOKEN), None)
        .await;
    assert_eq!(status, 200, "{plan}");
    assert!(plan.contains(r#""exposure":92000000000.5,"#), "{plan}");
    env.finish().await;
}
