//! The demo itself, run in-process: it must end with the hedge account net opposite to the clients.

use hedge_demo::interrupt::Interrupt;
use hedge_demo::scenario::{run, DemoOptions};
use hedge_demo::timeline::Timeline;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_ends_with_the_hedge_account_net_opposite_to_the_clients() {
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
        assert_eq!(row.ratio.as_deref(), Some("1"), "{row:?}");
    }
    assert_eq!(outcome.hedge_orders, 2);
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
