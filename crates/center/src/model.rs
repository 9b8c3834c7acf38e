//! The center's API types, shared by the server and [`crate::client::CenterClient`].
//!
//! Every request and response body of `/v1` is one of these types, serialized with serde as JSON.
//! Volumes, prices and ratios are JSON numbers read and written exactly (see `hedge_domain::num`);
//! sides are `"buy"`/`"sell"`; enums are `snake_case` strings; times are Unix milliseconds.

use hedge_domain::{
    AccountMarginMode, DealTicket, Login, Magic, Money, OrderTicket, PositionId, Price, Retcode,
    Side, SymbolMap, SymbolSpec, Volume,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A decimal that travels as a JSON number (a ratio), read and written exactly like a [`Volume`].
pub mod decimal_number {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        hedge_domain::num::serialize_decimal(*value, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        Volume::deserialize(deserializer).map(|v| v.0)
    }
}

/// An optional [`decimal_number`]: absent or `null` is `None`; a number or a decimal string is read
/// exactly.
pub mod opt_decimal_number {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Decimal>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => hedge_domain::num::serialize_decimal(*v, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Decimal>, D::Error> {
        Ok(Option::<Volume>::deserialize(deserializer)?.map(|v| v.0))
    }
}

fn one() -> Decimal {
    Decimal::ONE
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// What an account is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountRole {
    /// Its positions must be hedged.
    Client,
    /// The account the hedges are opened on.
    Hedge,
    /// Watched by a tumbler (kills the copier when a position appears).
    Tumbler,
}

impl AccountRole {
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountRole::Client => "client",
            AccountRole::Hedge => "hedge",
            AccountRole::Tumbler => "tumbler",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "client" => Some(AccountRole::Client),
            "hedge" => Some(AccountRole::Hedge),
            "tumbler" => Some(AccountRole::Tumbler),
            _ => None,
        }
    }
}

/// `PUT /v1/accounts/{login}`: what an agent says about its account when it (re)connects.
/// Registering again replaces the configuration; positions and hedges are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountRegistration {
    pub login: Login,
    pub role: AccountRole,
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub company: String,
    /// MT5's `ACCOUNT_MARGIN_MODE` code (0 netting, 1 exchange, 2 hedging).
    pub margin_mode: AccountMarginMode,
    /// How this account names canonical symbols.
    #[serde(default)]
    pub symbol_map: SymbolMap,
    /// Client accounts: the factor their volumes are multiplied by in the plan (1 = hedge 1:1).
    #[serde(default = "one", with = "decimal_number")]
    pub hedge_ratio: Decimal,
    /// Client accounts: the hedge account that covers them; `None` = every hedge account's plan
    /// includes this client (the usual setup with one hedge account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge_login: Option<Login>,
    /// The account's symbol specifications, under the account's own names. The plan needs those of
    /// the hedge account to round and clamp volumes.
    #[serde(default)]
    pub symbols: Vec<SymbolSpec>,
    #[serde(default)]
    pub currency: String,
}

impl AccountRegistration {
    /// The spec of a canonical symbol under this account's name, if the account sent it.
    pub fn spec_for(&self, canonical: &str) -> Option<&SymbolSpec> {
        let name = self.symbol_map.to_account(canonical);
        self.symbols.iter().find(|s| s.name == name)
    }
}

/// A circuit breaker's state, as an agent reports it per symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// `POST /v1/accounts/{login}/status`: an agent's heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountStatus {
    /// Whether the agent's terminal link is up.
    pub connected: bool,
    /// Time of the last trade event the agent saw from its terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_ms: Option<i64>,
    /// Reports waiting in the agent's outbox.
    #[serde(default)]
    pub outbox_pending: u64,
    /// Reports the center refused for good (kept by the agent across restarts): each is a change
    /// of the account the center does not know, so the dashboard shows the account in red.
    #[serde(default)]
    pub dead_letters: u64,
    /// Why the newest of them was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_reason: Option<String>,
    /// Circuit-breaker state per symbol (account names or canonical, as the agent knows them).
    #[serde(default)]
    pub breakers: BTreeMap<String, BreakerState>,
    /// Free text for the dashboard (last error, version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The account's money as the terminal reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountMoney>,
    /// Latest marks of the account's open positions. The center keeps only the latest mark per
    /// position (not history) and serves it on `GET /v1/positions`; it is not kept in the stored
    /// status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<PositionMark>,
    /// Netting accounts: whether the ledger's net position per symbol matches the terminal's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<Reconciliation>,
    /// Whether the center's open positions of the account match the terminal's, net per
    /// canonical symbol, checked by the agent when nothing was waiting to be reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_check: Option<Reconciliation>,
}

/// An account's money (`AccountInfo` of the terminal), in the account currency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountMoney {
    pub balance: Money,
    pub equity: Money,
    pub margin: Money,
    pub margin_free: Money,
    /// Floating profit of the open positions.
    pub profit: Money,
    #[serde(default)]
    pub currency: String,
}

/// The latest valuation of one open position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionMark {
    pub position_id: PositionId,
    pub price_current: Price,
    #[serde(default)]
    pub swap: Money,
    #[serde(default)]
    pub profit: Money,
    #[serde(default)]
    pub commission: Money,
}

/// The outcome of comparing the ledger's net position per symbol with the terminal's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    pub ok: bool,
    /// What disagrees, in words (empty when `ok`).
    #[serde(default)]
    pub detail: String,
    pub checked_ms: i64,
}

/// Operator overrides of an account's configuration. They survive the agent's re-registration and
/// win over the registered values in the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_map: Option<SymbolMap>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_decimal_number"
    )]
    pub hedge_ratio: Option<Decimal>,
}

impl AccountOverrides {
    pub fn is_empty(&self) -> bool {
        self.symbol_map.is_none() && self.hedge_ratio.is_none()
    }

    /// The registration with the overrides applied: what the plan uses.
    pub fn apply(&self, registration: &AccountRegistration) -> AccountRegistration {
        let mut effective = registration.clone();
        if let Some(map) = &self.symbol_map {
            effective.symbol_map = map.clone();
        }
        if let Some(ratio) = self.hedge_ratio {
            effective.hedge_ratio = ratio;
        }
        effective
    }
}

/// Which overridable setting an action names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideField {
    SymbolMap,
    HedgeRatio,
}

impl OverrideField {
    pub const fn as_str(self) -> &'static str {
        match self {
            OverrideField::SymbolMap => "symbol_map",
            OverrideField::HedgeRatio => "hedge_ratio",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "symbol_map" => Some(OverrideField::SymbolMap),
            "hedge_ratio" => Some(OverrideField::HedgeRatio),
            _ => None,
        }
    }
}

/// An account as the center knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    #[serde(flatten)]
    pub registration: AccountRegistration,
    pub registered_ms: i64,
    /// Time of the last registration or heartbeat.
    pub last_seen_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AccountStatus>,
    /// Operator overrides; `registration` keeps what the agent sent.
    #[serde(default, skip_serializing_if = "AccountOverrides::is_empty")]
    pub overrides: AccountOverrides,
}

impl Account {
    /// The registration with the operator's overrides applied.
    pub fn effective(&self) -> AccountRegistration {
        self.overrides.apply(&self.registration)
    }
}

/// What happened to a client position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionEventKind {
    /// A new position (or, for a position id that was closed, a reopening: netting reversal
    /// reported as close + open).
    Open,
    /// More volume on the same side (netting accounts).
    Increase,
    /// Volume reduced, position still open.
    PartialClose,
    /// Position closed; `volume` must be 0.
    Close,
    /// SL/TP changed; `volume` must equal the current volume.
    Modify,
    /// Netting reversal in one event: the position keeps its id, flips `side`, `volume` is the new
    /// volume.
    Reverse,
}

impl PositionEventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            PositionEventKind::Open => "open",
            PositionEventKind::Increase => "increase",
            PositionEventKind::PartialClose => "partial_close",
            PositionEventKind::Close => "close",
            PositionEventKind::Modify => "modify",
            PositionEventKind::Reverse => "reverse",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "open" => PositionEventKind::Open,
            "increase" => PositionEventKind::Increase,
            "partial_close" => PositionEventKind::PartialClose,
            "close" => PositionEventKind::Close,
            "modify" => PositionEventKind::Modify,
            "reverse" => PositionEventKind::Reverse,
            _ => return None,
        })
    }
}

/// `POST /v1/positions/events`: one change of a client position, reported by the client agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionReport {
    pub kind: PositionEventKind,
    pub login: Login,
    pub position_id: PositionId,
    /// Canonical symbol (`EURUSD`).
    pub symbol: String,
    /// The account's own name for the symbol (`EURUSD.r`); empty means the canonical name.
    #[serde(default)]
    pub account_symbol: String,
    pub side: Side,
    /// The position's remaining volume after this event (0 for `close`).
    pub volume: Volume,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sl: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tp: Option<Price>,
    /// When it happened on the terminal.
    pub time_ms: i64,
    #[serde(default)]
    pub magic: Magic,
    /// `open`, `increase`, `modify`: the position's own comment (its entry comment).
    /// `partial_close`, `close`: the comment of the deal that reduced or closed it (the exit
    /// comment); the entry comment is kept.
    #[serde(default)]
    pub comment: String,
    /// The agent's event sequence for this position; strictly increasing per position.
    pub seq: u64,
    /// `login:position_id:seq` by convention ([`PositionReport::default_key`]). The same key twice
    /// stores once; a different report under a used key is refused (409).
    pub idempotency_key: String,
}

impl PositionReport {
    pub fn default_key(login: Login, position_id: PositionId, seq: u64) -> String {
        format!("{login}:{position_id}:{seq}")
    }

    /// A report of `kind` with only what every report needs: no price, stops, magic or comment,
    /// no account symbol, time 0, and the [default key](PositionReport::default_key) of `seq`.
    pub fn new(
        kind: PositionEventKind,
        login: Login,
        position_id: PositionId,
        symbol: impl Into<String>,
        side: Side,
        volume: Volume,
        seq: u64,
    ) -> Self {
        PositionReport {
            kind,
            login,
            position_id,
            symbol: symbol.into(),
            account_symbol: String::new(),
            side,
            volume,
            price: None,
            sl: None,
            tp: None,
            time_ms: 0,
            magic: Magic(0),
            comment: String::new(),
            seq,
            idempotency_key: Self::default_key(login, position_id, seq),
        }
    }
}

/// The status of a client position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionStatus {
    Open,
    PartiallyClosed,
    Closed,
}

impl PositionStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            PositionStatus::Open => "open",
            PositionStatus::PartiallyClosed => "partially_closed",
            PositionStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(PositionStatus::Open),
            "partially_closed" => Some(PositionStatus::PartiallyClosed),
            "closed" => Some(PositionStatus::Closed),
            _ => None,
        }
    }
}

/// The answer to a position report. A repeated idempotency key gets the first answer again, byte
/// for byte, with the header `Idempotent-Replay: true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAck {
    /// The event-log id of the stored change.
    pub event_id: u64,
    pub idempotency_key: String,
    pub status: PositionStatus,
    /// Remaining volume after the event.
    pub volume: Volume,
}

/// A tumbler firing: the processes it killed (or, in a dry run, would have) when a new position
/// appeared on its account. Kept in the event log, not as the account's status message, so that the
/// agent that owns the account's status (the client agent on a copier's account) does not overwrite
/// it and the firing stays visible after the next heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TumblerFiring {
    pub login: Login,
    pub position_id: PositionId,
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
    pub magic: Magic,
    /// When the terminal saw the position open (ms).
    pub time_ms: i64,
    /// `name:pid` of every process killed (or that would have been, in a dry run).
    pub killed: Vec<String>,
    pub dry_run: bool,
    /// Microseconds from receiving the transaction to the last kill issued.
    pub reaction_us: u64,
    /// The same key twice stores one firing. Agents use `tumbler:{login}:{position}`.
    #[serde(default)]
    pub idempotency_key: String,
}

impl TumblerFiring {
    /// The key the tumbler of `login` uses for the firing on `position`.
    pub fn default_key(login: Login, position: PositionId) -> String {
        format!("tumbler:{login}:{position}")
    }

    /// One line for logs, the event's reason and the dashboard.
    pub fn describe(&self) -> String {
        format!(
            "tumbler {}: position #{} {} {} {} opened; {} {} in {} us",
            if self.dry_run { "dry run" } else { "fired" },
            self.position_id,
            self.symbol,
            self.side,
            self.volume,
            if self.dry_run { "would kill" } else { "killed" },
            if self.killed.is_empty() {
                "nothing".to_owned()
            } else {
                self.killed.join(", ")
            },
            self.reaction_us
        )
    }
}

/// The answer to a tumbler firing; a repeated key gets the first answer again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiringAck {
    /// The event-log id of the firing.
    pub event_id: u64,
    pub idempotency_key: String,
}

/// A client position as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub login: Login,
    pub position_id: PositionId,
    pub symbol: String,
    pub account_symbol: String,
    pub side: Side,
    /// Remaining volume (0 when closed).
    pub volume: Volume,
    /// Largest volume the position had.
    pub max_volume: Volume,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sl: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tp: Option<Price>,
    pub magic: Magic,
    /// The entry comment (the position's comment when it opened).
    pub comment: String,
    /// The exit comment: that of the deal that last reduced or closed the position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_comment: Option<String>,
    pub status: PositionStatus,
    pub opened_ms: i64,
    pub updated_ms: i64,
    pub last_seq: u64,
    pub last_event_id: u64,
    /// From the account's latest mark of this position (open positions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_current: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profit: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commission: Option<Money>,
}

/// One entry of a position's volume history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeChange {
    pub event_id: u64,
    pub kind: PositionEventKind,
    pub side: Side,
    pub volume: Volume,
    pub time_ms: i64,
}

/// `GET /v1/positions/{login}/{position_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionDetail {
    pub position: Position,
    pub history: Vec<VolumeChange>,
}

/// Query of `GET /v1/positions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PositionStatus>,
    /// Cursor: return rows after this one (the `next_after` of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Page size, 1..=1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Query of `GET /v1/hedges` and `GET /v1/events`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Hedges only: `true` lists the open and partially closed ones alone (what a hedger compares
    /// with its account), however long the account's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<bool>,
}

/// One page of a list. `next_after` is the cursor of the next page, absent on the last one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// Whether a plan item opens (adds to) or reduces hedge exposure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// The order adds hedge volume (or opens the first hedge).
    Open,
    /// The order only takes back hedge volume that is no longer needed.
    Reduce,
}

/// One order of the hedge plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanItem {
    /// Stable while this symbol's exposure and hedges do not change; unique within the hedge
    /// account. Put it in the order's magic/comment to find after a crash what was done.
    pub id: u64,
    /// Canonical symbol.
    pub symbol: String,
    /// The hedge account's name for it.
    pub account_symbol: String,
    pub side: Side,
    /// Rounded to the hedge account's volume step and clamped to its min/max.
    pub volume: Volume,
    pub action: PlanAction,
    /// Signed net client exposure (buys minus sells, times each client's ratio).
    pub exposure: Volume,
    /// Signed open hedge volume on this account for this symbol.
    pub hedged: Volume,
    /// `exposure + hedged`: what is not covered.
    pub unhedged: Volume,
    /// What stays uncovered after this order (rounding, clamping to max, close-only).
    pub residual: Volume,
}

/// Why a symbol with uncovered exposure has no plan item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualReason {
    /// Rounded to the step it is below the hedge account's minimum volume.
    BelowMin,
    /// Hedging is paused (close-only) for this account/symbol and nothing can be reduced.
    Paused,
    /// The hedge account did not send a spec for this symbol.
    NoSymbolSpec,
    /// The hedge account's spec cannot be used (step not positive).
    BadSymbolSpec,
}

/// Uncovered exposure that the plan does not turn into an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanResidual {
    pub symbol: String,
    pub account_symbol: String,
    pub exposure: Volume,
    pub hedged: Volume,
    pub unhedged: Volume,
    pub reason: ResidualReason,
}

/// `GET /v1/plan/{hedge_login}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HedgePlan {
    pub hedge_login: Login,
    /// The last event-log id the plan reflects.
    pub as_of_event_id: u64,
    pub items: Vec<PlanItem>,
    pub residuals: Vec<PlanResidual>,
}

/// `POST /v1/hedges`: a plan item was executed on the hedge account. Idempotent by
/// (`hedge_login`, `plan_item_id`): the same item twice records one hedge and returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HedgeExecuted {
    pub plan_item_id: u64,
    pub hedge_login: Login,
    /// Canonical symbol.
    pub symbol: String,
    pub side: Side,
    /// Filled volume.
    pub volume: Volume,
    #[serde(default)]
    pub order: OrderTicket,
    #[serde(default)]
    pub deal: DealTicket,
    /// The hedge account's position that holds the hedge.
    #[serde(default)]
    pub position_id: PositionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// From plan receipt to fill, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Fill price minus requested price, in price units, signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slippage: Option<Price>,
    pub time_ms: i64,
}

/// `POST /v1/hedges/failed`: a plan item could not be executed. Recorded (the plan is unchanged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HedgeFailed {
    pub plan_item_id: u64,
    pub hedge_login: Login,
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
    pub retcode: Retcode,
    #[serde(default)]
    pub message: String,
    pub time_ms: i64,
}

/// `POST /v1/hedges/{id}/reduce`: the hedge's remaining volume after a (partial) close on the hedge
/// account. Setting an absolute remaining volume is naturally idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HedgeReduce {
    /// Remaining open volume of the hedge; 0 closes it.
    pub remaining: Volume,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal: Option<DealTicket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    pub time_ms: i64,
    #[serde(default)]
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HedgeStatus {
    Open,
    PartiallyClosed,
    Closed,
    Failed,
}

impl HedgeStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            HedgeStatus::Open => "open",
            HedgeStatus::PartiallyClosed => "partially_closed",
            HedgeStatus::Closed => "closed",
            HedgeStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(HedgeStatus::Open),
            "partially_closed" => Some(HedgeStatus::PartiallyClosed),
            "closed" => Some(HedgeStatus::Closed),
            "failed" => Some(HedgeStatus::Failed),
            _ => None,
        }
    }
}

/// A hedge (executed or failed plan item) as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hedge {
    pub id: u64,
    pub plan_item_id: u64,
    pub hedge_login: Login,
    pub symbol: String,
    pub account_symbol: String,
    pub side: Side,
    /// Volume filled when opened (failed: the volume attempted).
    pub volume: Volume,
    /// Volume still open.
    pub open_volume: Volume,
    pub order: OrderTicket,
    pub deal: DealTicket,
    pub position_id: PositionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slippage: Option<Price>,
    pub status: HedgeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retcode: Option<Retcode>,
    #[serde(default)]
    pub message: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The event-log id of the last change.
    pub event_id: u64,
    /// Open hedges on `GET /v1/hedges`: the hedge account's latest mark of the hedge's position
    /// (current price, swap, profit, commission), as the hedger's heartbeat reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<PositionMark>,
}

/// Operator actions (`POST /v1/actions`), recorded in the event log with who did them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Close-only mode: the plan no longer opens hedges in the scope, it only reduces them.
    Pause,
    /// Ends a pause with exactly the same scope.
    Resume,
    /// Asks the hedger to close hedge `hedge_id`; also pauses its symbol on its account.
    CloseHedge,
    /// Asks the hedger to try failed hedge `hedge_id` again.
    RetryHedge,
    /// Overrides the symbol map of account `login`.
    SetSymbolMap,
    /// Overrides the hedge ratio of client account `login`.
    SetHedgeRatio,
    /// Removes the override `field` of account `login`.
    ClearOverride,
}

impl ActionKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ActionKind::Pause => "pause",
            ActionKind::Resume => "resume",
            ActionKind::CloseHedge => "close_hedge",
            ActionKind::RetryHedge => "retry_hedge",
            ActionKind::SetSymbolMap => "set_symbol_map",
            ActionKind::SetHedgeRatio => "set_hedge_ratio",
            ActionKind::ClearOverride => "clear_override",
        }
    }
}

/// `POST /v1/actions`. Pause/resume: the scope is an account (hedge or client), a canonical symbol,
/// or both; neither means everything. The other actions name what they need: `hedge_id`
/// (close/retry), `login` plus `symbol_map`/`hedge_ratio` (overrides), `login` plus `field`
/// (clear an override).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub action: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_map: Option<SymbolMap>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_decimal_number"
    )]
    pub hedge_ratio: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<OverrideField>,
}

impl ActionRequest {
    /// An action with nothing but its kind; fill in what it needs.
    pub fn new(action: ActionKind) -> Self {
        ActionRequest {
            action,
            login: None,
            symbol: None,
            reason: String::new(),
            hedge_id: None,
            symbol_map: None,
            hedge_ratio: None,
            field: None,
        }
    }

    pub fn close_hedge(hedge_id: u64, reason: impl Into<String>) -> Self {
        ActionRequest {
            hedge_id: Some(hedge_id),
            reason: reason.into(),
            ..Self::new(ActionKind::CloseHedge)
        }
    }

    pub fn retry_hedge(hedge_id: u64, reason: impl Into<String>) -> Self {
        ActionRequest {
            hedge_id: Some(hedge_id),
            reason: reason.into(),
            ..Self::new(ActionKind::RetryHedge)
        }
    }
}

/// What a hedger is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Close the hedge's position(s) on the hedge account.
    CloseHedge,
    /// Reset the symbol's circuit breaker and act on the current plan for it.
    RetryHedge,
}

impl CommandKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            CommandKind::CloseHedge => "close_hedge",
            CommandKind::RetryHedge => "retry_hedge",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "close_hedge" => Some(CommandKind::CloseHedge),
            "retry_hedge" => Some(CommandKind::RetryHedge),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    Pending,
    Done,
    Failed,
}

impl CommandStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Pending => "pending",
            CommandStatus::Done => "done",
            CommandStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(CommandStatus::Pending),
            "done" => Some(CommandStatus::Done),
            "failed" => Some(CommandStatus::Failed),
            _ => None,
        }
    }
}

/// An operator command for the hedger of `hedge_login`, durable until it has a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub id: u64,
    pub hedge_login: Login,
    pub kind: CommandKind,
    pub hedge_id: u64,
    /// Canonical symbol.
    pub symbol: String,
    /// The hedge account's name for it.
    pub account_symbol: String,
    /// The plan item the hedge was opened for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_item: Option<u64>,
    /// Close: the hedge's open volume when the command was issued; retry: the volume that failed.
    pub volume: Volume,
    pub status: CommandStatus,
    /// Name of the token that issued it.
    pub actor: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_retcode: Option<Retcode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_message: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Query of `GET /v1/commands`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandQuery {
    /// The hedge account; a hedge token may only ask for its own (and gets it when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CommandStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `POST /v1/commands/{id}/result`: what the hedger did. The same result twice answers the stored
/// command again; a different result for a finished command is refused (409).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// `done` or `failed`.
    pub status: CommandStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retcode: Option<Retcode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An active pause (`GET /v1/pauses`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Name of the token that paused.
    pub actor: String,
    pub reason: String,
    pub since_ms: i64,
    pub event_id: u64,
}

impl Pause {
    /// Whether this pause covers `symbol` on account `login`.
    pub fn covers(&self, login: Login, symbol: &str) -> bool {
        self.login.is_none_or(|l| l == login) && self.symbol.as_deref().is_none_or(|s| s == symbol)
    }
}

/// The answer to an action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionAck {
    pub event_id: u64,
    /// Whether the action changed anything (pausing a paused scope does not).
    pub changed: bool,
    pub pauses: Vec<Pause>,
    /// Close/retry: the command (the pending one already issued, when `changed` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Override actions: the account after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
}

/// The kinds of event-log entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AccountRegistered,
    AccountStatus,
    PositionOpened,
    PositionIncreased,
    PositionReduced,
    PositionClosed,
    PositionModified,
    PositionReversed,
    HedgeExecuted,
    HedgeFailed,
    HedgeReduced,
    HedgeClosed,
    Paused,
    Resumed,
    LegacyPosition,
    CommandIssued,
    CommandDone,
    CommandFailed,
    OverrideSet,
    OverrideCleared,
    TumblerFired,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::AccountRegistered,
        EventKind::AccountStatus,
        EventKind::PositionOpened,
        EventKind::PositionIncreased,
        EventKind::PositionReduced,
        EventKind::PositionClosed,
        EventKind::PositionModified,
        EventKind::PositionReversed,
        EventKind::HedgeExecuted,
        EventKind::HedgeFailed,
        EventKind::HedgeReduced,
        EventKind::HedgeClosed,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::LegacyPosition,
        EventKind::CommandIssued,
        EventKind::CommandDone,
        EventKind::CommandFailed,
        EventKind::OverrideSet,
        EventKind::OverrideCleared,
        EventKind::TumblerFired,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::AccountRegistered => "account_registered",
            EventKind::AccountStatus => "account_status",
            EventKind::PositionOpened => "position_opened",
            EventKind::PositionIncreased => "position_increased",
            EventKind::PositionReduced => "position_reduced",
            EventKind::PositionClosed => "position_closed",
            EventKind::PositionModified => "position_modified",
            EventKind::PositionReversed => "position_reversed",
            EventKind::HedgeExecuted => "hedge_executed",
            EventKind::HedgeFailed => "hedge_failed",
            EventKind::HedgeReduced => "hedge_reduced",
            EventKind::HedgeClosed => "hedge_closed",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::LegacyPosition => "legacy_position",
            EventKind::CommandIssued => "command_issued",
            EventKind::CommandDone => "command_done",
            EventKind::CommandFailed => "command_failed",
            EventKind::OverrideSet => "override_set",
            EventKind::OverrideCleared => "override_cleared",
            EventKind::TumblerFired => "tumbler_fired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == text)
    }

    /// Whether events of this kind can change a hedge plan.
    pub const fn moves_plan(self) -> bool {
        !matches!(
            self,
            EventKind::AccountStatus
                | EventKind::HedgeFailed
                | EventKind::LegacyPosition
                | EventKind::CommandIssued
                | EventKind::CommandDone
                | EventKind::CommandFailed
                | EventKind::TumblerFired
        )
    }
}

/// One entry of the append-only event log; also what `/v1/events/stream` sends (SSE `id` is
/// [`Event::id`], SSE `event` is [`Event::kind`], `data` is this object as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub time_ms: i64,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Name of the token (agent or operator) whose request caused the event.
    pub actor: String,
    /// Why the center did what it did, in words.
    pub reason: String,
    /// The stored object (position, hedge, account, pause) after the change.
    pub data: serde_json::Value,
}

/// The error body of every non-2xx answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable class: `invalid`, `conflict`, `not_found`, `unauthorized`, `forbidden`,
    /// `too_large`, `unavailable`, `internal`.
    pub error: String,
    pub message: String,
    /// The offending request field, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /readyz` and `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub store: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub legacy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_defaults_and_ratio_as_number() {
        let reg: AccountRegistration =
            serde_json::from_str(r#"{"login":7,"role":"client","margin_mode":2}"#).unwrap();
        assert_eq!(reg.hedge_ratio, Decimal::ONE);
        assert_eq!(reg.margin_mode, AccountMarginMode::RetailHedging);
        let json = serde_json::to_value(&reg).unwrap();
        assert_eq!(json["hedge_ratio"], serde_json::json!(1));
        let half: AccountRegistration = serde_json::from_str(
            r#"{"login":7,"role":"client","margin_mode":0,"hedge_ratio":0.5}"#,
        )
        .unwrap();
        assert_eq!(half.hedge_ratio, Decimal::new(5, 1));
    }

    #[test]
    fn event_kinds_round_trip_through_text() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn pause_scope() {
        let p = Pause {
            login: None,
            symbol: Some("EURUSD".into()),
            actor: "ops".into(),
            reason: String::new(),
            since_ms: 0,
            event_id: 1,
        };
        assert!(p.covers(Login(1), "EURUSD"));
        assert!(!p.covers(Login(1), "GBPUSD"));
    }
}
