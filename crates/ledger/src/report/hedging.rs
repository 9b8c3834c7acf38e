//! Position ids for the deals of a hedging report, which prints none.
//!
//! Every `in` deal opens the position named by its order ticket (MT5's rule). A closing deal is
//! given the position it most plausibly closed: one on the same symbol and opposite side, open at
//! the deal's time, with enough volume left above what the report says stays open at the end, and
//! preferably one the report's positions table says closes at this very time with this profit.

use crate::record::History;
use hedge_domain::{DealEntry, PositionId, Side};
use rust_decimal::Decimal;
use std::collections::HashMap;

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

pub(crate) fn assign_positions(
    history: &mut History,
    closed: &[ClosedRow],
    open: &[OpenPositionRow],
) {
    let closed_by_id: HashMap<u64, &ClosedRow> = closed.iter().map(|c| (c.position, c)).collect();
    let mut stays: HashMap<u64, i64> = HashMap::new();
    for p in open {
        *stays.entry(p.position.get()).or_default() +=
            crate::fixed::to_units(p.volume.0).unwrap_or(0);
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
        if d.order.get() == 0 {
            continue;
        }
        let vol = crate::fixed::to_units(d.volume.0).unwrap_or(0);
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
