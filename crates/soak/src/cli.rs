//! `hedge soak`: the command, the runner that plays the script, and the report.

use crate::invariants::{self, ClientView, HedgeView, Observed, Verdict};
use crate::proxy::ProxyFaults;
use crate::script::{AccountRef, Process, Rates, Script, Step};
use crate::system::{System, TerminalFaults, CLIENTS, COPIER, HEDGES};
use anyhow::Context;
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::{
    ActionKind, ActionRequest, BreakerState, HedgePlan, HedgeStatus, PageQuery, PlanItemId,
    Position, PositionFilter,
};
use hedge_domain::{Login, Magic, Price, Side, SymbolMap, Volume};
use hedge_sim::{Faults, SimTerminal};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs the whole system on a seeded trading script with seeded faults, then checks that the
/// books agree. Prints the seed; the same seed plays the same script.
#[derive(clap::Args, Clone, Debug)]
pub struct SoakArgs {
    /// Seconds of trading and faults; the system then settles and is checked [default: 60].
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub duration: u64,
    /// Seed of the script and of every fault (a random one when absent; it is printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seconds allowed after the last fault for every invariant to hold [default: 60].
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub settle_timeout: u64,
    /// Mean milliseconds between two client trades.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub trade_interval_ms: u64,
    /// `kill -9` of the center, per minute.
    #[arg(long, value_name = "N", default_value_t = 2.0)]
    pub center_kills_per_min: f64,
    /// `kill -9` of an agent, per minute.
    #[arg(long, value_name = "N", default_value_t = 4.0)]
    pub agent_kills_per_min: f64,
    /// Terminal restarts (fresh snapshot), per minute.
    #[arg(long, value_name = "N", default_value_t = 3.0)]
    pub terminal_restarts_per_min: f64,
    /// Positions closed by their stop-loss, per minute.
    #[arg(long, value_name = "N", default_value_t = 4.0)]
    pub stop_outs_per_min: f64,
    /// Hedge terminals: probability of a requote per market order.
    #[arg(long, value_name = "P", default_value_t = 0.1)]
    pub requote_rate: f64,
    /// Hedge terminals: probability of a reject per market order.
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub reject_rate: f64,
    /// Hedge terminals: added latency per command, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub latency_ms: u64,
    /// Lots per quote on the first hedge account's XAUUSD (0: unlimited) [default: 0.3].
    #[arg(long, value_name = "LOTS", default_value = "0.3")]
    pub thin_liquidity: Decimal,
    /// Center: probability that a write is refused (503).
    #[arg(long, value_name = "P", default_value_t = 0.03)]
    pub refuse_rate: f64,
    /// Center: probability that a request is answered slowly.
    #[arg(long, value_name = "P", default_value_t = 0.02)]
    pub slow_rate: f64,
    /// Center: probability that a write's answer is lost after the center committed it.
    #[arg(long, value_name = "P", default_value_t = 0.02)]
    pub lost_answer_rate: f64,
    /// One JSON object on standard output instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Keep the run's folder (databases, each process's log) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// The `hedge` binary to run the parts with (default: this one).
    #[arg(long, value_name = "PATH")]
    pub hedge_bin: Option<PathBuf>,
}

/// What a run did and found.
#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub ok: bool,
    pub seed: u64,
    pub duration_s: u64,
    pub trades: BTreeMap<&'static str, u64>,
    pub faults: BTreeMap<String, serde_json::Value>,
    pub process_starts: BTreeMap<String, u32>,
    /// Processes that exited on their own during the run.
    pub crashes: Vec<String>,
    /// From the end of the faults to every invariant holding; `None` when they never did.
    pub settle_ms: Option<u64>,
    pub invariants: Vec<Verdict>,
    pub folder: Option<String>,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            % 1_000_000
    });
    if !args.json {
        println!("soak: seed {seed}, {} s of trading", args.duration);
    }
    let report = soak(&args, seed).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if !report.ok {
        let broken: Vec<&str> = report
            .invariants
            .iter()
            .filter(|v| !v.ok)
            .map(|v| v.name)
            .collect();
        anyhow::bail!(
            "seed {seed}: {} (replay with --seed {seed})",
            if broken.is_empty() {
                "a process crashed".to_owned()
            } else {
                format!("broken: {}", broken.join(", "))
            }
        );
    }
    Ok(())
}

fn print_report(r: &SoakReport) {
    println!("trades: {:?}", r.trades);
    for (k, v) in &r.faults {
        println!("faults {k}: {v}");
    }
    println!("process starts: {:?}", r.process_starts);
    for c in &r.crashes {
        println!("CRASH {c}");
    }
    match r.settle_ms {
        Some(ms) => println!("settled {ms} ms after the last fault"),
        None => println!("did NOT settle"),
    }
    for v in &r.invariants {
        println!(
            "{} {}: {}",
            if v.ok { "ok  " } else { "FAIL" },
            v.name,
            v.figures
        );
        for d in &v.details {
            println!("       {d}");
        }
    }
    if let Some(f) = &r.folder {
        println!("logs and databases kept in {f}");
    }
    println!(
        "seed {}: {}",
        r.seed,
        if r.ok {
            "all invariants hold"
        } else {
            "FAILED"
        }
    );
}

async fn soak(args: &SoakArgs, seed: u64) -> anyhow::Result<SoakReport> {
    let exe = match &args.hedge_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding the hedge binary")?,
    };
    let dir = tempfile::Builder::new().prefix("hedge-soak-").tempdir()?;
    let proxy_faults = ProxyFaults {
        refuse_rate: args.refuse_rate,
        slow_rate: args.slow_rate,
        lost_answer_rate: args.lost_answer_rate,
    };
    let terminal_faults = TerminalFaults {
        requote_rate: args.requote_rate,
        reject_rate: args.reject_rate,
        latency_ms: args.latency_ms,
        thin_liquidity: (!args.thin_liquidity.is_zero()).then_some(Volume(args.thin_liquidity)),
    };
    let rates = Rates {
        trade_interval_ms: args.trade_interval_ms,
        center_kills_per_min: args.center_kills_per_min,
        agent_kills_per_min: args.agent_kills_per_min,
        terminal_restarts_per_min: args.terminal_restarts_per_min,
        stop_outs_per_min: args.stop_outs_per_min,
    };
    let script = Script::generate(
        seed,
        args.duration * 1000,
        &rates,
        CLIENTS.len(),
        HEDGES.len(),
    );
    let mut system = System::start(
        exe,
        dir.path(),
        seed,
        proxy_faults.clone(),
        &terminal_faults,
    )
    .await?;
    let items_seen = Arc::new(Mutex::new(BTreeMap::new()));
    let watcher = tokio::spawn(watch_plans(system.admin.clone(), items_seen.clone()));

    let mut played = Played::default();
    let outcome = play(&mut system, &script, &mut played).await;
    // Calm: no more faults, every process up.
    system.proxy.calm();
    for t in &system.hedges {
        t.set_faults(Faults::default());
    }
    let mut crashes = played.crashes.clone();
    for (p, status) in system.exited() {
        crashes.push(format!("{p:?} exited by itself: {status}"));
    }
    for p in all_processes() {
        system.restart(p).await?;
    }
    outcome?;
    let settled = settle(&system, &items_seen, args.settle_timeout).await?;
    let (settle_ms, invariants) = (settled.settle_ms, settled.invariants);
    let operator_retries = settled.operator_retries;
    for (p, status) in system.exited() {
        crashes.push(format!("{p:?} exited by itself: {status}"));
    }
    watcher.abort();
    let mut faults: BTreeMap<String, serde_json::Value> = played
        .faults
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
        .collect();
    faults.insert(
        "center_proxy".into(),
        serde_json::to_value(system.proxy.counts())?,
    );
    faults.insert(
        "operator_retries_of_halted_symbols".into(),
        serde_json::json!(operator_retries),
    );
    faults.insert(
        "hedge_terminals".into(),
        serde_json::to_value(&terminal_faults)?,
    );
    let process_starts = system.starts();
    let ok = settle_ms.is_some() && crashes.is_empty() && invariants.iter().all(|v| v.ok);
    if args.keep || !ok {
        dump_accounts(&system);
    }
    system.shutdown().await;
    let folder = if args.keep || !ok {
        Some(dir.keep().display().to_string())
    } else {
        None
    };
    Ok(SoakReport {
        ok,
        seed,
        duration_s: args.duration,
        trades: played.trades,
        faults,
        process_starts,
        crashes,
        settle_ms,
        invariants,
        folder,
    })
}

/// How the system settled once calm.
struct Settled {
    /// Milliseconds until every invariant held, `None` if they did not within the timeout.
    settle_ms: Option<u64>,
    /// The verdicts of the full check (with the events) at that moment.
    invariants: Vec<Verdict>,
    /// Halted symbols the soak retried as an operator would.
    operator_retries: u64,
}

/// Waits up to `timeout_s` seconds for every invariant to hold, retrying halted symbols as an
/// operator would, then checks once more with the event log.
async fn settle(
    system: &System,
    items_seen: &Mutex<BTreeMap<(Login, PlanItemId), Volume>>,
    timeout_s: u64,
) -> anyhow::Result<Settled> {
    let calm = Instant::now();
    let deadline = calm + Duration::from_secs(timeout_s);
    let mut operator_retries = 0u64;
    let mut last_retry = BTreeMap::new();
    loop {
        operator_retries += retry_halted(&system.admin, &mut last_retry).await;
        let observed = observe(system, items_seen, false).await;
        let quick_ok = observed
            .as_ref()
            .map(|o| invariants::check(o).iter().all(|v| v.ok))
            .unwrap_or(false);
        if quick_ok || Instant::now() >= deadline {
            let settle_ms = quick_ok.then(|| calm.elapsed().as_millis() as u64);
            let full = observe(system, items_seen, true).await?;
            return Ok(Settled {
                settle_ms,
                invariants: invariants::check(&full),
                operator_retries,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each terminal's positions and deals, as JSON lines in the run's folder, to read beside the logs.
fn dump_accounts(system: &System) {
    let accounts = CLIENTS
        .iter()
        .enumerate()
        .map(|(i, c)| (c.login, system.terminal(AccountRef::Client(i))))
        .chain(
            HEDGES
                .iter()
                .enumerate()
                .map(|(i, h)| (h.login, system.terminal(AccountRef::Hedge(i)))),
        );
    for (login, t) in accounts {
        let mut text = String::new();
        for p in t.positions() {
            text.push_str(&serde_json::json!({ "position": p }).to_string());
            text.push('\n');
        }
        for d in t.deals() {
            text.push_str(&serde_json::json!({ "deal": d }).to_string());
            text.push('\n');
        }
        let path = system.folder().join(format!("account-{login}.jsonl"));
        if let Err(e) = std::fs::write(&path, text) {
            tracing::warn!(error = %e, path = %path.display(), "account not written");
        }
    }
}

fn all_processes() -> Vec<Process> {
    let mut all = vec![Process::Center, Process::Tumbler];
    all.extend((0..CLIENTS.len()).map(Process::Client));
    all.extend((0..HEDGES.len()).map(Process::Hedger));
    all
}

#[derive(Default)]
struct Played {
    trades: BTreeMap<&'static str, u64>,
    faults: BTreeMap<&'static str, u64>,
    crashes: Vec<String>,
}

/// Plays the script against the running system, in real time.
async fn play(system: &mut System, script: &Script, played: &mut Played) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    let mut restarts: Vec<(tokio::time::Instant, Process)> = Vec::new();
    for timed in &script.steps {
        let at = start + Duration::from_millis(timed.at_ms);
        loop {
            let now = tokio::time::Instant::now();
            restarts.sort_by_key(|(t, _)| *t);
            match restarts.first() {
                Some((t, _)) if *t <= now => {
                    let (_, p) = restarts.remove(0);
                    system.restart(p).await?;
                }
                Some((t, _)) if *t < at => tokio::time::sleep_until(*t).await,
                _ => {
                    tokio::time::sleep_until(at).await;
                    break;
                }
            }
        }
        for (p, status) in system.exited() {
            played
                .crashes
                .push(format!("{p:?} exited by itself: {status}"));
            if !restarts.iter().any(|(_, q)| *q == p) {
                restarts.push((tokio::time::Instant::now(), p));
            }
        }
        if let Some(kind) = timed.step.fault_kind() {
            *played.faults.entry(kind).or_default() += 1;
        }
        match &timed.step {
            Step::Open {
                client,
                symbol,
                side,
                volume,
            } => {
                let t = system.terminal(AccountRef::Client(*client));
                let name = SymbolMap::from_affix(CLIENTS[*client].affix).to_account(symbol);
                let reply = t.open(&name, *side, *volume, Magic(0), "soak");
                *played
                    .trades
                    .entry(if reply.retcode.is_done() {
                        "opens"
                    } else {
                        "opens_refused"
                    })
                    .or_default() += 1;
            }
            Step::Reduce {
                client,
                pick,
                percent,
            } => {
                let t = system.terminal(AccountRef::Client(*client));
                if reduce(&t, *pick, *percent) {
                    *played
                        .trades
                        .entry(if *percent == 100 {
                            "closes"
                        } else {
                            "partial_closes"
                        })
                        .or_default() += 1;
                }
            }
            Step::StopOut { account, pick } => {
                let t = system.terminal(*account);
                if !stop_out(&t, *pick) {
                    *played.faults.entry("stop_out_nothing_open").or_default() += 1;
                }
            }
            Step::Kill { process, down_ms } => {
                system.kill(*process).await;
                restarts.retain(|(_, p)| p != process);
                restarts.push((
                    tokio::time::Instant::now() + Duration::from_millis(*down_ms),
                    *process,
                ));
            }
            Step::RestartTerminal { account } => system.terminal(*account).disconnect(),
            Step::CopierOpen { symbol } => {
                let reply = system.copier.open(
                    symbol,
                    Side::Buy,
                    Volume(Decimal::new(1, 2)),
                    Magic(0),
                    "copier",
                );
                if reply.retcode.is_done() {
                    *played.trades.entry("copier_opens").or_default() += 1;
                }
            }
        }
    }
    Ok(())
}

/// Reduces the `pick`-th open position by `percent` (on the 0.01 grid); false when nothing is open.
fn reduce(t: &SimTerminal, pick: u64, percent: u8) -> bool {
    let mut positions = t.positions();
    if positions.is_empty() {
        return false;
    }
    positions.sort_by_key(|p| p.identifier);
    let p = &positions[(pick % positions.len() as u64) as usize];
    let part = (p.volume.0 * Decimal::from(percent) / Decimal::from(100))
        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero);
    let volume = (percent < 100 && part.is_sign_positive() && !part.is_zero() && part < p.volume.0)
        .then_some(Volume(part));
    t.close(p.identifier, volume).retcode.is_done()
}

/// Closes the `pick`-th open position by its stop-loss: the stop is set just beyond the market
/// and the market moved through it. False when nothing is open.
fn stop_out(t: &SimTerminal, pick: u64) -> bool {
    let mut positions = t.positions();
    if positions.is_empty() {
        return false;
    }
    positions.sort_by_key(|p| p.identifier);
    let p = positions[(pick % positions.len() as u64) as usize].clone();
    let Some((bid, ask, point)) =
        t.with_account(|a| a.symbol(&p.symbol).map(|s| (s.bid, s.ask, s.spec.point)))
    else {
        return false;
    };
    let step = point.0 * Decimal::from(20);
    let spread = ask.0 - bid.0;
    let (sl, new_bid) = match p.position_type.side() {
        Side::Buy => (bid.0 - step, bid.0 - step - point.0),
        Side::Sell => (ask.0 + step, ask.0 + step + point.0 - spread),
    };
    if !t.modify(p.identifier, Price(sl), p.tp).retcode.is_done() {
        return false;
    }
    t.set_quote(&p.symbol, Price(new_bid), Price(new_bid + spread));
    true
}

/// What an operator does when a hedge account halted a symbol after consecutive rejections (its
/// breaker, shown on the dashboard): retry the newest failed hedge of that symbol, which resets the
/// breaker. At most one retry per symbol every 5 s: the status that shows the breaker closed again
/// comes with the next heartbeat. Returns the retries asked for.
async fn retry_halted(
    admin: &CenterClient,
    last_retry: &mut BTreeMap<(u64, String), Instant>,
) -> u64 {
    let mut asked = 0;
    for h in &HEDGES {
        let login = Login(h.login);
        let Ok(account) = admin.account(login).await else {
            continue;
        };
        let halted: Vec<String> = account
            .status
            .map(|s| {
                s.breakers
                    .into_iter()
                    .filter(|(_, state)| *state != BreakerState::Closed)
                    .map(|(symbol, _)| symbol)
                    .collect()
            })
            .unwrap_or_default();
        if halted.is_empty() {
            continue;
        }
        let Ok(hedges) = hedge_hedger::runtime::all_hedges(admin, login, None).await else {
            continue;
        };
        for symbol in halted {
            let key = (h.login, symbol.clone());
            if last_retry
                .get(&key)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
            {
                continue;
            }
            let failed = hedges
                .iter()
                .filter(|x| {
                    x.status == HedgeStatus::Failed
                        && (x.symbol == symbol || x.account_symbol == symbol)
                })
                .max_by_key(|x| x.id);
            if let Some(f) = failed {
                let mut action = ActionRequest::new(ActionKind::RetryHedge);
                action.hedge_id = Some(f.id);
                action.reason = "soak operator: retry the halted symbol".into();
                if admin
                    .action(&hedge_center_api::client::new_action_key(), &action)
                    .await
                    .is_ok()
                {
                    asked += 1;
                    last_retry.insert(key, Instant::now());
                }
            }
        }
    }
    asked
}

/// Reads every hedge account's plan after each event the center stores (a plan item changes only
/// with an event) and keeps the largest volume each item had.
async fn watch_plans(admin: CenterClient, seen: Arc<Mutex<BTreeMap<(Login, PlanItemId), Volume>>>) {
    let mut events = admin.subscribe(None);
    loop {
        // Several events at once need one read; a stream that broke is resumed by the client.
        match tokio::time::timeout(Duration::from_millis(500), events.next()).await {
            Ok(Some(Ok(_))) | Err(_) => {}
            // The center is down (a kill): do not spin while it comes back.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        for h in &HEDGES {
            if let Ok(plan) = admin.plan(Login(h.login)).await {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                for item in plan.items {
                    let v = seen
                        .entry((Login(h.login), item.id))
                        .or_insert(Volume::ZERO);
                    if item.volume > *v {
                        *v = item.volume;
                    }
                }
            }
        }
    }
}

async fn all_positions(admin: &CenterClient, login: Login) -> anyhow::Result<Vec<Position>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = admin
            .positions(&PositionFilter {
                login: Some(login),
                after,
                limit: Some(1000),
                ..PositionFilter::default()
            })
            .await?;
        out.extend(page.items);
        match page.next_after {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// Reads the accounts and the center. `events` also reads the whole event log.
async fn observe(
    system: &System,
    items_seen: &Mutex<BTreeMap<(Login, PlanItemId), Volume>>,
    events: bool,
) -> anyhow::Result<Observed> {
    let mut o = Observed::default();
    for (i, c) in CLIENTS.iter().enumerate() {
        let t = &system.clients[i];
        o.clients.push(ClientView {
            login: Login(c.login),
            netting: c.mode.is_netting(),
            hedge_login: Login(HEDGES[c.hedge].login),
            map: SymbolMap::from_affix(c.affix),
            positions: t.positions(),
            deals: t.deals(),
        });
        o.center_positions
            .extend(all_positions(&system.admin, Login(c.login)).await?);
    }
    let mut plans: Vec<HedgePlan> = Vec::new();
    for (i, h) in HEDGES.iter().enumerate() {
        let t = &system.hedges[i];
        o.hedges.push(HedgeView {
            login: Login(h.login),
            netting: h.mode.is_netting(),
            map: SymbolMap::from_affix(h.affix),
            positions: t.positions(),
            deals: t.deals(),
        });
        o.center_hedges
            .extend(hedge_hedger::runtime::all_hedges(&system.admin, Login(h.login), None).await?);
        plans.push(system.admin.plan(Login(h.login)).await?);
    }
    o.plans = plans;
    if events {
        let mut after = None;
        loop {
            let page = system
                .admin
                .events(&PageQuery {
                    after,
                    limit: Some(1000),
                    ..PageQuery::default()
                })
                .await?;
            o.events.extend(page.items);
            match page.next_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    o.items_seen = items_seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let _ = COPIER;
    Ok(o)
}
