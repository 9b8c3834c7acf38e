//! The center over real HTTP, every test run on SQLite and on PostgreSQL.

mod common;

use common::*;
use futures::StreamExt;
use hedge_center::model::*;
use hedge_center::ClientError;
use hedge_domain::{DealTicket, Login, OrderTicket, PositionId, Retcode, Side};
use reqwest::Method;
use std::collections::BTreeSet;
use std::time::Duration;

both_backends!(
    health_metrics_and_openapi,
    accounts_and_auth,
    report_idempotency,
    concurrent_duplicates_store_once,
    no_lost_updates_under_concurrency,
    position_lifecycle_and_refusals,
    report_bad_input,
    plan_arithmetic,
    hedges_shrink_the_plan,
    pauses_are_close_only,
    event_paging_and_sse_resume,
    legacy_endpoints,
    legacy_bad_input,
);

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

async fn accounts_and_auth(b: Backend) {
    let env = Env::start(b).await;
    // no token, unknown token, wrong scheme
    let err = env.anonymous.accounts().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_retryable());
    let bad = hedge_center::CenterClient::new(&env.url, Some("not-a-valid-token".into())).unwrap();
    assert_eq!(bad.accounts().await.unwrap_err().status(), Some(401));
    let (s, _) = env.raw(Method::GET, "/v1/accounts", None, None).await;
    assert_eq!(s, 401);

    env.register_defaults().await;
    // a client may not register another login, nor as a hedge account
    let err = env
        .client
        .register_account(&client_registration(CLIENT2, "1"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    let mut as_hedge = client_registration(CLIENT, "1");
    as_hedge.role = AccountRole::Hedge;
    assert_eq!(
        env.client
            .register_account(&as_hedge)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    // body/path mismatch and bad ratio
    let (s, body) = env
        .raw(
            Method::PUT,
            "/v1/accounts/1001",
            Some(ADMIN_TOKEN),
            Some(&serde_json::to_string(&client_registration(CLIENT2, "1")).unwrap()),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    let err = env
        .admin
        .register_account(&client_registration(CLIENT2, "-1"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));

    let accounts = env.viewer.accounts().await.unwrap();
    assert_eq!(
        accounts
            .iter()
            .map(|a| a.registration.login)
            .collect::<Vec<_>>(),
        vec![CLIENT, HEDGE]
    );
    let hedge = env.viewer.account(HEDGE).await.unwrap();
    assert_eq!(hedge.registration, hedge_registration());
    assert_eq!(
        env.viewer.account(Login(5)).await.unwrap_err().status(),
        Some(404)
    );

    // heartbeat: own account only
    let status = AccountStatus {
        connected: true,
        last_event_ms: Some(5),
        outbox_pending: 3,
        breakers: [("EURUSD".to_owned(), BreakerState::Open)]
            .into_iter()
            .collect(),
        message: Some("ok".into()),
    };
    let a = env.client.heartbeat(CLIENT, &status).await.unwrap();
    assert_eq!(a.status.as_ref(), Some(&status));
    assert_eq!(
        env.client
            .heartbeat(HEDGE, &status)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    assert_eq!(
        env.admin
            .heartbeat(Login(77), &status)
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    // registering the same thing again records no new event
    let before = env
        .admin
        .events(&PageQuery::default())
        .await
        .unwrap()
        .items
        .len();
    env.hedge
        .register_account(&hedge_registration())
        .await
        .unwrap();
    env.client.heartbeat(CLIENT, &status).await.unwrap();
    let after = env.admin.events(&PageQuery::default()).await.unwrap().items;
    assert_eq!(before, after.len());
    assert!(after
        .iter()
        .any(|e| e.kind == EventKind::AccountStatus && e.actor == "client-1001"));
    env.finish().await;
}

async fn report_idempotency(b: Backend) {
    let env = Env::start(b).await;
    let r = open(CLIENT, 10, "EURUSD", Side::Buy, "0.1");
    let first = env.client.report_position(&r).await.unwrap();
    assert!(!first.replayed);
    let again = env.client.report_position(&r).await.unwrap();
    assert!(again.replayed);
    assert_eq!(first.ack, again.ack);
    // byte-identical answer
    let body = serde_json::to_string(&r).unwrap();
    let (s1, a1) = env
        .raw(
            Method::POST,
            "/v1/positions/events",
            Some(CLIENT_TOKEN),
            Some(&body),
        )
        .await;
    let (s2, a2) = env
        .raw(
            Method::POST,
            "/v1/positions/events",
            Some(CLIENT_TOKEN),
            Some(&body),
        )
        .await;
    assert_eq!((s1, &a1), (s2, &a2));
    // same key, different payload
    let mut other = r.clone();
    other.volume = vol("0.2");
    let err = env.client.report_position(&other).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let page = env
        .viewer
        .positions(&PositionFilter::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].volume, vol("0.1"));
    let events = env.viewer.events(&PageQuery::default()).await.unwrap();
    assert_eq!(
        events
            .items
            .iter()
            .filter(|e| e.kind == EventKind::PositionOpened)
            .count(),
        1
    );
    env.finish().await;
}

async fn concurrent_duplicates_store_once(b: Backend) {
    let env = Env::start(b).await;
    let r = open(CLIENT, 11, "EURUSD", Side::Sell, "0.5");
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let c = env.client.clone();
            let r = r.clone();
            tokio::spawn(async move { c.report_position(&r).await.unwrap() })
        })
        .collect();
    let mut acks = Vec::new();
    for t in tasks {
        acks.push(t.await.unwrap());
    }
    assert_eq!(acks.iter().filter(|o| !o.replayed).count(), 1);
    assert!(acks.iter().all(|o| o.ack == acks[0].ack));
    let events = env.viewer.events(&PageQuery::default()).await.unwrap();
    assert_eq!(events.items.len(), 1);
    let detail = env.viewer.position(CLIENT, PositionId(11)).await.unwrap();
    assert_eq!(detail.history.len(), 1);
    env.finish().await;
}

async fn no_lost_updates_under_concurrency(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    // 200 concurrent opens of known volumes, both sides
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let c = env.client.clone();
            tokio::spawn(async move {
                let side = if i % 3 == 0 { Side::Sell } else { Side::Buy };
                let volume = format!("0.{:02}", 1 + i % 50);
                c.report_position(&open(CLIENT, 1000 + i, "EURUSD", side, &volume))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut expected = rust_decimal::Decimal::ZERO;
    for i in 0..200u64 {
        let v = dec(&format!("0.{:02}", 1 + i % 50));
        expected += if i % 3 == 0 { -v } else { v };
    }
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert_eq!(plan.items[0].exposure.0, expected);
    let mut n = 0;
    let mut after = None;
    loop {
        let page = env
            .viewer
            .positions(&PositionFilter {
                after,
                limit: Some(64),
                ..Default::default()
            })
            .await
            .unwrap();
        n += page.items.len();
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(n, 200);
    env.finish().await;
}

async fn position_lifecycle_and_refusals(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    let c = &env.client;
    c.report_position(&open(CLIENT, 20, "EURUSD", Side::Buy, "0.5"))
        .await
        .unwrap();
    let partial = c
        .report_position(&report(
            CLIENT,
            PositionEventKind::PartialClose,
            20,
            "EURUSD",
            Side::Buy,
            "0.2",
            2,
        ))
        .await
        .unwrap();
    assert_eq!(partial.ack.status, PositionStatus::PartiallyClosed);
    let mut modify = report(
        CLIENT,
        PositionEventKind::Modify,
        20,
        "EURUSD",
        Side::Buy,
        "0.2",
        3,
    );
    modify.sl = Some(hedge_domain::Price(dec("1.05")));
    c.report_position(&modify).await.unwrap();
    // refusals: larger partial close, stale seq, wrong symbol, unknown position, other account
    let bigger = report(
        CLIENT,
        PositionEventKind::PartialClose,
        20,
        "EURUSD",
        Side::Buy,
        "0.4",
        4,
    );
    assert_eq!(
        c.report_position(&bigger).await.unwrap_err().status(),
        Some(409)
    );
    let stale = report(
        CLIENT,
        PositionEventKind::PartialClose,
        20,
        "EURUSD",
        Side::Buy,
        "0.1",
        2,
    );
    let mut stale = stale;
    stale.idempotency_key = "fresh-key".into();
    assert_eq!(
        c.report_position(&stale).await.unwrap_err().status(),
        Some(409)
    );
    let wrong_symbol = report(
        CLIENT,
        PositionEventKind::PartialClose,
        20,
        "GBPUSD",
        Side::Buy,
        "0.1",
        5,
    );
    assert_eq!(
        c.report_position(&wrong_symbol).await.unwrap_err().status(),
        Some(409)
    );
    let unknown = report(
        CLIENT,
        PositionEventKind::Close,
        99,
        "EURUSD",
        Side::Buy,
        "0",
        2,
    );
    assert_eq!(
        c.report_position(&unknown).await.unwrap_err().status(),
        Some(409)
    );
    assert_eq!(
        c.report_position(&open(CLIENT2, 1, "EURUSD", Side::Buy, "1"))
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    assert_eq!(
        env.hedge
            .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "1"))
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    let detail = env.viewer.position(CLIENT, PositionId(20)).await.unwrap();
    assert_eq!(detail.position.volume, vol("0.2"));
    assert_eq!(detail.position.sl, Some(hedge_domain::Price(dec("1.05"))));
    assert_eq!(detail.position.account_symbol, "EURUSD.r");
    assert_eq!(
        detail.history.iter().map(|h| h.volume).collect::<Vec<_>>(),
        vec![vol("0.5"), vol("0.2")]
    );
    // netting reversal both ways: one reverse event, or close + open on the same id
    c.report_position(&report(
        CLIENT,
        PositionEventKind::Reverse,
        20,
        "EURUSD",
        Side::Sell,
        "0.3",
        6,
    ))
    .await
    .unwrap();
    c.report_position(&report(
        CLIENT,
        PositionEventKind::Close,
        20,
        "EURUSD",
        Side::Sell,
        "0",
        7,
    ))
    .await
    .unwrap();
    let reopened = c
        .report_position(&report(
            CLIENT,
            PositionEventKind::Open,
            20,
            "EURUSD",
            Side::Buy,
            "0.7",
            8,
        ))
        .await
        .unwrap();
    assert_eq!(reopened.ack.status, PositionStatus::Open);
    c.report_position(&open(CLIENT, 21, "GBPUSD", Side::Sell, "1"))
        .await
        .unwrap();
    c.report_position(&report(
        CLIENT,
        PositionEventKind::Close,
        21,
        "GBPUSD",
        Side::Sell,
        "0",
        2,
    ))
    .await
    .unwrap();
    // filters
    let f = |login, symbol: Option<&str>, status| PositionFilter {
        login,
        symbol: symbol.map(str::to_owned),
        status,
        ..Default::default()
    };
    let closed = env
        .viewer
        .positions(&f(Some(CLIENT), None, Some(PositionStatus::Closed)))
        .await
        .unwrap();
    assert_eq!(
        closed
            .items
            .iter()
            .map(|p| p.position_id.0)
            .collect::<Vec<_>>(),
        vec![21]
    );
    let eur = env
        .viewer
        .positions(&f(None, Some("EURUSD"), None))
        .await
        .unwrap();
    assert_eq!(eur.items.len(), 1);
    assert_eq!(eur.items[0].volume, vol("0.7"));
    assert!(env
        .viewer
        .positions(&f(Some(CLIENT2), None, None))
        .await
        .unwrap()
        .items
        .is_empty());
    let (s, body) = env
        .raw(
            Method::GET,
            "/v1/positions?status=bogus",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(
        env.viewer
            .position(CLIENT, PositionId(404))
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert_eq!(plan.items[0].exposure, vol("0.7"));
    env.finish().await;
}

async fn report_bad_input(b: Backend) {
    let env = Env::start(b).await;
    let good = serde_json::to_value(open(CLIENT, 30, "EURUSD", Side::Buy, "0.1")).unwrap();
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("kind", {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove("kind");
            v
        }),
        ("volume", {
            let mut v = good.clone();
            v["volume"] = serde_json::json!(-0.1);
            v
        }),
        ("volume", {
            let mut v = good.clone();
            v["volume"] = serde_json::json!(0);
            v
        }),
        ("volume", {
            let mut v = good.clone();
            v["volume"] = serde_json::json!(0.000000001);
            v
        }),
        ("symbol", {
            let mut v = good.clone();
            v["symbol"] = serde_json::json!("");
            v
        }),
        ("idempotency_key", {
            let mut v = good.clone();
            v["idempotency_key"] = serde_json::json!(" ");
            v
        }),
        ("side", {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove("side");
            v
        }),
    ];
    for (field, body) in cases {
        let (s, text) = env
            .raw(
                Method::POST,
                "/v1/positions/events",
                Some(CLIENT_TOKEN),
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(s, 422, "{field}: {text}");
        let e: ApiError = serde_json::from_str(&text).unwrap();
        assert_eq!(e.field.as_deref(), Some(field), "{text}");
    }
    let close_with_volume = report(
        CLIENT,
        PositionEventKind::Close,
        30,
        "EURUSD",
        Side::Buy,
        "0.1",
        2,
    );
    assert_eq!(
        env.client
            .report_position(&close_with_volume)
            .await
            .unwrap_err()
            .status(),
        Some(422)
    );
    for raw in ["", "nope", "[1,2]", "{\"kind\":\"open\""] {
        let (s, text) = env
            .raw(
                Method::POST,
                "/v1/positions/events",
                Some(CLIENT_TOKEN),
                Some(raw),
            )
            .await;
        assert_eq!(s, 422, "{raw:?}: {text}");
    }
    let huge = format!("{{\"comment\":\"{}\"}}", "x".repeat(2 << 20));
    let (s, _) = env
        .raw(
            Method::POST,
            "/v1/positions/events",
            Some(CLIENT_TOKEN),
            Some(&huge),
        )
        .await;
    assert_eq!(s, 413);
    assert!(env
        .viewer
        .positions(&PositionFilter::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(env
        .viewer
        .events(&PageQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());
    env.finish().await;
}

async fn plan_arithmetic(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    env.client2
        .register_account(&client_registration(CLIENT2, "0.5"))
        .await
        .unwrap();
    let c = &env.client;
    // EURUSD: client1 +0.30 -0.07; client2 (ratio 0.5) -0.25 => 0.23 - 0.125 = 0.105 -> sell 0.11 (nearest)
    c.report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    c.report_position(&open(CLIENT, 2, "EURUSD", Side::Sell, "0.07"))
        .await
        .unwrap();
    env.client2
        .report_position(&open(CLIENT2, 1, "EURUSD", Side::Sell, "0.25"))
        .await
        .unwrap();
    // GBPUSD: step 0.1, max 2: -3.26 => buy 2 (clamped), residual
    c.report_position(&open(CLIENT, 3, "GBPUSD", Side::Sell, "3.26"))
        .await
        .unwrap();
    // XAUUSD named GOLD on the hedge account
    c.report_position(&open(CLIENT, 4, "XAUUSD", Side::Buy, "1.5"))
        .await
        .unwrap();
    // USDJPY: no spec on the hedge account; AUDUSD below min after rounding
    c.report_position(&open(CLIENT, 5, "USDJPY", Side::Buy, "1"))
        .await
        .unwrap();
    env.hedge
        .register_account(&{
            let mut r = hedge_registration();
            r.symbols.push(spec("AUDUSD.h", "0.1", "0.1", "10"));
            r
        })
        .await
        .unwrap();
    c.report_position(&open(CLIENT, 6, "AUDUSD", Side::Buy, "0.04"))
        .await
        .unwrap();

    let plan = env.hedge.plan(HEDGE).await.unwrap();
    let item = |s: &str| {
        plan.items
            .iter()
            .find(|i| i.symbol == s)
            .unwrap_or_else(|| panic!("no item for {s}: {plan:?}"))
    };
    let eur = item("EURUSD");
    assert_eq!(
        (eur.side, eur.volume, eur.exposure),
        (Side::Sell, vol("0.11"), vol("0.105"))
    );
    assert_eq!(eur.account_symbol, "EURUSD.h");
    assert_eq!(eur.residual, vol("-0.005"));
    let gbp = item("GBPUSD");
    assert_eq!(
        (gbp.side, gbp.volume, gbp.residual),
        (Side::Buy, vol("2"), vol("-1.26"))
    );
    let gold = item("XAUUSD");
    assert_eq!(
        (gold.account_symbol.as_str(), gold.side, gold.volume),
        ("GOLD", Side::Sell, vol("1.5"))
    );
    let reasons: BTreeSet<_> = plan
        .residuals
        .iter()
        .map(|r| (r.symbol.clone(), r.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("AUDUSD".to_owned(), ResidualReason::BelowMin),
            ("USDJPY".to_owned(), ResidualReason::NoSymbolSpec)
        ]
        .into_iter()
        .collect()
    );
    // ids are unique and stable while nothing changes
    let ids: BTreeSet<_> = plan.items.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), plan.items.len());
    let again = env.hedge.plan(HEDGE).await.unwrap();
    assert_eq!(again.items, plan.items);
    // a change of EURUSD changes its id only
    c.report_position(&open(CLIENT, 7, "EURUSD", Side::Buy, "0.01"))
        .await
        .unwrap();
    let changed = env.hedge.plan(HEDGE).await.unwrap();
    let eur2 = changed.items.iter().find(|i| i.symbol == "EURUSD").unwrap();
    assert_ne!(eur2.id, eur.id);
    assert_eq!(
        changed
            .items
            .iter()
            .find(|i| i.symbol == "GBPUSD")
            .unwrap()
            .id,
        gbp.id
    );
    // plan reads need the hedge token (or admin)
    assert_eq!(
        env.client.plan(HEDGE).await.unwrap_err().status(),
        Some(403)
    );
    assert_eq!(
        env.viewer.plan(HEDGE).await.unwrap_err().status(),
        Some(403)
    );
    env.admin.plan(HEDGE).await.unwrap();
    assert_eq!(
        env.admin.plan(CLIENT).await.unwrap_err().status(),
        Some(409)
    );
    assert_eq!(
        env.admin.plan(Login(3)).await.unwrap_err().status(),
        Some(404)
    );
    env.finish().await;
}

fn executed(item: &PlanItem, volume: &str) -> HedgeExecuted {
    HedgeExecuted {
        plan_item_id: item.id,
        hedge_login: HEDGE,
        symbol: item.symbol.clone(),
        side: item.side,
        volume: vol(volume),
        order: OrderTicket(500 + item.id),
        deal: DealTicket(600 + item.id),
        position_id: PositionId(500 + item.id),
        price: Some(hedge_domain::Price(dec("1.2"))),
        latency_us: Some(850),
        slippage: Some(hedge_domain::Price(dec("0.00002"))),
        time_ms: 1,
    }
}

async fn hedges_shrink_the_plan(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    let item = plan.items[0].clone();
    // a failed attempt is recorded and changes nothing
    let failed = env
        .hedge
        .hedge_failed(&HedgeFailed {
            plan_item_id: item.id,
            hedge_login: HEDGE,
            symbol: item.symbol.clone(),
            side: item.side,
            volume: item.volume,
            retcode: Retcode::REQUOTE,
            message: "requote".into(),
            time_ms: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        (failed.status, failed.retcode),
        (HedgeStatus::Failed, Some(Retcode::REQUOTE))
    );
    assert_eq!(env.hedge.plan(HEDGE).await.unwrap().items, plan.items);
    // executed twice (concurrently) -> one hedge
    let h = executed(&item, "0.3");
    let (a, b2) = tokio::join!(env.hedge.hedge_executed(&h), env.hedge.hedge_executed(&h));
    let (a, b2) = (a.unwrap(), b2.unwrap());
    assert_eq!(a.id, b2.id);
    assert_eq!(a.account_symbol, "EURUSD.h");
    let hedges = env
        .viewer
        .hedges(&PageQuery {
            login: Some(HEDGE),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        hedges
            .items
            .iter()
            .filter(|h| h.status != HedgeStatus::Failed)
            .count(),
        1
    );
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert!(
        plan.items.is_empty() && plan.residuals.is_empty(),
        "{plan:?}"
    );
    // same item id with another side is a conflict; another account's token is refused
    let mut other = h.clone();
    other.side = Side::Buy;
    assert_eq!(
        env.hedge.hedge_executed(&other).await.unwrap_err().status(),
        Some(409)
    );
    assert_eq!(
        env.client.hedge_executed(&h).await.unwrap_err().status(),
        Some(403)
    );
    // client shrinks -> plan asks to reduce the hedge; recording the reduction empties it again
    env.client
        .report_position(&report(
            CLIENT,
            PositionEventKind::PartialClose,
            1,
            "EURUSD",
            Side::Buy,
            "0.1",
            2,
        ))
        .await
        .unwrap();
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    let reduce = &plan.items[0];
    assert_eq!(
        (reduce.action, reduce.side, reduce.volume),
        (PlanAction::Reduce, Side::Buy, vol("0.2"))
    );
    let reduced = env
        .hedge
        .hedge_reduced(
            a.id,
            &HedgeReduce {
                remaining: vol("0.1"),
                deal: Some(DealTicket(9)),
                price: None,
                time_ms: 2,
                reason: "mirror".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (reduced.status, reduced.open_volume),
        (HedgeStatus::PartiallyClosed, vol("0.1"))
    );
    // the same absolute remaining volume again changes nothing; more than open is refused
    let same = env
        .hedge
        .hedge_reduced(
            a.id,
            &HedgeReduce {
                remaining: vol("0.1"),
                deal: None,
                price: None,
                time_ms: 3,
                reason: String::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(same.event_id, reduced.event_id);
    let err = env
        .hedge
        .hedge_reduced(
            a.id,
            &HedgeReduce {
                remaining: vol("0.5"),
                deal: None,
                price: None,
                time_ms: 3,
                reason: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(env.hedge.plan(HEDGE).await.unwrap().items.is_empty());
    env.client
        .report_position(&report(
            CLIENT,
            PositionEventKind::Close,
            1,
            "EURUSD",
            Side::Buy,
            "0",
            3,
        ))
        .await
        .unwrap();
    let closed = env
        .hedge
        .hedge_reduced(
            a.id,
            &HedgeReduce {
                remaining: vol("0"),
                deal: None,
                price: None,
                time_ms: 4,
                reason: String::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(closed.status, HedgeStatus::Closed);
    assert!(env.hedge.plan(HEDGE).await.unwrap().items.is_empty());
    let kinds: Vec<_> = env
        .viewer
        .events(&PageQuery {
            login: Some(HEDGE),
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&EventKind::HedgeFailed)
            && kinds.contains(&EventKind::HedgeReduced)
            && kinds.contains(&EventKind::HedgeClosed)
    );
    env.finish().await;
}

async fn pauses_are_close_only(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    let pause = ActionRequest {
        action: ActionKind::Pause,
        login: Some(HEDGE),
        symbol: Some("EURUSD".into()),
        reason: "news".into(),
    };
    assert_eq!(
        env.hedge.action(&pause).await.unwrap_err().status(),
        Some(403)
    );
    let ack = env.admin.action(&pause).await.unwrap();
    assert!(ack.changed);
    assert_eq!(ack.pauses.len(), 1);
    assert!(!env.admin.action(&pause).await.unwrap().changed);
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert!(plan.items.is_empty());
    assert_eq!(plan.residuals[0].reason, ResidualReason::Paused);
    let pauses = env.viewer.pauses().await.unwrap();
    assert_eq!(pauses[0].actor, "ops");
    let resume = ActionRequest {
        action: ActionKind::Resume,
        ..pause.clone()
    };
    assert!(env.admin.action(&resume).await.unwrap().changed);
    assert_eq!(env.hedge.plan(HEDGE).await.unwrap().items.len(), 1);
    let events = env
        .viewer
        .events(&PageQuery::default())
        .await
        .unwrap()
        .items;
    let paused = events.iter().find(|e| e.kind == EventKind::Paused).unwrap();
    assert_eq!(paused.actor, "ops");
    assert!(paused.reason.contains("news"));
    assert!(events.iter().any(|e| e.kind == EventKind::Resumed));
    env.finish().await;
}

async fn event_paging_and_sse_resume(b: Backend) {
    let env = Env::start(b).await;
    let mut sub_all = env.viewer.subscribe(None);
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
    // what the prototype's client does: json.loads(resp.json())
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

/// Two center instances on one PostgreSQL schema: events written through one reach the other's
/// subscribers, and idempotency holds across instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_share_events() {
    let a = Env::start(Backend::Postgres).await;
    let b = common::start_at(a.location.clone()).await;
    let b_viewer = hedge_center::CenterClient::new(b.url(), Some(VIEWER_TOKEN.into())).unwrap();
    let b_client = hedge_center::CenterClient::new(b.url(), Some(CLIENT_TOKEN.into())).unwrap();
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
