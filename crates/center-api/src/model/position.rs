//! Client positions: the reports agents send, their idempotency keys and answers, tumbler
//! firings, and the paged queries.

use super::*;
use std::fmt;

/// The key under which the center stores a report or a tumbler firing once: the same key again gets
/// the first answer back. On the wire it is a plain string, so keys chosen by other clients (any
/// text up to the center's limit) still travel; the constructors are the conventions the agents
/// follow, kept in one place so the client agent, the tumbler and the tests cannot drift apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// A key chosen by the caller.
    pub fn new(key: impl Into<String>) -> Self {
        IdempotencyKey(key.into())
    }

    /// `login:position:seq`, the key of a client agent's report: one report per position event.
    pub fn report(login: Login, position: PositionId, seq: u64) -> Self {
        IdempotencyKey(format!("{login}:{position}:{seq}"))
    }

    /// `tumbler:login:position`, the key of a tumbler's firing: one firing per new position.
    pub fn firing(login: Login, position: PositionId) -> Self {
        IdempotencyKey(format!("tumbler:{login}:{position}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for IdempotencyKey {
    fn from(key: String) -> Self {
        IdempotencyKey(key)
    }
}

impl From<&str> for IdempotencyKey {
    fn from(key: &str) -> Self {
        IdempotencyKey(key.to_owned())
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> Self {
        key.0
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for IdempotencyKey {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for IdempotencyKey {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// What happened to a client position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// [`IdempotencyKey::report`] by convention. The same key twice stores once; a different report
    /// under a used key is refused (409).
    pub idempotency_key: IdempotencyKey,
    /// `partial_close`, `close`: the deal that closed the volume this event removes, as the
    /// terminal reported it. Absent when the sender does not know it (an older agent, a close
    /// inferred from a snapshot, a deal that closed more or less than this event's volume): the
    /// position's realized figures are then unknown, never taken as 0. Refused on other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitDeal>,
}

/// The exit deal of a partial close or close: where it closed and the money it realized, each
/// figure as the deal itself reports it (`DEAL_PRICE`, `DEAL_PROFIT`, `DEAL_COMMISSION`,
/// `DEAL_SWAP`, `DEAL_FEE`, in the account's currency). Its volume is the one the report removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExitDeal {
    /// The deal's price; positive.
    pub price: Price,
    /// `DEAL_PROFIT`.
    pub profit: Money,
    /// `DEAL_COMMISSION`.
    pub commission: Money,
    /// `DEAL_SWAP`.
    pub swap: Money,
    /// `DEAL_FEE`.
    pub fee: Money,
}

impl PositionReport {
    /// A report of `kind` with only what every report needs: no price, stops, magic or comment,
    /// no account symbol, time 0, and the [conventional key](IdempotencyKey::report) of `seq`.
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
            idempotency_key: IdempotencyKey::report(login, position_id, seq),
            exit: None,
        }
    }
}

/// The status of a client position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportAck {
    /// The event-log id of the stored change.
    pub event_id: EventId,
    pub idempotency_key: IdempotencyKey,
    pub status: PositionStatus,
    /// Remaining volume after the event.
    pub volume: Volume,
}

/// A tumbler firing: the processes it killed (or, in a dry run, would have) when a new position
/// appeared on its account. Kept in the event log, not as the account's status message, so that the
/// agent that owns the account's status (the client agent on a copier's account) does not overwrite
/// it and the firing stays visible after the next heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The same key twice stores one firing. Agents use [`IdempotencyKey::firing`].
    #[serde(default)]
    pub idempotency_key: IdempotencyKey,
}

impl TumblerFiring {
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FiringAck {
    /// The event-log id of the firing.
    pub event_id: EventId,
    pub idempotency_key: IdempotencyKey,
}

/// A client position as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    pub last_event_id: EventId,
    /// From the account's latest mark of this position (open positions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_current: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profit: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commission: Option<Money>,
    /// The volume-weighted average price of the position's exit deals so far, rounded (half away
    /// from zero) to the symbol's digits as the account registered them (8 decimals when it
    /// registered no spec). Absent while nothing was closed, or while the realized figures are
    /// unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_price: Option<Price>,
    /// The sum of the exit deals' profit, exact, in the account's currency; 0 while nothing was
    /// closed. The `realized_*` figures are absent while unknown: a partial close or close was
    /// reported without its deal (an older agent, a close found only in a snapshot), or the
    /// position was stored before the center kept them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realized_profit: Option<Money>,
    /// The sum of the exit deals' commission (a commission the broker charged on the entry deal is
    /// not in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realized_commission: Option<Money>,
    /// The sum of the exit deals' swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realized_swap: Option<Money>,
    /// The sum of the exit deals' fee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realized_fee: Option<Money>,
}

/// One entry of a position's volume history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumeChange {
    pub event_id: EventId,
    pub kind: PositionEventKind,
    pub side: Side,
    pub volume: Volume,
    pub time_ms: i64,
}

/// `GET /v1/positions/{login}/{position_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PositionDetail {
    pub position: Position,
    pub history: Vec<VolumeChange>,
}

/// Query of `GET /v1/positions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}
