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

use crate::account::{fill_from_deal, trigger_of, vanished, watched_positions, Trigger};
use crate::execution::{Breakers, Failure};
use crate::executor::{execute_leg, LegOutcome, LegReport, OrderSettings};
use crate::planner::{self, AccountView, HedgeBook, HeldPosition, PlanItem};
use crate::records::{executed_record, reduce_targets, HoldingSnapshot};
use crate::tag::PlanItemId;
use futures::FutureExt;
use hedge_agent::outbox::{Delivery, DeliveryError, NewItem, Outbox, OutboxItem};
use hedge_center::client::{CenterClient, ClientError};
use hedge_center::model::{
    AccountRegistration, AccountRole, AccountStatus, BreakerState, Hedge, HedgeExecuted,
    HedgeFailed, HedgePlan, HedgeReduce, HedgeStatus, PageQuery,
};
use hedge_domain::{CmdId, Login, Price, Side, SymbolMap, SymbolSpec, Volume};
use hedge_protocol::{HistoryRange, Terminal, TerminalEvent};
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// When the hedger acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// When one of the account's own positions closes, execute the whole plan at once.
    Trigger,
    /// Execute every plan change as it comes: hedge each client open, reduce with each close.
    Mirror,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trigger" => Ok(Mode::Trigger),
            "mirror" => Ok(Mode::Mirror),
            other => Err(format!("not a hedger mode: {other:?} (trigger or mirror)")),
        }
    }
}

/// Everything the runtime needs besides its connections.
#[derive(Clone, Debug)]
pub struct HedgerOptions {
    pub login: Login,
    pub mode: Mode,
    /// Trigger mode: exit after the first trigger has been handled (the prototype's behaviour).
    pub once: bool,
    pub symbol_map: SymbolMap,
    /// Canonical symbols to hedge; empty means all.
    pub symbols: Vec<String>,
    pub orders: OrderSettings,
    /// Consecutive given-up orders on a symbol before it is halted.
    pub breaker_threshold: u32,
    /// How far back the account's history is searched for hedge deals at start-up.
    pub history_days: u32,
    /// Safety-net plan refresh, on top of the event stream.
    pub plan_refresh: Duration,
    /// Seconds between status heartbeats to the center.
    pub status_interval: Duration,
}

impl HedgerOptions {
    pub fn new(login: Login, mode: Mode) -> Self {
        HedgerOptions {
            login,
            mode,
            once: false,
            symbol_map: SymbolMap::identity(),
            symbols: Vec::new(),
            orders: OrderSettings::default(),
            breaker_threshold: 3,
            history_days: 30,
            plan_refresh: Duration::from_secs(5),
            status_interval: Duration::from_secs(5),
        }
    }
}

/// What the hedger did, as it happens: for a live timeline (the demo) and tests.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HedgerEvent {
    /// State rebuilt; the hedger is about to act.
    Ready {
        login: Login,
        netting: bool,
        /// Hedge fills found on the account.
        fills: usize,
        /// Executed hedges recorded during the rebuild (the center had missed them).
        recorded: usize,
    },
    /// A new plan is held.
    Plan {
        plan: HedgePlan,
    },
    Trigger {
        position: u64,
        symbol: String,
        how: String,
    },
    /// One hedge order finished.
    Order(OrderEvent),
    /// Every order of one reaction finished.
    Batch {
        reason: String,
        orders: usize,
        filled: usize,
        /// From the trigger (or plan change) to the last reply.
        elapsed_us: u64,
    },
    Breaker {
        symbol: String,
        reason: String,
    },
    /// `--once`: the trigger was handled, the hedger stops.
    Finished,
}

#[derive(Clone, Debug, Serialize)]
pub struct OrderEvent {
    pub item: u64,
    pub symbol: String,
    /// The side actually sent.
    pub side: Side,
    pub volume: Volume,
    pub filled: Volume,
    pub closes: Option<u64>,
    pub retcode: Option<u32>,
    pub retcodes: Vec<u32>,
    pub attempts: u32,
    pub price: Option<Price>,
    pub latency_us: u64,
    pub outcome: String,
    pub filling: String,
}

/// Why the hedger stopped.
#[derive(Debug, thiserror::Error)]
pub enum HedgerError {
    #[error("terminal link shut down")]
    TerminalGone,
    #[error("outbox: {0}")]
    Outbox(#[from] hedge_agent::outbox::OutboxError),
    #[error("cannot encode a record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The plan as last fetched, shared between the follower task and the runtime.
#[derive(Default)]
pub struct PlanHolder {
    plan: RwLock<Option<HedgePlan>>,
    version: watch::Sender<u64>,
}

impl PlanHolder {
    pub fn get(&self) -> Option<HedgePlan> {
        self.plan.read().clone()
    }

    fn items(&self) -> Vec<hedge_center::model::PlanItem> {
        self.plan
            .read()
            .as_ref()
            .map(|p| p.items.clone())
            .unwrap_or_default()
    }

    fn as_of(&self) -> Option<u64> {
        self.plan.read().as_ref().map(|p| p.as_of_event_id)
    }

    /// Replaces the plan; true when its items changed.
    fn set(&self, plan: HedgePlan) -> bool {
        let mut held = self.plan.write();
        let changed = held.as_ref().map(|p| &p.items) != Some(&plan.items);
        let newer = held
            .as_ref()
            .is_none_or(|p| plan.as_of_event_id >= p.as_of_event_id);
        if newer {
            *held = Some(plan);
        }
        drop(held);
        if changed && newer {
            self.version.send_modify(|v| *v += 1);
        }
        changed && newer
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Keeps `holder` current: the plan is fetched, then refetched after every event that can move it
/// (several queued events cause one fetch), and every `refresh` in case the stream missed something
/// across a reconnect. The subscription resumes from the plan's last event id.
pub async fn follow_plan(
    center: CenterClient,
    login: Login,
    holder: Arc<PlanHolder>,
    refresh: Duration,
    events: Option<broadcast::Sender<HedgerEvent>>,
) {
    let fetch = |holder: Arc<PlanHolder>| {
        let center = center.clone();
        let events = events.clone();
        async move {
            match center.plan(login).await {
                Ok(plan) => {
                    if holder.set(plan.clone()) {
                        tracing::info!(
                            items = plan.items.len(),
                            as_of = plan.as_of_event_id,
                            "hedge plan updated"
                        );
                        if let Some(tx) = &events {
                            let _ = tx.send(HedgerEvent::Plan { plan });
                        }
                    }
                    true
                }
                Err(e) => {
                    tracing::debug!(error = %e, "plan not available");
                    false
                }
            }
        }
    };
    while !fetch(holder.clone()).await {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let mut sub = center.subscribe(holder.as_of());
        let mut tick = tokio::time::interval(refresh);
        tick.tick().await;
        loop {
            tokio::select! {
                event = sub.next() => match event {
                    Some(Ok(e)) => {
                        let mut newest = e.kind.moves_plan().then_some(e.id);
                        // Take everything already queued, then fetch once.
                        while let Some(Some(Ok(more))) = sub.next().now_or_never() {
                            if more.kind.moves_plan() {
                                newest = Some(more.id);
                            }
                        }
                        if let Some(id) = newest {
                            if holder.as_of().is_none_or(|as_of| id > as_of) {
                                fetch(holder.clone()).await;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "event stream refused; resubscribing");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                },
                _ = tick.tick() => {
                    fetch(holder.clone()).await;
                }
            }
        }
    }
}

/// Delivers the hedger's outbox items to the center.
#[derive(Clone)]
pub struct HedgeDelivery {
    pub center: CenterClient,
    pub login: Login,
}

pub const KIND_EXECUTED: &str = "hedge_executed";
pub const KIND_FAILED: &str = "hedge_failed";
pub const KIND_REDUCED: &str = "hedge_holding";

fn delivery_error(e: ClientError) -> DeliveryError {
    if e.is_retryable() {
        DeliveryError::Unavailable(e.to_string())
    } else {
        DeliveryError::Rejected(e.to_string())
    }
}

/// Every hedge of an account the center holds (all pages).
pub async fn all_hedges(
    center: &CenterClient,
    login: Login,
    symbol: Option<String>,
) -> Result<Vec<Hedge>, ClientError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = center
            .hedges(&PageQuery {
                login: Some(login),
                symbol: symbol.clone(),
                after,
                limit: Some(1000),
            })
            .await?;
        out.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

impl Delivery for HedgeDelivery {
    async fn deliver(&self, item: &OutboxItem) -> Result<(), DeliveryError> {
        match item.kind.as_str() {
            KIND_EXECUTED => {
                let body: HedgeExecuted = serde_json::from_str(&item.body)
                    .map_err(|e| DeliveryError::Rejected(e.to_string()))?;
                self.center
                    .hedge_executed(&body)
                    .await
                    .map(|_| ())
                    .map_err(delivery_error)
            }
            KIND_FAILED => {
                let body: HedgeFailed = serde_json::from_str(&item.body)
                    .map_err(|e| DeliveryError::Rejected(e.to_string()))?;
                self.center
                    .hedge_failed(&body)
                    .await
                    .map(|_| ())
                    .map_err(delivery_error)
            }
            KIND_REDUCED => {
                let holding: HoldingSnapshot = serde_json::from_str(&item.body)
                    .map_err(|e| DeliveryError::Rejected(e.to_string()))?;
                let hedges = all_hedges(&self.center, self.login, Some(holding.symbol.clone()))
                    .await
                    .map_err(delivery_error)?;
                for (id, remaining) in reduce_targets(&hedges, &holding) {
                    self.center
                        .hedge_reduced(
                            id,
                            &HedgeReduce {
                                remaining,
                                deal: None,
                                price: None,
                                time_ms: holding.time_ms,
                                reason: "reduced on the hedge account".into(),
                            },
                        )
                        .await
                        .map_err(delivery_error)?;
                }
                Ok(())
            }
            other => Err(DeliveryError::Rejected(format!(
                "unknown outbox item kind {other:?}"
            ))),
        }
    }
}

/// The hedger's state and connections.
pub struct Hedger {
    terminal: Terminal,
    center: Option<CenterClient>,
    outbox: Arc<Outbox>,
    opts: HedgerOptions,
    plan: Arc<PlanHolder>,
    book: HedgeBook,
    breakers: Breakers,
    watched: BTreeMap<hedge_domain::PositionId, String>,
    /// Plan items whose execution is recorded (in the center or queued in the outbox).
    recorded_items: BTreeSet<PlanItemId>,
    events: Option<broadcast::Sender<HedgerEvent>>,
    netting: bool,
    generation: u64,
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
            book: HedgeBook::new(),
            breakers,
            watched: BTreeMap::new(),
            recorded_items: BTreeSet::new(),
            events,
            netting: false,
            generation: 0,
        }
    }

    fn emit(&self, event: HedgerEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// The fills seen so far (for tests and status).
    pub fn book(&self) -> &HedgeBook {
        &self.book
    }

    fn specs(&self) -> HashMap<String, SymbolSpec> {
        self.terminal.with_state(|s| {
            s.symbols
                .iter()
                .map(|(name, info)| (name.clone(), info.spec.clone()))
                .collect()
        })
    }

    fn held_positions(&self) -> Vec<HeldPosition> {
        self.terminal.with_state(|s| {
            s.positions
                .values()
                .map(crate::account::held_position)
                .collect()
        })
    }

    /// Registers the account with the center, in the background until it succeeds.
    fn spawn_registration(&self) {
        let Some(center) = self.center.clone() else {
            return;
        };
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
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match center.register_account(&registration).await {
                    Ok(_) => {
                        tracing::info!(login = %registration.login, "hedge account registered with the center");
                        return;
                    }
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(error = %e, "center unreachable; registration retried");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the center refused the registration");
                        return;
                    }
                }
            }
        });
    }

    /// Rebuilds what was done from the account, the center and the outbox; records executed hedges
    /// the center has not seen. Called at start-up and after every reconnect of the terminal.
    pub async fn rebuild(&mut self) -> Result<(), HedgerError> {
        self.netting = self
            .terminal
            .hello()
            .map(|h| h.margin_mode.is_netting())
            .unwrap_or(false);
        self.generation = self.terminal.with_state(|s| s.generation);
        // 1. What the account shows: every hedge-tagged deal of the look-back window.
        let now = now_ms();
        let from = now - i64::from(self.opts.history_days) * 86_400_000;
        let history = self
            .terminal
            .history(
                CmdId(format!("hedger-history-{}-{now}", self.generation)),
                HistoryRange {
                    from,
                    to: now + 86_400_000,
                    page_size: None,
                    cursor: None,
                },
            )
            .await;
        match history {
            Ok(h) => {
                for deal in &h.deals {
                    if let Some(fill) = fill_from_deal(deal) {
                        self.book.add_fill(fill);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "account history unavailable; relying on the center's records")
            }
        }
        // 2. What the center recorded.
        if let Some(center) = &self.center {
            match all_hedges(center, self.opts.login, None).await {
                Ok(hedges) => {
                    for h in hedges.iter().filter(|h| h.status != HedgeStatus::Failed) {
                        let item = PlanItemId(h.plan_item_id);
                        self.book.set_recorded(item, h.volume, [h.deal]);
                        for f in self.book.fills(item).to_vec() {
                            self.book.mark_recorded(f.deal);
                        }
                        self.recorded_items.insert(item);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "center unreachable; rebuilding from the account and the outbox")
                }
            }
        }
        // 3. What waits in the outbox.
        for queued in self.outbox.peek(100_000)? {
            if queued.kind == KIND_EXECUTED {
                if let Ok(rec) = serde_json::from_str::<HedgeExecuted>(&queued.body) {
                    let item = PlanItemId(rec.plan_item_id);
                    self.book.set_recorded(item, rec.volume, [rec.deal]);
                    for f in self.book.fills(item).to_vec() {
                        self.book.mark_recorded(f.deal);
                    }
                    self.recorded_items.insert(item);
                }
            }
        }
        // 4. Executed but unrecorded: record now, before acting.
        let unrecorded: BTreeSet<PlanItemId> = self
            .book
            .unrecorded()
            .iter()
            .filter(|f| !f.closing)
            .map(|f| f.item)
            .collect();
        let mut recorded = 0;
        for item in unrecorded {
            if self.record_executed(item, None, None)? {
                recorded += 1;
                tracing::warn!(item = %item, "hedge found on the account but not in the center; recorded it");
            }
        }
        let closing_symbols: BTreeSet<String> = self
            .book
            .unrecorded()
            .iter()
            .filter(|f| f.closing)
            .map(|f| f.symbol.clone())
            .collect();
        for symbol in closing_symbols {
            self.record_holding(&symbol)?;
        }
        for f in self.book.all_fills().map(|f| f.deal).collect::<Vec<_>>() {
            self.book.mark_recorded(f);
        }
        self.watched = self
            .terminal
            .with_state(|s| watched_positions(s.positions.values()));
        let fills = self.book.all_fills().count();
        tracing::info!(login = %self.opts.login, netting = self.netting, fills, recorded, "hedger state rebuilt");
        self.emit(HedgerEvent::Ready {
            login: self.opts.login,
            netting: self.netting,
            fills,
            recorded,
        });
        Ok(())
    }

    /// Queues the record of an executed item (once per item). Returns whether it queued one.
    fn record_executed(
        &mut self,
        item: PlanItemId,
        latency: Option<Duration>,
        requested: Option<Price>,
    ) -> Result<bool, HedgerError> {
        if self.recorded_items.contains(&item) {
            return Ok(false);
        }
        let fills: Vec<_> = self
            .book
            .fills(item)
            .iter()
            .filter(|f| !f.closing)
            .cloned()
            .collect();
        let Some(record) = executed_record(
            self.opts.login,
            item,
            &fills,
            &self.opts.symbol_map,
            latency.map(|d| d.as_micros() as u64),
            requested,
        ) else {
            return Ok(false);
        };
        self.outbox.push(NewItem::json(
            format!("hedge:{}:{}", self.opts.login, item),
            KIND_EXECUTED,
            &record,
        )?)?;
        for f in &fills {
            self.book.mark_recorded(f.deal);
        }
        self.recorded_items.insert(item);
        Ok(true)
    }

    /// Queues what the account now holds for a symbol, so the center's hedges are reduced to it.
    fn record_holding(&mut self, account_symbol: &str) -> Result<(), HedgerError> {
        let canonical = self
            .opts
            .symbol_map
            .to_canonical(account_symbol)
            .unwrap_or_else(|| account_symbol.to_owned());
        let positions = self.held_positions();
        let holding = HoldingSnapshot::capture(
            &canonical,
            account_symbol,
            self.netting,
            &positions,
            now_ms(),
        );
        let key = format!(
            "holding:{}:{}:{}",
            self.opts.login,
            canonical,
            serde_json::to_string(&holding.positions)?
        );
        self.outbox
            .push(NewItem::json(key, KIND_REDUCED, &holding)?)?;
        Ok(())
    }

    fn plan_items(&self) -> Vec<PlanItem> {
        self.plan
            .items()
            .into_iter()
            .filter(|i| self.opts.symbols.is_empty() || self.opts.symbols.contains(&i.symbol))
            .map(|i| PlanItem {
                id: PlanItemId(i.id),
                symbol: i.symbol,
                side: i.side,
                volume: i.volume,
            })
            .collect()
    }

    /// Plans and sends everything the held plan asks for, all orders at once.
    pub async fn act(&mut self, reason: &str, started: Instant) -> Result<usize, HedgerError> {
        let items = self.plan_items();
        let specs = self.specs();
        let positions = self.held_positions();
        let decision = {
            let view = AccountView {
                netting: self.netting,
                positions: &positions,
                symbols: &self.opts.symbol_map,
                specs: &specs,
            };
            planner::plan(&items, &view, &self.book, &self.breakers.halted())
        };
        for (item, why) in &decision.skipped {
            if !matches!(why, planner::SkipReason::Done) {
                tracing::warn!(item = %item, reason = %why, "plan item not executed");
            }
        }
        if decision.legs.is_empty() {
            return Ok(0);
        }
        for leg in &decision.legs {
            self.book.begin(leg.item, leg.volume);
        }
        let settings = self.opts.orders.clone();
        let terminal = self.terminal.clone();
        // All legs at once: each writes its command as soon as it is polled, so the orders are on
        // the wire back to back and their round trips overlap.
        let reports = futures::future::join_all(
            decision
                .legs
                .iter()
                .cloned()
                .map(|leg| execute_leg(&terminal, leg, &settings)),
        )
        .await;
        let elapsed = started.elapsed();
        let mut filled = 0;
        let mut opened_items: BTreeMap<PlanItemId, (Duration, Price)> = BTreeMap::new();
        let mut reduced_symbols = BTreeSet::new();
        let total = reports.len();
        for report in reports.into_iter().flatten() {
            self.book.end(report.leg.item, report.leg.volume);
            if self.handle_report(&report)? {
                filled += 1;
                if report.leg.reduces {
                    reduced_symbols.insert(report.leg.symbol.clone());
                } else {
                    opened_items
                        .entry(report.leg.item)
                        .or_insert((report.latency, report.requested_price));
                }
            }
        }
        for (item, (latency, requested)) in opened_items {
            self.record_executed(item, Some(latency), Some(requested))?;
        }
        for symbol in reduced_symbols {
            self.record_holding(&symbol)?;
        }
        tracing::info!(
            reason,
            orders = total,
            filled,
            elapsed_us = elapsed.as_micros() as u64,
            "hedge orders done"
        );
        self.emit(HedgerEvent::Batch {
            reason: reason.to_owned(),
            orders: total,
            filled,
            elapsed_us: elapsed.as_micros() as u64,
        });
        Ok(filled)
    }

    /// Books one leg's outcome; true when it filled.
    fn handle_report(&mut self, report: &LegReport) -> Result<bool, HedgerError> {
        let sent_side = report.request.order_type.side().unwrap_or(report.leg.side);
        let filling = format!("{:?}", report.request.type_filling);
        let mut event = OrderEvent {
            item: report.leg.item.0,
            symbol: report.leg.symbol.clone(),
            side: sent_side,
            volume: report.leg.volume,
            filled: Volume::ZERO,
            closes: report.leg.close.map(|p| p.0),
            retcode: report.retcodes.last().map(|r| r.0),
            retcodes: report.retcodes.iter().map(|r| r.0).collect(),
            attempts: report.attempts,
            price: None,
            latency_us: report.latency.as_micros() as u64,
            outcome: String::new(),
            filling,
        };
        let filled = match &report.outcome {
            LegOutcome::Filled { reply, fill } => {
                self.breakers.success(&report.leg.canonical);
                event.filled = reply.volume;
                event.price = Some(reply.price);
                event.outcome = "filled".into();
                tracing::info!(
                    item = %report.leg.item, symbol = %report.leg.symbol, side = %sent_side,
                    volume = %report.leg.volume, filled = %reply.volume, price = %reply.price,
                    closes = ?report.leg.close, retcode = %reply.retcode, attempts = report.attempts,
                    latency_us = report.latency.as_micros() as u64, "hedge order filled"
                );
                if let Some(f) = fill.clone() {
                    self.book.add_fill(f);
                }
                true
            }
            LegOutcome::Rejected {
                failure,
                retcode,
                comment,
            } => {
                event.outcome = match failure {
                    Failure::Fatal => "rejected".into(),
                    Failure::RetriesExhausted => "retries exhausted".into(),
                };
                tracing::warn!(
                    item = %report.leg.item, symbol = %report.leg.symbol, side = %sent_side,
                    volume = %report.leg.volume, retcode = %retcode, attempts = report.attempts,
                    %comment, "hedge order given up"
                );
                self.outbox.push(NewItem::json(
                    format!(
                        "hedge-failed:{}:{}:{}:{}",
                        self.opts.login, report.leg.item, report.leg.leg, report.attempts
                    ),
                    KIND_FAILED,
                    &HedgeFailed {
                        plan_item_id: report.leg.item.0,
                        hedge_login: self.opts.login,
                        symbol: report.leg.canonical.clone(),
                        side: sent_side,
                        volume: report.leg.volume,
                        retcode: *retcode,
                        message: format!("{}: {comment}", retcode.description()),
                        time_ms: now_ms(),
                    },
                )?)?;
                if let Some(trip) = self.breakers.failure(&report.leg.canonical, *retcode) {
                    tracing::error!(symbol = %report.leg.canonical, reason = %trip.reason, "circuit breaker open: symbol halted");
                    self.emit(HedgerEvent::Breaker {
                        symbol: report.leg.canonical.clone(),
                        reason: trip.reason.clone(),
                    });
                    self.send_status(Some(format!(
                        "{} halted: {}",
                        report.leg.canonical, trip.reason
                    )));
                }
                false
            }
            LegOutcome::Unknown(why) => {
                event.outcome = format!("unknown: {why}");
                tracing::warn!(item = %report.leg.item, symbol = %report.leg.symbol, %why,
                    "hedge order outcome unknown; the account will tell after the next snapshot");
                false
            }
        };
        self.emit(HedgerEvent::Order(event));
        Ok(filled)
    }

    /// The hedger's status for the center's dashboard (breakers included).
    fn send_status(&self, message: Option<String>) {
        let Some(center) = self.center.clone() else {
            return;
        };
        let mut breakers = BTreeMap::new();
        for symbol in self.breakers.halted().keys() {
            breakers.insert(symbol.clone(), BreakerState::Open);
        }
        let status = AccountStatus {
            connected: self.terminal.is_connected(),
            last_event_ms: Some(self.terminal.with_state(|s| s.last_time)),
            outbox_pending: self.outbox.pending().unwrap_or(0),
            breakers,
            message,
            ..AccountStatus::default()
        };
        let login = self.opts.login;
        tokio::spawn(async move {
            if let Err(e) = center.heartbeat(login, &status).await {
                tracing::debug!(error = %e, "status not sent");
            }
        });
    }

    fn take_fill_from_tx(&mut self, tx: &hedge_protocol::Tx) {
        if let Some(deal) = &tx.deal_record {
            if let Some(fill) = fill_from_deal(deal) {
                self.book.add_fill(fill);
            }
        }
    }

    /// Runs until `--once` is satisfied or the terminal link is shut down.
    pub async fn run(mut self) -> Result<(), HedgerError> {
        let mut events = self.terminal.subscribe();
        if self.terminal.ready().await.is_err() {
            return Err(HedgerError::TerminalGone);
        }
        self.spawn_registration();
        self.rebuild().await?;
        let mut plan_version = self.plan.version.subscribe();
        let mut status_tick = tokio::time::interval(self.opts.status_interval);
        if self.opts.mode == Mode::Mirror {
            self.act("start-up", Instant::now()).await?;
        }
        loop {
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(TerminalEvent::Tx(tx)) => {
                        let started = Instant::now();
                        self.take_fill_from_tx(&tx);
                        if let Some(trigger) = trigger_of(&tx) {
                            self.watched.remove(&trigger.position);
                            if self.opts.mode == Mode::Trigger && self.on_trigger(trigger, started).await? {
                                return Ok(());
                            }
                        } else {
                            self.watched = self.terminal.with_state(|s| watched_positions(s.positions.values()));
                        }
                    }
                    Ok(TerminalEvent::Connected { resync: true, snapshot, .. }) => {
                        let started = Instant::now();
                        tracing::info!("terminal reconnected; resynchronising");
                        let now = watched_positions(snapshot.positions.iter());
                        let gone = vanished(&self.watched, &now);
                        self.rebuild().await?;
                        if self.opts.mode == Mode::Trigger {
                            if let Some(trigger) = gone.into_iter().next() {
                                if self.on_trigger(trigger, started).await? {
                                    return Ok(());
                                }
                            }
                        } else {
                            self.act("reconnect", started).await?;
                        }
                    }
                    Ok(TerminalEvent::Snapshot(snapshot)) => {
                        let now = watched_positions(snapshot.positions.iter());
                        let gone = vanished(&self.watched, &now);
                        self.watched = now;
                        if self.opts.mode == Mode::Trigger {
                            if let Some(trigger) = gone.into_iter().next() {
                                if self.on_trigger(trigger, Instant::now()).await? {
                                    return Ok(());
                                }
                            }
                        }
                    }
                    Ok(TerminalEvent::Disconnected { reason, .. }) => {
                        tracing::warn!(%reason, "terminal disconnected; waiting for it to return");
                    }
                    Ok(TerminalEvent::Gap { expected, got }) => {
                        tracing::warn!(expected, got, "messages lost on the terminal link; asking for a snapshot");
                        let terminal = self.terminal.clone();
                        tokio::spawn(async move {
                            let _ = terminal.request_snapshot(CmdId(format!("hedger-snapshot-{}", now_ms()))).await;
                        });
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "fell behind the terminal's events; rebuilding");
                        self.rebuild().await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(HedgerError::TerminalGone),
                },
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
                _ = status_tick.tick() => {
                    self.send_status(None);
                }
            }
        }
    }

    /// Handles a trigger; true when the hedger should stop (`--once`).
    async fn on_trigger(
        &mut self,
        trigger: Trigger,
        started: Instant,
    ) -> Result<bool, HedgerError> {
        tracing::info!(position = %trigger.position, symbol = %trigger.symbol, how = trigger.how, "trigger: own position closed");
        self.emit(HedgerEvent::Trigger {
            position: trigger.position.0,
            symbol: trigger.symbol.clone(),
            how: trigger.how.to_owned(),
        });
        self.act("trigger", started).await?;
        if self.opts.once {
            tracing::info!("--once: trigger handled, stopping");
            self.emit(HedgerEvent::Finished);
            return Ok(true);
        }
        Ok(false)
    }
}
