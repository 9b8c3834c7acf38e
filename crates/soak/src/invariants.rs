//! What must hold once a soak has settled, checked over what was read from the accounts and the
//! center. Pure: the runner collects an [`Observed`], [`check`] judges it.

use hedge_center_api::model::{
    Event, EventKind, Hedge, HedgePlan, HedgeStatus, PlanItemId, Position, PositionStatus,
};
use hedge_domain::{DealReason, Login, Side, SymbolMap, Volume};
use hedge_protocol::{DealRecord, PositionRecord};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A client account as its terminal holds it.
#[derive(Clone, Debug)]
pub struct ClientView {
    pub login: Login,
    /// A netting account: the center holds its bi-directional positions (the ledger's, one per
    /// opening order) while the terminal holds one net position per symbol, so they are compared
    /// per symbol.
    pub netting: bool,
    pub hedge_login: Login,
    pub map: SymbolMap,
    pub positions: Vec<PositionRecord>,
    pub deals: Vec<DealRecord>,
}

/// A hedge account as its terminal holds it.
#[derive(Clone, Debug)]
pub struct HedgeView {
    pub login: Login,
    pub netting: bool,
    pub map: SymbolMap,
    pub positions: Vec<PositionRecord>,
    pub deals: Vec<DealRecord>,
}

/// Everything the checks read.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub clients: Vec<ClientView>,
    pub hedges: Vec<HedgeView>,
    /// Every position the center holds, all statuses.
    pub center_positions: Vec<Position>,
    /// Every hedge the center holds, all statuses.
    pub center_hedges: Vec<Hedge>,
    pub plans: Vec<HedgePlan>,
    /// Position events (for duplicates), and hedge events (for corrections).
    pub events: Vec<Event>,
    /// Largest volume each plan item had whenever the plan was read during the run.
    pub items_seen: BTreeMap<(Login, PlanItemId), Volume>,
}

/// One invariant's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub name: &'static str,
    pub ok: bool,
    pub figures: serde_json::Value,
    /// The first differences found (at most 20).
    pub details: Vec<String>,
}

fn verdict(name: &'static str, figures: serde_json::Value, details: Vec<String>) -> Verdict {
    Verdict {
        name,
        ok: details.is_empty(),
        figures,
        details: details.into_iter().take(20).collect(),
    }
}

fn signed(side: Side, v: Volume) -> Decimal {
    match side {
        Side::Buy => v.0,
        Side::Sell => -v.0,
    }
}

fn open(p: &Position) -> bool {
    matches!(
        p.status,
        PositionStatus::Open | PositionStatus::PartiallyClosed
    ) && p.volume.is_positive()
}

fn hedge_open(h: &Hedge) -> bool {
    matches!(h.status, HedgeStatus::Open | HedgeStatus::PartiallyClosed)
        && h.open_volume.is_positive()
}

/// Every check, in the order the report prints them.
pub fn check(o: &Observed) -> Vec<Verdict> {
    vec![
        client_positions(o),
        hedge_records(o),
        hedge_net(o),
        no_double_hedge(o),
    ]
}

/// Open positions by id: canonical symbol, side and volume.
type Held = BTreeMap<u64, (String, Side, Volume)>;

/// Every client position is in the center exactly once, as the terminal holds it.
pub fn client_positions(o: &Observed) -> Verdict {
    let mut details = Vec::new();
    let mut open_positions = 0;
    let mut ever = 0;
    for c in &o.clients {
        open_positions += compare_open(o, c, &mut details);
        if !c.netting {
            ever += traded_never_recorded(o, c, &mut details);
        }
    }
    let seen = position_changes(o);
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    for (key, n) in &duplicates {
        details.push(format!("position change {key:?} stored {n} times"));
    }
    verdict(
        "client_positions_exactly_once",
        serde_json::json!({
            "positions_traded": ever,
            "open_on_terminals": open_positions,
            "position_events": seen.values().map(|n| u64::from(*n)).sum::<u64>(),
            "duplicate_events": duplicates.len(),
        }),
        details,
    )
}

/// Compares the client's open positions on its terminal with those open in the center (per
/// symbol for a netting account, per position otherwise); returns how many the terminal holds.
fn compare_open(o: &Observed, c: &ClientView, details: &mut Vec<String>) -> usize {
    let terminal: Held = c
        .positions
        .iter()
        .map(|p| {
            (
                p.identifier.0,
                (
                    c.map
                        .to_canonical(&p.symbol)
                        .unwrap_or_else(|| p.symbol.clone()),
                    p.position_type.side(),
                    p.volume,
                ),
            )
        })
        .collect();
    let center: Held = o
        .center_positions
        .iter()
        .filter(|p| p.login == c.login && open(p))
        .map(|p| (p.position_id.0, (p.symbol.clone(), p.side, p.volume)))
        .collect();
    if c.netting {
        let (t, x) = (net_per_symbol(&terminal), net_per_symbol(&center));
        if t != x {
            details.push(format!(
                "{} net per symbol: terminal {t:?}, center {x:?}",
                c.login
            ));
        }
        return terminal.len();
    }
    for (id, t) in &terminal {
        match center.get(id) {
            None => details.push(format!(
                "{} #{id}: {t:?} on the terminal, not open in the center",
                c.login
            )),
            Some(x) if x != t => {
                details.push(format!("{} #{id}: terminal {t:?}, center {x:?}", c.login))
            }
            Some(_) => {}
        }
    }
    for (id, x) in &center {
        if !terminal.contains_key(id) {
            details.push(format!(
                "{} #{id}: open in the center {x:?}, not on the terminal",
                c.login
            ));
        }
    }
    terminal.len()
}

fn net_per_symbol(rows: &Held) -> BTreeMap<String, Decimal> {
    let mut out: BTreeMap<String, Decimal> = BTreeMap::new();
    for (symbol, side, volume) in rows.values() {
        *out.entry(symbol.clone()).or_default() += signed(*side, *volume);
    }
    out.retain(|_, v| !v.is_zero());
    out
}

/// Notes each position the client's terminal traded that the center never held; returns how
/// many positions the terminal traded.
fn traded_never_recorded(o: &Observed, c: &ClientView, details: &mut Vec<String>) -> usize {
    let known: BTreeSet<u64> = o
        .center_positions
        .iter()
        .filter(|p| p.login == c.login)
        .map(|p| p.position_id.0)
        .collect();
    let traded: BTreeSet<u64> = c
        .deals
        .iter()
        .filter(|d| d.deal_type.is_trade())
        .map(|d| d.position_id.0)
        .collect();
    for id in traded.difference(&known) {
        details.push(format!(
            "{} #{id}: traded on the terminal, never in the center",
            c.login
        ));
    }
    traded.len()
}

/// A position change as its event names it: login, position id, the position's sequence.
type ChangeKey = (Option<u64>, Option<u64>, Option<u64>);

/// How often each position change was stored: the same change twice would be two events with
/// the same key.
fn position_changes(o: &Observed) -> BTreeMap<ChangeKey, u32> {
    let mut seen = BTreeMap::new();
    for e in &o.events {
        if !matches!(
            e.kind,
            EventKind::PositionOpened
                | EventKind::PositionIncreased
                | EventKind::PositionReduced
                | EventKind::PositionClosed
                | EventKind::PositionModified
                | EventKind::PositionReversed
        ) {
            continue;
        }
        let key = (
            e.login.map(|l| l.0),
            e.data.get("position_id").and_then(|v| v.as_u64()),
            e.data.get("last_seq").and_then(|v| v.as_u64()),
        );
        *seen.entry(key).or_insert(0u32) += 1;
    }
    seen
}

/// The center's open hedges equal the hedge accounts' positions, per position and per symbol.
pub fn hedge_records(o: &Observed) -> Verdict {
    let mut details = Vec::new();
    let mut open_hedges = 0;
    for h in &o.hedges {
        let records: Vec<&Hedge> = o
            .center_hedges
            .iter()
            .filter(|x| x.hedge_login == h.login && hedge_open(x))
            .collect();
        open_hedges += records.len();
        let mut account_by_symbol: BTreeMap<String, Decimal> = BTreeMap::new();
        for p in &h.positions {
            let canonical = h
                .map
                .to_canonical(&p.symbol)
                .unwrap_or_else(|| p.symbol.clone());
            *account_by_symbol.entry(canonical).or_default() +=
                signed(p.position_type.side(), p.volume);
        }
        let mut center_by_symbol: BTreeMap<String, Decimal> = BTreeMap::new();
        for r in &records {
            *center_by_symbol.entry(r.symbol.clone()).or_default() += signed(r.side, r.open_volume);
        }
        let symbols: BTreeSet<&String> = account_by_symbol
            .keys()
            .chain(center_by_symbol.keys())
            .collect();
        for s in symbols {
            let a = account_by_symbol.get(s).copied().unwrap_or_default();
            let c = center_by_symbol.get(s).copied().unwrap_or_default();
            if a != c {
                details.push(format!(
                    "{} {s}: account net {a}, center's open hedges {c}",
                    h.login
                ));
            }
        }
        if !h.netting {
            let mut by_position: BTreeMap<u64, Decimal> = BTreeMap::new();
            for r in &records {
                *by_position.entry(r.position_id.0).or_default() += signed(r.side, r.open_volume);
            }
            let account: BTreeMap<u64, Decimal> = h
                .positions
                .iter()
                .map(|p| (p.identifier.0, signed(p.position_type.side(), p.volume)))
                .collect();
            for id in by_position
                .keys()
                .chain(account.keys())
                .collect::<BTreeSet<_>>()
            {
                let a = account.get(id).copied().unwrap_or_default();
                let c = by_position.get(id).copied().unwrap_or_default();
                if a != c {
                    details.push(format!(
                        "{} position #{id}: account {a}, center {c}",
                        h.login
                    ));
                }
            }
        }
    }
    let corrections = o
        .events
        .iter()
        .filter(|e| e.reason.contains(": correction: "))
        .count();
    verdict(
        "hedge_records_follow_the_accounts",
        serde_json::json!({
            "open_hedges": open_hedges,
            "hedge_positions": o.hedges.iter().map(|h| h.positions.len()).sum::<usize>(),
            "corrections": corrections,
        }),
        details,
    )
}

/// Each hedge account's net per symbol is the opposite of its clients' net (ratio 1), or the plan
/// shows a residual for the symbol.
pub fn hedge_net(o: &Observed) -> Verdict {
    let mut details = Vec::new();
    let mut symbols = 0;
    let mut residuals = 0;
    for h in &o.hedges {
        let mut net: BTreeMap<String, Decimal> = BTreeMap::new();
        for p in &h.positions {
            let canonical = h
                .map
                .to_canonical(&p.symbol)
                .unwrap_or_else(|| p.symbol.clone());
            *net.entry(canonical).or_default() += signed(p.position_type.side(), p.volume);
        }
        for c in o.clients.iter().filter(|c| c.hedge_login == h.login) {
            for p in &c.positions {
                let canonical = c
                    .map
                    .to_canonical(&p.symbol)
                    .unwrap_or_else(|| p.symbol.clone());
                *net.entry(canonical).or_default() += signed(p.position_type.side(), p.volume);
            }
        }
        let plan = o.plans.iter().find(|p| p.hedge_login == h.login);
        for (symbol, off) in net {
            symbols += 1;
            if off.is_zero() {
                continue;
            }
            let residual = plan.and_then(|p| p.residuals.iter().find(|r| r.symbol == symbol));
            match residual {
                Some(r) => {
                    residuals += 1;
                    let _ = r;
                }
                None => details.push(format!(
                    "{} {symbol}: hedge + clients = {off}, and the plan shows no residual{}",
                    h.login,
                    plan.and_then(|p| p.items.iter().find(|i| i.symbol == symbol))
                        .map(|i| format!(" (it still asks {} {})", i.side, i.volume))
                        .unwrap_or_default()
                )),
            }
        }
    }
    verdict(
        "hedge_net_opposite_to_clients",
        serde_json::json!({ "symbols": symbols, "residuals_shown": residuals }),
        details,
    )
}

/// No order on a hedge account without a plan item or an operator command; no plan item filled
/// beyond the largest volume it was seen with.
pub fn no_double_hedge(o: &Observed) -> Verdict {
    let mut details = Vec::new();
    let mut deals = 0;
    let mut by_item: BTreeMap<(Login, PlanItemId), Volume> = BTreeMap::new();
    for h in &o.hedges {
        for d in h.deals.iter().filter(|d| d.deal_type.is_trade()) {
            deals += 1;
            // Closed by the server (stop-loss, stop-out): no order of ours.
            if matches!(d.reason, DealReason::Sl | DealReason::So | DealReason::Tp) {
                continue;
            }
            if let Some(item) = hedge_hedger::tag::item_of(d.magic, &d.comment) {
                *by_item.entry((h.login, item)).or_insert(Volume::ZERO) += d.volume;
            } else if hedge_hedger::tag::command_of(&d.comment).is_none() {
                details.push(format!(
                    "{} deal #{} ({} {} {}) has no plan item and no command",
                    h.login, d.ticket, d.deal_type, d.volume, d.symbol
                ));
            }
        }
    }
    let mut unseen = 0;
    for (key, filled) in &by_item {
        match o.items_seen.get(key) {
            Some(v) if filled > v => details.push(format!(
                "{} plan item {}: filled {filled}, its volume was {v}",
                key.0, key.1
            )),
            Some(_) => {}
            None => unseen += 1,
        }
    }
    verdict(
        "no_double_hedge",
        serde_json::json!({
            "hedge_deals": deals,
            "plan_items_executed": by_item.len(),
            "items_not_seen_in_a_plan_read": unseen,
        }),
        details,
    )
}
