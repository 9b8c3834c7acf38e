// The test world shared by the end-to-end tests and the reaction benchmark: an in-process
// center, a simulated hedge terminal connecting to the hedger's port, and the hedger itself.
// Included textually (`include!`) by `tests/e2e.rs` and `examples/reaction_bench.rs`.

use hedge_agent_runtime::outbox::{Backoff, Outbox};
use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::{
    AccountRegistration, AccountRole, CommandId, EventId, PositionEventKind, PositionReport,
};
use hedge_center::server::{CenterConfig, CenterHandle, CenterServer};
use hedge_domain::{
    AccountMarginMode, FillingModes, Login, Magic, PositionId, Side, SymbolMap, Volume,
};
use hedge_hedger::runtime::{
    follow_plan, HedgeDelivery, Hedger, HedgerEvent, HedgerOptions, Mode, PlanHolder,
};
use hedge_hedger::probe::Probe;
use hedge_agent_runtime::ExecMode;
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
    probe: Arc<Probe>,
    events: broadcast::Sender<HedgerEvent>,
    seq: u64,
    terminal: Option<hedge_protocol::Terminal>,
    client_secret: String,
    /// The client account's own agent and its simulated terminal, when started.
    client_agent: Option<(tokio::task::JoinHandle<()>, Arc<SimTerminal>)>,
}

struct Setup {
    mode: Mode,
    netting: bool,
    faults: Faults,
    ioc_only: bool,
    exec_mode: ExecMode,
    breaker_threshold: u32,
    deliver: bool,
    status_interval: Duration,
    reconcile_interval: Duration,
    /// `ACCOUNT_TRADE_EXPERT` of the hedge account.
    trade_expert: bool,
    /// The hedge account's balance; large by default so that margin never stops a hedge.
    hedge_balance: Decimal,
    /// The hedger's pre-trade limits.
    pretrade: hedge_hedger::pretrade::PretradeLimits,
    /// Changes to the hedge account's symbols (after the `.h` names and `ioc_only`).
    symbol_setup: Option<fn(&mut Vec<hedge_sim::SimSymbol>)>,
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
            status_interval: Duration::from_secs(5),
            reconcile_interval: Duration::from_secs(2),
            trade_expert: true,
            hedge_balance: Decimal::from(100_000_000),
            pretrade: hedge_hedger::pretrade::PretradeLimits::default(),
            symbol_setup: None,
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
        let client_secret = Tokens::generate_secret();
        let tokens = Tokens::new(vec![
            TokenEntry::new("admin", Role::Admin, admin_secret.clone()).unwrap(),
            TokenEntry::new("hedger", Role::Hedge(HEDGE), hedge_secret.clone()).unwrap(),
            TokenEntry::new("client", Role::Client(CLIENT), client_secret.clone()).unwrap(),
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
                company: "test world".into(),
                margin_mode: AccountMarginMode::RetailHedging,
                symbol_map: SymbolMap::identity(),
                hedge_ratio: Decimal::ONE,
                hedge_login: None,
                // The client's contract sizes: the plan converts its lots through them.
                symbols: default_symbols("").into_iter().map(|s| s.spec).collect(),
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
                trade_expert: setup.trade_expert,
                // Hedges pile up over many runs; margin must not be what stops them unless a test
                // says so.
                balance: hedge_domain::Money(setup.hedge_balance),
                ..AccountConfig::default()
            },
        );
        if let Some(adjust) = setup.symbol_setup {
            adjust(&mut symbols);
        }
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
            probe: Arc::new(Probe::default()),
            events,
            seq: 0,
            terminal: None,
            client_secret,
            client_agent: None,
        };
        if setup.deliver {
            world.spawn_sender();
        } else {
            // The center is unreachable for the hedger's outbox from the start; it knew the hedge
            // account from before.
            world
                .admin
                .register_account(&AccountRegistration {
                    login: HEDGE,
                    role: AccountRole::Hedge,
                    server: "sim".into(),
                    company: "sim".into(),
                    margin_mode: if setup.netting {
                        AccountMarginMode::RetailNetting
                    } else {
                        AccountMarginMode::RetailHedging
                    },
                    symbol_map: SymbolMap::from_affix(".h"),
                    hedge_ratio: Decimal::ONE,
                    hedge_login: None,
                    symbols: default_symbols(".h").into_iter().map(|s| s.spec).collect(),
                    currency: "USD".into(),
                })
                .await
                .unwrap();
        }
        world.spawn_hedger(&setup).await;
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
        self.plan = Arc::new(PlanHolder::with_probe(self.probe.clone()));
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
        opts.status_interval = setup.status_interval;
        opts.reconcile_interval = setup.reconcile_interval;
        opts.orders.exec_mode = setup.exec_mode;
        opts.orders.retry.max_attempts = 3;
        opts.orders.retry.base_delay = Duration::from_millis(1);
        opts.pretrade = setup.pretrade.clone();
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

    async fn client(
        &mut self,
        position: u64,
        kind: PositionEventKind,
        side: Side,
        volume: Volume,
    ) -> EventId {
        self.client_symbol(position, "EURUSD", kind, side, volume)
            .await
    }

    async fn client_symbol(
        &mut self,
        position: u64,
        symbol: &str,
        kind: PositionEventKind,
        side: Side,
        volume: Volume,
    ) -> EventId {
        self.seq += 1;
        self.admin
            .report_position(&PositionReport {
                time_ms: 1,
                ..PositionReport::new(
                    kind,
                    CLIENT,
                    PositionId(position),
                    symbol,
                    side,
                    volume,
                    self.seq,
                )
            })
            .await
            .unwrap()
            .ack
            .event_id
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

    /// Whether the signed hedge volume of `symbol` reaches `volume` within 10 s.
    async fn hedge_net_reaches(&self, symbol: &str, volume: Volume) -> bool {
        wait_for(Duration::from_secs(10), || self.hedge_net(symbol) == volume).await
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

    /// Every hedge the center holds for the hedge account, oldest first.
    /// Whether the hedger's outbox emptied (its records reached the center) within 10 s.
    async fn records_sent(&self) -> bool {
        let outbox = self.outbox.clone();
        wait_for(Duration::from_secs(10), || outbox.pending().unwrap_or(1) == 0).await
    }

    async fn hedges(&self) -> Vec<hedge_center_api::model::Hedge> {
        hedge_hedger::runtime::all_hedges(&self.admin, HEDGE, None)
            .await
            .unwrap()
    }

    /// Polls the center's hedges until `done` holds (10 s at most, then fails naming `what`).
    async fn account_until(
        &self,
        what: &str,
        mut done: impl FnMut(&hedge_center::model::Account) -> bool,
    ) -> hedge_center::model::Account {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(account) = self.admin.account(HEDGE).await {
                if done(&account) {
                    return account;
                }
                assert!(Instant::now() < deadline, "{what}: {account:?}");
            }
            assert!(Instant::now() < deadline, "{what}: no account");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn hedges_until(
        &self,
        what: &str,
        mut done: impl FnMut(&[hedge_center_api::model::Hedge]) -> bool,
    ) -> Vec<hedge_center_api::model::Hedge> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hedges = self.hedges().await;
            if done(&hedges) {
                return hedges;
            }
            assert!(Instant::now() < deadline, "{what}: {hedges:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the center has an operator command in `status`.
    async fn command_reaches(
        &self,
        id: CommandId,
        status: hedge_center_api::model::CommandStatus,
    ) -> Option<hedge_center_api::model::Command> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(c) = self.admin.command(id).await {
                if c.status == status {
                    return Some(c);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Deals on the hedge account whose comment names operator command `id`.
    fn command_deals(&self, id: CommandId) -> usize {
        let comment = format!("cmd:{id}");
        self.sim
            .deals()
            .iter()
            .filter(|d| d.comment == comment)
            .count()
    }

    /// Starts the client account's own agent (`hedge client`, in this process) and a simulated
    /// client terminal connecting to it, so client exposure reaches the center the way it does in
    /// production: from a trade on the terminal, through the agent. Returns the client terminal
    /// once the agent has registered the account.
    // The end-to-end tests report client exposure to the center directly; the benchmark uses this.
    #[allow(dead_code)]
    async fn start_client_agent(&mut self) -> Arc<SimTerminal> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = self.center.as_ref().unwrap().url();
        let args = hedge_agent::client::ClientArgs {
            agent: hedge_agent_runtime::AgentArgs {
                terminal_port: Some(port),
                login: Some(CLIENT.get()),
                prefix: Some("-".into()),
                exec_mode: Some(ExecMode::Auto),
                center: Some(url),
                center_token: Some(hedge_agent_runtime::Secret::new(&self.client_secret)),
                state_dir: Some(self._dir.path().join("client")),
                ..hedge_agent_runtime::AgentArgs::default()
            },
            legacy_center: None,
            hedge_ratio: None,
            hedge_login: None,
        };
        let task = tokio::spawn(async move {
            if let Err(e) = hedge_agent::client::run(args).await {
                eprintln!("client agent stopped: {e:#}");
            }
        });
        let mut config = SimConfig::new(
            format!("127.0.0.1:{port}"),
            AccountConfig {
                login: CLIENT,
                balance: hedge_domain::Money(Decimal::from(100_000_000)),
                ..AccountConfig::default()
            },
        );
        config.reconnect_max = Duration::from_millis(200);
        let sim = Arc::new(SimTerminal::spawn(config));
        self.client_agent = Some((task, sim.clone()));
        assert!(sim.wait_connected(Duration::from_secs(10)).await);
        // The agent registers the account from the terminal's hello; wait until the center has
        // that registration (the world registered the account before, as "test world").
        let admin = self.admin.clone();
        let mut registered = false;
        for _ in 0..500 {
            if admin
                .accounts()
                .await
                .map(|a| {
                    a.iter()
                        .any(|a| a.registration.login == CLIENT && a.registration.company != "test world")
                })
                .unwrap_or(false)
            {
                registered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(registered, "client agent registered its account");
        sim
    }

    async fn shutdown(mut self) {
        if let Some((task, sim)) = self.client_agent.take() {
            task.abort();
            let _ = task.await;
            sim.stop().await;
        }
        self.crash_hedger().await;
        self.sim.stop().await;
        if let Some(c) = self.center.take() {
            c.shutdown().await;
        }
    }
}
