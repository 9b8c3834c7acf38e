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

use crate::account_view::{fill_from_deal, trigger_of, vanished, watched_positions, Trigger};
use crate::netting_hedges::HedgeLedger;
use crate::orders::{execute_leg, LegOutcome, LegReport, OrderSettings};
use crate::planner::{self, AccountView, HedgeBook, HeldPosition, Leg, PlanItem};
use crate::probe::{Probe, Stage};
use crate::records::{executed_record, reduce_targets, HoldingSnapshot};
use crate::retry::{Breakers, Failure};
use crate::tag::command_of;
use crate::tag::PlanItemId;
use futures::FutureExt;
use hedge_agent::center::{from_client_error, parse_item, queue_registration, CenterDelivery};
use hedge_agent::outbox::{Delivery, DeliveryError, NewItem, Outbox, OutboxItem, OutboxKind};
use hedge_agent::valuation::{self, Commissions};
use hedge_center_api::client::{CenterClient, ClientError};
use hedge_center_api::model::{
    AccountRegistration, AccountRole, AccountStatus, BreakerState, Command, CommandKind,
    CommandResult, CommandStatus, EventKind, Hedge, HedgeExecuted, HedgeFailed, HedgePlan,
    HedgeReduce, HedgeStatus, PageQuery,
};
use hedge_domain::{
    CmdId, DealTicket, Login, OrderTicket, Price, Side, SymbolMap, SymbolSpec, Volume,
};
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
    /// How often the center's open hedges are compared with the account's positions (on top of
    /// every fill and every reconnect).
    pub reconcile_interval: Duration,
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
            reconcile_interval: Duration::from_secs(2),
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

impl OrderEvent {
    /// What was sent for one leg, as the terminal's last answer left it; the caller fills in the
    /// outcome. The side is the one the order actually carried, which is what gets logged.
    fn sent(report: &LegReport) -> OrderEvent {
        OrderEvent {
            item: report.leg.item.0,
            symbol: report.leg.symbol.clone(),
            side: report.request.order_type.side().unwrap_or(report.leg.side),
            volume: report.leg.volume,
            filled: Volume::ZERO,
            closes: report.leg.close.map(|p| p.0),
            retcode: report.retcodes.last().map(|r| r.0),
            retcodes: report.retcodes.iter().map(|r| r.0).collect(),
            attempts: report.attempts,
            price: None,
            latency_us: report.latency.as_micros() as u64,
            outcome: String::new(),
            filling: format!("{:?}", report.request.type_filling),
        }
    }
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
    /// Bumped when the stream announces an operator command for this account.
    commands: watch::Sender<u64>,
    probe: Option<Arc<Probe>>,
}

impl PlanHolder {
    /// A holder whose follower and runtime record their stages in `probe` (benchmarks).
    pub fn with_probe(probe: Arc<Probe>) -> Self {
        PlanHolder {
            probe: Some(probe),
            ..PlanHolder::default()
        }
    }

    fn command_issued(&self) {
        self.commands.send_modify(|v| *v += 1);
    }

    fn mark(&self, stage: Stage, key: u64, at: Instant) {
        if let Some(p) = &self.probe {
            p.record(stage, key, at);
        }
    }
    pub fn get(&self) -> Option<HedgePlan> {
        self.plan.read().clone()
    }

    fn items(&self) -> Vec<hedge_center_api::model::PlanItem> {
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
            if self.probe.is_some() {
                let now = Instant::now();
                for item in self.items() {
                    self.mark(Stage::PlanHeld, item.id, now);
                }
            }
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
                        holder.mark(Stage::EventReceived, e.id, Instant::now());
                        let mut newest = e.kind.moves_plan().then_some(e.id);
                        let mine = |e: &hedge_center_api::model::Event| {
                            e.kind == EventKind::CommandIssued && e.login.is_none_or(|l| l == login)
                        };
                        let mut commands = mine(&e);
                        // Take everything already queued, then fetch once.
                        while let Some(Some(Ok(more))) = sub.next().now_or_never() {
                            holder.mark(Stage::EventReceived, more.id, Instant::now());
                            commands |= mine(&more);
                            if more.kind.moves_plan() {
                                newest = Some(more.id);
                            }
                        }
                        if commands {
                            holder.command_issued();
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

/// What one reaction did.
#[derive(Debug, Default)]
struct ActSummary {
    filled: usize,
    /// Legs given up, with the last retcode and the server's comment.
    rejected: Vec<(hedge_domain::Retcode, String)>,
}

fn done(retcode: Option<hedge_domain::Retcode>, message: String) -> CommandResult {
    CommandResult {
        status: CommandStatus::Done,
        retcode,
        message: Some(message),
    }
}

fn failed(retcode: Option<hedge_domain::Retcode>, message: String) -> CommandResult {
    CommandResult {
        status: CommandStatus::Failed,
        retcode,
        message: Some(message),
    }
}

/// How long a holding waits for the transactions of the deals that changed it.
const DUE_HOLDING_WAIT: Duration = Duration::from_secs(3);

/// A holding to record once the account's state has the deals that changed it.
#[derive(Clone, Debug)]
struct DueHolding {
    /// Account symbol.
    symbol: String,
    deals: BTreeSet<DealTicket>,
    since: Instant,
}

/// The most recent deals whose transactions reached the terminal's state.
#[derive(Default)]
struct SeenDeals {
    set: BTreeSet<DealTicket>,
    order: std::collections::VecDeque<DealTicket>,
}

impl SeenDeals {
    /// Far more than the deals of any batch still waiting for its transactions.
    const CAPACITY: usize = 4096;

    fn insert(&mut self, deal: DealTicket) {
        if self.set.insert(deal) {
            self.order.push_back(deal);
            if self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, deal: DealTicket) -> bool {
        self.set.contains(&deal)
    }
}

/// Delivers the hedger's outbox items to the center.
#[derive(Clone)]
pub struct HedgeDelivery {
    pub center: CenterClient,
    pub login: Login,
}

/// The result of an operator command, waiting in the outbox for the center.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CommandAnswer {
    pub id: u64,
    pub result: CommandResult,
}

/// The outcome of a center call, as the outbox counts it.
fn sent<T>(r: Result<T, ClientError>) -> Result<(), DeliveryError> {
    r.map(drop).map_err(from_client_error)
}

/// Every hedge of an account the center holds (all pages).
pub async fn all_hedges(
    center: &CenterClient,
    login: Login,
    symbol: Option<String>,
) -> Result<Vec<Hedge>, ClientError> {
    hedges_where(center, login, symbol, None).await
}

/// The hedges of an account the center holds open (all pages).
pub async fn open_hedges(center: &CenterClient, login: Login) -> Result<Vec<Hedge>, ClientError> {
    hedges_where(center, login, None, Some(true)).await
}

async fn hedges_where(
    center: &CenterClient,
    login: Login,
    symbol: Option<String>,
    open: Option<bool>,
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
                open,
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
        match OutboxKind::parse(&item.kind) {
            Some(OutboxKind::HedgeExecuted) => sent(
                self.center
                    .hedge_executed(&parse_item::<HedgeExecuted>(item)?)
                    .await,
            ),
            Some(OutboxKind::HedgeFailed) => sent(
                self.center
                    .hedge_failed(&parse_item::<HedgeFailed>(item)?)
                    .await,
            ),
            Some(OutboxKind::HedgeHolding) => {
                let holding: HoldingSnapshot = parse_item(item)?;
                let hedges = all_hedges(&self.center, self.login, Some(holding.symbol.clone()))
                    .await
                    .map_err(from_client_error)?;
                let reason = match &holding.correction {
                    Some(found) => format!("correction: {found}"),
                    None => "reduced on the hedge account".to_owned(),
                };
                for (id, remaining) in reduce_targets(&hedges, &holding) {
                    sent(
                        self.center
                            .hedge_reduced(
                                id,
                                &HedgeReduce {
                                    remaining,
                                    deal: None,
                                    price: None,
                                    time_ms: holding.time_ms,
                                    reason: reason.clone(),
                                },
                            )
                            .await,
                    )?;
                }
                Ok(())
            }
            Some(OutboxKind::CommandResult) => {
                let answer: CommandAnswer = parse_item(item)?;
                sent(self.center.command_result(answer.id, &answer.result).await)
            }
            // Registration is the agents' own item: delivered exactly as they deliver it.
            Some(OutboxKind::Register) => {
                CenterDelivery {
                    center: Some(self.center.clone()),
                    legacy: None,
                }
                .deliver(item)
                .await
            }
            _ => Err(DeliveryError::Rejected(format!(
                "unknown outbox item kind {:?}",
                item.kind
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
    /// Netting accounts: the hedges as bi-directional positions (`None` on hedging accounts, or
    /// while the history does not replay).
    ledger: Option<HedgeLedger>,
    /// Operator commands whose orders are on the account (their comment names them).
    commands_on_account: BTreeSet<u64>,
    /// Operator commands whose result is recorded (in the center or queued in the outbox).
    commands_answered: BTreeSet<u64>,
    /// The ledger lost track of a live record: rebuild before acting again.
    ledger_stale: bool,
    /// Holdings to record once the account's state has the deals that changed them.
    holding_due: Vec<DueHolding>,
    /// Deals whose transaction has been applied to the terminal's state, newest last (bounded):
    /// a reply arrives before its deal's `tx`, and a holding captured in between would still show
    /// the volume the reduction took back.
    seen_deals: SeenDeals,
    /// Corrections sent since start: center records that had drifted from the account.
    corrections: u64,
    /// Mirror mode held back a symbol while its trades were being recorded.
    deferred: bool,
    /// The plan fetch after the records failed: the held-back symbols wait for a timed retry
    /// rather than for the next acknowledgement.
    deferred_fetch_failed: bool,
    /// Commission per open position, from the deals seen, for the marks in the status.
    commissions: Commissions,
    /// Canonical symbols traded (opened or reduced) since the held plan was fetched. A plan that
    /// arrives from the event stream may have been computed before their records were stored (its
    /// fetch can finish after the outbox has sent the last record) and ask for the same volume
    /// again, so mirror mode acts on them again only with a plan fetched once no record is left to
    /// send.
    traded_since_plan: BTreeSet<String>,
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
            ledger: None,
            commands_on_account: BTreeSet::new(),
            commands_answered: BTreeSet::new(),
            ledger_stale: false,
            holding_due: Vec::new(),
            seen_deals: SeenDeals::default(),
            corrections: 0,
            deferred: false,
            deferred_fetch_failed: false,
            traded_since_plan: BTreeSet::new(),
            commissions: Commissions::default(),
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

    /// What the planner reduces: on a netting account the hedges as the ledger keeps them, one
    /// position per hedge; on a hedging account the terminal's positions.
    fn held_positions(&self) -> Vec<HeldPosition> {
        if let (true, Some(ledger)) = (self.netting, &self.ledger) {
            return ledger.hedges();
        }
        self.terminal.with_state(|s| {
            s.positions
                .values()
                .map(crate::account_view::held_position)
                .collect()
        })
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

    /// Rebuilds what was done from the account, the center and the outbox; records executed hedges
    /// the center has not seen. Called at start-up and after every reconnect of the terminal.
    pub async fn rebuild(&mut self) -> Result<(), HedgerError> {
        self.netting = self
            .terminal
            .hello()
            .map(|h| h.margin_mode.is_netting())
            .unwrap_or(false);
        self.generation = self.terminal.with_state(|s| s.generation);
        self.ledger_stale = false;
        // 1. What the account shows: every hedge-tagged deal of the look-back window.
        let now = now_ms();
        // The ledger needs the whole history to know which hedges are open; elsewhere the
        // look-back window is enough to find the hedge deals.
        let from = if self.netting {
            0
        } else {
            now - i64::from(self.opts.history_days) * 86_400_000
        };
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
                    self.commissions.record(deal);
                    if let Some(fill) = fill_from_deal(deal) {
                        self.book.add_fill(fill);
                    }
                    if let Some(id) = command_of(&deal.comment) {
                        self.commands_on_account.insert(id);
                    }
                }
                if self.netting {
                    let mode = self
                        .terminal
                        .hello()
                        .map(|h| h.margin_mode)
                        .unwrap_or(hedge_domain::AccountMarginMode::RetailNetting);
                    match HedgeLedger::replay(self.opts.login, mode, &h.orders, &h.deals) {
                        Ok(ledger) => {
                            tracing::info!(
                                hedges = ledger.hedges().len(),
                                deals = h.deals.len(),
                                "hedges rebuilt from the account's history through the ledger"
                            );
                            self.ledger = Some(ledger);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the account's history does not replay; reducing against the net position");
                            self.ledger = None;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "account history unavailable; relying on the center's records");
                if self.netting {
                    self.ledger = None;
                }
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
            if queued.kind == OutboxKind::CommandResult {
                if let Ok(answer) = serde_json::from_str::<CommandAnswer>(&queued.body) {
                    self.commands_answered.insert(answer.id);
                }
            }
            if queued.kind == OutboxKind::HedgeExecuted {
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
            self.record_holding(&symbol, None)?;
        }
        for f in self.book.all_fills().map(|f| f.deal).collect::<Vec<_>>() {
            self.book.mark_recorded(f);
        }
        // A reduction whose deal never reached the ledger live is in the history just read (or
        // it did not happen); either way the holding is current now.
        for due in std::mem::take(&mut self.holding_due) {
            self.record_holding(&due.symbol, None)?;
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
        let Some(mut record) = executed_record(
            self.opts.login,
            item,
            &fills,
            &self.opts.symbol_map,
            latency.map(|d| d.as_micros() as u64),
            requested,
        ) else {
            return Ok(false);
        };
        if self.netting {
            // The hedge's position is the ledger's: the one its opening order started.
            record.position_id = hedge_domain::PositionId(record.order.0);
        }
        self.outbox.push(NewItem::json(
            format!("hedge:{}:{}", self.opts.login, item),
            OutboxKind::HedgeExecuted,
            &record,
        )?)?;
        for f in &fills {
            self.book.mark_recorded(f.deal);
        }
        self.recorded_items.insert(item);
        Ok(true)
    }

    /// Records what a symbol holds once the account's state has taken `deals` (the reductions
    /// just filled): the replies come before the deals' transactions, and a holding captured
    /// earlier would still show the volume they took back, so the center would never hear of the
    /// reduction. On a netting account seen through the ledger, the ledger must have them.
    fn record_holding_after(
        &mut self,
        account_symbol: &str,
        deals: BTreeSet<DealTicket>,
        since: Instant,
    ) -> Result<(), HedgerError> {
        let known = |d: &DealTicket| match (&self.ledger, self.netting) {
            (Some(l), true) => l.knows_deal(*d),
            _ => self.seen_deals.contains(*d),
        };
        if deals.iter().all(known) {
            return self.record_holding(account_symbol, None);
        }
        if since.elapsed() >= DUE_HOLDING_WAIT {
            // The deal's transaction never came (lost with a link): the state is as current as it
            // will get; the periodic comparison corrects whatever this misses.
            tracing::debug!(
                symbol = account_symbol,
                "deal transactions missing; recording the holding as it is"
            );
            return self.record_holding(account_symbol, None);
        }
        self.holding_due.push(DueHolding {
            symbol: account_symbol.to_owned(),
            deals,
            since,
        });
        Ok(())
    }

    /// Canonical symbols with an execution or reduction record still in the outbox, or with a
    /// reduction whose deals have not reached the account's state: until they have, the
    /// positions (or the ledger's hedges) still show what the reduction took back, and a plan
    /// acted on then would close the same hedge again (on a netting account, a linked close of a
    /// hedge already closed opens a reversed position).
    fn symbols_being_recorded(&self) -> Result<BTreeSet<String>, HedgerError> {
        let mut due: BTreeSet<String> = self
            .holding_due
            .iter()
            .map(|d| {
                self.opts
                    .symbol_map
                    .to_canonical(&d.symbol)
                    .unwrap_or_else(|| d.symbol.clone())
            })
            .collect();
        if self.outbox.pending()? == 0 {
            return Ok(due);
        }
        due.extend(self.outbox.peek(100_000)?.into_iter().filter_map(|i| {
            match OutboxKind::parse(&i.kind) {
                Some(OutboxKind::HedgeExecuted) => serde_json::from_str::<HedgeExecuted>(&i.body)
                    .ok()
                    .map(|h| h.symbol),
                Some(OutboxKind::HedgeHolding) => serde_json::from_str::<HoldingSnapshot>(&i.body)
                    .ok()
                    .map(|h| h.symbol),
                _ => None,
            }
        }));
        Ok(due)
    }

    /// Acts on what was deferred once the trades are recorded, with a plan fetched after them.
    async fn act_deferred(&mut self) -> Result<(), HedgerError> {
        self.deferred_fetch_failed = false;
        if !self.symbols_being_recorded()?.is_empty() {
            return Ok(());
        }
        let Some(center) = self.center.clone() else {
            self.deferred = false;
            return Ok(());
        };
        match center.plan(self.opts.login).await {
            Ok(plan) => {
                self.deferred = false;
                self.traded_since_plan.clear();
                self.plan.set(plan);
                if self.terminal.is_connected() {
                    self.act("plan after records", Instant::now()).await?;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "plan not available; trying again");
                self.deferred_fetch_failed = true;
            }
        }
        Ok(())
    }

    /// Records the holdings that were waiting for their deals, where the state now has them.
    fn flush_holdings(&mut self) -> Result<(), HedgerError> {
        for due in std::mem::take(&mut self.holding_due) {
            self.record_holding_after(&due.symbol, due.deals, due.since)?;
        }
        Ok(())
    }

    /// Queues what the account now holds for a symbol, so the center's hedges are reduced to it.
    /// `correction` names why a drift was found, for the center's event.
    fn record_holding(
        &mut self,
        account_symbol: &str,
        correction: Option<String>,
    ) -> Result<(), HedgerError> {
        let canonical = self
            .opts
            .symbol_map
            .to_canonical(account_symbol)
            .unwrap_or_else(|| account_symbol.to_owned());
        let positions = self.held_positions();
        // Through the ledger a netting account holds one position per hedge, like a hedging one.
        let shared_net = self.netting && self.ledger.is_none();
        let mut holding =
            HoldingSnapshot::capture(&canonical, account_symbol, shared_net, &positions, now_ms());
        holding.correction = correction;
        let key = format!(
            "holding:{}:{}:{}",
            self.opts.login,
            canonical,
            serde_json::to_string(&holding.positions)?
        );
        self.outbox
            .push(NewItem::json(key, OutboxKind::HedgeHolding, &holding)?)?;
        Ok(())
    }

    /// Why the account takes no orders from the hedger at all, as the terminal said in `hello`.
    fn trading_refused(&self) -> Option<&'static str> {
        let hello = self.terminal.hello()?;
        if !hello.account_trade_allowed {
            Some("the account may not trade (an investor login?)")
        } else if !hello.trade_expert {
            Some("the trade server refuses orders from Expert Advisors on this account")
        } else if !hello.trade_allowed {
            Some("trading is disabled in the terminal (the Algo Trading button)")
        } else {
            None
        }
    }

    /// Compares the center's open hedges with what the account holds and queues the corrections:
    /// the account is the truth. Symbols whose records are still on their way, or whose deals
    /// have not reached the account's state yet, are left for the next comparison, so a record in
    /// flight is never mistaken for a drift. Returns the corrections queued.
    pub async fn reconcile(&mut self, why: &str) -> Result<usize, HedgerError> {
        let Some(center) = self.center.clone() else {
            return Ok(0);
        };
        if !self.terminal.is_connected() || self.ledger_stale {
            return Ok(0);
        }
        // Executed hedges the center never heard of (a reply lost, the fill seen as a `tx`).
        let mut corrections = 0;
        let unrecorded: BTreeSet<PlanItemId> = self
            .book
            .unrecorded()
            .iter()
            .filter(|f| !f.closing && !self.recorded_items.contains(&f.item))
            .map(|f| f.item)
            .collect();
        for item in unrecorded {
            if self.record_executed(item, None, None)? {
                corrections += 1;
                tracing::warn!(item = %item, why, "correction: hedge on the account the center did not hold; recorded it");
            }
        }
        let hedges = match open_hedges(&center, self.opts.login).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "center unreachable; comparison skipped");
                return Ok(corrections);
            }
        };
        // Read after the fetch: a record the sender delivered meanwhile is in the fetched list.
        let mut busy = self.symbols_being_recorded()?;
        for due in &self.holding_due {
            busy.insert(
                self.opts
                    .symbol_map
                    .to_canonical(&due.symbol)
                    .unwrap_or_else(|| due.symbol.clone()),
            );
        }
        let symbols: BTreeSet<String> = hedges.iter().map(|h| h.symbol.clone()).collect();
        let positions = self.held_positions();
        let shared_net = self.netting && self.ledger.is_none();
        for canonical in symbols.difference(&busy) {
            let account_symbol = hedges
                .iter()
                .find(|h| &h.symbol == canonical && !h.account_symbol.is_empty())
                .map(|h| h.account_symbol.clone())
                .unwrap_or_else(|| self.opts.symbol_map.to_account(canonical));
            let holding = HoldingSnapshot::capture(
                canonical,
                &account_symbol,
                shared_net,
                &positions,
                now_ms(),
            );
            let targets = reduce_targets(&hedges, &holding);
            if targets.is_empty() {
                continue;
            }
            let found = targets
                .iter()
                .map(|(id, keep)| {
                    let had = hedges
                        .iter()
                        .find(|h| h.id == *id)
                        .map(|h| h.open_volume)
                        .unwrap_or(Volume::ZERO);
                    format!("hedge #{id} open {had} in the center, {keep} on the account")
                })
                .collect::<Vec<_>>()
                .join("; ");
            tracing::warn!(symbol = %canonical, why, %found, "correction: the center's hedges differ from the account");
            self.record_holding(&account_symbol, Some(found))?;
            corrections += targets.len();
        }
        self.corrections += corrections as u64;
        Ok(corrections)
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
        Ok(self.act_on(reason, started, None).await?.filled)
    }

    /// Plans and sends what the held plan asks for, for one canonical symbol or all of them.
    async fn act_on(
        &mut self,
        reason: &str,
        started: Instant,
        only: Option<&str>,
    ) -> Result<ActSummary, HedgerError> {
        let items: Vec<PlanItem> = self
            .plan_items()
            .into_iter()
            .filter(|i| only.is_none_or(|s| s == i.symbol))
            .collect();
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
        let mut decision = decision;
        if self.opts.mode == Mode::Mirror && reason != "retry" && !decision.legs.is_empty() {
            // A plan computed before a trade's records were stored asks for that trade again: an
            // open would be hedged twice, a reduction reduced twice. Symbols traded since the
            // held plan, or whose records are still on their way, wait for a plan fetched after
            // them.
            let mut recording = self.symbols_being_recorded()?;
            recording.extend(self.traded_since_plan.iter().cloned());
            if !recording.is_empty() {
                decision.legs.retain(|l| !recording.contains(&l.canonical));
                tracing::debug!(symbols = ?recording, "waiting for the trades to be recorded");
                self.deferred = true;
            }
        }
        for (item, why) in &decision.skipped {
            if !matches!(why, planner::SkipReason::Done) {
                tracing::warn!(item = %item, reason = %why, "plan item not executed");
            }
        }
        if decision.legs.is_empty() {
            return Ok(ActSummary::default());
        }
        if let Some(why) = self.trading_refused() {
            // Every order would come back 10026 and open the breakers; the plan waits instead,
            // and the trader reads why on the dashboard.
            tracing::warn!(
                reason = why,
                orders = decision.legs.len(),
                "hedge orders not sent"
            );
            self.send_status(Some(format!("hedge orders not sent: {why}")), false);
            return Ok(ActSummary::default());
        }
        for leg in &decision.legs {
            self.book.begin(leg.item, leg.volume);
        }
        let settings = self.opts.orders.clone();
        let terminal = self.terminal.clone();
        let written = Instant::now();
        for leg in &decision.legs {
            self.plan.mark(Stage::OrderWritten, leg.item.0, written);
        }
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
        let mut reduced_symbols: BTreeMap<String, BTreeSet<DealTicket>> = BTreeMap::new();
        let total = reports.len();
        let mut rejected = Vec::new();
        for report in reports.into_iter().flatten() {
            if let LegOutcome::Rejected {
                retcode, comment, ..
            } = &report.outcome
            {
                rejected.push((*retcode, comment.clone()));
                self.book.gave_up(report.leg.item, report.attempts);
            }
            self.plan.mark(
                Stage::OrderAnswered,
                report.leg.item.0,
                written + report.latency,
            );
            self.book.end(report.leg.item, report.leg.volume);
            if self.handle_report(&report)? {
                filled += 1;
                if self.opts.mode == Mode::Mirror {
                    self.traded_since_plan.insert(report.leg.canonical.clone());
                    self.deferred = true;
                }
                if report.leg.reduces {
                    let deals = reduced_symbols
                        .entry(report.leg.symbol.clone())
                        .or_default();
                    if let LegOutcome::Filled { reply, .. } = &report.outcome {
                        deals.insert(reply.deal);
                    }
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
        for (symbol, deals) in reduced_symbols {
            self.record_holding_after(&symbol, deals, Instant::now())?;
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
        Ok(ActSummary { filled, rejected })
    }

    /// Carries out the account's pending operator commands, oldest first. A command whose result is
    /// already recorded is skipped; one already carried out on the account is only answered.
    async fn run_commands(&mut self) -> Result<(), HedgerError> {
        let Some(center) = self.center.clone() else {
            return Ok(());
        };
        if !self.terminal.is_connected() {
            return Ok(());
        }
        let mut pending = match center.pending_commands(self.opts.login).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "pending commands not available");
                return Ok(());
            }
        };
        pending.sort_by_key(|c| c.id);
        for command in pending {
            if command.hedge_login != self.opts.login
                || command.status != CommandStatus::Pending
                || self.commands_answered.contains(&command.id)
            {
                continue;
            }
            tracing::info!(command = command.id, kind = command.kind.as_str(), hedge = command.hedge_id,
                symbol = %command.symbol, actor = %command.actor, "operator command");
            let result = match command.kind {
                CommandKind::CloseHedge => self.close_hedge(&center, &command).await?,
                CommandKind::RetryHedge => Some(self.retry_hedge(&command).await?),
            };
            if let Some(result) = result {
                self.answer(command.id, result)?;
            }
        }
        Ok(())
    }

    /// Queues a command's result for the center (once per command).
    fn answer(&mut self, id: u64, result: CommandResult) -> Result<(), HedgerError> {
        tracing::info!(command = id, status = result.status.as_str(), retcode = ?result.retcode,
            message = ?result.message, "operator command answered");
        self.outbox.push(NewItem::json(
            format!("command:{}:{id}", self.opts.login),
            OutboxKind::CommandResult,
            &CommandAnswer { id, result },
        )?)?;
        self.commands_answered.insert(id);
        Ok(())
    }

    /// Closes every position of the hedge: by ticket on a hedging account, by an order linked to
    /// the hedge's opening order on a netting one. `None` when the outcome is unknown (the link
    /// failed): the command stays pending and is tried again with the same command ids.
    async fn close_hedge(
        &mut self,
        center: &CenterClient,
        command: &Command,
    ) -> Result<Option<CommandResult>, HedgerError> {
        let account_symbol = if command.account_symbol.is_empty() {
            self.opts.symbol_map.to_account(&command.symbol)
        } else {
            command.account_symbol.clone()
        };
        if self.commands_on_account.contains(&command.id) {
            // Carried out before a restart: make sure the reduction is recorded, then answer.
            self.record_holding(&account_symbol, None)?;
            return Ok(Some(done(
                None,
                "already carried out on the hedge account".into(),
            )));
        }
        // The hedge's positions: tagged with its plan item, or (no item known) the one the center
        // recorded for it.
        let (item, opening) = match command.plan_item {
            Some(item) => (Some(PlanItemId(item)), None),
            None => match all_hedges(center, self.opts.login, Some(command.symbol.clone())).await {
                Ok(hedges) => match hedges.into_iter().find(|h| h.id == command.hedge_id) {
                    Some(h) => (
                        Some(PlanItemId(h.plan_item_id)),
                        Some(if self.netting {
                            hedge_domain::PositionId(h.order.0)
                        } else {
                            h.position_id
                        }),
                    ),
                    None => {
                        return Ok(Some(failed(
                            None,
                            format!(
                                "hedge {} is not a hedge of account {}",
                                command.hedge_id, self.opts.login
                            ),
                        )))
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "hedge record not available; the command waits");
                    return Ok(None);
                }
            },
        };
        let positions: Vec<HeldPosition> = self
            .held_positions()
            .into_iter()
            .filter(|p| {
                p.symbol == account_symbol
                    && p.volume.is_positive()
                    && (opening == Some(p.id) || (item.is_some() && p.item() == item))
            })
            .collect();
        if positions.is_empty() {
            return Ok(Some(done(None, "nothing open for this hedge".into())));
        }
        let mut legs = Vec::with_capacity(positions.len());
        for (n, p) in positions.iter().enumerate() {
            // On a netting account only a linked order closes this hedge and no other; a ticket
            // the link format cannot carry is refused rather than closed by a plain order.
            let link = if self.netting {
                match crate::tag::close_link(OrderTicket(p.id.0)) {
                    Ok(m) => Some(m),
                    Err(e) => return Ok(Some(failed(None, format!("cannot link the close: {e}")))),
                }
            } else {
                None
            };
            legs.push(Leg {
                item: p.item().or(item).unwrap_or(PlanItemId(0)),
                canonical: command.symbol.clone(),
                symbol: p.symbol.clone(),
                side: p.side.opposite(),
                volume: p.volume,
                close: (!self.netting).then_some(p.id),
                link,
                command: Some(command.id),
                reduces: true,
                leg: u32::try_from(n).unwrap_or(u32::MAX),
                attempt_base: 0,
            });
        }
        let started = Instant::now();
        let settings = self.opts.orders.clone();
        let terminal = self.terminal.clone();
        let reports = futures::future::join_all(
            legs.into_iter()
                .map(|leg| execute_leg(&terminal, leg, &settings)),
        )
        .await;
        let mut closed = Volume::ZERO;
        let mut closing_deals = BTreeSet::new();
        let mut last_retcode = None;
        let mut refused = Vec::new();
        let mut unknown = false;
        let total = reports.len();
        for report in reports.into_iter().flatten() {
            let mut event = OrderEvent::sent(&report);
            let sent_side = event.side;
            match &report.outcome {
                LegOutcome::Filled { reply, fill } => {
                    closed += reply.volume;
                    closing_deals.insert(reply.deal);
                    last_retcode = Some(reply.retcode);
                    event.filled = reply.volume;
                    event.price = Some(reply.price);
                    event.outcome = "filled".into();
                    if let Some(f) = fill.clone() {
                        self.book.add_fill(f);
                    }
                    self.commands_on_account.insert(command.id);
                    tracing::info!(command = command.id, symbol = %report.leg.symbol, side = %sent_side,
                        volume = %reply.volume, price = %reply.price, "hedge closed by operator command");
                }
                LegOutcome::Rejected {
                    retcode, comment, ..
                } => {
                    event.outcome = "rejected".into();
                    refused.push((*retcode, comment.clone()));
                }
                LegOutcome::Unknown(why) => {
                    event.outcome = format!("unknown: {why}");
                    unknown = true;
                }
            }
            self.emit(HedgerEvent::Order(event));
        }
        self.emit(HedgerEvent::Batch {
            reason: format!("command {}", command.id),
            orders: total,
            filled: usize::from(closed.is_positive()),
            elapsed_us: started.elapsed().as_micros() as u64,
        });
        if closed.is_positive() {
            self.record_holding_after(&account_symbol, closing_deals, Instant::now())?;
        }
        if let Some((retcode, comment)) = refused.first() {
            return Ok(Some(failed(
                Some(*retcode),
                format!(
                    "{}: {comment} (closed {closed} of the hedge)",
                    retcode.description()
                ),
            )));
        }
        if unknown {
            return Ok(None);
        }
        Ok(Some(done(last_retcode, format!("closed {closed}"))))
    }

    /// Resets the symbol's breaker and acts on the current plan for that symbol.
    async fn retry_hedge(&mut self, command: &Command) -> Result<CommandResult, HedgerError> {
        let was_open = self.breakers.is_open(&command.symbol);
        self.breakers.reset(&command.symbol);
        if was_open {
            self.send_status(
                Some(format!("{} resumed by operator command", command.symbol)),
                false,
            );
        }
        if !self.terminal.is_connected() {
            return Ok(done(
                None,
                "breaker reset; the terminal is not connected".into(),
            ));
        }
        let summary = self
            .act_on("retry", Instant::now(), Some(&command.symbol))
            .await?;
        Ok(match summary.rejected.first() {
            Some((retcode, comment)) => failed(
                Some(*retcode),
                format!("{}: {comment}", retcode.description()),
            ),
            None => done(
                None,
                format!("breaker reset; {} order(s) filled", summary.filled),
            ),
        })
    }

    /// Books one leg's outcome; true when it filled.
    fn handle_report(&mut self, report: &LegReport) -> Result<bool, HedgerError> {
        let mut event = OrderEvent::sent(report);
        let sent_side = event.side;
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
                    OutboxKind::HedgeFailed,
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
                    self.send_status(
                        Some(format!("{} halted: {}", report.leg.canonical, trip.reason)),
                        false,
                    );
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

    /// The hedger's status for the center's dashboard: breakers, the account's money and the marks
    /// of its open positions, so the dashboard can show each hedge's P/L. `refresh` asks the
    /// terminal for a fresh snapshot first (current prices and profit), off the hedger's loop so
    /// the wait never delays an order.
    fn send_status(&mut self, message: Option<String>, refresh: bool) {
        let Some(center) = self.center.clone() else {
            return;
        };
        let mut breakers = BTreeMap::new();
        for symbol in self.breakers.halted().keys() {
            breakers.insert(symbol.clone(), BreakerState::Open);
        }
        let open: BTreeSet<hedge_domain::PositionId> = self
            .terminal
            .with_state(|s| s.positions.keys().copied().collect());
        self.commissions.retain_open(&open);
        let commissions = self.commissions.clone();
        // On a netting account the terminal's one position per symbol holds every hedge of that
        // symbol: its mark is no hedge's own, so none is sent.
        let netting = self.netting;
        let (dead_letters, dead_letter_reason) =
            self.outbox.dead_letter_summary().unwrap_or((0, None));
        let base = AccountStatus {
            outbox_pending: self.outbox.pending().unwrap_or(0),
            dead_letters,
            dead_letter_reason,
            breakers,
            message,
            ..AccountStatus::default()
        };
        let terminal = self.terminal.clone();
        let login = self.opts.login;
        tokio::spawn(async move {
            if refresh && terminal.is_connected() {
                let before = terminal.with_state(|s| s.last_time);
                let cmd_id = format!("hedger-status-{login}-{}", now_ms());
                let asked = tokio::time::timeout(
                    Duration::from_secs(2),
                    terminal.request_snapshot(CmdId(cmd_id)),
                )
                .await;
                if matches!(asked, Ok(Ok(ref r)) if r.is_done()) {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    while terminal.with_state(|s| s.last_time) == before
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            let status = terminal.with_state(|s| {
                let positions: Vec<_> = s.positions.values().cloned().collect();
                AccountStatus {
                    connected: s.connected,
                    last_event_ms: Some(s.last_time),
                    account: s.account.as_ref().map(valuation::account_money),
                    marks: if netting {
                        Vec::new()
                    } else {
                        valuation::terminal_marks(&positions, &commissions)
                    },
                    ..base
                }
            });
            if let Err(e) = center.heartbeat(login, &status).await {
                tracing::debug!(error = %e, "status not sent");
            }
        });
    }

    fn take_fill_from_tx(&mut self, tx: &hedge_protocol::Tx) {
        if let Some(deal) = &tx.deal_record {
            self.seen_deals.insert(deal.ticket);
            self.commissions.record(deal);
            if let Some(fill) = fill_from_deal(deal) {
                self.book.add_fill(fill);
            }
            if let Some(id) = command_of(&deal.comment) {
                self.commands_on_account.insert(id);
            }
        }
        if let Some(ledger) = &mut self.ledger {
            if let Err(e) = ledger.apply(tx) {
                // Without a ledger that fits, reductions would go to the wrong hedge: rebuild from
                // the account's history at the next resynchronisation.
                tracing::error!(error = %e, "live record does not fit the ledger; rebuilding from the account's history");
                self.ledger = None;
                self.ledger_stale = true;
            }
        }
    }

    /// Runs until `--once` is satisfied or the terminal link is shut down.
    pub async fn run(mut self) -> Result<(), HedgerError> {
        let mut events = self.terminal.subscribe();
        if self.terminal.ready().await.is_err() {
            return Err(HedgerError::TerminalGone);
        }
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
            let retry_fetch = self.deferred_fetch_failed;
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(TerminalEvent::Tx(tx)) => {
                        let started = Instant::now();
                        self.take_fill_from_tx(&tx);
                        if self.ledger_stale {
                            self.rebuild().await?;
                        }
                        if !self.holding_due.is_empty() {
                            self.flush_holdings()?;
                        }
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
                        self.reconcile("terminal reconnected").await?;
                        if self.opts.mode == Mode::Trigger {
                            if let Some(trigger) = gone.into_iter().next() {
                                if self.on_trigger(trigger, started).await? {
                                    return Ok(());
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
                // Held-back symbols go on once their records are stored, at the next
                // acknowledgement, so the outbox is not read every few milliseconds while the
                // center is down. A failed plan fetch is retried soon; otherwise a slow timer only
                // guards against waiting for an acknowledgement that never comes.
                _ = tokio::time::timeout(
                    if retry_fetch { Duration::from_millis(10) } else { Duration::from_secs(1) },
                    acks.changed(),
                ), if self.deferred => {
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
                    if !self.holding_due.is_empty() {
                        self.flush_holdings()?;
                    }
                    self.reconcile("periodic").await?;
                }
                _ = status_tick.tick() => {
                    self.send_status(None, true);
                    // A safety net for a command announced while the stream was down.
                    self.run_commands().await?;
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
