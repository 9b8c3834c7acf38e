//! The demo itself, run in-process: it must end with the hedge account net opposite to the clients.

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
    assert!(pos("tumbler").is_some() && pos("result").is_some());
}
