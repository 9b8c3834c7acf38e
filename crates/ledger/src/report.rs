//! Import of MT5 "Trade History Report" exports (`.xlsx` and the UTF-16 `.html`).
//!
//! A report is one sheet of sections, each a one-cell title row, a header row and data rows. Titles
//! are localized, so sections are recognized by shape and position: the deals table is the one whose
//! rows carry deal directions (`in`, `out`, `in/out`, `out by`), the orders table the one whose
//! volumes read "requested / filled", the table before the orders is the closed positions of a
//! hedging account, and the first ticket table after the deals is the open positions. Header cells
//! are mapped by their column index because merged cells leave gaps. Reports carry no position ids on
//! deals: on hedging accounts each `in` deal opens position = its order ticket and each closing deal
//! is matched to a position (through the report's positions table when present, else FIFO per symbol
//! and side); netting reports replay in FIFO mode.

use crate::ledger::{Ledger, LedgerError, PairingMode};
use crate::record::{AccountInfo, DealRecord, History, OrderRecord};
use hedge_domain::num::parse_decimal;
use hedge_domain::{
    AccountMarginMode, DealEntry, DealTicket, DealType, Login, Magic, Money, OrderState,
    OrderTicket, OrderType, PositionId, Price, Side, Volume,
};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading the report: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a readable spreadsheet: {0}")]
    Xlsx(String),
    #[error("the report has no deals table")]
    NoDeals,
    #[error("{section} row {row}: {message}")]
    Row {
        section: &'static str,
        row: usize,
        message: String,
    },
    #[error("unknown report format {0:?} (expected .xlsx or .html)")]
    Format(String),
    #[error("replaying the report: {0}")]
    Ledger(#[from] LedgerError),
}

/// A position the report says is open at the end.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpenPositionRow {
    pub position: PositionId,
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
}

/// A closed position row of a hedging report.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ClosedRow {
    position: u64,
    symbol: String,
    side: Side,
    volume: i64,
    close_time: i64,
    profit: Decimal,
}

/// Everything read from a report.
#[derive(Clone, Debug)]
pub struct ImportedReport {
    pub history: History,
    /// The pairing mode the report needs (native ids for hedging, FIFO for netting).
    pub mode: PairingMode,
    /// The report's "Open Positions" section.
    pub open_positions: Vec<OpenPositionRow>,
    /// Rows of the report's closed positions table (hedging reports), if present.
    pub closed_positions: Option<usize>,
}

/// A difference between the replay and the report's own summary.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    pub what: String,
    pub expected: String,
    pub actual: String,
}

impl ImportedReport {
    /// Replays the report's history in the mode it needs.
    pub fn replay(&self, progress: impl FnMut(u64)) -> Result<Ledger, LedgerError> {
        Ledger::replay_with(&self.history, self.mode, progress)
    }

    /// Compares a replay with the report's "Open Positions" (net volume per symbol, and the position
    /// ids on hedging accounts) and closed-position count. Empty when they agree.
    pub fn verify(&self, ledger: &Ledger) -> Vec<Mismatch> {
        let mut out = Vec::new();
        let mut expected: std::collections::BTreeMap<String, Decimal> = Default::default();
        for p in &self.open_positions {
            *expected.entry(p.symbol.clone()).or_default() +=
                p.volume.0 * Decimal::from(p.side.sign());
        }
        let mut actual: std::collections::BTreeMap<String, Decimal> = Default::default();
        for (s, v) in ledger.net_volumes() {
            actual.insert(s, v.0);
        }
        let symbols: std::collections::BTreeSet<&String> =
            expected.keys().chain(actual.keys()).collect();
        for s in symbols {
            let e = expected.get(s).copied().unwrap_or_default();
            let a = actual.get(s).copied().unwrap_or_default();
            if e != a {
                out.push(Mismatch {
                    what: format!("net volume {s}"),
                    expected: e.normalize().to_string(),
                    actual: a.normalize().to_string(),
                });
            }
        }
        if self.mode == PairingMode::Native {
            let mut e: Vec<u64> = self
                .open_positions
                .iter()
                .map(|p| p.position.get())
                .collect();
            let mut a: Vec<u64> = ledger
                .active_positions()
                .iter()
                .map(|p| p.id().get())
                .collect();
            e.sort_unstable();
            a.sort_unstable();
            if e != a {
                out.push(Mismatch {
                    what: "open position ids".into(),
                    expected: format!("{e:?}"),
                    actual: format!("{a:?}"),
                });
            }
        }
        if let Some(n) = self.closed_positions {
            let a = ledger.closed_position_count();
            if n != a {
                out.push(Mismatch {
                    what: "closed positions".into(),
                    expected: n.to_string(),
                    actual: a.to_string(),
                });
            }
        }
        out
    }
}

/// A sheet as rows of (column index, text) cells.
pub type Sheet = Vec<Vec<(usize, String)>>;

/// Reads a report file, choosing the reader by extension (or content for unknown extensions).
pub fn import_path(path: &Path) -> Result<ImportedReport, ReportError> {
    let bytes = std::fs::read(path)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let sheet = match ext.as_str() {
        "xlsx" => read_xlsx(&bytes)?,
        "html" | "htm" => read_html(&bytes),
        _ if bytes.starts_with(b"PK") => read_xlsx(&bytes)?,
        _ if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(b"<") => read_html(&bytes),
        other => return Err(ReportError::Format(other.to_owned())),
    };
    import_sheet(&sheet)
}

/// Reads the first worksheet of an `.xlsx` file.
pub fn read_xlsx(bytes: &[u8]) -> Result<Sheet, ReportError> {
    use calamine::{Data, Reader};
    let mut wb = calamine::open_workbook_auto_from_rs(std::io::Cursor::new(bytes.to_vec()))
        .map_err(|e| ReportError::Xlsx(e.to_string()))?;
    let range = wb
        .worksheet_range_at(0)
        .ok_or_else(|| ReportError::Xlsx("no worksheet".into()))?
        .map_err(|e| ReportError::Xlsx(e.to_string()))?;
    let (row0, col0) = range.start().unwrap_or((0, 0));
    let mut sheet: Sheet = Vec::new();
    for _ in 0..row0 {
        sheet.push(Vec::new());
    }
    for row in range.rows() {
        let mut cells = Vec::new();
        for (i, c) in row.iter().enumerate() {
            let text = match c {
                Data::Empty => continue,
                Data::String(s) => s.clone(),
                Data::Int(i) => i.to_string(),
                Data::Float(f) => {
                    let mut b = ryu_like(*f);
                    if b.ends_with(".0") {
                        b.truncate(b.len() - 2);
                    }
                    b
                }
                Data::Bool(b) => b.to_string(),
                Data::DateTime(dt) => format_serial(dt.as_f64()),
                Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
                Data::Error(_) => continue,
            };
            if !text.trim().is_empty() {
                cells.push((col0 as usize + i, text));
            }
        }
        sheet.push(cells);
    }
    Ok(sheet)
}

fn ryu_like(f: f64) -> String {
    // Shortest round-trip text of the float, as the spreadsheet showed it.
    hedge_domain::num::decimal_from_f64(f)
        .map(|d| d.normalize().to_string())
        .unwrap_or_default()
}

fn format_serial(serial: f64) -> String {
    let ms = ((serial - 25569.0) * 86_400_000.0).round() as i64;
    format_time(ms)
}

/// Formats epoch milliseconds as MT5 does: `yyyy.mm.dd hh:mi:ss`.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}.{m:02}.{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `yyyy.mm.dd hh:mi[:ss]` (also with `-` or `/` separators) into epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    let mut parts = t.split([' ', 'T']).filter(|s| !s.is_empty());
    let date = parts.next()?;
    let time = parts.next().unwrap_or("00:00:00");
    let mut dp = date.split(['.', '-', '/']);
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut tp = time.split(':');
    let hh: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next().unwrap_or("0").parse().ok()?;
    let ss_text = tp.next().unwrap_or("0");
    let (ss, ms) = match ss_text.split_once('.') {
        Some((s, f)) => (s.parse::<i64>().ok()?, f.get(..3)?.parse::<i64>().ok()?),
        None => (ss_text.parse::<i64>().ok()?, 0),
    };
    Some(((days_from_civil(y, m, d) * 86_400 + hh * 3600 + mi * 60 + ss) * 1000) + ms)
}

/// A report number: spaces (also non-breaking) as thousands separators, `- 30.12` for negatives.
pub fn parse_number(text: &str) -> Option<Decimal> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '\u{202f}')
        .collect();
    if cleaned.is_empty() {
        return Some(Decimal::ZERO);
    }
    parse_decimal(&cleaned)
}

/// Decodes an HTML report (UTF-16LE with BOM, or UTF-8) and reads its table rows.
pub fn read_html(bytes: &[u8]) -> Sheet {
    let text = decode_html_bytes(bytes);
    html_rows(&text)
}

fn decode_html_bytes(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0xFF, 0xFE]) {
        // A stray odd trailing byte cannot be part of a UTF-16 code unit: drop it.
        let body = &bytes[2..bytes.len() - (bytes.len() - 2) % 2];
        let (text, _) = encoding_rs::UTF_16LE.decode_without_bom_handling(body);
        return text.into_owned();
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        let body = &bytes[2..bytes.len() - (bytes.len() - 2) % 2];
        let (text, _) = encoding_rs::UTF_16BE.decode_without_bom_handling(body);
        return text.into_owned();
    }
    let (text, _, _) = encoding_rs::UTF_8.decode(bytes);
    text.into_owned()
}

fn find_ci(hay: &str, needle: &str, from: usize) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if from >= h.len() {
        return None;
    }
    h[from..]
        .windows(n.len())
        .position(|w| w.eq_ignore_ascii_case(n))
        .map(|p| p + from)
}

/// A tolerant reader of `<tr>`/`<td>`/`<th>` structure: colspans advance the column index, hidden
/// cells take no column, tags inside cells are dropped, entities decoded.
fn html_rows(text: &str) -> Sheet {
    let mut sheet = Vec::new();
    let mut pos = 0;
    while let Some(tr) = find_ci(text, "<tr", pos) {
        let end = find_ci(text, "</tr", tr).unwrap_or(text.len());
        let next_tr = find_ci(text, "<tr", tr + 3).unwrap_or(text.len());
        let row_end = end.min(next_tr);
        let row = &text[tr..row_end];
        sheet.push(html_cells(row));
        pos = row_end;
    }
    sheet
}

fn html_cells(row: &str) -> Vec<(usize, String)> {
    let mut cells = Vec::new();
    let mut col = 0usize;
    let mut pos = 0;
    loop {
        let td = find_ci(row, "<td", pos);
        let th = find_ci(row, "<th", pos);
        let start = match (td, th) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let Some(tag_end) = row[start..].find('>').map(|i| start + i) else {
            break;
        };
        let tag = &row[start..tag_end];
        let close = [
            find_ci(row, "</td", tag_end),
            find_ci(row, "</th", tag_end),
            find_ci(row, "<td", tag_end),
            find_ci(row, "<th", tag_end),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(row.len());
        let inner = &row[tag_end + 1..close];
        let span = attr(tag, "colspan")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, 64);
        let tag_lower = tag.to_ascii_lowercase();
        let hidden =
            tag_lower.contains("hidden") || tag_lower.replace(' ', "").contains("display:none");
        // A hidden cell is not displayed and takes no column.
        if !hidden {
            let t = decode_entities(&strip_tags(inner));
            let t = t.trim();
            if !t.is_empty() {
                cells.push((col, t.to_owned()));
            }
            col += span;
        }
        pos = close;
    }
    cells
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let i = find_ci(tag, name, 0)?;
    let rest = tag[i + name.len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let (q, body) = match rest.chars().next()? {
        '"' => ('"', &rest[1..]),
        '\'' => ('\'', &rest[1..]),
        _ => (' ', rest),
    };
    let end = body.find([q, '>']).unwrap_or(body.len());
    Some(body[..end].to_owned())
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(semi) = after.find(';').filter(|&i| i <= 12) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let ent = &after[1..semi];
        let rep = match ent {
            "nbsp" => Some(' '),
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match rep {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Positions,
    Orders,
    Deals,
    OpenPositions,
    WorkingOrders,
    Other,
}

struct Section<'a> {
    kind: Kind,
    title: &'a str,
    header: &'a [(usize, String)],
    rows: Vec<(usize, &'a [(usize, String)])>,
}

fn is_title(row: &[(usize, String)]) -> bool {
    row.len() == 1 && row[0].0 == 0 && !row[0].1.trim_end().ends_with(':')
}

fn is_ticket(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_direction(s: &str) -> bool {
    parse_entry(s).is_some()
}

fn parse_entry(s: &str) -> Option<DealEntry> {
    match s.trim().to_lowercase().replace(' ', "").as_str() {
        "in" | "entrée" | "entree" | "вход" => Some(DealEntry::In),
        "out" | "sortie" | "выход" => Some(DealEntry::Out),
        "in/out" | "inout" | "entrée/sortie" | "разворот" => Some(DealEntry::InOut),
        "outby" | "sortiepar" | "закрытиевстречной" => Some(DealEntry::OutBy),
        _ => None,
    }
}

fn cell(row: &[(usize, String)], col: Option<usize>) -> &str {
    let Some(col) = col else { return "" };
    row.iter()
        .find(|(c, _)| *c == col)
        .map(|(_, t)| t.as_str())
        .unwrap_or("")
}

/// Splits a sheet into sections and classifies each by shape.
fn sections(sheet: &Sheet) -> Vec<Section<'_>> {
    let mut raw: Vec<Section<'_>> = Vec::new();
    let mut i = 0;
    while i < sheet.len() {
        if is_title(&sheet[i]) {
            let mut j = i + 1;
            while j < sheet.len() && sheet[j].is_empty() {
                j += 1;
            }
            if j < sheet.len() && sheet[j].len() >= 6 {
                let mut rows = Vec::new();
                let mut k = j + 1;
                while k < sheet.len() && !is_title(&sheet[k]) {
                    if !sheet[k].is_empty() {
                        rows.push((k + 1, sheet[k].as_slice()));
                    }
                    k += 1;
                }
                raw.push(Section {
                    kind: Kind::Other,
                    title: &sheet[i][0].1,
                    header: &sheet[j],
                    rows,
                });
                i = k;
                continue;
            }
        }
        i += 1;
    }
    // The deals table: rows whose cells include a direction token next to a ticket.
    let deals_at = raw.iter().position(|s| {
        s.rows
            .iter()
            .filter(|(_, r)| r.iter().any(|(_, t)| is_direction(t)))
            .count()
            > 0
    });
    let has_ratio = |s: &Section<'_>| {
        s.rows
            .iter()
            .any(|(_, r)| r.iter().any(|(_, t)| t.contains(" / ") && t.len() < 40))
    };
    let has_tickets = |s: &Section<'_>| {
        s.rows
            .iter()
            .any(|(_, r)| r.len() >= 5 && r.iter().take(3).any(|(_, t)| is_ticket(t)))
    };
    if let Some(d) = deals_at {
        raw[d].kind = Kind::Deals;
        for sec in raw.iter_mut().take(d) {
            sec.kind = if has_ratio(sec) {
                Kind::Orders
            } else if has_tickets(sec) {
                Kind::Positions
            } else {
                Kind::Other
            };
        }
        let mut seen_open = false;
        for s in raw.iter_mut().skip(d + 1) {
            if has_ratio(s) {
                s.kind = Kind::WorkingOrders;
            } else if !seen_open && (has_tickets(s) || s.rows.is_empty()) && s.header.len() >= 8 {
                s.kind = Kind::OpenPositions;
                seen_open = true;
            }
        }
    }
    raw
}

/// Column roles by header position: English/French/Russian names first, then the standard order.
fn map_columns(header: &[(usize, String)], roles: &[(&str, &[&str])]) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    let mut used = vec![false; header.len()];
    for (role, names) in roles {
        for (k, (col, text)) in header.iter().enumerate() {
            let t = text.trim().to_lowercase();
            if !used[k] && names.iter().any(|n| t == *n) && !map.contains_key(*role) {
                map.insert((*role).to_owned(), *col);
                used[k] = true;
                break;
            }
        }
    }
    // Unrecognized names: take the standard layout's role at the same ordinal, if still free.
    if map.len() < roles.len() && header.len() == roles.len() {
        for (k, (col, _)) in header.iter().enumerate() {
            let role = roles[k].0;
            if !used[k] && !map.contains_key(role) {
                map.insert(role.to_owned(), *col);
            }
        }
    }
    map
}

const DEAL_ROLES: &[(&str, &[&str])] = &[
    ("time", &["time", "heure", "время", "zeit"]),
    ("deal", &["deal", "transaction", "сделка"]),
    ("symbol", &["symbol", "symbole", "символ", "symbol"]),
    ("type", &["type", "тип", "typ"]),
    ("direction", &["direction", "направление", "richtung"]),
    ("volume", &["volume", "объем", "объём", "volumen"]),
    ("price", &["price", "prix", "цена", "preis"]),
    ("order", &["order", "ordre", "ордер", "auftrag"]),
    (
        "commission",
        &["commission", "комиссия", "kommission", "provision"],
    ),
    ("fee", &["fee", "frais", "сбор", "gebühr"]),
    ("swap", &["swap", "своп"]),
    ("profit", &["profit", "bénéfice", "прибыль", "gewinn"]),
    ("balance", &["balance", "solde", "баланс", "kontostand"]),
    (
        "comment",
        &["comment", "commentaire", "комментарий", "kommentar"],
    ),
];

const ORDER_ROLES: &[(&str, &[&str])] = &[
    (
        "open_time",
        &["open time", "heure d'ouverture", "время открытия"],
    ),
    ("order", &["order", "ordre", "ордер"]),
    ("symbol", &["symbol", "symbole", "символ"]),
    ("type", &["type", "тип"]),
    ("volume", &["volume", "объем", "объём"]),
    ("price", &["price", "prix", "цена"]),
    ("sl", &["s / l", "s/l"]),
    ("tp", &["t / p", "t/p"]),
    ("time", &["time", "heure", "время"]),
    ("state", &["state", "état", "etat", "состояние"]),
    ("comment", &["comment", "commentaire", "комментарий"]),
];

const POSITION_ROLES: &[(&str, &[&str])] = &[
    ("time", &["time", "heure", "время"]),
    ("position", &["position", "позиция"]),
    ("symbol", &["symbol", "symbole", "символ"]),
    ("type", &["type", "тип"]),
    ("volume", &["volume", "объем", "объём"]),
    ("price", &["price", "prix", "цена"]),
    ("sl", &["s / l", "s/l"]),
    ("tp", &["t / p", "t/p"]),
    ("close_time", &["time", "heure", "время"]),
    ("close_price", &["price", "prix", "цена"]),
    ("commission", &["commission", "комиссия"]),
    ("swap", &["swap", "своп"]),
    ("profit", &["profit", "bénéfice", "прибыль"]),
];

fn parse_side(s: &str) -> Option<Side> {
    let t = s.trim().to_lowercase();
    let first = t.split_whitespace().next().unwrap_or("");
    match first {
        "buy" | "achat" | "покупка" | "kauf" => Some(Side::Buy),
        "sell" | "vente" | "продажа" | "verkauf" => Some(Side::Sell),
        _ => None,
    }
}

fn parse_deal_type(s: &str) -> Option<DealType> {
    if let Some(side) = parse_side(s) {
        return Some(match side {
            Side::Buy => DealType::Buy,
            Side::Sell => DealType::Sell,
        });
    }
    let t = s.trim().to_lowercase();
    Some(match t.as_str() {
        "balance" | "solde" | "баланс" => DealType::Balance,
        "credit" | "crédit" | "кредит" => DealType::Credit,
        "charge" => DealType::Charge,
        "correction" => DealType::Correction,
        "bonus" => DealType::Bonus,
        "commission" => DealType::Commission,
        "interest" => DealType::Interest,
        "dividend" => DealType::Dividend,
        "tax" => DealType::Tax,
        _ => return None,
    })
}

fn parse_order_type(s: &str) -> Option<OrderType> {
    let t = s.trim().to_lowercase().replace(['_', '-'], " ");
    let side = parse_side(&t);
    let rest: String = t.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    Some(match (side, rest.as_str()) {
        (Some(Side::Buy), "") => OrderType::Buy,
        (Some(Side::Sell), "") => OrderType::Sell,
        (Some(Side::Buy), "limit") => OrderType::BuyLimit,
        (Some(Side::Sell), "limit") => OrderType::SellLimit,
        (Some(Side::Buy), "stop") => OrderType::BuyStop,
        (Some(Side::Sell), "stop") => OrderType::SellStop,
        (Some(Side::Buy), "stop limit") => OrderType::BuyStopLimit,
        (Some(Side::Sell), "stop limit") => OrderType::SellStopLimit,
        _ if t.starts_with("close by") => OrderType::CloseBy,
        _ => return None,
    })
}

fn parse_state(s: &str) -> OrderState {
    match s.trim().to_lowercase().as_str() {
        "filled" | "rempli" | "exécuté" | "исполнен" => OrderState::Filled,
        "canceled" | "cancelled" | "annulé" | "отменен" | "отменён" => {
            OrderState::Canceled
        }
        "expired" | "expiré" | "истек" => OrderState::Expired,
        "rejected" | "rejeté" | "отклонен" => OrderState::Rejected,
        "partial" | "partially filled" | "partiel" => OrderState::Partial,
        "started" => OrderState::Started,
        "placed" | "placé" | "размещен" => OrderState::Placed,
        _ => OrderState::Filled,
    }
}

fn row_err(section: &'static str, row: usize, message: String) -> ReportError {
    ReportError::Row {
        section,
        row,
        message,
    }
}

fn num(section: &'static str, row: usize, what: &str, text: &str) -> Result<Decimal, ReportError> {
    parse_number(text)
        .ok_or_else(|| row_err(section, row, format!("{what} {text:?} is not a number")))
}

fn account_info(sheet: &Sheet, has_positions: bool) -> AccountInfo {
    let mut info = AccountInfo::default();
    let mut mode = None;
    for row in sheet.iter().take(12) {
        for (_, t) in row {
            let Some((login, rest)) = t.split_once(" (") else {
                continue;
            };
            if !is_ticket(login) {
                continue;
            }
            info.login = Login(login.trim().parse().unwrap_or(0));
            let inner = rest.trim_end_matches(')');
            let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
            if let Some(cur) = parts.first() {
                info.currency = (*cur).to_owned();
            }
            for p in &parts {
                let pl = p.to_lowercase();
                if pl.starts_with("hedg") || pl == "couverture" || pl == "хеджинг" {
                    mode = Some(AccountMarginMode::RetailHedging);
                } else if pl.starts_with("netting") || pl == "неттинг" || pl == "compensation"
                {
                    mode = Some(AccountMarginMode::RetailNetting);
                } else if pl.starts_with("exchange") || pl == "биржевой" {
                    mode = Some(AccountMarginMode::Exchange);
                }
            }
        }
    }
    info.margin_mode = mode.unwrap_or(if has_positions {
        AccountMarginMode::RetailHedging
    } else {
        AccountMarginMode::RetailNetting
    });
    info
}

/// Builds the history from a sheet already split into rows.
pub fn import_sheet(sheet: &Sheet) -> Result<ImportedReport, ReportError> {
    let secs = sections(sheet);
    let deals_sec = secs
        .iter()
        .find(|s| s.kind == Kind::Deals)
        .ok_or(ReportError::NoDeals)?;
    let positions_sec = secs.iter().find(|s| s.kind == Kind::Positions);
    let account = account_info(sheet, positions_sec.is_some());
    tracing::debug!(
        sections = ?secs.iter().map(|s| (s.title, s.kind)).collect::<Vec<_>>(),
        "report sections"
    );
    let mut history = History {
        account,
        ..History::default()
    };

    // Orders.
    for sec in secs
        .iter()
        .filter(|s| matches!(s.kind, Kind::Orders | Kind::WorkingOrders))
    {
        let working = sec.kind == Kind::WorkingOrders;
        let cols = map_columns(sec.header, ORDER_ROLES);
        for (rn, row) in &sec.rows {
            let ticket = cell(row, cols.get("order").copied());
            if !is_ticket(ticket) {
                continue;
            }
            let Some(order_type) = parse_order_type(cell(row, cols.get("type").copied())) else {
                continue;
            };
            let vol_text = cell(row, cols.get("volume").copied());
            let (req, filled) = vol_text.split_once('/').unwrap_or((vol_text, vol_text));
            let req = num("orders", *rn, "volume", req)?;
            let filled = num("orders", *rn, "volume", filled)?;
            let price_text = cell(row, cols.get("price").copied());
            let price = if price_text.chars().any(|c| c.is_ascii_digit()) {
                num("orders", *rn, "price", price_text)?
            } else {
                Decimal::ZERO
            };
            let setup = parse_time(cell(row, cols.get("open_time").copied())).unwrap_or(0);
            let done = parse_time(cell(row, cols.get("time").copied())).unwrap_or(0);
            let state = if working {
                OrderState::Placed
            } else {
                parse_state(cell(row, cols.get("state").copied()))
            };
            history.orders.push(OrderRecord {
                ticket: OrderTicket(ticket.trim().parse().unwrap_or(0)),
                symbol: cell(row, cols.get("symbol").copied()).to_owned(),
                order_type,
                state,
                magic: Magic(0),
                volume_initial: Volume(req),
                volume_current: Volume(req - filled),
                price_open: Price(price),
                time_setup_msc: setup,
                time_done_msc: if working { 0 } else { done },
                position_id: PositionId(0),
                comment: cell(row, cols.get("comment").copied()).to_owned(),
            });
        }
    }

    // Deals.
    let cols = map_columns(deals_sec.header, DEAL_ROLES);
    for (rn, row) in &deals_sec.rows {
        let ticket = cell(row, cols.get("deal").copied());
        if !is_ticket(ticket) {
            continue; // the totals row
        }
        let type_text = cell(row, cols.get("type").copied());
        let deal_type = parse_deal_type(type_text).unwrap_or(DealType::Correction);
        let entry = parse_entry(cell(row, cols.get("direction").copied())).unwrap_or(DealEntry::In);
        let time = parse_time(cell(row, cols.get("time").copied()))
            .ok_or_else(|| row_err("deals", *rn, "bad time".into()))?;
        let order_text = cell(row, cols.get("order").copied());
        let order = if deal_type.is_trade() && is_ticket(order_text) {
            order_text.trim().parse().unwrap_or(0)
        } else {
            0
        };
        let volume = num(
            "deals",
            *rn,
            "volume",
            cell(row, cols.get("volume").copied()),
        )?;
        if volume.is_sign_negative() && !volume.is_zero() {
            return Err(row_err("deals", *rn, format!("negative volume {volume}")));
        }
        let commission = num(
            "deals",
            *rn,
            "commission",
            cell(row, cols.get("commission").copied()),
        )? + num("deals", *rn, "fee", cell(row, cols.get("fee").copied()))?;
        history.deals.push(DealRecord {
            ticket: DealTicket(ticket.trim().parse().unwrap_or(0)),
            order: OrderTicket(order),
            symbol: cell(row, cols.get("symbol").copied()).to_owned(),
            deal_type,
            entry,
            magic: Magic(0),
            position_id: PositionId(0),
            volume: Volume(volume),
            price: Price(num(
                "deals",
                *rn,
                "price",
                cell(row, cols.get("price").copied()),
            )?),
            commission: Money(commission),
            swap: Money(num(
                "deals",
                *rn,
                "swap",
                cell(row, cols.get("swap").copied()),
            )?),
            profit: Money(num(
                "deals",
                *rn,
                "profit",
                cell(row, cols.get("profit").copied()),
            )?),
            time_msc: time,
            comment: cell(row, cols.get("comment").copied()).to_owned(),
        });
    }

    // Closed positions (hedging reports).
    let mut closed_rows = Vec::new();
    if let Some(sec) = positions_sec {
        let cols = map_columns(sec.header, POSITION_ROLES);
        // "Time" and "Price" appear twice: the second of each is the close.
        let times: Vec<usize> = sec
            .header
            .iter()
            .filter(|(_, t)| {
                POSITION_ROLES[0]
                    .1
                    .contains(&t.trim().to_lowercase().as_str())
            })
            .map(|(c, _)| *c)
            .collect();
        let close_time_col = times.get(1).copied().or(cols.get("close_time").copied());
        for (rn, row) in &sec.rows {
            let pos = cell(row, cols.get("position").copied());
            if !is_ticket(pos) {
                continue;
            }
            let Some(side) = parse_side(cell(row, cols.get("type").copied())) else {
                continue;
            };
            let vol = num(
                "positions",
                *rn,
                "volume",
                cell(row, cols.get("volume").copied()),
            )?;
            closed_rows.push(ClosedRow {
                position: pos.trim().parse().unwrap_or(0),
                symbol: cell(row, cols.get("symbol").copied()).to_owned(),
                side,
                volume: crate::fixed::to_units(vol).unwrap_or(0),
                close_time: parse_time(cell(row, close_time_col)).unwrap_or(i64::MAX),
                profit: num(
                    "positions",
                    *rn,
                    "profit",
                    cell(row, cols.get("profit").copied()),
                )?,
            });
        }
    }

    // Open positions.
    let mut open_positions = Vec::new();
    if let Some(sec) = secs.iter().find(|s| s.kind == Kind::OpenPositions) {
        let cols = map_columns(sec.header, POSITION_ROLES);
        for (rn, row) in &sec.rows {
            let pos = cell(row, cols.get("position").copied());
            if !is_ticket(pos) {
                continue;
            }
            let Some(side) = parse_side(cell(row, cols.get("type").copied())) else {
                continue;
            };
            open_positions.push(OpenPositionRow {
                position: PositionId(pos.trim().parse().unwrap_or(0)),
                symbol: cell(row, cols.get("symbol").copied()).to_owned(),
                side,
                volume: Volume(num(
                    "open positions",
                    *rn,
                    "volume",
                    cell(row, cols.get("volume").copied()),
                )?),
            });
        }
    }

    let mode = if history.account.margin_mode.is_netting() {
        PairingMode::Fifo
    } else {
        assign_positions(&mut history, &closed_rows, &open_positions);
        PairingMode::Native
    };
    Ok(ImportedReport {
        history,
        mode,
        open_positions,
        closed_positions: positions_sec.map(|_| closed_rows.len()),
    })
}

struct OpenPos {
    id: u64,
    symbol: String,
    side: Side,
    open_time: i64,
    remaining: i64,
    close_time: i64,
    profit_target: Option<Decimal>,
    profit_so_far: Decimal,
}

/// Hedging reports: every `in` deal opens position = its order; every closing deal is given the
/// position it most plausibly closed.
fn assign_positions(history: &mut History, closed: &[ClosedRow], open: &[OpenPositionRow]) {
    let closed_by_id: HashMap<u64, &ClosedRow> = closed.iter().map(|c| (c.position, c)).collect();
    let open_ids: std::collections::HashSet<u64> = open.iter().map(|p| p.position.get()).collect();
    let mut order: Vec<usize> = (0..history.deals.len()).collect();
    order.sort_by_key(|&i| (history.deals[i].time_msc, history.deals[i].ticket.get()));
    let mut live: Vec<OpenPos> = Vec::new();
    for i in order {
        let d = &history.deals[i];
        let Some(side) = d.deal_type.side() else {
            continue;
        };
        if d.order.get() == 0 {
            continue;
        }
        let vol = crate::fixed::to_units(d.volume.0).unwrap_or(0);
        match d.entry {
            DealEntry::In => {
                let id = d.order.get();
                if let Some(p) = live.iter_mut().find(|p| p.id == id) {
                    p.remaining += vol;
                } else {
                    let c = closed_by_id.get(&id);
                    live.push(OpenPos {
                        id,
                        symbol: d.symbol.clone(),
                        side,
                        open_time: d.time_msc,
                        remaining: vol,
                        close_time: c
                            .map(|c| c.close_time)
                            .unwrap_or(if open_ids.contains(&id) {
                                i64::MAX
                            } else {
                                i64::MAX - 1
                            }),
                        profit_target: c.map(|c| c.profit),
                        profit_so_far: Decimal::ZERO,
                    });
                }
                history.deals[i].position_id = PositionId(id);
            }
            _ => {
                let t = d.time_msc;
                let profit = d.profit.0;
                let mut best: Option<(usize, (u8, i64, i64))> = None;
                for (k, p) in live.iter().enumerate() {
                    if p.symbol != d.symbol
                        || p.side == side
                        || p.remaining < vol
                        || p.open_time > t
                    {
                        continue;
                    }
                    if p.close_time < t {
                        continue;
                    }
                    let finishes = p.remaining == vol;
                    let rank = match (finishes, p.profit_target) {
                        (true, Some(target))
                            if p.close_time == t && p.profit_so_far + profit == target =>
                        {
                            0
                        }
                        (true, _) if p.close_time == t => 1,
                        (false, _) if p.close_time > t => 2,
                        _ => 3,
                    };
                    let key = (rank, p.close_time, p.open_time);
                    if best.as_ref().is_none_or(|(_, b)| key < *b) {
                        best = Some((k, key));
                    }
                }
                // Any opposite position at all, FIFO, when nothing fits the volume.
                let pick = best.map(|(k, _)| k).or_else(|| {
                    live.iter()
                        .position(|p| p.symbol == d.symbol && p.side != side && p.remaining > 0)
                });
                if let Some(k) = pick {
                    let p = &mut live[k];
                    p.remaining -= vol.min(p.remaining);
                    p.profit_so_far += profit;
                    history.deals[i].position_id = PositionId(p.id);
                    if p.remaining == 0 {
                        live.remove(k);
                    }
                } else {
                    history.deals[i].position_id = d.order.get().into();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times() {
        assert_eq!(parse_number("3 328.61"), Some(Decimal::new(332861, 2)));
        assert_eq!(parse_number("- 30.12"), Some(Decimal::new(-3012, 2)));
        assert_eq!(parse_number("1\u{a0}000"), Some(Decimal::from(1000)));
        assert_eq!(parse_number(""), Some(Decimal::ZERO));
        assert_eq!(parse_number("abc"), None);
        let t = parse_time("2026.07.31 14:51:06").unwrap();
        assert_eq!(format_time(t), "2026.07.31 14:51:06");
        assert_eq!(parse_time("1970.01.01 00:00:01"), Some(1000));
        assert_eq!(parse_time("garbage"), None);
    }

    #[test]
    fn html_cells_follow_colspans_and_skip_hidden() {
        let rows = html_rows(
            "<table><tr><td colspan=\"2\">A&nbsp;b</td><td class=\"hidden\">x</td><td><b>3</b></td></tr>\
             <TR><TH>h</TH><td style=\"display: none\">y</td><td>&amp;&#233;</td></TR></table>",
        );
        assert_eq!(rows[0], vec![(0, "A b".to_owned()), (2, "3".to_owned())]);
        assert_eq!(rows[1], vec![(0, "h".to_owned()), (1, "&é".to_owned())]);
        assert_eq!(decode_entities("&nbsp;marché &x; &#xE9;"), " marché &x; é");
    }

    #[test]
    fn utf16_with_stray_byte() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "<tr><td>é</td></tr>".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        bytes.push(0x00);
        assert_eq!(read_html(&bytes), vec![vec![(0, "é".to_owned())]]);
    }

    #[test]
    fn order_types_and_sides() {
        assert_eq!(parse_order_type("buy limit"), Some(OrderType::BuyLimit));
        assert_eq!(
            parse_order_type("sell stop limit"),
            Some(OrderType::SellStopLimit)
        );
        assert_eq!(parse_order_type("sell"), Some(OrderType::Sell));
        assert_eq!(parse_deal_type("balance"), Some(DealType::Balance));
        assert_eq!(parse_entry("in/out"), Some(DealEntry::InOut));
        assert_eq!(parse_entry("out by"), Some(DealEntry::OutBy));
    }
}
