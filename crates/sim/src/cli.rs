//! `hedge sim`: run a simulated MT5 terminal that connects to an agent.

use crate::account::AccountConfig;
use crate::faults::Faults;
use crate::feed::parse_ticks;
use crate::script::Script;
use crate::symbols::{default_symbols, SimSymbol};
use crate::terminal::{FeedConfig, SimConfig, SimTerminal};
use anyhow::{bail, Context};
use hedge_domain::{AccountMarginMode, FillingModes, Login, Money, OrderFilling, Volume};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
#[command(about = "Simulated MT5 trade server: connects to an agent as the EA does")]
pub struct SimArgs {
    /// The agent's address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub connect: String,
    /// Account type: netting or hedging.
    #[arg(long, default_value = "hedging")]
    pub mode: AccountMarginMode,
    /// Account number.
    #[arg(long, default_value_t = 1000)]
    pub login: u64,
    /// Symbols to offer (base names from EURUSD, GBPUSD, USDJPY, XAUUSD), comma separated.
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Decorate symbol names as a broker does, e.g. `.r` or `-ECN`.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub suffix: String,
    /// Replay ticks from a CSV (`time,bid,ask` or HistData) instead of the random walk.
    #[arg(long)]
    pub ticks: Option<std::path::PathBuf>,
    /// Symbol the tick file is for (default: the first symbol).
    #[arg(long)]
    pub ticks_symbol: Option<String>,
    /// Replay speed factor for --ticks.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Random walk step interval in milliseconds (0: prices move only by script).
    #[arg(long, default_value_t = 250)]
    pub tick_ms: u64,
    /// Seed for prices and faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "10000")]
    pub balance: String,
    #[arg(long, default_value = "USD")]
    pub currency: String,
    #[arg(long, default_value_t = 100)]
    pub leverage: u32,
    /// Probability of a requote/off-quote per market order (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub requote_rate: f64,
    /// Probability of a rejection per market order (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub reject_rate: f64,
    /// Added latency before each command, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Drop the connection once after this many messages.
    #[arg(long)]
    pub disconnect_after: Option<u64>,
    /// Restrict a symbol's filling modes, e.g. `EURUSD=IOC` or `XAUUSD=FOK+IOC` (repeatable).
    #[arg(long = "filling")]
    pub filling: Vec<String>,
    /// Limit the volume available per quote, e.g. `EURUSD=0.5` (repeatable).
    #[arg(long = "liquidity")]
    pub liquidity: Vec<String>,
    /// Units of the base asset per lot for a symbol, e.g. `XAUUSD=10` for gold of 10 oz a lot;
    /// tick value and margin per lot scale with it (repeatable).
    #[arg(long = "contract-size", value_name = "SYMBOL=UNITS")]
    pub contract_size: Vec<String>,
    /// Stop-out level in percent (`ACCOUNT_MARGIN_SO_SO`): at or below this margin level the
    /// server closes the position with the largest loss, then the next [default: none].
    #[arg(long, value_name = "PERCENT")]
    pub stop_out: Option<String>,
    /// A TOML file with per-symbol settings (see docs/simulator.md).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// A script of timed trades (see docs/simulator.md).
    #[arg(long)]
    pub script: Option<std::path::PathBuf>,
    /// Exit when the script has finished (after this many extra seconds).
    #[arg(long)]
    pub exit_after_script: Option<u64>,
    /// Take trades typed by hand while running: `stdin`, or a loopback address to listen on
    /// (`127.0.0.1:7101`), one command per line, e.g. `open EURUSD buy 0.1`, `close 100001`,
    /// `partial 100001 0.05`, `quote EURUSD 1.0851`, `positions`, `help` (see docs/simulator.md).
    #[arg(long, value_name = "stdin|ADDR")]
    pub control: Option<Control>,
    /// Seconds between heartbeats to the agent.
    #[arg(long, default_value_t = 5)]
    pub heartbeat_secs: u64,
    /// Seconds between full snapshots sent to the agent.
    #[arg(long, default_value_t = 60)]
    pub snapshot_secs: u64,
}

/// Where control lines come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    Stdin,
    /// Listen on this loopback address; each connection is a session of its own.
    Listen(std::net::SocketAddr),
}

impl std::str::FromStr for Control {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "stdin" || s.trim() == "-" {
            return Ok(Control::Stdin);
        }
        let addr: std::net::SocketAddr = s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is neither stdin nor an address like 127.0.0.1:7101"))?;
        // Whoever reaches the port trades on the account: keep it on this machine.
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{addr} is not a loopback address (127.0.0.1 or ::1)"
            ));
        }
        Ok(Control::Listen(addr))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    symbol: Vec<SymbolOverride>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SymbolOverride {
    name: String,
    #[serde(default)]
    filling: Option<Vec<String>>,
    #[serde(default)]
    liquidity: Option<String>,
    #[serde(default)]
    stops_level: Option<u32>,
    #[serde(default)]
    contract_size: Option<String>,
}

fn parse_filling(modes: &[&str]) -> anyhow::Result<FillingModes> {
    let mut f = FillingModes::default();
    for m in modes {
        match m.parse::<OrderFilling>().map_err(anyhow::Error::msg)? {
            OrderFilling::Fok => f.fok = true,
            OrderFilling::Ioc => f.ioc = true,
            OrderFilling::Return => f.ret = true,
            OrderFilling::Boc => f.boc = true,
        }
    }
    Ok(f)
}

fn find<'a>(
    symbols: &'a mut [SimSymbol],
    name: &str,
    suffix: &str,
) -> anyhow::Result<&'a mut SimSymbol> {
    let full = format!("{name}{suffix}");
    symbols
        .iter_mut()
        .find(|s| s.spec.name == name || s.spec.name == full)
        .with_context(|| format!("no symbol {name:?}"))
}

fn contract_size(v: &str) -> anyhow::Result<Decimal> {
    hedge_domain::num::parse_decimal(v)
        .filter(|d| d.is_sign_positive() && !d.is_zero())
        .with_context(|| format!("bad contract size {v:?}: a positive number of units per lot"))
}

fn liquidity(v: &str) -> anyhow::Result<Volume> {
    v.parse::<Volume>()
        .ok()
        .filter(|v| !v.is_negative())
        .with_context(|| format!("bad liquidity {v:?}"))
}

/// Builds the simulator configuration from the arguments (no I/O besides reading the named files).
pub fn build_config(args: &SimArgs) -> anyhow::Result<(SimConfig, Option<Script>)> {
    let mut symbols = chosen_symbols(args)?;
    set_symbol_flags(args, &mut symbols)?;
    if let Some(path) = &args.config {
        apply_config_file(path, &args.suffix, &mut symbols)?;
    }
    let account = account_config(args)?;
    let feed = feed_config(args, &mut symbols)?;
    let script = match &args.script {
        Some(path) => Some(read_script(path, &symbols)?),
        None => None,
    };
    let mut config = SimConfig::new(args.connect.clone(), account);
    config.symbols = symbols;
    config.feed = feed;
    config.heartbeat_interval = Duration::from_secs(args.heartbeat_secs.max(1));
    config.snapshot_interval = Duration::from_secs(args.snapshot_secs.max(1));
    Ok((config, script))
}

/// The default symbols, or only those `--symbols` names; an unknown name is refused.
fn chosen_symbols(args: &SimArgs) -> anyhow::Result<Vec<SimSymbol>> {
    let mut symbols = default_symbols(&args.suffix);
    if args.symbols.is_empty() {
        return Ok(symbols);
    }
    let wanted: Vec<String> = args
        .symbols
        .iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    for w in &wanted {
        if !symbols
            .iter()
            .any(|s| s.spec.name.trim_end_matches(args.suffix.as_str()) == w)
        {
            bail!("unknown symbol {w:?}; available: EURUSD, GBPUSD, USDJPY, XAUUSD");
        }
    }
    symbols.retain(|s| {
        wanted
            .iter()
            .any(|w| s.spec.name.trim_end_matches(args.suffix.as_str()) == w)
    });
    Ok(symbols)
}

/// `--filling`, `--liquidity` and `--contract-size`, each `SYMBOL=VALUE`.
fn set_symbol_flags(args: &SimArgs, symbols: &mut [SimSymbol]) -> anyhow::Result<()> {
    for f in &args.filling {
        let (name, modes) = f
            .split_once('=')
            .with_context(|| format!("--filling {f:?}: expected SYMBOL=MODE[+MODE]"))?;
        let modes: Vec<&str> = modes.split(['+', ',']).collect();
        let filling = parse_filling(&modes)?;
        find(symbols, name, &args.suffix)?.spec.filling = filling;
    }
    for l in &args.liquidity {
        let (name, v) = l
            .split_once('=')
            .with_context(|| format!("--liquidity {l:?}: expected SYMBOL=VOLUME"))?;
        let v = liquidity(v)?;
        let s = find(symbols, name, &args.suffix)?;
        *s = s.clone().with_liquidity(Some(v));
    }
    for c in &args.contract_size {
        let (name, v) = c
            .split_once('=')
            .with_context(|| format!("--contract-size {c:?}: expected SYMBOL=UNITS"))?;
        let size = contract_size(v)?;
        let s = find(symbols, name, &args.suffix)?;
        *s = s.clone().with_contract_size(size);
    }
    Ok(())
}

/// The per-symbol settings of a `--config` file.
fn apply_config_file(
    path: &std::path::Path,
    suffix: &str,
    symbols: &mut [SimSymbol],
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: FileConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    for o in file.symbol {
        let s = find(symbols, &o.name, suffix)?;
        if let Some(modes) = &o.filling {
            let modes: Vec<&str> = modes.iter().map(String::as_str).collect();
            s.spec.filling = parse_filling(&modes)?;
        }
        if let Some(l) = &o.liquidity {
            *s = s.clone().with_liquidity(Some(liquidity(l)?));
        }
        if let Some(level) = o.stops_level {
            s.spec.stops_level = level;
        }
        if let Some(size) = &o.contract_size {
            *s = s.clone().with_contract_size(contract_size(size)?);
        }
    }
    Ok(())
}

/// The account: number, kind, money, stop-out level and faults.
fn account_config(args: &SimArgs) -> anyhow::Result<AccountConfig> {
    let balance: Money = args
        .balance
        .parse()
        .map_err(anyhow::Error::msg)
        .context("--balance")?;
    for (name, rate) in [
        ("--requote-rate", args.requote_rate),
        ("--reject-rate", args.reject_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            bail!("{name} must be between 0 and 1");
        }
    }
    let stop_out_level = match &args.stop_out {
        Some(text) => Some(
            hedge_domain::num::parse_decimal(text)
                .filter(|d| d.is_sign_positive())
                .with_context(|| format!("--stop-out {text:?}: a margin level in percent"))?,
        ),
        None => None,
    };
    Ok(AccountConfig {
        login: Login(args.login),
        stop_out_level,
        mode: args.mode,
        currency: args.currency.clone(),
        leverage: args.leverage,
        balance,
        seed: args.seed,
        faults: Faults {
            requote_rate: args.requote_rate,
            reject_rate: args.reject_rate,
            latency_ms: args.latency_ms,
            disconnect_after: args.disconnect_after,
        },
        ..AccountConfig::default()
    })
}

/// Where prices come from: a `--ticks` replay (whose symbol starts at the file's first quote),
/// the random walk, or the script alone (`--tick-ms 0`).
fn feed_config(args: &SimArgs, symbols: &mut [SimSymbol]) -> anyhow::Result<FeedConfig> {
    let Some(path) = &args.ticks else {
        if args.tick_ms == 0 {
            return Ok(FeedConfig::Manual);
        }
        return Ok(FeedConfig::RandomWalk {
            interval: Duration::from_millis(args.tick_ms),
        });
    };
    let symbol = match &args.ticks_symbol {
        Some(s) => find(symbols, s, &args.suffix)?.spec.name.clone(),
        None => symbols
            .first()
            .map(|s| s.spec.name.clone())
            .context("no symbols")?,
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ticks = parse_ticks(&text, &symbol)?;
    if let (Some(first), Some(s)) = (
        ticks.first(),
        symbols.iter_mut().find(|s| s.spec.name == symbol),
    ) {
        s.bid = first.bid;
        s.ask = first.ask;
        s.quote_time = first.time;
    }
    Ok(FeedConfig::Replay {
        ticks,
        speed: args.speed,
    })
}

/// Reads a `--script` and maps its symbol names to the offered ones.
fn read_script(path: &std::path::Path, symbols: &[SimSymbol]) -> anyhow::Result<Script> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut script = Script::parse(&text)?;
    let names: Vec<String> = symbols.iter().map(|s| s.spec.name.clone()).collect();
    script
        .map_symbols(&names)
        .with_context(|| format!("script {}", path.display()))?;
    Ok(script)
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let (config, script) = build_config(&args)?;
    tracing::info!(
        login = args.login, mode = %args.mode, agent = %config.connect,
        symbols = ?config.symbols.iter().map(|s| s.spec.name.as_str()).collect::<Vec<_>>(),
        "simulated terminal starting"
    );
    let control = match &args.control {
        Some(Control::Listen(addr)) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for control lines on {addr}"))?,
        ),
        _ => None,
    };
    let terminal = Arc::new(SimTerminal::spawn(config));
    let control_task = match (&args.control, control) {
        (_, Some(listener)) => Some(tokio::spawn(serve_control_port(terminal.clone(), listener))),
        (Some(Control::Stdin), None) => Some(tokio::spawn(serve_control_stdin(terminal.clone()))),
        (_, None) => None,
    };
    let script_task = script.map(|s| s.spawn(&terminal));
    match (script_task, args.exit_after_script) {
        (Some(task), Some(extra)) => {
            task.await.context("script task failed")?;
            tokio::time::sleep(Duration::from_secs(extra)).await;
        }
        _ => {
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
        }
    }
    if let Some(task) = control_task {
        task.abort();
    }
    let info = terminal.account();
    tracing::info!(balance = %info.balance, equity = %info.equity, positions = terminal.positions().len(), "stopping");
    terminal.stop().await;
    Ok(())
}

/// Control lines typed on stdin; the simulator keeps running when stdin ends.
async fn serve_control_stdin(terminal: Arc<SimTerminal>) {
    tracing::info!("control lines are read from stdin (`help` lists the commands)");
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    if let Err(e) = crate::control::serve(&terminal, input, tokio::io::stdout()).await {
        tracing::warn!(error = %e, "control from stdin stopped");
    }
}

/// Control lines from each connection to the control port, answered on the same connection.
async fn serve_control_port(terminal: Arc<SimTerminal>, listener: tokio::net::TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "control port listening (`help` lists the commands)");
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "control port accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let terminal = terminal.clone();
        tokio::spawn(async move {
            let (read, write) = stream.into_split();
            let input = tokio::io::BufReader::new(read);
            if let Err(e) = crate::control::serve(&terminal, input, write).await {
                tracing::debug!(%peer, error = %e, "control connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: SimArgs,
    }

    fn args(list: &[&str]) -> SimArgs {
        let mut argv = vec!["sim"];
        argv.extend_from_slice(list);
        Wrap::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn flags_shape_the_symbols_and_faults() {
        let a = args(&[
            "--mode",
            "netting",
            "--login",
            "77",
            "--symbols",
            "EURUSD,XAUUSD",
            "--suffix",
            ".r",
            "--filling",
            "EURUSD=IOC",
            "--liquidity",
            "XAUUSD.r=0.5",
            "--requote-rate",
            "0.2",
            "--tick-ms",
            "0",
        ]);
        let (config, script) = build_config(&a).unwrap();
        assert!(script.is_none());
        assert_eq!(config.account.mode, AccountMarginMode::RetailNetting);
        assert_eq!(config.account.login, Login(77));
        assert_eq!(config.account.faults.requote_rate, 0.2);
        let names: Vec<_> = config
            .symbols
            .iter()
            .map(|s| s.spec.name.as_str())
            .collect();
        assert_eq!(names, vec!["EURUSD.r", "XAUUSD.r"]);
        assert!(config.symbols[0].spec.filling.ioc && !config.symbols[0].spec.filling.fok);
        assert_eq!(config.symbols[1].liquidity, Some("0.5".parse().unwrap()));
        assert!(matches!(config.feed, FeedConfig::Manual));
    }

    #[test]
    fn contract_size_and_stop_out_shape_the_account() {
        let a = args(&[
            "--contract-size",
            "XAUUSD=10",
            "--stop-out",
            "50",
            "--symbols",
            "XAUUSD",
        ]);
        let (config, _) = build_config(&a).unwrap();
        let gold = &config.symbols[0].spec;
        // Per lot, a tenth of the default 100 oz: contract, tick value and margin alike.
        assert_eq!(gold.contract_size, Decimal::from(10));
        assert_eq!(gold.tick_value, Money(Decimal::new(1, 1)));
        assert_eq!(gold.margin_per_lot, Money(Decimal::from(200)));
        assert_eq!(config.account.stop_out_level, Some(Decimal::from(50)));
        assert_eq!(
            build_config(&args(&[])).unwrap().0.account.stop_out_level,
            None
        );
        assert!(build_config(&args(&["--contract-size", "XAUUSD=0"])).is_err());
        assert!(build_config(&args(&["--contract-size", "XAUUSD"])).is_err());
        assert!(build_config(&args(&["--stop-out=-5"])).is_err());
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(build_config(&args(&["--symbols", "DOGEUSD"])).is_err());
        assert!(build_config(&args(&["--filling", "EURUSD=XYZ"])).is_err());
        assert!(build_config(&args(&["--liquidity", "EURUSD=-1"])).is_err());
        assert!(build_config(&args(&["--reject-rate", "2"])).is_err());
        assert!(build_config(&args(&["--balance", "lots"])).is_err());
        let mut wrap = vec!["sim", "--control", "0.0.0.0:7101"];
        assert!(Wrap::try_parse_from(&wrap).is_err());
        wrap[2] = "127.0.0.1:7101";
        assert_eq!(
            Wrap::try_parse_from(&wrap).unwrap().args.control,
            Some(Control::Listen("127.0.0.1:7101".parse().unwrap()))
        );
    }

    #[test]
    fn a_script_may_name_symbols_canonically() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s.txt");
        std::fs::write(
            &script,
            "at 1s open EURUSD buy 0.1\nat 2s quote XAUUSD 1900\n",
        )
        .unwrap();
        let path = script.to_str().unwrap();
        let (_, parsed) = build_config(&args(&["--suffix", "-ECN", "--script", path])).unwrap();
        let steps = parsed.unwrap().steps;
        assert!(
            matches!(&steps[0].action, crate::script::Action::Open { symbol, .. } if symbol == "EURUSD-ECN")
        );
        std::fs::write(&script, "at 1s open EURUSD buy 0.1\n").unwrap();
        let err = build_config(&args(&["--symbols", "XAUUSD", "--script", path])).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "script {path}: script line 1: unknown symbol \"EURUSD\"; the account has XAUUSD"
            )
        );
    }

    #[test]
    fn files_are_read() {
        let dir = std::env::temp_dir().join(format!("hedge-sim-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ticks = dir.join("t.csv");
        std::fs::write(&ticks, "20240102 100000250,1.10410,1.10430,0\n").unwrap();
        let script = dir.join("s.txt");
        std::fs::write(&script, "at 1s open EURUSD buy 0.1\nat 2s close #1\n").unwrap();
        let conf = dir.join("c.toml");
        std::fs::write(
            &conf,
            "[[symbol]]\nname = \"GBPUSD\"\nfilling = [\"FOK\"]\nliquidity = \"2\"\n",
        )
        .unwrap();
        let a = args(&[
            "--ticks",
            ticks.to_str().unwrap(),
            "--script",
            script.to_str().unwrap(),
            "--config",
            conf.to_str().unwrap(),
        ]);
        let (config, script) = build_config(&a).unwrap();
        assert_eq!(script.unwrap().steps.len(), 2);
        assert!(matches!(&config.feed, FeedConfig::Replay { ticks, .. } if ticks.len() == 1));
        let eurusd = &config.symbols[0];
        assert_eq!(eurusd.bid, "1.1041".parse().unwrap());
        let gbp = config
            .symbols
            .iter()
            .find(|s| s.spec.name == "GBPUSD")
            .unwrap();
        assert!(gbp.spec.filling.fok && !gbp.spec.filling.ioc);
        std::fs::write(&conf, "[[symbol]]\nname = \"GBPUSD\"\ncolour = 1\n").unwrap();
        assert!(build_config(&args(&["--config", conf.to_str().unwrap()])).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
