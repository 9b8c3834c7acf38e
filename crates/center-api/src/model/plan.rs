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
    pub id: PlanItemId,
    /// Canonical symbol.
    pub symbol: String,
    /// The hedge account's name for it.
    pub account_symbol: String,
    pub side: Side,
    /// Rounded to the hedge account's volume step and clamped to its min/max.
    pub volume: Volume,
    pub action: PlanAction,
    /// Signed net client exposure this account covers, in the hedge account's lots: the
    /// clients' base quantity (see `base_quantity`) divided by the hedge symbol's contract size.
    pub exposure: Volume,
    /// Signed open hedge volume on this account for this symbol.
    pub hedged: Volume,
    /// `exposure + hedged`: what is not covered.
    pub unhedged: Volume,
    /// What stays uncovered after this order (rounding, clamping to max, close-only).
    pub residual: Volume,
    /// Signed client lots this account's part covers: each client's net lots (in its own
    /// broker's lots) times the weight of this account in its allocation.
    #[serde(default)]
    pub client_lots: Volume,
    /// Signed base quantity this account's part covers (ounces, coins, currency units): each
    /// client's lots times its symbol's contract size, its ratio and this account's weight.
    #[serde(default)]
    pub base_quantity: Volume,
    /// Signed hedge position (buys positive) in the hedge account's lots once this order is
    /// filled: `hedged` plus the order, opposite the clients when they are covered.
    #[serde(default)]
    pub hedge_lots: Volume,
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
    /// Several hedge accounts and no allocation says which covers this client: not hedged.
    NoAllocation,
    /// The allocation (or the client's registered hedge account) names an account that is not
    /// registered as a hedge account.
    HedgeAccountUnknown,
    /// The client's or the hedge account's symbol has no contract size (missing or zero), so its
    /// lots cannot be converted; `client_login` says whose when it is a client's.
    ContractSizeMissing,
    /// Several of the account's symbols could be this canonical symbol (`candidates`); the
    /// operator's explicit symbol map must say which.
    AmbiguousSymbol,
    /// Rounding across hedge accounts: the other accounts' orders already bring the total as
    /// close to the clients as the grids allow, so this part is left.
    AllocationRounding,
    /// The hedge account's pre-trade checks (the terminal's margin check, its maximum exposure,
    /// order size or minimum margin level) did not send this part of the plan's order of the same
    /// symbol; `detail` says why. The order stays in `items`, so the hedger checks it again and
    /// sends it once the condition clears (a deposit, the clients' reductions).
    PretradeRefused,
}

impl ResidualReason {
    pub const ALL: &'static [ResidualReason] = &[
        ResidualReason::BelowMin,
        ResidualReason::Paused,
        ResidualReason::NoSymbolSpec,
        ResidualReason::BadSymbolSpec,
        ResidualReason::NoAllocation,
        ResidualReason::HedgeAccountUnknown,
        ResidualReason::ContractSizeMissing,
        ResidualReason::AmbiguousSymbol,
        ResidualReason::AllocationRounding,
        ResidualReason::PretradeRefused,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ResidualReason::BelowMin => "below_min",
            ResidualReason::Paused => "paused",
            ResidualReason::NoSymbolSpec => "no_symbol_spec",
            ResidualReason::BadSymbolSpec => "bad_symbol_spec",
            ResidualReason::NoAllocation => "no_allocation",
            ResidualReason::HedgeAccountUnknown => "hedge_account_unknown",
            ResidualReason::ContractSizeMissing => "contract_size_missing",
            ResidualReason::AmbiguousSymbol => "ambiguous_symbol",
            ResidualReason::AllocationRounding => "allocation_rounding",
            ResidualReason::PretradeRefused => "pretrade_refused",
        }
    }
}

/// Uncovered exposure that the plan does not turn into an order.
///
/// `exposure`, `hedged` and `unhedged` are in the hedge account's lots, as in [`PlanItem`]; when
/// the hedge symbol's contract size is unknown (`no_symbol_spec`, `contract_size_missing`,
/// `ambiguous_symbol` without `client_login`) nothing can be converted and `exposure` is the
/// clients' lots times their ratio and weight. A residual with `client_login` is one client's
/// exposure that no plan counts (its fields are then that client's, `hedged` zero). A
/// `pretrade_refused` residual is the refused part of the item of its symbol: its figures are the
/// item's, except `unhedged`, what stays uncovered while the refused volume is not sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanResidual {
    pub symbol: String,
    pub account_symbol: String,
    pub exposure: Volume,
    pub hedged: Volume,
    pub unhedged: Volume,
    pub reason: ResidualReason,
    /// The client whose exposure this is, when the reason is about one client (no allocation,
    /// its contract size, its symbol name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_login: Option<Login>,
    /// Signed client lots (as in [`PlanItem::client_lots`]).
    #[serde(default)]
    pub client_lots: Volume,
    /// Signed base quantity; absent when a contract size needed for it is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_quantity: Option<Volume>,
    /// Signed hedge position in the hedge account's lots (nothing is sent for a residual).
    #[serde(default)]
    pub hedge_lots: Volume,
    /// `ambiguous_symbol`: the account's names that could be the symbol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// `pretrade_refused`: the hedge account's reason, as a trader reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `GET /v1/plan/{hedge_login}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HedgePlan {
    pub hedge_login: Login,
    /// The last event-log id the plan reflects.
    pub as_of_event_id: EventId,
    pub items: Vec<PlanItem>,
    pub residuals: Vec<PlanResidual>,
    /// Client exposure no hedge account's plan counts, with why (no allocation, an unknown
    /// hedge account, a client symbol without contract size or with an ambiguous name). The
    /// same list is in every hedge account's plan; it is never counted in `items`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_residuals: Vec<PlanResidual>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_reasons_are_their_wire_names() {
        for reason in ResidualReason::ALL {
            let json = serde_json::to_string(reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
    }
}
