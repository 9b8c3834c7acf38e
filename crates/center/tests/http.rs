//! The center over real HTTP, every test run on SQLite and on PostgreSQL.

mod common;

use common::*;
use futures::StreamExt;
use hedge_center_api::client::new_action_key;
use hedge_center_api::model::*;
use hedge_center_api::ClientError;
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
    close_and_retry_commands,
    command_refusals_store_nothing,
    operator_actions_act_once_per_key,
    status_money_marks_and_reconciliation,
    operator_overrides,
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
    let bad =
        hedge_center_api::CenterClient::new(&env.url, Some("not-a-valid-token".into())).unwrap();
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
        ..AccountStatus::default()
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
    let mut first = open(CLIENT, 20, "EURUSD", Side::Buy, "0.5");
    first.comment = "signal #42".into();
    c.report_position(&first).await.unwrap();
    let mut reduce = report(
        CLIENT,
        PositionEventKind::PartialClose,
        20,
        "EURUSD",
        Side::Buy,
        "0.2",
        2,
    );
    reduce.comment = "tp1 hit".into();
    let partial = c.report_position(&reduce).await.unwrap();
    assert_eq!(partial.ack.status, PositionStatus::PartiallyClosed);
    // The reduction's comment is the exit comment; the entry comment stays.
    let stored = c.position(CLIENT, PositionId(20)).await.unwrap().position;
    assert_eq!(stored.comment, "signal #42");
    assert_eq!(stored.exit_comment.as_deref(), Some("tp1 hit"));
    let listed = c
        .positions(&PositionFilter {
            login: Some(CLIENT),
            ..PositionFilter::default()
        })
        .await
        .unwrap();
    let listed = listed
        .items
        .iter()
        .find(|p| p.position_id == PositionId(20))
        .unwrap();
    assert_eq!(listed.exit_comment.as_deref(), Some("tp1 hit"));
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
        login: Some(HEDGE),
        symbol: Some("EURUSD".into()),
        reason: "news".into(),
        ..ActionRequest::new(ActionKind::Pause)
    };
    assert_eq!(
        env.hedge
            .action(&new_action_key(), &pause)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    let ack = env
        .admin
        .action(&new_action_key(), &pause)
        .await
        .unwrap()
        .ack;
    assert!(ack.changed);
    assert_eq!(ack.pauses.len(), 1);
    assert!(
        !env.admin
            .action(&new_action_key(), &pause)
            .await
            .unwrap()
            .ack
            .changed
    );
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert!(plan.items.is_empty());
    assert_eq!(plan.residuals[0].reason, ResidualReason::Paused);
    let pauses = env.viewer.pauses().await.unwrap();
    assert_eq!(pauses[0].actor, "ops");
    let resume = ActionRequest {
        action: ActionKind::Resume,
        ..pause.clone()
    };
    assert!(
        env.admin
            .action(&new_action_key(), &resume)
            .await
            .unwrap()
            .ack
            .changed
    );
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

/// A client buy of 0.3 EURUSD hedged by one executed plan item, plus one failed attempt.
async fn hedged_world(env: &Env) -> (Hedge, Hedge) {
    env.register_defaults().await;
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    let item = env.hedge.plan(HEDGE).await.unwrap().items[0].clone();
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
    let open = env
        .hedge
        .hedge_executed(&executed(&item, "0.3"))
        .await
        .unwrap();
    (open, failed)
}

async fn event_kinds(env: &Env) -> Vec<Event> {
    env.viewer
        .events(&PageQuery {
            limit: Some(1000),
            ..PageQuery::default()
        })
        .await
        .unwrap()
        .items
}

async fn close_and_retry_commands(b: Backend) {
    let env = Env::start(b).await;
    let mut sub = env.hedge.subscribe(Some(
        env.admin
            .events(&PageQuery::default())
            .await
            .unwrap()
            .items
            .len() as u64,
    ));
    let (open, failed) = hedged_world(&env).await;
    assert!(env.hedge.pending_commands(HEDGE).await.unwrap().is_empty());

    // close: a pending command with everything the hedger needs, and close-only on that symbol
    let ack = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::close_hedge(open.id, "manual unwind"),
        )
        .await
        .unwrap()
        .ack;
    assert!(ack.changed);
    let close = ack.command.clone().unwrap();
    assert_eq!(close.kind, CommandKind::CloseHedge);
    assert_eq!(close.status, CommandStatus::Pending);
    assert_eq!(
        (
            close.hedge_login,
            close.hedge_id,
            close.symbol.as_str(),
            close.account_symbol.as_str()
        ),
        (HEDGE, open.id, "EURUSD", "EURUSD.h")
    );
    assert_eq!(close.plan_item, Some(open.plan_item_id));
    assert_eq!(close.volume, vol("0.3"));
    assert_eq!(
        (close.actor.as_str(), close.reason.as_str()),
        ("ops", "manual unwind")
    );
    assert!(ack.pauses.iter().any(|p| p.login == Some(HEDGE)
        && p.symbol.as_deref() == Some("EURUSD")
        && p.actor == "ops"));
    // a second click while pending returns the same command, stores nothing new
    let again = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::close_hedge(open.id, "again"),
        )
        .await
        .unwrap()
        .ack;
    assert!(!again.changed);
    assert_eq!(again.command.as_ref().map(|c| c.id), Some(close.id));
    let pending = env.hedge.pending_commands(HEDGE).await.unwrap();
    assert_eq!(pending, vec![close.clone()]);
    assert_eq!(env.viewer.command(close.id).await.unwrap(), close);

    // the event reaches the stream with the actor
    let issued = loop {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("command_issued on the stream")
            .unwrap()
            .unwrap();
        if e.kind == EventKind::CommandIssued {
            break e;
        }
    };
    assert_eq!((issued.actor.as_str(), issued.login), ("ops", Some(HEDGE)));
    assert!(issued.reason.contains("manual unwind"));
    assert_eq!(issued.data["id"], serde_json::json!(close.id));

    // the hedger reports the result; the same result again is answered the same way
    let done = CommandResult {
        status: CommandStatus::Done,
        retcode: Some(Retcode::DONE),
        message: Some("closed position 501".into()),
    };
    let first = env.hedge.command_result(close.id, &done).await.unwrap();
    assert_eq!(first.status, CommandStatus::Done);
    assert_eq!(first.result_retcode, Some(Retcode::DONE));
    assert_eq!(
        env.hedge.command_result(close.id, &done).await.unwrap(),
        first
    );
    let (status, text) = env
        .raw(
            Method::POST,
            &format!("/v1/commands/{}/result", close.id),
            Some(HEDGE_TOKEN),
            Some(r#"{"status":"done","retcode":10009,"message":"closed position 501"}"#),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    // a different result after the final one is a conflict
    let other = CommandResult {
        status: CommandStatus::Failed,
        retcode: Some(Retcode::REQUOTE),
        message: None,
    };
    assert_eq!(
        env.hedge
            .command_result(close.id, &other)
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    assert!(env.hedge.pending_commands(HEDGE).await.unwrap().is_empty());

    // retry of the failed attempt; its failure is recorded too
    let retry = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::retry_hedge(failed.id, ""),
        )
        .await
        .unwrap()
        .ack
        .command
        .unwrap();
    assert_eq!(
        (retry.kind, retry.volume),
        (CommandKind::RetryHedge, vol("0.3"))
    );
    let failed_result = env.hedge.command_result(retry.id, &other).await.unwrap();
    assert_eq!(failed_result.status, CommandStatus::Failed);
    let all = env
        .viewer
        .commands(&CommandQuery::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        all.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![close.id, retry.id]
    );
    let finished = env
        .admin
        .commands(&CommandQuery {
            login: Some(HEDGE),
            status: Some(CommandStatus::Failed),
            ..CommandQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(finished.len(), 1);

    let events = event_kinds(&env).await;
    let count = |k: EventKind| events.iter().filter(|e| e.kind == k).count();
    assert_eq!(count(EventKind::CommandIssued), 2);
    assert_eq!(count(EventKind::CommandDone), 1);
    assert_eq!(count(EventKind::CommandFailed), 1);
    let paused = events.iter().find(|e| e.kind == EventKind::Paused).unwrap();
    assert_eq!(paused.actor, "ops");
    assert!(events
        .iter()
        .filter(|e| e.kind == EventKind::CommandDone)
        .all(|e| e.actor == "hedge-2001"));
    env.finish().await;
}

async fn all_commands(env: &Env) -> Vec<Command> {
    env.viewer
        .commands(&CommandQuery::default())
        .await
        .unwrap()
        .items
}

async fn operator_actions_act_once_per_key(b: Backend) {
    let env = Env::start(b).await;
    let (open, failed) = hedged_world(&env).await;
    let close = ActionRequest::close_hedge(open.id, "unwind");
    let close_body = serde_json::to_string(&close).unwrap();

    // no key, or a malformed one: refused before anything is stored
    let before = event_kinds(&env).await.len();
    let too_long = "k".repeat(201);
    for key in [None, Some(""), Some("two words"), Some(too_long.as_str())] {
        let (status, _, text) = env.raw_action(Some(ADMIN_TOKEN), key, &close_body).await;
        assert_eq!(status, 422, "{key:?}: {text}");
        let error: ApiError = serde_json::from_str(&text).unwrap();
        assert_eq!(error.field.as_deref(), Some("Idempotency-Key"), "{key:?}");
    }
    assert_eq!(event_kinds(&env).await.len(), before);
    assert!(all_commands(&env).await.is_empty());

    // the same key twice: one command, the second answer is the first one, marked as a replay
    let key = new_action_key();
    let first = env.admin.action(&key, &close).await.unwrap();
    assert!(!first.replayed);
    assert!(first.ack.changed);
    let command = first.ack.command.clone().unwrap();
    let after_first = event_kinds(&env).await.len();
    let again = env.admin.action(&key, &close).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.ack, first.ack);
    assert_eq!(event_kinds(&env).await.len(), after_first);
    assert_eq!(all_commands(&env).await, vec![command.clone()]);

    // the same key with another action is refused and changes nothing
    let pauses = env.viewer.pauses().await.unwrap();
    for other in [
        ActionRequest::close_hedge(open.id, "another reason"),
        ActionRequest::retry_hedge(failed.id, "unwind"),
        ActionRequest::new(ActionKind::Pause),
    ] {
        let err = env.admin.action(&key, &other).await.unwrap_err();
        assert_eq!(err.status(), Some(409), "{other:?}");
        assert!(err.to_string().contains("different action"), "{err}");
    }
    assert_eq!(event_kinds(&env).await.len(), after_first);
    assert_eq!(env.viewer.pauses().await.unwrap(), pauses);
    assert_eq!(all_commands(&env).await, vec![command.clone()]);

    // resent after the hedger finished the command: still the first answer, no second close
    env.hedge
        .command_result(
            command.id,
            &CommandResult {
                status: CommandStatus::Done,
                retcode: Some(Retcode::DONE),
                message: None,
            },
        )
        .await
        .unwrap();
    let after_done = event_kinds(&env).await.len();
    let late = env.admin.action(&key, &close).await.unwrap();
    assert!(late.replayed);
    assert_eq!(late.ack, first.ack);
    assert_eq!(event_kinds(&env).await.len(), after_done);
    let commands = all_commands(&env).await;
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].status, CommandStatus::Done);
    // a new key is a new operator decision: it does issue a second close
    let fresh = env.admin.action(&new_action_key(), &close).await.unwrap();
    assert!(!fresh.replayed);
    assert_ne!(fresh.ack.command.as_ref().unwrap().id, command.id);
    assert_eq!(all_commands(&env).await.len(), 2);

    // concurrent duplicates: stored once, every answer the same
    let retry = ActionRequest::retry_hedge(failed.id, "broker fixed");
    let key = new_action_key();
    let before = event_kinds(&env).await.len();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let admin = env.admin.clone();
            let (key, retry) = (key.clone(), retry.clone());
            tokio::spawn(async move { admin.action(&key, &retry).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes.iter().all(|o| o.ack == outcomes[0].ack));
    assert!(outcomes[0].ack.changed);
    assert_eq!(event_kinds(&env).await.len(), before + 1);
    let retries = all_commands(&env)
        .await
        .into_iter()
        .filter(|c| c.kind == CommandKind::RetryHedge)
        .count();
    assert_eq!(retries, 1);

    // a replayed pause after a resume does not pause again
    let pause = ActionRequest {
        login: Some(CLIENT),
        ..ActionRequest::new(ActionKind::Pause)
    };
    let resume = ActionRequest {
        action: ActionKind::Resume,
        ..pause.clone()
    };
    let pause_key = new_action_key();
    let paused = env.admin.action(&pause_key, &pause).await.unwrap();
    assert!(paused.ack.changed);
    let resumed = env.admin.action(&new_action_key(), &resume).await.unwrap();
    assert!(resumed.ack.changed);
    let pauses = env.viewer.pauses().await.unwrap();
    let replay = env.admin.action(&pause_key, &pause).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.ack, paused.ack);
    assert_eq!(env.viewer.pauses().await.unwrap(), pauses);
    assert!(!pauses.iter().any(|p| p.login == Some(CLIENT)));

    // a refused action stores nothing under its key: the same key may be sent again
    let key = new_action_key();
    let (status, _, _) = env
        .raw_action(
            Some(ADMIN_TOKEN),
            Some(&key),
            r#"{"action":"close_hedge","hedge_id":999999}"#,
        )
        .await;
    assert_eq!(status, 404);
    let (status, replayed, text) = env
        .raw_action(
            Some(ADMIN_TOKEN),
            Some(&key),
            &serde_json::to_string(&ActionRequest::new(ActionKind::Pause)).unwrap(),
        )
        .await;
    assert_eq!((status, replayed), (200, false), "{text}");
    env.finish().await;
}

async fn command_refusals_store_nothing(b: Backend) {
    let env = Env::start(b).await;
    let (open, failed) = hedged_world(&env).await;
    let before = event_kinds(&env).await.len();
    let pauses_before = env.viewer.pauses().await.unwrap();

    let refused = |status: u16, text: &str| (status, text.to_owned());
    let cases: Vec<(Option<&str>, String, u16)> = vec![
        // only operators
        (
            Some(HEDGE_TOKEN),
            format!(r#"{{"action":"close_hedge","hedge_id":{}}}"#, open.id),
            403,
        ),
        (
            Some(VIEWER_TOKEN),
            format!(r#"{{"action":"close_hedge","hedge_id":{}}}"#, open.id),
            403,
        ),
        (
            None,
            format!(r#"{{"action":"close_hedge","hedge_id":{}}}"#, open.id),
            401,
        ),
        // malformed
        (Some(ADMIN_TOKEN), r#"{"action":"close_hedge"}"#.into(), 422),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"close_hedge","hedge_id":-1}"#.into(),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"close_hedge","hedge_id":"x"}"#.into(),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"explode","hedge_id":1}"#.into(),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"close_hedge","hedge_id":{},"login":5}}"#,
                open.id
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"pause","hedge_id":{}}}"#, open.id),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"close_hedge","hedge_id":{},"reason":"{}"}}"#,
                open.id,
                "x".repeat(2000)
            ),
            422,
        ),
        // unknown hedge; closing a failed one; retrying an open one
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"close_hedge","hedge_id":999999}"#.into(),
            404,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"retry_hedge","hedge_id":999999}"#.into(),
            404,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"close_hedge","hedge_id":{}}}"#, failed.id),
            409,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"retry_hedge","hedge_id":{}}}"#, open.id),
            409,
        ),
    ];
    for (token, body, want) in cases {
        let key = new_action_key();
        let (status, _, text) = env.raw_action(token, Some(&key), &body).await;
        assert_eq!(refused(status, &text).0, want, "{body}: {text}");
        let error: ApiError = serde_json::from_str(&text).unwrap();
        assert!(!error.message.is_empty());
    }
    // closing a closed hedge
    env.hedge
        .hedge_reduced(
            open.id,
            &HedgeReduce {
                remaining: vol("0"),
                deal: None,
                price: None,
                time_ms: 2,
                reason: "closed".into(),
            },
        )
        .await
        .unwrap();
    let after_close = event_kinds(&env).await.len();
    assert_eq!(after_close, before + 1);
    assert_eq!(
        env.admin
            .action(&new_action_key(), &ActionRequest::close_hedge(open.id, ""))
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    assert_eq!(event_kinds(&env).await.len(), after_close);
    assert_eq!(env.viewer.pauses().await.unwrap(), pauses_before);
    assert!(env
        .viewer
        .commands(&CommandQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());

    // results: unknown command, wrong account, pending as a result, bad bodies
    let cmd = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::retry_hedge(failed.id, ""),
        )
        .await
        .unwrap()
        .ack
        .command
        .unwrap();
    let events_with_cmd = event_kinds(&env).await.len();
    let result_cases: Vec<(String, Option<&str>, &str, u16)> = vec![
        (
            "/v1/commands/999999/result".into(),
            Some(HEDGE_TOKEN),
            r#"{"status":"done"}"#,
            404,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(CLIENT_TOKEN),
            r#"{"status":"done"}"#,
            403,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(VIEWER_TOKEN),
            r#"{"status":"done"}"#,
            403,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            None,
            r#"{"status":"done"}"#,
            401,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            r#"{"status":"pending"}"#,
            422,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            r#"{"status":"finished"}"#,
            422,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            r#"{"retcode":10009}"#,
            422,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            "[]",
            422,
        ),
        (
            format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            "",
            422,
        ),
        (
            "/v1/commands/abc/result".into(),
            Some(HEDGE_TOKEN),
            r#"{"status":"done"}"#,
            422,
        ),
    ];
    for (path, token, body, want) in result_cases {
        let (status, text) = env.raw(Method::POST, &path, token, Some(body)).await;
        assert_eq!(status, want, "{path} {body}: {text}");
    }
    let long = format!(r#"{{"status":"done","message":"{}"}}"#, "m".repeat(3000));
    let (status, _) = env
        .raw(
            Method::POST,
            &format!("/v1/commands/{}/result", cmd.id),
            Some(HEDGE_TOKEN),
            Some(&long),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(event_kinds(&env).await.len(), events_with_cmd);
    assert_eq!(env.viewer.command(cmd.id).await.unwrap(), cmd);

    // reading commands: another account's hedge token, a client token
    for (path, token, want) in [
        (
            format!("/v1/commands?login={}", HEDGE),
            Some(CLIENT_TOKEN),
            403,
        ),
        ("/v1/commands".to_owned(), Some(CLIENT_TOKEN), 403),
        ("/v1/commands?login=5".to_owned(), Some(HEDGE_TOKEN), 403),
        (
            "/v1/commands?status=nope".to_owned(),
            Some(ADMIN_TOKEN),
            422,
        ),
        (format!("/v1/commands/{}", cmd.id), Some(CLIENT_TOKEN), 403),
        ("/v1/commands/999999".to_owned(), Some(ADMIN_TOKEN), 404),
    ] {
        let (status, text) = env.raw(Method::GET, &path, token, None).await;
        assert_eq!(status, want, "{path}: {text}");
    }
    // a hedge token without login gets its own commands
    let (status, text) = env
        .raw(
            Method::GET,
            "/v1/commands?status=pending",
            Some(HEDGE_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let page: Page<Command> = serde_json::from_str(&text).unwrap();
    assert_eq!(page.items, vec![cmd]);
    env.finish().await;
}

async fn status_money_and_marks_setup(env: &Env) {
    env.register_defaults().await;
    for (id, side) in [(1, Side::Buy), (2, Side::Sell)] {
        env.client
            .report_position(&open(CLIENT, id, "EURUSD", side, "0.1"))
            .await
            .unwrap();
    }
}

fn mark(id: u64, price: &str, profit: &str) -> PositionMark {
    PositionMark {
        position_id: PositionId(id),
        price_current: hedge_domain::Price(dec(price)),
        swap: hedge_domain::Money(dec("-0.35")),
        profit: hedge_domain::Money(dec(profit)),
        commission: hedge_domain::Money(dec("-0.7")),
    }
}

async fn status_money_marks_and_reconciliation(b: Backend) {
    let env = Env::start(b).await;
    status_money_and_marks_setup(&env).await;
    let status = AccountStatus {
        connected: true,
        account: Some(AccountMoney {
            balance: hedge_domain::Money(dec("10000.10")),
            equity: hedge_domain::Money(dec("10000.30")),
            margin: hedge_domain::Money(dec("22")),
            margin_free: hedge_domain::Money(dec("9978.30")),
            profit: hedge_domain::Money(dec("0.2")),
            currency: "USD".into(),
        }),
        marks: vec![mark(1, "1.10011", "0.1"), mark(2, "1.10013", "0.1")],
        reconciliation: Some(Reconciliation {
            ok: false,
            detail: "EURUSD: ledger 0.1, terminal 0.2".into(),
            checked_ms: 5,
        }),
        ..AccountStatus::default()
    };
    let stored = env.client.heartbeat(CLIENT, &status).await.unwrap();
    let kept = stored.status.unwrap();
    assert_eq!(kept.account, status.account);
    assert_eq!(kept.reconciliation, status.reconciliation);
    assert!(kept.marks.is_empty(), "marks are served on the positions");
    // exact decimals on the wire
    let (_, text) = env
        .raw(
            Method::GET,
            &format!("/v1/accounts/{CLIENT}"),
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(raw["status"]["account"]["balance"].to_string(), "10000.1");
    assert_eq!(
        raw["status"]["reconciliation"]["ok"],
        serde_json::json!(false)
    );

    let positions = env
        .viewer
        .positions(&PositionFilter::default())
        .await
        .unwrap()
        .items;
    let p1 = positions
        .iter()
        .find(|p| p.position_id == PositionId(1))
        .unwrap();
    assert_eq!(p1.price_current, Some(hedge_domain::Price(dec("1.10011"))));
    assert_eq!(p1.swap, Some(hedge_domain::Money(dec("-0.35"))));
    assert_eq!(p1.commission, Some(hedge_domain::Money(dec("-0.7"))));
    assert_eq!(p1.profit, Some(hedge_domain::Money(dec("0.1"))));
    let detail = env.viewer.position(CLIENT, PositionId(2)).await.unwrap();
    assert_eq!(
        detail.position.price_current,
        Some(hedge_domain::Price(dec("1.10013")))
    );

    // only the latest mark is kept; a status without marks leaves them
    let events_before = event_kinds(&env).await.len();
    let newer = AccountStatus {
        marks: vec![mark(1, "1.1002", "0.9")],
        ..status.clone()
    };
    env.client.heartbeat(CLIENT, &newer).await.unwrap();
    let events = event_kinds(&env).await;
    assert_eq!(events.len(), events_before + 1);
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::AccountStatus);
    assert_eq!(last.data["marks"][0]["price_current"].to_string(), "1.1002");
    env.client
        .heartbeat(
            CLIENT,
            &AccountStatus {
                marks: vec![],
                ..newer.clone()
            },
        )
        .await
        .unwrap();
    // the same status again is no event
    assert_eq!(event_kinds(&env).await.len(), events_before + 1);
    let positions = env
        .viewer
        .positions(&PositionFilter::default())
        .await
        .unwrap()
        .items;
    let p1 = positions
        .iter()
        .find(|p| p.position_id == PositionId(1))
        .unwrap();
    assert_eq!(p1.profit, Some(hedge_domain::Money(dec("0.9"))));
    let p2 = positions
        .iter()
        .find(|p| p.position_id == PositionId(2))
        .unwrap();
    assert_eq!(
        p2.price_current, None,
        "position 2 was not marked in the latest status"
    );

    // a closed position shows no mark
    env.client
        .report_position(&report(
            CLIENT,
            PositionEventKind::Close,
            1,
            "EURUSD",
            Side::Buy,
            "0",
            2,
        ))
        .await
        .unwrap();
    let p1 = env
        .viewer
        .position(CLIENT, PositionId(1))
        .await
        .unwrap()
        .position;
    assert_eq!(p1.price_current, None);

    // bad marks: refused, nothing stored
    let events_before = event_kinds(&env).await.len();
    for body in [
        r#"{"connected":true,"marks":[{"position_id":2,"price_current":-1}]}"#,
        r#"{"connected":true,"marks":[{"position_id":0,"price_current":1}]}"#,
        r#"{"connected":true,"marks":[{"position_id":2,"price_current":1},{"position_id":2,"price_current":1}]}"#,
        r#"{"connected":true,"marks":[{"position_id":2}]}"#,
        r#"{"connected":true,"account":{"balance":"x","equity":1,"margin":1,"margin_free":1,"profit":1}}"#,
        r#"{"connected":true,"account":{"balance":1}}"#,
        r#"{"connected":true,"reconciliation":{"detail":"x"}}"#,
    ] {
        let (status, text) = env
            .raw(
                Method::POST,
                &format!("/v1/accounts/{CLIENT}/status"),
                Some(CLIENT_TOKEN),
                Some(body),
            )
            .await;
        assert_eq!(status, 422, "{body}: {text}");
    }
    assert_eq!(event_kinds(&env).await.len(), events_before);
    let p2 = env
        .viewer
        .position(CLIENT, PositionId(2))
        .await
        .unwrap()
        .position;
    assert_eq!(p2.price_current, None);

    // an account with 12,000 open positions sends them all in one status (over 1 MiB of JSON)
    let many = AccountStatus {
        marks: (1..=12_000).map(|i| mark(i, "1.23456", "-12.34")).collect(),
        ..status.clone()
    };
    assert!(serde_json::to_vec(&many).unwrap().len() > 1 << 20);
    env.client.heartbeat(CLIENT, &many).await.unwrap();
    let p2 = env
        .viewer
        .position(CLIENT, PositionId(2))
        .await
        .unwrap()
        .position;
    assert_eq!(p2.price_current, Some(hedge_domain::Price(dec("1.23456"))));
    env.finish().await;
}

async fn operator_overrides(b: Backend) {
    let env = Env::start(b).await;
    env.register_defaults().await;
    env.client
        .report_position(&open(CLIENT, 1, "EURUSD", Side::Buy, "0.4"))
        .await
        .unwrap();
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert_eq!(
        (plan.items[0].volume, plan.items[0].account_symbol.as_str()),
        (vol("0.4"), "EURUSD.h")
    );

    // ratio override on the client: the plan follows, the registration keeps the agent's value
    let ack = env
        .admin
        .action(
            &new_action_key(),
            &ActionRequest {
                login: Some(CLIENT),
                hedge_ratio: Some(dec("0.5")),
                reason: "halve".into(),
                ..ActionRequest::new(ActionKind::SetHedgeRatio)
            },
        )
        .await
        .unwrap()
        .ack;
    assert!(ack.changed);
    let account = ack.account.unwrap();
    assert_eq!(account.registration.hedge_ratio, dec("1"));
    assert_eq!(account.overrides.hedge_ratio, Some(dec("0.5")));
    assert_eq!(
        env.hedge.plan(HEDGE).await.unwrap().items[0].volume,
        vol("0.2")
    );
    // the string form of the contract is accepted too
    let (status, _, text) = env
        .raw_action(
            Some(ADMIN_TOKEN),
            Some(&new_action_key()),
            &format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":"0.5"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let same: ActionAck = serde_json::from_str(&text).unwrap();
    assert!(!same.changed);

    // symbol map override on the hedge account: the plan names the symbol the new way
    let map = hedge_domain::SymbolMap::from_affix("-ECN");
    env.admin
        .action(
            &new_action_key(),
            &ActionRequest {
                login: Some(HEDGE),
                symbol_map: Some(map.clone()),
                ..ActionRequest::new(ActionKind::SetSymbolMap)
            },
        )
        .await
        .unwrap();
    // re-registration by the agent does not overwrite the overrides
    env.hedge
        .register_account(&hedge_registration())
        .await
        .unwrap();
    env.client
        .register_account(&client_registration(CLIENT, "1"))
        .await
        .unwrap();
    let hedge = env.viewer.account(HEDGE).await.unwrap();
    assert_eq!(
        hedge.registration.symbol_map,
        hedge_registration().symbol_map
    );
    assert_eq!(hedge.overrides.symbol_map, Some(map));
    // the hedge account sent no spec under the overridden name, so the plan says so
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert!(plan.items.is_empty());
    assert_eq!(plan.residuals[0].account_symbol, "EURUSD-ECN");
    assert_eq!(plan.residuals[0].reason, ResidualReason::NoSymbolSpec);
    assert_eq!(plan.residuals[0].unhedged, vol("0.2"));
    let listed = env.viewer.accounts().await.unwrap();
    assert!(listed
        .iter()
        .any(|a| a.overrides.hedge_ratio == Some(dec("0.5"))));

    // refusals: nothing stored
    let events_before = event_kinds(&env).await.len();
    for (token, body, want) in [
        (
            Some(HEDGE_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":2}}"#),
            403,
        ),
        (
            Some(VIEWER_TOKEN),
            format!(r#"{{"action":"clear_override","login":{CLIENT},"field":"hedge_ratio"}}"#),
            403,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":0}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":-1}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":1001}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT},"hedge_ratio":"abc"}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{CLIENT}}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"set_hedge_ratio","hedge_ratio":2}"#.to_owned(),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            r#"{"action":"set_hedge_ratio","login":777,"hedge_ratio":2}"#.to_owned(),
            404,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_hedge_ratio","login":{HEDGE},"hedge_ratio":2}}"#),
            409,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_symbol_map","login":{HEDGE}}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":{{"suffix":"a b"}}}}"#
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":{{"explicit":{{"GOLD":"XAUUSD","XAU":"XAUUSD"}}}}}}"#
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":{{"explicit":{{"":"XAUUSD"}}}}}}"#
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":"x"}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(
                r#"{{"action":"set_symbol_map","login":{HEDGE},"symbol_map":{{}},"hedge_ratio":1}}"#
            ),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"clear_override","login":{HEDGE}}}"#),
            422,
        ),
        (
            Some(ADMIN_TOKEN),
            format!(r#"{{"action":"clear_override","login":{HEDGE},"field":"color"}}"#),
            422,
        ),
    ] {
        let key = new_action_key();
        let (status, _, text) = env.raw_action(token, Some(&key), &body).await;
        assert_eq!(status, want, "{body}: {text}");
    }
    assert_eq!(event_kinds(&env).await.len(), events_before);
    assert_eq!(
        env.hedge.plan(HEDGE).await.unwrap().residuals[0].account_symbol,
        "EURUSD-ECN"
    );

    // clearing: back to the agent's values; clearing again changes nothing
    let clear = |login, field| ActionRequest {
        login: Some(login),
        field: Some(field),
        ..ActionRequest::new(ActionKind::ClearOverride)
    };
    assert!(
        env.admin
            .action(&new_action_key(), &clear(CLIENT, OverrideField::HedgeRatio))
            .await
            .unwrap()
            .ack
            .changed
    );
    assert!(
        env.admin
            .action(&new_action_key(), &clear(HEDGE, OverrideField::SymbolMap))
            .await
            .unwrap()
            .ack
            .changed
    );
    assert!(
        !env.admin
            .action(&new_action_key(), &clear(HEDGE, OverrideField::SymbolMap))
            .await
            .unwrap()
            .ack
            .changed
    );
    let plan = env.hedge.plan(HEDGE).await.unwrap();
    assert_eq!(
        (plan.items[0].volume, plan.items[0].account_symbol.as_str()),
        (vol("0.4"), "EURUSD.h")
    );
    let events = event_kinds(&env).await;
    let set = events
        .iter()
        .filter(|e| e.kind == EventKind::OverrideSet)
        .count();
    let cleared: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::OverrideCleared)
        .collect();
    assert_eq!((set, cleared.len()), (2, 2));
    assert!(cleared.iter().all(|e| e.actor == "ops"));
    assert!(env
        .viewer
        .account(HEDGE)
        .await
        .unwrap()
        .overrides
        .is_empty());
    env.finish().await;
}
