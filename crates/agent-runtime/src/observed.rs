//! Positions as the terminal shows them, in the shape the client's tracker and the netting book
//! share: an observed position, how a position was closed, and a position that opened and closed
//! while the agent was away. Plain data, no I/O.

use hedge_domain::{DealTicket, Magic, Money, PositionId, Price, Side, Volume};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type TimeMs = i64;

/// One position as the terminal shows it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub id: PositionId,
    pub symbol: String,
    pub side: Side,
    /// 0 when the position has just been closed.
    pub volume: Volume,
    pub price_open: Price,
    pub sl: Price,
    pub tp: Price,
    pub magic: Magic,
    /// The position's own comment (its entry comment).
    pub comment: String,
    /// When the position was opened.
    pub time: TimeMs,
    /// When it last changed (0 if unknown).
    pub time_update: TimeMs,
}

/// What is known about how a position was closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseDetail {
    pub time: TimeMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal: Option<DealTicket>,
    /// Whether a closing deal was found in the history (false: inferred from a snapshot alone).
    pub confirmed: bool,
    /// The closing deal's comment (the position's exit comment).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// The closing deal's volume and money, as the deal reports them; `None` when the close is
    /// known only in part (inferred, or a piece of a deal the ledger split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub money: Option<DealMoney>,
}

/// A deal's volume and the money it realized, as the terminal reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealMoney {
    pub volume: Volume,
    pub profit: Money,
    pub commission: Money,
    pub swap: Money,
    pub fee: Money,
}

impl CloseDetail {
    /// What deal `d`, which closed or reduced the position, says about it.
    pub fn from_deal(d: &hedge_protocol::DealRecord) -> CloseDetail {
        CloseDetail {
            time: d.time,
            price: Some(d.price),
            deal: Some(d.ticket),
            confirmed: true,
            comment: d.comment.clone(),
            money: Some(DealMoney {
                volume: d.volume,
                profit: d.profit,
                commission: d.commission,
                swap: d.swap,
                fee: d.fee,
            }),
        }
    }
}

/// A position that opened and closed entirely while the agent was not watching, as found in history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedWhileAway {
    pub position: Observed,
    /// The volume it was opened with.
    pub volume: Volume,
    pub close: CloseDetail,
}
