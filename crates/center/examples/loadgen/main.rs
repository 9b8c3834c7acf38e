//! Load generator for the center, and the same figures for the legacy center in one run.
//!
//! `cargo run --release -p hedge-center --example loadgen -- [--seconds 3] [--paced-seconds 3] [--conns 64]
//!     [--legacy-center http://127.0.0.1:18080] [--pg "host=127.0.0.1 user=postgres dbname=test"]
//!     [--instances 1] [--no-sqlite] [--no-normal] [--race-conns 32] [--race-rounds 100] [--race-hot 50]`
//!
//! or, comparing the stores only (`scripts/bench-center.sh --store pg --instances N`):
//! `loadgen --compare-stores --pg "..." [--instances 2] [--rounds 1] [--seconds 3] [--conns 32]`
//!
//! `--instances N` starts N centers on one PostgreSQL schema and splits the connections among them.
//!
//! Starts a center in-process (SQLite in a temporary directory, with `synchronous=FULL` and
//! `NORMAL`; PostgreSQL in a fresh schema with `--pg`) and drives it over loopback with many
//! concurrent keep-alive connections (a minimal HTTP/1.1 client, `http.rs`): durable
//! position reports/s, plan reads/s, legacy `new_position`/s and `all_positions`/s, p50/p99
//! latency at a paced 1,000 req/s (measured from the scheduled send time, so a stall is not
//! hidden), then a lost-update race (see [`race`]) on the legacy endpoints and on `/v1`. The same figures for the legacy center with `--legacy-center`, and
//! the ratios. `scripts/bench-center.sh` starts the legacy center and passes `--legacy-center`.

mod http;

use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::store::{StoreLocation, Synchronous};
use hedge_center::{CenterConfig, CenterServer};
use hedge_center_api::model::{
    AccountRegistration, AccountRole, PositionEventKind, PositionReport,
};
use hedge_center_api::CenterClient;
use hedge_domain::{AccountMarginMode, Login, PositionId, Side, SymbolMap, SymbolSpec, Volume};
use http::{connect, send};
use rust_decimal::Decimal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT_TOKEN: &str = "bench-client-token";
const HEDGE_TOKEN: &str = "bench-hedge-token";
const CLIENT: Login = Login(1001);
const HEDGE: Login = Login(2001);

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Report,
    LegacyNew,
    Plan,
    LegacyAll,
}

#[derive(Clone)]
struct Target {
    /// Where this connection goes.
    addr: SocketAddr,
    /// Every instance of the target (several centers on one PostgreSQL schema): connection `i`
    /// goes to instance `i % n`, so the load is split evenly.
    instances: Vec<SocketAddr>,
    next_id: Arc<AtomicU64>,
}

impl Target {
    fn new(instances: Vec<SocketAddr>) -> Target {
        Target {
            addr: instances[0],
            instances,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The target as connection `i` sees it.
    fn conn(&self, i: usize) -> Target {
        Target {
            addr: self.instances[i % self.instances.len()],
            ..self.clone()
        }
    }
}

fn request(target: &Target, op: Op) -> Vec<u8> {
    match op {
        Op::Report => {
            let id = target.next_id.fetch_add(1, Ordering::Relaxed);
            let side = if id.is_multiple_of(3) {
                Side::Sell
            } else {
                Side::Buy
            };
            let symbol = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"][(id % 4) as usize];
            report_request(
                target,
                id,
                symbol,
                side,
                Decimal::new(1 + (id % 50) as i64, 2),
            )
        }
        Op::LegacyNew => http_request(
            target,
            "GET",
            "/new_position/",
            None,
            br#"{"symbol": "EURUSD", "volume": 0.01, "side": 0}"#,
        ),
        Op::Plan => http_request(
            target,
            "GET",
            &format!("/v1/plan/{HEDGE}"),
            Some(HEDGE_TOKEN),
            b"",
        ),
        Op::LegacyAll => http_request(target, "GET", "/all_positions/", None, b""),
    }
}

/// The open of position `id` as a `/v1` report.
fn report_request(target: &Target, id: u64, symbol: &str, side: Side, volume: Decimal) -> Vec<u8> {
    let report = PositionReport::new(
        PositionEventKind::Open,
        CLIENT,
        PositionId(id),
        symbol,
        side,
        Volume(volume),
        1,
    );
    http_request(
        target,
        "POST",
        "/v1/positions/events",
        Some(CLIENT_TOKEN),
        &serde_json::to_vec(&report).unwrap_or_default(),
    )
}

/// One HTTP/1.1 request as it goes on the wire.
fn http_request(
    target: &Target,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", target.addr);
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    wire.extend_from_slice(body);
    wire
}

struct Figures {
    per_sec: f64,
    errors: u64,
    /// p50 and p99 of the answered requests.
    p50: Duration,
    p99: Duration,
}

/// As many requests as `conns` keep-alive connections can push for `seconds`.
async fn closed_loop(target: &Target, op: Op, conns: usize, seconds: f64) -> Figures {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..conns {
        let target = target.conn(i);
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(target.addr).await;
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let sent = Instant::now();
                match send(&mut sender, request(&target, op)).await {
                    Ok(_) => lat.push(sent.elapsed()),
                    Err(_) => {
                        errors += 1;
                        sender = connect(target.addr).await;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap_or_default();
        all.extend(l);
        errors += e;
    }
    let per_sec = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort();
    Figures {
        per_sec,
        errors,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Requests at a fixed rate; latency from each request's scheduled time to its answer.
async fn paced(
    target: &Target,
    op: Op,
    rate: u64,
    seconds: f64,
    conns: usize,
) -> (Duration, Duration, u64) {
    let total = (rate as f64 * seconds) as u64;
    let (tx, rx) = async_channel::<Instant>(total as usize);
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut workers = Vec::new();
    for i in 0..conns {
        let target = target.conn(i);
        let rx = rx.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = connect(target.addr).await;
            let mut lat = Vec::new();
            let mut errors = 0;
            while let Ok(scheduled) = rx.recv().await {
                let r = send(&mut sender, request(&target, op)).await;
                if r.is_err() {
                    errors += 1;
                    sender = connect(target.addr).await;
                }
                lat.push(scheduled.elapsed());
            }
            (lat, errors)
        }));
    }
    drop(rx);
    // Paced from a thread of its own: tokio's timer has a 1 ms granularity, so a request due at
    // `at` would leave up to 1 ms late and that delay, the generator's own, would be counted as the
    // server's latency. A thread sleeping until each send time leaves within tens of microseconds.
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let at = start + interval * i as u32;
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if tx.blocking_send(at).is_err() {
                break;
            }
        }
    });
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((l, e)) = w.await {
            all.extend(l);
            errors += e;
        }
    }
    all.sort();
    (percentile(&all, 0.50), percentile(&all, 0.99), errors)
}

/// A tiny multi-consumer channel on top of tokio's mpsc.
fn async_channel<T: Send + 'static>(cap: usize) -> (tokio::sync::mpsc::Sender<T>, Shared<T>) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap.max(1));
    (tx, Shared(Arc::new(tokio::sync::Mutex::new(rx))))
}

struct Shared<T>(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<T>>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    async fn recv(&self) -> Result<T, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}

/// Which endpoint a race phase reports through.
#[derive(Clone, Copy, PartialEq)]
enum RaceApi {
    /// `GET /new_position/`, read back from `GET /all_positions/` (the center and the legacy center).
    Legacy,
    /// `POST /v1/positions/events`, read back from the plan's exposure (the center only).
    V1,
}

/// What one race phase acknowledged and what the server held afterwards, in hundredths of a lot.
#[derive(Default)]
struct Race {
    acked: u64,
    errors: u64,
    sent: u64,
    stored: u64,
    symbols: usize,
    /// Symbols whose stored total differs from what was acknowledged for them.
    wrong: usize,
}

fn race_request(target: &Target, api: RaceApi, symbol: &str, id: u64, hundredths: u64) -> Vec<u8> {
    let volume = Decimal::new(hundredths as i64, 2);
    match api {
        RaceApi::Legacy => http_request(
            target,
            "GET",
            "/new_position/",
            None,
            format!(r#"{{"symbol": "{symbol}", "volume": {volume}, "side": 0}}"#).as_bytes(),
        ),
        RaceApi::V1 => report_request(target, id, symbol, Side::Buy, volume),
    }
}

/// Provokes lost updates: in each of `rounds` rounds every connection waits at a barrier, then
/// all send the first report of one fresh symbol at the same moment (the legacy center's
/// check-then-insert and DataFrame enlargement race here); then every connection sends `hot`
/// reports of one shared symbol back to back (its read-modify-write races here). Buys only, so
/// the legacy center (which sums whatever the side) and the center (which nets) must both hold
/// exactly the acknowledged sum. On `/v1` the connections go in pairs that send the same
/// position with the same key at the same moment: it must be stored once.
async fn race(target: &Target, api: RaceApi, conns: usize, rounds: u64, hot: u64) -> Race {
    let tag = format!("R{:04x}", rand::random::<u16>());
    let n = conns as u64;
    let base = target
        .next_id
        .fetch_add(rounds * n + hot * n + 1, Ordering::Relaxed);
    let barrier = Arc::new(tokio::sync::Barrier::new(conns));
    let mut tasks = Vec::new();
    for j in 0..n {
        let (target, tag, barrier) = (target.conn(j as usize), tag.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(target.addr).await;
            // (symbol, position id, hundredths) of every acknowledged report.
            let mut acked: Vec<(String, u64, u64)> = Vec::new();
            let mut errors = 0u64;
            let mut plan: Vec<(String, u64, u64)> = Vec::new();
            for r in 0..rounds {
                let (slot, hundredths) = match api {
                    RaceApi::Legacy => (j, 1 + j % 5),
                    RaceApi::V1 => (j / 2, 1 + (j / 2) % 5),
                };
                plan.push((format!("{tag}n{r}"), base + r * n + slot, hundredths));
            }
            for k in 0..hot {
                plan.push((format!("{tag}hot"), base + rounds * n + j * hot + k, 1));
            }
            for (i, (symbol, id, hundredths)) in plan.into_iter().enumerate() {
                if i as u64 <= rounds {
                    barrier.wait().await;
                }
                let req = race_request(&target, api, &symbol, id, hundredths);
                match send(&mut sender, req).await {
                    Ok(_) => acked.push((symbol, id, hundredths)),
                    Err(_) => {
                        errors += 1;
                        sender = connect(target.addr).await;
                    }
                }
            }
            (acked, errors)
        }));
    }
    let mut sent: std::collections::HashMap<String, u64> = Default::default();
    let mut ids = std::collections::HashSet::new();
    let mut out = Race::default();
    for t in tasks {
        let Ok((acked, errors)) = t.await else {
            continue;
        };
        out.errors += errors;
        out.acked += acked.len() as u64;
        for (symbol, id, hundredths) in acked {
            // A position acknowledged twice (same key) counts once.
            if ids.insert(id) {
                *sent.entry(symbol).or_default() += hundredths;
            }
        }
    }
    let stored = match api {
        RaceApi::Legacy => legacy_totals(target).await,
        RaceApi::V1 => plan_totals(target).await,
    };
    out.symbols = sent.len();
    for (symbol, units) in &sent {
        let held = stored.get(symbol).copied().unwrap_or(0);
        out.sent += units;
        out.stored += held;
        if held != *units {
            out.wrong += 1;
        }
    }
    out
}

/// `GET /all_positions/` as hundredths per symbol (the body is a JSON string holding the object).
async fn legacy_totals(target: &Target) -> std::collections::HashMap<String, u64> {
    let mut sender = connect(target.addr).await;
    let body = send(&mut sender, request(target, Op::LegacyAll))
        .await
        .unwrap_or_default();
    let inner: String = serde_json::from_slice(&body).unwrap_or_default();
    let book: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&inner).unwrap_or_default();
    book.into_iter()
        .map(|(symbol, row)| {
            let volume = row["volume"].as_f64().unwrap_or(0.0);
            (symbol, (volume * 100.0).round().max(0.0) as u64)
        })
        .collect()
}

/// The plan's net exposure per symbol (items, residuals, and the exposure of clients that never
/// registered, which no plan can convert and so lists per client) as hundredths, read exactly.
async fn plan_totals(target: &Target) -> std::collections::HashMap<String, u64> {
    let mut sender = connect(target.addr).await;
    let body = send(&mut sender, request(target, Op::Plan))
        .await
        .unwrap_or_default();
    let Ok(plan) = serde_json::from_slice::<hedge_center_api::model::HedgePlan>(&body) else {
        eprintln!("cannot read the plan back");
        return Default::default();
    };
    let hundredths = |v: Volume| {
        rust_decimal::prelude::ToPrimitive::to_u64(&(v.0.abs() * Decimal::ONE_HUNDRED)).unwrap_or(0)
    };
    let mut totals = std::collections::HashMap::new();
    for (symbol, exposure) in plan
        .items
        .iter()
        .map(|i| (&i.symbol, i.exposure))
        .chain(plan.residuals.iter().map(|r| (&r.symbol, r.exposure)))
        .chain(
            plan.client_residuals
                .iter()
                .map(|r| (&r.symbol, r.exposure)),
        )
    {
        *totals.entry(symbol.clone()).or_insert(0) += hundredths(exposure);
    }
    totals
}

struct Row {
    name: String,
    /// Durable `/v1` reports (center only).
    reports: Option<Figures>,
    /// `GET /v1/plan/{hedge}` (center only).
    plan: Option<Figures>,
    legacy_new: Figures,
    legacy_all: Figures,
    /// p50, p99, errors at 1,000 req/s of `/v1` reports (center only).
    paced_reports: Option<(Duration, Duration, u64)>,
    /// The same for `GET /new_position/`.
    paced_legacy: (Duration, Duration, u64),
    race_legacy: Race,
    race_v1: Option<Race>,
}

struct Settings {
    seconds: f64,
    /// Length of each paced 1,000 req/s run: longer than `seconds` gives a steadier p99.
    paced_seconds: f64,
    conns: usize,
    race_conns: usize,
    race_rounds: u64,
    race_hot: u64,
}

async fn measure(name: &str, target: Target, center: bool, s: &Settings) -> Row {
    eprintln!("measuring {name} ...");
    let (seconds, conns) = (s.seconds, s.conns);
    let (reports, plan) = if center {
        (
            Some(closed_loop(&target, Op::Report, conns, seconds).await),
            Some(closed_loop(&target, Op::Plan, conns, seconds).await),
        )
    } else {
        (None, None)
    };
    let legacy_new = closed_loop(&target, Op::LegacyNew, conns, seconds).await;
    let legacy_all = closed_loop(&target, Op::LegacyAll, conns, seconds).await;
    let paced_reports = if center {
        Some(paced(&target, Op::Report, 1000, s.paced_seconds, 32).await)
    } else {
        None
    };
    let paced_legacy = paced(&target, Op::LegacyNew, 1000, s.paced_seconds, 32).await;
    // Last, so the extra symbols do not weigh on the read figures above.
    let race_legacy = race(
        &target,
        RaceApi::Legacy,
        s.race_conns,
        s.race_rounds,
        s.race_hot,
    )
    .await;
    let race_v1 = if center {
        Some(
            race(
                &target,
                RaceApi::V1,
                s.race_conns,
                s.race_rounds,
                s.race_hot,
            )
            .await,
        )
    } else {
        None
    };
    Row {
        name: name.into(),
        reports,
        plan,
        legacy_new,
        legacy_all,
        paced_reports,
        paced_legacy,
        race_legacy,
        race_v1,
    }
}

async fn start_center(
    location: StoreLocation,
    synchronous: Synchronous,
) -> hedge_center::CenterHandle {
    let tokens = Tokens::new(vec![
        TokenEntry::new("bench-client", Role::Client(CLIENT), CLIENT_TOKEN).expect("token"),
        TokenEntry::new("bench-hedge", Role::Hedge(HEDGE), HEDGE_TOKEN).expect("token"),
    ]);
    let mut config = CenterConfig::sqlite("unused", tokens);
    config.store = location;
    config.synchronous = synchronous;
    config.legacy = true;
    let handle = CenterServer::start(config).await.expect("start center");
    for (token, login, role) in [
        (HEDGE_TOKEN, HEDGE, AccountRole::Hedge),
        // The client's own specs: the plan converts its lots with their contract sizes.
        (CLIENT_TOKEN, CLIENT, AccountRole::Client),
    ] {
        CenterClient::new(handle.url(), Some(token.into()))
            .expect("client")
            .register_account(&AccountRegistration {
                login,
                role,
                server: String::new(),
                company: String::new(),
                margin_mode: AccountMarginMode::RetailHedging,
                symbol_map: SymbolMap::identity(),
                hedge_ratio: Decimal::ONE,
                hedge_login: None,
                symbols: ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"]
                    .iter()
                    .map(|s| SymbolSpec::forex(*s, 5))
                    .collect(),
                currency: "USD".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("register account {login}: {e}"));
    }
    handle
}

/// `n` centers on one fresh PostgreSQL schema, started one after the other, and the schema.
async fn start_pg(pg: &str, n: usize) -> (Vec<hedge_center::CenterHandle>, String) {
    let schema = format!("hedge_bench_{:08x}", rand::random::<u32>());
    let mut handles = Vec::new();
    for _ in 0..n {
        let location = StoreLocation::Postgres {
            url: pg.to_owned(),
            schema: Some(schema.clone()),
        };
        handles.push(start_center(location, Synchronous::Full).await);
    }
    (handles, schema)
}

async fn stop_pg(pg: &str, handles: Vec<hedge_center::CenterHandle>, schema: &str) {
    for h in handles {
        h.shutdown().await;
    }
    if let Ok((client, conn)) = tokio_postgres::connect(pg, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    }
}

/// One line of the store comparison.
struct ScaleRow {
    setup: String,
    reports: Figures,
    /// p50, p99 and errors at a paced 1,000 reports/s.
    paced: (Duration, Duration, u64),
}

/// Durable `/v1` reports on a fresh store behind `addrs`: as many as `conns` connections push
/// (split evenly over the instances), then paced at 1,000/s.
async fn measure_reports(setup: String, addrs: Vec<SocketAddr>, s: &Settings) -> ScaleRow {
    eprintln!("measuring {setup} ...");
    let target = Target::new(addrs);
    // A short warm-up: prepared statements, connections, the first pages of each table.
    let _ = closed_loop(&target, Op::Report, s.conns, 0.5).await;
    let reports = closed_loop(&target, Op::Report, s.conns, s.seconds).await;
    let paced = paced(&target, Op::Report, 1000, s.paced_seconds, 32).await;
    ScaleRow {
        setup,
        reports,
        paced,
    }
}

/// The store comparison (`scripts/bench-center.sh --store pg --instances N`): one center on
/// SQLite (`synchronous=FULL`), one on PostgreSQL, and `instances` on one PostgreSQL schema with
/// the connections split among them, `rounds` times in turn, in one run.
async fn compare_stores(pg: &str, instances: usize, rounds: usize, s: &Settings) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rows: Vec<Vec<ScaleRow>> = Vec::new();
    for round in 0..rounds {
        let mut this = Vec::new();
        let file = dir.path().join(format!("scale-{round}.db"));
        let handle = start_center(StoreLocation::Sqlite(file), Synchronous::Full).await;
        this.push(
            measure_reports(
                "1 center, SQLite (synchronous=full)".into(),
                vec![handle.addr],
                s,
            )
            .await,
        );
        handle.shutdown().await;
        let mut counts = vec![1];
        if instances > 1 {
            counts.push(instances);
        }
        for n in counts {
            let (handles, schema) = start_pg(pg, n).await;
            let setup = if n == 1 {
                "1 center, PostgreSQL".to_owned()
            } else {
                format!("{n} centers, one PostgreSQL schema, load split")
            };
            let addrs = handles.iter().map(|h| h.addr).collect();
            this.push(measure_reports(setup, addrs, s).await);
            stop_pg(pg, handles, &schema).await;
        }
        rows.push(this);
    }
    println!();
    println!(
        "new position report per request, {} keep-alive connections (split over the instances), {} s each; \
         paced: 1,000 reports/s over 32 connections for {} s; latency in ms",
        s.conns, s.seconds, s.paced_seconds
    );
    println!();
    println!("| round | setup | durable `/v1` reports/s | p50 / p99 (saturated) | p50 / p99 at 1,000/s |");
    println!("|---|---|---|---|---|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (round, this) in rows.iter().enumerate() {
        let sqlite = this[0].reports.per_sec;
        let one_pg = this.get(1).map_or(0.0, |r| r.reports.per_sec);
        for (i, r) in this.iter().enumerate() {
            let versus = match i {
                0 => String::new(),
                1 => format!(
                    " ({:.0}% of SQLite)",
                    100.0 * r.reports.per_sec / sqlite.max(1e-9)
                ),
                _ => format!(
                    " ({:.2}x of one, {:.0}% of SQLite)",
                    r.reports.per_sec / one_pg.max(1e-9),
                    100.0 * r.reports.per_sec / sqlite.max(1e-9)
                ),
            };
            let errors = r.reports.errors + r.paced.2;
            println!(
                "| {} | {} | {:.0}{versus} | {:.1} / {:.1} | {:.2} / {:.2} |{}",
                round + 1,
                r.setup,
                r.reports.per_sec,
                ms(r.reports.p50),
                ms(r.reports.p99),
                ms(r.paced.0),
                ms(r.paced.1),
                if errors > 0 {
                    format!(" {errors} errors")
                } else {
                    String::new()
                }
            );
        }
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let num = |name: &str, default: u64| -> u64 {
        arg(&args, name)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let seconds = arg(&args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let settings = Settings {
        seconds,
        paced_seconds: arg(&args, "--paced-seconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(seconds),
        conns: num("--conns", 64) as usize,
        race_conns: num("--race-conns", 32).max(2) as usize,
        race_rounds: num("--race-rounds", 100),
        race_hot: num("--race-hot", 50),
    };
    if flag("--compare-stores") {
        let pg = arg(&args, "--pg").expect("--compare-stores needs --pg");
        let instances = num("--instances", 2).max(1) as usize;
        compare_stores(
            &pg,
            instances,
            num("--rounds", 1).max(1) as usize,
            &settings,
        )
        .await;
        return;
    }
    let mut rows = Vec::new();

    let dir = tempfile::tempdir().expect("tempdir");
    let mut sqlite = Vec::new();
    if !flag("--no-sqlite") {
        sqlite.push((
            Synchronous::Full,
            "center, SQLite synchronous=FULL",
            "full.db",
        ));
        if !flag("--no-normal") {
            sqlite.push((
                Synchronous::Normal,
                "center, SQLite synchronous=NORMAL",
                "normal.db",
            ));
        }
    }
    for (sync, name, file) in sqlite {
        let handle = start_center(StoreLocation::Sqlite(dir.path().join(file)), sync).await;
        let target = Target::new(vec![handle.addr]);
        rows.push(measure(name, target, true, &settings).await);
        handle.shutdown().await;
    }

    if let Some(pg) = arg(&args, "--pg") {
        let instances = num("--instances", 1).max(1) as usize;
        let (handles, schema) = start_pg(&pg, instances).await;
        let target = Target::new(handles.iter().map(|h| h.addr).collect());
        let name = if instances == 1 {
            "center, PostgreSQL".to_owned()
        } else {
            format!("{instances} centers, PostgreSQL")
        };
        rows.push(measure(&name, target, true, &settings).await);
        stop_pg(&pg, handles, &schema).await;
    }

    if let Some(url) = arg(&args, "--legacy-center") {
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("--legacy-center http://127.0.0.1:PORT");
        let target = Target::new(vec![addr]);
        rows.push(measure("legacy center (FastAPI + pandas)", target, false, &settings).await);
    }

    print_report(&rows, &settings);
}

fn rate(f: &Option<Figures>) -> String {
    f.as_ref()
        .map_or("-".to_owned(), |f| format!("{:.0}", f.per_sec))
}

fn latency(p: Option<(Duration, Duration, u64)>) -> String {
    p.map_or("-".to_owned(), |(p50, p99, _)| {
        format!(
            "{:.2} / {:.2}",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        )
    })
}

fn lots(hundredths: u64) -> String {
    Decimal::new(hundredths as i64, 2).to_string()
}

fn print_report(rows: &[Row], s: &Settings) {
    println!();
    println!(
        "{} s per measurement, {} keep-alive connections, loopback; p50/p99 in ms at a paced 1,000 req/s over 32 connections for {} s",
        s.seconds, s.conns, s.paced_seconds
    );
    println!(
        "{:<34} {:>10} {:>10} {:>11} {:>11} {:>17} {:>17}",
        "target",
        "reports/s",
        "plan/s",
        "legacy new/s",
        "legacy all/s",
        "p50/p99 reports",
        "p50/p99 legacy"
    );
    for r in rows {
        let errors = r.reports.as_ref().map_or(0, |f| f.errors)
            + r.plan.as_ref().map_or(0, |f| f.errors)
            + r.legacy_new.errors
            + r.legacy_all.errors
            + r.paced_reports.map_or(0, |p| p.2)
            + r.paced_legacy.2;
        println!(
            "{:<34} {:>10} {:>10} {:>11.0} {:>11.0} {:>17} {:>17}{}",
            r.name,
            rate(&r.reports),
            rate(&r.plan),
            r.legacy_new.per_sec,
            r.legacy_all.per_sec,
            latency(r.paced_reports),
            latency(Some(r.paced_legacy)),
            if errors > 0 {
                format!("  ({errors} errors)")
            } else {
                String::new()
            }
        );
    }

    println!();
    println!(
        "lost updates: {} connections, {} rounds of concurrent first reports of a fresh symbol, then {} reports each of one shared symbol; volumes in lots",
        s.race_conns, s.race_rounds, s.race_hot
    );
    println!(
        "{:<34} {:<22} {:>8} {:>8} {:>10} {:>10} {:>10} {:>14}",
        "target", "endpoint", "acked", "errors", "sent", "stored", "lost", "symbols wrong"
    );
    for r in rows {
        let mut races = vec![("new_position/all_positions", &r.race_legacy)];
        if let Some(v1) = &r.race_v1 {
            races.push(("/v1 reports/plan", v1));
        }
        for (endpoint, race) in races {
            println!(
                "{:<34} {:<22} {:>8} {:>8} {:>10} {:>10} {:>10} {:>8} of {:<4}",
                r.name,
                endpoint,
                race.acked,
                race.errors,
                lots(race.sent),
                lots(race.stored),
                lots(race.sent.saturating_sub(race.stored)),
                race.wrong,
                race.symbols
            );
        }
    }

    let Some(proto) = rows.iter().find(|r| r.name.starts_with("legacy center")) else {
        return;
    };
    println!();
    println!("ratios to the legacy center (same run):");
    let ratio = |ours: f64, theirs: f64| format!("{:.1}x", ours / theirs.max(1e-9));
    for r in rows.iter().filter(|r| r.reports.is_some()) {
        let reports = r.reports.as_ref().map_or(0.0, |f| f.per_sec);
        let plan = r.plan.as_ref().map_or(0.0, |f| f.per_sec);
        println!(
            "  {}: durable reports vs its new_position {}, plan reads vs its all_positions {}, new_position {}, all_positions {}",
            r.name,
            ratio(reports, proto.legacy_new.per_sec),
            ratio(plan, proto.legacy_all.per_sec),
            ratio(r.legacy_new.per_sec, proto.legacy_new.per_sec),
            ratio(r.legacy_all.per_sec, proto.legacy_all.per_sec),
        );
    }
}
