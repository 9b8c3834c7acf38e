//! Which characters names and free text may hold.
//!
//! Zero-width and bidirectional control characters are invisible: `EUR\u{200b}USD` and
//! `EUR\u{202e}DSU` both display as `EURUSD` but are other keys, so an operator could not tell two
//! books apart. Symbol names keep to what MT5 brokers use in them (ASCII letters and digits and
//! `. _ - # + ! $ &`); free text (comments) may hold any printable character.

/// Punctuation MT5 brokers use in symbol names (`EURUSD.m`, `#AAPL`, `US30+`, `XAUUSD!`).
pub const SYMBOL_PUNCTUATION: &str = "._-#+!$&";

/// Whether `c` may appear in a symbol name.
pub fn is_symbol_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || SYMBOL_PUNCTUATION.contains(c)
}

/// Control characters, and the format characters that change how text displays without showing
/// (zero-width spaces and joiners, bidirectional marks, embeddings, overrides and isolates, the
/// word joiner and invisible operators, the byte-order mark, the soft hyphen).
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_symbol_names_pass_and_look_alikes_do_not() {
        for ok in [
            "EURUSD", "EURUSD.m", "#AAPL", "US30+", "XAUUSD!", "BRN-25", "S&P500", "BTC$", "GER_40",
        ] {
            assert!(ok.chars().all(is_symbol_char), "{ok}");
        }
        for bad in [
            "EUR\u{200b}USD",
            "EUR\u{202e}DSU",
            "EUR USD",
            "EUR/USD",
            "\u{0415}URUSD",
            "EURUSD\n",
        ] {
            assert!(!bad.chars().all(is_symbol_char), "{bad:?}");
        }
    }

    #[test]
    fn invisible_characters() {
        for c in [
            '\u{200b}', '\u{202e}', '\u{2066}', '\u{feff}', '\n', '\u{7f}', '\u{0}',
        ] {
            assert!(is_invisible(c), "{c:?}");
        }
        for c in ['a', 'Я', '€', ' ', '#', '中'] {
            assert!(!is_invisible(c), "{c:?}");
        }
    }
}
