//! The hedge plan: per hedge account and canonical symbol, the covering orders and what is left unhedged.

use super::*;

/// Whether a plan item opens (adds to) or reduces hedge exposure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// The order adds hedge volume (or opens the first hedge).
    Open,
    /// The order only takes back hedge volume that is no longer needed.
    Reduce,
}

/// One order of the hedge plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanItem {
    /// Stable while this symbol's exposure and hedges do not change; unique within the hedge
    /// account. Put it in the order's magic/comment to find after a crash what was done.
    pub id: u64,
    /// Canonical symbol.
    pub symbol: String,
    /// The hedge account's name for it.
    pub account_symbol: String,
    pub side: Side,
    /// Rounded to the hedge account's volume step and clamped to its min/max.
    pub volume: Volume,
    pub action: PlanAction,
    /// Signed net client exposure (buys minus sells, times each client's ratio).
    pub exposure: Volume,
    /// Signed open hedge volume on this account for this symbol.
    pub hedged: Volume,
    /// `exposure + hedged`: what is not covered.
    pub unhedged: Volume,
    /// What stays uncovered after this order (rounding, clamping to max, close-only).
    pub residual: Volume,
}

/// Why a symbol with uncovered exposure has no plan item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResidualReason {
    /// Rounded to the step it is below the hedge account's minimum volume.
    BelowMin,
    /// Hedging is paused (close-only) for this account/symbol and nothing can be reduced.
    Paused,
    /// The hedge account did not send a spec for this symbol.
    NoSymbolSpec,
    /// The hedge account's spec cannot be used (step not positive).
    BadSymbolSpec,
}

/// Uncovered exposure that the plan does not turn into an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanResidual {
    pub symbol: String,
    pub account_symbol: String,
    pub exposure: Volume,
    pub hedged: Volume,
    pub unhedged: Volume,
    pub reason: ResidualReason,
}

/// `GET /v1/plan/{hedge_login}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HedgePlan {
    pub hedge_login: Login,
    /// The last event-log id the plan reflects.
    pub as_of_event_id: u64,
    pub items: Vec<PlanItem>,
    pub residuals: Vec<PlanResidual>,
}
