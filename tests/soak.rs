//! `hedge soak` on three fixed seeds, a minute of trading each: the center, five agents and six
//! simulated terminals under requotes, rejects, thin liquidity, stop-outs, terminal restarts,
//! `kill -9` of the center and of every agent, refused writes, slow and lost answers. Every
//! invariant must hold after the system settles; a failure names the seed and the broken
//! invariant, and `hedge soak --seed N --keep` replays it with the logs kept.
//!
//! `HEDGE_SOAK_SECONDS` shortens or lengthens each run (default 60); the seeds run one after the
//! other, so the machine's two cores are not shared between two whole systems.

use std::process::Command;

const SEEDS: [u64; 3] = [11, 22, 33];

#[test]
fn three_seeded_soaks_end_with_every_invariant_holding() {
    let seconds = std::env::var("HEDGE_SOAK_SECONDS").unwrap_or_else(|_| "60".into());
    let mut failures = Vec::new();
    for seed in SEEDS {
        let out = Command::new(env!("CARGO_BIN_EXE_hedge"))
            .args([
                "soak",
                "--seed",
                &seed.to_string(),
                "--duration",
                &seconds,
                "--settle-timeout",
                "90",
                "--json",
            ])
            .env("RUST_LOG", "error")
            .output()
            .expect("running hedge soak");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = match serde_json::from_str(&stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!(
                    "seed {seed}: no JSON report ({e}); stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
        };
        println!(
            "seed {seed}: ok={} settle_ms={} trades={} faults={}",
            report["ok"], report["settle_ms"], report["trades"], report["faults"]
        );
        if report["ok"] != serde_json::Value::Bool(true) || !out.status.success() {
            let broken: Vec<String> = report["invariants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["ok"] != serde_json::Value::Bool(true))
                .map(|v| format!("{} {} {}", v["name"], v["figures"], v["details"]))
                .collect();
            failures.push(format!(
                "seed {seed}: crashes {} settle_ms {} broken {broken:?} (logs in {})",
                report["crashes"], report["settle_ms"], report["folder"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
