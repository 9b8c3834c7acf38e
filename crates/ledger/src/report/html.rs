//! The terminal's HTML report: one big table, UTF-16LE (with or without BOM) or UTF-8.

use super::text::decode_text;
use super::{Row, Sheet};

/// Decodes an HTML report and reads its table rows.
pub fn read_html(bytes: &[u8]) -> Sheet {
    html_rows(&decode_text(bytes))
}

fn find_ci(hay: &str, needle: &str, from: usize) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if from >= h.len() {
        return None;
    }
    memchr_ci(&h[from..], n).map(|p| p + from)
}

/// Case-insensitive search for an ASCII needle starting with `<`, which every tag search is.
fn memchr_ci(h: &[u8], n: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(p) = h[at..].iter().position(|&b| b == n[0]) {
        let i = at + p;
        if h.len() - i >= n.len() && h[i..i + n.len()].eq_ignore_ascii_case(n) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// Whether a tag match is the whole tag name (`<tr` but not `<track`).
fn tag_at(text: &str, name: &str, from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let i = find_ci(text, name, at)?;
        match text.as_bytes().get(i + name.len()) {
            Some(b) if b.is_ascii_alphanumeric() => at = i + 1,
            _ => return Some(i),
        }
    }
}

/// A tolerant reader of `<tr>`/`<td>`/`<th>` structure: colspans advance the column index, hidden
/// cells take no column, tags inside cells are dropped, entities decoded, comments and scripts
/// ignored.
pub(crate) fn html_rows(text: &str) -> Sheet {
    let cleaned;
    let text = if find_ci(text, "<!--", 0).is_some() || find_ci(text, "<script", 0).is_some() {
        cleaned = strip_blocks(text);
        cleaned.as_str()
    } else {
        text
    };
    let mut sheet = Vec::new();
    let mut pos = 0;
    while let Some(tr) = tag_at(text, "<tr", pos) {
        let end = tag_at(text, "</tr", tr).unwrap_or(text.len());
        let next_tr = tag_at(text, "<tr", tr + 3).unwrap_or(text.len());
        let row_end = end.min(next_tr);
        sheet.push(html_cells(&text[tr..row_end]));
        pos = row_end;
    }
    sheet
}

/// Removes comments, scripts and styles, whose text is not part of the table.
fn strip_blocks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    loop {
        let next = [
            (find_ci(text, "<!--", pos), "-->"),
            (tag_at(text, "<script", pos), "</script>"),
            (tag_at(text, "<style", pos), "</style>"),
        ]
        .into_iter()
        .filter_map(|(at, end)| at.map(|a| (a, end)))
        .min_by_key(|(a, _)| *a);
        let Some((start, end)) = next else {
            out.push_str(&text[pos..]);
            return out;
        };
        out.push_str(&text[pos..start]);
        pos = find_ci(text, end, start)
            .map(|e| e + end.len())
            .unwrap_or(text.len());
    }
}

fn html_cells(row: &str) -> Row {
    let mut cells = Vec::new();
    let mut col = 0usize;
    let mut pos = 0;
    loop {
        let start = match (tag_at(row, "<td", pos), tag_at(row, "<th", pos)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let Some(tag_end) = row[start..].find('>').map(|i| start + i) else {
            break;
        };
        let tag = &row[start..tag_end];
        let close = [
            tag_at(row, "</td", tag_end),
            tag_at(row, "</th", tag_end),
            tag_at(row, "<td", tag_end),
            tag_at(row, "<th", tag_end),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(row.len());
        let inner = &row[tag_end + 1..close];
        let span = attr(tag, "colspan")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, 64);
        // A hidden cell is not displayed and takes no column.
        if !is_hidden(tag) {
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

fn is_hidden(tag: &str) -> bool {
    let lower = tag.to_ascii_lowercase();
    let class_hidden =
        attr(&lower, "class").is_some_and(|c| c.split_whitespace().any(|w| w == "hidden"));
    let style: String = attr(&lower, "style")
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    class_hidden
        || style.contains("display:none")
        || style.contains("visibility:hidden")
        || attr_present(&lower, "hidden")
}

/// A bare boolean attribute (`<td hidden>`).
fn attr_present(tag: &str, name: &str) -> bool {
    tag.split(|c: char| c.is_whitespace() || c == '>')
        .skip(1)
        .any(|w| w == name || w.starts_with(&format!("{name}=")))
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let mut from = 0;
    let i = loop {
        let i = find_attr(tag, name, from)?;
        // The name must stand alone: `colspan`, not `data-colspan`.
        let before = tag[..i].chars().last();
        if before.is_some_and(|c| c.is_whitespace()) {
            break i;
        }
        from = i + 1;
    };
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

fn find_attr(tag: &str, name: &str, from: usize) -> Option<usize> {
    let lower = tag.get(from..)?.to_ascii_lowercase();
    lower.find(name).map(|i| i + from)
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in s.chars() {
        match c {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                // A line break inside a cell separates words.
                if tag.to_ascii_lowercase().starts_with("br") {
                    out.push(' ');
                }
            }
            _ if in_tag => tag.push(c),
            _ => out.push(c),
        }
    }
    out
}

pub(crate) fn decode_entities(s: &str) -> String {
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
            // A non-breaking space is a space to the parser of numbers and words.
            Some('\u{a0}') => {
                out.push(' ');
                rest = &after[semi + 1..];
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_colspans_and_skip_hidden() {
        let rows = html_rows(
            "<table><tr><td colspan=\"2\">A&nbsp;b</td><td class=\"hidden\">x</td><td><b>3</b></td></tr>\
             <TR><TH>h</TH><td style=\"display: none\">y</td><td>&amp;&#233;</td></TR>\
             <!-- <tr><td>commented</td></tr> --><tr><td hidden>z</td><td>a<br>b</td></tr></table>",
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], vec![(0, "A b".to_owned()), (2, "3".to_owned())]);
        assert_eq!(rows[1], vec![(0, "h".to_owned()), (1, "&é".to_owned())]);
        assert_eq!(rows[2], vec![(0, "a b".to_owned())]);
        assert_eq!(decode_entities("&nbsp;marché &x; &#xE9;"), " marché &x; é");
    }

    #[test]
    fn utf16_with_and_without_bom_and_a_stray_byte() {
        let body: Vec<u8> = "<tr><td>é</td></tr>"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        let mut with_bom = vec![0xFF, 0xFE];
        with_bom.extend(&body);
        with_bom.push(0x00);
        assert_eq!(read_html(&with_bom), vec![vec![(0, "é".to_owned())]]);
        let mut without = body.clone();
        without.push(0x0A);
        assert_eq!(read_html(&without), vec![vec![(0, "é".to_owned())]]);
    }
}
