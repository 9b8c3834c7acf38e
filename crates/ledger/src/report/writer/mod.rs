//! Writes a history as the terminal's "Trade History Report": the native `.xlsx` (every XML part
//! UTF-16LE with a BOM, shared strings, directory entries, merged cells, a formula totals row) and
//! the UTF-16LE `.html`, in several UI languages. Importing what this writes must give back the
//! history's positions, which is how the import is tested beyond a handful of real files.

mod words;

use super::text::format_time;
use super::{OpenPositionRow, ReportError};
use crate::record::{History, LedgerDeal};
use hedge_domain::{DealEntry, OrderState, OrderType, PositionId, Side, Volume};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// The terminal's UI language of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locale {
    En,
    Fr,
    De,
    Es,
    Pt,
    It,
    Ru,
    Zh,
    Ja,
    Tr,
    Ar,
}

/// Titles, account labels and the column headers of each table in one language.
pub(super) struct Words {
    pub(super) title: &'static str,
    pub(super) labels: [&'static str; 4], // name, account, company, date
    pub(super) sections: [&'static str; 6], // positions, orders, deals, open positions, working orders, results
    pub(super) hedge: &'static str,
    pub(super) netting: &'static str,
    // time, open time, deal, order, position, symbol, type, direction, volume, price, market price,
    // commission, fee, swap, profit, balance, comment, state
    pub(super) cols: [&'static str; 18],
}

impl Locale {
    pub const ALL: [Locale; 11] = [
        Locale::En,
        Locale::Fr,
        Locale::De,
        Locale::Es,
        Locale::Pt,
        Locale::It,
        Locale::Ru,
        Locale::Zh,
        Locale::Ja,
        Locale::Tr,
        Locale::Ar,
    ];

    fn words(self) -> Words {
        match self {
            Locale::En => words::EN,
            Locale::Fr => words::FR,
            Locale::De => words::DE,
            Locale::Es => words::ES,
            Locale::Pt => words::PT,
            Locale::It => words::IT,
            Locale::Ru => words::RU,
            Locale::Zh => words::ZH,
            Locale::Ja => words::JA,
            Locale::Tr => words::TR,
            Locale::Ar => words::AR,
        }
    }
}

/// How to write a report.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub locale: Locale,
    /// HTML only: an extra hidden column in the deals table, as some terminals write.
    pub hidden_deal_column: bool,
    /// HTML only: start with a byte order mark (the terminal does; some tools strip it).
    pub bom: bool,
    /// HTML only: a stray odd byte at the end, as left by some transfer tools.
    pub stray_byte: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            locale: Locale::En,
            hidden_deal_column: false,
            bom: true,
            stray_byte: false,
        }
    }
}

/// A cell: text (a shared string in xlsx) or a number written as given.
#[derive(Clone, Debug)]
enum Value {
    Text(String),
    Num(String),
    /// A totals cell: the cached sum and the rows it sums.
    Sum(String, usize, usize),
}

#[derive(Clone, Debug, Default)]
struct GridRow {
    cells: Vec<(usize, Value)>,
    /// (first column, last column) merged on this row.
    merges: Vec<(usize, usize)>,
    title: bool,
    deals_table: bool,
}

const WIDTH: usize = 15;

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}
fn num(d: Decimal) -> Value {
    Value::Num(d.normalize().to_string())
}
fn money(d: Decimal) -> Value {
    Value::Num(format!("{:.2}", d.round_dp(2)))
}

/// What the terminal's report summary says about a history: its open positions (per position on
/// hedging accounts, net per symbol on netting ones) and, on hedging accounts, its closed positions.
pub fn summary(history: &History) -> (Vec<OpenPositionRow>, Option<usize>) {
    let (open, closed) = positions(history);
    let hedging = !history.account.margin_mode.is_netting();
    let rows = open
        .into_iter()
        .map(|p| OpenPositionRow {
            position: PositionId(p.id),
            symbol: p.symbol,
            side: p.side,
            volume: Volume(p.volume),
        })
        .collect();
    (rows, hedging.then_some(closed.len()))
}

#[derive(Clone, Debug)]
struct Pos {
    id: u64,
    symbol: String,
    side: Side,
    open_time: i64,
    open_price: Decimal,
    volume: Decimal,
    total_in: Decimal,
    close_time: i64,
    close_price: Decimal,
    commission: Decimal,
    swap: Decimal,
    profit: Decimal,
}

fn sorted_deals(history: &History) -> Vec<&LedgerDeal> {
    let mut deals: Vec<&LedgerDeal> = history.deals.iter().collect();
    deals.sort_by_key(|d| (d.time_msc, d.ticket.get()));
    deals
}

/// Positions as the terminal books them: by position id on hedging accounts, one net position per
/// symbol on netting accounts (id = the order that opened it from flat or reversed it).
fn positions(history: &History) -> (Vec<Pos>, Vec<Pos>) {
    let hedging = !history.account.margin_mode.is_netting();
    let mut open: BTreeMap<String, Pos> = BTreeMap::new();
    let mut closed = Vec::new();
    for d in sorted_deals(history) {
        let Some(side) = d.deal_type.side() else {
            continue;
        };
        let key = if hedging {
            d.position_id.get().to_string()
        } else {
            d.symbol.clone()
        };
        let v = d.volume.0;
        let p = open.entry(key.clone()).or_insert_with(|| Pos {
            id: if hedging {
                d.position_id.get()
            } else {
                d.order.get()
            },
            symbol: d.symbol.clone(),
            side,
            open_time: d.time_msc,
            open_price: d.price.0,
            volume: Decimal::ZERO,
            total_in: Decimal::ZERO,
            close_time: 0,
            close_price: Decimal::ZERO,
            commission: Decimal::ZERO,
            swap: Decimal::ZERO,
            profit: Decimal::ZERO,
        });
        p.commission += d.commission.0;
        p.swap += d.swap.0;
        p.profit += d.profit.0;
        if side == p.side {
            p.volume += v;
            p.total_in += v;
            continue;
        }
        p.close_time = d.time_msc;
        p.close_price = d.price.0;
        if v < p.volume {
            p.volume -= v;
            continue;
        }
        let rest = v - p.volume;
        p.volume = Decimal::ZERO;
        if let Some(done) = open.remove(&key) {
            closed.push(done);
        }
        if rest > Decimal::ZERO && !hedging {
            open.insert(
                key,
                Pos {
                    id: d.order.get(),
                    symbol: d.symbol.clone(),
                    side,
                    open_time: d.time_msc,
                    open_price: d.price.0,
                    volume: rest,
                    total_in: rest,
                    close_time: 0,
                    close_price: Decimal::ZERO,
                    commission: Decimal::ZERO,
                    swap: Decimal::ZERO,
                    profit: Decimal::ZERO,
                },
            );
        }
    }
    (open.into_values().collect(), closed)
}

fn side_word(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn order_type_word(t: OrderType) -> &'static str {
    match t {
        OrderType::Buy => "buy",
        OrderType::Sell => "sell",
        OrderType::BuyLimit => "buy limit",
        OrderType::SellLimit => "sell limit",
        OrderType::BuyStop => "buy stop",
        OrderType::SellStop => "sell stop",
        OrderType::BuyStopLimit => "buy stop limit",
        OrderType::SellStopLimit => "sell stop limit",
        OrderType::CloseBy => "close by",
    }
}

fn state_word(s: OrderState) -> &'static str {
    match s {
        OrderState::Canceled => "canceled",
        OrderState::Expired => "expired",
        OrderState::Rejected => "rejected",
        OrderState::Partial => "partial",
        OrderState::Started => "started",
        OrderState::Placed => "placed",
        _ => "filled",
    }
}

fn entry_word(e: DealEntry) -> &'static str {
    match e {
        DealEntry::In => "in",
        DealEntry::Out => "out",
        DealEntry::InOut => "in/out",
        DealEntry::OutBy => "out by",
    }
}

fn header(cols: &[&str]) -> GridRow {
    GridRow {
        cells: cols
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .map(|(i, c)| (i, text(*c)))
            .collect(),
        ..GridRow::default()
    }
}

fn title(s: &str) -> GridRow {
    GridRow {
        cells: vec![(0, text(s))],
        merges: vec![(0, WIDTH - 1)],
        title: true,
        deals_table: false,
    }
}

fn label_row(label: &str, value: String) -> GridRow {
    GridRow {
        cells: vec![(0, text(label)), (3, text(value))],
        merges: vec![(0, 2), (3, WIDTH - 1)],
        ..GridRow::default()
    }
}

/// The whole report as rows, in the terminal's section order.
fn grid(history: &History, locale: Locale) -> Vec<GridRow> {
    let w = locale.words();
    let c = &w.cols;
    let hedging = !history.account.margin_mode.is_netting();
    let mut rows = vec![title(w.title)];
    account_rows(history, &w, hedging, &mut rows);
    let (open, closed) = positions(history);
    if hedging {
        rows.push(title(w.sections[0]));
        rows.push(header(&[
            c[0], c[4], c[5], c[6], c[8], c[9], "S / L", "T / P", c[0], c[9], c[11], c[13], c[14],
        ]));
        rows.extend(closed.iter().map(closed_position_row));
    }
    let (done, working): (Vec<_>, Vec<_>) = history.orders.iter().partition(|o| !o.is_pending());
    rows.push(title(w.sections[1]));
    let mut h = header(&[
        c[1], c[3], c[5], c[6], c[8], c[9], "S / L", "T / P", c[0], c[17], "", c[16],
    ]);
    h.merges = vec![(9, 10), (11, 14)];
    rows.push(h);
    for o in &done {
        let filled = o.volume_initial.0 - o.volume_current.0;
        rows.push(order_row(
            o,
            filled,
            Some(format_time(o.time_done_msc)),
            state_word(o.state),
        ));
    }
    let balance = deal_rows(history, &w, &mut rows);
    if !open.is_empty() {
        rows.push(title(w.sections[3]));
        rows.push(header(&[
            c[0], c[4], c[5], c[6], c[8], c[9], "S / L", "T / P", c[10], c[13], c[14], c[16],
        ]));
        rows.extend(open.iter().map(open_position_row));
    }
    if !working.is_empty() {
        rows.push(title(w.sections[4]));
        rows.push(header(&[
            c[1], c[3], c[5], c[6], c[8], c[9], "S / L", "T / P", c[10], c[17], "", c[16],
        ]));
        for o in &working {
            rows.push(order_row(o, Decimal::ZERO, None, state_word(o.state)));
        }
    }
    rows.push(label_row(&format!("{}:", c[15]), format!("{balance:.6}")));
    rows.push(title(w.sections[5]));
    rows
}

/// The account block under the title: name, account, company, date.
fn account_rows(history: &History, w: &Words, hedging: bool, rows: &mut Vec<GridRow>) {
    let a = &history.account;
    let currency = if a.currency.is_empty() {
        "USD"
    } else {
        &a.currency
    };
    let mode = if hedging { w.hedge } else { w.netting };
    rows.push(label_row(w.labels[0], "Synthetic Trader".into()));
    rows.push(label_row(
        w.labels[1],
        format!("{} ({currency}, Hedge-Demo, demo, {mode})", a.login.get()),
    ));
    rows.push(label_row(w.labels[2], "Hedge Synthetic Ltd".into()));
    rows.push(label_row(
        w.labels[3],
        format_time(last_time(history))[..16].to_owned(),
    ));
}

/// The cells a position row starts with: open time, ticket, symbol, side, `volume`, open price.
fn position_cells(p: &Pos, volume: Decimal) -> Vec<(usize, Value)> {
    vec![
        (0, text(format_time(p.open_time))),
        (1, Value::Num(p.id.to_string())),
        (2, text(&p.symbol)),
        (3, text(side_word(p.side))),
        (4, text(volume.normalize().to_string())),
        (5, num(p.open_price)),
    ]
}

fn closed_position_row(p: &Pos) -> GridRow {
    let mut cells = position_cells(p, p.total_in);
    cells.extend([
        (8, text(format_time(p.close_time))),
        (9, num(p.close_price)),
        (10, money(p.commission)),
        (11, money(p.swap)),
        (12, money(p.profit)),
    ]);
    GridRow {
        cells,
        merges: vec![(12, 14)],
        ..GridRow::default()
    }
}

fn open_position_row(p: &Pos) -> GridRow {
    let mut cells = position_cells(p, p.volume);
    cells.extend([
        (8, num(p.open_price)),
        (9, money(Decimal::ZERO)),
        (10, money(Decimal::ZERO)),
    ]);
    GridRow {
        cells,
        ..GridRow::default()
    }
}

/// The deals section with its running balance and the totals row (sums over the deal rows);
/// returns the final balance.
fn deal_rows(history: &History, w: &Words, rows: &mut Vec<GridRow>) -> Decimal {
    let c = &w.cols;
    rows.push(title(w.sections[2]));
    let mut h = header(&[
        c[0], c[2], c[5], c[6], c[7], c[8], c[9], c[3], c[11], c[12], c[13], c[14], c[15], c[16],
    ]);
    h.deals_table = true;
    rows.push(h);
    let first_row = rows.len() + 1;
    let (mut balance, mut commission, mut swap, mut profit) =
        (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for d in sorted_deals(history) {
        balance += d.profit.0 + d.commission.0 + d.swap.0;
        commission += d.commission.0;
        swap += d.swap.0;
        profit += d.profit.0;
        rows.push(deal_row(d, balance));
    }
    let last_row = rows.len();
    rows.push(GridRow {
        cells: vec![
            (
                8,
                Value::Sum(format!("{:.6}", commission), first_row, last_row),
            ),
            (9, Value::Sum("0.000000".into(), first_row, last_row)),
            (10, Value::Sum(format!("{:.6}", swap), first_row, last_row)),
            (11, money(profit)),
            (12, money(balance)),
        ],
        deals_table: true,
        ..GridRow::default()
    });
    balance
}

fn last_time(history: &History) -> i64 {
    history.deals.iter().map(|d| d.time_msc).max().unwrap_or(0)
}

fn order_row(
    o: &crate::record::LedgerOrder,
    filled: Decimal,
    done: Option<String>,
    state: &str,
) -> GridRow {
    let price = if o.price_open.0.is_zero() {
        text("market")
    } else {
        num(o.price_open.0)
    };
    let mut cells = vec![
        (0, text(format_time(o.time_setup_msc))),
        (1, Value::Num(o.ticket.get().to_string())),
        (2, text(&o.symbol)),
        (3, text(order_type_word(o.order_type))),
        (
            4,
            text(format!(
                "{} / {}",
                o.volume_initial.0.normalize(),
                filled.normalize()
            )),
        ),
        (5, price),
    ];
    match done {
        Some(t) => cells.push((8, text(t))),
        None => cells.push((8, num(o.price_open.0))),
    }
    cells.push((9, text(state)));
    if !o.comment.is_empty() {
        cells.push((11, text(&o.comment)));
    }
    GridRow {
        cells,
        merges: vec![(9, 10), (11, 14)],
        ..GridRow::default()
    }
}

fn deal_row(d: &LedgerDeal, balance: Decimal) -> GridRow {
    let trade = d.deal_type.side().is_some();
    let mut cells = vec![
        (0, text(format_time(d.time_msc))),
        (1, Value::Num(d.ticket.get().to_string())),
    ];
    if trade {
        cells.push((2, text(&d.symbol)));
        cells.push((3, text(side_word(d.deal_type.side().unwrap_or(Side::Buy)))));
        cells.push((4, text(entry_word(d.entry))));
        cells.push((5, text(d.volume.0.normalize().to_string())));
        cells.push((6, num(d.price.0)));
        cells.push((7, Value::Num(d.order.get().to_string())));
    } else {
        cells.push((3, text("balance")));
    }
    cells.extend([
        (8, money(d.commission.0)),
        (9, money(Decimal::ZERO)),
        (10, money(d.swap.0)),
        (11, money(d.profit.0)),
        (12, money(balance)),
    ]);
    if !d.comment.is_empty() {
        cells.push((13, text(&d.comment)));
    }
    GridRow {
        cells,
        deals_table: true,
        ..GridRow::default()
    }
}

fn col_name(mut c: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// UTF-16LE with a BOM, as the terminal writes every part.
fn utf16(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2 + 2);
    out.extend_from_slice(&[0xFF, 0xFE]);
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

const XML_DECL: &str = "<?xml version=\"1.0\"?>\r\n";
const NS_MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const NS_REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const NS_PKG_REL: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
const CT: &str = "application/vnd.openxmlformats-officedocument";

fn sheet_xml(rows: &[GridRow], strings: &mut Vec<String>) -> (String, Vec<String>) {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut xml = String::with_capacity(rows.len() * 700);
    let mut formulas = Vec::new();
    let mut merges = Vec::new();
    xml.push_str(XML_DECL);
    xml.push_str(&format!(
        "<worksheet xmlns=\"{NS_MAIN}\"\r\n           xmlns:r=\"{NS_REL}\">\r\n <dimension ref=\"A1:{}{}\"/>\r\n <sheetViews>\r\n  <sheetView tabSelected=\"1\" workbookViewId=\"0\"/>\r\n </sheetViews>\r\n <sheetFormatPr defaultRowHeight=\"15\" customHeight=\"1\"/>\r\n <cols>\r\n",
        col_name(WIDTH), rows.len()
    ));
    for c in 0..WIDTH {
        let width = if c == 0 || c == 8 { 18 } else { 10 };
        xml.push_str(&format!(
            "  <col min=\"{0}\" max=\"{0}\" width=\"{width}.0000\" bestFit=\"1\" customWidth=\"1\"/>\r\n",
            c + 1
        ));
    }
    xml.push_str(" </cols>\r\n <sheetData>\r\n");
    for (i, row) in rows.iter().enumerate() {
        let r = i + 1;
        let height = if row.title { "25.0000" } else { "15.0000" };
        xml.push_str(&format!(
            "  <row r=\"{r}\" spans=\"1:{WIDTH}\" ht=\"{height}\" customHeight=\"1\">\r\n"
        ));
        let style = if row.title { 1 } else { 2 };
        for (c, v) in &row.cells {
            let at = format!("{}{r}", col_name(*c));
            match v {
                Value::Text(s) => {
                    let k = *index.entry(s.clone()).or_insert_with(|| {
                        strings.push(s.clone());
                        strings.len() - 1
                    });
                    xml.push_str(&format!(
                        "   <c r=\"{at}\" s=\"{style}\" t=\"s\"><v>{k}</v></c>\r\n"
                    ));
                }
                Value::Num(n) => {
                    xml.push_str(&format!("   <c r=\"{at}\" s=\"3\"><v>{n}</v></c>\r\n"));
                }
                Value::Sum(n, a, b) => {
                    let col = col_name(*c);
                    xml.push_str(&format!(
                        "   <c r=\"{at}\" s=\"3\"><f>SUM(Sheet1!{col}{a}:{col}{b})</f><v>{n}</v></c>\r\n"
                    ));
                    formulas.push(at.clone());
                }
            }
        }
        xml.push_str("  </row>\r\n");
        for (a, b) in &row.merges {
            merges.push(format!("{}{r}:{}{r}", col_name(*a), col_name(*b)));
        }
    }
    xml.push_str(" </sheetData>\r\n");
    if !merges.is_empty() {
        xml.push_str(&format!(" <mergeCells count=\"{}\">\r\n", merges.len()));
        for m in &merges {
            xml.push_str(&format!("  <mergeCell ref=\"{m}\"/>\r\n"));
        }
        xml.push_str(" </mergeCells>\r\n");
    }
    xml.push_str(" <pageMargins left=\"0.7\" right=\"0.7\" top=\"0.75\" bottom=\"0.75\" header=\"0.3\" footer=\"0.3\"/>\r\n</worksheet>\r\n");
    (xml, formulas)
}

fn shared_strings_xml(strings: &[String]) -> String {
    let mut xml = String::with_capacity(strings.len() * 40 + 200);
    xml.push_str(XML_DECL);
    xml.push_str(&format!(
        "<sst xmlns=\"{NS_MAIN}\" count=\"{0}\" uniqueCount=\"{0}\">\r\n",
        strings.len()
    ));
    for s in strings {
        xml.push_str(" <si><t>");
        xml.push_str(&escape(s));
        xml.push_str("</t></si>\r\n");
    }
    xml.push_str("</sst>\r\n");
    xml
}

fn package_parts(login: u64) -> Vec<(&'static str, String)> {
    let d = XML_DECL;
    vec![
        ("[Content_Types].xml", format!(
            "{d} <Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\r\n  <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\r\n  <Default Extension=\"xml\" ContentType=\"application/xml\"/>\r\n  <Override PartName=\"/docProps/app.xml\" ContentType=\"{CT}.extended-properties+xml\"/>\r\n  <Override PartName=\"/docProps/core.xml\" ContentType=\"application/vnd.openxmlformats-package.core-properties+xml\"/>\r\n  <Override PartName=\"/xl/sharedStrings.xml\" ContentType=\"{CT}.spreadsheetml.sharedStrings+xml\"/>\r\n  <Override PartName=\"/xl/styles.xml\" ContentType=\"{CT}.spreadsheetml.styles+xml\"/>\r\n  <Override PartName=\"/xl/calcChain.xml\" ContentType=\"{CT}.spreadsheetml.calcChain+xml\"/>\r\n  <Override PartName=\"/xl/workbook.xml\" ContentType=\"{CT}.spreadsheetml.sheet.main+xml\"/>\r\n  <Override PartName=\"/xl/worksheets/sheet1.xml\" ContentType=\"{CT}.spreadsheetml.worksheet+xml\"/>\r\n </Types>\r\n"
        )),
        ("_rels/.rels", format!(
            "{d}<Relationships xmlns=\"{NS_PKG_REL}\">\r\n <Relationship Id=\"rId3\" Type=\"{NS_REL}/extended-properties\" Target=\"docProps/app.xml\"/>\r\n <Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties\" Target=\"docProps/core.xml\"/>\r\n <Relationship Id=\"rId1\" Type=\"{NS_REL}/officeDocument\" Target=\"xl/workbook.xml\"/>\r\n</Relationships>\r\n"
        )),
        ("docProps/app.xml", format!(
            "{d}<Properties xmlns=\"http://schemas.openxmlformats.org/officeDocument/2006/extended-properties\">\r\n <DocSecurity>0</DocSecurity>\r\n <ScaleCrop>false</ScaleCrop>\r\n <AppVersion>12.0000</AppVersion>\r\n</Properties>\r\n"
        )),
        ("docProps/core.xml", format!(
            "{d}<cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\"\r\n                   xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\r\n <dc:title>MetaTrader 5</dc:title>\r\n <dc:subject>{login}:Synthetic Trader</dc:subject>\r\n <cp:category>Reports</cp:category>\r\n</cp:coreProperties>\r\n"
        )),
        ("xl/workbook.xml", format!(
            "{d}<workbook xmlns=\"{NS_MAIN}\"\r\n          xmlns:r=\"{NS_REL}\">\r\n <sheets>\r\n  <sheet name=\"Sheet1\" sheetId=\"1\" r:id=\"rId1\"/>\r\n </sheets>\r\n</workbook>\r\n"
        )),
        ("xl/_rels/workbook.xml.rels", format!(
            "{d}<Relationships xmlns=\"{NS_PKG_REL}\">\r\n <Relationship Id=\"rId1\" Type=\"{NS_REL}/worksheet\" Target=\"worksheets/sheet1.xml\"/>\r\n <Relationship Id=\"rId2\" Type=\"{NS_REL}/sharedStrings\" Target=\"sharedStrings.xml\"/>\r\n <Relationship Id=\"rId3\" Type=\"{NS_REL}/styles\" Target=\"styles.xml\"/>\r\n <Relationship Id=\"rId5\" Type=\"{NS_REL}/calcChain\" Target=\"calcChain.xml\"/>\r\n</Relationships>\r\n"
        )),
        ("xl/styles.xml", format!(
            "{d}<styleSheet xmlns=\"{NS_MAIN}\">\r\n <numFmts count=\"1\">\r\n  <numFmt numFmtId=\"165\" formatCode=\"# ##0.00;-# ##0.00;0.00;\"/>\r\n </numFmts>\r\n <fonts count=\"2\">\r\n  <font><sz val=\"8\"/><name val=\"Tahoma\"/></font>\r\n  <font><b/><sz val=\"10\"/><name val=\"Tahoma\"/></font>\r\n </fonts>\r\n <fills count=\"1\"><fill><patternFill patternType=\"none\"/></fill></fills>\r\n <borders count=\"1\"><border/></borders>\r\n <cellStyleXfs count=\"1\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\"/></cellStyleXfs>\r\n <cellXfs count=\"4\">\r\n  <xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\"/>\r\n  <xf numFmtId=\"0\" fontId=\"1\" fillId=\"0\" borderId=\"0\" xfId=\"0\"/>\r\n  <xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\"/>\r\n  <xf numFmtId=\"165\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyNumberFormat=\"1\"/>\r\n </cellXfs>\r\n</styleSheet>\r\n"
        )),
    ]
}

/// The report as the terminal's native `.xlsx`.
pub fn write_xlsx(history: &History, opts: &WriteOptions) -> Result<Vec<u8>, ReportError> {
    let rows = grid(history, opts.locale);
    let mut strings = Vec::new();
    let (sheet, formulas) = sheet_xml(&rows, &mut strings);
    drop(rows);
    let mut calc = String::from(XML_DECL);
    calc.push_str(&format!(" <calcChain xmlns=\"{NS_MAIN}\">\r\n"));
    for (i, f) in formulas.iter().enumerate() {
        let sheet_attr = if i == 0 { " i=\"1\"" } else { "" };
        calc.push_str(&format!("  <c r=\"{f}\"{sheet_attr}/>\r\n"));
    }
    calc.push_str(" </calcChain>\r\n");
    let zip_err = |e: zip::result::ZipError| ReportError::Xlsx(e.to_string());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    let parts = package_parts(history.account.login.get());
    let mut all: Vec<(&str, String)> = parts;
    all.push(("xl/calcChain.xml", calc));
    all.push(("xl/sharedStrings.xml", shared_strings_xml(&strings)));
    all.push(("xl/worksheets/sheet1.xml", sheet));
    // The terminal lists each folder as its own entry before its files.
    let mut dirs_done: Vec<String> = Vec::new();
    for (name, xml) in all {
        if let Some((dir, _)) = name.rsplit_once('/') {
            let dir = format!("{dir}/");
            if !dirs_done.contains(&dir) {
                zip.add_directory(dir.as_str(), options).map_err(zip_err)?;
                dirs_done.push(dir);
            }
        }
        zip.start_file(name, options).map_err(zip_err)?;
        zip.write_all(&utf16(&xml))?;
    }
    Ok(zip.finish().map_err(zip_err)?.into_inner())
}

/// The report as the terminal's UTF-16LE `.html`: one table, titles and merged cells as colspans.
pub fn write_html(history: &History, opts: &WriteOptions) -> Vec<u8> {
    let rows = grid(history, opts.locale);
    let mut html = String::with_capacity(rows.len() * 400);
    let w = opts.locale.words();
    html.push_str(&format!(
        "<!DOCTYPE html>\r\n<html>\r\n<head>\r\n<title>{}</title>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-16\">\r\n<style type=\"text/css\">\r\ntd {{ font: 8pt Tahoma,Arial; }}\r\n.hidden {{ display: none; }}\r\n</style>\r\n</head>\r\n<body>\r\n<div align=\"center\">\r\n<table cellspacing=\"1\" cellpadding=\"3\" border=\"0\">\r\n",
        escape(w.title)
    ));
    for row in &rows {
        html.push_str(if row.title {
            "<tr align=\"center\">\r\n"
        } else {
            "<tr bgcolor=\"#FFFFFF\" align=\"right\">\r\n"
        });
        let mut col = 0;
        let mut cells = row.cells.iter().peekable();
        let mut first = true;
        while col < WIDTH {
            if first && row.deals_table && opts.hidden_deal_column {
                html.push_str("<td class=\"hidden\">0</td>");
            }
            first = false;
            let span = row
                .merges
                .iter()
                .find(|(a, _)| *a == col)
                .map(|(a, b)| b - a + 1)
                .unwrap_or(1);
            let value = match cells.peek() {
                Some((c, _)) if *c == col => cells.next().map(|(_, v)| v),
                _ => None,
            };
            let body = match value {
                Some(Value::Text(s)) => escape(s),
                Some(Value::Num(n)) | Some(Value::Sum(n, _, _)) => nbsp_thousands(n),
                None => String::new(),
            };
            let tag = if row.title { "th" } else { "td" };
            let body = if row.title {
                format!("<div style=\"font: 10pt Tahoma\"><b>{body}</b></div>")
            } else {
                body
            };
            if span > 1 {
                html.push_str(&format!("<{tag} colspan=\"{span}\">{body}</{tag}>"));
            } else {
                html.push_str(&format!("<{tag}>{body}</{tag}>"));
            }
            col += span;
        }
        html.push_str("\r\n</tr>\r\n");
    }
    html.push_str("</table>\r\n</div>\r\n</body>\r\n</html>");
    let mut bytes = utf16(&html);
    if !opts.bom {
        bytes.drain(..2);
    }
    if opts.stray_byte {
        bytes.push(0x0A);
    }
    bytes
}

/// `12345.67` as `12&nbsp;345.67`, the way the terminal groups digits in HTML.
fn nbsp_thousands(n: &str) -> String {
    let (sign, rest) = n.strip_prefix('-').map(|r| ("-", r)).unwrap_or(("", n));
    let (int, frac) = rest
        .split_once('.')
        .map(|(a, b)| (a, Some(b)))
        .unwrap_or((rest, None));
    // Tickets and volumes are not grouped, only amounts and prices.
    if frac.is_none()
        || int.len() <= 3
        || int.len() > 12
        || !int.bytes().all(|b| b.is_ascii_digit())
    {
        return n.to_owned();
    }
    let mut out = String::from(sign);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push_str("&nbsp;");
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}
