//! End to end over real sockets: an in-process center, a simulated hedge terminal connecting to the
//! hedger's port, client exposure reported to the center, and the hedger reacting.

use hedge_center_api::client::new_action_key;
use hedge_center_api::model::HedgeStatus;
use hedge_domain::OrderFilling;

include!("support/world.rs");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_mode_opens_the_whole_plan_when_an_own_position_closes() {
    let mut w = World::start(Setup::default()).await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(30))
        .await;
    w.client_symbol(2, "XAUUSD", PositionEventKind::Open, Side::Sell, lots(8))
        .await;
    assert!(w.plan_volume("EURUSD", lots(30)).await);
    assert!(w.plan_volume("XAUUSD", lots(8)).await);
    assert_eq!(w.hedge_positions(), 0, "nothing before the trigger");
    w.fire_trigger();
    assert!(
        wait_for(Duration::from_secs(10), || w.hedge_positions() == 2).await,
        "both hedges opened"
    );
    assert_eq!(w.hedge_net("EURUSD.h"), -lots(30));
    assert_eq!(w.hedge_net("XAUUSD.h"), lots(8));
    // Recorded in the center with the plan item ids, and the plan is empty afterwards.
    let hedges = recorded_hedges(&w, 2).await;
    assert!(hedges.iter().all(|h| h.status == HedgeStatus::Open));
    let plan = w.plan.clone();
    assert!(
        wait_for(Duration::from_secs(10), || plan
            .get()
            .is_some_and(|p| p.items.is_empty()))
        .await
    );
    // The orders carry their plan item id in magic and comment.
    for p in w.sim.positions() {
        let item = hedge_hedger::tag::item_of(p.magic, &p.comment).expect("tagged");
        assert!(hedges.iter().any(|h| h.plan_item_id == item));
    }
    // A second trigger with nothing left to hedge sends nothing.
    w.fire_trigger();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.hedge_positions(), 2);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_with_the_center_unreachable_never_hedges_twice_and_the_records_drain() {
    // No outbox sender: the center never hears of the hedges, as if it were down.
    let mut w = World::start(Setup {
        deliver: false,
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(20))
        .await;
    assert!(w.plan_volume("EURUSD", lots(20)).await);
    w.fire_trigger();
    assert!(wait_for(Duration::from_secs(10), || w.hedge_positions() == 1).await);
    assert!(
        w.outbox.pending().unwrap() >= 1,
        "the record waits in the outbox"
    );
    // Crash, start a fresh hedger on the same account and outbox; the center still shows the
    // same plan (it never got the record).
    w.crash_hedger().await;
    let mut rx = w.events.subscribe();
    w.spawn_hedger(&Setup::default()).await;
    assert!(w.plan_volume("EURUSD", lots(20)).await, "plan unchanged");
    w.fire_trigger();
    // The new hedger found the earlier hedge on the account and reacted to the trigger.
    let (mut fills, mut triggered) = (None, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !(fills.is_some() && triggered) {
        match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(Ok(HedgerEvent::Ready { fills: n, .. })) => fills = Some(n),
            Ok(Ok(HedgerEvent::Trigger { .. })) => triggered = true,
            _ => {}
        }
    }
    assert_eq!(fills, Some(1));
    assert!(triggered);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.hedge_positions(), 1, "no second hedge after the restart");
    assert_eq!(w.hedge_net("EURUSD.h"), -lots(20));
    // The center comes back: the outbox drains, the hedge is recorded once, the plan empties.
    w.spawn_sender();
    let hedges = recorded_hedges(&w, 1).await;
    assert_eq!(hedges[0].volume, lots(20));
    let plan = w.plan.clone();
    assert!(
        wait_for(Duration::from_secs(10), || plan
            .get()
            .is_some_and(|p| p.items.is_empty()))
        .await
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ioc_only_symbol_is_traded_with_ioc_even_when_fok_is_asked() {
    let mut w = World::start(Setup {
        ioc_only: true,
        exec_mode: ExecMode::Fixed(OrderFilling::Fok),
        ..Setup::default()
    })
    .await;
    let mut rx = w.events.subscribe();
    w.client(1, PositionEventKind::Open, Side::Sell, lots(10))
        .await;
    assert!(w.plan_volume("EURUSD", lots(10)).await);
    w.fire_trigger();
    assert!(wait_for(Duration::from_secs(10), || w.hedge_positions() == 1).await);
    assert_eq!(w.hedge_net("EURUSD.h"), lots(10));
    // The order's event follows its reply, which may come after the position shows.
    let order = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(HedgerEvent::Order(o)) = rx.recv().await {
                return o;
            }
        }
    })
    .await
    .expect("an order event");
    assert_eq!(order.retcodes, vec![10009], "no 10030");
    assert!(order.filling.contains("Ioc"), "{}", order.filling);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requotes_are_retried_and_rejects_open_the_breaker() {
    // Every order is requoted: retried up to the limit, then given up and reported.
    let mut w = World::start(Setup {
        breaker_threshold: 1,
        ..Setup::default()
    })
    .await;
    let mut rx = w.events.subscribe();
    w.client(1, PositionEventKind::Open, Side::Buy, lots(10))
        .await;
    assert!(w.plan_volume("EURUSD", lots(10)).await);
    // The own position closes while the link is down; the hedger finds it gone on reconnect.
    let own = w.sim.open("GBPUSD.h", Side::Buy, lots(1), SIGNAL, "signal");
    assert!(own.retcode.is_done());
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.sim.with_account(|a| {
        let close = hedge_protocol::TradeRequest::close(
            "GBPUSD.h",
            own.position,
            hedge_domain::OrderType::Sell,
            lots(1),
        );
        let done = a.send(&close, hedge_domain::DealReason::Client);
        assert!(done.reply.retcode.is_done());
        a.set_faults(Faults {
            requote_rate: 1.0,
            ..Faults::default()
        });
    });
    w.sim.disconnect();
    let mut order = None;
    let mut breaker = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && (order.is_none() || breaker.is_none()) {
        match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(Ok(HedgerEvent::Order(o))) => order = Some(o),
            Ok(Ok(HedgerEvent::Breaker { symbol, reason })) => breaker = Some((symbol, reason)),
            _ => {}
        }
    }
    let order = order.expect("an order event");
    assert_eq!(order.attempts, 3, "bounded retries: {:?}", order.retcodes);
    assert!(order.retcodes.iter().all(|r| *r == 10004 || *r == 10021));
    assert_eq!(order.outcome, "retries exhausted");
    let (symbol, reason) = breaker.expect("the breaker opened");
    assert_eq!(symbol, "EURUSD");
    assert!(reason.contains("consecutive"), "{reason}");
    assert_eq!(w.hedge_positions(), 0);
    // The failure is recorded in the center.
    w.hedges_until("no failed hedge with its retcode", |hedges| {
        hedges
            .iter()
            .any(|h| h.status == HedgeStatus::Failed && h.retcode.is_some())
    })
    .await;
    // Halted: the next trigger sends nothing even though the server would now accept.
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.sim.with_account(|a| a.set_faults(Faults::default()));
    w.fire_trigger();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.hedge_positions(), 0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_mode_follows_opens_partial_closes_and_closes_by_position() {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(30))
        .await;
    assert!(
        w.hedge_net_reaches("EURUSD.h", -lots(30)).await,
        "hedged on open"
    );
    w.client(1, PositionEventKind::PartialClose, Side::Buy, lots(10))
        .await;
    assert!(
        w.hedge_net_reaches("EURUSD.h", -lots(10)).await,
        "reduced with the client: {:?}",
        w.sim.positions()
    );
    // Reduced by closing part of the existing hedge position, never by opening a buy.
    assert!(w
        .sim
        .positions()
        .iter()
        .all(|p| p.position_type.side() == Side::Sell));
    w.client(1, PositionEventKind::Close, Side::Buy, Volume::ZERO)
        .await;
    assert!(
        wait_for(Duration::from_secs(10), || w.hedge_positions() == 0).await,
        "hedge closed with the client: {:?}",
        w.sim.positions()
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hedge_closed_right_after_its_open_is_closed_in_the_center_every_time() {
    // The reply of a reducing order comes before its deal's transaction: a holding recorded in
    // between still showed the hedge, and the center kept it open. The periodic comparison is
    // switched off so that only the recording itself is tested.
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        reconcile_interval: Duration::from_secs(3600),
        ..Setup::default()
    })
    .await;
    for round in 0..5u64 {
        let position = 10 + round;
        w.client(position, PositionEventKind::Open, Side::Buy, lots(30))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        w.client(position, PositionEventKind::Close, Side::Buy, Volume::ZERO)
            .await;
        assert!(
            wait_for(Duration::from_secs(10), || w.hedge_positions() == 0).await,
            "round {round}: the account still holds {:?}",
            w.sim.positions()
        );
        w.hedges_until(
            &format!("round {round}: a hedge stays open in the center"),
            |hedges| hedges.iter().all(|h| h.open_volume.is_zero()),
        )
        .await;
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_refusing_expert_orders_gets_none_and_the_status_says_why() {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        status_interval: Duration::from_millis(200),
        trade_expert: false,
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(30))
        .await;
    assert!(w.plan_volume("EURUSD", lots(30)).await);
    let account = w
        .account_until("no reason in the status", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .is_some_and(|m| m.contains("refuses orders from Expert Advisors"))
        })
        .await;
    assert!(account.status.is_some());
    assert_eq!(w.sim.commands_executed(), 0, "no order was sent");
    assert!(w.sim.positions().is_empty());
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hedge_closed_outside_the_hedger_is_closed_in_the_center_as_a_correction() {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        reconcile_interval: Duration::from_millis(200),
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(30))
        .await;
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(30)).await);
    assert!(w.records_sent().await);
    // Closed on the account by someone else (a stop-loss, the broker, a trader's hand): the plan
    // then hedges again, and the center must not keep the first hedge open.
    let hedge = w.sim.positions()[0].identifier;
    w.sim.close(hedge, None);
    let hedges = w
        .hedges_until("the closed hedge stays open in the center", |hedges| {
            hedges
                .iter()
                .any(|h| h.position_id == hedge && h.open_volume.is_zero())
        })
        .await;
    assert!(hedges.iter().any(|h| h.position_id == hedge));
    let events = w
        .admin
        .events(&hedge_center_api::model::PageQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.contains(": correction: ")),
        "the correction is an event that says so"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_mode_never_hedges_an_open_again_on_a_plan_older_than_its_record() {
    // The records wait in the outbox: the center's plan keeps asking for the first open.
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        deliver: false,
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(20))
        .await;
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(20)).await);
    // A second open: the plan now says 0.5 unhedged, 0.2 of which is the hedge not yet recorded.
    w.client(2, PositionEventKind::Open, Side::Buy, lots(30))
        .await;
    assert!(w.plan_volume("EURUSD", lots(50)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        w.hedge_net("EURUSD.h"),
        -lots(20),
        "nothing sent on a plan that does not know the first hedge"
    );
    // Once the record is stored, a fresh plan asks for the second open only.
    w.spawn_sender();
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(50)).await);
    let hedges = recorded_hedges(&w, 2).await;
    assert_eq!(
        hedges.iter().map(|h| h.volume).collect::<Vec<_>>(),
        vec![lots(20), lots(30)]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.hedge_net("EURUSD.h"), -lots(50), "no over-hedge");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_carries_the_marks_of_the_hedges_for_their_profit() {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        status_interval: Duration::from_millis(200),
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(30))
        .await;
    assert!(
        w.hedge_net_reaches("EURUSD.h", -lots(30)).await,
        "hedged on open"
    );
    assert!(w.records_sent().await);
    // The center puts the hedge account's mark of the hedge's position on the open hedge.
    let hedges = w
        .hedges_until("no mark on the hedges", |hedges| {
            hedges.iter().any(|h| h.mark.is_some())
        })
        .await;
    let hedge = hedges.into_iter().find(|h| h.mark.is_some()).unwrap();
    let mark = hedge.mark.clone().unwrap();
    let position = w
        .sim
        .positions()
        .into_iter()
        .find(|p| p.identifier == hedge.position_id)
        .expect("the hedge's position on the account");
    assert_eq!(mark.position_id, hedge.position_id);
    assert!(mark.price_current.0 > Decimal::ZERO);
    // The terminal's own figures, not a recomputation: the profit moves with the price, the mark
    // is one heartbeat behind at most.
    assert_eq!(mark.swap, position.swap);
    if mark.price_current == position.price_current {
        assert_eq!(mark.profit, position.profit);
    }
    let account = w.admin.account(HEDGE).await.unwrap();
    let money = account
        .status
        .and_then(|s| s.account)
        .expect("the hedge account's money in the status");
    assert!(money.balance.0 > Decimal::ZERO);
    // Closed with the client: the closed hedge carries no mark.
    w.client(1, PositionEventKind::Close, Side::Buy, Volume::ZERO)
        .await;
    assert!(wait_for(Duration::from_secs(10), || w.hedge_positions() == 0).await);
    let closed = w
        .hedges_until("hedge not closed", |hedges| {
            hedges
                .iter()
                .any(|h| h.id == hedge.id && h.status == HedgeStatus::Closed)
        })
        .await
        .into_iter()
        .find(|h| h.id == hedge.id)
        .unwrap();
    assert_eq!(closed.mark, None);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_mode_on_a_netting_hedge_account_follows_a_reversal() {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        netting: true,
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(20))
        .await;
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(20)).await);
    // The client reverses: now short 0.1.
    w.client(1, PositionEventKind::Reverse, Side::Sell, lots(10))
        .await;
    assert!(
        w.hedge_net_reaches("EURUSD.h", lots(10)).await,
        "hedge reversed with the client: {:?}",
        w.sim.positions()
    );
    w.shutdown().await;
}

/// Waits until the center holds `n` hedges, none of them waiting for a reduction record. The
/// outbox being empty is not enough on its own: the hedger queues a fill's record only after it
/// has read the reply, so right after the orders there may be nothing queued yet.
async fn recorded_hedges(w: &World, n: usize) -> Vec<hedge_center_api::model::Hedge> {
    assert!(w.records_sent().await, "the records reached the center");
    w.hedges_until(&format!("not {n} hedges"), |hedges| hedges.len() == n)
        .await
}

/// Waits until the center's open hedge volume is `total` (the reductions recorded).
async fn center_open(w: &World, total: Volume) -> Vec<hedge_center_api::model::Hedge> {
    w.hedges_until(&format!("open hedge volume is not {total}"), |hedges| {
        hedges.iter().map(|h| h.open_volume).sum::<Volume>() == total
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_close_runs_once_across_restarts_and_the_hedge_stays_closed() {
    use hedge_center_api::model::{ActionRequest, CommandStatus};
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(30))
        .await;
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(30)).await);
    let hedge = recorded_hedges(&w, 1).await.remove(0);

    // The hedger is down when the operator closes the hedge; its next start carries it out, but
    // the center does not hear of the result (no outbox sender).
    w.crash_hedger().await;
    let ack = w
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::close_hedge(hedge.id, "operator close test"),
        )
        .await
        .unwrap()
        .ack;
    let command = ack.command.expect("a command");
    assert_eq!(command.status, CommandStatus::Pending);
    w.spawn_hedger(&Setup {
        mode: Mode::Mirror,
        ..Setup::default()
    })
    .await;
    assert!(
        wait_for(Duration::from_secs(10), || w.hedge_positions() == 0).await,
        "closed by the command: {:?}",
        w.sim.positions()
    );
    assert_eq!(w.command_deals(command.id), 1);
    assert!(
        w.outbox.pending().unwrap() >= 1,
        "the result waits in the outbox"
    );

    // Restarted with the result still queued: the pending command is not executed again.
    w.crash_hedger().await;
    w.spawn_hedger(&Setup {
        mode: Mode::Mirror,
        ..Setup::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.command_deals(command.id), 1);

    // Restarted with the local state lost: the account's history shows the command ran, so it is
    // only acknowledged, and the reduction recorded.
    w.crash_hedger().await;
    w.outbox = Outbox::open(&w._dir.path().join("fresh.db")).unwrap();
    w.spawn_hedger(&Setup {
        mode: Mode::Mirror,
        ..Setup::default()
    })
    .await;
    w.spawn_sender();
    let done = w
        .command_reaches(command.id, CommandStatus::Done)
        .await
        .expect("the command is answered");
    assert!(done.result_message.is_some());
    assert_eq!(w.command_deals(command.id), 1, "never executed twice");
    let closed = recorded_hedges(&w, 1).await.remove(0);
    assert_eq!(closed.status, HedgeStatus::Closed);
    // Close-only on the symbol: mirror mode does not open the hedge again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.hedge_positions(), 0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_retry_resets_the_breaker_and_hedges_the_failed_item() {
    use hedge_center_api::model::{ActionRequest, CommandStatus};
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        breaker_threshold: 1,
        faults: Faults {
            requote_rate: 1.0,
            ..Faults::default()
        },
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(10))
        .await;
    let failed = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hedges = w.hedges().await;
            if let Some(h) = hedges.into_iter().find(|h| h.status == HedgeStatus::Failed) {
                break h;
            }
            assert!(Instant::now() < deadline, "the failure is recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(w.hedge_positions(), 0);
    w.sim.with_account(|a| a.set_faults(Faults::default()));
    // Halted: nothing is sent until the operator asks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.hedge_positions(), 0);
    let ack = w
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::retry_hedge(failed.id, "broker fixed"),
        )
        .await
        .unwrap()
        .ack;
    let command = ack.command.expect("a command");
    let hedged = wait_for(Duration::from_secs(10), || {
        w.hedge_net("EURUSD.h") == -lots(10)
    })
    .await;
    if !hedged {
        eprintln!("COMMAND {:?}", w.admin.command(command.id).await);
        eprintln!("PLAN {:?}", w.plan.get());
        eprintln!("DEALS {:?}", w.sim.deals());
    }
    assert!(hedged, "hedged after the retry");
    let done = w
        .command_reaches(command.id, CommandStatus::Done)
        .await
        .expect("the retry is answered");
    assert!(done.result_message.unwrap_or_default().contains("filled"));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_netting_hedge_account_keeps_each_hedge_as_its_own_ledger_position() {
    use hedge_center_api::model::{ActionRequest, CommandStatus};
    use hedge_hedger::netting_hedges::HedgeLedger;
    let setup = || Setup {
        mode: Mode::Mirror,
        netting: true,
        ..Setup::default()
    };
    let mut w = World::start(setup()).await;
    // What the account's history replays to: (ledger position id, side, volume) per open hedge.
    let ledger = |w: &World| {
        let (orders, deals) = w.sim.with_account(|a| a.history(0, i64::MAX));
        let l =
            HedgeLedger::replay(HEDGE, AccountMarginMode::RetailNetting, &orders, &deals).unwrap();
        assert_eq!(
            l.hedge_net("EURUSD.h"),
            w.hedge_net("EURUSD.h"),
            "ledger = terminal net"
        );
        l.hedges()
            .into_iter()
            .map(|p| (p.id.0, p.side, p.volume))
            .collect::<Vec<_>>()
    };
    // The center's open hedges match the ledger's, hedge by hedge.
    let matches_center = |hedges: &[hedge_center_api::model::Hedge],
                          held: &[(u64, Side, Volume)]| {
        let open: Vec<(u64, Side, Volume)> = hedges
            .iter()
            .filter(|h| h.open_volume.is_positive())
            .map(|h| (h.position_id.0, h.side, h.open_volume))
            .collect();
        assert_eq!(open, held);
    };

    // Two clients open: two hedges, one net position on the terminal.
    w.client(1, PositionEventKind::Open, Side::Buy, lots(20))
        .await;
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(20)).await);
    w.client(2, PositionEventKind::Open, Side::Buy, lots(30))
        .await;
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(50)).await);
    assert_eq!(w.sim.positions().len(), 1, "netting: one position");
    let hedges = recorded_hedges(&w, 2).await;
    let (a, b) = (hedges[0].position_id.0, hedges[1].position_id.0);
    assert_eq!(
        ledger(&w),
        vec![(a, Side::Sell, lots(20)), (b, Side::Sell, lots(30))]
    );
    matches_center(&hedges, &ledger(&w));

    // A partial close on the client side: a reduction linked to the oldest hedge's opening order.
    w.client(2, PositionEventKind::PartialClose, Side::Buy, lots(20))
        .await;
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(40)).await);
    let linked: Vec<_> = w
        .sim
        .deals()
        .into_iter()
        .filter(|d| hedge_ledger::codec::is_link(d.magic))
        .collect();
    assert_eq!(linked.len(), 1);
    assert_eq!(
        hedge_ledger::decode(linked[0].magic).map(|l| l.ticket.0),
        Some(a)
    );
    assert!(
        hedge_hedger::tag::item_from_comment(&linked[0].comment).is_some(),
        "the reduction names its plan item in the comment: {:?}",
        linked[0].comment
    );
    assert_eq!(
        ledger(&w),
        vec![(a, Side::Sell, lots(10)), (b, Side::Sell, lots(30))]
    );
    let hedges = center_open(&w, lots(40)).await;
    matches_center(&hedges, &ledger(&w));

    // The hedger is down while client 1 closes; the restarted hedger replays the account through
    // the ledger, finds both hedges and reduces once.
    w.crash_hedger().await;
    w.client(1, PositionEventKind::Close, Side::Buy, Volume::ZERO)
        .await;
    w.spawn_hedger(&setup()).await;
    w.spawn_sender();
    assert!(w.hedge_net_reaches("EURUSD.h", -lots(20)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.hedge_net("EURUSD.h"), -lots(20), "no double reduction");
    assert_eq!(ledger(&w), vec![(b, Side::Sell, lots(20))]);
    let hedges = center_open(&w, lots(20)).await;
    assert_eq!(hedges[0].status, HedgeStatus::Closed);
    matches_center(&hedges, &ledger(&w));

    // The operator closes the remaining hedge: a close linked to its opening order.
    let ack = w
        .admin
        .action(
            &new_action_key(),
            &ActionRequest::close_hedge(hedges[1].id, "operator close"),
        )
        .await
        .unwrap()
        .ack;
    let command = ack.command.expect("a command");
    w.command_reaches(command.id, CommandStatus::Done)
        .await
        .expect("the close is answered");
    assert_eq!(w.hedge_net("EURUSD.h"), Volume::ZERO);
    assert!(ledger(&w).is_empty());
    let closing = w
        .sim
        .deals()
        .into_iter()
        .find(|d| d.comment == format!("cmd:{}", command.id))
        .expect("the command's deal");
    assert_eq!(
        hedge_ledger::decode(closing.magic).map(|l| l.ticket.0),
        Some(b)
    );
    let hedges = center_open(&w, Volume::ZERO).await;
    assert!(hedges.iter().all(|h| h.status == HedgeStatus::Closed));
    // Client 2 still holds 0.2, but the symbol is close-only now: nothing is opened again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.hedge_net("EURUSD.h"), Volume::ZERO);
    w.shutdown().await;
}
