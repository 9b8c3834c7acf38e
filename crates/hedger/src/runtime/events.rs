//! What the hedger did, as it happens.

use crate::orders::LegReport;
use hedge_center_api::model::HedgePlan;
use hedge_domain::{Login, Price, Side, Volume};
use serde::Serialize;

/// What the hedger did, as it happens: for a live timeline (the demo) and tests.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HedgerEvent {
    /// State rebuilt; the hedger is about to act.
    Ready {
        login: Login,
        netting: bool,
        /// Hedge fills found on the account.
        fills: usize,
        /// Executed hedges recorded during the rebuild (the center had missed them).
        recorded: usize,
    },
    /// A new plan is held.
    Plan {
        plan: HedgePlan,
    },
    Trigger {
        position: u64,
        symbol: String,
        how: String,
    },
    /// One hedge order finished.
    Order(OrderEvent),
    /// Every order of one reaction finished.
    Batch {
        reason: String,
        orders: usize,
        filled: usize,
        /// From the trigger (or plan change) to the last reply.
        elapsed_us: u64,
    },
    Breaker {
        symbol: String,
        reason: String,
    },
    /// The pre-trade checks did not send (all or part of) a symbol's opening order.
    Refused {
        /// Canonical symbol.
        symbol: String,
        /// The volume not sent.
        volume: Volume,
        reason: String,
    },
    /// `--once`: the trigger was handled, the hedger stops.
    Finished,
}

#[derive(Clone, Debug, Serialize)]
pub struct OrderEvent {
    pub item: u64,
    pub symbol: String,
    /// The side actually sent.
    pub side: Side,
    pub volume: Volume,
    pub filled: Volume,
    pub closes: Option<u64>,
    pub retcode: Option<u32>,
    pub retcodes: Vec<u32>,
    pub attempts: u32,
    pub price: Option<Price>,
    pub latency_us: u64,
    pub outcome: String,
    pub filling: String,
}

impl OrderEvent {
    /// What was sent for one leg, as the terminal's last answer left it; the caller fills in the
    /// outcome. The side is the one the order actually carried, which is what gets logged.
    pub(super) fn sent(report: &LegReport) -> OrderEvent {
        OrderEvent {
            item: report.leg.item.0,
            symbol: report.leg.symbol.clone(),
            side: report.request.order_type.side().unwrap_or(report.leg.side),
            volume: report.leg.volume,
            filled: Volume::ZERO,
            closes: report.leg.close.map(|p| p.0),
            retcode: report.retcodes.last().map(|r| r.0),
            retcodes: report.retcodes.iter().map(|r| r.0).collect(),
            attempts: report.attempts,
            price: None,
            latency_us: report.latency.as_micros() as u64,
            outcome: String::new(),
            filling: format!("{:?}", report.request.type_filling),
        }
    }
}
