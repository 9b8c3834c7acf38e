//! The search that shares a hedging report's closing deals among its positions (see
//! [`super::hedging`] for the rules it follows).
//!
//! Positions are taken in the order they close, each finished by a set of the closes still free.
//! Two running balances over time, kept in range-add / minimum trees, tell after every choice
//! whether the rest can still be shared by volume: closes must go to positions already open when
//! they start, and positions must be finished by closes that end by their close time. A choice that
//! breaks either is dropped at once, so a wrong pick costs one step instead of a search through
//! everything after it.

use rust_decimal::Decimal;
use std::collections::HashMap;

/// A position as the search sees it.
pub(super) struct Target {
    pub id: u64,
    /// (time, volume opened up to and including that time), in time order.
    pub opened: Vec<(i64, i64)>,
    /// Volume its closes must add up to: what it opened less what the report says stays open.
    pub need: i64,
    /// The close time of its row in the positions table; `None` when it stays open or is not listed.
    pub close_time: Option<i64>,
    /// Its row's profit, less what its `in` deals made.
    pub profit_left: Option<Decimal>,
}

impl Target {
    fn first_open(&self) -> i64 {
        self.opened.first().map_or(i64::MAX, |o| o.0)
    }

    fn end(&self) -> i64 {
        self.close_time.unwrap_or(i64::MAX)
    }

    fn opened_by(&self, t: i64) -> i64 {
        let k = self.opened.partition_point(|o| o.0 <= t);
        k.checked_sub(1).map_or(0, |k| self.opened[k].1)
    }
}

/// A closing deal as the search sees it.
pub(super) struct Close {
    pub deal: usize,
    pub order: u64,
    pub time: i64,
    pub volume: i64,
    pub profit: Decimal,
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
    let end = p.end();
    // Items are in time order of their first close.
    let from = items.partition_point(|it| it.first < p.first_open());
    let mut window = Vec::new();
    for (k, item) in items.iter().enumerate().skip(from) {
        if item.first > end {
            break;
        }
        *budget = budget.checked_sub(1)?;
        if owner[k].is_none() && item.last <= end {
            window.push(k);
        }
    }
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

/// Values over time with "add to every value from here on" and "the least value", both in
/// O(log n).
struct MinTree {
    size: usize,
    min: Vec<i64>,
    add: Vec<i64>,
}

impl MinTree {
    fn new(values: &[i64]) -> Self {
        let size = values.len().next_power_of_two().max(1);
        // Padding that never becomes the minimum.
        let mut min = vec![i64::MAX / 4; 2 * size];
        min[size..size + values.len()].copy_from_slice(values);
        for i in (1..size).rev() {
            min[i] = min[2 * i].min(min[2 * i + 1]);
        }
        MinTree {
            size,
            min,
            add: vec![0; 2 * size],
        }
    }

    fn add_from(&mut self, from: usize, delta: i64) {
        self.range_add(1, 0, self.size, from, delta);
    }

    fn range_add(&mut self, node: usize, lo: usize, hi: usize, from: usize, delta: i64) {
        if hi <= from {
            return;
        }
        if from <= lo {
            self.min[node] += delta;
            self.add[node] += delta;
            return;
        }
        let mid = (lo + hi) / 2;
        self.range_add(2 * node, lo, mid, from, delta);
        self.range_add(2 * node + 1, mid, hi, from, delta);
        self.min[node] = self.min[2 * node].min(self.min[2 * node + 1]) + self.add[node];
    }

    fn least(&self) -> i64 {
        self.min[1]
    }
}

/// Whether the positions not yet finished can still share the free closes by volume. Over every
/// time `t`: what positions opened by `t` still need is at least what free closes starting by `t`
/// bring (`opens`), and free closes ending by `t` bring at least what positions closing by `t`
/// need (`ends`). At the last time both sums are everything, so together they also say the free
/// volume equals the volume needed.
struct Shares {
    times: Vec<i64>,
    opens: MinTree,
    ends: MinTree,
}

impl Shares {
    fn new(targets: &[Target], items: &[Item], order: &[usize]) -> Self {
        let mut times: Vec<i64> = items.iter().flat_map(|it| [it.first, it.last]).collect();
        times.extend(
            order
                .iter()
                .flat_map(|&k| [targets[k].first_open(), targets[k].end()]),
        );
        times.sort_unstable();
        times.dedup();
        let at = |t: i64| times.partition_point(|&x| x < t);
        let (mut opens, mut ends) = (vec![0i64; times.len()], vec![0i64; times.len()]);
        for &k in order {
            opens[at(targets[k].first_open())] += targets[k].need;
            ends[at(targets[k].end())] -= targets[k].need;
        }
        for it in items {
            opens[at(it.first)] -= it.volume;
            ends[at(it.last)] += it.volume;
        }
        for i in 1..times.len() {
            opens[i] += opens[i - 1];
            ends[i] += ends[i - 1];
        }
        Shares {
            opens: MinTree::new(&opens),
            ends: MinTree::new(&ends),
            times,
        }
    }

    fn at(&self, t: i64) -> usize {
        self.times.partition_point(|&x| x < t)
    }

    /// Takes a position (`sign` 1) or gives it back (-1) with the items it took.
    fn take(&mut self, p: &Target, taken: &[usize], items: &[Item], sign: i64) {
        self.opens.add_from(self.at(p.first_open()), -sign * p.need);
        self.ends.add_from(self.at(p.end()), sign * p.need);
        for &k in taken {
            self.opens
                .add_from(self.at(items[k].first), sign * items[k].volume);
            self.ends
                .add_from(self.at(items[k].last), -sign * items[k].volume);
        }
    }

    fn possible(&self) -> bool {
        self.opens.least() >= 0 && self.ends.least() >= 0
    }
}

/// Shares the closes of one symbol and side among its positions, position by position in the
/// order they close (ties: open time, then ticket; the still-open ones last), backtracking when the
/// rest can no longer be shared. Returns the target index of every close, or `None` when there is
/// no such sharing or the budget ran out first.
pub(super) fn search(
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
        (p.end(), p.first_open(), p.id)
    });
    let mut shares = Shares::new(targets, &items, &order);
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
                let options = if shares.possible() {
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
        let p = &targets[order[d]];
        let frame = &mut stack[d];
        if let Some(prev) = frame.chosen.take() {
            for &k in &frame.options[prev] {
                owner[k] = None;
            }
            shares.take(p, &frame.options[prev], &items, -1);
        }
        if frame.next < frame.options.len() {
            for &k in &frame.options[frame.next] {
                owner[k] = Some(order[d]);
            }
            shares.take(p, &frame.options[frame.next], &items, 1);
            frame.chosen = Some(frame.next);
            frame.next += 1;
            descend = true;
        } else {
            stack.pop();
            descend = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: u64, open: i64, need: i64, close: Option<i64>) -> Target {
        Target {
            id,
            opened: vec![(open, need.max(1) + 10)],
            need,
            close_time: close,
            profit_left: None,
        }
    }

    fn close(deal: usize, time: i64, volume: i64) -> Close {
        Close {
            deal,
            order: deal as u64 + 100,
            time,
            volume,
            profit: Decimal::ZERO,
        }
    }

    #[test]
    fn a_partial_close_goes_where_the_volumes_need_it() {
        // Close by close, the first partial close would go to the position closing first (A),
        // which then could not take its 3-lot final close.
        let targets = [target(1, 0, 3, Some(10)), target(2, 0, 2, Some(20))];
        let closes = [close(0, 5, 1), close(1, 10, 3), close(2, 20, 1)];
        assert_eq!(search(&targets, &closes, false, 1_000), Some(vec![1, 0, 1]));
        // No sharing fits: 5 lots of closes for 4 lots of positions.
        let closes = [close(0, 5, 2), close(1, 10, 3), close(2, 20, 1)];
        assert_eq!(search(&targets, &closes, false, 1_000), None);
        // The budget is a hard bound.
        let closes = [close(0, 5, 1), close(1, 10, 3), close(2, 20, 1)];
        assert_eq!(search(&targets, &closes, false, 2), None);
    }

    #[test]
    fn the_deals_of_one_order_stay_together_and_profits_decide_ties() {
        let mut targets = [target(1, 0, 2, Some(10)), target(2, 0, 2, Some(10))];
        targets[0].profit_left = Some(Decimal::from(-5));
        targets[1].profit_left = Some(Decimal::from(7));
        let mut closes = [close(0, 10, 1), close(1, 10, 1), close(2, 10, 2)];
        closes[1].order = closes[0].order;
        closes[2].profit = Decimal::from(-5);
        closes[0].profit = Decimal::from(3);
        closes[1].profit = Decimal::from(4);
        assert_eq!(search(&targets, &closes, true, 1_000), Some(vec![1, 1, 0]));
    }

    #[test]
    fn the_min_tree_adds_from_a_point_on() {
        let mut t = MinTree::new(&[5, 3, 8]);
        assert_eq!(t.least(), 3);
        t.add_from(1, -4);
        assert_eq!(t.least(), -1);
        t.add_from(0, 2);
        t.add_from(2, -20);
        assert_eq!(t.least(), -14);
        t.add_from(2, 20);
        t.add_from(1, 4);
        assert_eq!(t.least(), 5);
    }
}
