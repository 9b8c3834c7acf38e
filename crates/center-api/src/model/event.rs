//! The event log and the error and health bodies.

use super::*;

/// The kinds of event-log entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AccountRegistered,
    AccountStatus,
    PositionOpened,
    PositionIncreased,
    PositionReduced,
    PositionClosed,
    PositionModified,
    PositionReversed,
    HedgeExecuted,
    HedgeFailed,
    HedgeReduced,
    HedgeClosed,
    Paused,
    Resumed,
    LegacyPosition,
    CommandIssued,
    CommandDone,
    CommandFailed,
    OverrideSet,
    OverrideCleared,
    TumblerFired,
    AllocationSet,
    AllocationCleared,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::AccountRegistered,
        EventKind::AccountStatus,
        EventKind::PositionOpened,
        EventKind::PositionIncreased,
        EventKind::PositionReduced,
        EventKind::PositionClosed,
        EventKind::PositionModified,
        EventKind::PositionReversed,
        EventKind::HedgeExecuted,
        EventKind::HedgeFailed,
        EventKind::HedgeReduced,
        EventKind::HedgeClosed,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::LegacyPosition,
        EventKind::CommandIssued,
        EventKind::CommandDone,
        EventKind::CommandFailed,
        EventKind::OverrideSet,
        EventKind::OverrideCleared,
        EventKind::TumblerFired,
        EventKind::AllocationSet,
        EventKind::AllocationCleared,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::AccountRegistered => "account_registered",
            EventKind::AccountStatus => "account_status",
            EventKind::PositionOpened => "position_opened",
            EventKind::PositionIncreased => "position_increased",
            EventKind::PositionReduced => "position_reduced",
            EventKind::PositionClosed => "position_closed",
            EventKind::PositionModified => "position_modified",
            EventKind::PositionReversed => "position_reversed",
            EventKind::HedgeExecuted => "hedge_executed",
            EventKind::HedgeFailed => "hedge_failed",
            EventKind::HedgeReduced => "hedge_reduced",
            EventKind::HedgeClosed => "hedge_closed",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::LegacyPosition => "legacy_position",
            EventKind::CommandIssued => "command_issued",
            EventKind::CommandDone => "command_done",
            EventKind::CommandFailed => "command_failed",
            EventKind::OverrideSet => "override_set",
            EventKind::OverrideCleared => "override_cleared",
            EventKind::TumblerFired => "tumbler_fired",
            EventKind::AllocationSet => "allocation_set",
            EventKind::AllocationCleared => "allocation_cleared",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == text)
    }

    /// Whether events of this kind can change a hedge plan.
    pub const fn moves_plan(self) -> bool {
        !matches!(
            self,
            EventKind::AccountStatus
                | EventKind::HedgeFailed
                | EventKind::LegacyPosition
                | EventKind::CommandIssued
                | EventKind::CommandDone
                | EventKind::CommandFailed
                | EventKind::TumblerFired
        )
    }
}

/// One entry of the append-only event log; also what `/v1/events/stream` sends (SSE `id` is
/// [`Event::id`], SSE `event` is [`Event::kind`], `data` is this object as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: EventId,
    pub time_ms: i64,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Name of the token (agent or operator) whose request caused the event.
    pub actor: String,
    /// Why the center did what it did, in words.
    pub reason: String,
    /// The stored object (position, hedge, account, pause) after the change.
    pub data: serde_json::Value,
}

/// The error body of every non-2xx answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Machine-readable class: `invalid`, `conflict`, `not_found`, `unauthorized`, `forbidden`,
    /// `too_large`, `unavailable`, `internal`.
    pub error: String,
    pub message: String,
    /// The offending request field, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /readyz` and `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub store: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub legacy: bool,
}
