//! Plan computation for a realistic book: 50 client accounts on 20 symbols each (one open position
//! per client and symbol), two hedge accounts holding hedges on every symbol, a 60/40 allocation.
//! Times the whole answer the center gives for `GET /v1/plan/{login}` without HTTP (reading every
//! registration, exposure, hedge, pause and allocation from SQLite, then computing every hedge
//! account's plan), and the pure computation alone. Run: `cargo bench -p hedge-center --bench plan`.

use hedge_center::model::{
    AccountRegistration, AccountRole, ActionKind, ActionRequest, AllocationWeight,
    PositionEventKind, PositionReport,
};
use hedge_center::plan;
use hedge_center::store::{Store, StoreLocation};
use hedge_domain::{AccountMarginMode, Login, PositionId, Side, SymbolMap, SymbolSpec, Volume};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::time::{Duration, Instant};

const CLIENTS: u64 = 50;
const SYMBOLS: usize = 20;
const HEDGES: [Login; 2] = [Login(900), Login(901)];

fn symbols() -> Vec<String> {
    (0..SYMBOLS).map(|k| format!("SYM{k:02}USD")).collect()
}

fn registration(login: Login, role: AccountRole, suffix: &str) -> AccountRegistration {
    AccountRegistration {
        login,
        role,
        server: "Bench-Server".into(),
        company: "Bench Broker".into(),
        margin_mode: AccountMarginMode::RetailHedging,
        symbol_map: SymbolMap::from_affix(suffix),
        hedge_ratio: Decimal::ONE,
        hedge_login: None,
        symbols: symbols()
            .iter()
            .map(|s| SymbolSpec::forex(format!("{s}{suffix}"), 5))
            .collect(),
        currency: "USD".into(),
    }
}

async fn fill(store: &Store) {
    for (k, h) in HEDGES.iter().enumerate() {
        let suffix = if k == 0 { ".h" } else { ".pro" };
        store
            .register_account(
                "bench".into(),
                registration(*h, AccountRole::Hedge, suffix),
                1,
            )
            .await
            .expect("hedge account registers");
    }
    let mut id = 0u64;
    for c in 1..=CLIENTS {
        let login = Login(c);
        store
            .register_account(
                "bench".into(),
                registration(login, AccountRole::Client, ".r"),
                1,
            )
            .await
            .expect("client registers");
        for (k, s) in symbols().iter().enumerate() {
            id += 1;
            let side = if (c + k as u64).is_multiple_of(3) {
                Side::Sell
            } else {
                Side::Buy
            };
            let report = PositionReport {
                time_ms: 2,
                ..PositionReport::new(
                    PositionEventKind::Open,
                    login,
                    PositionId(id),
                    s.as_str(),
                    side,
                    Volume(Decimal::new(1 + (id % 97) as i64, 2)),
                    1,
                )
            };
            store
                .report("bench".into(), report, 2)
                .await
                .expect("position stored");
        }
    }
    let mut allocation = ActionRequest::new(ActionKind::SetAllocation);
    allocation.reason = "bench".into();
    allocation.weights = Some(vec![
        AllocationWeight {
            hedge_login: HEDGES[0],
            weight: Decimal::new(6, 1),
        },
        AllocationWeight {
            hedge_login: HEDGES[1],
            weight: Decimal::new(4, 1),
        },
    ]);
    store
        .action("bench".into(), "bench-allocation".into(), allocation, 3)
        .await
        .expect("allocation set");
}

fn report(what: &str, n: usize, took: Duration) {
    let per = took.as_secs_f64() / n as f64;
    println!(
        "{what}: {n} runs in {:.3} s, {:.1} µs per plan, {:.0} plans/s",
        took.as_secs_f64(),
        per * 1e6,
        1.0 / per
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    runtime.block_on(async {
        let store = Store::open(&StoreLocation::Sqlite(dir.path().join("bench.db")))
            .await
            .expect("store opens");
        fill(&store).await;
        let inputs = store
            .plan_inputs(HEDGES[0])
            .await
            .expect("inputs read")
            .expect("a hedge account");
        let plans = plan::compute_all(&inputs);
        let items: usize = plans.values().map(|p| p.items.len()).sum();
        println!(
            "book: {} client exposures, {} hedge accounts, {items} plan items",
            inputs.exposures.len(),
            inputs.accounts.len()
        );
        // Warm the caches and the readers first.
        for _ in 0..20 {
            let inputs = store.plan_inputs(HEDGES[0]).await.expect("read");
            black_box(inputs.expect("a hedge account"));
        }
        let n = 500;
        let start = Instant::now();
        for _ in 0..n {
            let inputs = store
                .plan_inputs(HEDGES[0])
                .await
                .expect("inputs read")
                .expect("a hedge account");
            black_box(plan::compute(&inputs, HEDGES[0]));
        }
        report("read inputs + compute (SQLite)", n, start.elapsed());
        let n = 2_000;
        let start = Instant::now();
        for _ in 0..n {
            black_box(plan::compute_all(black_box(&inputs)));
        }
        report(
            "compute every hedge account's plan (pure)",
            n,
            start.elapsed(),
        );
    });
}
