//! Reports written the way the terminal writes them (native UTF-16 xlsx, UTF-16 html, every
//! language) import and replay to the history's own positions.

use hedge_ledger::generator::{generate, GenConfig};
use hedge_ledger::report::synth::to_hedging;
use hedge_ledger::report::writer::{summary, write_html, write_xlsx, Locale, WriteOptions};
use hedge_ledger::report::{import_bytes, ImportedReport};
use hedge_ledger::{History, Ledger, PairingMode};
use proptest::prelude::*;

/// (id, symbol, signed volume) of every active position, sorted.
fn actives(l: &Ledger) -> Vec<(u64, String, String)> {
    let mut v: Vec<_> = l
        .active_positions()
        .iter()
        .map(|p| {
            (
                p.id().get(),
                p.symbol().to_owned(),
                format!("{:?} {}", p.side(), p.volume()),
            )
        })
        .collect();
    v.sort();
    v
}

fn check(history: &History, report: &ImportedReport, what: &str) {
    let (open, closed) = summary(history);
    assert_eq!(report.open_positions.len(), open.len(), "{what}: open rows");
    assert_eq!(report.closed_positions, closed, "{what}: closed count");
    assert_eq!(
        report.history.deals.len(),
        history.deals.len(),
        "{what}: deals"
    );
    let imported = report.replay(|_| {}).unwrap();
    let mismatches = report.verify(&imported);
    assert!(mismatches.is_empty(), "{what}: {mismatches:?}");
    let hedging = !history.account.margin_mode.is_netting();
    let mode = if hedging {
        PairingMode::Native
    } else {
        PairingMode::Fifo
    };
    assert_eq!(report.mode, mode, "{what}");
    let direct = Ledger::replay_with(history, mode, |_| {}).unwrap();
    assert_eq!(
        actives(&imported),
        actives(&direct),
        "{what}: active positions"
    );
    assert_eq!(
        imported.closed_position_count(),
        direct.closed_position_count(),
        "{what}: closed positions"
    );
    assert_eq!(imported.net_volumes(), direct.net_volumes(), "{what}");
}

fn roundtrip(history: &History, opts: &WriteOptions) {
    let xlsx = write_xlsx(history, opts).unwrap();
    // As the terminal writes it: UTF-16LE parts with a BOM.
    let r = import_bytes(&xlsx, "xlsx").unwrap();
    check(history, &r, &format!("xlsx {:?}", opts.locale));
    let html = write_html(history, opts);
    let r = import_bytes(&html, "html").unwrap();
    check(history, &r, &format!("html {:?}", opts.locale));
}

fn history(seed: u64, deals: u64, symbols: usize) -> History {
    let mut h = generate(GenConfig {
        deals,
        seed,
        symbols,
    });
    h.account.login = hedge_domain::Login(1000 + seed);
    h
}

#[test]
fn every_locale_netting_both_formats() {
    for (i, locale) in Locale::ALL.into_iter().enumerate() {
        let netting = history(i as u64 + 1, 400, 3);
        let opts = WriteOptions {
            locale,
            hidden_deal_column: i % 2 == 0,
            bom: i % 3 != 0,
            stray_byte: i % 2 == 1,
        };
        roundtrip(&netting, &opts);
    }
}

#[test]
fn hedging_reports_with_partial_closes_replay_to_their_positions() {
    for (i, locale) in Locale::ALL.into_iter().enumerate() {
        let opts = WriteOptions {
            locale,
            ..WriteOptions::default()
        };
        roundtrip(&to_hedging(&history(i as u64 + 1, 400, 3)), &opts);
    }
    // Longer histories on fewer symbols: more positions partly closed side by side.
    for seed in 40..44 {
        roundtrip(
            &to_hedging(&history(seed, 800, 2)),
            &WriteOptions::default(),
        );
    }
}

#[test]
fn native_xlsx_parts_are_utf16le_with_bom_and_folders_are_listed() {
    let h = history(3, 50, 2);
    let bytes = write_xlsx(&h, &WriteOptions::default()).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    assert!(names.iter().any(|n| n == "xl/"));
    assert!(names.iter().any(|n| n == "xl/sharedStrings.xml"));
    for name in names
        .iter()
        .filter(|n| n.ends_with(".xml") || n.ends_with(".rels"))
    {
        let mut part = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(name).unwrap(), &mut part).unwrap();
        assert_eq!(&part[..4], &[0xFF, 0xFE, b'<', 0], "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn generated_reports_replay_to_their_positions(
        seed in 0u64..10_000,
        deals in 1u64..300,
        symbols in 1usize..5,
        locale in 0usize..11,
    ) {
        let h = history(seed, deals, symbols);
        let opts = WriteOptions { locale: Locale::ALL[locale], ..WriteOptions::default() };
        roundtrip(&h, &opts);
    }
}
