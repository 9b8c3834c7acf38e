//! Times, numbers and text encodings as MT5 writes them in reports.

use hedge_domain::num::parse_decimal;
use rust_decimal::Decimal;

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

/// A spreadsheet date serial (days since 1899-12-30) as MT5's time text; re-saved reports may
/// carry times as real dates instead of MT5's text.
pub(crate) fn format_serial(serial: f64) -> String {
    let ms = ((serial - 25569.0) * 86_400_000.0).round() as i64;
    format_time(ms)
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

/// Parses `yyyy.mm.dd hh:mi[:ss[.mmm]]` (also with `-` or `/` separators) into epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    // Cheap rejection first: this runs on every cell while sections are recognized.
    if t.len() < 8 || !t.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let mut parts = t.split([' ', 'T']).filter(|s| !s.is_empty());
    let date = parts.next()?;
    let time = parts.next().unwrap_or("00:00:00");
    if parts.next().is_some() {
        return None;
    }
    let mut dp = date.split(['.', '-', '/']);
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
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
    if hh > 23 || mi > 59 || ss > 60 {
        return None;
    }
    Some(((days_from_civil(y, m, d) * 86_400 + hh * 3600 + mi * 60 + ss) * 1000) + ms)
}

/// A report number: spaces (also non-breaking) as thousands separators, `- 30.12` for negatives.
pub fn parse_number(text: &str) -> Option<Decimal> {
    let t = text.trim();
    if t.is_empty() {
        return Some(Decimal::ZERO);
    }
    if !t.contains(|c: char| c.is_whitespace() || c == '\u{a0}' || c == '\u{202f}') {
        return parse_decimal(t);
    }
    let cleaned: String = t
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '\u{202f}')
        .collect();
    parse_decimal(&cleaned)
}

/// Whether `s` is a ticket: digits only.
pub(crate) fn is_ticket(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` is an orders-table volume, "requested / filled".
pub(crate) fn is_ratio(s: &str) -> bool {
    match s.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (a.trim(), b.trim());
            !a.is_empty() && !b.is_empty() && parse_number(a).is_some() && parse_number(b).is_some()
        }
        None => false,
    }
}

/// The text encodings a report part can come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextEncoding {
    Utf8,
    Utf16Le,
    Utf16Be,
}

impl TextEncoding {
    /// Detects the encoding from a byte order mark, the zero bytes of UTF-16 ASCII, or an XML
    /// declaration. Returns the encoding and the length of its BOM.
    pub(crate) fn sniff(head: &[u8]) -> (TextEncoding, usize) {
        match head {
            [0xFF, 0xFE, ..] => (TextEncoding::Utf16Le, 2),
            [0xFE, 0xFF, ..] => (TextEncoding::Utf16Be, 2),
            [0xEF, 0xBB, 0xBF, ..] => (TextEncoding::Utf8, 3),
            [a, 0, ..] if *a != 0 => (TextEncoding::Utf16Le, 0),
            [0, b, ..] if *b != 0 => (TextEncoding::Utf16Be, 0),
            _ => {
                let decl = &head[..head.len().min(200)];
                let lower = String::from_utf8_lossy(decl).to_ascii_lowercase();
                if lower.contains("encoding=\"utf-16") || lower.contains("encoding='utf-16") {
                    // A declaration that says UTF-16 over 8-bit bytes is wrong; the bytes win.
                    tracing::debug!("UTF-16 declared over 8-bit text; reading it as UTF-8");
                }
                (TextEncoding::Utf8, 0)
            }
        }
    }

    pub(crate) fn encoding(self) -> &'static encoding_rs::Encoding {
        match self {
            TextEncoding::Utf8 => encoding_rs::UTF_8,
            TextEncoding::Utf16Le => encoding_rs::UTF_16LE,
            TextEncoding::Utf16Be => encoding_rs::UTF_16BE,
        }
    }
}

/// Decodes a whole text (BOM or not); a stray odd trailing byte of UTF-16 is dropped, since it
/// cannot be part of a code unit.
pub(crate) fn decode_text(bytes: &[u8]) -> String {
    let (enc, bom) = TextEncoding::sniff(bytes);
    let mut body = &bytes[bom..];
    if enc != TextEncoding::Utf8 && body.len() % 2 == 1 {
        body = &body[..body.len() - 1];
    }
    let (text, _) = enc.encoding().decode_without_bom_handling(body);
    text.into_owned()
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
        assert_eq!(parse_time("12345678"), None);
        assert_eq!(format_serial(45000.5), "2023.03.15 12:00:00");
        assert!(is_ratio("0.05 / 0.05") && is_ratio("1/0") && !is_ratio("S / L"));
    }

    #[test]
    fn encodings_by_bom_zero_bytes_and_stray_byte() {
        let mut le = vec![0xFF, 0xFE];
        le.extend("<a>é</a>".encode_utf16().flat_map(|u| u.to_le_bytes()));
        le.push(0x0A);
        assert_eq!(decode_text(&le), "<a>é</a>");
        let be: Vec<u8> = "<a>é</a>"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert_eq!(decode_text(&be), "<a>é</a>");
        assert_eq!(decode_text(b"\xEF\xBB\xBF<a/>"), "<a/>");
        assert_eq!(decode_text("<é/>".as_bytes()), "<é/>");
    }
}
