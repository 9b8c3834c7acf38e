//! Load generator for the center, and the same figures for the prototype baseline in one run.
//!
//! `cargo run --release -p hedge-center --example loadgen -- [--seconds 3] [--conns 64]
//!     [--prototype http://127.0.0.1:18080] [--pg "host=127.0.0.1 user=postgres dbname=test"]`
//!
//! Starts a center in-process (SQLite in a temporary directory; PostgreSQL in a fresh schema with
//! `--pg`) and drives it over loopback with many concurrent keep-alive connections: durable
//! position reports/s, plan reads/s, p50/p99 latency at a paced 1,000 req/s (measured from the
//! scheduled send time, so a stall is not hidden), and lost updates under concurrency (N concurrent
//! legacy reports of known volumes, then the final total). `scripts/bench-center.sh` starts the
//! prototype and passes `--prototype`.

use bytes::Bytes;
use hedge_center::auth::{Role, TokenEntry, Tokens};
use hedge_center::model::{AccountRegistration, AccountRole, PositionEventKind, PositionReport};
use hedge_center::store::{StoreLocation, Synchronous};
use hedge_center::{CenterClient, CenterConfig, CenterServer};
use hedge_domain::{
    AccountMarginMode, Login, Magic, PositionId, Side, SymbolMap, SymbolSpec, Volume,
};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
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
    addr: SocketAddr,
    next_id: Arc<AtomicU64>,
}

fn request(target: &Target, op: Op) -> Request<Full<Bytes>> {
    let b = Request::builder().header("host", target.addr.to_string());
    match op {
        Op::Report => {
            let id = target.next_id.fetch_add(1, Ordering::Relaxed);
            let report = PositionReport {
                kind: PositionEventKind::Open,
                login: CLIENT,
                position_id: PositionId(id),
                symbol: ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"][(id % 4) as usize].into(),
                account_symbol: String::new(),
                side: if id % 3 == 0 { Side::Sell } else { Side::Buy },
                volume: Volume(Decimal::new(1 + (id % 50) as i64, 2)),
                price: None,
                sl: None,
                tp: None,
                time_ms: 1,
                magic: Magic(0),
                comment: String::new(),
                seq: 1,
                idempotency_key: PositionReport::default_key(CLIENT, PositionId(id), 1),
            };
            b.method("POST")
                .uri("/v1/positions/events")
                .header("authorization", format!("Bearer {CLIENT_TOKEN}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    serde_json::to_vec(&report).unwrap_or_default(),
                )))
        }
        Op::LegacyNew => b
            .method("GET")
            .uri("/new_position/")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"symbol": "EURUSD", "volume": 0.01, "side": 0}"#,
            ))),
        Op::Plan => b
            .method("GET")
            .uri(format!("/v1/plan/{HEDGE}"))
            .header("authorization", format!("Bearer {HEDGE_TOKEN}"))
            .body(Full::new(Bytes::new())),
        Op::LegacyAll => b
            .method("GET")
            .uri("/all_positions/")
            .body(Full::new(Bytes::new())),
    }
    .expect("request")
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn send(sender: &mut Sender, req: Request<Full<Bytes>>) -> Result<Bytes, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

struct Figures {
    per_sec: f64,
    errors: u64,
}

/// As many requests as `conns` keep-alive connections can push for `seconds`.
async fn closed_loop(target: &Target, op: Op, conns: usize, seconds: f64) -> Figures {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(target.addr).await;
            let (mut ok, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                match send(&mut sender, request(&target, op)).await {
                    Ok(_) => ok += 1,
                    Err(_) => {
                        errors += 1;
                        sender = connect(target.addr).await;
                    }
                }
            }
            (ok, errors)
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (o, e) = t.await.unwrap_or((0, 0));
        ok += o;
        errors += e;
    }
    Figures {
        per_sec: ok as f64 / start.elapsed().as_secs_f64(),
        errors,
    }
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
    for _ in 0..conns {
        let target = target.clone();
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
    for i in 0..total {
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at.into()).await;
        let _ = tx.send(at).await;
    }
    drop(tx);
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((l, e)) = w.await {
            all.extend(l);
            errors += e;
        }
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (pct(0.50), pct(0.99), errors)
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

/// `n` concurrent legacy reports of 0.01 lot buys on one symbol; returns how many were lost.
async fn lost_updates(target: &Target, n: u64, conns: usize) -> (u64, u64) {
    let symbol = format!("LOST{}", target.addr.port());
    let body = format!(r#"{{"symbol": "{symbol}", "volume": 0.01, "side": 0}}"#);
    let sent = Arc::new(AtomicU64::new(0));
    let per = n / conns as u64;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (target, body, sent) = (target.clone(), body.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(target.addr).await;
            for _ in 0..per {
                let req = Request::builder()
                    .method("GET")
                    .uri("/new_position/")
                    .header("host", target.addr.to_string())
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.clone())))
                    .expect("request");
                if send(&mut sender, req).await.is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let acknowledged = sent.load(Ordering::Relaxed);
    let mut sender = connect(target.addr).await;
    let body = send(&mut sender, request(target, Op::LegacyAll))
        .await
        .unwrap_or_default();
    let inner: String = serde_json::from_slice(&body).unwrap_or_default();
    let book: serde_json::Value = serde_json::from_str(&inner).unwrap_or_default();
    let volume = book[&symbol]["volume"].as_f64().unwrap_or(0.0);
    let counted = (volume / 0.01).round() as u64;
    (acknowledged, acknowledged.saturating_sub(counted))
}

struct Row {
    name: String,
    reports: Option<Figures>,
    legacy: Figures,
    reads: Figures,
    p50: Duration,
    p99: Duration,
    paced_errors: u64,
    lost: (u64, u64),
}

async fn measure(name: &str, target: Target, center: bool, seconds: f64, conns: usize) -> Row {
    eprintln!("measuring {name} ...");
    let reports = if center {
        Some(closed_loop(&target, Op::Report, conns, seconds).await)
    } else {
        None
    };
    let legacy = closed_loop(&target, Op::LegacyNew, conns, seconds).await;
    let reads = closed_loop(
        &target,
        if center { Op::Plan } else { Op::LegacyAll },
        conns,
        seconds,
    )
    .await;
    let (p50, p99, paced_errors) = paced(
        &target,
        if center { Op::Report } else { Op::LegacyNew },
        1000,
        seconds,
        32,
    )
    .await;
    let lost = lost_updates(&target, 2000, 32).await;
    Row {
        name: name.into(),
        reports,
        legacy,
        reads,
        p50,
        p99,
        paced_errors,
        lost,
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
    let hedge = CenterClient::new(handle.url(), Some(HEDGE_TOKEN.into())).expect("client");
    hedge
        .register_account(&AccountRegistration {
            login: HEDGE,
            role: AccountRole::Hedge,
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
        .expect("register hedge account");
    handle
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = arg(&args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let conns: usize = arg(&args, "--conns")
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let mut rows = Vec::new();

    let dir = tempfile::tempdir().expect("tempdir");
    for (sync, name, file) in [
        (
            Synchronous::Full,
            "center (SQLite, synchronous=FULL)",
            "full.db",
        ),
        (
            Synchronous::Normal,
            "center (SQLite, synchronous=NORMAL)",
            "normal.db",
        ),
    ] {
        let handle = start_center(StoreLocation::Sqlite(dir.path().join(file)), sync).await;
        let target = Target {
            addr: handle.addr,
            next_id: Arc::new(AtomicU64::new(1)),
        };
        rows.push(measure(name, target, true, seconds, conns).await);
        handle.shutdown().await;
    }

    if let Some(pg) = arg(&args, "--pg") {
        let schema = format!("hedge_bench_{:08x}", rand::random::<u32>());
        let handle = start_center(
            StoreLocation::Postgres {
                url: pg.clone(),
                schema: Some(schema.clone()),
            },
            Synchronous::Full,
        )
        .await;
        let target = Target {
            addr: handle.addr,
            next_id: Arc::new(AtomicU64::new(1)),
        };
        rows.push(measure("center (PostgreSQL)", target, true, seconds, conns).await);
        handle.shutdown().await;
        if let Ok((client, conn)) = tokio_postgres::connect(&pg, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await;
        }
    }

    if let Some(url) = arg(&args, "--prototype") {
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("--prototype http://127.0.0.1:PORT");
        let target = Target {
            addr,
            next_id: Arc::new(AtomicU64::new(1)),
        };
        rows.push(
            measure(
                "prototype (FastAPI + pandas)",
                target,
                false,
                seconds,
                conns,
            )
            .await,
        );
    }

    println!();
    println!("{seconds} s per measurement, {conns} keep-alive connections (paced: 32), loopback");
    println!(
        "{:<36} {:>12} {:>14} {:>12} {:>10} {:>10} {:>16}",
        "target", "reports/s", "legacy new/s", "reads/s", "p50", "p99", "lost / acked"
    );
    for r in &rows {
        let errors = r.reports.as_ref().map_or(0, |f| f.errors)
            + r.legacy.errors
            + r.reads.errors
            + r.paced_errors;
        println!(
            "{:<36} {:>12} {:>14.0} {:>12.0} {:>10.2?} {:>10.2?} {:>16}{}",
            r.name,
            r.reports
                .as_ref()
                .map_or("-".to_owned(), |f| format!("{:.0}", f.per_sec)),
            r.legacy.per_sec,
            r.reads.per_sec,
            r.p50,
            r.p99,
            format!("{} / {}", r.lost.1, r.lost.0),
            if errors > 0 {
                format!("  ({errors} errors)")
            } else {
                String::new()
            }
        );
    }
    if let (Some(ours), Some(proto)) = (
        rows.first(),
        rows.iter().find(|r| r.name.starts_with("prototype")),
    ) {
        if let Some(rep) = &ours.reports {
            println!(
                "center/prototype: durable reports {:.0}x the prototype's new_position; legacy new_position {:.0}x",
                rep.per_sec / proto.legacy.per_sec.max(1e-9),
                ours.legacy.per_sec / proto.legacy.per_sec.max(1e-9)
            );
        }
    }
    println!("reads/s: center = GET /v1/plan/{{hedge}}, prototype = GET /all_positions/; p50/p99 at 1,000 req/s of reports (prototype: new_position)");
}
