//! The center alone (`hedge-center`), same arguments as `hedge center`; used by the crash tests.
use clap::Parser;

#[derive(Parser)]
#[command(name = "hedge-center", about = "The hedge decision center")]
struct Cli {
    #[command(flatten)]
    args: hedge_center::cli::CenterArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    hedge_center::cli::run(Cli::parse().args).await
}
