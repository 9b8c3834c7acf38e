//! Import + replay of a generated native (UTF-16 xlsx) MT5 report.
//!
//! `report_bench write <file> [deals] [hedging]` writes the report (of a netting account, or with
//! `hedging` the same trading on a hedging account); `report_bench <file>` imports and replays
//! it, printing the time, the peak resident memory (VmHWM) and the package's unzipped size. Two
//! runs, so the peak memory is the import's alone.

use hedge_ledger::generator::{generate, GenConfig};
use hedge_ledger::report::writer::{write_xlsx, WriteOptions};
use hedge_ledger::report::{import_sheet, read_xlsx};
use std::time::Instant;

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("write") {
        let path = args
            .get(1)
            .ok_or("usage: report_bench write <file> [deals] [hedging]")?;
        let deals = args
            .get(2)
            .map(|d| d.parse())
            .transpose()?
            .unwrap_or(100_000);
        let mut h = generate(GenConfig {
            deals,
            seed: 7,
            symbols: 4,
        });
        h.account.login = hedge_domain::Login(12345);
        if args.get(3).map(String::as_str) == Some("hedging") {
            h = hedge_ledger::report::synth::to_hedging(&h);
        }
        std::fs::write(path, write_xlsx(&h, &WriteOptions::default())?)?;
        println!(
            "wrote {path}: {} deals, {} orders",
            h.deals.len(),
            h.orders.len()
        );
        return Ok(());
    }
    let path = args.first().ok_or("usage: report_bench <file.xlsx>")?;
    let bytes = std::fs::read(path)?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes))?;
    let mut unzipped = 0u64;
    for i in 0..zip.len() {
        unzipped += zip.by_index(i)?.size();
    }
    drop(zip);
    let start = Instant::now();
    let sheet = read_xlsx(&bytes)?;
    let read = start.elapsed();
    let report = import_sheet(&sheet)?;
    drop(sheet);
    let imported = start.elapsed();
    let ledger = report.replay(|_| {})?;
    let total = start.elapsed();
    let mismatches = report.verify(&ledger);
    let peak = peak_kib() * 1024;
    println!(
        "{} deals: import {:.3} s (sheet {:.3} s, tables {:.3} s), import + replay {:.3} s; peak memory {:.1} MiB = {:.2}x the unzipped package ({:.1} MiB, file {:.1} MiB); {} differences",
        report.history.deals.len(),
        imported.as_secs_f64(),
        read.as_secs_f64(),
        (imported - read).as_secs_f64(),
        total.as_secs_f64(),
        peak as f64 / 1048576.0,
        peak as f64 / unzipped as f64,
        unzipped as f64 / 1048576.0,
        bytes.len() as f64 / 1048576.0,
        mismatches.len()
    );
    Ok(())
}
