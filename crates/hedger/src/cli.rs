//! `hedge hedger`: the legacy positional arguments (or flags and a config file), then the
//! runtime in [`crate::runtime`].

use crate::orders::OrderSettings;
use crate::pretrade::{PretradeLimits, SymbolLimits};
use crate::retry::RetryPolicy;
use crate::runtime::{follow_plan, HedgeDelivery, Hedger, HedgerOptions, Mode, PlanHolder};
use anyhow::Context;
use hedge_agent_runtime::outbox::{Backoff, Outbox};
use hedge_agent_runtime::{AgentArgs, AgentSettings, Session};
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

    /// Pre-trade limit: the largest opening order in lots; a larger hedge is cut to it and the
    /// rest follows with the next order [default: none].
    #[arg(long, value_name = "LOTS")]
    pub max_order_lots: Option<String>,

    /// Pre-trade limit: the largest net position of a canonical symbol on the hedge account, in
    /// lots, e.g. `XAUUSD=2`; `*=5` for every symbol without its own (repeatable) [default: none].
    #[arg(long, value_name = "SYMBOL=LOTS")]
    pub max_exposure: Vec<String>,

    /// Pre-trade limit: the same in units of the base asset (lots × the hedge symbol's contract
    /// size), e.g. `XAUUSD=200` for 200 oz (repeatable) [default: none].
    #[arg(long, value_name = "SYMBOL=UNITS")]
    pub max_exposure_base: Vec<String>,

    /// Pre-trade limit: the margin level in percent (equity / margin × 100) below which only
    /// reductions are sent; no opening order may take the level below it [default: none].
    #[arg(long, value_name = "PERCENT")]
    pub min_margin_level: Option<String>,

    /// Check every opening order with the terminal (`order_check`) before sending it. Without
    /// it the check is left out while the margin level after the orders would stay at least twice
    /// the minimum margin level (and twice 100 %), estimated from the symbols' margin per lot
    /// [default: off].
    #[arg(long)]
    pub always_check: bool,
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
    pub max_order_lots: Option<toml::Value>,
    pub max_exposure: Option<Vec<String>>,
    pub max_exposure_base: Option<Vec<String>>,
    pub min_margin_level: Option<toml::Value>,
    pub always_check: Option<bool>,
}

/// A positive number from the command line or the config file.
fn positive_setting(
    name: &str,
    flag: Option<&String>,
    file: Option<&toml::Value>,
) -> anyhow::Result<Option<rust_decimal::Decimal>> {
    let value = match (flag, file) {
        (Some(text), _) => hedge_domain::num::parse_decimal(text.trim()),
        (None, Some(toml::Value::String(text))) => hedge_domain::num::parse_decimal(text.trim()),
        (None, Some(toml::Value::Integer(i))) => Some(rust_decimal::Decimal::from(*i)),
        (None, Some(toml::Value::Float(f))) => hedge_domain::num::decimal_from_f64(*f),
        (None, Some(other)) => anyhow::bail!("{name} must be a number, got {other}"),
        (None, None) => return Ok(None),
    };
    match value {
        Some(v) if v.is_sign_positive() && !v.is_zero() => Ok(Some(v)),
        _ => anyhow::bail!(
            "{name} must be a number above zero, got {}",
            flag.cloned()
                .or_else(|| file.map(|f| f.to_string()))
                .unwrap_or_default()
        ),
    }
}

/// The pre-trade limits: each from its flag, else from the `[hedger]` table, else none.
pub fn pretrade_limits(
    args: &HedgerArgs,
    section: &HedgerSection,
) -> anyhow::Result<PretradeLimits> {
    let list = |flag: &Vec<String>, file: &Option<Vec<String>>| -> Vec<String> {
        if flag.is_empty() {
            file.clone().unwrap_or_default()
        } else {
            flag.clone()
        }
    };
    let exposure = list(&args.max_exposure, &section.max_exposure);
    let exposure_base = list(&args.max_exposure_base, &section.max_exposure_base);
    Ok(PretradeLimits {
        max_order: positive_setting(
            "max_order_lots",
            args.max_order_lots.as_ref(),
            section.max_order_lots.as_ref(),
        )?
        .map(hedge_domain::Volume),
        max_exposure: SymbolLimits::parse(exposure.iter().map(String::as_str))
            .context("max_exposure")?,
        max_exposure_base: SymbolLimits::parse(exposure_base.iter().map(String::as_str))
            .context("max_exposure_base")?,
        min_margin_level: positive_setting(
            "min_margin_level",
            args.min_margin_level.as_ref(),
            section.min_margin_level.as_ref(),
        )?,
        always_check: args.always_check || section.always_check.unwrap_or(false),
    })
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
    let opts = hedger_options(&args, &settings, &section, mode)?;

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
    let left = outbox.drain(Duration::from_secs(10)).await;
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

/// The hedger's options: the command line first, then the config file's `[hedger]` section, then
/// the defaults.
fn hedger_options(
    args: &HedgerArgs,
    settings: &AgentSettings,
    section: &HedgerSection,
    mode: Mode,
) -> anyhow::Result<HedgerOptions> {
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
    opts.pretrade = pretrade_limits(args, section)?;
    opts.status_interval = settings.status_interval;
    if let Some(secs) = args.reconcile_interval.or(section.reconcile_interval) {
        if !(secs.is_finite() && (0.1..=3600.0).contains(&secs)) {
            anyhow::bail!("--reconcile-interval {secs} must be between 0.1 and 3600 seconds");
        }
        opts.reconcile_interval = std::time::Duration::from_secs_f64(secs);
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rust_decimal_macros::dec;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: HedgerArgs,
    }

    fn args(list: &[&str]) -> HedgerArgs {
        let mut argv = vec!["hedger"];
        argv.extend_from_slice(list);
        Wrap::try_parse_from(argv).unwrap().args
    }

    fn section(text: &str) -> HedgerSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn no_pretrade_limit_by_default() {
        let limits = pretrade_limits(&args(&[]), &HedgerSection::default()).unwrap();
        assert_eq!(limits, PretradeLimits::default());
    }

    #[test]
    fn pretrade_limits_come_from_flags_then_the_config_file() {
        let file = section(
            "max_order_lots = 2.5\nmax_exposure = [\"XAUUSD=3\"]\nmax_exposure_base = [\"XAUUSD=300\"]\nmin_margin_level = \"150\"\n",
        );
        let limits = pretrade_limits(&args(&[]), &file).unwrap();
        assert_eq!(limits.max_order, Some(hedge_domain::Volume(dec!(2.5))));
        assert_eq!(limits.max_exposure.get("XAUUSD"), Some(dec!(3)));
        assert_eq!(limits.max_exposure_base.get("XAUUSD"), Some(dec!(300)));
        assert_eq!(limits.min_margin_level, Some(dec!(150)));
        let flags = args(&[
            "--max-order-lots",
            "1",
            "--max-exposure",
            "XAUUSD=2",
            "--max-exposure",
            "*=10",
            "--min-margin-level",
            "100",
            "--always-check",
        ]);
        let limits = pretrade_limits(&flags, &file).unwrap();
        assert_eq!(limits.max_order, Some(hedge_domain::Volume(dec!(1))));
        assert_eq!(limits.max_exposure.get("XAUUSD"), Some(dec!(2)));
        assert_eq!(limits.max_exposure.get("EURUSD"), Some(dec!(10)));
        assert_eq!(limits.max_exposure_base.get("XAUUSD"), Some(dec!(300)));
        assert_eq!(limits.min_margin_level, Some(dec!(100)));
        assert!(limits.always_check);
        assert!(!pretrade_limits(&args(&[]), &file).unwrap().always_check);
    }

    #[test]
    fn bad_pretrade_limits_are_refused_with_the_setting_named() {
        for bad in [
            &["--max-order-lots", "0"][..],
            &["--max-order-lots", "lots"],
            &["--min-margin-level=-5"],
            &["--max-exposure", "XAUUSD"],
            &["--max-exposure-base", "XAUUSD=0"],
        ] {
            let err = pretrade_limits(&args(bad), &HedgerSection::default()).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains("max_") || text.contains("min_"), "{text}");
        }
        let err = pretrade_limits(&args(&[]), &section("min_margin_level = true\n")).unwrap_err();
        assert!(format!("{err:#}").contains("min_margin_level"));
    }
}
