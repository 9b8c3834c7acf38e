//! End-to-end: `hedge client` between the simulated terminal and an in-process center, over real
//! sockets.

mod common;

use common::*;
use hedge_agent_runtime::outbox::Outbox;
use hedge_center_api::model::PositionEventKind::{self, *};
use hedge_center_api::model::{PositionFilter, PositionReport, PositionStatus};
use std::collections::BTreeMap;

use hedge_domain::{AccountMarginMode, Magic, PositionId, Price, Side, Volume};
use hedge_sim::SimTerminal;
use rust_decimal::Decimal;
use std::time::Duration;

fn lots(hundredths: i64) -> Volume {
    Volume(Decimal::new(hundredths, 2))
}

fn open(sim: &SimTerminal, side: Side, hundredths: i64) -> PositionId {
    let r = sim.open("EURUSD", side, lots(hundredths), Magic(0), "test");
    assert!(r.is_done(), "open refused: {r:?}");
    r.position
}

fn close(sim: &SimTerminal, id: PositionId, hundredths: Option<i64>) {
    let r = sim.close(id, hundredths.map(lots));
    assert!(r.is_done(), "close refused: {r:?}");
}

async fn settle(
    center: &hedge_center_api::client::CenterClient,
    id: PositionId,
    kinds: &[PositionEventKind],
) {
    // Wait a little more, then check that nothing was added (no double report).
    tokio::time::sleep(Duration::from_millis(300)).await;
    history_of(center, id, kinds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_account_reports_every_event_once_including_open_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), 0, false).await;
    let api = admin(&center.url());
    let port = free_port();
    let agent = start_client(port, &center.url(), &dir.path().join("state"));
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);

    let a = open(&sim, Side::Buy, 30);
    history_of(&api, a, &[Open]).await;
    close(&sim, a, Some(10));
    let d = history_of(&api, a, &[Open, PartialClose]).await;
    assert_eq!(d.position.volume, lots(20));
    let r = sim.modify(
        a,
        Price(Decimal::new(105000, 5)),
        Price(Decimal::new(120000, 5)),
    );
    assert!(r.is_done(), "{r:?}");
    // The center keeps volume changes in the history; a stop change shows on the position.
    let sl = Some(Price(Decimal::new(105000, 5)));
    let d = eventually(
        "stop loss at the center",
        Duration::from_secs(20),
        || async {
            let d = api.position(LOGIN, a).await.ok()?;
            (d.position.sl == sl).then_some(d)
        },
    )
    .await;
    assert_eq!(d.position.last_seq, 3);
    // Close and open at once: the count of positions stays 1, the legacy agent's blind spot.
    close(&sim, a, None);
    let b = open(&sim, Side::Sell, 10);
    let d = history_of(&api, a, &[Open, PartialClose, Close]).await;
    assert_eq!(d.position.last_seq, 4);
    let d = history_of(&api, b, &[Open]).await;
    assert_eq!(d.position.side, Side::Sell);
    settle(&api, a, &[Open, PartialClose, Close]).await;
    settle(&api, b, &[Open]).await;

    agent.kill();
    sim.stop().await;
    center.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_netting_reports_increase_partial_close_and_reversal() {
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), 0, false).await;
    let api = admin(&center.url());
    let port = free_port();
    let config = dir.path().join("client.toml");
    std::fs::write(&config, "[client]\nnative_netting = true\n").unwrap();
    let agent = start_client_with(
        port,
        &center.url(),
        &dir.path().join("state"),
        &["--config", config.to_str().unwrap()],
    );
    let sim = start_sim(port, AccountMarginMode::RetailNetting);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);

    let p = open(&sim, Side::Buy, 10);
    history_of(&api, p, &[Open]).await;
    assert_eq!(
        open(&sim, Side::Buy, 20),
        p,
        "netting keeps one position per symbol"
    );
    history_of(&api, p, &[Open, Increase]).await;
    open(&sim, Side::Sell, 10);
    let d = history_of(&api, p, &[Open, Increase, PartialClose]).await;
    assert_eq!(d.position.volume, lots(20));
    // Sell 0.5 against a 0.2 buy: the position reverses to a 0.3 sell.
    open(&sim, Side::Sell, 50);
    let d = history_of(&api, p, &[Open, Increase, PartialClose, Close, Open]).await;
    assert_eq!(d.position.side, Side::Sell);
    assert_eq!(d.position.volume, lots(30));
    close(&sim, p, None);
    settle(&api, p, &[Open, Increase, PartialClose, Close, Open, Close]).await;

    agent.kill();
    sim.stop().await;
    center.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_scenario_misses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), 0, false).await;
    let api = admin(&center.url());
    let port = free_port();
    let state = dir.path().join("state");
    let agent = start_client(port, &center.url(), &state);
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);

    let a = open(&sim, Side::Buy, 10);
    let b = open(&sim, Side::Sell, 30);
    history_of(&api, a, &[Open]).await;
    history_of(&api, b, &[Open]).await;

    // The agent dies; the account moves on without it.
    agent.kill();
    close(&sim, a, None);
    close(&sim, b, Some(10));
    let c = open(&sim, Side::Buy, 20);
    let d = open(&sim, Side::Sell, 10);
    close(&sim, d, None);

    let agent = start_client(port, &center.url(), &state);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    history_of(&api, a, &[Open, Close]).await;
    history_of(&api, b, &[Open, PartialClose]).await;
    history_of(&api, c, &[Open]).await;
    history_of(&api, d, &[Open, Close]).await;

    // And it keeps going after the restart.
    close(&sim, c, None);
    history_of(&api, c, &[Open, Close]).await;
    // A second restart with nothing new reports nothing.
    agent.kill();
    let agent = start_client(port, &center.url(), &state);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle(&api, a, &[Open, Close]).await;
    settle(&api, b, &[Open, PartialClose]).await;
    settle(&api, c, &[Open, Close]).await;
    settle(&api, d, &[Open, Close]).await;

    agent.kill();
    sim.stop().await;
    center.shutdown().await;
}

/// Every file of `from` into `to` (created): an agent's state directory while the agent is down.
fn copy_state(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The agent sends a report while the outbox commit that logs it is being synced. A crash between
/// the two leaves the center with the report and the agent's disk without it (neither the queued
/// item nor the position's new state). That state is rebuilt here exactly: the state directory as
/// it was before the open, the center holding the open. On restart the agent finds the position on
/// the terminal, reports the same open under the same key, the center answers it as a replay, and
/// the position goes on: one open, nothing refused, nothing doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_sent_but_not_logged_before_a_crash_is_replayed_not_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), 0, false).await;
    let api = admin(&center.url());
    let port = free_port();
    let state = dir.path().join("state");
    let agent = start_client(port, &center.url(), &state);
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    let a = open(&sim, Side::Buy, 10);
    history_of(&api, a, &[Open]).await;
    agent.kill();
    let before = dir.path().join("state-before-b");
    copy_state(&state, &before);

    let agent = start_client(port, &center.url(), &state);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    let b = open(&sim, Side::Sell, 20);
    history_of(&api, b, &[Open]).await;
    agent.kill();
    // The crash: the open of b reached the center; the agent's commit of it never did.
    std::fs::remove_dir_all(&state).unwrap();
    copy_state(&before, &state);

    let agent = start_client(port, &center.url(), &state);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    let queue = Outbox::open(&state.join(format!("client-{LOGIN}.db"))).unwrap();
    // The agent found b on the terminal and its report of the open went out: it holds b again and
    // nothing waits.
    eventually(
        "b reconciled and reported",
        Duration::from_secs(10),
        || async {
            let held = queue.state_list("position").ok()?;
            let b_held = held.iter().any(|(id, _)| *id == b.to_string());
            (b_held && queue.pending().ok()? == 0).then_some(())
        },
    )
    .await;
    assert!(queue.dead_letters().unwrap().is_empty());
    close(&sim, b, None);
    history_of(&api, b, &[Open, Close]).await;
    settle(&api, a, &[Open]).await;
    settle(&api, b, &[Open, Close]).await;
    eventually("outbox drained", Duration::from_secs(10), || async {
        (queue.pending().ok()? == 0).then_some(())
    })
    .await;
    assert!(
        queue.dead_letters().unwrap().is_empty(),
        "the open sent again was refused: {:?}",
        queue.dead_letters()
    );
    let book = api
        .positions(&PositionFilter {
            login: Some(LOGIN),
            ..PositionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(book.items.len(), 2, "one position each: {:?}", book.items);

    agent.kill();
    sim.stop().await;
    center.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn center_outage_is_bridged_by_the_outbox_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let center_port = free_port();
    let url = format!("http://127.0.0.1:{center_port}");
    let port = free_port();
    let state = dir.path().join("state");
    let agent = start_client(port, &url, &state);
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);

    let outbox =
        hedge_agent_runtime::Outbox::open(&state.join(format!("client-{LOGIN}.db"))).unwrap();
    let a = open(&sim, Side::Buy, 30);
    // The first report queued means the agent's start-up sync is over: from here on it sees each
    // trade as it happens. (A sync from the terminal's state, which already holds trades whose
    // messages are still queued, reports the positions it finds before the older messages.)
    eventually(
        "the first report queued",
        Duration::from_secs(10),
        || async { (outbox.pending().ok()? >= 2).then_some(()) },
    )
    .await;
    close(&sim, a, Some(10));
    let b = open(&sim, Side::Sell, 10);
    close(&sim, a, None);
    // Registration + 4 reports wait in the durable outbox.
    eventually("reports queued", Duration::from_secs(10), || async {
        (outbox.pending().ok()? >= 5).then_some(())
    })
    .await;

    let center = start_center(dir.path(), center_port, false).await;
    let api = admin(&center.url());
    let ha = history_of(&api, a, &[Open, PartialClose, Close]).await;
    let hb = history_of(&api, b, &[Open]).await;
    // Sent in the order they happened: a open, a partial, b open, a close.
    let ids = [
        ha.history[0].event_id,
        ha.history[1].event_id,
        hb.history[0].event_id,
        ha.history[2].event_id,
    ];
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
    eventually("outbox drained", Duration::from_secs(10), || async {
        (outbox.pending().ok()? == 0).then_some(())
    })
    .await;
    assert!(outbox.dead_letters().unwrap().is_empty());

    agent.kill();
    sim.stop().await;
    center.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_disconnect_is_resynced_from_the_snapshot() {
    let rig = Rig::start(AccountMarginMode::RetailHedging).await;
    let (api, sim) = (&rig.api, &rig.sim);

    let a = open(sim, Side::Buy, 10);
    let c = open(sim, Side::Sell, 30);
    history_of(api, a, &[Open]).await;
    history_of(api, c, &[Open]).await;
    sim.disconnect();
    eventually("link down", Duration::from_secs(5), || async {
        (!sim.is_connected()).then_some(())
    })
    .await;
    close(sim, a, None);
    let b = open(sim, Side::Buy, 20);
    // Reduced while the agent is away: the snapshot shows it, the history says by which deal.
    close_commented(sim, c, 10, "tp1 while away");
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    history_of(api, a, &[Open, Close]).await;
    history_of(api, b, &[Open]).await;
    let d = history_of(api, c, &[Open, PartialClose]).await;
    assert_eq!(d.position.volume, lots(20));
    assert_eq!(d.position.exit_comment.as_deref(), Some("tp1 while away"));
    settle(api, a, &[Open, Close]).await;
    settle(api, b, &[Open]).await;
    settle(api, c, &[Open, PartialClose]).await;

    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_center_gets_opens_in_the_legacy_format() {
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), 0, true).await;
    let legacy_url = format!("http://{}", center.legacy_addr.unwrap());
    let port = free_port();
    let argv: Vec<String> = [
        "--terminal-port",
        &port.to_string(),
        "--login",
        &LOGIN.to_string(),
        "--prefix",
        "-",
        "--exec-mode",
        "FOK",
        "--legacy-center",
        &legacy_url,
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let args = client_args(&argv);
    let agent = AgentThread::spawn(move || hedge_agent::client::run(args));
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    let a = open(&sim, Side::Buy, 10);
    close(&sim, a, None);
    open(&sim, Side::Buy, 20);

    let http = reqwest::Client::new();
    let book = eventually("legacy book", Duration::from_secs(20), || {
        let http = http.clone();
        let url = format!("{legacy_url}/all_positions/");
        async move {
            let text: String = http.get(url).send().await.ok()?.json().await.ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            let vol = v.get("EURUSD")?.get("volume")?.as_f64()?;
            ((vol - 0.3).abs() < 1e-9).then_some(v)
        }
    })
    .await;
    assert_eq!(book["EURUSD"]["side"], 0);

    agent.kill();
    sim.stop().await;
    center.shutdown().await;
}

/// Opens at market and returns the order ticket: the id of the ledger's position it opens.
fn order(sim: &SimTerminal, side: Side, hundredths: i64) -> PositionId {
    let r = sim.open("EURUSD", side, lots(hundredths), Magic(0), "test");
    assert!(r.is_done(), "open refused: {r:?}");
    PositionId(r.order.get())
}

/// Closes `hundredths` of `position` with an exit deal commented `comment`.
fn close_commented(sim: &SimTerminal, position: PositionId, hundredths: i64, comment: &str) {
    let side = sim
        .positions()
        .into_iter()
        .find(|p| p.identifier == position)
        .map(|p| p.position_type.side())
        .expect("open position");
    let mut r = hedge_protocol::TradeRequest::close(
        "EURUSD",
        position,
        hedge_domain::OrderType::market(side.opposite()),
        lots(hundredths),
    );
    r.comment = comment.into();
    let reply = sim.trade(r);
    assert!(reply.is_done(), "close refused: {reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_closes_carry_the_reducing_deals_comment_on_hedging_and_netting() {
    for mode in [
        AccountMarginMode::RetailHedging,
        AccountMarginMode::RetailNetting,
    ] {
        let rig = Rig::start(mode).await;
        let (api, sim) = (&rig.api, &rig.sim);

        // Netting goes through the ledger: its position is the opening order's.
        let reply = sim.open("EURUSD", Side::Buy, lots(30), Magic(0), "entry");
        assert!(reply.is_done(), "{reply:?}");
        let (terminal_id, id) = if mode == AccountMarginMode::RetailNetting {
            (reply.position, PositionId(reply.order.get()))
        } else {
            (reply.position, reply.position)
        };
        history_of(api, id, &[Open]).await;
        close_commented(sim, terminal_id, 10, "tp1 hit");
        let d = history_of(api, id, &[Open, PartialClose]).await;
        assert_eq!(d.position.volume, lots(20), "{mode:?}");
        assert_eq!(
            d.position.exit_comment.as_deref(),
            Some("tp1 hit"),
            "{mode:?}"
        );
        assert_eq!(d.position.comment, "entry", "{mode:?}");
        // Reduced while the agent is away: found by the resync, with the deal's comment.
        sim.disconnect();
        eventually("link down", Duration::from_secs(5), || async {
            (!sim.is_connected()).then_some(())
        })
        .await;
        close_commented(sim, terminal_id, 5, "tp2 while away");
        assert!(sim.wait_connected(Duration::from_secs(10)).await);
        let d = history_of(api, id, &[Open, PartialClose, PartialClose]).await;
        assert_eq!(d.position.volume, lots(15), "{mode:?}");
        assert_eq!(
            d.position.exit_comment.as_deref(),
            Some("tp2 while away"),
            "{mode:?}"
        );
        close_commented(sim, terminal_id, 15, "tp3 hit");
        let d = history_of(api, id, &[Open, PartialClose, PartialClose, Close]).await;
        assert_eq!(
            d.position.exit_comment.as_deref(),
            Some("tp3 hit"),
            "{mode:?}"
        );

        rig.stop().await;
    }
}

async fn ledger_positions(api: &hedge_center_api::client::CenterClient) -> Vec<(PositionId, Side)> {
    let page = api
        .positions(&hedge_center_api::model::PositionFilter::default())
        .await
        .unwrap();
    let mut v: Vec<(PositionId, Side)> =
        page.items.iter().map(|p| (p.position_id, p.side)).collect();
    v.sort_by_key(|p| p.0);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netting_account_reports_the_ledgers_bidirectional_positions_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), 0, false).await;
    let api = admin(&center.url());
    let port = free_port();
    let state = dir.path().join("state");
    let agent = start_client(port, &center.url(), &state);
    let sim = start_sim(port, AccountMarginMode::RetailNetting);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);

    // Two buys: one net 0.3 position at the terminal, two positions in the ledger.
    let a = order(&sim, Side::Buy, 10);
    let b = order(&sim, Side::Buy, 20);
    assert_ne!(a, b);
    assert_eq!(sim.positions().len(), 1, "the terminal nets them");
    let d = history_of(&api, a, &[Open]).await;
    assert_eq!(d.position.volume, lots(10));
    let d = history_of(&api, b, &[Open]).await;
    assert_eq!(d.position.volume, lots(20));

    // Sell 0.05: first in, first out, the older buy shrinks.
    order(&sim, Side::Sell, 5);
    let d = history_of(&api, a, &[Open, PartialClose]).await;
    assert_eq!(d.position.volume, lots(5));
    settle(&api, b, &[Open]).await;

    // The agent dies; meanwhile a sell 0.5 reverses the account: it closes the rest of the first
    // buy, the whole second buy, and opens a 0.25 sell.
    agent.kill();
    let c = order(&sim, Side::Sell, 50);
    let agent = start_client(port, &center.url(), &state);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    let d = history_of(&api, a, &[Open, PartialClose, Close]).await;
    assert_eq!(d.position.volume, lots(0));
    let d = history_of(&api, b, &[Open, Close]).await;
    assert_eq!(d.position.volume, lots(0));
    let d = history_of(&api, c, &[Open]).await;
    assert_eq!(d.position.side, Side::Sell);
    assert_eq!(d.position.volume, lots(25));

    // Live again: a buy 0.1 partly closes the sell, then a buy 0.15 closes it.
    order(&sim, Side::Buy, 10);
    let d = history_of(&api, c, &[Open, PartialClose]).await;
    assert_eq!(d.position.volume, lots(15));
    order(&sim, Side::Buy, 15);
    history_of(&api, c, &[Open, PartialClose, Close]).await;
    assert!(sim.positions().is_empty());

    // A live reversal: buy 0.1, then sell 0.3 closes that buy and opens a 0.2 sell.
    let e = order(&sim, Side::Buy, 10);
    history_of(&api, e, &[Open]).await;
    let f = order(&sim, Side::Sell, 30);
    let d = history_of(&api, e, &[Open, Close]).await;
    assert_eq!(d.position.volume, lots(0));
    let d = history_of(&api, f, &[Open]).await;
    assert_eq!((d.position.side, d.position.volume), (Side::Sell, lots(20)));
    order(&sim, Side::Buy, 20);
    history_of(&api, f, &[Open, Close]).await;

    settle(&api, a, &[Open, PartialClose, Close]).await;
    settle(&api, b, &[Open, Close]).await;
    settle(&api, c, &[Open, PartialClose, Close]).await;
    settle(&api, e, &[Open, Close]).await;
    settle(&api, f, &[Open, Close]).await;
    // Exactly the ledger's positions, nothing under another id.
    assert_eq!(
        ledger_positions(&api).await,
        vec![
            (a, Side::Buy),
            (b, Side::Buy),
            (c, Side::Sell),
            (e, Side::Buy),
            (f, Side::Sell)
        ]
    );

    agent.kill();
    sim.stop().await;
    center.shutdown().await;
}

/// The positions at the center with their marks, once every one of `ids` has one.
async fn marked(
    api: &hedge_center_api::client::CenterClient,
    ids: &[PositionId],
    price: impl Fn(PositionId) -> Price,
) -> Vec<hedge_center_api::model::Position> {
    eventually(
        "marks of the open positions",
        Duration::from_secs(20),
        || async {
            let page = api
                .positions(&hedge_center_api::model::PositionFilter::default())
                .await
                .ok()?;
            let items: Vec<_> = page
                .items
                .into_iter()
                .filter(|p| ids.contains(&p.position_id))
                .collect();
            (items.len() == ids.len()
                && items
                    .iter()
                    .all(|p| p.price_current == Some(price(p.position_id))))
            .then_some(items)
        },
    )
    .await
}

/// The account block and reconciliation the center holds, once the block matches the terminal's.
async fn account_status(
    api: &hedge_center_api::client::CenterClient,
    sim: &SimTerminal,
) -> hedge_center_api::model::AccountStatus {
    eventually("the account block", Duration::from_secs(20), || async {
        let status = api.account(LOGIN).await.ok()?.status?;
        let block = status.account.as_ref()?;
        let info = sim.account();
        (block.balance == info.balance
            && block.equity == info.equity
            && block.margin == info.margin
            && block.margin_free == info.margin_free
            && block.profit == info.profit
            && block.currency == info.currency)
            .then_some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_carries_the_account_block_the_marks_and_reconciliation_on_hedging() {
    let rig = Rig::start(AccountMarginMode::RetailHedging).await;
    let (api, sim) = (&rig.api, &rig.sim);
    let a = open(sim, Side::Buy, 30);
    let b = open(sim, Side::Sell, 10);
    let (bid, ask) = (
        Price(Decimal::new(110100, 5)),
        Price(Decimal::new(110120, 5)),
    );
    sim.set_quote("EURUSD", bid, ask);

    // A buy is valued at the bid, a sell at the ask, with the terminal's own profit and swap.
    let items = marked(api, &[a, b], |id| if id == a { bid } else { ask }).await;
    for p in &items {
        let terminal = sim
            .positions()
            .into_iter()
            .find(|t| t.identifier == p.position_id)
            .unwrap();
        assert_eq!(p.profit, Some(terminal.profit), "{p:?}");
        assert_eq!(p.swap, Some(terminal.swap), "{p:?}");
        assert_eq!(p.commission, Some(hedge_domain::Money::ZERO), "{p:?}");
    }
    assert!(items
        .iter()
        .any(|p| p.profit != Some(hedge_domain::Money::ZERO)));
    let status = account_status(api, sim).await;
    let recon = status.reconciliation.expect("a reconciliation");
    assert!(recon.ok && recon.checked_ms > 0, "{recon:?}");

    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_carries_the_ledgers_marks_and_reconciliation_on_netting() {
    let rig = Rig::start(AccountMarginMode::RetailNetting).await;
    let (api, sim) = (&rig.api, &rig.sim);
    // One net position at the terminal, two positions in the ledger.
    let a = order(sim, Side::Buy, 10);
    let b = order(sim, Side::Buy, 20);
    let (bid, ask) = (
        Price(Decimal::new(110500, 5)),
        Price(Decimal::new(110520, 5)),
    );
    sim.set_quote("EURUSD", bid, ask);

    let items = marked(api, &[a, b], |_| bid).await;
    let deals = sim.deals();
    for p in &items {
        // Each ledger position is valued from its own entry: (bid - entry) in points of 0.00001,
        // one unit of money per point and lot.
        let entry = deals
            .iter()
            .find(|d| d.order.get() == p.position_id.get())
            .unwrap()
            .price;
        let expected = (bid.0 - entry.0) * Decimal::from(100_000) * p.volume.0;
        assert_eq!(p.profit.map(|m| m.0), Some(expected), "{p:?}");
        assert_eq!(p.commission, Some(hedge_domain::Money::ZERO), "{p:?}");
    }
    // Together they are worth what the terminal says its net position is worth.
    let total: Decimal = items.iter().filter_map(|p| p.profit).map(|m| m.0).sum();
    assert_eq!(total, sim.positions()[0].profit.0);
    let status = account_status(api, sim).await;
    let recon = status.reconciliation.expect("a reconciliation");
    assert!(recon.ok, "{recon:?}");
    assert_eq!(recon.detail, "");

    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_says_when_the_centers_positions_differ_from_the_terminals() {
    let rig = Rig::start(AccountMarginMode::RetailHedging).await;
    let (api, sim) = (&rig.api, &rig.sim);
    open(sim, Side::Buy, 30);
    eventually(
        "the center and the terminal agree",
        Duration::from_secs(30),
        || async {
            let check = api.account(LOGIN).await.ok()?.status?.center_check?;
            check.ok.then_some(())
        },
    )
    .await;
    // A position the terminal never held, stored in the center by hand: the books now differ, and
    // the account's status must say so (the dashboard shows it in red).
    api.report_position(&hedge_center::model::PositionReport::new(
        Open,
        LOGIN,
        PositionId(999_999),
        "EURUSD",
        Side::Sell,
        lots(10),
        1,
    ))
    .await
    .unwrap();
    let check = eventually(
        "the difference reported",
        Duration::from_secs(30),
        || async {
            let check = api.account(LOGIN).await.ok()?.status?.center_check?;
            (!check.ok).then_some(check)
        },
    )
    .await;
    assert!(
        check.detail.contains("EURUSD: terminal 0.3") && check.detail.contains("center 0.2"),
        "{check:?}"
    );
    // The terminal is the truth: the agent closes what it never held, above the stored seq.
    let d = history_of(api, PositionId(999_999), &[Open, Close]).await;
    assert_eq!(d.position.last_seq, 2);
    eventually("the books agree again", Duration::from_secs(30), || async {
        let check = api.account(LOGIN).await.ok()?.status?.center_check?;
        check.ok.then_some(())
    })
    .await;
    rig.stop().await;
}

/// The open positions the center holds for the account, by id.
async fn center_books(
    api: &hedge_center::client::CenterClient,
) -> Option<BTreeMap<PositionId, (Side, Volume)>> {
    let page = api
        .positions(&PositionFilter {
            login: Some(LOGIN),
            ..PositionFilter::default()
        })
        .await
        .ok()?;
    Some(
        page.items
            .iter()
            .filter(|p| p.status != PositionStatus::Closed)
            .map(|p| (p.position_id, (p.side, p.volume)))
            .collect(),
    )
}

/// The account: the center refused the reports of a EURUSD and a GBPUSD position (newer
/// events of both had been stored by someone else), so it held neither as the terminal did. The
/// refusals show in the status, survive a restart of the agent, and the agent brings the center
/// back to the terminal's positions with fresh reports; then the red state goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reports_stay_red_across_a_restart_until_the_agent_resyncs_the_center() {
    let dir = tempfile::tempdir().unwrap();
    let center_port = free_port();
    let center = start_center(dir.path(), center_port, false).await;
    let url = center.url();
    let api = admin(&url);
    let state = dir.path().join("state");
    let port = free_port();
    let agent = start_client(port, &url, &state);
    let sim = start_sim(port, AccountMarginMode::RetailHedging);
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    let a = open(&sim, Side::Buy, 30);
    history_of(&api, a, &[Open]).await;

    // The center is away while EURUSD is reduced and GBPUSD opened; then the terminal logs out.
    center.shutdown().await;
    close(&sim, a, Some(10));
    let r = sim.open("GBPUSD", Side::Buy, lots(10), Magic(0), "test");
    assert!(r.is_done(), "{r:?}");
    let b = r.position;
    let queue = Outbox::open(&state.join(format!("client-{LOGIN}.db"))).unwrap();
    let expected = [format!("{LOGIN}:{a}:2"), format!("{LOGIN}:{b}:1")];
    eventually("both reports queued", Duration::from_secs(20), || async {
        let keys: Vec<String> = queue.peek(100).ok()?.into_iter().map(|i| i.key).collect();
        expected.iter().all(|k| keys.contains(k)).then_some(())
    })
    .await;
    sim.log_out();
    eventually("the terminal away", Duration::from_secs(10), || async {
        (!sim.is_connected()).then_some(())
    })
    .await;

    // Newer events of both positions reach the center's database from elsewhere.
    let elsewhere = start_center(dir.path(), 0, false).await;
    let other = admin(&elsewhere.url());
    other
        .report_position(&PositionReport::new(
            Close,
            LOGIN,
            a,
            "EURUSD",
            Side::Buy,
            Volume::ZERO,
            10,
        ))
        .await
        .unwrap();
    other
        .report_position(&PositionReport::new(
            Open,
            LOGIN,
            b,
            "GBPUSD",
            Side::Sell,
            lots(10),
            5,
        ))
        .await
        .unwrap();
    elsewhere.shutdown().await;
    let center = start_center(dir.path(), center_port, false).await;

    // Both reports are refused as stale: the status counts them, with the reason.
    let status = eventually(
        "the refusals in the status",
        Duration::from_secs(30),
        || async {
            let status = api.account(LOGIN).await.ok()?.status?;
            (status.dead_letters == 2).then_some(status)
        },
    )
    .await;
    let reason = status.dead_letter_reason.unwrap_or_default();
    assert!(reason.contains("stale event"), "{reason}");
    // Without the terminal nothing says what the account holds: nothing is corrected yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        center_books(&api).await.unwrap(),
        BTreeMap::from([(b, (Side::Sell, lots(10)))])
    );

    // A restart keeps the refusals; once the terminal is back the center is re-synced from it.
    agent.kill();
    let agent = start_client(port, &url, &state);
    sim.log_in();
    assert!(sim.wait_connected(Duration::from_secs(10)).await);
    let terminal: BTreeMap<PositionId, (Side, Volume)> = sim
        .positions()
        .iter()
        .map(|p| (p.identifier, (p.position_type.side(), p.volume)))
        .collect();
    assert_eq!(terminal.len(), 2);
    eventually(
        "the center holds the terminal's positions",
        Duration::from_secs(30),
        || async { (center_books(&api).await? == terminal).then_some(()) },
    )
    .await;
    let status = eventually(
        "the refusals cleared once the books agree",
        Duration::from_secs(30),
        || async {
            let status = api.account(LOGIN).await.ok()?.status?;
            (status.dead_letters == 0 && status.center_check.as_ref()?.ok).then_some(status)
        },
    )
    .await;
    assert_eq!(status.dead_letter_reason, None);
    // Each correction went above the stored seq: A reopened at 11, B closed at 6 and reopened at 7.
    let d = history_of(&api, a, &[Open, Close, Open]).await;
    assert_eq!((d.position.last_seq, d.position.volume), (11, lots(20)));
    let d = history_of(&api, b, &[Open, Close, Open]).await;
    assert_eq!((d.position.last_seq, d.position.side), (7, Side::Buy));
    // Later events continue after the corrections.
    close(&sim, a, None);
    let d = history_of(&api, a, &[Open, Close, Open, Close]).await;
    assert_eq!(d.position.last_seq, 12);
    settle(&api, b, &[Open, Close, Open]).await;

    agent.kill();
    sim.stop().await;
    center.shutdown().await;
}

/// The center's realized figures of `id` once its close arrived.
async fn closed_at_center(
    api: &hedge_center_api::client::CenterClient,
    id: PositionId,
) -> hedge_center_api::model::Position {
    eventually(
        "the close at the center",
        Duration::from_secs(20),
        || async {
            let d = api.position(LOGIN, id).await.ok()?;
            (d.position.status == PositionStatus::Closed).then_some(d.position)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_reach_the_center_with_their_deals_price_and_profit() {
    for mode in [
        AccountMarginMode::RetailHedging,
        AccountMarginMode::RetailNetting,
    ] {
        let rig = Rig::start(mode).await;
        let (api, sim) = (&rig.api, &rig.sim);
        let quote = |bid: i64| {
            sim.set_quote(
                "EURUSD",
                Price(Decimal::new(bid, 5)),
                Price(Decimal::new(bid + 10, 5)),
            )
        };
        quote(110_000);
        let reply = sim.open("EURUSD", Side::Buy, lots(30), Magic(0), "entry");
        assert!(reply.is_done(), "{reply:?}");
        let (terminal_id, id) = if mode == AccountMarginMode::RetailNetting {
            (reply.position, PositionId(reply.order.get()))
        } else {
            (reply.position, reply.position)
        };
        history_of(api, id, &[Open]).await;
        quote(110_512);
        close_commented(sim, terminal_id, 10, "part");
        history_of(api, id, &[Open, PartialClose]).await;
        if mode == AccountMarginMode::RetailHedging {
            // Reduced while the agent is away: the resync finds the deal in the history.
            sim.disconnect();
            eventually("link down", Duration::from_secs(5), || async {
                (!sim.is_connected()).then_some(())
            })
            .await;
            quote(110_431);
            close_commented(sim, terminal_id, 5, "away");
            assert!(sim.wait_connected(Duration::from_secs(10)).await);
            history_of(api, id, &[Open, PartialClose, PartialClose]).await;
        }
        quote(109_977);
        let rest = sim
            .positions()
            .into_iter()
            .find(|p| p.identifier == terminal_id)
            .map(|p| p.volume)
            .expect("still open");
        close_commented(
            sim,
            terminal_id,
            (rest.0 * Decimal::from(100)).try_into().unwrap(),
            "rest",
        );
        let p = closed_at_center(api, id).await;

        // What the terminal's exit deals say, summed exactly and averaged by volume.
        let exits: Vec<_> = sim
            .deals()
            .into_iter()
            .filter(|d| d.position_id == terminal_id && d.entry == hedge_domain::DealEntry::Out)
            .collect();
        assert_eq!(
            exits.len(),
            if mode == AccountMarginMode::RetailHedging {
                3
            } else {
                2
            }
        );
        assert!(exits.iter().all(|d| !d.profit.is_zero()), "{exits:?}");
        let profit: hedge_domain::Money = exits.iter().map(|d| d.profit).sum();
        let volume: Decimal = exits.iter().map(|d| d.volume.0).sum();
        let notional: Decimal = exits.iter().map(|d| d.price.0 * d.volume.0).sum();
        let average = Price(
            (notional / volume)
                .round_dp_with_strategy(5, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
                .normalize(),
        );
        assert_eq!(p.realized_profit, Some(profit), "{mode:?}");
        assert_eq!(p.exit_price, Some(average), "{mode:?}");
        assert_eq!(
            p.realized_commission,
            Some(exits.iter().map(|d| d.commission).sum()),
            "{mode:?}"
        );
        assert_eq!(p.realized_swap, Some(hedge_domain::Money::ZERO), "{mode:?}");
        assert_eq!(p.realized_fee, Some(hedge_domain::Money::ZERO), "{mode:?}");

        rig.stop().await;
    }
}
