//! `hedge hedger`: the prototype's positional arguments (or flags and a config file), then the
//! runtime in [`crate::runtime`].

use crate::orders::OrderSettings;
use crate::retry::RetryPolicy;
use crate::runtime::{follow_plan, HedgeDelivery, Hedger, HedgerOptions, Mode, PlanHolder};
use anyhow::Context;
use hedge_agent_runtime::outbox::{Backoff, Outbox};
use hedge_agent_runtime::{AgentArgs, Session};
use hedge_center_api::client::CenterClient;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// `hedge hedger <path> <login> <password> <server> <prefix> <exec_mode> [<symbols>...]`.
#[derive(clap::Args, Clone, Debug)]
pub struct HedgerArgs {
    #[command(flatten)]
    pub agent: AgentArgs,

    /// `trigger` (open the whole plan when one of the account's own positions closes) or
    /// `mirror` (follow every plan change) [default: trigger].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<Mode>,

    /// Trigger mode: exit once the first trigger has been handled.
    #[arg(long)]
    pub once: bool,

    /// Consecutive rejected orders on a symbol before it is halted [default: 3].
    #[arg(long, value_name = "N")]
    pub breaker_threshold: Option<u32>,

    /// Attempts per order on retryable retcodes (requote, off quotes, timeout...) [default: 5].
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,

    /// Accepted slippage, in points [default: 20].
    #[arg(long, value_name = "POINTS")]
    pub deviation: Option<u64>,

    /// Seconds between comparisons of the center's open hedges with the account's positions
    /// (they also run after every reconnect of the terminal) [default: 2].
    #[arg(long, value_name = "SECS")]
    pub reconcile_interval: Option<f64>,
}

/// The `[hedger]` table of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgerSection {
    pub mode: Option<String>,
    pub once: Option<bool>,
    pub breaker_threshold: Option<u32>,
    pub max_attempts: Option<u32>,
    pub deviation: Option<u64>,
    pub history_days: Option<u32>,
    pub reconcile_interval: Option<f64>,
}

/// Runs `hedge hedger` until interrupted (or, with `--once`, until the trigger is handled).
pub async fn run(args: HedgerArgs) -> anyhow::Result<()> {
    let settings = args.agent.resolve()?;
    hedge_agent_runtime::logging::init(settings.log_format);
    settings.log_warnings();
    let section: HedgerSection = settings.config.section("hedger")?;
    let mode = match (args.mode, &section.mode) {
        (Some(m), _) => m,
        (None, Some(text)) => text.parse().map_err(anyhow::Error::msg)?,
        (None, None) => Mode::Trigger,
    };
    let center_settings = settings.center.clone().context(
        "the hedger needs the center: give --center URL, set HEDGE_CENTER (and \
             HEDGE_CENTER_TOKEN), or put `center` in ./hedge.toml",
    )?;
    let center = CenterClient::new(
        center_settings.url.clone(),
        center_settings
            .token
            .as_ref()
            .map(|t| t.expose().to_owned()),
    )?;
    let mut opts = HedgerOptions::new(settings.login, mode);
    opts.once = args.once || section.once.unwrap_or(false);
    opts.symbol_map = settings.symbol_map.clone();
    opts.symbols = settings.symbols.clone();
    opts.breaker_threshold = args
        .breaker_threshold
        .or(section.breaker_threshold)
        .unwrap_or(3);
    opts.history_days = section.history_days.unwrap_or(30);
    opts.orders = OrderSettings {
        exec_mode: settings.exec_mode,
        retry: RetryPolicy {
            max_attempts: args
                .max_attempts
                .or(section.max_attempts)
                .unwrap_or(5)
                .max(1),
            ..RetryPolicy::default()
        },
        deviation: args.deviation.or(section.deviation).unwrap_or(20),
        reply_timeout: Duration::from_secs(5),
    };
    opts.status_interval = settings.status_interval;
    if let Some(secs) = args.reconcile_interval.or(section.reconcile_interval) {
        if !(secs.is_finite() && (0.1..=3600.0).contains(&secs)) {
            anyhow::bail!("--reconcile-interval {secs} must be between 0.1 and 3600 seconds");
        }
        opts.reconcile_interval = std::time::Duration::from_secs_f64(secs);
    }

    let state_path = settings.state_path("hedger");
    // A start refused for the terminal's port or the terminal itself takes away the state it
    // made, so a failed try leaves no databases behind.
    let new_state = settings.new_state("hedger");
    let outbox = Outbox::open(&state_path)?;
    let session = match Session::attach(&settings, "hedger").await {
        Ok(session) => session,
        Err(e) => {
            drop(outbox);
            new_state.undo();
            return Err(e.into());
        }
    };
    tracing::info!(
        login = %settings.login,
        listen = %session.local_addr(),
        mode = ?mode,
        once = opts.once,
        exec_mode = %settings.exec_mode,
        state = %state_path.display(),
        center = %center_settings.url,
        "hedger started"
    );
    let sender = tokio::spawn(outbox.clone().run_sender(
        HedgeDelivery {
            center: center.clone(),
            login: settings.login,
        },
        Backoff::default(),
    ));
    let status_line = session
        .status
        .spawn(Some(outbox.clone()), settings.status_interval);
    let plan = Arc::new(PlanHolder::default());
    let follower = tokio::spawn(follow_plan(
        center.clone(),
        settings.login,
        plan.clone(),
        opts.plan_refresh,
        None,
    ));
    let hedger = Hedger::new(
        session.terminal.clone(),
        Some(center),
        outbox.clone(),
        opts,
        plan,
        None,
    );
    let result = tokio::select! {
        r = hedger.run() => r.map_err(anyhow::Error::from),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted");
            Ok(())
        }
    };
    follower.abort();
    status_line.abort();
    // Give the center a moment to take the records; they stay in the outbox otherwise.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outbox.pending().unwrap_or(0) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = outbox.pending().unwrap_or(0);
    if left > 0 {
        tracing::warn!(
            pending = left,
            "records still in the outbox; they are sent at the next start"
        );
    }
    sender.abort();
    session.shutdown().await;
    result
}
