//! How the hedger is set up.

use crate::orders::OrderSettings;
use crate::pretrade::PretradeLimits;
use hedge_domain::{Login, SharedClock, SymbolMap, SystemClock};
use serde::Serialize;
use std::time::Duration;

/// When the hedger acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// When one of the account's own positions closes, execute the whole plan at once.
    Trigger,
    /// Execute every plan change as it comes: hedge each client open, reduce with each close.
    Mirror,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trigger" => Ok(Mode::Trigger),
            "mirror" => Ok(Mode::Mirror),
            other => Err(format!("not a hedger mode: {other:?} (trigger or mirror)")),
        }
    }
}

/// Everything the runtime needs besides its connections.
#[derive(Clone, Debug)]
pub struct HedgerOptions {
    pub login: Login,
    pub mode: Mode,
    /// Trigger mode: exit after the first trigger has been handled (the legacy hedger's behaviour).
    pub once: bool,
    pub symbol_map: SymbolMap,
    /// Canonical symbols to hedge; empty means all.
    pub symbols: Vec<String>,
    pub orders: OrderSettings,
    /// Consecutive given-up orders on a symbol before it is halted.
    pub breaker_threshold: u32,
    /// How far back the account's history is searched for hedge deals at start-up.
    pub history_days: u32,
    /// Safety-net plan refresh, on top of the event stream.
    pub plan_refresh: Duration,
    /// Seconds between status heartbeats to the center.
    pub status_interval: Duration,
    /// How often the center's open hedges are compared with the account's positions (on top of
    /// every fill and every reconnect).
    pub reconcile_interval: Duration,
    /// Limits every opening order is checked against before it is sent (none by default).
    pub pretrade: PretradeLimits,
    /// The wall-clock time of records, history windows and command ids; the system clock but in
    /// tests. (Waiting and timeouts use the monotonic `Instant`.)
    pub clock: SharedClock,
}

impl HedgerOptions {
    pub fn new(login: Login, mode: Mode) -> Self {
        HedgerOptions {
            login,
            mode,
            once: false,
            symbol_map: SymbolMap::identity(),
            symbols: Vec::new(),
            orders: OrderSettings::default(),
            breaker_threshold: 3,
            history_days: 30,
            plan_refresh: Duration::from_secs(5),
            status_interval: Duration::from_secs(5),
            reconcile_interval: Duration::from_secs(2),
            pretrade: PretradeLimits::default(),
            clock: SystemClock::shared(),
        }
    }
}
