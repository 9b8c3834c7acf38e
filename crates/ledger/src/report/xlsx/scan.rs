//! The fast reader of a worksheet's cells.
//!
//! A 100,000-deal report's sheet is about 110 MiB of XML once converted to UTF-8, and a general
//! XML parser spent a third of the import producing events for it. The sheet uses a small part of
//! XML: elements with quoted attributes, text with the predefined and numeric entities, comments,
//! CDATA and processing instructions. This reader handles exactly that, with the same results as
//! [`super::parse_sheet`]; for anything else (a DOCTYPE, which could declare entities) it answers
//! `None` and the sheet is read again by the full parser.

use super::{cell_kind, cell_ref, cell_text, drop_hidden_columns, number, xlsx_err, CellState};
use super::{ReportError, Row, SharedStrings, Sheet};
use std::collections::HashSet;
use std::io::BufRead;

/// What the reader stopped at: more input needed, or markup it leaves to the full parser.
enum Stop {
    More,
    Unsupported,
}

/// The local name of a tag (`x:row` → `row`) and the rest of its text.
fn split_tag(tag: &[u8]) -> (&[u8], &[u8]) {
    let end = tag
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/')
        .unwrap_or(tag.len());
    let name = &tag[..end];
    let local = match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    (local, &tag[end..])
}

/// The attributes of a tag as (local name, raw value); stops at the first malformed one.
fn attributes(mut rest: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace() && *b != b'/')?;
        rest = &rest[start..];
        let eq = rest.iter().position(|&b| b == b'=')?;
        let key = rest[..eq].trim_ascii();
        let after = rest[eq + 1..].trim_ascii_start();
        let quote = *after.first().filter(|q| **q == b'"' || **q == b'\'')?;
        let len = after[1..].iter().position(|&b| b == quote)?;
        let value = &after[1..1 + len];
        rest = &after[len + 2..];
        let local = match key.iter().rposition(|&b| b == b':') {
            Some(i) => &key[i + 1..],
            None => key,
        };
        Some((local, value))
    })
}

/// Appends `raw` with its entities resolved (the five predefined ones and character references).
fn unescape_into(raw: &[u8], out: &mut String) -> Result<(), ReportError> {
    let text = std::str::from_utf8(raw).map_err(xlsx_err)?;
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let semi = rest[amp..]
            .find(';')
            .ok_or_else(|| xlsx_err("an unterminated entity in the sheet"))?;
        let name = &rest[amp + 1..amp + semi];
        let c = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => name.strip_prefix('#').and_then(|d| d.parse().ok()),
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| xlsx_err(format!("unknown entity &{name}; in the sheet")))?
            }
        };
        out.push(c);
        rest = &rest[amp + semi + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// The sheet as it is read.
struct State<'a> {
    strings: &'a SharedStrings,
    dates: &'a HashSet<usize>,
    sheet: Sheet,
    hidden: Vec<(usize, usize)>,
    row: Option<Row>,
    cell: Option<CellState>,
    text: String,
    in_value: bool,
    next_col: usize,
}

impl State<'_> {
    fn start(&mut self, name: &[u8], rest: &[u8], empty: bool) -> Result<(), ReportError> {
        match (name, empty) {
            (b"col", _) => {
                let (mut min, mut max, mut hide) = (None, None, false);
                for (k, v) in attributes(rest) {
                    match k {
                        b"min" => min = number(v),
                        b"max" => max = number(v),
                        b"hidden" => hide = v == b"1" || v == b"true",
                        _ => {}
                    }
                }
                if hide {
                    let min = min.unwrap_or(1);
                    let max = max.unwrap_or(min);
                    self.hidden.push((min.max(1) - 1, max.max(1) - 1));
                }
            }
            (b"row", false) => {
                let r = attributes(rest).find(|(k, _)| *k == b"r");
                let index = r
                    .and_then(|(_, v)| number(v))
                    .map_or(self.sheet.len(), |n| n.max(1) - 1);
                while self.sheet.len() < index {
                    self.sheet.push(Vec::new());
                }
                self.row = Some(Vec::new());
                self.next_col = 0;
            }
            (b"row", true) => self.sheet.push(Vec::new()),
            (b"c", _) => {
                let mut cell = CellState {
                    col: self.next_col,
                    ..CellState::default()
                };
                for (k, v) in attributes(rest) {
                    match k {
                        b"r" => cell.col = cell_ref(v).0.unwrap_or(self.next_col),
                        b"s" => cell.style = number(v).unwrap_or(0),
                        b"t" => cell.kind = cell_kind(v),
                        _ => {}
                    }
                }
                self.next_col = cell.col + 1;
                if !empty {
                    self.cell = Some(cell);
                    self.text.clear();
                }
            }
            (b"v" | b"t", false) => self.in_value = self.cell.is_some(),
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, name: &[u8]) -> Result<(), ReportError> {
        match name {
            b"row" => self.sheet.push(self.row.take().unwrap_or_default()),
            b"v" | b"t" => self.in_value = false,
            b"c" => {
                if let (Some(c), Some(row)) = (self.cell.take(), self.row.as_mut()) {
                    if let Some(t) = cell_text(&c, &self.text, self.strings, self.dates)? {
                        row.push((c.col, t));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Text between tags. Leading layout whitespace is dropped, as the full parser is set to.
    fn text(&mut self, raw: &[u8]) -> Result<(), ReportError> {
        let raw = raw.trim_ascii_start();
        if !self.in_value || raw.is_empty() {
            return Ok(());
        }
        if let Some(c) = self.cell.as_mut() {
            c.has_value = true;
            unescape_into(raw, &mut self.text)?;
        }
        Ok(())
    }

    /// Reads the markup at the start of `buf` (which starts with `<`); returns its length.
    fn markup(&mut self, buf: &[u8], eof: bool) -> Result<Result<usize, Stop>, ReportError> {
        let more = || {
            if eof {
                Err(xlsx_err("the sheet ends inside a tag"))
            } else {
                Ok(Err(Stop::More))
            }
        };
        // Enough to tell a comment or CDATA from other markup at the end of a chunk.
        if buf.len() < 9 && !eof {
            return Ok(Err(Stop::More));
        }
        let find = |pat: &[u8]| buf.windows(pat.len()).position(|w| w == pat);
        if buf.starts_with(b"<!--") {
            return match find(b"-->") {
                Some(i) => Ok(Ok(i + 3)),
                None => more(),
            };
        }
        if buf.starts_with(b"<![CDATA[") {
            // Left out of cell text, as by the full parser.
            return match find(b"]]>") {
                Some(i) => Ok(Ok(i + 3)),
                None => more(),
            };
        }
        if buf.starts_with(b"<!") {
            return Ok(Err(Stop::Unsupported));
        }
        // The closing `>`, outside quoted attribute values.
        let mut quote = None;
        let Some(close) = buf.iter().position(|&b| match quote {
            Some(q) => {
                if b == q {
                    quote = None;
                }
                false
            }
            None if b == b'"' || b == b'\'' => {
                quote = Some(b);
                false
            }
            None => b == b'>',
        }) else {
            return more();
        };
        let tag = &buf[1..close];
        if let Some(name) = tag.strip_prefix(b"/") {
            self.end(split_tag(name.trim_ascii()).0)?;
        } else if !tag.starts_with(b"?") {
            let (name, rest) = split_tag(tag);
            self.start(name, rest, tag.ends_with(b"/"))?;
        }
        Ok(Ok(close + 1))
    }
}

/// Reads the cells of a sheet part, or `None` when it holds markup left to the full parser.
pub(super) fn scan_sheet(
    mut part: impl BufRead,
    strings: &SharedStrings,
    dates: &HashSet<usize>,
) -> Result<Option<Sheet>, ReportError> {
    let mut state = State {
        strings,
        dates,
        sheet: Vec::new(),
        hidden: Vec::new(),
        row: None,
        cell: None,
        text: String::new(),
        in_value: false,
        next_col: 0,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut eof = false;
    loop {
        let rest = &buf[pos..];
        let step = if rest.is_empty() {
            Err(Stop::More)
        } else if rest[0] == b'<' {
            state.markup(rest, eof)?
        } else {
            match memchr_lt(rest) {
                Some(i) => state.text(&rest[..i]).map(|()| Ok(i))?,
                None if eof => state.text(rest).map(|()| Ok(rest.len()))?,
                None => Err(Stop::More),
            }
        };
        match step {
            Ok(n) => pos += n,
            Err(Stop::Unsupported) => return Ok(None),
            Err(Stop::More) if eof => break,
            Err(Stop::More) => {
                buf.drain(..pos);
                pos = 0;
                let chunk = part.fill_buf()?;
                eof = chunk.is_empty();
                buf.extend_from_slice(chunk);
                let n = chunk.len();
                part.consume(n);
            }
        }
    }
    let mut sheet = state.sheet;
    if !state.hidden.is_empty() {
        drop_hidden_columns(&mut sheet, &state.hidden);
    }
    Ok(Some(sheet))
}

fn memchr_lt(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'<')
}
