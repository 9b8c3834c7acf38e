//! A second reading of `cmd` lines that does not go through serde's flatten/internal-tag buffering.
//!
//! [`Cmd`] is an object whose `op` decides which other keys mean something. Deriving that with
//! `#[serde(flatten)]` and `#[serde(tag = "op")]` makes serde copy every key and value into an
//! intermediate tree before reading it, which costs more than the parse itself. [`FlatCmd`] instead
//! lists every key any op uses, each with the type and default the op's own struct gives it, and is
//! read straight from the bytes; the op then picks its fields.
//!
//! The flat form is deliberately stricter than the general one: a key it knows must hold a value of
//! that key's type even when the op ignores it, and a required field may not be `null`. Whenever it
//! says no, the caller falls back to the general path, which accepts or refuses the line and
//! classifies the error as it always did. So the flat form can only make a line faster, never change
//! what a line means; the tests in `codec.rs` check both paths against each other.

use crate::message::{Cmd, Filling, HistoryRange, Op, TimeMs, TradeRequest};
use hedge_domain::{
    CmdId, Magic, OrderTicket, OrderTime, OrderType, PositionId, Price, TradeAction, Volume,
};
use serde::{Deserialize, Deserializer};

/// The only `type` the flat form takes.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Cmd,
}

/// The `op` values, spelled as [`Op`]'s variants are on the wire.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum OpKind {
    OrderSend,
    OrderCheck,
    History,
    Snapshot,
    SymbolInfo,
    Ping,
}

/// Every key of every op, typed and defaulted as in [`TradeRequest`] and [`HistoryRange`]. Fields
/// that some op requires are `Option`s that only an absent key leaves `None` (see [`present`]).
#[derive(Deserialize)]
pub(crate) struct FlatCmd {
    #[serde(rename = "type")]
    _kind: Kind,
    cmd_id: CmdId,
    op: OpKind,

    // TradeRequest (order_send, order_check).
    #[serde(default, deserialize_with = "present")]
    action: Option<TradeAction>,
    #[serde(default)]
    magic: Magic,
    #[serde(default)]
    order: OrderTicket,
    /// Optional for a trade request, required for `symbol_info`.
    #[serde(default, deserialize_with = "present")]
    symbol: Option<String>,
    #[serde(default)]
    volume: Volume,
    #[serde(default)]
    price: Price,
    #[serde(default)]
    stoplimit: Price,
    #[serde(default)]
    sl: Price,
    #[serde(default)]
    tp: Price,
    #[serde(default)]
    deviation: u64,
    #[serde(default = "order_buy")]
    order_type: OrderType,
    #[serde(default)]
    type_filling: Filling,
    #[serde(default = "time_gtc")]
    type_time: OrderTime,
    #[serde(default)]
    expiration: TimeMs,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    position: PositionId,
    #[serde(default)]
    position_by: PositionId,
    #[serde(default, rename = "async")]
    is_async: bool,

    // HistoryRange (history).
    #[serde(default, deserialize_with = "present")]
    from: Option<TimeMs>,
    #[serde(default, deserialize_with = "present")]
    to: Option<TimeMs>,
    #[serde(default)]
    page_size: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// A key that is there must hold a `T`; `null` is refused, as it is for a required field.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn order_buy() -> OrderType {
    OrderType::Buy
}

fn time_gtc() -> OrderTime {
    OrderTime::Gtc
}

impl FlatCmd {
    /// The command on `line` when the flat form reads it completely; `None` sends the line down the
    /// general path. Validation is the caller's.
    pub(crate) fn parse(line: &str) -> Option<Cmd> {
        serde_json::from_str::<FlatCmd>(line).ok()?.into_cmd()
    }

    fn into_cmd(mut self) -> Option<Cmd> {
        let op = match self.op {
            OpKind::OrderSend => Op::OrderSend(self.request_fields()?),
            OpKind::OrderCheck => Op::OrderCheck(self.request_fields()?),
            OpKind::History => Op::History(HistoryRange {
                from: self.from?,
                to: self.to?,
                page_size: self.page_size,
                cursor: self.cursor,
            }),
            OpKind::Snapshot => Op::Snapshot,
            OpKind::SymbolInfo => Op::SymbolInfo {
                symbol: self.symbol?,
            },
            OpKind::Ping => Op::Ping,
        };
        Some(Cmd {
            cmd_id: self.cmd_id,
            op,
        })
    }

    /// The trade request; `None` without an `action`. The strings are moved out, not cloned.
    fn request_fields(&mut self) -> Option<TradeRequest> {
        Some(TradeRequest {
            action: self.action?,
            magic: self.magic,
            order: self.order,
            symbol: self.symbol.take().unwrap_or_default(),
            volume: self.volume,
            price: self.price,
            stoplimit: self.stoplimit,
            sl: self.sl,
            tp: self.tp,
            deviation: self.deviation,
            order_type: self.order_type,
            type_filling: self.type_filling,
            type_time: self.type_time,
            expiration: self.expiration,
            comment: std::mem::take(&mut self.comment),
            position: self.position,
            position_by: self.position_by,
            is_async: self.is_async,
        })
    }
}
