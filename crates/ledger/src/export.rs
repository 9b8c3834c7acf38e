//! Reports: `Active.csv` and `History.csv` with configurable columns, the same rows as JSON, and the
//! summary lines.
//!
//! CSV cells are separated by `;`. The default encoding is UTF-8 with `\n` line ends; the Excel
//! compatibility mode writes what the original wrote: UTF-16LE with a BOM, CRLF line ends and a `;`
//! after every cell including the last. Prices print with the symbol's digits (from its spec, else
//! the most decimals its prices have in the history: never from the arithmetic of averages),
//! volumes with the decimals of its volume step, commission with the price digits (as the original
//! did) and profit with 8 decimals.
//!
//! Cells are quoted as RFC 4180 says (a cell holding `;`, `"`, CR or LF is wrapped in quotes, inner
//! quotes doubled), so a comment can never shift the columns. Text cells (symbols, comments, header
//! names) that start with `=`, `+`, `-`, `@`, a tab or a CR get a leading `'`, so a spreadsheet
//! shows them instead of running them as formulas. Numeric cells are never changed: a negative
//! commission or profit is data.

use crate::codec;
use crate::ledger::Ledger;
use crate::position::{ActivePosition, HistoryPosition};
use crate::report::format_time;
use crate::state::LocalState;
use hedge_domain::{Magic, Money, OrderType, PositionId, Price, Side, SymbolSpec, Volume};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// Report column ids (B §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Column {
    CollapsePosition,
    Magic,
    ExitMagic,
    Symbol,
    EntryID,
    EntryDate,
    Type,
    Volume,
    EntryPrice,
    TralStopLoss,
    StopLoss,
    TakeProfit,
    CurrentPrice,
    Commission,
    Profit,
    EntryComment,
    ExitDate,
    ExitID,
    ExitPrice,
    ExitComment,
}

impl Column {
    pub const ALL: &'static [Column] = &[
        Column::CollapsePosition,
        Column::Magic,
        Column::ExitMagic,
        Column::Symbol,
        Column::EntryID,
        Column::EntryDate,
        Column::Type,
        Column::Volume,
        Column::EntryPrice,
        Column::TralStopLoss,
        Column::StopLoss,
        Column::TakeProfit,
        Column::CurrentPrice,
        Column::Commission,
        Column::Profit,
        Column::EntryComment,
        Column::ExitDate,
        Column::ExitID,
        Column::ExitPrice,
        Column::ExitComment,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Column::CollapsePosition => "CollapsePosition",
            Column::Magic => "Magic",
            Column::ExitMagic => "ExitMagic",
            Column::Symbol => "Symbol",
            Column::EntryID => "EntryID",
            Column::EntryDate => "EntryDate",
            Column::Type => "Type",
            Column::Volume => "Volume",
            Column::EntryPrice => "EntryPrice",
            Column::TralStopLoss => "TralStopLoss",
            Column::StopLoss => "StopLoss",
            Column::TakeProfit => "TakeProfit",
            Column::CurrentPrice => "CurrentPrice",
            Column::Commission => "Commission",
            Column::Profit => "Profit",
            Column::EntryComment => "EntryComment",
            Column::ExitDate => "ExitDate",
            Column::ExitID => "ExitID",
            Column::ExitPrice => "ExitPrice",
            Column::ExitComment => "ExitComment",
        }
    }

    pub fn from_id(id: &str) -> Option<Column> {
        Column::ALL.iter().copied().find(|c| c.id() == id.trim())
    }

    fn allowed_in_active(self) -> bool {
        !matches!(
            self,
            Column::ExitPrice | Column::ExitDate | Column::ExitMagic | Column::ExitID
        )
    }

    fn allowed_in_history(self) -> bool {
        !matches!(self, Column::TralStopLoss | Column::CurrentPrice)
    }
}

/// The columns of one table, with their header names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns(pub Vec<(Column, String)>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    #[error("unknown column {0:?}")]
    Unknown(String),
    #[error("column {0} is not allowed in the {1} table")]
    NotAllowed(&'static str, &'static str),
    #[error("Settings.xml: {0}")]
    Xml(String),
}

impl Columns {
    /// The installer's default active table.
    pub fn default_active() -> Self {
        let c = |col: Column, name: &str| (col, name.to_owned());
        Columns(vec![
            c(Column::CollapsePosition, "CollapsePos."),
            c(Column::Magic, "Magic"),
            c(Column::Symbol, "Symbol"),
            c(Column::EntryID, "Entry ID"),
            c(Column::EntryDate, "Entry Date"),
            c(Column::Type, "Type"),
            c(Column::Volume, "Vol."),
            c(Column::EntryPrice, "EntryPrice"),
            c(Column::TralStopLoss, "TralSL"),
            c(Column::StopLoss, "S/L"),
            c(Column::TakeProfit, "T/P"),
            c(Column::CurrentPrice, "Price"),
            c(Column::Commission, "Comm."),
            c(Column::Profit, "Profit"),
            c(Column::EntryComment, "Entry Comment"),
            c(Column::ExitComment, "Exit Comment"),
        ])
    }

    /// The installer's default history table.
    pub fn default_history() -> Self {
        let c = |col: Column, name: &str| (col, name.to_owned());
        Columns(vec![
            c(Column::CollapsePosition, "CollapsePos."),
            c(Column::Magic, "Magic"),
            c(Column::Symbol, "Symbol"),
            c(Column::EntryID, "Entry ID"),
            c(Column::EntryDate, "Entry Date"),
            c(Column::Type, "Type"),
            c(Column::EntryPrice, "Entry Price"),
            c(Column::Volume, "Vol."),
            c(Column::ExitPrice, "Exit Price"),
            c(Column::ExitDate, "Exit Date"),
            c(Column::ExitID, "Exit ID"),
            c(Column::StopLoss, "S/L"),
            c(Column::TakeProfit, "T/P"),
            c(Column::Commission, "Comm."),
            c(Column::Profit, "Profit"),
            c(Column::EntryComment, "Entry Comment"),
            c(Column::ExitComment, "Exit Comment"),
        ])
    }

    /// Reads the `<Show-Columns>` of HedgeTerminal's `Settings.xml`: `(active, history)`. A column needs
    /// `ID`, `Name` and a positive `Width`; columns a table does not allow, and unknown ids, are
    /// skipped as the original did.
    pub fn from_settings_xml(xml: &str) -> Result<(Columns, Columns), ColumnError> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut active = Vec::new();
        let mut history = Vec::new();
        let mut table: Option<bool> = None;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| ColumnError::Xml(e.to_string()))?;
            let (e, is_start) = match event {
                Event::Start(e) => (e, true),
                Event::Empty(e) => (e, false),
                Event::End(e) => {
                    if matches!(
                        e.local_name().as_ref(),
                        b"Active-Position" | b"History-Position"
                    ) {
                        table = None;
                    }
                    continue;
                }
                Event::Eof => break,
                _ => continue,
            };
            match e.local_name().as_ref() {
                b"Active-Position" if is_start => table = Some(false),
                b"History-Position" if is_start => table = Some(true),
                b"Column" => {
                    let Some(is_history) = table else { continue };
                    let (mut id, mut name, mut width) = (None, None, 0i64);
                    for a in e.attributes().flatten() {
                        let value = a
                            .unescape_value()
                            .map_err(|err| ColumnError::Xml(err.to_string()))?
                            .into_owned();
                        match a.key.local_name().as_ref() {
                            b"ID" => id = Column::from_id(&value),
                            b"Name" => name = Some(value),
                            b"Width" => width = value.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    if let (Some(col), Some(name)) = (id, name) {
                        let allowed = if is_history {
                            col.allowed_in_history()
                        } else {
                            col.allowed_in_active()
                        };
                        if width > 0 && allowed {
                            if is_history {
                                history.push((col, name));
                            } else {
                                active.push((col, name));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok((Columns(active), Columns(history)))
    }

    /// Parses `Id[=Name],Id[=Name],...` for the active (`history = false`) or history table.
    pub fn parse(spec: &str, history: bool) -> Result<Self, ColumnError> {
        let mut out = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (id, name) = item.split_once('=').unwrap_or((item, item));
            let col = Column::from_id(id).ok_or_else(|| ColumnError::Unknown(id.to_owned()))?;
            let ok = if history {
                col.allowed_in_history()
            } else {
                col.allowed_in_active()
            };
            if !ok {
                return Err(ColumnError::NotAllowed(
                    col.id(),
                    if history { "history" } else { "active" },
                ));
            }
            out.push((col, name.trim().to_owned()));
        }
        Ok(Columns(out))
    }
}

/// Market and symbol data a report may use.
#[derive(Clone, Debug, Default)]
pub struct ReportContext {
    pub login: u64,
    pub specs: HashMap<String, SymbolSpec>,
    /// (bid, ask) per symbol.
    pub prices: HashMap<String, (Price, Price)>,
    pub local: Option<LocalState>,
}

/// One active position as report data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ActiveRow {
    pub id: PositionId,
    pub magic: Magic,
    pub unmanaged: bool,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub entry_time_msc: i64,
    pub volume: Volume,
    pub entry_price: Price,
    pub stop_loss: Option<Price>,
    pub take_profit: Option<Price>,
    pub current_price: Option<Price>,
    pub commission: Money,
    pub swap: Money,
    pub profit: Option<Money>,
    pub entry_comment: String,
    pub exit_comment: String,
}

/// One history position as report data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HistoryRow {
    pub id: PositionId,
    pub magic: Magic,
    pub exit_magic: Magic,
    pub unmanaged: bool,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub entry_time_msc: i64,
    pub exit_time_msc: i64,
    pub exit_order: u64,
    pub volume: Volume,
    pub entry_price: Price,
    pub exit_price: Price,
    pub stop_loss: Option<Price>,
    pub take_profit: Option<Price>,
    pub commission: Money,
    pub swap: Money,
    pub profit: Option<Money>,
    pub entry_comment: String,
    pub exit_comment: String,
}

fn active_row(p: &ActivePosition<'_>, ctx: &ReportContext) -> ActiveRow {
    let local = ctx
        .local
        .as_ref()
        .and_then(|s| s.position(ctx.login, p.id()));
    let current = ctx
        .prices
        .get(p.symbol())
        .map(|&(bid, ask)| match p.side() {
            Side::Buy => bid,
            Side::Sell => ask,
        });
    let profit = match (ctx.specs.get(p.symbol()), current) {
        (Some(spec), Some(c)) => Some(p.profit(spec, c)),
        _ => None,
    };
    ActiveRow {
        id: p.id(),
        magic: p.entry_magic(),
        unmanaged: p.is_unmanaged(),
        symbol: p.symbol().to_owned(),
        side: p.side(),
        order_type: p.entry_order_type(),
        entry_time_msc: p.entry_time_msc(),
        volume: p.volume(),
        entry_price: p.entry_price(),
        stop_loss: p.stop_loss(),
        take_profit: local.and_then(|l| l.take_profit),
        current_price: current,
        commission: p.commission(),
        swap: p.swap(),
        profit,
        entry_comment: p.entry_comment().to_owned(),
        exit_comment: p
            .stop_loss_comment()
            .map(str::to_owned)
            .or_else(|| local.and_then(|l| l.exit_comment.clone()))
            .unwrap_or_default(),
    }
}

fn history_row(h: &HistoryPosition<'_>, ctx: &ReportContext) -> HistoryRow {
    // A virtual take-profit that never fired still shows, if it is on the far side of the exit.
    let local_tp = ctx
        .local
        .as_ref()
        .and_then(|s| s.position(ctx.login, h.id()))
        .and_then(|p| p.take_profit)
        .filter(|tp| match h.side() {
            Side::Buy => *tp >= h.exit_price(),
            Side::Sell => *tp <= h.exit_price(),
        });
    HistoryRow {
        id: h.id(),
        magic: h.entry_magic(),
        exit_magic: h.exit_magic(),
        unmanaged: h.is_unmanaged(),
        symbol: h.symbol().to_owned(),
        side: h.side(),
        order_type: h.entry_order_type(),
        entry_time_msc: h.entry_time_msc(),
        exit_time_msc: h.exit_time_msc(),
        exit_order: h.exit_order().get(),
        volume: h.volume(),
        entry_price: h.entry_price(),
        exit_price: h.exit_price(),
        stop_loss: h.stop_loss(),
        take_profit: h.take_profit().or(local_tp),
        commission: h.commission(),
        swap: h.swap(),
        profit: ctx.specs.get(h.symbol()).map(|s| h.profit(s)),
        entry_comment: h.entry_comment().to_owned(),
        exit_comment: h.exit_comment().to_owned(),
    }
}

/// Active positions as rows, ascending by id.
pub fn active_rows(ledger: &Ledger, ctx: &ReportContext) -> Vec<ActiveRow> {
    ledger
        .active_positions()
        .iter()
        .map(|p| active_row(p, ctx))
        .collect()
}

/// History positions as rows, ascending by (entry id, exit order).
pub fn history_rows(ledger: &Ledger, ctx: &ReportContext) -> Vec<HistoryRow> {
    let mut rows: Vec<HistoryRow> = ledger
        .history_positions()
        .map(|h| history_row(&h, ctx))
        .collect();
    rows.sort_by_key(|r| (r.id, r.exit_order));
    rows
}

/// Output encoding of the CSV files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CsvEncoding {
    /// UTF-8, `\n`, no trailing separator.
    #[default]
    Utf8,
    /// The original's files: UTF-16LE with BOM, CRLF, a `;` after every cell.
    Utf16Excel,
}

fn fixed(value: Decimal, dp: u32) -> String {
    format!("{:.*}", dp as usize, value.round_dp(dp))
}

fn digits_for(ledger: &Ledger, ctx: &ReportContext, symbol: &str) -> u32 {
    if let Some(s) = ctx.specs.get(symbol) {
        return s.digits;
    }
    ledger.price_digits(symbol).unwrap_or(5)
}

/// A text cell made safe for spreadsheets: a leading `'` stops a formula from running.
pub fn neutralize(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// RFC 4180 quoting, with `;` as the separator.
fn quote(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\"")).into()
    } else {
        cell.into()
    }
}

fn volume_dp(ctx: &ReportContext, symbol: &str, v: Volume) -> u32 {
    match ctx.specs.get(symbol) {
        Some(s) if s.volume_step.0 >= Decimal::ONE => 0,
        Some(s) => s.volume_step.0.normalize().scale(),
        None => v.0.normalize().scale().max(2),
    }
}

fn type_name(t: OrderType) -> String {
    t.mt5_name()
        .trim_start_matches("ORDER_TYPE_")
        .replace('_', " ")
}

fn opt_price(p: Option<Price>, dp: u32) -> String {
    fixed(p.map(|p| p.0).unwrap_or(Decimal::ZERO), dp)
}

fn active_cell(col: Column, r: &ActiveRow, ctx: &ReportContext, dp: u32) -> String {
    match col {
        Column::Magic => r.magic.get().to_string(),
        Column::Symbol => neutralize(&r.symbol),
        Column::EntryID => r.id.to_string(),
        Column::ExitID => "0".into(),
        Column::EntryDate => format_time(r.entry_time_msc),
        Column::ExitDate => format_time(0),
        Column::Type => type_name(r.order_type),
        Column::Volume => fixed(r.volume.0, volume_dp(ctx, &r.symbol, r.volume)),
        Column::EntryPrice => fixed(r.entry_price.0, dp),
        Column::StopLoss => opt_price(r.stop_loss, dp),
        Column::TakeProfit => opt_price(r.take_profit, dp),
        Column::CurrentPrice => opt_price(r.current_price, dp),
        Column::Commission => fixed(r.commission.0, dp),
        Column::Profit => r.profit.map(|p| fixed(p.0, 8)).unwrap_or_default(),
        Column::EntryComment => neutralize(&r.entry_comment),
        Column::ExitComment => neutralize(&r.exit_comment),
        Column::ExitPrice => String::new(),
        Column::CollapsePosition | Column::TralStopLoss | Column::ExitMagic => String::new(),
    }
}

fn history_cell(col: Column, r: &HistoryRow, ctx: &ReportContext, dp: u32) -> String {
    match col {
        Column::Magic => r.magic.get().to_string(),
        Column::Symbol => neutralize(&r.symbol),
        Column::EntryID => r.id.to_string(),
        Column::ExitID => r.exit_order.to_string(),
        Column::EntryDate => format_time(r.entry_time_msc),
        Column::ExitDate => format_time(r.exit_time_msc),
        Column::Type => type_name(r.order_type),
        Column::Volume => fixed(r.volume.0, volume_dp(ctx, &r.symbol, r.volume)),
        Column::EntryPrice => fixed(r.entry_price.0, dp),
        Column::ExitPrice => fixed(r.exit_price.0, dp),
        Column::StopLoss => opt_price(r.stop_loss, dp),
        Column::TakeProfit => opt_price(r.take_profit, dp),
        Column::CurrentPrice => fixed(r.exit_price.0, dp),
        Column::Commission => fixed(r.commission.0, dp),
        Column::Profit => r.profit.map(|p| fixed(p.0, 8)).unwrap_or_default(),
        Column::EntryComment => neutralize(&r.entry_comment),
        Column::ExitComment => neutralize(&r.exit_comment),
        Column::CollapsePosition | Column::TralStopLoss | Column::ExitMagic => String::new(),
    }
}

fn encode_lines(lines: Vec<Vec<String>>, enc: CsvEncoding) -> Vec<u8> {
    match enc {
        CsvEncoding::Utf8 => {
            let mut s = String::new();
            for l in lines {
                let cells: Vec<_> = l.iter().map(|c| quote(c)).collect();
                s.push_str(&cells.join(";"));
                s.push('\n');
            }
            s.into_bytes()
        }
        CsvEncoding::Utf16Excel => {
            let mut s = String::new();
            for l in lines {
                for c in l {
                    s.push_str(&quote(&c));
                    s.push(';');
                }
                s.push_str("\r\n");
            }
            let mut out = vec![0xFF, 0xFE];
            for u in s.encode_utf16() {
                out.extend_from_slice(&u.to_le_bytes());
            }
            out
        }
    }
}

/// `Active.csv` contents.
pub fn active_csv(
    ledger: &Ledger,
    ctx: &ReportContext,
    columns: &Columns,
    enc: CsvEncoding,
) -> Vec<u8> {
    let mut lines = vec![columns.0.iter().map(|(_, n)| neutralize(n)).collect()];
    for r in active_rows(ledger, ctx) {
        let dp = digits_for(ledger, ctx, &r.symbol);
        lines.push(
            columns
                .0
                .iter()
                .map(|(c, _)| active_cell(*c, &r, ctx, dp))
                .collect(),
        );
    }
    encode_lines(lines, enc)
}

/// `History.csv` contents.
pub fn history_csv(
    ledger: &Ledger,
    ctx: &ReportContext,
    columns: &Columns,
    enc: CsvEncoding,
) -> Vec<u8> {
    let mut lines = vec![columns.0.iter().map(|(_, n)| neutralize(n)).collect()];
    for r in history_rows(ledger, ctx) {
        let dp = digits_for(ledger, ctx, &r.symbol);
        lines.push(
            columns
                .0
                .iter()
                .map(|(c, _)| history_cell(*c, &r, ctx, dp))
                .collect(),
        );
    }
    encode_lines(lines, enc)
}

/// The active summary line: balance, floating P/L (and its share of the balance), margin level.
pub fn active_summary(rows: &[ActiveRow], balance: Money, margin: Money, equity: Money) -> String {
    let pl: Decimal = rows.iter().filter_map(|r| r.profit).map(|p| p.0).sum();
    let pct = if balance.is_zero() {
        "0.0".to_owned()
    } else {
        fixed(pl / balance.0 * Decimal::from(100), 2)
    };
    let margin_pct = if equity.is_zero() {
        "0.0".to_owned()
    } else {
        fixed(margin.0 / equity.0 * Decimal::from(100), 2)
    };
    format!(
        "Balance: {}  Floating P/L: {} ({pct}%)  Margin: {margin_pct}%",
        fixed(balance.0, 2),
        fixed(pl, 2)
    )
}

/// The history summary line: balance, total P/L (profit + commission + swap), position count.
pub fn history_summary(rows: &[HistoryRow], balance: Money, currency: &str) -> String {
    let total: Decimal = rows
        .iter()
        .map(|r| r.profit.map(|p| p.0).unwrap_or_default() + r.commission.0 + r.swap.0)
        .sum();
    let unit = match currency {
        "USD" => "$",
        "RUB" => " RUB",
        _ => "",
    };
    format!(
        "Balance: {}  Total P/L: {}{unit} Pos.: {}",
        fixed(balance.0, 2),
        fixed(total, 2),
        rows.len()
    )
}

/// How the Magic column reads in the table view: "UNMANAGMENT" for unmanaged positions, "Manual" for
/// magic 0, else the number.
pub fn magic_label(magic: Magic) -> String {
    if codec::is_link(magic) {
        "UNMANAGMENT".into()
    } else if magic.get() == 0 {
        "Manual".into()
    } else {
        magic.get().to_string()
    }
}
