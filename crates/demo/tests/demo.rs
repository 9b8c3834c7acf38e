//! The demo itself, run in-process: it must end with the two hedge accounts together opposite the
//! clients in base quantity (ounces of gold across brokers whose lots differ), split 60/40 as the
//! operator allocated.

use hedge_demo::exposure::Leg;
use hedge_demo::interrupt::Interrupt;
use hedge_demo::scenario::{run, DemoOptions};
use hedge_demo::timeline::Timeline;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_ends_with_the_hedge_accounts_opposite_the_clients_in_ounces_split_60_40() {
    let timeline = Timeline::quiet(true);
    let outcome = run(
        DemoOptions {
            keep_running: Duration::ZERO,
            seed: 7,
            interrupt: Interrupt::never(),
        },
        timeline.clone(),
    )
    .await
    .expect("the demo starts");
    let lines = timeline.lines();
    assert!(
        outcome.ok,
        "final check failed; timeline:\n{}",
        lines.join("\n")
    );
    let symbols: Vec<&str> = outcome.rows.iter().map(|r| r.symbol.as_str()).collect();
    assert_eq!(symbols, vec!["EURUSD", "XAUUSD"]);
    for row in &outcome.rows {
        assert!(row.ok, "{row:?}");
        assert!(row.uncovered.is_zero(), "{row:?}");
        assert_eq!(row.hedge_base, -row.client_base, "{row:?}");
        let shares: Vec<Option<Decimal>> = row.hedges.iter().map(|h| h.share).collect();
        assert_eq!(shares, vec![Some(dec!(0.6)), Some(dec!(0.4))], "{row:?}");
    }
    // Gold: 1.5 lots of 10 oz at client A's broker (XAUUSD.r) and 0.2 lots of 100 oz at client
    // B's (GOLD) are 35 oz short, not 1.7 lots; the hedges hold 21 oz (0.21 lots of 100 oz) and
    // 14 oz (1.4 lots of 10 oz), 60/40.
    let gold = &outcome.rows[1];
    assert_eq!(gold.unit, "oz");
    let legs = |legs: &[Leg]| -> Vec<(String, Decimal, Option<Decimal>, Option<Decimal>)> {
        legs.iter()
            .map(|l| (l.account_symbol.clone(), l.lots.0, l.contract_size, l.base))
            .collect()
    };
    assert_eq!(
        legs(&gold.clients),
        vec![
            (
                "XAUUSD.r".into(),
                dec!(-1.5),
                Some(dec!(10)),
                Some(dec!(-15))
            ),
            ("GOLD".into(), dec!(-0.2), Some(dec!(100)), Some(dec!(-20))),
        ]
    );
    assert_eq!(gold.client_base, dec!(-35));
    assert_eq!(
        legs(&gold.hedges),
        vec![
            (
                "XAUUSD-ECN".into(),
                dec!(0.21),
                Some(dec!(100)),
                Some(dec!(21))
            ),
            (
                "XAUUSD.pro".into(),
                dec!(1.4),
                Some(dec!(10)),
                Some(dec!(14))
            ),
        ]
    );
    let eur = &outcome.rows[0];
    assert_eq!(
        (eur.client_base, eur.hedge_base),
        (dec!(30000), dec!(-30000))
    );
    // Two symbols on each of the two hedge accounts.
    assert_eq!(outcome.hedge_orders, 4);
    // The timeline tells the story as it happened: JSON objects, the trigger before the orders.
    let kinds: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_owned))
        .collect();
    let pos = |k: &str| kinds.iter().position(|x| x == k);
    let trigger = pos("trigger").expect("a trigger line");
    let order = pos("order").expect("an order line");
    assert!(trigger < order);
    assert!(
        pos("tumbler").is_some() && pos("result").is_some(),
        "a tumbler and a result line; timeline:\n{}",
        lines.join("\n")
    );
    // The operator's allocation went through the center's API before the signal.
    let values: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let operator = values
        .iter()
        .find(|v| v["kind"] == "operator")
        .expect("the allocation line");
    let weights: Vec<(u64, String)> = operator["allocations"][0]["weights"]
        .as_array()
        .expect("weights")
        .iter()
        .map(|w| (w["hedge_login"].as_u64().unwrap(), w["weight"].to_string()))
        .collect();
    assert_eq!(weights, vec![(2001, "0.6".into()), (2002, "0.4".into())]);
    assert!(pos("operator").unwrap() < pos("trigger").unwrap());
    // Each row is in the JSON timeline too.
    let rows: Vec<&serde_json::Value> = values.iter().filter(|v| v["kind"] == "row").collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["symbol"], "XAUUSD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_phase_keeps_clients_trading_and_the_hedger_mirroring_them() {
    let timeline = Timeline::quiet(true);
    let outcome = run(
        DemoOptions {
            keep_running: Duration::from_millis(4500),
            seed: 11,
            interrupt: Interrupt::never(),
        },
        timeline.clone(),
    )
    .await
    .expect("the demo starts");
    let lines: Vec<serde_json::Value> = timeline
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(outcome.ok, "the scenario's check failed: {lines:#?}");
    let kind = |v: &serde_json::Value| v["kind"].as_str().unwrap_or("").to_owned();
    // Both clients traded, once each in turn.
    let trades: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| kind(v) == "live" && v.get("action").is_some())
        .collect();
    assert_eq!(trades.len(), 2, "{lines:#?}");
    assert_eq!(trades[0]["account"], "client A 1001");
    assert_eq!(trades[1]["account"], "client B 1002");
    assert!(trades.iter().all(|v| v["retcode"] == 10009), "{trades:#?}");
    // The hedger, still running, answered the clients' trades with hedge orders of its own.
    let first_trade = lines
        .iter()
        .position(|v| kind(v) == "live" && v.get("action").is_some())
        .unwrap();
    let mirrored = lines[first_trade..]
        .iter()
        .filter(|v| kind(v) == "order")
        .count();
    assert!(
        mirrored >= 1,
        "no hedge order in the live phase: {lines:#?}"
    );
    let end = lines
        .iter()
        .rev()
        .find(|v| kind(v) == "live" && v.get("opens").is_some())
        .expect("the live phase's summary");
    // The net table again after the live phase, once it is over.
    let summary_at = lines
        .iter()
        .position(|v| std::ptr::eq(v, end))
        .unwrap_or_default();
    assert!(
        lines[summary_at..].iter().any(|v| kind(v) == "row"),
        "no table after the live phase: {lines:#?}"
    );
    assert_eq!(
        end["opens"].as_u64().unwrap() + end["closes"].as_u64().unwrap(),
        2,
        "{end}"
    );
    // Nobody paused or closed anything, so the hedger caught up with every trade.
    assert_eq!(end["mirrors"], true, "{lines:#?}");
}
