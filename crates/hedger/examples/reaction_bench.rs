#![allow(dead_code)]
//! Reaction benchmark of the hedger over real sockets (center and simulated terminal in process).
//!
//! `cargo run --release -p hedge-hedger --example reaction_bench [-- RUNS]`
//!
//! - trigger mode: the own position's closing deal arrives at the hedger → every hedge order of the
//!   plan (held in memory) answered by the terminal (an upper bound of "written to the socket");
//! - mirror mode: a client open reported to the center → the hedge order answered, through the
//!   center's event stream and plan over loopback;
//! - resident memory of this process (center, simulator and hedger together: an upper bound).

include!("../tests/support/world.rs");

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(name: &str, mut v: Vec<u64>) {
    v.sort_unstable();
    println!(
        "{name}: runs {} p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        v.len(),
        percentile(&v, 0.5) as f64 / 1000.0,
        percentile(&v, 0.99) as f64 / 1000.0,
        v.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);

    // Trigger mode: two symbols in the plan, one trigger per run.
    let mut w = World::start(Setup::default()).await;
    let mut rx = w.events.subscribe();
    let mut trigger_us = Vec::new();
    for i in 0..runs {
        let eur = lots(1 + (i as i64 % 5));
        let xau = lots(1 + (i as i64 % 3));
        w.client(
            10_000 + i as u64 * 2,
            PositionEventKind::Open,
            Side::Buy,
            eur,
        )
        .await;
        w.client_symbol(
            10_001 + i as u64 * 2,
            "XAUUSD",
            PositionEventKind::Open,
            Side::Sell,
            xau,
        )
        .await;
        if !(w.plan_volume("EURUSD", eur).await && w.plan_volume("XAUUSD", xau).await) {
            eprintln!("plan did not follow at run {i}");
            continue;
        }
        while rx.try_recv().is_ok() {}
        w.fire_trigger();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Ok(HedgerEvent::Batch {
                    elapsed_us, orders, ..
                })) => {
                    if orders == 2 {
                        trigger_us.push(elapsed_us);
                    }
                    break;
                }
                _ => continue,
            }
        }
        // Let the records reach the center so the next plan is only the new exposure.
        let outbox = w.outbox.clone();
        wait_for(Duration::from_secs(5), || {
            outbox.pending().unwrap_or(1) == 0
        })
        .await;
        let plan = w.plan.clone();
        wait_for(Duration::from_secs(5), || {
            plan.get().is_some_and(|p| p.items.is_empty())
        })
        .await;
    }
    report(
        "trigger -> all hedge orders answered (2 orders)",
        trigger_us,
    );
    w.shutdown().await;

    // Mirror mode: a client open through the center to the hedge order.
    let mut w = World::start(Setup {
        mode: Mode::Mirror,
        ..Setup::default()
    })
    .await;
    let mut rx = w.events.subscribe();
    let mut mirror_us = Vec::new();
    for i in 0..runs {
        while rx.try_recv().is_ok() {}
        let started = Instant::now();
        w.client(
            50_000 + i as u64,
            PositionEventKind::Open,
            Side::Buy,
            lots(1),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Ok(HedgerEvent::Order(o))) if o.outcome == "filled" => {
                    mirror_us.push(started.elapsed().as_micros() as u64);
                    break;
                }
                _ => continue,
            }
        }
        let outbox = w.outbox.clone();
        wait_for(Duration::from_secs(5), || {
            outbox.pending().unwrap_or(1) == 0
        })
        .await;
    }
    report(
        "mirror: client open reported -> hedge order answered",
        mirror_us,
    );
    if let Some(kb) = rss_kb() {
        println!(
            "resident memory of the whole process (center + simulator + hedger): {:.1} MB",
            kb as f64 / 1024.0
        );
    }
    w.shutdown().await;
}
