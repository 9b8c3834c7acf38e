//! The demo scenario: every component started in this process, the signal played, the result checked.
//!
//! Entry point: [`run`], which starts the center (`center.rs`), the client agents, the tumbler and
//! the copier stand-in (`agents.rs`), a hedger per hedge account (`hedger.rs`) and the simulated
//! accounts (`accounts.rs`: four brokers that name and size gold differently; it also plays the
//! signal and the central close), sets the operator's 60/40 allocation through the center's API,
//! then checks the net table in base quantity and, with `--duration`, runs the live phase.

mod accounts;
mod agents;
mod center;
mod hedger;

mod table;

use crate::exposure::{holds, quantity, unit_of, BookRole, Explanation, ExposureRow};
use crate::interrupt::Interrupt;
use crate::live;
use crate::timeline::Timeline;
use accounts::{Broker, SimAccounts};
use anyhow::Context;
use hedge_center_api::client::{new_action_key, CenterClient};
use hedge_center_api::model::{
    ActionKind, ActionRequest, AllocationWeight, HedgePlan, ResidualReason,
};
use hedge_domain::{Login, Magic, Volume};
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
    /// Trigger → every hedge order answered, microseconds (the slower hedge account).
    pub reaction_us: Option<u64>,
    pub hedge_orders: usize,
}

const CLIENT_A: Login = Login(1001);
const CLIENT_B: Login = Login(1002);
const HEDGE_1: Login = Login(2001);
const HEDGE_2: Login = Login(2002);
/// How often the live phase trades on a client account.
const LIVE_INTERVAL: Duration = Duration::from_secs(2);
/// The signal service's magic number (the copier's trades carry it).
const SIGNAL_MAGIC: Magic = Magic(777);

fn lots(units: i64) -> Volume {
    Volume(Decimal::new(units, 2))
}

fn free_port() -> anyhow::Result<u16> {
    hedge_protocol::free_listen_port().context("no free loopback port")
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
    let center = center::start(&base, &t).await?;
    let url = center.url.clone();
    let mut agents = agents::start(&base, &url, &center.tokens, &t).await?;
    let brokers = accounts::brokers();
    let mut hedgers = start_hedgers(&base, &center, &brokers, &t).await?;
    let address = |b: &Broker| match b.login {
        CLIENT_A => Some(agents.relay.addr().to_string()),
        CLIENT_B => Some(format!("127.0.0.1:{}", agents.port_b)),
        login => hedgers
            .iter()
            .find(|h| h.login == login)
            .map(|h| h.addr.to_string()),
    };
    let setup: Vec<(Broker, String)> = brokers
        .iter()
        .filter_map(|b| Some((b.clone(), address(b)?)))
        .collect();
    let sims = SimAccounts::connect(setup, opts.seed, &t).await?;
    if let Err(e) = accounts::wait_registered(&center.view).await {
        let failures = agents.failures().await;
        anyhow::bail!(
            "{e}{}",
            failures
                .iter()
                .map(|f| format!("; {f}"))
                .collect::<String>()
        );
    }
    allocate(&center.view, &brokers, &t).await?;

    sims.play_signal(&t)?;
    // The tumbler on client A kills the copier the moment the copier's first position appears.
    let copier_dead = agents::copier_killed(agents.copier.take(), &t).await;
    wait_for_plans(&hedgers, &brokers, &t).await;
    sims.central_close(&t);
    if !wait_for(Duration::from_secs(15), || {
        hedgers.iter().all(|h| h.trigger_done())
    })
    .await
    {
        t.emit(
            "hedger",
            "the hedgers did not finish within 15 s",
            json!({}),
        );
    }
    // Records reach the center.
    wait_for(Duration::from_secs(5), || {
        hedgers
            .iter()
            .all(|h| h.outbox.pending().map(|n| n == 0).unwrap_or(false))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let rows = sims.table(&residuals(&center.view, &brokers).await);
    let ok = holds(&rows) && copier_dead;
    table::print(&t, &rows);
    let reactions: Vec<hedger::Reaction> = hedgers.iter().map(|h| h.reaction()).collect();
    let reaction_us = reactions.iter().filter_map(|r| r.elapsed_us).max();
    let hedge_orders = reactions.iter().map(|r| r.orders).sum();
    t.emit(
        "result",
        if ok {
            "the hedge accounts together are opposite the clients in ounces and currency units, split as allocated: check passed"
        } else {
            "check FAILED: the hedge accounts do not mirror the clients"
        },
        json!({ "ok": ok, "reaction_us": reaction_us, "hedge_orders": hedge_orders }),
    );
    if !opts.keep_running.is_zero() {
        live_phase(&opts, &t, &center, &mut hedgers, &sims).await;
    }

    // Shut everything down.
    for h in &hedgers {
        h.stop();
    }
    agents.relay.stop();
    for a in &agents.tasks {
        a.abort();
    }
    sims.stop().await;
    for h in hedgers {
        h.shutdown().await;
    }
    center.shutdown().await;
    Ok(DemoOutcome {
        rows,
        ok,
        center_url: url,
        reaction_us,
        hedge_orders,
    })
}

/// A hedger per hedge account, each with its broker's names and lot sizes.
async fn start_hedgers(
    base: &std::path::Path,
    center: &center::DemoCenter,
    brokers: &[Broker],
    t: &Timeline,
) -> anyhow::Result<Vec<hedger::DemoHedger>> {
    let mut hedgers = Vec::new();
    for (login, token) in &center.tokens.hedgers {
        let Some(broker) = brokers.iter().find(|b| b.login == *login) else {
            continue;
        };
        let account = hedger::HedgeAccount {
            name: broker.name,
            login: *login,
            token,
            map: broker.map(),
            specs: broker.specs(),
        };
        hedgers.push(hedger::start(base, &center.url, account, t).await?);
    }
    Ok(hedgers)
}

/// The operator's allocation, set through the center's API as an operator would (`POST
/// /v1/actions` `set_allocation`): every client and symbol, split between the hedge accounts by
/// their weights. Read back from `GET /v1/allocations` for the timeline.
async fn allocate(view: &CenterClient, brokers: &[Broker], t: &Timeline) -> anyhow::Result<()> {
    let weights: Vec<AllocationWeight> = brokers
        .iter()
        .filter_map(|b| match b.role {
            BookRole::Hedge { weight } => Some(AllocationWeight {
                hedge_login: b.login,
                weight,
            }),
            BookRole::Client => None,
        })
        .collect();
    let request = ActionRequest {
        weights: Some(weights),
        reason: "two hedge brokers".into(),
        ..ActionRequest::new(ActionKind::SetAllocation)
    };
    view.action(&new_action_key(), &request)
        .await
        .context("setting the allocation")?;
    let allocations = view
        .allocations()
        .await
        .context("reading the allocations")?;
    let split: Vec<String> = allocations
        .iter()
        .flat_map(|a| &a.weights)
        .map(|w| {
            format!(
                "{}% on hedge {}",
                (w.weight * Decimal::ONE_HUNDRED).normalize(),
                w.hedge_login
            )
        })
        .collect();
    t.emit(
        "operator",
        format!(
            "operator allocates every client's exposure: {} (POST /v1/actions set_allocation; GET /v1/allocations shows {} allocation(s))",
            split.join(", "),
            allocations.len()
        ),
        json!({ "allocations": allocations }),
    );
    Ok(())
}

/// What each hedge account's plan should order once the signal is open, computed here from the
/// brokers' contract sizes: each client's lots in base quantity, summed, the account's share of
/// it, in the account's lots.
fn expected_plans(brokers: &[Broker]) -> BTreeMap<Login, Vec<(&'static str, Volume)>> {
    let clients = brokers.iter().filter(|b| b.role == BookRole::Client);
    let mut eur = Decimal::ZERO;
    let mut gold = Decimal::ZERO;
    for c in clients {
        eur += lots(c.signal.0).0;
        gold += lots(c.signal.1).0 * c.gold_oz;
    }
    brokers
        .iter()
        .filter_map(|b| match b.role {
            BookRole::Hedge { weight } => Some((
                b.login,
                vec![
                    ("EURUSD", Volume(eur * weight).normalize()),
                    ("XAUUSD", Volume(gold * weight / b.gold_oz).normalize()),
                ],
            )),
            BookRole::Client => None,
        })
        .collect()
}

/// Each hedger must hold the plan for its share of the clients' exposure before the close
/// arrives.
async fn wait_for_plans(hedgers: &[hedger::DemoHedger], brokers: &[Broker], t: &Timeline) {
    let expected = expected_plans(brokers);
    let holds_plan = |h: &hedger::DemoHedger| {
        let Some(want) = expected.get(&h.login) else {
            return true;
        };
        h.plan.get().is_some_and(|p: HedgePlan| {
            p.items.len() == want.len()
                && want.iter().all(|(symbol, volume)| {
                    p.items
                        .iter()
                        .any(|i| i.symbol == *symbol && i.volume.normalize() == *volume)
                })
        })
    };
    if !wait_for(Duration::from_secs(15), || hedgers.iter().all(holds_plan)).await {
        for h in hedgers.iter().filter(|h| !holds_plan(h)) {
            t.emit(
                "plan",
                format!(
                    "hedge {}'s plan did not reach the expected {:?}: {:?}",
                    h.login,
                    expected.get(&h.login),
                    h.plan.get().map(|p| p.items)
                ),
                json!({}),
            );
        }
    }
}

/// What the hedge plans leave unhedged and why, in base quantity where the account's contract
/// size converts it, to explain what the grids could not reach.
async fn residuals(view: &CenterClient, brokers: &[Broker]) -> Vec<Explanation> {
    let mut out = Vec::new();
    for broker in brokers.iter().filter(|b| b.role != BookRole::Client) {
        let Ok(plan) = view.plan(broker.login).await else {
            continue;
        };
        let specs = broker.specs();
        for r in plan.residuals.iter().chain(&plan.client_residuals) {
            let spec = specs.get(&r.symbol).filter(|_| r.client_login.is_none());
            let base = spec.map(|s| r.unhedged.0 * s.contract_size);
            let rounding = matches!(
                r.reason,
                ResidualReason::BelowMin | ResidualReason::AllocationRounding
            );
            let unit = unit_of(&r.symbol);
            out.push(Explanation {
                login: broker.login,
                symbol: r.symbol.clone(),
                text: format!(
                    "{}: {} lots {}{} left unhedged: {}",
                    broker.name,
                    r.unhedged,
                    r.account_symbol,
                    base.map_or_else(String::new, |b| format!(" ({} {unit})", quantity(b))),
                    residual_words(r.reason)
                ),
                base,
                rounding,
            });
        }
    }
    out
}

/// A plan residual's reason, for a trader.
fn residual_words(reason: ResidualReason) -> String {
    let words = match reason {
        ResidualReason::BelowMin => "less than the account's volume step or minimum",
        ResidualReason::AllocationRounding => "the other hedge account's order covers it",
        ResidualReason::Paused => "hedging is paused (close-only)",
        ResidualReason::NoAllocation => "no allocation names a hedge account",
        _ => "",
    };
    if words.is_empty() {
        reason.as_str().to_owned()
    } else {
        format!("{words} ({})", reason.as_str())
    }
}

/// The live phase: the clients keep trading, the hedgers mirror them and carry out the
/// operator's commands, until `--duration` or an interrupt.
async fn live_phase(
    opts: &DemoOptions,
    t: &Timeline,
    center: &center::DemoCenter,
    hedgers: &mut [hedger::DemoHedger],
    sims: &SimAccounts,
) {
    for h in hedgers.iter_mut() {
        h.start_mirror();
    }
    t.emit(
        "live",
        format!(
            "live for {} s: the clients keep trading, the hedgers mirror them and take commands; dashboard at {}/ (token in {}); Ctrl-C to stop",
            opts.keep_running.as_secs(),
            center.url,
            center.token_file.display()
        ),
        json!({ "url": center.url, "duration_s": opts.keep_running.as_secs() }),
    );
    let keep = opts.keep_running;
    let interrupt = opts.interrupt.clone();
    interrupt.enter_live();
    let summary = live::run(
        t,
        &sims.live_clients(),
        opts.seed,
        LIVE_INTERVAL,
        async move {
            tokio::select! {
                _ = tokio::time::sleep(keep) => {}
                _ = interrupt.fired() => {}
            }
        },
    )
    .await;
    // The last trade's hedge may still be in flight: give it a moment before looking.
    let mirrored = accounts::settle(sims, &center.view).await;
    t.emit(
        "live",
        format!(
            "live phase over: {} opens, {} closes, {} refused; {}",
            summary.opens,
            summary.closes,
            summary.refused,
            if mirrored {
                "the hedge accounts mirror the clients"
            } else {
                "the hedge accounts differ from the clients (a symbol paused or a hedge closed by an operator, or a hedge still in flight)"
            }
        ),
        json!({ "opens": summary.opens, "closes": summary.closes, "refused": summary.refused, "mirrors": mirrored }),
    );
    // The scenario's table scrolled away long ago: the accounts as the live phase left them.
    t.plain("");
    t.plain("After the live phase:");
    table::print(
        t,
        &sims.table(&residuals(&center.view, &accounts::brokers()).await),
    );
}
