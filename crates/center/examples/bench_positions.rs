//! How the dashboard copes with many positions: fills a center (SQLite) with N open client positions
//! (default 10,000) through the `/v1` API, then measures the page in headless Chromium with
//! `crates/dashboard/browser-tests/bench.mjs` and prints the figures.
//!
//! `cargo run --release -p hedge-center --example bench_positions -- 10000`

use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::{CenterConfig, CenterServer};
use hedge_center_api::model::*;
use hedge_center_api::CenterClient;
use hedge_domain::{AccountMarginMode, Login, Magic, PositionId, Side, SymbolMap, SymbolSpec};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN: &str = "bench-operator-token";
const CLIENT: &str = "bench-client-token-1";
const HEDGER: &str = "bench-hedger-token-1";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let tokens = Tokens::new(vec![
        TokenEntry::new("operator", Role::Admin, ADMIN).map_err(anyhow::Error::msg)?,
        TokenEntry::new("client-2001", Role::Client(Login(2001)), CLIENT)
            .map_err(anyhow::Error::msg)?,
        TokenEntry::new("hedger-1001", Role::Hedge(Login(1001)), HEDGER)
            .map_err(anyhow::Error::msg)?,
    ]);
    let center =
        CenterServer::start(CenterConfig::sqlite(dir.path().join("c.sqlite"), tokens)).await?;
    let url = center.url();
    let symbols = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF"];
    for (login, role, token) in [
        (1001, AccountRole::Hedge, HEDGER),
        (2001, AccountRole::Client, CLIENT),
    ] {
        CenterClient::new(&url, Some(token.into()))?
            .register_account(&AccountRegistration {
                login: Login(login),
                role,
                server: "Bench".into(),
                company: "Bench".into(),
                margin_mode: AccountMarginMode::RetailHedging,
                symbol_map: SymbolMap::identity(),
                hedge_ratio: 1.into(),
                hedge_login: None,
                symbols: symbols.iter().map(|s| SymbolSpec::forex(*s, 5)).collect(),
                currency: "USD".into(),
            })
            .await?;
    }

    let started = Instant::now();
    let workers = 16u64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = CenterClient::new(&url, Some(CLIENT.into()))?;
        tasks.push(tokio::spawn(async move {
            let mut n = w;
            while n < count {
                let id = 100_000 + n;
                let report = PositionReport {
                    kind: PositionEventKind::Open,
                    login: Login(2001),
                    position_id: PositionId(id),
                    symbol: symbols[(n % 5) as usize].into(),
                    account_symbol: String::new(),
                    side: if n % 3 == 0 { Side::Sell } else { Side::Buy },
                    volume: "0.01".parse().map_err(anyhow::Error::msg)?,
                    price: Some("1.08412".parse().map_err(anyhow::Error::msg)?),
                    sl: None,
                    tp: None,
                    time_ms: 1_763_700_000_000 + n as i64,
                    magic: Magic(7),
                    comment: format!("bench {n}"),
                    seq: 1,
                    idempotency_key: IdempotencyKey::report(Login(2001), PositionId(id), 1),
                    exit: None,
                };
                client.report_position(&report).await?;
                n += workers;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "filled the center with {count} open positions in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The browser half lives with the dashboard it measures.
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboard");
    let status = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(crate_dir.join("browser-tests/bench.mjs"))
            .arg(format!("{url}/"))
            .arg(ADMIN)
            .arg(count.to_string())
            .current_dir(crate_dir.join("browser-tests"))
            .status()
    })
    .await??;
    tokio::time::timeout(Duration::from_secs(10), center.shutdown())
        .await
        .ok();
    anyhow::ensure!(status.success(), "the browser measurement failed");
    Ok(())
}
