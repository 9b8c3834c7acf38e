//! Status heartbeats: money, marks and the netting reconciliation.

use crate::common::*;
use hedge_center_api::model::*;
use hedge_domain::{PositionId, Side};
use reqwest::Method;

both_backends!(status_money_marks_and_reconciliation,);

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
