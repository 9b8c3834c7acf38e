//! Import of MT5 "Trade History Report" exports (`.xlsx` and `.html`, as the terminal writes them or
//! re-saved by a spreadsheet program), and the check of a replay against the report's own summary.
//!
//! A report is one sheet of tables. Their titles are localized and their order and set vary, so
//! [`sections`] recognizes each table by the shape of its rows. Reports carry no position ids on
//! deals: on hedging accounts each `in` deal opens position = its order ticket and each closing
//! deal is matched to a position ([`hedging`]); netting reports replay in FIFO mode.
//! [`writer`] writes reports the way the terminal does, so the import is tested beyond fixtures.

mod build;
mod hedging;
mod html;
pub mod locale;
pub mod sections;
mod share;
pub mod synth;
mod text;
mod utf8_stream;
pub mod writer;
mod xlsx;

pub use build::import_sheet;
pub use html::read_html;
pub use text::{format_time, parse_number, parse_time};
pub use xlsx::read_xlsx;

use crate::ledger::{Ledger, LedgerError, PairingMode};
use crate::record::History;
use hedge_domain::{PositionId, Side, Volume};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
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

/// One row of a sheet: (column index, text) for each non-empty cell, in column order.
pub type Row = Vec<(usize, String)>;
/// A sheet as rows.
pub type Sheet = Vec<Row>;

/// A position the report says is open at the end.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpenPositionRow {
    pub position: PositionId,
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
}

/// Everything read from a report.
#[derive(Clone, Debug)]
pub struct ImportedReport {
    pub history: History,
    /// The pairing mode the report needs (native ids for hedging, FIFO for netting).
    pub mode: PairingMode,
    /// The report's "Open Positions" section (empty when the report has none).
    pub open_positions: Vec<OpenPositionRow>,
    /// Rows of the report's closed positions table (hedging reports), if present.
    pub closed_positions: Option<usize>,
}

/// A difference between the replay and the report's own summary.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    /// What differs: `net volume EURUSD`, `position 123 EURUSD`, `closed positions`.
    pub what: String,
    /// The report's value.
    pub expected: String,
    /// The replay's value.
    pub actual: String,
}

fn signed(side: Side, v: Decimal) -> Decimal {
    v * Decimal::from(side.sign())
}

fn show(v: Decimal) -> String {
    if v.is_zero() {
        "flat".to_owned()
    } else if v.is_sign_positive() {
        format!("buy {}", v.normalize())
    } else {
        format!("sell {}", (-v).normalize())
    }
}

impl ImportedReport {
    /// Replays the report's history in the mode it needs.
    pub fn replay(&self, progress: impl FnMut(u64)) -> Result<Ledger, LedgerError> {
        Ledger::replay_with(&self.history, self.mode, progress)
    }

    /// Compares a replay with the report's "Open Positions" (net volume per symbol, and each
    /// position on hedging accounts) and closed-position count. Empty when they agree.
    pub fn verify(&self, ledger: &Ledger) -> Vec<Mismatch> {
        let mut out = Vec::new();
        let mut expected: BTreeMap<&str, Decimal> = BTreeMap::new();
        for p in &self.open_positions {
            *expected.entry(p.symbol.as_str()).or_default() += signed(p.side, p.volume.0);
        }
        let net = ledger.net_volumes();
        let actual: BTreeMap<&str, Decimal> = net.iter().map(|(s, v)| (s.as_str(), v.0)).collect();
        let symbols: BTreeSet<&str> = expected.keys().chain(actual.keys()).copied().collect();
        for s in symbols {
            let e = expected.get(s).copied().unwrap_or_default();
            let a = actual.get(s).copied().unwrap_or_default();
            if e != a {
                out.push(Mismatch {
                    what: format!("net volume {s}"),
                    expected: show(e),
                    actual: show(a),
                });
            }
        }
        if self.mode == PairingMode::Native {
            let mut e: BTreeMap<u64, (&str, Decimal)> = BTreeMap::new();
            for p in &self.open_positions {
                let entry = e
                    .entry(p.position.get())
                    .or_insert((&p.symbol, Decimal::ZERO));
                entry.1 += signed(p.side, p.volume.0);
            }
            let active = ledger.active_positions();
            let a: BTreeMap<u64, (&str, Decimal)> = active
                .iter()
                .map(|p| (p.id().get(), (p.symbol(), signed(p.side(), p.volume().0))))
                .collect();
            let ids: BTreeSet<u64> = e.keys().chain(a.keys()).copied().collect();
            for id in ids {
                let (es, ev) = e.get(&id).copied().unwrap_or(("", Decimal::ZERO));
                let (as_, av) = a.get(&id).copied().unwrap_or(("", Decimal::ZERO));
                if ev != av {
                    let symbol = if es.is_empty() { as_ } else { es };
                    out.push(Mismatch {
                        what: format!("position {id} {symbol}"),
                        expected: show(ev),
                        actual: show(av),
                    });
                }
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

/// Reads a report file, choosing the reader by content (a zip package or HTML text), then by
/// extension.
pub fn import_path(path: &Path) -> Result<ImportedReport, ReportError> {
    let bytes = std::fs::read(path)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    import_bytes(&bytes, &ext)
}

/// Reads a report from memory; `ext` (lower case, no dot) decides only when the content cannot.
pub fn import_bytes(bytes: &[u8], ext: &str) -> Result<ImportedReport, ReportError> {
    let sheet = if bytes.starts_with(b"PK") {
        read_xlsx(bytes)?
    } else if looks_like_text(bytes) {
        read_html(bytes)
    } else {
        match ext {
            "xlsx" => read_xlsx(bytes)?,
            "html" | "htm" => read_html(bytes),
            other => return Err(ReportError::Format(other.to_owned())),
        }
    };
    import_sheet(&sheet)
}

fn looks_like_text(bytes: &[u8]) -> bool {
    let text = text::decode_text(&bytes[..bytes.len().min(512)]);
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<')
}
