//! The hedger's runtime: the I/O around the pure planner.
//!
//! One task owns the hedger's state (the book of fills, the breakers, the positions it watches) and
//! reacts to the terminal's events; a second task keeps the plan current from the center's event
//! stream. Recording in the center goes through the durable outbox, so a center outage delays the
//! records but loses none, and never delays an order.
//!
//! Start-up (and every reconnect of the terminal) first rebuilds what was done: hedge-tagged deals
//! from the account's history, the hedges the center recorded, and records still waiting in the
//! outbox. Executed hedges the center does not know yet are recorded, and only then does the hedger
//! act; the planner subtracts everything executed from each plan item, so nothing is hedged twice.
//!
//! The bookkeeping between reactions is `HedgerState` (`state.rs`), with no I/O; [`Hedger`] owns
//! the connections and carries out what it decides.

mod act;
mod commands;
mod delivery;
mod events;
mod options;
mod plan;
mod pretrade;
mod rebuild;
mod reconcile;
mod records;
mod state;
mod status;

pub use delivery::{all_hedges, open_hedges, CommandAnswer, HedgeDelivery};
pub use events::{HedgerEvent, OrderEvent};
pub use options::{HedgerOptions, Mode};
pub use plan::{follow_plan, PlanHolder};

use crate::account_view::{trigger_of, vanished, watched_positions};
use crate::planner::{HedgeBook, HeldPosition};
use crate::retry::Breakers;
use hedge_agent_runtime::center::queue_registration;
use hedge_agent_runtime::outbox::Outbox;
use hedge_center_api::client::CenterClient;
use hedge_center_api::model::{AccountRegistration, AccountRole};
use hedge_domain::{CmdId, SymbolSpec};
use hedge_protocol::{Terminal, TerminalEvent};
use state::HedgerState;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Why the hedger stopped.
#[derive(Debug, thiserror::Error)]
pub enum HedgerError {
    #[error("terminal link shut down")]
    TerminalGone,
    #[error("outbox: {0}")]
    Outbox(#[from] hedge_agent_runtime::outbox::OutboxError),
    #[error("cannot encode a record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The hedger's state and connections.
pub struct Hedger {
    terminal: Terminal,
    center: Option<CenterClient>,
    outbox: Arc<Outbox>,
    opts: HedgerOptions,
    plan: Arc<PlanHolder>,
    breakers: Breakers,
    watched: BTreeMap<hedge_domain::PositionId, String>,
    events: Option<broadcast::Sender<HedgerEvent>>,
    generation: u64,
    state: HedgerState,
    /// What the pre-trade checks refused, and which symbols passed the terminal's check lately.
    pretrade: pretrade::PretradeMemory,
}

impl Hedger {
    pub fn new(
        terminal: Terminal,
        center: Option<CenterClient>,
        outbox: Arc<Outbox>,
        opts: HedgerOptions,
        plan: Arc<PlanHolder>,
        events: Option<broadcast::Sender<HedgerEvent>>,
    ) -> Self {
        let breakers = Breakers::new(opts.breaker_threshold);
        Hedger {
            terminal,
            center,
            outbox,
            opts,
            plan,
            breakers,
            watched: BTreeMap::new(),
            events,
            generation: 0,
            state: HedgerState::default(),
            pretrade: pretrade::PretradeMemory::default(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.opts.clock.now_ms()
    }

    fn emit(&self, event: HedgerEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// The fills seen so far (for tests and status).
    pub fn book(&self) -> &HedgeBook {
        &self.state.book
    }

    fn specs(&self) -> HashMap<String, SymbolSpec> {
        self.terminal.with_state(|s| {
            s.symbols
                .iter()
                .map(|(name, info)| (name.clone(), info.spec.clone()))
                .collect()
        })
    }

    /// What the planner reduces: on a netting account the hedges as the ledger keeps them, one
    /// position per hedge; on a hedging account the terminal's positions.
    fn held_positions(&self) -> Vec<HeldPosition> {
        if let Some(hedges) = self.state.ledger_hedges() {
            return hedges;
        }
        self.terminal.with_state(|s| {
            s.positions
                .values()
                .map(crate::account_view::held_position)
                .collect()
        })
    }

    /// The held positions a decision on `items` can reduce: those on an item's symbol and on the
    /// side opposite to it (the planner looks at no other). Filtered before they are copied, since
    /// a hedge account may hold many positions and a reaction is on the clock.
    fn held_positions_against(&self, items: &[crate::planner::PlanOrder]) -> Vec<HeldPosition> {
        let wanted: Vec<(String, hedge_domain::Side)> = items
            .iter()
            .map(|i| {
                (
                    self.opts.symbol_map.to_account(&i.symbol),
                    i.side.opposite(),
                )
            })
            .collect();
        let against = |symbol: &str, side: hedge_domain::Side| {
            wanted.iter().any(|(s, w)| s == symbol && *w == side)
        };
        if let Some(hedges) = self.state.ledger_hedges() {
            return hedges
                .into_iter()
                .filter(|p| against(&p.symbol, p.side))
                .collect();
        }
        self.terminal.with_state(|s| {
            s.positions
                .values()
                .filter(|p| against(&p.symbol, p.position_type.side()))
                .map(crate::account_view::held_position)
                .collect()
        })
    }

    /// Reads the terminal's symbol list through the configured map once, so the plan's canonical
    /// names find this account's symbols by the common aliases and decorations too (`XAUUSD` is
    /// `GOLD` here); the operator's explicit entries win. A symbol that several of the account's
    /// names could be keeps the configured rule's name (the center's plan shows it as ambiguous).
    fn resolve_symbol_names(&mut self) {
        let symbols = self.terminal.symbols();
        let resolution =
            hedge_agent_runtime::session::resolve_symbol_names(&self.opts.symbol_map, &symbols);
        self.opts.symbol_map = resolution.map;
    }

    /// Queues the account's registration with the center.
    fn queue_registration(&self) {
        if self.center.is_none() {
            return;
        }
        let Some(hello) = self.terminal.hello() else {
            return;
        };
        let registration = AccountRegistration {
            login: self.opts.login,
            role: AccountRole::Hedge,
            server: hello.server.clone(),
            company: hello.company.clone(),
            margin_mode: hello.margin_mode,
            symbol_map: self.opts.symbol_map.clone(),
            hedge_ratio: rust_decimal::Decimal::ONE,
            hedge_login: None,
            symbols: self
                .terminal
                .symbols()
                .into_iter()
                .map(|s| s.spec)
                .collect(),
            currency: hello.currency.clone(),
        };
        // Through the outbox, like every agent: it reaches the center before any record queued
        // after it, and survives a center outage and a restart.
        if let Err(e) = queue_registration(&self.outbox, &registration) {
            tracing::error!(error = %e, "registration not queued");
        }
    }

    fn take_fill_from_tx(&mut self, tx: &hedge_protocol::Tx) {
        if let Err(e) = self.state.take_tx(tx) {
            // Without a ledger that fits, reductions would go to the wrong hedge: rebuild from
            // the account's history at the next resynchronisation.
            tracing::error!(error = %e, "live record does not fit the ledger; rebuilding from the account's history");
        }
    }

    /// Runs until `--once` is satisfied or the terminal link is shut down.
    pub async fn run(mut self) -> Result<(), HedgerError> {
        let mut events = self.terminal.subscribe();
        if self.terminal.ready().await.is_err() {
            return Err(HedgerError::TerminalGone);
        }
        self.resolve_symbol_names();
        self.queue_registration();
        self.rebuild().await?;
        let mut plan_version = self.plan.version.subscribe();
        let mut command_version = self.plan.commands.subscribe();
        let mut status_tick = tokio::time::interval(self.opts.status_interval);
        let mut acks = self.outbox.acks();
        let mut reconcile_tick = tokio::time::interval(self.opts.reconcile_interval);
        reconcile_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if self.opts.mode == Mode::Mirror {
            self.act("start-up", Instant::now()).await?;
        }
        self.run_commands().await?;
        loop {
            let retry_fetch = self.state.deferred_fetch_failed;
            tokio::select! {
                biased;
                event = events.recv() => {
                    if self.on_terminal_event(event).await? {
                        return Ok(());
                    }
                }
                changed = plan_version.changed(), if self.opts.mode == Mode::Mirror => {
                    if changed.is_err() {
                        continue;
                    }
                    plan_version.borrow_and_update();
                    let started = Instant::now();
                    if self.terminal.is_connected() {
                        self.act("plan change", started).await?;
                    }
                }
                // Held-back symbols go on once their records are stored, at the next
                // acknowledgement, so the outbox is not read every few milliseconds while the
                // center is down. A failed plan fetch is retried soon; otherwise a slow timer only
                // guards against waiting for an acknowledgement that never comes.
                _ = tokio::time::timeout(
                    if retry_fetch { Duration::from_millis(10) } else { Duration::from_secs(1) },
                    acks.changed(),
                ), if self.state.deferred => {
                    self.act_deferred().await?;
                }
                changed = command_version.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    command_version.borrow_and_update();
                    self.run_commands().await?;
                }
                _ = reconcile_tick.tick() => {
                    if self.state.has_due_holdings() {
                        self.flush_holdings()?;
                    }
                    self.reconcile("periodic").await?;
                    // An order given up (a dealer's reject) leaves its item in the plan, which
                    // does not change by itself: try it again now and then. Consecutive failures
                    // open the symbol's breaker, and then an operator decides.
                    if self.opts.mode == Mode::Mirror && self.terminal.is_connected() {
                        self.act("periodic", Instant::now()).await?;
                    } else if self.pretrade.has_refusals() && self.terminal.is_connected() {
                        self.retry_refused().await?;
                    }
                }
                _ = status_tick.tick() => {
                    self.send_status(None, true);
                    // A safety net for a command announced while the stream was down.
                    self.run_commands().await?;
                }
            }
        }
    }

    /// Handles one event from the terminal; true when the hedger should stop (`--once`).
    async fn on_terminal_event(
        &mut self,
        event: Result<TerminalEvent, broadcast::error::RecvError>,
    ) -> Result<bool, HedgerError> {
        match event {
            Ok(TerminalEvent::Tx(tx)) => return self.on_tx(&tx).await,
            Ok(TerminalEvent::Connected {
                resync: true,
                snapshot,
                ..
            }) => {
                let started = Instant::now();
                tracing::info!("terminal reconnected; resynchronising");
                let now = watched_positions(snapshot.positions.iter());
                let gone = vanished(&self.watched, &now);
                self.rebuild().await?;
                self.reconcile("terminal reconnected").await?;
                if self.opts.mode == Mode::Trigger {
                    if let Some(trigger) = gone.into_iter().next() {
                        if self.on_trigger(trigger, started).await? {
                            return Ok(true);
                        }
                    }
                } else {
                    self.act("reconnect", started).await?;
                }
                self.run_commands().await?;
            }
            Ok(TerminalEvent::Snapshot(snapshot)) => {
                let now = watched_positions(snapshot.positions.iter());
                let gone = vanished(&self.watched, &now);
                self.watched = now;
                if self.opts.mode == Mode::Trigger {
                    if let Some(trigger) = gone.into_iter().next() {
                        return self.on_trigger(trigger, Instant::now()).await;
                    }
                }
            }
            Ok(TerminalEvent::Disconnected { reason, .. }) => {
                tracing::warn!(%reason, "terminal disconnected; waiting for it to return");
            }
            Ok(TerminalEvent::Gap { expected, got }) => {
                tracing::warn!(
                    expected,
                    got,
                    "messages lost on the terminal link; asking for a snapshot"
                );
                let terminal = self.terminal.clone();
                let cmd_id = CmdId(format!("hedger-snapshot-{}", self.now_ms()));
                tokio::spawn(async move {
                    let _ = terminal.request_snapshot(cmd_id).await;
                });
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "fell behind the terminal's events; rebuilding");
                self.rebuild().await?;
            }
            Err(broadcast::error::RecvError::Closed) => return Err(HedgerError::TerminalGone),
        }
        Ok(false)
    }

    /// A transaction on the account; true when the hedger should stop (`--once`).
    async fn on_tx(&mut self, tx: &hedge_protocol::Tx) -> Result<bool, HedgerError> {
        let started = Instant::now();
        self.take_fill_from_tx(tx);
        if self.state.ledger_stale {
            self.rebuild().await?;
        }
        if self.state.has_due_holdings() {
            self.flush_holdings()?;
        }
        if let Some(trigger) = trigger_of(tx) {
            self.watched.remove(&trigger.position);
            if self.opts.mode == Mode::Trigger {
                return self.on_trigger(trigger, started).await;
            }
        } else {
            self.watched = self
                .terminal
                .with_state(|s| watched_positions(s.positions.values()));
        }
        Ok(false)
    }
}
