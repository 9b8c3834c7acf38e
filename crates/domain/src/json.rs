//! Checks on raw JSON text that a parsed value can no longer make.
//!
//! JSON numbers are read as `f64` and then taken at their shortest decimal form (see
//! [`crate::num`]), which is exact for what MT5 writes but silently rounds a number written with
//! more digits than a `f64` holds: `0.10000000000000000001` would become `0.1`. A string holding
//! the same text is refused for its decimals, so the number must be refused too, before parsing.

use crate::num::{decimal_from_f64, parse_decimal};

/// The first number in `json` whose value a `f64` does not keep as written (more significant
/// digits than it holds, or out of the decimal range), or `None` when every number is read
/// exactly. Strings are skipped; the text need not be valid JSON (the parser reports that).
pub fn inexact_number(json: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => i = skip_string(json, i + 1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len()
                    && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = String::from_utf8_lossy(&json[start..i]);
                if !read_exactly(&token) {
                    return Some(token.into_owned());
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Index just past the string whose contents start at `i`.
fn skip_string(json: &[u8], mut i: usize) -> usize {
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    json.len()
}

/// Whether the number `token` is read as the value it was written as.
fn read_exactly(token: &str) -> bool {
    let integer = !token.contains(['.', 'e', 'E']);
    // Integers within 64 bits are read exactly, never through a float.
    if integer && (token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok()) {
        return true;
    }
    let Some(written) = parse_decimal(token) else {
        // Malformed (left to the parser) or beyond a decimal's range: not exact either way.
        return token.parse::<f64>().is_err();
    };
    let read = token.parse::<f64>().ok().and_then(decimal_from_f64);
    read == Some(written.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_with_more_digits_than_a_double_are_found() {
        assert_eq!(
            inexact_number(br#"{"volume":0.10000000000000000001}"#).as_deref(),
            Some("0.10000000000000000001")
        );
        assert_eq!(
            inexact_number(br#"{"price":1.234567890123456789,"x":1}"#).as_deref(),
            Some("1.234567890123456789")
        );
        assert_eq!(
            inexact_number(br#"{"a":18446744073709551616}"#).as_deref(),
            Some("18446744073709551616")
        );
        assert_eq!(inexact_number(br#"{"a":1e400}"#).as_deref(), Some("1e400"));
    }

    #[test]
    fn ordinary_numbers_and_strings_pass() {
        assert_eq!(
            inexact_number(
                br#"{"volume":0.1,"price":1.08345,"t":1700000000123,"n":-5,"e":1e-7,"s":"0.10000000000000000001 \"9.99999999999999999999\""}"#
            ),
            None
        );
        assert_eq!(
            inexact_number(br#"[-9223372036854775808, 18446744073709551615]"#),
            None
        );
        assert_eq!(inexact_number(b"not json"), None);
    }

    proptest! {
        /// Whatever MT5 writes (a double at its shortest form) is read exactly.
        #[test]
        fn doubles_written_shortest_pass(v in proptest::num::f64::NORMAL | proptest::num::f64::ZERO) {
            let text = serde_json::to_string(&v).unwrap();
            if parse_decimal(&text).is_some() {
                prop_assert_eq!(inexact_number(text.as_bytes()), None, "{}", text);
            }
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = inexact_number(&bytes);
        }
    }
}
