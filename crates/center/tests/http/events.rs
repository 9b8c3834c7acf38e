//! The event log: paging, the stream and its resumption, and several instances on one database.

use crate::common::*;
use futures::StreamExt;
use hedge_center_api::client::StreamItem;
use hedge_center_api::model::*;
use hedge_center_api::ClientError;
use hedge_domain::{Login, Side};
use reqwest::Method;
use std::time::Duration;

both_backends!(
    event_paging_and_sse_resume,
    events_ignore_the_hedges_open_filter,
    a_hedgers_stream_carries_its_plan_ahead_of_each_event_that_moves_it,
    streams_of_one_hedge_account_share_each_plan_frame,
    streams_of_two_hedge_accounts_share_one_plan_computation,
    streams_opened_between_unfollowed_commits_miss_nothing,
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
    let mut sub_all = env.viewer.subscribe(Some(EventId(0)));
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
    let ids: Vec<EventId> = page1
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
    let mut refused = env.anonymous.subscribe(Some(EventId(0)));
    match tokio::time::timeout(Duration::from_secs(5), refused.next())
        .await
        .unwrap()
    {
        Some(Err(ClientError::Rejected { status: 401, .. })) => {}
        other => panic!("expected a 401 rejection, got {other:?}"),
    }
    env.finish().await;
}

/// The next event or plan of `sub`, within 5 s.
async fn next_item(sub: &mut hedge_center_api::client::EventSubscription) -> StreamItem {
    tokio::time::timeout(Duration::from_secs(5), sub.next_item())
        .await
        .expect("a stream item")
        .expect("stream open")
        .expect("no error")
}

/// Makes the streams live (a first event delivered on each: what follows is not a replay), then
/// reports an EURUSD open; returns the plan computations counted before that open.
async fn live_then_open(
    env: &Env,
    subs: &mut [&mut hedge_center_api::client::EventSubscription],
) -> u64 {
    env.client
        .report_position(&open(CLIENT, 99, "GBPUSD", Side::Buy, "1"))
        .await
        .unwrap();
    for sub in subs.iter_mut() {
        while !matches!(next_item(sub).await, StreamItem::Event(_)) {}
    }
    let before = plans_computed(env).await;
    env.client
        .report_position(&open(CLIENT, 100, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    before
}

/// The next two items of a plan stream: a plan, then the event it was sent ahead of.
async fn plan_then_event(
    sub: &mut hedge_center_api::client::EventSubscription,
) -> (HedgePlan, Event) {
    let plan = match next_item(sub).await {
        StreamItem::Plan(plan) => plan,
        other => panic!("expected the plan first, got {other:?}"),
    };
    let event = match next_item(sub).await {
        StreamItem::Event(event) => event,
        other => panic!("expected the event after its plan, got {other:?}"),
    };
    (plan, event)
}

/// `?plan=` puts the hedge account's plan on the stream, ahead of each live event that can move it,
/// as new as that event at least: the hedger acts without fetching it. Only a token that hedges for
/// the account may ask; a stream without it carries events only.
async fn a_hedgers_stream_carries_its_plan_ahead_of_each_event_that_moves_it(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    let as_of = env.hedge.plan(HEDGE).await.unwrap().as_of_event_id;
    let mut sub = env.hedge.subscribe_with_plan(Some(as_of), HEDGE);
    let mut plain = env.hedge.subscribe(Some(as_of));
    // Once the stream delivered anything it is live: what follows is not a replay.
    env.client
        .report_position(&open(CLIENT, 99, "GBPUSD", Side::Buy, "1"))
        .await
        .unwrap();
    while !matches!(next_item(&mut sub).await, StreamItem::Event(_)) {}
    plain.next().await.unwrap().unwrap();
    let mut last = EventId(0);
    for (id, side, volume) in [(100, Side::Buy, "0.3"), (101, Side::Sell, "0.1")] {
        env.client
            .report_position(&open(CLIENT, id, "EURUSD", side, volume))
            .await
            .unwrap();
        let plan = match next_item(&mut sub).await {
            StreamItem::Plan(plan) => plan,
            other => panic!("expected the plan first, got {other:?}"),
        };
        let event = match next_item(&mut sub).await {
            StreamItem::Event(event) => event,
            other => panic!("expected the event after its plan, got {other:?}"),
        };
        assert_eq!(event.kind, EventKind::PositionOpened);
        assert!(
            plan.as_of_event_id >= event.id,
            "{plan:?} older than {event:?}"
        );
        assert_eq!(plan, env.hedge.plan(HEDGE).await.unwrap());
        let plain_event = tokio::time::timeout(Duration::from_secs(5), plain.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(plain_event, event);
        last = event.id;
    }
    // The plan of the last report: 0.3 bought, 0.1 sold.
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    let eur: Vec<_> = plan.items.iter().filter(|i| i.symbol == "EURUSD").collect();
    assert_eq!(eur.len(), 1, "{plan:?}");
    assert_eq!(eur[0].side, Side::Sell);
    assert_eq!(eur[0].volume.to_string(), "0.2");
    // Raw, from the same point: each plan frame has no id (it never moves a resume point) and
    // comes right before its event.
    let resp = env
        .http
        .get(format!(
            "{}/v1/events/stream?after={}&plan={}",
            env.url, as_of, HEDGE
        ))
        .bearer_auth(HEDGE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // The replay is over once the last event came: the next one is live.
    while !text.contains(&format!("id: {last}\n")) || !text.ends_with("\n\n") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("the replay")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    env.client
        .report_position(&open(CLIENT, 102, "EURUSD", Side::Buy, "0.1"))
        .await
        .unwrap();
    while !text.contains("event: plan\n") || !text.ends_with("\n\n") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("a plan frame")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
    let at = frames
        .iter()
        .position(|f| f.starts_with("event: plan\ndata: {"))
        .expect("a plan frame");
    assert!(!frames[at].contains("\nid:"), "{}", frames[at]);
    // The replayed events came without plans; the live one has its plan ahead of it.
    assert!(frames[..at]
        .iter()
        .all(|f| f.starts_with(": ") || f.starts_with("id: ")));
    let complete = |t: &str| t.split("\n\n").filter(|f| !f.is_empty()).count();
    while complete(&text) <= at + 1 || !text.ends_with("\n\n") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("the event after its plan")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert!(frames[at + 1].starts_with("id: "), "{frames:?}");
    assert!(frames[at + 1].contains("\nevent: position_opened\n"));
    // A token that does not hedge for the account may not ask for its plan.
    let mut refused = env.client.subscribe_with_plan(None, HEDGE);
    match tokio::time::timeout(Duration::from_secs(5), refused.next())
        .await
        .unwrap()
    {
        Some(Err(ClientError::Rejected { status: 403, .. })) => {}
        other => panic!("expected a 403 rejection, got {other:?}"),
    }
    env.finish().await;
}

/// The value of the center's counter `name`, from its metrics.
async fn counter(env: &Env, name: &str) -> u64 {
    let (status, metrics) = env
        .raw(Method::GET, "/metrics", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, 200);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("the counter {name}"))
        .parse()
        .expect("a count")
}

/// The plans the center computed so far, from its metrics.
async fn plans_computed(env: &Env) -> u64 {
    counter(env, "hedge_center_plans_computed_total").await
}

/// Two streams of one hedge account get the plan of an event computed once for both, each ahead
/// of that event and as new as it.
async fn streams_of_one_hedge_account_share_each_plan_frame(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    let as_of = env.hedge.plan(HEDGE).await.unwrap().as_of_event_id;
    let mut first = env.hedge.subscribe_with_plan(Some(as_of), HEDGE);
    let mut second = env.hedge.subscribe_with_plan(Some(as_of), HEDGE);
    let before = live_then_open(&env, &mut [&mut first, &mut second]).await;
    let mut plans = Vec::new();
    for sub in [&mut first, &mut second] {
        let (plan, event) = plan_then_event(sub).await;
        assert_eq!(event.kind, EventKind::PositionOpened);
        assert!(
            plan.as_of_event_id >= event.id,
            "{plan:?} older than {event:?}"
        );
        assert!(plan.items.iter().any(|i| i.symbol == "EURUSD"), "{plan:?}");
        plans.push(plan);
    }
    assert_eq!(plans[0], plans[1]);
    assert_eq!(
        plans_computed(&env).await,
        before + 1,
        "one plan for both streams"
    );
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
    let mut sub = b_viewer.subscribe(Some(EventId(0)));
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

/// The ids of `events`, in order.
fn ids_of(events: Vec<Event>) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// On PostgreSQL an instance's event tailer reads nothing while no stream is subscribed. A stream
/// opened on the other instance after events were written there, one opened again later from
/// where the first stopped, and the events written while each is open: every event arrives once,
/// in order, whether it was written while the tailer slept or after it woke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_streams_opened_after_a_quiet_tailer_miss_nothing() {
    let a = Env::start(Backend::Postgres).await;
    let b = start_at(a.location.clone()).await;
    let b_viewer = hedge_center_api::CenterClient::new(b.url(), Some(VIEWER_TOKEN.into())).unwrap();
    let mut written = Vec::new();
    let report = |id: u64| open(CLIENT, id, "EURUSD", Side::Buy, "0.1");
    for id in 0..3 {
        let ack = a.client.report_position(&report(id)).await.unwrap().ack;
        written.push(ack.event_id);
    }
    // Let both tailers see the commits with nobody subscribed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sub = b_viewer.subscribe(Some(EventId(0)));
    let mut seen = ids_of(next_events(&mut sub, 3).await);
    for id in 3..6 {
        let ack = a.client.report_position(&report(id)).await.unwrap().ack;
        written.push(ack.event_id);
    }
    seen.extend(ids_of(next_events(&mut sub, 3).await));
    drop(sub);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in 6..9 {
        let ack = a.client.report_position(&report(id)).await.unwrap().ack;
        written.push(ack.event_id);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sub = b_viewer.subscribe(seen.last().copied());
    // Written while the stream was being opened: live, or in its replay.
    let ack = a.client.report_position(&report(9)).await.unwrap().ack;
    written.push(ack.event_id);
    seen.extend(ids_of(next_events(&mut sub, 4).await));
    assert_eq!(seen, written);
    b.shutdown().await;
    a.finish().await;
}

/// The streams of two hedge accounts each get their own account's plan ahead of an event, and the
/// plans of both accounts are computed together, once for that event.
async fn streams_of_two_hedge_accounts_share_one_plan_computation(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    let second = Login(2002);
    env.admin
        .register_account(&AccountRegistration {
            login: second,
            ..hedge_registration()
        })
        .await
        .unwrap();
    let as_of = env.hedge.plan(HEDGE).await.unwrap().as_of_event_id;
    let mut subs = [
        env.admin.subscribe_with_plan(Some(as_of), HEDGE),
        env.admin.subscribe_with_plan(Some(as_of), second),
    ];
    let before = live_then_open(&env, &mut subs.iter_mut().collect::<Vec<_>>()).await;
    for (sub, login) in subs.iter_mut().zip([HEDGE, second]) {
        let (plan, event) = plan_then_event(sub).await;
        assert_eq!(event.kind, EventKind::PositionOpened);
        assert_eq!(plan.hedge_login, login);
        assert!(
            plan.as_of_event_id >= event.id,
            "{plan:?} older than {event:?}"
        );
    }
    assert_eq!(
        plans_computed(&env).await,
        before + 1,
        "one computation for both accounts' plans"
    );
    env.finish().await;
}

/// The next `n` events of `sub`, within 5 s each.
async fn next_events(
    sub: &mut hedge_center_api::client::EventSubscription,
    n: usize,
) -> Vec<Event> {
    let mut got = Vec::new();
    for _ in 0..n {
        match next_item(sub).await {
            StreamItem::Event(e) => got.push(e),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    got
}

/// While no stream is open the writer answers without handing the commit's events to the stream,
/// which reads them from the log itself; a stream opened, closed and opened again between such
/// commits still gets every later event once, in order, and the count of events sent to the
/// streams has every event of the log.
async fn streams_opened_between_unfollowed_commits_miss_nothing(b: Backend) {
    let env = Env::start(b).await;
    let report = |ticket: u64| {
        let client = env.client.clone();
        async move {
            client
                .report_position(&open(CLIENT, ticket, "EURUSD", Side::Buy, "0.1"))
                .await
                .expect("report")
        }
    };
    for ticket in 300..303 {
        report(ticket).await;
    }
    let head = |page: Page<Event>| page.items.last().expect("events").id;
    let all = PageQuery {
        limit: Some(1000),
        ..Default::default()
    };
    let first_head = head(env.viewer.events(&all).await.unwrap());
    let mut sub = env.viewer.subscribe(Some(first_head));
    report(303).await;
    report(304).await;
    let live = next_events(&mut sub, 2).await;
    drop(sub);
    // Unfollowed again once the stream is gone: these reach a later stream from the log.
    for ticket in 305..308 {
        report(ticket).await;
    }
    let mut again = env.viewer.subscribe(Some(live[1].id));
    report(308).await;
    let rest = next_events(&mut again, 4).await;
    let logged = env.viewer.events(&all).await.unwrap().items;
    let after_first: Vec<EventId> = logged
        .iter()
        .map(|e| e.id)
        .filter(|id| *id > first_head)
        .collect();
    let streamed: Vec<EventId> = live.iter().chain(&rest).map(|e| e.id).collect();
    assert_eq!(streamed, after_first);
    // Every event of the log reached the streams' broadcast once (the tailer read the ones it
    // was not handed), none twice. On PostgreSQL the tailer reads nothing while no stream is
    // subscribed, so the events committed meanwhile are counted by no broadcast: at least those
    // committed while a stream was subscribed, never more than the log.
    if b == Backend::Postgres {
        let sent = counter(&env, "hedge_center_events_total").await as usize;
        // 303 and 304, and 308: committed while a stream was subscribed.
        let while_subscribed = live.len() + 1;
        assert!(
            (while_subscribed..=logged.len()).contains(&sent),
            "{sent} events sent, {while_subscribed} committed while subscribed, {} logged",
            logged.len()
        );
        env.finish().await;
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let sent = counter(&env, "hedge_center_events_total").await as usize;
        assert!(
            sent <= logged.len(),
            "{sent} events sent for {} logged",
            logged.len()
        );
        if sent == logged.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sent} of {} events sent",
            logged.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.finish().await;
}
