//! The demo scenario: every component started in this process, the signal played, the result checked.
//!
//! Entry point: [`run`], which starts the center (`center.rs`), the client agents, the tumbler and
//! the copier stand-in (`agents.rs`), the hedger (`hedger.rs`) and the simulated accounts
//! (`accounts.rs`, which also plays the signal and the central close), then checks the net table
//! and, with `--duration`, runs the live phase.

mod accounts;
mod agents;
mod center;
mod hedger;

use crate::exposure::{holds, ExposureRow};
use crate::interrupt::Interrupt;
use crate::live;
use crate::timeline::Timeline;
use accounts::{Ports, SimAccounts};
use anyhow::Context;
use hedge_center_api::model::HedgePlan;
use hedge_domain::{Login, Magic, SymbolMap, Volume};
use rust_decimal::Decimal;
use serde_json::json;
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

fn lots(units: i64) -> Volume {
    Volume(Decimal::new(units, 2))
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?.port())
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
    let map_h = SymbolMap::from_affix("-ECN");
    let mut hedger = hedger::start(&base, &url, &center.tokens.hedger, &map_h, &t).await?;
    let sims = SimAccounts::connect(
        Ports {
            a: agents.relay.addr().to_string(),
            b: format!("127.0.0.1:{}", agents.port_b),
            hedge: hedger.addr.to_string(),
        },
        opts.seed,
        &t,
    )
    .await?;
    accounts::wait_registered(&center.view).await?;

    sims.play_signal(&t)?;
    // The tumbler on client A kills the copier the moment the copier's first position appears.
    let copier_dead = agents::copier_killed(agents.copier.take(), &t).await;
    wait_for_plan(&hedger, &t).await;
    sims.central_close(&t);
    if !wait_for(Duration::from_secs(15), || hedger.trigger_done()).await {
        t.emit("hedger", "the hedger did not finish within 15 s", json!({}));
    }
    // Records reach the center.
    wait_for(Duration::from_secs(5), || {
        hedger.outbox.pending().map(|n| n == 0).unwrap_or(false)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let rows = sims.table();
    let ok = holds(&rows) && copier_dead;
    print_table(&t, &rows);
    let reaction = hedger.reaction();
    t.emit(
        "result",
        if ok {
            "the hedge account is net opposite to the clients: check passed"
        } else {
            "check FAILED: the hedge account does not mirror the clients"
        },
        json!({ "ok": ok, "reaction_us": reaction.elapsed_us, "hedge_orders": reaction.orders }),
    );
    if !opts.keep_running.is_zero() {
        live_phase(&opts, &t, &center, &mut hedger, &sims).await;
    }

    // Shut everything down.
    hedger.stop();
    agents.relay.stop();
    for a in &agents.tasks {
        a.abort();
    }
    sims.stop().await;
    hedger.shutdown().await;
    center.shutdown().await;
    Ok(DemoOutcome {
        rows,
        ok,
        center_url: url,
        reaction_us: reaction.elapsed_us,
        hedge_orders: reaction.orders,
    })
}

/// The hedger must hold the plan for the clients' exposure before the close arrives.
async fn wait_for_plan(hedger: &hedger::DemoHedger, t: &Timeline) {
    let expected = |p: &HedgePlan| {
        p.items.len() == 2
            && p.items
                .iter()
                .any(|i| i.symbol == "EURUSD" && i.volume == lots(30))
            && p.items
                .iter()
                .any(|i| i.symbol == "XAUUSD" && i.volume == lots(8))
    };
    let plan = &hedger.plan;
    if !wait_for(Duration::from_secs(15), || {
        plan.get().as_ref().is_some_and(expected)
    })
    .await
    {
        t.emit(
            "plan",
            format!(
                "the hedger's plan did not reach the expected exposure: {:?}",
                plan.get().map(|p| p.items)
            ),
            json!({}),
        );
    }
}

/// The live phase: the clients keep trading, the hedger mirrors them and carries out the
/// operator's commands, until `--duration` or an interrupt.
async fn live_phase(
    opts: &DemoOptions,
    t: &Timeline,
    center: &center::DemoCenter,
    hedger: &mut hedger::DemoHedger,
    sims: &SimAccounts,
) {
    hedger.start_mirror();
    t.emit(
        "live",
        format!(
            "live for {} s: the clients keep trading, the hedger mirrors them and takes commands; dashboard at {}/ (token in {}); Ctrl-C to stop",
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
    let mirrored = accounts::settle(sims).await;
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
    t.plain("");
    t.plain("After the live phase:");
    print_table(t, &sims.table());
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
