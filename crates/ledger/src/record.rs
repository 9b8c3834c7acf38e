//! The ledger's input: an account's orders and deals, as MT5 reports them.
//!
//! These records mirror `HistoryOrderGet*` / `HistoryDealGet*` (and `OrderGet*` for pending orders), so
//! any source converts into them field by field: the terminal protocol's history records, an MT5
//! report ([`crate::report`]), or the project's JSON-lines history files ([`History::read_jsonl`]).
//!
//! [`LedgerOrder`], [`LedgerDeal`] and [`LedgerAccount`] hold only what pairing and profit need,
//! under the history file's field names (`time_msc`); the terminal protocol's `OrderRecord`,
//! `DealRecord` and `AccountInfo` (`hedge-protocol`) carry every column MT5 reports and are converted
//! into these at the edge.

use hedge_domain::{
    AccountMarginMode, DealEntry, DealTicket, DealType, Login, Magic, Money, OrderState,
    OrderTicket, OrderType, PositionId, Price, Volume,
};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// One order, pending or historical (`ORDER_*` properties). Later records for the same ticket replace
/// earlier ones (a pending order that is modified, filled or cancelled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerOrder {
    /// `ORDER_TICKET`.
    pub ticket: OrderTicket,
    /// `ORDER_SYMBOL`; may be empty when the terminal lost the record, then the deal's symbol is used.
    #[serde(default)]
    pub symbol: String,
    /// `ORDER_TYPE`.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// `ORDER_STATE`: placed/started/partial = still pending; canceled/expired/rejected/filled = final.
    pub state: OrderState,
    /// `ORDER_MAGIC`; a link to a position when bit 63 is set (see [`crate::codec`]).
    #[serde(default)]
    pub magic: Magic,
    /// `ORDER_VOLUME_INITIAL`.
    #[serde(default)]
    pub volume_initial: Volume,
    /// `ORDER_VOLUME_CURRENT`: the unfilled rest.
    #[serde(default)]
    pub volume_current: Volume,
    /// `ORDER_PRICE_OPEN`: the set price of a pending order, 0 for market orders.
    #[serde(default)]
    pub price_open: Price,
    /// `ORDER_TIME_SETUP_MSC`.
    #[serde(default)]
    pub time_setup_msc: i64,
    /// `ORDER_TIME_DONE_MSC`: fill or cancel time, 0 while pending.
    #[serde(default)]
    pub time_done_msc: i64,
    /// `ORDER_POSITION_ID` (0 when unknown).
    #[serde(default)]
    pub position_id: PositionId,
    /// `ORDER_COMMENT`.
    #[serde(default)]
    pub comment: String,
}

impl LedgerOrder {
    /// Whether the order is still working on the server.
    pub fn is_pending(&self) -> bool {
        matches!(
            self.state,
            OrderState::Started
                | OrderState::Placed
                | OrderState::Partial
                | OrderState::RequestAdd
                | OrderState::RequestModify
                | OrderState::RequestCancel
        )
    }

    /// Whether the order ended without (further) execution.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.state, OrderState::Canceled | OrderState::Expired)
    }
}

/// One deal (`DEAL_*` properties).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerDeal {
    /// `DEAL_TICKET`.
    pub ticket: DealTicket,
    /// `DEAL_ORDER`: 0 for balance, credit, rollover and other non-trade deals.
    #[serde(default)]
    pub order: OrderTicket,
    /// `DEAL_SYMBOL`; empty for balance deals.
    #[serde(default)]
    pub symbol: String,
    /// `DEAL_TYPE`.
    #[serde(rename = "type")]
    pub deal_type: DealType,
    /// `DEAL_ENTRY`: in 0, out 1, in/out 2, out by 3.
    #[serde(default = "entry_in")]
    pub entry: DealEntry,
    /// `DEAL_MAGIC`: used only when the parent order is unknown.
    #[serde(default)]
    pub magic: Magic,
    /// `DEAL_POSITION_ID`: the native position (hedging accounts), 0 when unknown.
    #[serde(default)]
    pub position_id: PositionId,
    /// `DEAL_VOLUME`.
    #[serde(default)]
    pub volume: Volume,
    /// `DEAL_PRICE`.
    #[serde(default)]
    pub price: Price,
    /// `DEAL_COMMISSION` (usually negative).
    #[serde(default)]
    pub commission: Money,
    /// `DEAL_SWAP`.
    #[serde(default)]
    pub swap: Money,
    /// `DEAL_PROFIT` (informational; the ledger computes its own profit).
    #[serde(default)]
    pub profit: Money,
    /// `DEAL_TIME_MSC`.
    #[serde(default)]
    pub time_msc: i64,
    /// `DEAL_COMMENT`.
    #[serde(default)]
    pub comment: String,
}

fn entry_in() -> DealEntry {
    DealEntry::In
}

/// Account facts that change how deals pair up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerAccount {
    #[serde(default)]
    pub login: Login,
    /// Netting (the default) pairs by link magics; hedging by native position ids.
    #[serde(default = "netting")]
    pub margin_mode: AccountMarginMode,
    /// Account currency, for the report summary rows.
    #[serde(default)]
    pub currency: String,
}

fn netting() -> AccountMarginMode {
    AccountMarginMode::RetailNetting
}

impl Default for LedgerAccount {
    fn default() -> Self {
        LedgerAccount {
            login: Login(0),
            margin_mode: AccountMarginMode::RetailNetting,
            currency: String::new(),
        }
    }
}

/// One line of a JSON-lines history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryLine {
    Account(LedgerAccount),
    Order(LedgerOrder),
    Deal(LedgerDeal),
}

/// A whole account history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub account: LedgerAccount,
    pub orders: Vec<LedgerOrder>,
    pub deals: Vec<LedgerDeal>,
}

/// Longest accepted history line, in bytes: a record is a few hundred bytes; anything far larger is
/// not a history file.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("line {line}: longer than {MAX_LINE} bytes")]
    TooLong { line: usize },
    #[error("reading the history: {0}")]
    Io(#[from] std::io::Error),
}

impl History {
    /// Reads a JSON-lines history. Blank lines and lines starting with `#` are skipped. Any malformed
    /// line is an error naming its line number; nothing is returned partially.
    pub fn read_jsonl(reader: impl BufRead) -> Result<History, HistoryError> {
        let mut history = History::default();
        let mut reader = reader;
        let mut buf = Vec::new();
        let mut line_no = 0usize;
        loop {
            buf.clear();
            let n = read_line_limited(&mut reader, &mut buf, MAX_LINE + 1)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if buf.len() > MAX_LINE {
                return Err(HistoryError::TooLong { line: line_no });
            }
            let text = std::str::from_utf8(&buf).map_err(|_| HistoryError::Line {
                line: line_no,
                message: "not UTF-8".into(),
            })?;
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let parsed: HistoryLine =
                serde_json::from_str(text).map_err(|e| HistoryError::Line {
                    line: line_no,
                    message: e.to_string(),
                })?;
            match parsed {
                HistoryLine::Account(a) => history.account = a,
                HistoryLine::Order(o) => history.orders.push(o),
                HistoryLine::Deal(d) => history.deals.push(d),
            }
        }
        Ok(history)
    }

    /// Writes the history as JSON lines: the account line, then orders, then deals.
    pub fn write_jsonl(&self, mut out: impl Write) -> std::io::Result<()> {
        let mut write = |line: &HistoryLine| -> std::io::Result<()> {
            serde_json::to_writer(&mut out, line)?;
            out.write_all(b"\n")
        };
        write(&HistoryLine::Account(self.account.clone()))?;
        for o in &self.orders {
            write(&HistoryLine::Order(o.clone()))?;
        }
        for d in &self.deals {
            write(&HistoryLine::Deal(d.clone()))?;
        }
        Ok(())
    }
}

/// Reads one line (without its `\n`), stopping at `limit` bytes so an endless line cannot exhaust
/// memory. Returns the number of bytes consumed (0 at end of input).
fn read_line_limited(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(consumed);
        }
        if let Some(pos) = available.iter().position(|&b| b == b'\n') {
            if buf.len() < limit {
                let take = pos.min(limit - buf.len());
                buf.extend_from_slice(&available[..take]);
            }
            reader.consume(pos + 1);
            return Ok(consumed + pos + 1);
        }
        let n = available.len();
        if buf.len() < limit {
            let take = n.min(limit - buf.len());
            buf.extend_from_slice(&available[..take]);
        }
        reader.consume(n);
        consumed += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_orders_and_deals() {
        let text = r#"{"kind":"account","login":7,"margin_mode":2}
# a comment
{"kind":"order","ticket":10,"symbol":"EURUSD","type":0,"state":4,"volume_initial":0.1,"time_setup_msc":1000}
{"kind":"deal","ticket":20,"order":10,"symbol":"EURUSD","type":0,"entry":0,"volume":0.1,"price":1.1,"time_msc":1000}
"#;
        let h = History::read_jsonl(text.as_bytes()).unwrap();
        assert_eq!(h.account.margin_mode, AccountMarginMode::RetailHedging);
        assert_eq!(h.orders.len(), 1);
        assert_eq!(h.deals[0].order, OrderTicket(10));
        let mut out = Vec::new();
        h.write_jsonl(&mut out).unwrap();
        assert_eq!(History::read_jsonl(&out[..]).unwrap(), h);
    }

    #[test]
    fn bad_lines_are_errors_with_line_numbers() {
        let err = History::read_jsonl(&b"\n{\"kind\":\"deal\",\"ticket\":-1}\n"[..]).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let long = vec![b'x'; MAX_LINE + 10];
        assert!(matches!(
            History::read_jsonl(&long[..]),
            Err(HistoryError::TooLong { line: 1 })
        ));
        let err =
            History::read_jsonl(&b"{\"kind\":\"order\",\"ticket\":1,\"type\":99,\"state\":1}"[..])
                .unwrap_err();
        assert!(err.to_string().contains("ORDER_TYPE"), "{err}");
    }
}
