//! The legacy center's endpoints.

use crate::common::*;
use hedge_center_api::model::*;
use reqwest::Method;

both_backends!(legacy_endpoints, legacy_bad_input,);

async fn legacy_endpoints(b: Backend) {
    let env = Env::start(b).await;
    let (s, body) = env.raw(Method::GET, "/all_positions/", None, None).await;
    assert_eq!((s, body.as_str()), (200, "\"{}\""));
    let post = |body: &'static str, path: &'static str| {
        let env = &env;
        async move { env.raw(Method::GET, path, None, Some(body)).await }
    };
    assert_eq!(
        post(
            r#"{"symbol": "EURUSD", "volume": 0.1, "side": 0}"#,
            "/new_position/"
        )
        .await,
        (200, r#"{"message":"success"}"#.to_owned())
    );
    assert_eq!(
        post(
            r#"{"symbol": "EURUSD", "volume": 0.2, "side": 0}"#,
            "/new_position"
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            r#"{"symbol": "GBPUSD", "volume": 1, "side": 1}"#,
            "/new_position/"
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            r#"{"symbol": "USDJPY", "volume": 0.5, "side": 0}"#,
            "/new_position/"
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            r#"{"symbol": "USDJPY", "volume": 0.5, "side": 1}"#,
            "/new_position/"
        )
        .await
        .0,
        200
    );
    let (s, body) = env.raw(Method::GET, "/all_positions/", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        body,
        r#""{\"EURUSD\":{\"volume\":0.3,\"side\":0},\"GBPUSD\":{\"volume\":1.0,\"side\":1}}""#
    );
    // what the legacy center's client does: json.loads(resp.json())
    let inner: String = serde_json::from_str(&body).unwrap();
    let book: serde_json::Value = serde_json::from_str(&inner).unwrap();
    assert_eq!(book["EURUSD"]["side"], 0);
    // a sell 0.5 on EURUSD flips it
    assert_eq!(
        post(
            r#"{"symbol": "EURUSD", "volume": 0.5, "side": 1}"#,
            "/new_position/"
        )
        .await
        .0,
        200
    );
    let (_, body) = env.raw(Method::GET, "/all_positions", None, None).await;
    assert_eq!(
        body,
        r#""{\"EURUSD\":{\"volume\":0.2,\"side\":1},\"GBPUSD\":{\"volume\":1.0,\"side\":1}}""#
    );
    let events = env.viewer.events(&PageQuery::default()).await.unwrap();
    assert_eq!(
        events
            .items
            .iter()
            .filter(|e| e.kind == EventKind::LegacyPosition)
            .count(),
        6
    );
    env.finish().await;
}

async fn legacy_bad_input(b: Backend) {
    let env = Env::start(b).await;
    let huge = format!(
        r#"{{"symbol": "EURUSD", "volume": 0.1, "side": 0, "pad": "{}"}}"#,
        "x".repeat(100_000)
    );
    let cases: Vec<(String, &str)> = vec![
        (r#"{"volume": 0.1, "side": 0}"#.into(), "symbol"),
        (
            r#"{"symbol": "", "volume": 0.1, "side": 0}"#.into(),
            "symbol",
        ),
        (
            r#"{"symbol": 5, "volume": 0.1, "side": 0}"#.into(),
            "symbol",
        ),
        (r#"{"symbol": "EURUSD", "side": 0}"#.into(), "volume"),
        (
            r#"{"symbol": "EURUSD", "volume": -0.1, "side": 0}"#.into(),
            "volume",
        ),
        (
            r#"{"symbol": "EURUSD", "volume": 0, "side": 0}"#.into(),
            "volume",
        ),
        (
            r#"{"symbol": "EURUSD", "volume": "0.1", "side": 0}"#.into(),
            "volume",
        ),
        (
            r#"{"symbol": "EURUSD", "volume": null, "side": 0}"#.into(),
            "volume",
        ),
        (r#"{"symbol": "EURUSD", "volume": 0.1}"#.into(), "side"),
        (
            r#"{"symbol": "EURUSD", "volume": 0.1, "side": 2}"#.into(),
            "side",
        ),
        (
            r#"{"symbol": "EURUSD", "volume": 0.1, "side": "0"}"#.into(),
            "side",
        ),
        (
            r#"{"symbol": "EURUSD", "volume": 0.1, "side": -1}"#.into(),
            "side",
        ),
        ("not json".into(), "body"),
        ("".into(), "body"),
        ("[1]".into(), "body"),
        ("\"EURUSD\"".into(), "body"),
        (huge, "body"),
    ];
    for (body, field) in &cases {
        let (s, text) = env
            .raw(Method::GET, "/new_position/", None, Some(body))
            .await;
        assert_eq!(s, 422, "{field}: {text}");
        let e: ApiError =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert_eq!(e.field.as_deref(), Some(*field), "{text}");
    }
    let (_, body) = env.raw(Method::GET, "/all_positions/", None, None).await;
    assert_eq!(body, "\"{}\"");
    assert!(env
        .viewer
        .events(&PageQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());
    env.finish().await;
}
