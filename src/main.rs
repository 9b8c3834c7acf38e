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
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
