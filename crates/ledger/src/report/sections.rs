//! Recognizing a report's tables by their shape, whatever their titles, order or language.
//!
//! A table is a header row (five or more text cells, no numbers, no `label:`) followed by rows up
//! to the next header, title or summary label. What a table holds is read from its rows: deals
//! carry a direction (`in`, `out`, ...), orders a "requested / filled" volume, positions neither;
//! history orders and closed positions have two times per row, working orders and open positions
//! one. Header words only help where rows cannot tell (empty tables) and to find moved columns;
//! otherwise columns follow the terminal's fixed layout, then are checked against their contents.

use super::build::{parse_deal_type, parse_order_type};
use super::locale::{parse_entry, parse_side, roles_of, Role};
use super::text::{is_ratio, is_ticket, parse_number, parse_time};
use super::{Row, Sheet};
use std::collections::HashMap;

/// What a table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ClosedPositions,
    Orders,
    Deals,
    OpenPositions,
    WorkingOrders,
}

/// The terminal's column order per table.
fn layout(kind: Kind) -> &'static [Role] {
    use Role::*;
    match kind {
        Kind::Deals => &[
            Time, Deal, Symbol, Type, Direction, Volume, Price, Order, Commission, Fee, Swap,
            Profit, Balance, Comment,
        ],
        Kind::Orders => &[
            OpenTime, Order, Symbol, Type, Volume, Price, StopLoss, TakeProfit, Time, State,
            Comment,
        ],
        Kind::WorkingOrders => &[
            OpenTime,
            Order,
            Symbol,
            Type,
            Volume,
            Price,
            StopLoss,
            TakeProfit,
            MarketPrice,
            State,
            Comment,
        ],
        Kind::ClosedPositions => &[
            Time, Position, Symbol, Type, Volume, Price, StopLoss, TakeProfit, CloseTime,
            ClosePrice, Commission, Swap, Profit,
        ],
        Kind::OpenPositions => &[
            Time,
            Position,
            Symbol,
            Type,
            Volume,
            Price,
            StopLoss,
            TakeProfit,
            MarketPrice,
            Swap,
            Profit,
            Comment,
        ],
    }
}

/// One recognized table.
pub struct Section<'a> {
    pub kind: Kind,
    /// 1-based sheet row of the header, for messages.
    pub header_row: usize,
    /// Data rows with their 1-based sheet row numbers.
    pub rows: Vec<(usize, &'a Row)>,
    pub cols: HashMap<Role, usize>,
}

impl Section<'_> {
    /// The cell of `role` in `row`, or "" when the table has no such column or the cell is empty.
    pub fn cell<'r>(&self, row: &'r Row, role: Role) -> &'r str {
        let Some(&col) = self.cols.get(&role) else {
            return "";
        };
        cell_at(row, col)
    }
}

fn cell_at(row: &Row, col: usize) -> &str {
    // Rows are short and sorted by column; a scan beats a map here.
    row.iter()
        .find(|(c, _)| *c == col)
        .map(|(_, t)| t.as_str())
        .unwrap_or("")
}

fn is_plain_text(t: &str) -> bool {
    !t.trim().is_empty()
        && !t.trim_end().ends_with([':', '：'])
        && parse_time(t).is_none()
        && !is_ratio(t)
        && t.chars().any(|c| c.is_alphabetic())
}

fn is_header(row: &Row) -> bool {
    row.len() >= 5 && row.iter().all(|(_, t)| is_plain_text(t))
}

/// A row that ends a table: a title (one text cell) or a summary label (`Balance:`).
fn ends_table(row: &Row) -> bool {
    match row.first() {
        None => false,
        Some((_, first)) => {
            (row.len() == 1 && parse_number(first).is_none())
                || first.trim_end().ends_with([':', '：'])
        }
    }
}

/// Splits a sheet into its tables and tells what each holds.
pub fn sections(sheet: &Sheet) -> Vec<Section<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sheet.len() {
        if !is_header(&sheet[i]) {
            i += 1;
            continue;
        }
        let header = &sheet[i];
        let mut rows = Vec::new();
        let mut k = i + 1;
        while k < sheet.len() && !is_header(&sheet[k]) && !ends_table(&sheet[k]) {
            if sheet[k].len() >= 2 {
                rows.push((k + 1, &sheet[k]));
            }
            k += 1;
        }
        if let Some(kind) = classify(header, &rows) {
            let mut cols = map_columns(header, layout(kind));
            check_columns(kind, &mut cols, header, &rows);
            out.push(Section {
                kind,
                header_row: i + 1,
                rows,
                cols,
            });
        }
        i = k;
    }
    out
}

fn share(rows: &[(usize, &Row)], f: impl Fn(&Row) -> bool) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    rows.iter().filter(|(_, r)| f(r)).count() as f64 / rows.len() as f64
}

fn times_in(row: &Row) -> usize {
    row.iter().filter(|(_, t)| parse_time(t).is_some()).count()
}

/// At most this many rows, evenly spread over a table, decide what it holds and where its key
/// columns are: shares of a few hundred rows tell as well as shares of all, and testing every cell
/// of a 100,000-row table against every language's words took a quarter of the import.
const SAMPLE: usize = 512;

fn sample<'r, 'a>(rows: &'r [(usize, &'a Row)]) -> impl Iterator<Item = &'r (usize, &'a Row)> {
    let step = rows.len().div_ceil(SAMPLE).max(1);
    rows.iter().step_by(step)
}

fn classify(header: &Row, rows: &[(usize, &Row)]) -> Option<Kind> {
    let header_roles: Vec<Role> = header.iter().flat_map(|(_, t)| roles_of(t)).collect();
    let has = |r: Role| header_roles.contains(&r);
    let data: Vec<(usize, &Row)> = sample(rows)
        .filter(|(_, r)| r.len() >= 4 && r.iter().take(3).any(|(_, t)| is_ticket(t)))
        .copied()
        .collect();
    if data.is_empty() {
        // An empty table: only its header can tell.
        let time_headers = header
            .iter()
            .filter(|(_, t)| roles_of(t).contains(&Role::Time))
            .count();
        return Some(if has(Role::Direction) {
            Kind::Deals
        } else if has(Role::State) || has(Role::Order) {
            if has(Role::MarketPrice) {
                Kind::WorkingOrders
            } else {
                Kind::Orders
            }
        } else if has(Role::Position) || !header_roles.is_empty() {
            if has(Role::MarketPrice) || time_headers == 1 {
                Kind::OpenPositions
            } else {
                Kind::ClosedPositions
            }
        } else {
            match header.len() {
                14 => Kind::Deals,
                13 => Kind::ClosedPositions,
                12 => Kind::OpenPositions,
                11 => Kind::Orders,
                _ => return None,
            }
        });
    }
    let two_times = share(&data, |r| times_in(r) >= 2) >= 0.5;
    if share(&data, |r| r.iter().any(|(_, t)| parse_entry(t).is_some())) >= 0.3 {
        return Some(Kind::Deals);
    }
    if share(&data, |r| r.iter().any(|(_, t)| is_ratio(t))) >= 0.5 {
        return Some(if two_times {
            Kind::Orders
        } else {
            Kind::WorkingOrders
        });
    }
    if share(&data, |r| r.iter().any(|(_, t)| parse_side(t).is_some())) >= 0.5 {
        return Some(if two_times {
            Kind::ClosedPositions
        } else {
            Kind::OpenPositions
        });
    }
    None
}

/// Header words first (the first free role of the layout each word can stand for), then the
/// layout's order for what the words did not name.
fn map_columns(header: &Row, layout: &[Role]) -> HashMap<Role, usize> {
    let mut map: HashMap<Role, usize> = HashMap::new();
    let mut used = vec![false; header.len()];
    for (k, (col, text)) in header.iter().enumerate() {
        let candidates = roles_of(text);
        if let Some(role) = layout
            .iter()
            .find(|r| candidates.contains(r) && !map.contains_key(r))
        {
            map.insert(*role, *col);
            used[k] = true;
        }
    }
    if header.len() == layout.len() {
        for (k, (col, _)) in header.iter().enumerate() {
            if !used[k] && !map.contains_key(&layout[k]) {
                map.insert(layout[k], *col);
            }
        }
    } else {
        // An extra or missing column: unnamed roles take the unnamed columns in layout order.
        let mut free = header
            .iter()
            .enumerate()
            .filter(|(k, _)| !used[*k])
            .map(|(_, (c, _))| *c);
        for role in layout {
            if !map.contains_key(role) {
                match free.next() {
                    Some(c) => {
                        map.insert(*role, c);
                    }
                    None => break,
                }
            }
        }
    }
    map
}

/// The roles a table cannot be read without, and how to recognize their cells.
/// A role and the test its cells must pass.
type Check = (Role, fn(&str) -> bool);

fn checks(kind: Kind) -> Vec<Check> {
    let time: fn(&str) -> bool = |t| parse_time(t).is_some();
    let ticket: fn(&str) -> bool = is_ticket;
    let number: fn(&str) -> bool = |t| !t.trim().is_empty() && parse_number(t).is_some();
    match kind {
        Kind::Deals => vec![
            (Role::Time, time),
            (Role::Deal, ticket),
            (Role::Direction, |t| parse_entry(t).is_some()),
            (Role::Type, |t| parse_deal_type(t).is_some()),
            (Role::Volume, number),
        ],
        Kind::Orders | Kind::WorkingOrders => vec![
            (Role::OpenTime, time),
            (Role::Order, ticket),
            (Role::Type, |t| parse_order_type(t).is_some()),
            (Role::Volume, is_ratio),
        ],
        Kind::ClosedPositions | Kind::OpenPositions => vec![
            (Role::Time, time),
            (Role::Position, ticket),
            (Role::Type, |t| parse_side(t).is_some()),
            (Role::Volume, number),
        ],
    }
}

/// Moves a key column whose cells do not look like its role to the nearest column whose cells do.
fn check_columns(
    kind: Kind,
    cols: &mut HashMap<Role, usize>,
    header: &Row,
    rows: &[(usize, &Row)],
) {
    let data: Vec<&Row> = sample(rows)
        .map(|(_, r)| *r)
        .filter(|r| r.len() >= 4)
        .collect();
    if data.is_empty() {
        return;
    }
    let fits = |col: usize, f: fn(&str) -> bool| {
        let hits = data.iter().filter(|r| f(cell_at(r, col))).count();
        hits * 2 >= data.len() && hits > 0
    };
    let width = header
        .iter()
        .map(|(c, _)| *c + 1)
        .chain(data.iter().flat_map(|r| r.iter().map(|(c, _)| *c + 1)))
        .max()
        .unwrap_or(0);
    for (role, f) in checks(kind) {
        let current = cols.get(&role).copied();
        if current.is_some_and(|c| fits(c, f)) {
            continue;
        }
        let taken: Vec<usize> = checks(kind)
            .iter()
            .filter(|(r, _)| *r != role)
            // Only a column that holds its own role's cells is spoken for.
            .filter_map(|(r, g)| cols.get(r).copied().filter(|c| fits(*c, *g)))
            .collect();
        let near = current.unwrap_or(0);
        let found = (0..width)
            .filter(|c| !taken.contains(c) && fits(*c, f))
            .min_by_key(|c| c.abs_diff(near));
        if let Some(c) = found {
            tracing::debug!(?kind, ?role, from = ?current, to = c, "column moved by its contents");
            cols.insert(role, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Row {
        cells
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.is_empty())
            .map(|(i, t)| (i, (*t).to_owned()))
            .collect()
    }

    #[test]
    fn an_unknown_language_with_an_extra_column_still_reads() {
        let sheet: Sheet = vec![
            row(&[
                "Xa", "Xb", "Xc", "Xd", "Xe", "Xf", "Xg", "Xh", "Xi", "Xj", "Xk", "Xl", "Xm", "Xn",
                "Xo",
            ]),
            row(&[
                "2024.01.02 10:00:00",
                "7",
                "501",
                "EURUSD",
                "buy",
                "in",
                "1",
                "1.1",
                "100",
                "0",
                "0",
                "0",
                "0",
                "10",
                "",
            ]),
        ];
        let secs = sections(&sheet);
        assert_eq!(secs.len(), 1);
        assert_eq!(secs[0].kind, Kind::Deals);
        let r = secs[0].rows[0].1;
        assert_eq!(secs[0].cell(r, Role::Direction), "in");
        assert_eq!(secs[0].cell(r, Role::Type), "buy");
        assert_eq!(secs[0].cell(r, Role::Time), "2024.01.02 10:00:00");
    }
}
