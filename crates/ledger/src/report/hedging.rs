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
//! position instead, in the order they close (ties: open time, then ticket), each taking a set of
//! the remaining closes that finishes it exactly; exact volumes leave few such sets, so a wrong
//! choice shows at once. The deals of one order stay together (an order closes one position). A
//! search that finds nothing within its step budget leaves that symbol to the close-by-close
//! matching.

use crate::record::History;
use hedge_domain::{DealEntry, PositionId, Side};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
        if d.order.get() == 0 || !symbols.contains(&d.symbol) {
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

/// A position as the search sees it.
struct Target {
    id: u64,
    /// (time, volume opened up to and including that time), in time order.
    opened: Vec<(i64, i64)>,
    /// Volume its closes must add up to: what it opened less what the report says stays open.
    need: i64,
    /// The close time of its row in the positions table; `None` when it stays open or is not listed.
    close_time: Option<i64>,
    /// Its row's profit, less what its `in` deals made.
    profit_left: Option<Decimal>,
}

impl Target {
    fn first_open(&self) -> i64 {
        self.opened.first().map_or(i64::MAX, |o| o.0)
    }

    fn opened_by(&self, t: i64) -> i64 {
        let k = self.opened.partition_point(|o| o.0 <= t);
        k.checked_sub(1).map_or(0, |k| self.opened[k].1)
    }
}

/// A closing deal as the search sees it.
struct Close {
    deal: usize,
    order: u64,
    time: i64,
    volume: i64,
    profit: Decimal,
}

/// The closes of one order: an order closes one position, so they go together.
struct Item {
    closes: Vec<usize>,
    first: i64,
    last: i64,
    volume: i64,
    profit: Decimal,
}

fn items_of(closes: &[Close]) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::new();
    let mut by_order: HashMap<u64, usize> = HashMap::new();
    for (i, c) in closes.iter().enumerate() {
        let k = *by_order.entry(c.order).or_insert_with(|| {
            items.push(Item {
                closes: Vec::new(),
                first: c.time,
                last: c.time,
                volume: 0,
                profit: Decimal::ZERO,
            });
            items.len() - 1
        });
        let item = &mut items[k];
        item.closes.push(i);
        item.last = c.time;
        item.volume += c.volume;
        item.profit += c.profit;
    }
    items
}

/// At most this many ways of finishing one position are kept; exact volumes rarely leave more.
const MAX_OPTIONS: usize = 64;

/// The sets of free items that finish position `p` exactly: all inside its life, one of them at its
/// row's close time, never closing more than it had open at any moment, and (when asked) adding
/// up to its row's profit. Each step of the enumeration is paid from `budget`.
fn ways_to_finish(
    p: &Target,
    items: &[Item],
    closes: &[Close],
    owner: &[Option<usize>],
    exact_profit: bool,
    budget: &mut u64,
) -> Option<Vec<Vec<usize>>> {
    let end = p.close_time.unwrap_or(i64::MAX);
    let window: Vec<usize> = (0..items.len())
        .filter(|&k| owner[k].is_none() && items[k].first >= p.first_open() && items[k].last <= end)
        .collect();
    let mut suffix = vec![0i64; window.len() + 1];
    for (j, &k) in window.iter().enumerate().rev() {
        suffix[j] = suffix[j + 1] + items[k].volume;
    }
    let fits = |chosen: &[usize]| {
        let set: Vec<usize> = chosen.iter().map(|&j| window[j]).collect();
        let at_close = p.close_time.is_none() || set.iter().any(|&k| items[k].last == end);
        let profit_ok = !exact_profit
            || p.profit_left
                .is_none_or(|t| set.iter().map(|&k| items[k].profit).sum::<Decimal>() == t);
        at_close && profit_ok && within_open(p, &set, items, closes)
    };
    let mut found = Vec::new();
    let (mut chosen, mut sum, mut j) = (Vec::new(), 0i64, 0usize);
    loop {
        *budget = budget.checked_sub(1)?;
        if sum == p.need {
            if fits(&chosen) {
                found.push(chosen.iter().map(|&j| window[j]).collect());
                if found.len() == MAX_OPTIONS {
                    break;
                }
            }
        } else if j < window.len() && sum + suffix[j] >= p.need {
            let v = items[window[j]].volume;
            if sum + v <= p.need {
                chosen.push(j);
                sum += v;
            }
            j += 1;
            continue;
        }
        match chosen.pop() {
            Some(last) => {
                sum -= items[window[last]].volume;
                j = last + 1;
            }
            None => break,
        }
    }
    Some(found)
}

/// Whether the position had the volume open for each of these closes when it came.
fn within_open(p: &Target, set: &[usize], items: &[Item], closes: &[Close]) -> bool {
    if p.opened.len() < 2 {
        return true;
    }
    let mut times: Vec<(i64, i64)> = set
        .iter()
        .flat_map(|&k| {
            items[k]
                .closes
                .iter()
                .map(|&i| (closes[i].time, closes[i].volume))
        })
        .collect();
    times.sort_unstable();
    let mut taken = 0;
    times.into_iter().all(|(t, v)| {
        taken += v;
        taken <= p.opened_by(t)
    })
}

/// One position's choices in the search.
struct Frame {
    options: Vec<Vec<usize>>,
    next: usize,
    chosen: Option<usize>,
}

/// Whether the positions from depth `d` on can still share the free items by volume alone: items
/// must go to positions already open when they start, and positions must be finished by items that
/// end by their close time. A wrong choice usually breaks one of these at once, where the search
/// would otherwise find out only when it reached the position left short.
struct Shares<'a> {
    targets: &'a [Target],
    items: &'a [Item],
    /// `targets` indices in search order (by close time).
    order: &'a [usize],
    /// Depths (indices into `order`) by open time.
    by_open: Vec<usize>,
    items_by_first: Vec<usize>,
    items_by_last: Vec<usize>,
}

impl<'a> Shares<'a> {
    fn new(targets: &'a [Target], items: &'a [Item], order: &'a [usize]) -> Self {
        let mut by_open: Vec<usize> = (0..order.len()).collect();
        by_open.sort_by_key(|&d| targets[order[d]].first_open());
        let mut items_by_first: Vec<usize> = (0..items.len()).collect();
        items_by_first.sort_by_key(|&k| items[k].first);
        let mut items_by_last: Vec<usize> = (0..items.len()).collect();
        items_by_last.sort_by_key(|&k| items[k].last);
        Shares {
            targets,
            items,
            order,
            by_open,
            items_by_first,
            items_by_last,
        }
    }

    fn possible(&self, d: usize, owner: &[Option<usize>]) -> bool {
        let need = |depth: usize| self.targets[self.order[depth]].need;
        let (mut open_need, mut p, mut free) = (0i64, 0usize, 0i64);
        for &k in self.items_by_first.iter().filter(|&&k| owner[k].is_none()) {
            let item = &self.items[k];
            while let Some(&depth) = self.by_open.get(p) {
                if self.targets[self.order[depth]].first_open() > item.first {
                    break;
                }
                if depth >= d {
                    open_need += need(depth);
                }
                p += 1;
            }
            free += item.volume;
            if free > open_need {
                return false;
            }
        }
        let (mut due, mut k, mut ended) = (0i64, 0usize, 0i64);
        for depth in d..self.order.len() {
            let end = self.targets[self.order[depth]]
                .close_time
                .unwrap_or(i64::MAX);
            while let Some(&item) = self.items_by_last.get(k) {
                if self.items[item].last > end {
                    break;
                }
                if owner[item].is_none() {
                    ended += self.items[item].volume;
                }
                k += 1;
            }
            due += need(depth);
            if due > ended {
                return false;
            }
        }
        due == free
    }
}

/// Shares the closes of one symbol and side among its positions, position by position in the
/// order they close (the still-open ones last), backtracking when a position cannot be finished
/// from what is left. Returns the target index of every close, or `None` when there is no such
/// sharing or the budget ran out first.
fn search(
    targets: &[Target],
    closes: &[Close],
    exact_profit: bool,
    mut budget: u64,
) -> Option<Vec<usize>> {
    let items = items_of(closes);
    let mut order: Vec<usize> = (0..targets.len())
        .filter(|&k| targets[k].need > 0)
        .collect();
    order.sort_by_key(|&k| {
        let p = &targets[k];
        (p.close_time.unwrap_or(i64::MAX), p.first_open(), p.id)
    });
    let shares = Shares::new(targets, &items, &order);
    let mut owner: Vec<Option<usize>> = vec![None; items.len()];
    let mut stack: Vec<Frame> = Vec::with_capacity(order.len());
    let mut descend = true;
    loop {
        budget = budget.checked_sub(1)?;
        if descend {
            let d = stack.len();
            if d == order.len() {
                if owner.iter().all(Option::is_some) {
                    let mut picks = vec![0; closes.len()];
                    for (item, k) in items.iter().zip(&owner) {
                        for &i in &item.closes {
                            picks[i] = (*k)?;
                        }
                    }
                    return Some(picks);
                }
            } else {
                let p = &targets[order[d]];
                // Checking the shares costs a pass over the items and positions: paid for.
                let work = (items.len() + order.len()) as u64 / 16;
                budget = budget.checked_sub(work)?;
                let options = if shares.possible(d, &owner) {
                    ways_to_finish(p, &items, closes, &owner, exact_profit, &mut budget)?
                } else {
                    Vec::new()
                };
                stack.push(Frame {
                    options,
                    next: 0,
                    chosen: None,
                });
            }
        }
        let d = stack.len().checked_sub(1)?;
        let frame = &mut stack[d];
        if let Some(prev) = frame.chosen.take() {
            for &k in &frame.options[prev] {
                owner[k] = None;
            }
        }
        if frame.next < frame.options.len() {
            for &k in &frame.options[frame.next] {
                owner[k] = Some(order[d]);
            }
            frame.chosen = Some(frame.next);
            frame.next += 1;
            descend = true;
        } else {
            stack.pop();
            descend = false;
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
            crate::fixed::to_units(p.volume.0).unwrap_or(0);
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
        let vol = crate::fixed::to_units(d.volume.0).unwrap_or(0);
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
