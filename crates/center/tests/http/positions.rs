//! Position reports: idempotency, concurrency, transitions and refusals.

use crate::common::*;
use hedge_center_api::model::*;
use hedge_domain::{PositionId, Side};
use reqwest::Method;

both_backends!(
    report_idempotency,
    concurrent_duplicates_store_once,
    no_lost_updates_under_concurrency,
    position_lifecycle_and_refusals,
    report_bad_input,
    realized_figures_of_closes,
);

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

fn exit(price: &str, profit: &str, commission: &str, swap: &str) -> Option<ExitDeal> {
    Some(ExitDeal {
        price: hedge_domain::Price(dec(price)),
        profit: hedge_domain::Money(dec(profit)),
        commission: hedge_domain::Money(dec(commission)),
        swap: hedge_domain::Money(dec(swap)),
        fee: hedge_domain::Money(dec("0")),
    })
}

/// Each partial close and close adds its exit deal to the position exactly (a resent report adds
/// nothing), the exit price is the volume-weighted average at the symbol's digits, and a close
/// reported without its deal leaves the figures unknown rather than 0.
async fn realized_figures_of_closes(b: Backend) {
    let env = Env::start(b).await;
    let mut registration = client_registration(CLIENT, "1");
    registration.symbols = vec![spec("EURUSD.r", "0.01", "0.01", "100")];
    env.client.register_account(&registration).await.unwrap();
    let c = &env.client;
    c.report_position(&open(CLIENT, 40, "EURUSD", Side::Buy, "0.3"))
        .await
        .unwrap();
    let mut first = report(
        CLIENT,
        PositionEventKind::PartialClose,
        40,
        "EURUSD",
        Side::Buy,
        "0.2",
        2,
    );
    first.exit = exit("1.10012", "0.1", "-0.1", "-0.01");
    // The same report many times at once (resends after lost answers, in one group commit or
    // several) is stored and added once.
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let c = c.clone();
            let r = first.clone();
            tokio::spawn(async move { c.report_position(&r).await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    for t in tasks {
        fresh += usize::from(!t.await.unwrap().replayed);
    }
    assert_eq!(fresh, 1);
    assert!(c.report_position(&first).await.unwrap().replayed);
    let partial = c.position(CLIENT, PositionId(40)).await.unwrap().position;
    assert_eq!(
        partial.exit_price,
        Some(hedge_domain::Price(dec("1.10012")))
    );
    assert_eq!(
        partial.realized_profit,
        Some(hedge_domain::Money(dec("0.1")))
    );
    let mut second = report(
        CLIENT,
        PositionEventKind::PartialClose,
        40,
        "EURUSD",
        Side::Buy,
        "0.05",
        3,
    );
    second.exit = exit("1.10031", "0.2", "-0.2", "-0.02");
    c.report_position(&second).await.unwrap();
    let mut close = report(
        CLIENT,
        PositionEventKind::Close,
        40,
        "EURUSD",
        Side::Buy,
        "0",
        4,
    );
    close.exit = exit("1.10047", "-0.07", "0", "0");
    c.report_position(&close).await.unwrap();

    // A position whose partial close came without its deal (an older agent).
    c.report_position(&open(CLIENT, 41, "EURUSD", Side::Sell, "0.2"))
        .await
        .unwrap();
    let mut older = report(
        CLIENT,
        PositionEventKind::PartialClose,
        41,
        "EURUSD",
        Side::Sell,
        "0.1",
        2,
    );
    let first_answer = c.report_position(&older).await.unwrap();
    // The same report resent with its exit deal (the agent was upgraded before the center that
    // stored it without one) is the same report: answered again, nothing added.
    older.exit = exit("1.1", "1", "0", "0");
    let again = c.report_position(&older).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.ack, first_answer.ack);
    older.volume = vol("0.05");
    let err = c.report_position(&older).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let mut unknown = report(
        CLIENT,
        PositionEventKind::Close,
        41,
        "EURUSD",
        Side::Sell,
        "0",
        3,
    );
    unknown.exit = exit("1.1", "5", "-1", "0");
    c.report_position(&unknown).await.unwrap();

    let closed = env
        .viewer
        .positions(&PositionFilter {
            status: Some(PositionStatus::Closed),
            ..PositionFilter::default()
        })
        .await
        .unwrap();
    let p = closed
        .items
        .iter()
        .find(|p| p.position_id == PositionId(40))
        .unwrap();
    // (1.10012*0.1 + 1.10031*0.15 + 1.10047*0.05) / 0.3 = 1.1002733…, at EURUSD.r's 5 digits.
    assert_eq!(p.exit_price, Some(hedge_domain::Price(dec("1.10027"))));
    assert_eq!(p.realized_profit, Some(hedge_domain::Money(dec("0.23"))));
    assert_eq!(
        p.realized_commission,
        Some(hedge_domain::Money(dec("-0.3")))
    );
    assert_eq!(p.realized_swap, Some(hedge_domain::Money(dec("-0.03"))));
    assert_eq!(p.realized_fee, Some(hedge_domain::Money(dec("0"))));
    let q = closed
        .items
        .iter()
        .find(|p| p.position_id == PositionId(41))
        .unwrap();
    assert_eq!((q.exit_price, q.realized_profit), (None, None));
    // Absent on the wire, not 0 or null.
    let (_, text) = env
        .raw(
            Method::GET,
            "/v1/positions?status=closed",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    let page: serde_json::Value = serde_json::from_str(&text).unwrap();
    let q = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["position_id"] == 41)
        .unwrap();
    assert!(
        q.get("realized_profit").is_none() && q.get("exit_price").is_none(),
        "{q}"
    );
    // The position's close event carries the figures to the event stream.
    let events = env.viewer.events(&PageQuery::default()).await.unwrap();
    let closed_event = events
        .items
        .iter()
        .rfind(|e| e.kind == EventKind::PositionClosed && e.data["position_id"] == 40)
        .unwrap();
    assert_eq!(
        closed_event.data["realized_profit"],
        serde_json::json!(0.23)
    );

    // An exit deal on an open is refused, and so is a price that is not positive.
    let mut bad = open(CLIENT, 42, "EURUSD", Side::Buy, "0.1");
    bad.exit = exit("1.1", "0", "0", "0");
    let err = c.report_position(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    let mut bad = report(
        CLIENT,
        PositionEventKind::Close,
        40,
        "EURUSD",
        Side::Buy,
        "0",
        5,
    );
    bad.exit = exit("0", "0", "0", "0");
    let err = c.report_position(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    env.finish().await;
}
