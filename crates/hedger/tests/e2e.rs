//! End to end over real sockets: an in-process center, a simulated hedge terminal connecting to the
//! hedger's port, client exposure reported to the center, and the hedger reacting.

use hedge_agent::outbox::{Backoff, Outbox};
use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::client::CenterClient;
use hedge_center::model::{
    AccountRegistration, AccountRole, HedgeStatus, PageQuery, PositionEventKind, PositionReport,
};
use hedge_center::server::{CenterConfig, CenterHandle, CenterServer};
use hedge_domain::{
    AccountMarginMode, FillingModes, Login, Magic, OrderFilling, PositionId, Side, SymbolMap,
    Volume,
};
use hedge_hedger::agent::{
    follow_plan, HedgeDelivery, Hedger, HedgerEvent, HedgerOptions, Mode, PlanHolder,
};
use hedge_hedger::execution::ExecMode;
use hedge_protocol::{TerminalConfig, TerminalListener};
use hedge_sim::{default_symbols, AccountConfig, Faults, SimConfig, SimTerminal};
use rust_decimal::Decimal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

const HEDGE: Login = Login(2001);
const CLIENT: Login = Login(1001);
const SIGNAL: Magic = Magic(777);

fn lots(units: i64) -> Volume {
    Volume(Decimal::new(units, 2))
}

struct World {
    _dir: tempfile::TempDir,
    center: Option<CenterHandle>,
    admin: CenterClient,
    hedger_center: CenterClient,
    sim: Arc<SimTerminal>,
    addr: SocketAddr,
    outbox: Arc<Outbox>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    plan: Arc<PlanHolder>,
    events: broadcast::Sender<HedgerEvent>,
    seq: u64,
    terminal: Option<hedge_protocol::Terminal>,
}

struct Setup {
    mode: Mode,
    netting: bool,
    faults: Faults,
    ioc_only: bool,
    exec_mode: ExecMode,
    breaker_threshold: u32,
    deliver: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            mode: Mode::Trigger,
            netting: false,
            faults: Faults::default(),
            ioc_only: false,
            exec_mode: ExecMode::Auto,
            breaker_threshold: 3,
            deliver: true,
        }
    }
}

async fn wait_for<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

impl World {
    async fn start(setup: Setup) -> World {
        let dir = tempfile::tempdir().unwrap();
        let admin_secret = Tokens::generate_secret();
        let hedge_secret = Tokens::generate_secret();
        let tokens = Tokens::new(vec![
            TokenEntry::new("admin", Role::Admin, admin_secret.clone()).unwrap(),
            TokenEntry::new("hedger", Role::Hedge(HEDGE), hedge_secret.clone()).unwrap(),
        ]);
        let center = CenterServer::start(CenterConfig::sqlite(dir.path().join("c.db"), tokens))
            .await
            .unwrap();
        let admin = CenterClient::new(center.url(), Some(admin_secret)).unwrap();
        let hedger_center = CenterClient::new(center.url(), Some(hedge_secret)).unwrap();
        admin
            .register_account(&AccountRegistration {
                login: CLIENT,
                role: AccountRole::Client,
                server: "sim".into(),
                company: "sim".into(),
                margin_mode: AccountMarginMode::RetailHedging,
                symbol_map: SymbolMap::identity(),
                hedge_ratio: Decimal::ONE,
                hedge_login: None,
                symbols: Vec::new(),
                currency: "USD".into(),
            })
            .await
            .unwrap();
        let listener = TerminalListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr();
        drop(listener);
        let mut symbols = default_symbols(".h");
        if setup.ioc_only {
            for s in &mut symbols {
                s.spec.filling = FillingModes {
                    ioc: true,
                    ..FillingModes::default()
                };
            }
        }
        let mut config = SimConfig::new(
            addr.to_string(),
            AccountConfig {
                login: HEDGE,
                mode: if setup.netting {
                    AccountMarginMode::RetailNetting
                } else {
                    AccountMarginMode::RetailHedging
                },
                faults: setup.faults.clone(),
                ..AccountConfig::default()
            },
        );
        config.symbols = symbols;
        config.reconnect_max = Duration::from_millis(200);
        let sim = Arc::new(SimTerminal::spawn(config));
        let outbox = Outbox::open(&dir.path().join("hedger.db")).unwrap();
        let (events, _) = broadcast::channel(1024);
        let mut world = World {
            _dir: dir,
            center: Some(center),
            admin,
            hedger_center,
            sim,
            addr,
            outbox,
            tasks: Vec::new(),
            plan: Arc::new(PlanHolder::default()),
            events,
            seq: 0,
            terminal: None,
        };
        world.spawn_hedger(&setup).await;
        if setup.deliver {
            world.spawn_sender();
        }
        world
    }

    fn spawn_sender(&mut self) {
        let outbox = self.outbox.clone();
        let delivery = HedgeDelivery {
            center: self.hedger_center.clone(),
            login: HEDGE,
        };
        self.tasks.push(tokio::spawn(async move {
            let _ = outbox
                .run_sender(
                    delivery,
                    Backoff {
                        initial: Duration::from_millis(20),
                        max: Duration::from_millis(200),
                    },
                )
                .await;
        }));
    }

    async fn spawn_hedger(&mut self, setup: &Setup) {
        let listener = TerminalListener::bind_with(
            self.addr,
            TerminalConfig {
                expected_login: Some(HEDGE),
                ..TerminalConfig::default()
            },
        )
        .await
        .unwrap();
        let terminal = listener.start();
        self.plan = Arc::new(PlanHolder::default());
        let follower = tokio::spawn(follow_plan(
            self.hedger_center.clone(),
            HEDGE,
            self.plan.clone(),
            Duration::from_secs(1),
            Some(self.events.clone()),
        ));
        let mut opts = HedgerOptions::new(HEDGE, setup.mode);
        opts.symbol_map = SymbolMap::from_affix(".h");
        opts.breaker_threshold = setup.breaker_threshold;
        opts.orders.exec_mode = setup.exec_mode;
        opts.orders.retry.max_attempts = 3;
        opts.orders.retry.base_delay = Duration::from_millis(1);
        let hedger = Hedger::new(
            terminal.clone(),
            Some(self.hedger_center.clone()),
            self.outbox.clone(),
            opts,
            self.plan.clone(),
            Some(self.events.clone()),
        );
        self.terminal = Some(terminal.clone());
        let run = tokio::spawn(async move {
            let _ = hedger.run().await;
            terminal.shutdown().await;
        });
        self.tasks.push(follower);
        self.tasks.push(run);
        assert!(self.sim.wait_connected(Duration::from_secs(10)).await);
        // The hedge account must be registered before the plan means anything.
        let admin = self.admin.clone();
        let mut ok = false;
        for _ in 0..500 {
            if admin
                .accounts()
                .await
                .map(|a| a.iter().any(|a| a.registration.login == HEDGE))
                .unwrap_or(false)
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ok, "hedge account registered");
    }

    /// Stops the hedger (as a crash would: nothing is flushed) and its terminal link.
    async fn crash_hedger(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(t) = self.terminal.take() {
            t.shutdown().await;
        }
        // The sim notices the dropped link and reconnects to the next hedger.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    async fn client(&mut self, position: u64, kind: PositionEventKind, side: Side, volume: Volume) {
        self.client_symbol(position, "EURUSD", kind, side, volume)
            .await;
    }

    async fn client_symbol(
        &mut self,
        position: u64,
        symbol: &str,
        kind: PositionEventKind,
        side: Side,
        volume: Volume,
    ) {
        self.seq += 1;
        self.admin
            .report_position(&PositionReport {
                kind,
                login: CLIENT,
                position_id: PositionId(position),
                symbol: symbol.into(),
                account_symbol: String::new(),
                side,
                volume,
                price: None,
                sl: None,
                tp: None,
                time_ms: 1,
                magic: Magic(0),
                comment: String::new(),
                seq: self.seq,
                idempotency_key: format!("{CLIENT}:{position}:{}", self.seq),
            })
            .await
            .unwrap();
    }

    async fn plan_volume(&self, symbol: &str, volume: Volume) -> bool {
        let plan = self.plan.clone();
        let symbol = symbol.to_owned();
        wait_for(Duration::from_secs(10), move || {
            plan.get().is_some_and(|p| {
                p.items
                    .iter()
                    .any(|i| i.symbol == symbol && i.volume == volume)
            })
        })
        .await
    }

    /// Signed hedge volume (hedge-tagged positions) per account symbol.
    fn hedge_net(&self, symbol: &str) -> Volume {
        self.sim
            .positions()
            .iter()
            .filter(|p| p.symbol == symbol && p.magic != SIGNAL)
            .map(|p| match p.position_type.side() {
                Side::Buy => p.volume,
                Side::Sell => -p.volume,
            })
            .sum()
    }

    fn hedge_positions(&self) -> usize {
        self.sim
            .positions()
            .iter()
            .filter(|p| p.magic != SIGNAL)
            .count()
    }

    /// Opens and closes one of the account's own positions: the trigger.
    fn fire_trigger(&self) {
        let r = self
            .sim
            .open("GBPUSD.h", Side::Buy, lots(1), SIGNAL, "signal");
        assert!(r.retcode.is_done());
        let c = self.sim.close(r.position, None);
        assert!(c.retcode.is_done());
    }

    async fn shutdown(mut self) {
        self.crash_hedger().await;
        self.sim.stop().await;
        if let Some(c) = self.center.take() {
            c.shutdown().await;
        }
    }
}

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
    let outbox = w.outbox.clone();
    assert!(
        wait_for(Duration::from_secs(10), || outbox.pending().unwrap_or(1)
            == 0)
        .await
    );
    let hedges = w
        .admin
        .hedges(&PageQuery {
            login: Some(HEDGE),
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(hedges.items.len(), 2);
    assert!(hedges.items.iter().all(|h| h.status == HedgeStatus::Open));
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
        assert!(hedges.items.iter().any(|h| h.plan_item_id == item.0));
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
    let outbox = w.outbox.clone();
    assert!(
        wait_for(Duration::from_secs(10), || outbox.pending().unwrap_or(1)
            == 0)
        .await
    );
    let hedges = w
        .admin
        .hedges(&PageQuery {
            login: Some(HEDGE),
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(hedges.items.len(), 1);
    assert_eq!(hedges.items[0].volume, lots(20));
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
        exec_mode: ExecMode::Mode(OrderFilling::Fok),
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
    let mut saw = false;
    while let Ok(e) = rx.try_recv() {
        if let HedgerEvent::Order(o) = e {
            assert_eq!(o.retcodes, vec![10009], "no 10030");
            assert!(o.filling.contains("Ioc"), "{}", o.filling);
            saw = true;
        }
    }
    assert!(saw);
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
    let outbox = w.outbox.clone();
    assert!(
        wait_for(Duration::from_secs(10), || outbox.pending().unwrap_or(1)
            == 0)
        .await
    );
    let hedges = w
        .admin
        .hedges(&PageQuery {
            login: Some(HEDGE),
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert!(hedges
        .items
        .iter()
        .any(|h| h.status == HedgeStatus::Failed && h.retcode.is_some()));
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
        wait_for(Duration::from_secs(10), || w.hedge_net("EURUSD.h")
            == -lots(30))
        .await,
        "hedged on open"
    );
    w.client(1, PositionEventKind::PartialClose, Side::Buy, lots(10))
        .await;
    assert!(
        wait_for(Duration::from_secs(10), || w.hedge_net("EURUSD.h")
            == -lots(10))
        .await,
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
async fn mirror_mode_on_a_netting_hedge_account_follows_a_reversal() {
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        netting: true,
        ..Setup::default()
    })
    .await;
    w.client(1, PositionEventKind::Open, Side::Buy, lots(20))
        .await;
    assert!(
        wait_for(Duration::from_secs(10), || w.hedge_net("EURUSD.h")
            == -lots(20))
        .await
    );
    // The client reverses: now short 0.1.
    w.client(1, PositionEventKind::Reverse, Side::Sell, lots(10))
        .await;
    assert!(
        wait_for(Duration::from_secs(10), || w.hedge_net("EURUSD.h")
            == lots(10))
        .await,
        "hedge reversed with the client: {:?}",
        w.sim.positions()
    );
    w.shutdown().await;
}
