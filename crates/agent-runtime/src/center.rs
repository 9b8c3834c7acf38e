//! Talking to the decision center: what goes through the outbox (registrations, position reports,
//! tumbler events, legacy opens) and how each kind is delivered.
//!
//! Entry points: [`delivery`] builds the [`CenterDelivery`] an agent's outbox sender uses;
//! [`registration`] and [`queue_registration`] announce the account. Registration travels through
//! the outbox too, so it always reaches the center before the reports queued after it (a report
//! about an account the center does not know yet would be refused).

use crate::args::AgentSettings;
use crate::clock::now_ms;
use crate::outbox::{Delivery, DeliveryError, NewItem, Outbox, OutboxItem, OutboxKind};
use hedge_center_api::client::{CenterClient, ClientError};
use hedge_center_api::model::{
    AccountRegistration, AccountRole, IdempotencyKey, PositionReport, TumblerFiring,
};
use hedge_domain::{Login, Side, Volume};
use hedge_protocol::{Hello, SymbolInfo};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The legacy center's `GET /new_position/` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyOpen {
    pub symbol: String,
    pub volume: Volume,
    /// 0 buy, 1 sell.
    pub side: u8,
}

impl LegacyOpen {
    pub fn new(symbol: impl Into<String>, volume: Volume, side: Side) -> Self {
        LegacyOpen {
            symbol: symbol.into(),
            volume,
            side: side.code(),
        }
    }
}

/// Delivers outbox items to the center (`/v1`) and/or a legacy center.
#[derive(Clone, Debug, Default)]
pub struct CenterDelivery {
    pub center: Option<CenterClient>,
    pub legacy: Option<LegacyCenter>,
}

/// How a center answer counts for the outbox: only a refusal (4xx) or a bad configuration is final;
/// anything else, an answer this version does not understand included, is retried, so an item is
/// never dropped because the center was being upgraded.
pub fn from_client_error(e: ClientError) -> DeliveryError {
    match e {
        ClientError::Rejected { .. } | ClientError::Config(_) => {
            DeliveryError::Rejected(e.to_string())
        }
        ClientError::Unavailable(_) | ClientError::Protocol(_) => {
            DeliveryError::Unavailable(e.to_string())
        }
    }
}

/// An outbox item's body; an unreadable one can never be sent and is refused.
pub fn parse_item<T: for<'de> Deserialize<'de>>(item: &OutboxItem) -> Result<T, DeliveryError> {
    serde_json::from_str(&item.body)
        .map_err(|e| DeliveryError::Rejected(format!("unreadable {} item: {e}", item.kind)))
}

impl Delivery for CenterDelivery {
    async fn deliver(&self, item: &OutboxItem) -> Result<(), DeliveryError> {
        let kind = OutboxKind::parse(&item.kind);
        if kind == Some(OutboxKind::LegacyOpen) {
            return match &self.legacy {
                Some(legacy) => legacy.new_position(&parse_item::<LegacyOpen>(item)?).await,
                None => Err(DeliveryError::Rejected(
                    "no legacy center configured".into(),
                )),
            };
        }
        let Some(center) = &self.center else {
            return Err(DeliveryError::Rejected(format!(
                "no center configured for {} items",
                item.kind
            )));
        };
        match kind {
            Some(OutboxKind::Register) => center
                .register_account(&parse_item::<AccountRegistration>(item)?)
                .await
                .map(drop)
                .map_err(from_client_error),
            Some(OutboxKind::PositionEvent) => center
                .report_position(&parse_item::<PositionReport>(item)?)
                .await
                .map(drop)
                .map_err(from_client_error),
            Some(OutboxKind::TumblerEvent) => {
                let mut firing = parse_item::<TumblerFiring>(item)?;
                if firing.idempotency_key.is_empty() {
                    // Queued by an older agent, whose bodies carried no key: the item's own key is
                    // the one it would have sent.
                    firing.idempotency_key = IdempotencyKey::new(item.key.clone());
                }
                center
                    .tumbler_fired(&firing)
                    .await
                    .map(drop)
                    .map_err(from_client_error)
            }
            _ => Err(DeliveryError::Rejected(format!(
                "unknown item kind {:?}",
                item.kind
            ))),
        }
    }
}

/// A legacy center: `GET /new_position/` with a JSON body.
#[derive(Clone, Debug)]
pub struct LegacyCenter {
    http: reqwest::Client,
    base: String,
}

/// Why a center to deliver to could not be set up. Configuration, so never worth retrying: the
/// agent stops with the reason.
#[derive(Debug, thiserror::Error)]
pub enum DeliverySetupError {
    #[error("center: {0}")]
    Center(#[from] ClientError),
    #[error("legacy center URL must start with http:// or https://, got {0:?}")]
    LegacyUrl(String),
    #[error("legacy center: {0}")]
    LegacyHttp(#[from] reqwest::Error),
}

impl LegacyCenter {
    pub fn new(base: &str) -> Result<Self, DeliverySetupError> {
        let base = base.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(DeliverySetupError::LegacyUrl(base));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .build()?;
        Ok(LegacyCenter { http, base })
    }

    /// `GET /new_position/` with `{"symbol":..,"volume":..,"side":0|1}`, as legacy agents sent it.
    pub async fn new_position(&self, open: &LegacyOpen) -> Result<(), DeliveryError> {
        let resp = self
            .http
            .get(format!("{}/new_position/", self.base))
            .json(open)
            .send()
            .await
            .map_err(|e| DeliveryError::Unavailable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408 {
            Err(DeliveryError::Rejected(format!(
                "legacy center answered {status}"
            )))
        } else {
            Err(DeliveryError::Unavailable(format!(
                "legacy center answered {status}"
            )))
        }
    }
}

/// Builds the delivery for `settings` (and an optional legacy center).
pub fn delivery(
    settings: &AgentSettings,
    legacy: Option<&str>,
) -> Result<CenterDelivery, DeliverySetupError> {
    let center = match &settings.center {
        Some(c) => Some(CenterClient::new(
            c.url.clone(),
            c.token.as_ref().map(|t| t.expose().to_owned()),
        )?),
        None => None,
    };
    let legacy = match legacy {
        Some(url) => Some(LegacyCenter::new(url)?),
        None => None,
    };
    Ok(CenterDelivery { center, legacy })
}

/// Client-account options of a registration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientHedging {
    pub hedge_ratio: Option<Decimal>,
    pub hedge_login: Option<Login>,
}

/// The registration of this account: role, margin mode, symbol map and the specs of the watched
/// symbols (all the terminal's symbols when none are watched).
pub fn registration(
    settings: &AgentSettings,
    role: AccountRole,
    hello: &Hello,
    symbols: &[SymbolInfo],
    hedging: &ClientHedging,
) -> AccountRegistration {
    let names = settings
        .symbol_map
        .resolve(symbols.iter().map(|s| s.spec.name.as_str()));
    let specs = symbols
        .iter()
        .filter(|s| settings.watches(&names.canonical_of(&s.spec.name)))
        .map(|s| s.spec.clone())
        .collect();
    AccountRegistration {
        login: settings.login,
        role,
        server: hello.server.clone(),
        company: hello.company.clone(),
        margin_mode: hello.margin_mode,
        symbol_map: settings.symbol_map.clone(),
        hedge_ratio: hedging.hedge_ratio.unwrap_or(Decimal::ONE),
        hedge_login: hedging.hedge_login,
        symbols: specs,
        currency: hello.currency.clone(),
    }
}

/// Queues the registration; its key changes with its content, so an unchanged registration on a
/// reconnect is not sent twice while still queued.
pub fn queue_registration(
    outbox: &Outbox,
    registration: &AccountRegistration,
) -> Result<(), crate::outbox::OutboxError> {
    let body = serde_json::to_string(registration).unwrap_or_default();
    let key = format!(
        "register:{}:{}:{:016x}",
        registration.login,
        now_ms(),
        fnv1a(body.as_bytes())
    );
    outbox.push(NewItem {
        key,
        kind: OutboxKind::Register,
        body,
    })?;
    Ok(())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
