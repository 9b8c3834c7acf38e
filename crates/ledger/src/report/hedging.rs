//! Position ids for the deals of a hedging report, which prints none.
//!
//! Every `in` deal opens the position named by its order ticket (MT5's rule). The closing deals
//! are then shared out among the positions so that every position ends at the volume the report
//! says it keeps (zero for closed positions), its last close falls at the close time of its row in
//! the positions table, and, where the profits allow it, its deals add up to that row's profit.
//! Matching each close on its own cannot do that: with several positions partly closed on one
//! symbol and side, the close that fits best now can be the one another position needs later, and
//! a search over the closes in time order learns of a wrong pick only at that position's close
//! time, after trying every choice in between. So each symbol and side is searched position by
//! position instead ([`super::share`]), in the order they close (ties: open time, then ticket),
//! each taking a set of the remaining closes that finishes it exactly, while running balances
//! check that the rest can still be shared. The deals of one order stay together (an order closes
//! one position). A search that finds nothing within its step budget leaves that symbol to the
//! close-by-close matching.

use crate::record::History;
use hedge_domain::{DealEntry, PositionId, Side};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::share::{search, Close, Target};
use super::OpenPositionRow;

/// A closed position row of a hedging report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClosedRow {
    pub position: u64,
    pub symbol: String,
    pub side: Side,
    /// In 10^-8 lots.
    pub volume: i64,
    pub close_time: i64,
    pub profit: Decimal,
}

struct Live {
    id: u64,
    symbol: String,
    side: Side,
    open_time: i64,
    remaining: i64,
    /// What the report says is still open at the end (0 for closed positions).
    stays: i64,
    close_time: i64,
    profit_target: Option<Decimal>,
    profit_so_far: Decimal,
}

impl Live {
    /// Lower is better; `None` when the position cannot have taken this close.
    fn rank(&self, symbol: &str, side: Side, vol: i64, t: i64, profit: Decimal) -> Option<u8> {
        if self.symbol != symbol || self.side == side || self.open_time > t || self.close_time < t {
            return None;
        }
        let after = self.remaining - vol;
        if after < self.stays {
            return None;
        }
        let finishes = after == 0;
        Some(match (finishes, self.profit_target) {
            (true, Some(target))
                if self.close_time == t && self.profit_so_far + profit == target =>
            {
                0
            }
            (true, _) if self.close_time == t => 1,
            (false, _) if self.close_time > t => 2,
            _ => 3,
        })
    }
}

/// The close-by-close matching: each close goes to the position it most plausibly closed.
fn assign_greedy(
    history: &mut History,
    closed: &[ClosedRow],
    open: &[OpenPositionRow],
    symbols: &BTreeSet<String>,
) {
    let closed_by_id: HashMap<u64, &ClosedRow> = closed.iter().map(|c| (c.position, c)).collect();
    let mut stays: HashMap<u64, i64> = HashMap::new();
    for p in open {
        *stays.entry(p.position.get()).or_default() +=
            hedge_domain::fixed::to_units(p.volume.0).unwrap_or(0);
    }
    let mut order: Vec<usize> = (0..history.deals.len()).collect();
    order.sort_by_key(|&i| (history.deals[i].time_msc, history.deals[i].ticket.get()));
    let mut live: Vec<Live> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for i in order {
        let d = &history.deals[i];
        let Some(side) = d.deal_type.side() else {
            continue;
        };
        if d.order.get() == 0 || !symbols.contains(&d.symbol) {
            continue;
        }
        let vol = hedge_domain::fixed::to_units(d.volume.0).unwrap_or(0);
        if d.entry == DealEntry::In {
            let id = d.order.get();
            match index.get(&id) {
                Some(&k) => live[k].remaining += vol,
                None => {
                    let c = closed_by_id.get(&id);
                    let stays_open = stays.get(&id).copied();
                    index.insert(id, live.len());
                    live.push(Live {
                        id,
                        symbol: d.symbol.clone(),
                        side,
                        open_time: d.time_msc,
                        remaining: vol,
                        stays: stays_open.unwrap_or(0),
                        close_time: c.map(|c| c.close_time).unwrap_or(if stays_open.is_some() {
                            i64::MAX
                        } else {
                            i64::MAX - 1
                        }),
                        profit_target: c.map(|c| c.profit),
                        profit_so_far: Decimal::ZERO,
                    });
                }
            }
            history.deals[i].position_id = PositionId(id);
            continue;
        }
        let (t, profit) = (d.time_msc, d.profit.0);
        let best = live
            .iter()
            .enumerate()
            .filter_map(|(k, p)| {
                p.rank(&d.symbol, side, vol, t, profit)
                    .map(|r| (k, (r, p.close_time, p.open_time)))
            })
            .min_by_key(|(_, key)| *key)
            .map(|(k, _)| k);
        // Any opposite position at all, oldest first, when nothing fits the volume.
        let pick = best.or_else(|| {
            live.iter()
                .enumerate()
                .filter(|(_, p)| p.symbol == d.symbol && p.side != side && p.remaining > 0)
                .min_by_key(|(_, p)| (p.open_time, p.id))
                .map(|(k, _)| k)
        });
        match pick {
            Some(k) => {
                let p = &mut live[k];
                p.remaining -= vol.min(p.remaining);
                p.profit_so_far += profit;
                history.deals[i].position_id = PositionId(p.id);
                if p.remaining == 0 {
                    index.remove(&p.id);
                    live.swap_remove(k);
                    if let Some(moved) = live.get(k) {
                        index.insert(moved.id, k);
                    }
                }
            }
            None => history.deals[i].position_id = d.order.get().into(),
        }
    }
}

/// Assigns every deal of a hedging report to its position: `in` deals by their order, closes by
/// a search per symbol and side, or close by close for a symbol the search cannot settle.
pub(crate) fn assign_positions(
    history: &mut History,
    closed: &[ClosedRow],
    open: &[OpenPositionRow],
) {
    let closed_by_id: HashMap<u64, &ClosedRow> = closed.iter().map(|c| (c.position, c)).collect();
    let mut stays: HashMap<u64, i64> = HashMap::new();
    for p in open {
        *stays.entry(p.position.get()).or_default() +=
            hedge_domain::fixed::to_units(p.volume.0).unwrap_or(0);
    }
    let mut order: Vec<usize> = (0..history.deals.len()).collect();
    order.sort_by_key(|&i| (history.deals[i].time_msc, history.deals[i].ticket.get()));
    // Per (symbol, side of the positions): the positions, then the closes.
    type Group = (Vec<Target>, Vec<Close>);
    let mut groups: BTreeMap<(String, bool), Group> = BTreeMap::new();
    let mut index: HashMap<u64, (String, bool, usize)> = HashMap::new();
    let mut in_profit: HashMap<u64, Decimal> = HashMap::new();
    for &i in &order {
        let d = &history.deals[i];
        let (Some(side), id) = (d.deal_type.side(), d.order.get()) else {
            continue;
        };
        if id == 0 {
            continue;
        }
        let vol = hedge_domain::fixed::to_units(d.volume.0).unwrap_or(0);
        let buy = side == Side::Buy;
        let (symbol, time) = (d.symbol.clone(), d.time_msc);
        if d.entry != DealEntry::In {
            let profit = d.profit.0;
            groups.entry((symbol, !buy)).or_default().1.push(Close {
                deal: i,
                order: id,
                time,
                volume: vol,
                profit,
            });
            continue;
        }
        *in_profit.entry(id).or_default() += d.profit.0;
        history.deals[i].position_id = PositionId(id);
        let targets = &mut groups.entry((symbol.clone(), buy)).or_default().0;
        match index.get(&id) {
            Some((s, b, k)) if *s == symbol && *b == buy => {
                let total = targets[*k].opened.last().map_or(0, |o| o.1) + vol;
                targets[*k].opened.push((time, total));
            }
            // The same order on another symbol or side cannot be one position; the first wins.
            Some(_) => {}
            None => {
                index.insert(id, (symbol, buy, targets.len()));
                targets.push(Target {
                    id,
                    opened: vec![(time, vol)],
                    need: 0,
                    // A close time the row did not give (read as the far future) tells nothing.
                    close_time: closed_by_id
                        .get(&id)
                        .map(|c| c.close_time)
                        .filter(|&t| t != i64::MAX),
                    profit_left: closed_by_id.get(&id).map(|c| c.profit),
                });
            }
        }
    }
    let mut unsettled: BTreeSet<String> = BTreeSet::new();
    let mut found: Vec<(usize, u64)> = Vec::new();
    for ((symbol, _), (targets, closes)) in &mut groups {
        for p in targets.iter_mut() {
            p.need = p.opened.last().map_or(0, |o| o.1) - stays.get(&p.id).copied().unwrap_or(0);
            p.profit_left = p
                .profit_left
                .map(|t| t - in_profit.get(&p.id).copied().unwrap_or_default());
        }
        if closes.is_empty() {
            continue;
        }
        let budget = 1_000_000 + 100 * closes.len() as u64;
        let result = search(targets, closes, true, budget)
            .or_else(|| search(targets, closes, false, budget));
        match result {
            Some(picks) => found.extend(
                closes
                    .iter()
                    .zip(picks)
                    .map(|(c, k)| (c.deal, targets[k].id)),
            ),
            None => {
                tracing::debug!(%symbol, "no assignment of closes fits the report; matching close by close");
                unsettled.insert(symbol.clone());
            }
        }
    }
    for (deal, id) in found {
        if !unsettled.contains(&history.deals[deal].symbol) {
            history.deals[deal].position_id = PositionId(id);
        }
    }
    if !unsettled.is_empty() {
        assign_greedy(history, closed, open, &unsettled);
    }
}
