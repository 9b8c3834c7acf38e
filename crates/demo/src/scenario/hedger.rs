//! A hedger per hedge account in this process, so its events feed the timeline: in trigger mode for
//! the scenario (`--once`), then in mirror mode for the live phase; the plan follower and the
//! outbox sender serve both.

use super::table::lot_count;
use crate::exposure::{quantity, unit_of, LotSpec};
use crate::timeline::Timeline;
use hedge_agent_runtime::outbox::{Backoff, Outbox};
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::HedgePlan;
use hedge_domain::{Login, SymbolMap, Volume};
use hedge_hedger::runtime::{
    follow_plan, HedgeDelivery, Hedger, HedgerEvent, HedgerOptions, Mode, PlanHolder,
};
use hedge_protocol::{Terminal, TerminalConfig, TerminalListener};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// What the trigger-mode run did: the trigger → last reply time of its latest batch, how many
/// orders it sent, and whether it finished.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Reaction {
    pub elapsed_us: Option<u64>,
    pub orders: usize,
    pub finished: bool,
}

/// One hedge account's hedger and what serves it.
pub(super) struct DemoHedger {
    pub login: Login,
    pub terminal: Terminal,
    /// The hedge account's terminal connects here.
    pub addr: SocketAddr,
    pub outbox: Arc<Outbox>,
    pub plan: Arc<PlanHolder>,
    pub reaction: Arc<Mutex<Reaction>>,
    center: CenterClient,
    map: SymbolMap,
    events: broadcast::Sender<HedgerEvent>,
    /// Set for the live phase: events are printed as the mirror's, not counted as the trigger's.
    live: Arc<AtomicBool>,
    trigger: JoinHandle<()>,
    mirror: Option<JoinHandle<()>>,
    /// The plan follower and the outbox sender.
    background: Vec<JoinHandle<()>>,
    printer: JoinHandle<()>,
}

/// Runs a hedger to its end; its error is the trigger's or the mirror's outcome, shown by its
/// events and the final check, so it is only logged here.
fn spawn_hedger(hedger: Hedger) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = hedger.run().await {
            tracing::warn!(error = %e, "the demo's hedger stopped");
        }
    })
}

/// Which hedge account a hedger serves and how its broker names and sizes things.
pub(super) struct HedgeAccount<'a> {
    pub name: &'static str,
    pub login: Login,
    pub token: &'a str,
    pub map: SymbolMap,
    /// Canonical symbol → the account's lot, to say what its orders are in ounces.
    pub specs: BTreeMap<String, LotSpec>,
}

/// Starts the hedger in trigger mode on the hedge account's terminal, with its outbox in `base`.
pub(super) async fn start(
    base: &Path,
    url: &str,
    account: HedgeAccount<'_>,
    t: &Timeline,
) -> anyhow::Result<DemoHedger> {
    let HedgeAccount {
        name,
        login,
        token,
        map,
        specs,
    } = account;
    let listener = TerminalListener::bind_with(
        "127.0.0.1:0",
        TerminalConfig {
            expected_login: Some(login),
            ..TerminalConfig::default()
        },
    )
    .await?;
    let addr = listener.local_addr();
    let terminal = listener.start();
    let center = CenterClient::new(url.to_owned(), Some(token.to_owned()))?;
    let outbox = Outbox::open(&base.join(format!("hedger-{login}.db")))?;
    let sender = {
        let outbox = outbox.clone();
        let delivery = HedgeDelivery {
            center: center.clone(),
            login,
        };
        tokio::spawn(async move {
            let backoff = Backoff {
                initial: Duration::from_millis(50),
                max: Duration::from_secs(1),
            };
            if let Err(e) = outbox.run_sender(delivery, backoff).await {
                tracing::warn!(error = %e, "the demo hedger's outbox sender stopped");
            }
        })
    };
    let (events, received) = broadcast::channel(1024);
    let plan = Arc::new(PlanHolder::default());
    let follower = tokio::spawn(follow_plan(
        center.clone(),
        login,
        plan.clone(),
        Duration::from_secs(2),
        Some(events.clone()),
    ));
    let mut options = HedgerOptions::new(login, Mode::Trigger);
    options.once = true;
    options.symbol_map = map.clone();
    let trigger = spawn_hedger(Hedger::new(
        terminal.clone(),
        Some(center.clone()),
        outbox.clone(),
        options,
        plan.clone(),
        Some(events.clone()),
    ));
    let reaction = Arc::new(Mutex::new(Reaction::default()));
    let live = Arc::new(AtomicBool::new(false));
    let printer = tokio::spawn(print_events(
        Printer {
            t: t.clone(),
            name,
            specs,
        },
        received,
        reaction.clone(),
        live.clone(),
    ));
    Ok(DemoHedger {
        login,
        terminal,
        addr,
        outbox,
        plan,
        reaction,
        center,
        map: map.clone(),
        events,
        live,
        trigger,
        mirror: None,
        background: vec![follower, sender],
        printer,
    })
}

/// Where a hedger's events are printed, under its account's name.
struct Printer {
    t: Timeline,
    name: &'static str,
    specs: BTreeMap<String, LotSpec>,
}

/// Prints the hedger's events; until the live phase, counts the trigger's orders and its end.
async fn print_events(
    p: Printer,
    mut received: broadcast::Receiver<HedgerEvent>,
    reaction: Arc<Mutex<Reaction>>,
    live: Arc<AtomicBool>,
) {
    loop {
        let e = match received.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let live = live.load(Ordering::Relaxed);
        print_hedger_event(&p, &e, live);
        if live {
            continue;
        }
        if let Ok(mut r) = reaction.lock() {
            match &e {
                HedgerEvent::Batch {
                    elapsed_us, orders, ..
                } => {
                    r.elapsed_us = Some(*elapsed_us);
                    r.orders += orders;
                }
                HedgerEvent::Finished => r.finished = true,
                _ => {}
            }
        }
    }
}

impl DemoHedger {
    /// Whether the trigger-mode run is over (finished, or its task ended).
    pub(super) fn trigger_done(&self) -> bool {
        self.reaction.lock().map(|r| r.finished).unwrap_or(false) || self.trigger.is_finished()
    }

    pub(super) fn reaction(&self) -> Reaction {
        self.reaction.lock().map(|r| *r).unwrap_or_default()
    }

    /// The live phase: the hedger follows the plan position by position (mirror mode) and carries
    /// out the operator's close/retry commands. One hedger per account: the trigger-mode one is
    /// done (or given up on) by now.
    pub(super) fn start_mirror(&mut self) {
        self.trigger.abort();
        let mut options = HedgerOptions::new(self.login, Mode::Mirror);
        options.symbol_map = self.map.clone();
        self.live.store(true, Ordering::Relaxed);
        self.mirror = Some(spawn_hedger(Hedger::new(
            self.terminal.clone(),
            Some(self.center.clone()),
            self.outbox.clone(),
            options,
            self.plan.clone(),
            Some(self.events.clone()),
        )));
    }

    /// Stops the hedger, its plan follower and its sender; the terminal link and the printer stay
    /// until [`DemoHedger::shutdown`].
    pub(super) fn stop(&self) {
        self.trigger.abort();
        if let Some(m) = &self.mirror {
            m.abort();
        }
        for task in &self.background {
            task.abort();
        }
    }

    pub(super) async fn shutdown(self) {
        self.stop();
        self.terminal.shutdown().await;
        self.printer.abort();
    }
}

impl Printer {
    /// ` = 21 oz`: `volume` lots of `symbol` (canonical or the account's name) on this account
    /// in base quantity.
    fn base(&self, symbol: &str, volume: Volume) -> String {
        let found = self
            .specs
            .get_key_value(symbol)
            .or_else(|| self.specs.iter().find(|(_, s)| s.account_symbol == symbol));
        found.map_or_else(String::new, |(canonical, s)| {
            format!(
                " = {} {}",
                quantity(volume.0 * s.contract_size).trim_start_matches('+'),
                unit_of(canonical)
            )
        })
    }

    fn describe_plan(&self, plan: &HedgePlan) -> String {
        let name = self.name;
        if plan.items.is_empty() && plan.residuals.is_empty() {
            return format!("{name} holds the plan: nothing to hedge");
        }
        let mut parts: Vec<String> = plan
            .items
            .iter()
            .map(|i| {
                format!(
                    "#{} {} {} lots {}{} (its share of the clients' position: {} {})",
                    i.id,
                    i.side,
                    lot_count(i.volume.0),
                    i.account_symbol,
                    self.base(&i.symbol, i.volume),
                    quantity(i.base_quantity.0),
                    unit_of(&i.symbol)
                )
            })
            .collect();
        parts.extend(plan.residuals.iter().map(|r| {
            format!(
                "{} {} lots{} left unhedged: {}",
                r.account_symbol,
                r.unhedged,
                self.base(&r.symbol, r.unhedged),
                r.reason.as_str()
            )
        }));
        format!("{name} holds the plan: {}", parts.join(", "))
    }
}

fn print_hedger_event(p: &Printer, e: &HedgerEvent, live: bool) {
    let (t, name) = (&p.t, p.name);
    let mut fields = serde_json::to_value(e).unwrap_or(json!({}));
    if let Some(o) = fields.as_object_mut() {
        o.insert("account".into(), json!(name));
    }
    match e {
        HedgerEvent::Ready { fills, .. } => t.emit(
            "hedger",
            format!("{name}: hedger ready: state rebuilt ({fills} earlier hedge fills on the account)"),
            fields,
        ),
        HedgerEvent::Plan { plan } => t.emit("plan", p.describe_plan(plan), fields),
        HedgerEvent::Trigger {
            position, symbol, ..
        } => t.emit(
            "trigger",
            format!("TRIGGER: {name} position {position} ({symbol}) closed by the central close"),
            fields,
        ),
        HedgerEvent::Order(o) => t.emit(
            "order",
            format!(
                "{name}: hedge order {} {} lots {}{} -> {} (filled {} at {}, {} attempt(s), retcodes {:?}) in {:.3} ms",
                o.side,
                lot_count(o.volume.0),
                o.symbol,
                p.base(&o.symbol, o.volume),
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
                "{name}: {filled}/{orders} hedge orders filled; {} -> last reply {:.3} ms",
                if live { "plan change" } else { "trigger" },
                *elapsed_us as f64 / 1000.0
            ),
            fields,
        ),
        HedgerEvent::Breaker { symbol, reason } => {
            t.emit("breaker", format!("{name}: {symbol} halted: {reason}"), fields)
        }
        HedgerEvent::Refused {
            symbol,
            volume,
            reason,
        } => t.emit(
            "refused",
            format!("{name}: {symbol} {volume} lots not sent: {reason}"),
            fields,
        ),
        HedgerEvent::Finished => t.emit("hedger", format!("{name}: hedger done (--once)"), fields),
    }
}
