//! The messages of the terminal line protocol (see `docs/protocol.md`, which is the contract).
//!
//! Two directions, two enums: [`TerminalMsg`] (terminal → agent) and [`AgentMsg`] (agent → terminal),
//! each tagged by its `type` field. Records ([`DealRecord`], [`OrderRecord`], [`PositionRecord`]) carry
//! the fields of an MT5 history export under MT5's own names; enums travel as their MT5 integer codes.

use hedge_domain::{
    AccountMarginMode, CmdId, DealEntry, DealReason, DealTicket, DealType, Login, Magic, Money,
    OrderFilling, OrderState, OrderTicket, OrderTime, OrderType, PositionId, PositionType, Price,
    Retcode, SymbolSpec, TradeAction, TradeTransactionType, Volume,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The protocol's major version. A peer speaking another major version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest accepted `cmd_id`, in bytes.
pub const MAX_CMD_ID: usize = 128;

/// Milliseconds since the Unix epoch, UTC.
pub type TimeMs = i64;

/// Every message a terminal sends. Each carries `seq`, increasing by one per message on a connection
/// (starting at 1 with `hello`), so that a gap is detectable.
// Messages are decoded one at a time and handed on by value or in an `Arc`; boxing the large
// variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalMsg {
    Hello(Hello),
    Symbols(Symbols),
    Snapshot(Snapshot),
    History(HistoryPage),
    Tx(Tx),
    Reply(Reply),
    Heartbeat(Heartbeat),
    Error(ErrorMsg),
}

/// The `type` values of [`TerminalMsg`], for error reports on lines that did not parse.
pub const TERMINAL_TYPES: &[&str] = &[
    "hello",
    "symbols",
    "snapshot",
    "history",
    "tx",
    "reply",
    "heartbeat",
    "error",
];

impl TerminalMsg {
    pub fn seq(&self) -> u64 {
        match self {
            TerminalMsg::Hello(m) => m.seq,
            TerminalMsg::Symbols(m) => m.seq,
            TerminalMsg::Snapshot(m) => m.seq,
            TerminalMsg::History(m) => m.seq,
            TerminalMsg::Tx(m) => m.seq,
            TerminalMsg::Reply(m) => m.seq,
            TerminalMsg::Heartbeat(m) => m.seq,
            TerminalMsg::Error(m) => m.seq,
        }
    }

    pub fn set_seq(&mut self, seq: u64) {
        match self {
            TerminalMsg::Hello(m) => m.seq = seq,
            TerminalMsg::Symbols(m) => m.seq = seq,
            TerminalMsg::Snapshot(m) => m.seq = seq,
            TerminalMsg::History(m) => m.seq = seq,
            TerminalMsg::Tx(m) => m.seq = seq,
            TerminalMsg::Reply(m) => m.seq = seq,
            TerminalMsg::Heartbeat(m) => m.seq = seq,
            TerminalMsg::Error(m) => m.seq = seq,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            TerminalMsg::Hello(_) => "hello",
            TerminalMsg::Symbols(_) => "symbols",
            TerminalMsg::Snapshot(_) => "snapshot",
            TerminalMsg::History(_) => "history",
            TerminalMsg::Tx(_) => "tx",
            TerminalMsg::Reply(_) => "reply",
            TerminalMsg::Heartbeat(_) => "heartbeat",
            TerminalMsg::Error(_) => "error",
        }
    }
}

/// Every message an agent sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMsg {
    Cmd(Cmd),
    Error(ErrorMsg),
}

/// The `type` values of [`AgentMsg`].
pub const AGENT_TYPES: &[&str] = &["cmd", "error"];

/// First message of every connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    #[serde(default)]
    pub seq: u64,
    /// Protocol major version the terminal speaks.
    pub v: u32,
    pub login: Login,
    pub server: String,
    pub company: String,
    pub currency: String,
    pub margin_mode: AccountMarginMode,
    /// Terminal build (`TERMINAL_BUILD`).
    pub build: u32,
    /// Version of the program speaking for the terminal (the EA or `hedge sim`).
    #[serde(default)]
    pub ea_version: String,
    #[serde(default)]
    pub leverage: u32,
    /// Whether trading is allowed (terminal and account).
    #[serde(default = "yes")]
    pub trade_allowed: bool,
    #[serde(default)]
    pub time: TimeMs,
    /// `ACCOUNT_TRADE_EXPERT`: the trade server accepts orders from Expert Advisors on this account.
    /// When false the terminal refuses `order_send` itself (retcode 10026) with the reason.
    #[serde(default = "yes")]
    pub trade_expert: bool,
    /// `ACCOUNT_TRADE_ALLOWED`: the account may trade at all (false for an investor login).
    #[serde(default = "yes")]
    pub account_trade_allowed: bool,
    /// Identifies one running terminal side (one EA instance), unchanged across its reconnections.
    /// An agent keeps the first instance connected for its login and refuses another one with
    /// `duplicate`; empty (older terminals) means "always replace".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
}

fn yes() -> bool {
    true
}

/// A symbol's specification with its latest quote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SymbolInfo {
    #[serde(flatten)]
    pub spec: SymbolSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<Price>,
    /// Time of the quote.
    #[serde(default)]
    pub time: TimeMs,
}

/// The symbols the terminal trades (those in Market Watch). A list that would not fit in one line
/// comes as several `symbols` messages in a row; during the handshake the `snapshot` ends the list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Symbols {
    #[serde(default)]
    pub seq: u64,
    pub symbols: Vec<SymbolInfo>,
}

/// Bytes kept free in every line for the envelope and the other fields of the message, when a list
/// is split to stay under the line limit.
pub const LINE_RESERVE: usize = 4096;

/// Bytes of `value` as JSON; `usize::MAX` when it cannot be serialized, so that it never counts as
/// fitting anywhere.
pub fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// Splits `items` into consecutive groups whose JSON (as array elements) stays within `budget` bytes,
/// so that each group fits in one line. An item larger than the budget on its own gets a group of its
/// own (the encoder then refuses it rather than sending an oversized line).
pub fn split_by_size<T: Serialize>(items: Vec<T>, budget: usize) -> Vec<Vec<T>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut used = 0usize;
    for item in items {
        // +1 for the comma between elements; an item that cannot be serialized counts as too big.
        let len = json_len(&item).saturating_add(1);
        if !current.is_empty() && used.saturating_add(len) > budget {
            groups.push(std::mem::take(&mut current));
            used = 0;
        }
        used = used.saturating_add(len);
        current.push(item);
    }
    if !current.is_empty() || groups.is_empty() {
        groups.push(current);
    }
    groups
}

/// Account state (`AccountInfo*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub login: Login,
    pub currency: String,
    pub margin_mode: AccountMarginMode,
    #[serde(default)]
    pub leverage: u32,
    pub balance: Money,
    #[serde(default)]
    pub credit: Money,
    pub equity: Money,
    #[serde(default)]
    pub profit: Money,
    #[serde(default)]
    pub margin: Money,
    #[serde(default)]
    pub margin_free: Money,
}

/// The complete current state: account, every open position, every working (pending) order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(default)]
    pub seq: u64,
    pub time: TimeMs,
    /// Set when the snapshot answers a `snapshot` command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd_id: Option<CmdId>,
    pub account: AccountInfo,
    pub positions: Vec<PositionRecord>,
    pub orders: Vec<OrderRecord>,
}

/// An open position (`Position*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PositionRecord {
    /// `POSITION_TICKET`.
    pub ticket: u64,
    /// `POSITION_IDENTIFIER`: the ticket of the order that opened the position; kept on reversal.
    pub identifier: PositionId,
    pub symbol: String,
    #[serde(rename = "type")]
    pub position_type: PositionType,
    /// Current volume; 0 in a `tx` means the position has just been closed.
    pub volume: Volume,
    pub price_open: Price,
    #[serde(default)]
    pub price_current: Price,
    #[serde(default)]
    pub sl: Price,
    #[serde(default)]
    pub tp: Price,
    #[serde(default)]
    pub swap: Money,
    #[serde(default)]
    pub profit: Money,
    #[serde(default)]
    pub magic: Magic,
    #[serde(default)]
    pub comment: String,
    /// `POSITION_TIME_MSC`.
    pub time: TimeMs,
    /// `POSITION_TIME_UPDATE_MSC`.
    #[serde(default)]
    pub time_update: TimeMs,
    #[serde(default)]
    pub reason: u8,
}

/// An order, working or historical (`Order*`, `HistoryOrder*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub ticket: OrderTicket,
    pub symbol: String,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    pub state: OrderState,
    /// `ORDER_TIME_SETUP_MSC`.
    pub time_setup: TimeMs,
    /// `ORDER_TIME_DONE_MSC`; 0 while the order is working.
    #[serde(default)]
    pub time_done: TimeMs,
    #[serde(default = "filling_fok")]
    pub type_filling: OrderFilling,
    #[serde(default = "time_gtc")]
    pub type_time: OrderTime,
    #[serde(default)]
    pub expiration: TimeMs,
    pub volume_initial: Volume,
    pub volume_current: Volume,
    #[serde(default)]
    pub price_open: Price,
    #[serde(default)]
    pub price_current: Price,
    #[serde(default)]
    pub price_stoplimit: Price,
    #[serde(default)]
    pub sl: Price,
    #[serde(default)]
    pub tp: Price,
    #[serde(default)]
    pub magic: Magic,
    #[serde(default)]
    pub position_id: PositionId,
    #[serde(default)]
    pub position_by_id: PositionId,
    #[serde(default)]
    pub reason: u8,
    #[serde(default)]
    pub comment: String,
}

fn filling_fok() -> OrderFilling {
    OrderFilling::Fok
}

fn time_gtc() -> OrderTime {
    OrderTime::Gtc
}

/// A deal (`HistoryDeal*`): every column of an MT5 deal export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DealRecord {
    pub ticket: DealTicket,
    pub order: OrderTicket,
    pub position_id: PositionId,
    /// `DEAL_TIME_MSC`.
    pub time: TimeMs,
    #[serde(rename = "type")]
    pub deal_type: DealType,
    pub entry: DealEntry,
    pub reason: DealReason,
    #[serde(default)]
    pub magic: Magic,
    pub volume: Volume,
    pub price: Price,
    #[serde(default)]
    pub commission: Money,
    #[serde(default)]
    pub swap: Money,
    #[serde(default)]
    pub profit: Money,
    #[serde(default)]
    pub fee: Money,
    pub symbol: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub external_id: String,
}

impl DealRecord {
    /// A trade deal with only what identifies and sizes it: its order and position take the deal's
    /// ticket number, the time is 0, the reason is the client's, the magic 0 and every money column
    /// zero. Callers (scripted terminals, tests) set the rest with struct update syntax.
    pub fn trade(
        ticket: DealTicket,
        symbol: impl Into<String>,
        deal_type: DealType,
        entry: DealEntry,
        volume: Volume,
        price: Price,
    ) -> DealRecord {
        DealRecord {
            ticket,
            order: OrderTicket(ticket.0),
            position_id: PositionId(ticket.0),
            time: 0,
            deal_type,
            entry,
            reason: DealReason::Client,
            magic: Magic(0),
            volume,
            price,
            commission: Money::ZERO,
            swap: Money::ZERO,
            profit: Money::ZERO,
            fee: Money::ZERO,
            symbol: symbol.into(),
            comment: String::new(),
            external_id: String::new(),
        }
    }
}

/// One page of an answer to a `history` command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    #[serde(default)]
    pub seq: u64,
    pub cmd_id: CmdId,
    /// 0-based page number within this answer.
    pub page: u32,
    pub orders: Vec<OrderRecord>,
    pub deals: Vec<DealRecord>,
    /// Opaque cursor: a `history` command with it continues right after this page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// The final page of the answer.
    pub last: bool,
}

/// One trade transaction (`MqlTradeTransaction`, as `OnTradeTransaction` receives it), plus the records
/// the terminal knows are affected, so that an agent need not query them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tx {
    #[serde(default)]
    pub seq: u64,
    /// When the terminal saw the transaction.
    pub time: TimeMs,
    /// `MqlTradeTransaction::type` (renamed: `type` is the envelope tag).
    pub tx_type: TradeTransactionType,
    #[serde(default)]
    pub order: OrderTicket,
    #[serde(default)]
    pub deal: DealTicket,
    #[serde(default)]
    pub symbol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_type: Option<OrderType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_state: Option<OrderState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal_type: Option<DealType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_type: Option<OrderTime>,
    #[serde(default)]
    pub expiration: TimeMs,
    #[serde(default)]
    pub price: Price,
    #[serde(default)]
    pub price_trigger: Price,
    #[serde(default)]
    pub sl: Price,
    #[serde(default)]
    pub tp: Price,
    #[serde(default)]
    pub volume: Volume,
    #[serde(default)]
    pub position: PositionId,
    #[serde(default)]
    pub position_by: PositionId,
    /// For `DEAL_ADD`: the deal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal_record: Option<DealRecord>,
    /// For order transactions: the order after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_record: Option<OrderRecord>,
    /// For `DEAL_ADD` and `POSITION`: the position after the change (volume 0 once closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_record: Option<PositionRecord>,
    /// For `REQUEST`: the command whose request this was, when it came from the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd_id: Option<CmdId>,
}

impl Tx {
    /// A transaction of the given type with every other field empty.
    pub fn new(time: TimeMs, tx_type: TradeTransactionType) -> Self {
        Tx {
            seq: 0,
            time,
            tx_type,
            order: OrderTicket(0),
            deal: DealTicket(0),
            symbol: String::new(),
            order_type: None,
            order_state: None,
            deal_type: None,
            time_type: None,
            expiration: 0,
            price: Price::ZERO,
            price_trigger: Price::ZERO,
            sl: Price::ZERO,
            tp: Price::ZERO,
            volume: Volume::ZERO,
            position: PositionId(0),
            position_by: PositionId(0),
            deal_record: None,
            order_record: None,
            position_record: None,
            cmd_id: None,
        }
    }
}

/// A command's answer: exactly one per `cmd_id`; a resent id gets the first reply again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub seq: u64,
    pub cmd_id: CmdId,
    /// `MqlTradeResult::retcode`; `DONE` (10009) for a successful non-trading command.
    pub retcode: Retcode,
    #[serde(default)]
    pub deal: DealTicket,
    #[serde(default)]
    pub order: OrderTicket,
    /// The position the deal opened or changed, when known (MT5's result does not say; the terminal
    /// finds it from the deal).
    #[serde(default)]
    pub position: PositionId,
    #[serde(default)]
    pub volume: Volume,
    #[serde(default)]
    pub price: Price,
    #[serde(default)]
    pub bid: Price,
    #[serde(default)]
    pub ask: Price,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub request_id: u32,
    #[serde(default)]
    pub retcode_external: i64,
    /// For `order_check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckResult>,
    /// For `symbol_info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<SymbolInfo>,
    /// For `history`: totals of the pages sent before this reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistorySummary>,
    /// Terminal time when the command was executed.
    #[serde(default)]
    pub time: TimeMs,
}

impl Reply {
    /// A reply with only a retcode and a comment.
    pub fn new(cmd_id: CmdId, retcode: Retcode, comment: impl Into<String>) -> Self {
        Reply {
            seq: 0,
            cmd_id,
            retcode,
            deal: DealTicket(0),
            order: OrderTicket(0),
            position: PositionId(0),
            volume: Volume::ZERO,
            price: Price::ZERO,
            bid: Price::ZERO,
            ask: Price::ZERO,
            comment: comment.into(),
            request_id: 0,
            retcode_external: 0,
            check: None,
            symbol: None,
            history: None,
            time: 0,
        }
    }

    /// Whether the command was carried out (fully, partially or placed), per [`Retcode::class`].
    pub fn is_done(&self) -> bool {
        self.retcode.is_done()
    }
}

/// `MqlTradeCheckResult`: the account as it would be after the checked request (docs/protocol.md 7.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub balance: Money,
    pub equity: Money,
    pub profit: Money,
    pub margin: Money,
    pub margin_free: Money,
    pub margin_level: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistorySummary {
    pub pages: u32,
    pub orders: u32,
    pub deals: u32,
    /// Cursor after the last page sent (continue from here if pages were lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Liveness, sent every few seconds when nothing else is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(default)]
    pub seq: u64,
    pub time: TimeMs,
}

/// Sent by either side about a line it could not accept. The connection stays up (except after
/// `unsupported_version`, `login_mismatch`, `handshake`, `not_ready` and `duplicate`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// Present when a terminal sends it.
    #[serde(default)]
    pub seq: u64,
    pub code: ErrorCode,
    pub message: String,
    /// The `cmd_id` of the offending command, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd_id: Option<CmdId>,
}

/// Why a line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is longer than the limit; it was skipped up to its `\n`.
    LineTooLong,
    /// Not UTF-8 or not one JSON object.
    BadJson,
    /// A JSON object without a string `type`.
    MissingType,
    /// A `type` this side does not know.
    UnknownType,
    /// A known type with a missing or invalid field (wrong type, unknown enum code, negative volume).
    BadMessage,
    /// The peer's major version is not supported; the connection is closed.
    UnsupportedVersion,
    /// `hello` from an account other than the one expected; the connection is closed.
    LoginMismatch,
    /// The connection did not start with `hello`, `symbols`, `snapshot`; it is closed.
    Handshake,
    /// The terminal is not ready: not logged in yet (`hello` with login 0). The connection is closed;
    /// the terminal connects again once the account is logged in.
    NotReady,
    /// Another terminal side (another EA instance) is already connected for this login; the newer
    /// connection is closed and the first one kept.
    Duplicate,
    /// Anything else.
    Internal,
    /// A code from a newer peer.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::BadJson => "bad_json",
            ErrorCode::MissingType => "missing_type",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::LoginMismatch => "login_mismatch",
            ErrorCode::Handshake => "handshake",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command: `{"type":"cmd","cmd_id":"…","op":"order_send", …operation fields…}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cmd {
    pub cmd_id: CmdId,
    #[serde(flatten)]
    pub op: Op,
}

/// What a command asks for; tagged by `op`, its fields inline in the command object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `OrderSend` / `OrderSendAsync`.
    OrderSend(TradeRequest),
    /// `OrderCheck`.
    OrderCheck(TradeRequest),
    /// History orders and deals with `from <= time < to`, in pages.
    History(HistoryRange),
    /// Send a fresh `snapshot` now.
    Snapshot,
    /// One symbol's specification and quote.
    SymbolInfo { symbol: String },
    /// Answered at once; measures round-trip time.
    Ping,
}

impl Op {
    pub const fn name(&self) -> &'static str {
        match self {
            Op::OrderSend(_) => "order_send",
            Op::OrderCheck(_) => "order_check",
            Op::History(_) => "history",
            Op::Snapshot => "snapshot",
            Op::SymbolInfo { .. } => "symbol_info",
            Op::Ping => "ping",
        }
    }

    /// Whether the operation changes the account. Only these are subject to the at-most-once rule;
    /// the others are read-only and run again on a resend so their pages arrive again.
    pub const fn is_trade(&self) -> bool {
        matches!(self, Op::OrderSend(_))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRange {
    /// Inclusive start, ms.
    pub from: TimeMs,
    /// Exclusive end, ms.
    pub to: TimeMs,
    /// Records (orders + deals) per page; the terminal may cap it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Continue after the page that carried this cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Filling mode of a request: a given mode, or `"auto"`: the terminal picks from the symbol's allowed
/// modes (FOK, then IOC, then RETURN) for a market order and RETURN for a pending order
/// (`FillingModes::choose_for`), which is what avoids retcode 10030.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Filling {
    #[default]
    Auto,
    Mode(OrderFilling),
}

impl Serialize for Filling {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Filling::Auto => serializer.serialize_str("auto"),
            Filling::Mode(m) => m.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Filling {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Filling;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an ORDER_FILLING code (0-3) or \"auto\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Filling, E> {
                OrderFilling::from_code(v)
                    .map(Filling::Mode)
                    .map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Filling, E> {
                let code = i64::try_from(v).map_err(E::custom)?;
                self.visit_i64(code)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Filling, E> {
                if v.eq_ignore_ascii_case("auto") {
                    Ok(Filling::Auto)
                } else {
                    v.parse::<OrderFilling>()
                        .map(Filling::Mode)
                        .map_err(E::custom)
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `MqlTradeRequest`, every field, plus `async` (use `OrderSendAsync`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeRequest {
    pub action: TradeAction,
    #[serde(default)]
    pub magic: Magic,
    /// Order ticket, for modifying or removing a pending order.
    #[serde(default)]
    pub order: OrderTicket,
    #[serde(default)]
    pub symbol: String,
    #[serde(default)]
    pub volume: Volume,
    /// 0 for a market order means "the current price".
    #[serde(default)]
    pub price: Price,
    #[serde(default)]
    pub stoplimit: Price,
    #[serde(default)]
    pub sl: Price,
    #[serde(default)]
    pub tp: Price,
    /// Maximum deviation from `price`, in points.
    #[serde(default)]
    pub deviation: u64,
    /// `MqlTradeRequest::type` (renamed: `type` is the envelope tag).
    #[serde(default = "order_buy")]
    pub order_type: OrderType,
    #[serde(default)]
    pub type_filling: Filling,
    #[serde(default = "time_gtc")]
    pub type_time: OrderTime,
    /// For `ORDER_TIME_SPECIFIED`, ms.
    #[serde(default)]
    pub expiration: TimeMs,
    #[serde(default)]
    pub comment: String,
    /// The position to close or modify (hedging accounts; SL/TP on both).
    #[serde(default)]
    pub position: PositionId,
    /// The opposite position for close-by.
    #[serde(default)]
    pub position_by: PositionId,
    #[serde(default, rename = "async")]
    pub is_async: bool,
}

fn order_buy() -> OrderType {
    OrderType::Buy
}

impl TradeRequest {
    /// A market order (`TRADE_ACTION_DEAL`) at the current price, filling picked by the terminal.
    pub fn market(symbol: impl Into<String>, order_type: OrderType, volume: Volume) -> Self {
        TradeRequest {
            action: TradeAction::Deal,
            magic: Magic(0),
            order: OrderTicket(0),
            symbol: symbol.into(),
            volume,
            price: Price::ZERO,
            stoplimit: Price::ZERO,
            sl: Price::ZERO,
            tp: Price::ZERO,
            deviation: 0,
            order_type,
            type_filling: Filling::Auto,
            type_time: OrderTime::Gtc,
            expiration: 0,
            comment: String::new(),
            position: PositionId(0),
            position_by: PositionId(0),
            is_async: false,
        }
    }

    /// A market order closing (part of) `position` on a hedging account, or reducing the net position
    /// on a netting account: `order_type` is the opposite of the position's side.
    pub fn close(
        symbol: impl Into<String>,
        position: PositionId,
        order_type: OrderType,
        volume: Volume,
    ) -> Self {
        TradeRequest {
            position,
            ..TradeRequest::market(symbol, order_type, volume)
        }
    }
}

/// A well-formed message whose values cannot be right: answered with `bad_message`, never acted on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    #[error("{what} must not be negative, got {value}")]
    Negative { what: &'static str, value: String },
    #[error("volume must be positive for {action}, got {volume}")]
    VolumeNotPositive { action: TradeAction, volume: Volume },
    #[error("cmd_id must be 1 to {MAX_CMD_ID} bytes")]
    CmdIdLength,
    #[error("history range ends ({to}) before it starts ({from})")]
    HistoryRange { from: TimeMs, to: TimeMs },
}

/// Checks that serde cannot express: no negative quantity anywhere.
pub(crate) trait Validate {
    fn validate(&self) -> Result<(), InvalidMessage>;
}

fn non_negative_volume(what: &'static str, v: Volume) -> Result<(), InvalidMessage> {
    if v.is_negative() {
        Err(negative(what, v))
    } else {
        Ok(())
    }
}

fn non_negative_price(what: &'static str, p: Price) -> Result<(), InvalidMessage> {
    if p.is_negative() {
        Err(negative(what, p))
    } else {
        Ok(())
    }
}

/// Builds the error, with its text, only once a value is found wrong: out of line and marked cold so
/// the checks every record goes through stay a few compares.
#[cold]
#[inline(never)]
fn negative(what: &'static str, value: impl std::fmt::Display) -> InvalidMessage {
    InvalidMessage::Negative {
        what,
        value: value.to_string(),
    }
}

impl Validate for TradeRequest {
    fn validate(&self) -> Result<(), InvalidMessage> {
        non_negative_volume("volume", self.volume)?;
        non_negative_price("price", self.price)?;
        non_negative_price("stoplimit", self.stoplimit)?;
        non_negative_price("sl", self.sl)?;
        non_negative_price("tp", self.tp)?;
        if matches!(self.action, TradeAction::Deal | TradeAction::Pending)
            && !self.volume.is_positive()
        {
            return Err(InvalidMessage::VolumeNotPositive {
                action: self.action,
                volume: self.volume,
            });
        }
        Ok(())
    }
}

impl Validate for PositionRecord {
    fn validate(&self) -> Result<(), InvalidMessage> {
        non_negative_volume("position volume", self.volume)
    }
}

impl Validate for OrderRecord {
    fn validate(&self) -> Result<(), InvalidMessage> {
        non_negative_volume("order volume_initial", self.volume_initial)?;
        non_negative_volume("order volume_current", self.volume_current)
    }
}

impl Validate for DealRecord {
    fn validate(&self) -> Result<(), InvalidMessage> {
        non_negative_volume("deal volume", self.volume)
    }
}

impl Validate for TerminalMsg {
    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            TerminalMsg::Snapshot(s) => {
                s.positions.iter().try_for_each(Validate::validate)?;
                s.orders.iter().try_for_each(Validate::validate)
            }
            TerminalMsg::History(h) => {
                h.orders.iter().try_for_each(Validate::validate)?;
                h.deals.iter().try_for_each(Validate::validate)
            }
            TerminalMsg::Tx(t) => t.validate(),
            TerminalMsg::Reply(r) => r.validate(),
            TerminalMsg::Symbols(s) => s.symbols.iter().try_for_each(|i| {
                non_negative_volume("volume_min", i.spec.volume_min)?;
                non_negative_volume("volume_step", i.spec.volume_step)?;
                non_negative_volume("volume_max", i.spec.volume_max)
            }),
            TerminalMsg::Heartbeat(h) => h.validate(),
            TerminalMsg::Hello(_) | TerminalMsg::Error(_) => Ok(()),
        }
    }
}

// The message kinds the decoder reads on their own (see `codec::decode_terminal`) are checked
// before they are wrapped in a `TerminalMsg`.
impl Validate for Tx {
    fn validate(&self) -> Result<(), InvalidMessage> {
        non_negative_volume("volume", self.volume)?;
        if let Some(d) = &self.deal_record {
            d.validate()?;
        }
        if let Some(o) = &self.order_record {
            o.validate()?;
        }
        if let Some(p) = &self.position_record {
            p.validate()?;
        }
        Ok(())
    }
}

impl Validate for Reply {
    fn validate(&self) -> Result<(), InvalidMessage> {
        non_negative_volume("volume", self.volume)
    }
}

impl Validate for Heartbeat {
    fn validate(&self) -> Result<(), InvalidMessage> {
        Ok(())
    }
}

impl Validate for AgentMsg {
    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            AgentMsg::Cmd(cmd) => cmd.validate(),
            AgentMsg::Error(_) => Ok(()),
        }
    }
}

impl Validate for Cmd {
    fn validate(&self) -> Result<(), InvalidMessage> {
        let id = self.cmd_id.as_str();
        if id.is_empty() || id.len() > MAX_CMD_ID {
            return Err(InvalidMessage::CmdIdLength);
        }
        match &self.op {
            Op::OrderSend(r) | Op::OrderCheck(r) => r.validate(),
            Op::History(h) if h.to < h.from => Err(InvalidMessage::HistoryRange {
                from: h.from,
                to: h.to,
            }),
            _ => Ok(()),
        }
    }
}
