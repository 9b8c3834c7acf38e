//! Talking to the decision center: what goes through the outbox (registrations, position reports,
//! tumbler events, legacy opens) and how each kind is delivered.
//!
//! Registration travels through the outbox too, so it always reaches the center before the reports
//! queued after it (a report about an account the center does not know yet would be refused).

use crate::args::AgentSettings;
use crate::outbox::{Delivery, DeliveryError, NewItem, Outbox, OutboxItem, OutboxKind};
use crate::status::StatusBoard;
use hedge_center_api::client::{CenterClient, ClientError};
use hedge_center_api::model::{
    AccountRegistration, AccountRole, AccountStatus, IdempotencyKey, Position, PositionFilter,
    PositionReport, PositionStatus, Reconciliation, TumblerFiring,
};
use hedge_domain::{Login, PositionId, Side, SymbolMap, Volume};
use hedge_protocol::{Hello, SymbolInfo, Terminal};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The prototype center's `GET /new_position/` body.
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

/// Delivers outbox items to the center (`/v1`) and/or a prototype-style center.
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

/// A prototype-style center: `GET /new_position/` with a JSON body.
#[derive(Clone, Debug)]
pub struct LegacyCenter {
    http: reqwest::Client,
    base: String,
}

impl LegacyCenter {
    pub fn new(base: &str) -> Result<Self, DeliveryError> {
        let base = base.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(DeliveryError::Rejected(format!(
                "legacy center URL must start with http:// or https://, got {base:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| DeliveryError::Rejected(e.to_string()))?;
        Ok(LegacyCenter { http, base })
    }

    /// `GET /new_position/` with `{"symbol":..,"volume":..,"side":0|1}`, as the prototype sent it.
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

/// Builds the delivery for `settings` (and an optional prototype-style center).
pub fn delivery(settings: &AgentSettings, legacy: Option<&str>) -> Result<CenterDelivery, String> {
    let center = match &settings.center {
        Some(c) => Some(
            CenterClient::new(
                c.url.clone(),
                c.token.as_ref().map(|t| t.expose().to_owned()),
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let legacy = match legacy {
        Some(url) => Some(LegacyCenter::new(url).map_err(|e| e.to_string())?),
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
    let specs = symbols
        .iter()
        .filter(|s| match settings.symbol_map.to_canonical(&s.spec.name) {
            Some(canonical) => settings.watches(&canonical),
            None => settings.symbols.is_empty(),
        })
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

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a client's heartbeat compares the center's positions with, and whom it tells when they
/// differ (the client agent, which then re-syncs the center from the terminal).
#[derive(Clone, Debug)]
pub struct CenterCheck {
    pub map: SymbolMap,
    pub on_difference: Arc<tokio::sync::Notify>,
}

/// Sends the account's status to the center every `interval` (best effort: a lost heartbeat is
/// replaced by the next). With `refresh`, each heartbeat first asks the terminal for a snapshot and
/// waits briefly for the agent to value it, so the account block and the marks are current.
pub fn spawn_heartbeat(
    center: CenterClient,
    login: Login,
    board: StatusBoard,
    outbox: Arc<Outbox>,
    interval: Duration,
    refresh: Option<Terminal>,
    compare: Option<CenterCheck>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut requests = 0u64;
        loop {
            tick.tick().await;
            if let Some(terminal) = refresh.as_ref().filter(|t| t.is_connected()) {
                let (_, before) = board.valuation();
                requests += 1;
                let cmd_id = format!("status-{login}-{}-{requests}", now_ms());
                let asked = tokio::time::timeout(
                    Duration::from_secs(2),
                    terminal.request_snapshot(cmd_id.into()),
                )
                .await;
                if matches!(asked, Ok(Ok(ref r)) if r.is_done()) {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    while board.valuation().1 == before && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            let mut status = status_of(&board, outbox.pending().unwrap_or(0));
            if let Ok((count, reason)) = outbox.dead_letter_summary() {
                status.dead_letters = count;
                status.dead_letter_reason = reason;
            }
            if let (Some(terminal), Some(check)) = (refresh.as_ref(), compare.as_ref()) {
                status.center_check =
                    check_center(&center, login, terminal, &outbox, &check.map).await;
                if status.center_check.as_ref().is_some_and(|c| !c.ok) {
                    check.on_difference.notify_one();
                }
            }
            if let Err(e) = center.heartbeat(login, &status).await {
                tracing::debug!(error = %e, "status heartbeat to the center failed");
            }
        }
    })
}

/// Net volume per canonical symbol, buys positive, zeros left out.
fn net_by_symbol<'a>(
    rows: impl Iterator<Item = (String, Side, Volume)> + 'a,
) -> BTreeMap<String, Decimal> {
    let mut net: BTreeMap<String, Decimal> = BTreeMap::new();
    for (symbol, side, volume) in rows {
        *net.entry(symbol).or_default() += match side {
            Side::Buy => volume.0,
            Side::Sell => -volume.0,
        };
    }
    net.retain(|_, v| !v.is_zero());
    net
}

/// The center's open and partially closed positions of the account (every page), and the stored
/// record of each of `also` that is not among them (closed, or not there at all).
pub async fn books_of(
    center: &CenterClient,
    login: Login,
    also: &[PositionId],
) -> Result<Vec<Position>, ClientError> {
    let mut rows: Vec<Position> = Vec::new();
    for status in [PositionStatus::Open, PositionStatus::PartiallyClosed] {
        let mut after = None;
        loop {
            let page = center
                .positions(&PositionFilter {
                    login: Some(login),
                    status: Some(status),
                    after,
                    limit: Some(1000),
                    ..PositionFilter::default()
                })
                .await?;
            rows.extend(page.items);
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    let listed: BTreeSet<PositionId> = rows.iter().map(|p| p.position_id).collect();
    for id in also.iter().filter(|id| !listed.contains(id)) {
        match center.position(login, *id).await {
            Ok(detail) => rows.push(detail.position),
            Err(ClientError::Rejected { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(rows)
}

/// The center's open positions of the account against the terminal's, net per symbol. `None` when
/// it cannot be told now: reports still waiting, the terminal away or trading during the check, or
/// the center unreachable.
async fn check_center(
    center: &CenterClient,
    login: Login,
    terminal: &Terminal,
    outbox: &Outbox,
    map: &SymbolMap,
) -> Option<Reconciliation> {
    let settled = || outbox.pending().ok() == Some(0) && terminal.is_connected();
    if !settled() {
        return None;
    }
    let read_terminal = || {
        terminal.with_state(|s| {
            let rows = s.positions.values().map(|p| {
                (
                    map.to_canonical(&p.symbol)
                        .unwrap_or_else(|| p.symbol.clone()),
                    p.position_type.side(),
                    p.volume,
                )
            });
            (s.last_time, net_by_symbol(rows))
        })
    };
    let (before, on_terminal) = read_terminal();
    let rows: Vec<(String, Side, Volume)> = books_of(center, login, &[])
        .await
        .ok()?
        .into_iter()
        .map(|p| (p.symbol, p.side, p.volume))
        .collect();
    // A trade during the check, or a report queued meanwhile, makes a difference that is no drift.
    if read_terminal().0 != before || !settled() {
        return None;
    }
    let in_center = net_by_symbol(rows.into_iter());
    let mut differences = Vec::new();
    for symbol in on_terminal
        .keys()
        .chain(in_center.keys())
        .collect::<BTreeSet<_>>()
    {
        let t = on_terminal.get(symbol).copied().unwrap_or_default();
        let c = in_center.get(symbol).copied().unwrap_or_default();
        if t != c {
            differences.push(format!("{symbol}: terminal {t}, center {c}"));
        }
    }
    if !differences.is_empty() {
        tracing::warn!(differences = %differences.join("; "), "the center's positions differ from the terminal's");
    }
    Some(Reconciliation {
        ok: differences.is_empty(),
        detail: differences.join("; "),
        checked_ms: now_ms(),
    })
}

/// The status the board describes.
pub fn status_of(board: &StatusBoard, outbox_pending: u64) -> AccountStatus {
    let s = board.snapshot();
    let (valuation, _) = board.valuation();
    let valuation = valuation.unwrap_or_default();
    AccountStatus {
        connected: s.connected,
        last_event_ms: board.last_event_ms(),
        outbox_pending,
        message: s.last_event.clone(),
        account: valuation.account,
        marks: valuation.marks,
        reconciliation: valuation.reconciliation,
        ..AccountStatus::default()
    }
}
