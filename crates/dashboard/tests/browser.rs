//! The dashboard in a real browser: Debian's headless Chromium, driven by `browser-tests/dashboard.mjs`
//! (playwright-core), against a real center on SQLite fed through its `/v1` API by client accounts
//! and a hedger that execute the plan. The script signs in, checks that positions, the plan and
//! hedges appear and update, pauses and closes through the UI, and saves screenshots under
//! `$HEDGE_ARTIFACTS` (default `target/artifacts/dashboard`). Midway the center is stopped and
//! started again on the same address and store; the page must reconnect and catch up by itself.
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`), `node`, and `npm ci` in `browser-tests/`; without them
//! the test fails and says how to install them.

use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::{CenterConfig, CenterHandle, CenterServer};
use hedge_center_api::model::*;
use hedge_center_api::CenterClient;
use hedge_domain::{
    AccountMarginMode, DealTicket, Login, Magic, OrderTicket, PositionId, Price, Retcode, Side,
    SymbolMap, SymbolSpec, Volume,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "dashboard-operator-token-1";
const HEDGER_TOKEN: &str = "dashboard-hedger-token-1";
const CLIENT_TOKENS: [(u64, &str); 2] = [
    (2001, "dashboard-client-token-1"),
    (2002, "dashboard-client-token-2"),
];
const HEDGE_LOGIN: Login = Login(1001);
const SECOND_HEDGE: Login = Login(1002);

fn tokens() -> Tokens {
    let mut entries = vec![
        TokenEntry::new("operator", Role::Admin, ADMIN_TOKEN).expect("token"),
        TokenEntry::new("hedger-1001", Role::Hedge(HEDGE_LOGIN), HEDGER_TOKEN).expect("token"),
    ];
    for (login, secret) in CLIENT_TOKENS {
        entries.push(
            TokenEntry::new(
                format!("client-{login}"),
                Role::Client(Login(login)),
                secret,
            )
            .expect("token"),
        );
    }
    Tokens::new(entries)
}

/// A center in its own runtime, so that stopping it ends every connection as a process exit would.
struct Center {
    runtime: Option<tokio::runtime::Runtime>,
    handle: Option<CenterHandle>,
    addr: SocketAddr,
}

impl Center {
    fn start(db: &Path, addr: SocketAddr) -> Center {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("center runtime");
        let mut config = CenterConfig::sqlite(db, tokens());
        config.listen = addr;
        config.sse_heartbeat = Duration::from_secs(2);
        let deadline = Instant::now() + Duration::from_secs(20);
        let handle = loop {
            match runtime.block_on(CenterServer::start(config.clone())) {
                Ok(h) => break h,
                // The previous instance's port may take a moment to be released.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("center start: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("the center does not start: {e}"),
            }
        };
        let addr = handle.addr;
        Center {
            runtime: Some(runtime),
            handle: Some(handle),
            addr,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving, lets the store finish its queue, then drops the runtime and with it every
    /// open connection (the dashboard's event stream included).
    fn stop(&mut self) {
        if let (Some(rt), Some(handle)) = (self.runtime.as_ref(), self.handle.take()) {
            rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(8), handle.shutdown()).await;
            });
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Center {
    fn drop(&mut self) {
        self.stop();
    }
}

fn vol(text: &str) -> Volume {
    text.parse().expect("volume literal")
}

fn price(text: &str) -> Price {
    text.parse().expect("price literal")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const SYMBOLS: [(&str, u32, &str); 3] = [
    ("EURUSD", 5, "1.08412"),
    ("GBPUSD", 5, "1.26318"),
    ("USDJPY", 3, "151.204"),
];

fn registration(login: Login, role: AccountRole, suffix: &str, ratio: &str) -> AccountRegistration {
    AccountRegistration {
        login,
        role,
        server: "Sim-Demo".into(),
        company: "Simulated Broker".into(),
        margin_mode: if role == AccountRole::Hedge {
            AccountMarginMode::RetailNetting
        } else {
            AccountMarginMode::RetailHedging
        },
        symbol_map: SymbolMap::from_affix(suffix),
        hedge_ratio: ratio.parse().expect("ratio"),
        hedge_login: None,
        symbols: SYMBOLS
            .iter()
            .map(|(name, digits, _)| SymbolSpec::forex(format!("{name}{suffix}"), *digits))
            .collect(),
        currency: "USD".into(),
    }
}

/// One client position the feeder keeps, with the sequence of its last acknowledged report.
struct FedPosition {
    login: Login,
    id: PositionId,
    symbol: &'static str,
    side: Side,
    volume: Volume,
    seq: u64,
    open: bool,
}

/// Plays two client agents and a hedger against the center through its API. Every step is retried
/// with the same idempotency key until the center acknowledges it, so a center restart loses and
/// doubles nothing.
struct Feeder {
    url: String,
    positions: Vec<FedPosition>,
    next_id: u64,
    step: u64,
    failed_once: bool,
}

impl Feeder {
    fn client(&self, token: &str) -> CenterClient {
        CenterClient::with_timeout(&self.url, Some(token.to_owned()), Duration::from_secs(3))
            .expect("client")
    }

    fn client_token(login: Login) -> &'static str {
        CLIENT_TOKENS
            .iter()
            .find(|(l, _)| *l == login.0)
            .map(|(_, t)| *t)
            .expect("known client")
    }

    async fn register_all(&self) -> Result<(), ClientErrorText> {
        self.client(HEDGER_TOKEN)
            .register_account(&registration(HEDGE_LOGIN, AccountRole::Hedge, ".r", "1"))
            .await
            .map_err(err)?;
        for (login, token) in CLIENT_TOKENS {
            let ratio = if login == 2002 { "0.5" } else { "1" };
            self.client(token)
                .register_account(&registration(Login(login), AccountRole::Client, "", ratio))
                .await
                .map_err(err)?;
        }
        // A second hedge account, which no hedger follows: every client goes to the first until
        // the page moves a share of one to it with an allocation.
        let admin = self.client(ADMIN_TOKEN);
        admin
            .register_account(&registration(SECOND_HEDGE, AccountRole::Hedge, ".pro", "1"))
            .await
            .map_err(err)?;
        let mut everyone = ActionRequest::new(ActionKind::SetAllocation);
        everyone.reason = "every client on the first hedge account".into();
        everyone.weights = Some(vec![AllocationWeight {
            hedge_login: HEDGE_LOGIN,
            weight: "1".parse().expect("weight"),
        }]);
        admin
            .action("browser-test-allocation", &everyone)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn heartbeat(&self, tick: u64) -> Result<(), ClientErrorText> {
        let mut breakers = BTreeMap::new();
        for (name, _, _) in SYMBOLS {
            breakers.insert(name.to_owned(), BreakerState::Closed);
        }
        for (i, (login, token)) in CLIENT_TOKENS.iter().enumerate() {
            // Marks of the open positions move a point per tick; account 2001 reports a
            // reconciliation mismatch, which the dashboard must flag.
            let marks: Vec<PositionMark> = self
                .positions
                .iter()
                .filter(|p| p.open && p.login.0 == *login)
                .map(|p| {
                    let (_, digits, px) = SYMBOLS
                        .iter()
                        .find(|(n, _, _)| *n == p.symbol)
                        .expect("known symbol");
                    let moved: Price = format!("{}e-{digits}", tick % 7)
                        .parse()
                        .expect("price step");
                    PositionMark {
                        position_id: p.id,
                        price_current: price(px) + moved,
                        swap: "-0.12".parse().expect("money"),
                        profit: format!("{}", (tick % 7) as i64 - 2).parse().expect("money"),
                        commission: "-0.7".parse().expect("money"),
                    }
                })
                .collect();
            let status = AccountStatus {
                connected: true,
                last_event_ms: Some(now_ms()),
                outbox_pending: (tick + i as u64) % 3,
                dead_letters: 0,
                dead_letter_reason: None,
                center_check: None,
                breakers: BTreeMap::new(),
                pretrade_refusals: Vec::new(),
                message: Some("client agent (test feed)".into()),
                account: Some(AccountMoney {
                    balance: "10000.5".parse().expect("money"),
                    equity: "10012.25".parse().expect("money"),
                    margin: "210".parse().expect("money"),
                    margin_free: "9802.25".parse().expect("money"),
                    profit: "11.75".parse().expect("money"),
                    currency: "USD".into(),
                }),
                marks,
                reconciliation: Some(Reconciliation {
                    ok: *login != 2001,
                    detail: if *login == 2001 {
                        "EURUSD: ledger 0.3, terminal 0.2".into()
                    } else {
                        String::new()
                    },
                    checked_ms: now_ms(),
                }),
            };
            self.client(token)
                .heartbeat(Login(*login), &status)
                .await
                .map_err(err)?;
        }
        // The hedger marks the position of each open hedge: profit 1.5, swap -0.1, commission
        // -0.2, so every hedge shows a P/L of 1.20 and the account's total is 1.20 per hedge.
        let hedger = self.client(HEDGER_TOKEN);
        let open = hedger
            .hedges(&PageQuery {
                login: Some(HEDGE_LOGIN),
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .map_err(err)?;
        let marks: Vec<PositionMark> = open
            .items
            .iter()
            .filter(|h| matches!(h.status, HedgeStatus::Open | HedgeStatus::PartiallyClosed))
            .map(|h| PositionMark {
                position_id: h.position_id,
                price_current: h.price.unwrap_or_else(|| price("1")),
                swap: "-0.1".parse().expect("money"),
                profit: "1.5".parse().expect("money"),
                commission: "-0.2".parse().expect("money"),
            })
            .collect();
        let status = AccountStatus {
            connected: true,
            last_event_ms: Some(now_ms()),
            outbox_pending: 0,
            breakers,
            message: Some("hedger (test feed)".into()),
            marks,
            // A hedge the pre-trade checks keep back: the card and the plan say why.
            pretrade_refusals: vec![PretradeRefusal {
                symbol: "GBPUSD".into(),
                account_symbol: "GBPUSD.r".into(),
                side: Side::Sell,
                volume: "0.5".parse().expect("volume"),
                reason: "refused by pre-trade check: margin level 85% below minimum 100%".into(),
                since_ms: now_ms(),
            }],
            ..AccountStatus::default()
        };
        self.client(HEDGER_TOKEN)
            .heartbeat(HEDGE_LOGIN, &status)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn report(
        &self,
        p: &FedPosition,
        kind: PositionEventKind,
        seq: u64,
    ) -> Result<(), ClientErrorText> {
        let spec = SYMBOLS
            .iter()
            .find(|(n, _, _)| *n == p.symbol)
            .expect("known symbol");
        let report = PositionReport {
            kind,
            login: p.login,
            position_id: p.id,
            symbol: p.symbol.into(),
            account_symbol: String::new(),
            side: p.side,
            volume: if kind == PositionEventKind::Close {
                Volume::ZERO
            } else {
                p.volume
            },
            price: Some(price(spec.2)),
            sl: None,
            tp: None,
            time_ms: now_ms(),
            magic: Magic(77),
            // Entry comment on the open, the closing deal's on the close; every third entry
            // comment reads as a spreadsheet formula, which the CSV export must neutralise.
            comment: if kind == PositionEventKind::Close {
                format!("closed #{}", p.id)
            } else if p.id.0.is_multiple_of(3) {
                format!("=signal #{}", p.id)
            } else {
                format!("signal #{}", p.id)
            },
            seq,
            idempotency_key: IdempotencyKey::report(p.login, p.id, seq),
            // The closing deal, as a client agent sends it; every seventh close comes without one
            // (an older agent), and History must show its figures as unknown, not as 0.
            exit: (kind == PositionEventKind::Close && !p.id.0.is_multiple_of(7)).then(|| {
                ExitDeal {
                    price: price(spec.2)
                        + format!("{}e-{}", p.id.0 % 40, spec.1)
                            .parse()
                            .expect("price step"),
                    profit: format!("{}.25", (p.id.0 % 9) as i64 - 4)
                        .parse()
                        .expect("money"),
                    commission: "-0.7".parse().expect("money"),
                    swap: "-0.12".parse().expect("money"),
                    fee: "0".parse().expect("money"),
                }
            }),
        };
        self.client(Self::client_token(p.login))
            .report_position(&report)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Client 2001 holds silver, a symbol it registered no spec for: its lots cannot be turned
    /// into ounces, so the plan lists it as a residual ("contract size missing").
    async fn report_without_contract_size(&self) -> Result<(), ClientErrorText> {
        let login = Login(2001);
        let id = PositionId(9001);
        let report = PositionReport {
            kind: PositionEventKind::Open,
            login,
            position_id: id,
            symbol: "XAGUSD".into(),
            account_symbol: String::new(),
            side: Side::Buy,
            volume: vol("1"),
            price: Some(price("30.125")),
            sl: None,
            tp: None,
            time_ms: now_ms(),
            magic: Magic(77),
            comment: "silver".into(),
            exit: None,
            seq: 1,
            idempotency_key: IdempotencyKey::report(login, id, 1),
        };
        self.client(Self::client_token(login))
            .report_position(&report)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Opens a new client position (odd steps) or closes the oldest open one (every fourth step).
    async fn client_step(&mut self) -> Result<(), ClientErrorText> {
        self.step += 1;
        if self.step.is_multiple_of(4) {
            if let Some(i) = self.positions.iter().position(|p| p.open) {
                let seq = self.positions[i].seq + 1;
                self.report(&self.positions[i], PositionEventKind::Close, seq)
                    .await?;
                self.positions[i].seq = seq;
                self.positions[i].open = false;
                return Ok(());
            }
        }
        let n = self.next_id;
        let (symbol, _, _) = SYMBOLS[(n % 3) as usize];
        let p = FedPosition {
            login: Login(if n.is_multiple_of(2) { 2001 } else { 2002 }),
            id: PositionId(n),
            symbol,
            side: if n.is_multiple_of(5) {
                Side::Sell
            } else {
                Side::Buy
            },
            volume: vol(["0.1", "0.2", "0.3", "0.05"][(n % 4) as usize]),
            seq: 1,
            open: true,
        };
        self.report(&p, PositionEventKind::Open, 1).await?;
        self.next_id += 1;
        self.positions.push(p);
        Ok(())
    }

    /// What a hedger does: executes each plan item (one GBPUSD item fails once with a requote),
    /// reduces hedges for `reduce` items.
    async fn hedger_step(&mut self) -> Result<(), ClientErrorText> {
        let hedger = self.client(HEDGER_TOKEN);
        // Operator commands first, as the hedger does: a close takes the hedge's volume back,
        // a retry has nothing left to do once the plan item was executed since.
        for command in hedger.pending_commands(HEDGE_LOGIN).await.map_err(err)? {
            if command.kind == CommandKind::CloseHedge {
                hedger
                    .hedge_reduced(
                        command.hedge_id,
                        &HedgeReduce {
                            remaining: Volume::ZERO,
                            deal: None,
                            price: None,
                            time_ms: now_ms(),
                            reason: format!("closed by command {}", command.id),
                        },
                    )
                    .await
                    .map_err(err)?;
            }
            hedger
                .command_result(
                    command.id,
                    &CommandResult {
                        status: CommandStatus::Done,
                        retcode: Some(Retcode(10009)),
                        message: Some("done by the test hedger".into()),
                    },
                )
                .await
                .map_err(err)?;
        }
        let plan = hedger.plan(HEDGE_LOGIN).await.map_err(err)?;
        for item in plan.items {
            match item.action {
                PlanAction::Open => {
                    if item.symbol == "GBPUSD" && !self.failed_once {
                        hedger
                            .hedge_failed(&HedgeFailed {
                                plan_item_id: item.id,
                                hedge_login: HEDGE_LOGIN,
                                symbol: item.symbol.clone(),
                                side: item.side,
                                volume: item.volume,
                                retcode: Retcode(10004),
                                message: "requote".into(),
                                time_ms: now_ms(),
                            })
                            .await
                            .map_err(err)?;
                        self.failed_once = true;
                        continue;
                    }
                    let n = item.id.get() % 1_000_000;
                    hedger
                        .hedge_executed(&HedgeExecuted {
                            plan_item_id: item.id,
                            hedge_login: HEDGE_LOGIN,
                            symbol: item.symbol.clone(),
                            side: item.side,
                            volume: item.volume,
                            order: OrderTicket(700_000 + n),
                            deal: DealTicket(800_000 + n),
                            position_id: PositionId(700_000 + n),
                            price: SYMBOLS
                                .iter()
                                .find(|(s, _, _)| *s == item.symbol)
                                .map(|(_, _, p)| price(p)),
                            latency_us: Some(350 + n % 900),
                            slippage: Some(price("0.00001")),
                            time_ms: now_ms(),
                        })
                        .await
                        .map_err(err)?;
                }
                PlanAction::Reduce => {
                    let hedges = hedger
                        .hedges(&PageQuery {
                            login: Some(HEDGE_LOGIN),
                            symbol: Some(item.symbol.clone()),
                            limit: Some(1000),
                            ..Default::default()
                        })
                        .await
                        .map_err(err)?;
                    let mut left = item.volume;
                    for h in hedges.items.iter().filter(|h| {
                        matches!(h.status, HedgeStatus::Open | HedgeStatus::PartiallyClosed)
                            && h.side != item.side
                    }) {
                        if left.is_zero() {
                            break;
                        }
                        let take = h.open_volume.min(left);
                        left -= take;
                        hedger
                            .hedge_reduced(
                                h.id,
                                &HedgeReduce {
                                    remaining: h.open_volume - take,
                                    deal: None,
                                    price: None,
                                    time_ms: now_ms(),
                                    reason: format!("plan item {} reduces the hedge", item.id),
                                },
                            )
                            .await
                            .map_err(err)?;
                    }
                }
            }
        }
        Ok(())
    }
}

type ClientErrorText = String;

fn err(e: hedge_center_api::ClientError) -> ClientErrorText {
    e.to_string()
}

fn require_tools(crate_dir: &Path) -> (PathBuf, PathBuf) {
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let how = "install them with `apt-get update && apt-get install -y chromium nodejs npm` and \
               `(cd crates/dashboard/browser-tests && npm ci)` (.ci/run does both)";
    assert!(
        chromium.exists(),
        "Chromium is missing at {}: {how}",
        chromium.display()
    );
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(node_ok, "node is missing: {how}");
    let playwright = crate_dir.join("browser-tests/node_modules/playwright-core/package.json");
    assert!(
        playwright.exists(),
        "playwright-core is not installed in {}: {how}",
        crate_dir.join("browser-tests").display()
    );
    (chromium, crate_dir.join("browser-tests/dashboard.mjs"))
}

#[test]
fn dashboard_in_headless_chromium() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (chromium, script) = require_tools(&crate_dir);
    let artifacts = std::env::var_os("HEDGE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("../../target/artifacts/dashboard"));
    std::fs::create_dir_all(&artifacts).expect("artifacts directory");

    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("center.sqlite");
    let mut center = Center::start(&db, SocketAddr::from(([127, 0, 0, 1], 0)));
    let addr = center.addr;
    let url = center.url();

    // The feed runs on its own runtime for the whole test, across the center's restart.
    let feed_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("feed runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let mut feeder = Feeder {
        url: url.clone(),
        positions: Vec::new(),
        next_id: 5001,
        step: 0,
        failed_once: false,
    };
    feed_rt
        .block_on(async {
            feeder.register_all().await?;
            feeder.report_without_contract_size().await?;
            for _ in 0..12 {
                feeder.client_step().await?;
            }
            feeder.heartbeat(0).await?;
            feeder.hedger_step().await
        })
        .expect("initial feed");
    let feed_stop = stop.clone();
    let feed = feed_rt.spawn(async move {
        let mut tick = 0u64;
        let mut errors = 0u64;
        while !feed_stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(700)).await;
            tick += 1;
            let result = async {
                feeder.client_step().await?;
                feeder.hedger_step().await?;
                if tick.is_multiple_of(3) {
                    feeder.heartbeat(tick).await?;
                }
                Ok::<_, ClientErrorText>(())
            }
            .await;
            if let Err(e) = result {
                // The center is restarting: the same steps are retried with the same keys.
                errors += 1;
                if errors % 5 == 1 {
                    eprintln!("feed: {e}");
                }
            }
        }
        (tick, errors)
    });

    let mut child = Command::new("node")
        .arg(&script)
        .arg(format!("{url}/"))
        .arg(ADMIN_TOKEN)
        .current_dir(&crate_dir)
        .env("HEDGE_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .env("HEDGE_RESTART_HOOK", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let started = Instant::now();
    let limit = Duration::from_secs(300);
    let mut restarted = false;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                println!("{line}");
                if line.contains("ready-for-restart") {
                    center.stop();
                    std::thread::sleep(Duration::from_millis(500));
                    center = Center::start(&db, addr);
                    restarted = true;
                    writeln!(stdin, "restarted").expect("tell the script");
                    stdin.flush().expect("flush");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if started.elapsed() > limit {
                    let _ = child.kill();
                    panic!("the browser test did not finish within {limit:?}");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().expect("node exit status");
    stop.store(true, Ordering::Relaxed);
    let (ticks, errors) = feed_rt.block_on(feed).expect("feed task");
    println!("feed: {ticks} steps, {errors} retried during the restart");
    drop(center);
    assert!(
        status.success(),
        "the browser checks failed ({status}); screenshots and results are in {}",
        artifacts.display()
    );
    assert!(restarted, "the script never asked for the center restart");
    for shot in [
        "02-overview.png",
        "04-paused.png",
        "05-hedge-close.png",
        "09-after-restart.png",
    ] {
        assert!(
            artifacts.join(shot).exists(),
            "screenshot {shot} is missing from {}",
            artifacts.display()
        );
    }
}
