//! Agent benchmarks: tumbler reaction (new-position `tx` written on the wire → the target process
//! is dead) and resident memory of the client and tumbler agents while attached to a terminal.
//!
//! `cargo bench -p hedge-agent --bench agents` (Linux: it reads `/proc`). A scripted terminal speaks
//! the line protocol over loopback; each agent runs as a child process (this same binary in agent
//! mode), so its resident memory is the agent's alone.

use hedge_domain::{
    AccountMarginMode, DealEntry, DealReason, DealTicket, DealType, Login, Magic, Money,
    OrderTicket, PositionId, PositionType, Price, SymbolSpec, TradeTransactionType, Volume,
};
use hedge_protocol::{
    encode, AccountInfo, DealRecord, Hello, PositionRecord, Snapshot, SymbolInfo, Symbols,
    TerminalMsg, Tx,
};
use rust_decimal::Decimal;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LOGIN: u64 = 7001;
const ROLE_ENV: &str = "HEDGE_AGENT_BENCH_ROLE";
const ARGS_ENV: &str = "HEDGE_AGENT_BENCH_ARGS";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A scripted terminal: handshake, then whatever the benchmark writes.
struct Script {
    stream: TcpStream,
    seq: u64,
    next_id: u64,
}

impl Script {
    fn connect(port: u16, positions: usize) -> Script {
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("agent never listened on {port}: {e}"),
            }
        };
        stream.set_nodelay(true).expect("nodelay");
        let mut s = Script {
            stream,
            seq: 0,
            next_id: 500_000,
        };
        let login = Login(LOGIN);
        s.send(TerminalMsg::Hello(Hello {
            seq: 0,
            v: hedge_protocol::PROTOCOL_VERSION,
            login,
            server: "Bench-Server".into(),
            company: "bench".into(),
            currency: "USD".into(),
            margin_mode: AccountMarginMode::RetailHedging,
            build: 4755,
            ea_version: "bench".into(),
            leverage: 100,
            trade_allowed: true,
            trade_expert: true,
            account_trade_allowed: true,
            instance: String::new(),
            time: now_ms(),
        }));
        let symbols = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"]
            .iter()
            .map(|n| SymbolInfo {
                spec: SymbolSpec::forex(*n, 5),
                bid: None,
                ask: None,
                time: 0,
            })
            .collect();
        s.send(TerminalMsg::Symbols(Symbols { seq: 0, symbols }));
        let positions = (0..positions)
            .map(|_| s.position(Volume(Decimal::new(1, 1))))
            .collect();
        s.send(TerminalMsg::Snapshot(Snapshot {
            seq: 0,
            time: now_ms(),
            cmd_id: None,
            account: AccountInfo {
                login,
                currency: "USD".into(),
                margin_mode: AccountMarginMode::RetailHedging,
                leverage: 100,
                balance: Money(Decimal::from(10_000)),
                credit: Money::ZERO,
                equity: Money(Decimal::from(10_000)),
                profit: Money::ZERO,
                margin: Money::ZERO,
                margin_free: Money(Decimal::from(10_000)),
            },
            positions,
            orders: Vec::new(),
        }));
        s
    }

    fn position(&mut self, volume: Volume) -> PositionRecord {
        self.next_id += 1;
        PositionRecord {
            ticket: self.next_id,
            identifier: PositionId(self.next_id),
            symbol: "EURUSD".into(),
            position_type: PositionType::Buy,
            volume,
            price_open: Price(Decimal::new(108_000, 5)),
            price_current: Price(Decimal::new(108_000, 5)),
            sl: Price::ZERO,
            tp: Price::ZERO,
            swap: Money::ZERO,
            profit: Money::ZERO,
            magic: Magic(0),
            comment: String::new(),
            time: now_ms(),
            time_update: now_ms(),
            reason: 0,
        }
    }

    /// The `DEAL_ADD` of a new position, as the EA sends it.
    fn open_tx(&mut self) -> Vec<u8> {
        let p = self.position(Volume(Decimal::new(1, 1)));
        let mut tx = Tx::new(now_ms(), TradeTransactionType::DealAdd);
        tx.deal = DealTicket(p.identifier.get() + 1_000_000);
        tx.order = OrderTicket(p.identifier.get());
        tx.symbol = p.symbol.clone();
        tx.volume = p.volume;
        tx.position = p.identifier;
        tx.deal_record = Some(DealRecord {
            ticket: tx.deal,
            order: tx.order,
            position_id: p.identifier,
            time: p.time,
            deal_type: DealType::Buy,
            entry: DealEntry::In,
            reason: DealReason::Client,
            magic: Magic(0),
            volume: p.volume,
            price: p.price_open,
            commission: Money::ZERO,
            swap: Money::ZERO,
            profit: Money::ZERO,
            fee: Money::ZERO,
            symbol: p.symbol.clone(),
            comment: String::new(),
            external_id: String::new(),
        });
        tx.position_record = Some(p);
        self.line(TerminalMsg::Tx(tx))
    }

    fn line(&mut self, mut msg: TerminalMsg) -> Vec<u8> {
        self.seq += 1;
        msg.set_seq(self.seq);
        let mut out = Vec::with_capacity(1024);
        encode(&msg, &mut out).expect("encode");
        out
    }

    fn send(&mut self, msg: TerminalMsg) {
        let line = self.line(msg);
        self.write(&line);
    }

    fn write(&mut self, line: &[u8]) {
        self.stream.write_all(line).expect("write to agent");
    }
}

fn spawn_agent(role: &str, args: &[String]) -> Child {
    Command::new(std::env::current_exe().expect("own path"))
        .env(ROLE_ENV, role)
        .env(ARGS_ENV, args.join("\u{1f}"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn agent")
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn common_args(port: u16, state: &Path) -> Vec<String> {
    vec![
        "--terminal-port".into(),
        port.to_string(),
        "--login".into(),
        LOGIN.to_string(),
        "--prefix".into(),
        "-".into(),
        "--exec-mode".into(),
        "auto".into(),
        "--state-dir".into(),
        state.display().to_string(),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn tumbler_reaction(runs: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let victim_path = dir.path().join("bench-victim.exe");
    std::fs::copy("/bin/sleep", &victim_path).expect("copy sleep");
    let port = free_port();
    let mut args = common_args(port, &dir.path().join("state"));
    args.extend(["--kill".into(), "bench-victim.exe".into(), "--rearm".into()]);
    let mut agent = spawn_agent("tumbler", &args);
    let mut script = Script::connect(port, 10);
    std::thread::sleep(Duration::from_millis(500));
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut victim = Command::new(&victim_path)
            .arg("600")
            .spawn()
            .expect("spawn victim");
        // The copier is running well before the signal arrives; the tumbler rescans four times a second.
        std::thread::sleep(Duration::from_millis(600));
        let line = script.open_tx();
        let start = Instant::now();
        script.write(&line);
        victim.wait().expect("wait victim");
        samples.push(start.elapsed());
    }
    let rss = vm_rss_kb(agent.id());
    let _ = agent.kill();
    let _ = agent.wait();
    samples.sort();
    println!(
        "tumbler reaction (tx written -> target process dead), {} runs: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.90),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
    if let Some(kb) = rss {
        println!(
            "tumbler resident memory after {runs} firings: {:.1} MB",
            kb as f64 / 1024.0
        );
    }
}

fn client_memory(positions: usize, events: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut args = common_args(port, &dir.path().join("state"));
    // A center that is down: reports accumulate in the outbox, the worst case for memory.
    args.extend([
        "--center".into(),
        format!("http://127.0.0.1:{}", free_port()),
    ]);
    let mut agent = spawn_agent("client", &args);
    let mut script = Script::connect(port, positions);
    for _ in 0..events {
        let line = script.open_tx();
        script.write(&line);
    }
    std::thread::sleep(Duration::from_secs(3));
    let rss = vm_rss_kb(agent.id());
    let _ = agent.kill();
    let _ = agent.wait();
    if let Some(kb) = rss {
        println!(
            "client resident memory attached, {positions} positions in the snapshot + {events} opens: {:.1} MB",
            kb as f64 / 1024.0
        );
    }
}

fn run_agent(role: &str) {
    let args: Vec<String> = std::env::var(ARGS_ENV)
        .unwrap_or_default()
        .split('\u{1f}')
        .map(str::to_owned)
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = match role {
        "tumbler" => {
            #[derive(clap::Parser)]
            struct Cli {
                #[command(flatten)]
                args: hedge_agent::tumbler::TumblerArgs,
            }
            let cli = <Cli as clap::Parser>::parse_from(
                std::iter::once("tumbler".to_owned()).chain(args),
            );
            rt.block_on(hedge_agent::tumbler::run(cli.args))
        }
        _ => {
            #[derive(clap::Parser)]
            struct Cli {
                #[command(flatten)]
                args: hedge_agent::client::ClientArgs,
            }
            let cli =
                <Cli as clap::Parser>::parse_from(std::iter::once("client".to_owned()).chain(args));
            rt.block_on(hedge_agent::client::run(cli.args))
        }
    };
    if let Err(e) = result {
        eprintln!("agent failed: {e:#}");
        std::process::exit(1);
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        run_agent(&role);
        return;
    }
    let runs = std::env::var("HEDGE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    tumbler_reaction(runs);
    client_memory(100, 1000);
}
