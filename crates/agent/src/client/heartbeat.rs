//! The client's status heartbeat to the center: every few seconds the account's status (with a
//! fresh valuation asked from the terminal first) and a comparison of the center's open positions
//! with the terminal's, net per symbol; a difference wakes the client's re-sync
//! ([`super::center_resync`]). Also [`books_of`], the center's positions of the account.

use hedge_agent_runtime::clock::now_ms;
use hedge_agent_runtime::outbox::Outbox;
use hedge_agent_runtime::status::StatusBoard;
use hedge_center_api::client::{CenterClient, ClientError};
use hedge_center_api::model::{
    AccountStatus, Position, PositionFilter, PositionStatus, Reconciliation,
};
use hedge_domain::{Login, PositionId, Side, SymbolMap, Volume};
use hedge_protocol::Terminal;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

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
    let names = map.resolve(
        terminal
            .symbols()
            .iter()
            .map(|s| s.spec.name.as_str())
            .collect::<Vec<_>>(),
    );
    let read_terminal = || {
        terminal.with_state(|s| {
            let rows = s.positions.values().map(|p| {
                (
                    names.canonical_of(&p.symbol),
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
