//! The center's API types, shared by the server and [`crate::client::CenterClient`].
//!
//! Every request and response body of `/v1` is one of these types, serialized with serde as JSON.
//! Volumes, prices and ratios are JSON numbers read and written exactly (see `hedge_domain::num`);
//! sides are `"buy"`/`"sell"`; enums are `snake_case` strings; times are Unix milliseconds.

use hedge_domain::{
    AccountMarginMode, DealTicket, Login, Magic, OrderTicket, PositionId, Price, Retcode, Side,
    SymbolMap, SymbolSpec, Volume,
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
    /// Circuit-breaker state per symbol (account names or canonical, as the agent knows them).
    #[serde(default)]
    pub breakers: BTreeMap<String, BreakerState>,
    /// Free text for the dashboard (last error, version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
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
    pub comment: String,
    pub status: PositionStatus,
    pub opened_ms: i64,
    pub updated_ms: i64,
    pub last_seq: u64,
    pub last_event_id: u64,
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
}

/// Generic operator actions (`POST /v1/actions`), recorded in the event log with who did them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Close-only mode: the plan no longer opens hedges in the scope, it only reduces them.
    Pause,
    /// Ends a pause with exactly the same scope.
    Resume,
}

/// `POST /v1/actions`. The scope is an account (hedge or client), a canonical symbol, or both;
/// neither means everything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub action: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default)]
    pub reason: String,
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionAck {
    pub event_id: u64,
    /// Whether the action changed anything (pausing a paused scope does not).
    pub changed: bool,
    pub pauses: Vec<Pause>,
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
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == text)
    }

    /// Whether events of this kind can change a hedge plan.
    pub const fn moves_plan(self) -> bool {
        !matches!(
            self,
            EventKind::AccountStatus | EventKind::HedgeFailed | EventKind::LegacyPosition
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
