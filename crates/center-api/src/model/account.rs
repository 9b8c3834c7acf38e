//! Accounts: registration, status heartbeats, marks and operator overrides.

use super::*;

/// What an account is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AccountRole {
    /// Its positions must be hedged.
    Client,
    /// The account the hedges are opened on.
    Hedge,
    /// Watched by a tumbler (kills the copier when a position appears).
    Tumbler,
}

impl AccountRole {
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountRole::Client => "client",
            AccountRole::Hedge => "hedge",
            AccountRole::Tumbler => "tumbler",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "client" => Some(AccountRole::Client),
            "hedge" => Some(AccountRole::Hedge),
            "tumbler" => Some(AccountRole::Tumbler),
            _ => None,
        }
    }
}

/// `PUT /v1/accounts/{login}`: what an agent says about its account when it (re)connects.
/// Registering again replaces the configuration; positions and hedges are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountRegistration {
    pub login: Login,
    pub role: AccountRole,
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub company: String,
    /// MT5's `ACCOUNT_MARGIN_MODE` code (0 netting, 1 exchange, 2 hedging).
    pub margin_mode: AccountMarginMode,
    /// How this account names canonical symbols.
    #[serde(default)]
    pub symbol_map: SymbolMap,
    /// Client accounts: the factor their volumes are multiplied by in the plan (1 = hedge 1:1).
    #[serde(default = "one", with = "decimal_number")]
    pub hedge_ratio: Decimal,
    /// Client accounts: the hedge account that covers them, unless an operator allocation of
    /// the client says otherwise; `None` = as the allocations say (with one hedge account and no
    /// allocation, that account; see `Allocation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge_login: Option<Login>,
    /// The account's symbol specifications, under the account's own names. The plan needs those of
    /// the hedge account to round and clamp volumes.
    #[serde(default)]
    pub symbols: Vec<SymbolSpec>,
    #[serde(default)]
    pub currency: String,
}

/// What an account's registered symbols say about one canonical symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecLookup<'a> {
    /// The account's symbol for it.
    Found(&'a SymbolSpec),
    /// The account sent no spec under this name.
    Missing(String),
    /// Several of the account's symbols could be it (see `SymbolMap::account_name_in`).
    Ambiguous(Vec<String>),
}

impl AccountRegistration {
    /// The account's name for a canonical symbol: its map, the common aliases and decorations
    /// matched against its registered symbols (`SymbolMap::account_name_in`). When several of
    /// its symbols could be it, the map's own rule gives the name (and [`Self::lookup_spec`]
    /// says it is ambiguous).
    pub fn account_name(&self, canonical: &str) -> String {
        match self.names_for(canonical) {
            AccountName::Name(name) => name,
            AccountName::Ambiguous(_) => self.symbol_map.to_account(canonical),
        }
    }

    fn names_for(&self, canonical: &str) -> AccountName {
        self.symbol_map
            .account_name_in(canonical, self.symbols.iter().map(|s| s.name.as_str()))
    }

    /// The spec of a canonical symbol under this account's name, looked up as
    /// [`Self::account_name`] does.
    pub fn lookup_spec(&self, canonical: &str) -> SpecLookup<'_> {
        match self.names_for(canonical) {
            AccountName::Name(name) => match self.symbols.iter().find(|s| s.name == name) {
                Some(spec) => SpecLookup::Found(spec),
                None => SpecLookup::Missing(name),
            },
            AccountName::Ambiguous(candidates) => SpecLookup::Ambiguous(candidates),
        }
    }

    /// The spec of a canonical symbol, if the account sent exactly one that it can be.
    pub fn spec_for(&self, canonical: &str) -> Option<&SymbolSpec> {
        match self.lookup_spec(canonical) {
            SpecLookup::Found(spec) => Some(spec),
            _ => None,
        }
    }
}

/// A circuit breaker's state, as an agent reports it per symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// `POST /v1/accounts/{login}/status`: an agent's heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountStatus {
    /// Whether the agent's terminal link is up.
    pub connected: bool,
    /// Time of the last trade event the agent saw from its terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_ms: Option<i64>,
    /// Reports waiting in the agent's outbox.
    #[serde(default)]
    pub outbox_pending: u64,
    /// Reports the center refused for good (kept by the agent across restarts): each is a change
    /// of the account the center does not know, so the dashboard shows the account in red.
    #[serde(default)]
    pub dead_letters: u64,
    /// Why the newest of them was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_reason: Option<String>,
    /// Circuit-breaker state per symbol (account names or canonical, as the agent knows them).
    #[serde(default)]
    pub breakers: BTreeMap<String, BreakerState>,
    /// Free text for the dashboard (last error, version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The account's money as the terminal reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountMoney>,
    /// Latest marks of the account's open positions. The center keeps only the latest mark per
    /// position (not history) and serves it on `GET /v1/positions`; it is not kept in the stored
    /// status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<PositionMark>,
    /// Netting accounts: whether the ledger's net position per symbol matches the terminal's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<Reconciliation>,
    /// Whether the center's open positions of the account match the terminal's, net per
    /// canonical symbol, checked by the agent when nothing was waiting to be reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_check: Option<Reconciliation>,
    /// Hedge accounts: opening orders the hedger's pre-trade checks did not send (whole or in
    /// part), one per canonical symbol, with the reason. An entry goes away once the condition
    /// clears and the hedge is sent, or the plan no longer asks for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pretrade_refusals: Vec<PretradeRefusal>,
}

/// An opening hedge order that the hedge account's pre-trade checks (the terminal's `order_check`,
/// the account's limits) did not send, whole or in part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PretradeRefusal {
    /// Canonical symbol.
    pub symbol: String,
    /// The hedge account's name for it.
    #[serde(default)]
    pub account_symbol: String,
    pub side: Side,
    /// The volume not sent, in the hedge account's lots.
    pub volume: Volume,
    /// What the trader reads, e.g. `refused by pre-trade check: margin level 85% below minimum
    /// 100%`.
    pub reason: String,
    /// Since when this reason holds, ms since the epoch.
    pub since_ms: i64,
}

/// An account's money (`AccountInfo` of the terminal), in the account currency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountMoney {
    pub balance: Money,
    pub equity: Money,
    pub margin: Money,
    pub margin_free: Money,
    /// Floating profit of the open positions.
    pub profit: Money,
    #[serde(default)]
    pub currency: String,
}

/// The latest valuation of one open position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PositionMark {
    pub position_id: PositionId,
    pub price_current: Price,
    #[serde(default)]
    pub swap: Money,
    #[serde(default)]
    pub profit: Money,
    #[serde(default)]
    pub commission: Money,
}

/// The outcome of comparing the ledger's net position per symbol with the terminal's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reconciliation {
    pub ok: bool,
    /// What disagrees, in words (empty when `ok`).
    #[serde(default)]
    pub detail: String,
    pub checked_ms: i64,
}

/// Operator overrides of an account's configuration. They survive the agent's re-registration and
/// win over the registered values in the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_map: Option<SymbolMap>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_decimal_number"
    )]
    pub hedge_ratio: Option<Decimal>,
}

impl AccountOverrides {
    pub fn is_empty(&self) -> bool {
        self.symbol_map.is_none() && self.hedge_ratio.is_none()
    }

    /// The registration with the overrides applied: what the plan uses.
    pub fn apply(&self, registration: &AccountRegistration) -> AccountRegistration {
        let mut effective = registration.clone();
        if let Some(map) = &self.symbol_map {
            effective.symbol_map = map.clone();
        }
        if let Some(ratio) = self.hedge_ratio {
            effective.hedge_ratio = ratio;
        }
        effective
    }
}

/// Which overridable setting an action names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OverrideField {
    SymbolMap,
    HedgeRatio,
}

impl OverrideField {
    pub const fn as_str(self) -> &'static str {
        match self {
            OverrideField::SymbolMap => "symbol_map",
            OverrideField::HedgeRatio => "hedge_ratio",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "symbol_map" => Some(OverrideField::SymbolMap),
            "hedge_ratio" => Some(OverrideField::HedgeRatio),
            _ => None,
        }
    }
}

/// An account as the center knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    #[serde(flatten)]
    pub registration: AccountRegistration,
    pub registered_ms: i64,
    /// Time of the last registration or heartbeat.
    pub last_seen_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AccountStatus>,
    /// Operator overrides; `registration` keeps what the agent sent.
    #[serde(default, skip_serializing_if = "AccountOverrides::is_empty")]
    pub overrides: AccountOverrides,
}

impl Account {
    /// The registration with the operator's overrides applied.
    pub fn effective(&self) -> AccountRegistration {
        self.overrides.apply(&self.registration)
    }
}
