//! The first worksheet of an `.xlsx` package, read straight from its XML parts.
//!
//! MT5 writes every part of the package as UTF-16LE with a BOM, which general spreadsheet readers
//! refuse; a spreadsheet program that re-saves the file writes UTF-8 with inline strings instead.
//! Each part is decoded by its own BOM / zero-byte pattern while it is inflated, and the sheet is
//! read as it streams, so neither form needs its text whole in memory.

use super::text::format_serial;
use super::utf8_stream::Utf8Stream;
use super::{ReportError, Row, Sheet};
use quick_xml::events::{BytesStart, Event};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read};

mod scan;

type Archive<'a> = zip::ZipArchive<std::io::Cursor<&'a [u8]>>;

fn xlsx_err(what: impl std::fmt::Display) -> ReportError {
    ReportError::Xlsx(what.to_string())
}

/// Reads the first worksheet of an `.xlsx` file as rows of (column index, text) cells.
pub fn read_xlsx(bytes: &[u8]) -> Result<Sheet, ReportError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| xlsx_err(format!("not a zip package ({e})")))?;
    let names: HashMap<String, String> = zip
        .file_names()
        .map(|n| (n.trim_start_matches('/').to_ascii_lowercase(), n.to_owned()))
        .collect();
    let rels = match read_part(&mut zip, &names, "xl/_rels/workbook.xml.rels")? {
        Some(x) => relationships(&x)?,
        None => HashMap::new(),
    };
    let sheet_path = match read_part(&mut zip, &names, "xl/workbook.xml")? {
        Some(x) => first_sheet_target(&x)?.and_then(|id| rels.get(&id).cloned()),
        None => None,
    }
    .map(|t| resolve(&t))
    .or_else(|| {
        let mut sheets: Vec<&String> = names
            .keys()
            .filter(|n| n.starts_with("xl/worksheets/") && n.ends_with(".xml"))
            .collect();
        sheets.sort();
        sheets.first().map(|s| s.to_string())
    })
    .ok_or_else(|| xlsx_err("the package has no worksheet"))?;
    let by_type = |suffix: &str, default: &str| {
        rels.iter()
            .find(|(k, _)| k.starts_with("type:") && k.ends_with(suffix))
            .map(|(_, t)| resolve(t))
            .unwrap_or_else(|| default.to_owned())
    };
    let strings = match open_part(
        &mut zip,
        &names,
        &by_type("/sharedStrings", "xl/sharedStrings.xml"),
    )? {
        Some(part) => shared_strings(part)?,
        None => SharedStrings::default(),
    };
    let dates = match read_part(&mut zip, &names, &by_type("/styles", "xl/styles.xml"))? {
        Some(x) => date_styles(&x)?,
        None => HashSet::new(),
    };
    let missing = || xlsx_err(format!("the worksheet {sheet_path} is missing"));
    let part = open_part(&mut zip, &names, &sheet_path)?.ok_or_else(missing)?;
    if let Some(sheet) = scan::scan_sheet(part, &strings, &dates)? {
        return Ok(sheet);
    }
    // XML the fast reader leaves to the full parser (a DOCTYPE, for one): read it again.
    let part = open_part(&mut zip, &names, &sheet_path)?.ok_or_else(missing)?;
    parse_sheet(part, &strings, &dates)
}

/// A part's target relative to `xl/`, or absolute from the package root.
fn resolve(target: &str) -> String {
    let t = target.replace('\\', "/");
    let path = match t.strip_prefix('/') {
        Some(abs) => abs.to_owned(),
        None => format!("xl/{t}"),
    };
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            ".." => {
                out.pop();
            }
            "." | "" => {}
            s => out.push(s),
        }
    }
    out.join("/").to_ascii_lowercase()
}

/// One part, inflated and converted to UTF-8 as it is read.
fn open_part<'z>(
    zip: &'z mut Archive<'_>,
    names: &HashMap<String, String>,
    path: &str,
) -> Result<Option<Utf8Stream<zip::read::ZipFile<'z>>>, ReportError> {
    let Some(name) = names.get(&path.to_ascii_lowercase()) else {
        return Ok(None);
    };
    let file = zip
        .by_name(name)
        .map_err(|e| xlsx_err(format!("{path}: {e}")))?;
    Ok(Some(Utf8Stream::new(file)?))
}

/// A small part as text; invalid UTF-8 in a part that claims it becomes U+FFFD.
fn read_part(
    zip: &mut Archive<'_>,
    names: &HashMap<String, String>,
    path: &str,
) -> Result<Option<String>, ReportError> {
    let Some(mut part) = open_part(zip, names, path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    part.read_to_end(&mut bytes)?;
    Ok(Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, ReportError> {
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(xlsx_err)?;
        if a.key.as_ref() == name || a.key.local_name().as_ref() == name {
            return Ok(Some(a.unescape_value().map_err(xlsx_err)?.into_owned()));
        }
    }
    Ok(None)
}

/// `Id → Target`, plus `type:<Type> → Target` to find parts by relationship type.
fn relationships(xml: &str) -> Result<HashMap<String, String>, ReportError> {
    let mut map = HashMap::new();
    let mut r = quick_xml::Reader::from_str(xml);
    loop {
        match r.read_event().map_err(xlsx_err)? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"Relationship" => {
                if let (Some(id), Some(target)) = (attr(&e, b"Id")?, attr(&e, b"Target")?) {
                    if let Some(ty) = attr(&e, b"Type")? {
                        map.insert(format!("type:{ty}"), target.clone());
                    }
                    map.insert(id, target);
                }
            }
            Event::Eof => return Ok(map),
            _ => {}
        }
    }
}

fn first_sheet_target(xml: &str) -> Result<Option<String>, ReportError> {
    let mut r = quick_xml::Reader::from_str(xml);
    loop {
        match r.read_event().map_err(xlsx_err)? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"sheet" => {
                return attr(&e, b"id");
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// The shared string table as one text and the end of each string in it: one allocation for a
/// table of hundreds of thousands of strings, and only the cells kept get a copy of theirs.
#[derive(Default)]
struct SharedStrings {
    text: String,
    ends: Vec<usize>,
}

impl SharedStrings {
    fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1],
        };
        self.text.get(start..end)
    }

    #[cfg(test)]
    fn of(strings: &[&str]) -> Self {
        let mut table = SharedStrings::default();
        for s in strings {
            table.text.push_str(s);
            table.ends.push(table.text.len());
        }
        table
    }
}

/// Reads the shared string table; rich-text runs are joined, phonetic runs skipped.
fn shared_strings(part: impl BufRead) -> Result<SharedStrings, ReportError> {
    let mut table = SharedStrings::default();
    let mut r = quick_xml::Reader::from_reader(part);
    let mut buf = Vec::new();
    let mut in_si = false;
    let mut in_t = false;
    let mut in_phonetic = false;
    loop {
        match r.read_event_into(&mut buf).map_err(xlsx_err)? {
            Event::Start(e) => match e.local_name().as_ref() {
                b"si" => in_si = true,
                b"t" => in_t = true,
                b"rPh" => in_phonetic = true,
                _ => {}
            },
            Event::Empty(e) if e.local_name().as_ref() == b"si" => {
                table.ends.push(table.text.len())
            }
            Event::Text(t) if in_si && in_t && !in_phonetic => {
                table.text.push_str(&t.unescape().map_err(xlsx_err)?);
            }
            Event::CData(t) if in_si && in_t && !in_phonetic => {
                table.text.push_str(&String::from_utf8_lossy(&t));
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"si" => {
                    in_si = false;
                    table.ends.push(table.text.len());
                }
                b"t" => in_t = false,
                b"rPh" => in_phonetic = false,
                _ => {}
            },
            Event::Eof => return Ok(table),
            _ => {}
        }
        buf.clear();
    }
}

/// Indexes of cell formats that show a date, so a re-saved report whose times became real dates
/// still reads as MT5's time text.
fn date_styles(xml: &str) -> Result<HashSet<usize>, ReportError> {
    let mut custom: HashMap<u32, bool> = HashMap::new();
    let mut dates = HashSet::new();
    let mut r = quick_xml::Reader::from_str(xml);
    let mut in_xfs = false;
    let mut index = 0usize;
    loop {
        match r.read_event().map_err(xlsx_err)? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"numFmt" => {
                let id = attr(&e, b"numFmtId")?.and_then(|v| v.parse().ok());
                let code = attr(&e, b"formatCode")?.unwrap_or_default();
                if let Some(id) = id {
                    custom.insert(id, is_date_format(&code));
                }
            }
            Event::Start(e) if e.local_name().as_ref() == b"cellXfs" => in_xfs = true,
            Event::End(e) if e.local_name().as_ref() == b"cellXfs" => in_xfs = false,
            Event::Start(e) | Event::Empty(e) if in_xfs && e.local_name().as_ref() == b"xf" => {
                let id: u32 = attr(&e, b"numFmtId")?
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let is_date = custom
                    .get(&id)
                    .copied()
                    .unwrap_or((14..=22).contains(&id) || (45..=47).contains(&id));
                if is_date {
                    dates.insert(index);
                }
                index += 1;
            }
            Event::Eof => return Ok(dates),
            _ => {}
        }
    }
}

fn is_date_format(code: &str) -> bool {
    let mut quoted = false;
    let mut bracket = false;
    for c in code.chars() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => bracket = true,
            ']' if !quoted => bracket = false,
            'y' | 'Y' | 'd' | 'D' | 'h' | 'H' | 's' | 'S' if !quoted && !bracket => return true,
            _ => {}
        }
    }
    false
}

/// `B12` → (column 1, row 12); either part may be missing.
fn cell_ref(r: &[u8]) -> (Option<usize>, Option<usize>) {
    let letters = r.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let col = (letters > 0).then(|| {
        r[..letters].iter().fold(0usize, |acc, b| {
            acc.saturating_mul(26)
                .saturating_add((b.to_ascii_uppercase() - b'A') as usize + 1)
        }) - 1
    });
    (col, number(&r[letters..]))
}

/// Digits only (attribute values such as row numbers and style indexes).
fn number(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |acc, b| acc * 10 + (b - b'0') as usize))
}

/// A cell's `t` attribute.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum CellKind {
    #[default]
    Number,
    Shared,
    Bool,
    Error,
    Text,
}

#[derive(Default)]
struct CellState {
    col: usize,
    kind: CellKind,
    style: usize,
    has_value: bool,
}

/// The cell's column (or the next one), kind and style, read from the raw attribute bytes: this
/// runs for every cell of the sheet, so nothing is allocated.
fn cell_start(e: &BytesStart<'_>, next_col: usize) -> Result<CellState, ReportError> {
    let mut cell = CellState {
        col: next_col,
        ..CellState::default()
    };
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(xlsx_err)?;
        match a.key.local_name().as_ref() {
            b"r" => cell.col = cell_ref(&a.value).0.unwrap_or(next_col),
            b"s" => cell.style = number(&a.value).unwrap_or(0),
            b"t" => cell.kind = cell_kind(&a.value),
            _ => {}
        }
    }
    Ok(cell)
}

/// A cell's `t` attribute.
fn cell_kind(t: &[u8]) -> CellKind {
    match t {
        b"n" => CellKind::Number,
        b"s" => CellKind::Shared,
        b"b" => CellKind::Bool,
        b"e" => CellKind::Error,
        _ => CellKind::Text,
    }
}

fn row_number(e: &BytesStart<'_>) -> Result<Option<usize>, ReportError> {
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(xlsx_err)?;
        if a.key.local_name().as_ref() == b"r" {
            return Ok(number(&a.value));
        }
    }
    Ok(None)
}

fn hidden_range(e: &BytesStart<'_>) -> Result<Option<(usize, usize)>, ReportError> {
    if !attr(e, b"hidden")?.is_some_and(|v| v == "1" || v == "true") {
        return Ok(None);
    }
    let min = attr(e, b"min")?.and_then(|v| v.parse().ok()).unwrap_or(1);
    let max = attr(e, b"max")?.and_then(|v| v.parse().ok()).unwrap_or(min);
    Ok(Some((min.max(1) - 1, max.max(1) - 1)))
}

/// Reads `<sheetData>` as it streams: every non-empty cell as text at its column; columns hidden
/// in `<cols>` take no place, as in the terminal's HTML where hidden cells are skipped.
fn parse_sheet(
    part: impl BufRead,
    strings: &SharedStrings,
    dates: &HashSet<usize>,
) -> Result<Sheet, ReportError> {
    let mut sheet: Sheet = Vec::new();
    let mut hidden: Vec<(usize, usize)> = Vec::new();
    let mut r = quick_xml::Reader::from_reader(part);
    // The layout whitespace between cells would otherwise be one text event per cell. Cell text
    // is trimmed anyway (leading spaces of a later rich-text run in an inline string are lost).
    r.config_mut().trim_text_start = true;
    let mut buf = Vec::new();
    let mut text = String::new();
    let mut row: Option<Row> = None;
    let mut cell: Option<CellState> = None;
    let mut in_value = false;
    let mut next_col = 0usize;
    loop {
        match r.read_event_into(&mut buf).map_err(xlsx_err)? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"col" => {
                hidden.extend(hidden_range(&e)?);
            }
            Event::Start(e) if e.local_name().as_ref() == b"row" => {
                let index = row_number(&e)?.map_or(sheet.len(), |n| n.max(1) - 1);
                while sheet.len() < index {
                    sheet.push(Vec::new());
                }
                row = Some(Vec::new());
                next_col = 0;
            }
            Event::Empty(e) if e.local_name().as_ref() == b"row" => sheet.push(Vec::new()),
            Event::End(e) if e.local_name().as_ref() == b"row" => {
                sheet.push(row.take().unwrap_or_default());
            }
            Event::Start(e) if e.local_name().as_ref() == b"c" => {
                let c = cell_start(&e, next_col)?;
                next_col = c.col + 1;
                cell = Some(c);
                text.clear();
            }
            Event::Empty(e) if e.local_name().as_ref() == b"c" => {
                next_col = cell_start(&e, next_col)?.col + 1;
            }
            Event::Start(e) if matches!(e.local_name().as_ref(), b"v" | b"t") => {
                in_value = cell.is_some();
            }
            Event::Text(t) if in_value => {
                if let Some(c) = cell.as_mut() {
                    text.push_str(&t.unescape().map_err(xlsx_err)?);
                    c.has_value = true;
                }
            }
            Event::End(e) if matches!(e.local_name().as_ref(), b"v" | b"t") => in_value = false,
            Event::End(e) if e.local_name().as_ref() == b"c" => {
                if let (Some(c), Some(row)) = (cell.take(), row.as_mut()) {
                    if let Some(t) = cell_text(&c, &text, strings, dates)? {
                        row.push((c.col, t));
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !hidden.is_empty() {
        drop_hidden_columns(&mut sheet, &hidden);
    }
    Ok(sheet)
}

/// The text a cell shows, trimmed; `None` for empty and error cells.
fn cell_text(
    c: &CellState,
    raw: &str,
    strings: &SharedStrings,
    dates: &HashSet<usize>,
) -> Result<Option<String>, ReportError> {
    if !c.has_value {
        return Ok(None);
    }
    let serial;
    let text = match c.kind {
        CellKind::Shared => {
            let i = number(raw.trim().as_bytes())
                .ok_or_else(|| xlsx_err(format!("bad shared string index {raw:?}")))?;
            strings
                .get(i)
                .ok_or_else(|| xlsx_err(format!("shared string {i} is missing")))?
        }
        CellKind::Error => return Ok(None),
        CellKind::Bool => match raw.trim() {
            "1" => "TRUE",
            _ => "FALSE",
        },
        CellKind::Number if dates.contains(&c.style) => match raw.trim().parse::<f64>() {
            Ok(v) => {
                serial = format_serial(v);
                &serial
            }
            Err(_) => raw,
        },
        CellKind::Number | CellKind::Text => raw,
    };
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

fn drop_hidden_columns(sheet: &mut Sheet, hidden: &[(usize, usize)]) {
    let shift = |col: usize| {
        hidden
            .iter()
            .map(|&(a, b)| {
                if col > b {
                    b - a + 1
                } else {
                    col.saturating_sub(a)
                }
            })
            .sum::<usize>()
    };
    for row in sheet.iter_mut() {
        row.retain(|(c, _)| !hidden.iter().any(|&(a, b)| (a..=b).contains(c)));
        for (c, _) in row.iter_mut() {
            *c -= shift(*c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_paths_and_formats() {
        assert_eq!(cell_ref(b"A1"), (Some(0), Some(1)));
        assert_eq!(cell_ref(b"AB12"), (Some(27), Some(12)));
        assert_eq!(cell_ref(b"7"), (None, Some(7)));
        assert_eq!(number(b"99999999999999999999"), None);
        assert_eq!(resolve("worksheets/sheet1.xml"), "xl/worksheets/sheet1.xml");
        assert_eq!(
            resolve("/xl/worksheets/Sheet2.xml"),
            "xl/worksheets/sheet2.xml"
        );
        assert_eq!(resolve("../xl/a.xml"), "xl/a.xml");
        assert!(is_date_format("yyyy.mm.dd hh:mm:ss"));
        assert!(!is_date_format("# ##0.00;-# ##0.00;0.00;"));
        assert!(!is_date_format("[Red]0.00"));
    }

    /// The fast reader gives what the full parser gives, wherever the chunks end.
    #[test]
    fn the_fast_reader_agrees_with_the_parser() {
        let strings = SharedStrings::of(&["zero", "one"]);
        let dates: HashSet<usize> = [1].into_iter().collect();
        let sheets = [
            r#"<?xml version="1.0"?><worksheet><cols><col min="3" max="3" hidden="1"/></cols><sheetData>
            <row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2" s="1"><v>45000.5</v></c>
            <c r="C2"><v>9</v></c><c r="D2" t="inlineStr"><is><t>x &amp; y &#233;&#x4E2D;</t></is></c>
            <c r="E2"><f>SUM(A1)</f><v>4054.30</v></c><c r="F2" s="2"/></row><row r="4"/>
            <!-- a comment with <c> inside --><row><c><v> 7 </v></c><c t="e"><v>#N/A</v></c>
            <c t="b"><v>1</v></c><c t='str' r="Z"><v>a &lt;b&gt; "c"</v></c><c/><c><v/></c>
            <c><v><![CDATA[cdata]]></v></c></row></sheetData></worksheet>"#,
            r#"<x:worksheet xmlns:x="ns"><x:sheetData><x:row r="1"><x:c r="B1" t="s"><x:v>0</x:v></x:c></x:row></x:sheetData></x:worksheet>"#,
        ];
        for xml in sheets {
            let full = parse_sheet(xml.as_bytes(), &strings, &dates).unwrap();
            for cap in [1, 2, 5, 64, 1 << 16] {
                let part = std::io::BufReader::with_capacity(cap, xml.as_bytes());
                let fast = scan::scan_sheet(part, &strings, &dates).unwrap();
                assert_eq!(fast.as_ref(), Some(&full), "chunks of {cap}: {xml}");
            }
        }
        let doctype = r#"<!DOCTYPE x [<!ENTITY e "v">]><worksheet/>"#;
        assert_eq!(
            scan::scan_sheet(doctype.as_bytes(), &strings, &dates).unwrap(),
            None
        );
        for bad in [
            "<worksheet><row><c><v>&bogus;</v></c></row>",
            "<worksheet><row><c",
        ] {
            assert!(
                scan::scan_sheet(bad.as_bytes(), &strings, &dates).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn hidden_columns_take_no_place() {
        let mut sheet: Sheet = vec![vec![(0, "a".into()), (1, "h".into()), (2, "c".into())]];
        drop_hidden_columns(&mut sheet, &[(1, 1)]);
        assert_eq!(sheet[0], vec![(0, "a".to_owned()), (1, "c".to_owned())]);
    }

    #[test]
    fn sheet_cells_of_every_kind() {
        let xml = r#"<worksheet><cols><col min="3" max="3" hidden="1"/></cols><sheetData>
            <row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2" s="1"><v>45000.5</v></c>
            <c r="C2"><v>9</v></c><c r="D2" t="inlineStr"><is><t>x &amp; y</t></is></c>
            <c r="E2"><f>SUM(A1)</f><v>4054.30</v></c><c r="F2" s="2"/></row></sheetData></worksheet>"#;
        let strings = SharedStrings::of(&["zero", "one"]);
        let dates: HashSet<usize> = [1].into_iter().collect();
        let sheet = parse_sheet(xml.as_bytes(), &strings, &dates).unwrap();
        assert_eq!(sheet.len(), 2);
        assert!(sheet[0].is_empty());
        assert_eq!(
            sheet[1],
            vec![
                (0, "one".to_owned()),
                (1, "2023.03.15 12:00:00".to_owned()),
                (2, "x & y".to_owned()),
                (3, "4054.30".to_owned()),
            ]
        );
    }
}
