//! Hedges: what the hedger records when it opens, fails, reduces or closes one.

use super::*;

/// `POST /v1/hedges`: a plan item was executed on the hedge account. Idempotent by
/// (`hedge_login`, `plan_item_id`): the same item twice records one hedge and returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HedgeExecuted {
    pub plan_item_id: PlanItemId,
    pub hedge_login: Login,
    /// Canonical symbol.
    pub symbol: String,
    pub side: Side,
    /// Filled volume.
    pub volume: Volume,
    #[serde(default)]
    pub order: OrderTicket,
    #[serde(default)]
    pub deal: DealTicket,
    /// The hedge account's position that holds the hedge.
    #[serde(default)]
    pub position_id: PositionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// From plan receipt to fill, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Fill price minus requested price, in price units, signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slippage: Option<Price>,
    pub time_ms: i64,
}

/// `POST /v1/hedges/failed`: a plan item could not be executed. Recorded (the plan is unchanged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HedgeFailed {
    pub plan_item_id: PlanItemId,
    pub hedge_login: Login,
    pub symbol: String,
    pub side: Side,
    pub volume: Volume,
    pub retcode: Retcode,
    #[serde(default)]
    pub message: String,
    pub time_ms: i64,
}

/// `POST /v1/hedges/{id}/reduce`: the hedge's remaining volume after a (partial) close on the hedge
/// account. Setting an absolute remaining volume is naturally idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HedgeReduce {
    /// Remaining open volume of the hedge; 0 closes it.
    pub remaining: Volume,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal: Option<DealTicket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    pub time_ms: i64,
    #[serde(default)]
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HedgeStatus {
    Open,
    PartiallyClosed,
    Closed,
    Failed,
}

impl HedgeStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            HedgeStatus::Open => "open",
            HedgeStatus::PartiallyClosed => "partially_closed",
            HedgeStatus::Closed => "closed",
            HedgeStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(HedgeStatus::Open),
            "partially_closed" => Some(HedgeStatus::PartiallyClosed),
            "closed" => Some(HedgeStatus::Closed),
            "failed" => Some(HedgeStatus::Failed),
            _ => None,
        }
    }
}

/// A hedge (executed or failed plan item) as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hedge {
    pub id: HedgeId,
    pub plan_item_id: PlanItemId,
    pub hedge_login: Login,
    pub symbol: String,
    pub account_symbol: String,
    pub side: Side,
    /// Volume filled when opened (failed: the volume attempted).
    pub volume: Volume,
    /// Volume still open.
    pub open_volume: Volume,
    pub order: OrderTicket,
    pub deal: DealTicket,
    pub position_id: PositionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slippage: Option<Price>,
    pub status: HedgeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retcode: Option<Retcode>,
    #[serde(default)]
    pub message: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The event-log id of the last change.
    pub event_id: EventId,
    /// Open hedges on `GET /v1/hedges`: the hedge account's latest mark of the hedge's position
    /// (current price, swap, profit, commission), as the hedger's heartbeat reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<PositionMark>,
}
