//! Pre-trade checks end to end: an in-process center, a simulated hedge terminal with little margin
//! or a symbol it refuses, the hedger checking each opening order with `order_check` and its limits.
//! A hedge account at its limit stops there and the center's status of it says why; the hedge goes
//! on by itself once a deposit or the clients' reductions clear the condition; a refused check is
//! never turned into orders.

// The shared world has helpers these tests do not use.
#![allow(dead_code)]

use hedge_center_api::model::PretradeRefusal;
use hedge_hedger::pretrade::{PretradeLimits, SymbolLimits};

include!("support/world.rs");

/// The hedge account's pre-trade refusals as the center holds them.
fn refusals(account: &hedge_center::model::Account) -> &[PretradeRefusal] {
    account
        .status
        .as_ref()
        .map(|s| s.pretrade_refusals.as_slice())
        .unwrap_or(&[])
}

fn refused_because(account: &hedge_center::model::Account, symbol: &str, words: &str) -> bool {
    refusals(account)
        .iter()
        .any(|r| r.symbol == symbol && r.reason.contains(words))
}

/// The plan's residual for what the hedge account's pre-trade checks refused of `symbol`.
fn pretrade_residual<'a>(
    plan: &'a hedge_center_api::model::HedgePlan,
    symbol: &str,
) -> Option<&'a hedge_center_api::model::PlanResidual> {
    plan.residuals.iter().find(|r| {
        r.symbol == symbol && r.reason == hedge_center_api::model::ResidualReason::PretradeRefused
    })
}

/// A hedge account of 5,000 USD that keeps its margin level at 200 % or more.
fn margin_limited(mode: Mode) -> Setup {
    Setup {
        mode,
        status_interval: Duration::from_millis(200),
        reconcile_interval: Duration::from_millis(200),
        hedge_balance: Decimal::from(5_000),
        pretrade: PretradeLimits {
            min_margin_level: Some(Decimal::from(200)),
            ..PretradeLimits::default()
        },
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_margin_limited_hedge_account_stops_at_its_limit_says_so_and_resumes_after_a_deposit() {
    let mut w = World::start(margin_limited(Mode::Mirror)).await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(500))
        .await;
    // 5,000 of equity at 200 % carries 2,500 of margin: 2.27 lots of EURUSD.h at 1,100 a lot.
    assert!(
        w.hedge_net_reaches("EURUSD.h", -lots(227)).await,
        "hedged up to the limit: {:?}",
        w.sim.positions()
    );
    // The open cost the spread, so the level is now just under 200 %: the rest is refused, and
    // the center's status of the hedge account says so.
    let account = w
        .account_until("the refusal in the status", |a| {
            refused_because(a, "EURUSD", "refused by pre-trade check: margin level 199.")
        })
        .await;
    let refusal = &refusals(&account)[0];
    assert!(
        refusal.reason.ends_with("% below minimum 200%"),
        "{}",
        refusal.reason
    );
    assert_eq!(refusal.volume, lots(273));
    assert_eq!(refusal.side, Side::Sell);
    assert_eq!(refusal.account_symbol, "EURUSD.h");
    // Checked again at every periodic reaction, never sent: one order in all, no breaker.
    let sent = w.sim.commands_executed();
    assert_eq!(sent, 1);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(w.sim.commands_executed(), sent, "no order while refused");
    assert_eq!(w.hedge_net("EURUSD.h"), -lots(227));
    let account = w.admin.account(HEDGE).await.unwrap();
    assert!(account.status.unwrap().breakers.is_empty());
    // The center's plan says the same: the order stays (so it is checked again), and the part
    // refused is a residual with the hedge account's reason.
    let plan = w.admin.plan(HEDGE).await.unwrap();
    let item = plan.items.iter().find(|i| i.symbol == "EURUSD").unwrap();
    assert_eq!((item.side, item.volume), (Side::Sell, lots(273)));
    let residual = pretrade_residual(&plan, "EURUSD").expect("the refusal in the plan");
    assert_eq!(residual.unhedged, lots(273));
    assert!(
        residual
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("refused by pre-trade check: margin level 199.")),
        "{residual:?}"
    );

    // A deposit brings the level back: the rest is hedged without anyone asking, and the
    // refusal goes.
    w.sim
        .balance_operation(hedge_domain::Money(Decimal::from(10_000)), "deposit");
    assert!(
        w.hedge_net_reaches("EURUSD.h", -lots(500)).await,
        "hedged in full after the deposit: {:?}",
        w.sim.positions()
    );
    w.account_until("the refusal cleared", |a| {
        a.status.is_some() && refusals(a).is_empty()
    })
    .await;
    // and so does the plan's residual, with the order it was about
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let plan = w.admin.plan(HEDGE).await.unwrap();
        if plan.items.is_empty() && pretrade_residual(&plan, "EURUSD").is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{plan:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn below_the_minimum_margin_level_a_reduction_still_goes_and_the_refusal_clears() {
    let mut w = World::start(margin_limited(Mode::Mirror)).await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(500))
        .await;
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(227)).await);
    w.account_until("the refusal in the status", |a| {
        refused_because(a, "EURUSD", "below minimum 200%")
    })
    .await;
    // The clients reduce below what is hedged: the hedge is reduced although the level is under
    // the minimum (reductions are never checked), and nothing is refused any more.
    w.client(1, PositionEventKind::PartialClose, Side::Buy, lots(200))
        .await;
    assert!(
        w.hedge_net_reaches("EURUSD.h", -lots(200)).await,
        "reduced: {:?}",
        w.sim.positions()
    );
    w.account_until("the refusal cleared", |a| {
        a.status.is_some() && refusals(a).is_empty()
    })
    .await;
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_check_refusal_is_never_turned_into_orders() {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        status_interval: Duration::from_millis(100),
        reconcile_interval: Duration::from_millis(100),
        symbol_setup: Some(|symbols| {
            for s in symbols.iter_mut() {
                if s.spec.name == "XAUUSD.h" {
                    s.spec.trade_mode = hedge_domain::SymbolTradeMode::CloseOnly;
                }
            }
        }),
        ..Setup::default()
    })
    .await;
    w.client_symbol(1, "XAUUSD", PositionEventKind::Open, Side::Sell, lots(100))
        .await;
    assert!(w.plan_volume("XAUUSD", lots(100)).await);
    let account = w
        .account_until("the terminal's refusal in the status", |a| {
            refused_because(a, "XAUUSD", "the terminal's check answered 10044")
        })
        .await;
    assert_eq!(refusals(&account)[0].volume, lots(100));
    // The periodic reaction checks it every 100 ms; an order would come back 10044 and, after
    // three, open the breaker. None is sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.sim.commands_executed(), 0, "no order sent");
    assert!(w.sim.positions().is_empty());
    let status = w.admin.account(HEDGE).await.unwrap().status.unwrap();
    assert!(status.breakers.is_empty(), "{status:?}");
    assert_eq!(status.pretrade_refusals.len(), 1);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_trigger_mode_a_refused_hedge_goes_out_once_margin_returns_without_a_new_trigger() {
    let mut w = World::start(Setup {
        mode: Mode::Trigger,
        status_interval: Duration::from_millis(200),
        reconcile_interval: Duration::from_millis(100),
        hedge_balance: Decimal::from(1_300),
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(200))
        .await;
    assert!(w.plan_volume("EURUSD", lots(200)).await);
    w.fire_trigger();
    // About 1,285 free after the trigger's own round trip: 1.16 lots at 1,100 a lot.
    assert!(
        wait_for(Duration::from_secs(10), || w
            .hedge_net("EURUSD.h")
            .is_negative())
        .await,
        "hedged what the margin allows"
    );
    w.account_until("the refusal in the status", |a| {
        refused_because(a, "EURUSD", "not enough free margin")
    })
    .await;
    let part = w.hedge_net("EURUSD.h");
    assert!(part > -lots(200), "{part}");
    let sent = w.sim.commands_executed();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(w.sim.commands_executed(), sent, "no order while refused");

    w.sim
        .balance_operation(hedge_domain::Money(Decimal::from(5_000)), "deposit");
    assert!(
        w.hedge_net_reaches("EURUSD.h", -lots(200)).await,
        "the rest hedged after the deposit: {:?}",
        w.sim.positions()
    );
    w.account_until("the refusal cleared", |a| {
        a.status.is_some() && refusals(a).is_empty()
    })
    .await;
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exposure_limit_caps_the_hedge_and_clears_when_the_clients_reduce() {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        status_interval: Duration::from_millis(200),
        reconcile_interval: Duration::from_millis(200),
        pretrade: PretradeLimits {
            max_exposure: SymbolLimits::parse(["EURUSD=1"]).unwrap(),
            max_order: Some(lots(60)),
            ..PretradeLimits::default()
        },
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(300))
        .await;
    // 0.6 a order, 1 lot in all.
    assert!(
        w.hedge_net_reaches("EURUSD.h", -lots(100)).await,
        "{:?}",
        w.sim.positions()
    );
    let account = w
        .account_until("the exposure refusal", |a| {
            refused_because(
                a,
                "EURUSD",
                "refused by pre-trade check: exposure limit of 1 lots on EURUSD.h (net position: sell 1)",
            )
        })
        .await;
    assert_eq!(refusals(&account)[0].volume, lots(200));
    assert!(w
        .sim
        .deals()
        .iter()
        .filter(|d| d.symbol == "EURUSD.h")
        .all(|d| d.volume <= lots(60)));
    w.client(1, PositionEventKind::PartialClose, Side::Buy, lots(100))
        .await;
    w.account_until("the refusal cleared", |a| {
        a.status.is_some() && refusals(a).is_empty()
    })
    .await;
    assert_eq!(w.hedge_net("EURUSD.h"), -lots(100));
    w.shutdown().await;
}
