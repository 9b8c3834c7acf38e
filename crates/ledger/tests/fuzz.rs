//! Generated input for the two readers of outside files: the JSON-lines history and the MT5 report
//! (native xlsx and HTML). Whatever the bytes, a reader returns a value or an error; it never
//! panics and never hangs. Besides random bytes, valid files are damaged one byte at a time, which
//! reaches far deeper into the parsers than noise does.
//!
//! A few thousand cases run with the suite; `PROPTEST_CASES=1000000 cargo test --release -p
//! hedge-ledger --test fuzz` runs a million of each (see `docs/security.md`).

use hedge_ledger::generator::{generate, GenConfig};
use hedge_ledger::record::History;
use hedge_ledger::report::import_bytes;
use hedge_ledger::report::writer::{write_html, write_xlsx, WriteOptions};
use proptest::prelude::*;
use std::sync::OnceLock;

/// Cases per property: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Valid inputs to damage: a small generated history as JSON lines, native xlsx and HTML.
struct Samples {
    jsonl: Vec<u8>,
    xlsx: Vec<u8>,
    html: Vec<u8>,
}

fn samples() -> &'static Samples {
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let history = generate(GenConfig {
            deals: 40,
            seed: 7,
            symbols: 2,
        });
        let mut jsonl = Vec::new();
        history.write_jsonl(&mut jsonl).expect("in memory");
        let opts = WriteOptions::default();
        Samples {
            jsonl,
            xlsx: write_xlsx(&history, &opts).expect("writes"),
            html: write_html(&history, &opts),
        }
    })
}

/// `bytes` with the byte at `at` (modulo the length) replaced, and cut at `cut` when it is shorter.
fn damage(bytes: &[u8], at: usize, value: u8, cut: Option<usize>) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        let i = at % out.len();
        out[i] = value;
    }
    if let Some(cut) = cut {
        out.truncate(cut % (bytes.len() + 1));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3000)))]

    #[test]
    fn any_bytes_as_a_history_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = History::read_jsonl(&bytes[..]);
    }

    #[test]
    fn a_damaged_history_is_read_or_refused(at in any::<usize>(), value in any::<u8>(), cut in prop::option::of(any::<usize>())) {
        let bytes = damage(&samples().jsonl, at, value, cut);
        let _ = History::read_jsonl(&bytes[..]);
    }

    #[test]
    fn any_bytes_as_a_report_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(import_bytes(&bytes, "xlsx").is_err(), "noise is no spreadsheet");
        let _ = import_bytes(&bytes, "html");
        let _ = import_bytes(&bytes, "htm");
    }
}

proptest! {
    // Each case reads a whole report: fewer of them with the suite.
    #![proptest_config(ProptestConfig::with_cases(cases(400)))]

    #[test]
    fn a_damaged_html_report_is_read_or_refused(at in any::<usize>(), value in any::<u8>(), cut in prop::option::of(any::<usize>())) {
        let bytes = damage(&samples().html, at, value, cut);
        let _ = import_bytes(&bytes, "html");
    }

    #[test]
    fn a_damaged_xlsx_report_is_read_or_refused(at in any::<usize>(), value in any::<u8>(), cut in prop::option::of(any::<usize>())) {
        let bytes = damage(&samples().xlsx, at, value, cut);
        let _ = import_bytes(&bytes, "xlsx");
    }
}

#[test]
fn the_undamaged_samples_read() {
    let s = samples();
    let history = History::read_jsonl(&s.jsonl[..]).expect("the history reads");
    assert!(!history.deals.is_empty());
    import_bytes(&s.xlsx, "xlsx").expect("the xlsx report reads");
    import_bytes(&s.html, "html").expect("the html report reads");
}
