//! The event log: paging, the stream and its resumption, and several instances on one database.

use crate::common::*;
use futures::StreamExt;
use hedge_center_api::model::*;
use hedge_center_api::ClientError;
use hedge_domain::Side;
use reqwest::Method;
use std::time::Duration;

both_backends!(
    event_paging_and_sse_resume,
    events_ignore_the_hedges_open_filter,
);

/// `open=true` is a filter of `GET /v1/hedges`; the event log has no status, and the parameter
/// must not turn a read into a database error.
async fn events_ignore_the_hedges_open_filter(b: Backend) {
    let env = Env::start(b).await;
    env.client
        .report_position(&open(CLIENT, 100, "EURUSD", Side::Buy, "0.1"))
        .await
        .unwrap();
    let page = env
        .viewer
        .events(&PageQuery {
            open: Some(true),
            limit: Some(10),
            ..Default::default()
        })
        .await
        .expect("events with open=true");
    assert!(!page.items.is_empty());
}

async fn event_paging_and_sse_resume(b: Backend) {
    let env = Env::start(b).await;
    // From event 0 (the log is empty here), not "from now": a subscription connects in the
    // background, and "now" could already be past the first report.
    let mut sub_all = env.viewer.subscribe(Some(0));
    for i in 0..5 {
        env.client
            .report_position(&open(CLIENT, 100 + i, "EURUSD", Side::Buy, "0.1"))
            .await
            .unwrap();
    }
    let page1 = env
        .viewer
        .events(&PageQuery {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page1.items.len(), 2);
    let page2 = env
        .viewer
        .events(&PageQuery {
            after: page1.next_after,
            limit: Some(10),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2.items.len(), 3);
    assert!(page2.next_after.is_none());
    let ids: Vec<u64> = page1
        .items
        .iter()
        .chain(&page2.items)
        .map(|e| e.id)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // resume with Last-Event-ID after the second event: exactly the rest, in order, then live
    let mut resumed = env.viewer.subscribe(Some(ids[1]));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), resumed.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
                .id,
        );
    }
    assert_eq!(got, ids[2..].to_vec());
    env.client
        .report_position(&open(CLIENT, 200, "GBPUSD", Side::Sell, "1"))
        .await
        .unwrap();
    let live = tokio::time::timeout(Duration::from_secs(5), resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(live.kind, EventKind::PositionOpened);
    assert_eq!(live.symbol.as_deref(), Some("GBPUSD"));
    // a subscriber from the start got everything, in order
    let mut all = Vec::new();
    for _ in 0..6 {
        all.push(
            tokio::time::timeout(Duration::from_secs(5), sub_all.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
                .id,
        );
    }
    assert_eq!(all[..5], ids[..]);
    assert_eq!(all[5], live.id);
    // raw SSE with ?after= and heartbeats
    let resp = env
        .http
        .get(format!("{}/v1/events/stream?after={}", env.url, ids[3]))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !(text.contains(": heartbeat") && text.contains(&format!("id: {}", live.id))) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("SSE heartbeat and events")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains(&format!("id: {}\nevent: position_opened\ndata: ", ids[4])));
    assert!(!text.contains(&format!("id: {}\n", ids[3])));
    // refused without a token; bad Last-Event-ID is a 422
    let (s, _) = env.raw(Method::GET, "/v1/events/stream", None, None).await;
    assert_eq!(s, 401);
    let (s, _) = env
        .raw(
            Method::GET,
            "/v1/events/stream?after=abc",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 422);
    let mut refused = env.anonymous.subscribe(Some(0));
    match tokio::time::timeout(Duration::from_secs(5), refused.next())
        .await
        .unwrap()
    {
        Some(Err(ClientError::Rejected { status: 401, .. })) => {}
        other => panic!("expected a 401 rejection, got {other:?}"),
    }
    env.finish().await;
}

/// Two center instances on one PostgreSQL schema: events written through one reach the other's
/// subscribers, and idempotency holds across instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_share_events() {
    let a = Env::start(Backend::Postgres).await;
    let b = start_at(a.location.clone()).await;
    let b_viewer = hedge_center_api::CenterClient::new(b.url(), Some(VIEWER_TOKEN.into())).unwrap();
    let b_client = hedge_center_api::CenterClient::new(b.url(), Some(CLIENT_TOKEN.into())).unwrap();
    let mut sub = b_viewer.subscribe(Some(0));
    let r = open(CLIENT, 1, "EURUSD", Side::Buy, "0.1");
    let (x, y) = tokio::join!(a.client.report_position(&r), b_client.report_position(&r));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.ack, y.ack);
    assert!(x.replayed != y.replayed);
    a.client
        .report_position(&open(CLIENT, 2, "EURUSD", Side::Buy, "0.2"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("event from the other instance")
            .unwrap()
            .unwrap();
        ids.push(e.id);
    }
    assert!(ids[0] < ids[1]);
    b.shutdown().await;
    a.finish().await;
}
