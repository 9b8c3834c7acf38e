//! Operator actions, the commands they create for the hedger, and pauses.

use super::*;

/// Operator actions (`POST /v1/actions`), recorded in the event log with who did them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Close-only mode: the plan no longer opens hedges in the scope, it only reduces them.
    Pause,
    /// Ends a pause with exactly the same scope.
    Resume,
    /// Asks the hedger to close hedge `hedge_id`; also pauses its symbol on its account.
    CloseHedge,
    /// Asks the hedger to try failed hedge `hedge_id` again.
    RetryHedge,
    /// Overrides the symbol map of account `login`.
    SetSymbolMap,
    /// Overrides the hedge ratio of client account `login`.
    SetHedgeRatio,
    /// Removes the override `field` of account `login`.
    ClearOverride,
    /// Sets the allocation of a scope (`login` a client account, `symbol` a canonical symbol,
    /// either or neither) to `weights`, which must name hedge accounts and sum to exactly 1.
    SetAllocation,
    /// Removes the allocation of exactly that scope.
    ClearAllocation,
}

impl ActionKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ActionKind::Pause => "pause",
            ActionKind::Resume => "resume",
            ActionKind::CloseHedge => "close_hedge",
            ActionKind::RetryHedge => "retry_hedge",
            ActionKind::SetSymbolMap => "set_symbol_map",
            ActionKind::SetHedgeRatio => "set_hedge_ratio",
            ActionKind::ClearOverride => "clear_override",
            ActionKind::SetAllocation => "set_allocation",
            ActionKind::ClearAllocation => "clear_allocation",
        }
    }
}

/// `POST /v1/actions`. Pause/resume: the scope is an account (hedge or client), a canonical symbol,
/// or both; neither means everything. The other actions name what they need: `hedge_id`
/// (close/retry), `login` plus `symbol_map`/`hedge_ratio` (overrides), `login` plus `field`
/// (clear an override); an allocation's scope is `login` (a client) and `symbol`, like a pause's,
/// and `set_allocation` needs `weights`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionRequest {
    pub action: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge_id: Option<HedgeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_map: Option<SymbolMap>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_decimal_number"
    )]
    pub hedge_ratio: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<OverrideField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<AllocationWeight>>,
}

impl ActionRequest {
    /// An action with nothing but its kind; fill in what it needs.
    pub fn new(action: ActionKind) -> Self {
        ActionRequest {
            action,
            login: None,
            symbol: None,
            reason: String::new(),
            hedge_id: None,
            symbol_map: None,
            hedge_ratio: None,
            field: None,
            weights: None,
        }
    }

    pub fn close_hedge(hedge_id: HedgeId, reason: impl Into<String>) -> Self {
        ActionRequest {
            hedge_id: Some(hedge_id),
            reason: reason.into(),
            ..Self::new(ActionKind::CloseHedge)
        }
    }

    pub fn retry_hedge(hedge_id: HedgeId, reason: impl Into<String>) -> Self {
        ActionRequest {
            hedge_id: Some(hedge_id),
            reason: reason.into(),
            ..Self::new(ActionKind::RetryHedge)
        }
    }
}

/// What a hedger is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Close the hedge's position(s) on the hedge account.
    CloseHedge,
    /// Reset the symbol's circuit breaker and act on the current plan for it.
    RetryHedge,
}

impl CommandKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            CommandKind::CloseHedge => "close_hedge",
            CommandKind::RetryHedge => "retry_hedge",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "close_hedge" => Some(CommandKind::CloseHedge),
            "retry_hedge" => Some(CommandKind::RetryHedge),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    Pending,
    Done,
    Failed,
}

impl CommandStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Pending => "pending",
            CommandStatus::Done => "done",
            CommandStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(CommandStatus::Pending),
            "done" => Some(CommandStatus::Done),
            "failed" => Some(CommandStatus::Failed),
            _ => None,
        }
    }
}

/// An operator command for the hedger of `hedge_login`, durable until it has a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Command {
    pub id: CommandId,
    pub hedge_login: Login,
    pub kind: CommandKind,
    pub hedge_id: HedgeId,
    /// Canonical symbol.
    pub symbol: String,
    /// The hedge account's name for it.
    pub account_symbol: String,
    /// The plan item the hedge was opened for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_item: Option<PlanItemId>,
    /// Close: the hedge's open volume when the command was issued; retry: the volume that failed.
    pub volume: Volume,
    pub status: CommandStatus,
    /// Name of the token that issued it.
    pub actor: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_retcode: Option<Retcode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_message: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Query of `GET /v1/commands`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct CommandQuery {
    /// The hedge account; a hedge token may only ask for its own (and gets it when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CommandStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `POST /v1/commands/{id}/result`: what the hedger did. The same result twice answers the stored
/// command again; a different result for a finished command is refused (409).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandResult {
    /// `done` or `failed`.
    pub status: CommandStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retcode: Option<Retcode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An active pause (`GET /v1/pauses`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Name of the token that paused.
    pub actor: String,
    pub reason: String,
    pub since_ms: i64,
    pub event_id: EventId,
}

impl Pause {
    /// Whether this pause covers `symbol` on account `login`.
    pub fn covers(&self, login: Login, symbol: &str) -> bool {
        self.login.is_none_or(|l| l == login) && self.symbol.as_deref().is_none_or(|s| s == symbol)
    }
}

/// The answer to an action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionAck {
    pub event_id: EventId,
    /// Whether the action changed anything (pausing a paused scope does not).
    pub changed: bool,
    pub pauses: Vec<Pause>,
    /// Close/retry: the command (the pending one already issued, when `changed` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Override actions: the account after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// Allocation actions: every allocation after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocations: Option<Vec<Allocation>>,
}
