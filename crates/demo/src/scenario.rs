//! The demo scenario: every component started in this process, the signal played, the result checked.

use crate::exposure::{holds, table, ExposureRow, Holding};
use crate::interrupt::Interrupt;
use crate::live::{self, LiveAccount};
use crate::relay::Relay;
use crate::timeline::Timeline;
use anyhow::{bail, Context};
use hedge_agent_runtime::outbox::{Backoff, Outbox};
use hedge_agent_runtime::{AgentArgs, ExecMode, Secret};
use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::server::{CenterConfig, CenterServer};
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::{Event, EventKind, HedgePlan};
use hedge_domain::{AccountMarginMode, Login, Magic, Side, SymbolMap, Volume};
use hedge_hedger::runtime::{
    follow_plan, HedgeDelivery, Hedger, HedgerEvent, HedgerOptions, Mode, PlanHolder,
};
use hedge_protocol::{TerminalConfig, TerminalListener};
use hedge_sim::{default_symbols_for, AccountConfig, FeedConfig, SimConfig, SimTerminal};
use rust_decimal::Decimal;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// How long the center stays up after the scenario, for a look at it.
    pub keep_running: Duration,
    /// Seeds the price feed and the order of the signal's fills.
    pub seed: u64,
    /// Ends the live phase early (Ctrl-C, SIGTERM).
    pub interrupt: Interrupt,
}

/// What the demo proved.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    pub rows: Vec<ExposureRow>,
    pub ok: bool,
    pub center_url: String,
    /// Trigger → every hedge order answered, microseconds.
    pub reaction_us: Option<u64>,
    pub hedge_orders: usize,
}

const CLIENT_A: Login = Login(1001);
const CLIENT_B: Login = Login(1002);
const HEDGE: Login = Login(2001);
/// How often the live phase trades on a client account.
const LIVE_INTERVAL: Duration = Duration::from_secs(2);
/// The signal service's magic number (the copier's trades carry it).
const SIGNAL_MAGIC: Magic = Magic(777);

/// One trade of the signal on one account.
struct SignalTrade {
    canonical: &'static str,
    side: Side,
    volume: Volume,
}

fn lots(units: i64) -> Volume {
    Volume(Decimal::new(units, 2))
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?.port())
}

fn token(name: &str, role: Role, secrets: &mut Vec<TokenEntry>) -> anyhow::Result<String> {
    let secret = Tokens::generate_secret();
    secrets.push(TokenEntry::new(name, role, secret.clone()).map_err(anyhow::Error::msg)?);
    Ok(secret)
}

fn agent_args(
    port: u16,
    login: Login,
    affix: &str,
    center: &str,
    token: &str,
    state: &Path,
) -> AgentArgs {
    AgentArgs {
        terminal_port: Some(port),
        login: Some(login.get()),
        prefix: Some(affix.to_owned()),
        exec_mode: Some(ExecMode::Auto),
        center: Some(center.to_owned()),
        center_token: Some(Secret::new(token)),
        state_dir: Some(state.to_owned()),
        // Heartbeats carry the account block and the marks the dashboard shows.
        status_interval: Some(2),
        ..AgentArgs::default()
    }
}

/// The copier stand-in: a harmless long-running program started under the name `javaw.exe`, so the
/// tumbler's kill is a real kill of a real process: a copy of `sleep` on Unix, of the system's
/// `PING.EXE` on Windows (pinging the loopback for ten minutes). `None` where that cannot be done.
struct Copier {
    child: tokio::process::Child,
    pid: u32,
    pid_file: PathBuf,
}

/// A program that runs for ten minutes doing nothing harmful, and its arguments.
#[cfg(unix)]
fn long_runner() -> Option<(PathBuf, Vec<&'static str>)> {
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    Some((sleep, vec!["600"]))
}

#[cfg(windows)]
fn long_runner() -> Option<(PathBuf, Vec<&'static str>)> {
    let root = std::env::var_os("SystemRoot")?;
    let ping = PathBuf::from(root).join("System32").join("PING.EXE");
    ping.exists()
        .then(|| (ping, vec!["-n", "600", "127.0.0.1"]))
}

fn start_copier(dir: &Path) -> Option<Copier> {
    let (program, args) = long_runner()?;
    let exe = dir.join("javaw.exe");
    std::fs::copy(program, &exe).ok()?;
    let child = tokio::process::Command::new(&exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    // A pid of 0 names no process (a launcher that handed the program on): nothing to kill.
    let pid = child.id().filter(|pid| *pid != 0)?;
    let pid_file = dir.join("copier.pid");
    std::fs::write(&pid_file, format!("{pid}\n")).ok()?;
    Some(Copier {
        child,
        pid,
        pid_file,
    })
}

fn describe_event(e: &Event) -> String {
    let d = &e.data;
    let num = |k: &str| d.get(k).map(|v| v.to_string()).unwrap_or_default();
    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    match e.kind {
        // The volume reported is what remains open: say so where it is not the trade's own.
        EventKind::PositionIncreased | EventKind::PositionReduced => format!(
            "center <- report {} account {} position {} {} {}, now {} lots",
            e.kind.as_str(),
            e.login.map(|l| l.to_string()).unwrap_or_default(),
            num("position_id"),
            text("symbol"),
            text("side"),
            num("volume")
        ),
        EventKind::PositionOpened | EventKind::PositionClosed | EventKind::PositionReversed => {
            format!(
                "center <- report {} account {} position {} {} {} {} lots",
                e.kind.as_str(),
                e.login.map(|l| l.to_string()).unwrap_or_default(),
                num("position_id"),
                text("symbol"),
                text("side"),
                num("volume")
            )
        }
        EventKind::HedgeExecuted => format!(
            "center <- hedge recorded: item {} {} {} {} lots at {}",
            num("plan_item_id"),
            text("symbol"),
            text("side"),
            num("volume"),
            num("price")
        ),
        EventKind::AccountRegistered => format!(
            "center <- account {} registered ({})",
            e.login.map(|l| l.to_string()).unwrap_or_default(),
            text("role")
        ),
        _ => format!(
            "center <- {} {} {}",
            e.kind.as_str(),
            e.symbol.clone().unwrap_or_default(),
            e.reason
        ),
    }
}

fn describe_plan(plan: &HedgePlan) -> String {
    if plan.items.is_empty() {
        return "hedger holds the plan: nothing to hedge".into();
    }
    let items: Vec<String> = plan
        .items
        .iter()
        .map(|i| {
            format!(
                "#{} {} {} {} (exposure {})",
                i.id, i.account_symbol, i.side, i.volume, i.exposure
            )
        })
        .collect();
    format!("hedger holds the plan: {}", items.join(", "))
}

fn print_hedger_event(t: &Timeline, e: &HedgerEvent, live: bool) {
    let fields = serde_json::to_value(e).unwrap_or(json!({}));
    match e {
        HedgerEvent::Ready { fills, .. } => t.emit(
            "hedger",
            format!("hedger ready: state rebuilt ({fills} earlier hedge fills on the account)"),
            fields,
        ),
        HedgerEvent::Plan { plan } => t.emit("plan", describe_plan(plan), fields),
        HedgerEvent::Trigger {
            position, symbol, ..
        } => t.emit(
            "trigger",
            format!("TRIGGER: hedge account position {position} ({symbol}) closed by the central close"),
            fields,
        ),
        HedgerEvent::Order(o) => t.emit(
            "order",
            format!(
                "hedge order: {} {} {} -> {} (filled {} at {}, {} attempt(s), retcodes {:?}) in {:.3} ms",
                o.side,
                o.volume,
                o.symbol,
                o.outcome,
                o.filled,
                o.price.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                o.attempts,
                o.retcodes,
                o.latency_us as f64 / 1000.0
            ),
            fields,
        ),
        HedgerEvent::Batch {
            orders,
            filled,
            elapsed_us,
            ..
        } => t.emit(
            "hedged",
            format!(
                "{filled}/{orders} hedge orders filled; {} -> last reply {:.3} ms",
                if live { "plan change" } else { "trigger" },
                *elapsed_us as f64 / 1000.0
            ),
            fields,
        ),
        HedgerEvent::Breaker { symbol, reason } => {
            t.emit("breaker", format!("{symbol} halted: {reason}"), fields)
        }
        HedgerEvent::Finished => t.emit("hedger", "hedger done (--once)", fields),
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

/// Runs the whole demo. Errors only when something could not start; a failed final check is an
/// outcome with `ok == false`.
pub async fn run(opts: DemoOptions, t: Timeline) -> anyhow::Result<DemoOutcome> {
    let dir = tempfile::Builder::new().prefix("hedge-demo-").tempdir()?;
    let base = dir.path().to_owned();

    // The center, with one token per agent and one for the demo's own view.
    let mut entries = Vec::new();
    let admin = token("demo", Role::Admin, &mut entries)?;
    let tok_a = token("client-a", Role::Client(CLIENT_A), &mut entries)?;
    let tok_b = token("client-b", Role::Client(CLIENT_B), &mut entries)?;
    let tok_h = token("hedger", Role::Hedge(HEDGE), &mut entries)?;
    // The tumbler watches client A, the account the copier trades into.
    let tok_w = token("tumbler", Role::Tumbler(CLIENT_A), &mut entries)?;
    let center = CenterServer::start(CenterConfig::sqlite(
        base.join("center.db"),
        Tokens::new(entries),
    ))
    .await
    .context("starting the center")?;
    let url = center.url();
    // The dashboard needs a token to sign in; it goes to an owner-only file, never to the output.
    let token_file = base.join("dashboard.token");
    write_private(&token_file, &admin).context("writing the dashboard token file")?;
    t.emit(
        "center",
        format!(
            "center listening on {url} (SQLite in {}); dashboard at {url}/, sign in with the token in {}",
            base.display(),
            token_file.display()
        ),
        json!({ "url": url, "dashboard": format!("{url}/"), "token_file": token_file }),
    );
    let view = CenterClient::new(url.clone(), Some(admin))?;
    let mut events = view.subscribe(Some(0));
    let printer = {
        let t = t.clone();
        tokio::spawn(async move {
            while let Some(Ok(e)) = events.next().await {
                if matches!(e.kind, EventKind::AccountStatus) {
                    continue;
                }
                t.emit(
                    "report",
                    describe_event(&e),
                    json!({ "event_id": e.id, "event_kind": e.kind }),
                );
            }
        })
    };

    // Naming rules of the accounts.
    let map_a = SymbolMap::from_affix(".r");
    let map_b = SymbolMap::from_affix("m*");
    let map_h = SymbolMap::from_affix("-ECN");

    // The copier stand-in and the agents.
    let copier = start_copier(&base);
    let mut agents = Vec::new();
    let port_a = free_port()?;
    let port_b = free_port()?;
    let port_w = free_port()?;
    agents.push(tokio::spawn(hedge_agent::client::run(
        hedge_agent::client::ClientArgs {
            agent: agent_args(port_a, CLIENT_A, ".r", &url, &tok_a, &base.join("a")),
            legacy_center: None,
            hedge_ratio: None,
            hedge_login: None,
        },
    )));
    agents.push(tokio::spawn(hedge_agent::client::run(
        hedge_agent::client::ClientArgs {
            agent: agent_args(port_b, CLIENT_B, "m*", &url, &tok_b, &base.join("b")),
            legacy_center: None,
            hedge_ratio: None,
            hedge_login: None,
        },
    )));
    let (kill_names, pid_files, dry_run) = match &copier {
        Some(c) => (Vec::new(), vec![c.pid_file.clone()], false),
        None => (vec!["javaw.exe".to_owned()], Vec::new(), true),
    };
    agents.push(tokio::spawn(hedge_agent::tumbler::run(
        hedge_agent::tumbler::TumblerArgs {
            agent: agent_args(port_w, CLIENT_A, ".r", &url, &tok_w, &base.join("w")),
            kill: kill_names,
            pid_files,
            symbols: Vec::new(),
            magics: Vec::new(),
            rearm: false,
            dry_run,
            // Client A's own agent registers the account.
            no_register: true,
        },
    )));
    // Client A's terminal streams to both its client agent and the tumbler.
    let relay = Relay::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], port_a)),
        std::net::SocketAddr::from(([127, 0, 0, 1], port_w)),
    )
    .await
    .context("starting the relay for client A's terminal")?;
    match &copier {
        Some(c) => t.emit(
            "copier",
            format!("copier stand-in running as javaw.exe, pid {}", c.pid),
            json!({ "pid": c.pid }),
        ),
        None => t.emit(
            "copier",
            "no `sleep` to stand in for the copier here: the tumbler runs dry",
            json!({}),
        ),
    }

    // The hedger, in trigger mode, in this process so its events feed the timeline.
    let listener = TerminalListener::bind_with(
        "127.0.0.1:0",
        TerminalConfig {
            expected_login: Some(HEDGE),
            ..TerminalConfig::default()
        },
    )
    .await?;
    let hedger_addr = listener.local_addr();
    let hedger_terminal = listener.start();
    let hedger_center = CenterClient::new(url.clone(), Some(tok_h))?;
    let mirror_center = hedger_center.clone();
    let outbox = Outbox::open(&base.join("hedger.db"))?;
    let sender = tokio::spawn(outbox.clone().run_sender(
        HedgeDelivery {
            center: hedger_center.clone(),
            login: HEDGE,
        },
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        },
    ));
    let (hedger_tx, mut hedger_rx) = broadcast::channel(1024);
    let plan = Arc::new(PlanHolder::default());
    let follower = tokio::spawn(follow_plan(
        hedger_center.clone(),
        HEDGE,
        plan.clone(),
        Duration::from_secs(2),
        Some(hedger_tx.clone()),
    ));
    let mut options = HedgerOptions::new(HEDGE, Mode::Trigger);
    options.once = true;
    options.symbol_map = map_h.clone();
    let hedger = tokio::spawn(
        Hedger::new(
            hedger_terminal.clone(),
            Some(hedger_center),
            outbox.clone(),
            options,
            plan.clone(),
            Some(hedger_tx.clone()),
        )
        .run(),
    );
    let reaction = Arc::new(std::sync::Mutex::new((None::<u64>, 0usize, false)));
    let live_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hedger_printer = {
        let t = t.clone();
        let reaction = reaction.clone();
        let live_flag = live_flag.clone();
        tokio::spawn(async move {
            loop {
                match hedger_rx.recv().await {
                    Ok(e) => {
                        print_hedger_event(
                            &t,
                            &e,
                            live_flag.load(std::sync::atomic::Ordering::Relaxed),
                        );
                        if live_flag.load(std::sync::atomic::Ordering::Relaxed) {
                            continue;
                        }
                        if let Ok(mut r) = reaction.lock() {
                            match &e {
                                HedgerEvent::Batch {
                                    elapsed_us, orders, ..
                                } => {
                                    r.0 = Some(*elapsed_us);
                                    r.1 += orders;
                                }
                                HedgerEvent::Finished => r.2 = true,
                                _ => {}
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    };

    // The simulated terminals connect to their agents, as the EA does.
    let sim = |port: String, login: Login, mode: AccountMarginMode, map: &SymbolMap, n: u64| {
        let mut account = AccountConfig {
            login,
            mode,
            seed: opts.seed.wrapping_add(n),
            first_ticket: 100_000 * (n + 1),
            ..AccountConfig::default()
        };
        account.server = "HedgeSim-Demo".into();
        let mut config = SimConfig::new(port, account);
        config.symbols = default_symbols_for(map);
        config.feed = FeedConfig::RandomWalk {
            interval: Duration::from_millis(250),
        };
        Arc::new(SimTerminal::spawn(config))
    };
    let sim_a = sim(
        relay.addr().to_string(),
        CLIENT_A,
        AccountMarginMode::RetailNetting,
        &map_a,
        1,
    );
    let sim_b = sim(
        format!("127.0.0.1:{port_b}"),
        CLIENT_B,
        AccountMarginMode::RetailHedging,
        &map_b,
        2,
    );
    let sim_h = sim(
        hedger_addr.to_string(),
        HEDGE,
        AccountMarginMode::RetailHedging,
        &map_h,
        3,
    );
    for (name, s) in [
        (
            "client A (1001, netting, EURUSD.r; client agent and tumbler)",
            &sim_a,
        ),
        ("client B (1002, hedging, mEURUSD)", &sim_b),
        ("hedge account (2001, hedging, EURUSD-ECN)", &sim_h),
    ] {
        if !s.wait_connected(Duration::from_secs(10)).await {
            bail!("the simulated terminal of {name} did not connect to its agent");
        }
        t.emit("terminal", format!("{name} connected"), json!({}));
    }
    // Every account registered: the plan needs the hedge account's symbols.
    let registered = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let accounts = view.accounts().await.unwrap_or_default();
            let logins: Vec<Login> = accounts.iter().map(|a| a.registration.login).collect();
            if [CLIENT_A, CLIENT_B, HEDGE]
                .iter()
                .all(|l| logins.contains(l))
            {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if !registered {
        bail!("not every agent registered with the center");
    }

    // The signal: the copier opens the same basket on every account.
    let basket = |eur: i64, xau: i64| {
        vec![
            SignalTrade {
                canonical: "EURUSD",
                side: Side::Buy,
                volume: lots(eur),
            },
            SignalTrade {
                canonical: "XAUUSD",
                side: Side::Sell,
                volume: lots(xau),
            },
        ]
    };
    let accounts: [(&str, &Arc<SimTerminal>, &SymbolMap, Vec<SignalTrade>); 3] = [
        ("client A 1001", &sim_a, &map_a, basket(10, 5)),
        ("client B 1002", &sim_b, &map_b, basket(20, 3)),
        ("hedge 2001", &sim_h, &map_h, basket(1, 1)),
    ];
    t.emit(
        "signal",
        "signal: the copier opens EURUSD buy / XAUUSD sell on every account",
        json!({}),
    );
    for (name, s, map, trades) in &accounts {
        for trade in trades {
            let symbol = map.to_account(trade.canonical);
            let reply = s.open(&symbol, trade.side, trade.volume, SIGNAL_MAGIC, "signal#42");
            t.emit(
                "open",
                format!(
                    "{name}: {} {} {} -> retcode {}, position {}",
                    trade.side, trade.volume, symbol, reply.retcode, reply.position
                ),
                json!({ "account": name, "symbol": symbol, "side": trade.side, "volume": trade.volume, "retcode": reply.retcode }),
            );
            if !reply.retcode.is_done() {
                bail!("the signal's open on {name} failed: {}", reply.retcode);
            }
        }
    }
    // The tumbler on client A kills the copier the moment the copier's first position appears.
    let killed_at = Instant::now();
    let copier_dead = match copier {
        Some(mut c) => match tokio::time::timeout(Duration::from_secs(10), c.child.wait()).await {
            Ok(Ok(status)) => {
                t.emit(
                        "tumbler",
                        format!(
                            "tumbler killed the copier (javaw.exe, pid {}) {:.1} ms after the open; {status}",
                            c.pid,
                            killed_at.elapsed().as_secs_f64() * 1000.0
                        ),
                        json!({ "pid": c.pid }),
                    );
                true
            }
            _ => {
                let _ = c.child.start_kill();
                t.emit(
                    "tumbler",
                    "the copier was not killed within 10 s",
                    json!({}),
                );
                false
            }
        },
        None => true,
    };

    // The hedger must hold the plan for the clients' exposure before the close arrives.
    let expected = |p: &HedgePlan| {
        p.items.len() == 2
            && p.items
                .iter()
                .any(|i| i.symbol == "EURUSD" && i.volume == lots(30))
            && p.items
                .iter()
                .any(|i| i.symbol == "XAUUSD" && i.volume == lots(8))
    };
    let plan_ready = wait_for(Duration::from_secs(15), || {
        plan.get().as_ref().is_some_and(expected)
    })
    .await;
    if !plan_ready {
        t.emit(
            "plan",
            format!(
                "the hedger's plan did not reach the expected exposure: {:?}",
                plan.get().map(|p| p.items)
            ),
            json!({}),
        );
    }

    // The central close: the copier is dead, so only the hedge account receives it.
    t.emit(
        "signal",
        "central close: only the hedge account still follows the signal",
        json!({}),
    );
    for p in sim_h.positions() {
        if p.magic == SIGNAL_MAGIC {
            let reply = sim_h.close(p.identifier, None);
            t.emit(
                "close",
                format!(
                    "hedge 2001: close position {} {} -> retcode {}",
                    p.identifier, p.symbol, reply.retcode
                ),
                json!({ "position": p.identifier, "retcode": reply.retcode }),
            );
        }
    }
    let finished = wait_for(Duration::from_secs(15), || {
        reaction.lock().map(|r| r.2).unwrap_or(false) || hedger.is_finished()
    })
    .await;
    if !finished {
        t.emit("hedger", "the hedger did not finish within 15 s", json!({}));
    }
    // Records reach the center.
    wait_for(Duration::from_secs(5), || {
        outbox.pending().map(|n| n == 0).unwrap_or(false)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The final table.
    let holdings = |s: &SimTerminal, map: &SymbolMap| -> Vec<Holding> {
        s.positions()
            .into_iter()
            .map(|p| Holding {
                symbol: map.to_canonical(&p.symbol).unwrap_or(p.symbol.clone()),
                side: p.position_type.side(),
                volume: p.volume,
            })
            .collect()
    };
    let mut clients = holdings(&sim_a, &map_a);
    clients.extend(holdings(&sim_b, &map_b));
    let hedge = holdings(&sim_h, &map_h);
    let rows = table(&clients, &hedge);
    let ok = holds(&rows) && copier_dead;
    print_table(&t, &rows);
    let (reaction_us, hedge_orders, _) = reaction.lock().map(|r| *r).unwrap_or((None, 0, false));
    t.emit(
        "result",
        if ok {
            "the hedge account is net opposite to the clients: check passed"
        } else {
            "check FAILED: the hedge account does not mirror the clients"
        },
        json!({ "ok": ok, "reaction_us": reaction_us, "hedge_orders": hedge_orders }),
    );

    let mut mirror = None;
    if !opts.keep_running.is_zero() {
        // The live phase: the hedger follows the plan position by position (mirror mode) and
        // carries out the operator's close/retry commands; the clients keep trading.
        // One hedger per account: the trigger-mode one is done (or given up on) by now.
        hedger.abort();
        let mut options = HedgerOptions::new(HEDGE, Mode::Mirror);
        options.symbol_map = map_h.clone();
        live_flag.store(true, std::sync::atomic::Ordering::Relaxed);
        mirror = Some(tokio::spawn(
            Hedger::new(
                hedger_terminal.clone(),
                Some(mirror_center),
                outbox.clone(),
                options,
                plan.clone(),
                Some(hedger_tx.clone()),
            )
            .run(),
        ));
        t.emit(
            "live",
            format!(
                "live for {} s: the clients keep trading, the hedger mirrors them and takes commands; dashboard at {url}/ (token in {}); Ctrl-C to stop",
                opts.keep_running.as_secs(),
                token_file.display()
            ),
            json!({ "url": url, "duration_s": opts.keep_running.as_secs() }),
        );
        let live_accounts = [
            LiveAccount {
                name: "client A 1001",
                sim: sim_a.clone(),
                map: map_a.clone(),
                netting: true,
            },
            LiveAccount {
                name: "client B 1002",
                sim: sim_b.clone(),
                map: map_b.clone(),
                netting: false,
            },
        ];
        let keep = opts.keep_running;
        let interrupt = opts.interrupt.clone();
        interrupt.enter_live();
        let summary = live::run(&t, &live_accounts, opts.seed, LIVE_INTERVAL, async move {
            tokio::select! {
                _ = tokio::time::sleep(keep) => {}
                _ = interrupt.fired() => {}
            }
        })
        .await;
        // The last trade's hedge may still be in flight: give it a moment before looking.
        let mirrors = || {
            let mut clients = holdings(&sim_a, &map_a);
            clients.extend(holdings(&sim_b, &map_b));
            holds(&table(&clients, &holdings(&sim_h, &map_h)))
        };
        let mirrored = wait_for(Duration::from_secs(3), mirrors).await;
        t.emit(
            "live",
            format!(
                "live phase over: {} opens, {} closes, {} refused; {}",
                summary.opens,
                summary.closes,
                summary.refused,
                if mirrored {
                    "the hedge account mirrors the clients"
                } else {
                    "the hedge account differs from the clients (a symbol paused or a hedge closed by an operator, or a hedge still in flight)"
                }
            ),
            json!({ "opens": summary.opens, "closes": summary.closes, "refused": summary.refused, "mirrors": mirrored }),
        );
        // The scenario's table scrolled away long ago: the accounts as the live phase left them.
        let mut clients = holdings(&sim_a, &map_a);
        clients.extend(holdings(&sim_b, &map_b));
        t.plain("");
        t.plain("After the live phase:");
        print_table(&t, &table(&clients, &holdings(&sim_h, &map_h)));
    }

    // Shut everything down.
    follower.abort();
    hedger.abort();
    if let Some(m) = &mirror {
        m.abort();
    }
    relay.stop();
    sender.abort();
    for a in &agents {
        a.abort();
    }
    for s in [&sim_a, &sim_b, &sim_h] {
        s.stop().await;
    }
    hedger_terminal.shutdown().await;
    printer.abort();
    hedger_printer.abort();
    center.shutdown().await;
    Ok(DemoOutcome {
        rows,
        ok,
        center_url: url,
        reaction_us,
        hedge_orders,
    })
}

/// The net table: per symbol the clients' and the hedge account's net volume and what is left
/// uncovered (in JSON mode, one `row` entry per symbol).
fn print_table(t: &Timeline, rows: &[ExposureRow]) {
    t.plain("");
    t.plain(format!(
        "{:<8} {:>12} {:>12} {:>10} {:>7}  {}",
        "symbol", "clients net", "hedge net", "uncovered", "ratio", "check"
    ));
    for r in rows {
        t.plain(format!(
            "{:<8} {:>12} {:>12} {:>10} {:>7}  {}",
            r.symbol,
            r.client_net.to_string(),
            r.hedge_net.to_string(),
            r.uncovered.to_string(),
            r.ratio.clone().unwrap_or_else(|| "-".into()),
            if r.ok { "ok" } else { "MISMATCH" }
        ));
        if t.is_json() {
            t.emit(
                "row",
                format!(
                    "{} clients {} hedge {}",
                    r.symbol, r.client_net, r.hedge_net
                ),
                serde_json::to_value(r).unwrap_or(json!({})),
            );
        }
    }
    t.plain("");
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
