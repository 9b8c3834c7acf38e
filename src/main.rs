//! `hedge`: one binary, one subcommand per component.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hedge",
    version,
    about = "Hedge MetaTrader 5 positions across brokers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The decision center: stores positions, hedges and decisions; serves the hedge plan.
    Center(hedge_center::cli::CenterArgs),
    /// Bi-directional positions of an MT5 account: replay histories and reports, reconcile, exclude.
    Ledger(hedge_ledger::cli::LedgerArgs),
    /// Client agent: reports every position event of its account to the center, exactly once.
    Client(hedge_agent::client::ClientArgs),
    /// Tumbler: kills the configured processes the moment a new position appears.
    Tumbler(hedge_agent::tumbler::TumblerArgs),
    /// Simulated MT5 trade server: connects to an agent exactly as the EA does.
    Sim(hedge_sim::cli::SimArgs),
    /// Hedger: executes the center's hedge plan on the hedge account (trigger or mirror mode).
    Hedger(hedge_hedger::cli::HedgerArgs),
    /// The whole system in one process on loopback: center, simulated terminals, agents, a signal.
    Demo(hedge_demo::cli::DemoArgs),
    /// The whole system as separate processes on a seeded trading script with seeded faults, then
    /// a check that the books agree (center, client and hedge accounts).
    Soak(hedge_soak::cli::SoakArgs),
}

/// Errors print as one line with their causes (`{:#}`), never with a backtrace: a backtrace is
/// for bugs, which panic.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let ledger = matches!(cli.command, Command::Ledger(_));
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Not `eprintln!`: with standard error on a full disk it would panic, and a failing
            // agent must still end with its own exit code, not a panic's.
            use std::io::Write;
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "error: {e:#}");
            if let Some(hint) = hedge_ledger::cli::hint(&e) {
                let _ = writeln!(err, "hint: {hint}");
            }
            let code = if ledger {
                hedge_ledger::cli::exit_code(&e)
            } else {
                1
            };
            std::process::ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Center(args) => {
            init_tracing();
            tokio::runtime::Runtime::new()?.block_on(hedge_center::cli::run(args))
        }
        Command::Ledger(args) => {
            init_tracing();
            hedge_ledger::cli::run(args)
        }
        Command::Client(mut args) => {
            args.agent = args.agent.with_working_folder_config();
            tokio::runtime::Runtime::new()?.block_on(hedge_agent::client::run(args))
        }
        Command::Tumbler(mut args) => {
            args.agent = args.agent.with_working_folder_config();
            tokio::runtime::Runtime::new()?.block_on(hedge_agent::tumbler::run(args))
        }
        Command::Sim(args) => {
            init_tracing();
            tokio::runtime::Runtime::new()?.block_on(hedge_sim::cli::run(args))
        }
        Command::Hedger(mut args) => {
            args.agent = args.agent.with_working_folder_config();
            tokio::runtime::Runtime::new()?.block_on(hedge_hedger::cli::run(args))
        }
        Command::Demo(args) => tokio::runtime::Runtime::new()?.block_on(hedge_demo::cli::run(args)),
        Command::Soak(args) => {
            init_tracing_quiet();
            tokio::runtime::Runtime::new()?.block_on(hedge_soak::cli::run(args))
        }
    }
}

fn init_tracing() {
    init_tracing_at("info");
}

/// Warnings only: the soak's own output is its report.
fn init_tracing_quiet() {
    init_tracing_at("warn");
}

/// Logs to standard error at `RUST_LOG`, or at `level` when it is not set.
fn init_tracing_at(level: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
