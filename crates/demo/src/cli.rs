//! `hedge demo`.

use crate::interrupt::Interrupt;
use crate::scenario::{run as run_scenario, DemoOptions};
use crate::timeline::Timeline;
use std::time::Duration;

/// `hedge demo [--duration SECS] [--seed N] [--json]`.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Seconds of live activity after the scenario, 10 s by default: the clients keep trading,
    /// the hedger mirrors them and executes operator commands (0: exit right after the final
    /// check). Ctrl-C or SIGTERM ends it early; either way the temporary folder is removed.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub duration: u64,

    /// Seed of the simulated price feeds.
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,

    /// One JSON object per line instead of the readable timeline.
    #[arg(long)]
    pub json: bool,
}

/// Runs the demo; an error when the final check does not hold, so the exit code says it.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // The timeline goes to stdout; logs only for problems, unless RUST_LOG asks for more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let timeline = Timeline::new(args.json);
    let interrupt = Interrupt::on_signals()?;
    let scenario = run_scenario(
        DemoOptions {
            keep_running: Duration::from_secs(args.duration.min(24 * 3600)),
            seed: args.seed,
            interrupt: interrupt.clone(),
        },
        timeline,
    );
    tokio::pin!(scenario);
    let outcome = tokio::select! {
        outcome = &mut scenario => outcome?,
        _ = interrupt.fired() => {
            if !interrupt.in_live() {
                // Dropping the scenario removes its temporary folder (token and databases) and
                // stops the copier stand-in.
                anyhow::bail!("interrupted before the final check");
            }
            // The live phase saw it too and winds down, printing the accounts once more.
            scenario.await?
        }
    };
    if outcome.ok {
        Ok(())
    } else {
        anyhow::bail!(
            "the final check failed: the hedge accounts are not opposite the clients in base quantity, split as allocated"
        )
    }
}
