//! MT5 report import: the real sample and hand-built fixtures (xlsx and UTF-16 html).

use hedge_domain::{AccountMarginMode, PositionId, Side, Volume};
use hedge_ledger::report::{import_path, import_sheet, read_html, read_xlsx, Sheet};
use hedge_ledger::PairingMode;
use std::path::PathBuf;

/// A shared real report: `Some` when `<repo>/../shared` exists; CI (CI=true) must have it.
fn shared_sample(name: &str) -> Option<PathBuf> {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if !shared.is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {} is missing: the shared samples must be tested in CI",
            shared.display()
        );
        eprintln!(
            "{} not found: shared sample {name} not tested",
            shared.display()
        );
        return None;
    }
    let path = shared.join("samples/mt5-reports").join(name);
    assert!(path.exists(), "sample missing: {}", path.display());
    Some(path)
}

fn check_real_hedging_sample(name: &str) {
    let Some(path) = shared_sample(name) else {
        return;
    };
    let report = import_path(&path).unwrap();
    assert_eq!(
        report.history.account.margin_mode,
        AccountMarginMode::RetailHedging
    );
    assert_eq!(report.mode, PairingMode::Native);
    assert_eq!(report.history.deals.len(), 19);
    assert_eq!(report.history.orders.len(), 18);
    assert_eq!(report.closed_positions, Some(8));
    assert!(report.open_positions.is_empty());
    let ledger = report.replay(|_| {}).unwrap();
    assert_eq!(ledger.active_count(), 0);
    assert_eq!(ledger.closed_position_count(), 8);
    // Two positions were closed in two and three parts.
    assert_eq!(ledger.history_count(), 10);
    assert!(
        report.verify(&ledger).is_empty(),
        "{:?}",
        report.verify(&ledger)
    );
    // The partially closed position 1688234031 got the three small closes.
    let parts: Vec<_> = ledger
        .history_positions()
        .filter(|h| h.id() == PositionId(1688234031))
        .map(|h| h.volume())
        .collect();
    assert_eq!(parts.len(), 3);
    // The batch close matched each deal to the position with its profit.
    let h = ledger
        .history_positions()
        .find(|h| h.id() == PositionId(1728662617))
        .unwrap();
    assert_eq!(h.exit_order().get(), 1728769121);
    assert_eq!(ledger.net_volume("XAUUSD"), Volume::ZERO);
}

#[test]
fn real_hedging_sample_resaved_replays_flat_with_eight_closed_positions() {
    check_real_hedging_sample("ReportHistory-hedging-small.xlsx");
}

#[test]
fn real_hedging_sample_native_utf16_replays_flat_with_eight_closed_positions() {
    check_real_hedging_sample("ReportHistory-hedging-native.xlsx");
}

type Rows = Vec<Vec<(usize, &'static str)>>;

/// Writes rows to an xlsx file (strings everywhere, as MT5 does for many cells).
fn write_xlsx(rows: &Rows, path: &std::path::Path) {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (r, row) in rows.iter().enumerate() {
        for (c, text) in row {
            ws.write_string(r as u32, *c as u16, *text).unwrap();
        }
    }
    wb.save(path).unwrap();
}

/// Writes rows as an MT5-style UTF-16LE HTML table: gaps become colspans, a hidden cell, nbsp.
fn write_html(rows: &Rows, path: &std::path::Path) {
    let mut html = String::from("<html><head><title>Report</title></head><body><table>\n");
    for row in rows {
        html.push_str("<tr align=\"right\">");
        let mut col = 0;
        for (c, text) in row {
            if *c > col {
                html.push_str(&format!("<td colspan=\"{}\"></td>", c - col));
            }
            html.push_str("<td class=\"hidden\" colspan=\"0\">junk</td>");
            html.push_str(&format!("<td>{}</td>", text.replace(' ', "&nbsp;")));
            col = c + 1;
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table></body></html>");
    let mut bytes = vec![0xFF, 0xFE];
    for u in html.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    bytes.push(0x0A); // stray odd byte
    std::fs::write(path, bytes).unwrap();
}

fn french_netting() -> Rows {
    vec![
        vec![(0, "Rapport d'historique de trading")],
        vec![
            (0, "Compte:"),
            (3, "5551234 (EUR, Courtier-Demo, demo, Netting)"),
        ],
        vec![(0, "Ordres")],
        vec![
            (0, "Heure d'ouverture"),
            (1, "Ordre"),
            (2, "Symbole"),
            (3, "Type"),
            (4, "Volume"),
            (5, "Prix"),
            (6, "S / L"),
            (7, "T / P"),
            (8, "Heure"),
            (9, "État"),
            (11, "Commentaire"),
        ],
        vec![
            (0, "2024.01.02 10:00:00"),
            (1, "100"),
            (2, "EURUSD"),
            (3, "buy"),
            (4, "1 / 1"),
            (5, "market"),
            (8, "2024.01.02 10:00:00"),
            (9, "filled"),
        ],
        vec![
            (0, "2024.01.02 11:00:00"),
            (1, "101"),
            (2, "EURUSD"),
            (3, "sell"),
            (4, "1.5 / 1.5"),
            (5, "market"),
            (8, "2024.01.02 11:00:00"),
            (9, "filled"),
        ],
        vec![
            (0, "2024.01.02 12:00:00"),
            (1, "102"),
            (2, "EURUSD"),
            (3, "buy limit"),
            (4, "0.2 / 0.2"),
            (5, "1.0950"),
            (8, "2024.01.02 12:30:00"),
            (9, "filled"),
        ],
        vec![
            (0, "2024.01.02 12:00:00"),
            (1, "103"),
            (2, "EURUSD"),
            (3, "sell stop"),
            (4, "1 / 0"),
            (5, "1.0800"),
            (8, "2024.01.02 13:00:00"),
            (9, "canceled"),
        ],
        vec![(0, "Transactions")],
        vec![
            (0, "Heure"),
            (1, "Transaction"),
            (2, "Symbole"),
            (3, "Type"),
            (4, "Direction"),
            (5, "Volume"),
            (6, "Prix"),
            (7, "Ordre"),
            (8, "Commission"),
            (9, "Frais"),
            (10, "Swap"),
            (11, "Bénéfice"),
            (12, "Solde"),
            (13, "Commentaire"),
        ],
        vec![
            (0, "2024.01.01 09:00:00"),
            (1, "500"),
            (3, "balance"),
            (8, "0"),
            (9, "0"),
            (10, "0"),
            (11, "10 000.00"),
            (12, "10 000.00"),
        ],
        vec![
            (0, "2024.01.02 10:00:00"),
            (1, "501"),
            (2, "EURUSD"),
            (3, "buy"),
            (4, "in"),
            (5, "1"),
            (6, "1.1000"),
            (7, "100"),
            (8, "-7"),
            (9, "0"),
            (10, "0"),
            (11, "0"),
            (12, "9 993.00"),
        ],
        vec![
            (0, "2024.01.02 10:30:00"),
            (1, "502"),
            (3, "credit"),
            (4, "in"),
            (5, "5"),
            (11, "500"),
            (12, "10 493.00"),
        ],
        vec![
            (0, "2024.01.02 11:00:00"),
            (1, "503"),
            (2, "EURUSD"),
            (3, "sell"),
            (4, "in/out"),
            (5, "1.5"),
            (6, "1.0970"),
            (7, "101"),
            (8, "- 10.5"),
            (9, "0"),
            (10, "- 1.20"),
            (11, "- 300.00"),
            (12, "10 181.30"),
        ],
        vec![
            (0, "2024.01.02 12:30:00"),
            (1, "504"),
            (2, "EURUSD"),
            (3, "buy"),
            (4, "out"),
            (5, "0.2"),
            (6, "1.0950"),
            (7, "102"),
            (8, "-1.4"),
            (9, "0"),
            (10, "0"),
            (11, "40"),
            (12, "10 219.90"),
        ],
        vec![
            (8, "-18.9"),
            (10, "-1.2"),
            (11, "10 240.00"),
            (12, "10 219.90"),
        ],
        vec![(0, "Positions ouvertes")],
        vec![
            (0, "Heure"),
            (1, "Position"),
            (2, "Symbole"),
            (3, "Type"),
            (4, "Volume"),
            (5, "Prix"),
            (6, "S / L"),
            (7, "T / P"),
            (8, "Prix du marché"),
            (9, "Swap"),
            (10, "Bénéfice"),
            (11, "Commentaire"),
        ],
        vec![
            (0, "2024.01.02 11:00:00"),
            (1, "101"),
            (2, "EURUSD"),
            (3, "sell"),
            (4, "0.3"),
            (5, "1.0970"),
            (8, "1.0960"),
            (9, "0"),
            (10, "30"),
        ],
        vec![(0, "Résultats")],
        vec![
            (0, "Bénéfice net total:"),
            (3, "-260"),
            (4, "Bénéfice brut:"),
            (7, "40"),
            (8, "Perte brute:"),
            (11, "-300"),
        ],
    ]
}

fn check_french(sheet: &Sheet) {
    let report = import_sheet(sheet).unwrap();
    assert_eq!(
        report.history.account.margin_mode,
        AccountMarginMode::RetailNetting
    );
    assert_eq!(report.mode, PairingMode::Fifo);
    assert_eq!(report.history.orders.len(), 4);
    assert_eq!(report.history.deals.len(), 5);
    let ledger = report.replay(|_| {}).unwrap();
    assert!(
        report.verify(&ledger).is_empty(),
        "{:?}",
        report.verify(&ledger)
    );
    let active = ledger.active_positions();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id(), PositionId(101));
    assert_eq!(active[0].side(), Side::Sell);
    assert_eq!(active[0].volume(), Volume("0.3".parse().unwrap()));
    // The reversal closed position 100 (1 lot) and the buy closed 0.2 of the short.
    assert_eq!(ledger.history_count(), 2);
    let first = ledger.history_positions().next().unwrap();
    assert_eq!(first.id(), PositionId(100));
    assert_eq!(first.commission().to_string(), "-14");
    assert_eq!(first.swap().to_string(), "-0.8");
}

#[test]
fn french_netting_report_with_reversal_xlsx() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netting-fr.xlsx");
    write_xlsx(&french_netting(), &path);
    let sheet = read_xlsx(&std::fs::read(&path).unwrap()).unwrap();
    check_french(&sheet);
    let via_path = import_path(&path).unwrap();
    assert_eq!(via_path.history.deals.len(), 5);
}

#[test]
fn french_netting_report_with_reversal_utf16_html() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netting-fr.html");
    write_html(&french_netting(), &path);
    let sheet = read_html(&std::fs::read(&path).unwrap());
    check_french(&sheet);
}

fn english_hedging_without_positions_table() -> Rows {
    vec![
        vec![(0, "Trade History Report")],
        vec![(0, "Account:"), (3, "42 (USD, Broker-Live, real, Hedge)")],
        vec![(0, "Orders")],
        vec![
            (0, "Open Time"),
            (1, "Order"),
            (2, "Symbol"),
            (3, "Type"),
            (4, "Volume"),
            (5, "Price"),
            (6, "S / L"),
            (7, "T / P"),
            (8, "Time"),
            (9, "State"),
            (11, "Comment"),
        ],
        vec![
            (0, "2024.03.01 10:00:00"),
            (1, "10"),
            (2, "GBPUSD"),
            (3, "buy"),
            (4, "1 / 1"),
            (5, "market"),
            (8, "2024.03.01 10:00:00"),
            (9, "filled"),
        ],
        vec![
            (0, "2024.03.01 10:01:00"),
            (1, "11"),
            (2, "GBPUSD"),
            (3, "buy"),
            (4, "2 / 2"),
            (5, "market"),
            (8, "2024.03.01 10:01:00"),
            (9, "filled"),
        ],
        vec![
            (0, "2024.03.01 10:02:00"),
            (1, "12"),
            (2, "GBPUSD"),
            (3, "sell"),
            (4, "0.5 / 0.5"),
            (5, "market"),
            (8, "2024.03.01 10:02:00"),
            (9, "filled"),
        ],
        vec![(0, "Deals")],
        vec![
            (0, "Time"),
            (1, "Deal"),
            (2, "Symbol"),
            (3, "Type"),
            (4, "Direction"),
            (5, "Volume"),
            (6, "Price"),
            (7, "Order"),
            (8, "Commission"),
            (9, "Fee"),
            (10, "Swap"),
            (11, "Profit"),
            (12, "Balance"),
            (13, "Comment"),
        ],
        vec![
            (0, "2024.03.01 09:00:00"),
            (1, "1"),
            (3, "balance"),
            (11, "3 328.61"),
            (12, "3 328.61"),
        ],
        vec![
            (0, "2024.03.01 10:00:00"),
            (1, "2"),
            (2, "GBPUSD"),
            (3, "buy"),
            (4, "in"),
            (5, "1"),
            (6, "1.2500"),
            (7, "10"),
        ],
        vec![
            (0, "2024.03.01 10:01:00"),
            (1, "3"),
            (2, "GBPUSD"),
            (3, "buy"),
            (4, "in"),
            (5, "2"),
            (6, "1.2510"),
            (7, "11"),
        ],
        vec![
            (0, "2024.03.01 10:02:00"),
            (1, "4"),
            (2, "GBPUSD"),
            (3, "sell"),
            (4, "out"),
            (5, "0.5"),
            (6, "1.2520"),
            (7, "12"),
            (11, "10"),
        ],
        vec![(11, "10"), (12, "3 338.61")],
        vec![(0, "Open Positions")],
        vec![
            (0, "Time"),
            (1, "Position"),
            (2, "Symbol"),
            (3, "Type"),
            (4, "Volume"),
            (5, "Price"),
            (6, "S / L"),
            (7, "T / P"),
            (8, "Market Price"),
            (9, "Swap"),
            (10, "Profit"),
            (11, "Comment"),
        ],
        vec![
            (0, "2024.03.01 10:00:00"),
            (1, "10"),
            (2, "GBPUSD"),
            (3, "buy"),
            (4, "0.5"),
            (5, "1.2500"),
            (8, "1.2530"),
            (9, "0"),
            (10, "15"),
        ],
        vec![
            (0, "2024.03.01 10:01:00"),
            (1, "11"),
            (2, "GBPUSD"),
            (3, "buy"),
            (4, "2"),
            (5, "1.2510"),
            (8, "1.2530"),
            (9, "0"),
            (10, "40"),
        ],
        vec![(0, "Working Orders")],
        vec![
            (0, "Open Time"),
            (1, "Order"),
            (2, "Symbol"),
            (3, "Type"),
            (4, "Volume"),
            (5, "Price"),
            (6, "S / L"),
            (7, "T / P"),
            (8, "Market Price"),
            (9, "State"),
            (11, "Comment"),
        ],
        vec![
            (0, "2024.03.01 10:05:00"),
            (1, "13"),
            (2, "GBPUSD"),
            (3, "sell limit"),
            (4, "1 / 0"),
            (5, "1.2600"),
            (8, "1.2530"),
            (9, "placed"),
        ],
    ]
}

#[test]
fn hedging_report_without_positions_table_matches_fifo_per_side() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hedging.html");
    write_html(&english_hedging_without_positions_table(), &path);
    let report = import_path(&path).unwrap();
    assert_eq!(report.mode, PairingMode::Native);
    assert_eq!(report.closed_positions, None);
    assert_eq!(report.open_positions.len(), 2);
    assert_eq!(report.history.orders.len(), 4);
    let ledger = report.replay(|_| {}).unwrap();
    assert!(
        report.verify(&ledger).is_empty(),
        "{:?}",
        report.verify(&ledger)
    );
    assert_eq!(
        ledger.active(PositionId(10)).unwrap().volume(),
        Volume("0.5".parse().unwrap())
    );
}

#[test]
fn garbage_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.xlsx");
    std::fs::write(&path, b"PK not a zip").unwrap();
    assert!(import_path(&path).is_err());
    let path = dir.path().join("x.html");
    std::fs::write(&path, b"<html>no tables</html>").unwrap();
    assert!(import_path(&path)
        .unwrap_err()
        .to_string()
        .contains("no deals"));
}
