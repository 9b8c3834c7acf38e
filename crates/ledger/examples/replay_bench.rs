//! Replay benchmark: synthetic netting histories of 10k, 100k and 1M deals.
//!
//! Each size runs in its own child process so peak memory figures are separate:
//! * `replay`: the history is generated into memory first, then `Ledger::replay` is timed alone
//!   (sorting, pairing, splitting; one core);
//! * `stream`: records are generated on the fly and fed to a live ledger (`apply_order` /
//!   `apply_deal`), so the process's peak resident memory above its baseline is the ledger's own.
//!
//! Run: `cargo run --release -p hedge-ledger --example replay_bench [sizes...]`

use hedge_ledger::generator::{generate, GenConfig, Generator};
use hedge_ledger::{HistoryLine, Ledger};
use std::time::Instant;

fn status_kb(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of this thread in seconds (from the scheduler's own accounting), so a busy machine does not
/// inflate the figures the way wall time does.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|ns| ns as f64 / 1e9)
        .unwrap_or(0.0)
}

fn child(mode: &str, deals: u64) {
    let cfg = GenConfig {
        deals,
        seed: 42,
        symbols: 4,
    };
    match mode {
        "replay" => {
            let h = generate(cfg);
            let n = h.deals.len() as f64;
            let t = Instant::now();
            let c = cpu_secs();
            let l = Ledger::replay(&h).expect("generated histories are valid");
            let cpu = cpu_secs() - c;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "replay {:>9} deals {:>9} orders: {:>7.3} s CPU ({:.3} s wall), {:>5.2} M deals/s ({} active, {} history, {} B/deal in tables)",
                h.deals.len(),
                h.orders.len(),
                cpu,
                secs,
                n / cpu / 1e6,
                l.active_count(),
                l.history_count(),
                l.heap_bytes() / h.deals.len().max(1)
            );
        }
        _ => {
            let base = status_kb("VmRSS:");
            let t = Instant::now();
            let mut l = Ledger::new(Default::default());
            let (mut nd, mut no) = (0u64, 0u64);
            for line in Generator::new(cfg) {
                match line {
                    HistoryLine::Order(o) => {
                        no += 1;
                        l.apply_order(&o).expect("valid");
                    }
                    HistoryLine::Deal(d) => {
                        nd += 1;
                        l.apply_deal(&d).expect("valid");
                    }
                    HistoryLine::Account(_) => {}
                }
            }
            let secs = t.elapsed().as_secs_f64();
            let peak = status_kb("VmHWM:");
            let per_deal = (peak.saturating_sub(base)) as f64 * 1024.0 / nd as f64;
            println!(
                "stream {nd:>9} deals {no:>9} order records: {secs:>8.3} s incl. generation, peak RSS {:.1} MB ({:.1} MB above baseline) = {per_deal:.0} bytes/deal",
                peak as f64 / 1024.0,
                (peak.saturating_sub(base)) as f64 / 1024.0
            );
            std::hint::black_box(&l);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--child" {
        let deals = args[3].parse().expect("size");
        child(&args[2], deals);
        return;
    }
    let sizes: Vec<u64> = if args.len() > 1 {
        args[1..].iter().filter_map(|a| a.parse().ok()).collect()
    } else {
        vec![10_000, 100_000, 1_000_000]
    };
    let exe = std::env::current_exe().expect("own path");
    for n in sizes {
        for mode in ["replay", "stream"] {
            let status = std::process::Command::new(&exe)
                .args(["--child", mode, &n.to_string()])
                .status()
                .expect("spawn child");
            assert!(status.success());
        }
    }
}
